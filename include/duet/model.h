/* duet — a decoder-only transformer (llama, qwen2) over a GGUF file, and the
 * sequences (KV cache + position) that evaluate token blocks against it.
 *
 * The model is immutable after loading: its weights are the GGUF mapping
 * itself (never copied). A sequence owns its KV cache. An evaluation runs a
 * block of tokens through batched forward passes, and may mix tokens of
 * several sequences of the same model (duet_eval_batch), so that the
 * decode-consistent verification blocks of different requests share one pass
 * over the weights; every row's result is the one its sequence would get
 * alone.
 *
 * The arithmetic follows llama.cpp's CPU backend (x86, AVX-512 build) step by
 * step -- RMSNorm with a double sum, rope angles by repeated multiplication,
 * K/V stored as F16, q and the softmax probabilities rounded to F16 for the two
 * attention products, ggml's vectorised expf in softmax and SiLU -- so that
 * logits match llama.cpp's to within its own batched-vs-one-by-one noise. */
#ifndef DUET_MODEL_H
#define DUET_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "duet/api.h"
#include "duet/err.h"
#include "duet/gguf.h"
#include "duet/threadpool.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct duet_model duet_model;
typedef struct duet_seq duet_seq;

typedef enum {
    DUET_ARCH_LLAMA = 0, /* Llama 2/3, Mistral, TinyLlama, SmolLM, ... */
    DUET_ARCH_QWEN2 = 1, /* q/k/v biases, NEOX rope */
} duet_arch;

/* Which dimensions rope rotates together (llama.cpp's numbering). */
typedef enum {
    DUET_ROPE_NORM = 0, /* adjacent pairs (2i, 2i+1) */
    DUET_ROPE_NEOX = 2, /* halves (i, i + n_rot/2) */
} duet_rope_type;

typedef enum {
    DUET_ROPE_SCALING_NONE = 0,
    DUET_ROPE_SCALING_LINEAR = 1, /* positions divided by rope_scale_factor */
    DUET_ROPE_SCALING_LLAMA3 = 2, /* per-frequency divisors (rope_freqs.weight or llama3 keys) */
} duet_rope_scaling;

typedef enum {
    DUET_KV_F16 = 0, /* default, as llama.cpp */
    DUET_KV_F32 = 1,
} duet_kv_type;

typedef struct duet_hparams {
    duet_arch arch;
    const char *arch_name; /* "llama", "qwen2" */
    int n_vocab;
    int n_ctx_train;       /* ARCH.context_length */
    int n_embd;
    int n_layer;
    int n_head;
    int n_head_kv;
    int head_dim;          /* ARCH.attention.key_length, else n_embd / n_head */
    int n_ff;
    int n_rot;             /* ARCH.rope.dimension_count, else head_dim */
    duet_rope_type rope_type;
    float rope_freq_base;
    duet_rope_scaling rope_scaling;
    float rope_scale_factor;     /* linear / llama3 factor (1 if none) */
    float rope_freq_scale;       /* what multiplies the angle: 1/factor for linear, else 1 */
    float rope_low_freq_factor;  /* llama3 only */
    float rope_high_freq_factor; /* llama3 only */
    int rope_orig_ctx;           /* llama3: ARCH.rope.scaling.original_context_length */
    int has_rope_freqs;          /* per-frequency divisors in use (llama3) */
    float rms_eps;
    int tied_output;             /* no output.weight: token_embd.weight is the output matrix */
    int has_qkv_bias;
    uint32_t file_type;          /* general.file_type, 0 if absent */
} duet_hparams;

typedef struct duet_model_params {
    int n_threads;         /* threads of the model's own pool; <= 0: all CPUs */
    duet_pool *pool;       /* borrowed pool (not freed by the model), or NULL */
    duet_kv_type kv_type;  /* element type of every sequence's K/V cache */
    int n_ubatch;          /* tokens per forward micro-batch; <= 0: 512 (llama.cpp's n_ubatch) */
} duet_model_params;

DUET_API duet_model_params duet_model_default_params(void);

/* Maps `path`, reads the hyperparameters from its metadata and checks that
 * every tensor the architecture needs is present with the right shape and a
 * supported type (errors name the tensor). Weights stay in the mapping. */
DUET_API int duet_model_load(duet_model **out, const char *path, const duet_model_params *p, duet_err *err);
DUET_API void duet_model_free(duet_model *m); /* NULL is a no-op; free every sequence first */

DUET_API const duet_hparams *duet_model_hparams(const duet_model *m);
/* The GGUF file behind the model (tokenizer metadata, tensors). Owned by m. */
DUET_API const duet_gguf *duet_model_gguf(const duet_model *m);
DUET_API duet_pool *duet_model_pool(duet_model *m);
DUET_API duet_kv_type duet_model_kv_type(const duet_model *m);
DUET_API int duet_model_n_vocab(const duet_model *m);
/* Bytes of the KV caches of m's live sequences: the sum of duet_seq_kv_bytes
 * over every sequence created on m and not yet freed. Thread-safe (sequences
 * may be created and freed from several threads; an atomic counter). 0 for
 * NULL. */
DUET_API size_t duet_model_kv_bytes(const duet_model *m);

/* ---- sequences ------------------------------------------------------------ */

/* A sequence with room for n_ctx positions (<= 0: the model's n_ctx_train).
 * n_ctx bounds its KV cache, allocated here once and never grown: see
 * duet_seq_kv_bytes. It changes nothing else: the same tokens evaluated in
 * the same blocks and mode give bit-identical logits and K/V in a sequence of
 * any n_ctx that holds them. DUET_ENOMEM when it cannot be allocated,
 * DUET_ERANGE when its size overflows. */
DUET_API int duet_seq_new(duet_seq **out, duet_model *m, int n_ctx, duet_err *err);
DUET_API void duet_seq_free(duet_seq *s); /* NULL is a no-op */
DUET_API duet_model *duet_seq_model(const duet_seq *s);
DUET_API int duet_seq_pos(const duet_seq *s);   /* tokens evaluated so far = next position */
DUET_API int duet_seq_n_ctx(const duet_seq *s);
/* Bytes of s's KV cache, fixed at duet_seq_new:
 *   n_layer * n_ctx * 2 * (n_head_kv * head_dim) * elt  +  64 * elt
 * (K and V; elt = 2 for a DUET_KV_F16 cache, 4 for F32; the 64 elements pad
 * the end of V for the attention's vector loads). The memory is reserved
 * zeroed (calloc), so pages are committed as positions are used. 0 for NULL. */
DUET_API size_t duet_seq_kv_bytes(const duet_seq *s);
/* Forgets every position >= n_keep (0 <= n_keep <= pos). DUET_ERANGE otherwise. */
DUET_API int duet_rollback(duet_seq *s, int n_keep);
/* Decode-consistent mode (off by default). When on, every duet_eval and
 * duet_eval_batch involving s computes each token's logits and K/V
 * bit-identically to a one-token duet_eval of that token at that position,
 * for every weight and KV type, while still reading each weight once per
 * block (the one-token arithmetic is run per token on each loaded weight
 * block). Off, a block follows llama.cpp's batched arithmetic, which rounds
 * differently from its one-token path. In a duet_eval_batch each sequence's
 * tokens are computed in that sequence's own mode, whatever the modes of the
 * other sequences in the batch. Speculative verification uses it so that its output equals plain greedy
 * decoding token for token. Returns 0, or DUET_EINVAL for a NULL s. */
DUET_API int duet_seq_set_decode_consistent(duet_seq *s, int on);
DUET_API int duet_seq_decode_consistent(const duet_seq *s); /* 1 when on */
/* Makes dst a copy of src (same model; dst's n_ctx must hold src's positions;
 * dst keeps its own decode-consistent setting). */
DUET_API int duet_seq_copy(duet_seq *dst, const duet_seq *src, duet_err *err);

/* ---- evaluation ----------------------------------------------------------- */

/* Threads: evaluations on one model are serialised by an internal lock (they
 * share its scratch buffers and thread pool); a sequence must not be used by
 * two threads at once. A borrowed pool may be shared by several models.
 *
 * Appends tok[0..n) to s at positions pos..pos+n-1 in one forward pass and
 * writes the logits of the last n_logits of those tokens (0 <= n_logits <= n;
 * n: all, 1: the last only, 0: none and logits may be NULL) to logits
 * (n_logits, n_vocab). Errors (nothing is changed): DUET_ERANGE if the block
 * does not fit the context or a token id is outside [0, n_vocab);
 * DUET_EINVAL for bad arguments. */
DUET_API int duet_eval(duet_seq *s, const int32_t *tok, int n, float *logits, int n_logits, duet_err *err);
/* duet_eval that also writes the final hidden state of the last n_out tokens
 * -- the normalized vector the output matrix turns into logits -- to hidden
 * (n_out, n_embd); the logits go to logits (n_out, n_vocab) as in duet_eval.
 * Routers pool it into a summary of the prompt (strategy.h). */
DUET_API int duet_eval_hidden(duet_seq *s, const int32_t *tok, int n, float *logits, float *hidden, int n_out,
                              duet_err *err);

/* A block of tokens of one or more sequences of one model. Tokens of the
 * same sequence take consecutive positions from duet_seq_pos(seq) on, in
 * batch order (they need not be contiguous in the batch); sequences must be
 * distinct objects (two requests never share a KV cache). */
typedef struct duet_batch {
    int n_tokens;
    const int32_t *tokens;   /* (n_tokens) */
    duet_seq *const *seqs;   /* (n_tokens) the sequence each token extends */
    const uint8_t *want;     /* (n_tokens) nonzero: output this token's logits; NULL: none */
    float *logits;           /* (n_wanted, n_vocab): wanted tokens' rows, in batch order */
    float *hidden;           /* (n_wanted, n_embd) or NULL: their final hidden states (duet_eval_hidden) */
} duet_batch;

/* Evaluates the batch; wanted rows go to b->logits in batch order.
 *
 * Rows are independent of the batch: every token row's logits and K/V are
 * bit-identical to evaluating that sequence's own tokens of this batch alone,
 * in their batch order, with duet_eval on the same model (in that sequence's
 * mode; for a default-mode sequence whose wanted tokens are not the last ones
 * of its block, read "alone" as a duet_eval_batch holding only its tokens and
 * their want flags). Which other sequences share the batch, how many tokens
 * they bring, their modes and how the tokens are interleaved change no bit.
 *
 * Cost: the tokens of every decode-consistent sequence share one forward
 * pass (one read of the weights per n_ubatch tokens; that arithmetic is per
 * token, so sharing is exact); each default-mode sequence's tokens take a
 * pass of their own, split at n_ubatch as duet_eval splits them (the batched
 * arithmetic depends on a pass's row count: GEMM kernels are chosen by it).
 * Memory: a few ints per token of the batch, and one n_vocab row when the
 * wanted rows must be reordered.
 *
 * Errors (everything is validated before anything changes; on error no
 * sequence and no output row is touched): DUET_EINVAL for a NULL argument, a
 * token without a sequence or with another model's, or wanted rows with a
 * NULL logits; DUET_ERANGE for a token id outside [0, n_vocab) or a sequence
 * whose tokens do not fit its context; DUET_ENOMEM. */
DUET_API int duet_eval_batch(duet_model *m, const duet_batch *b, duet_err *err);

#ifdef __cplusplus
}
#endif
#endif

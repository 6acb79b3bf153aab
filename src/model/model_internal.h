/* internal: not part of the public API; may change. */
/* duet — model internals shared by the files of src/model (not a public header). */
#ifndef DUET_MODEL_INTERNAL_H
#define DUET_MODEL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "duet/gguf.h"
#include "duet/model.h"
#include "duet/quant.h"
#include "duet/threadpool.h"

/* A matrix in the mapping: n_out rows of n_in elements of `type` (GGUF ne0 =
 * n_in is the contiguous dimension), used as y = x W^T. */
typedef struct duet_weight {
    duet_type type;
    const void *data;
    int64_t n_in, n_out;
    size_t row_size;  /* bytes of one row */
    void *packed;     /* owned copy in the decode GEMV's runtime layout
                         (duet_repack), or NULL */
} duet_weight;

typedef struct duet_layer {
    const float *attn_norm;  /* (n_embd) */
    duet_weight wq;          /* (n_head*head_dim, n_embd) */
    duet_weight wk;          /* (n_head_kv*head_dim, n_embd) */
    duet_weight wv;          /* (n_head_kv*head_dim, n_embd) */
    duet_weight wo;          /* (n_embd, n_head*head_dim) */
    const float *bq;         /* (n_head*head_dim) or NULL */
    const float *bk;         /* (n_head_kv*head_dim) or NULL */
    const float *bv;         /* (n_head_kv*head_dim) or NULL */
    const float *bo;         /* (n_embd) or NULL */
    const float *ffn_norm;   /* (n_embd) */
    duet_weight gate;        /* (n_ff, n_embd) */
    duet_weight up;          /* (n_ff, n_embd) */
    duet_weight down;        /* (n_embd, n_ff) */
} duet_layer;

/* Buffers of one forward micro-batch, grown on demand and reused (never
 * allocated per token). Guarded by the model's eval lock. */
typedef struct duet_workspace {
    int cap_tokens;          /* rows the token buffers hold */
    float *x;                /* (cap, n_embd) residual stream */
    float *xn;               /* (cap, n_embd) normalised input of a matmul */
    float *q;                /* (cap, q_dim) */
    float *k;                /* (cap, kv_dim) */
    float *v;                /* (cap, kv_dim) */
    float *att;              /* (cap, q_dim) attention output, heads concatenated */
    float *o;                /* (cap, n_embd) projection output */
    float *gate;             /* (cap, n_ff) */
    float *up;               /* (cap, n_ff) */
    float *rope_cs;          /* (cap, n_rot) cos/sin pairs per token */
    /* per token of the whole batch (any length), in pass order: the batch
     * regrouped into its forward passes (eval_core) */
    int cap_batch;
    int *bpos;               /* (cap_batch) position of each token */
    duet_seq **bseq;         /* (cap_batch) sequence of each token */
    int32_t *btok;           /* (cap_batch) token ids */
    int *brows;              /* (cap_batch) rows whose logits are wanted, per micro-batch */
    int *bnext;              /* (cap_batch) batch index -> next token of its pass (scratch) */
    int *brank;              /* (cap_batch) batch index -> its row of the output, -1: not wanted */
    int *bdest;              /* (cap_batch) output row in pass order -> its row in batch order */
    float *lrow;             /* (n_vocab) one logits row, to reorder the output in place */
    /* per-thread attention scratch */
    int att_threads;
    int att_ctx;             /* positions each thread's scratch holds */
    size_t att_stride;       /* bytes per thread */
    unsigned char *att_scratch;
} duet_workspace;

/* The matrix product the forward pass uses: duet_matmul, or (tests only)
 * another implementation with the same contract, to isolate the engine's
 * own arithmetic from the kernels'. */
typedef void (*duet_matmul_fn)(duet_pool *pool, float *y, duet_type wt, const void *w, const float *x,
                               int64_t m, int64_t n_in, int64_t n_out);

struct duet_model {
    duet_gguf *gguf;
    duet_hparams hp;
    duet_kv_type kv_type;
    int n_ubatch;
    duet_pool *pool;
    int own_pool;
    duet_matmul_fn matmul;   /* duet_matmul unless a test swaps it */

    duet_weight tok_embd;    /* (n_vocab, n_embd) */
    duet_weight output;      /* (n_vocab, n_embd): output.weight or tok_embd */
    const float *output_norm;/* (n_embd) */
    float *rope_freqs;       /* (n_rot/2) frequency divisors, owned; NULL if none */
    duet_layer *layers;      /* (n_layer) */

    atomic_size_t kv_bytes;  /* duet_seq_kv_bytes summed over the live sequences */
    pthread_mutex_t eval_lock; /* one forward at a time: workspace and pool */
    duet_workspace ws;
};

struct duet_seq {
    duet_model *model;
    int n_ctx;
    int pos;
    size_t elt;              /* bytes per cache element (2: F16, 4: F32) */
    size_t layer_stride;     /* elements per layer of k (and of v) = n_ctx * kv_dim */
    void *k;                 /* (n_layer, n_ctx, kv_dim) */
    void *v;                 /* (n_layer, kv_dim, n_ctx): transposed */
    size_t kv_bytes;         /* bytes of k and v as allocated (counted in model->kv_bytes) */
    int batch_count;         /* scratch of eval_core: this sequence's tokens in the batch */
    int batch_last;          /* scratch of eval_core: its last token so far (batch index) */
    int decode_consistent;   /* duet_seq_set_decode_consistent */
};

/* hparams.c: fills m->hp (and m->rope_freqs for llama3 keys) from metadata. */
int duet_model_read_hparams(duet_model *m, duet_err *err);

/* forward.c: one micro-batch of n tokens (n <= m->n_ubatch). seq[i]/pos[i]:
 * where token i goes; out_rows lists the n_out batch rows whose logits go to
 * logits (n_out, n_vocab) and, when hidden is not NULL, whose final hidden
 * states (the output matrix's normalized input) go to hidden (n_out, n_embd). consistent: every token computed bit-identically to
 * a one-token forward of it (matmuls and attention in the one-token arithmetic). The caller holds eval_lock and has validated
 * everything. */
int duet_forward(duet_model *m, int n, const int32_t *tok, duet_seq *const *seq, const int *pos,
                 const int *out_rows, int n_out, float *logits, float *hidden, int consistent, duet_err *err);
void duet_workspace_free(duet_workspace *ws);

#endif

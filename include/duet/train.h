/* duet — training and distillation of llama-architecture models.
 *
 * A duet_tmodel holds, in the style of llm.c, one block each for the
 * parameters, their gradients and the two AdamW moments (same layout), plus
 * the saved activations of one forward pass over a (B, T) batch. The forward
 * is the llama architecture as llama.cpp computes it: token embedding, per
 * layer RMSNorm -> q/k/v -> NORM rope -> causal softmax attention -> output
 * projection (residual), RMSNorm -> SwiGLU FFN (residual), final RMSNorm,
 * output projection (or the tied embedding). n_head_kv == n_head.
 *
 * GGUF export writes the tensor names and layout llama.cpp uses (weights
 * n_out rows of n_in, ne = [n_in, n_out]); the tokenizer keys come from a
 * tokenizer GGUF. */
#ifndef DUET_TRAIN_H
#define DUET_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "duet/api.h"
#include "duet/err.h"
#include "duet/gguf.h"
#include "duet/threadpool.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct duet_tconfig {
    int n_vocab;
    int n_ctx;      /* longest sequence (context_length in the GGUF) */
    int n_embd;
    int n_layer;
    int n_head;     /* head_dim = n_embd / n_head, must be even */
    int n_ff;
    int tied;       /* output projection = token_embd (no output.weight) */
    float rope_base;
    float norm_eps;
} duet_tconfig;

/* Parameters (and, same layout, gradients and moments). */
#define DUET_TPARAM_COUNT 11
typedef struct duet_tparams {
    float *token_embd;  /* (V, C) */
    float *attn_norm;   /* (L, C) */
    float *wq;          /* (L, C, C) */
    float *wk;          /* (L, C, C) */
    float *wv;          /* (L, C, C) */
    float *wo;          /* (L, C, C) */
    float *ffn_norm;    /* (L, C) */
    float *w_gate;      /* (L, F, C) */
    float *w_up;        /* (L, F, C) */
    float *w_down;      /* (L, C, F) */
    float *output_norm; /* (C) */
    float *output;      /* (V, C); aliases token_embd when tied (not in the block) */
} duet_tparams;

/* Saved activations of one forward pass; N = B * T rows. */
typedef struct duet_tacts {
    float *res;      /* (L+1, N, C) residual stream entering layer l; res[L] leaves the last */
    float *ln1;      /* (L, N, C) */
    float *rstd1;    /* (L, N) */
    float *q, *k, *v; /* (L, N, C) each; q, k after rope */
    float *att;      /* (L, B, H, T, T) attention probabilities */
    float *atty;     /* (L, N, C) attention output before the projection */
    float *res_mid;  /* (L, N, C) residual after attention */
    float *ln2;      /* (L, N, C) */
    float *rstd2;    /* (L, N) */
    float *gate;     /* (L, N, F) */
    float *up;       /* (L, N, F) */
    float *hsw;      /* (L, N, F) silu(gate) * up */
    float *lnf;      /* (N, C) */
    float *rstdf;    /* (N) */
    float *logits;   /* (N, V); after a loss, holds d loss / d logits */
} duet_tacts;

typedef struct duet_tmodel {
    duet_tconfig cfg;
    int B, T;                 /* batch capacity the activations were sized for */
    size_t n_params;          /* floats in the parameter block */
    float *param_block;       /* (n_params) */
    float *grad_block;        /* (n_params) or NULL (inference only) */
    float *m_block, *v_block; /* (n_params) AdamW moments or NULL */
    duet_tparams p, g;        /* views into param_block / grad_block */
    size_t off[DUET_TPARAM_COUNT], size[DUET_TPARAM_COUNT]; /* tensor offsets/sizes in the block */
    float *act_block;
    duet_tacts a;
    float *rope_cos, *rope_sin; /* (T, D/2) */
    float *scratch;           /* backward scratch */
    int cur_B, cur_T;         /* shape of the last forward */
    const int32_t *cur_tok;   /* input tokens of the last forward */
    int64_t step;             /* optimizer steps taken */
} duet_tmodel;

typedef struct duet_adamw {
    float lr, beta1, beta2, eps, weight_decay;
} duet_adamw;

/* Checks a configuration; the message names the bad field. */
DUET_API int duet_tconfig_check(const duet_tconfig *c, duet_err *err);
/* Parameters of a configuration (what n_params will be). */
DUET_API size_t duet_tconfig_n_params(const duet_tconfig *c);
/* Multiply-adds x 2 of one training step's forward per token (matmuls and
 * attention at full context T); a backward costs about twice that. */
DUET_API double duet_tconfig_flops_per_token(const duet_tconfig *c, int T);

/* Allocates a model for batches up to (B, T). with_grads: also gradients
 * and AdamW moments. Parameters are zero until init or load. */
DUET_API int duet_tmodel_new(duet_tmodel **out, const duet_tconfig *c, int B, int T, int with_grads, duet_err *err);
DUET_API void duet_tmodel_free(duet_tmodel *m); /* NULL is a no-op */

/* Seeded init: matrices ~ N(0, 0.02) (residual projections scaled by
 * 1/sqrt(2 L)), norm weights 1. Same seed, same parameters, bit for bit. */
DUET_API void duet_tmodel_init(duet_tmodel *m, uint64_t seed);

/* Forward over tok (B, T): fills the activations and logits (B*T, V). */
DUET_API int duet_tmodel_forward(duet_tmodel *m, duet_pool *pool, const int32_t *tok, int B, int T);
/* Mean cross-entropy against targets (B*T) of the last forward. With
 * with_grad, a.logits is overwritten by d loss / d logits (for backward);
 * mixed CE + distillation losses: duet_tmodel_kd_loss. */
DUET_API double duet_tmodel_ce_loss(duet_tmodel *m, const int32_t *targets, int with_grad);
/* Backward from a.logits (which hold d loss / d logits). Gradients are
 * accumulated into grad_block: zero it first (duet_tmodel_zero_grad). */
DUET_API int duet_tmodel_backward(duet_tmodel *m, duet_pool *pool);
DUET_API void duet_tmodel_zero_grad(duet_tmodel *m);
/* Global gradient norm; scales gradients down to max_norm if above (max_norm > 0). */
DUET_API double duet_tmodel_clip_grad(duet_tmodel *m, float max_norm);
/* One AdamW step (weight decay on matrices only). */
DUET_API void duet_tmodel_adamw(duet_tmodel *m, const duet_adamw *o);

/* Learning rate at step: linear warmup to lr_max, cosine down to lr_min at max_steps. */
DUET_API float duet_lr_schedule(int64_t step, int64_t warmup, int64_t max_steps, float lr_max, float lr_min);

/* ---- distillation losses on the last forward's logits -------------------- */
typedef enum {
    DUET_KD_KL = 0,  /* forward KL(p_teacher || q_student) */
    DUET_KD_RKL = 1, /* reverse KL(q || p) */
    DUET_KD_JSD = 2, /* generalized JSD(beta) */
    DUET_KD_TVD = 3, /* total variation distance */
} duet_kd_loss;

typedef struct duet_kd_opts {
    duet_kd_loss loss;
    float beta;      /* JSD mixing weight of the teacher */
    float temp;      /* temperature of both distributions (KL/RKL/JSD gradients x temp^2) */
    float ce_weight; /* total = (1 - w) * divergence + w * cross-entropy */
} duet_kd_opts;

/* Mixed KD + CE loss of the student's last forward against teacher logits
 * (B*T, V) and targets (B*T; NULL only if ce_weight == 0). Returns the mean
 * total loss; *div_out (if non-NULL) gets the mean divergence. With with_grad
 * the student's a.logits become d loss / d logits. */
DUET_API double duet_tmodel_kd_loss(duet_tmodel *m, const float *teacher_logits, const int32_t *targets,
                                    const duet_kd_opts *o, int with_grad, double *div_out);
DUET_API int duet_kd_parse(const char *s, duet_kd_loss *loss, float *beta); /* "kl", "rkl", "jsd:0.5", "tvd" */

/* ---- files ----------------------------------------------------------------- */
/* GGUF export: F32 or F16 (DUET_TYPE_F32/F16) matrices, norms in F32; llama.*
 * hyperparameters; every tokenizer.* key of tok (may be NULL). */
DUET_API int duet_tmodel_save_gguf(const duet_tmodel *m, const char *path, uint32_t wtype, const duet_gguf *tok,
                                   const char *name, duet_err *err);
/* Reads a llama GGUF with F32/F16/BF16 weights (n_head_kv == n_head) into a new model. */
DUET_API int duet_tmodel_load_gguf(duet_tmodel **out, const char *path, int B, int T, int with_grads, duet_err *err);
/* Raw checkpoint: config, step, caller state blob, parameters and moments. */
DUET_API int duet_tmodel_save_ckpt(const duet_tmodel *m, const char *path, const void *state, size_t state_size,
                                   duet_err *err);
DUET_API int duet_tmodel_load_ckpt(duet_tmodel **out, const char *path, int B, int T, void *state, size_t state_size,
                                   duet_err *err);

/* ---- data ----------------------------------------------------------------- */
/* A token stream: stories tokenized one by one, each followed by eot. */
typedef struct duet_tokens {
    int32_t *ids;
    int64_t n;
} duet_tokens;

/* Splits TinyStories-style text into stories (see docs/distillation.md:
 * a single "\n" between stories; in files where stories are separated like
 * paragraphs, a paragraph opening with "once upon a time", "once there was"
 * or "once, there" starts a story), tokenizes each with the vocabulary of
 * tok_path and appends eot after each. */
DUET_API int duet_tokens_from_text(duet_tokens *out, const char *text_path, const char *tok_path, duet_err *err);
DUET_API void duet_tokens_free(duet_tokens *t);

/* Deterministic RNG (splitmix64 + xorshift). */
typedef struct duet_trng {
    uint64_t s;
} duet_trng;
DUET_API uint64_t duet_trng_next(duet_trng *r);
DUET_API float duet_trng_uniform(duet_trng *r); /* [0, 1) */
DUET_API float duet_trng_normal(duet_trng *r);


/* ---- the training loop (duet train / duet distill) ----------------------- */
typedef enum {
    DUET_KD_MODE_NONE = 0,     /* plain next-token cross-entropy on the data */
    DUET_KD_MODE_TOKEN = 1,    /* token-level KD on data windows (teacher forward on the fly) */
    DUET_KD_MODE_SEQ = 2,      /* sequence-level KD: CE on sequences the teacher sampled */
    DUET_KD_MODE_ONPOLICY = 3, /* student samples, teacher scores them token by token */
} duet_kd_mode;

typedef struct duet_train_opts {
    const char *out_path;    /* best model (by valid loss) as GGUF; also OUT.ckpt, OUT.loss.csv, OUT.loss.png */
    const char *tok_path;    /* tokenizer GGUF whose tokenizer.* keys go into the output */
    const char *name;        /* general.name */
    uint32_t out_type;       /* DUET_TYPE_F32 or DUET_TYPE_F16 */
    int B, T;                /* batch: B windows of T tokens */
    int64_t max_steps;
    int64_t warmup;
    float lr, lr_min, weight_decay, clip, beta1, beta2;
    uint64_t seed;
    int eval_every;          /* steps between validation runs */
    int eval_batches;        /* batches per validation (0: the whole file) */
    int patience;            /* stop after this many validations without improvement (0: never) */
    double ckpt_seconds;     /* checkpoint period */
    double time_limit;       /* seconds of training in this run (0: none); a checkpoint is written at the end */
    int64_t stop_at;         /* stop (with a checkpoint) once this many steps are done (0: max_steps) */
    int resume;              /* continue from OUT.ckpt */
    /* distillation */
    duet_kd_mode kd_mode;
    duet_kd_opts kd;
    float onpolicy_frac;     /* share of on-policy batches (the rest are data windows) */
    float sample_temp;       /* sampling temperature for seq / on-policy generations */
    int prompt_len;          /* data tokens that prefix each generated window */
    FILE *log;               /* progress bar and messages (NULL: silent) */
} duet_train_opts;

typedef struct duet_train_result {
    int64_t steps;
    double tokens;           /* training tokens processed (this run and resumed ones) */
    double best_valid;       /* best validation loss (mean CE per token) */
    double last_train;       /* smoothed training loss at the end */
    double seconds;          /* wall time of this run */
    double tokens_per_s, gflops;
    int stopped_early;
} duet_train_result;

DUET_API void duet_train_opts_default(duet_train_opts *o);
/* Trains m (fresh, loaded or from the checkpoint when o->resume; on resume *m
 * is replaced) on train tokens, validating on valid. teacher (inference-only
 * model with the same vocabulary) is required for the KD modes. */
DUET_API int duet_train_run(duet_tmodel **m, duet_tmodel *teacher, const duet_tokens *train, const duet_tokens *valid,
                            const duet_train_opts *o, duet_pool *pool, duet_train_result *res, duet_err *err);

/* Mean cross-entropy of m over the windows of toks (stride T, at most
 * max_batches batches of B; 0: all). */
DUET_API double duet_tmodel_eval_loss(duet_tmodel *m, duet_pool *pool, const duet_tokens *toks, int B, int T,
                                      int max_batches);

/* Samples B sequences of T+1 tokens: positions [0, prompt_len) are copied
 * from prompts (B rows of prompt_len), the rest drawn from m at temperature
 * temp (one incremental pass with a key/value cache). out: (B, T+1). */
DUET_API int duet_tmodel_sample(duet_tmodel *m, duet_pool *pool, int32_t *out, const int32_t *prompts, int prompt_len,
                                int B, int T, float temp, duet_trng *rng);

#ifdef __cplusplus
}
#endif
#endif

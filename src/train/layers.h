/* internal: not part of the public API; may change. */
/* Forward and backward kernels of the llama trainer, one pair per layer.
 *
 * Every backward sits next to its forward in layers.c and names the forward
 * line it differentiates. Backward kernels ACCUMULATE into parameter
 * gradients (+=) and, where stated, into input gradients, so shared
 * parameters (tied embeddings) and residual branches just add up.
 * Shapes: N = rows (batch * time), C = n_embd, F = n_ff, V = n_vocab,
 * T = time, H = heads, D = head_dim. Row-major everywhere. */
#ifndef DUET_TRAIN_LAYERS_H
#define DUET_TRAIN_LAYERS_H

#include <stdint.h>

#include "duet/threadpool.h"

/* out[n] = table[tok[n]] */
void tl_embed_forward(float *out /* (N, C) */, const float *table /* (V, C) */,
                      const int32_t *tok /* (N) */, int N, int C);
void tl_embed_backward(float *dtable /* (V, C) += */, const float *dout /* (N, C) */,
                       const int32_t *tok /* (N) */, int N, int C);

/* y = x / sqrt(mean(x^2) + eps) * w; rstd saved for backward. */
void tl_rmsnorm_forward(float *y /* (N, C) */, float *rstd /* (N) */, const float *x /* (N, C) */,
                        const float *w /* (C) */, int N, int C, float eps);
void tl_rmsnorm_backward(float *dx /* (N, C) += */, float *dw /* (C) += */, const float *dy /* (N, C) */,
                         const float *x /* (N, C) */, const float *w /* (C) */, const float *rstd /* (N) */,
                         int N, int C);

/* y = x W^T (W has n_out rows of n_in). */
void tl_linear_forward(duet_pool *pool, float *y /* (N, n_out) */, const float *x /* (N, n_in) */,
                       const float *w /* (n_out, n_in) */, int N, int n_in, int n_out);
void tl_linear_backward(duet_pool *pool, float *dx /* (N, n_in) += or NULL */, float *dw /* (n_out, n_in) += */,
                        const float *dy /* (N, n_out) */, const float *x /* (N, n_in) */,
                        const float *w /* (n_out, n_in) */, int N, int n_in, int n_out);

/* Rotary tables for positions 0..T-1: angle(p, i) = p * base^(-2i/D). */
void tl_rope_table(float *cos_t /* (T, D/2) */, float *sin_t /* (T, D/2) */, int T, int D, float base);
/* In place, llama.cpp NORM rope: pairs (2i, 2i+1) of each head; row n has position n % T. */
void tl_rope_forward(float *x /* (N, H*D) */, const float *cos_t, const float *sin_t, int N, int T, int H, int D);
void tl_rope_backward(float *dx /* (N, H*D) in place */, const float *cos_t, const float *sin_t, int N, int T,
                      int H, int D);

/* Causal multi-head attention over B sequences of T rows:
 * att = softmax(q k^T / sqrt(D)) (causal), y = att v. */
void tl_attention_forward(duet_pool *pool, float *y /* (B*T, H*D) */, float *att /* (B, H, T, T) */,
                          const float *q, const float *k, const float *v /* (B*T, H*D) each */,
                          int B, int T, int H, int D);
/* datt is scratch (T, T). dq, dk, dv are overwritten. */
void tl_attention_backward(duet_pool *pool, float *dq, float *dk, float *dv /* (B*T, H*D) = */,
                           float *datt /* (T, T) scratch */, const float *dy /* (B*T, H*D) */,
                           const float *att /* (B, H, T, T) */, const float *q, const float *k, const float *v,
                           int B, int T, int H, int D);

/* h = silu(g) * u */
void tl_swiglu_forward(float *h /* (n) */, const float *g /* (n) */, const float *u /* (n) */, int64_t n);
void tl_swiglu_backward(float *dg /* (n) = */, float *du /* (n) = */, const float *dh /* (n) */,
                        const float *g, const float *u, int64_t n);

/* Softmax cross-entropy: returns the SUM of -log p[target] over the N rows;
 * if dlogits != NULL writes scale * (p - onehot(target)) there (may alias logits). */
double tl_softmax_ce(float *dlogits /* (N, V) or NULL */, const float *logits /* (N, V) */,
                     const int32_t *targets /* (N) */, int N, int V, float scale);

/* Distillation divergences between a teacher distribution p = softmax(zt/temp)
 * and the student's q = softmax(zs/temp), per row. */
typedef enum {
    TL_KD_KL = 0,  /* forward KL(p || q) */
    TL_KD_RKL = 1, /* reverse KL(q || p) */
    TL_KD_JSD = 2, /* beta KL(p || m) + (1-beta) KL(q || m), m = beta p + (1-beta) q */
    TL_KD_TVD = 3, /* 0.5 sum |p - q| */
} tl_kd_loss;

/* Returns the SUM over rows of the divergence (computed at temperature temp);
 * if dzs != NULL ADDS scale * d(divergence)/d(zs) there. */
double tl_kd_div(float *dzs /* (N, V) += or NULL */, const float *zs /* (N, V) */, const float *zt /* (N, V) */,
                 int N, int V, tl_kd_loss kind, float beta, float temp, float scale);

#endif

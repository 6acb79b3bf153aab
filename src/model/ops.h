/* internal: not part of the public API; may change. */
/* duet — the element-wise and attention arithmetic of the forward pass,
 * written to reproduce llama.cpp's CPU results bit for bit (internal).
 *
 * Each operation has a plain C reference (ops.c, attention.c) and an AVX2 path
 * (ops_avx2.c, attention_avx2.c) that computes exactly the same bits; the
 * dispatchers pick the AVX2 path when the CPU has AVX2+FMA+F16C and
 * duet_simd_level() allows it.
 *
 * Where llama.cpp's result depends on its x86 AVX-512 build, we emulate that
 * build: ggml_v_expf's AVX-512 variant (polynomial + scalef), 16-lane FMA
 * accumulators reduced pairwise like _mm512_reduce_add_ps. */
#ifndef DUET_MODEL_OPS_H
#define DUET_MODEL_OPS_H

#include <stddef.h>
#include <stdint.h>

/* Keeps the compiler from fusing a*b+c into one FMA (GCC does so by default
 * when FMA is available): llama.cpp's results depend on which products are
 * rounded, so every fused multiply-add here is written out as fmaf(). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* y = x / sqrt(mean(x^2) + eps) * w  (ggml_rms_norm then ggml_mul):
 * squares summed in double, mean and scale rounded to float. y may be x. */
void duet_rms_norm(float *y /* (n) */, const float *x /* (n) */, const float *w /* (n) */, int n,
                   float eps);

/* cos/sin of the rope angles of one position: cs[2i] = cos, cs[2i+1] = sin of
 * theta_i = freq_scale * (pos * theta_scale^i) / freq_factor[i], the power
 * built by repeated float multiplication as ggml_rope_cache_init does. */
void duet_rope_cache(float *cs /* (n_rot) */, int pos, int n_rot, float freq_base,
                     float freq_scale, const float *freq_factors /* (n_rot/2) or NULL */);
/* Rotates the first n_rot dims of one head in place. neox: pairs (i, i+n_rot/2),
 * else adjacent pairs. */
void duet_rope_apply(float *x /* (head_dim) */, const float *cs /* (n_rot) */, int n_rot, int neox);

/* ggml_v_expf (AVX-512 flavour), one value. */
float duet_ggml_expf(float x);
/* y = silu(g) * u with ggml's vectorised silu on every full group of 16 and
 * x/(1+expf(-x)) on the tail, as ggml_vec_swiglu_f32. y may alias g or u. */
void duet_swiglu(float *y /* (n) */, const float *g /* (n) */, const float *u /* (n) */, int n);
void duet_swiglu_ref(float *y, const float *g, const float *u, int n);

/* Sum of 16 lanes in _mm512_reduce_add_ps's order: halves, quarters, pairs. */
static inline float duet_hsum16(const float *l) {
    float a[8], b[4];
    for (int i = 0; i < 8; i++) a[i] = l[i] + l[i + 8];
    for (int i = 0; i < 4; i++) b[i] = a[i] + a[i + 4];
    return (b[0] + b[2]) + (b[1] + b[3]);
}

/* ---- attention of one query head over one sequence's cache ---------------
 * out = softmax(scale * q.K^T) V over positions 0..n_kv-1, in llama.cpp's
 * non-flash path: q rounded to the cache type, softmax with ggml_v_expf over
 * groups of 16 and a double total, probabilities rounded to the cache type
 * before p.v. The two products depend on the micro-batch, as in llama.cpp:
 *  - several tokens: llamafile tinyBLAS, 16 FMA lanes (index mod 16), reduced
 *    as _mm512_reduce_add_ps;
 *  - one token: ggml_vec_dot_f16 (_f32 for an F32 cache) over the padded
 *    cache length n_kv_pad: 4 x 16 FMA lanes over each 64 elements, folded
 *    (0+2, 1+3, 0+1) and reduced, then the tail added one by one (in double
 *    for F16).
 * An F32 cache uses the same lanes without the roundings. (llama.cpp's own
 * F32-cache prefill takes ggml_vec_dot_f32 for q.k; there is no reference
 * run to check that against, so it is not mirrored.) */
typedef struct duet_attn_args {
    int head_dim;
    int n_kv;
    int single;          /* the micro-batch holds one token */
    int n_kv_pad;        /* single: llama.cpp's cache view length (>= n_kv) */
    int kv_f16;          /* 1: k/v hold F16 bits, 0: F32 */
    const void *k;       /* key of position j, dim d at k[j*k_stride + d] */
    const void *v;       /* value of position j, dim d at v[d*v_stride + j] (transposed, as llama.cpp) */
    size_t k_stride;     /* elements between positions of k */
    size_t v_stride;     /* elements between dims of v */
    float scale;
} duet_attn_args;

/* Elements allocated past the end of a transposed V cache, so that vector
 * loads of the last row's tail (up to 31 positions past n_ctx, see
 * duet_attn_kv_pad) stay inside the allocation. */
#define DUET_V_SLACK 64

/* llama.cpp's view of the cache for a token at position pos: the used cells
 * rounded up to 32 (its non-flash padding), at least 32. It depends on pos
 * alone, never on the sequence's n_ctx: capping it at n_ctx (as llama.cpp's
 * min(kv_size, ...) would for a cache size that is not a multiple of 32;
 * llama.cpp itself pads its cache to one) moved the split between
 * ggml_vec_dot's 64-element body and its sequential tail in p.v, so the
 * logits of the last positions below a round 32 changed with n_ctx
 * (llama.cpp pads its context size to a multiple of this padding, so its cap
 * does not bite before the end). The view may reach up to 31 positions past
 * n_ctx: only its first pos + 1 enter sums, and the kernels' vector loads
 * stay inside the view, which DUET_V_SLACK covers for the last V^T row. */
static inline int duet_attn_kv_pad(int pos) { return (pos + 1 + 31) & ~31; }

/* Most queries of one duet_attn_heads call. */
#define DUET_ATTN_MAX_Q 4

/* Scratch for one call of duet_attn_head or of duet_attn_heads (up to
 * DUET_ATTN_MAX_Q queries): duet_attn_scratch_size(n_kv, head_dim) bytes, n_kv
 * the largest the call sees; 64-byte aligned. */
size_t duet_attn_scratch_size(int n_kv, int head_dim);
void duet_attn_head(float *out /* (head_dim) */, const float *q /* (head_dim) */,
                    const duet_attn_args *a, void *scratch);
void duet_attn_head_ref(float *out, const float *q, const duet_attn_args *a, void *scratch);
/* nq <= DUET_ATTN_MAX_Q queries of one head over the same cache (tokens of
 * one sequence): query i sees positions 0..n_kv[i]-1 (and, in the one-token
 * arithmetic, a->single, llama.cpp's view of n_kv_pad[i] >= n_kv[i]
 * positions; n_kv_pad may be NULL when a->single is 0), and its output is
 * exactly duet_attn_head's with a->n_kv = n_kv[i], a->n_kv_pad = n_kv_pad[i];
 * a->n_kv and a->n_kv_pad are not used. Every position below the largest
 * n_kv[i] must be written in the cache. The AVX-512 paths load each K row and
 * V^T row once for all the queries. */
void duet_attn_heads(float *out /* (nq, out_stride) */, size_t out_stride, const float *q /* (nq, q_stride) */,
                     size_t q_stride, int nq, const int *n_kv /* (nq) */, const int *n_kv_pad /* (nq) or NULL */,
                     const duet_attn_args *a, void *scratch);

/* AVX2 twins (ops_avx2.c, attention_avx2.c); call only when duet_model_simd() is set. */
void duet_swiglu_avx2(float *y, const float *g, const float *u, int n);
void duet_rope_apply_avx2(float *x, const float *cs, int n_rot, int neox);
void duet_attn_head_avx2(float *out, const float *q, const duet_attn_args *a, void *scratch);
/* AVX-512 twin of duet_attn_heads in the several-token arithmetic
 * (a->single == 0; attention_avx512.c); call only when
 * duet_simd_level() >= 2 and head_dim % 16 == 0. */
void duet_attn_heads_avx512(float *out /* (nq, out_stride) */, size_t out_stride,
                            const float *q /* (nq, q_stride) */, size_t q_stride, int nq,
                            const int *n_kv /* (nq) */, const duet_attn_args *a, void *scratch);
/* The same for the one-token arithmetic (a->single == 1; duet_attn_head's
 * bits query by query): call only when duet_simd_level() >= 2 and
 * head_dim % 16 == 0. */
void duet_attn_heads_single_avx512(float *out /* (nq, out_stride) */, size_t out_stride,
                                   const float *q /* (nq, q_stride) */, size_t q_stride, int nq,
                                   const int *n_kv /* (nq) */, const int *n_kv_pad /* (nq) */,
                                   const duet_attn_args *a, void *scratch);
/* 1 when the AVX2 paths may run (CPU features and duet_simd_level() >= 1). */
int duet_model_simd(void);

#endif

/* AVX2+FMA+F16C twin of duet_attn_head_ref: the same bits. The 16 lanes of
 * llama.cpp's AVX-512 accumulators are two __m256 (lanes 0-7 and 8-15), and
 * their reduction follows _mm512_reduce_add_ps: lo+hi, then 128-bit halves,
 * then (0+2) + (1+3). V is stored transposed, so each output dim is one dot
 * product over contiguous positions, like q.k. Eight dot products are reduced
 * together (reduce8) in that same order. The body is compiled twice, for F16
 * and F32 caches. Requires head_dim % 16 == 0. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "model/attn_softmax_avx2.h"
#include "model/ops.h"

#define INLINE static inline __attribute__((always_inline))

/* hsum16 of 8 dot products at once: A[o] holds lo_o + hi_o (the first step
 * of the tree). Returns the 8 sums, each reduced in hsum16_avx's order:
 * lanes (i, i+4), then (0+2) + (1+3). */
INLINE __m256 reduce8(const __m256 A[8]) {
    __m256 B[4];
    for (int o = 0; o < 4; o++) /* [b(o) | b(o+4)], b_i = a_i + a_(i+4) */
        B[o] = _mm256_add_ps(_mm256_permute2f128_ps(A[o], A[o + 4], 0x20), _mm256_permute2f128_ps(A[o], A[o + 4], 0x31));
    /* [c0 c1 of o, of o+1 | of o+4, of o+5], c0 = b0 + b2, c1 = b1 + b3 */
    const __m256 P = _mm256_add_ps(_mm256_shuffle_ps(B[0], B[1], 0x44), _mm256_shuffle_ps(B[0], B[1], 0xEE));
    const __m256 Q = _mm256_add_ps(_mm256_shuffle_ps(B[2], B[3], 0x44), _mm256_shuffle_ps(B[2], B[3], 0xEE));
    return _mm256_hadd_ps(P, Q); /* c0 + c1 of 0 1 2 3 | 4 5 6 7 */
}

INLINE __m256 load8(const int f16, const void *base, size_t i) {
    if (f16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + i)));
    return _mm256_loadu_ps((const float *)base + i);
}

/* Eight values of a V^T row from position j; zero at positions >= n_kv
 * (rows are followed by DUET_V_SLACK, so the load stays inside the cache). */
INLINE __m256 load_v8(const int f16, const duet_attn_args *a, size_t row, int j) {
    const __m256 v = load8(f16, a->v, row + (size_t)j);
    return j + 8 <= a->n_kv ? v : _mm256_and_ps(v, valid8(j, a->n_kv));
}

/* ggml_vec_dot_f16 / _f32 tail: terms added one at a time (double for F16). */
INLINE float vec_dot_tail(const int f16, float r, const float *x, const float *y, int n) {
    if (f16) {
        double s = r;
        for (int k = 0; k < n; k++) s += (double)(x[k] * y[k]);
        return (float)s;
    }
    for (int k = 0; k < n; k++) r = fmaf(x[k], y[k], r);
    return r;
}

/* q.k of one position in the one-token arithmetic (ggml_vec_dot over head_dim). */
INLINE float qk_single(const int f16, const duet_attn_args *a, const float *qr, size_t row) {
    const int hd = a->head_dim, np = hd & ~63;
    __m256 acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
    for (int d = 0; d < np; d += 64)
        for (int i = 0; i < 8; i++)
            acc[i] = _mm256_fmadd_ps(load8(f16, a->k, row + d + 8 * i), _mm256_loadu_ps(qr + d + 8 * i), acc[i]);
    /* acc[2c], acc[2c+1]: lanes 0-7, 8-15 of accumulator c; fold 0+2, 1+3, 0+1 */
    for (int i = 0; i < 4; i++) acc[i] = _mm256_add_ps(acc[i], acc[i + 4]);
    acc[0] = _mm256_add_ps(acc[0], acc[2]);
    acc[1] = _mm256_add_ps(acc[1], acc[3]);
    const float r = hsum16_avx(acc[0], acc[1]);
    if (np == hd) return r;
    float kv[64];
    for (int d = np; d < hd; d += 8) _mm256_storeu_ps(kv + d - np, load8(f16, a->k, row + d));
    return vec_dot_tail(f16, r, kv, qr + np, hd - np);
}

/* q.k of one position in the batched arithmetic (tinyBLAS lanes). */
INLINE float qk_batched(const int f16, const duet_attn_args *a, const float *qr, size_t row) {
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (int d = 0; d < a->head_dim; d += 16) {
        lo = _mm256_fmadd_ps(load8(f16, a->k, row + d), _mm256_loadu_ps(qr + d), lo);
        hi = _mm256_fmadd_ps(load8(f16, a->k, row + d + 8), _mm256_loadu_ps(qr + d + 8), hi);
    }
    return hsum16_avx(lo, hi);
}

/* Batched q.k of positions j..j+3 into A[0..3] (lo + hi of each). */
INLINE void qk4(const int f16, const duet_attn_args *a, const float *qr, int j, __m256 *A) {
    __m256 lo[4], hi[4];
    for (int o = 0; o < 4; o++) lo[o] = hi[o] = _mm256_setzero_ps();
    for (int d = 0; d < a->head_dim; d += 16) {
        const __m256 q0 = _mm256_loadu_ps(qr + d), q1 = _mm256_loadu_ps(qr + d + 8);
        for (int o = 0; o < 4; o++) {
            const size_t row = (size_t)(j + o) * a->k_stride + (size_t)d;
            lo[o] = _mm256_fmadd_ps(load8(f16, a->k, row), q0, lo[o]);
            hi[o] = _mm256_fmadd_ps(load8(f16, a->k, row + 8), q1, hi[o]);
        }
    }
    for (int o = 0; o < 4; o++) A[o] = _mm256_add_ps(lo[o], hi[o]);
}

/* Batched p.v of output dims d..d+3 into A[0..3] (tinyBLAS lanes over positions). */
INLINE void pv4(const int f16, const duet_attn_args *a, const float *w, int d, __m256 *A) {
    __m256 lo[4], hi[4];
    for (int o = 0; o < 4; o++) lo[o] = hi[o] = _mm256_setzero_ps();
    for (int j = 0; j < a->n_kv; j += 16) {
        const __m256 w0 = _mm256_loadu_ps(w + j), w1 = _mm256_loadu_ps(w + j + 8);
        for (int o = 0; o < 4; o++) {
            const size_t row = (size_t)(d + o) * a->v_stride;
            lo[o] = _mm256_fmadd_ps(load_v8(f16, a, row, j), w0, lo[o]);
            hi[o] = _mm256_fmadd_ps(load_v8(f16, a, row, j + 8), w1, hi[o]);
        }
    }
    for (int o = 0; o < 4; o++) A[o] = _mm256_add_ps(lo[o], hi[o]);
}

/* p.v of one output dim in the one-token arithmetic (ggml_vec_dot over
 * llama.cpp's padded view of n_kv_pad positions). */
INLINE float pv_single(const int f16, const duet_attn_args *a, size_t row, const float *w) {
    const int n_kv = a->n_kv, np = a->n_kv_pad & ~63, n_simd = np < n_kv ? np : n_kv;
    __m256 acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
    for (int j = 0; j < n_simd; j += 64)
        for (int i = 0; i < 8; i++)
            acc[i] = _mm256_fmadd_ps(load_v8(f16, a, row, j + 8 * i), _mm256_loadu_ps(w + j + 8 * i), acc[i]);
    for (int i = 0; i < 4; i++) acc[i] = _mm256_add_ps(acc[i], acc[i + 4]);
    acc[0] = _mm256_add_ps(acc[0], acc[2]);
    acc[1] = _mm256_add_ps(acc[1], acc[3]);
    float r = hsum16_avx(acc[0], acc[1]);
    for (int j = np; j < n_kv; j += 64) { /* one pass: n_kv <= n_kv_pad < np + 64 */
        float t[64];
        const int cnt = n_kv - j < 64 ? n_kv - j : 64;
        for (int k = 0; k < cnt; k += 8) _mm256_storeu_ps(t + k, load_v8(f16, a, row, j + k));
        r = vec_dot_tail(f16, r, t, w + j, cnt);
    }
    return r;
}

INLINE void attn_head(const int f16, float *out, const float *q, const duet_attn_args *a, void *scratch) {
    const int hd = a->head_dim, n_kv = a->n_kv;
    float *qr = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63); /* (hd) */
    float *w = qr + pad16(hd);                                         /* (pad64(n_kv)) */

    for (int d = 0; d < hd; d += 8) _mm256_storeu_ps(qr + d, round8(f16, _mm256_loadu_ps(q + d)));

    /* scores */
    const __m256 vscale = _mm256_set1_ps(a->scale);
    int j = 0;
    if (a->single) {
        for (; j < n_kv; j++) w[j] = qk_single(f16, a, qr, (size_t)j * a->k_stride) * a->scale;
    } else {
        __m256 A[8];
        for (; j + 8 <= n_kv; j += 8) {
            qk4(f16, a, qr, j, A);
            qk4(f16, a, qr, j + 4, A + 4);
            _mm256_storeu_ps(w + j, _mm256_mul_ps(reduce8(A), vscale));
        }
        for (; j < n_kv; j++) w[j] = qk_batched(f16, a, qr, (size_t)j * a->k_stride) * a->scale;
    }
    attn_softmax(f16, w, n_kv, pad64(n_kv));

    /* outputs */
    if (a->single) {
        for (int d = 0; d < hd; d++) out[d] = pv_single(f16, a, (size_t)d * a->v_stride, w);
        return;
    }
    __m256 A[8];
    for (int d = 0; d < hd; d += 8) {
        pv4(f16, a, w, d, A);
        pv4(f16, a, w, d + 4, A + 4);
        _mm256_storeu_ps(out + d, reduce8(A));
    }
}

void duet_attn_head_avx2(float *out, const float *q, const duet_attn_args *a, void *scratch) {
    if (a->kv_f16) attn_head(1, out, q, a, scratch);
    else attn_head(0, out, q, a, scratch);
}

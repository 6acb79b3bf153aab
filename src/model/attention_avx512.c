/* AVX-512 multi-query twin of the batched (several tokens) arithmetic of
 * duet_attn_head: up to DUET_ATTN_MAX_Q queries of one head (consecutive
 * tokens of one sequence) over the same cache, so that each K row and V^T row
 * loaded is used by every query. The bits are those of duet_attn_head with
 * a->single == 0, query by query:
 *  - q.k: one zmm accumulator per (query, position) is exactly the 16 lanes
 *    (d % 16) of the batched arithmetic; p.v: one per (query, output dim),
 *    lanes j % 16 over positions;
 *  - sixteen accumulators are reduced together (reduce16) in
 *    _mm512_reduce_add_ps's order;
 *  - the softmax is attention_avx2.c's (attn_softmax_avx2.h), per query over
 *    its own n_kv.
 * A query with fewer positions than the group's largest n_kv has zero
 * probabilities past its n_kv: its extra p.v products are exact zeros, and an
 * accumulator that starts at +0 never becomes -0, so adding them changes
 * nothing. Every V value multiplied lies below the largest n_kv (written to
 * the cache) or is masked to 0. Requires head_dim % 16 == 0. */
#include <immintrin.h>
#include <stdint.h>

#include "model/attn_softmax_avx2.h"
#include "model/ops.h"

#define INLINE static inline __attribute__((always_inline))
#define MQ DUET_ATTN_MAX_Q
/* The tiles' accumulator arrays must live in registers: loops over them are
 * unrolled completely (-O2 would keep them in memory). */
#define UNROLL _Pragma("GCC unroll 16")

/* Sixteen sums at once: lane i of the result is X[i] reduced as
 * _mm512_reduce_add_ps does (a_i = l_i + l_(i+8), b_i = a_i + a_(i+4),
 * (b0 + b2) + (b1 + b3)). The tree leaves the sum of its input s in lane
 * 4*(s%4) + s/4, so it is fed X in that transposed order. */
INLINE __m512 reduce16(const __m512 X[16]) {
#define TR(s) X[4 * ((s) % 4) + (s) / 4]
    __m512 T[8], U[4];
    UNROLL
    for (int m = 0; m < 8; m++) { /* [a(x) | a(y)] in 256-bit halves */
        const __m512 x = TR(2 * m), y = TR(2 * m + 1);
        T[m] = _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x44), _mm512_shuffle_f32x4(x, y, 0xEE));
    }
#undef TR
    UNROLL
    for (int n = 0; n < 4; n++) /* [b of 4 inputs] in 128-bit chunks */
        U[n] = _mm512_add_ps(_mm512_shuffle_f32x4(T[2 * n], T[2 * n + 1], 0x88),
                             _mm512_shuffle_f32x4(T[2 * n], T[2 * n + 1], 0xDD));
    /* per chunk: [c0 c1 of U0, of U1] and [of U2, of U3], c0 = b0 + b2, c1 = b1 + b3 */
    const __m512 P = _mm512_add_ps(_mm512_shuffle_ps(U[0], U[1], 0x44), _mm512_shuffle_ps(U[0], U[1], 0xEE));
    const __m512 Q = _mm512_add_ps(_mm512_shuffle_ps(U[2], U[3], 0x44), _mm512_shuffle_ps(U[2], U[3], 0xEE));
    return _mm512_add_ps(_mm512_shuffle_ps(P, Q, 0x88), _mm512_shuffle_ps(P, Q, 0xDD)); /* c0 + c1 */
}

/* Lanes 4q..4q+3 of s to dst[q] + off, for the first nq queries (the
 * extracts need immediates, hence no loop). */
INLINE void store4(__m512 s, float *const dst[MQ], const int nq, size_t off) {
    _mm_storeu_ps(dst[0] + off, _mm512_castps512_ps128(s));
    if (nq > 1) _mm_storeu_ps(dst[1] + off, _mm512_extractf32x4_ps(s, 1));
    if (nq > 2) _mm_storeu_ps(dst[2] + off, _mm512_extractf32x4_ps(s, 2));
    if (nq > 3) _mm_storeu_ps(dst[3] + off, _mm512_extractf32x4_ps(s, 3));
}

INLINE __m512 load16(const int f16, const void *base, size_t i) {
    if (f16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)base + i)));
    return _mm512_loadu_ps((const float *)base + i);
}

/* Sixteen values of a V^T row from position j, zero at positions >= n (the
 * masked lanes are not read). */
INLINE __m512 load_v16(const int f16, const void *v, size_t row, int j, int n) {
    if (j + 16 <= n) return load16(f16, v, row + (size_t)j);
    const __mmask16 m = (__mmask16)((1u << (n - j)) - 1);
    if (f16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)v + row + (size_t)j));
    return _mm512_maskz_loadu_ps(m, (const float *)v + row + (size_t)j);
}

/* Scaled scores of positions j..j+3 (key rows row[0..3]) for nq queries. */
INLINE void qk_tile(const int f16, const int nq, const duet_attn_args *a, const float *qr /* (MQ, hds) */, int hds,
                    const size_t row[4], float *const w[MQ], int j) {
    __m512 acc[16];
    UNROLL
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    for (int d = 0; d < a->head_dim; d += 16) {
        __m512 k[4];
        UNROLL
        for (int p = 0; p < 4; p++) k[p] = load16(f16, a->k, row[p] + (size_t)d);
        UNROLL
        for (int i = 0; i < nq; i++) {
            const __m512 qv = _mm512_load_ps(qr + (size_t)i * hds + d);
            UNROLL
            for (int p = 0; p < 4; p++) acc[4 * i + p] = _mm512_fmadd_ps(k[p], qv, acc[4 * i + p]);
        }
    }
    store4(_mm512_mul_ps(reduce16(acc), _mm512_set1_ps(a->scale)), w, nq, (size_t)j);
}

/* acc[4i + o] += V^T row o (values v[o]) times the probabilities of query i at j. */
INLINE void pv_step(const int nq, __m512 acc[16], const __m512 v[4], const float *const w[MQ], int j) {
    UNROLL
    for (int i = 0; i < nq; i++) {
        const __m512 wv = _mm512_loadu_ps(w[i] + j);
        UNROLL
        for (int o = 0; o < 4; o++) acc[4 * i + o] = _mm512_fmadd_ps(v[o], wv, acc[4 * i + o]);
    }
}

/* Output dims d..d+3 of nq queries, over positions 0..n_max-1. */
INLINE void pv_tile(const int f16, const int nq, const duet_attn_args *a, const float *const w[MQ], int n_max, int d,
                    float *const out[MQ]) {
    __m512 acc[16], v[4];
    size_t row[4];
    UNROLL
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    UNROLL
    for (int o = 0; o < 4; o++) row[o] = (size_t)(d + o) * a->v_stride;
    const int full = n_max & ~15;
    int j = 0;
    for (; j < full; j += 16) {
        UNROLL
        for (int o = 0; o < 4; o++) v[o] = load16(f16, a->v, row[o] + (size_t)j);
        pv_step(nq, acc, v, w, j);
    }
    if (j < n_max) {
        UNROLL
        for (int o = 0; o < 4; o++) v[o] = load_v16(f16, a->v, row[o], j, n_max);
        pv_step(nq, acc, v, w, j);
    }
    store4(reduce16(acc), out, nq, (size_t)d);
}

INLINE void attn_heads(const int f16, const int nq, float *out, size_t out_stride, const float *q, size_t q_stride,
                       const int *n_kv, const duet_attn_args *a, void *scratch) {
    const int hd = a->head_dim, hds = pad16(hd);
    int n_max = 0;
    for (int i = 0; i < nq; i++) n_max = n_kv[i] > n_max ? n_kv[i] : n_max;
    const int wn = pad64(n_max);
    float *qr = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63); /* (MQ, hds) */
    float *w[MQ], *o[MQ];                                              /* (wn) each; (head_dim) each */
    for (int i = 0; i < MQ; i++) {
        w[i] = qr + (size_t)MQ * hds + (size_t)i * wn;
        o[i] = out + (size_t)(i < nq ? i : 0) * out_stride;
    }

    for (int i = 0; i < nq; i++)
        for (int d = 0; d < hd; d += 16) {
            const __m512 x = _mm512_loadu_ps(q + (size_t)i * q_stride + d);
            _mm512_store_ps(qr + (size_t)i * hds + d,
                            f16 ? _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)) : x);
        }

    /* scores of every query at positions below n_max (rows past it clamped
     * to the last written one; those scores are dropped by the softmax) */
    for (int j = 0; j < n_max; j += 4) {
        size_t row[4];
        UNROLL
        for (int p = 0; p < 4; p++) row[p] = (size_t)(j + p < n_max ? j + p : n_max - 1) * a->k_stride;
        qk_tile(f16, nq, a, qr, hds, row, w, j);
    }
    for (int i = 0; i < nq; i++) attn_softmax(f16, w[i], n_kv[i], pad16(n_max));

    for (int d = 0; d < hd; d += 4) pv_tile(f16, nq, a, (const float *const *)w, n_max, d, o);
}

void duet_attn_heads_avx512(float *out, size_t out_stride, const float *q, size_t q_stride, int nq,
                            const int *n_kv, const duet_attn_args *a, void *scratch) {
#define CASE(n)                                                                         \
    case n:                                                                             \
        if (a->kv_f16) attn_heads(1, n, out, out_stride, q, q_stride, n_kv, a, scratch); \
        else attn_heads(0, n, out, out_stride, q, q_stride, n_kv, a, scratch);           \
        return;
    switch (nq) {
        CASE(1)
        CASE(2)
        CASE(3)
        CASE(4)
    }
#undef CASE
}

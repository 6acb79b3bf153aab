/* AVX-512 multi-query twins of duet_attn_head: up to DUET_ATTN_MAX_Q queries
 * of one head (consecutive tokens of one sequence) over the same cache, so
 * that each K row and V^T row loaded is used by every query. Two
 * arithmetics: the batched one (several tokens, a->single == 0) first, the
 * one-token one (decode-consistent blocks) at the end of the file.
 *
 * Batched: the bits are those of duet_attn_head with a->single == 0, query
 * by query:
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
#include "model/transpose_avx2.h"
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

/* ==== the one-token arithmetic (ggml_vec_dot_f16 / _f32) for several queries ====
 *
 * Decode-consistent blocks (speculative verification) give every token the
 * one-token arithmetic, so that its bits equal a one-token eval: per query,
 * q.k and p.v are duet_attn_head_ref's dot_ggml, i.e. over each whole 64
 * elements of the view 4 x 16 FMA lanes (element k into accumulator
 * (k >> 4) & 3, lane k & 15), folded (0+2) + (1+3), reduced as
 * _mm512_reduce_add_ps; then the sequential tail (in double for F16, fmaf
 * for F32). A zmm accumulator is exactly one of those 16-lane accumulators,
 * so query i's accumulators here receive the same FMAs, in the same order, as
 * in attention_avx2.c's single path; the queries merely share the K and V^T
 * loads (and their F16 conversion). What differs between the queries of a
 * group is handled per query:
 *  - q.k does not depend on n_kv: the scores of every position below the
 *    largest n_kv are computed for all queries and each query's softmax
 *    (attn_softmax_avx2.h, the one-query code) reads only its own n_kv;
 *  - p.v: query i's view has n_kv_pad[i] elements, of which the first
 *    n_kv[i] are nonzero: its body covers positions below
 *    lim_i = min(n_kv_pad[i] & ~63, n_kv[i]) and its tail
 *    n_kv_pad[i] & ~63 .. n_kv[i]-1. Body FMAs past lim_i are masked per
 *    query (a masked lane keeps its accumulator, exactly as ggml skips the
 *    term), so values past a query's n_kv (finite or not, written or not)
 *    never reach its sums; its tail runs over its own range.
 * Sixteen rows at a time (positions j..j+15 for q.k, output dims d..d+15
 * for p.v): each query's sixteen dot products are reduced together
 * (reduce16, lane r = row r) and continued by the tails with one chain per
 * lane. Requires head_dim % 16 == 0. */

/* (a0 + a2) + (a1 + a3): ggml's fold of its four accumulators. */
INLINE __m512 fold4(const __m512 acc[4]) {
    return _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
}

INLINE __m256 load8(const int f16, const void *base, size_t i) {
    if (f16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + i)));
    return _mm256_loadu_ps((const float *)base + i);
}

/* One term of the tails of query i at element k: x0, x1 hold element k of
 * rows 0-7, 8-15; yk = y_i[k]. F16: s += (double)(x * y) in S[0] (rows 0-7)
 * and S[1] (rows 8-15); F32: r = fmaf(x, y, r) in R[0], R[1]. */
INLINE void tail_term(const int f16, __m256 x0, __m256 x1, float yk, __m512d S[2], __m256 R[2]) {
    const __m256 y = _mm256_set1_ps(yk);
    if (f16) {
        S[0] = _mm512_add_pd(S[0], _mm512_cvtps_pd(_mm256_mul_ps(x0, y)));
        S[1] = _mm512_add_pd(S[1], _mm512_cvtps_pd(_mm256_mul_ps(x1, y)));
    } else {
        R[0] = _mm256_fmadd_ps(x0, y, R[0]);
        R[1] = _mm256_fmadd_ps(x1, y, R[1]);
    }
}

/* ggml_vec_dot's sequential tails of sixteen rows for nq queries: lane r of
 * r_i (query i's reduced body) continues, for k = lo[i] .. hi[i]-1 in order,
 *   F16: s = (double)r; s += (double)(x_r[k] * y_i[k]); r = (float)s
 *   F32: r = fmaf(x_r[k], y_i[k], r)
 * with x_r[k] the cache element at off[r] + k; lo[i] is a multiple of 8.
 * Each chain is sequential, so it is vectorized across rows: lane r performs
 * row r's operations in row r's order, and each vector operation is the same
 * correctly rounded IEEE operation per lane (vmulps = float *, vcvtps2pd =
 * exact widening, vaddpd = double +, vcvtpd2ps = (float), vfmadd = fmaf), so
 * every lane has the bits of duet_attn_head_ref's scalar loop. Rows are read
 * eight elements at a time and transposed (shared by the queries); elements
 * up to pad8 past hi[i] are loaded (they must lie inside the allocation) but
 * never enter a sum. */
INLINE void tails16(const int f16, const int nq, const void *base, const size_t off[16], const float *const y[MQ],
                    const int lo[MQ], const int hi[MQ], __m512 r[MQ]) {
    int k0 = 1 << 30, k1 = 0;
    for (int i = 0; i < nq; i++)
        if (lo[i] < hi[i]) {
            k0 = lo[i] < k0 ? lo[i] : k0;
            k1 = hi[i] > k1 ? hi[i] : k1;
        }
    if (k0 >= k1) return;
    __m512d S[MQ][2];
    __m256 R[MQ][2];
    UNROLL
    for (int i = 0; i < nq; i++) {
        R[i][0] = _mm512_castps512_ps256(r[i]);
        R[i][1] = _mm512_extractf32x8_ps(r[i], 1);
        S[i][0] = _mm512_cvtps_pd(R[i][0]);
        S[i][1] = _mm512_cvtps_pd(R[i][1]);
    }
    for (int c = k0; c < k1; c += 8) {
        __m256 x0[8], x1[8];
        UNROLL
        for (int t = 0; t < 8; t++) {
            x0[t] = load8(f16, base, off[t] + (size_t)c);
            x1[t] = load8(f16, base, off[t + 8] + (size_t)c);
        }
        transpose8(x0);
        transpose8(x1);
        UNROLL
        for (int i = 0; i < nq; i++) {
            if (c < lo[i] || c >= hi[i]) continue;
            if (c + 8 <= hi[i]) {
                UNROLL
                for (int t = 0; t < 8; t++) tail_term(f16, x0[t], x1[t], y[i][c + t], S[i], R[i]);
            } else { /* the last, partial chunk of query i */
                float col[2][8][8];
                UNROLL
                for (int t = 0; t < 8; t++) {
                    _mm256_storeu_ps(col[0][t], x0[t]);
                    _mm256_storeu_ps(col[1][t], x1[t]);
                }
                for (int t = 0; t < hi[i] - c; t++)
                    tail_term(f16, _mm256_loadu_ps(col[0][t]), _mm256_loadu_ps(col[1][t]), y[i][c + t], S[i], R[i]);
            }
        }
    }
    UNROLL
    for (int i = 0; i < nq; i++) {
        if (f16) {
            R[i][0] = _mm512_cvtpd_ps(S[i][0]);
            R[i][1] = _mm512_cvtpd_ps(S[i][1]);
        }
        r[i] = _mm512_insertf32x8(_mm512_castps256_ps512(R[i][0]), R[i][1], 1);
    }
}

/* The lanes of a 16-element chunk whose positions lie below n (n relative
 * to the chunk's start). */
INLINE __mmask16 below(int n) { return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

INLINE void attn_heads_single(const int f16, const int nq, float *out, size_t out_stride, const float *q,
                              size_t q_stride, const int *n_kv, const int *n_kv_pad, const duet_attn_args *a,
                              void *scratch) {
    const int hd = a->head_dim, hds = pad16(hd), npq = hd & ~63;
    int n_max = 0;
    for (int i = 0; i < nq; i++) n_max = n_kv[i] > n_max ? n_kv[i] : n_max;
    const int wn = pad64(n_max);
    float *qr = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63); /* (MQ, hds) */
    float *w[MQ];                                                      /* (wn) each */
    const float *qy[MQ];
    for (int i = 0; i < MQ; i++) {
        w[i] = qr + (size_t)MQ * hds + (size_t)i * wn;
        qy[i] = qr + (size_t)i * hds;
    }

    for (int i = 0; i < nq; i++)
        for (int d = 0; d < hd; d += 16) {
            const __m512 x = _mm512_loadu_ps(q + (size_t)i * q_stride + d);
            _mm512_store_ps(qr + (size_t)i * hds + d,
                            f16 ? _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)) : x);
        }

    /* scores of every query at positions below n_max, 16 at a time (the
     * rows of a last, partial group are not computed: their lanes are 0 and
     * land in w's padding; the tails read rows clamped to the last written
     * one). q.k's view is head_dim long: body over npq, tail npq..hd-1. */
    const __m512 vscale = _mm512_set1_ps(a->scale);
    int qlo[MQ], qhi[MQ];
    for (int i = 0; i < MQ; i++) qlo[i] = npq, qhi[i] = hd;
    for (int j = 0; j < n_max; j += 16) {
        __m512 X[MQ][16], R[MQ];
        size_t off[16];
        const int rows = n_max - j < 16 ? n_max - j : 16;
        for (int p = 0; p < 16; p++) off[p] = (size_t)(p < rows ? j + p : n_max - 1) * a->k_stride;
        for (int p = 0; p < 16; p++) {
            __m512 acc[MQ][4];
            UNROLL
            for (int i = 0; i < nq; i++)
                UNROLL
                for (int s = 0; s < 4; s++) acc[i][s] = _mm512_setzero_ps();
            if (p < rows)
                for (int c = 0; c < npq; c += 64) {
                    __m512 k[4];
                    UNROLL
                    for (int s = 0; s < 4; s++) k[s] = load16(f16, a->k, off[p] + (size_t)(c + 16 * s));
                    UNROLL
                    for (int i = 0; i < nq; i++)
                        UNROLL
                        for (int s = 0; s < 4; s++)
                            acc[i][s] = _mm512_fmadd_ps(k[s], _mm512_load_ps(qy[i] + c + 16 * s), acc[i][s]);
                }
            UNROLL
            for (int i = 0; i < nq; i++) X[i][p] = fold4(acc[i]);
        }
        UNROLL
        for (int i = 0; i < nq; i++) R[i] = reduce16(X[i]);
        if (npq < hd) tails16(f16, nq, a->k, off, qy, qlo, qhi, R);
        UNROLL
        for (int i = 0; i < nq; i++) _mm512_storeu_ps(w[i] + j, _mm512_mul_ps(R[i], vscale));
    }
    for (int i = 0; i < nq; i++) attn_softmax(f16, w[i], n_kv[i], wn);

    /* outputs: query i's p.v over its view of n_kv_pad[i] positions, 16
     * output dims at a time: body below lim[i], tail plo[i]..phi[i]-1 */
    int lim[MQ], plo[MQ], phi[MQ], lim_max = 0, lim_min = 1 << 30;
    for (int i = 0; i < nq; i++) {
        plo[i] = n_kv_pad[i] & ~63;
        phi[i] = n_kv[i];
        lim[i] = plo[i] < phi[i] ? plo[i] : phi[i];
        lim_max = lim[i] > lim_max ? lim[i] : lim_max;
        lim_min = lim[i] < lim_min ? lim[i] : lim_min;
    }
    for (int d = 0; d < hd; d += 16) {
        __m512 X[MQ][16], R[MQ];
        size_t off[16];
        for (int o = 0; o < 16; o++) off[o] = (size_t)(d + o) * a->v_stride;
        for (int o = 0; o < 16; o++) {
            __m512 acc[MQ][4];
            UNROLL
            for (int i = 0; i < nq; i++)
                UNROLL
                for (int s = 0; s < 4; s++) acc[i][s] = _mm512_setzero_ps();
            /* whole blocks below every lim[i]: plain FMAs. Then the blocks
             * holding a lim[i]: FMAs masked per query, chunks of 16 wholly
             * past every lim[i] skipped (all their FMAs would be masked).
             * The loads stay below the largest plo: at most 31 positions
             * past the row's n_ctx (duet_attn_kv_pad), inside the next row
             * or DUET_V_SLACK. */
            int c = 0;
            for (; c + 64 <= lim_min; c += 64) {
                __m512 v[4];
                UNROLL
                for (int s = 0; s < 4; s++) v[s] = load16(f16, a->v, off[o] + (size_t)(c + 16 * s));
                UNROLL
                for (int i = 0; i < nq; i++)
                    UNROLL
                    for (int s = 0; s < 4; s++)
                        acc[i][s] = _mm512_fmadd_ps(v[s], _mm512_loadu_ps(w[i] + c + 16 * s), acc[i][s]);
            }
            for (; c < lim_max; c += 64)
                UNROLL
                for (int s = 0; s < 4; s++) {
                    const int k = c + 16 * s;
                    if (k >= lim_max) break;
                    const __m512 v = load16(f16, a->v, off[o] + (size_t)k);
                    UNROLL
                    for (int i = 0; i < nq; i++)
                        if (k < lim[i])
                            acc[i][s] = _mm512_mask3_fmadd_ps(v, _mm512_loadu_ps(w[i] + k), acc[i][s], below(lim[i] - k));
                }
            UNROLL
            for (int i = 0; i < nq; i++) X[i][o] = fold4(acc[i]);
        }
        UNROLL
        for (int i = 0; i < nq; i++) R[i] = reduce16(X[i]);
        tails16(f16, nq, a->v, off, (const float *const *)w, plo, phi, R);
        UNROLL
        for (int i = 0; i < nq; i++) _mm512_storeu_ps(out + (size_t)i * out_stride + d, R[i]);
    }
}

void duet_attn_heads_single_avx512(float *out, size_t out_stride, const float *q, size_t q_stride, int nq,
                                   const int *n_kv, const int *n_kv_pad, const duet_attn_args *a, void *scratch) {
    if (nq == 1) { /* nothing to share */
        duet_attn_args one = *a;
        one.n_kv = n_kv[0];
        one.n_kv_pad = n_kv_pad[0];
        duet_attn_head_avx2(out, q, &one, scratch);
        return;
    }
#define CASE(n)                                                                                             \
    case n:                                                                                                 \
        if (a->kv_f16) attn_heads_single(1, n, out, out_stride, q, q_stride, n_kv, n_kv_pad, a, scratch);   \
        else attn_heads_single(0, n, out, out_stride, q, q_stride, n_kv, n_kv_pad, a, scratch);             \
        return;
    switch (nq) {
        CASE(2)
        CASE(3)
        CASE(4)
    }
#undef CASE
}

/* AVX2+FMA+F16C twin of duet_attn_head_ref: the same bits. The 16 lanes of
 * llama.cpp's AVX-512 accumulators are two __m256 (lanes 0-7 and 8-15), and
 * their reduction follows _mm512_reduce_add_ps: lo+hi, then 128-bit halves,
 * then (0+2) + (1+3). V is stored transposed, so each output dim is one dot
 * product over contiguous positions, like q.k. Eight dot products are reduced
 * together (reduce8) in that same order. In the one-token arithmetic the
 * sequential tail of ggml_vec_dot (all of q.k when head_dim < 64) is run for
 * sixteen dot products at once, one per lane (vec_dot_tails), and two such
 * groups side by side where there are 32 keys or output dims: one group's 4
 * (F16) or 2 (F32) chains wait on the add latency, two keep twice as many in
 * flight (the one-token attention of a 64-dim head ~1.45x faster, same bits).
 * The body is compiled twice, for F16 and F32 caches. Requires
 * head_dim % 16 == 0. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "model/attn_softmax_avx2.h"
#include "model/transpose_avx2.h"
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

/* ---- the one-token arithmetic (ggml_vec_dot_f16 / _f32), eight dot products
 * at a time: eight keys for q.k, eight output dims for p.v ---- */

/* Loops over accumulator arrays are unrolled so that they live in registers
 * (-O2 would keep them in memory). */
#define UNROLL _Pragma("GCC unroll 8")

/* ggml_vec_dot's tail of sixteen dot products: lane i of r[g] returns, for
 * row R = 8g + i,
 *   F16: s = r_R; for k in c0..n-1: s += (double)(x_R[k] * y[k]); (float)s
 *   F32: s = r_R; for k in c0..n-1: s = fmaf(x_R[k], y[k], s)
 * with x_R[k] the cache element at off[R] + k. Each chain is sequential (in
 * double, or fmaf, one term at a time), so it cannot be split within a dot
 * product; it is vectorized across independent ones instead. Lane i performs
 * row R's operations in row R's order, and each vector operation is the same
 * correctly rounded IEEE operation per lane (vmulps = float *, vcvtps2pd =
 * exact widening, vaddpd = double +, vcvtpd2ps = (float), vfmadd = fmaf), so
 * every lane has the bits of the scalar loop in duet_attn_head_ref.
 *
 * Rows are read eight elements (k = c..c+7) at a time; elements at n and past
 * in the last, partial block are loaded (they must lie inside the
 * allocation) and may be multiplied, but never enter a sum.
 *
 * F16: s is in double, four rows per __m256d (S[q]: rows 4q..4q+3). The
 * products x_R[k] * y[k] of four rows are formed row-wise (the same float
 * products: * commutes), half-transposed in-lane to
 * P[q][t] = [k = c+t of the 4 rows | k = c+t+4 of the 4 rows] (t < 4) and
 * widened from memory. The shuffle port limits this loop; vcvtps2pd from
 * memory takes no shuffle uop, while from a register it does, as does the
 * extract of a high half and the cross-lane last step of a full transpose
 * (measured about 1.4x faster than that). F32: rows fully transposed in
 * registers, so that x[t] holds element c+t of eight rows, and fmadd into
 * r[g]. */
INLINE void vec_dot_tails(const int G, const int f16, const void *base, const size_t *off, const float *y, int c0,
                          int n, __m256 *r) {
    /* G groups of sixteen dot products (off[16 * G], r[2 * G]) side by side:
     * each lane's chain is sequential, so a group alone waits on the add (or
     * fma) latency; two groups keep twice the chains in flight. */
    if (f16) {
        __m256d S[8];
        UNROLL
        for (int g = 0; g < 2 * G; g++) {
            S[2 * g] = _mm256_cvtps_pd(_mm256_castps256_ps128(r[g]));
            S[2 * g + 1] = _mm256_cvtps_pd(_mm256_extractf128_ps(r[g], 1));
        }
        for (int c = c0; c < n; c += 8) {
            float P[8][4][8] __attribute__((aligned(32)));
            const __m256 yv = _mm256_loadu_ps(y + c);
            UNROLL
            for (int q = 0; q < 4 * G; q++) {
                __m256 x[4], t[4];
                UNROLL
                for (int i = 0; i < 4; i++) x[i] = _mm256_mul_ps(load8(1, base, off[4 * q + i] + (size_t)c), yv);
                t[0] = _mm256_unpacklo_ps(x[0], x[1]); /* a0 b0 a1 b1 | a4 b4 a5 b5 */
                t[1] = _mm256_unpackhi_ps(x[0], x[1]); /* a2 b2 a3 b3 | a6 b6 a7 b7 */
                t[2] = _mm256_unpacklo_ps(x[2], x[3]);
                t[3] = _mm256_unpackhi_ps(x[2], x[3]);
                _mm256_store_ps(P[q][0], _mm256_shuffle_ps(t[0], t[2], 0x44)); /* a0 b0 c0 d0 | a4 b4 c4 d4 */
                _mm256_store_ps(P[q][1], _mm256_shuffle_ps(t[0], t[2], 0xEE));
                _mm256_store_ps(P[q][2], _mm256_shuffle_ps(t[1], t[3], 0x44));
                _mm256_store_ps(P[q][3], _mm256_shuffle_ps(t[1], t[3], 0xEE));
            }
            /* P must really be stored: otherwise the compiler forwards the
             * stores and widens from registers again */
            __asm__("" : "+m"(P));
            const int m = n - c < 8 ? n - c : 8;
            if (m == 8) {
                UNROLL
                for (int t = 0; t < 8; t++)
                    UNROLL
                    for (int q = 0; q < 4 * G; q++)
                        S[q] = _mm256_add_pd(S[q], _mm256_cvtps_pd(_mm_load_ps(P[q][t & 3] + 4 * (t >> 2))));
            } else {
                for (int t = 0; t < m; t++)
                    UNROLL
                    for (int q = 0; q < 4 * G; q++)
                        S[q] = _mm256_add_pd(S[q], _mm256_cvtps_pd(_mm_load_ps(P[q][t & 3] + 4 * (t >> 2))));
            }
        }
        UNROLL
        for (int g = 0; g < 2 * G; g++) r[g] = _mm256_set_m128(_mm256_cvtpd_ps(S[2 * g + 1]), _mm256_cvtpd_ps(S[2 * g]));
        return;
    }
    for (int c = c0; c < n; c += 8) {
        const int m = n - c < 8 ? n - c : 8;
        UNROLL
        for (int g = 0; g < 2 * G; g++) {
            __m256 x[8];
            UNROLL
            for (int i = 0; i < 8; i++) x[i] = load8(0, base, off[8 * g + i] + (size_t)c);
            transpose8(x);
            if (m == 8) {
                UNROLL
                for (int t = 0; t < 8; t++) r[g] = _mm256_fmadd_ps(x[t], _mm256_broadcast_ss(y + c + t), r[g]);
            } else {
                float col[8][8];
                UNROLL
                for (int t = 0; t < 8; t++) _mm256_storeu_ps(col[t], x[t]);
                for (int t = 0; t < m; t++) r[g] = _mm256_fmadd_ps(_mm256_loadu_ps(col[t]), _mm256_broadcast_ss(y + c + t), r[g]);
            }
        }
    }
}

/* ggml_vec_dot_f16 / _f32 of 16 * G rows (elements off[R] + k of the cache)
 * with y, over a view of n elements (n_nz <= n of them nonzero, the rest
 * treated as 0), into r[0] (rows 0-7), r[1] (rows 8-15), ...: 4 x 16 FMA lanes
 * over each whole 64 elements (np = n & ~63; elements at n_nz and past masked
 * to 0, as load_v8 does), folded 0+2, 1+3, 0+1 and reduced by reduce8 in
 * hsum16_avx's order; then the tail np..n_nz-1. */
INLINE void vec_dot_single(const int G, const int f16, const void *base, const size_t *off, const float *y, int n,
                           int n_nz, __m256 *r) {
    const int np = n & ~63, n_simd = np < n_nz ? np : n_nz;
    for (int g = 0; g < 2 * G; g++) r[g] = _mm256_setzero_ps(); /* the sum of llama.cpp's zero accumulators */
    if (n_simd > 0)
        for (int g = 0; g < 2 * G; g++) {
            __m256 A[8];
            UNROLL
            for (int o = 0; o < 8; o++) {
                __m256 acc[8];
                UNROLL
                for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
                int c = 0;
                for (; c + 64 <= n_nz && c < n_simd; c += 64)
                    UNROLL
                    for (int i = 0; i < 8; i++)
                        acc[i] = _mm256_fmadd_ps(load8(f16, base, off[8 * g + o] + (size_t)(c + 8 * i)),
                                                 _mm256_loadu_ps(y + c + 8 * i), acc[i]);
                if (c < n_simd) /* the block holding n_nz */
                    UNROLL
                    for (int i = 0; i < 8; i++) {
                        const int k = c + 8 * i;
                        const __m256 x = _mm256_and_ps(load8(f16, base, off[8 * g + o] + (size_t)k), valid8(k, n_nz));
                        acc[i] = _mm256_fmadd_ps(x, _mm256_loadu_ps(y + k), acc[i]);
                    }
                /* acc[2c], acc[2c+1]: lanes 0-7, 8-15 of accumulator c; fold 0+2, 1+3, 0+1 */
                UNROLL
                for (int i = 0; i < 4; i++) acc[i] = _mm256_add_ps(acc[i], acc[i + 4]);
                acc[0] = _mm256_add_ps(acc[0], acc[2]);
                acc[1] = _mm256_add_ps(acc[1], acc[3]);
                A[o] = _mm256_add_ps(acc[0], acc[1]); /* the first step of hsum16_avx */
            }
            r[g] = reduce8(A);
        }
    if (np < n_nz) vec_dot_tails(G, f16, base, off, y, np, n_nz, r);
}

/* One-token q.k (unscaled) of positions j..j+16G-1 into r[0..2G). Positions
 * past n_kv repeat the last row; the caller drops their lanes. */
INLINE void qk_single(const int G, const int f16, const duet_attn_args *a, const float *qr, int j, __m256 *r) {
    size_t off[32];
    for (int i = 0; i < 16 * G; i++) off[i] = (size_t)(j + i < a->n_kv ? j + i : a->n_kv - 1) * a->k_stride;
    vec_dot_single(G, f16, a->k, off, qr, a->head_dim, a->head_dim, r);
}

/* One-token p.v of output dims d..d+16G-1 into r: ggml_vec_dot over
 * llama.cpp's padded view of n_kv_pad positions, those past n_kv being zero.
 * n_kv <= n_kv_pad < np + 64, so the tail is at most 63 positions; its last
 * block's loads reach pad8 past n_kv, and the body's last (masked) block
 * reaches np <= n_kv_pad. The view (duet_attn_kv_pad: n_kv rounded up to 32)
 * does not depend on n_ctx and may end up to 31 positions past a row of
 * v_stride = n_ctx: such loads land in the next row or, for the last row,
 * in DUET_V_SLACK, and are masked. */
INLINE void pv_single(const int G, const int f16, const duet_attn_args *a, const float *w, int d, __m256 *r) {
    size_t off[32];
    for (int o = 0; o < 16 * G; o++) off[o] = (size_t)(d + o) * a->v_stride;
    vec_dot_single(G, f16, a->v, off, w, a->n_kv_pad, a->n_kv, r);
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
        /* lanes past n_kv land in w's padding and are dropped by the softmax */
        for (; j + 16 < n_kv; j += 32) { /* two groups of 16 keys side by side */
            __m256 r[4];
            qk_single(2, f16, a, qr, j, r);
            for (int g = 0; g < 4; g++) _mm256_storeu_ps(w + j + 8 * g, _mm256_mul_ps(r[g], vscale));
        }
        for (; j < n_kv; j += 16) {
            __m256 r[2];
            qk_single(1, f16, a, qr, j, r);
            _mm256_storeu_ps(w + j, _mm256_mul_ps(r[0], vscale));
            _mm256_storeu_ps(w + j + 8, _mm256_mul_ps(r[1], vscale));
        }
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
        int d = 0;
        for (; d + 32 <= hd; d += 32) { /* two groups of 16 output dims side by side */
            __m256 r[4];
            pv_single(2, f16, a, w, d, r);
            for (int g = 0; g < 4; g++) _mm256_storeu_ps(out + d + 8 * g, r[g]);
        }
        for (; d < hd; d += 16) {
            __m256 r[2];
            pv_single(1, f16, a, w, d, r);
            _mm256_storeu_ps(out + d, r[0]);
            _mm256_storeu_ps(out + d + 8, r[1]);
        }
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

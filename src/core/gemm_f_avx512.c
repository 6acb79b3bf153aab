/* AVX-512 y = x W^T for F32 / F16 / BF16 weights with the float operations
 * of llamafile's tinyBLAS, which llama.cpp's CPU backend runs for these types:
 * each output keeps one 16-lane accumulator, updated with one fma (F32, F16)
 * or vdpbf16ps (BF16) per 16 (32) values in order, and is reduced at the end
 * with _mm512_reduce_add_ps. Results therefore match llama.cpp bit for bit
 * whatever the number of tokens, rather than within rounding noise.
 *
 * Tiles of RM tokens x RN weight rows (RM*RN accumulators, RM+RN loads per
 * RM*RN fmas). A thread takes RN-row slices of W (read in place, no packing:
 * a slice stays in L1 while every token passes over it). */
#include <immintrin.h>
#include <string.h>

#include "core/gemm.h"

#define RM 4   /* tokens per tile */
#define RN 6   /* weight rows per tile */

#define ALWAYS_INLINE inline __attribute__((always_inline))

static ALWAYS_INLINE __m512 load_w(const void *w, int64_t i, const duet_type wt) {
    if (wt == DUET_TYPE_F32) return _mm512_loadu_ps((const float *)w + i);
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i)));
}

/* One M x N tile over all of K, reduced into y. */
static ALWAYS_INLINE void tile(const duet_fgemm_job *j, int64_t t0, int64_t r0, const int M, const int N,
                               const duet_type wt) {
    const char *w = (const char *)j->w + (size_t)r0 * j->w_row;
    __m512 acc[RM][RN];
#pragma GCC unroll 4
    for (int a = 0; a < M; a++)
#pragma GCC unroll 8
        for (int b = 0; b < N; b++) acc[a][b] = _mm512_setzero_ps();
    if (wt == DUET_TYPE_BF16) {
        const uint16_t *x = (const uint16_t *)j->x + t0 * j->n_in;
        for (int64_t k = 0; k < j->n_in; k += 32) {
            __m512bh xv[RM], wv[RN];
            if (M <= 2)
#pragma GCC unroll 8
                for (int b = 0; b < N; b++) _mm_prefetch(w + (size_t)b * j->w_row + (size_t)k * 2 + 4096, _MM_HINT_T0);
#pragma GCC unroll 4
            for (int a = 0; a < M; a++) xv[a] = (__m512bh)_mm512_loadu_si512(x + a * j->n_in + k);
#pragma GCC unroll 8
            for (int b = 0; b < N; b++) wv[b] = (__m512bh)_mm512_loadu_si512((const uint16_t *)(w + (size_t)b * j->w_row) + k);
#pragma GCC unroll 4
            for (int a = 0; a < M; a++)
#pragma GCC unroll 8
                for (int b = 0; b < N; b++) acc[a][b] = _mm512_dpbf16_ps(acc[a][b], wv[b], xv[a]);
        }
    } else {
        const float *x = (const float *)j->x + t0 * j->n_in;
        const size_t esz = wt == DUET_TYPE_F32 ? 4 : 2;
        for (int64_t k = 0; k < j->n_in; k += 16) {
            __m512 xv[RM], wv[RN];
            if (M <= 2) /* a weight row is read once: stream it in ahead (4 KB) */
#pragma GCC unroll 8
                for (int b = 0; b < N; b++) _mm_prefetch(w + (size_t)b * j->w_row + (size_t)k * esz + 4096, _MM_HINT_T0);
#pragma GCC unroll 4
            for (int a = 0; a < M; a++) xv[a] = _mm512_loadu_ps(x + a * j->n_in + k);
#pragma GCC unroll 8
            for (int b = 0; b < N; b++) wv[b] = load_w(w + (size_t)b * j->w_row, k, wt);
#pragma GCC unroll 4
            for (int a = 0; a < M; a++)
#pragma GCC unroll 8
                for (int b = 0; b < N; b++) acc[a][b] = _mm512_fmadd_ps(wv[b], xv[a], acc[a][b]);
        }
    }
#pragma GCC unroll 4
    for (int a = 0; a < M; a++)
#pragma GCC unroll 8
        for (int b = 0; b < N; b++) j->y[(t0 + a) * j->n_out + r0 + b] = _mm512_reduce_add_ps(acc[a][b]);
}

/* A tile of M (1..RM) tokens x N rows (RN, or fewer in the last slice). */
static void tile_any(const duet_fgemm_job *j, int64_t t0, int64_t r0, int M, int N) {
#define T(MM, WT) tile(j, t0, r0, MM, RN, WT)
#define BY_M(WT)                      \
    switch (M) {                      \
    case 1: T(1, WT); break;          \
    case 2: T(2, WT); break;          \
    case 3: T(3, WT); break;          \
    default: T(4, WT); break;         \
    }
    if (N == RN) {
        switch (j->wt) {
        case DUET_TYPE_F32: BY_M(DUET_TYPE_F32); break;
        case DUET_TYPE_F16: BY_M(DUET_TYPE_F16); break;
        default: BY_M(DUET_TYPE_BF16); break;
        }
        return;
    }
    for (int b = 0; b < N; b++) /* the last few rows, one at a time */
        for (int a = 0; a < M; a++) switch (j->wt) {
            case DUET_TYPE_F32: tile(j, t0 + a, r0 + b, 1, 1, DUET_TYPE_F32); break;
            case DUET_TYPE_F16: tile(j, t0 + a, r0 + b, 1, 1, DUET_TYPE_F16); break;
            default: tile(j, t0 + a, r0 + b, 1, 1, DUET_TYPE_BF16); break;
            }
}

void duet_fgemm_task_avx512(void *vjob, int ith, int nth) {
    duet_fgemm_job *j = vjob;
    for (;;) {
        const int64_t r0 = atomic_fetch_add_explicit(&j->next, j->chunk, memory_order_relaxed);
        if (r0 >= j->n_out) break;
        const int64_t r1 = r0 + j->chunk < j->n_out ? r0 + j->chunk : j->n_out;
        for (int64_t r = r0; r < r1; r += RN) {
            const int N = (int)(r1 - r < RN ? r1 - r : RN);
            for (int64_t t = 0; t < j->m; t += RM) tile_any(j, t, r, (int)(j->m - t < RM ? j->m - t : RM), N);
        }
    }
}

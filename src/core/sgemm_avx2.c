/* AVX2 sgemm micro-kernel: a 6 x 16 tile of C in 12 ymm accumulators
 * (the classic Haswell shape: 2 loads + 6 broadcasts per 12 FMAs). */
#include <immintrin.h>
#include <string.h>

#include "core/sgemm.h"

#define MR DUET_SGEMM_MR_AVX2
#define NR DUET_SGEMM_NR_AVX2

#define ROW_FMA(i)                                    \
    do {                                              \
        const __m256 a_ = _mm256_broadcast_ss(a + (i)); \
        c##i##0 = _mm256_fmadd_ps(a_, b0, c##i##0);   \
        c##i##1 = _mm256_fmadd_ps(a_, b1, c##i##1);   \
    } while (0)

#define ROW_STORE(i)                                                                      \
    do {                                                                                  \
        float *ci_ = c + (i) * ldc;                                                       \
        if (beta == 0.0f) {                                                               \
            _mm256_storeu_ps(ci_, _mm256_mul_ps(va, c##i##0));                            \
            _mm256_storeu_ps(ci_ + 8, _mm256_mul_ps(va, c##i##1));                        \
        } else {                                                                          \
            _mm256_storeu_ps(ci_, _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci_),               \
                                                  _mm256_mul_ps(va, c##i##0)));           \
            _mm256_storeu_ps(ci_ + 8, _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci_ + 8),       \
                                                      _mm256_mul_ps(va, c##i##1)));       \
        }                                                                                 \
    } while (0)

#define DECL_ROW(i) __m256 c##i##0 = _mm256_setzero_ps(), c##i##1 = _mm256_setzero_ps()

void duet_sgemm_ukernel_avx2(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                             float alpha, float beta) {
    DECL_ROW(0); DECL_ROW(1); DECL_ROW(2); DECL_ROW(3); DECL_ROW(4); DECL_ROW(5);
    for (int64_t p = 0; p < kc; p++) {
        const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        ROW_FMA(0); ROW_FMA(1); ROW_FMA(2); ROW_FMA(3); ROW_FMA(4); ROW_FMA(5);
        a += MR;
        b += NR;
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    ROW_STORE(0); ROW_STORE(1); ROW_STORE(2); ROW_STORE(3); ROW_STORE(4); ROW_STORE(5);
}

/* ---- packing op(B) = W^T from weight rows (the matmul layout), f32 / f16 / bf16 ----
 * The scalar packer (sgemm.c) widens one element at a time with a branchy
 * f16 decoder and writes with a stride of nr floats: on AVX2 it took about
 * two thirds of a 16-token F16 prefill. Here 8 weight rows x 8 values are
 * loaded (widened exactly to f32: F16C, or a shift for bf16), transposed in
 * registers and stored as 8 rows of an 8-wide slice of the panel: the same
 * floats, so the sgemm's results do not change by a bit. */

enum { SRC_F32, SRC_F16, SRC_BF16 };

/* In place: r[i][k] -> r[k][i]. */
static inline void transpose8x8(__m256 r[8]) {
    __m256 a[8], b[8];
    for (int i = 0; i < 8; i += 2) {
        a[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        a[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) { /* rows i..i+3: columns (k, k+4) per 128-bit lane */
        b[i + 0] = _mm256_shuffle_ps(a[i], a[i + 2], 0x44);
        b[i + 1] = _mm256_shuffle_ps(a[i], a[i + 2], 0xEE);
        b[i + 2] = _mm256_shuffle_ps(a[i + 1], a[i + 3], 0x44);
        b[i + 3] = _mm256_shuffle_ps(a[i + 1], a[i + 3], 0xEE);
    }
    for (int k = 0; k < 4; k++) {
        r[k] = _mm256_permute2f128_ps(b[k], b[k + 4], 0x20);
        r[k + 4] = _mm256_permute2f128_ps(b[k], b[k + 4], 0x31);
    }
}

/* 8 values of row base from element idx, widened; elements at and past pl
 * (pl < 8 only at the end of a K slice) read as zero without being touched. */
static inline __m256 load8(const void *base, int64_t idx, int pl, const int src) {
    if (pl < 8) {
        float t[8] = {0};
        for (int q = 0; q < pl; q++) {
            if (src == SRC_F32) t[q] = ((const float *)base)[idx + q];
            else if (src == SRC_F16) t[q] = _cvtsh_ss(((const uint16_t *)base)[idx + q]);
            else {
                const uint32_t u = (uint32_t)((const uint16_t *)base)[idx + q] << 16;
                memcpy(&t[q], &u, sizeof u);
            }
        }
        return _mm256_loadu_ps(t);
    }
    if (src == SRC_F32) return _mm256_loadu_ps((const float *)base + idx);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)base + idx));
    if (src == SRC_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline void pack_b_rows(const duet_sgemm_bsrc *s, float *dst, int64_t p0, int64_t kc, int64_t j0,
                               int64_t nc, int nr, const int src) {
    for (int64_t jp = 0; jp < nc; jp += nr) {
        float *d = dst + (jp / nr) * kc * nr;
        for (int h = 0; h < nr; h += 8) {
            const int64_t jb = jp + h;
            const int cols = nc - jb >= 8 ? 8 : nc - jb > 0 ? (int)(nc - jb) : 0;
            for (int64_t p = 0; p < kc; p += 8) {
                const int pl = kc - p >= 8 ? 8 : (int)(kc - p);
                __m256 r[8];
                for (int i = 0; i < 8; i++)
                    r[i] = i < cols ? load8(s->b, (j0 + jb + i) * s->ldb + p0 + p, pl, src) : _mm256_setzero_ps();
                transpose8x8(r);
                for (int q = 0; q < pl; q++) _mm256_storeu_ps(d + (p + q) * nr + h, r[q]);
            }
        }
    }
}

int duet_sgemm_pack_b_rows_avx2(const duet_sgemm_bsrc *s, float *dst, int64_t p0, int64_t kc, int64_t j0,
                                int64_t nc, int nr, int src_type) {
    if (!s->trans || nr % 8 != 0) return -1;
    switch (src_type) {
    case 0: pack_b_rows(s, dst, p0, kc, j0, nc, nr, SRC_F32); return 0;
    case 1: pack_b_rows(s, dst, p0, kc, j0, nc, nr, SRC_F16); return 0;
    case 2: pack_b_rows(s, dst, p0, kc, j0, nc, nr, SRC_BF16); return 0;
    default: return -1;
    }
}

/* AVX-512 sgemm micro-kernel: a 12 x 32 tile of C in 24 zmm accumulators.
 * Per k step: two 16-float loads of the B panel, twelve broadcasts of the A
 * panel, 24 FMAs -- FMA-bound with room on the load ports. */
#include <immintrin.h>

#include "core/sgemm.h"

#define MR DUET_SGEMM_MR_AVX512
#define NR DUET_SGEMM_NR_AVX512

#define ROW_FMA(i)                                    \
    do {                                              \
        const __m512 a_ = _mm512_set1_ps(a[(i)]);     \
        c##i##0 = _mm512_fmadd_ps(a_, b0, c##i##0);   \
        c##i##1 = _mm512_fmadd_ps(a_, b1, c##i##1);   \
    } while (0)

#define ROW_STORE(i)                                                                      \
    do {                                                                                  \
        float *ci_ = c + (i) * ldc;                                                       \
        if (beta == 0.0f) {                                                               \
            _mm512_storeu_ps(ci_, _mm512_mul_ps(va, c##i##0));                            \
            _mm512_storeu_ps(ci_ + 16, _mm512_mul_ps(va, c##i##1));                       \
        } else {                                                                          \
            _mm512_storeu_ps(ci_, _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci_),               \
                                                  _mm512_mul_ps(va, c##i##0)));           \
            _mm512_storeu_ps(ci_ + 16, _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci_ + 16),     \
                                                       _mm512_mul_ps(va, c##i##1)));      \
        }                                                                                 \
    } while (0)

#define DECL_ROW(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps()

void duet_sgemm_ukernel_avx512(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                               float alpha, float beta) {
    DECL_ROW(0); DECL_ROW(1); DECL_ROW(2); DECL_ROW(3); DECL_ROW(4); DECL_ROW(5);
    DECL_ROW(6); DECL_ROW(7); DECL_ROW(8); DECL_ROW(9); DECL_ROW(10); DECL_ROW(11);
    for (int64_t p = 0; p < kc; p++) {
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        _mm_prefetch((const char *)(b + 8 * NR), _MM_HINT_T0);
        ROW_FMA(0); ROW_FMA(1); ROW_FMA(2); ROW_FMA(3); ROW_FMA(4); ROW_FMA(5);
        ROW_FMA(6); ROW_FMA(7); ROW_FMA(8); ROW_FMA(9); ROW_FMA(10); ROW_FMA(11);
        a += MR;
        b += NR;
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    ROW_STORE(0); ROW_STORE(1); ROW_STORE(2); ROW_STORE(3); ROW_STORE(4); ROW_STORE(5);
    ROW_STORE(6); ROW_STORE(7); ROW_STORE(8); ROW_STORE(9); ROW_STORE(10); ROW_STORE(11);
}

/* ---- packing op(B) = W^T from weight rows (the matmul layout), f32 / f16 / bf16 ----
 * 16 weight rows x 16 values are loaded (widened to f32), transposed in
 * registers and stored as 16 rows of a 32-wide panel. */

/* In place: r[i][k] -> r[k][i]. */
static inline void transpose16x16(__m512 r[16]) {
    __m512 a[16], b[16], c[4];
    for (int i = 0; i < 16; i += 2) {
        a[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        a[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* rows i..i+3: columns (k, k+4, k+8, k+12) per lane */
        b[i + 0] = _mm512_shuffle_ps(a[i], a[i + 2], 0x44);
        b[i + 1] = _mm512_shuffle_ps(a[i], a[i + 2], 0xEE);
        b[i + 2] = _mm512_shuffle_ps(a[i + 1], a[i + 3], 0x44);
        b[i + 3] = _mm512_shuffle_ps(a[i + 1], a[i + 3], 0xEE);
    }
    for (int k = 0; k < 4; k++) {
        c[0] = _mm512_shuffle_f32x4(b[k], b[k + 4], 0x44);
        c[1] = _mm512_shuffle_f32x4(b[k], b[k + 4], 0xEE);
        c[2] = _mm512_shuffle_f32x4(b[k + 8], b[k + 12], 0x44);
        c[3] = _mm512_shuffle_f32x4(b[k + 8], b[k + 12], 0xEE);
        r[k] = _mm512_shuffle_f32x4(c[0], c[2], 0x88);
        r[k + 4] = _mm512_shuffle_f32x4(c[0], c[2], 0xDD);
        r[k + 8] = _mm512_shuffle_f32x4(c[1], c[3], 0x88);
        r[k + 12] = _mm512_shuffle_f32x4(c[1], c[3], 0xDD);
    }
}

enum { SRC_F32, SRC_F16, SRC_BF16 };

static inline __m512 load16(const void *base, int64_t idx, __mmask16 k, const int src) {
    if (src == SRC_F32) return _mm512_maskz_loadu_ps(k, (const float *)base + idx);
    const __m256i h = _mm256_maskz_loadu_epi16(k, (const uint16_t *)base + idx);
    if (src == SRC_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static inline void pack_b_rows(const duet_sgemm_bsrc *s, float *dst, int64_t p0, int64_t kc, int64_t j0,
                               int64_t nc, int nr, const int src) {
    for (int64_t jp = 0; jp < nc; jp += nr) {
        float *d = dst + (jp / nr) * kc * nr;
        for (int h = 0; h < nr; h += 16) {
            const int64_t jb = jp + h;
            const int cols = nc - jb >= 16 ? 16 : nc - jb > 0 ? (int)(nc - jb) : 0;
            for (int64_t p = 0; p < kc; p += 16) {
                const int pl = kc - p >= 16 ? 16 : (int)(kc - p);
                const __mmask16 k = (__mmask16)((1u << pl) - 1u);
                __m512 r[16];
                for (int i = 0; i < 16; i++)
                    r[i] = i < cols ? load16(s->b, (j0 + jb + i) * s->ldb + p0 + p, k, src) : _mm512_setzero_ps();
                transpose16x16(r);
                for (int q = 0; q < pl; q++) _mm512_store_ps(d + (p + q) * nr + h, r[q]);
            }
        }
    }
}

int duet_sgemm_pack_b_rows_avx512(const duet_sgemm_bsrc *s, float *dst, int64_t p0, int64_t kc, int64_t j0,
                                  int64_t nc, int nr, int src_type) {
    if (!s->trans || nr % 16 != 0) return -1;
    switch (src_type) {
    case 0: pack_b_rows(s, dst, p0, kc, j0, nc, nr, SRC_F32); return 0;
    case 1: pack_b_rows(s, dst, p0, kc, j0, nc, nr, SRC_F16); return 0;
    case 2: pack_b_rows(s, dst, p0, kc, j0, nc, nr, SRC_BF16); return 0;
    default: return -1;
    }
}

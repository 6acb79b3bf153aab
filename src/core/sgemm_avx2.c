/* AVX2 sgemm micro-kernel: a 6 x 16 tile of C in 12 ymm accumulators
 * (the classic Haswell shape: 2 loads + 6 broadcasts per 12 FMAs). */
#include <immintrin.h>

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

/* internal: not part of the public API; may change. */
/* 8x8 float transpose in AVX registers, shared by the attention kernels that
 * turn eight rows into eight lanes (the tails that run one dot product per
 * lane in the scalar order). */
#ifndef DUET_MODEL_TRANSPOSE_AVX2_H
#define DUET_MODEL_TRANSPOSE_AVX2_H
#include <immintrin.h>

/* x[t] lane i <- x[i] lane t. The loops are unrolled so that the arrays live
 * in registers (-O2 would keep them in memory). */
static inline __attribute__((always_inline)) void transpose8(__m256 x[8]) {
    __m256 t[8], u[8];
    _Pragma("GCC unroll 8")
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(x[2 * i], x[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(x[2 * i], x[2 * i + 1]);
    }
    _Pragma("GCC unroll 8")
    for (int h = 0; h < 8; h += 4) {
        u[h + 0] = _mm256_shuffle_ps(t[h + 0], t[h + 2], 0x44);
        u[h + 1] = _mm256_shuffle_ps(t[h + 0], t[h + 2], 0xEE);
        u[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0x44);
        u[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0xEE);
    }
    _Pragma("GCC unroll 8")
    for (int i = 0; i < 4; i++) {
        x[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        x[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}
#endif

/* internal: not part of the public API; may change. */
/* The batched and one-token attention paths share their softmax: this header
 * holds it and the 8-lane helpers it needs, so that the AVX2 (one query) and
 * AVX-512 (several queries) kernels compute the same bits from one source.
 * Include only from *_avx2.c / *_avx512.c files. */
#ifndef DUET_MODEL_ATTN_SOFTMAX_AVX2_H
#define DUET_MODEL_ATTN_SOFTMAX_AVX2_H

#include <immintrin.h>
#include <math.h>

#include "model/vexp_avx2.h"

static inline int pad16(int n) { return (n + 15) & ~15; }
static inline int pad64(int n) { return (n + 63) & ~63; }

/* lanes 0-7 in lo, 8-15 in hi */
static inline __attribute__((always_inline)) float hsum16_avx(__m256 lo, __m256 hi) {
    const __m256 a = _mm256_add_ps(lo, hi);
    const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
}

static inline __attribute__((always_inline)) __m256 round8(const int f16, __m256 x) {
    if (!f16) return x;
    return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* Lanes of positions j..j+7 that are below n, as an all-ones mask. */
static inline __attribute__((always_inline)) __m256 valid8(int j, int n) {
    const __m256i idx = _mm256_add_epi32(_mm256_set1_epi32(j), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx));
}

/* Scaled scores w[0..n_kv) become probabilities in place: max, ggml expf over
 * groups of 16 positions (zero past n_kv) with the group sums added in double,
 * times 1/sum, rounded to the cache type. w[n_kv..n_zero) end up 0 so that
 * p.v products past n_kv vanish; w must hold max(pad16(n_kv), n_zero) floats. */
static inline __attribute__((always_inline)) void attn_softmax(const int f16, float *w /* (n_zero) */, int n_kv,
                                                                int n_zero) {
    int j;
    for (j = n_kv; j < pad16(n_kv); j++) w[j] = 0.0f; /* defined lanes for the last group */
    /* the maximum does not depend on the order it is taken in */
    __m256 vm = _mm256_set1_ps(-INFINITY);
    for (j = 0; j + 8 <= n_kv; j += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(w + j));
    float m8[8], max = -INFINITY;
    _mm256_storeu_ps(m8, vm);
    for (int l = 0; l < 8; l++) max = max > m8[l] ? max : m8[l];
    for (; j < n_kv; j++) max = max > w[j] ? max : w[j];

    const __m256 vmax = _mm256_set1_ps(max);
    double sum = 0.0;
    for (int c = 0; c < n_kv; c += 16) {
        __m256 e0 = v_expf8(_mm256_sub_ps(_mm256_loadu_ps(w + c), vmax));
        __m256 e1 = v_expf8(_mm256_sub_ps(_mm256_loadu_ps(w + c + 8), vmax));
        if (c + 16 > n_kv) {
            e0 = _mm256_and_ps(e0, valid8(c, n_kv));
            e1 = _mm256_and_ps(e1, valid8(c + 8, n_kv));
        }
        _mm256_storeu_ps(w + c, e0);
        _mm256_storeu_ps(w + c + 8, e1);
        sum += (double)hsum16_avx(e0, e1);
    }
    const __m256 vinv = _mm256_set1_ps((float)(1.0 / sum));
    for (j = 0; j < n_kv; j += 8) _mm256_storeu_ps(w + j, round8(f16, _mm256_mul_ps(_mm256_loadu_ps(w + j), vinv)));
    for (j = pad16(n_kv); j < n_zero; j++) w[j] = 0.0f;
}

#endif

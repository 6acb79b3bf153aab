/* AVX2+FMA twin of duet_swiglu_ref: the same bits, 8 lanes at a time.
 * ggml_v_expf's AVX-512 variant ends with scalef(j, n); for |n| <= 126 that
 * is one multiplication by the normal float 2^n, the rare other lanes take
 * the scalar path. */
#include <immintrin.h>
#include <math.h>

#include "model/ops.h"
#include "model/vexp_avx2.h"

static inline __m256 v_silu8(__m256 x) {
    const __m256 e = v_expf8(_mm256_sub_ps(_mm256_setzero_ps(), x));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

void duet_swiglu_avx2(float *y, const float *g, const float *u, int n) {
    int i = 0;
    for (; i + 15 < n; i += 16) {
        const __m256 a = _mm256_mul_ps(v_silu8(_mm256_loadu_ps(g + i)), _mm256_loadu_ps(u + i));
        const __m256 b = _mm256_mul_ps(v_silu8(_mm256_loadu_ps(g + i + 8)), _mm256_loadu_ps(u + i + 8));
        _mm256_storeu_ps(y + i, a);
        _mm256_storeu_ps(y + i + 8, b);
    }
    for (; i < n; i++) y[i] = (g[i] / (1.0f + expf(-g[i]))) * u[i];
}

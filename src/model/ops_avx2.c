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

/* duet_rope_apply's rotation, compiled with FMA: fmaf becomes one vfmadd
 * (exactly fused, so the same bits) instead of a libm call per product. */
static inline void rotate_fma(float *a, float *b, float c, float s) {
    const float x0 = *a, x1 = *b;
    *a = __builtin_fmaf(x0, c, -(x1 * s));
    *b = __builtin_fmaf(x0, s, x1 * c);
}

void duet_rope_apply_avx2(float *x, const float *cs, int n_rot, int neox) {
    if (neox) {
        const int half = n_rot / 2;
        for (int i0 = 0; i0 < n_rot; i0 += 2) rotate_fma(&x[i0 / 2], &x[i0 / 2 + half], cs[i0], cs[i0 + 1]);
    } else {
        for (int i0 = 0; i0 < n_rot; i0 += 2) rotate_fma(&x[i0], &x[i0 + 1], cs[i0], cs[i0 + 1]);
    }
}

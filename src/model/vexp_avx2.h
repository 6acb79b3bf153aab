/* internal: not part of the public API; may change. */
/* ggml's vectorised expf (ggml_v_expf) on 8 AVX2 lanes, shared by softmax in
 * attention and SiLU in the FFN; lanes out of the fast range fall back to the
 * scalar duet_ggml_expf, as ggml does. Include only from *_avx2.c and *_avx512.c files. */
#ifndef DUET_MODEL_VEXP_AVX2_H
#define DUET_MODEL_VEXP_AVX2_H

#include <immintrin.h>

#include "model/ops.h"

static inline __m256 v_expf_poly(__m256 x, __m256 *n_out) {
    const __m256 r = _mm256_set1_ps(0x1.8p23f);
    const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
    const __m256 n = _mm256_sub_ps(z, r);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                      _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_fmadd_ps(_mm256_set1_ps(0x1.ffffecp-1f), b, _mm256_set1_ps(1.0f)));
    *n_out = n;
    return j;
}

/* ggml_v_expf on 8 lanes. */
static inline __m256 v_expf8(__m256 x) {
    __m256 n;
    const __m256 j = v_expf_poly(x, &n);
    const __m256 absn = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), n);
    /* lanes that are NaN or |n| > 126 need the general path */
    const __m256 big = _mm256_cmp_ps(absn, _mm256_set1_ps(126.0f), _CMP_NLE_UQ);
    if (!_mm256_movemask_ps(big)) {
        const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
        return _mm256_mul_ps(j, _mm256_castsi256_ps(e));
    }
    float xs[8], out[8];
    _mm256_storeu_ps(xs, x);
    for (int l = 0; l < 8; l++) out[l] = duet_ggml_expf(xs[l]);
    return _mm256_loadu_ps(out);
}

#endif

/* AVX-512 rounding of activations through F16 / BF16 and back to f32, bit for
 * bit what the scalar conversions of core/quant_blocks.h give (vcvtps2ph
 * rounds to nearest even like duet_fp32_to_fp16_inl; the bf16 rounding is
 * ggml's integer formula, NaNs forced quiet). */
#include <immintrin.h>

#include "core/gemm.h"
#include "core/quant_blocks.h"

static inline __m512 round_f16(__m512 v) {
    return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

static inline __m512 round_bf16(__m512 v) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                  _mm512_set1_epi32(0x7f800000));
    const __m512i top = _mm512_mask_or_epi32(_mm512_srli_epi32(r, 16), nan, _mm512_srli_epi32(u, 16),
                                             _mm512_set1_epi32(64));
    return _mm512_castsi512_ps(_mm512_slli_epi32(top, 16));
}

void duet_gemm_round_rows_avx512(duet_type dt, const float *src, float *dst, int64_t n) {
    int64_t i = 0;
    if (dt == DUET_TYPE_F16) {
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, round_f16(_mm512_loadu_ps(src + i)));
        for (; i < n; i++) dst[i] = duet_fp16_to_fp32_inl(duet_fp32_to_fp16_inl(src[i]));
    } else {
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, round_bf16(_mm512_loadu_ps(src + i)));
        for (; i < n; i++) dst[i] = duet_bf16_to_fp32_inl(duet_fp32_to_bf16_inl(src[i]));
    }
}

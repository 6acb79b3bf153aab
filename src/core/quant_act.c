/* Reference activation quantizers: what llama.cpp's x86 CPU backend does to
 * the activations before a quantized matmul (its AVX2 quantize_row_q8_0 /
 * quantize_row_q8_1, and quantize_row_q8_K = the ggml reference). The SIMD
 * versions in vecdot_avx2.c / vecdot_avx512.c are bit-identical to these. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#else
#pragma GCC optimize("fp-contract=off")
#endif

#include <math.h>

#include "core/quant_internal.h"

/* Round half to even, then saturate like cvtps2dq + packs: NaN and values
 * outside int32 give INT_MIN there, which saturates to -128. */
static inline int8_t round_even_sat_i8(float v) {
    if (!(fabsf(v) < 2147483520.f)) return -128;
    const float r = fabsf(v) < 4194304.f ? (float)duet_nearest_int(v) : v;
    if (r > 127.f) return 127;
    if (r < -128.f) return -128;
    return (int8_t)r;
}

static inline float block_amax(const float *x, int n) {
    float m = 0.0f;
    for (int j = 0; j < n; j++) {
        const float a = fabsf(x[j]);
        m = a > m ? a : m;
    }
    return m;
}

void duet_quantize_act_q8_0_ref(const float *x, block_q8_0 *y, int64_t n) {
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        const float amax = block_amax(x, QK8_0);
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[i].d = duet_fp32_to_fp16_inl(d);
        for (int j = 0; j < QK8_0; j++) y[i].qs[j] = round_even_sat_i8(x[j] * id);
    }
}

void duet_quantize_act_q8_1_ref(const float *x, block_q8_1 *y, int64_t n) {
    for (int64_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        const float amax = block_amax(x, QK8_1);
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[i].d = duet_fp32_to_fp16_inl(d);
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) {
            y[i].qs[j] = round_even_sat_i8(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = duet_fp32_to_fp16_inl(d * (float)sum);
    }
}

void duet_quantize_act_row_ref(duet_type dt, const float *src, void *dst, int64_t n) {
    switch (dt) {
    case DUET_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case DUET_TYPE_F16: duet_f32_to_f16_row_ref(src, dst, n); break;
    case DUET_TYPE_BF16: duet_f32_to_bf16_row_ref(src, dst, n); break;
    case DUET_TYPE_Q8_0: duet_quantize_act_q8_0_ref(src, dst, n); break;
    case DUET_TYPE_Q8_1: duet_quantize_act_q8_1_ref(src, dst, n); break;
    case DUET_TYPE_Q8_K: duet_quantize_row_q8_K_ref(src, dst, n); break;
    default: break;
    }
}

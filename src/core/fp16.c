/* Public fp16 / bf16 scalar conversions and plain-C row conversions.
 * The arithmetic lives in quant_blocks.h so that kernels inline it. */
#include "duet/quant.h"
#include "core/quant_blocks.h"
#include "core/vecdot.h"

float duet_f16_to_f32(uint16_t h) { return duet_fp16_to_fp32_inl(h); }
uint16_t duet_f32_to_f16(float f) { return duet_fp32_to_fp16_inl(f); }
float duet_bf16_to_f32(uint16_t h) { return duet_bf16_to_fp32_inl(h); }
uint16_t duet_f32_to_bf16(float f) { return duet_fp32_to_bf16_inl(f); }

void duet_f32_to_f16_row_ref(const float *src, uint16_t *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = duet_fp32_to_fp16_inl(src[i]);
}

void duet_f16_to_f32_row_ref(const uint16_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = duet_fp16_to_fp32_inl(src[i]);
}

void duet_f32_to_bf16_row_ref(const float *src, uint16_t *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = duet_fp32_to_bf16_inl(src[i]);
}

void duet_bf16_to_f32_row_ref(const uint16_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = duet_bf16_to_fp32_inl(src[i]);
}

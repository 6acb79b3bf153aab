/* Type traits, names, row sizes, and the row (de)quantization dispatch. */
#include <ctype.h>
#include <string.h>

#include "duet/quant.h"
#include "core/quant_blocks.h"
#include "core/quant_internal.h"

static const duet_type_traits k_traits[DUET_TYPE_COUNT] = {
    [DUET_TYPE_F32] = {"F32", 1, sizeof(float), DUET_TYPE_F32, 1},
    [DUET_TYPE_F16] = {"F16", 1, sizeof(duet_fp16), DUET_TYPE_F16, 1},
    [DUET_TYPE_BF16] = {"BF16", 1, sizeof(duet_bf16), DUET_TYPE_BF16, 1},
    [DUET_TYPE_Q4_0] = {"Q4_0", QK4_0, sizeof(block_q4_0), DUET_TYPE_Q8_0, 1},
    [DUET_TYPE_Q4_1] = {"Q4_1", QK4_1, sizeof(block_q4_1), DUET_TYPE_Q8_1, 1},
    [DUET_TYPE_Q5_0] = {"Q5_0", QK5_0, sizeof(block_q5_0), DUET_TYPE_Q8_0, 1},
    [DUET_TYPE_Q5_1] = {"Q5_1", QK5_1, sizeof(block_q5_1), DUET_TYPE_Q8_1, 1},
    [DUET_TYPE_Q8_0] = {"Q8_0", QK8_0, sizeof(block_q8_0), DUET_TYPE_Q8_0, 1},
    [DUET_TYPE_Q8_1] = {"Q8_1", QK8_1, sizeof(block_q8_1), DUET_TYPE_Q8_1, 0},
    [DUET_TYPE_Q4_K] = {"Q4_K", QK_K, sizeof(block_q4_K), DUET_TYPE_Q8_K, 1},
    [DUET_TYPE_Q5_K] = {"Q5_K", QK_K, sizeof(block_q5_K), DUET_TYPE_Q8_K, 1},
    [DUET_TYPE_Q6_K] = {"Q6_K", QK_K, sizeof(block_q6_K), DUET_TYPE_Q8_K, 1},
    [DUET_TYPE_Q8_K] = {"Q8_K", QK_K, sizeof(block_q8_K), DUET_TYPE_Q8_K, 0},
};

const duet_type_traits *duet_type_info(uint32_t t) {
    if (t >= DUET_TYPE_COUNT || !k_traits[t].name) return NULL;
    return &k_traits[t];
}

const char *duet_type_name(uint32_t t) {
    const duet_type_traits *tr = duet_type_info(t);
    return tr ? tr->name : "?";
}

int duet_type_from_name(const char *name) {
    if (!name) return -1;
    for (int t = 0; t < DUET_TYPE_COUNT; t++) {
        const char *a = k_traits[t].name, *b = name;
        if (!a) continue;
        while (*a && *b && toupper((unsigned char)*b) == *a) a++, b++;
        if (!*a && !*b) return t;
    }
    return -1;
}

size_t duet_row_size(duet_type t, int64_t n) {
    const duet_type_traits *tr = duet_type_info((uint32_t)t);
    if (!tr || n < 0) return 0;
    return tr->type_size * (size_t)(n / tr->blck);
}

void duet_dequantize_row(duet_type t, const void *src, float *dst, int64_t n) {
    switch (t) {
    case DUET_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case DUET_TYPE_F16: duet_f16_to_f32_row_ref(src, dst, n); break;
    case DUET_TYPE_BF16: duet_bf16_to_f32_row_ref(src, dst, n); break;
    case DUET_TYPE_Q4_0: duet_dequantize_row_q4_0(src, dst, n); break;
    case DUET_TYPE_Q4_1: duet_dequantize_row_q4_1(src, dst, n); break;
    case DUET_TYPE_Q5_0: duet_dequantize_row_q5_0(src, dst, n); break;
    case DUET_TYPE_Q5_1: duet_dequantize_row_q5_1(src, dst, n); break;
    case DUET_TYPE_Q8_0: duet_dequantize_row_q8_0(src, dst, n); break;
    case DUET_TYPE_Q8_1: duet_dequantize_row_q8_1(src, dst, n); break;
    case DUET_TYPE_Q4_K: duet_dequantize_row_q4_K(src, dst, n); break;
    case DUET_TYPE_Q5_K: duet_dequantize_row_q5_K(src, dst, n); break;
    case DUET_TYPE_Q6_K: duet_dequantize_row_q6_K(src, dst, n); break;
    case DUET_TYPE_Q8_K: duet_dequantize_row_q8_K(src, dst, n); break;
    default: break;
    }
}

void duet_quantize_row(duet_type t, const float *src, void *dst, int64_t n) {
    switch (t) {
    case DUET_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case DUET_TYPE_F16: duet_f32_to_f16_row_ref(src, dst, n); break;
    case DUET_TYPE_BF16: duet_f32_to_bf16_row_ref(src, dst, n); break;
    case DUET_TYPE_Q4_0: duet_quantize_row_q4_0_ref(src, dst, n); break;
    case DUET_TYPE_Q4_1: duet_quantize_row_q4_1_ref(src, dst, n); break;
    case DUET_TYPE_Q5_0: duet_quantize_row_q5_0_ref(src, dst, n); break;
    case DUET_TYPE_Q5_1: duet_quantize_row_q5_1_ref(src, dst, n); break;
    case DUET_TYPE_Q8_0: duet_quantize_row_q8_0_ref(src, dst, n); break;
    case DUET_TYPE_Q8_1: duet_quantize_row_q8_1_ref(src, dst, n); break;
    case DUET_TYPE_Q4_K: duet_quantize_row_q4_K_ref(src, dst, n); break;
    case DUET_TYPE_Q5_K: duet_quantize_row_q5_K_ref(src, dst, n); break;
    case DUET_TYPE_Q6_K: duet_quantize_row_q6_K_ref(src, dst, n); break;
    case DUET_TYPE_Q8_K: duet_quantize_row_q8_K_ref(src, dst, n); break;
    default: break;
    }
}

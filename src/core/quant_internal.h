/* internal: not part of the public API; may change. */
/* duet — per-type reference (de)quantizers (ggml's *_ref arithmetic).
 * Internal to src/core; the public entry points are duet_quantize_row and
 * duet_dequantize_row. n must be a multiple of the block size (the tail
 * of a partial block is ignored). */
#ifndef DUET_QUANT_INTERNAL_H
#define DUET_QUANT_INTERNAL_H

#include <stdint.h>

#include "core/quant_blocks.h"
#include "core/vecdot.h"

void duet_dequantize_row_q4_0(const block_q4_0 *x, float *y, int64_t n);
void duet_dequantize_row_q4_1(const block_q4_1 *x, float *y, int64_t n);
void duet_dequantize_row_q5_0(const block_q5_0 *x, float *y, int64_t n);
void duet_dequantize_row_q5_1(const block_q5_1 *x, float *y, int64_t n);
void duet_dequantize_row_q8_0(const block_q8_0 *x, float *y, int64_t n);
void duet_dequantize_row_q8_1(const block_q8_1 *x, float *y, int64_t n);
void duet_dequantize_row_q4_K(const block_q4_K *x, float *y, int64_t n);
void duet_dequantize_row_q5_K(const block_q5_K *x, float *y, int64_t n);
void duet_dequantize_row_q6_K(const block_q6_K *x, float *y, int64_t n);
void duet_dequantize_row_q8_K(const block_q8_K *x, float *y, int64_t n);

/* File-format quantizers: byte-identical to ggml's quantize_row_*_ref, which
 * llama_model_quantize uses when no importance matrix is given. */
void duet_quantize_row_q4_0_ref(const float *x, block_q4_0 *y, int64_t n);
void duet_quantize_row_q4_1_ref(const float *x, block_q4_1 *y, int64_t n);
void duet_quantize_row_q5_0_ref(const float *x, block_q5_0 *y, int64_t n);
void duet_quantize_row_q5_1_ref(const float *x, block_q5_1 *y, int64_t n);
void duet_quantize_row_q8_0_ref(const float *x, block_q8_0 *y, int64_t n);
void duet_quantize_row_q8_1_ref(const float *x, block_q8_1 *y, int64_t n);
void duet_quantize_row_q4_K_ref(const float *x, block_q4_K *y, int64_t n);
void duet_quantize_row_q5_K_ref(const float *x, block_q5_K *y, int64_t n);
void duet_quantize_row_q6_K_ref(const float *x, block_q6_K *y, int64_t n);
void duet_quantize_row_q8_K_ref(const float *x, block_q8_K *y, int64_t n);

/* Activation quantizers as llama.cpp's x86 CPU backend runs them
 * (quantize_row_q8_0 / q8_1 AVX2 paths): d = amax/127, id = 127/amax,
 * q = round-half-even(x*id). */
void duet_quantize_act_q8_0_ref(const float *x, block_q8_0 *y, int64_t n);
void duet_quantize_act_q8_1_ref(const float *x, block_q8_1 *y, int64_t n);

#endif

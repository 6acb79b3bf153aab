/* duet — weight types with ggml's exact block layouts.
 *
 * Each supported type has a plain C dequantize reference, a reference
 * quantizer (ggml's *_ref rounding), and a fused dot product of one weight
 * row against one activation row that was quantized to the type's "dot type"
 * (Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the K-quants, F16 for
 * F16, BF16 for BF16, F32 for F32) -- the arithmetic llama.cpp's CPU backend
 * uses. SIMD paths (AVX2, AVX-512) are picked at run time by CPU features and
 * are tested against the references. */
#ifndef DUET_QUANT_H
#define DUET_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "duet/api.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ggml type ids (file format values: append-only, never renumber). */
typedef enum {
    DUET_TYPE_F32 = 0,
    DUET_TYPE_F16 = 1,
    DUET_TYPE_Q4_0 = 2,
    DUET_TYPE_Q4_1 = 3,
    DUET_TYPE_Q5_0 = 6,
    DUET_TYPE_Q5_1 = 7,
    DUET_TYPE_Q8_0 = 8,
    DUET_TYPE_Q8_1 = 9,
    DUET_TYPE_Q2_K = 10,
    DUET_TYPE_Q3_K = 11,
    DUET_TYPE_Q4_K = 12,
    DUET_TYPE_Q5_K = 13,
    DUET_TYPE_Q6_K = 14,
    DUET_TYPE_Q8_K = 15,
    DUET_TYPE_BF16 = 30,
    DUET_TYPE_COUNT = 40
} duet_type;

typedef struct duet_type_traits {
    const char *name;     /* "Q4_K" */
    int blck;             /* elements per block */
    size_t type_size;     /* bytes per block */
    duet_type dot_type;   /* what activations are quantized to for vec_dot */
    int is_weight_type;   /* usable as a weight (vs activation-only like Q8_K) */
} duet_type_traits;

/* NULL when t is not a type duet supports. */
DUET_API const duet_type_traits *duet_type_info(uint32_t t);
DUET_API const char *duet_type_name(uint32_t t); /* "?" if unknown */
/* Parses "Q4_K", "q8_0", "f16", ... ; -1 if unknown. */
DUET_API int duet_type_from_name(const char *name);
/* Bytes of a row of n elements (n must be a multiple of blck). */
DUET_API size_t duet_row_size(duet_type t, int64_t n);

/* fp16 / bf16 scalar conversions (round-to-nearest-even, as ggml). */
DUET_API float duet_f16_to_f32(uint16_t h);
DUET_API uint16_t duet_f32_to_f16(float f);
DUET_API float duet_bf16_to_f32(uint16_t h);
DUET_API uint16_t duet_f32_to_bf16(float f);

/* Reference conversions over rows of n elements. */
DUET_API void duet_dequantize_row(duet_type t, const void *src, float *dst /* (n) */, int64_t n);
DUET_API void duet_quantize_row(duet_type t, const float *src /* (n) */, void *dst, int64_t n);

/* Dot product of one weight row w (type t, n elements) with one activation
 * row x already converted to duet_type_info(t)->dot_type. Dispatches to the
 * best SIMD path for this CPU. */
DUET_API float duet_vec_dot(duet_type t, int64_t n, const void *w, const void *x);
/* The plain C reference of the same (tests compare SIMD against it). */
DUET_API float duet_vec_dot_ref(duet_type t, int64_t n, const void *w, const void *x);

/* Which SIMD level the dispatcher uses: 0 scalar, 1 AVX2, 2 AVX-512.
 * DUET_SIMD=scalar|avx2|avx512 in the environment lowers it (for tests). */
DUET_API int duet_simd_level(void);

#ifdef __cplusplus
}
#endif
#endif

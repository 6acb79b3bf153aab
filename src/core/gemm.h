/* duet — internals of duet_matmul's many-token paths (src/core/matmul.c,
 * src/core/gemm_*.c). */
#ifndef DUET_CORE_GEMM_H
#define DUET_CORE_GEMM_H

#include <stdint.h>

#include "duet/quant.h"
#include "duet/threadpool.h"

/* From this many activation rows the quantized GEMM repacks 16-row weight
 * tiles for the VNNI tile kernels; below, each weight row is decoded in place
 * and streamed once for up to 4 tokens at a time (gemm_v_avx512.c). */
#define DUET_QGEMM_MIN_M 8

/* 1 when duet_qgemm handles weight type wt (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
 * Q4_K, Q5_K, Q6_K) at the current SIMD level (AVX-512 with VNNI). */
int duet_qgemm_supported(duet_type wt);

/* y (m, n_out) = x (m, n_in) W^T for a quantized weight type, with the
 * activations quantized to the dot type as llama.cpp does and llama.cpp's
 * integer per-block arithmetic (each (row, token) result equals the vec_dot of
 * that pair within float summation noise). Returns 0, or -1 (nothing written)
 * when scratch memory cannot be had. */
int duet_qgemm(duet_pool *pool, float *y, duet_type wt, const void *w, const float *x, int64_t m,
               int64_t n_in, int64_t n_out);

/* dst[i] = f32(round(src[i])) through F16 or BF16 (dt), ggml's rounding. */
void duet_gemm_round_rows(duet_pool *pool, duet_type dt, const float *src, float *dst, int64_t n);
/* The same on one thread with AVX-512 (gemm_round_avx512.c). */
void duet_gemm_round_rows_avx512(duet_type dt, const float *src, float *dst, int64_t n);

#endif

/* internal: not part of the public API; may change. */
/* duet — internals of duet_matmul's many-token paths (src/core/matmul.c,
 * src/core/gemm_*.c). */
#ifndef DUET_CORE_GEMM_H
#define DUET_CORE_GEMM_H

#include <stdatomic.h>
#include <stddef.h>
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
 * that pair within float summation noise). Returns 0, or -1 when scratch
 * memory cannot be had (y may then be partly written: the caller redoes it). */
int duet_qgemm(duet_pool *pool, float *y, duet_type wt, const void *w, const float *x, int64_t m,
               int64_t n_in, int64_t n_out);
/* duet_qgemm, or with consistent != 0 the few-token kernels with the one-token
 * (GEMV) arithmetic for every token, whatever m is: each token's results are
 * then bit-identical to duet_qgemm of that token alone. */
int duet_qgemm_ex(duet_pool *pool, float *y, duet_type wt, const void *w, const float *x, int64_t m,
                  int64_t n_in, int64_t n_out, int consistent);

/* F32 / F16 / BF16 weights with tinyBLAS's float operations (gemm_f_avx512.c):
 * x holds the activations as the kernel reads them -- f32 values (rounded
 * through F16 for F16 weights) or bf16 rows for BF16 weights; n_in a multiple
 * of 16 (F32, F16) or 32 (BF16). Threads take `chunk` weight rows at a time. */
typedef struct {
    duet_type wt;
    const void *w;      /* n_out rows of w_row bytes */
    size_t w_row;
    const void *x;      /* (m, n_in) */
    int64_t m, n_in, n_out;
    float *y;           /* (m, n_out) */
    int64_t chunk;
    _Atomic int64_t next;
} duet_fgemm_job;
void duet_fgemm_task_avx512(void *job, int ith, int nth);

/* dst[i] = f32(round(src[i])) through F16 or BF16 (dt), ggml's rounding. */
void duet_gemm_round_rows(duet_pool *pool, duet_type dt, const float *src, float *dst, int64_t n);
/* The same on one thread with AVX-512 (gemm_round_avx512.c). */
void duet_gemm_round_rows_avx512(duet_type dt, const float *src, float *dst, int64_t n);

#endif

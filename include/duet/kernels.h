/* duet — matrix kernels used by inference (prefill, decode) and training.
 *
 * Layout convention: row-major everywhere. A weight matrix is stored as
 * n_out rows of n_in elements (GGUF's ne0 = n_in is the contiguous dim), so a
 * linear layer is y = x W^T. Kernels take the output first. */
#ifndef DUET_KERNELS_H
#define DUET_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "duet/api.h"
#include "duet/quant.h"
#include "duet/threadpool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y = x W^T for a weight of any supported type.
 *   y: (m, n_out) float, x: (m, n_in) float, w: n_out rows of n_in in type wt.
 * Activations are first converted to wt's dot type (Q8_0/Q8_1/Q8_K/F16/BF16,
 * as llama.cpp does), then multiplied block-wise; m >= 2 uses a tiled GEMM,
 * m == 1 a GEMV. Work is split over the pool's threads. */
DUET_API void duet_matmul(duet_pool *pool, float *y, duet_type wt, const void *w,
                          const float *x, int64_t m, int64_t n_in, int64_t n_out);

/* duet_matmul, or with consistent != 0 the decode-consistent product: every
 * token's row of y is bit-identical to what duet_matmul computes for that
 * token alone (m == 1, the GEMV), whatever m is -- the m == 1 arithmetic is
 * run per token, several tokens per loaded weight block, so that a block of
 * m tokens still reads the weights once. consistent == 0 is duet_matmul. */
DUET_API void duet_matmul_ex(duet_pool *pool, float *y, duet_type wt, const void *w,
                             const float *x, int64_t m, int64_t n_in, int64_t n_out, int consistent);

/* Weights repacked once at load time into a runtime layout that the
 * few-token GEMV streams faster (core/repack.h; llama.cpp repacks at load
 * time too). duet_repack_bytes: the size of that layout for this weight on
 * this CPU, 0 when there is none (then nothing needs repacking).
 * duet_repack: writes it to dst (64-byte aligned); 0, or -1 if none. */
DUET_API size_t duet_repack_bytes(duet_type wt, int64_t n_in, int64_t n_out);
DUET_API int duet_repack(duet_type wt, const void *w, int64_t n_in, int64_t n_out, void *dst);

/* duet_matmul_ex with the repacked copy of w (packed, or NULL) where it is
 * faster: bit-identical results. */
DUET_API void duet_matmul_packed(duet_pool *pool, float *y, duet_type wt, const void *w, const void *packed,
                                 const float *x, int64_t m, int64_t n_in, int64_t n_out, int consistent);

/* General single-precision GEMM, row-major, for training:
 *   C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C
 * op(X) = X or X^T per the trans flags; lda/ldb/ldc are row strides. */
DUET_API void duet_sgemm(duet_pool *pool, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                         float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                         float beta, float *C, int64_t ldc);

#ifdef __cplusplus
}
#endif
#endif

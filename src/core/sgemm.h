/* internal: not part of the public API; may change. */
/* duet — internals of the packed single-precision GEMM (src/core/sgemm*.c).
 *
 * The driver (sgemm.c) splits C over threads, cuts K into KC slices, packs
 * op(A) into row panels of MR rows and op(B) into column panels of NR columns,
 * and calls a register-blocked micro-kernel per MR x NR tile of C. The
 * micro-kernels are per SIMD level; the driver is shared.
 *
 * op(B) comes through a packer so that matmul can feed F16/BF16 weight rows
 * (converted exactly to f32 while packing) to the same kernels. */
#ifndef DUET_CORE_SGEMM_H
#define DUET_CORE_SGEMM_H

#include <stdint.h>

#include "duet/threadpool.h"

/* c (MR, NR) with row stride ldc = alpha * sum_p a[p] (x) b[p] + beta * c, where
 * a: kc columns of MR floats (a[p*MR + i]), b: kc rows of NR floats
 * (b[p*NR + j]), both 64-byte aligned. beta == 0 never reads c. */
typedef void (*duet_sgemm_ukernel)(int64_t kc, const float *a, const float *b, float *c,
                                   int64_t ldc, float alpha, float beta);

typedef struct {
    int mr, nr;
    duet_sgemm_ukernel kernel;
} duet_sgemm_kernel_desc;

/* Kernels per level; the SIMD ones are only called when the CPU has them. */
#define DUET_SGEMM_MR_AVX512 12
#define DUET_SGEMM_NR_AVX512 32
void duet_sgemm_ukernel_avx512(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                               float alpha, float beta);
#define DUET_SGEMM_MR_AVX2 6
#define DUET_SGEMM_NR_AVX2 16
void duet_sgemm_ukernel_avx2(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                             float alpha, float beta);

/* Where op(B) (K, N) comes from. pack() writes op(B)[p0 .. p0+kc, j0 .. j0+nc)
 * as ceil(nc/nr) panels, panel q at dst + q*kc*nr holding
 * dst[q*kc*nr + p*nr + j] = op(B)[p0+p, j0+q*nr+j], zero past column nc. */
typedef struct duet_sgemm_bsrc duet_sgemm_bsrc;
struct duet_sgemm_bsrc {
    void (*pack)(const duet_sgemm_bsrc *s, float *dst, int64_t p0, int64_t kc, int64_t j0,
                 int64_t nc, int nr);
    const void *b;  /* the matrix (its element type is the packer's business) */
    int64_t ldb;    /* row stride in elements */
    int trans;      /* 0: op(B)[p, j] = b[p*ldb + j]; 1: b[j*ldb + p] */
};

/* Packers for f32, f16 and bf16 sources (any trans); the transposed case
 * (weight rows, as matmul uses it) runs the AVX-512 packer when the SIMD level
 * allows. */
void duet_sgemm_pack_b_f32(const duet_sgemm_bsrc *s, float *dst, int64_t p0, int64_t kc,
                           int64_t j0, int64_t nc, int nr);
void duet_sgemm_pack_b_f16(const duet_sgemm_bsrc *s, float *dst, int64_t p0, int64_t kc,
                           int64_t j0, int64_t nc, int nr);
void duet_sgemm_pack_b_bf16(const duet_sgemm_bsrc *s, float *dst, int64_t p0, int64_t kc,
                            int64_t j0, int64_t nc, int nr);

/* AVX-512 packer for trans sources (src_type 0 f32, 1 f16, 2 bf16) and nr a
 * multiple of 16; returns -1 (nothing written) for other cases. */
int duet_sgemm_pack_b_rows_avx512(const duet_sgemm_bsrc *s, float *dst, int64_t p0, int64_t kc, int64_t j0,
                                  int64_t nc, int nr, int src_type);
/* The same on AVX2 + F16C, for nr a multiple of 8. */
int duet_sgemm_pack_b_rows_avx2(const duet_sgemm_bsrc *s, float *dst, int64_t p0, int64_t kc, int64_t j0,
                                int64_t nc, int nr, int src_type);

/* C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C with op(B) from bs,
 * on the kernel of the given SIMD level (capped by the CPU; -1 = current). */
void duet_sgemm_ex(duet_pool *pool, int level, int trans_a, int64_t M, int64_t N, int64_t K,
                   float alpha, const float *A, int64_t lda, const duet_sgemm_bsrc *bs, float beta,
                   float *C, int64_t ldc);

#endif

/* duet — runtime weight layouts for the decode GEMV (src/core/repack.c).
 *
 * Q4_0 "R16": 16 weight rows interleaved, so that the GEMV streams one
 * contiguous buffer and a vpdpbusd leaves row r's integer block sum in lane r
 * with no gathers and no horizontal reductions (llama.cpp repacks Q4_0 to
 * q4_0_8x8 at load time for the same reason). Per group of 16 rows and block b
 * of 32 values (R16_Q4_0_BLOCK bytes):
 *   d   f16 [16]        the rows' block scales, row r at index r;
 *   qs  u8  [4][16][4]  chunk c, lane r = bytes 4c..4c+3 of row r's qs: the
 *                       low nibbles are values 4c..4c+3 of the block, the high
 *                       nibbles values 16+4c..16+4c+3 (ggml's Q4_0 order). */
#ifndef DUET_CORE_REPACK_H
#define DUET_CORE_REPACK_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define R16_ROWS 16
#define R16_Q4_0_BLOCK (2 * R16_ROWS + 16 * R16_ROWS)

/* The R16 GEMV: y (m, n_out) = x W^T with W in the R16 layout and x already
 * quantized to Q8_0 rows (xq), plus per token and block the float scale dx and
 * the offset correction corr = -8 * sum(qs) (the weights enter vpdpbusd as
 * unsigned q + 8). Threads take `chunk` row groups at a time. */
typedef struct {
    const uint8_t *w;   /* n_out / 16 groups of (n_in / 32) * R16_Q4_0_BLOCK bytes */
    const char *xq;     /* m rows of n_in / 32 block_q8_0 */
    const float *dx;    /* (m, n_in / 32) */
    const int32_t *corr;/* (m, n_in / 32) */
    float *y;           /* (m, n_out) */
    int64_t m, n_in, n_out;
    int64_t chunk;
    _Atomic int64_t next;
} duet_r16_job;

void duet_r16_gemv_task_avx512(void *job, int ith, int nth);

#endif

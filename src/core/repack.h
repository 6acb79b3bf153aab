/* internal: not part of the public API; may change. */
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
 *                       nibbles values 16+4c..16+4c+3 (ggml's Q4_0 order).
 *
 * Q4_K "R16": per group of 16 rows and super-block of 256 values
 * (R16_Q4_K_BLOCK bytes), the scales unpacked from their 6-bit form:
 *   d     f16 [16]           super-block scales;
 *   dmin  f16 [16]           super-block min scales;
 *   sc    u8  [8][16]        sub-block j's scale of row r;
 *   mn    u8  [4][16][2]     pair p, row r: the mins of sub-blocks 2p, 2p+1;
 *   qs    u8  [4][8][16][4]  pair p, chunk c, lane r = bytes 32p+4c..+3 of
 *                            row r's qs: low nibbles values 4c..4c+3 of
 *                            sub-block 2p, high nibbles those of 2p+1.
 *
 * F16 "R16": per group of 16 rows, for k = 0 .. n_in-1 the 16 rows' values
 * at k (f16 [n_in][16]). Its GEMV keeps one f32 FMA chain per (row, token)
 * over k in order, 16 rows per zmm with the token's x[k] broadcast: no
 * horizontal reductions (they cost as much as the products at n_in = 256),
 * and the same bits for a row whatever the number of tokens beside it. The
 * activations are rounded through F16 first, as llama.cpp does for F16
 * weights; the order of the sum is not llama.cpp's (within its batched vs
 * one-token noise: tests/test_model_ref.c). */
#ifndef DUET_CORE_REPACK_H
#define DUET_CORE_REPACK_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "duet/quant.h"

#define R16_ROWS 16
#define R16_Q4_0_BLOCK (2 * R16_ROWS + 16 * R16_ROWS)
#define R16_K_D 0
#define R16_K_DMIN 32
#define R16_K_SC 64
#define R16_K_MN 192
#define R16_K_QS 320
#define R16_Q4_K_BLOCK (R16_K_QS + 128 * R16_ROWS)

/* The R16 GEMV: y (m, n_out) = x W^T with W in an R16 layout and x already
 * quantized to the dot type (Q8_0 rows for Q4_0, Q8_K for Q4_K), plus per
 * token and block the activation scale dx and `aux`:
 *   Q4_0: per block corr = -8 * sum(qs) (the weights enter vpdpbusd as
 *         unsigned q + 8);
 *   Q4_K: per super-block 4 int32, pair p = the int16 sums of 32 values of
 *         sub-blocks 2p and 2p+1 (the min term's operands).
 * Threads take `chunk` row groups at a time. */
typedef struct {
    duet_type wt;       /* Q4_0, Q4_K or F16 */
    const uint8_t *w;   /* n_out / 16 groups of blocks in the R16 layout */
    const char *xq;     /* m rows of the dot type (F16: f32 values rounded through f16) */
    const float *dx;    /* (m, n_blocks) */
    const int32_t *aux; /* (m, n_blocks) Q4_0, (m, n_blocks, 4) Q4_K */
    float *y;           /* (m, n_out) */
    int64_t m, n_in, n_out;
    int64_t chunk;
    _Atomic int64_t next;
} duet_r16_job;

void duet_r16_gemv_task_avx512(void *job, int ith, int nth);

/* Row groups per pass of the F16 kernel for m tokens: chunks of that many
 * groups keep every pass at full width (repack.c). */
int duet_r16_f16_groups(int64_t m);

#endif

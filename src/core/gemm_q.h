/* internal: not part of the public API; may change. */
/* duet — the quantized GEMM's shared layouts (gemm_q.c builds the activation
 * panel, gemm_q_avx512.c repacks weight tiles and runs the VNNI kernels).
 *
 * Weights go through the unsigned operand of vpdpbusd, so each weight tile of
 * QG_ROWS rows is repacked per block into QG k-groups x QG_ROWS lanes of 4
 * consecutive unsigned bytes (zmm g, lane r = w[r][4g .. 4g+3] + offset).
 * Activations are the signed operand, broadcast 4 bytes at a time from an
 * activation panel: tokens in groups of QG_T, per block the QG_T rows of q8
 * values followed by their per-block scalars. */
#ifndef DUET_CORE_GEMM_Q_H
#define DUET_CORE_GEMM_Q_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "duet/quant.h"

#define QG_ROWS 16 /* weight rows per tile: one zmm lane each */
#define QG_T 8     /* tokens per activation group */

/* Activation panel, 32-element block types (dot type Q8_0 / Q8_1), per token
 * group and block: qs int8 [QG_T][32], seed int32 [QG_T][8] (k-group g:
 * -offset * sum(qs[4g..4g+3]), undoes the weight's unsigned offset lane by
 * lane), corr int32 [QG_T] (the whole block's: -offset * sum(qs)), d f32 [QG_T],
 * s f32 [QG_T] (Q8_1's s). */
#define QG_X32_QS 0
#define QG_X32_SEED (QG_T * 32)
#define QG_X32_CORR (QG_X32_SEED + QG_T * 32)
#define QG_X32_D (QG_X32_CORR + QG_T * 4)
#define QG_X32_S (QG_X32_D + QG_T * 4)
#define QG_X32_STRIDE (QG_X32_S + QG_T * 4)

/* Activation panel, K-quant types (dot type Q8_K), per token group and
 * super-block: qs int8 [QG_T][256], d f32 [QG_T], seed int32 [QG_T][64]
 * (k-group g: -offset * sum(qs[4g..4g+3]), Q6_K's -32), bs32 int16 [QG_T][8]
 * (sums of 32). */
#define QG_XK_QS 0
#define QG_XK_D (QG_T * 256)
#define QG_XK_SEED (QG_XK_D + QG_T * 4)
#define QG_XK_BS32 (QG_XK_SEED + QG_T * 256)
#define QG_XK_STRIDE (QG_XK_BS32 + QG_T * 16)

typedef struct {
    duet_type wt;
    const char *w;       /* n_out rows of w_row bytes */
    size_t w_row;
    int64_t m, n_in, n_out;
    float *y;            /* (m, n_out) */
    const char *xpanel;  /* ceil(m / QG_T) groups of group_stride bytes */
    size_t group_stride;
    int64_t n_tiles;     /* ceil(n_out / QG_ROWS) */
    _Atomic int64_t next_tile; /* tiles taken so far (each taken tile is completed) */
} duet_qgemm_job;

/* Takes tiles from job->next_tile until none is left: repack, multiply, store.
 * A thread that cannot get its tile buffer takes no tile. */
void duet_qgemm_task_avx512(void *job, int ith, int nth);

#endif

/* ---- few tokens (1 <= m < DUET_QGEMM_MIN_M): rows stay in place ----
 * Weight blocks are decoded straight from the rows and each token's
 * activations are laid out to match the decoded byte order, with seeds that
 * undo the weight's unsigned offset: seed lane l = -offset * (sum of the 4
 * activation bytes of lane l). Per token:
 *   32-element block types: per block q int8 [32] (natural order), seed
 *         int32 [8]; then dx f32 [ng*16] and sx f32 [ng*16] (ng = groups of 16
 *         blocks; sx: Q8_1's s; padding is zero)
 *   K types, per super-block: q int8 [256], seed int32 [64] (Q6_K), d f32,
 *         bs32 int16 [8] (sums of 32); Q4_K order: x[0..31] x[64..95]
 *         x[32..63] x[96..127], then the same for 128..255; Q5_K/Q6_K: natural. */
#define QV_K_Q 0
#define QV_K_SEED 256
#define QV_K_D 512
#define QV_K_BS32 528
#define QV_K_STRIDE 576

typedef struct {
    duet_type wt;
    const char *w;      /* n_out rows of w_row bytes */
    size_t w_row;
    int64_t m, n_in, n_out;
    float *y;           /* (m, n_out) */
    const char *xv;     /* m rows of xv_row bytes, layout above */
    size_t xv_row;
    int64_t m_pair;     /* Q4_K: tokens [0, m_pair) take the arithmetic of llama.cpp's
                         * repacked GEMM (per pair of sub-blocks), the others that of
                         * its GEMV (per super-block) -- see duet_qgemm */
    int64_t chunk;      /* weight rows per work item */
    _Atomic int64_t next;
} duet_qgemv_job;

/* Bytes of one token's activation row in the few-token layout. */
size_t duet_qgemv_xv_bytes(duet_type wt, int64_t n_in);
/* Takes row chunks from job->next: y[t][r] for every token t. */
void duet_qgemv_task_avx512(void *job, int ith, int nth);

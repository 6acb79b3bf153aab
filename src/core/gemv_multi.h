/* internal: not part of the public API; may change. */
/* duet — decode-consistent GEMV of several tokens at once on AVX2
 * (src/core/gemv_multi_avx2.c), for duet_matmul_ex(consistent = 1, m > 1).
 *
 * Every (row, token) result is bit-identical to the AVX2 vec_dot of that
 * type (vecdot_avx2.c) on that row and that token alone, i.e. to the
 * one-token GEMV. F32/F16/BF16: the same four 8-lane accumulators (element i
 * of each 32-element step in accumulator (i / 8) % 4, the 8-element tail
 * steps in the first), the same fused multiply-adds in the same order, the
 * same reduction ((a0 + a1) + (a2 + a3), then the 8 lanes) and the same
 * scalar remainder summed in double; each weight chunk is loaded and widened
 * once for up to DUET_GEMV_MULTI_T tokens (groups of at most 4 when there
 * are more) and two rows. Q8_0: the same
 * per-block integer sums, scale products and fma chain; each weight block,
 * its absolute values and its scale are loaded once for up to 8 tokens.
 *
 * Only call these when duet_cpu_simd_level() >= DUET_SIMD_AVX2. */
#ifndef DUET_CORE_GEMV_MULTI_H
#define DUET_CORE_GEMV_MULTI_H

#include <stddef.h>
#include <stdint.h>

#include "duet/quant.h"

/* Tokens per pass over a pair of weight rows. */
#define DUET_GEMV_MULTI_T 6

/* 1 when duet_gemv_multi_avx2 handles weight type wt (F32, F16, BF16, Q8_0). */
int duet_gemv_multi_supported(duet_type wt);

/* Floats from one token's row of xf to the next: the floats per token (n;
 * Q8_0: n / 32 block scales) rounded up to 8, plus 8 (rows 4 KiB apart
 * would share L1 sets). */
int64_t duet_gemv_multi_stride(duet_type wt, int64_t n);

/* xf (m rows, duet_gemv_multi_stride floats apart) = the activation rows xq
 * (m rows of row_size(dot type, n) bytes, as duet_quantize_act_row wrote
 * them; for F32 weights the f32 rows) widened exactly to f32; for Q8_0 the
 * blocks' scales widened to f32. */
void duet_gemv_multi_widen_avx2(duet_type wt, const void *xq, float *xf, int64_t m, int64_t n);

/* y[t * n_out + r] = AVX2 vec_dot(row r of w, token t) for r in [r0, r1),
 * t < m; w holds rows of w_row bytes, xf what duet_gemv_multi_widen_avx2
 * made of the activation rows xq (x_row bytes apart; read by Q8_0 only). */
void duet_gemv_multi_avx2(duet_type wt, int64_t n, const void *w, size_t w_row, int64_t r0, int64_t r1,
                          const float *xf, const void *xq, size_t x_row, int64_t m, float *y, int64_t n_out);

#endif

/* internal: not part of the public API; may change. */
/* duet — internal per-type kernel table: dot products, activation
 * quantizers and multi-row dot tiles, per SIMD level.
 *
 * How the matmul helper uses it (y = x W^T, W: n_out rows of type wt):
 *   const duet_type_traits *tr = duet_type_info(wt);
 *   duet_quantize_act_row(tr->dot_type, x_row, xq_row, n_in);  // once per x row
 *   duet_vec_dot_fn dot = duet_vec_dot_get(wt);                  // once per matmul
 *   y[i][o] = dot(n_in, w + o*row_size(wt), xq_row_i);
 * or tiles of up to DUET_NXM_MAX_R weight rows x DUET_NXM_MAX_C activation rows
 * with duet_vec_dot_nxm_get(wt).
 *
 * Activation rows MUST be produced by duet_quantize_act_row (not by
 * duet_quantize_row): for Q8_0/Q8_1 llama.cpp's x86 CPU backend rounds
 * activations differently from its file-format reference quantizer
 * (scale 127/amax and round-half-even instead of 1/(amax/127) and roundf),
 * and the logits we must reproduce depend on that rounding. */
#ifndef DUET_VECDOT_H
#define DUET_VECDOT_H

#include <stddef.h>
#include <stdint.h>

#include "duet/quant.h"

enum { DUET_SIMD_SCALAR = 0, DUET_SIMD_AVX2 = 1, DUET_SIMD_AVX512 = 2 };

/* Dot of one weight row w (n elements of the weight type) with one
 * activation row x (n elements of the weight type's dot type). */
typedef float (*duet_vec_dot_fn)(int64_t n, const void *w, const void *x);

/* Converts n floats to a row of an activation (dot) type. */
typedef void (*duet_quantize_fn)(const float *src, void *dst, int64_t n);

/* Tile kernel: for r < nr, c < nc:
 *   s[r*bs + c] = dot(row r of w, row c of x)
 * where row r of w starts at (const char *)w + r*bw and row c of x at
 * (const char *)x + c*bx (byte strides). 1 <= nr <= DUET_NXM_MAX_R,
 * 1 <= nc <= DUET_NXM_MAX_C. Rows must keep their type's alignment (4 bytes
 * for F32 and Q8_K rows, 2 for the others). Each entry equals what the single-row kernel of
 * the same level returns within float rounding (not necessarily bit for bit). */
#define DUET_NXM_MAX_R 4
#define DUET_NXM_MAX_C 4
typedef void (*duet_vec_dot_nxm_fn)(int64_t n, float *s, size_t bs, const void *w, size_t bw,
                                    const void *x, size_t bx, int nr, int nc);

/* Best kernel for this CPU, capped by DUET_SIMD. NULL if t is not a weight type. */
duet_vec_dot_fn duet_vec_dot_get(duet_type t);
duet_vec_dot_nxm_fn duet_vec_dot_nxm_get(duet_type t);
/* Kernel of one given level (capped at what the CPU supports; tests and
 * benchmarks use this to compare levels). */
duet_vec_dot_fn duet_vec_dot_get_level(duet_type t, int level);
duet_vec_dot_nxm_fn duet_vec_dot_nxm_get_level(duet_type t, int level);

/* Activation conversion to dot type dt (F32, F16, BF16, Q8_0, Q8_1, Q8_K).
 * Every level gives bit-identical output to the _ref version. */
void duet_quantize_act_row(duet_type dt, const float *src, void *dst, int64_t n);
void duet_quantize_act_row_ref(duet_type dt, const float *src, void *dst, int64_t n);
duet_quantize_fn duet_quantize_act_get(duet_type dt);
duet_quantize_fn duet_quantize_act_get_level(duet_type dt, int level);

/* What the CPU supports (0/1/2), ignoring DUET_SIMD. */
int duet_cpu_simd_level(void);

/* Row conversions (reference). */
void duet_f32_to_f16_row_ref(const float *src, uint16_t *dst, int64_t n);
void duet_f16_to_f32_row_ref(const uint16_t *src, float *dst, int64_t n);
void duet_f32_to_bf16_row_ref(const float *src, uint16_t *dst, int64_t n);
void duet_bf16_to_f32_row_ref(const uint16_t *src, float *dst, int64_t n);

/* ---- per-level tables (filled by vecdot_ref.c / vecdot_avx2.c / vecdot_avx512.c) ----
 * Indexed by duet_type; NULL entries fall back to the next lower level. */
typedef struct {
    duet_vec_dot_fn dot[DUET_TYPE_COUNT];
    duet_vec_dot_nxm_fn nxm[DUET_TYPE_COUNT];
    duet_quantize_fn act[DUET_TYPE_COUNT];
} duet_kernel_table;

void duet_kernels_ref_init(duet_kernel_table *t);
void duet_kernels_avx2_init(duet_kernel_table *t);
void duet_kernels_avx512_init(duet_kernel_table *t);

/* Tile kernel built from a single-row kernel (for types without a
 * dedicated tile at some level). */
#define DUET_DEFINE_NXM_FROM_DOT(name, dotfn)                                            \
    static void name(int64_t n, float *s, size_t bs, const void *w, size_t bw,         \
                     const void *x, size_t bx, int nr, int nc) {                       \
        for (int r_ = 0; r_ < nr; r_++)                                                \
            for (int c_ = 0; c_ < nc; c_++)                                            \
                s[(size_t)r_ * bs + (size_t)c_] =                                      \
                    dotfn(n, (const char *)w + (size_t)r_ * bw, (const char *)x + (size_t)c_ * bx); \
    }

#endif

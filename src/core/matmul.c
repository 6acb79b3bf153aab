/* y = x W^T for every weight type (see duet/kernels.h).
 *
 * Activations are converted once to the weight's dot type, exactly as
 * llama.cpp does (duet_quantize_act_row), then, on AVX-512 (VNNI, BF16):
 *   quantized weights (gemm_q.c): m < DUET_QGEMM_MIN_M streams each weight row
 *       once for up to 4 tokens, decoded in place (decode, short verification
 *       blocks: memory bound); more tokens repack 16-row weight tiles for
 *       integer tile kernels that reuse every loaded weight register across
 *       tokens (prefill: compute bound);
 *   F32/F16/BF16 weights: from SGEMM_MIN_M tokens the packed sgemm (f16/bf16
 *       values widen exactly to f32, their products are exact in f32); fewer
 *       tokens, and decode-consistent blocks, take tiles of tokens x weight
 *       rows read in place (gemm_f_avx512.c).
 * The one-token and few-token kernels repeat the float operations of the
 * llama.cpp kernel for that type, so that decode logits match llama.cpp bit
 * for bit (a last-ulp difference can flip the rounding of a quantized
 * activation downstream); integer block sums are exact in any order. The
 * sgemm sums in another order: prefill logits differ from llama.cpp's within
 * llama.cpp's own batched-vs-one-token noise (tests/test_model_ref.c).
 * Without AVX-512: F32/F16/BF16 with m >= AVX2_MULTI_MAX_M (AVX2) or
 * SGEMM_MIN_M (scalar) use the packed sgemm (f16/bf16 values widen exactly to
 * f32 and their products are exact in f32); on AVX2 fewer tokens take the
 * decode-consistent tiles below in either mode; everything else uses
 * vecdot.h's kernels, weight rows handed out to threads in
 * chunks, one row at a time for m == 1 (GEMV), in tiles of 4 rows x 4 tokens
 * otherwise. There, results equal vec_dot's within float summation noise.
 * Decode-consistent blocks (m > 1) take the one-token arithmetic per token:
 * F32/F16/BF16 on AVX2 in tiles of 2 rows x up to 6 tokens, Q8_0 in tiles of 1 row
 * x 8 tokens, that repeat the AVX2 vec_dot bit for bit (gemv_multi_avx2.c),
 * the other types a vec_dot per (row, token). */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "core/gemm.h"
#include "core/gemv_multi.h"
#include "core/quant_blocks.h"
#include "core/scratch.h"
#include "core/sgemm.h"
#include "core/vecdot.h"
#include "duet/kernels.h"

/* From this many activation rows, F32/F16/BF16 weights are packed for the
 * sgemm; below, the tile kernels read them in place. */
#define SGEMM_MIN_M 8

/* Below this many tokens, F32/F16/BF16 weights on AVX2 (no AVX-512) take the
 * multi-token GEMV tiles in both modes (see duet_matmul_ex). */
#define AVX2_MULTI_MAX_M 128

typedef struct {
    duet_type wt;
    const char *w;     /* n_out rows of w_row bytes */
    size_t w_row;
    const char *xq;    /* m rows of x_row bytes, in the dot type */
    size_t x_row;
    float *y;          /* (m, n_out) */
    int64_t m, n_in, n_out;
    duet_vec_dot_fn dot;
    duet_vec_dot_nxm_fn nxm;
    int64_t chunk;     /* weight rows per work item */
    _Atomic int64_t next;
    /* conversion phase */
    const float *x;    /* (m, n_in) */
    duet_quantize_fn quant;
    char *xq_out;
    /* decode-consistent blocks on AVX2 (gemv_multi_avx2.c): the activations
     * widened to f32, or NULL */
    const float *xf;
} mm_job;

static void convert_task(void *ctx, int ith, int nth) {
    mm_job *j = ctx;
    const int64_t r0 = j->m * ith / nth, r1 = j->m * (ith + 1) / nth;
    for (int64_t r = r0; r < r1; r++)
        j->quant(j->x + r * j->n_in, j->xq_out + (size_t)r * j->x_row, j->n_in);
}

static int64_t take_chunk(mm_job *j, int64_t *r1) {
    const int64_t r0 = atomic_fetch_add_explicit(&j->next, j->chunk, memory_order_relaxed);
    if (r0 >= j->n_out) return -1;
    *r1 = r0 + j->chunk < j->n_out ? r0 + j->chunk : j->n_out;
    return r0;
}

/* Bytes ahead of the row being read that gemv_task prefetches: the hardware
 * prefetcher alone leaves one core well below the memory bandwidth. */
#define GEMV_PF_DIST 4096

/* One vec_dot per (row, token): with m > 1 (decode-consistent mode) every
 * token gets exactly the one-token arithmetic while the row, read once from
 * memory, stays in L1 for the other tokens. */
static void gemv_task(void *ctx, int ith, int nth) {
    mm_job *j = ctx;
    int64_t r0, r1;
    if (j->xf) { /* the same arithmetic, each weight chunk widened once for several tokens */
        while ((r0 = take_chunk(j, &r1)) >= 0)
            duet_gemv_multi_avx2(j->wt, j->n_in, j->w, j->w_row, r0, r1, j->xf, j->xq, j->x_row, j->m, j->y,
                                 j->n_out);
        return;
    }
    while ((r0 = take_chunk(j, &r1)) >= 0)
        for (int64_t r = r0; r < r1; r++) {
            const char *row = j->w + (size_t)r * j->w_row;
            for (size_t o = 0; o < j->w_row; o += 64) __builtin_prefetch(row + GEMV_PF_DIST + o, 0, 3);
            for (int64_t t = 0; t < j->m; t++)
                j->y[t * j->n_out + r] = j->dot(j->n_in, row, j->xq + (size_t)t * j->x_row);
        }
}

/* Tiles of DUET_NXM_MAX_R weight rows x DUET_NXM_MAX_C tokens: a chunk of weight
 * rows stays in cache while all tokens pass over it. */
static void tile_task(void *ctx, int ith, int nth) {
    mm_job *j = ctx;
    float s[DUET_NXM_MAX_R * DUET_NXM_MAX_C];
    int64_t r0, r1;
    while ((r0 = take_chunk(j, &r1)) >= 0) {
        for (int64_t t = 0; t < j->m; t += DUET_NXM_MAX_C) {
            const int nc = (int)(j->m - t < DUET_NXM_MAX_C ? j->m - t : DUET_NXM_MAX_C);
            for (int64_t r = r0; r < r1; r += DUET_NXM_MAX_R) {
                const int nr = (int)(r1 - r < DUET_NXM_MAX_R ? r1 - r : DUET_NXM_MAX_R);
                j->nxm(j->n_in, s, DUET_NXM_MAX_C, j->w + (size_t)r * j->w_row, j->w_row,
                       j->xq + (size_t)t * j->x_row, j->x_row, nr, nc);
                for (int a = 0; a < nr; a++)
                    for (int c = 0; c < nc; c++) j->y[(t + c) * j->n_out + r + a] = s[a * DUET_NXM_MAX_C + c];
            }
        }
    }
}

typedef struct {
    duet_type dt;
    const float *src;
    float *dst;
    int64_t n;
} round_job;

static void round_task(void *ctx, int ith, int nth) {
    const round_job *r = ctx;
    const int64_t i0 = r->n * ith / nth, i1 = r->n * (ith + 1) / nth;
    if (duet_simd_level() >= DUET_SIMD_AVX512)
        duet_gemm_round_rows_avx512(r->dt, r->src + i0, r->dst + i0, i1 - i0);
    else if (r->dt == DUET_TYPE_F16)
        for (int64_t i = i0; i < i1; i++) r->dst[i] = duet_fp16_to_fp32_inl(duet_fp32_to_fp16_inl(r->src[i]));
    else
        for (int64_t i = i0; i < i1; i++) r->dst[i] = duet_bf16_to_fp32_inl(duet_fp32_to_bf16_inl(r->src[i]));
}

void duet_gemm_round_rows(duet_pool *pool, duet_type dt, const float *src, float *dst, int64_t n) {
    round_job r = {dt, src, dst, n};
    if (n < 65536) round_task(&r, 0, 1);
    else duet_pool_run(pool, round_task, &r);
}

static void fill_nan(float *y, int64_t count) {
    for (int64_t i = 0; i < count; i++) y[i] = NAN;
}

/* F16/BF16 weights, many rows: x rounded through the dot type (back to f32,
 * exactly), then the sgemm with a packer that widens the weight rows. */
static int matmul_sgemm_half(duet_pool *pool, float *y, duet_type wt, const void *w,
                             const float *x, int64_t m, int64_t n_in, int64_t n_out) {
    float *xr = duet_scratch(DUET_SCRATCH_ACT, (size_t)(m * n_in) * sizeof(float));
    if (!xr) return -1;
    duet_gemm_round_rows(pool, wt, x, xr, m * n_in);
    const duet_sgemm_bsrc bs = {wt == DUET_TYPE_F16 ? duet_sgemm_pack_b_f16 : duet_sgemm_pack_b_bf16,
                                w, n_in, 1};
    duet_sgemm_ex(pool, -1, 0, m, n_out, n_in, 1.0f, xr, n_in, &bs, 0.0f, y, n_out);
    return 0;
}

typedef struct {
    duet_quantize_fn quant;
    const float *x; /* (m, n_in) */
    char *dst;      /* m rows of row bytes */
    size_t row;
    int64_t m, n_in;
} act_job;

static void act_task(void *ctx, int ith, int nth) {
    const act_job *a = ctx;
    for (int64_t r = a->m * ith / nth; r < a->m * (ith + 1) / nth; r++)
        a->quant(a->x + r * a->n_in, a->dst + (size_t)r * a->row, a->n_in);
}

/* F32/F16/BF16 weights on AVX-512 with tinyBLAS's float operations (see
 * gemm_f_avx512.c); -1 if this case is not handled. */
static int matmul_fgemm(duet_pool *pool, float *y, duet_type wt, const void *w, const float *x, int64_t m,
                        int64_t n_in, int64_t n_out) {
    if (duet_simd_level() < DUET_SIMD_AVX512 || n_in % (wt == DUET_TYPE_BF16 ? 32 : 16) != 0) return -1;
    duet_fgemm_job j = {.wt = wt, .w = w, .w_row = duet_row_size(wt, n_in), .x = x, .m = m, .n_in = n_in,
                        .n_out = n_out, .y = y};
    if (wt == DUET_TYPE_F16) {
        float *xr = duet_scratch(DUET_SCRATCH_ACT, (size_t)(m * n_in) * sizeof(float));
        if (!xr) return -1;
        duet_gemm_round_rows(pool, wt, x, xr, m * n_in);
        j.x = xr;
    } else if (wt == DUET_TYPE_BF16) {
        act_job a = {duet_quantize_act_get(DUET_TYPE_BF16), x, NULL, (size_t)n_in * 2, m, n_in};
        a.dst = duet_scratch(DUET_SCRATCH_ACT, a.row * (size_t)m);
        if (!a.quant || !a.dst) return -1;
        if (m * n_in < 65536) act_task(&a, 0, 1);
        else duet_pool_run(pool, act_task, &a);
        j.x = a.dst;
    }
    const int nth = duet_pool_size(pool);
    int64_t chunk = n_out / ((int64_t)nth * 8);
    j.chunk = chunk < 6 ? 6 : (chunk + 5) / 6 * 6;
    atomic_init(&j.next, 0);
    if (nth == 1 || n_out <= j.chunk) duet_fgemm_task_avx512(&j, 0, 1);
    else duet_pool_run(pool, duet_fgemm_task_avx512, &j);
    /* rows nobody took (no thread got its accumulator buffer): redo it all */
    return atomic_load(&j.next) >= n_out ? 0 : -1;
}

void duet_matmul(duet_pool *pool, float *y, duet_type wt, const void *w, const float *x,
                 int64_t m, int64_t n_in, int64_t n_out) {
    duet_matmul_ex(pool, y, wt, w, x, m, n_in, n_out, 0);
}

/* Decode-consistent mode (consistent != 0) takes, for m >= 2, the path that
 * m == 1 takes, each kernel running the one-token arithmetic per token:
 *   F32/F16/BF16 on AVX-512: the tinyBLAS tiles already give every (token,
 *       row) the same fma chain and reduction for any tile height, so they
 *       stay; the packed sgemm (m >= SGEMM_MIN_M) is skipped;
 *   quantized types of duet_qgemm: its few-token kernels for any m, without
 *       the Q4_K pair arithmetic of llama.cpp's repacked GEMM;
 *   F32/F16/BF16/Q8_0 where the one-token GEMV runs the AVX2 vec_dot: that
 *       dot's arithmetic per (row, token), each weight chunk loaded once for
 *       several tokens (gemv_multi_avx2.c);
 *   everything else: vec_dot per (row, token), as the m == 1 GEMV. */
void duet_matmul_ex(duet_pool *pool, float *y, duet_type wt, const void *w, const float *x,
                    int64_t m, int64_t n_in, int64_t n_out, int consistent) {
    if (m <= 0 || n_out <= 0) return;
    if (m == 1) consistent = 0; /* one token is its own reference */
    const duet_type_traits *tr = duet_type_info((uint32_t)wt);
    if (!tr || !tr->is_weight_type || n_in <= 0 || n_in % tr->blck != 0) {
        fill_nan(y, m * n_out); /* a programmer error: make it loud, not a crash */
        return;
    }
    const duet_type dt = tr->dot_type;
    const int nth = duet_pool_size(pool);

    /* AVX2 without AVX-512: F32/F16/BF16 blocks of fewer than
     * AVX2_MULTI_MAX_M tokens take the decode-consistent tiles in either mode
     * (gemv_multi_avx2.c: each weight chunk widened once per 4 tokens, read in
     * place). On the 2-core EPYC they were 1.6-1.9x faster than the 4 x 4
     * vec_dot tiles for m < 8 and 1.1-3.5x faster than packing the weights for
     * the sgemm for 8 <= m < 128 (F16, 1024 x 384 and 384 x 1024, fastest of
     * 15 side by side); from 128 tokens on the sgemm catches up. The rows are
     * then those of one-token evals: prompts get llama.cpp's one-token
     * arithmetic instead of its batched one, within the same noise. */
    if (!consistent && m > 1 && m < AVX2_MULTI_MAX_M && duet_simd_level() == DUET_SIMD_AVX2 &&
        (wt == DUET_TYPE_F32 || wt == DUET_TYPE_F16 || wt == DUET_TYPE_BF16))
        consistent = 1;

    /* Many tokens: the packed sgemm (about twice the tiles' speed, its sums
     * in another order: within llama.cpp's own batched-vs-one-token noise). */
    if (!consistent && m >= SGEMM_MIN_M && wt == DUET_TYPE_F32) {
        duet_sgemm(pool, 0, 1, m, n_out, n_in, 1.0f, x, n_in, w, n_in, 0.0f, y, n_out);
        return;
    }
    if (!consistent && m >= SGEMM_MIN_M && (wt == DUET_TYPE_F16 || wt == DUET_TYPE_BF16) &&
        matmul_sgemm_half(pool, y, wt, w, x, m, n_in, n_out) == 0)
        return;
    if ((wt == DUET_TYPE_F32 || wt == DUET_TYPE_F16 || wt == DUET_TYPE_BF16) &&
        matmul_fgemm(pool, y, wt, w, x, m, n_in, n_out) == 0)
        return;
    if (duet_qgemm_supported(wt) && duet_qgemm_ex(pool, y, wt, w, x, m, n_in, n_out, consistent) == 0)
        return;

    mm_job j = {.wt = wt, .w = w, .w_row = duet_row_size(wt, n_in), .y = y, .m = m,
                .n_in = n_in, .n_out = n_out, .dot = duet_vec_dot_get(wt),
                .nxm = duet_vec_dot_nxm_get(wt), .x = x, .quant = duet_quantize_act_get(dt)};
    j.x_row = duet_row_size(dt, n_in);
    if (!j.dot || !j.nxm || !j.quant) {
        fill_nan(y, m * n_out);
        return;
    }
    if (dt == DUET_TYPE_F32) {
        j.xq = (const char *)x;
    } else {
        j.xq_out = duet_scratch(DUET_SCRATCH_ACT, (size_t)m * j.x_row);
        if (!j.xq_out) {
            fill_nan(y, m * n_out);
            return;
        }
        if (m == 1 || nth == 1) convert_task(&j, 0, 1);
        else duet_pool_run(pool, convert_task, &j);
        j.xq = j.xq_out;
    }
    if (consistent && duet_gemv_multi_supported(wt) && duet_cpu_simd_level() >= DUET_SIMD_AVX2 &&
        j.dot == duet_vec_dot_get_level(wt, DUET_SIMD_AVX2)) {
        float *xf = duet_scratch(DUET_SCRATCH_ACT_AUX, (size_t)(m * duet_gemv_multi_stride(wt, n_in)) * sizeof(float));
        if (xf) duet_gemv_multi_widen_avx2(wt, j.xq, xf, m, n_in);
        j.xf = xf; /* NULL: the per-token dots */
    }
    /* Enough chunks per thread to even out a busy core, each a multiple of
     * the tile height. */
    int64_t chunk = n_out / ((int64_t)nth * 8);
    chunk = chunk < 16 ? 16 : (chunk + 15) / 16 * 16;
    j.chunk = chunk;
    atomic_init(&j.next, 0);
    duet_task_fn fn = m == 1 || consistent ? gemv_task : tile_task;
    if (nth == 1 || n_out <= chunk) fn(&j, 0, 1);
    else duet_pool_run(pool, fn, &j);
}

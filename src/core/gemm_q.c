/* The quantized GEMM's orchestration (baseline x86-64 code): quantizes the
 * activations with llama.cpp's rounding, lays them out as the activation
 * panel of core/gemm_q.h, and runs the VNNI tile kernels over the weight rows
 * on every thread. */
#include <string.h>

#include "core/gemm.h"
#include "core/gemm_q.h"
#include "core/quant_blocks.h"
#include "core/scratch.h"
#include "core/vecdot.h"

/* The unsigned offset added to each weight value by the repacking (so that
 * it can be vpdpbusd's unsigned operand); -1 if the type is not handled. */
static int weight_offset(duet_type wt) {
    switch (wt) {
    case DUET_TYPE_Q4_0: return 8;
    case DUET_TYPE_Q5_0: return 16;
    case DUET_TYPE_Q8_0: return 128;
    case DUET_TYPE_Q4_1:
    case DUET_TYPE_Q5_1:
    case DUET_TYPE_Q4_K:
    case DUET_TYPE_Q5_K: return 0;
    case DUET_TYPE_Q6_K: return 32;
    default: return -1;
    }
}

int duet_qgemm_supported(duet_type wt) {
    return weight_offset(wt) >= 0 && duet_simd_level() >= DUET_SIMD_AVX512;
}

typedef struct {
    duet_qgemm_job *job;
    duet_type dt;
    duet_quantize_fn quant;
    const float *x;       /* (m, n_in) */
    char *xq;             /* m rows of xq_row bytes */
    size_t xq_row;
    char *xpanel;
    int64_t n_groups;
    int offset;
} xpanel_job;

static void build_group_32(const xpanel_job *xj, int64_t g) {
    const duet_qgemm_job *j = xj->job;
    const int64_t nb = j->n_in / 32;
    char *dst = xj->xpanel + (size_t)g * j->group_stride;
    memset(dst, 0, j->group_stride); /* padding tokens: all zero, results unused */
    for (int t = 0; t < QG_T && g * QG_T + t < j->m; t++) {
        const char *row = xj->xq + (size_t)(g * QG_T + t) * xj->xq_row;
        for (int64_t b = 0; b < nb; b++) {
            char *blk = dst + b * QG_X32_STRIDE;
            const int8_t *qs;
            float d, s = 0.0f;
            if (xj->dt == DUET_TYPE_Q8_1) {
                const block_q8_1 *x = (const block_q8_1 *)row + b;
                qs = x->qs;
                d = duet_fp16_to_fp32_inl(x->d);
                s = duet_fp16_to_fp32_inl(x->s);
            } else {
                const block_q8_0 *x = (const block_q8_0 *)row + b;
                qs = x->qs;
                d = duet_fp16_to_fp32_inl(x->d);
            }
            int32_t seed[8], sum = 0;
            for (int g = 0; g < 8; g++) {
                const int32_t s4 = qs[4 * g] + qs[4 * g + 1] + qs[4 * g + 2] + qs[4 * g + 3];
                seed[g] = -xj->offset * s4;
                sum += s4;
            }
            const int32_t corr = -xj->offset * sum;
            memcpy(blk + QG_X32_QS + t * 32, qs, 32);
            memcpy(blk + QG_X32_SEED + t * 32, seed, 32);
            memcpy(blk + QG_X32_CORR + t * 4, &corr, 4);
            memcpy(blk + QG_X32_D + t * 4, &d, 4);
            memcpy(blk + QG_X32_S + t * 4, &s, 4);
        }
    }
}

static void build_group_k(const xpanel_job *xj, int64_t g) {
    const duet_qgemm_job *j = xj->job;
    const int64_t nsb = j->n_in / QK_K;
    char *dst = xj->xpanel + (size_t)g * j->group_stride;
    memset(dst, 0, j->group_stride);
    for (int t = 0; t < QG_T && g * QG_T + t < j->m; t++) {
        const block_q8_K *x = (const block_q8_K *)(xj->xq + (size_t)(g * QG_T + t) * xj->xq_row);
        for (int64_t b = 0; b < nsb; b++) {
            char *sb = dst + b * QG_XK_STRIDE;
            memcpy(sb + QG_XK_QS + t * 256, x[b].qs, 256);
            memcpy(sb + QG_XK_D + t * 4, &x[b].d, 4);
            int32_t seed[64];
            for (int g = 0; g < 64; g++)
                seed[g] = -xj->offset * (x[b].qs[4 * g] + x[b].qs[4 * g + 1] + x[b].qs[4 * g + 2] + x[b].qs[4 * g + 3]);
            memcpy(sb + QG_XK_SEED + t * 256, seed, 256);
            int16_t bs32[8];
            for (int k = 0; k < 8; k++) bs32[k] = (int16_t)(x[b].bsums[2 * k] + x[b].bsums[2 * k + 1]);
            memcpy(sb + QG_XK_BS32 + t * 16, bs32, 16);
        }
    }
}

static void xpanel_task(void *ctx, int ith, int nth) {
    const xpanel_job *xj = ctx;
    const duet_qgemm_job *j = xj->job;
    const int64_t g0 = xj->n_groups * ith / nth, g1 = xj->n_groups * (ith + 1) / nth;
    for (int64_t g = g0; g < g1; g++) {
        for (int t = 0; t < QG_T && g * QG_T + t < j->m; t++) {
            const int64_t r = g * QG_T + t;
            xj->quant(xj->x + r * j->n_in, xj->xq + (size_t)r * xj->xq_row, j->n_in);
        }
        if (xj->dt == DUET_TYPE_Q8_K) build_group_k(xj, g);
        else build_group_32(xj, g);
    }
}

/* ---- few tokens ---- */

static int is_k_type(duet_type wt) {
    return wt == DUET_TYPE_Q4_K || wt == DUET_TYPE_Q5_K || wt == DUET_TYPE_Q6_K;
}

size_t duet_qgemv_xv_bytes(duet_type wt, int64_t n_in) {
    if (is_k_type(wt)) return (size_t)(n_in / QK_K) * QV_K_STRIDE;
    const int64_t nb = n_in / 32, ng = (nb + 15) / 16;
    return (size_t)nb * 64 + (size_t)ng * 128;
}

/* seed[l] = -offset * (sum of the 4 bytes of lane l), for n_lanes lanes. */
static void lane_seeds(const int8_t *q, int32_t *seed, int n_lanes, int offset) {
    for (int l = 0; l < n_lanes; l++)
        seed[l] = -offset * (q[4 * l] + q[4 * l + 1] + q[4 * l + 2] + q[4 * l + 3]);
}

static void build_xv_32(duet_type wt, duet_type dt, const char *xrow, int64_t n_in, char *dst) {
    const int64_t nb = n_in / 32, ng = (nb + 15) / 16;
    float *dx = (float *)(dst + nb * 64), *sx = dx + ng * 16;
    memset(dst, 0, duet_qgemv_xv_bytes(wt, n_in));
    for (int64_t b = 0; b < nb; b++) {
        const int8_t *qs;
        if (dt == DUET_TYPE_Q8_1) {
            const block_q8_1 *x = (const block_q8_1 *)xrow + b;
            qs = x->qs;
            dx[b] = duet_fp16_to_fp32_inl(x->d);
            sx[b] = duet_fp16_to_fp32_inl(x->s);
        } else {
            const block_q8_0 *x = (const block_q8_0 *)xrow + b;
            qs = x->qs;
            dx[b] = duet_fp16_to_fp32_inl(x->d);
        }
        memcpy(dst + b * 64, qs, 32);
        lane_seeds(qs, (int32_t *)(dst + b * 64 + 32), 8, weight_offset(wt));
    }
}

static void build_xv_k(duet_type wt, const char *xrow, int64_t n_in, char *dst) {
    const block_q8_K *x = (const block_q8_K *)xrow;
    for (int64_t s = 0; s < n_in / QK_K; s++) {
        char *sb = dst + s * QV_K_STRIDE;
        memset(sb, 0, QV_K_STRIDE);
        int8_t *q = (int8_t *)(sb + QV_K_Q);
        if (wt == DUET_TYPE_Q6_K) {
            memcpy(q, x[s].qs, 256);
            lane_seeds(q, (int32_t *)(sb + QV_K_SEED), 64, 32);
        } else if (wt == DUET_TYPE_Q5_K) {
            memcpy(q, x[s].qs, 256);
        } else {
            for (int h = 0; h < 2; h++) { /* [0..31] [64..95] [32..63] [96..127] per 128 */
                memcpy(q + 128 * h, x[s].qs + 128 * h, 32);
                memcpy(q + 128 * h + 32, x[s].qs + 128 * h + 64, 32);
                memcpy(q + 128 * h + 64, x[s].qs + 128 * h + 32, 32);
                memcpy(q + 128 * h + 96, x[s].qs + 128 * h + 96, 32);
            }
        }
        memcpy(sb + QV_K_D, &x[s].d, 4);
        int16_t bs32[8];
        for (int k = 0; k < 8; k++) bs32[k] = (int16_t)(x[s].bsums[2 * k] + x[s].bsums[2 * k + 1]);
        memcpy(sb + QV_K_BS32, bs32, 16);
    }
}

static int qgemv(duet_pool *pool, float *y, duet_type wt, duet_type dt, const void *w,
                 const float *x, int64_t m, int64_t n_in, int64_t n_out, int64_t m_pair) {
    const duet_quantize_fn quant = duet_quantize_act_get(dt);
    const size_t xq_row = duet_row_size(dt, n_in), xv_row = duet_qgemv_xv_bytes(wt, n_in);
    char *xq = duet_scratch(DUET_SCRATCH_ACT, xq_row);
    char *xv = duet_scratch(DUET_SCRATCH_ACT_AUX, xv_row * (size_t)m);
    if (!quant || !xq || !xv) return -1;
    for (int64_t t = 0; t < m; t++) { /* a few rows: not worth waking the pool */
        quant(x + t * n_in, xq, n_in);
        if (is_k_type(wt)) build_xv_k(wt, xq, n_in, xv + (size_t)t * xv_row);
        else build_xv_32(wt, dt, xq, n_in, xv + (size_t)t * xv_row);
    }
    duet_qgemv_job job = {.wt = wt, .w = w, .w_row = duet_row_size(wt, n_in), .m = m,
                          .n_in = n_in, .n_out = n_out, .y = y, .xv = xv, .xv_row = xv_row,
                          .m_pair = m_pair};
    const int nth = duet_pool_size(pool);
    /* Several chunks per thread so that a busy core does not hold the rest
     * back; multiples of 16 rows. */
    int64_t chunk = n_out / ((int64_t)nth * 8);
    job.chunk = chunk < 16 ? 16 : (chunk + 15) / 16 * 16;
    atomic_init(&job.next, 0);
    if (nth == 1 || n_out <= job.chunk) duet_qgemv_task_avx512(&job, 0, 1);
    else duet_pool_run(pool, duet_qgemv_task_avx512, &job);
    return 0;
}

static int qgemm_tiles(duet_pool *pool, float *y, duet_type wt, duet_type dt, const void *w, const float *x,
                       int64_t m, int64_t n_in, int64_t n_out);

int duet_qgemm(duet_pool *pool, float *y, duet_type wt, const void *w, const float *x, int64_t m,
               int64_t n_in, int64_t n_out) {
    return duet_qgemm_ex(pool, y, wt, w, x, m, n_in, n_out, 0);
}

int duet_qgemm_ex(duet_pool *pool, float *y, duet_type wt, const void *w, const float *x, int64_t m,
                  int64_t n_in, int64_t n_out, int consistent) {
    const duet_type_traits *tr = duet_type_info((uint32_t)wt);
    if (!tr || !duet_qgemm_supported(wt) || n_in % tr->blck != 0) return -1;
    const duet_type dt = tr->dot_type;
    /* One token takes qgemv with no Q4_K pair arithmetic (m_pair = 0; the
     * other types ignore m_pair), and qgemv computes each token on its own
     * in that same order whatever the number of tokens beside it. */
    if (consistent) return qgemv(pool, y, wt, dt, w, x, m, n_in, n_out, 0);
    /* llama.cpp multiplies repacked Q4_K weights with its GEMM for the tokens
     * in whole groups of 4 and with its GEMV for the last m % 4, and the two
     * round differently: so do we. */
    const int64_t m4 = wt == DUET_TYPE_Q4_K ? m - m % 4 : m;
    if (m4 < DUET_QGEMM_MIN_M) return qgemv(pool, y, wt, dt, w, x, m, n_in, n_out, m4);
    if (m4 < m) {
        if (qgemm_tiles(pool, y, wt, dt, w, x, m4, n_in, n_out) != 0) return -1;
        return qgemv(pool, y + m4 * n_out, wt, dt, w, x + m4 * n_in, m - m4, n_in, n_out, 0);
    }
    return qgemm_tiles(pool, y, wt, dt, w, x, m, n_in, n_out);
}

/* The tile kernels for all m tokens. */
static int qgemm_tiles(duet_pool *pool, float *y, duet_type wt, duet_type dt, const void *w, const float *x,
                       int64_t m, int64_t n_in, int64_t n_out) {
    duet_qgemm_job job = {.wt = wt, .w = w, .w_row = duet_row_size(wt, n_in), .m = m,
                          .n_in = n_in, .n_out = n_out, .y = y,
                          .n_tiles = (n_out + QG_ROWS - 1) / QG_ROWS};
    job.group_stride = dt == DUET_TYPE_Q8_K ? (size_t)(n_in / QK_K) * QG_XK_STRIDE
                                            : (size_t)(n_in / 32) * QG_X32_STRIDE;
    xpanel_job xj = {.job = &job, .dt = dt, .quant = duet_quantize_act_get(dt), .x = x,
                     .xq_row = duet_row_size(dt, n_in), .n_groups = (m + QG_T - 1) / QG_T,
                     .offset = weight_offset(wt)};
    if (!xj.quant) return -1;
    xj.xq = duet_scratch(DUET_SCRATCH_ACT, (size_t)m * xj.xq_row);
    xj.xpanel = duet_scratch(DUET_SCRATCH_ACT_AUX, (size_t)xj.n_groups * job.group_stride);
    if (!xj.xq || !xj.xpanel) return -1;
    job.xpanel = xj.xpanel;
    duet_pool_run(pool, xpanel_task, &xj);

    atomic_init(&job.next_tile, 0);
    duet_pool_run(pool, duet_qgemm_task_avx512, &job);
    /* Tiles nobody could take (no thread got a buffer): let the caller redo it. */
    return atomic_load(&job.next_tile) >= job.n_tiles ? 0 : -1;
}

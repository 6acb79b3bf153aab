/* Runtime weight layouts for the decode GEMV (see core/repack.h), and the
 * product that uses them (duet_matmul_packed). */
#include <stdlib.h>
#include <string.h>

#include "core/gemm.h"
#include "core/quant_blocks.h"
#include "core/repack.h"
#include "core/scratch.h"
#include "core/vecdot.h"
#include "duet/kernels.h"

/* Bytes per group of 16 rows and block (F16: per value). */
static size_t block_bytes(duet_type wt) {
    switch (wt) {
    case DUET_TYPE_Q4_0: return R16_Q4_0_BLOCK;
    case DUET_TYPE_Q4_K: return R16_Q4_K_BLOCK;
    case DUET_TYPE_F16: return 2 * R16_ROWS;
    default: return 0;
    }
}

static int64_t block_len(duet_type wt) { return wt == DUET_TYPE_Q4_K ? QK_K : wt == DUET_TYPE_F16 ? 1 : 32; }

size_t duet_repack_bytes(duet_type wt, int64_t n_in, int64_t n_out) {
    const size_t bb = block_bytes(wt);
    const int64_t blck = block_len(wt);
    if (!bb || duet_simd_level() < DUET_SIMD_AVX512) return 0;
    if (n_in <= 0 || n_in % blck || n_out <= 0 || n_out % R16_ROWS) return 0;
    return (size_t)(n_out / R16_ROWS) * (size_t)(n_in / blck) * bb;
}

/* ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j. */
static void scale_min_k4(const uint8_t *q, int j, uint8_t *sc, uint8_t *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *mn = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void pack_f16(const uint16_t *row, int r, int64_t n_in, uint16_t *out) {
    for (int64_t k = 0; k < n_in; k++) out[k * R16_ROWS + r] = row[k];
}

static void pack_q4_0(const block_q4_0 *blk, int r, uint8_t *out) {
    memcpy(out + 2 * r, &blk->d, 2);
    for (int c = 0; c < 4; c++) memcpy(out + 2 * R16_ROWS + 64 * c + 4 * r, blk->qs + 4 * c, 4);
}

static void pack_q4_k(const block_q4_K *blk, int r, uint8_t *out) {
    memcpy(out + R16_K_D + 2 * r, &blk->d, 2);
    memcpy(out + R16_K_DMIN + 2 * r, &blk->dmin, 2);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, mn;
        scale_min_k4(blk->scales, j, &sc, &mn);
        out[R16_K_SC + 16 * j + r] = sc;
        out[R16_K_MN + 32 * (j / 2) + 2 * r + (j % 2)] = mn;
    }
    for (int p = 0; p < 4; p++)
        for (int c = 0; c < 8; c++) memcpy(out + R16_K_QS + 64 * (8 * p + c) + 4 * r, blk->qs + 32 * p + 4 * c, 4);
}

int duet_repack(duet_type wt, const void *w, int64_t n_in, int64_t n_out, void *dst) {
    if (!duet_repack_bytes(wt, n_in, n_out)) return -1;
    const size_t row = duet_row_size(wt, n_in), bb = block_bytes(wt);
    const int64_t nb = n_in / block_len(wt);
    uint8_t *out = dst;
    memset(out, 0, duet_repack_bytes(wt, n_in, n_out));
    for (int64_t g = 0; g < n_out / R16_ROWS; g++) {
        if (wt == DUET_TYPE_F16) {
            for (int r = 0; r < R16_ROWS; r++)
                pack_f16((const uint16_t *)((const char *)w + (size_t)(g * R16_ROWS + r) * row), r, n_in, (uint16_t *)out);
            out += (size_t)nb * bb;
            continue;
        }
        for (int64_t b = 0; b < nb; b++, out += bb)
            for (int r = 0; r < R16_ROWS; r++) {
                const char *blk = (const char *)w + (size_t)(g * R16_ROWS + r) * row + (size_t)b * (row / (size_t)nb);
                if (wt == DUET_TYPE_Q4_0) pack_q4_0((const block_q4_0 *)blk, r, out);
                else pack_q4_k((const block_q4_K *)blk, r, out);
            }
    }
    return 0;
}

/* The activations of the R16 GEMV (core/repack.h: dx and aux). */
static void prep_activations(duet_r16_job *j, const float *x, char *xq, float *dx, int32_t *aux) {
    const int k = j->wt == DUET_TYPE_Q4_K;
    const duet_type dt = k ? DUET_TYPE_Q8_K : DUET_TYPE_Q8_0;
    const duet_quantize_fn quant = duet_quantize_act_get(dt);
    const int64_t nb = j->n_in / (k ? QK_K : 32);
    const size_t row = duet_row_size(dt, j->n_in);
    for (int64_t t = 0; t < j->m; t++) {
        char *xr = xq + (size_t)t * row;
        quant(x + t * j->n_in, xr, j->n_in);
        for (int64_t b = 0; b < nb; b++) {
            if (k) {
                const block_q8_K *blk = (const block_q8_K *)xr + b;
                dx[t * nb + b] = blk->d;
                for (int p = 0; p < 4; p++) {
                    const int16_t pair[2] = {(int16_t)(blk->bsums[4 * p] + blk->bsums[4 * p + 1]),
                                             (int16_t)(blk->bsums[4 * p + 2] + blk->bsums[4 * p + 3])};
                    memcpy(aux + (t * nb + b) * 4 + p, pair, 4);
                }
            } else {
                const block_q8_0 *blk = (const block_q8_0 *)xr + b;
                int32_t s = 0;
                for (int i = 0; i < 32; i++) s += blk->qs[i];
                dx[t * nb + b] = duet_fp16_to_fp32_inl(blk->d);
                aux[t * nb + b] = -8 * s;
            }
        }
    }
}

/* Fills j's activation fields (core/repack.h) from x; -1 without scratch. */
static int prepare(duet_pool *pool, duet_r16_job *j, const float *x) {
    const int64_t m = j->m, n_in = j->n_in;
    if (j->wt == DUET_TYPE_F16) {
        float *xr = duet_scratch(DUET_SCRATCH_ACT, (size_t)(m * n_in) * sizeof(float));
        if (!xr) return -1;
        duet_gemm_round_rows(pool, DUET_TYPE_F16, x, xr, m * n_in);
        j->xq = (const char *)xr;
        return 0;
    }
    const int k = j->wt == DUET_TYPE_Q4_K;
    const int64_t nb = n_in / (k ? QK_K : 32);
    char *xq = duet_scratch(DUET_SCRATCH_ACT, (size_t)m * duet_row_size(k ? DUET_TYPE_Q8_K : DUET_TYPE_Q8_0, n_in));
    float *dx = duet_scratch(DUET_SCRATCH_ACT_AUX, (size_t)(m * nb) * (sizeof(float) + (k ? 16 : 4)));
    if (!xq || !dx) return -1;
    int32_t *aux = (int32_t *)(dx + m * nb);
    prep_activations(j, x, xq, dx, aux);
    j->xq = xq;
    j->dx = dx;
    j->aux = aux;
    return 0;
}

/* Few tokens (decode, verification blocks) over repacked weights; everything
 * else, and CPUs without AVX-512, over the GGUF layout. The R16 kernels run
 * the same integer sums and the same float chains per (row, token) as
 * duet_matmul_ex's GEMV (F16: see core/repack.h), so one token's results do
 * not depend on the tokens beside it. */
void duet_matmul_packed(duet_pool *pool, float *y, duet_type wt, const void *w, const void *packed,
                        const float *x, int64_t m, int64_t n_in, int64_t n_out, int consistent) {
    /* llama.cpp multiplies Q4_K weights by whole groups of 4 tokens with its
     * GEMM's arithmetic (duet_qgemm_ex follows it): those stay there. */
    const int64_t few = wt == DUET_TYPE_Q4_K ? 4 : DUET_QGEMM_MIN_M;
    duet_r16_job j = {.wt = wt, .w = packed, .y = y, .m = m, .n_in = n_in, .n_out = n_out};
    if (!packed || m <= 0 || (!consistent && m >= few) || !duet_repack_bytes(wt, n_in, n_out) ||
        prepare(pool, &j, x) != 0) {
        duet_matmul_ex(pool, y, wt, w, x, m, n_in, n_out, consistent);
        return;
    }
    const int nth = duet_pool_size(pool);
    const int64_t groups = n_out / R16_ROWS;
    /* F16 takes whole passes of its kernel (a narrower pass at a chunk's
     * end shares each x broadcast among fewer groups and has fewer chains) */
    const int64_t unit = wt == DUET_TYPE_F16 ? duet_r16_f16_groups(m) : 1;
    /* one thread: the whole matrix as one chunk (nothing to balance, and
     * no locked add per chunk on the draft model's small matrices) */
    j.chunk = nth == 1 ? groups : (groups / ((int64_t)nth * 4) + unit - 1) / unit * unit;
    if (j.chunk < unit) j.chunk = unit;
    atomic_init(&j.next, 0);
    if (nth == 1 || groups <= j.chunk) duet_r16_gemv_task_avx512(&j, 0, 1);
    else duet_pool_run(pool, duet_r16_gemv_task_avx512, &j);
}

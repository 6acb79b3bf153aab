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

size_t duet_repack_bytes(duet_type wt, int64_t n_in, int64_t n_out) {
    if (wt != DUET_TYPE_Q4_0 || duet_simd_level() < DUET_SIMD_AVX512) return 0;
    if (n_in <= 0 || n_in % 32 || n_out <= 0 || n_out % R16_ROWS) return 0;
    return (size_t)(n_out / R16_ROWS) * (size_t)(n_in / 32) * R16_Q4_0_BLOCK;
}

int duet_repack(duet_type wt, const void *w, int64_t n_in, int64_t n_out, void *dst) {
    if (!duet_repack_bytes(wt, n_in, n_out)) return -1;
    const int64_t nb = n_in / 32;
    const block_q4_0 *src = w;      /* (n_out, nb) */
    uint8_t *out = dst;
    for (int64_t g = 0; g < n_out / R16_ROWS; g++)
        for (int64_t b = 0; b < nb; b++, out += R16_Q4_0_BLOCK)
            for (int r = 0; r < R16_ROWS; r++) {
                const block_q4_0 *blk = src + (g * R16_ROWS + r) * nb + b;
                memcpy(out + 2 * r, &blk->d, 2);
                for (int c = 0; c < 4; c++) memcpy(out + 2 * R16_ROWS + 64 * c + 4 * r, blk->qs + 4 * c, 4);
            }
    return 0;
}

/* The activations of the R16 GEMV: Q8_0 rows, their block scales as floats
 * and the corrections of the weights' unsigned offset. */
static void prep_q8_0(duet_r16_job *j, const float *x, char *xq, float *dx, int32_t *corr) {
    const duet_quantize_fn quant = duet_quantize_act_get(DUET_TYPE_Q8_0);
    const int64_t nb = j->n_in / 32;
    for (int64_t t = 0; t < j->m; t++) {
        const block_q8_0 *blk = (const block_q8_0 *)(xq + (size_t)t * nb * sizeof(block_q8_0));
        quant(x + t * j->n_in, (char *)blk, j->n_in);
        for (int64_t b = 0; b < nb; b++) {
            int32_t s = 0;
            for (int i = 0; i < 32; i++) s += blk[b].qs[i];
            dx[t * nb + b] = duet_fp16_to_fp32_inl(blk[b].d);
            corr[t * nb + b] = -8 * s;
        }
    }
}

/* Few tokens (decode, verification blocks) over repacked weights; everything
 * else, and CPUs without AVX-512, over the GGUF layout. The R16 kernel runs
 * the same integer sums and the same float chain per (row, token) as
 * duet_matmul_ex's GEMV, so results are bit-identical either way. */
void duet_matmul_packed(duet_pool *pool, float *y, duet_type wt, const void *w, const void *packed,
                        const float *x, int64_t m, int64_t n_in, int64_t n_out, int consistent) {
    if (!packed || m <= 0 || (!consistent && m >= DUET_QGEMM_MIN_M) || !duet_repack_bytes(wt, n_in, n_out)) {
        duet_matmul_ex(pool, y, wt, w, x, m, n_in, n_out, consistent);
        return;
    }
    const int64_t nb = n_in / 32;
    duet_r16_job j = {.w = packed, .y = y, .m = m, .n_in = n_in, .n_out = n_out};
    char *xq = duet_scratch(DUET_SCRATCH_ACT, (size_t)(m * nb) * sizeof(block_q8_0));
    float *dx = duet_scratch(DUET_SCRATCH_ACT_AUX, (size_t)(m * nb) * (sizeof(float) + sizeof(int32_t)));
    if (!xq || !dx) {
        duet_matmul_ex(pool, y, wt, w, x, m, n_in, n_out, consistent);
        return;
    }
    int32_t *corr = (int32_t *)(dx + m * nb);
    prep_q8_0(&j, x, xq, dx, corr);
    j.xq = xq;
    j.dx = dx;
    j.corr = corr;
    const int nth = duet_pool_size(pool);
    const int64_t groups = n_out / R16_ROWS;
    j.chunk = groups / ((int64_t)nth * 4);
    if (j.chunk < 1) j.chunk = 1;
    atomic_init(&j.next, 0);
    if (nth == 1 || groups <= j.chunk) duet_r16_gemv_task_avx512(&j, 0, 1);
    else duet_pool_run(pool, duet_r16_gemv_task_avx512, &j);
}

/* AVX-512 VNNI GEMV over Q4_0 weights in the R16 layout (core/repack.h).
 *
 * Per group of 16 rows and block: 4 loads give the 8 k-groups of all 16 rows
 * (low and high nibbles), and for each token 8 vpdpbusd with the token's 4
 * activation bytes broadcast leave row r's integer block sum in lane r. The
 * float side is llama.cpp's repacked q4_0 GEMV (and duet's in-place GEMV,
 * gemm_v_avx512.c): acc = fma(sum, d_w * d_x, acc), block after block. */
#include <immintrin.h>
#include <string.h>

#include "core/quant_blocks.h"
#include "core/repack.h"

#define ALWAYS_INLINE inline __attribute__((always_inline))
#define MAXC 4          /* tokens per pass over a row group */
#define PF_DIST 2048    /* bytes of weights prefetched ahead */

static ALWAYS_INLINE __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

static ALWAYS_INLINE void group(const duet_r16_job *j, int64_t g, int64_t t0, const int C) {
    const int64_t nb = j->n_in / 32;
    const uint8_t *p = j->w + (size_t)g * (size_t)nb * R16_Q4_0_BLOCK;
    const block_q8_0 *xq[MAXC];
    for (int c = 0; c < C; c++) xq[c] = (const block_q8_0 *)j->xq + (t0 + c) * nb;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[MAXC];
    for (int c = 0; c < C; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, p += R16_Q4_0_BLOCK) {
        for (int o = 0; o < R16_Q4_0_BLOCK; o += 64) _mm_prefetch((const char *)p + PF_DIST + o, _MM_HINT_T0);
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
        __m512i lo[4], hi[4];
        for (int k = 0; k < 4; k++) {
            const __m512i z = _mm512_loadu_si512(p + 32 + 64 * k);
            lo[k] = _mm512_and_si512(z, m4);
            hi[k] = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
        }
        for (int c = 0; c < C; c++) {
            const int8_t *q = xq[c][b].qs;
            const int64_t xi = (t0 + c) * nb + b;
            /* two independent chains: the integer sum is exact in any order */
            __m512i s0 = _mm512_dpbusd_epi32(_mm512_set1_epi32(j->corr[xi]), lo[0], bcast4(q));
            __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi[0], bcast4(q + 16));
            for (int k = 1; k < 4; k++) {
                s0 = _mm512_dpbusd_epi32(s0, lo[k], bcast4(q + 4 * k));
                s1 = _mm512_dpbusd_epi32(s1, hi[k], bcast4(q + 16 + 4 * k));
            }
            const __m512 d = _mm512_mul_ps(dw, _mm512_set1_ps(j->dx[xi]));
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), d, acc[c]);
        }
    }
    for (int c = 0; c < C; c++) _mm512_storeu_ps(j->y + (t0 + c) * j->n_out + g * R16_ROWS, acc[c]);
}

void duet_r16_gemv_task_avx512(void *vjob, int ith, int nth) {
    (void)ith;
    (void)nth;
    duet_r16_job *j = vjob;
    const int64_t groups = j->n_out / R16_ROWS;
    for (;;) {
        const int64_t g0 = atomic_fetch_add_explicit(&j->next, j->chunk, memory_order_relaxed);
        if (g0 >= groups) break;
        const int64_t g1 = g0 + j->chunk < groups ? g0 + j->chunk : groups;
        for (int64_t g = g0; g < g1; g++)
            for (int64_t t0 = 0; t0 < j->m; t0 += MAXC) switch (j->m - t0 < MAXC ? j->m - t0 : MAXC) {
                case 1: group(j, g, t0, 1); break;
                case 2: group(j, g, t0, 2); break;
                case 3: group(j, g, t0, 3); break;
                default: group(j, g, t0, 4); break;
                }
    }
}

/* AVX-512 VNNI GEMV over Q4_0 / Q4_K weights in the R16 layouts
 * (core/repack.h): row r of a group of 16 in lane r throughout, so a vpdpbusd
 * with 4 activation bytes broadcast adds to all 16 rows' integer sums at once,
 * with no gathers and no horizontal reductions.
 *
 * The float side is that of llama.cpp's repacked GEMVs (and of duet's
 * in-place GEMV, gemm_v_avx512.c), so results are bit for bit the same:
 *   Q4_0: acc = fma(block sum, d_w * d_x, acc), block after block;
 *   Q4_K: per super-block sumi = sum_j sc_j * (sum of sub-block j) and
 *         mins = sum_j mn_j * bsum_j (both exact integers), acc = fma(sumi,
 *         d_w * d_x, acc), accm = fma(mins, dmin_w * d_x, accm); y = acc - accm. */
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

static ALWAYS_INLINE void group_q4_0(const duet_r16_job *j, int64_t g, int64_t t0, const int C) {
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
            __m512i s0 = _mm512_dpbusd_epi32(_mm512_set1_epi32(j->aux[xi]), lo[0], bcast4(q));
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

static ALWAYS_INLINE void group_q4_k(const duet_r16_job *j, int64_t g, int64_t t0, const int C) {
    const int64_t nsb = j->n_in / QK_K;
    const uint8_t *p = j->w + (size_t)g * (size_t)nsb * R16_Q4_K_BLOCK;
    const block_q8_K *xq[MAXC];
    for (int c = 0; c < C; c++) xq[c] = (const block_q8_K *)j->xq + (t0 + c) * nsb;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m4h = _mm512_set1_epi8((char)0xF0);
    __m512 acc[MAXC], accm[MAXC];
    for (int c = 0; c < C; c++) acc[c] = accm[c] = _mm512_setzero_ps();
    for (int64_t s = 0; s < nsb; s++, p += R16_Q4_K_BLOCK) {
        for (int o = 0; o < R16_Q4_K_BLOCK; o += 64) _mm_prefetch((const char *)p + PF_DIST + o, _MM_HINT_T0);
        __m512i sumi[MAXC], mins[MAXC];
        for (int c = 0; c < C; c++) {
            const int32_t *bs = j->aux + ((t0 + c) * nsb + s) * 4;
            mins[c] = _mm512_setzero_si512();
            for (int q = 0; q < 4; q++) /* (mn_2q, mn_2q+1) . (bsum_2q, bsum_2q+1) per lane */
                mins[c] = _mm512_dpwssd_epi32(mins[c], _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(p + R16_K_MN + 32 * q))),
                                              _mm512_set1_epi32(bs[q]));
            sumi[c] = _mm512_setzero_si512();
        }
        for (int q = 0; q < 4; q++) { /* sub-blocks 2q (low nibbles) and 2q+1 (high) */
            const uint8_t *qs = p + R16_K_QS + 512 * q;
            const __m512i sc_lo = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + R16_K_SC + 32 * q)));
            const __m512i sc_hi = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + R16_K_SC + 32 * q + 16)));
            __m512i lo[8], hi[8];
            for (int k = 0; k < 8; k++) {
                const __m512i z = _mm512_loadu_si512(qs + 64 * k);
                lo[k] = _mm512_and_si512(z, m4);
                hi[k] = _mm512_and_si512(z, m4h); /* 16 x the high nibble: divided out below, exactly */
            }
            for (int c = 0; c < C; c++) {
                const int8_t *x = xq[c][s].qs + 64 * q;
                __m512i a0 = _mm512_setzero_si512(), a1 = a0, b0 = a0, b1 = a0;
                for (int k = 0; k < 8; k += 2) {
                    a0 = _mm512_dpbusd_epi32(a0, lo[k], bcast4(x + 4 * k));
                    a1 = _mm512_dpbusd_epi32(a1, lo[k + 1], bcast4(x + 4 * k + 4));
                    b0 = _mm512_dpbusd_epi32(b0, hi[k], bcast4(x + 32 + 4 * k));
                    b1 = _mm512_dpbusd_epi32(b1, hi[k + 1], bcast4(x + 32 + 4 * k + 4));
                }
                const __m512i a = _mm512_add_epi32(a0, a1);
                const __m512i b = _mm512_srai_epi32(_mm512_add_epi32(b0, b1), 4);
                sumi[c] = _mm512_add_epi32(sumi[c], _mm512_add_epi32(_mm512_mullo_epi32(a, sc_lo), _mm512_mullo_epi32(b, sc_hi)));
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + R16_K_D)));
        const __m512 dmw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + R16_K_DMIN)));
        for (int c = 0; c < C; c++) {
            const __m512 dx = _mm512_set1_ps(j->dx[(t0 + c) * nsb + s]);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[c]), _mm512_mul_ps(dw, dx), acc[c]);
            accm[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(mins[c]), _mm512_mul_ps(dmw, dx), accm[c]);
        }
    }
    for (int c = 0; c < C; c++)
        _mm512_storeu_ps(j->y + (t0 + c) * j->n_out + g * R16_ROWS, _mm512_sub_ps(acc[c], accm[c]));
}

/* F16: G groups of 16 rows x C tokens, one FMA chain per (row, token) over
 * k = 0, 1, ... in order (acc[c][gi] lane r: row 16 (g0 + gi) + r, token
 * t0 + c), so a token's bits do not depend on C, G or the tokens beside it.
 * A whole verification block (up to F16_MAXC tokens) goes through in one
 * pass: each weight is converted once per block and its FMAs overlap the
 * stream of weights from L3, where with passes of <= 4 tokens the second
 * pass converted every weight again after the first had waited on memory
 * (8 tokens cost 2x 4 tokens; now ~1.5x, at one thread on the 31.5 MB
 * model). */
#define F16_MAXC 9
#define F16_MAXG 4
/* The L2 streamer already brings the weights in from L3 ahead of the loop:
 * the prefetch only has to cover L2 -> L1, and a longer distance mostly
 * lands past the group (in the weights of another stream, or past the
 * matrix: 4 KB per group at n_in = 128). 512 measured best at n_in 128..1024
 * (2048 was ~10% slower on the draft model's matrices). */
#define F16_PF_DIST 512

static ALWAYS_INLINE void f16_step(const uint16_t *const *w, const float *const *x, int64_t k, const int G,
                                   const int C, __m512 acc[F16_MAXC][F16_MAXG]) {
    __m512 wv[F16_MAXG];
    #pragma GCC unroll 4
    for (int gi = 0; gi < G; gi++) wv[gi] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w[gi] + k * R16_ROWS)));
    #pragma GCC unroll 9
    for (int c = 0; c < C; c++) {
        const __m512 xb = _mm512_set1_ps(x[c][k]);
        #pragma GCC unroll 4
        for (int gi = 0; gi < G; gi++) acc[c][gi] = _mm512_fmadd_ps(wv[gi], xb, acc[c][gi]);
    }
}

static ALWAYS_INLINE void groups_f16(const duet_r16_job *j, int64_t g0, const int G, int64_t t0, const int C) {
    const int64_t n = j->n_in;
    const uint16_t *w[F16_MAXG];
    const float *x[F16_MAXC];
    #pragma GCC unroll 4
    for (int gi = 0; gi < G; gi++) w[gi] = (const uint16_t *)j->w + (size_t)(g0 + gi) * (size_t)n * R16_ROWS;
    #pragma GCC unroll 9
    for (int c = 0; c < C; c++) x[c] = (const float *)j->xq + (t0 + c) * n;
    __m512 acc[F16_MAXC][F16_MAXG];
    #pragma GCC unroll 9
    for (int c = 0; c < C; c++)
        #pragma GCC unroll 4
        for (int gi = 0; gi < G; gi++) acc[c][gi] = _mm512_setzero_ps();
    int64_t k = 0;
    if (G * C <= 16) {
        /* few chains: two k per iteration, one prefetch per group for the
         * 64 bytes of both, no branch (the loop overhead is felt here) */
        for (; k + 2 <= n; k += 2) {
            #pragma GCC unroll 4
            for (int gi = 0; gi < G; gi++)
                _mm_prefetch((const char *)(w[gi] + k * R16_ROWS) + F16_PF_DIST, _MM_HINT_T0);
            f16_step(w, x, k, G, C, acc);
            f16_step(w, x, k + 1, G, C, acc);
        }
    } else {
        /* up to 27 accumulators: one k per iteration, as unrolled GCC
         * spills some of them to the stack; the loop overhead is small
         * beside G * C FMAs, and a prefetch per k costs only a load slot */
        for (; k < n; k++) {
            #pragma GCC unroll 4
            for (int gi = 0; gi < G; gi++)
                _mm_prefetch((const char *)(w[gi] + k * R16_ROWS) + F16_PF_DIST, _MM_HINT_T0);
            f16_step(w, x, k, G, C, acc);
        }
    }
    if (k < n) f16_step(w, x, k, G, C, acc); /* odd n_in, unrolled */
    #pragma GCC unroll 9
    for (int c = 0; c < C; c++)
        #pragma GCC unroll 4
        for (int gi = 0; gi < G; gi++) _mm512_storeu_ps(j->y + (t0 + c) * j->n_out + (g0 + gi) * R16_ROWS, acc[c][gi]);
}

/* Tokens per pass: all of them up to F16_MAXC; more (not a verification
 * block) in as few passes as possible, of equal size. */
static int64_t f16_per_pass(int64_t m) {
    const int64_t npass = (m + F16_MAXC - 1) / F16_MAXC;
    return (m + npass - 1) / npass;
}

/* Row groups per pass for passes of up to C tokens: the most that keep the
 * G * C accumulators, G weights and a broadcast in registers (6 * 4 + 4 + 1
 * = 29, 9 * 3 + 3 + 1 = 31 zmm), but not more than 4: once G * C chains
 * cover the FMA latency the loop is bound by the ports that vcvtph2ps (2
 * uops) and the FMAs share, 1.5 cycles per 16 weights at one token (G = 8
 * measured no faster there), and a wider G only makes the per-thread chunks
 * (multiples of G, repack.c) coarser. */
#define F16_G(C) ((C) <= 6 ? 4 : 3)

int duet_r16_f16_groups(int64_t m) { return F16_G(f16_per_pass(m)); }

/* One function per C, G a switch inside (default: the full F16_G(C); 1..3
 * are the narrower passes at a chunk's end): every (G <= F16_G(C), C) shape
 * is compiled with its loops unrolled and its accumulators in registers. */
#define F16_PASS(C)                                                                        \
    static void pass_f16_##C(const duet_r16_job *j, int64_t g, int G, int64_t t0) {       \
        switch (G) {                                                                       \
        case 1: groups_f16(j, g, 1, t0, C); break;                                         \
        case 2: groups_f16(j, g, 2, t0, C); break;                                         \
        case 3: groups_f16(j, g, 3, t0, C); break;                                         \
        default: groups_f16(j, g, F16_G(C), t0, C); break;                                 \
        }                                                                                  \
    }
F16_PASS(1)
F16_PASS(2)
F16_PASS(3)
F16_PASS(4)
F16_PASS(5)
F16_PASS(6)
F16_PASS(7)
F16_PASS(8)
F16_PASS(9)

static void task_f16(duet_r16_job *j) {
    static void (*const pass[F16_MAXC + 1])(const duet_r16_job *, int64_t, int, int64_t) = {
        NULL, pass_f16_1, pass_f16_2, pass_f16_3, pass_f16_4, pass_f16_5, pass_f16_6, pass_f16_7, pass_f16_8, pass_f16_9};
    const int64_t groups = j->n_out / R16_ROWS;
    const int64_t per = f16_per_pass(j->m);
    const int G = F16_G(per); /* also fits the last, shorter pass */
    for (;;) {
        const int64_t g0 = atomic_fetch_add_explicit(&j->next, j->chunk, memory_order_relaxed);
        if (g0 >= groups) break;
        const int64_t g1 = g0 + j->chunk < groups ? g0 + j->chunk : groups;
        for (int64_t g = g0; g < g1; g += G)
            for (int64_t t0 = 0; t0 < j->m; t0 += per) {
                const int C = (int)(j->m - t0 < per ? j->m - t0 : per);
                pass[C](j, g, (int)(g1 - g < G ? g1 - g : G), t0);
            }
    }
}

#define BY_C(FN, C)                     \
    switch (C) {                        \
    case 1: FN(j, g, t0, 1); break;     \
    case 2: FN(j, g, t0, 2); break;     \
    case 3: FN(j, g, t0, 3); break;     \
    default: FN(j, g, t0, 4); break;    \
    }

void duet_r16_gemv_task_avx512(void *vjob, int ith, int nth) {
    (void)ith;
    (void)nth;
    duet_r16_job *j = vjob;
    if (j->wt == DUET_TYPE_F16) {
        task_f16(j);
        return;
    }
    const int64_t groups = j->n_out / R16_ROWS;
    for (;;) {
        const int64_t g0 = atomic_fetch_add_explicit(&j->next, j->chunk, memory_order_relaxed);
        if (g0 >= groups) break;
        const int64_t g1 = g0 + j->chunk < groups ? g0 + j->chunk : groups;
        for (int64_t g = g0; g < g1; g++)
            for (int64_t t0 = 0; t0 < j->m; t0 += MAXC) {
                const int C = (int)(j->m - t0 < MAXC ? j->m - t0 : MAXC);
                if (j->wt == DUET_TYPE_Q4_K) BY_C(group_q4_k, C)
                else BY_C(group_q4_0, C)
            }
    }
}

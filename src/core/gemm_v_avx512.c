/* AVX-512 VNNI kernels for few tokens (decode, short verification blocks):
 * each weight row is decoded in place and streamed once for up to 4 tokens.
 * Layouts and seeds: core/gemm_q.h.
 *
 * 32-element block types: four blocks per pair of zmm (values 0..15 of
 * each, then 16..31), summed into one int32 accumulator. The 16 block scales of a row
 * group come from one gather (d, and m in the upper half for Q4_1/Q5_1),
 * times the token's 16 activation scales; vpermps spreads the four scales of a
 * quad over their lanes. K-quants: a quarter super-block per zmm; each lane
 * holds at most 4 products (|lane| < 2^15), so vpdpwssd with (scale, 0) int16
 * pairs applies the sub-block scales exactly. As in llama.cpp's vec_dot, all
 * integer sums are exact and only the float accumulation order differs. */
#include <immintrin.h>
#include <string.h>

#include "core/gemm_q.h"
#include "core/quant_blocks.h"

#define ALWAYS_INLINE inline __attribute__((always_inline))
#define MAXC 4
/* Software prefetch distance in bytes of weights: the hardware prefetcher
 * alone leaves a single core well below the L3/DRAM bandwidth when streaming
 * a large matrix (measured: 6 -> 16 GB/s on a 55 MB Q4_0 matrix). */
#define PF_DIST 4096

/* Prefetches the cache lines of [p + PF_DIST, p + PF_DIST + bytes). */
static ALWAYS_INLINE void prefetch_ahead(const char *p, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(p + PF_DIST + o, _MM_HINT_T0);
}

static ALWAYS_INLINE uint32_t load_u32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static ALWAYS_INLINE size_t block_bytes(duet_type wt) {
    switch (wt) {
    case DUET_TYPE_Q4_0: return sizeof(block_q4_0);
    case DUET_TYPE_Q4_1: return sizeof(block_q4_1);
    case DUET_TYPE_Q5_0: return sizeof(block_q5_0);
    case DUET_TYPE_Q5_1: return sizeof(block_q5_1);
    default: return sizeof(block_q8_0);
    }
}

/* offsetof the qs / qh fields */
static ALWAYS_INLINE size_t qs_off(duet_type wt) {
    switch (wt) {
    case DUET_TYPE_Q4_0: return 2;
    case DUET_TYPE_Q4_1: return 4;
    case DUET_TYPE_Q5_0: return 6;
    case DUET_TYPE_Q5_1: return 8;
    default: return 2;
    }
}

static ALWAYS_INLINE size_t qh_off(duet_type wt) { return wt == DUET_TYPE_Q5_0 ? 2 : 4; }


/* 16 bytes at offset off of each of the n (1..4) blocks from blk, one per
 * 128-bit lane (zero lanes past n). */
static ALWAYS_INLINE __m512i gather4x16(const char *blk, size_t bsz, size_t off, int n) {
    __m512i z = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(blk + off)));
    if (n == 4) {
        z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(blk + bsz + off)), 1);
        z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(blk + 2 * bsz + off)), 2);
        return _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(blk + 3 * bsz + off)), 3);
    }
    uint8_t tmp[64] = {0}; /* the row's last, partial quad */
    for (int k = 0; k < n; k++) memcpy(tmp + 16 * k, blk + k * bsz + off, 16);
    return _mm512_loadu_si512(tmp);
}

/* n (1..4) consecutive blocks as unsigned bytes in the quad order of
 * core/gemm_q.h: *lo = values 0..15 of each block, *hi = values 16..31.
 * Q5_0/Q5_1: qhlo / qhhi hold the fifth bits of those values (16 per block). */
static ALWAYS_INLINE void decode_quad(const duet_type wt, const char *blk, int n, uint64_t qhlo,
                                      uint64_t qhhi, __m512i *lo, __m512i *hi) {
    const size_t bsz = block_bytes(wt);
    if (wt == DUET_TYPE_Q8_0) {
        const __m512i flip = _mm512_set1_epi8((char)0x80);
        *lo = _mm512_xor_si512(gather4x16(blk, bsz, 2, n), flip);
        *hi = _mm512_xor_si512(gather4x16(blk, bsz, 18, n), flip);
        return;
    }
    const __m512i z = gather4x16(blk, bsz, qs_off(wt), n);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    *lo = _mm512_and_si512(z, m4);
    *hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
    if (wt == DUET_TYPE_Q5_0 || wt == DUET_TYPE_Q5_1) {
        const __m512i v16 = _mm512_set1_epi8(16);
        *lo = _mm512_or_si512(*lo, _mm512_maskz_mov_epi8((__mmask64)qhlo, v16));
        *hi = _mm512_or_si512(*hi, _mm512_maskz_mov_epi8((__mmask64)qhhi, v16));
    }
}

static ALWAYS_INLINE void rows_32(const duet_qgemv_job *j, int64_t r0, int64_t r1, int64_t t0,
                                  const duet_type wt, const int C) {
    const int64_t nb = j->n_in / 32, nq = (nb + 3) / 4, ng = (nb + 15) / 16;
    const size_t bsz = block_bytes(wt);
    const int has_min = wt == DUET_TYPE_Q4_1 || wt == DUET_TYPE_Q5_1;
    const char *xq[MAXC];
    const float *xd[MAXC], *xs[MAXC];
    for (int c = 0; c < C; c++) {
        const char *xv = j->xv + (size_t)(t0 + c) * j->xv_row;
        xq[c] = xv;
        xd[c] = (const float *)(xv + nq * 192);
        xs[c] = xd[c] + ng * 16;
    }
    const __m512i gidx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32((int)bsz));
    const __m512i lane_blk = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    for (int64_t r = r0; r < r1; r++) {
        const char *wr = j->w + (size_t)r * j->w_row;
        __m512 f[MAXC], fm[MAXC];
        for (int c = 0; c < C; c++) f[c] = fm[c] = _mm512_setzero_ps();
        for (int64_t g = 0; g < ng; g++) {
            const int64_t b0 = 16 * g, nbg = nb - b0 < 16 ? nb - b0 : 16;
            const __mmask16 k = (__mmask16)((1u << nbg) - 1u);
            const char *wg = wr + (size_t)b0 * bsz;
            const __m512i dm = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), k, gidx, wg, 1);
            const __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
            __m512 s[MAXC];
            for (int c = 0; c < C; c++) s[c] = _mm512_mul_ps(dw, _mm512_loadu_ps(xd[c] + b0));
            if (has_min) {
                const __m512 mw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16)));
                for (int c = 0; c < C; c++) fm[c] = _mm512_fmadd_ps(mw, _mm512_loadu_ps(xs[c] + b0), fm[c]);
            }
            /* Q5: the 16 blocks' qh words -> per quad, the fifth bits of values
             * 0..15 and 16..31 of its 4 blocks as two 64-bit masks */
            uint64_t qhlo[4] = {0}, qhhi[4] = {0};
            if (wt == DUET_TYPE_Q5_0 || wt == DUET_TYPE_Q5_1) {
                const __m512i qh = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), k, gidx, wg + qh_off(wt), 1);
                _mm256_storeu_si256((__m256i *)qhlo, _mm512_cvtepi32_epi16(qh));
                _mm256_storeu_si256((__m256i *)qhhi, _mm512_cvtepi32_epi16(_mm512_srli_epi32(qh, 16)));
            }
            for (int64_t qq = 0; 4 * qq < nbg; qq++) {
                const int64_t b = b0 + 4 * qq, q = b / 4;
                const int n = nb - b < 4 ? (int)(nb - b) : 4;
                prefetch_ahead(wg + (size_t)(4 * qq) * bsz, 4 * bsz);
                __m512i lo, hi;
                if (n == 4) decode_quad(wt, wg + (size_t)(4 * qq) * bsz, 4, qhlo[qq], qhhi[qq], &lo, &hi);
                else decode_quad(wt, wg + (size_t)(4 * qq) * bsz, n, qhlo[qq], qhhi[qq], &lo, &hi);
                const __m512i sidx = _mm512_add_epi32(lane_blk, _mm512_set1_epi32((int)(4 * qq)));
                for (int c = 0; c < C; c++) {
                    const char *X = xq[c] + q * 192;
                    __m512i d = _mm512_dpbusd_epi32(_mm512_loadu_si512(X + 128), lo, _mm512_loadu_si512(X));
                    d = _mm512_dpbusd_epi32(d, hi, _mm512_loadu_si512(X + 64));
                    f[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_permutexvar_ps(sidx, s[c]), f[c]);
                }
            }
        }
        for (int c = 0; c < C; c++)
            j->y[(t0 + c) * j->n_out + r] = _mm512_reduce_add_ps(f[c]) + (has_min ? _mm512_reduce_add_ps(fm[c]) : 0.0f);
    }
}

/* Q4_K/Q5_K 6-bit scales and mins of a super-block: sc[j], mn[j] as bytes. */
static ALWAYS_INLINE void k4_scales(const uint8_t *q, uint64_t *sc, uint64_t *mn) {
    uint32_t a, b, c;
    memcpy(&a, q, 4);
    memcpy(&b, q + 4, 4);
    memcpy(&c, q + 8, 4);
    const uint32_t m6 = 0x3f3f3f3fu, m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    const uint32_t sc_lo = a & m6, mn_lo = b & m6;                  /* j = 0..3 */
    const uint32_t sc_hi = (c & m4) | (((a >> 6) & m2) << 4);       /* j = 4..7 */
    const uint32_t mn_hi = ((c >> 4) & m4) | (((b >> 6) & m2) << 4);
    *sc = (uint64_t)sc_lo | ((uint64_t)sc_hi << 32);
    *mn = (uint64_t)mn_lo | ((uint64_t)mn_hi << 32);
}

static ALWAYS_INLINE void rows_q45k(const duet_qgemv_job *j, int64_t r0, int64_t r1, int64_t t0,
                                    const int five, const int C) {
    const int64_t nsb = j->n_in / QK_K;
    const size_t bsz = five ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const char *xv[MAXC];
    for (int c = 0; c < C; c++) xv[c] = j->xv + (size_t)(t0 + c) * j->xv_row;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i i0 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    const __m512i one = _mm512_set1_epi32(1), four = _mm512_set1_epi32(4);
    const __m512i bit0 = _mm512_inserti64x4(_mm512_set1_epi8(0x01), _mm256_set1_epi8(0x04), 1);
    for (int64_t r = r0; r < r1; r++) {
        const char *wr = j->w + (size_t)r * j->w_row;
        __m512 f[MAXC];
        __m128 fmin[MAXC];
        for (int c = 0; c < C; c++) {
            f[c] = _mm512_setzero_ps();
            fmin[c] = _mm_setzero_ps();
        }
        for (int64_t s = 0; s < nsb; s++) {
            const block_q4_K *b4 = (const block_q4_K *)(wr + (size_t)s * bsz); /* shared header */
            prefetch_ahead((const char *)b4, bsz);
            const uint8_t *qs = five ? ((const block_q5_K *)b4)->qs : b4->qs;
            const float d = _cvtsh_ss(b4->d), dmin = _cvtsh_ss(b4->dmin);
            uint64_t sc8, mn8;
            k4_scales(b4->scales, &sc8, &mn8);
            const __m512i S = _mm512_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc8));
            const __m512i sc0 = _mm512_permutexvar_epi32(i0, S);
            const __m512i sc1 = _mm512_permutexvar_epi32(_mm512_add_epi32(i0, one), S);
            const __m512i sc2 = _mm512_permutexvar_epi32(_mm512_add_epi32(i0, four), S);
            const __m512i sc3 = _mm512_permutexvar_epi32(_mm512_add_epi32(i0, _mm512_set1_epi32(5)), S);
            const __m128i mins = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mn8));
            const __m512i z0 = _mm512_loadu_si512(qs), z1 = _mm512_loadu_si512(qs + 64);
            __m512i w0 = _mm512_and_si512(z0, m4), w1 = _mm512_and_si512(_mm512_srli_epi16(z0, 4), m4);
            __m512i w2 = _mm512_and_si512(z1, m4), w3 = _mm512_and_si512(_mm512_srli_epi16(z1, 4), m4);
            if (five) {
                const __m256i h = _mm256_loadu_si256((const __m256i *)((const block_q5_K *)b4)->qh);
                const __m512i H = _mm512_inserti64x4(_mm512_castsi256_si512(h), h, 1);
                const __m512i v16 = _mm512_set1_epi8(16);
                /* w0: sub-blocks 0|2 -> qh bits 0|2; w1: 1|3; w2: 4|6; w3: 5|7 */
                w0 = _mm512_or_si512(w0, _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(H, bit0), v16));
                w1 = _mm512_or_si512(w1, _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(H, _mm512_slli_epi16(bit0, 1)), v16));
                w2 = _mm512_or_si512(w2, _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(H, _mm512_slli_epi16(bit0, 4)), v16));
                w3 = _mm512_or_si512(w3, _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(H, _mm512_slli_epi16(bit0, 5)), v16));
            }
            for (int c = 0; c < C; c++) {
                const char *X = xv[c] + s * QV_K_STRIDE;
                const __m512i z = _mm512_setzero_si512();
                const __m512i d0 = _mm512_dpbusd_epi32(z, w0, _mm512_loadu_si512(X));
                const __m512i d1 = _mm512_dpbusd_epi32(z, w1, _mm512_loadu_si512(X + 64));
                const __m512i d2 = _mm512_dpbusd_epi32(z, w2, _mm512_loadu_si512(X + 128));
                const __m512i d3 = _mm512_dpbusd_epi32(z, w3, _mm512_loadu_si512(X + 192));
                /* two short chains rather than one of four dependent dpwssd */
                const __m512i isum = _mm512_add_epi32(_mm512_dpwssd_epi32(_mm512_dpwssd_epi32(z, d0, sc0), d1, sc1),
                                                      _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(z, d2, sc2), d3, sc3));
                float dx;
                memcpy(&dx, X + QV_K_D, 4);
                f[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * dx), f[c]);
                const __m128i mm = _mm_madd_epi16(mins, _mm_loadu_si128((const __m128i *)(X + QV_K_BS32)));
                fmin[c] = _mm_fmadd_ps(_mm_cvtepi32_ps(mm), _mm_set1_ps(dmin * dx), fmin[c]);
            }
        }
        for (int c = 0; c < C; c++) {
            __m128 m = _mm_add_ps(fmin[c], _mm_movehl_ps(fmin[c], fmin[c]));
            m = _mm_add_ss(m, _mm_movehdup_ps(m));
            j->y[(t0 + c) * j->n_out + r] = _mm512_reduce_add_ps(f[c]) - _mm_cvtss_f32(m);
        }
    }
}

static ALWAYS_INLINE void rows_q6k(const duet_qgemv_job *j, int64_t r0, int64_t r1, int64_t t0, const int C) {
    const int64_t nsb = j->n_in / QK_K;
    const char *xv[MAXC];
    for (int c = 0; c < C; c++) xv[c] = j->xv + (size_t)(t0 + c) * j->xv_row;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const __m512i quad = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    for (int64_t r = r0; r < r1; r++) {
        const block_q6_K *wb = (const block_q6_K *)(j->w + (size_t)r * j->w_row);
        __m512 f[MAXC];
        for (int c = 0; c < C; c++) f[c] = _mm512_setzero_ps();
        for (int64_t s = 0; s < nsb; s++) {
            const block_q6_K *b = wb + s;
            prefetch_ahead((const char *)b, sizeof *b);
            const __m512i S = _mm512_and_si512(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)b->scales)),
                                               _mm512_set1_epi32(0xFFFF));
            __m512i v[4], sc[4];
            for (int h = 0; h < 2; h++) {
                const __m512i L = _mm512_loadu_si512(b->ql + 64 * h);
                const __m256i q = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
                const __m512i QH = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 2), 1);
                v[2 * h] = _mm512_or_si512(_mm512_and_si512(L, m4), _mm512_and_si512(_mm512_slli_epi16(QH, 4), m30));
                v[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4), _mm512_and_si512(QH, m30));
                sc[2 * h] = _mm512_permutexvar_epi32(_mm512_add_epi32(quad, _mm512_set1_epi32(8 * h)), S);
                sc[2 * h + 1] = _mm512_permutexvar_epi32(_mm512_add_epi32(quad, _mm512_set1_epi32(8 * h + 4)), S);
            }
            const float d = _cvtsh_ss(b->d);
            for (int c = 0; c < C; c++) {
                const char *X = xv[c] + s * QV_K_STRIDE;
                __m512i dk[4];
                for (int k = 0; k < 4; k++)
                    dk[k] = _mm512_dpbusd_epi32(_mm512_loadu_si512(X + QV_K_SEED + 64 * k), v[k],
                                                _mm512_loadu_si512(X + 64 * k));
                const __m512i z = _mm512_setzero_si512();
                const __m512i isum = _mm512_add_epi32(_mm512_dpwssd_epi32(_mm512_dpwssd_epi32(z, dk[0], sc[0]), dk[1], sc[1]),
                                                      _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(z, dk[2], sc[2]), dk[3], sc[3]));
                float dx;
                memcpy(&dx, X + QV_K_D, 4);
                f[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * dx), f[c]);
            }
        }
        for (int c = 0; c < C; c++) j->y[(t0 + c) * j->n_out + r] = _mm512_reduce_add_ps(f[c]);
    }
}

#define ROWS_SWITCH(CALL)                  \
    switch (C) {                           \
    case 1: CALL(1); break;                \
    case 2: CALL(2); break;                \
    case 3: CALL(3); break;                \
    default: CALL(4); break;               \
    }

static void run_rows(const duet_qgemv_job *j, int64_t r0, int64_t r1, int64_t t0, int C) {
#define R32(T, CC) rows_32(j, r0, r1, t0, T, CC)
#define Q40(CC) R32(DUET_TYPE_Q4_0, CC)
#define Q41(CC) R32(DUET_TYPE_Q4_1, CC)
#define Q50(CC) R32(DUET_TYPE_Q5_0, CC)
#define Q51(CC) R32(DUET_TYPE_Q5_1, CC)
#define Q80(CC) R32(DUET_TYPE_Q8_0, CC)
#define Q4K(CC) rows_q45k(j, r0, r1, t0, 0, CC)
#define Q5K(CC) rows_q45k(j, r0, r1, t0, 1, CC)
#define Q6K(CC) rows_q6k(j, r0, r1, t0, CC)
    switch (j->wt) {
    case DUET_TYPE_Q4_0: ROWS_SWITCH(Q40); break;
    case DUET_TYPE_Q4_1: ROWS_SWITCH(Q41); break;
    case DUET_TYPE_Q5_0: ROWS_SWITCH(Q50); break;
    case DUET_TYPE_Q5_1: ROWS_SWITCH(Q51); break;
    case DUET_TYPE_Q8_0: ROWS_SWITCH(Q80); break;
    case DUET_TYPE_Q4_K: ROWS_SWITCH(Q4K); break;
    case DUET_TYPE_Q5_K: ROWS_SWITCH(Q5K); break;
    case DUET_TYPE_Q6_K: ROWS_SWITCH(Q6K); break;
    default: break;
    }
}

void duet_qgemv_task_avx512(void *vjob, int ith, int nth) {
    duet_qgemv_job *j = vjob;
    for (;;) {
        const int64_t r0 = atomic_fetch_add_explicit(&j->next, j->chunk, memory_order_relaxed);
        if (r0 >= j->n_out) break;
        const int64_t r1 = r0 + j->chunk < j->n_out ? r0 + j->chunk : j->n_out;
        for (int64_t t0 = 0; t0 < j->m; t0 += MAXC)
            run_rows(j, r0, r1, t0, (int)(j->m - t0 < MAXC ? j->m - t0 : MAXC));
    }
}

/* AVX-512 VNNI kernels for few tokens (decode, short verification blocks):
 * each weight row is decoded in place and streamed once for up to 4 tokens.
 * Layouts and seeds: core/gemm_q.h. Integer sums are exact, and the float side
 * repeats the operations of llama.cpp's kernel for the type (see
 * gemm_q_avx512.c for why that matters), except where noted:
 *   Q8_0, Q4_1, Q5_0, Q5_1, Q5_K, Q6_K (ggml's AVX2 vec_dot): two rows per
 *       zmm, one block (or 32-value chunk) per 256-bit half, so each row keeps
 *       vec_dot's 8 partial sums;
 *   Q4_0, Q4_K (llama.cpp's repacked GEMVs): per block / super-block the
 *       whole integer sum of a row, then the float chain(s); Q4_0 runs 16 rows
 *       at a time, row r's chain in lane r. */
#include <immintrin.h>
#include <math.h>
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


/* Q4_0 (llama.cpp's repacked q4_0 GEMV): per block the whole integer sum
 * of each row, acc = fma(sum, d_w*d_x, acc) block after block, 16 rows at a
 * time with row r in lane r. Rows are decoded in pairs (a | a+4 for the first
 * 8, 8+k | 12+k for the rest) so that the reduction of the 8 dpbusd results
 * leaves row r's block sum in lane r. */
static ALWAYS_INLINE __m512i reduce_rows16(const __m512i d[8]) {
    __m512i t[4], u[2];
    for (int i = 0; i < 4; i++)
        t[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(d[2 * i], d[2 * i + 1]), _mm512_unpackhi_epi32(d[2 * i], d[2 * i + 1]));
    for (int i = 0; i < 2; i++)
        u[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(t[2 * i], t[2 * i + 1]), _mm512_unpackhi_epi64(t[2 * i], t[2 * i + 1]));
    /* u[0] lane q*4+i: sum of d[i]'s 128-bit lane q; u[1] the same for d[4+i] */
    return _mm512_add_epi32(_mm512_shuffle_i32x4(u[0], u[1], 0x88), _mm512_shuffle_i32x4(u[0], u[1], 0xDD));
}

static ALWAYS_INLINE void rows_q4_0(const duet_qgemv_job *j, int64_t r0, int64_t r1, int64_t t0, const int C) {
    const int64_t nb = j->n_in / 32, ng = (nb + 15) / 16;
    const size_t bsz = sizeof(block_q4_0);
    const char *xq[MAXC];
    const float *xd[MAXC];
    for (int c = 0; c < C; c++) {
        xq[c] = j->xv + (size_t)(t0 + c) * j->xv_row;
        xd[c] = (const float *)(xq[c] + nb * 64);
    }
    (void)ng;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i shift = _mm512_setr_epi64(0, 0, 0x0004000400040004LL, 0x0004000400040004LL, 0, 0,
                                            0x0004000400040004LL, 0x0004000400040004LL);
    for (int64_t r = r0; r < r1; r += 16) {
        const int rows = r1 - r < 16 ? (int)(r1 - r) : 16;
        const char *wr[16];
        for (int i = 0; i < 16; i++) wr[i] = j->w + (size_t)(r + (i < rows ? i : rows - 1)) * j->w_row;
        const __m512i gidx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                _mm512_set1_epi32((int)j->w_row));
        const __mmask16 valid = (__mmask16)((1u << rows) - 1u);
        __m512 acc[MAXC];
        for (int c = 0; c < C; c++) acc[c] = _mm512_setzero_ps();
        /* the 16 rows are read side by side: stream the next 16 in meanwhile */
        const char *next = j->w + (size_t)(r + 16) * j->w_row;
        const size_t next_bytes = (size_t)(r + 32 <= j->n_out ? 16 : (j->n_out > r + 16 ? j->n_out - r - 16 : 0)) * j->w_row;
        for (int64_t b = 0; b < nb; b++) {
            for (size_t o = next_bytes * (size_t)b / (size_t)nb; o < next_bytes * (size_t)(b + 1) / (size_t)nb; o += 64)
                _mm_prefetch(next + o, _MM_HINT_T0);
            __m512i w[8];
            for (int k = 0; k < 8; k++) {
                const int ra = k < 4 ? k : k + 4;
                const char *pa = wr[ra] + (size_t)b * bsz, *pb = wr[ra + 4] + (size_t)b * bsz;
                const __m256i qa = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(pa + 2)));
                const __m256i qb = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(pb + 2)));
                w[k] = _mm512_and_si512(_mm512_srlv_epi16(_mm512_inserti64x4(_mm512_castsi256_si512(qa), qb, 1), shift), m4);
            }
            const __m512i dm = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), valid, gidx,
                                                           j->w + (size_t)r * j->w_row + (size_t)b * bsz, 1);
            const __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
            for (int c = 0; c < C; c++) {
                const char *X = xq[c] + b * 64;
                const __m512i xv = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)X));
                const __m512i seed = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(X + 32)));
                __m512i d[8];
                for (int k = 0; k < 8; k++) d[k] = _mm512_dpbusd_epi32(seed, w[k], xv);
                const __m512i sum = reduce_rows16(d);
                acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(dw, _mm512_set1_ps(xd[c][b])), acc[c]);
            }
        }
        for (int c = 0; c < C; c++) _mm512_mask_storeu_ps(j->y + (t0 + c) * j->n_out + r, valid, acc[c]);
    }
}

/* ggml's hsum of 8 floats: ((v0+v4) + (v2+v6)) + ((v1+v5) + (v3+v7)). */
static ALWAYS_INLINE float hsum8(__m256 v) {
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/* Block b of rows A and B as unsigned bytes: zmm = [A's 32 values | B's 32]. */
static ALWAYS_INLINE __m512i decode_rows2(const duet_type wt, const char *a, const char *b) {
    if (wt == DUET_TYPE_Q8_0) {
        const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(a + 2))),
                                             _mm256_loadu_si256((const __m256i *)(b + 2)), 1);
        return _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
    }
    const __m256i qa = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(a + qs_off(wt))));
    const __m256i qb = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(b + qs_off(wt))));
    const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(qa), qb, 1);
    const __m512i shift = _mm512_setr_epi64(0, 0, 0x0004000400040004LL, 0x0004000400040004LL, 0, 0,
                                            0x0004000400040004LL, 0x0004000400040004LL);
    __m512i v = _mm512_and_si512(_mm512_srlv_epi16(z, shift), _mm512_set1_epi8(0x0F));
    if (wt == DUET_TYPE_Q5_0 || wt == DUET_TYPE_Q5_1) {
        const uint64_t bits = (uint64_t)load_u32(a + qh_off(wt)) | ((uint64_t)load_u32(b + qh_off(wt)) << 32);
        v = _mm512_or_si512(v, _mm512_maskz_mov_epi8((__mmask64)bits, _mm512_set1_epi8(16)));
    }
    return v;
}

/* Q8_0, Q4_1, Q5_0, Q5_1: rows in pairs (lanes 0-7 row A, 8-15 row B), each
 * half accumulating acc[i] = fma(int sum of values 4i..4i+3, d_w*d_x, acc[i])
 * block after block, as ggml's AVX2 vec_dot does. */
static ALWAYS_INLINE void rows_32_lanes(const duet_qgemv_job *j, int64_t r0, int64_t r1, int64_t t0,
                                        const duet_type wt, const int C) {
    const int64_t nb = j->n_in / 32, ng = (nb + 15) / 16;
    const size_t bsz = block_bytes(wt);
    const int has_min = wt == DUET_TYPE_Q4_1 || wt == DUET_TYPE_Q5_1;
    const int seeded = wt == DUET_TYPE_Q8_0 || wt == DUET_TYPE_Q5_0;
    const char *xq[MAXC];
    const float *xd[MAXC], *xs[MAXC];
    for (int c = 0; c < C; c++) {
        xq[c] = j->xv + (size_t)(t0 + c) * j->xv_row;
        xd[c] = (const float *)(xq[c] + nb * 64);
        xs[c] = xd[c] + ng * 16;
    }
    const __m512i gidx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32((int)bsz));
    const __m512i half = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16, 16);
    for (int64_t r = r0; r < r1; r += 2) {
        const int two = r + 1 < r1;
        const char *wa = j->w + (size_t)r * j->w_row, *wb = two ? wa + j->w_row : wa;
        __m512 acc[MAXC], sm[MAXC];
        for (int c = 0; c < C; c++) acc[c] = sm[c] = _mm512_setzero_ps();
        for (int64_t g = 0; g < ng; g++) {
            const int64_t b0 = 16 * g, nbg = nb - b0 < 16 ? nb - b0 : 16;
            const __mmask16 k = (__mmask16)((1u << nbg) - 1u);
            const __m512i dma = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), k, gidx, wa + (size_t)b0 * bsz, 1);
            const __m512i dmb = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), k, gidx, wb + (size_t)b0 * bsz, 1);
            const __m512 dwa = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dma));
            const __m512 dwb = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dmb));
            __m512 sa[MAXC], sb[MAXC];
            for (int c = 0; c < C; c++) {
                const __m512 dx = _mm512_loadu_ps(xd[c] + b0);
                sa[c] = _mm512_mul_ps(dwa, dx);
                sb[c] = _mm512_mul_ps(dwb, dx);
            }
            __m512 ma = _mm512_setzero_ps(), mb = _mm512_setzero_ps();
            if (has_min) {
                ma = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dma, 16)));
                mb = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dmb, 16)));
            }
            for (int64_t bb = 0; bb < nbg; bb++) {
                const int64_t b = b0 + bb;
                prefetch_ahead(wa + (size_t)b * bsz, bsz);
                if (two) prefetch_ahead(wb + (size_t)b * bsz, bsz);
                const __m512i w = decode_rows2(wt, wa + (size_t)b * bsz, wb + (size_t)b * bsz);
                const __m512i idx = _mm512_add_epi32(half, _mm512_set1_epi32((int)bb));
                for (int c = 0; c < C; c++) {
                    const char *X = xq[c] + b * 64;
                    const __m512i seed = seeded ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(X + 32)))
                                                : _mm512_setzero_si512();
                    const __m512i d = _mm512_dpbusd_epi32(seed, w, _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)X)));
                    acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_permutex2var_ps(sa[c], idx, sb[c]), acc[c]);
                    if (has_min)
                        sm[c] = _mm512_fmadd_ps(_mm512_permutex2var_ps(ma, idx, mb), _mm512_set1_ps(xs[c][b]), sm[c]);
                }
            }
        }
        for (int c = 0; c < C; c++) {
            float ya = hsum8(_mm512_castps512_ps256(acc[c])), yb = hsum8(_mm512_extractf32x8_ps(acc[c], 1));
            if (has_min) {
                ya += _mm512_cvtss_f32(sm[c]);
                yb += _mm_cvtss_f32(_mm512_extractf32x4_ps(sm[c], 2));
            }
            j->y[(t0 + c) * j->n_out + r] = ya;
            if (two) j->y[(t0 + c) * j->n_out + r + 1] = yb;
        }
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

/* sum_j mn[j] * bs32[j] for the 8 mins (bytes of mn8) and a token's bs32. */
static ALWAYS_INLINE int32_t mins_dot(uint64_t mn8, const char *bs32) {
    const __m128i mins = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mn8));
    __m128i p = _mm_madd_epi16(mins, _mm_loadu_si128((const __m128i *)bs32));
    p = _mm_add_epi32(p, _mm_unpackhi_epi64(p, p));
    p = _mm_add_epi32(p, _mm_shuffle_epi32(p, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(p);
}

/* Q5_K: rows in pairs, each half keeping ggml's 8 partial sums per row:
 * acc[i] = fma(d_w*d_x, sum_j sc_j * (values 4i..4i+3 of sub-block j), acc[i]),
 * minus the chain accm = fma(dmin_w*d_x, mins . bsums, accm). */
static ALWAYS_INLINE void rows_q5k_lanes(const duet_qgemv_job *j, int64_t r0, int64_t r1, int64_t t0, const int C) {
    const int64_t nsb = j->n_in / QK_K;
    const char *xv[MAXC];
    for (int c = 0; c < C; c++) xv[c] = j->xv + (size_t)(t0 + c) * j->xv_row;
    const __m512i m4 = _mm512_set1_epi8(0x0F), v16 = _mm512_set1_epi8(16);
    const __m512i half = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 8, 8, 8, 8, 8, 8, 8, 8);
    for (int64_t r = r0; r < r1; r += 2) {
        const int two = r + 1 < r1;
        const block_q5_K *ra = (const block_q5_K *)(j->w + (size_t)r * j->w_row);
        const block_q5_K *rb = two ? (const block_q5_K *)((const char *)ra + j->w_row) : ra;
        __m512 acc[MAXC];
        float accm_a[MAXC], accm_b[MAXC];
        for (int c = 0; c < C; c++) {
            acc[c] = _mm512_setzero_ps();
            accm_a[c] = accm_b[c] = 0.0f;
        }
        for (int64_t s = 0; s < nsb; s++) {
            const block_q5_K *a = ra + s, *b = rb + s;
            prefetch_ahead((const char *)a, sizeof *a);
            if (two) prefetch_ahead((const char *)b, sizeof *b);
            uint64_t sca, mna, scb, mnb;
            k4_scales(a->scales, &sca, &mna);
            k4_scales(b->scales, &scb, &mnb);
            /* lanes 0-7: row A's scales, 8-15: row B's, as (sc, 0) int16 pairs */
            const __m512i S = _mm512_cvtepu8_epi32(_mm_set_epi64x((long long)scb, (long long)sca));
            const __m512i ha = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a->qh));
            const __m512i H = _mm512_inserti64x4(ha, _mm256_loadu_si256((const __m256i *)b->qh), 1);
            __m512i sumi[MAXC];
            for (int c = 0; c < C; c++) sumi[c] = _mm512_setzero_si512();
            for (int q = 0; q < 4; q++) { /* 32 bytes of qs: sub-blocks 2q (low nibbles) and 2q+1 */
                const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(a->qs + 32 * q))),
                                                     _mm256_loadu_si256((const __m256i *)(b->qs + 32 * q)), 1);
                const __m512i lo = _mm512_or_si512(_mm512_and_si512(z, m4),
                    _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(H, _mm512_set1_epi8((char)(1u << (2 * q)))), v16));
                const __m512i hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(z, 4), m4),
                    _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(H, _mm512_set1_epi8((char)(1u << (2 * q + 1)))), v16));
                const __m512i s0 = _mm512_permutexvar_epi32(_mm512_add_epi32(half, _mm512_set1_epi32(2 * q)), S);
                const __m512i s1 = _mm512_permutexvar_epi32(_mm512_add_epi32(half, _mm512_set1_epi32(2 * q + 1)), S);
                for (int c = 0; c < C; c++) {
                    const char *X = xv[c] + s * QV_K_STRIDE + 64 * q;
                    const __m512i d0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo,
                                                           _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)X)));
                    const __m512i d1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi,
                                                           _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(X + 32))));
                    sumi[c] = _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(sumi[c], d0, s0), d1, s1);
                }
            }
            const float da = _cvtsh_ss(a->d), db = _cvtsh_ss(b->d);
            const float dma = _cvtsh_ss(a->dmin), dmb = _cvtsh_ss(b->dmin);
            for (int c = 0; c < C; c++) {
                const char *X = xv[c] + s * QV_K_STRIDE;
                float dx;
                memcpy(&dx, X + QV_K_D, 4);
                const __m512 dd = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(da * dx)), _mm256_set1_ps(db * dx), 1);
                acc[c] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(sumi[c]), acc[c]);
                accm_a[c] = fmaf(dma * dx, (float)mins_dot(mna, X + QV_K_BS32), accm_a[c]);
                accm_b[c] = fmaf(dmb * dx, (float)mins_dot(mnb, X + QV_K_BS32), accm_b[c]);
            }
        }
        for (int c = 0; c < C; c++) {
            j->y[(t0 + c) * j->n_out + r] = hsum8(_mm512_castps512_ps256(acc[c])) - accm_a[c];
            if (two) j->y[(t0 + c) * j->n_out + r + 1] = hsum8(_mm512_extractf32x8_ps(acc[c], 1)) - accm_b[c];
        }
    }
}

/* Q4_K, llama.cpp's repacked kernels: per super-block (its GEMV) or, for the
 * tokens below job->m_pair, per pair of sub-blocks (its GEMM) the whole integer
 * sums, acc = fma(sum, d_w*d_x, acc), accm = fma(mins . bsums, dmin_w*d_x,
 * accm), result acc - accm. A quarter super-block per zmm: lanes 0-7 of w0
 * hold sub-block 0, lanes 8-15 sub-block 2 (w1: 1 | 3, w2: 4 | 6, w3: 5 | 7;
 * activations permuted to match); vpdpwssd with (scale, 0) pairs applies the
 * scales exactly (|lane| < 2^15). */
/* Sum of lanes 8h .. 8h+7. */
static ALWAYS_INLINE int32_t half_sum(__m512i v, int h) {
    const __m256i x = h ? _mm512_extracti64x4_epi64(v, 1) : _mm512_castsi512_si256(v);
    __m128i r = _mm_add_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
    r = _mm_add_epi32(r, _mm_unpackhi_epi64(r, r));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(r);
}

/* mins . bs32 over the sub-blocks 2p, 2p+1 of pair p. */
static ALWAYS_INLINE int32_t pair_mins(uint64_t mn8, const char *bs32, int p) {
    int16_t bs[8];
    memcpy(bs, bs32, 16);
    return (int32_t)((mn8 >> (16 * p)) & 0xFF) * bs[2 * p] + (int32_t)((mn8 >> (16 * p + 8)) & 0xFF) * bs[2 * p + 1];
}

static ALWAYS_INLINE void rows_q4k(const duet_qgemv_job *j, int64_t r0, int64_t r1, int64_t t0, const int C) {
    const int64_t nsb = j->n_in / QK_K;
    const char *xv[MAXC];
    for (int c = 0; c < C; c++) xv[c] = j->xv + (size_t)(t0 + c) * j->xv_row;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i i0 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    for (int64_t r = r0; r < r1; r++) {
        const block_q4_K *wr = (const block_q4_K *)(j->w + (size_t)r * j->w_row);
        float acc[MAXC], accm[MAXC];
        for (int c = 0; c < C; c++) acc[c] = accm[c] = 0.0f;
        for (int64_t s = 0; s < nsb; s++) {
            const block_q4_K *b = wr + s;
            prefetch_ahead((const char *)b, sizeof *b);
            const float d = _cvtsh_ss(b->d), dmin = _cvtsh_ss(b->dmin);
            uint64_t sc8, mn8;
            k4_scales(b->scales, &sc8, &mn8);
            const __m512i S = _mm512_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc8));
            const __m512i sc0 = _mm512_permutexvar_epi32(i0, S);
            const __m512i sc1 = _mm512_permutexvar_epi32(_mm512_add_epi32(i0, _mm512_set1_epi32(1)), S);
            const __m512i sc2 = _mm512_permutexvar_epi32(_mm512_add_epi32(i0, _mm512_set1_epi32(4)), S);
            const __m512i sc3 = _mm512_permutexvar_epi32(_mm512_add_epi32(i0, _mm512_set1_epi32(5)), S);
            const __m512i z0 = _mm512_loadu_si512(b->qs), z1 = _mm512_loadu_si512(b->qs + 64);
            const __m512i w0 = _mm512_and_si512(z0, m4), w1 = _mm512_and_si512(_mm512_srli_epi16(z0, 4), m4);
            const __m512i w2 = _mm512_and_si512(z1, m4), w3 = _mm512_and_si512(_mm512_srli_epi16(z1, 4), m4);
            for (int c = 0; c < C; c++) {
                const char *X = xv[c] + s * QV_K_STRIDE;
                const __m512i z = _mm512_setzero_si512();
                const __m512i d0 = _mm512_dpbusd_epi32(z, w0, _mm512_loadu_si512(X));
                const __m512i d1 = _mm512_dpbusd_epi32(z, w1, _mm512_loadu_si512(X + 64));
                const __m512i d2 = _mm512_dpbusd_epi32(z, w2, _mm512_loadu_si512(X + 128));
                const __m512i d3 = _mm512_dpbusd_epi32(z, w3, _mm512_loadu_si512(X + 192));
                /* lanes 0-7: sub-blocks 0+1 (then 4+5), lanes 8-15: 2+3 (then 6+7) */
                const __m512i p01 = _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(z, d0, sc0), d1, sc1);
                const __m512i p23 = _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(z, d2, sc2), d3, sc3);
                float dx;
                memcpy(&dx, X + QV_K_D, 4);
                if (t0 + c < j->m_pair) {
                    const int32_t mn[4] = {pair_mins(mn8, X + QV_K_BS32, 0), pair_mins(mn8, X + QV_K_BS32, 1),
                                           pair_mins(mn8, X + QV_K_BS32, 2), pair_mins(mn8, X + QV_K_BS32, 3)};
                    const int32_t ps[4] = {half_sum(p01, 0), half_sum(p01, 1), half_sum(p23, 0), half_sum(p23, 1)};
                    for (int q = 0; q < 4; q++) {
                        acc[c] = fmaf((float)ps[q], d * dx, acc[c]);
                        accm[c] = fmaf((float)mn[q], dmin * dx, accm[c]);
                    }
                } else {
                    acc[c] = fmaf((float)_mm512_reduce_add_epi32(_mm512_add_epi32(p01, p23)), d * dx, acc[c]);
                    accm[c] = fmaf((float)mins_dot(mn8, X + QV_K_BS32), dmin * dx, accm[c]);
                }
            }
        }
        for (int c = 0; c < C; c++) j->y[(t0 + c) * j->n_out + r] = acc[c] - accm[c];
    }
}

/* Q6_K (ggml's AVX2 vec_dot): rows in pairs, lane i of each half holding
 * values 4i..4i+3 of every 32-value chunk, (q - 32) via the seeds, times the
 * 16-value sub-block scale; acc[i] = fma(d_w*d_x, sum, acc[i]) per super-block. */
static ALWAYS_INLINE void rows_q6k_lanes(const duet_qgemv_job *j, int64_t r0, int64_t r1, int64_t t0, const int C) {
    const int64_t nsb = j->n_in / QK_K;
    const char *xv[MAXC];
    for (int c = 0; c < C; c++) xv[c] = j->xv + (size_t)(t0 + c) * j->xv_row;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30), lo16 = _mm512_set1_epi32(0xFFFF);
    const __m512i pair = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 16, 16, 16, 16, 17, 17, 17, 17);
    for (int64_t r = r0; r < r1; r += 2) {
        const int two = r + 1 < r1;
        const block_q6_K *ra = (const block_q6_K *)(j->w + (size_t)r * j->w_row);
        const block_q6_K *rb = two ? (const block_q6_K *)((const char *)ra + j->w_row) : ra;
        __m512 acc[MAXC];
        for (int c = 0; c < C; c++) acc[c] = _mm512_setzero_ps();
        for (int64_t s = 0; s < nsb; s++) {
            const block_q6_K *a = ra + s, *b = rb + s;
            prefetch_ahead((const char *)a, sizeof *a);
            if (two) prefetch_ahead((const char *)b, sizeof *b);
            /* the 16 sub-block scales of each row as (scale, 0) int16 pairs */
            const __m512i sa = _mm512_and_si512(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)a->scales)), lo16);
            const __m512i sb = _mm512_and_si512(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)b->scales)), lo16);
            __m512i sumi[MAXC];
            for (int c = 0; c < C; c++) sumi[c] = _mm512_setzero_si512();
            for (int h = 0; h < 2; h++) {
                const __m512i qh = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(a->qh + 32 * h))),
                                                      _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h)), 1);
                for (int p = 0; p < 4; p++) { /* chunk 4h+p: values 128h+32p .. +31 */
                    const int ch = 4 * h + p;
                    const __m512i ql = _mm512_inserti64x4(
                        _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(a->ql + 64 * h + 32 * (p & 1)))),
                        _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32 * (p & 1))), 1);
                    const __m512i lo = p < 2 ? _mm512_and_si512(ql, m4) : _mm512_and_si512(_mm512_srli_epi16(ql, 4), m4);
                    __m512i hi; /* bits 2p, 2p+1 of qh moved to bits 4, 5 */
                    switch (p) {
                    case 0: hi = _mm512_slli_epi16(qh, 4); break;
                    case 1: hi = _mm512_slli_epi16(qh, 2); break;
                    case 2: hi = qh; break;
                    default: hi = _mm512_srli_epi16(qh, 2); break;
                    }
                    const __m512i v = _mm512_or_si512(lo, _mm512_and_si512(hi, m30));
                    const __m512i sc = _mm512_permutex2var_epi32(sa, _mm512_add_epi32(pair, _mm512_set1_epi32(2 * ch)), sb);
                    for (int c = 0; c < C; c++) {
                        const char *X = xv[c] + s * QV_K_STRIDE;
                        const __m512i d = _mm512_dpbusd_epi32(
                            _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(X + QV_K_SEED + 32 * ch))), v,
                            _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(X + 32 * ch))));
                        sumi[c] = _mm512_dpwssd_epi32(sumi[c], d, sc);
                    }
                }
            }
            const float da = _cvtsh_ss(a->d), db = _cvtsh_ss(b->d);
            for (int c = 0; c < C; c++) {
                float dx;
                memcpy(&dx, xv[c] + s * QV_K_STRIDE + QV_K_D, 4);
                const __m512 dd = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(da * dx)), _mm256_set1_ps(db * dx), 1);
                acc[c] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(sumi[c]), acc[c]);
            }
        }
        for (int c = 0; c < C; c++) {
            j->y[(t0 + c) * j->n_out + r] = hsum8(_mm512_castps512_ps256(acc[c]));
            if (two) j->y[(t0 + c) * j->n_out + r + 1] = hsum8(_mm512_extractf32x8_ps(acc[c], 1));
        }
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
#define Q40(CC) rows_q4_0(j, r0, r1, t0, CC)
#define L32(T, CC) rows_32_lanes(j, r0, r1, t0, T, CC)
#define Q41(CC) L32(DUET_TYPE_Q4_1, CC)
#define Q50(CC) L32(DUET_TYPE_Q5_0, CC)
#define Q51(CC) L32(DUET_TYPE_Q5_1, CC)
#define Q80(CC) L32(DUET_TYPE_Q8_0, CC)
#define Q4K(CC) rows_q4k(j, r0, r1, t0, CC)
#define Q5K(CC) rows_q5k_lanes(j, r0, r1, t0, CC)
#define Q6K(CC) rows_q6k_lanes(j, r0, r1, t0, CC)
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

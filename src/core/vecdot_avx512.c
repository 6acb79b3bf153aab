/* AVX-512 (F, BW, VL, DQ, VNNI, BF16) kernels: tiles of up to 4 weight
 * rows x 4 activation rows for Q8_0, Q4_0, Q4_K, Q6_K and F16, and
 * single-row dots for F32, F16, BF16, Q5_0, Q4_K, Q5_K, Q6_K (Q4_K/Q6_K: the
 * 1x1 tile); the other single-row dots stay at the AVX2 level. Integer block dots are exact (vpdpbusd / vpmaddubsw +
 * vpdpwssd); only the float accumulation order differs from the reference.
 * Activation quantizers come from the AVX2 level (bit-identical anyway). */
#include <immintrin.h>

#include "core/quant_internal.h"

#define ALWAYS_INLINE inline __attribute__((always_inline))

static inline float f16(duet_fp16 h) { return _cvtsh_ss(h); }

static ALWAYS_INLINE __m512i cat256(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* float vector: lanes 0..7 = a, 8..15 = b */
static ALWAYS_INLINE __m512 pair_ps(float a, float b) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(a)), _mm256_set1_ps(b), 1);
}

/* int16 vector: lanes 0..15 = a, 16..31 = b */
static ALWAYS_INLINE __m512i pair_epi16(int a, int b) {
    return cat256(_mm256_set1_epi16((short)a), _mm256_set1_epi16((short)b));
}

static ALWAYS_INLINE __m256i nibbles32(const uint8_t *p) {
    const __m128i t = _mm_loadu_si128((const __m128i *)p);
    const __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

static ALWAYS_INLINE __m256i load256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* Tile helpers: call F(NR, NC) with compile-time constants. */
#define TILE_SWITCH(F)                                   \
    switch ((nr - 1) * 4 + (nc - 1)) {                   \
    case 0: F(1, 1); break;  case 1: F(1, 2); break;     \
    case 2: F(1, 3); break;  case 3: F(1, 4); break;     \
    case 4: F(2, 1); break;  case 5: F(2, 2); break;     \
    case 6: F(2, 3); break;  case 7: F(2, 4); break;     \
    case 8: F(3, 1); break;  case 9: F(3, 2); break;     \
    case 10: F(3, 3); break; case 11: F(3, 4); break;    \
    case 12: F(4, 1); break; case 13: F(4, 2); break;    \
    case 14: F(4, 3); break; case 15: F(4, 4); break;    \
    default: break;                                      \
    }

/* ---------------------------------------------------------------- floats */

static float dot_f32_avx512(int64_t n, const void *vw, const void *vx) {
    const float *w = vw, *x = vx;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 32), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 48), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, w + i), _mm512_maskz_loadu_ps(k, x + i), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

static float dot_bf16_avx512(int64_t n, const void *vw, const void *vx) {
    const duet_bf16 *w = vw, *x = vx;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(w + i), (__m512bh)_mm512_loadu_si512(x + i));
        a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512(w + i + 32), (__m512bh)_mm512_loadu_si512(x + i + 32));
    }
    for (; i < n; i += 32) {
        const int64_t left = n - i;
        const __mmask32 k = left >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << left) - 1);
        a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_maskz_loadu_epi16(k, w + i),
                              (__m512bh)_mm512_maskz_loadu_epi16(k, x + i));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

static ALWAYS_INLINE __m512 f16x16(const duet_fp16 *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

static ALWAYS_INLINE __m512 f16x16_mask(const duet_fp16 *p, __mmask16 k) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p));
}

static ALWAYS_INLINE void tile_f16(int64_t n, float *s, size_t bs, const char *w, size_t bw,
                                   const char *x, size_t bx, const int NR, const int NC) {
    __m512 acc[4][4];
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NC; c++) acc[r][c] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 xv[4];
        for (int c = 0; c < NC; c++) xv[c] = f16x16((const duet_fp16 *)(x + c * bx) + i);
        for (int r = 0; r < NR; r++) {
            const __m512 wv = f16x16((const duet_fp16 *)(w + r * bw) + i);
            for (int c = 0; c < NC; c++) acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        __m512 xv[4];
        for (int c = 0; c < NC; c++) xv[c] = f16x16_mask((const duet_fp16 *)(x + c * bx) + i, k);
        for (int r = 0; r < NR; r++) {
            const __m512 wv = f16x16_mask((const duet_fp16 *)(w + r * bw) + i, k);
            for (int c = 0; c < NC; c++) acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NC; c++) s[r * bs + c] = _mm512_reduce_add_ps(acc[r][c]);
}

/* ------------------------------------------------------ 32-element blocks
 * Two blocks per zmm: block ib in the low 256 bits, ib+1 in the high 256
 * (a zero block with scale 0 when the row has an odd block count). */

/* Q8_0 x Q8_0: dpbusd needs an unsigned operand, so the activations are
 * shifted by +128 and 128*sum(w) is subtracted (it seeds the accumulator). */
static ALWAYS_INLINE void tile_q8_0(int64_t n, float *s, size_t bs, const char *w, size_t bw,
                                    const char *x, size_t bx, const int NR, const int NC) {
    const int64_t nb = n / QK8_0;
    const __m512i c80 = _mm512_set1_epi8((char)0x80);
    __m512 acc[4][4];
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NC; c++) acc[r][c] = _mm512_setzero_ps();
    for (int64_t ib = 0; ib < nb; ib += 2) {
        const int two = ib + 1 < nb;
        __m512i xq[4];
        __m512 dx[4];
        for (int c = 0; c < NC; c++) {
            const block_q8_0 *xb = (const block_q8_0 *)(x + c * bx) + ib;
            const __m256i hi = two ? load256(xb[1].qs) : _mm256_set1_epi8((char)0x80);
            xq[c] = _mm512_xor_si512(cat256(load256(xb[0].qs), hi), c80);
            dx[c] = pair_ps(f16(xb[0].d), two ? f16(xb[1].d) : 0.0f);
        }
        for (int r = 0; r < NR; r++) {
            const block_q8_0 *wb = (const block_q8_0 *)(w + r * bw) + ib;
            const __m512i wq = cat256(load256(wb[0].qs), two ? load256(wb[1].qs) : _mm256_setzero_si256());
            const __m512 dw = pair_ps(f16(wb[0].d), two ? f16(wb[1].d) : 0.0f);
            const __m512i seed = _mm512_sub_epi32(_mm512_setzero_si512(),
                                                  _mm512_dpbusd_epi32(_mm512_setzero_si512(), c80, wq));
            for (int c = 0; c < NC; c++) {
                const __m512i p = _mm512_dpbusd_epi32(seed, xq[c], wq);
                acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, dx[c]), acc[r][c]);
            }
        }
    }
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NC; c++) s[r * bs + c] = _mm512_reduce_add_ps(acc[r][c]);
}

/* Q4_0 x Q8_0: dot(q - 8, y) = dpbusd(q, y) - 8*sum(y); -8*sum(y) seeds it. */
static ALWAYS_INLINE void tile_q4_0(int64_t n, float *s, size_t bs, const char *w, size_t bw,
                                    const char *x, size_t bx, const int NR, const int NC) {
    const int64_t nb = n / QK4_0;
    const __m512i c08 = _mm512_set1_epi8(8);
    __m512 acc[4][4];
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NC; c++) acc[r][c] = _mm512_setzero_ps();
    for (int64_t ib = 0; ib < nb; ib += 2) {
        const int two = ib + 1 < nb;
        __m512i xq[4], seed[4];
        __m512 dx[4];
        for (int c = 0; c < NC; c++) {
            const block_q8_0 *xb = (const block_q8_0 *)(x + c * bx) + ib;
            xq[c] = cat256(load256(xb[0].qs), two ? load256(xb[1].qs) : _mm256_setzero_si256());
            seed[c] = _mm512_sub_epi32(_mm512_setzero_si512(),
                                       _mm512_dpbusd_epi32(_mm512_setzero_si512(), c08, xq[c]));
            dx[c] = pair_ps(f16(xb[0].d), two ? f16(xb[1].d) : 0.0f);
        }
        for (int r = 0; r < NR; r++) {
            const block_q4_0 *wb = (const block_q4_0 *)(w + r * bw) + ib;
            const __m512i wq = cat256(nibbles32(wb[0].qs), two ? nibbles32(wb[1].qs) : _mm256_setzero_si256());
            const __m512 dw = pair_ps(f16(wb[0].d), two ? f16(wb[1].d) : 0.0f);
            for (int c = 0; c < NC; c++) {
                const __m512i p = _mm512_dpbusd_epi32(seed[c], wq, xq[c]);
                acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, dx[c]), acc[r][c]);
            }
        }
    }
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NC; c++) s[r * bs + c] = _mm512_reduce_add_ps(acc[r][c]);
}

/* Q5_0: single-row, two blocks per step. (Q4_1/Q5_1 and the single-row
 * Q8_0/Q4_0 dots stay at the AVX2 level, which measured faster for one
 * row: packing two blocks per zmm costs more than it saves without row
 * reuse.) */
/* 5-bit values of a Q5 block: nibble | (bit j of qh) << 4 */
static ALWAYS_INLINE __m256i q5_values(const uint8_t *qs, const uint8_t *qh) {
    uint32_t bits;
    memcpy(&bits, qh, 4);
    return _mm256_or_si256(nibbles32(qs), _mm256_maskz_mov_epi8((__mmask32)bits, _mm256_set1_epi8(0x10)));
}

static float dot_q5_0_avx512(int64_t n, const void *vw, const void *vx) {
    const block_q5_0 *w = vw;
    const block_q8_0 *x = vx;
    const int64_t nb = n / QK5_0;
    const __m512i c16 = _mm512_set1_epi8(16);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t ib = 0; ib < nb; ib += 2) {
        const int two = ib + 1 < nb;
        const __m512i wq = cat256(q5_values(w[ib].qs, w[ib].qh),
                                  two ? q5_values(w[ib + 1].qs, w[ib + 1].qh) : _mm256_setzero_si256());
        const __m512i xq = cat256(load256(x[ib].qs), two ? load256(x[ib + 1].qs) : _mm256_setzero_si256());
        const __m512 d = pair_ps(f16(w[ib].d) * f16(x[ib].d), two ? f16(w[ib + 1].d) * f16(x[ib + 1].d) : 0.0f);
        const __m512i seed = _mm512_sub_epi32(_mm512_setzero_si512(),
                                              _mm512_dpbusd_epi32(_mm512_setzero_si512(), c16, xq));
        const __m512i p = _mm512_dpbusd_epi32(seed, wq, xq);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), d, acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* ------------------------------------------------------------- K-quants */

static ALWAYS_INLINE void k4_scales_mins(const uint8_t *packed, int16_t sc[8], int16_t mn[8]) {
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        duet_get_scale_min_k4(j, packed, &s, &m);
        sc[j] = s;
        mn[j] = m;
    }
}

/* sum_j mn[j] * (bsums[2j] + bsums[2j+1]) */
static ALWAYS_INLINE int k4_mins_dot(const int16_t mn[8], const int16_t *bsums) {
    const __m128i pairs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)bsums),
                                         _mm_loadu_si128((const __m128i *)(bsums + 8)));
    __m128i p = _mm_madd_epi16(_mm_loadu_si128((const __m128i *)mn), pairs);
    p = _mm_add_epi32(p, _mm_unpackhi_epi64(p, p));
    p = _mm_add_epi32(p, _mm_shuffle_epi32(p, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(p);
}

/* One pass over up to 4 weight rows and up to 2 activation rows (more
 * columns would not fit the 32 vector registers). Chunk c of a block: low
 * nibbles of qs[32c..32c+31] are elements 64c.., high nibbles 64c+32.. */
static ALWAYS_INLINE void tile_q4_K_pass(int64_t n, float *s, size_t bs, const char *w, size_t bw,
                                         const char *x, size_t bx, const int NR, const int NC) {
    const int64_t nb = n / QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[4][2];
    float accm[4][2];
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NC; c++) acc[r][c] = _mm512_setzero_ps(), accm[r][c] = 0;
    for (int64_t i = 0; i < nb; i++) {
        const block_q8_K *xb[2];
        for (int c = 0; c < NC; c++) xb[c] = (const block_q8_K *)(x + c * bx) + i;
        for (int r = 0; r < NR; r++) {
            const block_q4_K *wb = (const block_q4_K *)(w + r * bw) + i;
            int16_t sc[8], mn[8];
            k4_scales_mins(wb->scales, sc, mn);
            const float dw = f16(wb->d), dminw = f16(wb->dmin);
            __m512i isum[2];
            for (int c = 0; c < NC; c++) isum[c] = _mm512_setzero_si512();
            for (int k = 0; k < 4; k++) {
                const __m256i q4 = load256(wb->qs + 32 * k);
                const __m512i q = _mm512_and_si512(cat256(q4, _mm256_srli_epi16(q4, 4)), m4);
                const __m512i scv = pair_epi16(sc[2 * k], sc[2 * k + 1]);
                for (int c = 0; c < NC; c++) {
                    const __m512i y = _mm512_loadu_si512(xb[c]->qs + 64 * k);
                    isum[c] = _mm512_dpwssd_epi32(isum[c], _mm512_maddubs_epi16(q, y), scv);
                }
            }
            for (int c = 0; c < NC; c++) {
                acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[c]), _mm512_set1_ps(dw * xb[c]->d), acc[r][c]);
                accm[r][c] += dminw * xb[c]->d * (float)k4_mins_dot(mn, xb[c]->bsums);
            }
        }
    }
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NC; c++) s[r * bs + c] = _mm512_reduce_add_ps(acc[r][c]) - accm[r][c];
}

static ALWAYS_INLINE void tile_q4_K(int64_t n, float *s, size_t bs, const char *w, size_t bw,
                                    const char *x, size_t bx, const int NR, const int NC) {
    if (NC <= 2) {
        tile_q4_K_pass(n, s, bs, w, bw, x, bx, NR, NC);
    } else {
        tile_q4_K_pass(n, s, bs, w, bw, x, bx, NR, 2);
        tile_q4_K_pass(n, s + 2, bs, w, bw, x + 2 * bx, bx, NR, NC - 2);
    }
}

static float dot_q5_K_avx512(int64_t n, const void *vw, const void *vx) {
    const block_q5_K *w = vw;
    const block_q8_K *x = vx;
    const __m512i m4 = _mm512_set1_epi8(0x0F), c16 = _mm512_set1_epi8(0x10);
    __m512 acc = _mm512_setzero_ps();
    float accm = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int16_t sc[8], mn[8];
        k4_scales_mins(w[i].scales, sc, mn);
        accm += f16(w[i].dmin) * x[i].d * (float)k4_mins_dot(mn, x[i].bsums);
        const __m256i hb = load256(w[i].qh);
        __m512i isum = _mm512_setzero_si512();
        for (int k = 0; k < 4; k++) {
            const __m256i q4 = load256(w[i].qs + 32 * k);
            const __mmask32 h0 = _mm256_test_epi8_mask(hb, _mm256_set1_epi8((char)(1 << (2 * k))));
            const __mmask32 h1 = _mm256_test_epi8_mask(hb, _mm256_set1_epi8((char)(2 << (2 * k))));
            const __mmask64 h = (__mmask64)h0 | ((__mmask64)h1 << 32);
            __m512i q = _mm512_and_si512(cat256(q4, _mm256_srli_epi16(q4, 4)), m4);
            q = _mm512_or_si512(q, _mm512_maskz_mov_epi8(h, c16));
            const __m512i y = _mm512_loadu_si512(x[i].qs + 64 * k);
            isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(q, y), pair_epi16(sc[2 * k], sc[2 * k + 1]));
        }
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(f16(w[i].d) * x[i].d), acc);
    }
    return _mm512_reduce_add_ps(acc) - accm;
}

/* Q6_K, per 128-element half: zA = elements 0..63 = [ql low | qh bits 0-1,
 * ql[32..] low | qh bits 2-3], zB = elements 64..127 = [ql high | bits 4-5,
 * ql[32..] high | bits 6-7]. The -32 offset is 32*sum_j sc_j*bsum_j,
 * subtracted through the accumulator seed. */
static ALWAYS_INLINE void tile_q6_K_pass(int64_t n, float *s, size_t bs, const char *w, size_t bw,
                                         const char *x, size_t bx, const int NR, const int NC) {
    const int64_t nb = n / QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const __m512i shl_a = cat256(_mm256_set1_epi16(4), _mm256_set1_epi16(2));
    const __m512i shr_b = cat256(_mm256_set1_epi16(0), _mm256_set1_epi16(2));
    /* int16 scale index per maddubs lane: 8 lanes (16 elements) per scale */
    const __m512i idx0 = _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2,
                                          1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i four = _mm512_set1_epi16(4);
    __m512 acc[4][2];
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NC; c++) acc[r][c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const block_q8_K *xb[2];
        for (int c = 0; c < NC; c++) xb[c] = (const block_q8_K *)(x + c * bx) + i;
        for (int r = 0; r < NR; r++) {
            const block_q6_K *wb = (const block_q6_K *)(w + r * bw) + i;
            const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wb->scales));
            const __m512i scz = _mm512_castsi256_si512(sc16);
            __m512i isum[2];
            for (int c = 0; c < NC; c++) {
                const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sc16, load256(xb[c]->bsums)), 5);
                isum[c] = _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), corr));
            }
            __m512i idx = idx0;
            for (int h = 0; h < 2; h++) {
                const __m512i l = _mm512_loadu_si512(wb->ql + 64 * h);
                const __m512i qh = _mm512_broadcast_i64x4(load256(wb->qh + 32 * h));
                const __m512i za = _mm512_or_si512(_mm512_and_si512(l, m4),
                                                   _mm512_and_si512(_mm512_sllv_epi16(qh, shl_a), m30));
                const __m512i zb = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                                   _mm512_and_si512(_mm512_srlv_epi16(qh, shr_b), m30));
                const __m512i sa = _mm512_permutexvar_epi16(idx, scz);
                idx = _mm512_add_epi16(idx, four);
                const __m512i sb = _mm512_permutexvar_epi16(idx, scz);
                idx = _mm512_add_epi16(idx, four);
                for (int c = 0; c < NC; c++) {
                    const __m512i ya = _mm512_loadu_si512(xb[c]->qs + 128 * h);
                    const __m512i yb = _mm512_loadu_si512(xb[c]->qs + 128 * h + 64);
                    isum[c] = _mm512_dpwssd_epi32(isum[c], _mm512_maddubs_epi16(za, ya), sa);
                    isum[c] = _mm512_dpwssd_epi32(isum[c], _mm512_maddubs_epi16(zb, yb), sb);
                }
            }
            const float dw = f16(wb->d);
            for (int c = 0; c < NC; c++)
                acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[c]), _mm512_set1_ps(dw * xb[c]->d), acc[r][c]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NC; c++) s[r * bs + c] = _mm512_reduce_add_ps(acc[r][c]);
}

static ALWAYS_INLINE void tile_q6_K(int64_t n, float *s, size_t bs, const char *w, size_t bw,
                                    const char *x, size_t bx, const int NR, const int NC) {
    if (NC <= 2) {
        tile_q6_K_pass(n, s, bs, w, bw, x, bx, NR, NC);
    } else {
        tile_q6_K_pass(n, s, bs, w, bw, x, bx, NR, 2);
        tile_q6_K_pass(n, s + 2, bs, w, bw, x + 2 * bx, bx, NR, NC - 2);
    }
}

/* Single-row F16: four independent accumulators (the 1x1 tile has one
 * FMA chain and is latency bound). */
static float dot_f16_row_avx512(int64_t n, const void *vw, const void *vx) {
    const duet_fp16 *w = vw, *x = vx;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(f16x16(w + i), f16x16(x + i), a0);
        a1 = _mm512_fmadd_ps(f16x16(w + i + 16), f16x16(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(f16x16(w + i + 32), f16x16(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(f16x16(w + i + 48), f16x16(x + i + 48), a3);
    }
    for (; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        a0 = _mm512_fmadd_ps(f16x16_mask(w + i, k), f16x16_mask(x + i, k), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* ---------------------------------------- tile entry points + 1x1 dots */

#define DEFINE_TILE_ENTRY(name)                                                                 \
    __attribute__((unused)) static void nxm_##name##_avx512(int64_t n, float *s, size_t bs, const void *w, size_t bw,  \
                                    const void *x, size_t bx, int nr, int nc) {                \
        const char *wc = w, *xc = x;                                                            \
        if (nr < 1 || nc < 1 || nr > 4 || nc > 4) return;                                       \
        TILE_SWITCH(TILE_CALL_##name)                                                           \
    }                                                                                           \
    __attribute__((unused)) static float dot_##name##_avx512(int64_t n, const void *w,        \
                                                             const void *x) {                  \
        float s;                                                                                \
        tile_##name(n, &s, 1, w, 0, x, 0, 1, 1);                                                \
        return s;                                                                               \
    }

#define TILE_CALL_f16(R, C) tile_f16(n, s, bs, wc, bw, xc, bx, R, C)
#define TILE_CALL_q8_0(R, C) tile_q8_0(n, s, bs, wc, bw, xc, bx, R, C)
#define TILE_CALL_q4_0(R, C) tile_q4_0(n, s, bs, wc, bw, xc, bx, R, C)
#define TILE_CALL_q4_K(R, C) tile_q4_K(n, s, bs, wc, bw, xc, bx, R, C)
#define TILE_CALL_q6_K(R, C) tile_q6_K(n, s, bs, wc, bw, xc, bx, R, C)

DEFINE_TILE_ENTRY(f16)
DEFINE_TILE_ENTRY(q8_0)
DEFINE_TILE_ENTRY(q4_0)
DEFINE_TILE_ENTRY(q4_K)
DEFINE_TILE_ENTRY(q6_K)

DUET_DEFINE_NXM_FROM_DOT(nxm_f32_avx512, dot_f32_avx512)
DUET_DEFINE_NXM_FROM_DOT(nxm_bf16_avx512, dot_bf16_avx512)
DUET_DEFINE_NXM_FROM_DOT(nxm_q5_0_avx512, dot_q5_0_avx512)
DUET_DEFINE_NXM_FROM_DOT(nxm_q5_K_avx512, dot_q5_K_avx512)

void duet_kernels_avx512_init(duet_kernel_table *t) {
#define SET(T, name)                    \
    t->dot[T] = dot_##name##_avx512;    \
    t->nxm[T] = nxm_##name##_avx512;
    SET(DUET_TYPE_F32, f32)
    SET(DUET_TYPE_F16, f16)
    SET(DUET_TYPE_BF16, bf16)
    SET(DUET_TYPE_Q5_0, q5_0)
    SET(DUET_TYPE_Q4_K, q4_K)
    SET(DUET_TYPE_Q5_K, q5_K)
    SET(DUET_TYPE_Q6_K, q6_K)
#undef SET
    t->dot[DUET_TYPE_F16] = dot_f16_row_avx512; /* 4 accumulators for one row */
    /* Q8_0 / Q4_0: AVX-512 tiles, AVX2 single-row dots (see above). */
    t->nxm[DUET_TYPE_Q8_0] = nxm_q8_0_avx512;
    t->nxm[DUET_TYPE_Q4_0] = nxm_q4_0_avx512;
}

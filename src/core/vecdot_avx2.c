/* AVX2 + FMA + F16C kernels (this file is compiled with -mavx2 -mfma -mf16c;
 * its functions are reached only after the run-time check in
 * cpu_features.c). Integer block dots are exact; only the float
 * accumulation order differs from vecdot_ref.c. The activation quantizers
 * are bit-identical to quant_act.c / quant_quantize.c. */
#include <immintrin.h>

#include "core/quant_internal.h"

static inline float f16(duet_fp16 h) { return _cvtsh_ss(h); }

static inline float hsum_ps8(__m256 v) {
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

static inline int hsum_i32_8(__m256i v) {
    __m128i r = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    r = _mm_add_epi32(r, _mm_unpackhi_epi64(r, r));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(r);
}

/* 16 nibbles -> 32 bytes: low nibbles first (elements 0..15), then high. */
static inline __m256i nibbles32(const uint8_t *p) {
    const __m128i t = _mm_loadu_si128((const __m128i *)p);
    const __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

/* 32 bits -> 32 bytes, 0xFF where the bit is set. */
static inline __m256i bits32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)v), shuf);
    b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}

/* sum over pairs of u8*s8 products, then pairs again: 8 int32 lanes. */
static inline __m256i dot_us8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* signed x signed via |a| and sign(b, a). */
static inline __m256i dot_ss8(__m256i a, __m256i b) {
    return dot_us8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

/* ---------------------------------------------------------------- floats */

static float dot_f32_avx2(int64_t n, const void *vw, const void *vx) {
    const float *w = vw, *x = vx;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    double s = hsum_ps8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += (double)(w[i] * x[i]);
    return (float)s;
}

static inline __m256 load_f16x8(const duet_fp16 *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static float dot_f16_avx2(int64_t n, const void *vw, const void *vx) {
    const duet_fp16 *w = vw, *x = vx;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load_f16x8(w + i), load_f16x8(x + i), a0);
        a1 = _mm256_fmadd_ps(load_f16x8(w + i + 8), load_f16x8(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_f16x8(w + i + 16), load_f16x8(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_f16x8(w + i + 24), load_f16x8(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load_f16x8(w + i), load_f16x8(x + i), a0);
    double s = hsum_ps8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += (double)(f16(w[i]) * f16(x[i]));
    return (float)s;
}

static inline __m256 load_bf16x8(const duet_bf16 *p) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

static float dot_bf16_avx2(int64_t n, const void *vw, const void *vx) {
    const duet_bf16 *w = vw, *x = vx;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load_bf16x8(w + i), load_bf16x8(x + i), a0);
        a1 = _mm256_fmadd_ps(load_bf16x8(w + i + 8), load_bf16x8(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_bf16x8(w + i + 16), load_bf16x8(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_bf16x8(w + i + 24), load_bf16x8(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load_bf16x8(w + i), load_bf16x8(x + i), a0);
    double s = hsum_ps8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += (double)(duet_bf16_to_fp32_inl(w[i]) * duet_bf16_to_fp32_inl(x[i]));
    return (float)s;
}

/* ------------------------------------------------------ 32-element blocks */

static float dot_q8_0_avx2(int64_t n, const void *vw, const void *vx) {
    const block_q8_0 *w = vw, *x = vx;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < n / QK8_0; ib++) {
        const __m256 d = _mm256_set1_ps(f16(w[ib].d) * f16(x[ib].d));
        const __m256i qw = _mm256_loadu_si256((const __m256i *)w[ib].qs);
        const __m256i qx = _mm256_loadu_si256((const __m256i *)x[ib].qs);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_ss8(qw, qx)), acc);
    }
    return hsum_ps8(acc);
}

static float dot_q4_0_avx2(int64_t n, const void *vw, const void *vx) {
    const block_q4_0 *w = vw;
    const block_q8_0 *x = vx;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < n / QK4_0; ib++) {
        const __m256 d = _mm256_set1_ps(f16(w[ib].d) * f16(x[ib].d));
        const __m256i qw = _mm256_sub_epi8(nibbles32(w[ib].qs), _mm256_set1_epi8(8));
        const __m256i qx = _mm256_loadu_si256((const __m256i *)x[ib].qs);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_ss8(qw, qx)), acc);
    }
    return hsum_ps8(acc);
}

static float dot_q4_1_avx2(int64_t n, const void *vw, const void *vx) {
    const block_q4_1 *w = vw;
    const block_q8_1 *x = vx;
    __m256 acc = _mm256_setzero_ps();
    float summs = 0;
    for (int64_t ib = 0; ib < n / QK4_1; ib++) {
        summs += f16(w[ib].m) * f16(x[ib].s);
        const __m256 d = _mm256_set1_ps(f16(w[ib].d) * f16(x[ib].d));
        const __m256i qx = _mm256_loadu_si256((const __m256i *)x[ib].qs);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_us8(nibbles32(w[ib].qs), qx)), acc);
    }
    return hsum_ps8(acc) + summs;
}

static float dot_q5_0_avx2(int64_t n, const void *vw, const void *vx) {
    const block_q5_0 *w = vw;
    const block_q8_0 *x = vx;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < n / QK5_0; ib++) {
        const __m256 d = _mm256_set1_ps(f16(w[ib].d) * f16(x[ib].d));
        /* bit clear -> nibble | 0xF0 = nibble - 16 as int8; bit set -> nibble */
        const __m256i hi = _mm256_andnot_si256(bits32(w[ib].qh), _mm256_set1_epi8((char)0xF0));
        const __m256i qw = _mm256_or_si256(nibbles32(w[ib].qs), hi);
        const __m256i qx = _mm256_loadu_si256((const __m256i *)x[ib].qs);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_ss8(qw, qx)), acc);
    }
    return hsum_ps8(acc);
}

static float dot_q5_1_avx2(int64_t n, const void *vw, const void *vx) {
    const block_q5_1 *w = vw;
    const block_q8_1 *x = vx;
    __m256 acc = _mm256_setzero_ps();
    float summs = 0;
    for (int64_t ib = 0; ib < n / QK5_1; ib++) {
        summs += f16(w[ib].m) * f16(x[ib].s);
        const __m256 d = _mm256_set1_ps(f16(w[ib].d) * f16(x[ib].d));
        const __m256i hi = _mm256_and_si256(bits32(w[ib].qh), _mm256_set1_epi8(0x10));
        const __m256i qw = _mm256_or_si256(nibbles32(w[ib].qs), hi);
        const __m256i qx = _mm256_loadu_si256((const __m256i *)x[ib].qs);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_us8(qw, qx)), acc);
    }
    return hsum_ps8(acc) + summs;
}

/* ------------------------------------------------------------- K-quants */

/* 8 scales and 8 mins of a Q4_K/Q5_K block as int16 vectors. */
static inline void k4_scales_mins(const uint8_t *packed, int16_t sc[8], int16_t mn[8]) {
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        duet_get_scale_min_k4(j, packed, &s, &m);
        sc[j] = s;
        mn[j] = m;
    }
}

/* sum_j mn[j] * (bsums[2j] + bsums[2j+1]) */
static inline int k4_mins_dot(const int16_t mn[8], const int16_t *bsums) {
    const __m128i b0 = _mm_loadu_si128((const __m128i *)bsums);
    const __m128i b1 = _mm_loadu_si128((const __m128i *)(bsums + 8));
    const __m128i pairs = _mm_hadd_epi16(b0, b1);
    __m128i p = _mm_madd_epi16(_mm_loadu_si128((const __m128i *)mn), pairs);
    p = _mm_add_epi32(p, _mm_unpackhi_epi64(p, p));
    p = _mm_add_epi32(p, _mm_shuffle_epi32(p, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(p);
}

static float dot_q4_K_avx2(int64_t n, const void *vw, const void *vx) {
    const block_q4_K *w = vw;
    const block_q8_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    float accm = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int16_t sc[8], mn[8];
        k4_scales_mins(w[i].scales, sc, mn);
        const float d = f16(w[i].d) * x[i].d;
        const float dmin = f16(w[i].dmin) * x[i].d;
        accm += dmin * (float)k4_mins_dot(mn, x[i].bsums);
        __m256i sumi = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            const __m256i q4 = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * c));
            const __m256i lo = _mm256_and_si256(q4, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
            const __m256i y0 = _mm256_loadu_si256((const __m256i *)(x[i].qs + 64 * c));
            const __m256i y1 = _mm256_loadu_si256((const __m256i *)(x[i].qs + 64 * c + 32));
            const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), _mm256_set1_epi16(sc[2 * c]));
            const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), _mm256_set1_epi16(sc[2 * c + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps8(acc) - accm;
}

static float dot_q5_K_avx2(int64_t n, const void *vw, const void *vx) {
    const block_q5_K *w = vw;
    const block_q8_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m1 = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    float accm = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int16_t sc[8], mn[8];
        k4_scales_mins(w[i].scales, sc, mn);
        const float d = f16(w[i].d) * x[i].d;
        const float dmin = f16(w[i].dmin) * x[i].d;
        accm += dmin * (float)k4_mins_dot(mn, x[i].bsums);
        const __m256i hb = _mm256_loadu_si256((const __m256i *)w[i].qh);
        __m256i sumi = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            const __m256i q4 = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * c));
            const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(hb, 2 * c), m1);
            const __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(hb, 2 * c + 1), m1);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(q4, m4), _mm256_slli_epi16(h0, 4));
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4, 4), m4),
                                               _mm256_slli_epi16(h1, 4));
            const __m256i y0 = _mm256_loadu_si256((const __m256i *)(x[i].qs + 64 * c));
            const __m256i y1 = _mm256_loadu_si256((const __m256i *)(x[i].qs + 64 * c + 32));
            const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), _mm256_set1_epi16(sc[2 * c]));
            const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), _mm256_set1_epi16(sc[2 * c + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps8(acc) - accm;
}

/* int16 vector: 8 lanes of a, then 8 lanes of b. */
static inline __m256i scale_pair(int a, int b) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)a)),
                                   _mm_set1_epi16((short)b), 1);
}

/* Q6_K: dot with the unsigned 6-bit values q, then subtract
 * 32 * sum_j scale_j * bsum_j (the -32 offset). */
static float dot_q6_K_avx2(int64_t n, const void *vw, const void *vx) {
    const block_q6_K *w = vw;
    const block_q8_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = f16(w[i].d) * x[i].d;
        const int8_t *sc = w[i].scales;
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc));
        const __m256i bs = _mm256_loadu_si256((const __m256i *)x[i].bsums);
        __m256i sumi = _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs), 5);
        sumi = _mm256_sub_epi32(_mm256_setzero_si256(), sumi);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[i].ql + 64 * h, *qhp = w[i].qh + 32 * h;
            const int8_t *y = x[i].qs + 128 * h, *s = sc + 8 * h;
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)qhp);
            const __m256i q0 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m3));
            const __m256i q1 = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m3));
            const __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m3));
            const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                               _mm256_and_si256(_mm256_srli_epi16(qh, 2), m3));
            const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(q0, _mm256_loadu_si256((const __m256i *)(y + 0))), scale_pair(s[0], s[1]));
            const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(q1, _mm256_loadu_si256((const __m256i *)(y + 32))), scale_pair(s[2], s[3]));
            const __m256i p2 = _mm256_madd_epi16(_mm256_maddubs_epi16(q2, _mm256_loadu_si256((const __m256i *)(y + 64))), scale_pair(s[4], s[5]));
            const __m256i p3 = _mm256_madd_epi16(_mm256_maddubs_epi16(q3, _mm256_loadu_si256((const __m256i *)(y + 96))), scale_pair(s[6], s[7]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(_mm256_add_epi32(p0, p1), _mm256_add_epi32(p2, p3)));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps8(acc);
}

/* ------------------------------------------------- activation quantizers */

static inline float amax_ps32(const float *x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_andnot_ps(sign, _mm256_loadu_ps(x));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8)));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 16)));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 24)));
    __m128 r = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    r = _mm_max_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/* round-half-even(x*mul) for 32 floats -> 4 x 8 int32 */
static inline void round32(const float *x, __m256 mul, __m256i q[4]) {
    for (int k = 0; k < 4; k++) {
        const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), mul);
        q[k] = _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
}

/* 4 x 8 int32 -> 32 saturated int8 in element order */
static inline __m256i pack32(const __m256i q[4]) {
    const __m256i a = _mm256_packs_epi32(q[0], q[1]);
    const __m256i b = _mm256_packs_epi32(q[2], q[3]);
    const __m256i c = _mm256_packs_epi16(a, b);
    return _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static void act_q8_0_avx2(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        const float amax = amax_ps32(x);
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        __m256i q[4];
        round32(x, _mm256_set1_ps(id), q);
        _mm256_storeu_si256((__m256i *)y[i].qs, pack32(q));
    }
}

static void act_q8_1_avx2(const float *x, void *vy, int64_t n) {
    block_q8_1 *y = vy;
    for (int64_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        const float amax = amax_ps32(x);
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        __m256i q[4];
        round32(x, _mm256_set1_ps(id), q);
        const __m256i packed = pack32(q);
        _mm256_storeu_si256((__m256i *)y[i].qs, packed);
        /* sum of the stored (saturated) values, as the reference does */
        const int sum = hsum_i32_8(dot_us8(_mm256_set1_epi8(1), packed));
        y[i].s = _cvtss_sh(d * (float)sum, _MM_FROUND_TO_NEAREST_INT);
    }
}

static void act_q8_K_avx2(const float *x, void *vy, int64_t n) {
    block_q8_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        const __m256 sign = _mm256_set1_ps(-0.0f);
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < QK_K; j += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
        __m128 r = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
        r = _mm_max_ps(r, _mm_movehl_ps(r, r));
        r = _mm_max_ss(r, _mm_movehdup_ps(r));
        const float amax = _mm_cvtss_f32(r);
        if (!amax) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        /* the signed value of the first element reaching amax */
        float max = 0;
        const __m256 va = _mm256_set1_ps(amax);
        for (int j = 0; j < QK_K; j += 8) {
            const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)), va, _CMP_EQ_OQ));
            if (mask) {
                max = x[j + __builtin_ctz((unsigned)mask)];
                break;
            }
        }
        const float iscale = -127.f / max;
        const __m256 mul = _mm256_set1_ps(iscale);
        const __m256i ones = _mm256_set1_epi8(1);
        for (int j = 0; j < QK_K; j += 32) {
            __m256i q[4];
            round32(x + j, mul, q);
            const __m256i packed = pack32(q);
            _mm256_storeu_si256((__m256i *)(y[i].qs + j), packed);
            /* two bsums: sums of bytes 0..15 and 16..31 */
            __m256i s = dot_us8(ones, packed);
            s = _mm256_hadd_epi32(s, s);
            s = _mm256_hadd_epi32(s, s);
            y[i].bsums[j / 16] = (int16_t)_mm256_extract_epi32(s, 0);
            y[i].bsums[j / 16 + 1] = (int16_t)_mm256_extract_epi32(s, 4);
        }
        y[i].d = 1 / iscale;
    }
}

static void act_f16_avx2(const float *x, void *vy, int64_t n) {
    duet_fp16 *y = vy;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = duet_fp32_to_fp16_inl(x[i]);
}

/* ggml's bf16 rounding on 8 lanes; NaN -> (bits >> 16) | 64 */
static inline __m256i bf16x8(const float *x) {
    const __m256i u = _mm256_loadu_si256((const __m256i *)x);
    const __m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
    const __m256i nan = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7f800000));
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)), 16);
    const __m256i qn = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
    return _mm256_blendv_epi8(r, qn, nan);
}

static void act_bf16_avx2(const float *x, void *vy, int64_t n) {
    duet_bf16 *y = vy;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i p = _mm256_packus_epi32(bf16x8(x + i), bf16x8(x + i + 8));
        _mm256_storeu_si256((__m256i *)(y + i), _mm256_permute4x64_epi64(p, _MM_SHUFFLE(3, 1, 2, 0)));
    }
    for (; i < n; i++) y[i] = duet_fp32_to_bf16_inl(x[i]);
}

DUET_DEFINE_NXM_FROM_DOT(nxm_f32_avx2, dot_f32_avx2)
DUET_DEFINE_NXM_FROM_DOT(nxm_f16_avx2, dot_f16_avx2)
DUET_DEFINE_NXM_FROM_DOT(nxm_bf16_avx2, dot_bf16_avx2)
DUET_DEFINE_NXM_FROM_DOT(nxm_q4_0_avx2, dot_q4_0_avx2)
DUET_DEFINE_NXM_FROM_DOT(nxm_q4_1_avx2, dot_q4_1_avx2)
DUET_DEFINE_NXM_FROM_DOT(nxm_q5_0_avx2, dot_q5_0_avx2)
DUET_DEFINE_NXM_FROM_DOT(nxm_q5_1_avx2, dot_q5_1_avx2)
DUET_DEFINE_NXM_FROM_DOT(nxm_q8_0_avx2, dot_q8_0_avx2)
DUET_DEFINE_NXM_FROM_DOT(nxm_q4_K_avx2, dot_q4_K_avx2)
DUET_DEFINE_NXM_FROM_DOT(nxm_q5_K_avx2, dot_q5_K_avx2)
DUET_DEFINE_NXM_FROM_DOT(nxm_q6_K_avx2, dot_q6_K_avx2)

void duet_kernels_avx2_init(duet_kernel_table *t) {
#define SET(T, name)                   \
    t->dot[T] = dot_##name##_avx2;     \
    t->nxm[T] = nxm_##name##_avx2;
    SET(DUET_TYPE_F32, f32)
    SET(DUET_TYPE_F16, f16)
    SET(DUET_TYPE_BF16, bf16)
    SET(DUET_TYPE_Q4_0, q4_0)
    SET(DUET_TYPE_Q4_1, q4_1)
    SET(DUET_TYPE_Q5_0, q5_0)
    SET(DUET_TYPE_Q5_1, q5_1)
    SET(DUET_TYPE_Q8_0, q8_0)
    SET(DUET_TYPE_Q4_K, q4_K)
    SET(DUET_TYPE_Q5_K, q5_K)
    SET(DUET_TYPE_Q6_K, q6_K)
#undef SET
    t->act[DUET_TYPE_F16] = act_f16_avx2;
    t->act[DUET_TYPE_BF16] = act_bf16_avx2;
    t->act[DUET_TYPE_Q8_0] = act_q8_0_avx2;
    t->act[DUET_TYPE_Q8_1] = act_q8_1_avx2;
    t->act[DUET_TYPE_Q8_K] = act_q8_K_avx2;
}

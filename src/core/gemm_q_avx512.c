/* AVX-512 VNNI kernels of the quantized GEMM (layouts in core/gemm_q.h).
 *
 * A tile of 16 weight rows is repacked once per call into unsigned bytes,
 * 4 consecutive values of one row per 32-bit lane, so that one vpdpbusd
 * multiplies 16 rows by 4 values of one token broadcast from the activation
 * panel. The weights' unsigned offset is undone by integer seeds computed from
 * the activations, so every integer sum is exact.
 *
 * The float side follows, lane for lane, the arithmetic of the llama.cpp CPU
 * kernel that multiplies that type, so that logits match llama.cpp bit for
 * bit rather than within rounding noise (a last-ulp difference can flip the
 * rounding of a quantized activation downstream):
 *   Q8_0, Q4_1, Q5_0, Q5_1, Q5_K (ggml's AVX2 vec_dot / llamafile's tinyBLAS):
 *       8 float partial sums per (row, token), one per group of 4 values of
 *       each block: acc[g] = fma(int sum of group g, d_w * d_x, acc[g]),
 *       combined at the end as ((a0 + a2) + (a1 + a3)), a_i = acc[i] + acc[i+4];
 *       Q4_1/Q5_1 add the min term chain summs = fma(m_w, s_x, summs);
 *       Q5_K: acc[g] = fma(d_w * d_x, sum_j sc_j * (group g of sub-block j),
 *       acc[g]) per super-block, minus the chain fma(dmin_w * d_x, mins . bsums);
 *   Q6_K (ggml's AVX2 vec_dot): the same 8 partial sums with 16-value
 *       sub-block scales and q - 32;
 *   Q4_0, Q4_K (llama.cpp's repacked GEMMs): per block / pair of sub-blocks
 *       the whole int sum, acc = fma(sum, d_w * d_x, acc) (Q4_K: minus the
 *       chain of the mins). */
#include <immintrin.h>
#include <string.h>

#include "core/gemm_q.h"
#include "core/quant_blocks.h"
#include "core/scratch.h"

/* ---- repacking ---- */

/* Packed tile layouts (per block / super-block, QG_ROWS = 16 lanes):
 * 32-blocks: q [8 k-groups][16][4] (512 B), dw f32[16], mw f32[16]  -> 640 B
 * Q4_K/Q5_K: q [64][16][4] (4096 B), sc i32 [8][16], min pairs i16 [4][16][2],
 *            d f32[16], dmin f32[16]                                 -> 4992 B
 * Q6_K:      q [64][16][4] (4096 B), sc i32 [16][16], d f32[16]      -> 5184 B
 * (q of a K-quant: group g of values 4g..4g+3 of the super-block, in order) */
#define T32_STRIDE 640
#define T32_DW 512
#define T32_MW 576
#define TK_SC 4096
#define TK4_PAIRS (TK_SC + 8 * 64)
#define TK4_D (TK4_PAIRS + 4 * 64)
#define TK4_DMIN (TK4_D + 64)
#define TK4_STRIDE (TK4_DMIN + 64)
#define TK6_D (TK_SC + 16 * 64)
#define TK6_STRIDE (TK6_D + 64)

static size_t tile_bytes(duet_type wt, int64_t n_in) {
    switch (wt) {
    case DUET_TYPE_Q4_K:
    case DUET_TYPE_Q5_K: return (size_t)(n_in / QK_K) * TK4_STRIDE;
    case DUET_TYPE_Q6_K: return (size_t)(n_in / QK_K) * TK6_STRIDE;
    default: return (size_t)(n_in / 32) * T32_STRIDE;
    }
}

/* v[r] = 32 bytes of row r -> dst = 8 zmm, zmm g lane r = bytes 4g..4g+3 of v[r]:
 * an 8 x 8 dword transpose run on both 256-bit halves at once (rows r and r+8). */
static inline void transpose_store(uint8_t *dst, const __m256i v[16]) {
    __m512i z[8], t[8], u[8];
    for (int i = 0; i < 8; i++) z[i] = _mm512_inserti64x4(_mm512_castsi256_si512(v[i]), v[i + 8], 1);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_epi32(z[i], z[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(z[i], z[i + 1]);
    }
    for (int h = 0; h < 8; h += 4) { /* rows 0-3, then rows 4-7 */
        u[h + 0] = _mm512_unpacklo_epi64(t[h + 0], t[h + 2]); /* cols 0 / 4 */
        u[h + 1] = _mm512_unpackhi_epi64(t[h + 0], t[h + 2]); /* cols 1 / 5 */
        u[h + 2] = _mm512_unpacklo_epi64(t[h + 1], t[h + 3]); /* cols 2 / 6 */
        u[h + 3] = _mm512_unpackhi_epi64(t[h + 1], t[h + 3]); /* cols 3 / 7 */
    }
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    for (int c = 0; c < 4; c++) {
        _mm512_store_si512((void *)(dst + 64 * c), _mm512_permutex2var_epi64(u[c], lo, u[c + 4]));
        _mm512_store_si512((void *)(dst + 64 * (c + 4)), _mm512_permutex2var_epi64(u[c], hi, u[c + 4]));
    }
}

static inline __m256i nibbles(const uint8_t *qs) { /* 16 bytes -> lo nibbles, then hi nibbles */
    const __m128i q = _mm_loadu_si128((const __m128i *)qs);
    const __m128i m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
}

static inline __m256i fifth_bits(const uint8_t *qh) { /* bit j of qh -> 16 in byte j */
    uint32_t bits;
    memcpy(&bits, qh, 4);
    return _mm256_maskz_mov_epi8((__mmask32)bits, _mm256_set1_epi8(16));
}

/* One 32-element block of row r (or zeros past the last row). */
static inline void decode32(duet_type wt, const char *blk, __m256i *q, float *d, float *mn) {
    switch (wt) {
    case DUET_TYPE_Q4_0: {
        const block_q4_0 *b = (const block_q4_0 *)blk;
        *q = nibbles(b->qs);
        *d = _cvtsh_ss(b->d);
        *mn = 0.0f;
        break;
    }
    case DUET_TYPE_Q4_1: {
        const block_q4_1 *b = (const block_q4_1 *)blk;
        *q = nibbles(b->qs);
        *d = _cvtsh_ss(b->d);
        *mn = _cvtsh_ss(b->m);
        break;
    }
    case DUET_TYPE_Q5_0: {
        const block_q5_0 *b = (const block_q5_0 *)blk;
        *q = _mm256_or_si256(nibbles(b->qs), fifth_bits(b->qh));
        *d = _cvtsh_ss(b->d);
        *mn = 0.0f;
        break;
    }
    case DUET_TYPE_Q5_1: {
        const block_q5_1 *b = (const block_q5_1 *)blk;
        *q = _mm256_or_si256(nibbles(b->qs), fifth_bits(b->qh));
        *d = _cvtsh_ss(b->d);
        *mn = _cvtsh_ss(b->m);
        break;
    }
    default: { /* Q8_0: signed -> unsigned by flipping the sign bit (+128) */
        const block_q8_0 *b = (const block_q8_0 *)blk;
        *q = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)b->qs), _mm256_set1_epi8((char)0x80));
        *d = _cvtsh_ss(b->d);
        *mn = 0.0f;
        break;
    }
    }
}

static void pack_tile_32(duet_type wt, const char *w, size_t w_row, int rows, int64_t nb,
                         uint8_t *dst) {
    const size_t bsz = wt == DUET_TYPE_Q4_0   ? sizeof(block_q4_0)
                       : wt == DUET_TYPE_Q4_1 ? sizeof(block_q4_1)
                       : wt == DUET_TYPE_Q5_0 ? sizeof(block_q5_0)
                       : wt == DUET_TYPE_Q5_1 ? sizeof(block_q5_1)
                                              : sizeof(block_q8_0);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = dst + b * T32_STRIDE;
        __m256i v[QG_ROWS];
        float d[QG_ROWS], mn[QG_ROWS];
        for (int r = 0; r < QG_ROWS; r++) {
            if (r < rows) {
                decode32(wt, w + (size_t)r * w_row + (size_t)b * bsz, &v[r], &d[r], &mn[r]);
            } else {
                v[r] = _mm256_setzero_si256();
                d[r] = mn[r] = 0.0f;
            }
        }
        transpose_store(blk, v);
        memcpy(blk + T32_DW, d, sizeof d);
        memcpy(blk + T32_MW, mn, sizeof mn);
    }
}

/* Sub-block u (0..7, 32 elements) of a Q4_K / Q5_K super-block, unsigned. */
static inline __m256i q4k_sub(const block_q4_K *b, int u) {
    const __m256i q = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * (u / 2)));
    const __m256i m = _mm256_set1_epi8(0x0F);
    return u & 1 ? _mm256_and_si256(_mm256_srli_epi16(q, 4), m) : _mm256_and_si256(q, m);
}

static inline __m256i q5k_sub(const block_q5_K *b, int u) {
    const __m256i q = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * (u / 2)));
    const __m256i m = _mm256_set1_epi8(0x0F);
    const __m256i lo = u & 1 ? _mm256_and_si256(_mm256_srli_epi16(q, 4), m) : _mm256_and_si256(q, m);
    const __m256i qh = _mm256_loadu_si256((const __m256i *)b->qh);
    const __mmask32 hb = _mm256_test_epi8_mask(qh, _mm256_set1_epi8((char)(1u << u)));
    return _mm256_or_si256(lo, _mm256_maskz_mov_epi8(hb, _mm256_set1_epi8(16)));
}

/* 32-element group u (0..7) of a Q6_K super-block: values q (0..63), unsigned. */
static inline __m256i q6k_sub(const block_q6_K *b, int u) {
    const int h = u / 4, p = u % 4;
    const __m256i ql = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32 * (p & 1)));
    const __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
    const __m256i lo = p < 2 ? _mm256_and_si256(ql, m4) : _mm256_and_si256(_mm256_srli_epi16(ql, 4), m4);
    __m256i hi; /* bits 2p, 2p+1 of qh moved to bits 4, 5 */
    switch (p) {
    case 0: hi = _mm256_slli_epi16(qh, 4); break;
    case 1: hi = _mm256_slli_epi16(qh, 2); break;
    case 2: hi = qh; break;
    default: hi = _mm256_srli_epi16(qh, 2); break;
    }
    return _mm256_or_si256(lo, _mm256_and_si256(hi, m2));
}

static void pack_tile_k(duet_type wt, const char *w, size_t w_row, int rows, int64_t nsb,
                        uint8_t *dst) {
    const size_t bsz = wt == DUET_TYPE_Q4_K   ? sizeof(block_q4_K)
                       : wt == DUET_TYPE_Q5_K ? sizeof(block_q5_K)
                                              : sizeof(block_q6_K);
    const size_t stride = wt == DUET_TYPE_Q6_K ? TK6_STRIDE : TK4_STRIDE;
    for (int64_t s = 0; s < nsb; s++) {
        uint8_t *sb = dst + s * stride;
        const char *src[QG_ROWS];
        for (int r = 0; r < QG_ROWS; r++) src[r] = r < rows ? w + (size_t)r * w_row + (size_t)s * bsz : NULL;
        for (int u = 0; u < 8; u++) {
            __m256i v[QG_ROWS];
            for (int r = 0; r < QG_ROWS; r++) {
                if (!src[r]) v[r] = _mm256_setzero_si256();
                else if (wt == DUET_TYPE_Q4_K) v[r] = q4k_sub((const block_q4_K *)src[r], u);
                else if (wt == DUET_TYPE_Q5_K) v[r] = q5k_sub((const block_q5_K *)src[r], u);
                else v[r] = q6k_sub((const block_q6_K *)src[r], u);
            }
            transpose_store(sb + 512 * u, v);
        }
        int32_t sc[16][QG_ROWS];
        int16_t pairs[8][QG_ROWS][2];
        float d[QG_ROWS], dmin[QG_ROWS];
        memset(sc, 0, sizeof sc);
        memset(pairs, 0, sizeof pairs);
        for (int r = 0; r < QG_ROWS; r++) {
            d[r] = dmin[r] = 0.0f;
            if (!src[r]) continue;
            if (wt == DUET_TYPE_Q6_K) {
                const block_q6_K *b = (const block_q6_K *)src[r];
                for (int j = 0; j < 16; j++) {
                    sc[j][r] = b->scales[j];
                }
                d[r] = _cvtsh_ss(b->d);
            } else {
                /* Q4_K and Q5_K share the header: d, dmin, scales */
                const block_q4_K *b = (const block_q4_K *)src[r];
                for (int j = 0; j < 8; j++) {
                    uint8_t scv, mv;
                    duet_get_scale_min_k4(j, b->scales, &scv, &mv);
                    sc[j][r] = scv;
                    pairs[j / 2][r][j % 2] = mv;
                }
                d[r] = _cvtsh_ss(b->d);
                dmin[r] = _cvtsh_ss(b->dmin);
            }
        }
        if (wt == DUET_TYPE_Q6_K) {
            memcpy(sb + TK_SC, sc, 16 * 64);
            memcpy(sb + TK6_D, d, 64);
        } else {
            memcpy(sb + TK_SC, sc, 8 * 64);
            memcpy(sb + TK4_PAIRS, pairs, 4 * 64);
            memcpy(sb + TK4_D, d, 64);
            memcpy(sb + TK4_DMIN, dmin, 64);
        }
    }
}

/* ---- kernels: 16 weight rows x QG_T tokens ---- */

static inline __m512i bcast32(const char *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

static inline __m512 bcastf(const char *p) {
    float v;
    memcpy(&v, p, 4);
    return _mm512_set1_ps(v);
}

/* 4 k-groups (16 values) of 16 rows against QG_T tokens: a[t] += dot. */
#define DOT_QUAD(a, wq, xq, xstride)                                                       \
    do {                                                                                   \
        const __m512i w0_ = _mm512_load_si512((const void *)(wq));                         \
        const __m512i w1_ = _mm512_load_si512((const void *)((wq) + 64));                  \
        const __m512i w2_ = _mm512_load_si512((const void *)((wq) + 128));                 \
        const __m512i w3_ = _mm512_load_si512((const void *)((wq) + 192));                 \
        _Pragma("GCC unroll 8") for (int t_ = 0; t_ < QG_T; t_++) {                        \
            const char *x_ = (xq) + t_ * (xstride);                                        \
            a[t_] = _mm512_dpbusd_epi32(a[t_], w0_, bcast32(x_));                          \
            a[t_] = _mm512_dpbusd_epi32(a[t_], w1_, bcast32(x_ + 4));                      \
            a[t_] = _mm512_dpbusd_epi32(a[t_], w2_, bcast32(x_ + 8));                      \
            a[t_] = _mm512_dpbusd_epi32(a[t_], w3_, bcast32(x_ + 12));                     \
        }                                                                                  \
    } while (0)

/* Q4_0: per block the whole integer sum (seeded with corr), then
 * acc = fma(sum, d_w * d_x, acc). */
static void kernel_q4_0(const uint8_t *tile, const char *xg, int64_t nb, __m512 f[QG_T]) {
    for (int t = 0; t < QG_T; t++) f[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = tile + b * T32_STRIDE;
        const char *xb = xg + b * QG_X32_STRIDE;
        __m512i a[QG_T];
#pragma GCC unroll 8
        for (int t = 0; t < QG_T; t++) a[t] = bcast32(xb + QG_X32_CORR + 4 * t);
        DOT_QUAD(a, wb, xb + QG_X32_QS, 32);
        DOT_QUAD(a, wb + 256, xb + QG_X32_QS + 16, 32);
        const __m512 dw = _mm512_load_ps((const float *)(wb + T32_DW));
#pragma GCC unroll 8
        for (int t = 0; t < QG_T; t++)
            f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[t]), _mm512_mul_ps(dw, bcastf(xb + QG_X32_D + 4 * t)), f[t]);
    }
}

/* ((a0 + a2) + (a1 + a3)), a_i = acc[i] + acc[i+4]: ggml's hsum of 8 lanes. */
static inline __m512 hsum8_lanes(const __m512 acc[8]) {
    __m512 a[4];
    for (int i = 0; i < 4; i++) a[i] = _mm512_add_ps(acc[i], acc[i + 4]);
    return _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]));
}

/* Q8_0, Q4_1, Q5_0, Q5_1: 8 partial sums per (row, token); tokens in pairs. */
static void kernel_32_lanes(const uint8_t *tile, const char *xg, int64_t nb, int has_min, int seeded,
                            __m512 f[QG_T]) {
    for (int tp = 0; tp < QG_T; tp += 2) {
        __m512 acc[2][8], sm[2];
        for (int u = 0; u < 2; u++) {
            sm[u] = _mm512_setzero_ps();
            for (int g = 0; g < 8; g++) acc[u][g] = _mm512_setzero_ps();
        }
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *wb = tile + b * T32_STRIDE;
            const char *xb = xg + b * QG_X32_STRIDE;
            const __m512 dw = _mm512_load_ps((const float *)(wb + T32_DW));
            for (int u = 0; u < 2; u++) {
                const int t = tp + u;
                const __m512 sc = _mm512_mul_ps(dw, bcastf(xb + QG_X32_D + 4 * t));
#pragma GCC unroll 8
                for (int g = 0; g < 8; g++) {
                    const __m512i seed = seeded ? bcast32(xb + QG_X32_SEED + 32 * t + 4 * g) : _mm512_setzero_si512();
                    const __m512i d = _mm512_dpbusd_epi32(seed, _mm512_load_si512((const void *)(wb + 64 * g)),
                                                          bcast32(xb + QG_X32_QS + 32 * t + 4 * g));
                    acc[u][g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), sc, acc[u][g]);
                }
                if (has_min)
                    sm[u] = _mm512_fmadd_ps(_mm512_load_ps((const float *)(wb + T32_MW)), bcastf(xb + QG_X32_S + 4 * t),
                                            sm[u]);
            }
        }
        for (int u = 0; u < 2; u++) {
            f[tp + u] = hsum8_lanes(acc[u]);
            if (has_min) f[tp + u] = _mm512_add_ps(f[tp + u], sm[u]);
        }
    }
}

/* Q5_K: 8 partial sums per (row, token), one token at a time. Each dpbusd lane
 * holds 4 products (|lane| < 2^15), so vpdpwssd with (scale, 0) int16 pairs
 * applies the sub-block scale exactly. */
static void kernel_q5k_lanes(const uint8_t *tile, const char *xg, int64_t nsb, __m512 f[QG_T]) {
    for (int t = 0; t < QG_T; t++) {
        __m512 acc[8], accm = _mm512_setzero_ps();
        for (int g = 0; g < 8; g++) acc[g] = _mm512_setzero_ps();
        for (int64_t s = 0; s < nsb; s++) {
            const uint8_t *ws = tile + s * TK4_STRIDE;
            const char *xs = xg + s * QG_XK_STRIDE;
            const char *xq = xs + QG_XK_QS + 256 * t;
            __m512i sumi[8];
            for (int g = 0; g < 8; g++) sumi[g] = _mm512_setzero_si512();
            for (int j = 0; j < 8; j++) {
                const __m512i sc = _mm512_load_si512((const void *)(ws + TK_SC + 64 * j));
#pragma GCC unroll 8
                for (int g = 0; g < 8; g++) {
                    const __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                                          _mm512_load_si512((const void *)(ws + 512 * j + 64 * g)),
                                                          bcast32(xq + 32 * j + 4 * g));
                    sumi[g] = _mm512_dpwssd_epi32(sumi[g], d, sc);
                }
            }
            const __m512 dx = bcastf(xs + QG_XK_D + 4 * t);
            const __m512 d = _mm512_mul_ps(_mm512_load_ps((const float *)(ws + TK4_D)), dx);
            for (int g = 0; g < 8; g++) acc[g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[g]), d, acc[g]);
            __m512i mn = _mm512_setzero_si512();
            for (int p = 0; p < 4; p++)
                mn = _mm512_dpwssd_epi32(mn, _mm512_load_si512((const void *)(ws + TK4_PAIRS + 64 * p)),
                                         bcast32(xs + QG_XK_BS32 + 16 * t + 4 * p));
            const __m512 dmin = _mm512_mul_ps(_mm512_load_ps((const float *)(ws + TK4_DMIN)), dx);
            accm = _mm512_fmadd_ps(dmin, _mm512_cvtepi32_ps(mn), accm);
        }
        f[t] = _mm512_sub_ps(hsum8_lanes(acc), accm);
    }
}

/* Q4_K (llama.cpp's repacked q4_K GEMM): per pair of sub-blocks the whole
 * integer sums, acc = fma(sum, d_w*d_x, acc), accm = fma(mins . bsums of the
 * pair, dmin_w*d_x, accm); result acc - accm. */
static void kernel_q4k(const uint8_t *tile, const char *xg, int64_t nsb, __m512 f[QG_T]) {
    __m512 acc[QG_T], accm[QG_T];
    for (int t = 0; t < QG_T; t++) acc[t] = accm[t] = _mm512_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const uint8_t *ws = tile + s * TK4_STRIDE;
        const char *xs = xg + s * QG_XK_STRIDE;
        const __m512 d = _mm512_load_ps((const float *)(ws + TK4_D));
        const __m512 dmin = _mm512_load_ps((const float *)(ws + TK4_DMIN));
        for (int p = 0; p < 4; p++) {
            __m512i isum[QG_T];
            for (int t = 0; t < QG_T; t++) isum[t] = _mm512_setzero_si512();
            for (int j = 2 * p; j < 2 * p + 2; j++) {
                __m512i a[QG_T];
#pragma GCC unroll 8
                for (int t = 0; t < QG_T; t++) a[t] = _mm512_setzero_si512();
                DOT_QUAD(a, ws + 512 * j, xs + QG_XK_QS + 32 * j, 256);
                DOT_QUAD(a, ws + 512 * j + 256, xs + QG_XK_QS + 32 * j + 16, 256);
                const __m512i sc = _mm512_load_si512((const void *)(ws + TK_SC + 64 * j));
#pragma GCC unroll 8
                for (int t = 0; t < QG_T; t++) isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(a[t], sc));
            }
            const __m512i mins = _mm512_load_si512((const void *)(ws + TK4_PAIRS + 64 * p));
#pragma GCC unroll 8
            for (int t = 0; t < QG_T; t++) {
                const __m512 dx = bcastf(xs + QG_XK_D + 4 * t);
                const __m512i mn = _mm512_dpwssd_epi32(_mm512_setzero_si512(), mins, bcast32(xs + QG_XK_BS32 + 16 * t + 4 * p));
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(d, dx), acc[t]);
                accm[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(mn), _mm512_mul_ps(dmin, dx), accm[t]);
            }
        }
    }
    for (int t = 0; t < QG_T; t++) f[t] = _mm512_sub_ps(acc[t], accm[t]);
}

/* Q6_K (ggml's AVX2 vec_dot): 8 partial sums per (row, token), lane g holding
 * values 4g..4g+3 of each 32-value chunk times its 16-value sub-block scale,
 * with q - 32 (seeded); acc[g] = fma(d_w*d_x, sum, acc[g]) per super-block. */
static void kernel_q6k_lanes(const uint8_t *tile, const char *xg, int64_t nsb, __m512 f[QG_T]) {
    const __m512i lo16 = _mm512_set1_epi32(0xFFFF);
    for (int t = 0; t < QG_T; t++) {
        __m512 acc[8];
        for (int g = 0; g < 8; g++) acc[g] = _mm512_setzero_ps();
        for (int64_t s = 0; s < nsb; s++) {
            const uint8_t *ws = tile + s * TK6_STRIDE;
            const char *xs = xg + s * QG_XK_STRIDE;
            const char *xq = xs + QG_XK_QS + 256 * t, *seed = xs + QG_XK_SEED + 256 * t;
            __m512i sumi[8];
            for (int g = 0; g < 8; g++) sumi[g] = _mm512_setzero_si512();
            for (int c = 0; c < 8; c++) {
                /* (scale, 0) int16 pairs of the chunk's two sub-blocks */
                const __m512i sc0 = _mm512_and_si512(_mm512_load_si512((const void *)(ws + TK_SC + 128 * c)), lo16);
                const __m512i sc1 = _mm512_and_si512(_mm512_load_si512((const void *)(ws + TK_SC + 128 * c + 64)), lo16);
#pragma GCC unroll 8
                for (int g = 0; g < 8; g++) {
                    const __m512i d = _mm512_dpbusd_epi32(bcast32(seed + 32 * c + 4 * g),
                                                          _mm512_load_si512((const void *)(ws + 512 * c + 64 * g)),
                                                          bcast32(xq + 32 * c + 4 * g));
                    sumi[g] = _mm512_dpwssd_epi32(sumi[g], d, g < 4 ? sc0 : sc1);
                }
            }
            const __m512 d = _mm512_mul_ps(_mm512_load_ps((const float *)(ws + TK6_D)), bcastf(xs + QG_XK_D + 4 * t));
            for (int g = 0; g < 8; g++) acc[g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[g]), d, acc[g]);
        }
        f[t] = hsum8_lanes(acc);
    }
}

void duet_qgemm_task_avx512(void *vjob, int ith, int nth) {
    duet_qgemm_job *j = vjob;
    const duet_type wt = j->wt;
    const int is_k = wt == DUET_TYPE_Q4_K || wt == DUET_TYPE_Q5_K || wt == DUET_TYPE_Q6_K;
    const int has_min = wt == DUET_TYPE_Q4_1 || wt == DUET_TYPE_Q5_1;
    const int64_t nb = is_k ? j->n_in / QK_K : j->n_in / 32;
    uint8_t *tile = duet_scratch(DUET_SCRATCH_PACK_W, tile_bytes(wt, j->n_in));
    if (!tile) return;
    const int64_t n_groups = (j->m + QG_T - 1) / QG_T;
    for (;;) {
        const int64_t ti = atomic_fetch_add_explicit(&j->next_tile, 1, memory_order_relaxed);
        if (ti >= j->n_tiles) break;
        const int64_t r0 = ti * QG_ROWS;
        const int rows = (int)(j->n_out - r0 < QG_ROWS ? j->n_out - r0 : QG_ROWS);
        const char *wrow = j->w + (size_t)r0 * j->w_row;
        if (is_k) pack_tile_k(wt, wrow, j->w_row, rows, nb, tile);
        else pack_tile_32(wt, wrow, j->w_row, rows, nb, tile);
        const __mmask16 mask = (__mmask16)((1u << rows) - 1u);
        for (int64_t g = 0; g < n_groups; g++) {
            const char *xg = j->xpanel + (size_t)g * j->group_stride;
            __m512 f[QG_T];
            switch (wt) {
            case DUET_TYPE_Q6_K: kernel_q6k_lanes(tile, xg, nb, f); break;
            case DUET_TYPE_Q4_K: kernel_q4k(tile, xg, nb, f); break;
            case DUET_TYPE_Q5_K: kernel_q5k_lanes(tile, xg, nb, f); break;
            case DUET_TYPE_Q4_0: kernel_q4_0(tile, xg, nb, f); break;
            default: kernel_32_lanes(tile, xg, nb, has_min, wt == DUET_TYPE_Q8_0 || wt == DUET_TYPE_Q5_0, f); break;
            }
            const int nt = (int)(j->m - g * QG_T < QG_T ? j->m - g * QG_T : QG_T);
            for (int t = 0; t < nt; t++)
                _mm512_mask_storeu_ps(j->y + (g * QG_T + t) * j->n_out + r0, mask, f[t]);
        }
    }
}

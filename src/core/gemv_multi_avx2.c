/* Decode-consistent GEMV of several tokens at once, AVX2 + FMA + F16C (this
 * file is compiled with -mavx2 -mfma -mf16c; matmul.c calls it only after the
 * run-time CPU check). See core/gemv_multi.h for the contract: every result
 * is bit for bit the AVX2 vec_dot (vecdot_avx2.c: dot_f32/f16/bf16_avx2) of
 * its row and token.
 *
 * Those dots keep four accumulators: a_k gets the 8 elements at 8k.. of every
 * 32-element step, then a_0 the 8-element tail steps, each by one fma of the
 * widened weights and activations (f16/bf16 widen exactly to f32, so the
 * activations are widened once per matmul and the fma sees the same
 * operands). An accumulator's chain depends only on its own elements, so a
 * tile computes the four chains one after the other ("passes" k = 0..3, k = 0
 * also taking the tail), which leaves room in the 16 ymm registers for one
 * accumulator per (row, token) of a 2-row x 6-token tile: per 8 elements two
 * weight loads and widenings and six activation loads feed twelve fmas,
 * where the one-token dot widens two vectors per fma. The passes touch each
 * weight cache line four times, from L1. Groups of 1 to 3 tokens take two
 * passes of two accumulators each instead (2 x 2 x T chains in flight rather
 * than 2 x T, which would wait on the fma latency). The chains are then
 * reduced as the dot does: ((a0 + a1) + (a2 + a3)), the 8 lanes (hsum_ps8),
 * and the scalar remainder (n % 8 elements) added in double.
 *
 * Order: a thread's chunk of rows is walked once per group of tokens, so the
 * group's activations (at most 6 x 4 x n bytes, rows padded apart so that
 * they do not share L1 sets) stay in L1 and the chunk's rows in L2 after the
 * first group has brought them from memory. Up to 6 tokens form one group
 * (the weights, streamed from memory for short verification blocks, are read
 * once); more are split in groups of at most 4, as evenly as possible: the
 * 2x5 and 2x6 tiles run 11-13% slower per fma than 2x4 at n = 384 once the
 * rows are in L2 (m = 6, 12, 16; fastest of 60 side by side; no gain at
 * n = 1024), while a 5-token block of the shipped llm at 2 threads cost ~7%
 * more as 2 + 3 than as one group (bench_speculative --costs-only).
 *
 * On the 2-core AVX2 EPYC (Zen 3) this runs at about 0.22 ns per 8-wide fma
 * at n = 384 and 0.20 at n = 1024 for 8 to 16 tokens (0.17 is the core's fma
 * peak; the packed sgemm reaches ~0.25 here). */
#include <immintrin.h>

#include "core/gemv_multi.h"
#include "core/quant_blocks.h"

#define T_MAX DUET_GEMV_MULTI_T
#define R_MAX 2

/* Bytes ahead of the row pair being read that the first token group
 * prefetches (as gemv_task does for the one-token GEMV). */
#define PF_DIST 4096

int duet_gemv_multi_supported(duet_type wt) {
    return wt == DUET_TYPE_F32 || wt == DUET_TYPE_F16 || wt == DUET_TYPE_BF16 || wt == DUET_TYPE_Q8_0;
}

/* vecdot_avx2.c's hsum_ps8, operation for operation. */
static inline float hsum_ps8(__m256 v) {
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/* 8 weights at element i of row w, widened to f32 (wt is a constant in every
 * instantiation, so the switch folds away). */
static inline __attribute__((always_inline)) __m256 load_w8(duet_type wt, const void *w, int64_t i) {
    switch (wt) {
    case DUET_TYPE_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const duet_fp16 *)w + i)));
    case DUET_TYPE_BF16: {
        const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const duet_bf16 *)w + i)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    }
    default:
        return _mm256_loadu_ps((const float *)w + i);
    }
}

static inline __attribute__((always_inline)) float load_w1(duet_type wt, const void *w, int64_t i) {
    switch (wt) {
    case DUET_TYPE_F16: return _cvtsh_ss(((const duet_fp16 *)w)[i]);
    case DUET_TYPE_BF16: return duet_bf16_to_fp32_inl(((const duet_bf16 *)w)[i]);
    default: return ((const float *)w)[i];
    }
}

/* y[t * ys + r] for r < R, t < T: rows w + r * w_row, tokens x + t * xs.
 * tile4: one accumulator per (row, token) in each of four passes (T >= 4:
 * 8 to 12 independent fma chains); tile2: two passes of two accumulators
 * each (T <= 3: 2 x 2 x T chains, where tile4 would wait on fma latency). */
static inline __attribute__((always_inline)) void tile4(const duet_type wt, const int R, const int T, int64_t n,
                                                      const char *w, size_t w_row, const float *x, int64_t xs,
                                                      float *y, int64_t ys) {
    __m256 part[4][R_MAX][T_MAX];
    const int64_t n32 = n / 32 * 32, n8 = n / 8 * 8;
    for (int k = 0; k < 4; k++) {
        __m256 acc[R_MAX][T_MAX];
#pragma GCC unroll 2
        for (int r = 0; r < R; r++)
#pragma GCC unroll 6
            for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
#define STEP(i)                                                                        \
    do {                                                                               \
        __m256 wv[R_MAX];                                                              \
        _Pragma("GCC unroll 2") for (int r = 0; r < R; r++) wv[r] =                    \
            load_w8(wt, w + (size_t)r * w_row, (i));                                   \
        _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) {                          \
            __m256 xv = _mm256_loadu_ps(x + t * xs + (i));                             \
            /* one load for both rows (not one memory operand per fma) */              \
            if (R > 1) __asm__("" : "+x"(xv));                                         \
            _Pragma("GCC unroll 2") for (int r = 0; r < R; r++) acc[r][t] =            \
                _mm256_fmadd_ps(wv[r], xv, acc[r][t]);                                 \
        }                                                                              \
    } while (0)
        for (int64_t i = 8 * k; i < n32; i += 32) STEP(i);
        if (k == 0) /* the 8-element tail steps go to a0 */
            for (int64_t i = n32; i < n8; i += 8) STEP(i);
#undef STEP
#pragma GCC unroll 2
        for (int r = 0; r < R; r++)
#pragma GCC unroll 6
            for (int t = 0; t < T; t++) part[k][r][t] = acc[r][t];
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) {
            const __m256 s01 = _mm256_add_ps(part[0][r][t], part[1][r][t]);
            const __m256 s23 = _mm256_add_ps(part[2][r][t], part[3][r][t]);
            double s = hsum_ps8(_mm256_add_ps(s01, s23));
            const char *wr = w + (size_t)r * w_row;
            const float *xt = x + t * xs;
            for (int64_t i = n8; i < n; i++) s += (double)(load_w1(wt, wr, i) * xt[i]);
            y[t * ys + r] = (float)s;
        }
}

static inline __attribute__((always_inline)) void tile2(const duet_type wt, const int R, const int T, int64_t n,
                                                      const char *w, size_t w_row, const float *x, int64_t xs,
                                                      float *y, int64_t ys) {
    __m256 s01[R_MAX][T_MAX], sum[R_MAX][T_MAX];
    const int64_t n32 = n / 32 * 32, n8 = n / 8 * 8;
    for (int h = 0; h < 2; h++) {
        __m256 a0[R_MAX][T_MAX], a1[R_MAX][T_MAX];
#pragma GCC unroll 2
        for (int r = 0; r < R; r++)
#pragma GCC unroll 6
            for (int t = 0; t < T; t++) a0[r][t] = a1[r][t] = _mm256_setzero_ps();
#define STEP(acc, i)                                                                   \
    do {                                                                               \
        __m256 wv[R_MAX];                                                              \
        _Pragma("GCC unroll 2") for (int r = 0; r < R; r++) wv[r] =                    \
            load_w8(wt, w + (size_t)r * w_row, (i));                                   \
        _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) {                          \
            __m256 xv = _mm256_loadu_ps(x + t * xs + (i));                             \
            if (R > 1) __asm__("" : "+x"(xv));                                         \
            _Pragma("GCC unroll 2") for (int r = 0; r < R; r++) acc[r][t] =            \
                _mm256_fmadd_ps(wv[r], xv, acc[r][t]);                                 \
        }                                                                              \
    } while (0)
        for (int64_t i = 16 * h; i < n32; i += 32) {
            STEP(a0, i);
            STEP(a1, i + 8);
        }
        if (h == 0)
            for (int64_t i = n32; i < n8; i += 8) STEP(a0, i);
#undef STEP
#pragma GCC unroll 2
        for (int r = 0; r < R; r++)
#pragma GCC unroll 6
            for (int t = 0; t < T; t++) {
                if (h == 0) s01[r][t] = _mm256_add_ps(a0[r][t], a1[r][t]);
                else sum[r][t] = _mm256_add_ps(s01[r][t], _mm256_add_ps(a0[r][t], a1[r][t]));
            }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) {
            double s = hsum_ps8(sum[r][t]);
            const char *wr = w + (size_t)r * w_row;
            const float *xt = x + t * xs;
            for (int64_t i = n8; i < n; i++) s += (double)(load_w1(wt, wr, i) * xt[i]);
            y[t * ys + r] = (float)s;
        }
}

typedef void (*tile_fn)(int64_t n, const char *w, size_t w_row, const float *x, int64_t xs, float *y, int64_t ys);

#define TILE(name, wt, R, T)                                                                               \
    static void tile_##name##_##R##x##T(int64_t n, const char *w, size_t w_row, const float *x, int64_t xs, \
                                        float *y, int64_t ys) {                                            \
        if (T <= 3) tile2(wt, R, T, n, w, w_row, x, xs, y, ys);                                          \
        else tile4(wt, R, T, n, w, w_row, x, xs, y, ys);                                                   \
    }
#define TILES(name, wt)                                                                                   \
    TILE(name, wt, 1, 1) TILE(name, wt, 1, 2) TILE(name, wt, 1, 3) TILE(name, wt, 1, 4) TILE(name, wt, 1, 5) \
    TILE(name, wt, 1, 6) TILE(name, wt, 2, 1) TILE(name, wt, 2, 2) TILE(name, wt, 2, 3) TILE(name, wt, 2, 4) \
    TILE(name, wt, 2, 5) TILE(name, wt, 2, 6)                                                              \
    static const tile_fn tiles_##name[R_MAX][T_MAX] = {                                                   \
        {tile_##name##_1x1, tile_##name##_1x2, tile_##name##_1x3, tile_##name##_1x4, tile_##name##_1x5,    \
         tile_##name##_1x6},                                                                              \
        {tile_##name##_2x1, tile_##name##_2x2, tile_##name##_2x3, tile_##name##_2x4, tile_##name##_2x5,    \
         tile_##name##_2x6}};

TILES(f32, DUET_TYPE_F32)
TILES(f16, DUET_TYPE_F16)
TILES(bf16, DUET_TYPE_BF16)

/* ---- Q8_0 ----
 * dot_q8_0_avx2: per block, acc = fma(broadcast(f16(w.d) * f16(x.d)),
 * float(sum of 8 lanes of pairs of pairs of |qw| * sign(qx, qw)), acc); then
 * hsum_ps8(acc). One accumulator per (row, token) already; a tile of one row
 * and up to 8 tokens loads each weight block, its |qw| and its scale once
 * (the activation scales come widened, xd). */
#define TQ_MAX 8

static inline __attribute__((always_inline)) void tile_q8(const int T, int64_t nb, const block_q8_0 *w,
                                                        const char *xq, size_t x_row, const float *xd, int64_t xs,
                                                        float *y, int64_t ys) {
    __m256 acc[TQ_MAX];
    const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ib++) {
        const __m256i qw = _mm256_loadu_si256((const __m256i *)w[ib].qs);
        const __m256i aw = _mm256_sign_epi8(qw, qw);
        const float dw = _cvtsh_ss(w[ib].d);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const block_q8_0 *xb = (const block_q8_0 *)(xq + (size_t)t * x_row) + ib;
            const __m256i qx = _mm256_loadu_si256((const __m256i *)xb->qs);
            const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(qx, qw)), ones);
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xd[t * xs + ib]), _mm256_cvtepi32_ps(p), acc[t]);
        }
    }
    for (int t = 0; t < T; t++) y[t * ys] = hsum_ps8(acc[t]);
}

typedef void (*tile_q8_fn)(int64_t nb, const block_q8_0 *w, const char *xq, size_t x_row, const float *xd,
                           int64_t xs, float *y, int64_t ys);
#define TILE_Q8(T)                                                                                     \
    static void tile_q8_0_##T(int64_t nb, const block_q8_0 *w, const char *xq, size_t x_row,           \
                              const float *xd, int64_t xs, float *y, int64_t ys) {                     \
        tile_q8(T, nb, w, xq, x_row, xd, xs, y, ys);                                                   \
    }
TILE_Q8(1) TILE_Q8(2) TILE_Q8(3) TILE_Q8(4) TILE_Q8(5) TILE_Q8(6) TILE_Q8(7) TILE_Q8(8)
static const tile_q8_fn tiles_q8_0[TQ_MAX] = {tile_q8_0_1, tile_q8_0_2, tile_q8_0_3, tile_q8_0_4,
                                              tile_q8_0_5, tile_q8_0_6, tile_q8_0_7, tile_q8_0_8};

int64_t duet_gemv_multi_stride(duet_type wt, int64_t n) {
    if (wt == DUET_TYPE_Q8_0) n /= QK8_0; /* one scale per block */
    return (n + 7) / 8 * 8 + 8;
}

void duet_gemv_multi_widen_avx2(duet_type wt, const void *xq, float *xf, int64_t m, int64_t n) {
    const int64_t xs = duet_gemv_multi_stride(wt, n);
    for (int64_t t = 0; t < m; t++) {
        float *d = xf + t * xs;
        int64_t i = 0;
        if (wt == DUET_TYPE_Q8_0) {
            const block_q8_0 *s = (const block_q8_0 *)xq + t * (n / QK8_0);
            for (; i < n / QK8_0; i++) d[i] = _cvtsh_ss(s[i].d);
        } else if (wt == DUET_TYPE_F16) {
            const duet_fp16 *s = (const duet_fp16 *)xq + t * n;
            for (; i + 8 <= n; i += 8) _mm256_storeu_ps(d + i, load_w8(DUET_TYPE_F16, s, i));
            for (; i < n; i++) d[i] = load_w1(DUET_TYPE_F16, s, i);
        } else if (wt == DUET_TYPE_BF16) {
            const duet_bf16 *s = (const duet_bf16 *)xq + t * n;
            for (; i + 8 <= n; i += 8) _mm256_storeu_ps(d + i, load_w8(DUET_TYPE_BF16, s, i));
            for (; i < n; i++) d[i] = load_w1(DUET_TYPE_BF16, s, i);
        } else {
            const float *s = (const float *)xq + t * n;
            for (; i < n; i++) d[i] = s[i];
        }
    }
}

/* Q8_0: groups of up to TQ_MAX tokens, one row at a time. */
static void gemv_multi_q8_0(int64_t n, const void *w, size_t w_row, int64_t r0, int64_t r1, const float *xd,
                            const void *xq, size_t x_row, int64_t m, float *y, int64_t n_out) {
    const int64_t xs = duet_gemv_multi_stride(DUET_TYPE_Q8_0, n), groups = (m + TQ_MAX - 1) / TQ_MAX;
    int64_t t0 = 0;
    for (int64_t g = 0; g < groups; g++) {
        const int64_t t1 = m * (g + 1) / groups;
        const tile_q8_fn f = tiles_q8_0[t1 - t0 - 1];
        for (int64_t r = r0; r < r1; r++) {
            const char *wr = (const char *)w + (size_t)r * w_row;
            if (g == 0)
                for (size_t o = 0; o < w_row; o += 64) __builtin_prefetch(wr + PF_DIST + o, 0, 3);
            f(n / QK8_0, (const block_q8_0 *)wr, (const char *)xq + (size_t)t0 * x_row, x_row, xd + t0 * xs, xs,
              y + t0 * n_out + r, n_out);
        }
        t0 = t1;
    }
}

void duet_gemv_multi_avx2(duet_type wt, int64_t n, const void *w, size_t w_row, int64_t r0, int64_t r1,
                          const float *xf, const void *xq, size_t x_row, int64_t m, float *y, int64_t n_out) {
    if (wt == DUET_TYPE_Q8_0) {
        gemv_multi_q8_0(n, w, w_row, r0, r1, xf, xq, x_row, m, y, n_out);
        return;
    }
    const int64_t xs = duet_gemv_multi_stride(wt, n);
    const tile_fn(*tiles)[T_MAX] = wt == DUET_TYPE_F16 ? tiles_f16 : wt == DUET_TYPE_BF16 ? tiles_bf16 : tiles_f32;
    /* up to T_MAX tokens: one group (the chunk's rows are read once); more:
     * groups of at most 4, as even as possible (7 = 3 + 4, 9 = 3 + 3 + 3) */
    const int64_t gmax = m <= T_MAX ? T_MAX : 4;
    const int64_t groups = (m + gmax - 1) / gmax;
    int64_t t0 = 0;
    for (int64_t g = 0; g < groups; g++) {
        const int64_t t1 = m * (g + 1) / groups;
        const int nt = (int)(t1 - t0);
        for (int64_t r = r0; r < r1; r += 2) {
            const int nr = r + 1 < r1 ? 2 : 1;
            const char *wr = (const char *)w + (size_t)r * w_row;
            if (g == 0)
                for (size_t o = 0; o < (size_t)nr * w_row; o += 64) __builtin_prefetch(wr + PF_DIST + o, 0, 3);
            tiles[nr - 1][nt - 1](n, wr, w_row, xf + t0 * xs, xs, y + t0 * n_out + r, n_out);
        }
        t0 = t1;
    }
}

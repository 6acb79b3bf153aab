/* duet_matmul for every weight type, GEMV (m = 1) and GEMM (m >= 2), on 1 and
 * 2 threads and at every SIMD level.
 *
 * Reference: the double-precision sum over the dequantized weight row times
 * the activation row as rounded to the dot type (the quantized activations
 * dequantized too). For Q4_1/Q5_1 llama.cpp uses Q8_1's stored fp16
 * s = d*sum(q) in the min term, so the reference does too: it adds
 * m_b * (s_b - sum of the block's dequantized activations) per block.
 * Each output must be within 1e-5*S + 1e-5*|ref|, S = sum |w_i x_i| (the
 * scale of float rounding in the per-block sums). The GEMM result of token t
 * must equal the GEMV result of that token alone, and vec_dot_ref per
 * (row, token), within the same bound. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/gemm.h"
#include "core/quant_blocks.h"
#include "core/vecdot.h"
#include "duet/kernels.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

static const duet_type k_types[] = {DUET_TYPE_F32,  DUET_TYPE_F16,  DUET_TYPE_BF16, DUET_TYPE_Q8_0,
                                    DUET_TYPE_Q4_0, DUET_TYPE_Q4_1, DUET_TYPE_Q5_0, DUET_TYPE_Q5_1,
                                    DUET_TYPE_Q4_K, DUET_TYPE_Q5_K, DUET_TYPE_Q6_K};
#define N_TYPES (sizeof k_types / sizeof k_types[0])
static const int64_t k_ms[] = {1, 2, 3, 7, 16, 33};

/* Min term of block b of a Q4_1/Q5_1 row (0 for other types). */
static double block_min(duet_type wt, const void *wrow, int64_t b) {
    if (wt == DUET_TYPE_Q4_1) return duet_fp16_to_fp32_inl(((const block_q4_1 *)wrow)[b].m);
    if (wt == DUET_TYPE_Q5_1) return duet_fp16_to_fp32_inl(((const block_q5_1 *)wrow)[b].m);
    return 0.0;
}

typedef struct {
    duet_type wt, dt;
    int64_t n_in, n_out, m;
    size_t w_row, x_row;
    char *w;      /* n_out rows of w_row bytes */
    float *wd;    /* (n_out, n_in) dequantized */
    float *x;     /* (m, n_in) */
    char *xq;     /* m rows in the dot type */
    float *xd;    /* (m, n_in) dequantized dot-type activations */
} problem;

static problem make_problem(duet_type wt, int64_t m, int64_t n_in, int64_t n_out) {
    problem p = {.wt = wt, .n_in = n_in, .n_out = n_out, .m = m};
    const duet_type_traits *tr = duet_type_info(wt);
    cr_assert_not_null(tr);
    p.dt = tr->dot_type;
    p.w_row = duet_row_size(wt, n_in);
    p.x_row = duet_row_size(p.dt, n_in);
    p.w = malloc(p.w_row * (size_t)n_out);
    p.wd = malloc(sizeof(float) * (size_t)(n_out * n_in));
    p.x = malloc(sizeof(float) * (size_t)(m * n_in));
    p.xq = malloc(p.x_row * (size_t)m);
    p.xd = malloc(sizeof(float) * (size_t)(m * n_in));
    cr_assert(p.w && p.wd && p.x && p.xq && p.xd);
    float *row = malloc(sizeof(float) * (size_t)n_in);
    for (int64_t o = 0; o < n_out; o++) {
        /* rows of different magnitudes, some with an offset (exercises the mins) */
        const float scale = 0.05f + 0.02f * (float)(o % 7), shift = (o % 3 == 0) ? 0.3f * scale : 0.0f;
        for (int64_t i = 0; i < n_in; i++) row[i] = scale * frand() + shift;
        duet_quantize_row(wt, row, p.w + (size_t)o * p.w_row, n_in);
        duet_dequantize_row(wt, p.w + (size_t)o * p.w_row, p.wd + o * n_in, n_in);
    }
    for (int64_t t = 0; t < m; t++) {
        for (int64_t i = 0; i < n_in; i++) p.x[t * n_in + i] = 2.0f * frand() + (t % 2 ? 0.5f : 0.0f);
        duet_quantize_act_row_ref(p.dt, p.x + t * n_in, p.xq + (size_t)t * p.x_row, n_in);
        duet_dequantize_row(p.dt, p.xq + (size_t)t * p.x_row, p.xd + t * n_in, n_in);
    }
    free(row);
    return p;
}

static void free_problem(problem *p) {
    free(p->w);
    free(p->wd);
    free(p->x);
    free(p->xq);
    free(p->xd);
}

/* Reference value and its rounding scale S for (token t, row o). */
static double reference(const problem *p, int64_t t, int64_t o, double *mag) {
    const float *w = p->wd + o * p->n_in, *x = p->xd + t * p->n_in;
    double acc = 0.0, s = 0.0;
    for (int64_t i = 0; i < p->n_in; i++) {
        acc += (double)w[i] * x[i];
        s += fabs((double)w[i] * x[i]);
    }
    if (p->dt == DUET_TYPE_Q8_1) {
        const char *wrow = p->w + (size_t)o * p->w_row;
        const block_q8_1 *xb = (const block_q8_1 *)(p->xq + (size_t)t * p->x_row);
        for (int64_t b = 0; b < p->n_in / 32; b++) {
            double xs = 0.0;
            for (int i = 0; i < 32; i++) xs += x[b * 32 + i];
            const double mn = block_min(p->wt, wrow, b);
            acc += mn * ((double)duet_fp16_to_fp32_inl(xb[b].s) - xs);
            s += fabs(mn * xs);
        }
    }
    *mag = s;
    return acc;
}

static void assert_close(double got, double ref, double mag, const char *what, const problem *p,
                         int64_t t, int64_t o, int nth) {
    const double tol = 1e-5 * mag + 1e-5 * fabs(ref) + 1e-30;
    if (!(fabs(got - ref) <= tol))
        cr_assert_fail("%s: type %s m %ld n_in %ld n_out %ld threads %d simd %d: y[%ld][%ld] = %.9g, "
                       "reference %.9g (tol %.3g)",
                       what, duet_type_name(p->wt), (long)p->m, (long)p->n_in, (long)p->n_out, nth,
                       duet_simd_level(), (long)t, (long)o, got, ref, tol);
}

static void check_problem(const problem *p, duet_pool *pool) {
    const int nth = duet_pool_size(pool);
    float *y = malloc(sizeof(float) * (size_t)(p->m * p->n_out + 1));
    float *y1 = malloc(sizeof(float) * (size_t)(p->n_out + 1));
    cr_assert(y && y1);
    y[p->m * p->n_out] = 777.0f; /* guard past the end */
    duet_matmul(pool, y, p->wt, p->w, p->x, p->m, p->n_in, p->n_out);
    cr_assert_eq(y[p->m * p->n_out], 777.0f, "wrote past y");
    for (int64_t t = 0; t < p->m; t++) {
        duet_matmul(pool, y1, p->wt, p->w, p->x + t * p->n_in, 1, p->n_in, p->n_out);
        for (int64_t o = 0; o < p->n_out; o++) {
            double mag;
            const double ref = reference(p, t, o, &mag);
            assert_close(y[t * p->n_out + o], ref, mag, "vs dequantized reference", p, t, o, nth);
            assert_close(y[t * p->n_out + o], y1[o], mag, "GEMM vs GEMV", p, t, o, nth);
            const float vd = duet_vec_dot_ref(p->wt, p->n_in, p->w + (size_t)o * p->w_row,
                                              p->xq + (size_t)t * p->x_row);
            assert_close(y[t * p->n_out + o], vd, mag, "vs vec_dot_ref", p, t, o, nth);
        }
    }
    free(y);
    free(y1);
}

static void check_all_types(int64_t n_in, int64_t n_out) {
    for (int nt = 1; nt <= 2; nt++) {
        duet_pool *pool = duet_pool_new(nt);
        cr_assert_not_null(pool);
        for (size_t ti = 0; ti < N_TYPES; ti++)
            for (size_t mi = 0; mi < sizeof k_ms / sizeof k_ms[0]; mi++) {
                problem p = make_problem(k_types[ti], k_ms[mi], n_in, n_out);
                check_problem(&p, pool);
                free_problem(&p);
            }
        duet_pool_free(pool);
    }
}

Test(matmul, all_types_best_simd) { check_all_types(512, 37); }

static void use_avx2(void) { setenv("DUET_SIMD", "avx2", 1); }
static void use_scalar(void) { setenv("DUET_SIMD", "scalar", 1); }

Test(matmul, all_types_avx2, .init = use_avx2) {
    cr_assert_leq(duet_simd_level(), DUET_SIMD_AVX2);
    check_all_types(256, 21);
}

Test(matmul, all_types_scalar, .init = use_scalar) {
    cr_assert_eq(duet_simd_level(), DUET_SIMD_SCALAR);
    check_all_types(256, 19);
}

/* Shapes that cross the sgemm's cache blocks (n_out > NC, n_in > KC) and
 * several weight tiles per thread. */
Test(matmul, larger_shapes) {
    const duet_type types[] = {DUET_TYPE_F32, DUET_TYPE_F16, DUET_TYPE_BF16, DUET_TYPE_Q4_0, DUET_TYPE_Q4_K,
                               DUET_TYPE_Q6_K};
    duet_pool *pool = duet_pool_new(2);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        problem p = make_problem(types[i], 19, 768, 517);
        check_problem(&p, pool);
        free_problem(&p);
    }
    duet_pool_free(pool);
}

/* Rows whose block count is not a multiple of 4 or 16 (partial groups of the
 * few-token kernels), for the 32-element block types. */
Test(matmul, odd_block_counts) {
    const duet_type types[] = {DUET_TYPE_Q8_0, DUET_TYPE_Q4_0, DUET_TYPE_Q4_1, DUET_TYPE_Q5_0, DUET_TYPE_Q5_1,
                               DUET_TYPE_F16};
    const int64_t n_ins[] = {32, 96, 608}, ms[] = {1, 3, 9};
    duet_pool *pool = duet_pool_new(2);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        for (size_t a = 0; a < 3; a++)
            for (size_t b = 0; b < 3; b++) {
                problem p = make_problem(types[i], ms[b], n_ins[a], 23);
                check_problem(&p, pool);
                free_problem(&p);
            }
    duet_pool_free(pool);
}

/* ---- llama.cpp's float arithmetic, modelled in scalar code ----
 * A last-ulp difference in a matmul can flip the rounding of an activation
 * quantized downstream and move logits by tenths, so for these types duet
 * reproduces the exact float operations of the llama.cpp CPU kernel:
 *   Q8_0, Q4_1, Q5_0, Q5_1 (ggml's AVX2 vec_dot, llamafile's tinyBLAS): 8
 *     partial sums per row, one per group of 4 values of each block;
 *   Q5_K, Q6_K (ggml's AVX2 vec_dot): the same over super-blocks with
 *     sub-block scales;
 *   Q4_0, Q4_K (the repacked GEMMs): per block the whole integer sum; Q4_K's
 *     GEMM (tokens in whole groups of 4) per pair of sub-blocks, its GEMV (the
 *     last m % 4 tokens) per super-block. */

/* Integer value of element e of a weight row, offset removed. */
static int weight_value(duet_type wt, const char *row, int64_t e) {
    const int64_t b = e / 32, i = e % 32;
    switch (wt) {
    case DUET_TYPE_Q8_0: return ((const block_q8_0 *)row)[b].qs[i];
    case DUET_TYPE_Q4_0: {
        const uint8_t q = ((const block_q4_0 *)row)[b].qs[i % 16];
        return (i < 16 ? q & 15 : q >> 4) - 8;
    }
    case DUET_TYPE_Q4_1: {
        const uint8_t q = ((const block_q4_1 *)row)[b].qs[i % 16];
        return i < 16 ? q & 15 : q >> 4;
    }
    case DUET_TYPE_Q5_0:
    case DUET_TYPE_Q5_1: {
        const uint8_t *qs = wt == DUET_TYPE_Q5_0 ? ((const block_q5_0 *)row)[b].qs : ((const block_q5_1 *)row)[b].qs;
        const uint8_t *qhp = wt == DUET_TYPE_Q5_0 ? ((const block_q5_0 *)row)[b].qh : ((const block_q5_1 *)row)[b].qh;
        uint32_t qh;
        memcpy(&qh, qhp, 4);
        const int v = (i < 16 ? qs[i] & 15 : qs[i - 16] >> 4) | (int)(((qh >> i) & 1u) << 4);
        return wt == DUET_TYPE_Q5_0 ? v - 16 : v;
    }
    default: return 0;
    }
}

static float block_scale(duet_type wt, const char *row, int64_t b, float *mn) {
    *mn = 0.0f;
    switch (wt) {
    case DUET_TYPE_Q8_0: return duet_fp16_to_fp32_inl(((const block_q8_0 *)row)[b].d);
    case DUET_TYPE_Q4_0: return duet_fp16_to_fp32_inl(((const block_q4_0 *)row)[b].d);
    case DUET_TYPE_Q4_1:
        *mn = duet_fp16_to_fp32_inl(((const block_q4_1 *)row)[b].m);
        return duet_fp16_to_fp32_inl(((const block_q4_1 *)row)[b].d);
    case DUET_TYPE_Q5_0: return duet_fp16_to_fp32_inl(((const block_q5_0 *)row)[b].d);
    case DUET_TYPE_Q5_1:
        *mn = duet_fp16_to_fp32_inl(((const block_q5_1 *)row)[b].m);
        return duet_fp16_to_fp32_inl(((const block_q5_1 *)row)[b].d);
    default: return 0.0f;
    }
}

static float hsum8_model(const float acc[8]) {
    float a[4];
    for (int i = 0; i < 4; i++) a[i] = acc[i] + acc[i + 4];
    return (a[0] + a[2]) + (a[1] + a[3]);
}

static float model_dot(duet_type wt, int64_t n, const char *w, const char *xq, int q4k_pairs) {
    if (wt == DUET_TYPE_Q6_K) {
        const block_q6_K *wb = (const block_q6_K *)w;
        const block_q8_K *xb = (const block_q8_K *)xq;
        float acc[8] = {0};
        for (int64_t s = 0; s < n / QK_K; s++) {
            int32_t sumi[8] = {0};
            for (int e = 0; e < QK_K; e++) {
                const int h = e / 128, l = e % 128, p = l / 32, ll = l % 32;
                const uint8_t ql = wb[s].ql[64 * h + 32 * (p & 1) + ll];
                const int q = (p < 2 ? ql & 15 : ql >> 4) | (((wb[s].qh[32 * h + ll] >> (2 * p)) & 3) << 4);
                sumi[(e % 32) / 4] += wb[s].scales[e / 16] * (q - 32) * xb[s].qs[e];
            }
            const float d = xb[s].d * duet_fp16_to_fp32_inl(wb[s].d);
            for (int i = 0; i < 8; i++) acc[i] = fmaf(d, (float)sumi[i], acc[i]);
        }
        return hsum8_model(acc);
    }
    if (wt == DUET_TYPE_Q4_K) {
        const block_q4_K *wb = (const block_q4_K *)w;
        const block_q8_K *xb = (const block_q8_K *)xq;
        float acc = 0.0f, accm = 0.0f;
        for (int64_t s = 0; s < n / QK_K; s++) {
            const float d = duet_fp16_to_fp32_inl(wb[s].d) * xb[s].d;
            const float dmin = duet_fp16_to_fp32_inl(wb[s].dmin) * xb[s].d;
            int32_t isum = 0, mins = 0;
            for (int j = 0; j < 8; j++) {
                uint8_t sc, mn;
                duet_get_scale_min_k4(j, wb[s].scales, &sc, &mn);
                for (int e = 32 * j; e < 32 * j + 32; e++) {
                    const int c = e / 64, l = e % 64;
                    const uint8_t q = wb[s].qs[32 * c + l % 32];
                    isum += sc * (l < 32 ? q & 15 : q >> 4) * xb[s].qs[e];
                }
                mins += mn * (xb[s].bsums[2 * j] + xb[s].bsums[2 * j + 1]);
                if (q4k_pairs ? j % 2 == 1 : j == 7) {
                    acc = fmaf((float)isum, d, acc);
                    accm = fmaf((float)mins, dmin, accm);
                    isum = mins = 0;
                }
            }
        }
        return acc - accm;
    }
    if (wt == DUET_TYPE_Q5_K) {
        const block_q5_K *wb = (const block_q5_K *)w;
        const block_q8_K *xb = (const block_q8_K *)xq;
        float acc[8] = {0}, accm = 0.0f;
        for (int64_t s = 0; s < n / QK_K; s++) {
            int32_t sumi[8] = {0}, mins = 0;
            for (int j = 0; j < 8; j++) {
                uint8_t sc, mn;
                duet_get_scale_min_k4(j, wb[s].scales, &sc, &mn);
                mins += mn * (xb[s].bsums[2 * j] + xb[s].bsums[2 * j + 1]);
                for (int e = 0; e < 32; e++) {
                    const int el = 32 * j + e, c = el / 64, l = el % 64;
                    const uint8_t q = wb[s].qs[32 * c + l % 32];
                    const int v = (l < 32 ? q & 15 : q >> 4) | (((wb[s].qh[l % 32] >> (2 * c + l / 32)) & 1) << 4);
                    sumi[e / 4] += sc * v * xb[s].qs[el];
                }
            }
            const float d = duet_fp16_to_fp32_inl(wb[s].d) * xb[s].d;
            const float dmin = duet_fp16_to_fp32_inl(wb[s].dmin) * xb[s].d;
            for (int i = 0; i < 8; i++) acc[i] = fmaf(d, (float)sumi[i], acc[i]);
            accm = fmaf(dmin, (float)mins, accm);
        }
        return hsum8_model(acc) - accm;
    }
    const int8_t *xqs;
    float acc[8] = {0}, summs = 0.0f, whole = 0.0f;
    for (int64_t b = 0; b < n / 32; b++) {
        float dx, sx = 0.0f;
        if (wt == DUET_TYPE_Q4_1 || wt == DUET_TYPE_Q5_1) {
            const block_q8_1 *x = (const block_q8_1 *)xq + b;
            xqs = x->qs;
            dx = duet_fp16_to_fp32_inl(x->d);
            sx = duet_fp16_to_fp32_inl(x->s);
        } else {
            const block_q8_0 *x = (const block_q8_0 *)xq + b;
            xqs = x->qs;
            dx = duet_fp16_to_fp32_inl(x->d);
        }
        float mn;
        const float d = block_scale(wt, w, b, &mn) * dx;
        int32_t lane[8] = {0}, sum = 0;
        for (int e = 0; e < 32; e++) {
            const int p = weight_value(wt, w, 32 * b + e) * xqs[e];
            lane[e / 4] += p;
            sum += p;
        }
        for (int i = 0; i < 8; i++) acc[i] = fmaf(d, (float)lane[i], acc[i]);
        summs = fmaf(mn, sx, summs);
        whole = fmaf((float)sum, d, whole);
    }
    if (wt == DUET_TYPE_Q4_0) return whole;
    return hsum8_model(acc) + summs;
}

/* Bit for bit the modelled llama.cpp arithmetic, GEMV and GEMM, 1 and 2
 * threads. Odd row counts (21, not a multiple of 16) exercise the row-pair
 * kernels' last single row and the partial 16-row groups. */
Test(matmul, bit_exact_with_llama_cpp_arithmetic) {
    if (duet_simd_level() < DUET_SIMD_AVX512) cr_skip_test("the exact kernels are the AVX-512 ones");
    const duet_type types[] = {DUET_TYPE_Q8_0, DUET_TYPE_Q4_1, DUET_TYPE_Q5_0, DUET_TYPE_Q5_1, DUET_TYPE_Q5_K,
                               DUET_TYPE_Q6_K, DUET_TYPE_Q4_K, DUET_TYPE_Q4_0};
    const int64_t ms[] = {1, 2, 4, 5, 8, 19}, n_ins[] = {256, 768};
    for (int nt = 1; nt <= 2; nt++) {
        duet_pool *pool = duet_pool_new(nt);
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
            for (size_t ni = 0; ni < 2; ni++)
                for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
                    const duet_type wt = types[ti];
                    problem p = make_problem(wt, ms[mi], n_ins[ni], 21);
                    float *y = malloc(sizeof(float) * (size_t)(p.m * p.n_out));
                    duet_matmul(pool, y, wt, p.w, p.x, p.m, p.n_in, p.n_out);
                    for (int64_t t = 0; t < p.m; t++)
                        for (int64_t o = 0; o < p.n_out; o++) {
                            const float ref = model_dot(wt, p.n_in, p.w + (size_t)o * p.w_row, p.xq + (size_t)t * p.x_row,
                                                        t < p.m - p.m % 4);
                            cr_assert(y[t * p.n_out + o] == ref,
                                      "%s m %ld n_in %ld threads %d: y[%ld][%ld] = %.9g, llama.cpp's arithmetic %.9g",
                                      duet_type_name(wt), (long)p.m, (long)p.n_in, nt, (long)t, (long)o,
                                      y[t * p.n_out + o], ref);
                        }
                    free(y);
                    free_problem(&p);
                }
        duet_pool_free(pool);
    }
}

/* F16 R16 arithmetic: one correctly rounded fma per value, k in order, of
 * the weights and the activations rounded through f16 (exact widenings). */
static float fma_chain(const float *w, const float *x, int64_t n) {
    float acc = 0.0f;
    for (int64_t k = 0; k < n; k++) acc = fmaf(w[k], x[k], acc);
    return acc;
}

/* Q4_0 / Q4_K / F16 weights repacked at load time (R16 layouts): the
 * few-token GEMV over them keeps llama.cpp's repacked-GEMV arithmetic (F16:
 * an fma chain over k) bit for bit, in the plain and the decode-consistent
 * product, for any m; other blocks fall back to the GGUF layout (then within
 * rounding noise of the reference). */
Test(matmul, repacked_weights_match_llama_cpp_arithmetic) {
    if (duet_simd_level() < DUET_SIMD_AVX512) cr_skip_test("the repacked layouts are AVX-512 ones");
    cr_assert_eq(duet_repack_bytes(DUET_TYPE_Q4_0, 256, 40), 0, "40 rows are not whole groups of 16");
    cr_assert_eq(duet_repack_bytes(DUET_TYPE_Q8_0, 256, 48), 0, "Q8_0 has no repacked layout");
    const duet_type types[] = {DUET_TYPE_Q4_0, DUET_TYPE_Q4_K, DUET_TYPE_F16};
    const int64_t ms[] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, n_ins[] = {256, 768};
    for (int nt = 1; nt <= 2; nt++) {
        duet_pool *pool = duet_pool_new(nt);
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
            for (size_t ni = 0; ni < 2; ni++)
                for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
                    for (int consistent = 0; consistent <= 1; consistent++) {
                        problem p = make_problem(types[ti], ms[mi], n_ins[ni], 80);
                        const size_t bytes = duet_repack_bytes(p.wt, p.n_in, p.n_out);
                        cr_assert_gt(bytes, 0);
                        void *packed = aligned_alloc(64, (bytes + 63) / 64 * 64);
                        cr_assert_eq(duet_repack(p.wt, p.w, p.n_in, p.n_out, packed), 0);
                        float *y = malloc(sizeof(float) * (size_t)(p.m * p.n_out));
                        duet_matmul_packed(pool, y, p.wt, p.w, packed, p.x, p.m, p.n_in, p.n_out, consistent);
                        const int exact = consistent || p.m < (p.wt == DUET_TYPE_Q4_K ? 4 : 8);
                        for (int64_t t = 0; t < p.m; t++)
                            for (int64_t o = 0; o < p.n_out; o++) {
                                const float got = y[t * p.n_out + o];
                                const float ref = p.wt == DUET_TYPE_F16
                                                      ? fma_chain(p.wd + o * p.n_in, p.xd + t * p.n_in, p.n_in)
                                                      : model_dot(p.wt, p.n_in, p.w + (size_t)o * p.w_row,
                                                                  p.xq + (size_t)t * p.x_row, 0);
                                double mag;
                                (void)reference(&p, t, o, &mag);
                                if (exact)
                                    cr_assert(got == ref, "%s m %ld n_in %ld consistent %d threads %d: y[%ld][%ld] = %.9g, "
                                              "llama.cpp's arithmetic %.9g", duet_type_name(p.wt), (long)p.m, (long)p.n_in,
                                              consistent, nt, (long)t, (long)o, got, ref);
                                else
                                    assert_close(got, ref, mag, "repacked, many tokens", &p, t, o, nt);
                            }
                        free(y);
                        free(packed);
                        free_problem(&p);
                    }
        duet_pool_free(pool);
    }
}

/* The F16 R16 kernel's passes (core/repack_avx512.c: G row groups x C
 * tokens, G chosen by C, a block of up to 9 tokens in one pass, more in
 * passes of equal size; two k per step with one left over at odd n_in;
 * chunks of whole passes per thread) keep the fma chain over k of every
 * (row, token) whatever the shape: every m up to 13, odd n_in, group counts
 * that leave every remainder of G = 3 and 4 (n_out 16 .. 592 = 37 groups),
 * 1 and 2 threads. */
Test(matmul, repacked_f16_any_shape_is_the_fma_chain) {
    if (duet_simd_level() < DUET_SIMD_AVX512) cr_skip_test("the repacked layouts are AVX-512 ones");
    const int64_t n_ins[] = {1, 2, 129, 384}, n_outs[] = {16, 32, 48, 80, 208, 592};
    for (int nt = 1; nt <= 2; nt++) {
        duet_pool *pool = duet_pool_new(nt);
        for (size_t ni = 0; ni < sizeof n_ins / sizeof n_ins[0]; ni++)
            for (size_t no = 0; no < sizeof n_outs / sizeof n_outs[0]; no++)
                for (int64_t m = 1; m <= 13; m++) {
                    problem p = make_problem(DUET_TYPE_F16, m, n_ins[ni], n_outs[no]);
                    const size_t bytes = duet_repack_bytes(p.wt, p.n_in, p.n_out);
                    cr_assert_gt(bytes, 0);
                    void *packed = aligned_alloc(64, (bytes + 63) / 64 * 64);
                    cr_assert_eq(duet_repack(p.wt, p.w, p.n_in, p.n_out, packed), 0);
                    float *y = malloc(sizeof(float) * (size_t)(p.m * p.n_out));
                    duet_matmul_packed(pool, y, p.wt, p.w, packed, p.x, p.m, p.n_in, p.n_out, 1);
                    for (int64_t t = 0; t < p.m; t++)
                        for (int64_t o = 0; o < p.n_out; o++) {
                            const float got = y[t * p.n_out + o];
                            const float ref = fma_chain(p.wd + o * p.n_in, p.xd + t * p.n_in, p.n_in);
                            cr_assert(got == ref, "F16 m %ld n_in %ld n_out %ld threads %d: y[%ld][%ld] = %.9g, "
                                      "fma chain %.9g", (long)p.m, (long)p.n_in, (long)p.n_out, nt, (long)t,
                                      (long)o, got, ref);
                        }
                    free(y);
                    free(packed);
                    free_problem(&p);
                }
        duet_pool_free(pool);
    }
}

/* The model is the arithmetic of the AVX2 kernels that reproduce llama.cpp's
 * logits exactly on the reference models: check it against them. (Not Q5_K:
 * that kernel's min term is a fused multiply-add only when the compiler
 * contracts it, i.e. not in unoptimised builds.) */
Test(matmul, model_matches_the_avx2_vec_dot) {
    if (duet_cpu_simd_level() < DUET_SIMD_AVX2) cr_skip_test("no AVX2");
    const duet_type types[] = {DUET_TYPE_Q8_0, DUET_TYPE_Q4_1, DUET_TYPE_Q5_0, DUET_TYPE_Q5_1};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        problem p = make_problem(types[ti], 3, 512, 9);
        const duet_vec_dot_fn dot = duet_vec_dot_get_level(types[ti], DUET_SIMD_AVX2);
        for (int64_t t = 0; t < p.m; t++)
            for (int64_t o = 0; o < p.n_out; o++) {
                const char *w = p.w + (size_t)o * p.w_row, *x = p.xq + (size_t)t * p.x_row;
                cr_assert(dot(p.n_in, w, x) == model_dot(types[ti], p.n_in, w, x, 0), "%s: row %ld token %ld",
                          duet_type_name(types[ti]), (long)o, (long)t);
            }
        free_problem(&p);
    }
}

/* Decode-consistent blocks on AVX2 (core/gemv_multi_avx2.c: F32/F16/BF16 in
 * tiles of 2 rows x up to 6 tokens, two or four accumulator passes, the
 * 8-element tail steps and the scalar remainder; Q8_0 in tiles of 1 row x up
 * to 8 tokens): every (row, token) output is bit for bit the one-token
 * product of that token, and the AVX2 vec_dot of that pair. Every m up to 17
 * (one, two and three token groups, uneven splits), n_in with every kind of
 * tail (only a remainder, 8-element steps, both; Q8_0: 1 to 12 blocks), odd
 * n_out (a last single row, partial chunks), 1 and 2 threads. */
Test(matmul, consistent_blocks_avx2_are_the_one_token_dot, .init = use_avx2) {
    if (duet_cpu_simd_level() < DUET_SIMD_AVX2) cr_skip_test("no AVX2");
    cr_assert_eq(duet_simd_level(), DUET_SIMD_AVX2);
    const duet_type types[] = {DUET_TYPE_F16, DUET_TYPE_F32, DUET_TYPE_BF16, DUET_TYPE_Q8_0};
    const int64_t n_ins_f[] = {5, 40, 59, 88, 200, 203, 384}, n_ins_q[] = {32, 64, 160, 384, 0, 0, 0};
    const int64_t n_outs[] = {1, 37, 101};
    for (int nt = 1; nt <= 2; nt++) {
        duet_pool *pool = duet_pool_new(nt);
        cr_assert_not_null(pool);
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            const duet_vec_dot_fn dot = duet_vec_dot_get_level(types[ti], DUET_SIMD_AVX2);
            const int64_t *n_ins = types[ti] == DUET_TYPE_Q8_0 ? n_ins_q : n_ins_f;
            for (size_t ni = 0; ni < sizeof n_ins_f / sizeof n_ins_f[0] && n_ins[ni]; ni++)
                for (size_t no = 0; no < sizeof n_outs / sizeof n_outs[0]; no++)
                    for (int64_t m = 1; m <= 17; m++) {
                        problem p = make_problem(types[ti], m, n_ins[ni], n_outs[no]);
                        float *y = malloc(sizeof(float) * (size_t)(p.m * p.n_out + 1));
                        float *y1 = malloc(sizeof(float) * (size_t)p.n_out);
                        cr_assert(y && y1);
                        y[p.m * p.n_out] = 777.0f;
                        duet_matmul_ex(pool, y, p.wt, p.w, p.x, p.m, p.n_in, p.n_out, 1);
                        cr_assert_eq(y[p.m * p.n_out], 777.0f, "wrote past y");
                        for (int64_t t = 0; t < p.m; t++) {
                            duet_matmul_ex(pool, y1, p.wt, p.w, p.x + t * p.n_in, 1, p.n_in, p.n_out, 0);
                            for (int64_t o = 0; o < p.n_out; o++) {
                                const float got = y[t * p.n_out + o];
                                const float vd = dot(p.n_in, p.w + (size_t)o * p.w_row, p.xq + (size_t)t * p.x_row);
                                cr_assert(!memcmp(&got, &y1[o], sizeof got) && !memcmp(&got, &vd, sizeof got),
                                          "%s m %ld n_in %ld n_out %ld threads %d: y[%ld][%ld] = %a, one token %a, "
                                          "AVX2 vec_dot %a", duet_type_name(p.wt), (long)p.m, (long)p.n_in,
                                          (long)p.n_out, nt, (long)t, (long)o, got, y1[o], vd);
                            }
                        }
                        free(y);
                        free(y1);
                        free_problem(&p);
                    }
        }
        duet_pool_free(pool);
    }
}

/* Activations rounded through F16/BF16 for the sgemm path: bit for bit the
 * scalar conversions, over random bit patterns (NaN, inf, subnormals, ties). */
Test(matmul, round_rows_match_scalar_conversions) {
    enum { N = 4099 };
    float *src = malloc(N * sizeof(float)), *dst = malloc(N * sizeof(float));
    cr_assert(src && dst);
    for (int i = 0; i < N; i++) {
        uint32_t u = (uint32_t)(rng_state >> 32);
        frand();
        if (i % 7 == 0) u &= 0x807fffffu;               /* subnormal / zero */
        if (i % 11 == 0) u = (u & 0xffff0000u) | 0x8000u; /* bf16 tie */
        if (i % 13 == 0) u = (u & 0xffffe000u) | 0x1000u; /* f16 tie */
        if (i % 17 == 0) u |= 0x7f800000u;              /* inf / NaN */
        memcpy(&src[i], &u, 4);
    }
    duet_pool *pool = duet_pool_new(2);
    for (int k = 0; k < 2; k++) {
        const duet_type dt = k ? DUET_TYPE_BF16 : DUET_TYPE_F16;
        duet_gemm_round_rows(pool, dt, src, dst, N);
        for (int i = 0; i < N; i++) {
            const float ref = dt == DUET_TYPE_F16 ? duet_fp16_to_fp32_inl(duet_fp32_to_fp16_inl(src[i]))
                                                  : duet_bf16_to_fp32_inl(duet_fp32_to_bf16_inl(src[i]));
            uint32_t a, b;
            memcpy(&a, &dst[i], 4);
            memcpy(&b, &ref, 4);
            cr_assert_eq(a, b, "%s: element %d (%08x): %08x, scalar %08x", duet_type_name(dt), i,
                         (unsigned)duet_f32_bits(src[i]), a, b);
        }
    }
    duet_pool_free(pool);
    free(src);
    free(dst);
}

/* Bad arguments are programmer errors: no crash, and the output says so. */
Test(matmul, bad_arguments_give_nan) {
    float w[64] = {0}, x[64] = {0}, y[4] = {0};
    duet_matmul(NULL, y, DUET_TYPE_Q8_K, w, x, 1, 256, 2); /* activation-only type */
    cr_assert(isnan(y[0]) && isnan(y[1]));
    memset(y, 0, sizeof y);
    duet_matmul(NULL, y, (duet_type)99, w, x, 1, 32, 2); /* unknown type */
    cr_assert(isnan(y[0]) && isnan(y[1]));
    memset(y, 0, sizeof y);
    duet_matmul(NULL, y, DUET_TYPE_Q4_0, w, x, 2, 33, 2); /* n_in not a multiple of 32 */
    cr_assert(isnan(y[0]) && isnan(y[3]));
    y[0] = 5.0f;
    duet_matmul(NULL, y, DUET_TYPE_F32, w, x, 0, 16, 2); /* m = 0: nothing */
    cr_assert_eq(y[0], 5.0f);
}

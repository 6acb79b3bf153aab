/* The arithmetic pieces of the forward pass: each AVX2 path gives exactly
 * the bits of its C reference, and each reference computes what it claims
 * (checked against straightforward double-precision formulas). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "duet/quant.h"
#include "model/ops.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float urand(float lo, float hi) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * (float)((rng >> 40) / 16777216.0);
}

Test(model_ops, ggml_expf_is_an_exp) {
    cr_expect_eq(duet_ggml_expf(0.0f), 1.0f);
    cr_expect_eq(duet_ggml_expf(-INFINITY), 0.0f);
    cr_expect_eq(duet_ggml_expf(-200.0f), 0.0f);
    cr_expect(isinf(duet_ggml_expf(200.0f)));
    double worst = 0;
    for (float x = -87.0f; x < 88.0f; x += 0.01f) {
        const double rel = fabs(duet_ggml_expf(x) / exp((double)x) - 1.0);
        worst = rel > worst ? rel : worst;
    }
    /* ggml documents 1.45358 + 0.5 ulp */
    cr_expect(worst < 2.5 * 0x1p-23, "relative error %.3g", worst);
    /* subnormal results keep their value (scalef semantics) */
    const double sub = duet_ggml_expf(-95.0f);
    cr_expect(sub > 0 && fabs(sub / exp(-95.0) - 1.0) < 1e-3, "exp(-95) = %g", sub);
}

Test(model_ops, hsum16_follows_the_avx512_reduction_order) {
    /* (l0 + l8) + (l4 + l12) first: 2^24 + 1 rounds to 2^24, then cancels
     * with -2^24; a left-to-right sum would give 1. */
    float l[16] = {0};
    l[0] = 16777216.0f;
    l[8] = 1.0f;
    l[4] = -16777216.0f;
    cr_expect_eq(duet_hsum16(l), 0.0f);
}

Test(model_ops, rms_norm_matches_the_formula) {
    float x[300], w[300], y[300];
    for (int i = 0; i < 300; i++) x[i] = urand(-3, 3), w[i] = urand(0.5f, 1.5f);
    duet_rms_norm(y, x, w, 300, 1e-5f);
    double ss = 0;
    for (int i = 0; i < 300; i++) ss += (double)x[i] * x[i];
    const double s = 1.0 / sqrt(ss / 300 + 1e-5);
    for (int i = 0; i < 300; i++) cr_expect(fabs(y[i] - x[i] * s * w[i]) <= 1e-6 * fabs(x[i] * s * w[i]) + 1e-7);
}

Test(model_ops, rope_rotates_pairs_by_the_position_angles) {
    const int n_rot = 32;
    float cs[32], x[32], y[32];
    duet_rope_cache(cs, 0, n_rot, 10000.0f, 1.0f, NULL);
    for (int i = 0; i < n_rot; i += 2) cr_expect(cs[i] == 1.0f && cs[i + 1] == 0.0f);
    const int pos = 7;
    duet_rope_cache(cs, pos, n_rot, 10000.0f, 1.0f, NULL);
    float x0[32];
    for (int i = 0; i < n_rot; i++) x0[i] = x[i] = y[i] = urand(-1, 1);
    duet_rope_apply(x, cs, n_rot, 0); /* NORM: (2i, 2i+1) */
    duet_rope_apply(y, cs, n_rot, 1); /* NEOX: (i, i+16) */
    for (int i = 0; i < n_rot / 2; i++) {
        const double th = pos * pow(10000.0, -2.0 * i / n_rot);
        cr_expect(fabs(cs[2 * i] - cos(th)) < 1e-5 && fabs(cs[2 * i + 1] - sin(th)) < 1e-5, "pair %d", i);
    }
    for (int i = 0; i < n_rot / 2; i++) {
        const double th = pos * pow(10000.0, -2.0 * i / n_rot), c = cos(th), s = sin(th);
        const double a = x0[2 * i], b = x0[2 * i + 1];
        cr_expect(fabs(x[2 * i] - (a * c - b * s)) < 1e-5 && fabs(x[2 * i + 1] - (a * s + b * c)) < 1e-5);
        const double p = x0[i], q = x0[i + 16];
        cr_expect(fabs(y[i] - (p * c - q * s)) < 1e-5 && fabs(y[i + 16] - (p * s + q * c)) < 1e-5);
    }
    /* linear scaling divides the angle; frequency factors divide per pair */
    float cl[32], cf[32], ff[16];
    for (int i = 0; i < 16; i++) ff[i] = 4.0f;
    duet_rope_cache(cl, 8, n_rot, 10000.0f, 0.25f, NULL);
    duet_rope_cache(cf, 8, n_rot, 10000.0f, 1.0f, ff);
    duet_rope_cache(cs, 2, n_rot, 10000.0f, 1.0f, NULL);
    for (int i = 0; i < n_rot; i++) cr_expect(fabsf(cl[i] - cs[i]) < 1e-6f && fabsf(cf[i] - cs[i]) < 1e-6f);
}

Test(model_ops, swiglu_avx2_equals_reference) {
    if (!duet_model_simd()) cr_skip_test("no AVX2/FMA/F16C");
    const int n = 16 * 40 + 7;
    float *g = malloc(n * sizeof(float)), *u = malloc(n * sizeof(float));
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    for (int i = 0; i < n; i++) g[i] = urand(-12, 12), u[i] = urand(-2, 2);
    g[3] = -150.0f; /* exp(150) overflows: the slow lane path */
    g[20] = 100.0f;
    g[33] = -0.0f;
    duet_swiglu_ref(a, g, u, n);
    duet_swiglu_avx2(b, g, u, n);
    cr_expect(!memcmp(a, b, n * sizeof(float)));
    for (int i = 0; i < n; i++) {
        const double ref = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        cr_expect(fabs(a[i] - ref) <= 1e-5 * fabs(ref) + 1e-30, "i=%d %g vs %g", i, a[i], ref);
    }
    free(g), free(u), free(a), free(b);
}

/* Double-precision softmax attention as the independent reference. */
static void naive_attention(double *out, const float *q, const float *k, const float *v, int n_kv, int hd,
                            size_t stride, size_t vstride) {
    double *w = malloc(n_kv * sizeof(double)), mx = -INFINITY, sum = 0;
    for (int j = 0; j < n_kv; j++) {
        double s = 0;
        for (int d = 0; d < hd; d++) s += (double)q[d] * k[j * stride + d];
        w[j] = s / sqrt(hd);
        mx = fmax(mx, w[j]);
    }
    for (int j = 0; j < n_kv; j++) sum += w[j] = exp(w[j] - mx);
    for (int d = 0; d < hd; d++) {
        out[d] = 0;
        for (int j = 0; j < n_kv; j++) out[d] += w[j] / sum * v[d * vstride + j];
    }
    free(w);
}

static void attention_case(int n_kv, int hd, int f16, int single, int n_kv_pad) {
    /* rows of a wider cache, as with GQA: k (n_kv, stride), v^T (hd, vstride) */
    const size_t stride = hd * 2 + 16, vstride = n_kv + 5, nk = n_kv * stride, nv = hd * vstride;
    /* a cache's V carries DUET_V_SLACK elements past its last row */
    float *k = malloc(nk * sizeof(float)), *v = calloc(nv + DUET_V_SLACK, sizeof(float));
    uint16_t *k16 = malloc(nk * 2), *v16 = calloc(nv + DUET_V_SLACK, 2);
    float q[256], a[256], b[256];
    for (size_t i = 0; i < nk; i++) {
        k[i] = urand(-2, 2);
        k16[i] = duet_f32_to_f16(k[i]);
        if (f16) k[i] = duet_f16_to_f32(k16[i]);
    }
    for (size_t i = 0; i < nv; i++) {
        v[i] = urand(-1, 1);
        v16[i] = duet_f32_to_f16(v[i]);
        if (f16) v[i] = duet_f16_to_f32(v16[i]);
    }
    for (int d = 0; d < hd; d++) q[d] = urand(-2, 2);
    duet_attn_args args = {.head_dim = hd, .n_kv = n_kv, .single = single, .n_kv_pad = n_kv_pad, .kv_f16 = f16,
                           .k = f16 ? (void *)k16 : (void *)k,
                           .v = f16 ? (void *)v16 : (void *)v, .k_stride = stride, .v_stride = vstride,
                           .scale = 1.0f / sqrtf((float)hd)};
    void *scratch = malloc(duet_attn_scratch_size(n_kv, hd));
    duet_attn_head_ref(a, q, &args, scratch);
    if (duet_model_simd() && hd % 16 == 0) {
        duet_attn_head_avx2(b, q, &args, scratch);
        cr_expect(!memcmp(a, b, hd * sizeof(float)), "n_kv %d hd %d f16 %d single %d: AVX2 differs from reference",
                  n_kv, hd, f16, single);
    }
    double ref[256];
    naive_attention(ref, q, k, v, n_kv, hd, stride, vstride);
    const double tol = f16 ? 4e-3 : 1e-5; /* F16 rounds q and the probabilities */
    for (int d = 0; d < hd; d++) cr_expect(fabs(a[d] - ref[d]) <= tol, "n_kv %d hd %d d %d: %g vs %g", n_kv, hd, d, a[d], ref[d]);
    free(scratch), free(k), free(v), free(k16), free(v16);
}

Test(model_ops, attention_matches_softmax_attention) {
    const int n_kv[] = {1, 2, 15, 16, 17, 48, 63, 64, 65, 100, 300};
    const int hd[] = {16, 32, 64, 80, 128, 40};
    for (int f16 = 0; f16 < 2; f16++)
        for (size_t i = 0; i < sizeof n_kv / sizeof *n_kv; i++)
            for (size_t j = 0; j < sizeof hd / sizeof *hd; j++) {
                attention_case(n_kv[i], hd[j], f16, 0, 0);
                /* one token: llama.cpp's padded view, and one cut short by the context */
                attention_case(n_kv[i], hd[j], f16, 1, duet_attn_kv_pad(n_kv[i] - 1));
                attention_case(n_kv[i], hd[j], f16, 1, n_kv[i]);
            }
}

/* The one-token arithmetic's sequential tails (ggml_vec_dot past the last
 * multiple of 64: q.k over dims head_dim & ~63.., p.v over positions
 * n_kv_pad & ~63..n_kv-1) are computed for several dot products at once; each
 * must keep its own term order. Random values of one scale would hide a wrong
 * order (their double sums are exact), so every key carries x and -x at the
 * first and last tail dims, and the two tail positions j1, j2 of p.v have
 * equal keys (equal probabilities, about 1/2 each) and values y and -y: the
 * big terms cancel exactly and leave the rounding of the small terms added
 * between them, which depends on the order. Cache cells never written (past
 * n_kv, other heads' dims, V's slack) hold NaN. */
static float spread(void) { /* +-[0.5, 1) * 2^-e, e in 0..14 */
    return ldexpf((urand(0, 1) < 0.5f ? -1 : 1) * urand(0.5f, 1.0f), -(int)urand(0, 15));
}

static void single_tail_case(int hd, int n_kv, int n_kv_pad, int f16) {
    const int n_ctx = n_kv_pad + 40, tq = hd & ~63, tv = n_kv_pad & ~63;
    const int j1 = tv, j2 = n_kv - 1; /* the p.v pair, when j1 < j2 */
    const size_t stride = hd * 2 + 16, vstride = n_ctx, nk = n_ctx * stride, nv = hd * vstride + DUET_V_SLACK;
    float *k = malloc(nk * sizeof(float)), *v = malloc(nv * sizeof(float)), q[256], a[256], b[256], c[256];
    uint16_t *k16 = malloc(nk * 2), *v16 = malloc(nv * 2);
    for (int d = 0; d < hd; d++) q[d] = spread() * 8;
    if (tq < hd) q[tq] = q[hd - 1] = 128;
    for (size_t i = 0; i < nk; i++) k[i] = NAN;
    for (size_t i = 0; i < nv; i++) v[i] = NAN;
    for (int j = 0; j < n_kv; j++) {
        float *row = k + (size_t)j * stride;
        const int pair = j1 < j2 && (j == j1 || j == j2);
        for (int d = 0; d < hd; d++) row[d] = pair ? (q[d] < 0 ? -2.0f : 2.0f) : spread();
        if (tq < hd) {
            const float x = ldexpf(urand(0.5f, 1.0f), 15);
            row[tq] = pair ? 30000.0f : x;
            row[hd - 1] = -row[tq];
        }
        for (int d = 0; d < hd; d++) v[(size_t)d * vstride + j] = spread();
    }
    if (j1 < j2)
        for (int d = 0; d < hd; d++) {
            v[(size_t)d * vstride + j1] = ldexpf(urand(0.5f, 1.0f), 15);
            v[(size_t)d * vstride + j2] = -v[(size_t)d * vstride + j1];
        }
    for (size_t i = 0; i < nk; i++) k16[i] = duet_f32_to_f16(k[i]);
    for (size_t i = 0; i < nv; i++) v16[i] = duet_f32_to_f16(v[i]);
    duet_attn_args args = {.head_dim = hd, .n_kv = n_kv, .single = 1, .n_kv_pad = n_kv_pad, .kv_f16 = f16,
                           .k = f16 ? (void *)k16 : (void *)k, .v = f16 ? (void *)v16 : (void *)v,
                           .k_stride = stride, .v_stride = vstride, .scale = 1.0f / sqrtf((float)hd)};
    void *scratch = malloc(duet_attn_scratch_size(n_kv, hd));
    duet_attn_head_ref(a, q, &args, scratch);
    duet_attn_head(c, q, &args, scratch);
    int bad = 0, bad_simd = 0, nan = 0;
    for (int d = 0; d < hd; d++) bad += !(c[d] == a[d]), nan += isnan(a[d]);
    if (duet_model_simd()) {
        duet_attn_head_avx2(b, q, &args, scratch);
        for (int d = 0; d < hd; d++) bad_simd += !(b[d] == a[d]);
    }
    cr_expect(!nan && !bad && !bad_simd,
              "hd %d n_kv %d n_kv_pad %d f16 %d: %d NaN, %d (dispatch) / %d (AVX2) outputs differ from the reference",
              hd, n_kv, n_kv_pad, f16, nan, bad, bad_simd);
    free(scratch), free(k), free(v), free(k16), free(v16);
}

Test(model_ops, single_token_tails_keep_their_order) {
    const int hd[] = {16, 32, 48, 64, 80, 96, 128, 160};
    const int n_kv[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 95, 100, 127, 128, 129, 150, 191, 200, 255};
    for (int f16 = 0; f16 < 2; f16++)
        for (size_t h = 0; h < sizeof hd / sizeof *hd; h++)
            for (size_t i = 0; i < sizeof n_kv / sizeof *n_kv; i++) {
                single_tail_case(hd[h], n_kv[i], duet_attn_kv_pad(n_kv[i] - 1), f16);
                single_tail_case(hd[h], n_kv[i], n_kv[i], f16); /* view cut short by the context */
            }
}

/* nq queries of one head over a cache whose positions past the largest n_kv
 * (and V's slack) hold NaN: each output float of duet_attn_heads_avx512 (and
 * of the dispatcher) equals the one-query reference in the several-token
 * arithmetic. */
static void multi_query_case(int hd, int f16, int nq, const int *n_kv) {
    int n_max = 0;
    for (int i = 0; i < nq; i++) n_max = n_kv[i] > n_max ? n_kv[i] : n_max;
    const int n_ctx = n_max + 37; /* positions past n_max exist but were never written */
    const size_t stride = hd * 2 + 16, vstride = n_ctx, nk = n_ctx * stride, nv = hd * vstride + DUET_V_SLACK;
    const size_t qs = hd + 8, os = hd + 24;
    float *k = malloc(nk * sizeof(float)), *v = malloc(nv * sizeof(float));
    uint16_t *k16 = malloc(nk * 2), *v16 = malloc(nv * 2);
    float *q = malloc(nq * qs * sizeof(float)), *out = malloc(nq * os * sizeof(float)), ref[256];
    for (size_t i = 0; i < nk; i++) k[i] = i / stride < (size_t)n_max ? urand(-2, 2) : NAN;
    for (size_t i = 0; i < nv; i++) v[i] = i < hd * vstride && i % vstride < (size_t)n_max ? urand(-1, 1) : NAN;
    for (size_t i = 0; i < nk; i++) k16[i] = duet_f32_to_f16(k[i]);
    for (size_t i = 0; i < nv; i++) v16[i] = duet_f32_to_f16(v[i]);
    for (size_t i = 0; i < nq * qs; i++) q[i] = urand(-2, 2);
    duet_attn_args args = {.head_dim = hd, .n_kv = -1, .kv_f16 = f16, .k = f16 ? (void *)k16 : (void *)k,
                           .v = f16 ? (void *)v16 : (void *)v, .k_stride = stride, .v_stride = vstride,
                           .scale = 1.0f / sqrtf((float)hd)};
    void *scratch = malloc(duet_attn_scratch_size(n_max, hd));
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0 && duet_simd_level() < 2) continue;
        for (size_t i = 0; i < nq * os; i++) out[i] = -1.0f;
        if (pass == 0) duet_attn_heads_avx512(out, os, q, qs, nq, n_kv, &args, scratch);
        else duet_attn_heads(out, os, q, qs, nq, n_kv, NULL, &args, scratch);
        for (int i = 0; i < nq; i++) {
            duet_attn_args one = args;
            one.n_kv = n_kv[i];
            duet_attn_head_ref(ref, q + i * qs, &one, scratch);
            int bad = 0;
            for (int d = 0; d < hd; d++) bad += !(out[i * os + d] == ref[d]);
            cr_expect(!bad, "%s hd %d f16 %d nq %d query %d n_kv %d: %d outputs differ (first %g vs %g)",
                      pass ? "duet_attn_heads" : "avx512", hd, f16, nq, i, n_kv[i], bad, out[i * os], ref[0]);
            for (size_t d = hd; d < os; d++) cr_expect_eq(out[i * os + d], -1.0f, "written past head_dim");
        }
    }
    free(scratch), free(k), free(v), free(k16), free(v16), free(q), free(out);
}

Test(model_ops, multi_query_attention_matches_one_query) {
    /* consecutive tokens (n, n+1, ...), shuffled and uneven ones, short ones */
    const int sets[][4] = {{1, 2, 3, 4},     {16, 17, 18, 19}, {61, 62, 63, 64}, {100, 101, 102, 103},
                           {297, 298, 299, 300}, {300, 5, 129, 64}, {7, 33, 15, 256}, {48, 47, 46, 45},
                           {2, 1, 65, 80}};
    const int hd[] = {64, 128};
    for (int f16 = 0; f16 < 2; f16++)
        for (size_t h = 0; h < sizeof hd / sizeof *hd; h++)
            for (size_t s = 0; s < sizeof sets / sizeof *sets; s++)
                for (int nq = 1; nq <= DUET_ATTN_MAX_Q; nq++) multi_query_case(hd[h], f16, nq, sets[s]);
}

/* nq queries of one head in the one-token arithmetic (decode-consistent
 * blocks): each output float of duet_attn_heads_single_avx512 and of the
 * dispatcher equals the one-query single path (duet_attn_head) and the
 * reference, query by query, each with its own n_kv and llama.cpp view
 * n_kv_pad. The values are those of single_tail_case, so that a wrong term
 * order in a tail shows: keys carry x and -x at the first and last q.k tail
 * dims, and each query's p.v tail (when it has one) has two positions of
 * equal keys and values y, -y. Cells never written hold NaN; optionally an
 * infinite value sits where only the longest queries see it. */
static void mq_fill(float *k, float *v, const float *q, int hd, int n_kv, size_t stride, size_t vstride, int j1) {
    const int tq = hd & ~63;
    for (int j = 0; j < n_kv; j++) {
        float *row = k + (size_t)j * stride;
        const int pair = j == j1 || j == n_kv - 1;
        for (int d = 0; d < hd; d++) row[d] = pair && j1 >= 0 ? (q[d] < 0 ? -2.0f : 2.0f) : spread();
        if (tq < hd) {
            row[tq] = pair && j1 >= 0 ? 30000.0f : ldexpf(urand(0.5f, 1.0f), 15);
            row[hd - 1] = -row[tq];
        }
        for (int d = 0; d < hd; d++) v[(size_t)d * vstride + j] = spread();
    }
}

static int multi_query_single_case(int hd, int f16, int nq, const int *n_kv, const int *n_kv_pad, int n_ctx, int inf) {
    int n_max = 0;
    for (int i = 0; i < nq; i++) n_max = n_kv[i] > n_max ? n_kv[i] : n_max;
    const size_t stride = hd * 2 + 16, vstride = n_ctx, nk = n_ctx * stride, nv = hd * vstride + DUET_V_SLACK;
    const size_t qs = hd + 8, os = hd + 24;
    float *k = malloc(nk * sizeof(float)), *v = malloc(nv * sizeof(float));
    uint16_t *k16 = malloc(nk * 2), *v16 = malloc(nv * 2);
    float *q = malloc(nq * qs * sizeof(float)), *out = malloc(nq * os * sizeof(float)), one[256], ref[256];
    for (size_t i = 0; i < nq * qs; i++) q[i] = spread() * 8;
    for (int i = 0; i < nq; i++)
        if ((hd & ~63) < hd) q[i * qs + (hd & ~63)] = q[i * qs + hd - 1] = 128;
    for (size_t i = 0; i < nk; i++) k[i] = NAN;
    for (size_t i = 0; i < nv; i++) v[i] = NAN;
    /* the p.v pair of the query with the largest n_kv (the other queries see
     * fewer positions and have their own tails over the same values) */
    int imax = 0;
    for (int i = 0; i < nq; i++) imax = n_kv[i] > n_kv[imax] ? i : imax;
    const int tv = n_kv_pad[imax] & ~63;
    mq_fill(k, v, q + imax * qs, hd, n_max, stride, vstride, tv < n_max - 1 ? tv : -1);
    if (tv < n_max - 1)
        for (int d = 0; d < hd; d++) {
            v[(size_t)d * vstride + tv] = ldexpf(urand(0.5f, 1.0f), 15);
            v[(size_t)d * vstride + n_max - 1] = -v[(size_t)d * vstride + tv];
        }
    /* inf: an infinite value at the last position, which only the queries
     * with the largest n_kv see; the others must not be touched by it */
    if (inf)
        for (int d = 0; d < hd; d += 3) v[(size_t)d * vstride + n_max - 1] = d % 2 ? INFINITY : -INFINITY;
    for (size_t i = 0; i < nk; i++) k16[i] = duet_f32_to_f16(k[i]);
    for (size_t i = 0; i < nv; i++) v16[i] = duet_f32_to_f16(v[i]);
    duet_attn_args args = {.head_dim = hd, .n_kv = -1, .single = 1, .n_kv_pad = -1, .kv_f16 = f16,
                           .k = f16 ? (void *)k16 : (void *)k, .v = f16 ? (void *)v16 : (void *)v,
                           .k_stride = stride, .v_stride = vstride, .scale = 1.0f / sqrtf((float)hd)};
    void *scratch = malloc(duet_attn_scratch_size(n_max, hd));
    int fails = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0 && duet_simd_level() < 2) continue;
        for (size_t i = 0; i < nq * os; i++) out[i] = -1.0f;
        if (pass == 0) duet_attn_heads_single_avx512(out, os, q, qs, nq, n_kv, n_kv_pad, &args, scratch);
        else duet_attn_heads(out, os, q, qs, nq, n_kv, n_kv_pad, &args, scratch);
        for (int i = 0; i < nq; i++) {
            duet_attn_args a1 = args;
            a1.n_kv = n_kv[i];
            a1.n_kv_pad = n_kv_pad[i];
            duet_attn_head(one, q + i * qs, &a1, scratch);
            duet_attn_head_ref(ref, q + i * qs, &a1, scratch);
            int bad = 0, bad_ref = 0, nan = 0;
            for (int d = 0; d < hd; d++) {
                const float x = out[i * os + d];
                bad += !(x == one[d] || (isnan(x) && isnan(one[d])));
                bad_ref += !(x == ref[d] || (isnan(x) && isnan(ref[d])));
                nan += isnan(ref[d]) && !(inf && n_kv[i] == n_max);
            }
            fails += bad || bad_ref || nan;
            cr_expect(!bad && !bad_ref && !nan,
                      "%s hd %d f16 %d nq %d query %d n_kv %d n_kv_pad %d: %d / %d outputs differ from the one-query "
                      "path / reference, %d NaN (first %g vs %g)",
                      pass ? "duet_attn_heads" : "avx512", hd, f16, nq, i, n_kv[i], n_kv_pad[i], bad, bad_ref, nan,
                      out[i * os], one[0]);
            for (size_t d = hd; d < os; d++) cr_expect_eq(out[i * os + d], -1.0f, "written past head_dim");
        }
    }
    free(scratch), free(k), free(v), free(k16), free(v16), free(q), free(out);
    return fails;
}

Test(model_ops, multi_query_single_matches_one_query) {
    /* first n_kv of each set; the queries are consecutive tokens (n, n+1, ...)
     * or uneven ones */
    const int starts[] = {1, 2, 5, 16, 29, 31, 32, 33, 45, 61, 63, 64, 65, 90, 94, 95, 96, 97, 100, 126, 127, 128,
                          129, 150, 159, 160, 161, 190, 191, 250, 254};
    const int uneven[][4] = {{300, 5, 129, 64}, {7, 33, 15, 256}, {48, 47, 46, 45}, {2, 1, 65, 80}, {96, 97, 160, 161}};
    const int hd[] = {32, 64, 96, 128};
    int fails = 0;
    for (int f16 = 0; f16 < 2; f16++)
        for (size_t h = 0; h < sizeof hd / sizeof *hd; h++)
            for (int nq = 2; nq <= DUET_ATTN_MAX_Q; nq++) {
                for (size_t s = 0; s < sizeof starts / sizeof *starts + sizeof uneven / sizeof *uneven; s++) {
                    int n_kv[DUET_ATTN_MAX_Q], pad[DUET_ATTN_MAX_Q], pad_cut[DUET_ATTN_MAX_Q], n_max = 0;
                    for (int i = 0; i < nq; i++) {
                        n_kv[i] = s < sizeof starts / sizeof *starts ? starts[s] + i
                                                                      : uneven[s - sizeof starts / sizeof *starts][i];
                        n_max = n_kv[i] > n_max ? n_kv[i] : n_max;
                    }
                    /* llama.cpp's padded views in a long context and in a
                     * context that ends at the last token (the views reach
                     * past the V^T rows: the next row, the slack), and views
                     * cut short at that end (any n_kv_pad >= n_kv is a view
                     * the kernels take) */
                    for (int i = 0; i < nq; i++) {
                        pad[i] = duet_attn_kv_pad(n_kv[i] - 1);
                        pad_cut[i] = pad[i] < n_max ? pad[i] : n_max;
                    }
                    int n_ctx = 0;
                    for (int i = 0; i < nq; i++) n_ctx = pad[i] > n_ctx ? pad[i] : n_ctx;
                    for (int inf = 0; inf < 2; inf++) {
                        fails += multi_query_single_case(hd[h], f16, nq, n_kv, pad, n_ctx + 40, inf);
                        fails += multi_query_single_case(hd[h], f16, nq, n_kv, pad, n_max, inf);
                        fails += multi_query_single_case(hd[h], f16, nq, n_kv, pad_cut, n_max, inf);
                    }
                }
            }
    cr_expect(!fails, "%d failing cases", fails);
}

/* The view depends on the position alone (not on the sequence's n_ctx, so
 * that logits do not either: test_ctx_invariance). */
Test(model_ops, kv_view_is_padded_like_llama_cpp) {
    cr_expect_eq(duet_attn_kv_pad(0), 32);
    cr_expect_eq(duet_attn_kv_pad(5), 32);
    cr_expect_eq(duet_attn_kv_pad(31), 32);
    cr_expect_eq(duet_attn_kv_pad(32), 64);
    cr_expect_eq(duet_attn_kv_pad(47), 64);
    cr_expect_eq(duet_attn_kv_pad(58), 64);
    cr_expect_eq(duet_attn_kv_pad(500), 512);
}

/* Sampler chain against brute-force computations of each transform. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "duet/sample.h"

#define NV 64

static void random_logits(float *l, int n, unsigned seed) {
    duet_rng r;
    duet_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) l[i] = (duet_rng_uniform(&r) - 0.5f) * 8;
}

static duet_sampler_params plain(float temp) {
    duet_sampler_params p = duet_sampler_default_params();
    p.temp = temp, p.top_k = 0, p.top_p = 1, p.min_p = 0;
    return p;
}

/* softmax(l / t) over the ids where keep[i] is set, in double precision. */
static void brute_dist(const float *l, const int *keep, float t, double *out) {
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < NV; i++) if (keep[i] && l[i] / t > mx) mx = l[i] / t;
    for (int i = 0; i < NV; i++) sum += out[i] = keep[i] ? exp(l[i] / t - mx) : 0;
    for (int i = 0; i < NV; i++) out[i] /= sum;
}

/* The sampler fed `l` must give softmax(expect / t) over the kept ids. */
static void assert_dist_of(duet_sampler *s, const float *l, const float *expect, const int *keep, float t) {
    float got[NV];
    double want[NV];
    duet_sampler_dist(s, l, got);
    brute_dist(expect, keep, t, want);
    for (int i = 0; i < NV; i++) cr_assert_float_eq(got[i], want[i], 1e-6, "id %d: %g vs %g", i, got[i], want[i]);
}

static void assert_dist(duet_sampler *s, const float *l, const int *keep, float t) {
    assert_dist_of(s, l, l, keep, t);
}

Test(sample, greedy_is_argmax_lowest_id_on_ties) {
    float l[NV];
    random_logits(l, NV, 1);
    l[10] = l[20] = 100;
    duet_sampler_params p = plain(0);
    duet_sampler *s = duet_sampler_new(&p, NV);
    cr_assert_eq(duet_sampler_sample(s, l), 10);
    cr_assert_eq(duet_argmax(l, NV), 10);
    float d[NV];
    duet_sampler_dist(s, l, d);
    cr_assert_eq(d[10], 1.0f);
    duet_sampler_free(s);
}

Test(sample, temperature_scales_softmax) {
    float l[NV];
    int keep[NV];
    random_logits(l, NV, 2);
    for (int i = 0; i < NV; i++) keep[i] = 1;
    duet_sampler_params p = plain(0.7f);
    duet_sampler *s = duet_sampler_new(&p, NV);
    assert_dist(s, l, keep, 0.7f);
    duet_sampler_free(s);
}

Test(sample, top_k_keeps_the_k_largest) {
    float l[NV];
    int keep[NV];
    random_logits(l, NV, 3);
    int k = 7;
    for (int i = 0; i < NV; i++) {
        int above = 0; /* brute force rank */
        for (int j = 0; j < NV; j++) above += l[j] > l[i];
        keep[i] = above < k;
    }
    duet_sampler_params p = plain(1.3f);
    p.top_k = k;
    duet_sampler *s = duet_sampler_new(&p, NV);
    assert_dist(s, l, keep, 1.3f);
    duet_sampler_free(s);
}

Test(sample, top_p_keeps_smallest_prefix_reaching_p) {
    float l[NV];
    int keep[NV], all[NV];
    double full[NV];
    random_logits(l, NV, 4);
    for (int i = 0; i < NV; i++) all[i] = 1;
    brute_dist(l, all, 1, full);
    for (int i = 0; i < NV; i++) { /* i is kept iff the mass strictly above it is < p */
        double above = 0;
        for (int j = 0; j < NV; j++) if (l[j] > l[i]) above += full[j];
        keep[i] = above < 0.6;
    }
    duet_sampler_params p = plain(1);
    p.top_p = 0.6f;
    duet_sampler *s = duet_sampler_new(&p, NV);
    assert_dist(s, l, keep, 1);
    duet_sampler_free(s);
}

Test(sample, min_p_keeps_tokens_above_fraction_of_max) {
    float l[NV];
    int keep[NV], all[NV];
    double full[NV], mx = 0;
    random_logits(l, NV, 5);
    for (int i = 0; i < NV; i++) all[i] = 1;
    brute_dist(l, all, 1, full);
    for (int i = 0; i < NV; i++) if (full[i] > mx) mx = full[i];
    for (int i = 0; i < NV; i++) keep[i] = full[i] >= 0.2 * mx - 1e-12;
    duet_sampler_params p = plain(0.9f);
    p.min_p = 0.2f;
    duet_sampler *s = duet_sampler_new(&p, NV);
    assert_dist(s, l, keep, 0.9f);
    duet_sampler_free(s);
}

Test(sample, penalties_follow_llama_cpp_rule) {
    float l[NV], adj[NV];
    int keep[NV];
    random_logits(l, NV, 6);
    for (int i = 0; i < NV; i++) keep[i] = 1;
    duet_sampler_params p = plain(1);
    p.repeat_penalty = 1.5f, p.freq_penalty = 0.25f, p.presence_penalty = 0.5f, p.penalty_last_n = 3;
    duet_sampler *s = duet_sampler_new(&p, NV);
    int hist[] = {9, 1, 2, 2}; /* 9 falls out of the window of 3 */
    for (int i = 0; i < 4; i++) duet_sampler_accept(s, hist[i]);
    memcpy(adj, l, sizeof l);
    int cnt[NV] = {0};
    cnt[1] = 1, cnt[2] = 2;
    for (int i = 0; i < NV; i++)
        if (cnt[i]) adj[i] = (adj[i] > 0 ? adj[i] / 1.5f : adj[i] * 1.5f) - cnt[i] * 0.25f - 0.5f;
    assert_dist_of(s, l, adj, keep, 1);
    duet_sampler_free(s);
}

Test(sample, same_seed_same_tokens) {
    float l[NV];
    random_logits(l, NV, 7);
    duet_sampler_params p = duet_sampler_default_params();
    p.top_k = 0, p.min_p = 0, p.top_p = 1, p.seed = 42;
    duet_sampler *a = duet_sampler_new(&p, NV), *b = duet_sampler_new(&p, NV);
    p.seed = 43;
    duet_sampler *c = duet_sampler_new(&p, NV);
    int differ = 0;
    for (int i = 0; i < 200; i++) {
        int32_t x = duet_sampler_sample(a, l), y = duet_sampler_sample(b, l), z = duet_sampler_sample(c, l);
        cr_assert_eq(x, y);
        differ += x != z;
    }
    cr_assert_gt(differ, 0);
    duet_sampler_reset(a);
    duet_sampler_reset(b);
    cr_assert_eq(duet_sampler_sample(a, l), duet_sampler_sample(b, l));
    duet_sampler_free(a), duet_sampler_free(b), duet_sampler_free(c);
}

/* Draw frequencies match the distribution: chi-square with 15 dof,
 * 99.9% quantile 37.7 (fixed seed, so the test is deterministic). */
Test(sample, draws_follow_the_distribution) {
    enum { K = 16, N = 40000 };
    float l[NV], d[NV];
    random_logits(l, NV, 8);
    duet_sampler_params p = plain(1);
    p.top_k = K, p.seed = 5;
    duet_sampler *s = duet_sampler_new(&p, NV);
    duet_sampler_dist(s, l, d);
    int count[NV] = {0};
    for (int i = 0; i < N; i++) count[duet_sampler_sample(s, l)]++;
    double chi2 = 0;
    int support = 0;
    for (int i = 0; i < NV; i++) {
        if (d[i] == 0) { cr_assert_eq(count[i], 0); continue; }
        support++;
        double e = d[i] * N;
        chi2 += (count[i] - e) * (count[i] - e) / e;
    }
    cr_assert_eq(support, K);
    cr_assert_lt(chi2, 37.7, "chi2 %g", chi2);
    duet_sampler_free(s);
}

Test(sample, rng_pick_never_draws_zero_mass) {
    duet_rng r;
    duet_rng_seed(&r, 9);
    float probs[5] = {0, 0.5f, 0, 0.5f, 0};
    for (int i = 0; i < 1000; i++) {
        int k = duet_rng_pick(&r, probs, 5);
        cr_assert(k == 1 || k == 3);
        float u = duet_rng_uniform(&r);
        cr_assert(u >= 0 && u < 1);
    }
}

Test(sample, invalid_params_rejected) {
    duet_sampler_params p = duet_sampler_default_params();
    p.top_p = 0;
    cr_assert_null(duet_sampler_new(&p, NV));
    p = duet_sampler_default_params();
    cr_assert_null(duet_sampler_new(&p, 0));
}

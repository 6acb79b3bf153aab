/* Speculative decoding's model-free parts: exactness of the verification rule
 * (chi-square against the target distribution, with power shown by a broken
 * rule), n-gram drafting against brute force, the adaptive length formula
 * against simulation. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "duet/spec.h"

#define V 8

static void random_dist(duet_rng *r, float *d, int n, float sharp) {
    double s = 0;
    for (int i = 0; i < n; i++) s += d[i] = expf(sharp * duet_rng_uniform(r));
    for (int i = 0; i < n; i++) d[i] = (float)(d[i] / s);
}

static double chi2_of(const int *count, const float *p, int n, int total) {
    double c = 0;
    for (int i = 0; i < n; i++) {
        double e = p[i] * total;
        if (e > 0) c += (count[i] - e) * (count[i] - e) / e;
    }
    return c;
}

/* Emitted tokens at positions 0 and 1 of a k=2 block, drafted from q_true but
 * verified with q_seen. Returns the larger chi-square (7 dof) of the two. */
static double run_trials(int broken, int trials) {
    duet_rng r;
    duet_rng_seed(&r, 77);
    float p[3 * V], q_true[2 * V], q_seen[2 * V], scratch[V];
    for (int i = 0; i < 3; i++) random_dist(&r, p + i * V, V, 3);
    for (int i = 0; i < 2; i++) random_dist(&r, q_true + i * V, V, 3);
    for (int i = 0; i < 2 * V; i++) q_seen[i] = broken ? 1.0f / V : q_true[i];
    int c0[V] = {0}, c1[V] = {0}, n1 = 0;
    for (int t = 0; t < trials; t++) {
        int32_t draft[2] = {duet_rng_pick(&r, q_true, V), duet_rng_pick(&r, q_true + V, V)};
        duet_spec_verdict v = duet_spec_verify(p, q_seen, draft, 2, V, &r, scratch);
        int32_t out[3] = {draft[0], draft[1], v.next};
        int n_out = v.n_accepted + 1;
        out[v.n_accepted] = v.next;
        c0[out[0]]++;
        if (n_out >= 2) c1[out[1]]++, n1++;
    }
    /* Every row of p is independent of the prefix here, so position 1 must follow p_1. */
    double a = chi2_of(c0, p, V, trials), b = chi2_of(c1, p + V, V, n1);
    return a > b ? a : b;
}

Test(spec, verification_output_follows_target_distribution) {
    double chi2 = run_trials(0, 60000);
    cr_assert_lt(chi2, 24.3, "chi2 %g (7 dof, 99.9%% quantile 24.3)", chi2); /* fixed seed: deterministic */
}

Test(spec, broken_acceptance_rule_is_detected) {
    double chi2 = run_trials(1, 60000);
    cr_assert_gt(chi2, 24.3, "a wrong q in the acceptance rule went unnoticed (chi2 %g)", chi2);
}

Test(spec, one_hot_dists_give_greedy_semantics) {
    duet_rng r;
    duet_rng_seed(&r, 1);
    float p[4 * V] = {0}, q[3 * V] = {0}, scratch[V];
    int32_t target[4] = {3, 5, 1, 7}, draft[3] = {3, 5, 2};
    for (int i = 0; i < 4; i++) p[i * V + target[i]] = 1;
    for (int i = 0; i < 3; i++) q[i * V + draft[i]] = 1;
    duet_spec_verdict v = duet_spec_verify(p, q, draft, 3, V, &r, scratch);
    cr_assert_eq(v.n_accepted, 2);
    cr_assert_eq(v.next, 1);
    draft[2] = 1;
    q[2 * V + 2] = 0, q[2 * V + 1] = 1;
    v = duet_spec_verify(p, q, draft, 3, V, &r, scratch);
    cr_assert_eq(v.n_accepted, 3);
    cr_assert_eq(v.next, 7); /* bonus token from the last target row */
}

Test(spec, ngram_draft_matches_brute_force) {
    duet_rng r;
    duet_rng_seed(&r, 3);
    int32_t hist[200], out[8], want[8];
    for (int trial = 0; trial < 300; trial++) {
        int n = 10 + (int)(duet_rng_next(&r) % 180);
        for (int i = 0; i < n; i++) hist[i] = (int32_t)(duet_rng_next(&r) % 4);
        int got = duet_ngram_draft(hist, n, 1, 3, out, 8);
        /* brute force: longest n-gram first, latest match with a continuation */
        int expect = 0;
        for (int g = 3; g >= 1 && !expect; g--)
            for (int s = n - g - 1; s >= 0 && !expect; s--) {
                if (memcmp(hist + s, hist + n - g, sizeof(int32_t) * (size_t)g)) continue;
                for (int a = s + g; a < n && expect < 8; a++) want[expect++] = hist[a];
            }
        cr_assert_eq(got, expect);
        cr_assert_arr_eq(out, want, sizeof(int32_t) * (size_t)got);
    }
}

Test(spec, expected_tokens_match_simulation) {
    duet_rng r;
    duet_rng_seed(&r, 4);
    double alpha = 0.7;
    for (int g = 0; g <= 6; g++) {
        double total = 0;
        int rounds = 100000;
        for (int t = 0; t < rounds; t++) {
            int n = 0;
            while (n < g && duet_rng_uniform(&r) < alpha) n++;
            total += n + 1; /* accepted drafts + the correction/bonus token */
        }
        cr_assert_float_eq(total / rounds, duet_spec_expected_tokens(alpha, g), 0.02, "g=%d", g);
    }
}

Test(spec, adaptive_choice_follows_costs_and_acceptance) {
    duet_spec_adapt a;
    duet_spec_adapt_init(&a, 8);
    for (int k = 1; k <= 9; k++) duet_spec_adapt_observe_target(&a, k, 0.010 + 0.0005 * k);
    duet_spec_adapt_observe_draft(&a, 10, 0.001 * 10); /* draft 10x cheaper */
    for (int i = 0; i < 50; i++) duet_spec_adapt_observe_accept(&a, 8, 8);
    cr_assert_eq(duet_spec_adapt_choose_k(&a), 8, "near-certain acceptance: longest draft");
    duet_spec_adapt_init(&a, 8);
    for (int k = 1; k <= 9; k++) duet_spec_adapt_observe_target(&a, k, 0.010);
    duet_spec_adapt_observe_draft(&a, 10, 0.01 * 10); /* draft as slow as target */
    for (int i = 0; i < 50; i++) duet_spec_adapt_observe_accept(&a, 4, 1);
    cr_assert_eq(duet_spec_adapt_choose_k(&a), 0, "slow draft, poor acceptance: no speculation");
    /* brute-force argmax of the formula for a middle case: 7 of 10 kept every
     * round means drafts 0..6 are always kept and draft 7 never is */
    duet_spec_adapt_init(&a, 8);
    for (int k = 1; k <= 9; k++) duet_spec_adapt_observe_target(&a, k, 0.010 + 0.001 * k);
    duet_spec_adapt_observe_draft(&a, 10, 0.002 * 10);
    for (int i = 0; i < 200; i++) duet_spec_adapt_observe_accept(&a, 10, 7);
    double best = 1 / 0.011;
    int want = 0;
    for (int g = 1; g <= 8; g++) {
        double rate = (1 + (g < 7 ? g : 7)) / (g * 0.002 + 0.010 + 0.001 * (g + 1));
        if (rate > best) best = rate, want = g;
    }
    cr_assert_eq(want, 7);
    cr_assert_eq(duet_spec_adapt_choose_k(&a), want);
}

/* A fresh estimate tries every length 0..k_max once (each block size gets a
 * measured cost) before it chooses by the formula. */
Test(spec, adaptive_explores_every_length_first) {
    duet_spec_adapt a;
    duet_spec_adapt_init(&a, 5);
    cr_assert_eq(duet_spec_adapt_choose_k(&a), 4, "no draft cost yet: a middle length");
    duet_spec_adapt_observe_draft(&a, 4, 0.001 * 4);
    duet_spec_adapt_observe_target(&a, 5, 0.012);
    duet_spec_adapt_observe_accept(&a, 4, 4);
    for (int want = 0; want <= 5; want++) {
        if (want == 4) continue; /* block of 5: measured above */
        cr_assert_eq(duet_spec_adapt_choose_k(&a), want);
        duet_spec_adapt_observe_target(&a, want + 1, 0.010 + 0.0005 * want);
        if (want) duet_spec_adapt_observe_accept(&a, want, want);
    }
    /* all measured, near-certain acceptance, cheap draft: the longest */
    cr_assert_eq(duet_spec_adapt_choose_k(&a), 5);
}

/* Acceptance that depends on the position: rounds of 8 drafts alternately
 * keep 1 and all 8, so alpha_0 = 1, alpha_1 = 1/2 and alpha_2.. = 1. The
 * expected tokens grow by 1/2 per extra draft and a cheap draft should draft
 * all 8; an i.i.d. alpha (9/16) would stop at 2. */
Test(spec, adaptive_choice_uses_acceptance_by_position) {
    duet_spec_adapt a;
    duet_spec_adapt_init(&a, 8);
    for (int k = 1; k <= 9; k++) duet_spec_adapt_observe_target(&a, k, 0.010 + 0.0005 * k);
    duet_spec_adapt_observe_draft(&a, 10, 0.001 * 10);
    for (int i = 0; i < 200; i++) duet_spec_adapt_observe_accept(&a, 8, i % 2 ? 8 : 1);
    cr_assert_float_eq(duet_spec_adapt_alpha_at(&a, 0), 1.0, 0.05); /* smoothed: ~33 effective rounds, prior weight 2 */
    cr_assert_float_eq(duet_spec_adapt_alpha_at(&a, 1), 0.5, 0.05);
    cr_assert_float_eq(duet_spec_adapt_alpha_at(&a, 5), 1.0, 0.05);
    cr_assert_float_eq(duet_spec_adapt_expected_tokens(&a, 8), 1 + 1 + 0.5 * 7, 0.5);
    /* brute force over g with the true rates */
    double best = 1 / 0.0105;
    int want = 0;
    for (int g = 1; g <= 8; g++) {
        double rate = (1 + 1 + 0.5 * (g - 1)) / (g * 0.001 + 0.010 + 0.0005 * (g + 1));
        if (rate > best) best = rate, want = g;
    }
    cr_assert_eq(want, 8);
    cr_assert_eq(duet_spec_adapt_choose_k(&a), want);
    /* the i.i.d. formula at the pooled rate would choose a short draft */
    double al = duet_spec_adapt_alpha(&a), iid_best = 1 / 0.0105;
    int iid = 0;
    for (int g = 1; g <= 8; g++) {
        double rate = duet_spec_expected_tokens(al, g) / (g * 0.001 + 0.010 + 0.0005 * (g + 1));
        if (rate > iid_best) iid_best = rate, iid = g;
    }
    cr_assert_lt(iid, 4);
}

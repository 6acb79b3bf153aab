/* Routing, cascades and deferral: the router math against synthetic data
 * with a known answer (a decision boundary, a share, a drifting stream), and
 * the strategies against the two outputs they must reproduce exactly when
 * they never / always hand over to the LLM. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "duet/lm_local.h"
#include "duet/model.h"
#include "duet/strategy.h"
#include "testutil.h"

static double gauss(uint64_t *x) { /* Box-Muller on a 64-bit LCG */
    *x = *x * 6364136223846793005ull + 1442695040888963407ull;
    double u = ((*x >> 11) + 1) * 0x1.0p-53;
    *x = *x * 6364136223846793005ull + 1442695040888963407ull;
    double v = (*x >> 11) * 0x1.0p-53;
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

/* Labels from a known boundary y = [2 s0 - s2 + 0.5 > 0] (signals 1, 3, 4
 * are noise): the fitted router must put its weight on 0 and 2 with the
 * right signs and ratio, and classify fresh data from the same rule. */
Test(route, fit_recovers_a_known_boundary) {
    enum { N = 4000, K = DUET_ROUTE_NSIG };
    float *x = malloc(sizeof *x * N * K);
    uint8_t *y = malloc(N);
    uint64_t s = 42;
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < K; k++) x[i * K + k] = (float)(gauss(&s) * (1 + k) + k);
        /* labels with a little noise near the boundary (logistic, steep) */
        const double m = 2 * (x[i * K + 0] - 0) - (x[i * K + 2] - 2) / 3 * 3 + 0.5;
        const double p = 1 / (1 + exp(-8 * m));
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        y[i] = (s >> 11) * 0x1.0p-53 < p;
    }
    duet_router r;
    duet_router_init(&r, DUET_ROUTER_LOGISTIC);
    duet_err err = {0};
    cr_assert_eq(duet_router_fit(&r, x, y, N, &err), 0, "%s", err.msg);
    /* back to raw units: w_k / scale_k; the boundary is 2 s0 - s2 + const */
    const double a = r.w[0] / r.scale[0], c = r.w[2] / r.scale[2];
    cr_assert_gt(a, 0);
    cr_assert_lt(c, 0);
    cr_assert_float_eq(-a / c, 2.0, 0.25, "boundary slope %g, want 2", -a / c);
    for (int k = 1; k < K; k += 2 + (k == 1))
        cr_assert_lt(fabs(r.w[k]), 0.15 * fabs(r.w[0]), "noise signal %d got weight %g", k, r.w[k]);
    /* fresh points, noiseless rule */
    int right = 0;
    for (int i = 0; i < 2000; i++) {
        float sig[K];
        for (int k = 0; k < K; k++) sig[k] = (float)(gauss(&s) * (1 + k) + k);
        const int want = 2 * sig[0] - sig[2] + 2.5 > 0;
        right += (duet_router_score(&r, sig) > 0.5f) == want;
    }
    cr_assert_gt(right, 1900, "%d/2000 right", right);
    free(x), free(y);
}

Test(route, fit_refuses_one_class) {
    float x[4 * DUET_ROUTE_NSIG] = {0};
    uint8_t y[4] = {1, 1, 1, 1};
    duet_router r;
    duet_router_init(&r, DUET_ROUTER_LOGISTIC);
    duet_err err = {0};
    cr_assert_eq(duet_router_fit(&r, x, y, 4, &err), DUET_EINVAL);
    cr_assert(strstr(err.msg, "labels"), "%s", err.msg);
}

/* Calibration: for every requested share, the share of these scores above
 * the threshold is within one item of it (ties included). */
Test(route, calibration_hits_the_share_within_one_item) {
    enum { N = 997 };
    float sc[N];
    uint64_t s = 7;
    for (int i = 0; i < N; i++) sc[i] = (float)floor(gauss(&s) * 20) / 10; /* many ties */
    duet_router r;
    duet_router_init(&r, DUET_ROUTER_THRESHOLD);
    duet_err err = {0};
    for (int q = 0; q <= 20; q++) {
        const float share = q / 20.0f;
        cr_assert_eq(duet_router_calibrate(&r, sc, N, share, &err), 0);
        int up = 0;
        for (int i = 0; i < N; i++) up += duet_router_decide(&r, sc[i]);
        /* ties can only be split by the threshold as a block: bound by the block size at the cut */
        int tie = 0;
        for (int i = 0; i < N; i++) tie += fabsf(sc[i] - r.threshold) < 0.051f;
        cr_assert(abs(up - (int)lrint(share * N)) <= (tie > 1 ? tie : 1), "share %.2f: %d of %d routed", share, up, N);
    }
    /* distinct scores: within one item exactly */
    for (int i = 0; i < N; i++) sc[i] = (float)gauss(&s);
    for (int q = 0; q <= 20; q++) {
        const float share = q / 20.0f;
        cr_assert_eq(duet_router_calibrate(&r, sc, N, share, &err), 0);
        int up = 0;
        for (int i = 0; i < N; i++) up += duet_router_decide(&r, sc[i]);
        cr_assert(abs(up - (int)lrint(share * N)) <= 1, "share %.2f: %d of %d routed", share, up, N);
    }
}

/* Online recalibration: the scores drift upward (a threshold fitted on the
 * first hour would send almost everything to the LLM later); with a window
 * of 200, the share over each later block of 500 stays near the target. A
 * fixed threshold fails the same check. */
Test(route, online_recalibration_holds_the_share_on_drift) {
    duet_router on, fixed;
    duet_router_init(&on, DUET_ROUTER_THRESHOLD);
    duet_router_init(&fixed, DUET_ROUTER_THRESHOLD);
    duet_err err = {0};
    uint64_t s = 99;
    float first[500];
    for (int i = 0; i < 500; i++) first[i] = (float)gauss(&s);
    cr_assert_eq(duet_router_calibrate(&fixed, first, 500, 0.3f, &err), 0);
    cr_assert_eq(duet_router_calibrate(&on, first, 500, 0.3f, &err), 0);
    cr_assert_eq(duet_router_online(&on, 0.3f, 200, &err), 0);
    double worst_on = 0, worst_fixed = 0;
    for (int block = 0; block < 8; block++) {
        int up_on = 0, up_fixed = 0;
        for (int i = 0; i < 500; i++) {
            const float x = (float)(gauss(&s) + 0.004 * (block * 500 + i)); /* drift: +16 sigma over the run */
            up_on += duet_router_decide(&on, x);
            up_fixed += duet_router_decide(&fixed, x);
        }
        if (block >= 1) { /* after the window filled */
            worst_on = fmax(worst_on, fabs(up_on / 500.0 - 0.3));
            worst_fixed = fmax(worst_fixed, fabs(up_fixed / 500.0 - 0.3));
        }
    }
    cr_assert_lt(worst_on, 0.06, "online share off by %.3f", worst_on);
    cr_assert_gt(worst_fixed, 0.3, "the drift was too weak to need recalibration (%.3f)", worst_fixed);
    duet_router_free(&on);
}

Test(route, router_file_round_trip_and_errors) {
    duet_router r, back;
    duet_router_init(&r, DUET_ROUTER_LOGISTIC);
    for (int i = 0; i < DUET_ROUTE_NSIG; i++) r.mean[i] = 0.5f * i, r.scale[i] = 1 + i, r.w[i] = -0.25f * i;
    r.b = 0.125f, r.threshold = 0.4375f, r.signal = 2;
    char path[] = "/tmp/duet_router_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    duet_err err = {0};
    cr_assert_eq(duet_router_save(&r, path, &err), 0, "%s", err.msg);
    cr_assert_eq(duet_router_load(&back, path, &err), 0, "%s", err.msg);
    float sig[DUET_ROUTE_NSIG] = {1, 2, 3, 4, 5};
    cr_assert_float_eq(duet_router_score(&back, sig), duet_router_score(&r, sig), 1e-6);
    cr_assert_eq(back.kind, r.kind);
    cr_assert_eq(back.signal, 2);
    cr_assert_float_eq(back.threshold, r.threshold, 1e-7);
    FILE *f = fopen(path, "w");
    fputs("duet-router v1\nkind logistic\nw 1 2 3\n", f);
    fclose(f);
    cr_assert_eq(duet_router_load(&back, path, &err), DUET_EFORMAT);
    cr_assert(strstr(err.msg, ":3:"), "the message names the line: %s", err.msg);
    unlink(path);
}

/* ---- strategies on real models -------------------------------------------------- */

typedef struct {
    int32_t ids[256];
    int origin[256];
    int n;
} collected;

static int collect(void *user, const duet_token_out *t) {
    collected *c = user;
    if (c->n < 256) c->origin[c->n] = t->origin, c->ids[c->n++] = t->id;
    return 0;
}

static void plain_ref(duet_model *m, const int32_t *prompt, int n, int n_new, collected *out) {
    duet_err err = {0};
    duet_lm *lm;
    cr_assert_eq(duet_lm_local_new(&lm, m, 128, "ref", &err), 0);
    duet_sampler *g = tu_greedy(lm->n_vocab);
    duet_strategy *s;
    cr_assert_eq(duet_strategy_plain(&s, lm, g, &err), 0);
    duet_request q = {.prompt = prompt, .n_prompt = n, .max_new = n_new, .emit = collect, .user = out};
    cr_assert_geq(duet_run(s, &q, &err), 0, "%s", err.msg);
    duet_strategy_free(s), duet_sampler_free(g), duet_lm_free(lm);
}

/* Deferral with eta <= 0 is the SLM's greedy output, with eta > 1 the LLM's,
 * token for token; in between, both kinds of tokens appear. */
Test(route, deferral_never_and_always, .timeout = 120) {
    duet_model *llm = tu_load_ref("ref-models/llama-a-F32.gguf"), *slm = tu_load_ref("ref-models/llama-a-Q4_0.gguf");
    const int32_t prompt[7] = {5, 17, 90, 3, 44, 120, 9};
    const int n_new = 40;
    collected want_slm = {0}, want_llm = {0};
    plain_ref(slm, prompt, 7, n_new, &want_slm);
    plain_ref(llm, prompt, 7, n_new, &want_llm);
    cr_assert(memcmp(want_slm.ids, want_llm.ids, sizeof(int32_t) * n_new), "the two models must differ here");
    duet_err err = {0};
    duet_lm *sl, *ll;
    cr_assert_eq(duet_lm_local_new(&sl, slm, 128, "slm", &err), 0);
    cr_assert_eq(duet_lm_local_new(&ll, llm, 128, "llm", &err), 0);
    duet_sampler *g = tu_greedy(sl->n_vocab);
    const float etas[3] = {0, 2, 0.5f};
    for (int e = 0; e < 3; e++) {
        duet_strategy *d;
        cr_assert_eq(duet_strategy_defer(&d, sl, ll, g, etas[e], &err), 0, "%s", err.msg);
        collected got = {0};
        duet_request q = {.prompt = prompt, .n_prompt = 7, .max_new = n_new, .emit = collect, .user = &got};
        cr_assert_eq(duet_run(d, &q, &err), DUET_FINISH_LENGTH, "%s", err.msg);
        duet_stats st;
        duet_strategy_stats(d, &st);
        if (e < 2) {
            const collected *want = e == 0 ? &want_slm : &want_llm;
            cr_assert_arr_eq(got.ids, want->ids, sizeof(int32_t) * n_new, "eta %g: not the %s's output", etas[e],
                             e == 0 ? "SLM" : "LLM");
            cr_assert_eq(st.deferred, e == 0 ? 0 : n_new);
            cr_assert_eq(st.by_origin[DUET_BY_DEFER], e == 0 ? 0 : n_new);
        } else {
            cr_assert_gt(st.by_origin[DUET_BY_DEFER], 0);
            cr_assert_gt(st.by_origin[DUET_BY_SLM], 0);
            /* the LLM read every token once: its evaluated tokens are the prompt + what it had not seen */
            cr_assert_leq(st.target_tokens, 7 + n_new);
        }
        duet_strategy_free(d);
    }
    duet_sampler_free(g), duet_lm_free(sl), duet_lm_free(ll);
    duet_model_free(llm), duet_model_free(slm);
}

/* Routing with a threshold no request passes is the SLM's output, with one
 * every request passes the LLM's (speculative leg); the decision and the
 * signals are in the stats. */
Test(route, routing_never_and_always, .timeout = 120) {
    duet_model *llm = tu_load_ref("ref-models/llama-a-F32.gguf"), *slm = tu_load_ref("ref-models/llama-a-Q4_0.gguf");
    const int32_t prompt[9] = {8, 16, 32, 64, 128, 256, 7, 77, 7};
    const int n_new = 24;
    collected want_slm = {0}, want_llm = {0};
    plain_ref(slm, prompt, 9, n_new, &want_slm);
    plain_ref(llm, prompt, 9, n_new, &want_llm);
    duet_err err = {0};
    duet_lm *sl, *tl, *dl;
    cr_assert_eq(duet_lm_local_new(&sl, slm, 128, "slm", &err), 0);
    cr_assert_eq(duet_lm_local_new(&tl, llm, 128, "llm", &err), 0);
    cr_assert_eq(duet_lm_local_new(&dl, slm, 128, "draft", &err), 0);
    duet_sampler *g1 = tu_greedy(sl->n_vocab), *g2 = tu_greedy(tl->n_vocab);
    duet_strategy *leg_s, *leg_l;
    cr_assert_eq(duet_strategy_plain(&leg_s, sl, g1, &err), 0);
    duet_spec_params sp = duet_spec_default_params();
    cr_assert_eq(duet_strategy_speculative(&leg_l, tl, dl, g2, &sp, &err), 0);
    for (int always = 0; always < 2; always++) {
        duet_router r;
        duet_router_init(&r, DUET_ROUTER_THRESHOLD);
        r.signal = DUET_SIG_PROMPT_NLL;
        r.threshold = always ? -INFINITY : INFINITY;
        duet_strategy *rs;
        cr_assert_eq(duet_strategy_route(&rs, sl, leg_s, leg_l, &r, &err), 0, "%s", err.msg);
        collected got = {0};
        duet_request q = {.prompt = prompt, .n_prompt = 9, .max_new = n_new, .emit = collect, .user = &got};
        cr_assert_eq(duet_run(rs, &q, &err), DUET_FINISH_LENGTH, "%s", err.msg);
        const collected *want = always ? &want_llm : &want_slm;
        cr_assert_arr_eq(got.ids, want->ids, sizeof(int32_t) * n_new, "route always=%d", always);
        duet_stats st;
        duet_strategy_stats(rs, &st);
        cr_assert_eq(st.escalated, always);
        cr_assert_eq(st.by_origin[DUET_BY_SLM], always ? 0 : n_new);
        cr_assert(st.signals[DUET_SIG_PROMPT_NLL] > 0 && st.signals[DUET_SIG_MEAN_ENTROPY] > 0, "signals missing");
        cr_assert(st.signals[DUET_SIG_NEG_TOP1] < 0 && st.signals[DUET_SIG_NEG_TOP1] >= -1);
        duet_strategy_free(rs);
    }
    duet_strategy_free(leg_s), duet_strategy_free(leg_l);
    duet_sampler_free(g1), duet_sampler_free(g2);
    duet_lm_free(sl), duet_lm_free(tl), duet_lm_free(dl);
    duet_model_free(llm), duet_model_free(slm);
}

/* The signals against a brute-force computation on a tiny hand-made row set. */
Test(route, signals_match_brute_force) {
    enum { V = 4, R = 3 };
    const float rows[R * V] = {0, 1, 2, 3, 5, 5, 5, 5, -1, 0, 4, 0};
    const int32_t prompt[4] = {0, 3, 1, 2};
    float sig[DUET_ROUTE_NSIG];
    duet_route_signals(sig, rows, R, V, prompt, 4); /* rows for positions 1, 2, 3 */
    double ent[R], mx_ent = 0, sum_ent = 0, nll = 0;
    for (int r = 0; r < R; r++) {
        double z = 0;
        for (int v = 0; v < V; v++) z += exp(rows[r * V + v]);
        ent[r] = 0;
        for (int v = 0; v < V; v++) {
            const double p = exp(rows[r * V + v]) / z;
            ent[r] -= p * log(p);
        }
        sum_ent += ent[r], mx_ent = fmax(mx_ent, ent[r]);
        if (r < R - 1) nll -= rows[r * V + prompt[r + 2]] - log(z); /* row r follows position r + 1 */
    }
    cr_assert_float_eq(sig[DUET_SIG_MEAN_ENTROPY], sum_ent / R, 1e-5);
    cr_assert_float_eq(sig[DUET_SIG_MAX_ENTROPY], mx_ent, 1e-5);
    cr_assert_float_eq(sig[DUET_SIG_PROMPT_NLL], nll / 2, 1e-5);
    double z = exp(-1) + 1 + exp(4) + 1;
    cr_assert_float_eq(sig[DUET_SIG_NEG_TOP1], -exp(4) / z, 1e-6);
    cr_assert_float_eq(sig[DUET_SIG_NEG_MARGIN], -(exp(4) - 1) / z, 1e-6);
}

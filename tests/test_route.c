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
#include "duet/gguf.h"
#include "duet/model.h"
#include "duet/quant.h"
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
    /* a file of an older duet names a prefix of the signals: it loads, the
     * signals it lacks weigh 0, and it scores as a hand computation on its own */
    f = fopen(path, "w");
    fputs("duet-router v2\nkind logistic\nsignal mean_entropy\nthreshold 0.5\nshare 0.5\n"
          "signals mean_entropy max_entropy prompt_nll neg_top1 neg_margin copy_miss top1_novel\n"
          "mean 1 1 1 1 1 1 1\nscale 2 2 2 2 2 2 2\nw 0.5 0 0 -1 0 0 0.25\nb -0.5\n",
          f);
    fclose(f);
    cr_assert_eq(duet_router_load(&back, path, &err), 0, "%s", err.msg);
    for (int i = 7; i < DUET_ROUTE_NSIG; i++) cr_assert_eq(back.w[i], 0.0f, "signal %d", i);
    float s9[DUET_ROUTE_NSIG] = {3, 9, 9, -1, 9, 9, 1, 100, 100};
    const double z = -0.5 + 0.5 * (3 - 1) / 2.0 - 1 * (-1 - 1) / 2.0 + 0.25 * (1 - 1) / 2.0;
    cr_assert_float_eq(duet_router_score(&back, s9), 1 / (1 + exp(-z)), 1e-6);
    duet_router_free(&back);
    /* more signals than this duet has, or another name, are refused naming the line */
    f = fopen(path, "w");
    fputs("duet-router v2\nkind logistic\nsignals mean_entropy max_entropy prompt_nll neg_top1 neg_margin "
          "copy_miss top1_novel content_miss content_alt next_one\n",
          f);
    fclose(f);
    cr_assert_eq(duet_router_load(&back, path, &err), DUET_EFORMAT);
    cr_assert(strstr(err.msg, ":3:") && strstr(err.msg, "more than"), "%s", err.msg);
    f = fopen(path, "w");
    fputs("duet-router v2\nkind logistic\nsignals mean_entropy prompt_nll\n", f);
    fclose(f);
    cr_assert_eq(duet_router_load(&back, path, &err), DUET_EFORMAT);
    cr_assert(strstr(err.msg, ":3:") && strstr(err.msg, "max_entropy"), "%s", err.msg);
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
        cr_assert_eq(duet_strategy_route(&rs, sl, NULL, leg_s, leg_l, &r, &err), 0, "%s", err.msg);
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
    duet_route_signals(sig, rows, R, V, prompt, 4, NULL); /* rows for positions 1, 2, 3 */
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

/* The two copy signals against a hand count: the prompt holds tokens 0 and
 * 3; the last row's most likely token (2) is not among them. */
Test(route, copy_signals_match_a_hand_count) {
    enum { V = 4 };
    const float rows[2 * V] = {3, 0, 0, 0, -1, 0, 4, 0.5f};
    const int32_t prompt[3] = {0, 3, 3};
    float sig[DUET_ROUTE_NSIG];
    duet_route_signals(sig, rows, 2, V, prompt, 3, NULL);
    const double z = exp(-1) + 1 + exp(4) + exp(0.5);
    cr_assert_float_eq(sig[DUET_SIG_COPY_MISS], 1 - (exp(-1) + exp(0.5)) / z, 1e-6);
    cr_assert_eq(sig[DUET_SIG_TOP1_NOVEL], 1.0f);
    const int32_t grounded[3] = {2, 3, 3}; /* now the top token occurs in the prompt */
    duet_route_signals(sig, rows, 2, V, grounded, 3, NULL);
    cr_assert_eq(sig[DUET_SIG_TOP1_NOVEL], 0.0f);
    cr_assert_float_eq(sig[DUET_SIG_COPY_MISS], 1 - (exp(4) + exp(0.5)) / z, 1e-6);
}

/* The first token of " word" alone: in a byte-level BPE the pre-tokenizer
 * cuts before every " word", so it is the word's first token in any text. */
static int32_t first_token(const duet_vocab *v, const char *word) {
    char buf[64];
    snprintf(buf, sizeof buf, " %s", word);
    int32_t ids[16];
    const int n = duet_tokenize(v, buf, strlen(buf), ids, 16, 0);
    cr_assert_gt(n, 0, "cannot tokenize '%s'", buf);
    return ids[0];
}

/* The content signals on the shipped tokenizer against a hand count: the
 * prompt's content words (after a space, 3 letters or more, not a function
 * word) are listed here by reading the sentence; the row puts its top token
 * on " she" (in the prompt, a function word), then " the", then the first
 * token of " max" and of " tree". */
Test(route, content_signals_match_a_hand_count) {
    duet_vocab *v = NULL;
    duet_err err = {0};
    cr_assert_eq(duet_vocab_load_file(&v, DUET_SRC_DIR "/models/tok.gguf", &err), 0, "%s", err.msg);
    duet_route_words *w = NULL;
    cr_assert_eq(duet_route_words_new(&w, v, &err), 0, "%s", err.msg);
    const char *text = "one day, lily and her dog max went to the park. she saw a big tree with a squirrel. then";
    const char *content_words[] = {"day", "lily", "dog", "max", "went", "park", "saw", "big", "tree", "squirrel"};
    const char *function_words[] = {"and", "her", "the", "she", "with", "then"};
    int32_t *prompt = NULL;
    const int n = duet_tokenize_alloc(v, text, strlen(text), DUET_TOK_ADD_BOS, &prompt);
    cr_assert_gt(n, 10);
    const int V = duet_vocab_n(v);
    float *row = malloc(sizeof *row * (size_t)V); /* (V) the distribution after the prompt */
    for (int i = 0; i < V; i++) row[i] = -10;
    const int32_t she = first_token(v, "she"), the = first_token(v, "the"), max = first_token(v, "max"),
                  tree = first_token(v, "tree"), lily = first_token(v, "lily");
    row[she] = 5, row[the] = 4, row[max] = 3, row[tree] = 2;
    double z = 0;
    for (int i = 0; i < V; i++) z += exp(row[i]);
    float sig[DUET_ROUTE_NSIG];
    duet_route_signals(sig, row, 1, V, prompt, n, w);
    cr_assert_eq(sig[DUET_SIG_TOP1_NOVEL], 0.0f, "\" she\" is in the prompt");
    cr_assert_eq(sig[DUET_SIG_CONTENT_MISS], 1.0f, "\" she\" begins no content word");
    cr_assert_float_eq(sig[DUET_SIG_CONTENT_ALT], exp(3) / z, 1e-6, "the best other content token is \" max\"");
    /* the top token on a content word: no miss, and the alternative is the next content word */
    row[lily] = 6, z += exp(6) - exp(-10);
    duet_route_signals(sig, row, 1, V, prompt, n, w);
    cr_assert_eq(sig[DUET_SIG_CONTENT_MISS], 0.0f);
    cr_assert_float_eq(sig[DUET_SIG_CONTENT_ALT], exp(3) / z, 1e-6, "\" max\": \" she\" and \" the\" are no content");
    /* every hand-listed word is content, every function word is not */
    uint8_t *seen = calloc((size_t)V, 1);
    for (size_t i = 0; i < sizeof content_words / sizeof *content_words; i++) {
        for (int k = 0; k < V; k++) row[k] = -10;
        row[first_token(v, content_words[i])] = 1;
        duet_route_signals(sig, row, 1, V, prompt, n, w);
        cr_assert_eq(sig[DUET_SIG_CONTENT_MISS], 0.0f, "'%s' is a content word of the prompt", content_words[i]);
        seen[first_token(v, content_words[i])] = 1;
    }
    for (size_t i = 0; i < sizeof function_words / sizeof *function_words; i++) {
        cr_assert(duet_route_is_function_word(function_words[i], strlen(function_words[i])), "%s", function_words[i]);
        if (seen[first_token(v, function_words[i])]) continue; /* shares its first token with a content word */
        for (int k = 0; k < V; k++) row[k] = -10;
        row[first_token(v, function_words[i])] = 1;
        duet_route_signals(sig, row, 1, V, prompt, n, w);
        cr_assert_eq(sig[DUET_SIG_CONTENT_MISS], 1.0f, "'%s' is a function word", function_words[i]);
    }
    /* a word absent from the prompt is no content word of it */
    for (int k = 0; k < V; k++) row[k] = -10;
    row[first_token(v, "elephant")] = 1;
    duet_route_signals(sig, row, 1, V, prompt, n, w);
    cr_assert_eq(sig[DUET_SIG_CONTENT_MISS], 1.0f);
    /* without a word view every prompt token counts: content_miss is top1_novel */
    row[she] = 5, row[the] = 4;
    duet_route_signals(sig, row, 1, V, prompt, n, NULL);
    cr_assert_eq(sig[DUET_SIG_CONTENT_MISS], sig[DUET_SIG_TOP1_NOVEL]);
    cr_assert_eq(sig[DUET_SIG_CONTENT_MISS], 0.0f);
    free(seen), free(row), free(prompt);
    duet_route_words_free(w);
    duet_vocab_free(v);
}

/* A boundary that lives in the hidden state (h3 - h7 > 0.2; the signals are
 * noise): the router fitted with the hidden state finds it, one fitted on the
 * signals alone cannot, and the file keeps it. */
Test(route, fit_with_hidden_state_recovers_a_hidden_boundary) {
    enum { N = 1500, K = DUET_ROUTE_NSIG, H = 16 };
    float *x = malloc(sizeof *x * N * K), *h = malloc(sizeof *h * N * H);
    uint8_t *y = malloc(N);
    uint64_t s = 5;
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < K; k++) x[i * K + k] = (float)gauss(&s);
        for (int k = 0; k < H; k++) h[i * H + k] = (float)(gauss(&s) * 0.5 + k);
        y[i] = h[i * H + 3] - 3 - (h[i * H + 7] - 7) > 0.2f;
    }
    duet_router r, plain, back;
    duet_router_init(&r, DUET_ROUTER_LOGISTIC);
    duet_router_init(&plain, DUET_ROUTER_LOGISTIC);
    duet_err err = {0};
    cr_assert_eq(duet_router_fit_h(&r, x, h, H, y, N, &err), 0, "%s", err.msg);
    cr_assert_eq(duet_router_fit(&plain, x, y, N, &err), 0, "%s", err.msg);
    cr_assert_eq(r.n_hidden, H);
    cr_assert_gt(r.h_w[3], 0);
    cr_assert_lt(r.h_w[7], 0);
    for (int k = 0; k < H; k++)
        if (k != 3 && k != 7) cr_assert_lt(fabsf(r.h_w[k]), 0.2f * r.h_w[3], "noise dimension %d: %g", k, r.h_w[k]);
    int right = 0, right_plain = 0;
    for (int i = 0; i < 1000; i++) {
        float sig[K], hid[H];
        for (int k = 0; k < K; k++) sig[k] = (float)gauss(&s);
        for (int k = 0; k < H; k++) hid[k] = (float)(gauss(&s) * 0.5 + k);
        const int want = hid[3] - 3 - (hid[7] - 7) > 0.2f;
        right += (duet_router_score_h(&r, sig, hid) > 0.5f) == want;
        right_plain += (duet_router_score(&plain, sig) > 0.5f) == want;
    }
    cr_assert_gt(right, 950, "%d/1000 right", right);
    cr_assert_lt(right_plain, 800, "the signals alone should not find it (%d/1000)", right_plain);
    char path[] = "/tmp/duet_router_h_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(duet_router_save(&r, path, &err), 0, "%s", err.msg);
    cr_assert_eq(duet_router_load(&back, path, &err), 0, "%s", err.msg);
    cr_assert_eq(back.n_hidden, H);
    cr_assert_float_eq(duet_router_score_h(&back, x, h), duet_router_score_h(&r, x, h), 1e-6);
    /* a hidden row cut short is an error that names its line */
    FILE *f = fopen(path, "r");
    char text[1 << 15];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = 0;
    char *hw = strstr(text, "\nh_w ");
    cr_assert(hw);
    char *end = strchr(hw + 1, '\n');
    char *cut = end;
    for (int k = 0; k < 3; k++) /* drop the last three numbers */
        do cut--;
        while (*cut != ' ');
    memmove(cut, end, strlen(end) + 1);
    f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    cr_assert_eq(duet_router_load(&back, path, &err), DUET_EFORMAT);
    cr_assert(strstr(err.msg, "h_w needs 16"), "%s", err.msg);
    unlink(path);
    duet_router_free(&r), duet_router_free(&plain);
    free(x), free(h), free(y);
}

/* The hidden state duet_eval_hidden returns is the output matrix's input:
 * hidden . W_out[v] is logit v (a brute-force product over the dequantized
 * rows); its logits are duet_eval's bit for bit, and a batch of two
 * sequences gives each the hidden rows it gets alone. */
Test(route, hidden_state_times_output_matrix_is_the_logits, .timeout = 60) {
    duet_model *m = tu_load_ref("ref-models/llama-a-F32.gguf");
    const duet_hparams *hp = duet_model_hparams(m);
    const int E = hp->n_embd, V = duet_model_n_vocab(m);
    const duet_gguf_tensor *t = duet_gguf_find_tensor(duet_model_gguf(m), "output.weight");
    if (!t) t = duet_gguf_find_tensor(duet_model_gguf(m), "token_embd.weight");
    cr_assert(t);
    const int32_t a[6] = {5, 17, 90, 3, 44, 120}, b[4] = {9, 8, 7, 6};
    float *lg = malloc(sizeof *lg * 6 * V), *lg2 = malloc(sizeof *lg2 * 6 * V), *hid = malloc(sizeof *hid * 6 * E);
    float *row = malloc(sizeof *row * E);
    duet_seq *s;
    duet_err err = {0};
    cr_assert_eq(duet_seq_new(&s, m, 64, &err), 0);
    cr_assert_eq(duet_eval_hidden(s, a, 6, lg, hid, 3, &err), 0, "%s", err.msg);
    duet_rollback(s, 0);
    cr_assert_eq(duet_eval(s, a, 6, lg2, 3, &err), 0);
    cr_assert_arr_eq(lg, lg2, sizeof *lg * 3 * V, "duet_eval_hidden changed the logits");
    const char *w = t->data;
    for (int r = 0; r < 3; r++)
        for (int v = 0; v < V; v += 7) {
            if (t->type == DUET_TYPE_F32) memcpy(row, w + (size_t)v * E * sizeof *row, sizeof *row * E);
            else duet_dequantize_row(t->type, w + (size_t)v * duet_row_size(t->type, E), row, E);
            double dot = 0;
            for (int e = 0; e < E; e++) dot += (double)hid[(size_t)r * E + e] * row[e];
            cr_assert_float_eq(lg[(size_t)r * V + v], dot, 1e-3 * (1 + fabs(dot)), "row %d logit %d", r, v);
        }
    /* batched with another sequence: the same hidden rows */
    duet_seq *s2;
    cr_assert_eq(duet_seq_new(&s2, m, 64, &err), 0);
    duet_rollback(s, 0);
    int32_t tok[10];
    duet_seq *seqs[10];
    uint8_t want[10];
    int na = 0, nb = 0; /* a's tokens interleaved with b's */
    for (int i = 0; i < 10; i++) {
        const int take_a = (i % 2 == 0 && na < 6) || nb == 4;
        tok[i] = take_a ? a[na] : b[nb];
        seqs[i] = take_a ? s : s2;
        want[i] = take_a ? na >= 3 : 0;
        take_a ? na++ : nb++;
    }
    float *hb = malloc(sizeof *hb * 3 * E), *lb = malloc(sizeof *lb * 3 * V);
    duet_batch batch = {.n_tokens = 10, .tokens = tok, .seqs = seqs, .want = want, .logits = lb, .hidden = hb};
    cr_assert_eq(duet_eval_batch(m, &batch, &err), 0, "%s", err.msg);
    cr_assert_arr_eq(hb, hid, sizeof *hb * 3 * E, "batched hidden rows differ from the solo ones");
    duet_seq_free(s), duet_seq_free(s2);
    free(lg), free(lg2), free(hid), free(row), free(hb), free(lb);
    duet_model_free(m);
}

/* A route strategy whose router reads the hidden state scores the request
 * with the mean of the SLM's final hidden states over the prompt: the score
 * in its stats is the router's on that mean, pooled here from
 * duet_eval_hidden. A signal model of another width is refused. */
Test(route, routing_on_the_pooled_hidden_state, .timeout = 60) {
    duet_model *slm = tu_load_ref("ref-models/llama-a-Q4_0.gguf");
    const int E = duet_model_hparams(slm)->n_embd, V = duet_model_n_vocab(slm);
    const int32_t prompt[9] = {8, 16, 32, 64, 128, 256, 7, 77, 7};
    duet_err err = {0};
    duet_router r;
    duet_router_init(&r, DUET_ROUTER_LOGISTIC);
    r.n_hidden = E;
    r.h_mean = calloc((size_t)E * 3, sizeof *r.h_mean);
    r.h_scale = r.h_mean + E, r.h_w = r.h_mean + 2 * E;
    for (int k = 0; k < E; k++) r.h_scale[k] = 1, r.h_w[k] = (k % 3 == 0) ? 0.5f : -0.25f;
    r.threshold = INFINITY; /* the SLM answers: the decision is not what is tested */
    /* the reference score */
    duet_seq *s;
    cr_assert_eq(duet_seq_new(&s, slm, 64, &err), 0);
    float *lg = malloc(sizeof *lg * 9 * V), *hid = malloc(sizeof *hid * 9 * E), *pooled = malloc(sizeof *pooled * E);
    cr_assert_eq(duet_eval_hidden(s, prompt, 9, lg, hid, 9, &err), 0, "%s", err.msg);
    float sig[DUET_ROUTE_NSIG];
    duet_route_signals(sig, lg, 9, V, prompt, 9, NULL);
    duet_route_pool_hidden(pooled, hid, 9, E);
    const float want = duet_router_score_h(&r, sig, pooled);
    cr_assert(want != duet_router_score(&r, sig), "the hidden state must move the score");
    duet_lm *sl;
    cr_assert_eq(duet_lm_local_new(&sl, slm, 64, "slm", &err), 0);
    duet_sampler *g = tu_greedy(V);
    duet_strategy *leg, *rs;
    cr_assert_eq(duet_strategy_plain(&leg, sl, g, &err), 0);
    cr_assert_eq(duet_strategy_route(&rs, sl, NULL, leg, leg, &r, &err), 0, "%s", err.msg);
    duet_request q = {.prompt = prompt, .n_prompt = 9, .max_new = 4};
    cr_assert_eq(duet_run(rs, &q, &err), DUET_FINISH_LENGTH, "%s", err.msg);
    duet_stats st;
    duet_strategy_stats(rs, &st);
    cr_assert_float_eq(st.confidence, want, 1e-6, "score %g, want %g", st.confidence, want);
    duet_strategy_free(rs);
    r.n_hidden = E + 1; /* a router fitted on another model */
    cr_assert_eq(duet_strategy_route(&rs, sl, NULL, leg, leg, &r, &err), DUET_EINVAL);
    cr_assert(strstr(err.msg, "hidden state"), "%s", err.msg);
    r.n_hidden = E;
    duet_router_free(&r);
    duet_strategy_free(leg), duet_sampler_free(g), duet_lm_free(sl), duet_seq_free(s);
    free(lg), free(hid), free(pooled);
    duet_model_free(slm);
}

/* Fusion: every combination rule against a brute-force double-precision
 * computation; contrastive decoding never leaves the plausibility set;
 * proxy-tuning with identical tuned and base models is the LLM alone; a
 * mixture with all its weight on one model is that model. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "duet/lm_local.h"
#include "duet/model.h"
#include "duet/strategy.h"
#include "testutil.h"

enum { V = 7 };

static void random_row(uint64_t *x, float *row, int n, float scale) {
    for (int i = 0; i < n; i++) {
        *x = *x * 6364136223846793005ull + 1442695040888963407ull;
        row[i] = scale * (float)((*x >> 40) % 2000) / 1000.0f - scale;
    }
}

static void log_softmax(const float *z, double *out, int n) {
    double m = -INFINITY, s = 0;
    for (int i = 0; i < n; i++) m = z[i] > m ? z[i] : m;
    for (int i = 0; i < n; i++) s += exp(z[i] - m);
    for (int i = 0; i < n; i++) out[i] = z[i] - m - log(s);
}

/* The combined distributions (softmax of the scores) against brute force. */
Test(fusion, rules_match_brute_force) {
    uint64_t x = 5;
    for (int trial = 0; trial < 50; trial++) {
        float L[V], S[V], B[V], out[V];
        random_row(&x, L, V, 4), random_row(&x, S, V, 4), random_row(&x, B, V, 4);
        double lL[V], lS[V], lB[V], want[V];
        log_softmax(L, lL, V), log_softmax(S, lS, V), log_softmax(B, lB, V);
        const float w = (trial % 9) / 8.0f, alpha = (trial % 5) / 8.0f, beta = (trial % 3) * 0.5f;
        for (int rule = 0; rule < 4; rule++) {
            duet_fuse_params p = {.rule = rule, .weight = w, .alpha = alpha, .beta = beta};
            const float *rows[3] = {L, S, B};
            duet_err err = {0};
            cr_assert_eq(duet_fuse_logits(out, rows, V, &p, &err), 0, "%s", err.msg);
            double mxL = -INFINITY;
            for (int i = 0; i < V; i++) mxL = lL[i] > mxL ? lL[i] : mxL;
            for (int i = 0; i < V; i++) {
                switch (rule) {
                case DUET_FUSE_MIX: want[i] = log(w * exp(lL[i]) + (1 - w) * exp(lS[i])); break;
                case DUET_FUSE_POE: want[i] = w * lL[i] + (1 - w) * lS[i]; break;
                case DUET_FUSE_CD:
                    want[i] = lL[i] < mxL + log(alpha) ? -INFINITY
                              : beta > 0             ? (1 + beta) * lL[i] - beta * lS[i]
                                                     : lL[i] - lS[i];
                    break;
                case DUET_FUSE_PROXY: want[i] = lL[i] + lS[i] - lB[i]; break;
                }
            }
            /* compare as distributions: softmax of both */
            double zw = 0, zo = 0, mw = -INFINITY, mo = -INFINITY;
            for (int i = 0; i < V; i++) mw = want[i] > mw ? want[i] : mw, mo = out[i] > mo ? out[i] : mo;
            for (int i = 0; i < V; i++) zw += exp(want[i] - mw), zo += exp(out[i] - mo);
            for (int i = 0; i < V; i++) {
                const double pw = exp(want[i] - mw) / zw, po = exp(out[i] - mo) / zo;
                cr_assert_float_eq(po, pw, 1e-5, "rule %d trial %d id %d: %g vs %g", rule, trial, i, po, pw);
                cr_assert_eq(isinf(out[i]) && out[i] < 0, isinf(want[i]) && want[i] < 0, "rule %d: the excluded set", rule);
            }
        }
    }
}

/* Sampling contrastive scores at temperature 1 (no filters): every token
 * drawn is plausible under the LLM. */
Test(fusion, contrastive_stays_in_the_plausibility_set) {
    uint64_t x = 11;
    duet_sampler_params sp = duet_sampler_default_params();
    sp.temp = 1, sp.top_k = 0, sp.top_p = 1, sp.min_p = 0, sp.seed = 3;
    duet_sampler *smp = duet_sampler_new(&sp, V);
    int outside = 0, draws = 0;
    for (int trial = 0; trial < 200; trial++) {
        float L[V], S[V], out[V];
        random_row(&x, L, V, 3), random_row(&x, S, V, 3);
        duet_fuse_params p = {.rule = DUET_FUSE_CD, .alpha = 0.2f, .beta = trial % 2 ? 0.5f : 0};
        const float *rows[2] = {L, S};
        cr_assert_eq(duet_fuse_logits(out, rows, V, &p, NULL), 0);
        float mx = -INFINITY;
        for (int i = 0; i < V; i++) mx = L[i] > mx ? L[i] : mx;
        for (int k = 0; k < 20; k++, draws++) {
            const int32_t t = duet_sampler_sample(smp, out);
            outside += expf(L[t] - mx) < 0.2f - 1e-6f; /* p_L(t) / max p_L */
        }
    }
    cr_assert_eq(outside, 0, "%d of %d draws outside the plausibility set", outside, draws);
    duet_sampler_free(smp);
}

Test(fusion, bad_parameters_are_named) {
    duet_err err = {0};
    duet_fuse_params p = duet_fuse_default_params(DUET_FUSE_MIX);
    p.weight = 1.5f;
    cr_assert_eq(duet_fuse_params_check(&p, &err), DUET_EINVAL);
    cr_assert(strstr(err.msg, "weight"), "%s", err.msg);
    p = duet_fuse_default_params(DUET_FUSE_CD);
    p.alpha = -1;
    cr_assert_eq(duet_fuse_params_check(&p, &err), DUET_EINVAL);
    cr_assert(strstr(err.msg, "alpha"), "%s", err.msg);
}

/* ---- strategies on real models --------------------------------------------------- */

typedef struct {
    int32_t ids[128];
    int n;
} collected;

static int collect(void *user, const duet_token_out *t) {
    collected *c = user;
    if (c->n < 128) c->ids[c->n++] = t->id;
    return 0;
}

static void run(duet_strategy *s, const int32_t *prompt, int n, int n_new, collected *out) {
    duet_err err = {0};
    duet_request q = {.prompt = prompt, .n_prompt = n, .max_new = n_new, .emit = collect, .user = out};
    cr_assert_eq(duet_run(s, &q, &err), DUET_FINISH_LENGTH, "%s", err.msg);
}

Test(fusion, degenerate_combinations_are_one_model, .timeout = 120) {
    duet_model *big = tu_load_ref("ref-models/llama-a-F32.gguf"), *small = tu_load_ref("ref-models/llama-a-Q4_0.gguf");
    duet_err err = {0};
    duet_lm *L, *S, *B, *P;
    cr_assert_eq(duet_lm_local_new(&L, big, 96, "llm", &err), 0);
    cr_assert_eq(duet_lm_local_new(&S, small, 96, "tuned", &err), 0);
    cr_assert_eq(duet_lm_local_new(&B, small, 96, "base", &err), 0);
    cr_assert_eq(duet_lm_local_new(&P, small, 96, "plain-slm", &err), 0);
    duet_sampler_params sp = duet_sampler_default_params();
    sp.temp = 0;
    duet_sampler *g = duet_sampler_new(&sp, L->n_vocab);
    const int32_t prompt[6] = {12, 99, 4, 300, 41, 7};
    const int n_new = 32;
    collected want_llm = {0}, want_slm = {0};
    duet_strategy *pl, *ps;
    cr_assert_eq(duet_strategy_plain(&pl, L, g, &err), 0);
    cr_assert_eq(duet_strategy_plain(&ps, P, g, &err), 0);
    run(pl, prompt, 6, n_new, &want_llm);
    run(ps, prompt, 6, n_new, &want_slm);
    cr_assert(memcmp(want_llm.ids, want_slm.ids, sizeof(int32_t) * n_new), "the models must differ here");

    struct { duet_fuse_params p; const collected *want; const char *what; } cases[] = {
        {{.rule = DUET_FUSE_PROXY}, &want_llm, "proxy with tuned == base"},
        {{.rule = DUET_FUSE_MIX, .weight = 1}, &want_llm, "mixture, weight 1 on the LLM"},
        {{.rule = DUET_FUSE_MIX, .weight = 0}, &want_slm, "mixture, weight 1 on the SLM"},
        {{.rule = DUET_FUSE_POE, .weight = 1}, &want_llm, "product, weight 1 on the LLM"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        duet_lm *lms[3] = {L, S, B};
        duet_strategy *f;
        cr_assert_eq(duet_strategy_fuse(&f, lms, duet_fuse_n_models(cases[c].p.rule), g, &cases[c].p, &err), 0, "%s",
                     err.msg);
        collected got = {0};
        run(f, prompt, 6, n_new, &got);
        cr_assert_arr_eq(got.ids, cases[c].want->ids, sizeof(int32_t) * n_new, "%s: not that model's output",
                         cases[c].what);
        duet_stats st;
        duet_strategy_stats(f, &st);
        cr_assert_eq(st.by_origin[DUET_BY_FUSED], n_new);
        duet_strategy_free(f);
    }
    /* a strict contrastive run differs from both and is refused a vocabulary mismatch */
    duet_model *other = tu_load_ref("ref-models/qwen2-b-F32.gguf");
    duet_lm *O;
    cr_assert_eq(duet_lm_local_new(&O, other, 96, "qwen", &err), 0);
    duet_lm *bad[2] = {L, O};
    duet_fuse_params cd = duet_fuse_default_params(DUET_FUSE_CD);
    duet_strategy *f;
    if (O->n_vocab != L->n_vocab) {
        cr_assert_eq(duet_strategy_fuse(&f, bad, 2, g, &cd, &err), DUET_EINVAL);
        cr_assert(strstr(err.msg, "vocabularies differ"), "%s", err.msg);
    }
    duet_lm_free(O);
    duet_model_free(other);
    duet_strategy_free(pl), duet_strategy_free(ps);
    duet_sampler_free(g);
    duet_lm_free(L), duet_lm_free(S), duet_lm_free(B), duet_lm_free(P);
    duet_model_free(big), duet_model_free(small);
}

/* Speculative decoding end to end on the reference models: greedy output
 * equals plain greedy decoding for every draft source and length, and sampled
 * output follows the target's exact distribution (chi-square against the
 * distribution computed by brute force from the target alone). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/generate.h"
#include "duet/lm_local.h"
#include "duet/model.h"
#include "duet/speculative.h"
#include "testutil.h"

/* Sanitizer builds run 10-50x slower: fewer prompts and samples there (the
 * release build runs the full sizes). */

typedef struct {
    int32_t ids[256];
    int n;
} collected;

static int collect(void *user, int32_t tok) {
    collected *c = user;
    if (c->n < 256) c->ids[c->n++] = tok;
    return 0;
}

/* Plain greedy reference, then speculative runs with every draft setup. */
static void check_greedy_ctx(const char *target_name, const char *draft_name, int n_ctx, int draft_ctx, int n_new) {
    duet_model *tm = tu_load_ref(target_name), *dm = tu_load_ref(draft_name);
    duet_seq *ts, *ds;
    duet_err err = {0};
    cr_assert_eq(duet_seq_new(&ts, tm, n_ctx, &err), 0);
    cr_assert_eq(duet_seq_new(&ds, dm, draft_ctx, &err), 0);
    duet_lm tl = duet_lm_from_seq(ts), dl = duet_lm_from_seq(ds);
    duet_rng r;
    duet_rng_seed(&r, 11);
    for (int prompt_i = 0; prompt_i < (SANITIZED ? 2 : 6); prompt_i++) {
        int32_t prompt[40];
        int n_prompt = 1 + (int)(duet_rng_next(&r) % 39);
        for (int i = 0; i < n_prompt; i++) prompt[i] = 3 + (int32_t)(duet_rng_next(&r) % 500);
        if (prompt_i % 2) /* a repetitive prompt gives the n-gram drafter something to find */
            for (int i = 8; i < n_prompt; i++) prompt[i] = prompt[i % 8];
        collected want = {0};
        duet_sampler *s = tu_greedy(tl.n_vocab);
        duet_rollback(ts, 0);
        int rc_plain = duet_generate(&tl, s, prompt, n_prompt, n_new, collect, &want, NULL, &err);
        duet_sampler_free(s);
        /* the reference itself must work, or "both failed alike" would pass */
        cr_assert_geq(rc_plain, 0, "plain generation failed: %s", err.msg);
        cr_assert_gt(want.n, 0, "plain generation produced nothing");
        const char *sources[] = {"model", "ngram", "model+ngram"};
        for (int src = 0; src < 3; src++)
            for (int k = 0; k <= 9; k += SANITIZED ? 3 : 1) { /* k = 9: adaptive */
                duet_spec_params sp = duet_spec_default_params();
                sp.use_model = src != 1, sp.use_ngram = src != 0, sp.ngram_min = 1;
                sp.draft_max = k == 9 ? 8 : k + 1, sp.adaptive = k == 9;
                collected got = {0};
                duet_sampler *g = tu_greedy(tl.n_vocab);
                duet_rollback(ts, 0);
                duet_rollback(ds, 0);
                int rc = duet_speculative_generate(&tl, &dl, g, &sp, prompt, n_prompt, n_new, collect, &got, NULL, &err);
                duet_sampler_free(g);
                cr_assert_geq(rc, 0, "%s k=%d: rc %d (%s)", sources[src], k, rc, err.msg);
                cr_assert_eq(got.n, want.n, "%s k=%d prompt %d: %d vs %d tokens", sources[src], k, prompt_i, got.n, want.n);
                cr_assert_arr_eq(got.ids, want.ids, sizeof(int32_t) * (size_t)want.n,
                                 "%s draft length %d prompt %d: output differs from plain greedy", sources[src], k + 1, prompt_i);
            }
    }
    duet_seq_free(ts), duet_seq_free(ds);
    duet_model_free(tm), duet_model_free(dm);
}

static void check_greedy(const char *target_name, const char *draft_name, int n_ctx, int n_new) {
    check_greedy_ctx(target_name, draft_name, n_ctx, n_ctx, n_new);
}

Test(speculative, greedy_equals_plain_llama, .timeout = 120) {
    check_greedy("ref-models/llama-a-F32.gguf", "ref-models/llama-a-Q4_0.gguf", 512, 24);
}

Test(speculative, greedy_equals_plain_qwen2_quantized, .timeout = 120) {
    check_greedy("ref-models/qwen2-b-Q8_0.gguf", "ref-models/qwen2-b-Q4_K_M.gguf", 512, 24);
}

/* The context ends inside a draft block: drafts are cut to what fits and the
 * output still equals plain decoding up to the end of the context. */
Test(speculative, draft_longer_than_remaining_context, .timeout = 60) {
    check_greedy("ref-models/llama-a-F32.gguf", "ref-models/llama-a-Q4_0.gguf", 44, 60);
}

/* The draft's context (40) ends long before the target's: model drafting
 * stops where the draft cannot hold the text (n-grams and plain decoding go
 * on), with no error and the same output as plain decoding. */
Test(speculative, draft_context_shorter_than_target, .timeout = 60) {
    check_greedy_ctx("ref-models/llama-a-F32.gguf", "ref-models/llama-a-Q4_0.gguf", 512, 40, 40);
}

/* Joint distribution of the first three sampled tokens, with top-k 3:
 * 27 cells, computed exactly from the target, against speculative samples. */
Test(speculative, sampled_tokens_follow_target_distribution, .timeout = 120) {
    duet_model *tm = tu_load_ref("ref-models/llama-a-F32.gguf"), *dm = tu_load_ref("ref-models/llama-a-Q4_0.gguf");
    duet_seq *ts, *ds;
    duet_err err = {0};
    cr_assert_eq(duet_seq_new(&ts, tm, 64, &err), 0);
    cr_assert_eq(duet_seq_new(&ds, dm, 64, &err), 0);
    int nv = duet_model_n_vocab(tm);
    const int32_t prompt[4] = {100, 200, 300, 400};
    duet_sampler_params par = duet_sampler_default_params();
    par.temp = 2.0f, par.top_k = 3, par.top_p = 1, par.min_p = 0;
    duet_sampler *s = duet_sampler_new(&par, nv);

    /* exact reference: p(t1) p(t2 | t1) p(t3 | t1 t2) over the top-3 supports */
    float *logits = malloc(sizeof(float) * (size_t)nv), *d1 = malloc(sizeof(float) * (size_t)nv),
          *d2 = malloc(sizeof(float) * (size_t)nv), *d3 = malloc(sizeof(float) * (size_t)nv);
    int32_t cell_tok[27][3];
    double cell_p[27];
    int n_cells = 0;
    cr_assert_eq(duet_eval(ts, prompt, 4, logits, 1, &err), 0);
    duet_sampler_dist(s, logits, d1);
    for (int a = 0; a < nv; a++) {
        if (d1[a] == 0) continue;
        int32_t ta = a;
        duet_rollback(ts, 4);
        duet_eval(ts, &ta, 1, logits, 1, &err);
        duet_sampler_dist(s, logits, d2);
        for (int b = 0; b < nv; b++) {
            if (d2[b] == 0) continue;
            int32_t tb = b;
            duet_rollback(ts, 5);
            duet_eval(ts, &tb, 1, logits, 1, &err);
            duet_sampler_dist(s, logits, d3);
            for (int c = 0; c < nv; c++) {
                if (d3[c] == 0) continue;
                cr_assert_lt(n_cells, 27);
                cell_tok[n_cells][0] = a, cell_tok[n_cells][1] = b, cell_tok[n_cells][2] = c;
                cell_p[n_cells++] = (double)d1[a] * d2[b] * d3[c];
            }
        }
    }
    cr_assert_eq(n_cells, 27);

    enum { RUNS = SANITIZED ? 600 : 3000 };
    int count[27] = {0};
    duet_lm tl = duet_lm_from_seq(ts), dl = duet_lm_from_seq(ds);
    duet_spec_params sp = duet_spec_default_params();
    sp.draft_max = 2, sp.adaptive = 0;
    for (int run = 0; run < RUNS; run++) {
        par.seed = 1000 + (uint64_t)run;
        duet_sampler *g = duet_sampler_new(&par, nv);
        duet_rollback(ts, 0), duet_rollback(ds, 0);
        collected got = {0};
        cr_assert_eq(duet_speculative_generate(&tl, &dl, g, &sp, prompt, 4, 3, collect, &got, NULL, &err), 3, "%s", err.msg);
        duet_sampler_free(g);
        int found = 0;
        for (int c = 0; c < 27 && !found; c++)
            if (!memcmp(cell_tok[c], got.ids, sizeof cell_tok[c])) count[c]++, found = 1;
        cr_assert(found, "sampled a token outside the top-k support");
    }
    double chi2 = 0;
    for (int c = 0; c < 27; c++) {
        double e = cell_p[c] * RUNS;
        chi2 += (count[c] - e) * (count[c] - e) / e;
    }
    /* 26 degrees of freedom: 99.9% quantile 54.05; seeds are fixed. */
    cr_assert_lt(chi2, 54.05, "chi-square %g: speculative samples do not follow the target", chi2);
    cr_log_info("chi-square %.2f over 27 cells, %d runs", chi2, RUNS);
    free(logits), free(d1), free(d2), free(d3);
    duet_sampler_free(s);
    duet_seq_free(ts), duet_seq_free(ds);
    duet_model_free(tm), duet_model_free(dm);
}

Test(speculative, incompatible_vocabularies_are_refused) {
    char a[512], b[512], args[1200];
    snprintf(args, sizeof args, "generate -m %s --draft %s --tokens '1 2 3' -n 4 --temp 0 2>&1",
             tu_data("ref-models/llama-a-F32.gguf", a, sizeof a), tu_data("ref-models/qwen2-b-F32.gguf", b, sizeof b));
    char *out = NULL;
    cr_assert_eq(tu_run_duet(args, &out), 1);
    cr_assert(out && strstr(out, "vocabularies differ"), "%s", out ? out : "");
    free(out);
}

/* K-quant and F16 targets: verification blocks of every size give the same
 * tokens as one-token decoding. */
Test(speculative, greedy_equals_plain_kquant_and_f16_targets, .timeout = 180) {
    check_greedy("ref-models/llama-a-Q4_K_M.gguf", "ref-models/llama-a-Q4_0.gguf", 512, 24);
    check_greedy("ref-models/qwen2-b-F16.gguf", "ref-models/qwen2-b-Q6_K.gguf", 512, 24);
}

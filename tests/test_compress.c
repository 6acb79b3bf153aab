/* Prompt compression (include/duet/compress.h) against a brute-force
 * reference written here: each token's surprisal from a one-token-at-a-time
 * evaluation of the prompt, the kept set from counting, for every candidate,
 * how many candidates outrank it (no sort), and the count from the rule's
 * integer form ceil(k * n / 10). Also: ratio 1 is the identity, first and
 * tail tokens are always kept, the lm is left at its position, ties go to the
 * earlier position, the text helper, and errors for bad input. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/compress.h"
#include "duet/lm_local.h"
#include "duet/tok.h"
#include "testutil.h"

#define SLM DUET_SRC_DIR "/models/slm.gguf" /* llama, context 256, byte-level BPE without BOS */

static const char story[] =
    "Once upon a time, there was a little girl named Lily. She loved to play with her red ball in the park. "
    "One day, a big dog ran to her and took the ball. Lily was sad, but the dog came back and dropped the ball "
    "at her feet. They played together until the sun went down.";

typedef struct {
    duet_model *m;
    duet_vocab *v;
    duet_lm *lm;
    int32_t *tok; /* (n) */
    int n;
} fixture;

static fixture setup(int n_ctx) {
    fixture f = {0};
    duet_err err = {0};
    f.m = tu_load_path(SLM);
    cr_assert_eq(duet_vocab_load(&f.v, duet_model_gguf(f.m), &err), 0, "%s", err.msg);
    cr_assert_eq(duet_lm_local_new(&f.lm, f.m, n_ctx, "slm", &err), 0, "%s", err.msg);
    f.n = duet_tokenize_alloc(f.v, story, strlen(story), 0, &f.tok);
    cr_assert_gt(f.n, 40, "the story has %d tokens", f.n);
    return f;
}

static void teardown(fixture *f) {
    free(f->tok);
    duet_lm_free(f->lm);
    duet_vocab_free(f->v);
    duet_model_free(f->m);
}

/* -log p(tok_i | tok_<i) for i >= 1, each row from a one-token duet_eval,
 * normalised in double here. ref[0] = NAN. */
static double *brute_surprisal(duet_model *m, const int32_t *tok, int n) {
    duet_err err = {0};
    duet_seq *s;
    /* the lm's context size: the attention's last partial block of positions
     * rounds differently when it meets the end of a smaller cache */
    cr_assert_eq(duet_seq_new(&s, m, 0, &err), 0, "%s", err.msg);
    const int V = duet_model_n_vocab(m);
    float *row = malloc(sizeof *row * (size_t)V); /* (V) */
    double *ref = malloc(sizeof *ref * (size_t)n); /* (n) */
    ref[0] = NAN;
    for (int i = 0; i + 1 < n; i++) {
        cr_assert_eq(duet_eval(s, tok + i, 1, row, 1, &err), 0, "%s", err.msg);
        double mx = row[0], z = 0;
        for (int j = 1; j < V; j++) mx = row[j] > mx ? row[j] : mx;
        for (int j = 0; j < V; j++) z += exp((double)row[j] - mx);
        ref[i + 1] = mx + log(z) - row[tok[i + 1]];
    }
    free(row);
    duet_seq_free(s);
    return ref;
}

/* keep[i] = 1 for the reference's kept positions; returns the smallest gap in
 * surprisal between a kept and a dropped candidate (how safe the comparison
 * with the engine's batched prefill is). */
static double brute_keep(const double *s, int n, int head, int tail, int n_kept, unsigned char *keep) {
    const int lo = head < n ? head : n, hi = n - tail > lo ? n - tail : lo;
    int budget = n_kept - (n - (hi - lo));
    for (int i = 0; i < n; i++) keep[i] = i < lo || i >= hi;
    for (int i = lo; i < hi; i++) {
        int above = 0; /* candidates ranked before i */
        for (int j = lo; j < hi; j++) above += s[j] > s[i] || (s[j] == s[i] && j < i);
        keep[i] |= above < budget;
    }
    double gap = INFINITY;
    for (int i = lo; i < hi; i++)
        for (int j = lo; j < hi; j++)
            if (keep[i] && !keep[j] && fabs(s[i] - s[j]) < gap) gap = fabs(s[i] - s[j]);
    return gap;
}

/* Both modes of the lm: the default batched prefill rounds differently from
 * one-token evaluation (tolerance relative to the surprisal); in
 * decode-consistent mode its logits are the one-token ones bit for bit, so only
 * the float-vs-double log-softmax differs. */
static void check_brute_force(int consistent) {
    fixture f = setup(0);
    duet_err err = {0};
    duet_lm_set_decode_consistent(f.lm, consistent);
    const double abs_tol = consistent ? 1e-4 : 5e-3, rel_tol = consistent ? 1e-5 : 3e-4;
    double *ref = brute_surprisal(f.m, f.tok, f.n);
    unsigned char *keep = malloc((size_t)f.n);
    int exact = 0; /* ratios whose kept set was compared exactly */
    for (int tenths = 1; tenths <= 10; tenths++) {
        duet_compress_params p = {.keep_ratio = tenths / 10.0, .keep_head = 1, .keep_tail = 4};
        /* the count rule in integers: max(head + tail, ceil(tenths * n / 10)) */
        int want = (tenths * f.n + 9) / 10;
        if (want < 5) want = 5;
        duet_compress_result r;
        cr_assert_eq(duet_compress_tokens(f.lm, f.tok, f.n, &p, &r, &err), 0, "%s", err.msg);
        cr_assert_eq(duet_lm_pos(f.lm), 0, "the lm is rolled back");
        cr_assert_eq(r.n_in, f.n);
        cr_assert_eq(r.n_kept, want, "ratio %.1f of %d: kept %d, want %d", p.keep_ratio, f.n, r.n_kept, want);
        cr_assert_eq(duet_compress_n_kept(f.n, &p), want);
        cr_assert(isnan(r.surprisal[0]));
        for (int i = 1; i < f.n; i++)
            cr_assert_float_eq(r.surprisal[i], ref[i], abs_tol + rel_tol * ref[i],
                               "surprisal %d: %.6f vs brute force %.6f", i, r.surprisal[i], ref[i]);
        const double gap = brute_keep(ref, f.n, 1, 4, want, keep);
        exact += gap > 4 * abs_tol;
        int k = 0;
        for (int i = 0; i < f.n; i++) {
            if (!keep[i]) continue;
            cr_assert_lt(k, r.n_kept);
            if (gap > 4 * abs_tol) /* no near tie at the boundary: the sets must be equal */
                cr_assert_eq(r.index[k], i, "ratio %.1f: kept[%d] = %d, brute force %d", p.keep_ratio, k, r.index[k], i);
            k++;
        }
        for (int j = 0; j < r.n_kept; j++) {
            cr_assert(j == 0 || r.index[j] > r.index[j - 1], "kept order");
            cr_assert_eq(r.ids[j], f.tok[r.index[j]], "kept ids are the prompt's");
            cr_assert(keep[r.index[j]] || gap <= 4 * abs_tol, "position %d kept, brute force drops it", r.index[j]);
        }
        duet_compress_result_free(&r);
    }
    cr_assert_geq(exact, 8, "only %d of 10 ratios without a near tie: choose another prompt", exact);
    free(keep);
    free(ref);
    teardown(&f);
}

Test(compress, matches_brute_force) { check_brute_force(0); }
Test(compress, matches_brute_force_decode_consistent) { check_brute_force(1); }

/* The segmented variant against a reference that re-evaluates, for every
 * segment, the kept tokens so far and the segment one token at a time from
 * an empty sequence (decode-consistent lm: the same logits bit for bit). */
Test(compress, segmented_matches_brute_force) {
    fixture f = setup(0);
    duet_err err = {0};
    duet_lm_set_decode_consistent(f.lm, 1);
    const int head = 1, tail = 4, seg = 16, n = f.n;
    const int lo = head, hi = n - tail, n_cand = hi - lo;
    int32_t *ctx = malloc(sizeof *ctx * (size_t)n);          /* (n) kept tokens so far + a segment */
    double *ref = malloc(sizeof *ref * (size_t)n);           /* (n) reference surprisal */
    unsigned char *keep = malloc((size_t)n), *seg_keep = malloc((size_t)n);
    int exact = 0, ratios = 0;
    for (int tenths = 2; tenths <= 8; tenths += 2, ratios++) {
        duet_compress_params p = {.keep_ratio = tenths / 10.0, .keep_head = head, .keep_tail = tail, .segment = seg};
        const int want = (tenths * n + 9) / 10, budget = want - head - tail;
        for (int i = 0; i < n; i++) keep[i] = i < lo || i >= hi;
        double min_gap = INFINITY;
        for (int a = lo; a < hi; a += seg) {
            const int b = a + seg < hi ? a + seg : hi;
            int m = 0;
            for (int i = 0; i < a; i++)
                if (keep[i]) ctx[m++] = f.tok[i];
            const int n_prefix = m;
            for (int i = a; i < b; i++) ctx[m++] = f.tok[i];
            double *s = brute_surprisal(f.m, ctx, m);
            for (int i = a; i < b; i++) ref[i] = s[n_prefix + i - a];
            free(s);
            /* this segment's share: round(B * end / C) - round(B * start / C), in integers */
            const int k = (2 * budget * (b - lo) + n_cand) / (2 * n_cand) - (2 * budget * (a - lo) + n_cand) / (2 * n_cand);
            for (int i = 0; i < n; i++) seg_keep[i] = 0;
            const double gap = brute_keep(ref + a, b - a, 0, 0, k, seg_keep);
            min_gap = gap < min_gap ? gap : min_gap;
            for (int i = a; i < b; i++) keep[i] = seg_keep[i - a];
        }
        duet_compress_result r;
        cr_assert_eq(duet_compress_tokens(f.lm, f.tok, n, &p, &r, &err), 0, "%s", err.msg);
        cr_assert_eq(duet_lm_pos(f.lm), 0, "the lm is rolled back");
        cr_assert_eq(r.n_kept, want, "ratio %.1f: kept %d, want %d", p.keep_ratio, r.n_kept, want);
        for (int i = lo; i < hi; i++)
            cr_assert_float_eq(r.surprisal[i], ref[i], 1e-4 + 1e-5 * ref[i], "surprisal %d: %.6f vs %.6f", i,
                               r.surprisal[i], ref[i]);
        for (int i = hi; i < n; i++) cr_assert(isnan(r.surprisal[i]), "the tail is not scored");
        if (min_gap > 4e-4) {
            exact++;
            int k = 0;
            for (int i = 0; i < n; i++)
                if (keep[i]) cr_assert_eq(r.index[k++], i, "ratio %.1f: kept[%d] = %d, brute force %d", p.keep_ratio,
                                          k - 1, r.index[k - 1], i);
        }
        for (int j = 0; j < r.n_kept; j++) cr_assert_eq(r.ids[j], f.tok[r.index[j]]);
        duet_compress_result_free(&r);
    }
    cr_assert_geq(exact, ratios - 1, "only %d of %d ratios without a near tie", exact, ratios);
    free(ctx);
    free(ref);
    free(keep);
    free(seg_keep);
    teardown(&f);
}

Test(compress, ratio_one_is_identity) {
    fixture f = setup(0);
    duet_err err = {0};
    duet_compress_params p = duet_compress_default_params();
    p.keep_ratio = 1.0;
    duet_compress_result r;
    cr_assert_eq(duet_compress_tokens(f.lm, f.tok, f.n, &p, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(r.n_kept, f.n);
    for (int i = 0; i < f.n; i++) cr_assert(r.index[i] == i && r.ids[i] == f.tok[i]);
    duet_compress_result_free(&r);
    char *text = NULL;
    cr_assert_eq(duet_compress_text(f.lm, f.v, story, strlen(story), &p, &text, NULL, &err), 0, "%s", err.msg);
    cr_assert_str_eq(text, story);
    free(text);
    teardown(&f);
}

Test(compress, head_and_tail_always_kept) {
    fixture f = setup(0);
    duet_err err = {0};
    /* a ratio below (head + tail) / n keeps exactly the head and the tail */
    duet_compress_params p = {.keep_ratio = 0.01, .keep_head = 2, .keep_tail = 6};
    duet_compress_result r;
    cr_assert_eq(duet_compress_tokens(f.lm, f.tok, f.n, &p, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(r.n_kept, 8);
    const int want[8] = {0, 1, f.n - 6, f.n - 5, f.n - 4, f.n - 3, f.n - 2, f.n - 1};
    for (int k = 0; k < 8; k++) cr_assert_eq(r.index[k], want[k]);
    duet_compress_result_free(&r);
    /* head + tail longer than the prompt: everything */
    p = (duet_compress_params){.keep_ratio = 0.1, .keep_head = 1, .keep_tail = 8};
    cr_assert_eq(duet_compress_tokens(f.lm, f.tok, 5, &p, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(r.n_kept, 5);
    duet_compress_result_free(&r);
    /* one token */
    cr_assert_eq(duet_compress_tokens(f.lm, f.tok, 1, &p, &r, &err), 0, "%s", err.msg);
    cr_assert(r.n_kept == 1 && r.ids[0] == f.tok[0]);
    duet_compress_result_free(&r);
    teardown(&f);
}

Test(compress, lm_with_context_is_rolled_back) {
    fixture f = setup(0);
    duet_err err = {0};
    cr_assert_eq(duet_lm_eval(f.lm, f.tok, 3, NULL, 0, &err), 0, "%s", err.msg);
    duet_compress_params p = duet_compress_default_params();
    duet_compress_result r;
    cr_assert_eq(duet_compress_tokens(f.lm, f.tok + 3, f.n - 3, &p, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(duet_lm_pos(f.lm), 3);
    cr_assert_eq(r.n_kept, duet_compress_n_kept(f.n - 3, &p));
    duet_compress_result_free(&r);
    teardown(&f);
}

/* duet_compress_select on hand-made surprisals: the ranking, NAN last, ties
 * to the earlier position. */
Test(compress, select_ties_and_nan) {
    duet_err err = {0};
    /* positions 0 and 7 forced (head 1, tail 1); candidates 1..6 */
    const float s[8] = {NAN, 1, 2, 2, 1, 3, NAN, 9};
    struct {
        double ratio;
        int n;
        int idx[8];
    } cases[] = {
        {0.25, 2, {0, 7}},
        {0.375, 3, {0, 5, 7}},             /* 3: the highest */
        {0.5, 4, {0, 2, 5, 7}},            /* 2 at 2 and 3: the earlier */
        {0.625, 5, {0, 2, 3, 5, 7}},
        {0.75, 6, {0, 1, 2, 3, 5, 7}},     /* 1 at 1 and 4: the earlier */
        {0.875, 7, {0, 1, 2, 3, 4, 5, 7}}, /* NAN last */
        {1.0, 8, {0, 1, 2, 3, 4, 5, 6, 7}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        duet_compress_params p = {.keep_ratio = cases[c].ratio, .keep_head = 1, .keep_tail = 1};
        int idx[8];
        cr_assert_eq(duet_compress_select(s, 8, &p, idx, &err), cases[c].n, "ratio %g", cases[c].ratio);
        for (int k = 0; k < cases[c].n; k++)
            cr_assert_eq(idx[k], cases[c].idx[k], "ratio %g: [%d] = %d, want %d", cases[c].ratio, k, idx[k],
                         cases[c].idx[k]);
    }
}

Test(compress, count_rule) {
    duet_compress_params p = {.keep_ratio = 0.7, .keep_head = 1, .keep_tail = 2};
    cr_assert_eq(duet_compress_n_kept(10, &p), 7); /* not 8: 0.7 * 10 is 7.000000000000001 in doubles */
    p.keep_ratio = 0.71;
    cr_assert_eq(duet_compress_n_kept(10, &p), 8);
    p.keep_ratio = 0.1;
    cr_assert_eq(duet_compress_n_kept(10, &p), 3); /* head + tail */
    cr_assert_eq(duet_compress_n_kept(2, &p), 2);
    cr_assert_eq(duet_compress_n_kept(0, &p), 0);
    p.keep_ratio = 1.0 / 3;
    cr_assert_eq(duet_compress_n_kept(300, &p), 100);
    cr_assert_eq(duet_compress_n_kept(301, &p), 101);
    p.keep_ratio = 0;
    cr_assert_eq(duet_compress_n_kept(10, &p), -1);
}

Test(compress, text_helper) {
    fixture f = setup(0);
    duet_err err = {0};
    duet_compress_params p = {.keep_ratio = 0.5, .keep_head = 1, .keep_tail = 4};
    char *text = NULL;
    duet_compress_result r;
    cr_assert_eq(duet_compress_text(f.lm, f.v, story, strlen(story), &p, &text, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(r.n_in, f.n);
    cr_assert_eq(r.n_kept, (f.n + 1) / 2);
    /* the text is the kept pieces, concatenated */
    size_t len = 0;
    for (int k = 0; k < r.n_kept; k++) {
        size_t piece_len;
        char piece[64];
        const int pl = duet_token_to_piece(f.v, r.ids[k], piece, sizeof piece, 0);
        cr_assert(pl >= 0 && pl < (int)sizeof piece);
        piece_len = (size_t)pl;
        cr_assert(!memcmp(text + len, piece, piece_len), "piece %d", k);
        len += piece_len;
    }
    cr_assert_eq(strlen(text), len);
    cr_assert_lt(len, strlen(story));
    free(text);
    duet_compress_result_free(&r);
    teardown(&f);
}

Test(compress, errors) {
    fixture f = setup(16); /* a short context */
    duet_err err = {0};
    duet_compress_result r;
    const double bad_ratio[] = {0, -0.1, 1.0001, NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad_ratio / sizeof bad_ratio[0]; i++) {
        duet_compress_params p = {.keep_ratio = bad_ratio[i], .keep_head = 1, .keep_tail = 1};
        cr_assert_eq(duet_compress_tokens(f.lm, f.tok, 8, &p, &r, &err), DUET_EINVAL, "ratio %g", bad_ratio[i]);
        cr_assert(strstr(err.msg, "keep_ratio"), "%s", err.msg);
        cr_assert_eq(r.ids, NULL);
    }
    duet_compress_params p = duet_compress_default_params();
    p.keep_tail = -1;
    cr_assert_eq(duet_compress_tokens(f.lm, f.tok, 8, &p, &r, &err), DUET_EINVAL);
    cr_assert(strstr(err.msg, "keep_tail"), "%s", err.msg);
    p = duet_compress_default_params();
    p.segment = -1;
    cr_assert_eq(duet_compress_tokens(f.lm, f.tok, 8, &p, &r, &err), DUET_EINVAL);
    cr_assert(strstr(err.msg, "segment"), "%s", err.msg);
    p = duet_compress_default_params();
    cr_assert_eq(duet_compress_tokens(f.lm, f.tok, 0, &p, &r, &err), DUET_EINVAL);
    cr_assert(strstr(err.msg, "empty"), "%s", err.msg);
    /* 17 tokens into a context of 16 */
    cr_assert_eq(duet_compress_tokens(f.lm, f.tok, 17, &p, &r, &err), DUET_ERANGE);
    cr_assert(strstr(err.msg, "context"), "%s", err.msg);
    cr_assert_eq(duet_compress_tokens(f.lm, f.tok, 16, &p, &r, &err), 0, "%s", err.msg); /* 16 fit */
    duet_compress_result_free(&r);
    /* a token outside the vocabulary */
    const int32_t bad[3] = {1, 5000, 2};
    cr_assert_eq(duet_compress_tokens(f.lm, bad, 3, &p, &r, &err), DUET_ERANGE, "%s", err.msg);
    cr_assert_eq(duet_lm_pos(f.lm), 0);
    /* text: nothing to compress */
    char *text = (char *)1;
    cr_assert_eq(duet_compress_text(f.lm, f.v, "", 0, &p, &text, NULL, &err), DUET_EINVAL);
    cr_assert_eq(text, NULL);
    cr_assert(strstr(err.msg, "empty"), "%s", err.msg);
    teardown(&f);
}

/* duet compress --json: one object whose counts follow the rule and whose
 * text is the library's; a prompt longer than the SLM's context is exit 1
 * with a message. */
Test(compress, cli) {
    fixture f = setup(0);
    duet_err err = {0};
    duet_compress_params p = {.keep_ratio = 0.4, .keep_head = 1, .keep_tail = 3};
    char *want = NULL;
    cr_assert_eq(duet_compress_text(f.lm, f.v, story, strlen(story), &p, &want, NULL, &err), 0, "%s", err.msg);
    char args[2048], *out = NULL;
    snprintf(args, sizeof args, "compress -m %s --ratio 0.4 --keep-tail 3 -t 1 -p '%s' --json 2>/dev/null", SLM, story);
    cr_assert_eq(tu_run_duet(args, &out), 0);
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithOpts(out, &end, 0);
    cr_assert(o, "not JSON: %s", out);
    while (*end == '\n') end++;
    cr_assert_eq(*end, 0, "one object only: %s", out);
    cr_assert_eq(cJSON_GetObjectItem(o, "original_tokens")->valueint, f.n);
    cr_assert_eq(cJSON_GetObjectItem(o, "kept_tokens")->valueint, (4 * f.n + 9) / 10);
    cr_assert_str_eq(cJSON_GetObjectItem(o, "text")->valuestring, want);
    cJSON_Delete(o);
    free(out);
    free(want);
    /* 300 words: more tokens than the context of 256 */
    char *long_prompt = malloc(300 * 4 + 1);
    for (int i = 0; i < 300; i++) memcpy(long_prompt + 4 * i, "cat ", 4);
    long_prompt[1200] = 0;
    snprintf(args, sizeof args, "compress -m %s --ratio 0.5 -p '%s' 2>&1", SLM, long_prompt);
    out = NULL;
    cr_assert_eq(tu_run_duet(args, &out), 1);
    cr_assert(out && strstr(out, "duet compress: ") && strstr(out, "context"), "%s", out ? out : "");
    free(out);
    free(long_prompt);
    /* a file that cannot be read, an empty prompt: exit 1 with a message */
    snprintf(args, sizeof args, "compress -m %s --ratio 0.5 -f /nonexistent/prompt.txt 2>&1", SLM);
    out = NULL;
    cr_assert_eq(tu_run_duet(args, &out), 1);
    cr_assert(out && strstr(out, "cannot read /nonexistent/prompt.txt"), "%s", out ? out : "");
    free(out);
    snprintf(args, sizeof args, "compress -m %s --ratio 0.5 -p '' 2>&1", SLM);
    out = NULL;
    cr_assert_eq(tu_run_duet(args, &out), 1);
    cr_assert(out && strstr(out, "empty prompt"), "%s", out ? out : "");
    free(out);
    teardown(&f);
}

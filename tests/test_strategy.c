/* The strategy driver: many requests of mixed strategies stepped together,
 * one batched pass per model per step, each request's output exactly its
 * solo output; finish reasons; composition (a cascade whose legs are
 * strategies); the logit-combination helper against a brute-force
 * reference; the defects a review found (adaptive n-gram length, a target
 * vocabulary larger than the draft's, library validation). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/generate.h"
#include "duet/lm_local.h"
#include "duet/model.h"
#include "duet/strategy.h"
#include "testutil.h"

#define MAXTOK 256

typedef struct {
    int32_t ids[MAXTOK];
    int origin[MAXTOK];
    int n;
} collected;

static int collect(void *user, const duet_token_out *t) {
    collected *c = user;
    if (c->n < MAXTOK) c->origin[c->n] = t->origin, c->ids[c->n++] = t->id;
    return 0;
}

static duet_sampler *sampler(int n_vocab, float temp, uint64_t seed) {
    duet_sampler_params sp = duet_sampler_default_params();
    sp.temp = temp, sp.seed = seed;
    return duet_sampler_new(&sp, n_vocab);
}

/* One request's setup: which strategy, with what. */
typedef struct {
    int kind; /* 0 plain, 1 spec model, 2 spec ngram, 3 spec model+ngram */
    float temp;
    int k, adaptive;
} setup;

typedef struct {
    duet_lm *t, *d;
    duet_sampler *s;
    duet_strategy *st;
    collected out;
} live;

static void make(live *L, const setup *u, duet_model *tm, duet_model *dm, int n_ctx, uint64_t seed) {
    duet_err err = {0};
    memset(L, 0, sizeof *L);
    cr_assert_eq(duet_lm_local_new(&L->t, tm, n_ctx, "llm", &err), 0, "%s", err.msg);
    cr_assert_eq(duet_lm_local_new(&L->d, dm, n_ctx, "draft", &err), 0, "%s", err.msg);
    L->s = sampler(L->t->n_vocab, u->temp, seed);
    if (u->kind == 0) {
        cr_assert_eq(duet_strategy_plain(&L->st, L->t, L->s, &err), 0, "%s", err.msg);
    } else {
        duet_spec_params p = duet_spec_default_params();
        p.use_model = u->kind != 2, p.use_ngram = u->kind >= 2, p.ngram_min = 1;
        p.draft_max = u->k, p.adaptive = u->adaptive;
        cr_assert_eq(duet_strategy_speculative(&L->st, L->t, L->d, L->s, &p, &err), 0, "%s", err.msg);
    }
}

static void unmake(live *L) {
    duet_strategy_free(L->st);
    duet_sampler_free(L->s);
    duet_lm_free(L->t);
    duet_lm_free(L->d);
}

static void prompt_of(int i, int32_t *p, int *n) {
    uint64_t x = 1234567 + (uint64_t)i * 7919;
    *n = 3 + i * 5 % 17;
    for (int j = 0; j < *n; j++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        p[j] = 3 + (int32_t)((x >> 33) % 400);
    }
    if (i % 3 == 2) /* repetitive: something for the n-gram drafter */
        for (int j = 4; j < *n; j++) p[j] = p[j % 4];
}

/* 8 requests of mixed strategies, temperatures and lengths, stepped
 * together by one driver: every step runs at most one pass per model, and
 * every request's tokens equal what it produces alone. */
static void check_mixed(const char *target, const char *draft, int n_new) {
    duet_model *tm = tu_load_ref(target), *dm = tu_load_ref(draft);
    const setup setups[8] = {
        {0, 0, 0, 0},    {1, 0, 8, 1},    {2, 0, 8, 1}, {3, 0, 8, 1},
        {0, 0.9f, 0, 0}, {1, 0.9f, 3, 0}, {1, 0, 2, 0}, {2, 0.7f, 4, 0},
    };
    const int n_ctx = 128;
    live solo[8], batch[8];
    int32_t prompts[8][32];
    int n_prompt[8];
    duet_err err = {0};
    for (int i = 0; i < 8; i++) {
        prompt_of(i, prompts[i], &n_prompt[i]);
        make(&solo[i], &setups[i], tm, dm, n_ctx, 100 + (uint64_t)i);
        duet_request req = {.prompt = prompts[i], .n_prompt = n_prompt[i], .max_new = n_new - i,
                            .emit = collect, .user = &solo[i].out};
        int rc = duet_run(solo[i].st, &req, &err);
        cr_assert(rc >= 0, "solo %d: %s", i, err.msg);
        cr_assert_gt(solo[i].out.n, 0, "solo %d generated nothing", i);
    }
    duet_driver *d;
    cr_assert_eq(duet_driver_new(&d, &err), 0);
    for (int i = 0; i < 8; i++) {
        make(&batch[i], &setups[i], tm, dm, n_ctx, 100 + (uint64_t)i);
        duet_request req = {.prompt = prompts[i], .n_prompt = n_prompt[i], .max_new = n_new - i,
                            .emit = collect, .user = &batch[i].out};
        cr_assert_eq(duet_strategy_reset(batch[i].st, &req, &err), 0, "%s", err.msg);
        cr_assert_eq(duet_driver_add(d, batch[i].st, &err), 0);
    }
    int steps = 0, max_active = 0;
    long passes_before = 0, blocks_before = 0, max_blocks = 0;
    while (duet_driver_n_active(d) > 0) {
        int active = duet_driver_n_active(d);
        max_active = active > max_active ? active : max_active;
        cr_assert_geq(duet_driver_step(d, &err), 0, "%s", err.msg);
        long passes, blocks;
        duet_driver_counts(d, &passes, &blocks);
        cr_assert_leq(passes - passes_before, 2, "step %d ran %ld passes: one per model expected", steps,
                      passes - passes_before);
        if (blocks - blocks_before > max_blocks) max_blocks = blocks - blocks_before;
        passes_before = passes, blocks_before = blocks;
        cr_assert_lt(++steps, 10000);
    }
    cr_assert_eq(max_active, 8);
    cr_assert_geq(max_blocks, 6, "the requests were never batched together (at most %ld blocks in a step)", max_blocks);
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(duet_strategy_done(batch[i].st), DUET_FINISH_LENGTH, "request %d: finish %s", i,
                     duet_finish_name(duet_strategy_done(batch[i].st)));
        cr_assert_eq(batch[i].out.n, solo[i].out.n, "request %d: %d tokens batched, %d alone", i, batch[i].out.n,
                     solo[i].out.n);
        cr_assert_arr_eq(batch[i].out.ids, solo[i].out.ids, sizeof(int32_t) * (size_t)solo[i].out.n,
                         "request %d (kind %d, temp %.1f): batched output differs from its solo output", i,
                         setups[i].kind, setups[i].temp);
        unmake(&solo[i]), unmake(&batch[i]);
    }
    duet_driver_free(d);
    duet_model_free(tm), duet_model_free(dm);
}

Test(strategy, eight_mixed_requests_batched_equal_solo_f32, .timeout = 300) {
    check_mixed("ref-models/llama-a-F32.gguf", "ref-models/llama-a-Q4_0.gguf", SANITIZED ? 24 : 48);
}

Test(strategy, eight_mixed_requests_batched_equal_solo_quantized, .timeout = 300) {
    check_mixed("ref-models/qwen2-b-Q8_0.gguf", "ref-models/qwen2-b-Q4_K_M.gguf", SANITIZED ? 16 : 40);
}

/* A request that reaches its context ends with `length`, keeping its tokens
 * (plain and speculative), exactly the tokens of a plain run. */
Test(strategy, full_context_is_finish_length, .timeout = 120) {
    duet_model *tm = tu_load_ref("ref-models/llama-a-F32.gguf"), *dm = tu_load_ref("ref-models/llama-a-Q4_0.gguf");
    int32_t prompt[10];
    int n = 10;
    for (int i = 0; i < n; i++) prompt[i] = 20 + i;
    const int n_ctx = 30;
    collected ref = {0};
    for (int kind = 0; kind < 4; kind++) {
        const setup u = {kind, 0, 4, kind != 1};
        live L;
        make(&L, &u, tm, dm, n_ctx, 1);
        duet_err err = {0};
        duet_request req = {.prompt = prompt, .n_prompt = n, .max_new = 1000, .emit = collect, .user = &L.out};
        int rc = duet_run(L.st, &req, &err);
        cr_assert_eq(rc, DUET_FINISH_LENGTH, "kind %d: rc %d (%s)", kind, rc, err.msg);
        /* the context holds n_ctx positions; the last sampled token needs none */
        cr_assert_eq(L.out.n, n_ctx - n + 1, "kind %d: %d tokens", kind, L.out.n);
        if (kind == 0) ref = L.out;
        else cr_assert_arr_eq(L.out.ids, ref.ids, sizeof(int32_t) * (size_t)ref.n, "kind %d differs from plain", kind);
        duet_stats st;
        duet_strategy_stats(L.st, &st);
        cr_assert_eq(st.finish, DUET_FINISH_LENGTH);
        cr_assert_eq(st.n_generated, L.out.n);
        unmake(&L);
    }
    duet_model_free(tm), duet_model_free(dm);
}

/* End-of-generation ids: emitted, then finish stop; a prompt longer than
 * the context is an error naming it. */
Test(strategy, stop_ids_and_long_prompt) {
    duet_model *tm = tu_load_ref("ref-models/llama-a-F32.gguf"), *dm = tu_load_ref("ref-models/llama-a-Q4_0.gguf");
    const setup u = {0, 0, 0, 0};
    live L;
    make(&L, &u, tm, dm, 64, 1);
    int32_t prompt[4] = {5, 6, 7, 8};
    duet_err err = {0};
    duet_request req = {.prompt = prompt, .n_prompt = 4, .max_new = 20, .emit = collect, .user = &L.out};
    cr_assert_eq(duet_run(L.st, &req, &err), DUET_FINISH_LENGTH);
    cr_assert_eq(L.out.n, 20);
    const int32_t stop = L.out.ids[5];
    int first = 0;
    while (L.out.ids[first] != stop) first++;
    collected again = {0};
    req.stop_ids = &stop, req.n_stop_ids = 1, req.user = &again;
    cr_assert_eq(duet_run(L.st, &req, &err), DUET_FINISH_STOP);
    cr_assert_eq(again.n, first + 1, "stopped after %d tokens, expected %d", again.n, first + 1);
    cr_assert_eq(again.ids[first], stop);
    int32_t longp[70] = {0};
    req = (duet_request){.prompt = longp, .n_prompt = 70, .max_new = 4};
    int rc = duet_run(L.st, &req, &err);
    cr_assert_eq(rc, DUET_ERANGE);
    cr_assert(strstr(err.msg, "70 tokens") && strstr(err.msg, "64"), "%s", err.msg);
    unmake(&L);
    duet_model_free(tm), duet_model_free(dm);
}

/* A cascade over two tiers whose second is itself a strategy of two models
 * (speculative): never escalating gives exactly the first tier's output,
 * always escalating exactly the second's (the LLM's greedy output), with
 * the tokens tagged by who wrote them. */
Test(strategy, cascade_composes_strategies, .timeout = 120) {
    duet_model *big = tu_load_ref("ref-models/llama-a-F32.gguf"), *small = tu_load_ref("ref-models/llama-a-Q4_0.gguf");
    duet_err err = {0};
    duet_lm *s_lm, *t_lm, *d_lm;
    cr_assert_eq(duet_lm_local_new(&s_lm, small, 128, "slm", &err), 0);
    cr_assert_eq(duet_lm_local_new(&t_lm, big, 128, "llm", &err), 0);
    cr_assert_eq(duet_lm_local_new(&d_lm, small, 128, "draft", &err), 0);
    duet_sampler *s1 = sampler(s_lm->n_vocab, 0, 1), *s2 = sampler(t_lm->n_vocab, 0, 1);
    int32_t prompt[6] = {11, 22, 33, 44, 55, 66};
    const int n_new = 32;
    /* references: each tier alone */
    collected ref_slm = {0}, ref_llm = {0};
    duet_strategy *plain_slm, *spec_llm;
    cr_assert_eq(duet_strategy_plain(&plain_slm, s_lm, s1, &err), 0);
    duet_spec_params sp = duet_spec_default_params();
    cr_assert_eq(duet_strategy_speculative(&spec_llm, t_lm, d_lm, s2, &sp, &err), 0);
    duet_request req = {.prompt = prompt, .n_prompt = 6, .max_new = n_new, .emit = collect, .user = &ref_slm};
    cr_assert_geq(duet_run(plain_slm, &req, &err), 0, "%s", err.msg);
    duet_lm *p_lm;
    cr_assert_eq(duet_lm_local_new(&p_lm, big, 128, "llm-plain", &err), 0);
    duet_sampler *s3 = sampler(p_lm->n_vocab, 0, 1);
    duet_strategy *plain_llm;
    cr_assert_eq(duet_strategy_plain(&plain_llm, p_lm, s3, &err), 0);
    req.user = &ref_llm;
    cr_assert_geq(duet_run(plain_llm, &req, &err), 0, "%s", err.msg);
    cr_assert(memcmp(ref_slm.ids, ref_llm.ids, sizeof(int32_t) * n_new) != 0, "the tiers must differ for this test");

    duet_strategy *tiers[2] = {plain_slm, spec_llm};
    for (int always = 0; always < 2; always++) {
        const float th = always ? INFINITY : -INFINITY;
        duet_strategy *c;
        cr_assert_eq(duet_strategy_cascade(&c, tiers, &th, 2, always, &err), 0, "%s", err.msg);
        collected got = {0};
        req.user = &got;
        cr_assert_eq(duet_run(c, &req, &err), DUET_FINISH_LENGTH, "%s", err.msg);
        const collected *want = always ? &ref_llm : &ref_slm;
        cr_assert_eq(got.n, want->n);
        cr_assert_arr_eq(got.ids, want->ids, sizeof(int32_t) * (size_t)want->n, "cascade (always=%d) output", always);
        duet_stats st;
        duet_strategy_stats(c, &st);
        cr_assert_eq(st.escalated, always);
        if (!always) cr_assert_eq(st.by_origin[DUET_BY_SLM], n_new);
        else cr_assert_eq(st.by_origin[DUET_BY_SLM], 0);
        if (always) cr_assert_gt(st.by_origin[DUET_BY_DRAFT_MODEL], 0, "the speculative leg's drafts are tagged");
        cr_assert(isfinite(st.confidence) && st.confidence < 0, "confidence %g", st.confidence);
        duet_strategy_free(c);
    }
    duet_strategy_free(plain_slm), duet_strategy_free(spec_llm), duet_strategy_free(plain_llm);
    duet_sampler_free(s1), duet_sampler_free(s2), duet_sampler_free(s3);
    duet_lm_free(s_lm), duet_lm_free(t_lm), duet_lm_free(d_lm), duet_lm_free(p_lm);
    duet_model_free(big), duet_model_free(small);
}

/* duet_logits_combine against a brute-force double-precision reference, and
 * two identities: one model at weight 1 is its log-softmax (exp sums to 1);
 * weights (1, -1) of a model with itself give 0 everywhere. */
Test(strategy, logits_combine_matches_reference) {
    enum { V = 50 };
    float a[V], b[V + 7], out[V + 7];
    uint64_t x = 99;
    for (int i = 0; i < V + 7; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        b[i] = (float)((x >> 40) % 1000) / 50.0f - 10;
        if (i < V) a[i] = b[i] * 0.5f + (float)(i % 7);
    }
    duet_err err = {0};
    const float *rows[2] = {a, b};
    const int nvs[2] = {V, V + 7};
    const float w[2] = {0.7f, -0.3f};
    cr_assert_eq(duet_logits_combine(out, V + 7, rows, nvs, w, 2, &err), 0, "%s", err.msg);
    double za = 0, zb = 0;
    for (int i = 0; i < V; i++) za += exp((double)a[i]);
    for (int i = 0; i < V + 7; i++) zb += exp((double)b[i]);
    for (int i = 0; i < V; i++) {
        double ref = 0.7 * (a[i] - log(za)) - 0.3 * (b[i] - log(zb));
        cr_assert_float_eq(out[i], ref, 1e-4, "id %d: %g vs %g", i, out[i], ref);
    }
    for (int i = V; i < V + 7; i++) cr_assert(isinf(out[i]) && out[i] < 0, "id %d past a vocabulary", i);
    const float one[1] = {1}, pm[2] = {1, -1};
    cr_assert_eq(duet_logits_combine(out, V, rows, NULL, one, 1, &err), 0);
    double s = 0;
    for (int i = 0; i < V; i++) s += exp((double)out[i]);
    cr_assert_float_eq(s, 1.0, 1e-5);
    const float *same[2] = {a, a};
    cr_assert_eq(duet_logits_combine(out, V, same, NULL, pm, 2, &err), 0);
    for (int i = 0; i < V; i++) cr_assert_eq(out[i], 0.0f);
    const float bad[1] = {NAN};
    cr_assert_eq(duet_logits_combine(out, V, rows, NULL, bad, 1, &err), DUET_EINVAL);
    cr_assert(strstr(err.msg, "weight"), "%s", err.msg);
}

/* The review's finding: the adaptive n-gram drafter never measured its cost
 * and so never left its starting length (4). On repetitive text with plenty
 * to copy, it must try other lengths and settle on long drafts. */
Test(strategy, adaptive_ngram_length_adapts, .timeout = 120) {
    duet_model *tm = tu_load_ref("ref-models/llama-a-F32.gguf"), *dm = tu_load_ref("ref-models/llama-a-Q4_0.gguf");
    const setup u = {2, 0, 8, 1};
    live L;
    make(&L, &u, tm, dm, 256, 1);
    int32_t prompt[120];
    for (int i = 0; i < 120; i++) prompt[i] = 40 + (i % 12);
    duet_err err = {0};
    duet_request req = {.prompt = prompt, .n_prompt = 120, .max_new = 100, .emit = collect, .user = &L.out};
    cr_assert_geq(duet_run(L.st, &req, &err), 0, "%s", err.msg);
    duet_stats st;
    duet_strategy_stats(L.st, &st);
    cr_assert_gt(st.drafted_ngram, 0);
    cr_assert_gt(st.drafted_at[4], 0, "no round drafted more than 4 tokens: the length never adapted");
    unmake(&L);
    duet_model_free(tm), duet_model_free(dm);
}

/* A draft whose vocabulary is a strict prefix of the target's: ids past it
 * cannot be fed to the draft. The review found generation aborting mid-stream
 * when the target produced one; now the draft steps aside and the output is
 * the target's greedy output. The draft here is the F32 model seen through a
 * narrower vocabulary (its eval refuses ids past it, as a real smaller model's
 * would). */
typedef struct {
    duet_lm inner;
    int n_vocab;
    float *row; /* (n_logits, inner n_vocab) */
} narrow;

static int narrow_eval(duet_lm *lm, const int32_t *tok, int n, float *logits, int n_logits, duet_err *err) {
    narrow *w = lm->self;
    for (int i = 0; i < n; i++)
        if (tok[i] >= w->n_vocab) return duet_err_set(err, DUET_ERANGE, "narrow: id %d past %d", tok[i], w->n_vocab);
    float *full = malloc(sizeof(float) * (size_t)w->inner.n_vocab * (size_t)(n_logits ? n_logits : 1));
    int rc = duet_lm_eval(&w->inner, tok, n, full, n_logits, err);
    for (int r = 0; r < n_logits && rc >= 0; r++)
        memcpy(logits + (size_t)r * w->n_vocab, full + (size_t)r * w->inner.n_vocab, sizeof(float) * (size_t)w->n_vocab);
    free(full);
    return rc;
}
static int narrow_rollback(duet_lm *lm, int n_keep, duet_err *err) {
    return duet_lm_rollback(&((narrow *)lm->self)->inner, n_keep, err);
}
static int narrow_pos(const duet_lm *lm) { return duet_lm_pos(&((narrow *)lm->self)->inner); }
static int narrow_n_ctx(const duet_lm *lm) { return duet_lm_n_ctx(&((narrow *)lm->self)->inner); }
static const duet_lm_i narrow_iface = {.kind = "test-narrow", .caps = DUET_LM_CAP_LOGITS, .eval = narrow_eval,
                                       .rollback = narrow_rollback, .pos = narrow_pos, .n_ctx = narrow_n_ctx};

Test(strategy, target_vocabulary_larger_than_draft, .timeout = 120) {
    duet_model *tm = tu_load_ref("ref-models/llama-a-F32.gguf"), *dm = tu_load_ref("ref-models/llama-a-Q4_0.gguf");
    duet_err err = {0};
    duet_seq *ts, *ds, *ps;
    cr_assert_eq(duet_seq_new(&ts, tm, 128, &err), 0);
    cr_assert_eq(duet_seq_new(&ds, dm, 128, &err), 0);
    cr_assert_eq(duet_seq_new(&ps, tm, 128, &err), 0);
    duet_lm tl = duet_lm_from_seq(ts), pl = duet_lm_from_seq(ps);
    int32_t prompt[5] = {300, 301, 302, 303, 304};
    collected want = {0};
    duet_sampler *g = sampler(tl.n_vocab, 0, 1);
    duet_strategy *p;
    cr_assert_eq(duet_strategy_plain(&p, &pl, g, &err), 0);
    duet_request req = {.prompt = prompt, .n_prompt = 5, .max_new = 40, .emit = collect, .user = &want};
    cr_assert_geq(duet_run(p, &req, &err), 0);
    /* the draft's vocabulary ends below the highest id the target produces */
    int32_t hi = 0;
    for (int i = 0; i < want.n; i++) hi = want.ids[i] > hi ? want.ids[i] : hi;
    cr_assert_gt(hi, 10);
    narrow nw = {.inner = duet_lm_from_seq(ds), .n_vocab = hi};
    duet_lm dl = {.iface = &narrow_iface, .self = &nw, .engine = &nw, .n_vocab = hi, .name = "narrow"};
    for (int use_ngram = 0; use_ngram < 2; use_ngram++) {
        duet_spec_params sp = duet_spec_default_params();
        sp.use_ngram = use_ngram;
        duet_strategy *s;
        cr_assert_eq(duet_strategy_speculative(&s, &tl, &dl, g, &sp, &err), 0, "%s", err.msg);
        collected got = {0};
        req.user = &got;
        int rc = duet_run(s, &req, &err);
        cr_assert_geq(rc, 0, "generation failed: %s", err.msg);
        cr_assert_eq(got.n, want.n);
        cr_assert_arr_eq(got.ids, want.ids, sizeof(int32_t) * (size_t)want.n);
        duet_strategy_free(s);
    }
    duet_strategy_free(p);
    duet_sampler_free(g);
    duet_seq_free(ts), duet_seq_free(ds), duet_seq_free(ps);
    duet_model_free(tm), duet_model_free(dm);
}

/* The library refuses what the review found silently accepted: penalties and
 * a sampler of another vocabulary size with speculative decoding; bad
 * speculative and sampler parameters, each message naming the field. */
Test(strategy, library_validation_names_the_field) {
    duet_model *tm = tu_load_ref("ref-models/llama-a-F32.gguf"), *dm = tu_load_ref("ref-models/llama-a-Q4_0.gguf");
    duet_err err = {0};
    duet_seq *ts, *ds;
    cr_assert_eq(duet_seq_new(&ts, tm, 64, &err), 0);
    cr_assert_eq(duet_seq_new(&ds, dm, 64, &err), 0);
    duet_lm tl = duet_lm_from_seq(ts), dl = duet_lm_from_seq(ds);
    duet_strategy *s = NULL;
    duet_spec_params sp = duet_spec_default_params();

    duet_sampler_params pp = duet_sampler_default_params();
    pp.repeat_penalty = 1.3f;
    duet_sampler *pen = duet_sampler_new(&pp, tl.n_vocab);
    cr_assert_eq(duet_strategy_speculative(&s, &tl, &dl, pen, &sp, &err), DUET_EINVAL);
    cr_assert(strstr(err.msg, "penalt"), "%s", err.msg);
    duet_sampler *other = sampler(tl.n_vocab - 1, 0, 1);
    cr_assert_eq(duet_strategy_speculative(&s, &tl, &dl, other, &sp, &err), DUET_EINVAL);
    cr_assert(strstr(err.msg, "vocabulary"), "%s", err.msg);
    cr_assert_eq(duet_strategy_plain(&s, &tl, other, &err), DUET_EINVAL);
    cr_assert(strstr(err.msg, "vocabulary"), "%s", err.msg);

    const char *fields[] = {"draft_max", "draft_p_min", "n-gram", "drafter"};
    duet_spec_params b;
    b = sp, b.draft_max = DUET_SPEC_KMAX + 1;
    cr_assert_eq(duet_spec_params_check(&b, &err), DUET_EINVAL);
    cr_assert(strstr(err.msg, fields[0]), "%s", err.msg);
    b = sp, b.draft_p_min = 1.5f;
    cr_assert_eq(duet_spec_params_check(&b, &err), DUET_EINVAL);
    cr_assert(strstr(err.msg, fields[1]), "%s", err.msg);
    b = sp, b.use_ngram = 1, b.ngram_min = 3, b.ngram_max = 2;
    cr_assert_eq(duet_spec_params_check(&b, &err), DUET_EINVAL);
    cr_assert(strstr(err.msg, fields[2]), "%s", err.msg);
    b = sp, b.use_model = 0, b.use_ngram = 0;
    cr_assert_eq(duet_spec_params_check(&b, &err), DUET_EINVAL);
    cr_assert(strstr(err.msg, fields[3]), "%s", err.msg);

    duet_sampler_params q = duet_sampler_default_params();
    q.top_p = 1.5f;
    duet_sampler *none = (duet_sampler *)1;
    cr_assert_eq(duet_sampler_new_checked(&none, &q, 100, &err), DUET_EINVAL);
    cr_assert_null(none);
    cr_assert(strstr(err.msg, "top_p"), "%s", err.msg);
    q = duet_sampler_default_params(), q.temp = NAN;
    cr_assert_eq(duet_sampler_params_check(&q, &err), DUET_EINVAL);
    cr_assert(strstr(err.msg, "temperature"), "%s", err.msg);

    /* rollback past the end is an error with a message, not silence */
    cr_assert_eq(duet_lm_rollback(&tl, 5, &err), DUET_ERANGE);
    cr_assert(strstr(err.msg, "roll back"), "%s", err.msg);

    duet_sampler_free(pen), duet_sampler_free(other);
    duet_seq_free(ts), duet_seq_free(ds);
    duet_model_free(tm), duet_model_free(dm);
}

/* score: log-probabilities of given tokens equal the log-softmax of the
 * logits of the same positions, and the top-k lists are sorted and hold the
 * scored token's rank. */
Test(strategy, score_is_log_softmax_of_logits) {
    duet_model *tm = tu_load_ref("ref-models/qwen2-b-F32.gguf");
    duet_err err = {0};
    duet_seq *a, *b;
    cr_assert_eq(duet_seq_new(&a, tm, 64, &err), 0);
    cr_assert_eq(duet_seq_new(&b, tm, 64, &err), 0);
    duet_lm la = duet_lm_from_seq(a);
    const int n = 9, K = 5, V = la.n_vocab;
    int32_t tok[9] = {1, 50, 60, 70, 80, 90, 100, 110, 120};
    float lp[9], top_lp[9 * 5];
    int32_t top_id[9 * 5];
    cr_assert_eq(duet_lm_score(&la, tok, n, lp, K, top_id, top_lp, &err), 0, "%s", err.msg);
    float *logits = malloc(sizeof(float) * (size_t)V * (size_t)n);
    cr_assert_eq(duet_eval(b, tok, n, logits, n, &err), 0);
    cr_assert(isnan(lp[0]));
    for (int i = 0; i < n; i++) {
        const float *row = logits + (size_t)i * V;
        double z = 0, mx = -INFINITY;
        for (int v = 0; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        for (int v = 0; v < V; v++) z += exp(row[v] - mx);
        const double lz = mx + log(z);
        if (i + 1 < n) cr_assert_float_eq(lp[i + 1], row[tok[i + 1]] - lz, 1e-4, "position %d", i + 1);
        for (int j = 0; j < K; j++) {
            cr_assert_float_eq(top_lp[i * K + j], row[top_id[i * K + j]] - lz, 1e-4);
            if (j) cr_assert_geq(top_lp[i * K + j - 1], top_lp[i * K + j]);
        }
        int better = 0; /* brute force: nothing outside the list beats its last entry */
        for (int v = 0; v < V; v++) better += row[v] > row[top_id[i * K + K - 1]];
        cr_assert_eq(better, K - 1, "position %d: %d ids beat the k-th", i, better);
    }
    free(logits);
    duet_seq_free(a), duet_seq_free(b);
    duet_model_free(tm);
}

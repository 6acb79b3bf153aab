/* bench_speculative: tokens/s of the target alone vs speculative decoding
 * with each draft source and length, on prompts from valid.txt and on a
 * hostile set, with the speedup Leviathan et al.'s formula predicts from the
 * measured acceptance and cost ratio next to the measured one.
 *
 * Every configuration runs on the same prompts right after the baseline for
 * that prompt (side by side, so machine noise hits both alike); the figure per
 * configuration is generated tokens / decode seconds over all prompts, and the
 * speedup is the ratio to the baseline's. Decode seconds start after the
 * target's prompt eval, which is the same with or without a draft (its
 * seconds are reported as prefill_s); the draft's own prompt eval counts as
 * decode time. Prints one JSON object. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duet/generate.h"
#include "duet/lm_local.h"
#include "duet/model.h"
#include "duet/speculative.h"
#include "duet/strategy.h"
#include "duet/tok.h"

#define MAX_PROMPTS 128
#define PROMPT_TOKENS 32

typedef struct {
    int32_t ids[PROMPT_TOKENS];
    int n;
} prompt;

/* --cpu-clock: time with the calling thread's CPU clock instead of the wall
 * clock. Only meaningful with -t 1 (the pool's workers are not counted): on a
 * machine shared with other jobs it gives what one core does while it runs. */
static int use_cpu_clock;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(use_cpu_clock ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) { free(p); p = NULL; }
    if (p) p[n] = 0;
    fclose(f);
    return p;
}

/* Story openings of valid.txt (paragraphs that start a story), first 32 tokens. */
static int story_prompts(const duet_vocab *v, const char *text, prompt *out, int want) {
    int n = 0;
    const char *p = text;
    while (*p && n < want) {
        const char *end = strstr(p, "\n\n");
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (!strncmp(p, "once upon a time", 16) || !strncmp(p, "once there was", 14) || !strncmp(p, "one day,", 8)) {
            int32_t *ids;
            int k = duet_tokenize_alloc(v, p, len, duet_vocab_add_bos(v) ? DUET_TOK_ADD_BOS : 0, &ids);
            if (k >= PROMPT_TOKENS + 16) { /* long enough that the story goes on */
                memcpy(out[n].ids, ids, sizeof(int32_t) * PROMPT_TOKENS);
                out[n++].n = PROMPT_TOKENS;
            }
            if (k > 0) free(ids);
        }
        if (!end) break;
        p = end + 2;
    }
    return n;
}

/* Hostile prompts: uniformly random token ids, and text from outside the
 * training domain (other scripts, code) that neither model can continue. */
static int hostile_prompts(const duet_vocab *v, const char *foreign, prompt *out, int want, int n_vocab) {
    int n = 0;
    uint64_t x = 12345;
    for (; n < want / 2; n++) {
        for (int i = 0; i < PROMPT_TOKENS; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            out[n].ids[i] = (int32_t)((x >> 33) % (uint64_t)n_vocab);
        }
        out[n].n = PROMPT_TOKENS;
    }
    const char *p = foreign;
    const char *sep = "\n__ggml_vocab_test__\n";
    while (p && *p && n < want) {
        const char *end = strstr(p, sep);
        size_t len = end ? (size_t)(end - p) : strlen(p);
        int32_t *ids;
        int k = len > 40 ? duet_tokenize_alloc(v, p, len, 0, &ids) : 0;
        if (k >= PROMPT_TOKENS) {
            memcpy(out[n].ids, ids, sizeof(int32_t) * PROMPT_TOKENS);
            out[n++].n = PROMPT_TOKENS;
        }
        if (k > 0) free(ids);
        p = end ? end + strlen(sep) : NULL;
    }
    return n;
}

typedef struct {
    const char *name;
    int use_model, use_ngram, k, adaptive; /* k = 0 with no source: baseline */
    duet_spec_adapt learned_model, learned_ngram; /* adaptive estimates kept across prompts */
    int learned_init;
    /* totals over prompts: decode seconds (after the target's prompt eval,
     * which is the same with or without speculation) and prefill seconds */
    double seconds, prefill_seconds;
    long tokens, drafted, accepted, rounds_with_draft;
    long drafted_at[DUET_SPEC_KMAX], accepted_at[DUET_SPEC_KMAX];
} config;

static duet_sampler *make_sampler(float temp, uint64_t seed, int n_vocab) {
    duet_sampler_params sp = duet_sampler_default_params();
    sp.temp = temp, sp.seed = seed;
    sp.top_k = 0, sp.top_p = 1, sp.min_p = 0; /* the plain distribution: the hardest case for drafts */
    return duet_sampler_new(&sp, n_vocab);
}

static int run_one(config *c, duet_seq *ts, duet_seq *ds, const prompt *pr, int n_new, float temp, uint64_t seed,
                   duet_err *err) {
    duet_lm tl = duet_lm_from_seq(ts), dl = duet_lm_from_seq(ds);
    duet_sampler *s = make_sampler(temp, seed, tl.n_vocab);
    duet_rollback(ts, 0);
    duet_rollback(ds, 0);
    int rc;
    double prefill = 0, decode = 0;
    if (!c->use_model && !c->use_ngram) {
        duet_stats gs;
        rc = duet_generate(&tl, s, pr->ids, pr->n, n_new, NULL, NULL, &gs, err);
        prefill = gs.t_prefill, decode = gs.t_total - gs.t_prefill;
    } else {
        duet_spec_params sp = duet_spec_default_params();
        sp.use_model = c->use_model, sp.use_ngram = c->use_ngram;
        sp.draft_max = c->k, sp.adaptive = c->adaptive;
        if (c->adaptive) { /* as a server would: one estimate per model pair, kept across requests */
            if (!c->learned_init) {
                duet_spec_adapt_init(&c->learned_model, c->k);
                duet_spec_adapt_init(&c->learned_ngram, c->k);
                c->learned_init = 1;
            }
            sp.learned_model = &c->learned_model, sp.learned_ngram = &c->learned_ngram;
        }
        duet_stats st;
        rc = duet_speculative_generate(&tl, &dl, s, &sp, pr->ids, pr->n, n_new, NULL, NULL, &st, err);
        prefill = st.t_prefill, decode = st.t_total - st.t_prefill; /* the draft's prompt catch-up is decode time */
        if (rc >= 0) {
            c->drafted += st.drafted, c->accepted += st.accepted, c->rounds_with_draft += st.drafted_at[0];
            for (int i = 0; i < DUET_SPEC_KMAX; i++) c->drafted_at[i] += st.drafted_at[i], c->accepted_at[i] += st.accepted_at[i];
        }
    }
    duet_sampler_free(s);
    if (rc < 0) return rc;
    c->seconds += decode;
    c->prefill_seconds += prefill;
    c->tokens += rc;
    return 0;
}

/* ---- concurrent requests: one driver steps N of them together ------------- */

typedef struct {
    duet_lm *t, *d;
    duet_sampler *s;
    duet_strategy *strat;
} slot;

/* N requests (prompts ps[0..n)) at temperature 0, either stepped together by
 * one driver (batched = 1) or run one after another, each to n_new tokens.
 * Speculative (model draft, adaptive) when spec, else plain. Adds generated
 * tokens and wall seconds (prompts included, as a server's clients see it). */
static int run_group(duet_model *tm, duet_model *dm, const prompt *ps, int n, int n_new, int spec, int batched,
                     duet_spec_adapt *learned, long *tokens, double *seconds, long *passes, duet_err *err) {
    slot sl[64];
    const int n_ctx = PROMPT_TOKENS + n_new + DUET_SPEC_KMAX + 2;
    int rc = 0;
    memset(sl, 0, sizeof sl);
    for (int i = 0; i < n && rc >= 0; i++) {
        if ((rc = duet_lm_local_new(&sl[i].t, tm, n_ctx, "llm", err)) < 0) break;
        if (spec && (rc = duet_lm_local_new(&sl[i].d, dm, n_ctx, "draft", err)) < 0) break;
        sl[i].s = make_sampler(0, 1, duet_model_n_vocab(tm));
        duet_spec_params sp = duet_spec_default_params();
        sp.learned_model = learned, sp.learned_ngram = learned + 1;
        rc = spec ? duet_strategy_speculative(&sl[i].strat, sl[i].t, sl[i].d, sl[i].s, &sp, err)
                  : duet_strategy_plain(&sl[i].strat, sl[i].t, sl[i].s, err);
    }
    duet_driver *drv = NULL;
    if (rc >= 0) rc = duet_driver_new(&drv, err);
    const double t0 = now_s();
    for (int i = 0; i < n && rc >= 0; i++) {
        duet_request req = {.prompt = ps[i].ids, .n_prompt = ps[i].n, .max_new = n_new};
        if ((rc = duet_strategy_reset(sl[i].strat, &req, err)) < 0) break;
        rc = duet_driver_add(drv, sl[i].strat, err);
        if (!batched)
            while (rc >= 0 && duet_driver_n_active(drv) > 0) rc = duet_driver_step(drv, err);
    }
    while (rc >= 0 && duet_driver_n_active(drv) > 0) rc = duet_driver_step(drv, err);
    *seconds += now_s() - t0;
    long p = 0;
    if (drv) duet_driver_counts(drv, &p, NULL);
    *passes += p;
    for (int i = 0; i < n; i++) {
        if (rc >= 0 && sl[i].strat) {
            duet_stats st;
            duet_strategy_stats(sl[i].strat, &st);
            if (st.finish == DUET_FINISH_ERROR) rc = duet_err_set(err, DUET_EINVAL, "request %d failed", i);
            *tokens += st.n_generated;
        }
        duet_strategy_free(sl[i].strat);
        duet_sampler_free(sl[i].s);
        duet_lm_free(sl[i].t), duet_lm_free(sl[i].d);
    }
    duet_driver_free(drv);
    return rc;
}

/* For N in levels: groups of N story prompts, batched and one after another
 * taking turns (so machine noise hits both alike), speculative and plain. */
static double batched_ceiling(const duet_spec_adapt *acc, int N, const double *t_wide, double t_draft1,
                              int *best_k);

static cJSON *concurrency(duet_model *tm, duet_model *dm, const prompt *ps, int np, int n_new, const int *levels,
                          int n_levels, int groups, const double *t_wide, double t_draft1, duet_err *err) {
    cJSON *arr = cJSON_CreateArray();
    for (int li = 0; li < n_levels; li++) {
        const int N = levels[li];
        if (N > np || N > 64) continue;
        long tok[2][2] = {{0}}, passes[2][2] = {{0}}; /* [spec][batched] */
        double sec[2][2] = {{0}};
        duet_spec_adapt learned[2][2][2];
        for (int sp = 0; sp < 2; sp++)
            for (int b = 0; b < 2; b++) duet_spec_adapt_init(&learned[sp][b][0], 8), duet_spec_adapt_init(&learned[sp][b][1], 8);
        for (int g = 0; g < groups; g++) {
            const prompt *grp = ps + (g * N) % (np - N + 1);
            for (int sp = 1; sp >= 0; sp--)
                for (int b = 0; b < 2; b++)
                    if (run_group(tm, dm, grp, N, n_new, sp, b, learned[sp][b], &tok[sp][b], &sec[sp][b], &passes[sp][b],
                                  err) < 0)
                        return cJSON_Delete(arr), NULL;
            fprintf(stderr, "concurrent N=%d: group %d/%d\n", N, g + 1, groups);
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "n", N);
        cJSON_AddNumberToObject(o, "spec_batched_tok_s", tok[1][1] / sec[1][1]);
        cJSON_AddNumberToObject(o, "spec_sequential_tok_s", tok[1][0] / sec[1][0]);
        cJSON_AddNumberToObject(o, "spec_batched_vs_sequential", (tok[1][1] / sec[1][1]) / (tok[1][0] / sec[1][0]));
        cJSON_AddNumberToObject(o, "plain_batched_tok_s", tok[0][1] / sec[0][1]);
        cJSON_AddNumberToObject(o, "plain_sequential_tok_s", tok[0][0] / sec[0][0]);
        cJSON_AddNumberToObject(o, "plain_batched_vs_sequential", (tok[0][1] / sec[0][1]) / (tok[0][0] / sec[0][0]));
        cJSON_AddNumberToObject(o, "spec_batched_vs_plain_sequential", (tok[1][1] / sec[1][1]) / (tok[0][0] / sec[0][0]));
        int kc = 0;
        /* the acceptance the one-by-one runs learned (their k was free to vary) */
        cJSON_AddNumberToObject(o, "spec_batched_ceiling_vs_sequential",
                                batched_ceiling(&learned[1][0][0], N, t_wide, t_draft1, &kc));
        cJSON_AddNumberToObject(o, "spec_batched_ceiling_k", kc);
        cJSON_AddNumberToObject(o, "spec_batched_passes", (double)passes[1][1]);
        cJSON_AddNumberToObject(o, "spec_sequential_passes", (double)passes[1][0]);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

static double median(double *t, int n) {
    for (int i = 0; i < n; i++) /* insertion sort: n is small */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) { double x = t[j]; t[j] = t[j - 1]; t[j - 1] = x; }
    return t[n / 2];
}

/* Costs of rounds as the speculative loop runs them: k one-token draft
 * evals, then a decode-consistent eval of the k+1-token block with logits at
 * every position, after a context of `ctx` tokens (the middle of a request:
 * attention's share grows with the context). Draft and target alternate as in
 * the loop, so each finds the caches the other left (the target streams its
 * weights through L2, the draft then reads its own from L3). k = 0 is plain
 * decoding: the target alone, one token. The lengths 0..kmax take turns within
 * every repetition, so a slow moment of the shared machine hits them alike;
 * t_block[k + 1] gets the median seconds of the target's block, and the
 * return value the median seconds per draft token. */
static double round_costs(duet_seq *ts, duet_seq *ds, int kmax, int ctx, int reps, double *t_block) {
    enum { MAXR = 64 };
    int32_t tok[PROMPT_TOKENS + 256 + DUET_SPEC_KMAX + 1];
    if (ctx > PROMPT_TOKENS + 256) ctx = PROMPT_TOKENS + 256;
    if (reps > MAXR) reps = MAXR;
    for (int i = 0; i < ctx + kmax + 1; i++) tok[i] = 10 + i % 64;
    int nv = duet_model_n_vocab(duet_seq_model(ts));
    float *logits = malloc(sizeof(float) * (size_t)nv * (size_t)(kmax + 1)); /* (kmax+1, n_vocab) */
    static double tt[DUET_SPEC_KMAX + 1][MAXR], td[MAXR * DUET_SPEC_KMAX];
    int n_td = 0;
    duet_rollback(ts, 0);
    duet_rollback(ds, 0);
    duet_eval(ts, tok, ctx, NULL, 0, NULL);
    duet_eval(ds, tok, ctx, NULL, 0, NULL);
    duet_seq_set_decode_consistent(ts, 1);
    for (int r = 0; r < reps; r++)
        for (int k = 0; k <= kmax; k++) {
            double t0 = now_s();
            for (int i = 0; i < k; i++) duet_eval(ds, tok + ctx + i, 1, logits, 1, NULL);
            double t1 = now_s();
            duet_eval(ts, tok + ctx, k + 1, logits, k + 1, NULL);
            double t2 = now_s();
            duet_rollback(ts, ctx);
            duet_rollback(ds, ctx);
            if (k) td[n_td++] = (t1 - t0) / k;
            tt[k][r] = t2 - t1;
        }
    duet_seq_set_decode_consistent(ts, 0);
    free(logits);
    for (int k = 0; k <= kmax; k++) t_block[k + 1] = median(tt[k], reps);
    return median(td, n_td);
}

/* Seconds of decode-consistent target blocks of R = wide_rows[i] tokens
 * after a context of ctx (medians of reps, the sizes taking turns): the cost
 * of R rows in one pass, which bounds what batching requests can gain. One
 * sequence's block is the cheapest way to hold R rows (its attention reads
 * one cache), so the ceiling below is optimistic. */
static const int wide_rows[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 20, 24, 28, 32, 36, 40, 48, 56, 64, 72};
enum { N_WIDE = sizeof wide_rows / sizeof wide_rows[0] };

static void wide_costs(duet_seq *ts, int ctx, int reps, double *t_wide) {
    enum { MAXR = 32 };
    static double tt[N_WIDE][MAXR];
    int32_t tok[PROMPT_TOKENS + 256 + 80];
    if (reps > MAXR) reps = MAXR;
    for (int i = 0; i < ctx + 72; i++) tok[i] = 10 + i % 64;
    duet_rollback(ts, 0);
    duet_eval(ts, tok, ctx, NULL, 0, NULL);
    duet_seq_set_decode_consistent(ts, 1);
    float *logits = malloc(sizeof(float) * (size_t)duet_model_n_vocab(duet_seq_model(ts)) * 72); /* (72, n_vocab) */
    for (int r = 0; r < reps; r++)
        for (int w = 0; w < N_WIDE; w++) {
            const double t0 = now_s();
            duet_eval(ts, tok + ctx, wide_rows[w], logits, wide_rows[w], NULL);
            tt[w][r] = now_s() - t0;
            duet_rollback(ts, ctx);
        }
    duet_seq_set_decode_consistent(ts, 0);
    free(logits);
    for (int w = 0; w < N_WIDE; w++) t_wide[w] = median(tt[w], reps);
}

/* The cost of R rows, linear between the measured sizes. */
static double wide_at(const double *t_wide, int R) {
    for (int w = 1; w < N_WIDE; w++)
        if (R <= wide_rows[w]) {
            const double f = (double)(R - wide_rows[w - 1]) / (wide_rows[w] - wide_rows[w - 1]);
            return t_wide[w - 1] + f * (t_wide[w] - t_wide[w - 1]);
        }
    return t_wide[N_WIDE - 1] * R / wide_rows[N_WIDE - 1];
}

/* The model ceiling of N speculative requests stepped together against the
 * same requests one after another, from the measured costs and acceptance:
 * batched, the best draft length k with free drafting and the N(k+1) rows
 * in one pass at the cost of one sequence's block; one after another, the
 * best k with the measured draft cost. E(k) from the acceptance by position. */
static double batched_ceiling(const duet_spec_adapt *acc, int N, const double *t_wide, double t_draft1,
                              int *best_k) {
    double best_b = 0, best_s = 0;
    for (int k = 0; k <= 8; k++) {
        const double e = duet_spec_adapt_expected_tokens(acc, k);
        const double rb = N * e / wide_at(t_wide, N * (k + 1));
        const double rs = e / (wide_at(t_wide, k + 1) + k * t_draft1);
        if (rb > best_b) best_b = rb, *best_k = k;
        if (rs > best_s) best_s = rs;
    }
    return best_b / best_s;
}

int main(int argc, char **argv) {
    const char *target = NULL, *draft = NULL, *valid = NULL, *foreign = NULL;
    int n_prompts = 50, n_hostile = 20, n_new = 128, threads = 0, costs_only = 0, groups = 4, only_conc = 0, draft_threads = 0;
    int levels[8] = {1, 4, 8}, n_levels = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--costs-only")) { costs_only = 1; continue; }
        if (!strcmp(a, "--concurrent-only")) { only_conc = 1; continue; }
        if (!strcmp(a, "--cpu-clock")) { use_cpu_clock = 1; continue; }
        if (i + 1 >= argc) { target = NULL; break; } /* an option without its value: usage */
        const char *v = argv[++i];
        if (!strcmp(a, "--target")) target = v;
        else if (!strcmp(a, "--draft")) draft = v;
        else if (!strcmp(a, "--valid")) valid = v;
        else if (!strcmp(a, "--foreign")) foreign = v;
        else if (!strcmp(a, "--prompts")) n_prompts = atoi(v);
        else if (!strcmp(a, "--hostile")) n_hostile = atoi(v);
        else if (!strcmp(a, "-n")) n_new = atoi(v);
        else if (!strcmp(a, "-t")) threads = atoi(v);
        else if (!strcmp(a, "--groups")) groups = atoi(v);
        else if (!strcmp(a, "--draft-threads")) draft_threads = atoi(v);
        else if (!strcmp(a, "--concurrent")) { /* "1,4,8" */
            n_levels = 0;
            for (const char *c = v; *c && n_levels < 8; c = strchr(c, ',') ? strchr(c, ',') + 1 : c + strlen(c))
                levels[n_levels++] = atoi(c);
        } else { target = NULL; break; }
    }
    if (use_cpu_clock && threads != 1) target = NULL; /* the workers' time would be missed */
    if (!target || !draft || !valid || !foreign || n_prompts > MAX_PROMPTS || n_hostile > MAX_PROMPTS) {
        fprintf(stderr, "usage: bench_speculative --target LLM --draft SLM --valid valid.txt --foreign TEXT "
                        "[--prompts 50] [--hostile 20] [-n 128] [-t N] [--costs-only]\n"
                        "       [--concurrent 1,4,8] [--groups 4] [--concurrent-only] [--cpu-clock] [--draft-threads N]\n"
                        "  --concurrent  N requests stepped together by one driver vs one after another\n"
                        "  --costs-only  print the round costs (draft token, target blocks) on stderr and stop\n"
                        "  --cpu-clock   time with the thread's CPU clock (with -t 1 on a shared machine)\n"
                        "  --draft-threads N  the draft on a pool of N threads of its own (default: the target's)\n");
        return 2;
    }
    duet_err err = {0};
    duet_model *tm = NULL, *dm = NULL;
    duet_model_params mp = duet_model_default_params();
    mp.n_threads = threads;
    if (duet_model_load(&tm, target, &mp, &err) < 0) { fprintf(stderr, "bench_speculative: %s\n", err.msg); return 1; }
    mp.pool = draft_threads > 0 ? NULL : duet_model_pool(tm); /* a pool of its own: see --draft-threads */
    if (draft_threads > 0) mp.n_threads = draft_threads;
    if (duet_model_load(&dm, draft, &mp, &err) < 0) { fprintf(stderr, "bench_speculative: %s\n", err.msg); return 1; }
    duet_vocab *v = NULL;
    if (duet_vocab_load(&v, duet_model_gguf(tm), &err) < 0) { fprintf(stderr, "bench_speculative: %s\n", err.msg); return 1; }
    char *vtext = slurp(valid), *ftext = slurp(foreign);
    if (!vtext || !ftext) { fprintf(stderr, "bench_speculative: cannot read the prompt files\n"); return 1; }
    static prompt stories[MAX_PROMPTS], hostile[MAX_PROMPTS];
    int ns = story_prompts(v, vtext, stories, n_prompts);
    int nh = hostile_prompts(v, ftext, hostile, n_hostile, duet_model_n_vocab(tm));
    int n_ctx = PROMPT_TOKENS + n_new + 72 + 2; /* room for wide_costs' blocks */
    duet_seq *ts, *ds;
    if (duet_seq_new(&ts, tm, n_ctx, &err) < 0 || duet_seq_new(&ds, dm, n_ctx, &err) < 0) {
        fprintf(stderr, "bench_speculative: %s\n", err.msg);
        return 1;
    }

    /* costs: target blocks of 1..9 tokens, one draft token */
    double t_block[DUET_SPEC_KMAX + 2];
    const int cost_ctx = PROMPT_TOKENS + n_new / 2;
    double t_draft1 = round_costs(ts, ds, 8, cost_ctx, 41, t_block);
    if (costs_only) {
        fprintf(stderr, "context %d: draft/target %.3f; blocks:", cost_ctx, t_draft1 / t_block[1]);
        for (int b = 1; b <= 9; b++) fprintf(stderr, " %.2f", t_block[b] / t_block[1]);
        fprintf(stderr, "; target 1-token %.3f ms\n", t_block[1] * 1e3);
        return 0;
    }

    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "target", target);
    cJSON_AddStringToObject(root, "draft", draft);
    cJSON_AddNumberToObject(root, "prompts", ns);
    cJSON_AddNumberToObject(root, "hostile_prompts", nh);
    cJSON_AddNumberToObject(root, "new_tokens", n_new);
    cJSON_AddNumberToObject(root, "threads", duet_pool_size(duet_model_pool(tm)));
    cJSON_AddNumberToObject(root, "cost_ratio_draft_vs_target", t_draft1 / t_block[1]);
    cJSON *blocks = cJSON_AddArrayToObject(root, "target_block_cost_vs_1");
    for (int b = 1; b <= 9; b++) cJSON_AddItemToArray(blocks, cJSON_CreateNumber(t_block[b] / t_block[1]));
    double t_wide[N_WIDE];
    wide_costs(ts, cost_ctx, 9, t_wide);
    cJSON *wide = cJSON_AddArrayToObject(root, "target_rows_cost_vs_1");
    for (int w = 0; w < N_WIDE; w++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "rows", wide_rows[w]);
        cJSON_AddNumberToObject(o, "cost", t_wide[w] / t_wide[0]);
        cJSON_AddItemToArray(wide, o);
    }
    cJSON *conc = concurrency(tm, dm, stories, ns, n_new, levels, n_levels, groups, t_wide, t_draft1, &err);
    if (!conc) { fprintf(stderr, "bench_speculative: %s\n", err.msg); return 1; }
    cJSON_AddItemToObject(root, "concurrent", conc);
    cJSON *runs = cJSON_AddArrayToObject(root, "runs");

    const float temps[2] = {0.0f, 0.8f};
    for (int set = 0; set < 2 && !only_conc; set++) {
        const prompt *ps = set == 0 ? stories : hostile;
        int np = set == 0 ? ns : nh;
        for (int ti = 0; ti < 2; ti++) {
            config cfg[16];
            int nc = 0;
            cfg[nc++] = (config){.name = "llm alone"};
            if (set == 0)
                for (int k = 1; k <= 8; k++) cfg[nc++] = (config){.name = "model fixed", .use_model = 1, .k = k};
            cfg[nc++] = (config){.name = "model adaptive", .use_model = 1, .k = 8, .adaptive = 1};
            cfg[nc++] = (config){.name = "ngram adaptive", .use_ngram = 1, .k = 8, .adaptive = 1};
            cfg[nc++] = (config){.name = "model+ngram adaptive", .use_model = 1, .use_ngram = 1, .k = 8, .adaptive = 1};
            for (int p = 0; p < np; p++) {
                for (int c = 0; c < nc; c++)
                    if (run_one(&cfg[c], ts, ds, &ps[p], n_new, temps[ti], 1000 + (uint64_t)p, &err) < 0) {
                        fprintf(stderr, "bench_speculative: %s\n", err.msg);
                        return 1;
                    }
                fprintf(stderr, "\r%s, temp %.1f: prompt %d/%d", set ? "hostile" : "stories", temps[ti], p + 1, np);
            }
            fprintf(stderr, "\n");
            double base = cfg[0].tokens / cfg[0].seconds;
            for (int c = 0; c < nc; c++) {
                cJSON *r = cJSON_CreateObject();
                cJSON_AddStringToObject(r, "set", set ? "hostile" : "stories");
                cJSON_AddNumberToObject(r, "temp", temps[ti]);
                cJSON_AddStringToObject(r, "config", cfg[c].name);
                cJSON_AddNumberToObject(r, "draft_max", cfg[c].k);
                double tps = cfg[c].tokens / cfg[c].seconds;
                cJSON_AddNumberToObject(r, "tok_s", tps);
                cJSON_AddNumberToObject(r, "speedup", tps / base);
                cJSON_AddNumberToObject(r, "prefill_s", cfg[c].prefill_seconds);
                cJSON_AddNumberToObject(r, "decode_s", cfg[c].seconds);
                double alpha = cfg[c].drafted ? (double)cfg[c].accepted / cfg[c].drafted : 0;
                cJSON_AddNumberToObject(r, "acceptance", alpha);
                cJSON_AddNumberToObject(r, "mean_accepted", cfg[c].rounds_with_draft ? (double)cfg[c].accepted / cfg[c].rounds_with_draft : 0);
                if (cfg[c].use_model && !cfg[c].use_ngram && !cfg[c].adaptive) {
                    /* The formula with the measured acceptance: E(k) = 1 + sum_i P(drafts
                     * 0..i kept) (Leviathan et al.'s (1 - a^(k+1)) / (1 - a) when the
                     * rate does not depend on the position), over the measured cost of a
                     * round, k draft tokens + a block of k+1, in target-token units. */
                    int k = cfg[c].k;
                    double e = 1;
                    for (int i = 0; i < k && cfg[c].drafted_at[i]; i++)
                        e += (double)cfg[c].accepted_at[i] / cfg[c].drafted_at[i];
                    double a0 = cfg[c].drafted_at[0] ? (double)cfg[c].accepted_at[0] / cfg[c].drafted_at[0] : 0;
                    cJSON_AddNumberToObject(r, "alpha_first_position", a0);
                    cJSON_AddNumberToObject(r, "predicted_speedup",
                                            e / (k * t_draft1 / t_block[1] + t_block[k + 1] / t_block[1]));
                    cJSON_AddNumberToObject(r, "predicted_speedup_iid",
                                            duet_spec_predicted_speedup(a0, k, t_draft1, t_block[1], t_block[k + 1]));
                }
                cJSON *pos = cJSON_AddArrayToObject(r, "acceptance_by_position");
                for (int i = 0; i < DUET_SPEC_KMAX && cfg[c].drafted_at[i]; i++)
                    cJSON_AddItemToArray(pos, cJSON_CreateNumber((double)cfg[c].accepted_at[i] / cfg[c].drafted_at[i]));
                cJSON_AddItemToArray(runs, r);
            }
        }
    }
    char *js = cJSON_PrintUnformatted(root);
    printf("%s\n", js);
    free(js);
    cJSON_Delete(root);
    duet_seq_free(ts), duet_seq_free(ds);
    duet_vocab_free(v);
    duet_model_free(dm), duet_model_free(tm);
    free(vtext), free(ftext);
    return 0;
}

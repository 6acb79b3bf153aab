/* bench_compress: how much of a prompt the SLM can drop before the LLM loses
 * the thread. For (prompt, reference continuation) pairs cut from held-out
 * stories, each prompt is shortened to a keep ratio three ways --
 *   surprisal: duet_compress (the SLM keeps its most surprising tokens,
 *              the first keep_head and last keep_tail always),
 *   random:    the same count dropped uniformly at random from the same
 *              candidates (the same first and last tokens kept), median over
 *              seeds of the aggregate perplexity,
 *   truncate:  the last n_kept tokens kept (the front dropped),
 *   segmented: with --segment N, duet compress's iterative variant (each
 *              segment of N tokens scored after the compressed text before it) --
 * and the LLM's perplexity of the reference continuation given the shortened
 * prompt is measured: exp of the mean of -log p_llm(cont_j | prompt', cont_<j)
 * over every continuation token of every pair. Every method sees the same
 * pairs. Prints a markdown table, or with --json one JSON object. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duet/compress.h"
#include "duet/lm_local.h"
#include "duet/model.h"
#include "duet/threadpool.h"
#include "duet/tok.h"

#define MAX_RATIOS 32
#define MAX_SEEDS 32

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    const char *slm, *llm, *text;
    int pairs, prompt_len, cont_len, seeds, threads, json, segment;
    int pair_offset; /* pair k is long story k * n_long / pairs + pair_offset: another offset, other stories */
    duet_compress_params cp; /* keep_ratio set per row */
    double ratios[MAX_RATIOS];
    int n_ratios;
} bench_opts;

static int usage(void) {
    fprintf(stderr,
            "usage: bench_compress --slm SLM.gguf --llm LLM.gguf --text TEXT [--pairs N] [--prompt N] [--cont N]\n"
            "                      [--ratios R1,R2,...] [--seeds N] [--keep-head N] [--keep-tail N] [--segment N]\n"
            "                      [--pair-offset K]\n"
            "                      [-t N] [--json]\n"
            "  defaults: 40 pairs, prompt 160 tokens, continuation 64, ratios 1,0.9,...,0.3, 5 seeds,\n"
            "  keep-head 1, keep-tail 8, no segmented variant, pair offset 0, 1 thread. Pair k is the\n"
            "  (k * L / pairs + K)-th of the L stories long enough (mod L): offsets below L / pairs pick\n"
            "  disjoint sets (a development set to choose parameters on, a test set to report)\n");
    return 2;
}

static int parse_ratios(const char *s, bench_opts *o) {
    o->n_ratios = 0;
    while (*s) {
        char *end;
        double r = strtod(s, &end);
        if (end == s || !(r > 0 && r <= 1) || o->n_ratios == MAX_RATIOS || (*end && *end != ',')) return -1;
        o->ratios[o->n_ratios++] = r;
        s = *end ? end + 1 : end;
    }
    return o->n_ratios ? 0 : -1;
}

static int parse_args(int argc, char **argv, bench_opts *o) {
    *o = (bench_opts){.pairs = 40, .prompt_len = 160, .cont_len = 64, .seeds = 5, .threads = 1,
                      .cp = duet_compress_default_params()};
    parse_ratios("1,0.9,0.8,0.7,0.6,0.5,0.4,0.3", o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int *num = !strcmp(a, "--pairs")       ? &o->pairs
                   : !strcmp(a, "--prompt")    ? &o->prompt_len
                   : !strcmp(a, "--cont")      ? &o->cont_len
                   : !strcmp(a, "--seeds")     ? &o->seeds
                   : !strcmp(a, "--keep-head") ? &o->cp.keep_head
                   : !strcmp(a, "--keep-tail") ? &o->cp.keep_tail
                   : !strcmp(a, "--segment")   ? &o->segment
                   : !strcmp(a, "--pair-offset") ? &o->pair_offset
                   : !strcmp(a, "-t")          ? &o->threads
                                               : NULL;
        if (!strcmp(a, "--json")) o->json = 1;
        else if (!v) return usage();
        else if (num) *num = atoi(v), i++;
        else if (!strcmp(a, "--slm")) o->slm = v, i++;
        else if (!strcmp(a, "--llm")) o->llm = v, i++;
        else if (!strcmp(a, "--text")) o->text = v, i++;
        else if (!strcmp(a, "--ratios")) {
            if (parse_ratios(v, o)) return fprintf(stderr, "bench_compress: bad --ratios '%s'\n", v), 2;
            i++;
        } else return usage();
    }
    if (!o->slm || !o->llm || !o->text || o->pairs < 1 || o->prompt_len < 2 || o->cont_len < 1 || o->seeds < 1 ||
        o->seeds > MAX_SEEDS || o->threads < 1 || o->segment < 0 || o->pair_offset < 0 || o->cp.keep_head < 0 || o->cp.keep_tail < 0)
        return usage();
    return 0;
}

/* A paragraph that opens a story (valid.txt marks no story boundary: see
 * ../shared/data/tinystories/README.md). */
static int opens_story(const char *s) {
    return !strncmp(s, "once upon a time", 16) || !strncmp(s, "once there was", 14) || !strncmp(s, "once, there", 11);
}

/* Pairs from stories of at least prompt + cont tokens, spread evenly over the
 * file: pair k's tokens (the story's first P, then the next C) go to
 * out + k * (P + C). A story runs from a paragraph that opens one to the next
 * such paragraph. Returns the number of pairs (fewer than asked when the file
 * has fewer such stories), or -1 if the file cannot be read. */
static int cut_pairs(const char *path, const duet_vocab *v, const bench_opts *o, int32_t *out, int *n_stories) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    const long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)len + 1);
    if (text && fread(text, 1, (size_t)len, f) != (size_t)len) {
        free(text);
        text = NULL;
    }
    fclose(f);
    if (!text) return -1;
    text[len] = 0;
    const int need = o->prompt_len + o->cont_len;
    int cap = 1024, n_eligible = 0;
    int32_t *eligible = malloc(sizeof *eligible * (size_t)cap * need); /* (n_eligible, need) */
    const char *story = text;
    for (const char *p = text;; p++) {
        /* a story ends at the end of the text or before a paragraph that opens the next */
        const int end = !*p || (p[0] == '\n' && p[1] == '\n' && opens_story(p + strspn(p, "\n")));
        if (!end) continue;
        int32_t *ids = NULL;
        const int n = duet_tokenize_alloc(v, story, (size_t)(p - story), 0, &ids);
        if (n >= need) {
            if (n_eligible == cap) eligible = realloc(eligible, sizeof *eligible * (size_t)(cap *= 2) * need);
            memcpy(eligible + (size_t)n_eligible++ * need, ids, sizeof *ids * need);
        }
        free(ids);
        if (!*p) break;
        story = p = p + strspn(p, "\n");
    }
    const int n = n_eligible < o->pairs ? n_eligible : o->pairs;
    *n_stories = n_eligible;
    for (int k = 0; k < n; k++)
        memcpy(out + (size_t)k * need, eligible + (size_t)(((int64_t)k * n_eligible / n + o->pair_offset) % n_eligible) * need,
               sizeof *out * need);
    free(eligible);
    free(text);
    return n;
}

/* Sum over the continuation of -log p_llm(cont_j | kept prompt, cont_<j). */
static int cont_loss(duet_seq *s, const int32_t *prompt, int n_prompt, const int32_t *cont, int n_cont,
                     int32_t *buf, float *rows, int V, double *loss, duet_err *err) {
    memcpy(buf, prompt, sizeof *buf * n_prompt);
    memcpy(buf + n_prompt, cont, sizeof *buf * n_cont);
    int rc = duet_rollback(s, 0);
    /* rows of the last prompt token and every continuation token but the last */
    if (!rc) rc = duet_eval(s, buf, n_prompt + n_cont - 1, rows, n_cont, err);
    if (rc) return rc;
    double sum = 0;
    for (int j = 0; j < n_cont; j++) {
        const float *z = rows + (size_t)j * V; /* (V) predicts cont[j] */
        double mx = z[0], e = 0;
        for (int i = 1; i < V; i++) mx = z[i] > mx ? z[i] : mx;
        for (int i = 0; i < V; i++) e += exp((double)z[i] - mx);
        sum += mx + log(e) - z[cont[j]];
    }
    *loss = sum;
    return 0;
}

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The random baseline's kept positions: the same forced head and tail as
 * compression, and n_kept - forced of the candidates drawn without
 * replacement (a partial Fisher-Yates), written increasing to index. */
static void random_keep(int n, int n_kept, const duet_compress_params *p, uint64_t seed, int *index, int *scratch) {
    const int lo = p->keep_head < n ? p->keep_head : n, hi = n - p->keep_tail > lo ? n - p->keep_tail : lo;
    const int budget = n_kept - (n - (hi - lo));
    unsigned char keep[4096] = {0};
    for (int i = 0; i < n; i++) keep[i] = i < lo || i >= hi;
    for (int i = lo; i < hi; i++) scratch[i - lo] = i;
    for (int k = 0; k < budget; k++) {
        const int j = k + (int)(splitmix(&seed) % (uint64_t)(hi - lo - k));
        const int t = scratch[k];
        scratch[k] = scratch[j];
        scratch[j] = t;
        keep[scratch[k]] = 1;
    }
    for (int i = 0, m = 0; i < n; i++)
        if (keep[i]) index[m++] = i;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double ratio, kept;           /* keep ratio asked; mean tokens kept */
    double loss[4];               /* summed continuation loss: surprisal, random (median seed), truncate, segmented */
    double seed_loss[MAX_SEEDS];  /* random: per seed */
    int wins_vs_random, wins_vs_truncate; /* pairs where surprisal's loss is lower */
    int seg_wins;                         /* pairs where the segmented variant's loss is below one-pass's */
} row;

int main(int argc, char **argv) {
    bench_opts o;
    if (parse_args(argc, argv, &o)) return 2;
    if (o.prompt_len > 4096) return fprintf(stderr, "bench_compress: --prompt at most 4096\n"), 2;
    duet_err err = {0};
    duet_pool *pool = duet_pool_new(o.threads);
    duet_model_params mp = duet_model_default_params();
    mp.pool = pool;
    mp.n_threads = o.threads;
    duet_model *slm = NULL, *llm = NULL;
    duet_vocab *v = NULL;
    duet_lm *slm_lm = NULL;
    duet_seq *llm_seq = NULL;
    const int P = o.prompt_len, C = o.cont_len;
    int rc = duet_model_load(&slm, o.slm, &mp, &err);
    if (!rc) rc = duet_model_load(&llm, o.llm, &mp, &err);
    if (!rc && duet_model_n_vocab(slm) != duet_model_n_vocab(llm))
        rc = duet_err_set(&err, DUET_EINVAL, "%s and %s have different vocabularies", o.slm, o.llm);
    if (!rc) rc = duet_vocab_load(&v, duet_model_gguf(slm), &err);
    if (!rc) rc = duet_lm_local_new(&slm_lm, slm, P, "slm", &err);
    if (!rc) rc = duet_seq_new(&llm_seq, llm, P + C, &err);
    if (rc) {
        fprintf(stderr, "bench_compress: %s\n", err.msg);
        return 1;
    }
    const int V = duet_model_n_vocab(llm);
    int32_t *pairs = malloc(sizeof *pairs * (size_t)o.pairs * (P + C)); /* (pairs, P + C) prompt then continuation */
    int32_t *kept = malloc(sizeof *kept * (size_t)P);                   /* (P) a shortened prompt */
    int32_t *buf = malloc(sizeof *buf * (size_t)(P + C));               /* (P + C) what the llm evaluates */
    float *rows = malloc(sizeof *rows * (size_t)C * V);                 /* (C, V) llm logits over the continuation */
    int *index = malloc(sizeof *index * (size_t)P), *scratch = malloc(sizeof *scratch * (size_t)P); /* (P) */
    row *res = calloc((size_t)o.n_ratios, sizeof *res);
    int n_long = 0; /* stories of at least P + C tokens */
    const int n_pairs = cut_pairs(o.text, v, &o, pairs, &n_long);
    if (n_pairs < 1) {
        fprintf(stderr, "bench_compress: %s: %s\n", o.text, n_pairs < 0 ? "cannot read it" : "no story long enough");
        return 1;
    }
    if (n_pairs < o.pairs)
        fprintf(stderr, "bench_compress: only %d stories of %d tokens or more\n", n_pairs, P + C);
    const double t0 = now_s();
    for (int k = 0; !rc && k < n_pairs; k++) {
        const int32_t *prompt = pairs + (size_t)k * (P + C), *cont = prompt + P;
        duet_compress_params cp = o.cp;
        cp.keep_ratio = 1.0;
        duet_compress_result cr; /* once per prompt: the surprisals */
        if ((rc = duet_compress_tokens(slm_lm, prompt, P, &cp, &cr, &err))) break;
        double full = NAN; /* the continuation's loss after the whole prompt */
        for (int r = 0; !rc && r < o.n_ratios; r++) {
            cp.keep_ratio = res[r].ratio = o.ratios[r];
            const int n_kept = duet_compress_n_kept(P, &cp);
            res[r].kept += n_kept;
            double loss[4], seed_loss[MAX_SEEDS];
            if (n_kept == P) { /* the whole prompt: one evaluation stands for every method */
                if (isnan(full) && (rc = cont_loss(llm_seq, prompt, P, cont, C, buf, rows, V, &full, &err))) break;
                loss[0] = loss[1] = loss[2] = loss[3] = full;
                for (int s = 0; s < o.seeds; s++) seed_loss[s] = full;
            } else {
                if ((rc = duet_compress_select(cr.surprisal, P, &cp, index, &err)) < 0) break;
                for (int i = 0; i < n_kept; i++) kept[i] = prompt[index[i]];
                if ((rc = cont_loss(llm_seq, kept, n_kept, cont, C, buf, rows, V, &loss[0], &err))) break;
                double mean_random = 0;
                for (int s = 0; !rc && s < o.seeds; s++) {
                    random_keep(P, n_kept, &cp, 1000003ull * (uint64_t)(s + 1) + (uint64_t)k, index, scratch);
                    for (int i = 0; i < n_kept; i++) kept[i] = prompt[index[i]];
                    rc = cont_loss(llm_seq, kept, n_kept, cont, C, buf, rows, V, &seed_loss[s], &err);
                    mean_random += seed_loss[s] / o.seeds;
                }
                if (rc) break;
                loss[1] = mean_random;
                if ((rc = cont_loss(llm_seq, prompt + (P - n_kept), n_kept, cont, C, buf, rows, V, &loss[2], &err)))
                    break;
                loss[3] = NAN;
                if (o.segment > 0) {
                    duet_compress_params sp = cp;
                    sp.segment = o.segment;
                    duet_compress_result sr;
                    if ((rc = duet_compress_tokens(slm_lm, prompt, P, &sp, &sr, &err))) break;
                    rc = cont_loss(llm_seq, sr.ids, sr.n_kept, cont, C, buf, rows, V, &loss[3], &err);
                    duet_compress_result_free(&sr);
                    if (rc) break;
                }
            }
            res[r].loss[0] += loss[0];
            res[r].loss[2] += loss[2];
            res[r].loss[3] += loss[3];
            res[r].seg_wins += loss[3] < loss[0];
            for (int s = 0; s < o.seeds; s++) res[r].seed_loss[s] += seed_loss[s];
            res[r].wins_vs_random += loss[0] < loss[1];
            res[r].wins_vs_truncate += loss[0] < loss[2];
        }
        duet_compress_result_free(&cr);
        if (!o.json) fprintf(stderr, "\rbench_compress: %d/%d pairs", k + 1, n_pairs);
    }
    const double secs = now_s() - t0;
    if (!o.json) fprintf(stderr, "\n");
    if (rc) {
        fprintf(stderr, "bench_compress: %s\n", err.msg);
        return 1;
    }
    const double n_scored = (double)n_pairs * C;
    cJSON *out = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    cJSON_AddStringToObject(out, "slm", o.slm);
    cJSON_AddStringToObject(out, "llm", o.llm);
    cJSON_AddStringToObject(out, "text", o.text);
    cJSON_AddNumberToObject(out, "pairs", n_pairs);
    cJSON_AddNumberToObject(out, "long_stories", n_long);
    cJSON_AddNumberToObject(out, "pair_offset", o.pair_offset);
    cJSON_AddNumberToObject(out, "prompt_tokens", P);
    cJSON_AddNumberToObject(out, "continuation_tokens", C);
    cJSON_AddNumberToObject(out, "seeds", o.seeds);
    cJSON_AddNumberToObject(out, "keep_head", o.cp.keep_head);
    cJSON_AddNumberToObject(out, "keep_tail", o.cp.keep_tail);
    cJSON_AddNumberToObject(out, "segment", o.segment);
    cJSON_AddNumberToObject(out, "threads", o.threads);
    cJSON_AddNumberToObject(out, "seconds", secs);
    if (!o.json)
        printf("| keep ratio | prompt tokens kept | surprisal (duet compress) | random (median of %d) | truncate front "
               "| pairs surprisal < random | pairs surprisal < truncate | segmented (%d) |\n"
               "|---|---|---|---|---|---|---|---|\n", o.seeds, o.segment);
    for (int r = 0; r < o.n_ratios; r++) {
        row *x = &res[r];
        double sorted[MAX_SEEDS];
        memcpy(sorted, x->seed_loss, sizeof(double) * o.seeds);
        qsort(sorted, (size_t)o.seeds, sizeof(double), cmp_double);
        /* the median seed (the mean of the middle two for an even count) */
        x->loss[1] = 0.5 * (sorted[(o.seeds - 1) / 2] + sorted[o.seeds / 2]);
        const double ppl[3] = {exp(x->loss[0] / n_scored), exp(x->loss[1] / n_scored), exp(x->loss[2] / n_scored)};
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "keep_ratio", x->ratio);
        cJSON_AddNumberToObject(j, "kept_tokens", x->kept / n_pairs);
        cJSON_AddNumberToObject(j, "actual_ratio", x->kept / n_pairs / P);
        cJSON_AddNumberToObject(j, "surprisal_ppl", ppl[0]);
        cJSON_AddNumberToObject(j, "random_ppl", ppl[1]);
        cJSON_AddNumberToObject(j, "random_ppl_min", exp(sorted[0] / n_scored));
        cJSON_AddNumberToObject(j, "random_ppl_max", exp(sorted[o.seeds - 1] / n_scored));
        cJSON_AddNumberToObject(j, "truncate_ppl", ppl[2]);
        cJSON_AddNumberToObject(j, "pairs_surprisal_below_random", x->wins_vs_random);
        cJSON_AddNumberToObject(j, "pairs_surprisal_below_truncate", x->wins_vs_truncate);
        if (o.segment > 0) {
            cJSON_AddNumberToObject(j, "segmented_ppl", exp(x->loss[3] / n_scored));
            cJSON_AddNumberToObject(j, "pairs_segmented_below_surprisal", x->seg_wins);
        }
        cJSON_AddItemToArray(arr, j);
        if (!o.json)
            printf("| %.2f | %.1f of %d | %.3f | %.3f (%.3f-%.3f) | %.3f | %d of %d | %d of %d | %.3f |\n", x->ratio,
                   x->kept / n_pairs, P, ppl[0], ppl[1], exp(sorted[0] / n_scored),
                   exp(sorted[o.seeds - 1] / n_scored), ppl[2], x->wins_vs_random, n_pairs, x->wins_vs_truncate,
                   n_pairs, exp(x->loss[3] / n_scored));
    }
    cJSON_AddItemToObject(out, "rows", arr);
    if (o.json) {
        char *s = cJSON_PrintUnformatted(out);
        printf("%s\n", s);
        free(s);
    } else {
        printf("\n%d pairs of %d + %d tokens (from %d stories that long), %.1f s\n", n_pairs, P, C, n_long, secs);
    }
    cJSON_Delete(out);
    free(pairs);
    free(kept);
    free(buf);
    free(rows);
    free(index);
    free(scratch);
    free(res);
    duet_seq_free(llm_seq);
    duet_lm_free(slm_lm);
    duet_vocab_free(v);
    duet_model_free(llm);
    duet_model_free(slm);
    duet_pool_free(pool);
    return 0;
}

/* duet perplexity: mean next-token loss of one or more models over a whole
 * text file, evaluated by the inference engine with a sliding window, and
 * optionally their agreement with a reference model at every position, or
 * the loss of the models' fused distribution (--strategy mix|poe|cd|proxy). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "duet/model.h"
#include "duet/threadpool.h"
#include "duet/train.h"
#include "fuse_cli.h"
#include "opts.h"

#define MAX_MODELS 16

static const char usage_head[] =
    "usage: duet perplexity -m MODEL.gguf [-m MODEL2.gguf ...] -f TEXT [--ctx N] [--ref REF.gguf]\n"
    "                       [-t THREADS] [--json]\n"
    "  The text is split into stories (blank-line paragraphs; see docs/distillation.md),\n"
    "  tokenized with the first model's vocabulary with <|endoftext|> (eos) after each story.\n"
    "  Windows of N tokens (default: the first model's context) advance by N/2; each token\n"
    "  is scored once, with at least N/2 tokens of context after the first window.\n"
    "  --ref compares every model with a reference model (same vocabulary) at every scored\n"
    "  position: top-1 agreement and mean acceptance 1 - TV(p_ref, p_model); the reference is\n"
    "  evaluated once for all models. --json prints one object; with several models (or --ref)\n"
    "  it holds a \"models\" array.\n"
    "  --strategy mix|poe|cd|proxy --slm SLM [--slm-tuned TUNED]: the perplexity of the fused\n"
    "  next-token distribution of -m's model (the LLM) and the SLM (proxy: LLM + TUNED - SLM), each\n"
    "  model on the same windows (default: the shortest trained context), under \"perplexity\"; the\n"
    "  models' own under \"models\". --weights W1,W2,... (mix, poe) scores several weights in one pass.\n";

#define MAX_SWEEP 64

/* --weights: up to MAX_SWEEP numbers in [0, 1] separated by commas */
typedef struct {
    float w[MAX_SWEEP];
    int n;
} weight_list;

static int parse_weights(const char *v, void *dest) {
    weight_list *l = dest;
    l->n = 0;
    while (*v) {
        char *end;
        double x = strtod(v, &end);
        if (end == v || !(x >= 0 && x <= 1) || l->n == MAX_SWEEP) return -1;
        l->w[l->n++] = (float)x;
        v = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return l->n ? 0 : -1;
}

static void print_num(const char *key, double x, const char *fmt) {
    printf(",\"%s\":", key);
    if (isfinite(x)) printf(fmt, x);
    else printf("null");
}

typedef struct {
    const char *path;
    duet_model *m;
    duet_seq *s;
    float *logits; /* (ctx, V) */
    double sum, agree, accept;
} scored_model;

/* log-sum-exp of a row and its argmax */
static double row_lse(const float *z, int V, int *top) {
    int t = 0;
    for (int i = 1; i < V; i++) t = z[i] > z[t] ? i : t;
    double e = 0;
    for (int i = 0; i < V; i++) e += exp((double)z[i] - z[t]);
    *top = t;
    return z[t] + log(e);
}

int cmd_perplexity(int argc, char **argv) {
    scored_model ms[MAX_MODELS + 1];
    memset(ms, 0, sizeof ms);
    int ctx = 0, threads = duet_cli_default_threads(), json = 0;
    const char *text_path = NULL, *ref_path = NULL, *strategy = NULL;
    fuse_cli fz;
    fuse_cli_init(&fz);
    weight_list sweep = {.n = 0};
    const char *model_paths[MAX_MODELS];
    duet_opt_list models = {model_paths, 0, MAX_MODELS};
    const duet_opt opts[] = {
        DUET_OPT_LIST("model", 'm', &models, "PATH", "a model to score (repeat for several, up to 16)"),
        DUET_OPT_STR("file", 'f', &text_path, "TEXT", "the text file (required)"),
        DUET_OPT_INT("ctx", 'c', &ctx, 2, 1 << 20, "N", "window length, >= 2 (default: the first model's context)"),
        DUET_OPT_STR("ref", 0, &ref_path, "REF.gguf", "also compare every model with this reference model"),
        DUET_OPT_THREADS(&threads),
        DUET_OPT_FLAG("json", 0, &json, "print one JSON object"),
        DUET_OPT_STR("strategy", 0, &strategy, "mix|poe|cd|proxy", "score the fused distribution of -m's model and --slm"),
        FUSE_CLI_OPT_SLM(&fz),
        FUSE_CLI_OPTS(&fz),
        DUET_OPT_CUSTOM("weights", 0, &sweep, parse_weights, "W1,W2,... in [0, 1]",
                        "mix, poe: also score each of these weights (one pass over the models)"),
        DUET_OPT_END,
    };
    int prc = duet_opts_parse("perplexity", opts, argc, argv, usage_head);
    if (prc) return prc == 1 ? 0 : prc;
    if (!models.n || !text_path)
        return duet_opts_error("perplexity", "need -m MODEL and -f TEXT (duet perplexity --help)");
    int rule = -1;
    if (strategy && (rule = fuse_cli_rule(strategy)) < 0)
        return duet_opts_error("perplexity", "--strategy takes mix, poe, cd or proxy, not '%s'", strategy);
    if ((prc = fuse_cli_check("perplexity", &fz, rule))) return prc;
    if (rule < 0 && (fz.slm || sweep.n)) return duet_opts_error("perplexity", "--slm and --weights need --strategy");
    if (rule >= 0 && (models.n != 1 || ref_path))
        return duet_opts_error("perplexity", "--strategy fuses one -m LLM with --slm; it takes no second -m or --ref");
    if (sweep.n && rule != DUET_FUSE_MIX && rule != DUET_FUSE_POE)
        return duet_opts_error("perplexity", "--weights is for --strategy mix or poe");
    int n_models = models.n;
    for (int k = 0; k < n_models; k++) ms[k].path = model_paths[k];
    const char *fuse_paths[FUSE_CLI_MAX];
    if (rule >= 0) { /* the rule's models, LLM first: each scored alone too */
        n_models = fuse_cli_paths(&fz, model_paths[0], fuse_paths);
        for (int k = 0; k < n_models; k++) ms[k].path = fuse_paths[k];
    }
    double fsum = 0, wsum[MAX_SWEEP] = {0};
    int64_t excluded = 0; /* cd: targets outside the plausibility set (infinite loss) */
    float *fused = NULL;
    int n_all = n_models + (ref_path != NULL); /* the reference, if any, is ms[n_models] */
    if (ref_path) ms[n_models].path = ref_path;
    duet_err err = {0};
    duet_tokens toks = {0};
    /* One pool of exactly -t threads shared by every model. (A NULL pool for
     * -t 1 would make each model start its own pool of one thread per CPU.) */
    duet_pool *pool = duet_pool_new(threads);
    duet_model_params mp = duet_model_default_params();
    mp.pool = pool;
    mp.n_threads = threads;
    if (!pool) {
        fprintf(stderr, "duet perplexity: cannot start %d threads\n", threads);
        return 1;
    }
    int rc = 0, V = 0;
    for (int k = 0; !rc && k < n_all; k++) {
        rc = duet_model_load(&ms[k].m, ms[k].path, &mp, &err);
        if (!rc && k == 0) V = duet_model_n_vocab(ms[0].m);
        if (!rc && rule < 0 && duet_model_n_vocab(ms[k].m) != V)
            rc = duet_err_set(&err, DUET_EINVAL, "%s: vocabulary %d != %d of %s", ms[k].path,
                              duet_model_n_vocab(ms[k].m), V, ms[0].path);
    }
    if (!rc && rule >= 0) {
        duet_model *fm[FUSE_CLI_MAX];
        for (int k = 0; k < n_models; k++) fm[k] = ms[k].m;
        rc = fuse_cli_check_vocab(fm, fuse_paths, n_models, &err);
        if (!rc && !(fused = malloc(sizeof *fused * (size_t)V))) rc = duet_err_set(&err, DUET_ENOMEM, "out of memory");
    }
    if (!rc) rc = duet_tokens_from_text(&toks, text_path, ms[0].path, &err);
    if (!rc && !ctx && rule >= 0) /* fused: the shortest trained context */
        for (int k = 0; k < n_models; k++) {
            const int t = duet_model_hparams(ms[k].m)->n_ctx_train;
            if (t > 0 && (!ctx || t < ctx)) ctx = t;
        }
    if (!rc && !ctx) ctx = duet_model_hparams(ms[0].m)->n_ctx_train;
    if (!rc && ctx < 2) rc = duet_err_set(&err, DUET_EINVAL, "context %d too small", ctx);
    if (!rc && toks.n < 2) rc = duet_err_set(&err, DUET_EINVAL, "%s: fewer than 2 tokens", text_path);
    for (int k = 0; !rc && k < n_all; k++) {
        rc = duet_seq_new(&ms[k].s, ms[k].m, ctx, &err);
        if (!rc && !(ms[k].logits = malloc(sizeof(float) * (size_t)ctx * V)))
            rc = duet_err_set(&err, DUET_ENOMEM, "out of memory (logits)");
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* progress overwrites itself on a terminal; in a log, a line every 10 s at most */
    const int tty = isatty(fileno(stderr));
    double last_line = 0;
    int64_t scored = 0;
    const int half = ctx / 2;
    scored_model *ref = ref_path ? &ms[n_models] : NULL;
    for (int64_t start = 0; !rc; start += half) {
        int64_t n = toks.n - start < ctx ? toks.n - start : ctx;
        if (n < 2) break;
        /* Targets start+1..start+n-1 are predicted from rows 0..n-2; the first
         * window scores every row, later ones only the rows past the overlap. */
        int first = start == 0 ? 0 : ctx - half - 1;
        if (first >= n - 1) break;
        for (int k = 0; !rc && k < n_all; k++) {
            if ((rc = duet_rollback(ms[k].s, 0)) != 0) { duet_err_set(&err, rc, "rollback failed"); break; }
            rc = duet_eval(ms[k].s, toks.ids + start, (int)n, ms[k].logits, (int)n, &err);
            if (rc) duet_err_prefix(&err, "%s", ms[k].path);
        }
        if (rc) break;
        for (int r = first; r < n - 1; r++) {
            int32_t y = toks.ids[start + r + 1];
            int rtop = 0;
            double rlse = 0;
            const float *zr = ref ? ref->logits + (size_t)r * V : NULL;
            if (ref) { rlse = row_lse(zr, V, &rtop); ref->sum += rlse - zr[y]; }
            for (int k = 0; k < n_models; k++) {
                const float *z = ms[k].logits + (size_t)r * V;
                int top;
                double lse = row_lse(z, V, &top);
                ms[k].sum += lse - z[y];
                if (!ref) continue;
                double tv = 0;
                for (int i = 0; i < V; i++) tv += fabs(exp((double)z[i] - lse) - exp((double)zr[i] - rlse));
                ms[k].agree += top == rtop;
                ms[k].accept += 1.0 - 0.5 * tv;
            }
            if (rule >= 0) { /* the fused distribution's loss of the same target */
                const float *rows[FUSE_CLI_MAX];
                for (int k = 0; k < n_models; k++) rows[k] = ms[k].logits + (size_t)r * V;
                duet_fuse_params par = fz.par;
                for (int w = -1; !rc && w < sweep.n; w++) {
                    if (w >= 0) par.weight = sweep.w[w];
                    if ((rc = duet_fuse_logits(fused, rows, V, &par, &err)) < 0) break;
                    int top;
                    const double loss = row_lse(fused, V, &top) - fused[y];
                    if (w < 0) fsum += loss, excluded += isinf(loss);
                    else wsum[w] += loss;
                }
                if (rc) break;
            }
            scored++;
        }
        if (!json && tty) {
            fprintf(stderr, "\rperplexity: %lld/%lld tokens, loss %.4f", (long long)scored, (long long)toks.n - 1,
                    ms[0].sum / scored);
        } else if (!json) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double el = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
            if (el - last_line >= 10) {
                fprintf(stderr, "perplexity: %lld/%lld tokens, loss %.4f\n", (long long)scored,
                        (long long)toks.n - 1, ms[0].sum / scored);
                last_line = el;
            }
        }
        if (start + n >= toks.n) break;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (rc) {
        fprintf(stderr, "%sduet perplexity: %s\n", json || !tty ? "" : "\n", err.msg);
    } else if (json && rule >= 0) {
        const double loss = fsum / scored;
        printf("{\"model\":\"%s\",\"strategy\":\"fusion\",\"rule\":\"%s\",\"params\":{", ms[0].path,
               fuse_cli_rule_name(fz.par.rule));
        if (rule == DUET_FUSE_MIX || rule == DUET_FUSE_POE) printf("\"weight\":%g", fz.par.weight);
        if (rule == DUET_FUSE_CD) printf("\"alpha\":%g,\"beta\":%g", fz.par.alpha, fz.par.beta);
        printf("},\"file\":\"%s\",\"ctx\":%d,\"tokens\":%lld,\"scored\":%lld,\"seconds\":%.2f", text_path, ctx,
               (long long)toks.n, (long long)scored, secs);
        print_num("loss", loss, "%.6f");
        print_num("perplexity", exp(loss), "%.4f");
        if (rule == DUET_FUSE_CD) printf(",\"excluded\":%lld", (long long)excluded);
        printf(",\"models\":[");
        for (int k = 0; k < n_models; k++)
            printf("%s{\"model\":\"%s\",\"role\":\"%s\",\"loss\":%.6f,\"perplexity\":%.4f}", k ? "," : "", ms[k].path,
                   fuse_cli_role(fz.par.rule, k), ms[k].sum / scored, exp(ms[k].sum / scored));
        printf("]");
        if (sweep.n) {
            printf(",\"sweep\":[");
            for (int w = 0; w < sweep.n; w++) {
                printf("%s{\"weight\":%g", w ? "," : "", sweep.w[w]);
                print_num("loss", wsum[w] / scored, "%.6f");
                print_num("perplexity", exp(wsum[w] / scored), "%.4f");
                printf("}");
            }
            printf("]");
        }
        printf("}\n");
    } else if (json) {
        int several = n_models > 1 || ref;
        if (several)
            printf("{\"file\":\"%s\",\"ctx\":%d,\"tokens\":%lld,\"scored\":%lld,\"seconds\":%.2f,", text_path, ctx,
                   (long long)toks.n, (long long)scored, secs);
        if (ref)
            printf("\"ref\":{\"model\":\"%s\",\"loss\":%.6f,\"perplexity\":%.4f},", ref->path, ref->sum / scored,
                   exp(ref->sum / scored));
        if (several) printf("\"models\":[");
        for (int k = 0; k < n_models; k++) {
            double loss = ms[k].sum / scored;
            if (several) printf("%s{\"model\":\"%s\",\"loss\":%.6f,\"perplexity\":%.4f", k ? "," : "", ms[k].path, loss,
                                exp(loss));
            else printf("{\"model\":\"%s\",\"file\":\"%s\",\"ctx\":%d,\"tokens\":%lld,\"scored\":%lld,\"loss\":%.6f,"
                        "\"perplexity\":%.4f,\"seconds\":%.2f", ms[k].path, text_path, ctx, (long long)toks.n,
                        (long long)scored, loss, exp(loss), secs);
            if (ref) printf(",\"top1_agreement\":%.6f,\"acceptance\":%.6f", ms[k].agree / scored, ms[k].accept / scored);
            printf("}");
        }
        printf(several ? "]}\n" : "\n");
    } else {
        fprintf(stderr, "%sperplexity: %lld tokens scored (ctx %d, %.1f s)%s\n", tty ? "\r" : "", (long long)scored,
                ctx, secs, tty ? "              " : "");
        for (int k = 0; k < n_models; k++) {
            fprintf(stderr, "  %s: loss %.4f, perplexity %.3f", ms[k].path, ms[k].sum / scored, exp(ms[k].sum / scored));
            if (ref) fprintf(stderr, "; vs %s: top-1 agreement %.4f, acceptance 1-TV %.4f", ref->path,
                             ms[k].agree / scored, ms[k].accept / scored);
            fprintf(stderr, "\n");
        }
        if (ref) fprintf(stderr, "  %s (ref): loss %.4f, perplexity %.3f\n", ref->path, ref->sum / scored,
                         exp(ref->sum / scored));
        if (rule >= 0) {
            char desc[96];
            fuse_cli_describe(&fz, desc, sizeof desc);
            fprintf(stderr, "  fused (%s): loss %.4f, perplexity %.3f", desc, fsum / scored, exp(fsum / scored));
            if (rule == DUET_FUSE_CD) fprintf(stderr, "; %lld targets outside the plausibility set", (long long)excluded);
            fprintf(stderr, "\n");
            for (int w = 0; w < sweep.n; w++)
                fprintf(stderr, "  fused (%s, weight %g): loss %.4f, perplexity %.3f\n", fuse_cli_rule_name(fz.par.rule),
                        sweep.w[w], wsum[w] / scored, exp(wsum[w] / scored));
        }
    }
    for (int k = 0; k < n_all; k++) {
        free(ms[k].logits);
        duet_seq_free(ms[k].s);
        duet_model_free(ms[k].m);
    }
    free(fused);
    duet_tokens_free(&toks);
    duet_pool_free(pool);
    return rc ? 1 : 0;
}

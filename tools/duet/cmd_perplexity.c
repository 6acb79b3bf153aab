/* duet perplexity: mean next-token loss of a model over a whole text file,
 * evaluated by the inference engine with a sliding window. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duet/model.h"
#include "duet/threadpool.h"
#include "duet/train.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: duet perplexity -m MODEL.gguf -f TEXT [--ctx N] [--ref REF.gguf] [-t THREADS] [--json]\n"
            "  The text is split into stories (blank-line paragraphs; see docs/distillation.md),\n"
            "  tokenized with the model's vocabulary with <|endoftext|> (eos) after each story.\n"
            "  Windows of N tokens (default: the model's context) advance by N/2; each token is\n"
            "  scored once, with at least N/2 tokens of context after the first window.\n"
            "  --ref REF.gguf  also compare with a reference model (same vocabulary) at every scored\n"
            "                  position: top-1 agreement and mean acceptance 1 - TV(p_ref, p_model).\n");
}

int cmd_perplexity(int argc, char **argv) {
    const char *model_path = NULL, *text_path = NULL, *ref_path = NULL;
    int ctx = 0, threads = 1, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--json")) { json = 1; continue; }
        if (i + 1 >= argc) { fprintf(stderr, "duet perplexity: %s needs a value\n", a); return 2; }
        const char *v = argv[++i];
        char *end = NULL;
        if (!strcmp(a, "-m")) model_path = v;
        else if (!strcmp(a, "-f")) text_path = v;
        else if (!strcmp(a, "--ref")) ref_path = v;
        else if (!strcmp(a, "--ctx")) ctx = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "-t")) threads = (int)strtol(v, &end, 10);
        else { fprintf(stderr, "duet perplexity: unknown option '%s'\n", a); return 2; }
        if (end && *end) { fprintf(stderr, "duet perplexity: bad number '%s' for %s\n", v, a); return 2; }
    }
    if (!model_path || !text_path || ctx < 0 || ctx == 1 || threads < 1 || threads > 256) {
        fprintf(stderr, "duet perplexity: need -m MODEL and -f TEXT (--ctx >= 2, -t >= 1)\n");
        return 2;
    }
    duet_err err = {0};
    duet_tokens toks = {0};
    duet_pool *pool = threads > 1 ? duet_pool_new(threads) : NULL;
    duet_model_params mp = duet_model_default_params();
    mp.pool = pool;
    duet_model *m = NULL, *rm = NULL;
    duet_seq *s = NULL, *rs = NULL;
    float *logits = NULL, *rlogits = NULL;
    int rc = duet_model_load(&m, model_path, &mp, &err);
    if (!rc && ref_path) {
        rc = duet_model_load(&rm, ref_path, &mp, &err);
        if (!rc && duet_model_n_vocab(rm) != duet_model_n_vocab(m))
            rc = duet_err_set(&err, DUET_EINVAL, "--ref vocabulary %d != model vocabulary %d", duet_model_n_vocab(rm),
                              duet_model_n_vocab(m));
    }
    if (!rc) rc = duet_tokens_from_text(&toks, text_path, model_path, &err);
    if (!rc && !ctx) ctx = duet_model_hparams(m)->n_ctx_train;
    if (!rc && ctx < 2) rc = duet_err_set(&err, DUET_EINVAL, "context %d too small", ctx);
    if (!rc && toks.n < 2) rc = duet_err_set(&err, DUET_EINVAL, "%s: fewer than 2 tokens", text_path);
    if (!rc) rc = duet_seq_new(&s, m, ctx, &err);
    if (!rc && rm) rc = duet_seq_new(&rs, rm, ctx, &err);
    const int V = rc ? 0 : duet_model_n_vocab(m);
    if (!rc && !(logits = malloc(sizeof(float) * (size_t)ctx * V)))
        rc = duet_err_set(&err, DUET_ENOMEM, "out of memory (logits)");
    if (!rc && rm && !(rlogits = malloc(sizeof(float) * (size_t)ctx * V)))
        rc = duet_err_set(&err, DUET_ENOMEM, "out of memory (logits)");
    double agree = 0, accept = 0, ref_sum = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double sum = 0;
    int64_t scored = 0;
    const int half = ctx / 2;
    for (int64_t start = 0; !rc; start += half) {
        int64_t n = toks.n - start < ctx ? toks.n - start : ctx;
        if (n < 2) break;
        /* Targets start..start+n-1 are predicted from rows 0..n-2; the first
         * window scores every row, later ones only the rows past the overlap. */
        int first = start == 0 ? 0 : ctx - half - 1;
        if (first >= n - 1) break;
        if ((rc = duet_rollback(s, 0)) != 0) { duet_err_set(&err, rc, "rollback failed"); break; }
        rc = duet_eval(s, toks.ids + start, (int)n, logits, (int)n, &err);
        if (!rc && rs && !(rc = duet_rollback(rs, 0)))
            rc = duet_eval(rs, toks.ids + start, (int)n, rlogits, (int)n, &err);
        if (rc) break;
        for (int r = first; r < n - 1; r++) {
            const float *z = logits + (size_t)r * V;
            int top = 0;
            for (int i = 1; i < V; i++) top = z[i] > z[top] ? i : top;
            float mx = z[top];
            double e = 0;
            for (int i = 0; i < V; i++) e += exp((double)z[i] - mx);
            double lse = mx + log(e);
            sum += lse - z[toks.ids[start + r + 1]];
            scored++;
            if (!rs) continue;
            /* reference distribution at the same position */
            const float *zr = rlogits + (size_t)r * V;
            int rtop = 0;
            for (int i = 1; i < V; i++) rtop = zr[i] > zr[rtop] ? i : rtop;
            double er = 0;
            for (int i = 0; i < V; i++) er += exp((double)zr[i] - zr[rtop]);
            double rlse = zr[rtop] + log(er), tv = 0;
            for (int i = 0; i < V; i++) tv += fabs(exp((double)z[i] - lse) - exp((double)zr[i] - rlse));
            agree += top == rtop;
            accept += 1.0 - 0.5 * tv;
            ref_sum += rlse - zr[toks.ids[start + r + 1]];
        }
        if (start + n >= toks.n) break;
        if (!json) fprintf(stderr, "\rperplexity: %lld/%lld tokens, loss %.4f", (long long)scored,
                           (long long)toks.n - 1, sum / scored);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (rc) {
        fprintf(stderr, "%sduet perplexity: %s\n", json ? "" : "\n", err.msg);
    } else {
        double loss = sum / scored;
        char cmp[256] = "";
        if (rs && json)
            snprintf(cmp, sizeof cmp, ",\"ref_loss\":%.6f,\"top1_agreement\":%.6f,\"acceptance\":%.6f",
                     ref_sum / scored, agree / scored, accept / scored);
        else if (rs)
            snprintf(cmp, sizeof cmp, "; vs ref (loss %.4f): top-1 agreement %.4f, acceptance 1-TV %.4f",
                     ref_sum / scored, agree / scored, accept / scored);
        if (json)
            printf("{\"model\":\"%s\",\"file\":\"%s\",\"ctx\":%d,\"tokens\":%lld,\"scored\":%lld,\"loss\":%.6f,"
                   "\"perplexity\":%.4f,\"seconds\":%.2f%s}\n",
                   model_path, text_path, ctx, (long long)toks.n, (long long)scored, loss, exp(loss), secs, cmp);
        else
            fprintf(stderr, "\rperplexity: %lld tokens scored (ctx %d), loss %.4f, perplexity %.3f (%.1f s)%s\n",
                    (long long)scored, ctx, loss, exp(loss), secs, cmp);
    }
    free(logits);
    free(rlogits);
    duet_seq_free(s);
    duet_seq_free(rs);
    duet_model_free(m);
    duet_model_free(rm);
    duet_tokens_free(&toks);
    duet_pool_free(pool);
    return rc ? 1 : 0;
}

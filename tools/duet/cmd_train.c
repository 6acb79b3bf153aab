/* duet train: train a llama model from scratch (shape flags) or fine-tune one (--init). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/quant.h"
#include "duet/threadpool.h"
#include "duet/train.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: duet train -f TRAIN.txt --tok tok.gguf -o OUT.gguf [options]\n"
            "  data:    --valid VALID.txt   validation text (loss every --eval-every steps, early stopping)\n"
            "  model:   --init M.gguf (fine-tune) or --n-embd N --n-layer N --n-head N --n-ff N --ctx N [--tied]\n"
            "           [--rope-base F] [--norm-eps F]   (defaults: 128, 4, 4, 352, 256, untied, 10000, 1e-5)\n"
            "  batch:   --batch B (8) --seq T (ctx)\n"
            "  optim:   --steps N (2000) --lr F (1e-3) --lr-min F (lr/10) --warmup N (100) --wd F (0.1)\n"
            "           --clip F (1.0) --seed N (1337)\n"
            "  run:     --eval-every N (200) --eval-batches N (20, 0 = whole file) --patience N (0 = off)\n"
            "           --ckpt-minutes F (5) --time-limit MIN (0 = none) --stop-at STEP --resume  -t THREADS (1)\n"
            "  output:  --f16 (F16 matrices; default F32) --name NAME --json\n"
            "Writes OUT.gguf (best validation loss), OUT.ckpt, OUT.loss.csv and OUT.loss.png.\n");
}

/* Shared by train and distill: parses one common option at argv[*i]; 1 if consumed, 0 if not, -1 on error. */
int duet_cli_train_common(int argc, char **argv, int *i, duet_train_opts *o, duet_tconfig *c, const char **init,
                          const char **train_path, const char **valid_path, int *threads, int *json);

static int num(const char *s, double *out) {
    char *end;
    *out = strtod(s, &end);
    return *s && !*end && isfinite(*out);
}

int duet_cli_train_common(int argc, char **argv, int *i, duet_train_opts *o, duet_tconfig *c, const char **init,
                          const char **train_path, const char **valid_path, int *threads, int *json) {
    const char *a = argv[*i];
    if (!strcmp(a, "--json")) { *json = 1; return 1; }
    if (!strcmp(a, "--tied")) { c->tied = 1; return 1; }
    if (!strcmp(a, "--resume")) { o->resume = 1; return 1; }
    if (!strcmp(a, "--f16")) { o->out_type = DUET_TYPE_F16; return 1; }
    static const char *const with_value[] = {"-f", "--valid", "--tok", "-o", "--init", "--name", "--n-embd",
                                             "--n-layer", "--n-head", "--n-ff", "--ctx", "--vocab", "--rope-base",
                                             "--norm-eps", "--batch", "--seq", "--steps", "--lr", "--lr-min",
                                             "--warmup", "--wd", "--clip", "--seed", "--eval-every", "--eval-batches",
                                             "--patience", "--ckpt-minutes", "--time-limit", "--stop-at", "-t"};
    int known = 0;
    for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++) known |= !strcmp(a, with_value[k]);
    if (!known) return 0;
    if (*i + 1 >= argc) { fprintf(stderr, "duet %s: %s needs a value\n", argv[0], a); return -1; }
    const char *v = argv[++*i];
    if (!strcmp(a, "-f")) { *train_path = v; return 1; }
    if (!strcmp(a, "--valid")) { *valid_path = v; return 1; }
    if (!strcmp(a, "--tok")) { o->tok_path = v; return 1; }
    if (!strcmp(a, "-o")) { o->out_path = v; return 1; }
    if (!strcmp(a, "--init")) { *init = v; return 1; }
    if (!strcmp(a, "--name")) { o->name = v; return 1; }
    double d;
    if (!num(v, &d)) { fprintf(stderr, "duet %s: bad number '%s' for %s\n", argv[0], v, a); return -1; }
    if (!strcmp(a, "--n-embd")) c->n_embd = (int)d;
    else if (!strcmp(a, "--n-layer")) c->n_layer = (int)d;
    else if (!strcmp(a, "--n-head")) c->n_head = (int)d;
    else if (!strcmp(a, "--n-ff")) c->n_ff = (int)d;
    else if (!strcmp(a, "--ctx")) c->n_ctx = (int)d;
    else if (!strcmp(a, "--vocab")) c->n_vocab = (int)d;
    else if (!strcmp(a, "--rope-base")) c->rope_base = (float)d;
    else if (!strcmp(a, "--norm-eps")) c->norm_eps = (float)d;
    else if (!strcmp(a, "--batch")) o->B = (int)d;
    else if (!strcmp(a, "--seq")) o->T = (int)d;
    else if (!strcmp(a, "--steps")) o->max_steps = (int64_t)d;
    else if (!strcmp(a, "--lr")) o->lr = (float)d;
    else if (!strcmp(a, "--lr-min")) o->lr_min = (float)d;
    else if (!strcmp(a, "--warmup")) o->warmup = (int64_t)d;
    else if (!strcmp(a, "--wd")) o->weight_decay = (float)d;
    else if (!strcmp(a, "--clip")) o->clip = (float)d;
    else if (!strcmp(a, "--seed")) o->seed = (uint64_t)d;
    else if (!strcmp(a, "--eval-every")) o->eval_every = (int)d;
    else if (!strcmp(a, "--eval-batches")) o->eval_batches = (int)d;
    else if (!strcmp(a, "--patience")) o->patience = (int)d;
    else if (!strcmp(a, "--ckpt-minutes")) o->ckpt_seconds = 60 * d;
    else if (!strcmp(a, "--time-limit")) o->time_limit = 60 * d;
    else if (!strcmp(a, "--stop-at")) o->stop_at = (int64_t)d;
    else if (!strcmp(a, "-t")) *threads = (int)d;
    return 1;
}

int cmd_train(int argc, char **argv) {
    duet_train_opts o;
    duet_train_opts_default(&o);
    o.lr_min = -1;
    o.T = 0;
    duet_tconfig c = {0, 256, 128, 4, 4, 352, 0, 10000.0f, 1e-5f};
    const char *init = NULL, *train_path = NULL, *valid_path = NULL;
    int threads = 1, json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        int r = duet_cli_train_common(argc, argv, &i, &o, &c, &init, &train_path, &valid_path, &threads, &json);
        if (r < 0) return 2;
        if (!r) { fprintf(stderr, "duet train: unknown option '%s'\n", argv[i]); return 2; }
    }
    if (!train_path || !o.out_path || !o.tok_path) {
        fprintf(stderr, "duet train: need -f TRAIN.txt, --tok tok.gguf and -o OUT.gguf\n");
        return 2;
    }
    if (o.lr_min < 0) o.lr_min = o.lr / 10;
    if (o.B < 1 || o.max_steps < 1 || threads < 1 || threads > 256 || o.warmup < 0) {
        fprintf(stderr, "duet train: bad --batch, --steps, --warmup or -t\n");
        return 2;
    }
    duet_err err = {0};
    duet_tokens tr = {0}, va = {0};
    if (duet_tokens_from_text(&tr, train_path, o.tok_path, &err) ||
        (valid_path && duet_tokens_from_text(&va, valid_path, o.tok_path, &err))) {
        fprintf(stderr, "duet train: %s\n", err.msg);
        duet_tokens_free(&tr);
        return 1;
    }
    duet_tmodel *m = NULL;
    int rc;
    if (init) {
        rc = duet_tmodel_load_gguf(&m, init, o.B, o.T ? o.T : 1 << 16, 1, &err);
        if (!rc && !o.T) o.T = m->T;
    } else {
        /* n_vocab from the tokenizer */
        duet_gguf *g = NULL;
        uint64_t nv = 0;
        duet_gguf_vtype et;
        const void *d;
        rc = duet_gguf_open(&g, o.tok_path, &err);
        if (!rc) rc = duet_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &nv, &d, &err);
        duet_gguf_close(g);
        c.n_vocab = (int)nv;
        if (!o.T) o.T = c.n_ctx;
        if (!rc) rc = duet_tmodel_new(&m, &c, o.B, o.T, 1, &err);
        if (!rc) duet_tmodel_init(m, o.seed);
    }
    if (!rc && o.T > m->T) rc = duet_err_set(&err, DUET_EINVAL, "--seq %d exceeds the context %d", o.T, m->T);
    for (int64_t i = 0; !rc && i < tr.n; i++)
        if (tr.ids[i] >= m->cfg.n_vocab)
            rc = duet_err_set(&err, DUET_ERANGE, "token %d of the data exceeds the model vocabulary %d", tr.ids[i],
                              m->cfg.n_vocab);
    if (rc) {
        fprintf(stderr, "duet train: %s\n", err.msg);
        duet_tokens_free(&tr);
        duet_tokens_free(&va);
        duet_tmodel_free(m);
        return 1;
    }
    if (!o.name) o.name = "duet";
    o.log = stderr;
    fprintf(stderr, "train: %zu parameters (n_embd %d, n_layer %d, n_head %d, n_ff %d, vocab %d%s), %lld train tokens, "
                    "%lld valid tokens, batch %d x %d, %d thread(s)\n",
            m->n_params, m->cfg.n_embd, m->cfg.n_layer, m->cfg.n_head, m->cfg.n_ff, m->cfg.n_vocab,
            m->cfg.tied ? ", tied" : "", (long long)tr.n, (long long)va.n, o.B, o.T, threads);
    duet_pool *pool = threads > 1 ? duet_pool_new(threads) : NULL;
    duet_train_result res;
    rc = duet_train_run(&m, NULL, &tr, valid_path ? &va : NULL, &o, pool, &res, &err);
    duet_pool_free(pool);
    if (rc) fprintf(stderr, "duet train: %s\n", err.msg);
    else if (json)
        printf("{\"output\":\"%s\",\"params\":%zu,\"steps\":%lld,\"tokens\":%.0f,\"best_valid_loss\":%.6f,"
               "\"train_loss\":%.6f,\"seconds\":%.1f,\"tokens_per_s\":%.1f,\"gflops\":%.2f,\"stopped_early\":%s}\n",
               o.out_path, m->n_params, (long long)res.steps, res.tokens, res.best_valid, res.last_train, res.seconds,
               res.tokens_per_s, res.gflops, res.stopped_early ? "true" : "false");
    else
        fprintf(stderr, "train: %lld steps, %.0f tokens, best valid loss %.4f, %.0f tok/s, %.1f GFLOP/s -> %s\n",
                (long long)res.steps, res.tokens, res.best_valid, res.tokens_per_s, res.gflops, o.out_path);
    duet_tokens_free(&tr);
    duet_tokens_free(&va);
    duet_tmodel_free(m);
    return rc ? 1 : 0;
}

/* duet train: train a llama model from scratch (shape flags) or fine-tune one (--init). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/quant.h"
#include "duet/threadpool.h"
#include "duet/train.h"
#include "train_cli.h"

static const char usage_head[] =
    "usage: duet train -f TRAIN.txt --tok tok.gguf -o OUT.gguf [options]\n"
    "  Trains a llama model from scratch (the shape options) or fine-tunes one (--init).\n"
    "  Writes OUT.gguf (best validation loss), OUT.ckpt, OUT.loss.csv and OUT.loss.png.\n";

void train_cli_defaults(train_cli *t) {
    memset(t, 0, sizeof *t);
    duet_train_opts_default(&t->o);
    t->o.T = 0; /* 0: the context */
    t->c = (duet_tconfig){0, 256, 128, 4, 4, 352, 0, 10000.0f, 1e-5f};
    t->threads = duet_cli_default_threads();
    t->ckpt_minutes = t->o.ckpt_seconds / 60;
    t->time_limit_minutes = t->o.time_limit / 60;
}

int train_cli_rows(duet_opt *rows, train_cli *t, const char *init_help) {
    duet_train_opts *o = &t->o;
    duet_tconfig *c = &t->c;
    const double big = 1 << 20;
    const duet_opt shared[] = {
        /* data and output */
        DUET_OPT_STR("file", 'f', &t->train_path, "TRAIN.txt", "training text (required)"),
        DUET_OPT_STR("valid", 0, &t->valid_path, "VALID.txt", "validation text (loss every --eval-every steps, early stopping)"),
        DUET_OPT_STR("tok", 0, &o->tok_path, "tok.gguf", "tokenizer (required; its size is the vocabulary)"),
        DUET_OPT_STR("output", 'o', &o->out_path, "OUT.gguf", "output model (required)"),
        DUET_OPT_STR("name", 0, &o->name, "NAME", "general.name of the output"),
        DUET_OPT_FLAG("f16", 0, &t->f16, "F16 matrices in the output (default F32)"),
        DUET_OPT_FLAG("json", 0, &t->json, "print one JSON object at the end"),
        /* model */
        DUET_OPT_STR("init", 0, &t->init, "M.gguf", init_help),
        DUET_OPT_INT("n-embd", 0, &c->n_embd, 1, 65536, "N", "embedding width (default 128)"),
        DUET_OPT_INT("n-layer", 0, &c->n_layer, 1, 4096, "N", "layers (default 4)"),
        DUET_OPT_INT("n-head", 0, &c->n_head, 1, 65536, "N", "attention heads (default 4)"),
        DUET_OPT_INT("n-ff", 0, &c->n_ff, 1, big, "N", "feed-forward width (default 352)"),
        DUET_OPT_INT("ctx", 'c', &c->n_ctx, 1, big, "N", "context length (default 256)"),
        DUET_OPT_INT("vocab", 0, &t->vocab_ignored, 1, INT_MAX, "N", "ignored: the tokenizer's size is the vocabulary"),
        DUET_OPT_FLAG("tied", 0, &c->tied, "output projection = token embedding (default untied)"),
        DUET_OPT_FLOAT_GT("rope-base", 0, &c->rope_base, 0, INFINITY, "F", "RoPE base (default 10000)"),
        DUET_OPT_FLOAT_GT("norm-eps", 0, &c->norm_eps, 0, 1, "F", "RMSNorm epsilon (default 1e-5)"),
        /* batch and optimizer */
        DUET_OPT_INT("batch", 0, &o->B, 1, 65536, "B", "windows per batch (default 8)"),
        DUET_OPT_INT("seq", 0, &o->T, 1, big, "T", "tokens per window (default: the context)"),
        DUET_OPT_I64("steps", 0, &o->max_steps, 1, INT64_MAX, "N", "optimizer steps (default 2000)"),
        DUET_OPT_FLOAT("lr", 0, &o->lr, 0, INFINITY, "F", "peak learning rate (default 1e-3)"),
        {.name = "lr-min", .type = DUET_OPTT_FLOAT, .dest = &o->lr_min, .min = 0, .max = INFINITY,
         .given = &t->lr_min_given, .arg = "F", .help = "final learning rate of the cosine (default lr/10)"},
        DUET_OPT_I64("warmup", 0, &o->warmup, 0, INT64_MAX, "N", "linear warmup steps (default 100)"),
        DUET_OPT_FLOAT("wd", 0, &o->weight_decay, 0, INFINITY, "F", "AdamW weight decay (default 0.1)"),
        DUET_OPT_FLOAT("clip", 0, &o->clip, 0, INFINITY, "F", "gradient norm clip, 0 = off (default 1.0)"),
        DUET_OPT_U64("seed", 's', &o->seed, "N", "seed of the init and the batches (default 1337)"),
        /* run */
        DUET_OPT_INT("eval-every", 0, &o->eval_every, 0, INT_MAX, "N", "steps between validations, 0 = never (default 200)"),
        DUET_OPT_INT("eval-batches", 0, &o->eval_batches, 0, INT_MAX, "N", "batches per validation, 0 = the whole file (default 20)"),
        DUET_OPT_INT("patience", 0, &o->patience, 0, INT_MAX, "N", "stop after N validations without improvement, 0 = off (default)"),
        DUET_OPT_DOUBLE("ckpt-minutes", 0, &t->ckpt_minutes, 0, 1e9, "F", "minutes between checkpoints (default 5)"),
        DUET_OPT_DOUBLE("time-limit", 0, &t->time_limit_minutes, 0, 1e9, "MIN", "minutes of training in this run, 0 = none (default)"),
        DUET_OPT_I64("stop-at", 0, &o->stop_at, 0, INT64_MAX, "STEP", "stop with a checkpoint after STEP steps, 0 = --steps"),
        DUET_OPT_FLAG("resume", 0, &o->resume, "continue from OUT.ckpt"),
        DUET_OPT_THREADS(&t->threads),
    };
    int n = (int)(sizeof shared / sizeof shared[0]);
    _Static_assert(sizeof shared / sizeof shared[0] <= TRAIN_CLI_MAX_ROWS, "TRAIN_CLI_MAX_ROWS");
    memcpy(rows, shared, sizeof shared);
    return n;
}

void train_cli_finish(train_cli *t) {
    if (!t->lr_min_given) t->o.lr_min = t->o.lr / 10;
    t->o.ckpt_seconds = 60 * t->ckpt_minutes;
    t->o.time_limit = 60 * t->time_limit_minutes;
    if (t->f16) t->o.out_type = DUET_TYPE_F16;
}

int cmd_train(int argc, char **argv) {
    train_cli t;
    train_cli_defaults(&t);
    duet_opt opts[TRAIN_CLI_MAX_ROWS + 1];
    int n = train_cli_rows(opts, &t, "fine-tune this model instead of training the shape options' from scratch");
    opts[n] = (duet_opt)DUET_OPT_END;
    int prc = duet_opts_parse("train", opts, argc, argv, usage_head);
    if (prc) return prc == 1 ? 0 : prc;
    train_cli_finish(&t);
    duet_train_opts o = t.o;
    duet_tconfig c = t.c;
    const char *init = t.init, *train_path = t.train_path, *valid_path = t.valid_path;
    const int threads = t.threads, json = t.json;
    if (!train_path || !o.out_path || !o.tok_path)
        return duet_opts_error("train", "need -f TRAIN.txt, --tok tok.gguf and -o OUT.gguf (duet train --help)");
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

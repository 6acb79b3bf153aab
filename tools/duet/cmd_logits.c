/* duet logits: float32 logits of every position of a token list, from one
 * batched eval (default) or one token per eval (--one-by-one). The output is
 * raw little-endian float32, n_pos x n_vocab, row-major. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duet/model.h"
#include "opts.h"

static const char usage_head[] =
    "usage: duet logits -m MODEL --tokens \"ID ID ...\" -o OUT [options]\n"
    "\n"
    "Writes the float32 little-endian logits of every position (n_pos x n_vocab,\n"
    "row-major) to OUT.\n"
    "\n";

static int fail(const char *msg) {
    fprintf(stderr, "duet logits: %s\n", msg);
    return 1;
}

/* Parses space/comma separated integers; *n_out gets the count. */
static int parse_tokens(const char *s, int32_t **out, int *n_out) {
    size_t cap = 16, n = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return -1;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < INT32_MIN || x > INT32_MAX || (*end && !strchr(" ,\t\n", *end))) {
            free(v);
            return -2;
        }
        if (n == cap) {
            int32_t *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) { free(v); return -1; }
            v = nv;
        }
        v[n++] = (int32_t)x;
        p = end;
    }
    *out = v;
    *n_out = (int)n;
    return 0;
}

int cmd_logits(int argc, char **argv) {
    const char *model_path = NULL, *tokens_arg = NULL, *out_path = NULL;
    int one_by_one = 0, threads = duet_cli_default_threads(), json = 0, kv_f32 = 0;
    static const char *const kv_types[] = {"f16", "f32", NULL};
    const duet_opt opts[] = {
        DUET_OPT_STR("model", 'm', &model_path, "PATH", "GGUF model (llama, qwen2)"),
        DUET_OPT_STR("tokens", 0, &tokens_arg, "\"ID ...\"", "token ids, separated by spaces or commas"),
        DUET_OPT_STR("output", 'o', &out_path, "PATH", "output file"),
        DUET_OPT_FLAG("one-by-one", 0, &one_by_one, "one eval per token instead of one batched eval"),
        DUET_OPT_THREADS(&threads),
        DUET_OPT_CHOICE("kv-type", 0, &kv_f32, kv_types, "KV cache element type (default f16)"),
        DUET_OPT_FLAG("json", 0, &json, "print a JSON summary on stdout"),
        DUET_OPT_END,
    };
    int orc = duet_opts_parse("logits", opts, argc, argv, usage_head);
    if (orc) return orc == 1 ? 0 : orc;
    if (!model_path || !tokens_arg || !out_path)
        return duet_opts_error("logits", "-m, --tokens and -o are required (duet logits --help)");
    duet_kv_type kv = kv_f32 ? DUET_KV_F32 : DUET_KV_F16;
    int32_t *tok = NULL;
    int n = 0;
    int prc = parse_tokens(tokens_arg, &tok, &n);
    if (prc == -1) return fail("out of memory");
    if (prc) {
        fprintf(stderr, "duet logits: --tokens: expected integers separated by spaces or commas\n");
        return 2;
    }
    if (n == 0) {
        free(tok);
        fprintf(stderr, "duet logits: --tokens is empty\n");
        return 2;
    }

    duet_err err = {0};
    duet_model_params mp = duet_model_default_params();
    mp.n_threads = threads;
    mp.kv_type = kv;
    duet_model *m = NULL;
    duet_seq *s = NULL;
    float *logits = NULL;
    FILE *f = NULL;
    int status = 1;
    if (duet_model_load(&m, model_path, &mp, &err)) {
        fprintf(stderr, "duet logits: %s\n", err.msg);
        goto out;
    }
    const int n_vocab = duet_model_n_vocab(m);
    /* the model's context (capped at 4096, llama.cpp's default) or longer if the list needs it */
    const int n_ctx_train = duet_model_hparams(m)->n_ctx_train;
    const int n_ctx = n > (n_ctx_train < 4096 ? n_ctx_train : 4096) ? n : (n_ctx_train < 4096 ? n_ctx_train : 4096);
    if (duet_seq_new(&s, m, n_ctx, &err)) {
        fprintf(stderr, "duet logits: %s\n", err.msg);
        goto out;
    }
    logits = malloc((size_t)n * (size_t)n_vocab * sizeof(float));
    if (!logits) {
        fail("out of memory");
        goto out;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (one_by_one) {
        for (int i = 0; i < n; i++) {
            if (duet_eval(s, tok + i, 1, logits + (size_t)i * n_vocab, 1, &err)) {
                fprintf(stderr, "duet logits: token %d: %s\n", i, err.msg);
                goto out;
            }
        }
    } else if (duet_eval(s, tok, n, logits, n, &err)) {
        fprintf(stderr, "duet logits: %s\n", err.msg);
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    f = fopen(out_path, "wb");
    if (!f) {
        fprintf(stderr, "duet logits: cannot open '%s' for writing: %s\n", out_path, strerror(errno));
        goto out;
    }
    /* x86 and every platform we build for are little-endian: write as is */
    if (fwrite(logits, sizeof(float), (size_t)n * n_vocab, f) != (size_t)n * n_vocab || fclose(f)) {
        f = NULL;
        fprintf(stderr, "duet logits: cannot write '%s'\n", out_path);
        goto out;
    }
    f = NULL;
    const double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    if (json)
        printf("{\"n_pos\": %d, \"n_vocab\": %d, \"mode\": \"%s\", \"kv_type\": \"%s\", \"eval_ms\": %.3f, \"output\": \"",
               n, n_vocab, one_by_one ? "one-by-one" : "batched", kv == DUET_KV_F16 ? "f16" : "f32", ms);
    if (json) {
        for (const char *c = out_path; *c; c++) {
            if (*c == '"' || *c == '\\') printf("\\%c", *c);
            else if ((unsigned char)*c < 0x20) printf("\\u%04x", *c);
            else putchar(*c);
        }
        printf("\"}\n");
    } else {
        fprintf(stderr, "duet logits: %d positions x %d logits -> %s (%.1f ms)\n", n, n_vocab, out_path, ms);
    }
    status = 0;
out:
    if (f) fclose(f);
    free(logits);
    free(tok);
    duet_seq_free(s);
    duet_model_free(m);
    return status;
}

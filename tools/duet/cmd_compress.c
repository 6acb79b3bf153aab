/* duet compress: the pipeline's compress stage on its own -- the SLM keeps
 * the most surprising share of a prompt's tokens (include/duet/compress.h). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duet/compress.h"
#include "duet/lm_local.h"
#include "duet/model.h"
#include "duet/threadpool.h"
#include "duet/tok.h"
#include "opts.h"

static const char usage_head[] =
    "usage: duet compress -m SLM.gguf --ratio R (-p TEXT | -f FILE) [--keep-head N] [--keep-tail N] [--segment N]\n"
    "                     [-t N] [--json]\n"
    "  Scores every prompt token's surprisal -log p(token | tokens before it) with the SLM in one\n"
    "  prefill and keeps the most surprising share R of the tokens (LLMLingua's token-level rule);\n"
    "  the first --keep-head and last --keep-tail tokens are always kept, and the kept tokens keep\n"
    "  their order. Kept: max(ceil(R * n), head + tail) of n tokens (at most n). Prints the\n"
    "  compressed text; --json prints one object with the token counts, the ratio and the text.\n"
    "  --segment N: LLMLingua's iterative variant, each N-token segment scored after the compressed\n"
    "  text before it (about 1 + R prefills instead of one).\n"
    "  The prompt must fit the SLM's context.\n";

/* A whole file, NUL-terminated; *len gets its size. NULL if it cannot be read. */
static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 14, n = 0, r;
    char *buf = malloc(cap + 1);
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *p = realloc(buf, cap * 2 + 1);
            if (!p) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
            cap *= 2;
        }
    }
    if (buf && ferror(f)) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = 0, *len = n;
    return buf;
}

int cmd_compress(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *file = NULL;
    duet_compress_params p = duet_compress_default_params();
    int threads = duet_cli_default_threads(), json = 0, ratio_given = 0;
    const duet_opt opts[] = {
        DUET_OPT_STR("model", 'm', &model_path, "PATH", "the SLM that scores the prompt (required)"),
        {.name = "ratio", .short_name = 'r', .type = DUET_OPTT_DOUBLE, .dest = &p.keep_ratio, .min = 0, .max = 1,
         .flags = DUET_OPT_MIN_OPEN, .given = &ratio_given, .arg = "R",
         .help = "share of the prompt's tokens kept, in (0, 1] (required)"},
        DUET_OPT_STR("prompt", 'p', &prompt, "TEXT", "the prompt"),
        DUET_OPT_STR("file", 'f', &file, "FILE", "read the prompt from FILE"),
        DUET_OPT_INT("keep-head", 0, &p.keep_head, 0, 1 << 20, "N", "leading tokens always kept (default 1)"),
        DUET_OPT_INT("keep-tail", 0, &p.keep_tail, 0, 1 << 20, "N", "trailing tokens always kept (default 8)"),
        DUET_OPT_INT("segment", 0, &p.segment, 0, 1 << 20, "N", "score in segments of N tokens (default 0: one pass)"),
        DUET_OPT_THREADS(&threads),
        DUET_OPT_FLAG("json", 0, &json, "print one JSON object"),
        DUET_OPT_END,
    };
    int prc = duet_opts_parse("compress", opts, argc, argv, usage_head);
    if (prc) return prc == 1 ? 0 : prc;
    if (!model_path) return duet_opts_error("compress", "need -m SLM (duet compress --help)");
    if (!ratio_given) return duet_opts_error("compress", "need --ratio R in (0, 1]");
    if (!prompt == !file) return duet_opts_error("compress", "give the prompt with exactly one of -p TEXT or -f FILE");

    size_t len = 0;
    char *from_file = NULL;
    if (file && !(from_file = read_file(file, &len))) {
        fprintf(stderr, "duet compress: cannot read %s\n", file);
        return 1;
    }
    const char *text = file ? from_file : prompt;
    if (!file) len = strlen(prompt);

    duet_err err = {0};
    duet_model *m = NULL;
    duet_vocab *v = NULL;
    duet_lm *lm = NULL;
    duet_compress_result r = {0};
    char *out = NULL;
    duet_pool *pool = duet_pool_new(threads);
    duet_model_params mp = duet_model_default_params();
    mp.pool = pool;
    mp.n_threads = threads;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = pool ? 0 : duet_err_set(&err, DUET_ENOMEM, "cannot start %d threads", threads);
    if (!rc) rc = duet_model_load(&m, model_path, &mp, &err);
    if (!rc) rc = duet_vocab_load(&v, duet_model_gguf(m), &err);
    if (!rc) rc = duet_lm_local_new(&lm, m, 0, model_path, &err);
    if (!rc) rc = duet_compress_text(lm, v, text, len, &p, &out, &r, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (rc) {
        fprintf(stderr, "duet compress: %s\n", err.msg);
    } else if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", model_path);
        cJSON_AddNumberToObject(o, "original_tokens", r.n_in);
        cJSON_AddNumberToObject(o, "kept_tokens", r.n_kept);
        cJSON_AddNumberToObject(o, "keep_ratio", p.keep_ratio);
        cJSON_AddNumberToObject(o, "ratio", (double)r.n_kept / r.n_in);
        cJSON_AddNumberToObject(o, "keep_head", p.keep_head);
        cJSON_AddNumberToObject(o, "keep_tail", p.keep_tail);
        cJSON_AddNumberToObject(o, "segment", p.segment);
        cJSON_AddNumberToObject(o, "original_bytes", (double)len);
        cJSON_AddNumberToObject(o, "bytes", (double)strlen(out));
        cJSON_AddNumberToObject(o, "seconds", secs);
        cJSON_AddStringToObject(o, "text", out);
        char *s = cJSON_PrintUnformatted(o);
        if (s) printf("%s\n", s);
        else rc = 1, fprintf(stderr, "duet compress: out of memory\n");
        free(s);
        cJSON_Delete(o);
    } else {
        printf("%s\n", out);
        fprintf(stderr, "compress: %d -> %d tokens (%.3f of the prompt), %zu -> %zu bytes\n", r.n_in, r.n_kept,
                (double)r.n_kept / r.n_in, len, strlen(out));
    }
    free(out);
    duet_compress_result_free(&r);
    duet_lm_free(lm);
    duet_vocab_free(v);
    duet_model_free(m);
    duet_pool_free(pool);
    free(from_file);
    return rc ? 1 : 0;
}

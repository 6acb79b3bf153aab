/* duet bench: prefill and decode speed of a model, and decode as a share of
 * the memory-bandwidth roofline measured on the spot.
 *
 * Decode of one token must read every weight once (the token embedding table
 * only one row, unless it doubles as the output matrix), so its ceiling is
 * bandwidth / bytes of weights. Bandwidth is measured by reading a buffer of
 * the model's size with the same threads: small models run from cache, and
 * then the cache bandwidth is the ceiling that counts. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "duet/model.h"
#include "duet/threadpool.h"
#include "opts.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- bandwidth: each thread sums its slice of the buffer ------------------ */
typedef struct {
    const uint64_t *buf; /* (n) */
    size_t n;
    uint64_t sink[64];
} read_job;

typedef uint64_t v2u64 __attribute__((vector_size(16)));

static void read_slice(void *ctx, int ith, int nth) {
    read_job *j = ctx;
    size_t lo = j->n * (size_t)ith / (size_t)nth, hi = j->n * (size_t)(ith + 1) / (size_t)nth;
    lo &= ~(size_t)15; /* whole 128-byte lines per thread */
    if (ith == nth - 1) hi = j->n & ~(size_t)15; else hi &= ~(size_t)15;
    v2u64 a[8] = {{0}};
    const v2u64 *p = (const v2u64 *)(j->buf + lo); /* buffer is 64-byte aligned */
    size_t nv = (hi - lo) / 2;
    for (size_t i = 0; i + 8 <= nv; i += 8) {
        /* prefetch well ahead, as the decode kernels do: one core's
         * outstanding misses, not the DRAM, limit a plain streaming loop */
        __builtin_prefetch((const char *)(p + i) + 8192);
        __builtin_prefetch((const char *)(p + i) + 8192 + 64);
        for (int k = 0; k < 8; k++) a[k] += p[i + k];
    }
    v2u64 t = a[0] ^ a[1] ^ a[2] ^ a[3] ^ a[4] ^ a[5] ^ a[6] ^ a[7];
    j->sink[ith % 64] = t[0] ^ t[1];
}

static double measure_bandwidth(duet_pool *pool, size_t bytes, int reps) {
    size_t n = bytes / sizeof(uint64_t);
    if (n < 1024) n = 1024;
    uint64_t *buf = NULL;
    if (posix_memalign((void **)&buf, 64, n * sizeof *buf) != 0) return 0;
    for (size_t i = 0; i < n; i++) buf[i] = i * 0x9e3779b97f4a7c15ull; /* touch every page */
    read_job j = {buf, n, {0}};
    duet_pool_run(pool, read_slice, &j); /* warm-up */
    double t[16];
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        duet_pool_run(pool, read_slice, &j);
        t[r] = (double)(n * sizeof *buf) / (now_s() - t0);
    }
    free(buf);
    return median(t, reps);
}

static size_t weight_bytes_per_token(const duet_model *m) {
    const duet_gguf *g = duet_model_gguf(m);
    size_t total = 0;
    for (int64_t i = 0; i < duet_gguf_n_tensors(g); i++) {
        const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i);
        if (!strcmp(t->name, "token_embd.weight") && !duet_model_hparams(m)->tied_output) continue;
        total += t->nbytes;
    }
    return total;
}

static const char usage_head[] =
    "usage: duet bench -m MODEL [-t N] [-p PREFILL] [-n DECODE] [-r RUNS] [--kv-type f16|f32] [--json]\n"
    "  prefill PREFILL tokens in one eval and decode DECODE tokens one per eval (each from position 0),\n"
    "  RUNS times each, and report the medians; decode also as % of the bandwidth roofline (a buffer\n"
    "  of the model's size read by the same threads). PREFILL and DECODE must fit the model's context.\n";

int cmd_bench(int argc, char **argv) {
    const char *path = NULL;
    int threads = duet_cli_default_threads(), n_prefill = 512, n_decode = 128, runs = 5, json = 0, kv_f32 = 0;
    int prefill_given = 0, decode_given = 0;
    static const char *const kv_types[] = {"f16", "f32", NULL};
    const duet_opt opts[] = {
        DUET_OPT_STR("model", 'm', &path, "PATH", "GGUF model (required)"),
        DUET_OPT_THREADS(&threads),
        {.name = "prefill", .short_name = 'p', .type = DUET_OPTT_INT, .dest = &n_prefill, .min = 1, .max = INT_MAX,
         .given = &prefill_given, .arg = "N", .help = "prompt tokens in one eval (default 512, or the context if less)"},
        {.name = "decode", .short_name = 'n', .type = DUET_OPTT_INT, .dest = &n_decode, .min = 1, .max = INT_MAX,
         .given = &decode_given, .arg = "N", .help = "tokens decoded one per eval (default 128, or the context if less)"},
        DUET_OPT_INT("runs", 'r', &runs, 1, 16, "N", "runs of each, 1..16 (default 5)"),
        DUET_OPT_CHOICE("kv-type", 0, &kv_f32, kv_types, "KV cache element type (default f16)"),
        DUET_OPT_FLAG("json", 0, &json, "print one JSON object"),
        DUET_OPT_END,
    };
    int prc = duet_opts_parse("bench", opts, argc, argv, usage_head);
    if (prc) return prc == 1 ? 0 : prc;
    if (!path) return duet_opts_error("bench", "-m MODEL is required (duet bench --help)");
    /* progress overwrites itself on a terminal; in a log, one line per run */
    const int tty = isatty(fileno(stderr));
    duet_err err = {0};
    duet_model *m = NULL;
    duet_seq *s = NULL;
    duet_model_params mp = duet_model_default_params();
    mp.n_threads = threads;
    mp.kv_type = kv_f32 ? DUET_KV_F32 : DUET_KV_F16;
    int32_t *tok = NULL;
    float *logits = NULL;
    int status = 1;
    if (duet_model_load(&m, path, &mp, &err) < 0) goto fail;
    /* Both runs start at position 0, so each must fit the context on its own;
     * the defaults shrink to it, explicit values beyond it are a usage error. */
    const int ctx_train = duet_model_hparams(m)->n_ctx_train;
    if (!prefill_given && n_prefill > ctx_train) n_prefill = ctx_train;
    if (!decode_given && n_decode > ctx_train) n_decode = ctx_train;
    if (n_prefill > ctx_train || n_decode > ctx_train) {
        status = duet_opts_error("bench", "%s %d exceeds the context of %s (%d tokens)",
                                 n_prefill > ctx_train ? "-p" : "-n", n_prefill > ctx_train ? n_prefill : n_decode,
                                 path, ctx_train);
        goto done;
    }
    int n_ctx = n_prefill > n_decode ? n_prefill : n_decode;
    if (duet_seq_new(&s, m, n_ctx, &err) < 0) goto fail;
    int nv = duet_model_n_vocab(m);
    tok = malloc(sizeof *tok * (size_t)n_ctx);
    logits = malloc(sizeof *logits * (size_t)nv);
    if (!tok || !logits) { duet_err_set(&err, DUET_ENOMEM, "out of memory"); goto fail; }
    for (int i = 0; i < n_ctx; i++) tok[i] = (int32_t)((i * 7919u + 13) % (unsigned)nv);

    double pre[16], dec[16];
    for (int r = -1; r < runs; r++) { /* r = -1: warm-up (page-in, caches) */
        duet_rollback(s, 0);
        double t0 = now_s();
        if (duet_eval(s, tok, n_prefill, logits, 1, &err) < 0) goto fail;
        double tp = now_s() - t0;
        duet_rollback(s, 0);
        t0 = now_s();
        for (int i = 0; i < n_decode; i++)
            if (duet_eval(s, &tok[i], 1, logits, 1, &err) < 0) goto fail;
        double td = now_s() - t0;
        if (r >= 0) pre[r] = n_prefill / tp, dec[r] = n_decode / td;
        if (!json) fprintf(stderr, tty ? "\rduet bench: run %d/%d" : "duet bench: run %d/%d\n", r + 2, runs + 1);
    }
    if (!json && tty) fprintf(stderr, "\n");
    double pp = median(pre, runs), tg = median(dec, runs);
    size_t wbytes = weight_bytes_per_token(m);
    double bw = measure_bandwidth(duet_model_pool(m), wbytes, 5);
    double roof = bw / (double)wbytes;
    const duet_hparams *hp = duet_model_hparams(m);
    int nth = duet_pool_size(duet_model_pool(m));
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", path);
        cJSON_AddStringToObject(o, "arch", hp->arch_name);
        cJSON_AddNumberToObject(o, "threads", nth);
        cJSON_AddNumberToObject(o, "weight_bytes", (double)wbytes);
        cJSON_AddNumberToObject(o, "prefill_tokens", n_prefill);
        cJSON_AddNumberToObject(o, "decode_tokens", n_decode);
        cJSON_AddNumberToObject(o, "runs", runs);
        cJSON_AddNumberToObject(o, "prefill_tok_s", pp);
        cJSON_AddNumberToObject(o, "decode_tok_s", tg);
        cJSON_AddNumberToObject(o, "bandwidth_gb_s", bw / 1e9);
        cJSON_AddNumberToObject(o, "roofline_tok_s", roof);
        cJSON_AddNumberToObject(o, "decode_pct_roofline", 100 * tg / roof);
        char *js = cJSON_PrintUnformatted(o);
        printf("%s\n", js);
        free(js);
        cJSON_Delete(o);
    } else {
        printf("| model | threads | weights MB | prefill %d tok/s | decode %d tok/s | bandwidth GB/s | roofline tok/s | decode %% of roofline |\n",
               n_prefill, n_decode);
        printf("|---|---|---|---|---|---|---|---|\n");
        printf("| %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.0f%% |\n", path, nth, wbytes / 1e6, pp, tg, bw / 1e9,
               roof, 100 * tg / roof);
    }
    status = 0;
    goto done;
fail:
    fprintf(stderr, "duet bench: %s\n", err.msg);
done:
    free(tok);
    free(logits);
    duet_seq_free(s);
    duet_model_free(m);
    return status;
}

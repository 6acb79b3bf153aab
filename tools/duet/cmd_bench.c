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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "duet/model.h"
#include "duet/quant.h"
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

/* ---- bandwidth: each thread sums its slice of the buffer ------------------
 * Read the way the one-token GEMV reads its weights (src/core/matmul.c): each
 * thread streams one contiguous slice, prefetching 4096 bytes ahead, with the
 * widest loads the CPU has (the kernels' own: 64-byte on AVX-512, 32-byte on
 * AVX2). A probe with narrower loads than the kernels under-reads and makes
 * "% of roofline" exceed 100%. */
typedef struct {
    const uint64_t *buf; /* (n) */
    size_t n;
    int simd;            /* duet_simd_level(): 0 scalar, 1 AVX2, 2 AVX-512 */
    uint64_t sink[64];
} read_job;

#define PROBE_PF_DIST 4096

/* Sums [lo, hi) of buf (64-byte aligned, whole 256-byte steps) with VBYTES
 * vectors and 4 independent accumulators; returns a value the compiler must
 * keep. One body per vector width, each compiled for its instruction set. */
#define DEFINE_READ_SPAN(NAME, VBYTES, TARGET)                                                        \
    __attribute__((target(TARGET))) static uint64_t NAME(const uint64_t *buf, size_t lo, size_t hi) {  \
        typedef uint64_t vec __attribute__((vector_size(VBYTES)));                                     \
        vec a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};                                                    \
        const char *base = (const char *)(buf + lo);                                                   \
        const size_t bytes = (hi - lo) * sizeof *buf;                                                  \
        for (size_t o = 0; o + 4 * VBYTES <= bytes; o += 4 * VBYTES) {                                 \
            for (size_t q = 0; q < 4 * VBYTES; q += 64) __builtin_prefetch(base + o + PROBE_PF_DIST + q); \
            const vec *p = (const vec *)(base + o);                                                    \
            a0 += p[0], a1 += p[1], a2 += p[2], a3 += p[3];                                            \
        }                                                                                              \
        vec t = a0 ^ a1 ^ a2 ^ a3;                                                                     \
        uint64_t r = 0;                                                                                \
        for (size_t k = 0; k < VBYTES / 8; k++) r ^= t[k];                                             \
        return r;                                                                                      \
    }
DEFINE_READ_SPAN(read_span_avx512, 64, "avx512f")
DEFINE_READ_SPAN(read_span_avx2, 32, "avx2")
DEFINE_READ_SPAN(read_span_sse2, 16, "sse2")

static void read_slice(void *ctx, int ith, int nth) {
    read_job *j = ctx;
    size_t lo = j->n * (size_t)ith / (size_t)nth, hi = j->n * (size_t)(ith + 1) / (size_t)nth;
    lo &= ~(size_t)31; /* whole 256-byte steps per thread */
    hi = ith == nth - 1 ? j->n & ~(size_t)31 : hi & ~(size_t)31;
    uint64_t r = j->simd >= 2 ? read_span_avx512(j->buf, lo, hi)
                 : j->simd >= 1 ? read_span_avx2(j->buf, lo, hi)
                                             : read_span_sse2(j->buf, lo, hi);
    j->sink[ith % 64] = r;
}

static double measure_bandwidth(duet_pool *pool, size_t bytes, int reps) {
    size_t n = bytes / sizeof(uint64_t);
    if (n < 1024) n = 1024;
    uint64_t *buf = NULL;
    if (posix_memalign((void **)&buf, 64, n * sizeof *buf) != 0) return 0;
    for (size_t i = 0; i < n; i++) buf[i] = i * 0x9e3779b97f4a7c15ull; /* touch every page */
    read_job j = {buf, n, duet_simd_level(), {0}};
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

/* Peak resident memory so far (VmHWM, bytes); 0 where /proc is absent. Read
 * before the bandwidth probe, whose buffer is the model's size. */
static size_t peak_rss_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %zu kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024;
}

static size_t file_bytes(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
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
    "  of the model's size read by the same threads with the decode kernels' loads), and the peak\n"
    "  resident memory against the file size. PREFILL and DECODE must fit the model's context.\n";

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
    const size_t rss = peak_rss_bytes(), fbytes = file_bytes(path);
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
        cJSON_AddNumberToObject(o, "file_bytes", (double)fbytes);
        cJSON_AddNumberToObject(o, "peak_rss_bytes", (double)rss);
        cJSON_AddNumberToObject(o, "rss_over_file", fbytes ? (double)rss / (double)fbytes : 0);
        char *js = cJSON_PrintUnformatted(o);
        printf("%s\n", js);
        free(js);
        cJSON_Delete(o);
    } else {
        printf("| model | threads | weights MB | prefill %d tok/s | decode %d tok/s | bandwidth GB/s | roofline tok/s | decode %% of roofline | peak RSS MB (x file) |\n",
               n_prefill, n_decode);
        printf("|---|---|---|---|---|---|---|---|---|\n");
        printf("| %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.0f%% | %.1f (%.2fx) |\n", path, nth, wbytes / 1e6, pp, tg,
               bw / 1e9, roof, 100 * tg / roof, rss / 1e6, fbytes ? (double)rss / (double)fbytes : 0);
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

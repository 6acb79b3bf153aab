/* duet synth: write a random-weight llama or qwen2 model of any shape (see
 * include/duet/gguf_synth.h), e.g. for benchmarks at realistic sizes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "duet/gguf.h"
#include "duet/gguf_quantize.h"
#include "duet/gguf_synth.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: duet synth --arch llama|qwen2 --n-embd N --n-layer N --n-head N --n-head-kv N\n"
            "                  --n-ff N --n-vocab N [--ctx 2048] [--type F32] [--seed S] [--name NAME]\n"
            "                  [-t THREADS] -o OUT.gguf\n"
            "  --type   F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K Q4_K_S Q4_K_M Q5_K_S Q5_K_M\n"
            "           (llama.cpp's mixes; Q4_K and Q5_K are Q4_K_M and Q5_K_M)\n"
            "Weights are uniform with the ref-models' standard deviations; norms F32.\n");
}

static void progress(void *ud, int64_t i, int64_t n, const char *name) {
    if (*(int *)ud) fprintf(stderr, "duet synth: [%4lld/%4lld] %s\n", (long long)i + 1, (long long)n, name);
}

static int parse_i64(const char *s, int64_t *out) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end) return -1;
    *out = v;
    return 0;
}

int cmd_synth(int argc, char **argv) {
    duet_synth_params p = {.n_ctx = 2048, .ftype = 0, .seed = 1};
    const char *out = NULL, *type = "F32";
    int verbose = 0;
    struct { const char *flag; int64_t *dst; } dims[] = {
        {"--n-embd", &p.n_embd}, {"--n-layer", &p.n_layer}, {"--n-head", &p.n_head},
        {"--n-head-kv", &p.n_head_kv}, {"--n-ff", &p.n_ff}, {"--n-vocab", &p.n_vocab}, {"--ctx", &p.n_ctx},
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc, done = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        for (size_t k = 0; k < sizeof dims / sizeof dims[0] && !done; k++)
            if (!strcmp(a, dims[k].flag) && more) {
                if (parse_i64(argv[++i], dims[k].dst)) {
                    fprintf(stderr, "duet synth: %s needs an integer, not '%s'\n", a, argv[i]);
                    return 2;
                }
                done = 1;
            }
        if (done) continue;
        if (!strcmp(a, "--arch") && more) p.arch = argv[++i];
        else if (!strcmp(a, "--type") && more) type = argv[++i];
        else if (!strcmp(a, "--name") && more) p.name = argv[++i];
        else if (!strcmp(a, "--seed") && more) p.seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(a, "-t") && more) p.n_threads = atoi(argv[++i]);
        else if (!strcmp(a, "-o") && more) out = argv[++i];
        else if (!strcmp(a, "-v")) verbose = 1;
        else {
            fprintf(stderr, "duet synth: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!p.arch || !out || !p.n_embd || !p.n_layer || !p.n_head || !p.n_head_kv || !p.n_ff || !p.n_vocab) {
        fprintf(stderr, "duet synth: --arch, -o and all of --n-embd --n-layer --n-head --n-head-kv --n-ff --n-vocab are required\n");
        usage(stderr);
        return 2;
    }
    if (!strcasecmp(type, "Q4_K")) type = "Q4_K_M";
    if (!strcasecmp(type, "Q5_K")) type = "Q5_K_M";
    p.ftype = duet_gguf_ftype_from_name(type);
    if (p.ftype < 0 || duet_ftype_base_type(p.ftype) < 0) {
        fprintf(stderr, "duet synth: unknown type '%s'\n", type);
        return 2;
    }
    /* weights alone above 256 Mi elements: show progress */
    double n_params = (double)p.n_layer * (4.0 * p.n_embd * p.n_embd + 3.0 * p.n_embd * p.n_ff) +
                      2.0 * p.n_embd * p.n_vocab;
    if (n_params > 268435456.0) verbose = 1;
    p.progress = progress;
    p.progress_ud = &verbose;
    duet_err e = {0};
    if (duet_gguf_synth(out, &p, &e)) {
        fprintf(stderr, "duet synth: %s\n", e.msg);
        return 1;
    }
    return 0;
}

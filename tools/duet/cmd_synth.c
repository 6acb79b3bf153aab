/* duet synth: write a random-weight llama or qwen2 model of any shape (see
 * include/duet/gguf_synth.h), e.g. for benchmarks at realistic sizes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "duet/gguf.h"
#include "duet/gguf_quantize.h"
#include "duet/gguf_synth.h"
#include "opts.h"

static const char usage_head[] =
    "usage: duet synth --arch llama|qwen2 --n-embd N --n-layer N --n-head N --n-head-kv N\n"
    "                  --n-ff N --n-vocab N [--ctx 2048] [--type F32] [--seed S] [--name NAME]\n"
    "                  [-t THREADS] -o OUT.gguf\n"
    "  Weights are uniform with the ref-models' standard deviations; norms F32. --type: llama.cpp's\n"
    "  mixes; Q4_K and Q5_K are Q4_K_M and Q5_K_M.\n";

static const char *const type_names[] = {"F32",  "F16",  "BF16", "Q8_0",   "Q4_0",   "Q4_1",   "Q5_0",   "Q5_1",
                                         "Q4_K", "Q5_K", "Q6_K", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", NULL};

static void progress(void *ud, int64_t i, int64_t n, const char *name) {
    if (*(int *)ud) fprintf(stderr, "duet synth: [%4lld/%4lld] %s\n", (long long)i + 1, (long long)n, name);
}

int cmd_synth(int argc, char **argv) {
    duet_synth_params p = {.n_ctx = 2048, .ftype = 0, .seed = 1};
    const char *out = NULL;
    int verbose = 0, type = 0;
    p.n_threads = duet_cli_default_threads();
    /* the library checks the shape as a whole (head_dim even, n_head a multiple of n_head_kv) */
    const double dim_max = 2147483647.0;
    const duet_opt opts[] = {
        DUET_OPT_STR("arch", 0, &p.arch, "llama|qwen2", "architecture (required)"),
        DUET_OPT_I64("n-embd", 0, &p.n_embd, 1, dim_max, "N", "embedding width (required)"),
        DUET_OPT_I64("n-layer", 0, &p.n_layer, 1, 100000, "N", "layers (required)"),
        DUET_OPT_I64("n-head", 0, &p.n_head, 1, dim_max, "N", "attention heads (required)"),
        DUET_OPT_I64("n-head-kv", 0, &p.n_head_kv, 1, dim_max, "N", "key/value heads (required)"),
        DUET_OPT_I64("n-ff", 0, &p.n_ff, 1, dim_max, "N", "feed-forward width (required)"),
        DUET_OPT_I64("n-vocab", 0, &p.n_vocab, 1, dim_max, "N", "vocabulary size (required)"),
        DUET_OPT_I64("ctx", 'c', &p.n_ctx, 1, dim_max, "N", "context length (default 2048)"),
        DUET_OPT_CHOICE("type", 0, &type, type_names, "weight type (default F32)"),
        DUET_OPT_U64("seed", 's', &p.seed, "S", "RNG seed (default 1)"),
        DUET_OPT_STR("name", 0, &p.name, "NAME", "general.name (default synth-ARCH)"),
        DUET_OPT_THREADS(&p.n_threads),
        DUET_OPT_STR("output", 'o', &out, "OUT.gguf", "where to write the model (required)"),
        DUET_OPT_FLAG("verbose", 'v', &verbose, "one progress line per tensor (automatic above 256 Mi weights)"),
        DUET_OPT_END,
    };
    int prc = duet_opts_parse("synth", opts, argc, argv, usage_head);
    if (prc) return prc == 1 ? 0 : prc;
    if (!p.arch || !out || !p.n_embd || !p.n_layer || !p.n_head || !p.n_head_kv || !p.n_ff || !p.n_vocab)
        return duet_opts_error("synth", "--arch, -o and all of --n-embd --n-layer --n-head --n-head-kv --n-ff "
                                        "--n-vocab are required (duet synth --help)");
    const char *tn = type_names[type];
    if (!strcasecmp(tn, "Q4_K")) tn = "Q4_K_M";
    if (!strcasecmp(tn, "Q5_K")) tn = "Q5_K_M";
    p.ftype = duet_gguf_ftype_from_name(tn);
    if (p.ftype < 0 || duet_ftype_base_type(p.ftype) < 0) return duet_opts_error("synth", "type %s is not supported", tn);
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

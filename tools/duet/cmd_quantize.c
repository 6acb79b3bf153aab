/* duet quantize: convert a GGUF model's weights to another type with
 * llama.cpp's default per-tensor mix (see include/duet/gguf_quantize.h). */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "duet/gguf.h"
#include "duet/gguf_quantize.h"
#include "duet/quant.h"
#include "opts.h"

static const char usage_head[] =
    "usage: duet quantize -i IN.gguf -o OUT.gguf --type TYPE [--pure] [-t N] [--json] [-v]\n"
    "  Q4_K and Q5_K are Q4_K_M and Q5_K_M, as in llama-quantize. 1-D tensors (norms, biases) keep\n"
    "  their type; a matrix whose rows the block size does not divide falls back to a type that fits.\n";

/* --type's names: llama-quantize's, plus its aliases Q4_K / Q5_K */
static const char *const type_names[] = {"F32",    "F16",    "BF16",   "Q8_0",   "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                                         "Q6_K",   "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q4_K", "Q5_K", NULL};

typedef struct {
    int verbose;
} progress_state;

static void progress(void *ud, int64_t i, int64_t n, const char *name, uint32_t from, uint32_t to) {
    progress_state *ps = ud;
    if (!ps->verbose) return;
    fprintf(stderr, "duet quantize: [%4lld/%4lld] %-36.100s %-5s -> %s\n", (long long)i + 1, (long long)n, name,
            duet_type_name(from), duet_type_name(to));
}

/* llama-quantize's names, plus its aliases Q4_K / Q5_K. */
static int parse_ftype(const char *s) {
    if (!strcasecmp(s, "Q4_K")) return duet_gguf_ftype_from_name("Q4_K_M");
    if (!strcasecmp(s, "Q5_K")) return duet_gguf_ftype_from_name("Q5_K_M");
    int ft = duet_gguf_ftype_from_name(s);
    return ft >= 0 && duet_ftype_base_type(ft) >= 0 ? ft : -1;
}

int cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    int json = 0, pure = 0, threads = duet_cli_default_threads(), type = -1;
    progress_state ps = {0};
    const duet_opt opts[] = {
        DUET_OPT_STR("input", 'i', &in, "IN.gguf", "the model to convert"),
        DUET_OPT_STR("output", 'o', &out, "OUT.gguf", "where to write it"),
        DUET_OPT_CHOICE("type", 0, &type, type_names, "the weight type (the file type of llama-quantize)"),
        DUET_OPT_FLAG("pure", 0, &pure, "no mix: every quantized weight gets TYPE (llama-quantize --pure)"),
        DUET_OPT_THREADS(&threads),
        DUET_OPT_FLAG("json", 0, &json, "print one JSON object with the figures"),
        DUET_OPT_FLAG("verbose", 'v', &ps.verbose, "one progress line per tensor on stderr (automatic above 256 MiB)"),
        DUET_OPT_END,
    };
    int prc = duet_opts_parse("quantize", opts, argc, argv, usage_head);
    if (prc) return prc == 1 ? 0 : prc;
    if (!in || !out || type < 0) return duet_opts_error("quantize", "-i, -o and --type are required (duet quantize --help)");
    int ftype = parse_ftype(type_names[type]);
    if (ftype < 0) return duet_opts_error("quantize", "type %s is not supported", type_names[type]);
    /* Big models take a while: show per-tensor progress. */
    FILE *f = fopen(in, "rb");
    if (f) {
        if (!fseek(f, 0, SEEK_END) && ftell(f) > (256L << 20)) ps.verbose = 1;
        fclose(f);
    }
    duet_quantize_params p = {.ftype = ftype, .pure = pure, .n_threads = threads, .progress = progress,
                              .progress_ud = &ps};
    duet_quantize_stats st;
    duet_err e = {0};
    if (duet_gguf_quantize(in, out, &p, &st, &e)) {
        fprintf(stderr, "duet quantize: %s\n", e.msg);
        return 1;
    }
    const char *ftn = duet_gguf_ftype_name(ftype);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "input", in);
        cJSON_AddStringToObject(o, "output", out);
        cJSON_AddStringToObject(o, "file_type_name", ftn);
        cJSON_AddNumberToObject(o, "file_type", ftype);
        cJSON_AddNumberToObject(o, "n_tensors", (double)st.n_tensors);
        cJSON_AddNumberToObject(o, "n_converted", (double)st.n_converted);
        cJSON_AddNumberToObject(o, "bytes_in", (double)st.bytes_in);
        cJSON_AddNumberToObject(o, "bytes_out", (double)st.bytes_out);
        cJSON *types = cJSON_AddObjectToObject(o, "types");
        for (int t = 0; t < DUET_TYPE_COUNT; t++)
            if (st.type_count[t]) cJSON_AddNumberToObject(types, duet_type_name((uint32_t)t), (double)st.type_count[t]);
        char *s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!s) {
            fprintf(stderr, "duet quantize: out of memory\n");
            return 1;
        }
        puts(s);
        cJSON_free(s);
    } else {
        printf("%s -> %s: %s, %lld tensors (%lld converted), %.2f MiB -> %.2f MiB;", in, out, ftn,
               (long long)st.n_tensors, (long long)st.n_converted, st.bytes_in / 1048576.0, st.bytes_out / 1048576.0);
        for (int t = 0; t < DUET_TYPE_COUNT; t++)
            if (st.type_count[t]) printf(" %s: %lld", duet_type_name((uint32_t)t), (long long)st.type_count[t]);
        printf("\n");
    }
    return 0;
}

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

static void usage(FILE *f) {
    fprintf(f,
            "usage: duet quantize -i IN.gguf -o OUT.gguf --type TYPE [--pure] [-t N] [--json] [-v]\n"
            "  --type TYPE   F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q6_K Q4_K_S Q4_K_M Q5_K_S Q5_K_M\n"
            "                (Q4_K and Q5_K are Q4_K_M and Q5_K_M, as in llama-quantize)\n"
            "  --pure        no mix: every quantized weight gets TYPE (llama-quantize --pure)\n"
            "  -t N          threads (default: all CPUs)\n"
            "  --json        print one JSON object with the figures\n"
            "  -v            one progress line per tensor on stderr (automatic above 256 MiB)\n"
            "1-D tensors (norms, biases) keep their type; a matrix whose rows the block\n"
            "size does not divide falls back to a type that fits.\n");
}

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
    const char *in = NULL, *out = NULL, *type = NULL;
    int json = 0, pure = 0, threads = 0;
    progress_state ps = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-i") && more) {
            in = argv[++i];
        } else if (!strcmp(a, "-o") && more) {
            out = argv[++i];
        } else if (!strcmp(a, "--type") && more) {
            type = argv[++i];
        } else if (!strcmp(a, "-t") && more) {
            threads = atoi(argv[++i]);
        } else if (!strcmp(a, "--pure")) {
            pure = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "-v")) {
            ps.verbose = 1;
        } else {
            fprintf(stderr, "duet quantize: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!in || !out || !type) {
        fprintf(stderr, "duet quantize: -i, -o and --type are required\n");
        usage(stderr);
        return 2;
    }
    int ftype = parse_ftype(type);
    if (ftype < 0) {
        fprintf(stderr, "duet quantize: unknown type '%s'\n", type);
        usage(stderr);
        return 2;
    }
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

/* duet info: what a GGUF file holds -- architecture, hyperparameters,
 * tokenizer, parameter count, tensor types -- as a table or one JSON object. */
#include <cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/gguf.h"
#include "duet/quant.h"
#include "opts.h"

/* One line on stderr: control bytes from file content become '?'. */
static int fail(const char *msg) {
    fputs("duet info: ", stderr);
    for (const char *p = msg; *p; p++) fputc((unsigned char)*p < 0x20 ? '?' : *p, stderr);
    fputc('\n', stderr);
    return 1;
}

/* A string value copied out of the file: NUL-terminated, control bytes
 * replaced so it prints on one line. */
static char *clean_str(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
    p[n] = 0;
    return p;
}

/* The shortest decimal that reads back as the same float32 (1e-05, not
 * 9.99999974737875e-06), so figures print as they were written. */
static double pretty_f32(double v) {
    float f = (float)v;
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        if ((float)strtod(buf, NULL) == f) return strtod(buf, NULL);
    }
    return v;
}

typedef struct {
    const char *label;  /* human table */
    const char *json;   /* JSON field */
    const char *suffix; /* key after "ARCH." */
    int is_float;
    int present;
    int64_t i;
    double f;
} hparam;

enum { HP_VOCAB, HP_CTX, HP_EMBD, HP_LAYER, HP_HEAD, HP_HEAD_KV, HP_HEAD_DIM, HP_FF, HP_ROPE_DIM,
       HP_ROPE_BASE, HP_ROPE_FACTOR, HP_RMS_EPS, HP_COUNT };

typedef struct {
    char *arch, *name, *tok_model, *tok_pre, *rope_scaling;
    int64_t file_type; int has_file_type;
    hparam hp[HP_COUNT];
    uint64_t n_tokens, n_merges;
    int has_tokens;
    int64_t n_params;
    uint64_t tensor_bytes;
    int64_t type_count[DUET_TYPE_COUNT];
    uint64_t type_bytes[DUET_TYPE_COUNT];
} info;

/* Optional key: absent is fine, present with the wrong type is an error. */
static int opt_int(const duet_gguf *g, const char *key, int64_t *v, int *present, duet_err *e) {
    int rc = duet_gguf_get_int(g, key, v, e);
    *present = rc == 0;
    return rc == DUET_ENOTFOUND ? 0 : rc;
}
static int opt_float(const duet_gguf *g, const char *key, double *v, int *present, duet_err *e) {
    int rc = duet_gguf_get_float(g, key, v, e);
    *present = rc == 0;
    return rc == DUET_ENOTFOUND ? 0 : rc;
}
static int opt_str(const duet_gguf *g, const char *key, char **out, duet_err *e) {
    const char *s;
    size_t n;
    int rc = duet_gguf_get_str(g, key, &s, &n, e);
    if (rc == DUET_ENOTFOUND) return 0;
    if (rc) return rc;
    if (!(*out = clean_str(s, n))) return duet_err_set(e, DUET_ENOMEM, "out of memory");
    return 0;
}
static int opt_arr_len(const duet_gguf *g, const char *key, uint64_t *n, int *present, duet_err *e) {
    duet_gguf_vtype et;
    int rc = duet_gguf_get_arr(g, key, &et, n, NULL, e);
    *present = rc == 0;
    return rc == DUET_ENOTFOUND ? 0 : rc;
}

static int gather(const duet_gguf *g, info *in, duet_err *e) {
    static const hparam proto[HP_COUNT] = {
        [HP_VOCAB] = {"vocab size", "vocab_size", "vocab_size", 0, 0, 0, 0},
        [HP_CTX] = {"context length", "context_length", "context_length", 0, 0, 0, 0},
        [HP_EMBD] = {"n_embd", "n_embd", "embedding_length", 0, 0, 0, 0},
        [HP_LAYER] = {"n_layer", "n_layer", "block_count", 0, 0, 0, 0},
        [HP_HEAD] = {"n_head", "n_head", "attention.head_count", 0, 0, 0, 0},
        [HP_HEAD_KV] = {"n_head_kv", "n_head_kv", "attention.head_count_kv", 0, 0, 0, 0},
        [HP_HEAD_DIM] = {"head_dim", "head_dim", "attention.key_length", 0, 0, 0, 0},
        [HP_FF] = {"n_ff", "n_ff", "feed_forward_length", 0, 0, 0, 0},
        [HP_ROPE_DIM] = {"rope dims", "rope_dims", "rope.dimension_count", 0, 0, 0, 0},
        [HP_ROPE_BASE] = {"rope freq base", "rope_freq_base", "rope.freq_base", 1, 0, 0, 0},
        [HP_ROPE_FACTOR] = {"rope scale factor", "rope_scaling_factor", "rope.scaling.factor", 1, 0, 0, 0},
        [HP_RMS_EPS] = {"rms eps", "rms_eps", "attention.layer_norm_rms_epsilon", 1, 0, 0, 0},
    };
    memcpy(in->hp, proto, sizeof proto);
    int rc, present;
    if ((rc = opt_str(g, "general.architecture", &in->arch, e))) return rc;
    if ((rc = opt_str(g, "general.name", &in->name, e))) return rc;
    if ((rc = opt_int(g, "general.file_type", &in->file_type, &in->has_file_type, e))) return rc;
    if ((rc = opt_str(g, "tokenizer.ggml.model", &in->tok_model, e))) return rc;
    if ((rc = opt_str(g, "tokenizer.ggml.pre", &in->tok_pre, e))) return rc;
    if ((rc = opt_arr_len(g, "tokenizer.ggml.tokens", &in->n_tokens, &in->has_tokens, e))) return rc;
    if ((rc = opt_arr_len(g, "tokenizer.ggml.merges", &in->n_merges, &present, e))) return rc;
    if (in->arch && strlen(in->arch) < 64) {
        char key[160];
        for (int k = 0; k < HP_COUNT; k++) {
            hparam *h = &in->hp[k];
            snprintf(key, sizeof key, "%s.%s", in->arch, h->suffix);
            rc = h->is_float ? opt_float(g, key, &h->f, &h->present, e)
                             : opt_int(g, key, &h->i, &h->present, e);
            if (rc) return rc;
            if (h->is_float) h->f = pretty_f32(h->f);
        }
        snprintf(key, sizeof key, "%s.rope.scaling.type", in->arch);
        if ((rc = opt_str(g, key, &in->rope_scaling, e))) return rc;
    }
    hparam *v = &in->hp[HP_VOCAB], *hd = &in->hp[HP_HEAD_DIM];
    if (!v->present && in->has_tokens) {
        v->present = 1;
        v->i = (int64_t)in->n_tokens;
    }
    if (!hd->present && in->hp[HP_EMBD].present && in->hp[HP_HEAD].present && in->hp[HP_HEAD].i > 0) {
        hd->present = 1;
        hd->i = in->hp[HP_EMBD].i / in->hp[HP_HEAD].i;
    }
    for (int64_t i = 0; i < duet_gguf_n_tensors(g); i++) {
        const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i);
        in->n_params += t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        in->tensor_bytes += t->nbytes;
        if (t->type < DUET_TYPE_COUNT) {
            in->type_count[t->type]++;
            in->type_bytes[t->type] += t->nbytes;
        }
    }
    return 0;
}

static void info_free(info *in) {
    free(in->arch);
    free(in->name);
    free(in->tok_model);
    free(in->tok_pre);
    free(in->rope_scaling);
}

static const char *human_count(double v, char *buf, size_t cap) {
    const char *unit[] = {"", "K", "M", "G", "T"};
    int u = 0;
    while (v >= 1000 && u < 4) { v /= 1000; u++; }
    snprintf(buf, cap, u ? "%.2f%s" : "%.0f%s", v, unit[u]);
    return buf;
}

static const char *human_bytes(double v, char *buf, size_t cap) {
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (v >= 1024 && u < 4) { v /= 1024; u++; }
    snprintf(buf, cap, u ? "%.2f %s" : "%.0f %s", v, unit[u]);
    return buf;
}

static void shape_str(const duet_gguf_tensor *t, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    for (int d = 0; d < t->n_dims && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, d ? ", %" PRId64 : "%" PRId64, t->ne[d]);
}

static void print_table(const char *path, const duet_gguf *g, const info *in, int tensors) {
    char b1[64], b2[64];
    printf("%-18s %s (%zu bytes, GGUF v%u, alignment %zu, %" PRId64 " keys, %" PRId64 " tensors)\n", "file",
           path, duet_gguf_file_size(g), duet_gguf_version(g), duet_gguf_alignment(g), duet_gguf_n_kv(g),
           duet_gguf_n_tensors(g));
    printf("%-18s %.200s\n", "architecture", in->arch ? in->arch : "-");
    printf("%-18s %.200s\n", "name", in->name ? in->name : "-");
    if (in->has_file_type) {
        const char *fn = duet_gguf_ftype_name((int)in->file_type);
        printf("%-18s %s (%" PRId64 ")\n", "file type", fn ? fn : "unknown", in->file_type);
    }
    for (int k = 0; k < HP_COUNT; k++) {
        const hparam *h = &in->hp[k];
        if (!h->present) continue;
        if (h->is_float) printf("%-18s %g\n", h->label, h->f);
        else printf("%-18s %" PRId64 "\n", h->label, h->i);
    }
    if (in->rope_scaling) printf("%-18s %.200s\n", "rope scaling", in->rope_scaling);
    if (in->tok_model || in->has_tokens) {
        printf("%-18s %.100s", "tokenizer", in->tok_model ? in->tok_model : "?");
        if (in->tok_pre) printf(" (pre %.100s)", in->tok_pre);
        printf(", %" PRIu64 " tokens", in->n_tokens);
        if (in->n_merges) printf(", %" PRIu64 " merges", in->n_merges);
        printf("\n");
    }
    printf("%-18s %s (%" PRId64 ")\n", "parameters", human_count((double)in->n_params, b1, sizeof b1),
           in->n_params);
    const char *lead = "tensor types";
    for (int t = 0; t < DUET_TYPE_COUNT; t++) {
        if (!in->type_count[t]) continue;
        printf("%-18s %-6s %4" PRId64 " tensors  %s\n", lead, duet_type_name((uint32_t)t), in->type_count[t],
               human_bytes((double)in->type_bytes[t], b1, sizeof b1));
        lead = "";
    }
    printf("%-18s %s (%" PRIu64 " bytes)\n", "tensor data", human_bytes((double)in->tensor_bytes, b2, sizeof b2),
           in->tensor_bytes);
    if (!tensors) return;
    printf("\n%-40s %-6s %-24s %s\n", "tensor", "type", "shape (ne0 first)", "bytes");
    for (int64_t i = 0; i < duet_gguf_n_tensors(g); i++) {
        const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i);
        char shape[128], *name = clean_str(t->name, strlen(t->name));
        shape_str(t, shape, sizeof shape);
        printf("%-40s %-6s %-24s %zu\n", name ? name : "?", duet_type_name(t->type), shape, t->nbytes);
        free(name);
    }
}

static void add_str_or_null(cJSON *o, const char *k, const char *v) {
    if (v) cJSON_AddStringToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

static int print_json(const char *path, const duet_gguf *g, const info *in, int tensors) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return -1;
    cJSON_AddStringToObject(o, "file", path);
    cJSON_AddNumberToObject(o, "file_size", (double)duet_gguf_file_size(g));
    cJSON_AddNumberToObject(o, "version", duet_gguf_version(g));
    cJSON_AddNumberToObject(o, "alignment", (double)duet_gguf_alignment(g));
    cJSON_AddNumberToObject(o, "n_kv", (double)duet_gguf_n_kv(g));
    cJSON_AddNumberToObject(o, "n_tensors", (double)duet_gguf_n_tensors(g));
    add_str_or_null(o, "architecture", in->arch);
    add_str_or_null(o, "name", in->name);
    if (in->has_file_type) {
        cJSON_AddNumberToObject(o, "file_type", (double)in->file_type);
        add_str_or_null(o, "file_type_name", duet_gguf_ftype_name((int)in->file_type));
    } else {
        cJSON_AddNullToObject(o, "file_type");
        cJSON_AddNullToObject(o, "file_type_name");
    }
    cJSON *hp = cJSON_AddObjectToObject(o, "hparams");
    for (int k = 0; k < HP_COUNT; k++) {
        const hparam *h = &in->hp[k];
        if (!h->present) cJSON_AddNullToObject(hp, h->json);
        else cJSON_AddNumberToObject(hp, h->json, h->is_float ? h->f : (double)h->i);
    }
    add_str_or_null(hp, "rope_scaling_type", in->rope_scaling);
    cJSON *tok = cJSON_AddObjectToObject(o, "tokenizer");
    add_str_or_null(tok, "model", in->tok_model);
    add_str_or_null(tok, "pre", in->tok_pre);
    cJSON_AddNumberToObject(tok, "n_tokens", (double)in->n_tokens);
    cJSON_AddNumberToObject(tok, "n_merges", (double)in->n_merges);
    cJSON_AddNumberToObject(o, "n_params", (double)in->n_params);
    cJSON_AddNumberToObject(o, "tensor_bytes", (double)in->tensor_bytes);
    cJSON *types = cJSON_AddObjectToObject(o, "types");
    for (int t = 0; t < DUET_TYPE_COUNT; t++) {
        if (!in->type_count[t]) continue;
        cJSON *ty = cJSON_AddObjectToObject(types, duet_type_name((uint32_t)t));
        cJSON_AddNumberToObject(ty, "count", (double)in->type_count[t]);
        cJSON_AddNumberToObject(ty, "bytes", (double)in->type_bytes[t]);
    }
    if (tensors) {
        cJSON *arr = cJSON_AddArrayToObject(o, "tensors");
        for (int64_t i = 0; i < duet_gguf_n_tensors(g); i++) {
            const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i);
            cJSON *x = cJSON_CreateObject();
            cJSON_AddItemToArray(arr, x);
            char *name = clean_str(t->name, strlen(t->name));
            add_str_or_null(x, "name", name);
            free(name);
            cJSON_AddStringToObject(x, "type", duet_type_name(t->type));
            cJSON *shape = cJSON_AddArrayToObject(x, "shape");
            for (int d = 0; d < t->n_dims; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->ne[d]));
            cJSON_AddNumberToObject(x, "offset", (double)t->offset);
            cJSON_AddNumberToObject(x, "bytes", (double)t->nbytes);
        }
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) return -1;
    puts(s);
    cJSON_free(s);
    return 0;
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int json = 0, tensors = 0;
    const duet_opt opts[] = {
        DUET_OPT_STR("model", 'm', &path, "PATH", "GGUF file to describe (required)"),
        DUET_OPT_FLAG("json", 0, &json, "print one JSON object instead of a table"),
        DUET_OPT_FLAG("tensors", 0, &tensors, "also list every tensor (name, type, shape, bytes)"),
        DUET_OPT_END,
    };
    int prc = duet_opts_parse("info", opts, argc, argv, "usage: duet info -m MODEL.gguf [--json] [--tensors]\n");
    if (prc) return prc == 1 ? 0 : prc;
    if (!path) return duet_opts_error("info", "-m MODEL is required (duet info --help)");
    duet_gguf *g = NULL;
    duet_err e = {0};
    if (duet_gguf_open(&g, path, &e)) return fail(e.msg);
    info in;
    memset(&in, 0, sizeof in);
    int rc = gather(g, &in, &e);
    if (rc) {
        duet_err_prefix(&e, "%s", path);
        info_free(&in);
        duet_gguf_close(g);
        return fail(e.msg);
    }
    if (json) rc = print_json(path, g, &in, tensors);
    else print_table(path, g, &in, tensors);
    info_free(&in);
    duet_gguf_close(g);
    if (rc) return fail("out of memory building JSON");
    return 0;
}

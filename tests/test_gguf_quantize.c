/* duet quantize against llama.cpp: quantizing the F32 ref models must give
 * the tensor types of llama.cpp's files of each type (README table) and the
 * same bytes (llama.cpp's reference quantizers are deterministic), plus the
 * mix rules and shape fallbacks of llama_tensor_get_type on deeper models. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "duet/gguf.h"
#include "gguf/gguf_qmix.h"
#include "gguf_ref_table.h"
#include "testutil.h"

/* Under ASan+UBSan (a -O0 build) the K-quant searches are ~10x slower: the
 * byte-for-byte comparison then covers llama-a's files only (every type; the
 * code paths are the same for qwen2-b, which the release build checks). */

static char tmpdir[64];

static void setup(void) {
    strcpy(tmpdir, "/tmp/duet-quantize-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void) {
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(quantize, .init = setup, .fini = teardown, .timeout = 300);

static duet_gguf *open_or_die(const char *path) {
    duet_gguf *g = NULL;
    duet_err e = {0};
    cr_assert_eq(duet_gguf_open(&g, path, &e), 0, "%s", e.msg);
    return g;
}

static int64_t get_int(const duet_gguf *g, const char *key) {
    int64_t v = -1;
    duet_err e = {0};
    cr_assert_eq(duet_gguf_get_int(g, key, &v, &e), 0, "%s", e.msg);
    return v;
}

static void run_ok(const char *args) {
    char *out = NULL;
    int st = tu_run_duet(args, &out);
    cr_assert_eq(st, 0, "duet %s: exit %d, stdout: %s", args, st, out ? out : "");
    free(out);
}

static void synth(const char *path, const char *shape) {
    char args[1024];
    snprintf(args, sizeof args, "synth --arch llama %s --n-vocab 300 --ctx 64 -o '%s' 2>/dev/null", shape, path);
    run_ok(args);
}

static void quantize(const char *in, const char *out, const char *type) {
    char args[1024];
    snprintf(args, sizeof args, "quantize -i '%s' -o '%s' --type %s >/dev/null", in, out, type);
    run_ok(args);
}

static uint32_t type_of(const duet_gguf *g, const char *name) {
    const duet_gguf_tensor *t = duet_gguf_find_tensor(g, name);
    cr_assert_not_null(t, "%s", name);
    return t->type;
}

Test(quantize, ref_models_match_llama_cpp) {
    char src[1024], ref[1024], out[256], args[2048];
    for (size_t f = 0; f < N_REF_FILES; f++) {
        const ref_file *r = &REF_FILES[f];
        if (r->ftype == 0 || (SANITIZED && strcmp(r->arch, "llama-a"))) continue;
        char rel[128];
        snprintf(rel, sizeof rel, "ref-models/%s-F32.gguf", r->arch);
        tu_data(rel, src, sizeof src);
        snprintf(rel, sizeof rel, "ref-models/%s-%s.gguf", r->arch, r->suffix);
        tu_data(rel, ref, sizeof ref);
        snprintf(out, sizeof out, "%s/%s-%s.gguf", tmpdir, r->arch, r->suffix);
        snprintf(args, sizeof args, "quantize -i '%s' -o '%s' --type %s -t 2 >/dev/null", src, out, r->suffix);
        run_ok(args);

        duet_gguf *g = open_or_die(out), *want = open_or_die(ref);
        cr_assert_eq(get_int(g, "general.file_type"), r->ftype, "%s", rel);
        cr_assert_eq(get_int(g, "general.quantization_version"), 2, "%s", rel);
        cr_assert_eq(duet_gguf_n_tensors(g), duet_gguf_n_tensors(want));
        for (int64_t i = 0; i < duet_gguf_n_tensors(g); i++) {
            const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i);
            /* the README's type table */
            cr_assert_eq(t->type, (uint32_t)ref_expected_type(r, t->name, t->n_dims), "%s %s: type %u", rel,
                         t->name, t->type);
            /* llama.cpp's bytes, tensor by tensor */
            const duet_gguf_tensor *u = duet_gguf_find_tensor(want, t->name);
            cr_assert_not_null(u, "%s %s", rel, t->name);
            cr_assert_eq(t->type, u->type);
            cr_assert_eq(t->nbytes, u->nbytes);
            cr_assert_eq(memcmp(t->data, u->data, t->nbytes), 0, "%s %s (%u): bytes differ from llama.cpp's", rel,
                         t->name, t->type);
        }
        duet_gguf_close(g);
        duet_gguf_close(want);
        /* and the whole file: same metadata order, tensor order and padding */
        size_t n1, n2;
        char *a = tu_slurp(out, &n1), *b = tu_slurp(ref, &n2);
        cr_assert(a && b);
        cr_assert_eq(n1, n2, "%s: %zu vs %zu bytes", rel, n1, n2);
        cr_assert_eq(memcmp(a, b, n1), 0, "%s: file differs from llama.cpp's", rel);
        free(a);
        free(b);
        unlink(out);
    }
}

/* The per-tensor choice for a llama model of n_layer layers (names only):
 * types[l] of attn_v and ffn_down, and what output/token_embd/attn_q get. */
typedef struct {
    uint32_t attn_v[32], ffn_down[32], attn_q, output, token_embd;
} plan;

static plan plan_for(int ftype, int n_layer) {
    static const char *const per_layer[] = {"attn_norm.weight", "attn_q.weight", "attn_k.weight",
                                            "attn_v.weight", "attn_output.weight", "ffn_norm.weight",
                                            "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"};
    char names[3 + 32 * 9][48];
    int n = 0;
    snprintf(names[n++], 48, "token_embd.weight");
    for (int l = 0; l < n_layer; l++)
        for (int k = 0; k < 9; k++) snprintf(names[n++], 48, "blk.%d.%s", l, per_layer[k]);
    snprintf(names[n++], 48, "output_norm.weight");
    snprintf(names[n++], 48, "output.weight");
    gguf_qmix m;
    gguf_qmix_model facts = {.arch = "llama", .n_layer = n_layer, .n_head = 32, .n_head_kv = 8};
    cr_assert_eq(gguf_qmix_init(&m, &facts, ftype, 0, NULL), 0);
    for (int i = 0; i < n; i++) gguf_qmix_see(&m, names[i]);
    /* llama.cpp's processing order */
    duet_gguf_tensor t[3 + 32 * 9];
    const duet_gguf_tensor *order[3 + 32 * 9];
    for (int i = 0; i < n; i++) {
        int is_norm = strstr(names[i], "norm") != NULL;
        t[i] = (duet_gguf_tensor){.name = names[i], .type = DUET_TYPE_F32, .n_dims = is_norm ? 1 : 2,
                                  .ne = {4096, is_norm ? 1 : 4096, 1, 1}};
        order[i] = &t[i];
    }
    qsort(order, (size_t)n, sizeof *order, gguf_qmix_order);
    plan p = {0};
    for (int i = 0; i < n; i++) {
        const duet_gguf_tensor *x = order[i];
        if (!gguf_qmix_quantizable(x)) {
            cr_assert(strstr(x->name, "norm"), "%s must be quantized", x->name);
            continue;
        }
        uint32_t type = gguf_qmix_type(&m, x);
        int l = -1;
        sscanf(x->name, "blk.%d.", &l);
        if (strstr(x->name, "attn_v.")) p.attn_v[l] = type;
        else if (strstr(x->name, "ffn_down.")) p.ffn_down[l] = type;
        else if (!strcmp(x->name, "blk.0.attn_q.weight")) p.attn_q = type;
        else if (!strcmp(x->name, "output.weight")) p.output = type;
        else if (!strcmp(x->name, "token_embd.weight")) p.token_embd = type;
    }
    return p;
}

/* llama.cpp's use_more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2,
 * worked out by hand: n = 16 -> layers 0 1 4 7 10 13 14 15; n = 32 -> 0-3,
 * 6 9 12 15 18 21 24 27, 28-31. */
Test(quantize, k_mix_rules) {
    static const int more16[16] = {1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 1, 1};
    static const int more32[32] = {1, 1, 1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1,
                                   0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 1, 1, 1, 1};
    static const struct { int ftype; uint32_t base, more; } mixes[] = {
        {15 /* Q4_K_M */, DUET_TYPE_Q4_K, DUET_TYPE_Q6_K},
        {17 /* Q5_K_M */, DUET_TYPE_Q5_K, DUET_TYPE_Q6_K},
    };
    for (size_t k = 0; k < 2; k++)
        for (int n = 16; n <= 32; n += 16) {
            plan p = plan_for(mixes[k].ftype, n);
            cr_assert_eq(p.output, DUET_TYPE_Q6_K);
            cr_assert_eq(p.token_embd, mixes[k].base);
            cr_assert_eq(p.attn_q, mixes[k].base);
            for (int l = 0; l < n; l++) {
                uint32_t want = (n == 16 ? more16[l] : more32[l]) ? mixes[k].more : mixes[k].base;
                cr_assert_eq(p.attn_v[l], want, "ftype %d n %d attn_v %d", mixes[k].ftype, n, l);
                cr_assert_eq(p.ffn_down[l], want, "ftype %d n %d ffn_down %d", mixes[k].ftype, n, l);
            }
        }
    /* Q4_K_S: attn_v of the first 4 layers and ffn_down of the first n/8 get Q5_K */
    plan p = plan_for(14, 16);
    for (int l = 0; l < 16; l++) {
        cr_assert_eq(p.attn_v[l], l < 4 ? DUET_TYPE_Q5_K : DUET_TYPE_Q4_K, "attn_v %d", l);
        cr_assert_eq(p.ffn_down[l], l < 2 ? DUET_TYPE_Q5_K : DUET_TYPE_Q4_K, "ffn_down %d", l);
    }
    /* Q5_K_S, Q6_K, Q8_0, Q4_0: one type everywhere, output Q6_K except Q8_0 */
    static const struct { int ftype; uint32_t base, output; } flat[] = {
        {16, DUET_TYPE_Q5_K, DUET_TYPE_Q6_K}, {18, DUET_TYPE_Q6_K, DUET_TYPE_Q6_K},
        {7, DUET_TYPE_Q8_0, DUET_TYPE_Q8_0},  {2, DUET_TYPE_Q4_0, DUET_TYPE_Q6_K},
    };
    for (size_t k = 0; k < sizeof flat / sizeof flat[0]; k++) {
        p = plan_for(flat[k].ftype, 16);
        cr_assert_eq(p.output, flat[k].output, "ftype %d", flat[k].ftype);
        cr_assert_eq(p.token_embd, flat[k].base);
        for (int l = 0; l < 16; l++) cr_assert(p.attn_v[l] == flat[k].base && p.ffn_down[l] == flat[k].base);
    }
}

/* llama-quantize's aliases (Q4_K = Q4_K_M, Q5_K = Q5_K_M) and --pure. */
Test(quantize, aliases_and_pure) {
    char f32[256], a[256], b[256], args[1024];
    snprintf(f32, sizeof f32, "%s/small.gguf", tmpdir);
    snprintf(a, sizeof a, "%s/a.gguf", tmpdir);
    snprintf(b, sizeof b, "%s/b.gguf", tmpdir);
    synth(f32, "--n-embd 256 --n-layer 1 --n-head 2 --n-head-kv 1 --n-ff 256");
    static const char *alias[][2] = {{"Q4_K", "Q4_K_M"}, {"Q5_K", "Q5_K_M"}};
    for (int k = 0; k < 2; k++) {
        quantize(f32, a, alias[k][0]);
        quantize(f32, b, alias[k][1]);
        size_t n1, n2;
        char *x = tu_slurp(a, &n1), *y = tu_slurp(b, &n2);
        cr_assert(x && y && n1 == n2 && !memcmp(x, y, n1), "--type %s should equal %s", alias[k][0], alias[k][1]);
        free(x);
        free(y);
    }
    snprintf(args, sizeof args, "quantize -i '%s' -o '%s' --type Q4_K_M --pure >/dev/null", f32, a);
    run_ok(args);
    duet_gguf *g = open_or_die(a);
    cr_assert_eq(get_int(g, "general.file_type"), 15);
    for (int64_t i = 0; i < duet_gguf_n_tensors(g); i++) {
        const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i);
        cr_assert_eq(t->type, t->n_dims == 1 ? DUET_TYPE_F32 : DUET_TYPE_Q4_K, "%s", t->name);
    }
    duet_gguf_close(g);
}

/* Rows the block size does not divide: llama.cpp falls back Q4_K -> Q5_0,
 * Q6_K -> Q8_0 (output: Q8_0 directly); duet uses F16 where llama.cpp would
 * give up (Q4_0 with 80-wide rows). */
Test(quantize, shape_fallbacks) {
    char f32[256], q[256];
    snprintf(f32, sizeof f32, "%s/odd.gguf", tmpdir);
    snprintf(q, sizeof q, "%s/odd-q.gguf", tmpdir);
    synth(f32, "--n-embd 96 --n-layer 1 --n-head 2 --n-head-kv 1 --n-ff 160");
    quantize(f32, q, "Q4_K_M");
    duet_gguf *g = open_or_die(q);
    cr_assert_eq(type_of(g, "output.weight"), DUET_TYPE_Q8_0);
    cr_assert_eq(type_of(g, "token_embd.weight"), DUET_TYPE_Q5_0);
    cr_assert_eq(type_of(g, "blk.0.attn_q.weight"), DUET_TYPE_Q5_0);
    cr_assert_eq(type_of(g, "blk.0.attn_v.weight"), DUET_TYPE_Q8_0); /* Q6_K (layer 0 of 1) -> Q8_0 */
    cr_assert_eq(type_of(g, "blk.0.ffn_down.weight"), DUET_TYPE_Q8_0);
    duet_gguf_close(g);

    synth(f32, "--n-embd 80 --n-layer 1 --n-head 2 --n-head-kv 1 --n-ff 96");
    quantize(f32, q, "Q4_0");
    g = open_or_die(q);
    cr_assert_eq(type_of(g, "output.weight"), DUET_TYPE_F16);
    cr_assert_eq(type_of(g, "token_embd.weight"), DUET_TYPE_F16);
    cr_assert_eq(type_of(g, "blk.0.ffn_gate.weight"), DUET_TYPE_F16);
    cr_assert_eq(type_of(g, "blk.0.ffn_down.weight"), DUET_TYPE_Q4_0); /* 96-wide rows fit */
    duet_gguf_close(g);
}

/* Converting an already quantized file dequantizes first; writing over the
 * input works because the result is renamed into place. */
Test(quantize, requantize_in_place) {
    char src[1024], path[256], args[2048];
    snprintf(path, sizeof path, "%s/m.gguf", tmpdir);
    size_t n;
    char *data = tu_slurp(tu_data("ref-models/qwen2-b-Q8_0.gguf", src, sizeof src), &n);
    cr_assert_not_null(data);
    FILE *f = fopen(path, "wb");
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
    free(data);
    snprintf(args, sizeof args, "quantize -i '%s' -o '%s' --type Q4_0 >/dev/null", path, path);
    run_ok(args);
    duet_gguf *g = open_or_die(path);
    cr_assert_eq(get_int(g, "general.file_type"), 2);
    cr_assert_eq(type_of(g, "blk.0.attn_q.weight"), DUET_TYPE_Q4_0);
    cr_assert_eq(type_of(g, "token_embd.weight"), DUET_TYPE_Q6_K);
    duet_gguf_close(g);
}

Test(quantize, cli_errors) {
    char args[1024], *out = NULL;
    cr_assert_eq(tu_run_duet("quantize --help", &out), 0);
    cr_assert(out && strstr(out, "usage"));
    free(out);
    cr_assert_eq(tu_run_duet("quantize -i a -o b --type Q3_XS 2>/dev/null", NULL), 2);
    cr_assert_eq(tu_run_duet("quantize -i a 2>/dev/null", NULL), 2);
    snprintf(args, sizeof args, "quantize -i %s/missing.gguf -o %s/x.gguf --type Q8_0 2>&1 >/dev/null", tmpdir, tmpdir);
    cr_assert_eq(tu_run_duet(args, &out), 1);
    cr_assert(out && !strncmp(out, "duet quantize: ", 15) && strstr(out, "missing.gguf"), "%s", out);
    free(out);
}

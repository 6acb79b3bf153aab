/* GGUF reader and writer against the ref-models and vocab fixtures (files
 * written by llama.cpp / gguf-py), hand-built files, and write->read round trips. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "duet/gguf.h"
#include "gguf_craft.h"
#include "gguf_ref_table.h"
#include "testutil.h"

static duet_gguf *open_fixture(const char *rel) {
    char path[1024];
    duet_gguf *g = NULL;
    duet_err e = {0};
    int rc = duet_gguf_open(&g, tu_data(rel, path, sizeof path), &e);
    cr_assert_eq(rc, 0, "%s: %s", rel, e.msg);
    return g;
}

static int64_t get_int(const duet_gguf *g, const char *key) {
    int64_t v = -12345;
    duet_err e = {0};
    cr_assert_eq(duet_gguf_get_int(g, key, &v, &e), 0, "%s", e.msg);
    return v;
}

static double get_float(const duet_gguf *g, const char *key) {
    double v = NAN;
    duet_err e = {0};
    cr_assert_eq(duet_gguf_get_float(g, key, &v, &e), 0, "%s", e.msg);
    return v;
}

static int str_is(const duet_gguf *g, const char *key, const char *want) {
    const char *s;
    size_t n;
    if (duet_gguf_get_str(g, key, &s, &n, NULL)) return 0;
    return n == strlen(want) && !memcmp(s, want, n);
}

static int arr_str_is(const duet_gguf *g, const char *key, uint64_t i, const char *want) {
    const char *s;
    size_t n;
    if (duet_gguf_arr_str(g, key, i, &s, &n, NULL)) return 0;
    return n == strlen(want) && !memcmp(s, want, n);
}

static uint64_t arr_len(const duet_gguf *g, const char *key) {
    uint64_t n = 0;
    duet_err e = {0};
    cr_assert_eq(duet_gguf_get_arr(g, key, NULL, &n, NULL, &e), 0, "%s", e.msg);
    return n;
}

/* Shape of a ref-model tensor from the README's formulas (n_embd 256,
 * n_vocab 512, n_ff 768, head_dim*n_head_kv 64); 0 if the name is unknown. */
static int expected_shape(const char *name, int64_t ne[2]) {
    const char *base = name;
    if (!strncmp(name, "blk.", 4)) {
        base = strchr(name + 4, '.');
        if (!base) return 0;
        base++;
    }
    static const struct { const char *n; int nd; int64_t a, b; } shapes[] = {
        {"token_embd.weight", 2, 256, 512}, {"output.weight", 2, 256, 512},
        {"output_norm.weight", 1, 256, 1}, {"attn_norm.weight", 1, 256, 1},
        {"attn_q.weight", 2, 256, 256}, {"attn_k.weight", 2, 256, 64},
        {"attn_v.weight", 2, 256, 64}, {"attn_q.bias", 1, 256, 1},
        {"attn_k.bias", 1, 64, 1}, {"attn_v.bias", 1, 64, 1},
        {"attn_output.weight", 2, 256, 256}, {"ffn_norm.weight", 1, 256, 1},
        {"ffn_gate.weight", 2, 256, 768}, {"ffn_up.weight", 2, 256, 768},
        {"ffn_down.weight", 2, 768, 256},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (!strcmp(base, shapes[i].n)) {
            ne[0] = shapes[i].a;
            ne[1] = shapes[i].b;
            return shapes[i].nd;
        }
    return 0;
}

/* ggml block geometry, from ggml's block struct definitions. */
static size_t bytes_of(int type, int64_t n_elem) {
    switch (type) {
    case DUET_TYPE_F32: return (size_t)n_elem * 4;
    case DUET_TYPE_F16: case DUET_TYPE_BF16: return (size_t)n_elem * 2;
    case DUET_TYPE_Q4_0: return (size_t)n_elem / 32 * 18;
    case DUET_TYPE_Q4_1: return (size_t)n_elem / 32 * 20;
    case DUET_TYPE_Q5_0: return (size_t)n_elem / 32 * 22;
    case DUET_TYPE_Q5_1: return (size_t)n_elem / 32 * 24;
    case DUET_TYPE_Q8_0: return (size_t)n_elem / 32 * 34;
    case DUET_TYPE_Q4_K: return (size_t)n_elem / 256 * 144;
    case DUET_TYPE_Q5_K: return (size_t)n_elem / 256 * 176;
    case DUET_TYPE_Q6_K: return (size_t)n_elem / 256 * 210;
    default: return 0;
    }
}

Test(gguf, ref_models_match_readme) {
    for (size_t f = 0; f < N_REF_FILES; f++) {
        const ref_file *r = &REF_FILES[f];
        char rel[256];
        snprintf(rel, sizeof rel, "ref-models/%s-%s.gguf", r->arch, r->suffix);
        duet_gguf *g = open_fixture(rel);
        int llama = !strcmp(r->arch, "llama-a");
        const char *A = llama ? "llama" : "qwen2";
        char key[128];
        cr_assert_eq(duet_gguf_version(g), 3);
        cr_assert_eq(duet_gguf_alignment(g), 32);
        if (r->bytes) cr_assert_eq(duet_gguf_file_size(g), r->bytes, "%s", rel);
        cr_assert(str_is(g, "general.architecture", A), "%s", rel);
        cr_assert_eq(get_int(g, "general.file_type"), r->ftype, "%s", rel);
        cr_assert_eq(get_int(g, "general.alignment"), 32);
        if (r->ftype != 0) cr_assert_eq(get_int(g, "general.quantization_version"), 2, "%s", rel);
#define HP(k, v)                                                                                    \
    snprintf(key, sizeof key, "%s." k, A);                                                          \
    cr_assert_eq(get_int(g, key), v, "%s %s", rel, key)
        HP("vocab_size", 512);
        HP("context_length", 512);
        HP("embedding_length", 256);
        HP("block_count", 2);
        HP("feed_forward_length", 768);
        HP("rope.dimension_count", 32);
        HP("attention.head_count", 8);
        HP("attention.head_count_kv", 2);
#undef HP
        snprintf(key, sizeof key, "%s.rope.freq_base", A);
        cr_assert_float_eq(get_float(g, key), llama ? 10000.0 : 1e6, 1e-3);
        snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", A);
        cr_assert_float_eq(get_float(g, key), llama ? 1e-5 : 1e-6, 1e-12);

        /* tokenizer */
        cr_assert(str_is(g, "tokenizer.ggml.model", llama ? "llama" : "gpt2"));
        cr_assert_eq(arr_len(g, "tokenizer.ggml.tokens"), 512);
        cr_assert_eq(arr_len(g, "tokenizer.ggml.token_type"), 512);
        duet_gguf_vtype et;
        uint64_t n;
        const void *data;
        cr_assert_eq(duet_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n, &data, NULL), 0);
        cr_assert_eq(et, DUET_GGUF_INT32);
        int32_t tt[512];
        memcpy(tt, data, sizeof tt);
        if (llama) {
            cr_assert(arr_str_is(g, "tokenizer.ggml.tokens", 0, "<unk>"));
            cr_assert(arr_str_is(g, "tokenizer.ggml.tokens", 1, "<s>"));
            cr_assert(arr_str_is(g, "tokenizer.ggml.tokens", 2, "</s>"));
            cr_assert(arr_str_is(g, "tokenizer.ggml.tokens", 3, "<0x00>"));
            cr_assert(arr_str_is(g, "tokenizer.ggml.tokens", 258, "<0xFF>"));
            cr_assert_eq(tt[0], 2);
            cr_assert_eq(tt[1], 3);
            cr_assert_eq(tt[2], 3);
            for (int i = 3; i < 259; i++) cr_assert_eq(tt[i], 6);
            cr_assert_eq(duet_gguf_get_arr(g, "tokenizer.ggml.scores", &et, &n, &data, NULL), 0);
            cr_assert_eq(et, DUET_GGUF_FLOAT32);
            cr_assert_eq(n, 512);
            float sc[512];
            memcpy(sc, data, sizeof sc);
            cr_assert_eq(sc[259], -1.0f);
            cr_assert_eq(sc[260], -2.0f);
            cr_assert_eq(get_int(g, "tokenizer.ggml.bos_token_id"), 1);
            cr_assert_eq(get_int(g, "tokenizer.ggml.eos_token_id"), 2);
            cr_assert_eq(get_int(g, "tokenizer.ggml.unknown_token_id"), 0);
            int b = -1;
            cr_assert_eq(duet_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, NULL), 0);
            cr_assert_eq(b, 1);
            cr_assert_eq(duet_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b, NULL), 0);
            cr_assert_eq(b, 0);
            cr_assert_not_null(duet_gguf_find_tensor(g, "output.weight"));
        } else {
            cr_assert(str_is(g, "tokenizer.ggml.pre", "qwen2"));
            cr_assert(arr_str_is(g, "tokenizer.ggml.tokens", 511, "<|endoftext|>"));
            cr_assert_eq(tt[511], 3);
            cr_assert_eq(arr_len(g, "tokenizer.ggml.merges"), 255);
            cr_assert_eq(get_int(g, "tokenizer.ggml.eos_token_id"), 511);
            cr_assert_eq(get_int(g, "tokenizer.ggml.bos_token_id"), 511);
            cr_assert_eq(get_int(g, "tokenizer.ggml.padding_token_id"), 511);
            cr_assert_null(duet_gguf_find_tensor(g, "output.weight"));
        }

        /* tensors: count, types per the README table, shapes, sizes, layout */
        int n_main = 0, n_f32 = 0;
        size_t end = duet_gguf_data_offset(g);
        cr_assert_eq(duet_gguf_n_tensors(g), llama ? 21 : 26, "%s", rel);
        for (int64_t i = 0; i < duet_gguf_n_tensors(g); i++) {
            const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i);
            cr_assert_eq(duet_gguf_find_tensor(g, t->name), t);
            int64_t ne[2] = {0, 0};
            int nd = expected_shape(t->name, ne);
            cr_assert_eq(t->n_dims, nd, "%s %s", rel, t->name);
            cr_assert_eq(t->ne[0], ne[0], "%s %s", rel, t->name);
            cr_assert_eq(t->ne[1], ne[1], "%s %s", rel, t->name);
            cr_assert_eq(t->ne[2], 1);
            cr_assert_eq(t->ne[3], 1);
            cr_assert_eq(t->type, (uint32_t)ref_expected_type(r, t->name, t->n_dims), "%s %s", rel, t->name);
            n_main += (int)t->type == r->main_type;
            n_f32 += t->type == DUET_TYPE_F32;
            cr_assert_eq(t->nbytes, bytes_of((int)t->type, ne[0] * ne[1]), "%s %s", rel, t->name);
            cr_assert_eq(((uintptr_t)t->data) % 32, 0);
            size_t tend = (size_t)((const char *)t->data - (const char *)duet_gguf_tensor_at(g, 0)->data) +
                          duet_gguf_data_offset(g) + (t->nbytes + 31) / 32 * 32;
            if (tend > end) end = tend;
        }
        cr_assert_eq(n_main, r->n_main, "%s", rel);
        cr_assert_eq(n_f32, r->n_f32, "%s", rel);
        cr_assert_eq(end, duet_gguf_file_size(g), "%s: data section must end the file", rel);
        duet_gguf_close(g);
    }
}

/* 1-D tensors stay F32 under quantization: the same bytes in every file,
 * and the norms lie in [0.9, 1.1] as generated. */
Test(gguf, norms_identical_across_types) {
    const char *types[] = {"F32", "F16", "Q8_0", "Q4_K_M", "Q6_K"};
    duet_gguf *ref = open_fixture("ref-models/qwen2-b-F32.gguf");
    for (size_t k = 1; k < sizeof types / sizeof types[0]; k++) {
        char rel[128];
        snprintf(rel, sizeof rel, "ref-models/qwen2-b-%s.gguf", types[k]);
        duet_gguf *g = open_fixture(rel);
        for (int64_t i = 0; i < duet_gguf_n_tensors(ref); i++) {
            const duet_gguf_tensor *a = duet_gguf_tensor_at(ref, i);
            if (a->n_dims != 1) continue;
            const duet_gguf_tensor *b = duet_gguf_find_tensor(g, a->name);
            cr_assert_not_null(b);
            cr_assert_eq(a->nbytes, b->nbytes);
            cr_assert_eq(memcmp(a->data, b->data, a->nbytes), 0, "%s %s", rel, a->name);
        }
        duet_gguf_close(g);
    }
    const duet_gguf_tensor *t = duet_gguf_find_tensor(ref, "blk.0.attn_norm.weight");
    for (int64_t j = 0; j < t->ne[0]; j++) {
        float v;
        memcpy(&v, (const char *)t->data + 4 * j, 4);
        cr_assert(v >= 0.9f && v <= 1.1f);
    }
    duet_gguf_close(ref);
}

Test(gguf, vocab_files_match_readme) {
    static const struct {
        const char *file, *arch, *model, *pre;
        uint64_t n_tokens, n_merges;
        int64_t bos, eos;
    } v[] = {
        {"vocab/ggml-vocab-llama-spm.gguf", "llama", "llama", "default", 32000, 0, 1, 2},
        {"vocab/ggml-vocab-gpt-2.gguf", "gpt2", "gpt2", "gpt-2", 50257, 50000, 50256, 50256},
        {"vocab/ggml-vocab-llama-bpe.gguf", "llama", "gpt2", "llama-bpe", 128256, 280147, 128000, 128001},
        {"vocab/ggml-vocab-qwen2.gguf", "qwen3", "gpt2", "qwen2", 151669, 151387, 151643, 151645},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        duet_gguf *g = open_fixture(v[i].file);
        cr_assert_eq(duet_gguf_n_tensors(g), 0);
        cr_assert(str_is(g, "general.architecture", v[i].arch), "%s", v[i].file);
        cr_assert(str_is(g, "tokenizer.ggml.model", v[i].model), "%s", v[i].file);
        cr_assert(str_is(g, "tokenizer.ggml.pre", v[i].pre), "%s", v[i].file);
        cr_assert_eq(arr_len(g, "tokenizer.ggml.tokens"), v[i].n_tokens, "%s", v[i].file);
        cr_assert_eq(arr_len(g, "tokenizer.ggml.token_type"), v[i].n_tokens, "%s", v[i].file);
        if (v[i].n_merges) cr_assert_eq(arr_len(g, "tokenizer.ggml.merges"), v[i].n_merges, "%s", v[i].file);
        cr_assert_eq(get_int(g, "tokenizer.ggml.bos_token_id"), v[i].bos, "%s", v[i].file);
        cr_assert_eq(get_int(g, "tokenizer.ggml.eos_token_id"), v[i].eos, "%s", v[i].file);
        /* The last string of the array ends exactly where the next kv begins
         * or the file ends: walk every token to exercise arr_str. */
        uint64_t total = 0;
        for (uint64_t k = 0; k < v[i].n_tokens; k++) {
            const char *s;
            size_t n;
            cr_assert_eq(duet_gguf_arr_str(g, "tokenizer.ggml.tokens", k, &s, &n, NULL), 0);
            total += n;
        }
        cr_assert_gt(total, v[i].n_tokens);
        duet_gguf_close(g);
    }
    duet_gguf *g = open_fixture("vocab/ggml-vocab-llama-spm.gguf");
    cr_assert(arr_str_is(g, "tokenizer.ggml.tokens", 0, "<unk>"));
    cr_assert(arr_str_is(g, "tokenizer.ggml.tokens", 3, "<0x00>"));
    cr_assert(arr_str_is(g, "tokenizer.ggml.tokens", 258, "<0xFF>"));
    duet_gguf_vtype et;
    uint64_t n;
    const void *data;
    cr_assert_eq(duet_gguf_get_arr(g, "tokenizer.ggml.scores", &et, &n, &data, NULL), 0);
    cr_assert_eq(et, DUET_GGUF_FLOAT32);
    float s0, s300;
    memcpy(&s0, data, 4);
    memcpy(&s300, (const char *)data + 300 * 4, 4);
    cr_assert_eq(s0, 0.0f);
    cr_assert(s300 == -(300.0f - 259.0f) || s300 == -1e9f);
    duet_gguf_close(g);
    g = open_fixture("vocab/ggml-vocab-gpt-2.gguf");
    cr_assert(arr_str_is(g, "tokenizer.ggml.tokens", 50256, "<|endoftext|>"));
    duet_gguf_close(g);
}

Test(gguf, getters_check_types) {
    duet_gguf *g = open_fixture("ref-models/llama-a-F32.gguf");
    duet_err e = {0};
    int64_t i;
    double d;
    const char *s;
    size_t n;
    cr_assert_eq(duet_gguf_get_int(g, "no.such.key", &i, &e), DUET_ENOTFOUND);
    cr_assert_eq(duet_gguf_get_int(g, "general.architecture", &i, &e), DUET_EFORMAT);
    cr_assert(strstr(e.msg, "general.architecture"), "%s", e.msg);
    cr_assert_eq(duet_gguf_get_str(g, "llama.block_count", &s, &n, &e), DUET_EFORMAT);
    cr_assert_eq(duet_gguf_get_float(g, "llama.block_count", &d, &e), 0);
    cr_assert_eq(d, 2.0);
    cr_assert_eq(duet_gguf_get_int(g, "llama.rope.freq_base", &i, &e), DUET_EFORMAT);
    cr_assert_eq(duet_gguf_arr_str(g, "tokenizer.ggml.tokens", 512, &s, &n, &e), DUET_ERANGE);
    cr_assert_eq(duet_gguf_arr_str(g, "tokenizer.ggml.scores", 0, &s, &n, &e), DUET_EFORMAT);
    cr_assert_eq(duet_gguf_find_key(g, "general.architecture") >= 0, 1);
    cr_assert_eq(duet_gguf_find_key(g, "general"), -1);
    cr_assert_null(duet_gguf_key(g, -1));
    cr_assert_null(duet_gguf_tensor_at(g, duet_gguf_n_tensors(g)));
    duet_gguf_close(g);
    duet_gguf_close(NULL);
}

/* Scalars of every type, a nested array and GGUF v2, built byte by byte. */
Test(gguf, handmade_all_value_types_v2) {
    craft b = {0};
    craft_header(&b, 2, 1, 15);
    craft_key(&b, "u8", DUET_GGUF_UINT8); craft_u8(&b, 200);
    craft_key(&b, "i8", DUET_GGUF_INT8); craft_u8(&b, 0x80);
    craft_key(&b, "u16", DUET_GGUF_UINT16); uint16_t u16 = 65535; craft_bytes(&b, &u16, 2);
    craft_key(&b, "i16", DUET_GGUF_INT16); int16_t i16 = -30000; craft_bytes(&b, &i16, 2);
    craft_key(&b, "u32", DUET_GGUF_UINT32); craft_u32(&b, 4000000000u);
    craft_key(&b, "i32", DUET_GGUF_INT32); craft_u32(&b, (uint32_t)-7);
    craft_key(&b, "f32", DUET_GGUF_FLOAT32); float f = 0.25f; craft_bytes(&b, &f, 4);
    craft_key(&b, "bool", DUET_GGUF_BOOL); craft_u8(&b, 1);
    craft_key(&b, "str", DUET_GGUF_STRING); craft_str(&b, "h\xc3\xa9llo");
    craft_key(&b, "u64", DUET_GGUF_UINT64); craft_u64(&b, 1ull << 40);
    craft_key(&b, "big", DUET_GGUF_UINT64); craft_u64(&b, ~0ull);
    craft_key(&b, "i64", DUET_GGUF_INT64); craft_u64(&b, (uint64_t)-5);
    craft_key(&b, "f64", DUET_GGUF_FLOAT64); double f64 = -1.5e300; craft_bytes(&b, &f64, 8);
    /* array of 2 arrays of u16 */
    craft_key(&b, "nested", DUET_GGUF_ARRAY); craft_u32(&b, DUET_GGUF_ARRAY); craft_u64(&b, 2);
    craft_u32(&b, DUET_GGUF_UINT16); craft_u64(&b, 1); craft_bytes(&b, &u16, 2);
    craft_u32(&b, DUET_GGUF_STRING); craft_u64(&b, 2); craft_str(&b, "a"); craft_str(&b, "");
    craft_key(&b, "empty", DUET_GGUF_ARRAY); craft_u32(&b, DUET_GGUF_STRING); craft_u64(&b, 0);
    uint64_t ne[3] = {4, 3, 2};
    craft_tensor_info(&b, "t", 3, ne, DUET_TYPE_F32, 0);
    craft_pad(&b, 32);
    for (int k = 0; k < 24; k++) { float x = (float)k; craft_bytes(&b, &x, 4); }

    duet_gguf *g = NULL;
    duet_err e = {0};
    cr_assert_eq(duet_gguf_open_memory(&g, b.p, b.n, &e), 0, "%s", e.msg);
    cr_assert_eq(duet_gguf_version(g), 2);
    cr_assert_eq(duet_gguf_n_kv(g), 15);
    cr_assert_eq(get_int(g, "u8"), 200);
    cr_assert_eq(get_int(g, "i8"), -128);
    cr_assert_eq(get_int(g, "u16"), 65535);
    cr_assert_eq(get_int(g, "i16"), -30000);
    cr_assert_eq(get_int(g, "u32"), 4000000000);
    cr_assert_eq(get_int(g, "i32"), -7);
    cr_assert_eq(get_float(g, "f32"), 0.25);
    cr_assert_eq(get_int(g, "bool"), 1);
    cr_assert(str_is(g, "str", "h\xc3\xa9llo"));
    cr_assert_eq(get_int(g, "u64"), 1ll << 40);
    int64_t v;
    cr_assert_eq(duet_gguf_get_int(g, "big", &v, &e), DUET_EFORMAT);
    cr_assert_eq(get_float(g, "big"), 18446744073709551615.0);
    cr_assert_eq(get_int(g, "i64"), -5);
    cr_assert_eq(get_float(g, "f64"), -1.5e300);
    cr_assert_eq(duet_gguf_kv_type(g, duet_gguf_find_key(g, "nested")), DUET_GGUF_ARRAY);
    cr_assert_eq(duet_gguf_get_arr(g, "nested", NULL, NULL, NULL, &e), DUET_EUNSUPPORTED);
    cr_assert_eq(arr_len(g, "empty"), 0);
    const duet_gguf_tensor *t = duet_gguf_find_tensor(g, "t");
    cr_assert_not_null(t);
    cr_assert_eq(t->n_dims, 3);
    cr_assert_eq(t->ne[2], 2);
    cr_assert_eq(t->nbytes, 96);
    float last;
    memcpy(&last, (const char *)t->data + 92, 4);
    cr_assert_eq(last, 23.0f);

    /* copy_kv carries every type, nested arrays included, byte for byte */
    char dir[] = "/tmp/duet-gguf-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/copy.gguf", dir);
    duet_gguf_writer *w = duet_gguf_writer_new();
    for (int64_t i = 0; i < duet_gguf_n_kv(g); i++) cr_assert_eq(duet_gguf_copy_kv(w, g, i), 0);
    cr_assert_eq(duet_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data), 0);
    cr_assert_eq(duet_gguf_writer_write(w, path, &e), 0, "%s", e.msg);
    duet_gguf_writer_free(w);
    size_t n;
    uint8_t *copy = tu_slurp(path, &n);
    cr_assert_not_null(copy);
    /* Same bytes apart from the version field (the writer writes v3). */
    cr_assert_eq(n, b.n);
    cr_assert_eq(copy[4], 3);
    cr_assert_eq(memcmp(copy + 8, b.p + 8, n - 8), 0);
    free(copy);
    unlink(path);
    rmdir(dir);
    duet_gguf_close(g);
    craft_free(&b);
}

Test(gguf, writer_round_trip_every_type) {
    char dir[] = "/tmp/duet-gguf-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/rt.gguf", dir);

    duet_gguf_writer *w = duet_gguf_writer_new();
    cr_assert_eq(duet_gguf_set_u32(w, "general.alignment", 64), 0);
    cr_assert_eq(duet_gguf_set_u32(w, "a.u32", 7), 0);
    cr_assert_eq(duet_gguf_set_u32(w, "a.u32", 4294967295u), 0); /* replaces */
    cr_assert_eq(duet_gguf_set_i32(w, "a.i32", -2147483647 - 1), 0);
    cr_assert_eq(duet_gguf_set_u64(w, "a.u64", 1ull << 62), 0);
    cr_assert_eq(duet_gguf_set_f32(w, "a.f32", -3.5f), 0);
    cr_assert_eq(duet_gguf_set_bool(w, "a.bool", 5), 0);
    cr_assert_eq(duet_gguf_set_str(w, "a.str", ""), 0);
    cr_assert_eq(duet_gguf_set_str(w, "a.str2", "x y\nz"), 0);
    const char *strs[] = {"", "one", "two words", "\xe2\x96\x81"};
    cr_assert_eq(duet_gguf_set_arr_str(w, "a.strs", strs, 4), 0);
    cr_assert_eq(duet_gguf_set_arr_str(w, "a.nostrs", NULL, 0), 0);
    uint8_t raw[64];
    for (int i = 0; i < 64; i++) raw[i] = (uint8_t)(i * 37 + 11);
    static const duet_gguf_vtype num[] = {DUET_GGUF_UINT8, DUET_GGUF_INT8, DUET_GGUF_UINT16, DUET_GGUF_INT16,
                                          DUET_GGUF_UINT32, DUET_GGUF_INT32, DUET_GGUF_FLOAT32, DUET_GGUF_BOOL,
                                          DUET_GGUF_UINT64, DUET_GGUF_INT64, DUET_GGUF_FLOAT64};
    for (size_t k = 0; k < sizeof num / sizeof num[0]; k++) {
        char key[64];
        snprintf(key, sizeof key, "arr.%s", duet_gguf_vtype_name(num[k]));
        cr_assert_eq(duet_gguf_set_arr(w, key, num[k], raw, 64 / 8), 0);
    }
    cr_assert_eq(duet_gguf_set_arr(w, "bad", DUET_GGUF_STRING, raw, 1), DUET_EINVAL);
    cr_assert_eq(duet_gguf_set_arr(w, "bad", DUET_GGUF_ARRAY, raw, 1), DUET_EINVAL);

    float f32[3 * 5];
    for (int i = 0; i < 15; i++) f32[i] = (float)i * 0.5f - 1.0f;
    uint8_t q8[2 * 34 * 3];
    for (size_t i = 0; i < sizeof q8; i++) q8[i] = (uint8_t)(i * 13 + 1);
    int64_t ne_f[2] = {5, 3}, ne_q[3] = {64, 1, 3}, bad_ne[1] = {33};
    cr_assert_eq(duet_gguf_add_tensor(w, "f", DUET_TYPE_F32, 2, ne_f, f32), 0);
    cr_assert_eq(duet_gguf_add_tensor(w, "q", DUET_TYPE_Q8_0, 3, ne_q, q8), 0);
    cr_assert_eq(duet_gguf_add_tensor(w, "f", DUET_TYPE_F32, 2, ne_f, f32), DUET_EINVAL);
    cr_assert_eq(duet_gguf_add_tensor(w, "odd", DUET_TYPE_Q8_0, 1, bad_ne, q8), DUET_EINVAL);
    cr_assert_neq(duet_gguf_add_tensor(w, "t99", 99, 2, ne_f, f32), 0);
    duet_err e = {0};
    cr_assert_eq(duet_gguf_writer_write(w, path, &e), 0, "%s", e.msg);
    duet_gguf_writer_free(w);
    duet_gguf_writer_free(NULL);

    duet_gguf *g = NULL;
    cr_assert_eq(duet_gguf_open(&g, path, &e), 0, "%s", e.msg);
    cr_assert_eq(duet_gguf_version(g), 3);
    cr_assert_eq(duet_gguf_alignment(g), 64);
    cr_assert_eq(duet_gguf_n_kv(g), 10 + 11);
    cr_assert_eq(duet_gguf_kv_type(g, duet_gguf_find_key(g, "a.u32")), DUET_GGUF_UINT32);
    cr_assert_eq(get_int(g, "a.u32"), 4294967295ll);
    cr_assert_eq(duet_gguf_kv_type(g, duet_gguf_find_key(g, "a.i32")), DUET_GGUF_INT32);
    cr_assert_eq(get_int(g, "a.i32"), -2147483647ll - 1);
    cr_assert_eq(duet_gguf_kv_type(g, duet_gguf_find_key(g, "a.u64")), DUET_GGUF_UINT64);
    cr_assert_eq(get_int(g, "a.u64"), 1ll << 62);
    cr_assert_eq(duet_gguf_kv_type(g, duet_gguf_find_key(g, "a.f32")), DUET_GGUF_FLOAT32);
    cr_assert_eq(get_float(g, "a.f32"), -3.5);
    int bv = 0;
    cr_assert_eq(duet_gguf_get_bool(g, "a.bool", &bv, NULL), 0);
    cr_assert_eq(bv, 1);
    cr_assert(str_is(g, "a.str", ""));
    cr_assert(str_is(g, "a.str2", "x y\nz"));
    cr_assert_eq(arr_len(g, "a.strs"), 4);
    for (int i = 0; i < 4; i++) cr_assert(arr_str_is(g, "a.strs", (uint64_t)i, strs[i]));
    cr_assert_eq(arr_len(g, "a.nostrs"), 0);
    for (size_t k = 0; k < sizeof num / sizeof num[0]; k++) {
        char key[64];
        snprintf(key, sizeof key, "arr.%s", duet_gguf_vtype_name(num[k]));
        duet_gguf_vtype et;
        uint64_t n;
        const void *data;
        cr_assert_eq(duet_gguf_get_arr(g, key, &et, &n, &data, NULL), 0, "%s", key);
        cr_assert_eq(et, num[k]);
        cr_assert_eq(n, 8);
        size_t es = num[k] == DUET_GGUF_UINT8 || num[k] == DUET_GGUF_INT8 || num[k] == DUET_GGUF_BOOL ? 1
                    : num[k] == DUET_GGUF_UINT16 || num[k] == DUET_GGUF_INT16                     ? 2
                    : num[k] == DUET_GGUF_UINT64 || num[k] == DUET_GGUF_INT64 ||
                              num[k] == DUET_GGUF_FLOAT64                                         ? 8
                                                                                                  : 4;
        cr_assert_eq(memcmp(data, raw, 8 * es), 0, "%s", key);
    }
    cr_assert_eq(duet_gguf_n_tensors(g), 2);
    const duet_gguf_tensor *tf = duet_gguf_find_tensor(g, "f"), *tq = duet_gguf_find_tensor(g, "q");
    cr_assert(tf && tq);
    cr_assert_eq(tf->n_dims, 2);
    cr_assert_eq(tf->ne[0], 5);
    cr_assert_eq(tf->ne[1], 3);
    cr_assert_eq(tf->nbytes, sizeof f32);
    cr_assert_eq(memcmp(tf->data, f32, sizeof f32), 0);
    cr_assert_eq(tq->type, DUET_TYPE_Q8_0);
    cr_assert_eq(tq->n_dims, 3);
    cr_assert_eq(tq->ne[2], 3);
    cr_assert_eq(tq->nbytes, sizeof q8);
    cr_assert_eq(memcmp(tq->data, q8, sizeof q8), 0);
    cr_assert_eq(tq->offset % 64, 0);
    cr_assert_eq(duet_gguf_data_offset(g) % 64, 0);
    cr_assert_eq(duet_gguf_file_size(g), duet_gguf_data_offset(g) + 64 + 256);
    duet_gguf_close(g);

    /* a non-uint32 or non-power-of-two alignment is refused by the writer */
    w = duet_gguf_writer_new();
    cr_assert_eq(duet_gguf_set_u32(w, "general.alignment", 48), 0);
    cr_assert_eq(duet_gguf_writer_write(w, path, &e), DUET_EINVAL);
    cr_assert(strstr(e.msg, "general.alignment"), "%s", e.msg);
    duet_gguf_writer_free(w);
    unlink(path);
    rmdir(dir);
}

/* Re-writing a llama.cpp file through the writer (copy every kv, add every
 * tensor) reproduces it byte for byte: same layout rules as llama.cpp's. */
Test(gguf, rewrite_ref_models_identical) {
    const char *files[] = {"ref-models/llama-a-F32.gguf", "ref-models/qwen2-b-Q4_K_M.gguf",
                           "ref-models/llama-a-Q5_K_M.gguf", "vocab/ggml-vocab-llama-spm.gguf"};
    char dir[] = "/tmp/duet-gguf-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char out[256];
    snprintf(out, sizeof out, "%s/rewrite.gguf", dir);
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        duet_gguf *g = open_fixture(files[f]);
        duet_gguf_writer *w = duet_gguf_writer_new();
        for (int64_t i = 0; i < duet_gguf_n_kv(g); i++) cr_assert_eq(duet_gguf_copy_kv(w, g, i), 0);
        for (int64_t i = 0; i < duet_gguf_n_tensors(g); i++) {
            const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i);
            cr_assert_eq(duet_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data), 0);
        }
        duet_err e = {0};
        cr_assert_eq(duet_gguf_writer_write(w, out, &e), 0, "%s", e.msg);
        duet_gguf_writer_free(w);

        duet_gguf *h = NULL;
        cr_assert_eq(duet_gguf_open(&h, out, &e), 0, "%s", e.msg);
        cr_assert_eq(duet_gguf_n_kv(h), duet_gguf_n_kv(g));
        for (int64_t i = 0; i < duet_gguf_n_kv(g); i++) {
            cr_assert_str_eq(duet_gguf_key(h, i), duet_gguf_key(g, i));
            cr_assert_eq(duet_gguf_kv_type(h, i), duet_gguf_kv_type(g, i));
        }
        cr_assert_eq(duet_gguf_n_tensors(h), duet_gguf_n_tensors(g));
        for (int64_t i = 0; i < duet_gguf_n_tensors(g); i++) {
            const duet_gguf_tensor *a = duet_gguf_tensor_at(g, i), *b = duet_gguf_tensor_at(h, i);
            cr_assert_str_eq(a->name, b->name);
            cr_assert_eq(a->type, b->type);
            cr_assert_eq(a->nbytes, b->nbytes);
            cr_assert_eq(memcmp(a->data, b->data, a->nbytes), 0, "%s", a->name);
        }
        duet_gguf_close(h);
        char src[1024];
        size_t n1, n2;
        char *x = tu_slurp(tu_data(files[f], src, sizeof src), &n1), *y = tu_slurp(out, &n2);
        cr_assert(x && y);
        cr_assert_eq(n1, n2, "%s: %zu vs %zu bytes", files[f], n1, n2);
        cr_assert_eq(memcmp(x, y, n1), 0, "%s: rewrite differs from the original", files[f]);
        free(x);
        free(y);
        duet_gguf_close(g);
    }
    unlink(out);
    rmdir(dir);
}

static int fill_ramp(void *ctx, const char *name, void *dst, size_t nbytes, duet_err *err) {
    int *calls = ctx;
    (*calls)++;
    float *f = dst;
    for (size_t i = 0; i < nbytes / 4; i++) f[i] = (float)i + (name[0] == 'b' ? 0.5f : 0.0f);
    return 0;
}

static int fill_fail(void *ctx, const char *name, void *dst, size_t nbytes, duet_err *err) {
    return duet_err_set(err, DUET_EIO, "cannot produce '%s'", name);
}

/* Generated tensors land in the file like referenced ones; a failing
 * generator aborts the write and leaves no file; remove_key drops a key. */
Test(gguf, writer_fill_and_remove) {
    char dir[] = "/tmp/duet-gguf-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/fill.gguf", dir);
    duet_gguf_writer *w = duet_gguf_writer_new();
    int calls = 0;
    int64_t ne_a[2] = {8, 3}, ne_b[1] = {5};
    cr_assert_eq(duet_gguf_set_str(w, "drop.me", "x"), 0);
    cr_assert_eq(duet_gguf_set_u32(w, "keep", 1), 0);
    cr_assert_eq(duet_gguf_remove_key(w, "drop.me"), 0);
    cr_assert_eq(duet_gguf_remove_key(w, "drop.me"), DUET_ENOTFOUND);
    cr_assert_eq(duet_gguf_add_tensor_fill(w, "a", DUET_TYPE_F32, 2, ne_a, fill_ramp, &calls), 0);
    cr_assert_eq(duet_gguf_add_tensor_fill(w, "b", DUET_TYPE_F32, 1, ne_b, fill_ramp, &calls), 0);
    duet_err e = {0};
    cr_assert_eq(duet_gguf_writer_write(w, path, &e), 0, "%s", e.msg);
    cr_assert_eq(calls, 2);
    duet_gguf *g = NULL;
    cr_assert_eq(duet_gguf_open(&g, path, &e), 0, "%s", e.msg);
    cr_assert_eq(duet_gguf_n_kv(g), 1);
    cr_assert_eq(duet_gguf_find_key(g, "drop.me"), -1);
    const duet_gguf_tensor *a = duet_gguf_find_tensor(g, "a"), *b = duet_gguf_find_tensor(g, "b");
    cr_assert(a && b);
    float v;
    memcpy(&v, (const char *)a->data + 4 * 23, 4);
    cr_assert_eq(v, 23.0f);
    memcpy(&v, (const char *)b->data + 4 * 4, 4);
    cr_assert_eq(v, 4.5f);
    duet_gguf_close(g);
    unlink(path);

    cr_assert_eq(duet_gguf_add_tensor_fill(w, "c", DUET_TYPE_F32, 1, ne_b, fill_fail, NULL), 0);
    cr_assert_eq(duet_gguf_writer_write(w, path, &e), DUET_EIO);
    cr_assert(strstr(e.msg, "cannot produce 'c'"), "%s", e.msg);
    cr_assert_neq(access(path, F_OK), 0, "no file after a failed write");
    duet_gguf_writer_free(w);
    /* nothing else (no temp file) left behind */
    cr_assert_eq(rmdir(dir), 0);
}

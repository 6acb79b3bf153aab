/* duet info on the fixtures: the figures in its JSON and table output equal
 * the facts the fixtures' READMEs state. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "duet/gguf.h"
#include "gguf_ref_table.h"
#include "testutil.h"

static cJSON *info_json(const char *rel, const char *extra) {
    char path[1024], args[2048], *out = NULL;
    snprintf(args, sizeof args, "info -m '%s' --json %s", tu_data(rel, path, sizeof path), extra);
    cr_assert_eq(tu_run_duet(args, &out), 0, "%s", rel);
    cr_assert_not_null(out);
    /* exactly one JSON object on stdout */
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithOpts(out, &end, 0);
    cr_assert_not_null(o, "%s: not JSON: %s", rel, out);
    while (end && (*end == '\n' || *end == ' ')) end++;
    cr_assert(end && !*end, "%s: trailing output after the JSON object", rel);
    free(out);
    return o;
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert(cJSON_IsNumber(v), "%s", k);
    return v->valuedouble;
}

static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert(cJSON_IsString(v), "%s", k);
    return v->valuestring;
}

/* README formulas: token_embd (+ output for llama) n_embd*n_vocab, per layer
 * q,o n_embd^2, k,v n_embd*64, gate/up/down n_embd*n_ff, 2 norms, (qwen2:
 * biases 256+64+64), output_norm. */
static double n_params(int qwen2) {
    double E = 256, V = 512, F = 768, KV = 64;
    double layer = 2 * E * E + 2 * E * KV + 3 * E * F + 2 * E + (qwen2 ? E + 2 * KV : 0);
    return (qwen2 ? 1 : 2) * E * V + 2 * layer + E;
}

Test(info, json_matches_readme) {
    for (size_t f = 0; f < N_REF_FILES; f++) {
        const ref_file *r = &REF_FILES[f];
        char rel[128];
        snprintf(rel, sizeof rel, "ref-models/%s-%s.gguf", r->arch, r->suffix);
        int qwen2 = r->arch[0] == 'q';
        cJSON *o = info_json(rel, "");
        cr_assert_str_eq(str(o, "architecture"), qwen2 ? "qwen2" : "llama");
        cr_assert_str_eq(str(o, "name"), r->arch);
        cr_assert_eq(num(o, "file_type"), r->ftype, "%s", rel);
        cr_assert_str_eq(str(o, "file_type_name"), r->suffix);
        if (r->bytes) cr_assert_eq(num(o, "file_size"), (double)r->bytes);
        cr_assert_eq(num(o, "n_tensors"), qwen2 ? 26 : 21);
        cr_assert_eq(num(o, "n_params"), n_params(qwen2), "%s", rel);
        const cJSON *hp = cJSON_GetObjectItemCaseSensitive(o, "hparams");
        cr_assert_eq(num(hp, "vocab_size"), 512);
        cr_assert_eq(num(hp, "context_length"), 512);
        cr_assert_eq(num(hp, "n_embd"), 256);
        cr_assert_eq(num(hp, "n_layer"), 2);
        cr_assert_eq(num(hp, "n_head"), 8);
        cr_assert_eq(num(hp, "n_head_kv"), 2);
        cr_assert_eq(num(hp, "head_dim"), 32);
        cr_assert_eq(num(hp, "n_ff"), 768);
        cr_assert_eq(num(hp, "rope_freq_base"), qwen2 ? 1e6 : 10000);
        cr_assert_eq(num(hp, "rms_eps"), qwen2 ? 1e-6 : 1e-5);
        cr_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(hp, "rope_scaling_type")));
        const cJSON *tok = cJSON_GetObjectItemCaseSensitive(o, "tokenizer");
        cr_assert_str_eq(str(tok, "model"), qwen2 ? "gpt2" : "llama");
        cr_assert_eq(num(tok, "n_tokens"), 512);
        cr_assert_eq(num(tok, "n_merges"), qwen2 ? 255 : 0);
        /* type histogram = README table */
        const cJSON *types = cJSON_GetObjectItemCaseSensitive(o, "types");
        int n_q6k = 0;
        while (n_q6k < 3 && r->q6k[n_q6k]) n_q6k++;
        int n_types = 0;
        for (const cJSON *t = types->child; t; t = t->next) n_types++;
        cr_assert_eq(n_types, (r->main_type == DUET_TYPE_F32 ? 1 : 2) + (n_q6k > 0), "%s", rel);
        cr_assert_eq(num(cJSON_GetObjectItemCaseSensitive(types, "F32"), "count"),
                     r->main_type == DUET_TYPE_F32 ? r->n_main : r->n_f32);
        if (n_q6k) cr_assert_eq(num(cJSON_GetObjectItemCaseSensitive(types, "Q6_K"), "count"), n_q6k);
        double bytes = 0;
        for (const cJSON *t = types->child; t; t = t->next) bytes += num(t, "bytes");
        cr_assert_eq(bytes, num(o, "tensor_bytes"));
        cr_assert_lt(num(o, "tensor_bytes"), num(o, "file_size"));
        cJSON_Delete(o);
    }
}

Test(info, tensor_list) {
    cJSON *o = info_json("ref-models/qwen2-b-Q4_K_M.gguf", "--tensors");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(o, "tensors");
    cr_assert_eq(cJSON_GetArraySize(ts), 26);
    int seen = 0;
    for (const cJSON *t = ts->child; t; t = t->next) {
        if (strcmp(str(t, "name"), "blk.1.ffn_down.weight")) continue;
        seen = 1;
        cr_assert_str_eq(str(t, "type"), "Q6_K");
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
        cr_assert_eq(cJSON_GetArraySize(shape), 2);
        cr_assert_eq(cJSON_GetArrayItem(shape, 0)->valuedouble, 768);
        cr_assert_eq(cJSON_GetArrayItem(shape, 1)->valuedouble, 256);
        cr_assert_eq(num(t, "bytes"), 768.0 * 256 / 256 * 210);
    }
    cr_assert(seen);
    cJSON_Delete(o);
}

Test(info, vocab_only_file) {
    cJSON *o = info_json("vocab/ggml-vocab-llama-bpe.gguf", "");
    cr_assert_eq(num(o, "n_tensors"), 0);
    cr_assert_eq(num(o, "n_params"), 0);
    const cJSON *hp = cJSON_GetObjectItemCaseSensitive(o, "hparams");
    cr_assert_eq(num(hp, "vocab_size"), 128256); /* from the token list */
    cr_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(hp, "n_embd")));
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(o, "tokenizer");
    cr_assert_str_eq(str(tok, "pre"), "llama-bpe");
    cr_assert_eq(num(tok, "n_merges"), 280147);
    cJSON_Delete(o);
}

Test(info, table_output) {
    char path[1024], args[2048], *out = NULL;
    snprintf(args, sizeof args, "info -m '%s' --tensors",
             tu_data("ref-models/llama-a-Q4_K_M.gguf", path, sizeof path));
    cr_assert_eq(tu_run_duet(args, &out), 0);
    cr_assert(out);
    cr_assert(strstr(out, "Q4_K_M (15)"), "%s", out);
    cr_assert(strstr(out, "1770752"), "%s", out);
    cr_assert(strstr(out, "blk.1.attn_v.weight"), "%s", out);
    cr_assert(strstr(out, "llama, 512 tokens"), "%s", out);
    free(out);
    cr_assert_eq(tu_run_duet("info --help >/dev/null", NULL), 0);
    cr_assert_eq(tu_run_duet("info 2>/dev/null", NULL), 2);
    cr_assert_eq(tu_run_duet("info -m x --bogus 2>/dev/null", NULL), 2);
}

/* Keys the fixtures lack: rope scaling, head_dim from attention.key_length,
 * and a wrong value type, which is an error naming the key. */
Test(info, rope_scaling_and_bad_types) {
    char dir[] = "/tmp/duet-info-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256], args[512], *out = NULL;
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    duet_gguf_writer *w = duet_gguf_writer_new();
    duet_gguf_set_str(w, "general.architecture", "llama");
    duet_gguf_set_u32(w, "llama.embedding_length", 4096);
    duet_gguf_set_u32(w, "llama.attention.head_count", 32);
    duet_gguf_set_u32(w, "llama.attention.key_length", 160);
    duet_gguf_set_str(w, "llama.rope.scaling.type", "linear");
    duet_gguf_set_f32(w, "llama.rope.scaling.factor", 4.0f);
    duet_err e = {0};
    cr_assert_eq(duet_gguf_writer_write(w, path, &e), 0, "%s", e.msg);
    snprintf(args, sizeof args, "info -m '%s' --json", path);
    cr_assert_eq(tu_run_duet(args, &out), 0);
    cJSON *o = cJSON_Parse(out);
    cr_assert_not_null(o, "%s", out);
    const cJSON *hp = cJSON_GetObjectItemCaseSensitive(o, "hparams");
    cr_assert_str_eq(str(hp, "rope_scaling_type"), "linear");
    cr_assert_eq(num(hp, "rope_scaling_factor"), 4.0);
    cr_assert_eq(num(hp, "head_dim"), 160);
    cJSON_Delete(o);
    free(out);

    duet_gguf_set_str(w, "llama.block_count", "two"); /* wrong type */
    cr_assert_eq(duet_gguf_writer_write(w, path, &e), 0, "%s", e.msg);
    duet_gguf_writer_free(w);
    snprintf(args, sizeof args, "info -m '%s' 2>&1 >/dev/null", path);
    cr_assert_eq(tu_run_duet(args, &out), 1);
    cr_assert(out && !strncmp(out, "duet info: ", 11) && strstr(out, "llama.block_count"), "%s", out);
    free(out);
    unlink(path);
    rmdir(dir);
}

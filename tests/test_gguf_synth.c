/* duet synth: metadata, tokenizer layout and tensor list like the ref-models
 * fixtures (compared key by key with llama-a / qwen2-b), weight statistics as
 * the README states them, determinism, and a vocabulary duet can tokenize with. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "duet/gguf.h"
#include "duet/tok.h"
#include "gguf_ref_table.h"
#include "testutil.h"

static char tmpdir[64];

static void setup(void) {
    strcpy(tmpdir, "/tmp/duet-synth-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void) {
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(synth, .init = setup, .fini = teardown, .timeout = 120);

#define SHAPE_AB "--n-embd 256 --n-layer 2 --n-head 8 --n-head-kv 2 --n-ff 768 --n-vocab 512 --ctx 512"
#define SHAPE_TINY "--n-embd 256 --n-layer 1 --n-head 2 --n-head-kv 1 --n-ff 256 --n-vocab 260"
/* Same layers and row lengths (so the same type mix), fewer elements. */
#define SHAPE_SMALL "--n-embd 256 --n-layer 2 --n-head 8 --n-head-kv 2 --n-ff 256 --n-vocab 300 --ctx 512"

static duet_gguf *synth(const char *file, const char *args) {
    char path[256], cmd[2048];
    snprintf(path, sizeof path, "%s/%s", tmpdir, file);
    snprintf(cmd, sizeof cmd, "synth %s -o '%s' 2>/dev/null", args, path);
    int st = tu_run_duet(cmd, NULL);
    cr_assert_eq(st, 0, "duet %s: exit %d", cmd, st);
    duet_gguf *g = NULL;
    duet_err e = {0};
    cr_assert_eq(duet_gguf_open(&g, path, &e), 0, "%s", e.msg);
    return g;
}

static duet_gguf *fixture(const char *rel) {
    char path[1024];
    duet_gguf *g = NULL;
    duet_err e = {0};
    cr_assert_eq(duet_gguf_open(&g, tu_data(rel, path, sizeof path), &e), 0, "%s", e.msg);
    return g;
}

/* Same keys in the same order with the same value types, same hparams, and
 * the same tensors (names, order, shapes). */
static void same_layout(const duet_gguf *g, const duet_gguf *ref) {
    cr_assert_eq(duet_gguf_n_kv(g), duet_gguf_n_kv(ref));
    for (int64_t i = 0; i < duet_gguf_n_kv(ref); i++) {
        const char *k = duet_gguf_key(ref, i);
        cr_assert_str_eq(duet_gguf_key(g, i), k);
        cr_assert_eq(duet_gguf_kv_type(g, i), duet_gguf_kv_type(ref, i), "%s", k);
        if (!strncmp(k, "tokenizer.", 10) || !strcmp(k, "general.name")) continue;
        int64_t a, b;
        double x, y;
        if (!duet_gguf_get_int(ref, k, &b, NULL)) {
            cr_assert_eq(duet_gguf_get_int(g, k, &a, NULL), 0);
            cr_assert_eq(a, b, "%s", k);
        } else if (!duet_gguf_get_float(ref, k, &y, NULL)) {
            cr_assert_eq(duet_gguf_get_float(g, k, &x, NULL), 0);
            cr_assert_eq(x, y, "%s", k);
        }
    }
    cr_assert_eq(duet_gguf_n_tensors(g), duet_gguf_n_tensors(ref));
    for (int64_t i = 0; i < duet_gguf_n_tensors(ref); i++) {
        const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i), *u = duet_gguf_tensor_at(ref, i);
        cr_assert_str_eq(t->name, u->name);
        cr_assert_eq(t->n_dims, u->n_dims, "%s", t->name);
        for (int d = 0; d < 4; d++) cr_assert_eq(t->ne[d], u->ne[d], "%s", t->name);
        cr_assert_eq(t->type, u->type, "%s", t->name);
    }
}

/* Mean, std, min, max of an F32 tensor. */
static void stats(const duet_gguf_tensor *t, double *mean, double *sd, float *lo, float *hi) {
    int64_t n = t->ne[0] * t->ne[1];
    double s = 0, s2 = 0;
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        float v;
        memcpy(&v, (const char *)t->data + 4 * i, 4);
        s += v;
        s2 += (double)v * v;
        if (v < *lo) *lo = v;
        if (v > *hi) *hi = v;
    }
    *mean = s / (double)n;
    *sd = sqrt(s2 / (double)n - *mean * *mean);
}

/* README: uniform distributions with these standard deviations. */
static void check_weights(const duet_gguf *g, int qwen2) {
    double emb = qwen2 ? 0.25 : 0.5, in = 1.28 / sqrt(256.0), s = qwen2 ? 2.0 : 1.0;
    for (int64_t i = 0; i < duet_gguf_n_tensors(g); i++) {
        const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i);
        cr_assert_eq(t->type, DUET_TYPE_F32);
        double mean, sd, want;
        float lo, hi;
        stats(t, &mean, &sd, &lo, &hi);
        if (strstr(t->name, "norm")) {
            cr_assert(lo >= 0.9f && hi <= 1.1f, "%s in [%g, %g]", t->name, lo, hi);
            cr_assert(hi - lo > 0.15f, "%s spread", t->name);
            continue;
        }
        if (strstr(t->name, ".bias")) want = 0.2;
        else if (!strcmp(t->name, "token_embd.weight") || !strcmp(t->name, "output.weight")) want = emb;
        else if (strstr(t->name, "attn_output")) want = in * s;
        else if (strstr(t->name, "ffn_down")) want = 1.28 / sqrt(768.0) * s;
        else want = in;
        double tol = t->ne[0] * t->ne[1] < 1000 ? 0.12 : 0.03;
        cr_assert(fabs(sd / want - 1) < tol, "%s: std %g, README %g", t->name, sd, want);
        cr_assert(fabs(mean) < 4 * want / sqrt((double)(t->ne[0] * t->ne[1])) + 1e-3, "%s: mean %g", t->name, mean);
        /* uniform: bounded by sqrt(3) std */
        cr_assert(hi <= want * sqrt(3.0) * 1.0001 && lo >= -want * sqrt(3.0) * 1.0001, "%s: [%g, %g]", t->name, lo, hi);
    }
}

static int tok_is(const duet_gguf *g, uint64_t i, const char *want) {
    const char *s;
    size_t n;
    return !duet_gguf_arr_str(g, "tokenizer.ggml.tokens", i, &s, &n, NULL) && n == strlen(want) && !memcmp(s, want, n);
}

Test(synth, llama_like_llama_a) {
    duet_gguf *g = synth("l.gguf", "--arch llama " SHAPE_AB " --seed 7");
    duet_gguf *ref = fixture("ref-models/llama-a-F32.gguf");
    same_layout(g, ref);
    check_weights(g, 0);
    /* token layout of the README */
    duet_gguf_vtype et;
    uint64_t n;
    const void *tt, *sc;
    cr_assert_eq(duet_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n, &tt, NULL), 0);
    cr_assert_eq(duet_gguf_get_arr(g, "tokenizer.ggml.scores", &et, &n, &sc, NULL), 0);
    cr_assert(tok_is(g, 0, "<unk>") && tok_is(g, 1, "<s>") && tok_is(g, 2, "</s>"));
    for (uint64_t i = 0; i < 512; i++) {
        int32_t type;
        float score;
        memcpy(&type, (const char *)tt + 4 * i, 4);
        memcpy(&score, (const char *)sc + 4 * i, 4);
        int want = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
        cr_assert_eq(type, want, "token %llu", (unsigned long long)i);
        cr_assert_eq(score, i < 259 ? 0.0f : -(float)(i - 258), "token %llu", (unsigned long long)i);
        if (i >= 3 && i < 259) {
            char b[8];
            snprintf(b, sizeof b, "<0x%02X>", (unsigned)(i - 3));
            cr_assert(tok_is(g, i, b));
        }
    }
    duet_gguf_close(ref);
    duet_gguf_close(g);
}

Test(synth, qwen2_like_qwen2_b) {
    duet_gguf *g = synth("q.gguf", "--arch qwen2 " SHAPE_AB);
    duet_gguf *ref = fixture("ref-models/qwen2-b-F32.gguf");
    same_layout(g, ref);
    check_weights(g, 1);
    /* the 256 GPT-2 byte symbols, exactly as in the fixture */
    for (uint64_t i = 0; i < 256; i++) {
        const char *a, *b;
        size_t na, nb;
        cr_assert_eq(duet_gguf_arr_str(g, "tokenizer.ggml.tokens", i, &a, &na, NULL), 0);
        cr_assert_eq(duet_gguf_arr_str(ref, "tokenizer.ggml.tokens", i, &b, &nb, NULL), 0);
        cr_assert(na == nb && !memcmp(a, b, na), "byte token %llu", (unsigned long long)i);
    }
    cr_assert(tok_is(g, 511, "<|endoftext|>"));
    int64_t v;
    cr_assert_eq(duet_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &v, NULL), 0);
    cr_assert_eq(v, 511);
    /* 255 merges, each "left right" of two tokens whose concatenation is a token */
    duet_gguf_vtype et;
    uint64_t n;
    cr_assert_eq(duet_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &n, NULL, NULL), 0);
    cr_assert_eq(n, 255);
    duet_vocab *voc = NULL;
    duet_err e = {0};
    cr_assert_eq(duet_vocab_load(&voc, g, &e), 0, "%s", e.msg);
    for (uint64_t i = 0; i < n; i++) {
        const char *m;
        size_t len;
        cr_assert_eq(duet_gguf_arr_str(g, "tokenizer.ggml.merges", i, &m, &len, NULL), 0);
        const char *sp = memchr(m, ' ', len);
        cr_assert_not_null(sp);
        size_t nl = (size_t)(sp - m), nr = len - nl - 1;
        cr_assert_geq(duet_vocab_find(voc, m, nl), 0);
        cr_assert_geq(duet_vocab_find(voc, sp + 1, nr), 0);
        char joined[256];
        memcpy(joined, m, nl);
        memcpy(joined + nl, sp + 1, nr);
        cr_assert_geq(duet_vocab_find(voc, joined, nl + nr), 0, "merge %llu", (unsigned long long)i);
    }
    duet_vocab_free(voc);
    duet_gguf_close(ref);
    duet_gguf_close(g);
}

Test(synth, quantized_types_follow_llama_cpp_mix) {
    static const char *types[] = {"Q4_K_M", "Q8_0", "Q4_0", "F16"};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        for (int a = 0; a < 2; a++) {
            const char *arch = a ? "qwen2" : "llama";
            char args[512];
            snprintf(args, sizeof args, "--arch %s " SHAPE_SMALL " --type %s", arch, types[k]);
            duet_gguf *g = synth("t.gguf", args);
            const ref_file *r = NULL;
            for (size_t f = 0; f < N_REF_FILES; f++)
                if (!strncmp(REF_FILES[f].arch, arch, 5) && !strcmp(REF_FILES[f].suffix, types[k])) r = &REF_FILES[f];
            cr_assert_not_null(r);
            int64_t ft;
            cr_assert_eq(duet_gguf_get_int(g, "general.file_type", &ft, NULL), 0);
            cr_assert_eq(ft, r->ftype);
            for (int64_t i = 0; i < duet_gguf_n_tensors(g); i++) {
                const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i);
                cr_assert_eq(t->type, (uint32_t)ref_expected_type(r, t->name, t->n_dims), "%s %s %s", arch,
                             types[k], t->name);
            }
            duet_gguf_close(g);
        }
    }
}

Test(synth, deterministic_across_threads_and_seeds) {
    char cmd[1024], p1[256], p2[256], p3[256];
    snprintf(p1, sizeof p1, "%s/a.gguf", tmpdir);
    snprintf(p2, sizeof p2, "%s/b.gguf", tmpdir);
    snprintf(p3, sizeof p3, "%s/c.gguf", tmpdir);
    snprintf(cmd, sizeof cmd, "synth --arch llama " SHAPE_TINY " --seed 5 --type Q4_K_M -t 1 -o '%s'", p1);
    cr_assert_eq(tu_run_duet(cmd, NULL), 0);
    snprintf(cmd, sizeof cmd, "synth --arch llama " SHAPE_TINY " --seed 5 --type Q4_K_M -t 3 -o '%s'", p2);
    cr_assert_eq(tu_run_duet(cmd, NULL), 0);
    snprintf(cmd, sizeof cmd, "synth --arch llama " SHAPE_TINY " --seed 6 --type Q4_K_M -t 1 -o '%s'", p3);
    cr_assert_eq(tu_run_duet(cmd, NULL), 0);
    size_t n1, n2, n3;
    char *a = tu_slurp(p1, &n1), *b = tu_slurp(p2, &n2), *c = tu_slurp(p3, &n3);
    cr_assert(a && b && c);
    cr_assert(n1 == n2 && !memcmp(a, b, n1), "thread count changed the file");
    cr_assert(n1 == n3 && memcmp(a, c, n1), "seed did not change the weights");
    free(a);
    free(b);
    free(c);
}

/* Ordinary text tokenizes into pieces and back, with both vocab kinds. */
Test(synth, vocab_tokenizes_text) {
    const char *text = "once upon a time the little dog played with a red ball";
    for (int a = 0; a < 2; a++) {
        duet_gguf *g = synth("v.gguf", a ? "--arch qwen2 --n-embd 64 --n-layer 1 --n-head 2 --n-head-kv 1 "
                                           "--n-ff 64 --n-vocab 4000"
                                         : "--arch llama --n-embd 64 --n-layer 1 --n-head 2 --n-head-kv 1 "
                                           "--n-ff 64 --n-vocab 4000");
        duet_vocab *v = NULL;
        duet_err e = {0};
        cr_assert_eq(duet_vocab_load(&v, g, &e), 0, "%s", e.msg);
        cr_assert_eq(duet_vocab_n(v), 4000);
        int32_t ids[128];
        int n = duet_tokenize(v, text, strlen(text), ids, 128, 0);
        cr_assert_gt(n, 0);
        cr_assert_leq(n, 14, "%d tokens: the corpus words should be whole pieces", n);
        char back[256];
        int64_t len = duet_detokenize(v, ids, n, back, sizeof back, 0);
        cr_assert_eq(len, (int64_t)strlen(text));
        cr_assert_eq(memcmp(back, text, (size_t)len), 0, "%.*s", (int)len, back);
        duet_vocab_free(v);
        duet_gguf_close(g);
    }
}

Test(synth, cli_errors) {
    char cmd[512], *out = NULL;
    cr_assert_eq(tu_run_duet("synth --help", &out), 0);
    cr_assert(out && strstr(out, "usage"));
    free(out);
    snprintf(cmd, sizeof cmd, "synth --arch llama --n-embd 100 --n-layer 1 --n-head 3 --n-head-kv 1 --n-ff 64 "
                              "--n-vocab 300 -o %s/x.gguf 2>&1", tmpdir);
    cr_assert_eq(tu_run_duet(cmd, &out), 1);
    cr_assert(out && !strncmp(out, "duet synth: ", 12) && strstr(out, "n_head"), "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "synth --arch gptj --n-embd 64 --n-layer 1 --n-head 2 --n-head-kv 1 --n-ff 64 "
                              "--n-vocab 300 -o %s/x.gguf 2>/dev/null", tmpdir);
    cr_assert_eq(tu_run_duet(cmd, NULL), 1);
    cr_assert_eq(tu_run_duet("synth --arch llama 2>/dev/null", NULL), 2);
}

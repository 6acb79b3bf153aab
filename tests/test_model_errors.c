/* What the engine refuses, and how: context overflow, bad token ids, bad
 * arguments, and model files with a missing tensor, a wrong shape, an
 * unsupported architecture or weight type, or missing metadata. Plus the
 * `duet logits` command end to end against llama.cpp's logits. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "duet/gguf.h"
#include "duet/model.h"
#include "duet/quant.h"
#include "model/model_internal.h"
#include "testutil.h"

static duet_model *load_ref(const char *name) {
    char rel[128], buf[512];
    snprintf(rel, sizeof rel, "ref-models/%s.gguf", name);
    duet_model_params p = duet_model_default_params();
    p.n_threads = 1;
    duet_model *m = NULL;
    duet_err err = {0};
    cr_assert_eq(duet_model_load(&m, tu_data(rel, buf, sizeof buf), &p, &err), 0, "%s", err.msg);
    return m;
}

Test(model_errors, context_overflow_is_erange_and_changes_nothing) {
    duet_model *m = load_ref("llama-a-Q8_0");
    duet_seq *s = NULL;
    duet_err err = {0};
    cr_assert_eq(duet_seq_new(&s, m, 16, &err), 0);
    cr_assert_eq(duet_seq_n_ctx(s), 16);
    int32_t tok[20];
    for (int i = 0; i < 20; i++) tok[i] = 10 + i;
    float *lg = malloc(20 * 512 * sizeof(float));
    cr_assert_eq(duet_eval(s, tok, 10, NULL, 0, &err), 0, "%s", err.msg);
    cr_expect_eq(duet_eval(s, tok, 7, lg, 1, &err), DUET_ERANGE);
    cr_expect(strstr(err.msg, "context") != NULL, "message: %s", err.msg);
    cr_expect_eq(duet_seq_pos(s), 10);
    cr_expect_eq(duet_eval(s, tok, 6, lg, 1, &err), 0, "%s", err.msg);
    cr_expect_eq(duet_seq_pos(s), 16);
    cr_expect_eq(duet_eval(s, tok, 1, lg, 1, &err), DUET_ERANGE);
    cr_expect_eq(duet_seq_pos(s), 16);
    /* a default context is the model's training context */
    duet_seq *d = NULL;
    cr_assert_eq(duet_seq_new(&d, m, 0, &err), 0);
    cr_expect_eq(duet_seq_n_ctx(d), duet_model_hparams(m)->n_ctx_train);
    free(lg);
    duet_seq_free(s);
    duet_seq_free(d);
    duet_model_free(m);
}

Test(model_errors, bad_token_ids_and_arguments) {
    duet_model *m = load_ref("qwen2-b-Q4_0");
    duet_seq *s = NULL;
    duet_err err = {0};
    cr_assert_eq(duet_seq_new(&s, m, 32, &err), 0);
    float lg[512];
    int32_t bad[3][2] = {{5, -1}, {5, 512}, {5, 1 << 30}};
    for (int k = 0; k < 3; k++) {
        memset(&err, 0, sizeof err);
        cr_expect_eq(duet_eval(s, bad[k], 2, lg, 1, &err), DUET_ERANGE);
        cr_expect(strstr(err.msg, "out of range") != NULL, "message: %s", err.msg);
        cr_expect_eq(duet_seq_pos(s), 0);
    }
    int32_t ok[2] = {5, 511};
    cr_expect_eq(duet_eval(s, ok, 2, lg, 3, &err), DUET_EINVAL);   /* more logits than tokens */
    cr_expect_eq(duet_eval(s, ok, 2, NULL, 1, &err), DUET_EINVAL); /* nowhere to write them */
    cr_expect_eq(duet_eval(s, ok, -1, NULL, 0, &err), DUET_EINVAL);
    cr_expect_eq(duet_eval(NULL, ok, 2, lg, 1, &err), DUET_EINVAL);
    cr_expect_eq(duet_seq_pos(s), 0);
    cr_expect_eq(duet_eval(s, ok, 0, NULL, 0, &err), 0);
    cr_expect_eq(duet_eval(s, ok, 2, lg, 1, &err), 0, "%s", err.msg);
    cr_expect_eq(duet_seq_pos(s), 2);

    /* a batch naming a sequence of another model */
    duet_model *other = load_ref("qwen2-b-F16");
    duet_seq *o = NULL;
    cr_assert_eq(duet_seq_new(&o, other, 8, &err), 0);
    duet_seq *who[2] = {s, o};
    duet_batch b = {.n_tokens = 2, .tokens = ok, .seqs = who};
    cr_expect_eq(duet_eval_batch(m, &b, &err), DUET_EINVAL);
    cr_expect_eq(duet_seq_pos(s), 2);
    duet_seq_free(o);
    duet_model_free(other);
    duet_seq_free(s);
    duet_model_free(m);
    duet_seq_free(NULL);
    duet_model_free(NULL);
}

/* ---- crafted model files ------------------------------------------------- */

typedef struct {
    const char *str_key, *str_val; /* a string key set */
    const char *f_key[4];          /* float keys set */
    float f_val[4];
    const char *u_key;             /* a u32 key set */
    uint32_t u_val;
    const float *rope_freqs;       /* adds rope_freqs.weight with n_rope_freqs values */
    int n_rope_freqs;
    const char *drop_key;     /* metadata key left out */
    const char *arch;         /* replaces general.architecture */
    const char *drop_tensor;  /* tensor left out */
    const char *reshape;      /* tensor written with its dims swapped */
    const char *retype;       /* tensor written as Q8_K (not a weight type) */
} mutation;

static void *zeros_for_q8k(const duet_gguf_tensor *t) {
    return calloc((size_t)(t->ne[0] / 256) * t->ne[1], 292);
}

static void craft(const char *src, const char *dst, const mutation *mu) {
    duet_gguf *g = NULL;
    duet_err err = {0};
    cr_assert_eq(duet_gguf_open(&g, src, &err), 0, "%s", err.msg);
    duet_gguf_writer *w = duet_gguf_writer_new();
    cr_assert(w);
    for (int64_t i = 0; i < duet_gguf_n_kv(g); i++)
        if (!mu->drop_key || strcmp(duet_gguf_key(g, i), mu->drop_key)) cr_assert_eq(duet_gguf_copy_kv(w, g, i), 0);
    if (mu->arch) cr_assert_eq(duet_gguf_set_str(w, "general.architecture", mu->arch), 0);
    if (mu->str_key) cr_assert_eq(duet_gguf_set_str(w, mu->str_key, mu->str_val), 0);
    for (int k = 0; k < 4 && mu->f_key[k]; k++) cr_assert_eq(duet_gguf_set_f32(w, mu->f_key[k], mu->f_val[k]), 0);
    if (mu->u_key) cr_assert_eq(duet_gguf_set_u32(w, mu->u_key, mu->u_val), 0);
    if (mu->rope_freqs) {
        const int64_t ne[4] = {mu->n_rope_freqs, 1, 1, 1};
        cr_assert_eq(duet_gguf_add_tensor(w, "rope_freqs.weight", DUET_TYPE_F32, 1, ne, mu->rope_freqs), 0);
    }
    void *extra = NULL;
    for (int64_t i = 0; i < duet_gguf_n_tensors(g); i++) {
        const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i);
        if (mu->drop_tensor && !strcmp(t->name, mu->drop_tensor)) continue;
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        uint32_t type = t->type;
        const void *data = t->data;
        if (mu->reshape && !strcmp(t->name, mu->reshape)) {
            ne[0] = t->ne[1];
            ne[1] = t->ne[0];
        }
        if (mu->retype && !strcmp(t->name, mu->retype)) {
            type = DUET_TYPE_Q8_K;
            data = extra = zeros_for_q8k(t);
        }
        cr_assert_eq(duet_gguf_add_tensor(w, t->name, type, t->n_dims, ne, data), 0, "%s", t->name);
    }
    cr_assert_eq(duet_gguf_writer_write(w, dst, &err), 0, "%s", err.msg);
    duet_gguf_writer_free(w);
    free(extra);
    duet_gguf_close(g);
}

static void expect_load_error(const mutation *mu, int code, const char *needle) {
    char src[512], dst[256];
    tu_data("ref-models/llama-a-F32.gguf", src, sizeof src);
    snprintf(dst, sizeof dst, "/tmp/duet-test-model-%d.gguf", (int)getpid());
    craft(src, dst, mu);
    duet_model *m = NULL;
    duet_err err = {0};
    int rc = duet_model_load(&m, dst, NULL, &err);
    cr_expect_eq(rc, code, "load returned %d (%s), expected %d", rc, err.msg, code);
    cr_expect(strstr(err.msg, needle) != NULL, "message '%s' should name '%s'", err.msg, needle);
    cr_expect_null(m);
    duet_model_free(m);
    unlink(dst);
}

Test(model_errors, missing_tensor_is_named) {
    mutation mu = {.drop_tensor = "blk.1.ffn_up.weight"};
    expect_load_error(&mu, DUET_ENOTFOUND, "blk.1.ffn_up.weight");
}

Test(model_errors, wrong_shape_is_named) {
    mutation mu = {.reshape = "blk.0.attn_k.weight"};
    expect_load_error(&mu, DUET_EFORMAT, "blk.0.attn_k.weight");
}

Test(model_errors, unsupported_architecture) {
    mutation mu = {.arch = "gpt2"};
    expect_load_error(&mu, DUET_EUNSUPPORTED, "gpt2");
}

Test(model_errors, unsupported_weight_type_is_named) {
    mutation mu = {.retype = "blk.0.attn_q.weight"};
    expect_load_error(&mu, DUET_EUNSUPPORTED, "blk.0.attn_q.weight");
}

Test(model_errors, missing_metadata_is_named) {
    mutation mu = {.drop_key = "llama.embedding_length"};
    expect_load_error(&mu, DUET_ENOTFOUND, "llama.embedding_length");
}

static duet_model *load_mutated(const mutation *mu, const char *tag) {
    char src[512], dst[256];
    tu_data("ref-models/llama-a-F32.gguf", src, sizeof src);
    snprintf(dst, sizeof dst, "/tmp/duet-test-%s-%d.gguf", tag, (int)getpid());
    craft(src, dst, mu);
    duet_model *m = NULL;
    duet_err err = {0};
    cr_assert_eq(duet_model_load(&m, dst, NULL, &err), 0, "%s", err.msg);
    unlink(dst);
    return m;
}

Test(model_errors, rope_scaling_from_metadata) {
    /* linear: the angle is divided by the factor */
    mutation lin = {.str_key = "llama.rope.scaling.type", .str_val = "linear",
                    .f_key = {"llama.rope.scaling.factor"}, .f_val = {4.0f}};
    duet_model *m = load_mutated(&lin, "linear");
    const duet_hparams *hp = duet_model_hparams(m);
    cr_expect_eq(hp->rope_scaling, DUET_ROPE_SCALING_LINEAR);
    cr_expect_float_eq(hp->rope_freq_scale, 0.25f, 1e-9f);
    cr_expect(!hp->has_rope_freqs);
    duet_model_free(m);

    /* llama3 keys: HF's per-frequency divisors (base 1e4, 16 pairs, original
     * context 64: wavelengths below 64/4 keep 1, above 64/1 take the factor,
     * the band between is interpolated) */
    mutation l3 = {.str_key = "llama.rope.scaling.type", .str_val = "llama3",
                   .f_key = {"llama.rope.scaling.factor", "llama.rope.scaling.low_freq_factor",
                             "llama.rope.scaling.high_freq_factor"},
                   .f_val = {8.0f, 1.0f, 4.0f},
                   .u_key = "llama.rope.scaling.original_context_length", .u_val = 64};
    m = load_mutated(&l3, "llama3");
    hp = duet_model_hparams(m);
    cr_expect_eq(hp->rope_scaling, DUET_ROPE_SCALING_LLAMA3);
    cr_expect(hp->has_rope_freqs);
    cr_expect_float_eq(hp->rope_freq_scale, 1.0f, 0);
    int saw_one = 0, saw_factor = 0, saw_between = 0;
    for (int i = 0; i < 16; i++) {
        const double wavelen = 2 * M_PI * pow(10000.0, i / 16.0);
        const float f = m->rope_freqs[i];
        if (wavelen < 16) {
            cr_expect_float_eq(f, 1.0f, 1e-6f);
            saw_one++;
        } else if (wavelen > 64) {
            cr_expect_float_eq(f, 8.0f, 1e-6f);
            saw_factor++;
        } else {
            const double smooth = (64 / wavelen - 1) / 3;
            cr_expect_float_eq(f, 1 / ((1 - smooth) / 8 + smooth), 1e-5, "pair %d", i);
            saw_between++;
        }
    }
    cr_expect(saw_one && saw_factor && saw_between);
    duet_model_free(m);

    /* rope_freqs.weight, as converted Llama 3.1 files carry it, is used as is */
    float ff[16];
    for (int i = 0; i < 16; i++) ff[i] = 1.0f + (float)i;
    mutation t = {.rope_freqs = ff, .n_rope_freqs = 16};
    m = load_mutated(&t, "ropefreqs");
    cr_expect(duet_model_hparams(m)->has_rope_freqs);
    cr_expect(!memcmp(m->rope_freqs, ff, sizeof ff));
    duet_model_free(m);
    mutation bad = {.rope_freqs = ff, .n_rope_freqs = 8};
    expect_load_error(&bad, DUET_EFORMAT, "rope_freqs.weight");
    mutation yarn = {.str_key = "llama.rope.scaling.type", .str_val = "yarn"};
    expect_load_error(&yarn, DUET_EUNSUPPORTED, "yarn");
}

Test(model_errors, no_output_weight_means_tied_embeddings) {
    /* llama-a without output.weight loads as tied (like qwen2-b) */
    char src[512], dst[256];
    tu_data("ref-models/llama-a-F32.gguf", src, sizeof src);
    snprintf(dst, sizeof dst, "/tmp/duet-test-tied-%d.gguf", (int)getpid());
    mutation mu = {.drop_tensor = "output.weight"};
    craft(src, dst, &mu);
    duet_model *m = NULL;
    duet_err err = {0};
    cr_assert_eq(duet_model_load(&m, dst, NULL, &err), 0, "%s", err.msg);
    cr_expect(duet_model_hparams(m)->tied_output);
    duet_model_free(m);
    unlink(dst);
    m = load_ref("llama-a-F32");
    cr_expect(!duet_model_hparams(m)->tied_output);
    duet_model_free(m);
}

Test(model_errors, nonexistent_file) {
    duet_model *m = NULL;
    duet_err err = {0};
    cr_expect_neq(duet_model_load(&m, "/nonexistent/model.gguf", NULL, &err), 0);
    cr_expect(strstr(err.msg, "/nonexistent/model.gguf") != NULL, "message: %s", err.msg);
    cr_expect_null(m);
}

Test(model_errors, hparams_from_metadata) {
    duet_model *m = load_ref("qwen2-b-Q5_K_M");
    const duet_hparams *hp = duet_model_hparams(m);
    cr_expect_eq(hp->arch, DUET_ARCH_QWEN2);
    cr_expect_str_eq(hp->arch_name, "qwen2");
    cr_expect_eq(hp->n_vocab, 512);
    cr_expect_eq(hp->n_ctx_train, 512);
    cr_expect_eq(hp->n_embd, 256);
    cr_expect_eq(hp->n_layer, 2);
    cr_expect_eq(hp->n_head, 8);
    cr_expect_eq(hp->n_head_kv, 2);
    cr_expect_eq(hp->head_dim, 32);
    cr_expect_eq(hp->n_ff, 768);
    cr_expect_eq(hp->n_rot, 32);
    cr_expect_eq(hp->rope_type, DUET_ROPE_NEOX);
    cr_expect_float_eq(hp->rope_freq_base, 1e6f, 1.0f);
    cr_expect_eq(hp->rope_scaling, DUET_ROPE_SCALING_NONE);
    cr_expect_float_eq(hp->rms_eps, 1e-6f, 1e-12f);
    cr_expect(hp->tied_output);
    cr_expect(hp->has_qkv_bias);
    cr_expect_eq(hp->file_type, 17u);
    cr_expect_not_null(duet_model_gguf(m));
    duet_model_free(m);
    m = load_ref("llama-a-Q4_K_M");
    hp = duet_model_hparams(m);
    cr_expect_eq(hp->rope_type, DUET_ROPE_NORM);
    cr_expect_float_eq(hp->rope_freq_base, 1e4f, 1e-3f);
    cr_expect(!hp->has_qkv_bias);
    cr_expect_eq(hp->file_type, 15u);
    duet_model_free(m);
}

/* ---- duet logits ------------------------------------------------------------ */

static char *prompt_arg(const char *family) {
    char rel[128], buf[512];
    snprintf(rel, sizeof rel, "ref-models/%s.prompt.txt", family);
    char *s = tu_slurp(tu_data(rel, buf, sizeof buf), NULL);
    cr_assert(s);
    for (char *c = s; *c; c++)
        if (*c == '\n') *c = ' ';
    return s;
}

static double file_max_diff(const char *out, const char *ref_name) {
    char rel[128], buf[512];
    snprintf(rel, sizeof rel, "ref-models/%s.logits.f32", ref_name);
    size_t na = 0, nb = 0;
    float *a = tu_slurp(out, &na), *b = tu_slurp(tu_data(rel, buf, sizeof buf), &nb);
    cr_assert(a && b);
    cr_assert_eq(na, nb, "output has %zu bytes, reference %zu", na, nb);
    double mx = 0;
    for (size_t i = 0; i < na / 4; i++) mx = fmax(mx, fabs((double)a[i] - (double)b[i]));
    free(a);
    free(b);
    return mx;
}

Test(model_cli, logits_matches_llama_cpp) {
    char model[512], args[4096], out[128];
    snprintf(out, sizeof out, "/tmp/duet-test-logits-%d.f32", (int)getpid());
    char *toks = prompt_arg("llama-a");
    tu_data("ref-models/llama-a-F32.gguf", model, sizeof model);
    snprintf(args, sizeof args, "logits -m %s --tokens \"%s\" -o %s -t 2 2>/dev/null", model, toks, out);
    cr_assert_eq(tu_run_duet(args, NULL), 0);
    double d = file_max_diff(out, "llama-a-F32");
    cr_log_info("duet logits llama-a-F32 (batched): max |diff| %.3g", d);
    cr_expect(d <= 0.0135);

    snprintf(args, sizeof args, "logits -m %s --tokens \"%s\" -o %s --one-by-one --json", model, toks, out);
    char *json = NULL;
    cr_assert_eq(tu_run_duet(args, &json), 0);
    cr_expect(json && strstr(json, "\"n_pos\": 48") && strstr(json, "\"one-by-one\""), "json: %s", json);
    free(json);
    d = file_max_diff(out, "llama-a-F32");
    cr_log_info("duet logits llama-a-F32 (--one-by-one): max |diff| %.3g", d);
    cr_expect(d <= 0.0135);

    /* F32 cache: within F16 rounding (2^-11, a few per layer) of the logit scale 38.5 */
    snprintf(args, sizeof args, "logits -m %s --tokens \"%s\" -o %s --kv-type f32 2>/dev/null", model, toks, out);
    cr_assert_eq(tu_run_duet(args, NULL), 0);
    d = file_max_diff(out, "llama-a-F32");
    cr_log_info("duet logits llama-a-F32 (--kv-type f32): max |diff| %.3g", d);
    cr_expect(d > 0 && d <= 8 * 0x1p-11 * 38.5);
    unlink(out);
    free(toks);
}

Test(model_cli, usage_and_errors) {
    char model[512], args[1024], out[128];
    snprintf(out, sizeof out, "/tmp/duet-test-logits-e-%d.f32", (int)getpid());
    tu_data("ref-models/qwen2-b-Q8_0.gguf", model, sizeof model);
    char *help = NULL;
    cr_expect_eq(tu_run_duet("logits --help", &help), 0);
    cr_expect(help && strstr(help, "usage: duet logits"));
    free(help);
    snprintf(args, sizeof args, "logits -m %s --tokens \"1 2\" 2>/dev/null", model);
    cr_expect_eq(tu_run_duet(args, NULL), 2); /* no -o */
    snprintf(args, sizeof args, "logits -m %s --tokens \"1 x\" -o %s 2>/dev/null", model, out);
    cr_expect_eq(tu_run_duet(args, NULL), 2);
    snprintf(args, sizeof args, "logits -m %s --tokens \"1 2\" -o %s --kv-type q8 2>/dev/null", model, out);
    cr_expect_eq(tu_run_duet(args, NULL), 2);
    snprintf(args, sizeof args, "logits -m /nonexistent.gguf --tokens \"1 2\" -o %s 2>&1", out);
    char *msg = NULL;
    cr_expect_eq(tu_run_duet(args, &msg), 1);
    cr_expect(msg && !strncmp(msg, "duet logits: ", 13) && strchr(msg, '\n') == msg + strlen(msg) - 1,
              "one error line expected: %s", msg);
    free(msg);
    snprintf(args, sizeof args, "logits -m %s --tokens \"1 512\" -o %s 2>&1", model, out);
    cr_expect_eq(tu_run_duet(args, &msg), 1);
    cr_expect(msg && strstr(msg, "out of range"), "%s", msg);
    free(msg);
    unlink(out);
}

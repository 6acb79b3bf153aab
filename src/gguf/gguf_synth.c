/* duet_gguf_synth: a random-weight llama or qwen2 model with the metadata,
 * tokenizer and tensor layout of the ref-models fixtures. Weights are
 * uniform with the fixtures' standard deviations, generated row by row from
 * per-row seeds (the same file for any thread count) and converted to the
 * requested file type with llama.cpp's mix while the file is written. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/gguf.h"
#include "duet/gguf_quantize.h"
#include "duet/gguf_synth.h"
#include "duet/quant.h"
#include "duet/threadpool.h"
#include "gguf/gguf_qmix.h"
#include "gguf/gguf_synth_vocab.h"

typedef struct synth_run synth_run;

typedef struct {
    synth_run *run;
    char name[64];
    int n_dims;
    int64_t ne[2];
    uint32_t type;
    float lo, hi;          /* values uniform in [lo, hi) */
    uint64_t seed;
    int64_t index;
} synth_tensor;

struct synth_run {
    const duet_synth_params *p;
    duet_pool *pool;
    float *scratch;        /* (nth, longest row) */
    int64_t n_tensors;
    const synth_tensor *cur;
    uint8_t *dst;
    size_t out_row;
};

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void gen_rows(void *ctx, int ith, int nth) {
    synth_run *q = ctx;
    const synth_tensor *t = q->cur;
    int64_t n_rows = t->ne[1], len = t->ne[0];
    int64_t r0 = n_rows * ith / nth, r1 = n_rows * (ith + 1) / nth;
    float *row = q->scratch + (size_t)ith * (size_t)len; /* (len) */
    for (int64_t r = r0; r < r1; r++) {
        uint64_t s = t->seed ^ ((uint64_t)r * 0xd1b54a32d192ed03ull);
        for (int64_t i = 0; i < len; i++) {
            float u = (float)(splitmix(&s) >> 40) * (1.0f / 16777216.0f);
            row[i] = t->lo + (t->hi - t->lo) * u;
        }
        duet_quantize_row((duet_type)t->type, row, q->dst + (size_t)r * q->out_row, len);
    }
}

static int fill_tensor(void *ctx, const char *name, void *dst, size_t nbytes, duet_err *err) {
    synth_tensor *t = ctx;
    synth_run *q = t->run;
    if (q->p->progress) q->p->progress(q->p->progress_ud, t->index, q->n_tensors, name);
    q->cur = t;
    q->dst = dst;
    q->out_row = duet_row_size((duet_type)t->type, t->ne[0]);
    if (q->out_row * (size_t)t->ne[1] != nbytes) return duet_err_set(err, DUET_EINVAL, "tensor '%s': size mismatch", name);
    duet_pool_run(q->pool, gen_rows, q);
    return 0;
}

static int check_shape(const duet_synth_params *p, int qwen2, duet_err *err) {
    if (!p->arch || (strcmp(p->arch, "llama") && !qwen2))
        return duet_err_set(err, DUET_EINVAL, "arch must be llama or qwen2, not '%s'", p->arch ? p->arch : "(null)");
    const int64_t big = (int64_t)1 << 31;
    if (p->n_embd <= 0 || p->n_embd >= big || p->n_layer <= 0 || p->n_layer > 100000 || p->n_head <= 0 ||
        p->n_head_kv <= 0 || p->n_ff <= 0 || p->n_ff >= big || p->n_ctx <= 0 || p->n_ctx >= big ||
        p->n_vocab >= big)
        return duet_err_set(err, DUET_EINVAL, "every dimension must be positive (and below 2^31)");
    if (p->n_embd % p->n_head)
        return duet_err_set(err, DUET_EINVAL, "n_embd %lld is not a multiple of n_head %lld", (long long)p->n_embd,
                            (long long)p->n_head);
    if ((p->n_embd / p->n_head) % 2)
        return duet_err_set(err, DUET_EINVAL, "head_dim %lld must be even (rotary pairs)",
                            (long long)(p->n_embd / p->n_head));
    if (p->n_head % p->n_head_kv)
        return duet_err_set(err, DUET_EINVAL, "n_head %lld is not a multiple of n_head_kv %lld", (long long)p->n_head,
                            (long long)p->n_head_kv);
    if (duet_ftype_base_type(p->ftype) < 0)
        return duet_err_set(err, DUET_EUNSUPPORTED, "cannot write file type %d", p->ftype);
    return 0;
}

/* Metadata in the fixtures' key order. */
static int set_metadata(duet_gguf_writer *w, const duet_synth_params *p, int qwen2, const synth_vocab *v) {
    const char *A = qwen2 ? "qwen2" : "llama";
    char key[96], name[96];
    int rc = 0;
    snprintf(name, sizeof name, "synth-%s", A);
    rc |= duet_gguf_set_str(w, "general.architecture", A);
    rc |= duet_gguf_set_str(w, "general.name", p->name ? p->name : name);
    rc |= duet_gguf_set_u32(w, "general.file_type", (uint32_t)p->ftype);
    rc |= duet_gguf_set_u32(w, "general.alignment", 32);
#define U32(suffix, val)                                   \
    snprintf(key, sizeof key, "%s." suffix, A);            \
    rc |= duet_gguf_set_u32(w, key, (uint32_t)(val))
    U32("vocab_size", p->n_vocab);
    U32("context_length", p->n_ctx);
    U32("embedding_length", p->n_embd);
    U32("block_count", p->n_layer);
    U32("feed_forward_length", p->n_ff);
    U32("rope.dimension_count", p->n_embd / p->n_head);
    U32("attention.head_count", p->n_head);
    U32("attention.head_count_kv", p->n_head_kv);
#undef U32
    snprintf(key, sizeof key, "%s.rope.freq_base", A);
    rc |= duet_gguf_set_f32(w, key, qwen2 ? 1e6f : 10000.0f);
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", A);
    rc |= duet_gguf_set_f32(w, key, qwen2 ? 1e-6f : 1e-5f);
    uint32_t last = (uint32_t)(v->n_tokens - 1);
    if (!qwen2) {
        rc |= duet_gguf_set_str(w, "tokenizer.ggml.model", "llama");
        rc |= duet_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->tokens, (uint64_t)v->n_tokens);
        rc |= duet_gguf_set_arr(w, "tokenizer.ggml.scores", DUET_GGUF_FLOAT32, v->scores, (uint64_t)v->n_tokens);
        rc |= duet_gguf_set_arr(w, "tokenizer.ggml.token_type", DUET_GGUF_INT32, v->types, (uint64_t)v->n_tokens);
        rc |= duet_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
        rc |= duet_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
        rc |= duet_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
        rc |= duet_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", 1);
        rc |= duet_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", 0);
    } else {
        rc |= duet_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
        rc |= duet_gguf_set_str(w, "tokenizer.ggml.pre", "qwen2");
        rc |= duet_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->tokens, (uint64_t)v->n_tokens);
        rc |= duet_gguf_set_arr(w, "tokenizer.ggml.token_type", DUET_GGUF_INT32, v->types, (uint64_t)v->n_tokens);
        rc |= duet_gguf_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v->merges, (uint64_t)v->n_merges);
        rc |= duet_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", last);
        rc |= duet_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", last);
        rc |= duet_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", last);
        rc |= duet_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", 0);
    }
    if (p->ftype != FT_ALL_F32) rc |= duet_gguf_set_u32(w, "general.quantization_version", 2);
    return rc ? DUET_ENOMEM : 0;
}

/* The fixtures' tensor list, in their order, with value ranges. */
static int64_t plan_tensors(synth_tensor *t, const duet_synth_params *p, int qwen2) {
    int64_t n = 0, E = p->n_embd, F = p->n_ff, KV = p->n_embd / p->n_head * p->n_head_kv;
    const float r3 = sqrtf(3.0f), s_out = qwen2 ? 2.0f : 1.0f;
    const float sd_emb = qwen2 ? 0.25f : 0.5f, sd_in = 1.28f / sqrtf((float)E), sd_ff = 1.28f / sqrtf((float)F);
#define T2(nm, a, b, sd) t[n++] = (synth_tensor){.n_dims = 2, .ne = {a, b}, .lo = -(sd) * r3, .hi = (sd) * r3}, \
                         snprintf(t[n - 1].name, sizeof t->name, "%s", nm)
#define T1(nm, a, lo_, hi_) t[n++] = (synth_tensor){.n_dims = 1, .ne = {a, 1}, .lo = lo_, .hi = hi_}, \
                            snprintf(t[n - 1].name, sizeof t->name, "%s", nm)
    char nm[64];
    T2("token_embd.weight", E, p->n_vocab, sd_emb);
    for (int64_t l = 0; l < p->n_layer; l++) {
#define BLK(suffix) (snprintf(nm, sizeof nm, "blk.%lld." suffix, (long long)l), nm)
        T1(BLK("attn_norm.weight"), E, 0.9f, 1.1f);
        T2(BLK("attn_q.weight"), E, E, sd_in);
        T2(BLK("attn_k.weight"), E, KV, sd_in);
        T2(BLK("attn_v.weight"), E, KV, sd_in);
        if (qwen2) {
            T1(BLK("attn_q.bias"), E, -0.2f * r3, 0.2f * r3);
            T1(BLK("attn_k.bias"), KV, -0.2f * r3, 0.2f * r3);
            T1(BLK("attn_v.bias"), KV, -0.2f * r3, 0.2f * r3);
        }
        T2(BLK("attn_output.weight"), E, E, sd_in * s_out);
        T1(BLK("ffn_norm.weight"), E, 0.9f, 1.1f);
        T2(BLK("ffn_gate.weight"), E, F, sd_in);
        T2(BLK("ffn_up.weight"), E, F, sd_in);
        T2(BLK("ffn_down.weight"), F, E, sd_ff * s_out);
#undef BLK
    }
    T1("output_norm.weight", E, 0.9f, 1.1f);
    if (!qwen2) T2("output.weight", E, p->n_vocab, sd_emb);
#undef T1
#undef T2
    return n;
}

int duet_gguf_synth(const char *out_path, const duet_synth_params *p, duet_err *err) {
    if (!out_path || !p) return duet_err_set(err, DUET_EINVAL, "duet_gguf_synth: bad arguments");
    int qwen2 = p->arch && !strcmp(p->arch, "qwen2");
    int rc = check_shape(p, qwen2, err);
    if (rc) return rc;
    synth_vocab v;
    if ((rc = synth_vocab_build(&v, qwen2, p->n_vocab, p->seed ^ 0x766f636162ull, err))) return rc;
    int64_t cap = 3 + 12 * p->n_layer; /* per layer: 9 matrices and norms, 3 qwen2 biases */
    synth_tensor *t = calloc((size_t)cap, sizeof *t);
    duet_gguf_writer *w = duet_gguf_writer_new();
    synth_run q = {.p = p};
    if (!t || !w) {
        rc = duet_err_set(err, DUET_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = set_metadata(w, p, qwen2, &v))) {
        rc = duet_err_set(err, rc, "out of memory writing metadata");
        goto done;
    }
    int64_t n = plan_tensors(t, p, qwen2), longest = 0;
    q.n_tensors = n;
    gguf_qmix mix;
    gguf_qmix_model facts = {.arch = qwen2 ? "qwen2" : "llama", .n_layer = (int)p->n_layer,
                             .n_head = (int)p->n_head, .n_head_kv = (int)p->n_head_kv};
    if ((rc = gguf_qmix_init(&mix, &facts, p->ftype, 0, err))) goto done;
    for (int64_t i = 0; i < n; i++) gguf_qmix_see(&mix, t[i].name);
    uint64_t seed = p->seed;
    for (int64_t i = 0; i < n; i++) {
        duet_gguf_tensor view = {.name = t[i].name, .type = DUET_TYPE_F32, .n_dims = t[i].n_dims,
                                 .ne = {t[i].ne[0], t[i].ne[1], 1, 1}};
        t[i].type = p->ftype != FT_ALL_F32 && gguf_qmix_quantizable(&view) ? gguf_qmix_type(&mix, &view)
                                                                            : DUET_TYPE_F32;
        t[i].run = &q;
        t[i].index = i;
        t[i].seed = splitmix(&seed);
        if (t[i].ne[0] > longest) longest = t[i].ne[0];
        if ((rc = duet_gguf_add_tensor_fill(w, t[i].name, t[i].type, t[i].n_dims, t[i].ne, fill_tensor, &t[i]))) {
            rc = duet_err_set(err, rc, "cannot add tensor '%s'", t[i].name);
            goto done;
        }
    }
    q.pool = duet_pool_new(p->n_threads);
    q.scratch = q.pool ? malloc((size_t)duet_pool_size(q.pool) * (size_t)longest * sizeof(float)) : NULL;
    if (!q.scratch) {
        rc = duet_err_set(err, DUET_ENOMEM, "out of memory (threads or row buffers)");
        goto done;
    }
    rc = duet_gguf_writer_write(w, out_path, err);
done:
    duet_pool_free(q.pool);
    free(q.scratch);
    duet_gguf_writer_free(w);
    free(t);
    synth_vocab_free(&v);
    return rc;
}

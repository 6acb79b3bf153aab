/* Decode-consistent mode (duet_seq_set_decode_consistent): a block of tokens
 * must give every token the same bits -- logits and K/V -- as evaluating the
 * tokens one at a time, the reference being the one-token evals themselves.
 * Checked for every reference model (F16 cache; an F32 cache for six of
 * them), for blocks of 2..17 tokens (the speculative verification sizes)
 * that cross the 32-position padding of the one-token attention, for a block
 * mixing two sequences, and at the kernel level (duet_matmul_ex) for every
 * weight type. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/kernels.h"
#include "duet/model.h"
#include "duet/quant.h"
#include "model/model_internal.h"
#include "testutil.h"

#define N_PREFIX 20 /* prefilled in the default (batched) mode */
#define B_MAX 17    /* 1 pending + up to 16 drafts */

static duet_model *load(const char *path, int n_threads, duet_kv_type kv) {
    duet_model_params p = duet_model_default_params();
    p.n_threads = n_threads;
    p.kv_type = kv;
    duet_model *m = NULL;
    duet_err err = {0};
    cr_assert_eq(duet_model_load(&m, path, &p, &err), 0, "load %s: %s", path, err.msg);
    return m;
}

static void tokens(int32_t *t, int n, int salt) {
    for (int i = 0; i < n; i++) t[i] = 3 + (int32_t)((i * 37 + salt * 101) % 500);
}

/* Bytes of positions [0, n) of every layer's K and V. */
static int same_kv(const duet_seq *a, const duet_seq *b, int n) {
    const duet_hparams *hp = &a->model->hp;
    const size_t kvd = (size_t)hp->n_head_kv * hp->head_dim, elt = a->elt;
    for (int il = 0; il < hp->n_layer; il++) {
        const char *ka = (const char *)a->k + il * a->layer_stride * elt;
        const char *kb = (const char *)b->k + il * b->layer_stride * elt;
        if (memcmp(ka, kb, (size_t)n * kvd * elt)) return 0;
        const char *va = (const char *)a->v + il * a->layer_stride * elt;
        const char *vb = (const char *)b->v + il * b->layer_stride * elt;
        for (size_t d = 0; d < kvd; d++)
            if (memcmp(va + d * (size_t)a->n_ctx * elt, vb + d * (size_t)b->n_ctx * elt, (size_t)n * elt)) return 0;
    }
    return 1;
}

/* One model, one KV type: one-token references, then every block size. */
static void check_blocks(const char *path, duet_kv_type kv) {
    duet_model *m = load(path, 1, kv);
    const int nv = duet_model_n_vocab(m);
    duet_seq *ref = NULL, *s = NULL;
    duet_err err = {0};
    cr_assert_eq(duet_seq_new(&ref, m, 64, &err), 0, "%s", err.msg);
    cr_assert_eq(duet_seq_new(&s, m, 64, &err), 0, "%s", err.msg);
    int32_t tok[N_PREFIX + B_MAX];
    tokens(tok, N_PREFIX + B_MAX, 1);
    float *one = malloc(sizeof(float) * (size_t)nv * B_MAX), *blk = malloc(sizeof(float) * (size_t)nv * B_MAX);
    cr_assert(one && blk);

    cr_assert_eq(duet_eval(ref, tok, N_PREFIX, NULL, 0, &err), 0, "%s", err.msg);
    for (int i = 0; i < B_MAX; i++)
        cr_assert_eq(duet_eval(ref, tok + N_PREFIX + i, 1, one + (size_t)i * nv, 1, &err), 0, "%s", err.msg);

    cr_assert_eq(duet_eval(s, tok, N_PREFIX, NULL, 0, &err), 0, "%s", err.msg);
    cr_assert_eq(duet_seq_set_decode_consistent(s, 1), 0);
    cr_assert_eq(duet_seq_decode_consistent(s), 1);
    for (int b = 2; b <= B_MAX; b++) {
        cr_assert_eq(duet_rollback(s, N_PREFIX), 0);
        cr_assert_eq(duet_eval(s, tok + N_PREFIX, b, blk, b, &err), 0, "%s", err.msg);
        for (int i = 0; i < b; i++)
            cr_assert(!memcmp(blk + (size_t)i * nv, one + (size_t)i * nv, sizeof(float) * (size_t)nv),
                      "%s kv %d: block of %d, token %d: logits differ from its one-token eval", path, (int)kv, b, i);
        cr_assert(same_kv(s, ref, N_PREFIX + b), "%s kv %d: block of %d: K/V differ from one-token evals", path,
                  (int)kv, b);
    }
    /* Only the last row wanted: the same bits too (the last layer then
     * carries one row). */
    cr_assert_eq(duet_rollback(s, N_PREFIX), 0);
    cr_assert_eq(duet_eval(s, tok + N_PREFIX, 9, blk, 1, &err), 0, "%s", err.msg);
    cr_assert(!memcmp(blk, one + (size_t)8 * nv, sizeof(float) * (size_t)nv), "%s: last-row block differs", path);

    free(one);
    free(blk);
    duet_seq_free(ref);
    duet_seq_free(s);
    duet_model_free(m);
}

/* Every reference model whose file name starts with `prefix`. */
static void for_each_ref_model(const char *prefix, void (*fn)(const char *path)) {
    char buf[512];
    const char *dir = tu_data("ref-models", buf, sizeof buf);
    DIR *d = opendir(dir);
    cr_assert(d, "cannot open %s", dir);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".gguf") || strncmp(e->d_name, prefix, strlen(prefix))) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        fn(path);
        count++;
    }
    closedir(d);
    cr_assert_geq(count, 11, "only %d reference models %s*", count, prefix);
}

static void blocks_kv_f16(const char *path) { check_blocks(path, DUET_KV_F16); }

/* One test per architecture, every weight type, the default F16 cache. */
Test(model_consistent, blocks_equal_one_token_evals_llama) { for_each_ref_model("llama-a-", blocks_kv_f16); }
Test(model_consistent, blocks_equal_one_token_evals_qwen2) { for_each_ref_model("qwen2-b-", blocks_kv_f16); }

/* An F32 cache changes only the attention's loads: a float, a half and a
 * K-quant model of each architecture. */
Test(model_consistent, blocks_equal_one_token_evals_kv_f32) {
    static const char *names[] = {"llama-a-F32", "llama-a-F16", "llama-a-Q4_K_M", "qwen2-b-BF16", "qwen2-b-Q5_K_M",
                                  "qwen2-b-Q4_0"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char rel[256], buf[512];
        snprintf(rel, sizeof rel, "ref-models/%s.gguf", names[i]);
        check_blocks(tu_data(rel, buf, sizeof buf), DUET_KV_F32);
    }
}

/* Two sequences interleaved in one duet_eval_batch; only a has the mode on.
 * Each sequence's rows come out in its own mode (model.h): a's as its
 * one-token evals, b's as its K tokens evaluated alone in the default
 * (batched) arithmetic -- not decode-consistently because a shares the
 * batch. Two threads, so that work is split differently from the
 * references. */
static void mixed(const char *path) {
    enum { NA = 23, NB = 11, K = 6 };
    duet_model *m = load(path, 2, DUET_KV_F16);
    const int nv = duet_model_n_vocab(m);
    duet_err err = {0};
    duet_seq *ra, *rb, *a, *b;
    cr_assert_eq(duet_seq_new(&ra, m, 64, &err) | duet_seq_new(&rb, m, 64, &err) | duet_seq_new(&a, m, 64, &err) |
                     duet_seq_new(&b, m, 64, &err),
                 0, "%s", err.msg);
    int32_t ta[NA + K], tb[NB + K];
    tokens(ta, NA + K, 2);
    tokens(tb, NB + K, 3);
    float *one = malloc(sizeof(float) * (size_t)nv * 2 * K), *blk = malloc(sizeof(float) * (size_t)nv * 2 * K);
    cr_assert(one && blk);
    /* references: row 2i is a's token i (one-token evals), row 2i+1 b's
     * (b's block alone, default mode) */
    float *bblk = malloc(sizeof(float) * (size_t)nv * K);
    cr_assert(bblk);
    cr_assert_eq(duet_eval(ra, ta, NA, NULL, 0, &err) | duet_eval(rb, tb, NB, NULL, 0, &err), 0, "%s", err.msg);
    for (int i = 0; i < K; i++)
        cr_assert_eq(duet_eval(ra, ta + NA + i, 1, one + (size_t)(2 * i) * nv, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(duet_eval(rb, tb + NB, K, bblk, K, &err), 0, "%s", err.msg);
    for (int i = 0; i < K; i++)
        memcpy(one + (size_t)(2 * i + 1) * nv, bblk + (size_t)i * nv, sizeof(float) * (size_t)nv);
    free(bblk);
    cr_assert_eq(duet_eval(a, ta, NA, NULL, 0, &err) | duet_eval(b, tb, NB, NULL, 0, &err), 0, "%s", err.msg);
    duet_seq_set_decode_consistent(a, 1);
    int32_t bt[2 * K];
    duet_seq *bs[2 * K];
    for (int i = 0; i < K; i++) {
        bt[2 * i] = ta[NA + i], bs[2 * i] = a;
        bt[2 * i + 1] = tb[NB + i], bs[2 * i + 1] = b;
    }
    duet_batch batch = {.n_tokens = 2 * K, .tokens = bt, .seqs = bs, .want = NULL, .logits = blk};
    uint8_t want[2 * K];
    memset(want, 1, sizeof want);
    batch.want = want;
    cr_assert_eq(duet_eval_batch(m, &batch, &err), 0, "%s", err.msg);
    for (int r = 0; r < 2 * K; r++)
        cr_assert(!memcmp(blk + (size_t)r * nv, one + (size_t)r * nv, sizeof(float) * (size_t)nv),
                  "%s: mixed block, row %d differs from its sequence's solo eval", path, r);
    cr_assert(same_kv(a, ra, NA + K) && same_kv(b, rb, NB + K), "%s: mixed block K/V differ", path);
    free(one);
    free(blk);
    duet_seq_free(ra), duet_seq_free(rb), duet_seq_free(a), duet_seq_free(b);
    duet_model_free(m);
}

Test(model_consistent, mixed_block_of_two_sequences) {
    char buf[512];
    mixed(tu_data("ref-models/llama-a-Q4_K_M.gguf", buf, sizeof buf));
    mixed(tu_data("ref-models/qwen2-b-F16.gguf", buf, sizeof buf));
    mixed(tu_data("ref-models/llama-a-F32.gguf", buf, sizeof buf));
}

/* Off again: a block follows the default (batched) arithmetic, which for
 * Q4_K differs from the one-token one -- so the mode really is switched. */
Test(model_consistent, mode_switches_off) {
    char buf[512];
    duet_model *m = load(tu_data("ref-models/llama-a-Q4_K_M.gguf", buf, sizeof buf), 1, DUET_KV_F16);
    const int nv = duet_model_n_vocab(m);
    duet_err err = {0};
    duet_seq *s;
    cr_assert_eq(duet_seq_new(&s, m, 64, &err), 0);
    cr_assert_eq(duet_seq_set_decode_consistent(NULL, 1), DUET_EINVAL);
    int32_t tok[N_PREFIX + 8];
    tokens(tok, N_PREFIX + 8, 4);
    float *a = malloc(sizeof(float) * (size_t)nv * 8), *b = malloc(sizeof(float) * (size_t)nv * 8);
    cr_assert_eq(duet_eval(s, tok, N_PREFIX, NULL, 0, &err), 0);
    cr_assert_eq(duet_eval(s, tok + N_PREFIX, 8, a, 8, &err), 0); /* default */
    duet_seq_set_decode_consistent(s, 1);
    duet_rollback(s, N_PREFIX);
    cr_assert_eq(duet_eval(s, tok + N_PREFIX, 8, b, 8, &err), 0); /* consistent */
    cr_assert(memcmp(a, b, sizeof(float) * (size_t)nv * 8), "Q4_K blocks of 8: both modes gave the same bits");
    duet_seq_set_decode_consistent(s, 0);
    cr_assert_eq(duet_seq_decode_consistent(s), 0);
    duet_rollback(s, N_PREFIX);
    cr_assert_eq(duet_eval(s, tok + N_PREFIX, 8, b, 8, &err), 0); /* default again */
    cr_assert(!memcmp(a, b, sizeof(float) * (size_t)nv * 8), "default mode changed after switching back");
    free(a), free(b);
    duet_seq_free(s);
    duet_model_free(m);
}

/* Kernel level, every weight type: rows of duet_matmul_ex(consistent) for m
 * tokens equal duet_matmul of each token alone. n_in: 512 for the K types,
 * 96 for the 32-element ones; 512 and 520 for F32/F16/BF16 (520 is no
 * multiple of 16: the vec_dot path rather than the tinyBLAS tiles). */
static void check_matmul_type(duet_pool *pool, uint32_t t, int64_t n_in);

Test(model_consistent, matmul_ex_rows_equal_gemv_every_type) {
    duet_pool *pool = duet_pool_new(2);
    cr_assert(pool);
    int n_types = 0;
    for (uint32_t t = 0; t < DUET_TYPE_COUNT; t++) {
        const duet_type_traits *tr = duet_type_info(t);
        if (!tr || !tr->is_weight_type) continue;
        n_types++;
        if (tr->blck == 1) {
            check_matmul_type(pool, t, 512);
            check_matmul_type(pool, t, 520);
        } else {
            check_matmul_type(pool, t, tr->blck == 32 ? 96 : 512);
        }
    }
    cr_assert_geq(n_types, 11, "only %d weight types", n_types);
    duet_pool_free(pool);
}

static void check_matmul_type(duet_pool *pool, uint32_t t, int64_t n_in) {
    enum { M = 13, N_OUT = 37 };
    const duet_type_traits *tr = duet_type_info(t);
    {
        float *wf = malloc(sizeof(float) * (size_t)(n_in * N_OUT)), *x = malloc(sizeof(float) * (size_t)(n_in * M));
        const size_t row = duet_row_size((duet_type)t, n_in);
        char *w = malloc(row * N_OUT);
        float *y1 = malloc(sizeof(float) * N_OUT), *ym = malloc(sizeof(float) * M * N_OUT);
        cr_assert(wf && x && w && y1 && ym);
        uint32_t r = 12345u + t;
        for (int64_t i = 0; i < n_in * N_OUT; i++) wf[i] = ((r = r * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
        for (int64_t i = 0; i < n_in * M; i++) x[i] = ((r = r * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f;
        for (int o = 0; o < N_OUT; o++) duet_quantize_row((duet_type)t, wf + o * n_in, w + row * o, n_in);
        for (int m = 2; m <= M; m++) {
            duet_matmul_ex(pool, ym, (duet_type)t, w, x, m, n_in, N_OUT, 1);
            for (int i = 0; i < m; i++) {
                duet_matmul(pool, y1, (duet_type)t, w, x + i * n_in, 1, n_in, N_OUT);
                cr_assert(!isnan(y1[0]), "type %s: NaN", tr->name);
                cr_assert(!memcmp(ym + i * N_OUT, y1, sizeof(float) * N_OUT),
                          "type %s, n_in %d, m %d: token %d differs", tr->name, (int)n_in, m, i);
            }
        }
        free(wf), free(x), free(w), free(y1), free(ym);
    }
}

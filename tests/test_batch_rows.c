/* duet_eval_batch row by row: every token row's logits and K/V must be
 * bit-identical to evaluating that sequence's own tokens of the batch alone
 * with duet_eval, in that sequence's mode (model.h). The batches mix fresh
 * prompts of different lengths (default, batched arithmetic), a default-mode
 * sequence continuing after some history, and decode-consistent sequences
 * with blocks of 1-5 tokens after some history, with tokens interleaved in
 * several orders; the references are separate sequences fed the same tokens
 * by duet_eval. Checked with the default micro-batch and with a micro-batch
 * of 8 tokens (prompts then split into several passes, as duet_eval splits
 * them).
 *
 * The earlier whole-batch rule fails this test: it computed the whole block
 * decode-consistently as soon as one sequence had the mode on, and otherwise
 * ran all rows through one GEMM whose kernel depends on the row count (a
 * 7-token prompt alone takes the per-row path, inside a 50-row batch the
 * packed sgemm), so prompts' rows rounded differently from a solo eval. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/model.h"
#include "model/model_internal.h"
#include "testutil.h"

enum { MAX_SEQ = 8, N_CTX = 96 };

typedef struct {
    int hist;      /* tokens evaluated before the batch (default mode) */
    int n;         /* tokens of this sequence in the batch */
    int n_want;    /* the last n_want of them are wanted */
    int consistent;
} seq_spec;

static duet_model *load(const char *name, int n_threads, int n_ubatch) {
    char rel[128], buf[512];
    snprintf(rel, sizeof rel, "ref-models/%s.gguf", name);
    duet_model_params p = duet_model_default_params();
    p.n_threads = n_threads;
    p.n_ubatch = n_ubatch;
    duet_model *m = NULL;
    duet_err err = {0};
    cr_assert_eq(duet_model_load(&m, tu_data(rel, buf, sizeof buf), &p, &err), 0, "%s", err.msg);
    return m;
}

static void tokens(int32_t *t, int n, int salt, int n_vocab) {
    for (int i = 0; i < n; i++) t[i] = 3 + (int32_t)((i * 37 + salt * 101 + i * i * 7) % (n_vocab - 3));
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

/* Batch orders: how the sequences' tokens are laid out in the batch (each
 * sequence's tokens keep their relative order in all of them). */
typedef enum {
    ORDER_ROUND_ROBIN,  /* one token of each sequence in turn */
    ORDER_BLOCKS_REV,   /* each sequence contiguous, last sequence first */
    ORDER_SCATTER,      /* pseudo-random interleaving */
    ORDER_COUNT
} order_kind;

static int layout(order_kind o, const seq_spec *sp, int n_seq, int *who) {
    int taken[MAX_SEQ] = {0}, total = 0, n = 0;
    for (int s = 0; s < n_seq; s++) total += sp[s].n;
    if (o == ORDER_BLOCKS_REV) {
        for (int s = n_seq - 1; s >= 0; s--)
            for (int i = 0; i < sp[s].n; i++) who[n++] = s;
        return n;
    }
    uint32_t r = 99;
    while (n < total) {
        for (int s = 0; s < n_seq; s++) {
            if (o == ORDER_SCATTER && ((r = r * 1664525u + 1013904223u) >> 29) < 3) continue;
            if (taken[s] < sp[s].n) taken[s]++, who[n++] = s;
        }
    }
    return n;
}

/* One model, one micro-batch size, one set of sequences, every order. */
static void check_case(const char *name, int n_ubatch, const seq_spec *sp, int n_seq) {
    duet_model *m = load(name, 2, n_ubatch);
    const int V = duet_model_n_vocab(m);
    duet_err err = {0};
    int32_t *all[MAX_SEQ]; /* each sequence's history + batch tokens + one more */
    for (int s = 0; s < n_seq; s++) {
        all[s] = malloc(sizeof(int32_t) * (size_t)(sp[s].hist + sp[s].n + 1));
        cr_assert(all[s]);
        tokens(all[s], sp[s].hist + sp[s].n + 1, s + 1, V);
    }
    /* references: each sequence alone, duet_eval of its batch tokens */
    duet_seq *ref[MAX_SEQ];
    float *ref_out[MAX_SEQ], *ref_next[MAX_SEQ];
    for (int s = 0; s < n_seq; s++) {
        cr_assert_eq(duet_seq_new(&ref[s], m, N_CTX, &err), 0, "%s", err.msg);
        ref_out[s] = malloc(sizeof(float) * (size_t)V * (size_t)(sp[s].n_want ? sp[s].n_want : 1));
        ref_next[s] = malloc(sizeof(float) * (size_t)V);
        cr_assert(ref_out[s] && ref_next[s]);
        if (sp[s].hist) cr_assert_eq(duet_eval(ref[s], all[s], sp[s].hist, NULL, 0, &err), 0, "%s", err.msg);
        duet_seq_set_decode_consistent(ref[s], sp[s].consistent);
        cr_assert_eq(duet_eval(ref[s], all[s] + sp[s].hist, sp[s].n, ref_out[s], sp[s].n_want, &err), 0, "%s",
                     err.msg);
        /* the cache goes on like the reference's: one more token */
        cr_assert_eq(duet_eval(ref[s], all[s] + sp[s].hist + sp[s].n, 1, ref_next[s], 1, &err), 0, "%s", err.msg);
    }

    int total = 0, total_want = 0;
    for (int s = 0; s < n_seq; s++) total += sp[s].n, total_want += sp[s].n_want;
    int *who = malloc(sizeof(int) * (size_t)total);
    int32_t *bt = malloc(sizeof(int32_t) * (size_t)total);
    duet_seq **bs = malloc(sizeof(duet_seq *) * (size_t)total);
    uint8_t *want = malloc((size_t)total);
    float *out = malloc(sizeof(float) * (size_t)V * (size_t)(total_want ? total_want : 1));
    float *next = malloc(sizeof(float) * (size_t)V);
    cr_assert(who && bt && bs && want && out && next);

    for (order_kind o = 0; o < ORDER_COUNT; o++) {
        duet_seq *sq[MAX_SEQ];
        for (int s = 0; s < n_seq; s++) {
            cr_assert_eq(duet_seq_new(&sq[s], m, N_CTX, &err), 0, "%s", err.msg);
            if (sp[s].hist) cr_assert_eq(duet_eval(sq[s], all[s], sp[s].hist, NULL, 0, &err), 0, "%s", err.msg);
            duet_seq_set_decode_consistent(sq[s], sp[s].consistent);
        }
        cr_assert_eq(layout(o, sp, n_seq, who), total);
        int idx[MAX_SEQ] = {0};
        for (int i = 0; i < total; i++) {
            const int s = who[i];
            bt[i] = all[s][sp[s].hist + idx[s]];
            bs[i] = sq[s];
            want[i] = idx[s] >= sp[s].n - sp[s].n_want;
            idx[s]++;
        }
        duet_batch b = {.n_tokens = total, .tokens = bt, .seqs = bs, .want = want, .logits = out};
        cr_assert_eq(duet_eval_batch(m, &b, &err), 0, "%s", err.msg);
        int row = 0, seen[MAX_SEQ] = {0};
        for (int i = 0; i < total; i++) {
            const int s = who[i];
            if (want[i]) {
                const int k = seen[s]++; /* the k-th wanted row of s */
                cr_assert(!memcmp(out + (size_t)row * V, ref_out[s] + (size_t)k * V, sizeof(float) * (size_t)V),
                          "%s ubatch %d order %d: batch row %d (sequence %d%s, wanted row %d of %d) differs from "
                          "its solo duet_eval",
                          name, n_ubatch, (int)o, row, s, sp[s].consistent ? ", decode-consistent" : "", k,
                          sp[s].n_want);
                row++;
            }
        }
        cr_assert_eq(row, total_want);
        for (int s = 0; s < n_seq; s++) {
            cr_assert_eq(duet_seq_pos(sq[s]), sp[s].hist + sp[s].n);
            cr_assert(same_kv(sq[s], ref[s], sp[s].hist + sp[s].n), "%s ubatch %d order %d: sequence %d: K/V differ",
                      name, n_ubatch, (int)o, s);
            cr_assert_eq(duet_eval(sq[s], all[s] + sp[s].hist + sp[s].n, 1, next, 1, &err), 0, "%s", err.msg);
            cr_assert(!memcmp(next, ref_next[s], sizeof(float) * (size_t)V),
                      "%s ubatch %d order %d: sequence %d: the next token's logits differ", name, n_ubatch, (int)o, s);
            duet_seq_free(sq[s]);
        }
    }
    free(who), free(bt), free(bs), free(want), free(out), free(next);
    for (int s = 0; s < n_seq; s++) {
        free(all[s]), free(ref_out[s]), free(ref_next[s]);
        duet_seq_free(ref[s]);
    }
    duet_model_free(m);
}

/* prompts of 13, 29 and 7 tokens, a default-mode sequence continuing with 9
 * tokens after 20, decode-consistent blocks of 1, 3 and 5 tokens */
static const seq_spec MIXED[] = {
    {.hist = 0, .n = 13, .n_want = 1, .consistent = 0},
    {.hist = 17, .n = 3, .n_want = 3, .consistent = 1},
    {.hist = 0, .n = 29, .n_want = 29, .consistent = 0},
    {.hist = 31, .n = 1, .n_want = 1, .consistent = 1},
    {.hist = 0, .n = 7, .n_want = 0, .consistent = 0},
    {.hist = 20, .n = 9, .n_want = 4, .consistent = 0},
    {.hist = 12, .n = 5, .n_want = 5, .consistent = 1},
};
#define N_MIXED ((int)(sizeof MIXED / sizeof *MIXED))

/* default-mode sequences only: no decode-consistent row, still each its own
 * pass */
static const seq_spec PROMPTS[] = {
    {.hist = 0, .n = 7, .n_want = 7, .consistent = 0},
    {.hist = 0, .n = 29, .n_want = 1, .consistent = 0},
    {.hist = 10, .n = 13, .n_want = 13, .consistent = 0},
};

/* decode-consistent only, with one prompt wanting nothing */
static const seq_spec CONSISTENT[] = {
    {.hist = 9, .n = 4, .n_want = 4, .consistent = 1},
    {.hist = 0, .n = 11, .n_want = 0, .consistent = 0},
    {.hist = 25, .n = 2, .n_want = 1, .consistent = 1},
    {.hist = 3, .n = 5, .n_want = 5, .consistent = 1},
};

static void all_cases(const char *name) {
    for (int ub = 0; ub < 2; ub++) {
        const int n_ubatch = ub ? 8 : 0;
        check_case(name, n_ubatch, MIXED, N_MIXED);
        check_case(name, n_ubatch, PROMPTS, 3);
        check_case(name, n_ubatch, CONSISTENT, 4);
    }
}

Test(batch_rows, llama_f32) { all_cases("llama-a-F32"); }
Test(batch_rows, llama_q4_k_m) { all_cases("llama-a-Q4_K_M"); }
Test(batch_rows, qwen2_f16) { all_cases("qwen2-b-F16"); }
Test(batch_rows, qwen2_q8_0) { all_cases("qwen2-b-Q8_0"); }

/* A single sequence in a batch is exactly duet_eval, wanted rows anywhere
 * in the block being the same pass (a batch holding only its tokens). */
Test(batch_rows, one_sequence_batch_equals_duet_eval) {
    duet_model *m = load("llama-a-Q4_K_M", 1, 0);
    const int V = duet_model_n_vocab(m);
    duet_err err = {0};
    int32_t t[24];
    tokens(t, 24, 5, V);
    duet_seq *a, *b;
    cr_assert_eq(duet_seq_new(&a, m, 32, &err) | duet_seq_new(&b, m, 32, &err), 0, "%s", err.msg);
    float *x = malloc(sizeof(float) * (size_t)V * 24), *y = malloc(sizeof(float) * (size_t)V * 24);
    cr_assert(x && y);
    cr_assert_eq(duet_eval(a, t, 24, x, 24, &err), 0, "%s", err.msg);
    duet_seq *who[24];
    uint8_t want[24];
    for (int i = 0; i < 24; i++) who[i] = b, want[i] = 1;
    duet_batch bb = {.n_tokens = 24, .tokens = t, .seqs = who, .want = want, .logits = y};
    cr_assert_eq(duet_eval_batch(m, &bb, &err), 0, "%s", err.msg);
    cr_assert(!memcmp(x, y, sizeof(float) * (size_t)V * 24));
    cr_assert(same_kv(a, b, 24));
    free(x), free(y);
    duet_seq_free(a), duet_seq_free(b);
    duet_model_free(m);
}

/* Validation happens before anything changes: a batch whose last token does
 * not fit its sequence's context leaves every sequence (and the output)
 * untouched, whatever the modes. */
Test(batch_rows, errors_change_nothing) {
    duet_model *m = load("llama-a-F32", 1, 8);
    const int V = duet_model_n_vocab(m);
    duet_err err = {0};
    duet_seq *a, *c, *small;
    cr_assert_eq(duet_seq_new(&a, m, 64, &err) | duet_seq_new(&c, m, 64, &err) | duet_seq_new(&small, m, 4, &err), 0);
    duet_seq_set_decode_consistent(c, 1);
    int32_t t[16];
    tokens(t, 16, 7, V);
    duet_seq *who[16];
    uint8_t want[16];
    for (int i = 0; i < 16; i++) who[i] = i % 3 == 0 ? a : i % 3 == 1 ? c : small, want[i] = 1;
    float *out = malloc(sizeof(float) * (size_t)V * 16);
    cr_assert(out);
    for (int i = 0; i < 16 * V; i++) out[i] = -7.0f;
    duet_batch b = {.n_tokens = 16, .tokens = t, .seqs = who, .want = want, .logits = out};
    cr_assert_eq(duet_eval_batch(m, &b, &err), DUET_ERANGE); /* small gets 5 tokens in 4 positions */
    cr_assert_eq(duet_seq_pos(a) + duet_seq_pos(c) + duet_seq_pos(small), 0);
    for (int i = 0; i < 16 * V; i++) cr_assert_eq(out[i], -7.0f, "output written at %d", i);
    who[14] = a; /* the sizes now fit, but a token id is out of range */
    const int32_t keep = t[13];
    t[13] = V;
    cr_assert_eq(duet_eval_batch(m, &b, &err), DUET_ERANGE);
    cr_assert_eq(duet_seq_pos(a) + duet_seq_pos(c) + duet_seq_pos(small), 0);
    t[13] = keep;
    cr_assert_eq(duet_eval_batch(m, &b, &err), 0, "%s", err.msg);
    cr_assert_eq(duet_seq_pos(a), 7);
    cr_assert_eq(duet_seq_pos(c), 5);
    cr_assert_eq(duet_seq_pos(small), 4);
    free(out);
    duet_seq_free(a), duet_seq_free(c), duet_seq_free(small);
    duet_model_free(m);
}

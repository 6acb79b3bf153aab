/* Sequences as the collaboration mechanisms use them: rollback to any
 * position and re-evaluate, copy a sequence, evaluate blocks of several
 * sequences in one pass; and determinism across thread counts. The reference
 * for each is a fresh single-sequence run of the same tokens. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/model.h"
#include "testutil.h"

#define N 48

static void prompt_of(const char *family, int32_t *tok) {
    char rel[128], buf[512];
    snprintf(rel, sizeof rel, "ref-models/%s.prompt.txt", family);
    FILE *f = fopen(tu_data(rel, buf, sizeof buf), "r");
    cr_assert(f);
    for (int i = 0; i < N; i++) cr_assert_eq(fscanf(f, "%d", &tok[i]), 1);
    fclose(f);
}

static duet_model *load(const char *name, int n_threads) {
    char rel[128], buf[512];
    snprintf(rel, sizeof rel, "ref-models/%s.gguf", name);
    duet_model_params p = duet_model_default_params();
    p.n_threads = n_threads;
    duet_model *m = NULL;
    duet_err err = {0};
    cr_assert_eq(duet_model_load(&m, tu_data(rel, buf, sizeof buf), &p, &err), 0, "%s", err.msg);
    return m;
}

static duet_seq *seq(duet_model *m, int n_ctx) {
    duet_seq *s = NULL;
    duet_err err = {0};
    cr_assert_eq(duet_seq_new(&s, m, n_ctx, &err), 0, "%s", err.msg);
    return s;
}

static void eval(duet_seq *s, const int32_t *tok, int n, float *logits, int n_logits) {
    duet_err err = {0};
    cr_assert_eq(duet_eval(s, tok, n, logits, n_logits, &err), 0, "%s", err.msg);
}

static double max_diff(const float *a, const float *b, size_t n) {
    double mx = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - (double)b[i]);
        mx = d > mx ? d : mx;
    }
    return mx;
}

static void rollback_case(const char *name) {
    duet_model *m = load(name, 1);
    const int V = duet_model_n_vocab(m);
    int32_t tok[N], other[N];
    prompt_of(strncmp(name, "llama", 5) ? "qwen2-b" : "llama-a", tok);
    for (int i = 0; i < N; i++) other[i] = (tok[i] * 7 + 3) % V;
    float *fresh = malloc((size_t)N * V * sizeof(float)), *re = malloc((size_t)N * V * sizeof(float));
    float *again = malloc((size_t)N * V * sizeof(float));
    duet_seq *f = seq(m, 64), *s = seq(m, 64);
    eval(f, tok, N, fresh, N);

    /* eval 48, roll back to 20, re-eval the rest */
    eval(s, tok, N, NULL, 0);
    cr_assert_eq(duet_rollback(s, 20), 0);
    cr_assert_eq(duet_seq_pos(s), 20);
    eval(s, tok + 20, N - 20, re, N - 20);
    const double d = max_diff(re, fresh + (size_t)20 * V, (size_t)(N - 20) * V);
    cr_log_info("%-14s rollback to 20 + re-eval vs fresh: max |diff| %.3g%s", name, d, d == 0 ? " (bit-identical)" : "");
    cr_expect(d <= 1e-4, "%s: re-evaluated logits differ from a fresh run by %.3g", name, d);

    /* stale cache contents never leak: overwrite positions 20.. with other
     * tokens, roll back, and the original continuation comes back exactly */
    cr_assert_eq(duet_rollback(s, 20), 0);
    eval(s, other + 20, N - 20, NULL, 0);
    cr_assert_eq(duet_rollback(s, 20), 0);
    eval(s, tok + 20, N - 20, again, N - 20);
    cr_expect(!memcmp(again, re, (size_t)(N - 20) * V * sizeof(float)), "%s: rollback left stale state", name);

    /* back to 0 and the whole prompt again: the identical computation */
    cr_assert_eq(duet_rollback(s, 0), 0);
    eval(s, tok, N, again, N);
    cr_expect(!memcmp(again, fresh, (size_t)N * V * sizeof(float)), "%s: rollback to 0 + eval differs from fresh", name);

    cr_expect_eq(duet_rollback(s, N + 1), DUET_ERANGE);
    cr_expect_eq(duet_rollback(s, -1), DUET_ERANGE);
    cr_expect_eq(duet_seq_pos(s), N);
    cr_expect_eq(duet_rollback(s, N), 0);
    free(fresh);
    free(re);
    free(again);
    duet_seq_free(f);
    duet_seq_free(s);
    duet_model_free(m);
}

Test(kv, rollback_then_reeval_matches_fresh_run) {
    rollback_case("llama-a-F32");
    rollback_case("qwen2-b-F16");
    rollback_case("llama-a-Q4_K_M");
    rollback_case("qwen2-b-Q8_0");
}

Test(kv, seq_copy_continues_like_the_original) {
    duet_model *m = load("qwen2-b-F32", 1), *other = load("llama-a-F32", 1);
    const int V = duet_model_n_vocab(m);
    int32_t tok[N];
    prompt_of("qwen2-b", tok);
    float *fresh = malloc((size_t)N * V * sizeof(float));
    float *a = malloc((size_t)N * V * sizeof(float)), *b = malloc((size_t)N * V * sizeof(float));
    duet_seq *f = seq(m, N), *s1 = seq(m, N), *s2 = seq(m, 40), *small = seq(m, 16), *foreign = seq(other, N);
    eval(f, tok, N, fresh, N);
    eval(s1, tok, 30, NULL, 0);
    duet_err err = {0};
    cr_assert_eq(duet_seq_copy(s2, s1, &err), 0, "%s", err.msg);
    cr_assert_eq(duet_seq_pos(s2), 30);
    /* the copy is independent: the original moves on, the copy is untouched */
    eval(s1, tok + 30, N - 30, a, N - 30);
    cr_assert_eq(duet_seq_pos(s2), 30);
    eval(s2, tok + 30, 10, b, 10);
    cr_expect(!memcmp(a, b, (size_t)10 * V * sizeof(float)), "the copy does not continue like the original");
    const double d = max_diff(b, fresh + (size_t)30 * V, (size_t)10 * V);
    cr_log_info("seq copy at 30 + 10 tokens vs fresh run: max |diff| %.3g", d);
    cr_expect(d <= 1e-4);

    cr_expect_eq(duet_seq_copy(small, s1, &err), DUET_ERANGE);
    cr_expect(strstr(err.msg, "room") != NULL, "message: %s", err.msg);
    cr_expect_eq(duet_seq_copy(foreign, s1, &err), DUET_EINVAL);
    cr_expect_eq(duet_seq_pos(small), 0);
    free(fresh);
    free(a);
    free(b);
    duet_seq_free(f);
    duet_seq_free(s1);
    duet_seq_free(s2);
    duet_seq_free(small);
    duet_seq_free(foreign);
    duet_model_free(m);
    duet_model_free(other);
}

/* Two sequences in one pass: tokens interleaved A0 B0 A1 B1 ..., then a
 * ragged block (3 of A, 1 of B); each sequence's logits must be those of
 * evaluating it alone, up to what a different GEMM shape may change: the
 * type's batched-vs-one-by-one noise in llama.cpp (README). */
static void multi_seq_case(const char *name, double noise) {
    duet_model *m = load(name, 2);
    const int V = duet_model_n_vocab(m);
    int32_t ta[N], tb[N];
    prompt_of(strncmp(name, "llama", 5) ? "qwen2-b" : "llama-a", ta);
    for (int i = 0; i < N; i++) tb[i] = ta[N - 1 - i];
    const int n1 = 20;
    float *ra = malloc((size_t)N * V * sizeof(float)), *rb = malloc((size_t)N * V * sizeof(float));
    duet_seq *sa = seq(m, 64), *sb = seq(m, 64);
    eval(sa, ta, n1 + 3, ra, n1 + 3);
    eval(sb, tb, n1 + 1, rb, n1 + 1);

    duet_seq *a = seq(m, 64), *b = seq(m, 64);
    int32_t tok[2 * N];
    duet_seq *who[2 * N];
    uint8_t want[2 * N];
    for (int i = 0; i < n1; i++) {
        tok[2 * i] = ta[i], who[2 * i] = a;
        tok[2 * i + 1] = tb[i], who[2 * i + 1] = b;
        want[2 * i] = want[2 * i + 1] = 1;
    }
    float *out = malloc((size_t)2 * N * V * sizeof(float));
    duet_batch batch = {.n_tokens = 2 * n1, .tokens = tok, .seqs = who, .want = want, .logits = out};
    duet_err err = {0};
    cr_assert_eq(duet_eval_batch(m, &batch, &err), 0, "%s", err.msg);
    cr_assert_eq(duet_seq_pos(a), n1);
    cr_assert_eq(duet_seq_pos(b), n1);
    double d = 0;
    for (int i = 0; i < n1; i++) {
        double da = max_diff(out + (size_t)(2 * i) * V, ra + (size_t)i * V, V);
        double db = max_diff(out + (size_t)(2 * i + 1) * V, rb + (size_t)i * V, V);
        d = fmax(d, fmax(da, db));
    }
    /* ragged: A gets 3 tokens (only the last wanted), B one token (wanted) */
    int32_t t2[4] = {ta[n1], tb[n1], ta[n1 + 1], ta[n1 + 2]};
    duet_seq *w2[4] = {a, b, a, a};
    uint8_t want2[4] = {0, 1, 0, 1};
    duet_batch b2 = {.n_tokens = 4, .tokens = t2, .seqs = w2, .want = want2, .logits = out};
    cr_assert_eq(duet_eval_batch(m, &b2, &err), 0, "%s", err.msg);
    cr_assert_eq(duet_seq_pos(a), n1 + 3);
    cr_assert_eq(duet_seq_pos(b), n1 + 1);
    d = fmax(d, max_diff(out, rb + (size_t)n1 * V, V));
    d = fmax(d, max_diff(out + V, ra + (size_t)(n1 + 2) * V, V));
    cr_log_info("%-14s two sequences in one batch vs each alone: max |diff| %.3g", name, d);
    cr_expect(d <= noise, "%s: batched sequences differ from separate runs by %.3g", name, d);
    free(ra);
    free(rb);
    free(out);
    duet_seq_free(sa);
    duet_seq_free(sb);
    duet_seq_free(a);
    duet_seq_free(b);
    duet_model_free(m);
}

Test(kv, several_sequences_in_one_batch) {
    multi_seq_case("llama-a-F32", 0.0135);
    multi_seq_case("qwen2-b-F16", 0.0147);
    multi_seq_case("qwen2-b-Q4_K_M", 0.482);
}

Test(kv, results_do_not_depend_on_thread_count) {
    const char *names[] = {"llama-a-F32", "qwen2-b-Q4_K_M", "llama-a-Q4_0"};
    for (int k = 0; k < 3; k++) {
        duet_model *m1 = load(names[k], 1), *m3 = load(names[k], 3);
        const int V = duet_model_n_vocab(m1);
        int32_t tok[N];
        prompt_of(k == 1 ? "qwen2-b" : "llama-a", tok);
        float *a = malloc((size_t)N * V * sizeof(float)), *b = malloc((size_t)N * V * sizeof(float));
        duet_seq *s1 = seq(m1, N), *s3 = seq(m3, N);
        eval(s1, tok, N, a, N);
        eval(s3, tok, N, b, N);
        cr_expect(!memcmp(a, b, (size_t)N * V * sizeof(float)), "%s: 1 and 3 threads differ", names[k]);
        free(a);
        free(b);
        duet_seq_free(s1);
        duet_seq_free(s3);
        duet_model_free(m1);
        duet_model_free(m3);
    }
}

/* A block longer than the micro-batch is split like llama.cpp's n_ubatch;
 * positions and caches carry across the pieces. */
Test(kv, blocks_longer_than_a_micro_batch) {
    char buf[512];
    duet_model_params p = duet_model_default_params();
    p.n_threads = 1;
    p.n_ubatch = 16;
    duet_model *small = NULL, *big = load("llama-a-F32", 1);
    duet_err err = {0};
    cr_assert_eq(duet_model_load(&small, tu_data("ref-models/llama-a-F32.gguf", buf, sizeof buf), &p, &err), 0);
    const int V = duet_model_n_vocab(big);
    int32_t tok[N];
    prompt_of("llama-a", tok);
    float *a = malloc((size_t)N * V * sizeof(float)), *b = malloc((size_t)N * V * sizeof(float));
    duet_seq *s1 = seq(small, N), *s2 = seq(big, N);
    eval(s1, tok, N, a, 5); /* three micro-batches, logits of the last 5 tokens */
    for (int i = 0; i < 2; i++) eval(s2, tok + 16 * i, 16, NULL, 0);
    eval(s2, tok + 32, 16, b, 5);
    cr_expect(!memcmp(a, b, (size_t)5 * V * sizeof(float)));
    cr_expect_eq(duet_seq_pos(s1), N);
    free(a);
    free(b);
    duet_seq_free(s1);
    duet_seq_free(s2);
    duet_model_free(small);
    duet_model_free(big);
}

/* KV memory: each sequence's cache is n_layer * n_ctx * 2 * kv_dim elements
 * (+ 64 of padding after V), of 2 bytes for an F16 cache and 4 for F32; the
 * model's total is the sum over its live sequences, back down after frees,
 * also when sequences come and go on several threads at once. */

static size_t kv_formula(const duet_model *m, int n_ctx, size_t elt) {
    const duet_hparams *hp = duet_model_hparams(m);
    return ((size_t)hp->n_layer * (size_t)n_ctx * 2 * (size_t)hp->n_head_kv * (size_t)hp->head_dim + 64) * elt;
}

typedef struct {
    duet_model *m;
    int base_ctx;
    int fails;
} kv_thread;

static void *kv_churn(void *arg) {
    kv_thread *t = arg;
    for (int it = 0; it < 200; it++) {
        duet_seq *s[3] = {0};
        duet_err err = {0};
        for (int k = 0; k < 3; k++)
            if (duet_seq_new(&s[k], t->m, t->base_ctx + k, &err)) t->fails++;
        for (int k = 0; k < 3; k++) duet_seq_free(s[k]);
    }
    return NULL;
}

Test(kv, kv_bytes_per_sequence_and_total) {
    for (int kt = 0; kt < 2; kt++) {
        char buf[512];
        duet_model_params p = duet_model_default_params();
        p.n_threads = 1;
        p.kv_type = kt ? DUET_KV_F32 : DUET_KV_F16;
        const size_t elt = kt ? 4 : 2;
        duet_model *m = NULL;
        duet_err err = {0};
        cr_assert_eq(duet_model_load(&m, tu_data("ref-models/qwen2-b-Q4_0.gguf", buf, sizeof buf), &p, &err), 0);
        cr_assert_eq(duet_model_kv_bytes(m), 0);
        cr_assert_eq(duet_model_kv_bytes(NULL), 0);
        cr_assert_eq(duet_seq_kv_bytes(NULL), 0);
        const int ctx[] = {1, 64, 100, 0}; /* 0: n_ctx_train */
        duet_seq *s[4];
        size_t sum = 0;
        for (int i = 0; i < 4; i++) {
            s[i] = seq(m, ctx[i]);
            const int n_ctx = ctx[i] ? ctx[i] : duet_model_hparams(m)->n_ctx_train;
            cr_assert_eq(duet_seq_n_ctx(s[i]), n_ctx);
            cr_assert_eq(duet_seq_kv_bytes(s[i]), kv_formula(m, n_ctx, elt), "kv %d, n_ctx %d: %zu bytes", kt, n_ctx,
                         duet_seq_kv_bytes(s[i]));
            sum += duet_seq_kv_bytes(s[i]);
            cr_assert_eq(duet_model_kv_bytes(m), sum);
        }
        /* evaluating, rolling back and copying allocate nothing more */
        int32_t tok[8] = {5, 6, 7, 8, 9, 10, 11, 12};
        eval(s[1], tok, 8, NULL, 0);
        cr_assert_eq(duet_seq_copy(s[2], s[1], &err), 0, "%s", err.msg);
        cr_assert_eq(duet_rollback(s[1], 2), 0);
        cr_assert_eq(duet_seq_kv_bytes(s[1]), kv_formula(m, 64, elt));
        cr_assert_eq(duet_model_kv_bytes(m), sum);
        for (int i = 3; i >= 0; i--) {
            sum -= duet_seq_kv_bytes(s[i]);
            duet_seq_free(s[i]);
            cr_assert_eq(duet_model_kv_bytes(m), sum);
        }
        cr_assert_eq(sum, 0);

        /* several threads creating and freeing at once */
        duet_seq *keep = seq(m, 32);
        kv_thread th[4];
        pthread_t id[4];
        for (int i = 0; i < 4; i++) {
            th[i] = (kv_thread){.m = m, .base_ctx = 8 + 4 * i};
            cr_assert_eq(pthread_create(&id[i], NULL, kv_churn, &th[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(id[i], NULL);
            cr_assert_eq(th[i].fails, 0);
        }
        cr_assert_eq(duet_model_kv_bytes(m), kv_formula(m, 32, elt));
        duet_seq_free(keep);
        cr_assert_eq(duet_model_kv_bytes(m), 0);
        duet_model_free(m);
    }
}

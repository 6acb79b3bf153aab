/* A sequence's logits depend only on its tokens and their positions, never on
 * the context size it was created with (duet_seq_new's n_ctx): the same
 * prompt evaluated in sequences of n_ctx = the prompt's length exactly, a few
 * odd sizes that are not multiples of 32 (the one-token attention's cache
 * view is padded to 32 positions; the smallest ones hold only the start of
 * the prompt, exactly), 256 and 512 must give bit-identical logits, in the
 * default mode and in the decode-consistent mode, whether the prompt is
 * evaluated as one block or as a prefix block followed by one token at a time
 * (the one-token arithmetic of the default mode), and when the sequences
 * share a duet_eval_batch. On the shipped F16 model (llm) and the small one
 * (slm). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/model.h"
#include "duet/tok.h"
#include "testutil.h"

#define LLM DUET_SRC_DIR "/models/llm.gguf"
#define SLM DUET_SRC_DIR "/models/slm.gguf"

#define N_PROMPT 120 /* tokens of the prompt */
#define N_PREFIX 20  /* the first block of the split evaluation */

/* odd sizes (not multiples of 32) holding the start of the prompt exactly,
 * exactly the prompt, odd sizes, 256, 512; the last is the reference. A
 * sanitized build (10-50x slower) checks fewer sizes, and the fixed ids only. */
#if SANITIZED
static const int CTX[] = {59, N_PROMPT, N_PROMPT + 3, 256, 512};
#define N_KINDS 1
#else
static const int CTX[] = {59, 62, 101, N_PROMPT, N_PROMPT + 1, N_PROMPT + 3, 127, 131, 149, 256, 512};
#define N_KINDS 2
#endif
#define N_CTX_SIZES ((int)(sizeof CTX / sizeof CTX[0]))

/* The first N_PROMPT tokens of the TinyStories validation text (kind 0), or
 * fixed ids (kind 1: on real text slm's attention is so peaked that some
 * summation orders happen to round alike). */
static void prompt(duet_model *m, int kind, int32_t *tok) {
    if (kind) {
        for (int i = 0; i < N_PROMPT; i++) tok[i] = 3 + (int32_t)((i * 37 + 101) % 500);
        return;
    }
    char buf[512];
    size_t len = 0;
    char *text = tu_slurp(tu_data("tinystories/valid.txt", buf, sizeof buf), &len);
    cr_assert(text, "cannot read tinystories/valid.txt");
    if (len > 4096) len = 4096;
    duet_vocab *v = NULL;
    duet_err err = {0};
    cr_assert_eq(duet_vocab_load(&v, duet_model_gguf(m), &err), 0, "%s", err.msg);
    int32_t *ids = NULL;
    const int n = duet_tokenize_alloc(v, text, len, 0, &ids);
    cr_assert_geq(n, N_PROMPT, "the text gives %d tokens", n);
    memcpy(tok, ids, sizeof(int32_t) * N_PROMPT);
    free(ids);
    duet_vocab_free(v);
    free(text);
}

/* The prompt tokens a sequence of n_ctx positions evaluates. */
static int n_eval(int n_ctx) { return n_ctx < N_PROMPT ? n_ctx : N_PROMPT; }

/* Logits of the first n_eval(n_ctx) prompt tokens (n, nv) in a fresh
 * sequence of n_ctx positions: one block (split == 0), or a block of
 * N_PREFIX tokens then one token at a time. */
static void run(duet_model *m, const int32_t *tok, int n_ctx, int consistent, int split, float *logits) {
    const int n = n_eval(n_ctx);
    const size_t nv = (size_t)duet_model_n_vocab(m);
    duet_seq *s = NULL;
    duet_err err = {0};
    cr_assert_eq(duet_seq_new(&s, m, n_ctx, &err), 0, "%s", err.msg);
    cr_assert_eq(duet_seq_set_decode_consistent(s, consistent), 0);
    if (!split) {
        cr_assert_eq(duet_eval(s, tok, n, logits, n, &err), 0, "%s", err.msg);
    } else {
        cr_assert_eq(duet_eval(s, tok, N_PREFIX, logits, N_PREFIX, &err), 0, "%s", err.msg);
        for (int i = N_PREFIX; i < n; i++)
            cr_assert_eq(duet_eval(s, tok + i, 1, logits + (size_t)i * nv, 1, &err), 0, "%s", err.msg);
    }
    cr_assert_eq(duet_seq_pos(s), n);
    duet_seq_free(s);
}

/* The first of positions [0, n) whose logits differ, or -1. */
static int first_diff(const float *a, const float *b, int n, size_t nv) {
    for (int i = 0; i < n; i++)
        if (memcmp(a + (size_t)i * nv, b + (size_t)i * nv, sizeof(float) * nv)) return i;
    return -1;
}

static void check_model(const char *path) {
    duet_model *m = tu_load_path(path);
    const size_t nv = (size_t)duet_model_n_vocab(m);
    int32_t tok[N_PROMPT];
    float *ref = malloc(sizeof(float) * nv * N_PROMPT), *got = malloc(sizeof(float) * nv * N_PROMPT);
    cr_assert(ref && got);
    for (int kind = 2 - N_KINDS; kind <= 1; kind++) {
        prompt(m, kind, tok);
        for (int v = 0; v < 4; v++) { /* the mode, and one block or split */
            const int consistent = v >> 1, split = v & 1;
            run(m, tok, CTX[N_CTX_SIZES - 1], consistent, split, ref);
            for (int c = 0; c < N_CTX_SIZES - 1; c++) {
                run(m, tok, CTX[c], consistent, split, got);
                const int at = first_diff(ref, got, n_eval(CTX[c]), nv);
                cr_expect_eq(at, -1, "%s, %s, %s mode, %s: n_ctx %d and %d give different logits from position %d on",
                             path, kind ? "fixed ids" : "text", consistent ? "decode-consistent" : "default",
                             split ? "prefix then one token at a time" : "one block", CTX[c], CTX[N_CTX_SIZES - 1], at);
            }
        }
    }
    free(ref);
    free(got);
    duet_model_free(m);
}

/* Sequences of every size decoded together in duet_eval_batch (each row is
 * its sequence alone, model.h), in both modes: every row equals the
 * reference sequence's one-token eval. */
static void check_batch(const char *path, int kind) {
    duet_model *m = tu_load_path(path);
    const size_t nv = (size_t)duet_model_n_vocab(m);
    int32_t tok[N_PROMPT];
    prompt(m, kind, tok);
    duet_err err = {0};
    duet_seq *s[N_CTX_SIZES];
    for (int c = 0; c < N_CTX_SIZES; c++) {
        cr_assert_eq(duet_seq_new(&s[c], m, CTX[c], &err), 0, "%s", err.msg);
        cr_assert_eq(duet_seq_set_decode_consistent(s[c], c & 1), 0); /* the modes interleaved */
        cr_assert_eq(duet_eval(s[c], tok, N_PREFIX, NULL, 0, &err), 0, "%s", err.msg);
    }
    float *ref = malloc(sizeof(float) * nv * 2), *rows = malloc(sizeof(float) * nv * N_CTX_SIZES);
    cr_assert(ref && rows);
    /* references: one-token evals in a 512 sequence of each mode */
    duet_seq *r[2];
    for (int mode = 0; mode < 2; mode++) {
        cr_assert_eq(duet_seq_new(&r[mode], m, 512, &err), 0, "%s", err.msg);
        cr_assert_eq(duet_seq_set_decode_consistent(r[mode], mode), 0);
        cr_assert_eq(duet_eval(r[mode], tok, N_PREFIX, NULL, 0, &err), 0, "%s", err.msg);
    }
    int32_t btok[N_CTX_SIZES];
    uint8_t want[N_CTX_SIZES];
    duet_seq *bseq[N_CTX_SIZES];
    int bctx[N_CTX_SIZES];
    for (int i = N_PREFIX; i < N_PROMPT; i++) {
        for (int mode = 0; mode < 2; mode++)
            cr_assert_eq(duet_eval(r[mode], tok + i, 1, ref + (size_t)mode * nv, 1, &err), 0, "%s", err.msg);
        int nb = 0; /* the sequences with room for position i */
        for (int c = 0; c < N_CTX_SIZES; c++)
            if (CTX[c] > i) btok[nb] = tok[i], want[nb] = 1, bseq[nb] = s[c], bctx[nb++] = c;
        const duet_batch b = {.n_tokens = nb, .tokens = btok, .seqs = bseq, .want = want, .logits = rows};
        cr_assert_eq(duet_eval_batch(m, &b, &err), 0, "%s", err.msg);
        for (int k = 0; k < nb; k++) {
            const int c = bctx[k];
            cr_assert(!memcmp(rows + (size_t)k * nv, ref + (size_t)(c & 1) * nv, sizeof(float) * nv),
                      "%s, %s: batch row of n_ctx %d (%s mode) at position %d differs from the n_ctx 512 sequence",
                      path, kind ? "fixed ids" : "text", CTX[c], c & 1 ? "decode-consistent" : "default", i);
        }
    }
    for (int c = 0; c < N_CTX_SIZES; c++) duet_seq_free(s[c]);
    duet_seq_free(r[0]);
    duet_seq_free(r[1]);
    free(ref);
    free(rows);
    duet_model_free(m);
}

Test(ctx_invariance, slm) { check_model(SLM); }
Test(ctx_invariance, llm) { check_model(LLM); }
Test(ctx_invariance, batch_slm) {
    for (int kind = 2 - N_KINDS; kind <= 1; kind++) check_batch(SLM, kind);
}
Test(ctx_invariance, batch_llm) {
    for (int kind = 2 - N_KINDS; kind <= 1; kind++) check_batch(LLM, kind);
}

/* Tokenizers against the reference ids of /work/shared/data/vocab (llama.cpp's
 * test-tokenizer-0 cases and the larger fuzz sets, both computed by peer
 * implementations: no BOS, special tokens not parsed), plus the detokenize
 * round trip and the vocabulary metadata the README documents. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/tok.h"
#include "testutil.h"

static duet_vocab *load(const char *name) {
    char rel[256], path[1024];
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", name);
    duet_err err = {0};
    duet_vocab *v = NULL;
    int rc = duet_vocab_load_file(&v, tu_data(rel, path, sizeof path), &err);
    cr_assert_eq(rc, 0, "%s: %s", name, err.msg);
    return v;
}

/* Runs every case of NAME.SET.inp/.out; returns the number of cases, counts
 * id mismatches and round-trip failures (printing the first few of each). */
static int run_cases(const duet_vocab *v, const char *name, const char *set, int *mismatch, int *rt_fail) {
    char rel[256], path[1024];
    size_t n_in = 0, n_out = 0;
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.%s.inp", name, set);
    char *inp = tu_slurp(tu_data(rel, path, sizeof path), &n_in);
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.%s.out", name, set);
    char *out = tu_slurp(tu_data(rel, path, sizeof path), &n_out);
    cr_assert(inp && out, "cannot read the %s.%s fixtures", name, set);
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t sep_len = strlen(sep);
    int cases = 0;
    char *ci = inp, *co = out;
    *mismatch = *rt_fail = 0;
    while (ci < inp + n_in) {
        char *end = strstr(ci, sep);
        cr_assert(end, "%s.%s.inp: case %d has no separator", name, set, cases);
        size_t len = (size_t)(end - ci);
        char *eol = strchr(co, '\n');
        cr_assert(eol, "%s.%s.out: fewer lines than cases", name, set);
        /* expected ids: " id id id" */
        int n_exp = 0, cap_exp = 64;
        int32_t *exp = malloc(sizeof *exp * (size_t)cap_exp);
        for (char *q = co; q < eol;) {
            char *e;
            long x = strtol(q, &e, 10);
            if (e == q || e > eol) break;
            if (n_exp == cap_exp) exp = realloc(exp, sizeof *exp * (size_t)(cap_exp *= 2));
            exp[n_exp++] = (int32_t)x;
            q = e;
        }
        int32_t *ids = NULL;
        int n = duet_tokenize_alloc(v, ci, len, 0, &ids);
        cr_assert_geq(n, 0);
        if (n != n_exp || memcmp(ids, exp, sizeof *ids * (size_t)n)) {
            if (++*mismatch <= 5) {
                fprintf(stderr, "%s.%s case %d mismatch: \"%.*s\"\n  got:", name, set, cases, (int)(len > 60 ? 60 : len), ci);
                for (int i = 0; i < n && i < 24; i++) fprintf(stderr, " %d", ids[i]);
                fprintf(stderr, "\n  exp:");
                for (int i = 0; i < n_exp && i < 24; i++) fprintf(stderr, " %d", exp[i]);
                fprintf(stderr, "\n");
            }
        }
        /* lossless: byte-level BPE always; SPM once the leading space it adds is removed (default) */
        char *back = malloc(len + 1);
        int64_t m = duet_detokenize(v, exp, n_exp, back, len + 1, 0);
        if (m != (int64_t)len || memcmp(back, ci, len)) {
            if (++*rt_fail <= 5)
                fprintf(stderr, "%s.%s case %d: detokenize gives \"%.*s\" for \"%.*s\"\n", name, set, cases,
                        (int)(m > 60 || m < 0 ? 60 : m), back, (int)(len > 60 ? 60 : len), ci);
        }
        free(back);
        free(ids);
        free(exp);
        cases++;
        ci = end + sep_len;
        co = eol + 1;
    }
    free(inp);
    free(out);
    return cases;
}

static void check_vocab(const char *name) {
    duet_vocab *v = load(name);
    const char *sets[2] = {"gguf", "fuzz"};
    int total_mis = 0, total_rt = 0;
    for (int s = 0; s < 2; s++) {
        int mis, rt;
        int cases = run_cases(v, name, sets[s], &mis, &rt);
        fprintf(stderr, "%s.%s: %d cases, %d mismatches, %d round-trip failures\n", name, sets[s], cases, mis, rt);
        cr_expect_eq(cases, s == 0 ? 46 : 300, "%s.%s: %d cases", name, sets[s], cases);
        total_mis += mis;
        total_rt += rt;
    }
    cr_expect_eq(total_mis, 0, "%s: %d cases tokenize differently from the reference", name, total_mis);
    cr_expect_eq(total_rt, 0, "%s: %d cases do not detokenize to their text", name, total_rt);
    duet_vocab_free(v);
}

Test(tok_fixtures, llama_spm) { check_vocab("llama-spm"); }
Test(tok_fixtures, gpt_2) { check_vocab("gpt-2"); }
Test(tok_fixtures, llama_bpe) { check_vocab("llama-bpe"); }
Test(tok_fixtures, qwen2) { check_vocab("qwen2"); }

/* A long text (which takes the per-call piece cache and, for SPM, the word
 * split) gives exactly the ids of its chunks tokenized one by one, where the
 * chunks are cut before a space that separates two letters: a boundary of
 * every pre-tokenizer regex and of SPM's words. */
static void check_long_text(const char *name) {
    duet_vocab *v = load(name);
    char path[1024];
    size_t len = 0;
    char *text = tu_slurp(tu_data("tinystories/valid.txt", path, sizeof path), &len);
    cr_assert(text);
    if (len > 120000) len = 120000;
    int32_t *whole = NULL;
    int n_whole = duet_tokenize_alloc(v, text, len, 0, &whole);
    cr_assert_gt(n_whole, 0);
    int spm = duet_vocab_type(v) == DUET_VOCAB_SPM;
    int32_t *parts = malloc(sizeof *parts * (size_t)n_whole + 64);
    int n_parts = 0, chunks = 0;
    size_t start = 0;
    while (start < len) {
        size_t end = start + 400 < len ? start + 400 : len;
        while (end < len && !(text[end] == ' ' && end > 0 && text[end - 1] >= 'a' && text[end - 1] <= 'z' &&
                              end + 1 < len && text[end + 1] >= 'a' && text[end + 1] <= 'z'))
            end++;
        /* SPM adds its own leading space: drop the chunk's, so both see one U+2581 */
        size_t s = spm && start > 0 ? start + 1 : start;
        int32_t buf[2048];
        int n = duet_tokenize(v, text + s, end - s, buf, 2048, 0);
        cr_assert(n >= 0 && n <= 2048);
        cr_assert_leq(n_parts + n, n_whole, "%s: chunks give more tokens than the whole text", name);
        memcpy(parts + n_parts, buf, sizeof *buf * (size_t)n);
        n_parts += n;
        chunks++;
        start = end;
    }
    cr_expect_eq(n_parts, n_whole, "%s: %d tokens from %d chunks, %d from the whole text", name, n_parts, chunks, n_whole);
    int first_diff = -1;
    for (int i = 0; i < n_whole && i < n_parts; i++)
        if (parts[i] != whole[i]) {
            first_diff = i;
            break;
        }
    cr_expect_eq(first_diff, -1, "%s: first difference at token %d", name, first_diff);
    free(parts);
    free(whole);
    free(text);
    duet_vocab_free(v);
}

Test(tok_long_text, llama_spm) { check_long_text("llama-spm"); }
Test(tok_long_text, gpt_2) { check_long_text("gpt-2"); }
Test(tok_long_text, llama_bpe) { check_long_text("llama-bpe"); }
Test(tok_long_text, qwen2) { check_long_text("qwen2"); }

/* Metadata as documented in vocab/README.md. */
Test(tok_vocab, metadata_matches_readme) {
    duet_vocab *v = load("llama-spm");
    cr_expect_eq(duet_vocab_type(v), DUET_VOCAB_SPM);
    cr_expect_eq(duet_vocab_n(v), 32000);
    cr_expect_eq(duet_vocab_bos(v), 1);
    cr_expect_eq(duet_vocab_eos(v), 2);
    cr_expect_eq(duet_vocab_unk(v), 0);
    cr_expect(duet_vocab_add_bos(v));
    cr_expect(!duet_vocab_add_eos(v));
    cr_expect_eq(duet_vocab_token_type(v, 0), DUET_TOKEN_UNKNOWN);
    cr_expect_eq(duet_vocab_token_type(v, 1), DUET_TOKEN_CONTROL);
    cr_expect_eq(duet_vocab_token_type(v, 3), DUET_TOKEN_BYTE);
    cr_expect_eq(duet_vocab_token_type(v, 258), DUET_TOKEN_BYTE);
    cr_expect_eq(duet_vocab_token_type(v, 259), DUET_TOKEN_NORMAL);
    cr_expect_eq(duet_vocab_token_type(v, 32000), -1);
    cr_expect_str_eq(duet_vocab_text(v, 3, NULL), "<0x00>");
    cr_expect_eq(duet_vocab_score(v, 300), -(300.0f - 259.0f));
    cr_expect_eq(duet_vocab_find(v, "<0x41>", 6), 3 + 0x41);
    cr_expect(duet_vocab_is_eog(v, 2));
    cr_expect(!duet_vocab_is_eog(v, 1));
    cr_expect_null(duet_vocab_chat_template(v));
    cr_expect_str_eq(duet_vocab_pre(v), "");
    duet_vocab_free(v);

    v = load("gpt-2");
    cr_expect_eq(duet_vocab_type(v), DUET_VOCAB_BPE);
    cr_expect_str_eq(duet_vocab_pre(v), "gpt-2");
    cr_expect_eq(duet_vocab_n(v), 50257);
    cr_expect_eq(duet_vocab_bos(v), 50256);
    cr_expect_eq(duet_vocab_eos(v), 50256);
    cr_expect_eq(duet_vocab_token_type(v, 50256), DUET_TOKEN_CONTROL);
    duet_vocab_free(v);

    v = load("llama-bpe");
    cr_expect_str_eq(duet_vocab_pre(v), "llama-bpe");
    cr_expect_eq(duet_vocab_n(v), 128256);
    cr_expect_eq(duet_vocab_bos(v), 128000);
    cr_expect_eq(duet_vocab_eos(v), 128001);
    cr_expect(duet_vocab_add_bos(v));
    cr_expect_eq(duet_vocab_eot(v), duet_vocab_find(v, "<|eot_id|>", 10));
    cr_expect(duet_vocab_is_eog(v, duet_vocab_find(v, "<|eot_id|>", 10)));
    cr_expect_not_null(duet_vocab_chat_template(v));
    duet_vocab_free(v);

    v = load("qwen2");
    cr_expect_str_eq(duet_vocab_pre(v), "qwen2");
    cr_expect_eq(duet_vocab_n(v), 151669);
    cr_expect_eq(duet_vocab_bos(v), 151643);
    cr_expect_eq(duet_vocab_eos(v), 151645);
    cr_expect_eq(duet_vocab_pad(v), 151643);
    cr_expect(!duet_vocab_add_bos(v));
    int32_t think = duet_vocab_find(v, "<think>", 7);
    cr_expect_geq(think, 151643);
    cr_expect_eq(duet_vocab_token_type(v, think), DUET_TOKEN_USER_DEFINED);
    cr_expect(duet_vocab_is_eog(v, duet_vocab_find(v, "<|im_end|>", 10)));
    duet_vocab_free(v);
}

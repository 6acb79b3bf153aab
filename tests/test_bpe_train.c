/* BPE trainer: merges equal a brute-force recount of the most frequent pair
 * at every step; the written vocabulary is a llama.cpp "gpt2" vocabulary that
 * the tokenizer library loads and that round-trips text. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/bpe_train.h"
#include "duet/gguf.h"
#include "duet/tok.h"

/* Brute force: words as id lists; each step counts every adjacent pair
 * from scratch, takes the most frequent (ties: smallest (left, right)),
 * merges it left to right in every word. */
typedef struct { int32_t s[64]; int n; int count; } bword;

static int brute_step(bword *w, int nw, int32_t id, int32_t *l, int32_t *r) {
    static long cnt[512][512];
    memset(cnt, 0, sizeof cnt);
    for (int i = 0; i < nw; i++)
        for (int k = 0; k + 1 < w[i].n; k++) cnt[w[i].s[k]][w[i].s[k + 1]] += w[i].count;
    long best = 0;
    for (int a = 0; a < 512; a++)
        for (int b = 0; b < 512; b++)
            if (cnt[a][b] > best) { best = cnt[a][b]; *l = a; *r = b; }
    if (!best) return 0;
    for (int i = 0; i < nw; i++) {
        int o = 0;
        for (int k = 0; k < w[i].n; k++) {
            if (k + 1 < w[i].n && w[i].s[k] == *l && w[i].s[k + 1] == *r) { w[i].s[o++] = id; k++; }
            else w[i].s[o++] = w[i].s[k];
        }
        w[i].n = o;
    }
    return 1;
}

Test(bpe_train, merges_equal_brute_force_counts) {
    /* pieces with counts (as the pre-tokenizer would produce them) */
    static const struct { const char *p; int c; } corpus[] = {
        {"low", 5}, {" lower", 2}, {" newest", 6}, {" widest", 3}, {"aaaa", 4}, {" the", 7},
        {" then", 3}, {"abab", 2}, {" low", 4}, {"ststst", 1}, {"\n\n", 5}, {" ", 2}};
    const int nc = sizeof corpus / sizeof corpus[0];
    duet_bpe *b = duet_bpe_new();
    cr_assert(b);
    bword w[16];
    for (int i = 0; i < nc; i++) {
        cr_assert_eq(duet_bpe_add_piece(b, corpus[i].p, strlen(corpus[i].p), corpus[i].c, NULL), 0);
        w[i].n = (int)strlen(corpus[i].p);
        w[i].count = corpus[i].c;
        for (int k = 0; k < w[i].n; k++) w[i].s[k] = (unsigned char)corpus[i].p[k];
    }
    /* adding the same piece again only adds to its count */
    cr_assert_eq(duet_bpe_add_piece(b, "low", 3, 1, NULL), 0);
    w[0].count++;
    cr_assert_eq(duet_bpe_n_pieces(b), nc);
    cr_assert_eq(duet_bpe_learn(b, 200, NULL), 0);
    int steps = 0;
    int32_t l, r;
    while (brute_step(w, nc, 256 + steps, &l, &r)) {
        cr_assert_lt(steps, duet_bpe_n_merges(b), "trainer stopped early at %d", steps);
        int32_t tl, tr;
        duet_bpe_merge(b, steps, &tl, &tr);
        cr_assert(tl == l && tr == r, "merge %d: trainer (%d, %d), brute force (%d, %d)", steps, tl, tr, l, r);
        steps++;
    }
    cr_assert_eq(steps, duet_bpe_n_merges(b), "brute force ran out of pairs after %d merges", steps);
    cr_assert_gt(steps, 10);
    /* token bytes are the concatenation of the merged parts */
    char buf[64];
    size_t n = duet_bpe_token_bytes(b, 256 + steps - 1, buf, sizeof buf);
    cr_assert(n >= 2);
    duet_bpe_free(b);
}

Test(bpe_train, byte_symbols_are_gpt2_bytes_to_unicode) {
    char s[4];
    duet_bpe_byte_symbol('a', s);
    cr_assert_str_eq(s, "a");
    duet_bpe_byte_symbol(' ', s); /* byte 32 -> U+0120 'Ġ' */
    cr_assert_str_eq(s, "\xc4\xa0");
    duet_bpe_byte_symbol('\n', s); /* byte 10 -> U+010A 'Ċ' */
    cr_assert_str_eq(s, "\xc4\x8a");
    duet_bpe_byte_symbol(0, s); /* byte 0 -> U+0100 */
    cr_assert_str_eq(s, "\xc4\x80");
    duet_bpe_byte_symbol(0xad, s); /* soft hyphen -> U+0143 */
    cr_assert_str_eq(s, "\xc5\x83");
}

Test(bpe_train, regex_pretokenization_and_gguf_vocab) {
    const char *text = "the cat sat on the mat. the cat's hat!\n\nthe end, 42 cats.\n";
    duet_bpe *b = duet_bpe_new();
    for (int i = 0; i < 20; i++) cr_assert_eq(duet_bpe_add_text(b, text, strlen(text), NULL), 0);
    /* GPT-2 pieces: "the", " cat", " sat", " on", " the", " mat", ".", " the", " cat", "'s", " hat", "!",
     * "\n\n", "the", " end", ",", " 42", " cats", ".", "\n" -> 15 distinct */
    cr_assert_eq(duet_bpe_n_pieces(b), 15);
    cr_assert_eq(duet_bpe_learn(b, 30, NULL), 0);
    char path[] = "/tmp/duet-bpe-test-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    duet_err err = {0};
    cr_assert_eq(duet_bpe_write_gguf(b, path, &err), 0, "%s", err.msg);
    duet_gguf *g = NULL;
    cr_assert_eq(duet_gguf_open(&g, path, &err), 0, "%s", err.msg);
    const char *s;
    size_t len;
    cr_assert_eq(duet_gguf_get_str(g, "tokenizer.ggml.model", &s, &len, NULL), 0);
    cr_assert(len == 4 && !memcmp(s, "gpt2", 4));
    cr_assert_eq(duet_gguf_get_str(g, "tokenizer.ggml.pre", &s, &len, NULL), 0);
    cr_assert(len == 5 && !memcmp(s, "gpt-2", 5));
    int n_vocab = 256 + duet_bpe_n_merges(b) + 1;
    cr_assert_eq(duet_gguf_arr_str(g, "tokenizer.ggml.tokens", (uint64_t)n_vocab - 1, &s, &len, NULL), 0);
    cr_assert(len == 13 && !memcmp(s, "<|endoftext|>", 13));
    duet_gguf_close(g);
    /* The tokenizer library loads it and round-trips the text; the first
     * merge is used on the words it was learned from. */
    duet_vocab *v = NULL;
    cr_assert_eq(duet_vocab_load_file(&v, path, &err), 0, "%s", err.msg);
    cr_assert_eq(duet_vocab_n(v), n_vocab);
    cr_assert_eq(duet_vocab_eos(v), n_vocab - 1);
    cr_assert_eq(duet_vocab_token_type(v, n_vocab - 1), DUET_TOKEN_CONTROL);
    int32_t *ids = NULL;
    int n = duet_tokenize_alloc(v, text, strlen(text), 0, &ids);
    cr_assert(n > 0 && n < (int)strlen(text), "merges shorten the text (%d tokens)", n);
    char out[256];
    int64_t k = duet_detokenize(v, ids, n, out, sizeof out, 0);
    cr_assert(k == (int64_t)strlen(text) && !memcmp(out, text, (size_t)k));
    free(ids);
    duet_vocab_free(v);
    duet_bpe_free(b);
    remove(path);
}

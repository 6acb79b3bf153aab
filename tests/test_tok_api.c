/* Tokenizer API behaviour: special tokens only on request, BOS/EOS flags, the
 * snprintf-style count, pieces and detokenization (including byte tokens and
 * the streaming detokenizer), invalid UTF-8, and load errors. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "duet/tok.h"
#include "testutil.h"

static duet_vocab *load(const char *name) {
    char rel[256], path[1024];
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", name);
    duet_err err = {0};
    duet_vocab *v = NULL;
    cr_assert_eq(duet_vocab_load_file(&v, tu_data(rel, path, sizeof path), &err), 0, "%s", err.msg);
    return v;
}

static int tok(const duet_vocab *v, const char *s, int flags, int32_t *out) {
    int n = duet_tokenize(v, s, strlen(s), out, 256, flags);
    cr_assert(n >= 0 && n <= 256);
    return n;
}

static int contains(const int32_t *ids, int n, int32_t id) {
    for (int i = 0; i < n; i++)
        if (ids[i] == id) return 1;
    return 0;
}

Test(tok_special, control_tokens_only_with_parse_special) {
    struct { const char *vocab, *texts[2]; } cases[] = {
        {"llama-bpe", {"<|eot_id|>", "<|begin_of_text|>"}},
        {"qwen2", {"<|im_start|>", "<|endoftext|>"}},
        {"gpt-2", {"<|endoftext|>", NULL}},
        {"llama-spm", {"</s>", "<s>"}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        duet_vocab *v = load(cases[c].vocab);
        for (int k = 0; k < 2 && cases[c].texts[k]; k++) {
            const char *sp = cases[c].texts[k];
            int32_t id = duet_vocab_find(v, sp, strlen(sp)), a[256], b[256];
            cr_assert_geq(id, 0);
            cr_assert_eq(duet_vocab_token_type(v, id), DUET_TOKEN_CONTROL);
            char text[128];
            snprintf(text, sizeof text, "a%sb", sp);
            int n = tok(v, text, 0, a);
            cr_expect(!contains(a, n, id), "%s: '%s' became a control token without PARSE_SPECIAL", cases[c].vocab, text);
            n = tok(v, text, DUET_TOK_PARSE_SPECIAL, b);
            cr_expect(contains(b, n, id), "%s: '%s' not parsed with PARSE_SPECIAL", cases[c].vocab, text);
        }
        duet_vocab_free(v);
    }
}

/* With PARSE_SPECIAL the text around a special token is tokenized on its own
 * (for SPM each piece gets the leading space again, as in llama.cpp). */
Test(tok_special, text_around_special_is_tokenized_separately) {
    const char *vocabs[] = {"llama-spm", "llama-bpe", "qwen2", "gpt-2"};
    const char *specials[] = {"</s>", "<|eot_id|>", "<|im_end|>", "<|endoftext|>"};
    for (int k = 0; k < 4; k++) {
        duet_vocab *v = load(vocabs[k]);
        int32_t sp = duet_vocab_find(v, specials[k], strlen(specials[k]));
        int32_t left[256], right[256], all[256];
        int nl = tok(v, "Hello, wor", 0, left), nr = tok(v, "ld of tokens", 0, right);
        char text[256];
        snprintf(text, sizeof text, "Hello, wor%sld of tokens", specials[k]);
        int n = tok(v, text, DUET_TOK_PARSE_SPECIAL, all);
        cr_assert_eq(n, nl + 1 + nr, "%s", vocabs[k]);
        cr_expect_arr_eq(all, left, sizeof *left * (size_t)nl);
        cr_expect_eq(all[nl], sp);
        cr_expect_arr_eq(all + nl + 1, right, sizeof *right * (size_t)nr);
        duet_vocab_free(v);
    }
}

/* User-defined tokens (Qwen3's <think>) are matched like Hugging Face added
 * tokens that are not special: always. */
Test(tok_special, user_defined_tokens_always_match) {
    duet_vocab *v = load("qwen2");
    int32_t think = duet_vocab_find(v, "<think>", 7), end = duet_vocab_find(v, "</think>", 8), ids[256];
    int n = tok(v, "<think>", 0, ids);
    cr_expect_eq(n, 1);
    cr_expect_eq(ids[0], think);
    n = tok(v, "x<think>y</think>", 0, ids);
    cr_expect(contains(ids, n, think) && contains(ids, n, end));
    duet_vocab_free(v);
}

Test(tok_flags, bos_eos_and_count_semantics) {
    duet_vocab *v = load("llama-bpe");
    int32_t ids[256];
    int n0 = tok(v, "Hello world", 0, ids);
    int n1 = tok(v, "Hello world", DUET_TOK_ADD_BOS | DUET_TOK_ADD_EOS, ids);
    cr_expect_eq(n1, n0 + 2);
    cr_expect_eq(ids[0], 128000);
    cr_expect_eq(ids[n1 - 1], 128001);
    /* snprintf-style: the full count comes back, at most cap ids are written */
    int32_t small[2] = {-5, -5};
    cr_expect_eq(duet_tokenize(v, "Hello world, how are you", 24, small, 1, 0), tok(v, "Hello world, how are you", 0, ids));
    cr_expect_eq(small[0], ids[0]);
    cr_expect_eq(small[1], -5);
    cr_expect_eq(duet_tokenize(v, "abc", 3, NULL, 0, 0), tok(v, "abc", 0, ids));
    cr_expect_eq(duet_tokenize(v, "", 0, ids, 256, 0), 0);
    cr_expect_eq(duet_tokenize(v, NULL, 0, ids, 256, DUET_TOK_ADD_BOS), 1);
    cr_expect_eq(duet_tokenize(NULL, "x", 1, ids, 256, 0), DUET_EINVAL);
    cr_expect_eq(duet_tokenize(v, "x", 1, NULL, 4, 0), DUET_EINVAL);
    duet_vocab_free(v);
    v = load("llama-spm");
    cr_expect_eq(duet_tokenize(v, "", 0, ids, 256, DUET_TOK_ADD_BOS), 1); /* SentencePiece: encode("") = [bos] */
    cr_expect_eq(ids[0], 1);
    duet_vocab_free(v);
}

Test(tok_detok, pieces) {
    duet_vocab *v = load("llama-spm");
    char buf[64];
    cr_expect_eq(duet_token_to_piece(v, 3 + 'A', buf, sizeof buf, 0), 1); /* <0x41> */
    cr_expect_eq(buf[0], 'A');
    int32_t hello = duet_vocab_find(v, "\xE2\x96\x81Hello", 8);
    cr_assert_geq(hello, 0);
    int n = duet_token_to_piece(v, hello, buf, sizeof buf, 0);
    cr_expect_eq(n, 6);
    cr_expect_arr_eq(buf, " Hello", 6);
    cr_expect_eq(duet_token_to_piece(v, 1, buf, sizeof buf, 0), 0); /* <s> hidden */
    cr_expect_eq(duet_token_to_piece(v, 1, buf, sizeof buf, DUET_DETOK_SPECIAL), 3);
    cr_expect_arr_eq(buf, "<s>", 3);
    cr_expect_eq(duet_token_to_piece(v, 2, buf, 1, DUET_DETOK_SPECIAL), 4); /* "</s>", truncated to 1 byte */
    cr_expect_eq(duet_token_to_piece(v, 32000, buf, sizeof buf, 0), DUET_ERANGE);
    cr_expect_eq(duet_token_to_piece(v, -1, buf, sizeof buf, 0), DUET_ERANGE);
    /* BOS hidden: the leading space goes from the first piece that is shown */
    int32_t ids[2] = {1, hello};
    cr_expect_eq(duet_detokenize(v, ids, 2, buf, sizeof buf, 0), 5);
    cr_expect_str_eq(buf, "Hello");
    cr_expect_eq(duet_detokenize(v, ids, 2, buf, sizeof buf, DUET_DETOK_KEEP_SPACE), 6);
    cr_expect_str_eq(buf, " Hello");
    int32_t bad[3] = {5, 40000, 7};
    duet_err err = {0};
    cr_expect_eq(duet_detokenize(v, bad, 3, buf, sizeof buf, 0), DUET_ERANGE);
    cr_expect_eq(duet_detokenize_check(v, bad, 3, &err), DUET_ERANGE);
    cr_expect(strstr(err.msg, "40000") && strstr(err.msg, "position 1"), "%s", err.msg);
    duet_vocab_free(v);

    v = load("gpt-2");
    int32_t world = duet_vocab_find(v, "\xC4\xA0world", 7); /* "Ġworld" */
    cr_assert_geq(world, 0);
    n = duet_token_to_piece(v, world, buf, sizeof buf, 0);
    cr_expect_eq(n, 6);
    cr_expect_arr_eq(buf, " world", 6);
    duet_vocab_free(v);

    v = load("qwen2");
    int32_t think = duet_vocab_find(v, "<think>", 7);
    cr_expect_eq(duet_token_to_piece(v, think, buf, sizeof buf, 0), 7); /* user-defined: shown */
    duet_vocab_free(v);
}

/* Feeds ids one at a time; returns the concatenated output (static). */
static const char *stream_all(const duet_vocab *v, const int32_t *ids, int n) {
    static char out[4096];
    size_t o = 0;
    duet_detok_stream *s = duet_detok_stream_new(v, 0);
    cr_assert(s);
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *p = duet_detok_stream_push(s, ids[i], &len);
        cr_assert(p);
        memcpy(out + o, p, len);
        o += len;
    }
    size_t len;
    const char *p = duet_detok_stream_flush(s, &len);
    memcpy(out + o, p, len);
    o += len;
    out[o] = 0;
    duet_detok_stream_free(s);
    return out;
}

Test(tok_detok, stream_holds_incomplete_utf8) {
    duet_vocab *v = load("llama-spm");
    /* "é" as byte tokens: nothing until the character completes */
    duet_detok_stream *s = duet_detok_stream_new(v, 0);
    size_t len;
    const char *p = duet_detok_stream_push(s, 3 + 0xC3, &len);
    cr_expect_eq(len, 0);
    p = duet_detok_stream_push(s, 3 + 0xA9, &len);
    cr_expect_eq(len, 2);
    cr_expect_arr_eq(p, "\xC3\xA9", 2);
    /* an impossible byte becomes U+FFFD; an unfinished character at the end too */
    p = duet_detok_stream_push(s, 3 + 0xFF, &len);
    cr_expect_eq(len, 3);
    cr_expect_arr_eq(p, "\xEF\xBF\xBD", 3);
    p = duet_detok_stream_push(s, 3 + 0xE2, &len);
    cr_expect_eq(len, 0);
    p = duet_detok_stream_flush(s, &len);
    cr_expect_eq(len, 3);
    cr_expect_arr_eq(p, "\xEF\xBF\xBD", 3);
    cr_expect_null(duet_detok_stream_push(s, 99999, &len));
    duet_detok_stream_free(s);

    /* byte-level BPE: an emoji split over several tokens comes out whole, once */
    const char *vocabs[] = {"llama-spm", "gpt-2", "llama-bpe", "qwen2"};
    const char *text = "Hi \xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC";
    for (int k = 0; k < 4; k++) {
        if (k > 0) v = load(vocabs[k]);
        int32_t ids[256];
        int n = tok(v, text, 0, ids);
        cr_expect_str_eq(stream_all(v, ids, n), text, "%s", vocabs[k]);
        duet_vocab_free(v);
    }
}

/* The reference rule for invalid UTF-8 in BPE: each byte that does not start
 * a valid sequence stands for U+FFFD (llama.cpp's unicode_cpts_from_utf8). */
static size_t replace_invalid(const unsigned char *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t need = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        int ok = need > 0 && i + need <= n;
        for (size_t k = 1; ok && k < need; k++) ok = (s[i + k] & 0xC0) == 0x80;
        if (ok && need >= 3) {
            unsigned cp = need == 3 ? (c & 0x0F) << 12 | (s[i + 1] & 0x3Fu) << 6 | (s[i + 2] & 0x3Fu)
                                    : (c & 0x07) << 18 | (s[i + 1] & 0x3Fu) << 12 | (s[i + 2] & 0x3Fu) << 6 | (s[i + 3] & 0x3Fu);
            ok = need == 3 ? cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF) : cp >= 0x10000 && cp <= 0x10FFFF;
        }
        if (ok) {
            memcpy(out + o, s + i, need);
            o += need;
            i += need;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    return o;
}

Test(tok_invalid, random_bytes_never_crash_and_decode_as_documented) {
    const char *vocabs[] = {"llama-spm", "gpt-2", "llama-bpe", "qwen2"};
    size_t n = 8000;
    unsigned char *bytes = malloc(n);
    uint64_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        bytes[i] = (unsigned char)(s >> 32);
        if (bytes[i] == 0xE2) bytes[i] = 0xE3; /* no literal U+2581, which SPM would read back as a space */
        if (bytes[i] == ' ') bytes[i] = '!';   /* see spm_space_after_bad_lead_byte */
    }
    char *expect = malloc(3 * n), *back = malloc(3 * n + 1);
    for (int k = 0; k < 4; k++) {
        duet_vocab *v = load(vocabs[k]);
        int32_t *ids = NULL;
        int m = duet_tokenize_alloc(v, (const char *)bytes, n, DUET_TOK_PARSE_SPECIAL, &ids);
        cr_assert_gt(m, 0);
        int64_t b = duet_detokenize(v, ids, m, back, 3 * n + 1, 0);
        if (duet_vocab_type(v) == DUET_VOCAB_SPM) { /* byte fallback keeps every byte */
            cr_expect_eq(b, (int64_t)n, "%s", vocabs[k]);
            cr_expect(!memcmp(back, bytes, n), "%s", vocabs[k]);
        } else {
            size_t e = replace_invalid(bytes, n, expect);
            cr_expect_eq(b, (int64_t)e, "%s", vocabs[k]);
            cr_expect(!memcmp(back, expect, e), "%s", vocabs[k]);
        }
        free(ids);
        duet_vocab_free(v);
    }
    free(bytes);
    free(expect);
    free(back);
}

/* The one place SPM is not lossless (llama.cpp alike): characters are cut by
 * lead byte, so a lead byte without its continuation bytes swallows the
 * bytes of the U+2581 that stands for a following space; they come back as
 * those bytes, not as the space. */
Test(tok_invalid, spm_space_after_bad_lead_byte) {
    duet_vocab *v = load("llama-spm");
    int32_t ids[16];
    int n = duet_tokenize(v, "\xE4 x", 3, ids, 16, 0);
    char back[16];
    int64_t m = duet_detokenize(v, ids, n, back, sizeof back, 0);
    cr_expect_eq(m, 5);
    cr_expect_arr_eq(back, "\xE4\xE2\x96\x81x", 5);
    duet_vocab_free(v);
}

Test(tok_invalid, nul_bytes_and_truncated_sequences) {
    const char text[] = "a\0b\0\0 c \xF0\x9F\x98"; /* ends inside an emoji */
    size_t n = sizeof text - 1;
    duet_vocab *v = load("llama-spm");
    int32_t ids[64];
    int m = duet_tokenize(v, text, n, ids, 64, 0);
    cr_assert_gt(m, 0);
    char back[64];
    cr_expect_eq(duet_detokenize(v, ids, m, back, sizeof back, 0), (int64_t)n);
    cr_expect(!memcmp(back, text, n));
    duet_vocab_free(v);
    v = load("qwen2");
    m = duet_tokenize(v, text, n, ids, 64, 0);
    cr_expect_eq(duet_detokenize(v, ids, m, back, sizeof back, 0), (int64_t)(n - 3 + 9));
    cr_expect(!memcmp(back, "a\0b\0\0 c \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", n - 3 + 9));
    duet_vocab_free(v);
}

/* ---- load errors, on small GGUFs written here ---- */
static int load_crafted(const char *model, const char *pre, int with_merges, duet_err *err) {
    char path[] = "/tmp/duet_tok_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    duet_gguf_writer *w = duet_gguf_writer_new();
    cr_assert(w);
    duet_gguf_set_str(w, "general.architecture", "llama");
    if (model) duet_gguf_set_str(w, "tokenizer.ggml.model", model);
    if (pre) duet_gguf_set_str(w, "tokenizer.ggml.pre", pre);
    const char *toks[] = {"a", "b", "ab", "<|end|>"};
    duet_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4);
    int32_t types[4] = {1, 1, 1, 3};
    duet_gguf_set_arr(w, "tokenizer.ggml.token_type", DUET_GGUF_INT32, types, 4);
    if (with_merges) {
        const char *merges[] = {"a b"};
        duet_gguf_set_arr_str(w, "tokenizer.ggml.merges", merges, 1);
    }
    cr_assert_eq(duet_gguf_writer_write(w, path, err), 0, "%s", err->msg);
    duet_gguf_writer_free(w);
    duet_vocab *v = NULL;
    int rc = duet_vocab_load_file(&v, path, err);
    if (rc == 0) {
        int32_t ids[8];
        cr_expect_eq(duet_tokenize(v, "ab", 2, ids, 8, 0), 1); /* the one merge applies */
        cr_expect_eq(ids[0], 2);
    }
    duet_vocab_free(v);
    unlink(path);
    return rc;
}

Test(tok_load, errors_name_the_field) {
    duet_err err = {0};
    cr_expect_eq(load_crafted("gpt2", "no-such-pre", 1, &err), DUET_EUNSUPPORTED);
    cr_expect(strstr(err.msg, "tokenizer.ggml.pre") && strstr(err.msg, "no-such-pre") && strstr(err.msg, "qwen2"), "%s",
              err.msg);
    cr_expect_eq(load_crafted("bert", NULL, 1, &err), DUET_EUNSUPPORTED);
    cr_expect(strstr(err.msg, "tokenizer.ggml.model") && strstr(err.msg, "bert"), "%s", err.msg);
    cr_expect_eq(load_crafted(NULL, NULL, 1, &err), DUET_EFORMAT);
    cr_expect(strstr(err.msg, "tokenizer.ggml.model"), "%s", err.msg);
    cr_expect_eq(load_crafted("gpt2", "gpt-2", 0, &err), DUET_EFORMAT);
    cr_expect(strstr(err.msg, "tokenizer.ggml.merges"), "%s", err.msg);
    /* missing or "default" pre-tokenizer: GPT-2's */
    cr_expect_eq(load_crafted("gpt2", NULL, 1, &err), 0, "%s", err.msg);
    cr_expect_eq(load_crafted("gpt2", "default", 1, &err), 0, "%s", err.msg);
}

/* ---- pre-tokenizer regex semantics ---- */
#include "tok/tok_internal.h"

/* Pieces of text under v's pre-tokenizer, as "|"-joined string. */
static void pieces(const duet_vocab *v, const char *text, char *out, size_t cap) {
    tok_splitter *sp = tok_splitter_new(v);
    cr_assert(sp);
    size_t len = strlen(text), pos = 0, o = 0;
    out[0] = 0;
    while (pos < len) {
        size_t ms, me;
        cr_assert_eq(tok_splitter_next(sp, text, len, pos, &ms, &me), 1);
        cr_assert_eq(ms, pos, "gap before a match in \"%s\"", text);
        o += (size_t)snprintf(out + o, cap - o, "%s%.*s", o ? "|" : "", (int)(me - ms), text + ms);
        pos = me;
    }
    tok_splitter_free(sp);
}

/* \s in Hugging Face's patterns is Unicode White_Space: U+0085 and U+3000
 * are spaces, U+180E (a space before Unicode 6.3, still one in PCRE2's \s)
 * and U+FEFF are not. Expected splits follow the GPT-2 / Llama 3 patterns by
 * hand. */
Test(tok_pretok, whitespace_is_unicode_white_space) {
    duet_vocab *v = load("gpt-2");
    char out[256];
    pieces(v, "a\xE1\xA0\x8E!", out, sizeof out); /* U+180E is not \s: one punctuation run */
    cr_expect_str_eq(out, "a|\xE1\xA0\x8E!");
    pieces(v, "a\xC2\x85!", out, sizeof out); /* U+0085 is \s */
    cr_expect_str_eq(out, "a|\xC2\x85|!");
    pieces(v, "a\xE3\x80\x80\xE3\x80\x80 b", out, sizeof out); /* U+3000 x2 + space: \s+(?!\S), then " b" */
    cr_expect_str_eq(out, "a|\xE3\x80\x80\xE3\x80\x80| b");
    pieces(v, "x\xEF\xBB\xBFy", out, sizeof out); /* U+FEFF is not \s */
    cr_expect_str_eq(out, "x|\xEF\xBB\xBF|y");
    pieces(v, "I'm 12345 ok", out, sizeof out);
    cr_expect_str_eq(out, "I|'m| 12345| ok");
    duet_vocab_free(v);
    v = load("llama-bpe");
    pieces(v, "I'M 12345\n\n  ok", out, sizeof out); /* (?i:'m), \p{N}{1,3}, \s*[\r\n]+, \s+(?!\S) */
    cr_expect_str_eq(out, "I|'M| |123|45|\n\n| | ok");
    duet_vocab_free(v);
    v = load("qwen2");
    pieces(v, "ab12 \xC2\x85x", out, sizeof out); /* \p{N} one digit at a time; U+0085 + x: [^\r\n\p{L}\p{N}]?\p{L}+ */
    cr_expect_str_eq(out, "ab|1|2| |\xC2\x85x");
    duet_vocab_free(v);
}

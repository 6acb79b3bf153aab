/* libFuzzer target: arbitrary bytes through the four reference tokenizers
 * (SPM, GPT-2, Llama 3, Qwen2) and back.
 *
 * Vocabularies load once, from $DUET_VOCAB_DIR or DUET_DATA/vocab. For each
 * input and vocabulary: tokenize with and without special-token parsing,
 * check every id is in range, detokenize (whole and streamed) and check the
 * documented round trip: byte-level BPE gives back the input with invalid
 * UTF-8 bytes as U+FFFD (here: exactly the input when it is valid UTF-8);
 * SPM gives back the input when it has no space or U+2581 (see
 * docs/tokenizers.md for the two exceptions). The chat-template detector gets
 * the input as a template text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/tok.h"

#ifndef DUET_DATA
#define DUET_DATA "../shared/data"
#endif

static duet_vocab *vocabs[4];
static const char *names[4] = {"llama-spm", "gpt-2", "llama-bpe", "qwen2"};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *dir = getenv("DUET_VOCAB_DIR");
    char path[2048];
    for (int i = 0; i < 4; i++) {
        if (dir) snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf", dir, names[i]);
        else snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", DUET_DATA, names[i]);
        duet_err err = {0};
        if (duet_vocab_load_file(&vocabs[i], path, &err)) {
            fprintf(stderr, "fuzz_tok: %s (set DUET_VOCAB_DIR)\n", err.msg);
            abort();
        }
    }
    return 0;
}

static int valid_utf8(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t need = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!need || i + need > n) return 0;
        for (size_t k = 1; k < need; k++)
            if ((s[i + k] & 0xC0) != 0x80) return 0;
        if (need == 3 && ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] >= 0xA0))) return 0;
        if (need == 4 && ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] >= 0x90))) return 0;
        i += need;
    }
    return 1;
}

static void check(const duet_vocab *v, const uint8_t *data, size_t size, int flags, int lossless) {
    int32_t *ids = NULL;
    int n = duet_tokenize_alloc(v, (const char *)data, size, flags, &ids);
    if (n < 0) abort();
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= duet_vocab_n(v)) abort();
    int64_t len = duet_detokenize(v, ids, n, NULL, 0, DUET_DETOK_SPECIAL);
    char *text = malloc((size_t)len + 1);
    if (!text || duet_detokenize(v, ids, n, text, (size_t)len + 1, DUET_DETOK_SPECIAL) != len) abort();
    if (lossless && (len != (int64_t)size || memcmp(text, data, size))) {
        fprintf(stderr, "fuzz_tok: round trip differs\n");
        abort();
    }
    duet_detok_stream *s = duet_detok_stream_new(v, 0);
    if (!s) abort();
    for (int i = 0; i < n; i++) {
        size_t l;
        if (!duet_detok_stream_push(s, ids[i], &l)) abort();
    }
    size_t l;
    duet_detok_stream_flush(s, &l);
    duet_detok_stream_free(s);
    free(text);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int utf8 = valid_utf8(data, size);
    int no_space = memchr(data, ' ', size) == NULL;
    for (size_t i = 0; no_space && i + 3 <= size; i++)
        if (data[i] == 0xE2 && data[i + 1] == 0x96 && data[i + 2] == 0x81) no_space = 0;
    for (int k = 0; k < 4; k++) {
        int spm = duet_vocab_type(vocabs[k]) == DUET_VOCAB_SPM;
        check(vocabs[k], data, size, 0, spm ? no_space : utf8);
        check(vocabs[k], data, size, DUET_TOK_PARSE_SPECIAL | DUET_TOK_ADD_BOS, 0);
    }
    char *tmpl = malloc(size + 1);
    if (!tmpl) return 0;
    memcpy(tmpl, data, size);
    tmpl[size] = 0;
    duet_chat_template t;
    duet_chat_detect(tmpl, &t, NULL);
    free(tmpl);
    return 0;
}

/* Training data: TinyStories text -> stories -> tokens with an end-of-text
 * token after every story. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/tok.h"
#include "duet/train.h"

/* A paragraph that opens a story in files whose stories are separated like
 * paragraphs (valid.txt): see tinystories/README.md. */
static int opens_story(const char *s, size_t n) {
    static const char *const starts[] = {"once upon a time", "once there was", "once, there"};
    for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++) {
        size_t l = strlen(starts[i]);
        if (n >= l && !memcmp(s, starts[i], l)) return 1;
    }
    return 0;
}

typedef struct {
    int32_t *ids;
    int64_t n, cap;
} tok_buf;

static int push_story(tok_buf *b, const duet_vocab *v, const char *s, size_t n, int32_t eot, duet_err *err) {
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' ')) n--; /* no trailing separator inside a story */
    while (n && s[0] == '\n') { s++; n--; }
    if (!n) return 0;
    int32_t *ids = NULL;
    int k = duet_tokenize_alloc(v, s, n, 0, &ids);
    if (k < 0) return duet_err_set(err, k, "tokenize failed (%d)", k);
    if (b->n + k + 1 > b->cap) {
        int64_t cap = (b->n + k + 1) * 2;
        int32_t *p = realloc(b->ids, sizeof(int32_t) * cap);
        if (!p) { free(ids); return duet_err_set(err, DUET_ENOMEM, "out of memory (tokens)"); }
        b->ids = p;
        b->cap = cap;
    }
    memcpy(b->ids + b->n, ids, sizeof(int32_t) * k);
    b->n += k;
    b->ids[b->n++] = eot;
    free(ids);
    return 0;
}

int duet_tokens_from_text(duet_tokens *out, const char *text_path, const char *tok_path, duet_err *err) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(text_path, "rb");
    if (!f) return duet_err_set(err, DUET_EIO, "%s: cannot open", text_path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (!text || fread(text, 1, (size_t)len, f) != (size_t)len) {
        fclose(f);
        free(text);
        return duet_err_set(err, DUET_EIO, "%s: read failed", text_path);
    }
    fclose(f);
    text[len] = 0;
    duet_vocab *v = NULL;
    int rc = duet_vocab_load_file(&v, tok_path, err);
    if (rc) { free(text); return rc; }
    int32_t eot = duet_vocab_eos(v);
    if (eot < 0) {
        duet_vocab_free(v);
        free(text);
        return duet_err_set(err, DUET_EFORMAT, "%s: vocabulary has no end-of-text (eos) token", tok_path);
    }
    /* Stories separated by a single "\n" (train.txt) or only by paragraph breaks (valid.txt)?
     * Not "any single newline": valid.txt has a few dozen stray ones inside paragraphs. Compare
     * the single-newline breaks with the blank-line (2+ newlines) breaks instead. In train.txt
     * a story ends in a single "\n" and has ~4.6 paragraphs (blank lines between them), so there
     * are ~0.28 single breaks per blank-line break (5,544 vs 19,986); valid.txt has 0.014
     * (58 vs 4,298). The cut at 1/16 (0.0625) is ~4.4x below the first and ~4.6x above the
     * second. (Small parts of valid.txt can still look like train.txt: its stray newlines
     * cluster in a few stories.)
     * A file with no blank line but some single newlines is one story per line. */
    long singles = 0, doubles = 0;
    for (long i = 1; i + 1 < len; i++)
        if (text[i] == '\n' && text[i - 1] != '\n' && text[i + 1] != '\n') singles++;
    for (long i = 0; i + 1 < len; i++)
        if (text[i] == '\n' && text[i + 1] == '\n' && (i == 0 || text[i - 1] != '\n')) doubles++;
    int single = singles * 16 > doubles;
    tok_buf b = {0};
    size_t start = 0;
    for (size_t i = 0; !rc && i <= (size_t)len; i++) {
        int cut = 0;
        size_t next = i + 1;
        if (i == (size_t)len) cut = 1;
        else if (single) cut = text[i] == '\n' && (i == 0 || text[i - 1] != '\n') && text[i + 1] != '\n';
        else if (text[i] == '\n' && text[i + 1] == '\n') {
            size_t p = i;
            while (p < (size_t)len && text[p] == '\n') p++;
            if (opens_story(text + p, (size_t)len - p)) { cut = 1; next = p; }
        }
        if (!cut) continue;
        rc = push_story(&b, v, text + start, i - start, eot, err);
        start = next;
        if (!single && next > i + 1) i = next - 1;
    }
    duet_vocab_free(v);
    free(text);
    if (rc) { free(b.ids); duet_err_prefix(err, "%s", text_path); return rc; }
    out->ids = b.ids;
    out->n = b.n;
    return 0;
}

void duet_tokens_free(duet_tokens *t) {
    if (!t) return;
    free(t->ids);
    t->ids = NULL;
    t->n = 0;
}

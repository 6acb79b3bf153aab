/* Pre-tokenizers of byte-level BPE vocabularies: one table row per family.
 *
 * The regexes are Hugging Face's (tokenizer.json "Split" patterns), verbatim.
 * They are compiled with PCRE2 in UTF + UCP mode after a rewrite that keeps
 * their meaning identical to Hugging Face's and llama.cpp's: `\s` / `\S` are
 * spelled out as the Unicode White_Space property, because PCRE2's UCP `\s`
 * also matches U+180E (whitespace before Unicode 6.3); `\p{L}` / `\p{N}` get
 * their ASCII members listed first (same set, faster JIT code).
 *
 * To add a family: add a row (name, the tokenizer.ggml.pre values that select
 * it, the regex from its tokenizer.json, whether the BPE model has
 * "ignore_merges": true, and whether llama.cpp adds BOS by default). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

static const tok_pretok rows[] = {
    {
        "gpt-2",
        {"default", "phi-2", NULL},
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
        0,
        0,
    },
    {
        "llama-bpe",
        {"llama3", "llama-v3", NULL},
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
        "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        1,
        1,
    },
    {
        "qwen2",
        {"deepseek-r1-qwen", "megrez", NULL},
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
        "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        0,
        0,
    },
};

const tok_pretok *tok_pretok_find(const char *name) {
    for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) {
        if (!strcmp(rows[r].name, name)) return &rows[r];
        for (int a = 0; rows[r].aliases[a]; a++)
            if (!strcmp(rows[r].aliases[a], name)) return &rows[r];
    }
    return NULL;
}

const char *tok_pretok_names(char *buf, size_t cap) {
    size_t o = 0;
    buf[0] = 0;
    for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) {
        if (o < cap) o += (size_t)snprintf(buf + o, cap - o, "%s%s", o ? ", " : "", rows[r].name);
        for (int a = 0; rows[r].aliases[a] && o < cap; a++)
            o += (size_t)snprintf(buf + o, cap - o, ", %s", rows[r].aliases[a]);
    }
    return buf;
}

/* Unicode White_Space, as the body of a character class. */
#define WS_CLASS "\\t\\n\\x0B\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

/* Rewrites of escapes, as class bodies; each means exactly what the escape
 * means in Hugging Face's regex engine. \s/\S: see above. \p{L}/\p{N} only
 * gain their ASCII members spelled out, which PCRE2's JIT tests before the
 * Unicode tables (about 15% faster on mostly-ASCII text). */
static const struct {
    const char *esc, *body;
    int negated;
} rewrites[] = {
    {"\\s", WS_CLASS, 0},
    {"\\S", WS_CLASS, 1},
    {"\\p{L}", "A-Za-z\\p{L}", 0},
    {"\\p{N}", "0-9\\p{N}", 0},
};

static char *rewrite_escapes(const char *re) {
    size_t cap = strlen(re) * 16 + 256, o = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    int in_class = 0;
    for (const char *p = re; *p;) {
        if (o + sizeof WS_CLASS + 16 > cap) { /* cannot happen with the sizes above; stay safe */
            free(out);
            return NULL;
        }
        size_t r = 0, nr = sizeof rewrites / sizeof *rewrites;
        while (r < nr && strncmp(p, rewrites[r].esc, strlen(rewrites[r].esc))) r++;
        if (r < nr && !(in_class && rewrites[r].negated)) {
            const char *fmt = in_class ? "%s" : rewrites[r].negated ? "[^%s]" : "[%s]";
            o += (size_t)snprintf(out + o, cap - o, fmt, rewrites[r].body);
            p += strlen(rewrites[r].esc);
            continue;
        }
        if (p[0] == '\\' && p[1]) { /* any other escape, copied whole */
            out[o++] = *p++;
            out[o++] = *p++;
            continue;
        }
        if (*p == '[') in_class = 1;
        else if (*p == ']') in_class = 0;
        out[o++] = *p++;
    }
    out[o] = 0;
    return out;
}

void *tok_pretok_compile(const tok_pretok *pt, duet_err *err) {
    char *pat = rewrite_escapes(pt->regex);
    if (!pat) {
        duet_err_set(err, DUET_ENOMEM, "out of memory");
        return NULL;
    }
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
    free(pat);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        duet_err_set(err, DUET_EUNSUPPORTED, "pre-tokenizer '%s': regex does not compile at %zu: %s", pt->name,
                     (size_t)eo, (const char *)msg);
        return NULL;
    }
    /* without JIT (e.g. a PCRE2 built without it) the interpreter gives the same matches */
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

void tok_pretok_release(void *re) { pcre2_code_free(re); }

/* Per-call matcher state: match data and, only if the default JIT stack
 * overflows, a larger one. */
struct tok_splitter {
    pcre2_code *re;
    int jit;          /* the pattern was JIT compiled: call the JIT directly (no per-call checks) */
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *stack;
};

tok_splitter *tok_splitter_new(const duet_vocab *v) {
    tok_splitter *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->re = v->re;
    size_t jit_size = 0;
    s->jit = pcre2_pattern_info(s->re, PCRE2_INFO_JITSIZE, &jit_size) == 0 && jit_size > 0;
    s->md = pcre2_match_data_create(1, NULL);
    if (!s->md) {
        free(s);
        return NULL;
    }
    return s;
}

void tok_splitter_free(tok_splitter *s) {
    if (!s) return;
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    pcre2_jit_stack_free(s->stack);
    free(s);
}

/* Next match in text[pos..len): 1 with [*ms, *me), 0 if none. The text was
 * validated as UTF-8 by the caller. */
int tok_splitter_next(tok_splitter *s, const char *text, size_t len, size_t pos, size_t *ms, size_t *me) {
    for (int attempt = 0;; attempt++) {
        int rc = s->jit ? pcre2_jit_match(s->re, (PCRE2_SPTR)text, len, pos, 0, s->md, s->mctx)
                        : pcre2_match(s->re, (PCRE2_SPTR)text, len, pos, PCRE2_NO_UTF_CHECK, s->md, s->mctx);
        if (rc >= 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
            *ms = ov[0];
            *me = ov[1];
            return 1;
        }
        if (rc == PCRE2_ERROR_NOMATCH) return 0;
        if (attempt == 0 && !s->stack) {
            /* PCRE2_ERROR_JIT_STACKLIMIT (or a match/heap limit): retry once with room to spare */
            s->mctx = pcre2_match_context_create(NULL);
            s->stack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, NULL);
            if (s->mctx && s->stack) pcre2_jit_stack_assign(s->mctx, NULL, s->stack);
            if (s->mctx) pcre2_set_depth_limit(s->mctx, 1u << 30);
            continue;
        }
        return -1;
    }
}

/* SentencePiece-style tokenizer (tokenizer.ggml.model "llama"), as llama.cpp's
 * llm_tokenizer_spm_session computes it:
 *   spaces -> U+2581 (plus one in front when the caller asks), split into
 *   UTF-8 characters, then repeatedly merge the adjacent pair whose joined
 *   text is the token of highest score (ties: leftmost); a final symbol that
 *   is no token becomes its bytes' <0xXX> tokens.
 *
 * Speed-up that keeps the result exact: a merge across a point between two
 * characters would make a token that holds both characters side by side. So
 * where no token does, the text splits into independent words (each merged on
 * its own, through a per-call cache): before a U+2581 that follows another
 * character when no token has U+2581 after another character (true of
 * Llama's vocabulary, checked at load), and between two ASCII characters
 * that no token holds side by side (a 128x128 bitmap built at load). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok/heap.h"
#include "tok/tok_internal.h"

#define SPACE_MARK "\xE2\x96\x81" /* U+2581 */

int tok_spm_init(duet_vocab *v, duet_err *err) {
    for (int b = 0; b < 256; b++) {
        char hex[8];
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        int32_t id = tok_strmap_get(&v->map, v, hex, 6);
        if (id < 0) {
            char c = (char)b;
            id = tok_strmap_get(&v->map, v, &c, 1);
        }
        v->byte_tok[b] = id;
    }
    v->spm_split_words = 1;
    memset(v->spm_ascii_pairs, 0, sizeof v->spm_ascii_pairs);
    for (int32_t id = 0; id < v->n; id++) {
        size_t len;
        const char *t = tok_text(v, id, &len);
        for (size_t i = 0; i + 1 < len; i++) {
            uint8_t a = (uint8_t)t[i], b = (uint8_t)t[i + 1];
            if (a < 128 && b < 128) v->spm_ascii_pairs[a][b >> 6] |= 1ull << (b & 63);
        }
    }
    for (int32_t id = 0; id < v->n && v->spm_split_words; id++) {
        size_t len;
        const char *t = tok_text(v, id, &len);
        for (size_t i = 1; i + 3 <= len; i++) {
            if (memcmp(t + i, SPACE_MARK, 3)) continue;
            if (i < 3 || memcmp(t + i - 3, SPACE_MARK, 3)) {
                v->spm_split_words = 0;
                break;
            }
        }
    }
    (void)err;
    return 0;
}

typedef struct sym {
    int32_t start, n; /* bytes of the escaped text; n == 0 once merged away */
    int32_t prev, next;
    int32_t id;       /* token of the text once known (set by merges), else -1 */
} sym;

typedef struct bigram {
    float score;
    int32_t left, right;
    int32_t size; /* joined byte length when queued: a later mismatch means stale */
    int32_t id;   /* token of the joined text */
} bigram;

typedef struct scratch {
    sym *syms;
    size_t syms_cap;
    bigram *heap;
    size_t heap_n, heap_cap;
} scratch;

static inline int bigram_before(const bigram *a, const bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

DUET_DEFINE_HEAP(queue, scratch, bigram, bigram_before)

static int try_bigram(const duet_vocab *v, scratch *sc, const char *text, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return 0;
    const sym *l = &sc->syms[left], *r = &sc->syms[right];
    int32_t id = tok_strmap_get(&v->map, v, text + l->start, (size_t)(l->n + r->n));
    if (id < 0) return 0;
    bigram b = {v->score[id], left, right, l->n + r->n, id};
    return queue_push(sc, b);
}

static void emit_symbol(const duet_vocab *v, const char *text, const sym *s, tok_out *o) {
    int32_t id = s->id >= 0 ? s->id : tok_strmap_get(&v->map, v, text + s->start, (size_t)s->n);
    if (id >= 0) {
        tok_emit(o, id);
        return;
    }
    for (int32_t j = 0; j < s->n; j++) {
        int32_t b = v->byte_tok[(uint8_t)text[s->start + j]];
        if (b < 0) b = v->unk; /* llama.cpp would abort here; a vocab without byte tokens maps to <unk> */
        if (b >= 0) tok_emit(o, b);
    }
}

static inline int is_mark(const char *t) {
    return (uint8_t)t[0] == 0xE2 && (uint8_t)t[1] == 0x96 && (uint8_t)t[2] == 0x81;
}

/* Splits text[start..end) into characters by lead byte (llama.cpp's
 * unicode_len_utf8: invalid bytes count as 1-byte characters, a truncated
 * sequence at the end is cut short) and merges them. */
static int merge_word(const duet_vocab *v, scratch *sc, const char *text, size_t start, size_t end, tok_out *o) {
    if (sc->syms_cap < end - start) {
        size_t c = sc->syms_cap ? sc->syms_cap : 64;
        while (c < end - start) c *= 2;
        sym *p = realloc(sc->syms, sizeof *p * c);
        if (!p) return DUET_ENOMEM;
        sc->syms = p;
        sc->syms_cap = c;
    }
    int32_t ns = 0;
    for (size_t i = start; i < end; ns++) {
        size_t k = (size_t)tok_utf8_len((uint8_t)text[i]);
        if (k > end - i) k = end - i;
        sc->syms[ns] = (sym){(int32_t)i, (int32_t)k, ns - 1, ns + 1, -1};
        i += k;
    }
    sc->syms[ns - 1].next = -1;
    sc->heap_n = 0;
    for (int32_t i = 0; i + 1 < ns; i++)
        if (try_bigram(v, sc, text, i, i + 1)) return DUET_ENOMEM;
    while (sc->heap_n) {
        bigram b = queue_pop(sc);
        sym *l = &sc->syms[b.left], *r = &sc->syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue;
        l->n += r->n;
        l->id = b.id;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) sc->syms[r->next].prev = b.left;
        if (try_bigram(v, sc, text, l->prev, b.left) || try_bigram(v, sc, text, b.left, l->next)) return DUET_ENOMEM;
    }
    for (int32_t i = 0; i >= 0; i = sc->syms[i].next) emit_symbol(v, text, &sc->syms[i], o);
    return 0;
}

/* merge_word through the per-call cache, keyed by the word's escaped bytes. */
static int merge_word_cached(const duet_vocab *v, scratch *sc, tok_cache *cache, const char *text, size_t start,
                             size_t end, tok_out *o) {
    size_t len = end - start;
    if (!cache || len > TOK_CACHE_MAX_KEY) return merge_word(v, sc, text, start, end, o);
    uint32_t h = tok_hash_bytes(text + start, len);
    int n;
    const int32_t *ids = tok_cache_get(cache, text + start, len, h, &n);
    if (ids) {
        for (int i = 0; i < n; i++) tok_emit(o, ids[i]);
        return 0;
    }
    int64_t before = o->n;
    int rc = merge_word(v, sc, text, start, end, o);
    if (rc == 0 && o->n <= o->cap) tok_cache_put(cache, text + start, len, h, o->ids + before, (int)(o->n - before));
    return rc;
}

int tok_spm_fragment(const duet_vocab *v, const char *raw, size_t len, int add_prefix, tok_out *o) {
    /* escape: ' ' -> U+2581 */
    size_t cap = len * 3 + 3, n = 0;
    char *text = malloc(cap);
    if (!text) return DUET_ENOMEM;
    if (add_prefix) {
        memcpy(text, SPACE_MARK, 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (raw[i] == ' ') {
            memcpy(text + n, SPACE_MARK, 3);
            n += 3;
        } else {
            text[n++] = raw[i];
        }
    }
    scratch sc = {0};
    int rc = 0;
    if (!v->spm_split_words) {
        if (n) rc = merge_word(v, &sc, text, 0, n, o);
    } else {
        /* words start at a U+2581 character that follows another character */
        tok_cache *cache = n >= TOK_CACHE_MIN_TEXT ? tok_cache_new() : NULL;
        size_t word = 0;
        int prev_mark = 0;
        for (size_t i = 0; rc == 0 && i < n;) {
            size_t k = (size_t)tok_utf8_len((uint8_t)text[i]);
            if (k > n - i) k = n - i;
            int mark = k == 3 && is_mark(text + i);
            uint8_t a = i > 0 ? (uint8_t)text[i - 1] : 0x80, b = (uint8_t)text[i];
            int ascii_gap = a < 128 && b < 128 && !(v->spm_ascii_pairs[a][b >> 6] >> (b & 63) & 1);
            if (((mark && !prev_mark) || ascii_gap) && i > word) {
                rc = merge_word_cached(v, &sc, cache, text, word, i, o);
                word = i;
            }
            prev_mark = mark;
            i += k;
        }
        if (rc == 0 && n > word) rc = merge_word_cached(v, &sc, cache, text, word, n, o);
        tok_cache_free(cache);
    }
    free(sc.syms);
    free(sc.heap);
    free(text);
    return rc;
}

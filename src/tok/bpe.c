/* Byte-level BPE (tokenizer.ggml.model "gpt2"), as llama.cpp's
 * llm_tokenizer_bpe_session computes it:
 *   text -> pre-tokenizer regex pieces -> bytes -> GPT-2 byte-to-unicode
 *   symbols -> repeatedly merge the adjacent pair of lowest merge rank
 *   (ties: leftmost) -> token ids.
 *
 * Symbols are handled as ids, not strings: the merge table maps a pair of
 * symbol ids to its rank and the id of the joined text. A text that occurs in
 * tokenizer.ggml.merges but is no token gets a "pseudo" id above n_vocab, so
 * the merge sequence is exactly the string-based one; a pseudo symbol left at
 * the end is emitted as llama.cpp does (one token per byte of its text that is
 * a one-character token). Pieces of up to 64 bytes find the next pair with a
 * linear scan; longer ones use a heap, so a piece of m bytes (a megabyte of
 * one letter is one piece) costs O(m log m). Within one call, results are
 * cached per piece and merge lookups per pair. */
#include <stdlib.h>
#include <string.h>

#include "tok/heap.h"
#include "tok/tok_internal.h"

#define K_PRE "tokenizer.ggml.pre"
#define K_MERGES "tokenizer.ggml.merges"

/* ---- loading ------------------------------------------------------------ */

typedef struct pseudo_map {
    int32_t *slot; /* index into v->pseudo_text, -1 empty */
    uint32_t cap;
    int32_t cap_text;
} pseudo_map;

static int32_t pseudo_find(const duet_vocab *v, const pseudo_map *pm, const char *s, size_t n, uint32_t h) {
    if (!pm->cap) return -1;
    for (uint32_t i = h & (pm->cap - 1);; i = (i + 1) & (pm->cap - 1)) {
        int32_t k = pm->slot[i];
        if (k < 0) return -1;
        if (strlen(v->pseudo_text[k]) == n && !memcmp(v->pseudo_text[k], s, n)) return k;
    }
}

static int pseudo_grow(duet_vocab *v, pseudo_map *pm) {
    uint32_t cap = pm->cap ? pm->cap * 2 : 64;
    int32_t *slot = malloc(sizeof *slot * cap);
    if (!slot) return DUET_ENOMEM;
    memset(slot, 0xFF, sizeof *slot * cap);
    for (int32_t k = 0; k < v->n_pseudo; k++) {
        uint32_t h = tok_hash_bytes(v->pseudo_text[k], strlen(v->pseudo_text[k]));
        uint32_t i = h & (cap - 1);
        while (slot[i] >= 0) i = (i + 1) & (cap - 1);
        slot[i] = k;
    }
    free(pm->slot);
    pm->slot = slot;
    pm->cap = cap;
    return 0;
}

/* Symbol id of a text: its token id, else its pseudo id (created if new).
 * Texts containing NUL cannot be tokens of a byte-level vocabulary. */
static int32_t symbol_of(duet_vocab *v, pseudo_map *pm, const char *s, size_t n) {
    int32_t id = tok_strmap_get(&v->map, v, s, n);
    if (id >= 0) return id;
    if (memchr(s, 0, n)) return -1;
    uint32_t h = tok_hash_bytes(s, n);
    int32_t k = pseudo_find(v, pm, s, n, h);
    if (k >= 0) return v->n + k;
    if ((uint32_t)(v->n_pseudo + 1) * 2 > pm->cap && pseudo_grow(v, pm)) return -2;
    if (v->n_pseudo == pm->cap_text) {
        int32_t c = pm->cap_text ? pm->cap_text * 2 : 64;
        char **t = realloc(v->pseudo_text, sizeof *t * (size_t)c);
        if (!t) return -2;
        v->pseudo_text = t;
        pm->cap_text = c;
    }
    char *copy = malloc(n + 1);
    if (!copy) return -2;
    memcpy(copy, s, n);
    copy[n] = 0;
    k = v->n_pseudo++;
    v->pseudo_text[k] = copy;
    uint32_t i = h & (pm->cap - 1);
    while (pm->slot[i] >= 0) i = (i + 1) & (pm->cap - 1);
    pm->slot[i] = k;
    return v->n + k;
}

static int load_merges(duet_vocab *v, const duet_gguf *g, pseudo_map *pm, duet_err *err) {
    duet_gguf_vtype et;
    uint64_t n;
    int rc = duet_gguf_get_arr(g, K_MERGES, &et, &n, NULL, err);
    if (rc == DUET_ENOTFOUND)
        return duet_err_set(err, DUET_EFORMAT, "key '" K_MERGES "' not found (required by a gpt2 tokenizer)");
    if (rc) return rc;
    if (et != DUET_GGUF_STRING) return duet_err_set(err, DUET_EFORMAT, "key '" K_MERGES "' is not an array of strings");
    if (n > (1u << 28)) return duet_err_set(err, DUET_EFORMAT, "key '" K_MERGES "': %llu merges", (unsigned long long)n);
    if (tok_mergemap_init(&v->merges, (uint32_t)n)) return duet_err_set(err, DUET_ENOMEM, "out of memory");
    size_t cap = 256;
    char *joined = malloc(cap);
    if (!joined) return duet_err_set(err, DUET_ENOMEM, "out of memory");
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        duet_gguf_arr_str(g, K_MERGES, i, &s, &len, NULL);
        /* "left right", split at the first space after the first byte (llama.cpp) */
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp || sp + 1 == s + len) continue; /* malformed: can never apply */
        size_t ln = (size_t)(sp - s), rn = len - ln - 1;
        if (ln + rn > cap) {
            cap = (ln + rn) * 2;
            char *j = realloc(joined, cap);
            if (!j) {
                free(joined);
                return duet_err_set(err, DUET_ENOMEM, "out of memory");
            }
            joined = j;
        }
        memcpy(joined, s, ln);
        memcpy(joined + ln, sp + 1, rn);
        int32_t a = symbol_of(v, pm, s, ln), b = symbol_of(v, pm, sp + 1, rn), ab = symbol_of(v, pm, joined, ln + rn);
        if (a == -2 || b == -2 || ab == -2) {
            free(joined);
            return duet_err_set(err, DUET_ENOMEM, "out of memory");
        }
        if (a < 0 || b < 0 || ab < 0) continue;
        tok_mergemap_put(&v->merges, a, b, (int32_t)i, ab);
    }
    free(joined);
    return 0;
}

int tok_bpe_init(duet_vocab *v, const duet_gguf *g, duet_err *err) {
    const char *pre = "gpt-2", *s;
    size_t len;
    char name[128], known[512];
    int rc = duet_gguf_get_str(g, K_PRE, &s, &len, err);
    if (rc == 0) {
        if (len >= sizeof name || memchr(s, 0, len))
            return duet_err_set(err, DUET_EUNSUPPORTED, K_PRE " '%.*s...' is not supported (known: %s)",
                                (int)(len < 64 ? len : 64), s, tok_pretok_names(known, sizeof known));
        memcpy(name, s, len);
        name[len] = 0;
        pre = name;
    } else if (rc != DUET_ENOTFOUND) {
        return rc;
    }
    v->pre = tok_pretok_find(pre);
    if (!v->pre)
        return duet_err_set(err, DUET_EUNSUPPORTED, K_PRE " '%s' is not supported (known: %s)", pre,
                            tok_pretok_names(known, sizeof known));
    if (!(v->re = tok_pretok_compile(v->pre, err))) return err ? err->code : DUET_EUNSUPPORTED;

    pseudo_map pm = {0};
    rc = load_merges(v, g, &pm, err);
    for (int b = 0; rc == 0 && b < 256; b++) {
        char u[4];
        int k = tok_utf8_put(tok_byte_to_cp((uint8_t)b), u);
        v->byte_sym[b] = symbol_of(v, &pm, u, (size_t)k);
        if (v->byte_sym[b] < 0) rc = duet_err_set(err, DUET_ENOMEM, "out of memory");
    }
    free(pm.slot);
    return rc;
}

void tok_bpe_free(duet_vocab *v) {
    if (v->re) tok_pretok_release(v->re);
    v->re = NULL;
    tok_mergemap_free(&v->merges);
    for (int32_t k = 0; k < v->n_pseudo; k++) free(v->pseudo_text[k]);
    free(v->pseudo_text);
    v->pseudo_text = NULL;
    v->n_pseudo = 0;
}

/* ---- tokenizing --------------------------------------------------------- */

typedef struct sym {
    int32_t id, prev, next;
} sym;

typedef struct pair {
    int32_t rank, left, right, lid, rid;
    int32_t result; /* symbol id of the joined text */
} pair;

/* Direct-mapped per-call memo of merge-table lookups (hits and misses): the
 * pairs of natural text repeat, and this stays in L1/L2 where the merge
 * table (16 bytes x 2 x n_merges) does not. */
#define PAIR_MEMO 4096

typedef struct pair_memo {
    uint64_t key; /* UINT64_MAX: empty */
    int32_t rank; /* -1: no such merge */
    int32_t result;
} pair_memo;

typedef struct scratch {
    pair_memo *memo; /* (PAIR_MEMO) or NULL */
    sym *syms;
    size_t syms_cap;
    pair *heap;
    size_t heap_n, heap_cap;
    char *mapped; /* byte-to-unicode text of a piece (ignore_merges lookup) */
    size_t mapped_cap;
} scratch;

static inline int pair_before(const pair *a, const pair *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

DUET_DEFINE_HEAP(queue, scratch, pair, pair_before)

/* Rank of merging symbols a and b (-1 if no merge), *result the joined symbol. */
static inline int32_t merge_rank(const duet_vocab *v, scratch *sc, int32_t a, int32_t b, int32_t *result) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    pair_memo *e = sc->memo ? &sc->memo[(uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 52) & (PAIR_MEMO - 1)] : NULL;
    if (e && e->key == key) {
        *result = e->result;
        return e->rank;
    }
    const tok_merge *m = tok_mergemap_get(&v->merges, a, b);
    int32_t rank = m ? m->rank : -1;
    *result = m ? m->result : -1;
    if (e) *e = (pair_memo){key, rank, *result};
    return rank;
}

static int try_pair(const duet_vocab *v, scratch *sc, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return 0;
    int32_t a = sc->syms[left].id, b = sc->syms[right].id, result;
    int32_t rank = merge_rank(v, sc, a, b, &result);
    if (rank < 0) return 0;
    pair p = {rank, left, right, a, b, result};
    return queue_push(sc, p);
}

static void emit_symbol(const duet_vocab *v, int32_t id, tok_out *o);

/* The same merge order for short pieces without a heap: each round scans the
 * adjacent pairs for the lowest rank (the first one wins ties, i.e. the
 * leftmost), as the heap would pop it. */
#define SMALL_PIECE 64

static void bpe_piece_small(const duet_vocab *v, scratch *sc, const uint8_t *w, size_t m, tok_out *o) {
    int32_t id[SMALL_PIECE], rank[SMALL_PIECE], result[SMALL_PIECE];
    int8_t next[SMALL_PIECE], prev[SMALL_PIECE];
    int n = (int)m;
    for (int i = 0; i < n; i++) {
        id[i] = v->byte_sym[w[i]];
        next[i] = (int8_t)(i + 1 < n ? i + 1 : -1);
        prev[i] = (int8_t)(i - 1);
    }
    for (int i = 0; i + 1 < n; i++) rank[i] = merge_rank(v, sc, id[i], id[i + 1], &result[i]);
    rank[n - 1] = -1;
    for (;;) {
        int best = -1;
        for (int i = 0; i >= 0; i = next[i])
            if (rank[i] >= 0 && (best < 0 || rank[i] < rank[best])) best = i;
        if (best < 0) break;
        int r = next[best];
        id[best] = result[best];
        next[best] = next[r];
        if (next[r] >= 0) prev[next[r]] = (int8_t)best;
        rank[best] = next[best] >= 0 ? merge_rank(v, sc, id[best], id[next[best]], &result[best]) : -1;
        if (prev[best] >= 0) rank[prev[best]] = merge_rank(v, sc, id[prev[best]], id[best], &result[prev[best]]);
    }
    for (int i = 0; i >= 0; i = next[i]) emit_symbol(v, id[i], o);
}

static void emit_symbol(const duet_vocab *v, int32_t id, tok_out *o) {
    if (id < v->n) {
        tok_emit(o, id);
        return;
    }
    /* a pseudo symbol: llama.cpp emits the one-character tokens among its bytes */
    for (const char *p = v->pseudo_text[id - v->n]; *p; p++) {
        int32_t t = tok_strmap_get(&v->map, v, p, 1);
        if (t >= 0) tok_emit(o, t);
    }
}

static int bpe_piece(const duet_vocab *v, scratch *sc, const uint8_t *w, size_t m, tok_out *o) {
    if (m == 1) {
        emit_symbol(v, v->byte_sym[w[0]], o);
        return 0;
    }
    if (v->pre->ignore_merges) {
        if (sc->mapped_cap < 2 * m) {
            char *p = realloc(sc->mapped, 2 * m);
            if (!p) return DUET_ENOMEM;
            sc->mapped = p;
            sc->mapped_cap = 2 * m;
        }
        size_t k = 0;
        for (size_t i = 0; i < m; i++) k += (size_t)tok_utf8_put(tok_byte_to_cp(w[i]), sc->mapped + k);
        int32_t id = tok_strmap_get(&v->map, v, sc->mapped, k);
        if (id >= 0) {
            tok_emit(o, id);
            return 0;
        }
    }
    if (m <= SMALL_PIECE) {
        bpe_piece_small(v, sc, w, m, o);
        return 0;
    }
    if (sc->syms_cap < m) {
        sym *s = realloc(sc->syms, sizeof *s * m);
        if (!s) return DUET_ENOMEM;
        sc->syms = s;
        sc->syms_cap = m;
    }
    for (size_t i = 0; i < m; i++) {
        sc->syms[i].id = v->byte_sym[w[i]];
        sc->syms[i].prev = (int32_t)i - 1;
        sc->syms[i].next = i + 1 < m ? (int32_t)i + 1 : -1;
    }
    sc->heap_n = 0;
    for (size_t i = 1; i < m; i++)
        if (try_pair(v, sc, (int32_t)i - 1, (int32_t)i)) return DUET_ENOMEM;
    while (sc->heap_n) {
        pair p = queue_pop(sc);
        sym *l = &sc->syms[p.left], *r = &sc->syms[p.right];
        /* stale: one side was merged away or grew since the pair was queued */
        if (l->next != p.right || l->id != p.lid || r->id != p.rid) continue;
        l->id = p.result;
        l->next = r->next;
        if (r->next >= 0) sc->syms[r->next].prev = p.left;
        r->id = -1;
        r->next = -1;
        if (try_pair(v, sc, l->prev, p.left) || try_pair(v, sc, p.left, l->next)) return DUET_ENOMEM;
    }
    for (int32_t i = 0; i >= 0; i = sc->syms[i].next) emit_symbol(v, sc->syms[i].id, o);
    return 0;
}

/* bpe_piece through the per-call cache (pieces of one byte or longer than
 * TOK_CACHE_MAX_KEY bypass it). */
static int bpe_piece_cached(const duet_vocab *v, scratch *sc, tok_cache *cache, const uint8_t *w, size_t m,
                            tok_out *o) {
    if (!cache || m < 2 || m > TOK_CACHE_MAX_KEY) return bpe_piece(v, sc, w, m, o);
    uint32_t h = tok_hash_bytes(w, m);
    int n;
    const int32_t *ids = tok_cache_get(cache, w, m, h, &n);
    if (ids) {
        for (int i = 0; i < n; i++) tok_emit(o, ids[i]);
        return 0;
    }
    int64_t before = o->n;
    int rc = bpe_piece(v, sc, w, m, o);
    if (rc == 0 && o->n <= o->cap) tok_cache_put(cache, w, m, h, o->ids + before, (int)(o->n - before));
    return rc;
}

/* Copy of text with every byte that does not start a valid UTF-8 sequence
 * replaced by U+FFFD (llama.cpp's unicode_cpts_from_utf8 does the same). */
static char *sanitize_utf8(const char *text, size_t len, size_t *out_len) {
    char *out = malloc(len * 3 + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        int k = tok_utf8_valid_len((const uint8_t *)text + i, len - i);
        if (k > 0) {
            memcpy(out + o, text + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    *out_len = o;
    return out;
}

static int utf8_is_valid(const char *text, size_t len) {
    for (size_t i = 0; i < len;) {
        uint64_t w;
        if (i + 8 <= len && (memcpy(&w, text + i, 8), (w & 0x8080808080808080ull) == 0)) {
            i += 8; /* eight ASCII bytes */
            continue;
        }
        if ((uint8_t)text[i] < 0x80) {
            i++;
            continue;
        }
        int k = tok_utf8_valid_len((const uint8_t *)text + i, len - i);
        if (!k) return 0;
        i += (size_t)k;
    }
    return 1;
}

int tok_bpe_fragment(const duet_vocab *v, const char *text, size_t len, tok_out *o) {
    char *clean = NULL;
    if (!utf8_is_valid(text, len)) {
        if (!(clean = sanitize_utf8(text, len, &len))) return DUET_ENOMEM;
        text = clean;
    }
    scratch sc = {0};
    int rc = 0;
    tok_splitter *sp = tok_splitter_new(v);
    if (!sp) rc = DUET_ENOMEM;
    tok_cache *cache = len >= TOK_CACHE_MIN_TEXT ? tok_cache_new() : NULL;
    if (cache && (sc.memo = malloc(sizeof *sc.memo * PAIR_MEMO)))
        for (int i = 0; i < PAIR_MEMO; i++) sc.memo[i].key = UINT64_MAX;
    const uint8_t *u = (const uint8_t *)text;
    for (size_t pos = 0; rc == 0 && pos < len;) {
        size_t ms, me;
        int found = tok_splitter_next(sp, text, len, pos, &ms, &me);
        if (found <= 0) { /* no further match (or a matcher failure): the rest is one piece */
            rc = bpe_piece_cached(v, &sc, cache, u + pos, len - pos, o);
            break;
        }
        if (me <= ms) { /* an empty match cannot occur with the table's patterns; still make progress */
            size_t step = (size_t)tok_utf8_len(u[ms]);
            me = ms + (step < len - ms ? step : len - ms);
        }
        if (ms > pos) rc = bpe_piece_cached(v, &sc, cache, u + pos, ms - pos, o);
        if (rc == 0) rc = bpe_piece_cached(v, &sc, cache, u + ms, me - ms, o);
        pos = me;
    }
    tok_splitter_free(sp);
    tok_cache_free(cache);
    free(sc.memo);
    free(sc.syms);
    free(sc.heap);
    free(sc.mapped);
    free(clean);
    return rc;
}

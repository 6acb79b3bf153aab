/* Hash maps of the tokenizer: token text -> id, and (left, right) -> merge. */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

/* Eight bytes at a time (multiply-xorshift), so the short texts that
 * dominate lookups hash in a few instructions; the top bits are well mixed
 * for the slot index and the filter. */
uint32_t tok_hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    for (; n >= 8; n -= 8, s += 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
    }
    if (n) { /* 1..7 bytes: overlapping loads, as wyhash does (equal words only cost a compare) */
        uint64_t w;
        if (n >= 4) {
            uint32_t a, b;
            memcpy(&a, s, 4);
            memcpy(&b, s + n - 4, 4);
            w = (uint64_t)a << 32 | b;
        } else {
            w = (uint64_t)s[0] << 16 | (uint64_t)s[n >> 1] << 8 | s[n - 1];
        }
        h = (h ^ w) * 0x94D049BB133111EBull;
        h ^= h >> 29;
    }
    h *= 0xBF58476D1CE4E5B9ull;
    return (uint32_t)(h >> 32);
}

static uint32_t pow2_at_least(uint64_t n) {
    uint32_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* Filter bit of a hash: its top bits (the slot index uses the low ones). */
static inline uint32_t filter_bit(uint32_t h) { return (h >> 12) & (TOK_FILTER_BITS - 1); }

int tok_strmap_build(tok_strmap *m, const duet_vocab *v) {
    m->cap = pow2_at_least((uint64_t)v->n * 2 + 1);
    m->slot = malloc(sizeof *m->slot * m->cap);
    m->filter = calloc(TOK_FILTER_BITS / 64, sizeof *m->filter);
    if (!m->slot || !m->filter) return DUET_ENOMEM;
    for (uint32_t i = 0; i < m->cap; i++) m->slot[i].id = -1;
    uint32_t mask = m->cap - 1;
    for (int32_t id = 0; id < v->n; id++) {
        size_t len;
        const char *t = tok_text(v, id, &len);
        uint32_t h = tok_hash_bytes(t, len), f = filter_bit(h);
        m->filter[f / 64] |= 1ull << (f % 64);
        for (uint32_t i = h & mask;; i = (i + 1) & mask) {
            tok_strslot *s = &m->slot[i];
            if (s->id < 0) {
                *s = (tok_strslot){h, id, v->off[id], (uint32_t)len};
                break;
            }
            if (s->hash == h && s->len == len && memcmp(v->pool + s->off, t, len) == 0) {
                s->id = id; /* duplicate text: the last id wins, as in llama.cpp */
                s->off = v->off[id];
                break;
            }
        }
    }
    return 0;
}

int32_t tok_strmap_get(const tok_strmap *m, const duet_vocab *v, const char *s, size_t n) {
    uint32_t h = tok_hash_bytes(s, n), mask = m->cap - 1, f = filter_bit(h);
    if (!(m->filter[f / 64] >> (f % 64) & 1)) return -1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        const tok_strslot *e = &m->slot[i];
        if (e->id < 0) return -1;
        if (e->hash == h && e->len == n && memcmp(v->pool + e->off, s, n) == 0) return e->id;
    }
}

void tok_strmap_free(tok_strmap *m) {
    free(m->slot);
    free(m->filter);
    m->slot = NULL;
    m->filter = NULL;
}

static inline uint32_t merge_slot(uint64_t key, uint32_t mask) {
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

int tok_mergemap_init(tok_mergemap *m, uint32_t n_expected) {
    /* load factor 0.33..0.67: linear probing stays short, the table small (it is probed at random) */
    m->cap = pow2_at_least((uint64_t)n_expected * 3 / 2 + 1);
    m->slot = malloc(sizeof *m->slot * m->cap);
    if (!m->slot) return DUET_ENOMEM;
    for (uint32_t i = 0; i < m->cap; i++) m->slot[i].key = UINT64_MAX;
    return 0;
}

void tok_mergemap_put(tok_mergemap *m, int32_t left, int32_t right, int32_t rank, int32_t result) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint32_t mask = m->cap - 1;
    for (uint32_t i = merge_slot(key, mask);; i = (i + 1) & mask) {
        if (m->slot[i].key == key) return; /* first rank wins */
        if (m->slot[i].key == UINT64_MAX) {
            m->slot[i].key = key;
            m->slot[i].rank = rank;
            m->slot[i].result = result;
            return;
        }
    }
}

const tok_merge *tok_mergemap_get(const tok_mergemap *m, int32_t left, int32_t right) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint32_t mask = m->cap - 1;
    for (uint32_t i = merge_slot(key, mask);; i = (i + 1) & mask) {
        if (m->slot[i].key == key) return &m->slot[i];
        if (m->slot[i].key == UINT64_MAX) return NULL;
    }
}

void tok_mergemap_free(tok_mergemap *m) {
    free(m->slot);
    m->slot = NULL;
}

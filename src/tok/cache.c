/* Per-call cache of piece -> token ids. Natural text repeats its words, so a
 * long input tokenizes most pieces once; the cache lives for one
 * duet_tokenize call (the vocabulary stays immutable and thread-safe). */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

#define MAX_ENTRIES (1 << 16)

typedef struct entry {
    uint32_t hash, key_off, ids_off;
    uint16_t key_len, n_ids;
} entry;

struct tok_cache {
    int32_t *slot; /* (cap) entry index or -1 */
    uint32_t cap;
    entry *ent;
    uint32_t n_ent, cap_ent;
    char *keys;
    size_t n_keys, cap_keys;
    int32_t *ids;
    size_t n_ids, cap_ids;
};

tok_cache *tok_cache_new(void) {
    tok_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->cap = 1024;
    c->slot = malloc(sizeof *c->slot * c->cap);
    if (!c->slot) {
        free(c);
        return NULL;
    }
    memset(c->slot, 0xFF, sizeof *c->slot * c->cap);
    return c;
}

void tok_cache_free(tok_cache *c) {
    if (!c) return;
    free(c->slot);
    free(c->ent);
    free(c->keys);
    free(c->ids);
    free(c);
}

const int32_t *tok_cache_get(const tok_cache *c, const void *key, size_t len, uint32_t hash, int *n) {
    for (uint32_t i = hash & (c->cap - 1);; i = (i + 1) & (c->cap - 1)) {
        int32_t k = c->slot[i];
        if (k < 0) return NULL;
        const entry *e = &c->ent[k];
        if (e->hash == hash && e->key_len == len && !memcmp(c->keys + e->key_off, key, len)) {
            *n = e->n_ids;
            return c->ids + e->ids_off;
        }
    }
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* Best effort: a full cache or a failed allocation just stops caching. */
void tok_cache_put(tok_cache *c, const void *key, size_t len, uint32_t hash, const int32_t *ids, int n) {
    if (len > TOK_CACHE_MAX_KEY || n > 0xFFFF || c->n_ent >= MAX_ENTRIES) return;
    if ((c->n_ent + 1) * 2 > c->cap) {
        uint32_t cap = c->cap * 2;
        int32_t *slot = malloc(sizeof *slot * cap);
        if (!slot) return;
        memset(slot, 0xFF, sizeof *slot * cap);
        for (uint32_t k = 0; k < c->n_ent; k++) {
            uint32_t i = c->ent[k].hash & (cap - 1);
            while (slot[i] >= 0) i = (i + 1) & (cap - 1);
            slot[i] = (int32_t)k;
        }
        free(c->slot);
        c->slot = slot;
        c->cap = cap;
    }
    size_t cap_ent = c->cap_ent;
    if (grow((void **)&c->ent, &cap_ent, c->n_ent + 1, sizeof *c->ent)) return;
    c->cap_ent = (uint32_t)cap_ent;
    if (grow((void **)&c->keys, &c->cap_keys, c->n_keys + len, 1)) return;
    if (grow((void **)&c->ids, &c->cap_ids, c->n_ids + (size_t)n, sizeof *c->ids)) return;
    memcpy(c->keys + c->n_keys, key, len);
    memcpy(c->ids + c->n_ids, ids, sizeof *ids * (size_t)n);
    c->ent[c->n_ent] = (entry){hash, (uint32_t)c->n_keys, (uint32_t)c->n_ids, (uint16_t)len, (uint16_t)n};
    uint32_t i = hash & (c->cap - 1);
    while (c->slot[i] >= 0) i = (i + 1) & (c->cap - 1);
    c->slot[i] = (int32_t)c->n_ent++;
    c->n_keys += len;
    c->n_ids += (size_t)n;
}

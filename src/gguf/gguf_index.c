/* Name -> index hash for GGUF keys and tensor names: O(1) lookups and
 * duplicate detection without an O(n^2) scan (fuzzed files can hold many). */
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf_internal.h"

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

int gguf_index_build(gguf_index *ix, int64_t n, const char *(*name_at)(const void *ctx, int64_t i),
                     const void *ctx, int64_t *dup_first, int64_t *dup_second) {
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2) cap <<= 1;
    ix->slot = calloc(cap, sizeof *ix->slot);
    if (!ix->slot) return DUET_ENOMEM;
    ix->mask = cap - 1;
    for (int64_t i = 0; i < n; i++) {
        const char *name = name_at(ctx, i);
        uint64_t h = fnv1a(name) & ix->mask;
        while (ix->slot[h]) {
            int64_t j = ix->slot[h] - 1;
            if (!strcmp(name_at(ctx, j), name)) {
                *dup_first = j;
                *dup_second = i;
                gguf_index_free(ix);
                return 1;
            }
            h = (h + 1) & ix->mask;
        }
        ix->slot[h] = i + 1;
    }
    return 0;
}

int64_t gguf_index_find(const gguf_index *ix, const char *name,
                        const char *(*name_at)(const void *ctx, int64_t i), const void *ctx) {
    if (!ix->slot) return -1;
    uint64_t h = fnv1a(name) & ix->mask;
    while (ix->slot[h]) {
        int64_t j = ix->slot[h] - 1;
        if (!strcmp(name_at(ctx, j), name)) return j;
        h = (h + 1) & ix->mask;
    }
    return -1;
}

void gguf_index_free(gguf_index *ix) {
    free(ix->slot);
    ix->slot = NULL;
    ix->mask = 0;
}

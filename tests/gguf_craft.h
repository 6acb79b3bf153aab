/* Byte-level GGUF builder for tests: lets a test write exactly the header,
 * metadata and tensor infos it wants (valid or deliberately broken), without
 * going through duet's writer. Header-only; static functions. */
#ifndef DUET_GGUF_CRAFT_H
#define DUET_GGUF_CRAFT_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t *p;
    size_t n, cap;
} craft;

static inline void craft_bytes(craft *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static inline void craft_u8(craft *b, uint8_t v) { craft_bytes(b, &v, 1); }
static inline void craft_u32(craft *b, uint32_t v) { craft_bytes(b, &v, 4); }
static inline void craft_u64(craft *b, uint64_t v) { craft_bytes(b, &v, 8); }
static inline void craft_str(craft *b, const char *s) {
    craft_u64(b, strlen(s));
    craft_bytes(b, s, strlen(s));
}
static inline void craft_header(craft *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    craft_bytes(b, "GGUF", 4);
    craft_u32(b, version);
    craft_u64(b, n_tensors);
    craft_u64(b, n_kv);
}
/* Key + u32 type; the caller appends the value. */
static inline void craft_key(craft *b, const char *key, uint32_t type) {
    craft_str(b, key);
    craft_u32(b, type);
}
static inline void craft_tensor_info(craft *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                              uint64_t offset) {
    craft_str(b, name);
    craft_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) craft_u64(b, ne[d]);
    craft_u32(b, type);
    craft_u64(b, offset);
}
static inline void craft_pad(craft *b, size_t align) {
    while (b->n % align) craft_u8(b, 0);
}
static inline void craft_zeros(craft *b, size_t n) {
    while (n--) craft_u8(b, 0);
}
static inline int craft_save(const craft *b, const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(b->p, 1, b->n, f);
    return (fclose(f) == 0 && w == b->n) ? 0 : -1;
}
static inline void craft_free(craft *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

#endif

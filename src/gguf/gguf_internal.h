/* internal: not part of the public API; may change. */
/* duet — GGUF internals shared by the reader, the writer and the name index.
 * Not a public header: only the files in src/gguf include it. */
#ifndef DUET_GGUF_INTERNAL_H
#define DUET_GGUF_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "duet/gguf.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_ALIGNMENT (1u << 30)
#define GGUF_MAX_KEY_LEN 65535     /* the GGUF spec's limit for keys */
#define GGUF_MAX_ARRAY_DEPTH 8     /* arrays of arrays deeper than this are refused */

/* One key/value pair of an opened file. Value bytes stay in the mapping. */
typedef struct gguf_kv {
    char *key;                 /* NUL-terminated copy */
    duet_gguf_vtype type;
    const uint8_t *val;        /* raw encoded value (after the u32 type) */
    size_t val_len;            /* bytes of that encoding: copy_kv copies them verbatim */
    /* arrays only */
    duet_gguf_vtype elem_type;
    uint64_t n;                /* element count */
    const uint8_t *arr_data;   /* first element (after u32 type + u64 count) */
    uint64_t *str_off;         /* string arrays: offset of element i's length prefix from arr_data */
} gguf_kv;

/* Open-addressing hash from NUL-terminated name to index (keys, tensor names). */
typedef struct gguf_index {
    int64_t *slot;             /* index + 1; 0 = empty */
    uint64_t mask;             /* capacity - 1 (capacity a power of two) */
} gguf_index;

struct duet_gguf {
    const uint8_t *base;       /* the whole file */
    size_t size;
    int mapped;                /* 1: base is our mmap (munmap on close) */
    uint32_t version;
    size_t alignment;
    uint64_t data_offset;      /* start of the data section */
    int64_t n_kv;
    gguf_kv *kv;
    int64_t n_tensors;
    duet_gguf_tensor *tensors;
    gguf_index kv_index, tensor_index;
};

/* Size in bytes of a fixed-size value type; 0 for string, array and unknown. */
size_t gguf_vtype_size(uint32_t t);

/* Builds an index over n names given by name_at(ctx, i). If a name occurs
 * twice, returns 1 with *dup_first / *dup_second set (and the index freed);
 * DUET_ENOMEM on allocation failure; 0 on success. */
int gguf_index_build(gguf_index *ix, int64_t n, const char *(*name_at)(const void *ctx, int64_t i),
                     const void *ctx, int64_t *dup_first, int64_t *dup_second);
int64_t gguf_index_find(const gguf_index *ix, const char *name,
                        const char *(*name_at)(const void *ctx, int64_t i), const void *ctx);
void gguf_index_free(gguf_index *ix);

/* Block size, bytes per block and name of a tensor type; 0 if the type is
 * unknown (name may be NULL). */
int gguf_type_block(uint32_t type, int64_t *blck, size_t *type_size, const char **name);

#endif

/* duet — GGUF reader (mmap, validated) and writer.
 *
 * Format (v2/v3, little-endian): magic "GGUF", u32 version, u64 n_tensors,
 * u64 n_kv, then n_kv key/value pairs (gguf string key, u32 value type, value),
 * then n_tensors tensor infos (string name, u32 n_dims, u64 ne[n_dims],
 * u32 ggml type, u64 offset relative to the data section), padding to
 * general.alignment (default 32), then the data section.
 *
 * Every count, length, dimension and offset is validated against the file
 * size before it is used: duet_gguf_open() either returns a fully checked
 * handle or an error that names what is wrong. Strings handed out point into
 * the mapping and are NOT NUL-terminated unless stated (use the length). */
#ifndef DUET_GGUF_H
#define DUET_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "duet/api.h"
#include "duet/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Value types of GGUF metadata (file format values: append-only). */
typedef enum {
    DUET_GGUF_UINT8 = 0,
    DUET_GGUF_INT8 = 1,
    DUET_GGUF_UINT16 = 2,
    DUET_GGUF_INT16 = 3,
    DUET_GGUF_UINT32 = 4,
    DUET_GGUF_INT32 = 5,
    DUET_GGUF_FLOAT32 = 6,
    DUET_GGUF_BOOL = 7,
    DUET_GGUF_STRING = 8,
    DUET_GGUF_ARRAY = 9,
    DUET_GGUF_UINT64 = 10,
    DUET_GGUF_INT64 = 11,
    DUET_GGUF_FLOAT64 = 12,
    DUET_GGUF_NTYPES
} duet_gguf_vtype;

#define DUET_GGUF_MAX_DIMS 4

typedef struct duet_gguf duet_gguf;

typedef struct duet_gguf_tensor {
    const char *name;      /* NUL-terminated copy */
    uint32_t type;         /* duet_type (ggml numbering) */
    int n_dims;
    int64_t ne[DUET_GGUF_MAX_DIMS]; /* ne[0] is the contiguous dimension; unused dims are 1 */
    uint64_t offset;       /* relative to the data section */
    size_t nbytes;
    const void *data;      /* into the mapping; aligned to general.alignment */
} duet_gguf_tensor;

/* Opens and validates a file (read-only mmap). */
DUET_API int duet_gguf_open(duet_gguf **out, const char *path, duet_err *err);
/* Same over a caller-owned buffer that must outlive the handle (fuzzing, tests). */
DUET_API int duet_gguf_open_memory(duet_gguf **out, const void *data, size_t size, duet_err *err);
DUET_API void duet_gguf_close(duet_gguf *g); /* NULL is a no-op */

DUET_API uint32_t duet_gguf_version(const duet_gguf *g);
DUET_API size_t duet_gguf_alignment(const duet_gguf *g);
DUET_API size_t duet_gguf_file_size(const duet_gguf *g);
/* File offset where the data section (tensor offsets are relative to it) starts. */
DUET_API uint64_t duet_gguf_data_offset(const duet_gguf *g);

/* Metadata. Keys are NUL-terminated copies. */
DUET_API int64_t duet_gguf_n_kv(const duet_gguf *g);
DUET_API const char *duet_gguf_key(const duet_gguf *g, int64_t i);
DUET_API duet_gguf_vtype duet_gguf_kv_type(const duet_gguf *g, int64_t i);
DUET_API int64_t duet_gguf_find_key(const duet_gguf *g, const char *key); /* -1 if absent */

/* Typed getters by key. Return 0, DUET_ENOTFOUND if the key is absent, or
 * DUET_EFORMAT (with a message naming the key) if its type does not fit.
 * get_int accepts any integer type (and bool); get_float any float or integer. */
DUET_API int duet_gguf_get_int(const duet_gguf *g, const char *key, int64_t *out, duet_err *err);
DUET_API int duet_gguf_get_float(const duet_gguf *g, const char *key, double *out, duet_err *err);
DUET_API int duet_gguf_get_bool(const duet_gguf *g, const char *key, int *out, duet_err *err);
DUET_API int duet_gguf_get_str(const duet_gguf *g, const char *key, const char **s, size_t *len, duet_err *err);

/* Arrays. get_arr gives the element type, count and (for non-string element
 * types) a pointer to the packed little-endian elements: it may be unaligned,
 * read with memcpy. For string arrays use arr_str by index. */
DUET_API int duet_gguf_get_arr(const duet_gguf *g, const char *key, duet_gguf_vtype *elem_type,
                               uint64_t *n, const void **data, duet_err *err);
DUET_API int duet_gguf_arr_str(const duet_gguf *g, const char *key, uint64_t i,
                               const char **s, size_t *len, duet_err *err);

/* Tensors. */
DUET_API int64_t duet_gguf_n_tensors(const duet_gguf *g);
DUET_API const duet_gguf_tensor *duet_gguf_tensor_at(const duet_gguf *g, int64_t i);
DUET_API const duet_gguf_tensor *duet_gguf_find_tensor(const duet_gguf *g, const char *name); /* NULL if absent */

/* ---- writer ---------------------------------------------------------------
 * Collects metadata and tensors, then writes a GGUF v3 file in one go.
 * Tensor data is referenced, not copied: it must stay valid until
 * duet_gguf_writer_write() returns. Setting an existing key replaces it. */
typedef struct duet_gguf_writer duet_gguf_writer;

DUET_API duet_gguf_writer *duet_gguf_writer_new(void);
DUET_API void duet_gguf_writer_free(duet_gguf_writer *w); /* NULL is a no-op */

DUET_API int duet_gguf_set_u32(duet_gguf_writer *w, const char *key, uint32_t v);
DUET_API int duet_gguf_set_i32(duet_gguf_writer *w, const char *key, int32_t v);
DUET_API int duet_gguf_set_u64(duet_gguf_writer *w, const char *key, uint64_t v);
DUET_API int duet_gguf_set_f32(duet_gguf_writer *w, const char *key, float v);
DUET_API int duet_gguf_set_bool(duet_gguf_writer *w, const char *key, int v);
DUET_API int duet_gguf_set_str(duet_gguf_writer *w, const char *key, const char *v);
/* Numeric array (elements packed in elem_type's size, copied). */
DUET_API int duet_gguf_set_arr(duet_gguf_writer *w, const char *key, duet_gguf_vtype elem_type,
                               const void *data, uint64_t n);
DUET_API int duet_gguf_set_arr_str(duet_gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
/* Removes a key (DUET_ENOTFOUND if absent). Remove-then-set moves a key to
 * the end, which is how llama.cpp's gguf_set_val_* orders keys. */
DUET_API int duet_gguf_remove_key(duet_gguf_writer *w, const char *key);
/* Copies key/value i of a reader (any type, arrays included). */
DUET_API int duet_gguf_copy_kv(duet_gguf_writer *w, const duet_gguf *src, int64_t i);
DUET_API int duet_gguf_add_tensor(duet_gguf_writer *w, const char *name, uint32_t type, int n_dims,
                                  const int64_t *ne, const void *data);
/* A tensor whose bytes are produced while the file is written: fill(ctx,
 * name, dst, nbytes, err) must write exactly nbytes into dst and return 0, or
 * a DUET_E* code (with err set) to abort the write. Generated tensors share
 * one buffer, so writing a model needs memory for its largest tensor only. */
typedef int (*duet_gguf_fill_fn)(void *ctx, const char *name, void *dst, size_t nbytes, duet_err *err);
DUET_API int duet_gguf_add_tensor_fill(duet_gguf_writer *w, const char *name, uint32_t type, int n_dims,
                                       const int64_t *ne, duet_gguf_fill_fn fill, void *ctx);
DUET_API int duet_gguf_writer_write(duet_gguf_writer *w, const char *path, duet_err *err);

DUET_API const char *duet_gguf_vtype_name(duet_gguf_vtype t);

/* llama.cpp's general.file_type numbers (LLAMA_FTYPE_*): the name without
 * the ALL_/MOSTLY_ prefix ("F32", "Q4_K_M"), NULL if unknown; and back
 * (case-insensitive, -1 if unknown). */
DUET_API const char *duet_gguf_ftype_name(int ftype);
DUET_API int duet_gguf_ftype_from_name(const char *name);

#ifdef __cplusplus
}
#endif
#endif

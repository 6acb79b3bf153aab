/* GGUF reader: maps a file read-only and validates every count, length,
 * dimension and offset against the file size before anything is used, so a
 * handle that opened is safe to walk without further checks. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf/gguf_internal.h"

/* Sequential reader over the file bytes. ctx names the item being parsed
 * ("kv 3 ('general.name')") so that errors say where they are. */
typedef struct {
    const uint8_t *base;
    size_t size, pos;
    duet_err *err;
    char ctx[160];
} cursor;

static const char *sep(const cursor *c) { return c->ctx[0] ? ": " : ""; }

static int need(cursor *c, uint64_t n, const char *what) {
    if (n <= c->size - c->pos) return 0;
    return duet_err_set(c->err, DUET_EFORMAT,
                        "%s%s%s needs %" PRIu64 " bytes at offset %zu but the file ends at %zu bytes (truncated?)",
                        c->ctx, sep(c), what, n, c->pos, c->size);
}

static int rd_u32(cursor *c, uint32_t *v, const char *what) {
    int rc = need(c, 4, what);
    if (rc) return rc;
    memcpy(v, c->base + c->pos, 4);
    c->pos += 4;
    return 0;
}

static int rd_u64(cursor *c, uint64_t *v, const char *what) {
    int rc = need(c, 8, what);
    if (rc) return rc;
    memcpy(v, c->base + c->pos, 8);
    c->pos += 8;
    return 0;
}

/* A gguf string: u64 length then bytes (not NUL-terminated). */
static int rd_str(cursor *c, const uint8_t **s, uint64_t *len, const char *what) {
    int rc = rd_u64(c, len, what);
    if (rc) return rc;
    if (*len > c->size - c->pos)
        return duet_err_set(c->err, DUET_EFORMAT,
                            "%s%s%s length %" PRIu64 " at offset %zu runs past end of file (%zu bytes)",
                            c->ctx, sep(c), what, *len, c->pos - 8, c->size);
    *s = c->base + c->pos;
    c->pos += *len;
    return 0;
}

/* Copies a name (key or tensor name) into a NUL-terminated string, refusing
 * embedded NULs (the copy would silently differ from the file). */
static int dup_name(cursor *c, const uint8_t *s, uint64_t len, char **out, const char *what) {
    if (memchr(s, 0, len))
        return duet_err_set(c->err, DUET_EFORMAT, "%s%s%s contains a NUL byte", c->ctx, sep(c), what);
    char *p = malloc(len + 1);
    if (!p) return duet_err_set(c->err, DUET_ENOMEM, "out of memory copying %s", what);
    memcpy(p, s, len);
    p[len] = 0;
    *out = p;
    return 0;
}

/* Smallest number of bytes one element of type t can occupy. */
static uint64_t min_elem_size(uint32_t t) {
    if (t == DUET_GGUF_STRING) return 8;
    if (t == DUET_GGUF_ARRAY) return 12;
    return gguf_vtype_size(t);
}

static int check_vtype(cursor *c, uint32_t t, const char *what) {
    if (t < DUET_GGUF_NTYPES) return 0;
    return duet_err_set(c->err, DUET_EFORMAT, "%s%sunknown %s %u", c->ctx, sep(c), what, t);
}

static int skip_value(cursor *c, uint32_t t, int depth);

/* Array body (after its u32 type): u32 elem type, u64 count, elements. */
static int skip_array(cursor *c, int depth, uint32_t *elem_type, uint64_t *n) {
    int rc;
    if (depth >= GGUF_MAX_ARRAY_DEPTH)
        return duet_err_set(c->err, DUET_EFORMAT, "%s%sarrays nested deeper than %d levels",
                            c->ctx, sep(c), GGUF_MAX_ARRAY_DEPTH);
    if ((rc = rd_u32(c, elem_type, "array element type"))) return rc;
    if ((rc = check_vtype(c, *elem_type, "array element type"))) return rc;
    if ((rc = rd_u64(c, n, "array length"))) return rc;
    uint64_t m = min_elem_size(*elem_type);
    size_t left = c->size - c->pos;
    if (*n > left / m)
        return duet_err_set(c->err, DUET_EFORMAT,
                            "%s%sarray of %" PRIu64 " %s elements needs at least %" PRIu64
                            " bytes but only %zu remain in the file",
                            c->ctx, sep(c), *n, duet_gguf_vtype_name(*elem_type),
                            *n > UINT64_MAX / m ? UINT64_MAX : *n * m, left);
    size_t fixed = gguf_vtype_size(*elem_type);
    if (fixed) {
        c->pos += *n * fixed;
        return 0;
    }
    for (uint64_t i = 0; i < *n; i++)
        if ((rc = skip_value(c, *elem_type, depth + 1))) return rc;
    return 0;
}

static int skip_value(cursor *c, uint32_t t, int depth) {
    size_t fixed = gguf_vtype_size(t);
    if (fixed) {
        int rc = need(c, fixed, duet_gguf_vtype_name((duet_gguf_vtype)t));
        if (!rc) c->pos += fixed;
        return rc;
    }
    if (t == DUET_GGUF_STRING) {
        const uint8_t *s;
        uint64_t len;
        return rd_str(c, &s, &len, "string");
    }
    uint32_t et;
    uint64_t n;
    return skip_array(c, depth, &et, &n);
}

static int parse_kv(cursor *c, int64_t i, gguf_kv *kv) {
    const uint8_t *s;
    uint64_t len;
    int rc;
    snprintf(c->ctx, sizeof c->ctx, "kv %" PRId64, i);
    if ((rc = rd_str(c, &s, &len, "key"))) return rc;
    if (len == 0) return duet_err_set(c->err, DUET_EFORMAT, "%s: empty key", c->ctx);
    if (len > GGUF_MAX_KEY_LEN)
        return duet_err_set(c->err, DUET_EFORMAT, "%s: key length %" PRIu64 " exceeds %d",
                            c->ctx, len, GGUF_MAX_KEY_LEN);
    if ((rc = dup_name(c, s, len, &kv->key, "key"))) return rc;
    snprintf(c->ctx, sizeof c->ctx, "kv %" PRId64 " ('%.100s')", i, kv->key);
    uint32_t t;
    if ((rc = rd_u32(c, &t, "value type"))) return rc;
    if ((rc = check_vtype(c, t, "value type"))) return rc;
    kv->type = (duet_gguf_vtype)t;
    size_t start = c->pos;
    kv->val = c->base + start;
    if (t != DUET_GGUF_ARRAY) {
        if ((rc = skip_value(c, t, 0))) return rc;
    } else {
        uint32_t et;
        if ((rc = skip_array(c, 0, &et, &kv->n))) return rc;
        kv->elem_type = (duet_gguf_vtype)et;
        kv->arr_data = kv->val + 12;
        if (et == DUET_GGUF_STRING && kv->n > 0) {
            /* Index the strings once: arr_str is then O(1). Bounds were
             * checked by skip_array, so the lengths can be trusted. */
            kv->str_off = malloc(kv->n * sizeof *kv->str_off);
            if (!kv->str_off) return duet_err_set(c->err, DUET_ENOMEM, "%s: out of memory", c->ctx);
            uint64_t off = 0;
            for (uint64_t k = 0; k < kv->n; k++) {
                kv->str_off[k] = off;
                uint64_t l;
                memcpy(&l, kv->arr_data + off, 8);
                off += 8 + l;
            }
        }
    }
    kv->val_len = c->pos - start;
    return 0;
}

static int parse_tensor_info(cursor *c, int64_t i, duet_gguf_tensor *t) {
    const uint8_t *s;
    uint64_t len;
    int rc;
    char *name = NULL;
    snprintf(c->ctx, sizeof c->ctx, "tensor %" PRId64, i);
    if ((rc = rd_str(c, &s, &len, "name"))) return rc;
    if (len == 0) return duet_err_set(c->err, DUET_EFORMAT, "%s: empty name", c->ctx);
    if (len > GGUF_MAX_KEY_LEN)
        return duet_err_set(c->err, DUET_EFORMAT, "%s: name length %" PRIu64 " exceeds %d",
                            c->ctx, len, GGUF_MAX_KEY_LEN);
    if ((rc = dup_name(c, s, len, &name, "name"))) return rc;
    t->name = name;
    snprintf(c->ctx, sizeof c->ctx, "tensor '%.100s'", name);
    uint32_t n_dims;
    if ((rc = rd_u32(c, &n_dims, "n_dims"))) return rc;
    if (n_dims < 1 || n_dims > DUET_GGUF_MAX_DIMS)
        return duet_err_set(c->err, DUET_EFORMAT, "%s: n_dims %u (must be 1..%d)", c->ctx, n_dims,
                            DUET_GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    int64_t n_elem = 1;
    for (int d = 0; d < DUET_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        uint64_t ne;
        if ((rc = rd_u64(c, &ne, "dimension"))) return rc;
        if (ne == 0) return duet_err_set(c->err, DUET_EFORMAT, "%s: dimension %u is 0", c->ctx, d);
        if (ne > INT64_MAX || __builtin_mul_overflow(n_elem, (int64_t)ne, &n_elem))
            return duet_err_set(c->err, DUET_EFORMAT,
                                "%s: dimension %u (%" PRIu64 ") makes the element count overflow",
                                c->ctx, d, ne);
        t->ne[d] = (int64_t)ne;
    }
    if ((rc = rd_u32(c, &t->type, "type"))) return rc;
    int64_t blck;
    size_t tsize;
    const char *tname;
    if (!gguf_type_block(t->type, &blck, &tsize, &tname))
        return duet_err_set(c->err, DUET_EUNSUPPORTED, "%s: unknown tensor type %u", c->ctx, t->type);
    if (t->ne[0] % blck)
        return duet_err_set(c->err, DUET_EFORMAT,
                            "%s: ne[0] = %" PRId64 " is not a multiple of the %s block size %" PRId64,
                            c->ctx, t->ne[0], tname, blck);
    uint64_t nbytes;
    if (__builtin_mul_overflow((uint64_t)(n_elem / blck), (uint64_t)tsize, &nbytes) || nbytes > SIZE_MAX)
        return duet_err_set(c->err, DUET_EFORMAT, "%s: byte size overflows", c->ctx);
    t->nbytes = (size_t)nbytes;
    if ((rc = rd_u64(c, &t->offset, "offset"))) return rc;
    return 0;
}

static const char *kv_name_at(const void *ctx, int64_t i) { return ((const duet_gguf *)ctx)->kv[i].key; }
static const char *tensor_name_at(const void *ctx, int64_t i) {
    return ((const duet_gguf *)ctx)->tensors[i].name;
}

/* general.alignment: any integer type, nonzero power of two. */
static int read_alignment(duet_gguf *g, duet_err *err) {
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t i = gguf_index_find(&g->kv_index, "general.alignment", kv_name_at, g);
    if (i < 0) return 0;
    const gguf_kv *kv = &g->kv[i];
    size_t sz = gguf_vtype_size(kv->type);
    if (!sz || kv->type == DUET_GGUF_FLOAT32 || kv->type == DUET_GGUF_FLOAT64 || kv->type == DUET_GGUF_BOOL)
        return duet_err_set(err, DUET_EFORMAT, "general.alignment has type %s, expected uint32",
                            duet_gguf_vtype_name(kv->type));
    int64_t v;
    if (duet_gguf_get_int(g, "general.alignment", &v, err)) return DUET_EFORMAT;
    if (v <= 0 || (v & (v - 1)) || v > (int64_t)GGUF_MAX_ALIGNMENT)
        return duet_err_set(err, DUET_EFORMAT,
                            "general.alignment = %" PRId64 " (must be a power of two between 1 and %u)",
                            v, GGUF_MAX_ALIGNMENT);
    g->alignment = (size_t)v;
    return 0;
}

static int cmp_by_offset(const void *a, const void *b) {
    const duet_gguf_tensor *x = *(const duet_gguf_tensor *const *)a, *y = *(const duet_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Each tensor's data: aligned, inside the file, and not overlapping another. */
static int check_tensor_data(duet_gguf *g, duet_err *err) {
    if (g->n_tensors == 0) return 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        duet_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment)
            return duet_err_set(err, DUET_EFORMAT,
                                "tensor '%.100s': offset %" PRIu64 " is not a multiple of the alignment %zu",
                                t->name, t->offset, g->alignment);
        uint64_t start = g->data_offset + t->offset, end;
        if (start < g->data_offset || __builtin_add_overflow(start, (uint64_t)t->nbytes, &end) || end > g->size)
            return duet_err_set(err, DUET_EFORMAT,
                                "tensor '%.100s': data [offset %" PRIu64 ", %zu bytes] runs past end of file (%zu bytes)",
                                t->name, start < g->data_offset ? UINT64_MAX : start, t->nbytes, g->size);
        t->data = g->base + start;
    }
    const duet_gguf_tensor **order = malloc((size_t)g->n_tensors * sizeof *order);
    if (!order) return duet_err_set(err, DUET_ENOMEM, "out of memory");
    for (int64_t i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
    qsort(order, (size_t)g->n_tensors, sizeof *order, cmp_by_offset);
    int rc = 0;
    for (int64_t i = 1; i < g->n_tensors && !rc; i++) {
        const duet_gguf_tensor *a = order[i - 1], *b = order[i];
        if (a->offset + a->nbytes > b->offset)
            rc = duet_err_set(err, DUET_EFORMAT,
                              "tensors '%.100s' [offset %" PRIu64 ", %zu bytes] and '%.100s' [offset %" PRIu64
                              "] overlap",
                              a->name, a->offset, a->nbytes, b->name, b->offset);
    }
    free(order);
    return rc;
}

static int parse(duet_gguf *g, duet_err *err) {
    cursor c = {.base = g->base, .size = g->size, .pos = 0, .err = err, .ctx = ""};
    int rc;
    if (g->size < 4 || memcmp(g->base, "GGUF", 4))
        return duet_err_set(err, DUET_EFORMAT, "not a GGUF file (bad magic)");
    c.pos = 4;
    snprintf(c.ctx, sizeof c.ctx, "header");
    if ((rc = rd_u32(&c, &g->version, "version"))) return rc;
    if (g->version != 2 && g->version != 3) {
        if (g->version == 1) return duet_err_set(err, DUET_EUNSUPPORTED, "GGUF version 1 is not supported");
        if ((g->version & 0xffff) == 0)
            return duet_err_set(err, DUET_EUNSUPPORTED,
                                "GGUF version 0x%08x looks big-endian; only little-endian files are supported",
                                g->version);
        return duet_err_set(err, DUET_EUNSUPPORTED, "unsupported GGUF version %u", g->version);
    }
    uint64_t n_tensors, n_kv;
    if ((rc = rd_u64(&c, &n_tensors, "tensor count"))) return rc;
    if ((rc = rd_u64(&c, &n_kv, "metadata count"))) return rc;
    /* Every kv takes at least 13 bytes (u64 key length, 1 key byte, u32
     * type... and a value); every tensor info at least 33. */
    size_t left = g->size - c.pos;
    if (n_kv > left / 13)
        return duet_err_set(err, DUET_EFORMAT,
                            "header: %" PRIu64 " metadata entries cannot fit in the %zu bytes after the header",
                            n_kv, left);
    if (n_tensors > left / 33)
        return duet_err_set(err, DUET_EFORMAT,
                            "header: %" PRIu64 " tensors cannot fit in the %zu bytes after the header",
                            n_tensors, left);
    g->kv = calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) return duet_err_set(err, DUET_ENOMEM, "out of memory");
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = (int64_t)i + 1; /* so close() frees what this kv allocated */
        if ((rc = parse_kv(&c, (int64_t)i, &g->kv[i]))) return rc;
    }
    g->n_kv = (int64_t)n_kv;
    int64_t d1, d2;
    rc = gguf_index_build(&g->kv_index, g->n_kv, kv_name_at, g, &d1, &d2);
    if (rc == 1)
        return duet_err_set(err, DUET_EFORMAT, "duplicate key '%.200s' (kv %" PRId64 " and kv %" PRId64 ")",
                            g->kv[d1].key, d1, d2);
    if (rc) return duet_err_set(err, rc, "out of memory");
    if ((rc = read_alignment(g, err))) return rc;
    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors = (int64_t)i + 1;
        if ((rc = parse_tensor_info(&c, (int64_t)i, &g->tensors[i]))) return rc;
    }
    g->n_tensors = (int64_t)n_tensors;
    rc = gguf_index_build(&g->tensor_index, g->n_tensors, tensor_name_at, g, &d1, &d2);
    if (rc == 1)
        return duet_err_set(err, DUET_EFORMAT,
                            "duplicate tensor name '%.200s' (tensor %" PRId64 " and tensor %" PRId64 ")",
                            g->tensors[d1].name, d1, d2);
    if (rc) return duet_err_set(err, rc, "out of memory");
    g->data_offset = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    return check_tensor_data(g, err);
}

int duet_gguf_open_memory(duet_gguf **out, const void *data, size_t size, duet_err *err) {
    if (!out || (!data && size)) return duet_err_set(err, DUET_EINVAL, "duet_gguf_open_memory: bad arguments");
    *out = NULL;
    duet_gguf *g = calloc(1, sizeof *g);
    if (!g) return duet_err_set(err, DUET_ENOMEM, "out of memory");
    g->base = data;
    g->size = size;
    int rc = parse(g, err);
    if (rc) {
        duet_gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

int duet_gguf_open(duet_gguf **out, const char *path, duet_err *err) {
    if (!out || !path) return duet_err_set(err, DUET_EINVAL, "duet_gguf_open: bad arguments");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return duet_err_set(err, DUET_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return duet_err_set(err, DUET_EIO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return duet_err_set(err, DUET_EIO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return duet_err_set(err, DUET_EFORMAT, "%s: empty file, not a GGUF file", path);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return duet_err_set(err, DUET_EIO, "%s: mmap: %s", path, strerror(e));
    int rc = duet_gguf_open_memory(out, map, (size_t)st.st_size, err);
    if (rc) {
        munmap(map, (size_t)st.st_size);
        duet_err_prefix(err, "%s", path);
        return rc;
    }
    (*out)->mapped = 1;
    return 0;
}

void duet_gguf_close(duet_gguf *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].str_off);
    }
    for (int64_t i = 0; i < g->n_tensors; i++) free((char *)g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    gguf_index_free(&g->kv_index);
    gguf_index_free(&g->tensor_index);
    if (g->mapped) munmap((void *)g->base, g->size);
    free(g);
}

uint32_t duet_gguf_version(const duet_gguf *g) { return g->version; }
size_t duet_gguf_alignment(const duet_gguf *g) { return g->alignment; }
size_t duet_gguf_file_size(const duet_gguf *g) { return g->size; }
uint64_t duet_gguf_data_offset(const duet_gguf *g) { return g->data_offset; }

int64_t duet_gguf_n_kv(const duet_gguf *g) { return g->n_kv; }
const char *duet_gguf_key(const duet_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? g->kv[i].key : NULL;
}
duet_gguf_vtype duet_gguf_kv_type(const duet_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? g->kv[i].type : DUET_GGUF_NTYPES;
}
int64_t duet_gguf_find_key(const duet_gguf *g, const char *key) {
    return key ? gguf_index_find(&g->kv_index, key, kv_name_at, g) : -1;
}

int64_t duet_gguf_n_tensors(const duet_gguf *g) { return g->n_tensors; }
const duet_gguf_tensor *duet_gguf_tensor_at(const duet_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}
const duet_gguf_tensor *duet_gguf_find_tensor(const duet_gguf *g, const char *name) {
    int64_t i = name ? gguf_index_find(&g->tensor_index, name, tensor_name_at, g) : -1;
    return i < 0 ? NULL : &g->tensors[i];
}

/* GGUF v3 writer: collects metadata (already encoded) and tensor references,
 * then writes header, kv, tensor infos and alignment-padded data in one pass.
 * The file is written next to the target and renamed into place, so a reader
 * that maps the old file (quantize in place) never sees it change. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf_internal.h"

typedef struct {
    char *key;
    uint32_t type;
    uint8_t *val; /* encoded value, as it appears after the u32 type */
    size_t len;
} wkv;

typedef struct {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[DUET_GGUF_MAX_DIMS];
    const void *data;         /* NULL when fill is set */
    duet_gguf_fill_fn fill;   /* produces the bytes at write time */
    void *fill_ctx;
    size_t nbytes;
} wtensor;

struct duet_gguf_writer {
    wkv *kv;
    int64_t n_kv, cap_kv;
    wtensor *t;
    int64_t n_t, cap_t;
};

duet_gguf_writer *duet_gguf_writer_new(void) { return calloc(1, sizeof(duet_gguf_writer)); }

void duet_gguf_writer_free(duet_gguf_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    for (int64_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

/* Takes ownership of val (freed on failure too). Replaces an existing key. */
static int put_kv(duet_gguf_writer *w, const char *key, uint32_t type, uint8_t *val, size_t len) {
    if (!w || !key || !*key || strlen(key) > GGUF_MAX_KEY_LEN) {
        free(val);
        return DUET_EINVAL;
    }
    for (int64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) {
            free(w->kv[i].val);
            w->kv[i].type = type;
            w->kv[i].val = val;
            w->kv[i].len = len;
            return 0;
        }
    if (w->n_kv == w->cap_kv) {
        int64_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        wkv *p = realloc(w->kv, (size_t)cap * sizeof *p);
        if (!p) {
            free(val);
            return DUET_ENOMEM;
        }
        w->kv = p;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(val);
        return DUET_ENOMEM;
    }
    w->kv[w->n_kv++] = (wkv){k, type, val, len};
    return 0;
}

int duet_gguf_remove_key(duet_gguf_writer *w, const char *key) {
    if (!w || !key) return DUET_EINVAL;
    for (int64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) {
            free(w->kv[i].key);
            free(w->kv[i].val);
            memmove(&w->kv[i], &w->kv[i + 1], (size_t)(w->n_kv - i - 1) * sizeof *w->kv);
            w->n_kv--;
            return 0;
        }
    return DUET_ENOTFOUND;
}

static int put_scalar(duet_gguf_writer *w, const char *key, uint32_t type, const void *v, size_t size) {
    uint8_t *val = malloc(size);
    if (!val) return DUET_ENOMEM;
    memcpy(val, v, size);
    return put_kv(w, key, type, val, size);
}

int duet_gguf_set_u32(duet_gguf_writer *w, const char *key, uint32_t v) {
    return put_scalar(w, key, DUET_GGUF_UINT32, &v, 4);
}
int duet_gguf_set_i32(duet_gguf_writer *w, const char *key, int32_t v) {
    return put_scalar(w, key, DUET_GGUF_INT32, &v, 4);
}
int duet_gguf_set_u64(duet_gguf_writer *w, const char *key, uint64_t v) {
    return put_scalar(w, key, DUET_GGUF_UINT64, &v, 8);
}
int duet_gguf_set_f32(duet_gguf_writer *w, const char *key, float v) {
    return put_scalar(w, key, DUET_GGUF_FLOAT32, &v, 4);
}
int duet_gguf_set_bool(duet_gguf_writer *w, const char *key, int v) {
    uint8_t b = v != 0;
    return put_scalar(w, key, DUET_GGUF_BOOL, &b, 1);
}

int duet_gguf_set_str(duet_gguf_writer *w, const char *key, const char *v) {
    if (!v) return DUET_EINVAL;
    uint64_t n = strlen(v);
    uint8_t *val = malloc(8 + n);
    if (!val) return DUET_ENOMEM;
    memcpy(val, &n, 8);
    memcpy(val + 8, v, n);
    return put_kv(w, key, DUET_GGUF_STRING, val, 8 + n);
}

int duet_gguf_set_arr(duet_gguf_writer *w, const char *key, duet_gguf_vtype elem_type, const void *data,
                      uint64_t n) {
    size_t es = gguf_vtype_size(elem_type);
    if (!es || (n && !data) || n > (SIZE_MAX - 12) / es) return DUET_EINVAL;
    uint8_t *val = malloc(12 + n * es);
    if (!val) return DUET_ENOMEM;
    uint32_t t = elem_type;
    memcpy(val, &t, 4);
    memcpy(val + 4, &n, 8);
    if (n) memcpy(val + 12, data, n * es);
    return put_kv(w, key, DUET_GGUF_ARRAY, val, 12 + n * es);
}

int duet_gguf_set_arr_str(duet_gguf_writer *w, const char *key, const char *const *strs, uint64_t n) {
    if (n && !strs) return DUET_EINVAL;
    size_t total = 12;
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i]) return DUET_EINVAL;
        total += 8 + strlen(strs[i]);
    }
    uint8_t *val = malloc(total), *p = val;
    if (!val) return DUET_ENOMEM;
    uint32_t t = DUET_GGUF_STRING;
    memcpy(p, &t, 4);
    memcpy(p + 4, &n, 8);
    p += 12;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t l = strlen(strs[i]);
        memcpy(p, &l, 8);
        memcpy(p + 8, strs[i], l);
        p += 8 + l;
    }
    return put_kv(w, key, DUET_GGUF_ARRAY, val, total);
}

int duet_gguf_copy_kv(duet_gguf_writer *w, const duet_gguf *src, int64_t i) {
    if (!w || !src || i < 0 || i >= src->n_kv) return DUET_EINVAL;
    const gguf_kv *kv = &src->kv[i];
    uint8_t *val = malloc(kv->val_len ? kv->val_len : 1);
    if (!val) return DUET_ENOMEM;
    memcpy(val, kv->val, kv->val_len);
    return put_kv(w, kv->key, kv->type, val, kv->val_len);
}

static int add_tensor(duet_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                      const void *data, duet_gguf_fill_fn fill, void *fill_ctx) {
    if (!w || !name || !*name || strlen(name) > GGUF_MAX_KEY_LEN || !ne || (!data && !fill) || n_dims < 1 ||
        n_dims > DUET_GGUF_MAX_DIMS)
        return DUET_EINVAL;
    int64_t blck;
    size_t tsize;
    if (!gguf_type_block(type, &blck, &tsize, NULL)) return DUET_EUNSUPPORTED;
    int64_t n_elem = 1;
    for (int d = 0; d < n_dims; d++)
        if (ne[d] <= 0 || __builtin_mul_overflow(n_elem, ne[d], &n_elem)) return DUET_EINVAL;
    if (ne[0] % blck) return DUET_EINVAL;
    size_t nbytes;
    if (__builtin_mul_overflow((size_t)(n_elem / blck), tsize, &nbytes)) return DUET_EINVAL;
    for (int64_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return DUET_EINVAL;
    if (w->n_t == w->cap_t) {
        int64_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *p = realloc(w->t, (size_t)cap * sizeof *p);
        if (!p) return DUET_ENOMEM;
        w->t = p;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    if (!(t->name = strdup(name))) return DUET_ENOMEM;
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < DUET_GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->data = data;
    t->fill = fill;
    t->fill_ctx = fill_ctx;
    t->nbytes = nbytes;
    w->n_t++;
    return 0;
}

int duet_gguf_add_tensor(duet_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                         const void *data) {
    return add_tensor(w, name, type, n_dims, ne, data, NULL, NULL);
}

int duet_gguf_add_tensor_fill(duet_gguf_writer *w, const char *name, uint32_t type, int n_dims,
                              const int64_t *ne, duet_gguf_fill_fn fill, void *ctx) {
    return fill ? add_tensor(w, name, type, n_dims, ne, NULL, fill, ctx) : DUET_EINVAL;
}

static size_t pad_to(size_t n, size_t a) { return (n + a - 1) / a * a; }

/* general.alignment as set on the writer (uint32), else the default. */
static int writer_alignment(const duet_gguf_writer *w, size_t *align, duet_err *err) {
    *align = GGUF_DEFAULT_ALIGNMENT;
    for (int64_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, "general.alignment")) continue;
        uint32_t v;
        if (w->kv[i].type != DUET_GGUF_UINT32)
            return duet_err_set(err, DUET_EINVAL, "general.alignment must be uint32, not %s",
                                duet_gguf_vtype_name((duet_gguf_vtype)w->kv[i].type));
        memcpy(&v, w->kv[i].val, 4);
        if (!v || (v & (v - 1)) || v > GGUF_MAX_ALIGNMENT)
            return duet_err_set(err, DUET_EINVAL, "general.alignment = %u is not a power of two in 1..%u", v,
                                GGUF_MAX_ALIGNMENT);
        *align = v;
    }
    return 0;
}

static int emit(FILE *f, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, f) == n ? 0 : -1; }
static int emit_u32(FILE *f, uint32_t v) { return emit(f, &v, 4); }
static int emit_u64(FILE *f, uint64_t v) { return emit(f, &v, 8); }
static int emit_zeros(FILE *f, size_t n) {
    static const uint8_t zeros[64];
    while (n) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        if (emit(f, zeros, k)) return -1;
        n -= k;
    }
    return 0;
}

/* Returns 0, -1 on an I/O error (errno set), or a DUET_E* code from a fill
 * callback (err filled by it). */
static int write_all(const duet_gguf_writer *w, FILE *f, size_t align, duet_err *err) {
    size_t pos = 0;
    int bad = emit(f, "GGUF", 4) | emit_u32(f, 3) | emit_u64(f, (uint64_t)w->n_t) | emit_u64(f, (uint64_t)w->n_kv);
    pos += 24;
    for (int64_t i = 0; i < w->n_kv && !bad; i++) {
        size_t kl = strlen(w->kv[i].key);
        bad |= emit_u64(f, kl) | emit(f, w->kv[i].key, kl) | emit_u32(f, w->kv[i].type) |
               emit(f, w->kv[i].val, w->kv[i].len);
        pos += 8 + kl + 4 + w->kv[i].len;
    }
    uint64_t off = 0;
    size_t fill_max = 0;
    for (int64_t i = 0; i < w->n_t && !bad; i++) {
        const wtensor *t = &w->t[i];
        size_t nl = strlen(t->name);
        bad |= emit_u64(f, nl) | emit(f, t->name, nl) | emit_u32(f, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) bad |= emit_u64(f, (uint64_t)t->ne[d]);
        bad |= emit_u32(f, t->type) | emit_u64(f, off);
        pos += 8 + nl + 4 + 8 * (size_t)t->n_dims + 4 + 8;
        off += pad_to(t->nbytes, align);
        if (t->fill && t->nbytes > fill_max) fill_max = t->nbytes;
    }
    bad |= emit_zeros(f, pad_to(pos, align) - pos); /* always, as llama.cpp does */
    if (bad) return -1;
    /* Generated tensors share one buffer, so memory stays at the largest. */
    uint8_t *buf = fill_max ? malloc(fill_max) : NULL;
    if (fill_max && !buf) return duet_err_set(err, DUET_ENOMEM, "out of memory (%zu bytes for a tensor)", fill_max);
    int rc = 0;
    for (int64_t i = 0; i < w->n_t && !rc; i++) {
        const wtensor *t = &w->t[i];
        const void *data = t->data;
        if (t->fill) {
            if ((rc = t->fill(t->fill_ctx, t->name, buf, t->nbytes, err)) != 0) break;
            data = buf;
        }
        if (emit(f, data, t->nbytes) || emit_zeros(f, pad_to(t->nbytes, align) - t->nbytes)) rc = -1;
    }
    free(buf);
    return rc;
}

int duet_gguf_writer_write(duet_gguf_writer *w, const char *path, duet_err *err) {
    if (!w || !path) return duet_err_set(err, DUET_EINVAL, "duet_gguf_writer_write: bad arguments");
    size_t align;
    int rc = writer_alignment(w, &align, err);
    if (rc) return rc;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    if (!tmp) return duet_err_set(err, DUET_ENOMEM, "out of memory");
    snprintf(tmp, plen + 32, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        rc = duet_err_set(err, DUET_EIO, "%s: %s", path, strerror(errno));
        free(tmp);
        return rc;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    int bad = write_all(w, f, align, err);
    int e = errno;
    if (fclose(f) != 0 && !bad) {
        bad = -1;
        e = errno;
    }
    if (!bad && rename(tmp, path) != 0) {
        bad = -1;
        e = errno;
    }
    if (bad) {
        unlink(tmp);
        if (bad == -1) rc = duet_err_set(err, DUET_EIO, "%s: write failed: %s", path, strerror(e));
        else rc = bad; /* a fill callback's error, message already set */
    }
    free(tmp);
    return rc;
}

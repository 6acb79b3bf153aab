/* Typed access to GGUF metadata by key. The reader validated every value,
 * so these only check that the stored type fits what the caller asks for. */
#include <inttypes.h>
#include <string.h>

#include "gguf/gguf_internal.h"

static int lookup(const duet_gguf *g, const char *key, const gguf_kv **kv, duet_err *err) {
    int64_t i = duet_gguf_find_key(g, key);
    if (i < 0) return duet_err_set(err, DUET_ENOTFOUND, "key '%s' not found", key ? key : "(null)");
    *kv = &g->kv[i];
    return 0;
}

static int wrong_type(const gguf_kv *kv, const char *expected, duet_err *err) {
    return duet_err_set(err, DUET_EFORMAT, "key '%.200s' has type %s, expected %s", kv->key,
                        kv->type == DUET_GGUF_ARRAY ? "array" : duet_gguf_vtype_name(kv->type), expected);
}

/* Integer value of a scalar of any integer type (or bool); 0 if not one. */
static int scalar_int(const gguf_kv *kv, int64_t *out, int *too_big) {
    const uint8_t *p = kv->val;
    *too_big = 0;
    switch (kv->type) {
    case DUET_GGUF_UINT8: case DUET_GGUF_BOOL: *out = p[0]; return 1;
    case DUET_GGUF_INT8: { int8_t v; memcpy(&v, p, 1); *out = v; return 1; }
    case DUET_GGUF_UINT16: { uint16_t v; memcpy(&v, p, 2); *out = v; return 1; }
    case DUET_GGUF_INT16: { int16_t v; memcpy(&v, p, 2); *out = v; return 1; }
    case DUET_GGUF_UINT32: { uint32_t v; memcpy(&v, p, 4); *out = v; return 1; }
    case DUET_GGUF_INT32: { int32_t v; memcpy(&v, p, 4); *out = v; return 1; }
    case DUET_GGUF_INT64: { int64_t v; memcpy(&v, p, 8); *out = v; return 1; }
    case DUET_GGUF_UINT64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > INT64_MAX) *too_big = 1;
        *out = (int64_t)v;
        return 1;
    }
    default: return 0;
    }
}

int duet_gguf_get_int(const duet_gguf *g, const char *key, int64_t *out, duet_err *err) {
    const gguf_kv *kv = NULL;
    int rc = lookup(g, key, &kv, err), too_big;
    if (rc) return rc;
    int64_t v;
    if (!scalar_int(kv, &v, &too_big)) return wrong_type(kv, "an integer", err);
    if (too_big) return duet_err_set(err, DUET_EFORMAT, "key '%.200s': value exceeds int64", kv->key);
    *out = v;
    return 0;
}

int duet_gguf_get_float(const duet_gguf *g, const char *key, double *out, duet_err *err) {
    const gguf_kv *kv = NULL;
    int rc = lookup(g, key, &kv, err), too_big;
    if (rc) return rc;
    if (kv->type == DUET_GGUF_FLOAT32) {
        float f;
        memcpy(&f, kv->val, 4);
        *out = f;
        return 0;
    }
    if (kv->type == DUET_GGUF_FLOAT64) {
        memcpy(out, kv->val, 8);
        return 0;
    }
    int64_t v;
    if (kv->type == DUET_GGUF_BOOL || !scalar_int(kv, &v, &too_big)) return wrong_type(kv, "a number", err);
    if (too_big) {
        uint64_t u;
        memcpy(&u, kv->val, 8);
        *out = (double)u;
    } else {
        *out = (double)v;
    }
    return 0;
}

int duet_gguf_get_bool(const duet_gguf *g, const char *key, int *out, duet_err *err) {
    const gguf_kv *kv = NULL;
    int rc = lookup(g, key, &kv, err);
    if (rc) return rc;
    if (kv->type != DUET_GGUF_BOOL) return wrong_type(kv, "bool", err);
    *out = kv->val[0] != 0;
    return 0;
}

int duet_gguf_get_str(const duet_gguf *g, const char *key, const char **s, size_t *len, duet_err *err) {
    const gguf_kv *kv = NULL;
    int rc = lookup(g, key, &kv, err);
    if (rc) return rc;
    if (kv->type != DUET_GGUF_STRING) return wrong_type(kv, "string", err);
    uint64_t l;
    memcpy(&l, kv->val, 8);
    *s = (const char *)kv->val + 8;
    if (len) *len = (size_t)l;
    return 0;
}

int duet_gguf_get_arr(const duet_gguf *g, const char *key, duet_gguf_vtype *elem_type, uint64_t *n,
                      const void **data, duet_err *err) {
    const gguf_kv *kv = NULL;
    int rc = lookup(g, key, &kv, err);
    if (rc) return rc;
    if (kv->type != DUET_GGUF_ARRAY) return wrong_type(kv, "array", err);
    if (kv->elem_type == DUET_GGUF_ARRAY)
        return duet_err_set(err, DUET_EUNSUPPORTED, "key '%.200s': arrays of arrays are not supported", kv->key);
    if (elem_type) *elem_type = kv->elem_type;
    if (n) *n = kv->n;
    if (data) *data = kv->elem_type == DUET_GGUF_STRING ? NULL : kv->arr_data;
    return 0;
}

int duet_gguf_arr_str(const duet_gguf *g, const char *key, uint64_t i, const char **s, size_t *len,
                      duet_err *err) {
    const gguf_kv *kv = NULL;
    int rc = lookup(g, key, &kv, err);
    if (rc) return rc;
    if (kv->type != DUET_GGUF_ARRAY || kv->elem_type != DUET_GGUF_STRING)
        return duet_err_set(err, DUET_EFORMAT, "key '%.200s' is not an array of strings", kv->key);
    if (i >= kv->n)
        return duet_err_set(err, DUET_ERANGE, "key '%.200s': index %" PRIu64 " out of range (%" PRIu64 " strings)",
                            kv->key, i, kv->n);
    const uint8_t *p = kv->arr_data + kv->str_off[i];
    uint64_t l;
    memcpy(&l, p, 8);
    *s = (const char *)p + 8;
    if (len) *len = (size_t)l;
    return 0;
}

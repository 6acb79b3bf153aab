/* Hyperparameters of a llama / qwen2 GGUF, read the way llama.cpp reads them:
 * ARCH.* keys with llama.cpp's defaults where a key is optional. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"
#include "model/ops.h"

typedef struct {
    const duet_gguf *g;
    const char *arch;
    char key[160];
} reader;

static const char *key_of(reader *r, const char *suffix) {
    snprintf(r->key, sizeof r->key, "%s.%s", r->arch, suffix);
    return r->key;
}

/* An integer key, possibly stored per layer as an array whose values must
 * then all be equal. rc DUET_ENOTFOUND if absent (err untouched). */
static int get_int_any(reader *r, const char *suffix, int64_t *out, duet_err *err) {
    const char *key = key_of(r, suffix);
    int64_t i = duet_gguf_find_key(r->g, key);
    if (i < 0) return DUET_ENOTFOUND;
    if (duet_gguf_kv_type(r->g, i) != DUET_GGUF_ARRAY) return duet_gguf_get_int(r->g, key, out, err);
    duet_gguf_vtype et;
    uint64_t n;
    const void *data;
    int rc = duet_gguf_get_arr(r->g, key, &et, &n, &data, err);
    if (rc) return rc;
    if (n == 0 || (et != DUET_GGUF_UINT32 && et != DUET_GGUF_INT32))
        return duet_err_set(err, DUET_EFORMAT, "key '%s': expected an integer or a non-empty array of 32-bit integers", key);
    for (uint64_t k = 0; k < n; k++) {
        uint32_t v;
        memcpy(&v, (const char *)data + 4 * k, 4);
        if (k > 0 && (int64_t)v != *out)
            return duet_err_set(err, DUET_EUNSUPPORTED, "key '%s': per-layer values differ (layer %" PRIu64 "); "
                                "only uniform layers are supported", key, k);
        *out = et == DUET_GGUF_INT32 ? (int64_t)(int32_t)v : (int64_t)v;
    }
    return 0;
}

static int get_int(reader *r, const char *suffix, int required, int64_t dflt, int64_t lo, int64_t hi, int *out,
                   duet_err *err) {
    int64_t v = dflt;
    int rc = get_int_any(r, suffix, &v, err);
    if (rc == DUET_ENOTFOUND) {
        if (required) return duet_err_set(err, DUET_ENOTFOUND, "missing metadata key '%s'", key_of(r, suffix));
        v = dflt;
    } else if (rc) {
        return rc;
    }
    if (v < lo || v > hi)
        return duet_err_set(err, DUET_EFORMAT, "metadata key '%s' = %" PRId64 " is out of range [%" PRId64 ", %" PRId64 "]",
                            key_of(r, suffix), v, lo, hi);
    *out = (int)v;
    return 0;
}

static int get_float(reader *r, const char *suffix, int required, double dflt, float *out, duet_err *err) {
    double v = dflt;
    const char *key = key_of(r, suffix);
    if (duet_gguf_find_key(r->g, key) < 0) {
        if (required) return duet_err_set(err, DUET_ENOTFOUND, "missing metadata key '%s'", key);
        *out = (float)dflt;
        return 0;
    }
    int rc = duet_gguf_get_float(r->g, key, &v, err);
    if (rc == DUET_ENOTFOUND) {
        if (required) return duet_err_set(err, DUET_ENOTFOUND, "missing metadata key '%s'", key);
        v = dflt;
    } else if (rc) {
        return rc;
    }
    if (!isfinite(v)) return duet_err_set(err, DUET_EFORMAT, "metadata key '%s' is not finite", key);
    *out = (float)v;
    return 0;
}

/* HF's llama3 rope: frequency divisors per rotated pair (what
 * convert_hf_to_gguf.py stores as rope_freqs.weight). */
static int llama3_freqs(duet_model *m, duet_err *err) {
    const duet_hparams *hp = &m->hp;
    const int n = hp->n_rot / 2;
    m->rope_freqs = malloc((size_t)n * sizeof(float));
    if (!m->rope_freqs) return duet_err_set(err, DUET_ENOMEM, "out of memory");
    const double lo_wavelen = hp->rope_orig_ctx / hp->rope_low_freq_factor;
    const double hi_wavelen = hp->rope_orig_ctx / hp->rope_high_freq_factor;
    for (int i = 0; i < n; i++) {
        const double freq = 1.0 / pow(hp->rope_freq_base, (2.0 * i) / hp->n_rot);
        const double wavelen = 2.0 * M_PI / freq;
        double f;
        if (wavelen < hi_wavelen) {
            f = 1.0;
        } else if (wavelen > lo_wavelen) {
            f = hp->rope_scale_factor;
        } else {
            const double smooth = (hp->rope_orig_ctx / wavelen - hp->rope_low_freq_factor) /
                                  (hp->rope_high_freq_factor - hp->rope_low_freq_factor);
            f = 1.0 / ((1.0 - smooth) / hp->rope_scale_factor + smooth);
        }
        m->rope_freqs[i] = (float)f;
    }
    return 0;
}

int duet_model_read_hparams(duet_model *m, duet_err *err) {
    duet_hparams *hp = &m->hp;
    memset(hp, 0, sizeof *hp);
    const char *arch;
    size_t arch_len;
    int rc = duet_gguf_get_str(m->gguf, "general.architecture", &arch, &arch_len, err);
    if (rc == DUET_ENOTFOUND) return duet_err_set(err, DUET_ENOTFOUND, "missing metadata key 'general.architecture'");
    if (rc) return rc;
    if (arch_len == 5 && !memcmp(arch, "llama", 5)) {
        hp->arch = DUET_ARCH_LLAMA;
        hp->arch_name = "llama";
        hp->rope_type = DUET_ROPE_NORM;
    } else if (arch_len == 5 && !memcmp(arch, "qwen2", 5)) {
        hp->arch = DUET_ARCH_QWEN2;
        hp->arch_name = "qwen2";
        hp->rope_type = DUET_ROPE_NEOX;
    } else {
        return duet_err_set(err, DUET_EUNSUPPORTED, "unsupported architecture '%.*s' (supported: llama, qwen2)",
                            (int)(arch_len > 64 ? 64 : arch_len), arch);
    }
    reader r = {.g = m->gguf, .arch = hp->arch_name};
    const int big = 1 << 24;
    if ((rc = get_int(&r, "context_length", 1, 0, 1, big, &hp->n_ctx_train, err))) return rc;
    if ((rc = get_int(&r, "embedding_length", 1, 0, 1, big, &hp->n_embd, err))) return rc;
    if ((rc = get_int(&r, "block_count", 1, 0, 1, 4096, &hp->n_layer, err))) return rc;
    if ((rc = get_int(&r, "feed_forward_length", 1, 0, 1, big, &hp->n_ff, err))) return rc;
    if ((rc = get_int(&r, "attention.head_count", 1, 0, 1, 4096, &hp->n_head, err))) return rc;
    if ((rc = get_int(&r, "attention.head_count_kv", 0, hp->n_head, 1, hp->n_head, &hp->n_head_kv, err))) return rc;
    if (hp->n_head % hp->n_head_kv)
        return duet_err_set(err, DUET_EFORMAT, "%s.attention.head_count (%d) is not a multiple of head_count_kv (%d)",
                            r.arch, hp->n_head, hp->n_head_kv);
    const int dflt_hd = hp->n_embd % hp->n_head ? 0 : hp->n_embd / hp->n_head;
    if ((rc = get_int(&r, "attention.key_length", 0, dflt_hd, 1, 65536, &hp->head_dim, err))) return rc;
    int head_dim_v = 0;
    if ((rc = get_int(&r, "attention.value_length", 0, hp->head_dim, 1, 65536, &head_dim_v, err))) return rc;
    if (head_dim_v != hp->head_dim)
        return duet_err_set(err, DUET_EUNSUPPORTED, "%s.attention.value_length (%d) differs from key_length (%d)",
                            r.arch, head_dim_v, hp->head_dim);
    if ((rc = get_int(&r, "rope.dimension_count", 0, hp->head_dim, 2, hp->head_dim, &hp->n_rot, err))) return rc;
    if (hp->n_rot % 2) return duet_err_set(err, DUET_EFORMAT, "%s.rope.dimension_count (%d) is odd", r.arch, hp->n_rot);
    if ((rc = get_float(&r, "rope.freq_base", 0, 10000.0, &hp->rope_freq_base, err))) return rc;
    if (hp->rope_freq_base <= 0.0f)
        return duet_err_set(err, DUET_EFORMAT, "%s.rope.freq_base must be positive", r.arch);
    if ((rc = get_float(&r, "attention.layer_norm_rms_epsilon", 1, 0.0, &hp->rms_eps, err))) return rc;
    if (hp->rms_eps < 0.0f)
        return duet_err_set(err, DUET_EFORMAT, "%s.attention.layer_norm_rms_epsilon is negative", r.arch);

    /* rope scaling: llama.cpp takes rope.scaling.factor (or the older
     * rope.scale_linear) as a linear divisor of the angle; "llama3" (our
     * reading of HF's rope_scaling) turns into per-frequency divisors. */
    const char *type = "linear";
    size_t type_len = 6;
    if (duet_gguf_find_key(m->gguf, key_of(&r, "rope.scaling.type")) >= 0 &&
        (rc = duet_gguf_get_str(m->gguf, r.key, &type, &type_len, err)))
        return rc;
    float factor = 0.0f;
    if ((rc = get_float(&r, "rope.scaling.factor", 0, 0.0, &factor, err))) return rc;
    if (factor == 0.0f && (rc = get_float(&r, "rope.scale_linear", 0, 0.0, &factor, err))) return rc;
    if (factor < 0.0f) return duet_err_set(err, DUET_EFORMAT, "%s.rope.scaling.factor is negative", r.arch);
    hp->rope_scale_factor = factor == 0.0f ? 1.0f : factor;
    hp->rope_freq_scale = 1.0f;
    if (type_len == 6 && !memcmp(type, "llama3", 6)) {
        hp->rope_scaling = DUET_ROPE_SCALING_LLAMA3;
        if ((rc = get_float(&r, "rope.scaling.low_freq_factor", 0, 1.0, &hp->rope_low_freq_factor, err))) return rc;
        if ((rc = get_float(&r, "rope.scaling.high_freq_factor", 0, 4.0, &hp->rope_high_freq_factor, err))) return rc;
        if ((rc = get_int(&r, "rope.scaling.original_context_length", 0, 8192, 1, big, &hp->rope_orig_ctx, err)))
            return rc;
        if (factor == 0.0f) hp->rope_scale_factor = 8.0f;
        if (hp->rope_high_freq_factor <= hp->rope_low_freq_factor || hp->rope_low_freq_factor <= 0.0f)
            return duet_err_set(err, DUET_EFORMAT, "%s.rope.scaling: need 0 < low_freq_factor < high_freq_factor", r.arch);
    } else if ((type_len == 6 && !memcmp(type, "linear", 6)) || (type_len == 4 && !memcmp(type, "none", 4))) {
        hp->rope_scaling = factor != 0.0f && factor != 1.0f ? DUET_ROPE_SCALING_LINEAR : DUET_ROPE_SCALING_NONE;
        hp->rope_freq_scale = 1.0f / hp->rope_scale_factor;
    } else {
        return duet_err_set(err, DUET_EUNSUPPORTED, "%s.rope.scaling.type '%.*s' is not supported (none, linear, llama3)",
                            r.arch, (int)(type_len > 32 ? 32 : type_len), type);
    }

    int64_t ft = 0;
    if (duet_gguf_get_int(m->gguf, "general.file_type", &ft, NULL) == 0 && ft >= 0 && ft <= UINT32_MAX)
        hp->file_type = (uint32_t)ft;

    /* rope_freqs.weight (written by the converter for Llama 3.1+) wins over keys */
    const duet_gguf_tensor *rf = duet_gguf_find_tensor(m->gguf, "rope_freqs.weight");
    if (rf) {
        if (rf->type != DUET_TYPE_F32 || rf->ne[0] != hp->n_rot / 2 || rf->ne[1] != 1 || rf->ne[2] != 1)
            return duet_err_set(err, DUET_EFORMAT, "tensor 'rope_freqs.weight' must be F32 [%d], got %s [%" PRId64 "]",
                                hp->n_rot / 2, duet_type_name(rf->type), rf->ne[0]);
        m->rope_freqs = malloc((size_t)(hp->n_rot / 2) * sizeof(float));
        if (!m->rope_freqs) return duet_err_set(err, DUET_ENOMEM, "out of memory");
        memcpy(m->rope_freqs, rf->data, (size_t)(hp->n_rot / 2) * sizeof(float));
        for (int i = 0; i < hp->n_rot / 2; i++)
            if (!(m->rope_freqs[i] > 0.0f) || !isfinite(m->rope_freqs[i]))
                return duet_err_set(err, DUET_EFORMAT, "tensor 'rope_freqs.weight': element %d is not a positive number", i);
        hp->has_rope_freqs = 1;
        /* as llama.cpp: a linear factor, if any, still applies on top */
        hp->rope_scaling = DUET_ROPE_SCALING_LLAMA3;
    } else if (hp->rope_scaling == DUET_ROPE_SCALING_LLAMA3) {
        if ((rc = llama3_freqs(m, err))) return rc;
        hp->has_rope_freqs = 1;
    }
    return 0;
}

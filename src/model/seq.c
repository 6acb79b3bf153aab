/* Sequences: a KV cache per sequence, its position, rollback and copy.
 *
 * Layout, in the model's KV type: k is (n_layer, n_ctx, kv_dim), a position's
 * keys one row; v is (n_layer, kv_dim, n_ctx), transposed as in llama.cpp, so
 * that p.v runs over contiguous positions. Rollback is just a smaller
 * position: entries past it are overwritten before they are read again. */
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"
#include "model/ops.h"

int duet_seq_new(duet_seq **out, duet_model *m, int n_ctx, duet_err *err) {
    if (!out || !m) return duet_err_set(err, DUET_EINVAL, "duet_seq_new: NULL argument");
    *out = NULL;
    if (n_ctx <= 0) n_ctx = m->hp.n_ctx_train;
    const size_t kv_dim = (size_t)m->hp.n_head_kv * (size_t)m->hp.head_dim;
    const size_t elt = m->kv_type == DUET_KV_F16 ? 2 : 4;
    const size_t per_layer = (size_t)n_ctx * kv_dim;
    if (per_layer / kv_dim != (size_t)n_ctx || per_layer > SIZE_MAX / elt / (size_t)m->hp.n_layer / 2)
        return duet_err_set(err, DUET_ERANGE, "context of %d positions is too large", n_ctx);
    duet_seq *s = calloc(1, sizeof *s);
    if (!s) return duet_err_set(err, DUET_ENOMEM, "out of memory");
    s->model = m;
    s->n_ctx = n_ctx;
    s->elt = elt;
    s->layer_stride = per_layer;
    /* calloc: zero pages are mapped lazily, so a long context costs memory
     * only as far as it is used */
    s->k = calloc((size_t)m->hp.n_layer * per_layer, elt); /* (n_layer, n_ctx, kv_dim) */
    /* (n_layer, kv_dim, n_ctx) + slack: attention loads whole vectors of a
     * row and masks the positions past the sequence */
    s->v = calloc((size_t)m->hp.n_layer * per_layer + DUET_V_SLACK, elt);
    if (!s->k || !s->v) {
        duet_seq_free(s);
        return duet_err_set(err, DUET_ENOMEM, "cannot allocate a KV cache of %d positions (%zu MiB)", n_ctx,
                            (size_t)m->hp.n_layer * per_layer * elt * 2 >> 20);
    }
    s->kv_bytes = ((size_t)m->hp.n_layer * per_layer * 2 + DUET_V_SLACK) * elt;
    atomic_fetch_add(&m->kv_bytes, s->kv_bytes);
    *out = s;
    return 0;
}

void duet_seq_free(duet_seq *s) {
    if (!s) return;
    atomic_fetch_sub(&s->model->kv_bytes, s->kv_bytes);
    free(s->k);
    free(s->v);
    free(s);
}

duet_model *duet_seq_model(const duet_seq *s) { return s->model; }
int duet_seq_pos(const duet_seq *s) { return s->pos; }
int duet_seq_n_ctx(const duet_seq *s) { return s->n_ctx; }
size_t duet_seq_kv_bytes(const duet_seq *s) { return s ? s->kv_bytes : 0; }

int duet_seq_set_decode_consistent(duet_seq *s, int on) {
    if (!s) return DUET_EINVAL;
    s->decode_consistent = on != 0;
    return 0;
}

int duet_seq_decode_consistent(const duet_seq *s) { return s ? s->decode_consistent : 0; }

int duet_rollback(duet_seq *s, int n_keep) {
    if (!s) return DUET_EINVAL;
    if (n_keep < 0 || n_keep > s->pos) return DUET_ERANGE;
    s->pos = n_keep;
    return 0;
}

int duet_seq_copy(duet_seq *dst, const duet_seq *src, duet_err *err) {
    if (!dst || !src) return duet_err_set(err, DUET_EINVAL, "duet_seq_copy: NULL argument");
    if (dst == src) return 0;
    if (dst->model != src->model)
        return duet_err_set(err, DUET_EINVAL, "duet_seq_copy: sequences belong to different models");
    if (src->pos > dst->n_ctx)
        return duet_err_set(err, DUET_ERANGE, "duet_seq_copy: source holds %d positions, destination has room for %d",
                            src->pos, dst->n_ctx);
    const duet_hparams *hp = &src->model->hp;
    const size_t kv_dim = (size_t)hp->n_head_kv * (size_t)hp->head_dim, elt = src->elt;
    for (int il = 0; il < hp->n_layer; il++) {
        const char *sk = (const char *)src->k + il * src->layer_stride * elt;
        const char *sv = (const char *)src->v + il * src->layer_stride * elt;
        char *dk = (char *)dst->k + il * dst->layer_stride * elt, *dv = (char *)dst->v + il * dst->layer_stride * elt;
        memcpy(dk, sk, kv_dim * elt * (size_t)src->pos);
        for (size_t d = 0; d < kv_dim; d++)
            memcpy(dv + d * (size_t)dst->n_ctx * elt, sv + d * (size_t)src->n_ctx * elt, (size_t)src->pos * elt);
    }
    dst->pos = src->pos;
    return 0;
}

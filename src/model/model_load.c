/* Loading a llama / qwen2 GGUF: hyperparameters, then a view of every weight
 * tensor inside the mapping, each checked for presence, shape and type. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/kernels.h"
#include "model/model_internal.h"

duet_model_params duet_model_default_params(void) {
    duet_model_params p = {.n_threads = 0, .pool = NULL, .kv_type = DUET_KV_F16, .n_ubatch = 512};
    return p;
}

/* Finds a tensor with exactly the shape (ne0, ne1) (ne1 = 1 for vectors).
 * optional: absence is not an error (*out = NULL). */
static int find(duet_model *m, const char *name, int64_t ne0, int64_t ne1, int optional,
                const duet_gguf_tensor **out, duet_err *err) {
    const duet_gguf_tensor *t = duet_gguf_find_tensor(m->gguf, name);
    *out = t;
    if (!t) {
        if (optional) return 0;
        return duet_err_set(err, DUET_ENOTFOUND, "missing tensor '%s' (architecture %s)", name, m->hp.arch_name);
    }
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1)
        return duet_err_set(err, DUET_EFORMAT,
                            "tensor '%s' has shape [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64
                            "], expected [%" PRId64 ", %" PRId64 "]",
                            name, t->ne[0], t->ne[1], t->ne[2], t->ne[3], ne0, ne1);
    return 0;
}

static int get_weight(duet_model *m, const char *name, int64_t n_in, int64_t n_out, int optional,
                      duet_weight *w, duet_err *err) {
    const duet_gguf_tensor *t;
    int rc = find(m, name, n_in, n_out, optional, &t, err);
    if (rc || !t) return rc;
    const duet_type_traits *tr = duet_type_info(t->type);
    if (!tr || !tr->is_weight_type)
        return duet_err_set(err, DUET_EUNSUPPORTED, "tensor '%s' has unsupported type %s (%u)", name,
                            duet_type_name(t->type), (unsigned)t->type);
    if (n_in % tr->blck)
        return duet_err_set(err, DUET_EFORMAT, "tensor '%s': row length %" PRId64 " is not a multiple of the %s block (%d)",
                            name, n_in, tr->name, tr->blck);
    w->type = (duet_type)t->type;
    w->data = t->data;
    w->n_in = n_in;
    w->n_out = n_out;
    w->row_size = duet_row_size(w->type, n_in);
    w->packed = NULL;
    const size_t packed = duet_repack_bytes(w->type, n_in, n_out);
    if (packed) {
        w->packed = aligned_alloc(64, (packed + 63) / 64 * 64);
        if (!w->packed) return duet_err_set(err, DUET_ENOMEM, "out of memory repacking '%s' (%zu bytes)", name, packed);
        duet_repack(w->type, w->data, n_in, n_out, w->packed);
    }
    return 0;
}

static int get_vector(duet_model *m, const char *name, int64_t n, int optional, const float **v, duet_err *err) {
    const duet_gguf_tensor *t;
    *v = NULL;
    int rc = find(m, name, n, 1, optional, &t, err);
    if (rc || !t) return rc;
    if (t->type != DUET_TYPE_F32)
        return duet_err_set(err, DUET_EUNSUPPORTED, "tensor '%s' has type %s, expected F32", name, duet_type_name(t->type));
    *v = (const float *)t->data;
    return 0;
}

static int load_tensors(duet_model *m, duet_err *err) {
    duet_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, F = hp->n_ff;
    const int64_t QD = (int64_t)hp->n_head * hp->head_dim, KVD = (int64_t)hp->n_head_kv * hp->head_dim;
    const duet_gguf_tensor *te = duet_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!te) return duet_err_set(err, DUET_ENOTFOUND, "missing tensor 'token_embd.weight'");
    if (te->ne[1] < 1 || te->ne[1] > INT32_MAX)
        return duet_err_set(err, DUET_EFORMAT, "tensor 'token_embd.weight': bad vocabulary size %" PRId64, te->ne[1]);
    hp->n_vocab = (int)te->ne[1];
    int64_t nv = 0;
    char key[96];
    snprintf(key, sizeof key, "%s.vocab_size", hp->arch_name);
    if (duet_gguf_get_int(m->gguf, key, &nv, NULL) == 0 && nv != hp->n_vocab)
        return duet_err_set(err, DUET_EFORMAT, "%s = %" PRId64 " but token_embd.weight has %d rows", key, nv, hp->n_vocab);
    int rc;
    if ((rc = get_weight(m, "token_embd.weight", E, hp->n_vocab, 0, &m->tok_embd, err))) return rc;
    if ((rc = get_vector(m, "output_norm.weight", E, 0, &m->output_norm, err))) return rc;
    m->output.data = NULL;
    if ((rc = get_weight(m, "output.weight", E, hp->n_vocab, 1, &m->output, err))) return rc;
    hp->tied_output = m->output.data == NULL;
    if (hp->tied_output) m->output = m->tok_embd;

    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return duet_err_set(err, DUET_ENOMEM, "out of memory");
    char name[96];
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, il), name)
    for (int il = 0; il < hp->n_layer; il++) {
        duet_layer *L = &m->layers[il];
        if ((rc = get_vector(m, NAME("attn_norm.weight"), E, 0, &L->attn_norm, err))) return rc;
        if ((rc = get_weight(m, NAME("attn_q.weight"), E, QD, 0, &L->wq, err))) return rc;
        if ((rc = get_weight(m, NAME("attn_k.weight"), E, KVD, 0, &L->wk, err))) return rc;
        if ((rc = get_weight(m, NAME("attn_v.weight"), E, KVD, 0, &L->wv, err))) return rc;
        if ((rc = get_weight(m, NAME("attn_output.weight"), QD, E, 0, &L->wo, err))) return rc;
        const int bias_needed = hp->arch == DUET_ARCH_QWEN2;
        if ((rc = get_vector(m, NAME("attn_q.bias"), QD, !bias_needed, &L->bq, err))) return rc;
        if ((rc = get_vector(m, NAME("attn_k.bias"), KVD, !bias_needed, &L->bk, err))) return rc;
        if ((rc = get_vector(m, NAME("attn_v.bias"), KVD, !bias_needed, &L->bv, err))) return rc;
        if ((rc = get_vector(m, NAME("attn_output.bias"), E, 1, &L->bo, err))) return rc;
        if ((rc = get_vector(m, NAME("ffn_norm.weight"), E, 0, &L->ffn_norm, err))) return rc;
        if ((rc = get_weight(m, NAME("ffn_gate.weight"), E, F, 0, &L->gate, err))) return rc;
        if ((rc = get_weight(m, NAME("ffn_up.weight"), E, F, 0, &L->up, err))) return rc;
        if ((rc = get_weight(m, NAME("ffn_down.weight"), F, E, 0, &L->down, err))) return rc;
        if (L->bq || L->bk || L->bv) hp->has_qkv_bias = 1;
    }
#undef NAME
    return 0;
}

int duet_model_load(duet_model **out, const char *path, const duet_model_params *p, duet_err *err) {
    if (!out || !path) return duet_err_set(err, DUET_EINVAL, "duet_model_load: NULL argument");
    *out = NULL;
    duet_model_params dp = duet_model_default_params();
    if (!p) p = &dp;
    if (p->kv_type != DUET_KV_F16 && p->kv_type != DUET_KV_F32)
        return duet_err_set(err, DUET_EINVAL, "unknown KV cache type %d", (int)p->kv_type);
    duet_model *m = calloc(1, sizeof *m);
    if (!m) return duet_err_set(err, DUET_ENOMEM, "out of memory");
    pthread_mutex_init(&m->eval_lock, NULL);
    atomic_init(&m->kv_bytes, 0);
    m->kv_type = p->kv_type;
    m->matmul = duet_matmul;
    m->n_ubatch = p->n_ubatch > 0 ? p->n_ubatch : 512;
    int rc = duet_gguf_open(&m->gguf, path, err);
    if (rc) {
        duet_model_free(m);
        return rc;
    }
    if ((rc = duet_model_read_hparams(m, err))) goto fail;
    if ((rc = load_tensors(m, err))) goto fail;
    if (p->pool) {
        m->pool = p->pool;
    } else {
        m->pool = duet_pool_new(p->n_threads);
        m->own_pool = 1;
        if (!m->pool) {
            rc = duet_err_set(err, DUET_ENOMEM, "cannot create a thread pool of %d threads", p->n_threads);
            goto fail;
        }
    }
    *out = m;
    return 0;
fail:
    duet_err_prefix(err, "%s", path);
    duet_model_free(m);
    return rc;
}

void duet_model_free(duet_model *m) {
    if (!m) return;
    duet_workspace_free(&m->ws);
    if (m->own_pool) duet_pool_free(m->pool);
    free(m->tok_embd.packed);
    if (m->output.packed != m->tok_embd.packed) free(m->output.packed);
    for (int il = 0; m->layers && il < m->hp.n_layer; il++) {
        duet_layer *L = &m->layers[il];
        duet_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
        for (size_t i = 0; i < sizeof ws / sizeof *ws; i++) free(ws[i]->packed);
    }
    free(m->layers);
    free(m->rope_freqs);
    duet_gguf_close(m->gguf);
    pthread_mutex_destroy(&m->eval_lock);
    free(m);
}

const duet_hparams *duet_model_hparams(const duet_model *m) { return &m->hp; }
const duet_gguf *duet_model_gguf(const duet_model *m) { return m->gguf; }
duet_pool *duet_model_pool(duet_model *m) { return m->pool; }
duet_kv_type duet_model_kv_type(const duet_model *m) { return m->kv_type; }
int duet_model_n_vocab(const duet_model *m) { return m->hp.n_vocab; }
size_t duet_model_kv_bytes(const duet_model *m) { return m ? atomic_load(&m->kv_bytes) : 0; }

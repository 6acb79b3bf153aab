/* Trainer files: GGUF export/import (llama.cpp tensor names and layout) and
 * raw checkpoints (parameters + AdamW moments + caller state). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/gguf.h"
#include "duet/quant.h"
#include "duet/train.h"

/* One GGUF tensor per (parameter, layer): name, pointer, ne0 (n_in), ne1 (n_out). */
typedef struct {
    char name[64];
    float *data;
    int64_t ne0, ne1; /* ne1 = 1 for vectors */
} gguf_slot;

static int list_slots(const duet_tmodel *m, const duet_tparams *p, gguf_slot *s) {
    const duet_tconfig *c = &m->cfg;
    int64_t C = c->n_embd, F = c->n_ff, V = c->n_vocab;
    int n = 0;
#define SLOT(nm, ptr, a, b)                                                  \
    do {                                                                     \
        snprintf(s[n].name, sizeof s[n].name, "%s", nm);                     \
        s[n].data = (ptr);                                                   \
        s[n].ne0 = (a);                                                      \
        s[n].ne1 = (b);                                                      \
        n++;                                                                 \
    } while (0)
    SLOT("token_embd.weight", p->token_embd, C, V);
    for (int l = 0; l < c->n_layer; l++) {
        char nm[64];
        size_t CC = (size_t)C * C, FC = (size_t)F * C;
#define LSLOT(suffix, ptr, a, b) do { snprintf(nm, sizeof nm, "blk.%d.%s", l, suffix); SLOT(nm, ptr, a, b); } while (0)
        LSLOT("attn_norm.weight", p->attn_norm + l * C, C, 1);
        LSLOT("attn_q.weight", p->wq + l * CC, C, C);
        LSLOT("attn_k.weight", p->wk + l * CC, C, C);
        LSLOT("attn_v.weight", p->wv + l * CC, C, C);
        LSLOT("attn_output.weight", p->wo + l * CC, C, C);
        LSLOT("ffn_norm.weight", p->ffn_norm + l * C, C, 1);
        LSLOT("ffn_gate.weight", p->w_gate + l * FC, C, F);
        LSLOT("ffn_up.weight", p->w_up + l * FC, C, F);
        LSLOT("ffn_down.weight", p->w_down + l * FC, F, C);
#undef LSLOT
    }
    SLOT("output_norm.weight", p->output_norm, C, 1);
    if (!c->tied) SLOT("output.weight", p->output, C, V);
#undef SLOT
    return n;
}

int duet_tmodel_save_gguf(const duet_tmodel *m, const char *path, uint32_t wtype, const duet_gguf *tok,
                          const char *name, duet_err *err) {
    if (wtype != DUET_TYPE_F32 && wtype != DUET_TYPE_F16)
        return duet_err_set(err, DUET_EUNSUPPORTED, "%s: export supports F32 and F16 only", path);
    const duet_tconfig *c = &m->cfg;
    int n_slots = 3 + 9 * c->n_layer;
    gguf_slot *s = malloc(sizeof *s * n_slots);
    uint16_t *half = wtype == DUET_TYPE_F16 ? malloc(sizeof(uint16_t) * m->n_params) : NULL;
    duet_gguf_writer *w = duet_gguf_writer_new();
    if (!s || !w || (wtype == DUET_TYPE_F16 && !half)) {
        free(s);
        free(half);
        duet_gguf_writer_free(w);
        return duet_err_set(err, DUET_ENOMEM, "%s: out of memory", path);
    }
    n_slots = list_slots(m, &m->p, s);
    duet_gguf_set_str(w, "general.architecture", "llama");
    duet_gguf_set_str(w, "general.name", name ? name : "duet");
    duet_gguf_set_u32(w, "general.file_type", wtype == DUET_TYPE_F16 ? 1 : 0);
    duet_gguf_set_u32(w, "llama.vocab_size", (uint32_t)c->n_vocab);
    duet_gguf_set_u32(w, "llama.context_length", (uint32_t)c->n_ctx);
    duet_gguf_set_u32(w, "llama.embedding_length", (uint32_t)c->n_embd);
    duet_gguf_set_u32(w, "llama.block_count", (uint32_t)c->n_layer);
    duet_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)c->n_ff);
    duet_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)(c->n_embd / c->n_head));
    duet_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)c->n_head);
    duet_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_head);
    duet_gguf_set_f32(w, "llama.rope.freq_base", c->rope_base);
    duet_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps);
    if (tok)
        for (int64_t i = 0; i < duet_gguf_n_kv(tok); i++)
            if (!strncmp(duet_gguf_key(tok, i), "tokenizer.", 10)) duet_gguf_copy_kv(w, tok, i);
    size_t hoff = 0;
    for (int i = 0; i < n_slots; i++) {
        int64_t ne[2] = {s[i].ne0, s[i].ne1};
        int nd = s[i].ne1 == 1 ? 1 : 2;
        if (nd == 2 && half) { /* matrices in F16, vectors stay F32 (as llama.cpp) */
            size_t n = (size_t)ne[0] * ne[1];
            for (size_t j = 0; j < n; j++) half[hoff + j] = duet_f32_to_f16(s[i].data[j]);
            duet_gguf_add_tensor(w, s[i].name, DUET_TYPE_F16, nd, ne, half + hoff);
            hoff += n;
        } else {
            duet_gguf_add_tensor(w, s[i].name, DUET_TYPE_F32, nd, ne, s[i].data);
        }
    }
    int rc = duet_gguf_writer_write(w, path, err);
    duet_gguf_writer_free(w);
    free(half);
    free(s);
    return rc;
}

static int get_u(const duet_gguf *g, const char *key, int *out, duet_err *err) {
    int64_t v;
    int rc = duet_gguf_get_int(g, key, &v, err);
    if (rc == DUET_ENOTFOUND) return duet_err_set(err, rc, "missing key %s", key);
    if (rc) return rc;
    if (v < 0 || v > (1 << 30)) return duet_err_set(err, DUET_EFORMAT, "bad %s = %lld", key, (long long)v);
    *out = (int)v;
    return 0;
}

int duet_tmodel_load_gguf(duet_tmodel **out, const char *path, int B, int T, int with_grads, duet_err *err) {
    *out = NULL;
    duet_gguf *g = NULL;
    int rc = duet_gguf_open(&g, path, err);
    if (rc) return rc;
    duet_tconfig c = {0};
    const char *arch;
    size_t alen;
    int n_kv = 0;
    double d;
    rc = duet_gguf_get_str(g, "general.architecture", &arch, &alen, err);
    if (!rc && !(alen == 5 && !memcmp(arch, "llama", 5)))
        rc = duet_err_set(err, DUET_EUNSUPPORTED, "general.architecture is '%.*s', the trainer needs llama",
                          (int)alen, arch);
    if (!rc) rc = get_u(g, "llama.context_length", &c.n_ctx, err);
    if (!rc) rc = get_u(g, "llama.embedding_length", &c.n_embd, err);
    if (!rc) rc = get_u(g, "llama.block_count", &c.n_layer, err);
    if (!rc) rc = get_u(g, "llama.feed_forward_length", &c.n_ff, err);
    if (!rc) rc = get_u(g, "llama.attention.head_count", &c.n_head, err);
    if (!rc) rc = get_u(g, "llama.attention.head_count_kv", &n_kv, err);
    if (!rc && n_kv != c.n_head)
        rc = duet_err_set(err, DUET_EUNSUPPORTED, "head_count_kv %d != head_count %d (no GQA in the trainer)", n_kv,
                          c.n_head);
    c.rope_base = 10000.0f;
    c.norm_eps = 1e-5f;
    if (!rc && !duet_gguf_get_float(g, "llama.rope.freq_base", &d, NULL)) c.rope_base = (float)d;
    if (!rc && !duet_gguf_get_float(g, "llama.attention.layer_norm_rms_epsilon", &d, NULL)) c.norm_eps = (float)d;
    const duet_gguf_tensor *te = rc ? NULL : duet_gguf_find_tensor(g, "token_embd.weight");
    if (!rc && (!te || te->n_dims != 2 || te->ne[0] != c.n_embd))
        rc = duet_err_set(err, DUET_EFORMAT, "token_embd.weight missing or not [n_embd, n_vocab]");
    if (!rc) {
        c.n_vocab = (int)te->ne[1];
        c.tied = duet_gguf_find_tensor(g, "output.weight") == NULL;
        if (T > c.n_ctx) T = c.n_ctx;
        rc = duet_tmodel_new(out, &c, B, T, with_grads, err);
    }
    gguf_slot *s = rc ? NULL : malloc(sizeof *s * (3 + 9 * c.n_layer));
    if (!rc && !s) rc = duet_err_set(err, DUET_ENOMEM, "out of memory");
    int n_slots = rc ? 0 : list_slots(*out, &(*out)->p, s);
    for (int i = 0; !rc && i < n_slots; i++) {
        const duet_gguf_tensor *t = duet_gguf_find_tensor(g, s[i].name);
        if (!t) { rc = duet_err_set(err, DUET_EFORMAT, "missing tensor %s", s[i].name); break; }
        if (t->ne[0] != s[i].ne0 || t->ne[1] != s[i].ne1 || t->ne[2] != 1 || t->ne[3] != 1) {
            rc = duet_err_set(err, DUET_EFORMAT, "tensor %s has shape [%lld, %lld], expected [%lld, %lld]", s[i].name,
                              (long long)t->ne[0], (long long)t->ne[1], (long long)s[i].ne0, (long long)s[i].ne1);
            break;
        }
        if (t->type != DUET_TYPE_F32 && t->type != DUET_TYPE_F16 && t->type != DUET_TYPE_BF16) {
            rc = duet_err_set(err, DUET_EUNSUPPORTED, "tensor %s is %s; the trainer reads F32/F16/BF16", s[i].name,
                              duet_type_name(t->type));
            break;
        }
        size_t row = duet_row_size((duet_type)t->type, s[i].ne0);
        for (int64_t r = 0; r < s[i].ne1; r++)
            duet_dequantize_row((duet_type)t->type, (const char *)t->data + r * row, s[i].data + r * s[i].ne0, s[i].ne0);
    }
    free(s);
    duet_gguf_close(g);
    if (rc) {
        duet_tmodel_free(*out);
        *out = NULL;
        duet_err_prefix(err, "%s", path);
    }
    return rc;
}

/* ---- checkpoints ------------------------------------------------------------- */
#define CKPT_MAGIC "DUETCKP1"

typedef struct {
    char magic[8];
    int32_t n_vocab, n_ctx, n_embd, n_layer, n_head, n_ff, tied, pad;
    float rope_base, norm_eps;
    int64_t step;
    uint64_t n_params, state_size;
} ckpt_header;

int duet_tmodel_save_ckpt(const duet_tmodel *m, const char *path, const void *state, size_t state_size,
                          duet_err *err) {
    if (!m->m_block) return duet_err_set(err, DUET_EINVAL, "%s: model has no optimizer state", path);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return duet_err_set(err, DUET_EIO, "%s: cannot write", tmp);
    const duet_tconfig *c = &m->cfg;
    ckpt_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CKPT_MAGIC, 8);
    h.n_vocab = c->n_vocab; h.n_ctx = c->n_ctx; h.n_embd = c->n_embd; h.n_layer = c->n_layer;
    h.n_head = c->n_head; h.n_ff = c->n_ff; h.tied = c->tied;
    h.rope_base = c->rope_base; h.norm_eps = c->norm_eps;
    h.step = m->step;
    h.n_params = m->n_params;
    h.state_size = state_size;
    int ok = fwrite(&h, sizeof h, 1, f) == 1 && (!state_size || fwrite(state, state_size, 1, f) == 1) &&
             fwrite(m->param_block, sizeof(float), m->n_params, f) == m->n_params &&
             fwrite(m->m_block, sizeof(float), m->n_params, f) == m->n_params &&
             fwrite(m->v_block, sizeof(float), m->n_params, f) == m->n_params;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path)) { /* write-then-rename: a stop mid-write keeps the last checkpoint */
        remove(tmp);
        return duet_err_set(err, DUET_EIO, "%s: write failed", path);
    }
    return 0;
}

int duet_tmodel_load_ckpt(duet_tmodel **out, const char *path, int B, int T, void *state, size_t state_size,
                          duet_err *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return duet_err_set(err, DUET_EIO, "%s: cannot open", path);
    ckpt_header h;
    int rc = 0;
    if (fread(&h, sizeof h, 1, f) != 1 || memcmp(h.magic, CKPT_MAGIC, 8))
        rc = duet_err_set(err, DUET_EFORMAT, "%s: not a duet checkpoint", path);
    else if (h.state_size != state_size)
        rc = duet_err_set(err, DUET_EFORMAT, "%s: state size %llu, expected %zu", path,
                          (unsigned long long)h.state_size, state_size);
    duet_tconfig c = {h.n_vocab, h.n_ctx, h.n_embd, h.n_layer, h.n_head, h.n_ff, h.tied, h.rope_base, h.norm_eps};
    if (!rc) rc = duet_tmodel_new(out, &c, B, T > c.n_ctx ? c.n_ctx : T, 1, err);
    if (!rc && (*out)->n_params != h.n_params) rc = duet_err_set(err, DUET_EFORMAT, "%s: parameter count mismatch", path);
    if (!rc) {
        duet_tmodel *m = *out;
        int ok = (!state_size || fread(state, state_size, 1, f) == 1) &&
                 fread(m->param_block, sizeof(float), m->n_params, f) == m->n_params &&
                 fread(m->m_block, sizeof(float), m->n_params, f) == m->n_params &&
                 fread(m->v_block, sizeof(float), m->n_params, f) == m->n_params;
        if (!ok) rc = duet_err_set(err, DUET_EFORMAT, "%s: truncated checkpoint", path);
        m->step = h.step;
    }
    fclose(f);
    if (rc) { duet_tmodel_free(*out); *out = NULL; }
    return rc;
}

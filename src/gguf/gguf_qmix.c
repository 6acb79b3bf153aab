/* llama.cpp's quantization mix (src/llama-quant.cpp, llama_tensor_get_type),
 * restricted to the file types duet writes. The rules are reproduced
 * condition by condition so that a model quantized here has the same tensor
 * types as one quantized by llama.cpp. */
#include <stdio.h>
#include <string.h>

#include "duet/gguf_quantize.h" /* duet_ftype_base_type: exported from here */
#include "duet/quant.h"
#include "gguf/gguf_qmix.h"

static int has(const char *name, const char *part) { return strstr(name, part) != NULL; }

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int is_quantized(uint32_t t) { return t != DUET_TYPE_F32 && t != DUET_TYPE_F16 && t != DUET_TYPE_BF16; }

int duet_ftype_base_type(int ftype) {
    switch (ftype) {
    case FT_ALL_F32: return DUET_TYPE_F32;
    case FT_F16: return DUET_TYPE_F16;
    case FT_BF16: return DUET_TYPE_BF16;
    case FT_Q4_0: return DUET_TYPE_Q4_0;
    case FT_Q4_1: return DUET_TYPE_Q4_1;
    case FT_Q5_0: return DUET_TYPE_Q5_0;
    case FT_Q5_1: return DUET_TYPE_Q5_1;
    case FT_Q8_0: return DUET_TYPE_Q8_0;
    case FT_Q4_K_S: case FT_Q4_K_M: return DUET_TYPE_Q4_K;
    case FT_Q5_K_S: case FT_Q5_K_M: return DUET_TYPE_Q5_K;
    case FT_Q6_K: return DUET_TYPE_Q6_K;
    default: return -1;
    }
}

/* "blk.N." -> N, else -1 (what llama.cpp's sscanf("blk.%d.") yields). */
static int layer_of(const char *name) {
    int layer = -1;
    if (sscanf(name, "blk.%d.", &layer) != 1) return -1;
    return layer;
}

int gguf_qmix_order(const void *a, const void *b) {
    const duet_gguf_tensor *x = *(const duet_gguf_tensor *const *)a, *y = *(const duet_gguf_tensor *const *)b;
    int lx = layer_of(x->name), ly = layer_of(y->name);
    if (lx != ly) return lx < ly ? -1 : 1;
    return strcmp(x->name, y->name);
}

int gguf_qmix_init(gguf_qmix *m, const gguf_qmix_model *model, int ftype, int pure, duet_err *err) {
    memset(m, 0, sizeof *m);
    int base = duet_ftype_base_type(ftype);
    if (base < 0) {
        const char *n = duet_gguf_ftype_name(ftype);
        return duet_err_set(err, DUET_EUNSUPPORTED, "cannot write file type %s (%d)", n ? n : "unknown", ftype);
    }
    m->ftype = ftype;
    m->pure = pure;
    m->base_type = (uint32_t)base;
    m->n_layer = model->n_layer > 0 ? model->n_layer : 0;
    m->n_expert = model->n_expert;
    m->falcon = !strcmp(model->arch, "falcon");
    /* llama.cpp's LLM_TYPE_70B: an 80-layer llama with GQA, an 80-layer qwen2 */
    m->is_70b = model->n_layer == 80 && ((!strcmp(model->arch, "llama") && model->n_head != model->n_head_kv) ||
                                         !strcmp(model->arch, "qwen2"));
    m->max_layer = -1;
    return 0;
}

void gguf_qmix_see(gguf_qmix *m, const char *name) {
    if (has(name, "attn_v.weight") || has(name, "attn_qkv.weight") || has(name, "attn_kv_b.weight"))
        m->n_attention_wv++;
    else if (!strcmp(name, "output.weight"))
        m->has_output = 1;
    int l = layer_of(name);
    if (l > m->max_layer) m->max_layer = l;
}

int gguf_qmix_quantizable(const duet_gguf_tensor *t) {
    static const char *const keep[] = {
        "_norm.weight", "ffn_gate_inp.weight", "altup", "laurel", "per_layer_model_proj",
        "ssm_conv1d.weight", "shortconv.conv.weight", "time_mix_first.weight", "time_mix_w0.weight",
        "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight",
        "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight",
        "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight", "attn_rel_b.weight",
    };
    if (!ends_with(t->name, "weight") || t->n_dims < 2) return 0;
    if (!strcmp(t->name, "position_embd.weight") || !strcmp(t->name, "token_types.weight")) return 0;
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        if (has(t->name, keep[i])) return 0;
    return 1;
}

/* use_more_bits(i, n) from llama.cpp: the first and last eighth of the
 * layers, and every third layer in between. */
static int use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static uint32_t mix(gguf_qmix *m, const duet_gguf_tensor *t, uint32_t type) {
    const char *name = t->name;
    int ft = m->ftype;
    if (!strcmp(name, "output.weight") || (!m->has_output && !strcmp(name, "token_embd.weight"))) {
        const duet_type_traits *tr = duet_type_info(type);
        if (m->falcon || t->ne[0] % tr->blck) type = DUET_TYPE_Q8_0;
        else if (type != DUET_TYPE_Q8_0) type = DUET_TYPE_Q6_K;
    } else if (!strcmp(name, "token_embd.weight")) {
        /* only the IQ/TQ file types change it */
    } else if (has(name, "attn_v.weight")) {
        if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) && use_more_bits(m->i_attention_wv, m->n_attention_wv))
            type = DUET_TYPE_Q6_K;
        else if (ft == FT_Q4_K_S && m->i_attention_wv < 4)
            type = DUET_TYPE_Q5_K;
        if (m->is_70b && type == DUET_TYPE_Q4_K) type = DUET_TYPE_Q5_K;
        if (m->n_expert == 8) type = DUET_TYPE_Q8_0;
        m->i_attention_wv++;
    } else if (has(name, "attn_k.weight")) {
        if (m->n_expert == 8) type = DUET_TYPE_Q8_0;
    } else if (has(name, "attn_q.weight")) {
        /* only IQ3 file types change it */
    } else if (has(name, "ffn_down")) {
        int i_layer = m->i_ffn_down, n_layer = m->n_layer;
        if (m->n_expert > 1) i_layer = layer_of(name); /* experts are not consecutive */
        if (ft == FT_Q4_K_M) {
            if (m->falcon)
                type = i_layer < n_layer / 16       ? DUET_TYPE_Q6_K
                       : use_more_bits(i_layer, n_layer) ? DUET_TYPE_Q5_K
                                                         : DUET_TYPE_Q4_K;
            else if (use_more_bits(i_layer, n_layer))
                type = DUET_TYPE_Q6_K;
        } else if (ft == FT_Q5_K_M && use_more_bits(i_layer, n_layer)) {
            type = DUET_TYPE_Q6_K;
        } else if (ft == FT_Q4_K_S && !m->falcon && i_layer < n_layer / 8) {
            type = DUET_TYPE_Q5_K;
        }
        m->i_ffn_down++;
    } else if (has(name, "attn_output.weight")) {
        if (!m->falcon && m->n_expert == 8 && (ft == FT_Q4_K_S || ft == FT_Q4_K_M)) type = DUET_TYPE_Q5_K;
    } else if (has(name, "attn_qkv.weight")) {
        if (ft == FT_Q4_K_M) type = DUET_TYPE_Q5_K;
        else if (ft == FT_Q5_K_M) type = DUET_TYPE_Q6_K;
    } else if (has(name, "ffn_gate")) {
        m->i_ffn_gate++;
    } else if (has(name, "ffn_up")) {
        m->i_ffn_up++;
    }
    return type;
}

/* A row length the block size does not divide: llama.cpp's fallbacks for the
 * K-quants, F16 where it would give up. */
static uint32_t fit_shape(uint32_t type, int64_t ne0) {
    if (ne0 % duet_type_info(type)->blck == 0) return type;
    switch (type) {
    case DUET_TYPE_Q4_K: type = DUET_TYPE_Q5_0; break;
    case DUET_TYPE_Q5_K: type = DUET_TYPE_Q5_1; break;
    case DUET_TYPE_Q6_K: type = DUET_TYPE_Q8_0; break;
    default: type = DUET_TYPE_F16; break;
    }
    return ne0 % duet_type_info(type)->blck ? DUET_TYPE_F16 : type;
}

uint32_t gguf_qmix_type(gguf_qmix *m, const duet_gguf_tensor *t) {
    if (!m->n_layer) m->n_layer = m->max_layer + 1; /* no block_count: from the names */
    uint32_t type = m->base_type;
    if (is_quantized(type) && !m->pure) type = mix(m, t, type);
    return fit_shape(type, t->ne[0]);
}

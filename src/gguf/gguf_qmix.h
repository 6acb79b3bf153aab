/* internal: not part of the public API; may change. */
/* llama.cpp's per-tensor type choice when quantizing a model (no imatrix):
 * which tensors are quantized at all, and the default "mixes" that give some
 * tensors more bits. Internal to src/gguf. */
#ifndef DUET_GGUF_QMIX_H
#define DUET_GGUF_QMIX_H

#include <stdint.h>

#include "duet/gguf.h"

/* llama.cpp's LLAMA_FTYPE_* numbers duet can write. */
enum {
    FT_ALL_F32 = 0, FT_F16 = 1, FT_Q4_0 = 2, FT_Q4_1 = 3, FT_Q8_0 = 7, FT_Q5_0 = 8, FT_Q5_1 = 9,
    FT_Q4_K_S = 14, FT_Q4_K_M = 15, FT_Q5_K_S = 16, FT_Q5_K_M = 17, FT_Q6_K = 18, FT_BF16 = 32,
};

typedef struct {
    int ftype, pure;
    uint32_t base_type;      /* default type of the file type */
    int n_layer, n_expert;
    int falcon, is_70b;      /* llama.cpp special cases */
    int has_output;          /* output.weight exists (else token_embd is the output) */
    int n_attention_wv;      /* attn_v / attn_qkv / attn_kv_b tensors */
    int i_attention_wv, i_ffn_down, i_ffn_gate, i_ffn_up; /* counters, in processing order */
    int max_layer;           /* highest blk index seen */
} gguf_qmix;

/* Model facts the rules look at (llama.cpp's hparams). */
typedef struct {
    const char *arch;        /* general.architecture, "" if unknown */
    int n_layer, n_expert;   /* block_count (0: derive from tensor names), expert_count */
    int n_head, n_head_kv;
} gguf_qmix_model;

/* 0, or DUET_EUNSUPPORTED for a file type duet cannot write. Then call
 * gguf_qmix_see() for every tensor name before the first gguf_qmix_type(). */
int gguf_qmix_init(gguf_qmix *m, const gguf_qmix_model *model, int ftype, int pure, duet_err *err);
void gguf_qmix_see(gguf_qmix *m, const char *tensor_name);
/* 1 if llama.cpp would convert this tensor at all (2-D+ weights that are not
 * norms, gates of MoE routers, ...). */
int gguf_qmix_quantizable(const duet_gguf_tensor *t);
/* The type for a quantizable tensor. Must be called once per quantizable
 * tensor in llama.cpp's processing order (the layer counters advance). */
uint32_t gguf_qmix_type(gguf_qmix *m, const duet_gguf_tensor *t);
/* llama.cpp's tensor order in files it writes: tensors outside blk.N first,
 * then by layer, ties by name (strcmp). qsort comparator over tensor pointers. */
int gguf_qmix_order(const void *a, const void *b);

#endif

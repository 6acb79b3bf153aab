/* Facts about the ref-models fixtures, transcribed from
 * /work/shared/data/ref-models/README.md (llama.cpp produced those files). */
#ifndef DUET_GGUF_REF_TABLE_H
#define DUET_GGUF_REF_TABLE_H

#include <stddef.h>

#include "duet/quant.h"

typedef struct {
    const char *arch;      /* "llama-a" or "qwen2-b" */
    const char *suffix;    /* "Q4_K_M" */
    int ftype;             /* general.file_type (llama.cpp numbering) */
    int main_type;         /* type of the 2-D weights that are not promoted */
    int n_main;            /* how many tensors have main_type */
    int n_f32;             /* F32 tensors (1-D norms and biases; all tensors for F32) */
    const char *q6k[3];    /* tensors promoted to Q6_K by llama.cpp's mix */
    size_t bytes;          /* file size, 0 where the README does not state it */
} ref_file;

static const ref_file REF_FILES[] = {
    {"llama-a", "F32", 0, DUET_TYPE_F32, 21, 21, {0}, 7095904},
    {"llama-a", "F16", 1, DUET_TYPE_F16, 16, 5, {0}, 3556992},
    {"llama-a", "BF16", 32, DUET_TYPE_BF16, 16, 5, {0}, 3556992},
    {"llama-a", "Q8_0", 7, DUET_TYPE_Q8_0, 16, 5, {0}, 1898112},
    {"llama-a", "Q4_0", 2, DUET_TYPE_Q4_0, 15, 5, {"output.weight"}, 1047168},
    {"llama-a", "Q4_K_M", 15, DUET_TYPE_Q4_K, 13, 5,
     {"output.weight", "blk.1.attn_v.weight", "blk.1.ffn_down.weight"}, 1102080},
    {"llama-a", "Q6_K", 18, DUET_TYPE_Q6_K, 16, 5, {0}, 1469568},
    {"llama-a", "Q4_1", 3, DUET_TYPE_Q4_1, 15, 5, {"output.weight"}, 0},
    {"llama-a", "Q5_0", 8, DUET_TYPE_Q5_0, 15, 5, {"output.weight"}, 0},
    {"llama-a", "Q5_1", 9, DUET_TYPE_Q5_1, 15, 5, {"output.weight"}, 0},
    {"llama-a", "Q5_K_M", 17, DUET_TYPE_Q5_K, 13, 5,
     {"output.weight", "blk.1.attn_v.weight", "blk.1.ffn_down.weight"}, 0},
    {"qwen2-b", "F32", 0, DUET_TYPE_F32, 26, 26, {0}, 6575136},
    {"qwen2-b", "F16", 1, DUET_TYPE_F16, 15, 11, {0}, 3298368},
    {"qwen2-b", "BF16", 32, DUET_TYPE_BF16, 15, 11, {0}, 3298368},
    {"qwen2-b", "Q8_0", 7, DUET_TYPE_Q8_0, 15, 11, {0}, 1762368},
    {"qwen2-b", "Q4_0", 2, DUET_TYPE_Q4_0, 14, 11, {"token_embd.weight"}, 976960},
    {"qwen2-b", "Q4_K_M", 15, DUET_TYPE_Q4_K, 12, 11,
     {"token_embd.weight", "blk.1.attn_v.weight", "blk.1.ffn_down.weight"}, 1031872},
    {"qwen2-b", "Q6_K", 18, DUET_TYPE_Q6_K, 15, 11, {0}, 1365568},
    {"qwen2-b", "Q4_1", 3, DUET_TYPE_Q4_1, 14, 11, {"token_embd.weight"}, 0},
    {"qwen2-b", "Q5_0", 8, DUET_TYPE_Q5_0, 14, 11, {"token_embd.weight"}, 0},
    {"qwen2-b", "Q5_1", 9, DUET_TYPE_Q5_1, 14, 11, {"token_embd.weight"}, 0},
    {"qwen2-b", "Q5_K_M", 17, DUET_TYPE_Q5_K, 12, 11,
     {"token_embd.weight", "blk.1.attn_v.weight", "blk.1.ffn_down.weight"}, 0},
};
#define N_REF_FILES (sizeof REF_FILES / sizeof REF_FILES[0])

/* The type a tensor of this file must have according to the table above. */
static inline int ref_expected_type(const ref_file *r, const char *name, int n_dims) {
    for (int k = 0; k < 3 && r->q6k[k]; k++)
        if (!__builtin_strcmp(r->q6k[k], name)) return DUET_TYPE_Q6_K;
    return n_dims == 1 ? DUET_TYPE_F32 : r->main_type;
}

#endif

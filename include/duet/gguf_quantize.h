/* duet — converting a GGUF model's weights to another type, the way
 * llama.cpp's llama_model_quantize() does without an importance matrix:
 * same per-tensor type choice (its default mixes, e.g. Q6_K for the output
 * matrix and for attn_v / ffn_down of some layers in Q4_K_M), same reference
 * quantizers, same tensor order and metadata, so results are byte-comparable
 * with llama.cpp's files. */
#ifndef DUET_GGUF_QUANTIZE_H
#define DUET_GGUF_QUANTIZE_H

#include <stdint.h>

#include "duet/api.h"
#include "duet/err.h"
#include "duet/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int ftype;      /* llama.cpp file type of the result (LLAMA_FTYPE_*, see duet_gguf_ftype_name) */
    int pure;       /* 1: every quantized weight gets the base type (no mix; shape fallbacks still apply) */
    int n_threads;  /* <= 0: all CPUs */
    /* Called before tensor i (0-based) of n is converted; may be NULL. */
    void (*progress)(void *ud, int64_t i, int64_t n, const char *name, uint32_t from, uint32_t to);
    void *progress_ud;
} duet_quantize_params;

typedef struct {
    int64_t n_tensors;
    int64_t n_converted;                 /* tensors whose type changed */
    uint64_t bytes_in, bytes_out;        /* tensor data */
    int64_t type_count[DUET_TYPE_COUNT]; /* tensors per type in the result */
} duet_quantize_stats;

/* The weight type a file type is built from (Q4_K for Q4_K_M); -1 if duet
 * cannot write that file type. */
DUET_API int duet_ftype_base_type(int ftype);

/* Reads in_path, writes out_path (may be the same path: the result is
 * renamed into place). stats may be NULL. */
DUET_API int duet_gguf_quantize(const char *in_path, const char *out_path, const duet_quantize_params *p,
                                duet_quantize_stats *stats, duet_err *err);

#ifdef __cplusplus
}
#endif
#endif

/* duet — random-weight models of any shape, with complete metadata and a
 * working tokenizer, laid out like the ref-models fixtures (llama and qwen2).
 * For benchmarks and tests that need a model of a given size. */
#ifndef DUET_GGUF_SYNTH_H
#define DUET_GGUF_SYNTH_H

#include <stdint.h>

#include "duet/api.h"
#include "duet/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *arch;   /* "llama" (SentencePiece vocab, separate output) or "qwen2" (gpt2 vocab, q/k/v biases, tied output) */
    const char *name;   /* general.name; NULL: "synth-<arch>" */
    int64_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    int ftype;          /* llama.cpp file type: weights converted with llama.cpp's mix, as duet quantize does */
    uint64_t seed;
    int n_threads;      /* <= 0: all CPUs */
    /* Called before tensor i of n is generated; may be NULL. */
    void (*progress)(void *ud, int64_t i, int64_t n, const char *name);
    void *progress_ud;
} duet_synth_params;

DUET_API int duet_gguf_synth(const char *out_path, const duet_synth_params *p, duet_err *err);

#ifdef __cplusplus
}
#endif
#endif

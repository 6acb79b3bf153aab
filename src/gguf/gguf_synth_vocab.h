/* internal: not part of the public API; may change. */
/* Synthetic tokenizer vocabularies for duet synth (internal to src/gguf). */
#ifndef DUET_GGUF_SYNTH_VOCAB_H
#define DUET_GGUF_SYNTH_VOCAB_H

#include <stdint.h>

#include "duet/err.h"

typedef struct {
    char **tokens;        /* (n_tokens) NUL-terminated */
    float *scores;        /* (n_tokens) llama: 0 for specials and bytes, -1, -2, ... for pieces */
    int32_t *types;       /* (n_tokens) 1 normal, 2 unknown, 3 control, 6 byte */
    char **merges;        /* (n_merges) gpt2 only: "left right" */
    int64_t n_tokens, n_merges;
    int64_t first_piece;  /* first id after the special and byte tokens */
} synth_vocab;

/* gpt2 = 0: llama/SentencePiece layout: <unk> <s> </s>, <0x00>..<0xFF>, pieces.
 * gpt2 = 1: the 256 GPT-2 byte symbols, merge results, <|endoftext|> last. */
int synth_vocab_build(synth_vocab *v, int gpt2, int64_t n_vocab, uint64_t seed, duet_err *err);
void synth_vocab_free(synth_vocab *v);

#endif

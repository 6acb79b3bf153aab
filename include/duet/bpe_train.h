/* duet — byte-level BPE tokenizer training (GPT-2 style).
 *
 * Text is split by the GPT-2 pre-tokenizer regex, every piece becomes a
 * sequence of its bytes (token ids 0..255 = byte values), and the most
 * frequent adjacent pair (counted over all pieces, weighted by how often the
 * piece occurs; ties go to the smallest (left, right) id pair) is merged into
 * a new token, n_merges times. The result is written as a standard llama.cpp
 * "gpt2" vocabulary: 256 byte symbols (GPT-2 byte-to-unicode strings), the
 * merged tokens in merge order, and a final `<|endoftext|>` control token. */
#ifndef DUET_BPE_TRAIN_H
#define DUET_BPE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "duet/api.h"
#include "duet/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct duet_bpe duet_bpe;

DUET_API duet_bpe *duet_bpe_new(void);
DUET_API void duet_bpe_free(duet_bpe *b); /* NULL is a no-op */

/* Pre-tokenizes text (GPT-2 regex) and adds its pieces to the counts.
 * Invalid UTF-8 is accepted (its bytes are kept as they are). */
DUET_API int duet_bpe_add_text(duet_bpe *b, const char *text, size_t len, duet_err *err);
/* Adds one piece verbatim (no pre-tokenization), count times (tests). */
DUET_API int duet_bpe_add_piece(duet_bpe *b, const char *piece, size_t len, int64_t count, duet_err *err);

/* Learns up to n_merges merges (fewer if the pieces run out of pairs).
 * Can be called once. */
DUET_API int duet_bpe_learn(duet_bpe *b, int n_merges, duet_err *err);

DUET_API int duet_bpe_n_merges(const duet_bpe *b);
/* Merge i joined tokens left and right into token 256 + i. */
DUET_API void duet_bpe_merge(const duet_bpe *b, int i, int32_t *left, int32_t *right);
/* Bytes of token id (< 256 + n_merges); returns its length, writes up to cap. */
DUET_API size_t duet_bpe_token_bytes(const duet_bpe *b, int32_t id, char *out, size_t cap);
DUET_API int64_t duet_bpe_n_pieces(const duet_bpe *b);

/* Writes tokenizer.ggml.* keys (model "gpt2", pre "gpt-2", tokens, token_type,
 * merges, eos/bos/padding = <|endoftext|>, add_bos_token false) to a GGUF
 * holding no tensors. n_vocab = 256 + n_merges + 1. */
DUET_API int duet_bpe_write_gguf(const duet_bpe *b, const char *path, duet_err *err);

/* GPT-2's printable stand-in of byte c as UTF-8 (1 or 2 bytes + NUL). */
DUET_API void duet_bpe_byte_symbol(unsigned char c, char out[4]);

#ifdef __cplusplus
}
#endif
#endif

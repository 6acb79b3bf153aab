/* duet — tokenizers (from GGUF tokenizer.ggml.* metadata) and chat templates.
 *
 * Two tokenizer models, both matching llama.cpp / Hugging Face token for token:
 *   - "llama": SentencePiece-style (score-driven bigram merges, <0xXX> byte
 *     fallback, U+2581 for spaces and a leading space prefix);
 *   - "gpt2":  byte-level BPE (a per-family pre-tokenizer regex evaluated with
 *     PCRE2, merge ranks from tokenizer.ggml.merges, GPT-2 byte-to-unicode map).
 *     Pre-tokenizers: gpt-2 (also "default" or missing), llama-bpe, qwen2 (and
 *     their llama.cpp aliases; see docs/tokenizers.md).
 *
 * A vocabulary is immutable after loading: every function taking a
 * `const duet_vocab *` may be called from several threads at once. */
#ifndef DUET_TOK_H
#define DUET_TOK_H

#include <stddef.h>
#include <stdint.h>

#include "duet/api.h"
#include "duet/err.h"
#include "duet/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct duet_vocab duet_vocab;

typedef enum {
    DUET_VOCAB_SPM = 1, /* tokenizer.ggml.model "llama" */
    DUET_VOCAB_BPE = 2, /* tokenizer.ggml.model "gpt2" */
} duet_vocab_kind;

/* Token types (tokenizer.ggml.token_type values: file format, append-only). */
enum {
    DUET_TOKEN_UNDEFINED = 0,
    DUET_TOKEN_NORMAL = 1,
    DUET_TOKEN_UNKNOWN = 2,
    DUET_TOKEN_CONTROL = 3,
    DUET_TOKEN_USER_DEFINED = 4,
    DUET_TOKEN_UNUSED = 5,
    DUET_TOKEN_BYTE = 6,
};

/* Loads the vocabulary from g's tokenizer.ggml.* keys. Everything needed is
 * copied: g may be closed afterwards. Errors name the key at fault; an
 * unknown tokenizer.ggml.pre is DUET_EUNSUPPORTED naming the value. */
DUET_API int duet_vocab_load(duet_vocab **out, const duet_gguf *g, duet_err *err);
/* Opens path, loads its vocabulary, closes it. */
DUET_API int duet_vocab_load_file(duet_vocab **out, const char *path, duet_err *err);
DUET_API void duet_vocab_free(duet_vocab *v); /* NULL is a no-op */

DUET_API duet_vocab_kind duet_vocab_type(const duet_vocab *v);
/* Pre-tokenizer name as resolved ("gpt-2", "llama-bpe", "qwen2"); "" for SPM. */
DUET_API const char *duet_vocab_pre(const duet_vocab *v);
DUET_API int32_t duet_vocab_n(const duet_vocab *v);
/* Special ids, -1 where the vocabulary has none. */
DUET_API int32_t duet_vocab_bos(const duet_vocab *v);
DUET_API int32_t duet_vocab_eos(const duet_vocab *v);
DUET_API int32_t duet_vocab_eot(const duet_vocab *v); /* end of turn: <|eot_id|>, <|im_end|>, ... */
DUET_API int32_t duet_vocab_unk(const duet_vocab *v);
DUET_API int32_t duet_vocab_pad(const duet_vocab *v);
DUET_API int32_t duet_vocab_sep(const duet_vocab *v);
DUET_API int duet_vocab_add_bos(const duet_vocab *v); /* tokenizer.ggml.add_bos_token (or its default) */
DUET_API int duet_vocab_add_eos(const duet_vocab *v);
/* 1 if generation should stop at id: eos, eot, eom and the end-of-turn
 * tokens llama.cpp recognises by text (<|eot_id|>, <|im_end|>, <|endoftext|>,
 * <end_of_turn>, <|end|>, ...). 0 for anything else, including bad ids. */
DUET_API int duet_vocab_is_eog(const duet_vocab *v, int32_t id);

/* Stored text of a token exactly as in the GGUF (U+2581 for spaces in SPM,
 * byte-to-unicode form in BPE), NUL-terminated; *len (if non-NULL) gets its
 * byte length. NULL for an id out of range. */
DUET_API const char *duet_vocab_text(const duet_vocab *v, int32_t id, size_t *len);
/* DUET_TOKEN_* of id, -1 if out of range. */
DUET_API int duet_vocab_token_type(const duet_vocab *v, int32_t id);
DUET_API float duet_vocab_score(const duet_vocab *v, int32_t id); /* 0 if absent/out of range */
/* The id whose stored text is exactly s[0..len), -1 if none. */
DUET_API int32_t duet_vocab_find(const duet_vocab *v, const char *s, size_t len);
/* tokenizer.chat_template, NUL-terminated, or NULL if absent. */
DUET_API const char *duet_vocab_chat_template(const duet_vocab *v);

/* ---- tokenize --------------------------------------------------------- */
#define DUET_TOK_ADD_BOS 1       /* prepend BOS (only if the vocab has one) */
#define DUET_TOK_PARSE_SPECIAL 2 /* text of control/unknown tokens becomes those tokens */
#define DUET_TOK_ADD_EOS 4       /* append EOS (only if the vocab has one) */

/* Tokenizes text[0..len) (need not be NUL-terminated; may contain NUL bytes
 * and invalid UTF-8). Returns the total number of tokens, like snprintf: at
 * most cap ids are written to out, so a result > cap means out was too small
 * (call again with that many). Negative DUET_E* on error: DUET_EINVAL (NULL
 * vocab, or out == NULL with cap > 0), DUET_ERANGE (text longer than 512 MiB),
 * DUET_ENOMEM.
 *
 * Control and unknown token text is only recognised with
 * DUET_TOK_PARSE_SPECIAL. User-defined tokens (type 4, e.g. Qwen3's <think>)
 * are always recognised, as Hugging Face and llama.cpp do for added tokens
 * that are not special. Where both overlap at one position the longest wins.
 *
 * Invalid UTF-8: SPM keeps the bytes (byte fallback: lossless); BPE replaces
 * each byte that does not start a valid sequence by U+FFFD before
 * pre-tokenization, as llama.cpp does. */
DUET_API int duet_tokenize(const duet_vocab *v, const char *text, size_t len, int32_t *out, int cap, int flags);
/* Same, into a malloc'd array (*ids, free with free()); returns the count. */
DUET_API int duet_tokenize_alloc(const duet_vocab *v, const char *text, size_t len, int flags, int32_t **ids);

/* ---- detokenize ------------------------------------------------------- */
#define DUET_DETOK_SPECIAL 1    /* render control/unknown tokens' text (else they are dropped) */
#define DUET_DETOK_KEEP_SPACE 2 /* SPM: keep the leading space the tokenizer added */

/* The bytes a token stands for (space for U+2581, the byte of <0xXX> or of a
 * byte-level symbol); control and unknown tokens give "" unless
 * DUET_DETOK_SPECIAL. Returns the byte length, snprintf-style (at most cap
 * bytes written, no NUL), or DUET_ERANGE for an id out of range. */
DUET_API int duet_token_to_piece(const duet_vocab *v, int32_t id, char *buf, size_t cap, int flags);
/* Concatenated pieces of ids[0..n); for SPM the first piece loses one leading
 * space unless DUET_DETOK_KEEP_SPACE. Returns the byte length (snprintf-style:
 * at most cap bytes written, then a NUL if room), DUET_ERANGE naming no id
 * (see duet_detokenize_check) for an id out of range. The result is raw bytes:
 * a token sequence may end inside a UTF-8 character. */
DUET_API int64_t duet_detokenize(const duet_vocab *v, const int32_t *ids, int n, char *buf, size_t cap, int flags);
/* 0 if every id is in range, else DUET_ERANGE with a message naming the
 * first bad id and its position. */
DUET_API int duet_detokenize_check(const duet_vocab *v, const int32_t *ids, int n, duet_err *err);

/* Streaming detokenizer for generation: feed ids one at a time, get text
 * that ends on a code point boundary. Bytes of an incomplete UTF-8 character
 * are held until it completes; a byte that cannot start or continue a valid
 * character becomes U+FFFD (as Hugging Face's lossy decode does), so the text
 * handed out is always valid UTF-8. */
typedef struct duet_detok_stream duet_detok_stream;
DUET_API duet_detok_stream *duet_detok_stream_new(const duet_vocab *v, int flags); /* NULL on ENOMEM */
DUET_API void duet_detok_stream_free(duet_detok_stream *s); /* NULL is a no-op */
/* Adds id; returns the newly completed text (valid until the next call on s)
 * and its length in *len. NULL with *len = 0 for an id out of range. */
DUET_API const char *duet_detok_stream_push(duet_detok_stream *s, int32_t id, size_t *len);
/* Ends the stream: held bytes of an unfinished character become U+FFFD. The
 * stream can be reused afterwards (it is reset, leading-space rule included). */
DUET_API const char *duet_detok_stream_flush(duet_detok_stream *s, size_t *len);

/* ---- chat templates ------------------------------------------------------
 * The common chat formats, applied in C (not a Jinja interpreter): the model's
 * tokenizer.chat_template is recognised by distinctive substrings, as
 * llama.cpp's llm_chat_detect_template does. The rendered text does not start
 * with BOS: tokenize it with DUET_TOK_ADD_BOS (if the vocab adds one) and
 * DUET_TOK_PARSE_SPECIAL. Exact formats: docs/tokenizers.md. */
typedef enum {
    DUET_CHAT_UNKNOWN = 0,
    DUET_CHAT_CHATML,  /* Qwen, ...: <|im_start|>role\n...<|im_end|>\n */
    DUET_CHAT_LLAMA2,  /* [INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] */
    DUET_CHAT_LLAMA3,  /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    DUET_CHAT_MISTRAL, /* [INST] ... [/INST]...</s> (Mistral 7B Instruct v0.1/v0.2) */
    DUET_CHAT_ZEPHYR,  /* <|role|>\n...</s>\n */
    DUET_CHAT_PHI3,    /* <|role|>\n...<|end|>\n */
    DUET_CHAT_GEMMA,   /* <start_of_turn>user\n...<end_of_turn>\n */
    DUET_CHAT_COUNT
} duet_chat_template;

typedef struct duet_chat_msg {
    const char *role;    /* "system", "user", "assistant" (others pass through) */
    const char *content; /* NUL-terminated UTF-8 */
} duet_chat_msg;

/* "chatml", "llama2", ... ; NULL for DUET_CHAT_UNKNOWN or out of range. */
DUET_API const char *duet_chat_template_name(duet_chat_template t);
/* The names above separated by ", " (for error hints). */
DUET_API const char *duet_chat_template_names(void);
/* name_or_text is either one of the names (exact) or a Jinja template text.
 * DUET_ENOTFOUND with a hint listing the names if it is neither. */
DUET_API int duet_chat_detect(const char *name_or_text, duet_chat_template *out, duet_err *err);
/* Renders msgs[0..n) (+ the assistant header if add_generation_prompt) into
 * a malloc'd NUL-terminated string *out (free with free()); *len if non-NULL. */
DUET_API int duet_chat_apply(duet_chat_template t, const duet_chat_msg *msgs, int n, int add_generation_prompt,
                             char **out, size_t *len, duet_err *err);

/* Whether a draft model's vocabulary can stand in for a target's: the same
 * text for every id of the draft (a larger target vocabulary is fine if its
 * extra ids are padding the draft never needs). 0, or DUET_EINVAL with err
 * naming the first id that differs. */
DUET_API int duet_vocab_check_compatible(const duet_vocab *target, const duet_vocab *draft, duet_err *err);
/* Every end-of-generation id (duet_vocab_is_eog) into a malloc'd array
 * (free with free()); returns the count, or DUET_ENOMEM. */
DUET_API int duet_vocab_eog_ids(const duet_vocab *v, int32_t **out);

#ifdef __cplusplus
}
#endif
#endif

/* duet — prompt compression by the SLM (the `compress` stage of a pipeline,
 * LLMLingua's token-level idea: Jiang et al. 2023, "LLMLingua").
 *
 * The SLM scores every prompt token's surprisal -log p(tok_i | tok_<i) in one
 * prefill; the tokens it found easiest to predict carry the least
 * information, so they are dropped until the target share of the prompt is
 * left. The first `keep_head` tokens (a BOS, the opening word) and the last
 * `keep_tail` tokens (what the continuation depends on most) are always kept.
 * The kept tokens stay in their order.
 *
 * The count rule. For a prompt of n tokens and keep_ratio r in (0, 1]:
 *     forced = min(n, keep_head + keep_tail)
 *     n_kept = min(n, max(forced, ceil(r * n)))
 * (ceil with a 1e-6 tolerance, so that r = 0.7 of 10 tokens is 7, not 8).
 * The n_kept - forced other tokens are those of positions
 * [keep_head, n - keep_tail) with the highest surprisal; ties go to the
 * earlier position, so the result is deterministic. r = 1 keeps every token.
 *
 * The SLM is any duet_lm that can score (DUET_LM_CAP_SCORE: a local model,
 * lm_local.h, or a remote one). The prompt is appended after what the lm
 * holds (normally nothing, so position 0 has no context and tok_0 has no
 * surprisal: it is kept by keep_head >= 1) and rolled back afterwards: the lm
 * is left as it was found. */
#ifndef DUET_COMPRESS_H
#define DUET_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "duet/api.h"
#include "duet/err.h"
#include "duet/lm.h"
#include "duet/tok.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct duet_compress_params {
    double keep_ratio; /* share of the prompt's tokens kept, (0, 1] */
    int keep_head;     /* leading tokens always kept, >= 0 (default 1) */
    int keep_tail;     /* trailing tokens always kept, >= 0 (default 8) */
    /* 0 (default): every token scored in one prefill of the whole prompt.
     * > 0: LLMLingua's iterative variant: the candidates [keep_head,
     * n - keep_tail) in segments of this many tokens, each scored after the
     * compressed text before it (what the LLM will see) and compressed before
     * the next is scored; segment j keeps round(B * end_j / C) -
     * round(B * start_j / C) of its tokens (B tokens to choose among C
     * candidates, start/end counted from the first candidate), so the total
     * follows the count rule. About (1 + keep_ratio) prefills. */
    int segment;
} duet_compress_params;

/* keep_ratio 0.5, keep_head 1, keep_tail 8, segment 0. */
DUET_API duet_compress_params duet_compress_default_params(void);

typedef struct duet_compress_result {
    int n_in;          /* prompt tokens */
    int n_kept;        /* tokens kept */
    int32_t *ids;      /* (n_kept) the kept token ids, in prompt order */
    int *index;        /* (n_kept) their positions in the prompt, increasing */
    float *surprisal;  /* (n_in) -log p(tok_i | tok_<i) in nats under the SLM; NAN at position 0. With
                          segment > 0: a candidate's given the kept tokens before its segment and its
                          segment's tokens before it; NAN for the last keep_tail tokens (not scored) */
} duet_compress_result;

/* Checks p: DUET_EINVAL naming the field when keep_ratio is outside (0, 1]
 * (or not a number) or keep_head / keep_tail / segment is negative. */
DUET_API int duet_compress_check(const duet_compress_params *p, duet_err *err);

/* The count rule above; -1 for n < 0 or invalid p. */
DUET_API int duet_compress_n_kept(int n, const duet_compress_params *p);

/* Keeps n_kept tokens of a prompt whose surprisals are known (the one-pass
 * selection alone, no model; p->segment is not used): writes their positions, increasing, to index (n_kept)
 * and returns n_kept, or a negative DUET_E* (n < 1, invalid p). surprisal
 * is (n); entries in the forced positions are not read. A NAN surprisal
 * ranks below every number. */
DUET_API int duet_compress_select(const float *surprisal, int n, const duet_compress_params *p, int *index,
                                  duet_err *err);

/* Scores tok (n) with slm in one prefill and keeps the most surprising tokens
 * (the rule above). *out is filled (free with duet_compress_result_free) on
 * success and zeroed on error. Errors: DUET_EINVAL for an empty prompt, a bad
 * parameter or an slm that cannot score; DUET_ERANGE when the prompt does not
 * fit what is left of the slm's context, or a token id is outside its
 * vocabulary; the slm's own errors otherwise. */
DUET_API int duet_compress_tokens(duet_lm *slm, const int32_t *tok, int n, const duet_compress_params *p,
                                  duet_compress_result *out, duet_err *err);

/* The same on text: tokenizes text[0..len) with vocab (the slm's; a BOS first
 * if the vocabulary adds one), compresses, and detokenizes the kept tokens
 * into *out_text (malloc'd, NUL-terminated; free with free()). result may be
 * NULL; otherwise it gets the token-level result (free it too). A text with no
 * tokens is DUET_EINVAL. The compressed text, tokenized again, need not give
 * back exactly the kept ids (a dropped token can merge its neighbours). */
DUET_API int duet_compress_text(duet_lm *slm, const duet_vocab *vocab, const char *text, size_t len,
                                const duet_compress_params *p, char **out_text, duet_compress_result *result,
                                duet_err *err);

/* compress on a text that went through a redactor (redact.h; r may be
 * NULL): as duet_compress_text, but every token of a placeholder r made
 * (`<EMAIL_1>`) counts as infinitely surprising, so no placeholder is cut
 * (restore could not find its pieces); the kept share is raised when the
 * placeholders alone need more. A text whose tokens do not spell it byte for
 * byte is kept whole. *out_text is malloc'd; n_in / n_kept (may be NULL)
 * get the token counts. The stage of duet generate --pipeline and of the
 * server's pipeline profiles. */
typedef struct duet_redactor duet_redactor;
DUET_API int duet_compress_text_keep(duet_lm *slm, const duet_vocab *vocab, const char *text,
                                     const duet_compress_params *p, const duet_redactor *r, char **out_text,
                                     int *n_in, int *n_kept, duet_err *err);

DUET_API void duet_compress_result_free(duet_compress_result *r); /* NULL is a no-op; zeroes *r */

#ifdef __cplusplus
}
#endif
#endif

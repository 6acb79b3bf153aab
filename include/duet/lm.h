/* duet — the two primitives every collaboration mechanism is built on.
 *
 * A duet_lm is one sequence of one language model, seen only through
 *   eval(tokens[n])  -> append n tokens, logits of the last few of them
 *   rollback(n_keep) -> forget everything after position n_keep
 * plus what a remote model will need: what it can do (caps), score (the
 * log-probabilities of given tokens, with top-k alternatives), a name and
 * free. A local model (lm_local.h over model.h's duet_seq) and a remote
 * endpoint both provide it, so a mechanism in src/collab/ never reaches into
 * an engine's internals.
 *
 * Several duet_lm of one engine (sequences of one local model) can be
 * evaluated together in one pass over the weights (eval_many): the strategy
 * driver (strategy.h) groups the blocks of every active request that way. */
#ifndef DUET_LM_H
#define DUET_LM_H

#include <stdint.h>

#include "duet/api.h"
#include "duet/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a model can do (bit set). A local model has all three; a remote one
 * that only answers top-k log-probabilities lacks DUET_LM_CAP_LOGITS, one that
 * only generates text has DUET_LM_CAP_GENERATE alone. Append-only. */
enum {
    DUET_LM_CAP_LOGITS = 1 << 0,   /* eval returns full logit rows */
    DUET_LM_CAP_SCORE = 1 << 1,    /* score: log-probabilities of given tokens + top-k */
    DUET_LM_CAP_GENERATE = 1 << 2, /* can continue a text on its own */
    DUET_LM_CAP_TOPK = 1 << 3,     /* eval returns rows that hold only the top-k log-probabilities
                                      (the rest -INFINITY): the argmax is exact, so greedy strategies
                                      work; sampling from such rows would not follow the model */
    DUET_LM_CAP_HIDDEN = 1 << 4,   /* a block can also return its rows' final hidden states */
};

typedef struct duet_lm duet_lm;

/* One block for one sequence: append tokens (n >= 1), write the logits of
 * the last n_logits of them (0..n) to logits (n_logits, lm->n_vocab). */
typedef struct duet_lm_block {
    duet_lm *lm;
    const int32_t *tokens; /* (n) */
    int n;
    int n_logits;
    float *logits;         /* (n_logits, n_vocab); NULL when n_logits == 0 */
    float *hidden;         /* (n_logits, lm->n_embd) or NULL: the same rows' final hidden states (the
                              output matrix's normalized input; DUET_LM_CAP_HIDDEN, through eval_many) */
} duet_lm_block;

typedef struct duet_lm_i {
    const char *kind; /* "local", "remote", ... */
    int caps;         /* DUET_LM_CAP_* */
    int (*eval)(duet_lm *lm, const int32_t *tok, int n, float *logits, int n_logits, duet_err *err);
    /* Optional: blocks of distinct sequences of the same engine (equal
     * lm->engine) in one pass; each block's rows are those it would get
     * evaluated alone. NULL: the caller evaluates them one at a time. */
    int (*eval_many)(const duet_lm_block *blocks, int n_blocks, duet_err *err);
    /* Optional (DUET_LM_CAP_SCORE): appends tok (n) like eval and writes
     * logprob[i] = log p(tok[i] | everything before it) for i >= 1
     * (logprob[0] = NAN: the row before tok[0] is not kept) and, if top_k > 0,
     * the top_k most likely ids and their log-probabilities at each position
     * after tok[i]: top_id / top_lp (n, top_k), best first. */
    int (*score)(duet_lm *lm, const int32_t *tok, int n, float *logprob, int top_k, int32_t *top_id, float *top_lp,
                 duet_err *err);
    /* Keeps positions [0, n_keep); DUET_ERANGE (with a message) when n_keep
     * is outside [0, pos]. */
    int (*rollback)(duet_lm *lm, int n_keep, duet_err *err);
    int (*pos)(const duet_lm *lm);         /* tokens held */
    int (*n_ctx)(const duet_lm *lm);       /* capacity of this sequence */
    int (*n_ctx_train)(const duet_lm *lm); /* the context the model was trained for (0: unknown) */
    /* Optional (may be NULL): on != 0 makes every later eval compute each
     * token bit-identically to a one-token eval of it at its position
     * (model.h: duet_seq_set_decode_consistent); 0 restores the default. */
    int (*set_decode_consistent)(duet_lm *lm, int on);
    void (*free)(duet_lm *lm); /* releases what the lm owns (its sequence, if owned) */
} duet_lm_i;

struct duet_lm {
    const duet_lm_i *iface;
    void *self;         /* the implementation's state (local: the duet_seq) */
    const void *engine; /* lms with the same engine may share one eval_many pass */
    int n_vocab;
    int n_embd;         /* width of a hidden state (DUET_LM_CAP_HIDDEN), else 0 */
    const char *name;   /* for messages and accounting ("llm", a file name, a URL) */
    int owned;          /* free() also releases self */
};

/* Works for DUET_LM_CAP_LOGITS and DUET_LM_CAP_TOPK models. */
DUET_API int duet_lm_eval(duet_lm *m, const int32_t *tok, int n, float *logits, int n_logits, duet_err *err);
/* 1 if eval gives rows a strategy can use with this sampler: full logits, or
 * top-k rows with a greedy sampler; 0 with err saying why not. */
DUET_API int duet_lm_rows_ok(const duet_lm *m, int greedy, duet_err *err);
DUET_API int duet_lm_score(duet_lm *m, const int32_t *tok, int n, float *logprob, int top_k, int32_t *top_id,
                           float *top_lp, duet_err *err);
DUET_API int duet_lm_rollback(duet_lm *m, int n_keep, duet_err *err);
DUET_API int duet_lm_pos(const duet_lm *m);
DUET_API int duet_lm_n_ctx(const duet_lm *m);
DUET_API int duet_lm_n_ctx_train(const duet_lm *m);
/* 0 when done or when m has no such mode (the hook is NULL). */
DUET_API int duet_lm_set_decode_consistent(duet_lm *m, int on);
DUET_API int duet_lm_caps(const duet_lm *m);
/* Evaluates blocks of possibly different engines: one eval_many pass per
 * engine where the engine has one, one eval per block otherwise. */
DUET_API int duet_lm_eval_blocks(const duet_lm_block *blocks, int n_blocks, duet_err *err);
/* Frees what the lm owns; the struct itself too when it was allocated by a
 * constructor that says so (lm_local.h). NULL is a no-op. */
DUET_API void duet_lm_free(duet_lm *m);

#ifdef __cplusplus
}
#endif
#endif

/* internal: not part of the public API; may change.
 *
 * What every strategy keeps of its request -- the text so far, the limits,
 * the consumer -- and the one place that hands a token out and decides
 * whether the request ends there (end-of-generation id, max_new, consumer). */
#ifndef DUET_COLLAB_REQUEST_H
#define DUET_COLLAB_REQUEST_H

#include <stdint.h>

#include "duet/strategy.h"

typedef struct collab_req {
    int32_t *hist;      /* (cap) prompt + generated tokens */
    int n_hist, cap;
    int n_prompt, max_new;
    int32_t *stop_ids;  /* (n_stop) */
    int n_stop;
    int want_logprob;   /* the consumer reads duet_token_out.logprob */
    duet_emit_fn emit;
    void *user;
    int consumer_stopped; /* the consumer's emit returned nonzero */
    duet_stats st;
    double t_start;
} collab_req;

double collab_now(void);

/* Validates and copies q (prompt within n_ctx, max_new >= 0). who names the
 * strategy in messages. Keeps the buffers of an earlier request when big enough. */
int collab_req_reset(collab_req *r, const duet_request *q, int n_ctx, const char *who, duet_err *err);
void collab_req_free(collab_req *r);

/* Appends tok to the text and hands it to the consumer. Returns the finish
 * reason the token causes (DUET_FINISH_NONE: go on). */
duet_finish collab_req_emit(collab_req *r, int32_t tok, duet_origin origin, int tier, const float *logits,
                            int n_vocab);
/* The same for a token whose row is gone (a buffered answer): its logprob as recorded. */
duet_finish collab_req_emit_lp(collab_req *r, int32_t tok, duet_origin origin, int tier, float logprob);

/* log p(tok) under raw logits (n_vocab), by a log-sum-exp in double. */
float collab_logprob(const float *logits, int n_vocab, int32_t tok);

/* Ends the strategy's request with reason f (and the total time). */
void collab_finish(duet_strategy *s, collab_req *r, duet_finish f);

/* Ends it with an error: keeps err's message in the strategy. */
int collab_fail(duet_strategy *s, collab_req *r, int rc, const duet_err *err);

#endif

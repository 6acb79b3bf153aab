/* duet — a remote model behind an OpenAI-compatible endpoint (duet serve,
 * vLLM, llama.cpp's server), over libcurl.
 *
 * What a remote model can do is probed, not assumed: scoring a token block
 * (the prompt as token ids, `echo` with prompt log-probabilities) is what
 * remote verification needs; a server without it (llama.cpp's server: "Only
 * no echo is supported") can still generate. The remote seen as a duet_lm
 * scores its sequence on every eval and returns rows holding the top-k
 * log-probabilities (DUET_LM_CAP_TOPK): exact for greedy strategies.
 *
 * Every call has a timeout; idempotent calls (scoring, probing) are retried
 * with backoff; after repeated failures a circuit breaker fails calls at once
 * for a while, so a dead endpoint costs no time. Private mode refuses every
 * call before any connection; an egress log records every request body sent. */
#ifndef DUET_REMOTE_H
#define DUET_REMOTE_H

#include <stdint.h>

#include "duet/api.h"
#include "duet/err.h"
#include "duet/lm.h"
#include "duet/strategy.h"
#include "duet/tok.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct duet_remote_params {
    const char *url;          /* base URL, e.g. http://127.0.0.1:8080 (/v1/... is appended) */
    const char *model;        /* the request's "model" */
    const char *api_key;      /* sent as a bearer token; NULL: none */
    double timeout_s;         /* whole call (default 30) */
    double connect_timeout_s; /* (default 5) */
    int retries;              /* extra tries of idempotent calls (default 2; backoff 0.2 s, doubling) */
    int top_k;                /* alternatives per position when scoring (default 5, at most 20) */
    int breaker_failures;     /* consecutive failures that open the breaker (default 3) */
    double breaker_open_s;    /* how long it stays open (default 10) */
    const char *egress_log;   /* append every request body sent as a JSON line; NULL: none */
    int private_mode;         /* never contact the endpoint */
} duet_remote_params;

DUET_API duet_remote_params duet_remote_default_params(void);

typedef struct duet_remote duet_remote;

/* No network yet: only the parameters are checked. */
DUET_API int duet_remote_open(duet_remote **out, const duet_remote_params *p, duet_err *err);
DUET_API void duet_remote_free(duet_remote *r); /* NULL is a no-op */

/* What the endpoint supports, and what follows for duet. */
typedef struct duet_remote_caps {
    int reachable;      /* it answered */
    int token_prompts;  /* takes the prompt as token ids */
    int prompt_logprobs;/* echo + logprobs: scores a given block (remote verification works) */
    int token_ids;      /* returns tokens as ids (return_tokens_as_token_ids) */
    int same_vocab;     /* a known text tokenizes to the same ids as the local vocabulary */
    char report[768];   /* one paragraph a user can read */
} duet_remote_caps;

/* Probes the endpoint; vocab (may be NULL) is the local SLM's, for the
 * same-vocabulary check. Returns 0 even when a feature is missing (caps
 * says which); a negative error when the endpoint cannot be reached. */
DUET_API int duet_remote_probe(duet_remote *r, const duet_vocab *vocab, duet_remote_caps *caps, duet_err *err);

/* Scores tok[0..n): lp[i] = log p(tok[i] | tok[<i]) (lp[0] = NAN), and the
 * top_k alternatives of the position after each token (top_id/top_lp
 * (n, top_k); -1 / -INFINITY where the endpoint sent fewer). */
DUET_API int duet_remote_score(duet_remote *r, const int32_t *tok, int n, float *lp, int top_k, int32_t *top_id,
                               float *top_lp, duet_err *err);

/* The same, asking the endpoint to compute positions >= decode_from as its
 * streamed generation would after a prompt of decode_from tokens (one token
 * at a time, not in one block: near-ties then fall the same way). duet's
 * server honours it ("duet_decode_from"); other servers ignore it. 0: one block. */
DUET_API int duet_remote_score_from(duet_remote *r, const int32_t *tok, int n, int decode_from, float *lp, int top_k,
                                    int32_t *top_id, float *top_lp, duet_err *err);

/* The round trip to the endpoint: the median of n requests (1..64) that
 * cost the server no forward pass (GET /health), over one kept connection. */
DUET_API int duet_remote_ping(duet_remote *r, int n, double *rtt_s, duet_err *err);

/* Calls made, failed, retried, refused by the breaker; seconds in calls. */
DUET_API void duet_remote_counts(const duet_remote *r, long *calls, long *failures, long *retries, long *refused,
                                 double *seconds);

/* A sequence on the remote model, its tokens kept here (the remote is
 * stateless): eval scores the whole sequence and returns top-k rows. */
DUET_API int duet_lm_remote_new(duet_lm **out, duet_remote *r, int n_vocab, int n_ctx, const char *name, duet_err *err);

/* ---- streamed generation ------------------------------------------------------
 * A completion of prompt token ids streamed from /v1/completions ("stream":
 * true): tokens as ids where the probe saw return_tokens_as_token_ids work
 * (or before any probe), else as text pieces (id -1). Retried like an
 * idempotent call only until the first token is delivered (past that point a
 * retry would repeat text); counts toward the breaker as one call. A stream
 * that sends no event for stall_s seconds fails (a stalled server), besides
 * the connect timeout; there is no whole-call limit (max_tokens bounds it). */

/* Called per streamed token; piece is the text that came with it (in id mode
 * the chunk's text goes with its first token, "" with the others). Returning
 * nonzero stops the stream (it ends as finish "stop", not an error). */
typedef int (*duet_remote_on_token)(void *ud, int32_t id, const char *piece, int len);

typedef struct duet_remote_gen_params {
    int max_tokens;   /* >= 1 */
    float temp;       /* 0: greedy; > 0: the server samples */
    uint64_t seed;    /* sent when temp > 0 */
    int ignore_eos;   /* go on past end-of-generation tokens */
    double stall_s;   /* no event for this long fails the stream (0: the remote's timeout_s) */
} duet_remote_gen_params;

typedef struct duet_remote_gen_stats {
    int n_tokens;
    double ttft_s;    /* request sent -> first token */
    double total_s;   /* request sent -> end */
    int retries;      /* attempts before the one that streamed */
    char finish[16];  /* the server's finish_reason ("stop", "length"), "stop" when on_token stopped it */
} duet_remote_gen_stats;

/* Blocking: streams the whole completion through on_token. st may be NULL. */
DUET_API int duet_remote_generate(duet_remote *r, const int32_t *prompt, int n_prompt, const duet_remote_gen_params *gp,
                                  duet_remote_on_token on_token, void *ud, duet_remote_gen_stats *st, duet_err *err);

/* The same, step by step, for a caller with other work (the strategy
 * driver): open sends the request; each pump waits at most wait_s for data
 * and delivers every complete token through on_token. pump returns 1 when
 * the stream has ended, 0 while it runs, a negative error when it failed
 * (then again on every later call). */
typedef struct duet_remote_stream duet_remote_stream;
DUET_API int duet_remote_stream_open(duet_remote_stream **out, duet_remote *r, const int32_t *prompt, int n_prompt,
                                     const duet_remote_gen_params *gp, duet_remote_on_token on_token, void *ud,
                                     duet_err *err);
DUET_API int duet_remote_stream_pump(duet_remote_stream *s, double wait_s, duet_err *err);
DUET_API void duet_remote_stream_stats(const duet_remote_stream *s, duet_remote_gen_stats *st);
DUET_API void duet_remote_stream_free(duet_remote_stream *s); /* NULL is a no-op; aborts a running stream */

/* The endpoint's streamed generation as a token source (strategy.h), for
 * duet_strategy_source: the remote LLM as a generation-only leg of a route,
 * a cascade or an offline fallback. gp gives temp, seed and stall_s
 * (max_tokens and ignore_eos come with each request). vocab (may be NULL)
 * turns text pieces into ids where the server streams no ids. */
DUET_API int duet_remote_source_new(duet_token_source **out, duet_remote *r, const duet_vocab *vocab,
                                    const duet_remote_gen_params *gp, duet_err *err);
DUET_API void duet_remote_source_free(duet_token_source *src); /* NULL is a no-op */

#ifdef __cplusplus
}
#endif
#endif

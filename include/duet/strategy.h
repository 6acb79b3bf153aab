/* duet — collaboration strategies and the driver that steps them together.
 *
 * A strategy holds one request's state over one or more models (duet_lm) and
 * never calls eval itself. Each driver step has two halves:
 *
 *   step(s, plan)  the strategy says what each of its models must evaluate
 *                  next: tokens to append and which logit rows it wants back
 *                  (duet_plan_eval), into buffers the strategy owns;
 *   accept(s)      the driver has run those evals -- one pass per model for
 *                  all active requests together -- and the strategy decides:
 *                  samples, verifies, rolls back, emits tokens, each tagged
 *                  with who produced it (duet_origin).
 *
 * until done(s) gives a finish reason. Plain generation, speculative decoding
 * (model, n-gram and combined drafts; fixed or adaptive length) and the
 * cascade are strategies; a strategy can run another as one of its legs
 * (a cascade whose LLM leg is speculative) by forwarding step and accept.
 * Adding a mechanism is one new file in src/collab/ (docs/architecture.md).
 * The CLI runs the driver with one request; the server with many. */
#ifndef DUET_STRATEGY_H
#define DUET_STRATEGY_H

#include <stdint.h>

#include "duet/api.h"
#include "duet/err.h"
#include "duet/lm.h"
#include "duet/sample.h"
#include "duet/spec.h"
#include "duet/tok.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Routing signals per request (DUET_SIG_* below). */
#define DUET_ROUTE_NSIG 9

/* Why a request ended (OpenAI's finish_reason). Append-only. */
typedef enum duet_finish {
    DUET_FINISH_NONE = 0,   /* still running */
    DUET_FINISH_STOP = 1,   /* an end-of-generation token, or the consumer asked to stop */
    DUET_FINISH_LENGTH = 2, /* max_new tokens, or the context is full */
    DUET_FINISH_ERROR = 3,  /* see the strategy's err */
} duet_finish;

DUET_API const char *duet_finish_name(duet_finish f); /* "stop", "length", "error", "none" */

/* Who produced an emitted token. Append-only (clients colour tokens by it). */
typedef enum duet_origin {
    DUET_BY_TARGET = 0,      /* the main model: plain decoding, or the LLM's correction / bonus token */
    DUET_BY_DRAFT_MODEL = 1, /* drafted by the SLM, verified and kept by the LLM */
    DUET_BY_DRAFT_NGRAM = 2, /* drafted from n-grams of the text, kept by the LLM */
    DUET_BY_SLM = 3,         /* written by the small model alone (a cheaper tier, a routed request, deferral's own tokens) */
    DUET_BY_DEFER = 4,       /* token deferral: the SLM was unsure, the LLM supplied this token */
    DUET_BY_FUSED = 5,       /* sampled from a combination of the models' distributions (fusion) */
    DUET_ORIGIN_COUNT
} duet_origin;

DUET_API const char *duet_origin_name(duet_origin o); /* "llm", "draft", "ngram", "slm", "defer", "fused" */

typedef struct duet_token_out {
    int32_t id;
    duet_origin origin;
    int tier;      /* which model of the strategy produced it: 0 = the first/cheapest leg ... */
    float logprob; /* log p(id) under the producing model's raw logits (NAN unless want_logprob) */
    const float *logits; /* (n_vocab) the producing model's raw logits for this position, valid during the
                            emit call only (top-k alternatives); NULL when not at hand */
    int n_vocab;
} duet_token_out;

/* Receives every emitted token in order; nonzero stops the request
 * (finish reason stop), e.g. a client that went away. */
typedef int (*duet_emit_fn)(void *user, const duet_token_out *t);

/* One request. The strategy copies what it keeps; the prompt may be freed
 * after reset. */
typedef struct duet_request {
    const int32_t *prompt; /* (n_prompt), n_prompt >= 1 */
    int n_prompt;
    int max_new;           /* new tokens at most (>= 0) */
    const int32_t *stop_ids; /* (n_stop_ids) end-of-generation ids: emitted, then finish stop */
    int n_stop_ids;
    duet_emit_fn emit;     /* may be NULL */
    void *user;
    int want_logprob;      /* fill duet_token_out.logprob (costs a pass over the vocabulary per token) */
} duet_request;

/* What every strategy reports; fields a strategy has no use for stay 0. */
typedef struct duet_stats {
    int n_prompt, n_generated;
    int by_origin[DUET_ORIGIN_COUNT]; /* emitted tokens by who produced them */
    int rounds;                       /* verification rounds, including plain decode steps */
    int drafted, accepted;            /* draft tokens proposed / kept */
    int drafted_model, accepted_model, drafted_ngram, accepted_ngram;
    int drafted_at[DUET_SPEC_KMAX], accepted_at[DUET_SPEC_KMAX]; /* per draft position */
    int target_evals, draft_evals;    /* eval blocks asked of each model */
    long target_tokens, draft_tokens; /* tokens evaluated by each model */
    int escalated;                    /* cascade: tiers passed over (0: the first tier answered); route: 1 = sent to the LLM */
    int deferred;                     /* token deferral: tokens the LLM supplied */
    int degraded;                     /* fallback: the primary failed and the fallback finished the answer */
    double confidence;                /* cascade: the deciding tier's confidence; route: the router's score */
    float signals[DUET_ROUTE_NSIG];   /* route: the request's signals (DUET_SIG_*) */
    double t_prefill;                 /* seconds of the prompt's pass */
    double t_draft, t_target;         /* seconds of the passes holding this request's blocks */
    double t_total;                   /* wall seconds from the first step to the end */
    duet_finish finish;
} duet_stats;

/* ---- the plan: what a step asks the models to evaluate ---------------------- */
typedef struct duet_plan duet_plan;

/* Asks the driver to append tok (n >= 1) to lm and write the logits of the
 * last n_logits of them to logits (n_logits, lm->n_vocab). The buffers stay
 * the strategy's and must live until accept. seconds (may be NULL) receives
 * the wall time of the pass that ran the block. At most one block per lm per
 * step. */
DUET_API int duet_plan_eval(duet_plan *p, duet_lm *lm, const int32_t *tok, int n, int n_logits, float *logits,
                            double *seconds);
/* duet_plan_eval that also writes the rows' final hidden states to hidden
 * (n_logits, lm->n_embd); DUET_EUNSUPPORTED unless lm has DUET_LM_CAP_HIDDEN. */
DUET_API int duet_plan_eval_hidden(duet_plan *p, duet_lm *lm, const int32_t *tok, int n, int n_logits,
                                   float *logits, float *hidden, double *seconds);

/* step may return DUET_STEP_WAIT, planning nothing, to let the others go
 * first: the driver asks it again in the same step after every other
 * request (duet_plan_second_turn is then 1), when it can see what they
 * planned (duet_plan_engine_busy) and decide to go or wait a step. A
 * speculative request ready to verify waits while others still draft, so
 * their verification blocks share one pass over the target. */
#define DUET_STEP_WAIT 1
/* step may return DUET_STEP_IDLE, planning nothing, when the request is fed
 * from outside the engines (a remote endpoint streaming its own tokens,
 * duet_strategy_source): it stays running and its accept is called all the
 * same (in its first or its second turn). */
#define DUET_STEP_IDLE 2
DUET_API int duet_plan_second_turn(const duet_plan *p);
/* Blocks planned so far this step, over all requests (0: nobody needs an
 * engine, so a request fed from outside may wait for its tokens). */
DUET_API int duet_plan_n_blocks(const duet_plan *p);
/* 1 if a block on this engine (duet_lm.engine) is already planned. */
DUET_API int duet_plan_engine_busy(const duet_plan *p, const void *engine);

/* ---- the interface every strategy implements ---------------------------------
 * llama.cpp's llama_sampler_i is the model: a table of hooks over a state. */
typedef struct duet_strategy duet_strategy;
typedef struct duet_strategy_i {
    const char *name;
    /* Starts (or restarts) a request: forgets the previous one, rolls its
     * models back to position 0, validates the request. */
    int (*reset)(duet_strategy *s, const duet_request *req, duet_err *err);
    /* Adds the blocks the request needs next. A running strategy always asks
     * for at least one block (else it must finish). */
    int (*step)(duet_strategy *s, duet_plan *plan, duet_err *err);
    /* The blocks asked for in step have been evaluated. */
    int (*accept)(duet_strategy *s, duet_err *err);
    void (*stats)(const duet_strategy *s, duet_stats *out);
    void (*free)(duet_strategy *s);
    /* Optional: a block this request asked for could not be evaluated (a
     * remote model went away, ...). Return 0 to carry on -- the strategy
     * asks anew in its next step -- or the error, which ends the request. */
    int (*eval_failed)(duet_strategy *s, int rc, const duet_err *err);
} duet_strategy_i;

/* Every strategy's state begins with this (the implementation's struct
 * embeds it first). */
struct duet_strategy {
    const duet_strategy_i *iface;
    duet_finish finish; /* set by the strategy, or ERROR by the driver */
    duet_err err;       /* why, when finish == DUET_FINISH_ERROR */
};

DUET_API int duet_strategy_reset(duet_strategy *s, const duet_request *req, duet_err *err);
DUET_API duet_finish duet_strategy_done(const duet_strategy *s);
DUET_API void duet_strategy_stats(const duet_strategy *s, duet_stats *out);
DUET_API const char *duet_strategy_name(const duet_strategy *s);
DUET_API void duet_strategy_free(duet_strategy *s); /* NULL is a no-op; does not free the models */

/* ---- the strategies ------------------------------------------------------------ */

/* Plain autoregressive decoding on one model: the baseline every mechanism
 * is measured against. sampler is borrowed (its vocabulary must be lm's). */
DUET_API int duet_strategy_plain(duet_strategy **out, duet_lm *lm, duet_sampler *sampler, duet_err *err);

typedef struct duet_spec_params {
    int use_model;     /* draft with the draft model */
    int use_ngram;     /* draft from n-grams of the prompt and output */
    int draft_max;     /* longest draft (fixed length when !adaptive), 0..DUET_SPEC_KMAX */
    int draft_min;     /* the model drafter does not stop early before this */
    float draft_p_min; /* stop drafting when the draft's top probability falls below, [0, 1] */
    int adaptive;      /* choose the length per round from measured acceptance and costs */
    int ngram_min, ngram_max; /* 1 <= ngram_min <= ngram_max <= 64 */
    /* Optional: adaptive estimates (acceptance, costs) kept across requests
     * of the same model pair, initialised once with duet_spec_adapt_init;
     * NULL: each request learns from scratch. */
    duet_spec_adapt *learned_model, *learned_ngram;
} duet_spec_params;

DUET_API duet_spec_params duet_spec_default_params(void);
/* 0, or DUET_EINVAL with err naming the field at fault. */
DUET_API int duet_spec_params_check(const duet_spec_params *p, duet_err *err);

/* Speculative decoding: a drafter (draft model, n-grams of the text so far,
 * or both) proposes a block of tokens, the target verifies the whole block
 * in one batched eval, both roll back to the accepted prefix. Lossless:
 * greedy output equals the target's greedy output, sampled output follows
 * the target's distribution exactly (spec.h). draft may be NULL without
 * use_model. The draft's vocabulary must be the target's or a prefix of it;
 * sampler must have no penalties (they make each position's distribution
 * depend on unverified tokens) and the target's vocabulary size. */
DUET_API int duet_strategy_speculative(duet_strategy **out, duet_lm *target, duet_lm *draft, duet_sampler *sampler,
                                       const duet_spec_params *p, duet_err *err);

/* A cascade over tiers ordered by cost: tier i answers the whole request
 * (buffered, not emitted), its confidence -- the mean (or, with use_min, the
 * smallest) log-probability of its tokens under its own model -- is compared
 * with threshold[i], and the request escalates to tier i + 1 when below; the
 * last tier's answer is always kept. Each tier is a strategy (plain,
 * speculative, ...), borrowed. threshold: (n_tiers - 1). -INFINITY never
 * escalates, +INFINITY always. */
DUET_API int duet_strategy_cascade(duet_strategy **out, duet_strategy *const *tiers, const float *threshold,
                                   int n_tiers, int use_min, duet_err *err);

/* Token-level deferral (Co-LLM): the SLM writes; at every token where its
 * top probability is below eta the LLM supplies the token (DUET_BY_DEFER).
 * The LLM catches up on unseen text in one batched eval and keeps its cache
 * between deferrals. eta <= 0: exactly the SLM's output; eta > 1: exactly
 * the LLM's. slm and llm share one vocabulary; sampler is borrowed. */
DUET_API int duet_strategy_defer(duet_strategy **out, duet_lm *slm, duet_lm *llm, duet_sampler *sampler, float eta,
                                 duet_err *err);

/* ---- routing: decide per request, before generating ----------------------------
 * Signals from one pass of the SLM over the prompt (its last 256 positions at
 * most); each is oriented so that larger means "harder, send to the LLM". */
enum {
    DUET_SIG_MEAN_ENTROPY = 0, /* mean entropy (nats) of the SLM's next-token distributions over the prompt */
    DUET_SIG_MAX_ENTROPY,      /* the largest of them */
    DUET_SIG_PROMPT_NLL,       /* mean negative log-likelihood of the prompt's tokens (log perplexity) */
    DUET_SIG_NEG_TOP1,         /* minus the top-1 probability of the first token to generate */
    DUET_SIG_NEG_MARGIN,       /* minus (top-1 - top-2) probability of that token */
    DUET_SIG_COPY_MISS,        /* 1 - the probability the SLM gives that token's tokens occurring in the prompt */
    DUET_SIG_TOP1_NOVEL,       /* 1 when the SLM's most likely first token does not occur in the prompt, else 0 */
    /* The content words of the prompt: its words of 3 letters or more that are
     * not English function words ("the", "she", "with", ...; duet_route_words). */
    DUET_SIG_CONTENT_MISS,     /* 1 when the SLM's most likely first token does not begin a content word of the prompt */
    DUET_SIG_CONTENT_ALT,      /* the largest probability the SLM gives another token that begins one: an
                                  alternative grounded in the prompt that a stronger model may well pick */
};
DUET_API const char *duet_signal_name(int i); /* "mean_entropy", ... */

/* The word view of a vocabulary that the content signals need: which tokens
 * begin a word (a space, then letters only), which continue one (letters
 * only), and their letters in lowercase. Bytes >= 0x80 count as letters, so
 * words in other scripts are not cut. Built once per SLM vocabulary. */
typedef struct duet_route_words duet_route_words;
DUET_API int duet_route_words_new(duet_route_words **out, const duet_vocab *vocab, duet_err *err);
DUET_API void duet_route_words_free(duet_route_words *w); /* NULL is a no-op */
/* 1 when word (len bytes, lowercase) is an English function word. */
DUET_API int duet_route_is_function_word(const char *word, size_t len);

/* Computes the signals from logit rows of consecutive prompt positions:
 * rows (n_rows, n_vocab) for positions [n_prompt - n_rows, n_prompt), and the
 * prompt's tokens (n_prompt). words: the vocabulary's word view; NULL
 * (no tokenizer at hand) counts every prompt token as a content word's, so
 * content_miss is then top1_novel. */
DUET_API void duet_route_signals(float sig[DUET_ROUTE_NSIG], const float *rows, int n_rows, int n_vocab,
                                 const int32_t *prompt, int n_prompt, const duet_route_words *words);
/* The pooled hidden state: the mean over the rows of the SLM's final hidden
 * states hidden (n_rows, n_embd) of the same positions -> pooled (n_embd). */
DUET_API void duet_route_pool_hidden(float *pooled, const float *hidden, int n_rows, int n_embd);

typedef enum {
    DUET_ROUTER_THRESHOLD = 0, /* one signal against a threshold */
    DUET_ROUTER_LOGISTIC = 1,  /* logistic regression on the standardized signals */
    DUET_ROUTER_RANDOM = 2,    /* a coin with P(LLM) = the target share: the baseline */
} duet_router_kind;

typedef struct duet_router {
    duet_router_kind kind;
    int signal;                    /* THRESHOLD: which signal */
    float mean[DUET_ROUTE_NSIG], scale[DUET_ROUTE_NSIG]; /* LOGISTIC: standardization */
    float w[DUET_ROUTE_NSIG], b;   /* LOGISTIC: P(needs the LLM) = sigmoid(w . z + hw . zh + b) */
    int n_hidden;                  /* LOGISTIC: width of the pooled hidden state it reads too (0: signals only) */
    float *h_mean, *h_scale, *h_w; /* (n_hidden) each, owned: standardization and weights of the hidden state */
    float threshold;               /* route to the LLM when score > threshold */
    float share;                   /* RANDOM: P(LLM); online: the target share */
    /* online recalibration: the threshold follows the (1 - share) quantile of
     * the last `window` scores, so the LLM share holds on drifting traffic */
    int window;                    /* 0: off */
    float *recent;                 /* (window) ring of recent scores, owned */
    int n_recent, at;
    int n_llm;                     /* LLM decisions while the window warms up */
    float offset;                  /* integral of the realised share's error (removes the window's lag) */
} duet_router;

DUET_API void duet_router_init(duet_router *r, duet_router_kind kind);
DUET_API void duet_router_free(duet_router *r); /* the ring of online recalibration, the hidden weights */
/* The router's score of a request (higher: more in need of the LLM). */
DUET_API float duet_router_score(const duet_router *r, const float sig[DUET_ROUTE_NSIG]);
/* The same with the request's pooled hidden state (r->n_hidden values; NULL
 * counts as the fitted mean, so its terms vanish). */
DUET_API float duet_router_score_h(const duet_router *r, const float sig[DUET_ROUTE_NSIG], const float *hidden);
/* The decision (1: the LLM) for a request with this score; records it for
 * online recalibration when that is on. */
DUET_API int duet_router_decide(duet_router *r, float score);
/* Fits the logistic router on n labelled requests (y = 1: the LLM is needed)
 * by Newton's method with a small L2 penalty. */
DUET_API int duet_router_fit(duet_router *r, const float *sig /* (n, DUET_ROUTE_NSIG) */, const uint8_t *y, int n,
                             duet_err *err);
/* duet_router_fit on the signals and the pooled hidden states hidden
 * (n, n_hidden) together; the L2 penalty of the wider model is picked by
 * 5-fold cross-validation on the held-out log-likelihood. */
DUET_API int duet_router_fit_h(duet_router *r, const float *sig /* (n, DUET_ROUTE_NSIG) */,
                               const float *hidden /* (n, n_hidden) */, int n_hidden, const uint8_t *y, int n,
                               duet_err *err);
/* Sets the threshold so that exactly round(share * n) of these scores route
 * to the LLM (the midpoint between the two scores at the boundary). */
DUET_API int duet_router_calibrate(duet_router *r, const float *scores, int n, float share, duet_err *err);
/* Online recalibration toward `share` over the last `window` requests. */
DUET_API int duet_router_online(duet_router *r, float share, int window, duet_err *err);
/* A small text file (duet-router v2; v1 files of five signals load too);
 * errors name the line. */
DUET_API int duet_router_save(const duet_router *r, const char *path, duet_err *err);
DUET_API int duet_router_load(duet_router *r, const char *path, duet_err *err);

/* Routing: one SLM pass over the prompt gives the signals, the router
 * decides, then the chosen leg (a strategy: the SLM's or the LLM's) answers
 * the whole request. signal_lm is the SLM (it may be the SLM leg's own lm).
 * Tokens of the SLM leg are tagged DUET_BY_SLM; stats->escalated is 1 when
 * the LLM answered, stats->confidence the router's score. router and words
 * (the signal model's word view, or NULL: duet_route_signals) are borrowed. */
DUET_API int duet_strategy_route(duet_strategy **out, duet_lm *signal_lm, const duet_route_words *words,
                                 duet_strategy *slm_leg, duet_strategy *llm_leg, duet_router *router, duet_err *err);

/* Offline fallback: the primary strategy (say, over a remote LLM) answers;
 * if one of its evals fails, or it ends with an error, the fallback (the
 * local SLM) carries on from the text so far -- the prompt plus every token
 * already emitted -- for the tokens left. Nothing is lost or repeated;
 * stats->degraded says it happened, the fallback's tokens are DUET_BY_SLM.
 * Both strategies are borrowed. */
DUET_API int duet_strategy_fallback(duet_strategy **out, duet_strategy *primary, duet_strategy *fallback,
                                    duet_err *err);
/* Why a fallback strategy's primary failed (NULL while it has not). */
DUET_API const char *duet_strategy_fallback_reason(const duet_strategy *s);

/* ---- a leg fed from outside the engines -----------------------------------------
 * A generator the driver does not evaluate -- a remote endpoint streaming its
 * own completion (remote.h: duet_remote_source_new) -- seen through three
 * calls, so libduet needs no network code. */
typedef struct duet_token_source duet_token_source;
typedef struct duet_token_source_i {
    /* Starts a continuation of prompt (n_prompt) of at most max_new tokens
     * (ignore_eos: past end-of-generation tokens), abandoning any earlier one. */
    int (*start)(duet_token_source *src, const int32_t *prompt, int n_prompt, int max_new, int ignore_eos,
                 duet_err *err);
    /* Moves the tokens produced since the last call into out (at most cap),
     * waiting up to wait_s for one when none is ready; returns how many.
     * *ended = 1 once no more will come. A failure is returned (negative,
     * err) only after every token produced before it was handed out. */
    int (*poll)(duet_token_source *src, double wait_s, int32_t *out, int cap, int *ended, duet_err *err);
    /* Abandons the running continuation (the consumer has enough). */
    void (*stop)(duet_token_source *src);
} duet_token_source_i;
struct duet_token_source {
    const duet_token_source_i *iface;
    void *self;
    const char *name; /* for messages */
};

/* Generation by a token source: its tokens, as they come, tagged
 * DUET_BY_TARGET (the source is the LLM). It plans no evals
 * (DUET_STEP_IDLE), so the driver, cascades, routing and the offline
 * fallback take it as their LLM leg; a source that fails ends the request
 * with its error (the fallback then carries on). stats: target_evals = the
 * continuations started, target_tokens = the tokens received, t_target =
 * seconds from the start to the last token, t_prefill = to the first. src
 * is borrowed. */
DUET_API int duet_strategy_source(duet_strategy **out, duet_token_source *src, duet_err *err);

/* ---- fusion: combine the models' next-token distributions at every step -------- */
typedef enum {
    DUET_FUSE_MIX = 0,   /* p = w p_LLM + (1 - w) p_SLM (a mixture of probabilities) */
    DUET_FUSE_POE = 1,   /* log p ~ w log p_LLM + (1 - w) log p_SLM (product of experts) */
    DUET_FUSE_CD = 2,    /* contrastive: log p_LLM - log p_SLM (Li et al. 2023), or with beta > 0
                            (1 + beta) log p_LLM - beta log p_SLM (O'Brien & Lewis), over the
                            plausible tokens p_LLM >= alpha max p_LLM; the rest are out */
    DUET_FUSE_PROXY = 3, /* proxy-tuning: log p_LLM + log p_tuned - log p_base (Liu et al. 2024) */
} duet_fuse_rule;

typedef struct duet_fuse_params {
    duet_fuse_rule rule;
    float weight; /* MIX, POE: the LLM's weight in [0, 1] */
    float alpha;  /* CD: plausibility, in [0, 1] */
    float beta;   /* CD: 0 = Li et al.'s difference, > 0 = O'Brien & Lewis's weighting */
} duet_fuse_params;

DUET_API duet_fuse_params duet_fuse_default_params(duet_fuse_rule rule);
DUET_API int duet_fuse_params_check(const duet_fuse_params *p, duet_err *err);
/* The number of models a rule combines: 2, or 3 for PROXY (LLM, tuned, base). */
DUET_API int duet_fuse_n_models(duet_fuse_rule rule);
/* The combined row as log-scores (softmax them to sample; -INFINITY: out):
 * logits: n models' rows (n_vocab each) in the rule's order. */
DUET_API int duet_fuse_logits(float *out, const float *const *logits, int n_vocab, const duet_fuse_params *p,
                              duet_err *err);
/* Fusion decoding: every step evaluates one token on each model (their own
 * KV caches, in one pass per model), combines the rows, samples. lms: the
 * rule's models (LLM first; all one vocabulary). Tokens are DUET_BY_FUSED. */
DUET_API int duet_strategy_fuse(duet_strategy **out, duet_lm *const *lms, int n_lms, duet_sampler *sampler,
                                const duet_fuse_params *p, duet_err *err);

/* ---- the driver: many requests stepped together ----------------------------- */
typedef struct duet_driver duet_driver;

DUET_API int duet_driver_new(duet_driver **out, duet_err *err);
DUET_API void duet_driver_free(duet_driver *d); /* NULL is a no-op; strategies are not freed */
/* Adds a request whose strategy was reset; it takes part in the next step. */
DUET_API int duet_driver_add(duet_driver *d, duet_strategy *s, duet_err *err);
/* Takes a request out (finished or not, e.g. a client that went away). */
DUET_API void duet_driver_remove(duet_driver *d, duet_strategy *s);
/* One step for every active request: gathers their blocks, evaluates them
 * with one pass per model (duet_lm_eval_blocks), hands each request its rows.
 * A request that fails ends with DUET_FINISH_ERROR alone; the others go on.
 * Finished requests leave the driver. Returns the number still active, or a
 * negative error that concerns no single request (out of memory). */
DUET_API int duet_driver_step(duet_driver *d, duet_err *err);
DUET_API int duet_driver_n_active(const duet_driver *d);
/* Passes run so far and blocks they held, over all models. */
DUET_API void duet_driver_counts(const duet_driver *d, long *passes, long *blocks);
/* A bench option (duet serve --forward-delay-ms): every pass lasts at least
 * `seconds` (the driver sleeps out the rest), standing for a large model on a
 * busy server. The sleep counts in the seconds the pass reports, as a slow
 * model's time would. 0 (the default) turns it off. */
DUET_API void duet_driver_set_min_pass(duet_driver *d, double seconds);

/* Runs one request to its end with a driver of its own. Returns the finish
 * reason, or a negative error (then err says why; the tokens emitted so far
 * were delivered). */
DUET_API int duet_run(duet_strategy *s, const duet_request *req, duet_err *err);

/* ---- combining the logits of several models ------------------------------------
 * out = sum_i w_i * log_softmax(logits_i) over the vocabulary of out (n_vocab):
 * the primitive of fusion (a weighted product of experts), contrastive
 * decoding (w = 1, -alpha) and proxy-tuning (LLM + tuned SLM - base SLM).
 * Rows shorter than n_vocab (a smaller model's vocabulary, n_vocab_i) count
 * as -INFINITY past their end. logits: n_models rows (n_vocab_i). */
DUET_API int duet_logits_combine(float *out, int n_vocab, const float *const *logits, const int *n_vocab_i,
                                 const float *w, int n_models, duet_err *err);

#ifdef __cplusplus
}
#endif
#endif

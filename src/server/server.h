/* internal: not part of the public API; may change.
 *
 * duet serve: an OpenAI-compatible HTTP server over the strategy driver.
 *
 *   HTTP threads (libmicrohttpd, one per connection)          scheduler thread
 *   parse + validate the request (openai.c) --- job queue ---> slots: a free slot takes a job,
 *   wait on the job / stream its tokens (SSE)  <-- job output -- builds its strategy, the driver
 *                                                               steps every active slot together
 *
 * Models are loaded once and shared; each slot owns one sequence (KV cache)
 * per model, so KV memory is slots x context, fixed at start-up. */
#ifndef DUET_SERVER_H
#define DUET_SERVER_H

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "duet/err.h"
#include "duet/lm.h"
#include "duet/model.h"
#include "duet/remote.h"
#include "duet/strategy.h"
#include "duet/tok.h"

#define SRV_MAX_MODELS 8
#define SRV_MAX_PROFILES 32
#define SRV_MAX_STOP 4
#define SRV_MAX_TOP_LOGPROBS 20
#define SRV_MAX_CHOICES 16

/* ---- configuration ---------------------------------------------------------- */

typedef struct srv_model {
    char name[64];
    char path[1024];
    duet_model *model;  /* NULL for a remote model */
    duet_vocab *vocab;  /* NULL for a remote model (it uses the server's: the first local model's) */
    /* a remote model: an OpenAI-compatible endpoint instead of a GGUF file */
    char remote_url[512];   /* "" = local */
    char remote_model[64];  /* the endpoint's model name */
    char api_key_env[64];   /* the key is read from this variable at start-up */
    double timeout_s;       /* per call, and the stall timeout of a stream */
    int fallback;           /* the local model that answers when the remote fails (-1: none) */
    duet_remote *remote;
    int can_verify;         /* the probe: it scores blocks in the server's vocabulary */
} srv_model;

typedef enum { SRV_PLAIN = 0, SRV_SPEC = 1, SRV_ROUTE = 2, SRV_CASCADE = 3, SRV_DEFER = 4, SRV_FUSE = 5 } srv_kind;

typedef struct srv_profile {
    char name[64];
    srv_kind kind;
    int model;          /* plain: the model; spec: the target; route, cascade, defer, fusion: the LLM */
    int draft;          /* spec with a model draft: the draft model; route, cascade, defer, fusion: the SLM
                           (proxy: the base SLM); else -1 */
    int tuned;          /* fusion with rule proxy: the tuned SLM; else -1 */
    duet_fuse_params fuse; /* fusion: the rule and its parameters */
    duet_spec_params spec;
    duet_spec_adapt learned_model, learned_ngram; /* kept across requests (scheduler thread only) */
    float param;        /* route: the target LLM share; cascade: the confidence threshold; defer: eta */
    char router[512];   /* route: a router file (duet route-fit), recalibrated online to the share; "" = a
                           threshold on the SLM's top-1 probability */
    int parametric;     /* spec: accepts "-kN" (fixed draft length N); route, defer: "-X" (share, eta) */
    /* the privacy pipeline (server/pipeline.c): the prompt is redacted (and compressed) on this server
       before any model sees it, the answer restored before the client does */
    int redact, compress;
    char pii_names[512];   /* redact: a names file ("" = none) */
    double compress_ratio; /* compress: share of the tokens kept, (0, 1] */
    int compress_model;    /* compress: the local model that scores the tokens; else -1 */
} srv_profile;

typedef struct srv_config {
    char host[64];
    int port;           /* 0: any free port */
    int threads, slots, ctx, queue;
    double time_limit_s;
    double forward_delay_s; /* bench option: every forward pass lasts at least this long (0: off) */
    int private_mode;       /* never contact a remote model: their fallbacks answer */
    char egress_log[512];   /* every request body sent to a remote model, one JSON line each ("" = none) */
    size_t body_limit;
    char api_key[256];  /* "" = none */
    int n_models, n_profiles;
    srv_model models[SRV_MAX_MODELS];
    srv_profile profiles[SRV_MAX_PROFILES];
    int default_profile;
} srv_config;

/* Defaults, then --config FILE (JSON) or the simple flags. */
void srv_config_defaults(srv_config *c);
int srv_config_load_json(srv_config *c, const char *path, duet_err *err);
/* -m LLM [--draft SLM]: models "llm" (+ "slm"), profiles llm, slm, duet-spec,
 * duet-spec-kN, duet-spec-ngram, duet-spec-ngram-kN. */
int srv_config_simple(srv_config *c, const char *llm, const char *draft, duet_err *err);
/* Loads the models (one shared thread pool) and checks their vocabularies
 * agree; opens and probes the remote ones (their reports go to stderr). */
int srv_config_load_models(srv_config *c, duet_err *err);
/* The context a remote model's requests may fill: the config's "ctx", else
 * its fallback's trained context, else the first local model's. */
int srv_model_ctx(const srv_config *c, int mi);
void srv_config_free(srv_config *c);
/* The profile a request names ("duet-spec-k4" -> duet-spec with a fixed length 4)
 * into *out; -1 if unknown. */
int srv_profile_resolve(const srv_config *c, const char *name, srv_profile *out);
/* "llm, slm, duet-spec, duet-spec-k<N>, ..." for messages. */
void srv_profile_list(const srv_config *c, char *buf, size_t cap);

/* ---- a job: one choice of one request ---------------------------------------- */

typedef struct srv_token {
    int32_t id;
    uint8_t origin;      /* duet_origin */
    float logprob;
    int n_top;
    int32_t top_id[SRV_MAX_TOP_LOGPROBS];
    float top_lp[SRV_MAX_TOP_LOGPROBS];
    uint32_t text_off, text_len; /* the bytes this token completed in text */
} srv_token;

typedef struct srv_job {
    /* the request (set by the HTTP side before it is queued, then read-only) */
    srv_profile prof;
    int prof_index;      /* the configured profile it resolves to */
    int32_t *prompt;
    int n_prompt;
    int max_tokens;
    duet_sampler_params sp;
    char *stop[SRV_MAX_STOP];
    int n_stop;
    int top_logprobs;    /* alternatives per token, 0..20; -1: no logprobs at all */
    int score_prompt;    /* echo + logprobs: log-probabilities of the prompt tokens too */
    int decode_from;     /* score_prompt: positions >= this (when in (0, n_prompt)) in the decode arithmetic */
    int ignore_eos;
    double t_queued;
    int index;           /* choice index */

    /* the output, guarded by mu (the scheduler appends, the HTTP thread reads) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_token *tok;      /* (cap_tok) generated tokens */
    int n_tok, cap_tok;
    char *text;          /* (cap_text) generated text, valid UTF-8, stop strings cut */
    size_t text_len, cap_text;
    size_t text_safe;    /* bytes of text that no stop string can still take back */
    float *prompt_lp;    /* (n_prompt) score_prompt: log p of each prompt token (NAN for the first) */
    srv_token *prompt_tok; /* (n_prompt) with top alternatives, when score_prompt */
    int started, done, cancelled;
    int http_status;     /* != 200 when the job failed before producing anything */
    char error[512];
    const char *finish;  /* "stop", "length", "error" */
    duet_stats stats;
    double t_start, t_first, t_end;
    int refs;            /* HTTP side + scheduler side */
    int n_restored;      /* pipeline: placeholders put back into this choice's answer (HTTP side) */
    int slot;
} srv_job;

srv_job *srv_job_new(void);
void srv_job_release(srv_job *j); /* drops one reference; frees at zero (takes mu) */

/* ---- metrics ------------------------------------------------------------------ */

#define SRV_HIST_BUCKETS 14

typedef struct srv_hist {
    double sum;
    long count;
    long bucket[SRV_HIST_BUCKETS]; /* cumulative at print time */
} srv_hist;

typedef struct srv_metrics {
    pthread_mutex_t mu;
    long requests[SRV_MAX_PROFILES + 1][6]; /* by profile (last: unknown) and status class: 2xx 4xx 5xx 499 503 413 */
    long tokens_evaluated[SRV_MAX_MODELS];
    long tokens_generated[SRV_MAX_MODELS];
    long drafted, accepted;
    long forward_passes; /* passes over the models' weights: driver passes and echo scoring passes */
    long by_origin[DUET_ORIGIN_COUNT];
    int queue_depth, active;
    srv_hist ttft, tpot, duration;
} srv_metrics;

void srv_metrics_init(srv_metrics *m);
void srv_metrics_request(srv_metrics *m, int profile, int status);
void srv_metrics_job(srv_metrics *m, const srv_config *c, const srv_job *j);
/* Prometheus text exposition into a malloc'd string. */
char *srv_metrics_text(srv_metrics *m, const srv_config *c);

/* ---- the scheduler ------------------------------------------------------------ */

typedef struct srv_slot {
    duet_lm *lm[SRV_MAX_MODELS]; /* one sequence per model (a remote model's: for verification) */
    srv_job *job;
    duet_strategy *strat;
    duet_strategy *legs[2];      /* route, cascade: the strategies strat runs as legs */
    /* a remote LLM's leg: its stream (or verification), the local fallback behind it */
    duet_token_source *r_src;
    duet_strategy *r_leg, *r_local, *r_fb;
    duet_sampler *r_sampler;     /* the fallback's */
    duet_sampler *sampler, *leg_sampler;
    duet_detok_stream *detok;
    int max_stop_len;
    /* the sequence a verifier's last scoring call left in lm[cache_model]
     * (echo with duet_decode_from): reused by its next call */
    int32_t *cache_tok;          /* (cache_n) */
    int cache_n, cache_model, cache_from;
} srv_slot;

typedef struct srv_sched {
    srv_config *cfg;
    srv_metrics *metrics;
    pthread_t thread;
    pthread_mutex_t mu;          /* the queue and stop flag */
    pthread_cond_t cv;
    srv_job **queue;             /* (q_cap) waiting jobs, FIFO */
    int q_head, q_len;
    int q_cap;                   /* cfg->queue + cfg->slots: room for the jobs idle slots are about to take */
    int n_idle;                  /* slots without a job at the scheduler's last look (under mu) */
    int stop;
    srv_slot *slots;             /* (cfg->slots) */
    /* route profiles: one online-recalibrated router per (profile, share) asked for */
    duet_router routers[SRV_MAX_PROFILES][4];
    float router_share[SRV_MAX_PROFILES][4];
    int n_routers[SRV_MAX_PROFILES];
    duet_route_words *words;     /* the server vocabulary's word view (the routers' content signals) */
    duet_driver *driver;
    int32_t *eog;                /* end-of-generation ids of the vocabulary */
    int n_eog;
    size_t kv_bytes;
} srv_sched;

int srv_sched_start(srv_sched *s, srv_config *c, srv_metrics *m, duet_err *err);
void srv_sched_stop(srv_sched *s);
/* Queues a job (takes a reference); DUET_ERANGE when the queue is full. */
int srv_sched_submit(srv_sched *s, srv_job *j);
/* Marks the job cancelled (client gone); the scheduler frees its slot at its next step. */
void srv_sched_cancel(srv_sched *s, srv_job *j);
int srv_sched_queue_depth(srv_sched *s);

/* ---- the server ----------------------------------------------------------------- */

typedef struct srv_server srv_server;

/* Starts HTTP and the scheduler; *port_out gets the port bound. */
int srv_server_start(srv_server **out, srv_config *c, int *port_out, duet_err *err);
void srv_server_stop(srv_server *s);
/* KV cache bytes of every slot's sequences (fixed at start-up). */
size_t srv_server_kv_bytes(const srv_server *s);

#endif

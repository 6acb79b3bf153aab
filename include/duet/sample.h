/* duet — the sampler chain.
 *
 * A sampler turns one row of logits into a token. It is a chain of stages
 * sharing one small table of hooks (llama.cpp's llama_sampler_i is the model),
 * applied in this order, each optional:
 *
 *   penalties (repeat / frequency / presence over the last N tokens)
 *   -> top-k -> top-p -> min-p -> temperature -> pick (seeded RNG, or argmax)
 *
 * Besides sampling, a chain can hand out the final distribution it samples
 * from (duet_sampler_dist): speculative decoding applies the same transforms
 * to the draft and the target model and compares the two distributions.
 * Same seed and same logits give the same tokens. */
#ifndef DUET_SAMPLE_H
#define DUET_SAMPLE_H

#include <stdint.h>

#include "duet/api.h"
#include "duet/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- seeded RNG (xoshiro256**, seeded by splitmix64) ---------------------- */
typedef struct duet_rng {
    uint64_t s[4];
} duet_rng;

DUET_API void duet_rng_seed(duet_rng *r, uint64_t seed);
DUET_API uint64_t duet_rng_next(duet_rng *r);
/* Uniform in [0, 1) with 24 bits of precision (exact in float). */
DUET_API float duet_rng_uniform(duet_rng *r);
/* Draws an index from probs (n, summing to ~1; zeros never drawn). */
DUET_API int duet_rng_pick(duet_rng *r, const float *probs, int n);

/* ---- candidates: what stages work on ------------------------------------- */
typedef struct duet_candidate {
    int32_t id;
    float logit;
    float p; /* filled by stages that need probabilities */
} duet_candidate;

typedef struct duet_candidates {
    duet_candidate *data; /* (n) */
    int n;
    int sorted; /* data is sorted by logit, descending */
} duet_candidates;

/* ---- the hook table every stage implements ---------------------------------*/
typedef struct duet_sampler_stage duet_sampler_stage;
typedef struct duet_sampler_stage_i {
    const char *name;
    void (*apply)(duet_sampler_stage *st, duet_candidates *c); /* filter / reshape */
    void (*accept)(duet_sampler_stage *st, int32_t token);     /* a token was emitted */
    void (*reset)(duet_sampler_stage *st);                     /* new sequence */
    void (*free)(duet_sampler_stage *st);
} duet_sampler_stage_i;

struct duet_sampler_stage {
    const duet_sampler_stage_i *iface;
    void *ctx;
};

/* ---- the chain -------------------------------------------------------------*/
typedef struct duet_sampler_params {
    float temp;            /* <= 0: greedy (argmax, lowest id on ties) */
    int top_k;             /* <= 0: off */
    float top_p;           /* >= 1: off */
    float min_p;           /* <= 0: off */
    float repeat_penalty;  /* 1: off (llama.cpp: logit/p if > 0 else logit*p) */
    float freq_penalty;    /* 0: off (subtract count * f) */
    float presence_penalty;/* 0: off (subtract p if seen) */
    int penalty_last_n;    /* window of history for penalties */
    uint64_t seed;
} duet_sampler_params;

DUET_API duet_sampler_params duet_sampler_default_params(void);

typedef struct duet_sampler duet_sampler;

/* Returns NULL on allocation failure or invalid params (negative temp is
 * greedy, top_p outside (0,1] is an error, ...). */
DUET_API duet_sampler *duet_sampler_new(const duet_sampler_params *p, int n_vocab);
/* 0, or DUET_EINVAL with err naming the parameter at fault. */
DUET_API int duet_sampler_params_check(const duet_sampler_params *p, duet_err *err);
/* duet_sampler_new with a reason on failure. */
DUET_API int duet_sampler_new_checked(duet_sampler **out, const duet_sampler_params *p, int n_vocab, duet_err *err);
DUET_API int duet_sampler_n_vocab(const duet_sampler *s);
/* Nonzero when a penalty stage is active (its output depends on history). */
DUET_API int duet_sampler_has_penalties(const duet_sampler *s);
DUET_API void duet_sampler_free(duet_sampler *s); /* NULL is a no-op */
DUET_API void duet_sampler_reset(duet_sampler *s); /* clears history, re-seeds the RNG */
/* Tells the penalty stages a token was emitted (prompt tokens too, if wanted). */
DUET_API void duet_sampler_accept(duet_sampler *s, int32_t token);
DUET_API int duet_sampler_is_greedy(const duet_sampler *s);
DUET_API duet_rng *duet_sampler_rng(duet_sampler *s);

/* The distribution the chain samples from, dense over the vocabulary:
 * probs (n_vocab) sums to 1; filtered tokens get 0. Greedy: one-hot. */
DUET_API void duet_sampler_dist(duet_sampler *s, const float *logits /* (n_vocab) */, float *probs /* (n_vocab) */);
/* Samples one token (does not call accept). */
DUET_API int32_t duet_sampler_sample(duet_sampler *s, const float *logits /* (n_vocab) */);

/* Index of the largest logit; lowest index on ties. */
DUET_API int32_t duet_argmax(const float *logits, int n);

#ifdef __cplusplus
}
#endif
#endif

/* duet — speculative decoding: a drafter (the SLM, n-grams of the text so
 * far, or both) proposes a block of tokens, the target (LLM) verifies the
 * whole block in one batched eval, and both sequences roll back to the
 * accepted prefix. Lossless: greedy output equals the target's greedy output,
 * sampled output follows the target's distribution exactly (spec.h). */
#ifndef DUET_SPECULATIVE_H
#define DUET_SPECULATIVE_H

#include <stdint.h>

#include "duet/lm.h"
#include "duet/sample.h"
#include "duet/spec.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct duet_spec_params {
    int use_model;     /* draft with the draft model */
    int use_ngram;     /* draft from n-grams of the prompt and output */
    int draft_max;     /* longest draft (fixed length when !adaptive) */
    int draft_min;     /* the model drafter does not stop early before this */
    float draft_p_min; /* stop drafting when the draft's top probability falls below */
    int adaptive;      /* choose the length per round from measured acceptance and costs */
    int ngram_min, ngram_max;
    /* Optional: adaptive estimates (acceptance, costs) kept across requests
     * of the same model pair, initialised once with duet_spec_adapt_init;
     * NULL: each request learns from scratch. */
    duet_spec_adapt *learned_model, *learned_ngram;
} duet_spec_params;

duet_spec_params duet_spec_default_params(void);

typedef struct duet_spec_stats {
    int n_prompt, n_generated;
    int rounds;            /* verification rounds (including plain decode steps) */
    int drafted, accepted; /* draft tokens proposed / kept */
    int drafted_model, accepted_model, drafted_ngram, accepted_ngram;
    int target_evals, draft_evals;
    int drafted_at[DUET_SPEC_KMAX], accepted_at[DUET_SPEC_KMAX]; /* per draft position */
    double t_prefill, t_draft, t_target, t_total; /* seconds */
} duet_spec_stats;

/* Called with every new token; return nonzero to stop (e.g. at EOS). */
typedef int (*duet_token_cb)(void *user, int32_t token);

/* Generates up to n_new tokens after prompt (n_prompt >= 1) with target
 * (fresh sequence, pos 0) and, if params->use_model, draft (fresh, same
 * vocabulary). sampler provides the transforms and the RNG; penalties are not
 * supported here (they make each position's distribution depend on the draft).
 * Returns the number of tokens generated or a negative error. */
int duet_speculative_generate(duet_lm *target, duet_lm *draft, duet_sampler *sampler,
                              const duet_spec_params *params, const int32_t *prompt, int n_prompt,
                              int n_new, duet_token_cb cb, void *user, duet_spec_stats *stats,
                              duet_err *err);

#ifdef __cplusplus
}
#endif
#endif

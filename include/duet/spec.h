/* duet — the pieces of speculative decoding that do not touch a model:
 * exact verification of a draft block, model-free n-gram drafting, and the
 * adaptive choice of the draft length. The strategy that drives two models
 * with them is in strategy.h (duet_strategy_speculative). */
#ifndef DUET_SPEC_H
#define DUET_SPEC_H

#include <stdint.h>

#include "duet/api.h"

#include "duet/sample.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- verification ----------------------------------------------------------
 * Modified rejection sampling (Leviathan et al. 2023, Chen et al. 2023):
 * draft token x_i, drawn from q_i, is accepted with probability
 * min(1, p_i(x_i) / q_i(x_i)); at the first rejection the next token is drawn
 * from norm(max(0, p_i - q_i)); if all k are accepted a bonus token is drawn
 * from p_k. The output then follows p exactly. With one-hot (greedy) p and q
 * this reduces to "accept while the argmaxes agree, then emit the target's
 * argmax", so greedy speculation reproduces greedy decoding token for token. */
typedef struct duet_spec_verdict {
    int n_accepted; /* draft tokens kept, 0..k */
    int32_t next;   /* the token after them: correction or bonus */
} duet_spec_verdict;

/* p: (k+1, n_vocab) target distributions after the sampler's transforms,
 * q: (k, n_vocab) draft distributions the draft tokens were drawn from
 *    (a deterministic drafter passes one-hot rows), draft: (k),
 * scratch: (n_vocab). */
DUET_API duet_spec_verdict duet_spec_verify(const float *p, const float *q, const int32_t *draft, int k,
                                   int n_vocab, duet_rng *rng, float *scratch);

/* ---- n-gram drafting (prompt lookup) ---------------------------------------
 * Finds the most recent earlier occurrence of the last n tokens of hist
 * (n from n_max down to n_min) and proposes the tokens that followed it.
 * Returns the number of tokens written to out (0..k_max). */
DUET_API int duet_ngram_draft(const int32_t *hist, int n_hist, int n_min, int n_max, int32_t *out, int k_max);

/* ---- adaptive draft length ---------------------------------------------------
 * Keeps online estimates of the acceptance and of the costs: t_draft (one
 * draft token) and t_target[k] (a target block of k tokens). With an i.i.d.
 * acceptance rate alpha, a draft of length g yields
 *   E(g) = (1 - alpha^(g+1)) / (1 - alpha)                 (Leviathan et al.)
 * tokens per round. Real drafts are kept less often the further they reach
 * (the draft conditions on its own guesses), so the estimate is per position:
 * alpha_i = P(draft i kept | drafts 0..i-1 kept), and
 *   E(g) = 1 + sum_{i<g} prod_{j<=i} alpha_j
 * which is Leviathan's formula when every alpha_i is alpha. One round costs
 * g * t_draft + t_target[g + 1]; choose_k picks the g in [0, k_max]
 * (0 = no speculation) that maximises E(g) / cost(g). */
#define DUET_SPEC_KMAX 16

typedef struct duet_spec_adapt {
    int k_max;
    double accepted, drafted;               /* decayed counts */
    double reached_at[DUET_SPEC_KMAX];      /* decayed rounds whose draft i was verified after 0..i-1 kept */
    double kept_at[DUET_SPEC_KMAX];         /* ... and draft i was kept */
    double t_draft, n_draft;                /* decayed sum of seconds per draft token, count */
    double t_target[DUET_SPEC_KMAX + 2];    /* decayed sum of seconds per block size */
    double n_target[DUET_SPEC_KMAX + 2];
    int rounds;
    int choices;                            /* calls of choose_k after exploring */
} duet_spec_adapt;

DUET_API void duet_spec_adapt_init(duet_spec_adapt *a, int k_max);
DUET_API void duet_spec_adapt_observe_accept(duet_spec_adapt *a, int drafted, int accepted);
DUET_API void duet_spec_adapt_observe_draft(duet_spec_adapt *a, int n_tokens, double seconds);
DUET_API void duet_spec_adapt_observe_target(duet_spec_adapt *a, int block, double seconds);
DUET_API double duet_spec_adapt_alpha(const duet_spec_adapt *a);
/* Estimated alpha_i (shrunk toward alpha_(i-1) while position i has few observations). */
DUET_API double duet_spec_adapt_alpha_at(const duet_spec_adapt *a, int i);
/* E(g) from the per-position estimates. */
DUET_API double duet_spec_adapt_expected_tokens(const duet_spec_adapt *a, int g);
/* Estimated seconds of a target block of `block` tokens (interpolated where unmeasured). */
DUET_API double duet_spec_adapt_target_cost(const duet_spec_adapt *a, int block);
DUET_API double duet_spec_adapt_draft_cost(const duet_spec_adapt *a);
/* Expected tokens per round for draft length g at acceptance alpha. */
DUET_API double duet_spec_expected_tokens(double alpha, int g);
/* Expected tokens per second of draft length g: E(g) / (g t_draft + t_target[g + 1]). */
DUET_API double duet_spec_adapt_rate(const duet_spec_adapt *a, int g);
/* Predicted speedup over the target alone for draft length g. */
DUET_API double duet_spec_predicted_speedup(double alpha, int g, double t_draft, double t_target1, double t_target_block);
/* The length for the next round: every block size is tried once first, then
 * the best by E(g) / cost(g), with a neighbour of the best every 24th call. */
DUET_API int duet_spec_adapt_choose_k(duet_spec_adapt *a);

#ifdef __cplusplus
}
#endif
#endif

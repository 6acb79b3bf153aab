/* duet — one request run to its end: plain or speculative generation over
 * duet_lm, for callers that want a blocking call. Both run the strategy
 * driver (strategy.h) with a single request; the server runs it with many. */
#ifndef DUET_GENERATE_H
#define DUET_GENERATE_H

#include "duet/api.h"
#include "duet/lm.h"
#include "duet/sample.h"
#include "duet/strategy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Called with every new token; return nonzero to stop (e.g. at EOS). */
typedef int (*duet_token_cb)(void *user, int32_t token);

/* Evaluates prompt (n_prompt >= 1), then samples up to n_new tokens one eval
 * at a time; every emitted token is passed to the sampler's accept
 * (penalties) and to cb (nonzero return stops). A full context ends the
 * request (stats->finish = DUET_FINISH_LENGTH), keeping what was generated.
 * Returns the number of tokens generated or a negative error. */
DUET_API int duet_generate(duet_lm *lm, duet_sampler *sampler, const int32_t *prompt, int n_prompt, int n_new,
                           duet_token_cb cb, void *user, duet_stats *stats, duet_err *err);

/* Speculative decoding of one request (strategy.h: duet_strategy_speculative
 * for the rules). Returns the number of tokens generated or a negative error. */
DUET_API int duet_speculative_generate(duet_lm *target, duet_lm *draft, duet_sampler *sampler,
                                       const duet_spec_params *params, const int32_t *prompt, int n_prompt,
                                       int n_new, duet_token_cb cb, void *user, duet_stats *stats, duet_err *err);

#ifdef __cplusplus
}
#endif
#endif

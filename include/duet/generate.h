/* duet — plain autoregressive generation over one duet_lm: the baseline every
 * collaboration mechanism is measured against. */
#ifndef DUET_GENERATE_H
#define DUET_GENERATE_H

#include "duet/lm.h"
#include "duet/sample.h"
#include "duet/speculative.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct duet_gen_stats {
    int n_prompt, n_generated;
    double t_prefill, t_decode; /* seconds */
} duet_gen_stats;

/* Evaluates prompt (n_prompt >= 1, fresh sequence), then samples up to n_new
 * tokens one eval at a time; every emitted token is passed to the sampler's
 * accept (penalties) and to cb (nonzero return stops). Returns the number of
 * tokens generated or a negative error. */
int duet_generate(duet_lm *lm, duet_sampler *sampler, const int32_t *prompt, int n_prompt, int n_new,
                  duet_token_cb cb, void *user, duet_gen_stats *stats, duet_err *err);

#ifdef __cplusplus
}
#endif
#endif

/* The blocking one-request calls: a strategy, run by duet_run. */
#include <stddef.h>

#include "duet/generate.h"

typedef struct {
    duet_token_cb cb;
    void *user;
} cb_adapter;

static int forward_token(void *user, const duet_token_out *t) {
    cb_adapter *a = user;
    return a->cb ? a->cb(a->user, t->id) : 0;
}

static int run_to_end(duet_strategy *s, const int32_t *prompt, int n_prompt, int n_new, duet_token_cb cb, void *user,
                      duet_stats *stats, duet_err *err) {
    cb_adapter a = {cb, user};
    duet_request req = {.prompt = prompt, .n_prompt = n_prompt, .max_new = n_new, .emit = forward_token, .user = &a};
    int rc = duet_run(s, &req, err);
    duet_stats local;
    duet_strategy_stats(s, stats ? stats : &local);
    if (rc >= 0) rc = (stats ? stats : &local)->n_generated;
    duet_strategy_free(s);
    return rc;
}

int duet_generate(duet_lm *lm, duet_sampler *sampler, const int32_t *prompt, int n_prompt, int n_new,
                  duet_token_cb cb, void *user, duet_stats *stats, duet_err *err) {
    duet_strategy *s;
    int rc = duet_strategy_plain(&s, lm, sampler, err);
    return rc < 0 ? rc : run_to_end(s, prompt, n_prompt, n_new, cb, user, stats, err);
}

int duet_speculative_generate(duet_lm *target, duet_lm *draft, duet_sampler *sampler, const duet_spec_params *params,
                              const int32_t *prompt, int n_prompt, int n_new, duet_token_cb cb, void *user,
                              duet_stats *stats, duet_err *err) {
    duet_strategy *s;
    int rc = duet_strategy_speculative(&s, target, draft, sampler, params, err);
    return rc < 0 ? rc : run_to_end(s, prompt, n_prompt, n_new, cb, user, stats, err);
}

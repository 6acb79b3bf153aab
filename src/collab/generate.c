/* Plain generation: one token per eval. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duet/generate.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int duet_generate(duet_lm *lm, duet_sampler *sampler, const int32_t *prompt, int n_prompt, int n_new,
                  duet_token_cb cb, void *user, duet_gen_stats *stats, duet_err *err) {
    duet_gen_stats local;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    stats->n_prompt = n_prompt;
    if (n_prompt < 1) return duet_err_set(err, DUET_EINVAL, "generate: the prompt is empty");
    int n_ctx = duet_lm_n_ctx(lm);
    if (n_prompt > n_ctx)
        return duet_err_set(err, DUET_ERANGE, "generate: prompt of %d tokens exceeds the context (%d)", n_prompt, n_ctx);
    float *logits = malloc(sizeof *logits * (size_t)lm->n_vocab); /* (n_vocab) */
    if (!logits) return duet_err_set(err, DUET_ENOMEM, "generate: out of memory");
    double t0 = now_s();
    int rc = duet_lm_eval(lm, prompt, n_prompt, logits, 1, err);
    stats->t_prefill = now_s() - t0;
    for (int i = 0; i < n_prompt && rc >= 0; i++) duet_sampler_accept(sampler, prompt[i]);
    t0 = now_s();
    while (rc >= 0 && stats->n_generated < n_new) {
        int32_t tok = duet_sampler_sample(sampler, logits);
        duet_sampler_accept(sampler, tok);
        stats->n_generated++;
        if ((cb && cb(user, tok)) || stats->n_generated == n_new) break;
        if (duet_lm_pos(lm) >= n_ctx) {
            rc = duet_err_set(err, DUET_ERANGE, "generate: context of %d tokens is full after %d new tokens", n_ctx,
                              stats->n_generated);
            break;
        }
        rc = duet_lm_eval(lm, &tok, 1, logits, 1, err);
    }
    stats->t_decode = now_s() - t0;
    free(logits);
    return rc < 0 ? rc : stats->n_generated;
}

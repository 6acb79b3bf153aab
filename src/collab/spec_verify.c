/* Exact verification of a draft block (modified rejection sampling). */
#include <string.h>

#include "duet/spec.h"

duet_spec_verdict duet_spec_verify(const float *p, const float *q, const int32_t *draft, int k,
                                   int n_vocab, duet_rng *rng, float *scratch) {
    duet_spec_verdict v = {0, -1};
    for (int i = 0; i < k; i++) {
        const float *pi = p + (size_t)i * n_vocab; /* (n_vocab) */
        const float *qi = q + (size_t)i * n_vocab; /* (n_vocab) */
        int32_t x = draft[i];
        float px = pi[x], qx = qi[x];
        /* u < p/q  <=>  u*q < p; a token the draft could not produce (q = 0)
         * is only kept if the target could (never happens for sampled drafts). */
        if (qx > 0 ? duet_rng_uniform(rng) * qx < px : px > 0) {
            v.n_accepted++;
            continue;
        }
        double mass = 0;
        for (int j = 0; j < n_vocab; j++) {
            float r = pi[j] - qi[j];
            scratch[j] = r > 0 ? r : 0;
            mass += scratch[j];
        }
        /* p == q leaves no residual mass (only possible by rounding): p itself is right. */
        v.next = mass > 0 ? duet_rng_pick(rng, scratch, n_vocab) : duet_rng_pick(rng, pi, n_vocab);
        return v;
    }
    v.next = duet_rng_pick(rng, p + (size_t)k * n_vocab, n_vocab);
    return v;
}

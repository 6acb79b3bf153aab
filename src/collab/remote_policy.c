/* Remote speculative decoding or remote generation alone: the predicted
 * tokens/s of each from measured costs (include/duet/remote_policy.h). */
#include <math.h>

#include "duet/err.h"
#include "duet/remote_policy.h"
#include "duet/spec.h"

const char *duet_remote_mode_name(duet_remote_mode m) { return m == DUET_REMOTE_MODE_SPEC ? "spec" : "remote"; }

static int bad_time(double t) { return !isfinite(t) || t < 0; }

int duet_remote_policy_decide(const duet_remote_policy_in *in, duet_remote_policy_out *out) {
    if (bad_time(in->rtt_s) || bad_time(in->t_pass_s) || bad_time(in->t_draft_s) || !isfinite(in->t_verify_s) ||
        !(in->alpha >= 0 && in->alpha <= 1) || in->k_max < 1 || in->k_max > DUET_SPEC_KMAX || !isfinite(in->margin))
        return DUET_EINVAL;
    const double t_verify = in->t_verify_s > 0 ? in->t_verify_s : in->t_pass_s;
    const double margin = in->margin > 0 ? in->margin : 1;
    /* one streamed token per pass; a pass of no measurable time still costs
     * something, or every comparison would be against infinity */
    const double remote = 1 / fmax(in->t_pass_s, 1e-6);
    int best_k = 1;
    double best = -1, best_e = 0;
    for (int k = 1; k <= in->k_max; k++) {
        const double e = duet_spec_expected_tokens(in->alpha, k);
        const double rate = e / fmax(k * in->t_draft_s + in->rtt_s + t_verify, 1e-6);
        if (rate > best) best = rate, best_k = k, best_e = e;
    }
    *out = (duet_remote_policy_out){.k = best_k, .spec_tok_s = best, .remote_tok_s = remote, .speedup = best / remote,
                                    .expected_tokens = best_e};
    out->mode = out->speedup >= margin ? DUET_REMOTE_MODE_SPEC : DUET_REMOTE_MODE_REMOTE;
    return 0;
}

/* --remote: open, probe, say what the endpoint supports, make the sequence. */
#include <stdio.h>
#include <stdlib.h>

#include "remote_cli.h"

int remote_cli_open(const remote_cli *o, const duet_vocab *vocab, int n_ctx, int need_scoring, duet_remote **r,
                    duet_lm **lm, duet_err *err) {
    *r = NULL, *lm = NULL;
    duet_remote_params p = duet_remote_default_params();
    p.url = o->url, p.model = o->model ? o->model : "llm";
    p.egress_log = o->egress_log, p.private_mode = o->private_mode;
    if (o->timeout_s > 0) p.timeout_s = o->timeout_s;
    if (o->key_env) {
        p.api_key = getenv(o->key_env);
        if (!p.api_key) return duet_err_set(err, DUET_EINVAL, "--api-key-env: the variable %s is not set", o->key_env);
    }
    int rc = duet_remote_open(r, &p, err);
    if (rc < 0) return rc;
    if (o->private_mode) {
        fprintf(stderr, "duet: private mode: %s is never contacted; the local model answers\n", o->url);
        return 0;
    }
    duet_remote_caps caps;
    duet_err pe = {0};
    rc = duet_remote_probe(*r, vocab, &caps, &pe);
    fprintf(stderr, "duet: %s\n", caps.report);
    if (rc == 0 && need_scoring && !caps.prompt_logprobs)
        return duet_err_set(err, DUET_EUNSUPPORTED, "%s cannot verify drafts (see above): drop --draft to generate remotely",
                            o->url);
    /* unreachable now: the sequence is made all the same, and the fallback answers */
    return duet_lm_remote_new(lm, *r, duet_vocab_n(vocab), n_ctx, "remote", err);
}

int remote_cli_generate_leg(duet_remote *r, const duet_vocab *vocab, const duet_sampler_params *sp,
                            duet_token_source **src, duet_strategy **leg, duet_err *err) {
    *leg = NULL;
    duet_remote_gen_params gp = {.temp = sp->temp, .seed = sp->seed};
    int rc = duet_remote_source_new(src, r, vocab, &gp, err);
    return rc < 0 ? rc : duet_strategy_source(leg, *src, err);
}

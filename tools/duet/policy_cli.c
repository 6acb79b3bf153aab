/* --policy: the remote leg as asked (policy_cli.h). */
#include <stdio.h>
#include <string.h>

#include "policy_cli.h"

static const char *const policy_names[] = {"auto", "spec", "remote"};

int policy_cli_build(policy_cli *p, duet_remote *r, const duet_vocab *vocab, duet_lm *rl, duet_lm *dl,
                     duet_sampler *smp, duet_spec_params *spec, duet_strategy **leg, duet_err *err) {
    *leg = NULL;
    int rc = 0;
    if (p->policy != POLICY_SPEC) { /* the remote's own greedy stream */
        const duet_remote_gen_params gp = {.temp = 0};
        if ((rc = duet_remote_source_new(&p->src, r, vocab, &gp, err)) < 0) return rc;
        if ((rc = duet_strategy_source(&p->stream, p->src, err)) < 0) return rc;
    }
    if (p->policy != POLICY_REMOTE) {
        duet_spec_params sp = *spec;
        duet_spec_adapt_init(&p->adapt, sp.draft_max);
        if (sp.adaptive) sp.learned_model = &p->adapt;
        if ((rc = duet_strategy_speculative(&p->spec, rl, dl, smp, &sp, err)) < 0) return rc;
    }
    if (p->policy == POLICY_AUTO) {
        duet_remote_auto_params ap = duet_remote_auto_default_params();
        if (spec->draft_max >= 1) ap.k_max = spec->draft_max;
        rc = duet_strategy_remote_auto(&p->chooser, p->stream, p->spec, dl, spec->adaptive ? &p->adapt : NULL, &ap,
                                       err);
        if (rc < 0) return rc;
    }
    *leg = p->chooser ? p->chooser : p->spec ? p->spec : p->stream;
    return 0;
}

void policy_cli_json(cJSON *stats, const policy_cli *p) {
    cJSON *o = cJSON_AddObjectToObject(stats, "policy");
    cJSON_AddStringToObject(o, "policy", policy_names[p->policy]);
    duet_remote_auto_report rep;
    if (!p->chooser || duet_strategy_remote_auto_report(p->chooser, &rep) < 0) {
        cJSON_AddStringToObject(o, "mode", p->policy == POLICY_SPEC ? "spec" : "remote");
        cJSON_AddBoolToObject(o, "decided", 0);
        return;
    }
    cJSON_AddStringToObject(o, "mode", duet_remote_mode_name(rep.mode));
    cJSON_AddBoolToObject(o, "decided", rep.decided);
    if (!rep.decided) return;
    cJSON_AddNumberToObject(o, "decided_after_tokens", rep.switched_at);
    cJSON_AddNumberToObject(o, "rtt_s", rep.in.rtt_s);
    cJSON_AddNumberToObject(o, "pass_s", rep.in.t_pass_s);
    cJSON_AddNumberToObject(o, "draft_token_s", rep.in.t_draft_s);
    cJSON_AddNumberToObject(o, "alpha", rep.in.alpha);
    cJSON_AddNumberToObject(o, "k", rep.out.k);
    cJSON_AddNumberToObject(o, "expected_tokens_per_round", rep.out.expected_tokens);
    cJSON_AddNumberToObject(o, "predicted_spec_tok_s", rep.out.spec_tok_s);
    cJSON_AddNumberToObject(o, "predicted_remote_tok_s", rep.out.remote_tok_s);
    cJSON_AddNumberToObject(o, "predicted_speedup", rep.out.speedup);
    if (rep.switched_back) { /* drafting ran: its rate measured after 4 rounds */
        cJSON_AddNumberToObject(o, "measured_spec_tok_s", rep.measured_spec_tok_s);
        cJSON_AddNumberToObject(o, "switched_back_at", rep.switched_back > 0 ? rep.switched_back : -1);
    }
}

void policy_cli_print(const policy_cli *p) {
    duet_remote_auto_report rep;
    if (!p->chooser || duet_strategy_remote_auto_report(p->chooser, &rep) < 0 || !rep.decided) return;
    fprintf(stderr,
            "[policy] after %d streamed tokens: round trip %.1f ms, LLM pass %.1f ms, draft %.2f ms/token, agreement "
            "%.2f: drafting (k=%d) predicted %.2fx the stream alone -> %s\n",
            rep.switched_at, rep.in.rtt_s * 1e3, rep.in.t_pass_s * 1e3, rep.in.t_draft_s * 1e3, rep.in.alpha, rep.out.k,
            rep.out.speedup, rep.mode == DUET_REMOTE_MODE_SPEC ? "remote speculative decoding" : "the stream");
    if (rep.switched_back > 0)
        fprintf(stderr, "[policy] drafting measured %.1f tok/s after 4 rounds, under the stream's %.1f: back to the "
                        "stream after %d tokens\n", rep.measured_spec_tok_s, rep.out.remote_tok_s, rep.switched_back);
}

void policy_cli_free(policy_cli *p) {
    duet_strategy_free(p->chooser);
    duet_strategy_free(p->spec);
    duet_strategy_free(p->stream);
    duet_remote_source_free(p->src);
    p->chooser = p->spec = p->stream = NULL, p->src = NULL;
}

/* --policy auto|spec|remote of duet generate --remote URL --draft SLM: the
 * remote LLM's leg as remote speculative decoding (spec), the remote's own
 * streamed generation (remote), or the round-trip-aware choice made on the
 * request (auto: duet_strategy_remote_auto, include/duet/remote_policy.h). */
#ifndef DUET_CLI_POLICY_H
#define DUET_CLI_POLICY_H

#include <cjson/cJSON.h>

#include "duet/remote.h"
#include "duet/remote_policy.h"

enum { POLICY_AUTO = 0, POLICY_SPEC = 1, POLICY_REMOTE = 2 };

typedef struct {
    int policy;                 /* POLICY_* as asked */
    duet_spec_adapt adapt;      /* the speculative leg's estimates (auto seeds them) */
    duet_token_source *src;     /* the remote's stream */
    duet_strategy *stream, *spec, *chooser; /* owned */
} policy_cli;

/* Builds the remote leg into *leg (owned by p): rl the remote sequence, dl
 * the draft, smp and spec as for speculative decoding. */
int policy_cli_build(policy_cli *p, duet_remote *r, const duet_vocab *vocab, duet_lm *rl, duet_lm *dl,
                     duet_sampler *smp, duet_spec_params *spec, duet_strategy **leg, duet_err *err);

/* The "policy" object of --json stats: the policy, the mode that ran, and
 * under auto the measured costs and the prediction. */
void policy_cli_json(cJSON *stats, const policy_cli *p);

/* Under auto, one line on stderr: what was measured and chosen. */
void policy_cli_print(const policy_cli *p);

void policy_cli_free(policy_cli *p);

#endif

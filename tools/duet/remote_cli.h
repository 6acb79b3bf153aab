/* The --remote options of the CLI: an OpenAI-compatible endpoint as the LLM
 * (include/duet/remote.h), probed before use. */
#ifndef DUET_CLI_REMOTE_H
#define DUET_CLI_REMOTE_H

#include "duet/remote.h"
#include "duet/sample.h"
#include "duet/strategy.h"
#include "duet/tok.h"

typedef struct {
    const char *url;         /* --remote URL */
    const char *model;       /* --remote-model NAME */
    const char *key_env;     /* --api-key-env VAR: the key is read from this variable */
    const char *egress_log;  /* --egress-log FILE */
    double timeout_s;        /* --remote-timeout S */
    int private_mode;        /* --private */
} remote_cli;

/* Opens and probes the endpoint, prints the probe's report on stderr, and
 * makes a remote sequence of n_ctx positions. need_scoring: refuse an
 * endpoint that cannot score a token block (remote verification). In
 * private mode nothing is contacted and *lm stays NULL (the caller answers
 * locally). Returns 0 or a negative error with err set. */
int remote_cli_open(const remote_cli *o, const duet_vocab *vocab, int n_ctx, int need_scoring, duet_remote **r,
                    duet_lm **lm, duet_err *err);

/* The remote's own streamed generation as the LLM leg (no --draft): one
 * request for the whole answer, the server sampling at sp->temp with
 * sp->seed; *src and *leg are the caller's to free (leg first). */
int remote_cli_generate_leg(duet_remote *r, const duet_vocab *vocab, const duet_sampler_params *sp,
                            duet_token_source **src, duet_strategy **leg, duet_err *err);

#endif

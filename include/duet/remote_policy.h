/* duet — whether to draft on the device for a remote LLM, from measured
 * costs: the round trip, the LLM's time per forward pass, the draft's time
 * per token, and how often the draft agrees with the LLM.
 *
 * Remote generation alone streams one token per LLM forward pass: after the
 * first token (one round trip plus the prompt's pass), a token every t_pass.
 * Remote speculative decoding pays, per round, k draft tokens on the device,
 * one round trip and one LLM pass over the block, and gets
 *   E(k) = 1 + a + a^2 + ... + a^k = (1 - a^(k+1)) / (1 - a)
 * tokens (Leviathan et al., with an i.i.d. acceptance rate a). Drafting wins
 * when max_k E(k) / (k t_draft + rtt + t_verify) beats 1 / t_pass by the
 * margin; a long round trip in front of a fast server loses, a slow server
 * behind a short one wins. The same arithmetic, fed with measured seconds
 * per verification (which include the round trip), is why the adaptive
 * draft length (spec.h) drafts longer as the round trip grows. */
#ifndef DUET_REMOTE_POLICY_H
#define DUET_REMOTE_POLICY_H

#include "duet/api.h"
#include "duet/spec.h"
#include "duet/strategy.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { DUET_REMOTE_MODE_SPEC = 0, DUET_REMOTE_MODE_REMOTE = 1 } duet_remote_mode;

typedef struct duet_remote_policy_in {
    double rtt_s;      /* a round trip to the endpoint (a cheap call), seconds */
    double t_pass_s;   /* the LLM's time per forward pass as the stream sees it (seconds per streamed token) */
    double t_verify_s; /* one verification call's time on the server (the pass over the sequence); <= 0: t_pass_s */
    double t_draft_s;  /* the device's seconds per draft token */
    double alpha;      /* the draft's acceptance rate, in [0, 1] */
    int k_max;         /* longest draft considered (1..16) */
    double margin;     /* drafting must be predicted this many times faster (e.g. 1.1); <= 0: 1 */
} duet_remote_policy_in;

typedef struct duet_remote_policy_out {
    duet_remote_mode mode;
    int k;                 /* the best draft length (1..k_max) */
    double spec_tok_s;     /* predicted tokens/s of speculative decoding at k */
    double remote_tok_s;   /* predicted tokens/s of remote generation alone */
    double speedup;        /* spec_tok_s / remote_tok_s */
    double expected_tokens;/* E(k) per round */
} duet_remote_policy_out;

/* Fills out from in; DUET_EINVAL (out untouched) for a negative or
 * non-finite time, alpha outside [0, 1] or k_max outside 1..16. */
DUET_API int duet_remote_policy_decide(const duet_remote_policy_in *in, duet_remote_policy_out *out);

DUET_API const char *duet_remote_mode_name(duet_remote_mode m); /* "spec", "remote" */

/* ---- the choice made on the request itself ------------------------------------
 * duet_strategy_remote_auto starts the remote's own stream at once (no cost
 * where it is the faster way), measures its first probe_tokens tokens -- the
 * time to the first (a round trip and a pass), the gaps (the LLM's pass),
 * the draft's agreement with them on the device -- then decides with
 * duet_remote_policy_decide (and whether drafting would win back its
 * catch-up call, a round trip and a verification, on the tokens left): it
 * keeps the stream, or stops it and lets the
 * speculative leg carry on from the text so far, its adaptive estimates
 * (adapt: the ones the leg was made with, may be NULL) seeded with a round
 * trip plus a pass per verification. After 4 rounds of drafting it checks
 * the rate drafting really gets against the stream's and, if the prediction
 * was wrong, goes back to the stream once. Legs and draft are borrowed; the draft
 * is the speculative leg's own (it is not used by both at once). */
#define DUET_REMOTE_AUTO_MAX_PROBE 32

typedef struct duet_remote_auto_params {
    int probe_tokens; /* streamed tokens measured before deciding (2..32, default 4) */
    int k_max;        /* longest draft the prediction considers (default 8) */
    double margin;    /* drafting must be predicted this many times faster (default 1.1) */
} duet_remote_auto_params;

typedef struct duet_remote_auto_report {
    int decided;           /* the measurement was complete (else: the stream ran to the end) */
    int switched_at;       /* generated tokens when it decided */
    duet_remote_mode mode; /* what ran after the decision */
    int switched_back;     /* drafting measured slower than the stream after 4 rounds: the generated
                              tokens when it went back to the stream; -1: checked, drafting stayed; 0: not checked */
    double measured_spec_tok_s; /* drafting's measured rate at that check */
    duet_remote_policy_in in;
    duet_remote_policy_out out;
} duet_remote_auto_report;

DUET_API duet_remote_auto_params duet_remote_auto_default_params(void);
DUET_API int duet_strategy_remote_auto(duet_strategy **out, duet_strategy *stream, duet_strategy *spec, duet_lm *draft,
                                       duet_spec_adapt *adapt, const duet_remote_auto_params *p, duet_err *err);
/* The decision of a remote-auto strategy's last request; DUET_EINVAL for another strategy. */
DUET_API int duet_strategy_remote_auto_report(const duet_strategy *s, duet_remote_auto_report *rep);

#ifdef __cplusplus
}
#endif
#endif

/* The round-trip-aware choice between remote generation alone and remote
 * speculative decoding, made on the request itself (remote_policy.h).
 *
 * The remote's own stream starts at once, so where it is the faster way the
 * answer comes exactly as fast as without any policy. While its first
 * tokens arrive, they measure what the choice needs: the time to the first
 * token (a round trip and the prompt's pass), the gaps between tokens (the
 * LLM's time per pass), and -- the draft reading the same tokens on the
 * device, one small block per arrival -- how often the draft's guess is the
 * LLM's token (the acceptance rate on this very text). After probe_tokens
 * tokens it decides; if drafting is predicted faster by the margin, the
 * stream is stopped and the speculative leg carries on from the text so
 * far, its adaptive draft length seeded with the measured costs (a round
 * trip plus a pass per verification, whatever the block size), so it does
 * not spend rounds trying short blocks the round trip makes expensive. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collab/request.h"
#include "duet/remote_policy.h"
#include "duet/sample.h"

enum { PH_WATCH, PH_REMOTE, PH_SPEC };

/* Speculative rounds after the switch before its measured rate is trusted: 2
 * proved too few (the first rounds of a text can be its worst) */
#define CHECK_ROUNDS 4

typedef struct {
    duet_strategy base;
    duet_strategy *stream, *spec; /* the legs (borrowed) */
    duet_lm *draft;               /* reads the streamed tokens while watching */
    duet_spec_adapt *adapt;       /* the spec leg's estimates, seeded at the switch (may be NULL) */
    duet_remote_auto_params par;
    collab_req r;                 /* the request as given; hist grows with every token out */
    int phase;
    /* watching */
    double t_arrive[DUET_REMOTE_AUTO_MAX_PROBE]; /* when generated token i was handed out */
    int d_fed;                    /* hist positions the draft has read */
    int planned, plan_start, plan_n, plan_rows; /* the draft block of this step */
    float *rows;                  /* (cap_rows, n_vocab) its logit rows */
    int cap_rows;
    int32_t guess;                /* the draft's argmax after its last position (-1: none) */
    int agree, compared;
    double draft_s, block_s;      /* seconds of the draft's blocks, of this step's block */
    int draft_tok;
    double t_spec0;               /* when drafting's first token (the catch-up call's) came; 0: not yet */
    int n_spec0;                  /* generated tokens then */
    duet_remote_auto_report rep;
} auto_strategy;

static int pass_token(void *user, const duet_token_out *t) {
    auto_strategy *a = user;
    const int i = a->r.st.n_generated;
    if (a->phase == PH_SPEC && a->t_spec0 == 0) a->t_spec0 = collab_now(), a->n_spec0 = i + 1;
    if (a->phase == PH_WATCH && i < DUET_REMOTE_AUTO_MAX_PROBE) a->t_arrive[i] = collab_now();
    collab_req_emit(&a->r, t->id, t->origin, t->tier, t->logits, t->n_vocab);
    return a->r.consumer_stopped;
}

static duet_request leg_request(auto_strategy *a) {
    return (duet_request){.prompt = a->r.hist, .n_prompt = a->r.n_hist, .max_new = a->r.max_new - a->r.st.n_generated,
                          .stop_ids = a->r.stop_ids, .n_stop_ids = a->r.n_stop, .emit = pass_token, .user = a,
                          .want_logprob = a->r.want_logprob};
}

static duet_strategy *in_charge(auto_strategy *a) { return a->phase == PH_SPEC ? a->spec : a->stream; }

/* After CHECK_ROUNDS rounds of drafting, the rate it really gets (after the
 * one-time catch-up call) against the stream's measured one: a prediction
 * that was wrong (a verification costing more than a pass: a busy server, a
 * long block) goes back to the stream, once -- where the tokens left win
 * back more than the new stream's first token costs (a round trip and a
 * pass). */
static int check_spec(auto_strategy *a, duet_err *err) {
    duet_stats st;
    duet_strategy_stats(a->spec, &st);
    if (a->rep.switched_back || st.rounds < CHECK_ROUNDS) return 0;
    const double dt = collab_now() - a->t_spec0;
    const int made = a->r.st.n_generated - a->n_spec0;
    if (a->t_spec0 == 0 || made < 1 || dt <= 0) return 0;
    const double rate = a->rep.measured_spec_tok_s = made / dt;
    const int left = a->r.max_new - a->r.st.n_generated;
    const double restart = a->rep.in.rtt_s + a->rep.in.t_pass_s;
    if (rate >= a->rep.out.remote_tok_s || left * (1 / rate - 1 / a->rep.out.remote_tok_s) <= restart) {
        a->rep.switched_back = -1; /* checked: drafting stays */
        return 0;
    }
    a->rep.switched_back = a->r.st.n_generated;
    a->phase = PH_REMOTE;
    const duet_request q = leg_request(a);
    int rc = duet_strategy_reset(a->stream, &q, err);
    if (rc >= 0 && a->stream->finish != DUET_FINISH_NONE) collab_finish(&a->base, &a->r, a->stream->finish);
    return rc;
}

static int ar_reset(duet_strategy *s, const duet_request *q, duet_err *err) {
    auto_strategy *a = (auto_strategy *)s;
    int rc = collab_req_reset(&a->r, q, 1 << 30, "remote-auto", err); /* each leg checks its own context */
    if (rc < 0) return rc;
    a->phase = PH_WATCH;
    a->d_fed = a->planned = a->agree = a->compared = a->draft_tok = 0;
    a->draft_s = 0;
    a->guess = -1;
    memset(&a->rep, 0, sizeof a->rep);
    a->rep.mode = DUET_REMOTE_MODE_REMOTE;
    if ((rc = duet_lm_rollback(a->draft, 0, err)) < 0) return rc;
    if (q->max_new == 0) {
        collab_finish(s, &a->r, DUET_FINISH_LENGTH);
        return 0;
    }
    const duet_request leg = leg_request(a);
    rc = duet_strategy_reset(a->stream, &leg, err);
    if (rc >= 0 && a->stream->finish != DUET_FINISH_NONE) collab_finish(s, &a->r, a->stream->finish);
    return rc;
}

/* The draft reads the tokens handed out since its last block: rows only
 * from the prompt's last position on (those guess generated tokens). */
static int plan_draft(auto_strategy *a, duet_plan *plan) {
    const int n = a->r.n_hist - a->d_fed;
    if (n <= 0 || a->r.n_hist >= duet_lm_n_ctx(a->draft)) return 0;
    const int first_row = a->r.n_prompt - 1 > a->d_fed ? a->r.n_prompt - 1 : a->d_fed;
    const int n_rows = a->r.n_hist - first_row;
    if (n_rows > a->cap_rows) {
        float *r = realloc(a->rows, sizeof *r * (size_t)n_rows * (size_t)a->draft->n_vocab);
        if (!r) return DUET_ENOMEM;
        a->rows = r, a->cap_rows = n_rows;
    }
    int rc = duet_plan_eval(plan, a->draft, a->r.hist + a->d_fed, n, n_rows, a->rows, &a->block_s);
    if (rc < 0) return rc;
    a->planned = 1, a->plan_start = a->d_fed, a->plan_n = n, a->plan_rows = n_rows;
    return 0;
}

/* Rows of the draft's block: each guess against the token that came. */
static void read_draft(auto_strategy *a) {
    const int nv = a->draft->n_vocab, end = a->plan_start + a->plan_n;
    if (a->guess >= 0 && a->plan_start < a->r.n_hist) a->compared++, a->agree += a->guess == a->r.hist[a->plan_start];
    for (int i = 0; i < a->plan_rows; i++) {
        const int pos = end - a->plan_rows + i; /* the row after token pos */
        const int32_t g = duet_argmax(a->rows + (size_t)i * nv, nv);
        if (pos + 1 < end) a->compared++, a->agree += g == a->r.hist[pos + 1];
        else a->guess = g;
    }
    a->d_fed = end;
    a->draft_s += a->block_s;
    a->draft_tok += a->plan_n - (a->plan_start == 0 ? a->r.n_prompt - 1 : 0); /* the prompt's prefill is not drafting */
    a->planned = 0;
}

static int ar_step(duet_strategy *s, duet_plan *plan, duet_err *err) {
    auto_strategy *a = (auto_strategy *)s;
    duet_strategy *leg = in_charge(a);
    if (a->phase != PH_WATCH) return leg->iface->step(leg, plan, err);
    int rc = plan_draft(a, plan);
    if (rc < 0) return duet_err_set(err, rc, "remote-auto: cannot plan the draft's block");
    const int lrc = leg->iface->step(leg, plan, err);
    if (lrc < 0) return lrc;
    return a->planned ? 0 : lrc;
}

/* The costs measured so far; 0 when there are too few tokens to say. */
static int measure(auto_strategy *a, duet_remote_policy_in *in) {
    const int n = a->r.st.n_generated < a->par.probe_tokens ? a->r.st.n_generated : a->par.probe_tokens;
    if (n < 2) return 0;
    const double ttft = a->t_arrive[0] - a->r.t_start;
    const double t_pass = (a->t_arrive[n - 1] - a->t_arrive[0]) / (n - 1);
    const double t_draft = a->draft_tok > 0 ? a->draft_s / a->draft_tok : 0;
    *in = (duet_remote_policy_in){.rtt_s = ttft - t_pass > 0 ? ttft - t_pass : 0, /* the first token: a round trip and a pass */
                                  .t_pass_s = t_pass, .t_verify_s = t_pass, .t_draft_s = t_draft,
                                  .alpha = (a->agree + 1.0) / (a->compared + 2.0), /* Beta(1, 1) prior */
                                  .k_max = a->par.k_max, .margin = a->par.margin};
    return 1;
}

/* Seeds the speculative leg's estimates: a verification costs a round
 * trip and a pass whatever the block's size. */
static void seed(duet_spec_adapt *ad, const duet_remote_policy_in *in) {
    if (!ad) return;
    duet_spec_adapt_init(ad, ad->k_max);
    for (int b = 1; b <= ad->k_max + 1; b++) duet_spec_adapt_observe_target(ad, b, in->rtt_s + in->t_verify_s);
    duet_spec_adapt_observe_draft(ad, 1, in->t_draft_s > 0 ? in->t_draft_s : 1e-6);
}

static int decide(auto_strategy *a, duet_err *err) {
    duet_remote_policy_in in;
    if (!measure(a, &in)) return 0;
    duet_remote_policy_out out;
    if (duet_remote_policy_decide(&in, &out) < 0) { /* a clock went odd: stay with the stream */
        a->phase = PH_REMOTE;
        return 0;
    }
    /* drafting must also win back its catch-up call (a round trip and a
     * verification over the text so far) on the tokens left */
    const int left = a->r.max_new - a->r.st.n_generated;
    if (out.mode == DUET_REMOTE_MODE_SPEC &&
        left * (1 / out.remote_tok_s - 1 / out.spec_tok_s) <= in.rtt_s + in.t_verify_s)
        out.mode = DUET_REMOTE_MODE_REMOTE;
    a->rep.decided = 1, a->rep.in = in, a->rep.out = out, a->rep.mode = out.mode;
    a->rep.switched_at = a->r.st.n_generated;
    if (out.mode == DUET_REMOTE_MODE_REMOTE) {
        a->phase = PH_REMOTE;
        return 0;
    }
    /* stop the stream (a request for nothing stops the running one), go on drafting */
    const duet_request none = {.prompt = a->r.hist, .n_prompt = a->r.n_hist, .max_new = 0};
    int rc = duet_strategy_reset(a->stream, &none, err);
    if (rc < 0) return rc;
    seed(a->adapt, &in);
    a->phase = PH_SPEC;
    a->t_spec0 = 0;
    const duet_request q = leg_request(a);
    if ((rc = duet_strategy_reset(a->spec, &q, err)) < 0) return rc;
    if (a->spec->finish != DUET_FINISH_NONE) collab_finish(&a->base, &a->r, a->spec->finish);
    return 0;
}

static int ar_accept(duet_strategy *s, duet_err *err) {
    auto_strategy *a = (auto_strategy *)s;
    if (a->planned) read_draft(a);
    duet_strategy *leg = in_charge(a);
    int rc = leg->iface->accept(leg, err);
    if (rc < 0) return collab_fail(s, &a->r, rc, err);
    if (leg->finish == DUET_FINISH_ERROR) return collab_fail(s, &a->r, leg->err.code < 0 ? leg->err.code : DUET_EIO, &leg->err);
    if (leg->finish != DUET_FINISH_NONE) {
        collab_finish(s, &a->r, leg->finish);
        return 0;
    }
    /* decide once the draft has judged probe_tokens - 1 of them (it reads a
     * step behind the stream), or when it cannot keep up (its context) */
    if (a->phase == PH_WATCH && a->r.st.n_generated >= a->par.probe_tokens &&
        (a->compared >= a->par.probe_tokens - 1 || a->r.n_hist >= duet_lm_n_ctx(a->draft) ||
         a->r.st.n_generated >= 2 * a->par.probe_tokens))
        if ((rc = decide(a, err)) < 0) return collab_fail(s, &a->r, rc, err);
    if (a->phase == PH_SPEC && !a->rep.switched_back && (rc = check_spec(a, err)) < 0) return collab_fail(s, &a->r, rc, err);
    return 0;
}

static void ar_stats(const duet_strategy *s, duet_stats *out) {
    const auto_strategy *a = (const auto_strategy *)s;
    duet_stats w, p;
    duet_strategy_stats(a->stream, &w);
    memset(&p, 0, sizeof p);
    if (a->phase == PH_SPEC || a->rep.switched_back > 0) duet_strategy_stats(a->spec, &p);
    *out = p;
    out->target_evals = p.target_evals + w.target_evals;
    out->target_tokens = p.target_tokens + w.target_tokens;
    out->t_target = p.t_target + w.t_target;
    out->draft_tokens = p.draft_tokens + a->draft_tok;
    out->t_draft = p.t_draft + a->draft_s;
    memcpy(out->by_origin, a->r.st.by_origin, sizeof out->by_origin);
    out->n_prompt = a->r.n_prompt;
    out->n_generated = a->r.st.n_generated;
    out->t_prefill = w.t_prefill;
    out->t_total = a->r.st.t_total;
    out->finish = a->base.finish;
}

static void ar_free(duet_strategy *s) {
    auto_strategy *a = (auto_strategy *)s;
    collab_req_free(&a->r);
    free(a->rows);
    free(a);
}

static int ar_eval_failed(duet_strategy *s, int rc, const duet_err *e) {
    auto_strategy *a = (auto_strategy *)s;
    duet_strategy *leg = in_charge(a);
    if (a->planned) { /* the draft's block failed: stop measuring, keep the stream */
        a->planned = 0;
        if (a->phase == PH_WATCH) a->phase = PH_REMOTE;
        return 0;
    }
    return leg->iface->eval_failed ? leg->iface->eval_failed(leg, rc, e) : rc;
}

static const duet_strategy_i auto_iface = {.name = "remote-auto", .reset = ar_reset, .step = ar_step,
                                           .accept = ar_accept, .stats = ar_stats, .free = ar_free,
                                           .eval_failed = ar_eval_failed};

duet_remote_auto_params duet_remote_auto_default_params(void) {
    return (duet_remote_auto_params){.probe_tokens = 4, .k_max = 8, .margin = 1.1};
}

int duet_strategy_remote_auto(duet_strategy **out, duet_strategy *stream, duet_strategy *spec, duet_lm *draft,
                              duet_spec_adapt *adapt, const duet_remote_auto_params *p, duet_err *err) {
    *out = NULL;
    if (!stream || !spec || !draft || stream == spec)
        return duet_err_set(err, DUET_EINVAL, "remote-auto: need a stream leg, a speculative leg and a draft model");
    if (p->probe_tokens < 2 || p->probe_tokens > DUET_REMOTE_AUTO_MAX_PROBE)
        return duet_err_set(err, DUET_EINVAL, "remote-auto: probe_tokens %d outside 2..%d", p->probe_tokens,
                            DUET_REMOTE_AUTO_MAX_PROBE);
    if (p->k_max < 1 || p->k_max > DUET_SPEC_KMAX || !(p->margin > 0))
        return duet_err_set(err, DUET_EINVAL, "remote-auto: k_max must be in 1..%d and margin > 0", DUET_SPEC_KMAX);
    auto_strategy *a = calloc(1, sizeof *a);
    if (!a) return duet_err_set(err, DUET_ENOMEM, "remote-auto: out of memory");
    a->base.iface = &auto_iface;
    a->base.finish = DUET_FINISH_LENGTH; /* not started */
    a->stream = stream, a->spec = spec, a->draft = draft, a->adapt = adapt, a->par = *p;
    *out = &a->base;
    return 0;
}

int duet_strategy_remote_auto_report(const duet_strategy *s, duet_remote_auto_report *rep) {
    if (!s || s->iface != &auto_iface) return DUET_EINVAL;
    *rep = ((const auto_strategy *)s)->rep;
    return 0;
}

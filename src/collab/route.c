/* Routing as a strategy: one SLM pass over the prompt gives the signals,
 * the router decides, and the chosen leg -- a strategy of its own -- answers
 * the whole request while the route strategy forwards its steps. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collab/request.h"
#include "duet/strategy.h"

#define MAX_SIGNAL_ROWS 256 /* the signals look at the prompt's last positions */

typedef struct {
    duet_strategy base;
    duet_lm *sig_lm;
    const duet_route_words *words; /* the signal model's word view, or NULL */
    duet_strategy *legs[2]; /* 0: the SLM's, 1: the LLM's */
    duet_router *router;
    collab_req r;           /* the request as the consumer gave it */
    float *rows;            /* (MAX_SIGNAL_ROWS, n_vocab) */
    float *hidden;          /* (MAX_SIGNAL_ROWS, n_embd) when the router reads the hidden state, else NULL */
    float *pooled;          /* (n_embd) their mean */
    int n_rows;
    int chosen;             /* -1 before the decision */
    float score;
    float sig[DUET_ROUTE_NSIG];
    double seconds;
} route_strategy;

/* The chosen leg's tokens go out as they come; the SLM's are tagged as its. */
static int pass_token(void *user, const duet_token_out *t) {
    route_strategy *rs = user;
    const duet_origin o = rs->chosen == 0 ? DUET_BY_SLM : t->origin;
    collab_req_emit(&rs->r, t->id, o, rs->chosen, t->logits, t->n_vocab);
    return rs->r.consumer_stopped;
}

static int route_reset(duet_strategy *s, const duet_request *q, duet_err *err) {
    route_strategy *rs = (route_strategy *)s;
    int rc = collab_req_reset(&rs->r, q, duet_lm_n_ctx(rs->sig_lm), "route", err);
    if (rc < 0) return rc;
    if ((rc = duet_lm_rollback(rs->sig_lm, 0, err)) < 0) return rc;
    duet_lm_set_decode_consistent(rs->sig_lm, 0);
    rs->chosen = -1;
    rs->n_rows = q->n_prompt < MAX_SIGNAL_ROWS ? q->n_prompt : MAX_SIGNAL_ROWS;
    if (q->max_new == 0) collab_finish(s, &rs->r, DUET_FINISH_LENGTH);
    return 0;
}

static int route_step(duet_strategy *s, duet_plan *plan, duet_err *err) {
    route_strategy *rs = (route_strategy *)s;
    if (rs->chosen < 0)
        return duet_plan_eval_hidden(plan, rs->sig_lm, rs->r.hist, rs->r.n_prompt, rs->n_rows, rs->rows, rs->hidden,
                                     &rs->seconds);
    duet_strategy *leg = rs->legs[rs->chosen];
    return leg->iface->step(leg, plan, err);
}

static int route_accept(duet_strategy *s, duet_err *err) {
    route_strategy *rs = (route_strategy *)s;
    if (rs->chosen < 0) { /* the signals arrived: decide, then start the leg */
        duet_route_signals(rs->sig, rs->rows, rs->n_rows, rs->sig_lm->n_vocab, rs->r.hist, rs->r.n_prompt,
                           rs->words);
        if (rs->hidden) duet_route_pool_hidden(rs->pooled, rs->hidden, rs->n_rows, rs->sig_lm->n_embd);
        rs->score = duet_router_score_h(rs->router, rs->sig, rs->hidden ? rs->pooled : NULL);
        rs->chosen = duet_router_decide(rs->router, rs->score) ? 1 : 0;
        duet_request q = {.prompt = rs->r.hist, .n_prompt = rs->r.n_prompt, .max_new = rs->r.max_new,
                          .stop_ids = rs->r.stop_ids, .n_stop_ids = rs->r.n_stop, .emit = pass_token, .user = rs,
                          .want_logprob = rs->r.want_logprob};
        return duet_strategy_reset(rs->legs[rs->chosen], &q, err);
    }
    duet_strategy *leg = rs->legs[rs->chosen];
    int rc = leg->iface->accept(leg, err);
    if (rc < 0) return rc;
    if (leg->finish == DUET_FINISH_ERROR) {
        if (err) *err = leg->err;
        return leg->err.code < 0 ? leg->err.code : DUET_EINVAL;
    }
    if (leg->finish != DUET_FINISH_NONE) collab_finish(s, &rs->r, leg->finish);
    return 0;
}

static void route_stats(const duet_strategy *s, duet_stats *out) {
    const route_strategy *rs = (const route_strategy *)s;
    memset(out, 0, sizeof *out);
    if (rs->chosen == 1) duet_strategy_stats(rs->legs[1], out);
    if (rs->chosen == 0) { /* the SLM's work goes under the draft counters, the LLM's under target */
        duet_stats leg;
        duet_strategy_stats(rs->legs[0], &leg);
        out->rounds = leg.rounds;
        out->draft_evals = leg.target_evals + leg.draft_evals;
        out->draft_tokens = leg.target_tokens + leg.draft_tokens;
        out->t_draft = leg.t_target + leg.t_draft + leg.t_prefill;
    }
    /* the tokens as the consumer saw them, plus the signal pass on the SLM */
    memcpy(out->by_origin, rs->r.st.by_origin, sizeof out->by_origin);
    out->n_prompt = rs->r.st.n_prompt;
    out->n_generated = rs->r.st.n_generated;
    out->draft_evals += 1;
    out->draft_tokens += rs->r.n_prompt;
    out->t_draft += rs->seconds;
    out->escalated = rs->chosen == 1;
    out->confidence = rs->score;
    memcpy(out->signals, rs->sig, sizeof rs->sig);
    out->t_total = rs->r.st.t_total;
}

static void route_free(duet_strategy *s) {
    route_strategy *rs = (route_strategy *)s;
    collab_req_free(&rs->r);
    free(rs->rows), free(rs->hidden), free(rs->pooled);
    free(rs);
}

static const duet_strategy_i route_iface = {
    .name = "route", .reset = route_reset, .step = route_step, .accept = route_accept, .stats = route_stats,
    .free = route_free};

int duet_strategy_route(duet_strategy **out, duet_lm *signal_lm, const duet_route_words *words, duet_strategy *slm_leg,
                        duet_strategy *llm_leg, duet_router *router, duet_err *err) {
    *out = NULL;
    if (!signal_lm || !slm_leg || !llm_leg || !router)
        return duet_err_set(err, DUET_EINVAL, "route: need the SLM, both legs and a router");
    if (!(duet_lm_caps(signal_lm) & DUET_LM_CAP_LOGITS))
        return duet_err_set(err, DUET_EUNSUPPORTED, "route: the signal model %s does not return logits", signal_lm->name);
    const int H = router->kind == DUET_ROUTER_LOGISTIC ? router->n_hidden : 0;
    if (H && (!(duet_lm_caps(signal_lm) & DUET_LM_CAP_HIDDEN) || signal_lm->n_embd != H))
        return duet_err_set(err, DUET_EINVAL,
                            "route: the router reads a hidden state of %d values; the signal model %s gives %d", H,
                            signal_lm->name, duet_lm_caps(signal_lm) & DUET_LM_CAP_HIDDEN ? signal_lm->n_embd : 0);
    route_strategy *rs = calloc(1, sizeof *rs);
    if (rs) rs->rows = malloc(sizeof *rs->rows * (size_t)signal_lm->n_vocab * MAX_SIGNAL_ROWS);
    if (rs && H) rs->hidden = malloc(sizeof *rs->hidden * (size_t)H * MAX_SIGNAL_ROWS);
    if (rs && H) rs->pooled = malloc(sizeof *rs->pooled * (size_t)H);
    if (!rs || !rs->rows || (H && (!rs->hidden || !rs->pooled))) {
        if (rs) free(rs->rows), free(rs->hidden), free(rs->pooled);
        free(rs);
        return duet_err_set(err, DUET_ENOMEM, "route: out of memory");
    }
    rs->base.iface = &route_iface;
    rs->base.finish = DUET_FINISH_LENGTH; /* not started */
    rs->sig_lm = signal_lm, rs->words = words, rs->legs[0] = slm_leg, rs->legs[1] = llm_leg, rs->router = router;
    rs->chosen = -1;
    *out = &rs->base;
    return 0;
}

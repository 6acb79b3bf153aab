/* Offline fallback: the primary strategy answers (typically over a remote
 * LLM); when one of its evals fails or it ends with an error, the fallback
 * strategy (the local SLM) takes over from the text so far -- prompt plus
 * every token already handed out -- for the tokens that are left, so the
 * consumer gets one answer with nothing lost or repeated. */
#include <stdlib.h>
#include <string.h>

#include "collab/request.h"
#include "duet/strategy.h"

typedef struct {
    duet_strategy base;
    duet_strategy *primary, *fallback;
    collab_req r;        /* the request as the consumer gave it; hist grows with every token out */
    int degraded;        /* the fallback is in charge */
    duet_err why;        /* what made the primary fail */
} fallback_strategy;

static int pass_token(void *user, const duet_token_out *t) {
    fallback_strategy *f = user;
    duet_token_out out = *t;
    if (f->degraded) out.origin = DUET_BY_SLM;
    collab_req_emit(&f->r, out.id, out.origin, out.tier, out.logits, out.n_vocab);
    return f->r.consumer_stopped;
}

static duet_request leg_request(fallback_strategy *f) {
    return (duet_request){.prompt = f->r.hist, .n_prompt = f->r.n_hist, .max_new = f->r.max_new - f->r.st.n_generated,
                          .stop_ids = f->r.stop_ids, .n_stop_ids = f->r.n_stop, .emit = pass_token, .user = f,
                          .want_logprob = f->r.want_logprob};
}

/* The primary is out: the fallback carries on from here. */
static int take_over(fallback_strategy *f, int rc, const duet_err *e, duet_err *err) {
    if (f->degraded) return rc; /* the fallback failed too: nothing left */
    f->degraded = 1;
    if (e) f->why = *e;
    f->why.code = rc;
    if (f->r.st.n_generated >= f->r.max_new) {
        collab_finish(&f->base, &f->r, DUET_FINISH_LENGTH);
        return 0;
    }
    const duet_request q = leg_request(f);
    int r2 = duet_strategy_reset(f->fallback, &q, err);
    if (r2 < 0) return r2;
    if (f->fallback->finish != DUET_FINISH_NONE) collab_finish(&f->base, &f->r, f->fallback->finish);
    return 0;
}

static int fb_reset(duet_strategy *s, const duet_request *q, duet_err *err) {
    fallback_strategy *f = (fallback_strategy *)s;
    int rc = collab_req_reset(&f->r, q, 1 << 30, "fallback", err); /* each leg checks its own context */
    if (rc < 0) return rc;
    f->degraded = 0;
    memset(&f->why, 0, sizeof f->why);
    if (q->max_new == 0) {
        collab_finish(s, &f->r, DUET_FINISH_LENGTH);
        return 0;
    }
    const duet_request leg = leg_request(f);
    duet_err e = {0};
    rc = duet_strategy_reset(f->primary, &leg, &e);
    if (rc < 0) return take_over(f, rc, &e, err); /* e.g. a remote that refuses the request */
    return 0;
}

static duet_strategy *in_charge(fallback_strategy *f) { return f->degraded ? f->fallback : f->primary; }

static int fb_step(duet_strategy *s, duet_plan *plan, duet_err *err) {
    fallback_strategy *f = (fallback_strategy *)s;
    duet_strategy *leg = in_charge(f);
    return leg->iface->step(leg, plan, err);
}

static int fb_accept(duet_strategy *s, duet_err *err) {
    fallback_strategy *f = (fallback_strategy *)s;
    duet_strategy *leg = in_charge(f);
    duet_err e = {0};
    int rc = leg->iface->accept(leg, &e);
    if (rc < 0 || leg->finish == DUET_FINISH_ERROR) {
        if (rc >= 0) e = leg->err, rc = e.code < 0 ? e.code : DUET_EINVAL;
        if (f->degraded) {
            if (err) *err = e;
            return rc;
        }
        return take_over(f, rc, &e, err);
    }
    if (leg->finish != DUET_FINISH_NONE) collab_finish(s, &f->r, leg->finish);
    return 0;
}

static int fb_eval_failed(duet_strategy *s, int rc, const duet_err *e) {
    fallback_strategy *f = (fallback_strategy *)s;
    duet_err err = {0};
    if (f->degraded) return rc;
    return take_over(f, rc, e, &err);
}

static void fb_stats(const duet_strategy *s, duet_stats *out) {
    const fallback_strategy *f = (const fallback_strategy *)s;
    duet_stats p, b;
    duet_strategy_stats(f->primary, &p);
    memset(&b, 0, sizeof b);
    if (f->degraded) duet_strategy_stats(f->fallback, &b);
    *out = p;
    /* the fallback's work is the local model's: count it as draft work */
    out->draft_evals += b.target_evals + b.draft_evals;
    out->draft_tokens += b.target_tokens + b.draft_tokens;
    out->t_draft += b.t_target + b.t_draft + b.t_prefill;
    memcpy(out->by_origin, f->r.st.by_origin, sizeof out->by_origin);
    out->n_prompt = f->r.n_prompt;
    out->n_generated = f->r.st.n_generated;
    out->degraded = f->degraded;
    out->t_total = f->r.st.t_total;
}

static void fb_free(duet_strategy *s) {
    fallback_strategy *f = (fallback_strategy *)s;
    collab_req_free(&f->r);
    free(f);
}

static const duet_strategy_i fallback_iface = {
    .name = "fallback", .reset = fb_reset, .step = fb_step, .accept = fb_accept, .stats = fb_stats,
    .free = fb_free, .eval_failed = fb_eval_failed};

int duet_strategy_fallback(duet_strategy **out, duet_strategy *primary, duet_strategy *fallback, duet_err *err) {
    *out = NULL;
    if (!primary || !fallback || primary == fallback)
        return duet_err_set(err, DUET_EINVAL, "fallback: need two distinct strategies");
    fallback_strategy *f = calloc(1, sizeof *f);
    if (!f) return duet_err_set(err, DUET_ENOMEM, "fallback: out of memory");
    f->base.iface = &fallback_iface;
    f->base.finish = DUET_FINISH_LENGTH; /* not started */
    f->primary = primary, f->fallback = fallback;
    *out = &f->base;
    return 0;
}

const char *duet_strategy_fallback_reason(const duet_strategy *s) {
    const fallback_strategy *f = s && s->iface == &fallback_iface ? (const fallback_strategy *)s : NULL;
    return f && f->degraded ? f->why.msg : NULL;
}

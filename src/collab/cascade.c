/* A cascade over tiers ordered by cost, each tier a strategy of its own (a
 * leg): tier i answers the whole request into a buffer, the answer's
 * confidence (mean token log-probability under tier i's model) is compared
 * with threshold[i], and either the buffer goes out or the request
 * escalates to tier i + 1. The last tier streams straight to the consumer.
 * The cascade never evaluates anything itself: its step and accept are
 * those of the tier in charge. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collab/request.h"
#include "duet/strategy.h"

typedef struct {
    duet_strategy base;
    duet_strategy **tiers; /* (n) borrowed */
    float *threshold;      /* (n - 1) */
    int n, cur;
    int use_min;           /* confidence = the smallest token log-probability (else the mean) */
    collab_req r;          /* the request as the consumer gave it */
    duet_token_out *buf;   /* (cap_buf) the current tier's answer, held back */
    int n_buf, cap_buf;
    duet_stats used;       /* counts of the tiers already done */
} cascade_strategy;

static int hold_token(void *user, const duet_token_out *t) {
    cascade_strategy *c = user;
    if (c->n_buf == c->cap_buf) {
        int cap = c->cap_buf ? c->cap_buf * 2 : 64;
        duet_token_out *b = realloc(c->buf, sizeof *b * (size_t)cap);
        if (!b) return 1; /* cannot hold more: the answer ends here (and is judged as it is) */
        c->buf = b, c->cap_buf = cap;
    }
    c->buf[c->n_buf] = *t;
    c->buf[c->n_buf++].logits = NULL; /* the row is the tier's scratch: gone after this call */
    return 0;
}

static int pass_token(void *user, const duet_token_out *t) {
    cascade_strategy *c = user;
    collab_req_emit(&c->r, t->id, t->origin, c->cur, t->logits, t->n_vocab);
    return c->r.consumer_stopped; /* stop ids and max_new: the tier sees those itself */
}

/* A tier's work goes under the draft (cheaper tiers) or target (the last
 * tier) counters, so an accounting by model can tell the SLM's from the LLM's. */
static void add_counts(duet_stats *to, const duet_stats *from, int cheap) {
    if (cheap) {
        to->draft_evals += from->target_evals + from->draft_evals;
        to->draft_tokens += from->target_tokens + from->draft_tokens;
        to->t_draft += from->t_target + from->t_draft + from->t_prefill;
        to->rounds += from->rounds;
        return;
    }
    to->rounds += from->rounds;
    to->drafted += from->drafted, to->accepted += from->accepted;
    to->drafted_model += from->drafted_model, to->accepted_model += from->accepted_model;
    to->drafted_ngram += from->drafted_ngram, to->accepted_ngram += from->accepted_ngram;
    to->target_evals += from->target_evals, to->draft_evals += from->draft_evals;
    to->target_tokens += from->target_tokens, to->draft_tokens += from->draft_tokens;
    to->t_draft += from->t_draft, to->t_target += from->t_target;
    if (to->t_prefill == 0) to->t_prefill = from->t_prefill;
}

static int start_tier(cascade_strategy *c, duet_err *err) {
    const int last = c->cur == c->n - 1;
    duet_request q = {.prompt = c->r.hist, .n_prompt = c->r.n_prompt, .max_new = c->r.max_new,
                      .stop_ids = c->r.stop_ids, .n_stop_ids = c->r.n_stop,
                      .emit = last ? pass_token : hold_token, .user = c,
                      .want_logprob = last ? c->r.want_logprob : 1};
    c->n_buf = 0;
    return duet_strategy_reset(c->tiers[c->cur], &q, err);
}

static int cascade_reset(duet_strategy *s, const duet_request *q, duet_err *err) {
    cascade_strategy *c = (cascade_strategy *)s;
    int rc = collab_req_reset(&c->r, q, 1 << 30, "cascade", err); /* each tier checks its own context */
    if (rc < 0) return rc;
    memset(&c->used, 0, sizeof c->used);
    c->cur = 0;
    if (q->max_new == 0) {
        collab_finish(s, &c->r, DUET_FINISH_LENGTH);
        return 0;
    }
    return start_tier(c, err);
}

static int cascade_step(duet_strategy *s, duet_plan *plan, duet_err *err) {
    cascade_strategy *c = (cascade_strategy *)s;
    return c->tiers[c->cur]->iface->step(c->tiers[c->cur], plan, err);
}

/* The tier in charge is done: judge its answer, then hand it out or escalate. */
static int tier_done(cascade_strategy *c, duet_err *err) {
    duet_strategy *t = c->tiers[c->cur];
    duet_stats ts;
    duet_strategy_stats(t, &ts);
    add_counts(&c->used, &ts, c->cur < c->n - 1);
    if (t->finish == DUET_FINISH_ERROR) {
        if (err) *err = t->err;
        return t->err.code < 0 ? t->err.code : DUET_EINVAL;
    }
    if (c->cur == c->n - 1) { /* the last tier streamed already */
        collab_finish(&c->base, &c->r, t->finish);
        return 0;
    }
    double sum = 0, lo = 0;
    for (int i = 0; i < c->n_buf; i++) {
        sum += c->buf[i].logprob;
        lo = i == 0 || c->buf[i].logprob < lo ? c->buf[i].logprob : lo;
    }
    const double conf = !c->n_buf ? 0 : c->use_min ? lo : sum / c->n_buf;
    c->r.st.confidence = conf;
    if (conf >= c->threshold[c->cur]) {
        duet_finish f = DUET_FINISH_NONE;
        for (int i = 0; i < c->n_buf && f == DUET_FINISH_NONE; i++)
            f = collab_req_emit_lp(&c->r, c->buf[i].id, DUET_BY_SLM, c->cur, c->buf[i].logprob);
        collab_finish(&c->base, &c->r, f != DUET_FINISH_NONE ? f : t->finish);
        return 0;
    }
    c->cur++;
    return start_tier(c, err);
}

static int cascade_accept(duet_strategy *s, duet_err *err) {
    cascade_strategy *c = (cascade_strategy *)s;
    duet_strategy *t = c->tiers[c->cur];
    int rc = t->iface->accept(t, err);
    if (rc < 0) return rc;
    return t->finish != DUET_FINISH_NONE ? tier_done(c, err) : 0;
}

static void cascade_stats(const duet_strategy *s, duet_stats *out) {
    const cascade_strategy *c = (const cascade_strategy *)s;
    *out = c->r.st;
    add_counts(out, &c->used, 0);
    if (c->base.finish == DUET_FINISH_NONE) { /* the tier in charge, so far */
        duet_stats ts;
        duet_strategy_stats(c->tiers[c->cur], &ts);
        add_counts(out, &ts, c->cur < c->n - 1);
    }
    out->escalated = c->cur;
}

static void cascade_free(duet_strategy *s) {
    cascade_strategy *c = (cascade_strategy *)s;
    collab_req_free(&c->r);
    free(c->tiers), free(c->threshold), free(c->buf);
    free(c);
}

static const duet_strategy_i cascade_iface = {
    .name = "cascade", .reset = cascade_reset, .step = cascade_step, .accept = cascade_accept,
    .stats = cascade_stats, .free = cascade_free};

int duet_strategy_cascade(duet_strategy **out, duet_strategy *const *tiers, const float *threshold, int n_tiers,
                          int use_min, duet_err *err) {
    *out = NULL;
    if (n_tiers < 1 || !tiers) return duet_err_set(err, DUET_EINVAL, "cascade: no tiers");
    for (int i = 0; i < n_tiers; i++)
        if (!tiers[i]) return duet_err_set(err, DUET_EINVAL, "cascade: tier %d is missing", i);
    for (int i = 0; i + 1 < n_tiers; i++)
        if (!threshold || isnan(threshold[i]))
            return duet_err_set(err, DUET_EINVAL, "cascade: threshold %d is missing or not a number", i);
    cascade_strategy *c = calloc(1, sizeof *c);
    if (c) {
        c->tiers = malloc(sizeof *c->tiers * (size_t)n_tiers);
        c->threshold = malloc(sizeof *c->threshold * (size_t)n_tiers);
    }
    if (!c || !c->tiers || !c->threshold) {
        if (c) free(c->tiers), free(c->threshold);
        free(c);
        return duet_err_set(err, DUET_ENOMEM, "cascade: out of memory");
    }
    memcpy(c->tiers, tiers, sizeof *tiers * (size_t)n_tiers);
    if (n_tiers > 1) memcpy(c->threshold, threshold, sizeof *threshold * (size_t)(n_tiers - 1));
    c->n = n_tiers;
    c->use_min = use_min != 0;
    c->base.iface = &cascade_iface;
    c->base.finish = DUET_FINISH_LENGTH; /* not started */
    *out = &c->base;
    return 0;
}

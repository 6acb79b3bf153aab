/* Generation by a token source: a generator the driver does not evaluate
 * (a remote endpoint streaming its own completion). The strategy plans no
 * blocks (DUET_STEP_IDLE) and only collects what the source produced since
 * the last step, so it can be the LLM leg of a cascade, a route or an
 * offline fallback while local requests share the same driver.
 *
 * Waiting: a step in which no request needs an engine (nobody planned a
 * block, seen in the second turn) waits a little for the source's next
 * token instead of spinning; a step with local work does not wait at all. */
#include <stdlib.h>
#include <string.h>

#include "collab/request.h"
#include "duet/strategy.h"

#define SOURCE_BATCH 64      /* tokens taken from the source per step at most */
#define SOURCE_WAIT_S 0.05   /* the longest wait for a token when nothing else runs */

typedef struct {
    duet_strategy base;
    duet_token_source *src;
    collab_req r;
    int32_t got[SOURCE_BATCH]; /* tokens received, not yet handed out */
    int n_got;
    int ended;                 /* the source has nothing more */
    int failed;                /* the source failed: accept reports why */
    duet_err why;
    int started;               /* a continuation is running at the source */
    int n_received;
    double t_first, t_last;
} source_strategy;

static void collect(source_strategy *s, double wait_s) {
    if (s->n_got > 0 || s->ended || s->failed) return;
    duet_err e = {0};
    int ended = 0;
    const int n = s->src->iface->poll(s->src, wait_s, s->got, SOURCE_BATCH, &ended, &e);
    if (n < 0) {
        s->failed = 1, s->why = e, s->why.code = n;
        return;
    }
    s->n_got = n;
    s->ended = ended;
    if (n > 0) {
        const double now = collab_now();
        if (s->n_received == 0) s->t_first = now;
        s->t_last = now;
        s->n_received += n;
    }
}

static int source_reset(duet_strategy *st, const duet_request *q, duet_err *err) {
    source_strategy *s = (source_strategy *)st;
    if (s->started) s->src->iface->stop(s->src), s->started = 0;
    int rc = collab_req_reset(&s->r, q, 1 << 30, s->src->name ? s->src->name : "source", err);
    if (rc < 0) return rc;
    s->n_got = s->ended = s->failed = s->n_received = 0;
    s->t_first = s->t_last = 0;
    memset(&s->why, 0, sizeof s->why);
    if (q->max_new == 0) {
        collab_finish(st, &s->r, DUET_FINISH_LENGTH);
        return 0;
    }
    rc = s->src->iface->start(s->src, s->r.hist, s->r.n_prompt, q->max_new, q->n_stop_ids == 0, err);
    if (rc < 0) return rc;
    s->started = 1;
    return 0;
}

static int source_step(duet_strategy *st, duet_plan *plan, duet_err *err) {
    source_strategy *s = (source_strategy *)st;
    (void)err;
    collect(s, 0);
    if (s->n_got > 0 || s->ended || s->failed) return DUET_STEP_IDLE;
    if (!duet_plan_second_turn(plan)) return DUET_STEP_WAIT; /* see whether anyone needs an engine */
    collect(s, duet_plan_n_blocks(plan) == 0 ? SOURCE_WAIT_S : 0);
    return DUET_STEP_IDLE;
}

static int source_accept(duet_strategy *st, duet_err *err) {
    source_strategy *s = (source_strategy *)st;
    duet_finish f = DUET_FINISH_NONE;
    int i = 0;
    for (; i < s->n_got && f == DUET_FINISH_NONE; i++) f = collab_req_emit(&s->r, s->got[i], DUET_BY_TARGET, 0, NULL, 0);
    s->n_got = 0;
    if (f != DUET_FINISH_NONE) {
        if (!s->ended && s->started) s->src->iface->stop(s->src); /* a stop id, max_new or the consumer */
        s->started = 0;
        collab_finish(st, &s->r, f);
        return 0;
    }
    if (s->failed) {
        s->started = 0;
        if (err) *err = s->why;
        return collab_fail(st, &s->r, s->why.code < 0 ? s->why.code : DUET_EIO, &s->why);
    }
    if (s->ended) { /* the source stopped by itself: its end-of-text, a stop string, its length limit */
        s->started = 0;
        collab_finish(st, &s->r, s->r.st.n_generated >= s->r.max_new ? DUET_FINISH_LENGTH : DUET_FINISH_STOP);
    }
    return 0;
}

static void source_stats(const duet_strategy *st, duet_stats *out) {
    const source_strategy *s = (const source_strategy *)st;
    *out = s->r.st;
    out->target_evals = s->r.n_prompt > 0 ? 1 : 0;
    out->target_tokens = s->n_received;
    out->rounds = 0;
    out->t_prefill = s->n_received ? s->t_first - s->r.t_start : 0;
    out->t_target = s->n_received ? s->t_last - s->r.t_start : 0;
}

static void source_free(duet_strategy *st) {
    source_strategy *s = (source_strategy *)st;
    if (s->started) s->src->iface->stop(s->src);
    collab_req_free(&s->r);
    free(s);
}

static const duet_strategy_i source_iface = {.name = "remote",
                                             .reset = source_reset,
                                             .step = source_step,
                                             .accept = source_accept,
                                             .stats = source_stats,
                                             .free = source_free};

int duet_strategy_source(duet_strategy **out, duet_token_source *src, duet_err *err) {
    *out = NULL;
    if (!src || !src->iface || !src->iface->start || !src->iface->poll || !src->iface->stop)
        return duet_err_set(err, DUET_EINVAL, "source: no token source");
    source_strategy *s = calloc(1, sizeof *s);
    if (!s) return duet_err_set(err, DUET_ENOMEM, "source: out of memory");
    s->base.iface = &source_iface;
    s->base.finish = DUET_FINISH_LENGTH; /* not started */
    s->src = src;
    *out = &s->base;
    return 0;
}

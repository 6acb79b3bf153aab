/* The driver: steps many requests together.
 *
 * Each step asks every active request for its blocks (step), evaluates all
 * blocks of one model in one pass (duet_lm_eval_blocks groups them by
 * engine), and hands every request its rows (accept). The engine gives each
 * row the bits it would get alone, so a request's output never depends on
 * what it was batched with. A pass that fails is retried one request at a
 * time, so one bad request ends alone with an error and the others go on. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collab/request.h"
#include "duet/strategy.h"

struct duet_plan {
    int second;            /* the waiting requests' turn (they see the others' blocks) */
    duet_lm_block *blocks; /* (cap) */
    double **seconds;      /* (cap) where each block's pass time goes (may be NULL) */
    int *owner;            /* (cap) index of the request that asked */
    uint8_t *failed;       /* (cap) the block could not be evaluated */
    int n, cap;
    int current;           /* the request whose step is running */
};

struct duet_driver {
    duet_strategy **active; /* (cap) */
    uint8_t *waiting;       /* (cap) the request chose to wait this step */
    int n_active, cap;
    duet_plan plan;
    long passes, blocks;
    double min_pass_s;      /* bench option: each pass lasts at least this long */
};

int duet_plan_eval(duet_plan *p, duet_lm *lm, const int32_t *tok, int n, int n_logits, float *logits,
                   double *seconds) {
    return duet_plan_eval_hidden(p, lm, tok, n, n_logits, logits, NULL, seconds);
}

int duet_plan_eval_hidden(duet_plan *p, duet_lm *lm, const int32_t *tok, int n, int n_logits, float *logits,
                          float *hidden, double *seconds) {
    if (!lm || !tok || n < 1 || n_logits < 0 || n_logits > n || (n_logits && !logits)) return DUET_EINVAL;
    if (hidden && !(duet_lm_caps(lm) & DUET_LM_CAP_HIDDEN)) return DUET_EUNSUPPORTED;
    for (int i = 0; i < p->n; i++)
        if (p->blocks[i].lm == lm) return DUET_EINVAL; /* one block per sequence per step */
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 16;
        duet_lm_block *b = realloc(p->blocks, sizeof *b * (size_t)cap);
        if (b) p->blocks = b;
        double **s = realloc(p->seconds, sizeof *s * (size_t)cap);
        if (s) p->seconds = s;
        int *o = realloc(p->owner, sizeof *o * (size_t)cap);
        if (o) p->owner = o;
        uint8_t *f = realloc(p->failed, (size_t)cap);
        if (f) p->failed = f;
        if (!b || !s || !o || !f) return DUET_ENOMEM;
        p->cap = cap;
    }
    p->blocks[p->n] =
        (duet_lm_block){.lm = lm, .tokens = tok, .n = n, .n_logits = n_logits, .logits = logits, .hidden = hidden};
    p->seconds[p->n] = seconds;
    p->owner[p->n] = p->current;
    p->failed[p->n] = 0;
    p->n++;
    return 0;
}

int duet_plan_second_turn(const duet_plan *p) { return p->second; }

int duet_plan_n_blocks(const duet_plan *p) { return p->n; }

int duet_plan_engine_busy(const duet_plan *p, const void *engine) {
    for (int i = 0; i < p->n; i++)
        if (p->blocks[i].lm->engine == engine) return 1;
    return 0;
}

int duet_driver_new(duet_driver **out, duet_err *err) {
    *out = calloc(1, sizeof **out);
    return *out ? 0 : duet_err_set(err, DUET_ENOMEM, "driver: out of memory");
}

void duet_driver_free(duet_driver *d) {
    if (!d) return;
    free(d->active), free(d->waiting);
    free(d->plan.blocks), free(d->plan.seconds), free(d->plan.owner), free(d->plan.failed);
    free(d);
}

int duet_driver_add(duet_driver *d, duet_strategy *s, duet_err *err) {
    if (!s) return duet_err_set(err, DUET_EINVAL, "driver: no strategy");
    for (int i = 0; i < d->n_active; i++)
        if (d->active[i] == s) return duet_err_set(err, DUET_EINVAL, "driver: the request is already active");
    if (d->n_active == d->cap) {
        int cap = d->cap ? d->cap * 2 : 8;
        duet_strategy **a = realloc(d->active, sizeof *a * (size_t)cap);
        if (a) d->active = a;
        uint8_t *w = realloc(d->waiting, (size_t)cap);
        if (w) d->waiting = w;
        if (!a || !w) return duet_err_set(err, DUET_ENOMEM, "driver: out of memory");
        d->cap = cap;
    }
    d->active[d->n_active++] = s;
    return 0;
}

void duet_driver_remove(duet_driver *d, duet_strategy *s) {
    for (int i = 0; i < d->n_active; i++)
        if (d->active[i] == s) {
            memmove(d->active + i, d->active + i + 1, sizeof *d->active * (size_t)(d->n_active - i - 1));
            d->n_active--;
            return;
        }
}

int duet_driver_n_active(const duet_driver *d) { return d->n_active; }

void duet_driver_set_min_pass(duet_driver *d, double seconds) { d->min_pass_s = seconds > 0 ? seconds : 0; }

/* Sleeps out the rest of the minimum pass time begun at t0; returns now. */
static double pad_pass(const duet_driver *d, double t0) {
    double now = collab_now();
    while (d->min_pass_s > 0 && now - t0 < d->min_pass_s) {
        const double left = d->min_pass_s - (now - t0);
        struct timespec ts = {.tv_sec = (time_t)left, .tv_nsec = (long)((left - (double)(time_t)left) * 1e9)};
        nanosleep(&ts, NULL);
        now = collab_now();
    }
    return now;
}

void duet_driver_counts(const duet_driver *d, long *passes, long *blocks) {
    if (passes) *passes = d->passes;
    if (blocks) *blocks = d->blocks;
}

static void fail_request(duet_strategy *s, int rc, const duet_err *e) {
    if (s->finish != DUET_FINISH_NONE) return;
    s->err = *e;
    s->err.code = rc;
    s->finish = DUET_FINISH_ERROR;
}

/* A block of s could not be evaluated: the strategy may recover (eval_failed),
 * else the request ends with the error. */
static void block_failed(duet_plan *p, int i, duet_strategy *s, int rc, const duet_err *e) {
    p->failed[i] = 1;
    if (s->finish != DUET_FINISH_NONE) return;
    if (s->iface->eval_failed && s->iface->eval_failed(s, rc, e) == 0) return;
    fail_request(s, rc, e);
}

/* Evaluates the plan's blocks: one pass per engine (model), timed apart so
 * each block is charged the pass it was in. If an engine's pass fails, its
 * blocks are retried one request at a time (a failed pass changes nothing,
 * model.h), failing only the request whose block fails. */
static void run_blocks(duet_driver *d) {
    duet_plan *p = &d->plan;
    duet_lm_block group[64];
    int idx[64];
    uint8_t done[1024];
    if (p->n > 1024) { /* more blocks than one step should ever hold: no batching */
        for (int i = 0; i < p->n; i++) {
            duet_err e = {0};
            double t0 = collab_now();
            int rc = duet_lm_eval_blocks(&p->blocks[i], 1, &e);
            if (p->seconds[i]) *p->seconds[i] = pad_pass(d, t0) - t0;
            if (rc < 0) block_failed(p, i, d->active[p->owner[i]], rc, &e);
            d->passes++, d->blocks++;
        }
        return;
    }
    memset(done, 0, (size_t)p->n);
    for (int i = 0; i < p->n; i++) {
        if (done[i]) continue;
        int g = 0;
        for (int j = i; j < p->n && g < 64; j++)
            if (!done[j] && p->blocks[j].lm->engine == p->blocks[i].lm->engine &&
                p->blocks[j].lm->iface == p->blocks[i].lm->iface)
                group[g] = p->blocks[j], idx[g++] = j, done[j] = 1;
        duet_err e = {0};
        double t0 = collab_now();
        int rc = duet_lm_eval_blocks(group, g, &e);
        double dt = pad_pass(d, t0) - t0;
        d->passes++, d->blocks += g;
        if (rc >= 0) {
            for (int k = 0; k < g; k++)
                if (p->seconds[idx[k]]) *p->seconds[idx[k]] = dt;
            continue;
        }
        for (int k = 0; k < g; k++) {
            duet_strategy *s = d->active[p->owner[idx[k]]];
            if (s->finish != DUET_FINISH_NONE) continue;
            t0 = collab_now();
            rc = duet_lm_eval_blocks(&group[k], 1, &e);
            if (p->seconds[idx[k]]) *p->seconds[idx[k]] = pad_pass(d, t0) - t0;
            d->passes++;
            if (rc < 0) block_failed(p, idx[k], s, rc, &e);
        }
    }
}

/* Asks request r for its blocks; 1 if it chose to wait (DUET_STEP_WAIT), 2 if it
 * is idle (DUET_STEP_IDLE: accepted without blocks). */
static int ask(duet_driver *d, int r) {
    duet_plan *p = &d->plan;
    duet_strategy *s = d->active[r];
    p->current = r;
    duet_err e = {0};
    const int before = p->n;
    const int rc = s->iface->step(s, p, &e);
    if (rc == DUET_STEP_WAIT && p->n == before) return 1;
    if (rc == DUET_STEP_IDLE && p->n == before) return 2; /* fed from outside: accept all the same */
    if (rc == DUET_ENOMEM && p->n == before && !e.msg[0]) duet_err_set(&e, rc, "driver: out of memory for the plan");
    if (rc < 0) {
        p->n = before; /* nothing of a failed step runs */
        fail_request(s, rc, &e);
    } else if (p->n == before && s->finish == DUET_FINISH_NONE) {
        duet_err_set(&e, DUET_EINVAL, "%s: a running request asked for nothing", s->iface->name);
        fail_request(s, DUET_EINVAL, &e);
    }
    return 0;
}

int duet_driver_step(duet_driver *d, duet_err *err) {
    duet_plan *p = &d->plan;
    p->n = 0;
    /* First every request that has work; then those that chose to wait for
     * the others (a speculative request ready to verify while others still
     * draft) are asked again, seeing what is planned: verification blocks
     * of several requests then share one pass over the target. */
    uint8_t *waiting = d->waiting;
    const int n_active = d->n_active;
    p->second = 0;
    for (int r = 0; r < n_active; r++) {
        waiting[r] = 0;
        if (d->active[r]->finish == DUET_FINISH_NONE) waiting[r] = (uint8_t)ask(d, r);
    }
    p->second = 1;
    for (int r = 0; r < n_active; r++)
        if (waiting[r] == 1 && d->active[r]->finish == DUET_FINISH_NONE) waiting[r] = (uint8_t)ask(d, r);
    if (p->n) run_blocks(d);
    for (int r = 0; r < d->n_active; r++) {
        duet_strategy *s = d->active[r];
        int asked = waiting[r] == 2, failed = 0; /* an idle request is accepted without blocks */
        for (int i = 0; i < p->n && !asked; i++) asked = p->owner[i] == r;
        for (int i = 0; i < p->n; i++) failed |= p->owner[i] == r && p->failed[i];
        if (!asked || failed || s->finish != DUET_FINISH_NONE) continue;
        duet_err e = {0};
        int rc = s->iface->accept(s, &e);
        if (rc < 0) fail_request(s, rc, &e);
    }
    /* finished requests leave, in order */
    int kept = 0;
    for (int r = 0; r < d->n_active; r++)
        if (d->active[r]->finish == DUET_FINISH_NONE) d->active[kept++] = d->active[r];
    d->n_active = kept;
    (void)err;
    return kept;
}

int duet_run(duet_strategy *s, const duet_request *req, duet_err *err) {
    duet_driver *d;
    int rc = duet_driver_new(&d, err);
    if (rc < 0) return rc;
    rc = duet_strategy_reset(s, req, err);
    if (rc >= 0 && s->finish == DUET_FINISH_NONE) rc = duet_driver_add(d, s, err);
    while (rc >= 0 && duet_driver_n_active(d) > 0) rc = duet_driver_step(d, err);
    duet_driver_free(d);
    if (rc < 0) return rc;
    if (s->finish == DUET_FINISH_ERROR) {
        if (err) *err = s->err;
        return s->err.code < 0 ? s->err.code : DUET_EINVAL;
    }
    return s->finish;
}

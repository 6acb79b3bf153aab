/* The scheduler: one thread that owns the models' sequences, takes queued
 * jobs into free slots, and steps every active slot together through the
 * strategy driver (continuous batching: a new request's prompt rides in the
 * same step as the others' decode and verification blocks). Tokens go into
 * each job's output under its lock; the HTTP threads wait on its condition. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duet/lm_local.h"
#include "server/server.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- jobs ---------------------------------------------------------------------- */

srv_job *srv_job_new(void) {
    srv_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->refs = 1;
    j->top_logprobs = -1;
    j->http_status = 200;
    j->slot = -1;
    return j;
}

void srv_job_release(srv_job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left > 0) return;
    for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
    free(j->prompt), free(j->tok), free(j->text), free(j->prompt_lp), free(j->prompt_tok);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

/* The k most likely ids of a logit row, as log-probabilities (best first). */
static void top_k(const float *row, int nv, int k, int32_t *id, float *lp) {
    float mx = -INFINITY;
    for (int v = 0; v < nv; v++) mx = row[v] > mx ? row[v] : mx;
    double s = 0;
    for (int v = 0; v < nv; v++) s += exp((double)row[v] - mx);
    const double lz = mx + log(s);
    int n = 0;
    for (int v = 0; v < nv; v++) {
        if (n == k && row[v] <= row[id[k - 1]]) continue;
        int at = n < k ? n++ : k - 1;
        while (at > 0 && row[v] > row[id[at - 1]]) id[at] = id[at - 1], at--;
        id[at] = v;
    }
    for (int i = 0; i < n; i++) lp[i] = (float)(row[id[i]] - lz);
}

/* Appends bytes to the job's text (caller holds mu). */
static int append_text(srv_job *j, const char *s, size_t n) {
    if (j->text_len + n + 1 > j->cap_text) {
        size_t cap = (j->text_len + n + 1) * 2 + 256;
        char *t = realloc(j->text, cap);
        if (!t) return -1;
        j->text = t, j->cap_text = cap;
    }
    memcpy(j->text + j->text_len, s, n);
    j->text_len += n;
    j->text[j->text_len] = 0;
    return 0;
}

/* Cuts the text at the first stop string; returns 1 if one was found. The
 * bytes a stop string could still take back are not "safe" to send yet. */
static int check_stops(srv_job *j, size_t from, int max_stop_len, int final) {
    size_t cut = j->text_len;
    for (int i = 0; i < j->n_stop; i++) {
        const size_t L = strlen(j->stop[i]);
        const size_t start = from >= L ? from - L + 1 : 0;
        for (size_t p = start; p + L <= j->text_len && p < cut; p++)
            if (!memcmp(j->text + p, j->stop[i], L)) {
                cut = p;
                break;
            }
    }
    const int hit = cut < j->text_len;
    if (hit) j->text_len = cut, j->text[cut] = 0;
    size_t safe = j->text_len;
    if (!hit && !final && max_stop_len > 1) safe = j->text_len >= (size_t)max_stop_len - 1 ? j->text_len - (max_stop_len - 1) : 0;
    while (safe > 0 && safe < j->text_len && (j->text[safe] & 0xC0) == 0x80) safe--; /* never split a character */
    if (safe > j->text_safe) j->text_safe = safe;
    if (j->text_safe > j->text_len) j->text_safe = j->text_len;
    return hit;
}

/* Every token a slot's strategy emits (scheduler thread). */
static int on_token(void *user, const duet_token_out *t) {
    srv_slot *sl = user;
    srv_job *j = sl->job;
    size_t n = 0; /* end-of-generation tokens are control tokens: they render as nothing */
    const char *piece = duet_detok_stream_push(sl->detok, t->id, &n);
    pthread_mutex_lock(&j->mu);
    int stop = j->cancelled;
    if (j->n_tok == j->cap_tok) {
        int cap = j->cap_tok ? j->cap_tok * 2 : 64;
        srv_token *tk = realloc(j->tok, sizeof *tk * (size_t)cap);
        if (!tk) stop = 1;
        else j->tok = tk, j->cap_tok = cap;
    }
    if (j->n_tok < j->cap_tok) {
        srv_token *tk = &j->tok[j->n_tok++];
        memset(tk, 0, sizeof *tk);
        tk->id = t->id;
        tk->origin = (uint8_t)t->origin;
        tk->logprob = t->logprob;
        if (j->top_logprobs > 0 && t->logits) {
            tk->n_top = j->top_logprobs < t->n_vocab ? j->top_logprobs : t->n_vocab;
            top_k(t->logits, t->n_vocab, tk->n_top, tk->top_id, tk->top_lp);
        }
        const size_t before = j->text_len;
        tk->text_off = (uint32_t)before;
        if (piece && n && append_text(j, piece, n) < 0) stop = 1;
        if (check_stops(j, before, sl->max_stop_len, 0)) {
            stop = 1;
            j->finish = "stop";
        }
        tk->text_len = (uint32_t)(j->text_len > before ? j->text_len - before : 0);
    }
    if (j->n_tok == 1) j->t_first = now_s();
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return stop;
}

/* ---- slots ------------------------------------------------------------------------ */

static void end_job(srv_sched *s, srv_slot *sl, const char *finish, int http_status, const char *error) {
    srv_job *j = sl->job;
    if (sl->strat) {
        duet_driver_remove(s->driver, sl->strat);
        duet_strategy_stats(sl->strat, &j->stats);
    }
    /* a remote leg's fallback took over (it may sit inside a route or a cascade) */
    if (sl->r_fb && duet_strategy_fallback_reason(sl->r_fb)) j->stats.degraded = 1;
    if (j->prompt_tok) { /* the scoring pass of echo + logprobs */
        j->stats.target_tokens += j->n_prompt;
        j->stats.target_evals++;
    }
    size_t n = 0;
    const char *rest = sl->detok ? duet_detok_stream_flush(sl->detok, &n) : NULL;
    pthread_mutex_lock(&j->mu);
    const size_t before = j->text_len;
    if (rest && n && !(j->finish && !strcmp(j->finish, "stop"))) append_text(j, rest, n);
    if (check_stops(j, before, sl->max_stop_len, 1) && !j->finish) j->finish = "stop";
    j->text_safe = j->text_len;
    if (!j->finish || !strcmp(finish, "error")) j->finish = finish;
    if (error) {
        snprintf(j->error, sizeof j->error, "%s", error);
        if (j->n_tok == 0) j->http_status = http_status;
    }
    j->t_end = now_s();
    srv_metrics_job(s->metrics, s->cfg, j); /* before done: a client that has its answer sees it in /metrics */
    j->done = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    /* each strategy once: a remote leg may be strat itself, or one of legs */
    duet_strategy *own[6] = {sl->strat, sl->legs[0], sl->legs[1], sl->r_fb, sl->r_leg, sl->r_local};
    for (int i = 0; i < 6; i++) {
        int seen = 0;
        for (int k = 0; k < i; k++) seen |= own[k] == own[i];
        if (!seen) duet_strategy_free(own[i]);
    }
    duet_remote_source_free(sl->r_src);
    duet_sampler_free(sl->sampler), duet_sampler_free(sl->leg_sampler), duet_sampler_free(sl->r_sampler);
    sl->strat = sl->legs[0] = sl->legs[1] = NULL, sl->sampler = sl->leg_sampler = NULL, sl->job = NULL;
    sl->r_fb = sl->r_leg = sl->r_local = NULL, sl->r_src = NULL, sl->r_sampler = NULL;
    srv_job_release(j);
}

/* Sleeps out the rest of the configured minimum pass time begun at t0
 * (the --forward-delay-ms bench option). */
static void pad_pass(const srv_sched *s, double t0) {
    for (double left; (left = s->cfg->forward_delay_s - (now_s() - t0)) > 0;) {
        struct timespec ts = {.tv_sec = (time_t)left, .tv_nsec = (long)((left - (double)(time_t)left) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static void count_passes(srv_sched *s, long n) {
    pthread_mutex_lock(&s->metrics->mu);
    s->metrics->forward_passes += n;
    pthread_mutex_unlock(&s->metrics->mu);
}

/* echo + logprobs: the prompt's own log-probabilities, one pass. Positions
 * from j->decode_from on are computed in the decode-consistent arithmetic
 * (bit for bit what one-token evals give), so a client that scores a prompt
 * plus a block sees exactly the tokens the server's streamed generation
 * would choose after that prompt.
 *
 * A client that names the boundary (a remote verifier: prompt + text so far
 * + a draft block, one call per round) keeps this slot's sequence between
 * its calls: the positions it shares with the last scored sequence (from the
 * boundary on, each computed as a one-token eval would, so reuse changes no
 * bit; before it, the same block as last time) are not computed again, and
 * their log-probabilities come back null (the client has them). Without it,
 * a verification would re-read the whole text every round.
 *
 * *row0 is the first position whose row was computed; rows
 * (n_prompt - row0, n_vocab) come back for the caller, which owns them. */
static int score_prompt(srv_sched *sc, srv_slot *sl, srv_job *j, float **rows_out, int *row0, duet_err *err) {
    duet_lm *lm = sl->lm[j->prof.model];
    *rows_out = NULL;
    const int k = j->top_logprobs > 0 ? j->top_logprobs : 0, n = j->n_prompt, nv = lm->n_vocab;
    const int split = j->decode_from > 0 && j->decode_from < n ? j->decode_from : n;
    const int keep = j->decode_from > 0 && duet_lm_local_seq(lm) != NULL;
    int start = 0;
    if (keep && sl->cache_n > 0 && sl->cache_model == j->prof.model && sl->cache_from == split) {
        int c = 0;
        while (c < sl->cache_n && c < n && sl->cache_tok[c] == j->prompt[c]) c++;
        if (c > n - 1) c = n - 1; /* the last position's row is always computed */
        if (c >= split) start = c;
    }
    sl->cache_n = 0; /* valid again only once this pass succeeded */
    int rc = duet_lm_rollback(lm, start, err);
    if (rc < 0) return rc;
    *row0 = start;
    float *rows = malloc(sizeof *rows * (size_t)nv * (size_t)(n - start)); /* (n_prompt - start, n_vocab) */
    float *lp = malloc(sizeof *lp * (size_t)n);                          /* (n_prompt) */
    srv_token *pt = calloc((size_t)n, sizeof *pt);                       /* (n_prompt) */
    if (!rows || !lp || !pt) rc = duet_err_set(err, DUET_ENOMEM, "out of memory scoring the prompt");
    const double t0 = now_s();
    if (rc >= 0 && start < split) rc = duet_lm_eval(lm, j->prompt, split, rows, split, err);
    const int from = start > split ? start : split;
    if (rc >= 0 && from < n && (rc = duet_lm_set_decode_consistent(lm, 1)) >= 0)
        rc = duet_lm_eval(lm, j->prompt + from, n - from, rows + (size_t)(from - start) * nv, n - from, err);
    duet_lm_set_decode_consistent(lm, 0);
    pad_pass(sc, t0);
    count_passes(sc, 1); /* one request's sequence read once, whatever its split */
    if (rc >= 0) {
        /* the alternatives "at token i" are those of the row after token i - 1 */
        for (int i = 0; i < n; i++) {
            pt[i].id = j->prompt[i];
            lp[i] = NAN;
            if (i == 0 || i - 1 < start) continue; /* the first token has no row; cached ones were sent before */
            pt[i].n_top = k;
            const float *row = rows + (size_t)(i - 1 - start) * nv; /* (n_vocab) */
            float mx = -INFINITY;
            for (int v = 0; v < nv; v++) mx = row[v] > mx ? row[v] : mx;
            double z = 0;
            for (int v = 0; v < nv; v++) z += exp((double)row[v] - mx);
            lp[i] = (float)(row[j->prompt[i]] - (mx + log(z)));
            if (k) top_k(row, nv, k, pt[i].top_id, pt[i].top_lp);
        }
        for (int i = 0; i < n; i++) pt[i].logprob = lp[i];
        pthread_mutex_lock(&j->mu);
        j->prompt_lp = lp, lp = NULL;
        j->prompt_tok = pt, pt = NULL;
        pthread_mutex_unlock(&j->mu);
        *rows_out = rows, rows = NULL;
        int32_t *t = keep ? realloc(sl->cache_tok, sizeof *t * (size_t)n) : NULL;
        if (t) {
            memcpy(t, j->prompt, sizeof *t * (size_t)n);
            sl->cache_tok = t, sl->cache_n = n, sl->cache_from = split, sl->cache_model = j->prof.model;
        }
    }
    free(rows), free(lp), free(pt);
    if (!sl->cache_n) duet_lm_rollback(lm, 0, NULL);
    return rc;
}

/* The scoring pass already holds the row after the prompt: a plain greedy
 * request for one token (a remote verifier's call) takes its argmax from it
 * instead of a second pass over the whole prompt. Returns 1 if it did. */
static int one_token_from_score(srv_sched *s, srv_slot *sl, srv_job *j, const float *last_row) {
    const duet_sampler_params *sp = &j->sp;
    if (!last_row || j->max_tokens != 1 || j->prof.kind != SRV_PLAIN || sp->temp > 0 || sp->repeat_penalty != 1 ||
        sp->freq_penalty != 0 || sp->presence_penalty != 0)
        return 0;
    const int nv = sl->lm[j->prof.model]->n_vocab;
    const float *row = last_row; /* (n_vocab) the row after the prompt */
    int32_t best = 0;
    for (int v = 1; v < nv; v++)
        if (row[v] > row[best]) best = v;
    float mx = row[best];
    double z = 0;
    for (int v = 0; v < nv; v++) z += exp((double)row[v] - mx);
    duet_token_out t = {.id = best, .origin = DUET_BY_TARGET, .logprob = (float)-log(z), .logits = row, .n_vocab = nv};
    on_token(sl, &t);
    j->stats.n_prompt = j->n_prompt, j->stats.n_generated = 1;
    j->stats.by_origin[DUET_BY_TARGET] = 1;
    int eog = 0;
    for (int i = 0; !j->ignore_eos && i < s->n_eog; i++) eog |= s->eog[i] == best;
    end_job(s, sl, eog ? "stop" : "length", 200, NULL);
    return 1;
}

/* The route profile's router for this share, recalibrated online to hold
 * it: the profile's router file, or a threshold on the SLM's top-1
 * probability of the first token (bench/routing: above random routing at
 * every share, and unlike the content signals it assumes nothing about the
 * text's language; the mean entropy, the old default, is below random at
 * most shares). */
static duet_router *router_for(srv_sched *s, int prof, float share, duet_err *err) {
    for (int i = 0; i < s->n_routers[prof]; i++)
        if (s->router_share[prof][i] == share) return &s->routers[prof][i];
    const int i = s->n_routers[prof] < 4 ? s->n_routers[prof]++ : 3; /* past 4 shares, the last one is reused */
    duet_router *r = &s->routers[prof][i];
    duet_router_free(r);
    const char *file = s->cfg->profiles[prof].router;
    if (file[0]) {
        if (duet_router_load(r, file, err) < 0) return NULL;
    } else {
        duet_router_init(r, DUET_ROUTER_THRESHOLD);
        r->signal = DUET_SIG_NEG_TOP1;
    }
    s->router_share[prof][i] = share;
    return duet_router_online(r, share, 200, err) < 0 ? NULL : r;
}

/* A remote LLM's leg: its own streamed generation (verify == NULL) or the
 * verifying strategy given, behind an offline fallback to the model's local
 * fallback when it has one. */
static int remote_leg(srv_sched *s, srv_slot *sl, srv_job *j, duet_strategy *verify, duet_strategy **out,
                      duet_err *err) {
    const srv_model *m = &s->cfg->models[j->prof.model];
    int rc;
    if (verify) {
        sl->r_leg = verify;
    } else {
        duet_remote_gen_params gp = {.temp = j->sp.temp, .seed = j->sp.seed, .stall_s = m->timeout_s};
        if ((rc = duet_remote_source_new(&sl->r_src, m->remote, s->cfg->models[0].vocab, &gp, err)) < 0 ||
            (rc = duet_strategy_source(&sl->r_leg, sl->r_src, err)) < 0)
            return rc;
    }
    *out = sl->r_leg;
    if (m->fallback < 0) return 0;
    duet_lm *local = sl->lm[m->fallback];
    if ((rc = duet_sampler_new_checked(&sl->r_sampler, &j->sp, local->n_vocab, err)) < 0 ||
        (rc = duet_strategy_plain(&sl->r_local, local, sl->r_sampler, err)) < 0 ||
        (rc = duet_strategy_fallback(&sl->r_fb, sl->r_leg, sl->r_local, err)) < 0)
        return rc;
    *out = sl->r_fb;
    return 0;
}

static int build_strategy(srv_sched *s, srv_slot *sl, srv_job *j, srv_profile *master, duet_err *err) {
    const srv_profile *p = &j->prof;
    duet_lm *big = sl->lm[p->model], *small = p->draft >= 0 ? sl->lm[p->draft] : NULL;
    const int remote = s->cfg->models[p->model].remote != NULL;
    int rc;
    switch (p->kind) {
    case SRV_PLAIN:
        if (remote) return remote_leg(s, sl, j, NULL, &sl->strat, err);
        return duet_strategy_plain(&sl->strat, big, sl->sampler, err);
    case SRV_SPEC: {
        duet_spec_params sp = p->spec;
        if (sp.adaptive) sp.learned_model = &master->learned_model, sp.learned_ngram = &master->learned_ngram;
        if (!remote) return duet_strategy_speculative(&sl->strat, big, small, sl->sampler, &sp, err);
        duet_strategy *verify;
        if ((rc = duet_strategy_speculative(&verify, big, small, sl->sampler, &sp, err)) < 0) return rc;
        return remote_leg(s, sl, j, verify, &sl->strat, err);
    }
    case SRV_DEFER: return duet_strategy_defer(&sl->strat, small, big, sl->sampler, p->param, err);
    case SRV_FUSE: { /* LLM, SLM (proxy: LLM, tuned, base) */
        duet_lm *lms[3] = {big, p->tuned >= 0 ? sl->lm[p->tuned] : small, small};
        return duet_strategy_fuse(&sl->strat, lms, duet_fuse_n_models(p->fuse.rule), sl->sampler, &p->fuse, err);
    }
    case SRV_ROUTE:
    case SRV_CASCADE: {
        /* two legs on their own sampler copies (one RNG stream each) */
        if ((rc = duet_sampler_new_checked(&sl->leg_sampler, &j->sp, small->n_vocab, err)) < 0) return rc;
        if ((rc = duet_strategy_plain(&sl->legs[0], small, sl->leg_sampler, err)) < 0 ||
            (rc = remote ? remote_leg(s, sl, j, NULL, &sl->legs[1], err)
                         : duet_strategy_plain(&sl->legs[1], big, sl->sampler, err)) < 0)
            return rc;
        if (p->kind == SRV_CASCADE) return duet_strategy_cascade(&sl->strat, sl->legs, &p->param, 2, 0, err);
        duet_router *r = router_for(s, j->prof_index, p->param, err);
        return r ? duet_strategy_route(&sl->strat, small, s->words, sl->legs[0], sl->legs[1], r, err) : DUET_ENOMEM;
    }
    }
    return duet_err_set(err, DUET_EINVAL, "profile %s: unknown strategy", p->name);
}

static void start_job(srv_sched *s, srv_slot *sl) {
    srv_job *j = sl->job;
    duet_err err = {0};
    srv_profile *master = &s->cfg->profiles[j->prof_index]; /* its adaptive estimates are kept across requests */
    pthread_mutex_lock(&j->mu);
    j->started = 1;
    j->t_start = now_s();
    const int cancelled = j->cancelled;
    pthread_mutex_unlock(&j->mu);
    if (cancelled) return end_job(s, sl, "stop", 499, "the client went away");
    sl->max_stop_len = 0;
    for (int i = 0; i < j->n_stop; i++)
        if ((int)strlen(j->stop[i]) > sl->max_stop_len) sl->max_stop_len = (int)strlen(j->stop[i]);
    size_t dummy;
    duet_detok_stream_flush(sl->detok, &dummy); /* a fresh stream for the new text */
    float *rows = NULL; /* (n_prompt - row0, n_vocab) the scoring pass's rows */
    int row0 = 0;
    if (j->score_prompt && score_prompt(s, sl, j, &rows, &row0, &err) < 0) return end_job(s, sl, "error", 500, err.msg);
    const int nv = sl->lm[j->prof.model]->n_vocab;
    const int answered = one_token_from_score(s, sl, j, rows ? rows + (size_t)(j->n_prompt - 1 - row0) * nv : NULL);
    free(rows);
    if (answered) return;
    sl->cache_n = 0; /* the strategy below rolls the slot's sequences back */
    if (j->max_tokens == 0) return end_job(s, sl, "length", 200, NULL);
    if (duet_sampler_new_checked(&sl->sampler, &j->sp, sl->lm[j->prof.model]->n_vocab, &err) < 0)
        return end_job(s, sl, "error", 400, err.msg);
    int rc = build_strategy(s, sl, j, master, &err);
    if (rc < 0) return end_job(s, sl, "error", rc == DUET_EINVAL ? 400 : 500, err.msg);
    duet_request req = {.prompt = j->prompt, .n_prompt = j->n_prompt, .max_new = j->max_tokens,
                        .stop_ids = j->ignore_eos ? NULL : s->eog, .n_stop_ids = j->ignore_eos ? 0 : s->n_eog,
                        .emit = on_token, .user = sl, .want_logprob = j->top_logprobs >= 0};
    if ((rc = duet_strategy_reset(sl->strat, &req, &err)) < 0) return end_job(s, sl, "error", rc == DUET_ERANGE ? 400 : 500, err.msg);
    if (duet_strategy_done(sl->strat) != DUET_FINISH_NONE) return end_job(s, sl, duet_finish_name(duet_strategy_done(sl->strat)), 200, NULL);
    if ((rc = duet_driver_add(s->driver, sl->strat, &err)) < 0) return end_job(s, sl, "error", 500, err.msg);
}

/* A slot whose strategy ended, whose client went away, or whose time is up. */
static void check_slot(srv_sched *s, srv_slot *sl, double now) {
    srv_job *j = sl->job;
    pthread_mutex_lock(&j->mu);
    const int cancelled = j->cancelled;
    pthread_mutex_unlock(&j->mu);
    if (cancelled) return end_job(s, sl, "stop", 499, "the client went away");
    const duet_finish f = duet_strategy_done(sl->strat);
    if (f == DUET_FINISH_ERROR) return end_job(s, sl, "error", 500, sl->strat->err.msg);
    if (f != DUET_FINISH_NONE) return end_job(s, sl, duet_finish_name(f), 200, NULL);
    if (now - j->t_start > s->cfg->time_limit_s) return end_job(s, sl, "length", 200, "the request reached the server's time limit");
}

static void *sched_main(void *arg) {
    srv_sched *s = arg;
    const int n_slots = s->cfg->slots;
    for (;;) {
        int started[256], n_started = 0, busy = 0;
        pthread_mutex_lock(&s->mu);
        for (int i = 0; i < n_slots; i++) busy += s->slots[i].job != NULL;
        while (!s->stop && s->q_len == 0 && busy == 0) pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        for (int i = 0; i < n_slots && s->q_len > 0; i++) {
            if (s->slots[i].job) continue;
            s->slots[i].job = s->queue[s->q_head];
            s->slots[i].job->slot = i;
            s->q_head = (s->q_head + 1) % s->q_cap;
            s->q_len--;
            started[n_started++] = i;
        }
        s->n_idle = n_slots - busy - n_started;
        pthread_mutex_lock(&s->metrics->mu);
        s->metrics->queue_depth = s->q_len;
        pthread_mutex_unlock(&s->metrics->mu);
        pthread_mutex_unlock(&s->mu);
        for (int i = 0; i < n_started; i++) start_job(s, &s->slots[started[i]]);
        if (duet_driver_n_active(s->driver) > 0) {
            duet_err err = {0};
            long before, after;
            duet_driver_counts(s->driver, &before, NULL);
            duet_driver_step(s->driver, &err);
            duet_driver_counts(s->driver, &after, NULL);
            count_passes(s, after - before);
        }
        const double now = now_s();
        int active = 0;
        for (int i = 0; i < n_slots; i++)
            if (s->slots[i].job) {
                check_slot(s, &s->slots[i], now);
                active += s->slots[i].job != NULL;
            }
        pthread_mutex_lock(&s->mu);
        s->n_idle = n_slots - active;
        pthread_mutex_unlock(&s->mu);
        pthread_mutex_lock(&s->metrics->mu);
        s->metrics->active = active;
        pthread_mutex_unlock(&s->metrics->mu);
    }
    return NULL;
}

int srv_sched_start(srv_sched *s, srv_config *c, srv_metrics *m, duet_err *err) {
    memset(s, 0, sizeof *s);
    s->cfg = c, s->metrics = m;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (c->queue < 1) c->queue = 1;
    s->q_cap = c->queue + c->slots;
    s->n_idle = c->slots;
    s->queue = calloc((size_t)s->q_cap, sizeof *s->queue);
    s->slots = calloc((size_t)c->slots, sizeof *s->slots);
    if (!s->queue || !s->slots) return duet_err_set(err, DUET_ENOMEM, "serve: out of memory for %d slots", c->slots);
    int rc = duet_driver_new(&s->driver, err);
    if (rc < 0) return rc;
    duet_driver_set_min_pass(s->driver, c->forward_delay_s);
    if ((s->n_eog = duet_vocab_eog_ids(c->models[0].vocab, &s->eog)) < 0) return duet_err_set(err, DUET_ENOMEM, "serve: out of memory");
    if ((rc = duet_route_words_new(&s->words, c->models[0].vocab, err)) < 0) return rc;
    for (int p = 0; p < c->n_profiles; p++) {
        duet_spec_adapt_init(&c->profiles[p].learned_model, c->profiles[p].spec.draft_max);
        duet_spec_adapt_init(&c->profiles[p].learned_ngram, c->profiles[p].spec.draft_max);
    }
    for (int i = 0; i < c->slots; i++) {
        srv_slot *sl = &s->slots[i];
        if (!(sl->detok = duet_detok_stream_new(c->models[0].vocab, 0))) return duet_err_set(err, DUET_ENOMEM, "serve: out of memory");
        for (int mi = 0; mi < c->n_models; mi++) {
            if (c->models[mi].remote) { /* its tokens are kept here; the context is the server's */
                if ((rc = duet_lm_remote_new(&sl->lm[mi], c->models[mi].remote, duet_vocab_n(c->models[0].vocab),
                                             srv_model_ctx(c, mi), c->models[mi].name, err)) < 0)
                    return rc;
                continue;
            }
            const int train = duet_model_hparams(c->models[mi].model)->n_ctx_train;
            int ctx = c->ctx > 0 ? c->ctx : train;
            /* a draft works within its own trained context (it stops drafting past it) */
            if (mi > 0 && train > 0 && train < ctx) ctx = train;
            if ((rc = duet_lm_local_new(&sl->lm[mi], c->models[mi].model, ctx, c->models[mi].name, err)) < 0) {
                duet_err_prefix(err, "serve: slot %d, model %s", i, c->models[mi].name);
                return rc;
            }
            s->kv_bytes += duet_seq_kv_bytes(duet_lm_local_seq(sl->lm[mi]));
        }
    }
    if (pthread_create(&s->thread, NULL, sched_main, s) != 0)
        return duet_err_set(err, DUET_EIO, "serve: cannot start the scheduler thread");
    return 0;
}

void srv_sched_stop(srv_sched *s) {
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->thread) pthread_join(s->thread, NULL);
    for (int i = 0; s->slots && i < s->cfg->slots; i++) {
        srv_slot *sl = &s->slots[i];
        if (sl->job) end_job(s, sl, "error", 503, "the server is shutting down");
        for (int m = 0; m < SRV_MAX_MODELS; m++) duet_lm_free(sl->lm[m]);
        duet_detok_stream_free(sl->detok);
        free(sl->cache_tok);
    }
    while (s->q_len > 0) {
        srv_job *j = s->queue[s->q_head];
        s->q_head = (s->q_head + 1) % s->q_cap;
        s->q_len--;
        pthread_mutex_lock(&j->mu);
        j->done = 1, j->finish = "error", j->http_status = 503;
        snprintf(j->error, sizeof j->error, "the server is shutting down");
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
        srv_job_release(j);
    }
    for (int p = 0; p < SRV_MAX_PROFILES; p++)
        for (int i = 0; i < s->n_routers[p]; i++) duet_router_free(&s->routers[p][i]);
    duet_route_words_free(s->words);
    s->words = NULL;
    duet_driver_free(s->driver);
    free(s->slots), free(s->queue), free(s->eog);
    s->slots = NULL, s->queue = NULL, s->eog = NULL, s->driver = NULL;
}

int srv_sched_submit(srv_sched *s, srv_job *j) {
    pthread_mutex_lock(&s->mu);
    /* --queue counts the jobs waiting for a busy slot: a job that an idle slot
     * is about to take (the scheduler has not woken yet) is not waiting */
    if (s->q_len >= s->cfg->queue + s->n_idle || s->stop) {
        pthread_mutex_unlock(&s->mu);
        return DUET_ERANGE;
    }
    pthread_mutex_lock(&j->mu);
    j->refs++;
    pthread_mutex_unlock(&j->mu);
    s->queue[(s->q_head + s->q_len) % s->q_cap] = j;
    s->q_len++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void srv_sched_cancel(srv_sched *s, srv_job *j) {
    pthread_mutex_lock(&j->mu);
    j->cancelled = 1;
    pthread_mutex_unlock(&j->mu);
    /* wake the scheduler if it sleeps (a queued job is dropped when it comes up) */
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int srv_sched_queue_depth(srv_sched *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->q_len;
    pthread_mutex_unlock(&s->mu);
    return n;
}

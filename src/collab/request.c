/* The request state every strategy shares, and the token hand-out. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collab/request.h"

double collab_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int collab_req_reset(collab_req *r, const duet_request *q, int n_ctx, const char *who, duet_err *err) {
    if (!q || !q->prompt || q->n_prompt < 1) return duet_err_set(err, DUET_EINVAL, "%s: the prompt is empty", who);
    if (q->max_new < 0) return duet_err_set(err, DUET_EINVAL, "%s: max_new is %d (must be >= 0)", who, q->max_new);
    if (q->n_prompt > n_ctx)
        return duet_err_set(err, DUET_ERANGE, "%s: the prompt has %d tokens but the context holds %d", who, q->n_prompt,
                            n_ctx);
    if (q->n_stop_ids < 0 || (q->n_stop_ids > 0 && !q->stop_ids))
        return duet_err_set(err, DUET_EINVAL, "%s: bad stop_ids", who);
    /* the text never outgrows the context by more than one token (the last
     * sampled token is not evaluated) */
    const long want = (long)q->n_prompt + (q->max_new < n_ctx ? q->max_new : n_ctx) + 1;
    if (want > r->cap) {
        int32_t *h = realloc(r->hist, sizeof *h * (size_t)want);
        if (!h) return duet_err_set(err, DUET_ENOMEM, "%s: out of memory for %ld tokens", who, want);
        r->hist = h, r->cap = (int)want;
    }
    int32_t *stop = q->n_stop_ids ? malloc(sizeof *stop * (size_t)q->n_stop_ids) : NULL;
    if (q->n_stop_ids && !stop) return duet_err_set(err, DUET_ENOMEM, "%s: out of memory", who);
    if (q->n_stop_ids) memcpy(stop, q->stop_ids, sizeof *stop * (size_t)q->n_stop_ids);
    free(r->stop_ids);
    r->stop_ids = stop, r->n_stop = q->n_stop_ids;
    memcpy(r->hist, q->prompt, sizeof *r->hist * (size_t)q->n_prompt);
    r->n_hist = r->n_prompt = q->n_prompt;
    r->max_new = q->max_new;
    r->emit = q->emit, r->user = q->user;
    r->want_logprob = q->want_logprob;
    r->consumer_stopped = 0;
    memset(&r->st, 0, sizeof r->st);
    r->st.n_prompt = q->n_prompt;
    r->t_start = collab_now();
    return 0;
}

void collab_req_free(collab_req *r) {
    free(r->hist);
    free(r->stop_ids);
    memset(r, 0, sizeof *r);
}

static duet_finish emit_out(collab_req *r, const duet_token_out *t);

duet_finish collab_req_emit(collab_req *r, int32_t tok, duet_origin origin, int tier, const float *logits,
                            int n_vocab) {
    duet_token_out t = {.id = tok, .origin = origin, .tier = tier, .logits = logits, .n_vocab = n_vocab,
                        .logprob = r->want_logprob && logits ? collab_logprob(logits, n_vocab, tok) : NAN};
    return emit_out(r, &t);
}

duet_finish collab_req_emit_lp(collab_req *r, int32_t tok, duet_origin origin, int tier, float logprob) {
    duet_token_out t = {.id = tok, .origin = origin, .tier = tier, .logprob = logprob};
    return emit_out(r, &t);
}

static duet_finish emit_out(collab_req *r, const duet_token_out *t) {
    const int32_t tok = t->id;
    const duet_origin origin = t->origin;
    if (r->n_hist < r->cap) r->hist[r->n_hist++] = tok;
    r->st.n_generated++;
    if (origin >= 0 && origin < DUET_ORIGIN_COUNT) r->st.by_origin[origin]++;
    int stop = r->consumer_stopped = r->emit && r->emit(r->user, t);
    for (int i = 0; i < r->n_stop && !stop; i++) stop = r->stop_ids[i] == tok;
    if (stop) return DUET_FINISH_STOP;
    return r->st.n_generated >= r->max_new ? DUET_FINISH_LENGTH : DUET_FINISH_NONE;
}

float collab_logprob(const float *logits, int n_vocab, int32_t tok) {
    float mx = -INFINITY;
    for (int v = 0; v < n_vocab; v++) mx = logits[v] > mx ? logits[v] : mx;
    double s = 0;
    for (int v = 0; v < n_vocab; v++) s += exp((double)logits[v] - mx);
    return (float)((double)logits[tok] - mx - log(s));
}

void collab_finish(duet_strategy *s, collab_req *r, duet_finish f) {
    s->finish = f;
    r->st.finish = f;
    r->st.t_total = collab_now() - r->t_start;
}

int collab_fail(duet_strategy *s, collab_req *r, int rc, const duet_err *err) {
    if (err && err != &s->err) s->err = *err;
    s->err.code = rc;
    collab_finish(s, r, DUET_FINISH_ERROR);
    return rc;
}

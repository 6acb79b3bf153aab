/* Token-level deferral (Co-LLM style): the SLM writes, and at every token
 * where its top probability falls below eta the LLM supplies that token
 * instead. The LLM catches up on the text it has not seen in one block (its
 * cache is kept between deferrals, so it only ever reads each token once);
 * the SLM then reads the LLM's token like any other.
 *
 * Invariant between steps: hist = prompt + output; the SLM's cache holds
 * hist but its last token (`pending`), the LLM's cache a prefix
 * hist[0, l_seen). Both are decode-consistent after their first block, so
 * with eta > 1 (always defer) the output is exactly the LLM's greedy output,
 * and with eta <= 0 (never) exactly the SLM's. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collab/request.h"
#include "duet/strategy.h"

enum { PH_PREFILL, PH_SLM, PH_LLM };

typedef struct {
    duet_strategy base;
    duet_lm *slm, *llm;
    duet_sampler *sampler;
    float eta;
    collab_req r;
    int phase;
    int l_seen;         /* hist[0, l_seen) is in the LLM's cache */
    int slm_ok;         /* the SLM can read the whole text (its context has room) */
    float *slogits;     /* (n_vocab) the SLM's row for the next token */
    float *llogits;     /* (n_vocab) the LLM's row */
    int32_t pending;
    int slm_prefilled;
    int l_block_n;
    double seconds_slm, seconds_llm;
} defer_strategy;

static void finish(defer_strategy *d, duet_finish f) {
    duet_lm_set_decode_consistent(d->slm, 0);
    duet_lm_set_decode_consistent(d->llm, 0);
    collab_finish(&d->base, &d->r, f);
}

static int defer_reset(duet_strategy *s, const duet_request *q, duet_err *err) {
    defer_strategy *d = (defer_strategy *)s;
    int rc = collab_req_reset(&d->r, q, duet_lm_n_ctx(d->llm), "defer", err);
    if (rc < 0) return rc;
    if ((rc = duet_lm_rollback(d->slm, 0, err)) < 0 || (rc = duet_lm_rollback(d->llm, 0, err)) < 0) return rc;
    duet_lm_set_decode_consistent(d->slm, 0);
    duet_lm_set_decode_consistent(d->llm, 0);
    d->phase = PH_PREFILL;
    d->l_seen = 0;
    d->slm_prefilled = 0;
    for (int i = 0; i < q->n_prompt; i++) duet_sampler_accept(d->sampler, q->prompt[i]);
    d->slm_ok = q->n_prompt <= duet_lm_n_ctx(d->slm);
    if (q->max_new == 0) finish(d, DUET_FINISH_LENGTH);
    return 0;
}

/* The LLM reads what it has not seen and gives the next token's row. */
static int plan_llm(defer_strategy *d, duet_plan *plan) {
    d->phase = PH_LLM;
    d->l_block_n = d->r.n_hist - d->l_seen;
    return duet_plan_eval(plan, d->llm, d->r.hist + d->l_seen, d->l_block_n, 1, d->llogits, &d->seconds_llm);
}

static int defer_step(duet_strategy *s, duet_plan *plan, duet_err *err) {
    defer_strategy *d = (defer_strategy *)s;
    (void)err;
    if (d->r.n_hist > duet_lm_n_ctx(d->llm)) { /* the LLM's context is full: the text so far is the answer */
        finish(d, DUET_FINISH_LENGTH);
        return 0;
    }
    if (d->phase == PH_PREFILL) {
        if (!d->slm_ok) return plan_llm(d, plan);
        d->phase = PH_SLM;
        return duet_plan_eval(plan, d->slm, d->r.hist, d->r.n_hist, 1, d->slogits, &d->seconds_slm);
    }
    if (d->phase == PH_LLM) return plan_llm(d, plan);
    /* the SLM reads the last token, unless its own context is full: then the LLM goes on alone */
    if (!d->slm_ok || duet_lm_pos(d->slm) >= duet_lm_n_ctx(d->slm)) {
        d->slm_ok = 0;
        return plan_llm(d, plan);
    }
    return duet_plan_eval(plan, d->slm, &d->pending, 1, 1, d->slogits, &d->seconds_slm);
}

static void emit(defer_strategy *d, int32_t tok, duet_origin o, const float *row) {
    duet_sampler_accept(d->sampler, tok);
    duet_finish f = collab_req_emit(&d->r, tok, o, o == DUET_BY_DEFER, row, d->slm->n_vocab);
    d->pending = tok;
    if (f != DUET_FINISH_NONE) finish(d, f);
}

static int defer_accept(duet_strategy *s, duet_err *err) {
    defer_strategy *d = (defer_strategy *)s;
    duet_stats *st = &d->r.st;
    if (d->phase == PH_LLM) {
        st->target_evals++;
        st->target_tokens += d->l_block_n;
        if (d->l_seen == 0) {
            st->t_prefill += d->seconds_llm;
        } else {
            st->t_target += d->seconds_llm;
        }
        d->l_seen = d->r.n_hist;
        /* from its second block on the LLM computes each token as a one-token eval would */
        int rc = duet_lm_set_decode_consistent(d->llm, 1);
        if (rc < 0) return duet_err_set(err, rc, "defer: cannot set the LLM's decode-consistent mode");
        const int32_t tok = duet_sampler_sample(d->sampler, d->llogits);
        st->rounds++;
        d->phase = PH_SLM;
        emit(d, tok, DUET_BY_DEFER, d->llogits);
        return 0;
    }
    /* an SLM row */
    st->draft_evals++;
    if (!d->slm_prefilled) { /* the prompt */
        d->slm_prefilled = 1;
        st->draft_tokens += d->r.n_hist;
        st->t_prefill += d->seconds_slm;
        int rc = duet_lm_set_decode_consistent(d->slm, 1);
        if (rc < 0) return duet_err_set(err, rc, "defer: cannot set the SLM's decode-consistent mode");
    } else {
        st->draft_tokens++;
        st->t_draft += d->seconds_slm;
    }
    /* the SLM's confidence: its top probability under the raw distribution */
    const int nv = d->slm->n_vocab;
    float mx = -INFINITY;
    for (int v = 0; v < nv; v++) mx = d->slogits[v] > mx ? d->slogits[v] : mx;
    double z = 0;
    for (int v = 0; v < nv; v++) z += exp((double)d->slogits[v] - mx);
    const double top = 1.0 / z;
    if (top < d->eta) { /* unsure: the LLM supplies this token */
        d->phase = PH_LLM;
        st->deferred++;
        return 0;
    }
    const int32_t tok = duet_sampler_sample(d->sampler, d->slogits);
    st->rounds++;
    emit(d, tok, DUET_BY_SLM, d->slogits);
    return 0;
}

static void defer_stats(const duet_strategy *s, duet_stats *out) { *out = ((const defer_strategy *)s)->r.st; }

static void defer_free(duet_strategy *s) {
    defer_strategy *d = (defer_strategy *)s;
    collab_req_free(&d->r);
    free(d->slogits), free(d->llogits);
    free(d);
}

static const duet_strategy_i defer_iface = {
    .name = "defer", .reset = defer_reset, .step = defer_step, .accept = defer_accept, .stats = defer_stats,
    .free = defer_free};

int duet_strategy_defer(duet_strategy **out, duet_lm *slm, duet_lm *llm, duet_sampler *sampler, float eta,
                        duet_err *err) {
    *out = NULL;
    if (!slm || !llm || !sampler) return duet_err_set(err, DUET_EINVAL, "defer: need an SLM, an LLM and a sampler");
    if (isnan(eta)) return duet_err_set(err, DUET_EINVAL, "defer: eta is not a number");
    if (!(duet_lm_caps(slm) & DUET_LM_CAP_LOGITS))
        return duet_err_set(err, DUET_EUNSUPPORTED, "defer: the SLM %s must return full logits (its confidence)", slm->name);
    if (!duet_lm_rows_ok(llm, duet_sampler_is_greedy(sampler), err)) {
        duet_err_prefix(err, "defer");
        return DUET_EUNSUPPORTED;
    }
    if (slm->n_vocab != llm->n_vocab)
        return duet_err_set(err, DUET_EINVAL, "defer: the SLM's vocabulary (%d) is not the LLM's (%d)", slm->n_vocab,
                            llm->n_vocab);
    if (duet_sampler_n_vocab(sampler) != llm->n_vocab)
        return duet_err_set(err, DUET_EINVAL, "defer: the sampler's vocabulary (%d) is not the models' (%d)",
                            duet_sampler_n_vocab(sampler), llm->n_vocab);
    defer_strategy *d = calloc(1, sizeof *d);
    if (d) {
        d->slogits = malloc(sizeof *d->slogits * (size_t)slm->n_vocab);
        d->llogits = malloc(sizeof *d->llogits * (size_t)llm->n_vocab);
    }
    if (!d || !d->slogits || !d->llogits) {
        if (d) free(d->slogits), free(d->llogits);
        free(d);
        return duet_err_set(err, DUET_ENOMEM, "defer: out of memory");
    }
    d->base.iface = &defer_iface;
    d->base.finish = DUET_FINISH_LENGTH; /* not started */
    d->slm = slm, d->llm = llm, d->sampler = sampler, d->eta = eta;
    *out = &d->base;
    return 0;
}

/* Plain generation as a strategy: the prompt in one block, then one token
 * per step. After the prompt the sequence is decode-consistent, so a token
 * batched with other requests gets exactly the bits of a one-token eval and
 * the output never depends on the company it was decoded in. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collab/request.h"
#include "duet/strategy.h"

typedef struct {
    duet_strategy base;
    duet_lm *lm;
    duet_sampler *sampler;
    collab_req r;
    float *logits;   /* (n_vocab) the last position's logits */
    int32_t pending; /* sampled, not yet evaluated */
    int prefilled;
    double seconds;  /* the last pass's time (the driver writes it) */
} plain_strategy;

static void finish(plain_strategy *p, duet_finish f) {
    duet_lm_set_decode_consistent(p->lm, 0);
    collab_finish(&p->base, &p->r, f);
}

static int plain_reset(duet_strategy *s, const duet_request *q, duet_err *err) {
    plain_strategy *p = (plain_strategy *)s;
    int rc = collab_req_reset(&p->r, q, duet_lm_n_ctx(p->lm), "generate", err);
    if (rc < 0) return rc;
    if ((rc = duet_lm_set_decode_consistent(p->lm, 0)) < 0 || (rc = duet_lm_rollback(p->lm, 0, err)) < 0) return rc;
    p->prefilled = 0;
    if (q->max_new == 0) finish(p, DUET_FINISH_LENGTH);
    return 0;
}

static int plain_step(duet_strategy *s, duet_plan *plan, duet_err *err) {
    plain_strategy *p = (plain_strategy *)s;
    if (!p->prefilled) return duet_plan_eval(plan, p->lm, p->r.hist, p->r.n_hist, 1, p->logits, &p->seconds);
    if (duet_lm_pos(p->lm) >= duet_lm_n_ctx(p->lm)) { /* the context is full: the text so far is the answer */
        finish(p, DUET_FINISH_LENGTH);
        return 0;
    }
    return duet_plan_eval(plan, p->lm, &p->pending, 1, 1, p->logits, &p->seconds);
}

static int plain_accept(duet_strategy *s, duet_err *err) {
    plain_strategy *p = (plain_strategy *)s;
    duet_stats *st = &p->r.st;
    st->target_evals++;
    if (!p->prefilled) {
        st->t_prefill = p->seconds;
        st->target_tokens += p->r.n_hist;
        for (int i = 0; i < p->r.n_hist; i++) duet_sampler_accept(p->sampler, p->r.hist[i]);
        p->prefilled = 1;
        /* from here on one token per eval: the one-token arithmetic in any batch */
        int rc = duet_lm_set_decode_consistent(p->lm, 1);
        if (rc < 0) return duet_err_set(err, rc, "generate: cannot set decode-consistent mode");
    } else {
        st->t_target += p->seconds;
        st->target_tokens++;
    }
    const int32_t tok = duet_sampler_sample(p->sampler, p->logits);
    duet_sampler_accept(p->sampler, tok);
    st->rounds++;
    duet_finish f = collab_req_emit(&p->r, tok, DUET_BY_TARGET, 0, p->logits, p->lm->n_vocab);
    p->pending = tok;
    if (f != DUET_FINISH_NONE) finish(p, f);
    return 0;
}

static void plain_stats(const duet_strategy *s, duet_stats *out) { *out = ((const plain_strategy *)s)->r.st; }

static void plain_free(duet_strategy *s) {
    plain_strategy *p = (plain_strategy *)s;
    collab_req_free(&p->r);
    free(p->logits);
    free(p);
}

static const duet_strategy_i plain_iface = {
    .name = "plain", .reset = plain_reset, .step = plain_step, .accept = plain_accept, .stats = plain_stats,
    .free = plain_free};

int duet_strategy_plain(duet_strategy **out, duet_lm *lm, duet_sampler *sampler, duet_err *err) {
    *out = NULL;
    if (!lm || !sampler) return duet_err_set(err, DUET_EINVAL, "generate: no model or no sampler");
    if (!duet_lm_rows_ok(lm, duet_sampler_is_greedy(sampler), err)) {
        duet_err_prefix(err, "generate");
        return DUET_EUNSUPPORTED;
    }
    if (duet_sampler_n_vocab(sampler) != lm->n_vocab)
        return duet_err_set(err, DUET_EINVAL, "generate: the sampler's vocabulary (%d) is not the model's (%d)",
                            duet_sampler_n_vocab(sampler), lm->n_vocab);
    plain_strategy *p = calloc(1, sizeof *p);
    if (p) p->logits = malloc(sizeof *p->logits * (size_t)lm->n_vocab);
    if (!p || !p->logits) {
        free(p);
        return duet_err_set(err, DUET_ENOMEM, "generate: out of memory");
    }
    p->base.iface = &plain_iface;
    p->base.finish = DUET_FINISH_LENGTH; /* not started */
    p->lm = lm, p->sampler = sampler;
    *out = &p->base;
    return 0;
}

/* Fusion: the models' next-token distributions combined at every step --
 * mixtures, products of experts, contrastive decoding, proxy-tuning -- as
 * one strategy whose step evaluates one token on every model (each its own
 * KV cache; the driver batches them with other requests' blocks). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collab/request.h"
#include "duet/strategy.h"

#define FUSE_MAX 3

duet_fuse_params duet_fuse_default_params(duet_fuse_rule rule) {
    return (duet_fuse_params){.rule = rule, .weight = 0.5f, .alpha = 0.1f, .beta = 0};
}

int duet_fuse_n_models(duet_fuse_rule rule) { return rule == DUET_FUSE_PROXY ? 3 : 2; }

int duet_fuse_params_check(const duet_fuse_params *p, duet_err *err) {
    if (!p) return duet_err_set(err, DUET_EINVAL, "fusion: no parameters");
    if (p->rule < DUET_FUSE_MIX || p->rule > DUET_FUSE_PROXY)
        return duet_err_set(err, DUET_EINVAL, "fusion: unknown rule %d", (int)p->rule);
    if (!(p->weight >= 0 && p->weight <= 1)) return duet_err_set(err, DUET_EINVAL, "fusion: weight %g outside [0, 1]", p->weight);
    if (!(p->alpha >= 0 && p->alpha <= 1)) return duet_err_set(err, DUET_EINVAL, "fusion: alpha %g outside [0, 1]", p->alpha);
    if (!(p->beta >= 0 && p->beta <= 100)) return duet_err_set(err, DUET_EINVAL, "fusion: beta %g outside [0, 100]", p->beta);
    return 0;
}

int duet_fuse_logits(float *out, const float *const *logits, int n_vocab, const duet_fuse_params *p, duet_err *err) {
    int rc = duet_fuse_params_check(p, err);
    if (rc < 0) return rc;
    const float *L = logits[0], *S = logits[1];
    float w[3];
    switch (p->rule) {
    case DUET_FUSE_POE:
        w[0] = p->weight, w[1] = 1 - p->weight;
        return duet_logits_combine(out, n_vocab, logits, NULL, w, 2, err);
    case DUET_FUSE_PROXY:
        w[0] = 1, w[1] = 1, w[2] = -1;
        return duet_logits_combine(out, n_vocab, logits, NULL, w, 3, err);
    case DUET_FUSE_MIX: {
        /* log(w p_L + (1 - w) p_S), by log-sum-exp of the two log-probabilities */
        const float one[1] = {1};
        float *lp = malloc(sizeof *lp * (size_t)n_vocab * 2); /* (2, n_vocab) */
        if (!lp) return duet_err_set(err, DUET_ENOMEM, "fusion: out of memory");
        if ((rc = duet_logits_combine(lp, n_vocab, &L, NULL, one, 1, err)) == 0)
            rc = duet_logits_combine(lp + n_vocab, n_vocab, &S, NULL, one, 1, err);
        const double lw = log(p->weight), lw1 = log(1 - p->weight);
        for (int v = 0; rc == 0 && v < n_vocab; v++) {
            const double a = lw + lp[v], b = lw1 + lp[n_vocab + v], m = a > b ? a : b;
            out[v] = isinf(m) && m < 0 ? -INFINITY : (float)(m + log(exp(a - m) + exp(b - m)));
        }
        free(lp);
        return rc;
    }
    case DUET_FUSE_CD: {
        const float b = p->beta > 0 ? p->beta : 1;
        w[0] = p->beta > 0 ? 1 + p->beta : 1, w[1] = -b;
        if ((rc = duet_logits_combine(out, n_vocab, logits, NULL, w, 2, err)) < 0) return rc;
        /* the plausibility set: p_LLM(x) >= alpha max p_LLM  <=>  L[x] >= max L + log alpha */
        float mx = -INFINITY;
        for (int v = 0; v < n_vocab; v++) mx = L[v] > mx ? L[v] : mx;
        const float cut = p->alpha > 0 ? mx + logf(p->alpha) : -INFINITY;
        for (int v = 0; v < n_vocab; v++)
            if (L[v] < cut) out[v] = -INFINITY;
        return 0;
    }
    }
    return duet_err_set(err, DUET_EINVAL, "fusion: unknown rule");
}

typedef struct {
    duet_strategy base;
    duet_lm *lm[FUSE_MAX];
    int n;
    duet_sampler *sampler;
    duet_fuse_params par;
    collab_req r;
    float *rows;     /* (n, n_vocab) each model's row for the next token */
    float *fused;    /* (n_vocab) */
    int32_t pending;
    int prefilled;
    double seconds[FUSE_MAX];
} fuse_strategy;

static void finish(fuse_strategy *f, duet_finish why) {
    for (int i = 0; i < f->n; i++) duet_lm_set_decode_consistent(f->lm[i], 0);
    collab_finish(&f->base, &f->r, why);
}

static int fuse_reset(duet_strategy *s, const duet_request *q, duet_err *err) {
    fuse_strategy *f = (fuse_strategy *)s;
    int ctx = duet_lm_n_ctx(f->lm[0]);
    for (int i = 1; i < f->n; i++) ctx = duet_lm_n_ctx(f->lm[i]) < ctx ? duet_lm_n_ctx(f->lm[i]) : ctx;
    int rc = collab_req_reset(&f->r, q, ctx, "fusion", err);
    if (rc < 0) return rc;
    for (int i = 0; i < f->n; i++) {
        duet_lm_set_decode_consistent(f->lm[i], 0);
        if ((rc = duet_lm_rollback(f->lm[i], 0, err)) < 0) return rc;
    }
    f->prefilled = 0;
    if (q->max_new == 0) finish(f, DUET_FINISH_LENGTH);
    return 0;
}

static int fuse_step(duet_strategy *s, duet_plan *plan, duet_err *err) {
    fuse_strategy *f = (fuse_strategy *)s;
    (void)err;
    const size_t nv = (size_t)f->lm[0]->n_vocab;
    for (int i = 0; i < f->n; i++)
        if (f->prefilled && duet_lm_pos(f->lm[i]) >= duet_lm_n_ctx(f->lm[i])) { /* a context is full */
            finish(f, DUET_FINISH_LENGTH);
            return 0;
        }
    for (int i = 0; i < f->n; i++) {
        int rc = f->prefilled ? duet_plan_eval(plan, f->lm[i], &f->pending, 1, 1, f->rows + i * nv, &f->seconds[i])
                              : duet_plan_eval(plan, f->lm[i], f->r.hist, f->r.n_hist, 1, f->rows + i * nv, &f->seconds[i]);
        if (rc < 0) return rc;
    }
    return 0;
}

static int fuse_accept(duet_strategy *s, duet_err *err) {
    fuse_strategy *f = (fuse_strategy *)s;
    duet_stats *st = &f->r.st;
    const size_t nv = (size_t)f->lm[0]->n_vocab;
    st->target_evals++, st->draft_evals += f->n - 1;
    st->target_tokens += f->prefilled ? 1 : f->r.n_hist;
    st->draft_tokens += (long)(f->n - 1) * (f->prefilled ? 1 : f->r.n_hist);
    if (!f->prefilled) {
        st->t_prefill += f->seconds[0];
        for (int i = 0; i < f->r.n_hist; i++) duet_sampler_accept(f->sampler, f->r.hist[i]);
        for (int i = 0; i < f->n; i++) {
            int rc = duet_lm_set_decode_consistent(f->lm[i], 1);
            if (rc < 0) return duet_err_set(err, rc, "fusion: cannot set decode-consistent mode");
        }
        f->prefilled = 1;
    } else {
        st->t_target += f->seconds[0];
    }
    for (int i = 1; i < f->n; i++) st->t_draft += f->seconds[i];
    const float *rows[FUSE_MAX];
    for (int i = 0; i < f->n; i++) rows[i] = f->rows + i * nv;
    int rc = duet_fuse_logits(f->fused, rows, (int)nv, &f->par, err);
    if (rc < 0) return rc;
    const int32_t tok = duet_sampler_sample(f->sampler, f->fused);
    duet_sampler_accept(f->sampler, tok);
    st->rounds++;
    f->pending = tok;
    duet_finish why = collab_req_emit(&f->r, tok, DUET_BY_FUSED, 0, f->fused, (int)nv);
    if (why != DUET_FINISH_NONE) finish(f, why);
    return 0;
}

static void fuse_stats(const duet_strategy *s, duet_stats *out) { *out = ((const fuse_strategy *)s)->r.st; }

static void fuse_free(duet_strategy *s) {
    fuse_strategy *f = (fuse_strategy *)s;
    collab_req_free(&f->r);
    free(f->rows), free(f->fused);
    free(f);
}

static const duet_strategy_i fuse_iface = {
    .name = "fusion", .reset = fuse_reset, .step = fuse_step, .accept = fuse_accept, .stats = fuse_stats,
    .free = fuse_free};

int duet_strategy_fuse(duet_strategy **out, duet_lm *const *lms, int n_lms, duet_sampler *sampler,
                       const duet_fuse_params *p, duet_err *err) {
    *out = NULL;
    int rc = duet_fuse_params_check(p, err);
    if (rc < 0) return rc;
    const int need = duet_fuse_n_models(p->rule);
    if (n_lms != need || !lms || !sampler)
        return duet_err_set(err, DUET_EINVAL, "fusion: this rule combines %d models (LLM first), got %d", need, n_lms);
    for (int i = 0; i < n_lms; i++) {
        if (!lms[i]) return duet_err_set(err, DUET_EINVAL, "fusion: model %d is missing", i);
        if (!(duet_lm_caps(lms[i]) & DUET_LM_CAP_LOGITS))
            return duet_err_set(err, DUET_EUNSUPPORTED, "fusion: %s does not return logits", lms[i]->name);
        if (lms[i]->n_vocab != lms[0]->n_vocab)
            return duet_err_set(err, DUET_EINVAL, "fusion: the vocabularies differ: %s has %d tokens, %s %d", lms[i]->name,
                                lms[i]->n_vocab, lms[0]->name, lms[0]->n_vocab);
        for (int j = 0; j < i; j++)
            if (lms[j] == lms[i]) return duet_err_set(err, DUET_EINVAL, "fusion: models %d and %d are one sequence", j, i);
    }
    if (duet_sampler_n_vocab(sampler) != lms[0]->n_vocab)
        return duet_err_set(err, DUET_EINVAL, "fusion: the sampler's vocabulary (%d) is not the models' (%d)",
                            duet_sampler_n_vocab(sampler), lms[0]->n_vocab);
    fuse_strategy *f = calloc(1, sizeof *f);
    if (f) {
        f->rows = malloc(sizeof *f->rows * (size_t)lms[0]->n_vocab * (size_t)n_lms);
        f->fused = malloc(sizeof *f->fused * (size_t)lms[0]->n_vocab);
    }
    if (!f || !f->rows || !f->fused) {
        if (f) free(f->rows), free(f->fused);
        free(f);
        return duet_err_set(err, DUET_ENOMEM, "fusion: out of memory");
    }
    f->base.iface = &fuse_iface;
    f->base.finish = DUET_FINISH_LENGTH; /* not started */
    memcpy(f->lm, lms, sizeof *lms * (size_t)n_lms);
    f->n = n_lms, f->sampler = sampler, f->par = *p;
    *out = &f->base;
    return 0;
}

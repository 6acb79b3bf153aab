/* The sampler chain: builds the stages from params, runs them over a
 * candidate list, and either samples or hands out the final distribution. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sample/stages.h"

#define MAX_STAGES 8

struct duet_sampler {
    duet_sampler_params params;
    int n_vocab;
    int greedy;
    duet_sampler_stage *stages[MAX_STAGES];
    int n_stages;
    duet_candidate *cand; /* (n_vocab) scratch, reused every call */
    duet_rng rng;
};

duet_sampler_params duet_sampler_default_params(void) {
    return (duet_sampler_params){.temp = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                                 .repeat_penalty = 1.0f, .freq_penalty = 0, .presence_penalty = 0,
                                 .penalty_last_n = 64, .seed = 0};
}

int32_t duet_argmax(const float *logits, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

void duet_sampler_free(duet_sampler *s) {
    if (!s) return;
    for (int i = 0; i < s->n_stages; i++) {
        if (s->stages[i]->iface->free) s->stages[i]->iface->free(s->stages[i]);
        free(s->stages[i]);
    }
    free(s->cand);
    free(s);
}

static int push(duet_sampler *s, duet_sampler_stage *st) {
    if (!st || s->n_stages == MAX_STAGES) return -1;
    s->stages[s->n_stages++] = st;
    return 0;
}

int duet_sampler_params_check(const duet_sampler_params *p, duet_err *err) {
    if (!p) return duet_err_set(err, DUET_EINVAL, "sampler: no parameters");
    if (isnan(p->temp) || isinf(p->temp)) return duet_err_set(err, DUET_EINVAL, "sampler: temperature must be a finite number");
    if (!(p->top_p > 0 && p->top_p <= 1)) return duet_err_set(err, DUET_EINVAL, "sampler: top_p must be in (0, 1], not %g", p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1) && !(p->min_p < 0))
        return duet_err_set(err, DUET_EINVAL, "sampler: min_p must be in [0, 1], not %g", p->min_p);
    if (!(p->repeat_penalty > 0) || isinf(p->repeat_penalty))
        return duet_err_set(err, DUET_EINVAL, "sampler: repeat_penalty must be a positive number, not %g", p->repeat_penalty);
    if (isnan(p->freq_penalty) || isinf(p->freq_penalty))
        return duet_err_set(err, DUET_EINVAL, "sampler: frequency_penalty must be a finite number");
    if (isnan(p->presence_penalty) || isinf(p->presence_penalty))
        return duet_err_set(err, DUET_EINVAL, "sampler: presence_penalty must be a finite number");
    if (p->penalty_last_n < -1)
        return duet_err_set(err, DUET_EINVAL, "sampler: penalty_last_n must be >= -1, not %d", p->penalty_last_n);
    return 0;
}

int duet_sampler_new_checked(duet_sampler **out, const duet_sampler_params *p, int n_vocab, duet_err *err) {
    *out = NULL;
    int rc = duet_sampler_params_check(p, err);
    if (rc < 0) return rc;
    if (n_vocab <= 0) return duet_err_set(err, DUET_EINVAL, "sampler: vocabulary size %d", n_vocab);
    *out = duet_sampler_new(p, n_vocab);
    return *out ? 0 : duet_err_set(err, DUET_ENOMEM, "sampler: out of memory for %d candidates", n_vocab);
}

int duet_sampler_n_vocab(const duet_sampler *s) { return s->n_vocab; }

int duet_sampler_has_penalties(const duet_sampler *s) {
    const duet_sampler_params *p = &s->params;
    return (p->repeat_penalty != 1 || p->freq_penalty != 0 || p->presence_penalty != 0) && p->penalty_last_n != 0;
}

duet_sampler *duet_sampler_new(const duet_sampler_params *p, int n_vocab) {
    if (!p || n_vocab <= 0) return NULL;
    if (duet_sampler_params_check(p, NULL) < 0) return NULL;
    duet_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->params = *p;
    s->n_vocab = n_vocab;
    s->greedy = !(p->temp > 0);
    s->cand = malloc(sizeof *s->cand * (size_t)n_vocab);
    int bad = !s->cand;
    /* Penalties apply in greedy mode too (they change the argmax). */
    if (!bad && (p->repeat_penalty != 1 || p->freq_penalty != 0 || p->presence_penalty != 0) && p->penalty_last_n != 0) {
        int last_n = p->penalty_last_n < 0 ? n_vocab : p->penalty_last_n;
        bad |= push(s, duet_stage_penalties(p->repeat_penalty, p->freq_penalty, p->presence_penalty, last_n, n_vocab));
    }
    if (!bad && !s->greedy) {
        if (p->top_k > 0) bad |= push(s, duet_stage_top_k(p->top_k));
        if (p->top_p < 1) bad |= push(s, duet_stage_top_p(p->top_p));
        if (p->min_p > 0) bad |= push(s, duet_stage_min_p(p->min_p));
        if (p->temp != 1) bad |= push(s, duet_stage_temp(p->temp));
    }
    if (bad) { duet_sampler_free(s); return NULL; }
    duet_rng_seed(&s->rng, p->seed);
    return s;
}

void duet_sampler_reset(duet_sampler *s) {
    for (int i = 0; i < s->n_stages; i++)
        if (s->stages[i]->iface->reset) s->stages[i]->iface->reset(s->stages[i]);
    duet_rng_seed(&s->rng, s->params.seed);
}

void duet_sampler_accept(duet_sampler *s, int32_t token) {
    for (int i = 0; i < s->n_stages; i++)
        if (s->stages[i]->iface->accept) s->stages[i]->iface->accept(s->stages[i], token);
}

int duet_sampler_is_greedy(const duet_sampler *s) { return s->greedy; }
duet_rng *duet_sampler_rng(duet_sampler *s) { return &s->rng; }

/* Runs every stage; leaves the surviving candidates with softmax probs. */
static duet_candidates run_chain(duet_sampler *s, const float *logits) {
    duet_candidates c = {s->cand, s->n_vocab, 0};
    for (int i = 0; i < s->n_vocab; i++) c.data[i] = (duet_candidate){i, logits[i], 0};
    for (int i = 0; i < s->n_stages; i++) s->stages[i]->iface->apply(s->stages[i], &c);
    return c;
}

static int32_t best_candidate(const duet_candidates *c) {
    int b = 0;
    for (int i = 1; i < c->n; i++)
        if (c->data[i].logit > c->data[b].logit ||
            (c->data[i].logit == c->data[b].logit && c->data[i].id < c->data[b].id))
            b = i;
    return c->data[b].id;
}

void duet_sampler_dist(duet_sampler *s, const float *logits, float *probs) {
    memset(probs, 0, sizeof *probs * (size_t)s->n_vocab);
    duet_candidates c = run_chain(s, logits);
    if (s->greedy) {
        probs[best_candidate(&c)] = 1.0f;
        return;
    }
    duet_candidates_softmax(&c);
    for (int i = 0; i < c.n; i++) probs[c.data[i].id] = c.data[i].p;
}

int32_t duet_sampler_sample(duet_sampler *s, const float *logits) {
    duet_candidates c = run_chain(s, logits);
    if (s->greedy) return best_candidate(&c);
    duet_candidates_softmax(&c);
    double u = (double)duet_rng_uniform(&s->rng), acc = 0;
    for (int i = 0; i < c.n; i++) {
        acc += c.data[i].p;
        if (u < acc) return c.data[i].id;
    }
    return c.data[c.n - 1].id;
}

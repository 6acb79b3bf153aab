/* Speculative decoding as a strategy: a policy over eval + rollback of two
 * sequences, stepped by the driver.
 *
 * A round is: [draft catch-up + k-1 draft evals, one per step] then one
 * verification block of the target (pending token + k drafts). N-gram
 * drafts need no eval, so their round is the verification step alone.
 *
 * Invariant between rounds: hist holds prompt + output; the target's KV
 * cache holds hist except its last token (`pending`), which is fed at the
 * start of the next verification block. The draft's KV cache holds a prefix
 * hist[0, d_seen) and catches up on the rest when it next drafts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collab/request.h"
#include "duet/strategy.h"

duet_spec_params duet_spec_default_params(void) {
    return (duet_spec_params){.use_model = 1, .use_ngram = 0, .draft_max = 8, .draft_min = 0,
                              .draft_p_min = 0.0f, .adaptive = 1, .ngram_min = 2, .ngram_max = 4};
}

int duet_spec_params_check(const duet_spec_params *p, duet_err *err) {
    if (!p) return duet_err_set(err, DUET_EINVAL, "speculative: no parameters");
    if (!p->use_model && !p->use_ngram)
        return duet_err_set(err, DUET_EINVAL, "speculative: no drafter (use_model and use_ngram are both off)");
    if (p->draft_max < 0 || p->draft_max > DUET_SPEC_KMAX)
        return duet_err_set(err, DUET_EINVAL, "speculative: draft_max %d outside 0..%d", p->draft_max, DUET_SPEC_KMAX);
    if (p->draft_min < 0 || p->draft_min > DUET_SPEC_KMAX)
        return duet_err_set(err, DUET_EINVAL, "speculative: draft_min %d outside 0..%d", p->draft_min, DUET_SPEC_KMAX);
    if (!(p->draft_p_min >= 0 && p->draft_p_min <= 1))
        return duet_err_set(err, DUET_EINVAL, "speculative: draft_p_min %g outside [0, 1]", p->draft_p_min);
    if (p->use_ngram && (p->ngram_min < 1 || p->ngram_max < p->ngram_min || p->ngram_max > 64))
        return duet_err_set(err, DUET_EINVAL, "speculative: n-gram sizes %d..%d (need 1 <= ngram_min <= ngram_max <= 64)",
                            p->ngram_min, p->ngram_max);
    return 0;
}

enum { PH_PREFILL, PH_ROUND, PH_DRAFT, PH_VERIFY };

typedef struct {
    duet_strategy base;
    duet_lm *target, *draft;
    duet_sampler *sampler;
    duet_spec_params par;
    collab_req r;
    int n_vocab;
    int phase;
    int d_seen;      /* hist[0, d_seen) is in the draft's KV cache */
    int draft_ok;    /* the draft model can still take part in this request */
    float *logits;   /* (DUET_SPEC_KMAX + 1, n_vocab) target block logits */
    float *p;        /* (DUET_SPEC_KMAX + 1, n_vocab) target distributions */
    float *q;        /* (DUET_SPEC_KMAX, n_vocab) draft distributions */
    float *dlog;     /* (n_vocab) draft logits of its last position; ids past a smaller draft vocab stay -inf */
    float *scratch;  /* (n_vocab) */
    duet_spec_adapt own_model, own_ngram; /* used when the caller keeps none */
    duet_spec_adapt *adapt_model, *adapt_ngram;
    int plain_rounds; /* consecutive rounds without speculation (for probing) */
    int waited;       /* steps spent ready to verify while others drafted */
    /* the round in progress */
    int32_t block[DUET_SPEC_KMAX + 1]; /* pending token + drafts */
    int k, km;        /* drafted so far / length asked of the model drafter */
    int from_model;
    int catching_up;  /* the draft block in flight is the round's catch-up */
    int catch_n;      /* its length */
    double t_draft_round, t_steady; /* the model drafter's seconds this round */
    double seconds;   /* the last pass's time (the driver writes it) */
    double seconds_draft;
} spec_strategy;

static void finish(spec_strategy *s, duet_finish f) {
    duet_lm_set_decode_consistent(s->target, 0);
    collab_finish(&s->base, &s->r, f);
}

static int choose_k(spec_strategy *s, duet_spec_adapt *a) {
    if (!s->par.adaptive) return s->par.draft_max;
    int k = duet_spec_adapt_choose_k(a);
    /* A length of 0 gathers no evidence: probe now and then in case the text
     * became predictable. */
    if (k == 0 && ++s->plain_rounds % 16 == 0) k = 1;
    if (k > 0) s->plain_rounds = 0;
    return k;
}

/* n-gram drafts are deterministic: their q rows are one-hot. */
static int draft_with_ngram(spec_strategy *s, int k) {
    double t0 = collab_now();
    int32_t *out = s->block + 1;
    int n = duet_ngram_draft(s->r.hist, s->r.n_hist, s->par.ngram_min, s->par.ngram_max, out, k);
    for (int i = 0; i < n; i++) {
        float *q = s->q + (size_t)i * s->n_vocab;
        memset(q, 0, sizeof *q * (size_t)s->n_vocab);
        q[out[i]] = 1;
    }
    /* Its cost is tiny but measured: without a measured cost the adaptive
     * choice never leaves its starting length. */
    duet_spec_adapt_observe_draft(s->adapt_ngram, n, collab_now() - t0);
    return n;
}

/* Can the draft model read hist[d_seen, n_hist)? A target with a larger
 * vocabulary may have produced ids the draft does not have: the draft then
 * steps aside for the rest of the request instead of failing it. */
static int draft_can_read(spec_strategy *s) {
    if (!s->draft_ok) return 0;
    for (int i = s->d_seen; i < s->r.n_hist; i++)
        if (s->r.hist[i] >= s->draft->n_vocab) return s->draft_ok = 0;
    return 1;
}

static int plan_verify(spec_strategy *s, duet_plan *plan) {
    s->block[0] = s->r.hist[s->r.n_hist - 1];
    s->phase = PH_VERIFY;
    return duet_plan_eval(plan, s->target, s->block, s->k + 1, s->k + 1, s->logits, &s->seconds);
}

/* The start of a round: pick the drafter and the length; n-gram drafts are
 * ready at once, a model draft starts with the catch-up eval. */
static int start_round(spec_strategy *s, duet_plan *plan) {
    const int n_ctx = duet_lm_n_ctx(s->target);
    const int base = s->r.n_hist - 1;   /* target position of the pending token */
    const int room = n_ctx - base - 1;  /* draft tokens the context can still take */
    if (room < 0) {                     /* the context is full: the text so far is the answer */
        finish(s, DUET_FINISH_LENGTH);
        return 0;
    }
    const int left = s->r.max_new - s->r.st.n_generated - 1; /* every round yields one token beyond its drafts */
    const int k_cap = room < left ? room : left;
    s->k = 0, s->from_model = 0;
    int model_ok = s->par.use_model && k_cap > 0 && draft_can_read(s);
    int km = 0;
    if (model_ok) {
        km = choose_k(s, s->adapt_model);
        /* The draft catches up to hist, then holds km - 1 drafted tokens: a
         * draft with a shorter context than the target stops drafting where
         * it is full (n-grams and plain decoding carry on). */
        const int d_room = duet_lm_n_ctx(s->draft) - s->r.n_hist + 1;
        if (km > d_room) km = d_room;
        if (km > k_cap) km = k_cap;
    }
    if (s->par.use_ngram && k_cap > 0) {
        int kn = choose_k(s, s->adapt_ngram);
        s->k = draft_with_ngram(s, kn < k_cap ? kn : k_cap);
        /* Both drafters available: an n-gram hit is used only when it
         * promises more tokens per second than the model's draft (with fixed
         * lengths, or before the model's costs are known, a hit wins). */
        if (s->k > 0 && km > 0 && s->par.adaptive && s->adapt_model->n_draft > 0 &&
            duet_spec_adapt_rate(s->adapt_model, km) > duet_spec_adapt_rate(s->adapt_ngram, s->k))
            s->k = 0;
    }
    if (s->k == 0 && km > 0) {
        s->km = km;
        s->from_model = 1;
        s->catching_up = 1;
        s->catch_n = s->r.n_hist - s->d_seen;
        s->t_draft_round = 0;
        s->phase = PH_DRAFT;
        return duet_plan_eval(plan, s->draft, s->r.hist + s->d_seen, s->catch_n, 1, s->dlog, &s->seconds_draft);
    }
    return plan_verify(s, plan);
}

static int spec_step(duet_strategy *st, duet_plan *plan, duet_err *err) {
    spec_strategy *s = (spec_strategy *)st;
    switch (s->phase) {
    case PH_PREFILL: return duet_plan_eval(plan, s->target, s->r.hist, s->r.n_hist, 1, s->logits, &s->seconds);
    case PH_ROUND: return start_round(s, plan);
    case PH_DRAFT: /* feed the last drafted token to get the next draft row */
        return duet_plan_eval(plan, s->draft, &s->block[s->k], 1, 1, s->dlog, &s->seconds_draft);
    case PH_VERIFY:
        /* Let requests still drafting on the same draft model finish first,
         * so the verification blocks go through the target together; never
         * more than a round's worth of steps. */
        if (s->draft && s->waited < DUET_SPEC_KMAX + 1 &&
            (!duet_plan_second_turn(plan) || duet_plan_engine_busy(plan, s->draft->engine))) {
            s->waited += duet_plan_second_turn(plan);
            return DUET_STEP_WAIT;
        }
        s->waited = 0;
        return plan_verify(s, plan);
    }
    return duet_err_set(err, DUET_EINVAL, "speculative: bad phase %d", s->phase);
}

/* A draft row arrived: draw the next draft token, or end the draft. */
static int accept_draft(spec_strategy *s) {
    duet_stats *st = &s->r.st;
    st->draft_evals++;
    st->t_draft += s->seconds_draft;
    if (s->catching_up) {
        st->draft_tokens += s->catch_n;
        s->d_seen = s->r.n_hist;
        s->catching_up = 0;
        /* Every round starts by feeding the draft the token(s) it has not
         * seen: the correction or bonus token (and the last accepted draft),
         * a real cost of each round that the adaptive choice must weigh. The
         * first round's catch-up is the whole prompt, a one-off: left out. */
        s->t_steady = s->catch_n <= 2 ? s->seconds_draft : 0;
    } else {
        st->draft_tokens++;
        s->t_draft_round += s->seconds_draft;
    }
    double t0 = collab_now();
    const int n = s->k, nv = s->n_vocab;
    float *q = s->q + (size_t)n * nv; /* (n_vocab) */
    duet_sampler_dist(s->sampler, s->dlog, q);
    float top = 0;
    for (int v = 0; v < nv; v++) top = q[v] > top ? q[v] : top;
    int end = 0;
    /* The draft's own confidence is the cheapest predictor of rejection. */
    if (n >= s->par.draft_min && n > 0 && top < s->par.draft_p_min) {
        end = 1;
    } else {
        s->block[1 + n] = duet_sampler_is_greedy(s->sampler) ? duet_argmax(q, nv)
                                                             : duet_rng_pick(duet_sampler_rng(s->sampler), q, nv);
        s->k = n + 1;
        end = s->k == s->km;
    }
    s->t_draft_round += collab_now() - t0;
    if (end) {
        duet_spec_adapt_observe_draft(s->adapt_model, s->k, s->t_draft_round + s->t_steady);
        s->phase = PH_VERIFY;
    }
    return 0;
}

static int accept_verify(spec_strategy *s, duet_err *err) {
    duet_stats *st = &s->r.st;
    const size_t nv = (size_t)s->n_vocab;
    const int k = s->k, base = s->r.n_hist - 1;
    const int32_t *drafts = s->block + 1;
    double t0 = collab_now();
    st->target_evals++;
    st->target_tokens += k + 1;
    st->t_target += s->seconds;
    duet_spec_verdict v = {0, -1};
    if (k == 0) { /* nothing to verify: sample as plain decoding does */
        v.next = duet_sampler_sample(s->sampler, s->logits);
    } else {
        for (int i = 0; i <= k; i++) duet_sampler_dist(s->sampler, s->logits + (size_t)i * nv, s->p + (size_t)i * nv);
        v = duet_spec_verify(s->p, s->q, drafts, k, s->n_vocab, duet_sampler_rng(s->sampler), s->scratch);
    }
    st->rounds++;
    if (k > 0) {
        st->drafted += k;
        st->accepted += v.n_accepted;
        if (s->from_model) st->drafted_model += k, st->accepted_model += v.n_accepted;
        else st->drafted_ngram += k, st->accepted_ngram += v.n_accepted;
        for (int i = 0; i < k; i++) {
            st->drafted_at[i]++;
            st->accepted_at[i] += i < v.n_accepted;
        }
        duet_spec_adapt_observe_accept(s->from_model ? s->adapt_model : s->adapt_ngram, k, v.n_accepted);
    }
    /* Keep pending + accepted drafts in the target; the draft model holds
     * pending + all drafts but the last, of which the accepted ones stay. */
    int rc = duet_lm_rollback(s->target, base + 1 + v.n_accepted, err);
    if (rc < 0) return rc;
    if (s->from_model) {
        int kept = v.n_accepted < k - 1 ? v.n_accepted : k - 1;
        s->d_seen = base + 1 + kept;
        if ((rc = duet_lm_rollback(s->draft, s->d_seen, err)) < 0) return rc;
    }
    duet_finish f = DUET_FINISH_NONE;
    const duet_origin drafted_by = s->from_model ? DUET_BY_DRAFT_MODEL : DUET_BY_DRAFT_NGRAM;
    for (int i = 0; i <= v.n_accepted && f == DUET_FINISH_NONE; i++) {
        const int32_t tok = i < v.n_accepted ? drafts[i] : v.next;
        f = collab_req_emit(&s->r, tok, i < v.n_accepted ? drafted_by : DUET_BY_TARGET, 1, s->logits + (size_t)i * nv,
                            s->n_vocab);
    }
    const double t_rest = s->seconds + (collab_now() - t0);
    duet_spec_adapt_observe_target(s->adapt_model, k + 1, t_rest);
    duet_spec_adapt_observe_target(s->adapt_ngram, k + 1, t_rest);
    if (f != DUET_FINISH_NONE) {
        /* Stopped inside the accepted run: the caches hold tokens past the
         * output; trim them so the sequences end where the output ends. */
        if ((rc = duet_lm_rollback(s->target, s->r.n_hist - 1, err)) < 0) return rc;
        if (s->draft && s->d_seen > s->r.n_hist - 1) {
            s->d_seen = s->r.n_hist - 1;
            if ((rc = duet_lm_rollback(s->draft, s->d_seen, err)) < 0) return rc;
        }
        finish(s, f);
    }
    s->phase = PH_ROUND;
    return 0;
}

static int spec_accept(duet_strategy *st, duet_err *err) {
    spec_strategy *s = (spec_strategy *)st;
    if (s->phase == PH_DRAFT) return accept_draft(s);
    if (s->phase == PH_VERIFY) return accept_verify(s, err);
    /* the prompt: the first token comes from its last row, exactly as in plain generation */
    s->r.st.target_evals++;
    s->r.st.target_tokens += s->r.n_hist;
    s->r.st.t_prefill = s->seconds;
    /* The prompt was prefilled in the default arithmetic, as plain generation
     * does; from here on plain generation evaluates one token at a time, so
     * the verification blocks must compute every token as a one-token eval
     * would, or a near tie could be decided differently. */
    int rc = duet_lm_set_decode_consistent(s->target, 1);
    if (rc < 0) return duet_err_set(err, rc, "speculative: cannot set the target's decode-consistent mode");
    const int32_t first = duet_sampler_sample(s->sampler, s->logits);
    duet_finish f = collab_req_emit(&s->r, first, DUET_BY_TARGET, 1, s->logits, s->n_vocab);
    s->phase = PH_ROUND;
    if (f != DUET_FINISH_NONE) finish(s, f);
    return 0;
}

static int spec_reset(duet_strategy *st, const duet_request *q, duet_err *err) {
    spec_strategy *s = (spec_strategy *)st;
    int rc = collab_req_reset(&s->r, q, duet_lm_n_ctx(s->target), "speculative", err);
    if (rc < 0) return rc;
    if ((rc = duet_lm_set_decode_consistent(s->target, 0)) < 0 || (rc = duet_lm_rollback(s->target, 0, err)) < 0)
        return rc;
    if (s->draft && (rc = duet_lm_rollback(s->draft, 0, err)) < 0) return rc;
    s->d_seen = 0;
    s->waited = 0;
    s->draft_ok = s->par.use_model;
    s->plain_rounds = 0;
    s->phase = PH_PREFILL;
    /* Estimates learned by earlier requests (if the caller keeps them) spare
     * this one the cost of learning the costs again. */
    if (!s->par.learned_model) duet_spec_adapt_init(&s->own_model, s->par.draft_max);
    if (!s->par.learned_ngram) duet_spec_adapt_init(&s->own_ngram, s->par.draft_max);
    if (q->max_new == 0) finish(s, DUET_FINISH_LENGTH);
    return 0;
}

static void spec_stats(const duet_strategy *st, duet_stats *out) { *out = ((const spec_strategy *)st)->r.st; }

static void spec_free(duet_strategy *st) {
    spec_strategy *s = (spec_strategy *)st;
    collab_req_free(&s->r);
    free(s->logits), free(s->p), free(s->q), free(s->dlog), free(s->scratch);
    free(s);
}

static const duet_strategy_i spec_iface = {
    .name = "speculative", .reset = spec_reset, .step = spec_step, .accept = spec_accept, .stats = spec_stats,
    .free = spec_free};

int duet_strategy_speculative(duet_strategy **out, duet_lm *target, duet_lm *draft, duet_sampler *sampler,
                              const duet_spec_params *par, duet_err *err) {
    *out = NULL;
    int rc = duet_spec_params_check(par, err);
    if (rc < 0) return rc;
    if (!target || !sampler) return duet_err_set(err, DUET_EINVAL, "speculative: no target model or no sampler");
    if (par->use_model && !draft) return duet_err_set(err, DUET_EINVAL, "speculative: no draft model given");
    if (!duet_lm_rows_ok(target, duet_sampler_is_greedy(sampler), err) ||
        (par->use_model && !duet_lm_rows_ok(draft, duet_sampler_is_greedy(sampler), err))) {
        duet_err_prefix(err, "speculative");
        return DUET_EUNSUPPORTED;
    }
    if (par->use_model && draft->n_vocab > target->n_vocab)
        return duet_err_set(err, DUET_EINVAL, "speculative: draft vocabulary (%d) is larger than the target's (%d)",
                            draft->n_vocab, target->n_vocab);
    if (duet_sampler_n_vocab(sampler) != target->n_vocab)
        return duet_err_set(err, DUET_EINVAL, "speculative: the sampler's vocabulary (%d) is not the target's (%d)",
                            duet_sampler_n_vocab(sampler), target->n_vocab);
    if (duet_sampler_has_penalties(sampler))
        return duet_err_set(err, DUET_EINVAL, "speculative: sampler penalties are not supported (they make each "
                                              "position's distribution depend on unverified tokens)");
    spec_strategy *s = calloc(1, sizeof *s);
    if (!s) return duet_err_set(err, DUET_ENOMEM, "speculative: out of memory");
    const size_t nv = (size_t)target->n_vocab;
    s->logits = malloc(sizeof(float) * nv * (DUET_SPEC_KMAX + 1));
    s->p = malloc(sizeof(float) * nv * (DUET_SPEC_KMAX + 1));
    s->q = calloc(nv * DUET_SPEC_KMAX, sizeof(float));
    s->dlog = malloc(sizeof(float) * nv);
    s->scratch = malloc(sizeof(float) * nv);
    if (!s->logits || !s->p || !s->q || !s->dlog || !s->scratch) {
        spec_free(&s->base);
        return duet_err_set(err, DUET_ENOMEM, "speculative: out of memory for a vocabulary of %zu", nv);
    }
    /* Ids a smaller draft vocabulary cannot produce get no draft mass. */
    for (size_t v = 0; v < nv; v++) s->dlog[v] = -INFINITY;
    s->base.iface = &spec_iface;
    s->base.finish = DUET_FINISH_LENGTH; /* not started */
    s->target = target, s->draft = par->use_model ? draft : NULL, s->sampler = sampler;
    s->par = *par;
    s->n_vocab = (int)nv;
    s->adapt_model = par->learned_model ? par->learned_model : &s->own_model;
    s->adapt_ngram = par->learned_ngram ? par->learned_ngram : &s->own_ngram;
    *out = &s->base;
    return 0;
}

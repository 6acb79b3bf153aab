/* Speculative decoding loop: a policy over eval + rollback of two sequences.
 *
 * Invariant between rounds: hist holds prompt + output; the target's KV cache
 * holds hist except its last token (`pending`), which is fed at the start of
 * the next verification block. The draft's KV cache holds a prefix
 * hist[0, d_seen) and catches up on the rest when it next drafts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duet/speculative.h"

duet_spec_params duet_spec_default_params(void) {
    return (duet_spec_params){.use_model = 1, .use_ngram = 0, .draft_max = 8, .draft_min = 0,
                              .draft_p_min = 0.0f, .adaptive = 1, .ngram_min = 2, .ngram_max = 4};
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    duet_lm *target, *draft;
    duet_sampler *sampler;
    const duet_spec_params *par;
    int n_vocab;
    int32_t *hist; /* (cap) prompt + generated tokens */
    int n_hist, cap;
    int d_seen;    /* hist[0, d_seen) is in the draft's KV cache */
    float *logits; /* (DUET_SPEC_KMAX + 1, n_vocab) target block logits */
    float *p;      /* (DUET_SPEC_KMAX + 1, n_vocab) target distributions */
    float *q;      /* (DUET_SPEC_KMAX, n_vocab) draft distributions */
    float *dlog;   /* (n_vocab) draft logits of its last position */
    float *scratch;/* (n_vocab) */
    duet_spec_adapt own_model, own_ngram; /* used when the caller keeps none */
    duet_spec_adapt *adapt_model, *adapt_ngram;
    int plain_rounds; /* consecutive rounds without speculation (for probing) */
    duet_spec_stats *st;
} spec_state;

/* Brings the draft's cache up to hist (all of it) and leaves the logits of
 * the last token in s->dlog. */
static int draft_catch_up(spec_state *s, double *seconds, duet_err *err) {
    int n = s->n_hist - s->d_seen;
    double t0 = now_s();
    int rc = duet_lm_eval(s->draft, s->hist + s->d_seen, n, s->dlog, 1, err);
    s->st->draft_evals++;
    *seconds = now_s() - t0;
    s->st->t_draft += *seconds;
    if (rc < 0) return rc;
    s->d_seen = s->n_hist;
    return n;
}

/* Draws up to k tokens from the draft model into out, their distributions
 * into s->q. The last drafted token is not fed to the draft (it may be
 * rejected); the caller accounts for that through d_seen. */
static int draft_with_model(spec_state *s, int k, int32_t *out, duet_err *err) {
    double t_catch = 0;
    int rc = draft_catch_up(s, &t_catch, err);
    if (rc < 0) return rc;
    /* Every round starts by feeding the draft the token(s) it has not seen:
     * the correction or bonus token (and the last accepted draft), a real
     * cost of each round that the adaptive choice must weigh. The first
     * round's catch-up is the whole prompt, a one-off: left out. */
    const double t_steady = rc <= 2 ? t_catch : 0;
    double t0 = now_s();
    int n = 0;
    for (; n < k; n++) {
        float *q = s->q + (size_t)n * s->n_vocab; /* (n_vocab) */
        duet_sampler_dist(s->sampler, s->dlog, q);
        float top = 0;
        for (int v = 0; v < s->n_vocab; v++) if (q[v] > top) top = q[v];
        /* The draft's own confidence is the cheapest predictor of rejection. */
        if (n >= s->par->draft_min && n > 0 && top < s->par->draft_p_min) break;
        out[n] = duet_sampler_is_greedy(s->sampler) ? duet_argmax(q, s->n_vocab)
                                                    : duet_rng_pick(duet_sampler_rng(s->sampler), q, s->n_vocab);
        if (n + 1 < k) {
            rc = duet_lm_eval(s->draft, &out[n], 1, s->dlog, 1, err);
            s->st->draft_evals++;
            if (rc < 0) return rc;
        }
    }
    double dt = now_s() - t0;
    s->st->t_draft += dt;
    duet_spec_adapt_observe_draft(s->adapt_model, n, dt + t_steady);
    return n;
}

/* n-gram drafts are deterministic: their q rows are one-hot. */
static int draft_with_ngram(spec_state *s, int k, int32_t *out) {
    int n = duet_ngram_draft(s->hist, s->n_hist, s->par->ngram_min, s->par->ngram_max, out, k);
    for (int i = 0; i < n; i++) {
        float *q = s->q + (size_t)i * s->n_vocab;
        memset(q, 0, sizeof *q * (size_t)s->n_vocab);
        q[out[i]] = 1;
    }
    return n;
}

static int choose_k(spec_state *s, duet_spec_adapt *a) {
    if (!s->par->adaptive) return s->par->draft_max;
    int k = duet_spec_adapt_choose_k(a);
    /* A length of 0 gathers no evidence: probe now and then in case the text
     * became predictable. */
    if (k == 0 && ++s->plain_rounds % 16 == 0) k = 1;
    if (k > 0) s->plain_rounds = 0;
    return k;
}

static int push_hist(spec_state *s, int32_t tok) {
    if (s->n_hist == s->cap) return -1;
    s->hist[s->n_hist++] = tok;
    return 0;
}

int duet_speculative_generate(duet_lm *target, duet_lm *draft, duet_sampler *sampler,
                              const duet_spec_params *par, const int32_t *prompt, int n_prompt,
                              int n_new, duet_token_cb cb, void *user, duet_spec_stats *stats,
                              duet_err *err) {
    duet_spec_stats local;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    if (n_prompt < 1) return duet_err_set(err, DUET_EINVAL, "speculative: the prompt is empty");
    if (par->use_model && !draft) return duet_err_set(err, DUET_EINVAL, "speculative: no draft model given");
    if (par->draft_max < 0 || par->draft_max > DUET_SPEC_KMAX)
        return duet_err_set(err, DUET_EINVAL, "speculative: draft length %d outside 0..%d", par->draft_max,
                            DUET_SPEC_KMAX);
    if (draft && par->use_model && draft->n_vocab > target->n_vocab)
        return duet_err_set(err, DUET_EINVAL, "speculative: draft vocabulary (%d) is larger than the target's (%d)",
                            draft->n_vocab, target->n_vocab);
    int n_ctx = duet_lm_n_ctx(target);
    if (n_prompt > n_ctx)
        return duet_err_set(err, DUET_ERANGE, "speculative: prompt of %d tokens exceeds the context (%d)", n_prompt, n_ctx);

    spec_state s = {.target = target, .draft = draft, .sampler = sampler, .par = par,
                    .n_vocab = target->n_vocab, .st = stats};
    s.cap = n_prompt + n_new + 1;
    size_t nv = (size_t)s.n_vocab;
    s.hist = malloc(sizeof *s.hist * (size_t)s.cap);
    s.logits = malloc(sizeof(float) * nv * (DUET_SPEC_KMAX + 1));
    s.p = malloc(sizeof(float) * nv * (DUET_SPEC_KMAX + 1));
    s.q = calloc(nv * DUET_SPEC_KMAX, sizeof(float));
    s.dlog = calloc(nv, sizeof(float)); /* ids past a smaller draft vocab stay at logit 0 below */
    s.scratch = malloc(sizeof(float) * nv);
    int rc = 0, consistent_on = 0;
    if (!s.hist || !s.logits || !s.p || !s.q || !s.dlog || !s.scratch) {
        rc = duet_err_set(err, DUET_ENOMEM, "speculative: out of memory");
        goto done;
    }
    /* Ids a smaller draft vocabulary cannot produce get no draft mass. */
    for (size_t v = draft && par->use_model ? (size_t)draft->n_vocab : nv; v < nv; v++) s.dlog[v] = -INFINITY;
    memcpy(s.hist, prompt, sizeof *prompt * (size_t)n_prompt);
    s.n_hist = n_prompt;
    /* Estimates learned by earlier requests (if the caller keeps them) spare
     * this one the cost of learning the costs again. */
    s.adapt_model = par->learned_model ? par->learned_model : &s.own_model;
    s.adapt_ngram = par->learned_ngram ? par->learned_ngram : &s.own_ngram;
    if (!par->learned_model) duet_spec_adapt_init(&s.own_model, par->draft_max);
    if (!par->learned_ngram) duet_spec_adapt_init(&s.own_ngram, par->draft_max);
    stats->n_prompt = n_prompt;

    double t_start = now_s();
    /* The first token comes from the prompt's last row, exactly as in plain
     * generation; from then on the target holds hist but the pending token. */
    rc = duet_lm_eval(target, prompt, n_prompt, s.logits, 1, err);
    stats->target_evals++;
    stats->t_prefill = now_s() - t_start;
    if (rc < 0) goto done;
    /* The prompt was prefilled in the default arithmetic, as plain generation
     * does; from here on plain generation evaluates one token at a time, so
     * the verification blocks must compute every token as a one-token eval
     * would, or a near tie could be decided differently. */
    rc = duet_lm_set_decode_consistent(target, 1);
    if (rc < 0) {
        rc = duet_err_set(err, rc, "speculative: cannot set the target's decode-consistent mode");
        goto done;
    }
    consistent_on = 1;
    int stop = n_new <= 0;
    if (!stop) {
        int32_t first = duet_sampler_sample(sampler, s.logits);
        push_hist(&s, first);
        stats->n_generated = 1;
        stop = (cb && cb(user, first)) || n_new == 1;
    }

    int32_t drafts[DUET_SPEC_KMAX];
    while (!stop && stats->n_generated < n_new) {
        int base = s.n_hist - 1; /* target position of the pending token */
        int room = n_ctx - base - 1;       /* draft tokens the context can still take */
        if (room < 0) {
            rc = duet_err_set(err, DUET_ERANGE, "speculative: context of %d tokens is full", n_ctx);
            break;
        }
        int left = n_new - stats->n_generated - 1; /* every round yields one token beyond its drafts */
        int k_cap = room < left ? room : left;

        /* The whole round is timed (drafting, verification, sampling and
         * bookkeeping): what the adaptive choice weighs is the real cost of a
         * round of each length, overheads included. */
        double t_round = now_s(), t_draft_before = stats->t_draft;
        int k = 0, from_model = 0;
        if (par->use_ngram && k_cap > 0) {
            int kn = choose_k(&s, s.adapt_ngram);
            k = draft_with_ngram(&s, kn < k_cap ? kn : k_cap, drafts);
        }
        if (k == 0 && par->use_model && k_cap > 0) {
            int km = choose_k(&s, s.adapt_model);
            /* The draft catches up to hist, then holds km - 1 drafted tokens:
             * a draft with a shorter context than the target stops drafting
             * where it is full (n-grams and plain decoding carry on). */
            const int d_room = duet_lm_n_ctx(draft) - s.n_hist + 1;
            if (km > d_room) km = d_room;
            if (km > k_cap) km = k_cap;
            if (km > 0) {
                k = draft_with_model(&s, km, drafts, err);
                if (k < 0) { rc = k; break; }
                from_model = 1;
            }
        }

        /* Verify pending + drafts in one batched eval of the target. */
        int32_t block[DUET_SPEC_KMAX + 1];
        block[0] = s.hist[s.n_hist - 1];
        memcpy(block + 1, drafts, sizeof *drafts * (size_t)k);
        double t0 = now_s();
        rc = duet_lm_eval(target, block, k + 1, s.logits, k + 1, err);
        double dt = now_s() - t0;
        stats->target_evals++;
        stats->t_target += dt;
        if (rc < 0) break;
        duet_spec_verdict v = {0, -1};
        if (k == 0) { /* nothing to verify: sample as plain decoding does */
            v.next = duet_sampler_sample(sampler, s.logits);
        } else {
            for (int i = 0; i <= k; i++)
                duet_sampler_dist(sampler, s.logits + (size_t)i * nv, s.p + (size_t)i * nv);
            v = duet_spec_verify(s.p, s.q, drafts, k, s.n_vocab, duet_sampler_rng(sampler), s.scratch);
        }

        stats->rounds++;
        if (k > 0) {
            stats->drafted += k;
            stats->accepted += v.n_accepted;
            if (from_model) stats->drafted_model += k, stats->accepted_model += v.n_accepted;
            else stats->drafted_ngram += k, stats->accepted_ngram += v.n_accepted;
            for (int i = 0; i < k; i++) {
                stats->drafted_at[i]++;
                stats->accepted_at[i] += i < v.n_accepted;
            }
            duet_spec_adapt_observe_accept(from_model ? s.adapt_model : s.adapt_ngram, k, v.n_accepted);
        }

        /* Keep pending + accepted drafts in the target; the draft model holds
         * pending + all drafts but the last, of which the accepted ones stay. */
        duet_lm_rollback(target, base + 1 + v.n_accepted);
        if (from_model) {
            int kept = v.n_accepted < k - 1 ? v.n_accepted : k - 1;
            s.d_seen = base + 1 + kept;
            duet_lm_rollback(draft, s.d_seen);
        }

        for (int i = 0; i <= v.n_accepted && !stop; i++) {
            int32_t tok = i < v.n_accepted ? drafts[i] : v.next;
            push_hist(&s, tok);
            stats->n_generated++;
            if (cb && cb(user, tok)) stop = 1;
            if (stats->n_generated >= n_new) stop = 1;
        }
        double t_rest = now_s() - t_round - (stats->t_draft - t_draft_before);
        duet_spec_adapt_observe_target(s.adapt_model, k + 1, t_rest);
        duet_spec_adapt_observe_target(s.adapt_ngram, k + 1, t_rest);
        /* Stopped inside the accepted run: the caches hold tokens past the
         * output; trim them so the sequences end where the output ends. */
        if (stop) {
            duet_lm_rollback(target, s.n_hist - 1);
            if (draft && s.d_seen > s.n_hist - 1) {
                s.d_seen = s.n_hist - 1;
                duet_lm_rollback(draft, s.d_seen);
            }
        }
    }
    stats->t_total = now_s() - t_start;
    if (rc >= 0) rc = stats->n_generated;
done:
    if (consistent_on) duet_lm_set_decode_consistent(target, 0);
    free(s.hist), free(s.logits), free(s.p), free(s.q), free(s.dlog), free(s.scratch);
    return rc;
}

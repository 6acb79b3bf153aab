/* A sequence on a remote model: the tokens are kept here (an OpenAI
 * endpoint holds no state between calls), and eval scores the whole
 * sequence in one call, returning rows that hold the top-k log-probabilities
 * (the rest -INFINITY). Their argmax is the remote model's own, so greedy
 * strategies (speculative verification, deferral, plain decoding) reproduce
 * the remote's greedy output exactly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "duet/remote.h"

typedef struct {
    duet_remote *r;
    int32_t *hist; /* (n_ctx) */
    int n, n_ctx;
    int prompt_n;  /* the first block evaluated from position 0 (the prompt): later positions are
                      scored as the server's streamed decode computes them */
} remote_seq;

static int rs_eval(duet_lm *lm, const int32_t *tok, int n, float *logits, int n_logits, duet_err *err) {
    remote_seq *s = lm->self;
    if (n < 0 || n_logits < 0 || n_logits > n) return duet_err_set(err, DUET_EINVAL, "%s: bad eval arguments", lm->name);
    if (s->n + n > s->n_ctx)
        return duet_err_set(err, DUET_ERANGE, "%s: context full: %d of %d positions, %d more do not fit", lm->name, s->n,
                            s->n_ctx, n);
    for (int i = 0; i < n; i++)
        if (tok[i] < 0 || tok[i] >= lm->n_vocab)
            return duet_err_set(err, DUET_ERANGE, "%s: token id %d outside [0, %d)", lm->name, tok[i], lm->n_vocab);
    memcpy(s->hist + s->n, tok, sizeof *tok * (size_t)n);
    if (s->n == 0) s->prompt_n = n;
    if (n_logits == 0) { /* nothing to ask: the remote reads these tokens with the next scored block */
        s->n += n;
        return 0;
    }
    const int total = s->n + n, k = 20;
    float *lp = malloc(sizeof *lp * (size_t)total);
    int32_t *tid = malloc(sizeof *tid * (size_t)total * k);
    float *tlp = malloc(sizeof *tlp * (size_t)total * k);
    int rc = lp && tid && tlp ? duet_remote_score_from(s->r, s->hist, total, s->prompt_n, lp, k, tid, tlp, err)
                              : duet_err_set(err, DUET_ENOMEM, "%s: out of memory", lm->name);
    for (int row = 0; rc == 0 && row < n_logits; row++) {
        const int pos = total - n_logits + row; /* the row after token pos */
        float *out = logits + (size_t)row * lm->n_vocab;
        for (int v = 0; v < lm->n_vocab; v++) out[v] = -INFINITY;
        for (int j = 0; j < k; j++) {
            const int32_t id = tid[(size_t)pos * k + j];
            if (id >= 0 && id < lm->n_vocab) out[id] = tlp[(size_t)pos * k + j];
        }
    }
    if (rc == 0) s->n = total; /* on error nothing changed, like a local eval */
    free(lp), free(tid), free(tlp);
    return rc;
}

static int rs_score(duet_lm *lm, const int32_t *tok, int n, float *logprob, int top_k, int32_t *top_id, float *top_lp,
                    duet_err *err) {
    remote_seq *s = lm->self;
    if (s->n + n > s->n_ctx) return duet_err_set(err, DUET_ERANGE, "%s: context full", lm->name);
    memcpy(s->hist + s->n, tok, sizeof *tok * (size_t)n);
    const int total = s->n + n;
    float *lp = malloc(sizeof *lp * (size_t)total);
    int32_t *tid = top_k ? malloc(sizeof *tid * (size_t)total * top_k) : NULL;
    float *tlp = top_k ? malloc(sizeof *tlp * (size_t)total * top_k) : NULL;
    int rc = lp && (!top_k || (tid && tlp)) ? duet_remote_score(s->r, s->hist, total, lp, top_k, tid, tlp, err)
                                            : duet_err_set(err, DUET_ENOMEM, "%s: out of memory", lm->name);
    if (rc == 0) {
        for (int i = 0; i < n; i++) logprob[i] = i == 0 ? NAN : lp[s->n + i];
        if (top_k) {
            memcpy(top_id, tid + (size_t)s->n * top_k, sizeof *tid * (size_t)n * top_k);
            memcpy(top_lp, tlp + (size_t)s->n * top_k, sizeof *tlp * (size_t)n * top_k);
        }
        s->n = total;
    }
    free(lp), free(tid), free(tlp);
    return rc;
}

static int rs_rollback(duet_lm *lm, int n_keep, duet_err *err) {
    remote_seq *s = lm->self;
    if (n_keep < 0 || n_keep > s->n)
        return duet_err_set(err, DUET_ERANGE, "%s: cannot roll back to %d of %d positions", lm->name, n_keep, s->n);
    s->n = n_keep;
    return 0;
}
static int rs_pos(const duet_lm *lm) { return ((const remote_seq *)lm->self)->n; }
static int rs_n_ctx(const duet_lm *lm) { return ((const remote_seq *)lm->self)->n_ctx; }
static void rs_free(duet_lm *lm) {
    remote_seq *s = lm->self;
    free(s->hist);
    free(s);
}

static const duet_lm_i remote_iface = {
    .kind = "remote",
    .caps = DUET_LM_CAP_TOPK | DUET_LM_CAP_SCORE | DUET_LM_CAP_GENERATE,
    .eval = rs_eval,
    .score = rs_score,
    .rollback = rs_rollback,
    .pos = rs_pos,
    .n_ctx = rs_n_ctx,
    .free = rs_free,
};

int duet_lm_remote_new(duet_lm **out, duet_remote *r, int n_vocab, int n_ctx, const char *name, duet_err *err) {
    *out = NULL;
    if (!r || n_vocab < 1 || n_ctx < 1) return duet_err_set(err, DUET_EINVAL, "remote: bad sequence arguments");
    duet_lm *lm = calloc(1, sizeof *lm);
    remote_seq *s = calloc(1, sizeof *s);
    if (s) s->hist = malloc(sizeof *s->hist * (size_t)n_ctx);
    if (!lm || !s || !s->hist) {
        if (s) free(s->hist);
        free(s), free(lm);
        return duet_err_set(err, DUET_ENOMEM, "remote: out of memory");
    }
    s->r = r, s->n_ctx = n_ctx;
    *lm = (duet_lm){.iface = &remote_iface, .self = s, .engine = r, .n_vocab = n_vocab, .name = name ? name : "remote",
                    .owned = 2};
    *out = lm;
    return 0;
}

/* duet_lm over a local duet_seq: the primitives map one to one, and blocks
 * of several sequences of one model share one duet_eval_batch pass. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "duet/lm_local.h"

static int seq_eval(duet_lm *lm, const int32_t *tok, int n, float *logits, int n_logits, duet_err *err) {
    return duet_eval(lm->self, tok, n, logits, n_logits, err);
}

/* One duet_eval_batch over every block: the engine gives each row the bits
 * it would get alone (model.h), so batching never changes an output. */
static int seq_eval_many(const duet_lm_block *b, int n_blocks, duet_err *err) {
    if (n_blocks == 1 && b[0].hidden && b[0].n_logits)
        return duet_eval_hidden(b[0].lm->self, b[0].tokens, b[0].n, b[0].logits, b[0].hidden, b[0].n_logits, err);
    if (n_blocks == 1) return seq_eval(b[0].lm, b[0].tokens, b[0].n, b[0].logits, b[0].n_logits, err);
    int n_tok = 0, n_want = 0, any_hidden = 0;
    for (int i = 0; i < n_blocks; i++) {
        if (b[i].n < 1 || b[i].n_logits < 0 || b[i].n_logits > b[i].n)
            return duet_err_set(err, DUET_EINVAL, "eval_many: block %d has %d tokens and %d logit rows", i, b[i].n,
                                b[i].n_logits);
        n_tok += b[i].n;
        n_want += b[i].n_logits;
        any_hidden |= b[i].hidden != NULL && b[i].n_logits > 0;
    }
    duet_model *m = duet_seq_model(b[0].lm->self);
    const size_t nv = (size_t)duet_model_n_vocab(m), ne = (size_t)duet_model_hparams(m)->n_embd;
    int32_t *tok = malloc(sizeof *tok * (size_t)n_tok);          /* (n_tok) */
    duet_seq **seqs = malloc(sizeof *seqs * (size_t)n_tok);      /* (n_tok) */
    uint8_t *want = malloc((size_t)n_tok);                       /* (n_tok) */
    float *rows = n_want ? malloc(sizeof *rows * nv * (size_t)n_want) : NULL; /* (n_want, n_vocab) */
    float *hrows = any_hidden ? malloc(sizeof *hrows * ne * (size_t)n_want) : NULL; /* (n_want, n_embd) */
    int rc = 0;
    if (!tok || !seqs || !want || (n_want && !rows) || (any_hidden && !hrows)) {
        rc = duet_err_set(err, DUET_ENOMEM, "eval_many: out of memory for %d tokens", n_tok);
        goto done;
    }
    for (int i = 0, at = 0; i < n_blocks; i++)
        for (int j = 0; j < b[i].n; j++, at++) {
            tok[at] = b[i].tokens[j];
            seqs[at] = b[i].lm->self;
            want[at] = j >= b[i].n - b[i].n_logits;
        }
    duet_batch batch = {.n_tokens = n_tok, .tokens = tok, .seqs = seqs, .want = want, .logits = rows, .hidden = hrows};
    rc = duet_eval_batch(m, &batch, err);
    if (rc < 0) goto done;
    for (int i = 0, r = 0; i < n_blocks; i++) {
        if (b[i].n_logits) memcpy(b[i].logits, rows + (size_t)r * nv, sizeof *rows * nv * (size_t)b[i].n_logits);
        if (b[i].n_logits && b[i].hidden)
            memcpy(b[i].hidden, hrows + (size_t)r * ne, sizeof *hrows * ne * (size_t)b[i].n_logits);
        r += b[i].n_logits;
    }
done:
    free(tok), free(seqs), free(want), free(rows), free(hrows);
    return rc;
}

/* log-softmax of one row at the ids asked for, in double for the sum. */
static double log_norm(const float *row, int nv) {
    float mx = -INFINITY;
    for (int v = 0; v < nv; v++) mx = row[v] > mx ? row[v] : mx;
    double s = 0;
    for (int v = 0; v < nv; v++) s += exp((double)row[v] - mx);
    return mx + log(s);
}

static void top_k_of(const float *row, int nv, double lz, int k, int32_t *id, float *lp) {
    for (int j = 0; j < k; j++) id[j] = -1, lp[j] = -INFINITY;
    for (int v = 0; v < nv; v++) {
        float x = row[v];
        if (id[k - 1] >= 0 && x <= lp[k - 1]) continue; /* lp holds raw logits until the end */
        int j = k - 1;
        while (j > 0 && (id[j - 1] < 0 || x > lp[j - 1])) {
            id[j] = id[j - 1], lp[j] = lp[j - 1];
            j--;
        }
        id[j] = v, lp[j] = x;
    }
    for (int j = 0; j < k; j++) lp[j] = id[j] >= 0 ? (float)(lp[j] - lz) : -INFINITY;
}

static int seq_score(duet_lm *lm, const int32_t *tok, int n, float *logprob, int top_k, int32_t *top_id,
                     float *top_lp, duet_err *err) {
    duet_seq *s = lm->self;
    const int nv = lm->n_vocab;
    if (n < 1) return duet_err_set(err, DUET_EINVAL, "score: no tokens");
    if (top_k < 0 || top_k > nv) return duet_err_set(err, DUET_EINVAL, "score: top_k %d outside [0, %d]", top_k, nv);
    float *rows = malloc(sizeof *rows * (size_t)nv * (size_t)n); /* (n, n_vocab) */
    if (!rows) return duet_err_set(err, DUET_ENOMEM, "score: out of memory for %d tokens", n);
    int rc = duet_eval(s, tok, n, rows, n, err);
    if (rc < 0) goto done;
    logprob[0] = NAN;
    for (int i = 0; i < n; i++) {
        const float *row = rows + (size_t)i * nv; /* (n_vocab) distribution of the token after tok[i] */
        double lz = log_norm(row, nv);
        if (i + 1 < n) logprob[i + 1] = (float)(row[tok[i + 1]] - lz);
        if (top_k) top_k_of(row, nv, lz, top_k, top_id + (size_t)i * top_k, top_lp + (size_t)i * top_k);
    }
done:
    free(rows);
    return rc;
}

static int seq_rollback(duet_lm *lm, int n_keep, duet_err *err) {
    int rc = duet_rollback(lm->self, n_keep);
    if (rc < 0)
        return duet_err_set(err, rc, "%s: cannot roll back to %d of %d positions", lm->name, n_keep,
                            duet_seq_pos(lm->self));
    return 0;
}
static int seq_pos(const duet_lm *lm) { return duet_seq_pos(lm->self); }
static int seq_n_ctx(const duet_lm *lm) { return duet_seq_n_ctx(lm->self); }
static int seq_n_ctx_train(const duet_lm *lm) {
    return duet_model_hparams(duet_seq_model(lm->self))->n_ctx_train;
}
static int seq_set_decode_consistent(duet_lm *lm, int on) { return duet_seq_set_decode_consistent(lm->self, on); }
static void seq_free(duet_lm *lm) {
    if (lm->owned) duet_seq_free(lm->self);
}

static const duet_lm_i local_iface = {
    .kind = "local",
    .caps = DUET_LM_CAP_LOGITS | DUET_LM_CAP_SCORE | DUET_LM_CAP_GENERATE | DUET_LM_CAP_HIDDEN,
    .eval = seq_eval,
    .eval_many = seq_eval_many,
    .score = seq_score,
    .rollback = seq_rollback,
    .pos = seq_pos,
    .n_ctx = seq_n_ctx,
    .n_ctx_train = seq_n_ctx_train,
    .set_decode_consistent = seq_set_decode_consistent,
    .free = seq_free,
};

duet_lm duet_lm_from_seq(duet_seq *s) {
    duet_model *m = duet_seq_model(s);
    return (duet_lm){.iface = &local_iface, .self = s, .engine = m, .n_vocab = duet_model_n_vocab(m),
                     .n_embd = duet_model_hparams(m)->n_embd, .name = "local"};
}

int duet_lm_local_new(duet_lm **out, duet_model *m, int n_ctx, const char *name, duet_err *err) {
    *out = NULL;
    duet_lm *lm = malloc(sizeof *lm);
    if (!lm) return duet_err_set(err, DUET_ENOMEM, "out of memory for a model sequence");
    duet_seq *s;
    int rc = duet_seq_new(&s, m, n_ctx, err);
    if (rc < 0) {
        free(lm);
        return rc;
    }
    *lm = duet_lm_from_seq(s);
    lm->owned = 2; /* 2: the struct too */
    if (name) lm->name = name;
    *out = lm;
    return 0;
}

duet_seq *duet_lm_local_seq(const duet_lm *lm) { return lm && lm->iface == &local_iface ? lm->self : NULL; }

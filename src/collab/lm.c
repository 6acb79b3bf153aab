/* The duet_lm calls: checks every implementation would repeat, then the
 * implementation's hook. */
#include <stdlib.h>

#include "duet/lm.h"

int duet_lm_eval(duet_lm *m, const int32_t *tok, int n, float *logits, int n_logits, duet_err *err) {
    if (!(m->iface->caps & (DUET_LM_CAP_LOGITS | DUET_LM_CAP_TOPK)))
        return duet_err_set(err, DUET_EUNSUPPORTED, "%s: this model does not return logits", m->name);
    return m->iface->eval(m, tok, n, logits, n_logits, err);
}

int duet_lm_rows_ok(const duet_lm *m, int greedy, duet_err *err) {
    const int caps = m->iface->caps;
    if (caps & DUET_LM_CAP_LOGITS) return 1;
    if ((caps & DUET_LM_CAP_TOPK) && greedy) return 1;
    if (caps & DUET_LM_CAP_TOPK)
        duet_err_set(err, DUET_EUNSUPPORTED,
                     "%s answers only its top-k log-probabilities: exact for greedy decoding (temperature 0), "
                     "not for sampling", m->name);
    else
        duet_err_set(err, DUET_EUNSUPPORTED, "%s does not return logits", m->name);
    return 0;
}

int duet_lm_score(duet_lm *m, const int32_t *tok, int n, float *logprob, int top_k, int32_t *top_id, float *top_lp,
                  duet_err *err) {
    if (!m->iface->score || !(m->iface->caps & DUET_LM_CAP_SCORE))
        return duet_err_set(err, DUET_EUNSUPPORTED, "%s: this model cannot score tokens", m->name);
    return m->iface->score(m, tok, n, logprob, top_k, top_id, top_lp, err);
}

int duet_lm_rollback(duet_lm *m, int n_keep, duet_err *err) { return m->iface->rollback(m, n_keep, err); }
int duet_lm_pos(const duet_lm *m) { return m->iface->pos(m); }
int duet_lm_n_ctx(const duet_lm *m) { return m->iface->n_ctx(m); }
int duet_lm_n_ctx_train(const duet_lm *m) { return m->iface->n_ctx_train ? m->iface->n_ctx_train(m) : 0; }
int duet_lm_caps(const duet_lm *m) { return m->iface->caps; }

int duet_lm_set_decode_consistent(duet_lm *m, int on) {
    return m->iface->set_decode_consistent ? m->iface->set_decode_consistent(m, on) : 0;
}

/* Blocks come grouped by engine from the driver, but any order works: each
 * engine's blocks are gathered (in their given order) into one pass. */
int duet_lm_eval_blocks(const duet_lm_block *b, int n, duet_err *err) {
    if (n <= 0) return 0;
    duet_lm_block *group = malloc(sizeof *group * (size_t)n); /* (n) one engine's blocks */
    uint8_t *taken = calloc((size_t)n, 1);                     /* (n) */
    int rc = 0;
    if (!group || !taken) {
        rc = duet_err_set(err, DUET_ENOMEM, "out of memory for %d eval blocks", n);
        goto done;
    }
    for (int i = 0; i < n && rc >= 0; i++) {
        if (taken[i]) continue;
        const duet_lm_i *f = b[i].lm->iface;
        int g = 0;
        for (int j = i; j < n; j++)
            if (!taken[j] && b[j].lm->engine == b[i].lm->engine && b[j].lm->iface == f) group[g++] = b[j], taken[j] = 1;
        int wants_hidden = 0;
        for (int j = 0; j < g; j++) wants_hidden |= group[j].hidden != NULL && group[j].n_logits > 0;
        if (wants_hidden && (!(f->caps & DUET_LM_CAP_HIDDEN) || !f->eval_many)) { /* hidden states come through eval_many */
            rc = duet_err_set(err, DUET_EUNSUPPORTED, "%s: no hidden states from this model", group[0].lm->name);
        } else if (f->eval_many && (g > 1 || wants_hidden)) {
            rc = f->eval_many(group, g, err);
        } else {
            for (int j = 0; j < g && rc >= 0; j++)
                rc = duet_lm_eval(group[j].lm, group[j].tokens, group[j].n, group[j].logits, group[j].n_logits, err);
        }
    }
done:
    free(group), free(taken);
    return rc;
}

void duet_lm_free(duet_lm *m) {
    if (!m) return;
    const int owned = m->owned;
    if (owned && m->iface->free) m->iface->free(m);
    if (owned == 2) free(m);
}

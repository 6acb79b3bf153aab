/* duet — the two primitives every collaboration mechanism is built on.
 *
 * A duet_lm is one sequence of one language model, seen only through
 *   eval(tokens[n])  -> append n tokens, logits of the last few of them
 *   rollback(n_keep) -> forget everything after position n_keep
 * A local model (model.h: duet_seq) and a remote endpoint both provide it, so
 * a mechanism in src/collab/ never reaches into an engine's internals. */
#ifndef DUET_LM_H
#define DUET_LM_H

#include <stdint.h>

#include "duet/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct duet_lm {
    void *self;
    int n_vocab;
    /* Appends tok (n) and writes the logits of the last n_logits of them
     * (0..n) to logits (n_logits, n_vocab); n_logits = 0 computes none. */
    int (*eval)(void *self, const int32_t *tok, int n, float *logits, int n_logits, duet_err *err);
    /* Keeps positions [0, n_keep). */
    int (*rollback)(void *self, int n_keep);
    int (*pos)(void *self);   /* tokens held */
    int (*n_ctx)(void *self); /* capacity */
    /* Optional (may be NULL): on != 0 makes every later eval compute each
     * token bit-identically to a one-token eval of it at its position
     * (model.h: duet_seq_set_decode_consistent); 0 restores the default. */
    int (*set_decode_consistent)(void *self, int on);
} duet_lm;

static inline int duet_lm_eval(duet_lm *m, const int32_t *tok, int n, float *logits, int n_logits,
                               duet_err *err) {
    return m->eval(m->self, tok, n, logits, n_logits, err);
}
static inline int duet_lm_rollback(duet_lm *m, int n_keep) { return m->rollback(m->self, n_keep); }
static inline int duet_lm_pos(duet_lm *m) { return m->pos(m->self); }
static inline int duet_lm_n_ctx(duet_lm *m) { return m->n_ctx(m->self); }
/* 0 when done or when m has no such mode (the hook is NULL). */
static inline int duet_lm_set_decode_consistent(duet_lm *m, int on) {
    return m->set_decode_consistent ? m->set_decode_consistent(m->self, on) : 0;
}

#ifdef __cplusplus
}
#endif
#endif

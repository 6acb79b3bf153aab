/* duet_lm over a local duet_seq: the primitives map one to one. */
#include "duet/lm_local.h"

static int seq_eval(void *self, const int32_t *tok, int n, float *logits, int n_logits, duet_err *err) {
    return duet_eval(self, tok, n, logits, n_logits, err);
}
static int seq_rollback(void *self, int n_keep) { return duet_rollback(self, n_keep); }
static int seq_pos(void *self) { return duet_seq_pos(self); }
static int seq_n_ctx(void *self) { return duet_seq_n_ctx(self); }
static int seq_set_decode_consistent(void *self, int on) { return duet_seq_set_decode_consistent(self, on); }

duet_lm duet_lm_from_seq(duet_seq *s) {
    return (duet_lm){.self = s,
                     .n_vocab = duet_model_n_vocab(duet_seq_model(s)),
                     .eval = seq_eval,
                     .rollback = seq_rollback,
                     .pos = seq_pos,
                     .n_ctx = seq_n_ctx,
                     .set_decode_consistent = seq_set_decode_consistent};
}

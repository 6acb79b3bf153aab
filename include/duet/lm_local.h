/* duet — a local sequence (model.h) seen through the duet_lm primitives. */
#ifndef DUET_LM_LOCAL_H
#define DUET_LM_LOCAL_H

#include "duet/api.h"
#include "duet/lm.h"
#include "duet/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The returned struct borrows s; it is valid as long as s is (duet_lm_free
 * on it is a no-op). name may be NULL (then "local"). */
DUET_API duet_lm duet_lm_from_seq(duet_seq *s);
/* A new sequence of m with room for n_ctx positions (<= 0: the model's
 * trained context), owned by the returned lm: duet_lm_free releases both. */
DUET_API int duet_lm_local_new(duet_lm **out, duet_model *m, int n_ctx, const char *name, duet_err *err);
/* The sequence behind a local lm (NULL for another kind). */
DUET_API duet_seq *duet_lm_local_seq(const duet_lm *lm);

#ifdef __cplusplus
}
#endif
#endif

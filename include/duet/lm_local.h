/* duet — a local sequence (model.h) seen through the duet_lm primitives. */
#ifndef DUET_LM_LOCAL_H
#define DUET_LM_LOCAL_H

#include "duet/lm.h"
#include "duet/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The returned struct borrows s; it is valid as long as s is. */
duet_lm duet_lm_from_seq(duet_seq *s);

#ifdef __cplusplus
}
#endif
#endif

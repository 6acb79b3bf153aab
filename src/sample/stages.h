/* Internal: constructors of the sampler stages and candidate helpers. */
#ifndef DUET_SAMPLE_STAGES_H
#define DUET_SAMPLE_STAGES_H

#include "duet/sample.h"

duet_sampler_stage *duet_stage_penalties(float repeat, float freq, float presence, int last_n, int n_vocab);
duet_sampler_stage *duet_stage_top_k(int k);
duet_sampler_stage *duet_stage_top_p(float p);
duet_sampler_stage *duet_stage_min_p(float p);
duet_sampler_stage *duet_stage_temp(float t);

/* Sorts by logit, descending, lower id first on ties (no-op if sorted). */
void duet_candidates_sort(duet_candidates *c);
/* Fills .p with the softmax of the candidates' logits. */
void duet_candidates_softmax(duet_candidates *c);

#endif

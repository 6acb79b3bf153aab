/* duet — speculative decoding: the strategy is in strategy.h
 * (duet_strategy_speculative), the model-free pieces in spec.h, the blocking
 * one-request call in generate.h. This header gathers them. */
#ifndef DUET_SPECULATIVE_H
#define DUET_SPECULATIVE_H

#include "duet/generate.h"
#include "duet/spec.h"
#include "duet/strategy.h"

#endif

/* Inside the library: the content words of a prompt, for the routing signals. */
#ifndef DUET_COLLAB_ROUTE_WORDS_H
#define DUET_COLLAB_ROUTE_WORDS_H

#include <stdint.h>

#include "duet/strategy.h"

/* Marks in content (n_vocab, zeroed by the caller) the first token of every
 * content word of the prompt: a word-start token and the letter tokens that
 * follow it, 3 letters or more, not a function word. Ids at or past n_vocab
 * (the model's rows; a vocabulary may hold more) end a word. */
void route_words_mark_content(const duet_route_words *w, const int32_t *prompt, int n_prompt, uint8_t *content,
                              int n_vocab);

#endif

/* internal: not part of the public API; may change. */
/* A typed binary min-heap (by a caller's "comes before" order), generated per
 * element type so the tokenizers' merge queues stay inlined and fast.
 *
 *   DUET_DEFINE_HEAP(name, T, before)
 * defines, for a struct S with fields `T *heap; size_t heap_n, heap_cap;`,
 *   static int name##_push(S *s, T x)  -- 0 or DUET_ENOMEM
 *   static T   name##_pop(S *s)        -- the first element; heap_n > 0 */
#ifndef DUET_TOK_HEAP_H
#define DUET_TOK_HEAP_H

#include <stdlib.h>

#include "duet/err.h"

#define DUET_DEFINE_HEAP(name, S, T, before)                               \
    static int name##_push(S *s, T x) {                                    \
        if (s->heap_n == s->heap_cap) {                                    \
            size_t c = s->heap_cap ? s->heap_cap * 2 : 64;                 \
            T *h = realloc(s->heap, sizeof *h * c);                        \
            if (!h) return DUET_ENOMEM;                                    \
            s->heap = h;                                                   \
            s->heap_cap = c;                                               \
        }                                                                  \
        size_t i = s->heap_n++;                                            \
        while (i > 0) {                                                    \
            size_t up = (i - 1) / 2;                                       \
            if (!before(&x, &s->heap[up])) break;                          \
            s->heap[i] = s->heap[up];                                      \
            i = up;                                                        \
        }                                                                  \
        s->heap[i] = x;                                                    \
        return 0;                                                          \
    }                                                                      \
    static T name##_pop(S *s) {                                            \
        T top = s->heap[0], last = s->heap[--s->heap_n];                   \
        size_t i = 0, n = s->heap_n;                                       \
        for (;;) {                                                         \
            size_t c = 2 * i + 1;                                          \
            if (c >= n) break;                                             \
            if (c + 1 < n && before(&s->heap[c + 1], &s->heap[c])) c++;    \
            if (!before(&s->heap[c], &last)) break;                        \
            s->heap[i] = s->heap[c];                                       \
            i = c;                                                         \
        }                                                                  \
        if (n) s->heap[i] = last;                                          \
        return top;                                                        \
    }

#endif

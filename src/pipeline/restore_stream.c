/* Restoring placeholders in an answer as it streams. Only a '<' can begin
 * a placeholder and '<' occurs nowhere else in one, so the stream holds at
 * most one candidate: from a '<' until the grammar (redact_internal.h)
 * says it is complete (the value goes out) or cannot be one (the held text
 * goes out as it was, and the byte that broke it is looked at afresh, since
 * it may be the next '<'). This is the same decision duet_restore makes on
 * the whole text, so every way of cutting an answer restores the same. */
#include <stdlib.h>
#include <string.h>

#include "duet/redact.h"
#include "redact_internal.h"

struct duet_restore_stream {
    const duet_redactor *r;
    char held[PII_PH_MAX]; /* (n_held) a possible placeholder's beginning */
    size_t n_held;
    pii_buf out;           /* what one call returns */
    int restored;
};

duet_restore_stream *duet_restore_stream_new(const duet_redactor *r) {
    if (!r) return NULL;
    duet_restore_stream *s = calloc(1, sizeof *s);
    if (s) s->r = r;
    return s;
}

void duet_restore_stream_free(duet_restore_stream *s) {
    if (!s) return;
    free(s->out.p);
    free(s);
}

int duet_restore_stream_count(const duet_restore_stream *s) { return s ? s->restored : 0; }

static void take_byte(duet_restore_stream *s, char c) {
    if (s->n_held == 0) {
        if (c == '<') s->held[s->n_held++] = c;
        else pii_buf_put(&s->out, &c, 1);
        return;
    }
    s->held[s->n_held++] = c;
    const int st = pii_placeholder_prefix(s->held, s->n_held);
    if (st == 1) return; /* still possible: keep holding */
    if (st == 2) {
        size_t n;
        int known;
        const char *v = pii_restore_one(s->r, s->held, s->n_held, &n, &known);
        pii_buf_put(&s->out, v, n);
        s->restored += known;
        s->n_held = 0;
        return;
    }
    pii_buf_put(&s->out, s->held, s->n_held - 1); /* not a placeholder: as it was */
    s->n_held = 0;
    take_byte(s, c);
}

const char *duet_restore_stream_push(duet_restore_stream *s, const char *piece, size_t n, size_t *out_n) {
    *out_n = 0;
    if (!s) return NULL;
    s->out.len = 0;
    pii_buf_put(&s->out, "", 0);
    for (size_t i = 0; i < n; i++) take_byte(s, piece[i]);
    if (s->out.oom) return NULL;
    *out_n = s->out.len;
    return s->out.p;
}

const char *duet_restore_stream_flush(duet_restore_stream *s, size_t *out_n) {
    *out_n = 0;
    if (!s) return NULL;
    s->out.len = 0;
    pii_buf_put(&s->out, s->held, s->n_held);
    s->n_held = 0;
    if (s->out.oom) return NULL;
    *out_n = s->out.len;
    return s->out.p;
}

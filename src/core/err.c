/* duet_err helpers: one message buffer, never allocates. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "duet/err.h"

int duet_err_set(duet_err *e, int code, const char *fmt, ...) {
    if (!e) return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->code = code;
    return code;
}

void duet_err_prefix(duet_err *e, const char *fmt, ...) {
    if (!e) return;
    char head[256], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    snprintf(e->msg, sizeof e->msg, "%.200s: %.300s", head, old);
}

/* The calls every strategy shares, and the names of finish reasons and origins. */
#include <string.h>

#include "duet/strategy.h"

const char *duet_finish_name(duet_finish f) {
    switch (f) {
    case DUET_FINISH_STOP: return "stop";
    case DUET_FINISH_LENGTH: return "length";
    case DUET_FINISH_ERROR: return "error";
    default: return "none";
    }
}

const char *duet_origin_name(duet_origin o) {
    static const char *names[DUET_ORIGIN_COUNT] = {"llm", "draft", "ngram", "slm", "defer", "fused"};
    return o >= 0 && o < DUET_ORIGIN_COUNT ? names[o] : "unknown";
}

int duet_strategy_reset(duet_strategy *s, const duet_request *req, duet_err *err) {
    s->finish = DUET_FINISH_NONE;
    memset(&s->err, 0, sizeof s->err);
    int rc = s->iface->reset(s, req, err);
    if (rc < 0) {
        s->finish = DUET_FINISH_ERROR;
        if (err) s->err = *err;
        s->err.code = rc;
    }
    return rc;
}

duet_finish duet_strategy_done(const duet_strategy *s) { return s->finish; }

void duet_strategy_stats(const duet_strategy *s, duet_stats *out) {
    memset(out, 0, sizeof *out);
    s->iface->stats(s, out);
    out->finish = s->finish;
}

const char *duet_strategy_name(const duet_strategy *s) { return s->iface->name; }

void duet_strategy_free(duet_strategy *s) {
    if (s) s->iface->free(s);
}

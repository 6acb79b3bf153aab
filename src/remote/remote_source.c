/* A remote endpoint's streamed generation as a token source
 * (strategy.h: duet_token_source), so duet_strategy_source can make it the
 * LLM leg of any strategy. The stream is pumped from the source's poll
 * (the strategy driver's thread): no thread of its own. Tokens streamed as
 * text (a server without return_tokens_as_token_ids) are tokenized piece by
 * piece with the local vocabulary: the text is the remote's, the ids are a
 * local tokenization of it. */
#include <stdlib.h>
#include <string.h>

#include "remote/remote_internal.h"

typedef struct {
    duet_token_source src;
    duet_remote *r;
    const duet_vocab *vocab;     /* text mode only (may be NULL: then text tokens fail) */
    duet_remote_gen_params gp;
    duet_remote_stream *stream;
    int32_t *q;                  /* (q_cap) tokens received, not yet polled */
    int q_len, q_cap;
    int bad_text;                /* a text piece that could not become ids */
} remote_source;

static int push(remote_source *s, int32_t id) {
    if (s->q_len == s->q_cap) {
        int cap = s->q_cap ? s->q_cap * 2 : 64;
        int32_t *t = realloc(s->q, sizeof *t * (size_t)cap);
        if (!t) return 1;
        s->q = t, s->q_cap = cap;
    }
    s->q[s->q_len++] = id;
    return 0;
}

static int on_token(void *ud, int32_t id, const char *piece, int len) {
    remote_source *s = ud;
    if (id >= 0) return push(s, id);
    if (!s->vocab || len <= 0) return (s->bad_text = 1);
    int32_t ids[64];
    const int n = duet_tokenize(s->vocab, piece, (size_t)len, ids, 64, 0);
    if (n < 0 || n > 64) return (s->bad_text = 1);
    for (int i = 0; i < n; i++)
        if (push(s, ids[i])) return 1;
    return 0;
}

static void rs_stop(duet_token_source *src) {
    remote_source *s = src->self;
    duet_remote_stream_free(s->stream);
    s->stream = NULL;
    s->q_len = 0;
}

static int rs_start(duet_token_source *src, const int32_t *prompt, int n_prompt, int max_new, int ignore_eos,
                    duet_err *err) {
    remote_source *s = src->self;
    rs_stop(src);
    s->bad_text = 0;
    duet_remote_gen_params gp = s->gp;
    gp.max_tokens = max_new;
    gp.ignore_eos = ignore_eos;
    return duet_remote_stream_open(&s->stream, s->r, prompt, n_prompt, &gp, on_token, s, err);
}

static int rs_poll(duet_token_source *src, double wait_s, int32_t *out, int cap, int *ended, duet_err *err) {
    remote_source *s = src->self;
    *ended = 0;
    int rc = 0;
    if (!s->stream) {
        *ended = 1;
    } else if (s->q_len == 0) {
        rc = duet_remote_stream_pump(s->stream, wait_s, err);
        if (rc == 0 && s->q_len == 0 && wait_s > 0) rc = duet_remote_stream_pump(s->stream, 0, err);
    }
    const int n = s->q_len < cap ? s->q_len : cap;
    if (n > 0) { /* (q is NULL until the first token) */
        memcpy(out, s->q, sizeof *out * (size_t)n);
        memmove(s->q, s->q + n, sizeof *s->q * (size_t)(s->q_len - n));
        s->q_len -= n;
    }
    if (s->bad_text && s->q_len == 0 && n == 0)
        return duet_err_set(err, DUET_EUNSUPPORTED, "remote: %s streams text this device cannot turn into token ids",
                            s->r->url);
    if (rc < 0) return n > 0 || s->q_len > 0 ? n : rc; /* the tokens before the failure first */
    if (rc == 1 && s->q_len == 0) *ended = 1;
    return n;
}

static const duet_token_source_i remote_source_iface = {.start = rs_start, .poll = rs_poll, .stop = rs_stop};

int duet_remote_source_new(duet_token_source **out, duet_remote *r, const duet_vocab *vocab,
                           const duet_remote_gen_params *gp, duet_err *err) {
    *out = NULL;
    if (!r || !gp || !(gp->temp >= 0) || !(gp->stall_s >= 0))
        return duet_err_set(err, DUET_EINVAL, "remote: bad source parameters (temp and stall_s must be >= 0)");
    remote_source *s = calloc(1, sizeof *s);
    if (!s) return duet_err_set(err, DUET_ENOMEM, "remote: out of memory");
    s->r = r, s->vocab = vocab, s->gp = *gp;
    s->src = (duet_token_source){.iface = &remote_source_iface, .self = s, .name = "remote"};
    *out = &s->src;
    return 0;
}

void duet_remote_source_free(duet_token_source *src) {
    if (!src) return;
    remote_source *s = src->self;
    rs_stop(src);
    free(s->q);
    free(s);
}

/* internal: not part of the public API; may change.
 *
 * What the remote model's files share: the endpoint's state (parameters,
 * breaker, counters, what the probe learned) and the helpers every call
 * goes through, so a streamed generation (remote_gen.c) obeys the same
 * private mode, breaker and egress log as a scoring call (remote.c). */
#ifndef DUET_REMOTE_INTERNAL_H
#define DUET_REMOTE_INTERNAL_H

#include <pthread.h>

#include "duet/remote.h"

struct duet_remote {
    duet_remote_params p;
    char *url, *model, *api_key, *egress;
    pthread_mutex_t mu;        /* counters, the breaker, the probe's findings */
    int consecutive_failures;
    double open_until;         /* the breaker refuses calls until then */
    long calls, failures, retries, refused;
    double seconds;
    int probed;                /* duet_remote_probe has run and reached the endpoint */
    int token_ids;             /* the probe saw tokens returned as ids (return_tokens_as_token_ids) */
};

double remote_now_s(void);

/* Private mode and the breaker: 0 when a call may go out, else the error
 * (DUET_EUNSUPPORTED in private mode, DUET_EIO while the breaker is open). */
int remote_may_call(duet_remote *r, duet_err *err);

/* One finished call: counts it, and a failure moves the breaker. Returns 1
 * if a retry is still allowed (the breaker is closed and retry_ok). */
int remote_record_call(duet_remote *r, int failed, double seconds, int retry_ok);

/* 1 for the statuses worth trying again (429, 502, 503, 504: busy or a
 * gateway's trouble); any other status is the server's considered answer,
 * not a failure of the endpoint. */
int remote_status_transient(long code);

/* Appends one JSON line (time, url, body) to the egress log, if there is one. */
void remote_egress(duet_remote *r, const char *path, const char *body);

/* The message of an OpenAI-style error object, or the body's start. */
void remote_error_text(const char *resp, char *out, size_t cap);

#endif

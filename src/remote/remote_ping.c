/* The round trip to the endpoint, measured with a call that costs the
 * server no forward pass (GET /health, else any answer at all: a 404 comes
 * back across the same link). One connection is reused, so the figure is a
 * request's round trip, not a TCP handshake's. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>

#include "remote/remote_internal.h"

static size_t discard(char *p, size_t size, size_t n, void *user) {
    (void)p, (void)user;
    return size * n;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int duet_remote_ping(duet_remote *r, int n, double *rtt_s, duet_err *err) {
    if (n < 1 || n > 64) return duet_err_set(err, DUET_EINVAL, "remote: ping count %d outside 1..64", n);
    int rc = remote_may_call(r, err);
    if (rc < 0) return rc;
    char url[2048];
    snprintf(url, sizeof url, "%s/health", r->url);
    CURL *c = curl_easy_init();
    if (!c) return duet_err_set(err, DUET_ENOMEM, "remote: cannot make a curl handle");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(r->p.timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(r->p.connect_timeout_s * 1000));
    double t[65];
    /* the first call opens the connection; it is not a round trip of a request */
    for (int i = 0; i <= n; i++) {
        const double t0 = remote_now_s();
        const CURLcode cc = curl_easy_perform(c);
        t[i] = remote_now_s() - t0;
        remote_record_call(r, cc != CURLE_OK, t[i], 0);
        if (cc != CURLE_OK) {
            rc = duet_err_set(err, DUET_EIO, "remote: %s: %s", url, curl_easy_strerror(cc));
            break;
        }
    }
    curl_easy_cleanup(c);
    if (rc < 0) return rc;
    qsort(t + 1, (size_t)n, sizeof *t, cmp_double);
    *rtt_s = t[1 + n / 2];
    return 0;
}

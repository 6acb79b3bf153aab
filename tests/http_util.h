/* One HTTP exchange with libcurl for the tests that talk to a server
 * (test_remote_gen.c, test_remote_privacy.c, test_llama_server.c): the
 * whole response body into a growing buffer. Apart from server_util.h, so
 * that only tests linked with libcurl include <curl/curl.h>. */
#ifndef DUET_TEST_HTTP_UTIL_H
#define DUET_TEST_HTTP_UTIL_H

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *buf; /* NUL-terminated; NULL while nothing came */
    size_t len;
} body;

/* CURLOPT_WRITEFUNCTION appending to a body. */
static inline size_t grab(char *p, size_t s, size_t n, void *u) {
    body *b = u;
    char *t = realloc(b->buf, b->len + s * n + 1);
    if (!t) return 0;
    memcpy(t + b->len, p, s * n);
    b->buf = t, b->len += s * n, t[b->len] = 0;
    return s * n;
}

/* GET url, or POST post (JSON) when post != NULL, on the handle c, within
 * timeout_s seconds; the response body appended to *b, the HTTP status in
 * *status (may be NULL; 0 when the exchange failed). */
static inline CURLcode http_exchange(CURL *c, const char *url, const char *post, long timeout_s, body *b,
                                     long *status) {
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (post) curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, grab);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
    const CURLcode rc = curl_easy_perform(c);
    if (status) {
        *status = 0;
        if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(h);
    return rc;
}

#endif

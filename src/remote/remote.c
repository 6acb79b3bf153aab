/* The remote model's HTTP side: one POST per call (libcurl), a timeout on
 * each, retries with backoff for idempotent calls, a circuit breaker, the
 * egress log and private mode; scoring and probing over /v1/completions. */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "remote/remote_internal.h"

double remote_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

duet_remote_params duet_remote_default_params(void) {
    return (duet_remote_params){.timeout_s = 30, .connect_timeout_s = 5, .retries = 2, .top_k = 5,
                                .breaker_failures = 3, .breaker_open_s = 10};
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

int duet_remote_open(duet_remote **out, const duet_remote_params *p, duet_err *err) {
    *out = NULL;
    if (!p || !p->url || strncmp(p->url, "http", 4))
        return duet_err_set(err, DUET_EINVAL, "remote: the URL must start with http:// or https:// (got '%.60s')",
                            p && p->url ? p->url : "");
    if (!p->model || !p->model[0]) return duet_err_set(err, DUET_EINVAL, "remote: no model name");
    if (!(p->timeout_s > 0) || !(p->connect_timeout_s > 0) || p->retries < 0 || p->retries > 10 || p->top_k < 1 ||
        p->top_k > 20 || p->breaker_failures < 1 || !(p->breaker_open_s >= 0))
        return duet_err_set(err, DUET_EINVAL, "remote: timeouts must be > 0, retries 0..10, top_k 1..20");
    duet_remote *r = calloc(1, sizeof *r);
    if (!r) return duet_err_set(err, DUET_ENOMEM, "remote: out of memory");
    r->p = *p;
    r->url = strdup(p->url);
    r->model = strdup(p->model);
    r->api_key = p->api_key ? strdup(p->api_key) : NULL;
    r->egress = p->egress_log ? strdup(p->egress_log) : NULL;
    size_t n = strlen(r->url);
    while (n > 0 && r->url[n - 1] == '/') r->url[--n] = 0; /* "http://h:p/" and "http://h:p" alike */
    pthread_mutex_init(&r->mu, NULL);
    pthread_once(&curl_once, curl_init);
    *out = r;
    return 0;
}

void duet_remote_free(duet_remote *r) {
    if (!r) return;
    pthread_mutex_destroy(&r->mu);
    free(r->url), free(r->model), free(r->api_key), free(r->egress);
    free(r);
}

void duet_remote_counts(const duet_remote *r, long *calls, long *failures, long *retries, long *refused, double *seconds) {
    duet_remote *m = (duet_remote *)r;
    pthread_mutex_lock(&m->mu);
    if (calls) *calls = r->calls;
    if (failures) *failures = r->failures;
    if (retries) *retries = r->retries;
    if (refused) *refused = r->refused;
    if (seconds) *seconds = r->seconds;
    pthread_mutex_unlock(&m->mu);
}

int remote_status_transient(long code) { return code == 502 || code == 503 || code == 504 || code == 429; }

int remote_may_call(duet_remote *r, duet_err *err) {
    if (r->p.private_mode)
        return duet_err_set(err, DUET_EUNSUPPORTED, "remote: private mode: nothing is sent to %s", r->url);
    pthread_mutex_lock(&r->mu);
    const int open = remote_now_s() < r->open_until;
    if (open) r->refused++;
    pthread_mutex_unlock(&r->mu);
    if (open)
        return duet_err_set(err, DUET_EIO, "remote: %s failed %d times in a row; not calling it for %.0f s", r->url,
                            r->p.breaker_failures, r->p.breaker_open_s);
    return 0;
}

int remote_record_call(duet_remote *r, int failed, double seconds, int retry_ok) {
    pthread_mutex_lock(&r->mu);
    r->calls++;
    r->seconds += seconds;
    if (failed) {
        r->failures++;
        if (++r->consecutive_failures >= r->p.breaker_failures) r->open_until = remote_now_s() + r->p.breaker_open_s;
    } else {
        r->consecutive_failures = 0;
    }
    const int may_retry = failed && retry_ok && remote_now_s() >= r->open_until;
    if (may_retry) r->retries++;
    pthread_mutex_unlock(&r->mu);
    return may_retry;
}

typedef struct {
    char *buf;
    size_t len, cap;
} growbuf;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *user) {
    growbuf *b = user;
    const size_t n = size * nmemb;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        if (cap > (64u << 20)) return 0; /* a 64 MiB answer is not a completion: abort */
        char *t = realloc(b->buf, cap);
        if (!t) return 0;
        b->buf = t, b->cap = cap;
    }
    memcpy(b->buf + b->len, ptr, n);
    b->len += n;
    b->buf[b->len] = 0;
    return n;
}

void remote_egress(duet_remote *r, const char *path, const char *body) {
    if (!r->egress) return;
    FILE *f = fopen(r->egress, "a");
    if (!f) return;
    /* one JSON line per request: when, where, exactly what left the device */
    fprintf(f, "{\"time\":%ld,\"url\":\"%s%s\",\"body\":%s}\n", (long)time(NULL), r->url, path, body);
    fclose(f);
}

/* POSTs body (JSON) to url+path; *resp gets the response body (malloc'd) and
 * *status the HTTP status. Retries transport failures and transient
 * statuses (remote_status_transient) when idempotent; any other status is
 * the server's answer (llama.cpp's server answers "Only no echo is
 * supported" with a 500: retrying it would only open the breaker). Errors: DUET_EUNSUPPORTED (private mode), DUET_EIO (network,
 * timeout, breaker open). */
static int post(duet_remote *r, const char *path, const char *body, int idempotent, char **resp, long *status,
                duet_err *err) {
    *resp = NULL, *status = 0;
    int rc = remote_may_call(r, err);
    if (rc < 0) return rc;
    char url[2048];
    snprintf(url, sizeof url, "%s%s", r->url, path);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    char auth[512];
    if (r->api_key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", r->api_key);
        h = curl_slist_append(h, auth);
    }
    double backoff = 0.2;
    for (int attempt = 0;; attempt++) {
        CURL *c = curl_easy_init();
        growbuf b = {0};
        if (!c) {
            rc = duet_err_set(err, DUET_ENOMEM, "remote: cannot start a request");
            break;
        }
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(r->p.timeout_s * 1000));
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(r->p.connect_timeout_s * 1000));
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        remote_egress(r, path, body);
        const double t0 = remote_now_s();
        CURLcode cc = curl_easy_perform(c);
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_cleanup(c);
        const int failed = cc != CURLE_OK || remote_status_transient(code);
        const int may_retry = remote_record_call(r, failed, remote_now_s() - t0, idempotent && attempt < r->p.retries);
        if (!failed) {
            *resp = b.buf ? b.buf : strdup("");
            *status = code;
            break;
        }
        free(b.buf);
        if (!may_retry) {
            rc = cc != CURLE_OK ? duet_err_set(err, DUET_EIO, "remote: %s: %s", url, curl_easy_strerror(cc))
                                : duet_err_set(err, DUET_EIO, "remote: %s answered HTTP %ld", url, code);
            break;
        }
        usleep((useconds_t)(backoff * 1e6));
        backoff *= 2;
    }
    curl_slist_free_all(h);
    return rc;
}

/* The message of an OpenAI-style error object, or the body's start. */
void remote_error_text(const char *resp, char *out, size_t cap) {
    cJSON *o = cJSON_Parse(resp);
    const cJSON *e = o ? cJSON_GetObjectItemCaseSensitive(o, "error") : NULL;
    const cJSON *m = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "message") : cJSON_IsString(e) ? e : NULL;
    snprintf(out, cap, "%.300s", cJSON_IsString(m) ? m->valuestring : resp ? resp : "");
    cJSON_Delete(o);
}

static char *score_body(const duet_remote *r, const int32_t *tok, int n, int top_k, int decode_from) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", r->model);
    cJSON *p = cJSON_AddArrayToObject(o, "prompt");
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(p, cJSON_CreateNumber(tok[i]));
    /* one generated token: its alternatives are the row after the last token */
    cJSON_AddNumberToObject(o, "max_tokens", 1);
    cJSON_AddNumberToObject(o, "temperature", 0);
    cJSON_AddBoolToObject(o, "echo", 1);
    cJSON_AddNumberToObject(o, "logprobs", top_k);
    cJSON_AddBoolToObject(o, "return_tokens_as_token_ids", 1);
    cJSON_AddBoolToObject(o, "ignore_eos", 1);
    /* duet's server scores from here on as its streamed decode computes (other servers ignore it) */
    if (decode_from > 0) cJSON_AddNumberToObject(o, "duet_decode_from", decode_from);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* "token_id:123" -> 123; -1 otherwise. */
static int32_t token_id_of(const char *s) {
    if (strncmp(s, "token_id:", 9)) return -1;
    char *end;
    long v = strtol(s + 9, &end, 10);
    return *end || v < 0 || v > INT32_MAX ? -1 : (int32_t)v;
}

int duet_remote_score(duet_remote *r, const int32_t *tok, int n, float *lp, int top_k, int32_t *top_id,
                      float *top_lp, duet_err *err) {
    return duet_remote_score_from(r, tok, n, 0, lp, top_k, top_id, top_lp, err);
}

int duet_remote_score_from(duet_remote *r, const int32_t *tok, int n, int decode_from, float *lp, int top_k,
                           int32_t *top_id, float *top_lp, duet_err *err) {
    if (n < 1) return duet_err_set(err, DUET_EINVAL, "remote: nothing to score");
    if (top_k < 0 || top_k > 20) return duet_err_set(err, DUET_EINVAL, "remote: top_k %d outside 0..20", top_k);
    char *body = score_body(r, tok, n, top_k > 0 ? top_k : 1, decode_from), *resp = NULL;
    long status = 0;
    int rc = body ? post(r, "/v1/completions", body, 1, &resp, &status, err)
                  : duet_err_set(err, DUET_ENOMEM, "remote: out of memory");
    free(body);
    if (rc < 0) return rc;
    if (status != 200) {
        char msg[320];
        remote_error_text(resp, msg, sizeof msg);
        free(resp);
        return duet_err_set(err, DUET_EUNSUPPORTED, "remote: %s cannot score a token block (HTTP %ld: %s)", r->url,
                            status, msg);
    }
    cJSON *o = cJSON_Parse(resp);
    free(resp);
    const cJSON *ch = o ? cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "choices"), 0) : NULL;
    const cJSON *lpo = ch ? cJSON_GetObjectItemCaseSensitive(ch, "logprobs") : NULL;
    const cJSON *tl = cJSON_IsObject(lpo) ? cJSON_GetObjectItemCaseSensitive(lpo, "token_logprobs") : NULL;
    const cJSON *tops = cJSON_IsObject(lpo) ? cJSON_GetObjectItemCaseSensitive(lpo, "top_logprobs") : NULL;
    if (!cJSON_IsArray(tl) || !cJSON_IsArray(tops) || cJSON_GetArraySize(tl) < n || cJSON_GetArraySize(tops) < n + (top_k > 0)) {
        cJSON_Delete(o);
        return duet_err_set(err, DUET_EUNSUPPORTED,
                            "remote: %s did not return the prompt's log-probabilities (echo + logprobs): it cannot "
                            "verify drafts", r->url);
    }
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(tl, i);
        lp[i] = i == 0 || !cJSON_IsNumber(v) ? NAN : (float)v->valuedouble;
    }
    /* the alternatives after token i are the distribution of entry i + 1 */
    for (int i = 0; i < n && top_k > 0; i++) {
        int32_t *ids = top_id + (size_t)i * top_k;
        float *lps = top_lp + (size_t)i * top_k;
        for (int k = 0; k < top_k; k++) ids[k] = -1, lps[k] = -INFINITY;
        const cJSON *d = cJSON_GetArrayItem(tops, i + 1);
        int got = 0;
        for (const cJSON *e = cJSON_IsObject(d) ? d->child : NULL; e; e = e->next) {
            const int32_t id = token_id_of(e->string);
            if (id < 0) {
                cJSON_Delete(o);
                return duet_err_set(err, DUET_EUNSUPPORTED,
                                    "remote: %s returns tokens as text, not ids (no return_tokens_as_token_ids): "
                                    "it cannot verify drafts", r->url);
            }
            if (!cJSON_IsNumber(e)) continue;
            /* insert sorted, best first */
            const float x = (float)e->valuedouble;
            if (got == top_k && x <= lps[top_k - 1]) continue;
            int at = got < top_k ? got++ : top_k - 1;
            while (at > 0 && x > lps[at - 1]) ids[at] = ids[at - 1], lps[at] = lps[at - 1], at--;
            ids[at] = id, lps[at] = x;
        }
    }
    cJSON_Delete(o);
    return 0;
}

int duet_remote_probe(duet_remote *r, const duet_vocab *vocab, duet_remote_caps *caps, duet_err *err) {
    memset(caps, 0, sizeof *caps);
    /* can it score a block? small ids every vocabulary has */
    const int32_t ids[4] = {1, 2, 3, 4};
    float lp[4], tlp[4 * 2];
    int32_t tid[4 * 2];
    duet_err e = {0};
    int rc = duet_remote_score(r, ids, 4, lp, 2, tid, tlp, &e);
    if (rc == DUET_EIO || (rc == DUET_EUNSUPPORTED && r->p.private_mode)) { /* nothing else to learn */
        snprintf(caps->report, sizeof caps->report, "%s is not reachable (%s): requests fall back to the local model",
                 r->url, e.msg);
        if (err) *err = e;
        return rc;
    }
    caps->reachable = 1;
    caps->token_prompts = caps->prompt_logprobs = caps->token_ids = rc == 0;
    pthread_mutex_lock(&r->mu);
    r->probed = 1, r->token_ids = caps->token_ids;
    pthread_mutex_unlock(&r->mu);
    /* the same vocabulary: the remote's tokenizer gives the local ids for a known text */
    static const char known[] = "once upon a time, there was a little girl";
    int32_t local[64];
    const int n = vocab ? duet_tokenize(vocab, known, sizeof known - 1, local, 64, 0) : 0;
    if (n > 0 && n <= 64) {
        char body[256], *resp = NULL;
        snprintf(body, sizeof body, "{\"content\": \"%s\"}", known);
        long status = 0;
        duet_err te = {0};
        if (post(r, "/tokenize", body, 1, &resp, &status, &te) == 0 && status == 200) {
            cJSON *o = cJSON_Parse(resp);
            const cJSON *t = o ? cJSON_GetObjectItemCaseSensitive(o, "tokens") : NULL;
            int same = cJSON_IsArray(t) && cJSON_GetArraySize(t) == n;
            for (int i = 0; same && i < n; i++) {
                const cJSON *v = cJSON_GetArrayItem(t, i);
                same = cJSON_IsNumber(v) && (int32_t)v->valuedouble == local[i];
            }
            caps->same_vocab = same;
            cJSON_Delete(o);
        }
        free(resp);
    }
    if (rc == 0 && (!vocab || caps->same_vocab))
        snprintf(caps->report, sizeof caps->report,
                 "%s scores token blocks (echo with prompt log-probabilities, tokens as ids)%s: remote speculative "
                 "verification works (greedy exactly; the top-%d rows it returns do not support exact sampling)",
                 r->url, vocab ? " with the local vocabulary" : "", r->p.top_k);
    else if (rc == 0)
        snprintf(caps->report, sizeof caps->report,
                 "%s scores token blocks, but ITS VOCABULARY DIFFERS from the local model's (a known text tokenizes "
                 "to other ids): no remote verification; routed and cascaded requests still work", r->url);
    else
        snprintf(caps->report, sizeof caps->report,
                 "%s cannot score a token block (%s): it can take routed, cascaded and pipelined requests, but not "
                 "remote verification of drafts", r->url, e.msg);
    if (vocab && !caps->same_vocab) caps->prompt_logprobs = 0;
    return 0;
}

/* Streamed generation from an OpenAI-compatible endpoint: one POST to
 * /v1/completions with "stream": true, read as server-sent events by a
 * libcurl multi handle so the caller can pump it between other work (the
 * strategy driver) or run it to its end (duet_remote_generate).
 *
 * The SSE parser lives in the write callback and keeps partial lines and
 * events across chunks: a network chunk may end anywhere, even inside a
 * UTF-8 character or a JSON string. Each complete event is one JSON chunk
 * whose tokens go to the caller at once. */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remote/remote_internal.h"

#define STREAM_LINE_MAX (8u << 20) /* one SSE line longer than this is not a completion chunk */
#define STREAM_ERRBODY_MAX 4096    /* what is kept of a non-200 answer, for the message */

struct duet_remote_stream {
    duet_remote *r;
    duet_remote_on_token on_token;
    void *ud;
    int max_tokens;
    char *body;               /* the request, kept for retries */
    char url[2048];
    struct curl_slist *hdr;
    CURLM *multi;
    CURL *easy;               /* the running attempt; NULL between attempts */
    int id_mode;              /* asked for tokens as ids (return_tokens_as_token_ids) */
    int attempt;
    double stall_s;
    double t_open, t_attempt, t_last_event, t_first, t_end;
    double retry_at;          /* between attempts: when the next one starts */
    char *line;               /* (line_cap) a partial SSE line across chunks */
    size_t line_len, line_cap;
    char *data;               /* (data_cap) the data lines of the event being read */
    size_t data_len, data_cap;
    char errbody[STREAM_ERRBODY_MAX + 1]; /* the start of a non-200 answer */
    size_t err_len;
    long status;              /* the attempt's HTTP status (0 until the headers came) */
    int n_tokens, retries;
    int stopped;              /* the caller's on_token asked to stop */
    int saw_done;             /* "data: [DONE]" */
    int done;                 /* ended well */
    char finish[16];
    int rc;                   /* < 0: failed with err (kept for every later pump) */
    duet_err err;
};

static int grow(char **buf, size_t *len, size_t *cap, const char *p, size_t n, size_t max) {
    if (*len + n + 1 > *cap) {
        size_t c = (*len + n + 1) * 2;
        if (c > max + 1) c = max + 1;
        if (*len + n + 1 > c) return -1;
        char *t = realloc(*buf, c);
        if (!t) return -1;
        *buf = t, *cap = c;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = 0;
    return 0;
}

static void fail(duet_remote_stream *s, int rc, const char *fmt, const char *a, const char *b) {
    if (s->rc < 0) return; /* the first failure is the one to report */
    duet_err_set(&s->err, rc, fmt, a, b);
    s->rc = rc;
}

/* A token of the stream reaches the caller. 1: stop reading. */
static int deliver(duet_remote_stream *s, int32_t id, const char *piece, int len) {
    if (s->n_tokens >= s->max_tokens) return 1; /* a server that sends more than asked: the rest is not ours */
    if (s->n_tokens++ == 0) s->t_first = remote_now_s();
    if (s->on_token && s->on_token(s->ud, id, piece ? piece : "", len)) {
        s->stopped = 1;
        return 1;
    }
    return 0;
}

/* "token_id:123" -> 123; -1 otherwise. */
static int32_t id_of(const cJSON *v) {
    if (!cJSON_IsString(v) || strncmp(v->valuestring, "token_id:", 9)) return -1;
    char *end;
    long x = strtol(v->valuestring + 9, &end, 10);
    return *end || end == v->valuestring + 9 || x < 0 || x > INT32_MAX ? -1 : (int32_t)x;
}

/* One complete event (its data lines joined). */
static void on_event(duet_remote_stream *s, const char *data) {
    s->t_last_event = remote_now_s();
    if (!strcmp(data, "[DONE]")) {
        s->saw_done = 1;
        return;
    }
    cJSON *o = cJSON_Parse(data);
    if (!cJSON_IsObject(o)) {
        char head[96];
        snprintf(head, sizeof head, "%.80s", data);
        fail(s, DUET_EIO, "remote: %s sent a malformed stream event (not a JSON object): '%s'", s->url, head);
        cJSON_Delete(o);
        return;
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
    if (e) {
        char msg[320];
        remote_error_text(data, msg, sizeof msg);
        fail(s, DUET_EIO, "remote: %s ended the stream with an error: %s", s->url, msg);
        cJSON_Delete(o);
        return;
    }
    const cJSON *chs = cJSON_GetObjectItemCaseSensitive(o, "choices");
    if (chs && !cJSON_IsArray(chs)) {
        fail(s, DUET_EIO, "remote: %s sent a stream event whose 'choices' is not an array%s", s->url, "");
        cJSON_Delete(o);
        return;
    }
    const cJSON *ch = cJSON_GetArrayItem(chs, 0); /* none: a usage-only chunk */
    if (!ch) {
        cJSON_Delete(o);
        return;
    }
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(ch, "text");
    if (!text) { /* a chat chunk */
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(ch, "delta");
        text = cJSON_IsObject(d) ? cJSON_GetObjectItemCaseSensitive(d, "content") : NULL;
    }
    const char *t = cJSON_IsString(text) ? text->valuestring : "";
    const int tlen = (int)strlen(t);
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(ch, "logprobs");
    const cJSON *toks = cJSON_IsObject(lp) ? cJSON_GetObjectItemCaseSensitive(lp, "tokens") : NULL;
    int ids_ok = s->id_mode && cJSON_IsArray(toks) && cJSON_GetArraySize(toks) > 0;
    for (const cJSON *v = ids_ok ? toks->child : NULL; v; v = v->next) ids_ok &= id_of(v) >= 0;
    int stop = 0;
    if (ids_ok) { /* the chunk's text goes with its first token */
        int first = 1;
        for (const cJSON *v = toks->child; v && !stop; v = v->next, first = 0)
            stop = deliver(s, id_of(v), first ? t : "", first ? tlen : 0);
    } else if (tlen > 0) {
        stop = deliver(s, -1, t, tlen);
    }
    (void)stop;
    const cJSON *fr = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
    if (cJSON_IsString(fr)) snprintf(s->finish, sizeof s->finish, "%s", fr->valuestring);
    cJSON_Delete(o);
}

/* One complete line of the event stream (without its end of line). */
static void on_line(duet_remote_stream *s, char *line, size_t n) {
    if (n > 0 && line[n - 1] == '\r') line[--n] = 0;
    if (n == 0) { /* the blank line ends an event */
        if (s->data_len > 0) {
            on_event(s, s->data);
            s->data_len = 0;
        }
        return;
    }
    if (line[0] == ':' || strncmp(line, "data:", 5)) return; /* comments, event:, id:, retry: */
    const char *v = line + 5;
    if (*v == ' ') v++;
    if ((s->data_len && grow(&s->data, &s->data_len, &s->data_cap, "\n", 1, STREAM_LINE_MAX) < 0) ||
        grow(&s->data, &s->data_len, &s->data_cap, v, strlen(v), STREAM_LINE_MAX) < 0)
        fail(s, DUET_EIO, "remote: %s sent a stream event over 8 MiB%s", s->url, "");
}

static size_t on_bytes(char *p, size_t size, size_t nmemb, void *user) {
    duet_remote_stream *s = user;
    const size_t n = size * nmemb;
    if (!s->status) curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &s->status);
    if (s->status != 200) { /* an error answer: keep its start for the message */
        size_t k = n < STREAM_ERRBODY_MAX - s->err_len ? n : STREAM_ERRBODY_MAX - s->err_len;
        memcpy(s->errbody + s->err_len, p, k);
        s->err_len += k;
        s->errbody[s->err_len] = 0;
        return n;
    }
    size_t at = 0;
    while (at < n && s->rc == 0 && !s->stopped) {
        const char *nl = memchr(p + at, '\n', n - at);
        const size_t k = nl ? (size_t)(nl - (p + at)) : n - at;
        if (grow(&s->line, &s->line_len, &s->line_cap, p + at, k, STREAM_LINE_MAX) < 0) {
            fail(s, DUET_EIO, "remote: %s sent a stream line over 8 MiB%s", s->url, "");
            break;
        }
        at += k;
        if (!nl) break;
        at++; /* the '\n' */
        on_line(s, s->line, s->line_len);
        s->line_len = 0;
    }
    return s->rc == 0 && !s->stopped ? n : 0; /* 0 aborts the transfer */
}

static int start_attempt(duet_remote_stream *s) {
    duet_err e = {0};
    int rc = remote_may_call(s->r, &e);
    if (rc < 0) {
        s->err = e, s->rc = rc;
        return rc;
    }
    CURL *c = curl_easy_init();
    if (!c) {
        fail(s, DUET_ENOMEM, "remote: cannot start a request to %s%s", s->url, "");
        return s->rc;
    }
    s->line_len = s->data_len = s->err_len = 0;
    s->status = 0;
    s->saw_done = 0;
    s->finish[0] = 0;
    curl_easy_setopt(c, CURLOPT_URL, s->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, s->hdr);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_bytes);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(s->r->p.connect_timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    s->easy = c;
    remote_egress(s->r, "/v1/completions", s->body);
    s->t_attempt = s->t_last_event = remote_now_s();
    if (curl_multi_add_handle(s->multi, c) != CURLM_OK) {
        curl_easy_cleanup(c);
        s->easy = NULL;
        fail(s, DUET_ENOMEM, "remote: cannot start a request to %s%s", s->url, "");
        return s->rc;
    }
    return 0;
}

static void drop_attempt(duet_remote_stream *s) {
    if (!s->easy) return;
    curl_multi_remove_handle(s->multi, s->easy);
    curl_easy_cleanup(s->easy);
    s->easy = NULL;
}

/* The attempt's transfer is over: done, failed, or to be tried again. */
static void end_attempt(duet_remote_stream *s, CURLcode cc) {
    long code = s->status;
    if (!code) curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code);
    drop_attempt(s);
    const double now = remote_now_s(), dt = now - s->t_attempt;
    if (s->stopped) { /* the caller had enough: a success */
        remote_record_call(s->r, 0, dt, 0);
        if (!s->finish[0]) snprintf(s->finish, sizeof s->finish, "stop");
        s->done = 1, s->t_end = now;
        return;
    }
    if (s->rc == 0 && cc == CURLE_OK && code == 200) {
        if (s->line_len) on_line(s, s->line, s->line_len); /* a last line without its end of line */
        s->line_len = 0;
        if (s->data_len) on_event(s, s->data);
        s->data_len = 0;
        if (s->rc == 0 && !s->saw_done && !s->finish[0] && !s->stopped) {
            char n[32];
            snprintf(n, sizeof n, "%d", s->n_tokens);
            fail(s, DUET_EIO, "remote: %s closed the stream after %s tokens without its end ([DONE])", s->url, n);
        }
        if (s->rc == 0) {
            remote_record_call(s->r, 0, dt, 0);
            if (!s->finish[0]) snprintf(s->finish, sizeof s->finish, s->stopped ? "stop" : "length");
            s->done = 1, s->t_end = now;
            return;
        }
        remote_record_call(s->r, 1, dt, 0);
        return;
    }
    if (s->rc < 0) { /* a malformed event or an error event: not retried */
        remote_record_call(s->r, 1, dt, 0);
        return;
    }
    /* a transport failure or an error status: retried only while nothing was delivered */
    const int transient = cc != CURLE_OK || remote_status_transient(code);
    const int retry_ok = transient && s->n_tokens == 0 && s->attempt < s->r->p.retries;
    if (remote_record_call(s->r, transient, dt, retry_ok)) { /* a refusal (4xx, 500) is an answer, not a failure */
        s->retry_at = now + 0.2 * (double)(1 << s->attempt);
        s->attempt++, s->retries++;
        return;
    }
    char why[400], tok[48];
    snprintf(tok, sizeof tok, s->n_tokens ? " after %d tokens" : "", s->n_tokens);
    if (cc != CURLE_OK) {
        snprintf(why, sizeof why, "%s%s", curl_easy_strerror(cc), tok);
        fail(s, DUET_EIO, "remote: %s: %s", s->url, why);
    } else {
        char msg[320];
        remote_error_text(s->errbody, msg, sizeof msg);
        snprintf(why, sizeof why, "HTTP %ld: %s", code, msg);
        fail(s, transient ? DUET_EIO : DUET_EUNSUPPORTED, "remote: %s cannot stream a completion (%s)", s->url, why);
    }
}

static char *gen_body(const duet_remote *r, const int32_t *prompt, int n, const duet_remote_gen_params *gp,
                      int id_mode) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", r->model);
    cJSON *p = cJSON_AddArrayToObject(o, "prompt");
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(p, cJSON_CreateNumber(prompt[i]));
    cJSON_AddNumberToObject(o, "max_tokens", gp->max_tokens);
    cJSON_AddNumberToObject(o, "temperature", gp->temp);
    if (gp->temp > 0) cJSON_AddNumberToObject(o, "seed", (double)(gp->seed & ((1ull << 53) - 1)));
    cJSON_AddBoolToObject(o, "stream", 1);
    if (gp->ignore_eos) cJSON_AddBoolToObject(o, "ignore_eos", 1);
    if (id_mode) { /* the sampled token of each position, as "token_id:N" */
        cJSON_AddNumberToObject(o, "logprobs", 0);
        cJSON_AddBoolToObject(o, "return_tokens_as_token_ids", 1);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

int duet_remote_stream_open(duet_remote_stream **out, duet_remote *r, const int32_t *prompt, int n_prompt,
                            const duet_remote_gen_params *gp, duet_remote_on_token on_token, void *ud,
                            duet_err *err) {
    *out = NULL;
    if (!r || !prompt || n_prompt < 1 || !gp) return duet_err_set(err, DUET_EINVAL, "remote: nothing to generate from");
    if (gp->max_tokens < 1 || !(gp->temp >= 0) || !(gp->stall_s >= 0))
        return duet_err_set(err, DUET_EINVAL, "remote: max_tokens must be >= 1, temp and stall_s >= 0");
    int rc = remote_may_call(r, err); /* private mode or an open breaker: fail before building anything */
    if (rc < 0) return rc;
    duet_remote_stream *s = calloc(1, sizeof *s);
    if (!s) return duet_err_set(err, DUET_ENOMEM, "remote: out of memory");
    s->r = r, s->on_token = on_token, s->ud = ud, s->max_tokens = gp->max_tokens;
    s->stall_s = gp->stall_s > 0 ? gp->stall_s : r->p.timeout_s;
    pthread_mutex_lock(&r->mu);
    s->id_mode = !r->probed || r->token_ids; /* unprobed: ask; a server that ignores it sends text */
    pthread_mutex_unlock(&r->mu);
    snprintf(s->url, sizeof s->url, "%s/v1/completions", r->url);
    s->body = gen_body(r, prompt, n_prompt, gp, s->id_mode);
    s->hdr = curl_slist_append(NULL, "Content-Type: application/json");
    s->hdr = curl_slist_append(s->hdr, "Accept: text/event-stream");
    if (r->api_key) {
        char auth[512];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", r->api_key);
        s->hdr = curl_slist_append(s->hdr, auth);
    }
    s->multi = curl_multi_init();
    if (!s->body || !s->hdr || !s->multi) {
        duet_remote_stream_free(s);
        return duet_err_set(err, DUET_ENOMEM, "remote: out of memory");
    }
    s->t_open = remote_now_s();
    if ((rc = start_attempt(s)) < 0) {
        if (err) *err = s->err;
        duet_remote_stream_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int duet_remote_stream_pump(duet_remote_stream *s, double wait_s, duet_err *err) {
    if (s->rc < 0 || s->done) goto out;
    if (!s->easy) { /* between attempts: the backoff */
        const double left = s->retry_at - remote_now_s();
        const double w = left < wait_s ? left : wait_s;
        if (w > 0) usleep((useconds_t)(w * 1e6));
        if (remote_now_s() < s->retry_at || start_attempt(s) < 0) goto out;
    }
    const int before = s->n_tokens;
    int running = 0;
    curl_multi_perform(s->multi, &running);
    if (running && s->n_tokens == before && wait_s > 0) {
        /* wake for data, or when the stall deadline passes */
        double until_stall = s->t_last_event + s->stall_s - remote_now_s();
        double w = until_stall < wait_s ? until_stall : wait_s;
        if (w < 0) w = 0;
        curl_multi_poll(s->multi, NULL, 0, (int)(w * 1000) + 1, NULL);
        curl_multi_perform(s->multi, &running);
    }
    CURLMsg *m;
    int left;
    while (s->easy && (m = curl_multi_info_read(s->multi, &left)))
        if (m->msg == CURLMSG_DONE && m->easy_handle == s->easy) end_attempt(s, m->data.result);
    if (s->easy && s->rc == 0 && remote_now_s() - s->t_last_event > s->stall_s) {
        const double dt = remote_now_s() - s->t_attempt;
        drop_attempt(s);
        remote_record_call(s->r, 1, dt, 0); /* a stall is not retried: the server would likely stall again */
        char why[96];
        snprintf(why, sizeof why, "nothing came for %.1f s (after %d tokens)", s->stall_s, s->n_tokens);
        fail(s, DUET_EIO, "remote: %s stalled: %s", s->url, why);
    }
    if (s->rc < 0 && s->easy) drop_attempt(s);
out:
    if (s->rc < 0) {
        if (s->t_end == 0) s->t_end = remote_now_s();
        if (err) *err = s->err;
        return s->rc;
    }
    return s->done;
}

void duet_remote_stream_stats(const duet_remote_stream *s, duet_remote_gen_stats *st) {
    memset(st, 0, sizeof *st);
    st->n_tokens = s->n_tokens;
    st->ttft_s = s->n_tokens ? s->t_first - s->t_open : 0;
    st->total_s = (s->t_end > 0 ? s->t_end : remote_now_s()) - s->t_open;
    st->retries = s->retries;
    snprintf(st->finish, sizeof st->finish, "%s", s->rc < 0 ? "error" : s->finish);
}

void duet_remote_stream_free(duet_remote_stream *s) {
    if (!s) return;
    if (s->easy) { /* abandoned while running: counts as a finished call */
        const double dt = remote_now_s() - s->t_attempt;
        drop_attempt(s);
        remote_record_call(s->r, 0, dt, 0);
    }
    if (s->multi) curl_multi_cleanup(s->multi);
    curl_slist_free_all(s->hdr);
    free(s->body), free(s->line), free(s->data);
    free(s);
}

int duet_remote_generate(duet_remote *r, const int32_t *prompt, int n_prompt, const duet_remote_gen_params *gp,
                         duet_remote_on_token on_token, void *ud, duet_remote_gen_stats *st, duet_err *err) {
    if (st) memset(st, 0, sizeof *st);
    duet_remote_stream *s;
    int rc = duet_remote_stream_open(&s, r, prompt, n_prompt, gp, on_token, ud, err);
    if (rc < 0) {
        if (st) snprintf(st->finish, sizeof st->finish, "error");
        return rc;
    }
    while ((rc = duet_remote_stream_pump(s, 0.25, err)) == 0) {}
    if (st) duet_remote_stream_stats(s, st);
    duet_remote_stream_free(s);
    return rc < 0 ? rc : 0;
}

/* The HTTP side of duet serve (libmicrohttpd, a thread per connection):
 * routing, the API key, body limits, and turning jobs into responses --
 * waited for whole, or streamed as server-sent events while the scheduler
 * produces them. A client that goes away cancels its jobs at once. */
#include <cjson/cJSON.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/openai.h"
#include "server/server.h"

#ifndef DUET_VERSION
#define DUET_VERSION "0"
#endif

extern const char duet_playground_html[];     /* playground.c (generated from web/) */
extern const unsigned duet_playground_html_len;

struct srv_server {
    srv_config *cfg;
    struct MHD_Daemon *daemon;
    srv_sched sched;
    srv_metrics metrics;
    long created;
};

/* Per connection: the request body as it arrives. */
typedef struct {
    char *body;
    size_t len, cap;
    int too_big;
} conn_ctx;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- responses ------------------------------------------------------------------- */

static enum MHD_Result send_body(struct MHD_Connection *conn, int status, const char *type, char *body, size_t len,
                                 int retry_after) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (retry_after) MHD_add_response_header(r, "Retry-After", "1");
    enum MHD_Result ok = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_json(struct MHD_Connection *conn, int status, char *json) {
    if (!json) return MHD_NO;
    return send_body(conn, status, "application/json", json, strlen(json), 0);
}

static enum MHD_Result send_error(srv_server *s, struct MHD_Connection *conn, int profile, int status,
                                  const char *param, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static enum MHD_Result send_error(srv_server *s, struct MHD_Connection *conn, int profile, int status,
                                  const char *param, const char *fmt, ...) {
    srv_error e = {.status = status};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    snprintf(e.param, sizeof e.param, "%s", param ? param : "");
    srv_metrics_request(&s->metrics, profile, status);
    char *js = srv_error_json(&e);
    return send_body(conn, status, "application/json", js, js ? strlen(js) : 0, status == 503);
}

static enum MHD_Result send_srv_error(srv_server *s, struct MHD_Connection *conn, int profile, const srv_error *e) {
    srv_metrics_request(&s->metrics, profile, e->status);
    char *js = srv_error_json(e);
    return send_body(conn, e->status, "application/json", js, js ? strlen(js) : 0, e->status == 503);
}

/* Has the client closed its end? (A peek that reads 0 bytes.) */
static int client_gone(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 0;
    char c;
    ssize_t n = recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void request_id(char *out, size_t cap, const char *prefix) {
    unsigned char b[12] = {0};
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        const uint64_t t = (uint64_t)(now_s() * 1e9);
        memcpy(b, &t, sizeof t);
    }
    int n = snprintf(out, cap, "%s", prefix);
    for (int i = 0; i < 12 && (size_t)n + 2 < cap; i++) n += snprintf(out + n, cap - (size_t)n, "%02x", b[i]);
}

/* ---- completions ----------------------------------------------------------------- */

/* The jobs of one request and what has been sent of them. */
typedef struct {
    srv_server *srv;
    struct MHD_Connection *conn;
    srv_req req;
    srv_job *jobs[SRV_MAX_CHOICES];
    srv_stream_pos pos[SRV_MAX_CHOICES];
    int n_jobs;
    char id[64];
    long created;
    char *out;           /* SSE bytes built, not yet handed to MHD */
    size_t out_len, out_cap, out_sent;
    int closed;          /* [DONE] built */
    int finished;        /* END_OF_STREAM returned */
} call;

static void call_free(call *k) {
    srv_server *s = k->srv;
    int gone = 0;
    for (int i = 0; i < k->n_jobs; i++) {
        pthread_mutex_lock(&k->jobs[i]->mu);
        const int done = k->jobs[i]->done;
        pthread_mutex_unlock(&k->jobs[i]->mu);
        if (!done) gone = 1, srv_sched_cancel(&s->sched, k->jobs[i]);
        srv_job_release(k->jobs[i]);
    }
    if (k->req.stream) srv_metrics_request(&s->metrics, k->req.prof_index, gone ? 499 : 200);
    for (int i = 0; i < SRV_MAX_CHOICES; i++) duet_restore_stream_free(k->pos[i].restore);
    srv_req_free(&k->req);
    free(k->out);
    free(k);
}

static uint64_t fresh_seed(void) {
    uint64_t x = 0;
    if (getrandom(&x, sizeof x, 0) != (ssize_t)sizeof x) x = (uint64_t)(now_s() * 1e9);
    return x;
}

/* One job per (prompt, n) choice, queued. */
static int submit_jobs(call *k, srv_error *e) {
    srv_server *s = k->srv;
    const srv_req *r = &k->req;
    const double t = now_s();
    for (int p = 0; p < r->n_prompts; p++)
        for (int c = 0; c < r->n; c++) {
            srv_job *j = srv_job_new();
            if (!j) goto oom;
            k->jobs[k->n_jobs++] = j;
            j->prof = r->prof;
            j->prof_index = r->prof_index;
            j->prompt = malloc(sizeof *j->prompt * (size_t)r->n_prompt[p]);
            if (!j->prompt) goto oom;
            memcpy(j->prompt, r->prompt[p], sizeof *j->prompt * (size_t)r->n_prompt[p]);
            j->n_prompt = r->n_prompt[p];
            j->max_tokens = r->max_tokens;
            j->sp = r->sp;
            j->sp.seed = r->seed_given ? r->sp.seed + (uint64_t)c : fresh_seed();
            for (int i = 0; i < r->n_stop; i++) j->stop[j->n_stop++] = strdup(r->stop[i]);
            j->top_logprobs = r->logprobs;
            j->score_prompt = r->echo && r->logprobs >= 0;
            j->decode_from = r->decode_from;
            j->ignore_eos = r->ignore_eos;
            j->index = k->n_jobs - 1;
            j->t_queued = t;
        }
    for (int i = 0; i < k->n_jobs; i++)
        if (srv_sched_submit(&s->sched, k->jobs[i]) < 0) {
            for (int q = 0; q < i; q++) srv_sched_cancel(&s->sched, k->jobs[q]);
            e->status = 503;
            snprintf(e->message, sizeof e->message, "the server is busy: %d requests are waiting; retry shortly",
                     srv_sched_queue_depth(&s->sched));
            e->param[0] = 0;
            return -1;
        }
    return 0;
oom:
    e->status = 500;
    snprintf(e->message, sizeof e->message, "out of memory");
    return -1;
}

/* Waits until every job is done, or the client goes away (then cancels). */
static int wait_all(call *k) {
    for (int i = 0; i < k->n_jobs; i++) {
        srv_job *j = k->jobs[i];
        pthread_mutex_lock(&j->mu);
        while (!j->done) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&j->cv, &j->mu, &ts);
            if (!j->done && client_gone(k->conn)) {
                pthread_mutex_unlock(&j->mu);
                return -1;
            }
        }
        pthread_mutex_unlock(&j->mu);
    }
    return 0;
}

/* The SSE body: built as the jobs produce tokens. */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    call *k = cls;
    (void)pos;
    double idle_since = now_s();
    while (k->out_sent == k->out_len) {
        if (k->finished || k->closed) return MHD_CONTENT_READER_END_OF_STREAM;
        k->out_len = k->out_sent = 0;
        int all_done = 1, added = 0;
        for (int i = 0; i < k->n_jobs; i++) {
            srv_job *j = k->jobs[i];
            pthread_mutex_lock(&j->mu);
            added |= srv_stream_events(k->srv->cfg, &k->req, j, i, &k->pos[i], k->id, k->created, &k->out, &k->out_len,
                                       &k->out_cap);
            all_done &= j->done && k->pos[i].final_sent;
            pthread_mutex_unlock(&j->mu);
        }
        if (all_done) {
            srv_stream_close(k->srv->cfg, &k->req, k->jobs, k->n_jobs, k->id, k->created, &k->out, &k->out_len, &k->out_cap);
            k->closed = 1;
            break;
        }
        if (added) break;
        if (client_gone(k->conn)) return MHD_CONTENT_READER_END_WITH_ERROR;
        /* nothing new: wait on the first unfinished job a little */
        for (int i = 0; i < k->n_jobs; i++) {
            srv_job *j = k->jobs[i];
            pthread_mutex_lock(&j->mu);
            if (!j->done) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 20 * 1000000L;
                if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
                pthread_cond_timedwait(&j->cv, &j->mu, &ts);
                pthread_mutex_unlock(&j->mu);
                break;
            }
            pthread_mutex_unlock(&j->mu);
        }
        if (now_s() - idle_since > 10) { /* a comment keeps proxies from timing the stream out */
            static const char ka[] = ": waiting for a slot\n\n";
            memcpy(buf, ka, sizeof ka - 1 < max ? sizeof ka - 1 : max);
            return (ssize_t)(sizeof ka - 1 < max ? sizeof ka - 1 : max);
        }
    }
    size_t n = k->out_len - k->out_sent;
    if (n > max) n = max;
    memcpy(buf, k->out + k->out_sent, n);
    k->out_sent += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) { call_free(cls); }

static enum MHD_Result handle_completion(srv_server *s, struct MHD_Connection *conn, int chat, const conn_ctx *cc) {
    call *k = calloc(1, sizeof *k);
    if (!k) return MHD_NO;
    k->srv = s, k->conn = conn;
    srv_error e;
    if (srv_parse_request(s->cfg, chat, cc->body ? cc->body : "", cc->len, &k->req, &e) < 0) {
        free(k);
        return send_srv_error(s, conn, -1, &e);
    }
    request_id(k->id, sizeof k->id, chat ? "chatcmpl-" : "cmpl-");
    k->created = (long)time(NULL);
    if (submit_jobs(k, &e) < 0) {
        const int prof = k->req.prof_index;
        call_free(k);
        return send_srv_error(s, conn, prof, &e);
    }
    if (k->req.stream) {
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, k, stream_free);
        if (!r) {
            call_free(k);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        MHD_add_response_header(r, "X-Accel-Buffering", "no");
        enum MHD_Result ok = MHD_queue_response(conn, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ok;
    }
    if (wait_all(k) < 0) { /* the client went away: free its slot now */
        const int prof = k->req.prof_index;
        call_free(k);
        srv_metrics_request(&s->metrics, prof, 499);
        return MHD_NO;
    }
    /* a job that failed before producing anything fails the request */
    for (int i = 0; i < k->n_jobs; i++)
        if (k->jobs[i]->http_status != 200) {
            e.status = k->jobs[i]->http_status;
            snprintf(e.message, sizeof e.message, "%s", k->jobs[i]->error);
            e.param[0] = 0;
            const int prof = k->req.prof_index;
            call_free(k);
            return send_srv_error(s, conn, prof, &e);
        }
    char *js = srv_response_json(s->cfg, &k->req, k->jobs, k->n_jobs, k->id, k->created);
    srv_metrics_request(&s->metrics, k->req.prof_index, 200);
    call_free(k);
    return send_json(conn, 200, js);
}

/* ---- small endpoints ---------------------------------------------------------------- */

static enum MHD_Result handle_models(srv_server *s, struct MHD_Connection *conn) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < s->cfg->n_profiles; i++) {
        const srv_profile *p = &s->cfg->profiles[i];
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "id", p->name);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", (double)s->created);
        cJSON_AddStringToObject(m, "owned_by", "duet");
        cJSON *d = cJSON_AddObjectToObject(m, "duet");
        static const char *kinds[] = {"plain", "speculative", "route", "cascade", "defer", "fusion"};
        cJSON_AddStringToObject(d, "strategy", kinds[p->kind]);
        cJSON_AddStringToObject(d, p->kind == SRV_SPEC ? "target" : p->kind >= SRV_ROUTE ? "llm" : "model",
                                s->cfg->models[p->model].name);
        if (p->kind == SRV_FUSE) {
            static const char *rules[] = {"mix", "poe", "cd", "proxy"};
            cJSON_AddStringToObject(d, "rule", rules[p->fuse.rule]);
            cJSON_AddStringToObject(d, "slm", s->cfg->models[p->draft].name);
            if (p->tuned >= 0) cJSON_AddStringToObject(d, "slm_tuned", s->cfg->models[p->tuned].name);
            if (p->fuse.rule == DUET_FUSE_MIX || p->fuse.rule == DUET_FUSE_POE)
                cJSON_AddNumberToObject(d, "weight", round(p->fuse.weight * 1e6) / 1e6);
            if (p->fuse.rule == DUET_FUSE_CD) {
                cJSON_AddNumberToObject(d, "alpha", round(p->fuse.alpha * 1e6) / 1e6);
                cJSON_AddNumberToObject(d, "beta", round(p->fuse.beta * 1e6) / 1e6);
            }
        } else if (p->kind >= SRV_ROUTE) {
            cJSON_AddStringToObject(d, "slm", s->cfg->models[p->draft].name);
            cJSON_AddNumberToObject(d, p->kind == SRV_ROUTE ? "llm_share" : p->kind == SRV_CASCADE ? "threshold" : "eta",
                                    p->param);
            if (p->parametric) {
                char pat[96];
                snprintf(pat, sizeof pat, "%s-%s", p->name, p->kind == SRV_ROUTE ? "<share>" : "<eta>");
                cJSON_AddStringToObject(d, "parametric", pat);
            }
        }
        if (p->kind == SRV_SPEC) {
            if (p->draft >= 0) cJSON_AddStringToObject(d, "draft", s->cfg->models[p->draft].name);
            cJSON_AddBoolToObject(d, "ngram", p->spec.use_ngram);
            cJSON_AddNumberToObject(d, "draft_max", p->spec.draft_max);
            cJSON_AddBoolToObject(d, "adaptive", p->spec.adaptive);
            char pat[96];
            snprintf(pat, sizeof pat, "%s-k<N>", p->name);
            cJSON_AddStringToObject(d, "parametric", pat);
        }
        cJSON_AddNumberToObject(d, "context", srv_profile_ctx(s->cfg, p));
        cJSON_AddItemToArray(data, m);
    }
    char *js = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return send_json(conn, 200, js);
}

static enum MHD_Result handle_health(srv_server *s, struct MHD_Connection *conn) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ok");
    pthread_mutex_lock(&s->metrics.mu);
    cJSON_AddNumberToObject(o, "slots_busy", s->metrics.active);
    pthread_mutex_unlock(&s->metrics.mu);
    cJSON_AddNumberToObject(o, "slots", s->cfg->slots);
    cJSON_AddNumberToObject(o, "queue", srv_sched_queue_depth(&s->sched));
    cJSON_AddStringToObject(o, "version", DUET_VERSION);
    char *js = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return send_json(conn, 200, js);
}

/* llama.cpp's shapes: {"content", "add_special", "with_pieces"} -> {"tokens"}. */
static enum MHD_Result handle_tokenize(srv_server *s, struct MHD_Connection *conn, const conn_ctx *cc) {
    srv_error pe;
    cJSON *in = srv_parse_json(cc->body ? cc->body : "", cc->len, &pe);
    if (!in) return send_srv_error(s, conn, -1, &pe);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(in, "content");
    const cJSON *special = in ? cJSON_GetObjectItemCaseSensitive(in, "add_special") : NULL;
    const cJSON *pieces = in ? cJSON_GetObjectItemCaseSensitive(in, "with_pieces") : NULL;
    if (!cJSON_IsObject(in) || !cJSON_IsString(content) || (special && !cJSON_IsBool(special)) || (pieces && !cJSON_IsBool(pieces))) {
        cJSON_Delete(in);
        return send_error(s, conn, -1, 400, "content", "expected {\"content\": string, \"add_special\": bool, \"with_pieces\": bool}");
    }
    const duet_vocab *v = s->cfg->models[0].vocab;
    int flags = cJSON_IsTrue(special) && duet_vocab_add_bos(v) ? DUET_TOK_ADD_BOS : 0;
    int32_t *ids = NULL;
    int n = duet_tokenize_alloc(v, content->valuestring, strlen(content->valuestring), flags, &ids);
    if (n < 0) {
        cJSON_Delete(in);
        return send_error(s, conn, -1, 400, "content", "the text could not be tokenized");
    }
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "tokens");
    for (int i = 0; i < n; i++) {
        if (cJSON_IsTrue(pieces)) {
            cJSON *t = cJSON_CreateObject();
            cJSON_AddNumberToObject(t, "id", ids[i]);
            char buf[256];
            int len = duet_token_to_piece(v, ids[i], buf, sizeof buf - 1, DUET_DETOK_SPECIAL);
            buf[len < 0 ? 0 : len < (int)sizeof buf - 1 ? len : (int)sizeof buf - 1] = 0;
            if (srv_utf8_valid(buf, strlen(buf))) cJSON_AddStringToObject(t, "piece", buf);
            else {
                cJSON *bytes = cJSON_AddArrayToObject(t, "piece");
                for (unsigned char *b = (unsigned char *)buf; *b; b++) cJSON_AddItemToArray(bytes, cJSON_CreateNumber(*b));
            }
            cJSON_AddItemToArray(arr, t);
        } else {
            cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids[i]));
        }
    }
    free(ids);
    cJSON_Delete(in);
    char *js = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    srv_metrics_request(&s->metrics, -1, 200);
    return send_json(conn, 200, js);
}

static enum MHD_Result handle_detokenize(srv_server *s, struct MHD_Connection *conn, const conn_ctx *cc) {
    srv_error pe;
    cJSON *in = srv_parse_json(cc->body ? cc->body : "", cc->len, &pe);
    if (!in) return send_srv_error(s, conn, -1, &pe);
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(in, "tokens");
    if (!cJSON_IsObject(in) || !cJSON_IsArray(toks)) {
        cJSON_Delete(in);
        return send_error(s, conn, -1, 400, "tokens", "expected {\"tokens\": [ids]}");
    }
    const duet_vocab *v = s->cfg->models[0].vocab;
    const int n = cJSON_GetArraySize(toks), nv = duet_vocab_n(v);
    int32_t *ids = malloc(sizeof *ids * (size_t)(n ? n : 1));
    int i = 0;
    for (const cJSON *t = toks->child; t && ids; t = t->next, i++) {
        if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble) || t->valuedouble < 0 || t->valuedouble >= nv) {
            free(ids);
            cJSON_Delete(in);
            return send_error(s, conn, -1, 400, "tokens", "tokens[%d] is not an id in [0, %d)", i, nv);
        }
        ids[i] = (int32_t)t->valuedouble;
    }
    cJSON_Delete(in);
    int64_t len = ids ? duet_detokenize(v, ids, n, NULL, 0, 0) : -1;
    char *text = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (text) duet_detokenize(v, ids, n, text, (size_t)len + 1, 0);
    free(ids);
    if (!text) return send_error(s, conn, -1, 500, "", "out of memory");
    /* raw bytes may end inside a character: make them valid UTF-8 for JSON */
    for (int64_t k = 0; k < len;) {
        int l = 1;
        while (l <= 4 && k + l <= len && !srv_utf8_valid(text + k, (size_t)l)) l++;
        if (l > 4 || k + l > len) text[k++] = '?';
        else k += l;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "content", text);
    free(text);
    char *js = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    srv_metrics_request(&s->metrics, -1, 200);
    return send_json(conn, 200, js);
}

/* ---- routing ------------------------------------------------------------------------ */

/* Constant-time comparison of the bearer token with the key. */
static int key_ok(const srv_config *c, struct MHD_Connection *conn) {
    if (!c->api_key[0]) return 1;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7)) return 0;
    const char *given = h + 7;
    const size_t lk = strlen(c->api_key), lg = strlen(given);
    unsigned diff = (unsigned)(lk ^ lg);
    for (size_t i = 0; i < lk; i++) diff |= (unsigned char)c->api_key[i] ^ (unsigned char)(i < lg ? given[i] : 0);
    return diff == 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    srv_server *s = cls;
    (void)version;
    conn_ctx *cc = *con_cls;
    if (!cc) {
        if (!(cc = calloc(1, sizeof *cc))) return MHD_NO;
        *con_cls = cc;
        return MHD_YES;
    }
    if (*upload_size) { /* more of the body */
        if (!cc->too_big && cc->len + *upload_size > s->cfg->body_limit) cc->too_big = 1;
        if (!cc->too_big) {
            if (cc->len + *upload_size + 1 > cc->cap) {
                size_t cap = (cc->len + *upload_size + 1) * 2;
                char *b = realloc(cc->body, cap);
                if (!b) return MHD_NO;
                cc->body = b, cc->cap = cap;
            }
            memcpy(cc->body + cc->len, upload, *upload_size);
            cc->len += *upload_size;
            cc->body[cc->len] = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    const int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (get && (!strcmp(url, "/") || !strcmp(url, "/index.html"))) {
        char *page = malloc(duet_playground_html_len);
        if (!page) return MHD_NO;
        memcpy(page, duet_playground_html, duet_playground_html_len);
        return send_body(conn, 200, "text/html; charset=utf-8", page, duet_playground_html_len, 0);
    }
    if (get && !strcmp(url, "/health")) return handle_health(s, conn);
    if (!key_ok(s->cfg, conn))
        return send_error(s, conn, -1, 401, "", "a valid API key is required (Authorization: Bearer KEY)");
    if (cc->too_big)
        return send_error(s, conn, -1, 413, "", "the request body exceeds the limit of %zu bytes", s->cfg->body_limit);
    if (get && (!strcmp(url, "/v1/models") || !strcmp(url, "/models"))) return handle_models(s, conn);
    if (get && !strcmp(url, "/metrics")) {
        char *t = srv_metrics_text(&s->metrics, s->cfg);
        return t ? send_body(conn, 200, "text/plain; version=0.0.4", t, strlen(t), 0) : MHD_NO;
    }
    if (post && (!strcmp(url, "/v1/completions") || !strcmp(url, "/completions")))
        return handle_completion(s, conn, 0, cc);
    if (post && (!strcmp(url, "/v1/chat/completions") || !strcmp(url, "/chat/completions")))
        return handle_completion(s, conn, 1, cc);
    if (post && !strcmp(url, "/tokenize")) return handle_tokenize(s, conn, cc);
    if (post && !strcmp(url, "/detokenize")) return handle_detokenize(s, conn, cc);
    const int known = !strcmp(url, "/v1/completions") || !strcmp(url, "/v1/chat/completions") ||
                      !strcmp(url, "/tokenize") || !strcmp(url, "/detokenize") || !strcmp(url, "/v1/models") ||
                      !strcmp(url, "/metrics");
    if (known) return send_error(s, conn, -1, 405, "", "%s does not take %s", url, method);
    return send_error(s, conn, -1, 404, "", "no endpoint %s %s", method, url);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)conn, (void)toe;
    conn_ctx *cc = *con_cls;
    if (cc) free(cc->body), free(cc);
    *con_cls = NULL;
}

int srv_server_start(srv_server **out, srv_config *c, int *port_out, duet_err *err) {
    *out = NULL;
    srv_server *s = calloc(1, sizeof *s);
    if (!s) return duet_err_set(err, DUET_ENOMEM, "serve: out of memory");
    s->cfg = c;
    s->created = (long)time(NULL);
    srv_metrics_init(&s->metrics);
    int rc = srv_sched_start(&s->sched, c, &s->metrics, err);
    if (rc < 0) {
        srv_sched_stop(&s->sched);
        free(s);
        return rc;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
    if (inet_pton(AF_INET, c->host, &addr.sin_addr) != 1) {
        srv_sched_stop(&s->sched);
        free(s);
        return duet_err_set(err, DUET_EINVAL, "serve: --host '%s' is not an IPv4 address", c->host);
    }
    s->daemon = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
                                 (uint16_t)c->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &addr,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_LIMIT,
                                 (unsigned)(c->slots + c->queue + 64), MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                                 MHD_OPTION_END);
    if (!s->daemon) {
        srv_sched_stop(&s->sched);
        free(s);
        return duet_err_set(err, DUET_EIO, "serve: cannot listen on %s:%d (in use?)", c->host, c->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    *port_out = di ? di->port : c->port;
    *out = s;
    return 0;
}

void srv_server_stop(srv_server *s) {
    if (!s) return;
    /* the scheduler first: it ends every job (503), so the connection
     * threads waiting on them finish and the daemon can stop */
    srv_sched_stop(&s->sched);
    MHD_stop_daemon(s->daemon);
    free(s);
}

size_t srv_server_kv_bytes(const srv_server *s) { return s->sched.kv_bytes; }

/* duet serve over real HTTP (libcurl), as a client sees it: every endpoint;
 * streamed and whole answers agree at temperature 0; speculative profiles
 * give exactly the llm's greedy text; echo + logprobs equal the log-softmax
 * of `duet logits`; 8 concurrent requests of mixed profiles each give their
 * solo text; a client that leaves frees its slot (499); every error with its
 * status and an OpenAI error object naming the field; stop strings, n with a
 * seed, prompt arrays and token ids, stream_options.include_usage, per-token
 * provenance; and the malformed-request corpus of tests/data/server_requests/
 * (README.md there) replayed with /health checked after each.
 *
 * Each test starts its own server (tests/server_util.h: loopback, port 0,
 * killed at the end even when the test fails). */
#define _GNU_SOURCE /* strcasestr */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_util.h"
#include "testutil.h"

#define CORPUS DUET_SRC_DIR "/tests/data/server_requests"

static su_server srv;

static void setup(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }
static void teardown(void) { su_kill_all(); }

TestSuite(server, .init = setup, .fini = teardown, .timeout = 300);

/* Generation lengths: the sanitizer build (a Debug server under ASan, ~30x
 * slower) runs the same cases on shorter texts. */
#define TOK(n) (SANITIZED ? ((n) + 2) / 3 : (n))

/* ---- HTTP ------------------------------------------------------------------------- */

typedef struct {
    long status;
    char *body;
    size_t len;
    char *hdr;
    size_t hlen;
    int curl_rc;
} hres;

typedef struct {
    char *p;
    size_t len, cap;
    long abort_after; /* > 0: stop the transfer (close the socket) once this many bytes came */
} buf;

static size_t on_bytes(char *p, size_t sz, size_t n, void *u) {
    buf *b = u;
    const size_t k = sz * n;
    if (b->len + k + 1 > b->cap) {
        b->cap = (b->len + k + 1) * 2;
        b->p = realloc(b->p, b->cap);
        cr_assert(b->p);
    }
    memcpy(b->p + b->len, p, k);
    b->len += k;
    b->p[b->len] = 0;
    if (b->abort_after > 0 && (long)b->len >= b->abort_after) return 0;
    return k;
}

static void hres_free(hres *r) {
    free(r->body), free(r->hdr);
    memset(r, 0, sizeof *r);
}

/* One request on a fresh connection. body: NULL for none; len < 0: strlen.
 * key: the bearer token or NULL. abort_after, timeout_ms: for the disconnect tests. */
static hres http_ex(const su_server *s, const char *method, const char *path, const char *body, long len,
                    const char *key, long abort_after, long timeout_ms) {
    hres r = {0};
    buf b = {.abort_after = abort_after}, h = {0};
    char url[512];
    snprintf(url, sizeof url, "%s%s", s->base, path);
    CURL *c = curl_easy_init();
    cr_assert(c);
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
    hl = curl_slist_append(hl, "Expect:");
    char auth[512];
    if (key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        hl = curl_slist_append(hl, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 120000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_bytes);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_bytes);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(len < 0 ? (long)strlen(body) : len));
    } else if (!strcmp(method, "GET")) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    r.curl_rc = (int)curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hl);
    r.body = b.p ? b.p : strdup("");
    r.len = b.len;
    r.hdr = h.p ? h.p : strdup("");
    r.hlen = h.len;
    return r;
}

static hres http(const su_server *s, const char *method, const char *path, const char *body) {
    hres r = http_ex(s, method, path, body, -1, NULL, 0, 0);
    cr_assert_eq(r.curl_rc, CURLE_OK, "%s %s: curl error %d (%s)", method, path, r.curl_rc,
                 curl_easy_strerror((CURLcode)r.curl_rc));
    return r;
}

static cJSON *parse(const hres *r) {
    cJSON *o = cJSON_ParseWithLength(r->body, r->len);
    cr_assert(o, "not JSON (HTTP %ld): %.400s", r->status, r->body);
    return o;
}

/* POST path with a cJSON body (deleted); the 200 response parsed. */
static cJSON *post_ok(const su_server *s, const char *path, cJSON *body) {
    char *b = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    hres r = http(s, "POST", path, b);
    cr_assert_eq(r.status, 200, "POST %s %s -> %ld: %.600s", path, b, r.status, r.body);
    cJSON *o = parse(&r);
    free(b);
    hres_free(&r);
    return o;
}

static const char *str_at(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const cJSON *choice(const cJSON *resp, int i) {
    const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(resp, "choices"), i);
    cr_assert(c, "no choices[%d]", i);
    return c;
}

/* The text of choices[i] (completion "text" or chat "message.content"), strdup'd. */
static char *choice_text(const cJSON *resp, int i) {
    const cJSON *c = choice(resp, i);
    const char *t = str_at(c, "text");
    if (!t) t = str_at(cJSON_GetObjectItemCaseSensitive(c, "message"), "content");
    cr_assert(t, "choices[%d] has no text", i);
    return strdup(t);
}

/* A request body: {"model", "prompt" or chat "messages", "max_tokens", "temperature": 0} + more. */
static cJSON *body_for(const char *model, int chat, const char *prompt, int max_tokens) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", model);
    if (chat) {
        cJSON *m = cJSON_AddArrayToObject(o, "messages"), *u = cJSON_CreateObject();
        cJSON_AddStringToObject(u, "role", "user");
        cJSON_AddStringToObject(u, "content", prompt);
        cJSON_AddItemToArray(m, u);
    } else {
        cJSON_AddStringToObject(o, "prompt", prompt);
    }
    cJSON_AddNumberToObject(o, "max_tokens", max_tokens);
    cJSON_AddNumberToObject(o, "temperature", 0);
    return o;
}

static char *greedy(const su_server *s, const char *model, int chat, const char *prompt, int max_tokens) {
    cJSON *o = post_ok(s, chat ? "/v1/chat/completions" : "/v1/completions", body_for(model, chat, prompt, max_tokens));
    char *t = choice_text(o, 0);
    cJSON_Delete(o);
    return t;
}

/* ---- server-sent events --------------------------------------------------------------- */

typedef struct {
    cJSON *ev[4096];
    int n;
    int done;    /* [DONE] was the last event */
} sse;

static void sse_parse(const hres *r, sse *out) {
    memset(out, 0, sizeof *out);
    cr_assert(strstr(r->hdr, "text/event-stream"), "a stream answers text/event-stream: %s", r->hdr);
    const char *p = r->body;
    while (*p) {
        const char *end = strstr(p, "\n\n");
        cr_assert(end, "an event without its blank line: %.200s", p);
        if (!strncmp(p, "data: ", 6)) {
            cr_assert(!out->done, "an event after [DONE]: %.200s", p);
            if (!strncmp(p + 6, "[DONE]\n\n", 8)) {
                out->done = 1;
            } else {
                cr_assert(out->n < 4096);
                cJSON *o = cJSON_ParseWithLength(p + 6, (size_t)(end - p - 6));
                cr_assert(o, "an event is not JSON: %.200s", p);
                out->ev[out->n++] = o;
            }
        } else {
            cr_assert(p[0] == ':', "not an SSE data or comment line: %.200s", p);
        }
        p = end + 2;
    }
    cr_assert(out->done, "the stream did not end with [DONE]: %.300s", r->body);
}

static void sse_free(sse *s) {
    for (int i = 0; i < s->n; i++) cJSON_Delete(s->ev[i]);
    s->n = 0;
}

/* The streamed text of choice `index` and its finish reason (strdup'd, or NULL). */
static char *sse_text(const sse *s, int index, char **finish) {
    size_t cap = 1024, len = 0;
    char *t = calloc(1, cap);
    if (finish) *finish = NULL;
    for (int e = 0; e < s->n; e++) {
        const cJSON *ch;
        cJSON_ArrayForEach(ch, cJSON_GetObjectItemCaseSensitive(s->ev[e], "choices")) {
            const cJSON *ix = cJSON_GetObjectItemCaseSensitive(ch, "index");
            cr_assert(cJSON_IsNumber(ix), "a chunk's choice without its index");
            if (ix->valueint != index) continue;
            const char *piece = str_at(ch, "text");
            if (!piece) piece = str_at(cJSON_GetObjectItemCaseSensitive(ch, "delta"), "content");
            if (piece) {
                const size_t k = strlen(piece);
                if (len + k + 1 > cap) cap = (len + k + 1) * 2, t = realloc(t, cap);
                memcpy(t + len, piece, k + 1);
                len += k;
            }
            const char *f = str_at(ch, "finish_reason");
            if (f && finish) {
                cr_assert(!*finish, "two chunks with a finish_reason for choice %d", index);
                *finish = strdup(f);
            }
        }
    }
    return t;
}

static hres post_stream(const su_server *s, const char *path, cJSON *body, sse *out) {
    cJSON_AddBoolToObject(body, "stream", 1);
    char *b = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    hres r = http(s, "POST", path, b);
    cr_assert_eq(r.status, 200, "POST %s %s -> %ld: %.600s", path, b, r.status, r.body);
    free(b);
    sse_parse(&r, out);
    return r;
}

/* ---- metrics ---------------------------------------------------------------------------- */

/* The value of the metric line that starts with `name` (exactly, then a space); -1 if absent. */
static double metric(const su_server *s, const char *name) {
    hres r = http(s, "GET", "/metrics", NULL);
    cr_assert_eq(r.status, 200);
    double v = -1;
    const size_t n = strlen(name);
    for (const char *l = r.body; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
        if (!strncmp(l, name, n) && l[n] == ' ') {
            v = atof(l + n + 1);
            break;
        }
    hres_free(&r);
    return v;
}

/* ---- errors ------------------------------------------------------------------------------- */

/* 1 if s[0..n) is valid UTF-8 (what a strict client's JSON decoder requires). */
static int utf8_ok(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        const unsigned c = s[i];
        const size_t k = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!k || i + k > n) return 0;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return 0;
        if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] >= 0xA0) || (c == 0xF0 && s[i + 1] < 0x90) ||
            (c == 0xF4 && s[i + 1] >= 0x90))
            return 0;
        i += k;
    }
    return 1;
}

/* An OpenAI error object: {"error": {"message", "type", "param", "code"}} with this status and
 * param (NULL: param is null). */
static void check_error(const hres *r, long status, const char *param, const char *what) {
    cr_assert_eq(r->status, status, "%s: HTTP %ld, expected %ld: %.400s", what, r->status, status, r->body);
    cr_assert(strstr(r->hdr, "application/json"), "%s: an error is JSON: %s", what, r->hdr);
    cr_assert(utf8_ok((const unsigned char *)r->body, r->len), "%s: the error is not valid UTF-8: %s", what, r->body);
    cJSON *o = parse(r);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
    cr_assert(cJSON_IsObject(e), "%s: no error object: %s", what, r->body);
    const char *msg = str_at(e, "message"), *type = str_at(e, "type");
    cr_assert(msg && msg[0], "%s: error.message: %s", what, r->body);
    cr_assert(type && type[0], "%s: error.type: %s", what, r->body);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(e, "param"), *code = cJSON_GetObjectItemCaseSensitive(e, "code");
    cr_assert(p && code, "%s: error.param and error.code must both be present: %s", what, r->body);
    if (param) cr_assert(cJSON_IsString(p) && !strcmp(p->valuestring, param), "%s: param should be '%s': %s", what, param, r->body);
    else cr_assert(cJSON_IsNull(p), "%s: param should be null: %s", what, r->body);
    cr_assert(cJSON_IsNumber(code) && code->valueint == status, "%s: error.code: %s", what, r->body);
    cJSON_Delete(o);
}

static void expect_error(const su_server *s, const char *method, const char *path, const char *body, long status,
                         const char *param) {
    hres r = http(s, method, path, body);
    char what[700];
    snprintf(what, sizeof what, "%s %s %.600s", method, path, body ? body : "");
    check_error(&r, status, param, what);
    hres_free(&r);
}

/* =================================================================================================== */

Test(server, every_endpoint) {
    su_start(&srv, NULL);
    hres r = http(&srv, "GET", "/health", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cJSON *o = parse(&r);
    cr_assert_str_eq(str_at(o, "status"), "ok");
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(o, "slots")->valueint, 4);
    cJSON_Delete(o), hres_free(&r);

    r = http(&srv, "GET", "/v1/models", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    o = parse(&r);
    cr_assert_str_eq(str_at(o, "object"), "list");
    const char *want[] = {"llm", "slm", "duet-spec", "duet-spec-ngram"};
    for (int i = 0; i < 4; i++) {
        int found = 0;
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(o, "data")) {
            if (str_at(m, "id") && !strcmp(str_at(m, "id"), want[i])) {
                found = 1;
                cr_assert_str_eq(str_at(m, "object"), "model");
            }
        }
        cr_assert(found, "/v1/models lists %s: %s", want[i], r.body);
    }
    cJSON_Delete(o), hres_free(&r);

    r = http(&srv, "GET", "/", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.hdr, "text/html"), "%s", r.hdr);
    cr_assert(strstr(r.body, "<html") || strstr(r.body, "<!DOCTYPE") || strstr(r.body, "<!doctype"), "%.200s", r.body);
    hres_free(&r);

    /* /tokenize and /detokenize round trip */
    o = post_ok(&srv, "/tokenize", cJSON_Parse("{\"content\": \"once upon a time, a cat\"}"));
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(o, "tokens");
    cr_assert(cJSON_IsArray(toks) && cJSON_GetArraySize(toks) >= 4, "tokens: %s", cJSON_PrintUnformatted(o));
    cJSON *d = cJSON_CreateObject();
    cJSON_AddItemToObject(d, "tokens", cJSON_Duplicate(toks, 1));
    cJSON_Delete(o);
    o = post_ok(&srv, "/detokenize", d);
    cr_assert_str_eq(str_at(o, "content"), "once upon a time, a cat");
    cJSON_Delete(o);
    o = post_ok(&srv, "/tokenize", cJSON_Parse("{\"content\": \"a cat\", \"with_pieces\": true}"));
    const cJSON *t0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "tokens"), 0);
    cr_assert(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(t0, "id")) && str_at(t0, "piece"), "with_pieces");
    cJSON_Delete(o);

    /* completions and chat */
    o = post_ok(&srv, "/v1/completions", body_for("llm", 0, "once upon a time", 8));
    cr_assert_str_eq(str_at(o, "object"), "text_completion");
    cr_assert_str_eq(str_at(o, "model"), "llm");
    cr_assert(str_at(o, "id") && !strncmp(str_at(o, "id"), "cmpl-", 5));
    cr_assert(strlen(str_at(choice(o, 0), "text")) > 0);
    cr_assert_str_eq(str_at(choice(o, 0), "finish_reason"), "length");
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(o, "usage");
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(u, "completion_tokens")->valueint, 8);
    cr_assert(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(o, "duet")), "the accounting object");
    cJSON_Delete(o);
    o = post_ok(&srv, "/v1/chat/completions", body_for("duet-spec", 1, "tell me a story", 8));
    cr_assert_str_eq(str_at(o, "object"), "chat.completion");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(choice(o, 0), "message");
    cr_assert_str_eq(str_at(msg, "role"), "assistant");
    cr_assert(str_at(msg, "content"));
    cJSON_Delete(o);
    /* the aliases without /v1 */
    o = post_ok(&srv, "/completions", body_for("llm", 0, "once upon a time", 2));
    cJSON_Delete(o);

    /* /metrics counts what happened (the busy gauge is refreshed after each scheduler step: poll it) */
    for (const double t0 = su_now(); metric(&srv, "duet_slots_busy") != 0 && su_now() - t0 < 2;) usleep(5000);
    r = http(&srv, "GET", "/metrics", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.hdr, "text/plain"), "%s", r.hdr);
    cr_assert(strstr(r.body, "# TYPE duet_requests_total counter"), "%.300s", r.body);
    cr_assert(strstr(r.body, "duet_requests_total{profile=\"llm\",status=\"2xx\"} 2\n"), "%s", r.body);
    cr_assert(strstr(r.body, "duet_requests_total{profile=\"duet-spec\",status=\"2xx\"} 1\n"), "%s", r.body);
    cr_assert(strstr(r.body, "duet_slots_busy 0\n") && strstr(r.body, "duet_slots_total 4\n"), "%s", r.body);
    cr_assert(strstr(r.body, "duet_time_to_first_token_seconds_count 3\n"), "%s", r.body);
    hres_free(&r);
    su_stop(&srv);
}

/* Streamed and whole answers: the same text and finish reason, at temperature 0. */
Test(server, stream_equals_whole) {
    su_start(&srv, NULL);
    const char *profiles[] = {"llm", "duet-spec"};
    const char *prompts[] = {"once upon a time, there was a", "the little dog"};
    for (int p = 0; p < 2; p++)
        for (int chat = 0; chat < 2; chat++)
            for (int q = 0; q < 2; q++) {
                const char *path = chat ? "/v1/chat/completions" : "/v1/completions";
                cJSON *o = post_ok(&srv, path, body_for(profiles[p], chat, prompts[q], TOK(60)));
                char *whole = choice_text(o, 0);
                const char *fin = str_at(choice(o, 0), "finish_reason");
                char *whole_finish = strdup(fin ? fin : "");
                const int n_tok = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "usage"),
                                                                   "completion_tokens")->valueint;
                cJSON_Delete(o);
                sse s;
                hres r = post_stream(&srv, path, body_for(profiles[p], chat, prompts[q], TOK(60)), &s);
                char *finish;
                char *streamed = sse_text(&s, 0, &finish);
                cr_assert_str_eq(streamed, whole, "%s %s '%s': streamed text differs", profiles[p], path, prompts[q]);
                cr_assert(finish, "no finish_reason in the stream");
                cr_assert_str_eq(finish, whole_finish);
                cr_assert(n_tok > 0 && strlen(whole) > 0);
                for (int e = 0; e < s.n; e++) {
                    const char *obj = str_at(s.ev[e], "object");
                    cr_assert_str_eq(obj, chat ? "chat.completion.chunk" : "text_completion");
                    cr_assert_str_eq(str_at(s.ev[e], "model"), profiles[p]);
                }
                if (chat) { /* the first delta carries the role */
                    const cJSON *d = cJSON_GetObjectItemCaseSensitive(choice(s.ev[0], 0), "delta");
                    cr_assert_str_eq(str_at(d, "role"), "assistant");
                }
                free(streamed), free(finish), free(whole), free(whole_finish);
                sse_free(&s), hres_free(&r);
            }
    su_stop(&srv);
}

/* Speculative decoding is lossless: greedy text identical to the llm's. */
Test(server, speculative_greedy_equals_llm) {
    su_start(&srv, NULL);
    const char *prompts[] = {"once upon a time", "lily and her mom went to the park. they saw", "the sun was"};
    const char *profiles[] = {"duet-spec", "duet-spec-ngram", "duet-spec-k3", "duet-spec-ngram-k2"};
    const int n_prompts = SANITIZED ? 1 : 3, n_profiles = SANITIZED ? 2 : 4;
    for (int chat = 0; chat < 2; chat++)
        for (int q = 0; q < n_prompts; q++) {
            char *ref = greedy(&srv, "llm", chat, prompts[q], TOK(120));
            cr_assert(strlen(ref) > 20, "llm: '%s'", ref);
            for (int p = 0; p < n_profiles; p++) {
                char *t = greedy(&srv, profiles[p], chat, prompts[q], TOK(120));
                cr_assert_str_eq(t, ref, "%s (chat %d) '%s' differs from llm", profiles[p], chat, prompts[q]);
                free(t);
            }
            free(ref);
        }
    /* and the drafts did work */
    cr_assert(metric(&srv, "duet_draft_accepted_total") > 0);
    su_stop(&srv);
}

/* echo + logprobs + max_tokens 0 scores the prompt: the log-softmax of `duet logits` (in double). */
Test(server, echo_logprobs_equal_duet_logits) {
    su_start(&srv, NULL);
    const char *prompt = "once upon a time, there was a little girl named lily. she loved to play";
    cJSON *tk = post_ok(&srv, "/tokenize", cJSON_Parse("{\"content\": \"once upon a time, there was a little girl "
                                                       "named lily. she loved to play\"}"));
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(tk, "tokens");
    const int n = cJSON_GetArraySize(ids);
    cr_assert(n >= 10);
    char arg[4096] = "", *w = arg;
    const cJSON *v;
    cJSON_ArrayForEach(v, ids) w += sprintf(w, "%s%d", w == arg ? "" : " ", v->valueint);
    char out_path[] = "/tmp/duet_test_server_logits_XXXXXX";
    int fd = mkstemp(out_path);
    cr_assert(fd >= 0);
    close(fd);
    char cmd[8192], *cli = NULL;
    snprintf(cmd, sizeof cmd, "logits -m %s -t 1 --tokens \"%s\" -o %s 2>&1", SU_LLM, arg, out_path);
    int rc = tu_run_duet(cmd, &cli);
    cr_assert_eq(rc, 0, "duet %s: %s", cmd, cli);
    free(cli);
    size_t bytes = 0;
    float *logits = tu_slurp(out_path, &bytes);
    unlink(out_path);
    cr_assert(logits && bytes % ((size_t)n * sizeof(float)) == 0, "logits file of %zu bytes", bytes);
    const int nv = (int)(bytes / sizeof(float) / (size_t)n);
    cr_assert_eq(nv, 2048);
    /* log-softmax rows in double */
    double *lsm = malloc(sizeof *lsm * (size_t)n * nv);
    for (int i = 0; i < n; i++) {
        const float *row = logits + (size_t)i * nv;
        double mx = -INFINITY, s = 0;
        for (int k = 0; k < nv; k++) mx = fmax(mx, row[k]);
        for (int k = 0; k < nv; k++) s += exp((double)row[k] - mx);
        for (int k = 0; k < nv; k++) lsm[(size_t)i * nv + k] = (double)row[k] - mx - log(s);
    }

    for (int as_ids = 0; as_ids < 2; as_ids++) {
        cJSON *b = body_for("llm", 0, prompt, 0);
        if (as_ids) cJSON_ReplaceItemInObject(b, "prompt", cJSON_Duplicate(ids, 1));
        cJSON_AddBoolToObject(b, "echo", 1);
        cJSON_AddNumberToObject(b, "logprobs", 5);
        cJSON *o = post_ok(&srv, "/v1/completions", b);
        const cJSON *c = choice(o, 0);
        cr_assert_str_eq(str_at(c, "text"), prompt, "echo gives the prompt back");
        const cJSON *lp = cJSON_GetObjectItemCaseSensitive(c, "logprobs");
        const cJSON *tl = cJSON_GetObjectItemCaseSensitive(lp, "token_logprobs");
        const cJSON *top = cJSON_GetObjectItemCaseSensitive(lp, "top_logprobs");
        const cJSON *offs = cJSON_GetObjectItemCaseSensitive(lp, "text_offset");
        cr_assert_eq(cJSON_GetArraySize(tl), n, "one logprob per prompt token (max_tokens 0): %s", cJSON_PrintUnformatted(lp));
        cr_assert_eq(cJSON_GetArraySize(top), n);
        cr_assert_eq(cJSON_GetArraySize(offs), n);
        cr_assert(cJSON_IsNull(cJSON_GetArrayItem(tl, 0)), "the first token has no context: null");
        cr_assert_eq(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "usage"),
                                                      "completion_tokens")->valueint, 0);
        double worst = 0;
        for (int i = 1; i < n; i++) {
            const int id = cJSON_GetArrayItem(ids, i)->valueint;
            const double want = lsm[(size_t)(i - 1) * nv + id];
            const cJSON *got = cJSON_GetArrayItem(tl, i);
            cr_assert(cJSON_IsNumber(got), "token_logprobs[%d]", i);
            worst = fmax(worst, fabs(got->valuedouble - want));
            cr_assert(fabs(got->valuedouble - want) <= 1e-4, "token %d (id %d): server %.7f, duet logits %.7f", i, id,
                      got->valuedouble, want);
            /* the 5 alternatives: the 5 largest of the row */
            const cJSON *alts = cJSON_GetArrayItem(top, i);
            cr_assert(cJSON_IsObject(alts) && cJSON_GetArraySize(alts) >= 1 && cJSON_GetArraySize(alts) <= 5);
            double best[5];
            for (int k = 0; k < 5; k++) best[k] = -INFINITY;
            for (int t = 0; t < nv; t++) {
                double x = lsm[(size_t)(i - 1) * nv + t];
                for (int k = 0; k < 5; k++)
                    if (x > best[k]) {
                        for (int m = 4; m > k; m--) best[m] = best[m - 1];
                        best[k] = x;
                        break;
                    }
            }
            const cJSON *a;
            double prev = INFINITY;
            cJSON_ArrayForEach(a, alts) {
                int match = 0;
                for (int k = 0; k < 5; k++) match |= fabs(a->valuedouble - best[k]) <= 1e-4;
                cr_assert(match, "top_logprobs[%d]['%s'] = %.7f is not among the row's 5 best", i, a->string, a->valuedouble);
                cr_assert(a->valuedouble <= prev + 1e-6, "top_logprobs best first");
                prev = a->valuedouble;
            }
            cr_assert(fabs(cJSON_GetArrayItem(alts, 0)->valuedouble - best[0]) <= 1e-4, "the best alternative first");
        }
        cr_log_info("echo+logprobs (%s): %d tokens, worst |server - duet logits| = %.2e", as_ids ? "ids" : "text", n, worst);
        cJSON_Delete(o);
    }
    free(lsm), free(logits);
    cJSON_Delete(tk);
    su_stop(&srv);
}

/* ---- concurrency ------------------------------------------------------------------------------ */

typedef struct {
    const su_server *s;
    const char *model, *prompt;
    int chat, stream;
    char *text;
    long status;
} job;

static void *run_job(void *arg) {
    job *j = arg;
    cJSON *b = body_for(j->model, j->chat, j->prompt, TOK(48));
    if (j->stream) cJSON_AddBoolToObject(b, "stream", 1);
    cJSON_AddBoolToObject(b, "ignore_eos", 1);
    char *body = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    hres r = http_ex(j->s, "POST", j->chat ? "/v1/chat/completions" : "/v1/completions", body, -1, NULL, 0, 0);
    free(body);
    j->status = r.curl_rc == CURLE_OK ? r.status : -r.curl_rc;
    if (j->status == 200 && !j->stream) {
        cJSON *o = cJSON_ParseWithLength(r.body, r.len);
        const cJSON *c = o ? cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "choices"), 0) : NULL;
        const char *t = c ? str_at(c, "text") : NULL;
        if (c && !t) t = str_at(cJSON_GetObjectItemCaseSensitive(c, "message"), "content");
        j->text = t ? strdup(t) : NULL;
        cJSON_Delete(o);
    } else if (j->status == 200) {
        j->text = r.body, r.body = NULL; /* parsed on the main thread (Criterion asserts there) */
    }
    hres_free(&r);
    return NULL;
}

Test(server, eight_concurrent_requests_equal_their_solo_text) {
    su_start(&srv, "--slots 4");
    const char *models[8] = {"llm", "duet-spec", "duet-spec-ngram", "llm", "duet-spec", "duet-spec-ngram", "duet-spec-k2", "llm"};
    const char *prompts[8] = {"once upon a time", "the cat sat on", "lily wanted to", "one day, a boy named tim",
                              "the sun was hot and", "mom said", "there was a big tree", "a little bird"};
    job solo[8], con[8];
    for (int i = 0; i < 8; i++) {
        solo[i] = (job){.s = &srv, .model = models[i], .prompt = prompts[i], .chat = i == 5, .stream = i % 3 == 1};
        run_job(&solo[i]);
        cr_assert_eq(solo[i].status, 200, "solo request %d: %ld", i, solo[i].status);
        con[i] = solo[i];
        con[i].text = NULL;
    }
    pthread_t th[8];
    const double t0 = su_now();
    for (int i = 0; i < 8; i++) pthread_create(&th[i], NULL, run_job, &con[i]);
    for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
    cr_log_info("8 concurrent requests (%d tokens each) took %.2f s", TOK(48), su_now() - t0);
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(con[i].status, 200, "concurrent request %d: %ld", i, con[i].status);
        char *a = solo[i].text, *b = con[i].text;
        if (solo[i].stream) { /* the streamed bodies: compare their texts */
            hres ra = {.body = a, .len = strlen(a), .hdr = "text/event-stream"}, rb = {.body = b, .len = strlen(b), .hdr = "text/event-stream"};
            sse sa, sb;
            sse_parse(&ra, &sa);
            char *ta = sse_text(&sa, 0, NULL);
            sse_free(&sa);
            sse_parse(&rb, &sb);
            char *tb = sse_text(&sb, 0, NULL);
            sse_free(&sb);
            free(a), free(b);
            a = ta, b = tb;
        }
        cr_assert(a && b);
        cr_assert(strlen(a) > 0, "request %d: empty text", i);
        cr_assert_str_eq(b, a, "request %d (%s, '%s') differs when run with 7 others", i, models[i], prompts[i]);
        free(a), free(b);
    }
    su_stop(&srv);
}

/* ---- a client that goes away --------------------------------------------------------------------- */

Test(server, disconnect_frees_the_slot) {
    su_start(&srv, NULL);
    /* mid-stream: curl closes the socket after the first bytes of a 500-token stream */
    cJSON *b = body_for("llm", 0, "once upon a time", 500);
    cJSON_AddBoolToObject(b, "stream", 1);
    cJSON_AddBoolToObject(b, "ignore_eos", 1);
    char *body = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    hres r = http_ex(&srv, "POST", "/v1/completions", body, -1, NULL, 200, 0);
    cr_assert_eq(r.curl_rc, CURLE_WRITE_ERROR, "the transfer was cut by the client: %d", r.curl_rc);
    cr_assert(strstr(r.body, "data: "), "%s", r.body);
    hres_free(&r);
    const double t0 = su_now();
    while ((metric(&srv, "duet_slots_busy") != 0 ||
            metric(&srv, "duet_requests_total{profile=\"llm\",status=\"499\"}") != 1) &&
           su_now() - t0 < 5)
        usleep(10 * 1000);
    const double freed = su_now() - t0;
    cr_assert_eq(metric(&srv, "duet_slots_busy"), 0, "the slot is still busy %.1f s after the client left", freed);
    cr_assert_eq(metric(&srv, "duet_requests_total{profile=\"llm\",status=\"499\"}"), 1, "counted as 499");
    const double gen = metric(&srv, "duet_tokens_generated_total{model=\"llm\"}");
    cr_assert(gen >= 1 && gen < 400, "the request stopped early: %.0f tokens of 500", gen);
    cr_log_info("stream disconnect: slot free after %.3f s, %.0f of 500 tokens generated", freed, gen);

    /* while waiting for a whole answer: the client times out after 150 ms */
    r = http_ex(&srv, "POST", "/v1/completions", body, -1, NULL, 0, 150);
    cr_assert_eq(r.curl_rc, CURLE_OPERATION_TIMEDOUT, "%d", r.curl_rc);
    hres_free(&r);
    const double t1 = su_now();
    while ((metric(&srv, "duet_slots_busy") != 0 ||
            metric(&srv, "duet_requests_total{profile=\"llm\",status=\"499\"}") != 2) &&
           su_now() - t1 < 5)
        usleep(10 * 1000);
    cr_assert_eq(metric(&srv, "duet_slots_busy"), 0);
    cr_assert_eq(metric(&srv, "duet_requests_total{profile=\"llm\",status=\"499\"}"), 2);
    cr_log_info("whole-answer disconnect: slot free after %.3f s", su_now() - t1);
    free(body);
    /* and the server goes on */
    char *t = greedy(&srv, "llm", 0, "once upon a time", 4);
    cr_assert(strlen(t) > 0);
    free(t);
    su_stop(&srv);
}

/* ---- errors ------------------------------------------------------------------------------------- */

Test(server, errors_name_their_field) {
    su_start(&srv, NULL);
    const char *C = "/v1/completions", *H = "/v1/chat/completions";
    /* malformed JSON, not an object, invalid UTF-8 */
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\"", 400, NULL);
    expect_error(&srv, "POST", C, "", 400, NULL);
    expect_error(&srv, "POST", C, "[1, 2]", 400, NULL);
    expect_error(&srv, "POST", H, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}],}", 400, NULL);
    expect_error(&srv, "POST", C, "{\"prompt\": \"caf\xc3\x28\"}", 400, NULL);
    expect_error(&srv, "POST", H, "{\"messages\": [{\"role\": \"user\", \"content\": \"\xed\xa0\x80\"}]}", 400, NULL);
    /* wrong types */
    expect_error(&srv, "POST", C, "{\"prompt\": 5}", 400, "prompt");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"temperature\": \"hot\"}", 400, "temperature");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"max_tokens\": \"10\"}", 400, "max_tokens");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"max_tokens\": 1.5}", 400, "max_tokens");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"stream\": \"yes\"}", 400, "stream");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"model\": 7}", 400, "model");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"stop\": 5}", 400, "stop");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"seed\": \"x\"}", 400, "seed");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"echo\": 1}", 400, "echo");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"n\": \"2\"}", 400, "n");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"top_k\": -1}", 400, "top_k");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"stream_options\": true}", 400, "stream_options");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"stream_options\": {\"include_usage\": 1}}", 400, "include_usage");
    expect_error(&srv, "POST", H, "{\"messages\": \"hi\"}", 400, "messages");
    expect_error(&srv, "POST", H, "{\"messages\": [{\"role\": \"wizard\", \"content\": \"hi\"}]}", 400, "messages");
    expect_error(&srv, "POST", H, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"logprobs\": 3}", 400, "logprobs");
    expect_error(&srv, "POST", C, "{}", 400, "prompt");
    expect_error(&srv, "POST", H, "{}", 400, "messages");
    /* out of range */
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"temperature\": 5}", 400, "temperature");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"temperature\": -0.1}", 400, "temperature");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"top_p\": 0}", 400, "top_p");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"top_p\": 1.5}", 400, "top_p");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"n\": 0}", 400, "n");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"n\": 17}", 400, "n");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"logprobs\": 50}", 400, "logprobs");
    expect_error(&srv, "POST", H, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"logprobs\": true, "
                                  "\"top_logprobs\": 50}", 400, "top_logprobs");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"frequency_penalty\": 3}", 400, "frequency_penalty");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"min_p\": 2}", 400, "min_p");
    expect_error(&srv, "POST", C, "{\"prompt\": [99999]}", 400, "prompt");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"model\": \"duet-spec\", \"presence_penalty\": 1}", 400,
                 "presence_penalty");
    /* context: max_tokens beyond it, a prompt longer than it (the llm's context is 512) */
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"max_tokens\": 600}", 400, "max_tokens");
    expect_error(&srv, "POST", H, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_completion_tokens\": 100000}",
                 400, "max_completion_tokens");
    {
        char big[8192] = "{\"prompt\": [";
        for (int i = 0; i < 600; i++) sprintf(big + strlen(big), "%s%d", i ? "," : "", 300 + i % 100);
        strcat(big, "], \"max_tokens\": 1}");
        expect_error(&srv, "POST", C, big, 400, "prompt");
        char words[8192] = "{\"prompt\": \"";
        for (int i = 0; i < 700; i++) strcat(words, "cat ");
        strcat(words, "\"}");
        expect_error(&srv, "POST", C, words, 400, "prompt");
        char chat[8192] = "{\"messages\": [{\"role\": \"user\", \"content\": \"";
        for (int i = 0; i < 700; i++) strcat(chat, "dog ");
        strcat(chat, "\"}]}");
        expect_error(&srv, "POST", H, chat, 400, "messages");
    }
    /* unknown model: 404 naming what the server has */
    hres r = http(&srv, "POST", C, "{\"prompt\": \"hi\", \"model\": \"gpt-4o\"}");
    check_error(&r, 404, "model", "unknown model");
    cr_assert(strstr(r.body, "gpt-4o") && strstr(r.body, "llm") && strstr(r.body, "duet-spec") &&
                  strstr(r.body, "duet-spec-ngram") && strstr(r.body, "slm"),
              "the 404 lists the known models: %s", r.body);
    hres_free(&r);
    expect_error(&srv, "POST", H, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"model\": \"duet-spec-k0\"}",
                 404, "model");
    expect_error(&srv, "POST", C, "{\"prompt\": \"hi\", \"model\": \"llm-k4\"}", 404, "model");
    /* endpoints and methods */
    expect_error(&srv, "GET", "/v1/nothing", NULL, 404, NULL);
    expect_error(&srv, "POST", "/v1/embeddings", "{}", 404, NULL);
    expect_error(&srv, "GET", C, NULL, 405, NULL);
    expect_error(&srv, "DELETE", H, NULL, 405, NULL);
    expect_error(&srv, "PUT", "/tokenize", "{}", 405, NULL);
    expect_error(&srv, "POST", "/v1/models", "{}", 405, NULL);
    /* the small endpoints */
    expect_error(&srv, "POST", "/tokenize", "{\"content\": 5}", 400, "content");
    expect_error(&srv, "POST", "/detokenize", "{\"tokens\": [1, -1]}", 400, "tokens");
    expect_error(&srv, "POST", "/detokenize", "{\"tokens\": \"abc\"}", 400, "tokens");
    /* every 4xx was counted, and the server is fine */
    cr_assert(metric(&srv, "duet_requests_total{profile=\"none\",status=\"4xx\"}") >= 50);
    char *t = greedy(&srv, "llm", 0, "hi", 3);
    free(t);
    su_stop(&srv);
}

Test(server, api_key) {
    su_start(&srv, "--api-key sekrit-42");
    const char *body = "{\"prompt\": \"hi\", \"max_tokens\": 2}";
    hres r = http_ex(&srv, "POST", "/v1/completions", body, -1, NULL, 0, 0);
    check_error(&r, 401, NULL, "no key");
    cr_assert(strstr(r.body, "authentication_error"), "%s", r.body);
    hres_free(&r);
    r = http_ex(&srv, "POST", "/v1/completions", body, -1, "sekrit-43", 0, 0);
    check_error(&r, 401, NULL, "wrong key");
    hres_free(&r);
    r = http_ex(&srv, "POST", "/v1/completions", body, -1, "sekrit-4", 0, 0);
    check_error(&r, 401, NULL, "a prefix of the key");
    hres_free(&r);
    r = http_ex(&srv, "GET", "/v1/models", NULL, -1, NULL, 0, 0);
    check_error(&r, 401, NULL, "models without a key");
    hres_free(&r);
    r = http_ex(&srv, "GET", "/metrics", NULL, -1, "nope", 0, 0);
    check_error(&r, 401, NULL, "metrics with a wrong key");
    hres_free(&r);
    r = http_ex(&srv, "POST", "/v1/completions", body, -1, "sekrit-42", 0, 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    hres_free(&r);
    r = http_ex(&srv, "GET", "/v1/models", NULL, -1, "sekrit-42", 0, 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    hres_free(&r);
    r = http_ex(&srv, "GET", "/health", NULL, -1, NULL, 0, 0); /* a load balancer's probe needs no key */
    cr_assert_eq(r.status, 200);
    hres_free(&r);
    su_stop(&srv);
}

Test(server, body_limit) {
    su_start(&srv, "--body-limit 1");
    char big[3000] = "{\"prompt\": \"";
    for (int i = 0; i < 500; i++) strcat(big, "cat ");
    strcat(big, "\", \"max_tokens\": 1}");
    cr_assert(strlen(big) > 1024);
    expect_error(&srv, "POST", "/v1/completions", big, 413, NULL);
    expect_error(&srv, "POST", "/tokenize", big, 413, NULL);
    /* under the limit is fine */
    char *t = greedy(&srv, "llm", 0, "cat cat cat", 2);
    free(t);
    cr_assert_eq(metric(&srv, "duet_requests_total{profile=\"none\",status=\"413\"}"), 2);
    su_stop(&srv);
}

/* --slots 1 --queue 1: of 6 long requests at once, one runs, one waits, the rest get 503 with Retry-After. */
typedef struct {
    const su_server *s;
    hres r;
} flood;

#define FLOOD_TOKENS TOK(300)

static void *run_flood(void *arg) {
    flood *f = arg;
    char body[256];
    snprintf(body, sizeof body, "{\"model\": \"llm\", \"prompt\": \"once upon a time\", \"max_tokens\": %d, "
             "\"ignore_eos\": true, \"temperature\": 0}", FLOOD_TOKENS);
    f->r = http_ex(f->s, "POST", "/v1/completions", body, -1, NULL, 0, 0);
    return NULL;
}

Test(server, full_queue_is_503_with_retry_after) {
    su_start(&srv, "--slots 1 --queue 1");
    flood f[6];
    pthread_t th[6];
    for (int i = 0; i < 6; i++) f[i] = (flood){.s = &srv}, pthread_create(&th[i], NULL, run_flood, &f[i]);
    for (int i = 0; i < 6; i++) pthread_join(th[i], NULL);
    int ok = 0, busy = 0;
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(f[i].r.curl_rc, CURLE_OK, "request %d: curl %d", i, f[i].r.curl_rc);
        if (f[i].r.status == 200) {
            ok++;
            cJSON *o = parse(&f[i].r);
            cr_assert_eq(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "usage"),
                                                          "completion_tokens")->valueint, FLOOD_TOKENS);
            cJSON_Delete(o);
        } else {
            busy++;
            check_error(&f[i].r, 503, NULL, "full queue");
            cr_assert(strcasestr(f[i].r.hdr, "\nRetry-After: "), "503 without Retry-After: %s", f[i].r.hdr);
        }
        hres_free(&f[i].r);
    }
    cr_assert(ok >= 2 && busy >= 1, "%d answered, %d turned away", ok, busy);
    cr_assert_eq(metric(&srv, "duet_requests_total{profile=\"llm\",status=\"503\"}"), busy);
    cr_log_info("flood of 6 on 1 slot + queue 1: %d answered, %d got 503", ok, busy);
    /* once drained the server answers again */
    char *t = greedy(&srv, "llm", 0, "hi", 2);
    free(t);
    su_stop(&srv);
}

/* ---- request features ------------------------------------------------------------------------------ */

Test(server, stop_strings) {
    su_start(&srv, NULL);
    for (int chat = 0; chat < 2; chat++) {
        const char *model = chat ? "duet-spec" : "llm";
        char *full = greedy(&srv, model, chat, "once upon a time, there was a little girl", TOK(80));
        /* stop at a piece of text that is in the middle of the answer */
        const size_t L = strlen(full);
        cr_assert(L > 40, "%s", full);
        char stop[8];
        size_t at = L / 2;
        while (at < L && full[at] != ' ') at++;
        cr_assert(at + 5 < L, "%s", full);
        memcpy(stop, full + at, 5), stop[5] = 0;
        const size_t first = (size_t)(strstr(full, stop) - full);
        for (int stream = 0; stream < 2; stream++) {
            cJSON *b = body_for(model, chat, "once upon a time, there was a little girl", TOK(80));
            cJSON *arr = cJSON_AddArrayToObject(b, "stop");
            cJSON_AddItemToArray(arr, cJSON_CreateString("zzzq"));
            cJSON_AddItemToArray(arr, cJSON_CreateString(stop));
            char *text, *finish;
            if (stream) {
                sse s;
                hres r = post_stream(&srv, chat ? "/v1/chat/completions" : "/v1/completions", b, &s);
                text = sse_text(&s, 0, &finish);
                sse_free(&s), hres_free(&r);
            } else {
                cJSON *o = post_ok(&srv, chat ? "/v1/chat/completions" : "/v1/completions", b);
                text = choice_text(o, 0);
                finish = strdup(str_at(choice(o, 0), "finish_reason"));
                cJSON_Delete(o);
            }
            cr_assert_eq(strlen(text), first, "stop '%s' (chat %d, stream %d): '%s' of '%s'", stop, chat, stream, text, full);
            cr_assert(!strncmp(text, full, first), "the text before the stop string is kept");
            cr_assert_str_eq(finish, "stop");
            free(text), free(finish);
        }
        free(full);
    }
    su_stop(&srv);
}

Test(server, n_with_seed) {
    su_start(&srv, NULL);
    char *texts[2][2];
    for (int rep = 0; rep < 2; rep++) {
        cJSON *b = body_for("llm", 0, "once upon a time", TOK(32));
        cJSON_ReplaceItemInObject(b, "temperature", cJSON_CreateNumber(1.0));
        cJSON_AddNumberToObject(b, "n", 2);
        cJSON_AddNumberToObject(b, "seed", 1234);
        cJSON_AddBoolToObject(b, "ignore_eos", 1);
        cJSON *o = post_ok(&srv, "/v1/completions", b);
        cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "choices")), 2);
        for (int i = 0; i < 2; i++) {
            cr_assert_eq(cJSON_GetObjectItemCaseSensitive(choice(o, i), "index")->valueint, i);
            texts[rep][i] = choice_text(o, i);
        }
        cr_assert_eq(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "usage"),
                                                      "completion_tokens")->valueint, 2 * TOK(32));
        cJSON_Delete(o);
    }
    cr_assert_str_eq(texts[0][0], texts[1][0], "the same seed gives the same choices");
    cr_assert_str_eq(texts[0][1], texts[1][1]);
    cr_assert_str_neq(texts[0][0], texts[0][1], "the two choices sample apart");
    /* streamed with n=2: the same two texts */
    cJSON *b = body_for("llm", 0, "once upon a time", TOK(32));
    cJSON_ReplaceItemInObject(b, "temperature", cJSON_CreateNumber(1.0));
    cJSON_AddNumberToObject(b, "n", 2);
    cJSON_AddNumberToObject(b, "seed", 1234);
    cJSON_AddBoolToObject(b, "ignore_eos", 1);
    sse s;
    hres r = post_stream(&srv, "/v1/completions", b, &s);
    for (int i = 0; i < 2; i++) {
        char *t = sse_text(&s, i, NULL);
        cr_assert_str_eq(t, texts[0][i], "streamed choice %d", i);
        free(t);
    }
    sse_free(&s), hres_free(&r);
    for (int i = 0; i < 4; i++) free(texts[i / 2][i % 2]);
    su_stop(&srv);
}

Test(server, prompt_as_strings_and_token_ids) {
    su_start(&srv, NULL);
    const char *p[2] = {"once upon a time", "the dog ran to"};
    char *solo[2];
    for (int i = 0; i < 2; i++) solo[i] = greedy(&srv, "llm", 0, p[i], 24);
    /* an array of strings: one choice per prompt, in order */
    cJSON *b = body_for("llm", 0, "", 24);
    cJSON_ReplaceItemInObject(b, "prompt", cJSON_CreateStringArray(p, 2));
    cJSON *o = post_ok(&srv, "/v1/completions", b);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "choices")), 2);
    for (int i = 0; i < 2; i++) {
        char *t = choice_text(o, i);
        cr_assert_str_eq(t, solo[i], "prompt[%d]", i);
        free(t);
    }
    cJSON_Delete(o);
    /* token ids (from /tokenize): one list, and a list of lists */
    cJSON *ids[2];
    for (int i = 0; i < 2; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "content", p[i]);
        cJSON *tk = post_ok(&srv, "/tokenize", t);
        ids[i] = cJSON_DetachItemFromObject(tk, "tokens");
        cJSON_Delete(tk);
    }
    b = body_for("llm", 0, "", 24);
    cJSON_ReplaceItemInObject(b, "prompt", cJSON_Duplicate(ids[1], 1));
    o = post_ok(&srv, "/v1/completions", b);
    char *t = choice_text(o, 0);
    cr_assert_str_eq(t, solo[1], "token ids as the prompt");
    free(t);
    cJSON_Delete(o);
    b = body_for("duet-spec", 0, "", 24);
    cJSON *ll = cJSON_CreateArray();
    cJSON_AddItemToArray(ll, ids[0]), cJSON_AddItemToArray(ll, ids[1]);
    cJSON_ReplaceItemInObject(b, "prompt", ll);
    o = post_ok(&srv, "/v1/completions", b);
    for (int i = 0; i < 2; i++) {
        t = choice_text(o, i);
        cr_assert_str_eq(t, solo[i], "list of token lists [%d]", i);
        free(t);
    }
    cJSON_Delete(o);
    free(solo[0]), free(solo[1]);
    su_stop(&srv);
}

/* stream_options.include_usage: the usage (and the accounting) in the last chunk before [DONE];
 * per chunk, duet.tokens tells who produced each token: both "draft" and "llm" under duet-spec. */
Test(server, include_usage_and_provenance) {
    su_start(&srv, NULL);
    for (int chat = 0; chat < 2; chat++) {
        cJSON *b = body_for("duet-spec", chat, "once upon a time, there was a little girl named lily", TOK(64));
        cJSON_AddBoolToObject(b, "ignore_eos", 1);
        cJSON_AddItemToObject(b, "stream_options", cJSON_Parse("{\"include_usage\": true}"));
        sse s;
        hres r = post_stream(&srv, chat ? "/v1/chat/completions" : "/v1/completions", b, &s);
        cr_assert(s.n >= 3);
        const cJSON *last = s.ev[s.n - 1];
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(last, "usage");
        cr_assert(cJSON_IsObject(u), "usage in the last chunk: %s", cJSON_PrintUnformatted(last));
        cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(last, "choices")), 0, "its choices are empty");
        cr_assert_eq(cJSON_GetObjectItemCaseSensitive(u, "completion_tokens")->valueint, TOK(64));
        const int pt = cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens")->valueint;
        cr_assert(pt > 5);
        cr_assert_eq(cJSON_GetObjectItemCaseSensitive(u, "total_tokens")->valueint, pt + TOK(64));
        const cJSON *acc = cJSON_GetObjectItemCaseSensitive(last, "duet");
        cr_assert(cJSON_IsObject(acc), "the duet accounting object in the last chunk");
        cr_assert_str_eq(str_at(acc, "profile"), "duet-spec");
        cr_assert_str_eq(str_at(acc, "strategy"), "speculative");
        cr_assert(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(acc, "tokens_by_origin")));
        cr_assert(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(acc, "timings")));
        /* no usage before the last chunk */
        for (int e = 0; e < s.n - 1; e++) cr_assert(!cJSON_GetObjectItemCaseSensitive(s.ev[e], "usage"), "usage only at the end");
        /* provenance: per chunk, per token */
        int by_llm = 0, by_draft = 0, n_tok = 0, accounted = 0;
        size_t cap = 4096, len = 0;
        char *joined = calloc(1, cap);
        for (int e = 0; e < s.n - 1; e++) {
            const cJSON *du = cJSON_GetObjectItemCaseSensitive(s.ev[e], "duet");
            cr_assert(cJSON_IsObject(du), "chunk %d has its duet object", e);
            const cJSON *tk;
            cJSON_ArrayForEach(tk, cJSON_GetObjectItemCaseSensitive(du, "tokens")) {
                const char *by = str_at(tk, "by"), *txt = str_at(tk, "text");
                cr_assert(by && txt && cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(tk, "id")));
                by_llm += !strcmp(by, "llm"), by_draft += !strcmp(by, "draft");
                cr_assert(!strcmp(by, "llm") || !strcmp(by, "draft"), "by '%s'", by);
                if (len + strlen(txt) + 1 > cap) cap *= 2, joined = realloc(joined, cap);
                strcpy(joined + len, txt), len += strlen(txt);
                n_tok++;
            }
            accounted += cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(du, "accounting"));
        }
        cr_assert_eq(n_tok, TOK(64), "one provenance entry per token");
        cr_assert(by_llm > 0 && by_draft > 0, "tokens by llm %d, by draft %d", by_llm, by_draft);
        cr_assert_eq(accounted, 1, "the choice's last chunk carries its accounting");
        const cJSON *by = cJSON_GetObjectItemCaseSensitive(acc, "tokens_by_origin");
        cr_assert_eq(cJSON_GetObjectItemCaseSensitive(by, "llm")->valueint, by_llm);
        cr_assert_eq(cJSON_GetObjectItemCaseSensitive(by, "draft")->valueint, by_draft);
        char *text = sse_text(&s, 0, NULL);
        cr_assert_str_eq(joined, text, "the tokens' texts make the text");
        free(text), free(joined);
        sse_free(&s), hres_free(&r);
    }
    /* without include_usage: no usage chunk */
    sse s;
    hres r = post_stream(&srv, "/v1/completions", body_for("llm", 0, "hi", 4), &s);
    for (int e = 0; e < s.n; e++) cr_assert(!cJSON_GetObjectItemCaseSensitive(s.ev[e], "usage"));
    sse_free(&s), hres_free(&r);
    su_stop(&srv);
}

/* ---- the malformed-request corpus ---------------------------------------------------------------- */

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

Test(server, malformed_corpus_is_4xx_and_the_server_stays_healthy) {
    su_start(&srv, "--body-limit 16"); /* the corpus's over-limit bodies are 20 KB */
    DIR *d = opendir(CORPUS);
    cr_assert(d, "no corpus at %s", CORPUS);
    char *names[512];
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 512;)
        if (strlen(e->d_name) > 4 && !strcmp(e->d_name + strlen(e->d_name) - 4, ".req")) names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, by_name);
    cr_assert(n >= 50, "the corpus holds %d requests, expected at least 50", n);
    for (int i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", CORPUS, names[i]);
        size_t len = 0;
        char *f = tu_slurp(path, &len);
        cr_assert(f, "%s", path);
        char *nl = memchr(f, '\n', len);
        cr_assert(nl, "%s: no request line", names[i]);
        *nl = 0;
        char method[16], url[256], param[64] = "";
        long want = 0;
        int k = sscanf(f, "%15s %255s %ld %63s", method, url, &want, param);
        cr_assert(k >= 3 && want >= 400 && want < 500, "%s: bad request line '%s'", names[i], f);
        const char *body = nl + 1;
        const long blen = (long)(len - (size_t)(body - f));
        hres r = http_ex(&srv, method, url, !strcmp(method, "GET") ? NULL : body, blen, NULL, 0, 0);
        cr_assert_eq(r.curl_rc, CURLE_OK, "%s: curl %d", names[i], r.curl_rc);
        char what[300];
        snprintf(what, sizeof what, "corpus %s", names[i]);
        check_error(&r, want, param[0] && strcmp(param, "-") ? param : NULL, what);
        hres_free(&r);
        hres h = http(&srv, "GET", "/health", NULL);
        cr_assert_eq(h.status, 200, "/health after %s: %ld %s", names[i], h.status, h.body);
        cr_assert(strstr(h.body, "\"status\":\"ok\""), "/health after %s: %s", names[i], h.body);
        hres_free(&h);
        free(f), free(names[i]);
    }
    cr_log_info("replayed %d malformed requests", n);
    /* and it still generates */
    char *t = greedy(&srv, "duet-spec", 1, "hello", 4);
    free(t);
    su_stop(&srv);
}

#define _GNU_SOURCE /* strcasestr */
/* Streamed remote generation (duet_remote_generate, the remote source as a
 * strategy leg) against duet's own server on loopback, and against tiny
 * hand-written HTTP servers in this file for what a real server will not do
 * on demand: events split at every byte, a stream that stalls after its
 * first token, a malformed event.
 *
 * References are independent of the client under test: the server's own
 * non-streamed greedy completion (token ids via return_tokens_as_token_ids),
 * and the local model's own greedy output. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>

#include "duet/lm_local.h"
#include "duet/model.h"
#include "duet/remote.h"
#include "duet/strategy.h"
#include "http_util.h"
#include "server_util.h"

static const int32_t PROMPT[] = {311, 260, 785, 338, 305, 1210, 290, 262};
#define N_PROMPT ((int)(sizeof PROMPT / sizeof PROMPT[0]))

/* A greedy completion of PROMPT by the server's profile `model`, not
 * streamed, as ids; *degraded (may be NULL) gets duet.degraded (-1: absent). */
static int server_ids(const char *base, const char *model, int max_tokens, int32_t *ids, int *degraded) {
    char url[128], req[512];
    snprintf(url, sizeof url, "%s/v1/completions", base);
    int o = snprintf(req, sizeof req, "{\"model\":\"%s\",\"max_tokens\":%d,\"temperature\":0,\"logprobs\":0,"
                                      "\"return_tokens_as_token_ids\":true,\"ignore_eos\":true,\"prompt\":[", model,
                     max_tokens);
    for (int i = 0; i < N_PROMPT; i++) o += snprintf(req + o, sizeof req - o, "%s%d", i ? "," : "", PROMPT[i]);
    snprintf(req + o, sizeof req - o, "]}");
    CURL *c = curl_easy_init();
    body b = {0};
    cr_assert_eq(http_exchange(c, url, req, 60, &b, NULL), CURLE_OK);
    curl_easy_cleanup(c);
    cJSON *j = cJSON_Parse(b.buf);
    if (degraded) {
        const cJSON *d = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "duet"), "degraded");
        *degraded = cJSON_IsBool(d) ? cJSON_IsTrue(d) : -1;
    }
    const cJSON *toks = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0), "logprobs"), "tokens");
    cr_assert(cJSON_IsArray(toks), "no token ids in %s", b.buf);
    int n = 0;
    for (const cJSON *t = toks->child; t; t = t->next) ids[n++] = atoi(t->valuestring + strlen("token_id:"));
    cJSON_Delete(j);
    free(b.buf);
    return n;
}

/* The remote's own greedy output: duet serve -m llm's profile llm. */
static int server_greedy(const char *base, int max_tokens, int32_t *ids) {
    return server_ids(base, "llm", max_tokens, ids, NULL);
}

typedef struct {
    int32_t ids[256];
    int n;
    int by[DUET_ORIGIN_COUNT];
    su_server *kill_server;
    int kill_after;
} collected;

static int on_remote_token(void *ud, int32_t id, const char *piece, int len) {
    collected *c = ud;
    (void)piece, (void)len;
    if (c->n < 256) c->ids[c->n++] = id;
    return 0;
}

static int collect(void *user, const duet_token_out *t) {
    collected *c = user;
    if (c->n < 256) c->ids[c->n++] = t->id;
    c->by[t->origin]++;
    if (c->kill_server && c->n == c->kill_after) su_kill(c->kill_server);
    return 0;
}

static duet_remote *open_remote(const char *url, double timeout_s) {
    duet_remote_params p = duet_remote_default_params();
    p.url = url, p.model = "llm", p.timeout_s = timeout_s, p.connect_timeout_s = 1, p.retries = 1;
    duet_remote *r;
    duet_err err = {0};
    cr_assert_eq(duet_remote_open(&r, &p, &err), 0, "%s", err.msg);
    return r;
}

TestSuite(remote_gen, .fini = su_kill_all, .timeout = 240);

Test(remote_gen, the_stream_equals_the_servers_own_greedy_output) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    su_server s;
    su_start(&s, "--slots 2");
    int32_t want[32];
    const int n_want = server_greedy(s.base, 24, want);
    cr_assert_eq(n_want, 24);
    duet_remote *r = open_remote(s.base, 30);
    duet_err err = {0};
    duet_remote_gen_params gp = {.max_tokens = 24, .temp = 0, .ignore_eos = 1};
    /* before any probe (ids asked for), and after one */
    for (int probed = 0; probed < 2; probed++) {
        if (probed) {
            duet_remote_caps caps;
            cr_assert_eq(duet_remote_probe(r, NULL, &caps, &err), 0, "%s", err.msg);
            cr_assert(caps.token_ids, "%s", caps.report);
        }
        collected got = {0};
        duet_remote_gen_stats st;
        cr_assert_eq(duet_remote_generate(r, PROMPT, N_PROMPT, &gp, on_remote_token, &got, &st, &err), 0, "%s",
                     err.msg);
        cr_assert_eq(got.n, n_want, "streamed %d tokens, the server's answer has %d", got.n, n_want);
        cr_assert_arr_eq(got.ids, want, sizeof(int32_t) * n_want, "the streamed ids differ from the server's");
        cr_assert_eq(st.n_tokens, 24);
        cr_assert_str_eq(st.finish, "length");
        cr_assert(st.ttft_s > 0 && st.ttft_s <= st.total_s, "ttft %.3f total %.3f", st.ttft_s, st.total_s);
    }
    /* the same stream as a strategy leg: every token the LLM's, nothing evaluated locally */
    duet_token_source *src;
    cr_assert_eq(duet_remote_source_new(&src, r, NULL, &gp, &err), 0, "%s", err.msg);
    duet_strategy *leg;
    cr_assert_eq(duet_strategy_source(&leg, src, &err), 0, "%s", err.msg);
    collected got = {0};
    duet_request q = {.prompt = PROMPT, .n_prompt = N_PROMPT, .max_new = 24, .emit = collect, .user = &got};
    cr_assert_eq(duet_run(leg, &q, &err), DUET_FINISH_LENGTH, "%s", err.msg);
    cr_assert_arr_eq(got.ids, want, sizeof(int32_t) * 24);
    cr_assert_eq(got.by[DUET_BY_TARGET], 24);
    /* a consumer that stops early ends the stream there */
    collected few = {0};
    q.max_new = 5, q.user = &few;
    cr_assert_eq(duet_run(leg, &q, &err), DUET_FINISH_LENGTH, "%s", err.msg);
    cr_assert_eq(few.n, 5);
    cr_assert_arr_eq(few.ids, want, sizeof(int32_t) * 5);
    duet_strategy_free(leg);
    duet_remote_source_free(src);
    duet_remote_free(r);
    su_stop(&s);
}

/* ---- a hand-written server: one connection, a scripted answer ------------------ */
typedef struct {
    int fd;
    const char *answer; /* sent after the request */
    int byte_by_byte;   /* one write per byte */
    double hold_s;      /* then keep the connection open this long */
    pthread_t th;
} fake_server;

static void answer_one(fake_server *f, int c);

/* Answers connections until fake_stop (many: a probe makes several calls). */
static void *fake_main(void *arg) {
    fake_server *f = arg;
    for (int c; (c = accept(f->fd, NULL, NULL)) >= 0;) answer_one(f, c);
    return NULL;
}

static void answer_one(fake_server *f, int c) {
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char req[8192];
    size_t got = 0;
    /* the request: headers, then a body of Content-Length bytes */
    for (;;) {
        ssize_t n = recv(c, req + got, sizeof req - 1 - got, 0);
        if (n <= 0) break;
        got += (size_t)n;
        req[got] = 0;
        char *end = strstr(req, "\r\n\r\n");
        const char *cl = strcasestr(req, "content-length:");
        if (end && cl && got >= (size_t)(end + 4 - req) + (size_t)atoi(cl + 15)) break;
    }
    const size_t n = strlen(f->answer);
    if (f->byte_by_byte)
        for (size_t i = 0; i < n; i++) {
            if (send(c, f->answer + i, 1, MSG_NOSIGNAL) != 1) break;
            usleep(200);
        }
    else
        send(c, f->answer, n, MSG_NOSIGNAL);
    usleep((useconds_t)(f->hold_s * 1e6));
    close(c);
}

static void fake_start(fake_server *f, char *url, size_t cap) {
    f->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(f->fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(f->fd, 4), 0);
    socklen_t al = sizeof a;
    getsockname(f->fd, (struct sockaddr *)&a, &al);
    snprintf(url, cap, "http://127.0.0.1:%d", ntohs(a.sin_port));
    pthread_create(&f->th, NULL, fake_main, f);
}

static void fake_stop(fake_server *f) {
    shutdown(f->fd, SHUT_RDWR);
    close(f->fd);
    pthread_join(f->th, NULL);
}

#define SSE_HEAD "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

Test(remote_gen, events_split_at_every_byte_are_read_whole) {
    fake_server f = {.byte_by_byte = 1,
                     .answer = SSE_HEAD
                     ": a comment line\r\n\r\n"
                     "data: {\"choices\":[{\"index\":0,\"text\":\"ab\",\"logprobs\":{\"tokens\":"
                     "[\"token_id:7\",\"token_id:9\"]},\"finish_reason\":null}]}\r\n\r\n"
                     "data: {\"choices\":[{\"index\":0,\"text\":\"\\u00e9\",\"logprobs\":{\"tokens\":"
                     "[\"token_id:300\"]},\"finish_reason\":null}]}\n\n"
                     "data: {\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"stop\"}]}\n\n"
                     "data: [DONE]\n\n"};
    char url[64];
    fake_start(&f, url, sizeof url);
    duet_remote *r = open_remote(url, 5);
    duet_err err = {0};
    collected got = {0};
    duet_remote_gen_stats st;
    duet_remote_gen_params gp = {.max_tokens = 16};
    cr_assert_eq(duet_remote_generate(r, PROMPT, N_PROMPT, &gp, on_remote_token, &got, &st, &err), 0, "%s", err.msg);
    fake_stop(&f);
    cr_assert_eq(got.n, 3);
    cr_assert_eq(got.ids[0], 7);
    cr_assert_eq(got.ids[1], 9);
    cr_assert_eq(got.ids[2], 300);
    cr_assert_str_eq(st.finish, "stop");
    duet_remote_free(r);
}

Test(remote_gen, a_stream_that_stalls_after_a_token_trips_the_timeout) {
    fake_server f = {.hold_s = 1.5,
                     .answer = SSE_HEAD "data: {\"choices\":[{\"index\":0,\"text\":\"a\",\"logprobs\":{\"tokens\":"
                                        "[\"token_id:5\"]},\"finish_reason\":null}]}\n\n"};
    char url[64];
    fake_start(&f, url, sizeof url);
    duet_remote *r = open_remote(url, 30); /* the whole-call timeout is long: the stall timeout must trip */
    duet_err err = {0};
    collected got = {0};
    duet_remote_gen_params gp = {.max_tokens = 16, .stall_s = 0.5};
    const double t0 = now_s();
    const int rc = duet_remote_generate(r, PROMPT, N_PROMPT, &gp, on_remote_token, &got, NULL, &err);
    const double dt = now_s() - t0;
    cr_assert_eq(rc, DUET_EIO, "rc %d: %s", rc, err.msg);
    cr_assert(strstr(err.msg, "stalled"), "%s", err.msg);
    cr_assert(dt >= 0.45 && dt < 3, "gave up after %.2f s for a 0.5 s stall timeout", dt);
    cr_assert_eq(got.n, 1, "the token before the stall was delivered");
    cr_assert_eq(got.ids[0], 5);
    fake_stop(&f);
    duet_remote_free(r);
}

Test(remote_gen, a_server_that_never_answers_trips_the_timeout) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(s, 8), 0); /* accepted by the kernel, never read */
    socklen_t al = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &al);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(a.sin_port));
    duet_remote_params p = duet_remote_default_params();
    p.url = url, p.model = "llm", p.timeout_s = 0.5, p.retries = 0;
    duet_remote *r;
    duet_err err = {0};
    cr_assert_eq(duet_remote_open(&r, &p, &err), 0);
    duet_remote_gen_params gp = {.max_tokens = 8};
    const double t0 = now_s();
    cr_assert_eq(duet_remote_generate(r, PROMPT, N_PROMPT, &gp, on_remote_token, &(collected){0}, NULL, &err), DUET_EIO);
    const double dt = now_s() - t0;
    cr_assert(strstr(err.msg, "stalled"), "%s", err.msg);
    cr_assert(dt >= 0.45 && dt < 3, "gave up after %.2f s for a 0.5 s timeout", dt);
    duet_remote_free(r);
    close(s);
}

Test(remote_gen, a_malformed_event_and_an_error_status_are_clear_errors) {
    fake_server f = {.answer = SSE_HEAD "data: {\"choices\": [oops\n\n"};
    char url[64];
    fake_start(&f, url, sizeof url);
    duet_remote *r = open_remote(url, 5);
    duet_err err = {0};
    duet_remote_gen_params gp = {.max_tokens = 8};
    cr_assert_eq(duet_remote_generate(r, PROMPT, N_PROMPT, &gp, on_remote_token, &(collected){0}, NULL, &err), DUET_EIO);
    cr_assert(strstr(err.msg, "malformed stream event"), "%s", err.msg);
    fake_stop(&f);
    duet_remote_free(r);
    fake_server g = {.answer = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n"
                               "Content-Length: 49\r\n\r\n{\"error\":{\"message\":\"Only no echo is supported\"}}"};
    fake_start(&g, url, sizeof url);
    r = open_remote(url, 5);
    cr_assert_eq(duet_remote_generate(r, PROMPT, N_PROMPT, &gp, on_remote_token, &(collected){0}, NULL, &err),
                 DUET_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "HTTP 400") && strstr(err.msg, "Only no echo is supported"), "%s", err.msg);
    fake_stop(&g);
    duet_remote_free(r);
}

/* What llama.cpp's server (2025) answers a request with "echo": true: an
 * uncaught runtime_error, reported as a server error. */
#define NO_ECHO_500                                                                                                    \
    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nConnection: close\r\n"                  \
    "Content-Length: 82\r\n\r\n{\"error\":{\"code\":500,\"message\":\"Only no echo is supported\",\"type\":\"server_error\"}}"

Test(remote_gen, a_500_refusing_echo_is_an_answer_not_an_outage) {
    fake_server f = {.answer = NO_ECHO_500};
    char url[64];
    fake_start(&f, url, sizeof url);
    duet_remote *r = open_remote(url, 5);
    duet_err err = {0};
    duet_remote_caps caps;
    cr_assert_eq(duet_remote_probe(r, NULL, &caps, &err), 0, "%s", err.msg);
    cr_assert(caps.reachable && !caps.prompt_logprobs, "%s", caps.report);
    cr_assert(strstr(caps.report, "cannot score a token block") && strstr(caps.report, "Only no echo is supported"),
              "%s", caps.report);
    long calls, failures, retries, refused;
    duet_remote_counts(r, &calls, &failures, &retries, &refused, NULL);
    cr_assert(failures == 0 && retries == 0 && refused == 0,
              "a refusal counted as an outage: %ld failures, %ld retries, %ld refused", failures, retries, refused);
    fake_stop(&f);
    duet_remote_free(r);
}

/* The SLM's greedy continuation of ctx (n_ctx tokens), at most max_new tokens
 * into ids; returns how many. */
static int slm_run(duet_model *m, const int32_t *ctx, int n_ctx, int max_new, int32_t *ids) {
    duet_err err = {0};
    duet_lm *lm;
    cr_assert_eq(duet_lm_local_new(&lm, m, 256, "slm", &err), 0);
    duet_sampler *g = tu_greedy(duet_model_n_vocab(m));
    duet_strategy *p;
    cr_assert_eq(duet_strategy_plain(&p, lm, g, &err), 0);
    collected c = {0};
    duet_request q = {.prompt = ctx, .n_prompt = n_ctx, .max_new = max_new, .emit = collect, .user = &c};
    cr_assert_geq(duet_run(p, &q, &err), 0, "%s", err.msg);
    memcpy(ids, c.ids, sizeof *ids * (size_t)c.n);
    duet_strategy_free(p);
    duet_sampler_free(g);
    duet_lm_free(lm);
    return c.n;
}

/* The two legs of a strategy with a remote leg: the remote's greedy stream
 * (no vocabulary) and the SLM's plain greedy decoding. */
typedef struct {
    duet_token_source *src;
    duet_strategy *remote, *slm;
    duet_lm *sl;
    duet_sampler *g;
} legs;

static void legs_open(legs *l, duet_remote *r, duet_model *sm) {
    duet_err err = {0};
    const duet_remote_gen_params gp = {.temp = 0};
    cr_assert_eq(duet_remote_source_new(&l->src, r, NULL, &gp, &err), 0);
    cr_assert_eq(duet_strategy_source(&l->remote, l->src, &err), 0);
    cr_assert_eq(duet_lm_local_new(&l->sl, sm, 256, "slm", &err), 0);
    l->g = tu_greedy(duet_model_n_vocab(sm));
    cr_assert_eq(duet_strategy_plain(&l->slm, l->sl, l->g, &err), 0);
}

static void legs_free(legs *l) {
    duet_strategy_free(l->slm), duet_strategy_free(l->remote);
    duet_remote_source_free(l->src);
    duet_sampler_free(l->g);
    duet_lm_free(l->sl);
}

/* The local SLM and its own greedy output (the reference for never-escalating strategies). */
static int slm_greedy(duet_model *m, int max_new, int32_t *ids) { return slm_run(m, PROMPT, N_PROMPT, max_new, ids); }

/* The references, n_new tokens each: the server's greedy completion and the SLM's own. */
static void greedy_references(const char *base, int n_new, int32_t *llm_want, int32_t *slm_want) {
    cr_assert_eq(server_greedy(base, n_new, llm_want), n_new);
    duet_model *sm = tu_load_path(SU_DRAFT);
    cr_assert_eq(slm_greedy(sm, n_new, slm_want), n_new);
    duet_model_free(sm);
}

Test(remote_gen, cascade_and_route_with_a_remote_leg_at_their_extremes) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    su_server s;
    su_start(&s, "--slots 2");
    const int n_new = 20;
    int32_t llm_want[32], slm_want[32];
    cr_assert_eq(server_greedy(s.base, n_new, llm_want), n_new);
    duet_model *sm = tu_load_path(SU_DRAFT);
    cr_assert_eq(slm_greedy(sm, n_new, slm_want), n_new);
    cr_assert(memcmp(llm_want, slm_want, sizeof(int32_t) * n_new), "the models agree: the test could not tell them apart");

    duet_remote *r = open_remote(s.base, 30);
    duet_err err = {0};
    legs l;
    legs_open(&l, r, sm);
    duet_strategy *strat;
    duet_strategy *tiers[2] = {l.slm, l.remote};
    const float never = -INFINITY, always = INFINITY;
    for (int esc = 0; esc < 2; esc++) {
        cr_assert_eq(duet_strategy_cascade(&strat, tiers, esc ? &always : &never, 2, 0, &err), 0);
        collected c = {0};
        duet_request q = {.prompt = PROMPT, .n_prompt = N_PROMPT, .max_new = n_new, .emit = collect, .user = &c};
        cr_assert_eq(duet_run(strat, &q, &err), DUET_FINISH_LENGTH, "%s", err.msg);
        cr_assert_eq(c.n, n_new);
        cr_assert_arr_eq(c.ids, esc ? llm_want : slm_want, sizeof(int32_t) * n_new, "cascade, escalating: %d", esc);
        cr_assert_eq(c.by[esc ? DUET_BY_TARGET : DUET_BY_SLM], n_new);
        duet_stats st;
        duet_strategy_stats(strat, &st);
        cr_assert_eq(st.escalated, esc);
        duet_strategy_free(strat);
    }
    duet_router router;
    duet_router_init(&router, DUET_ROUTER_THRESHOLD);
    for (int to_llm = 0; to_llm < 2; to_llm++) {
        router.threshold = to_llm ? -INFINITY : INFINITY; /* to the LLM when score > threshold */
        cr_assert_eq(duet_strategy_route(&strat, l.sl, NULL, l.slm, l.remote, &router, &err), 0, "%s", err.msg);
        collected c = {0};
        duet_request q = {.prompt = PROMPT, .n_prompt = N_PROMPT, .max_new = n_new, .emit = collect, .user = &c};
        cr_assert_eq(duet_run(strat, &q, &err), DUET_FINISH_LENGTH, "%s", err.msg);
        cr_assert_arr_eq(c.ids, to_llm ? llm_want : slm_want, sizeof(int32_t) * n_new, "route, to the LLM: %d", to_llm);
        duet_strategy_free(strat);
    }
    duet_router_free(&router);
    legs_free(&l);
    duet_model_free(sm);
    duet_remote_free(r);
    su_stop(&s);
}

/* The server dies in the middle of the stream: the SLM finishes the answer
 * from the text so far, every token delivered once, degraded. */
Test(remote_gen, the_server_killed_mid_stream_leaves_the_answer_degraded_and_whole) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    su_server s;
    su_start(&s, "--slots 2");
    duet_remote *r = open_remote(s.base, 5);
    duet_err err = {0};
    duet_model *sm = tu_load_path(SU_DRAFT);
    legs l;
    legs_open(&l, r, sm);
    duet_strategy *fb;
    cr_assert_eq(duet_strategy_fallback(&fb, l.remote, l.slm, &err), 0);
    const int n_new = 40;
    collected c = {.kill_server = &s, .kill_after = 4};
    duet_request q = {.prompt = PROMPT, .n_prompt = N_PROMPT, .max_new = n_new, .emit = collect, .user = &c};
    cr_assert_eq(duet_run(fb, &q, &err), DUET_FINISH_LENGTH, "%s", err.msg);
    cr_assert_eq(c.n, n_new, "%d tokens of %d", c.n, n_new);
    duet_stats st;
    duet_strategy_stats(fb, &st);
    cr_assert_eq(st.degraded, 1);
    const int n_remote = st.by_origin[DUET_BY_TARGET];
    /* tokens already on the wire when it died still count as the remote's */
    cr_assert(n_remote >= 4 && n_remote < n_new, "the remote wrote %d tokens", n_remote);
    cr_assert_eq(st.by_origin[DUET_BY_SLM], n_new - n_remote);
    cr_log_info("degraded after %d remote tokens: %s", n_remote, duet_strategy_fallback_reason(fb));
    /* the SLM's part continues exactly the text so far */
    int32_t ctx[64];
    memcpy(ctx, PROMPT, sizeof PROMPT);
    memcpy(ctx + N_PROMPT, c.ids, sizeof(int32_t) * n_remote);
    collected rest = {0};
    duet_request q2 = {.prompt = ctx, .n_prompt = N_PROMPT + n_remote, .max_new = n_new - n_remote, .emit = collect,
                       .user = &rest};
    cr_assert_eq(duet_run(l.slm, &q2, &err), DUET_FINISH_LENGTH);
    cr_assert_arr_eq(rest.ids, c.ids + n_remote, sizeof(int32_t) * (n_new - n_remote));
    duet_strategy_free(fb);
    legs_free(&l);
    duet_model_free(sm);
    duet_remote_free(r);
}

/* ---- duet generate --remote ------------------------------------------------------ */

/* The ids of a --json line ("ids":[...]) into ids; returns how many. */
static int json_ids(const char *out, int32_t *ids, int cap) {
    const char *js = strstr(out, "{\"text\"");
    cr_assert(js, "no JSON object in: %s", out);
    cJSON *o = cJSON_Parse(js);
    cr_assert(o, "not JSON: %s", js);
    int n = 0;
    for (const cJSON *v = cJSON_GetObjectItem(o, "ids")->child; v && n < cap; v = v->next) ids[n++] = v->valueint;
    cJSON_Delete(o);
    return n;
}

static double json_stat(const char *out, const char *key) {
    cJSON *o = cJSON_Parse(strstr(out, "{\"text\""));
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "stats"), key);
    const double x = cJSON_IsBool(v) ? cJSON_IsTrue(v) : cJSON_IsNumber(v) ? v->valuedouble : NAN;
    cJSON_Delete(o);
    return x;
}

#define PROMPT_IDS "311 260 785 338 305 1210 290 262"

Test(remote_gen, duet_generate_streams_the_remote_and_routes_and_cascades_through_it) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    su_server s;
    su_start(&s, "--slots 2");
    const int n_new = 16;
    int32_t llm_want[32], slm_want[32], got[64];
    greedy_references(s.base, n_new, llm_want, slm_want);
    char args[1024], *out = NULL;
    /* plain: the remote's own stream, one request (the probe makes the other two calls) */
    snprintf(args, sizeof args, "generate -m %s --remote %s --tokens '%s' -n %d --temp 0 --ignore-eos -t 1 --json 2>&1",
             SU_DRAFT, s.base, PROMPT_IDS, n_new);
    cr_assert_eq(tu_run_duet(args, &out), 0, "%s", out);
    cr_assert_eq(json_ids(out, got, 64), n_new, "%s", out);
    cr_assert_arr_eq(got, llm_want, sizeof(int32_t) * n_new, "%s", out);
    cr_assert(strstr(out, "\"remote_mode\":\"generate\""), "%s", out);
    cr_assert_leq(json_stat(out, "remote_calls"), 3, "one call per token? %s", out);
    cr_assert_eq(json_stat(out, "degraded"), 0);
    free(out);
    /* cascade and route at their extremes: exactly one model's output */
    const struct {
        const char *how;
        const int32_t *want;
    } cases[] = {{"--strategy cascade --threshold inf", llm_want},
                 {"--strategy cascade --threshold -inf", slm_want},
                 {"--strategy route --threshold -inf", llm_want},
                 {"--strategy route --threshold inf", slm_want}};
    for (int i = 0; i < 4; i++) {
        snprintf(args, sizeof args,
                 "generate -m %s --remote %s --tokens '%s' -n %d --temp 0 --ignore-eos -t 1 --json %s 2>&1", SU_DRAFT,
                 s.base, PROMPT_IDS, n_new, cases[i].how);
        cr_assert_eq(tu_run_duet(args, &out), 0, "%s", out);
        cr_assert_eq(json_ids(out, got, 64), n_new, "%s", out);
        cr_assert_arr_eq(got, cases[i].want, sizeof(int32_t) * n_new, "%s: %s", cases[i].how, out);
        free(out);
    }
    /* a strategy the remote cannot be a leg of is a usage error */
    snprintf(args, sizeof args, "generate -m %s --remote %s --tokens '%s' --strategy defer --slm %s 2>&1", SU_DRAFT,
             s.base, PROMPT_IDS, SU_DRAFT);
    cr_assert_eq(tu_run_duet(args, &out), 2, "%s", out);
    cr_assert(strstr(out, "--remote takes"), "%s", out);
    free(out);
    /* the server gone: the SLM answers, degraded, exit 0 */
    su_stop(&s);
    snprintf(args, sizeof args,
             "generate -m %s --remote %s --tokens '%s' -n %d --temp 0 --ignore-eos -t 1 --json --remote-timeout 2 "
             "--strategy cascade --threshold inf 2>&1",
             SU_DRAFT, s.base, PROMPT_IDS, n_new);
    cr_assert_eq(tu_run_duet(args, &out), 0, "%s", out);
    cr_assert_eq(json_ids(out, got, 64), n_new, "%s", out);
    cr_assert_arr_eq(got, slm_want, sizeof(int32_t) * n_new, "%s", out);
    cr_assert_eq(json_stat(out, "degraded"), 1, "%s", out);
    cr_assert(strstr(out, "degraded: the remote failed"), "%s", out);
    free(out);
}

/* ---- duet serve with a remote model in its config ---------------------------------- */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
}

/* The completion requests a server's /metrics counted with a 2xx status. */
static long completions_served(const char *base) {
    char url[128];
    snprintf(url, sizeof url, "%s/metrics", base);
    CURL *c = curl_easy_init();
    body b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, grab);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    cr_assert_eq(curl_easy_perform(c), CURLE_OK);
    curl_easy_cleanup(c);
    long n = 0;
    for (const char *at = b.buf; (at = strstr(at, "duet_requests_total{")); at++) {
        const char *end = strchr(at, '\n');
        const char *ok = strstr(at, "status=\"2xx\"} ");
        if (ok && (!end || ok < end)) n += atol(ok + strlen("status=\"2xx\"} "));
    }
    free(b.buf);
    return n;
}

Test(remote_gen, a_server_with_a_remote_model_answers_through_it_and_degrades_without_it) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    su_server cloud, edge;
    su_start(&cloud, "--slots 2");
    const int n_new = 16;
    int32_t llm_want[32], slm_want[32], got[32];
    greedy_references(cloud.base, n_new, llm_want, slm_want);
    char cfg[] = "/tmp/duet_rgen_cfg_XXXXXX", egress[] = "/tmp/duet_rgen_egress_XXXXXX";
    close(mkstemp(cfg)), close(mkstemp(egress));
    char json[4096];
    const char *tmpl =
        "{\"host\": \"127.0.0.1\", \"port\": 0, \"threads\": 1, \"slots\": 2, %s \"egress_log\": \"%s\",\n"
        " \"models\": {\"cloud\": {\"remote\": \"%s\", \"model\": \"llm\", \"timeout_s\": 5, \"fallback\": \"slm\"},\n"
        "            \"slm\": {\"path\": \"%s\"}},\n"
        " \"profiles\": [{\"name\": \"cloud\", \"model\": \"cloud\"},\n"
        "   {\"name\": \"edge-spec\", \"strategy\": \"speculative\", \"model\": \"cloud\", \"draft\": \"slm\", \"draft_max\": 4},\n"
        "   {\"name\": \"edge-up\", \"strategy\": \"cascade\", \"model\": \"cloud\", \"slm\": \"slm\", \"threshold\": 1e9},\n"
        "   {\"name\": \"edge-down\", \"strategy\": \"cascade\", \"model\": \"cloud\", \"slm\": \"slm\", \"threshold\": -1e9},\n"
        "   {\"name\": \"edge-route\", \"strategy\": \"route\", \"model\": \"cloud\", \"slm\": \"slm\"}]}\n";
    snprintf(json, sizeof json, tmpl, "", egress, cloud.base, SU_DRAFT);
    write_file(cfg, json);
    char *log = NULL;
    cr_assert_eq(su_start_config(&edge, cfg, &log), -1, "%s", log);
    /* each remote profile gives the remote's own greedy ids; the cascade that never escalates, the SLM's */
    const struct {
        const char *profile;
        const int32_t *want;
    } cases[] = {{"cloud", llm_want}, {"edge-spec", llm_want}, {"edge-up", llm_want}, {"edge-down", slm_want},
                 {"edge-route-1", llm_want}, {"edge-route-0", slm_want}};
    for (int i = 0; i < 6; i++) {
        int degraded = -1;
        cr_assert_eq(server_ids(edge.base, cases[i].profile, n_new, got, &degraded), n_new, "%s", cases[i].profile);
        cr_assert_arr_eq(got, cases[i].want, sizeof(int32_t) * n_new, "profile %s", cases[i].profile);
        cr_assert_eq(degraded, 0, "profile %s says degraded %d", cases[i].profile, degraded);
    }
    size_t len = 0;
    char *sent = tu_slurp(egress, &len);
    cr_assert(sent && strstr(sent, "\"stream\":true") && strstr(sent, "\"echo\":true"),
              "the egress log holds the streamed and the scoring requests: %.300s", sent ? sent : "");
    free(sent);
    /* the cloud gone: every request is still answered, by the SLM, degraded */
    su_kill(&cloud);
    for (int i = 0; i < 3; i++) {
        int degraded = -1;
        cr_assert_eq(server_ids(edge.base, cases[i].profile, n_new, got, &degraded), n_new, "%s", cases[i].profile);
        cr_assert_arr_eq(got, slm_want, sizeof(int32_t) * n_new, "profile %s without the cloud", cases[i].profile);
        cr_assert_eq(degraded, 1, "profile %s", cases[i].profile);
    }
    su_stop(&edge);

    /* private: the remote is never contacted (its request count and the egress log say so) */
    su_start(&cloud, "--slots 1");
    const long served = completions_served(cloud.base);
    truncate(egress, 0);
    snprintf(json, sizeof json, tmpl, "\"private\": true,", egress, cloud.base, SU_DRAFT);
    write_file(cfg, json);
    cr_assert_eq(su_start_config(&edge, cfg, &log), -1, "%s", log);
    int degraded = -1;
    cr_assert_eq(server_ids(edge.base, "cloud", n_new, got, &degraded), n_new);
    cr_assert_arr_eq(got, slm_want, sizeof(int32_t) * n_new);
    cr_assert_eq(degraded, 1);
    cr_assert_eq(completions_served(cloud.base), served, "the remote served a request in private mode");
    sent = tu_slurp(egress, &len);
    cr_assert_eq(len, 0, "the egress log has %zu bytes in private mode", len);
    free(sent);
    su_stop(&edge);
    su_stop(&cloud);
    unlink(cfg), unlink(egress);
}

Test(remote_gen, a_remote_that_cannot_score_is_refused_for_a_speculative_profile) {
    /* an endpoint that answers every request as llama.cpp's server answers echo (a 500) */
    fake_server f = {.answer = NO_ECHO_500};
    char url[64];
    fake_start(&f, url, sizeof url);
    char cfg[] = "/tmp/duet_rgen_cfg_XXXXXX";
    close(mkstemp(cfg));
    char json[2048];
    snprintf(json, sizeof json,
             "{\"host\": \"127.0.0.1\", \"port\": 0, \"threads\": 1, \"slots\": 1,\n"
             " \"models\": {\"slm\": {\"path\": \"%s\"}, \"cloud\": {\"remote\": \"%s\", \"timeout_s\": 2}},\n"
             " \"profiles\": [{\"name\": \"edge-spec\", \"strategy\": \"speculative\", \"model\": \"cloud\", "
             "\"draft\": \"slm\"}]}\n",
             SU_DRAFT, url);
    write_file(cfg, json);
    su_server edge;
    char *log = NULL;
    const int st = su_start_config(&edge, cfg, &log);
    cr_assert(st > 0, "the server started: %s", log ? log : "");
    cr_assert(strstr(log, "profile 'edge-spec' verifies drafts on model 'cloud', which cannot") &&
                  strstr(log, "Only no echo is supported"),
              "%s", log);
    free(log);
    /* a remote model where it cannot serve: a clear config error naming the field */
    snprintf(json, sizeof json,
             "{\"models\": {\"slm\": {\"path\": \"%s\"}, \"cloud\": {\"remote\": \"%s\"}},\n"
             " \"profiles\": [{\"name\": \"d\", \"strategy\": \"defer\", \"model\": \"cloud\", \"slm\": \"slm\"}]}\n",
             SU_DRAFT, url);
    write_file(cfg, json);
    cr_assert_eq(su_start_config(&edge, cfg, &log), 2, "%s", log);
    cr_assert(strstr(log, "profiles[0].model 'cloud' is remote"), "%s", log);
    free(log);
    fake_stop(&f);
    unlink(cfg);
}

/* A streamed request to the edge server: every token of its chunks (id, who
 * wrote it) and the accounting's degraded flag. */
typedef struct {
    const char *base;
    int max_tokens;
    int32_t ids[256];
    char by[256][8];
    int n, degraded, status;
    body b;
    int llm_seen; /* tokens by the remote received so far (atomic: the main thread watches it) */
} edge_stream;

static size_t grab_stream(char *p, size_t s, size_t n, void *u) {
    edge_stream *e = u;
    const size_t k = grab(p, s, n, &e->b);
    int seen = 0;
    for (const char *at = e->b.buf; at && (at = strstr(at, "\"by\":\"llm\"")); at++) seen++;
    __atomic_store_n(&e->llm_seen, seen, __ATOMIC_RELEASE);
    return k;
}

static void *stream_request(void *arg) {
    edge_stream *e = arg;
    char url[128], req[512];
    snprintf(url, sizeof url, "%s/v1/completions", e->base);
    int o = snprintf(req, sizeof req, "{\"model\":\"cloud\",\"max_tokens\":%d,\"temperature\":0,\"ignore_eos\":true,"
                                      "\"stream\":true,\"prompt\":[", e->max_tokens);
    for (int i = 0; i < N_PROMPT; i++) o += snprintf(req + o, sizeof req - o, "%s%d", i ? "," : "", PROMPT[i]);
    snprintf(req + o, sizeof req - o, "]}");
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, req);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, grab_stream);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, e);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    long code = 0;
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    e->status = (int)code;
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    e->degraded = -1;
    body b = e->b;
    char *save = NULL; /* strtok_r: two of these threads parse at once */
    for (char *line = b.buf ? strtok_r(b.buf, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "data: {", 7)) continue;
        cJSON *j = cJSON_Parse(line + 6);
        const cJSON *du = cJSON_GetObjectItem(j, "duet");
        for (const cJSON *t = cJSON_GetObjectItem(du, "tokens") ? cJSON_GetObjectItem(du, "tokens")->child : NULL;
             t && e->n < 256; t = t->next, e->n++) {
            e->ids[e->n] = cJSON_GetObjectItem(t, "id")->valueint;
            snprintf(e->by[e->n], sizeof e->by[0], "%s", cJSON_GetObjectItem(t, "by")->valuestring);
        }
        const cJSON *d = cJSON_GetObjectItem(cJSON_GetObjectItem(du, "accounting"), "degraded");
        if (cJSON_IsBool(d)) e->degraded = cJSON_IsTrue(d);
        cJSON_Delete(j);
    }
    free(b.buf);
    return NULL;
}

/* The SLM's greedy continuation of ctx (n_ctx tokens), n_new tokens. */
static void slm_continue(duet_model *m, const int32_t *ctx, int n_ctx, int n_new, int32_t *out) {
    cr_assert_eq(slm_run(m, ctx, n_ctx, n_new, out), n_new);
}

Test(remote_gen, the_remote_killed_mid_stream_leaves_every_server_request_whole_and_degraded) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    su_server cloud, edge;
    su_start(&cloud, "--slots 2 --forward-delay-ms 15"); /* >= 15 ms a pass: 120 tokens take > 1.8 s */
    char cfg[] = "/tmp/duet_rgen_cfg_XXXXXX";
    close(mkstemp(cfg));
    char json[2048];
    snprintf(json, sizeof json,
             "{\"host\": \"127.0.0.1\", \"port\": 0, \"threads\": 1, \"slots\": 2,\n"
             " \"models\": {\"slm\": {\"path\": \"%s\"},\n"
             "   \"cloud\": {\"remote\": \"%s\", \"model\": \"llm\", \"timeout_s\": 5, \"fallback\": \"slm\"}},\n"
             " \"profiles\": [{\"name\": \"cloud\", \"model\": \"cloud\"}]}\n",
             SU_DRAFT, cloud.base);
    write_file(cfg, json);
    char *log = NULL;
    cr_assert_eq(su_start_config(&edge, cfg, &log), -1, "%s", log);
    enum { N_REQ = 2, N_NEW = 120 };
    edge_stream e[N_REQ];
    pthread_t th[N_REQ];
    for (int i = 0; i < N_REQ; i++) {
        memset(&e[i], 0, sizeof e[i]);
        e[i].base = edge.base, e[i].max_tokens = N_NEW;
        pthread_create(&th[i], NULL, stream_request, &e[i]);
    }
    /* kill the remote once both streams have tokens from it (at most 60 s) */
    const double t0 = su_now();
    while (su_now() - t0 < 60 && (__atomic_load_n(&e[0].llm_seen, __ATOMIC_ACQUIRE) < 3 ||
                                  __atomic_load_n(&e[1].llm_seen, __ATOMIC_ACQUIRE) < 3))
        usleep(5 * 1000);
    su_kill(&cloud);
    for (int i = 0; i < N_REQ; i++) pthread_join(th[i], NULL);
    duet_model *sm = tu_load_path(SU_DRAFT);
    for (int i = 0; i < N_REQ; i++) {
        cr_assert_eq(e[i].status, 200);
        cr_assert_eq(e[i].n, N_NEW, "request %d: %d tokens of %d", i, e[i].n, N_NEW);
        cr_assert_eq(e[i].degraded, 1, "request %d", i);
        int n_remote = 0;
        while (n_remote < e[i].n && !strcmp(e[i].by[n_remote], "llm")) n_remote++;
        for (int k = n_remote; k < e[i].n; k++) cr_assert_str_eq(e[i].by[k], "slm", "request %d token %d", i, k);
        cr_assert(n_remote > 0 && n_remote < N_NEW, "request %d: the remote wrote %d tokens", i, n_remote);
        cr_log_info("request %d: %d tokens by the remote, %d by the local fallback", i, n_remote, N_NEW - n_remote);
        /* the fallback continued exactly the text so far */
        int32_t ctx[256], want[256];
        memcpy(ctx, PROMPT, sizeof PROMPT);
        memcpy(ctx + N_PROMPT, e[i].ids, sizeof(int32_t) * n_remote);
        slm_continue(sm, ctx, N_PROMPT + n_remote, N_NEW - n_remote, want);
        cr_assert_arr_eq(e[i].ids + n_remote, want, sizeof(int32_t) * (N_NEW - n_remote), "request %d", i);
    }
    duet_model_free(sm);
    su_stop(&edge);
    unlink(cfg);
}

/* The remote model against duet's own server on loopback: the probe says
 * what the endpoint supports; speculative decoding with a local draft and
 * the remote LLM as verifier gives the remote's own greedy output; a
 * different vocabulary is refused for verification; private mode sends
 * nothing; a stalled server trips the timeout; a dead one opens the breaker. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "duet/lm_local.h"
#include "duet/model.h"
#include "duet/remote.h"
#include "duet/strategy.h"
#include "server_util.h"
#include "testutil.h"

#define LLM DUET_SRC_DIR "/models/llm.gguf"
#define DRAFT DUET_SRC_DIR "/models/slm-draft.gguf"

static su_server server;

static void stop_server(void) { su_end(&server); }

/* Starts `duet serve -m LLM` on a free port; returns the base URL. */
static void start_server(char *url, size_t cap) {
    su_serve(&server, NULL, "-t 1 --slots 2");
    snprintf(url, cap, "%s", server.base);
}

static duet_remote *open_remote(const char *url, const char *log, int private_mode) {
    duet_remote_params p = duet_remote_default_params();
    p.url = url, p.model = "llm", p.egress_log = log, p.private_mode = private_mode;
    p.timeout_s = 20;
    duet_remote *r;
    duet_err err = {0};
    cr_assert_eq(duet_remote_open(&r, &p, &err), 0, "%s", err.msg);
    return r;
}

typedef struct {
    int32_t ids[128];
    int n;
} collected;

static int collect(void *user, const duet_token_out *t) {
    collected *c = user;
    if (c->n < 128) c->ids[c->n++] = t->id;
    return 0;
}

TestSuite(remote, .fini = stop_server, .timeout = 180);

Test(remote, probe_and_greedy_verification_equal_the_remote) {
    char url[128];
    start_server(url, sizeof url);
    duet_err err = {0};
    duet_vocab *v;
    cr_assert_eq(duet_vocab_load_file(&v, LLM, &err), 0, "%s", err.msg);
    duet_remote *r = open_remote(url, NULL, 0);
    duet_remote_caps caps;
    cr_assert_eq(duet_remote_probe(r, v, &caps, &err), 0, "%s", err.msg);
    cr_log_info("probe: %s", caps.report);
    cr_assert(caps.reachable && caps.prompt_logprobs && caps.token_ids && caps.same_vocab, "%s", caps.report);
    cr_assert(strstr(caps.report, "verification works"), "%s", caps.report);

    /* the remote's own greedy output: one token per call, scored by the server */
    const char *text = "once upon a time, there was a little girl named lily. she";
    int32_t *prompt;
    const int n = duet_tokenize_alloc(v, text, strlen(text), 0, &prompt);
    cr_assert_gt(n, 4);
    const int n_new = 24;
    duet_lm *ref;
    cr_assert_eq(duet_lm_remote_new(&ref, r, duet_vocab_n(v), 512, "remote-llm", &err), 0);
    duet_sampler_params sp = duet_sampler_default_params();
    sp.temp = 0;
    duet_sampler *g = duet_sampler_new(&sp, duet_vocab_n(v));
    duet_strategy *plain;
    cr_assert_eq(duet_strategy_plain(&plain, ref, g, &err), 0, "%s", err.msg);
    collected want = {0}, got = {0};
    duet_request q = {.prompt = prompt, .n_prompt = n, .max_new = n_new, .emit = collect, .user = &want};
    cr_assert_eq(duet_run(plain, &q, &err), DUET_FINISH_LENGTH, "%s", err.msg);
    long calls_plain;
    duet_remote_counts(r, &calls_plain, NULL, NULL, NULL, NULL);

    /* the local draft proposes, the remote verifies a block per call */
    duet_model *dm = tu_load_path(DRAFT);
    duet_lm *dl, *tl;
    cr_assert_eq(duet_lm_local_new(&dl, dm, 256, "draft", &err), 0);
    cr_assert_eq(duet_lm_remote_new(&tl, r, duet_vocab_n(v), 512, "remote-llm", &err), 0);
    duet_spec_params spp = duet_spec_default_params();
    spp.adaptive = 0, spp.draft_max = 4;
    duet_strategy *spec;
    cr_assert_eq(duet_strategy_speculative(&spec, tl, dl, g, &spp, &err), 0, "%s", err.msg);
    q.user = &got;
    cr_assert_eq(duet_run(spec, &q, &err), DUET_FINISH_LENGTH, "%s", err.msg);
    cr_assert_arr_eq(got.ids, want.ids, sizeof(int32_t) * n_new, "remote verification changed the output");
    long calls_total;
    duet_remote_counts(r, &calls_total, NULL, NULL, NULL, NULL);
    duet_stats st;
    duet_strategy_stats(spec, &st);
    cr_log_info("remote calls: plain %ld, speculative %ld (acceptance %d/%d)", calls_plain, calls_total - calls_plain,
                st.accepted, st.drafted);
    cr_assert_lt(calls_total - calls_plain, calls_plain, "verification needed no fewer round trips");

    /* sampling with top-k rows is refused with a clear message */
    duet_sampler_params hot = duet_sampler_default_params();
    duet_sampler *s1 = duet_sampler_new(&hot, duet_vocab_n(v));
    duet_strategy *bad;
    cr_assert_lt(duet_strategy_speculative(&bad, tl, dl, s1, &spp, &err), 0);
    cr_assert(strstr(err.msg, "greedy"), "%s", err.msg);

    duet_strategy_free(plain), duet_strategy_free(spec);
    duet_sampler_free(g), duet_sampler_free(s1);
    duet_lm_free(ref), duet_lm_free(tl), duet_lm_free(dl);
    duet_model_free(dm);
    duet_remote_free(r);
    duet_vocab_free(v);
    free(prompt);
}

Test(remote, a_different_vocabulary_is_refused_for_verification) {
    char url[128], vpath[512];
    start_server(url, sizeof url);
    duet_err err = {0};
    duet_vocab *other;
    cr_assert_eq(duet_vocab_load_file(&other, tu_data("vocab/ggml-vocab-qwen2.gguf", vpath, sizeof vpath), &err), 0);
    duet_remote *r = open_remote(url, NULL, 0);
    duet_remote_caps caps;
    cr_assert_eq(duet_remote_probe(r, other, &caps, &err), 0, "%s", err.msg);
    cr_assert(caps.reachable);
    cr_assert(!caps.same_vocab && !caps.prompt_logprobs, "%s", caps.report);
    cr_assert(strstr(caps.report, "VOCABULARY DIFFERS"), "%s", caps.report);
    duet_remote_free(r);
    duet_vocab_free(other);
}

Test(remote, private_mode_sends_nothing) {
    char url[128], log[] = "/tmp/duet_egress_XXXXXX";
    start_server(url, sizeof url);
    int fd = mkstemp(log);
    close(fd);
    duet_remote *r = open_remote(url, log, 1);
    duet_err err = {0};
    float lp[4];
    const int32_t tok[4] = {1, 2, 3, 4};
    cr_assert_eq(duet_remote_score(r, tok, 4, lp, 0, NULL, NULL, &err), DUET_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "private mode"), "%s", err.msg);
    long calls;
    duet_remote_counts(r, &calls, NULL, NULL, NULL, NULL);
    cr_assert_eq(calls, 0);
    size_t len = 0;
    char *body = tu_slurp(log, &len);
    cr_assert_eq(len, 0, "the egress log has %zu bytes in private mode", len);
    free(body);
    /* and the server saw no completion request */
    char cmd[256], *out = NULL;
    snprintf(cmd, sizeof cmd, "curl -s %s/metrics", url);
    FILE *p = popen(cmd, "r");
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    pclose(p);
    cr_assert(!strstr(buf, "status=\"2xx\"} 1"), "the server counted a request: %s", buf);
    (void)out;
    duet_remote_free(r);
    /* the same remote out of private mode logs what it sends */
    r = open_remote(url, log, 0);
    cr_assert_eq(duet_remote_score(r, tok, 4, lp, 0, NULL, NULL, &err), 0, "%s", err.msg);
    body = tu_slurp(log, &len);
    cr_assert(body && strstr(body, "\"prompt\":[1,2,3,4]"), "egress log: %s", body ? body : "");
    free(body);
    duet_remote_free(r);
    unlink(log);
}

Test(remote, a_stalled_server_trips_the_timeout_and_a_dead_one_the_breaker) {
    /* a socket that listens and never answers */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(s, 8), 0);
    socklen_t al = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &al);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(a.sin_port));
    duet_remote_params p = duet_remote_default_params();
    p.url = url, p.model = "llm", p.timeout_s = 0.5, p.retries = 0, p.breaker_failures = 2, p.breaker_open_s = 30;
    duet_remote *r;
    duet_err err = {0};
    cr_assert_eq(duet_remote_open(&r, &p, &err), 0);
    float lp[2];
    const int32_t tok[2] = {1, 2};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(duet_remote_score(r, tok, 2, lp, 0, NULL, NULL, &err), DUET_EIO);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double dt = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    cr_assert(dt >= 0.4 && dt < 3, "the call took %.2f s for a 0.5 s timeout", dt);
    cr_assert_eq(duet_remote_score(r, tok, 2, lp, 0, NULL, NULL, &err), DUET_EIO);
    /* two failures: the breaker is open, the next call fails at once */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(duet_remote_score(r, tok, 2, lp, 0, NULL, NULL, &err), DUET_EIO);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_assert_lt((t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9, 0.1);
    cr_assert(strstr(err.msg, "not calling it"), "%s", err.msg);
    long refused;
    duet_remote_counts(r, NULL, NULL, NULL, &refused, NULL);
    cr_assert_eq(refused, 1);
    duet_remote_free(r);
    close(s);
}

/* The server dies in the middle of an answer: the local SLM finishes it
 * from the text so far; every token is delivered once, the answer says it
 * was degraded, and the breaker keeps later calls from waiting on the dead
 * endpoint. */
typedef struct {
    collected c;
    int kill_after;
} killer;

static int collect_then_kill(void *user, const duet_token_out *t) {
    killer *k = user;
    if (k->c.n < 128) k->c.ids[k->c.n++] = t->id;
    if (k->c.n == k->kill_after) stop_server();
    return 0;
}

Test(remote, the_server_killed_mid_answer_leaves_it_answered_degraded) {
    char url[128];
    start_server(url, sizeof url);
    duet_err err = {0};
    duet_vocab *v;
    cr_assert_eq(duet_vocab_load_file(&v, LLM, &err), 0);
    duet_remote_params p = duet_remote_default_params();
    p.url = url, p.model = "llm", p.timeout_s = 5, p.retries = 1, p.connect_timeout_s = 1;
    duet_remote *r;
    cr_assert_eq(duet_remote_open(&r, &p, &err), 0);
    duet_lm *rl, *sl;
    cr_assert_eq(duet_lm_remote_new(&rl, r, duet_vocab_n(v), 512, "remote-llm", &err), 0);
    duet_model *sm = tu_load_path(DRAFT);
    cr_assert_eq(duet_lm_local_new(&sl, sm, 256, "slm", &err), 0);
    duet_sampler_params sp = duet_sampler_default_params();
    sp.temp = 0;
    duet_sampler *g1 = duet_sampler_new(&sp, duet_vocab_n(v)), *g2 = duet_sampler_new(&sp, duet_vocab_n(v));
    duet_strategy *remote_plain, *local_plain, *fb;
    cr_assert_eq(duet_strategy_plain(&remote_plain, rl, g1, &err), 0, "%s", err.msg);
    cr_assert_eq(duet_strategy_plain(&local_plain, sl, g2, &err), 0);
    cr_assert_eq(duet_strategy_fallback(&fb, remote_plain, local_plain, &err), 0);
    const int32_t prompt[5] = {311, 260, 785, 338, 305};
    killer k = {.kill_after = 6};
    duet_request q = {.prompt = prompt, .n_prompt = 5, .max_new = 20, .emit = collect_then_kill, .user = &k};
    cr_assert_eq(duet_run(fb, &q, &err), DUET_FINISH_LENGTH, "%s", err.msg);
    cr_assert_eq(k.c.n, 20, "%d tokens delivered of 20", k.c.n);
    duet_stats st;
    duet_strategy_stats(fb, &st);
    cr_assert_eq(st.degraded, 1);
    cr_assert_eq(st.by_origin[DUET_BY_TARGET], 6, "the remote wrote %d tokens", st.by_origin[DUET_BY_TARGET]);
    cr_assert_eq(st.by_origin[DUET_BY_SLM], 14);
    cr_assert(duet_strategy_fallback_reason(fb) != NULL);
    cr_log_info("degraded after 6 tokens: %s", duet_strategy_fallback_reason(fb));
    /* the SLM's part continues the same text: equal to the SLM's greedy run from prompt + the 6 remote tokens */
    int32_t ctx[11];
    memcpy(ctx, prompt, sizeof prompt);
    memcpy(ctx + 5, k.c.ids, sizeof(int32_t) * 6);
    collected rest = {0};
    duet_request q2 = {.prompt = ctx, .n_prompt = 11, .max_new = 14, .emit = collect, .user = &rest};
    cr_assert_eq(duet_run(local_plain, &q2, &err), DUET_FINISH_LENGTH);
    cr_assert_arr_eq(rest.ids, k.c.ids + 6, sizeof(int32_t) * 14);
    duet_strategy_free(fb), duet_strategy_free(remote_plain), duet_strategy_free(local_plain);
    duet_sampler_free(g1), duet_sampler_free(g2);
    duet_lm_free(rl), duet_lm_free(sl);
    duet_model_free(sm);
    duet_remote_free(r);
    duet_vocab_free(v);
}

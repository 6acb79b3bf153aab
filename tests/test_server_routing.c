/* The routing profiles of duet serve (issue 12: duet-route-<share>,
 * duet-cascade, duet-defer-<eta>) over real HTTP, against the server's own
 * plain profiles as the reference:
 *
 *  - duet-route-0 answers exactly as the slm profile, duet-route-1 exactly as
 *    the llm profile (greedy), and the accounting says who answered, with the
 *    router's score and every signal (finite, by name);
 *  - streamed, every token of duet-route-0 is tagged as the SLM's, and the
 *    text equals the non-streamed one;
 *  - duet-defer-0 is the slm profile's text with no token deferred; at a
 *    high eta tokens are deferred and tagged so;
 *  - a route profile of a config file with a fitted router
 *    (bench/data/router-logistic.txt, fitted for models/slm.gguf) reports
 *    the score that router gives the reported signals; a malformed router
 *    file stops the server at start-up with a message naming the field. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "duet/strategy.h"
#include "http_util.h"
#include "server_util.h"
#include "testutil.h"

#define ROUTER DUET_SRC_DIR "/bench/data/router-logistic.txt"
#define PROMPT "once upon a time, there was a little girl named lily. she"

TestSuite(server_routing, .fini = su_kill_all);

/* POST a completion to profile `model`; the parsed response (asserts 200). */
static cJSON *complete(const su_server *s, const char *model, int stream, char **raw) {
    char body_json[512], url[128];
    snprintf(body_json, sizeof body_json,
             "{\"model\": \"%s\", \"prompt\": \"" PROMPT "\", \"max_tokens\": 16, \"temperature\": 0, "
             "\"stream\": %s}",
             model, stream ? "true" : "false");
    snprintf(url, sizeof url, "%s/v1/completions", s->base);
    CURL *c = curl_easy_init();
    body b = {0};
    long status = 0;
    cr_assert_eq(http_exchange(c, url, body_json, 300, &b, &status), CURLE_OK);
    curl_easy_cleanup(c);
    cr_assert_eq(status, 200, "%s: HTTP %ld: %s", model, status, b.buf ? b.buf : "");
    if (stream) {
        *raw = b.buf;
        return NULL;
    }
    cJSON *j = cJSON_Parse(b.buf);
    cr_assert(j, "%s: not JSON: %s", model, b.buf);
    free(b.buf);
    return j;
}

static const char *text_of(const cJSON *j) {
    const cJSON *t = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0), "text");
    cr_assert(cJSON_IsString(t));
    return t->valuestring;
}

static const cJSON *decision(const cJSON *j) {
    const cJSON *d = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "duet"), "decisions"), 0);
    cr_assert(cJSON_IsObject(d), "no decision in the accounting");
    return d;
}

/* The decision's signals, every one by name and finite, into sig. */
static void signals_of(const cJSON *d, float sig[DUET_ROUTE_NSIG]) {
    const cJSON *sg = cJSON_GetObjectItem(d, "signals");
    cr_assert(cJSON_IsObject(sg));
    for (int k = 0; k < DUET_ROUTE_NSIG; k++) {
        const cJSON *v = cJSON_GetObjectItem(sg, duet_signal_name(k));
        cr_assert(cJSON_IsNumber(v) && isfinite(v->valuedouble), "signal %s", duet_signal_name(k));
        sig[k] = (float)v->valuedouble;
    }
}

/* The streamed text (the deltas joined) and the count of tokens tagged `by`
 * against all tokens. */
static char *stream_text(const char *raw, const char *by, int *n_by, int *n_all) {
    size_t cap = strlen(raw) + 1, len = 0;
    char *out = calloc(cap, 1);
    *n_by = *n_all = 0;
    for (const char *p = strstr(raw, "data: "); p; p = strstr(p + 1, "data: ")) {
        const char *e = strstr(p, "\n\n");
        if (!e || !strncmp(p + 6, "[DONE]", 6)) break;
        cJSON *j = cJSON_ParseWithLength(p + 6, (size_t)(e - p - 6));
        cr_assert(j, "a bad event: %.*s", (int)(e - p), p);
        const cJSON *t = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0), "text");
        if (cJSON_IsString(t)) {
            memcpy(out + len, t->valuestring, strlen(t->valuestring));
            len += strlen(t->valuestring);
        }
        const cJSON *toks = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "duet"), "tokens");
        for (const cJSON *k = toks ? toks->child : NULL; k; k = k->next) {
            (*n_all)++;
            *n_by += !strcmp(cJSON_GetObjectItem(k, "by")->valuestring, by);
        }
        cJSON_Delete(j);
    }
    return out;
}

Test(server_routing, route_and_defer_at_their_extremes, .timeout = 600) {
    su_server s;
    su_start(&s, NULL); /* llm + slm-draft: profiles llm, slm, duet-route, duet-cascade, duet-defer */
    cJSON *slm = complete(&s, "slm", 0, NULL), *llm = complete(&s, "llm", 0, NULL);
    cr_assert_str_neq(text_of(slm), text_of(llm), "the two models must differ on this prompt");

    cJSON *r0 = complete(&s, "duet-route-0", 0, NULL), *r1 = complete(&s, "duet-route-1", 0, NULL);
    cr_assert_str_eq(text_of(r0), text_of(slm));
    cr_assert_str_eq(text_of(r1), text_of(llm));
    float sig[DUET_ROUTE_NSIG];
    cr_assert_str_eq(cJSON_GetObjectItem(decision(r0), "answered_by")->valuestring, "slm");
    cr_assert_str_eq(cJSON_GetObjectItem(decision(r1), "answered_by")->valuestring, "llm");
    signals_of(decision(r0), sig);
    /* the default router is a threshold on the SLM's top-1 probability: its score is that signal */
    cr_assert_float_eq(cJSON_GetObjectItem(decision(r0), "router_score")->valuedouble, sig[DUET_SIG_NEG_TOP1], 1e-6);
    cr_assert(sig[DUET_SIG_NEG_TOP1] < 0 && sig[DUET_SIG_NEG_TOP1] >= -1);

    char *raw = NULL;
    complete(&s, "duet-route-0", 1, &raw);
    int n_slm, n_all;
    char *streamed = stream_text(raw, "slm", &n_slm, &n_all);
    cr_assert_str_eq(streamed, text_of(slm), "streamed and whole texts differ");
    cr_assert_gt(n_all, 0);
    cr_assert_eq(n_slm, n_all, "%d of %d streamed tokens tagged as the SLM's", n_slm, n_all);
    free(raw), free(streamed);

    cJSON *d0 = complete(&s, "duet-defer-0", 0, NULL), *d9 = complete(&s, "duet-defer-0.99", 0, NULL);
    cr_assert_str_eq(text_of(d0), text_of(slm));
    cr_assert_eq(cJSON_GetObjectItem(decision(d0), "deferred_tokens")->valueint, 0);
    cr_assert_gt(cJSON_GetObjectItem(decision(d9), "deferred_tokens")->valueint, 0);
    complete(&s, "duet-defer-0.99", 1, &raw);
    int n_def;
    streamed = stream_text(raw, "defer", &n_def, &n_all);
    cr_assert_str_eq(streamed, text_of(d9));
    cr_assert_eq(n_def, cJSON_GetObjectItem(decision(d9), "deferred_tokens")->valueint, "%d tokens tagged deferred",
                 n_def);
    free(raw), free(streamed);
    cJSON_Delete(slm), cJSON_Delete(llm), cJSON_Delete(r0), cJSON_Delete(r1), cJSON_Delete(d0), cJSON_Delete(d9);
    su_stop(&s);
}

static char *write_config(const char *router) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/duet_route_cfg_%d.json", (int)getpid());
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f,
            "{\"host\": \"127.0.0.1\", \"port\": 0, \"threads\": 1, \"slots\": 2,"
            " \"models\": {\"llm\": {\"path\": \"%s/models/llm.gguf\"}, \"slm\": {\"path\": \"%s/models/slm.gguf\"}},"
            " \"profiles\": [{\"name\": \"fitted\", \"strategy\": \"route\", \"model\": \"llm\", \"slm\": \"slm\","
            " \"llm_share\": 0.5, \"router\": \"%s\"}]}",
            DUET_SRC_DIR, DUET_SRC_DIR, router);
    fclose(f);
    return path;
}

Test(server_routing, a_fitted_router_from_the_config, .timeout = 600) {
    su_server s;
    char *log = NULL;
    const char *cfg = write_config(ROUTER);
    cr_assert_lt(su_start_config(&s, cfg, &log), 0, "the server did not start: %s", log ? log : "");
    cJSON *j = complete(&s, "fitted", 0, NULL);
    float sig[DUET_ROUTE_NSIG];
    signals_of(decision(j), sig);
    duet_router r;
    duet_err err = {0};
    cr_assert_eq(duet_router_load(&r, ROUTER, &err), 0, "%s", err.msg);
    cr_assert_eq(r.kind, DUET_ROUTER_LOGISTIC);
    const double got = cJSON_GetObjectItem(decision(j), "router_score")->valuedouble;
    cr_assert_float_eq(got, duet_router_score(&r, sig), 1e-6, "score %g, the router says %g", got,
                       duet_router_score(&r, sig));
    cr_assert(got > 0 && got < 1, "a logistic score: %g", got);
    duet_router_free(&r);
    cJSON_Delete(j);
    su_stop(&s);

    /* a malformed router file: the server refuses to start, naming the field */
    char bad[64];
    snprintf(bad, sizeof bad, "/tmp/duet_route_bad_%d.txt", (int)getpid());
    FILE *f = fopen(bad, "w");
    fputs("duet-router v2\nkind logistic\nw 1 2\n", f);
    fclose(f);
    free(log), log = NULL;
    const int st = su_start_config(&s, write_config(bad), &log);
    cr_assert_geq(st, 0, "the server started with a bad router file");
    cr_assert(log && strstr(log, "router") && strstr(log, ":3:"), "the message names the field and line: %s",
              log ? log : "");
    free(log);
    unlink(bad), unlink(cfg);
}

/* A server profile's privacy pipeline (issue 14, docs/server.md "Privacy
 * pipeline"): duet serve --config with "pipeline": ["redact"] in front of a
 * remote model.
 *
 *  - a bad pipeline in the config stops the server at start-up (exit 2) with
 *    a message naming the field;
 *  - against a second duet serve on loopback, no planted value of 20 prompts
 *    of tests/data/privacy/prompts.jsonl reaches the egress log (the same
 *    prompts on a profile without the pipeline do: the check can fail);
 *  - an endpoint whose answer quotes placeholders (fake_endpoint.h) has them
 *    restored, completions and chat, streamed and not, the two equal, and
 *    the accounting counts them; without the pipeline the client gets the
 *    placeholders as they came. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "duet/tok.h"
#include "egress_text.h"
#include "fake_endpoint.h"
#include "server_util.h"
#include "testutil.h"

#define NAMES DUET_SRC_DIR "/tests/data/privacy/names.txt"
#define PROMPTS DUET_SRC_DIR "/tests/data/privacy/prompts.jsonl"
#define N_PROMPTS 20

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* ---- HTTP: one POST, the whole body back ---- */

typedef struct {
    char *p;
    size_t n;
} buf;

static size_t on_bytes(char *d, size_t sz, size_t nm, void *ud) {
    buf *b = ud;
    char *t = realloc(b->p, b->n + sz * nm + 1);
    if (!t) return 0;
    memcpy(t + b->n, d, sz * nm);
    b->p = t, b->n += sz * nm, b->p[b->n] = 0;
    return sz * nm;
}

/* POST body to base + path; the response body (malloc'd), *status its code. */
static char *post(const char *base, const char *path, const char *body, long *status) {
    CURL *c = curl_easy_init();
    cr_assert(c);
    char url[256];
    snprintf(url, sizeof url, "%s%s", base, path);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    buf b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 120000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_bytes);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    const CURLcode rc = curl_easy_perform(c);
    cr_assert_eq(rc, CURLE_OK, "POST %s: %s", url, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return b.p ? b.p : strdup("");
}

/* The answer of a completion or chat response, streamed (SSE: the deltas
 * joined) or not, and the accounting's "pipeline" object (a copy). */
static char *answer_of(const char *resp, int chat, int stream, cJSON **pipeline) {
    size_t cap = 4096, len = 0;
    char *text = calloc(cap, 1);
    *pipeline = NULL;
    char *copy = strdup(resp);
    char *line = stream ? strtok(copy, "\n") : copy;
    for (; line; line = stream ? strtok(NULL, "\n") : NULL) {
        const char *js = line;
        if (stream) {
            if (strncmp(line, "data: ", 6) || !strcmp(line, "data: [DONE]")) continue;
            js = line + 6;
        }
        cJSON *o = cJSON_Parse(js);
        cr_assert(o, "not JSON: %s", js);
        const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
        const cJSON *t = !ch ? NULL
                         : chat ? cJSON_GetObjectItem(cJSON_GetObjectItem(ch, stream ? "delta" : "message"), "content")
                                : cJSON_GetObjectItem(ch, "text");
        if (cJSON_IsString(t)) {
            const size_t n = strlen(t->valuestring);
            if (len + n + 1 > cap) text = realloc(text, cap = 2 * (len + n + 1));
            memcpy(text + len, t->valuestring, n + 1), len += n;
        }
        const cJSON *du = cJSON_GetObjectItem(o, "duet");
        const cJSON *acc = stream ? cJSON_GetObjectItem(du, "accounting") : du;
        const cJSON *p = cJSON_GetObjectItem(acc, "pipeline");
        if (p) cJSON_Delete(*pipeline), *pipeline = cJSON_Duplicate(p, 1);
        cJSON_Delete(o);
        if (!stream) break;
    }
    free(copy);
    return text;
}

/* ---- the config checks ---- */

Test(server_pipeline, bad_configs_name_the_field, .timeout = 120) {
    static const struct {
        const char *profile, *needle;
    } cases[] = {
        {"\"pipeline\": [\"redact\", \"shuffle\"]", "profiles[0].pipeline[1]: unknown stage 'shuffle'"},
        {"\"pipeline\": \"redact\"", "profiles[0].pipeline must be an array"},
        {"\"pipeline\": []", "profiles[0].pipeline names no stage"},
        {"\"pipeline\": [\"compress\"]", "profiles[0].compress_model is needed"},
        {"\"pipeline\": [\"compress\"], \"compress_model\": \"cloud\"", "profiles[0].compress_model 'cloud' is remote"},
        {"\"pipeline\": [\"compress\"], \"compress_model\": \"nope\"", "profiles[0].compress_model must name"},
        {"\"pipeline\": [\"compress\"], \"compress_model\": \"slm\", \"compress_ratio\": 0", "profiles[0].compress_ratio"},
        {"\"pipeline\": [\"compress\"], \"compress_model\": \"slm\", \"compress_ratio\": 1.5", "profiles[0].compress_ratio"},
        {"\"pipeline\": [\"redact\"], \"compress_ratio\": 0.5", "profiles[0].compress_ratio needs the compress stage"},
        {"\"pipeline\": [\"compress\"], \"compress_model\": \"slm\", \"pii_names\": \"" NAMES "\"",
         "profiles[0].pii_names needs the redact stage"},
        {"\"pii_names\": \"" NAMES "\"", "profiles[0].pii_names needs \"pipeline\""},
        {"\"pipeline\": [\"redact\"], \"pii_names\": \"/nonexistent/names.txt\"", "profiles[0].pii_names"},
    };
    char cfg[] = "/tmp/duet_srvpipe_cfg_XXXXXX";
    close(mkstemp(cfg));
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char text[2048];
        snprintf(text, sizeof text,
                 "{\"host\": \"127.0.0.1\", \"port\": 0, \"threads\": 1, \"models\": {\"slm\": {\"path\": \"%s\"}, "
                 "\"cloud\": {\"remote\": \"http://127.0.0.1:9\"}}, \"profiles\": [{\"name\": \"p\", \"model\": "
                 "\"cloud\", %s}]}",
                 SU_DRAFT, cases[i].profile);
        write_text(cfg, text);
        su_server s;
        char *log = NULL;
        const int st = su_start_config(&s, cfg, &log);
        if (st == -1) su_kill(&s);
        cr_expect(st == 2 && log && strstr(log, cases[i].needle), "%s: want exit 2 naming '%s'; got %d: %s",
                  cases[i].profile, cases[i].needle, st, log ? log : "(listening)");
        free(log);
    }
    unlink(cfg);
}

/* ---- nothing planted reaches the remote ---- */

/* The config of an edge server: the SLM local, "cloud" at remote_base, a
 * profile without the pipeline, one that redacts, one that redacts and
 * compresses. */
static void edge_config(const char *path, const char *remote_base, const char *egress) {
    char text[4096];
    snprintf(text, sizeof text,
             "{\"host\": \"127.0.0.1\", \"port\": 0, \"threads\": 1, \"slots\": 2, \"egress_log\": \"%s\",\n"
             " \"models\": {\"slm\": {\"path\": \"%s\"},\n"
             "            \"cloud\": {\"remote\": \"%s\", \"model\": \"llm\", \"timeout_s\": 30}},\n"
             " \"profiles\": [{\"name\": \"cloud\", \"strategy\": \"plain\", \"model\": \"cloud\"},\n"
             "              {\"name\": \"cloud-private\", \"strategy\": \"plain\", \"model\": \"cloud\",\n"
             "               \"pipeline\": [\"redact\"], \"pii_names\": \"%s\"},\n"
             "              {\"name\": \"cloud-compress\", \"strategy\": \"plain\", \"model\": \"cloud\",\n"
             "               \"pipeline\": [\"redact\", \"compress\"], \"pii_names\": \"%s\",\n"
             "               \"compress_ratio\": 0.6, \"compress_model\": \"slm\"}]}\n",
             egress, SU_DRAFT, remote_base, NAMES, NAMES);
    write_text(path, text);
}

Test(server_pipeline, nothing_planted_reaches_the_remote, .timeout = 400) {
    su_server remote, edge;
    su_start(&remote, NULL);
    char cfg[] = "/tmp/duet_srvpipe_cfg_XXXXXX", egress[] = "/tmp/duet_srvpipe_egress_XXXXXX";
    close(mkstemp(cfg)), close(mkstemp(egress));
    edge_config(cfg, remote.base, egress);
    char *log = NULL;
    cr_assert_eq(su_start_config(&edge, cfg, &log), -1, "%s", log);
    duet_vocab *v;
    duet_err e = {0};
    cr_assert_eq(duet_vocab_load_file(&v, SU_DRAFT, &e), 0, "%s", e.msg);

    char *all = tu_slurp(PROMPTS, NULL);
    cr_assert(all);
    cJSON *set[N_PROMPTS];
    int n = 0, n_values = 0;
    for (char *line = strtok(all, "\n"); line && n < N_PROMPTS; line = strtok(NULL, "\n")) {
        set[n] = cJSON_Parse(line);
        cr_assert(set[n], "%s", line);
        n_values += cJSON_GetArraySize(cJSON_GetObjectItem(set[n++], "pii"));
    }
    cr_assert_eq(n, N_PROMPTS);
    /* the pipeline profiles first: what went out by then is their requests' (and the probe's) */
    for (int pass = 0; pass < 3; pass++) {
        const char *profile = pass == 0 ? "cloud-private" : pass == 1 ? "cloud-compress" : "cloud";
        for (int i = 0; i < n; i++) {
            cJSON *req = cJSON_CreateObject();
            cJSON_AddStringToObject(req, "model", profile);
            cJSON_AddStringToObject(req, "prompt", cJSON_GetObjectItem(set[i], "prompt")->valuestring);
            cJSON_AddNumberToObject(req, "max_tokens", 2);
            cJSON_AddNumberToObject(req, "temperature", 0);
            char *body = cJSON_PrintUnformatted(req);
            long status = 0;
            char *resp = post(edge.base, "/v1/completions", body, &status);
            cr_assert_eq(status, 200, "%s: %s", profile, resp);
            cJSON *o = cJSON_Parse(resp);
            const cJSON *du = cJSON_GetObjectItem(o, "duet");
            cr_assert(!cJSON_IsTrue(cJSON_GetObjectItem(du, "degraded")), "the remote did not answer: %s", resp);
            const cJSON *p = cJSON_GetObjectItem(du, "pipeline");
            if (pass < 2) /* every planted value was found (the set's decoys are not PII) */
                cr_assert_geq(cJSON_GetObjectItem(p, "redacted")->valueint,
                              cJSON_GetArraySize(cJSON_GetObjectItem(set[i], "pii")), "%s", resp);
            if (pass == 1) { /* compress sent fewer tokens than the redacted prompt has */
                const int in = cJSON_GetObjectItem(p, "tokens_in")->valueint;
                const int kept = cJSON_GetObjectItem(p, "tokens_kept")->valueint;
                cr_assert(kept > 0 && kept < in, "compress kept %d of %d tokens: %s", kept, in, resp);
            }
            if (pass == 2)
                cr_assert_null(p, "a profile without the pipeline reports one: %s", resp);
            cJSON_Delete(o), free(resp), free(body), cJSON_Delete(req);
        }
        int n_lines;
        char *sent = egress_text(egress, v, &n_lines);
        cr_assert_geq(n_lines, n, "%d requests, %d egress lines with a prompt", n, n_lines);
        int leaked = 0;
        for (int i = 0; i < n; i++) {
            const cJSON *pii = cJSON_GetObjectItem(set[i], "pii");
            for (const cJSON *x = pii->child; x; x = x->next) {
                const int in = holds(sent, x);
                if (pass < 2) cr_expect(!in, "%s, prompt %d: '%s' reached the remote", profile, i,
                                        cJSON_GetObjectItem(x, "value")->valuestring);
                leaked += in;
            }
        }
        if (pass < 2) cr_assert(strstr(sent, "<EMAIL_1>") && strstr(sent, "<IBAN_1>"), "no placeholders went out");
        else cr_assert_eq(leaked, n_values, "without the pipeline every value goes out (%d of %d did)", leaked,
                          n_values);
        free(sent);
    }
    for (int i = 0; i < n; i++) cJSON_Delete(set[i]);
    free(all);
    duet_vocab_free(v);
    su_stop(&edge);
    su_stop(&remote);
    unlink(cfg), unlink(egress);
}

/* ---- the answer comes back restored ---- */

static const char *const answer_pieces[] = {"dear ", "<EM", "AIL_1> and <NA", "ME_1> at <IP", "_1", ">.", " <EMAIL_2> <",
                                            "EMAIL_1>"};
#define ANSWER_RAW "dear <EMAIL_1> and <NAME_1> at <IP_1>. <EMAIL_2> <EMAIL_1>"
#define ANSWER_RESTORED "dear bob@example.com and lily at 10.0.0.1. <EMAIL_2> bob@example.com"
#define ASKED "mail bob@example.com, tell lily, from 10.0.0.1"

Test(server_pipeline, placeholders_in_the_answer_are_restored, .timeout = 240) {
    fake_endpoint f;
    fake_start(&f, answer_pieces, (int)(sizeof answer_pieces / sizeof *answer_pieces));
    char base[64], cfg[] = "/tmp/duet_srvpipe_cfg_XXXXXX", egress[] = "/tmp/duet_srvpipe_egress_XXXXXX";
    snprintf(base, sizeof base, "http://127.0.0.1:%d", f.port);
    close(mkstemp(cfg)), close(mkstemp(egress));
    edge_config(cfg, base, egress);
    su_server edge;
    char *log = NULL;
    cr_assert_eq(su_start_config(&edge, cfg, &log), -1, "%s", log);
    int requests = 0;
    for (int chat = 0; chat < 2; chat++)
        for (int piped = 0; piped < 3; piped++) { /* cloud, cloud-private, cloud-compress */
            const char *profile = piped == 0 ? "cloud" : piped == 1 ? "cloud-private" : "cloud-compress";
            char *got[2];
            for (int stream = 0; stream < 2; stream++) {
                char body[1024];
                if (chat)
                    snprintf(body, sizeof body,
                             "{\"model\": \"%s\", \"messages\": [{\"role\": \"user\", \"content\": \"%s\"}], "
                             "\"max_tokens\": 64, \"temperature\": 0, \"stream\": %s}",
                             profile, ASKED, stream ? "true" : "false");
                else
                    snprintf(body, sizeof body,
                             "{\"model\": \"%s\", \"prompt\": \"%s\", \"max_tokens\": 64, \"temperature\": 0, "
                             "\"stream\": %s}",
                             profile, ASKED, stream ? "true" : "false");
                long status = 0;
                char *resp = post(edge.base, chat ? "/v1/chat/completions" : "/v1/completions", body, &status);
                cr_assert_eq(status, 200, "%s", resp);
                requests++;
                cJSON *p;
                got[stream] = answer_of(resp, chat, stream, &p);
                cr_assert_str_eq(got[stream], piped ? ANSWER_RESTORED : ANSWER_RAW, "%s %s%s: %s", profile,
                                 chat ? "chat" : "completion",
                                 stream ? " streamed" : "", resp);
                if (piped) { /* 3 values out; EMAIL_1 twice, NAME_1, IP_1 back; EMAIL_2 is none of this request's */
                    cr_assert(p, "no duet.pipeline: %s", resp);
                    cr_assert_eq(cJSON_GetObjectItem(p, "redacted")->valueint, 3, "%s", resp);
                    cr_assert_eq(cJSON_GetObjectItem(p, "restored")->valueint, 4, "%s", resp);
                    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(p, "redacted_by_kind"), "NAME")->valueint, 1);
                } else {
                    cr_assert_null(p, "%s", resp);
                }
                cJSON_Delete(p), free(resp);
            }
            cr_assert_str_eq(got[0], got[1], "streamed and whole differ");
            free(got[0]), free(got[1]);
        }
    cr_assert_eq(f.streams, requests, "every request was answered by the endpoint");
    /* a token-id prompt cannot be redacted: refused, naming the field */
    long status = 0;
    char *resp = post(edge.base, "/v1/completions", "{\"model\": \"cloud-private\", \"prompt\": [1, 2, 3]}", &status);
    cr_assert(status == 400 && strstr(resp, "\"param\":\"prompt\"") && strstr(resp, "send text"), "%ld %s", status,
              resp);
    free(resp);
    su_stop(&edge);
    fake_stop(&f);
    unlink(cfg), unlink(egress);
}

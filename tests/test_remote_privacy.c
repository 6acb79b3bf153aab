/* The privacy pipeline end to end against duet's own server on loopback:
 * every prompt of the privacy set (tests/data/privacy, 240 prompts with
 * planted PII of every kind) is redacted on the device, sent to the remote
 * LLM for a short greedy answer through the egress-logged client, and the
 * answer restored as it streams. Asserted: no planted value appears
 * anywhere in the egress log, neither in its bytes nor in the text its
 * token ids spell; what left the device restores to the original prompt;
 * the streamed restore equals the whole-text one; and wherever the answer
 * holds a placeholder, the restored answer holds the value.
 *
 * The shipped models never write an upper-case placeholder of their own
 * (they learned lower-case stories), so the last check also runs on
 * answers that do hold them: the server's echo of the prompt
 * (`"echo": true`), which a real LLM's quoting of its prompt stands for. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "duet/redact.h"
#include "duet/remote.h"
#include "duet/tok.h"
#include "egress_text.h"
#include "http_util.h"
#include "server_util.h"
#include "testutil.h"

#define LLM DUET_SRC_DIR "/models/llm.gguf"
#define SET DUET_SRC_DIR "/tests/data/privacy/prompts.jsonl"
#define NAMES DUET_SRC_DIR "/tests/data/privacy/names.txt"
#define N_NEW 3       /* tokens per answer: enough to check the path, short enough for 240 prompts */
/* The whole set in a normal build; every 30th prompt under the sanitizers,
 * whose unoptimized server takes seconds an answer. */
#define STEP (SANITIZED ? 30 : 1)
#define ECHO_EVERY 3  /* the echo check on every 3rd prompt (80 of 240: 1-4 values, every kind) */

static su_server server;

static void stop_server(void) { su_end(&server); }

/* Starts `duet serve -m LLM` on a free port; returns the base URL. */
static void start_server(char *url, size_t cap) {
    su_serve(&server, NULL, "-t 2 --slots 1");
    snprintf(url, cap, "%s", server.base);
}

/* ---- text helpers ---- */

typedef struct {
    char *p;
    size_t len, cap;
} text_buf;

static void put(text_buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        cr_assert(b->p);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

/* The streamed answer: raw (as the remote sent it) and restored piece by piece. */
typedef struct {
    text_buf raw, restored;
    duet_restore_stream *rs;
} answer;

static int on_piece(void *ud, int32_t id, const char *piece, int len) {
    answer *a = ud;
    (void)id;
    if (len <= 0) return 0;
    put(&a->raw, piece, (size_t)len);
    size_t n;
    const char *out = duet_restore_stream_push(a->rs, piece, (size_t)len, &n);
    cr_assert(out);
    put(&a->restored, out, n);
    return 0;
}

static char *restore_whole(const duet_redactor *r, const char *text) {
    char *out;
    duet_err err = {0};
    cr_assert_geq(duet_restore(r, text, strlen(text), &out, &err), 0, "%s", err.msg);
    return out;
}

/* Every planted value whose placeholder the text holds is in restored. */
static int check_placeholders_restored(const duet_redactor *r, const char *text, const char *restored, int prompt) {
    int seen = 0;
    for (int e = 0; e < duet_redact_count(r); e++) {
        const char *value, *ph;
        duet_redact_entry(r, e, NULL, &value, &ph);
        if (!strstr(text, ph)) continue;
        seen++;
        cr_assert(strstr(restored, value), "prompt %d: the answer holds %s but the restored one lacks '%s':\n%s", prompt,
                  ph, value, restored);
        cr_assert(!strstr(restored, ph) || strstr(value, ph), "prompt %d: %s left in the restored answer", prompt, ph);
    }
    return seen;
}

/* POST /v1/completions {"prompt": text, "echo": true, "max_tokens": 1}; the
 * response's text (the prompt echoed, then one token). */
static char *echo_completion(CURL *c, const char *url, const char *prompt) {
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "model", "llm");
    cJSON_AddStringToObject(req, "prompt", prompt);
    cJSON_AddNumberToObject(req, "max_tokens", 1);
    cJSON_AddNumberToObject(req, "temperature", 0);
    cJSON_AddBoolToObject(req, "echo", 1);
    char *req_text = cJSON_PrintUnformatted(req);
    char endpoint[256];
    snprintf(endpoint, sizeof endpoint, "%s/v1/completions", url);
    body resp = {0};
    const CURLcode rc = http_exchange(c, endpoint, req_text, 30, &resp, NULL);
    cr_assert_eq(rc, CURLE_OK, "%s", curl_easy_strerror(rc));
    cJSON *o = cJSON_Parse(resp.buf);
    cr_assert(o, "bad response: %s", resp.buf ? resp.buf : "");
    const cJSON *t = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0), "text");
    cr_assert(cJSON_IsString(t), "no text in %s", resp.buf);
    char *text = strdup(t->valuestring);
    cJSON_Delete(o), cJSON_Delete(req);
    free(req_text), free(resp.buf);
    return text;
}

TestSuite(remote_privacy, .fini = stop_server, .timeout = 300);

Test(remote_privacy, no_planted_value_leaves_the_device_and_answers_restore) {
    char url[128], log[] = "/tmp/duet_privacy_egress_XXXXXX";
    start_server(url, sizeof url);
    const int fd = mkstemp(log);
    cr_assert_geq(fd, 0);
    close(fd);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    duet_err err = {0};
    duet_vocab *v;
    cr_assert_eq(duet_vocab_load_file(&v, LLM, &err), 0, "%s", err.msg);
    duet_remote_params rp = duet_remote_default_params();
    rp.url = url, rp.model = "llm", rp.egress_log = log, rp.timeout_s = 30;
    duet_remote *remote;
    cr_assert_eq(duet_remote_open(&remote, &rp, &err), 0, "%s", err.msg);
    CURL *curl = curl_easy_init();
    cr_assert(curl);

    size_t set_len;
    char *set = tu_slurp(SET, &set_len);
    cr_assert(set, "cannot read %s", SET);
    cJSON *items[512];
    int n = 0;
    for (char *line = strtok(set, "\n"); line && n < 512; line = strtok(NULL, "\n")) {
        items[n] = cJSON_Parse(line);
        cr_assert(items[n], "bad line %d of %s", n + 1, SET);
        n++;
    }
    cr_assert_geq(n, 200);

    int answers_with_placeholders = 0, echoed = 0, echo_placeholders = 0, n_values = 0;
    long lines_before = 0;
    for (int i = 0; i < n; i += STEP) {
        const char *prompt = cJSON_GetObjectItem(items[i], "prompt")->valuestring;
        duet_redact_params p = duet_redact_default_params();
        p.names_file = NAMES;
        duet_redactor *r;
        cr_assert_eq(duet_redactor_new(&r, &p, &err), 0, "%s", err.msg);
        char *red;
        cr_assert_geq(duet_redact(r, prompt, strlen(prompt), &red, &err), 0, "%s", err.msg);
        n_values += duet_redact_count(r);

        /* redact -> remote generate (greedy, streamed) -> restore */
        int32_t *ids;
        const int n_ids = duet_tokenize_alloc(v, red, strlen(red), 0, &ids);
        cr_assert_gt(n_ids, 0);
        answer a = {.rs = duet_restore_stream_new(r)};
        duet_remote_gen_params gp = {.max_tokens = N_NEW, .temp = 0, .ignore_eos = 1};
        duet_remote_gen_stats gs;
        cr_assert_eq(duet_remote_generate(remote, ids, n_ids, &gp, on_piece, &a, &gs, &err), 0, "prompt %d: %s", i,
                     err.msg);
        size_t fn;
        const char *tail = duet_restore_stream_flush(a.rs, &fn);
        put(&a.restored, tail, fn);
        if (!a.raw.p) put(&a.raw, "", 0);
        char *whole = restore_whole(r, a.raw.p);
        cr_assert_str_eq(a.restored.p, whole, "prompt %d: streamed and whole-text restore differ", i);
        answers_with_placeholders += check_placeholders_restored(r, a.raw.p, whole, i) > 0;

        /* the echo: an answer that holds the prompt's placeholders */
        if (i % ECHO_EVERY == 0) {
            char *echo = echo_completion(curl, url, red);
            cr_assert(!strncmp(echo, red, strlen(red)), "prompt %d: the echo is not the prompt:\n%s\n%s", i, echo, red);
            char *back = restore_whole(r, echo);
            cr_assert(!strncmp(back, prompt, strlen(prompt)), "prompt %d: the restored echo is not the prompt", i);
            echo_placeholders += check_placeholders_restored(r, echo, back, i);
            echoed++;
            free(echo), free(back);
        }

        /* what left for this prompt: the new egress lines; their ids spell the redacted prompt */
        size_t log_len;
        char *egress = tu_slurp(log, &log_len);
        cr_assert(egress);
        long line_no = 0;
        for (char *line = strtok(egress, "\n"); line; line = strtok(NULL, "\n"), line_no++) {
            if (line_no < lines_before) continue;
            cJSON *o = cJSON_Parse(line);
            cr_assert(o, "egress line %ld is not JSON", line_no + 1);
            const cJSON *body = cJSON_GetObjectItem(o, "body");
            const cJSON *pr = cJSON_GetObjectItem(body, "prompt");
            cr_assert(cJSON_IsArray(pr), "egress line %ld has no prompt ids", line_no + 1);
            const int m = cJSON_GetArraySize(pr);
            int32_t *sent = malloc(sizeof *sent * (size_t)(m + 1));
            for (int k = 0; k < m; k++) sent[k] = (int32_t)cJSON_GetArrayItem(pr, k)->valuedouble;
            char text[8192];
            const int64_t tl = duet_detokenize(v, sent, m, text, sizeof text, 0);
            cr_assert(tl >= 0 && tl < (int64_t)sizeof text);
            cr_assert_str_eq(text, red, "prompt %d: the ids sent do not spell the redacted prompt", i);
            const cJSON *pii;
            cJSON_ArrayForEach(pii, cJSON_GetObjectItem(items[i], "pii")) {
                cr_assert(!holds(line, pii) && !holds(text, pii), "prompt %d: '%s' left the device", i,
                          cJSON_GetObjectItem(pii, "value")->valuestring);
            }
            char *back = restore_whole(r, text);
            cr_assert_str_eq(back, prompt, "prompt %d: what was sent does not restore to the prompt", i);
            free(back), free(sent);
            cJSON_Delete(o);
            lines_before = line_no + 1;
        }
        free(egress);
        free(whole), free(a.raw.p), free(a.restored.p), free(ids), free(red);
        duet_restore_stream_free(a.rs);
        duet_redactor_free(r);
    }
    const int n_run = (n + STEP - 1) / STEP; /* prompts sent */
    cr_assert_eq(lines_before, n_run, "%ld egress lines for %d prompts", lines_before, n_run);

    /* the whole egress log, as bytes and as the text its ids spell: no planted
     * value of any prompt (as a word: a short name may sit inside another
     * prompt's decoy) */
    size_t log_len;
    char *egress = tu_slurp(log, &log_len);
    cr_assert(egress && log_len > 0);
    text_buf spelled = {0};
    for (char *line = strtok(egress, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *pr = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "body"), "prompt");
        for (int k = 0; k < cJSON_GetArraySize(pr); k++) {
            char piece[64];
            const int pl = duet_token_to_piece(v, (int32_t)cJSON_GetArrayItem(pr, k)->valuedouble, piece, sizeof piece, 0);
            if (pl > 0) put(&spelled, piece, (size_t)pl);
        }
        put(&spelled, "\n", 1);
        cJSON_Delete(o);
    }
    free(egress);
    egress = tu_slurp(log, &log_len);
    int leaks = 0, checked = 0;
    for (int i = 0; i < n; i += STEP) {
        const cJSON *pii;
        cJSON_ArrayForEach(pii, cJSON_GetObjectItem(items[i], "pii")) {
            const char *value = cJSON_GetObjectItem(pii, "value")->valuestring;
            checked++;
            if (holds(egress, pii) || holds(spelled.p, pii)) {
                leaks++;
                cr_log_error("prompt %d: '%s' left the device", i, value);
            }
        }
    }
    cr_assert_eq(leaks, 0, "%d planted values in the egress log", leaks);
    /* the log is not vacuous: it holds every kind's placeholders (the
     * sanitizers' subset need not have every kind) */
    cr_assert(SANITIZED || (strstr(spelled.p, "<EMAIL_1>") && strstr(spelled.p, "<CARD_1>") &&
                            strstr(spelled.p, "<IBAN_1>") && strstr(spelled.p, "<NAME_1>") && strstr(spelled.p, "<URL_1>") &&
                            strstr(spelled.p, "<IP_1>") && strstr(spelled.p, "<PHONE_1>")));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_log_info("%d prompts, %d planted values (%d redacted): 0 in the egress log (%zu bytes, %ld requests); "
                "%d answers held a placeholder; %d echoed prompts restored %d placeholders; %.1f s",
                n_run, checked, n_values, log_len, lines_before, answers_with_placeholders, echoed, echo_placeholders,
                (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9);
    cr_assert_eq(n_values, checked, "the redactor found %d values, %d were planted", n_values, checked);
    cr_assert_gt(echo_placeholders, 0);

    /* the control: the same check on a prompt sent unredacted finds its values */
    char control_log[] = "/tmp/duet_privacy_control_XXXXXX";
    const int cfd = mkstemp(control_log);
    cr_assert_geq(cfd, 0);
    close(cfd);
    rp.egress_log = control_log;
    duet_remote *plain;
    cr_assert_eq(duet_remote_open(&plain, &rp, &err), 0, "%s", err.msg);
    const char *raw = cJSON_GetObjectItem(items[n - 1], "prompt")->valuestring;
    int32_t *raw_ids;
    const int n_raw = duet_tokenize_alloc(v, raw, strlen(raw), 0, &raw_ids);
    answer ca = {0};
    duet_redactor *none;
    cr_assert_eq(duet_redactor_new(&none, NULL, &err), 0);
    ca.rs = duet_restore_stream_new(none);
    duet_remote_gen_params one = {.max_tokens = 1, .temp = 0, .ignore_eos = 1};
    cr_assert_eq(duet_remote_generate(plain, raw_ids, n_raw, &one, on_piece, &ca, NULL, &err), 0, "%s", err.msg);
    size_t cl;
    char *control = tu_slurp(control_log, &cl);
    cJSON *co = cJSON_Parse(control);
    const cJSON *cpr = cJSON_GetObjectItem(cJSON_GetObjectItem(co, "body"), "prompt");
    text_buf cs = {0};
    for (int k = 0; k < cJSON_GetArraySize(cpr); k++) {
        char piece[64];
        const int pl = duet_token_to_piece(v, (int32_t)cJSON_GetArrayItem(cpr, k)->valuedouble, piece, sizeof piece, 0);
        if (pl > 0) put(&cs, piece, (size_t)pl);
    }
    const cJSON *pii;
    cJSON_ArrayForEach(pii, cJSON_GetObjectItem(items[n - 1], "pii"))
        cr_assert(holds(cs.p, pii), "the check missed '%s' sent in clear", cJSON_GetObjectItem(pii, "value")->valuestring);
    cJSON_Delete(co);
    free(control), free(cs.p), free(raw_ids), free(ca.raw.p), free(ca.restored.p);
    duet_restore_stream_free(ca.rs);
    duet_redactor_free(none);
    duet_remote_free(plain);
    unlink(control_log);

    free(egress), free(spelled.p), free(set);
    for (int i = 0; i < n; i++) cJSON_Delete(items[i]);
    curl_easy_cleanup(curl);
    duet_remote_free(remote);
    duet_vocab_free(v);
    unlink(log);
}

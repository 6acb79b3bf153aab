/* duet generate --pipeline redact[,compress] as a user runs it: bad usage is
 * one clear line (exit 2); the --json stats count the redacted values by
 * kind; invalid UTF-8 is a clear error; against duet serve on loopback as
 * the remote LLM, the egress log holds placeholders and no planted value
 * (the same prompts without --pipeline leak, so the check can fail), with
 * compress keeping every placeholder whole while it drops tokens; and an
 * endpoint whose streamed answer quotes placeholders cut across events has
 * them restored in the printed answer, streamed and --json. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "duet/tok.h"
#include "server_util.h"
#include "testutil.h"

#define LLM DUET_SRC_DIR "/models/llm.gguf"
#define SLM DUET_SRC_DIR "/models/slm-draft.gguf"
#define NAMES DUET_SRC_DIR "/tests/data/privacy/names.txt"
#define PROMPT                                                                                                       \
    "once upon a time, lily wrote to bob.k@example.com and paid with 4111 1111 1111 1111. she called "            \
    "+44 20 7946 0958 from 192.168.1.20 and sent the money to DE89 3704 0044 0532 0130 00 in 1998."

static const char *const planted[] = {"lily", "bob.k@example.com", "4111 1111 1111 1111", "+44 20 7946 0958",
                                      "192.168.1.20", "DE89 3704 0044 0532 0130 00"};
#define N_PLANTED (int)(sizeof planted / sizeof *planted)

/* Runs duet with args; stdout in *out (stderr to err_file if given). */
static int run(const char *args, const char *err_file, char **out) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s 2>%s", args, err_file ? err_file : "/dev/null");
    return tu_run_duet(cmd, out);
}

static void write_file(const char *path, const char *text, size_t len) {
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    cr_assert_eq(fwrite(text, 1, len, f), len);
    fclose(f);
}

Test(pipeline_cli, usage_errors_name_the_option) {
    static const struct {
        const char *args, *needle;
    } cases[] = {
        {"generate -m " LLM " -p x --pipeline redact,shuffle", "unknown stage 'shuffle'"},
        {"generate -m " LLM " -p x --pipeline redact,", "empty stage"},
        {"generate -m " LLM " -p x --pii-names " NAMES, "--pii-names"},
        {"generate -m " LLM " -p x --pipeline compress --pii-names " NAMES, "--pii-names needs --pipeline redact"},
        {"generate -m " LLM " -p x --pipeline redact --compress-ratio 0.5", "--compress-ratio needs"},
        {"generate -m " LLM " -p x --pipeline compress --compress-ratio 0", "--compress-ratio"},
        {"generate -m " LLM " -p x --pipeline compress --compress-ratio 1.5", "--compress-ratio"},
        {"generate -m " LLM " --tokens '1 2' --pipeline redact", "text prompt"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char cmd[2048], *out = NULL;
        snprintf(cmd, sizeof cmd, "%s 2>&1 >/dev/null", cases[i].args);
        const int rc = tu_run_duet(cmd, &out);
        cr_expect(rc == 2 && out && !strncmp(out, "duet generate: ", 15) && strstr(out, cases[i].needle),
                  "duet %s: want exit 2 naming '%s'; got %d: %s", cases[i].args, cases[i].needle, rc, out ? out : "");
        free(out);
    }
}

Test(pipeline_cli, json_counts_the_redacted_values, .timeout = 120) {
    char args[2048], *out = NULL;
    snprintf(args, sizeof args, "generate -m %s -p '%s' -n 4 --temp 0 -t 1 --pipeline redact --pii-names %s --json",
             LLM, PROMPT, NAMES);
    cr_assert_eq(run(args, NULL, &out), 0, "%s", out);
    cJSON *o = cJSON_Parse(out);
    cr_assert(o, "not one JSON object: %s", out);
    const cJSON *p = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "stats"), "pipeline");
    cr_assert(p, "no stats.pipeline: %s", out);
    cr_assert_eq(cJSON_GetObjectItem(p, "redacted")->valueint, N_PLANTED, "%s", out);
    const cJSON *by = cJSON_GetObjectItem(p, "redacted_by_kind");
    static const char *const kinds[] = {"NAME", "EMAIL", "CARD", "PHONE", "IP", "IBAN"};
    for (int k = 0; k < 6; k++) cr_assert_eq(cJSON_GetObjectItem(by, kinds[k])->valueint, 1, "%s: %s", kinds[k], out);
    cr_assert_eq(cJSON_GetObjectItem(by, "URL")->valueint, 0);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(o, "ids")), 4);
    cJSON_Delete(o);
    free(out);
    /* the text mode prints the same count on stderr */
    char errf[] = "/tmp/duet_pipe_err_XXXXXX";
    close(mkstemp(errf));
    snprintf(args, sizeof args, "generate -m %s -p '%s' -n 4 --temp 0 -t 1 --pipeline redact --pii-names %s", LLM,
             PROMPT, NAMES);
    cr_assert_eq(run(args, errf, &out), 0);
    char *err = tu_slurp(errf, NULL);
    cr_assert(err && strstr(err, "[pipeline] redacted 6 values (EMAIL 1, PHONE 1, CARD 1, IBAN 1, IP 1, NAME 1)"), "%s",
              err ? err : "");
    free(err), free(out);
    unlink(errf);
}

Test(pipeline_cli, invalid_utf8_is_a_clear_error, .timeout = 60) {
    char path[] = "/tmp/duet_pipe_prompt_XXXXXX", errf[] = "/tmp/duet_pipe_err_XXXXXX";
    close(mkstemp(path)), close(mkstemp(errf));
    write_file(path, "mail bob@example.com \xC3\x28 now", 25);
    char args[1024], *out = NULL;
    snprintf(args, sizeof args, "generate -m %s -f %s -n 2 --pipeline redact", LLM, path);
    cr_assert_eq(run(args, errf, &out), 1);
    char *err = tu_slurp(errf, NULL);
    cr_assert(err && strstr(err, "duet generate: redact: the text is not valid UTF-8") && strstr(err, "offset 21"),
              "%s", err ? err : "");
    free(err), free(out);
    unlink(path), unlink(errf);
}

/* The text the ids of every egress line with a prompt spell, lines joined
 * by newlines; *n_lines counts them. */
static char *egress_text(const char *log, const duet_vocab *v, int *n_lines) {
    char *raw = tu_slurp(log, NULL);
    cr_assert(raw, "no egress log %s", log);
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    *n_lines = 0;
    for (char *line = strtok(raw, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        cr_assert(o, "egress line is not JSON: %s", line);
        const cJSON *pr = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "body"), "prompt");
        if (!cJSON_IsArray(pr)) { /* the probe's requests carry no prompt of the user's */
            cJSON_Delete(o);
            continue;
        }
        for (int k = 0; k < cJSON_GetArraySize(pr); k++) {
            char piece[64];
            const int pl =
                duet_token_to_piece(v, (int32_t)cJSON_GetArrayItem(pr, k)->valuedouble, piece, sizeof piece, 0);
            if (pl <= 0) continue;
            if (len + (size_t)pl + 2 > cap) text = realloc(text, cap *= 2);
            memcpy(text + len, piece, (size_t)pl), len += (size_t)pl;
        }
        text[len++] = '\n';
        (*n_lines)++;
        cJSON_Delete(o);
    }
    text[len] = 0;
    free(raw);
    return text;
}

static int count_str(const char *hay, const char *needle) {
    int n = 0;
    for (const char *h = strstr(hay, needle); h; h = strstr(h + 1, needle)) n++;
    return n;
}

Test(pipeline_cli, nothing_planted_reaches_the_remote, .timeout = 240) {
    su_server srv;
    su_start(&srv, NULL);
    duet_vocab *v;
    duet_err e = {0};
    cr_assert_eq(duet_vocab_load_file(&v, LLM, &e), 0, "%s", e.msg);
    static const char *const pipelines[] = {"", "--pipeline redact", "--pipeline redact,compress --compress-ratio 0.5"};
    for (int pi = 0; pi < 3; pi++) {
        char log[] = "/tmp/duet_pipe_egress_XXXXXX", args[2048], *out = NULL;
        close(mkstemp(log));
        snprintf(args, sizeof args,
                 "generate -m %s --remote %s --temp 0 -n 3 -t 1 -p '%s' %s --pii-names %s --egress-log %s --json", SLM,
                 srv.base, PROMPT, pipelines[pi], NAMES, log);
        if (pi == 0) /* the control: no --pipeline (and so no --pii-names) */
            snprintf(args, sizeof args, "generate -m %s --remote %s --temp 0 -n 3 -t 1 -p '%s' --egress-log %s --json",
                     SLM, srv.base, PROMPT, log);
        cr_assert_eq(run(args, NULL, &out), 0, "%s", out ? out : "");
        cJSON *o = cJSON_Parse(out);
        cr_assert(o, "%s", out);
        const cJSON *st = cJSON_GetObjectItem(o, "stats");
        cr_assert(!cJSON_IsTrue(cJSON_GetObjectItem(st, "degraded")), "the remote did not answer: %s", out);
        int n_lines;
        char *sent = egress_text(log, v, &n_lines);
        cr_assert_geq(n_lines, 1, "nothing was sent");
        /* the requests that carried the user's prompt (the probe's carry a text of its own) */
        const int n_user = pi == 2 ? 1 : count_str(sent, "once upon a time, ");
        cr_assert_geq(n_user, 1, "the prompt was never sent:\n%s", sent);
        for (int k = 0; k < N_PLANTED; k++) {
            const int n = count_str(sent, planted[k]);
            if (pi == 0) cr_assert_eq(n, n_user, "the control did not send '%s' in clear", planted[k]);
            else cr_assert_eq(n, 0, "%s: '%s' reached the remote:\n%s", pipelines[pi], planted[k], sent);
        }
        if (pi > 0) { /* every placeholder went out whole, once per request (compress: the words around may go) */
            static const char *const ph[] = {"<NAME_1>", "<EMAIL_1>", "<CARD_1>", "<PHONE_1>", "<IP_1>", "<IBAN_1>"};
            for (int k = 0; k < 6; k++)
                cr_assert(pi == 2 ? count_str(sent, ph[k]) >= 1 : count_str(sent, ph[k]) == n_user,
                          "%s: %s sent %d times in %d requests:\n%s", pipelines[pi], ph[k], count_str(sent, ph[k]),
                          n_user, sent);
            const cJSON *p = cJSON_GetObjectItem(st, "pipeline");
            cr_assert_eq(cJSON_GetObjectItem(p, "redacted")->valueint, N_PLANTED);
            if (pi == 2) {
                const int in = cJSON_GetObjectItem(p, "tokens_in")->valueint;
                const int kept = cJSON_GetObjectItem(p, "tokens_kept")->valueint;
                cr_assert(kept < in && kept > 0, "compress kept %d of %d tokens", kept, in);
                cr_log_info("redact,compress: %d of %d prompt tokens sent, every placeholder whole", kept, in);
            }
        }
        if (pi < 2) cr_assert(strstr(sent, "1998"), "the year (not PII) should go out as it is");
        free(sent), free(out);
        cJSON_Delete(o);
        unlink(log);
    }
    duet_vocab_free(v);
    su_stop(&srv);
}

/* ---- an endpoint that answers with placeholders ----
 * A minimal OpenAI-style server on loopback: a streamed /v1/completions is
 * answered with fixed text pieces (server-sent events) that quote the
 * placeholders and cut them at odd places; scoring is refused as llama.cpp's
 * server refuses it; anything else is 404. What a real LLM does when it
 * repeats a name or an address from its prompt. */
static const char *const answer_pieces[] = {"dear ", "<EM", "AIL_1> and <NA", "ME_1> at <IP", "_1", ">.", " <EMAIL_2> <",
                                            "EMAIL_1>"};
#define ANSWER_RESTORED "dear bob@example.com and lily at 10.0.0.1. <EMAIL_2> bob@example.com"

typedef struct {
    int fd, port, stop, streams;
    pthread_t thread;
} fake_endpoint;

static void send_all(int c, const char *s, size_t n) {
    while (n > 0) {
        const ssize_t w = send(c, s, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        s += w, n -= (size_t)w;
    }
}

static void answer_one(fake_endpoint *f, int c) {
    char req[1 << 16];
    size_t len = 0;
    const char *body = NULL;
    long clen = 0;
    while (len < sizeof req - 1) { /* headers, then Content-Length bytes of body */
        struct pollfd pf = {.fd = c, .events = POLLIN};
        if (poll(&pf, 1, 5000) <= 0) return;
        const ssize_t r = recv(c, req + len, sizeof req - 1 - len, 0);
        if (r <= 0) return;
        len += (size_t)r, req[len] = 0;
        const char *end = strstr(req, "\r\n\r\n");
        if (!end) continue;
        const char *cl = strstr(req, "Content-Length:"); /* as libcurl writes it */
        clen = cl ? strtol(cl + 15, NULL, 10) : 0;
        body = end + 4;
        if ((long)(len - (size_t)(body - req)) >= clen) break;
    }
    if (!body) return;
    if (!strncmp(req, "POST /v1/completions", 20) && strstr(body, "\"stream\":true")) {
        f->streams++;
        static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
        send_all(c, head, sizeof head - 1);
        const int n = (int)(sizeof answer_pieces / sizeof *answer_pieces);
        for (int i = 0; i < n; i++) {
            cJSON *o = cJSON_CreateObject(), *chs = cJSON_AddArrayToObject(o, "choices"), *ch = cJSON_CreateObject();
            cJSON_AddNumberToObject(ch, "index", 0);
            cJSON_AddStringToObject(ch, "text", answer_pieces[i]);
            if (i == n - 1) cJSON_AddStringToObject(ch, "finish_reason", "stop");
            else cJSON_AddNullToObject(ch, "finish_reason");
            cJSON_AddItemToArray(chs, ch);
            char *js = cJSON_PrintUnformatted(o), ev[1024];
            const int m = snprintf(ev, sizeof ev, "data: %s\n\n", js);
            send_all(c, ev, (size_t)m);
            free(js), cJSON_Delete(o);
            usleep(2000); /* separate network chunks */
        }
        send_all(c, "data: [DONE]\n\n", 14);
    } else if (!strncmp(req, "POST /v1/completions", 20)) {
        static const char msg[] = "{\"error\":{\"code\":500,\"message\":\"Only no echo is supported\",\"type\":\"server_error\"}}";
        char resp[512];
        const int m = snprintf(resp, sizeof resp,
                               "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                               "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", sizeof msg - 1, msg);
        send_all(c, resp, (size_t)m);
    } else {
        static const char nf[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        send_all(c, nf, sizeof nf - 1);
    }
}

static void *fake_main(void *arg) {
    fake_endpoint *f = arg;
    while (!f->stop) {
        struct pollfd pf = {.fd = f->fd, .events = POLLIN};
        if (poll(&pf, 1, 100) <= 0) continue;
        const int c = accept(f->fd, NULL, NULL);
        if (c < 0) continue;
        answer_one(f, c);
        close(c);
    }
    return NULL;
}

static void fake_start(fake_endpoint *f) {
    memset(f, 0, sizeof *f);
    f->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(f->fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(f->fd, 16), 0);
    socklen_t al = sizeof a;
    getsockname(f->fd, (struct sockaddr *)&a, &al);
    f->port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(fake_endpoint *f) {
    f->stop = 1;
    pthread_join(f->thread, NULL);
    close(f->fd);
}

Test(pipeline_cli, placeholders_in_a_streamed_answer_are_restored, .timeout = 60) {
    fake_endpoint f;
    fake_start(&f);
    char args[2048], *out = NULL, log[] = "/tmp/duet_pipe_egress_XXXXXX";
    close(mkstemp(log));
    const char *prompt = "mail bob@example.com, tell lily, from 10.0.0.1";
    for (int json = 1; json >= 0; json--) {
        snprintf(args, sizeof args,
                 "generate -m %s --remote http://127.0.0.1:%d --temp 0 -n 64 -t 1 -p '%s' --pipeline redact "
                 "--pii-names %s --egress-log %s %s",
                 SLM, f.port, prompt, NAMES, log, json ? "--json" : "");
        cr_assert_eq(run(args, NULL, &out), 0, "%s", out ? out : "");
        if (json) {
            cJSON *o = cJSON_Parse(out);
            cr_assert(o, "%s", out);
            const cJSON *st = cJSON_GetObjectItem(o, "stats");
            cr_assert(!cJSON_IsTrue(cJSON_GetObjectItem(st, "degraded")), "the endpoint did not answer: %s", out);
            cr_assert_str_eq(cJSON_GetObjectItem(o, "text")->valuestring, ANSWER_RESTORED, "%s", out);
            const cJSON *p = cJSON_GetObjectItem(st, "pipeline");
            cr_assert_eq(cJSON_GetObjectItem(p, "redacted")->valueint, 3, "%s", out);
            cr_assert_eq(cJSON_GetObjectItem(p, "restored")->valueint, 4, "%s", out); /* EMAIL_1 twice; not EMAIL_2 */
            cJSON_Delete(o);
        } else { /* streamed to stdout: the restored answer, then the newline that ends it */
            cr_assert_str_eq(out, ANSWER_RESTORED "\n");
        }
        free(out);
    }
    cr_assert_eq(f.streams, 2);
    /* what went out: the placeholders, not the values */
    size_t n;
    char *sent = tu_slurp(log, &n);
    cr_assert(sent && n > 0);
    duet_vocab *v;
    duet_err e = {0};
    cr_assert_eq(duet_vocab_load_file(&v, LLM, &e), 0, "%s", e.msg);
    free(sent);
    int lines;
    sent = egress_text(log, v, &lines);
    cr_assert_geq(lines, 2);
    cr_assert(strstr(sent, "mail <EMAIL_1>, tell <NAME_1>, from <IP_1>"), "%s", sent);
    cr_assert(!strstr(sent, "bob@") && !strstr(sent, "lily") && !strstr(sent, "10.0.0.1"), "%s", sent);
    free(sent);
    duet_vocab_free(v);
    unlink(log);
    fake_stop(&f);
}

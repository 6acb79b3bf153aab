/* duet generate --pipeline redact[,compress] as a user runs it: bad usage is
 * one clear line (exit 2); the --json stats count the redacted values by
 * kind; invalid UTF-8 is a clear error; and against duet serve on loopback
 * as the remote LLM, the egress log holds placeholders and no planted value
 * (the same prompts without --pipeline leak, so the check can fail), with
 * compress keeping every placeholder whole while it drops tokens. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
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

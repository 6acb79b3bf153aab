/* duet generate --pipeline redact[,compress] as a user runs it: bad usage is
 * one clear line (exit 2); the --json stats count the redacted values by
 * kind; invalid UTF-8 is a clear error; against duet serve on loopback as
 * the remote LLM, the egress log holds placeholders and no planted value
 * (the same prompts without --pipeline leak, so the check can fail), with
 * compress keeping every placeholder whole while it drops tokens; and an
 * endpoint whose streamed answer quotes placeholders cut across events has
 * them restored in the printed answer, streamed and --json. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "duet/tok.h"
#include "egress_text.h"
#include "fake_endpoint.h"
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

/* ---- an endpoint that answers with placeholders (fake_endpoint.h) ---- */
static const char *const answer_pieces[] = {"dear ", "<EM", "AIL_1> and <NA", "ME_1> at <IP", "_1", ">.", " <EMAIL_2> <",
                                            "EMAIL_1>"};
#define ANSWER_RESTORED "dear bob@example.com and lily at 10.0.0.1. <EMAIL_2> bob@example.com"

Test(pipeline_cli, placeholders_in_a_streamed_answer_are_restored, .timeout = 60) {
    fake_endpoint f;
    fake_start(&f, answer_pieces, (int)(sizeof answer_pieces / sizeof *answer_pieces));
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

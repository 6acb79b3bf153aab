/* duet generate as a user runs it: a generation that fills its context keeps
 * its text and stats and ends with finish reason `length` (exit 0), with and
 * without --json and --draft; the prompt from a file or stdin; two runs
 * without --seed sample differently; a prompt longer than the context is a
 * clear error. The model is the shipped llm (its context: 512). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define LLM DUET_SRC_DIR "/models/llm.gguf"
#define DRAFT DUET_SRC_DIR "/models/slm-draft.gguf"
#define PROMPT "once upon a time, there was a little girl named lily"

/* Runs duet with args; returns its exit status, stdout+stderr in *out. */
static int run(const char *args, char **out) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s 2>&1", args);
    return tu_run_duet(cmd, out);
}

/* Number of ids in the "ids" array of a --json line. */
static int count_ids(const char *js) {
    const char *a = strstr(js, "\"ids\":[");
    cr_assert(a, "no ids in %s", js);
    a += 7;
    if (*a == ']') return 0;
    int n = 1;
    for (; *a && *a != ']'; a++) n += *a == ',';
    return n;
}

Test(cli_generate, filling_the_context_is_finish_length, .timeout = 120) {
    const char *drafts[] = {"", "--draft " DRAFT, "--draft ngram"};
    for (int d = 0; d < 3; d++) {
        char args[1024], *out = NULL;
        /* the prompt is 12 tokens; a context of 40 ends the text long before -n */
        snprintf(args, sizeof args, "generate -m %s -p '%s' -n 200 --ctx 40 --temp 0 --ignore-eos -t 1 --json %s", LLM,
                 PROMPT, drafts[d]);
        int rc = run(args, &out);
        cr_assert_eq(rc, 0, "%s -> %d: %s", args, rc, out);
        cr_assert(strstr(out, "\"finish_reason\":\"length\""), "%s", out);
        const char *js = strstr(out, "{\"text\"");
        cr_assert(js, "%s", out);
        const int n = count_ids(js);
        cr_assert(strstr(js, "\"text\":\"") && !strstr(js, "\"text\":\"\""), "the text was lost: %s", js);
        /* 40 positions, the last sampled token needs none */
        cr_assert(n >= 25 && n <= 40, "%d tokens in a context of 40: %s", n, js);
        free(out);
        snprintf(args, sizeof args, "generate -m %s -p '%s' -n 200 --ctx 40 --temp 0 --ignore-eos -t 1 %s", LLM, PROMPT,
                 drafts[d]);
        rc = run(args, &out);
        cr_assert_eq(rc, 0, "%s", out);
        cr_assert(strstr(out, "finish length"), "the stats line names the finish reason: %s", out);
        cr_assert(strstr(out, "[stats]") && strlen(out) > 60, "%s", out);
        free(out);
    }
}

Test(cli_generate, two_runs_without_seed_sample_differently, .timeout = 60) {
    char args[1024], *a = NULL, *b = NULL;
    snprintf(args, sizeof args, "generate -m %s -p '%s' -n 48 --temp 1.0 --top-k 0 --top-p 1 --min-p 0 -t 1 --json",
             LLM, PROMPT);
    cr_assert_eq(run(args, &a), 0, "%s", a);
    cr_assert_eq(run(args, &b), 0, "%s", b);
    const char *ia = strstr(a, "\"ids\""), *ib = strstr(b, "\"ids\"");
    cr_assert(ia && ib);
    const char *ea = strchr(ia, ']'), *eb = strchr(ib, ']');
    cr_assert(ea - ia != eb - ib || memcmp(ia, ib, (size_t)(ea - ia)) != 0,
              "two runs without --seed gave the same 48 sampled tokens");
    const char *sa = strstr(a, "\"seed\":"), *sb = strstr(b, "\"seed\":");
    cr_assert(sa && sb && strtoull(sa + 7, NULL, 10) != strtoull(sb + 7, NULL, 10), "the same seed twice");
    free(a), free(b);
    /* and a given seed repeats */
    snprintf(args, sizeof args, "generate -m %s -p '%s' -n 24 --temp 1.0 -s 7 -t 1 --json", LLM, PROMPT);
    cr_assert_eq(run(args, &a), 0);
    cr_assert_eq(run(args, &b), 0);
    ia = strstr(a, "\"ids\""), ib = strstr(b, "\"ids\"");
    cr_assert(ia && ib && !strncmp(ia, ib, (size_t)(strchr(ia, ']') - ia)), "-s 7 twice differs");
    free(a), free(b);
}

Test(cli_generate, prompt_from_file_and_stdin, .timeout = 60) {
    char path[] = "/tmp/duet_prompt_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, PROMPT, strlen(PROMPT)), (ssize_t)strlen(PROMPT));
    close(fd);
    char args[1024], *a = NULL, *b = NULL, *c = NULL;
    snprintf(args, sizeof args, "generate -m %s -p '%s' -n 16 --temp 0 -t 1 --json", LLM, PROMPT);
    cr_assert_eq(run(args, &a), 0, "%s", a);
    snprintf(args, sizeof args, "generate -m %s -f %s -n 16 --temp 0 -t 1 --json", LLM, path);
    cr_assert_eq(run(args, &b), 0, "%s", b);
    snprintf(args, sizeof args, "generate -m %s -p - -n 16 --temp 0 -t 1 --json < %s", LLM, path);
    cr_assert_eq(run(args, &c), 0, "%s", c);
    const char *ta = strstr(a, "\"text\""), *tb = strstr(b, "\"text\""), *tc = strstr(c, "\"text\"");
    cr_assert(ta && tb && tc);
    const size_t n = (size_t)(strstr(ta, "\"ids\"") - ta);
    cr_assert(!strncmp(ta, tb, n) && !strncmp(ta, tc, n), "-p, -f and -p - gave different texts:\n%s\n%s\n%s", a, b, c);
    free(a), free(b), free(c);
    snprintf(args, sizeof args, "generate -m %s -f /nonexistent/prompt.txt -n 4", LLM);
    cr_assert_eq(run(args, &a), 2);
    cr_assert(strstr(a, "/nonexistent/prompt.txt"), "%s", a);
    free(a);
    unlink(path);
}

Test(cli_generate, long_prompt_and_ctx_warning, .timeout = 60) {
    char args[1024], *out = NULL;
    snprintf(args, sizeof args, "generate -m %s -p '%s %s %s' -n 4 --ctx 8 -t 1", LLM, PROMPT, PROMPT, PROMPT);
    cr_assert_eq(run(args, &out), 1, "%s", out);
    cr_assert(strstr(out, "context holds 8"), "%s", out);
    free(out);
    snprintf(args, sizeof args, "generate -m %s -p '%s' -n 2 --ctx 1024 --temp 0 -t 1", LLM, PROMPT);
    cr_assert_eq(run(args, &out), 0, "%s", out);
    cr_assert(strstr(out, "warning") && strstr(out, "512"), "no warning for a context past the trained one: %s", out);
    free(out);
    /* penalties with a draft: refused by the library, exit 2 */
    snprintf(args, sizeof args, "generate -m %s -p '%s' -n 2 --draft ngram --repeat-penalty 1.2 -t 1", LLM, PROMPT);
    cr_assert_eq(run(args, &out), 2, "%s", out);
    cr_assert(strstr(out, "penalties"), "%s", out);
    free(out);
}

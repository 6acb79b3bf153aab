/* Fusion on the command line (duet generate / duet perplexity --strategy
 * mix|poe|cd|proxy), each checked against an independent reference:
 *   - models of different vocabularies are refused with a clear message
 *     (qwen2-b, 512 tokens, against the shipped llm, 2048);
 *   - perplexity --strategy mix --weight 1 is the LLM's own perplexity from a
 *     plain `duet perplexity` run on the same windows (and weight 0 the SLM's);
 *   - generate --strategy proxy with --slm-tuned = --slm (LLM + base - base)
 *     writes the LLM's own greedy text;
 *   - usage errors (a missing model, a parameter of another rule) exit 2. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define LLM DUET_SRC_DIR "/models/llm.gguf"
#define SLM DUET_SRC_DIR "/models/slm.gguf"
#define PROMPT "once upon a time, there was a little girl named lily. she"

static int run(const char *args, char **out) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s 2>&1", args);
    return tu_run_duet(cmd, out);
}

/* The number after "key": in s (the first one), NAN if absent. */
static double json_num(const char *s, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = s ? strstr(s, pat) : NULL;
    return p ? strtod(p + strlen(pat), NULL) : NAN;
}

/* The first ~4 KB of valid.txt (whole paragraphs) in a temporary file. */
static void small_text(char *path, size_t cap) {
    char buf[512];
    size_t n = 0;
    char *text = tu_slurp(tu_data("tinystories/valid.txt", buf, sizeof buf), &n);
    cr_assert(text, "no valid.txt");
    size_t cut = 4000;
    while (cut < n && !(text[cut] == '\n' && text[cut + 1] == '\n')) cut++;
    snprintf(path, cap, "/tmp/duet-fusion-cli-%d.txt", (int)getpid());
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    fwrite(text, 1, cut, f);
    fclose(f);
    free(text);
}

Test(fusion_cli, a_vocabulary_mismatch_is_refused_clearly, .timeout = 60) {
    char buf[512], args[2048], *out = NULL, text[256];
    const char *qwen = tu_data("ref-models/qwen2-b-F32.gguf", buf, sizeof buf);
    small_text(text, sizeof text);
    snprintf(args, sizeof args, "perplexity -m %s --slm %s --strategy mix -f %s -t 1 --json", LLM, qwen, text);
    int rc = run(args, &out);
    cr_assert_eq(rc, 1, "%s -> %d: %s", args, rc, out);
    cr_assert(strstr(out, "fusion needs one vocabulary") && strstr(out, "512 tokens") && strstr(out, "2048"),
              "the message should say the vocabularies differ and how: %s", out);
    cr_assert(!strstr(out, "\"perplexity\""), "no result after the refusal: %s", out);
    free(out);
    /* the other way round (the small vocabulary as the LLM), and proxy's tuned model */
    snprintf(args, sizeof args, "perplexity -m %s --slm %s --slm-tuned %s --strategy proxy -f %s -t 1", qwen, SLM, SLM,
             text);
    rc = run(args, &out);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert(strstr(out, "fusion needs one vocabulary"), "%s", out);
    free(out);
    for (int rule = 0; rule < 2; rule++) {
        if (rule) /* proxy: the tuned model is the odd one */
            snprintf(args, sizeof args, "generate -m %s --slm %s --slm-tuned %s --strategy proxy -p '%s' -n 4 --temp 0 -t 1",
                     LLM, SLM, qwen, PROMPT);
        else
            snprintf(args, sizeof args, "generate -m %s --slm %s --strategy cd -p '%s' -n 4 --temp 0 -t 1", LLM, qwen,
                     PROMPT);
        rc = run(args, &out);
        cr_assert_eq(rc, 1, "%s -> %d: %s", args, rc, out);
        cr_assert(strstr(out, "vocabular") && strstr(out, "differ"), "%s", out);
        cr_assert(!strstr(out, "[stats]"), "nothing generated: %s", out);
        free(out);
    }
    unlink(text);
}

Test(fusion_cli, mix_weight_1_is_the_llm_and_weight_0_the_slm, .timeout = 300) {
    char text[256], args[2048], *plain = NULL, *fused = NULL;
    small_text(text, sizeof text);
    /* the reference: each model alone, by the plain path, on windows of 256 (the fused default: the SLM's context) */
    snprintf(args, sizeof args, "perplexity -m %s -m %s -f %s --ctx 256 -t 1 --json", LLM, SLM, text);
    cr_assert_eq(run(args, &plain), 0, "%s", plain);
    const char *p_slm = strstr(plain, "slm.gguf");
    cr_assert(p_slm, "%s", plain);
    const double ref_llm = json_num(plain, "perplexity"), ref_slm = json_num(p_slm, "perplexity");
    cr_assert(ref_llm > 1 && ref_slm > ref_llm, "%s", plain);

    snprintf(args, sizeof args, "perplexity -m %s --slm %s --strategy mix --weight 1 --weights 0,1 -f %s -t 1 --json",
             LLM, SLM, text);
    cr_assert_eq(run(args, &fused), 0, "%s", fused);
    cr_assert(strstr(fused, "\"rule\":\"mix\"") && strstr(fused, "\"ctx\":256"), "%s", fused);
    const double got = json_num(fused, "perplexity");
    cr_assert(fabs(got - ref_llm) <= 1e-4 * ref_llm, "mix weight 1: %.6f, the LLM alone: %.6f", got, ref_llm);
    /* the sweep: weight 0 is the SLM alone, weight 1 the LLM alone */
    const char *sw = strstr(fused, "\"sweep\":");
    cr_assert(sw, "%s", fused);
    const char *w1 = strstr(sw, "\"weight\":1");
    cr_assert(w1, "%s", sw);
    const double got0 = json_num(sw, "perplexity"), got1 = json_num(w1, "perplexity");
    cr_assert(fabs(got0 - ref_slm) <= 1e-4 * ref_slm, "mix weight 0: %.6f, the SLM alone: %.6f", got0, ref_slm);
    cr_assert(fabs(got1 - ref_llm) <= 1e-4 * ref_llm, "%.6f vs %.6f", got1, ref_llm);
    free(plain), free(fused);
    unlink(text);
}

/* The "ids":[...] array of a --json line, as text. */
static char *ids_of(const char *js) {
    const char *a = js ? strstr(js, "\"ids\":[") : NULL;
    cr_assert(a, "no ids in %s", js);
    const char *b = strchr(a, ']');
    cr_assert(b);
    return strndup(a, (size_t)(b - a + 1));
}

Test(fusion_cli, proxy_with_tuned_equal_to_base_is_the_llm_greedy, .timeout = 120) {
    char args[2048], *plain = NULL, *proxy = NULL;
    snprintf(args, sizeof args, "generate -m %s -p '%s' -n 48 --temp 0 --ignore-eos -t 1 --json", LLM, PROMPT);
    cr_assert_eq(run(args, &plain), 0, "%s", plain);
    snprintf(args, sizeof args,
             "generate -m %s --slm %s --slm-tuned %s --strategy proxy -p '%s' -n 48 --temp 0 --ignore-eos -t 1 --json",
             LLM, SLM, SLM, PROMPT);
    cr_assert_eq(run(args, &proxy), 0, "%s", proxy);
    cr_assert(strstr(proxy, "\"strategy\":\"fusion\"") && strstr(proxy, "\"rule\":\"proxy\""), "%s", proxy);
    char *a = ids_of(plain), *b = ids_of(proxy);
    cr_assert_str_eq(b, a, "proxy (tuned == base) must write the LLM's greedy text");
    cr_assert_eq(json_num(proxy, "n_generated"), 48);
    free(a), free(b), free(plain), free(proxy);
}

Test(fusion_cli, usage_errors_exit_2, .timeout = 60) {
    static const char *const bad[] = {
        "generate -m " LLM " --strategy proxy --slm " SLM " -p x",                         /* no --slm-tuned */
        "generate -m " LLM " --strategy mix -p x",                                          /* no --slm */
        "generate -m " LLM " --strategy cd --slm " SLM " --weight 0.5 -p x",                /* a mix/poe parameter */
        "generate -m " LLM " --strategy mix --slm " SLM " --weight 1.5 -p x",               /* out of range */
        "generate -m " LLM " --strategy poe --slm " SLM " --draft " SLM " -p x",            /* no drafts */
        "generate -m " LLM " --weight 0.5 -p x",                                            /* no strategy */
        "perplexity -m " LLM " --strategy mix -f x",                                        /* no --slm */
        "perplexity -m " LLM " --strategy route --slm " SLM " -f x",                        /* not a fusion rule */
        "perplexity -m " LLM " -m " SLM " --strategy mix --slm " SLM " -f x",               /* two -m */
        "perplexity -m " LLM " --strategy cd --slm " SLM " --weights 0,1 -f x",             /* a sweep of cd */
        "perplexity -m " LLM " --strategy mix --slm " SLM " --weights 0,2 -f x",            /* out of range */
        "perplexity -m " LLM " --slm " SLM " -f x",                                         /* no strategy */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out = NULL;
        int rc = run(bad[i], &out);
        cr_assert_eq(rc, 2, "%s -> %d: %s", bad[i], rc, out);
        cr_assert(out && strchr(out, '\n') == out + strlen(out) - 1, "one line: %s", out);
        free(out);
    }
}

/* ---- duet serve: fusion profiles ------------------------------------------------- */
#include <signal.h>
#include <sys/wait.h>

#define TUNED DUET_SRC_DIR "/models/slm-draft.gguf" /* any third model of the vocabulary stands in for a tuned SLM */

typedef struct {
    pid_t pid;
    int port;
    char log[256];
} server;

/* Starts `duet serve ARGS` on a free port; waits until it listens. */
static void serve_start(server *s, const char *args) {
    snprintf(s->log, sizeof s->log, "/tmp/duet-fusion-serve-%d.log", (int)getpid());
    s->pid = fork();
    cr_assert(s->pid >= 0);
    if (s->pid == 0) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "exec %s serve %s --port 0 -t 1 --slots 2 2> %s", DUET_BIN, args, s->log);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    s->port = 0;
    for (int i = 0; i < 300 && !s->port; i++) {
        usleep(100 * 1000);
        size_t n;
        char *log = tu_slurp(s->log, &n);
        const char *at = log ? strstr(log, "listening on http://127.0.0.1:") : NULL;
        if (at) s->port = atoi(at + strlen("listening on http://127.0.0.1:"));
        free(log);
    }
    cr_assert(s->port > 0, "duet serve %s did not start (see %s)", args, s->log);
}

static void serve_stop(server *s) {
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
    unlink(s->log);
}

/* curl's output for a request (body NULL: GET). */
static char *http(const server *s, const char *path, const char *body) {
    char cmd[4096];
    if (body)
        snprintf(cmd, sizeof cmd, "curl -s -H 'Content-Type: application/json' -d '%s' http://127.0.0.1:%d%s", body,
                 s->port, path);
    else
        snprintf(cmd, sizeof cmd, "curl -s http://127.0.0.1:%d%s", s->port, path);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t k; (k = fread(buf + n, 1, cap - n - 1, p)) > 0;) {
        n += k;
        if (n + 1 == cap) buf = realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    pclose(p);
    return buf;
}

/* The "text" of the first choice. */
static char *text_of(const char *js) {
    const char *a = strstr(js, "\"text\":\"");
    cr_assert(a, "%s", js);
    a += 8;
    const char *b = a;
    while (*b && !(*b == '"' && b[-1] != '\\')) b++;
    return strndup(a, (size_t)(b - a));
}

Test(fusion_cli, serve_fusion_profiles, .timeout = 120) {
    if (system("command -v curl >/dev/null 2>&1") != 0) cr_skip_test("curl is not installed");
    char cfg[256];
    snprintf(cfg, sizeof cfg, "/tmp/duet-fusion-cfg-%d.json", (int)getpid());
    FILE *f = fopen(cfg, "w");
    cr_assert(f);
    fprintf(f,
            "{\"models\": {\"llm\": {\"path\": \"%s\"}, \"slm\": {\"path\": \"%s\"}, \"tuned\": {\"path\": \"%s\"}},\n"
            " \"profiles\": [{\"name\": \"llm\", \"strategy\": \"plain\", \"model\": \"llm\"},\n"
            "  {\"name\": \"duet-mix1\", \"strategy\": \"fusion\", \"rule\": \"mix\", \"model\": \"llm\", \"slm\": \"slm\", \"weight\": 1},\n"
            "  {\"name\": \"duet-proxy\", \"strategy\": \"fusion\", \"rule\": \"proxy\", \"model\": \"llm\", \"slm\": \"slm\", \"slm_tuned\": \"tuned\"},\n"
            "  {\"name\": \"duet-cd\", \"strategy\": \"fusion\", \"rule\": \"cd\", \"model\": \"llm\", \"slm\": \"slm\", \"alpha\": 0.2, \"beta\": 0.5}]}\n",
            LLM, SLM, TUNED);
    fclose(f);
    server s;
    char args[512];
    snprintf(args, sizeof args, "--config %s", cfg);
    serve_start(&s, args);
    char *models = http(&s, "/v1/models", NULL);
    cr_assert(strstr(models, "\"id\":\"duet-proxy\"") && strstr(models, "\"strategy\":\"fusion\"") &&
                  strstr(models, "\"rule\":\"proxy\"") && strstr(models, "\"slm_tuned\":\"tuned\""),
              "%s", models);
    /* mix with weight 1 writes the llm's greedy text */
    const char *req = "{\"model\": \"%s\", \"prompt\": \"" PROMPT "\", \"max_tokens\": 24, \"temperature\": 0}";
    char body[512];
    snprintf(body, sizeof body, req, "llm");
    char *a = http(&s, "/v1/completions", body);
    snprintf(body, sizeof body, req, "duet-mix1");
    char *b = http(&s, "/v1/completions", body);
    char *ta = text_of(a), *tb = text_of(b);
    cr_assert(strlen(ta) > 20, "%s", a);
    cr_assert_str_eq(tb, ta, "mix weight 1 must be the llm's greedy text: %s", b);
    cr_assert(strstr(b, "\"strategy\":\"fusion\"") && strstr(b, "\"rule\":\"mix\"") && strstr(b, "\"weight\":1"), "%s", b);
    cr_assert(strstr(b, "\"fused\":24"), "every token is fused: %s", b);
    /* proxy: the accounting names the rule and counts the three models */
    snprintf(body, sizeof body, req, "duet-proxy");
    char *c = http(&s, "/v1/completions", body);
    cr_assert(strstr(c, "\"rule\":\"proxy\"") && strstr(c, "\"slm_tuned\":\"tuned\"") && strstr(c, "\"tuned\":{") &&
                  strstr(c, "\"slm\":{") && strstr(c, "\"llm\":{") && strstr(c, "\"fused\":24"),
              "%s", c);
    snprintf(body, sizeof body, req, "duet-cd");
    char *d = http(&s, "/v1/completions", body);
    cr_assert(strstr(d, "\"rule\":\"cd\"") && strstr(d, "\"alpha\":0.2,") && strstr(d, "\"beta\":0.5}"), "%s", d);
    free(models), free(a), free(b), free(c), free(d), free(ta), free(tb);
    serve_stop(&s);

    /* the simple flags add duet-cd */
    snprintf(args, sizeof args, "-m %s --draft %s", LLM, SLM);
    serve_start(&s, args);
    models = http(&s, "/v1/models", NULL);
    cr_assert(strstr(models, "\"id\":\"duet-cd\"") && strstr(models, "\"rule\":\"cd\""), "%s", models);
    free(models);
    serve_stop(&s);

    /* config errors name the field */
    static const char *const bad[][2] = {
        {"\"rule\": \"sum\", \"slm\": \"slm\"", "rule 'sum'"},
        {"\"rule\": \"proxy\", \"slm\": \"slm\"", "slm_tuned"},
        {"\"rule\": \"cd\", \"slm\": \"slm\", \"weight\": 0.5", "weight"},
        {"\"rule\": \"mix\", \"slm\": \"slm\", \"weight\": 2", "weight"},
        {"\"rule\": \"mix\", \"slm\": \"llm\"", "different models"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f = fopen(cfg, "w");
        fprintf(f,
                "{\"models\": {\"llm\": {\"path\": \"%s\"}, \"slm\": {\"path\": \"%s\"}},\n"
                " \"profiles\": [{\"name\": \"f\", \"strategy\": \"fusion\", \"model\": \"llm\", %s}]}\n",
                LLM, SLM, bad[i][0]);
        fclose(f);
        char cmd[1024], *out = NULL;
        snprintf(cmd, sizeof cmd, "serve --config %s --port 0 2>&1", cfg);
        int rc = tu_run_duet(cmd, &out);
        cr_assert(rc != 0 && out && strstr(out, "profiles[0].") && strstr(out, bad[i][1]), "%s -> %d: %s", bad[i][0],
                  rc, out);
        free(out);
    }
    unlink(cfg);
}

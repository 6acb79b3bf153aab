/* The remote client against a server nobody on the project wrote: llama.cpp's
 * llama-server (../shared/ref-bin/llama.cpp) with the shipped models/llm.gguf
 * on loopback. It streams text (no token ids) and refuses `echo` ("Only no
 * echo is supported"), so duet routes and cascades through it but does not
 * verify drafts on it -- the probe must say so, and `duet generate --draft`
 * must refuse with the probe's message.
 *
 * Skips, saying why, where the binary is absent or cannot run: the reference
 * build needs AVX-512 and dies with SIGILL on CPUs without it. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "duet/remote.h"
#include "duet/tok.h"
#include "http_util.h"
#include "testutil.h"

#define LLAMA_SERVER DUET_SRC_DIR "/../shared/ref-bin/llama.cpp/llama-server"
#define LLM DUET_SRC_DIR "/models/llm.gguf"
#define SLM DUET_SRC_DIR "/models/slm-draft.gguf"
#define PROMPT_IDS "311 260 785 338 305 1210 290 262"
static const int32_t PROMPT[] = {311, 260, 785, 338, 305, 1210, 290, 262};
#define N_PROMPT ((int)(sizeof PROMPT / sizeof PROMPT[0]))

/* Says why on stderr too (ctest marks the test skipped on "SKIP: llama-server"). */
#define SKIP(...)                                                                                                      \
    do {                                                                                                               \
        fprintf(stderr, __VA_ARGS__);                                                                                  \
        fprintf(stderr, "\n");                                                                                         \
        cr_skip_test(__VA_ARGS__);                                                                                     \
    } while (0)

static pid_t llama_pid;
static char llama_log[64];

static void stop_llama(void) {
    if (llama_pid > 0) {
        kill(llama_pid, SIGKILL);
        waitpid(llama_pid, NULL, 0);
        llama_pid = 0;
    }
    if (llama_log[0]) unlink(llama_log);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* GET or POST (post != NULL); returns the HTTP status (0: no answer), the body in *out. */
static long http(const char *url, const char *post, char **out) {
    CURL *c = curl_easy_init();
    body b = {0};
    long code = 0;
    http_exchange(c, url, post, 60, &b, &code);
    curl_easy_cleanup(c);
    if (out) *out = b.buf ? b.buf : strdup("");
    else free(b.buf);
    return code;
}

/* Starts llama-server on a free port (it prints the port it bound before it
 * loads the model) and waits for /health to say the model is loaded. Skips
 * the test where it cannot run here. */
static void start_llama(char *base, size_t cap) {
    struct stat st;
    if (stat(LLAMA_SERVER, &st) != 0) SKIP("SKIP: llama-server is absent (%s): nothing to test against here", LLAMA_SERVER);
    snprintf(llama_log, sizeof llama_log, "/tmp/duet_llama_server_XXXXXX");
    int fd = mkstemp(llama_log);
    cr_assert(fd >= 0);
    const pid_t parent = getpid();
    llama_pid = fork();
    cr_assert(llama_pid >= 0);
    if (llama_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        dup2(fd, 1), dup2(fd, 2);
        /* the wrapper script execs the binary: this pid is the server's */
        execl(LLAMA_SERVER, LLAMA_SERVER, "-m", LLM, "--host", "127.0.0.1", "--port", "0", "-t", "1", "-np", "2",
              (char *)NULL);
        _exit(127);
    }
    close(fd);
    base[0] = 0;
    const double t0 = now_s();
    while (now_s() - t0 < 120) {
        int status;
        if (waitpid(llama_pid, &status, WNOHANG) == llama_pid) {
            llama_pid = 0;
            char *log = tu_slurp(llama_log, NULL);
            unlink(llama_log), llama_log[0] = 0;
            if (WIFSIGNALED(status) && WTERMSIG(status) == SIGILL)
                SKIP("SKIP: llama-server died with SIGILL (illegal instruction) loading %s: its reference "
                             "build needs AVX-512, which this CPU lacks", LLM);
            cr_assert_fail("llama-server ended (%s %d) before serving: %s", WIFSIGNALED(status) ? "signal" : "status",
                           WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), log ? log : "");
        }
        if (!base[0]) {
            char *log = tu_slurp(llama_log, NULL);
            const char *at = log ? strstr(log, "port: ") : NULL;
            if (at && strstr(log, "listening")) snprintf(base, cap, "http://127.0.0.1:%d", atoi(at + 6));
            free(log);
        }
        if (base[0]) {
            char url[128];
            snprintf(url, sizeof url, "%s/health", base);
            if (http(url, NULL, NULL) == 200) return; /* 503 while it loads the model */
        }
        usleep(50 * 1000);
    }
    char *log = tu_slurp(llama_log, NULL);
    cr_assert_fail("llama-server did not become healthy within 120 s: %s", log ? log : "");
}

/* llama-server's own greedy text for PROMPT (not streamed). */
static char *llama_greedy_text(const char *base, int n) {
    char url[128], req[512], *out = NULL;
    snprintf(url, sizeof url, "%s/v1/completions", base);
    int o = snprintf(req, sizeof req, "{\"max_tokens\":%d,\"temperature\":0,\"ignore_eos\":true,\"prompt\":[", n);
    for (int i = 0; i < N_PROMPT; i++) o += snprintf(req + o, sizeof req - o, "%s%d", i ? "," : "", PROMPT[i]);
    snprintf(req + o, sizeof req - o, "]}");
    cr_assert_eq(http(url, req, &out), 200, "%s", out);
    cJSON *j = cJSON_Parse(out);
    const cJSON *t = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0), "text");
    cr_assert(cJSON_IsString(t), "no text in %s", out);
    char *text = strdup(t->valuestring);
    cJSON_Delete(j);
    free(out);
    return text;
}

typedef struct {
    char text[4096];
    size_t len;
    int n, with_id;
} pieces;

static int on_piece(void *ud, int32_t id, const char *piece, int len) {
    pieces *p = ud;
    p->n++;
    p->with_id += id >= 0;
    if (p->len + (size_t)len < sizeof p->text) memcpy(p->text + p->len, piece, (size_t)len), p->len += (size_t)len;
    p->text[p->len] = 0;
    return 0;
}

/* The text field of a --json line. */
static char *json_text(const char *out) {
    const char *js = strstr(out, "{\"text\"");
    cr_assert(js, "no JSON object in: %s", out);
    cJSON *o = cJSON_Parse(js);
    char *t = strdup(cJSON_GetObjectItem(o, "text")->valuestring);
    cJSON_Delete(o);
    return t;
}

TestSuite(llama_server, .fini = stop_llama, .timeout = 300);

Test(llama_server, routes_and_cascades_through_it_but_refuses_verification) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char base[96];
    start_llama(base, sizeof base);
    const int n_new = 16;
    char *want = llama_greedy_text(base, n_new);
    cr_assert(want[0], "llama-server generated nothing");

    /* the probe: reachable, no block scoring (no echo), so no remote verification */
    duet_err err = {0};
    duet_vocab *v;
    cr_assert_eq(duet_vocab_load_file(&v, LLM, &err), 0, "%s", err.msg);
    duet_remote_params p = duet_remote_default_params();
    p.url = base, p.model = "llm", p.timeout_s = 60;
    duet_remote *r;
    cr_assert_eq(duet_remote_open(&r, &p, &err), 0, "%s", err.msg);
    duet_remote_caps caps;
    cr_assert_eq(duet_remote_probe(r, v, &caps, &err), 0, "%s", err.msg);
    cr_log_info("probe: %s", caps.report);
    cr_assert(caps.reachable && !caps.prompt_logprobs && !caps.token_ids, "%s", caps.report);
    cr_assert(strstr(caps.report, "cannot score a token block") && strstr(caps.report, "Only no echo is supported"),
              "%s", caps.report);
    cr_assert(strstr(caps.report, "routed, cascaded"), "%s", caps.report);

    /* its stream, as text pieces: the same text as its own answer */
    pieces got = {0};
    duet_remote_gen_params gp = {.max_tokens = n_new, .temp = 0, .ignore_eos = 1};
    cr_assert_eq(duet_remote_generate(r, PROMPT, N_PROMPT, &gp, on_piece, &got, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(got.with_id, 0, "llama-server sent token ids?");
    cr_assert_str_eq(got.text, want, "streamed '%s', answered '%s'", got.text, want);

    /* duet generate: routed and cascaded to it; the local ids are a tokenization of its text */
    const char *ways[] = {"--strategy cascade --threshold inf", "--strategy route --threshold -inf", ""};
    for (int i = 0; i < 3; i++) {
        char args[1024], *out = NULL;
        snprintf(args, sizeof args,
                 "generate -m %s --remote %s --tokens '%s' -n %d --temp 0 --ignore-eos -t 1 --json %s 2>&1", SLM, base,
                 PROMPT_IDS, n_new, ways[i]);
        cr_assert_eq(tu_run_duet(args, &out), 0, "%s", out);
        cr_assert(strstr(out, "\"degraded\":false"), "%s: %s", ways[i], out);
        cr_assert(strstr(out, "\"slm\":0"), "the SLM wrote tokens: %s", out);
        char *text = json_text(out);
        cr_assert(text[0] && !strncmp(want, text, strlen(text)), "%s: '%s' is not llama-server's '%s'", ways[i],
                  text, want);
        free(text);
        free(out);
    }

    /* remote verification: refused, with the probe's message */
    char args[1024], *out = NULL;
    snprintf(args, sizeof args, "generate -m %s --draft %s --remote %s --tokens '%s' -n 8 --temp 0 -t 1 2>&1", LLM, SLM,
             base, PROMPT_IDS);
    cr_assert_eq(tu_run_duet(args, &out), 1, "%s", out);
    cr_assert(strstr(out, "cannot verify drafts") && strstr(out, "Only no echo is supported"), "%s", out);
    free(out);
    free(want);
    duet_remote_free(r);
    duet_vocab_free(v);
}

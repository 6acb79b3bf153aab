/* Starting and stopping `duet serve` for the server tests (test_server.c,
 * test_server_openai.c, test_remote_gen.c, test_server_pipeline.c, test_remote.c,
 * ...): the shipped llm with slm-draft (su_start) or alone (su_serve), loopback
 * only, port 0 (a free port, read back from the "listening on" line), one
 * thread; or a config file's server.
 *
 * The server dies with the test process (PR_SET_PDEATHSIG), and
 * su_kill_all() (a Criterion .fini and an atexit handler) kills whatever is
 * left, so a failing or crashing test never leaves a server behind. */
#ifndef DUET_TEST_SERVER_UTIL_H
#define DUET_TEST_SERVER_UTIL_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define SU_LLM DUET_SRC_DIR "/models/llm.gguf"
#define SU_DRAFT DUET_SRC_DIR "/models/slm-draft.gguf"

typedef struct {
    pid_t pid;
    int port;
    char log[256]; /* the server's stderr */
    char base[64]; /* http://127.0.0.1:PORT */
} su_server;

#define SU_MAX 4
static su_server *su_live[SU_MAX];

static inline double su_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline void su_kill(su_server *s) {
    if (!s || s->pid <= 0) return;
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

static inline void su_kill_all(void) {
    for (int i = 0; i < SU_MAX; i++)
        if (su_live[i]) su_kill(su_live[i]), su_live[i] = NULL;
}

/* The server's stderr so far (malloc'd), for messages. */
static inline char *su_log(const su_server *s) {
    char *t = tu_slurp(s->log, NULL);
    return t ? t : strdup("(no log)");
}

/* Starts ARGV (DUET_BIN's argv, NULL-terminated) with its stderr in s->log and
 * waits (at most 60 s) for the "listening on" line; returns -1 once it listens,
 * else its exit status when it ends before (128: a signal), its log in *log.
 * (inline: not every test starts one.) */
static inline int su_spawn(su_server *s, char *const argv[], char **log) {
    static int registered;
    if (!registered) atexit(su_kill_all), registered = 1;
    memset(s, 0, sizeof *s);
    snprintf(s->log, sizeof s->log, "/tmp/duet_test_server_%d_XXXXXX", (int)getpid());
    int fd = mkstemp(s->log);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    const pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0), dup2(null, 1), dup2(fd, 2);
        execv(DUET_BIN, argv);
        _exit(127);
    }
    close(fd);
    s->pid = pid;
    for (int i = 0; i < SU_MAX; i++)
        if (!su_live[i]) {
            su_live[i] = s;
            break;
        }
    const double t0 = su_now();
    while (su_now() - t0 < 60) {
        char *t = tu_slurp(s->log, NULL);
        const char *l = t ? strstr(t, "listening on http://127.0.0.1:") : NULL;
        if (l) s->port = atoi(l + strlen("listening on http://127.0.0.1:"));
        free(t);
        if (s->port > 0) break;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            s->pid = 0;
            *log = su_log(s);
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
        }
        usleep(20 * 1000);
    }
    if (s->port <= 0) {
        char *slog = su_log(s);
        su_kill(s);
        cr_assert_fail("duet serve did not report its port within 60 s: %s", slog);
    }
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", s->port);
    return -1;
}

/* Starts `duet serve -m llm [--draft DRAFT] --host 127.0.0.1 --port 0 EXTRA`
 * (DRAFT: NULL for none; EXTRA: more flags, split on spaces) and asserts that
 * it listens. */
static inline void su_serve(su_server *s, const char *draft, const char *extra) {
    char *argv[64];
    int argc = 0;
    char *copy = strdup(extra ? extra : "");
    argv[argc++] = DUET_BIN;
    argv[argc++] = "serve";
    argv[argc++] = "-m";
    argv[argc++] = SU_LLM;
    if (draft) {
        argv[argc++] = "--draft";
        argv[argc++] = (char *)draft;
    }
    argv[argc++] = "--host";
    argv[argc++] = "127.0.0.1";
    argv[argc++] = "--port";
    argv[argc++] = "0";
    for (char *tok = strtok(copy, " "); tok && argc < 63; tok = strtok(NULL, " ")) argv[argc++] = tok;
    argv[argc] = NULL;
    char *log = NULL;
    const int st = su_spawn(s, argv, &log);
    if (st >= 0) cr_assert_fail("duet serve %s exited (status %d) before listening: %s", extra ? extra : "", st, log);
    free(copy);
}

/* Starts `duet serve -m llm --draft slm-draft --port 0 -t 1 EXTRA` (EXTRA: more
 * flags, split on spaces). Waits (at most 60 s) for the listening line. */
static inline void su_start(su_server *s, const char *extra) {
    char flags[512];
    snprintf(flags, sizeof flags, "-t 1 %s", extra ? extra : "");
    su_serve(s, SU_DRAFT, flags);
}

/* Starts `duet serve --config FILE` (its models and port in the file: port 0);
 * returns the exit status when it ends before listening (its log in *log), else -1. */
static inline int su_start_config(su_server *s, const char *config, char **log) {
    char *argv[] = {DUET_BIN, "serve", "--config", (char *)config, NULL};
    return su_spawn(s, argv, log);
}

/* SIGTERM, and waits for the server to end, whatever its status (for tests
 * that stop it mid-answer; su_stop checks the status). */
static inline void su_end(su_server *s) {
    if (s->pid <= 0) return;
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
    for (int i = 0; i < SU_MAX; i++)
        if (su_live[i] == s) su_live[i] = NULL;
    unlink(s->log);
}

/* SIGTERM, then the server must exit 0 within 30 s (it drains, frees, and in
 * a sanitizer build any leak or error shows as a nonzero status). */
static inline void su_stop(su_server *s) {
    if (s->pid <= 0) return;
    kill(s->pid, SIGTERM);
    const double t0 = su_now();
    int st = 0;
    pid_t w = 0;
    while ((w = waitpid(s->pid, &st, WNOHANG)) == 0 && su_now() - t0 < 30) usleep(20 * 1000);
    if (w == 0) {
        su_kill(s);
        char *log = su_log(s);
        cr_assert_fail("duet serve did not stop within 30 s of SIGTERM: %s", log);
    }
    s->pid = 0;
    for (int i = 0; i < SU_MAX; i++)
        if (su_live[i] == s) su_live[i] = NULL;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char *log = su_log(s);
        cr_assert_fail("duet serve ended with %s %d after SIGTERM: %s", WIFEXITED(st) ? "exit status" : "signal",
                       WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), log);
    }
    unlink(s->log);
}

#endif

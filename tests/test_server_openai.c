/* duet serve through the official OpenAI Node client: starts the server
 * (with --api-key, so the SDK's bearer token is checked) and runs
 * tests/server_openai.mjs against it. Skips, saying "SKIPPED: ..." (ctest
 * reports it as skipped), when node or the `openai` npm package is missing:
 * `npm ci` at the repository root installs the version package.json pins
 * (.ci/run does). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_util.h"
#include "testutil.h"

static su_server srv;
static void teardown(void) { su_kill_all(); }

/* Runs a shell command; its exit status, stdout+stderr in *out (malloc'd). */
static int sh(const char *cmd, char **out) {
    FILE *p = popen(cmd, "r");
    cr_assert(p, "popen %s", cmd);
    size_t cap = 4096, n = 0, r;
    char *buf = malloc(cap);
    while ((r = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += r;
        if (cap - n < 2) buf = realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    int st = pclose(p);
    if (out) *out = buf;
    else free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void skip(const char *why) {
    /* ctest's SKIP_REGULAR_EXPRESSION (tests/CMakeLists.txt) matches this line */
    fprintf(stderr, "SKIPPED: test_server_openai: %s\n", why);
    fflush(stderr);
    cr_skip_test("SKIPPED: %s", why);
}

Test(server_openai, official_client, .fini = teardown, .timeout = 300) {
    char *out = NULL;
    if (sh("command -v node 2>&1", &out) != 0) {
        free(out);
        skip("node is not installed (apt-get install nodejs npm)");
        return;
    }
    free(out);
    if (sh("cd '" DUET_SRC_DIR "' && node -e \"require.resolve('openai')\" 2>&1", &out) != 0) {
        free(out);
        skip("the openai npm package is not installed: run `npm ci` in the repository root (package.json pins it)");
        return;
    }
    free(out);
    su_start(&srv, "--api-key sk-duet-test");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cd '%s' && timeout 240 node tests/server_openai.mjs --base %s --key sk-duet-test 2>&1",
             DUET_SRC_DIR, srv.base);
    const double t0 = su_now();
    int rc = sh(cmd, &out);
    if (rc == 77) {
        char why[512];
        snprintf(why, sizeof why, "%.400s", out);
        free(out);
        skip(why);
        return;
    }
    cr_assert_eq(rc, 0, "node tests/server_openai.mjs exited %d:\n%s", rc, out);
    cr_log_info("openai SDK cases passed in %.1f s:\n%s", su_now() - t0, out);
    free(out);
    su_stop(&srv);
}

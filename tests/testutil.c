#include <criterion/criterion.h>
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

const char *tu_data(const char *rel, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%s", DUET_DATA, rel);
    return buf;
}

void *tu_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) { free(p); p = NULL; }
    fclose(f);
    if (p) { p[n] = 0; if (len) *len = (size_t)n; }
    return p;
}

int tu_run_duet(const char *args, char **out) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s", DUET_BIN, args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += r;
        if (cap - n < 2) { cap *= 2; buf = realloc(buf, cap); }
    }
    if (buf) buf[n] = 0;
    int st = pclose(p);
    if (out) *out = buf; else free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

duet_model *tu_load_path(const char *path) {
    duet_err err = {0};
    duet_model *m = NULL;
    duet_model_params p = duet_model_default_params();
    p.n_threads = 1;
    cr_assert_eq(duet_model_load(&m, path, &p, &err), 0, "%s: %s", path, err.msg);
    return m;
}

duet_model *tu_load_ref(const char *rel) {
    char path[512];
    return tu_load_path(tu_data(rel, path, sizeof path));
}

duet_sampler *tu_greedy(int n_vocab) {
    duet_sampler_params sp = duet_sampler_default_params();
    sp.temp = 0;
    return duet_sampler_new(&sp, n_vocab);
}

/* The redact stage over whole text files: how fast it scans, and what it
 * finds in text that holds no PII (a false-positive count: every value it
 * redacts in TinyStories is one a user would not want touched).
 *
 *   bench_redact [--names FILE] [--json] FILE...
 *
 * Per file: bytes, values replaced, distinct values by kind, seconds (best
 * of 3 passes, each with a fresh redactor), MB/s; --json prints one object
 * {"files": [...]} on stdout instead of lines. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duet/redact.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        const long n = ftell(f);
        rewind(f);
        if (n >= 0 && (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
            buf[n] = 0;
            *len = (size_t)n;
        } else {
            free(buf), buf = NULL;
        }
    }
    fclose(f);
    return buf;
}

int main(int argc, char **argv) {
    const char *names = NULL;
    int json = 0, first_file = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--names") && i + 1 < argc) names = argv[++i];
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: bench_redact [--names FILE] [--json] FILE...\n");
            return 2;
        } else if (!first_file) first_file = i;
    }
    if (!first_file) {
        fprintf(stderr, "usage: bench_redact [--names FILE] [--json] FILE...\n");
        return 2;
    }
    cJSON *out = cJSON_CreateObject(), *files = cJSON_AddArrayToObject(out, "files");
    for (int i = first_file; i < argc; i++) {
        if (!strcmp(argv[i], "--names")) { i++; continue; }
        if (argv[i][0] == '-') continue;
        size_t len = 0;
        char *text = read_file(argv[i], &len);
        if (!text) {
            fprintf(stderr, "bench_redact: cannot read '%s'\n", argv[i]);
            return 1;
        }
        double best = 1e30;
        int replaced = 0, by_kind[DUET_PII_COUNT] = {0};
        for (int pass = 0; pass < 3; pass++) {
            duet_redact_params p = duet_redact_default_params();
            p.names_file = names;
            duet_redactor *r;
            duet_err err = {0};
            if (duet_redactor_new(&r, &p, &err) < 0) {
                fprintf(stderr, "bench_redact: %s\n", err.msg);
                return 1;
            }
            char *red;
            const double t0 = now_s();
            replaced = duet_redact(r, text, len, &red, &err);
            const double dt = now_s() - t0;
            if (replaced < 0) {
                fprintf(stderr, "bench_redact: %s: %s\n", argv[i], err.msg);
                return 1;
            }
            if (dt < best) best = dt;
            for (int k = 0; k < DUET_PII_COUNT; k++) by_kind[k] = duet_redact_count_kind(r, k);
            free(red);
            duet_redactor_free(r);
        }
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "file", argv[i]);
        cJSON_AddNumberToObject(f, "bytes", (double)len);
        cJSON_AddNumberToObject(f, "replaced", replaced);
        cJSON *by = cJSON_AddObjectToObject(f, "distinct_by_kind");
        for (int k = 0; k < DUET_PII_COUNT; k++) cJSON_AddNumberToObject(by, duet_pii_kind_name(k), by_kind[k]);
        cJSON_AddNumberToObject(f, "seconds", best);
        cJSON_AddNumberToObject(f, "mb_per_s", len / best / 1e6);
        cJSON_AddItemToArray(files, f);
        if (!json) {
            printf("%s: %zu bytes, %d values replaced (", argv[i], len, replaced);
            for (int k = 0; k < DUET_PII_COUNT; k++) printf("%s%s %d", k ? ", " : "", duet_pii_kind_name(k), by_kind[k]);
            printf(" distinct), %.3f s, %.1f MB/s\n", best, len / best / 1e6);
        }
        free(text);
    }
    if (json) {
        char *s = cJSON_PrintUnformatted(out);
        printf("%s\n", s);
        free(s);
    }
    cJSON_Delete(out);
    return 0;
}

/* Tokenizer throughput and robustness on one thread.
 *
 *   bench_tokenizer [--runs N] [--json] [--no-robust]
 *                   --vocab NAME=PATH ... --input NAME=PATH ...
 *
 * Throughput: every vocabulary tokenizes every input N times (default 5);
 * MB/s (1 MB = 1e6 bytes of input text) from the median wall time and from
 * the median CPU time of the thread (the steadier figure on a shared machine).
 * Robustness: for every vocabulary, degenerate inputs (invalid UTF-8, empty,
 * 1 MB of one repeated character, NUL bytes, special-token look-alikes) must
 * finish within a time budget; a case over budget, a crash-free error return
 * or a failed round trip (where the tokenizer is lossless) is a FAIL and the
 * exit status is 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duet/tok.h"

#define MAX_ITEMS 16

typedef struct item {
    const char *name, *path;
} item;

static double clock_s(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) {
        p[n] = 0;
        *len = (size_t)n;
    }
    return p;
}

/* s as a JSON string literal. */
static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        putchar(*s);
    }
    putchar('"');
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median wall seconds of `runs` tokenizations (*cpu: median thread CPU
 * seconds); *n_tok gets the token count. */
static double time_tokenize(const duet_vocab *v, const char *text, size_t len, int flags, int runs, int *n_tok,
                            double *cpu) {
    double t[64], c[64];
    if (runs > 64) runs = 64;
    for (int r = 0; r < runs; r++) {
        int32_t *ids = NULL;
        double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
        *n_tok = duet_tokenize_alloc(v, text, len, flags, &ids);
        c[r] = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
        t[r] = clock_s(CLOCK_MONOTONIC) - t0;
        free(ids);
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    qsort(c, (size_t)runs, sizeof *c, cmp_double);
    *cpu = c[runs / 2];
    return t[runs / 2];
}

/* 1 if detokenize(tokenize(text)) == text. */
static int round_trips(const duet_vocab *v, const char *text, size_t len) {
    int32_t *ids = NULL;
    int n = duet_tokenize_alloc(v, text, len, 0, &ids);
    if (n < 0) return 0;
    char *back = malloc(len + 1);
    int64_t m = back ? duet_detokenize(v, ids, n, back, len + 1, 0) : -1;
    int ok = m == (int64_t)len && memcmp(back, text, len) == 0;
    free(back);
    free(ids);
    return ok;
}

typedef struct robust_case {
    const char *name;
    char *text;
    size_t len;
    int flags;
    int lossless; /* check the round trip (valid UTF-8, no special parsing) */
    double budget_s;
} robust_case;

static char *repeat(const char *unit, size_t unit_len, size_t total, size_t *len) {
    size_t n = total / unit_len * unit_len;
    char *p = malloc(n + 1);
    if (!p) return NULL;
    for (size_t i = 0; i < n; i += unit_len) memcpy(p + i, unit, unit_len);
    p[n] = 0;
    *len = n;
    return p;
}

static int build_robust(robust_case *c) {
    const size_t MB = 1000000;
    int k = 0;
    size_t len;
    /* random bytes (fixed seed): mostly invalid UTF-8 */
    char *rnd = malloc(MB);
    if (!rnd) return 0;
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < MB; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        rnd[i] = (char)(s >> 24);
    }
    c[k++] = (robust_case){"invalid UTF-8 (1 MB random bytes)", rnd, MB, 0, 0, 2.0};
    c[k++] = (robust_case){"empty", calloc(1, 1), 0, 0, 1, 0.01};
    c[k] = (robust_case){"1 MB of 'a'", repeat("a", 1, MB, &len), len, 0, 1, 2.0};
    c[k++].len = len;
    c[k] = (robust_case){"1 MB of ' '", repeat(" ", 1, MB, &len), len, 0, 1, 2.0};
    c[k++].len = len;
    c[k] = (robust_case){"1 MB of '\\n'", repeat("\n", 1, MB, &len), len, 0, 1, 2.0};
    c[k++].len = len;
    c[k] = (robust_case){"1 MB of U+1F600 emoji", repeat("\xF0\x9F\x98\x80", 4, MB, &len), len, 0, 1, 2.0};
    c[k++].len = len;
    c[k] = (robust_case){"1 MB of digits '7'", repeat("7", 1, MB, &len), len, 0, 1, 2.0};
    c[k++].len = len;
    c[k] = (robust_case){"1 MB of NUL bytes", calloc(MB + 1, 1), MB, 0, 1, 2.0};
    c[k++].len = MB;
    c[k] = (robust_case){"1 MB of \"a \\x00\"", repeat("a \0", 3, MB, &len), len, 0, 1, 2.0};
    c[k++].len = len;
    c[k] = (robust_case){"1 MB of '<|' (parse special)", repeat("<|", 2, MB, &len), len, DUET_TOK_PARSE_SPECIAL, 0,
                         2.0};
    c[k++].len = len;
    c[k] = (robust_case){"1 MB of 'é' decomposed", repeat("e\xCC\x81", 3, MB, &len), len, 0, 1, 2.0};
    c[k++].len = len;
    for (int i = 0; i < k; i++)
        if (!c[i].text) return 0;
    return k;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_tokenizer [--runs N] [--json] [--no-robust] --vocab NAME=PATH ... --input NAME=PATH ...\n");
}

static int parse_item(const char *arg, item *it) {
    const char *eq = strchr(arg, '=');
    if (!eq) return 0;
    char *name = strndup(arg, (size_t)(eq - arg));
    it->name = name;
    it->path = eq + 1;
    return 1;
}

int main(int argc, char **argv) {
    item vocabs[MAX_ITEMS], inputs[MAX_ITEMS];
    int nv = 0, ni = 0, runs = 5, json = 0, robust = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--no-robust")) robust = 0;
        else if (!strcmp(argv[i], "--vocab") && i + 1 < argc && nv < MAX_ITEMS && parse_item(argv[++i], &vocabs[nv])) nv++;
        else if (!strcmp(argv[i], "--input") && i + 1 < argc && ni < MAX_ITEMS && parse_item(argv[++i], &inputs[ni])) ni++;
        else {
            usage();
            return 2;
        }
    }
    if (!nv || runs < 1) {
        usage();
        return 2;
    }
    char *text[MAX_ITEMS];
    size_t text_len[MAX_ITEMS];
    for (int i = 0; i < ni; i++) {
        if (!(text[i] = slurp(inputs[i].path, &text_len[i]))) {
            fprintf(stderr, "bench_tokenizer: cannot read %s\n", inputs[i].path);
            return 1;
        }
    }
    robust_case rc[16];
    int nr = robust ? build_robust(rc) : 0;
    if (robust && !nr) {
        fprintf(stderr, "bench_tokenizer: out of memory\n");
        return 1;
    }
    int failures = 0;
    if (json) printf("{\"runs\": %d, \"threads\": 1, \"throughput\": [", runs);
    else printf("throughput (one thread, median of %d runs; MB = 1e6 bytes)\n%-12s %-12s %9s %9s %9s %10s %10s\n",
                runs, "vocab", "input", "bytes", "tokens", "wall s", "MB/s wall", "MB/s cpu");
    int first = 1;
    duet_vocab *voc[MAX_ITEMS];
    for (int v = 0; v < nv; v++) {
        duet_err err = {0};
        if (duet_vocab_load_file(&voc[v], vocabs[v].path, &err)) {
            fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
            return 1;
        }
        for (int i = 0; i < ni; i++) {
            int n_tok = 0;
            double cpu, t = time_tokenize(voc[v], text[i], text_len[i], 0, runs, &n_tok, &cpu);
            double mbs = (double)text_len[i] / 1e6 / t, mbs_cpu = (double)text_len[i] / 1e6 / cpu;
            if (json) {
                printf("%s{\"vocab\": ", first ? "" : ", ");
                json_str(vocabs[v].name);
                printf(", \"input\": ");
                json_str(inputs[i].name);
                printf(", \"bytes\": %zu, \"tokens\": %d, \"seconds\": %.6f, \"cpu_seconds\": %.6f, \"mb_per_s\": %.2f, "
                       "\"mb_per_s_cpu\": %.2f}",
                       text_len[i], n_tok, t, cpu, mbs, mbs_cpu);
            }
            else
                printf("%-12s %-12s %9zu %9d %9.4f %10.2f %10.2f\n", vocabs[v].name, inputs[i].name, text_len[i], n_tok, t,
                       mbs, mbs_cpu);
            first = 0;
        }
    }
    if (json) printf("], \"robustness\": [");
    else if (nr) printf("\nrobustness (CPU-time budget per case; round trip checked where lossless)\n%-12s %-32s %9s %9s %9s %6s %s\n",
                        "vocab", "case", "cpu s", "wall s", "budget", "rt", "result");
    first = 1;
    for (int v = 0; v < nv; v++) {
        for (int r = 0; r < nr; r++) {
            int n_tok = 0;
            double cpu, t = time_tokenize(voc[v], rc[r].text, rc[r].len, rc[r].flags, 1, &n_tok, &cpu);
            int rt = rc[r].lossless ? round_trips(voc[v], rc[r].text, rc[r].len) : -1;
            int ok = n_tok >= 0 && cpu <= rc[r].budget_s && rt != 0; /* CPU time: the work done, not the machine's load */
            failures += !ok;
            const char *rts = rt < 0 ? "-" : rt ? "ok" : "FAIL";
            if (json)
            {
                printf("%s{\"vocab\": ", first ? "" : ", ");
                json_str(vocabs[v].name);
                printf(", \"case\": ");
                json_str(rc[r].name);
                printf(", \"bytes\": %zu, \"tokens\": %d, \"seconds\": %.6f, \"cpu_seconds\": %.6f, \"budget_s\": %.3f, "
                       "\"round_trip\": \"%s\", \"ok\": %s}",
                       rc[r].len, n_tok, t, cpu, rc[r].budget_s, rts, ok ? "true" : "false");
            }
            else
                printf("%-12s %-32s %9.4f %9.4f %9.3f %6s %s\n", vocabs[v].name, rc[r].name, cpu, t, rc[r].budget_s,
                       rts, ok ? "ok" : "FAIL");
            first = 0;
        }
    }
    if (json) printf("], \"failures\": %d}\n", failures);
    else if (nr) printf("\n%d robustness failure(s)\n", failures);
    for (int v = 0; v < nv; v++) duet_vocab_free(voc[v]);
    for (int r = 0; r < nr; r++) free(rc[r].text);
    for (int i = 0; i < ni; i++) free(text[i]);
    return failures ? 1 : 0;
}

/* bench_batch: what one evaluation costs the engine, as the strategies and
 * the server call it, on one model:
 *
 *   batch:   duet_eval_batch of S sequences x B tokens each, every sequence
 *            in decode-consistent mode after a prompt of CTX tokens (S = 1:
 *            one speculative verification block of B; B = 1: S plain
 *            decoding requests stepped together; S = 4, B = 4: four
 *            verification blocks sharing one pass), rolled back after each
 *            run; reported in ms and as a multiple of one token's eval;
 *   prefill: duet_eval of P prompt tokens from position 0 (default mode).
 *
 * Each figure is the fastest and the median of R runs. -c times with the
 * calling thread's CPU clock instead of the wall clock: with -t 1 on a
 * machine shared with other jobs it gives what one core does while it runs
 * (time spent descheduled is not counted). Nothing here checks outputs
 * (tests/test_batch_rows.c and test_model_consistent.c do).
 *
 * usage: bench_batch -m MODEL [-t THREADS] [--ctx 96] [-r 41] [-c] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duet/model.h"

static int cpu_clock;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(cpu_clock ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define MAX_S 16
#define MAX_RUNS 256

int main(int argc, char **argv) {
    const char *path = NULL;
    int threads = 1, ctx = 96, runs = 41;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c")) cpu_clock = 1;
        else if (i + 1 < argc && !strcmp(argv[i], "-m")) path = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "-t")) threads = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--ctx")) ctx = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "-r")) runs = atoi(argv[++i]);
        else path = NULL, i = argc;
    }
    if (!path || threads < 1 || ctx < 1 || runs < 1 || runs > MAX_RUNS || (cpu_clock && threads != 1)) {
        fprintf(stderr, "usage: bench_batch -m MODEL [-t THREADS] [--ctx 96] [-r 41 (<= %d)] [-c (with -t 1)]\n",
                MAX_RUNS);
        return 2;
    }
    duet_err err = {0};
    duet_model *m = NULL;
    duet_model_params mp = duet_model_default_params();
    mp.n_threads = threads;
    if (duet_model_load(&m, path, &mp, &err) < 0) {
        fprintf(stderr, "bench_batch: %s\n", err.msg);
        return 1;
    }
    const int nv = duet_model_n_vocab(m);
    const int n_ctx = ctx + 128 > 512 ? ctx + 128 : 512;
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)n_ctx); /* (n_ctx) */
    float *logits = malloc(sizeof(float) * (size_t)nv * 64);   /* (64, n_vocab) */
    duet_seq *seq[MAX_S] = {0};
    if (!prompt || !logits) return 1;
    for (int i = 0; i < n_ctx; i++) prompt[i] = (int32_t)((i * 37 + 11) % nv);
    for (int s = 0; s < MAX_S; s++)
        if (duet_seq_new(&seq[s], m, n_ctx, &err) < 0 || duet_eval(seq[s], prompt, ctx, NULL, 0, &err) < 0 ||
            duet_seq_set_decode_consistent(seq[s], 1) < 0) {
            fprintf(stderr, "bench_batch: %s\n", err.msg);
            return 1;
        }

    printf("%s, %d thread(s), %s clock, context %d, fastest / median of %d runs\n\n", path, threads,
           cpu_clock ? "thread CPU" : "wall", ctx, runs);
    printf("| sequences x tokens | rows | fastest ms | median ms | median x one token |\n|---|---|---|---|---|\n");
    static const int shapes[][2] = {{1, 1}, {1, 4}, {1, 8}, {1, 16}, {4, 1}, {4, 2}, {4, 4}, {8, 1}, {8, 4}, {16, 1}};
    double t[MAX_RUNS], one = 0;
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        const int S = shapes[c][0], B = shapes[c][1], n = S * B;
        int32_t tok[64];
        duet_seq *bs[64];
        uint8_t want[64];
        for (int i = 0; i < n; i++) tok[i] = (int32_t)((i * 13 + 5) % nv), bs[i] = seq[i / B], want[i] = 1;
        for (int r = 0; r < runs; r++) {
            const duet_batch b = {.n_tokens = n, .tokens = tok, .seqs = bs, .want = want, .logits = logits};
            const double t0 = now_s();
            if (duet_eval_batch(m, &b, &err) < 0) {
                fprintf(stderr, "bench_batch: %s\n", err.msg);
                return 1;
            }
            t[r] = now_s() - t0;
            for (int s = 0; s < S; s++) duet_rollback(seq[s], ctx);
        }
        qsort(t, (size_t)runs, sizeof t[0], cmp_double);
        if (c == 0) one = t[runs / 2];
        printf("| %d x %d | %d | %.3f | %.3f | %.2f |\n", S, B, n, t[0] * 1e3, t[runs / 2] * 1e3, t[runs / 2] / one);
    }

    printf("\n| prefill tokens | fastest ms | median ms | tok/s (median) |\n|---|---|---|---|\n");
    static const int prefill[] = {4, 16, 32, 64, 127, 256};
    duet_seq *p = seq[0];
    duet_seq_set_decode_consistent(p, 0);
    for (size_t c = 0; c < sizeof prefill / sizeof prefill[0]; c++) {
        const int P = prefill[c];
        if (P > n_ctx) break;
        duet_rollback(p, 0);
        for (int r = 0; r < runs; r++) {
            const double t0 = now_s();
            if (duet_eval(p, prompt, P, logits, 1, &err) < 0) {
                fprintf(stderr, "bench_batch: %s\n", err.msg);
                return 1;
            }
            t[r] = now_s() - t0;
            duet_rollback(p, 0);
        }
        qsort(t, (size_t)runs, sizeof t[0], cmp_double);
        printf("| %d | %.2f | %.2f | %.0f |\n", P, t[0] * 1e3, t[runs / 2] * 1e3, P / t[runs / 2]);
    }
    for (int s = 0; s < MAX_S; s++) duet_seq_free(seq[s]);
    duet_model_free(m);
    free(prompt);
    free(logits);
    return 0;
}

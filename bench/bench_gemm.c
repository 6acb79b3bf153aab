/* bench_gemm: duet_matmul on the matrices of a 134M llama (n_embd 768, n_ff
 * 2048, n_vocab 32000, 12 layers, no GQA) -- the shapes llama-bench's pp512 /
 * tg128 run -- per weight type, plus the raw sgemm.
 *
 *   prefill: every layer matrix with m = n_prompt tokens, the output matrix
 *            with m = 1 (llama.cpp only computes the last token's logits);
 *            reported as GFLOP/s and the tokens/s those matmuls alone allow;
 *   decode:  every matrix with m = 1; reported as GB/s of weights streamed and
 *            tokens/s.
 * Attention, norms and the rest of a forward pass are not included, so the
 * tokens/s figures are upper bounds for a whole model. Each figure is the
 * median of 5 runs.
 *
 * usage: bench_gemm [-t threads] [-p n_prompt] [-n decode tokens per run] [-c] [--json]
 *                   [TYPE ...]   (sgemm F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K_M Q5_K_M Q6_K)
 * -c times with the calling thread's CPU clock instead of the wall clock: with
 * -t 1 on a machine shared with other jobs it gives what one core does while it
 * runs (time spent descheduled is not counted). --json prints one JSON object
 * instead of the table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duet/kernels.h"

#define N_EMBD 768
#define N_FF 2048
#define N_VOCAB 32000
#define N_LAYER 12
#define N_RUNS 5

typedef struct {
    duet_type type;
    int64_t n_in, n_out;
    void *w;
} matrix;

static clockid_t g_clock = CLOCK_MONOTONIC;
static int g_json;      /* print one JSON object */
static int g_n_results; /* results printed so far (JSON separators) */

/* One result: a table line, or an element of the JSON "results" array. */
static void report(const char *line, const char *json) {
    if (g_json) printf("%s%s", g_n_results++ ? ",\n  " : "\n  ", json);
    else printf("%s\n", line);
    fflush(stdout);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(g_clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

/* A weight of the given type: 64 distinct quantized random rows repeated, so
 * that building it is quick but every byte is its own memory. */
static int make_matrix(matrix *mt, duet_type t, int64_t n_in, int64_t n_out) {
    mt->type = t;
    mt->n_in = n_in;
    mt->n_out = n_out;
    const size_t row = duet_row_size(t, n_in);
    mt->w = malloc(row * (size_t)n_out);
    float *src = malloc(sizeof(float) * (size_t)n_in);
    if (!mt->w || !src) {
        free(src);
        return -1;
    }
    const int distinct = 64;
    for (int r = 0; r < distinct && r < n_out; r++) {
        for (int64_t i = 0; i < n_in; i++) src[i] = 0.05f * frand();
        duet_quantize_row(t, src, (char *)mt->w + (size_t)r * row, n_in);
    }
    for (int64_t r = distinct; r < n_out; r++)
        memcpy((char *)mt->w + (size_t)r * row, (char *)mt->w + (size_t)(r % distinct) * row, row);
    free(src);
    return 0;
}

/* llama.cpp's use_more_bits(): layers whose attn_v / ffn_down get Q6_K in Q4_K_M / Q5_K_M. */
static int more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

typedef struct {
    const char *name;
    duet_type base, out, more; /* most matrices, output, attn_v/ffn_down of more_bits layers */
} mix;

static const mix k_mixes[] = {
    {"F32", DUET_TYPE_F32, DUET_TYPE_F32, DUET_TYPE_F32},
    {"F16", DUET_TYPE_F16, DUET_TYPE_F16, DUET_TYPE_F16},
    {"BF16", DUET_TYPE_BF16, DUET_TYPE_BF16, DUET_TYPE_BF16},
    {"Q8_0", DUET_TYPE_Q8_0, DUET_TYPE_Q8_0, DUET_TYPE_Q8_0},
    {"Q4_0", DUET_TYPE_Q4_0, DUET_TYPE_Q6_K, DUET_TYPE_Q4_0},
    {"Q4_1", DUET_TYPE_Q4_1, DUET_TYPE_Q6_K, DUET_TYPE_Q4_1},
    {"Q5_0", DUET_TYPE_Q5_0, DUET_TYPE_Q6_K, DUET_TYPE_Q5_0},
    {"Q5_1", DUET_TYPE_Q5_1, DUET_TYPE_Q6_K, DUET_TYPE_Q5_1},
    {"Q4_K_M", DUET_TYPE_Q4_K, DUET_TYPE_Q6_K, DUET_TYPE_Q6_K},
    {"Q5_K_M", DUET_TYPE_Q5_K, DUET_TYPE_Q6_K, DUET_TYPE_Q6_K},
    {"Q6_K", DUET_TYPE_Q6_K, DUET_TYPE_Q6_K, DUET_TYPE_Q6_K},
};

#define N_MAT (N_LAYER * 7 + 1)

static int build_model(const mix *mx, matrix *mats) {
    int k = 0;
    for (int l = 0; l < N_LAYER; l++) {
        const duet_type v = more_bits(l, N_LAYER) ? mx->more : mx->base;
        const struct { duet_type t; int64_t n_in, n_out; } shapes[7] = {
            {mx->base, N_EMBD, N_EMBD}, {mx->base, N_EMBD, N_EMBD}, {v, N_EMBD, N_EMBD},
            {mx->base, N_EMBD, N_EMBD}, {mx->base, N_EMBD, N_FF},   {mx->base, N_EMBD, N_FF},
            {v, N_FF, N_EMBD}};
        for (int s = 0; s < 7; s++)
            if (make_matrix(&mats[k++], shapes[s].t, shapes[s].n_in, shapes[s].n_out) != 0) return -1;
    }
    return make_matrix(&mats[k], mx->out, N_EMBD, N_VOCAB);
}

static void bench_mix(const mix *mx, duet_pool *pool, int n_prompt, int n_decode) {
    static matrix mats[N_MAT];
    memset(mats, 0, sizeof mats);
    if (build_model(mx, mats) != 0) {
        fprintf(stderr, "bench_gemm: out of memory for %s\n", mx->name);
        goto out;
    }
    float *x = malloc(sizeof(float) * (size_t)n_prompt * N_FF);
    float *y = malloc(sizeof(float) * (size_t)n_prompt * N_FF + sizeof(float) * N_VOCAB);
    if (!x || !y) {
        free(x);
        free(y);
        goto out;
    }
    for (int64_t i = 0; i < (int64_t)n_prompt * N_FF; i++) x[i] = frand();

    double flops = 0.0, bytes = 0.0;
    for (int i = 0; i < N_MAT; i++) {
        const int64_t m = i == N_MAT - 1 ? 1 : n_prompt;
        flops += 2.0 * (double)m * (double)mats[i].n_in * (double)mats[i].n_out;
        bytes += (double)duet_row_size(mats[i].type, mats[i].n_in) * (double)mats[i].n_out;
    }
    double tp[N_RUNS], td[N_RUNS];
    for (int r = 0; r < N_RUNS; r++) {
        double t0 = now_s();
        for (int i = 0; i < N_MAT; i++)
            duet_matmul(pool, y, mats[i].type, mats[i].w, x, i == N_MAT - 1 ? 1 : n_prompt, mats[i].n_in,
                        mats[i].n_out);
        tp[r] = now_s() - t0;
        t0 = now_s();
        for (int k = 0; k < n_decode; k++)
            for (int i = 0; i < N_MAT; i++)
                duet_matmul(pool, y, mats[i].type, mats[i].w, x, 1, mats[i].n_in, mats[i].n_out);
        td[r] = (now_s() - t0) / n_decode;
    }
    const double p = median(tp, N_RUNS), d = median(td, N_RUNS);
    char line[256], json[512];
    snprintf(line, sizeof line, "%-7s prefill %4d: %7.1f GFLOP/s %8.1f tok/s | decode: %6.1f GB/s %7.1f tok/s (%.0f MB)",
             mx->name, n_prompt, flops / p * 1e-9, n_prompt / p, bytes / d * 1e-9, 1.0 / d, bytes * 1e-6);
    snprintf(json, sizeof json,
             "{\"type\": \"%s\", \"n_prompt\": %d, \"prefill_gflops\": %.2f, \"prefill_tok_s\": %.1f, "
             "\"decode_gb_s\": %.2f, \"decode_tok_s\": %.1f, \"weight_mb\": %.1f}",
             mx->name, n_prompt, flops / p * 1e-9, n_prompt / p, bytes / d * 1e-9, 1.0 / d, bytes * 1e-6);
    report(line, json);
    free(x);
    free(y);
out:
    for (int i = 0; i < N_MAT; i++) free(mats[i].w);
}

/* The raw sgemm on square and prefill shapes (C = A B^T, as duet_matmul calls it). */
static void bench_sgemm(duet_pool *pool) {
    const int64_t shapes[][3] = {{512, 768, 768}, {512, 2048, 768}, {512, 768, 2048}, {1024, 1024, 1024}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *A = malloc(sizeof(float) * (size_t)(M * K)), *B = malloc(sizeof(float) * (size_t)(N * K));
        float *C = malloc(sizeof(float) * (size_t)(M * N));
        if (!A || !B || !C) {
            free(A), free(B), free(C);
            return;
        }
        for (int64_t i = 0; i < M * K; i++) A[i] = frand();
        for (int64_t i = 0; i < N * K; i++) B[i] = frand();
        double t[N_RUNS];
        for (int r = 0; r < N_RUNS; r++) {
            const double t0 = now_s();
            duet_sgemm(pool, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
            t[r] = now_s() - t0;
        }
        const double g = 2.0 * (double)(M * N * K) / median(t, N_RUNS) * 1e-9;
        char line[256], json[256];
        snprintf(line, sizeof line, "sgemm   M %4ld N %4ld K %4ld: %7.1f GFLOP/s (%.1f per thread)", (long)M,
                 (long)N, (long)K, g, g / duet_pool_size(pool));
        snprintf(json, sizeof json, "{\"type\": \"sgemm\", \"M\": %ld, \"N\": %ld, \"K\": %ld, \"gflops\": %.2f}",
                 (long)M, (long)N, (long)K, g);
        report(line, json);
        free(A), free(B), free(C);
    }
}

int main(int argc, char **argv) {
    int n_threads = 2, n_prompt = 512, n_decode = 10, first_type = argc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) n_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-p") && i + 1 < argc) n_prompt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) n_decode = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-c")) g_clock = CLOCK_THREAD_CPUTIME_ID;
        else if (!strcmp(argv[i], "--json")) g_json = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: bench_gemm [-t threads] [-p n_prompt] [-n decode tokens] [-c] [--json] [TYPE ...]\n");
            return 0;
        } else {
            first_type = i;
            break;
        }
    }
    if (n_threads < 1 || n_prompt < 1 || n_decode < 1) {
        fprintf(stderr, "bench_gemm: -t, -p and -n must be positive\n");
        return 2;
    }
    const char *defaults[] = {"sgemm", "F32", "F16", "Q8_0", "Q4_0", "Q4_K_M"};
    const int n_names = first_type < argc ? argc - first_type : (int)(sizeof defaults / sizeof defaults[0]);
    const mix *mixes[64];
    if (n_names > 64) {
        fprintf(stderr, "bench_gemm: too many types\n");
        return 2;
    }
    for (int k = 0; k < n_names; k++) { /* check every name before printing anything */
        const char *name = first_type < argc ? argv[first_type + k] : defaults[k];
        mixes[k] = NULL;
        for (size_t i = 0; i < sizeof k_mixes / sizeof k_mixes[0]; i++)
            if (!strcmp(k_mixes[i].name, name)) mixes[k] = &k_mixes[i];
        if (!mixes[k] && strcmp(name, "sgemm") != 0) {
            fprintf(stderr, "bench_gemm: unknown type %s\n", name);
            return 2;
        }
    }
    duet_pool *pool = duet_pool_new(n_threads);
    if (!pool) return 1;
    const char *clk = g_clock == CLOCK_MONOTONIC ? "wall" : "thread CPU";
    if (g_json)
        printf("{\"threads\": %d, \"simd_level\": %d, \"clock\": \"%s\", \"results\": [", n_threads,
               duet_simd_level(), clk);
    else
        printf("threads %d, simd level %d, %s clock, llama 134M shapes (n_embd %d, n_ff %d, n_vocab %d, %d layers)\n",
               n_threads, duet_simd_level(), clk, N_EMBD, N_FF, N_VOCAB, N_LAYER);
    for (int k = 0; k < n_names; k++) {
        if (mixes[k]) bench_mix(mixes[k], pool, n_prompt, n_decode);
        else bench_sgemm(pool);
    }
    if (g_json) printf("\n]}\n");
    duet_pool_free(pool);
    return 0;
}

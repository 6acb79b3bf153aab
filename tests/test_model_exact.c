/* The engine's own arithmetic, isolated from the matmul kernels: with
 * llama.cpp's matrix product plugged in (written here from its definition),
 * every other step of the forward pass -- embedding rows, RMSNorm, rope,
 * F16 K/V, attention, softmax, SwiGLU, residuals, output norm -- must
 * reproduce llama.cpp's logits bit for bit. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/model.h"
#include "duet/quant.h"
#include "model/model_internal.h"
#include "model/ops.h"
#include "testutil.h"

/* Rows compared: a row depends only on the tokens up to it, and neither
 * llama.cpp's tinyBLAS nor our attention mixes rows, so the first rows of a
 * shorter prefill equal those of the 48-token one (and keep this fast under
 * sanitizers). */
#define N_ROWS 16

/* llama.cpp multiplies F32/F16/BF16 weights in its batched prefill with
 * llamafile's tinyBLAS: per output, 16 FMA lanes over the dot product (lane =
 * index mod 16; BF16: vdpbf16ps, lane i takes the pairs 2i+1 then 2i of every
 * 32, flushing subnormals), reduced as _mm512_reduce_add_ps. Activations are
 * first rounded to the weight's type (round to nearest even). */

/* fmaf is exact either way; with the FMA target it is one instruction
 * instead of a libm call, which keeps this test fast. */
#if defined(__x86_64__) && defined(__GNUC__)
#define FAST_FMA __attribute__((target("fma")))
#else
#define FAST_FMA
#endif

FAST_FMA static float bf16_fma_ftz(float a, float b, float c) {
    const float r = fmaf(a, b, c);
    return fabsf(r) < 0x1p-126f ? copysignf(0.0f, r) : r;
}

FAST_FMA static void tinyblas_matmul(duet_pool *pool, float *y, duet_type wt, const void *w, const float *x, int64_t m,
                                     int64_t n_in, int64_t n_out) {
    /* activations rounded to the weight's type once, weights widened row by row */
    float *xr = malloc((size_t)(m * n_in) * sizeof(float)), *wr = malloc((size_t)n_in * sizeof(float));
    cr_assert(xr && wr);
    cr_assert(n_in % 32 == 0);
    for (int64_t i = 0; i < m * n_in; i++)
        xr[i] = wt == DUET_TYPE_BF16  ? duet_bf16_to_f32(duet_f32_to_bf16(x[i]))
                : wt == DUET_TYPE_F16 ? duet_f16_to_f32(duet_f32_to_f16(x[i]))
                                      : x[i];
    for (int64_t o = 0; o < n_out; o++) {
        if (wt == DUET_TYPE_F32) memcpy(wr, (const float *)w + o * n_in, (size_t)n_in * sizeof(float));
        else duet_dequantize_row(wt, (const char *)w + (size_t)o * duet_row_size(wt, n_in), wr, n_in);
        for (int64_t i = 0; i < m; i++) {
            const float *xi = xr + i * n_in;
            float lane[16] = {0};
            if (wt == DUET_TYPE_BF16) {
                for (int64_t c = 0; c < n_in; c += 32)
                    for (int l = 0; l < 16; l++) {
                        lane[l] = bf16_fma_ftz(wr[c + 2 * l + 1], xi[c + 2 * l + 1], lane[l]);
                        lane[l] = bf16_fma_ftz(wr[c + 2 * l], xi[c + 2 * l], lane[l]);
                    }
            } else {
                for (int64_t c = 0; c < n_in; c += 16)
                    for (int l = 0; l < 16; l++) lane[l] = fmaf(wr[c + l], xi[c + l], lane[l]);
            }
            y[i * n_out + o] = duet_hsum16(lane);
        }
    }
    free(xr);
    free(wr);
}

/* Q8_0 weights: activations quantized as llama.cpp's AVX quantize_row_q8_0
 * (d = amax/127, q = round-half-even(x * 127/amax)), then tinyBLAS_Q0: per
 * block, 8 int32 lanes of 4 products each (vpdpbusd), converted to float and
 * accumulated with FMA by the f32 product of the two f16 scales; the 8 lanes
 * reduced as (0+4, 1+5, 2+6, 3+7), then (0+2, 1+3), then the two. */
typedef struct {
    uint16_t d;
    int8_t qs[32];
} q8_0_block;

static float hsum8(const float *l) {
    float a[4];
    for (int i = 0; i < 4; i++) a[i] = l[i] + l[i + 4];
    return (a[0] + a[2]) + (a[1] + a[3]);
}

static void quantize_act_q8_0(const float *x, q8_0_block *y, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[b].d = duet_f32_to_f16(amax / 127.f);
        for (int j = 0; j < 32; j++) y[b].qs[j] = (int8_t)nearbyintf(x[j] * id);
    }
}

FAST_FMA static void tinyblas_q8_0_matmul(duet_pool *pool, float *y, duet_type wt, const void *w, const float *x, int64_t m,
                                 int64_t n_in, int64_t n_out) {
    cr_assert_eq(wt, DUET_TYPE_Q8_0);
    const int64_t nb = n_in / 32;
    q8_0_block *xq = malloc((size_t)(m * nb) * sizeof *xq);
    cr_assert(xq);
    for (int64_t i = 0; i < m; i++) quantize_act_q8_0(x + i * n_in, xq + i * nb, n_in);
    for (int64_t o = 0; o < n_out; o++) {
        const q8_0_block *wb = (const q8_0_block *)w + o * nb;
        for (int64_t i = 0; i < m; i++) {
            float lane[8] = {0};
            for (int64_t b = 0; b < nb; b++) {
                const q8_0_block *xb = xq + i * nb + b;
                const float d = duet_f16_to_f32(wb[b].d) * duet_f16_to_f32(xb->d);
                for (int l = 0; l < 8; l++) {
                    int32_t acc = 0;
                    for (int t = 0; t < 4; t++) acc += (int32_t)wb[b].qs[4 * l + t] * xb->qs[4 * l + t];
                    lane[l] = fmaf(d, (float)acc, lane[l]);
                }
            }
            y[i * n_out + o] = hsum8(lane);
        }
    }
    free(xq);
}

/* One token (m == 1): llama.cpp calls ggml_vec_dot_* per weight row
 * (AVX-512): F32/F16 keep 4 accumulators of 16 FMA lanes over each 64
 * elements, folded (0+2, 1+3, 0+1) and reduced, the F16 sum carried in
 * double; BF16 runs vdpbf16ps on two accumulators (elements 0-31 and 32-63 of
 * every 64), whose reductions are added in double. */
FAST_FMA static float vec_dot_ggml(const float *x, const float *y, int64_t n, duet_type wt) {
    if (wt == DUET_TYPE_BF16) {
        float c[2][16] = {{0}};
        for (int64_t i = 0; i + 64 <= n; i += 64)
            for (int h = 0; h < 2; h++)
                for (int l = 0; l < 16; l++) {
                    const int64_t k = i + 32 * h + 2 * l;
                    c[h][l] = bf16_fma_ftz(x[k + 1], y[k + 1], c[h][l]);
                    c[h][l] = bf16_fma_ftz(x[k], y[k], c[h][l]);
                }
        double s = (double)duet_hsum16(c[0]);
        s += (double)duet_hsum16(c[1]);
        return (float)s;
    }
    float acc[4][16] = {{0}};
    for (int64_t i = 0; i < n; i++) acc[(i >> 4) & 3][i & 15] = fmaf(x[i], y[i], acc[(i >> 4) & 3][i & 15]);
    for (int l = 0; l < 16; l++) {
        acc[0][l] += acc[2][l];
        acc[1][l] += acc[3][l];
    }
    for (int l = 0; l < 16; l++) acc[0][l] += acc[1][l];
    return duet_hsum16(acc[0]);
}

/* llama.cpp's arithmetic for both shapes: tinyBLAS for m >= 2, vec_dot for m == 1. */
FAST_FMA static void llama_matmul(duet_pool *pool, float *y, duet_type wt, const void *w, const float *x, int64_t m,
                                  int64_t n_in, int64_t n_out) {
    if (m > 1) {
        tinyblas_matmul(pool, y, wt, w, x, m, n_in, n_out);
        return;
    }
    cr_assert(n_in % 64 == 0);
    float *xr = malloc((size_t)n_in * sizeof(float)), *wr = malloc((size_t)n_in * sizeof(float));
    cr_assert(xr && wr);
    for (int64_t i = 0; i < n_in; i++)
        xr[i] = wt == DUET_TYPE_BF16  ? duet_bf16_to_f32(duet_f32_to_bf16(x[i]))
                : wt == DUET_TYPE_F16 ? duet_f16_to_f32(duet_f32_to_f16(x[i]))
                                      : x[i];
    for (int64_t o = 0; o < n_out; o++) {
        duet_dequantize_row(wt, (const char *)w + (size_t)o * duet_row_size(wt, n_in), wr, n_in);
        y[o] = vec_dot_ggml(wr, xr, n_in, wt);
    }
    free(xr);
    free(wr);
}

static void exact_case(const char *name) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (!__builtin_cpu_supports("fma")) cr_skip_test("the reference matmul is compiled for FMA");
#endif
    char rel[128], buf[512];
    snprintf(rel, sizeof rel, "ref-models/%s.gguf", name);
    duet_model_params p = duet_model_default_params();
    p.n_threads = 2;
    duet_model *m = NULL;
    duet_err err = {0};
    cr_assert_eq(duet_model_load(&m, tu_data(rel, buf, sizeof buf), &p, &err), 0, "%s", err.msg);
    m->matmul = strstr(name, "Q8_0") ? tinyblas_q8_0_matmul : tinyblas_matmul;
    const int V = duet_model_n_vocab(m);

    int32_t tok[N_ROWS];
    snprintf(rel, sizeof rel, "ref-models/%.7s.prompt.txt", name);
    FILE *f = fopen(tu_data(rel, buf, sizeof buf), "r");
    cr_assert(f);
    for (int i = 0; i < N_ROWS; i++) cr_assert_eq(fscanf(f, "%d", &tok[i]), 1);
    fclose(f);
    snprintf(rel, sizeof rel, "ref-models/%s.logits.f32", name);
    size_t len = 0;
    float *ref = tu_slurp(tu_data(rel, buf, sizeof buf), &len);
    cr_assert(ref && len == (size_t)48 * V * sizeof(float));

    duet_seq *s = NULL;
    cr_assert_eq(duet_seq_new(&s, m, 64, &err), 0);
    float *lg = malloc((size_t)N_ROWS * V * sizeof(float));
    cr_assert_eq(duet_eval(s, tok, N_ROWS, lg, N_ROWS, &err), 0, "%s", err.msg);
    double mx = 0;
    for (size_t i = 0; i < (size_t)N_ROWS * V; i++) mx = fmax(mx, fabs((double)lg[i] - (double)ref[i]));
    cr_log_info("%-14s with llama.cpp's matmul arithmetic: max |diff| over %d x %d logits = %.3g", name, N_ROWS, V, mx);
    cr_expect(mx == 0, "%s: the engine's arithmetic differs from llama.cpp's (max %.3g)", name, mx);
    free(lg);
    free(ref);
    duet_seq_free(s);
    duet_model_free(m);
}

Test(model_exact, llama_a_F32) { exact_case("llama-a-F32"); }
Test(model_exact, llama_a_F16) { exact_case("llama-a-F16"); }
Test(model_exact, llama_a_BF16) { exact_case("llama-a-BF16"); }
Test(model_exact, llama_a_Q8_0) { exact_case("llama-a-Q8_0"); }
Test(model_exact, qwen2_b_F32) { exact_case("qwen2-b-F32"); }
Test(model_exact, qwen2_b_F16) { exact_case("qwen2-b-F16"); }
Test(model_exact, qwen2_b_BF16) { exact_case("qwen2-b-BF16"); }
Test(model_exact, qwen2_b_Q8_0) { exact_case("qwen2-b-Q8_0"); }

/* Decoding the prompt one token per eval with llama.cpp's m == 1 arithmetic
 * must reproduce llama.cpp's own one-by-one run, whose distance to its
 * batched logits the README lists (fixture max |diff|, rms, 3 significant
 * digits): our one-by-one logits must sit at exactly that distance from the
 * reference. */
static void decode_case(const char *name, double readme_max, double readme_rms) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (!__builtin_cpu_supports("fma")) cr_skip_test("the reference matmul is compiled for FMA");
#endif
    char rel[128], buf[512];
    snprintf(rel, sizeof rel, "ref-models/%s.gguf", name);
    duet_model_params p = duet_model_default_params();
    p.n_threads = 1;
    duet_model *m = NULL;
    duet_err err = {0};
    cr_assert_eq(duet_model_load(&m, tu_data(rel, buf, sizeof buf), &p, &err), 0, "%s", err.msg);
    m->matmul = llama_matmul;
    const int V = duet_model_n_vocab(m), N = 48;
    int32_t tok[48];
    snprintf(rel, sizeof rel, "ref-models/%.7s.prompt.txt", name);
    FILE *f = fopen(tu_data(rel, buf, sizeof buf), "r");
    cr_assert(f);
    for (int i = 0; i < N; i++) cr_assert_eq(fscanf(f, "%d", &tok[i]), 1);
    fclose(f);
    snprintf(rel, sizeof rel, "ref-models/%s.logits.f32", name);
    size_t len = 0;
    float *ref = tu_slurp(tu_data(rel, buf, sizeof buf), &len);
    cr_assert(ref && len == (size_t)N * V * sizeof(float));
    duet_seq *s = NULL;
    cr_assert_eq(duet_seq_new(&s, m, 512, &err), 0); /* llama.cpp's n_ctx: its view is padded to 32 */
    float *lg = malloc((size_t)N * V * sizeof(float));
    for (int i = 0; i < N; i++) cr_assert_eq(duet_eval(s, tok + i, 1, lg + (size_t)i * V, 1, &err), 0, "%s", err.msg);
    double mx = 0, ss = 0;
    for (size_t i = 0; i < (size_t)N * V; i++) {
        const double d = fabs((double)lg[i] - (double)ref[i]);
        mx = fmax(mx, d);
        ss += d * d;
    }
    const double rms = sqrt(ss / ((double)N * V));
    cr_log_info("%-14s one token per eval vs llama.cpp batched: max %.3g rms %.3g (llama.cpp's own: %.3g / %.3g)",
                name, mx, rms, readme_max, readme_rms);
    cr_expect(fabs(mx - readme_max) <= 0.006 * readme_max, "%s: max %.4g, llama.cpp %.3g", name, mx, readme_max);
    cr_expect(fabs(rms - readme_rms) <= 0.006 * readme_rms, "%s: rms %.4g, llama.cpp %.3g", name, rms, readme_rms);
    free(lg);
    free(ref);
    duet_seq_free(s);
    duet_model_free(m);
}

Test(model_exact, decode_llama_a_F32) { decode_case("llama-a-F32", 0.00488, 0.000579); }
Test(model_exact, decode_llama_a_F16) { decode_case("llama-a-F16", 0.0199, 0.00388); }
Test(model_exact, decode_llama_a_BF16) { decode_case("llama-a-BF16", 0.0884, 0.0186); }
Test(model_exact, decode_qwen2_b_F32) { decode_case("qwen2-b-F32", 0.00288, 0.000404); }
Test(model_exact, decode_qwen2_b_F16) { decode_case("qwen2-b-F16", 0.0099, 0.00196); }
Test(model_exact, decode_qwen2_b_BF16) { decode_case("qwen2-b-BF16", 0.0545, 0.0104); }

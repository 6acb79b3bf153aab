/* duet_sgemm against a double-precision triple loop: all four transpose
 * combinations, odd sizes, sizes that cross the cache blocks (KC, MC, NC),
 * alpha/beta (beta = 0 must not read C), leading dimensions wider than the
 * matrices (the padding must stay untouched), every SIMD level and several
 * pool sizes. The tolerance is the rigorous float summation bound
 * (K+3)*eps*sum|alpha*a*b| + 2*eps*|beta*c|: a lost or doubled term of K would
 * exceed it. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/sgemm.h"
#include "core/vecdot.h"
#include "duet/kernels.h"

static uint64_t rng_state = 88172645463325252ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

#define PAD 5
#define SENTINEL 12345.0f

typedef struct {
    int ta, tb;
    int64_t M, N, K;
    float alpha, beta;
} shape;

/* Runs one product at a SIMD level (-1: public duet_sgemm) and checks it. */
static void check_one(duet_pool *pool, int level, shape s) {
    const int64_t arows = s.ta ? s.K : s.M, acols = s.ta ? s.M : s.K;
    const int64_t brows = s.tb ? s.N : s.K, bcols = s.tb ? s.K : s.N;
    const int64_t lda = acols + PAD, ldb = bcols + PAD + 2, ldc = s.N + PAD + 1;
    float *A = malloc(sizeof(float) * (size_t)(arows * lda + 1));
    float *B = malloc(sizeof(float) * (size_t)(brows * ldb + 1));
    float *C = malloc(sizeof(float) * (size_t)(s.M * ldc + 1));
    float *C0 = malloc(sizeof(float) * (size_t)(s.M * ldc + 1));
    cr_assert(A && B && C && C0);
    for (int64_t i = 0; i < arows * lda; i++) A[i] = (i % lda) < acols ? frand() : NAN;
    for (int64_t i = 0; i < brows * ldb; i++) B[i] = (i % ldb) < bcols ? frand() : NAN;
    for (int64_t i = 0; i < s.M * ldc; i++) {
        /* beta == 0: C holds NaN, which must not leak into the result */
        const int in = (i % ldc) < s.N;
        C[i] = in ? (s.beta == 0.0f ? NAN : frand()) : SENTINEL;
    }
    memcpy(C0, C, sizeof(float) * (size_t)(s.M * ldc));

    if (level < 0)
        duet_sgemm(pool, s.ta, s.tb, s.M, s.N, s.K, s.alpha, A, lda, B, ldb, s.beta, C, ldc);
    else {
        const duet_sgemm_bsrc bs = {duet_sgemm_pack_b_f32, B, ldb, s.tb};
        duet_sgemm_ex(pool, level, s.ta, s.M, s.N, s.K, s.alpha, A, lda, &bs, s.beta, C, ldc);
    }

    for (int64_t i = 0; i < s.M; i++) {
        for (int64_t j = 0; j < s.N; j++) {
            double acc = 0.0, mag = 0.0;
            for (int64_t p = 0; p < s.K; p++) {
                const double a = s.ta ? A[p * lda + i] : A[i * lda + p];
                const double b = s.tb ? B[j * ldb + p] : B[p * ldb + j];
                acc += a * b;
                mag += fabs(a * b);
            }
            const double c0 = s.beta == 0.0f ? 0.0 : C0[i * ldc + j];
            const double ref = s.alpha * acc + s.beta * c0;
            const double tol = (double)(s.K + 3) * FLT_EPSILON * fabs(s.alpha) * mag +
                               2.0 * FLT_EPSILON * fabs(s.beta * c0) + 1e-30;
            const double got = C[i * ldc + j];
            if (!(fabs(got - ref) <= tol))
                cr_assert_fail("level %d ta %d tb %d M %ld N %ld K %ld alpha %g beta %g: C[%ld][%ld] = "
                               "%.9g, reference %.9g (tol %.3g)",
                               level, s.ta, s.tb, (long)s.M, (long)s.N, (long)s.K, s.alpha, s.beta,
                               (long)i, (long)j, got, ref, tol);
        }
        for (int64_t j = s.N; j < ldc; j++)
            cr_assert_eq(C[i * ldc + j], SENTINEL, "padding of C row %ld overwritten", (long)i);
    }
    free(A);
    free(B);
    free(C);
    free(C0);
}

static const int64_t odd_sizes[] = {1, 7, 33, 129};

static void check_level_all_shapes(duet_pool *pool, int level) {
    const float ab[][2] = {{1.0f, 0.0f}, {0.5f, 2.0f}, {-1.5f, 1.0f}};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int im = 0; im < 4; im++)
                for (int in = 0; in < 4; in++)
                    for (int ik = 0; ik < 4; ik++) {
                        const int k = (im + in + ik + ta + tb) % 3; /* spread alpha/beta */
                        shape s = {ta, tb, odd_sizes[im], odd_sizes[in], odd_sizes[ik], ab[k][0],
                                   ab[k][1]};
                        check_one(pool, level, s);
                    }
}

/* DUET_SIMD=scalar also switches the packers to their plain C versions. */
static void use_scalar(void) { setenv("DUET_SIMD", "scalar", 1); }

Test(sgemm, odd_sizes_all_transposes_scalar, .init = use_scalar) {
    cr_assert_eq(duet_simd_level(), DUET_SIMD_SCALAR);
    check_level_all_shapes(NULL, DUET_SIMD_SCALAR);
    duet_pool *pool = duet_pool_new(2);
    check_one(pool, -1, (shape){0, 1, 37, 517, 390, 0.75f, -0.5f});
    duet_pool_free(pool);
}

Test(sgemm, odd_sizes_all_transposes_avx2) {
    if (duet_cpu_simd_level() < DUET_SIMD_AVX2) cr_skip_test("no AVX2");
    check_level_all_shapes(NULL, DUET_SIMD_AVX2);
}

Test(sgemm, odd_sizes_all_transposes_avx512) {
    if (duet_cpu_simd_level() < DUET_SIMD_AVX512) cr_skip_test("no AVX-512");
    check_level_all_shapes(NULL, DUET_SIMD_AVX512);
}

/* Sizes that cross KC (384), MC (960) and NC (480) blocks, threaded. */
Test(sgemm, blocked_sizes_threaded) {
    for (int nt = 1; nt <= 3; nt++) {
        duet_pool *pool = duet_pool_new(nt);
        cr_assert_not_null(pool);
        shape big[] = {
            {0, 1, 970, 70, 400, 1.0f, 0.0f},
            {1, 0, 37, 517, 390, 0.75f, -0.5f},
            {0, 0, 130, 1000, 20, 1.0f, 1.0f},
            {1, 1, 250, 96, 777, -2.0f, 0.0f},
        };
        for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
            if ((int)i % 3 + 1 != nt && i != 0) continue; /* keep the runtime short */
            check_one(pool, -1, big[i]);
            if (duet_cpu_simd_level() >= DUET_SIMD_AVX2) check_one(pool, DUET_SIMD_AVX2, big[i]);
        }
        duet_pool_free(pool);
    }
}

/* alpha = 0 or K = 0: C = beta*C (and 0 when beta is 0, even over NaN). */
Test(sgemm, degenerate_alpha_and_k) {
    duet_pool *pool = duet_pool_new(2);
    check_one(pool, -1, (shape){0, 0, 33, 40, 0, 1.0f, 0.5f});
    check_one(pool, -1, (shape){0, 1, 33, 40, 0, 1.0f, 0.0f});
    check_one(pool, -1, (shape){1, 0, 20, 7, 9, 0.0f, 3.0f});
    check_one(pool, -1, (shape){1, 1, 20, 7, 9, 0.0f, 0.0f});
    /* M or N = 0: nothing to do, nothing touched */
    float c = SENTINEL, a = 1.0f, b = 1.0f;
    duet_sgemm(pool, 0, 0, 0, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1);
    duet_sgemm(pool, 0, 0, 1, 0, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1);
    cr_assert_eq(c, SENTINEL);
    duet_pool_free(pool);
}

/* Exact small case: integers keep every sum exact, so C must match bit for bit. */
Test(sgemm, exact_integer_product) {
    enum { M = 13, N = 35, K = 17 };
    float A[M * K], B[K * N], C[M * N];
    for (int i = 0; i < M * K; i++) A[i] = (float)((i * 7) % 11 - 5);
    for (int i = 0; i < K * N; i++) B[i] = (float)((i * 5) % 9 - 4);
    duet_pool *pool = duet_pool_new(2);
    duet_sgemm(pool, 0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            int ref = 0;
            for (int p = 0; p < K; p++) ref += (int)A[i * K + p] * (int)B[p * N + j];
            cr_assert_eq(C[i * N + j], (float)ref, "C[%d][%d]", i, j);
        }
    duet_pool_free(pool);
}

/* The transposed-source packers (weight rows -> B panels) at the CPU's SIMD
 * level, for f32, f16 and bf16 rows, against the packing definition
 * (sgemm.h) with an independent widening: every float bit for bit, zero
 * columns past nc, for slices whose kc and nc are not multiples of 8. */
static float ref_f16(uint16_t h) {
    const int e = (h >> 10) & 31, m = h & 1023;
    const double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return (float)((h & 0x8000) ? -v : v);
}
static float ref_bf16(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

Test(sgemm, pack_b_transposed_rows_exact) {
    enum { ROWS = 45, LDB = 70 };
    static uint16_t h[ROWS * LDB];
    static float f[ROWS * LDB];
    for (int i = 0; i < ROWS * LDB; i++) {
        rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
        h[i] = (uint16_t)(rng_state >> 20);
        if ((h[i] & 0x7c00) == 0x7c00) h[i] &= 0xbfff; /* no inf/NaN: NaN payloads may differ */
        f[i] = frand();
    }
    const int nr = DUET_SGEMM_NR_AVX2 > DUET_SGEMM_NR_AVX512 ? DUET_SGEMM_NR_AVX2 : DUET_SGEMM_NR_AVX512;
    const int64_t cases[][4] = {{0, 64, 0, 45}, {3, 13, 5, 17}, {6, 1, 40, 5}, {0, 70, 8, 32}}; /* p0 kc j0 nc */
    static float got[4 * 70 * 64], want[4 * 70 * 64];
    for (int src = 0; src < 3; src++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            for (int w = 16; w <= nr; w += 16) {
                const int64_t p0 = cases[c][0], kc = cases[c][1], j0 = cases[c][2], nc = cases[c][3];
                const duet_sgemm_bsrc bs = {src == 0 ? duet_sgemm_pack_b_f32 : src == 1 ? duet_sgemm_pack_b_f16
                                                                                      : duet_sgemm_pack_b_bf16,
                                            src == 0 ? (const void *)f : (const void *)h, LDB, 1};
                const int64_t panels = (nc + w - 1) / w, total = panels * kc * w;
                for (int64_t i = 0; i < total; i++) got[i] = SENTINEL;
                bs.pack(&bs, got, p0, kc, j0, nc, w);
                for (int64_t q = 0; q < panels; q++)
                    for (int64_t p = 0; p < kc; p++)
                        for (int j = 0; j < w; j++) {
                            const int64_t col = q * w + j, at = (j0 + col) * LDB + p0 + p;
                            want[q * kc * w + p * w + j] = col >= nc ? 0.0f
                                                           : src == 0 ? f[at]
                                                           : src == 1 ? ref_f16(h[at])
                                                                      : ref_bf16(h[at]);
                        }
                for (int64_t i = 0; i < total; i++)
                    if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
                        cr_assert_fail("src %d case %zu nr %d: element %ld = %.9g, want %.9g", src, c, w, (long)i,
                                       got[i], want[i]);
            }
}

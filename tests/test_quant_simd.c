/* Every SIMD level against the plain C reference: dot products of random
 * rows of many lengths within tol + |ref|*eps (float summation order is the
 * only allowed difference), multi-row tiles against single-row dots,
 * activation quantizers and f32->f16/bf16 rows bit for bit, F16C hardware
 * against the scalar half conversion, and the DUET_SIMD cap. */
#include <criterion/criterion.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/quant_blocks.h"
#include "core/vecdot.h"
#include "duet/quant.h"
#include "test_quant_util.h"

static const duet_type k_weight_types[] = {
    DUET_TYPE_F32,  DUET_TYPE_F16,  DUET_TYPE_BF16, DUET_TYPE_Q4_0, DUET_TYPE_Q4_1, DUET_TYPE_Q5_0,
    DUET_TYPE_Q5_1, DUET_TYPE_Q8_0, DUET_TYPE_Q4_K, DUET_TYPE_Q5_K, DUET_TYPE_Q6_K,
};
#define N_WEIGHT_TYPES (sizeof k_weight_types / sizeof k_weight_types[0])

static const duet_type k_act_types[] = {DUET_TYPE_F32,  DUET_TYPE_F16,  DUET_TYPE_BF16,
                                        DUET_TYPE_Q8_0, DUET_TYPE_Q8_1, DUET_TYPE_Q8_K};

/* Lengths to test for a block size: many small counts, odd block counts,
 * and a few large rows. */
static int lengths_for(int blck, int64_t *out) {
    int k = 0;
    if (blck == 1) {
        for (int n = 1; n <= 70; n++) out[k++] = n;
        out[k++] = 255, out[k++] = 1000, out[k++] = 4096, out[k++] = 4099;
    } else if (blck == 32) {
        for (int b = 1; b <= 17; b++) out[k++] = 32 * b;
        out[k++] = 32 * 63, out[k++] = 4096, out[k++] = 4096 + 32, out[k++] = 11008;
    } else {
        for (int b = 1; b <= 6; b++) out[k++] = 256 * b;
        out[k++] = 4096, out[k++] = 4096 + 256, out[k++] = 11008;
    }
    return k;
}

static double dequant_mag(duet_type t, const void *wq, const void *xq, int64_t n, float *wd, float *xd) {
    duet_dequantize_row(t, wq, wd, n);
    duet_dequantize_row(duet_type_info(t)->dot_type, xq, xd, n);
    double mag = 0;
    for (int64_t i = 0; i < n; i++) mag += fabs((double)wd[i] * (double)xd[i]);
    return mag;
}

/* float accumulation of up to n terms in a different order */
static double dot_tol(double mag, int64_t n) { return (4e-7 * sqrt((double)n) + 2e-6) * mag + 1e-30; }

static void check_level_dots(int level) {
    if (duet_cpu_simd_level() < level) {
        cr_skip_test("CPU lacks SIMD level %d", level);
        return;
    }
    const int64_t nmax = 11008 + 64;
    float *w = malloc(nmax * 4), *x = malloc(nmax * 4), *wd = malloc(nmax * 4), *xd = malloc(nmax * 4);
    void *wq = malloc(nmax * 4), *xq = malloc(nmax * 4 + 1024);
    qt_rng r = {1000 + (uint64_t)level};
    int64_t lens[128];
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        const duet_type t = k_weight_types[ti];
        const duet_type dt = duet_type_info(t)->dot_type;
        const duet_vec_dot_fn f = duet_vec_dot_get_level(t, level);
        cr_assert_not_null(f);
        const int nl = lengths_for(duet_type_info(t)->blck, lens);
        for (int li = 0; li < nl; li++) {
            const int64_t n = lens[li];
            qt_fill(&r, w, n, li % 4);
            qt_fill(&r, x, n, (li + 1) % 4);
            duet_quantize_row(t, w, wq, n);
            duet_quantize_act_row_ref(dt, x, xq, n);
            const float ref = duet_vec_dot_ref(t, n, wq, xq);
            const float got = f(n, wq, xq);
            const double tol = dot_tol(dequant_mag(t, wq, xq, n, wd, xd), n);
            cr_assert(fabs((double)got - ref) <= tol + fabs(ref) * 1e-6, "level %d %s n=%ld: %.9g vs ref %.9g",
                      level, duet_type_name(t), (long)n, (double)got, (double)ref);
        }
    }
    free(w), free(x), free(wd), free(xd), free(wq), free(xq);
}

Test(quant_simd, avx2_dots_match_reference) { check_level_dots(DUET_SIMD_AVX2); }
Test(quant_simd, avx512_dots_match_reference) { check_level_dots(DUET_SIMD_AVX512); }

/* Tiles of every shape against the single-row kernel of the same level. */
static void check_level_tiles(int level) {
    if (duet_cpu_simd_level() < level) {
        cr_skip_test("CPU lacks SIMD level %d", level);
        return;
    }
    qt_rng r = {77};
    const int64_t lens_q[] = {256, 768, 4096};
    const int64_t lens_f[] = {13, 64, 1000};
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        const duet_type t = k_weight_types[ti];
        const duet_type dt = duet_type_info(t)->dot_type;
        const duet_vec_dot_nxm_fn tile = duet_vec_dot_nxm_get_level(t, level);
        const duet_vec_dot_fn dot = duet_vec_dot_get_level(t, level);
        cr_assert_not_null(tile);
        for (int li = 0; li < 3; li++) {
            const int64_t n = duet_type_info(t)->blck == 1 ? lens_f[li] : lens_q[li];
            const size_t bw = duet_row_size(t, n) + 4, bx = duet_row_size(dt, n) + 12; /* padded strides */
            char *wq = calloc(4, bw), *xq = calloc(4, bx);
            float *row = malloc(n * 4), *wd = malloc(n * 4), *xd = malloc(n * 4);
            for (int i = 0; i < 4; i++) {
                qt_fill(&r, row, n, i % 4);
                duet_quantize_row(t, row, wq + i * bw, n);
                qt_fill(&r, row, n, (i + 2) % 4);
                duet_quantize_act_row_ref(dt, row, xq + i * bx, n);
            }
            for (int nr = 1; nr <= DUET_NXM_MAX_R; nr++)
                for (int nc = 1; nc <= DUET_NXM_MAX_C; nc++) {
                    float s[4 * 5];
                    for (int i = 0; i < 20; i++) s[i] = NAN;
                    tile(n, s, 5, wq, bw, xq, bx, nr, nc);
                    for (int i = 0; i < 4; i++)
                        for (int j = 0; j < 5; j++) {
                            if (i < nr && j < nc) {
                                const float want = dot(n, wq + i * bw, xq + j * bx);
                                const double tol = dot_tol(dequant_mag(t, wq + i * bw, xq + j * bx, n, wd, xd), n);
                                cr_assert(fabs((double)s[i * 5 + j] - want) <= tol + fabs(want) * 1e-6,
                                          "level %d %s n=%ld tile %dx%d [%d][%d]: %.9g vs %.9g", level,
                                          duet_type_name(t), (long)n, nr, nc, i, j, (double)s[i * 5 + j], (double)want);
                            } else {
                                cr_assert(isnan(s[i * 5 + j]), "tile %dx%d wrote outside [%d][%d]", nr, nc, i, j);
                            }
                        }
                }
            free(wq), free(xq), free(row), free(wd), free(xd);
        }
    }
}

Test(quant_simd, scalar_tiles_match_dots) { check_level_tiles(DUET_SIMD_SCALAR); }
Test(quant_simd, avx2_tiles_match_dots) { check_level_tiles(DUET_SIMD_AVX2); }
Test(quant_simd, avx512_tiles_match_dots) { check_level_tiles(DUET_SIMD_AVX512); }

/* Activation rows, including exact rounding ties (x*127/amax = k + 0.5),
 * zero blocks, and a block whose largest magnitude appears with both signs. */
static void fill_act(qt_rng *r, float *x, int64_t n, int kind) {
    qt_fill(r, x, n, kind % 4);
    if (kind >= 4 && n >= 256) {
        for (int i = 0; i < 32; i++) x[i] = (float)(i - 16) + 0.5f; /* ties at scale 1 */
        x[0] = 127.0f;
        for (int i = 32; i < 64; i++) x[i] = 0.0f;
        x[100] = -9.0f, x[101] = 9.0f;
        for (int i = 256 - 32; i < 256; i++) x[i] = (float)(i % 5) * 0.25f;
    }
}

Test(quant_simd, activation_quantizers_bit_identical) {
    qt_rng r = {4242};
    const int64_t n = 4096 + 512;
    float *x = malloc(n * 4);
    uint8_t *a = malloc(n * 4 + 256), *b = malloc(n * 4 + 256);
    for (int level = 1; level <= duet_cpu_simd_level(); level++) {
        for (size_t ai = 0; ai < sizeof k_act_types / sizeof k_act_types[0]; ai++) {
            const duet_type dt = k_act_types[ai];
            const duet_quantize_fn f = duet_quantize_act_get_level(dt, level);
            cr_assert_not_null(f);
            for (int kind = 0; kind < 8; kind++) {
                const int64_t len = dt == DUET_TYPE_F16 || dt == DUET_TYPE_BF16 || dt == DUET_TYPE_F32
                                        ? n - kind * 3 : n; /* F16/BF16 tails */
                fill_act(&r, x, len, kind);
                const size_t rs = duet_row_size(dt, len);
                memset(a, 0xAB, rs);
                memset(b, 0xCD, rs);
                duet_quantize_act_row_ref(dt, x, a, len);
                f(x, b, len);
                for (size_t i = 0; i < rs; i++)
                    cr_assert_eq(a[i], b[i], "level %d %s kind %d byte %zu", level, duet_type_name(dt), kind, i);
            }
        }
    }
    free(x), free(a), free(b);
}

/* the activation Q8_0 rounding is half-to-even with scale 127/amax, unlike
 * the file-format quantizer (roundf, 1/(amax/127)): pin the difference */
Test(quant_simd, activation_q8_0_rounds_half_even) {
    float x[32];
    for (int i = 0; i < 32; i++) x[i] = (float)i - 15.5f; /* amax 15.5 */
    x[31] = 127.0f;                                       /* scale 1: ties stay ties */
    block_q8_0 act, file;
    duet_quantize_act_row_ref(DUET_TYPE_Q8_0, x, &act, 32);
    duet_quantize_row(DUET_TYPE_Q8_0, x, &file, 32);
    for (int i = 0; i < 31; i++) {
        const double v = x[i];
        const int want_act = (int)lrint(v);             /* FE_TONEAREST: half to even */
        const int want_file = (int)(v < 0 ? -floor(-v + 0.5) : floor(v + 0.5)); /* half away */
        cr_assert_eq(act.qs[i], want_act, "act %d: %g -> %d", i, v, act.qs[i]);
        cr_assert_eq(file.qs[i], want_file, "file %d: %g -> %d", i, v, file.qs[i]);
    }
}

__attribute__((target("f16c"))) static float hw_h2f(uint16_t h) { return _cvtsh_ss(h); }
__attribute__((target("f16c"))) static uint16_t hw_f2h(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

Test(quant_simd, scalar_half_conversion_equals_f16c) {
    if (duet_cpu_simd_level() < DUET_SIMD_AVX2) {
        cr_skip_test("no F16C");
        return;
    }
    for (uint32_t h = 0; h < 65536; h++) {
        const float a = duet_f16_to_f32((uint16_t)h), b = hw_h2f((uint16_t)h);
        cr_assert_eq(memcmp(&a, &b, 4), 0, "h=%04x", h);
    }
    qt_rng r = {5};
    for (int i = 0; i < 1000000; i++) {
        uint32_t u = (uint32_t)qt_next(&r);
        if (i & 1) u = (u & 0x807fffffu) | ((uint32_t)(100 + (u >> 24) % 50) << 23); /* half range */
        float f;
        memcpy(&f, &u, 4);
        cr_assert_eq(duet_f32_to_f16(f), hw_f2h(f), "f=%08x", u);
    }
}

Test(quant_simd, duet_simd_env_caps_level) {
    setenv("DUET_SIMD", "scalar", 1);
    cr_assert_eq(duet_simd_level(), 0);
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        cr_assert_eq(duet_vec_dot_get(k_weight_types[ti]), duet_vec_dot_get_level(k_weight_types[ti], 0));
        cr_assert_eq(duet_vec_dot_nxm_get(k_weight_types[ti]), duet_vec_dot_nxm_get_level(k_weight_types[ti], 0));
    }
}

Test(quant_simd, duet_simd_env_avx2) {
    setenv("DUET_SIMD", "avx2", 1);
    const int want = duet_cpu_simd_level() < 1 ? duet_cpu_simd_level() : 1;
    cr_assert_eq(duet_simd_level(), want);
    cr_assert_eq(duet_vec_dot_get(DUET_TYPE_Q4_K), duet_vec_dot_get_level(DUET_TYPE_Q4_K, want));
    cr_assert_eq(duet_quantize_act_get(DUET_TYPE_Q8_0), duet_quantize_act_get_level(DUET_TYPE_Q8_0, want));
}

Test(quant_simd, no_env_uses_cpu_level) {
    unsetenv("DUET_SIMD");
    cr_assert_eq(duet_simd_level(), duet_cpu_simd_level());
    /* duet_vec_dot dispatches to the kernel of that level */
    block_q8_0 w[2], x[2];
    float v[64];
    for (int i = 0; i < 64; i++) v[i] = (float)(i % 9) - 4.0f;
    duet_quantize_row(DUET_TYPE_Q8_0, v, w, 64);
    duet_quantize_act_row(DUET_TYPE_Q8_0, v, x, 64);
    cr_assert_float_eq(duet_vec_dot(DUET_TYPE_Q8_0, 64, w, x), duet_vec_dot_ref(DUET_TYPE_Q8_0, 64, w, x), 1e-4);
}

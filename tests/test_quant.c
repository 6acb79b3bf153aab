/* Reference quant code against independent computations: type traits vs
 * ggml's published block sizes, fp16/bf16 conversion exhaustively and
 * against brute-force nearest-even rounding, dequantization of hand-built
 * blocks, quantize/dequantize error bounds, and vec_dot_ref against the
 * double-precision dot of the dequantized rows. */
#include <criterion/criterion.h>
#include <float.h>
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

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ------------------------------------------------------------------ traits */

Test(quant_traits, block_sizes_match_ggml) {
    /* {type, block elements, bytes, dot type, weight} from ggml's type table */
    const struct { int t, blck, size, dot, weight; const char *name; } want[] = {
        {0, 1, 4, 0, 1, "F32"},      {1, 1, 2, 1, 1, "F16"},      {30, 1, 2, 30, 1, "BF16"},
        {2, 32, 18, 8, 1, "Q4_0"},   {3, 32, 20, 9, 1, "Q4_1"},   {6, 32, 22, 8, 1, "Q5_0"},
        {7, 32, 24, 9, 1, "Q5_1"},   {8, 32, 34, 8, 1, "Q8_0"},   {9, 32, 36, 9, 0, "Q8_1"},
        {12, 256, 144, 15, 1, "Q4_K"}, {13, 256, 176, 15, 1, "Q5_K"}, {14, 256, 210, 15, 1, "Q6_K"},
        {15, 256, 292, 15, 0, "Q8_K"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const duet_type_traits *tr = duet_type_info((uint32_t)want[i].t);
        cr_assert_not_null(tr, "type %d", want[i].t);
        cr_assert_eq(tr->blck, want[i].blck, "%s blck", want[i].name);
        cr_assert_eq(tr->type_size, (size_t)want[i].size, "%s size", want[i].name);
        cr_assert_eq((int)tr->dot_type, want[i].dot, "%s dot type", want[i].name);
        cr_assert_eq(tr->is_weight_type, want[i].weight, "%s weight", want[i].name);
        cr_assert_str_eq(tr->name, want[i].name);
        cr_assert_str_eq(duet_type_name((uint32_t)want[i].t), want[i].name);
        cr_assert_eq(duet_type_from_name(want[i].name), want[i].t);
        cr_assert_eq(duet_row_size(want[i].t, 4096), (size_t)want[i].size * (4096 / want[i].blck));
    }
}

Test(quant_traits, unknown_types_and_names) {
    const uint32_t bad[] = {4, 5, 10, 11, 16, 29, 31, 39, 40, 1000, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_null(duet_type_info(bad[i]), "type %u", bad[i]);
        cr_assert_str_eq(duet_type_name(bad[i]), "?");
    }
    cr_assert_eq(duet_type_from_name("q4_k"), DUET_TYPE_Q4_K);
    cr_assert_eq(duet_type_from_name("bf16"), DUET_TYPE_BF16);
    cr_assert_eq(duet_type_from_name("Q4_K_M"), -1);
    cr_assert_eq(duet_type_from_name("Q4"), -1);
    cr_assert_eq(duet_type_from_name(""), -1);
    cr_assert_eq(duet_type_from_name(NULL), -1);
    cr_assert_eq(duet_row_size((duet_type)4, 256), 0);
    cr_assert_null(duet_vec_dot_get(DUET_TYPE_Q8_K));
    cr_assert_null(duet_vec_dot_get((duet_type)77));
}

/* -------------------------------------------------------------- fp16/bf16 */

/* IEEE half value by formula, in double. */
static double half_value(uint16_t h) {
    const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 0) v = ldexp((double)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexp(1.0 + m / 1024.0, e - 15);
    return s ? -v : v;
}

Test(quant_fp16, exhaustive_half_to_float_and_back) {
    for (uint32_t h = 0; h < 65536; h++) {
        const double want = half_value((uint16_t)h);
        const float got = duet_f16_to_f32((uint16_t)h);
        if (isnan(want)) {
            cr_assert(isnan(got), "h=%04x", h);
            /* payload kept (and quiet), sign kept */
            cr_assert_eq(fbits(got) & 0x007fe000u, ((h & 0x3ffu) << 13) | 0x00400000u, "h=%04x", h);
            cr_assert_eq(fbits(got) >> 31, h >> 15);
            cr_assert_eq(duet_f32_to_f16(got), (uint16_t)(h | 0x200), "NaN round trip h=%04x", h);
            continue;
        }
        cr_assert_eq((double)got, want, "h=%04x: %.10g vs %.10g", h, (double)got, want);
        cr_assert_eq(signbit(got) != 0, (h >> 15) != 0, "sign h=%04x", h);
        cr_assert_eq(duet_f32_to_f16(got), (uint16_t)h, "round trip h=%04x", h);
    }
}

/* Nearest half by search over all finite halves (ties: even mantissa);
 * beyond 65504 the next "half" is 65536 = inf. */
static uint16_t brute_f32_to_f16(float f) {
    if (isnan(f)) return 0x7e00;
    const uint16_t sign = signbit(f) ? 0x8000 : 0;
    const double a = fabs((double)f);
    if (isinf(f)) return sign | 0x7c00;
    uint32_t lo = 0, hi = 0x7c00; /* half_value(0x7c00) treated as 65536 */
    while (hi - lo > 1) {
        const uint32_t mid = (lo + hi) / 2;
        if (half_value((uint16_t)mid) <= a) lo = mid;
        else hi = mid;
    }
    const double vlo = half_value((uint16_t)lo), vhi = hi == 0x7c00 ? 65536.0 : half_value((uint16_t)hi);
    uint32_t pick;
    if (a - vlo < vhi - a) pick = lo;
    else if (a - vlo > vhi - a) pick = hi;
    else pick = (lo & 1) ? hi : lo;
    if (a == vlo) pick = lo;
    return (uint16_t)(sign | pick);
}

Test(quant_fp16, float_to_half_matches_brute_force) {
    qt_rng r = {0x1234567};
    for (int i = 0; i < 400000; i++) {
        float f;
        if (i % 4 == 0) {
            f = bitsf((uint32_t)qt_next(&r)); /* any bit pattern */
        } else {
            /* concentrated on the half range incl. subnormals and overflow */
            const int e = (int)(qt_next(&r) % 50) - 30;
            f = (float)ldexp(qt_unif(&r) + 1.0, e) * ((qt_next(&r) & 1) ? -1.f : 1.f);
        }
        if (i % 7 == 0) { /* exact midpoints between neighbouring halves */
            const uint16_t h = (uint16_t)(qt_next(&r) % 0x7bff);
            f = (float)((half_value(h) + half_value((uint16_t)(h + 1))) / 2);
        }
        const uint16_t got = duet_f32_to_f16(f), want = brute_f32_to_f16(f);
        if (isnan(f)) {
            cr_assert_eq(got & 0x7e00, 0x7e00, "NaN %08x -> %04x", fbits(f), got);
            continue;
        }
        cr_assert_eq(got, want, "%08x (%.9g): got %04x want %04x", fbits(f), (double)f, got, want);
    }
    cr_assert_eq(duet_f32_to_f16(65519.99f), 0x7bff);
    cr_assert_eq(duet_f32_to_f16(65520.0f), 0x7c00);
    cr_assert_eq(duet_f32_to_f16(-0.0f), 0x8000);
    cr_assert_eq(duet_f32_to_f16(0x1p-25f), 0x0000);         /* tie -> even (0) */
    cr_assert_eq(duet_f32_to_f16(0x1.000002p-25f), 0x0001);
    cr_assert_eq(duet_f32_to_f16(0x1.8p-24f), 0x0002);       /* 1.5 ulp tie -> 2 */
}

Test(quant_bf16, exhaustive_and_rounding) {
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = duet_bf16_to_f32((uint16_t)h);
        cr_assert_eq(fbits(f), h << 16);
        if (!isnan(f)) cr_assert_eq(duet_f32_to_bf16(f), (uint16_t)h);
    }
    qt_rng r = {99};
    for (int i = 0; i < 400000; i++) {
        const uint32_t u = (uint32_t)qt_next(&r);
        const float f = bitsf(i % 5 == 0 ? (u & 0xffff0000u) | 0x8000u : u); /* some exact ties */
        const uint16_t got = duet_f32_to_bf16(f);
        if (isnan(f)) {
            cr_assert_eq(got, (uint16_t)((u >> 16) | 0x40), "NaN %08x", u);
            continue;
        }
        /* candidates: truncation and the next bf16 up in magnitude */
        const uint16_t t = (uint16_t)(fbits(f) >> 16);
        const double a = fabs((double)f);
        const double lo = fabs((double)bitsf((uint32_t)t << 16));
        const double hi = (t & 0x7fff) == 0x7f7f ? ldexp(1.0, 128) : fabs((double)bitsf((uint32_t)(t + 1) << 16));
        uint16_t want;
        if (a - lo < hi - a) want = t;
        else if (a - lo > hi - a) want = (uint16_t)(t + 1);
        else want = (t & 1) ? (uint16_t)(t + 1) : t;
        cr_assert_eq(got, want, "%08x: got %04x want %04x", fbits(f), got, want);
    }
}

/* -------------------------------------------- dequantize hand-built blocks */

static uint16_t h16(float f) { return duet_f32_to_f16(f); } /* exact for the values used */

Test(quant_dequant, q4_0_q4_1_q5_0_q5_1_q8_0_q8_1) {
    float y[32];
    uint8_t nib[32];
    for (int i = 0; i < 32; i++) nib[i] = (uint8_t)((i * 7 + 3) % 16);

    block_q4_0 b40 = {.d = h16(0.5f)};
    for (int j = 0; j < 16; j++) b40.qs[j] = (uint8_t)(nib[j] | (nib[j + 16] << 4));
    duet_dequantize_row(DUET_TYPE_Q4_0, &b40, y, 32);
    for (int i = 0; i < 32; i++) cr_assert_eq(y[i], 0.5f * (nib[i] - 8), "q4_0 %d", i);

    block_q4_1 b41 = {.d = h16(0.25f), .m = h16(-1.5f)};
    memcpy(b41.qs, b40.qs, 16);
    duet_dequantize_row(DUET_TYPE_Q4_1, &b41, y, 32);
    for (int i = 0; i < 32; i++) cr_assert_eq(y[i], 0.25f * nib[i] - 1.5f, "q4_1 %d", i);

    const uint32_t qh = 0xA5C3F00Fu; /* bit i = 5th bit of element i */
    block_q5_0 b50 = {.d = h16(2.0f)};
    memcpy(b50.qs, b40.qs, 16);
    memcpy(b50.qh, &qh, 4);
    duet_dequantize_row(DUET_TYPE_Q5_0, &b50, y, 32);
    for (int i = 0; i < 32; i++) {
        const int q = nib[i] + (int)(((qh >> i) & 1) * 16);
        cr_assert_eq(y[i], 2.0f * (q - 16), "q5_0 %d", i);
    }

    block_q5_1 b51 = {.d = h16(0.125f), .m = h16(3.0f)};
    memcpy(b51.qs, b40.qs, 16);
    memcpy(b51.qh, &qh, 4);
    duet_dequantize_row(DUET_TYPE_Q5_1, &b51, y, 32);
    for (int i = 0; i < 32; i++) {
        const int q = nib[i] + (int)(((qh >> i) & 1) * 16);
        cr_assert_eq(y[i], 0.125f * q + 3.0f, "q5_1 %d", i);
    }

    block_q8_0 b80 = {.d = h16(-0.75f)};
    for (int i = 0; i < 32; i++) b80.qs[i] = (int8_t)(i * 8 - 128);
    duet_dequantize_row(DUET_TYPE_Q8_0, &b80, y, 32);
    for (int i = 0; i < 32; i++) cr_assert_eq(y[i], -0.75f * (i * 8 - 128), "q8_0 %d", i);

    block_q8_1 b81 = {.d = h16(1.5f), .s = h16(100.0f)};
    memcpy(b81.qs, b80.qs, 32);
    duet_dequantize_row(DUET_TYPE_Q8_1, &b81, y, 32);
    for (int i = 0; i < 32; i++) cr_assert_eq(y[i], 1.5f * (i * 8 - 128), "q8_1 %d", i);
}

/* 6-bit scales/mins written the way the format documents them:
 * j < 4: scales[j] low 6 bits = sc, scales[j+4] low 6 bits = min;
 * j >= 4: scales[j+4] = sc low nibble | min low nibble << 4, top 2 bits of sc
 * in bits 6-7 of scales[j-4], top 2 bits of min in bits 6-7 of scales[j]. */
static void put_scale_min(uint8_t *s, int j, int sc, int mn) {
    if (j < 4) {
        s[j] = (uint8_t)((s[j] & 0xC0) | sc);
        s[j + 4] = (uint8_t)((s[j + 4] & 0xC0) | mn);
    } else {
        s[j + 4] = (uint8_t)((sc & 15) | ((mn & 15) << 4));
        s[j - 4] = (uint8_t)((s[j - 4] & 0x3F) | ((sc >> 4) << 6));
        s[j] = (uint8_t)((s[j] & 0x3F) | ((mn >> 4) << 6));
    }
}

Test(quant_dequant, q4_K_q5_K) {
    int sc[8], mn[8], q[256];
    for (int j = 0; j < 8; j++) sc[j] = (j * 23 + 5) % 64, mn[j] = (j * 41 + 60) % 64;
    for (int i = 0; i < 256; i++) q[i] = (i * 13 + i / 7) % 32;
    block_q4_K b4 = {.d = h16(0.5f), .dmin = h16(0.25f)};
    block_q5_K b5 = {.d = h16(0.125f), .dmin = h16(2.0f)};
    memset(b4.scales, 0, 12);
    memset(b5.scales, 0, 12);
    memset(b5.qh, 0, 32);
    for (int j = 0; j < 8; j++) put_scale_min(b4.scales, j, sc[j], mn[j]), put_scale_min(b5.scales, j, sc[j], mn[j]);
    memcpy(b5.scales, b4.scales, 12);
    memset(b4.qs, 0, sizeof b4.qs);
    memset(b5.qs, 0, sizeof b5.qs);
    /* element e: chunk c = e/64, l = e%32, high nibble if (e%64) >= 32;
     * Q5_K's 5th bit: bit (2c + high) of qh[l] */
    for (int e = 0; e < 256; e++) {
        const int c = e / 64, l = e % 32, high = (e % 64) >= 32;
        b4.qs[32 * c + l] |= (uint8_t)((q[e] & 15) << (4 * high));
        b5.qs[32 * c + l] |= (uint8_t)((q[e] & 15) << (4 * high));
        if (q[e] & 16) b5.qh[l] |= (uint8_t)(1u << (2 * c + high));
    }
    float y4[256], y5[256];
    duet_dequantize_row(DUET_TYPE_Q4_K, &b4, y4, 256);
    duet_dequantize_row(DUET_TYPE_Q5_K, &b5, y5, 256);
    for (int e = 0; e < 256; e++) {
        const int j = e / 32;
        const float w4 = 0.5f * sc[j] * (float)(q[e] & 15) - 0.25f * mn[j];
        const float w5 = 0.125f * sc[j] * (float)q[e] - 2.0f * mn[j];
        cr_assert_float_eq(y4[e], w4, 1e-6, "q4_K %d: %g vs %g", e, y4[e], w4);
        cr_assert_float_eq(y5[e], w5, 1e-6, "q5_K %d: %g vs %g", e, y5[e], w5);
    }
}

Test(quant_dequant, q6_K_q8_K) {
    int q[256], sc[16];
    for (int i = 0; i < 256; i++) q[i] = (i * 29 + 7) % 64;
    for (int j = 0; j < 16; j++) sc[j] = j * 17 - 128;
    block_q6_K b = {.d = h16(0.0625f)};
    memset(b.ql, 0, sizeof b.ql);
    memset(b.qh, 0, sizeof b.qh);
    for (int j = 0; j < 16; j++) b.scales[j] = (int8_t)sc[j];
    /* element e: half h = e/128, k = (e%128)/32 (quarter), l = e%32:
     * low 4 bits in ql[64h + l + 32*(k&1)] (low nibble if k<2 else high),
     * high 2 bits in qh[32h + l] bits 2k..2k+1 */
    for (int e = 0; e < 256; e++) {
        const int h = e / 128, k = (e % 128) / 32, l = e % 32;
        b.ql[64 * h + l + 32 * (k & 1)] |= (uint8_t)((q[e] & 15) << (k >= 2 ? 4 : 0));
        b.qh[32 * h + l] |= (uint8_t)((q[e] >> 4) << (2 * k));
    }
    float y[256];
    duet_dequantize_row(DUET_TYPE_Q6_K, &b, y, 256);
    for (int e = 0; e < 256; e++) {
        const float want = 0.0625f * sc[e / 16] * (float)(q[e] - 32);
        cr_assert_float_eq(y[e], want, 1e-6, "q6_K %d: %g vs %g", e, y[e], want);
    }

    block_q8_K k = {.d = -0.03125f};
    for (int i = 0; i < 256; i++) k.qs[i] = (int8_t)(i - 128);
    duet_dequantize_row(DUET_TYPE_Q8_K, &k, y, 256);
    for (int i = 0; i < 256; i++) cr_assert_eq(y[i], -0.03125f * (i - 128));
}

/* ------------------------------------------------- round-trip error bounds */

Test(quant_roundtrip, error_within_type_bound) {
    const duet_type types[] = {DUET_TYPE_Q4_0, DUET_TYPE_Q4_1, DUET_TYPE_Q5_0, DUET_TYPE_Q5_1,
                               DUET_TYPE_Q8_0, DUET_TYPE_Q8_1, DUET_TYPE_Q8_K, DUET_TYPE_Q4_K,
                               DUET_TYPE_Q5_K, DUET_TYPE_Q6_K};
    const int64_t n = 256 * 24;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    void *q = malloc(duet_row_size(DUET_TYPE_F32, n));
    qt_rng r = {7};
    for (int kind = 0; kind < 4; kind++) {
        qt_fill(&r, x, n, kind);
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            const duet_type t = types[ti];
            duet_quantize_row(t, x, q, n);
            duet_dequantize_row(t, q, y, n);
            double ratio = 0;
            const int64_t bad = qt_check_error(t, x, y, n, &ratio);
            cr_assert_eq(bad, -1, "%s kind %d: element %ld: %g -> %g", duet_type_name(t), kind,
                         (long)bad, bad >= 0 ? x[bad] : 0.0, bad >= 0 ? y[bad] : 0.0);
            if (qt_is_kquant(t) && kind < 3) cr_assert_leq(ratio, 1.25, "%s kind %d rms ratio %g", duet_type_name(t), kind, ratio);
        }
        /* the activation quantizers obey the same bounds */
        const duet_type acts[] = {DUET_TYPE_Q8_0, DUET_TYPE_Q8_1, DUET_TYPE_Q8_K};
        for (int a = 0; a < 3; a++) {
            duet_quantize_act_row_ref(acts[a], x, q, n);
            duet_dequantize_row(acts[a], q, y, n);
            cr_assert_eq(qt_check_error(acts[a], x, y, n, NULL), -1, "act %s kind %d", duet_type_name(acts[a]), kind);
        }
    }
    free(x);
    free(y);
    free(q);
}

Test(quant_roundtrip, q8_1_sum_and_q8_K_bsums) {
    const int64_t n = 512;
    float x[512];
    block_q8_1 b1[16];
    block_q8_K bk[2];
    qt_rng r = {3};
    qt_fill(&r, x, n, 0);
    duet_quantize_row(DUET_TYPE_Q8_1, x, b1, n);
    for (int i = 0; i < 16; i++) {
        int sum = 0;
        for (int j = 0; j < 32; j++) sum += b1[i].qs[j];
        const float want = (float)sum * (duet_f16_to_f32(b1[i].d));
        cr_assert_float_eq(duet_f16_to_f32(b1[i].s), want, fabsf(want) * 2e-3f + 1e-6f, "block %d", i);
    }
    duet_quantize_row(DUET_TYPE_Q8_K, x, bk, n);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += bk[i].qs[16 * j + l];
            cr_assert_eq(bk[i].bsums[j], sum);
        }
}

/* -------------------------------------------- vec_dot_ref vs double sums */

Test(quant_vecdot, ref_equals_double_sum_of_dequantized) {
    const int64_t lens[] = {256, 512, 1024, 4096, 768};
    const int64_t nmax = 4096;
    float *w = malloc(nmax * 4), *x = malloc(nmax * 4), *wd = malloc(nmax * 4), *xd = malloc(nmax * 4);
    void *wq = malloc(nmax * 4 + 64), *xq = malloc(nmax * 4 + 64);
    qt_rng r = {11};
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        const duet_type t = k_weight_types[ti];
        const duet_type dt = duet_type_info(t)->dot_type;
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            for (int kind = 0; kind < 4; kind++) {
                const int64_t n = lens[li];
                qt_fill(&r, w, n, kind);
                qt_fill(&r, x, n, (kind + 1) % 4);
                duet_quantize_row(t, w, wq, n);
                duet_quantize_act_row_ref(dt, x, xq, n);
                duet_dequantize_row(t, wq, wd, n);
                duet_dequantize_row(dt, xq, xd, n);
                double exact = 0, mag = 0;
                for (int64_t i = 0; i < n; i++) {
                    exact += (double)wd[i] * (double)xd[i];
                    mag += fabs((double)wd[i] * (double)xd[i]);
                }
                /* Q4_1/Q5_1 use the fp16-rounded s = d*sum(q) of each
                 * activation block for the min term: allow its rounding. */
                double extra = 0;
                if (dt == DUET_TYPE_Q8_1) {
                    const block_q8_1 *xb = xq;
                    for (int64_t b = 0; b < n / 32; b++) {
                        const float m = t == DUET_TYPE_Q4_1 ? duet_f16_to_f32(((const block_q4_1 *)wq)[b].m)
                                                            : duet_f16_to_f32(((const block_q5_1 *)wq)[b].m);
                        extra += fabs(m) * fabs(duet_f16_to_f32(xb[b].s)) * 0x1p-10;
                    }
                }
                const float got = duet_vec_dot_ref(t, n, wq, xq);
                const double tol = 1e-5 * mag + extra + 1e-30;
                cr_assert(fabs(got - exact) <= tol, "%s n=%ld kind %d: %.9g vs %.9g (tol %g)",
                          duet_type_name(t), (long)n, kind, (double)got, exact, tol);
            }
        }
    }
    free(w), free(x), free(wd), free(xd), free(wq), free(xq);
}

/* Helpers shared by the quant tests: a seeded RNG, test data, and the
 * per-type quantization error bounds.
 *
 * Bounds (per element, from the input block alone):
 *  (e16(v) = error of storing v as fp16: max(|v| 2^-11, 2^-25))
 *  - Q4_0/Q5_0: d = amax/8 (/16); rounding error <= d/2 except elements near
 *    +amax that clamp at the top level (<= 1 d); the fp16 d adds up to
 *    8 (16) * e16(d)                           -> d + 8 e16(d)
 *  - Q4_1/Q5_1: d = range/15 (/31)             -> d/2 + 15 e16(d) + e16(min)
 *  - Q8_0/Q8_1: d = amax/127                   -> d/2 + 127 e16(d)
 *  - Q8_K: d = amax/127 kept in f32            -> 0.501 d
 *  - K-quants fit a scale (and min) per sub-block by least squares, so
 *    their worst element is bounded by the sub-block's level spacing
 *    range/nmax (Q6_K: 2*amax/63): 1.2 x that spacing, plus the rounding
 *    of the sub-block scale/min to 6 bits of the super-block's largest
 *    (Q6_K: 8 bits) times the number of levels; their rms error
 *    by 1.25 x the rms error of an ideal uniform quantizer with that
 *    spacing (spacing / sqrt(12) per element). */
#ifndef TEST_QUANT_UTIL_H
#define TEST_QUANT_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "duet/quant.h"

typedef struct {
    uint64_t s;
} qt_rng;

static inline uint64_t qt_next(qt_rng *r) {
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* uniform in [0, 1) */
static inline double qt_unif(qt_rng *r) { return (double)(qt_next(r) >> 11) * 0x1p-53; }

static inline double qt_gauss(qt_rng *r) {
    const double u = qt_unif(r) + 1e-300, v = qt_unif(r);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* Mixed test data: gaussian, uniform, heavy-tailed, blocks of zeros and
 * constant blocks, different scales per 32-element block. */
static inline void qt_fill(qt_rng *r, float *x, int64_t n, int kind) {
    for (int64_t i = 0; i < n; i++) {
        const double scale = kind == 3 ? pow(10.0, (double)((i / 32) % 7) - 3.0) : 1.0;
        double v;
        switch (kind) {
        case 0: v = qt_gauss(r); break;
        case 1: v = 2.0 * qt_unif(r) - 1.0; break;
        case 2: v = pow(2.0 * qt_unif(r) - 1.0, 5.0) * 30.0; break;
        default: v = qt_gauss(r); break;
        }
        x[i] = (float)(v * scale);
    }
    if (kind == 3 && n >= 128) {
        for (int64_t i = 32; i < 64; i++) x[i] = 0.0f;    /* a zero block */
        for (int64_t i = 64; i < 96; i++) x[i] = 0.375f;  /* a constant block */
    }
}

static inline int qt_nmax(duet_type t) {
    switch (t) {
    case DUET_TYPE_Q4_K: return 15;
    case DUET_TYPE_Q5_K: return 31;
    default: return 63; /* Q6_K: 2*32 - 1 levels around zero */
    }
}

static inline int qt_is_kquant(duet_type t) {
    return t == DUET_TYPE_Q4_K || t == DUET_TYPE_Q5_K || t == DUET_TYPE_Q6_K;
}

/* Checks y (dequantized) against x (source) for type t. Returns the index of
 * the first element over its bound, or -1; *rms_ratio gets (K-quants) the
 * rms error over the ideal uniform quantizer's rms error. */
static inline int64_t qt_check_error(duet_type t, const float *x, const float *y, int64_t n,
                                     double *rms_ratio) {
    const int blk = t == DUET_TYPE_Q6_K ? 16 : t == DUET_TYPE_Q8_K ? 256 : 32;
    double se = 0, se_ideal = 0;
    double sb_spacing = 0, sb_min = 0; /* K-quants: largest of the super-block */
    for (int64_t b = 0; b < n / blk; b++) {
        const float *xb = x + b * blk;
        if (qt_is_kquant(t) && (b * blk) % 256 == 0) {
            sb_spacing = sb_min = 0;
            for (int j = 0; j < 256 / blk; j++) {
                double jmn = 0, jmx = 0, ja = 0;
                for (int i = 0; i < blk; i++) {
                    const double v = xb[j * blk + i];
                    jmn = fmin(jmn, v), jmx = fmax(jmx, v), ja = fmax(ja, fabs(v));
                }
                sb_spacing = fmax(sb_spacing, t == DUET_TYPE_Q6_K ? 2 * ja / 63 : (jmx - jmn) / qt_nmax(t));
                sb_min = fmax(sb_min, -jmn);
            }
        }
        double mn = xb[0], mx = xb[0], amax = 0;
        for (int i = 0; i < blk; i++) {
            mn = fmin(mn, xb[i]);
            mx = fmax(mx, xb[i]);
            amax = fmax(amax, fabs(xb[i]));
        }
        double bound = 0, spacing = 0;
        /* fp16 storage error of a scale or min v: half an ulp, and at least
         * half the smallest subnormal step (2^-25) */
#define H16ERR(v) fmax(fabs(v) * 0x1p-11, 0x1p-25)
        switch (t) {
        case DUET_TYPE_Q4_0: bound = amax / 8 + 8 * H16ERR(amax / 8); break;
        case DUET_TYPE_Q5_0: bound = amax / 16 + 16 * H16ERR(amax / 16); break;
        case DUET_TYPE_Q4_1: bound = 0.5 * (mx - mn) / 15 + 15 * H16ERR((mx - mn) / 15) + H16ERR(mn); break;
        case DUET_TYPE_Q5_1: bound = 0.5 * (mx - mn) / 31 + 31 * H16ERR((mx - mn) / 31) + H16ERR(mn); break;
        case DUET_TYPE_Q8_0:
        case DUET_TYPE_Q8_1: bound = 0.5 * amax / 127 + 127 * H16ERR(amax / 127); break;
        case DUET_TYPE_Q8_K: bound = 0.501 * amax / 127; break;
        case DUET_TYPE_Q6_K: spacing = 2 * amax / 63; break;
        default: spacing = (fmax(mx, 0) - fmin(mn, 0)) / qt_nmax(t); break;
        }
#undef H16ERR
        if (qt_is_kquant(t)) {
            /* sub-block scales (and mins) are themselves quantized against
             * the super-block's largest: 6 bits (Q6_K: 8 bits), so a level
             * spacing carries up to half a scale step times nmax levels */
            bound = 1.2 * spacing + (t == DUET_TYPE_Q6_K ? sb_spacing / 8
                                                          : 0.5 * qt_nmax(t) * sb_spacing / 63 + 0.5 * sb_min / 63);
            se_ideal += blk * spacing * spacing / 12.0;
        }
        bound = bound * (1 + 0x1p-20) + 1e-30 + 4 * amax * 0x1p-24; /* float rounding */
        for (int i = 0; i < blk; i++) {
            const double e = fabs((double)xb[i] - (double)y[b * blk + i]);
            se += e * e;
            if (!(e <= bound)) return b * blk + i;
        }
    }
    if (rms_ratio) *rms_ratio = se_ideal > 0 ? sqrt(se / se_ideal) : 0;
    return -1;
}

#endif

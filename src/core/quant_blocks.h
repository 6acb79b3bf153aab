/* internal: not part of the public API; may change. */
/* duet — ggml's block layouts (byte-exact with GGUF files) and the scalar
 * helpers every kernel needs: fp16/bf16 conversion, ggml's nearest_int and
 * the 6-bit scale/min unpacking of Q4_K/Q5_K.
 *
 * Internal header shared by src/core/quant*.c, vecdot*.c and the matmul
 * kernels. A block holds `QK*` consecutive elements of a row; a row of n
 * elements is n/QK blocks laid out back to back. */
#ifndef DUET_QUANT_BLOCKS_H
#define DUET_QUANT_BLOCKS_H

#include <stdint.h>
#include <string.h>

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef uint16_t duet_fp16; /* IEEE half, raw bits */
typedef uint16_t duet_bf16; /* bfloat16, raw bits */

/* x[i] = d * (q[i] - 8); q[j] low nibble = element j, high nibble = j+16. */
typedef struct {
    duet_fp16 d;
    uint8_t qs[QK4_0 / 2];
} block_q4_0;
_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 size");

/* x[i] = d * q[i] + m */
typedef struct {
    duet_fp16 d;
    duet_fp16 m;
    uint8_t qs[QK4_1 / 2];
} block_q4_1;
_Static_assert(sizeof(block_q4_1) == 20, "block_q4_1 size");

/* x[i] = d * (q[i] - 16); bit 4 of element j is bit j of qh (little endian). */
typedef struct {
    duet_fp16 d;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
} block_q5_0;
_Static_assert(sizeof(block_q5_0) == 22, "block_q5_0 size");

/* x[i] = d * q[i] + m */
typedef struct {
    duet_fp16 d;
    duet_fp16 m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
} block_q5_1;
_Static_assert(sizeof(block_q5_1) == 24, "block_q5_1 size");

/* x[i] = d * q[i] */
typedef struct {
    duet_fp16 d;
    int8_t qs[QK8_0];
} block_q8_0;
_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 size");

/* x[i] = d * q[i]; s = d * sum(q) (used by the Q4_1/Q5_1 min term). */
typedef struct {
    duet_fp16 d;
    duet_fp16 s;
    int8_t qs[QK8_1];
} block_q8_1;
_Static_assert(sizeof(block_q8_1) == 36, "block_q8_1 size");

/* 8 sub-blocks of 32: x = d*sc[j]*q - dmin*m[j], sc/m 6-bit packed in scales
 * (see duet_get_scale_min_k4). qs: 4 chunks of 32 bytes; chunk c holds
 * elements 64c..64c+31 in low nibbles and 64c+32..64c+63 in high nibbles. */
typedef struct {
    duet_fp16 d;
    duet_fp16 dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
} block_q4_K;
_Static_assert(sizeof(block_q4_K) == 144, "block_q4_K size");

/* As Q4_K plus a 5th bit: element 64c+l (l<32) takes bit 2c of qh[l],
 * element 64c+32+l takes bit 2c+1 of qh[l]. */
typedef struct {
    duet_fp16 d;
    duet_fp16 dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;
_Static_assert(sizeof(block_q5_K) == 176, "block_q5_K size");

/* 16 sub-blocks of 16: x = d * scales[j] * (q - 32), q 6 bits: low 4 in ql,
 * high 2 in qh (layout in dequantize_row_q6_K of quant_dequant.c). */
typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    duet_fp16 d;
} block_q6_K;
_Static_assert(sizeof(block_q6_K) == 210, "block_q6_K size");

/* Activation type of the K-quants: x = d * q; bsums[j] = sum of q[16j..16j+15]. */
typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} block_q8_K;
_Static_assert(sizeof(block_q8_K) == 292, "block_q8_K size");

/* ---- scalar conversions (inline so that kernels can use them freely) ---- */

static inline uint32_t duet_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float duet_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Exact half -> float. NaNs keep their payload and get the quiet bit, as
 * the F16C instruction vcvtph2ps does. */
static inline float duet_fp16_to_fp32_inl(duet_fp16 h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu;
    const uint32_t m = h & 0x3ffu;
    if (e == 0) {
        /* zero or subnormal: m * 2^-24, exact in float */
        const float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    if (e == 31) {
        if (m == 0) return duet_bits_f32(sign | 0x7f800000u);
        return duet_bits_f32(sign | 0x7fc00000u | (m << 13));
    }
    return duet_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

/* float -> half, round to nearest even; overflow gives inf; NaNs become
 * quiet NaNs with the payload truncated (what vcvtps2ph does). */
static inline duet_fp16 duet_fp32_to_fp16_inl(float f) {
    const uint32_t x = duet_f32_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (duet_fp16)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x38800000u) { /* >= 2^-14: normal half or overflow */
        if (ax >= 0x47800000u) return (duet_fp16)(sign | 0x7c00u); /* >= 65536 (or inf) */
        uint32_t r = ax - 0x38000000u; /* re-bias the exponent from 127 to 15 */
        r = (r + 0x0fffu + ((r >> 13) & 1u)) >> 13;
        if (r >= 0x7c00u) r = 0x7c00u;
        return (duet_fp16)(sign | r);
    }
    if (ax < 0x33000000u) return (duet_fp16)sign; /* < 2^-25 (or the tie): zero */
    /* half subnormal: value = m * 2^(e-150), unit 2^-24, drop (126-e) bits */
    const uint32_t e = ax >> 23;
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e;
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (duet_fp16)(sign | q);
}

static inline float duet_bf16_to_fp32_inl(duet_bf16 h) {
    return duet_bits_f32((uint32_t)h << 16);
}

/* ggml's rule: round to nearest even; NaN forced quiet (bit 6 of the bf16). */
static inline duet_bf16 duet_fp32_to_bf16_inl(float f) {
    const uint32_t u = duet_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (duet_bf16)((u >> 16) | 64u);
    return (duet_bf16)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

/* ggml's nearest_int: round half to even for |fval| <= 2^22 via the
 * 1.5*2^23 trick (the FPU rounding of the addition does the work). */
static inline int duet_nearest_int(float fval) {
    const float val = fval + 12582912.f;
    int32_t i;
    memcpy(&i, &val, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* Q4_K/Q5_K: scale and min of sub-block j (0..7), 6 bits each, from the
 * 12 packed bytes: j<4 in the low 6 bits of q[j] / q[j+4]; j>=4 low 4 bits in
 * q[j+4] (scale low nibble, min high nibble), top 2 bits in q[j-4] / q[j]. */
static inline void duet_get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

#endif

/* Reference dot products (plain C), llama.cpp's generic CPU arithmetic:
 * integer dot per block, scaled by fp16(d_w) * fp16(d_x) in float; float
 * rows accumulate float products in double (ggml_float). */
#include "core/quant_internal.h"

static float dot_f32_ref(int64_t n, const void *vw, const void *vx) {
    const float *w = vw, *x = vx;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)(w[i] * x[i]);
    return (float)s;
}

static float dot_f16_ref(int64_t n, const void *vw, const void *vx) {
    const duet_fp16 *w = vw, *x = vx;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += (double)(duet_fp16_to_fp32_inl(w[i]) * duet_fp16_to_fp32_inl(x[i]));
    return (float)s;
}

static float dot_bf16_ref(int64_t n, const void *vw, const void *vx) {
    const duet_bf16 *w = vw, *x = vx;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += (double)(duet_bf16_to_fp32_inl(w[i]) * duet_bf16_to_fp32_inl(x[i]));
    return (float)s;
}

static float dot_q4_0_ref(int64_t n, const void *vw, const void *vx) {
    const block_q4_0 *w = vw;
    const block_q8_0 *x = vx;
    float sumf = 0;
    for (int64_t ib = 0; ib < n / QK4_0; ib++) {
        int sumi = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            sumi += ((w[ib].qs[j] & 0x0F) - 8) * x[ib].qs[j];
            sumi += ((w[ib].qs[j] >> 4) - 8) * x[ib].qs[j + QK4_0 / 2];
        }
        sumf += (float)sumi * duet_fp16_to_fp32_inl(w[ib].d) * duet_fp16_to_fp32_inl(x[ib].d);
    }
    return sumf;
}

static float dot_q4_1_ref(int64_t n, const void *vw, const void *vx) {
    const block_q4_1 *w = vw;
    const block_q8_1 *x = vx;
    float sumf = 0;
    for (int64_t ib = 0; ib < n / QK4_1; ib++) {
        int sumi = 0;
        for (int j = 0; j < QK4_1 / 2; j++) {
            sumi += (w[ib].qs[j] & 0x0F) * x[ib].qs[j];
            sumi += (w[ib].qs[j] >> 4) * x[ib].qs[j + QK4_1 / 2];
        }
        sumf += (duet_fp16_to_fp32_inl(w[ib].d) * duet_fp16_to_fp32_inl(x[ib].d)) * (float)sumi +
                duet_fp16_to_fp32_inl(w[ib].m) * duet_fp16_to_fp32_inl(x[ib].s);
    }
    return sumf;
}

static float dot_q5_0_ref(int64_t n, const void *vw, const void *vx) {
    const block_q5_0 *w = vw;
    const block_q8_0 *x = vx;
    float sumf = 0;
    for (int64_t ib = 0; ib < n / QK5_0; ib++) {
        uint32_t qh;
        memcpy(&qh, w[ib].qh, sizeof qh);
        int sumi = 0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            const int h0 = (int)((qh >> j) & 1u) << 4;
            const int h1 = (int)((qh >> (j + 16)) & 1u) << 4;
            sumi += (((w[ib].qs[j] & 0x0F) | h0) - 16) * x[ib].qs[j];
            sumi += (((w[ib].qs[j] >> 4) | h1) - 16) * x[ib].qs[j + QK5_0 / 2];
        }
        sumf += (duet_fp16_to_fp32_inl(w[ib].d) * duet_fp16_to_fp32_inl(x[ib].d)) * (float)sumi;
    }
    return sumf;
}

static float dot_q5_1_ref(int64_t n, const void *vw, const void *vx) {
    const block_q5_1 *w = vw;
    const block_q8_1 *x = vx;
    float sumf = 0;
    for (int64_t ib = 0; ib < n / QK5_1; ib++) {
        uint32_t qh;
        memcpy(&qh, w[ib].qh, sizeof qh);
        int sumi = 0;
        for (int j = 0; j < QK5_1 / 2; j++) {
            const int h0 = (int)((qh >> j) & 1u) << 4;
            const int h1 = (int)((qh >> (j + 16)) & 1u) << 4;
            sumi += ((w[ib].qs[j] & 0x0F) | h0) * x[ib].qs[j];
            sumi += ((w[ib].qs[j] >> 4) | h1) * x[ib].qs[j + QK5_1 / 2];
        }
        sumf += (duet_fp16_to_fp32_inl(w[ib].d) * duet_fp16_to_fp32_inl(x[ib].d)) * (float)sumi +
                duet_fp16_to_fp32_inl(w[ib].m) * duet_fp16_to_fp32_inl(x[ib].s);
    }
    return sumf;
}

static float dot_q8_0_ref(int64_t n, const void *vw, const void *vx) {
    const block_q8_0 *w = vw;
    const block_q8_0 *x = vx;
    float sumf = 0;
    for (int64_t ib = 0; ib < n / QK8_0; ib++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0; j++) sumi += w[ib].qs[j] * x[ib].qs[j];
        sumf += (float)sumi * (duet_fp16_to_fp32_inl(w[ib].d) * duet_fp16_to_fp32_inl(x[ib].d));
    }
    return sumf;
}

/* Q4_K: per super-block, sum_j sc_j * <q_j, q8_j> - dmin/d-weighted
 * sum_j m_j * (bsum of sub-block j), both exact integers. */
static float dot_q4_K_ref(int64_t n, const void *vw, const void *vx) {
    const block_q4_K *w = vw;
    const block_q8_K *x = vx;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *q4 = w[i].qs;
        const int8_t *q8 = x[i].qs;
        int sumi = 0, summ = 0;
        for (int c = 0; c < 4; c++, q4 += 32, q8 += 64) {
            uint8_t sc1, m1, sc2, m2;
            duet_get_scale_min_k4(2 * c, w[i].scales, &sc1, &m1);
            duet_get_scale_min_k4(2 * c + 1, w[i].scales, &sc2, &m2);
            int s1 = 0, s2 = 0;
            for (int l = 0; l < 32; l++) {
                s1 += (q4[l] & 0xF) * q8[l];
                s2 += (q4[l] >> 4) * q8[l + 32];
            }
            sumi += sc1 * s1 + sc2 * s2;
            summ += m1 * (x[i].bsums[4 * c + 0] + x[i].bsums[4 * c + 1]) +
                    m2 * (x[i].bsums[4 * c + 2] + x[i].bsums[4 * c + 3]);
        }
        const float d = duet_fp16_to_fp32_inl(w[i].d) * x[i].d;
        const float dmin = duet_fp16_to_fp32_inl(w[i].dmin) * x[i].d;
        sumf += d * (float)sumi - dmin * (float)summ;
    }
    return sumf;
}

static float dot_q5_K_ref(int64_t n, const void *vw, const void *vx) {
    const block_q5_K *w = vw;
    const block_q8_K *x = vx;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *ql = w[i].qs, *qh = w[i].qh;
        const int8_t *q8 = x[i].qs;
        int sumi = 0, summ = 0;
        uint8_t u1 = 1, u2 = 2;
        for (int c = 0; c < 4; c++, ql += 32, q8 += 64, u1 <<= 2, u2 <<= 2) {
            uint8_t sc1, m1, sc2, m2;
            duet_get_scale_min_k4(2 * c, w[i].scales, &sc1, &m1);
            duet_get_scale_min_k4(2 * c + 1, w[i].scales, &sc2, &m2);
            int s1 = 0, s2 = 0;
            for (int l = 0; l < 32; l++) {
                s1 += ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) * q8[l];
                s2 += ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) * q8[l + 32];
            }
            sumi += sc1 * s1 + sc2 * s2;
            summ += m1 * (x[i].bsums[4 * c + 0] + x[i].bsums[4 * c + 1]) +
                    m2 * (x[i].bsums[4 * c + 2] + x[i].bsums[4 * c + 3]);
        }
        const float d = duet_fp16_to_fp32_inl(w[i].d) * x[i].d;
        const float dmin = duet_fp16_to_fp32_inl(w[i].dmin) * x[i].d;
        sumf += d * (float)sumi - dmin * (float)summ;
    }
    return sumf;
}

static float dot_q6_K_ref(int64_t n, const void *vw, const void *vx) {
    const block_q6_K *w = vw;
    const block_q8_K *x = vx;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *ql = w[i].ql, *qh = w[i].qh;
        const int8_t *sc = w[i].scales, *q8 = x[i].qs;
        int sumi = 0;
        for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8, q8 += 128) {
            int s[8] = {0};
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                s[is + 0] += q1 * q8[l + 0];
                s[is + 2] += q2 * q8[l + 32];
                s[is + 4] += q3 * q8[l + 64];
                s[is + 6] += q4 * q8[l + 96];
            }
            for (int k = 0; k < 8; k++) sumi += sc[k] * s[k];
        }
        sumf += duet_fp16_to_fp32_inl(w[i].d) * x[i].d * (float)sumi;
    }
    return sumf;
}

DUET_DEFINE_NXM_FROM_DOT(nxm_f32_ref, dot_f32_ref)
DUET_DEFINE_NXM_FROM_DOT(nxm_f16_ref, dot_f16_ref)
DUET_DEFINE_NXM_FROM_DOT(nxm_bf16_ref, dot_bf16_ref)
DUET_DEFINE_NXM_FROM_DOT(nxm_q4_0_ref, dot_q4_0_ref)
DUET_DEFINE_NXM_FROM_DOT(nxm_q4_1_ref, dot_q4_1_ref)
DUET_DEFINE_NXM_FROM_DOT(nxm_q5_0_ref, dot_q5_0_ref)
DUET_DEFINE_NXM_FROM_DOT(nxm_q5_1_ref, dot_q5_1_ref)
DUET_DEFINE_NXM_FROM_DOT(nxm_q8_0_ref, dot_q8_0_ref)
DUET_DEFINE_NXM_FROM_DOT(nxm_q4_K_ref, dot_q4_K_ref)
DUET_DEFINE_NXM_FROM_DOT(nxm_q5_K_ref, dot_q5_K_ref)
DUET_DEFINE_NXM_FROM_DOT(nxm_q6_K_ref, dot_q6_K_ref)

static void act_f32(const float *s, void *d, int64_t n) { duet_quantize_act_row_ref(DUET_TYPE_F32, s, d, n); }
static void act_f16(const float *s, void *d, int64_t n) { duet_f32_to_f16_row_ref(s, d, n); }
static void act_bf16(const float *s, void *d, int64_t n) { duet_f32_to_bf16_row_ref(s, d, n); }
static void act_q8_0(const float *s, void *d, int64_t n) { duet_quantize_act_q8_0_ref(s, d, n); }
static void act_q8_1(const float *s, void *d, int64_t n) { duet_quantize_act_q8_1_ref(s, d, n); }
static void act_q8_K(const float *s, void *d, int64_t n) { duet_quantize_row_q8_K_ref(s, d, n); }

static const duet_kernel_table k_ref = {
    .dot = {
        [DUET_TYPE_F32] = dot_f32_ref, [DUET_TYPE_F16] = dot_f16_ref,
        [DUET_TYPE_BF16] = dot_bf16_ref, [DUET_TYPE_Q4_0] = dot_q4_0_ref,
        [DUET_TYPE_Q4_1] = dot_q4_1_ref, [DUET_TYPE_Q5_0] = dot_q5_0_ref,
        [DUET_TYPE_Q5_1] = dot_q5_1_ref, [DUET_TYPE_Q8_0] = dot_q8_0_ref,
        [DUET_TYPE_Q4_K] = dot_q4_K_ref, [DUET_TYPE_Q5_K] = dot_q5_K_ref,
        [DUET_TYPE_Q6_K] = dot_q6_K_ref,
    },
    .nxm = {
        [DUET_TYPE_F32] = nxm_f32_ref, [DUET_TYPE_F16] = nxm_f16_ref,
        [DUET_TYPE_BF16] = nxm_bf16_ref, [DUET_TYPE_Q4_0] = nxm_q4_0_ref,
        [DUET_TYPE_Q4_1] = nxm_q4_1_ref, [DUET_TYPE_Q5_0] = nxm_q5_0_ref,
        [DUET_TYPE_Q5_1] = nxm_q5_1_ref, [DUET_TYPE_Q8_0] = nxm_q8_0_ref,
        [DUET_TYPE_Q4_K] = nxm_q4_K_ref, [DUET_TYPE_Q5_K] = nxm_q5_K_ref,
        [DUET_TYPE_Q6_K] = nxm_q6_K_ref,
    },
    .act = {
        [DUET_TYPE_F32] = act_f32, [DUET_TYPE_F16] = act_f16, [DUET_TYPE_BF16] = act_bf16,
        [DUET_TYPE_Q8_0] = act_q8_0, [DUET_TYPE_Q8_1] = act_q8_1, [DUET_TYPE_Q8_K] = act_q8_K,
    },
};

void duet_kernels_ref_init(duet_kernel_table *t) { *t = k_ref; }

float duet_vec_dot_ref(duet_type t, int64_t n, const void *w, const void *x) {
    if ((unsigned)t >= DUET_TYPE_COUNT || !k_ref.dot[t]) return 0.0f;
    return k_ref.dot[t](n, w, x);
}

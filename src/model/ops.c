/* Reference C of the element-wise operations of the forward pass: RMSNorm,
 * rope and SwiGLU, in llama.cpp's exact arithmetic (see ops.h). */
#include "model/ops.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "duet/quant.h"

void duet_rms_norm(float *y, const float *x, const float *w, int n, float eps) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int i = 0; i < n; i++) y[i] = (x[i] * scale) * w[i];
}

void duet_rope_cache(float *cs, int pos, int n_rot, float freq_base, float freq_scale,
                     const float *freq_factors) {
    const float theta_scale = powf(freq_base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int i0 = 0; i0 < n_rot; i0 += 2) {
        const float ff = freq_factors ? freq_factors[i0 / 2] : 1.0f;
        const float t = freq_scale * (theta / ff);
        cs[i0] = cosf(t);
        cs[i0 + 1] = sinf(t);
        theta *= theta_scale;
    }
}

/* llama.cpp's rotation `x0*cos - x1*sin`, `x0*sin + x1*cos` is compiled
 * with FMA contraction (GCC and clang fuse the first product of each line). */
static inline void rotate(float *a, float *b, float c, float s) {
    const float x0 = *a, x1 = *b;
    *a = fmaf(x0, c, -(x1 * s));
    *b = fmaf(x0, s, x1 * c);
}

void duet_rope_apply(float *x, const float *cs, int n_rot, int neox) {
#if defined(__x86_64__) || defined(__i386__)
    if (duet_model_simd()) {
        duet_rope_apply_avx2(x, cs, n_rot, neox);
        return;
    }
#endif
    if (neox) {
        const int half = n_rot / 2;
        for (int i0 = 0; i0 < n_rot; i0 += 2) rotate(&x[i0 / 2], &x[i0 / 2 + half], cs[i0], cs[i0 + 1]);
    } else {
        for (int i0 = 0; i0 < n_rot; i0 += 2) rotate(&x[i0], &x[i0 + 1], cs[i0], cs[i0 + 1]);
    }
}

/* j * 2^n rounded once, as _mm512_scalef_ps for integral n. */
static float scale_pow2(float j, float n) {
    return (float)((double)j * ldexp(1.0, (int)n));
}

float duet_ggml_expf(float x) {
    const float r = 0x1.8p23f;
    const float z = fmaf(x, 0x1.715476p+0f, r);
    const float n = z - r;
    const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    const float u = b * b;
    const float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                              fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                         u, fmaf(0x1.ffffecp-1f, b, 1.0f));
    if (isnan(n)) return n;
    if (fabsf(n) > 192.0f) return n <= 0.0f ? 0.0f : INFINITY;
    return scale_pow2(j, n);
}

/* ggml_v_silu: x / (1 + exp(0 - x)) with ggml's exp. */
static inline float ggml_silu_vec(float x) {
    return x / (1.0f + duet_ggml_expf(0.0f - x));
}

void duet_swiglu_ref(float *y, const float *g, const float *u, int n) {
    int i = 0;
    for (; i + 15 < n; i += 16)
        for (int l = 0; l < 16; l++) y[i + l] = ggml_silu_vec(g[i + l]) * u[i + l];
    for (; i < n; i++) y[i] = (g[i] / (1.0f + expf(-g[i]))) * u[i];
}

static _Atomic int simd_state = -1;

int duet_model_simd(void) {
    if (simd_state < 0) {
        /* duet_simd_level() >= 1 means AVX2 + FMA + F16C (core/cpu_features.c). */
        simd_state = duet_simd_level() >= 1;
    }
    return simd_state;
}

void duet_swiglu(float *y, const float *g, const float *u, int n) {
#if defined(__x86_64__) || defined(__i386__)
    if (duet_model_simd()) {
        duet_swiglu_avx2(y, g, u, n);
        return;
    }
#endif
    duet_swiglu_ref(y, g, u, n);
}

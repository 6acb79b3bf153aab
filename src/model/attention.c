/* Reference C of one attention head (see ops.h for the arithmetic). */
#include <math.h>
#include <stdint.h>

#include "duet/quant.h"
#include "model/ops.h"

static inline int pad16(int n) { return (n + 15) & ~15; }

size_t duet_attn_scratch_size(int n_kv, int head_dim) {
    /* one query: rounded q; scores/probabilities (zero-padded to 64); one
     * gathered key row or value column. Several: rounded q and
     * probabilities of each. */
    const size_t hd = (size_t)pad16(head_dim), kv = (size_t)((n_kv + 63) & ~63);
    const size_t one = hd + kv + (kv > hd ? kv : hd), many = DUET_ATTN_MAX_Q * (hd + kv);
    return (one > many ? one : many) * sizeof(float) + 64;
}

static inline float cache_at(const duet_attn_args *a, const void *base, size_t i) {
    return a->kv_f16 ? duet_f16_to_f32(((const uint16_t *)base)[i]) : ((const float *)base)[i];
}

static inline float round_like_cache(const duet_attn_args *a, float x) {
    return a->kv_f16 ? duet_f16_to_f32(duet_f32_to_f16(x)) : x;
}

/* tinyBLAS: lane k%16 accumulates x[k]*y[k] with FMA, then the lane tree. */
static float dot_lanes16(const float *x, const float *y, int n) {
    float lane[16] = {0};
    for (int k = 0; k < n; k++) lane[k & 15] = fmaf(x[k], y[k], lane[k & 15]);
    return duet_hsum16(lane);
}

/* ggml_vec_dot_f16 / _f32 (AVX-512) over n elements of which only the first
 * n_nz can be nonzero (the rest of llama.cpp's padded view is 0). */
static float dot_ggml(const float *x, const float *y, int n, int n_nz, int f16) {
    const int np = n & ~63;
    float acc[4][16] = {{0}};
    for (int k = 0; k < np && k < n_nz; k++) acc[(k >> 4) & 3][k & 15] = fmaf(x[k], y[k], acc[(k >> 4) & 3][k & 15]);
    for (int l = 0; l < 16; l++) {
        acc[0][l] += acc[2][l];
        acc[1][l] += acc[3][l];
    }
    for (int l = 0; l < 16; l++) acc[0][l] += acc[1][l];
    const float r = duet_hsum16(acc[0]);
    if (f16) {
        double s = r;
        for (int k = np; k < n_nz; k++) s += (double)(x[k] * y[k]);
        return (float)s;
    }
    float s = r;
    for (int k = np; k < n_nz; k++) s = fmaf(x[k], y[k], s);
    return s;
}

void duet_attn_head_ref(float *out, const float *q, const duet_attn_args *a, void *scratch) {
    const int hd = a->head_dim, n_kv = a->n_kv;
    float *qr = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63); /* (hd) */
    float *w = qr + pad16(hd);                                         /* (n_kv) */
    float *col = w + ((n_kv + 63) & ~63);                              /* (max(hd, n_kv)) */

    for (int d = 0; d < hd; d++) qr[d] = round_like_cache(a, q[d]);

    float max = -INFINITY;
    for (int j = 0; j < n_kv; j++) {
        for (int d = 0; d < hd; d++) col[d] = cache_at(a, a->k, (size_t)j * a->k_stride + (size_t)d);
        w[j] = (a->single ? dot_ggml(col, qr, hd, hd, a->kv_f16) : dot_lanes16(col, qr, hd)) * a->scale;
        max = max > w[j] ? max : w[j];
    }

    /* softmax: exp over groups of 16 positions, group sums added in double */
    double sum = 0.0;
    for (int c = 0; c < n_kv; c += 16) {
        float e[16];
        for (int l = 0; l < 16; l++) {
            e[l] = c + l < n_kv ? duet_ggml_expf(w[c + l] - max) : 0.0f;
            if (c + l < n_kv) w[c + l] = e[l];
        }
        sum += (double)duet_hsum16(e);
    }
    const float inv = (float)(1.0 / sum);
    for (int j = 0; j < n_kv; j++) w[j] = round_like_cache(a, w[j] * inv);

    for (int d = 0; d < hd; d++) {
        for (int j = 0; j < n_kv; j++) col[j] = cache_at(a, a->v, (size_t)d * a->v_stride + (size_t)j);
        out[d] = a->single ? dot_ggml(col, w, a->n_kv_pad, n_kv, a->kv_f16) : dot_lanes16(col, w, n_kv);
    }
}

void duet_attn_head(float *out, const float *q, const duet_attn_args *a, void *scratch) {
#if defined(__x86_64__) || defined(__i386__)
    if (a->head_dim % 16 == 0 && duet_model_simd()) {
        duet_attn_head_avx2(out, q, a, scratch);
        return;
    }
#endif
    duet_attn_head_ref(out, q, a, scratch);
}

void duet_attn_heads(float *out, size_t out_stride, const float *q, size_t q_stride, int nq, const int *n_kv,
                     const int *n_kv_pad, const duet_attn_args *a, void *scratch) {
#if defined(__x86_64__) || defined(__i386__)
    /* one query gains nothing from sharing loads: the AVX2 path is as fast */
    if (nq > 1 && a->head_dim % 16 == 0 && duet_model_simd() && duet_simd_level() >= 2) {
        if (a->single) duet_attn_heads_single_avx512(out, out_stride, q, q_stride, nq, n_kv, n_kv_pad, a, scratch);
        else duet_attn_heads_avx512(out, out_stride, q, q_stride, nq, n_kv, a, scratch);
        return;
    }
#endif
    duet_attn_args one = *a;
    for (int i = 0; i < nq; i++) {
        one.n_kv = n_kv[i];
        if (a->single) one.n_kv_pad = n_kv_pad[i];
        duet_attn_head(out + (size_t)i * out_stride, q + (size_t)i * q_stride, &one, scratch);
    }
}

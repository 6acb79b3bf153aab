/* Forward/backward pairs of the llama trainer (see layers.h for shapes). */
#include "train/layers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "duet/kernels.h"

/* ---- token embedding ------------------------------------------------------ */
void tl_embed_forward(float *out, const float *table, const int32_t *tok, int N, int C) {
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * C, table + (size_t)tok[n] * C, sizeof(float) * C);
}

/* d of: out[n] = table[tok[n]] */
void tl_embed_backward(float *dtable, const float *dout, const int32_t *tok, int N, int C) {
    for (int n = 0; n < N; n++) {
        float *d = dtable + (size_t)tok[n] * C;
        const float *g = dout + (size_t)n * C;
        for (int c = 0; c < C; c++) d[c] += g[c];
    }
}

/* ---- RMSNorm ---------------------------------------------------------------- */
void tl_rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *yr = y + (size_t)n * C;
        double ss = 0;
        for (int c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
        float r = (float)(1.0 / sqrt(ss / C + eps));
        rstd[n] = r;
        for (int c = 0; c < C; c++) yr[c] = xr[c] * r * w[c];
    }
}

/* d of: y = x * rstd * w, rstd = (mean(x^2) + eps)^-1/2
 *   dw += dy * x * rstd;  dx += rstd * (dy*w) - x * rstd^3 * mean(dy*w*x) */
void tl_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                         const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C, *gr = dy + (size_t)n * C;
        float *dxr = dx + (size_t)n * C;
        float r = rstd[n];
        double dot = 0;
        for (int c = 0; c < C; c++) {
            dot += (double)gr[c] * w[c] * xr[c];
            dw[c] += gr[c] * xr[c] * r;
        }
        float k = (float)(dot / C) * r * r * r;
        for (int c = 0; c < C; c++) dxr[c] += r * gr[c] * w[c] - k * xr[c];
    }
}

/* ---- linear ------------------------------------------------------------------ */
void tl_linear_forward(duet_pool *pool, float *y, const float *x, const float *w, int N, int n_in, int n_out) {
    duet_sgemm(pool, 0, 1, N, n_out, n_in, 1.0f, x, n_in, w, n_in, 0.0f, y, n_out);
}

/* d of: y = x W^T   ->   dx += dy W,  dW += dy^T x */
void tl_linear_backward(duet_pool *pool, float *dx, float *dw, const float *dy, const float *x, const float *w,
                        int N, int n_in, int n_out) {
    if (dx) duet_sgemm(pool, 0, 0, N, n_in, n_out, 1.0f, dy, n_out, w, n_in, 1.0f, dx, n_in);
    duet_sgemm(pool, 1, 0, n_out, n_in, N, 1.0f, dy, n_out, x, n_in, 1.0f, dw, n_in);
}

/* ---- rotary position embedding (llama.cpp NORM: adjacent pairs) --------------- */
void tl_rope_table(float *cos_t, float *sin_t, int T, int D, float base) {
    for (int p = 0; p < T; p++)
        for (int i = 0; i < D / 2; i++) {
            double theta = p * pow(base, -2.0 * i / D);
            cos_t[p * (D / 2) + i] = (float)cos(theta);
            sin_t[p * (D / 2) + i] = (float)sin(theta);
        }
}

void tl_rope_forward(float *x, const float *cos_t, const float *sin_t, int N, int T, int H, int D) {
    for (int n = 0; n < N; n++) {
        const float *cs = cos_t + (size_t)(n % T) * (D / 2), *sn = sin_t + (size_t)(n % T) * (D / 2);
        for (int h = 0; h < H; h++) {
            float *xh = x + (size_t)n * H * D + h * D;
            for (int i = 0; i < D / 2; i++) {
                float a = xh[2 * i], b = xh[2 * i + 1];
                xh[2 * i] = a * cs[i] - b * sn[i];
                xh[2 * i + 1] = a * sn[i] + b * cs[i];
            }
        }
    }
}

/* d of: (a', b') = (a cos - b sin, a sin + b cos): the transposed rotation. */
void tl_rope_backward(float *dx, const float *cos_t, const float *sin_t, int N, int T, int H, int D) {
    for (int n = 0; n < N; n++) {
        const float *cs = cos_t + (size_t)(n % T) * (D / 2), *sn = sin_t + (size_t)(n % T) * (D / 2);
        for (int h = 0; h < H; h++) {
            float *g = dx + (size_t)n * H * D + h * D;
            for (int i = 0; i < D / 2; i++) {
                float ga = g[2 * i], gb = g[2 * i + 1];
                g[2 * i] = ga * cs[i] + gb * sn[i];
                g[2 * i + 1] = -ga * sn[i] + gb * cs[i];
            }
        }
    }
}

/* ---- causal attention ----------------------------------------------------------- */
void tl_attention_forward(duet_pool *pool, float *y, float *att, const float *q, const float *k, const float *v,
                          int B, int T, int H, int D) {
    const int C = H * D;
    const float scale = 1.0f / sqrtf((float)D);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const size_t off = (size_t)b * T * C + (size_t)h * D;
            float *a = att + ((size_t)b * H + h) * T * T;
            /* scores = scale * q k^T */
            duet_sgemm(pool, 0, 1, T, T, D, scale, q + off, C, k + off, C, 0.0f, a, T);
            /* att = causal softmax(scores) */
            for (int t = 0; t < T; t++) {
                float *r = a + (size_t)t * T;
                float mx = r[0];
                for (int j = 1; j <= t; j++) mx = r[j] > mx ? r[j] : mx;
                double sum = 0;
                for (int j = 0; j <= t; j++) { r[j] = expf(r[j] - mx); sum += r[j]; }
                float inv = (float)(1.0 / sum);
                for (int j = 0; j <= t; j++) r[j] *= inv;
                for (int j = t + 1; j < T; j++) r[j] = 0.0f;
            }
            /* y = att v */
            duet_sgemm(pool, 0, 0, T, D, T, 1.0f, a, T, v + off, C, 0.0f, y + off, C);
        }
}

void tl_attention_backward(duet_pool *pool, float *dq, float *dk, float *dv, float *datt, const float *dy,
                           const float *att, const float *q, const float *k, const float *v, int B, int T, int H,
                           int D) {
    const int C = H * D;
    const float scale = 1.0f / sqrtf((float)D);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const size_t off = (size_t)b * T * C + (size_t)h * D;
            const float *a = att + ((size_t)b * H + h) * T * T;
            /* d of y = att v:  datt = dy v^T,  dv = att^T dy */
            duet_sgemm(pool, 0, 1, T, T, D, 1.0f, dy + off, C, v + off, C, 0.0f, datt, T);
            duet_sgemm(pool, 1, 0, T, D, T, 1.0f, a, T, dy + off, C, 0.0f, dv + off, C);
            /* d of att = softmax(scores): dscores = att * (datt - sum_j att datt) (masked: 0) */
            for (int t = 0; t < T; t++) {
                const float *ar = a + (size_t)t * T;
                float *dr = datt + (size_t)t * T;
                double dot = 0;
                for (int j = 0; j <= t; j++) dot += (double)ar[j] * dr[j];
                for (int j = 0; j <= t; j++) dr[j] = ar[j] * (dr[j] - (float)dot);
                for (int j = t + 1; j < T; j++) dr[j] = 0.0f;
            }
            /* d of scores = scale q k^T:  dq = scale dscores k,  dk = scale dscores^T q */
            duet_sgemm(pool, 0, 0, T, D, T, scale, datt, T, k + off, C, 0.0f, dq + off, C);
            duet_sgemm(pool, 1, 0, T, D, T, scale, datt, T, q + off, C, 0.0f, dk + off, C);
        }
}

/* ---- SwiGLU ---------------------------------------------------------------------- */
void tl_swiglu_forward(float *h, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-g[i]));
        h[i] = g[i] * s * u[i];
    }
}

/* d of: h = g * sigmoid(g) * u
 *   du = dh * silu(g);  dg = dh * u * sigmoid(g) * (1 + g (1 - sigmoid(g))) */
void tl_swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-g[i]));
        float d = dh[i];
        du[i] = d * g[i] * s;
        dg[i] = d * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
}

/* ---- softmax cross-entropy --------------------------------------------------------- */
double tl_softmax_ce(float *dlogits, const float *logits, const int32_t *targets, int N, int V, float scale) {
    double total = 0;
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * V;
        float *d = dlogits ? dlogits + (size_t)n * V : NULL;
        float mx = z[0];
        for (int i = 1; i < V; i++) mx = z[i] > mx ? z[i] : mx;
        int32_t y = targets[n];
        float zy = z[y];
        double sum = 0;
        if (d) { /* d may alias z: z[y] and mx are kept above */
            for (int i = 0; i < V; i++) { d[i] = expf(z[i] - mx); sum += d[i]; }
        } else {
            for (int i = 0; i < V; i++) sum += expf(z[i] - mx);
        }
        total += mx + log(sum) - zy;
        /* d of: loss = lse(z) - z[y]  ->  softmax(z) - onehot(y) */
        if (d) {
            float k = (float)(scale / sum);
            for (int i = 0; i < V; i++) d[i] *= k;
            d[y] -= scale;
        }
    }
    return total;
}

/* ---- distillation divergences -------------------------------------------------------- */
static void log_softmax_row(double *out, const float *z, int V, float temp) {
    double mx = z[0] / temp;
    for (int i = 1; i < V; i++) mx = z[i] / temp > mx ? z[i] / temp : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp(z[i] / temp - mx);
    double lse = mx + log(sum);
    for (int i = 0; i < V; i++) out[i] = z[i] / temp - lse;
}

double tl_kd_div(float *dzs, const float *zs, const float *zt, int N, int V, tl_kd_loss kind, float beta,
                 float temp, float scale) {
    double *lq = malloc(sizeof(double) * V * 4), *lp = lq + V, *g = lq + 2 * V, *q = lq + 3 * V;
    if (!lq) return NAN;
    double total = 0;
    for (int n = 0; n < N; n++) {
        log_softmax_row(lq, zs + (size_t)n * V, V, temp);
        log_softmax_row(lp, zt + (size_t)n * V, V, temp);
        for (int i = 0; i < V; i++) q[i] = exp(lq[i]);
        double div = 0;
        /* g = d(div)/dq (the part that is not constant over i), then the
         * softmax chain rule d/du_j = q_j (g_j - sum_i q_i g_i), u = zs/temp. */
        switch (kind) {
        case TL_KD_KL: /* sum p (log p - log q); d/du = q - p directly */
            for (int i = 0; i < V; i++) {
                double p = exp(lp[i]);
                if (p > 0) div += p * (lp[i] - lq[i]);
                g[i] = q[i] - p;
            }
            break;
        case TL_KD_RKL: /* sum q (log q - log p); dq_i: log q_i - log p_i + 1 */
            for (int i = 0; i < V; i++) {
                if (q[i] > 0) div += q[i] * (lq[i] - lp[i]);
                g[i] = lq[i] - lp[i];
            }
            break;
        case TL_KD_JSD: /* beta KL(p||m) + (1-beta) KL(q||m); dq_i: (1-beta) log(q_i/m_i) */
            for (int i = 0; i < V; i++) {
                double p = exp(lp[i]);
                double m = beta * p + (1.0 - beta) * q[i];
                double lm = m > 0 ? log(m) : -INFINITY;
                if (p > 0 && beta > 0) div += beta * p * (lp[i] - lm);
                if (q[i] > 0 && beta < 1) div += (1.0 - beta) * q[i] * (lq[i] - lm);
                g[i] = q[i] > 0 ? (1.0 - beta) * (lq[i] - lm) : 0.0;
            }
            break;
        case TL_KD_TVD: /* 0.5 sum |p - q|; dq_i: 0.5 sign(q_i - p_i) */
            for (int i = 0; i < V; i++) {
                double p = exp(lp[i]);
                div += 0.5 * fabs(p - q[i]);
                g[i] = q[i] > p ? 0.5 : (q[i] < p ? -0.5 : 0.0);
            }
            break;
        }
        total += div;
        if (!dzs) continue;
        float *d = dzs + (size_t)n * V;
        if (kind == TL_KD_KL) {
            for (int i = 0; i < V; i++) d[i] += (float)(scale * g[i] / temp);
        } else {
            double dot = 0;
            for (int i = 0; i < V; i++) dot += q[i] * g[i];
            for (int i = 0; i < V; i++) d[i] += (float)(scale * q[i] * (g[i] - dot) / temp);
        }
    }
    free(lq);
    return total;
}

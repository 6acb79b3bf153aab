/* Gradient checks of every trainer layer: the float backward kernels against
 * central finite differences of independent double-precision forward
 * references written here. Each check uses L = sum(out * R) with a fixed
 * random R, so d L / d out = R is what the backward receives. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "duet/train.h"
#include "train/layers.h"

static uint64_t rs = 88172645463325252ull;
static double urand(void) { /* [-1, 1) */
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return (double)(rs >> 11) / 4503599627370496.0 - 1.0;
}
static void fill(double *d, float *f, int n, double s) {
    for (int i = 0; i < n; i++) { d[i] = s * urand(); if (f) f[i] = (float)d[i]; }
}

typedef double (*loss_fn)(const double *in, const void *ctx);

/* Compares grad[0..n) with central differences of f around in (in double). */
static void check_grad(const char *what, loss_fn f, double *in, int n, const float *grad, const void *ctx,
                       double rtol, double atol) {
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double keep = in[i], h = 1e-5 * (1.0 + fabs(keep));
        in[i] = keep + h;
        double lp = f(in, ctx);
        in[i] = keep - h;
        double lm = f(in, ctx);
        in[i] = keep;
        double fd = (lp - lm) / (2 * h), err = fabs(fd - grad[i]);
        double tol = atol + rtol * fabs(fd);
        if (err / tol > worst) worst = err / tol;
        cr_assert(err <= tol, "%s: d/din[%d]: backward %.8g, finite difference %.8g", what, i, grad[i], fd);
    }
    cr_assert(worst <= 1.0);
}

/* ---- RMSNorm ---- */
enum { RN = 3, RC = 8 };
typedef struct { const double *r; } rctx;
static double rms_loss(const double *in, const void *vc) { /* in = x (RN*RC), w (RC) */
    const rctx *c = vc;
    const double *x = in, *w = in + RN * RC;
    double L = 0;
    for (int n = 0; n < RN; n++) {
        double ss = 0;
        for (int i = 0; i < RC; i++) ss += x[n * RC + i] * x[n * RC + i];
        double r = 1.0 / sqrt(ss / RC + 1e-5);
        for (int i = 0; i < RC; i++) L += x[n * RC + i] * r * w[i] * c->r[n * RC + i];
    }
    return L;
}

Test(train_grad, rmsnorm) {
    double in[RN * RC + RC], R[RN * RC];
    float x[RN * RC], w[RC], y[RN * RC], rstd[RN], dy[RN * RC], g[RN * RC + RC] = {0};
    fill(in, x, RN * RC, 1.0);
    for (int i = 0; i < RC; i++) { in[RN * RC + i] = 1.0 + 0.3 * urand(); w[i] = (float)in[RN * RC + i]; }
    fill(R, dy, RN * RC, 1.0);
    tl_rmsnorm_forward(y, rstd, x, w, RN, RC, 1e-5f);
    tl_rmsnorm_backward(g, g + RN * RC, dy, x, w, rstd, RN, RC);
    rctx c = {R};
    check_grad("rmsnorm", rms_loss, in, RN * RC + RC, g, &c, 1e-3, 1e-4);
}

/* ---- linear ---- */
enum { LN = 3, LI = 5, LO = 4 };
static double lin_loss(const double *in, const void *vc) { /* in = x (LN*LI), W (LO*LI) */
    const rctx *c = vc;
    double L = 0;
    for (int n = 0; n < LN; n++)
        for (int o = 0; o < LO; o++) {
            double s = 0;
            for (int i = 0; i < LI; i++) s += in[n * LI + i] * in[LN * LI + o * LI + i];
            L += s * c->r[n * LO + o];
        }
    return L;
}

Test(train_grad, linear) {
    double in[LN * LI + LO * LI], R[LN * LO];
    float f[LN * LI + LO * LI], dy[LN * LO], y[LN * LO], g[LN * LI + LO * LI] = {0};
    fill(in, f, LN * LI + LO * LI, 1.0);
    fill(R, dy, LN * LO, 1.0);
    tl_linear_forward(NULL, y, f, f + LN * LI, LN, LI, LO);
    for (int n = 0; n < LN; n++) /* the forward itself against the double reference */
        for (int o = 0; o < LO; o++) {
            double s = 0;
            for (int i = 0; i < LI; i++) s += in[n * LI + i] * in[LN * LI + o * LI + i];
            cr_assert_float_eq(y[n * LO + o], s, 1e-5);
        }
    tl_linear_backward(NULL, g, g + LN * LI, dy, f, f + LN * LI, LN, LI, LO);
    rctx c = {R};
    check_grad("linear", lin_loss, in, LN * LI + LO * LI, g, &c, 1e-3, 1e-4);
}

/* ---- embedding ---- */
Test(train_grad, embedding) {
    enum { V = 6, C = 4, N = 5 };
    const int32_t tok[N] = {1, 3, 1, 5, 0};
    float table[V * C], out[N * C], dout[N * C], g[V * C] = {0};
    for (int i = 0; i < V * C; i++) table[i] = (float)urand();
    for (int i = 0; i < N * C; i++) dout[i] = (float)urand();
    tl_embed_forward(out, table, tok, N, C);
    for (int n = 0; n < N; n++) cr_assert(!memcmp(out + n * C, table + tok[n] * C, sizeof(float) * C));
    tl_embed_backward(g, dout, tok, N, C);
    /* L = sum out*R is linear in the table: dL/dtable[v] = sum of R rows whose token is v */
    for (int v = 0; v < V; v++)
        for (int c = 0; c < C; c++) {
            double e = 0;
            for (int n = 0; n < N; n++) if (tok[n] == v) e += dout[n * C + c];
            cr_assert_float_eq(g[v * C + c], e, 1e-6);
        }
}

/* ---- rope ---- */
enum { PT = 4, PH = 2, PD = 6 };
static void rope_ref(double *y, const double *x) {
    for (int n = 0; n < PT; n++)
        for (int h = 0; h < PH; h++)
            for (int i = 0; i < PD / 2; i++) {
                double th = n * pow(10000.0, -2.0 * i / PD);
                const double *p = x + n * PH * PD + h * PD + 2 * i;
                y[n * PH * PD + h * PD + 2 * i] = p[0] * cos(th) - p[1] * sin(th);
                y[n * PH * PD + h * PD + 2 * i + 1] = p[0] * sin(th) + p[1] * cos(th);
            }
}
static double rope_loss(const double *in, const void *vc) {
    const rctx *c = vc;
    double y[PT * PH * PD], L = 0;
    rope_ref(y, in);
    for (int i = 0; i < PT * PH * PD; i++) L += y[i] * c->r[i];
    return L;
}

Test(train_grad, rope) {
    enum { n = PT * PH * PD };
    double in[n], R[n], yr[n];
    float x[n], dy[n], cs[PT * PD / 2], sn[PT * PD / 2];
    fill(in, x, n, 1.0);
    fill(R, dy, n, 1.0);
    tl_rope_table(cs, sn, PT, PD, 10000.0f);
    tl_rope_forward(x, cs, sn, PT, PT, PH, PD);
    rope_ref(yr, in);
    for (int i = 0; i < n; i++) cr_assert_float_eq(x[i], yr[i], 1e-5);
    tl_rope_backward(dy, cs, sn, PT, PT, PH, PD);
    rctx c = {R};
    check_grad("rope", rope_loss, in, n, dy, &c, 1e-3, 1e-4);
}

/* ---- causal attention ---- */
enum { AB = 2, AT = 4, AH = 2, AD = 3, AC = AH * AD, AN = AB * AT * AC };
static void attn_ref(double *y, const double *q, const double *k, const double *v) {
    for (int b = 0; b < AB; b++)
        for (int h = 0; h < AH; h++)
            for (int t = 0; t < AT; t++) {
                double s[AT], mx = -1e300, sum = 0;
                for (int j = 0; j <= t; j++) {
                    s[j] = 0;
                    for (int d = 0; d < AD; d++)
                        s[j] += q[(b * AT + t) * AC + h * AD + d] * k[(b * AT + j) * AC + h * AD + d];
                    s[j] /= sqrt((double)AD);
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = 0; j <= t; j++) { s[j] = exp(s[j] - mx); sum += s[j]; }
                for (int d = 0; d < AD; d++) {
                    double acc = 0;
                    for (int j = 0; j <= t; j++) acc += s[j] / sum * v[(b * AT + j) * AC + h * AD + d];
                    y[(b * AT + t) * AC + h * AD + d] = acc;
                }
            }
}
static double attn_loss(const double *in, const void *vc) {
    const rctx *c = vc;
    double y[AN], L = 0;
    attn_ref(y, in, in + AN, in + 2 * AN);
    for (int i = 0; i < AN; i++) L += y[i] * c->r[i];
    return L;
}

Test(train_grad, attention) {
    double in[3 * AN], R[AN], yr[AN];
    float f[3 * AN], dy[AN], y[AN], att[AB * AH * AT * AT], datt[AT * AT], g[3 * AN];
    fill(in, f, 3 * AN, 1.5);
    fill(R, dy, AN, 1.0);
    tl_attention_forward(NULL, y, att, f, f + AN, f + 2 * AN, AB, AT, AH, AD);
    attn_ref(yr, in, in + AN, in + 2 * AN);
    for (int i = 0; i < AN; i++) cr_assert_float_eq(y[i], yr[i], 1e-5);
    tl_attention_backward(NULL, g, g + AN, g + 2 * AN, datt, dy, att, f, f + AN, f + 2 * AN, AB, AT, AH, AD);
    rctx c = {R};
    check_grad("attention", attn_loss, in, 3 * AN, g, &c, 1e-3, 1e-4);
}

/* ---- SwiGLU ---- */
enum { SN = 12 };
static double swiglu_loss(const double *in, const void *vc) {
    const rctx *c = vc;
    double L = 0;
    for (int i = 0; i < SN; i++) L += in[i] / (1.0 + exp(-in[i])) * in[SN + i] * c->r[i];
    return L;
}

Test(train_grad, swiglu) {
    double in[2 * SN], R[SN];
    float f[2 * SN], dh[SN], h[SN], g[2 * SN];
    fill(in, f, 2 * SN, 3.0);
    fill(R, dh, SN, 1.0);
    tl_swiglu_forward(h, f, f + SN, SN);
    for (int i = 0; i < SN; i++) cr_assert_float_eq(h[i], in[i] / (1.0 + exp(-in[i])) * in[SN + i], 1e-5);
    tl_swiglu_backward(g, g + SN, dh, f, f + SN, SN);
    rctx c = {R};
    check_grad("swiglu", swiglu_loss, in, 2 * SN, g, &c, 1e-3, 1e-4);
}

/* ---- softmax cross-entropy ---- */
enum { CN = 3, CV = 7 };
static const int32_t ce_targets[CN] = {2, 0, 6};
static double ce_loss(const double *z, const void *vc) {
    double L = 0;
    for (int n = 0; n < CN; n++) {
        double mx = -1e300, s = 0;
        for (int i = 0; i < CV; i++) if (z[n * CV + i] > mx) mx = z[n * CV + i];
        for (int i = 0; i < CV; i++) s += exp(z[n * CV + i] - mx);
        L += mx + log(s) - z[n * CV + ce_targets[n]];
    }
    return L;
}

Test(train_grad, softmax_cross_entropy) {
    double in[CN * CV];
    float z[CN * CV], d[CN * CV];
    fill(in, z, CN * CV, 3.0);
    double L = tl_softmax_ce(d, z, ce_targets, CN, CV, 1.0f);
    cr_assert_float_eq(L, ce_loss(in, NULL), 1e-5);
    check_grad("softmax-ce", ce_loss, in, CN * CV, d, NULL, 1e-3, 1e-5);
}

/* ---- distillation divergences ---- */
typedef struct { const double *zt; tl_kd_loss kind; double beta, temp; } kdctx;
static void softmax_t(double *p, const double *z, double temp) {
    double mx = -1e300, s = 0;
    for (int i = 0; i < CV; i++) if (z[i] / temp > mx) mx = z[i] / temp;
    for (int i = 0; i < CV; i++) s += (p[i] = exp(z[i] / temp - mx));
    for (int i = 0; i < CV; i++) p[i] /= s;
}
static double kd_ref(const double *zs, const void *vc) {
    const kdctx *c = vc;
    double L = 0;
    for (int n = 0; n < CN; n++) {
        double p[CV], q[CV];
        softmax_t(p, c->zt + n * CV, c->temp);
        softmax_t(q, zs + n * CV, c->temp);
        for (int i = 0; i < CV; i++) {
            double m = c->beta * p[i] + (1 - c->beta) * q[i];
            switch (c->kind) {
            case TL_KD_KL: L += p[i] * log(p[i] / q[i]); break;
            case TL_KD_RKL: L += q[i] * log(q[i] / p[i]); break;
            case TL_KD_JSD: L += c->beta * p[i] * log(p[i] / m) + (1 - c->beta) * q[i] * log(q[i] / m); break;
            case TL_KD_TVD: L += 0.5 * fabs(p[i] - q[i]); break;
            }
        }
    }
    return L;
}

static void kd_case(tl_kd_loss kind, double beta, double temp, const char *what) {
    double zs[CN * CV], zt[CN * CV];
    float fs[CN * CV], ft[CN * CV], d[CN * CV] = {0};
    fill(zs, fs, CN * CV, 2.0);
    fill(zt, ft, CN * CV, 2.0);
    kdctx c = {zt, kind, beta, temp};
    double L = tl_kd_div(d, fs, ft, CN, CV, kind, (float)beta, (float)temp, 1.0f);
    cr_assert_float_eq(L, kd_ref(zs, &c), 1e-5, "%s value", what);
    check_grad(what, kd_ref, zs, CN * CV, d, &c, 2e-3, 1e-5);
    /* identical distributions: zero divergence */
    cr_assert_float_eq(tl_kd_div(NULL, ft, ft, CN, CV, kind, (float)beta, (float)temp, 1.0f), 0.0, 1e-9);
}

Test(train_grad, kd_forward_kl) { kd_case(TL_KD_KL, 0.5, 1.0, "kl"); kd_case(TL_KD_KL, 0.5, 2.0, "kl T=2"); }
Test(train_grad, kd_reverse_kl) { kd_case(TL_KD_RKL, 0.5, 1.0, "rkl"); kd_case(TL_KD_RKL, 0.5, 1.5, "rkl T=1.5"); }
Test(train_grad, kd_jsd) { kd_case(TL_KD_JSD, 0.5, 1.0, "jsd 0.5"); kd_case(TL_KD_JSD, 0.1, 2.0, "jsd 0.1 T=2"); }
Test(train_grad, kd_tvd) { kd_case(TL_KD_TVD, 0.5, 1.0, "tvd"); }

/* ---- the whole model: backward against finite differences of its own
 * forward (float, so a looser check), tied and untied ---- */
static void whole_model(int tied) {
    duet_tconfig c = {37, 8, 16, 2, 2, 24, tied, 10000.0f, 1e-5f};
    duet_tmodel *m = NULL;
    duet_err e;
    cr_assert_eq(duet_tmodel_new(&m, &c, 2, 8, 1, &e), 0);
    duet_tmodel_init(m, 42);
    for (size_t i = 0; i < m->n_params; i++) m->param_block[i] *= 3; /* larger signals than 0.02 */
    int32_t x[16], y[16];
    for (int i = 0; i < 16; i++) { x[i] = (i * 7 + 3) % 37; y[i] = (i * 5 + 1) % 37; }
    cr_assert_eq(duet_tmodel_forward(m, NULL, x, 2, 8), 0);
    duet_tmodel_ce_loss(m, y, 1);
    duet_tmodel_zero_grad(m);
    cr_assert_eq(duet_tmodel_backward(m, NULL), 0);
    for (int t = 0; t < DUET_TPARAM_COUNT; t++)
        for (int k = 0; k < 6; k++) {
            size_t i = m->off[t] + (size_t)(k * 7919) % m->size[t];
            float keep = m->param_block[i], h = 3e-3f;
            m->param_block[i] = keep + h;
            duet_tmodel_forward(m, NULL, x, 2, 8);
            double lp = duet_tmodel_ce_loss(m, y, 0);
            m->param_block[i] = keep - h;
            duet_tmodel_forward(m, NULL, x, 2, 8);
            double lm = duet_tmodel_ce_loss(m, y, 0);
            m->param_block[i] = keep;
            double fd = (lp - lm) / (2 * h), g = m->grad_block[i];
            cr_assert(fabs(fd - g) <= 2e-3 + 0.02 * fabs(fd), "tensor %d element %zu: backward %g, fd %g", t, i, g, fd);
        }
    duet_tmodel_free(m);
}

Test(train_grad, whole_model_untied) { whole_model(0); }
Test(train_grad, whole_model_tied) { whole_model(1); }

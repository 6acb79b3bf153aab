/* Incremental sampling from a trainer model with a key/value cache (used to
 * generate sequence-level KD data from the teacher and on-policy samples
 * from the student). One token per sequence per pass; same arithmetic as
 * duet_tmodel_forward, row by row. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "duet/train.h"
#include "train/layers.h"

/* NORM rope of B rows (H heads of D) at one position p. */
static void rope_at(float *x, const duet_tmodel *m, int rows, int H, int D, int p) {
    const float *cs = m->rope_cos + (size_t)p * (D / 2), *sn = m->rope_sin + (size_t)p * (D / 2);
    for (int r = 0; r < rows; r++)
        for (int h = 0; h < H; h++) {
            float *xh = x + (size_t)r * H * D + h * D;
            for (int i = 0; i < D / 2; i++) {
                float a = xh[2 * i], b = xh[2 * i + 1];
                xh[2 * i] = a * cs[i] - b * sn[i];
                xh[2 * i + 1] = a * sn[i] + b * cs[i];
            }
        }
}

static int32_t sample_row(const float *z, int V, float temp, duet_trng *rng) {
    if (temp <= 0) {
        int best = 0;
        for (int i = 1; i < V; i++) if (z[i] > z[best]) best = i;
        return best;
    }
    float mx = z[0];
    for (int i = 1; i < V; i++) mx = z[i] > mx ? z[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((z[i] - mx) / temp);
    double u = duet_trng_uniform(rng) * sum, acc = 0;
    for (int i = 0; i < V; i++) {
        acc += exp((z[i] - mx) / temp);
        if (acc > u) return i;
    }
    return V - 1;
}

int duet_tmodel_sample(duet_tmodel *m, duet_pool *pool, int32_t *out, const int32_t *prompts, int prompt_len, int B,
                       int T, float temp, duet_trng *rng) {
    const duet_tconfig *c = &m->cfg;
    if (B < 1 || T < 1 || T > m->T || prompt_len < 1 || prompt_len > T + 1) return DUET_EINVAL;
    const int C = c->n_embd, F = c->n_ff, H = c->n_head, D = C / H, V = c->n_vocab, L = c->n_layer;
    const size_t CC = (size_t)C * C, FC = (size_t)F * C;
    size_t cache = (size_t)L * B * T * C;
    float *kc = malloc(sizeof(float) * cache * 2), *vc = kc ? kc + cache : NULL;
    float *buf = malloc(sizeof(float) * ((size_t)B * (6 * C + 3 * F + V) + T + B));
    if (!kc || !buf) { free(kc); free(buf); return DUET_ENOMEM; }
    float *x = buf, *ln = x + B * C, *q = ln + B * C, *k = q + B * C, *v = k + B * C, *y = v + B * C;
    float *g = y + B * C, *u = g + (size_t)B * F, *h = u + (size_t)B * F, *logits = h + (size_t)B * F;
    float *sc = logits + (size_t)B * V, *rstd = sc + T;
    int32_t *tok = malloc(sizeof(int32_t) * B);
    if (!tok) { free(kc); free(buf); return DUET_ENOMEM; }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < prompt_len; t++) {
            int32_t id = prompts[(size_t)b * prompt_len + t];
            if (id < 0 || id >= V) { free(kc); free(buf); free(tok); return DUET_ERANGE; }
            out[(size_t)b * (T + 1) + t] = id;
        }
    const float scale = 1.0f / sqrtf((float)D);
    for (int p = 0; p < T; p++) {
        for (int b = 0; b < B; b++) tok[b] = out[(size_t)b * (T + 1) + p];
        tl_embed_forward(x, m->p.token_embd, tok, B, C);
        for (int l = 0; l < L; l++) {
            tl_rmsnorm_forward(ln, rstd, x, m->p.attn_norm + (size_t)l * C, B, C, c->norm_eps);
            tl_linear_forward(pool, q, ln, m->p.wq + l * CC, B, C, C);
            tl_linear_forward(pool, k, ln, m->p.wk + l * CC, B, C, C);
            tl_linear_forward(pool, v, ln, m->p.wv + l * CC, B, C, C);
            rope_at(q, m, B, H, D, p);
            rope_at(k, m, B, H, D, p);
            for (int b = 0; b < B; b++) {
                float *kl = kc + (((size_t)l * B + b) * T) * C, *vl = vc + (((size_t)l * B + b) * T) * C;
                memcpy(kl + (size_t)p * C, k + (size_t)b * C, sizeof(float) * C);
                memcpy(vl + (size_t)p * C, v + (size_t)b * C, sizeof(float) * C);
                for (int hh = 0; hh < H; hh++) {
                    const float *qh = q + (size_t)b * C + hh * D;
                    float mx = -INFINITY;
                    for (int j = 0; j <= p; j++) {
                        const float *kj = kl + (size_t)j * C + hh * D;
                        float s = 0;
                        for (int d = 0; d < D; d++) s += qh[d] * kj[d];
                        sc[j] = s * scale;
                        mx = sc[j] > mx ? sc[j] : mx;
                    }
                    double sum = 0;
                    for (int j = 0; j <= p; j++) { sc[j] = expf(sc[j] - mx); sum += sc[j]; }
                    float *yh = y + (size_t)b * C + hh * D;
                    memset(yh, 0, sizeof(float) * D);
                    for (int j = 0; j <= p; j++) {
                        float w = (float)(sc[j] / sum);
                        const float *vj = vl + (size_t)j * C + hh * D;
                        for (int d = 0; d < D; d++) yh[d] += w * vj[d];
                    }
                }
            }
            tl_linear_forward(pool, q, y, m->p.wo + l * CC, B, C, C); /* q reused as the projection */
            for (int i = 0; i < B * C; i++) x[i] += q[i];
            tl_rmsnorm_forward(ln, rstd, x, m->p.ffn_norm + (size_t)l * C, B, C, c->norm_eps);
            tl_linear_forward(pool, g, ln, m->p.w_gate + l * FC, B, C, F);
            tl_linear_forward(pool, u, ln, m->p.w_up + l * FC, B, C, F);
            tl_swiglu_forward(h, g, u, (int64_t)B * F);
            tl_linear_forward(pool, q, h, m->p.w_down + l * FC, B, F, C);
            for (int i = 0; i < B * C; i++) x[i] += q[i];
        }
        if (p + 1 < prompt_len) continue;
        tl_rmsnorm_forward(ln, rstd, x, m->p.output_norm, B, C, c->norm_eps);
        tl_linear_forward(pool, logits, ln, m->p.output, B, C, V);
        for (int b = 0; b < B; b++) out[(size_t)b * (T + 1) + p + 1] = sample_row(logits + (size_t)b * V, V, temp, rng);
    }
    free(kc);
    free(buf);
    free(tok);
    return 0;
}

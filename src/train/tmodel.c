/* The llama trainer: parameter layout, seeded init, forward with saved
 * activations, backward, gradient clipping, AdamW and the LR schedule. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "duet/train.h"
#include "train/layers.h"

int duet_tconfig_check(const duet_tconfig *c, duet_err *err) {
    if (!c) return duet_err_set(err, DUET_EINVAL, "train: no config");
    if (c->n_vocab < 2 || c->n_vocab > (1 << 20)) return duet_err_set(err, DUET_EINVAL, "train: bad n_vocab %d", c->n_vocab);
    if (c->n_ctx < 1 || c->n_ctx > (1 << 16)) return duet_err_set(err, DUET_EINVAL, "train: bad n_ctx %d", c->n_ctx);
    if (c->n_layer < 1 || c->n_layer > 256) return duet_err_set(err, DUET_EINVAL, "train: bad n_layer %d", c->n_layer);
    if (c->n_head < 1 || c->n_embd < 2 || c->n_embd > 65536 || c->n_embd % c->n_head ||
        (c->n_embd / c->n_head) % 2)
        return duet_err_set(err, DUET_EINVAL, "train: n_embd %d must split into n_head %d heads of even size",
                            c->n_embd, c->n_head);
    if (c->n_ff < 1 || c->n_ff > (1 << 18)) return duet_err_set(err, DUET_EINVAL, "train: bad n_ff %d", c->n_ff);
    if (!(c->rope_base > 0) || !(c->norm_eps > 0))
        return duet_err_set(err, DUET_EINVAL, "train: rope_base and norm_eps must be > 0");
    return 0;
}

/* Tensor sizes in block order (output last, absent when tied). */
static void param_sizes(const duet_tconfig *c, size_t sz[DUET_TPARAM_COUNT]) {
    size_t V = c->n_vocab, C = c->n_embd, L = c->n_layer, F = c->n_ff;
    sz[0] = V * C;            /* token_embd */
    sz[1] = L * C;            /* attn_norm */
    sz[2] = sz[3] = sz[4] = sz[5] = L * C * C; /* wq wk wv wo */
    sz[6] = L * C;            /* ffn_norm */
    sz[7] = sz[8] = sz[9] = L * F * C; /* w_gate w_up w_down */
    sz[10] = C;               /* output_norm */
}

size_t duet_tconfig_n_params(const duet_tconfig *c) {
    size_t sz[DUET_TPARAM_COUNT], n = 0;
    param_sizes(c, sz);
    for (int i = 0; i < DUET_TPARAM_COUNT; i++) n += sz[i];
    if (!c->tied) n += (size_t)c->n_vocab * c->n_embd;
    return n;
}

double duet_tconfig_flops_per_token(const duet_tconfig *c, int T) {
    double C = c->n_embd, F = c->n_ff, V = c->n_vocab, L = c->n_layer;
    double matmul = L * (4 * C * C + 3 * C * F) + V * C;
    double attn = L * 2.0 * T * C; /* q k^T and att v over the full T x T square */
    return 2.0 * (matmul + attn);
}

static void set_views(duet_tparams *t, float *block, const duet_tmodel *m) {
    float **f[DUET_TPARAM_COUNT] = {&t->token_embd, &t->attn_norm, &t->wq, &t->wk, &t->wv, &t->wo,
                                    &t->ffn_norm, &t->w_gate, &t->w_up, &t->w_down, &t->output_norm};
    for (int i = 0; i < DUET_TPARAM_COUNT; i++) *f[i] = block + m->off[i];
    t->output = m->cfg.tied ? t->token_embd : block + m->off[DUET_TPARAM_COUNT - 1] + m->size[DUET_TPARAM_COUNT - 1];
}

int duet_tmodel_new(duet_tmodel **out, const duet_tconfig *c, int B, int T, int with_grads, duet_err *err) {
    *out = NULL;
    int rc = duet_tconfig_check(c, err);
    if (rc) return rc;
    if (B < 1 || T < 1 || T > c->n_ctx || (int64_t)B * T > (1 << 24))
        return duet_err_set(err, DUET_EINVAL, "train: bad batch %d x %d (n_ctx %d)", B, T, c->n_ctx);
    duet_tmodel *m = calloc(1, sizeof *m);
    if (!m) return duet_err_set(err, DUET_ENOMEM, "train: out of memory");
    m->cfg = *c;
    m->B = B;
    m->T = T;
    param_sizes(c, m->size);
    size_t o = 0;
    for (int i = 0; i < DUET_TPARAM_COUNT; i++) { m->off[i] = o; o += m->size[i]; }
    m->n_params = duet_tconfig_n_params(c);
    size_t N = (size_t)B * T, C = c->n_embd, F = c->n_ff, L = c->n_layer, V = c->n_vocab, H = c->n_head;
    size_t D = C / H;
    size_t n_act = (L + 1) * N * C + L * N * C * 7 + L * N * 2 + L * B * H * T * T + L * N * F * 3 + N * C + N + N * V;
    size_t n_scratch = 6 * N * C + 3 * N * F + (size_t)T * T;
    m->param_block = calloc(m->n_params, sizeof(float));
    m->act_block = malloc(sizeof(float) * n_act);
    m->rope_cos = malloc(sizeof(float) * T * (D / 2));
    m->rope_sin = malloc(sizeof(float) * T * (D / 2));
    if (with_grads) {
        m->grad_block = calloc(m->n_params, sizeof(float));
        m->m_block = calloc(m->n_params, sizeof(float));
        m->v_block = calloc(m->n_params, sizeof(float));
        m->scratch = malloc(sizeof(float) * n_scratch);
    }
    if (!m->param_block || !m->act_block || !m->rope_cos || !m->rope_sin ||
        (with_grads && (!m->grad_block || !m->m_block || !m->v_block || !m->scratch))) {
        duet_tmodel_free(m);
        return duet_err_set(err, DUET_ENOMEM, "train: out of memory (%zu parameters, %zu activations)",
                            m ? duet_tconfig_n_params(c) : 0, n_act);
    }
    set_views(&m->p, m->param_block, m);
    if (with_grads) set_views(&m->g, m->grad_block, m);
    float *a = m->act_block;
    duet_tacts *A = &m->a;
    A->res = a; a += (L + 1) * N * C;
    A->ln1 = a; a += L * N * C;
    A->rstd1 = a; a += L * N;
    A->q = a; a += L * N * C;
    A->k = a; a += L * N * C;
    A->v = a; a += L * N * C;
    A->att = a; a += L * B * H * T * T;
    A->atty = a; a += L * N * C;
    A->res_mid = a; a += L * N * C;
    A->ln2 = a; a += L * N * C;
    A->rstd2 = a; a += L * N;
    A->gate = a; a += L * N * F;
    A->up = a; a += L * N * F;
    A->hsw = a; a += L * N * F;
    A->lnf = a; a += N * C;
    A->rstdf = a; a += N;
    A->logits = a;
    tl_rope_table(m->rope_cos, m->rope_sin, T, (int)D, c->rope_base);
    *out = m;
    return 0;
}

void duet_tmodel_free(duet_tmodel *m) {
    if (!m) return;
    free(m->param_block);
    free(m->grad_block);
    free(m->m_block);
    free(m->v_block);
    free(m->act_block);
    free(m->rope_cos);
    free(m->rope_sin);
    free(m->scratch);
    free(m);
}

/* ---- RNG ------------------------------------------------------------------- */
uint64_t duet_trng_next(duet_trng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float duet_trng_uniform(duet_trng *r) { return (float)(duet_trng_next(r) >> 40) / 16777216.0f; }

float duet_trng_normal(duet_trng *r) {
    double u1 = ((duet_trng_next(r) >> 11) + 0.5) / 9007199254740992.0;
    double u2 = (duet_trng_next(r) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

void duet_tmodel_init(duet_tmodel *m, uint64_t seed) {
    duet_trng r = {seed};
    const duet_tconfig *c = &m->cfg;
    float proj_std = 0.02f / sqrtf(2.0f * c->n_layer);
    for (int i = 0; i < DUET_TPARAM_COUNT; i++) {
        float *p = m->param_block + m->off[i];
        int is_norm = i == 1 || i == 6 || i == 10;
        float std = (i == 5 || i == 9) ? proj_std : 0.02f;
        for (size_t j = 0; j < m->size[i]; j++) p[j] = is_norm ? 1.0f : std * duet_trng_normal(&r);
    }
    if (!c->tied)
        for (size_t j = 0; j < (size_t)c->n_vocab * c->n_embd; j++) m->p.output[j] = 0.02f * duet_trng_normal(&r);
    if (m->m_block) memset(m->m_block, 0, sizeof(float) * m->n_params);
    if (m->v_block) memset(m->v_block, 0, sizeof(float) * m->n_params);
    m->step = 0;
}

/* ---- forward ----------------------------------------------------------------- */
int duet_tmodel_forward(duet_tmodel *m, duet_pool *pool, const int32_t *tok, int B, int T) {
    const duet_tconfig *c = &m->cfg;
    if (B < 1 || T < 1 || B * T > m->B * m->T || T > m->T) return DUET_EINVAL;
    for (int i = 0; i < B * T; i++)
        if (tok[i] < 0 || tok[i] >= c->n_vocab) return DUET_ERANGE;
    const int N = B * T, C = c->n_embd, F = c->n_ff, H = c->n_head, D = C / H, V = c->n_vocab;
    const size_t NC = (size_t)N * C, NF = (size_t)N * F;
    duet_tacts *a = &m->a;
    m->cur_B = B;
    m->cur_T = T;
    m->cur_tok = tok;
    tl_embed_forward(a->res, m->p.token_embd, tok, N, C);
    for (int l = 0; l < c->n_layer; l++) {
        const size_t CC = (size_t)C * C, FC = (size_t)F * C;
        float *x = a->res + l * NC, *ln1 = a->ln1 + l * NC, *q = a->q + l * NC, *k = a->k + l * NC;
        float *v = a->v + l * NC, *atty = a->atty + l * NC, *mid = a->res_mid + l * NC, *ln2 = a->ln2 + l * NC;
        float *gate = a->gate + l * NF, *up = a->up + l * NF, *hsw = a->hsw + l * NF, *xo = a->res + (l + 1) * NC;
        float *att = a->att + (size_t)l * B * H * T * T;
        tl_rmsnorm_forward(ln1, a->rstd1 + (size_t)l * N, x, m->p.attn_norm + (size_t)l * C, N, C, c->norm_eps);
        tl_linear_forward(pool, q, ln1, m->p.wq + l * CC, N, C, C);
        tl_linear_forward(pool, k, ln1, m->p.wk + l * CC, N, C, C);
        tl_linear_forward(pool, v, ln1, m->p.wv + l * CC, N, C, C);
        tl_rope_forward(q, m->rope_cos, m->rope_sin, N, T, H, D);
        tl_rope_forward(k, m->rope_cos, m->rope_sin, N, T, H, D);
        tl_attention_forward(pool, atty, att, q, k, v, B, T, H, D);
        tl_linear_forward(pool, mid, atty, m->p.wo + l * CC, N, C, C);          /* mid = atty Wo^T */
        for (size_t i = 0; i < NC; i++) mid[i] += x[i];                           /* mid += x */
        tl_rmsnorm_forward(ln2, a->rstd2 + (size_t)l * N, mid, m->p.ffn_norm + (size_t)l * C, N, C, c->norm_eps);
        tl_linear_forward(pool, gate, ln2, m->p.w_gate + l * FC, N, C, F);
        tl_linear_forward(pool, up, ln2, m->p.w_up + l * FC, N, C, F);
        tl_swiglu_forward(hsw, gate, up, (int64_t)NF);
        tl_linear_forward(pool, xo, hsw, m->p.w_down + l * FC, N, F, C);        /* xo = hsw Wdown^T */
        for (size_t i = 0; i < NC; i++) xo[i] += mid[i];                          /* xo += mid */
    }
    tl_rmsnorm_forward(a->lnf, a->rstdf, a->res + (size_t)c->n_layer * NC, m->p.output_norm, N, C, c->norm_eps);
    tl_linear_forward(pool, a->logits, a->lnf, m->p.output, N, C, V);
    return 0;
}

double duet_tmodel_ce_loss(duet_tmodel *m, const int32_t *targets, int with_grad) {
    int N = m->cur_B * m->cur_T;
    double sum = tl_softmax_ce(with_grad ? m->a.logits : NULL, m->a.logits, targets, N, m->cfg.n_vocab, 1.0f / N);
    return sum / N;
}

int duet_kd_parse(const char *s, duet_kd_loss *loss, float *beta) {
    *beta = 0.5f;
    if (!strcmp(s, "kl")) *loss = DUET_KD_KL;
    else if (!strcmp(s, "rkl")) *loss = DUET_KD_RKL;
    else if (!strcmp(s, "tvd")) *loss = DUET_KD_TVD;
    else if (!strncmp(s, "jsd", 3) && (s[3] == 0 || s[3] == ':')) {
        *loss = DUET_KD_JSD;
        if (s[3] == ':') {
            char *end;
            *beta = strtof(s + 4, &end);
            if (*end || !(*beta > 0 && *beta < 1)) return DUET_EINVAL;
        }
    } else return DUET_EINVAL;
    return 0;
}

double duet_tmodel_kd_loss(duet_tmodel *m, const float *teacher_logits, const int32_t *targets,
                           const duet_kd_opts *o, int with_grad, double *div_out) {
    int N = m->cur_B * m->cur_T, V = m->cfg.n_vocab;
    float w = o->ce_weight;
    /* The divergence's gradient is accumulated after the CE gradient (which
     * overwrites), so CE goes first, into a.logits in place. */
    double ce = 0;
    float *zs = m->a.logits;
    float *copy = NULL;
    if (with_grad) { /* the KD gradient needs the raw logits the CE pass overwrites */
        copy = malloc(sizeof(float) * (size_t)N * V);
        if (!copy) return NAN;
        memcpy(copy, zs, sizeof(float) * (size_t)N * V);
        zs = copy;
        if (w > 0 && targets) ce = tl_softmax_ce(m->a.logits, zs, targets, N, V, w / N) / N;
        else memset(m->a.logits, 0, sizeof(float) * (size_t)N * V);
    } else if (w > 0 && targets) {
        ce = tl_softmax_ce(NULL, zs, targets, N, V, 0) / N;
    }
    float t2 = (o->loss == DUET_KD_TVD) ? 1.0f : o->temp * o->temp;
    double div = tl_kd_div(with_grad ? m->a.logits : NULL, zs, teacher_logits, N, V, (tl_kd_loss)o->loss, o->beta,
                           o->temp, (1.0f - w) * t2 / N) / N;
    free(copy);
    if (div_out) *div_out = div;
    return (1.0 - w) * div + w * ce;
}

/* ---- backward ------------------------------------------------------------------ */
void duet_tmodel_zero_grad(duet_tmodel *m) {
    if (m->grad_block) memset(m->grad_block, 0, sizeof(float) * m->n_params);
}

int duet_tmodel_backward(duet_tmodel *m, duet_pool *pool) {
    if (!m->grad_block || !m->cur_tok) return DUET_EINVAL;
    const duet_tconfig *c = &m->cfg;
    const int B = m->cur_B, T = m->cur_T, N = B * T, C = c->n_embd, F = c->n_ff, H = c->n_head, D = C / H;
    const int V = c->n_vocab;
    const size_t NC = (size_t)N * C, NF = (size_t)N * F, CC = (size_t)C * C, FC = (size_t)F * C;
    duet_tacts *a = &m->a;
    float *dres = m->scratch, *dln = dres + NC, *datty = dln + NC, *dq = datty + NC, *dk = dq + NC, *dv = dk + NC;
    float *dh = dv + NC, *dgate = dh + NF, *dup = dgate + NF, *datt = dup + NF;
    /* d of: logits = lnf Wout^T, lnf = rmsnorm(res[L]) */
    memset(dln, 0, sizeof(float) * NC);
    tl_linear_backward(pool, dln, m->g.output, a->logits, a->lnf, m->p.output, N, C, V);
    memset(dres, 0, sizeof(float) * NC);
    tl_rmsnorm_backward(dres, m->g.output_norm, dln, a->res + (size_t)c->n_layer * NC, m->p.output_norm, a->rstdf,
                        N, C);
    for (int l = c->n_layer - 1; l >= 0; l--) {
        float *x = a->res + l * NC, *ln1 = a->ln1 + l * NC, *q = a->q + l * NC, *k = a->k + l * NC;
        float *v = a->v + l * NC, *atty = a->atty + l * NC, *mid = a->res_mid + l * NC, *ln2 = a->ln2 + l * NC;
        float *gate = a->gate + l * NF, *up = a->up + l * NF, *hsw = a->hsw + l * NF;
        float *att = a->att + (size_t)l * B * H * T * T;
        /* dres is d xo; xo = mid + hsw Wdown^T: d mid = dres (kept), d hsw = dres Wdown */
        memset(dh, 0, sizeof(float) * NF);
        tl_linear_backward(pool, dh, m->g.w_down + l * FC, dres, hsw, m->p.w_down + l * FC, N, F, C);
        tl_swiglu_backward(dgate, dup, dh, gate, up, (int64_t)NF);
        memset(dln, 0, sizeof(float) * NC);
        tl_linear_backward(pool, dln, m->g.w_gate + l * FC, dgate, ln2, m->p.w_gate + l * FC, N, C, F);
        tl_linear_backward(pool, dln, m->g.w_up + l * FC, dup, ln2, m->p.w_up + l * FC, N, C, F);
        tl_rmsnorm_backward(dres, m->g.ffn_norm + (size_t)l * C, dln, mid, m->p.ffn_norm + (size_t)l * C,
                            a->rstd2 + (size_t)l * N, N, C);
        /* dres is d mid; mid = x + atty Wo^T: d x = dres (kept), d atty = dres Wo */
        memset(datty, 0, sizeof(float) * NC);
        tl_linear_backward(pool, datty, m->g.wo + l * CC, dres, atty, m->p.wo + l * CC, N, C, C);
        tl_attention_backward(pool, dq, dk, dv, datt, datty, att, q, k, v, B, T, H, D);
        tl_rope_backward(dq, m->rope_cos, m->rope_sin, N, T, H, D);
        tl_rope_backward(dk, m->rope_cos, m->rope_sin, N, T, H, D);
        memset(dln, 0, sizeof(float) * NC);
        tl_linear_backward(pool, dln, m->g.wq + l * CC, dq, ln1, m->p.wq + l * CC, N, C, C);
        tl_linear_backward(pool, dln, m->g.wk + l * CC, dk, ln1, m->p.wk + l * CC, N, C, C);
        tl_linear_backward(pool, dln, m->g.wv + l * CC, dv, ln1, m->p.wv + l * CC, N, C, C);
        tl_rmsnorm_backward(dres, m->g.attn_norm + (size_t)l * C, dln, x, m->p.attn_norm + (size_t)l * C,
                            a->rstd1 + (size_t)l * N, N, C);
    }
    tl_embed_backward(m->g.token_embd, dres, m->cur_tok, N, C);
    return 0;
}

double duet_tmodel_clip_grad(duet_tmodel *m, float max_norm) {
    double ss = 0;
    for (size_t i = 0; i < m->n_params; i++) ss += (double)m->grad_block[i] * m->grad_block[i];
    double norm = sqrt(ss);
    if (max_norm > 0 && norm > max_norm) {
        float s = (float)(max_norm / norm);
        for (size_t i = 0; i < m->n_params; i++) m->grad_block[i] *= s;
    }
    return norm;
}

void duet_tmodel_adamw(duet_tmodel *m, const duet_adamw *o) {
    m->step++;
    double bc1 = 1.0 - pow(o->beta1, (double)m->step), bc2 = 1.0 - pow(o->beta2, (double)m->step);
    size_t total = m->n_params, end_out = m->off[DUET_TPARAM_COUNT - 1] + m->size[DUET_TPARAM_COUNT - 1];
    for (int t = 0; t <= DUET_TPARAM_COUNT; t++) {
        size_t lo, hi;
        if (t < DUET_TPARAM_COUNT) { lo = m->off[t]; hi = lo + m->size[t]; }
        else { lo = end_out; hi = total; } /* untied output */
        int is_norm = t == 1 || t == 6 || t == 10;
        float wd = is_norm ? 0.0f : o->weight_decay;
        for (size_t i = lo; i < hi; i++) {
            float g = m->grad_block[i];
            float mm = m->m_block[i] = o->beta1 * m->m_block[i] + (1.0f - o->beta1) * g;
            float vv = m->v_block[i] = o->beta2 * m->v_block[i] + (1.0f - o->beta2) * g * g;
            float mh = (float)(mm / bc1), vh = (float)(vv / bc2);
            m->param_block[i] -= o->lr * (mh / (sqrtf(vh) + o->eps) + wd * m->param_block[i]);
        }
    }
}

float duet_lr_schedule(int64_t step, int64_t warmup, int64_t max_steps, float lr_max, float lr_min) {
    if (step < warmup) return lr_max * (float)(step + 1) / (float)warmup;
    if (step >= max_steps) return lr_min;
    double r = (double)(step - warmup) / (double)(max_steps - warmup > 0 ? max_steps - warmup : 1);
    return lr_min + 0.5f * (lr_max - lr_min) * (float)(1.0 + cos(M_PI * r));
}

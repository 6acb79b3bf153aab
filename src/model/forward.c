/* The forward pass over a block of tokens (possibly of several sequences),
 * in llama.cpp's order of operations:
 *
 *   x = token_embd[tok]
 *   per layer: xn = rmsnorm(x) * attn_norm
 *              q,k,v = xn Wq^T (+bq), xn Wk^T (+bk), xn Wv^T (+bv); rope(q), rope(k)
 *              K/V cache[pos] = k, v (rounded to the cache type)
 *              att = softmax(q K^T / sqrt(head_dim), causal) V   per head (GQA)
 *              x = x + att Wo^T (+bo)          (last layer: wanted rows only)
 *              xn = rmsnorm(x) * ffn_norm
 *              x = x + (silu(xn Wg^T) * (xn Wu^T)) Wd^T
 *   logits = (rmsnorm(x) * output_norm) Wout^T   for the wanted rows */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "duet/kernels.h"
#include "model/model_internal.h"
#include "model/ops.h"

/* ---- workspace ------------------------------------------------------------ */

static int grow(void **p, size_t bytes) {
    void *q = NULL;
    if (posix_memalign(&q, 64, bytes ? bytes : 64)) return -1;
    free(*p);
    *p = q;
    return 0;
}

void duet_workspace_free(duet_workspace *ws) {
    free(ws->x);
    free(ws->xn);
    free(ws->q);
    free(ws->k);
    free(ws->v);
    free(ws->att);
    free(ws->o);
    free(ws->gate);
    free(ws->up);
    free(ws->rope_cs);
    free(ws->bpos);
    free(ws->bseq);
    free(ws->btok);
    free(ws->brows);
    free(ws->bnext);
    free(ws->brank);
    free(ws->bdest);
    free(ws->lrow);
    free(ws->att_scratch);
    memset(ws, 0, sizeof *ws);
}

static int reserve_tokens(duet_model *m, int n, duet_err *err) {
    duet_workspace *ws = &m->ws;
    if (n <= ws->cap_tokens) return 0;
    const duet_hparams *hp = &m->hp;
    const size_t N = (size_t)n, f = sizeof(float);
    const size_t E = (size_t)hp->n_embd, QD = (size_t)hp->n_head * hp->head_dim;
    const size_t KVD = (size_t)hp->n_head_kv * hp->head_dim, F = (size_t)hp->n_ff;
    ws->cap_tokens = 0;
    if (grow((void **)&ws->x, N * E * f) || grow((void **)&ws->xn, N * E * f) || grow((void **)&ws->q, N * QD * f) ||
        grow((void **)&ws->k, N * KVD * f) || grow((void **)&ws->v, N * KVD * f) ||
        grow((void **)&ws->att, N * QD * f) || grow((void **)&ws->o, N * E * f) ||
        grow((void **)&ws->gate, N * F * f) || grow((void **)&ws->up, N * F * f) ||
        grow((void **)&ws->rope_cs, N * (size_t)hp->n_rot * f))
        return duet_err_set(err, DUET_ENOMEM, "out of memory for a block of %d tokens", n);
    ws->cap_tokens = n;
    return 0;
}

static int reserve_batch(duet_model *m, int n, duet_err *err) {
    duet_workspace *ws = &m->ws;
    if (n <= ws->cap_batch) return 0;
    ws->cap_batch = 0;
    const size_t N = (size_t)n;
    if (grow((void **)&ws->bpos, N * sizeof(int)) || grow((void **)&ws->bseq, N * sizeof(duet_seq *)) ||
        grow((void **)&ws->btok, N * sizeof(int32_t)) || grow((void **)&ws->brows, N * sizeof(int)) ||
        grow((void **)&ws->bnext, N * sizeof(int)) || grow((void **)&ws->brank, N * sizeof(int)) ||
        grow((void **)&ws->bdest, N * sizeof(int)))
        return duet_err_set(err, DUET_ENOMEM, "out of memory for a batch of %d tokens", n);
    ws->cap_batch = n;
    return 0;
}

static int reserve_attention(duet_model *m, int n_ctx, duet_err *err) {
    duet_workspace *ws = &m->ws;
    const int nth = duet_pool_size(m->pool);
    if (n_ctx <= ws->att_ctx && nth <= ws->att_threads) return 0;
    if (n_ctx < ws->att_ctx) n_ctx = ws->att_ctx;
    const size_t stride = (duet_attn_scratch_size(n_ctx, m->hp.head_dim) + 63) & ~(size_t)63;
    ws->att_ctx = ws->att_threads = 0;
    if (grow((void **)&ws->att_scratch, stride * (size_t)nth))
        return duet_err_set(err, DUET_ENOMEM, "out of memory for attention over %d positions", n_ctx);
    ws->att_ctx = n_ctx;
    ws->att_threads = nth;
    ws->att_stride = stride;
    return 0;
}

/* ---- attention over the pool ----------------------------------------------- */

typedef struct {
    const duet_model *m;
    int il, n;
    int single;       /* every query row in the one-token arithmetic */
    duet_seq *const *seq;
    const int *pos;
    const float *q;   /* (n, q_dim) */
    float *att;       /* (n, q_dim) */
} attn_task;

/* The cache of token i's sequence for head h (n_kv: token i's own). */
static duet_attn_args attn_args(const attn_task *t, int i, int h) {
    const duet_hparams *hp = &t->m->hp;
    const int HD = hp->head_dim, KVD = hp->n_head_kv * HD;
    const duet_seq *s = t->seq[i];
    const size_t layer = (size_t)t->il * s->layer_stride, kvh = (size_t)(h / (hp->n_head / hp->n_head_kv));
    return (duet_attn_args){
        .head_dim = HD,
        .n_kv = t->pos[i] + 1,
        .single = t->single,
        .n_kv_pad = duet_attn_kv_pad(t->pos[i]),
        .kv_f16 = s->elt == 2,
        .k = (const char *)s->k + (layer + kvh * HD) * s->elt,
        .v = (const char *)s->v + (layer + kvh * HD * (size_t)s->n_ctx) * s->elt,
        .k_stride = (size_t)KVD,
        .v_stride = (size_t)s->n_ctx,
        .scale = 1.0f / sqrtf((float)HD),
    };
}

static void attn_run(void *ctx, int ith, int nth) {
    const attn_task *t = ctx;
    const int NH = t->m->hp.n_head, HD = t->m->hp.head_dim, QD = NH * HD;
    void *scratch = t->m->ws.att_scratch + (size_t)ith * t->m->ws.att_stride;
    /* items are (group, head), a group being up to DUET_ATTN_MAX_Q
     * consecutive tokens of one sequence, so that the cache rows are loaded
     * once per group (in either arithmetic: duet_attn_heads gives each query
     * duet_attn_head's bits); interleaved items balance the causal triangle
     * across threads */
    int item = 0;
    for (int i = 0, nq; i < t->n; i += nq) {
        int n_kv[DUET_ATTN_MAX_Q], n_kv_pad[DUET_ATTN_MAX_Q];
        for (nq = 0; nq < DUET_ATTN_MAX_Q && i + nq < t->n && t->seq[i + nq] == t->seq[i]; nq++) {
            n_kv[nq] = t->pos[i + nq] + 1;
            n_kv_pad[nq] = duet_attn_kv_pad(t->pos[i + nq]);
        }
        for (int h = 0; h < NH; h++, item++) {
            if (item % nth != ith) continue;
            const duet_attn_args a = attn_args(t, i, h);
            duet_attn_heads(t->att + (size_t)i * QD + (size_t)h * HD, (size_t)QD, t->q + (size_t)i * QD + (size_t)h * HD,
                            (size_t)QD, nq, n_kv, n_kv_pad, &a, scratch);
        }
    }
}

/* ---- pieces ------------------------------------------------------------------ */

/* The model's matmul: duet_matmul_packed (repacked weights where the model
 * has them; decode-consistent when asked), unless a test swapped the matmul:
 * then that one. */
static void matmul(duet_model *m, float *y, const duet_weight *w, const float *x, int n, int consistent) {
    if (m->matmul == duet_matmul)
        duet_matmul_packed(m->pool, y, w->type, w->data, w->packed, x, n, w->n_in, w->n_out, consistent);
    else
        m->matmul(m->pool, y, w->type, w->data, x, n, w->n_in, w->n_out);
}

static void linear(duet_model *m, float *y, const duet_weight *w, const float *bias, const float *x, int n,
                   int consistent) {
    matmul(m, y, w, x, n, consistent);
    if (bias)
        for (int i = 0; i < n; i++)
            for (int64_t d = 0; d < w->n_out; d++) y[(size_t)i * w->n_out + d] += bias[d];
}

/* K row at pos; V column at pos of the transposed V. */
static void store_kv(duet_seq *s, int il, int pos, const float *k, const float *v, int kvd) {
    const size_t layer = (size_t)il * s->layer_stride, koff = layer + (size_t)pos * kvd;
    const size_t n_ctx = (size_t)s->n_ctx;
    if (s->elt == 2) {
        uint16_t *kd = (uint16_t *)s->k + koff, *vd = (uint16_t *)s->v + layer + (size_t)pos;
        for (int d = 0; d < kvd; d++) {
            kd[d] = duet_f32_to_f16(k[d]);
            vd[(size_t)d * n_ctx] = duet_f32_to_f16(v[d]);
        }
    } else {
        float *vd = (float *)s->v + layer + (size_t)pos;
        memcpy((float *)s->k + koff, k, (size_t)kvd * sizeof(float));
        for (int d = 0; d < kvd; d++) vd[(size_t)d * n_ctx] = v[d];
    }
}

static void add_rows(float *x, const float *o, size_t count) {
    for (size_t i = 0; i < count; i++) x[i] = o[i] + x[i];
}

int duet_forward(duet_model *m, int n, const int32_t *tok, duet_seq *const *seq, const int *pos,
                 const int *out_rows, int n_out, float *logits, float *hidden, int consistent, duet_err *err) {
    const duet_hparams *hp = &m->hp;
    const int E = hp->n_embd, HD = hp->head_dim, QD = hp->n_head * HD, KVD = hp->n_head_kv * HD;
    const int F = hp->n_ff, NR = hp->n_rot;
    int max_ctx = 0;
    for (int i = 0; i < n; i++) max_ctx = pos[i] + 1 > max_ctx ? pos[i] + 1 : max_ctx;
    int rc;
    if ((rc = reserve_tokens(m, n, err)) || (rc = reserve_attention(m, max_ctx, err))) return rc;
    duet_workspace *ws = &m->ws;
    float *x = ws->x, *xn = ws->xn;

    for (int i = 0; i < n; i++)
        duet_dequantize_row(m->tok_embd.type, (const char *)m->tok_embd.data + (size_t)tok[i] * m->tok_embd.row_size,
                            x + (size_t)i * E, E);
    for (int i = 0; i < n; i++)
        duet_rope_cache(ws->rope_cs + (size_t)i * NR, pos[i], NR, hp->rope_freq_base, hp->rope_freq_scale,
                        m->rope_freqs);

    int rows = n; /* rows of x still carried (the last layer keeps only wanted ones) */
    for (int il = 0; il < hp->n_layer; il++) {
        const duet_layer *L = &m->layers[il];
        const int last = il == hp->n_layer - 1;
        for (int i = 0; i < n; i++) duet_rms_norm(xn + (size_t)i * E, x + (size_t)i * E, L->attn_norm, E, hp->rms_eps);
        linear(m, ws->q, &L->wq, L->bq, xn, n, consistent);
        linear(m, ws->k, &L->wk, L->bk, xn, n, consistent);
        linear(m, ws->v, &L->wv, L->bv, xn, n, consistent);
        for (int i = 0; i < n; i++) {
            const float *cs = ws->rope_cs + (size_t)i * NR;
            for (int h = 0; h < hp->n_head; h++)
                duet_rope_apply(ws->q + (size_t)i * QD + (size_t)h * HD, cs, NR, hp->rope_type == DUET_ROPE_NEOX);
            for (int h = 0; h < hp->n_head_kv; h++)
                duet_rope_apply(ws->k + (size_t)i * KVD + (size_t)h * HD, cs, NR, hp->rope_type == DUET_ROPE_NEOX);
            store_kv(seq[i], il, pos[i], ws->k + (size_t)i * KVD, ws->v + (size_t)i * KVD, KVD);
        }
        if (last && n_out == 0) break; /* the caches are complete; nothing else is read */

        attn_task t = {.m = m, .il = il, .n = n, .single = n == 1 || consistent, .seq = seq, .pos = pos,
                       .q = ws->q, .att = ws->att};
        duet_pool_run(m->pool, attn_run, &t);
        linear(m, ws->o, &L->wo, L->bo, ws->att, n, consistent);

        if (last && n_out < n) {
            /* as llama.cpp: keep the wanted rows after the attention output */
            for (int r = 0; r < n_out; r++) {
                memmove(x + (size_t)r * E, x + (size_t)out_rows[r] * E, (size_t)E * sizeof(float));
                memmove(ws->o + (size_t)r * E, ws->o + (size_t)out_rows[r] * E, (size_t)E * sizeof(float));
            }
            rows = n_out;
        }
        add_rows(x, ws->o, (size_t)rows * E);

        for (int i = 0; i < rows; i++) duet_rms_norm(xn + (size_t)i * E, x + (size_t)i * E, L->ffn_norm, E, hp->rms_eps);
        linear(m, ws->gate, &L->gate, NULL, xn, rows, consistent);
        linear(m, ws->up, &L->up, NULL, xn, rows, consistent);
        for (int i = 0; i < rows; i++)
            duet_swiglu(ws->gate + (size_t)i * F, ws->gate + (size_t)i * F, ws->up + (size_t)i * F, F);
        linear(m, ws->o, &L->down, NULL, ws->gate, rows, consistent);
        add_rows(x, ws->o, (size_t)rows * E);
    }
    if (n_out == 0) return 0;
    for (int i = 0; i < n_out; i++) duet_rms_norm(xn + (size_t)i * E, x + (size_t)i * E, m->output_norm, E, hp->rms_eps);
    if (hidden) memcpy(hidden, xn, sizeof *xn * (size_t)n_out * (size_t)E);
    matmul(m, logits, &m->output, xn, n_out, consistent);
    return 0;
}

/* ---- public entry points ------------------------------------------------------- */

/* The batch is either seqs[] (one per token) or one sequence for all; the
 * wanted rows either want[] or the last n_last tokens. */
static inline int wanted(const uint8_t *want, int n_last, int n, int i) {
    return want ? want[i] != 0 : i >= n - n_last;
}

/* Moves row r of rows (n, width) to row dest[r], in place (dest is a
 * permutation; it is consumed: every entry ends as its own index). */
static void permute_rows(float *rows, int *dest, int n, size_t width, float *tmp) {
    const size_t bytes = width * sizeof(float);
    for (int r = 0; r < n; r++) {
        if (dest[r] == r) continue;
        /* tmp carries the row that belongs at dest[j] round the cycle */
        memcpy(tmp, rows + (size_t)r * width, bytes);
        for (int j = r; dest[j] != j;) {
            const int d = dest[j];
            dest[j] = j;
            for (size_t c = 0; c < width; c++) {
                const float t = rows[(size_t)d * width + c];
                rows[(size_t)d * width + c] = tmp[c];
                tmp[c] = t;
            }
            j = d;
        }
    }
}

/* The batch is either seqs[] (one per token) or one sequence for all
 * (duet_eval); the wanted rows either want[] or the last n_last tokens.
 *
 * Every row must come out as its sequence's tokens of this batch evaluated
 * alone (model.h). The arithmetic of a decode-consistent row depends on
 * nothing but its token and its cache, so the rows of every sequence in that
 * mode share one pass; the batched arithmetic of the default mode depends on
 * the pass's row count (GEMM kernels are picked by it), so each default-mode
 * sequence gets a pass of its own, split at n_ubatch like duet_eval. The
 * passes are laid out one after another ("pass order": each sequence's
 * tokens in batch order, passes ordered by their first token), and wanted
 * rows are written in pass order and then moved to batch order in place.
 * One sequence's block (duet_eval) is a single pass already in batch order. */
static int eval_core(duet_model *m, int n, const int32_t *tok, duet_seq *const *seqs, duet_seq *single,
                     const uint8_t *want, int n_last, float *logits, float *hidden, duet_err *err) {
    if (n < 0) return duet_err_set(err, DUET_EINVAL, "negative token count %d", n);
    if (n == 0) return 0;
    if (!tok) return duet_err_set(err, DUET_EINVAL, "NULL token array");
    int n_want = 0;
    for (int i = 0; i < n; i++) {
        duet_seq *s = seqs ? seqs[i] : single;
        if (!s) return duet_err_set(err, DUET_EINVAL, "token %d has no sequence", i);
        if (s->model != m) return duet_err_set(err, DUET_EINVAL, "token %d: its sequence belongs to another model", i);
        if (tok[i] < 0 || tok[i] >= m->hp.n_vocab)
            return duet_err_set(err, DUET_ERANGE, "token %d: id %d is out of range [0, %d)", i, (int)tok[i], m->hp.n_vocab);
        s->batch_count = 0;
        n_want += wanted(want, n_last, n, i);
    }
    if (n_want && !logits) return duet_err_set(err, DUET_EINVAL, "logits requested but the output buffer is NULL");
    for (int i = 0; i < n; i++) {
        duet_seq *s = seqs ? seqs[i] : single;
        if (s->pos + ++s->batch_count > s->n_ctx)
            return duet_err_set(err, DUET_ERANGE, "context full: the sequence holds %d of %d positions, %d more do not fit",
                                s->pos, s->n_ctx, seqs ? s->batch_count : n);
    }

    pthread_mutex_lock(&m->eval_lock);
    duet_workspace *ws = &m->ws;
    const size_t V = (size_t)m->hp.n_vocab;
    int rc = reserve_batch(m, n, err);
    if (rc) goto done;
    int permute = 0; /* wanted rows come out of the passes in another order than the batch's */
    if (single) {
        for (int i = 0, r = 0; i < n; i++) {
            ws->bseq[i] = single;
            ws->bpos[i] = single->pos + i;
            if (wanted(want, n_last, n, i)) ws->brows[r++] = i;
        }
    } else {
        /* chain each token to the next token of its pass (bnext), and note
         * each wanted token's row in batch order (brank) */
        int cons_last = -1;
        for (int i = 0; i < n; i++) seqs[i]->batch_last = -1, seqs[i]->batch_count = 0;
        for (int i = 0, q = 0; i < n; i++) {
            duet_seq *s = seqs[i];
            int *last = s->decode_consistent ? &cons_last : &s->batch_last;
            ws->bnext[i] = -1;
            if (*last >= 0) ws->bnext[*last] = i;
            *last = i;
            ws->brank[i] = wanted(want, n_last, n, i) ? q++ : -1;
        }
        /* lay the passes out: a token not placed yet heads its pass (the
         * chains run in batch order) */
        for (int i = 0, j = 0, r = 0; i < n; i++) {
            if (ws->bnext[i] == -2) continue;
            for (int k = i; k >= 0; j++) {
                const int next = ws->bnext[k];
                duet_seq *s = seqs[k];
                ws->bnext[k] = -2; /* placed */
                ws->bseq[j] = s;
                ws->bpos[j] = s->pos + s->batch_count++;
                ws->btok[j] = tok[k];
                if (ws->brank[k] >= 0) {
                    ws->brows[r] = j;
                    ws->bdest[r] = ws->brank[k];
                    permute |= ws->brank[k] != r;
                    r++;
                }
                k = next;
            }
        }
    }

    /* everything the passes need, before the first one writes a cache */
    int max_ctx = 0;
    for (int j = 0; j < n; j++) max_ctx = ws->bpos[j] + 1 > max_ctx ? ws->bpos[j] + 1 : max_ctx;
    if ((rc = reserve_tokens(m, n < m->n_ubatch ? n : m->n_ubatch, err)) || (rc = reserve_attention(m, max_ctx, err)))
        goto done;
    const size_t E = (size_t)m->hp.n_embd;
    if (permute && !ws->lrow && grow((void **)&ws->lrow, (V > E ? V : E) * sizeof(float))) {
        rc = duet_err_set(err, DUET_ENOMEM, "out of memory for a logits row");
        goto done;
    }

    const int32_t *ptok = single ? tok : ws->btok;
    int done_rows = 0;
    for (int p0 = 0, p1; p0 < n; p0 = p1) {
        /* a pass: the decode-consistent tokens, or one sequence's */
        const duet_seq *s0 = ws->bseq[p0];
        const int consistent = s0->decode_consistent;
        for (p1 = p0 + 1; p1 < n && (consistent ? ws->bseq[p1]->decode_consistent : ws->bseq[p1] == s0); p1++) {
        }
        for (int start = p0; start < p1; start += m->n_ubatch) {
            const int len = p1 - start < m->n_ubatch ? p1 - start : m->n_ubatch;
            int first = done_rows, cnt = 0;
            while (first + cnt < n_want && ws->brows[first + cnt] < start + len) cnt++;
            for (int r = 0; r < cnt; r++) ws->brows[first + r] -= start;
            rc = duet_forward(m, len, ptok + start, ws->bseq + start, ws->bpos + start, ws->brows + first, cnt,
                              cnt ? logits + (size_t)first * V : NULL, cnt && hidden ? hidden + (size_t)first * E : NULL,
                              consistent, err);
            if (rc) goto done; /* not reached: everything is reserved */
            done_rows += cnt;
        }
    }
    if (permute && hidden) { /* permute_rows consumes the permutation: the hidden rows take a copy */
        memcpy(ws->brank, ws->bdest, sizeof *ws->bdest * (size_t)n_want);
        permute_rows(hidden, ws->brank, n_want, E, ws->lrow);
    }
    if (permute) permute_rows(logits, ws->bdest, n_want, V, ws->lrow);
    for (int j = 0; j < n; j++) {
        duet_seq *s = ws->bseq[j];
        if (s->batch_count) {
            s->pos += s->batch_count;
            s->batch_count = 0;
        }
    }
done:
    pthread_mutex_unlock(&m->eval_lock);
    return rc;
}

int duet_eval(duet_seq *s, const int32_t *tok, int n, float *logits, int n_logits, duet_err *err) {
    if (!s) return duet_err_set(err, DUET_EINVAL, "duet_eval: NULL sequence");
    if (n_logits < 0 || n_logits > (n > 0 ? n : 0))
        return duet_err_set(err, DUET_EINVAL, "duet_eval: n_logits %d is outside [0, %d]", n_logits, n > 0 ? n : 0);
    return eval_core(s->model, n, tok, NULL, s, NULL, n_logits, logits, NULL, err);
}

int duet_eval_hidden(duet_seq *s, const int32_t *tok, int n, float *logits, float *hidden, int n_out, duet_err *err) {
    if (!s) return duet_err_set(err, DUET_EINVAL, "duet_eval_hidden: NULL sequence");
    if (n_out < 0 || n_out > (n > 0 ? n : 0))
        return duet_err_set(err, DUET_EINVAL, "duet_eval_hidden: n_out %d is outside [0, %d]", n_out, n > 0 ? n : 0);
    if (n_out && !hidden) return duet_err_set(err, DUET_EINVAL, "duet_eval_hidden: NULL hidden buffer");
    if (n_out && !logits) /* the output matrix's rows are computed anyway: a scratch home for them */
        return duet_err_set(err, DUET_EINVAL, "duet_eval_hidden: NULL logits buffer");
    return eval_core(s->model, n, tok, NULL, s, NULL, n_out, logits, hidden, err);
}

int duet_eval_batch(duet_model *m, const duet_batch *b, duet_err *err) {
    if (!m || !b) return duet_err_set(err, DUET_EINVAL, "duet_eval_batch: NULL argument");
    if (b->n_tokens > 0 && !b->seqs) return duet_err_set(err, DUET_EINVAL, "duet_eval_batch: NULL sequence array");
    return eval_core(m, b->n_tokens, b->tokens, b->seqs, NULL, b->want, 0, b->logits, b->hidden, err);
}

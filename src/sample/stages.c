/* The stages of the sampler chain, each behind the duet_sampler_stage_i hooks.
 * They work on a candidate list and only ever shrink it or change logits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sample/stages.h"

/* ---- shared helpers --------------------------------------------------------*/

static int cmp_logit_desc(const void *a, const void *b) {
    float x = ((const duet_candidate *)a)->logit, y = ((const duet_candidate *)b)->logit;
    if (x != y) return x > y ? -1 : 1;
    int32_t i = ((const duet_candidate *)a)->id, j = ((const duet_candidate *)b)->id;
    return (i > j) - (i < j); /* ties: lower id first, so results never depend on qsort */
}

static int before(const duet_candidate *a, const duet_candidate *b) { return cmp_logit_desc(a, b) < 0; }

/* Moves the k best candidates to the front (unordered): quickselect, O(n). */
static void select_top(duet_candidate *d, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        duet_candidate pivot = d[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (before(&d[i], &pivot)) i++;
            while (before(&pivot, &d[j])) j--;
            if (i <= j) {
                duet_candidate t = d[i]; d[i] = d[j]; d[j] = t;
                i++, j--;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

void duet_candidates_sort(duet_candidates *c) {
    if (!c->sorted) qsort(c->data, (size_t)c->n, sizeof *c->data, cmp_logit_desc);
    c->sorted = 1;
}

void duet_candidates_softmax(duet_candidates *c) {
    float mx = -INFINITY;
    for (int i = 0; i < c->n; i++) if (c->data[i].logit > mx) mx = c->data[i].logit;
    double sum = 0;
    for (int i = 0; i < c->n; i++) sum += (c->data[i].p = expf(c->data[i].logit - mx));
    for (int i = 0; i < c->n; i++) c->data[i].p = (float)(c->data[i].p / sum);
}

static duet_sampler_stage *stage_new(const duet_sampler_stage_i *iface, void *ctx) {
    duet_sampler_stage *st = calloc(1, sizeof *st);
    if (!st) { free(ctx); return NULL; }
    st->iface = iface;
    st->ctx = ctx;
    return st;
}

static void free_ctx(duet_sampler_stage *st) { free(st->ctx); }

/* ---- top-k -----------------------------------------------------------------*/

static void top_k_apply(duet_sampler_stage *st, duet_candidates *c) {
    int k = *(int *)st->ctx;
    if (k <= 0 || k >= c->n) return;
    if (!c->sorted) {
        select_top(c->data, c->n, k);
        qsort(c->data, (size_t)k, sizeof *c->data, cmp_logit_desc);
        c->sorted = 1;
    }
    c->n = k;
}

static const duet_sampler_stage_i top_k_i = {"top-k", top_k_apply, NULL, NULL, free_ctx};

duet_sampler_stage *duet_stage_top_k(int k) {
    int *ctx = malloc(sizeof *ctx);
    if (!ctx) return NULL;
    *ctx = k;
    return stage_new(&top_k_i, ctx);
}

/* ---- top-p (nucleus): the smallest prefix whose mass reaches p --------------*/

static void top_p_apply(duet_sampler_stage *st, duet_candidates *c) {
    float p = *(float *)st->ctx;
    if (p >= 1.0f) return;
    duet_candidates_sort(c);
    duet_candidates_softmax(c);
    double cum = 0;
    for (int i = 0; i < c->n; i++) {
        cum += c->data[i].p;
        if (cum >= p) { c->n = i + 1; return; }
    }
}

static const duet_sampler_stage_i top_p_i = {"top-p", top_p_apply, NULL, NULL, free_ctx};

duet_sampler_stage *duet_stage_top_p(float p) {
    float *ctx = malloc(sizeof *ctx);
    if (!ctx) return NULL;
    *ctx = p;
    return stage_new(&top_p_i, ctx);
}

/* ---- min-p: keep tokens with p >= min_p * p_max, i.e. logit >= max + log(min_p) */

static void min_p_apply(duet_sampler_stage *st, duet_candidates *c) {
    float mp = *(float *)st->ctx;
    if (mp <= 0 || c->n == 0) return;
    float mx = -INFINITY;
    for (int i = 0; i < c->n; i++) if (c->data[i].logit > mx) mx = c->data[i].logit;
    float cut = mx + logf(mp);
    int kept = 0;
    for (int i = 0; i < c->n; i++)
        if (c->data[i].logit >= cut) c->data[kept++] = c->data[i]; /* order preserved */
    c->n = kept;
}

static const duet_sampler_stage_i min_p_i = {"min-p", min_p_apply, NULL, NULL, free_ctx};

duet_sampler_stage *duet_stage_min_p(float p) {
    float *ctx = malloc(sizeof *ctx);
    if (!ctx) return NULL;
    *ctx = p;
    return stage_new(&min_p_i, ctx);
}

/* ---- temperature -----------------------------------------------------------*/

static void temp_apply(duet_sampler_stage *st, duet_candidates *c) {
    float t = *(float *)st->ctx;
    for (int i = 0; i < c->n; i++) c->data[i].logit /= t;
}

static const duet_sampler_stage_i temp_i = {"temperature", temp_apply, NULL, NULL, free_ctx};

duet_sampler_stage *duet_stage_temp(float t) {
    float *ctx = malloc(sizeof *ctx);
    if (!ctx) return NULL;
    *ctx = t;
    return stage_new(&temp_i, ctx);
}

/* ---- penalties over the last N emitted tokens -------------------------------*/

typedef struct {
    float repeat, freq, presence;
    int last_n, n_vocab;
    int32_t *ring; /* (last_n) */
    int ring_len, ring_head;
    int *count;    /* (n_vocab) occurrences inside the window */
} penalties;

static void penalties_apply(duet_sampler_stage *st, duet_candidates *c) {
    penalties *pe = st->ctx;
    if (pe->ring_len == 0) return;
    for (int i = 0; i < c->n; i++) {
        int n = pe->count[c->data[i].id];
        if (n == 0) continue;
        float *l = &c->data[i].logit;
        /* llama.cpp's rule: dividing a negative logit would raise it. */
        *l = *l > 0 ? *l / pe->repeat : *l * pe->repeat;
        *l -= (float)n * pe->freq + pe->presence;
    }
    c->sorted = 0;
}

static void penalties_accept(duet_sampler_stage *st, int32_t tok) {
    penalties *pe = st->ctx;
    if (pe->last_n <= 0 || tok < 0 || tok >= pe->n_vocab) return;
    if (pe->ring_len == pe->last_n) { /* window full: evict the oldest */
        pe->count[pe->ring[pe->ring_head]]--;
        pe->ring_head = (pe->ring_head + 1) % pe->last_n;
        pe->ring_len--;
    }
    pe->ring[(pe->ring_head + pe->ring_len) % pe->last_n] = tok;
    pe->ring_len++;
    pe->count[tok]++;
}

static void penalties_reset(duet_sampler_stage *st) {
    penalties *pe = st->ctx;
    memset(pe->count, 0, sizeof *pe->count * (size_t)pe->n_vocab);
    pe->ring_len = pe->ring_head = 0;
}

static void penalties_free(duet_sampler_stage *st) {
    penalties *pe = st->ctx;
    if (pe) { free(pe->ring); free(pe->count); }
    free(pe);
}

static const duet_sampler_stage_i penalties_i = {"penalties", penalties_apply, penalties_accept,
                                                 penalties_reset, penalties_free};

duet_sampler_stage *duet_stage_penalties(float repeat, float freq, float presence, int last_n, int n_vocab) {
    penalties *pe = calloc(1, sizeof *pe);
    if (!pe) return NULL;
    *pe = (penalties){repeat, freq, presence, last_n, n_vocab, NULL, 0, 0, NULL};
    pe->ring = malloc(sizeof *pe->ring * (size_t)(last_n > 0 ? last_n : 1));
    pe->count = calloc((size_t)n_vocab, sizeof *pe->count);
    if (!pe->ring || !pe->count) { free(pe->ring); free(pe->count); free(pe); return NULL; }
    return stage_new(&penalties_i, pe);
}

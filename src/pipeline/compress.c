/* Prompt compression: the SLM's surprisal per token, then the most
 * surprising tokens kept (include/duet/compress.h has the rule). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "duet/compress.h"

duet_compress_params duet_compress_default_params(void) {
    return (duet_compress_params){.keep_ratio = 0.5, .keep_head = 1, .keep_tail = 8, .segment = 0};
}

int duet_compress_check(const duet_compress_params *p, duet_err *err) {
    if (!p) return duet_err_set(err, DUET_EINVAL, "compress: no parameters");
    if (!(p->keep_ratio > 0 && p->keep_ratio <= 1)) /* also rejects NAN */
        return duet_err_set(err, DUET_EINVAL, "compress: keep_ratio %g outside (0, 1]", p->keep_ratio);
    if (p->keep_head < 0) return duet_err_set(err, DUET_EINVAL, "compress: keep_head %d < 0", p->keep_head);
    if (p->keep_tail < 0) return duet_err_set(err, DUET_EINVAL, "compress: keep_tail %d < 0", p->keep_tail);
    if (p->segment < 0) return duet_err_set(err, DUET_EINVAL, "compress: segment %d < 0", p->segment);
    return 0;
}

int duet_compress_n_kept(int n, const duet_compress_params *p) {
    if (n < 0 || duet_compress_check(p, NULL) < 0) return -1;
    /* head + tail in 64 bits: both may be INT_MAX ("keep everything") */
    const int64_t forced = (int64_t)p->keep_head + p->keep_tail < n ? (int64_t)p->keep_head + p->keep_tail : n;
    /* the tolerance keeps 0.7 * 10 (7.000000000000001 in doubles) at 7 */
    int64_t want = (int64_t)ceil(p->keep_ratio * n - 1e-6);
    if (want < forced) want = forced;
    return (int)(want < n ? want : n);
}

typedef struct {
    float s; /* surprisal, nats */
    int i;   /* position */
} ranked;

/* Most surprising first; NAN last; ties to the earlier position. */
static int by_surprisal(const void *pa, const void *pb) {
    const ranked *a = pa, *b = pb;
    const int na = isnan(a->s), nb = isnan(b->s);
    if (na != nb) return na - nb;
    if (!na && a->s != b->s) return a->s > b->s ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* Marks the k most surprising of positions [lo, hi) in keep. */
static int keep_top(const float *surprisal, int lo, int hi, int k, unsigned char *keep) {
    ranked *cand = malloc(sizeof *cand * (size_t)(hi - lo + 1)); /* (hi - lo) */
    if (!cand) return DUET_ENOMEM;
    for (int i = lo; i < hi; i++) cand[i - lo] = (ranked){surprisal[i], i};
    qsort(cand, (size_t)(hi - lo), sizeof *cand, by_surprisal);
    for (int j = 0; j < k; j++) keep[cand[j].i] = 1;
    free(cand);
    return 0;
}

/* The candidates for dropping, [*lo, *hi) (empty when head + tail cover the
 * prompt), and how many of them are kept. */
static int candidates(int n, const duet_compress_params *p, int *lo, int *hi) {
    *lo = p->keep_head < n ? p->keep_head : n;
    *hi = n - p->keep_tail > *lo ? n - p->keep_tail : *lo;
    return duet_compress_n_kept(n, p) - (n - (*hi - *lo));
}

/* Positions of keep, increasing, into index; returns their count. */
static int kept_positions(const unsigned char *keep, int n, int *index) {
    int m = 0;
    for (int i = 0; i < n; i++)
        if (keep[i]) index[m++] = i;
    return m;
}

int duet_compress_select(const float *surprisal, int n, const duet_compress_params *p, int *index, duet_err *err) {
    int rc = duet_compress_check(p, err);
    if (rc < 0) return rc;
    if (n < 1) return duet_err_set(err, DUET_EINVAL, "compress: empty prompt");
    if (!surprisal || !index) return duet_err_set(err, DUET_EINVAL, "compress: NULL surprisal or index");
    int lo, hi;
    const int budget = candidates(n, p, &lo, &hi);
    unsigned char *keep = calloc((size_t)n, 1); /* (n) 1: kept */
    if (!keep || keep_top(surprisal, lo, hi, budget, keep) < 0) {
        free(keep);
        return duet_err_set(err, DUET_ENOMEM, "compress: out of memory for %d tokens", n);
    }
    for (int i = 0; i < n; i++) keep[i] |= i < lo || i >= hi;
    const int m = kept_positions(keep, n, index);
    free(keep);
    return m;
}

/* The segmented variant (compress.h, `segment`): fills surprisal (n) and
 * index (n; the kept positions), returns n_kept. The lm is left holding its
 * position plus the kept tokens before the tail; the caller rolls back. */
static int compress_segmented(duet_lm *slm, const int32_t *tok, int n, const duet_compress_params *p,
                              float *surprisal, int *index, duet_err *err) {
    int lo, hi;
    const int64_t budget = candidates(n, p, &lo, &hi), n_cand = hi - lo;
    unsigned char *keep = calloc((size_t)n, 1);                   /* (n) 1: kept */
    int32_t *block = malloc(sizeof *block * (size_t)(n + 1));     /* (n + 1) the last kept token + a segment */
    float *lp = malloc(sizeof *lp * (size_t)(n + 1));             /* (n + 1) log-probabilities of block */
    int rc = keep && block && lp ? 0 : duet_err_set(err, DUET_ENOMEM, "compress: out of memory for %d tokens", n);
    for (int i = 0; i < n; i++) surprisal[i] = NAN;
    if (!rc && lo > 0) { /* the head, always kept: the context of the first segment */
        rc = duet_lm_score(slm, tok, lo, lp, 0, NULL, NULL, err);
        for (int i = 1; !rc && i < lo; i++) surprisal[i] = -lp[i];
    }
    int32_t last = lo > 0 ? tok[lo - 1] : -1; /* the last token the lm holds of this prompt */
    for (int a = lo, b; !rc && a < hi; a = b) {
        b = a + p->segment < hi ? a + p->segment : hi;
        /* this segment's share of the budget, rounded so that the shares add up to it */
        const int k = (int)((2 * budget * (b - lo) + n_cand) / (2 * n_cand) - (2 * budget * (a - lo) + n_cand) / (2 * n_cand));
        const int pos = duet_lm_pos(slm);
        /* score [last, segment] from last's own position: the row after last predicts tok[a] */
        const int with_last = last >= 0;
        if (with_last) block[0] = last;
        memcpy(block + with_last, tok + a, sizeof *block * (size_t)(b - a));
        if ((rc = duet_lm_rollback(slm, pos - with_last, err)) < 0) break;
        if ((rc = duet_lm_score(slm, block, b - a + with_last, lp, 0, NULL, NULL, err)) < 0) break;
        for (int i = a + !with_last; i < b; i++) surprisal[i] = -lp[i - a + with_last];
        if ((rc = keep_top(surprisal, a, b, k, keep)) < 0) {
            rc = duet_err_set(err, rc, "compress: out of memory");
            break;
        }
        /* the lm goes on with the compressed segment: what the next one is scored after */
        if ((rc = duet_lm_rollback(slm, pos, err)) < 0) break;
        int m = 0;
        for (int i = a; i < b; i++)
            if (keep[i]) block[m++] = tok[i];
        if (m && (rc = duet_lm_score(slm, block, m, lp, 0, NULL, NULL, err)) < 0) break;
        if (m) last = block[m - 1];
    }
    int n_kept = rc;
    if (!rc) {
        for (int i = 0; i < n; i++) keep[i] |= i < lo || i >= hi;
        n_kept = kept_positions(keep, n, index);
    }
    free(keep);
    free(block);
    free(lp);
    return n_kept;
}

void duet_compress_result_free(duet_compress_result *r) {
    if (!r) return;
    free(r->ids);
    free(r->index);
    free(r->surprisal);
    memset(r, 0, sizeof *r);
}

int duet_compress_tokens(duet_lm *slm, const int32_t *tok, int n, const duet_compress_params *p,
                         duet_compress_result *out, duet_err *err) {
    if (!out) return duet_err_set(err, DUET_EINVAL, "compress: NULL result");
    memset(out, 0, sizeof *out);
    int rc = duet_compress_check(p, err);
    if (rc < 0) return rc;
    if (!slm) return duet_err_set(err, DUET_EINVAL, "compress: no SLM");
    if (n < 1 || !tok) return duet_err_set(err, DUET_EINVAL, "compress: empty prompt");
    if (!(duet_lm_caps(slm) & DUET_LM_CAP_SCORE))
        return duet_err_set(err, DUET_EINVAL, "compress: %s cannot score tokens (no log-probabilities)", slm->name);
    const int pos0 = duet_lm_pos(slm), n_ctx = duet_lm_n_ctx(slm);
    if (n > n_ctx - pos0)
        return duet_err_set(err, DUET_ERANGE, "compress: a prompt of %d tokens does not fit %s's context (%d of %d free)",
                            n, slm->name, n_ctx - pos0, n_ctx);
    float *logprob = malloc(sizeof *logprob * (size_t)n); /* (n) log p(tok_i | tok_<i); [0] NAN */
    int *index = malloc(sizeof *index * (size_t)n);        /* (n) kept positions, the first n_kept used */
    int32_t *ids = NULL;
    if (!logprob || !index) {
        rc = duet_err_set(err, DUET_ENOMEM, "compress: out of memory for %d tokens", n);
        goto fail;
    }
    int n_kept;
    if (p->segment > 0) {
        n_kept = compress_segmented(slm, tok, n, p, logprob, index, err);
    } else {
        n_kept = duet_lm_score(slm, tok, n, logprob, 0, NULL, NULL, err);
        logprob[0] = NAN; /* no row before tok_0 is kept, whatever the lm held */
        for (int i = 1; i < n; i++) logprob[i] = -logprob[i]; /* now the surprisal */
        if (!n_kept) n_kept = duet_compress_select(logprob, n, p, index, err);
    }
    if (n_kept < 0) {
        rc = n_kept;
        if (err && strncmp(err->msg, "compress", 8)) duet_err_prefix(err, "compress"); /* the lm's own message */
        goto fail;
    }
    if ((rc = duet_lm_rollback(slm, pos0, err)) < 0) goto fail;
    if (!(ids = malloc(sizeof *ids * (size_t)n_kept))) {
        rc = duet_err_set(err, DUET_ENOMEM, "compress: out of memory");
        goto fail;
    }
    for (int k = 0; k < n_kept; k++) ids[k] = tok[index[k]];
    *out = (duet_compress_result){.n_in = n, .n_kept = n_kept, .ids = ids, .index = index, .surprisal = logprob};
    return 0;
fail:
    /* leave the lm as it was found (a failed local eval changed nothing; a remote one may have) */
    if (duet_lm_pos(slm) > pos0) duet_lm_rollback(slm, pos0, NULL);
    free(logprob);
    free(index);
    free(ids);
    return rc;
}

int duet_compress_text(duet_lm *slm, const duet_vocab *vocab, const char *text, size_t len,
                       const duet_compress_params *p, char **out_text, duet_compress_result *result, duet_err *err) {
    if (result) memset(result, 0, sizeof *result);
    if (!out_text) return duet_err_set(err, DUET_EINVAL, "compress: NULL out_text");
    *out_text = NULL;
    if (!vocab || (!text && len)) return duet_err_set(err, DUET_EINVAL, "compress: NULL vocabulary or text");
    int32_t *tok = NULL;
    const int flags = duet_vocab_add_bos(vocab) ? DUET_TOK_ADD_BOS : 0;
    const int n = duet_tokenize_alloc(vocab, text ? text : "", len, flags, &tok);
    if (n < 0) return duet_err_set(err, n, "compress: cannot tokenize the prompt");
    /* a BOS alone is no prompt */
    const int n_text = n - (n > 0 && (flags & DUET_TOK_ADD_BOS) && tok[0] == duet_vocab_bos(vocab));
    if (n_text < 1) {
        free(tok);
        return duet_err_set(err, DUET_EINVAL, "compress: empty prompt");
    }
    duet_compress_result r;
    int rc = duet_compress_tokens(slm, tok, n, p, &r, err);
    free(tok);
    if (rc < 0) return rc;
    /* control tokens (the BOS) are left out of the text: the LLM's tokenizer adds its own */
    const int64_t bytes = duet_detokenize(vocab, r.ids, r.n_kept, NULL, 0, 0);
    char *s = bytes >= 0 ? malloc((size_t)bytes + 1) : NULL;
    if (bytes < 0) rc = duet_err_set(err, (int)bytes, "compress: cannot detokenize the kept tokens");
    else if (!s) rc = duet_err_set(err, DUET_ENOMEM, "compress: out of memory for %lld bytes", (long long)bytes);
    else duet_detokenize(vocab, r.ids, r.n_kept, s, (size_t)bytes + 1, 0);
    if (rc < 0) {
        free(s);
        duet_compress_result_free(&r);
        return rc;
    }
    *out_text = s;
    if (result) *result = r;
    else duet_compress_result_free(&r);
    return 0;
}

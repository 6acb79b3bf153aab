/* Weighted sums of log-softmaxes: the one primitive behind fusion, contrastive
 * decoding and proxy-tuning. */
#include <math.h>

#include "duet/strategy.h"

int duet_logits_combine(float *out, int n_vocab, const float *const *logits, const int *n_vocab_i, const float *w,
                        int n_models, duet_err *err) {
    if (!out || n_vocab < 1 || n_models < 1 || !logits || !w)
        return duet_err_set(err, DUET_EINVAL, "combine: bad arguments (%d models over %d ids)", n_models, n_vocab);
    int common = n_vocab;
    for (int i = 0; i < n_models; i++) {
        const int nv = n_vocab_i ? n_vocab_i[i] : n_vocab;
        if (!logits[i] || nv < 1 || nv > n_vocab)
            return duet_err_set(err, DUET_EINVAL, "combine: model %d has %d logits for a vocabulary of %d", i, nv, n_vocab);
        if (!isfinite(w[i])) return duet_err_set(err, DUET_EINVAL, "combine: weight %d is not finite", i);
        if (nv < common) common = nv;
    }
    for (int v = 0; v < common; v++) out[v] = 0;
    for (int i = 0; i < n_models; i++) {
        const float *row = logits[i]; /* (n_vocab_i) */
        const int nv = n_vocab_i ? n_vocab_i[i] : n_vocab;
        float mx = -INFINITY;
        for (int v = 0; v < nv; v++) mx = row[v] > mx ? row[v] : mx;
        double s = 0;
        for (int v = 0; v < nv; v++) s += exp((double)row[v] - mx);
        const double lse = mx + log(s);
        if (w[i] == 0) continue;
        for (int v = 0; v < common; v++) out[v] += (float)(w[i] * ((double)row[v] - lse));
    }
    /* an id that some model cannot produce is out: no combination gives it mass */
    for (int v = common; v < n_vocab; v++) out[v] = -INFINITY;
    return 0;
}

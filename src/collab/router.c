/* Routers: the signals of a request from the SLM's view of its prompt, a
 * score from them (one signal, or a logistic regression), a threshold
 * calibrated to a target LLM share, and online recalibration that holds that
 * share on traffic whose scores drift. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/strategy.h"

const char *duet_signal_name(int i) {
    static const char *names[DUET_ROUTE_NSIG] = {"mean_entropy", "max_entropy", "prompt_nll", "neg_top1", "neg_margin"};
    return i >= 0 && i < DUET_ROUTE_NSIG ? names[i] : "unknown";
}

void duet_route_signals(float sig[DUET_ROUTE_NSIG], const float *rows, int n_rows, int n_vocab, const int32_t *prompt,
                        int n_prompt) {
    double ent_sum = 0, ent_max = 0, nll = 0;
    int n_nll = 0;
    float top1 = 0, top2 = 0;
    for (int r = 0; r < n_rows; r++) {
        const float *row = rows + (size_t)r * n_vocab; /* (n_vocab) the distribution after position p */
        const int p = n_prompt - n_rows + r;
        float mx = -INFINITY;
        for (int v = 0; v < n_vocab; v++) mx = row[v] > mx ? row[v] : mx;
        double z = 0, ez = 0;
        for (int v = 0; v < n_vocab; v++) {
            const double e = exp((double)row[v] - mx);
            z += e;
            ez += e * ((double)row[v] - mx);
        }
        const double lz = log(z);
        const double h = lz - ez / z; /* -sum p log p */
        ent_sum += h;
        ent_max = h > ent_max ? h : ent_max;
        if (p + 1 < n_prompt) { /* the next prompt token's likelihood */
            nll += lz - ((double)row[prompt[p + 1]] - mx);
            n_nll++;
        }
        if (r == n_rows - 1) { /* the first token to generate */
            float a = -INFINITY, b = -INFINITY;
            for (int v = 0; v < n_vocab; v++) {
                if (row[v] > a) b = a, a = row[v];
                else if (row[v] > b) b = row[v];
            }
            top1 = (float)(exp((double)a - mx) / z);
            top2 = isfinite(b) ? (float)(exp((double)b - mx) / z) : 0;
        }
    }
    sig[DUET_SIG_MEAN_ENTROPY] = n_rows ? (float)(ent_sum / n_rows) : 0;
    sig[DUET_SIG_MAX_ENTROPY] = (float)ent_max;
    sig[DUET_SIG_PROMPT_NLL] = n_nll ? (float)(nll / n_nll) : 0;
    sig[DUET_SIG_NEG_TOP1] = -top1;
    sig[DUET_SIG_NEG_MARGIN] = -(top1 - top2);
}

void duet_router_init(duet_router *r, duet_router_kind kind) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->signal = DUET_SIG_MEAN_ENTROPY;
    for (int i = 0; i < DUET_ROUTE_NSIG; i++) r->scale[i] = 1;
    r->share = 0.5f;
}

void duet_router_free(duet_router *r) {
    if (!r) return;
    free(r->recent);
    r->recent = NULL;
    r->window = r->n_recent = r->at = 0;
}

static double sigmoid(double x) { return 1 / (1 + exp(-x)); }

float duet_router_score(const duet_router *r, const float sig[DUET_ROUTE_NSIG]) {
    switch (r->kind) {
    case DUET_ROUTER_THRESHOLD: return sig[r->signal];
    case DUET_ROUTER_LOGISTIC: {
        double z = r->b;
        for (int i = 0; i < DUET_ROUTE_NSIG; i++) z += r->w[i] * (sig[i] - r->mean[i]) / r->scale[i];
        return (float)sigmoid(z);
    }
    case DUET_ROUTER_RANDOM: {
        /* a hash of the signals: the same request always draws the same coin */
        uint64_t h = 1469598103934665603ull;
        for (int i = 0; i < DUET_ROUTE_NSIG; i++) {
            uint32_t u;
            memcpy(&u, &sig[i], sizeof u);
            h = (h ^ u) * 1099511628211ull;
        }
        h ^= h >> 33, h *= 0xff51afd7ed558ccdull, h ^= h >> 33;
        return (float)((h >> 11) * 0x1.0p-53);
    }
    }
    return 0;
}

/* The value with `k` of the n scores strictly above it: the midpoint of the
 * k-th and (k+1)-th largest. */
static int cmp_desc(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static float cut_for(float *sorted_desc, int n, int k) {
    if (k <= 0) return sorted_desc[0] + 1;
    if (k >= n) return sorted_desc[n - 1] - 1;
    return 0.5f * (sorted_desc[k - 1] + sorted_desc[k]);
}

int duet_router_calibrate(duet_router *r, const float *scores, int n, float share, duet_err *err) {
    if (n < 1 || !scores) return duet_err_set(err, DUET_EINVAL, "router: no scores to calibrate on");
    if (!(share >= 0 && share <= 1)) return duet_err_set(err, DUET_EINVAL, "router: share %g outside [0, 1]", share);
    if (r->kind == DUET_ROUTER_RANDOM) { /* the coin itself is the share */
        r->share = share;
        r->threshold = 1 - share;
        return 0;
    }
    float *s = malloc(sizeof *s * (size_t)n);
    if (!s) return duet_err_set(err, DUET_ENOMEM, "router: out of memory");
    memcpy(s, scores, sizeof *s * (size_t)n);
    qsort(s, (size_t)n, sizeof *s, cmp_desc);
    r->threshold = cut_for(s, n, (int)lrint((double)share * n));
    r->share = share;
    free(s);
    return 0;
}

int duet_router_online(duet_router *r, float share, int window, duet_err *err) {
    if (!(share >= 0 && share <= 1)) return duet_err_set(err, DUET_EINVAL, "router: share %g outside [0, 1]", share);
    if (window < 8 || window > 1 << 20) return duet_err_set(err, DUET_EINVAL, "router: window %d outside [8, 2^20]", window);
    float *ring = calloc((size_t)window, sizeof *ring);
    if (!ring) return duet_err_set(err, DUET_ENOMEM, "router: out of memory");
    free(r->recent);
    r->recent = ring;
    r->window = window, r->n_recent = r->at = r->n_llm = 0;
    r->offset = 0;
    r->share = share;
    return 0;
}

int duet_router_decide(duet_router *r, float score) {
    if (r->kind == DUET_ROUTER_RANDOM) return score < r->share;
    if (r->window <= 0) return score > r->threshold;
    /* Online: the threshold is the (1 - share) quantile of the recent scores
     * plus an offset that integrates the realised share's error. The
     * quantile follows a shift of the scores within one window; the offset
     * removes what the window's lag leaves on a steady drift (a pure
     * quantile trails a rising stream and routes too much). */
    r->recent[r->at] = score;
    r->at = (r->at + 1) % r->window;
    if (r->n_recent < r->window) r->n_recent++;
    float spread = 0;
    if (r->n_recent >= 8) {
        float *s = malloc(sizeof *s * (size_t)r->n_recent);
        if (s) {
            memcpy(s, r->recent, sizeof *s * (size_t)r->n_recent);
            qsort(s, (size_t)r->n_recent, sizeof *s, cmp_desc);
            r->threshold = cut_for(s, r->n_recent, (int)lrint((double)r->share * r->n_recent)) + r->offset;
            spread = s[r->n_recent / 4] - s[3 * r->n_recent / 4];
            free(s);
        }
    }
    if (r->n_recent < 8) { /* too few scores for a quantile yet: keep the share by count */
        const int to_llm = r->n_llm < r->share * r->n_recent;
        r->n_llm += to_llm;
        return to_llm;
    }
    const int to_llm = score > r->threshold;
    r->offset += 0.05f * (spread > 1e-6f ? spread : 1e-6f) * ((float)to_llm - r->share);
    return to_llm;
}

int duet_router_fit(duet_router *r, const float *sig, const uint8_t *y, int n, duet_err *err) {
    enum { K = DUET_ROUTE_NSIG, P = K + 1 };
    if (n < 2) return duet_err_set(err, DUET_EINVAL, "router: fitting needs at least 2 examples (got %d)", n);
    int pos = 0;
    for (int i = 0; i < n; i++) pos += y[i] != 0;
    if (pos == 0 || pos == n) return duet_err_set(err, DUET_EINVAL, "router: the labels are all %d: nothing to separate", pos ? 1 : 0);
    r->kind = DUET_ROUTER_LOGISTIC;
    for (int k = 0; k < K; k++) {
        double m = 0, v = 0;
        for (int i = 0; i < n; i++) m += sig[(size_t)i * K + k];
        m /= n;
        for (int i = 0; i < n; i++) v += (sig[(size_t)i * K + k] - m) * (sig[(size_t)i * K + k] - m);
        v = sqrt(v / n);
        r->mean[k] = (float)m;
        r->scale[k] = v > 1e-12 ? (float)v : 1;
    }
    /* Newton's method on the L2-penalised log-likelihood: a 6x6 system per step */
    double beta[P] = {0};
    const double lambda = 1e-3 * n;
    for (int it = 0; it < 50; it++) {
        double g[P] = {0}, H[P][P] = {{0}};
        for (int i = 0; i < n; i++) {
            double z[P];
            z[K] = 1;
            for (int k = 0; k < K; k++) z[k] = (sig[(size_t)i * K + k] - r->mean[k]) / r->scale[k];
            double t = 0;
            for (int k = 0; k < P; k++) t += beta[k] * z[k];
            const double p = sigmoid(t), wgt = p * (1 - p) + 1e-12;
            for (int a = 0; a < P; a++) {
                g[a] += (p - (y[i] != 0)) * z[a];
                for (int b = 0; b < P; b++) H[a][b] += wgt * z[a] * z[b];
            }
        }
        for (int a = 0; a < K; a++) g[a] += lambda * beta[a], H[a][a] += lambda;
        /* solve H d = g (Gaussian elimination with partial pivoting) */
        double A[P][P + 1];
        for (int a = 0; a < P; a++) {
            for (int b = 0; b < P; b++) A[a][b] = H[a][b];
            A[a][P] = g[a];
        }
        for (int c = 0; c < P; c++) {
            int piv = c;
            for (int a = c + 1; a < P; a++)
                if (fabs(A[a][c]) > fabs(A[piv][c])) piv = a;
            for (int b = 0; b <= P; b++) {
                const double t = A[c][b];
                A[c][b] = A[piv][b], A[piv][b] = t;
            }
            if (fabs(A[c][c]) < 1e-300) return duet_err_set(err, DUET_EINVAL, "router: the signals are degenerate");
            for (int a = 0; a < P; a++) {
                if (a == c) continue;
                const double f = A[a][c] / A[c][c];
                for (int b = c; b <= P; b++) A[a][b] -= f * A[c][b];
            }
        }
        double step = 0;
        for (int a = 0; a < P; a++) {
            const double d = A[a][P] / A[a][a];
            beta[a] -= d;
            step = fmax(step, fabs(d));
        }
        if (step < 1e-9) break;
    }
    for (int k = 0; k < K; k++) r->w[k] = (float)beta[k];
    r->b = (float)beta[K];
    r->threshold = 0.5f;
    return 0;
}

int duet_router_save(const duet_router *r, const char *path, duet_err *err) {
    FILE *f = fopen(path, "w");
    if (!f) return duet_err_set(err, DUET_EIO, "router: cannot write %s", path);
    static const char *kinds[] = {"threshold", "logistic", "random"};
    fprintf(f, "duet-router v1\nkind %s\nsignal %s\nthreshold %.9g\nshare %.9g\n", kinds[r->kind],
            duet_signal_name(r->signal), r->threshold, r->share);
    const struct { const char *name; const float *v; } rows[3] = {{"mean", r->mean}, {"scale", r->scale}, {"w", r->w}};
    for (int k = 0; k < 3; k++) {
        fprintf(f, "%s", rows[k].name);
        for (int i = 0; i < DUET_ROUTE_NSIG; i++) fprintf(f, " %.9g", rows[k].v[i]);
        fprintf(f, "\n");
    }
    fprintf(f, "b %.9g\n", r->b);
    const int bad = ferror(f);
    if (fclose(f) != 0 || bad) return duet_err_set(err, DUET_EIO, "router: writing %s failed", path);
    return 0;
}

_Static_assert(DUET_ROUTE_NSIG == 5, "duet_router_load reads five coefficients per row");

int duet_router_load(duet_router *r, const char *path, duet_err *err) {
    FILE *f = fopen(path, "r");
    if (!f) return duet_err_set(err, DUET_EIO, "router: cannot open %s", path);
    duet_router_init(r, DUET_ROUTER_THRESHOLD);
    char line[1024];
    int ln = 0, rc = 0, seen_header = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        ln++;
        char key[32], val[64];
        float v[DUET_ROUTE_NSIG];
        if (ln == 1) {
            if (strncmp(line, "duet-router v1", 14)) rc = duet_err_set(err, DUET_EFORMAT, "%s:1: not a duet-router v1 file", path);
            seen_header = 1;
            continue;
        }
        if (sscanf(line, "%31s", key) != 1) continue;
        if (!strcmp(key, "kind") && sscanf(line, "%*s %63s", val) == 1) {
            if (!strcmp(val, "threshold")) r->kind = DUET_ROUTER_THRESHOLD;
            else if (!strcmp(val, "logistic")) r->kind = DUET_ROUTER_LOGISTIC;
            else if (!strcmp(val, "random")) r->kind = DUET_ROUTER_RANDOM;
            else rc = duet_err_set(err, DUET_EFORMAT, "%s:%d: unknown kind '%s'", path, ln, val);
        } else if (!strcmp(key, "signal") && sscanf(line, "%*s %63s", val) == 1) {
            int found = -1;
            for (int i = 0; i < DUET_ROUTE_NSIG; i++)
                if (!strcmp(val, duet_signal_name(i))) found = i;
            if (found < 0) rc = duet_err_set(err, DUET_EFORMAT, "%s:%d: unknown signal '%s'", path, ln, val);
            else r->signal = found;
        } else if (!strcmp(key, "threshold") && sscanf(line, "%*s %f", &r->threshold) == 1) {
        } else if (!strcmp(key, "share") && sscanf(line, "%*s %f", &r->share) == 1) {
        } else if (!strcmp(key, "b") && sscanf(line, "%*s %f", &r->b) == 1) {
        } else if ((!strcmp(key, "mean") || !strcmp(key, "scale") || !strcmp(key, "w")) &&
                   sscanf(line, "%*s %f %f %f %f %f", &v[0], &v[1], &v[2], &v[3], &v[4]) == DUET_ROUTE_NSIG) {
            float *dst = !strcmp(key, "mean") ? r->mean : !strcmp(key, "scale") ? r->scale : r->w;
            memcpy(dst, v, sizeof v);
        } else {
            rc = duet_err_set(err, DUET_EFORMAT, "%s:%d: cannot read '%.40s'", path, ln, line);
        }
    }
    fclose(f);
    if (rc == 0 && !seen_header) rc = duet_err_set(err, DUET_EFORMAT, "%s: empty file", path);
    for (int i = 0; rc == 0 && i < DUET_ROUTE_NSIG; i++)
        if (!(r->scale[i] > 0) || !isfinite(r->w[i]) || !isfinite(r->mean[i]))
            rc = duet_err_set(err, DUET_EFORMAT, "%s: bad coefficients for %s", path, duet_signal_name(i));
    return rc;
}

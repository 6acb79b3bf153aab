/* Routers: the signals of a request from the SLM's view of its prompt, a
 * score from them (one signal, or a logistic regression), a threshold
 * calibrated to a target LLM share, and online recalibration that holds that
 * share on traffic whose scores drift. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collab/route_words.h"
#include "duet/strategy.h"

const char *duet_signal_name(int i) {
    static const char *names[DUET_ROUTE_NSIG] = {"mean_entropy", "max_entropy",  "prompt_nll",
                                                 "neg_top1",     "neg_margin",   "copy_miss",
                                                 "top1_novel",   "content_miss", "content_alt"};
    return i >= 0 && i < DUET_ROUTE_NSIG ? names[i] : "unknown";
}

/* 1 when token v occurs in the prompt (a linear scan; the signals use it
 * only when no table of the prompt's tokens could be allocated). */
static int in_prompt(const int32_t *prompt, int n_prompt, int v) {
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] == v) return 1;
    return 0;
}

void duet_route_signals(float sig[DUET_ROUTE_NSIG], const float *rows, int n_rows, int n_vocab, const int32_t *prompt,
                        int n_prompt, const duet_route_words *words) {
    double ent_sum = 0, ent_max = 0, nll = 0, copy = 0, alt = 0;
    int n_nll = 0, novel = 0, content_miss = 1;
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
            int arg = 0;
            for (int v = 0; v < n_vocab; v++) {
                if (row[v] > a) b = a, a = row[v], arg = v;
                else if (row[v] > b) b = row[v];
            }
            top1 = (float)(exp((double)a - mx) / z);
            top2 = isfinite(b) ? (float)(exp((double)b - mx) / z) : 0;
            /* Copying: an answer grounded in the prompt repeats one of its
             * tokens; an SLM that looks elsewhere is likely wrong there. */
            uint8_t *seen = calloc((size_t)n_vocab * 2, 1); /* (2, n_vocab): in the prompt, begins a content
                                                               word of it; NULL (out of memory): scan the prompt */
            uint8_t *content = seen ? seen + n_vocab : NULL;
            for (int i = 0; seen && i < n_prompt; i++)
                if (prompt[i] >= 0 && prompt[i] < n_vocab) seen[prompt[i]] = 1;
            if (content && words) route_words_mark_content(words, prompt, n_prompt, content, n_vocab);
            else if (content) memcpy(content, seen, (size_t)n_vocab); /* no words: every prompt token counts */
            for (int v = 0; v < n_vocab; v++) {
                const double pv = exp((double)row[v] - mx) / z;
                if (seen ? seen[v] : in_prompt(prompt, n_prompt, v)) copy += pv;
                if (v != arg && (content ? content[v] : in_prompt(prompt, n_prompt, v)) && pv > alt) alt = pv;
            }
            novel = !(seen ? seen[arg] : in_prompt(prompt, n_prompt, arg));
            content_miss = content ? !content[arg] : novel;
            free(seen);
        }
    }
    sig[DUET_SIG_MEAN_ENTROPY] = n_rows ? (float)(ent_sum / n_rows) : 0;
    sig[DUET_SIG_MAX_ENTROPY] = (float)ent_max;
    sig[DUET_SIG_PROMPT_NLL] = n_nll ? (float)(nll / n_nll) : 0;
    sig[DUET_SIG_NEG_TOP1] = -top1;
    sig[DUET_SIG_NEG_MARGIN] = -(top1 - top2);
    sig[DUET_SIG_COPY_MISS] = n_rows ? (float)(1 - copy) : 1;
    sig[DUET_SIG_TOP1_NOVEL] = n_rows ? (float)novel : 1;
    sig[DUET_SIG_CONTENT_MISS] = (float)content_miss;
    sig[DUET_SIG_CONTENT_ALT] = (float)alt;
}

void duet_route_pool_hidden(float *pooled, const float *hidden, int n_rows, int n_embd) {
    for (int c = 0; c < n_embd; c++) {
        double a = 0;
        for (int r = 0; r < n_rows; r++) a += hidden[(size_t)r * n_embd + c];
        pooled[c] = n_rows ? (float)(a / n_rows) : 0;
    }
}

void duet_router_init(duet_router *r, duet_router_kind kind) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->signal = DUET_SIG_NEG_TOP1; /* the one plain signal above random at every share (docs/routing.md) */
    for (int i = 0; i < DUET_ROUTE_NSIG; i++) r->scale[i] = 1;
    r->share = 0.5f;
}

void duet_router_free(duet_router *r) {
    if (!r) return;
    free(r->recent);
    r->recent = NULL;
    free(r->h_mean); /* one block: h_mean, h_scale, h_w */
    r->h_mean = r->h_scale = r->h_w = NULL;
    r->n_hidden = 0;
    r->window = r->n_recent = r->at = 0;
}

static double sigmoid(double x) { return 1 / (1 + exp(-x)); }

float duet_router_score(const duet_router *r, const float sig[DUET_ROUTE_NSIG]) {
    return duet_router_score_h(r, sig, NULL);
}

float duet_router_score_h(const duet_router *r, const float sig[DUET_ROUTE_NSIG], const float *hidden) {
    switch (r->kind) {
    case DUET_ROUTER_THRESHOLD: return sig[r->signal];
    case DUET_ROUTER_LOGISTIC: {
        double z = r->b;
        for (int i = 0; i < DUET_ROUTE_NSIG; i++) z += r->w[i] * (sig[i] - r->mean[i]) / r->scale[i];
        for (int i = 0; hidden && i < r->n_hidden; i++) z += r->h_w[i] * (hidden[i] - r->h_mean[i]) / r->h_scale[i];
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

/* Standardizes column k of x (n rows of width d): its mean and scale. */
static void standardize(const float *x, int n, int d, int k, float *mean, float *scale) {
    double m = 0, v = 0;
    for (int i = 0; i < n; i++) m += x[(size_t)i * d + k];
    m /= n;
    for (int i = 0; i < n; i++) v += (x[(size_t)i * d + k] - m) * (x[(size_t)i * d + k] - m);
    v = sqrt(v / n);
    *mean = (float)m;
    *scale = v > 1e-12 ? (float)v : 1;
}

/* Newton's method on the L2-penalised log-likelihood of the rows of z
 * (n, P) whose last column is the constant 1 (not penalised), over the rows
 * with use[i] != 0 (NULL: all). beta (P) in/out. */
static int newton(const double *z, const uint8_t *y, const uint8_t *use, int n, int P, double lambda, double *beta,
                  double *A /* (P, P + 1): the Hessian and, in the last column, the gradient */) {
    for (int it = 0; it < 50; it++) {
        memset(A, 0, sizeof *A * (size_t)P * (size_t)(P + 1));
        for (int i = 0; i < n; i++) {
            if (use && !use[i]) continue;
            const double *zi = z + (size_t)i * P;
            double t = 0;
            for (int k = 0; k < P; k++) t += beta[k] * zi[k];
            const double p = sigmoid(t), wgt = p * (1 - p) + 1e-12, e = p - (y[i] != 0);
            for (int a = 0; a < P; a++) {
                double *Aa = A + (size_t)a * (P + 1);
                const double wa = wgt * zi[a];
                for (int b = a; b < P; b++) Aa[b] += wa * zi[b];
                Aa[P] += e * zi[a];
            }
        }
        for (int a = 0; a < P; a++) /* the lower triangle from the upper */
            for (int b = 0; b < a; b++) A[(size_t)a * (P + 1) + b] = A[(size_t)b * (P + 1) + a];
        for (int a = 0; a < P - 1; a++) A[(size_t)a * (P + 1) + P] += lambda * beta[a], A[(size_t)a * (P + 1) + a] += lambda;
        /* solve H d = g (Gauss-Jordan with partial pivoting) */
        for (int c = 0; c < P; c++) {
            int piv = c;
            for (int a = c + 1; a < P; a++)
                if (fabs(A[(size_t)a * (P + 1) + c]) > fabs(A[(size_t)piv * (P + 1) + c])) piv = a;
            for (int b = 0; b <= P; b++) {
                const double t = A[(size_t)c * (P + 1) + b];
                A[(size_t)c * (P + 1) + b] = A[(size_t)piv * (P + 1) + b], A[(size_t)piv * (P + 1) + b] = t;
            }
            const double d = A[(size_t)c * (P + 1) + c];
            if (fabs(d) < 1e-300) return -1;
            for (int a = 0; a < P; a++) {
                if (a == c) continue;
                const double f = A[(size_t)a * (P + 1) + c] / d;
                if (f == 0) continue;
                for (int b = c; b <= P; b++) A[(size_t)a * (P + 1) + b] -= f * A[(size_t)c * (P + 1) + b];
            }
        }
        double step = 0;
        for (int a = 0; a < P; a++) {
            const double d = A[(size_t)a * (P + 1) + P] / A[(size_t)a * (P + 1) + a];
            beta[a] -= d;
            step = fmax(step, fabs(d));
        }
        if (step < 1e-9) break;
    }
    return 0;
}

int duet_router_fit(duet_router *r, const float *sig, const uint8_t *y, int n, duet_err *err) {
    return duet_router_fit_h(r, sig, NULL, 0, y, n, err);
}

int duet_router_fit_h(duet_router *r, const float *sig, const float *hidden, int n_hidden, const uint8_t *y, int n,
                      duet_err *err) {
    enum { K = DUET_ROUTE_NSIG, FOLDS = 5 };
    if (n < 2) return duet_err_set(err, DUET_EINVAL, "router: fitting needs at least 2 examples (got %d)", n);
    if (n_hidden < 0 || (n_hidden && !hidden)) return duet_err_set(err, DUET_EINVAL, "router: no hidden states");
    int pos = 0;
    for (int i = 0; i < n; i++) pos += y[i] != 0;
    if (pos == 0 || pos == n) return duet_err_set(err, DUET_EINVAL, "router: the labels are all %d: nothing to separate", pos ? 1 : 0);
    const int H = n_hidden, P = K + H + 1;
    float *hm = H ? malloc(sizeof *hm * (size_t)H * 3) : NULL;      /* (3, H): mean, scale, w */
    double *z = malloc(sizeof *z * (size_t)n * P);                  /* (n, P) standardized features, then 1 */
    double *A = malloc(sizeof *A * (size_t)P * (P + 1));            /* (P, P + 1) Newton's system */
    double *beta = calloc((size_t)P, sizeof *beta);                 /* (P) */
    uint8_t *use = malloc((size_t)n);                               /* (n) rows of the training folds */
    if ((H && !hm) || !z || !A || !beta || !use) {
        free(hm), free(z), free(A), free(beta), free(use);
        return duet_err_set(err, DUET_ENOMEM, "router: out of memory");
    }
    float mean[K], scale[K];
    for (int k = 0; k < K; k++) standardize(sig, n, K, k, &mean[k], &scale[k]);
    for (int k = 0; k < H; k++) standardize(hidden, n, H, k, &hm[k], &hm[H + k]);
    for (int i = 0; i < n; i++) {
        double *zi = z + (size_t)i * P;
        for (int k = 0; k < K; k++) zi[k] = (sig[(size_t)i * K + k] - mean[k]) / scale[k];
        for (int k = 0; k < H; k++) zi[K + k] = (hidden[(size_t)i * H + k] - hm[k]) / hm[H + k];
        zi[P - 1] = 1;
    }
    /* The penalty: a small fixed one for the few signals; with the hidden
     * state (many weak, correlated features) the one of the candidates whose
     * held-out log-likelihood over FOLDS folds is best. */
    static const double per_item[] = {1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0};
    double lambda = 1e-3 * n;
    int rc = 0;
    if (H > 0 && n >= 2 * FOLDS) {
        double best = -INFINITY;
        for (size_t c = 0; c < sizeof per_item / sizeof per_item[0] && rc == 0; c++) {
            double ll = 0;
            for (int f = 0; f < FOLDS && rc == 0; f++) {
                int n_train = 0;
                for (int i = 0; i < n; i++) n_train += use[i] = i % FOLDS != f;
                memset(beta, 0, sizeof *beta * (size_t)P);
                if (newton(z, y, use, n, P, per_item[c] * n_train, beta, A) < 0) rc = -1;
                for (int i = 0; i < n; i++) {
                    if (use[i]) continue;
                    double t = 0;
                    for (int k = 0; k < P; k++) t += beta[k] * z[(size_t)i * P + k];
                    const double p = sigmoid(t);
                    ll += log(y[i] ? fmax(p, 1e-12) : fmax(1 - p, 1e-12));
                }
            }
            if (rc == 0 && ll > best) best = ll, lambda = per_item[c] * n;
        }
    }
    memset(beta, 0, sizeof *beta * (size_t)P);
    if (rc == 0) rc = newton(z, y, NULL, n, P, lambda, beta, A);
    if (rc < 0) {
        free(hm), free(z), free(A), free(beta), free(use);
        return duet_err_set(err, DUET_EINVAL, "router: the signals are degenerate");
    }
    free(r->h_mean);
    r->h_mean = r->h_scale = r->h_w = NULL;
    r->kind = DUET_ROUTER_LOGISTIC;
    memcpy(r->mean, mean, sizeof mean);
    memcpy(r->scale, scale, sizeof scale);
    for (int k = 0; k < K; k++) r->w[k] = (float)beta[k];
    r->n_hidden = H;
    if (H) {
        for (int k = 0; k < H; k++) hm[2 * H + k] = (float)beta[K + k];
        r->h_mean = hm; /* one block of 3H: freed through h_mean */
        r->h_scale = hm + H, r->h_w = hm + 2 * H;
    }
    r->b = (float)beta[P - 1];
    r->threshold = 0.5f;
    free(z), free(A), free(beta), free(use);
    return 0;
}

static void put_row(FILE *f, const char *name, const float *v, int n) {
    fprintf(f, "%s", name);
    for (int i = 0; i < n; i++) fprintf(f, " %.9g", v[i]);
    fprintf(f, "\n");
}

int duet_router_save(const duet_router *r, const char *path, duet_err *err) {
    FILE *f = fopen(path, "w");
    if (!f) return duet_err_set(err, DUET_EIO, "router: cannot write %s", path);
    static const char *kinds[] = {"threshold", "logistic", "random"};
    fprintf(f, "duet-router v2\nkind %s\nsignal %s\nthreshold %.9g\nshare %.9g\n", kinds[r->kind],
            duet_signal_name(r->signal), r->threshold, r->share);
    fprintf(f, "signals");
    for (int i = 0; i < DUET_ROUTE_NSIG; i++) fprintf(f, " %s", duet_signal_name(i));
    fprintf(f, "\n");
    put_row(f, "mean", r->mean, DUET_ROUTE_NSIG);
    put_row(f, "scale", r->scale, DUET_ROUTE_NSIG);
    put_row(f, "w", r->w, DUET_ROUTE_NSIG);
    fprintf(f, "b %.9g\n", r->b);
    if (r->n_hidden > 0) {
        fprintf(f, "hidden %d\n", r->n_hidden);
        put_row(f, "h_mean", r->h_mean, r->n_hidden);
        put_row(f, "h_scale", r->h_scale, r->n_hidden);
        put_row(f, "h_w", r->h_w, r->n_hidden);
    }
    const int bad = ferror(f);
    if (fclose(f) != 0 || bad) return duet_err_set(err, DUET_EIO, "router: writing %s failed", path);
    return 0;
}

/* Reads up to cap numbers after the key of line; returns how many, or -1
 * when something else follows. */
static int get_row(const char *line, float *v, int cap) {
    const char *p = line;
    while (*p && !isspace((unsigned char)*p)) p++; /* the key */
    int n = 0;
    for (;;) {
        while (*p && isspace((unsigned char)*p)) p++;
        if (!*p) return n;
        if (n == cap) return -1;
        char *end;
        v[n++] = strtof(p, &end);
        if (end == p) return -1;
        p = end;
    }
}

/* One line of any length (the hidden rows are long); NULL at the end. */
static char *read_line(FILE *f, char **buf, size_t *cap) {
    size_t n = 0;
    int c;
    while ((c = fgetc(f)) != EOF) {
        if (n + 2 > *cap) {
            size_t nc = *cap ? *cap * 2 : 1024;
            char *b = realloc(*buf, nc);
            if (!b) return NULL;
            *buf = b, *cap = nc;
        }
        (*buf)[n++] = (char)c;
        if (c == '\n') break;
    }
    if (n == 0) return NULL;
    (*buf)[n] = 0;
    return *buf;
}

int duet_router_load(duet_router *r, const char *path, duet_err *err) {
    FILE *f = fopen(path, "r");
    if (!f) return duet_err_set(err, DUET_EIO, "router: cannot open %s", path);
    duet_router_init(r, DUET_ROUTER_THRESHOLD);
    char *line = NULL;
    size_t cap = 0;
    int ln = 0, rc = 0, version = 0, n_sig = DUET_ROUTE_NSIG, got_h[3] = {0};
    while (rc == 0 && read_line(f, &line, &cap)) {
        ln++;
        char key[32], val[64];
        float v[DUET_ROUTE_NSIG];
        if (ln == 1) {
            if (!strncmp(line, "duet-router v1", 14)) version = 1, n_sig = 5; /* the five signals of v1 */
            else if (!strncmp(line, "duet-router v2", 14)) version = 2;
            else rc = duet_err_set(err, DUET_EFORMAT, "%s:1: not a duet-router v1/v2 file", path);
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
        } else if (!strcmp(key, "signals")) { /* v2: the order of the coefficients */
            /* signals only ever get appended: an older duet's file names a prefix of
             * this one's, and the signals it lacks keep a weight of 0 */
            char *save = NULL, *tokn = strtok_r(line, " \t\r\n", &save);
            int i = 0;
            while (rc == 0 && (tokn = strtok_r(NULL, " \t\r\n", &save))) {
                if (i >= DUET_ROUTE_NSIG)
                    rc = duet_err_set(err, DUET_EFORMAT, "%s:%d: more than the %d signals this duet has", path, ln,
                                      DUET_ROUTE_NSIG);
                else if (strcmp(tokn, duet_signal_name(i)))
                    rc = duet_err_set(err, DUET_EFORMAT, "%s:%d: signal %d is '%s', this duet expects '%s'", path, ln, i,
                                      tokn, duet_signal_name(i));
                i++;
            }
            if (rc == 0 && i == 0) rc = duet_err_set(err, DUET_EFORMAT, "%s:%d: no signals named", path, ln);
            n_sig = i;
        } else if (!strcmp(key, "threshold") && sscanf(line, "%*s %f", &r->threshold) == 1) {
        } else if (!strcmp(key, "share") && sscanf(line, "%*s %f", &r->share) == 1) {
        } else if (!strcmp(key, "b") && sscanf(line, "%*s %f", &r->b) == 1) {
        } else if ((!strcmp(key, "mean") || !strcmp(key, "scale") || !strcmp(key, "w")) &&
                   get_row(line, v, DUET_ROUTE_NSIG) == n_sig) {
            float *dst = !strcmp(key, "mean") ? r->mean : !strcmp(key, "scale") ? r->scale : r->w;
            memcpy(dst, v, sizeof *v * (size_t)n_sig);
        } else if (!strcmp(key, "hidden") && version == 2 && !r->n_hidden) {
            int h = 0;
            if (sscanf(line, "%*s %d", &h) != 1 || h < 1 || h > 1 << 16)
                rc = duet_err_set(err, DUET_EFORMAT, "%s:%d: bad hidden width", path, ln);
            else if (!(r->h_mean = calloc((size_t)h * 3, sizeof *r->h_mean)))
                rc = duet_err_set(err, DUET_ENOMEM, "router: out of memory");
            else r->n_hidden = h, r->h_scale = r->h_mean + h, r->h_w = r->h_mean + 2 * h;
        } else if (r->n_hidden && (!strcmp(key, "h_mean") || !strcmp(key, "h_scale") || !strcmp(key, "h_w"))) {
            const int which = !strcmp(key, "h_mean") ? 0 : !strcmp(key, "h_scale") ? 1 : 2;
            if (get_row(line, r->h_mean + (size_t)which * r->n_hidden, r->n_hidden) != r->n_hidden)
                rc = duet_err_set(err, DUET_EFORMAT, "%s:%d: %s needs %d numbers", path, ln, key, r->n_hidden);
            got_h[which] = 1;
        } else {
            rc = duet_err_set(err, DUET_EFORMAT, "%s:%d: cannot read '%.40s'", path, ln, line);
        }
    }
    fclose(f);
    free(line);
    if (rc == 0 && !version) rc = duet_err_set(err, DUET_EFORMAT, "%s: empty file", path);
    if (rc == 0 && r->n_hidden && !(got_h[0] && got_h[1] && got_h[2]))
        rc = duet_err_set(err, DUET_EFORMAT, "%s: the hidden state's coefficients are incomplete", path);
    if (rc == 0 && !isfinite(r->b)) rc = duet_err_set(err, DUET_EFORMAT, "%s: the intercept b is not finite", path);
    for (int i = 0; rc == 0 && i < DUET_ROUTE_NSIG; i++)
        if (!(r->scale[i] > 0) || !isfinite(r->w[i]) || !isfinite(r->mean[i]))
            rc = duet_err_set(err, DUET_EFORMAT, "%s: bad coefficients for %s", path, duet_signal_name(i));
    for (int i = 0; rc == 0 && i < r->n_hidden; i++)
        if (!(r->h_scale[i] > 0) || !isfinite(r->h_w[i]) || !isfinite(r->h_mean[i]))
            rc = duet_err_set(err, DUET_EFORMAT, "%s: bad coefficients for hidden %d", path, i);
    if (rc) duet_router_free(r);
    return rc;
}

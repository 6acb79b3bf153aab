/* Adaptive draft length: online estimates of acceptance and costs, and the
 * choice of the length that maximises expected tokens per second. */
#include <math.h>
#include <string.h>

#include "duet/spec.h"

/* Older observations fade, so the estimate follows a change of text. */
#define DECAY 0.97

void duet_spec_adapt_init(duet_spec_adapt *a, int k_max) {
    memset(a, 0, sizeof *a);
    a->k_max = k_max < 0 ? 0 : k_max > DUET_SPEC_KMAX ? DUET_SPEC_KMAX : k_max;
}

void duet_spec_adapt_observe_accept(duet_spec_adapt *a, int drafted, int accepted) {
    if (drafted <= 0) return;
    a->drafted = a->drafted * DECAY + drafted;
    a->accepted = a->accepted * DECAY + accepted;
    /* Drafts 0..accepted were verified with everything before them kept; the
     * ones after the first rejection say nothing about their position. */
    for (int i = 0; i < drafted && i <= accepted && i < DUET_SPEC_KMAX; i++) {
        a->reached_at[i] = a->reached_at[i] * DECAY + 1;
        a->kept_at[i] = a->kept_at[i] * DECAY + (i < accepted);
    }
    a->rounds++;
}

void duet_spec_adapt_observe_draft(duet_spec_adapt *a, int n_tokens, double seconds) {
    if (n_tokens <= 0) return;
    a->t_draft = a->t_draft * DECAY + seconds;
    a->n_draft = a->n_draft * DECAY + n_tokens;
}

void duet_spec_adapt_observe_target(duet_spec_adapt *a, int block, double seconds) {
    if (block < 1 || block > DUET_SPEC_KMAX + 1) return;
    a->t_target[block] = a->t_target[block] * DECAY + seconds;
    a->n_target[block] = a->n_target[block] * DECAY + 1;
}

double duet_spec_adapt_alpha(const duet_spec_adapt *a) {
    /* Beta(1,1) prior: 0.5 before any evidence. */
    double al = (a->accepted + 1) / (a->drafted + 2);
    return al > 0.999 ? 0.999 : al;
}

/* alpha_0..alpha_(n-1): a Beta prior of weight 2 centred on the previous
 * position's rate (0.5 at position 0), so a position seldom reached borrows
 * its neighbour's rate. One pass, each position building on the last. */
static void alphas(const duet_spec_adapt *a, int n, double *al) {
    double prior = 0.5;
    for (int i = 0; i < n; i++) {
        const double x = (a->kept_at[i] + 2 * prior) / (a->reached_at[i] + 2);
        al[i] = prior = x > 0.999 ? 0.999 : x;
    }
}

double duet_spec_adapt_alpha_at(const duet_spec_adapt *a, int i) {
    double al[DUET_SPEC_KMAX];
    if (i < 0 || i >= DUET_SPEC_KMAX) return 0;
    alphas(a, i + 1, al);
    return al[i];
}

double duet_spec_adapt_expected_tokens(const duet_spec_adapt *a, int g) {
    double al[DUET_SPEC_KMAX], e = 1, run = 1;
    if (g > DUET_SPEC_KMAX) g = DUET_SPEC_KMAX;
    alphas(a, g, al);
    for (int i = 0; i < g; i++) {
        run *= al[i];
        e += run;
    }
    return e;
}

double duet_spec_adapt_target_cost(const duet_spec_adapt *a, int block) {
    if (a->n_target[block] > 0) return a->t_target[block] / a->n_target[block];
    /* Interpolate linearly between the nearest measured sizes on each side. */
    int lo = block - 1, hi = block + 1;
    while (lo >= 1 && a->n_target[lo] == 0) lo--;
    while (hi <= DUET_SPEC_KMAX + 1 && a->n_target[hi] == 0) hi++;
    int has_lo = lo >= 1, has_hi = hi <= DUET_SPEC_KMAX + 1;
    double tlo = has_lo ? a->t_target[lo] / a->n_target[lo] : 0;
    double thi = has_hi ? a->t_target[hi] / a->n_target[hi] : 0;
    if (has_lo && has_hi) return tlo + (thi - tlo) * (block - lo) / (hi - lo);
    /* Extrapolate: a block costs about as much as one token plus a little per
     * extra token (weights are read once; the per-token work is small). */
    if (has_lo) return tlo * (1 + 0.05 * (block - lo));
    if (has_hi) return thi / (1 + 0.05 * (hi - block));
    return 0;
}

double duet_spec_adapt_draft_cost(const duet_spec_adapt *a) {
    return a->n_draft > 0 ? a->t_draft / a->n_draft : 0;
}

double duet_spec_expected_tokens(double alpha, int g) {
    if (alpha >= 1) return g + 1;
    return (1 - pow(alpha, g + 1)) / (1 - alpha);
}

double duet_spec_predicted_speedup(double alpha, int g, double t_draft, double t_target1, double t_block) {
    double cost = g * t_draft + t_block;
    return cost > 0 ? duet_spec_expected_tokens(alpha, g) * t_target1 / cost : 1;
}

double duet_spec_adapt_rate(const duet_spec_adapt *a, int g) {
    if (g < 0) g = 0;
    if (g > DUET_SPEC_KMAX) g = DUET_SPEC_KMAX;
    const double cost = g * duet_spec_adapt_draft_cost(a) + duet_spec_adapt_target_cost(a, g + 1);
    return cost > 0 ? duet_spec_adapt_expected_tokens(a, g) / cost : 0;
}

int duet_spec_adapt_choose_k(duet_spec_adapt *a) {
    /* Until the draft's cost is known (a model drafter's first round; an
     * n-gram drafter costs nothing measurable), draft at a middle length. */
    if (a->n_draft == 0) return a->k_max < 4 ? a->k_max : 4;
    /* Try every block size once before choosing: a cost extrapolated from
     * other sizes can be off by 2x (a block's cost jumps where the matmul
     * kernels need a second pass), and a wrong guess is never corrected if
     * that size is never chosen. */
    for (int b = 1; b <= a->k_max + 1; b++)
        if (a->n_target[b] == 0) return b - 1;
    int best = 0;
    double best_rate = duet_spec_adapt_rate(a, 0);
    for (int g = 1; g <= a->k_max; g++) {
        const double rate = duet_spec_adapt_rate(a, g);
        if (rate > best_rate) best_rate = rate, best = g;
    }
    /* Now and then a neighbour of the best, so that the costs beside it and
     * the acceptance one position further stay current as the text changes. */
    if (++a->choices % 24 == 0) {
        const int alt = (a->choices / 24) % 2 ? best + 1 : best - 1;
        if (alt >= 0 && alt <= a->k_max) return alt;
    }
    return best;
}

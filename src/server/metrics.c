/* /metrics: counters and latency histograms in Prometheus' text format. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

/* Upper bounds (seconds) of the histogram buckets; the last is +Inf. */
static const double bounds[SRV_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 1e300};
static const char *status_label[6] = {"2xx", "4xx", "5xx", "499", "503", "413"};

void srv_metrics_init(srv_metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

static void observe(srv_hist *h, double x) {
    h->sum += x;
    h->count++;
    for (int i = 0; i < SRV_HIST_BUCKETS; i++)
        if (x <= bounds[i]) {
            h->bucket[i]++;
            break;
        }
}

void srv_metrics_request(srv_metrics *m, int profile, int status) {
    int cls = status == 499 ? 3 : status == 503 ? 4 : status == 413 ? 5 : status >= 500 ? 2 : status >= 400 ? 1 : 0;
    if (profile < 0 || profile >= SRV_MAX_PROFILES) profile = SRV_MAX_PROFILES;
    pthread_mutex_lock(&m->mu);
    m->requests[profile][cls]++;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_job(srv_metrics *m, const srv_config *c, const srv_job *j) {
    const duet_stats *st = &j->stats;
    pthread_mutex_lock(&m->mu);
    const int target = j->prof.model, draft = j->prof.draft;
    if (target >= 0 && target < SRV_MAX_MODELS) {
        m->tokens_evaluated[target] += st->target_tokens;
        m->tokens_generated[target] += st->n_generated;
    }
    const int tuned = j->prof.kind == SRV_FUSE ? j->prof.tuned : -1; /* proxy: two SLMs, the same tokens each */
    if (draft >= 0 && draft < SRV_MAX_MODELS) m->tokens_evaluated[draft] += st->draft_tokens / (tuned >= 0 ? 2 : 1);
    if (tuned >= 0 && tuned < SRV_MAX_MODELS) m->tokens_evaluated[tuned] += st->draft_tokens / 2;
    m->drafted += st->drafted, m->accepted += st->accepted;
    for (int i = 0; i < DUET_ORIGIN_COUNT; i++) m->by_origin[i] += st->by_origin[i];
    if (j->n_tok > 0 && j->t_first > 0) {
        observe(&m->ttft, j->t_first - j->t_queued);
        if (j->n_tok > 1) observe(&m->tpot, (j->t_end - j->t_first) / (j->n_tok - 1));
    }
    observe(&m->duration, j->t_end - j->t_queued);
    pthread_mutex_unlock(&m->mu);
    (void)c;
}

typedef struct {
    char *buf;
    size_t len, cap;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->buf ? b->buf + b->len : NULL, b->buf ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (b->buf && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *t = realloc(b->buf, cap);
        if (!t) return;
        b->buf = t, b->cap = cap;
    }
}

static void put_hist(sbuf *b, const char *name, const char *help, const srv_hist *h) {
    put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    long cum = 0;
    for (int i = 0; i < SRV_HIST_BUCKETS; i++) {
        cum += h->bucket[i];
        if (i == SRV_HIST_BUCKETS - 1) put(b, "%s_bucket{le=\"+Inf\"} %ld\n", name, cum);
        else put(b, "%s_bucket{le=\"%g\"} %ld\n", name, bounds[i], cum);
    }
    put(b, "%s_sum %.6f\n%s_count %ld\n", name, h->sum, name, h->count);
}

char *srv_metrics_text(srv_metrics *m, const srv_config *c) {
    sbuf b = {0};
    pthread_mutex_lock(&m->mu);
    put(&b, "# HELP duet_requests_total HTTP requests to the API, by profile and status.\n"
            "# TYPE duet_requests_total counter\n");
    for (int p = 0; p <= SRV_MAX_PROFILES; p++)
        for (int s = 0; s < 6; s++) {
            if (p < SRV_MAX_PROFILES && p >= c->n_profiles) continue;
            if (!m->requests[p][s] && (p == SRV_MAX_PROFILES || s != 0)) continue;
            put(&b, "duet_requests_total{profile=\"%s\",status=\"%s\"} %ld\n",
                p < SRV_MAX_PROFILES ? c->profiles[p].name : "none", status_label[s], m->requests[p][s]);
        }
    put(&b, "# HELP duet_tokens_evaluated_total Tokens each model evaluated (prompts, drafts, verification blocks).\n"
            "# TYPE duet_tokens_evaluated_total counter\n");
    for (int i = 0; i < c->n_models; i++)
        put(&b, "duet_tokens_evaluated_total{model=\"%s\"} %ld\n", c->models[i].name, m->tokens_evaluated[i]);
    put(&b, "# HELP duet_tokens_generated_total Tokens returned to clients, by the model that answered.\n"
            "# TYPE duet_tokens_generated_total counter\n");
    for (int i = 0; i < c->n_models; i++)
        put(&b, "duet_tokens_generated_total{model=\"%s\"} %ld\n", c->models[i].name, m->tokens_generated[i]);
    put(&b, "# HELP duet_tokens_by_origin_total Returned tokens by who produced them.\n"
            "# TYPE duet_tokens_by_origin_total counter\n");
    for (int i = 0; i < DUET_ORIGIN_COUNT; i++)
        put(&b, "duet_tokens_by_origin_total{origin=\"%s\"} %ld\n", duet_origin_name(i), m->by_origin[i]);
    put(&b, "# HELP duet_draft_tokens_total Draft tokens proposed.\n# TYPE duet_draft_tokens_total counter\n"
            "duet_draft_tokens_total %ld\n", m->drafted);
    put(&b, "# HELP duet_draft_accepted_total Draft tokens the target kept.\n# TYPE duet_draft_accepted_total counter\n"
            "duet_draft_accepted_total %ld\n", m->accepted);
    put(&b, "# HELP duet_forward_passes_total Passes over the models' weights (each step's pass per model, each echo "
            "scoring pass).\n# TYPE duet_forward_passes_total counter\nduet_forward_passes_total %ld\n", m->forward_passes);
    put(&b, "# HELP duet_queue_depth Requests waiting for a slot.\n# TYPE duet_queue_depth gauge\n"
            "duet_queue_depth %d\n", m->queue_depth);
    put(&b, "# HELP duet_slots_busy Slots decoding a request.\n# TYPE duet_slots_busy gauge\nduet_slots_busy %d\n",
        m->active);
    put(&b, "# HELP duet_slots_total Slots configured.\n# TYPE duet_slots_total gauge\nduet_slots_total %d\n", c->slots);
    put_hist(&b, "duet_time_to_first_token_seconds", "From the request's arrival to its first token.", &m->ttft);
    put_hist(&b, "duet_time_per_output_token_seconds", "Mean time between output tokens, per request.", &m->tpot);
    put_hist(&b, "duet_request_duration_seconds", "From arrival to the last token.", &m->duration);
    pthread_mutex_unlock(&m->mu);
    return b.buf;
}

/* duet eval: the accuracy of a collaboration strategy (the SLM alone, the
 * LLM alone, routing, a cascade, token deferral) on cloze items, with the
 * share of requests and tokens that needed the LLM and the seconds each
 * model ran. Items go through one strategy driver, --batch requests stepped
 * together (each request its own sequences of every model). Also the shared
 * runner of duet route-fit (cmd_eval.h). */
#define _GNU_SOURCE /* getline */
#include "cmd_eval.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "duet/lm_local.h"
#include "duet/threadpool.h"
#include "opts.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- models -------------------------------------------------------------------- */

int eval_env_open(eval_env *e, const char *cmd, const char *const *paths, const char *const *roles, int n,
                  int threads, int max_new, int batch) {
    memset(e, 0, sizeof *e);
    e->cmd = cmd;
    e->max_new = max_new;
    e->batch = batch;
    duet_err err = {0};
    if (!(e->pool = duet_pool_new(threads))) {
        fprintf(stderr, "duet %s: cannot start %d threads\n", cmd, threads);
        return -1;
    }
    duet_model_params mp = duet_model_default_params();
    mp.pool = e->pool;
    mp.n_threads = threads;
    for (int i = 0; i < n; i++) {
        eval_model *m = &e->mod[i];
        m->path = paths[i], m->role = roles[i];
        if (duet_model_load(&m->m, m->path, &mp, &err) < 0) {
            fprintf(stderr, "duet %s: %s\n", cmd, err.msg);
            return -1;
        }
        e->n_models = i + 1;
        const duet_gguf *g = duet_model_gguf(m->m);
        if (i == 0) {
            if (duet_gguf_find_key(g, "tokenizer.ggml.model") < 0) {
                fprintf(stderr, "duet %s: %s has no tokenizer\n", cmd, m->path);
                return -1;
            }
            if (duet_vocab_load(&e->vocab, g, &err) < 0) {
                fprintf(stderr, "duet %s: %s: %s\n", cmd, m->path, err.msg);
                return -1;
            }
            if (duet_route_words_new(&e->words, e->vocab, &err) < 0) {
                fprintf(stderr, "duet %s: %s\n", cmd, err.msg);
                return -1;
            }
            int ns = duet_vocab_eog_ids(e->vocab, &e->stop);
            if (ns < 0) {
                fprintf(stderr, "duet %s: out of memory\n", cmd);
                return -1;
            }
            e->n_stop = ns;
        } else {
            duet_vocab *v = NULL;
            int rc = duet_gguf_find_key(g, "tokenizer.ggml.model") >= 0 ? duet_vocab_load(&v, g, &err) : 0;
            if (rc == 0 && v) rc = duet_vocab_check_compatible(e->vocab, v, &err);
            duet_vocab_free(v);
            if (rc == 0 && duet_model_n_vocab(m->m) != duet_model_n_vocab(e->mod[0].m))
                rc = duet_err_set(&err, DUET_EINVAL, "vocabulary of %d tokens, %s has %d", duet_model_n_vocab(m->m),
                                  e->mod[0].path, duet_model_n_vocab(e->mod[0].m));
            if (rc < 0) {
                fprintf(stderr, "duet %s: %s and %s do not share a vocabulary: %s\n", cmd, m->path, e->mod[0].path,
                        err.msg);
                return -1;
            }
        }
        const int nt = duet_model_hparams(m->m)->n_ctx_train;
        if (i == 0 || (nt > 0 && nt < e->n_ctx)) e->n_ctx = nt;
    }
    if (e->n_ctx <= 0) e->n_ctx = 2048;
    return 0;
}

void eval_env_close(eval_env *e) {
    for (int i = 0; i < e->n_models; i++) duet_model_free(e->mod[i].m);
    duet_vocab_free(e->vocab);
    duet_route_words_free(e->words);
    free(e->stop);
    duet_pool_free(e->pool);
    memset(e, 0, sizeof *e);
}

int eval_items_tokenize(eval_env *e, eval_items *it) {
    const int flags = duet_vocab_add_bos(e->vocab) ? DUET_TOK_ADD_BOS : 0;
    for (int i = 0; i < it->n; i++) {
        eval_item *x = &it->v[i];
        int n = duet_tokenize_alloc(e->vocab, x->prompt, strlen(x->prompt), flags, &x->tok);
        if (n <= 0) return eval_item_error(e->cmd, it->path, x->line, "the prompt does not tokenize (is it valid UTF-8?)");
        x->n_tok = n;
        if (n + e->max_new > e->n_ctx) {
            char why[160];
            snprintf(why, sizeof why, "the prompt has %d tokens; with %d new ones it does not fit the context (%d)", n,
                     e->max_new, e->n_ctx);
            return eval_item_error(e->cmd, it->path, x->line, why);
        }
    }
    return 0;
}

/* ---- a metered model: a duet_lm forwarding to a local sequence -----------------
 * The driver charges every block the whole pass it was in, so summing the
 * requests' own seconds counts a batched pass once per request. This wrapper
 * times each pass over the model once (eval, or eval_many of all the blocks
 * of that model in a step), which is the model's real busy time. */
typedef struct {
    duet_lm pub;
    duet_lm *inner;
    eval_meter *meter;
} metered_lm;

static duet_lm *inner_of(duet_lm *lm) { return ((metered_lm *)lm->self)->inner; }

static int m_eval(duet_lm *lm, const int32_t *tok, int n, float *logits, int n_logits, duet_err *err) {
    metered_lm *m = lm->self;
    const double t0 = now_s();
    int rc = duet_lm_eval(m->inner, tok, n, logits, n_logits, err);
    m->meter->seconds += now_s() - t0;
    m->meter->passes++;
    if (rc >= 0) m->meter->tokens += n;
    return rc;
}

static int m_eval_many(const duet_lm_block *b, int n, duet_err *err) {
    duet_lm_block stack[32], *in = n <= 32 ? stack : malloc(sizeof *in * (size_t)n);
    if (!in) return duet_err_set(err, DUET_ENOMEM, "out of memory for %d blocks", n);
    long tokens = 0;
    for (int i = 0; i < n; i++) in[i] = b[i], in[i].lm = inner_of(b[i].lm), tokens += b[i].n;
    metered_lm *m = b[0].lm->self;
    const double t0 = now_s();
    int rc = duet_lm_eval_blocks(in, n, err);
    m->meter->seconds += now_s() - t0;
    m->meter->passes++;
    if (rc >= 0) m->meter->tokens += tokens;
    if (in != stack) free(in);
    return rc;
}

static int m_score(duet_lm *lm, const int32_t *tok, int n, float *lp, int top_k, int32_t *top_id, float *top_lp,
                   duet_err *err) {
    return duet_lm_score(inner_of(lm), tok, n, lp, top_k, top_id, top_lp, err);
}
static int m_rollback(duet_lm *lm, int n_keep, duet_err *err) { return duet_lm_rollback(inner_of(lm), n_keep, err); }
static int m_pos(const duet_lm *lm) { return duet_lm_pos(((const metered_lm *)lm->self)->inner); }
static int m_n_ctx(const duet_lm *lm) { return duet_lm_n_ctx(((const metered_lm *)lm->self)->inner); }
static int m_n_ctx_train(const duet_lm *lm) { return duet_lm_n_ctx_train(((const metered_lm *)lm->self)->inner); }
static int m_set_dc(duet_lm *lm, int on) { return duet_lm_set_decode_consistent(inner_of(lm), on); }

static const duet_lm_i metered_iface = {
    .kind = "metered",
    .caps = DUET_LM_CAP_LOGITS | DUET_LM_CAP_SCORE | DUET_LM_CAP_GENERATE | DUET_LM_CAP_HIDDEN,
    .eval = m_eval,
    .eval_many = m_eval_many, .score = m_score, .rollback = m_rollback, .pos = m_pos, .n_ctx = m_n_ctx,
    .n_ctx_train = m_n_ctx_train, .set_decode_consistent = m_set_dc, .free = NULL};

static int metered_new(metered_lm *m, duet_model *model, int n_ctx, const char *name, eval_meter *meter,
                       duet_err *err) {
    memset(m, 0, sizeof *m);
    int rc = duet_lm_local_new(&m->inner, model, n_ctx, name, err);
    if (rc < 0) return rc;
    m->meter = meter;
    m->pub = (duet_lm){.iface = &metered_iface, .self = m, .engine = m->inner->engine, .n_vocab = m->inner->n_vocab,
                       .n_embd = m->inner->n_embd, .name = name, .owned = 0};
    return 0;
}

/* ---- the runner ------------------------------------------------------------------ */

typedef struct {
    int32_t *ids;     /* (cap) emitted */
    float *lp;        /* (cap) their log-probabilities */
    int n, cap;
} collect;

static int on_token(void *user, const duet_token_out *t) {
    collect *c = user;
    if (c->n < c->cap) c->ids[c->n] = t->id, c->lp[c->n] = t->logprob, c->n++;
    return 0;
}

/* One slot: the sequences and strategies one request at a time uses. */
typedef struct {
    metered_lm lm[EVAL_MAX_MODELS];
    int has_lm[EVAL_MAX_MODELS];
    duet_sampler *smp[EVAL_MAX_MODELS + 1];
    duet_strategy *leg[EVAL_MAX_MODELS]; /* plain on each model used */
    duet_strategy *top;                  /* what the driver steps */
    collect col;
    int item;                            /* -1: free */
} slot;

static void slot_free(slot *s) {
    int top_is_leg = 0; /* plain: the top strategy is a leg */
    for (int i = 0; i < EVAL_MAX_MODELS; i++) top_is_leg |= s->top == s->leg[i];
    if (!top_is_leg) duet_strategy_free(s->top);
    for (int i = 0; i < EVAL_MAX_MODELS; i++) duet_strategy_free(s->leg[i]);
    for (int i = 0; i < EVAL_MAX_MODELS + 1; i++) duet_sampler_free(s->smp[i]);
    for (int i = 0; i < EVAL_MAX_MODELS; i++)
        if (s->has_lm[i]) duet_lm_free(s->lm[i].inner);
    free(s->col.ids), free(s->col.lp);
    memset(s, 0, sizeof *s);
}

static int slot_lm(eval_env *e, slot *s, int k, duet_err *err) {
    if (s->has_lm[k]) return 0;
    int rc = metered_new(&s->lm[k], e->mod[k].m, e->n_ctx, e->mod[k].role, &e->mod[k].meter, err);
    if (rc == 0) s->has_lm[k] = 1;
    return rc;
}

static int greedy(duet_sampler **out, int n_vocab, duet_err *err) {
    duet_sampler_params p = duet_sampler_default_params();
    p.temp = 0;
    return duet_sampler_new_checked(out, &p, n_vocab, err);
}

static int slot_leg(eval_env *e, slot *s, int k, duet_err *err) {
    if (s->leg[k]) return 0;
    int rc = slot_lm(e, s, k, err);
    if (rc == 0) rc = greedy(&s->smp[k], duet_model_n_vocab(e->mod[k].m), err);
    if (rc == 0) rc = duet_strategy_plain(&s->leg[k], &s->lm[k].pub, s->smp[k], err);
    return rc;
}

static int slot_init(eval_env *e, const eval_spec *sp, slot *s, duet_err *err) {
    memset(s, 0, sizeof *s);
    s->item = -1;
    s->col.cap = e->max_new + 1;
    s->col.ids = malloc(sizeof *s->col.ids * (size_t)s->col.cap);
    s->col.lp = malloc(sizeof *s->col.lp * (size_t)s->col.cap);
    if (!s->col.ids || !s->col.lp) return duet_err_set(err, DUET_ENOMEM, "out of memory");
    int rc = 0;
    switch (sp->kind) {
    case EVAL_PLAIN:
        if ((rc = slot_leg(e, s, sp->model, err)) == 0) s->top = s->leg[sp->model];
        break;
    case EVAL_ROUTE:
        if ((rc = slot_leg(e, s, sp->slm, err)) == 0 && (rc = slot_leg(e, s, sp->llm, err)) == 0)
            rc = duet_strategy_route(&s->top, &s->lm[sp->slm].pub, e->words, s->leg[sp->slm], s->leg[sp->llm],
                                     sp->router, err);
        break;
    case EVAL_CASCADE: {
        duet_strategy *tiers[EVAL_MAX_MODELS];
        for (int i = 0; i < sp->n_tiers && rc == 0; i++)
            if ((rc = slot_leg(e, s, sp->tiers[i], err)) == 0) tiers[i] = s->leg[sp->tiers[i]];
        if (rc == 0) rc = duet_strategy_cascade(&s->top, tiers, sp->thr, sp->n_tiers, sp->use_min, err);
        break;
    }
    case EVAL_DEFER:
        if ((rc = slot_lm(e, s, sp->slm, err)) == 0 && (rc = slot_lm(e, s, sp->llm, err)) == 0 &&
            (rc = greedy(&s->smp[EVAL_MAX_MODELS], duet_model_n_vocab(e->mod[sp->llm].m), err)) == 0)
            rc = duet_strategy_defer(&s->top, &s->lm[sp->slm].pub, &s->lm[sp->llm].pub, s->smp[EVAL_MAX_MODELS],
                                     sp->eta, err);
        break;
    }
    return rc;
}

/* The text of ids, end-of-generation tokens left out; the leading space kept
 * (SentencePiece vocabularies drop it by default). */
static char *detok(const eval_env *e, const int32_t *ids, int n_ids) {
    size_t len = 0, cap = 64;
    char *out = malloc(cap);
    duet_detok_stream *ds = duet_detok_stream_new(e->vocab, DUET_DETOK_KEEP_SPACE);
    for (int i = 0; out && ds && i <= n_ids; i++) {
        size_t n = 0;
        const char *s;
        if (i < n_ids) {
            if (duet_vocab_is_eog(e->vocab, ids[i])) continue;
            s = duet_detok_stream_push(ds, ids[i], &n);
        } else {
            s = duet_detok_stream_flush(ds, &n);
        }
        if (!s || !n) continue;
        if (len + n + 1 > cap) {
            char *t = realloc(out, cap = (len + n + 1) * 2);
            if (!t) {
                free(out);
                out = NULL;
                break;
            }
            out = t;
        }
        memcpy(out + len, s, n);
        len += n;
    }
    if (out) out[len] = 0;
    if (!ds) free(out), out = NULL;
    duet_detok_stream_free(ds);
    return out;
}

/* The finished request of slot s becomes out. */
static int harvest(eval_env *e, const eval_spec *sp, slot *s, const eval_item *x, eval_out *o, duet_err *err) {
    memset(o, 0, sizeof *o);
    duet_stats st;
    duet_strategy_stats(s->top, &st);
    o->finish = duet_strategy_done(s->top);
    if (o->finish == DUET_FINISH_ERROR) {
        const int code = s->top->err.code < 0 ? s->top->err.code : DUET_EINVAL;
        return duet_err_set(err, code, "the item of line %d: %s", x->line, s->top->err.msg);
    }
    o->n_gen = s->col.n;
    o->ids = malloc(sizeof *o->ids * (size_t)(s->col.n ? s->col.n : 1));
    if (!o->ids || !(o->text = detok(e, s->col.ids, s->col.n))) return duet_err_set(err, DUET_ENOMEM, "out of memory");
    memcpy(o->ids, s->col.ids, sizeof *o->ids * (size_t)s->col.n);
    o->correct = x->answer ? eval_verdict(o->text, x->answer, o->finish == DUET_FINISH_STOP) : 0;
    double sum = 0, lo = 0;
    for (int i = 0; i < s->col.n; i++) {
        sum += s->col.lp[i];
        lo = i == 0 || s->col.lp[i] < lo ? s->col.lp[i] : lo;
    }
    o->mean_lp = s->col.n ? sum / s->col.n : 0;
    o->min_lp = lo;
    o->latency = st.t_total;
    o->escalated = st.escalated;
    o->confidence = st.confidence;
    const int llm = sp->kind == EVAL_CASCADE ? sp->tiers[sp->n_tiers - 1] : sp->llm;
    switch (sp->kind) {
    case EVAL_PLAIN:
        o->by = sp->model;
        o->gen[sp->model] = st.n_generated;
        break;
    case EVAL_ROUTE: {
        o->by = st.escalated ? sp->llm : sp->slm;
        o->gen[o->by] = st.n_generated;
        o->has_sig = 1;
        memcpy(o->sig, st.signals, sizeof o->sig);
        break;
    }
    case EVAL_CASCADE:
        o->by = sp->tiers[st.escalated];
        for (int t = 0; t <= st.escalated && t < sp->n_tiers; t++) {
            duet_stats ts;
            duet_strategy_stats(s->leg[sp->tiers[t]], &ts);
            o->gen[sp->tiers[t]] += ts.n_generated;
        }
        break;
    case EVAL_DEFER:
        o->by = -1;
        o->deferred = st.deferred;
        o->gen[sp->slm] = st.by_origin[DUET_BY_SLM];
        o->gen[sp->llm] = st.by_origin[DUET_BY_DEFER];
        break;
    }
    o->llm_used = sp->kind == EVAL_DEFER ? st.deferred > 0 : llm >= 0 && o->by == llm && st.n_generated > 0;
    return 0;
}

static void progress(const eval_env *e, const char *what, int done, int n, int correct, int llm, double t0,
                     int *last_tenth) {
    const int scored = correct >= 0; /* the signal pass scores nothing */
    if (e->quiet) return;
    const double t = now_s() - t0;
    if (isatty(2)) {
        const int w = 30, fill = n ? (int)((long)w * done / n) : w;
        fprintf(stderr, "\r%-14s [", what);
        for (int i = 0; i < w; i++) fputc(i < fill ? '#' : '.', stderr);
        fprintf(stderr, "] %d/%d", done, n);
        if (scored)
            fprintf(stderr, "  acc %.3f  llm %.2f", done ? (double)correct / done : 0, done ? (double)llm / done : 0);
        fprintf(stderr, "  %.0fs", t);
        if (done == n) fputc('\n', stderr);
        fflush(stderr);
        return;
    }
    const int tenth = n ? (int)(10L * done / n) : 10;
    if (tenth == *last_tenth && done != n) return;
    *last_tenth = tenth;
    if (scored)
        fprintf(stderr, "%s: %d/%d items, accuracy %.3f, llm share %.2f, %.1fs\n", what, done, n,
                done ? (double)correct / done : 0, done ? (double)llm / done : 0, t);
    else
        fprintf(stderr, "%s: %d/%d items, %.1fs\n", what, done, n, t);
}

static int run_once(eval_env *e, const eval_spec *sp, const eval_items *it, eval_out *out, const char *what,
                    duet_err *err) {
    const int nb = e->batch < it->n ? e->batch : it->n;
    slot *slots = calloc((size_t)nb, sizeof *slots);
    duet_driver *d = NULL;
    int rc = slots ? 0 : duet_err_set(err, DUET_ENOMEM, "out of memory");
    for (int i = 0; i < nb && rc == 0; i++) rc = slot_init(e, sp, &slots[i], err);
    if (rc == 0) rc = duet_driver_new(&d, err);
    int next = 0, done = 0, correct = 0, llm = 0, last_tenth = -1;
    const double t0 = now_s();
    memset(out, 0, sizeof *out * (size_t)it->n);
    while (rc == 0 && done < it->n) {
        for (int i = 0; i < nb && rc == 0 && next < it->n; i++) {
            slot *s = &slots[i];
            if (s->item >= 0) continue;
            const eval_item *x = &it->v[next];
            s->col.n = 0;
            duet_request q = {.prompt = x->tok, .n_prompt = x->n_tok, .max_new = e->max_new, .stop_ids = e->stop,
                              .n_stop_ids = e->n_stop, .emit = on_token, .user = &s->col, .want_logprob = 1};
            rc = duet_strategy_reset(s->top, &q, err);
            if (rc < 0) {
                char why[sizeof err->msg];
                snprintf(why, sizeof why, "%s", err->msg);
                duet_err_set(err, rc, "%s:%d: %s", it->path, x->line, why);
                break;
            }
            if ((rc = duet_driver_add(d, s->top, err)) < 0) break;
            s->item = next++;
        }
        if (rc < 0) break;
        int act = duet_driver_step(d, err);
        if (act < 0) {
            rc = act;
            break;
        }
        for (int i = 0; i < nb && rc == 0; i++) {
            slot *s = &slots[i];
            if (s->item < 0 || duet_strategy_done(s->top) == DUET_FINISH_NONE) continue;
            eval_out *o = &out[s->item];
            rc = harvest(e, sp, s, &it->v[s->item], o, err);
            if (rc < 0) break;
            correct += o->correct > 0, llm += o->llm_used, done++;
            s->item = -1;
            progress(e, what, done, it->n, correct, llm, t0, &last_tenth);
        }
    }
    duet_driver_free(d);
    for (int i = 0; slots && i < nb; i++) slot_free(&slots[i]);
    free(slots);
    if (rc < 0) eval_outs_free(out, it->n);
    return rc < 0 ? rc : 0;
}

void eval_outs_free(eval_out *out, int n) {
    for (int i = 0; out && i < n; i++) free(out[i].text), free(out[i].ids), out[i].text = NULL, out[i].ids = NULL;
}

/* The undecided answers (verdict -1): the model that wrote each continues it
 * greedily (a plain strategy on that model; deferral goes on deferring) from
 * the prompt and the answer so far, up to EVAL_DECIDE_TOKENS tokens in all;
 * the whole text decides. Not part of the strategy's accounting: the meters
 * are put back. */
static int extend(eval_env *e, const eval_spec *sp, const eval_items *it, eval_out *out, duet_err *err) {
    int rc = 0;
    for (int by = -1; by < e->n_models && rc == 0; by++) { /* -1: deferral's mixed answers */
        eval_items sub = {.path = it->path};
        int *idx = malloc(sizeof *idx * (size_t)it->n);
        sub.v = calloc((size_t)it->n, sizeof *sub.v);
        if (!idx || !sub.v) {
            free(idx), free(sub.v);
            return duet_err_set(err, DUET_ENOMEM, "out of memory");
        }
        const int more = EVAL_DECIDE_TOKENS - e->max_new;
        for (int i = 0; i < it->n && rc == 0; i++) {
            const eval_out *o = &out[i];
            if (o->correct >= 0 || o->by != by || more <= 0) continue;
            const eval_item *x = &it->v[i];
            if (x->n_tok + o->n_gen + more > e->n_ctx) continue; /* no room: it stays undecided */
            eval_item *y = &sub.v[sub.n];
            *y = *x;
            y->n_tok = x->n_tok + o->n_gen;
            if (!(y->tok = malloc(sizeof *y->tok * (size_t)y->n_tok))) {
                rc = duet_err_set(err, DUET_ENOMEM, "out of memory");
                break;
            }
            memcpy(y->tok, x->tok, sizeof *y->tok * (size_t)x->n_tok);
            memcpy(y->tok + x->n_tok, o->ids, sizeof *y->tok * (size_t)o->n_gen);
            idx[sub.n++] = i;
        }
        eval_out *ext = rc == 0 && sub.n ? calloc((size_t)sub.n, sizeof *ext) : NULL;
        if (rc == 0 && sub.n && !ext) rc = duet_err_set(err, DUET_ENOMEM, "out of memory");
        if (rc == 0 && sub.n) {
            eval_spec one = {.kind = EVAL_PLAIN, .model = by, .slm = sp->slm, .llm = sp->llm};
            eval_meter saved[EVAL_MAX_MODELS];
            for (int k = 0; k < e->n_models; k++) saved[k] = e->mod[k].meter;
            const int max_new = e->max_new;
            e->max_new = more;
            rc = run_once(e, by < 0 ? sp : &one, &sub, ext, "extend", err);
            e->max_new = max_new;
            for (int k = 0; k < e->n_models; k++) e->mod[k].meter = saved[k];
            for (int k = 0; rc == 0 && k < sub.n; k++) {
                eval_out *o = &out[idx[k]];
                int32_t *all = realloc(o->ids, sizeof *all * (size_t)(o->n_gen + ext[k].n_gen));
                if (!all) {
                    rc = duet_err_set(err, DUET_ENOMEM, "out of memory");
                    break;
                }
                o->ids = all;
                memcpy(all + o->n_gen, ext[k].ids, sizeof *all * (size_t)ext[k].n_gen);
                char *text = detok(e, all, o->n_gen + ext[k].n_gen);
                if (!text) {
                    rc = duet_err_set(err, DUET_ENOMEM, "out of memory");
                    break;
                }
                free(o->text);
                o->text = text;
                o->extended = 1;
                o->correct = eval_verdict(text, it->v[idx[k]].answer, ext[k].finish == DUET_FINISH_STOP);
            }
            if (ext) eval_outs_free(ext, sub.n);
        }
        free(ext);
        for (int k = 0; k < sub.n; k++) free(sub.v[k].tok);
        free(sub.v), free(idx);
    }
    for (int i = 0; i < it->n; i++)
        if (out[i].correct < 0) out[i].correct = 0; /* still undecided after EVAL_DECIDE_TOKENS: wrong */
    return rc;
}

int eval_run(eval_env *e, const eval_spec *sp, const eval_items *it, eval_out *out, const char *what,
             duet_err *err) {
    int rc = run_once(e, sp, it, out, what, err);
    if (rc == 0) rc = extend(e, sp, it, out, err);
    if (rc < 0) eval_outs_free(out, it->n);
    return rc;
}

int eval_signals(eval_env *e, int slm, eval_items *it, double *seconds, duet_err *err) {
    enum { MAX_ROWS = 256 }; /* as the route strategy: the prompt's last 256 positions */
    duet_lm *lm = NULL;
    const int nv = duet_model_n_vocab(e->mod[slm].m), ne = duet_model_hparams(e->mod[slm].m)->n_embd;
    float *rows = malloc(sizeof *rows * (size_t)nv * MAX_ROWS);  /* (MAX_ROWS, n_vocab) */
    float *hidden = malloc(sizeof *rows * (size_t)ne * MAX_ROWS); /* (MAX_ROWS, n_embd) */
    int rc = rows && hidden ? duet_lm_local_new(&lm, e->mod[slm].m, e->n_ctx, "signals", err)
                            : duet_err_set(err, DUET_ENOMEM, "out of memory");
    const double t0 = now_s();
    int last_tenth = -1, done = 0;
    for (int i = 0; rc == 0 && i < it->n; i++) {
        eval_item *x = &it->v[i];
        if (x->has_sig && x->hidden) continue;
        const int n_rows = x->n_tok < MAX_ROWS ? x->n_tok : MAX_ROWS;
        if ((rc = duet_lm_rollback(lm, 0, err)) < 0) break;
        if ((rc = duet_eval_hidden(duet_lm_local_seq(lm), x->tok, x->n_tok, rows, hidden, n_rows, err)) < 0) break;
        if (!x->has_sig) duet_route_signals(x->sig, rows, n_rows, nv, x->tok, x->n_tok, e->words);
        x->has_sig = 1;
        if (!x->hidden) {
            if (!(x->hidden = malloc(sizeof *x->hidden * (size_t)ne))) {
                rc = duet_err_set(err, DUET_ENOMEM, "out of memory");
                break;
            }
            x->n_hidden = ne;
            duet_route_pool_hidden(x->hidden, hidden, n_rows, ne);
        }
        progress(e, "signals", ++done, it->n, -1, 0, t0, &last_tenth);
    }
    if (seconds) *seconds = now_s() - t0;
    duet_lm_free(lm);
    free(rows), free(hidden);
    return rc < 0 ? rc : 0;
}

double eval_auc(const float *score, const uint8_t *y, int n) {
    /* Mann-Whitney: P(score of a positive > score of a negative), ties half */
    long pos = 0, neg = 0;
    for (int i = 0; i < n; i++) pos += y[i] != 0, neg += y[i] == 0;
    if (!pos || !neg) return NAN;
    double wins = 0;
    for (int i = 0; i < n; i++) {
        if (!y[i]) continue;
        for (int j = 0; j < n; j++) {
            if (y[j]) continue;
            wins += score[i] > score[j] ? 1 : score[i] == score[j] ? 0.5 : 0;
        }
    }
    return wins / ((double)pos * (double)neg);
}

int eval_write_atomic(const char *cmd, const char *path, const char *text, size_t len) {
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) {
        fprintf(stderr, "duet %s: out of memory\n", cmd);
        return -1;
    }
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int ok = f != NULL;
    if (ok) ok = fwrite(text, 1, len, f) == len;
    if (f) ok = (fflush(f) == 0) & ok, ok = (fsync(fileno(f)) == 0) & ok, ok = (fclose(f) == 0) & ok;
    if (ok && rename(tmp, path) != 0) ok = 0;
    if (!ok) {
        fprintf(stderr, "duet %s: cannot write %s: %s\n", cmd, path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return ok ? 0 : -1;
}

/* ---- duet eval ------------------------------------------------------------------- */

static const char usage_head[] =
    "usage: duet eval -m LLM --slm SLM [--mid MODEL ...] -f ITEMS.jsonl --strategy slm|llm|route|cascade|defer\n"
    "                 [--llm-share X | --threshold T] [--router FILE] [--signal NAME] [--eta E] [--json]\n"
    "                 [--dump FILE] [-t N]\n"
    "  Accuracy of a strategy on cloze items: one {\"prompt\": ..., \"answer\": ...} per line. An item is\n"
    "  correct when the greedy continuation (-n tokens, ending at end-of-text) starts with \" \" + answer\n"
    "  followed by a non-letter, or by end-of-text; an answer that runs out inside the word is continued\n"
    "  by the model that wrote it, up to 16 tokens, before it is judged (bench/routing/README.md).\n"
    "  Strategies: slm, llm (one model alone); route (the router decides per request from the SLM's\n"
    "  signals over the prompt: --router FILE from duet route-fit, or --signal NAME|random with\n"
    "  --threshold T or --llm-share X calibrated on these items' own signals -- calibrate on a\n"
    "  separate split with route-fit for an honest number); cascade (slm -> --mid ... -> llm, each\n"
    "  tier escalating when its answer's mean token log-probability is below --threshold, or the\n"
    "  threshold that sends --llm-share X of these items to the LLM); defer (token deferral:\n"
    "  the LLM supplies every token where the SLM's top probability is below --eta).\n"
    "  --dump writes one JSON record per item (correctness, the SLM's signals, the answer's mean/min\n"
    "  token log-probability): the dumps of --strategy slm and llm are what bench/routing/report.py\n"
    "  needs to draw routing and cascade curves over every threshold offline.\n";

/* --threshold, repeatable: each occurrence appends (a cascade takes one per judged tier) */
typedef struct {
    float v[EVAL_MAX_MODELS];
    int n;
} thr_list;

static int parse_threshold(const char *v, void *dest) {
    thr_list *t = dest;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno == ERANGE || isnan(x) || t->n == EVAL_MAX_MODELS) return -1;
    t->v[t->n++] = (float)x;
    return 0;
}

static int parse_share(const char *v, void *dest) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || !(x >= 0 && x <= 1)) return -1;
    *(float *)dest = (float)x;
    return 0;
}

enum { S_SLM, S_LLM, S_ROUTE, S_CASCADE, S_DEFER };
static const char *const strategy_names[] = {"slm", "llm", "route", "cascade", "defer", NULL};

typedef struct {
    const char *llm, *slm, *items, *router_path, *signal, *dump;
    const char *mid_paths[EVAL_MAX_MODELS];
    duet_opt_list mids;
    int strategy, strategy_set, json, threads, max_new, batch, limit, use_min, quiet;
    float share, eta;
    thr_list thr;
    int share_set, threshold_set, eta_set;
} eval_args;

/* The shared threshold of every cascade tier that sends round(share * n) of
 * the items to the last tier: conf[t][i] is tier t's confidence on item i. */
static float cascade_calibrate(float *const *conf, int n_judged, int n, float share) {
    const int want = (int)lrint((double)share * n);
    float *v = malloc(sizeof *v * (size_t)n);
    /* an item reaches the last tier when every judged tier is below T: when T
     * exceeds the largest of its confidences */
    for (int i = 0; v && i < n; i++) {
        float mx = -INFINITY;
        for (int t = 0; t < n_judged; t++) mx = conf[t][i] > mx ? conf[t][i] : mx;
        v[i] = mx;
    }
    if (!v) return 0;
    /* sort ascending: want items have max < T */
    for (int i = 1; i < n; i++) { /* insertion sort is fine for a few thousand items */
        float x = v[i];
        int j = i - 1;
        while (j >= 0 && v[j] > x) v[j + 1] = v[j], j--;
        v[j + 1] = x;
    }
    float t;
    if (want <= 0) t = -INFINITY;
    else if (want >= n) t = INFINITY;
    else if (v[want - 1] == v[want]) t = v[want]; /* ties: as close as they allow */
    else t = 0.5f * (v[want - 1] + v[want]);
    free(v);
    return t;
}

static void add_num_or_str(cJSON *o, const char *key, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
    else cJSON_AddStringToObject(o, key, isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
}

static void add_signals(cJSON *o, const float *sig) {
    cJSON *s = cJSON_AddObjectToObject(o, "signals");
    for (int k = 0; k < DUET_ROUTE_NSIG; k++) cJSON_AddNumberToObject(s, duet_signal_name(k), sig[k]);
}

static int parse_eval_args(int argc, char **argv, eval_args *a) {
    memset(a, 0, sizeof *a);
    a->threads = duet_cli_default_threads();
    a->max_new = EVAL_DEFAULT_MAX_NEW;
    a->batch = 8;
    a->eta = 0.5f;
    a->mids = (duet_opt_list){a->mid_paths, 0, EVAL_MAX_MODELS - 2};
    static const char *const conf_names[] = {"mean", "min", NULL};
    const duet_opt opts[] = {
        DUET_OPT_STR("model", 'm', &a->llm, "LLM", "the large model"),
        DUET_OPT_STR("slm", 0, &a->slm, "SLM", "the small model"),
        DUET_OPT_LIST("mid", 0, &a->mids, "MODEL", "cascade: a middle tier (repeat, cheapest first; up to 6)"),
        DUET_OPT_STR("file", 'f', &a->items, "ITEMS.jsonl", "the items (required)"),
        {.name = "strategy", .type = DUET_OPTT_CHOICE, .dest = &a->strategy, .choices = strategy_names,
         .given = &a->strategy_set, .help = "the strategy (required)"},
        {.name = "llm-share", .type = DUET_OPTT_CUSTOM, .dest = &a->share, .parse = parse_share,
         .given = &a->share_set, .arg = "X in [0, 1]",
         .help = "route/cascade: the threshold that sends this share of the items to the LLM"},
        {.name = "threshold", .type = DUET_OPTT_CUSTOM, .dest = &a->thr, .parse = parse_threshold,
         .given = &a->threshold_set, .arg = "a number, inf or -inf",
         .help = "route: to the LLM when the score > T; cascade: escalate when the confidence < T (repeat: "
                 "one per judged tier, cheapest first)"},
        DUET_OPT_STR("router", 0, &a->router_path, "FILE", "route: a router written by duet route-fit"),
        DUET_OPT_STR("signal", 0, &a->signal, "NAME",
                     "route without --router: threshold on neg_top1 (default), mean_entropy, max_entropy, "
                     "prompt_nll, neg_margin, copy_miss, top1_novel, content_miss, content_alt, or random"),
        DUET_OPT_CHOICE("confidence", 0, &a->use_min, conf_names,
                        "cascade: a tier's confidence is the mean (default) or min token log-probability"),
        {.name = "eta", .type = DUET_OPTT_FLOAT, .dest = &a->eta, .min = -1, .max = 2, .given = &a->eta_set,
         .arg = "E", .help = "defer: the LLM supplies tokens where the SLM's top probability < E (default 0.5)"},
        DUET_OPT_INT("n-predict", 'n', &a->max_new, 1, 256, "N", "new tokens per item (default 4)"),
        DUET_OPT_INT("batch", 0, &a->batch, 1, 256, "N", "requests stepped together (default 8)"),
        DUET_OPT_INT("limit", 0, &a->limit, 0, 1 << 30, "N", "only the first N items (0: all)"),
        DUET_OPT_STR("dump", 0, &a->dump, "FILE", "write one JSON record per item (jsonl)"),
        DUET_OPT_FLAG("json", 0, &a->json, "print one JSON object"),
        DUET_OPT_FLAG("quiet", 'q', &a->quiet, "no progress on stderr"),
        DUET_OPT_THREADS(&a->threads),
        DUET_OPT_END,
    };
    int rc = duet_opts_parse("eval", opts, argc, argv, usage_head);
    if (rc) return rc;
    const char *c = "eval";
    if (!a->items) return duet_opts_error(c, "need -f ITEMS.jsonl (duet eval --help)");
    if (!a->strategy_set) return duet_opts_error(c, "need --strategy slm|llm|route|cascade|defer");
    const int s = a->strategy;
    if (s != S_LLM && !a->slm) return duet_opts_error(c, "--strategy %s needs --slm SLM", strategy_names[s]);
    if (s != S_SLM && !a->llm) return duet_opts_error(c, "--strategy %s needs -m LLM", strategy_names[s]);
    if (a->mids.n && s != S_CASCADE) return duet_opts_error(c, "--mid is for --strategy cascade");
    if (a->share_set && a->threshold_set) return duet_opts_error(c, "give --llm-share or --threshold, not both");
    if ((a->share_set || a->threshold_set) && s != S_ROUTE && s != S_CASCADE)
        return duet_opts_error(c, "--llm-share and --threshold are for route and cascade");
    if ((a->router_path || a->signal) && s != S_ROUTE) return duet_opts_error(c, "--router and --signal are for route");
    if (a->router_path && a->signal) return duet_opts_error(c, "give --router or --signal, not both");
    if (a->eta_set && s != S_DEFER) return duet_opts_error(c, "--eta is for defer");
    if (s == S_CASCADE && !a->share_set && !a->threshold_set)
        return duet_opts_error(c, "cascade needs --threshold T or --llm-share X");
    if (s == S_ROUTE && !a->router_path && !a->share_set && !a->threshold_set)
        return duet_opts_error(c, "route needs --router FILE, --threshold T or --llm-share X");
    if (a->signal && strcmp(a->signal, "random") && eval_signal_index(a->signal) < 0)
        return duet_opts_error(c, "--signal takes %s or random", eval_signal_names());
    if (s == S_ROUTE && a->thr.n > 1) return duet_opts_error(c, "route takes one --threshold");
    if (s == S_CASCADE && a->thr.n > 1 && a->thr.n != a->mids.n + 1)
        return duet_opts_error(c, "cascade takes one --threshold for every tier, or one per judged tier (%d here)",
                               a->mids.n + 1);
    if (a->signal && !strcmp(a->signal, "random") && a->threshold_set)
        return duet_opts_error(c, "--signal random takes --llm-share (the coin's probability), not --threshold");
    return 0;
}

int cmd_eval(int argc, char **argv) {
    eval_args a;
    int rc = parse_eval_args(argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    const int s = a.strategy;
    int status = 1;
    eval_env env = {0};
    eval_items items = {0};
    eval_out *out = NULL;
    duet_router router;
    duet_router_init(&router, DUET_ROUTER_THRESHOLD);
    duet_err err = {0};
    char *dump_text = NULL;
    float *calib_conf[EVAL_MAX_MODELS] = {0};
    const double t_start = now_s();
    double analysis_s = 0;

    /* models: the SLM first, the mids, the LLM last */
    const char *paths[EVAL_MAX_MODELS], *roles[EVAL_MAX_MODELS];
    static char mid_roles[EVAL_MAX_MODELS][8];
    int n_models = 0, i_slm = -1, i_llm = -1;
    if (a.slm) paths[n_models] = a.slm, roles[n_models] = "slm", i_slm = n_models++;
    for (int k = 0; k < a.mids.n; k++) {
        snprintf(mid_roles[k], sizeof mid_roles[k], "mid%d", k + 1);
        paths[n_models] = a.mid_paths[k], roles[n_models++] = mid_roles[k];
    }
    if (a.llm) paths[n_models] = a.llm, roles[n_models] = "llm", i_llm = n_models++;

    if (eval_items_load(&items, a.items, "eval", 0) < 0) return 1;
    if (a.limit > 0 && a.limit < items.n) {
        for (int i = a.limit; i < items.n; i++) free(items.v[i].id), free(items.v[i].prompt), free(items.v[i].answer);
        items.n = a.limit;
    }
    if (eval_env_open(&env, "eval", paths, roles, n_models, a.threads, a.max_new, a.batch) < 0) goto done;
    env.quiet = a.quiet;
    if (eval_items_tokenize(&env, &items) < 0) goto done;
    const int n = items.n;
    out = calloc((size_t)n, sizeof *out);
    if (!out) goto oom;

    eval_spec sp = {0};
    float cal_share = NAN; /* the share the calibration asked for, if any */
    sp.llm = i_llm, sp.slm = i_slm; /* -1 when absent */
    switch (s) {
    case S_SLM: sp.kind = EVAL_PLAIN, sp.model = i_slm; break;
    case S_LLM: sp.kind = EVAL_PLAIN, sp.model = i_llm; break;
    case S_DEFER: sp.kind = EVAL_DEFER, sp.slm = i_slm, sp.llm = i_llm, sp.eta = a.eta; break;
    case S_ROUTE: {
        sp.kind = EVAL_ROUTE, sp.slm = i_slm, sp.llm = i_llm, sp.router = &router;
        if (a.router_path) {
            if (duet_router_load(&router, a.router_path, &err) < 0) goto fail;
        } else if (a.signal && !strcmp(a.signal, "random")) {
            duet_router_init(&router, DUET_ROUTER_RANDOM);
        } else {
            duet_router_init(&router, DUET_ROUTER_THRESHOLD);
            router.signal = a.signal ? eval_signal_index(a.signal) : DUET_SIG_NEG_TOP1;
        }
        if (a.threshold_set) router.threshold = a.thr.v[0];
        if (a.share_set) { /* calibrated on the items' own signals */
            double t;
            if (eval_signals(&env, i_slm, &items, &t, &err) < 0) goto fail;
            analysis_s += t;
            float *sc = malloc(sizeof *sc * (size_t)n);
            if (!sc) goto oom;
            for (int i = 0; i < n; i++) sc[i] = duet_router_score_h(&router, items.v[i].sig, items.v[i].hidden);
            rc = duet_router_calibrate(&router, sc, n, a.share, &err);
            free(sc);
            if (rc < 0) goto fail;
            cal_share = a.share;
        }
        break;
    }
    case S_CASCADE: {
        sp.kind = EVAL_CASCADE, sp.use_min = a.use_min;
        for (int k = 0; k < n_models; k++) sp.tiers[sp.n_tiers++] = k;
        float thr = a.thr.n ? a.thr.v[0] : 0;
        if (a.share_set) { /* every judged tier's confidence on every item, then one shared threshold */
            const double t0 = now_s();
            for (int t = 0; t + 1 < sp.n_tiers; t++) {
                eval_spec one = {.kind = EVAL_PLAIN, .model = sp.tiers[t], .slm = i_slm, .llm = i_llm};
                char what[32];
                snprintf(what, sizeof what, "calibrate %s", env.mod[sp.tiers[t]].role);
                if (!(calib_conf[t] = malloc(sizeof(float) * (size_t)n))) goto oom;
                if (eval_run(&env, &one, &items, out, what, &err) < 0) goto fail;
                for (int i = 0; i < n; i++) calib_conf[t][i] = (float)(a.use_min ? out[i].min_lp : out[i].mean_lp);
                eval_outs_free(out, n);
            }
            thr = cascade_calibrate(calib_conf, sp.n_tiers - 1, n, a.share);
            analysis_s += now_s() - t0;
            cal_share = a.share;
            for (int k = 0; k < n_models; k++) env.mod[k].meter = (eval_meter){0};
        }
        for (int t = 0; t + 1 < sp.n_tiers; t++) sp.thr[t] = a.thr.n > 1 ? a.thr.v[t] : thr;
        break;
    }
    }
    /* the SLM's signals for the dump, where the strategy does not compute them */
    if (a.dump && i_slm >= 0 && s != S_ROUTE) {
        double t;
        if (eval_signals(&env, i_slm, &items, &t, &err) < 0) goto fail;
        analysis_s += t;
    }

    const double t_run = now_s();
    if (eval_run(&env, &sp, &items, out, strategy_names[s], &err) < 0) goto fail;
    const double run_s = now_s() - t_run;

    /* the summary */
    long correct = 0, llm_req = 0, gen_all = 0, gen_llm = 0, deferred = 0, extended = 0;
    long reached[EVAL_MAX_MODELS] = {0};
    long gen_by[EVAL_MAX_MODELS] = {0};
    for (int i = 0; i < n; i++) {
        const eval_out *o = &out[i];
        correct += o->correct, llm_req += o->llm_used, deferred += o->deferred, extended += o->extended;
        if (o->by >= 0) reached[o->by]++;
        for (int k = 0; k < n_models; k++) {
            gen_all += o->gen[k], gen_by[k] += o->gen[k];
            if (k == i_llm) gen_llm += o->gen[k];
        }
    }
    const double acc = (double)correct / n, share = (double)llm_req / n;
    const double tok_share = gen_all ? (double)gen_llm / gen_all : 0;

    cJSON *j = cJSON_CreateObject();
    if (!j) goto oom;
    cJSON_AddStringToObject(j, "strategy", strategy_names[s]);
    cJSON_AddStringToObject(j, "items", a.items);
    cJSON_AddNumberToObject(j, "n_items", n);
    cJSON_AddNumberToObject(j, "correct", (double)correct);
    cJSON_AddNumberToObject(j, "accuracy", acc);
    cJSON_AddNumberToObject(j, "llm_share", share);
    cJSON_AddNumberToObject(j, "llm_token_share", tok_share);
    if (s == S_CASCADE) {
        cJSON *r = cJSON_AddObjectToObject(j, "answered_by");
        for (int k = 0; k < n_models; k++) cJSON_AddNumberToObject(r, env.mod[k].role, (double)reached[k] / n);
    }
    cJSON *params = cJSON_AddObjectToObject(j, "params");
    cJSON_AddNumberToObject(params, "max_new", a.max_new);
    cJSON_AddNumberToObject(params, "decide_tokens", EVAL_DECIDE_TOKENS);
    cJSON_AddNumberToObject(j, "extended", (double)extended);
    cJSON_AddNumberToObject(params, "batch", a.batch);
    cJSON_AddNumberToObject(params, "threads", a.threads);
    if (s == S_ROUTE) {
        static const char *kinds[] = {"threshold", "logistic", "random"};
        cJSON_AddStringToObject(params, "router", kinds[router.kind]);
        if (a.router_path) cJSON_AddStringToObject(params, "router_file", a.router_path);
        if (router.kind == DUET_ROUTER_THRESHOLD) cJSON_AddStringToObject(params, "signal", duet_signal_name(router.signal));
        if (router.kind == DUET_ROUTER_RANDOM) cJSON_AddNumberToObject(params, "coin", router.share);
        else add_num_or_str(params, "threshold", router.threshold);
    }
    if (s == S_CASCADE) {
        add_num_or_str(params, "threshold", sp.n_tiers > 1 ? sp.thr[0] : NAN);
        if (sp.n_tiers > 2) {
            cJSON *ts = cJSON_AddArrayToObject(params, "thresholds");
            for (int t = 0; t + 1 < sp.n_tiers; t++)
                cJSON_AddItemToArray(ts, isfinite(sp.thr[t]) ? cJSON_CreateNumber(sp.thr[t])
                                                             : cJSON_CreateString(sp.thr[t] > 0 ? "inf" : "-inf"));
        }
        cJSON_AddStringToObject(params, "confidence", a.use_min ? "min" : "mean");
        cJSON *tiers = cJSON_AddArrayToObject(params, "tiers");
        for (int k = 0; k < n_models; k++) cJSON_AddItemToArray(tiers, cJSON_CreateString(env.mod[k].path));
    }
    if (s == S_DEFER) {
        cJSON_AddNumberToObject(params, "eta", a.eta);
        cJSON_AddNumberToObject(j, "deferred_tokens", (double)deferred);
    }
    if (!isnan(cal_share)) cJSON_AddNumberToObject(params, "llm_share_target", cal_share);
    cJSON *models = cJSON_AddObjectToObject(j, "models");
    for (int k = 0; k < n_models; k++) cJSON_AddStringToObject(models, env.mod[k].role, env.mod[k].path);
    /* seconds: each model's passes (a batched pass counted once), the whole run */
    cJSON_AddNumberToObject(j, "slm_s", i_slm >= 0 ? env.mod[i_slm].meter.seconds : 0);
    cJSON_AddNumberToObject(j, "llm_s", i_llm >= 0 ? env.mod[i_llm].meter.seconds : 0);
    if (a.mids.n) {
        cJSON *ms = cJSON_AddArrayToObject(j, "mid_s");
        for (int k = 0; k < a.mids.n; k++) cJSON_AddItemToArray(ms, cJSON_CreateNumber(env.mod[1 + k].meter.seconds));
    }
    cJSON_AddNumberToObject(j, "run_s", run_s);
    cJSON_AddNumberToObject(j, "analysis_s", analysis_s);
    cJSON_AddNumberToObject(j, "wall_s", now_s() - t_start);
    cJSON *tok = cJSON_AddObjectToObject(j, "tokens_generated");
    for (int k = 0; k < n_models; k++) cJSON_AddNumberToObject(tok, env.mod[k].role, (double)gen_by[k]);
    cJSON *ev = cJSON_AddObjectToObject(j, "tokens_evaluated");
    for (int k = 0; k < n_models; k++) cJSON_AddNumberToObject(ev, env.mod[k].role, (double)env.mod[k].meter.tokens);

    /* the per-item records, in memory first */
    if (a.dump) {
        size_t len = 0, cap = 1 << 16;
        dump_text = malloc(cap);
        for (int i = 0; dump_text && i < n; i++) {
            const eval_item *x = &items.v[i];
            const eval_out *o = &out[i];
            cJSON *r = cJSON_CreateObject();
            if (!r) break;
            cJSON_AddStringToObject(r, "id", x->id);
            cJSON_AddNumberToObject(r, "line", x->line);
            cJSON_AddBoolToObject(r, "correct", o->correct);
            cJSON_AddStringToObject(r, "answer", x->answer);
            cJSON_AddStringToObject(r, "text", o->text ? o->text : "");
            cJSON_AddStringToObject(r, "answered_by", o->by >= 0 ? env.mod[o->by].role : "defer");
            cJSON_AddStringToObject(r, "finish", duet_finish_name(o->finish));
            cJSON_AddBoolToObject(r, "extended", o->extended);
            cJSON_AddNumberToObject(r, "n_generated", o->n_gen);
            cJSON_AddNumberToObject(r, "n_prompt", x->n_tok);
            cJSON_AddNumberToObject(r, "mean_logprob", o->mean_lp);
            cJSON_AddNumberToObject(r, "min_logprob", o->min_lp);
            cJSON_AddBoolToObject(r, "llm_used", o->llm_used);
            cJSON_AddNumberToObject(r, "llm_tokens", i_llm >= 0 ? (double)o->gen[i_llm] : 0);
            if (o->by >= 0) { /* one model answered: its correctness and confidence by its role */
                char key[48];
                const char *role = env.mod[o->by].role;
                snprintf(key, sizeof key, "%s_correct", role);
                cJSON_AddBoolToObject(r, key, o->correct);
                snprintf(key, sizeof key, "%s_mean_logprob", role);
                cJSON_AddNumberToObject(r, key, o->mean_lp);
                snprintf(key, sizeof key, "%s_min_logprob", role);
                cJSON_AddNumberToObject(r, key, o->min_lp);
            }
            if (s == S_ROUTE) cJSON_AddNumberToObject(r, "score", o->confidence);
            if (s == S_CASCADE) {
                cJSON_AddNumberToObject(r, "escalated", o->escalated);
                cJSON_AddNumberToObject(r, "confidence", o->confidence);
            }
            if (s == S_DEFER) cJSON_AddNumberToObject(r, "deferred", o->deferred);
            if (o->has_sig) add_signals(r, o->sig);
            else if (x->has_sig) add_signals(r, x->sig);
            if (x->hidden) cJSON_AddItemToObject(r, "hidden", cJSON_CreateFloatArray(x->hidden, x->n_hidden));
            cJSON_AddNumberToObject(r, "latency_s", o->latency);
            char *line = cJSON_PrintUnformatted(r);
            cJSON_Delete(r);
            if (!line) break;
            size_t ln = strlen(line);
            if (len + ln + 2 > cap) {
                char *t = realloc(dump_text, cap = (len + ln + 2) * 2);
                if (!t) {
                    free(line);
                    free(dump_text);
                    dump_text = NULL;
                    break;
                }
                dump_text = t;
            }
            memcpy(dump_text + len, line, ln);
            len += ln;
            dump_text[len++] = '\n';
            free(line);
            if (i == n - 1) dump_text[len] = 0;
        }
        if (!dump_text) {
            cJSON_Delete(j);
            goto oom;
        }
        if (eval_write_atomic("eval", a.dump, dump_text, len) < 0) {
            cJSON_Delete(j);
            goto done;
        }
    }

    if (a.json) {
        char *js = cJSON_PrintUnformatted(j);
        if (!js) {
            cJSON_Delete(j);
            goto oom;
        }
        printf("%s\n", js);
        free(js);
    } else {
        printf("strategy %s on %s: %d items\n", strategy_names[s], a.items, n);
        printf("accuracy      %.4f (%ld/%d)\n", acc, correct, n);
        printf("llm share     %.4f of requests, %.4f of generated tokens\n", share, tok_share);
        if (s == S_ROUTE && router.kind != DUET_ROUTER_RANDOM) printf("threshold     %.6g\n", router.threshold);
        if (s == S_CASCADE && sp.n_tiers > 1) {
            printf("threshold    ");
            for (int t = 0; t + 1 < sp.n_tiers; t++) printf(" %.6g", sp.thr[t]);
            printf(" (%s token log-probability)\n", a.use_min ? "min" : "mean");
            for (int k = 0; k < n_models; k++) printf("answered by   %-5s %.4f\n", env.mod[k].role, (double)reached[k] / n);
        }
        if (s == S_DEFER) printf("deferred      %ld tokens (eta %g)\n", deferred, a.eta);
        for (int k = 0; k < n_models; k++)
            printf("%-5s         %.3f s over %ld tokens in %ld passes\n", env.mod[k].role, env.mod[k].meter.seconds,
                   env.mod[k].meter.tokens, env.mod[k].meter.passes);
        printf("wall          %.3f s (run %.3f s)\n", now_s() - t_start, run_s);
    }
    cJSON_Delete(j);
    status = 0;
    goto done;
oom:
    duet_err_set(&err, DUET_ENOMEM, "out of memory");
fail:
    fprintf(stderr, "duet eval: %s\n", err.msg);
done:
    if (out) eval_outs_free(out, items.n);
    free(out);
    free(dump_text);
    for (int t = 0; t < EVAL_MAX_MODELS; t++) free(calib_conf[t]);
    duet_router_free(&router);
    eval_items_free(&items);
    if (env.cmd) eval_env_close(&env);
    return status;
}

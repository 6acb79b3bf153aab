/* The training loop shared by `duet train` and `duet distill`: batches,
 * loss (cross-entropy or distillation), backward, clipping, AdamW with
 * warmup + cosine, periodic validation with early stopping, best-model GGUF
 * export, checkpoints (write-then-rename) and a loss curve (CSV + gnuplot). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "duet/gguf.h"
#include "duet/quant.h"
#include "duet/train.h"

void duet_train_opts_default(duet_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->out_type = DUET_TYPE_F32;
    o->B = 8;
    o->T = 256;
    o->max_steps = 2000;
    o->warmup = 100;
    o->lr = 1e-3f;
    o->lr_min = 1e-4f;
    o->weight_decay = 0.1f;
    o->clip = 1.0f;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->seed = 1337;
    o->eval_every = 200;
    o->eval_batches = 20;
    o->ckpt_seconds = 300;
    o->kd.loss = DUET_KD_KL;
    o->kd.beta = 0.5f;
    o->kd.temp = 1.0f;
    o->onpolicy_frac = 0.5f;
    o->sample_temp = 1.0f;
    o->prompt_len = 1;
}

/* Saved with every checkpoint so that a resumed run continues exactly. */
typedef struct {
    int64_t step;
    uint64_t rng;
    double tokens;
    double best_valid;
    int32_t bad_evals;
    int32_t pad;
    double ema;
    double seconds;
} run_state;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

double duet_tmodel_eval_loss(duet_tmodel *m, duet_pool *pool, const duet_tokens *toks, int B, int T,
                             int max_batches) {
    int64_t n_win = (toks->n - 1) / T;
    if (n_win < 1) return NAN;
    int32_t *x = malloc(sizeof(int32_t) * (size_t)B * T), *y = malloc(sizeof(int32_t) * (size_t)B * T);
    if (!x || !y) { free(x); free(y); return NAN; }
    double sum = 0;
    int64_t count = 0;
    int batches = 0;
    for (int64_t w = 0; w < n_win && (max_batches <= 0 || batches < max_batches); w += B, batches++) {
        int b_n = (int)(n_win - w < B ? n_win - w : B);
        for (int b = 0; b < b_n; b++) {
            memcpy(x + (size_t)b * T, toks->ids + (w + b) * T, sizeof(int32_t) * T);
            memcpy(y + (size_t)b * T, toks->ids + (w + b) * T + 1, sizeof(int32_t) * T);
        }
        if (duet_tmodel_forward(m, pool, x, b_n, T)) { sum = NAN; break; }
        sum += duet_tmodel_ce_loss(m, y, 0) * b_n * T;
        count += (int64_t)b_n * T;
    }
    free(x);
    free(y);
    return count ? sum / count : NAN;
}

static void plot(const char *out_path, FILE *log) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "gnuplot -e \"set terminal pngcairo size 900,540; set output '%s.loss.png'; set datafile separator ',';"
             " set key top right; set xlabel 'tokens'; set ylabel 'loss (nats/token)'; set grid;"
             " plot '%s.loss.csv' every ::1 using 2:3 with lines title 'train (EMA)',"
             " '' every ::1 using 2:(\\$4 > 0 ? \\$4 : 1/0) with linespoints title 'valid'\" 2>/dev/null",
             out_path, out_path);
    int rc = system(cmd);
    if (rc && log) fprintf(log, "note: gnuplot failed (%d); the curve is in %s.loss.csv\n", rc, out_path);
}

static void fmt_time(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e7) { snprintf(buf, n, "--:--"); return; }
    long t = (long)s;
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
}

int duet_train_run(duet_tmodel **mp, duet_tmodel *teacher, const duet_tokens *train, const duet_tokens *valid,
                   const duet_train_opts *o, duet_pool *pool, duet_train_result *res, duet_err *err) {
    memset(res, 0, sizeof *res);
    const int B = o->B, T = o->T;
    if (o->kd_mode != DUET_KD_MODE_NONE && !teacher)
        return duet_err_set(err, DUET_EINVAL, "distillation needs a teacher");
    if (teacher && teacher->cfg.n_vocab != (*mp)->cfg.n_vocab)
        return duet_err_set(err, DUET_EINVAL, "teacher vocabulary %d != student vocabulary %d", teacher->cfg.n_vocab,
                            (*mp)->cfg.n_vocab);
    if (train->n < (int64_t)T + 2) return duet_err_set(err, DUET_EINVAL, "training data shorter than one window");
    char path[4096];
    run_state st = {0, o->seed ^ 0x5eedull, 0, INFINITY, 0, 0, NAN, 0};
    if (o->resume) {
        snprintf(path, sizeof path, "%s.ckpt", o->out_path);
        duet_tmodel *r = NULL;
        int rc = duet_tmodel_load_ckpt(&r, path, B, T, &st, sizeof st, err);
        if (rc) return rc;
        duet_tmodel_free(*mp);
        *mp = r;
        if (o->log) fprintf(o->log, "resumed %s at step %lld (%.0f tokens, best valid %.4f)\n", path,
                            (long long)st.step, st.tokens, st.best_valid);
    }
    duet_tmodel *m = *mp;
    if (!m->grad_block) return duet_err_set(err, DUET_EINVAL, "model has no gradient buffers");
    duet_gguf *tok = NULL;
    if (o->tok_path && duet_gguf_open(&tok, o->tok_path, err)) return err ? err->code : DUET_EIO;
    int32_t *win = malloc(sizeof(int32_t) * (size_t)B * (T + 1));
    int32_t *x = malloc(sizeof(int32_t) * (size_t)B * T), *y = malloc(sizeof(int32_t) * (size_t)B * T);
    int32_t *prompts = malloc(sizeof(int32_t) * (size_t)B * (o->prompt_len > 0 ? o->prompt_len : 1));
    if (!win || !x || !y || !prompts) {
        free(win); free(x); free(y); free(prompts);
        duet_gguf_close(tok);
        return duet_err_set(err, DUET_ENOMEM, "out of memory (batch)");
    }
    snprintf(path, sizeof path, "%s.loss.csv", o->out_path);
    FILE *csv = fopen(path, o->resume ? "a" : "w");
    if (csv && !o->resume) fprintf(csv, "step,tokens,train_loss,valid_loss,lr\n");
    duet_trng rng = {st.rng};
    const double flop_step = 3.0 * duet_tconfig_flops_per_token(&m->cfg, T) * B * T;
    const double t_start = now_s(), sec_before = st.seconds;
    double t_ckpt = t_start, t_print = 0, run_tokens = 0;
    /* On a terminal the progress bar rewrites itself (\r) every second and the
     * other messages start on a fresh line; in a log file or pipe, a plain
     * progress line every 30 s (and at the last step). */
    const int tty = o->log && isatty(fileno(o->log));
    const char *nl = tty ? "\n" : "";
    const double print_every = tty ? 1.0 : 30.0;
    int rc = 0;
    int64_t first_step = st.step;
    while (st.step < o->max_steps) {
        float lr = duet_lr_schedule(st.step, o->warmup, o->max_steps, o->lr, o->lr_min);
        /* ---- batch ---- */
        int on_policy = o->kd_mode == DUET_KD_MODE_ONPOLICY && duet_trng_uniform(&rng) < o->onpolicy_frac;
        for (int b = 0; b < B; b++) {
            int64_t s = (int64_t)(duet_trng_next(&rng) % (uint64_t)(train->n - T - 1));
            memcpy(win + (size_t)b * (T + 1), train->ids + s, sizeof(int32_t) * (T + 1));
            for (int i = 0; i < o->prompt_len && i <= T; i++) prompts[(size_t)b * o->prompt_len + i] = train->ids[s + i];
        }
        if (o->kd_mode == DUET_KD_MODE_SEQ || on_policy) {
            duet_tmodel *gen = o->kd_mode == DUET_KD_MODE_SEQ ? teacher : m;
            rc = duet_tmodel_sample(gen, pool, win, prompts, o->prompt_len, B, T, o->sample_temp, &rng);
            if (rc) { duet_err_set(err, rc, "sampling failed"); break; }
        }
        for (int b = 0; b < B; b++) {
            memcpy(x + (size_t)b * T, win + (size_t)b * (T + 1), sizeof(int32_t) * T);
            memcpy(y + (size_t)b * T, win + (size_t)b * (T + 1) + 1, sizeof(int32_t) * T);
        }
        /* ---- loss ---- */
        double loss;
        if (o->kd_mode == DUET_KD_MODE_TOKEN || o->kd_mode == DUET_KD_MODE_ONPOLICY) {
            if ((rc = duet_tmodel_forward(teacher, pool, x, B, T))) break;
            if ((rc = duet_tmodel_forward(m, pool, x, B, T))) break;
            loss = duet_tmodel_kd_loss(m, teacher->a.logits, y, &o->kd, 1, NULL);
        } else {
            if ((rc = duet_tmodel_forward(m, pool, x, B, T))) break;
            loss = duet_tmodel_ce_loss(m, y, 1);
        }
        if (!isfinite(loss)) { rc = duet_err_set(err, DUET_ERANGE, "loss is %f at step %lld", loss, (long long)st.step); break; }
        duet_tmodel_zero_grad(m);
        duet_tmodel_backward(m, pool);
        duet_tmodel_clip_grad(m, o->clip);
        duet_adamw opt = {lr, o->beta1, o->beta2, 1e-8f, o->weight_decay};
        duet_tmodel_adamw(m, &opt);
        st.step++;
        st.tokens += (double)B * T;
        run_tokens += (double)B * T;
        st.ema = isnan(st.ema) ? loss : 0.98 * st.ema + 0.02 * loss;
        double t = now_s(), el = t - t_start;
        /* ---- validation, best model, early stopping ---- */
        int eval_now = (o->eval_every > 0 && st.step % o->eval_every == 0) || st.step == o->max_steps;
        double vl = -1;
        if (eval_now && valid && valid->n > T + 1) {
            vl = duet_tmodel_eval_loss(m, pool, valid, B, T, o->eval_batches);
            if (vl < st.best_valid) {
                st.best_valid = vl;
                st.bad_evals = 0;
                rc = duet_tmodel_save_gguf(m, o->out_path, o->out_type, tok, o->name, err);
                if (rc) break;
            } else {
                st.bad_evals++;
            }
            if (o->log)
                fprintf(o->log, "%sstep %lld: train %.4f  valid %.4f (ppl %.2f)%s\n", nl, (long long)st.step, st.ema,
                        vl, exp(vl), st.bad_evals ? "" : "  * best, saved");
        }
        if (csv && (eval_now || st.step % 10 == 0)) {
            fprintf(csv, "%lld,%.0f,%.5f,%.5f,%.6g\n", (long long)st.step, st.tokens, st.ema, vl, lr);
            fflush(csv);
        }
        if (o->log && (t - t_print > print_every || st.step == o->max_steps)) {
            t_print = t;
            double tps = run_tokens / el;
            char eta[32], elapsed[32];
            fmt_time(eta, sizeof eta, (double)(o->max_steps - st.step) * el / (double)(st.step - first_step));
            fmt_time(elapsed, sizeof elapsed, el + sec_before);
            int w = 24, fill = (int)(w * (double)st.step / (double)o->max_steps);
            char bar[32];
            for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
            bar[w] = 0;
            fprintf(o->log, "%s[%s] %lld/%lld loss %.4f lr %.2e | %.0f tok/s %.1f GFLOP/s | %s ETA %s%s", tty ? "\r" : "",
                    bar, (long long)st.step, (long long)o->max_steps, st.ema, lr, tps,
                    flop_step * (double)(st.step - first_step) / el * 1e-9, elapsed, eta, tty ? "   " : "\n");
            fflush(o->log);
        }
        int stop = o->patience > 0 && st.bad_evals >= o->patience;
        int out_of_time = (o->time_limit > 0 && el >= o->time_limit) || (o->stop_at > 0 && st.step >= o->stop_at);
        if (t - t_ckpt >= o->ckpt_seconds || stop || out_of_time || st.step == o->max_steps) {
            st.rng = rng.s;
            st.seconds = sec_before + el;
            snprintf(path, sizeof path, "%s.ckpt", o->out_path);
            rc = duet_tmodel_save_ckpt(m, path, &st, sizeof st, err);
            if (rc) break;
            t_ckpt = t;
        }
        if (stop) { res->stopped_early = 1; if (o->log) fprintf(o->log, "%searly stop: no improvement in %d validations\n", nl, o->patience); break; }
        if (out_of_time) { if (o->log) fprintf(o->log, "%sstopped at step %lld by --time-limit/--stop-at (continue with --resume)\n", nl, (long long)st.step); break; }
    }
    if (tty) fprintf(o->log, "\n");
    if (csv) fclose(csv);
    if (!rc && (!valid || valid->n <= T + 1)) rc = duet_tmodel_save_gguf(m, o->out_path, o->out_type, tok, o->name, err);
    if (!rc) plot(o->out_path, o->log);
    double el = now_s() - t_start;
    res->steps = st.step;
    res->tokens = st.tokens;
    res->best_valid = st.best_valid;
    res->last_train = st.ema;
    res->seconds = el;
    res->tokens_per_s = run_tokens / el;
    res->gflops = flop_step * (double)(st.step - first_step) / el * 1e-9;
    free(win); free(x); free(y); free(prompts);
    duet_gguf_close(tok);
    if (rc && err && !err->msg[0]) duet_err_set(err, rc, "training failed (%d)", rc);
    return rc;
}

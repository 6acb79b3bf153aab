/* duet distill: train a student from a teacher (token-level KD with KL /
 * reverse KL / JSD / TVD, sequence-level KD, on-policy KD). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/quant.h"
#include "duet/threadpool.h"
#include "duet/train.h"

int duet_cli_train_common(int argc, char **argv, int *i, duet_train_opts *o, duet_tconfig *c, const char **init,
                          const char **train_path, const char **valid_path, int *threads, int *json);

static void usage(FILE *f) {
    fprintf(f,
            "usage: duet distill --teacher T.gguf (--student S.gguf | shape flags) -f TRAIN.txt --tok tok.gguf\n"
            "                    -o OUT.gguf [--loss kl|rkl|jsd:BETA|tvd] [--ce-weight W] [--temp T]\n"
            "                    [--mode token|seq|onpolicy] [options of duet train]\n"
            "  --loss        divergence between teacher p and student q (default kl = KL(p||q))\n"
            "  --ce-weight W loss = (1-W) * divergence + W * cross-entropy on the data (default 0)\n"
            "  --temp T      temperature of both distributions (KL/RKL/JSD gradients scaled by T^2; default 1)\n"
            "  --mode        token: KD on data windows (default); seq: cross-entropy on sequences the teacher\n"
            "                samples; onpolicy: the student samples, the teacher scores its tokens\n"
            "  --onpolicy-frac F  share of on-policy batches (default 0.5; the rest are data windows)\n"
            "  --sample-temp F    sampling temperature for seq/onpolicy (default 1)\n"
            "  --prompt-len N     data tokens that start each sampled window (default 8)\n"
            "Shape flags and training options: see duet train --help.\n");
}

int cmd_distill(int argc, char **argv) {
    duet_train_opts o;
    duet_train_opts_default(&o);
    o.lr_min = -1;
    o.T = 0;
    o.kd_mode = DUET_KD_MODE_TOKEN;
    o.prompt_len = 8;
    duet_tconfig c = {0, 256, 128, 4, 4, 352, 0, 10000.0f, 1e-5f};
    const char *student = NULL, *teacher_path = NULL, *train_path = NULL, *valid_path = NULL;
    int threads = 1, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        int r = duet_cli_train_common(argc, argv, &i, &o, &c, &student, &train_path, &valid_path, &threads, &json);
        if (r < 0) return 2;
        if (r) continue;
        if (i + 1 >= argc) { fprintf(stderr, "duet distill: unknown option or missing value '%s'\n", a); return 2; }
        const char *v = argv[++i];
        char *end = NULL;
        if (!strcmp(a, "--teacher")) teacher_path = v;
        else if (!strcmp(a, "--student")) student = v;
        else if (!strcmp(a, "--loss")) {
            if (duet_kd_parse(v, &o.kd.loss, &o.kd.beta)) {
                fprintf(stderr, "duet distill: bad --loss '%s' (kl, rkl, jsd:BETA with 0<BETA<1, tvd)\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--mode")) {
            if (!strcmp(v, "token")) o.kd_mode = DUET_KD_MODE_TOKEN;
            else if (!strcmp(v, "seq")) o.kd_mode = DUET_KD_MODE_SEQ;
            else if (!strcmp(v, "onpolicy")) o.kd_mode = DUET_KD_MODE_ONPOLICY;
            else { fprintf(stderr, "duet distill: bad --mode '%s' (token, seq, onpolicy)\n", v); return 2; }
        } else if (!strcmp(a, "--ce-weight")) o.kd.ce_weight = strtof(v, &end);
        else if (!strcmp(a, "--temp")) o.kd.temp = strtof(v, &end);
        else if (!strcmp(a, "--onpolicy-frac")) o.onpolicy_frac = strtof(v, &end);
        else if (!strcmp(a, "--sample-temp")) o.sample_temp = strtof(v, &end);
        else if (!strcmp(a, "--prompt-len")) o.prompt_len = (int)strtol(v, &end, 10);
        else { fprintf(stderr, "duet distill: unknown option '%s'\n", a); return 2; }
        if (end && *end) { fprintf(stderr, "duet distill: bad number '%s' for %s\n", v, a); return 2; }
    }
    if (!teacher_path || !train_path || !o.out_path || !o.tok_path) {
        fprintf(stderr, "duet distill: need --teacher, -f TRAIN.txt, --tok tok.gguf and -o OUT.gguf\n");
        return 2;
    }
    if (!(o.kd.ce_weight >= 0 && o.kd.ce_weight <= 1) || !(o.kd.temp > 0) || !(o.onpolicy_frac >= 0 &&
        o.onpolicy_frac <= 1) || !(o.sample_temp >= 0) || o.prompt_len < 1 || o.B < 1 || o.max_steps < 1 ||
        threads < 1 || threads > 256) {
        fprintf(stderr, "duet distill: bad --ce-weight (0..1), --temp (>0), --onpolicy-frac (0..1), "
                        "--sample-temp, --prompt-len, --batch, --steps or -t\n");
        return 2;
    }
    if (o.lr_min < 0) o.lr_min = o.lr / 10;
    duet_err err = {0};
    duet_tokens tr = {0}, va = {0};
    duet_tmodel *m = NULL, *teacher = NULL;
    int rc = duet_tokens_from_text(&tr, train_path, o.tok_path, &err);
    if (!rc && valid_path) rc = duet_tokens_from_text(&va, valid_path, o.tok_path, &err);
    if (!rc && student) {
        rc = duet_tmodel_load_gguf(&m, student, o.B, o.T ? o.T : 1 << 16, 1, &err);
        if (!rc && !o.T) o.T = m->T;
    } else if (!rc) {
        if (!o.T) o.T = c.n_ctx;
        c.n_vocab = 0;
        duet_gguf *g = NULL;
        uint64_t nv = 0;
        duet_gguf_vtype et;
        const void *d;
        rc = duet_gguf_open(&g, o.tok_path, &err);
        if (!rc) rc = duet_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &nv, &d, &err);
        duet_gguf_close(g);
        c.n_vocab = (int)nv;
        if (!rc) rc = duet_tmodel_new(&m, &c, o.B, o.T, 1, &err);
        if (!rc) duet_tmodel_init(m, o.seed);
    }
    if (!rc) rc = duet_tmodel_load_gguf(&teacher, teacher_path, o.B, o.T, 0, &err);
    if (!rc && (teacher->T < o.T || m->T < o.T))
        rc = duet_err_set(&err, DUET_EINVAL, "--seq %d exceeds a model's context", o.T);
    for (int64_t i = 0; !rc && i < tr.n; i++)
        if (tr.ids[i] >= m->cfg.n_vocab)
            rc = duet_err_set(&err, DUET_ERANGE, "token %d of the data exceeds the student vocabulary", tr.ids[i]);
    if (rc) {
        fprintf(stderr, "duet distill: %s\n", err.msg);
        duet_tokens_free(&tr);
        duet_tokens_free(&va);
        duet_tmodel_free(m);
        duet_tmodel_free(teacher);
        return 1;
    }
    if (!o.name) o.name = "duet-distilled";
    o.log = stderr;
    static const char *const loss_names[] = {"kl", "rkl", "jsd", "tvd"};
    static const char *const mode_names[] = {"none", "token", "seq", "onpolicy"};
    fprintf(stderr, "distill: student %zu parameters, teacher %zu parameters, loss %s (beta %.2f) temp %.2f "
                    "ce-weight %.2f, mode %s, %lld train tokens, batch %d x %d\n",
            m->n_params, teacher->n_params, loss_names[o.kd.loss], o.kd.beta, o.kd.temp, o.kd.ce_weight,
            mode_names[o.kd_mode], (long long)tr.n, o.B, o.T);
    duet_pool *pool = threads > 1 ? duet_pool_new(threads) : NULL;
    duet_train_result res;
    rc = duet_train_run(&m, teacher, &tr, valid_path ? &va : NULL, &o, pool, &res, &err);
    duet_pool_free(pool);
    if (rc) fprintf(stderr, "duet distill: %s\n", err.msg);
    else if (json)
        printf("{\"output\":\"%s\",\"loss\":\"%s\",\"mode\":\"%s\",\"steps\":%lld,\"tokens\":%.0f,"
               "\"best_valid_loss\":%.6f,\"seconds\":%.1f,\"tokens_per_s\":%.1f,\"stopped_early\":%s}\n",
               o.out_path, loss_names[o.kd.loss], mode_names[o.kd_mode], (long long)res.steps, res.tokens,
               res.best_valid, res.seconds, res.tokens_per_s, res.stopped_early ? "true" : "false");
    else
        fprintf(stderr, "distill: %lld steps, %.0f tokens, best valid loss %.4f, %.0f tok/s -> %s\n",
                (long long)res.steps, res.tokens, res.best_valid, res.tokens_per_s, o.out_path);
    duet_tokens_free(&tr);
    duet_tokens_free(&va);
    duet_tmodel_free(m);
    duet_tmodel_free(teacher);
    return rc ? 1 : 0;
}

/* duet distill: train a student from a teacher (token-level KD with KL /
 * reverse KL / JSD / TVD, sequence-level KD, on-policy KD). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/quant.h"
#include "duet/threadpool.h"
#include "duet/train.h"
#include "train_cli.h"

static const char usage_head[] =
    "usage: duet distill --teacher T.gguf (--student S.gguf | shape options) -f TRAIN.txt --tok tok.gguf\n"
    "                    -o OUT.gguf [--loss kl|rkl|jsd:BETA|tvd] [--ce-weight W] [--temp T]\n"
    "                    [--mode token|seq|onpolicy] [options of duet train]\n"
    "  --mode token: KD on data windows; seq: cross-entropy on sequences the teacher samples;\n"
    "  onpolicy: the student samples, the teacher scores its tokens.\n";

static int parse_loss(const char *v, void *dest) {
    duet_kd_opts *kd = dest;
    return duet_kd_parse(v, &kd->loss, &kd->beta);
}

int cmd_distill(int argc, char **argv) {
    train_cli t;
    train_cli_defaults(&t);
    t.o.kd_mode = DUET_KD_MODE_TOKEN;
    t.o.prompt_len = 8;
    duet_train_opts *op = &t.o;
    const char *student = NULL, *teacher_path = NULL;
    int mode = 0; /* index in modes */
    static const char *const modes[] = {"token", "seq", "onpolicy", NULL};
    static const duet_kd_mode mode_of[] = {DUET_KD_MODE_TOKEN, DUET_KD_MODE_SEQ, DUET_KD_MODE_ONPOLICY};
    duet_opt opts[TRAIN_CLI_MAX_ROWS + 16];
    int n = 0;
    const duet_opt own[] = {
        DUET_OPT_STR("teacher", 0, &teacher_path, "T.gguf", "the teacher model (required)"),
        DUET_OPT_STR("student", 0, &student, "S.gguf", "the student to start from (else the shape options)"),
        DUET_OPT_CUSTOM("loss", 0, &op->kd, parse_loss, "kl, rkl, jsd:BETA (0<BETA<1) or tvd",
                        "divergence between teacher p and student q (default kl = KL(p||q))"),
        DUET_OPT_FLOAT("ce-weight", 0, &op->kd.ce_weight, 0, 1, "W",
                       "loss = (1-W) * divergence + W * cross-entropy on the data (default 0)"),
        DUET_OPT_FLOAT_GT("temp", 0, &op->kd.temp, 0, INFINITY, "T",
                          "temperature of both distributions (KL/RKL/JSD gradients x T^2; default 1)"),
        DUET_OPT_CHOICE("mode", 0, &mode, modes, "what the student learns from (default token; see above)"),
        DUET_OPT_FLOAT("onpolicy-frac", 0, &op->onpolicy_frac, 0, 1, "F",
                       "share of on-policy batches, the rest data windows (default 0.5)"),
        DUET_OPT_FLOAT("sample-temp", 0, &op->sample_temp, 0, INFINITY, "F",
                       "sampling temperature for seq/onpolicy (default 1)"),
        DUET_OPT_INT("prompt-len", 0, &op->prompt_len, 1, INT_MAX, "N",
                     "data tokens that start each sampled window (default 8)"),
    };
    for (size_t k = 0; k < sizeof own / sizeof own[0]; k++) opts[n++] = own[k];
    n += train_cli_rows(opts + n, &t, "same as --student");
    opts[n] = (duet_opt)DUET_OPT_END;
    int prc = duet_opts_parse("distill", opts, argc, argv, usage_head);
    if (prc) return prc == 1 ? 0 : prc;
    train_cli_finish(&t);
    t.o.kd_mode = mode_of[mode];
    if (!student) student = t.init; /* --init names the student too, as in duet train */
    duet_train_opts o = t.o;
    duet_tconfig c = t.c;
    const char *train_path = t.train_path, *valid_path = t.valid_path;
    const int threads = t.threads, json = t.json;
    if (!teacher_path || !train_path || !o.out_path || !o.tok_path)
        return duet_opts_error("distill", "need --teacher, -f TRAIN.txt, --tok tok.gguf and -o OUT.gguf (duet distill --help)");
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

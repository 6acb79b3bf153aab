/* Fusion on the command line (fuse_cli.h). */
#include "fuse_cli.h"

#include <stdio.h>
#include <string.h>

#include "duet/tok.h"

static const char *const rule_names[] = {"mix", "poe", "cd", "proxy"};

int fuse_cli_rule(const char *name) {
    for (int i = 0; i < 4; i++)
        if (name && !strcmp(name, rule_names[i])) return i;
    return -1;
}

const char *fuse_cli_rule_name(duet_fuse_rule r) { return r >= 0 && r <= DUET_FUSE_PROXY ? rule_names[r] : "?"; }

void fuse_cli_init(fuse_cli *f) {
    memset(f, 0, sizeof *f);
    f->par = duet_fuse_default_params(DUET_FUSE_MIX);
}

int fuse_cli_check(const char *cmd, fuse_cli *f, int rule) {
    if (rule < 0) {
        if (f->slm_tuned || f->weight_set || f->alpha_set || f->beta_set)
            return duet_opts_error(cmd, "--slm-tuned, --weight, --alpha and --beta need --strategy mix, poe, cd or proxy");
        return 0;
    }
    f->par.rule = (duet_fuse_rule)rule;
    const char *name = rule_names[rule];
    if (!f->slm)
        return duet_opts_error(cmd, "--strategy %s needs --slm SLM%s", name,
                               rule == DUET_FUSE_PROXY ? " (the base SLM) and --slm-tuned TUNED" : "");
    if (rule == DUET_FUSE_PROXY && !f->slm_tuned)
        return duet_opts_error(cmd, "--strategy proxy needs --slm-tuned TUNED (LLM + TUNED - SLM)");
    if (rule != DUET_FUSE_PROXY && f->slm_tuned)
        return duet_opts_error(cmd, "--slm-tuned is for --strategy proxy");
    if (f->weight_set && rule != DUET_FUSE_MIX && rule != DUET_FUSE_POE)
        return duet_opts_error(cmd, "--weight is for --strategy mix or poe");
    if ((f->alpha_set || f->beta_set) && rule != DUET_FUSE_CD)
        return duet_opts_error(cmd, "--%s is for --strategy cd", f->alpha_set ? "alpha" : "beta");
    duet_err err = {0};
    if (duet_fuse_params_check(&f->par, &err) < 0) return duet_opts_error(cmd, "%s", err.msg);
    return 0;
}

int fuse_cli_paths(const fuse_cli *f, const char *llm, const char **paths) {
    paths[0] = llm;
    if (f->par.rule == DUET_FUSE_PROXY) {
        paths[1] = f->slm_tuned, paths[2] = f->slm;
        return 3;
    }
    paths[1] = f->slm;
    return 2;
}

const char *fuse_cli_role(duet_fuse_rule r, int i) {
    static const char *const two[] = {"llm", "slm"}, *const three[] = {"llm", "tuned", "base"};
    if (i < 0 || i >= duet_fuse_n_models(r)) return "?";
    return r == DUET_FUSE_PROXY ? three[i] : two[i];
}

int fuse_cli_check_vocab(duet_model *const *m, const char *const *paths, int n, duet_err *err) {
    const int nv0 = duet_model_n_vocab(m[0]);
    duet_vocab *v0 = NULL;
    int rc = 0;
    if (duet_gguf_find_key(duet_model_gguf(m[0]), "tokenizer.ggml.model") >= 0 &&
        (rc = duet_vocab_load(&v0, duet_model_gguf(m[0]), err)) < 0)
        return rc;
    for (int i = 1; i < n && rc == 0; i++) {
        const int nv = duet_model_n_vocab(m[i]);
        if (nv != nv0) {
            rc = duet_err_set(err, DUET_EINVAL,
                              "fusion needs one vocabulary, but the models' differ: %s has %d tokens, %s has %d (they must share a "
                              "tokenizer)", paths[i], nv, paths[0], nv0);
            break;
        }
        duet_vocab *v = NULL;
        if (!v0 || duet_gguf_find_key(duet_model_gguf(m[i]), "tokenizer.ggml.model") < 0) continue;
        if ((rc = duet_vocab_load(&v, duet_model_gguf(m[i]), err)) < 0) break;
        duet_err e2 = {0};
        if (duet_vocab_check_compatible(v0, v, &e2) < 0 || duet_vocab_check_compatible(v, v0, &e2) < 0)
            rc = duet_err_set(err, DUET_EINVAL, "fusion needs one vocabulary, but the models' differ: %s and %s (%s)", paths[i], paths[0],
                              e2.msg);
        duet_vocab_free(v);
    }
    duet_vocab_free(v0);
    return rc;
}

void fuse_cli_json(cJSON *o, const fuse_cli *f) {
    cJSON_AddStringToObject(o, "rule", rule_names[f->par.rule]);
    cJSON *p = cJSON_AddObjectToObject(o, "params");
    if (f->par.rule == DUET_FUSE_MIX || f->par.rule == DUET_FUSE_POE) cJSON_AddNumberToObject(p, "weight", f->par.weight);
    if (f->par.rule == DUET_FUSE_CD) {
        cJSON_AddNumberToObject(p, "alpha", f->par.alpha);
        cJSON_AddNumberToObject(p, "beta", f->par.beta);
    }
}

void fuse_cli_describe(const fuse_cli *f, char *buf, size_t cap) {
    const duet_fuse_params *p = &f->par;
    if (p->rule == DUET_FUSE_MIX || p->rule == DUET_FUSE_POE)
        snprintf(buf, cap, "%s, weight %g", rule_names[p->rule], p->weight);
    else if (p->rule == DUET_FUSE_CD)
        snprintf(buf, cap, "cd, alpha %g, beta %g", p->alpha, p->beta);
    else
        snprintf(buf, cap, "proxy");
}

/* What duet generate and duet perplexity share for fusion (--strategy
 * mix|poe|cd|proxy, include/duet/strategy.h): the rule names, the options of
 * the parameters, the models in the rule's order, and the check that they
 * share one vocabulary. Private to the CLI. */
#ifndef DUET_CLI_FUSE_H
#define DUET_CLI_FUSE_H

#include <cjson/cJSON.h>

#include "duet/model.h"
#include "duet/strategy.h"
#include "opts.h"

#define FUSE_CLI_MAX 3

typedef struct fuse_cli {
    const char *slm;       /* --slm: the small model (proxy: the base SLM) */
    const char *slm_tuned; /* --slm-tuned: proxy's tuned SLM */
    duet_fuse_params par;  /* rule and parameters (defaults: duet_fuse_default_params) */
    int weight_set, alpha_set, beta_set;
} fuse_cli;

/* "mix" -> DUET_FUSE_MIX, "poe", "cd", "proxy"; -1 for any other name. */
int fuse_cli_rule(const char *name);
const char *fuse_cli_rule_name(duet_fuse_rule r);

/* Call before parsing: the defaults of the parameters. */
void fuse_cli_init(fuse_cli *f);

/* The option rows (put them in the command's table). --slm has its own row
 * because duet generate shares it with route, cascade and defer. */
#define FUSE_CLI_OPT_SLM(f)                                                                                        \
    DUET_OPT_STR("slm", 0, &(f)->slm, "SLM", "the small model (proxy: the base SLM that --slm-tuned was tuned from)")
#define FUSE_CLI_OPTS(f)                                                                                           \
    DUET_OPT_STR("slm-tuned", 0, &(f)->slm_tuned, "TUNED", "proxy: the tuned SLM (LLM + TUNED - SLM)"),            \
        {.name = "weight", .type = DUET_OPTT_FLOAT, .dest = &(f)->par.weight, .min = 0, .max = 1,                 \
         .given = &(f)->weight_set, .arg = "W",                                                                   \
         .help = "mix, poe: the LLM's weight in [0, 1] (default 0.5; 1 = the LLM alone)"},                        \
        {.name = "alpha", .type = DUET_OPTT_FLOAT, .dest = &(f)->par.alpha, .min = 0, .max = 1,                   \
         .given = &(f)->alpha_set, .arg = "A",                                                                    \
         .help = "cd: plausibility, keep tokens with p_LLM >= A x max p_LLM (default 0.1)"},                      \
        {.name = "beta", .type = DUET_OPTT_FLOAT, .dest = &(f)->par.beta, .min = 0, .max = 100,                   \
         .given = &(f)->beta_set, .arg = "B",                                                                     \
         .help = "cd: 0 = log p_LLM - log p_SLM (default), > 0 = (1 + B) log p_LLM - B log p_SLM"}

/* After parsing, for --strategy RULE (rule from fuse_cli_rule): the models
 * the rule needs are given (--slm; proxy: --slm-tuned too), no parameter of
 * another rule is. Prints "duet CMD: ..." and returns 2 on bad usage.
 * rule < 0 (no fusion): none of the fusion options may be given. */
int fuse_cli_check(const char *cmd, fuse_cli *f, int rule);

/* The model paths in the rule's order: LLM, SLM (proxy: LLM, tuned, base). */
int fuse_cli_paths(const fuse_cli *f, const char *llm, const char **paths);

/* The roles of those models, for messages and JSON: "llm", "slm" (proxy:
 * "llm", "tuned", "base"). */
const char *fuse_cli_role(duet_fuse_rule r, int i);

/* Whether the models share one vocabulary: the same number of logits and
 * the same text for every id (duet_vocab_check_compatible both ways). 0, or
 * DUET_EINVAL with err saying which model differs and how. */
int fuse_cli_check_vocab(duet_model *const *m, const char *const *paths, int n, duet_err *err);

/* "rule" and "params" (only the rule's own) into o. */
void fuse_cli_json(cJSON *o, const fuse_cli *f);

/* "mix, weight 0.5" / "proxy" / "cd, alpha 0.1, beta 0" into buf. */
void fuse_cli_describe(const fuse_cli *f, char *buf, size_t cap);

#endif

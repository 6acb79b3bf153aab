/* The --pipeline stages of duet generate: redact, then compress, on the
 * prompt text; restore on the answer as it streams (pipeline_cli.h). */
#include "pipeline_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/lm_local.h"

int pipeline_cli_check(const char *cmd, pipeline_cli *p, int token_prompt) {
    if (!p->ratio_set) p->compress_ratio = 0.5;
    if (!p->stages) {
        if (p->pii_names || p->ratio_set)
            return duet_opts_error(cmd, "--pii-names and --compress-ratio need --pipeline redact / compress");
        return 0;
    }
    for (const char *s = p->stages;;) { /* every comma-separated name, the empty ones too */
        const char *e = strchr(s, ',');
        const size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 0) return duet_opts_error(cmd, "--pipeline: an empty stage in '%s'", p->stages);
        if (len == 6 && !strncmp(s, "redact", 6)) p->redact = 1;
        else if (len == 8 && !strncmp(s, "compress", 8)) p->compress = 1;
        else if (len == 8 && !strncmp(s, "generate", 8)) {} /* the stage that always runs */
        else if (len == 7 && !strncmp(s, "restore", 7)) {} /* follows from redact */
        else return duet_opts_error(cmd, "--pipeline: unknown stage '%.*s' (stages: redact, compress)", (int)len, s);
        if (!e) break;
        s = e + 1;
    }
    if (!p->redact && !p->compress) return duet_opts_error(cmd, "--pipeline names no stage (stages: redact, compress)");
    if (p->pii_names && !p->redact) return duet_opts_error(cmd, "--pii-names needs --pipeline redact");
    if (p->ratio_set && !p->compress) return duet_opts_error(cmd, "--compress-ratio needs --pipeline compress");
    if (token_prompt) return duet_opts_error(cmd, "--pipeline works on a text prompt, not --tokens");
    return 0;
}

/* compress on the (redacted) text with the local model: the library's
 * duet_compress_text_keep keeps every placeholder whole (the server's
 * pipeline profiles cut prompts the same way). */
static int compress_text(pipeline_cli *p, duet_model *m, const duet_vocab *v, const char *text, char **out,
                         duet_err *err) {
    duet_lm *lm = NULL;
    duet_compress_params cp = duet_compress_default_params();
    cp.keep_ratio = p->compress_ratio;
    int rc = duet_lm_local_new(&lm, m, 0, "compress", err);
    if (rc == 0)
        rc = duet_compress_text_keep(lm, v, text, &cp, p->redactor, out, &p->n_tokens_in, &p->n_tokens_kept, err);
    duet_lm_free(lm);
    return rc;
}

int pipeline_cli_apply(pipeline_cli *p, duet_model *m, const duet_vocab *vocab, const char **prompt, duet_err *err) {
    if (!p->redact && !p->compress) return 0;
    if (!vocab) return duet_err_set(err, DUET_EINVAL, "--pipeline needs a model with a tokenizer");
    const char *text = *prompt;
    if (p->redact) {
        duet_redact_params rp = duet_redact_default_params();
        rp.names_file = p->pii_names;
        int rc = duet_redactor_new(&p->redactor, &rp, err);
        if (rc == 0) rc = duet_redact(p->redactor, text, strlen(text), &p->prompt, err);
        if (rc < 0) return rc;
        p->n_redacted = rc;
        if (!(p->restore = duet_restore_stream_new(p->redactor))) return duet_err_set(err, DUET_ENOMEM, "out of memory");
        text = p->prompt;
    }
    if (p->compress) {
        char *c;
        const int rc = compress_text(p, m, vocab, text, &c, err);
        if (rc < 0) return rc;
        free(p->prompt);
        p->prompt = c;
    }
    *prompt = p->prompt;
    return 0;
}

void pipeline_cli_restore(pipeline_cli *p, const char **s, size_t *n) {
    if (!p->restore) return;
    const char *o = duet_restore_stream_push(p->restore, *s, *n, n);
    *s = o ? o : "";
    p->n_restored = duet_restore_stream_count(p->restore);
}

void pipeline_cli_restore_flush(pipeline_cli *p, const char **s, size_t *n) {
    *s = "", *n = 0;
    if (!p->restore) return;
    const char *o = duet_restore_stream_flush(p->restore, n);
    *s = o ? o : "";
}

void pipeline_cli_json(cJSON *st, const pipeline_cli *p) {
    if (!p->redact && !p->compress) return;
    cJSON *o = cJSON_AddObjectToObject(st, "pipeline");
    cJSON *stages = cJSON_AddArrayToObject(o, "stages");
    if (p->redact) cJSON_AddItemToArray(stages, cJSON_CreateString("redact"));
    if (p->compress) cJSON_AddItemToArray(stages, cJSON_CreateString("compress"));
    cJSON_AddItemToArray(stages, cJSON_CreateString("generate"));
    if (p->redact) {
        cJSON_AddItemToArray(stages, cJSON_CreateString("restore"));
        cJSON_AddNumberToObject(o, "redacted", p->n_redacted);
        cJSON *by = cJSON_AddObjectToObject(o, "redacted_by_kind");
        for (int k = 0; k < DUET_PII_COUNT; k++)
            cJSON_AddNumberToObject(by, duet_pii_kind_name(k), duet_redact_count_kind(p->redactor, k));
        cJSON_AddNumberToObject(o, "restored", p->n_restored);
    }
    if (p->compress) {
        cJSON_AddNumberToObject(o, "compress_ratio", p->compress_ratio);
        cJSON_AddNumberToObject(o, "tokens_in", p->n_tokens_in);
        cJSON_AddNumberToObject(o, "tokens_kept", p->n_tokens_kept);
    }
}

void pipeline_cli_print(const pipeline_cli *p) {
    if (p->redact) {
        fprintf(stderr, "[pipeline] redacted %d value%s (", p->n_redacted, p->n_redacted == 1 ? "" : "s");
        int first = 1;
        for (int k = 0; k < DUET_PII_COUNT; k++) {
            const int c = duet_redact_count_kind(p->redactor, k);
            if (c) fprintf(stderr, "%s%s %d", first ? "" : ", ", duet_pii_kind_name(k), c), first = 0;
        }
        fprintf(stderr, "%s), restored %d placeholder%s in the answer\n", first ? "none" : "", p->n_restored,
                p->n_restored == 1 ? "" : "s");
    }
    if (p->compress)
        fprintf(stderr, "[pipeline] compressed the prompt from %d to %d tokens (ratio %g)\n", p->n_tokens_in,
                p->n_tokens_kept, p->compress_ratio);
}

void pipeline_cli_free(pipeline_cli *p) {
    duet_restore_stream_free(p->restore);
    duet_redactor_free(p->redactor);
    free(p->prompt);
    p->restore = NULL, p->redactor = NULL, p->prompt = NULL;
}

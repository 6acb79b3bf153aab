/* The --pipeline stages of duet generate (issue 14's `redact -> compress ->
 * generate -> restore`): the prompt text is redacted (PII replaced by
 * typed placeholders, include/duet/redact.h) and compressed by the local
 * model (include/duet/compress.h, placeholders always kept) before it is
 * tokenized, so nothing the user typed as PII reaches a remote endpoint;
 * the answer is restored as it streams. Private to the CLI. */
#ifndef DUET_CLI_PIPELINE_H
#define DUET_CLI_PIPELINE_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "duet/compress.h"
#include "duet/model.h"
#include "duet/redact.h"
#include "duet/tok.h"
#include "opts.h"

typedef struct pipeline_cli {
    const char *stages;        /* --pipeline LIST: "redact", "compress", "redact,compress" */
    const char *pii_names;     /* --pii-names FILE */
    double compress_ratio;     /* --compress-ratio R (share of the prompt's tokens kept) */
    int ratio_set;
    int redact, compress;      /* the stages asked for */
    duet_redactor *redactor;
    duet_restore_stream *restore;
    char *prompt;              /* the prompt after the stages (owned) */
    int n_redacted;            /* values replaced in the prompt */
    int n_tokens_in, n_tokens_kept; /* compress: the prompt's tokens before and after */
    int n_restored;            /* placeholders put back into the answer */
} pipeline_cli;

#define PIPELINE_CLI_OPTS(p)                                                                                       \
    DUET_OPT_STR("pipeline", 0, &(p)->stages, "redact[,compress]",                                                 \
                 "stages on the device before generation: redact (PII -> <EMAIL_1>-style placeholders, restored "  \
                 "in the answer), compress (the local model drops the prompt's least informative tokens)"),       \
        DUET_OPT_STR("pii-names", 0, &(p)->pii_names, "FILE", "redact: names to redact too, one a line"),          \
        {.name = "compress-ratio", .type = DUET_OPTT_DOUBLE, .dest = &(p)->compress_ratio, .min = 0,             \
         .max = 1, .flags = DUET_OPT_MIN_OPEN, .given = &(p)->ratio_set, .arg = "R",                              \
         .help = "compress: share of the prompt's tokens kept, in (0, 1] (default 0.5)"}

/* After parsing: the stage names are known, --pii-names and
 * --compress-ratio come with their stage, and the prompt is text
 * (token_prompt: --tokens was given). Prints "duet CMD: ..." and returns 2
 * on bad usage, 0 otherwise. */
int pipeline_cli_check(const char *cmd, pipeline_cli *p, int token_prompt);

/* Runs the stages on the prompt text (m, vocab: the local model, for
 * compress); *prompt then points at the result (owned by p). A no-op
 * without --pipeline. 0 or a negative error with err set. */
int pipeline_cli_apply(pipeline_cli *p, duet_model *m, const duet_vocab *vocab, const char **prompt, duet_err *err);

/* The answer's text as it streams, restored: *s / *n are replaced by what
 * may be emitted now (possibly nothing). flush: what was held at the end.
 * Without redact both pass the text through. */
void pipeline_cli_restore(pipeline_cli *p, const char **s, size_t *n);
void pipeline_cli_restore_flush(pipeline_cli *p, const char **s, size_t *n);

/* The stages' figures: a "pipeline" object in st, or a line on stderr. */
void pipeline_cli_json(cJSON *st, const pipeline_cli *p);
void pipeline_cli_print(const pipeline_cli *p);

void pipeline_cli_free(pipeline_cli *p);

#endif

/* The options duet train and duet distill share (cmd_train.c): data, model
 * shape, batch, optimizer and run control, as rows of one option table. */
#ifndef DUET_CLI_TRAIN_CLI_H
#define DUET_CLI_TRAIN_CLI_H

#include "duet/train.h"
#include "opts.h"

typedef struct {
    duet_train_opts o;
    duet_tconfig c;
    const char *init, *train_path, *valid_path;
    int threads, json, f16, vocab_ignored, lr_min_given;
    double ckpt_minutes, time_limit_minutes;
} train_cli;

/* Rows train_cli_rows writes at most. */
#define TRAIN_CLI_MAX_ROWS 40

/* Defaults of both commands (train's, which distill adjusts). */
void train_cli_defaults(train_cli *t);
/* Writes the shared rows into rows[0..n) and returns n; `init_help` says what
 * --init loads ("fine-tune this model", "the student to start from"). */
int train_cli_rows(duet_opt *rows, train_cli *t, const char *init_help);
/* After parsing: the derived settings (lr-min, minutes, output type). */
void train_cli_finish(train_cli *t);

#endif

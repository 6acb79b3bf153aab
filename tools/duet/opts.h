/* The duet CLI's option parser: each command declares its options once, in a
 * table, and gets typed, range-checked values, one usage text, and the same
 * errors everywhere (exit status 2, one line naming the command, the option,
 * the value and what is accepted).
 *
 * A command does:
 *
 *     int n = 128, threads = duet_cli_default_threads();
 *     float temp = 0.8f;
 *     const char *model = NULL;
 *     const duet_opt opts[] = {
 *         DUET_OPT_STR("model", 'm', &model, "PATH", "the GGUF model"),
 *         DUET_OPT_INT(NULL, 'n', &n, 0, INT_MAX, "N", "new tokens (default 128)"),
 *         DUET_OPT_FLOAT("temp", 0, &temp, 0, INFINITY, "T", "temperature, 0 = greedy (default 0.8)"),
 *         DUET_OPT_THREADS(&threads),
 *         DUET_OPT_END,
 *     };
 *     int rc = duet_opts_parse("generate", opts, argc, argv, "usage: duet generate -m MODEL ...\n");
 *     if (rc) return rc == 1 ? 0 : rc;   // 1: --help was printed; 2: bad usage, already reported
 *
 * The table is a local (not static) array because its destinations are the
 * command's locals. Options are matched exactly: `--name VALUE`,
 * `--name=VALUE`, `-x VALUE`; a flag takes no value. A value is always the
 * next argument, even if it starts with '-' (so `-n -1` reports a range
 * error rather than a missing value). Arguments that are not options are an
 * error (no command takes positional arguments); `--` is not special.
 * Options may repeat; the last one wins, except DUET_OPT_LIST which collects.
 * To know whether an option was given at all (a seed from the clock unless
 * --seed), point its row's `given` at an int. */
#ifndef DUET_CLI_OPTS_H
#define DUET_CLI_OPTS_H

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    DUET_OPTT_FLAG,   /* int: set to 1; takes no value */
    DUET_OPTT_INT,    /* int in [min, max] */
    DUET_OPTT_I64,    /* int64_t in [min, max] */
    DUET_OPTT_U64,    /* uint64_t, any value (decimal, or hex with 0x) */
    DUET_OPTT_FLOAT,  /* float in [min, max], finite */
    DUET_OPTT_DOUBLE, /* double in [min, max], finite */
    DUET_OPTT_STR,    /* const char *: points into argv */
    DUET_OPTT_CHOICE, /* int: index of the value in choices (matched ignoring case) */
    DUET_OPTT_LIST,   /* duet_opt_list: every occurrence collected, up to its cap */
    DUET_OPTT_CUSTOM, /* parse(value, dest) == 0 accepts; arg says what is accepted */
} duet_opt_type;

/* flags */
#define DUET_OPT_MIN_OPEN 1u /* min itself is excluded: "> min" (e.g. a temperature > 0) */
#define DUET_OPT_DEFAULT_THREADS 2u /* usage: append "(default: N, one per available CPU)" */

/* Destination of a DUET_OPTT_LIST option: v[0..n) in command-line order. */
typedef struct {
    const char **v; /* (cap) */
    int n, cap;
} duet_opt_list;

typedef struct {
    const char *name;           /* long name without "--" ("temp"), or NULL */
    char short_name;            /* 't' for -t, or 0 */
    duet_opt_type type;
    void *dest;                 /* what the type says */
    double min, max;            /* numeric types: accepted range, inclusive (see flags) */
    unsigned flags;             /* DUET_OPT_MIN_OPEN, DUET_OPT_DEFAULT_THREADS */
    const char *const *choices; /* CHOICE: NULL-terminated */
    int (*parse)(const char *value, void *dest); /* CUSTOM */
    const char *arg;            /* name of the value in the usage ("N", "PATH"); CUSTOM: also the error's
                                   "takes ..." text, so write it as the accepted forms ("kl|rkl|jsd:BETA|tvd") */
    const char *help;           /* one line; say the default here */
    int *given;                 /* if not NULL, set to 1 when the option appears; the macros leave it NULL, so
                                   write such a row with designated initializers:
                                   {.name = "seed", .short_name = 's', .type = DUET_OPTT_U64, .dest = &seed,
                                    .given = &seed_set, .arg = "S", .help = "..."} */
} duet_opt;

/* Parses argv[1..argc) (argv[0] is the command name) into the table's
 * destinations. `cmd` names the command in messages ("generate"); `usage_head`
 * is printed before the generated option list by --help/-h (may be NULL).
 * Returns 0 when parsed, 1 when --help was printed to stdout (the command
 * should exit 0), 2 after printing one error line to stderr (exit 2).
 * Destinations of options not given are left as they were (the defaults). */
int duet_opts_parse(const char *cmd, const duet_opt *opts, int argc, char **argv, const char *usage_head);

/* The usage text --help prints: usage_head, then one line per option. */
void duet_opts_usage(FILE *f, const duet_opt *opts, const char *usage_head);

/* For a command's own checks after parsing (a required option, two options
 * that conflict): prints "duet CMD: MESSAGE" on one line and returns 2. */
int duet_opts_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The thread count of every command that takes -t when -t is not given:
 * one thread per CPU this process may run on, within 1..DUET_CLI_MAX_THREADS. */
#define DUET_CLI_MAX_THREADS 1024
int duet_cli_default_threads(void);

/* ---- table rows ------------------------------------------------------------
 * The macros check the destination's type at compile time: a mismatched
 * pointer draws "pointer type mismatch in conditional expression". */
#define DUET_OPT_DEST_(T, p) ((void *)(1 ? (p) : (T *)0))

#define DUET_OPT_FLAG(lng, sh, dst, help_) \
    {.name = (lng), .short_name = (sh), .type = DUET_OPTT_FLAG, .dest = DUET_OPT_DEST_(int, dst), .help = (help_)}
#define DUET_OPT_INT(lng, sh, dst, lo, hi, arg_, help_)                                                            \
    {.name = (lng), .short_name = (sh), .type = DUET_OPTT_INT, .dest = DUET_OPT_DEST_(int, dst), .min = (lo),     \
     .max = (hi), .arg = (arg_), .help = (help_)}
#define DUET_OPT_I64(lng, sh, dst, lo, hi, arg_, help_)                                                            \
    {.name = (lng), .short_name = (sh), .type = DUET_OPTT_I64, .dest = DUET_OPT_DEST_(int64_t, dst), .min = (lo), \
     .max = (hi), .arg = (arg_), .help = (help_)}
#define DUET_OPT_U64(lng, sh, dst, arg_, help_)                                                                    \
    {.name = (lng), .short_name = (sh), .type = DUET_OPTT_U64, .dest = DUET_OPT_DEST_(uint64_t, dst),             \
     .arg = (arg_), .help = (help_)}
#define DUET_OPT_FLOAT(lng, sh, dst, lo, hi, arg_, help_)                                                          \
    {.name = (lng), .short_name = (sh), .type = DUET_OPTT_FLOAT, .dest = DUET_OPT_DEST_(float, dst), .min = (lo), \
     .max = (hi), .arg = (arg_), .help = (help_)}
/* a float > lo (lo itself excluded) */
#define DUET_OPT_FLOAT_GT(lng, sh, dst, lo, hi, arg_, help_)                                                       \
    {.name = (lng), .short_name = (sh), .type = DUET_OPTT_FLOAT, .dest = DUET_OPT_DEST_(float, dst), .min = (lo), \
     .max = (hi), .flags = DUET_OPT_MIN_OPEN, .arg = (arg_), .help = (help_)}
#define DUET_OPT_DOUBLE(lng, sh, dst, lo, hi, arg_, help_)                                                         \
    {.name = (lng), .short_name = (sh), .type = DUET_OPTT_DOUBLE, .dest = DUET_OPT_DEST_(double, dst),            \
     .min = (lo), .max = (hi), .arg = (arg_), .help = (help_)}
#define DUET_OPT_STR(lng, sh, dst, arg_, help_)                                                                    \
    {.name = (lng), .short_name = (sh), .type = DUET_OPTT_STR, .dest = DUET_OPT_DEST_(const char *, dst),         \
     .arg = (arg_), .help = (help_)}
/* choices: a NULL-terminated array of names; *dst gets the index of the one given */
#define DUET_OPT_CHOICE(lng, sh, dst, choices_, help_)                                                             \
    {.name = (lng), .short_name = (sh), .type = DUET_OPTT_CHOICE, .dest = DUET_OPT_DEST_(int, dst),               \
     .choices = (choices_), .help = (help_)}
#define DUET_OPT_LIST(lng, sh, dst, arg_, help_)                                                                   \
    {.name = (lng), .short_name = (sh), .type = DUET_OPTT_LIST, .dest = DUET_OPT_DEST_(duet_opt_list, dst),       \
     .arg = (arg_), .help = (help_)}
#define DUET_OPT_CUSTOM(lng, sh, dst, parse_, arg_, help_)                                                         \
    {.name = (lng), .short_name = (sh), .type = DUET_OPTT_CUSTOM, .dest = (dst), .parse = (parse_),               \
     .arg = (arg_), .help = (help_)}
/* -t/--threads, the same range and help in every command; initialise the
 * destination with duet_cli_default_threads() */
#define DUET_OPT_THREADS(dst)                                                                                      \
    {.name = "threads", .short_name = 't', .type = DUET_OPTT_INT, .dest = DUET_OPT_DEST_(int, dst), .min = 1,     \
     .max = DUET_CLI_MAX_THREADS, .flags = DUET_OPT_DEFAULT_THREADS, .arg = "N", .help = "threads, 1..1024"}
#define DUET_OPT_END {.name = NULL, .short_name = 0}

#endif

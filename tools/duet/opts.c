/* The duet CLI's table-driven option parser (see opts.h). */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "opts.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

int duet_cli_default_threads(void) {
    /* The CPUs this process may run on (a container or taskset may allow
     * fewer than are online), else the online ones. */
    long n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
    if (n < 1) n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    return n > DUET_CLI_MAX_THREADS ? DUET_CLI_MAX_THREADS : (int)n;
}

int duet_opts_error(const char *cmd, const char *fmt, ...) {
    fprintf(stderr, "duet %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 2;
}

static int is_end(const duet_opt *o) { return !o->name && !o->short_name; }

static int takes_value(const duet_opt *o) { return o->type != DUET_OPTT_FLAG; }

/* "f16|f32" for a choice, else the table's value name. */
static void arg_name(const duet_opt *o, char *buf, size_t cap) {
    buf[0] = 0;
    if (o->type == DUET_OPTT_CHOICE) {
        size_t len = 0;
        for (int k = 0; o->choices[k] && len < cap; k++)
            len += (size_t)snprintf(buf + len, cap - len, "%s%s", k ? "|" : "", o->choices[k]);
    } else if (takes_value(o)) {
        snprintf(buf, cap, "%s", o->arg ? o->arg : "VALUE");
    }
}

void duet_opts_usage(FILE *f, const duet_opt *opts, const char *usage_head) {
    if (usage_head) fputs(usage_head, f);
    char left[256], arg[160];
    fprintf(f, "options:\n");
    for (const duet_opt *o = opts; !is_end(o); o++) {
        arg_name(o, arg, sizeof arg);
        int n;
        if (o->short_name && o->name) n = snprintf(left, sizeof left, "-%c, --%s", o->short_name, o->name);
        else if (o->short_name) n = snprintf(left, sizeof left, "-%c", o->short_name);
        else n = snprintf(left, sizeof left, "    --%s", o->name);
        if (arg[0] && n >= 0 && (size_t)n < sizeof left) snprintf(left + n, sizeof left - (size_t)n, " %s", arg);
        /* long left columns (a choice list) put the help on the next line */
        if (strlen(left) > 26) fprintf(f, "  %s\n  %-26s  %s", left, "", o->help ? o->help : "");
        else fprintf(f, "  %-26s  %s", left, o->help ? o->help : "");
        if (o->flags & DUET_OPT_DEFAULT_THREADS)
            fprintf(f, " (default: %d, one per available CPU)", duet_cli_default_threads());
        fputc('\n', f);
    }
    fprintf(f, "  %-26s  %s\n", "-h, --help", "this help");
}

/* ---- values ------------------------------------------------------------- */

/* What a numeric option accepts, for its error: "an integer in 1..1024",
 * "a number >= 0", "a number > 0 and <= 1". Bounds at the type's limits are
 * left unsaid. */
static void describe_range(const duet_opt *o, char *buf, size_t cap) {
    int integer = o->type == DUET_OPTT_INT || o->type == DUET_OPTT_I64;
    double lo_lim = o->type == DUET_OPTT_INT ? (double)INT_MIN : o->type == DUET_OPTT_I64 ? -9.2e18 : -DBL_MAX;
    double hi_lim = o->type == DUET_OPTT_INT ? (double)INT_MAX : o->type == DUET_OPTT_I64 ? 9.2e18 : DBL_MAX;
    if (o->type == DUET_OPTT_FLOAT) lo_lim = -FLT_MAX, hi_lim = FLT_MAX;
    int has_lo = o->min > lo_lim, has_hi = o->max < hi_lim;
    int open = (o->flags & DUET_OPT_MIN_OPEN) != 0;
    const char *what = integer ? "an integer" : "a number";
    if (has_lo && has_hi && !open) snprintf(buf, cap, "%s in %.10g..%.10g", what, o->min, o->max);
    else if (has_lo && has_hi) snprintf(buf, cap, "%s > %.10g and <= %.10g", what, o->min, o->max);
    else if (has_lo) snprintf(buf, cap, "%s %s %.10g", what, open ? ">" : ">=", o->min);
    else if (has_hi) snprintf(buf, cap, "%s <= %.10g", what, o->max);
    else snprintf(buf, cap, "%s", what);
}

static int in_range(const duet_opt *o, double v) {
    if (o->flags & DUET_OPT_MIN_OPEN ? !(v > o->min) : !(v >= o->min)) return 0;
    return v <= o->max;
}

/* Whole-string numbers only: no leading blanks (strtol would skip them), no
 * trailing characters, no overflow. */
static int parse_i64(const char *s, long long *out) {
    if (!*s || isspace((unsigned char)*s)) return 0;
    char *end;
    errno = 0;
    *out = strtoll(s, &end, 10);
    return !errno && !*end;
}

static int parse_f64(const char *s, double *out) {
    if (!*s || isspace((unsigned char)*s)) return 0;
    char *end;
    *out = strtod(s, &end);
    /* overflow gives HUGE_VAL, which isfinite rejects; an underflow to a tiny
     * value is still that value, so errno is not consulted */
    return !*end && isfinite(*out);
}

static int parse_u64(const char *s, uint64_t *out) {
    /* strtoull would take "-1" as 2^64-1 and skip blanks */
    if (!isdigit((unsigned char)*s)) return 0;
    int hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, hex ? 16 : 10);
    if (errno || *end || (hex && end == s + 2)) return 0;
    *out = (uint64_t)v;
    return 1;
}

/* Stores `v` into the option's destination; 2 after an error line. `spelled`
 * is the option as the user wrote it ("--temp", "-t"). */
static int store(const char *cmd, const duet_opt *o, const char *spelled, const char *v) {
    char accepts[256];
    switch (o->type) {
    case DUET_OPTT_FLAG: *(int *)o->dest = 1; return 0;
    case DUET_OPTT_STR: *(const char **)o->dest = v; return 0;
    case DUET_OPTT_INT:
    case DUET_OPTT_I64: {
        long long x;
        if (!parse_i64(v, &x) || !in_range(o, (double)x)) break;
        if (o->type == DUET_OPTT_INT && (x < INT_MIN || x > INT_MAX)) break; /* a table range wider than int */
        if (o->type == DUET_OPTT_INT) *(int *)o->dest = (int)x;
        else *(int64_t *)o->dest = (int64_t)x;
        return 0;
    }
    case DUET_OPTT_FLOAT:
    case DUET_OPTT_DOUBLE: {
        double x;
        if (!parse_f64(v, &x) || !in_range(o, x)) break;
        if (o->type == DUET_OPTT_DOUBLE) { *(double *)o->dest = x; return 0; }
        if (!isfinite((float)x)) /* 1e39: in range, but not a float */
            return duet_opts_error(cmd, "%s takes a number that fits a float, not '%s'", spelled, v);
        *(float *)o->dest = (float)x;
        return 0;
    }
    case DUET_OPTT_U64:
        if (!parse_u64(v, (uint64_t *)o->dest)) break;
        return 0;
    case DUET_OPTT_CHOICE:
        for (int k = 0; o->choices[k]; k++)
            if (!strcasecmp(v, o->choices[k])) { *(int *)o->dest = k; return 0; }
        break;
    case DUET_OPTT_LIST: {
        duet_opt_list *l = o->dest;
        if (l->n >= l->cap) return duet_opts_error(cmd, "%s given more than %d times", spelled, l->cap);
        l->v[l->n++] = v;
        return 0;
    }
    case DUET_OPTT_CUSTOM:
        if (o->parse(v, o->dest) != 0) break;
        return 0;
    }
    /* the value was refused: say what is accepted */
    switch (o->type) {
    case DUET_OPTT_U64: snprintf(accepts, sizeof accepts, "an unsigned integer (decimal or 0x hex)"); break;
    case DUET_OPTT_CUSTOM: snprintf(accepts, sizeof accepts, "%s", o->arg ? o->arg : "another value"); break;
    case DUET_OPTT_CHOICE: {
        size_t len = 0;
        int n = 0;
        while (o->choices[n]) n++;
        len += (size_t)snprintf(accepts, sizeof accepts, "%s", n > 2 ? "one of " : "");
        for (int k = 0; k < n && len < sizeof accepts; k++)
            len += (size_t)snprintf(accepts + len, sizeof accepts - len, "%s%s",
                                    k == 0 ? "" : n == 2 ? " or " : ", ", o->choices[k]);
        break;
    }
    default: describe_range(o, accepts, sizeof accepts); break;
    }
    return duet_opts_error(cmd, "%s takes %s, not '%s'", spelled, accepts, v);
}

int duet_opts_parse(const char *cmd, const duet_opt *opts, int argc, char **argv, const char *usage_head) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            duet_opts_usage(stdout, opts, usage_head);
            return 1;
        }
        const duet_opt *o = NULL;
        const char *value = NULL; /* from --name=value */
        char spelled[64];
        if (a[0] == '-' && a[1] == '-' && a[2]) {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            for (const duet_opt *p = opts; !o && !is_end(p); p++)
                if (p->name && strlen(p->name) == len && !strncmp(p->name, name, len)) o = p;
            if (eq) value = eq + 1;
            snprintf(spelled, sizeof spelled, "--%.*s", (int)(len < 60 ? len : 60), name);
        } else if (a[0] == '-' && a[1] && !a[2]) {
            for (const duet_opt *p = opts; !o && !is_end(p); p++)
                if (p->short_name == a[1]) o = p;
            snprintf(spelled, sizeof spelled, "%s", a);
        }
        if (!o) {
            if (a[0] == '-' && a[1])
                return duet_opts_error(cmd, "unknown option '%s' (duet %s --help lists them)", a, cmd);
            return duet_opts_error(cmd, "unexpected argument '%s' (duet %s --help lists the options)", a, cmd);
        }
        if (!takes_value(o) && value) return duet_opts_error(cmd, "%s takes no value, not '%s'", spelled, value);
        if (takes_value(o) && !value) {
            if (i + 1 >= argc) {
                char arg[160];
                arg_name(o, arg, sizeof arg);
                return duet_opts_error(cmd, "%s needs a value (%s)", spelled, arg);
            }
            value = argv[++i];
        }
        int rc = store(cmd, o, spelled, value);
        if (rc) return rc;
        if (o->given) *o->given = 1;
    }
    return 0;
}

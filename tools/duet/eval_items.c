/* The items of duet eval and duet route-fit: one JSON object per line of a
 * file (cmd_eval.h: eval_items_load), the scoring rule (eval_verdict), and
 * the signals' names. Apart from the runner so that fuzz/fuzz_eval_items.c
 * can drive the reader on any bytes. */
#define _GNU_SOURCE /* getline */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "cmd_eval.h"

int eval_signal_index(const char *name) {
    for (int i = 0; i < DUET_ROUTE_NSIG; i++)
        if (!strcmp(name, duet_signal_name(i))) return i;
    return -1;
}

const char *eval_signal_names(void) {
    static char buf[512];
    if (!buf[0])
        for (int i = 0; i < DUET_ROUTE_NSIG; i++)
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", i ? ", " : "", duet_signal_name(i));
    return buf;
}

/* A finite number that stays finite as a float (1e300 is finite, not as a float;
 * the fuzzer found it). NaN fails the comparison. */
static int fits_float(double x) { return fabs(x) <= FLT_MAX; }

int eval_item_error(const char *cmd, const char *path, int line, const char *why) {
    if (cmd) fprintf(stderr, "duet %s: %s:%d: %s\n", cmd, path, line, why);
    return -1;
}

static int parse_item(eval_item *e, const char *text, size_t len, const char *cmd, const char *path, int line,
                      int label_ok) {
    cJSON *o = cJSON_ParseWithLength(text, len);
    char why[160];
    int rc = -1;
    memset(e, 0, sizeof *e);
    e->line = line;
    e->label = -1;
    if (!o || !cJSON_IsObject(o)) {
        rc = eval_item_error(cmd, path, line, o ? "not a JSON object" : "not valid JSON");
        goto done;
    }
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "prompt");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "answer");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    const cJSON *lab = cJSON_GetObjectItemCaseSensitive(o, "label");
    const cJSON *sig = cJSON_GetObjectItemCaseSensitive(o, "signals");
    const cJSON *hid = cJSON_GetObjectItemCaseSensitive(o, "hidden");
    if (!cJSON_IsString(p) || !p->valuestring[0]) {
        rc = eval_item_error(cmd, path, line, "\"prompt\" is missing or not a non-empty string");
        goto done;
    }
    if (lab && !cJSON_IsNull(lab)) {
        if (!label_ok) {
            e->label = -1; /* eval ignores labels */
        } else if (cJSON_IsBool(lab)) {
            e->label = cJSON_IsTrue(lab);
        } else if (cJSON_IsNumber(lab) && (lab->valuedouble == 0 || lab->valuedouble == 1)) {
            e->label = (int)lab->valuedouble;
        } else {
            rc = eval_item_error(cmd, path, line, "\"label\" must be 0 or 1");
            goto done;
        }
    }
    if (a && !cJSON_IsNull(a) && (!cJSON_IsString(a) || !a->valuestring[0])) {
        rc = eval_item_error(cmd, path, line, "\"answer\" is not a non-empty string");
        goto done;
    }
    if (!cJSON_IsString(a) && e->label < 0) {
        rc = eval_item_error(cmd, path, line, label_ok ? "no \"answer\" (and no \"label\")" : "\"answer\" is missing");
        goto done;
    }
    if (sig && !cJSON_IsNull(sig)) {
        if (!cJSON_IsObject(sig)) {
            rc = eval_item_error(cmd, path, line, "\"signals\" must be an object of the signals by name");
            goto done;
        }
        e->has_sig = 1;
        for (int k = 0; k < DUET_ROUTE_NSIG; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(sig, duet_signal_name(k));
            if (!v) { /* a file of an older duet with fewer signals: they are computed again */
                e->has_sig = 0;
                continue;
            }
            if (!cJSON_IsNumber(v) || !fits_float(v->valuedouble)) {
                snprintf(why, sizeof why, "\"signals\": \"%s\" is not a finite number", duet_signal_name(k));
                rc = eval_item_error(cmd, path, line, why);
                goto done;
            }
            e->sig[k] = (float)v->valuedouble;
        }
    }
    if (hid && !cJSON_IsNull(hid)) {
        const int nh = cJSON_IsArray(hid) ? cJSON_GetArraySize(hid) : 0;
        if (nh < 1 || nh > 1 << 16) {
            rc = eval_item_error(cmd, path, line, "\"hidden\" must be a non-empty array of numbers");
            goto done;
        }
        if (!(e->hidden = malloc(sizeof *e->hidden * (size_t)nh))) {
            rc = eval_item_error(cmd, path, line, "out of memory");
            goto done;
        }
        e->n_hidden = nh;
        int k = 0;
        for (const cJSON *v = hid->child; v; v = v->next, k++) {
            if (!cJSON_IsNumber(v) || !fits_float(v->valuedouble)) {
                snprintf(why, sizeof why, "\"hidden\"[%d] is not a finite number", k);
                rc = eval_item_error(cmd, path, line, why);
                goto done;
            }
            e->hidden[k] = (float)v->valuedouble;
        }
    }
    e->prompt = strdup(p->valuestring);
    e->answer = cJSON_IsString(a) ? strdup(a->valuestring) : NULL;
    if (cJSON_IsString(id)) e->id = strdup(id->valuestring);
    else if (cJSON_IsNumber(id)) snprintf(why, sizeof why, "%.17g", id->valuedouble), e->id = strdup(why);
    else snprintf(why, sizeof why, "line %d", line), e->id = strdup(why);
    if (!e->prompt || !e->id || (cJSON_IsString(a) && !e->answer)) {
        rc = eval_item_error(cmd, path, line, "out of memory");
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(o);
    if (rc) free(e->prompt), free(e->answer), free(e->id), free(e->hidden), memset(e, 0, sizeof *e);
    return rc;
}

int eval_items_load(eval_items *it, const char *path, const char *cmd, int label_ok) {
    memset(it, 0, sizeof *it);
    it->path = path;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (cmd) fprintf(stderr, "duet %s: cannot open %s: %s\n", cmd, path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap_line = 0;
    ssize_t len;
    int ln = 0, cap = 0, rc = 0;
    while (rc == 0 && (len = getline(&line, &cap_line, f)) >= 0) {
        ln++;
        size_t n = (size_t)len;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        size_t k = 0;
        while (k < n && isspace((unsigned char)line[k])) k++;
        if (k == n) continue; /* a blank line */
        if (memchr(line, 0, n)) {
            rc = eval_item_error(cmd, path, ln, "a NUL byte in the line");
            break;
        }
        if (it->n == cap) {
            cap = cap ? cap * 2 : 256;
            eval_item *v = realloc(it->v, sizeof *v * (size_t)cap);
            if (!v) {
                rc = eval_item_error(cmd, path, ln, "out of memory");
                break;
            }
            it->v = v;
        }
        rc = parse_item(&it->v[it->n], line, n, cmd, path, ln, label_ok);
        if (rc == 0) it->n++;
    }
    if (rc == 0 && ferror(f)) {
        if (cmd) fprintf(stderr, "duet %s: reading %s failed\n", cmd, path);
        rc = -1;
    }
    free(line);
    fclose(f);
    if (rc == 0 && it->n == 0) {
        if (cmd) fprintf(stderr, "duet %s: %s holds no items\n", cmd, path);
        rc = -1;
    }
    if (rc) eval_items_free(it);
    return rc;
}

void eval_items_free(eval_items *it) {
    for (int i = 0; i < it->n; i++) {
        free(it->v[i].id), free(it->v[i].prompt), free(it->v[i].answer), free(it->v[i].tok), free(it->v[i].hidden);
    }
    free(it->v);
    it->v = NULL;
    it->n = 0;
}

int eval_verdict(const char *text, const char *answer, int stopped) {
    if (!text || !answer || !answer[0]) return 0;
    const size_t nt = strlen(text), na = strlen(answer);
    if (nt <= na) { /* the text ends before the word does, or right at its end */
        const int prefix = nt == 0 || (text[0] == ' ' && !strncmp(text + 1, answer, nt - 1));
        return prefix && !stopped ? -1 : 0;
    }
    if (text[0] != ' ' || strncmp(text + 1, answer, na) != 0) return 0;
    if (nt == na + 1) return stopped ? 1 : -1; /* exactly " answer": the end decides only if it is a stop */
    const unsigned char c = (unsigned char)text[na + 1];
    /* a letter (ASCII, or any byte of a multi-byte UTF-8 character) continues the word */
    return !(isalpha(c) || c >= 0x80);
}


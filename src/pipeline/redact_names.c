/* The user's list of names to redact: read from a file (one a line) and
 * given directly, kept lower-cased (ASCII) and longest first, bucketed by
 * first byte so a word start tries only the names that could match. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redact_internal.h"

struct pii_names {
    char **name;   /* (n) lower-cased, longest first */
    size_t *len;   /* (n) */
    int n, cap;
    int *bucket;   /* (n) indices into name, grouped by first byte, longest first in each */
    int start[257];/* bucket[start[b] .. start[b+1]) are the names that begin with byte b */
};

static int add_name(pii_names *nm, const char *s, size_t len) {
    while (len && (s[0] == ' ' || s[0] == '\t')) s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r')) len--;
    if (len == 0) return 0;
    if (nm->n == nm->cap) {
        const int cap = nm->cap ? nm->cap * 2 : 16;
        char **a = realloc(nm->name, sizeof *a * (size_t)cap);
        if (!a) return DUET_ENOMEM;
        nm->name = a;
        size_t *l = realloc(nm->len, sizeof *l * (size_t)cap);
        if (!l) return DUET_ENOMEM;
        nm->len = l, nm->cap = cap;
    }
    char *c = malloc(len + 1);
    if (!c) return DUET_ENOMEM;
    for (size_t i = 0; i < len; i++) c[i] = (char)pii_lower((unsigned char)s[i]);
    c[len] = 0;
    nm->name[nm->n] = c, nm->len[nm->n] = len, nm->n++;
    return 0;
}

static const pii_names *sort_ctx;
static int by_first_byte_then_longest(const void *a, const void *b) {
    const int i = *(const int *)a, j = *(const int *)b;
    const int bi = (unsigned char)sort_ctx->name[i][0], bj = (unsigned char)sort_ctx->name[j][0];
    if (bi != bj) return bi - bj;
    if (sort_ctx->len[i] != sort_ctx->len[j]) return sort_ctx->len[i] < sort_ctx->len[j] ? 1 : -1;
    return i - j;
}

static int read_file(pii_names *nm, const char *path, duet_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return duet_err_set(err, DUET_EIO, "cannot open the names file '%s': %s", path, strerror(errno));
    char line[1024];
    int rc = 0, lineno = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            rc = duet_err_set(err, DUET_EFORMAT, "%s:%d: a name longer than %zu bytes", path, lineno, sizeof line - 2);
            break;
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        if (pii_utf8_invalid_at(line, len) != len) {
            rc = duet_err_set(err, DUET_EFORMAT, "%s:%d: not valid UTF-8", path, lineno);
            break;
        }
        size_t k = 0;
        while (k < len && (line[k] == ' ' || line[k] == '\t')) k++;
        if (k < len && line[k] == '#') continue;
        if ((rc = add_name(nm, line, len)) < 0) duet_err_set(err, rc, "out of memory reading '%s'", path);
    }
    if (rc == 0 && ferror(f)) rc = duet_err_set(err, DUET_EIO, "cannot read the names file '%s'", path);
    fclose(f);
    return rc;
}

int pii_names_new(pii_names **out, const char *file, const char *const *extra, int n_extra, duet_err *err) {
    *out = NULL;
    pii_names *nm = calloc(1, sizeof *nm);
    if (!nm) return duet_err_set(err, DUET_ENOMEM, "out of memory");
    int rc = file ? read_file(nm, file, err) : 0;
    for (int i = 0; rc == 0 && i < n_extra; i++) {
        const size_t len = extra[i] ? strlen(extra[i]) : 0;
        if (pii_utf8_invalid_at(extra[i], len) != len) rc = duet_err_set(err, DUET_EFORMAT, "name %d is not valid UTF-8", i + 1);
        else if ((rc = add_name(nm, extra[i], len)) < 0) duet_err_set(err, rc, "out of memory");
    }
    if (rc == 0 && nm->n && !(nm->bucket = malloc(sizeof *nm->bucket * (size_t)nm->n)))
        rc = duet_err_set(err, DUET_ENOMEM, "out of memory");
    if (rc < 0) {
        pii_names_free(nm);
        return rc;
    }
    for (int i = 0; i < nm->n; i++) nm->bucket[i] = i;
    sort_ctx = nm; /* qsort has no context argument in C11; this runs once per redactor */
    if (nm->n) qsort(nm->bucket, (size_t)nm->n, sizeof *nm->bucket, by_first_byte_then_longest);
    int k = 0;
    for (int b = 0; b <= 256; b++) {
        while (k < nm->n && (unsigned char)nm->name[nm->bucket[k]][0] < b) k++;
        nm->start[b] = k;
    }
    *out = nm;
    return 0;
}

void pii_names_free(pii_names *nm) {
    if (!nm) return;
    for (int i = 0; i < nm->n; i++) free(nm->name[i]);
    free(nm->name), free(nm->len), free(nm->bucket), free(nm);
}

int pii_names_count(const pii_names *nm) { return nm ? nm->n : 0; }

size_t pii_names_match(const pii_names *nm, const char *t, size_t n, size_t pos) {
    if (!nm || nm->n == 0 || (pos > 0 && pii_is_word(pii_at(t, n, pos - 1)))) return 0;
    const int b = pii_lower(pii_at(t, n, pos));
    if (b < 0) return 0;
    for (int k = nm->start[b]; k < nm->start[b + 1]; k++) {
        const int i = nm->bucket[k];
        const size_t len = nm->len[i];
        if (pos + len > n) continue;
        size_t j = 0;
        while (j < len && pii_lower((unsigned char)t[pos + j]) == (unsigned char)nm->name[i][j]) j++;
        if (j == len && !pii_is_word(pii_at(t, n, pos + len))) return len;
    }
    return 0;
}

/* The redactor: one left-to-right pass over the text; at each position the
 * detectors are tried in a fixed order (the most specific first: a URL
 * holds an address, an e-mail a name) and the first that matches takes the
 * value. Each distinct value is kept once, with its placeholder, so the
 * same value gets the same placeholder in every call and restore can map
 * back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/redact.h"
#include "redact_internal.h"

typedef struct {
    int kind;
    char *value;  /* (len + 1) */
    size_t len;
    char ph[PII_PH_MAX];
} entry;

struct duet_redactor {
    unsigned kinds;
    pii_names *names;
    entry *e;              /* (n) in the order first seen */
    int n, cap;
    int *slot;             /* (n_slots) open addressing by value: entry index + 1, 0 empty */
    size_t n_slots;
    int *by_num[DUET_PII_COUNT]; /* (n_kind[k]) placeholder number - 1 -> entry index */
    int n_kind[DUET_PII_COUNT], cap_kind[DUET_PII_COUNT];
};

duet_redact_params duet_redact_default_params(void) {
    duet_redact_params p = {.kinds = DUET_PII_ALL};
    return p;
}

int duet_redactor_new(duet_redactor **out, const duet_redact_params *p, duet_err *err) {
    *out = NULL;
    const duet_redact_params def = duet_redact_default_params();
    if (!p) p = &def;
    if (p->kinds & ~DUET_PII_ALL) return duet_err_set(err, DUET_EINVAL, "unknown PII kinds in mask 0x%x", p->kinds);
    if (p->n_names < 0 || (p->n_names > 0 && !p->names))
        return duet_err_set(err, DUET_EINVAL, "names: %d given but no array", p->n_names);
    duet_redactor *r = calloc(1, sizeof *r);
    if (!r) return duet_err_set(err, DUET_ENOMEM, "out of memory");
    r->kinds = p->kinds;
    if ((p->kinds & (1u << DUET_PII_NAME)) && (p->names_file || p->n_names)) {
        const int rc = pii_names_new(&r->names, p->names_file, p->names, p->n_names, err);
        if (rc < 0) {
            free(r);
            return rc;
        }
    }
    *out = r;
    return 0;
}

void duet_redactor_free(duet_redactor *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) free(r->e[i].value);
    for (int k = 0; k < DUET_PII_COUNT; k++) free(r->by_num[k]);
    free(r->e), free(r->slot);
    pii_names_free(r->names);
    free(r);
}

static uint64_t hash_bytes(const char *s, size_t n) { /* FNV-1a */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* The slot holding value s[0..n), or the empty slot where it would go. */
static size_t find_slot(const duet_redactor *r, const char *s, size_t n) {
    size_t i = hash_bytes(s, n) & (r->n_slots - 1);
    for (;; i = (i + 1) & (r->n_slots - 1)) {
        const int k = r->slot[i] - 1;
        if (k < 0 || (r->e[k].len == n && memcmp(r->e[k].value, s, n) == 0)) return i;
    }
}

static int grow_slots(duet_redactor *r) {
    const size_t ns = r->n_slots ? r->n_slots * 2 : 64;
    int *old = r->slot;
    const size_t old_n = r->n_slots;
    if (!(r->slot = calloc(ns, sizeof *r->slot))) {
        r->slot = old;
        return DUET_ENOMEM;
    }
    r->n_slots = ns;
    for (size_t i = 0; i < old_n; i++)
        if (old[i]) r->slot[find_slot(r, r->e[old[i] - 1].value, r->e[old[i] - 1].len)] = old[i];
    free(old);
    return 0;
}

/* The placeholder of value s[0..n) of this kind, made on first sight. */
static const char *placeholder_for(duet_redactor *r, int kind, const char *s, size_t n) {
    if ((size_t)(r->n + 1) * 2 > r->n_slots && grow_slots(r) < 0) return NULL;
    const size_t at = find_slot(r, s, n);
    if (r->slot[at]) return r->e[r->slot[at] - 1].ph;
    if (r->n == r->cap) {
        const int cap = r->cap ? r->cap * 2 : 16;
        entry *e = realloc(r->e, sizeof *e * (size_t)cap);
        if (!e) return NULL;
        r->e = e, r->cap = cap;
    }
    if (r->n_kind[kind] == r->cap_kind[kind]) {
        const int cap = r->cap_kind[kind] ? r->cap_kind[kind] * 2 : 8;
        int *b = realloc(r->by_num[kind], sizeof *b * (size_t)cap);
        if (!b) return NULL;
        r->by_num[kind] = b, r->cap_kind[kind] = cap;
    }
    entry *e = &r->e[r->n];
    if (!(e->value = malloc(n + 1))) return NULL;
    memcpy(e->value, s, n);
    e->value[n] = 0;
    e->len = n, e->kind = kind;
    r->by_num[kind][r->n_kind[kind]++] = r->n;
    snprintf(e->ph, sizeof e->ph, "<%s_%d>", duet_pii_kind_name(kind), r->n_kind[kind]);
    r->slot[at] = ++r->n;
    return e->ph;
}

/* The value that starts at t[pos]: its length and kind (-1: a shape that
 * failed its checksum, copied as it is), or 0. */
static size_t detect(const duet_redactor *r, const char *t, size_t n, size_t pos, int *kind) {
#define ON(k) (r->kinds & (1u << (k)))
    size_t len;
    int shape_only;
    unsigned long num;
    if (t[pos] == '<' && (len = pii_placeholder(t, n, pos, kind, &num)) && ON(*kind)) return len;
    if (ON(DUET_PII_URL) && (len = pii_url_creds(t, n, pos))) return *kind = DUET_PII_URL, len;
    if (ON(DUET_PII_EMAIL) && (len = pii_email(t, n, pos))) return *kind = DUET_PII_EMAIL, len;
    if (ON(DUET_PII_IBAN) && (len = pii_iban(t, n, pos, &shape_only))) return *kind = shape_only ? -1 : DUET_PII_IBAN, len;
    if (ON(DUET_PII_CARD) && (len = pii_card(t, n, pos))) return *kind = DUET_PII_CARD, len;
    if (ON(DUET_PII_IP) && ((len = pii_ipv4(t, n, pos)) || (len = pii_ipv6(t, n, pos)))) return *kind = DUET_PII_IP, len;
    if (ON(DUET_PII_PHONE) && (len = pii_phone(t, n, pos))) return *kind = DUET_PII_PHONE, len;
    if (ON(DUET_PII_NAME) && (len = pii_names_match(r->names, t, n, pos))) return *kind = DUET_PII_NAME, len;
    return 0;
#undef ON
}

int duet_redact(duet_redactor *r, const char *text, size_t len, char **out, duet_err *err) {
    *out = NULL;
    if (!r || (!text && len)) return duet_err_set(err, DUET_EINVAL, "redact: no redactor or no text");
    const size_t bad = pii_utf8_invalid_at(text, len);
    if (bad != len)
        return duet_err_set(err, DUET_EFORMAT, "redact: the text is not valid UTF-8 (byte 0x%02x at offset %zu)",
                            (unsigned char)text[bad], bad);
    const char *nul = memchr(text, 0, len);
    if (nul) /* the result is a C string: a NUL inside would cut it short */
        return duet_err_set(err, DUET_EFORMAT, "redact: the text holds a NUL byte at offset %zu", (size_t)(nul - text));
    pii_buf b = {0};
    pii_buf_put(&b, "", 0);
    int replaced = 0;
    size_t pos = 0, copied = 0; /* text[copied..pos) is waiting to be copied as it is */
    while (pos < len) {
        int kind;
        const size_t m = detect(r, text, len, pos, &kind);
        if (m == 0) {
            pos++;
            continue;
        }
        if (kind < 0) { /* checked and rejected: keep it, and do not look inside it */
            pos += m;
            continue;
        }
        const char *ph = placeholder_for(r, kind, text + pos, m);
        if (!ph) {
            b.oom = 1;
            break;
        }
        pii_buf_put(&b, text + copied, pos - copied);
        pii_buf_put(&b, ph, strlen(ph));
        replaced++;
        pos += m, copied = pos;
    }
    pii_buf_put(&b, text + copied, len - copied);
    if (b.oom) {
        free(b.p);
        return duet_err_set(err, DUET_ENOMEM, "redact: out of memory");
    }
    *out = b.p;
    return replaced;
}

/* The value of the placeholder kind/num, or NULL when this redactor did
 * not make it. */
static const entry *lookup(const duet_redactor *r, int kind, unsigned long num) {
    if (num == 0 || num > (unsigned long)r->n_kind[kind]) return NULL;
    return &r->e[r->by_num[kind][num - 1]];
}

/* Used by the stream too: the text a complete placeholder s[0..n) stands
 * for (its value, or itself when unknown); *known says which. */
const char *pii_restore_one(const duet_redactor *r, const char *s, size_t n, size_t *out_n, int *known) {
    int kind;
    unsigned long num;
    const size_t len = pii_placeholder(s, n, 0, &kind, &num);
    const entry *e = len == n ? lookup(r, kind, num) : NULL;
    *known = e != NULL;
    *out_n = e ? e->len : n;
    return e ? e->value : s;
}

int duet_restore(const duet_redactor *r, const char *text, size_t len, char **out, duet_err *err) {
    *out = NULL;
    if (!r || (!text && len)) return duet_err_set(err, DUET_EINVAL, "restore: no redactor or no text");
    pii_buf b = {0};
    pii_buf_put(&b, "", 0);
    int restored = 0;
    size_t pos = 0, copied = 0;
    while (pos < len) {
        int kind;
        unsigned long num;
        const size_t m = text[pos] == '<' ? pii_placeholder(text, len, pos, &kind, &num) : 0;
        const entry *e = m ? lookup(r, kind, num) : NULL;
        if (!e) {
            pos += m ? m : 1;
            continue;
        }
        pii_buf_put(&b, text + copied, pos - copied);
        pii_buf_put(&b, e->value, e->len);
        restored++;
        pos += m, copied = pos;
    }
    pii_buf_put(&b, text + copied, len - copied);
    if (b.oom) {
        free(b.p);
        return duet_err_set(err, DUET_ENOMEM, "restore: out of memory");
    }
    *out = b.p;
    return restored;
}

int duet_redact_count(const duet_redactor *r) { return r ? r->n : 0; }

int duet_redact_count_kind(const duet_redactor *r, int kind) {
    return r && kind >= 0 && kind < DUET_PII_COUNT ? r->n_kind[kind] : 0;
}

int duet_redact_entry(const duet_redactor *r, int i, int *kind, const char **value, const char **placeholder) {
    if (!r || i < 0 || i >= r->n) return DUET_ERANGE;
    if (kind) *kind = r->e[i].kind;
    if (value) *value = r->e[i].value;
    if (placeholder) *placeholder = r->e[i].ph;
    return 0;
}

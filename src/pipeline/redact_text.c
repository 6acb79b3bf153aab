/* The textual PII detectors (e-mail addresses, URLs with credentials), the
 * placeholder grammar shared by redact and restore, the UTF-8 check and
 * the byte buffer. */
#include <stdlib.h>
#include <string.h>

#include "duet/redact.h"
#include "redact_internal.h"

/* The local part's characters; bytes >= 0x80 too (RFC 6531 allows UTF-8). */
static int is_local_char(int c) {
    return pii_is_alnum(c) || c >= 0x80 || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}

/* A domain: labels of letters, digits and inner dashes joined by dots, at
 * least two, the last (the TLD) two or more letters. Its length, or 0. */
static size_t domain_len(const char *t, size_t n, size_t pos) {
    size_t i = pos, end = 0;
    int labels = 0;
    for (;;) {
        const size_t l0 = i;
        while (pii_is_alnum(pii_at(t, n, i)) || pii_at(t, n, i) == '-') i++;
        if (i == l0 || t[l0] == '-' || t[i - 1] == '-' || i - l0 > 63) return 0;
        labels++;
        end = i;
        if (pii_at(t, n, i) == '.' && pii_is_alnum(pii_at(t, n, i + 1))) {
            i++;
            continue;
        }
        break;
    }
    if (labels < 2) return 0;
    size_t tld = end;
    while (tld > pos && t[tld - 1] != '.') tld--;
    if (end - tld < 2) return 0;
    for (size_t k = tld; k < end; k++)
        if (!pii_is_alpha(t[k])) return 0;
    return end - pos;
}

/* local@domain.tld: the local part letters, digits and ._%+- (not starting
 * or ending with a dot), the domain ASCII. */
size_t pii_email(const char *t, size_t n, size_t pos) {
    const int c0 = pii_at(t, n, pos);
    if (!pii_is_alnum(c0) && c0 < 0xC2) return 0; /* a letter, a digit or a UTF-8 lead byte */
    if (pos > 0 && is_local_char(pii_at(t, n, pos - 1))) return 0;
    size_t i = pos;
    while (is_local_char(pii_at(t, n, i)) && i - pos <= 64) i++;
    if (pii_at(t, n, i) != '@' || t[i - 1] == '.') return 0;
    const size_t d = domain_len(t, n, i + 1);
    if (d == 0) return 0;
    const size_t end = i + 1 + d;
    const int c = pii_at(t, n, end);
    if (pii_is_word(c) || c == '-' || c == '@') return 0;
    return end - pos;
}

/* scheme://user[:password]@host[...]: the whole URL, up to white space or
 * a quote or bracket, without trailing punctuation (a sentence's period). */
size_t pii_url_creds(const char *t, size_t n, size_t pos) {
    if (!pii_is_alpha(pii_at(t, n, pos)) || (pos > 0 && pii_is_word(pii_at(t, n, pos - 1)))) return 0;
    size_t i = pos + 1;
    while (pii_is_alnum(pii_at(t, n, i)) || pii_at(t, n, i) == '+' || pii_at(t, n, i) == '.' ||
           pii_at(t, n, i) == '-')
        i++;
    if (i - pos > 32 || pii_at(t, n, i) != ':' || pii_at(t, n, i + 1) != '/' || pii_at(t, n, i + 2) != '/') return 0;
    i += 3;
    const size_t user = i;
    for (;; i++) { /* the userinfo ends at '@'; a path, query or space first means there is none */
        const int c = pii_at(t, n, i);
        if (c < 0 || c <= ' ' || strchr("/?#<>\"'", c)) return 0;
        if (c == '@') break;
    }
    if (i == user || !(pii_is_alnum(pii_at(t, n, i + 1)) || pii_at(t, n, i + 1) == '[')) return 0;
    for (i++;; i++) {
        const int c = pii_at(t, n, i);
        if (c < 0 || c <= ' ' || strchr("<>\"'`", c)) break;
    }
    while (i > pos && strchr(".,;:!?)]}'", t[i - 1])) i--;
    return i - pos;
}

static const char *const kind_tags[DUET_PII_COUNT] = {"EMAIL", "PHONE", "CARD", "IBAN", "IP", "URL", "NAME"};

const char *duet_pii_kind_name(int kind) { return kind >= 0 && kind < DUET_PII_COUNT ? kind_tags[kind] : NULL; }

int duet_pii_kind_parse(const char *name) {
    for (int k = 0; name && k < DUET_PII_COUNT; k++) {
        size_t i = 0;
        while (kind_tags[k][i] && pii_lower(name[i]) == pii_lower(kind_tags[k][i])) i++;
        if (!kind_tags[k][i] && !name[i]) return k;
    }
    return -1;
}

/* Reads '<' TAG '_' digits '>' from s[0..n) as far as it goes. Returns 2
 * complete, 1 a proper prefix, 0 not a placeholder; *len the bytes used. */
static int read_placeholder(const char *s, size_t n, size_t *len, int *kind, unsigned long *num) {
    if (n == 0 || s[0] != '<') return 0;
    size_t i = 1;
    while (i < n && pii_is_upper((unsigned char)s[i]) && i < 7) i++;
    const size_t tag_len = i - 1;
    int k = -1, prefix_of_some = 0;
    for (int c = 0; c < DUET_PII_COUNT; c++) {
        if (strncmp(kind_tags[c], s + 1, tag_len) != 0) continue;
        prefix_of_some = 1;
        if (kind_tags[c][tag_len] == 0) k = c;
    }
    if (!prefix_of_some) return 0;
    if (i == n) return 1;
    if (s[i] != '_' || k < 0) return 0;
    i++;
    unsigned long v = 0;
    size_t d = 0;
    while (i < n && pii_is_digit((unsigned char)s[i]) && d < 9) {
        if (d == 0 && s[i] == '0') return 0;
        v = v * 10 + (unsigned long)(s[i] - '0'), i++, d++;
    }
    if (i == n) return 1;
    if (d == 0 || s[i] != '>') return 0;
    *len = i + 1, *kind = k, *num = v;
    return 2;
}

size_t pii_placeholder(const char *t, size_t n, size_t pos, int *kind, unsigned long *num) {
    size_t len = 0;
    const size_t avail = n - pos < PII_PH_MAX ? n - pos : PII_PH_MAX;
    return read_placeholder(t + pos, avail, &len, kind, num) == 2 ? len : 0;
}

int pii_placeholder_prefix(const char *s, size_t n) {
    size_t len;
    int kind;
    unsigned long num;
    const int r = read_placeholder(s, n, &len, &kind, &num);
    return r == 2 && len != n ? 0 : r;
}

size_t pii_utf8_invalid_at(const char *t, size_t n) {
    const unsigned char *s = (const unsigned char *)t;
    size_t i = 0;
    while (i < n) {
        const unsigned c = s[i];
        size_t k;
        unsigned lo = 0x80, hi = 0xBF; /* the second byte's range (overlongs and surrogates excluded) */
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) k = 1;
        else if (c >= 0xE0 && c <= 0xEF) k = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        else if (c >= 0xF0 && c <= 0xF4) k = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        else return i;
        if (i + k >= n) return i; /* truncated */
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t j = 2; j <= k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return i;
        i += k + 1;
    }
    return n;
}

void pii_buf_put(pii_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

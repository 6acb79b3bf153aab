/* Internals of the redact/restore stages (include/duet/redact.h): the
 * detectors, the placeholder grammar, the names list and a growable byte
 * buffer. Each detector looks at text t[0..n) at position pos and returns
 * the length of the value that starts exactly there, or 0; it checks its
 * own boundaries (what may come before and after a value) on the original
 * text. */
#ifndef DUET_PIPELINE_REDACT_INTERNAL_H
#define DUET_PIPELINE_REDACT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "duet/err.h"

/* ASCII classes; bytes >= 0x80 (the rest of a UTF-8 letter) count as word
 * characters, so "josé" is one word and a name never matches inside it. */
static inline int pii_is_digit(int c) { return c >= '0' && c <= '9'; }
static inline int pii_is_upper(int c) { return c >= 'A' && c <= 'Z'; }
static inline int pii_is_alpha(int c) { return (c | 32) >= 'a' && (c | 32) <= 'z'; }
static inline int pii_is_alnum(int c) { return pii_is_digit(c) || pii_is_alpha(c); }
static inline int pii_is_word(int c) { return pii_is_alnum(c) || c == '_' || c >= 0x80; }
static inline int pii_is_hex(int c) { return pii_is_digit(c) || ((c | 32) >= 'a' && (c | 32) <= 'f'); }
static inline int pii_lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* The byte at t[i] as an unsigned value, or -1 outside [0, n). */
static inline int pii_at(const char *t, size_t n, size_t i) { return i < n ? (unsigned char)t[i] : -1; }

/* Luhn over nd decimal digits (characters '0'..'9'). */
int pii_luhn_ok(const char *digits, size_t nd);
/* ISO 13616: s[0..n) upper-case alphanumerics, country code, check digits,
 * BBAN; moved and read as a number, it is 1 mod 97. */
int pii_iban_ok(const char *s, size_t n);

size_t pii_email(const char *t, size_t n, size_t pos);
size_t pii_url_creds(const char *t, size_t n, size_t pos);
/* *shape_only: 1 when an IBAN-shaped token failed its checksum; the
 * return is then its length, so the caller copies it whole (its digit
 * groups must not be read as a card or a phone). */
size_t pii_iban(const char *t, size_t n, size_t pos, int *shape_only);
size_t pii_card(const char *t, size_t n, size_t pos);
size_t pii_ipv4(const char *t, size_t n, size_t pos);
size_t pii_ipv6(const char *t, size_t n, size_t pos);
size_t pii_phone(const char *t, size_t n, size_t pos);

/* The placeholder grammar: '<' TAG '_' [1-9][0-9]{0,8} '>' with TAG one of
 * the kind names. PII_PH_MAX bounds its length. */
#define PII_PH_MAX 24
/* Length of the placeholder at t[pos] (0 if none), its kind and number. */
size_t pii_placeholder(const char *t, size_t n, size_t pos, int *kind, unsigned long *num);
/* s[0..n) (s[0] == '<'): 2 a complete placeholder, 1 a proper prefix of
 * one, 0 neither. */
int pii_placeholder_prefix(const char *s, size_t n);

/* What the complete placeholder s[0..n) stands for: the value this
 * redactor gave it, or s itself when unknown (*known 0). */
struct duet_redactor;
const char *pii_restore_one(const struct duet_redactor *r, const char *s, size_t n, size_t *out_n, int *known);

/* The user's names, matched ignoring ASCII case on word boundaries. */
typedef struct pii_names pii_names;
int pii_names_new(pii_names **out, const char *file, const char *const *extra, int n_extra, duet_err *err);
void pii_names_free(pii_names *nm);
size_t pii_names_match(const pii_names *nm, const char *t, size_t n, size_t pos);
int pii_names_count(const pii_names *nm);

/* Offset of the first byte that breaks UTF-8 in t[0..n), or n if none. */
size_t pii_utf8_invalid_at(const char *t, size_t n);

/* A growable byte string, always NUL-terminated when len > 0 or after
 * pii_buf_put. */
typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} pii_buf;
void pii_buf_put(pii_buf *b, const char *s, size_t n);

#endif

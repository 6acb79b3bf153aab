/* duet — the privacy stages of a pipeline: `redact` finds personal data
 * (PII) in a prompt on the device and replaces each distinct value with a
 * typed placeholder (`<EMAIL_1>`, `<CARD_2>`, ...); `restore` puts the
 * values back into the answer, whole or as it streams. What leaves the
 * device (to a remote LLM) holds placeholders only.
 *
 * Detected kinds (each can be switched off in the params' mask):
 *   EMAIL  addresses (local@domain.tld)
 *   PHONE  international (+CC ...) and national numbers with spaces, dashes,
 *          dots or parentheses: 9-12 digits with a trunk 0, an area code in
 *          parentheses or the 3-3-4 grouping; 8-15 digits after '+'. Years,
 *          dates and short numbers are not phones.
 *   CARD   13-19 digits, contiguous or grouped by spaces/dashes, accepted
 *          only when the Luhn check passes
 *   IBAN   country code + 2 check digits + BBAN (upper case, spaces between
 *          groups of 4 allowed), accepted only when ISO 13616 mod-97 == 1
 *   IP     IPv4 (four octets 0-255) and IPv6 (RFC 4291 text forms)
 *   URL    URLs carrying credentials (scheme://user[:pass]@host...)
 *   NAME   names from a user list, matched ignoring ASCII case on word
 *          boundaries (longest name first)
 *
 * The same value (byte for byte) always gets the same placeholder within
 * one redactor, across calls; numbering is per kind from 1. A placeholder-
 * shaped literal already in the input (`<EMAIL_1>` typed by the user) is
 * itself redacted, so restore(redact(x)) == x for every valid UTF-8 x.
 *
 * The redactor's input must be valid UTF-8 without NUL bytes (DUET_EFORMAT
 * otherwise, naming the byte offset). restore works byte-wise and takes any
 * bytes: an answer is the model's, and refusing it for a stray byte would
 * lose it (an answer holding NUL bytes: use the stream, which returns
 * lengths). */
#ifndef DUET_REDACT_H
#define DUET_REDACT_H

#include <stddef.h>

#include "duet/api.h"
#include "duet/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    DUET_PII_EMAIL,
    DUET_PII_PHONE,
    DUET_PII_CARD,
    DUET_PII_IBAN,
    DUET_PII_IP,
    DUET_PII_URL,
    DUET_PII_NAME,
    DUET_PII_COUNT
} duet_pii_kind;

#define DUET_PII_ALL ((1u << DUET_PII_COUNT) - 1u)

/* "EMAIL", "PHONE", ... (the placeholder's tag); NULL outside the enum. */
DUET_API const char *duet_pii_kind_name(int kind);
/* The kind whose tag is `name` (ignoring case), or -1. */
DUET_API int duet_pii_kind_parse(const char *name);

typedef struct duet_redact_params {
    unsigned kinds;                /* mask of 1u << DUET_PII_*; default DUET_PII_ALL */
    const char *names_file;        /* one name per line ('#' comments, blank lines skipped); NULL: none */
    const char *const *names;      /* (n_names) more names given directly; may be NULL */
    int n_names;
} duet_redact_params;

DUET_API duet_redact_params duet_redact_default_params(void);

typedef struct duet_redactor duet_redactor;

/* Reads the names list (an unreadable file or a name that is not valid
 * UTF-8 is an error naming the file and line). */
DUET_API int duet_redactor_new(duet_redactor **out, const duet_redact_params *p, duet_err *err);
DUET_API void duet_redactor_free(duet_redactor *r); /* NULL is a no-op */

/* text[0..len) with every detected value replaced by its placeholder, in a
 * malloc'd NUL-terminated *out. Returns the number of values replaced in
 * this text (>= 0), or a negative error (*out NULL). */
DUET_API int duet_redact(duet_redactor *r, const char *text, size_t len, char **out, duet_err *err);

/* text[0..len) with every placeholder this redactor made replaced by its
 * value; placeholders it does not know are left as they are. *out is
 * malloc'd and NUL-terminated. Returns the number of placeholders restored
 * (>= 0) or a negative error. */
DUET_API int duet_restore(const duet_redactor *r, const char *text, size_t len, char **out, duet_err *err);

/* Distinct values the redactor holds: all kinds, or one kind. */
DUET_API int duet_redact_count(const duet_redactor *r);
DUET_API int duet_redact_count_kind(const duet_redactor *r, int kind);

/* The i-th distinct value (0 <= i < count), in the order first seen:
 * its kind, its text and its placeholder (owned by the redactor).
 * Returns 0, or DUET_ERANGE. */
DUET_API int duet_redact_entry(const duet_redactor *r, int i, int *kind, const char **value,
                               const char **placeholder);

/* Restoring as the answer streams: push each piece as it arrives and emit
 * what comes back; it holds back only a possible placeholder's beginning
 * (`<EMA`) until it is complete (then the value comes out) or proven not
 * to be one (then the text comes out as it was). flush at the end emits
 * whatever is held. Output pieces concatenated equal duet_restore of the
 * pieces concatenated, for every way of cutting the text.
 * The returned pointer is the stream's buffer, valid until the next call;
 * NULL only when out of memory. The redactor must outlive the stream. */
typedef struct duet_restore_stream duet_restore_stream;

DUET_API duet_restore_stream *duet_restore_stream_new(const duet_redactor *r);
DUET_API const char *duet_restore_stream_push(duet_restore_stream *s, const char *piece, size_t n, size_t *out_n);
DUET_API const char *duet_restore_stream_flush(duet_restore_stream *s, size_t *out_n);
/* Placeholders restored so far. */
DUET_API int duet_restore_stream_count(const duet_restore_stream *s);
DUET_API void duet_restore_stream_free(duet_restore_stream *s); /* NULL is a no-op */

#ifdef __cplusplus
}
#endif
#endif

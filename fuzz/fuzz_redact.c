/* libFuzzer target for the redact/restore stages (include/duet/redact.h).
 * On any bytes: redact either refuses them (DUET_EFORMAT: invalid UTF-8 or
 * a NUL) or its output restores to exactly the input; the streamed restore,
 * cut where the input's first bytes say, equals the whole-text one, both on
 * the redacted text and on the raw bytes (an answer may hold anything). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/redact.h"

static void streamed_equals_whole(const duet_redactor *r, const char *text, size_t len, const uint8_t *cuts,
                                  size_t n_cuts) {
    char *whole;
    if (duet_restore(r, text, len, &whole, NULL) < 0) abort();
    duet_restore_stream *s = duet_restore_stream_new(r);
    if (!s) abort();
    size_t cap = len * 4 + 64, o = 0, from = 0, n;
    char *got = malloc(cap);
    for (size_t c = 0; c <= n_cuts && from <= len; c++) {
        size_t to = c < n_cuts ? from + cuts[c] % 7 : len; /* short pieces, empty ones too */
        if (to > len) to = len;
        const char *piece = duet_restore_stream_push(s, text + from, to - from, &n);
        if (!piece) abort();
        if (o + n + 1 > cap) got = realloc(got, cap = (o + n + 1) * 2);
        memcpy(got + o, piece, n), o += n;
        from = to;
    }
    if (from < len) {
        const char *piece = duet_restore_stream_push(s, text + from, len - from, &n);
        if (o + n + 1 > cap) got = realloc(got, cap = (o + n + 1) * 2);
        memcpy(got + o, piece, n), o += n;
    }
    const char *rest = duet_restore_stream_flush(s, &n);
    if (o + n + 1 > cap) got = realloc(got, cap = (o + n + 1) * 2);
    memcpy(got + o, rest, n), o += n;
    /* whole is NUL-terminated but may hold NULs of the input: compare by the stream's length */
    if (memcmp(got, whole, o) != 0 || whole[o] != 0) abort();
    free(got), free(whole);
    duet_restore_stream_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const size_t n_cuts = data[0] % 16; /* the first bytes cut the streams */
    if (size < 1 + n_cuts) return 0;
    const uint8_t *cuts = data + 1;
    const char *text = (const char *)data + 1 + n_cuts;
    const size_t len = size - 1 - n_cuts;
    static const char *const names[] = {"lily", "mary ann", "jean-luc", "\xc3\xa9lo\xc3\xafse"};
    duet_redact_params p = duet_redact_default_params();
    p.names = names, p.n_names = 4;
    if (n_cuts & 1) p.kinds &= ~(1u << DUET_PII_PHONE); /* a kind off changes what the others see */
    duet_redactor *r;
    if (duet_redactor_new(&r, &p, NULL) < 0) abort();
    char *red;
    const int rc = duet_redact(r, text, len, &red, NULL);
    if (rc < 0) {
        if (rc != DUET_EFORMAT) abort();
    } else {
        char *back;
        if (duet_restore(r, red, strlen(red), &back, NULL) < 0) abort();
        if (strlen(back) != len || memcmp(back, text, len) != 0) abort(); /* restore(redact(x)) == x */
        streamed_equals_whole(r, red, strlen(red), cuts, n_cuts);
        free(back), free(red);
    }
    streamed_equals_whole(r, text, len, cuts, n_cuts);
    duet_redactor_free(r);
    return 0;
}

/* Token ids back to bytes: per-token pieces (built once at load, like
 * llama.cpp's token-to-piece cache), whole sequences, and a streaming
 * detokenizer that only hands out complete UTF-8 characters. */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

/* Bytes of a byte-level BPE text: each code point back to its byte; a code
 * point outside the byte map (never in a real vocabulary) is kept as UTF-8. */
static size_t bpe_decode(const char *t, size_t len, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        int k = tok_utf8_valid_len((const uint8_t *)t + i, len - i);
        if (k == 0) {
            out[o++] = t[i++];
            continue;
        }
        uint32_t cp = (uint8_t)t[i];
        if (k == 2) cp = (cp & 0x1F) << 6 | ((uint8_t)t[i + 1] & 0x3F);
        else if (k == 3) cp = (cp & 0x0F) << 12 | ((uint8_t)t[i + 1] & 0x3F) << 6 | ((uint8_t)t[i + 2] & 0x3F);
        else if (k == 4) cp = 0x110000; /* no 4-byte code point stands for a byte */
        int b = tok_cp_to_byte(cp);
        if (b >= 0) {
            out[o++] = (char)b;
        } else {
            memcpy(out + o, t + i, (size_t)k);
            o += (size_t)k;
        }
        i += (size_t)k;
    }
    return o;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Piece of one token, as llama.cpp's token_to_piece(special = true). */
static size_t make_piece(const duet_vocab *v, int32_t id, char *out) {
    size_t len;
    const char *t = tok_text(v, id, &len);
    switch (v->type[id]) {
    case DUET_TOKEN_CONTROL:
    case DUET_TOKEN_UNKNOWN:
    case DUET_TOKEN_USER_DEFINED:
        memcpy(out, t, len);
        return len;
    case DUET_TOKEN_NORMAL:
        if (v->kind == DUET_VOCAB_BPE) return bpe_decode(t, len, out);
        {
            size_t o = 0;
            for (size_t i = 0; i < len;) {
                if (i + 3 <= len && !memcmp(t + i, "\xE2\x96\x81", 3)) {
                    out[o++] = ' ';
                    i += 3;
                } else {
                    out[o++] = t[i++];
                }
            }
            return o;
        }
    case DUET_TOKEN_BYTE:
        if (v->kind == DUET_VOCAB_SPM && len == 6 && !memcmp(t, "<0x", 3) && t[5] == '>' && hexval(t[3]) >= 0 &&
            hexval(t[4]) >= 0) {
            out[0] = (char)(hexval(t[3]) << 4 | hexval(t[4]));
            return 1;
        }
        return 0;
    default: /* unused / undefined: nothing, as llama.cpp */
        return 0;
    }
}

int tok_pieces_build(duet_vocab *v) {
    v->piece_off = malloc(sizeof *v->piece_off * ((size_t)v->n + 1));
    /* a piece is never longer than the stored text (U+2581 -> ' ', 2-byte symbol -> 1 byte) */
    v->piece_pool = malloc(v->off[v->n] + 1);
    if (!v->piece_off || !v->piece_pool) return DUET_ENOMEM;
    uint32_t o = 0;
    for (int32_t id = 0; id < v->n; id++) {
        v->piece_off[id] = o;
        o += (uint32_t)make_piece(v, id, v->piece_pool + o);
    }
    v->piece_off[v->n] = o;
    return 0;
}

static inline int rendered(const duet_vocab *v, int32_t id, int flags) {
    int t = v->type[id];
    return (t != DUET_TOKEN_CONTROL && t != DUET_TOKEN_UNKNOWN) || (flags & DUET_DETOK_SPECIAL);
}

int duet_token_to_piece(const duet_vocab *v, int32_t id, char *buf, size_t cap, int flags) {
    if (!v || id < 0 || id >= v->n) return DUET_ERANGE;
    if (!rendered(v, id, flags)) return 0;
    size_t n = v->piece_off[id + 1] - v->piece_off[id];
    if (buf) memcpy(buf, v->piece_pool + v->piece_off[id], n < cap ? n : cap);
    return (int)n;
}

int duet_detokenize_check(const duet_vocab *v, const int32_t *ids, int n, duet_err *err) {
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= v->n)
            return duet_err_set(err, DUET_ERANGE, "token id %d at position %d is out of range (vocabulary has %d tokens)",
                                ids[i], i, v->n);
    return 0;
}

int64_t duet_detokenize(const duet_vocab *v, const int32_t *ids, int n, char *buf, size_t cap, int flags) {
    if (!v || (n > 0 && !ids) || (!buf && cap)) return DUET_EINVAL;
    if (duet_detokenize_check(v, ids, n, NULL)) return DUET_ERANGE;
    int strip = v->kind == DUET_VOCAB_SPM && v->add_space_prefix && !(flags & DUET_DETOK_KEEP_SPACE);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (!rendered(v, ids[i], flags)) continue;
        const char *p = v->piece_pool + v->piece_off[ids[i]];
        size_t len = v->piece_off[ids[i] + 1] - v->piece_off[ids[i]];
        if (strip) { /* the first rendered token loses the space the tokenizer put in front */
            strip = 0;
            if (len && *p == ' ') {
                p++;
                len--;
            }
        }
        if (total < cap) memcpy(buf + total, p, len < cap - total ? len : cap - total);
        total += len;
    }
    if (total < cap) buf[total] = 0;
    return (int64_t)total;
}

/* ---- streaming ---------------------------------------------------------- */

struct duet_detok_stream {
    const duet_vocab *v;
    int flags;
    int strip;       /* the leading-space rule is still pending */
    uint8_t held[4]; /* start of an unfinished UTF-8 character */
    int n_held;
    char *out;       /* text handed out by the last call */
    size_t out_cap;
};

duet_detok_stream *duet_detok_stream_new(const duet_vocab *v, int flags) {
    if (!v) return NULL;
    duet_detok_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->v = v;
    s->flags = flags;
    s->strip = v->kind == DUET_VOCAB_SPM && v->add_space_prefix && !(flags & DUET_DETOK_KEEP_SPACE);
    return s;
}

void duet_detok_stream_free(duet_detok_stream *s) {
    if (!s) return;
    free(s->out);
    free(s);
}

/* How many bytes at s[0..n) form a prefix of one valid UTF-8 character
 * (the whole character if *complete). 0 only for n == 0. A result below the
 * character's length with !*complete and == n means "may still complete". */
static size_t utf8_prefix(const uint8_t *s, size_t n, int *complete) {
    uint8_t c = s[0];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    *complete = 0;
    if (c < 0x80) {
        *complete = 1;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 1; /* cannot start a character */
    }
    size_t k = 1;
    for (; k < need && k < n; k++) {
        uint8_t b = s[k];
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
    }
    *complete = k == need;
    return k;
}

static int reserve(duet_detok_stream *s, size_t n) {
    if (n <= s->out_cap) return 0;
    size_t c = s->out_cap ? s->out_cap : 64;
    while (c < n) c *= 2;
    char *p = realloc(s->out, c);
    if (!p) return DUET_ENOMEM;
    s->out = p;
    s->out_cap = c;
    return 0;
}

/* Appends complete characters of held + piece to s->out; keeps a tail that
 * may still complete. Invalid bytes: one U+FFFD per maximal invalid run
 * (the "maximal subpart" rule of Rust's from_utf8_lossy). */
static size_t feed(duet_detok_stream *s, const char *piece, size_t len) {
    size_t total = (size_t)s->n_held + len;
    uint8_t small[64];
    uint8_t *buf = total <= sizeof small ? small : malloc(total);
    if (!buf || reserve(s, total * 3 + 4)) {
        if (buf != small) free(buf);
        return 0;
    }
    memcpy(buf, s->held, (size_t)s->n_held);
    memcpy(buf + s->n_held, piece, len);
    size_t o = 0, i = 0;
    s->n_held = 0;
    while (i < total) {
        int complete;
        size_t k = utf8_prefix(buf + i, total - i, &complete);
        if (complete) {
            memcpy(s->out + o, buf + i, k);
            o += k;
        } else if (i + k == total && k < 4 && buf[i] >= 0xC2 && buf[i] <= 0xF4) {
            memcpy(s->held, buf + i, k); /* may still complete with the next token */
            s->n_held = (int)k;
        } else {
            memcpy(s->out + o, "\xEF\xBF\xBD", 3);
            o += 3;
        }
        i += k;
    }
    if (buf != small) free(buf);
    return o;
}

const char *duet_detok_stream_push(duet_detok_stream *s, int32_t id, size_t *len) {
    *len = 0;
    if (!s || id < 0 || id >= s->v->n) return NULL;
    const duet_vocab *v = s->v;
    if (reserve(s, 1)) return NULL;
    s->out[0] = 0;
    if (!rendered(v, id, s->flags)) return s->out;
    const char *p = v->piece_pool + v->piece_off[id];
    size_t n = v->piece_off[id + 1] - v->piece_off[id];
    if (s->strip) {
        s->strip = 0;
        if (n && *p == ' ') {
            p++;
            n--;
        }
    }
    *len = feed(s, p, n);
    s->out[*len] = 0;
    return s->out;
}

const char *duet_detok_stream_flush(duet_detok_stream *s, size_t *len) {
    *len = 0;
    if (!s || reserve(s, 4)) return NULL;
    if (s->n_held) {
        memcpy(s->out, "\xEF\xBF\xBD", 3);
        *len = 3;
    }
    s->out[*len] = 0;
    s->n_held = 0;
    s->strip = s->v->kind == DUET_VOCAB_SPM && s->v->add_space_prefix && !(s->flags & DUET_DETOK_KEEP_SPACE);
    return s->out;
}

/* The numeric PII detectors: payment cards (Luhn), IBANs (mod 97), phone
 * numbers, IPv4 and IPv6 addresses. Hand-written scanners: each says in
 * one place what it accepts, and the checksums decide what a regex could
 * not. */
#include <string.h>

#include "redact_internal.h"

int pii_luhn_ok(const char *digits, size_t nd) {
    int sum = 0;
    for (size_t k = 0; k < nd; k++) { /* from the right: every second digit doubled */
        int d = digits[nd - 1 - k] - '0';
        if (k & 1) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
        sum += d;
    }
    return nd > 0 && sum % 10 == 0;
}

int pii_iban_ok(const char *s, size_t n) {
    if (n < 15 || n > 34) return 0;
    unsigned rem = 0;
    for (size_t k = 0; k < n; k++) {
        const int c = (unsigned char)s[(k + 4) % n]; /* the first four moved to the end */
        if (pii_is_digit(c)) rem = (rem * 10 + (unsigned)(c - '0')) % 97;
        else if (pii_is_upper(c)) rem = (rem * 100 + (unsigned)(c - 'A' + 10)) % 97;
        else return 0;
    }
    return rem == 1;
}

/* May a digit run (card, phone) start at pos? Not inside a word or a
 * number, and not at a later group of a grouped number ("1111 1111 1112":
 * the tail of an invalid card is not a shorter number of its own). */
static int digit_run_start(const char *t, size_t n, size_t pos) {
    if (pos == 0) return 1;
    const int p = pii_at(t, n, pos - 1);
    if (pii_is_word(p) || p == '+' || p == '.' || p == ',') return 0;
    if ((p == ' ' || p == '-' || p == '/') && pos >= 2 && pii_is_digit(pii_at(t, n, pos - 2))) return 0;
    return 1;
}

/* Nothing that continues a value may follow its end. */
static int value_end(const char *t, size_t n, size_t end) {
    const int c = pii_at(t, n, end);
    if (c < 0) return 1;
    if (pii_is_word(c)) return 0;
    if ((c == '.' || c == ',') && pii_is_digit(pii_at(t, n, end + 1))) return 0; /* 4111...1.5, 1,234 */
    return 1;
}

#define MAX_GROUPS 12 /* digit groups a phone number may have */

/* Cards: 13-19 digits, contiguous or in groups of 3-6 separated by one
 * space or one dash (the same one throughout), accepted when the Luhn
 * check passes. The whole run counts, never a part of it: the prefix of
 * an invalid number passes Luhn one time in ten. */
size_t pii_card(const char *t, size_t n, size_t pos) {
    if (!pii_is_digit(pii_at(t, n, pos)) || !digit_run_start(t, n, pos)) return 0;
    char digits[20];
    size_t nd = 0, i = pos, end = pos;
    int ng = 0, sep = 0;
    for (;;) {
        size_t g = 0;
        while (pii_is_digit(pii_at(t, n, i))) {
            if (nd == sizeof digits) return 0; /* longer than any card */
            digits[nd++] = t[i++], g++;
        }
        ng++;
        if (ng > 1 && (g < 3 || g > 6)) return 0;
        end = i;
        const int c = pii_at(t, n, i);
        if ((c == ' ' || c == '-') && (!sep || c == sep) && pii_is_digit(pii_at(t, n, i + 1))) {
            if (ng == 1 && (g < 3 || g > 6)) break; /* a long first group is the whole number */
            sep = c, i++;
            continue;
        }
        break;
    }
    if (nd < 13 || nd > 19 || !value_end(t, n, end)) return 0;
    return pii_luhn_ok(digits, nd) ? end - pos : 0;
}

/* IBAN lengths of the SWIFT registry (ISO 13616), by country. */
static const struct {
    char cc[3];
    unsigned char len;
} iban_lengths[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16}, {"BG", 22}, {"BH", 22},
    {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28}, {"CZ", 24}, {"DE", 22}, {"DK", 18}, {"DO", 28},
    {"EE", 20}, {"EG", 29}, {"ES", 24}, {"FI", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22}, {"GE", 22}, {"GI", 23},
    {"GL", 18}, {"GR", 27}, {"GT", 28}, {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IL", 23}, {"IQ", 23}, {"IS", 26},
    {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LC", 32}, {"LI", 21}, {"LT", 20}, {"LU", 20},
    {"LV", 21}, {"MC", 27}, {"MD", 24}, {"ME", 22}, {"MK", 19}, {"MR", 27}, {"MT", 31}, {"MU", 30}, {"NL", 18},
    {"NO", 15}, {"PK", 24}, {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22}, {"SA", 24},
    {"SC", 31}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"ST", 25}, {"SV", 28}, {"TL", 23}, {"TN", 24},
    {"TR", 26}, {"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20},
};

/* The registered length of the country's IBANs, or 0 if not registered. */
static size_t iban_length(const char *cc) {
    for (size_t i = 0; i < sizeof iban_lengths / sizeof *iban_lengths; i++)
        if (iban_lengths[i].cc[0] == cc[0] && iban_lengths[i].cc[1] == cc[1]) return iban_lengths[i].len;
    return 0;
}

/* IBANs: two letters, two check digits, then the BBAN, contiguous or in
 * groups of four separated by single spaces (the last group 1-4). A
 * registered country's IBAN has its registered length (a longer token may
 * be followed by another number in groups); any other is the whole token,
 * 15-34 characters. Then mod 97 decides (letters read as upper case).
 * Written in upper case, an IBAN-shaped token that fails is kept whole
 * (*shape_only). Lower or mixed case is ordinary text too ("at12 this time
 * when they" has the shape), so there the country must be registered, the
 * BBAN hold at most 4 letters (a bank code), and a failure is no IBAN at
 * all: the words in it are still looked at (a listed name among them). */
size_t pii_iban(const char *t, size_t n, size_t pos, int *shape_only) {
    *shape_only = 0;
    if (pos > 0 && pii_is_word(pii_at(t, n, pos - 1))) return 0;
    if (!pii_is_alpha(pii_at(t, n, pos)) || !pii_is_alpha(pii_at(t, n, pos + 1)) ||
        !pii_is_digit(pii_at(t, n, pos + 2)) || !pii_is_digit(pii_at(t, n, pos + 3)))
        return 0;
    const char cc[2] = {(char)(t[pos] & ~32), (char)(t[pos + 1] & ~32)};
    const size_t want = iban_length(cc);
    char s[40]; /* (ns) the IBAN's characters, upper case */
    size_t ns = 0, i = pos, end;
    int lower = 0, bban_letters = 0;
    /* one more character of the IBAN, upper-cased, counted */
#define TAKE(ch)                                                                                                   \
    do {                                                                                                           \
        const int c_ = (unsigned char)(ch);                                                                        \
        lower |= c_ >= 'a';                                                                                        \
        bban_letters += ns >= 4 && pii_is_alpha(c_);                                                               \
        s[ns++] = (char)(c_ >= 'a' ? c_ - 32 : c_);                                                                \
    } while (0)
    if (pii_is_alnum(pii_at(t, n, pos + 4))) { /* contiguous */
        for (; pii_is_alnum(pii_at(t, n, i)) && ns < 35; i++) TAKE(t[i]);
        if (ns < 15 || ns > 34 || pii_is_word(pii_at(t, n, i))) return 0;
        end = i;
    } else { /* grouped: "DE89 3704 0044 0532 0130 00" */
        for (; i < pos + 4; i++) TAKE(t[i]);
        end = i;
        while (pii_at(t, n, i) == ' ' && pii_is_alnum(pii_at(t, n, i + 1)) && ns < 34 && (!want || ns < want)) {
            size_t j = i + 1, g = 0;
            while (pii_is_alnum(pii_at(t, n, j)) && g < 5) j++, g++;
            if (g > 4 || ns + g > 34 || pii_is_word(pii_at(t, n, j))) break; /* not a group: the IBAN ended before it */
            for (size_t k = i + 1; k < j; k++) TAKE(t[k]);
            i = end = j;
            if (g < 4) break; /* a short group is the last */
        }
        if (ns < 15) return 0;
    }
#undef TAKE
    const int valid = pii_iban_ok(s, ns) && (!want || ns == want);
    if (lower) return valid && want && bban_letters <= 4 ? end - pos : 0;
    *shape_only = !valid;
    return end - pos;
}

/* Phones. Groups of digits, one of them possibly in parentheses,
 * separated by one space, dash or dot. Accepted forms:
 *  - '+' then 8-15 digits (E.164), the country code group 1-3 digits
 *    (or the whole number written contiguously);
 *  - national, 9-12 digits in at least two groups, with a trunk 0 first
 *    group of 2-5 digits ("020 7946 0958"), an area code in parentheses
 *    ("(555) 123-4567"), or the 3-3-4 grouping ("555-123-4567").
 * Years, dates (8 digits) and short numbers match none of these. */
size_t pii_phone(const char *t, size_t n, size_t pos) {
    const int c0 = pii_at(t, n, pos);
    const int plus = c0 == '+';
    if (plus || c0 == '(') {
        if (pos > 0 && (pii_is_word(pii_at(t, n, pos - 1)) || pii_at(t, n, pos - 1) == '+')) return 0;
    } else if (!pii_is_digit(c0) || !digit_run_start(t, n, pos)) {
        return 0;
    }
    size_t i = pos + (size_t)plus, ends[MAX_GROUPS], glen[MAX_GROUPS];
    int paren[MAX_GROUPS], lead0[MAX_GROUPS], ng = 0;
    while (ng < MAX_GROUPS) {
        const int p = pii_at(t, n, i) == '(';
        size_t j = i + (size_t)p, d = 0;
        while (pii_is_digit(pii_at(t, n, j))) j++, d++;
        if (d == 0 || d > 15 || (p && pii_at(t, n, j) != ')')) break;
        lead0[ng] = t[i + (size_t)p] == '0';
        paren[ng] = p, glen[ng] = d;
        i = j + (size_t)p;
        ends[ng++] = i;
        const int c = pii_at(t, n, i);
        const int nx = pii_at(t, n, i + 1);
        if ((c == ' ' || c == '-' || c == '.') && (pii_is_digit(nx) || nx == '(')) i++;
        else if (!(p && pii_is_digit(c))) break; /* "(555)123-4567": no separator after ')' */
    }
    for (int g = ng - 1; g >= 0; g--) {
        size_t digits = 0;
        for (int k = 0; k <= g; k++) digits += glen[k];
        if (g == ng - 1 && !value_end(t, n, ends[g])) continue;
        if (plus) {
            if (digits >= 8 && digits <= 15 && !paren[0] && (g == 0 || glen[0] <= 3)) return ends[g] - pos;
            continue;
        }
        if (digits < 9 || digits > 12 || g == 0) continue;
        const int trunk = lead0[0] && glen[0] >= 2 && glen[0] <= 5;
        const int nanp = g == 2 && glen[0] == 3 && glen[1] == 3 && glen[2] == 4;
        if (paren[0] || trunk || nanp) return ends[g] - pos;
    }
    return 0;
}

/* Four octets 0-255 (one to three digits) separated by dots at t[pos],
 * with no check of what surrounds them: its length, or 0. */
static size_t ipv4_body(const char *t, size_t n, size_t pos) {
    size_t i = pos;
    for (int k = 0; k < 4; k++) {
        if (k > 0) {
            if (pii_at(t, n, i) != '.') return 0;
            i++;
        }
        int v = 0, d = 0;
        while (pii_is_digit(pii_at(t, n, i)) && d < 4) v = v * 10 + (t[i++] - '0'), d++;
        if (d == 0 || d > 3 || v > 255) return 0;
    }
    return i - pos;
}

/* IPv4: not inside a word or a longer dotted number ("1.2.3.4.5"). */
size_t pii_ipv4(const char *t, size_t n, size_t pos) {
    if (pos > 0) {
        const int p = pii_at(t, n, pos - 1);
        if (pii_is_word(p) || p == '.') return 0;
    }
    const size_t len = ipv4_body(t, n, pos);
    if (len == 0) return 0;
    const int c = pii_at(t, n, pos + len);
    if (pii_is_word(c) || ((c == '.' || c == ':') && pii_is_alnum(pii_at(t, n, pos + len + 1)))) return 0;
    return len;
}

/* IPv6 in the RFC 4291 text forms: eight groups of 1-4 hex digits, or
 * fewer with one "::", possibly ending in an IPv4 address. It must hold a
 * digit, so a word made of hex letters and colons is not an address. */
size_t pii_ipv6(const char *t, size_t n, size_t pos) {
    if (pos > 0) {
        const int p = pii_at(t, n, pos - 1);
        if (pii_is_word(p) || p == ':' || p == '.') return 0;
    }
    size_t i = pos;
    int groups = 0, dbl = 0, digit = 0;
    if (pii_at(t, n, i) == ':') {
        if (pii_at(t, n, i + 1) != ':') return 0;
        dbl = 1, i += 2;
    }
    for (;;) {
        size_t h = 0;
        while (pii_is_hex(pii_at(t, n, i + h)) && h < 5) h++;
        if (h == 0) break;
        if (pii_at(t, n, i + h) == '.' && groups <= 6 && (groups > 0 || dbl)) { /* ::ffff:192.0.2.1 */
            const size_t v4 = ipv4_body(t, n, i);
            if (v4 == 0) return 0;
            i += v4, groups += 2, digit = 1;
            break;
        }
        if (h > 4) return 0;
        for (size_t k = 0; k < h; k++) digit |= pii_is_digit(t[i + k]);
        i += h, groups++;
        if (pii_at(t, n, i) == ':' && pii_at(t, n, i + 1) == ':') {
            if (dbl) return 0;
            dbl = 1, i += 2;
        } else if (pii_at(t, n, i) == ':' && pii_is_hex(pii_at(t, n, i + 1))) {
            i++;
        } else {
            break;
        }
    }
    if (groups == 0 || !digit || (dbl ? groups > 7 : groups != 8)) return 0;
    const int c = pii_at(t, n, i);
    if (pii_is_word(c) || c == ':' || (c == '.' && pii_is_digit(pii_at(t, n, i + 1)))) return 0;
    return i - pos;
}

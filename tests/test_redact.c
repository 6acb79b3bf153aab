/* The redact/restore stages (include/duet/redact.h) against the privacy set
 * of scripts/make_privacy_set.py (tests/data/privacy): every planted value
 * is gone from the redacted text with a placeholder of its kind, nothing
 * else is redacted (the decoys stay), and restore gives the prompt back.
 * The checksums are checked against a Luhn and a mod-97 written here, over
 * random numbers and every check digit; the streamed restore against the
 * whole-text one at every split point; invalid UTF-8 is refused. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "duet/redact.h"
#include "testutil.h"

#define SET DUET_SRC_DIR "/tests/data/privacy/prompts.jsonl"
#define NAMES DUET_SRC_DIR "/tests/data/privacy/names.txt"

/* The set's lines parsed; *n gets how many. */
static cJSON **load_set(int *n) {
    size_t len;
    char *buf = tu_slurp(SET, &len);
    cr_assert(buf, "cannot read %s (python3 scripts/make_privacy_set.py writes it)", SET);
    int cap = 512;
    cJSON **items = malloc(sizeof *items * (size_t)cap);
    *n = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        cr_assert(o, "bad JSON line in %s: %.80s", SET, line);
        cr_assert_lt(*n, cap);
        items[(*n)++] = o;
    }
    free(buf);
    return items;
}

static void free_set(cJSON **items, int n) {
    for (int i = 0; i < n; i++) cJSON_Delete(items[i]);
    free(items);
}

static duet_redactor *new_redactor(void) {
    duet_redact_params p = duet_redact_default_params();
    p.names_file = NAMES;
    duet_redactor *r;
    duet_err err = {0};
    cr_assert_eq(duet_redactor_new(&r, &p, &err), 0, "%s", err.msg);
    return r;
}

static char *redact(duet_redactor *r, const char *text, int *n_replaced) {
    char *out;
    duet_err err = {0};
    const int rc = duet_redact(r, text, strlen(text), &out, &err);
    cr_assert_geq(rc, 0, "%s", err.msg);
    if (n_replaced) *n_replaced = rc;
    return out;
}

static char *restore(const duet_redactor *r, const char *text) {
    char *out;
    duet_err err = {0};
    cr_assert_geq(duet_restore(r, text, strlen(text), &out, &err), 0, "%s", err.msg);
    return out;
}

Test(redact, the_set_is_large_and_covers_every_kind) {
    int n, per_kind[DUET_PII_COUNT] = {0}, decoys = 0;
    cJSON **set = load_set(&n);
    cr_assert_geq(n, 200, "%d prompts", n);
    for (int i = 0; i < n; i++) {
        const cJSON *pii = cJSON_GetObjectItem(set[i], "pii");
        cr_assert(cJSON_GetArraySize(pii) >= 1 && cJSON_GetArraySize(pii) <= 4);
        const cJSON *p;
        cJSON_ArrayForEach(p, pii) {
            const int k = duet_pii_kind_parse(cJSON_GetObjectItem(p, "kind")->valuestring);
            cr_assert_geq(k, 0);
            per_kind[k]++;
        }
        decoys += cJSON_GetArraySize(cJSON_GetObjectItem(set[i], "decoys"));
    }
    for (int k = 0; k < DUET_PII_COUNT; k++)
        cr_assert_geq(per_kind[k], 50, "only %d values of kind %s", per_kind[k], duet_pii_kind_name(k));
    cr_assert_geq(decoys, 200);
    free_set(set, n);
}

/* Each prompt alone: every planted value is replaced by a placeholder of
 * its own kind, the redactor holds exactly the planted values (no false
 * positive), the decoys are still there, and restore gives the prompt back. */
Test(redact, planted_values_go_decoys_stay_restore_inverts) {
    int n, values = 0;
    cJSON **set = load_set(&n);
    for (int i = 0; i < n; i++) {
        const char *prompt = cJSON_GetObjectItem(set[i], "prompt")->valuestring;
        const cJSON *pii = cJSON_GetObjectItem(set[i], "pii");
        duet_redactor *r = new_redactor();
        int replaced;
        char *red = redact(r, prompt, &replaced);
        const cJSON *p;
        cJSON_ArrayForEach(p, pii) {
            const char *v = cJSON_GetObjectItem(p, "value")->valuestring;
            const int kind = duet_pii_kind_parse(cJSON_GetObjectItem(p, "kind")->valuestring);
            cr_assert(!strstr(red, v), "prompt %d: the %s '%s' is still there:\n%s", i, duet_pii_kind_name(kind), v, red);
            int found = 0;
            for (int e = 0; e < duet_redact_count(r); e++) {
                int k;
                const char *val, *ph;
                cr_assert_eq(duet_redact_entry(r, e, &k, &val, &ph), 0);
                if (!strcmp(val, v)) {
                    found = 1;
                    cr_assert_eq(k, kind, "prompt %d: '%s' redacted as %s, planted as %s", i, v, duet_pii_kind_name(k),
                                 duet_pii_kind_name(kind));
                    cr_assert(strstr(red, ph), "prompt %d: placeholder %s missing", i, ph);
                }
            }
            cr_assert(found, "prompt %d: '%s' is not one of the redacted values", i, v);
            values++;
        }
        cr_assert_eq(duet_redact_count(r), cJSON_GetArraySize(pii), "prompt %d: %d values redacted, %d planted:\n%s\n%s", i,
                     duet_redact_count(r), cJSON_GetArraySize(pii), prompt, red);
        cr_assert_eq(replaced, cJSON_GetArraySize(pii));
        cJSON_ArrayForEach(p, cJSON_GetObjectItem(set[i], "decoys"))
            cr_assert(strstr(red, p->valuestring), "prompt %d: the decoy '%s' was redacted:\n%s", i, p->valuestring, red);
        char *back = restore(r, red);
        cr_assert_str_eq(back, prompt, "prompt %d: restore(redact(x)) != x", i);
        free(back), free(red);
        duet_redactor_free(r);
    }
    cr_log_info("%d prompts, %d planted values: all redacted with their kind, no decoy touched", n, values);
    free_set(set, n);
}

/* One redactor over the whole set: a value seen again gets the placeholder
 * it got the first time, and every prompt still restores. */
Test(redact, one_redactor_gives_a_value_one_placeholder) {
    int n;
    cJSON **set = load_set(&n);
    duet_redactor *r = new_redactor();
    for (int pass = 0; pass < 2; pass++) {
        const int before = duet_redact_count(r);
        for (int i = 0; i < n; i++) {
            const char *prompt = cJSON_GetObjectItem(set[i], "prompt")->valuestring;
            char *red = redact(r, prompt, NULL);
            char *back = restore(r, red);
            cr_assert_str_eq(back, prompt);
            free(red), free(back);
        }
        if (pass == 1) cr_assert_eq(duet_redact_count(r), before, "the second pass made new placeholders");
    }
    /* the placeholders are numbered per kind from 1, each once */
    int seen[DUET_PII_COUNT] = {0};
    for (int e = 0; e < duet_redact_count(r); e++) {
        int k;
        const char *ph;
        duet_redact_entry(r, e, &k, NULL, &ph);
        char want[32];
        snprintf(want, sizeof want, "<%s_%d>", duet_pii_kind_name(k), ++seen[k]);
        cr_assert_str_eq(ph, want);
    }
    duet_redactor_free(r);
    free_set(set, n);
}

/* ---- the checksums, written independently of the library ---- */

/* Luhn from the left: the digits at even distance from the check digit
 * are summed as they are, the others doubled with their digits summed. */
static int luhn_reference(const char *d, int n) {
    static const int doubled_digit_sum[10] = {0, 2, 4, 6, 8, 1, 3, 5, 7, 9};
    int s = 0;
    for (int i = 0; i < n; i++) {
        const int from_right = n - 1 - i;
        s += from_right % 2 ? doubled_digit_sum[d[i] - '0'] : d[i] - '0';
    }
    return s % 10 == 0;
}

static unsigned long long rng_state = 0x9E3779B97F4A7C15ull;
static unsigned rnd(unsigned m) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % m);
}

static int redacts_as(duet_redactor *r, const char *text, const char *tag) {
    char *red = redact(r, text, NULL);
    const int hit = strstr(red, tag) != NULL;
    if (!hit) cr_assert_str_eq(red, text, "redacted as something else: %s", red);
    free(red);
    return hit;
}

Test(redact, cards_are_exactly_the_luhn_valid_numbers) {
    duet_redactor *r = new_redactor();
    int accepted = 0, total = 0;
    for (int t = 0; t < 3000; t++) {
        char d[20], num[40], text[96];
        const int n = 13 + (int)rnd(7);
        d[0] = (char)('1' + rnd(9));
        for (int i = 1; i < n; i++) d[i] = (char)('0' + rnd(10));
        /* every check digit of one payload: exactly one passes */
        int passing = 0;
        for (int c = 0; c < 10; c++) {
            d[n - 1] = (char)('0' + c);
            d[n] = 0;
            const int grouped = n == 16 && (t & 1);
            if (grouped) snprintf(num, sizeof num, "%.4s %.4s %.4s %.4s", d, d + 4, d + 8, d + 12);
            else snprintf(num, sizeof num, "%s", d);
            snprintf(text, sizeof text, "dad paid with %s at the shop.", num);
            const int want = luhn_reference(d, n);
            passing += want;
            cr_assert_eq(redacts_as(r, text, "<CARD_"), want, "'%s': luhn says %d", num, want);
            accepted += want, total++;
        }
        cr_assert_eq(passing, 1);
    }
    cr_log_info("cards: %d of %d random numbers pass Luhn, the redactor agrees on all", accepted, total);
    duet_redactor_free(r);
}

/* mod 97 by ISO 7064's piecewise method: nine digits at a time. */
static int mod97_reference(const char *iban) {
    char moved[80], digits[160];
    const size_t n = strlen(iban);
    memcpy(moved, iban + 4, n - 4), memcpy(moved + n - 4, iban, 4), moved[n] = 0;
    size_t nd = 0;
    for (size_t i = 0; i < n; i++) {
        if (moved[i] >= 'A' && moved[i] <= 'Z') nd += (size_t)sprintf(digits + nd, "%d", moved[i] - 'A' + 10);
        else digits[nd++] = moved[i];
    }
    digits[nd] = 0;
    long rem = 0;
    size_t i = 0;
    while (i < nd) {
        char chunk[16];
        const int take = (int)(nd - i < 7 ? nd - i : 7);
        const int w = sprintf(chunk, "%ld", rem);
        memcpy(chunk + w, digits + i, (size_t)take), chunk[w + take] = 0;
        rem = strtol(chunk, NULL, 10) % 97;
        i += (size_t)take;
    }
    return rem;
}

/* Countries with their registered IBAN length (the SWIFT registry), and
 * codes no country has (any length 15-34 is then taken). */
static const struct {
    const char *cc;
    int len;
} iban_countries[] = {{"DE", 22}, {"GB", 22}, {"FR", 27}, {"NL", 18}, {"NO", 15}, {"MT", 31}, {"LC", 32},
                      {"QQ", 0},  {"ZZ", 0},  {"WW", 0}};

Test(redact, ibans_are_exactly_the_mod97_valid_ones) {
    duet_redactor *r = new_redactor();
    int accepted = 0, total = 0;
    for (int t = 0; t < 400; t++) {
        char bban[40], iban[48], text[128];
        const int country = (int)rnd(sizeof iban_countries / sizeof *iban_countries);
        const int len = iban_countries[country].len;
        /* a registered country: mostly its own length, sometimes one off */
        const int total_len = len ? len + (t % 5 == 0 ? (t % 10 ? 1 : -1) : 0) : 15 + (int)rnd(20);
        const int nb = total_len - 4;
        for (int i = 0; i < nb; i++) bban[i] = rnd(4) ? (char)('0' + rnd(10)) : (char)('A' + rnd(26));
        bban[nb] = 0;
        int passing = 0;
        for (int c = 0; c < 100; c++) { /* every check number 00..99 */
            snprintf(iban, sizeof iban, "%s%02d%s", iban_countries[country].cc, c, bban);
            const int want = mod97_reference(iban) == 1 && (len == 0 || total_len == len);
            passing += mod97_reference(iban) == 1;
            snprintf(text, sizeof text, "send it to %s by friday.", iban);
            cr_assert_eq(redacts_as(r, text, "<IBAN_"), want, "'%s': mod 97 = %d", iban, mod97_reference(iban));
            accepted += want, total++;
        }
        cr_assert(passing >= 1 && passing <= 2, "%d check numbers pass", passing);
    }
    cr_log_info("ibans: %d of %d pass mod 97 at their country's length, the redactor agrees on all", accepted, total);
    duet_redactor_free(r);
}

/* ---- restoring ---- */

/* Streams text cut at the given points; returns the concatenated output. */
static char *stream_restore(const duet_redactor *r, const char *text, const size_t *cuts, int n_cuts) {
    duet_restore_stream *s = duet_restore_stream_new(r);
    cr_assert(s);
    const size_t len = strlen(text);
    char *out = malloc(len * 8 + 4096);
    size_t o = 0, from = 0, n;
    for (int c = 0; c <= n_cuts; c++) {
        const size_t to = c < n_cuts ? cuts[c] : len;
        const char *piece = duet_restore_stream_push(s, text + from, to - from, &n);
        cr_assert(piece);
        memcpy(out + o, piece, n), o += n;
        from = to;
    }
    const char *rest = duet_restore_stream_flush(s, &n);
    memcpy(out + o, rest, n), o += n;
    out[o] = 0;
    duet_restore_stream_free(s);
    return out;
}

Test(redact, streamed_restore_equals_whole_text_at_every_split) {
    duet_redactor *r = new_redactor();
    char *red = redact(r,
                       "write to bob@example.com or call +44 20 7946 0958; lily paid with 4111 1111 1111 1111 "
                       "into DE89 3704 0044 0532 0130 00 from 10.0.0.1.",
                       NULL);
    cr_assert_eq(duet_redact_count(r), 6, "%s", red);
    const char *answers[] = {
        red,
        "<EMAIL_1><PHONE_1><<NAME_1>>",
        "dear <NAME_1>, we wrote to <EMAIL_1> and <EMAIL_9> (unknown) and <EMAIL_01> <EMAIL_1",
        "<EMA <IP <IP_1 > <CARD_> <IBAN_1>< <",
        "a < b and <x> and <PHONE_12345678901> and <PHONE_1>",
        "trailing <NAME_",
        "<",
        "",
    };
    for (size_t a = 0; a < sizeof answers / sizeof *answers; a++) {
        const char *text = answers[a];
        char *whole = restore(r, text);
        const size_t len = strlen(text);
        for (size_t i = 0; i <= len; i++) { /* one cut, everywhere */
            char *s = stream_restore(r, text, &i, 1);
            cr_assert_str_eq(s, whole, "cut at %zu of '%s'", i, text);
            free(s);
        }
        for (size_t i = 0; i + 1 <= len && len < 64; i++) /* two cuts, everywhere */
            for (size_t j = i; j <= len; j++) {
                const size_t cuts[2] = {i, j};
                char *s = stream_restore(r, text, cuts, 2);
                cr_assert_str_eq(s, whole, "cuts at %zu, %zu of '%s'", i, j, text);
                free(s);
            }
        size_t bytes[512]; /* byte by byte */
        for (size_t i = 0; i < len && i < 512; i++) bytes[i] = i + 1;
        char *s = stream_restore(r, text, bytes, (int)(len < 512 ? len : 512));
        cr_assert_str_eq(s, whole);
        free(s), free(whole);
    }
    /* and against the original text (independent of restore itself) */
    char *s = stream_restore(r, red, (size_t[]){5, 17, 18, 40}, 4);
    cr_assert_str_eq(s, "write to bob@example.com or call +44 20 7946 0958; lily paid with 4111 1111 1111 1111 "
                        "into DE89 3704 0044 0532 0130 00 from 10.0.0.1.");
    free(s);
    char *w = restore(r, "<EMAIL_1><PHONE_1><<NAME_1>> <EMAIL_9> <EMAIL_01>");
    cr_assert_str_eq(w, "bob@example.com+44 20 7946 0958<lily> <EMAIL_9> <EMAIL_01>");
    free(w), free(red);
    duet_redactor_free(r);
}

/* The stream holds back a possible placeholder and no more. */
Test(redact, the_stream_holds_back_only_a_possible_placeholder) {
    duet_redactor *r = new_redactor();
    char *red = redact(r, "mail bob@example.com", NULL);
    duet_restore_stream *s = duet_restore_stream_new(r);
    size_t n;
    const char *o = duet_restore_stream_push(s, "hi <EMA", 7, &n);
    cr_assert_eq(n, 3);
    cr_assert(!memcmp(o, "hi ", 3));
    o = duet_restore_stream_push(s, "IL_1", 4, &n);
    cr_assert_eq(n, 0, "a possible placeholder came out early");
    o = duet_restore_stream_push(s, "> ok <Z", 7, &n);
    cr_assert_eq(n, strlen("bob@example.com ok <Z"));
    cr_assert(!memcmp(o, "bob@example.com ok <Z", n), "%.*s", (int)n, o);
    o = duet_restore_stream_push(s, "<NAME_", 6, &n);
    cr_assert_eq(n, 0);
    o = duet_restore_stream_flush(s, &n);
    cr_assert_eq(n, 6);
    cr_assert(!memcmp(o, "<NAME_", 6));
    cr_assert_eq(duet_restore_stream_count(s), 1);
    duet_restore_stream_free(s);
    free(red);
    duet_redactor_free(r);
}

/* ---- detection details ---- */

Test(redact, kinds_formats_and_boundaries) {
    duet_redactor *r = new_redactor();
    const struct {
        const char *text, *want;
    } cases[] = {
        {"ping 2001:db8::8a2e:370:7334 now", "ping <IP_1> now"},
        {"ping ::ffff:192.0.2.128 now", "ping <IP_2> now"},
        {"at 12:30:45 and 1.2.3.4.5 and 256.1.1.1", "at 12:30:45 and 1.2.3.4.5 and 256.1.1.1"},
        {"call (555)123-4567 or 0612 345 678", "call <PHONE_1> or <PHONE_2>"},
        {"in 1998 2004 and 2021-05-14 and 12.05.2021 we had 42", "in 1998 2004 and 2021-05-14 and 12.05.2021 we had 42"},
        {"LILY and Lily met Mary Ann at lilypad", "<NAME_1> and <NAME_2> met <NAME_3> at lilypad"},
        {"see https://example.com/x@y and ftp://u:p@h.org/f.", "see https://example.com/x@y and <URL_1>."},
        {"a literal <CARD_1> stays itself", "a literal <CARD_1> stays itself"},
        {"josé@example.com café", "<EMAIL_1> café"}, /* UTF-8 in the local part (RFC 6531) */
        /* lower case IBANs: a registered country, at most 4 BBAN letters; a failure leaves the words looked at */
        {"pay de89 3704 0044 0532 0130 00 or gb82west12345698765432 now", "pay <IBAN_1> or <IBAN_2> now"},
        {"pay de89 3704 0044 0532 0130 01 or qq82west12345698765432", "pay de89 3704 0044 0532 0130 01 or qq82west12345698765432"},
        {"at12 this time when lily came", "at12 this time when <NAME_4> came"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *red = redact(r, cases[i].text, NULL);
        if (i == 7) { /* the literal got a placeholder of its own, and restores to itself */
            cr_assert_str_eq(red, "a literal <CARD_1> stays itself");
            int k;
            const char *v;
            duet_redact_entry(r, duet_redact_count(r) - 1, &k, &v, NULL);
            cr_assert_str_eq(v, "<CARD_1>");
        } else {
            cr_assert_str_eq(red, cases[i].want, "'%s'", cases[i].text);
        }
        char *back = restore(r, red);
        cr_assert_str_eq(back, cases[i].text);
        free(red), free(back);
    }
    duet_redactor_free(r);
    /* a kind switched off is left alone */
    duet_redact_params p = duet_redact_default_params();
    p.kinds = DUET_PII_ALL & ~(1u << DUET_PII_EMAIL);
    duet_err err = {0};
    cr_assert_eq(duet_redactor_new(&r, &p, &err), 0);
    char *red = redact(r, "bob@example.com 10.0.0.1", NULL);
    cr_assert_str_eq(red, "bob@example.com <IP_1>");
    free(red);
    duet_redactor_free(r);
}

Test(redact, invalid_utf8_and_bad_names_files_are_clear_errors) {
    duet_redactor *r = new_redactor();
    const char *bad[] = {"a\x80z", "over\xC0\x80long", "surrogate \xED\xA0\x80", "cut \xE2\x82", "\xF5\x80\x80\x80",
                         "\xFF", "four \xF0\x9F\x98"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *out = (char *)1;
        duet_err err = {0};
        cr_assert_eq(duet_redact(r, bad[i], strlen(bad[i]), &out, &err), DUET_EFORMAT, "case %zu", i);
        cr_assert_null(out);
        cr_assert(strstr(err.msg, "UTF-8") && strstr(err.msg, "offset"), "%s", err.msg);
    }
    char *out = NULL;
    duet_err nul_err = {0};
    cr_assert_eq(duet_redact(r, "a\0b@example.com", 15, &out, &nul_err), DUET_EFORMAT);
    cr_assert(strstr(nul_err.msg, "NUL byte at offset 1"), "%s", nul_err.msg);
    cr_assert_null(out);
    char *ok = redact(r, "été 日本 \xF0\x9F\x98\x80 bob@example.com", NULL);
    cr_assert_str_eq(ok, "été 日本 \xF0\x9F\x98\x80 <EMAIL_1>");
    free(ok);
    duet_redactor_free(r);

    duet_redact_params p = duet_redact_default_params();
    p.names_file = "/nonexistent/names.txt";
    duet_err err = {0};
    cr_assert_eq(duet_redactor_new(&r, &p, &err), DUET_EIO);
    cr_assert_null(r);
    cr_assert(strstr(err.msg, "/nonexistent/names.txt"), "%s", err.msg);
    char path[] = "/tmp/duet_names_XXXXXX";
    const int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs("lily\n# a comment\n\nbad \xFF name\n", f);
    fclose(f);
    p.names_file = path;
    cr_assert_eq(duet_redactor_new(&r, &p, &err), DUET_EFORMAT);
    cr_assert(strstr(err.msg, ":4:") && strstr(err.msg, "UTF-8"), "%s", err.msg);
    unlink(path);
    p.names_file = NULL, p.kinds = 1u << 12;
    cr_assert_eq(duet_redactor_new(&r, &p, &err), DUET_EINVAL);
}

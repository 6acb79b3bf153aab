/* What the egress log says went out (the pipeline tests: test_pipeline_cli.c,
 * test_server_pipeline.c): a remote request's prompt travels as token ids,
 * so the text is spelled back from them with the vocabulary; and whether a
 * text holds a planted value of tests/data/privacy/prompts.jsonl. */
#ifndef DUET_TEST_EGRESS_TEXT_H
#define DUET_TEST_EGRESS_TEXT_H

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "duet/tok.h"
#include "testutil.h"

/* (static inline: a test need not use every helper) */
/* The text the ids of every egress line with a prompt spell, lines joined
 * by newlines; *n_lines counts them. */
static inline char *egress_text(const char *log, const duet_vocab *v, int *n_lines) {
    char *raw = tu_slurp(log, NULL);
    cr_assert(raw, "no egress log %s", log);
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    *n_lines = 0;
    for (char *line = strtok(raw, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        cr_assert(o, "egress line is not JSON: %s", line);
        const cJSON *pr = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "body"), "prompt");
        if (!cJSON_IsArray(pr)) { /* the probe's requests carry no prompt of the user's */
            cJSON_Delete(o);
            continue;
        }
        for (int k = 0; k < cJSON_GetArraySize(pr); k++) {
            char piece[64];
            const int pl =
                duet_token_to_piece(v, (int32_t)cJSON_GetArrayItem(pr, k)->valuedouble, piece, sizeof piece, 0);
            if (pl <= 0) continue;
            if (len + (size_t)pl + 2 > cap) text = realloc(text, cap *= 2);
            memcpy(text + len, piece, (size_t)pl), len += (size_t)pl;
        }
        text[len++] = '\n';
        (*n_lines)++;
        cJSON_Delete(o);
    }
    text[len] = 0;
    free(raw);
    return text;
}

static inline int is_word_byte(int c) {
    return (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z') || c == '_' || c >= 0x80;
}

/* Whether hay holds needle (ignoring ASCII case) not inside a longer word:
 * a listed name "leo" in "leopard" (a decoy of another prompt) is not it. */
static inline int contains_word(const char *hay, const char *needle) {
    const size_t n = strlen(needle);
    for (const char *h = hay; *h; h++) {
        if (strncasecmp(h, needle, n) != 0) continue;
        const int before = h > hay ? (unsigned char)h[-1] : ' ', after = (unsigned char)h[n];
        if (!(is_word_byte(before) && is_word_byte((unsigned char)needle[0])) &&
            !(is_word_byte(after) && is_word_byte((unsigned char)needle[n - 1])))
            return 1;
    }
    return 0;
}

/* Whether text holds the planted value: a name as a word ("max" is not in
 * "max_tokens" or another prompt's "maxim"), anything else as bytes. */
static inline int holds(const char *text, const cJSON *pii) {
    const char *value = cJSON_GetObjectItem(pii, "value")->valuestring;
    if (!strcmp(cJSON_GetObjectItem(pii, "kind")->valuestring, "NAME")) return contains_word(text, value);
    return strstr(text, value) != NULL;
}

#endif

/* duet detokenize: token ids on stdin -> text on stdout. */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/tok.h"
#include "opts.h"

static const char usage_head[] =
    "usage: duet detokenize -m MODEL.gguf [--special] [--keep-space] [--json] < ids\n"
    "  Reads token ids (separated by spaces, commas or newlines) on stdin and\n"
    "  prints the text they stand for, byte for byte (no newline added).\n";

static void json_string(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

int cmd_detokenize(int argc, char **argv) {
    const char *model = NULL;
    int special = 0, keep_space = 0, json = 0;
    const duet_opt opts[] = {
        DUET_OPT_STR("model", 'm', &model, "PATH", "GGUF model or tokenizer (required)"),
        DUET_OPT_FLAG("special", 0, &special, "print the text of control tokens (dropped otherwise)"),
        DUET_OPT_FLAG("keep-space", 0, &keep_space, "SentencePiece: keep the space the tokenizer put in front"),
        DUET_OPT_FLAG("json", 0, &json, "print {\"n_tokens\": N, \"bytes\": B}, the text as a JSON string"),
        DUET_OPT_END,
    };
    int prc = duet_opts_parse("detokenize", opts, argc, argv, usage_head);
    if (prc) return prc == 1 ? 0 : prc;
    if (!model) return duet_opts_error("detokenize", "-m MODEL.gguf is required");
    int flags = (special ? DUET_DETOK_SPECIAL : 0) | (keep_space ? DUET_DETOK_KEEP_SPACE : 0);
    duet_err err = {0};
    duet_vocab *v = NULL;
    if (duet_vocab_load_file(&v, model, &err)) {
        fprintf(stderr, "duet detokenize: %s\n", err.msg);
        return 1;
    }
    int32_t *ids = NULL;
    int n = 0, cap = 0, rc = 0;
    char word[64];
    int c = 0;
    while (rc == 0) {
        size_t k = 0;
        while ((c = getchar()) != EOF && (isspace(c) || c == ','));
        if (c == EOF) break;
        do {
            if (k < sizeof word - 1) word[k++] = (char)c;
        } while ((c = getchar()) != EOF && !isspace(c) && c != ',');
        word[k] = 0;
        char *end;
        errno = 0;
        long x = strtol(word, &end, 10);
        if (*end || end == word || errno || x < INT32_MIN || x > INT32_MAX) {
            fprintf(stderr, "duet detokenize: '%s' is not a token id\n", word);
            rc = 1;
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            int32_t *p = realloc(ids, sizeof *p * (size_t)cap);
            if (!p) {
                fprintf(stderr, "duet detokenize: out of memory\n");
                rc = 1;
                break;
            }
            ids = p;
        }
        ids[n++] = (int32_t)x;
    }
    if (rc == 0 && duet_detokenize_check(v, ids, n, &err)) {
        fprintf(stderr, "duet detokenize: %s\n", err.msg);
        rc = 1;
    }
    char *text = NULL;
    int64_t len = 0;
    if (rc == 0) {
        len = duet_detokenize(v, ids, n, NULL, 0, flags);
        text = len >= 0 ? malloc((size_t)len + 1) : NULL;
        if (!text || duet_detokenize(v, ids, n, text, (size_t)len + 1, flags) != len) {
            fprintf(stderr, "duet detokenize: out of memory\n");
            rc = 1;
        }
    }
    if (rc == 0) {
        if (json) {
            printf("{\"n_tokens\": %d, \"bytes\": %lld, \"text\": ", n, (long long)len);
            json_string(text, (size_t)len);
            printf("}\n");
        } else {
            fwrite(text, 1, (size_t)len, stdout);
        }
        if (fflush(stdout)) rc = 1;
    }
    free(text);
    free(ids);
    duet_vocab_free(v);
    return rc;
}

/* duet tokenize: UTF-8 text on stdin -> token ids on stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/tok.h"
#include "duet/train.h"
#include "opts.h"

static const char usage_head[] =
    "usage: duet tokenize -m MODEL.gguf [--special] [--no-bos] [--eos] [--json] < text\n"
    "  Reads UTF-8 text on stdin and prints its token ids separated by spaces.\n"
    "  BOS is added when the vocabulary says add_bos_token (unless --no-bos).\n"
    "   or: duet tokenize -m MODEL.gguf --stories TEXT -o OUT.u16 [--json]\n"
    "  Splits TinyStories-style TEXT into stories exactly as duet train does, tokenizes each,\n"
    "  appends end-of-text after each and writes the stream as little-endian uint16 ids\n"
    "  (the input of scripts/gpu/train_pair.py).\n";

/* All of stdin (binary-safe). */
static char *read_all(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0, r;
    char *buf = malloc(cap);
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                return NULL;
            }
            buf = p;
            cap *= 2;
        }
    }
    if (buf && ferror(f)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* The training token stream (duet_tokens_from_text) as little-endian uint16. */
static int dump_stories(const char *model, const char *text_path, const char *out_path, int json) {
    duet_err err = {0};
    duet_tokens t = {0};
    if (duet_tokens_from_text(&t, text_path, model, &err)) {
        fprintf(stderr, "duet tokenize: %s\n", err.msg);
        return 1;
    }
    for (int64_t i = 0; i < t.n; i++)
        if (t.ids[i] < 0 || t.ids[i] > 65535) {
            fprintf(stderr, "duet tokenize: token id %d does not fit uint16 (a vocabulary of 65536 tokens at most)\n",
                    t.ids[i]);
            duet_tokens_free(&t);
            return 1;
        }
    FILE *f = fopen(out_path, "wb");
    int rc = f ? 0 : 1;
    for (int64_t i = 0; !rc && i < t.n; i++) {
        const unsigned char le[2] = {(unsigned char)(t.ids[i] & 255), (unsigned char)(t.ids[i] >> 8)};
        if (fwrite(le, 1, 2, f) != 2) rc = 1;
    }
    if (f && fclose(f)) rc = 1;
    if (rc) fprintf(stderr, "duet tokenize: cannot write %s\n", out_path);
    else if (json) printf("{\"n_tokens\": %lld, \"out\": \"%s\"}\n", (long long)t.n, out_path);
    else fprintf(stderr, "duet tokenize: %lld tokens -> %s\n", (long long)t.n, out_path);
    duet_tokens_free(&t);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *stories = NULL, *out = NULL;
    int special = 0, no_bos = 0, eos = 0, json = 0;
    const duet_opt opts[] = {
        DUET_OPT_STR("model", 'm', &model, "PATH", "GGUF model or tokenizer (required)"),
        DUET_OPT_FLAG("special", 0, &special, "text of control tokens (<|eot_id|>, <s>, ...) becomes those tokens"),
        DUET_OPT_FLAG("no-bos", 0, &no_bos, "do not add BOS"),
        DUET_OPT_FLAG("eos", 0, &eos, "append EOS"),
        DUET_OPT_FLAG("json", 0, &json, "print {\"n_tokens\": N, \"ids\": [...]}"),
        DUET_OPT_STR("stories", 0, &stories, "TEXT", "tokenize TEXT story by story into -o (see above)"),
        DUET_OPT_STR("output", 'o', &out, "OUT.u16", "the uint16 stream written with --stories"),
        DUET_OPT_END,
    };
    int prc = duet_opts_parse("tokenize", opts, argc, argv, usage_head);
    if (prc) return prc == 1 ? 0 : prc;
    if (!model) return duet_opts_error("tokenize", "-m MODEL.gguf is required");
    if (stories || out) {
        if (!stories || !out) {
            fprintf(stderr, "duet tokenize: --stories TEXT and -o OUT.u16 go together\n");
            return 2;
        }
        return dump_stories(model, stories, out, json);
    }
    duet_err err = {0};
    duet_vocab *v = NULL;
    if (duet_vocab_load_file(&v, model, &err)) {
        fprintf(stderr, "duet tokenize: %s\n", err.msg);
        return 1;
    }
    size_t len = 0;
    char *text = read_all(stdin, &len);
    if (!text) {
        fprintf(stderr, "duet tokenize: cannot read stdin\n");
        duet_vocab_free(v);
        return 1;
    }
    int flags = (special ? DUET_TOK_PARSE_SPECIAL : 0) | (eos ? DUET_TOK_ADD_EOS : 0) |
                (!no_bos && duet_vocab_add_bos(v) ? DUET_TOK_ADD_BOS : 0);
    int32_t *ids = NULL;
    int n = duet_tokenize_alloc(v, text, len, flags, &ids);
    free(text);
    duet_vocab_free(v);
    if (n < 0) {
        fprintf(stderr, "duet tokenize: %s\n",
                n == DUET_ERANGE ? "input too long (512 MiB at most)" : n == DUET_ENOMEM ? "out of memory" : "failed");
        return 1;
    }
    if (json) printf("{\"n_tokens\": %d, \"ids\": [", n);
    for (int i = 0; i < n; i++) printf(json ? "%s%d" : "%s%d", i ? (json ? ", " : " ") : "", ids[i]);
    printf(json ? "]}\n" : "\n");
    free(ids);
    return fflush(stdout) == 0 ? 0 : 1;
}

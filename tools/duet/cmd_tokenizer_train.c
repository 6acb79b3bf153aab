/* duet tokenizer-train: learn a byte-level BPE vocabulary from text files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duet/bpe_train.h"
#include "opts.h"

static const char usage_head[] =
    "usage: duet tokenizer-train -f TEXT [-f TEXT ...] --vocab N -o tok.gguf [--json]\n"
    "  Trains a byte-level BPE (GPT-2 pre-tokenizer) with N tokens in all:\n"
    "  256 byte symbols, N-257 merges and <|endoftext|>. The output GGUF holds\n"
    "  tokenizer.ggml.* keys only (model gpt2, pre gpt-2).\n";

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) { free(p); p = NULL; }
    fclose(f);
    if (p) { p[n] = 0; *len = (size_t)n; }
    return p;
}

int cmd_tokenizer_train(int argc, char **argv) {
    const char *file_paths[64];
    duet_opt_list files = {file_paths, 0, 64};
    int vocab = 0, json = 0;
    const char *out = NULL;
    const duet_opt opts[] = {
        DUET_OPT_LIST("file", 'f', &files, "TEXT", "a training text (repeat for several, up to 64)"),
        DUET_OPT_INT("vocab", 0, &vocab, 257, 200000, "N", "tokens in all, 257..200000 (required)"),
        DUET_OPT_STR("output", 'o', &out, "tok.gguf", "where to write the tokenizer (required)"),
        DUET_OPT_FLAG("json", 0, &json, "print one JSON object"),
        DUET_OPT_END,
    };
    int prc = duet_opts_parse("tokenizer-train", opts, argc, argv, usage_head);
    if (prc) return prc == 1 ? 0 : prc;
    if (!files.n || !out || !vocab)
        return duet_opts_error("tokenizer-train", "need -f TEXT, -o OUT and --vocab N (duet tokenizer-train --help)");
    const int n_files = files.n;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    duet_err err = {0};
    duet_bpe *b = duet_bpe_new();
    int rc = b ? 0 : -1;
    size_t total = 0;
    for (int i = 0; !rc && i < n_files; i++) {
        size_t len = 0;
        char *text = slurp(file_paths[i], &len);
        if (!text) {
            fprintf(stderr, "duet tokenizer-train: cannot read %s\n", file_paths[i]);
            duet_bpe_free(b);
            return 1;
        }
        rc = duet_bpe_add_text(b, text, len, &err);
        if (rc) duet_err_prefix(&err, "%s", file_paths[i]);
        total += len;
        free(text);
    }
    if (!rc) rc = duet_bpe_learn(b, vocab - 257, &err);
    if (!rc) rc = duet_bpe_write_gguf(b, out, &err);
    if (rc) {
        fprintf(stderr, "duet tokenizer-train: %s\n", b ? err.msg : "out of memory");
        duet_bpe_free(b);
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    int n_vocab = 256 + duet_bpe_n_merges(b) + 1;
    if (json)
        printf("{\"output\":\"%s\",\"n_vocab\":%d,\"n_merges\":%d,\"bytes\":%zu,\"pieces\":%lld,\"seconds\":%.3f}\n",
               out, n_vocab, duet_bpe_n_merges(b), total, (long long)duet_bpe_n_pieces(b), secs);
    else
        fprintf(stderr, "duet tokenizer-train: %d tokens (%d merges) from %zu bytes, %lld distinct pieces, %.2f s -> %s\n",
                n_vocab, duet_bpe_n_merges(b), total, (long long)duet_bpe_n_pieces(b), secs, out);
    duet_bpe_free(b);
    return 0;
}

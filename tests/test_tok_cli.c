/* duet tokenize / duet detokenize: ids as the reference fixtures give them,
 * BOS per the vocabulary, a byte-exact round trip, and clear errors. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static char vocab_path[1024];

static const char *vocab(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", name);
    return tu_data(rel, vocab_path, sizeof vocab_path);
}

/* Writes data to a temp file and returns its path (static buffer). */
static const char *temp_file(const char *data, size_t len) {
    static char path[64];
    strcpy(path, "/tmp/duet_tokcli_XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
    return path;
}

/* "Hello world" is case 6 of the llama-bpe fixture: " 9906 1917" */
Test(tok_cli, tokenize_prints_ids_with_bos_per_vocab) {
    const char *in = temp_file("Hello world", 11);
    char args[2048], *out = NULL;
    snprintf(args, sizeof args, "tokenize -m %s < %s", vocab("llama-bpe"), in);
    cr_assert_eq(tu_run_duet(args, &out), 0);
    cr_expect_str_eq(out, "128000 9906 1917\n"); /* add_bos_token is true */
    free(out);
    snprintf(args, sizeof args, "tokenize -m %s --no-bos < %s", vocab("llama-bpe"), in);
    cr_assert_eq(tu_run_duet(args, &out), 0);
    cr_expect_str_eq(out, "9906 1917\n");
    free(out);
    snprintf(args, sizeof args, "tokenize -m %s < %s", vocab("qwen2"), in); /* add_bos_token is false */
    cr_assert_eq(tu_run_duet(args, &out), 0);
    cr_expect_str_eq(out, "9707 1879\n");
    free(out);
    snprintf(args, sizeof args, "tokenize -m %s --json < %s", vocab("qwen2"), in);
    cr_assert_eq(tu_run_duet(args, &out), 0);
    cr_expect_str_eq(out, "{\"n_tokens\": 2, \"ids\": [9707, 1879]}\n");
    free(out);
    unlink(in);
}

/* --stories: the training stream, each story's ids then end-of-text, as
 * little-endian uint16; ids past 65535 are refused. Two train.txt-style
 * stories (one "\n" between them) of "Hello world" = gpt-2 15496 995. */
Test(tok_cli, stories_stream_is_ids_then_eot_per_story) {
    const char *in = temp_file("Hello world\nHello world\n", 24);
    char in_path[64], out_path[64], args[2048], *out = NULL;
    strcpy(in_path, in);
    strcpy(out_path, "/tmp/duet_tokcli_u16_XXXXXX");
    int fd = mkstemp(out_path);
    cr_assert_geq(fd, 0);
    close(fd);
    snprintf(args, sizeof args, "tokenize -m %s --stories %s -o %s --json", vocab("gpt-2"), in_path, out_path);
    cr_assert_eq(tu_run_duet(args, &out), 0);
    cr_expect(strstr(out, "\"n_tokens\": 6") != NULL, "%s", out);
    free(out);
    unsigned char b[16];
    FILE *f = fopen(out_path, "rb");
    cr_assert_not_null(f);
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    cr_assert_eq(n, 12);
    const int want[6] = {15496, 995, 50256, 15496, 995, 50256};
    for (int i = 0; i < 6; i++) cr_expect_eq(b[2 * i] | b[2 * i + 1] << 8, want[i], "id %d", i);
    snprintf(args, sizeof args, "tokenize -m %s --stories %s -o %s", vocab("qwen2"), in_path, out_path);
    cr_expect_neq(tu_run_duet(args, &out), 0, "qwen2's end-of-text id 151643 does not fit uint16");
    free(out);
    snprintf(args, sizeof args, "tokenize -m %s --stories %s", vocab("gpt-2"), in_path);
    cr_expect_eq(tu_run_duet(args, &out), 2, "--stories without -o is a usage error");
    free(out);
    unlink(in_path);
    unlink(out_path);
}

Test(tok_cli, special_only_with_flag) {
    const char *in = temp_file("<|eot_id|>", 10);
    char args[2048], *out = NULL;
    snprintf(args, sizeof args, "tokenize -m %s --no-bos --special < %s", vocab("llama-bpe"), in);
    cr_assert_eq(tu_run_duet(args, &out), 0);
    cr_expect_str_eq(out, "128009\n");
    free(out);
    snprintf(args, sizeof args, "tokenize -m %s --no-bos < %s", vocab("llama-bpe"), in);
    cr_assert_eq(tu_run_duet(args, &out), 0);
    cr_expect(strstr(out, "128009") == NULL, "%s", out);
    free(out);
    unlink(in);
}

Test(tok_cli, round_trip_is_byte_exact) {
    const char text[] = "  Two spaces, tabs\t\tand\nnewlines; caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80 end ";
    const char *names[] = {"llama-spm", "gpt-2", "llama-bpe", "qwen2"};
    for (int k = 0; k < 4; k++) {
        const char *in = temp_file(text, sizeof text - 1);
        char args[4096], *out = NULL;
        snprintf(args, sizeof args, "tokenize -m %s < %s | %s detokenize -m %s", vocab(names[k]), in, DUET_BIN,
                 vocab(names[k]));
        cr_assert_eq(tu_run_duet(args, &out), 0, "%s", names[k]);
        cr_expect_str_eq(out, text, "%s", names[k]);
        free(out);
        unlink(in);
    }
}

Test(tok_cli, bad_ids_are_errors) {
    char args[2048], *out = NULL;
    const char *in = temp_file("1 2 40000\n", 10);
    snprintf(args, sizeof args, "detokenize -m %s < %s 2>&1", vocab("llama-spm"), in);
    cr_expect_eq(tu_run_duet(args, &out), 1);
    cr_expect(strstr(out, "duet detokenize:") && strstr(out, "40000"), "%s", out);
    cr_expect(strchr(out, '\n') == out + strlen(out) - 1, "one line: %s", out);
    free(out);
    unlink(in);
    in = temp_file("12 abc", 6);
    snprintf(args, sizeof args, "detokenize -m %s < %s 2>&1", vocab("llama-spm"), in);
    cr_expect_eq(tu_run_duet(args, &out), 1);
    cr_expect(strstr(out, "'abc' is not a token id"), "%s", out);
    free(out);
    unlink(in);
    in = temp_file("-3", 2);
    snprintf(args, sizeof args, "detokenize -m %s < %s 2>/dev/null", vocab("llama-spm"), in);
    cr_expect_eq(tu_run_duet(args, NULL), 1);
    unlink(in);
}

Test(tok_cli, usage_and_missing_files) {
    cr_expect_eq(tu_run_duet("tokenize --help", NULL), 0);
    cr_expect_eq(tu_run_duet("detokenize --help", NULL), 0);
    cr_expect_eq(tu_run_duet("tokenize < /dev/null 2>/dev/null", NULL), 2);
    cr_expect_eq(tu_run_duet("detokenize --bogus 2>/dev/null", NULL), 2);
    char *out = NULL;
    cr_expect_eq(tu_run_duet("tokenize -m /nonexistent/x.gguf < /dev/null 2>&1", &out), 1);
    cr_expect(strstr(out, "duet tokenize:") && strstr(out, "/nonexistent/x.gguf"), "%s", out);
    free(out);
}

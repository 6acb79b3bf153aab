/* Every CLI command's options (tools/duet/opts.h): a bad value, an unknown
 * option or a missing value is exit status 2 with one stderr line that names
 * the command and the option; --help exits 0; duet --version; -c/-s aliases;
 * progress without '\r' when stderr is not a terminal. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define SLM DUET_SRC_DIR "/models/slm.gguf" /* llama, context 256 */
#define TOK DUET_SRC_DIR "/models/tok.gguf"

typedef struct {
    const char *args;   /* command line after "duet" */
    const char *needle; /* the option the message must name */
} bad_case;

/* Runs args with stderr captured (stdout dropped); expects status 2 and one
 * line "duet CMD: ..." naming the option. Returns the number of failures. */
static int expect_usage_error(const bad_case *c) {
    char cmd[2048], prefix[64];
    snprintf(cmd, sizeof cmd, "%s 2>&1 >/dev/null", c->args);
    char *out = NULL;
    int rc = tu_run_duet(cmd, &out);
    /* "duet <command>:" where <command> is the first word of args */
    size_t w = strcspn(c->args, " ");
    snprintf(prefix, sizeof prefix, "duet %.*s: ", (int)w, c->args);
    const char *msg = out ? out : "";
    int ok = rc == 2 && !strncmp(msg, prefix, strlen(prefix)) && strstr(msg, c->needle) &&
             strchr(msg, '\n') == msg + strlen(msg) - 1;
    cr_expect(ok, "duet %s: want exit 2 and one line naming '%s'; got exit %d: %s", c->args, c->needle, rc, msg);
    free(out);
    return !ok;
}

static void expect_all(const bad_case *cases, size_t n) {
    for (size_t i = 0; i < n; i++) expect_usage_error(&cases[i]);
}

#define EXPECT_ALL(cases) expect_all(cases, sizeof cases / sizeof cases[0])

Test(cli_opts, info) {
    static const bad_case cases[] = {
        {"info --bogus", "--bogus"},
        {"info -m", "-m"},
        {"info --model", "--model"},
        {"info -m " SLM " stray", "stray"},
        {"info -m " SLM " --json=yes", "--json"},
    };
    EXPECT_ALL(cases);
}

Test(cli_opts, logits) {
    static const bad_case cases[] = {
        {"logits -m " SLM " --tokens 1 -o /dev/null -t abc", "-t"},
        {"logits -m " SLM " --tokens 1 -o /dev/null -t 0", "-t"},
        {"logits -m " SLM " --tokens 1 -o /dev/null --threads 1025", "--threads"},
        {"logits -m " SLM " --tokens 1 -o /dev/null -t 4x", "-t"},
        {"logits -m " SLM " --tokens 1 -o /dev/null --kv-type q8", "--kv-type"},
        {"logits -m " SLM " --tokens 1 -o", "-o"},
        {"logits --bogus", "--bogus"},
    };
    EXPECT_ALL(cases);
}

Test(cli_opts, tokenize_detokenize) {
    static const bad_case cases[] = {
        {"tokenize -m", "-m"},
        {"tokenize -m " SLM " --stories", "--stories"},
        {"tokenize --bogus", "--bogus"},
        {"tokenize -m " SLM " -x", "-x"},
        {"detokenize -m", "-m"},
        {"detokenize --bogus", "--bogus"},
        {"detokenize -m " SLM " --special=1", "--special"},
    };
    EXPECT_ALL(cases);
}

Test(cli_opts, quantize) {
    static const bad_case cases[] = {
        {"quantize -i a -o b --type Q8_0 -t abc", "-t"},
        {"quantize -i a -o b --type Q8_0 -t 0", "-t"},
        {"quantize -i a -o b --type Q8_0 -t -3", "-t"},
        {"quantize -i a -o b --type Q3_XS", "--type"},
        {"quantize -i a -o b --type", "--type"},
        {"quantize -i", "-i"},
        {"quantize --bogus", "--bogus"},
    };
    EXPECT_ALL(cases);
}

#define SYNTH_SHAPE "synth --arch llama --n-embd 64 --n-layer 1 --n-head 2 --n-head-kv 1 --n-ff 64 --n-vocab 300 "

Test(cli_opts, synth) {
    static const bad_case cases[] = {
        {SYNTH_SHAPE "-o /dev/null --n-embd abc", "--n-embd"},
        {SYNTH_SHAPE "-o /dev/null --n-layer 0", "--n-layer"},
        {SYNTH_SHAPE "-o /dev/null --n-vocab 1e3", "--n-vocab"},
        {SYNTH_SHAPE "-o /dev/null --ctx x", "--ctx"},
        {SYNTH_SHAPE "-o /dev/null -c 0", "-c"},
        {SYNTH_SHAPE "-o /dev/null --seed -1", "--seed"},
        {SYNTH_SHAPE "-o /dev/null -s abc", "-s"},
        {SYNTH_SHAPE "-o /dev/null -t 0", "-t"},
        {SYNTH_SHAPE "-o /dev/null --type Q2", "--type"},
        {SYNTH_SHAPE "-o", "-o"},
        {"synth --bogus", "--bogus"},
    };
    EXPECT_ALL(cases);
}

Test(cli_opts, bench) {
    static const bad_case cases[] = {
        {"bench -m " SLM " -t abc", "-t"},
        {"bench -m " SLM " -t 0", "-t"},
        {"bench -m " SLM " -t 1025", "-t"},
        {"bench -m " SLM " -p abc", "-p"},
        {"bench -m " SLM " -p 0", "-p"},
        {"bench -m " SLM " -n -1", "-n"},
        {"bench -m " SLM " -r 17", "-r"},
        {"bench -m " SLM " --kv-type q8", "--kv-type"},
        {"bench -m " SLM " -p", "-p"},
        {"bench --bogus", "--bogus"},
        /* past the model's context of 256: refused before any work */
        {"bench -m " SLM " -p 257 -t 1", "-p"},
        {"bench -m " SLM " -p 8 -n 1000 -t 1", "-n"},
        {"bench -m " SLM " --prefill=100000 -t 1", "context"},
    };
    EXPECT_ALL(cases);
}

Test(cli_opts, perplexity) {
    static const bad_case cases[] = {
        {"perplexity -m " SLM " -f x --ctx abc", "--ctx"},
        {"perplexity -m " SLM " -f x --ctx 1", "--ctx"},
        {"perplexity -m " SLM " -f x -c 12three", "-c"},
        {"perplexity -m " SLM " -f x -t 0", "-t"},
        {"perplexity -m " SLM " -f x -t 1025", "-t"},
        {"perplexity -m " SLM " -f x -t one", "-t"},
        {"perplexity -m " SLM " -f", "-f"},
        {"perplexity --bogus", "--bogus"},
    };
    EXPECT_ALL(cases);
}

Test(cli_opts, compress) {
    static const bad_case cases[] = {
        {"compress --bogus", "--bogus"},
        {"compress -m " SLM " --ratio 0 -p x", "--ratio"},
        {"compress -m " SLM " --ratio 1.5 -p x", "--ratio"},
        {"compress -m " SLM " --ratio half -p x", "--ratio"},
        {"compress -m " SLM " -p x", "--ratio"},
        {"compress -m " SLM " --ratio 0.5", "-p"},
        {"compress -m " SLM " --ratio 0.5 -p x -f y", "-f"},
        {"compress --ratio 0.5 -p x", "-m"},
        {"compress -m " SLM " --ratio 0.5 -p x --keep-tail -1", "--keep-tail"},
        {"compress -m " SLM " --ratio 0.5 -p", "-p"},
        {"compress -m " SLM " --ratio 0.5 -p x --segment -4", "--segment"},
    };
    EXPECT_ALL(cases);
}

Test(cli_opts, tokenizer_train) {
    static const bad_case cases[] = {
        {"tokenizer-train -f x -o y --vocab abc", "--vocab"},
        {"tokenizer-train -f x -o y --vocab 10", "--vocab"},
        {"tokenizer-train -f x -o y --vocab 300000", "--vocab"},
        {"tokenizer-train -f", "-f"},
        {"tokenizer-train --bogus", "--bogus"},
    };
    EXPECT_ALL(cases);
}

#define TRAIN_BASE "-f x --tok y -o z "

Test(cli_opts, train) {
    static const bad_case cases[] = {
        {"train " TRAIN_BASE "--steps abc", "--steps"},
        {"train " TRAIN_BASE "--steps 0", "--steps"},
        {"train " TRAIN_BASE "--lr abc", "--lr"},
        {"train " TRAIN_BASE "--lr -1", "--lr"},
        {"train " TRAIN_BASE "--lr 1e-3x", "--lr"},
        {"train " TRAIN_BASE "--batch 0", "--batch"},
        {"train " TRAIN_BASE "--ctx abc", "--ctx"},
        {"train " TRAIN_BASE "-c 0", "-c"},
        {"train " TRAIN_BASE "--seed -5", "--seed"},
        {"train " TRAIN_BASE "-s x", "-s"},
        {"train " TRAIN_BASE "-t 0", "-t"},
        {"train " TRAIN_BASE "-t 4096", "-t"},
        {"train " TRAIN_BASE "--warmup -1", "--warmup"},
        {"train " TRAIN_BASE "--ckpt-minutes soon", "--ckpt-minutes"},
        {"train " TRAIN_BASE "--rope-base nan", "--rope-base"},
        {"train " TRAIN_BASE "--json=1", "--json"},
        {"train " TRAIN_BASE "--tok", "--tok"},
        {"train --bogus", "--bogus"},
    };
    EXPECT_ALL(cases);
}

#define DISTILL_BASE "--teacher t -f x --tok y -o z "

Test(cli_opts, distill) {
    static const bad_case cases[] = {
        {"distill " DISTILL_BASE "--temp 0", "--temp"},
        {"distill " DISTILL_BASE "--temp abc", "--temp"},
        {"distill " DISTILL_BASE "--ce-weight 2", "--ce-weight"},
        {"distill " DISTILL_BASE "--onpolicy-frac -0.5", "--onpolicy-frac"},
        {"distill " DISTILL_BASE "--loss foo", "--loss"},
        {"distill " DISTILL_BASE "--loss jsd:2", "--loss"},
        {"distill " DISTILL_BASE "--mode bar", "--mode"},
        {"distill " DISTILL_BASE "--prompt-len 0", "--prompt-len"},
        {"distill " DISTILL_BASE "--steps x", "--steps"},
        {"distill " DISTILL_BASE "-t abc", "-t"},
        {"distill " DISTILL_BASE "-c 0", "-c"},
        {"distill " DISTILL_BASE "--teacher", "--teacher"},
        {"distill --bogus", "--bogus"},
    };
    EXPECT_ALL(cases);
}

/* Parsing stops before the server binds anything. */
Test(cli_opts, serve) {
    static const bad_case cases[] = {
        {"serve -m " SLM " --port abc", "--port"},
        {"serve -m " SLM " --port 70000", "--port"},
        {"serve -m " SLM " -t 0", "-t"},
        {"serve -m " SLM " --slots 0", "--slots"},
        {"serve -m " SLM " -c x", "-c"},
        {"serve -m " SLM " --time-limit never", "--time-limit"},
        {"serve -m " SLM " --host", "--host"},
        {"serve --bogus", "--bogus"},
    };
    EXPECT_ALL(cases);
}

/* generate is converted to the option table separately (tools/duet/cmd_generate.c);
 * these fail until it is. */
Test(cli_opts, generate_bad_values) {
    static const bad_case cases[] = {
        {"generate -m " SLM " -p x --temp abc", "--temp"},
        {"generate -m " SLM " -p x -n abc", "-n"},
        {"generate -m " SLM " -p x -t 0", "-t"},
        {"generate -m " SLM " -p x --top-p 2", "--top-p"},
        {"generate -m " SLM " -p x --bogus", "--bogus"},
        {"generate -m " SLM " -p", "-p"},
    };
    EXPECT_ALL(cases);
}

Test(cli_opts, help_exits_zero_for_every_command) {
    static const char *const cmds[] = {"info",       "logits",          "generate", "tokenize", "detokenize",
                                       "quantize",   "synth",           "bench",    "perplexity",
                                       "tokenizer-train", "train",      "distill",  "serve"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char args[128];
        char *out = NULL;
        snprintf(args, sizeof args, "%s --help 2>/dev/null", cmds[i]);
        cr_expect_eq(tu_run_duet(args, &out), 0, "duet %s --help", cmds[i]);
        cr_expect(out && strstr(out, "usage"), "duet %s --help prints a usage: %s", cmds[i], out ? out : "");
        free(out);
        snprintf(args, sizeof args, "%s -h >/dev/null 2>&1", cmds[i]);
        cr_expect_eq(tu_run_duet(args, NULL), 0, "duet %s -h", cmds[i]);
    }
}

/* Every command with -t says the same default, the number of CPUs. */
Test(cli_opts, threads_default_is_stated_in_help) {
    static const char *const cmds[] = {"logits", "quantize", "synth", "bench", "perplexity", "train", "distill",
                                       "generate", "serve"};
    const char *want = "one per available CPU";
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char args[128];
        char *out = NULL;
        snprintf(args, sizeof args, "%s --help", cmds[i]);
        cr_expect_eq(tu_run_duet(args, &out), 0);
        cr_expect(out && strstr(out, "-t, --threads N") && strstr(out, want), "duet %s --help: %s", cmds[i],
                  out ? out : "");
        free(out);
    }
}

Test(cli_opts, version) {
    const char *forms[] = {"--version", "version"};
    for (int i = 0; i < 2; i++) {
        char *out = NULL;
        cr_assert_eq(tu_run_duet(forms[i], &out), 0, "duet %s", forms[i]);
        int a, b, c;
        cr_expect(out && sscanf(out, "duet %d.%d.%d", &a, &b, &c) == 3, "duet %s: %s", forms[i], out ? out : "");
        free(out);
    }
}

/* --name=value, and the -c / -s aliases, are accepted and mean what the long names do. */
Test(cli_opts, equals_form_and_aliases) {
    char *out = NULL;
    cr_assert_eq(tu_run_duet("info --model=" SLM " --json", &out), 0);
    cr_expect(out && strstr(out, "\"architecture\":\"llama\""), "%s", out ? out : "");
    free(out);
    char path[128], args[512];
    snprintf(path, sizeof path, "/tmp/duet-test-opts-%d.gguf", (int)getpid());
    snprintf(args, sizeof args, SYNTH_SHAPE "-c 96 -s 3 -t 1 -o %s", path);
    cr_assert_eq(tu_run_duet(args, NULL), 0);
    snprintf(args, sizeof args, "info -m %s --json", path);
    cr_assert_eq(tu_run_duet(args, &out), 0);
    cr_expect(out && strstr(out, "\"context_length\":96"), "context 96 expected: %s", out ? out : "");
    free(out);
    unlink(path);
}

/* Progress lines: with stderr a pipe, no carriage returns. */
Test(cli_opts, progress_without_cr_off_a_terminal) {
    char *out = NULL;
    cr_assert_eq(tu_run_duet("bench -m " SLM " -r 1 -p 8 -n 8 -t 1 2>&1 >/dev/null", &out), 0);
    cr_expect(out && strstr(out, "duet bench: run 2/2\n") && !strchr(out, '\r'), "%s", out ? out : "");
    free(out);

    char txt[128], model[128], args[1024];
    snprintf(txt, sizeof txt, "/tmp/duet-test-opts-%d.txt", (int)getpid());
    snprintf(model, sizeof model, "/tmp/duet-test-opts-%d-m.gguf", (int)getpid());
    FILE *f = fopen(txt, "w");
    cr_assert(f);
    for (int i = 0; i < 40; i++)
        fprintf(f, "Once upon a time there was a little cat named Tom. Tom liked to play in the sun.\n\n");
    fclose(f);
    snprintf(args, sizeof args, "perplexity -m " SLM " -f %s -c 64 -t 1 2>&1 >/dev/null", txt);
    cr_assert_eq(tu_run_duet(args, &out), 0);
    cr_expect(out && strstr(out, "tokens scored") && !strchr(out, '\r'), "%s", out ? out : "");
    free(out);
    snprintf(args, sizeof args,
             "train -f %s --tok " TOK " -o %s --n-embd 32 --n-layer 1 --n-head 2 --n-ff 64 -c 32 --batch 2 "
             "--steps 3 --warmup 1 --eval-every 0 -t 1 2>&1 >/dev/null",
             txt, model);
    cr_assert_eq(tu_run_duet(args, &out), 0);
    cr_expect(out && strstr(out, "3/3") && !strchr(out, '\r'), "%s", out ? out : "");
    free(out);
    unlink(txt);
    unlink(model);
    char side[192];
    const char *ext[] = {".ckpt", ".loss.csv", ".loss.png"};
    for (int i = 0; i < 3; i++) {
        snprintf(side, sizeof side, "%s%s", model, ext[i]);
        unlink(side);
    }
}

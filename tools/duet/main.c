/* duet CLI entry point: dispatches to one subcommand per file. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "duet_git_commit.h" /* DUET_GIT_COMMIT, written by the build (cmake/git_commit.cmake) */

#ifndef DUET_VERSION
#define DUET_VERSION "0.0.0" /* the build passes CMakeLists' project(VERSION) */
#endif

typedef struct {
    const char *name;
    const char *help;
    int (*fn)(int, char **);
} command;

#define DUET_TABLE_ROW(n, h) {#n, h, cmd_##n},
static const command commands[] = {DUET_COMMANDS(DUET_TABLE_ROW)};
#undef DUET_TABLE_ROW

/* "tokenizer-train" on the command line is cmd_tokenizer_train. */
static int same_name(const char *cli, const char *table) {
    for (; *cli && *table; cli++, table++) {
        char c = *cli == '-' ? '_' : *cli;
        if (c != *table) return 0;
    }
    return *cli == *table;
}

static void usage(FILE *f) {
    fprintf(f, "usage: duet <command> [options]   (duet <command> --help for its options)\n"
               "       duet --version\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (!commands[i].fn) continue;
        char name[64];
        snprintf(name, sizeof name, "%s", commands[i].name);
        for (char *c = name; *c; c++) if (*c == '_') *c = '-';
        fprintf(f, "  %-16s %s\n", name, commands[i].help);
    }
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V") || !strcmp(argv[1], "version")) {
        printf("duet %s%s%s%s\n", DUET_VERSION, DUET_GIT_COMMIT[0] ? " (" : "", DUET_GIT_COMMIT,
               DUET_GIT_COMMIT[0] ? ")" : "");
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (commands[i].fn && same_name(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "duet: unknown command '%s' (duet help lists them)\n", argv[1]);
    return 2;
}

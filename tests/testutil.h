/* Helpers shared by the Criterion tests: fixture paths, file slurping, and
 * running the duet binary. */
#ifndef DUET_TESTUTIL_H
#define DUET_TESTUTIL_H

#include <stddef.h>

#include "duet/model.h"
#include "duet/sample.h"

/* 1 in an ASan build: sanitizer builds run 10-50x slower, so the heaviest
 * tests use smaller sizes there (the release build runs the full sizes). */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* "<shared data>/<rel>" in a static buffer (one per call site is enough). */
const char *tu_data(const char *rel, char *buf, size_t cap);
/* Reads a whole file; *len gets its size. NULL if it cannot be read. Free with free(). */
void *tu_slurp(const char *path, size_t *len);
/* Runs `DUET_BIN args...` through the shell; returns its exit status, stdout
 * captured into *out (malloc'd, may be NULL) if out is non-NULL. */
int tu_run_duet(const char *args, char **out);

/* A model of the fixtures (rel under the shared data) or at a path, one
 * thread; the test fails with the loader's message if it cannot be loaded. */
duet_model *tu_load_ref(const char *rel);
duet_model *tu_load_path(const char *path);
/* A greedy (temperature 0) sampler of n_vocab ids. */
duet_sampler *tu_greedy(int n_vocab);

#endif

/* Helpers shared by the Criterion tests: fixture paths, file slurping, and
 * running the duet binary. */
#ifndef DUET_TESTUTIL_H
#define DUET_TESTUTIL_H

#include <stddef.h>

/* "<shared data>/<rel>" in a static buffer (one per call site is enough). */
const char *tu_data(const char *rel, char *buf, size_t cap);
/* Reads a whole file; *len gets its size. NULL if it cannot be read. Free with free(). */
void *tu_slurp(const char *path, size_t *len);
/* Runs `DUET_BIN args...` through the shell; returns its exit status, stdout
 * captured into *out (malloc'd, may be NULL) if out is non-NULL. */
int tu_run_duet(const char *args, char **out);

#endif

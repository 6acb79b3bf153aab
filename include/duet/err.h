/* duet — error reporting shared by every module.
 *
 * Library functions return a status (0 ok, negative DUET_E*) and, when given a
 * non-NULL duet_err, fill it with one line that names the file, field or
 * request at fault. Nothing in the library prints or exits on bad input. */
#ifndef DUET_ERR_H
#define DUET_ERR_H

#include "duet/api.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    DUET_OK = 0,
    DUET_EINVAL = -1,       /* bad argument from the caller */
    DUET_EIO = -2,          /* open/read/write/mmap failed */
    DUET_ENOMEM = -3,       /* allocation failed */
    DUET_EFORMAT = -4,      /* malformed file or request data */
    DUET_EUNSUPPORTED = -5, /* well-formed but not supported (type, arch, ...) */
    DUET_ENOTFOUND = -6,    /* key / tensor / token absent */
    DUET_ERANGE = -7,       /* out of range: context full, id >= n_vocab, ... */
};

typedef struct duet_err {
    int code;
    char msg[512];
} duet_err;

/* Writes a printf-style message into e (if e is non-NULL) and returns code,
 * so callers can write `return duet_err_set(err, DUET_EFORMAT, "...", ...)`. */
DUET_API int duet_err_set(duet_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "context: " to an existing message (e.g. the file name). */
DUET_API void duet_err_prefix(duet_err *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif
#endif

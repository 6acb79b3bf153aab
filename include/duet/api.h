/* duet — the export macro of the public API.
 *
 * The library is compiled with hidden visibility: only declarations marked
 * DUET_API are exported from a shared build, so internal helpers (src/) stay
 * private and can change freely. */
#ifndef DUET_API_H
#define DUET_API_H

#if defined(__GNUC__) || defined(__clang__)
#define DUET_API __attribute__((visibility("default")))
#else
#define DUET_API
#endif

#endif

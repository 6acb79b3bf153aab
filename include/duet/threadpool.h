/* duet — a persistent thread pool.
 *
 * Workers are created once (`-t N`) and reused for every parallel region: no
 * thread is created per token. Between regions a worker spins briefly, then
 * blocks on a futex/condvar, so a competing CPU load degrades decode
 * gracefully instead of collapsing it. */
#ifndef DUET_THREADPOOL_H
#define DUET_THREADPOOL_H

#include "duet/api.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct duet_pool duet_pool;

/* fn runs once for each ith in [0, nth), nth = the pool size. The caller's
 * thread runs ith = 0; an ith whose worker has not picked it up by the time
 * the caller is done is run by the caller too (a descheduled worker delays
 * nobody), so tasks must not wait for one another inside fn. */
typedef void (*duet_task_fn)(void *ctx, int ith, int nth);

DUET_API duet_pool *duet_pool_new(int n_threads); /* n_threads <= 0: number of CPUs */
DUET_API void duet_pool_free(duet_pool *p);       /* NULL is a no-op */
DUET_API int duet_pool_size(const duet_pool *p);  /* NULL pool: 1 */
/* Runs fn on every thread and returns when all have finished. A NULL pool
 * runs fn(ctx, 0, 1) on the caller. */
DUET_API void duet_pool_run(duet_pool *p, duet_task_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif

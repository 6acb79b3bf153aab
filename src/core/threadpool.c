/* A persistent thread pool with a spin-then-futex handoff.
 *
 * duet_pool_run publishes a task by bumping a generation counter; workers spin
 * on it for a short while (decode issues hundreds of runs per token, a few µs
 * apart) and then sleep on a futex, so a competing CPU load finds idle cores
 * instead of busy-waiting threads.
 *
 * The thread indices of a run are slots that threads claim: the caller runs
 * ith = 0, workers claim 1..nth-1, and when the caller is done with its own
 * slot it also runs any slot no worker has claimed yet. So a worker that is
 * descheduled (another process holds its core) delays nobody: fn(ctx, ith, nth)
 * still runs exactly once per ith, possibly several on one thread one after the
 * other -- tasks must not wait for each other inside fn (no barriers).
 *
 * Lost wake-ups are excluded by the usual futex protocol: a sleeper first
 * announces itself (n_sleeping / caller_sleeping, seq_cst), then re-checks the
 * word inside FUTEX_WAIT; a waker first changes the word (seq_cst), then reads
 * the announcement. One of the two always sees the other. */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/scratch.h"
#include "duet/threadpool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* How long a waiting thread spins before it sleeps. Long enough to bridge the
 * gap between two matmuls of one token, short enough to yield the core soon
 * when the model is idle or another process needs it. */
#define SPIN_NS 80000
#define MAX_THREADS 512

struct duet_pool {
    int n_threads;
    pthread_t *threads;          /* (n_threads - 1) workers */
    pthread_mutex_t run_lock;    /* one duet_pool_run at a time per pool */

    _Atomic uint32_t generation; /* bumped once per run (futex word of the workers) */
    _Atomic uint64_t claim;      /* generation << 32 | next unclaimed slot */
    _Atomic uint32_t done;       /* slots >= 1 finished in this run (futex word of the caller) */
    _Atomic int n_sleeping;      /* workers blocked on generation */
    _Atomic int caller_sleeping; /* caller blocked on done */
    _Atomic int stop;

    duet_task_fn fn;             /* written before generation is bumped */
    void *ctx;
};

/* Set in worker threads and during a run on the caller: a nested
 * duet_pool_run would deadlock, so it runs serially instead. */
static _Thread_local int tls_in_pool;

static long futex_wait(_Atomic uint32_t *word, uint32_t expected) {
    return syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *word) {
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Spins until *word != old or SPIN_NS pass; returns the last value read. */
static uint32_t spin_while_equal(_Atomic uint32_t *word, uint32_t old) {
    uint32_t v = atomic_load_explicit(word, memory_order_acquire);
    if (v != old) return v;
    uint64_t t0 = now_ns();
    for (unsigned i = 1;; i++) {
        cpu_relax();
        v = atomic_load_explicit(word, memory_order_acquire);
        if (v != old) return v;
        if ((i & 31) == 0) {
            if (now_ns() - t0 > SPIN_NS) return v;
            /* Lets a descheduled pool thread (or another process) have this
             * core when there are more runnable threads than cores. */
            sched_yield();
        }
    }
}

/* Claims and runs slots of run `gen` until none is left (or the run is over). */
static void run_slots(duet_pool *p, uint32_t gen) {
    const uint32_t nth = (uint32_t)p->n_threads;
    for (;;) {
        uint64_t c = atomic_load(&p->claim);
        do {
            if ((uint32_t)(c >> 32) != gen || (uint32_t)c >= nth) return;
        } while (!atomic_compare_exchange_weak(&p->claim, &c, c + 1));
        /* The run cannot complete before this slot does, so fn and ctx are its own. */
        p->fn(p->ctx, (int)(uint32_t)c, (int)nth);
        if (atomic_fetch_add(&p->done, 1) + 1 == nth - 1 && atomic_load(&p->caller_sleeping))
            futex_wake_all(&p->done);
    }
}

static void *worker_main(void *argp) {
    duet_pool *p = argp;
    tls_in_pool = 1;
    /* Not the current value: a worker scheduled late must still see the runs
     * published before it first looked. The counter starts at 0. */
    uint32_t seen = 0;
    for (;;) {
        uint32_t g = spin_while_equal(&p->generation, seen);
        while (g == seen) {
            atomic_fetch_add(&p->n_sleeping, 1);
            futex_wait(&p->generation, seen); /* returns at once if it changed */
            atomic_fetch_sub(&p->n_sleeping, 1);
            g = atomic_load(&p->generation);
        }
        seen = g;
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        run_slots(p, g);
    }
    return NULL;
}

/* Publishes run `gen` (its slots from `first_slot`) and wakes sleeping workers. */
static void publish(duet_pool *p, uint32_t gen, uint32_t first_slot) {
    atomic_store(&p->claim, ((uint64_t)gen << 32) | first_slot);
    atomic_store(&p->generation, gen); /* seq_cst: ordered before the load below */
    if (atomic_load(&p->n_sleeping) > 0) futex_wake_all(&p->generation);
}

static void stop_workers(duet_pool *p, int n_started) {
    atomic_store(&p->stop, 1);
    publish(p, atomic_load(&p->generation) + 1, (uint32_t)p->n_threads);
    for (int i = 0; i < n_started; i++) pthread_join(p->threads[i], NULL);
}

duet_pool *duet_pool_new(int n_threads) {
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    duet_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->run_lock, NULL);
    if (n_threads == 1) return p;
    p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
    if (!p->threads) {
        pthread_mutex_destroy(&p->run_lock);
        free(p);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        if (pthread_create(&p->threads[i - 1], NULL, worker_main, p) != 0) {
            stop_workers(p, i - 1);
            free(p->threads);
            pthread_mutex_destroy(&p->run_lock);
            free(p);
            return NULL;
        }
    }
    return p;
}

void duet_pool_free(duet_pool *p) {
    if (!p) return;
    if (p->n_threads > 1) stop_workers(p, p->n_threads - 1);
    free(p->threads);
    pthread_mutex_destroy(&p->run_lock);
    free(p);
}

int duet_pool_size(const duet_pool *p) { return p ? p->n_threads : 1; }

void duet_pool_run(duet_pool *p, duet_task_fn fn, void *ctx) {
    if (!p || p->n_threads == 1 || tls_in_pool) {
        fn(ctx, 0, 1);
        return;
    }
    pthread_mutex_lock(&p->run_lock);
    tls_in_pool = 1;
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    const uint32_t gen = atomic_load_explicit(&p->generation, memory_order_relaxed) + 1;
    publish(p, gen, 1); /* seq_cst: fn, ctx and done are visible to whoever sees it */

    fn(ctx, 0, p->n_threads);
    run_slots(p, gen); /* slots no worker has claimed yet */

    const uint32_t all = (uint32_t)p->n_threads - 1;
    for (;;) {
        const uint32_t d = atomic_load(&p->done);
        if (d == all) break;
        if (spin_while_equal(&p->done, d) != d) continue; /* progress: keep spinning */
        atomic_store(&p->caller_sleeping, 1);
        if (atomic_load(&p->done) == d) futex_wait(&p->done, d);
        atomic_store(&p->caller_sleeping, 0);
    }
    tls_in_pool = 0;
    pthread_mutex_unlock(&p->run_lock);
}

/* ---- per-thread scratch buffers (core/scratch.h) ---- */

typedef struct {
    void *buf[DUET_SCRATCH_SLOTS];
    size_t cap[DUET_SCRATCH_SLOTS];
} scratch_set;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *v) {
    scratch_set *s = v;
    for (int i = 0; i < DUET_SCRATCH_SLOTS; i++) free(s->buf[i]);
    free(s);
}

static void scratch_init(void) { pthread_key_create(&scratch_key, scratch_free); }

void *duet_scratch(int slot, size_t bytes) {
    if (slot < 0 || slot >= DUET_SCRATCH_SLOTS) return NULL;
    pthread_once(&scratch_once, scratch_init);
    scratch_set *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return NULL;
        if (pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            return NULL;
        }
    }
    if (bytes == 0) bytes = 64;
    if (s->cap[slot] < bytes) {
        size_t cap = bytes + bytes / 4;
        cap = (cap + 63) & ~(size_t)63;
        void *nb = NULL;
        if (posix_memalign(&nb, 64, cap) != 0) return NULL;
        free(s->buf[slot]);
        s->buf[slot] = nb;
        s->cap[slot] = cap;
    }
    return s->buf[slot];
}

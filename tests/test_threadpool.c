/* duet_pool: every thread index runs exactly once per duet_pool_run, runs
 * never overlap, no wake-up is lost whether workers are spinning or asleep on
 * the futex, and the caller takes over the slots of workers that do not show
 * up. A hang (lost wake-up) is turned into a failure by an alarm. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdint.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "core/scratch.h"
#include "duet/threadpool.h"

#define MAX_T 8

typedef struct {
    _Atomic int calls[MAX_T];
    _Atomic int nth_seen;
    _Atomic int bad_nth;
    _Atomic long sum;
    int sleep_us; /* > 0: slot 1 sleeps, so the caller has to block */
    int spin_us;  /* > 0: every slot busy-waits this long, so workers get to claim slots */
    pthread_t caller;
    _Atomic int on_worker; /* slots that ran on a thread other than the caller */
} count_ctx;

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

static void count_task(void *vctx, int ith, int nth) {
    count_ctx *c = vctx;
    if (ith < 0 || ith >= MAX_T || nth != atomic_load(&c->nth_seen)) {
        atomic_fetch_add(&c->bad_nth, 1);
        return;
    }
    atomic_fetch_add(&c->calls[ith], 1);
    atomic_fetch_add(&c->sum, ith + 1);
    if (c->sleep_us > 0 && ith == 1) usleep((useconds_t)c->sleep_us);
    if (c->spin_us > 0) {
        const double t0 = now_us();
        while (now_us() - t0 < c->spin_us) {
        }
    }
    if (!pthread_equal(pthread_self(), c->caller)) atomic_fetch_add(&c->on_worker, 1);
}

static void setup_alarm(void) { alarm(60); }

/* Returns how many slots ran on workers. */
static int check_runs_spin(duet_pool *p, int n_runs, int gap_us, int task_sleep_us, int spin_us) {
    int nth = duet_pool_size(p);
    count_ctx c = {0};
    atomic_store(&c.nth_seen, nth);
    c.sleep_us = task_sleep_us;
    c.spin_us = spin_us;
    c.caller = pthread_self();
    for (int r = 0; r < n_runs; r++) {
        duet_pool_run(p, count_task, &c);
        /* After each run every index must have been called exactly r + 1 times:
         * the run is complete when duet_pool_run returns. */
        for (int i = 0; i < nth; i++)
            cr_assert_eq(atomic_load(&c.calls[i]), r + 1, "run %d: thread %d called %d times", r, i,
                         atomic_load(&c.calls[i]));
        if (gap_us > 0) usleep((useconds_t)(gap_us + (r % 3) * 37));
    }
    cr_assert_eq(atomic_load(&c.bad_nth), 0);
    for (int i = nth; i < MAX_T; i++) cr_assert_eq(atomic_load(&c.calls[i]), 0);
    cr_assert_eq(atomic_load(&c.sum), (long)n_runs * nth * (nth + 1) / 2);
    return atomic_load(&c.on_worker);
}

static void check_runs(duet_pool *p, int n_runs, int gap_us, int task_sleep_us) {
    check_runs_spin(p, n_runs, gap_us, task_sleep_us, 0);
}

Test(threadpool, null_pool_runs_on_caller, .init = setup_alarm) {
    cr_assert_eq(duet_pool_size(NULL), 1);
    check_runs(NULL, 10, 0, 0);
    duet_pool_free(NULL);
}

Test(threadpool, sizes_one_to_four_many_runs, .init = setup_alarm) {
    for (int n = 1; n <= 4; n++) {
        duet_pool *p = duet_pool_new(n);
        cr_assert_not_null(p);
        cr_assert_eq(duet_pool_size(p), n);
        check_runs(p, 5000, 0, 0);
        check_runs_spin(p, 200, 0, 0, 20); /* slots long enough for workers to claim some */
        duet_pool_free(p);
    }
}

Test(threadpool, default_size_is_cpu_count, .init = setup_alarm) {
    duet_pool *p = duet_pool_new(0);
    cr_assert_not_null(p);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cr_assert_eq(duet_pool_size(p), ncpu > 0 ? (int)ncpu : 1);
    check_runs(p, 100, 0, 0);
    duet_pool_free(p);
}

/* Gaps longer than the spin window put workers to sleep on the futex before
 * each run; gaps around the window's length race the sleep against the wake. */
Test(threadpool, no_lost_wakeup_across_sleep, .init = setup_alarm) {
    for (int n = 2; n <= 4; n++) {
        duet_pool *p = duet_pool_new(n);
        cr_assert_not_null(p);
        check_runs(p, 150, 200, 0);  /* workers asleep */
        check_runs(p, 300, 70, 0);   /* around the spin window */
        check_runs(p, 2000, 3, 0);   /* still spinning */
        check_runs_spin(p, 300, 150, 0, 20); /* asleep, then real work */
        duet_pool_free(p);
    }
}

/* A slow worker makes the caller go to sleep waiting for completion. */
Test(threadpool, caller_waits_for_slow_worker, .init = setup_alarm) {
    duet_pool *p = duet_pool_new(3);
    cr_assert_not_null(p);
    check_runs(p, 40, 0, 300);
    check_runs(p, 200, 0, 60);
    duet_pool_free(p);
}

/* Create/free cycles: workers must exit whether they are spinning or asleep. */
Test(threadpool, create_free_cycles, .init = setup_alarm) {
    for (int i = 0; i < 50; i++) {
        duet_pool *p = duet_pool_new(1 + i % 4);
        cr_assert_not_null(p);
        if (i % 2) check_runs(p, 3, 0, 0);
        if (i % 5 == 0) usleep(300);
        duet_pool_free(p);
    }
}

typedef struct {
    pthread_t caller;
    _Atomic int worker_slot; /* a slot started on a worker in this run */
    _Atomic int timed_out;
} handoff_ctx;

/* Slot 0 holds the caller until a worker has started a slot (the caller only
 * takes over slots once its own is done), so workers must pick up work. */
static void handoff_task(void *vctx, int ith, int nth) {
    handoff_ctx *c = vctx;
    if (ith == 0) {
        const double t0 = now_us();
        while (!atomic_load(&c->worker_slot))
            if (now_us() - t0 > 5e6) {
                atomic_store(&c->timed_out, 1);
                break;
            }
    } else if (!pthread_equal(pthread_self(), c->caller)) {
        atomic_store(&c->worker_slot, 1);
    }
}

Test(threadpool, workers_take_slots, .init = setup_alarm) {
    for (int n = 2; n <= 4; n++) {
        duet_pool *p = duet_pool_new(n);
        for (int r = 0; r < 20; r++) {
            handoff_ctx c = {.caller = pthread_self()};
            duet_pool_run(p, handoff_task, &c);
            cr_assert_eq(atomic_load(&c.timed_out), 0, "pool of %d, run %d: no worker started a slot", n, r);
            if (r % 5 == 4) usleep(300); /* let the workers fall asleep now and then */
        }
        duet_pool_free(p);
    }
}

typedef struct {
    duet_pool *pool;
    _Atomic int inner_calls;
    _Atomic int inner_bad;
} nest_ctx;

static void inner_task(void *vctx, int ith, int nth) {
    nest_ctx *c = vctx;
    if (ith != 0 || nth != 1) atomic_fetch_add(&c->inner_bad, 1);
    atomic_fetch_add(&c->inner_calls, 1);
}

static void outer_task(void *vctx, int ith, int nth) {
    nest_ctx *c = vctx;
    duet_pool_run(c->pool, inner_task, c);
}

/* A run started from inside a task cannot wait on busy workers: it runs
 * serially on the calling thread. */
Test(threadpool, nested_run_is_serial, .init = setup_alarm) {
    duet_pool *p = duet_pool_new(3);
    nest_ctx c = {.pool = p};
    for (int r = 0; r < 100; r++) duet_pool_run(p, outer_task, &c);
    cr_assert_eq(atomic_load(&c.inner_calls), 300);
    cr_assert_eq(atomic_load(&c.inner_bad), 0);
    duet_pool_free(p);
}

typedef struct {
    duet_pool *pool;
    _Atomic int inside;  /* threads currently inside one run's task */
    _Atomic int overlap; /* a task saw the other caller's run in progress */
    _Atomic long total;
} shared_ctx;

static void excl_task(void *vctx, int ith, int nth) {
    shared_ctx *c = vctx;
    int v = atomic_fetch_add(&c->inside, 1);
    if (v >= nth) atomic_fetch_add(&c->overlap, 1);
    atomic_fetch_add(&c->total, 1);
    atomic_fetch_sub(&c->inside, 1);
}

static void *caller_thread(void *arg) {
    shared_ctx *c = arg;
    for (int r = 0; r < 3000; r++) duet_pool_run(c->pool, excl_task, c);
    return NULL;
}

/* Two threads sharing one pool: their runs are serialised, none is lost. */
Test(threadpool, concurrent_callers_are_serialised, .init = setup_alarm) {
    duet_pool *p = duet_pool_new(2);
    shared_ctx c = {.pool = p};
    pthread_t a, b;
    pthread_create(&a, NULL, caller_thread, &c);
    pthread_create(&b, NULL, caller_thread, &c);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    cr_assert_eq(atomic_load(&c.total), 2L * 3000 * 2);
    cr_assert_eq(atomic_load(&c.overlap), 0);
    duet_pool_free(p);
}

static void scratch_task(void *vctx, int ith, int nth) {
    _Atomic int *bad = vctx;
    unsigned char *a = duet_scratch(DUET_SCRATCH_PACK_A, 1000);
    unsigned char *b = duet_scratch(DUET_SCRATCH_PACK_B, 100000);
    if (!a || !b || ((uintptr_t)a & 63) || ((uintptr_t)b & 63) || a == b) {
        atomic_fetch_add(bad, 1);
        return;
    }
    for (int i = 0; i < 1000; i++) a[i] = (unsigned char)ith;
    for (int i = 0; i < 100000; i++) b[i] = (unsigned char)(ith + 1);
    for (int i = 0; i < 1000; i++)
        if (a[i] != (unsigned char)ith) atomic_fetch_add(bad, 1);
}

/* Scratch buffers are per thread, aligned and distinct per slot. */
Test(threadpool, scratch_is_per_thread, .init = setup_alarm) {
    duet_pool *p = duet_pool_new(4);
    _Atomic int bad = 0;
    for (int r = 0; r < 50; r++) duet_pool_run(p, scratch_task, &bad);
    cr_assert_eq(atomic_load(&bad), 0);
    cr_assert_null(duet_scratch(DUET_SCRATCH_SLOTS, 10));
    duet_pool_free(p);
}

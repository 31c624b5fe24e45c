// The fixed thread pool: persistent pthreads started once, woken per hp_parallel_for, tasks handed out by an
// atomic counter. Which thread runs a task never changes a result (tasks write disjoint outputs).
#include "hp_internal.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define HP_MAX_THREADS 256

typedef struct {
    int n;                       // threads in all, the caller included
    pthread_t th[HP_MAX_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t cv_start, cv_done;
    _Atomic long gen;            // job generation; workers run when it changes
    int stop;
    hp_task_fn fn;
    void *ctx;
    long n_tasks;
    _Atomic long next;
    _Atomic int busy;            // workers still in the current job
} pool_t;

static pool_t g_pool = {.n = 0, .mu = PTHREAD_MUTEX_INITIALIZER, .cv_start = PTHREAD_COND_INITIALIZER,
                        .cv_done = PTHREAD_COND_INITIALIZER};
static pthread_mutex_t g_call_mu = PTHREAD_MUTEX_INITIALIZER;  // one job at a time
static pthread_mutex_t g_init_mu = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local int tl_in_pool;

static void run_tasks(pool_t *p, int thread) {
    for (;;) {
        long t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (t >= p->n_tasks) break;
        p->fn(p->ctx, t, thread);
    }
}

typedef struct { pool_t *p; int idx; long gen; } worker_arg;

static void *worker_main(void *arg) {
    worker_arg wa = *(worker_arg *)arg;
    free(arg);
    pool_t *p = wa.p;
    tl_in_pool = 1;
    long seen = wa.gen;  // captured at creation, so a job posted before we run is not missed
    for (;;) {
        // Spin briefly (the next job usually follows at once), then sleep on the condition variable.
        long g = seen;
        for (int spin = 0; spin < 4000; spin++) {
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
            if (g != seen) break;
#if HP_X86
            __builtin_ia32_pause();
#endif
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->gen) == seen && !p->stop) pthread_cond_wait(&p->cv_start, &p->mu);
            g = atomic_load(&p->gen);
            int stop = p->stop;
            pthread_mutex_unlock(&p->mu);
            if (stop) { hp_release_thread_buffers(); return NULL; }
        }
        seen = g;
        if (p->stop) { hp_release_thread_buffers(); return NULL; }
        run_tasks(p, wa.idx);
        if (atomic_fetch_sub_explicit(&p->busy, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

static void pool_stop(pool_t *p) {
    if (p->n <= 1) { p->n = 0; return; }
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->cv_start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->th[i], NULL);
    p->stop = 0;
    p->n = 0;
}

int hp_threads_init(int n) {
    if (n <= 0) {
        // HPRUNE_THREADS (a positive integer) sets the default, e.g. one thread per data-parallel rank.
        const char *env = getenv("HPRUNE_THREADS");
        long e = env ? strtol(env, NULL, 10) : 0;
        long c = e > 0 ? e : sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    if (n > HP_MAX_THREADS) n = HP_MAX_THREADS;
    pthread_mutex_lock(&g_init_mu);
    pthread_mutex_lock(&g_call_mu);
    pool_stop(&g_pool);
    g_pool.n = 1;
    for (int i = 1; i < n; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) break;
        wa->p = &g_pool;
        wa->idx = i;
        wa->gen = atomic_load(&g_pool.gen);
        if (pthread_create(&g_pool.th[i], NULL, worker_main, wa) != 0) { free(wa); break; }
        g_pool.n = i + 1;
    }
    int got = g_pool.n;
    pthread_mutex_unlock(&g_call_mu);
    pthread_mutex_unlock(&g_init_mu);
    return got;
}

static void ensure_init(void) {
    if (__atomic_load_n(&g_pool.n, __ATOMIC_ACQUIRE) == 0) {
        pthread_mutex_lock(&g_init_mu);
        int n = g_pool.n;
        pthread_mutex_unlock(&g_init_mu);
        if (n == 0) hp_threads_init(0);
    }
}

int hp_threads_count(void) {
    ensure_init();
    return g_pool.n;
}

void hp_parallel_for(long n_tasks, hp_task_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    ensure_init();
    pool_t *p = &g_pool;
    if (n_tasks == 1 || p->n <= 1 || tl_in_pool || pthread_mutex_trylock(&g_call_mu) != 0) {
        for (long t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store(&p->next, 0);
    atomic_store(&p->busy, p->n - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv_start);
    pthread_mutex_unlock(&p->mu);
    tl_in_pool = 1;
    run_tasks(p, 0);
    tl_in_pool = 0;
    // Wait for the workers: spin a little, then sleep.
    for (int spin = 0; spin < 4000 && atomic_load_explicit(&p->busy, memory_order_acquire) > 0; spin++) {
#if HP_X86
        __builtin_ia32_pause();
#endif
    }
    if (atomic_load(&p->busy) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->busy) > 0) pthread_cond_wait(&p->cv_done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&g_call_mu);
}

// ── per-thread scratch ───────────────────────────────────────────────────────────────────────────────────
static _Thread_local struct { void *p; size_t n; } tl_scratch[4];

void *hp_scratch(int slot, size_t bytes) {
    if (slot < 0 || slot > 3) return NULL;
    if (tl_scratch[slot].n >= bytes && tl_scratch[slot].p) return tl_scratch[slot].p;
    free(tl_scratch[slot].p);
    size_t n = HP_ROUND_UP(bytes + 64, (size_t)4096);
    tl_scratch[slot].p = aligned_alloc(64, n);
    tl_scratch[slot].n = tl_scratch[slot].p ? n : 0;
    return tl_scratch[slot].p;
}

void hp_release_thread_buffers(void) {
    for (int i = 0; i < 4; i++) {
        free(tl_scratch[i].p);
        tl_scratch[i].p = NULL;
        tl_scratch[i].n = 0;
    }
}

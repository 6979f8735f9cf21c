/* A persistent pool. A job is published by bumping an atomic generation; workers spin on it for
 * a while (decode dispatches hundreds of short jobs per token, and a futex wake-up per job
 * would cost more than the work), then sleep on a condition variable. Task indices are claimed
 * from an atomic counter, so uneven tasks balance themselves; the caller works too and then
 * spins until every worker has finished.
 *
 * Threads can be created in groups (one per NUMA node), each pinned to its group's CPUs. A
 * grouped job gives every group its own range of tasks and its own counter: a node's threads
 * only ever run the tasks over its own memory, and no counter cache line crosses nodes.
 * Threads of an ungrouped pool run on every CPU the process may use, not just on those of a
 * caller that a grouped pool has pinned (new threads would otherwise inherit its mask). */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "pool.h"

#define SPIN_ROUNDS 20000 /* ~ 0.1-1 ms of polling before a worker sleeps */
#define CALLER_SPIN_ROUNDS 2000 /* then the caller yields: a descheduled worker needs the core */

/* One group's task range of the current job, on its own cache line. */
typedef struct {
    _Alignas(64) atomic_int_fast64_t next_task;
    int64_t end_task;
} group_tasks;

struct thread_pool {
    int n_threads; /* including the caller */
    pthread_t *workers;
    int n_groups;
    int *group_of; /* [n_threads] */
    int group_first_thread[POOL_MAX_GROUPS + 1];
    bool pinned_caller; /* the creating thread's CPUs were narrowed: given back by thread_pool_free */
    pthread_t caller;
    cpu_set_t caller_cpus;
    group_tasks groups[POOL_MAX_GROUPS];
    /* the current job */
    pool_task_fn fn;
    void *ctx;
    bool grouped; /* each group drains its own range; otherwise everyone drains groups[0] */
    atomic_int busy_workers;
    /* publication */
    atomic_uint_fast64_t generation;
    atomic_bool stopping;
    atomic_int sleepers;
    pthread_mutex_t lock;
    pthread_cond_t wake;
};

typedef struct {
    thread_pool *pool;
    int index;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void drain_tasks(thread_pool *pool, int thread) {
    group_tasks *g = &pool->groups[pool->grouped ? pool->group_of[thread] : 0];
    for (;;) {
        int64_t task = atomic_fetch_add_explicit(&g->next_task, 1, memory_order_relaxed);
        if (task >= g->end_task) return;
        pool->fn(pool->ctx, task, thread);
    }
}

/* Waits until the generation moves past seen (or the pool stops); returns the new one. */
static uint64_t wait_for_job(thread_pool *pool, uint64_t seen) {
    for (int spin = 0; spin < SPIN_ROUNDS; spin++) {
        uint64_t g = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (g != seen || atomic_load(&pool->stopping)) return g;
        cpu_relax();
    }
    pthread_mutex_lock(&pool->lock);
    atomic_fetch_add(&pool->sleepers, 1);
    uint64_t g;
    while ((g = atomic_load(&pool->generation)) == seen && !atomic_load(&pool->stopping))
        pthread_cond_wait(&pool->wake, &pool->lock);
    atomic_fetch_sub(&pool->sleepers, 1);
    pthread_mutex_unlock(&pool->lock);
    return g;
}

static void *worker_main(void *p) {
    worker_arg *arg = p;
    thread_pool *pool = arg->pool;
    int index = arg->index;
    free(arg);
    uint64_t seen = 0;
    for (;;) {
        seen = wait_for_job(pool, seen);
        if (atomic_load(&pool->stopping)) break;
        drain_tasks(pool, index);
        atomic_fetch_sub_explicit(&pool->busy_workers, 1, memory_order_release);
    }
    return NULL;
}

/* Linux has no process-wide CPU mask, only one per thread: the main thread's is read before
 * main, when nothing (no grouped pool) can have narrowed it yet. Written once, then only read. */
static cpu_set_t process_cpus;
static bool have_process_cpus;

__attribute__((constructor)) static void read_process_cpus(void) {
    have_process_cpus = sched_getaffinity(0, sizeof process_cpus, &process_cpus) == 0 && CPU_COUNT(&process_cpus) > 0;
}

void pool_process_cpus(cpu_set_t *cpus) {
    if (have_process_cpus) {
        *cpus = process_cpus;
        return;
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    CPU_ZERO(cpus);
    for (long c = 0; c < (online > 0 ? online : 1) && c < CPU_SETSIZE; c++) CPU_SET((int)c, cpus);
}

int pool_process_cpu_count(void) {
    cpu_set_t cpus;
    pool_process_cpus(&cpus);
    return CPU_COUNT(&cpus);
}

thread_pool *thread_pool_new(int n_threads) {
    if (n_threads <= 0) n_threads = pool_process_cpu_count();
    return thread_pool_new_groups(1, &n_threads, NULL);
}

/* Starts worker `index` on `cpus`; NULL: where the caller runs (it inherits the caller's mask).
 * An ungrouped pool's workers get the process's CPUs when the caller runs on fewer; should the
 * kernel refuse that set (a cpuset shrunk since the start), they stay with the caller's. */
static int start_worker(thread_pool *pool, int index, const cpu_set_t *cpus) {
    cpu_set_t caller_now, wide;
    if (!cpus) {
        pool_process_cpus(&wide);
        if (pthread_getaffinity_np(pthread_self(), sizeof caller_now, &caller_now) == 0 &&
            !CPU_EQUAL(&caller_now, &wide))
            cpus = &wide;
    }
    worker_arg *arg = malloc(sizeof *arg);
    if (!arg) return ENOMEM;
    *arg = (worker_arg){pool, index};
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (cpus) pthread_attr_setaffinity_np(&attr, sizeof(cpu_set_t), cpus);
    int rc = pthread_create(&pool->workers[index], &attr, worker_main, arg);
    pthread_attr_destroy(&attr);
    if (rc == EINVAL && cpus == &wide) rc = pthread_create(&pool->workers[index], NULL, worker_main, arg);
    if (rc) free(arg);
    return rc;
}

thread_pool *thread_pool_new_groups(int n_groups, const int *threads_per_group, const cpu_set_t *group_cpus) {
    if (n_groups < 1 || n_groups > POOL_MAX_GROUPS) return NULL;
    int n_threads = 0;
    for (int g = 0; g < n_groups; g++) {
        if (threads_per_group[g] < 1) return NULL;
        n_threads += threads_per_group[g];
    }
    thread_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pool->n_threads = 1; /* the threads that exist: thread_pool_free joins the workers counted here */
    pool->n_groups = n_groups;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pool->workers = calloc((size_t)n_threads, sizeof *pool->workers);
    pool->group_of = calloc((size_t)n_threads, sizeof *pool->group_of);
    if (!pool->workers || !pool->group_of) {
        thread_pool_free(pool);
        return NULL;
    }
    for (int g = 0, t = 0; g < n_groups; g++) {
        pool->group_first_thread[g] = t;
        for (int i = 0; i < threads_per_group[g]; i++) pool->group_of[t++] = g;
    }
    pool->group_first_thread[n_groups] = n_threads;
    /* the caller is thread 0 of group 0: it runs on that group's CPUs from now on */
    pool->caller = pthread_self();
    if (group_cpus && pthread_getaffinity_np(pool->caller, sizeof pool->caller_cpus, &pool->caller_cpus) == 0)
        pool->pinned_caller = pthread_setaffinity_np(pool->caller, sizeof(cpu_set_t), &group_cpus[0]) == 0;
    for (int i = 1; i < n_threads; i++) {
        if (start_worker(pool, i, group_cpus ? &group_cpus[pool->group_of[i]] : NULL)) {
            thread_pool_free(pool); /* stops the ones we have: groups must be whole */
            return NULL;
        }
        pool->n_threads = i + 1;
    }
    return pool;
}

void thread_pool_free(thread_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->lock);
    atomic_store(&pool->stopping, true);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 1; i < pool->n_threads; i++) pthread_join(pool->workers[i], NULL);
    if (pool->pinned_caller) pthread_setaffinity_np(pool->caller, sizeof pool->caller_cpus, &pool->caller_cpus);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->wake);
    free(pool->workers);
    free(pool->group_of);
    free(pool);
}

int thread_pool_size(const thread_pool *pool) { return pool->n_threads; }
int thread_pool_groups(const thread_pool *pool) { return pool->n_groups; }
int thread_pool_group_size(const thread_pool *pool, int group) {
    return pool->group_first_thread[group + 1] - pool->group_first_thread[group];
}

/* Publishes the job set up in pool->groups, works on it, and waits for every worker. */
static void run_job(thread_pool *pool, pool_task_fn fn, void *ctx, bool grouped) {
    pool->fn = fn;
    pool->ctx = ctx;
    pool->grouped = grouped;
    atomic_store_explicit(&pool->busy_workers, pool->n_threads - 1, memory_order_relaxed);
    atomic_fetch_add(&pool->generation, 1); /* seq_cst: pairs with a sleeper's sleepers++ then load */
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->lock);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
    }
    drain_tasks(pool, 0);
    /* every worker must have left drain_tasks before the job's fields are reused */
    for (int spin = 0; atomic_load_explicit(&pool->busy_workers, memory_order_acquire) > 0; spin++)
        if (spin < CALLER_SPIN_ROUNDS) cpu_relax();
        else sched_yield();
}

void thread_pool_run(thread_pool *pool, pool_task_fn fn, void *ctx, int64_t n_tasks) {
    if (n_tasks <= 0) return;
    if (pool->n_threads == 1 || n_tasks == 1) {
        for (int64_t t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    atomic_store_explicit(&pool->groups[0].next_task, 0, memory_order_relaxed);
    pool->groups[0].end_task = n_tasks;
    run_job(pool, fn, ctx, false);
}

void thread_pool_run_groups(thread_pool *pool, pool_task_fn fn, void *ctx, const int64_t *tasks_per_group) {
    if (pool->n_groups == 1) {
        thread_pool_run(pool, fn, ctx, tasks_per_group[0]);
        return;
    }
    int64_t first = 0;
    for (int g = 0; g < pool->n_groups; g++) {
        atomic_store_explicit(&pool->groups[g].next_task, first, memory_order_relaxed);
        first += tasks_per_group[g] > 0 ? tasks_per_group[g] : 0;
        pool->groups[g].end_task = first;
    }
    if (first > 0) run_job(pool, fn, ctx, true);
}

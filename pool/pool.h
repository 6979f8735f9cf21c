/* pool/: the thread pool both convert/ and runtime/ run their work on, and the CPU sets it pins
 * threads to. The bottom layer beside simd/: it includes nothing of the project. */
#ifndef GROK2_POOL_H
#define GROK2_POOL_H

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>

/* Created once; run() hands out task indices 0..n_tasks-1 to the workers and the caller and
 * returns when all are done. Tasks are described by plain structs passed as ctx; `thread`
 * (0 = the caller) indexes per-thread scratch. */
typedef struct thread_pool thread_pool;
typedef void (*pool_task_fn)(void *ctx, int64_t task, int thread);
/* n_threads counts the caller; <= 0: one per CPU this process may use. NULL if a thread cannot
 * be had. Its workers run on every CPU this process may use (pool_process_cpus), whatever the
 * calling thread is pinned to. */
thread_pool *thread_pool_new(int n_threads);
void thread_pool_free(thread_pool *pool);
int thread_pool_size(const thread_pool *pool);
void thread_pool_run(thread_pool *pool, pool_task_fn fn, void *ctx, int64_t n_tasks);
/* Threads in groups (one per NUMA node): threads_per_group[g] >= 1 threads each, pinned to
 * group_cpus[g] when group_cpus is not NULL (the caller, thread 0 of group 0, too). Thread
 * indices are group-major. NULL if a thread cannot be had. The caller stays on group 0's CPUs
 * until thread_pool_free gives its own back. */
#define POOL_MAX_GROUPS 16
thread_pool *thread_pool_new_groups(int n_groups, const int *threads_per_group, const cpu_set_t *group_cpus);
int thread_pool_groups(const thread_pool *pool);
int thread_pool_group_size(const thread_pool *pool, int group);
/* A grouped job: group g's threads run only its group_tasks[g] tasks, which are numbered after
 * those of groups 0..g-1. */
void thread_pool_run_groups(thread_pool *pool, pool_task_fn fn, void *ctx, const int64_t *group_tasks);

/* The CPUs this process may use: the affinity its main thread started with (Linux keeps one
 * per thread, and a grouped pool narrows its caller's), or every online CPU where that cannot
 * be read. */
void pool_process_cpus(cpu_set_t *cpus);
int pool_process_cpu_count(void);

#endif

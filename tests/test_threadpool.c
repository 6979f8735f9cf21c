/* The thread pool: every task runs exactly once, job after job, whether the workers are
 * spinning or asleep when the job arrives. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <time.h>

#include "../pool/pool.h"

typedef struct {
    atomic_int *hits;
    int threads;
    atomic_int bad_thread;
} count_job;

static void count_task(void *p, int64_t task, int thread) {
    count_job *job = p;
    atomic_fetch_add(&job->hits[task], 1);
    if (thread < 0 || thread >= job->threads) atomic_store(&job->bad_thread, 1);
}

static void run_jobs(int threads, int jobs, int max_tasks, long pause_ns) {
    thread_pool *pool = thread_pool_new(threads);
    cr_assert(pool);
    cr_assert_eq(thread_pool_size(pool), threads);
    atomic_int *hits = calloc((size_t)max_tasks, sizeof *hits);
    for (int j = 0; j < jobs; j++) {
        int n = 1 + (j * 7919) % max_tasks;
        for (int i = 0; i < n; i++) atomic_store(&hits[i], 0);
        count_job job = {hits, threads, 0};
        thread_pool_run(pool, count_task, &job, n);
        for (int i = 0; i < n; i++) cr_assert_eq(atomic_load(&hits[i]), 1, "job %d task %d ran %d times", j, i, hits[i]);
        cr_assert_eq(atomic_load(&job.bad_thread), 0);
        if (pause_ns) nanosleep(&(struct timespec){0, pause_ns}, NULL);
    }
    free(hits);
    thread_pool_free(pool);
}

Test(threadpool, every_task_runs_once_in_many_back_to_back_jobs) {
    run_jobs(1, 200, 64, 0);
    run_jobs(2, 5000, 97, 0);
    run_jobs(4, 2000, 33, 0);
}

Test(threadpool, jobs_reach_workers_that_fell_asleep) {
    run_jobs(3, 6, 50, 60 * 1000 * 1000); /* 60 ms: longer than the spin phase */
}

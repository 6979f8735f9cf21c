/* A fixed pool of worker threads, created once per command: pool_run hands every thread the
 * same function and argument (a plain struct describing the work, which the threads split
 * among themselves) and returns when all have finished. The caller is thread 0. */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "convert.h"

struct thread_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t lock;
    pthread_cond_t start, done;
    uint64_t generation; /* bumped for every pool_run */
    int running;         /* workers still inside the current job */
    bool stop;
    void (*fn)(void *arg, int thread);
    void *arg;
};

typedef struct {
    thread_pool *pool;
    int index;
} worker_arg;

static void *worker_main(void *p) {
    worker_arg *w = p;
    thread_pool *pool = w->pool;
    int index = w->index;
    free(w);
    uint64_t seen = 0;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (!pool->stop && pool->generation == seen) pthread_cond_wait(&pool->start, &pool->lock);
        if (pool->stop) break;
        seen = pool->generation;
        void (*fn)(void *, int) = pool->fn;
        void *arg = pool->arg;
        pthread_mutex_unlock(&pool->lock);
        fn(arg, index);
        pthread_mutex_lock(&pool->lock);
        if (--pool->running == 0) pthread_cond_signal(&pool->done);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

int cpu_count(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

thread_pool *pool_new(int n_threads) {
    if (n_threads <= 0) n_threads = cpu_count();
    thread_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    p->n = 1;
    for (int i = 1; i < n_threads; i++) {
        worker_arg *w = malloc(sizeof *w);
        if (!w) break;
        *w = (worker_arg){p, i};
        if (pthread_create(&p->threads[i], NULL, worker_main, w) != 0) {
            free(w);
            break; /* fewer threads: still correct */
        }
        p->n++;
    }
    return p;
}

void pool_free(thread_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

int pool_size(const thread_pool *p) { return p->n; }

void pool_run(thread_pool *p, void (*fn)(void *arg, int thread), void *arg) {
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->arg = arg;
    p->running = p->n - 1;
    p->generation++;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->lock);
    fn(arg, 0);
    pthread_mutex_lock(&p->lock);
    while (p->running > 0) pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
}

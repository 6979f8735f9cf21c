/* NUMA sharding: shares cover every row once, grouped jobs keep tasks on their group, pretend
 * nodes split the CPUs, and the sharded forward pass gives the unsharded logits bit for bit. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/runtime.h"
#include "harness.h"

Test(numa, split_gives_disjoint_aligned_shares_covering_every_row) {
    for (int64_t count = 0; count < 300; count++)
        for (int parts = 1; parts <= 5; parts++)
            for (int64_t align = 1; align <= 4; align *= 4) {
                int64_t next = 0;
                for (int p = 0; p < parts; p++) {
                    int64_t b, e;
                    numa_split(count, p, parts, align, &b, &e);
                    cr_assert_eq(b, next, "count %ld parts %d align %ld: share %d starts at %ld", (long)count, parts,
                                 (long)align, p, (long)b);
                    cr_assert(e >= b);
                    cr_assert(b % align == 0 || b == count);
                    next = e;
                }
                cr_assert_eq(next, count);
            }
}

typedef struct {
    atomic_int hits[64];
    atomic_int wrong_group;
    int64_t first_task_of_group1;
    int threads_in_group0;
} group_job;

static void group_task(void *p, int64_t task, int thread) {
    group_job *job = p;
    atomic_fetch_add(&job->hits[task], 1);
    int task_group = task >= job->first_task_of_group1;
    int thread_group = thread >= job->threads_in_group0;
    if (task_group != thread_group) atomic_store(&job->wrong_group, 1);
}

Test(numa, grouped_jobs_run_every_task_once_on_its_own_group) {
    int shapes[][2] = {{1, 1}, {2, 1}, {1, 3}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        thread_pool *pool = thread_pool_new_groups(2, shapes[s], NULL);
        cr_assert(pool);
        cr_assert_eq(thread_pool_groups(pool), 2);
        cr_assert_eq(thread_pool_group_size(pool, 1), shapes[s][1]);
        for (int round = 0; round < 50; round++) {
            int64_t tasks[2] = {round % 7, (round * 3) % 11 + 1};
            group_job job = {.first_task_of_group1 = tasks[0], .threads_in_group0 = shapes[s][0]};
            thread_pool_run_groups(pool, group_task, &job, tasks);
            for (int64_t t = 0; t < tasks[0] + tasks[1]; t++)
                cr_assert_eq(atomic_load(&job.hits[t]), 1, "shape %zu round %d task %ld", s, round, (long)t);
            cr_assert_eq(atomic_load(&job.wrong_group), 0, "a task ran on the other group's thread");
        }
        thread_pool_free(pool);
    }
}

Test(numa, pretend_nodes_split_the_cpus_and_bad_counts_are_refused) {
    numa_topology real, fake;
    g2_error err;
    unsetenv("GROK2_FAKE_NUMA");
    cr_assert_eq(numa_topology_detect(&real, &err), 0);
    int cpus = 0;
    for (int i = 0; i < real.n_nodes; i++) cpus += real.n_cpus[i];
    int want = cpus >= 2 ? 2 : 1;
    char value[8];
    snprintf(value, sizeof value, "%d", want);
    setenv("GROK2_FAKE_NUMA", value, 1);
    cr_assert_eq(numa_topology_detect(&fake, &err), 0, "%s", err.msg);
    cr_assert(fake.fake);
    cr_assert_eq(fake.n_nodes, want);
    int split = 0;
    for (int i = 0; i < fake.n_nodes; i++) {
        cr_assert(fake.n_cpus[i] >= 1);
        cr_assert_eq(CPU_COUNT(&fake.cpus[i]), fake.n_cpus[i]);
        split += fake.n_cpus[i];
    }
    cr_assert_eq(split, cpus);
    const char *bad[] = {"0", "-1", "x", "2x", "100000"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("GROK2_FAKE_NUMA", bad[i], 1);
        cr_assert_neq(numa_topology_detect(&fake, &err), 0, "GROK2_FAKE_NUMA=%s accepted", bad[i]);
        cr_assert(strstr(err.msg, "GROK2_FAKE_NUMA"), "%s", err.msg);
    }
    unsetenv("GROK2_FAKE_NUMA");
}

static char *synth(const char *dir, const char *type) {
    char *err = NULL, *path = harness_synth_tiny(dir, type, &err);
    cr_assert(path, "synth tiny %s: %s", type, err);
    return path;
}

/* logits for 70 tokens (two chunks of --batch 64) at every position, under an environment */
static char *all_logits(const char *env, const char *model, const char *flags) {
    harness_result r = harness_run("%s %s logits -m %s --all --tokens 5,9,1,77,3,200,41,8,8,8,12,500,7,6,5,4,3,2,1,"
                                   "9,99,199,299,399,499,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,"
                                   "21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45 %s",
                                   env, harness_grok2(), model, flags);
    cr_assert_eq(r.status, 0, "%s logits %s: %s", env, flags, r.err);
    free(r.err);
    return r.out;
}

Test(numa, sharded_and_interleaved_runs_give_the_unsharded_logits_bit_for_bit, .timeout = 120) {
    char *dir = harness_tmpdir("numa");
    const char *types[] = {"q4_k_m", "f32"};
    for (size_t i = 0; i < 2; i++) {
        char *model = synth(dir, types[i]);
        char *off = all_logits("", model, "--numa off -t 2");
        cr_assert(harness_count_lines(off) == 70);
        const struct {
            const char *env, *flags;
        } runs[] = {{"GROK2_FAKE_NUMA=2", ""},                            /* auto: shard */
                    {"GROK2_FAKE_NUMA=2", "--numa shard -t 2"},
                    {"GROK2_FAKE_NUMA=2", "--numa shard --threads-per-node 2"}, /* 2 threads on 1 cpu each */
                    {"GROK2_FAKE_NUMA=2", "--numa interleave"},
                    {"", "--numa shard"}, /* one node: shard is one group */
                    {"GROK2_FAKE_NUMA=2", "--no-mmap"},
                    {"GROK2_FAKE_NUMA=2", "--prefetch next --expert-cache-mb 1"}, /* advice by node */
                    {"", "--no-mmap --numa off"}};
        for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
            char *other = all_logits(runs[k].env, model, runs[k].flags);
            cr_assert_str_eq(other, off, "%s: %s '%s' differs from --numa off", types[i], runs[k].env, runs[k].flags);
            free(other);
        }
        free(off);
        free(model);
    }
    free(dir);
}

Test(numa, bad_numa_settings_give_one_clear_error, .timeout = 60) {
    char *dir = harness_tmpdir("numa-bad");
    char *model = synth(dir, "q8_0");
    const struct {
        const char *env, *flags, *says;
    } cases[] = {
        {"", "--numa sideways", "--numa is auto, shard, interleave or off, not 'sideways'"},
        {"", "--threads-per-node 0", "--threads-per-node wants 1 to 4096, got '0'"},
        {"", "--threads-per-node x", "--threads-per-node wants a non-negative integer, got 'x'"},
        {"", "--numa off --threads-per-node 1", "--threads-per-node is for --numa shard"},
        {"GROK2_FAKE_NUMA=2", "-t 1", "-t 1 is fewer threads than the 2 NUMA nodes"},
        {"GROK2_FAKE_NUMA=2", "-t 2 --threads-per-node 1", "give -t or --threads-per-node, not both"},
        {"GROK2_FAKE_NUMA=99", "", "GROK2_FAKE_NUMA=99: wants a node count from 1 to"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        harness_result r = harness_run("%s %s logits -m %s --tokens 1,2 %s", cases[i].env, harness_grok2(), model,
                                       cases[i].flags);
        cr_assert_neq(r.status, 0, "%s %s was accepted", cases[i].env, cases[i].flags);
        cr_assert(r.status < 128, "%s %s crashed (status %d)", cases[i].env, cases[i].flags, r.status);
        cr_assert(strstr(r.err, cases[i].says), "%s %s said: %s", cases[i].env, cases[i].flags, r.err);
        harness_result_free(&r);
    }
    free(model);
    free(dir);
}

Test(numa, info_reports_the_plan_and_where_each_share_lives, .timeout = 60) {
    char *dir = harness_tmpdir("numa-info");
    char *model = synth(dir, "q4_0");
    harness_result r = harness_run("GROK2_FAKE_NUMA=2 %s info %s --numa", harness_grok2(), model);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "numa: shard, 2 nodes (GROK2_FAKE_NUMA"), "%s", r.out);
    cr_assert(strstr(r.out, "node 0: 1 cpu, 1 thread; node 1: 1 cpu, 1 thread"), "%s", r.out);
    /* the file was just written: its pages are in the page cache, all on the one real node */
    cr_assert(strstr(r.out, "node 0 share:") && strstr(r.out, "node 1 share:"), "%s", r.out);
    cr_assert(strstr(r.out, "100% local"), "%s", r.out);
    harness_result_free(&r);
    r = harness_run("%s info %s --numa", harness_grok2(), model);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "numa: off, 1 node") || strstr(r.out, "numa: shard"), "%s", r.out);
    harness_result_free(&r);
    free(model);
    free(dir);
}

/* logits of every position of a fixed sequence through the library */
static float *eval_all(const grok_model *m, const grok_context_params *params, uint32_t n) {
    grok_context *ctx;
    g2_error err;
    cr_assert_eq(grok_context_new(&ctx, m, params, &err), 0, "%s", err.msg);
    int32_t tokens[80];
    for (uint32_t i = 0; i < n; i++) tokens[i] = (int32_t)((i * 37 + 11) % m->hp.n_vocab);
    float *logits = malloc((size_t)n * m->hp.n_vocab * sizeof *logits);
    cr_assert_eq(grok_eval(ctx, tokens, n, 0, logits, true, &err), 0, "%s", err.msg);
    grok_context_free(ctx);
    return logits;
}

Test(numa, weights_copied_into_node_memory_give_the_mapped_logits_bit_for_bit, .timeout = 60) {
    char *dir = harness_tmpdir("numa-copy");
    char *path = synth(dir, "q4_k_m");
    grok_model *m;
    g2_error err;
    cr_assert_eq(grok_model_load(&m, path, &err), 0, "%s", err.msg);
    uint32_t n = 70;
    size_t count = (size_t)n * m->hp.n_vocab;
    grok_context_params mapped = {.n_ctx = 80, .numa = NUMA_OFF, .n_threads = 2};
    float *want = eval_all(m, &mapped, n);
    setenv("GROK2_FAKE_NUMA", "2", 1);
    grok_context_params variants[] = {{.n_ctx = 80, .numa = NUMA_OFF, .n_threads = 2, .no_mmap = true},
                                      {.n_ctx = 80, .numa = NUMA_SHARD, .no_mmap = true},
                                      {.n_ctx = 80, .numa = NUMA_INTERLEAVE, .no_mmap = true}};
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        float *got = eval_all(m, &variants[v], n);
        cr_assert(!memcmp(got, want, count * sizeof *got), "variant %zu: copied weights give other logits", v);
        free(got);
    }
    unsetenv("GROK2_FAKE_NUMA");
    grok_model_free(m);
    free(want);
    free(path);
    free(dir);
}

Test(numa, a_pinned_pool_gives_the_caller_its_cpus_back_when_freed) {
    cpu_set_t before, during, after;
    cr_assert_eq(sched_getaffinity(0, sizeof before, &before), 0);
    cpu_set_t groups[2];
    int first = -1;
    for (int c = 0; c < CPU_SETSIZE && first < 0; c++)
        if (CPU_ISSET(c, &before)) first = c;
    CPU_ZERO(&groups[0]);
    CPU_SET(first, &groups[0]);
    groups[1] = before;
    int threads[2] = {1, 1};
    thread_pool *pool = thread_pool_new_groups(2, threads, groups);
    cr_assert(pool);
    cr_assert_eq(sched_getaffinity(0, sizeof during, &during), 0);
    cr_assert(CPU_EQUAL(&during, &groups[0]), "the caller runs on group 0's CPUs while the pool lives");
    thread_pool_free(pool);
    cr_assert_eq(sched_getaffinity(0, sizeof after, &after), 0);
    cr_assert(CPU_EQUAL(&after, &before), "the caller's CPUs were not given back");
}

typedef struct {
    cpu_set_t seen[8];
    atomic_int got_affinity[8];
} affinity_job;

static void affinity_task(void *p, int64_t task, int thread) {
    affinity_job *job = p;
    if (thread > 0 && pthread_getaffinity_np(pthread_self(), sizeof job->seen[thread], &job->seen[thread]) == 0)
        atomic_store(&job->got_affinity[thread], 1);
    nanosleep(&(struct timespec){0, 1000 * 1000}, NULL); /* leaves tasks for the other workers */
}

/* A sharded context pins its caller to node 0's CPUs; a plain pool that caller makes meanwhile
 * (grok2 bench's bandwidth pool) must still spread over every CPU of the process. */
Test(numa, an_unpinned_pool_made_by_a_pinned_caller_runs_on_every_cpu) {
    cpu_set_t process, pinned;
    pool_process_cpus(&process);
    cpu_set_t start;
    cr_assert_eq(sched_getaffinity(0, sizeof start, &start), 0);
    cr_assert(CPU_EQUAL(&start, &process), "the process's CPUs are those it started with");
    if (CPU_COUNT(&process) < 2) cr_skip_test("one CPU: nothing to narrow");
    setenv("GROK2_FAKE_NUMA", "2", 1);
    numa_topology t;
    g2_error err;
    cr_assert_eq(numa_topology_detect(&t, &err), 0, "%s", err.msg);
    unsetenv("GROK2_FAKE_NUMA");
    int threads[2] = {1, 1};
    thread_pool *sharded = thread_pool_new_groups(2, threads, t.cpus);
    cr_assert(sharded);
    cr_assert_eq(sched_getaffinity(0, sizeof pinned, &pinned), 0);
    cr_assert(!CPU_EQUAL(&pinned, &process), "the grouped pool did not pin its caller");
    thread_pool *plain = thread_pool_new(4);
    cr_assert(plain);
    affinity_job job = {0};
    bool all = false;
    for (int round = 0; round < 200 && !all; round++) { /* until every worker has taken a task */
        thread_pool_run(plain, affinity_task, &job, 16);
        all = true;
        for (int i = 1; i < 4; i++) all = all && atomic_load(&job.got_affinity[i]);
    }
    for (int i = 1; i < 4; i++) {
        cr_assert(atomic_load(&job.got_affinity[i]), "worker %d ran no task", i);
        cr_assert(CPU_EQUAL(&job.seen[i], &process), "worker %d has %d of the process's %d CPUs", i,
                  CPU_COUNT(&job.seen[i]), CPU_COUNT(&process));
    }
    thread_pool_free(plain);
    thread_pool_free(sharded);
}

/* The balancing switch as the kernel writes it ("0\n", "1\n", "2\n" for memory tiering, which
 * also unmaps pages); an empty or unreadable file is "unknown", never "on". */
Test(numa, balancing_state_reads_the_kernel_switch) {
    char *dir = harness_tmpdir("numa-balancing");
    char path[600];
    snprintf(path, sizeof path, "%s/numa_balancing", dir);
    const struct {
        const char *text;
        int want;
    } cases[] = {{"0\n", 0}, {"1\n", 1}, {"2\n", 1}, {"", -1}, {"off\n", -1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fputs(cases[i].text, f);
        fclose(f);
        cr_expect_eq(numa_balancing_state(path), cases[i].want, "'%s'", cases[i].text);
    }
    snprintf(path, sizeof path, "%s/missing", dir);
    cr_expect_eq(numa_balancing_state(path), -1);
    free(dir);
}

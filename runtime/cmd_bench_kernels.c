/* `grok2 bench --kernels`: how close each matvec kernel comes to the memory bandwidth. Decode
 * is memory-bound, so the figure that matters is GB/s of weights processed next to the read
 * bandwidth the same machine gives the same program in the same run:
 *   - one buffer larger than the last-level cache (default max(256 MiB, 2 x LLC)) is filled
 *     once (first touch by the threads that will read it) and reused as the weight matrix of
 *     every type (8192 columns, as many rows as fit), with its scale fields made sane;
 *   - read bandwidth: every thread sums its slice of the buffer with 16-byte loads;
 *   - each kernel: matvec over all rows, one thread, then all threads (static row split),
 *     best of --reps; "matmul xN" rows run the small-batch kernel on N activation columns.
 * The slices run on the runtime's thread pool. Prototype (simd/simd.h): int bench_kernels(int argc,
 * char **argv). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "runtime.h"

#define BENCH_COLS 8192 /* the default row length: Grok-2's hidden size */

typedef struct {
    const char *name;
    uint32_t type;
    size_t block_bytes;
    int64_t block;
} bench_type;

static const bench_type bench_types[] = {
    {"q4_0", SIMD_TYPE_Q4_0, 18, 32},     {"q4_1", SIMD_TYPE_Q4_1, 20, 32},  {"q8_0", SIMD_TYPE_Q8_0, 34, 32},
    {"iq4_nl", SIMD_TYPE_IQ4_NL, 18, 32}, {"q4_K", SIMD_TYPE_Q4_K, 144, 256}, {"q5_K", SIMD_TYPE_Q5_K, 176, 256},
    {"q6_K", SIMD_TYPE_Q6_K, 210, 256},   {"bf16", SIMD_TYPE_BF16, 2, 1},    {"f16", SIMD_TYPE_F16, 2, 1},
    {"f32", SIMD_TYPE_F32, 4, 1},
};
#define N_BENCH_TYPES (int)(sizeof bench_types / sizeof bench_types[0])

/* ---- jobs over the runtime's thread pool: `active` slices, one task each ----------------------- */

typedef struct bench_pool bench_pool;
typedef void (*bench_job)(bench_pool *pool, int thread);
struct bench_pool {
    thread_pool *threads;
    int active; /* slices of the current job: 1 runs on the caller alone */
    bench_job job;
    /* the job's arguments */
    uint8_t *buf;
    size_t bytes;
    const bench_type *type;
    const simd_type_kernels *kernels;
    const void *xq;
    size_t xq_bytes;
    int ncols;
    int64_t row_len; /* weights per row (--cols) */
    int64_t nrows, rows_per_call; /* rows_per_call 0: one call per thread */
    size_t row_bytes;
    float *y;
    uint64_t sums[256];
};

static void run_slice(void *arg, int64_t task, int thread) {
    (void)thread;
    bench_pool *pool = arg;
    pool->job(pool, (int)task);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs job in `active` slices (the caller takes one; a single slice runs on it alone); returns
 * the wall time. */
static double pool_run(bench_pool *pool, bench_job job, int active) {
    pool->job = job;
    pool->active = active;
    double t0 = now_seconds();
    thread_pool_run(pool->threads, run_slice, pool, active);
    return now_seconds() - t0;
}

/* [begin, end) of n items for thread t of `active` */
static void slice(int64_t n, int t, int active, int64_t *begin, int64_t *end) {
    *begin = n * t / active;
    *end = n * (t + 1) / active;
}

/* ---- the jobs ------------------------------------------------------------------------------ */

static void job_fill(bench_pool *pool, int t) {
    int64_t b, e, words = (int64_t)(pool->bytes / 8);
    slice(words, t, pool->active, &b, &e);
    uint64_t s = 0x9e3779b97f4a7c15ULL * (uint64_t)(t + 1), *p = (uint64_t *)pool->buf;
    for (int64_t i = b; i < e; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        p[i] = s;
    }
}

/* Sane scales: random fp16 bits would include inf and NaN; random floats, subnormals. */
static void job_fix_scales(bench_pool *pool, int t) {
    const bench_type *bt = pool->type;
    int64_t b, e, blocks = (int64_t)(pool->bytes / bt->block_bytes);
    slice(blocks, t, pool->active, &b, &e);
    uint8_t *buf = pool->buf;
    const uint16_t scale = 0x2000; /* 2^-7 */
    for (int64_t i = b; i < e; i++) {
        uint8_t *blk = buf + (size_t)i * bt->block_bytes;
        switch (bt->type) {
        case SIMD_TYPE_Q4_0:
        case SIMD_TYPE_Q8_0:
        case SIMD_TYPE_IQ4_NL: memcpy(blk, &scale, 2); break;
        case SIMD_TYPE_Q4_1:
        case SIMD_TYPE_Q4_K:
        case SIMD_TYPE_Q5_K:
            memcpy(blk, &scale, 2);
            memcpy(blk + 2, &scale, 2);
            break;
        case SIMD_TYPE_Q6_K: memcpy(blk + 208, &scale, 2); break;
        case SIMD_TYPE_F32: {
            uint32_t v;
            memcpy(&v, blk, 4);
            v = (v & 0x807fffffu) | 0x3f000000u; /* [0.5, 1) with a random sign */
            memcpy(blk, &v, 4);
            break;
        }
        case SIMD_TYPE_F16: {
            uint16_t v;
            memcpy(&v, blk, 2);
            v = (uint16_t)((v & 0x83ffu) | 0x3800u);
            memcpy(blk, &v, 2);
            break;
        }
        case SIMD_TYPE_BF16: {
            uint16_t v;
            memcpy(&v, blk, 2);
            v = (uint16_t)((v & 0x807fu) | 0x3f00u);
            memcpy(blk, &v, 2);
            break;
        }
        default: break;
        }
    }
}

typedef uint64_t u64x2 __attribute__((vector_size(16)));

static void job_read(bench_pool *pool, int t) {
    int64_t b, e, vecs = (int64_t)(pool->bytes / 64);
    slice(vecs, t, pool->active, &b, &e);
    const u64x2 *p = (const u64x2 *)pool->buf;
    u64x2 a0 = {0, 0}, a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = b; i < e; i++) { /* one cache line per step, four independent sums */
        a0 += p[4 * i];
        a1 += p[4 * i + 1];
        a2 += p[4 * i + 2];
        a3 += p[4 * i + 3];
    }
    u64x2 s = a0 + a1 + a2 + a3;
    pool->sums[t] = s[0] + s[1]; /* keeps the loads alive */
}

static void job_matvec(bench_pool *pool, int t) {
    int64_t b, e;
    slice(pool->nrows, t, pool->active, &b, &e);
    int64_t step = pool->rows_per_call > 0 ? pool->rows_per_call : e - b;
    for (int64_t r0 = b; r0 < e; r0 += step) { /* --rows-per-call: calls as small as a caller's tasks */
        int64_t r1 = r0 + step < e ? r0 + step : e;
        const uint8_t *w = pool->buf + (size_t)r0 * pool->row_bytes;
        if (pool->ncols == 1)
            pool->kernels->matvec(pool->row_len, r1 - r0, w, pool->row_bytes, pool->xq, pool->y + r0);
        else
            pool->kernels->matmul(pool->row_len, r1 - r0, w, pool->row_bytes, pool->ncols, pool->xq, pool->xq_bytes,
                                  pool->y + r0, (size_t)pool->nrows);
    }
}

/* ---- the peak int8 rate: the table's register-only loop on every thread at once ----------------- */

typedef struct {
    const simd_kernels *kernels;
    uint64_t iterations, ops[256];
} peak_job;

static void peak_task(void *arg, int64_t task, int thread) {
    (void)thread;
    peak_job *job = arg;
    job->ops[task & 255] = job->kernels->int8_peak(job->iterations);
}

/* One run of the loop on `tasks` threads at once: its int8 ops per second; *seconds: its wall time. */
static double peak_run(thread_pool *pool, peak_job *job, int tasks, double *seconds) {
    double t0 = now_seconds();
    thread_pool_run(pool, peak_task, job, tasks);
    *seconds = now_seconds() - t0;
    uint64_t ops = 0;
    for (int t = 0; t < tasks && t < 256; t++) ops += job->ops[t];
    return *seconds > 0 ? (double)ops / *seconds : 0;
}

/* The best of 3 runs of about 0.1 s each on `tasks` threads (at most the pool's size). */
static double int8_peak_on(thread_pool *pool, const simd_kernels *k, int tasks) {
    if (!k->int8_peak) return 0;
    peak_job job = {.kernels = k, .iterations = 1000};
    double seconds = 0, rate = peak_run(pool, &job, tasks, &seconds);
    for (int grow = 0; grow < 6 && seconds < 0.05; grow++) {
        job.iterations *= seconds > 1e-4 ? (uint64_t)(0.1 / seconds) + 1 : 64;
        rate = peak_run(pool, &job, tasks, &seconds);
    }
    for (int r = 0; r < 2; r++) {
        double again = peak_run(pool, &job, tasks, &seconds);
        if (again > rate) rate = again;
    }
    return rate;
}

double bench_int8_peak(thread_pool *pool, const simd_kernels *k) {
    return int8_peak_on(pool, k, thread_pool_size(pool));
}

/* ---- measuring -------------------------------------------------------------------------------- */

static double best_time(bench_pool *pool, bench_job job, int active, int reps) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t = pool_run(pool, job, active);
        if (t < best) best = t;
    }
    return best;
}

typedef struct {
    char name[32];
    double gbps_one, gbps_all;
    double gops_one, gops_all; /* int8 ops/s (2 per weight and column); 0 for float weights */
} bench_row;

static void usage(const char *cmd) {
    fprintf(stderr,
            "usage: %s --kernels [--mb N] [--threads N] [--isa NAME] [--reps N] [--batch N]\n"
            "       [--rows-per-call N] [--cols N] [--json]\n"
            "  GB/s of weights per kernel (matvec, and matmul on --batch columns, default 8) with one\n"
            "  thread and with all threads, next to the read bandwidth measured in the same run; and\n"
            "  the int8 ops/s of the integer kernels against the peak int8 rate measured the same way\n"
            "  (the table's int8 multiply-add instruction in a register-only loop on every thread).\n"
            "  --mb: matrix size (default max(256, 2 x last-level cache)); --isa: kernels to use;\n"
            "  --rows-per-call: call the kernels on this many rows at a time (default: a thread's\n"
            "  whole share), as a caller splitting rows into small tasks would; --cols: weights per\n"
            "  row, a multiple of 256 (default 8192, Grok-2's hidden size; the mini preset's is 2048).\n",
            cmd);
}

int bench_kernels(int argc, char **argv) {
    const char *cmd = argc > 0 ? argv[0] : "bench";
    long mb = 0, threads = sysconf(_SC_NPROCESSORS_ONLN), reps = 3, batch = 8, rows_per_call = 0, cols = BENCH_COLS;
    const char *isa = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long *number = !strcmp(a, "--mb")              ? &mb
                       : !strcmp(a, "--threads")       ? &threads
                       : !strcmp(a, "--reps")          ? &reps
                       : !strcmp(a, "--batch")         ? &batch
                       : !strcmp(a, "--cols")          ? &cols
                       : !strcmp(a, "--rows-per-call") ? &rows_per_call
                                                       : NULL;
        if (strcmp(a, "--kernels") == 0) continue;
        if (strcmp(a, "--json") == 0) json = true;
        else if (strcmp(a, "--isa") == 0 && i + 1 < argc) isa = argv[++i];
        else if (number && i + 1 < argc) {
            uint32_t v;
            if (cli_u32("bench --kernels", a, argv[++i], &v)) return 2;
            *number = v;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(cmd);
            return 0;
        } else {
            fprintf(stderr, "%s: unknown or incomplete option '%s'\n", cmd, a);
            usage(cmd);
            return 2;
        }
    }
    if (threads < 1 || threads > 256 || reps < 1 || reps > 1000 || batch < 1 || batch > 64 || mb > (1 << 20) ||
        cols < 256 || cols > 65536 || cols % 256) {
        fprintf(stderr,
                "%s: --threads must be 1..256, --reps 1..1000, --batch 1..64, --mb 0..1048576, --cols a "
                "multiple of 256 in 256..65536\n",
                cmd);
        return 2;
    }
    const simd_kernels *k = simd_kernels_get();
    if (isa) {
        simd_cpu_info cpu;
        simd_cpu_detect(&cpu);
        char msg[400];
        k = simd_kernels_choose(isa, &cpu, msg, sizeof msg);
        if (!k) {
            fprintf(stderr, "%s: %s\n", cmd, msg);
            return 2;
        }
    }
    long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (llc <= 0) llc = sysconf(_SC_LEVEL2_CACHE_SIZE);
    size_t bytes = mb > 0 ? (size_t)mb << 20 : (size_t)256 << 20;
    if (mb == 0 && llc > 0 && (size_t)llc * 2 > bytes) bytes = (size_t)llc * 2;
    bytes = (bytes + (2u << 20) - 1) & ~(((size_t)2 << 20) - 1);

    uint8_t *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) {
        fprintf(stderr, "%s: cannot map %zu MiB for the weights\n", cmd, bytes >> 20);
        return 1;
    }
    madvise(buf, bytes, MADV_HUGEPAGE); /* fewer TLB misses while streaming; advisory */
    bench_pool pool = {0};
    if (!(pool.threads = thread_pool_new((int)threads))) {
        fprintf(stderr, "%s: cannot start %ld threads\n", cmd, threads);
        munmap(buf, bytes);
        return 1;
    }
    pool.buf = buf;
    pool.bytes = bytes;
    pool_run(&pool, job_fill, (int)threads); /* first touch by the threads that read */

    /* activations: --cols floats per column, quantized per type below */
    float *x = malloc((size_t)cols * (size_t)batch * sizeof(float));
    void *xq = malloc((size_t)cols * (size_t)batch * sizeof(float));
    int64_t max_rows = (int64_t)(bytes / (cols / 32 * 18)) + 1;
    float *y = malloc((size_t)max_rows * (size_t)batch * sizeof(float));
    if (!x || !xq || !y) {
        fprintf(stderr, "%s: out of memory\n", cmd);
        return 1;
    }
    uint64_t s = 12345;
    for (long i = 0; i < cols * batch; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = (float)((double)(s >> 11) * 0x1p-53 * 2 - 1);
    }
    pool.xq = xq;
    pool.y = y;
    pool.rows_per_call = rows_per_call;

    pool_run(&pool, job_read, (int)threads); /* warm up */
    double read_one = (double)bytes / best_time(&pool, job_read, 1, (int)reps) / 1e9;
    double read_all = (double)bytes / best_time(&pool, job_read, (int)threads, (int)reps) / 1e9;
    double peak_one = int8_peak_on(pool.threads, k, 1) / 1e9;
    double peak_all = int8_peak_on(pool.threads, k, (int)threads) / 1e9;

    bench_row rows[2 * N_BENCH_TYPES];
    int nrows_out = 0;
    for (int ti = 0; ti < N_BENCH_TYPES; ti++) {
        const bench_type *bt = &bench_types[ti];
        const simd_type_kernels *tk = simd_type_kernels_get(k, bt->type);
        if (!tk) continue;
        pool.type = bt;
        pool_run(&pool, job_fix_scales, (int)threads);
        pool.kernels = tk;
        pool.row_bytes = (size_t)(cols / bt->block) * bt->block_bytes;
        pool.row_len = cols;
        pool.nrows = (int64_t)(bytes / pool.row_bytes);
        pool.xq_bytes = simd_act_row_bytes(tk->act_type, cols);
        for (long c = 0; c < batch; c++)
            tk->quantize(x + c * cols, (uint8_t *)xq + (size_t)c * pool.xq_bytes, cols);
        double weights = (double)pool.nrows * (double)pool.row_bytes;
        for (int mode = 0; mode < 2; mode++) {
            pool.ncols = mode == 0 ? 1 : (int)batch;
            if (mode == 1 && batch == 1) break;
            bench_row *row = &rows[nrows_out++];
            if (mode == 0)
                snprintf(row->name, sizeof row->name, "%s matvec", bt->name);
            else
                snprintf(row->name, sizeof row->name, "%s matmul x%ld", bt->name, batch);
            double t_one = best_time(&pool, job_matvec, 1, (int)reps);
            double t_all = best_time(&pool, job_matvec, (int)threads, (int)reps);
            row->gbps_one = weights / t_one / 1e9;
            row->gbps_all = weights / t_all / 1e9;
            double ops = tk->act_type == SIMD_TYPE_F32 ? 0 : 2.0 * (double)pool.nrows * cols * pool.ncols;
            row->gops_one = ops / t_one / 1e9;
            row->gops_all = ops / t_all / 1e9;
        }
    }

    char cpu_line[512];
    simd_describe(cpu_line, sizeof cpu_line);
    if (json) {
        printf("{\"isa\": \"%s\", \"threads\": %ld, \"matrix_mib\": %zu, \"columns\": %d, \"llc_bytes\": %ld, "
               "\"rows_per_call\": %ld,\n",
               k->name, threads, bytes >> 20, (int)cols, llc, rows_per_call);
        printf(" \"read_gbps\": {\"one_thread\": %.2f, \"all_threads\": %.2f},\n", read_one, read_all);
        printf(" \"int8_peak_gops\": {\"one_thread\": %.1f, \"all_threads\": %.1f},\n \"kernels\": [\n", peak_one,
               peak_all);
        for (int i = 0; i < nrows_out; i++)
            printf("  {\"kernel\": \"%s\", \"gbps_one_thread\": %.2f, \"gbps_all_threads\": %.2f, "
                   "\"fraction_of_read_one\": %.3f, \"fraction_of_read_all\": %.3f, \"int8_gops_one_thread\": %.1f, "
                   "\"int8_gops_all_threads\": %.1f, \"fraction_of_int8_peak_one\": %.3f, "
                   "\"fraction_of_int8_peak_all\": %.3f}%s\n",
                   rows[i].name, rows[i].gbps_one, rows[i].gbps_all, rows[i].gbps_one / read_one,
                   rows[i].gbps_all / read_all, rows[i].gops_one, rows[i].gops_all,
                   peak_one > 0 ? rows[i].gops_one / peak_one : 0, peak_all > 0 ? rows[i].gops_all / peak_all : 0,
                   i + 1 < nrows_out ? "," : "");
        printf(" ]}\n");
    } else {
        printf("%s\n", cpu_line);
        printf("kernels: %s, %ld threads, weights %zu MiB (last-level cache %ld MiB), %d columns, best of %ld", k->name,
               threads, bytes >> 20, llc > 0 ? llc >> 20 : -1, (int)cols, reps);
        if (rows_per_call > 0) printf(", %ld rows per call", rows_per_call);
        printf("\n\n");
        printf("%-18s %12s %12s %10s %10s %12s %9s\n", "kernel", "1 thr GB/s", "all GB/s", "1 thr/rd", "all/rd",
               "all int8 G/s", "all/peak");
        printf("%-18s %12.2f %12.2f %10s %10s\n", "memory read", read_one, read_all, "1.00", "1.00");
        printf("%-18s %12s %12s %10s %10s %12.1f %9s\n", "int8 peak", "", "", "", "", peak_all, "1.00");
        for (int i = 0; i < nrows_out; i++) {
            printf("%-18s %12.2f %12.2f %10.2f %10.2f", rows[i].name, rows[i].gbps_one, rows[i].gbps_all,
                   rows[i].gbps_one / read_one, rows[i].gbps_all / read_all);
            if (rows[i].gops_all > 0 && peak_all > 0)
                printf(" %12.1f %9.3f\n", rows[i].gops_all, rows[i].gops_all / peak_all);
            else
                printf(" %12s %9s\n", "-", "-");
        }
        printf("\nmatmul xN: GB/s of weights, each weight used for N columns (prefill; compute-bound)\n");
        printf("int8 G/s: 2 ops per weight and column (a multiply and an add) per second; int8 peak: %s's\n"
               "int8 multiply-add loop in registers on every thread at once (%.1f G/s on one thread)\n",
               k->name, peak_one);
    }
    thread_pool_free(pool.threads);
    free(x);
    free(xq);
    free(y);
    munmap(buf, bytes);
    return 0;
}

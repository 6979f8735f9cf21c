/* Memory read bandwidth as this program sees it: all threads of the pool sum disjoint slices of
 * a buffer much larger than the last-level cache. Decode speed is judged against this figure
 * measured in the same run ("bandwidth yield"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "runtime.h"

#define SLICE_BYTES (1u << 20)

typedef struct {
    const uint64_t *data;
    uint64_t sums[256];
} read_job;

static void read_task(void *p, int64_t task, int thread) {
    read_job *job = p;
    const uint64_t *x = job->data + (size_t)task * (SLICE_BYTES / 8);
    uint64_t a = 0, b = 0, c = 0, d = 0; /* four chains so the adds do not serialise */
    for (size_t i = 0; i < SLICE_BYTES / 8; i += 4) a += x[i], b += x[i + 1], c += x[i + 2], d += x[i + 3];
    job->sums[thread & 255] += a + b + c + d;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double measure_read_bandwidth(thread_pool *pool, size_t bytes, int repetitions) {
    bytes = (bytes + SLICE_BYTES - 1) / SLICE_BYTES * SLICE_BYTES;
    uint64_t *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) return 0;
    madvise(buf, bytes, MADV_HUGEPAGE); /* the page size the model's mapping asks for (gguf_read.c) */
    memset(buf, 1, bytes);              /* fault every page in before timing */
    read_job job = {buf, {0}};
    double best = 0;
    for (int r = 0; r < repetitions; r++) {
        double t0 = now();
        thread_pool_run(pool, read_task, &job, (int64_t)(bytes / SLICE_BYTES));
        double gbps = bytes / (now() - t0) / 1e9;
        if (gbps > best) best = gbps;
    }
    munmap(buf, bytes);
    return best;
}

int huge_page_bytes(uint64_t *file_pmd_mapped, uint64_t *anon_huge) {
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (!f) return -1;
    char line[256];
    int found = 0;
    unsigned long long kb;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "FilePmdMapped: %llu kB", &kb) == 1) *file_pmd_mapped = (uint64_t)kb << 10, found |= 1;
        else if (sscanf(line, "AnonHugePages: %llu kB", &kb) == 1) *anon_huge = (uint64_t)kb << 10, found |= 2;
    }
    fclose(f);
    return found == 3 ? 0 : -1;
}

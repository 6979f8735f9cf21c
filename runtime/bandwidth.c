/* Memory read bandwidth as this program sees it: all threads of the pool sum disjoint slices of
 * a buffer much larger than the last-level cache. Decode speed is judged against this figure
 * measured in the same run ("bandwidth yield"). */
#include <stdbool.h>
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

/* The sum of `bytes` bytes at p as 64-bit words (the tail byte by byte): the probe's read loop,
 * also the read-only kernels' (below). */
static uint64_t read_sum(const uint8_t *p, size_t bytes) {
    uint64_t a = 0, b = 0, c = 0, d = 0; /* four chains so the adds do not serialise */
    for (; bytes && (uintptr_t)p % 8; bytes--) a += *p++; /* to a word boundary (the probe is on one) */
    const uint64_t *x = (const uint64_t *)p;
    size_t words = bytes / 32 * 4, i = 0;
    for (; i < words; i += 4) a += x[i], b += x[i + 1], c += x[i + 2], d += x[i + 3];
    for (size_t k = i * 8; k < bytes; k++) a += p[k];
    return a + b + c + d;
}

static void read_task(void *p, int64_t task, int thread) {
    read_job *job = p;
    job->sums[thread & 255] += read_sum((const uint8_t *)(job->data + (size_t)task * (SLICE_BYTES / 8)), SLICE_BYTES);
}

/* A matvec that reads the rows' bytes and does no arithmetic. Its outputs are small and vary
 * with the row and the bytes read, so that what follows (norms, the router's choice) stays
 * finite and the routing still varies from token to token. */
static void read_only_matvec(int64_t n, int64_t nrows, const void *w, size_t wrb, const void *x, float *y) {
    (void)n, (void)x;
    uint64_t sum = read_sum(w, (size_t)nrows * wrb);
    for (int64_t r = 0; r < nrows; r++) {
        uint64_t h = (sum + (uint64_t)r) * 0x9E3779B97F4A7C15ull;
        y[r] = ((float)(h >> 40) / (float)(1 << 24) - 0.5f) * 1e-3f;
    }
}

void read_only_kernels(const simd_kernels *k, simd_kernels *out) {
    *out = *k;
    for (int t = 0; t < SIMD_TYPE_LIMIT; t++)
        if (out->types[t].matvec && out->types[t].act_type != SIMD_TYPE_F32) out->types[t].matvec = read_only_matvec;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct read_probe {
    uint64_t *buf;
    size_t bytes;
};

read_probe *read_probe_new(size_t bytes) {
    read_probe *probe = malloc(sizeof *probe);
    if (!probe) return NULL;
    probe->bytes = (bytes + SLICE_BYTES - 1) / SLICE_BYTES * SLICE_BYTES;
    probe->buf = mmap(NULL, probe->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (probe->buf == MAP_FAILED) {
        free(probe);
        return NULL;
    }
    madvise(probe->buf, probe->bytes, MADV_HUGEPAGE); /* the page size the model's mapping asks for (gguf_read.c) */
    memset(probe->buf, 1, probe->bytes);              /* fault every page in before timing */
    return probe;
}

double read_probe_measure(read_probe *probe, thread_pool *pool, int repetitions) {
    read_job job = {probe->buf, {0}};
    double best = 0;
    for (int r = 0; r < repetitions; r++) {
        double t0 = now();
        thread_pool_run(pool, read_task, &job, (int64_t)(probe->bytes / SLICE_BYTES));
        double gbps = probe->bytes / (now() - t0) / 1e9;
        if (gbps > best) best = gbps;
    }
    return best;
}

void read_probe_free(read_probe *probe) {
    if (!probe) return;
    munmap(probe->buf, probe->bytes);
    free(probe);
}

double measure_read_bandwidth(thread_pool *pool, size_t bytes, int repetitions) {
    read_probe *probe = read_probe_new(bytes);
    if (!probe) return 0;
    double gbps = read_probe_measure(probe, pool, repetitions);
    read_probe_free(probe);
    return gbps;
}

int huge_page_bytes(const void *start, size_t bytes, uint64_t *huge) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    bool seen = false;
    uint64_t lo = (uintptr_t)start, hi = lo + bytes, overlap = 0, total = 0;
    unsigned long long kb;
    while (fgets(line, sizeof line, f)) {
        unsigned long long vma_start, vma_end;
        /* a mapping's header line, "start-end perms offset dev inode [path]"; no field line
         * ("Name: value") parses as two hex numbers around a '-' */
        if (sscanf(line, "%llx-%llx", &vma_start, &vma_end) == 2) {
            uint64_t a = vma_start > lo ? vma_start : lo, b = vma_end < hi ? vma_end : hi;
            overlap = b > a ? b - a : 0;
            continue;
        }
        if (!overlap) continue;
        /* at most the overlap: the kernel may have merged a neighbouring anonymous allocation
         * (the KV cache, also in huge pages) into the copy's mapping */
        if (sscanf(line, "FilePmdMapped: %llu kB", &kb) == 1 || sscanf(line, "AnonHugePages: %llu kB", &kb) == 1) {
            total += (uint64_t)kb << 10 < overlap ? (uint64_t)kb << 10 : overlap;
            seen = true;
        }
    }
    fclose(f);
    *huge = total;
    return seen ? 0 : -1;
}

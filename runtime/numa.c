/* NUMA: the machine's nodes (libnuma), how a matrix's rows are shared out between them, and
 * where those shares' pages really live.
 *
 * Sharding splits every weight matrix along its output rows, one contiguous share per node, and
 * a node's threads only compute their share: with the file mapped, each page is first touched
 * (so placed) by the node that will always read it, and memory stays 1x. Output rows, not the
 * reference's column split of o_proj/down with per-node partial sums: a column share of a
 * quantized row is a few hundred bytes, far below a page, so only row shares can be placed
 * page by page in a mapped file; the price is that nodes meet at each matmul's barrier, about
 * a microsecond against the tens of milliseconds a token of Grok-2 spends reading weights.
 *
 * GROK2_FAKE_NUMA=N splits this machine's CPUs into N pretend nodes (all memory on the real
 * one), so the sharded path runs, and is tested, on one-node machines. */
#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "runtime.h"

const char *numa_mode_name(numa_mode mode) {
    switch (mode) {
    case NUMA_SHARD: return "shard";
    case NUMA_INTERLEAVE: return "interleave";
    case NUMA_OFF: return "off";
    default: return "auto";
    }
}

int numa_mode_parse(const char *name, numa_mode *out) {
    static const numa_mode modes[] = {NUMA_AUTO, NUMA_SHARD, NUMA_INTERLEAVE, NUMA_OFF};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        if (!strcmp(name, numa_mode_name(modes[i]))) {
            *out = modes[i];
            return 0;
        }
    return -1;
}

/* The CPUs this process may run on, in order (not only those of a caller a pool has pinned). */
static int allowed_cpus(int *cpus, int cap) {
    cpu_set_t set;
    pool_process_cpus(&set);
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < cap; c++)
        if (CPU_ISSET(c, &set)) cpus[n++] = c;
    return n > 0 ? n : 1;
}

static void add_node(numa_topology *t, int os_node, const int *cpus, int n) {
    int i = t->n_nodes++;
    t->os_node[i] = os_node;
    t->n_cpus[i] = n;
    CPU_ZERO(&t->cpus[i]);
    for (int c = 0; c < n; c++) CPU_SET(cpus[c], &t->cpus[i]);
}

int numa_topology_detect(numa_topology *t, g2_error *err) {
    memset(t, 0, sizeof *t);
    int cpus[CPU_SETSIZE];
    int n_cpus = allowed_cpus(cpus, CPU_SETSIZE);
    bool have_numa = numa_available() >= 0;
    t->libnuma = have_numa;
    const char *fake = getenv("GROK2_FAKE_NUMA");
    if (fake && *fake) {
        char *end;
        long n = strtol(fake, &end, 10);
        if (*end || n < 1 || n > POOL_MAX_GROUPS || n > n_cpus)
            return g2_fail(err, "GROK2_FAKE_NUMA=%s: wants a node count from 1 to %d (this process has %d CPUs)",
                           fake, n_cpus < POOL_MAX_GROUPS ? n_cpus : POOL_MAX_GROUPS, n_cpus);
        int real = have_numa ? numa_node_of_cpu(cpus[0]) : 0;
        for (long i = 0; i < n; i++) {
            int first = (int)(i * n_cpus / n), last = (int)((i + 1) * n_cpus / n);
            add_node(t, real < 0 ? 0 : real, cpus + first, last - first);
        }
        t->fake = true;
        return 0;
    }
    if (have_numa && numa_num_configured_nodes() > 1) {
        struct bitmask *mask = numa_allocate_cpumask();
        if (mask) {
            for (int node = 0; node <= numa_max_node(); node++) {
                if (numa_node_to_cpus(node, mask) != 0) continue;
                int mine[CPU_SETSIZE], n = 0;
                for (int c = 0; c < n_cpus; c++)
                    if (numa_bitmask_isbitset(mask, (unsigned)cpus[c])) mine[n++] = cpus[c];
                if (n == 0) continue; /* memory-only node, or none of our CPUs */
                if (t->n_nodes == POOL_MAX_GROUPS) {
                    numa_free_cpumask(mask);
                    return g2_fail(err, "more than %d NUMA nodes with CPUs: run with --numa off or restrict "
                                        "the CPUs (taskset)", POOL_MAX_GROUPS);
                }
                add_node(t, node, mine, n);
            }
            numa_free_cpumask(mask);
        }
        if (t->n_nodes > 0) return 0;
        memset(t->cpus, 0, sizeof t->cpus);
    }
    /* one node: no NUMA, a kernel without it, or libnuma unable to say */
    t->n_nodes = 0;
    add_node(t, 0, cpus, n_cpus);
    return 0;
}

void numa_split(int64_t count, int part, int parts, int64_t align, int64_t *begin, int64_t *end) {
    int64_t units = (count + align - 1) / align; /* split in whole units of align */
    int64_t b = units * part / parts * align, e = units * (part + 1) / parts * align;
    *begin = b < count ? b : count;
    *end = e < count ? e : count;
}

void numa_interleave_all(const numa_topology *t) {
    if (t->fake || !t->libnuma || t->n_nodes < 2) return; /* nothing to spread over */
    numa_set_interleave_mask(numa_all_nodes_ptr);
}

void numa_place_range(const numa_topology *t, int node, void *addr, size_t len) {
    if (t->fake || !t->libnuma || t->n_nodes < 2 || len == 0) return;
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t b = ((uintptr_t)addr + (uintptr_t)page - 1) & ~(uintptr_t)(page - 1);
    uintptr_t e = ((uintptr_t)addr + len) & ~(uintptr_t)(page - 1);
    if (e > b) numa_tonode_memory((void *)b, e - b, t->os_node[node]);
}

/* ---- where the shares live ------------------------------------------------------------------ */

#define SAMPLE_PAGES 512 /* pages asked per matrix share: enough for percentages, cheap to ask */

typedef struct {
    const numa_topology *topo;
    numa_share_placement *out; /* [n_nodes] */
    long page;
} placement_walk;

/* Samples the pages of rows [r0, r1) of a matrix and adds what move_pages says about them. Only
 * pages the page cache already holds are touched (a read faults them into this process without
 * moving them); the others are counted as not cached, never read from disk here. */
static void sample_share(placement_walk *w, int node, const uint8_t *base, size_t row_bytes, int64_t r0,
                         int64_t r1) {
    numa_share_placement *p = &w->out[node];
    size_t bytes = (size_t)(r1 - r0) * row_bytes;
    if (bytes == 0) return;
    p->bytes += bytes;
    uintptr_t first = ((uintptr_t)(base + (size_t)r0 * row_bytes)) & ~(uintptr_t)(w->page - 1);
    uintptr_t last = (uintptr_t)(base + (size_t)r1 * row_bytes - 1) & ~(uintptr_t)(w->page - 1);
    size_t n_pages = (last - first) / (size_t)w->page + 1;
    size_t step = n_pages > SAMPLE_PAGES ? n_pages / SAMPLE_PAGES : 1;
    void *pages[SAMPLE_PAGES + 1];
    int status[SAMPLE_PAGES + 1];
    int n = 0;
    for (size_t i = 0; i < n_pages && n <= SAMPLE_PAGES; i += step) {
        uint8_t *page = (uint8_t *)(first + i * (size_t)w->page);
        unsigned char resident = 0;
        if (mincore(page, 1, &resident) != 0 || !(resident & 1)) {
            p->sampled++;
            p->not_cached++;
            continue;
        }
        (void)*(volatile const uint8_t *)page;
        pages[n++] = page;
    }
    p->sampled += (uint64_t)n;
    if (n == 0) return;
    if (!w->topo->libnuma || numa_move_pages(0, (unsigned long)n, pages, NULL, status, 0) != 0) {
        p->unknown += (uint64_t)n;
        return;
    }
    for (int i = 0; i < n; i++) {
        int where = -1;
        for (int k = 0; k < w->topo->n_nodes && where < 0; k++)
            if (status[i] == w->topo->os_node[k]) where = k;
        if (status[i] < 0) p->unknown++;
        else if (w->topo->fake || where == node) p->local++;
        else p->remote++;
    }
}

static void sample_matrix(placement_walk *w, const weight_matrix *m, const uint8_t *data) {
    int nodes = w->topo->n_nodes;
    for (int node = 0; node < nodes; node++) {
        int64_t r0, r1;
        numa_split(m->rows, node, nodes, NUMA_ROW_ALIGN, &r0, &r1);
        sample_share(w, node, data ? data : m->data, m->row_bytes, r0, r1);
    }
}

void numa_model_placement(const grok_model *m, const numa_topology *t, numa_share_placement *out) {
    memset(out, 0, (size_t)t->n_nodes * sizeof *out);
    placement_walk w = {t, out, sysconf(_SC_PAGESIZE)};
    for (uint32_t l = 0; l < m->hp.n_layer; l++) {
        const grok_layer *L = &m->layers[l];
        const weight_matrix *always[] = {&L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down, &L->router};
        for (size_t i = 0; i < sizeof always / sizeof always[0]; i++) sample_matrix(&w, always[i], NULL);
        for (uint32_t e = 0; e < m->hp.n_expert; e++) {
            sample_matrix(&w, &L->gate_exps, L->gate_exps.data + e * L->gate_exps_slab);
            sample_matrix(&w, &L->up_exps, L->up_exps.data + e * L->up_exps_slab);
            sample_matrix(&w, &L->down_exps, L->down_exps.data + e * L->down_exps_slab);
        }
    }
    sample_matrix(&w, &m->output, NULL);
}

void numa_describe(const numa_topology *t, numa_mode mode, const int *threads, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "numa: %s, %d node%s", numa_mode_name(mode), t->n_nodes,
                                t->n_nodes == 1 ? "" : "s");
    if (t->fake && n < cap)
        n += (size_t)snprintf(buf + n, cap - n, " (GROK2_FAKE_NUMA: CPUs split, memory on node %d)", t->os_node[0]);
    else if (!t->libnuma && n < cap)
        n += (size_t)snprintf(buf + n, cap - n, " (no NUMA support)");
    for (int i = 0; i < t->n_nodes && n < cap; i++) {
        n += (size_t)snprintf(buf + n, cap - n, "%s node %d: %d cpu%s", i ? ";" : ":", numa_node_label(t, i),
                              t->n_cpus[i], t->n_cpus[i] == 1 ? "" : "s");
        if (threads && n < cap)
            n += (size_t)snprintf(buf + n, cap - n, ", %d thread%s", threads[i], threads[i] == 1 ? "" : "s");
    }
}

int numa_node_label(const numa_topology *t, int node) { return t->fake ? node : t->os_node[node]; }

int numa_balancing_state(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int mode;
    bool parsed = fscanf(f, "%d", &mode) == 1;
    fclose(f);
    return parsed ? mode != 0 : -1;
}

void numa_balancing_warn(const numa_topology *t) {
    static const char path[] = "/proc/sys/kernel/numa_balancing";
    if (t->n_nodes > 1 && !t->fake && numa_balancing_state(path) == 1)
        fprintf(stderr,
                "grok2: warning: automatic NUMA balancing is on (%s): the kernel unmaps pages now and then "
                "to see which node uses them, and decode pays a fault on its next read of each; to turn it "
                "off: echo 0 | sudo tee %s\n",
                path, path);
}

/* ---- --no-mmap: the weights copied into node-local memory ------------------------------------ */

#define COPY_CHUNK (4u << 20) /* bytes per copy task: many tasks per share, so a node's threads balance */

typedef struct {
    uint64_t offset, len;
} byte_range;

typedef struct {
    const uint8_t *src;
    uint8_t *dst;
    const byte_range *ranges;
} copy_job;

static void copy_task(void *p, int64_t task, int thread) {
    const copy_job *job = p;
    const byte_range *r = &job->ranges[task];
    memcpy(job->dst + r->offset, job->src + r->offset, r->len);
}

/* Group g's byte ranges of the file, in chunks: its share of the rows of every slab of every
 * tensor of two or more dimensions (the split forward.c's matmuls use). Counts when out is NULL. */
static int64_t share_ranges(const gguf_file *f, const uint8_t *base, int g, int groups, byte_range *out) {
    int64_t n = 0;
    for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (t->n_dims < 2) continue;
        int64_t rows = t->ne[1], slabs = t->ne[2] * t->ne[3];
        size_t row_bytes = t->nbytes / (size_t)(rows * slabs), slab_bytes = row_bytes * (size_t)rows;
        uint64_t start = (uint64_t)((const uint8_t *)t->data - base);
        for (int64_t s = 0; s < slabs; s++) {
            int64_t r0, r1;
            numa_split(rows, g, groups, NUMA_ROW_ALIGN, &r0, &r1);
            uint64_t b = start + (uint64_t)s * slab_bytes + (uint64_t)r0 * row_bytes;
            uint64_t e = start + (uint64_t)s * slab_bytes + (uint64_t)r1 * row_bytes;
            for (; b < e; b += COPY_CHUNK, n++)
                if (out) out[n] = (byte_range){b, e - b < COPY_CHUNK ? e - b : COPY_CHUNK};
        }
    }
    return n;
}

static void rebase(weight_matrix *w, const uint8_t *from, size_t size, uint8_t *to) {
    if (w->data >= from && w->data < from + size) w->data = to + (w->data - from);
}

int numa_copy_weights(const grok_model *m, thread_pool *pool, bool shard, grok_model *copy, grok_layer **layers,
                      void **memory, size_t *size, g2_error *err) {
    const gguf_file *f = m->file;
    size_t bytes = (size_t)gguf_file_size(f);
    const gguf_tensor *first = gguf_tensor_count(f) ? gguf_tensor_at(f, 0) : NULL;
    if (!first) return g2_fail(err, "%s: no tensors to copy", gguf_path(f));
    const uint8_t *src = (const uint8_t *)first->data - first->offset - gguf_data_offset(f);
    /* untouched pages: each is placed on the node of the thread that first writes it */
    uint8_t *dst = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (dst != MAP_FAILED) madvise(dst, bytes, MADV_HUGEPAGE); /* as the file mapping (gguf_read.c) */
    if (dst == MAP_FAILED)
        return g2_fail(err, "--no-mmap: cannot have %.1f GiB of memory for %s (%s); run without --no-mmap",
                       (double)bytes / (1u << 30), gguf_path(f), strerror(errno));
    int groups = shard ? thread_pool_groups(pool) : 1;
    int64_t counts[POOL_MAX_GROUPS], total = 0;
    for (int g = 0; g < groups; g++) total += counts[g] = share_ranges(f, src, g, groups, NULL);
    byte_range *ranges = malloc((size_t)(total ? total : 1) * sizeof *ranges);
    *layers = malloc(m->hp.n_layer * sizeof **layers);
    if (!ranges || !*layers) {
        free(ranges);
        free(*layers);
        munmap(dst, bytes);
        return g2_fail(err, "out of memory");
    }
    for (int g = 0, at = 0; g < groups; g++) at += (int)share_ranges(f, src, g, groups, ranges + at);
    copy_job job = {src, dst, ranges};
    thread_pool_run_groups(pool, copy_task, &job, counts);
    free(ranges);
    /* the header and the one-dimensional tensors (norms, biases) */
    memcpy(dst, src, gguf_data_offset(f));
    for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (t->n_dims < 2) memcpy(dst + ((const uint8_t *)t->data - src), t->data, t->nbytes);
    }
    *copy = *m;
    copy->mapped = false; /* anonymous memory: no page-cache advice, no paging out to the file */
    memcpy(*layers, m->layers, m->hp.n_layer * sizeof **layers);
    copy->layers = *layers;
    for (uint32_t l = 0; l < m->hp.n_layer; l++) {
        grok_layer *L = &copy->layers[l];
        weight_matrix *all[] = {&L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down, &L->router,
                                &L->gate_exps, &L->up_exps, &L->down_exps};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) rebase(all[i], src, bytes, dst);
    }
    rebase(&copy->embedding, src, bytes, dst);
    rebase(&copy->output, src, bytes, dst);
    /* the file's pages are no longer needed in this process (the page cache may keep them) */
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t from = ((uintptr_t)src + (uintptr_t)gguf_data_offset(f) + (uintptr_t)page - 1) & ~(uintptr_t)(page - 1);
    if (from < (uintptr_t)src + bytes) madvise((void *)from, (uintptr_t)src + bytes - from, MADV_DONTNEED);
    *memory = dst;
    *size = bytes;
    return 0;
}

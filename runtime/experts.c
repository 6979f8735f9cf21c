/* Experts from the mapping. Only top-k of the experts' slabs are read per token, so a model file
 * larger than memory can run with its always-on weights resident and the experts paged in on
 * demand. This file owns that policy for one context:
 *   - advice: after a layer's router has chosen, MADV_WILLNEED on the chosen slabs starts their
 *     reads while the dense MLP computes (--prefetch chosen); --prefetch next also advises the
 *     experts the next layer's router is guessed to choose (forward.c computes the guess); with
 *     either, the expert tensors are MADV_RANDOM (--prefetch off: a plain mmap, no advice);
 *   - a bound (--expert-cache-mb): slabs touched are kept on an LRU list; beyond the bound the
 *     least recently used are reclaimed with MADV_PAGEOUT (Linux 5.4+; MADV_DONTNEED, which only
 *     unmaps, where the kernel refuses it). Slabs of the layer being computed are never evicted;
 *   - --mlock-dense: the always-on tensors (everything but the experts and the embedding table,
 *     whose rows are read one per token) locked in memory;
 *   - counters for --stats and `grok2 profile`: per-layer expert usage, guesses and hits.
 * The hooks run in the token loop: they count, walk preallocated arrays and call madvise, never
 * allocate or lock. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "experts.h"

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

#define NO_LAYER UINT32_MAX

struct expert_stream {
    const grok_model *model;
    prefetch_mode mode;
    uint32_t n_layer, n_expert, k;
    grok_expert_stats stats;
    uint64_t *usage;         /* [n_layer][n_expert], stats.usage */
    uint64_t layer_chosen;   /* experts the current layer's tokens chose */
    uint32_t guess_layer;    /* layer guess[] is for, or NO_LAYER */
    uint64_t *guess;         /* [max_batch]: each token's guessed experts for guess_layer */
    uint64_t guess_union;
    /* --expert-cache-mb: an LRU list over slabs l * n_expert + e (head: most recent) */
    int32_t *lru_prev, *lru_next, lru_head, lru_tail;
    uint32_t *lru_stamp; /* step of the last touch: the current step's slabs stay */
    uint8_t *in_cache;
    uint32_t step;
    int evict_advice; /* MADV_PAGEOUT, or MADV_DONTNEED on a kernel without it */
    bool locked;      /* --mlock-dense succeeded: munlock at free */
    /* NUMA shard: readahead lands on the node of the thread that asks for it, so each node's
     * threads advise their own share of the rows; the advice waits here for them */
    int share_groups;          /* > 1: defer WILLNEED to expert_stream_advise_share */
    uint32_t pending_layer[2]; /* the chosen layer, and the guessed next one */
    uint64_t pending_mask[2];
    int n_pending;
};

const char *prefetch_mode_name(prefetch_mode m) {
    return m == PREFETCH_DEFAULT ? "auto" : m == PREFETCH_OFF ? "off" : m == PREFETCH_NEXT ? "next" : "chosen";
}

int prefetch_mode_parse(const char *name, prefetch_mode *out) {
    if (!strcmp(name, "auto")) *out = PREFETCH_DEFAULT;
    else if (!strcmp(name, "off")) *out = PREFETCH_OFF;
    else if (!strcmp(name, "chosen")) *out = PREFETCH_CHOSEN;
    else if (!strcmp(name, "next")) *out = PREFETCH_NEXT;
    else return -1;
    return 0;
}

/* ---- ranges of the mapping ----------------------------------------------------------------- */

typedef enum { TENSOR_EXPERTS, TENSOR_ALWAYS_ON, TENSOR_EMBEDDING } tensor_kind;

static tensor_kind kind_of(const gguf_tensor *t) {
    if (strstr(t->name, "_exps.")) return TENSOR_EXPERTS;
    return strcmp(t->name, "token_embd.weight") ? TENSOR_ALWAYS_ON : TENSOR_EMBEDDING;
}

static size_t page_size(void) {
    static size_t page;
    if (!page) page = (size_t)sysconf(_SC_PAGESIZE);
    return page;
}

/* The whole pages covering [p, p + n). */
static void *page_start(const void *p, size_t n, size_t *len) {
    uintptr_t start = (uintptr_t)p & ~(uintptr_t)(page_size() - 1), end = (uintptr_t)p + n;
    *len = end - start;
    return (void *)start;
}

static void advise(const void *p, size_t n, int advice) {
    size_t len;
    void *start = page_start(p, n, &len);
    (void)madvise(start, len, advice); /* advice only: a refusal changes speed, never results */
}

/* With advice, MADV_RANDOM over the expert tensors: WILLNEED reads whole slabs, and readahead
 * around a fault would read the neighbouring experts, which the router did not choose. Without
 * (--prefetch off) the kernel's default readahead, as a plain mmap has. */
static void advise_expert_tensors(const grok_model *m, int advice) {
    for (int64_t i = 0; i < gguf_tensor_count(m->file); i++) {
        const gguf_tensor *t = gguf_tensor_at(m->file, i);
        if (kind_of(t) == TENSOR_EXPERTS) advise(t->data, t->nbytes, advice);
    }
}

/* Applies fn to every always-on tensor's pages; stops at the first failure (returns its index
 * or -1 when all succeeded). */
static int64_t each_always_on(const grok_model *m, int (*fn)(const void *, size_t), int64_t count) {
    for (int64_t i = 0; i < count; i++) {
        const gguf_tensor *t = gguf_tensor_at(m->file, i);
        if (kind_of(t) != TENSOR_ALWAYS_ON) continue;
        size_t len;
        void *start = page_start(t->data, t->nbytes, &len);
        if (fn(start, len)) return i;
    }
    return -1;
}

static int lock_pages(const void *p, size_t n) { return mlock(p, n); }
static int unlock_pages(const void *p, size_t n) { return munlock(p, n); }

static bool lock_always_on(const grok_model *m) {
    int64_t n = gguf_tensor_count(m->file);
    int64_t failed = each_always_on(m, lock_pages, n);
    if (failed < 0) return true;
    int e = errno;
    each_always_on(m, unlock_pages, failed);
    size_t total = 0;
    for (int64_t i = 0; i < n; i++)
        if (kind_of(gguf_tensor_at(m->file, i)) == TENSOR_ALWAYS_ON) total += gguf_tensor_at(m->file, i)->nbytes;
    struct rlimit lim;
    char limit[64] = "unknown";
    if (getrlimit(RLIMIT_MEMLOCK, &lim) == 0) {
        if (lim.rlim_cur == RLIM_INFINITY) snprintf(limit, sizeof limit, "unlimited");
        else snprintf(limit, sizeof limit, "%llu KiB", (unsigned long long)lim.rlim_cur >> 10);
    }
    fprintf(stderr,
            "grok2: warning: --mlock-dense: cannot lock the %zu MiB of always-on weights of %s (%s; "
            "RLIMIT_MEMLOCK is %s, raise it with ulimit -l): running unlocked\n",
            total >> 20, gguf_path(m->file), strerror(e), limit);
    return false;
}

/* ---- the stream ------------------------------------------------------------------------------ */

/* A number from the first line of a file (a cgroup limit), or 0 ("max", missing, unreadable). */
static uint64_t read_limit(const char *path) {
    FILE *f = fopen(path, "r");
    unsigned long long v = 0;
    if (f) {
        if (fscanf(f, "%llu", &v) != 1) v = 0;
        fclose(f);
    }
    return v;
}

uint64_t memory_for_process(void) {
    uint64_t total = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[4096], path[4200];
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        const char *group = NULL, *file = NULL;
        if (!strncmp(line, "0::", 3)) group = line + 3, file = "/sys/fs/cgroup%s/memory.max"; /* v2 */
        else if (strstr(line, ":memory:")) group = strstr(line, ":memory:") + 8,
                                            file = "/sys/fs/cgroup/memory%s/memory.limit_in_bytes"; /* v1 */
        if (!group) continue;
        snprintf(path, sizeof path, file, group);
        uint64_t limit = read_limit(path);
        if (limit && limit < total) total = limit;
    }
    if (f) fclose(f);
    return total;
}

prefetch_mode prefetch_auto_mode(uint64_t file_bytes, uint64_t memory_bytes) {
    /* a file that fits (with room for the KV cache and the rest) stays in the page cache after
     * its first pass, where advice is only syscalls; one that does not is read per token */
    return file_bytes <= memory_bytes / 10 * 9 ? PREFETCH_OFF : PREFETCH_CHOSEN;
}

int expert_stream_new(expert_stream **out, const grok_model *m, const grok_context_params *params, uint32_t max_batch,
                      g2_error *err) {
    const grok_hparams *hp = &m->hp;
    expert_stream *s = calloc(1, sizeof *s);
    if (!s) return g2_fail(err, "out of memory");
    size_t slabs = (size_t)hp->n_layer * hp->n_expert;
    s->model = m;
    s->mode = params->prefetch != PREFETCH_DEFAULT ? params->prefetch
                                                   : prefetch_auto_mode(gguf_file_size(m->file), memory_for_process());
    s->n_layer = hp->n_layer, s->n_expert = hp->n_expert, s->k = hp->n_expert_used;
    s->usage = calloc(slabs, sizeof *s->usage);
    s->guess = calloc(max_batch, sizeof *s->guess);
    s->guess_layer = NO_LAYER;
    s->lru_prev = malloc(slabs * sizeof *s->lru_prev);
    s->lru_next = malloc(slabs * sizeof *s->lru_next);
    s->lru_stamp = calloc(slabs, sizeof *s->lru_stamp);
    s->in_cache = calloc(slabs, 1);
    s->lru_head = s->lru_tail = -1;
    /* a zero-length call checks only that the kernel knows the advice (MADV_PAGEOUT: 5.4+);
     * where it does not, MADV_DONTNEED at least unmaps, leaving the pages easy to reclaim */
    s->evict_advice = madvise(NULL, 0, MADV_PAGEOUT) == 0 ? MADV_PAGEOUT : MADV_DONTNEED;
    if (!s->usage || !s->guess || !s->lru_prev || !s->lru_next || !s->lru_stamp || !s->in_cache) {
        expert_stream_free(s);
        return g2_fail(err, "out of memory");
    }
    s->stats = (grok_expert_stats){.n_layer = hp->n_layer, .n_expert = hp->n_expert, .n_expert_used = hp->n_expert_used,
                                   .prefetch = s->mode, .usage = s->usage,
                                   .cache_limit = (size_t)params->expert_cache_mb << 20};
    if (m->mapped) advise_expert_tensors(m, s->mode == PREFETCH_OFF ? MADV_NORMAL : MADV_RANDOM);
    if (params->mlock_dense && m->mapped) s->locked = lock_always_on(m);
    *out = s;
    return 0;
}

void expert_stream_free(expert_stream *s) {
    if (!s) return;
    if (s->locked) each_always_on(s->model, unlock_pages, gguf_tensor_count(s->model->file));
    free(s->usage);
    free(s->guess);
    free(s->lru_prev);
    free(s->lru_next);
    free(s->lru_stamp);
    free(s->in_cache);
    free(s);
}

const grok_expert_stats *expert_stream_stats(const expert_stream *s) { return &s->stats; }

uint64_t expert_top_k(const float *r, uint32_t n, uint32_t k) {
    uint64_t taken = 0;
    for (uint32_t j = 0; j < k; j++) {
        int best = -1;
        for (uint32_t e = 0; e < n; e++)
            if (!(taken >> e & 1) && (best < 0 || r[e] > r[best])) best = (int)e;
        taken |= 1ull << best;
    }
    return taken;
}

/* Expert e's three slabs in layer l: gate, up, down. */
static void slabs_of(const expert_stream *s, uint32_t l, uint32_t e, const uint8_t *p[3], size_t n[3]) {
    const grok_layer *L = &s->model->layers[l];
    p[0] = L->gate_exps.data + e * L->gate_exps_slab, n[0] = L->gate_exps_slab;
    p[1] = L->up_exps.data + e * L->up_exps_slab, n[1] = L->up_exps_slab;
    p[2] = L->down_exps.data + e * L->down_exps_slab, n[2] = L->down_exps_slab;
}

/* WILLNEED covers every page a slab touches; eviction only the pages wholly inside it, as a
 * page at its edge is shared with the neighbouring tensor (locked, maybe, by --mlock-dense,
 * which would make the kernel refuse the whole call). */
static void advise_expert(expert_stream *s, uint32_t l, uint32_t e, int advice) {
    const uint8_t *p[3];
    size_t n[3];
    slabs_of(s, l, e, p, n);
    double t0 = cli_now_seconds();
    for (int i = 0; i < 3; i++) {
        size_t len;
        uint8_t *start = page_start(p[i], n[i], &len);
        if (advice != MADV_WILLNEED) {
            size_t page = page_size(), head = start < p[i] ? page : 0, tail = (uintptr_t)(p[i] + n[i]) % page;
            if (len < head + tail + page) continue;
            start += head, len -= head + tail;
        }
        (void)madvise(start, len, advice); /* advice: a refusal changes speed, never results */
    }
    s->stats.advice_seconds += cli_now_seconds() - t0;
}

static size_t expert_bytes(const expert_stream *s, uint32_t l) {
    const grok_layer *L = &s->model->layers[l];
    return L->gate_exps_slab + L->up_exps_slab + L->down_exps_slab;
}

static void lru_unlink(expert_stream *s, int32_t i) {
    int32_t prev = s->lru_prev[i], next = s->lru_next[i];
    if (prev >= 0) s->lru_next[prev] = next;
    else s->lru_head = next;
    if (next >= 0) s->lru_prev[next] = prev;
    else s->lru_tail = prev;
}

/* Slab l * n_expert + e to the head of the list, then the oldest out until the bound holds. */
static void lru_touch(expert_stream *s, uint32_t l, uint32_t e) {
    int32_t i = (int32_t)(l * s->n_expert + e);
    if (s->in_cache[i]) {
        lru_unlink(s, i);
    } else {
        s->in_cache[i] = 1;
        s->stats.cache_bytes += expert_bytes(s, l);
    }
    s->lru_prev[i] = -1, s->lru_next[i] = s->lru_head;
    if (s->lru_head >= 0) s->lru_prev[s->lru_head] = i;
    s->lru_head = i;
    if (s->lru_tail < 0) s->lru_tail = i;
    s->lru_stamp[i] = s->step;
    while (s->stats.cache_bytes > s->stats.cache_limit && s->lru_tail >= 0 && s->lru_stamp[s->lru_tail] != s->step) {
        int32_t old = s->lru_tail;
        uint32_t old_layer = (uint32_t)old / s->n_expert;
        lru_unlink(s, old);
        s->in_cache[old] = 0;
        s->stats.cache_bytes -= expert_bytes(s, old_layer);
        s->stats.evictions++;
        s->stats.evicted_bytes += expert_bytes(s, old_layer);
        if (s->model->mapped) advise_expert(s, old_layer, (uint32_t)old % s->n_expert, s->evict_advice);
    }
}

/* WILLNEED (when prefetching) and the LRU (when bounded) for the experts in mask. */
static void bring_in(expert_stream *s, uint32_t l, uint64_t mask) {
    bool prefetch = s->mode != PREFETCH_OFF && s->model->mapped;
    if (prefetch && s->share_groups > 1 && mask && s->n_pending < 2) {
        s->pending_layer[s->n_pending] = l;
        s->pending_mask[s->n_pending++] = mask;
    }
    for (uint32_t e = 0; e < s->n_expert; e++) {
        if (!(mask >> e & 1)) continue;
        if (prefetch) {
            if (s->share_groups <= 1) advise_expert(s, l, e, MADV_WILLNEED);
            s->stats.advised_bytes += expert_bytes(s, l);
        }
        if (s->stats.cache_limit) lru_touch(s, l, e);
    }
}

void expert_stream_begin(expert_stream *s, uint32_t layer, uint32_t n_tokens) {
    if (layer == 0) s->stats.tokens += n_tokens;
    if (s->guess_layer != layer) s->guess_layer = NO_LAYER;
    s->layer_chosen = 0;
}

void expert_stream_routed(expert_stream *s, uint32_t layer, uint32_t token, uint64_t chosen) {
    uint64_t *usage = s->usage + (size_t)layer * s->n_expert;
    for (uint32_t e = 0; e < s->n_expert; e++) usage[e] += chosen >> e & 1;
    s->layer_chosen |= chosen;
    if (s->guess_layer == layer) {
        s->stats.next_choices += s->k;
        s->stats.next_hits += (uint64_t)__builtin_popcountll(chosen & s->guess[token]);
    }
}

void expert_stream_chosen(expert_stream *s, uint32_t layer) {
    s->step++;
    bring_in(s, layer, s->layer_chosen);
}

void expert_stream_share_advice(expert_stream *s, int groups) { s->share_groups = groups; }

bool expert_stream_advice_pending(const expert_stream *s) { return s->n_pending > 0; }

/* Group `group`'s rows (numa_split, as the matmuls cut them) of every pending slab. */
void expert_stream_advise_share(expert_stream *s, int group) {
    for (int i = 0; i < s->n_pending; i++) {
        const grok_layer *L = &s->model->layers[s->pending_layer[i]];
        const weight_matrix *w[3] = {&L->gate_exps, &L->up_exps, &L->down_exps};
        size_t slab[3] = {L->gate_exps_slab, L->up_exps_slab, L->down_exps_slab};
        for (uint32_t e = 0; e < s->n_expert; e++) {
            if (!(s->pending_mask[i] >> e & 1)) continue;
            for (int k = 0; k < 3; k++) {
                int64_t r0, r1;
                numa_split(w[k]->rows, group, s->share_groups, NUMA_ROW_ALIGN, &r0, &r1);
                size_t len;
                uint8_t *start = page_start(w[k]->data + e * slab[k] + (size_t)r0 * w[k]->row_bytes,
                                            (size_t)(r1 - r0) * w[k]->row_bytes, &len);
                if (r1 > r0) (void)madvise(start, len, MADV_WILLNEED);
            }
        }
    }
}

void expert_stream_advised(expert_stream *s, double seconds) {
    s->n_pending = 0;
    s->stats.advice_seconds += seconds;
}

bool expert_stream_wants_guesses(const expert_stream *s, uint32_t layer) {
    return s->mode == PREFETCH_NEXT && layer + 1 < s->n_layer;
}

void expert_stream_guess(expert_stream *s, uint32_t next_layer, uint32_t token, uint64_t guessed) {
    if (s->guess_layer != next_layer) s->guess_union = 0;
    s->guess_layer = next_layer;
    s->guess[token] = guessed;
    s->guess_union |= guessed;
}

void expert_stream_guessed(expert_stream *s, uint32_t next_layer) {
    if (s->guess_layer == next_layer) bring_in(s, next_layer, s->guess_union);
    s->guess_union = 0;
}

/* ---- what the process did and what is resident -------------------------------------------- */

void grok_io_counters_now(grok_io_counters *c) {
    struct rusage ru;
    *c = (grok_io_counters){0};
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        c->major_faults = (uint64_t)ru.ru_majflt, c->minor_faults = (uint64_t)ru.ru_minflt;
    char text[1024];
    int fd = open("/proc/self/io", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t got = read(fd, text, sizeof text - 1);
    close(fd);
    if (got <= 0) return;
    text[got] = 0;
    const char *line = strstr(text, "\nread_bytes:");
    if (line) c->read_bytes = strtoull(line + 12, NULL, 10), c->have_read_bytes = true;
}

void grok_model_residency(const grok_model *m, double *experts, double *always_on) {
    *experts = *always_on = -1;
    if (!m->mapped) return;
    size_t resident[3] = {0}, total[3] = {0}, page = page_size();
    unsigned char vec[1024];
    for (int64_t i = 0; i < gguf_tensor_count(m->file); i++) {
        const gguf_tensor *t = gguf_tensor_at(m->file, i);
        tensor_kind kind = kind_of(t);
        size_t len;
        uint8_t *p = page_start(t->data, t->nbytes, &len);
        for (size_t done = 0; done < len; done += sizeof vec * page) {
            size_t chunk = len - done < sizeof vec * page ? len - done : sizeof vec * page;
            size_t pages = (chunk + page - 1) / page;
            total[kind] += pages;
            if (mincore(p + done, chunk, vec)) continue;
            for (size_t j = 0; j < pages; j++) resident[kind] += vec[j] & 1;
        }
    }
    *experts = total[TENSOR_EXPERTS] ? (double)resident[TENSOR_EXPERTS] / total[TENSOR_EXPERTS] : 1;
    *always_on = total[TENSOR_ALWAYS_ON] ? (double)resident[TENSOR_ALWAYS_ON] / total[TENSOR_ALWAYS_ON] : 1;
}

void grok_io_print(FILE *out, const char *command, const char *phase, const grok_io_counters *before,
                   const grok_io_counters *after, uint64_t tokens) {
    double per = tokens ? 1.0 / (double)tokens : 0;
    fprintf(out, "grok2 %s: stats: %s %llu tokens: %.1f major faults/token, %.1f minor faults/token, ", command, phase,
            (unsigned long long)tokens, (double)(after->major_faults - before->major_faults) * per,
            (double)(after->minor_faults - before->minor_faults) * per);
    if (before->have_read_bytes && after->have_read_bytes)
        fprintf(out, "%.3f MB read from disk/token\n", (double)(after->read_bytes - before->read_bytes) * per / 1e6);
    else
        fprintf(out, "disk reads unavailable (/proc/self/io unreadable)\n");
}

void grok_expert_stats_print(FILE *out, const char *command, const grok_context *ctx, const grok_model *m) {
    const grok_expert_stats *st = grok_context_expert_stats(ctx);
    double per_token = st->tokens ? 1.0 / (double)st->tokens : 0;
    fprintf(out,
            "grok2 %s: stats: %llu tokens evaluated, --prefetch %s, %.1f MB of expert advice/token, "
            "%.2f ms/token in madvise\n",
            command, (unsigned long long)st->tokens, prefetch_mode_name(st->prefetch),
            (double)st->advised_bytes * per_token / 1e6, st->advice_seconds * per_token * 1e3);
    if (st->prefetch == PREFETCH_NEXT)
        fprintf(out, "grok2 %s: stats: next-layer guesses: %llu of %llu choices of layers 1..%u right (%.1f%%)\n",
                command, (unsigned long long)st->next_hits, (unsigned long long)st->next_choices, st->n_layer - 1,
                st->next_choices ? 100.0 * (double)st->next_hits / (double)st->next_choices : 0.0);
    if (st->cache_limit)
        fprintf(out, "grok2 %s: stats: expert cache %.1f of %zu MiB, %llu evictions (%.1f MB)\n", command,
                (double)st->cache_bytes / (1 << 20), st->cache_limit >> 20, (unsigned long long)st->evictions,
                (double)st->evicted_bytes / 1e6);
    double experts, always_on;
    grok_model_residency(m, &experts, &always_on);
    if (experts >= 0)
        fprintf(out, "grok2 %s: stats: resident now: %.1f%% of the expert slabs, %.1f%% of the always-on weights\n",
                command, 100 * experts, 100 * always_on);
    fprintf(out, "grok2 %s: stats: expert usage (tokens routed to experts 0..%u, per layer):\n", command,
            st->n_expert - 1);
    for (uint32_t l = 0; l < st->n_layer; l++) {
        fprintf(out, "  layer %3u:", l);
        for (uint32_t e = 0; e < st->n_expert; e++)
            fprintf(out, " %llu", (unsigned long long)st->usage[(size_t)l * st->n_expert + e]);
        fputc('\n', out);
    }
}

/* The writing pipeline shared by convert, quantize and synth --gguf. Each tensor is processed
 * in chunks of rows: every thread takes small blocks of rows, reads them from the source as
 * floats and quantizes them into the chunk's output buffer; the chunk then streams through the
 * GGUF writer and its source pages are dropped. Peak memory is therefore one output chunk, one
 * source chunk of mapped pages and a small scratch per thread, whatever the model's size. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"

#define CHUNK_VALUES ((int64_t)16 << 20) /* 64 MiB of floats per chunk */
#define BLOCK_VALUES ((int64_t)1 << 16)  /* what a thread claims at a time: 256 KiB of floats */

typedef struct {
    const conv_tensor *t;
    int64_t row0, nrows, block_rows;
    uint8_t *out;
    size_t row_size;
    float **scratch; /* per thread */
    atomic_bool failed;
    pthread_mutex_t lock;
    g2_error err;
} chunk_work;

static void fail_chunk(chunk_work *w, const g2_error *e) {
    pthread_mutex_lock(&w->lock);
    if (!atomic_exchange(&w->failed, true)) w->err = *e;
    pthread_mutex_unlock(&w->lock);
}

/* Task: rows [task * block_rows, +block_rows) of the chunk (none once a task has failed). */
static void quantize_task(void *arg, int64_t task, int thread) {
    chunk_work *w = arg;
    const conv_tensor *t = w->t;
    float *values = w->scratch[thread];
    int64_t start = task * w->block_rows;
    if (atomic_load(&w->failed)) return;
    int64_t n = w->nrows - start < w->block_rows ? w->nrows - start : w->block_rows;
    g2_error e;
    if (source_read_rows(&t->src, w->row0 + start, n, values, &e)) {
        fail_chunk(w, &e);
        return;
    }
    size_t done = g2_quantize_rows(t->type.type, values, w->out + (size_t)start * w->row_size, n, t->ne[0], NULL);
    if (done != (size_t)n * w->row_size) {
        g2_fail(&e, "tensor '%s': this build cannot encode %s", t->name, g2_type_get(t->type.type)->name);
        fail_chunk(w, &e);
    }
}

typedef struct {
    gguf_writer *w;
    thread_pool *pool;
    float **scratch;
    uint8_t *out;
    progress bar;
} pipeline;

static int64_t chunk_rows_of(int64_t ne0) { return ne0 >= CHUNK_VALUES ? 1 : CHUNK_VALUES / ne0; }
static int64_t block_rows_of(int64_t ne0) { return ne0 >= BLOCK_VALUES ? 1 : BLOCK_VALUES / ne0; }

/* A tensor already in the wanted type (quantize from the same type): bytes copied as they are. */
static int copy_raw(pipeline *p, const conv_tensor *t, const uint8_t *raw, g2_error *err) {
    size_t row_size = g2_row_size(t->type.type, t->ne[0]);
    int64_t chunk = chunk_rows_of(t->ne[0]);
    for (int64_t row0 = 0; row0 < t->src.n_rows; row0 += chunk) {
        int64_t n = t->src.n_rows - row0 < chunk ? t->src.n_rows - row0 : chunk;
        if (gguf_writer_write(p->w, raw + (size_t)row0 * row_size, (size_t)n * row_size, err)) return -1;
        source_release_rows(&t->src, row0, n);
        progress_advance(&p->bar, t->src_bytes * (uint64_t)n / (uint64_t)t->src.n_rows);
    }
    return 0;
}

static int write_tensor(pipeline *p, const conv_tensor *t, g2_error *err) {
    const void *raw = source_raw_rows(&t->src, t->type.type, 0);
    if (raw) return copy_raw(p, t, raw, err);
    chunk_work work = {.t = t, .row_size = g2_row_size(t->type.type, t->ne[0]), .scratch = p->scratch, .out = p->out};
    work.block_rows = block_rows_of(t->ne[0]);
    pthread_mutex_init(&work.lock, NULL);
    int64_t chunk = chunk_rows_of(t->ne[0]), total = t->src.n_rows;
    int rc = 0;
    for (int64_t row0 = 0; row0 < total && rc == 0; row0 += chunk) {
        work.row0 = row0;
        work.nrows = total - row0 < chunk ? total - row0 : chunk;
        int64_t next = row0 + work.nrows; /* read the next chunk ahead while this one computes */
        if (next < total) source_prefetch_rows(&t->src, next, total - next < chunk ? total - next : chunk);
        thread_pool_run(p->pool, quantize_task, &work, (work.nrows + work.block_rows - 1) / work.block_rows);
        if (atomic_load(&work.failed)) {
            *err = work.err;
            rc = -1;
        } else {
            rc = gguf_writer_write(p->w, p->out, (size_t)work.nrows * work.row_size, err);
        }
        source_release_rows(&t->src, row0, work.nrows);
        progress_advance(&p->bar, t->src_bytes * (uint64_t)work.nrows / (uint64_t)total);
    }
    pthread_mutex_destroy(&work.lock);
    return rc;
}

static void shape_text(const conv_tensor *t, char *buf, size_t size) {
    int n = snprintf(buf, size, "%" PRId64, t->ne[0]);
    for (uint32_t d = 1; d < t->n_dims && n > 0 && (size_t)n < size; d++)
        n += snprintf(buf + n, size - (size_t)n, " x %" PRId64, t->ne[d]);
}

static uint64_t tensor_bytes(const conv_tensor *t) {
    uint64_t rows = (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]);
    return rows * g2_row_size(t->type.type, t->ne[0]);
}

static void print_plan(const conv_tensor *t, int64_t n, uint64_t file_size) {
    printf("%-32s %-22s %-6s %14s\n", "tensor", "shape (ne)", "type", "bytes");
    uint64_t in = 0, out = 0;
    for (int64_t i = 0; i < n; i++) {
        char shape[64];
        shape_text(&t[i], shape, sizeof shape);
        uint64_t bytes = tensor_bytes(&t[i]);
        printf("%-32s %-22s %-6s %14" PRIu64 "\n", t[i].name, shape, g2_type_get(t[i].type.type)->name, bytes);
        in += t[i].src_bytes;
        out += bytes;
    }
    char a[16], b[16], c[16];
    printf("total: %" PRId64 " tensors, %s read, %s of tensor data, file %s (%" PRIu64 " bytes)\n", n,
           format_bytes(in, a, sizeof a), format_bytes(out, b, sizeof b), format_bytes(file_size, c, sizeof c),
           file_size);
}

static void note_fallbacks(const conv_tensor *t, int64_t n, const char *label) {
    for (int64_t i = 0; i < n; i++)
        if (t[i].type.type != t[i].type.wanted) {
            const g2_type_traits *want = g2_type_get(t[i].type.wanted);
            fprintf(stderr, "%s: %s: rows of %" PRId64 " values do not fill %s blocks of %" PRId64 ": writing %s\n",
                    label, t[i].name, t[i].ne[0], want->name, want->block_size, g2_type_get(t[i].type.type)->name);
        }
}

static int declare_tensors(gguf_writer *w, const conv_tensor *t, int64_t n, g2_error *err) {
    for (int64_t i = 0; i < n; i++)
        if (gguf_writer_add_tensor(w, t[i].name, t[i].type.type, t[i].n_dims, t[i].ne, err)) return -1;
    return 0;
}

static int alloc_buffers(pipeline *p, const conv_tensor *t, int64_t n) {
    size_t out_max = 1, scratch_max = 1;
    for (int64_t i = 0; i < n; i++) {
        int64_t ne0 = t[i].ne[0], rows = t[i].src.n_rows;
        int64_t chunk = chunk_rows_of(ne0) < rows ? chunk_rows_of(ne0) : rows;
        size_t out = (size_t)chunk * g2_row_size(t[i].type.type, ne0);
        size_t scratch = (size_t)(block_rows_of(ne0) * ne0);
        if (out > out_max) out_max = out;
        if (scratch > scratch_max) scratch_max = scratch;
    }
    int threads = thread_pool_size(p->pool);
    p->out = malloc(out_max);
    p->scratch = calloc((size_t)threads, sizeof *p->scratch);
    if (!p->out || !p->scratch) return -1;
    for (int i = 0; i < threads; i++)
        if (!(p->scratch[i] = malloc(scratch_max * sizeof(float)))) return -1;
    return 0;
}

static void free_buffers(pipeline *p) {
    for (int i = 0; p->scratch && i < thread_pool_size(p->pool); i++) free(p->scratch[i]);
    free(p->scratch);
    free(p->out);
}

int write_gguf(gguf_writer *w, conv_tensor *t, int64_t n, const write_job *job, g2_error *err) {
    if (declare_tensors(w, t, n, err)) return -1;
    note_fallbacks(t, n, job->label);
    if (job->dry_run) {
        print_plan(t, n, gguf_writer_total_size(w));
        return 0;
    }
    int threads = job->threads > 0 ? job->threads : pool_process_cpu_count();
    thread_pool *own = job->pool ? NULL : thread_pool_new(threads);
    pipeline p = {.w = w, .pool = job->pool ? job->pool : own};
    if (!p.pool) return g2_fail(err, "%s: cannot start %d threads", job->label, threads);
    uint64_t total = 0;
    for (int64_t i = 0; i < n; i++) total += t[i].src_bytes;
    int rc = alloc_buffers(&p, t, n) ? g2_fail(err, "%s: out of memory for the chunk buffers", job->label) : 0;
    double start = now_seconds();
    if (rc == 0) rc = gguf_writer_begin(w, job->out_path, err);
    progress_start(&p.bar, job->label, total);
    for (int64_t i = 0; i < n && rc == 0; i++) rc = write_tensor(&p, &t[i], err);
    if (rc == 0) rc = gguf_writer_finish(w, err);
    if (rc == 0) {
        progress_finish(&p.bar);
        char a[16], b[16];
        double seconds = now_seconds() - start;
        fprintf(stderr, "%s: wrote %s (%s) in %.1f s, %s/s of input on %d thread(s)\n", job->label, job->out_path,
                format_bytes(gguf_writer_total_size(w), a, sizeof a), seconds,
                format_bytes((uint64_t)((double)total / (seconds > 0 ? seconds : 1e-9)), b, sizeof b),
                thread_pool_size(p.pool));
    } else {
        progress_abort(&p.bar);
    }
    free_buffers(&p);
    thread_pool_free(own);
    return rc;
}

/* A synthetic checkpoint in the release's exact layout: the same 18 file groups xAI published
 * (0 embedding, 1 lm_head, 2 final norm, 3-5 dense MLP gate/down/up, 6-8 experts w1/w2/w3 in
 * one file per TP rank, 9-12 attention k/o/q/v, 13-16 the four norms, 17 the router), bf16,
 * plus config.json and tokenizer.tok.json. Values come from synth_fill, generated on every
 * thread in chunks of rows, so memory stays at one chunk whatever the preset. */
#include <stdlib.h>
#include <string.h>

#include "convert.h"

#define CHUNK_BYTES ((size_t)16 << 20)

static const grok_role file_groups[] = {
    ROLE_TOKEN_EMBD,    ROLE_OUTPUT,      ROLE_OUTPUT_NORM, ROLE_FFN_GATE,  ROLE_FFN_DOWN,         ROLE_FFN_UP,
    ROLE_FFN_GATE_EXPS, ROLE_FFN_DOWN_EXPS, ROLE_FFN_UP_EXPS, ROLE_ATTN_K,  ROLE_ATTN_OUTPUT,      ROLE_ATTN_Q,
    ROLE_ATTN_V,        ROLE_ATTN_NORM,   ROLE_ATTN_OUTPUT_NORM, ROLE_FFN_NORM, ROLE_POST_FFW_NORM, ROLE_FFN_GATE_INP,
};
#define N_GROUPS (int)(sizeof file_groups / sizeof file_groups[0])

/* One stored tensor: matrix `mat` of g, the slice of TP rank `rank` (or all of it). */
typedef struct {
    grok_tensor g;
    int mat;
    int64_t rows, cols, row0, col0; /* the slice, in the logical matrix */
} slice;

static slice make_slice(const grok_tensor *g, int mat, int rank, int tp) {
    slice s = {*g, mat, g->n_dims == 1 ? 1 : g->ne[1], g->ne[0], 0, 0};
    grok_join join = rank >= 0 ? grok_role_join(g->role) : JOIN_NONE;
    if (join == JOIN_ROWS) {
        s.rows /= tp;
        s.row0 = rank * s.rows;
    } else if (join == JOIN_COLS) {
        s.cols /= tp;
        s.col0 = rank * s.cols;
    }
    return s;
}

typedef struct {
    const synth_model *m;
    const slice *s;
    int64_t row0, nrows, block_rows;
    uint16_t *out;
    float **scratch;
} fill_work;

/* Task: rows [task * block_rows, +block_rows) of the chunk. */
static void fill_task(void *arg, int64_t task, int thread) {
    fill_work *w = arg;
    float *values = w->scratch[thread];
    int64_t start = task * w->block_rows;
    int64_t end = start + w->block_rows < w->nrows ? start + w->block_rows : w->nrows;
    for (int64_t r = start; r < end; r++) {
        synth_fill(w->m, &w->s->g, w->s->mat, w->s->row0 + w->row0 + r, w->s->col0, w->s->cols, values);
        uint16_t *dst = w->out + r * w->s->cols;
        for (int64_t c = 0; c < w->s->cols; c++) dst[c] = g2_f32_to_bf16(values[c]);
    }
}

typedef struct {
    const synth_model *m;
    thread_pool *pool;
    uint16_t *out;
    float **scratch;
    progress bar;
} synth_run;

static int write_slice(synth_run *run, st_writer *w, const slice *s, g2_error *err) {
    int64_t chunk = (int64_t)(CHUNK_BYTES / 2) / s->cols;
    if (chunk < 1) chunk = 1;
    fill_work work = {.m = run->m, .s = s, .out = run->out, .scratch = run->scratch};
    work.block_rows = 16;
    for (int64_t row0 = 0; row0 < s->rows; row0 += chunk) {
        work.row0 = row0;
        work.nrows = s->rows - row0 < chunk ? s->rows - row0 : chunk;
        thread_pool_run(run->pool, fill_task, &work, (work.nrows + work.block_rows - 1) / work.block_rows);
        size_t bytes = (size_t)(work.nrows * s->cols) * 2;
        if (st_writer_write(w, run->out, bytes, err)) return -1;
        progress_advance(&run->bar, bytes);
    }
    return 0;
}

/* The slices of file group `group` for TP rank `rank` (-1: the common file). */
static int group_slices(const synth_model *m, int group, int rank, slice **out, int *n_out) {
    const grok_config *c = &m->config;
    int64_t n = grok_tensor_count(c);
    int count = 0, cap = 0;
    slice *list = NULL;
    for (int64_t i = 0; i < n; i++) {
        grok_tensor g;
        grok_tensor_at(c, i, &g);
        if (g.role != file_groups[group]) continue;
        for (int mat = 0; mat < g.n_mats; mat++) {
            if (count == cap) {
                slice *grown = realloc(list, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *grown);
                if (!grown) {
                    free(list);
                    return -1;
                }
                list = grown;
            }
            list[count++] = make_slice(&g, mat, rank, m->tp);
        }
    }
    *out = list;
    *n_out = count;
    return 0;
}

static int write_file(synth_run *run, const char *dir, int group, int rank, g2_error *err) {
    char path[4096];
    if (rank < 0) snprintf(path, sizeof path, "%s/pytorch_model-%05d-TP-common.safetensors", dir, group);
    else snprintf(path, sizeof path, "%s/pytorch_model-%05d-TP-%03d.safetensors", dir, group, rank);
    slice *slices;
    int n;
    if (group_slices(run->m, group, rank, &slices, &n)) return g2_fail(err, "synth: out of memory");
    st_writer *w = st_writer_new();
    int rc = w ? 0 : g2_fail(err, "synth: out of memory");
    for (int i = 0; i < n && rc == 0; i++) {
        char name[256];
        grok_tensor_hf_name(&slices[i].g, slices[i].mat, name, sizeof name);
        int64_t shape[2] = {slices[i].rows, slices[i].cols};
        bool vector = slices[i].g.n_dims == 1;
        rc = st_writer_add(w, name, G2_TYPE_BF16, vector ? 1 : 2, vector ? shape + 1 : shape, err);
    }
    if (rc == 0) rc = st_writer_begin(w, path, err);
    for (int i = 0; i < n && rc == 0; i++) rc = write_slice(run, w, &slices[i], err);
    if (rc == 0) rc = st_writer_finish(w, err);
    st_writer_free(w);
    free(slices);
    return rc;
}

static uint64_t total_bytes(const grok_config *c) {
    uint64_t total = 0;
    for (int64_t i = 0; i < grok_tensor_count(c); i++) {
        grok_tensor g;
        grok_tensor_at(c, i, &g);
        total += (uint64_t)(g.ne[0] * g.ne[1] * g.ne[2]) * 2;
    }
    return total;
}

int synth_write_checkpoint(const synth_model *m, const tok_vocab *v, const char *dir, thread_pool *pool, bool quiet,
                           g2_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (grok_config_write(path, &m->config, err)) return -1;
    snprintf(path, sizeof path, "%s/tokenizer.tok.json", dir);
    if (tok_vocab_write(path, v, err)) return -1;
    int64_t widest = m->config.hidden;
    const int64_t dims[] = {m->config.ff, m->config.expert_ff, m->config.n_head * m->config.head_dim};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i] > widest) widest = dims[i];
    synth_run run = {.m = m, .pool = pool};
    run.out = malloc(CHUNK_BYTES + (size_t)widest * 2);
    run.scratch = calloc((size_t)thread_pool_size(pool), sizeof *run.scratch);
    int rc = run.out && run.scratch ? 0 : g2_fail(err, "synth: out of memory");
    for (int i = 0; i < thread_pool_size(pool) && rc == 0; i++)
        if (!(run.scratch[i] = malloc((size_t)widest * sizeof(float)))) rc = g2_fail(err, "synth: out of memory");
    progress_start(&run.bar, "synth", total_bytes(&m->config));
    run.bar.quiet = quiet;
    for (int group = 0; group < N_GROUPS && rc == 0; group++) {
        if (grok_role_join(file_groups[group]) == JOIN_NONE) {
            rc = write_file(&run, dir, group, -1, err);
            continue;
        }
        for (int rank = 0; rank < m->tp && rc == 0; rank++) rc = write_file(&run, dir, group, rank, err);
    }
    if (rc == 0) progress_finish(&run.bar);
    else progress_abort(&run.bar);
    for (int i = 0; run.scratch && i < thread_pool_size(pool); i++) free(run.scratch[i]);
    free(run.scratch);
    free(run.out);
    return rc;
}

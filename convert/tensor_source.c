/* Rows of an output tensor from wherever its values live: safetensors parts (TP shards joined
 * by rows or columns, experts stacked), the synthetic generator, or a GGUF tensor (dequantized).
 * Reads are pure, so worker threads call these concurrently. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "convert.h"

/* n values of a safetensors dtype at src (any alignment) as floats. */
static void decode_values(uint32_t type, const uint8_t *src, float *dst, int64_t n) {
    if (type == G2_TYPE_F32) {
        memcpy(dst, src, (size_t)n * 4);
    } else if (type == G2_TYPE_BF16) {
        for (int64_t i = 0; i < n; i++) {
            uint16_t b;
            memcpy(&b, src + 2 * i, 2);
            dst[i] = g2_bf16_to_f32(b);
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = g2_half_to_f32(h);
        }
    }
}

static const uint8_t *element(const st_tensor *t, int64_t index) {
    return t->data + (size_t)index * g2_type_get(t->type)->type_size;
}

static void read_safetensors_row(const tensor_source *s, int64_t row, float *dst) {
    int mat = (int)(row / s->rows_per_mat);
    int64_t r = row % s->rows_per_mat;
    const st_tensor **parts = s->parts + (size_t)mat * (size_t)s->n_parts;
    if (s->join == JOIN_COLS) {
        int64_t cols = s->ne0 / s->n_parts;
        for (int p = 0; p < s->n_parts; p++)
            decode_values(parts[p]->type, element(parts[p], r * cols), dst + p * cols, cols);
    } else {
        int64_t rows = s->rows_per_mat / s->n_parts; /* JOIN_NONE: one part of every row */
        const st_tensor *t = parts[r / rows];
        decode_values(t->type, element(t, (r % rows) * s->ne0), dst, s->ne0);
    }
}

int source_read_rows(const tensor_source *s, int64_t row0, int64_t nrows, float *dst, g2_error *err) {
    for (int64_t i = 0; i < nrows; i++) {
        int64_t row = row0 + i;
        float *out = dst + i * s->ne0;
        switch (s->kind) {
        case SOURCE_SAFETENSORS: read_safetensors_row(s, row, out); break;
        case SOURCE_SYNTH:
            synth_fill(s->synth, &s->spec, (int)(row / s->spec.ne[1]), row % s->spec.ne[1], 0, s->ne0, out);
            break;
        case SOURCE_GGUF: {
            size_t row_size = g2_row_size(s->gguf->type, s->ne0);
            if (g2_dequantize(s->gguf->type, (const uint8_t *)s->gguf->data + (size_t)row * row_size, out, s->ne0))
                return g2_fail(err, "tensor '%s': cannot decode type %s", s->gguf->name,
                               g2_type_get(s->gguf->type)->name);
            break;
        }
        }
    }
    return 0;
}

const void *source_raw_rows(const tensor_source *s, uint32_t type, int64_t row0) {
    if (s->kind != SOURCE_GGUF || s->gguf->type != type) return NULL;
    return (const uint8_t *)s->gguf->data + (size_t)row0 * g2_row_size(type, s->ne0);
}

/* Applies a paging hint to the source bytes of rows [row0, row0 + nrows). */
static void page_hint(const tensor_source *s, int64_t row0, int64_t nrows, bool release) {
    if (nrows <= 0) return;
    if (s->kind == SOURCE_GGUF) {
        if (!s->gguf_mapped) return;
        size_t row_size = g2_row_size(s->gguf->type, s->ne0);
        uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
        uintptr_t a = (uintptr_t)s->gguf->data + (size_t)row0 * row_size, b = a + (size_t)nrows * row_size;
        uintptr_t start = release ? (a + page - 1) & ~(page - 1) : a & ~(page - 1), end = release ? b & ~(page - 1) : b;
        if (end > start) madvise((void *)start, end - start, release ? MADV_DONTNEED : MADV_WILLNEED);
        return;
    }
    if (s->kind != SOURCE_SAFETENSORS) return;
    for (int64_t row = row0; row < row0 + nrows;) {
        int mat = (int)(row / s->rows_per_mat);
        int64_t local = row % s->rows_per_mat;
        int64_t end = (int64_t)(mat + 1) * s->rows_per_mat;
        if (end > row0 + nrows) end = row0 + nrows;
        int64_t count = end - row; /* rows [local, local + count) of matrix mat */
        const st_tensor **parts = s->parts + (size_t)mat * (size_t)s->n_parts;
        for (int p = 0; p < s->n_parts; p++) {
            const st_tensor *t = parts[p];
            int64_t width = t->n_dims >= 2 ? t->shape[1] : t->shape[0], first = local, last = local + count;
            if (s->join != JOIN_COLS) { /* this part holds rows [p * rows, (p + 1) * rows) */
                int64_t rows = s->rows_per_mat / s->n_parts;
                first = first > p * rows ? first - p * rows : 0;
                last = last < (p + 1) * rows ? last - p * rows : rows;
                if (first >= last) continue;
            }
            const uint8_t *ptr = element(t, first * width);
            size_t len = (size_t)((last - first) * width) * g2_type_get(t->type)->type_size;
            if (release) st_release(t, ptr, len);
            else st_prefetch(t, ptr, len);
        }
        row = end;
    }
}

void source_release_rows(const tensor_source *s, int64_t row0, int64_t nrows) { page_hint(s, row0, nrows, true); }
void source_prefetch_rows(const tensor_source *s, int64_t row0, int64_t nrows) { page_hint(s, row0, nrows, false); }

void conv_tensors_free(conv_tensor *t, int64_t n) {
    for (int64_t i = 0; t && i < n; i++) free((void *)t[i].src.parts);
    free(t);
}

/* Safetensors writer for the synthetic checkpoints (and tests that build odd ones): the header
 * is known up front, the data streams in add order. Written to PATH.tmp, renamed when every
 * byte is there; the temp file is registered for removal on Ctrl-C. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convert.h"

typedef struct {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t shape[ST_MAX_DIMS];
    uint64_t nbytes;
} pending_tensor;

struct st_writer {
    pending_tensor *tensors;
    size_t n, cap;
    FILE *out;
    char *path, *tmp_path;
    uint64_t expected, written;
    bool finished;
};

static const char *dtype_name(uint32_t type) {
    return type == G2_TYPE_BF16 ? "BF16" : type == G2_TYPE_F16 ? "F16" : type == G2_TYPE_F32 ? "F32" : NULL;
}

st_writer *st_writer_new(void) { return calloc(1, sizeof(st_writer)); }

int st_writer_add(st_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *shape, g2_error *err) {
    if (w->out) return g2_fail(err, "safetensors writer: tensor '%s' added after begin", name);
    if (!dtype_name(type)) return g2_fail(err, "safetensors writer: tensor '%s': type %u not writable", name, type);
    if (n_dims < 0 || n_dims > ST_MAX_DIMS) return g2_fail(err, "safetensors writer: tensor '%s': %d dims", name, n_dims);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        pending_tensor *p = realloc(w->tensors, cap * sizeof *p);
        if (!p) return g2_fail(err, "safetensors writer: out of memory");
        w->tensors = p;
        w->cap = cap;
    }
    pending_tensor *t = &w->tensors[w->n];
    memset(t, 0, sizeof *t);
    t->nbytes = g2_type_get(type)->type_size;
    for (int d = 0; d < n_dims; d++) {
        if (shape[d] < 0) return g2_fail(err, "safetensors writer: tensor '%s': negative dim", name);
        t->shape[d] = shape[d];
        t->nbytes *= (uint64_t)shape[d];
    }
    if (!(t->name = strdup(name))) return g2_fail(err, "safetensors writer: out of memory");
    t->type = type;
    t->n_dims = n_dims;
    w->n++;
    return 0;
}

/* The header JSON, padded with spaces to a multiple of 8 like the reference writer. */
static char *header_json(const st_writer *w, size_t *len) {
    cJSON *root = cJSON_CreateObject();
    uint64_t offset = 0;
    for (size_t i = 0; root && i < w->n; i++) {
        const pending_tensor *t = &w->tensors[i];
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        cJSON *shape = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *offs = shape ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        if (!offs || !cJSON_AddStringToObject(e, "dtype", dtype_name(t->type))) goto fail;
        for (int d = 0; d < t->n_dims; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(offset + t->nbytes)));
        offset += t->nbytes;
    }
    cJSON *meta = root ? cJSON_AddObjectToObject(root, "__metadata__") : NULL;
    if (!meta || !cJSON_AddStringToObject(meta, "format", "pt")) goto fail;
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) return NULL;
    size_t n = strlen(text), padded = (n + 7) & ~(size_t)7;
    char *out = realloc(text, padded + 1);
    if (!out) {
        free(text);
        return NULL;
    }
    memset(out + n, ' ', padded - n);
    out[padded] = 0;
    *len = padded;
    return out;
fail:
    cJSON_Delete(root);
    return NULL;
}

int st_writer_begin(st_writer *w, const char *path, g2_error *err) {
    if (w->out) return g2_fail(err, "%s: safetensors writer already begun", path);
    size_t len = 0;
    char *header = header_json(w, &len);
    if (!header) return g2_fail(err, "%s: out of memory building the header", path);
    w->path = strdup(path);
    w->tmp_path = malloc(strlen(path) + 5);
    if (!w->path || !w->tmp_path) {
        free(header);
        return g2_fail(err, "%s: out of memory", path);
    }
    sprintf(w->tmp_path, "%s.tmp", path);
    g2_tmpfile_register(w->tmp_path);
    w->out = fopen(w->tmp_path, "wb");
    if (!w->out) {
        int e = errno;
        g2_tmpfile_unregister(w->tmp_path);
        free(header);
        return g2_fail(err, "%s: %s", w->tmp_path, strerror(e));
    }
    uint8_t len_bytes[8];
    for (int i = 0; i < 8; i++) len_bytes[i] = (uint8_t)((uint64_t)len >> (8 * i));
    int ok = fwrite(len_bytes, 1, 8, w->out) == 8 && fwrite(header, 1, len, w->out) == len;
    free(header);
    if (!ok) return g2_fail(err, "%s: write failed: %s", w->tmp_path, strerror(errno));
    for (size_t i = 0; i < w->n; i++) w->expected += w->tensors[i].nbytes;
    return 0;
}

int st_writer_write(st_writer *w, const void *data, size_t nbytes, g2_error *err) {
    if (!w->out) return g2_fail(err, "safetensors writer: write before begin");
    if (nbytes > w->expected - w->written)
        return g2_fail(err, "%s: %zu bytes more than the tensors declared", w->tmp_path, nbytes);
    if (fwrite(data, 1, nbytes, w->out) != nbytes)
        return g2_fail(err, "%s: write failed: %s", w->tmp_path, strerror(errno));
    w->written += nbytes;
    return 0;
}

int st_writer_finish(st_writer *w, g2_error *err) {
    if (!w->out) return g2_fail(err, "safetensors writer: finish before begin");
    if (w->written != w->expected)
        return g2_fail(err, "%s: %" PRIu64 " of %" PRIu64 " data bytes written", w->tmp_path, w->written, w->expected);
    FILE *out = w->out;
    w->out = NULL;
    if (fflush(out) != 0 || ferror(out)) {
        int e = errno;
        fclose(out);
        return g2_fail(err, "%s: write failed: %s", w->tmp_path, strerror(e));
    }
    if (fclose(out) != 0) return g2_fail(err, "%s: close failed: %s", w->tmp_path, strerror(errno));
    if (rename(w->tmp_path, w->path) != 0)
        return g2_fail(err, "%s: rename to %s failed: %s", w->tmp_path, w->path, strerror(errno));
    g2_tmpfile_unregister(w->tmp_path);
    w->finished = true;
    return 0;
}

void st_writer_free(st_writer *w) {
    if (!w) return;
    if (w->out) fclose(w->out);
    if (w->tmp_path && !w->finished) {
        unlink(w->tmp_path);
        g2_tmpfile_unregister(w->tmp_path);
    }
    for (size_t i = 0; i < w->n; i++) free(w->tensors[i].name);
    free(w->tensors);
    free(w->path);
    free(w->tmp_path);
    free(w);
}

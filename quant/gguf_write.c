/* GGUF v3 streaming writer. Metadata and tensor declarations are collected in memory; begin()
 * writes the header, the kvs (in insertion order) and the tensor infos (offsets: the running
 * sum of padded sizes, as llama.cpp requires) to PATH.tmp; the tensors' bytes then stream
 * through a write buffer in declaration order, each padded with zeros when complete; finish()
 * flushes, fsyncs and renames PATH.tmp to PATH. Until then the temp file is registered for
 * removal on SIGINT/SIGTERM/SIGHUP, and any failure or gguf_writer_free removes it. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf_internal.h"

#define WRITE_BUFFER_SIZE (4u << 20)

typedef struct {
    char *key;
    uint8_t *value; /* serialized as in the file: u32 type, then the value */
    size_t value_size;
} writer_kv;

typedef struct {
    char name[GGUF_MAX_NAME + 1];
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes;
} writer_tensor;

typedef enum { STATE_COLLECTING, STATE_WRITING, STATE_FINISHED, STATE_FAILED } writer_state;

struct gguf_writer {
    writer_kv *kvs;
    size_t n_kvs, cap_kvs;
    writer_tensor *tensors;
    size_t n_tensors, cap_tensors;
    uint32_t alignment;
    writer_state state;
    /* once begun */
    char *path, *tmp_path;
    int fd;
    uint8_t *buf;
    size_t buf_len;
    uint64_t file_pos;  /* bytes produced so far (written + buffered) */
    size_t current;     /* the tensor whose bytes come next */
    uint64_t current_done;
};

/* ---- growable byte buffer for serializing values ------------------------------------------ */

typedef struct {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} bytes;

static void put(bytes *b, const void *data, size_t n) {
    if (b->oom || n == 0) return;
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->n < n) {
            if (cap > SIZE_MAX / 2) {
                b->oom = true;
                return;
            }
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}
static void put_u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(bytes *b, uint64_t v) { put(b, &v, 8); }

/* ---- building ----------------------------------------------------------------------------- */

gguf_writer *gguf_writer_new(void) {
    gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    w->fd = -1;
    return w;
}

/* Remove the temp file (if any) and forget it. */
static void discard_temp(gguf_writer *w) {
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    if (w->tmp_path) {
        unlink(w->tmp_path);
        g2_tmpfile_unregister(w->tmp_path);
    }
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    if (w->state == STATE_WRITING) discard_temp(w);
    for (size_t i = 0; i < w->n_kvs; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].value);
    }
    free(w->kvs);
    free(w->tensors);
    free(w->path);
    free(w->tmp_path);
    free(w->buf);
    free(w);
}

static int64_t find_kv(const gguf_writer *w, const char *key) {
    for (size_t i = 0; i < w->n_kvs; i++)
        if (strcmp(w->kvs[i].key, key) == 0) return (int64_t)i;
    return -1;
}

static int check_collecting(const gguf_writer *w, const char *what, const char *name, g2_error *err) {
    if (w->state == STATE_COLLECTING) return 0;
    return g2_fail(err, "gguf writer (%s): cannot %s '%s' after begin()", w->tmp_path ? w->tmp_path : "?", what, name);
}

/* Insert or replace key with a serialized value (ownership of value passes to the writer,
 * also on failure). general.alignment is the writer's alignment and must be a u32 power of
 * two. */
static int put_kv_checked(gguf_writer *w, const char *key, bytes *value, bool check_key, g2_error *err) {
    int rc = -1;
    if (value->oom) {
        rc = g2_fail(err, "gguf writer: out of memory for the value of key %s", key);
        goto fail;
    }
    if (check_collecting(w, "set key", key, err)) goto fail;
    if (check_key && !gguf_key_valid(key, strlen(key))) {
        rc = g2_fail(err, "gguf writer: key '%s' is not valid: keys are 1..255 bytes of lower_snake_case [a-z0-9_] "
                          "segments joined by '.'", key);
        goto fail;
    }
    if (strcmp(key, GGUF_ALIGNMENT_KEY) == 0) {
        uint32_t type = value->n >= 8 ? gguf_rd_u32(value->p) : GGUF_TYPE_COUNT;
        if (type != GGUF_TYPE_U32) {
            rc = g2_fail(err, "gguf writer: %s must be a u32, not %s", key, gguf_value_type_name((gguf_value_type)type));
            goto fail;
        }
        uint32_t a = gguf_rd_u32(value->p + 4);
        if (a == 0 || (a & (a - 1))) {
            rc = g2_fail(err, "gguf writer: %s = %" PRIu32 " is not a nonzero power of two", key, a);
            goto fail;
        }
        w->alignment = a;
    }
    int64_t i = find_kv(w, key);
    if (i >= 0) { /* replace, keeping the first insertion's position */
        free(w->kvs[i].value);
        w->kvs[i].value = value->p;
        w->kvs[i].value_size = value->n;
        return 0;
    }
    if (w->n_kvs == w->cap_kvs) {
        size_t cap = w->cap_kvs ? 2 * w->cap_kvs : 16;
        writer_kv *kvs = realloc(w->kvs, cap * sizeof *kvs);
        if (!kvs) {
            rc = g2_fail(err, "gguf writer: out of memory for key %s", key);
            goto fail;
        }
        w->kvs = kvs;
        w->cap_kvs = cap;
    }
    char *k = strdup(key);
    if (!k) {
        rc = g2_fail(err, "gguf writer: out of memory for key %s", key);
        goto fail;
    }
    w->kvs[w->n_kvs++] = (writer_kv){k, value->p, value->n};
    return 0;
fail:
    free(value->p);
    return rc;
}

static int put_kv(gguf_writer *w, const char *key, bytes *value, g2_error *err) {
    return put_kv_checked(w, key, value, true, err);
}

static int set_scalar(gguf_writer *w, const char *key, gguf_value_type t, const void *v, g2_error *err) {
    bytes b = {0};
    put_u32(&b, t);
    put(&b, v, gguf_value_size(t));
    return put_kv(w, key, &b, err);
}

int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v, g2_error *err) {
    return set_scalar(w, key, GGUF_TYPE_U32, &v, err);
}
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v, g2_error *err) {
    return set_scalar(w, key, GGUF_TYPE_I32, &v, err);
}
int gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v, g2_error *err) {
    return set_scalar(w, key, GGUF_TYPE_U64, &v, err);
}
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v, g2_error *err) {
    return set_scalar(w, key, GGUF_TYPE_F32, &v, err);
}
int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v, g2_error *err) {
    uint8_t b = v ? 1 : 0;
    return set_scalar(w, key, GGUF_TYPE_BOOL, &b, err);
}

int gguf_writer_set_str(gguf_writer *w, const char *key, const char *v, g2_error *err) {
    bytes b = {0};
    size_t n = strlen(v);
    put_u32(&b, GGUF_TYPE_STRING);
    put_u64(&b, n);
    put(&b, v, n);
    return put_kv(w, key, &b, err);
}

int gguf_writer_set_array(gguf_writer *w, const char *key, gguf_value_type elem_type, const void *data,
                          uint64_t count, g2_error *err) {
    size_t size = gguf_value_size(elem_type);
    if (!size)
        return g2_fail(err, "gguf writer: key %s: gguf_writer_set_array takes fixed-size elements, not %s", key,
                       gguf_value_type_name(elem_type));
    if (count > SIZE_MAX / size) return g2_fail(err, "gguf writer: key %s: array of %" PRIu64 " elements is too large", key, count);
    if (elem_type == GGUF_TYPE_BOOL)
        for (uint64_t i = 0; i < count; i++)
            if (((const uint8_t *)data)[i] > 1)
                return g2_fail(err, "gguf writer: key %s: bool array element %" PRIu64 " is %u, not 0 or 1", key, i,
                               ((const uint8_t *)data)[i]);
    bytes b = {0};
    put_u32(&b, GGUF_TYPE_ARRAY);
    put_u32(&b, elem_type);
    put_u64(&b, count);
    put(&b, data, (size_t)count * size);
    return put_kv(w, key, &b, err);
}

int gguf_writer_set_str_array(gguf_writer *w, const char *key, const char *const *strs, const size_t *lens,
                              uint64_t count, g2_error *err) {
    bytes b = {0};
    put_u32(&b, GGUF_TYPE_ARRAY);
    put_u32(&b, GGUF_TYPE_STRING);
    put_u64(&b, count);
    for (uint64_t i = 0; i < count; i++) {
        size_t n = lens ? lens[i] : strlen(strs[i]);
        put_u64(&b, n);
        put(&b, strs[i], n);
    }
    return put_kv(w, key, &b, err);
}

int gguf_writer_copy_kv(gguf_writer *w, const gguf_file *f, int64_t i, g2_error *err) {
    gguf_str key = gguf_kv_key(f, i);
    const uint8_t *raw;
    size_t raw_size;
    if (!key.data || gguf_kv_raw_value(f, i, &raw, &raw_size))
        return g2_fail(err, "gguf writer: %s has no kv %" PRId64, gguf_path(f), i);
    char k[GGUF_MAX_KEY + 1]; /* the reader only accepts readable keys: <= 255 bytes, no NUL */
    memcpy(k, key.data, key.len);
    k[key.len] = 0;
    if (find_kv(w, k) >= 0) return 0;
    bytes b = {0};
    put(&b, raw, raw_size);
    /* the reader accepted this key (it may use upper case from another tool): keep it as is */
    return put_kv_checked(w, k, &b, false, err);
}

int gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment, g2_error *err) {
    if (alignment == 0 || (alignment & (alignment - 1)))
        return g2_fail(err, "gguf writer: alignment %" PRIu32 " is not a nonzero power of two", alignment);
    /* the key is what readers see: write it unless the alignment is the default one */
    if (alignment == GGUF_DEFAULT_ALIGNMENT && find_kv(w, GGUF_ALIGNMENT_KEY) < 0) {
        if (check_collecting(w, "set", GGUF_ALIGNMENT_KEY, err)) return -1;
        w->alignment = alignment;
        return 0;
    }
    return gguf_writer_set_u32(w, GGUF_ALIGNMENT_KEY, alignment, err);
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne,
                           g2_error *err) {
    if (check_collecting(w, "add tensor", name, err)) return -1;
    size_t len = strlen(name);
    if (len == 0) return g2_fail(err, "gguf writer: tensor %zu: empty name", w->n_tensors);
    if (len > GGUF_MAX_NAME)
        return g2_fail(err, "gguf writer: tensor '%s': name is %zu bytes, the limit is %d", name, len, GGUF_MAX_NAME);
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return g2_fail(err, "gguf writer: tensor '%s': duplicate tensor name (tensor %zu has it)", name, i);
    const g2_type_traits *tt = g2_type_get(type);
    if (!tt) return g2_fail(err, "gguf writer: tensor '%s': unknown ggml type id %" PRIu32, name, type);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return g2_fail(err, "gguf writer: tensor '%s': n_dims %" PRIu32 " is not in 1..%d", name, n_dims, GGUF_MAX_DIMS);
    writer_tensor t = {.type = type, .n_dims = n_dims, .ne = {1, 1, 1, 1}};
    memcpy(t.name, name, len + 1);
    int64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] < 0) return g2_fail(err, "gguf writer: tensor '%s': ne[%" PRIu32 "] = %" PRId64 " is negative", name, d, ne[d]);
        t.ne[d] = ne[d];
        if (__builtin_mul_overflow(elements, ne[d], &elements))
            return g2_fail(err, "gguf writer: tensor '%s': element count overflows int64", name);
    }
    if (t.ne[0] % tt->block_size)
        return g2_fail(err, "gguf writer: tensor '%s': ne[0] = %" PRId64 " is not a multiple of the %s block size %" PRId64,
                       name, t.ne[0], tt->name, tt->block_size);
    uint64_t nbytes = (uint64_t)(t.ne[0] / tt->block_size);
    uint64_t rows = t.ne[0] ? (uint64_t)(elements / t.ne[0]) : 0;
    if (__builtin_mul_overflow(nbytes, (uint64_t)tt->type_size, &nbytes) || __builtin_mul_overflow(nbytes, rows, &nbytes) ||
        nbytes > (uint64_t)INT64_MAX)
        return g2_fail(err, "gguf writer: tensor '%s': byte size overflows", name);
    t.nbytes = nbytes;
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? 2 * w->cap_tensors : 64;
        writer_tensor *ts = realloc(w->tensors, cap * sizeof *ts);
        if (!ts) return g2_fail(err, "gguf writer: out of memory for tensor '%s'", name);
        w->tensors = ts;
        w->cap_tensors = cap;
    }
    w->tensors[w->n_tensors++] = t;
    return 0;
}

static uint64_t pad_to(uint64_t x, uint64_t align) { return (x + align - 1) & ~(align - 1); }

static uint64_t header_size(const gguf_writer *w) {
    uint64_t n = GGUF_HEADER_SIZE;
    for (size_t i = 0; i < w->n_kvs; i++) n += 8 + strlen(w->kvs[i].key) + w->kvs[i].value_size;
    for (size_t i = 0; i < w->n_tensors; i++)
        n += 8 + strlen(w->tensors[i].name) + 4 + 8 * (uint64_t)w->tensors[i].n_dims + 4 + 8;
    return n;
}

uint64_t gguf_writer_total_size(const gguf_writer *w) {
    uint64_t n = pad_to(header_size(w), w->alignment);
    for (size_t i = 0; i < w->n_tensors; i++) n += pad_to(w->tensors[i].nbytes, w->alignment);
    return n;
}

/* ---- writing ------------------------------------------------------------------------------ */

/* An I/O failure: the message names the temp file, the offset and the errno text; the temp
 * file is removed at once (no space left: give it back) and the writer is dead. */
static int io_fail(gguf_writer *w, const char *what, int e, g2_error *err) {
    g2_fail(err, "%s: %s failed at offset %" PRIu64 ": %s", w->tmp_path, what, w->file_pos, strerror(e));
    discard_temp(w);
    w->state = STATE_FAILED;
    return -1;
}

/* p goes to the file at w->file_pos. A short write is continued; the one that fails reports
 * its own offset (a file-size limit first writes up to the limit, then fails with EFBIG). */
static int write_all(gguf_writer *w, const uint8_t *p, size_t n, g2_error *err) {
    size_t done = 0;
    while (done < n) {
        ssize_t k = write(w->fd, p + done, n - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            int e = k < 0 ? errno : ENOSPC; /* no progress: treat as a full disk */
            w->file_pos += done;
            return io_fail(w, "write", e, err);
        }
        done += (size_t)k;
    }
    return 0;
}

static int flush(gguf_writer *w, g2_error *err) {
    if (w->buf_len == 0) return 0;
    uint64_t pos = w->file_pos;
    w->file_pos -= w->buf_len; /* where the buffer starts in the file */
    size_t n = w->buf_len;
    w->buf_len = 0;
    if (write_all(w, w->buf, n, err)) return -1;
    w->file_pos = pos;
    return 0;
}

/* Append to the output through the buffer; large chunks bypass it. */
static int out(gguf_writer *w, const void *data, size_t n, g2_error *err) {
    if (n >= WRITE_BUFFER_SIZE) {
        if (flush(w, err)) return -1;
        if (write_all(w, data, n, err)) return -1;
        w->file_pos += n;
        return 0;
    }
    if (n > WRITE_BUFFER_SIZE - w->buf_len && flush(w, err)) return -1;
    memcpy(w->buf + w->buf_len, data, n);
    w->buf_len += n;
    w->file_pos += n;
    return 0;
}

static int out_zeros(gguf_writer *w, uint64_t n, g2_error *err) {
    static const uint8_t zeros[256];
    while (n > 0) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (out(w, zeros, k, err)) return -1;
        n -= k;
    }
    return 0;
}

static int out_u32(gguf_writer *w, uint32_t v, g2_error *err) { return out(w, &v, 4, err); }
static int out_u64(gguf_writer *w, uint64_t v, g2_error *err) { return out(w, &v, 8, err); }
static int out_str(gguf_writer *w, const char *s, g2_error *err) {
    size_t n = strlen(s);
    return out_u64(w, n, err) || out(w, s, n, err) ? -1 : 0;
}

/* Step past completed tensors (zero-byte ones are complete from the start). */
static void skip_complete(gguf_writer *w) {
    while (w->current < w->n_tensors && w->current_done == w->tensors[w->current].nbytes) {
        w->current++;
        w->current_done = 0;
    }
}

int gguf_writer_begin(gguf_writer *w, const char *path, g2_error *err) {
    if (w->state != STATE_COLLECTING)
        return g2_fail(err, "gguf writer (%s): begin() called twice or after an error", path);
    size_t len = strlen(path);
    w->path = strdup(path);
    w->tmp_path = malloc(len + 5);
    w->buf = malloc(WRITE_BUFFER_SIZE);
    if (!w->path || !w->tmp_path || !w->buf) {
        w->state = STATE_FAILED;
        return g2_fail(err, "%s: out of memory for the writer", path);
    }
    memcpy(w->tmp_path, path, len);
    memcpy(w->tmp_path + len, ".tmp", 5);

    /* registered before it exists, so that no signal can leave it behind */
    g2_tmpfile_register(w->tmp_path);
    w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        int e = errno;
        g2_tmpfile_unregister(w->tmp_path);
        w->state = STATE_FAILED;
        return g2_fail(err, "%s: cannot create: %s", w->tmp_path, strerror(e));
    }
    w->state = STATE_WRITING;

    if (out(w, GGUF_MAGIC, 4, err) || out_u32(w, GGUF_VERSION, err) || out_u64(w, w->n_tensors, err) ||
        out_u64(w, w->n_kvs, err))
        return -1;
    for (size_t i = 0; i < w->n_kvs; i++)
        if (out_str(w, w->kvs[i].key, err) || out(w, w->kvs[i].value, w->kvs[i].value_size, err)) return -1;
    uint64_t offset = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        if (out_str(w, t->name, err) || out_u32(w, t->n_dims, err)) return -1;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if (out_u64(w, (uint64_t)t->ne[d], err)) return -1;
        if (out_u32(w, t->type, err) || out_u64(w, offset, err)) return -1;
        offset += pad_to(t->nbytes, w->alignment);
    }
    if (out_zeros(w, pad_to(w->file_pos, w->alignment) - w->file_pos, err)) return -1;
    w->current = 0;
    w->current_done = 0;
    skip_complete(w);
    return 0;
}

static int check_writing(const gguf_writer *w, const char *what, g2_error *err) {
    switch (w->state) {
    case STATE_WRITING: return 0;
    case STATE_COLLECTING: return g2_fail(err, "gguf writer: %s before begin()", what);
    case STATE_FINISHED: return g2_fail(err, "gguf writer (%s): %s after finish()", w->path, what);
    default: return g2_fail(err, "gguf writer (%s): %s after an earlier error", w->tmp_path ? w->tmp_path : "?", what);
    }
}

int gguf_writer_write(gguf_writer *w, const void *data, size_t nbytes, g2_error *err) {
    if (check_writing(w, "write", err)) return -1;
    if (nbytes == 0) return 0;
    if (w->current >= w->n_tensors)
        return g2_fail(err, "%s: %zu bytes written after the last tensor was complete", w->tmp_path, nbytes);
    const writer_tensor *t = &w->tensors[w->current];
    if (nbytes > t->nbytes - w->current_done)
        return g2_fail(err, "%s: tensor %zu '%s': %zu bytes would run past its size (%" PRIu64 " bytes, %" PRIu64 " already written)",
                       w->tmp_path, w->current, t->name, nbytes, t->nbytes, w->current_done);
    if (out(w, data, nbytes, err)) return -1;
    w->current_done += nbytes;
    if (w->current_done == t->nbytes) {
        if (out_zeros(w, pad_to(t->nbytes, w->alignment) - t->nbytes, err)) return -1;
        skip_complete(w);
    }
    return 0;
}

/* Make the rename durable too: fsync the directory (best effort; some file systems refuse). */
static void sync_directory(const char *path) {
    char *dir = strdup(path);
    if (!dir) return;
    char *slash = strrchr(dir, '/');
    const char *d = ".";
    if (slash == dir) d = "/";
    else if (slash) {
        *slash = 0;
        d = dir;
    }
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

int gguf_writer_finish(gguf_writer *w, g2_error *err) {
    if (check_writing(w, "finish", err)) return -1;
    if (w->current < w->n_tensors) {
        const writer_tensor *t = &w->tensors[w->current];
        return g2_fail(err, "%s: tensor %zu '%s' is incomplete: %" PRIu64 " of %" PRIu64 " bytes written (%zu of %zu tensors complete)",
                       w->tmp_path, w->current, t->name, w->current_done, t->nbytes, w->current, w->n_tensors);
    }
    if (flush(w, err)) return -1;
    if (fsync(w->fd) != 0 && errno != EINVAL && errno != EROFS) return io_fail(w, "fsync", errno, err);
    /* The written pages sit in the page cache in the small folios the writes made, so a run
     * mapping the file right away gets 4 KiB pages (measured: decode ~25% slower). Dropping
     * them (clean now) makes the first run read the file afresh, in huge folios
     * (MADV_HUGEPAGE in gguf_read.c). Best effort. */
    posix_fadvise(w->fd, 0, 0, POSIX_FADV_DONTNEED);
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0 && errno != EINTR) return io_fail(w, "close", errno, err);
    if (rename(w->tmp_path, w->path) != 0) {
        int e = errno;
        g2_fail(err, "%s: cannot rename to %s: %s", w->tmp_path, w->path, strerror(e));
        discard_temp(w);
        w->state = STATE_FAILED;
        return -1;
    }
    g2_tmpfile_unregister(w->tmp_path);
    sync_directory(w->path);
    w->state = STATE_FINISHED;
    free(w->buf);
    w->buf = NULL;
    return 0;
}

/* Safetensors reader: maps the file read-only and validates the header completely (length,
 * JSON, dtypes, shapes, offsets, duplicates, overlaps) before any tensor is handed out, so that
 * nothing downstream ever reads outside the file. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert.h"

struct st_file {
    char *path;
    const uint8_t *map;
    size_t size;
    bool mapped; /* from st_open: paging hints apply */
    st_tensor *tensors;
    size_t n_tensors;
    char *names; /* all tensor names, NUL-separated */
};

/* JSON numbers are doubles: integers are exact below 2^53, which bounds every offset. */
#define MAX_JSON_INT 9007199254740992.0

static int json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return -1;
    double v = item->valuedouble;
    if (!(v >= 0 && v < MAX_JSON_INT) || v != floor(v)) return -1;
    *out = (uint64_t)v;
    return 0;
}

static int dtype_from_name(const char *name, uint32_t *type) {
    static const struct {
        const char *name;
        uint32_t type;
    } ok[] = {{"BF16", G2_TYPE_BF16}, {"F16", G2_TYPE_F16}, {"F32", G2_TYPE_F32}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!strcmp(name, ok[i].name)) {
            *type = ok[i].type;
            return 0;
        }
    return -1;
}

static bool dtype_known_elsewhere(const char *name) {
    static const char *const known[] = {"F64", "I64", "I32", "I16", "I8", "U8", "U16", "U32", "U64", "BOOL",
                                        "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(name, known[i])) return true;
    return false;
}

/* Fills t from one header entry; data_size is the size of the data section. */
static int parse_entry(const st_file *f, const cJSON *entry, uint64_t data_size, uint64_t data_start, st_tensor *t,
                       g2_error *err) {
    const char *name = entry->string;
    if (!cJSON_IsObject(entry)) return g2_fail(err, "%s: tensor '%s': header entry is not an object", f->path, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!cJSON_IsString(dtype)) return g2_fail(err, "%s: tensor '%s': missing \"dtype\" string", f->path, name);
    if (dtype_from_name(dtype->valuestring, &t->type)) {
        if (dtype_known_elsewhere(dtype->valuestring))
            return g2_fail(err, "%s: tensor '%s': dtype %s is not supported (BF16, F16 or F32)", f->path, name,
                           dtype->valuestring);
        char shown[48];
        return g2_fail(err, "%s: tensor '%s': unknown dtype '%s'", f->path, name,
                       shown_text(dtype->valuestring, shown, sizeof shown));
    }
    if (!cJSON_IsArray(shape)) return g2_fail(err, "%s: tensor '%s': missing \"shape\" array", f->path, name);
    int n_dims = cJSON_GetArraySize(shape);
    if (n_dims > ST_MAX_DIMS)
        return g2_fail(err, "%s: tensor '%s': %d dimensions (at most %d)", f->path, name, n_dims, ST_MAX_DIMS);
    t->n_dims = n_dims;
    uint64_t elements = 1;
    int d = 0;
    for (const cJSON *dim = shape->child; dim; dim = dim->next, d++) {
        uint64_t v;
        if (json_uint(dim, &v))
            return g2_fail(err, "%s: tensor '%s': shape[%d] is not a non-negative integer", f->path, name, d);
        t->shape[d] = (int64_t)v;
        if (v && elements > UINT64_MAX / v)
            return g2_fail(err, "%s: tensor '%s': shape overflows", f->path, name);
        elements *= v;
    }
    size_t esize = g2_type_get(t->type)->type_size;
    if (elements > UINT64_MAX / esize) return g2_fail(err, "%s: tensor '%s': shape overflows", f->path, name);
    uint64_t begin, end;
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 || json_uint(offsets->child, &begin) ||
        json_uint(offsets->child->next, &end))
        return g2_fail(err, "%s: tensor '%s': \"data_offsets\" is not [begin, end]", f->path, name);
    if (end < begin) return g2_fail(err, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before begin",
                                    f->path, name, begin, end);
    if (end > data_size)
        return g2_fail(err,
                       "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] run past the data section (%" PRIu64
                       " bytes; file truncated?)",
                       f->path, name, begin, end, data_size);
    if (end - begin != elements * esize)
        return g2_fail(err,
                       "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                       " bytes but %s x shape needs %" PRIu64,
                       f->path, name, begin, end, end - begin, dtype->valuestring, elements * esize);
    t->nbytes = end - begin;
    t->file_offset = data_start + begin;
    t->data = f->map + data_start + begin;
    t->file = f;
    return 0;
}

/* A control character (a newline) in a name would break every one-line message that shows it,
 * here and downstream (hf_checkpoint.c): such a name is refused, shown escaped. */
static int check_name(const st_file *f, const char *name, g2_error *err) {
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            char shown[96];
            return g2_fail(err, "%s: tensor name '%s' holds a control character", f->path,
                           shown_text(name, shown, sizeof shown));
        }
    return 0;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}
static int by_offset(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    return x->file_offset < y->file_offset ? -1 : x->file_offset > y->file_offset;
}

/* Duplicate names (JSON allows them; cJSON keeps both) and overlapping byte ranges. */
static int check_unique_and_disjoint(st_file *f, g2_error *err) {
    qsort(f->tensors, f->n_tensors, sizeof *f->tensors, by_name);
    for (size_t i = 1; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, f->tensors[i - 1].name))
            return g2_fail(err, "%s: tensor '%s' appears twice in the header", f->path, f->tensors[i].name);
    const st_tensor **order = malloc((f->n_tensors + 1) * sizeof *order);
    if (!order) return g2_fail(err, "%s: out of memory", f->path);
    for (size_t i = 0; i < f->n_tensors; i++) order[i] = &f->tensors[i];
    qsort(order, f->n_tensors, sizeof *order, by_offset);
    int rc = 0;
    const st_tensor *prev = NULL;
    for (size_t i = 0; i < f->n_tensors && rc == 0; i++) {
        if (order[i]->nbytes == 0) continue;
        if (prev && order[i]->file_offset < prev->file_offset + prev->nbytes)
            rc = g2_fail(err, "%s: tensors '%s' and '%s' overlap in the data section", f->path, prev->name,
                         order[i]->name);
        prev = order[i];
    }
    free(order);
    return rc;
}

static int parse_header(st_file *f, g2_error *err) {
    if (f->size < 8) return g2_fail(err, "%s: %zu bytes: too short for a safetensors file", f->path, f->size);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = header_len << 8 | f->map[i];
    if (header_len < 2 || header_len > ST_MAX_HEADER || header_len > f->size - 8)
        return g2_fail(err, "%s: header length %" PRIu64 " is impossible for a file of %zu bytes", f->path,
                       header_len, f->size);
    cJSON *root = cJSON_ParseWithLength((const char *)f->map + 8, (size_t)header_len);
    if (!root) return g2_fail(err, "%s: header is not valid JSON", f->path);
    int rc = 0;
    if (!cJSON_IsObject(root)) rc = g2_fail(err, "%s: header is not a JSON object", f->path);
    size_t count = 0, names_len = 0;
    for (const cJSON *e = root->child; rc == 0 && e; e = e->next)
        if (strcmp(e->string, "__metadata__")) {
            count++;
            names_len += strlen(e->string) + 1;
        }
    if (rc == 0) {
        f->tensors = calloc(count + 1, sizeof *f->tensors);
        f->names = malloc(names_len + 1);
        if (!f->tensors || !f->names) rc = g2_fail(err, "%s: out of memory", f->path);
    }
    uint64_t data_start = 8 + header_len, data_size = f->size - data_start;
    char *name_at = f->names;
    for (const cJSON *e = root->child; rc == 0 && e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            if (!cJSON_IsObject(e)) rc = g2_fail(err, "%s: \"__metadata__\" is not an object", f->path);
            continue;
        }
        st_tensor *t = &f->tensors[f->n_tensors];
        size_t len = strlen(e->string);
        memcpy(name_at, e->string, len + 1);
        t->name = name_at;
        name_at += len + 1;
        rc = check_name(f, e->string, err) || parse_entry(f, e, data_size, data_start, t, err) ? -1 : 0;
        if (rc == 0) f->n_tensors++;
    }
    cJSON_Delete(root);
    if (rc == 0) rc = check_unique_and_disjoint(f, err);
    return rc;
}

static st_file *file_new(const char *path) {
    st_file *f = calloc(1, sizeof *f);
    if (f && !(f->path = strdup(path))) {
        free(f);
        f = NULL;
    }
    return f;
}

int st_open_memory(st_file **out, const void *data, size_t size, const char *name, g2_error *err) {
    *out = NULL;
    st_file *f = file_new(name);
    if (!f) return g2_fail(err, "%s: out of memory", name);
    f->map = data;
    f->size = size;
    if (parse_header(f, err)) {
        st_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

int st_open(st_file **out, const char *path, g2_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return g2_fail(err, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return g2_fail(err, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return g2_fail(err, "%s: not a regular file", path);
    }
    st_file *f = file_new(path);
    if (!f) {
        close(fd);
        return g2_fail(err, "%s: out of memory", path);
    }
    f->size = (size_t)st.st_size;
    if (f->size > 0) {
        void *map = mmap(NULL, f->size, PROT_READ, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            st_close(f);
            return g2_fail(err, "%s: mmap: %s", path, strerror(e));
        }
        f->map = map;
        f->mapped = true;
    }
    close(fd);
    if (parse_header(f, err)) {
        st_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

void st_close(st_file *f) {
    if (!f) return;
    if (f->mapped) munmap((void *)f->map, f->size);
    free(f->tensors);
    free(f->names);
    free(f->path);
    free(f);
}

const char *st_path(const st_file *f) { return f->path; }
size_t st_tensor_count(const st_file *f) { return f->n_tensors; }
const st_tensor *st_tensor_at(const st_file *f, size_t i) { return i < f->n_tensors ? &f->tensors[i] : NULL; }

const st_tensor *st_find(const st_file *f, const char *name) {
    st_tensor key = {.name = name};
    return bsearch(&key, f->tensors, f->n_tensors, sizeof *f->tensors, by_name);
}

/* Page-aligned [start, end) strictly inside [ptr, ptr + len): pages shared with a neighbour
 * are left alone. */
static void page_range(const void *ptr, size_t len, uintptr_t *start, uintptr_t *end) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    *start = ((uintptr_t)ptr + page - 1) & ~(page - 1);
    *end = ((uintptr_t)ptr + len) & ~(page - 1);
}

void st_release(const st_tensor *t, const void *ptr, size_t len) {
    if (!t->file || !t->file->mapped) return;
    uintptr_t start, end;
    page_range(ptr, len, &start, &end);
    if (end > start) madvise((void *)start, end - start, MADV_DONTNEED);
}

void st_prefetch(const st_tensor *t, const void *ptr, size_t len) {
    if (!t->file || !t->file->mapped) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)ptr & ~(page - 1), end = (uintptr_t)ptr + len;
    if (end > start) madvise((void *)start, end - start, MADV_WILLNEED);
}

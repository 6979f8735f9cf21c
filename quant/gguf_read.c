/* GGUF v3 reader. The file is mapped read-only and every count, length, type and offset is
 * checked against the file's size before anything points into it; all length arithmetic is
 * checked for overflow. Work and memory are bounded by the file's size, never by a count read
 * from it. Strings and tensor data stay in the mapping (nothing is copied); string arrays get an
 * offset index at open time so that element i is found without walking the array. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf_internal.h"

/* Smallest possible encodings, used to reject counts that cannot fit in the file before any
 * loop or allocation trusts them. */
#define KV_MIN_BYTES (8 + 4 + 1)               /* key length, value type, one value byte */
#define TENSOR_INFO_MIN_BYTES (8 + 4 + 8 + 4 + 8) /* name length, n_dims, one ne, type, offset */

typedef struct {
    uint64_t key_off;     /* file offset of the key's bytes */
    uint64_t key_len;
    gguf_value_type type;
    uint64_t type_off;    /* file offset of the u32 value type; the value follows it */
    uint64_t end_off;     /* file offset just past the value */
    uint64_t *str_index;  /* string arrays: file offset of each element's length field */
} kv_entry;

struct gguf_file {
    char *name; /* the path, or the name given to gguf_open_memory: used in every message */
    const uint8_t *base;
    uint64_t size;
    int mapped; /* base is our mmap (gguf_open) rather than the caller's buffer */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    int64_t n_kv;
    kv_entry *kvs;
    int64_t *kv_by_key; /* kv indices sorted by key: duplicate check, gguf_find_key */
    int64_t n_tensors;
    gguf_tensor *tensors;
    int64_t *tensor_by_name;
    int64_t n_str_arrays;
    int64_t *str_arrays; /* kv indices of string arrays, in file order (so by data address) */
};

/* ---- small helpers ------------------------------------------------------------------------ */

static const char *const value_type_names[GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};

size_t gguf_value_size(gguf_value_type t) {
    switch (t) {
    case GGUF_TYPE_U8: case GGUF_TYPE_I8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_U16: case GGUF_TYPE_I16: return 2;
    case GGUF_TYPE_U32: case GGUF_TYPE_I32: case GGUF_TYPE_F32: return 4;
    case GGUF_TYPE_U64: case GGUF_TYPE_I64: case GGUF_TYPE_F64: return 8;
    default: return 0;
    }
}

const char *gguf_value_type_name(gguf_value_type t) {
    return (unsigned)t < GGUF_TYPE_COUNT ? value_type_names[t] : "unknown";
}

/* "a u32", "an i32", "an array": for messages that name a type. */
static const char *article(gguf_value_type t) {
    const char *n = gguf_value_type_name(t);
    return (n[0] == 'i' || n[0] == 'f' || n[0] == 'a') ? "an" : "a";
}

static bool is_integer_type(gguf_value_type t) {
    return t == GGUF_TYPE_U8 || t == GGUF_TYPE_I8 || t == GGUF_TYPE_U16 || t == GGUF_TYPE_I16 ||
           t == GGUF_TYPE_U32 || t == GGUF_TYPE_I32 || t == GGUF_TYPE_U64 || t == GGUF_TYPE_I64;
}

bool gguf_key_valid(const char *key, size_t len) {
    if (!key || len == 0 || len > GGUF_MAX_KEY) return false;
    bool segment_empty = true;
    for (size_t i = 0; i < len; i++) {
        char c = key[i];
        if (c == '.') {
            if (segment_empty) return false;
            segment_empty = true;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') {
            segment_empty = false;
        } else {
            return false;
        }
    }
    return !segment_empty;
}

/* What the reader accepts: the writer's syntax, plus upper case and '-', which some other
 * tools' keys use; reading their files matters more than policing their style. */
static bool key_readable(const char *key, size_t len) {
    if (len == 0 || len > GGUF_MAX_KEY) return false;
    bool segment_empty = true;
    for (size_t i = 0; i < len; i++) {
        char c = key[i];
        if (c == '.') {
            if (segment_empty) return false;
            segment_empty = true;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-') {
            segment_empty = false;
        } else {
            return false;
        }
    }
    return !segment_empty;
}

/* Untrusted bytes made safe for a one-line message: non-printables become '?', long text is
 * cut with "...". */
static const char *printable(const uint8_t *p, uint64_t n, char *buf, size_t size) {
    size_t keep = n <= size - 1 ? (size_t)n : size - 4, o = 0;
    for (; o < keep; o++) buf[o] = (p[o] >= 0x20 && p[o] < 0x7f) ? (char)p[o] : '?';
    if (keep < n) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = 0;
    return buf;
}

static bool add_u64(uint64_t a, uint64_t b, uint64_t *out) { return !__builtin_add_overflow(a, b, out); }

/* x rounded up to a multiple of align (a power of two); false on overflow. */
static bool align_up(uint64_t x, uint64_t align, uint64_t *out) {
    uint64_t t;
    if (!add_u64(x, align - 1, &t)) return false;
    *out = t & ~(align - 1);
    return true;
}

static int cmp_bytes(const uint8_t *a, uint64_t alen, const uint8_t *b, uint64_t blen) {
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c) return c;
    return alen < blen ? -1 : alen > blen;
}

/* ---- the parser --------------------------------------------------------------------------- */

typedef struct {
    gguf_file *f;
    uint64_t pos; /* invariant: pos <= f->size */
    g2_error *err;
    char what[128]; /* "kv 3 'general.name'", "tensor 2 'output.weight'": prefix of messages */
} parser;

static uint64_t remaining(const parser *p) { return p->f->size - p->pos; }

/* Fail unless n more bytes are there for the field `field` at the current position. */
static int need(parser *p, uint64_t n, const char *field) {
    if (n <= remaining(p)) return 0;
    return g2_fail(p->err, "%s: %s: %s at offset %" PRIu64 " needs %" PRIu64 " bytes, but the file ends at %" PRIu64,
                   p->f->name, p->what, field, p->pos, n, p->f->size);
}

static int read_u32(parser *p, uint32_t *v, const char *field) {
    if (need(p, 4, field)) return -1;
    *v = gguf_rd_u32(p->f->base + p->pos);
    p->pos += 4;
    return 0;
}

static int read_u64(parser *p, uint64_t *v, const char *field) {
    if (need(p, 8, field)) return -1;
    *v = gguf_rd_u64(p->f->base + p->pos);
    p->pos += 8;
    return 0;
}

/* A string: u64 length + bytes. *off is the file offset of the bytes. */
static int read_str(parser *p, uint64_t *off, uint64_t *len, const char *field) {
    uint64_t at = p->pos;
    if (read_u64(p, len, field)) return -1;
    if (*len > remaining(p))
        return g2_fail(p->err, "%s: %s: %s length %" PRIu64 " at offset %" PRIu64 " runs past the end of the file (%" PRIu64 " bytes)",
                       p->f->name, p->what, field, *len, at, p->f->size);
    *off = p->pos;
    p->pos += *len;
    return 0;
}

/* Validate one value of type t at the current position and step over it. index: where to put
 * the element offsets of a top-level string array (NULL otherwise). */
static int parse_value(parser *p, uint32_t t, int depth, uint64_t **index);

static int parse_array(parser *p, int depth, uint64_t **index) {
    if (depth >= GGUF_MAX_ARRAY_DEPTH)
        return g2_fail(p->err, "%s: %s: arrays nested deeper than %d at offset %" PRIu64, p->f->name, p->what,
                       GGUF_MAX_ARRAY_DEPTH, p->pos);
    uint32_t elem;
    uint64_t count, at = p->pos;
    if (read_u32(p, &elem, "array element type")) return -1;
    if (elem >= GGUF_TYPE_COUNT)
        return g2_fail(p->err, "%s: %s: unknown array element type %" PRIu32 " at offset %" PRIu64, p->f->name, p->what,
                       elem, at);
    at = p->pos;
    if (read_u64(p, &count, "array count")) return -1;
    /* the smallest element: a fixed-size value, an empty string (8), an empty array (12) */
    uint64_t min = elem == GGUF_TYPE_STRING ? 8 : elem == GGUF_TYPE_ARRAY ? 12 : gguf_value_size(elem);
    if (count > remaining(p) / min)
        return g2_fail(p->err, "%s: %s: array count %" PRIu64 " at offset %" PRIu64 " of %s elements runs past the end of the file (%" PRIu64 " bytes)",
                       p->f->name, p->what, count, at, gguf_value_type_name(elem), p->f->size);
    size_t vsize = gguf_value_size(elem);
    if (vsize) {
        const uint8_t *d = p->f->base + p->pos;
        if (elem == GGUF_TYPE_BOOL)
            for (uint64_t i = 0; i < count; i++)
                if (d[i] > 1)
                    return g2_fail(p->err, "%s: %s: bool array element %" PRIu64 " at offset %" PRIu64 " is %u, not 0 or 1",
                                   p->f->name, p->what, i, p->pos + i, d[i]);
        p->pos += count * vsize; /* fits: count <= remaining / vsize */
        return 0;
    }
    if (index && elem == GGUF_TYPE_STRING && count > 0) {
        /* count * 8 <= remaining bytes of the file: bounded by the file's size */
        *index = malloc(count * sizeof **index);
        if (!*index)
            return g2_fail(p->err, "%s: %s: out of memory for a string index of %" PRIu64 " entries", p->f->name, p->what,
                           count);
    }
    for (uint64_t i = 0; i < count; i++) {
        if (index && *index) (*index)[i] = p->pos;
        if (parse_value(p, elem, depth + 1, NULL)) return -1;
    }
    return 0;
}

static int parse_value(parser *p, uint32_t t, int depth, uint64_t **index) {
    uint64_t off, len;
    switch (t) {
    case GGUF_TYPE_STRING: return read_str(p, &off, &len, "string");
    case GGUF_TYPE_ARRAY: return parse_array(p, depth, index);
    case GGUF_TYPE_BOOL:
        if (need(p, 1, "bool")) return -1;
        if (p->f->base[p->pos] > 1)
            return g2_fail(p->err, "%s: %s: bool value %u at offset %" PRIu64 " is not 0 or 1", p->f->name, p->what,
                           p->f->base[p->pos], p->pos);
        p->pos++;
        return 0;
    default: {
        size_t n = gguf_value_size(t);
        if (need(p, n, gguf_value_type_name((gguf_value_type)t))) return -1;
        p->pos += n;
        return 0;
    }
    }
}

/* qsort comparators need the file: the parser is single-threaded per file, but two files may
 * be opened on two threads, so no static context: the sort keys carry their own pointers. */
typedef struct {
    const uint8_t *p;
    uint64_t len;
    int64_t index;
} sort_key;

static int cmp_sort_key(const void *a, const void *b) {
    const sort_key *x = a, *y = b;
    int c = cmp_bytes(x->p, x->len, y->p, y->len);
    if (c) return c;
    return (x->index > y->index) - (x->index < y->index);
}

/* Sort n keys; on a duplicate return the later index and set *first to the earlier one. */
static int64_t sort_and_find_duplicate(sort_key *keys, int64_t n, int64_t *sorted, int64_t *first) {
    qsort(keys, (size_t)n, sizeof *keys, cmp_sort_key);
    int64_t dup = -1;
    for (int64_t i = 0; i < n; i++) {
        sorted[i] = keys[i].index;
        if (i > 0 && dup < 0 && cmp_bytes(keys[i - 1].p, keys[i - 1].len, keys[i].p, keys[i].len) == 0) {
            dup = keys[i].index;
            *first = keys[i - 1].index;
        }
    }
    return dup;
}

static int parse_kvs(parser *p) {
    gguf_file *f = p->f;
    char shown[80];
    for (int64_t i = 0; i < f->n_kv; i++) {
        kv_entry *kv = &f->kvs[i];
        snprintf(p->what, sizeof p->what, "kv %" PRId64, i);
        uint64_t at = p->pos;
        if (read_str(p, &kv->key_off, &kv->key_len, "key")) return -1;
        const uint8_t *key = f->base + kv->key_off;
        if (!key_readable((const char *)key, kv->key_len))
            return g2_fail(p->err, "%s: kv %" PRId64 " at offset %" PRIu64 ": key '%s' (%" PRIu64 " bytes) is not valid: "
                           "keys are 1..255 bytes of [A-Za-z0-9_-] segments joined by '.'",
                           f->name, i, at, printable(key, kv->key_len, shown, sizeof shown), kv->key_len);
        snprintf(p->what, sizeof p->what, "kv %" PRId64 " '%.*s'", i, (int)kv->key_len, (const char *)key);
        uint32_t t;
        kv->type_off = p->pos;
        if (read_u32(p, &t, "value type")) return -1;
        if (t >= GGUF_TYPE_COUNT)
            return g2_fail(p->err, "%s: %s: unknown value type %" PRIu32 " at offset %" PRIu64, f->name, p->what, t,
                           kv->type_off);
        kv->type = (gguf_value_type)t;
        if (parse_value(p, t, 0, &kv->str_index)) return -1;
        kv->end_off = p->pos;
        if (t == GGUF_TYPE_ARRAY && gguf_rd_u32(f->base + kv->type_off + 4) == GGUF_TYPE_STRING) f->n_str_arrays++;
    }

    /* duplicate keys; the sorted order also serves gguf_find_key */
    sort_key *keys = malloc((size_t)(f->n_kv ? f->n_kv : 1) * sizeof *keys);
    f->kv_by_key = malloc((size_t)(f->n_kv ? f->n_kv : 1) * sizeof *f->kv_by_key);
    f->str_arrays = malloc((size_t)(f->n_str_arrays ? f->n_str_arrays : 1) * sizeof *f->str_arrays);
    if (!keys || !f->kv_by_key || !f->str_arrays) {
        free(keys);
        return g2_fail(p->err, "%s: out of memory for the index of %" PRId64 " keys", f->name, f->n_kv);
    }
    int64_t n_str = 0;
    for (int64_t i = 0; i < f->n_kv; i++) {
        keys[i] = (sort_key){f->base + f->kvs[i].key_off, f->kvs[i].key_len, i};
        if (f->kvs[i].type == GGUF_TYPE_ARRAY && gguf_rd_u32(f->base + f->kvs[i].type_off + 4) == GGUF_TYPE_STRING)
            f->str_arrays[n_str++] = i;
    }
    int64_t first = -1, dup = sort_and_find_duplicate(keys, f->n_kv, f->kv_by_key, &first);
    free(keys);
    if (dup >= 0) {
        const kv_entry *kv = &f->kvs[dup];
        return g2_fail(p->err, "%s: kv %" PRId64 " at offset %" PRIu64 ": duplicate key '%.*s' (first defined by kv %" PRId64 ")",
                       f->name, dup, kv->key_off - 8, (int)kv->key_len, (const char *)f->base + kv->key_off, first);
    }

    /* general.alignment: a u32, a nonzero power of two */
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t a = gguf_find_key(f, GGUF_ALIGNMENT_KEY);
    if (a >= 0) {
        const kv_entry *kv = &f->kvs[a];
        if (kv->type != GGUF_TYPE_U32)
            return g2_fail(p->err, "%s: kv %" PRId64 " at offset %" PRIu64 ": %s is %s %s, expected a u32", f->name, a,
                           kv->type_off, GGUF_ALIGNMENT_KEY, article(kv->type), gguf_value_type_name(kv->type));
        uint32_t v = gguf_rd_u32(f->base + kv->type_off + 4);
        if (v == 0 || (v & (v - 1)))
            return g2_fail(p->err, "%s: kv %" PRId64 " at offset %" PRIu64 ": %s = %" PRIu32 " is not a nonzero power of two",
                           f->name, a, kv->type_off + 4, GGUF_ALIGNMENT_KEY, v);
        f->alignment = v;
    }
    return 0;
}

/* Read tensor i's info and check what does not depend on where the data section starts. */
static int parse_tensor_info(parser *p, int64_t i, uint64_t *offset_field_at) {
    gguf_file *f = p->f;
    gguf_tensor *t = &f->tensors[i];
    char shown[80];
    snprintf(p->what, sizeof p->what, "tensor %" PRId64, i);
    uint64_t at = p->pos, name_off, name_len;
    if (read_str(p, &name_off, &name_len, "name")) return -1;
    const uint8_t *name = f->base + name_off;
    if (name_len == 0) return g2_fail(p->err, "%s: tensor %" PRId64 " at offset %" PRIu64 ": empty name", f->name, i, at);
    if (name_len > GGUF_MAX_NAME)
        return g2_fail(p->err, "%s: tensor %" PRId64 " at offset %" PRIu64 ": name '%s' is %" PRIu64 " bytes, the limit is %d",
                       f->name, i, at, printable(name, name_len, shown, sizeof shown), name_len, GGUF_MAX_NAME);
    if (memchr(name, 0, name_len))
        return g2_fail(p->err, "%s: tensor %" PRId64 " at offset %" PRIu64 ": name '%s' contains a NUL byte", f->name, i,
                       at, printable(name, name_len, shown, sizeof shown));
    memcpy(t->name, name, name_len);
    t->name[name_len] = 0;
    snprintf(p->what, sizeof p->what, "tensor %" PRId64 " '%s'", i, printable(name, name_len, shown, sizeof shown));

    at = p->pos;
    if (read_u32(p, &t->n_dims, "n_dims")) return -1;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return g2_fail(p->err, "%s: %s: n_dims %" PRIu32 " at offset %" PRIu64 " is not in 1..%d", f->name, p->what,
                       t->n_dims, at, GGUF_MAX_DIMS);
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne;
        at = p->pos;
        if (read_u64(p, &ne, "ne")) return -1;
        if (ne > (uint64_t)INT64_MAX)
            return g2_fail(p->err, "%s: %s: ne[%" PRIu32 "] = %" PRId64 " at offset %" PRIu64 " is negative", f->name,
                           p->what, d, (int64_t)ne, at);
        t->ne[d] = (int64_t)ne;
    }
    at = p->pos;
    if (read_u32(p, &t->type, "type")) return -1;
    const g2_type_traits *tt = g2_type_get(t->type);
    if (!tt)
        return g2_fail(p->err, "%s: %s: unknown ggml type id %" PRIu32 " at offset %" PRIu64, f->name, p->what, t->type,
                       at);
    *offset_field_at = p->pos;
    if (read_u64(p, &t->offset, "data offset")) return -1;

    int64_t elements = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
        if (__builtin_mul_overflow(elements, t->ne[d], &elements))
            return g2_fail(p->err, "%s: %s: element count of [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 "] overflows int64",
                           f->name, p->what, t->ne[0], t->ne[1], t->ne[2], t->ne[3]);
    if (t->ne[0] % tt->block_size)
        return g2_fail(p->err, "%s: %s: ne[0] = %" PRId64 " is not a multiple of the %s block size %" PRId64, f->name,
                       p->what, t->ne[0], tt->name, tt->block_size);
    uint64_t bytes = (uint64_t)(t->ne[0] / tt->block_size), rows = (uint64_t)(elements / (t->ne[0] ? t->ne[0] : 1));
    if (t->ne[0] == 0) rows = 0;
    if (__builtin_mul_overflow(bytes, (uint64_t)tt->type_size, &bytes) || __builtin_mul_overflow(bytes, rows, &bytes) ||
        bytes > (uint64_t)SIZE_MAX)
        return g2_fail(p->err, "%s: %s: byte size of %" PRId64 " %s elements overflows", f->name, p->what, elements,
                       tt->name);
    t->nbytes = (size_t)bytes;
    return 0;
}

/* A tensor's name as a message may show it: the reader only rejects NUL, so a name may hold a
 * newline or an escape sequence. */
static const char *shown_name(const gguf_tensor *t, char *buf, size_t size) {
    return printable((const uint8_t *)t->name, strlen(t->name), buf, size);
}

static int parse_tensors(parser *p) {
    gguf_file *f = p->f;
    char shown[80], shown_prev[80];
    uint64_t *offset_field_at = malloc((size_t)(f->n_tensors ? f->n_tensors : 1) * sizeof *offset_field_at);
    if (!offset_field_at) return g2_fail(p->err, "%s: out of memory for %" PRId64 " tensors", f->name, f->n_tensors);
    int rc = -1;
    for (int64_t i = 0; i < f->n_tensors; i++)
        if (parse_tensor_info(p, i, &offset_field_at[i])) goto done;

    if (!align_up(p->pos, f->alignment, &f->data_offset)) {
        rc = g2_fail(p->err, "%s: data section offset overflows", f->name);
        goto done;
    }
    /* offsets: aligned, and each the running sum of the earlier tensors' padded sizes (what
     * llama.cpp insists on; it also rules out overlap); data inside the file */
    uint64_t expected = 0;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (t->offset % f->alignment) {
            rc = g2_fail(p->err, "%s: tensor %" PRId64 " '%s': data offset %" PRIu64 " (at offset %" PRIu64 ") is not a multiple of the alignment %" PRIu32,
                         f->name, i, shown_name(t, shown, sizeof shown), t->offset, offset_field_at[i], f->alignment);
            goto done;
        }
        if (t->offset != expected) {
            if (i > 0 && t->offset < expected) {
                const gguf_tensor *prev = &f->tensors[i - 1];
                rc = g2_fail(p->err, "%s: tensor %" PRId64 " '%s': data offset %" PRIu64 " (at offset %" PRIu64 ") overlaps tensor %" PRId64 " '%s' "
                             "(data offsets [%" PRIu64 ", %" PRIu64 ")); offsets must be the running sum of padded sizes, expected %" PRIu64,
                             f->name, i, shown_name(t, shown, sizeof shown), t->offset, offset_field_at[i], i - 1, shown_name(prev, shown_prev, sizeof shown_prev), prev->offset,
                             prev->offset + prev->nbytes, expected);
            } else {
                rc = g2_fail(p->err, "%s: tensor %" PRId64 " '%s': data offset %" PRIu64 " (at offset %" PRIu64 ") is not the running sum "
                             "of the earlier tensors' padded sizes (expected %" PRIu64 ")",
                             f->name, i, shown_name(t, shown, sizeof shown), t->offset, offset_field_at[i], expected);
            }
            goto done;
        }
        uint64_t start, end, padded;
        if (!add_u64(f->data_offset, t->offset, &start) || !add_u64(start, t->nbytes, &end) || end > f->size) {
            rc = g2_fail(p->err, "%s: tensor %" PRId64 " '%s': data [%" PRIu64 ", %" PRIu64 ") runs past the end of the file (%" PRIu64 " bytes)",
                         f->name, i, shown_name(t, shown, sizeof shown), start, start + t->nbytes, f->size);
            goto done;
        }
        t->data = f->base + start;
        if (!align_up(t->nbytes, f->alignment, &padded) || !add_u64(expected, padded, &expected)) {
            rc = g2_fail(p->err, "%s: tensor %" PRId64 " '%s': running data size overflows", f->name, i, shown_name(t, shown, sizeof shown));
            goto done;
        }
    }

    sort_key *keys = malloc((size_t)(f->n_tensors ? f->n_tensors : 1) * sizeof *keys);
    f->tensor_by_name = malloc((size_t)(f->n_tensors ? f->n_tensors : 1) * sizeof *f->tensor_by_name);
    if (!keys || !f->tensor_by_name) {
        free(keys);
        rc = g2_fail(p->err, "%s: out of memory for the index of %" PRId64 " tensors", f->name, f->n_tensors);
        goto done;
    }
    for (int64_t i = 0; i < f->n_tensors; i++)
        keys[i] = (sort_key){(const uint8_t *)f->tensors[i].name, strlen(f->tensors[i].name), i};
    int64_t first = -1, dup = sort_and_find_duplicate(keys, f->n_tensors, f->tensor_by_name, &first);
    free(keys);
    if (dup >= 0) {
        rc = g2_fail(p->err, "%s: tensor %" PRId64 ": duplicate tensor name '%s' (first used by tensor %" PRId64 ")", f->name,
                     dup, shown_name(&f->tensors[dup], shown, sizeof shown), first);
        goto done;
    }
    rc = 0;
done:
    free(offset_field_at);
    return rc;
}

static int parse(gguf_file *f, g2_error *err) {
    char shown[32];
    if (f->size == 0) return g2_fail(err, "%s: empty file (0 bytes), not a GGUF file", f->name);
    if (f->size < 4 || memcmp(f->base, GGUF_MAGIC, 4) != 0)
        return g2_fail(err, "%s: bad magic '%s' at offset 0 (expected 'GGUF'): not a GGUF file", f->name,
                       printable(f->base, f->size < 4 ? f->size : 4, shown, sizeof shown));
    if (f->size < GGUF_HEADER_SIZE)
        return g2_fail(err, "%s: file is %" PRIu64 " bytes, shorter than the %d-byte GGUF header", f->name, f->size,
                       GGUF_HEADER_SIZE);
    f->version = gguf_rd_u32(f->base + 4);
    if (f->version != GGUF_VERSION)
        return g2_fail(err, "%s: unsupported GGUF version %" PRIu32 " at offset 4 (only version 3 is supported%s)", f->name,
                       f->version, f->version == 0x03000000u ? "; this looks like a big-endian file" : "");
    uint64_t n_tensors = gguf_rd_u64(f->base + 8), n_kv = gguf_rd_u64(f->base + 16);
    uint64_t room = f->size - GGUF_HEADER_SIZE;
    if (n_tensors > room / TENSOR_INFO_MIN_BYTES)
        return g2_fail(err, "%s: tensor count %" PRIu64 " at offset 8 cannot fit in a %" PRIu64 "-byte file (each tensor info needs at least %d bytes)",
                       f->name, n_tensors, f->size, TENSOR_INFO_MIN_BYTES);
    if (n_kv > room / KV_MIN_BYTES)
        return g2_fail(err, "%s: kv count %" PRIu64 " at offset 16 cannot fit in a %" PRIu64 "-byte file (each kv needs at least %d bytes)",
                       f->name, n_kv, f->size, KV_MIN_BYTES);
    uint64_t least;
    if (!add_u64(n_tensors * TENSOR_INFO_MIN_BYTES, n_kv * KV_MIN_BYTES, &least) || least > room)
        return g2_fail(err, "%s: tensor count %" PRIu64 " and kv count %" PRIu64 " (offsets 8, 16) cannot both fit in a %" PRIu64 "-byte file",
                       f->name, n_tensors, n_kv, f->size);
    f->n_tensors = (int64_t)n_tensors;
    f->n_kv = (int64_t)n_kv;
    f->kvs = calloc(n_kv ? n_kv : 1, sizeof *f->kvs);
    f->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *f->tensors);
    if (!f->kvs || !f->tensors)
        return g2_fail(err, "%s: out of memory for %" PRIu64 " kvs and %" PRIu64 " tensors", f->name, n_kv, n_tensors);

    parser p = {.f = f, .pos = GGUF_HEADER_SIZE, .err = err};
    if (parse_kvs(&p)) return -1;
    return parse_tensors(&p);
}

/* ---- open / close ------------------------------------------------------------------------- */

static gguf_file *file_new(const char *name) {
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->name = strdup(name ? name : "(memory)");
    if (!f->name) {
        free(f);
        return NULL;
    }
    return f;
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    if (f->kvs)
        for (int64_t i = 0; i < f->n_kv; i++) free(f->kvs[i].str_index);
    free(f->kvs);
    free(f->kv_by_key);
    free(f->tensors);
    free(f->tensor_by_name);
    free(f->str_arrays);
    if (f->mapped) munmap((void *)f->base, (size_t)f->size);
    free(f->name);
    free(f);
}

int gguf_open_memory(gguf_file **out, const void *data, size_t size, const char *name, g2_error *err) {
    *out = NULL;
    gguf_file *f = file_new(name);
    if (!f) return g2_fail(err, "%s: out of memory", name ? name : "(memory)");
    f->base = data;
    f->size = data ? size : 0;
    if (parse(f, err)) {
        gguf_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

int gguf_open(gguf_file **out, const char *path, g2_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return g2_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return g2_fail(err, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return g2_fail(err, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return g2_fail(err, "%s: empty file (0 bytes), not a GGUF file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return g2_fail(err, "%s: file of %lld bytes is too large to map on this machine", path, (long long)st.st_size);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    /* Ask for huge pages: where the kernel caches files in large folios (Linux 6.x, ext4/xfs) the
     * page cache is then filled in 2 MiB folios, and streaming the weights stops missing the TLB
     * every 4 KiB (mini q4_k_m decode on the project's VM: 12.5 -> 17 tokens/s). Pages already
     * cached keep their size; an error (no THP) changes nothing. */
    if (map != MAP_FAILED) madvise(map, (size_t)st.st_size, MADV_HUGEPAGE);
    close(fd); /* the mapping keeps the file */
    if (map == MAP_FAILED)
        return g2_fail(err, "%s: mmap of %lld bytes failed: %s", path, (long long)st.st_size, strerror(e));
    gguf_file *f = file_new(path);
    if (!f) {
        munmap(map, (size_t)st.st_size);
        return g2_fail(err, "%s: out of memory", path);
    }
    f->base = map;
    f->size = (uint64_t)st.st_size;
    f->mapped = 1;
    if (parse(f, err)) {
        gguf_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

/* ---- accessors ---------------------------------------------------------------------------- */

uint32_t gguf_version(const gguf_file *f) { return f->version; }
uint32_t gguf_alignment(const gguf_file *f) { return f->alignment; }
uint64_t gguf_data_offset(const gguf_file *f) { return f->data_offset; }
uint64_t gguf_file_size(const gguf_file *f) { return f->size; }
const void *gguf_file_bytes(const gguf_file *f) { return f->base; }
const char *gguf_path(const gguf_file *f) { return f->name; }
int64_t gguf_kv_count(const gguf_file *f) { return f->n_kv; }

gguf_str gguf_kv_key(const gguf_file *f, int64_t i) {
    if (i < 0 || i >= f->n_kv) return (gguf_str){NULL, 0};
    return (gguf_str){(const char *)f->base + f->kvs[i].key_off, f->kvs[i].key_len};
}

gguf_value_type gguf_kv_type(const gguf_file *f, int64_t i) {
    if (i < 0 || i >= f->n_kv) return GGUF_TYPE_COUNT;
    return f->kvs[i].type;
}

int gguf_kv_raw_value(const gguf_file *f, int64_t i, const uint8_t **data, size_t *size) {
    if (i < 0 || i >= f->n_kv) return -1;
    *data = f->base + f->kvs[i].type_off;
    *size = (size_t)(f->kvs[i].end_off - f->kvs[i].type_off);
    return 0;
}

int64_t gguf_find_key(const gguf_file *f, const char *key) {
    if (!key || !f->kv_by_key) return -1;
    size_t len = strlen(key);
    int64_t lo = 0, hi = f->n_kv;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2, i = f->kv_by_key[mid];
        int c = cmp_bytes(f->base + f->kvs[i].key_off, f->kvs[i].key_len, (const uint8_t *)key, len);
        if (c == 0) return i;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

static const uint8_t *kv_value(const gguf_file *f, int64_t i) { return f->base + f->kvs[i].type_off + 4; }

/* Integer kv i as a sign and magnitude, so that every getter can check its own range. */
static void kv_integer(const gguf_file *f, int64_t i, bool *negative, uint64_t *magnitude) {
    const uint8_t *v = kv_value(f, i);
    int64_t s = 0;
    uint64_t u = 0;
    bool is_signed = true;
    switch (f->kvs[i].type) {
    case GGUF_TYPE_U8: u = v[0]; is_signed = false; break;
    case GGUF_TYPE_U16: { uint16_t x; memcpy(&x, v, 2); u = x; is_signed = false; break; }
    case GGUF_TYPE_U32: u = gguf_rd_u32(v); is_signed = false; break;
    case GGUF_TYPE_U64: u = gguf_rd_u64(v); is_signed = false; break;
    case GGUF_TYPE_I8: s = (int8_t)v[0]; break;
    case GGUF_TYPE_I16: { int16_t x; memcpy(&x, v, 2); s = x; break; }
    case GGUF_TYPE_I32: { int32_t x; memcpy(&x, v, 4); s = x; break; }
    case GGUF_TYPE_I64: memcpy(&s, v, 8); break;
    default: break;
    }
    if (is_signed) {
        *negative = s < 0;
        *magnitude = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    } else {
        *negative = false;
        *magnitude = u;
    }
}

/* Find key and check its type: want is the expected type, or GGUF_TYPE_COUNT for "any
 * integer". Returns the index or -1 with the message filled. */
static int64_t lookup(const gguf_file *f, const char *key, gguf_value_type want, const char *want_text, g2_error *err) {
    int64_t i = gguf_find_key(f, key);
    if (i < 0) {
        g2_fail(err, "%s: key %s not found", f->name, key);
        return -1;
    }
    gguf_value_type t = f->kvs[i].type;
    bool ok = want == GGUF_TYPE_COUNT ? is_integer_type(t) : t == want;
    if (want == GGUF_TYPE_F32 && t == GGUF_TYPE_F64) ok = true;
    if (!ok) {
        g2_fail(err, "%s: key %s is %s %s, expected %s", f->name, key, article(t), gguf_value_type_name(t), want_text);
        return -1;
    }
    return i;
}

static int get_integer(const gguf_file *f, const char *key, bool allow_negative, uint64_t max_positive,
                       uint64_t max_negative, const char *target, bool *negative, uint64_t *magnitude, g2_error *err) {
    int64_t i = lookup(f, key, GGUF_TYPE_COUNT, "an integer", err);
    if (i < 0) return -1;
    kv_integer(f, i, negative, magnitude);
    if ((*negative && (!allow_negative || *magnitude > max_negative)) || (!*negative && *magnitude > max_positive))
        return g2_fail(err, "%s: key %s = %s%" PRIu64 " (%s) does not fit %s", f->name, key, *negative ? "-" : "",
                       *magnitude, gguf_value_type_name(f->kvs[i].type), target);
    return 0;
}

int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, g2_error *err) {
    bool neg;
    uint64_t m;
    if (get_integer(f, key, false, UINT64_MAX, 0, "a u64", &neg, &m, err)) return -1;
    *out = m;
    return 0;
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, g2_error *err) {
    bool neg;
    uint64_t m;
    if (get_integer(f, key, false, UINT32_MAX, 0, "a u32", &neg, &m, err)) return -1;
    *out = (uint32_t)m;
    return 0;
}

int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out, g2_error *err) {
    bool neg;
    uint64_t m;
    if (get_integer(f, key, true, (uint64_t)INT64_MAX, (uint64_t)INT64_MAX + 1, "an i64", &neg, &m, err)) return -1;
    *out = neg ? (int64_t)(0 - m) : (int64_t)m; /* 0 - 2^63 wraps to INT64_MIN's bits */
    return 0;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out, g2_error *err) {
    int64_t i = lookup(f, key, GGUF_TYPE_F32, "an f32 (or f64)", err);
    if (i < 0) return -1;
    const uint8_t *v = kv_value(f, i);
    if (f->kvs[i].type == GGUF_TYPE_F64) {
        double d;
        memcpy(&d, v, 8);
        *out = (float)d;
    } else {
        memcpy(out, v, 4);
    }
    return 0;
}

int gguf_get_bool(const gguf_file *f, const char *key, bool *out, g2_error *err) {
    int64_t i = lookup(f, key, GGUF_TYPE_BOOL, "a bool", err);
    if (i < 0) return -1;
    *out = kv_value(f, i)[0] != 0;
    return 0;
}

int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, g2_error *err) {
    int64_t i = lookup(f, key, GGUF_TYPE_STRING, "a string", err);
    if (i < 0) return -1;
    return gguf_kv_as_str(f, i, out);
}

int gguf_get_array(const gguf_file *f, const char *key, gguf_array *out, g2_error *err) {
    int64_t i = lookup(f, key, GGUF_TYPE_ARRAY, "an array", err);
    if (i < 0) return -1;
    return gguf_kv_as_array(f, i, out);
}

int gguf_kv_as_str(const gguf_file *f, int64_t i, gguf_str *out) {
    if (i < 0 || i >= f->n_kv || f->kvs[i].type != GGUF_TYPE_STRING) return -1;
    const uint8_t *v = kv_value(f, i);
    *out = (gguf_str){(const char *)v + 8, gguf_rd_u64(v)};
    return 0;
}

int gguf_kv_as_array(const gguf_file *f, int64_t i, gguf_array *out) {
    if (i < 0 || i >= f->n_kv || f->kvs[i].type != GGUF_TYPE_ARRAY) return -1;
    const uint8_t *v = kv_value(f, i);
    *out = (gguf_array){(gguf_value_type)gguf_rd_u32(v), gguf_rd_u64(v + 4), v + 12};
    return 0;
}

gguf_str gguf_array_str(const gguf_file *f, const gguf_array *arr, uint64_t i) {
    if (!arr || arr->elem_type != GGUF_TYPE_STRING || i >= arr->count) return (gguf_str){NULL, 0};
    /* which string array: binary search by address (string arrays are kept in file order) */
    const uint8_t *d = arr->data;
    int64_t lo = 0, hi = f->n_str_arrays;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const kv_entry *kv = &f->kvs[f->str_arrays[mid]];
        const uint8_t *start = f->base + kv->type_off + 16;
        if (start == d) {
            if (i >= gguf_rd_u64(start - 8) || !kv->str_index) return (gguf_str){NULL, 0};
            uint64_t at = kv->str_index[i];
            return (gguf_str){(const char *)f->base + at + 8, gguf_rd_u64(f->base + at)};
        }
        if (start < d) lo = mid + 1;
        else hi = mid;
    }
    return (gguf_str){NULL, 0};
}

double gguf_array_num(const gguf_array *arr, uint64_t i) {
    if (!arr || i >= arr->count) return 0;
    size_t n = gguf_value_size(arr->elem_type);
    if (!n) return 0;
    const uint8_t *v = (const uint8_t *)arr->data + i * n;
    switch (arr->elem_type) {
    case GGUF_TYPE_U8: return v[0];
    case GGUF_TYPE_I8: return (int8_t)v[0];
    case GGUF_TYPE_BOOL: return v[0] != 0;
    case GGUF_TYPE_U16: { uint16_t x; memcpy(&x, v, 2); return x; }
    case GGUF_TYPE_I16: { int16_t x; memcpy(&x, v, 2); return x; }
    case GGUF_TYPE_U32: return gguf_rd_u32(v);
    case GGUF_TYPE_I32: { int32_t x; memcpy(&x, v, 4); return x; }
    case GGUF_TYPE_F32: { float x; memcpy(&x, v, 4); return x; }
    case GGUF_TYPE_U64: return (double)gguf_rd_u64(v);
    case GGUF_TYPE_I64: { int64_t x; memcpy(&x, v, 8); return (double)x; }
    case GGUF_TYPE_F64: { double x; memcpy(&x, v, 8); return x; }
    default: return 0;
    }
}

/* A string value quoted and escaped into buf, cut with "..." when it does not fit. Returns the
 * length written. */
static int format_str(const uint8_t *s, uint64_t len, char *buf, size_t size) {
    if (size == 0) return 0;
    size_t o = 0;
    const size_t cut_room = 5; /* `..."` + NUL */
    if (size < cut_room + 2) {
        buf[0] = 0;
        return 0;
    }
    buf[o++] = '"';
    uint64_t i = 0;
    for (; i < len; i++) {
        char esc[5];
        uint8_t c = s[i];
        int n;
        if (c == '"' || c == '\\') n = snprintf(esc, sizeof esc, "\\%c", c);
        else if (c == '\n') n = snprintf(esc, sizeof esc, "\\n");
        else if (c == '\t') n = snprintf(esc, sizeof esc, "\\t");
        else if (c < 0x20 || c == 0x7f) n = snprintf(esc, sizeof esc, "\\x%02x", c);
        else n = snprintf(esc, sizeof esc, "%c", c);
        if (o + (size_t)n + cut_room > size) break;
        memcpy(buf + o, esc, (size_t)n);
        o += (size_t)n;
    }
    if (i < len) {
        /* never end on half a UTF-8 character */
        size_t k = o, cont = 0;
        while (k > 1 && ((uint8_t)buf[k - 1] & 0xc0) == 0x80 && cont < 3) k--, cont++;
        uint8_t lead = (uint8_t)buf[k - 1];
        if (k > 1 && lead >= 0xc0 && cont < (size_t)(lead >= 0xf0 ? 3 : lead >= 0xe0 ? 2 : 1)) o = k - 1;
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '"';
    buf[o] = 0;
    return (int)o;
}

int gguf_kv_format(const gguf_file *f, int64_t i, char *buf, size_t size) {
    if (i < 0 || i >= f->n_kv) return snprintf(buf, size, "?");
    const uint8_t *v = kv_value(f, i);
    gguf_value_type t = f->kvs[i].type;
    if (is_integer_type(t)) {
        bool neg;
        uint64_t m;
        kv_integer(f, i, &neg, &m);
        return snprintf(buf, size, "%s%" PRIu64, neg ? "-" : "", m);
    }
    switch (t) {
    case GGUF_TYPE_F32: { float x; memcpy(&x, v, 4); return snprintf(buf, size, "%.9g", (double)x); }
    case GGUF_TYPE_F64: { double x; memcpy(&x, v, 8); return snprintf(buf, size, "%.17g", x); }
    case GGUF_TYPE_BOOL: return snprintf(buf, size, "%s", v[0] ? "true" : "false");
    case GGUF_TYPE_STRING: return format_str(v + 8, gguf_rd_u64(v), buf, size);
    case GGUF_TYPE_ARRAY:
        return snprintf(buf, size, "[%s x %" PRIu64 "]", gguf_value_type_name((gguf_value_type)gguf_rd_u32(v)),
                        gguf_rd_u64(v + 4));
    default: return snprintf(buf, size, "?");
    }
}

int64_t gguf_tensor_count(const gguf_file *f) { return f->n_tensors; }

const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i) {
    if (i < 0 || i >= f->n_tensors) return NULL;
    return &f->tensors[i];
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    if (!name || !f->tensor_by_name) return NULL;
    int64_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2, i = f->tensor_by_name[mid];
        int c = strcmp(f->tensors[i].name, name);
        if (c == 0) return &f->tensors[i];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* quant/: the file format. Errors as values, the ggml type table (the one place that knows each
 * block type), scalar reference quantizers and dequantizers, and the GGUF v3 reader (over mmap)
 * and streaming writer. Used by convert/ and runtime/. */
#ifndef GROK2_QUANT_H
#define GROK2_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../simd/simd.h"

/* ---- errors ------------------------------------------------------------------------------- */
/* A function that can fail returns 0 on success or -1 after filling *err with one line that
 * names the file, tensor, key or offset. Callers print it once; libraries never exit(). */
typedef struct {
    char msg[512];
} g2_error;

/* Fills err (may be NULL) with the formatted message; returns -1 so callers can
 * `return g2_fail(err, ...)`. */
int g2_fail(g2_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- the type table ----------------------------------------------------------------------- */
/* ids are ggml's; a type the project invents must use an id above 100. */
enum {
    G2_TYPE_F32 = 0,
    G2_TYPE_F16 = 1,
    G2_TYPE_Q4_0 = 2,
    G2_TYPE_Q4_1 = 3,
    G2_TYPE_Q5_0 = 6,
    G2_TYPE_Q5_1 = 7,
    G2_TYPE_Q8_0 = 8,
    G2_TYPE_Q8_1 = 9,
    G2_TYPE_Q2_K = 10,
    G2_TYPE_Q3_K = 11,
    G2_TYPE_Q4_K = 12,
    G2_TYPE_Q5_K = 13,
    G2_TYPE_Q6_K = 14,
    G2_TYPE_Q8_K = 15,
    G2_TYPE_IQ4_NL = 20,
    G2_TYPE_IQ4_XS = 23,
    G2_TYPE_BF16 = 30,
    G2_TYPE_ID_LIMIT = 40 /* ids at or above this are unknown to the table */
};

typedef struct {
    const char *name;   /* ggml's name: "f32", "q4_K", ... */
    uint32_t id;
    int64_t block_size; /* weights per block (1 for plain floats) */
    size_t type_size;   /* bytes per block */
    /* Decode n values (n a multiple of block_size). NULL: the type is known (its size is, so
     * files holding it can be read and listed) but this project cannot compute with it. */
    void (*to_float)(const void *src, float *dst, int64_t n);
    /* Encode one row of n values (n a multiple of block_size). importance: NULL, or n
     * non-negative per-column weights that the scale search minimises the weighted error for. */
    void (*from_float)(const float *src, void *dst, int64_t n, const float *importance);
} g2_type_traits;

/* The traits of a type id, or NULL for an id that is not in the table. */
const g2_type_traits *g2_type_get(uint32_t id);
/* Look up by name, case-insensitive ("q4_k", "Q4_K", "bf16"); NULL if unknown. */
const g2_type_traits *g2_type_by_name(const char *name);
/* Bytes of one row of ne0 values; 0 if the type is unknown or ne0 is not a multiple of its
 * block size. */
size_t g2_row_size(uint32_t type, int64_t ne0);

/* Quantize nrows rows of n_per_row floats into dst (rows packed, g2_row_size each); importance
 * is NULL or n_per_row weights shared by all rows. Returns bytes written, 0 if the type cannot
 * be encoded or n_per_row does not fit its blocks. */
size_t g2_quantize_rows(uint32_t type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                        const float *importance);
/* Decode n values of type into dst; -1 if the type cannot be decoded or n does not fit. */
int g2_dequantize(uint32_t type, const void *src, float *dst, int64_t n);

/* ---- GGUF v3 reader ----------------------------------------------------------------------- */

typedef enum {
    GGUF_TYPE_U8 = 0,
    GGUF_TYPE_I8 = 1,
    GGUF_TYPE_U16 = 2,
    GGUF_TYPE_I16 = 3,
    GGUF_TYPE_U32 = 4,
    GGUF_TYPE_I32 = 5,
    GGUF_TYPE_F32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_U64 = 10,
    GGUF_TYPE_I64 = 11,
    GGUF_TYPE_F64 = 12,
    GGUF_TYPE_COUNT
} gguf_value_type;

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 63 /* tensor names are < 64 bytes */

typedef struct {
    const char *data; /* points into the mapped file: not NUL-terminated */
    uint64_t len;
} gguf_str;

typedef struct {
    gguf_value_type elem_type; /* GGUF_TYPE_ARRAY for nested arrays (not readable by getters) */
    uint64_t count;
    const void *data; /* fixed-size elements: packed little-endian values in the file */
} gguf_array;

typedef struct {
    char name[GGUF_MAX_NAME + 1];
    uint32_t type; /* ggml type id, always in the table */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* unused dims are 1 */
    uint64_t offset;           /* relative to the data section */
    const void *data;          /* into the mapping */
    size_t nbytes;
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Map path read-only and validate everything before trusting it. */
int gguf_open(gguf_file **out, const char *path, g2_error *err);
/* The same over a buffer the caller keeps alive (tests, fuzzing); name is used in errors. */
int gguf_open_memory(gguf_file **out, const void *data, size_t size, const char *name, g2_error *err);
void gguf_close(gguf_file *f);

uint32_t gguf_version(const gguf_file *f);
uint32_t gguf_alignment(const gguf_file *f);
uint64_t gguf_data_offset(const gguf_file *f); /* file offset of the data section */
uint64_t gguf_file_size(const gguf_file *f);
const void *gguf_file_bytes(const gguf_file *f); /* the whole file: the mapping, or the caller's buffer */
const char *gguf_path(const gguf_file *f);

/* Metadata by index (0 .. kv_count-1) */
int64_t gguf_kv_count(const gguf_file *f);
gguf_str gguf_kv_key(const gguf_file *f, int64_t i);
gguf_value_type gguf_kv_type(const gguf_file *f, int64_t i);
/* Index of key, or -1. */
int64_t gguf_find_key(const gguf_file *f, const char *key);

/* Typed getters: -1 with a message naming the file and key when the key is missing or holds
 * another type. Integer getters accept any integer type whose value fits. */
int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, g2_error *err);
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, g2_error *err);
int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out, g2_error *err);
int gguf_get_f32(const gguf_file *f, const char *key, float *out, g2_error *err); /* f32 or f64 */
int gguf_get_bool(const gguf_file *f, const char *key, bool *out, g2_error *err);
int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, g2_error *err);
int gguf_get_array(const gguf_file *f, const char *key, gguf_array *out, g2_error *err);
/* By index, for listing: the value of kv i (scalar getters only apply to their own type). */
int gguf_kv_as_str(const gguf_file *f, int64_t i, gguf_str *out);
int gguf_kv_as_array(const gguf_file *f, int64_t i, gguf_array *out);
/* Scalar kv i formatted as text (numbers, bool, quoted string cut to max chars); arrays as
 * "[type x count]". Returns the length written, like snprintf. */
int gguf_kv_format(const gguf_file *f, int64_t i, char *buf, size_t size);
/* Element i of a string array (from gguf_get_array on a GGUF_TYPE_STRING array). */
gguf_str gguf_array_str(const gguf_file *f, const gguf_array *arr, uint64_t i);
/* Element i of a fixed-size numeric array converted to double (0 for other types). */
double gguf_array_num(const gguf_array *arr, uint64_t i);

int64_t gguf_tensor_count(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* Size in bytes of one value of a fixed-size GGUF type; 0 for string/array/unknown. */
size_t gguf_value_size(gguf_value_type t);
const char *gguf_value_type_name(gguf_value_type t);
/* Keys are ASCII lower_snake_case segments joined by '.': the writer accepts [a-z0-9_] in
 * non-empty segments, length 1..255. (The reader also accepts upper case and '-', which some
 * other tools write.) */
bool gguf_key_valid(const char *key, size_t len);

/* ---- GGUF v3 writer (streaming) ----------------------------------------------------------- */
/* Usage: new -> set_* / add_tensor (any order; tensors keep their add order) -> begin (writes
 * header and tensor infos to PATH.tmp) -> write the tensors' bytes in add order, in as many
 * calls as convenient (each tensor is padded automatically when complete) -> finish (renames
 * PATH.tmp to PATH). free() at any point before finish removes the temp file; so does SIGINT /
 * SIGTERM / SIGHUP while it is open. */
typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);

/* Metadata setters replace an existing key of the same name. They fail only on an invalid key
 * or after begin(). */
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v, g2_error *err);
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v, g2_error *err);
int gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v, g2_error *err);
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v, g2_error *err);
int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v, g2_error *err);
int gguf_writer_set_str(gguf_writer *w, const char *key, const char *v, g2_error *err);
/* Array of fixed-size values (elem_type not string/array): count packed values copied. */
int gguf_writer_set_array(gguf_writer *w, const char *key, gguf_value_type elem_type, const void *data,
                          uint64_t count, g2_error *err);
/* Array of strings: strs[i] of lens[i] bytes (lens NULL: NUL-terminated). Copied. */
int gguf_writer_set_str_array(gguf_writer *w, const char *key, const char *const *strs, const size_t *lens,
                              uint64_t count, g2_error *err);
/* Copy kv i of an open file (any type, nested arrays included) unless the writer already has
 * that key. */
int gguf_writer_copy_kv(gguf_writer *w, const gguf_file *f, int64_t i, g2_error *err);
/* Alignment (power of two, default 32); written as general.alignment when not the default. */
int gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment, g2_error *err);

/* Declare a tensor: checks the name, dims, type and block divisibility. */
int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne,
                           g2_error *err);
/* Total bytes the finished file will have (valid once every tensor is added). */
uint64_t gguf_writer_total_size(const gguf_writer *w);

int gguf_writer_begin(gguf_writer *w, const char *path, g2_error *err);
/* Append bytes of the current tensor (tensors in add order). Fails on overflow past the
 * tensor's size or on an I/O error (no space left, ...) naming the temp file. */
int gguf_writer_write(gguf_writer *w, const void *data, size_t nbytes, g2_error *err);
/* All tensors complete -> flush, fsync, rename. */
int gguf_writer_finish(gguf_writer *w, g2_error *err);

/* ---- temp files removed on signals -------------------------------------------------------- */
/* The writer registers its temp path here; a SIGINT/SIGTERM/SIGHUP handler unlinks every
 * registered path and re-raises the signal. Process-wide by nature (signals are). */
void g2_tmpfile_register(const char *path);
void g2_tmpfile_unregister(const char *path);

#endif

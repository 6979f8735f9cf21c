/* Tests for quant/'s GGUF v3 reader and streaming writer: round trips, a golden file built
 * byte by byte from the spec, a malformed corpus, writer faults (no space, file size limit,
 * signals, abandoned writers) and the typed getters. Also (re)generates and checks the fuzzer's
 * seed files in tests/data/gguf-seeds (set GROK2_WRITE_SEEDS=DIR to write them to DIR). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../quant/gguf_internal.h"
#include "harness.h"
#include "../quant/quant.h"

/* ---- helpers: temp dirs, files ------------------------------------------------------------ */

static char *make_tmpdir(void) {
    char *dir = harness_tmpdir("gguf");
    cr_assert(dir, "cannot make a temp dir: %s", strerror(errno));
    return dir;
}

static void remove_tmpdir(char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char *p = NULL;
            if (asprintf(&p, "%s/%s", dir, e->d_name) > 0) unlink(p);
            free(p);
        }
        closedir(d);
    }
    rmdir(dir);
    free(dir);
}

static char *path_in(const char *dir, const char *name) {
    char *p = NULL;
    cr_assert(asprintf(&p, "%s/%s", dir, name) > 0);
    return p;
}

static char *tmp_of(const char *path) {
    char *p = NULL;
    cr_assert(asprintf(&p, "%s.tmp", path) > 0);
    return p;
}

static bool exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    cr_assert(fp, "open %s: %s", path, strerror(errno));
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)size + 1);
    cr_assert(fread(p, 1, (size_t)size, fp) == (size_t)size);
    fclose(fp);
    *n = (size_t)size;
    return p;
}

static void spit(const char *path, const void *p, size_t n) {
    FILE *fp = fopen(path, "wb");
    cr_assert(fp, "create %s: %s", path, strerror(errno));
    cr_assert(fwrite(p, 1, n, fp) == n);
    cr_assert(fclose(fp) == 0);
}

#define expect_msg(e, sub) cr_expect(strstr((e).msg, (sub)) != NULL, "message \"%s\" lacks \"%s\"", (e).msg, (sub))

/* Deterministic bytes for tensor data. */
static void fill_bytes(uint8_t *p, size_t n, uint32_t seed) {
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        p[i] = (uint8_t)(x >> 24);
    }
}

/* ---- a byte builder for hand-made files ----------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} bb;

static void bb_put(bb *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        cr_assert(b->p);
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void bb_u8(bb *b, uint8_t v) { bb_put(b, &v, 1); }
static void bb_u16(bb *b, uint16_t v) { bb_put(b, &v, 2); }
static void bb_u32(bb *b, uint32_t v) { bb_put(b, &v, 4); }
static void bb_u64(bb *b, uint64_t v) { bb_put(b, &v, 8); }
static void bb_f32(bb *b, float v) { bb_put(b, &v, 4); }
static void bb_f64(bb *b, double v) { bb_put(b, &v, 8); }
static void bb_strn(bb *b, const char *s, size_t n) {
    bb_u64(b, n);
    bb_put(b, s, n);
}
static void bb_str(bb *b, const char *s) { bb_strn(b, s, strlen(s)); }
static void bb_key(bb *b, const char *key, uint32_t type) {
    bb_str(b, key);
    bb_u32(b, type);
}
static void bb_header(bb *b, uint64_t n_tensors, uint64_t n_kv) {
    bb_put(b, "GGUF", 4);
    bb_u32(b, 3);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}
static void bb_info(bb *b, const char *name, uint32_t n_dims, const int64_t *ne, uint32_t type, uint64_t offset) {
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) bb_u64(b, (uint64_t)ne[d]);
    bb_u32(b, type);
    bb_u64(b, offset);
}
static void bb_pad(bb *b, size_t align) {
    while (b->n % align) bb_u8(b, 0);
}

/* ---- the golden file: every byte from the spec ------------------------------------------------ */

static const float golden_embd[8] = {0, 0.5f, 1, 1.5f, 2, 2.5f, 3, 3.5f};

static void golden_q8(uint8_t block[34]) {
    block[0] = 0x00; /* d = 1.0 as IEEE half 0x3c00, little-endian */
    block[1] = 0x3c;
    for (int i = 0; i < 32; i++) block[2 + i] = (uint8_t)(int8_t)(i - 16);
}

/* Returns the file; *infos_end is where the tensor infos end. */
static bb golden_bytes(size_t *infos_end) {
    bb b = {0};
    bb_header(&b, 2, 6);
    bb_key(&b, "general.architecture", GGUF_TYPE_STRING);
    bb_str(&b, "grok");
    bb_key(&b, "grok.block_count", GGUF_TYPE_U32);
    bb_u32(&b, 2);
    bb_key(&b, "grok.rope.freq_base", GGUF_TYPE_F32);
    bb_f32(&b, 10000.0f);
    bb_key(&b, "tokenizer.ggml.add_bos_token", GGUF_TYPE_BOOL);
    bb_u8(&b, 1);
    bb_key(&b, "tokenizer.ggml.tokens", GGUF_TYPE_ARRAY);
    bb_u32(&b, GGUF_TYPE_STRING);
    bb_u64(&b, 2);
    bb_str(&b, "<pad>");
    bb_str(&b, "a b");
    bb_key(&b, "tokenizer.ggml.token_type", GGUF_TYPE_ARRAY);
    bb_u32(&b, GGUF_TYPE_I32);
    bb_u64(&b, 2);
    bb_u32(&b, 3);
    bb_u32(&b, 1);
    bb_info(&b, "token_embd.weight", 2, (int64_t[]){4, 2}, G2_TYPE_F32, 0);
    bb_info(&b, "blk.0.ffn_down.weight", 2, (int64_t[]){32, 1}, G2_TYPE_Q8_0, 32);
    *infos_end = b.n;
    bb_pad(&b, 32);
    bb_put(&b, golden_embd, sizeof golden_embd); /* 32 bytes: already aligned */
    uint8_t q8[34];
    golden_q8(q8);
    bb_put(&b, q8, sizeof q8);
    bb_pad(&b, 32); /* the writer pads the last tensor too */
    return b;
}

Test(quant_gguf, golden_file_from_the_spec_parses_field_by_field) {
    size_t infos_end;
    bb b = golden_bytes(&infos_end);
    gguf_file *f;
    g2_error err = {{0}};
    cr_assert_eq(gguf_open_memory(&f, b.p, b.n, "golden.gguf", &err), 0, "%s", err.msg);
    cr_expect_eq(gguf_version(f), 3);
    cr_expect_eq(gguf_alignment(f), 32);
    cr_expect_eq(gguf_file_size(f), b.n);
    cr_expect_eq(gguf_data_offset(f), (infos_end + 31) / 32 * 32);
    cr_expect_str_eq(gguf_path(f), "golden.gguf");
    cr_assert_eq(gguf_kv_count(f), 6);

    static const char *const keys[6] = {"general.architecture", "grok.block_count", "grok.rope.freq_base",
                                        "tokenizer.ggml.add_bos_token", "tokenizer.ggml.tokens",
                                        "tokenizer.ggml.token_type"};
    static const gguf_value_type types[6] = {GGUF_TYPE_STRING, GGUF_TYPE_U32, GGUF_TYPE_F32,
                                             GGUF_TYPE_BOOL,   GGUF_TYPE_ARRAY, GGUF_TYPE_ARRAY};
    static const char *const shown[6] = {"\"grok\"", "2", "10000", "true", "[string x 2]", "[i32 x 2]"};
    for (int i = 0; i < 6; i++) {
        gguf_str k = gguf_kv_key(f, i);
        cr_expect(k.len == strlen(keys[i]) && !memcmp(k.data, keys[i], k.len), "key %d", i);
        cr_expect_eq(gguf_kv_type(f, i), types[i], "type of %s", keys[i]);
        cr_expect_eq(gguf_find_key(f, keys[i]), i);
        char buf[64];
        int n = gguf_kv_format(f, i, buf, sizeof buf);
        cr_expect_str_eq(buf, shown[i]);
        cr_expect_eq(n, (int)strlen(shown[i]));
    }
    cr_expect_eq(gguf_find_key(f, "general.name"), -1);

    gguf_str s;
    cr_assert_eq(gguf_get_str(f, "general.architecture", &s, &err), 0, "%s", err.msg);
    cr_expect(s.len == 4 && !memcmp(s.data, "grok", 4));
    cr_expect_eq((const uint8_t *)s.data - b.p, 24 + 8 + 20 + 4 + 8, "strings point into the buffer");
    uint32_t u32;
    cr_assert_eq(gguf_get_u32(f, "grok.block_count", &u32, &err), 0, "%s", err.msg);
    cr_expect_eq(u32, 2);
    float f32;
    cr_assert_eq(gguf_get_f32(f, "grok.rope.freq_base", &f32, &err), 0, "%s", err.msg);
    cr_expect_eq(f32, 10000.0f);
    bool bo;
    cr_assert_eq(gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &bo, &err), 0, "%s", err.msg);
    cr_expect(bo);
    gguf_array a;
    cr_assert_eq(gguf_get_array(f, "tokenizer.ggml.tokens", &a, &err), 0, "%s", err.msg);
    cr_expect_eq(a.elem_type, GGUF_TYPE_STRING);
    cr_expect_eq(a.count, 2);
    gguf_str t0 = gguf_array_str(f, &a, 0), t1 = gguf_array_str(f, &a, 1), t2 = gguf_array_str(f, &a, 2);
    cr_expect(t0.len == 5 && !memcmp(t0.data, "<pad>", 5));
    cr_expect(t1.len == 3 && !memcmp(t1.data, "a b", 3));
    cr_expect(t2.data == NULL && t2.len == 0, "index past the end gives an empty string");
    cr_assert_eq(gguf_get_array(f, "tokenizer.ggml.token_type", &a, &err), 0, "%s", err.msg);
    cr_expect_eq(a.elem_type, GGUF_TYPE_I32);
    cr_expect_eq(a.count, 2);
    cr_expect_eq(gguf_array_num(&a, 0), 3.0);
    cr_expect_eq(gguf_array_num(&a, 1), 1.0);
    cr_expect_eq(gguf_array_num(&a, 2), 0.0);
    cr_expect(gguf_array_str(f, &a, 0).data == NULL, "not a string array");

    cr_assert_eq(gguf_tensor_count(f), 2);
    const gguf_tensor *te = gguf_tensor_at(f, 0), *tq = gguf_tensor_at(f, 1);
    cr_expect_str_eq(te->name, "token_embd.weight");
    cr_expect_eq(te->type, G2_TYPE_F32);
    cr_expect_eq(te->n_dims, 2);
    cr_expect(te->ne[0] == 4 && te->ne[1] == 2 && te->ne[2] == 1 && te->ne[3] == 1);
    cr_expect_eq(te->offset, 0);
    cr_expect_eq(te->nbytes, 32);
    cr_expect_eq((const uint8_t *)te->data, b.p + gguf_data_offset(f));
    cr_expect(!memcmp(te->data, golden_embd, 32));
    cr_expect_str_eq(tq->name, "blk.0.ffn_down.weight");
    cr_expect_eq(tq->type, G2_TYPE_Q8_0);
    cr_expect(tq->ne[0] == 32 && tq->ne[1] == 1 && tq->ne[2] == 1 && tq->ne[3] == 1);
    cr_expect_eq(tq->offset, 32);
    cr_expect_eq(tq->nbytes, 34);
    uint8_t q8[34];
    golden_q8(q8);
    cr_expect(!memcmp(tq->data, q8, 34));
    cr_expect_eq(gguf_find_tensor(f, "blk.0.ffn_down.weight"), tq);
    cr_expect_eq(gguf_find_tensor(f, "token_embd.weight"), te);
    cr_expect_null(gguf_find_tensor(f, "output.weight"));
    cr_expect_null(gguf_tensor_at(f, 2));
    cr_expect_null(gguf_tensor_at(f, -1));
    gguf_close(f);
    free(b.p);
}

Test(quant_gguf, writer_reproduces_the_golden_file_byte_for_byte) {
    size_t infos_end;
    bb golden = golden_bytes(&infos_end);
    char *dir = make_tmpdir(), *path = path_in(dir, "golden.gguf");
    g2_error err = {{0}};
    gguf_writer *w = gguf_writer_new();
    cr_assert(w);
    const char *tokens[] = {"<pad>", "a b"};
    int32_t token_type[] = {3, 1};
    cr_assert_eq(gguf_writer_set_str(w, "general.architecture", "grok", &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_writer_set_u32(w, "grok.block_count", 2, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_writer_set_f32(w, "grok.rope.freq_base", 10000.0f, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_writer_set_str_array(w, "tokenizer.ggml.tokens", tokens, NULL, 2, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_writer_set_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_I32, token_type, 2, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(gguf_writer_add_tensor(w, "token_embd.weight", G2_TYPE_F32, 2, (int64_t[]){4, 2}, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(gguf_writer_add_tensor(w, "blk.0.ffn_down.weight", G2_TYPE_Q8_0, 2, (int64_t[]){32, 1}, &err), 0, "%s",
                 err.msg);
    cr_expect_eq(gguf_writer_total_size(w), golden.n);
    cr_assert_eq(gguf_writer_begin(w, path, &err), 0, "%s", err.msg);
    uint8_t q8[34];
    golden_q8(q8);
    cr_assert_eq(gguf_writer_write(w, golden_embd, sizeof golden_embd, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_writer_write(w, q8, sizeof q8, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_writer_finish(w, &err), 0, "%s", err.msg);
    gguf_writer_free(w);

    size_t n;
    uint8_t *got = slurp(path, &n);
    cr_assert_eq(n, golden.n, "size %zu, golden %zu", n, golden.n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(got[i], golden.p[i], "first difference at byte %zu: %02x, golden %02x", i, got[i], golden.p[i]);
    char *tmp = tmp_of(path);
    cr_expect(!exists(tmp), "the temp file is renamed away");
    free(tmp);
    free(got);
    free(golden.p);
    free(path);
    remove_tmpdir(dir);
}

/* ---- round trip -------------------------------------------------------------------------- */

/* A hand-made file holding one kv of every value type, nested arrays and empty arrays: the
 * writer has no setter for some of these, so they reach it through gguf_writer_copy_kv. */
static bb every_type_source(void) {
    bb b = {0};
    bb_header(&b, 0, 17);
    bb_key(&b, "t.u8", GGUF_TYPE_U8);
    bb_u8(&b, 200);
    bb_key(&b, "t.i8", GGUF_TYPE_I8);
    bb_u8(&b, (uint8_t)-100);
    bb_key(&b, "t.u16", GGUF_TYPE_U16);
    bb_u16(&b, 60000);
    bb_key(&b, "t.i16", GGUF_TYPE_I16);
    bb_u16(&b, (uint16_t)-30000);
    bb_key(&b, "t.u32", GGUF_TYPE_U32);
    bb_u32(&b, 4000000000u);
    bb_key(&b, "t.i32", GGUF_TYPE_I32);
    bb_u32(&b, (uint32_t)-2000000000);
    bb_key(&b, "t.f32", GGUF_TYPE_F32);
    bb_f32(&b, 1.5f);
    bb_key(&b, "t.bool", GGUF_TYPE_BOOL);
    bb_u8(&b, 1);
    bb_key(&b, "t.string", GGUF_TYPE_STRING);
    bb_str(&b, "h\xc3\xa9llo\n\"world\"");
    bb_key(&b, "t.u64", GGUF_TYPE_U64);
    bb_u64(&b, (uint64_t)1 << 40);
    bb_key(&b, "t.i64", GGUF_TYPE_I64);
    bb_u64(&b, (uint64_t)-((int64_t)1 << 40));
    bb_key(&b, "t.f64", GGUF_TYPE_F64);
    bb_f64(&b, 2.718281828459045);
    /* [[1, 2, 3], ["x", ""]] */
    bb_key(&b, "t.nested", GGUF_TYPE_ARRAY);
    bb_u32(&b, GGUF_TYPE_ARRAY);
    bb_u64(&b, 2);
    bb_u32(&b, GGUF_TYPE_I32);
    bb_u64(&b, 3);
    bb_u32(&b, 1);
    bb_u32(&b, 2);
    bb_u32(&b, 3);
    bb_u32(&b, GGUF_TYPE_STRING);
    bb_u64(&b, 2);
    bb_str(&b, "x");
    bb_str(&b, "");
    bb_key(&b, "t.empty_strings", GGUF_TYPE_ARRAY);
    bb_u32(&b, GGUF_TYPE_STRING);
    bb_u64(&b, 0);
    bb_key(&b, "t.empty_ints", GGUF_TYPE_ARRAY);
    bb_u32(&b, GGUF_TYPE_I32);
    bb_u64(&b, 0);
    bb_key(&b, "t.bools", GGUF_TYPE_ARRAY);
    bb_u32(&b, GGUF_TYPE_BOOL);
    bb_u64(&b, 3);
    bb_u8(&b, 1);
    bb_u8(&b, 0);
    bb_u8(&b, 1);
    bb_key(&b, "t.f64s", GGUF_TYPE_ARRAY);
    bb_u32(&b, GGUF_TYPE_F64);
    bb_u64(&b, 2);
    bb_f64(&b, -0.25);
    bb_f64(&b, 1e300);
    return b;
}

typedef struct {
    const char *name;
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[4];
} tensor_decl;

static const tensor_decl round_trip_tensors[] = {
    {"blk.0.attn_norm.weight", G2_TYPE_F32, 1, {64, 1, 1, 1}},
    {"blk.0.attn_q.weight", G2_TYPE_F16, 2, {32, 3, 1, 1}},
    {"blk.0.ffn_gate_exps.weight", G2_TYPE_Q8_0, 3, {64, 2, 2, 1}},
    {"blk.0.ffn_down_exps.weight", G2_TYPE_Q4_K, 4, {256, 1, 2, 1}},
    {"output.weight", G2_TYPE_BF16, 2, {16, 5, 1, 1}},
    {"empty", G2_TYPE_F32, 2, {0, 7, 1, 1}}, /* zero elements: a zero-byte tensor */
    {"blk.0.ffn_up.weight", G2_TYPE_Q6_K, 2, {256, 2, 1, 1}},
};
#define N_RT (sizeof round_trip_tensors / sizeof round_trip_tensors[0])

enum { CHUNK_WHOLE, CHUNK_ONE_BYTE, CHUNK_SEVEN, CHUNK_RANDOM, CHUNK_KINDS };

/* Write the round-trip file: every kv of src copied, plus the writer's own setters; the
 * tensors' bytes in the given chunking. */
static void write_round_trip(const char *path, const gguf_file *src, uint32_t alignment, int chunking,
                             uint8_t *const data[N_RT], const size_t sizes[N_RT]) {
    g2_error err = {{0}};
    gguf_writer *w = gguf_writer_new();
    cr_assert(w);
    cr_assert_eq(gguf_writer_set_str(w, "general.architecture", "grok", &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_writer_set_alignment(w, alignment, &err), 0, "%s", err.msg);
    for (int64_t i = 0; i < gguf_kv_count(src); i++)
        cr_assert_eq(gguf_writer_copy_kv(w, src, i, &err), 0, "%s", err.msg);
    const char *toks[] = {"hello", "", "a\0b", "\xe2\x96\x81the"};
    size_t lens[] = {5, 0, 3, 6};
    cr_assert_eq(gguf_writer_set_str_array(w, "tokenizer.ggml.tokens", toks, lens, 4, &err), 0, "%s", err.msg);
    int32_t types[] = {1, 3, 4, 6};
    cr_assert_eq(gguf_writer_set_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_I32, types, 4, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_writer_set_i32(w, "w.i32", -7, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_writer_set_u64(w, "w.u64", UINT64_MAX, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_writer_set_bool(w, "w.bool", false, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_writer_set_f32(w, "w.f32", -3.25f, &err), 0, "%s", err.msg);
    for (size_t t = 0; t < N_RT; t++) {
        const tensor_decl *d = &round_trip_tensors[t];
        cr_assert_eq(gguf_writer_add_tensor(w, d->name, d->type, d->n_dims, d->ne, &err), 0, "%s", err.msg);
    }
    uint64_t total = gguf_writer_total_size(w);
    cr_assert_eq(gguf_writer_begin(w, path, &err), 0, "%s", err.msg);
    uint32_t x = 12345;
    for (size_t t = 0; t < N_RT; t++) {
        size_t done = 0;
        while (done < sizes[t]) {
            size_t n = sizes[t] - done;
            if (chunking == CHUNK_ONE_BYTE) n = 1;
            else if (chunking == CHUNK_SEVEN && n > 7) n = 7;
            else if (chunking == CHUNK_RANDOM) {
                x = x * 1664525u + 1013904223u;
                size_t r = 1 + (x >> 16) % 300;
                if (n > r) n = r;
            }
            cr_assert_eq(gguf_writer_write(w, data[t] + done, n, &err), 0, "%s", err.msg);
            done += n;
        }
    }
    cr_assert_eq(gguf_writer_finish(w, &err), 0, "%s", err.msg);
    gguf_writer_free(w);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq((uint64_t)st.st_size, total, "gguf_writer_total_size predicts the file size");
}

static void check_round_trip(const char *path, const gguf_file *src, uint32_t alignment, uint8_t *const data[N_RT],
                             const size_t sizes[N_RT]) {
    g2_error err = {{0}};
    gguf_file *f;
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    cr_expect_eq(gguf_alignment(f), alignment);
    cr_expect_eq(gguf_data_offset(f) % alignment, 0);

    /* insertion order: architecture, [alignment], the copied kvs, then the setters' */
    int64_t i = 0;
    gguf_str k = gguf_kv_key(f, i++);
    cr_expect(k.len == 20 && !memcmp(k.data, "general.architecture", 20));
    if (alignment != GGUF_DEFAULT_ALIGNMENT) {
        k = gguf_kv_key(f, i++);
        cr_expect(k.len == 17 && !memcmp(k.data, "general.alignment", 17));
        cr_expect_eq(gguf_kv_type(f, i - 1), GGUF_TYPE_U32);
    } else {
        cr_expect_eq(gguf_find_key(f, "general.alignment"), -1, "the default alignment is not written");
    }
    for (int64_t j = 0; j < gguf_kv_count(src); j++, i++) {
        gguf_str a = gguf_kv_key(src, j), b = gguf_kv_key(f, i);
        cr_expect(a.len == b.len && !memcmp(a.data, b.data, a.len), "kv %" PRId64 " key", i);
        const uint8_t *ra, *rb;
        size_t na, nb;
        cr_assert_eq(gguf_kv_raw_value(src, j, &ra, &na), 0);
        cr_assert_eq(gguf_kv_raw_value(f, i, &rb, &nb), 0);
        cr_expect(na == nb && !memcmp(ra, rb, na), "kv %.*s: value bytes equal", (int)a.len, a.data);
    }
    cr_expect_eq(gguf_kv_count(f), i + 6);

    /* the values, through the typed getters */
    uint64_t u64;
    int64_t i64;
    uint32_t u32;
    float f32;
    bool bo;
    gguf_str s;
    gguf_array arr;
    cr_expect(gguf_get_u32(f, "t.u8", &u32, &err) == 0 && u32 == 200, "%s", err.msg);
    cr_expect(gguf_get_i64(f, "t.i8", &i64, &err) == 0 && i64 == -100, "%s", err.msg);
    cr_expect(gguf_get_u32(f, "t.u16", &u32, &err) == 0 && u32 == 60000, "%s", err.msg);
    cr_expect(gguf_get_i64(f, "t.i16", &i64, &err) == 0 && i64 == -30000, "%s", err.msg);
    cr_expect(gguf_get_u32(f, "t.u32", &u32, &err) == 0 && u32 == 4000000000u, "%s", err.msg);
    cr_expect(gguf_get_i64(f, "t.i32", &i64, &err) == 0 && i64 == -2000000000, "%s", err.msg);
    cr_expect(gguf_get_f32(f, "t.f32", &f32, &err) == 0 && f32 == 1.5f, "%s", err.msg);
    cr_expect(gguf_get_bool(f, "t.bool", &bo, &err) == 0 && bo, "%s", err.msg);
    cr_expect(gguf_get_str(f, "t.string", &s, &err) == 0 && s.len == 14 && !memcmp(s.data, "h\xc3\xa9llo\n\"world\"", 14),
              "%s", err.msg);
    cr_expect(gguf_get_u64(f, "t.u64", &u64, &err) == 0 && u64 == (uint64_t)1 << 40, "%s", err.msg);
    cr_expect(gguf_get_i64(f, "t.i64", &i64, &err) == 0 && i64 == -((int64_t)1 << 40), "%s", err.msg);
    cr_expect(gguf_get_f32(f, "t.f64", &f32, &err) == 0 && f32 == (float)2.718281828459045, "%s", err.msg);
    cr_expect(gguf_get_i64(f, "w.i32", &i64, &err) == 0 && i64 == -7, "%s", err.msg);
    cr_expect(gguf_get_u64(f, "w.u64", &u64, &err) == 0 && u64 == UINT64_MAX, "%s", err.msg);
    cr_expect(gguf_get_bool(f, "w.bool", &bo, &err) == 0 && !bo, "%s", err.msg);
    cr_expect(gguf_get_f32(f, "w.f32", &f32, &err) == 0 && f32 == -3.25f, "%s", err.msg);
    cr_assert_eq(gguf_get_array(f, "t.nested", &arr, &err), 0, "%s", err.msg);
    cr_expect(arr.elem_type == GGUF_TYPE_ARRAY && arr.count == 2);
    cr_assert_eq(gguf_get_array(f, "t.empty_strings", &arr, &err), 0, "%s", err.msg);
    cr_expect(arr.elem_type == GGUF_TYPE_STRING && arr.count == 0);
    cr_expect_null(gguf_array_str(f, &arr, 0).data);
    cr_assert_eq(gguf_get_array(f, "t.bools", &arr, &err), 0, "%s", err.msg);
    cr_expect(arr.count == 3 && gguf_array_num(&arr, 0) == 1 && gguf_array_num(&arr, 1) == 0);
    cr_assert_eq(gguf_get_array(f, "t.f64s", &arr, &err), 0, "%s", err.msg);
    cr_expect(gguf_array_num(&arr, 0) == -0.25 && gguf_array_num(&arr, 1) == 1e300);
    cr_assert_eq(gguf_get_array(f, "tokenizer.ggml.tokens", &arr, &err), 0, "%s", err.msg);
    cr_assert(arr.elem_type == GGUF_TYPE_STRING && arr.count == 4);
    const char *toks[] = {"hello", "", "a\0b", "\xe2\x96\x81the"};
    size_t lens[] = {5, 0, 3, 6};
    for (uint64_t t = 0; t < 4; t++) {
        gguf_str e = gguf_array_str(f, &arr, t);
        cr_expect(e.len == lens[t] && !memcmp(e.data, toks[t], lens[t]), "token %" PRIu64, t);
    }
    cr_assert_eq(gguf_get_array(f, "tokenizer.ggml.token_type", &arr, &err), 0, "%s", err.msg);
    cr_expect(arr.elem_type == GGUF_TYPE_I32 && arr.count == 4 && gguf_array_num(&arr, 3) == 6);

    /* tensors: fields, aligned offsets that are the running padded sum, bytes, zero padding */
    cr_assert_eq(gguf_tensor_count(f), (int64_t)N_RT);
    uint64_t expected = 0;
    for (size_t t = 0; t < N_RT; t++) {
        const tensor_decl *d = &round_trip_tensors[t];
        const gguf_tensor *g = gguf_tensor_at(f, (int64_t)t);
        cr_expect_str_eq(g->name, d->name);
        cr_expect_eq(g->type, d->type, "%s type", d->name);
        cr_expect_eq(g->n_dims, d->n_dims, "%s n_dims", d->name);
        for (int j = 0; j < 4; j++) cr_expect_eq(g->ne[j], d->ne[j], "%s ne[%d]", d->name, j);
        cr_expect_eq(g->offset % alignment, 0);
        cr_expect_eq(g->offset, expected, "%s offset", d->name);
        cr_expect_eq(g->nbytes, sizes[t], "%s bytes", d->name);
        cr_expect(!memcmp(g->data, data[t], sizes[t]), "%s data", d->name);
        uint64_t padded = (g->nbytes + alignment - 1) / alignment * alignment;
        for (uint64_t j = g->nbytes; j < padded; j++)
            cr_assert_eq(((const uint8_t *)g->data)[j], 0, "%s padding byte %" PRIu64, d->name, j);
        cr_expect_eq(gguf_find_tensor(f, d->name), g);
        expected += padded;
    }
    cr_expect_eq(gguf_data_offset(f) + expected, gguf_file_size(f), "the last tensor is padded too");
    gguf_close(f);
}

Test(quant_gguf, round_trip_keeps_every_kv_type_tensor_and_byte_in_any_write_chunking) {
    bb src_bytes = every_type_source();
    gguf_file *src;
    g2_error err = {{0}};
    cr_assert_eq(gguf_open_memory(&src, src_bytes.p, src_bytes.n, "src.gguf", &err), 0, "%s", err.msg);
    uint8_t *data[N_RT];
    size_t sizes[N_RT];
    for (size_t t = 0; t < N_RT; t++) {
        const tensor_decl *d = &round_trip_tensors[t];
        sizes[t] = g2_row_size(d->type, d->ne[0]) * (size_t)(d->ne[1] * d->ne[2] * d->ne[3]);
        data[t] = malloc(sizes[t] + 1);
        fill_bytes(data[t], sizes[t], (uint32_t)t);
    }
    char *dir = make_tmpdir();
    static const uint32_t alignments[] = {32, 64, 1, 256};
    for (size_t a = 0; a < sizeof alignments / sizeof alignments[0]; a++) {
        uint8_t *first = NULL;
        size_t first_n = 0;
        for (int c = 0; c < CHUNK_KINDS; c++) {
            char name[64];
            snprintf(name, sizeof name, "rt-%u-%d.gguf", alignments[a], c);
            char *path = path_in(dir, name);
            write_round_trip(path, src, alignments[a], c, data, sizes);
            check_round_trip(path, src, alignments[a], data, sizes);
            size_t n;
            uint8_t *bytes = slurp(path, &n);
            if (!first) {
                first = bytes;
                first_n = n;
            } else {
                cr_expect(n == first_n && !memcmp(bytes, first, n), "chunking %d gives the same bytes", c);
                free(bytes);
            }
            free(path);
        }
        free(first);
    }
    for (size_t t = 0; t < N_RT; t++) free(data[t]);
    gguf_close(src);
    free(src_bytes.p);
    remove_tmpdir(dir);
}

/* ---- malformed files --------------------------------------------------------------------- */

/* A small valid file whose every field a case can change:
 *   kvs: general.architecture (string), grok.flag (bool), tokenizer.ggml.tokens (string[2]),
 *        grok.block_count (u32), [general.alignment], [a nested array]
 *   tensors: "a" f32 [8] at 0, "b" q8_0 [32, 2] at 32. */
typedef struct {
    char magic[5];
    uint32_t version;
    int64_t n_tensors, n_kv;  /* -1: the real counts */
    const char *key0;
    int64_t key0_len;         /* -1: strlen */
    int64_t arch_len;         /* -1: the real length of "grok" */
    uint32_t flag_type;
    uint8_t flag_value;
    uint32_t array_elem_type;
    int64_t array_count;      /* -1: real */
    const char *key3;
    bool has_alignment;
    uint32_t alignment_type;
    uint32_t alignment;
    int nested_depth;         /* 0: no nested kv; n: an array nested n deep */
    uint8_t bools[2];         /* a bool array's values */
    const char *t1_name;
    int64_t t1_name_len;      /* bytes of t1_name written; -1: strlen */
    int64_t t1_name_len_field; /* the length written before them; -1: the same */
    uint32_t t1_n_dims;
    int64_t t1_ne[4];
    uint32_t t1_type;
    int64_t t1_offset;        /* -1: the running sum */
    int64_t t0_ne0;
    size_t drop;              /* bytes cut from the end */
} small_spec;

static small_spec small_defaults(void) {
    return (small_spec){
        .magic = "GGUF", .version = 3, .n_tensors = -1, .n_kv = -1, .key0 = "general.architecture", .key0_len = -1,
        .arch_len = -1, .flag_type = GGUF_TYPE_BOOL, .flag_value = 1, .array_elem_type = GGUF_TYPE_STRING,
        .array_count = -1, .key3 = "grok.block_count", .alignment_type = GGUF_TYPE_U32, .alignment = 32,
        .bools = {0, 1}, .t1_name = "b", .t1_name_len = -1, .t1_name_len_field = -1, .t1_n_dims = 2, .t1_ne = {32, 2, 1, 1},
        .t1_type = G2_TYPE_Q8_0, .t1_offset = -1, .t0_ne0 = 8,
    };
}

static bb small_bytes(const small_spec *s) {
    bb b = {0};
    uint64_t n_kv = 5 + (s->has_alignment ? 1 : 0) + (s->nested_depth ? 1 : 0);
    bb_put(&b, s->magic, 4);
    bb_u32(&b, s->version);
    bb_u64(&b, s->n_tensors >= 0 ? (uint64_t)s->n_tensors : 2);
    bb_u64(&b, s->n_kv >= 0 ? (uint64_t)s->n_kv : n_kv);

    bb_strn(&b, s->key0, s->key0_len >= 0 ? (size_t)s->key0_len : strlen(s->key0));
    bb_u32(&b, GGUF_TYPE_STRING);
    bb_u64(&b, s->arch_len >= 0 ? (uint64_t)s->arch_len : 4);
    bb_put(&b, "grok", 4);

    bb_key(&b, "grok.flag", s->flag_type);
    bb_u8(&b, s->flag_value);

    bb_key(&b, "tokenizer.ggml.tokens", GGUF_TYPE_ARRAY);
    bb_u32(&b, s->array_elem_type);
    bb_u64(&b, s->array_count >= 0 ? (uint64_t)s->array_count : 2);
    bb_str(&b, "a");
    bb_str(&b, "bc");

    bb_key(&b, s->key3, GGUF_TYPE_U32);
    bb_u32(&b, 2);

    bb_key(&b, "grok.bools", GGUF_TYPE_ARRAY);
    bb_u32(&b, GGUF_TYPE_BOOL);
    bb_u64(&b, 2);
    bb_put(&b, s->bools, 2);

    if (s->has_alignment) {
        bb_key(&b, "general.alignment", s->alignment_type);
        if (s->alignment_type == GGUF_TYPE_STRING) bb_str(&b, "32");
        else if (s->alignment_type == GGUF_TYPE_U64) bb_u64(&b, s->alignment);
        else bb_u32(&b, s->alignment);
    }
    if (s->nested_depth) {
        bb_key(&b, "grok.nested", GGUF_TYPE_ARRAY);
        for (int d = 1; d < s->nested_depth; d++) {
            bb_u32(&b, GGUF_TYPE_ARRAY);
            bb_u64(&b, 1);
        }
        bb_u32(&b, GGUF_TYPE_U8);
        bb_u64(&b, 1);
        bb_u8(&b, 7);
    }
    uint32_t align = s->has_alignment && s->alignment_type == GGUF_TYPE_U32 && s->alignment &&
                             !(s->alignment & (s->alignment - 1)) ? s->alignment : 32;

    size_t t0_bytes = (size_t)s->t0_ne0 * 4;
    bb_info(&b, "a", 1, (int64_t[]){s->t0_ne0}, G2_TYPE_F32, 0);
    size_t t1_name_len = s->t1_name_len >= 0 ? (size_t)s->t1_name_len : strlen(s->t1_name);
    bb_u64(&b, s->t1_name_len_field >= 0 ? (uint64_t)s->t1_name_len_field : t1_name_len);
    bb_put(&b, s->t1_name, t1_name_len);
    bb_u32(&b, s->t1_n_dims);
    for (uint32_t d = 0; d < s->t1_n_dims; d++) bb_u64(&b, (uint64_t)s->t1_ne[d < 4 ? d : 3]);
    bb_u32(&b, s->t1_type);
    uint64_t t1_off = (t0_bytes + align - 1) / align * align;
    bb_u64(&b, s->t1_offset >= 0 ? (uint64_t)s->t1_offset : t1_off);
    bb_pad(&b, align);

    uint8_t data[512] = {0};
    fill_bytes(data, sizeof data, 7);
    bb_put(&b, data, t0_bytes);
    bb_pad(&b, align);
    size_t t1_bytes = g2_row_size(s->t1_type, s->t1_ne[0]) * (size_t)(s->t1_ne[1] > 0 && s->t1_ne[1] < 16 ? s->t1_ne[1] : 1);
    if (t1_bytes == 0 || t1_bytes > 256) t1_bytes = 68;
    bb_put(&b, data + 100, t1_bytes);
    bb_pad(&b, align);
    b.n -= s->drop < b.n ? s->drop : b.n;
    return b;
}

Test(quant_gguf, small_valid_file_of_the_malformed_corpus_is_valid) {
    small_spec s = small_defaults();
    bb b = small_bytes(&s);
    gguf_file *f;
    g2_error err = {{0}};
    cr_assert_eq(gguf_open_memory(&f, b.p, b.n, "small.gguf", &err), 0, "%s", err.msg);
    cr_expect_eq(gguf_kv_count(f), 5);
    cr_expect_eq(gguf_tensor_count(f), 2);
    cr_expect_eq(gguf_tensor_at(f, 1)->offset, 32);
    gguf_close(f);
    free(b.p);

    /* also valid: explicit alignment 64, arrays nested 8 deep, a zero-element tensor */
    s.has_alignment = true;
    s.alignment = 64;
    s.nested_depth = 8;
    b = small_bytes(&s);
    cr_assert_eq(gguf_open_memory(&f, b.p, b.n, "small64.gguf", &err), 0, "%s", err.msg);
    cr_expect_eq(gguf_alignment(f), 64);
    cr_expect_eq(gguf_tensor_at(f, 1)->offset, 64);
    cr_expect_eq(gguf_data_offset(f) % 64, 0);
    gguf_close(f);
    free(b.p);

    s = small_defaults();
    s.t0_ne0 = 0;
    b = small_bytes(&s);
    cr_assert_eq(gguf_open_memory(&f, b.p, b.n, "zero.gguf", &err), 0, "%s", err.msg);
    cr_expect_eq(gguf_tensor_at(f, 0)->nbytes, 0);
    cr_expect_eq(gguf_tensor_at(f, 1)->offset, 0);
    gguf_close(f);
    free(b.p);
}

Test(quant_gguf, truncation_at_every_offset_before_the_last_tensor_ends_fails_naming_the_file) {
    small_spec s = small_defaults();
    bb b = small_bytes(&s);
    gguf_file *f;
    g2_error err = {{0}};
    cr_assert_eq(gguf_open_memory(&f, b.p, b.n, "small.gguf", &err), 0, "%s", err.msg);
    const gguf_tensor *last = gguf_tensor_at(f, 1);
    size_t data_end = (size_t)((const uint8_t *)last->data - b.p) + last->nbytes;
    gguf_close(f);
    for (size_t n = 0; n < data_end; n++) {
        /* a copy of exactly n bytes, so that ASan sees any read past the end */
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, b.p, n);
        err.msg[0] = 0;
        int rc = gguf_open_memory(&f, cut, n, "small.gguf", &err);
        cr_expect_eq(rc, -1, "a file cut at %zu of %zu bytes opened", n, b.n);
        if (rc == 0) gguf_close(f);
        cr_expect(strncmp(err.msg, "small.gguf: ", 12) == 0, "cut at %zu: \"%s\"", n, err.msg);
        cr_expect_null(strchr(err.msg, '\n'), "one line");
        free(cut);
    }
    /* the last tensor's trailing padding is not required */
    for (size_t n = data_end; n <= b.n; n++) {
        cr_expect_eq(gguf_open_memory(&f, b.p, n, "small.gguf", &err), 0, "cut at %zu: %s", n, err.msg);
        gguf_close(f);
    }
    free(b.p);
}

typedef struct {
    const char *what;
    void (*change)(small_spec *s);
    const char *expect;
} malformed_case;

#define CASE(fn, body) \
    static void fn(small_spec *s) { body; }
CASE(bad_magic, memcpy(s->magic, "GGUX", 4))
CASE(version_2, s->version = 2)
CASE(version_4, s->version = 4)
CASE(big_endian, s->version = 0x03000000u)
CASE(huge_tensor_count, s->n_tensors = (int64_t)1 << 40)
CASE(max_tensor_count, s->n_tensors = INT64_MAX)
CASE(huge_kv_count, s->n_kv = (int64_t)1 << 40)
CASE(both_counts_too_big, s->n_kv = 30; s->n_tensors = 5)
CASE(more_kvs_than_present, s->n_kv = 8)
CASE(string_past_end, s->arch_len = (int64_t)1 << 40)
CASE(string_length_max, s->arch_len = INT64_MAX)
CASE(key_empty, s->key0 = "")
CASE(array_count_huge, s->array_count = (int64_t)1 << 40)
CASE(array_count_max, s->array_count = INT64_MAX)
CASE(unknown_value_type, s->flag_type = 13)
CASE(unknown_array_type, s->array_elem_type = 99)
CASE(nested_too_deep, s->nested_depth = 9)
CASE(bool_2, s->flag_value = 2)
CASE(bool_array_2, s->bools[1] = 2)
CASE(key_uppercase, s->key0 = "General.Architecture")
CASE(key_with_nul, s->key0 = "general.arch\x01itecture")
CASE(key_double_dot, s->key0 = "general..architecture")
CASE(key_trailing_dot, s->key0 = "general.")
CASE(key_with_space, s->key0 = "general.arch itecture")
CASE(key_duplicate, s->key3 = "general.architecture")
CASE(alignment_string, s->has_alignment = true; s->alignment_type = GGUF_TYPE_STRING)
CASE(alignment_u64, s->has_alignment = true; s->alignment_type = GGUF_TYPE_U64)
CASE(alignment_48, s->has_alignment = true; s->alignment = 48)
CASE(alignment_0, s->has_alignment = true; s->alignment = 0)
CASE(n_dims_0, s->t1_n_dims = 0)
CASE(n_dims_5, s->t1_n_dims = 5)
CASE(type_4, s->t1_type = 4)
CASE(type_99, s->t1_type = 99)
CASE(ne0_not_block_multiple, s->t1_ne[0] = 48)
CASE(ne_negative, s->t1_ne[1] = -2)
CASE(element_overflow, s->t1_n_dims = 4; s->t1_ne[1] = (int64_t)1 << 31; s->t1_ne[2] = (int64_t)1 << 31;
     s->t1_ne[3] = 8)
CASE(bytes_overflow, s->t1_type = G2_TYPE_F32; s->t1_n_dims = 1; s->t1_ne[0] = (int64_t)1 << 62)
CASE(offset_unaligned, s->t1_offset = 33)
CASE(offset_gap, s->t1_offset = 64)
CASE(offset_overlap, s->t1_offset = 0)
CASE(tensor_past_end, s->drop = 40)
CASE(tensor_offset_far, s->t1_offset = (int64_t)1 << 40)
CASE(tensor_duplicate, s->t1_name = "a")
CASE(tensor_empty_name, s->t1_name = "")
CASE(tensor_long_name, s->t1_name = "blk.0.a_name_that_is_exactly_sixty_four_bytes_long_xxxxxxxxxxxxx")
CASE(tensor_nul_name, s->t1_name = "b\0c"; s->t1_name_len = 3)
/* names may hold control characters (only NUL is refused): messages must still be one line */
CASE(newline_name_offset_gap, s->t1_name = "b\nc"; s->t1_offset = 64)
CASE(newline_name_unaligned, s->t1_name = "b\n\033[2Jc"; s->t1_offset = 33)
CASE(newline_name_past_end, s->t1_name = "b\n"; s->t1_ne[1] = 1000)
CASE(tensor_name_past_end, s->t1_name_len_field = 1 << 20)

static const malformed_case malformed[] = {
    {"bad magic", bad_magic, "bad magic 'GGUX'"},
    {"version 2", version_2, "unsupported GGUF version 2"},
    {"version 4", version_4, "unsupported GGUF version 4"},
    {"big-endian", big_endian, "big-endian"},
    {"huge tensor count", huge_tensor_count, "tensor count 1099511627776"},
    {"max tensor count", max_tensor_count, "tensor count"},
    {"huge kv count", huge_kv_count, "kv count 1099511627776"},
    {"counts that cannot both fit", both_counts_too_big, "cannot both fit"},
    {"more kvs than present", more_kvs_than_present, "kv 6 at offset"},
    {"string length past the end", string_past_end, "string length 1099511627776"},
    {"string length near 2^63", string_length_max, "runs past the end of the file"},
    {"empty key", key_empty, "key '' (0 bytes) is not valid"},
    {"huge array count", array_count_huge, "array count 1099511627776"},
    {"array count near 2^63", array_count_max, "array count"},
    {"unknown value type", unknown_value_type, "unknown value type 13"},
    {"unknown array element type", unknown_array_type, "unknown array element type 99"},
    {"arrays nested 9 deep", nested_too_deep, "nested deeper than 8"},
    {"bool 2", bool_2, "bool value 2"},
    {"bool 2 in an array", bool_array_2, "bool array element 1"},
    {"control character in a key", key_with_nul, "is not valid"},
    {"key with an empty segment", key_double_dot, "is not valid"},
    {"key ending in a dot", key_trailing_dot, "is not valid"},
    {"key with a space", key_with_space, "is not valid"},
    {"duplicate key", key_duplicate, "duplicate key 'general.architecture'"},
    {"alignment is a string", alignment_string, "general.alignment is a string, expected a u32"},
    {"alignment is a u64", alignment_u64, "general.alignment is a u64, expected a u32"},
    {"alignment 48", alignment_48, "48 is not a nonzero power of two"},
    {"alignment 0", alignment_0, "0 is not a nonzero power of two"},
    {"n_dims 0", n_dims_0, "n_dims 0"},
    {"n_dims 5", n_dims_5, "n_dims 5"},
    {"type id 4", type_4, "unknown ggml type id 4"},
    {"type id 99", type_99, "unknown ggml type id 99"},
    {"ne[0] not a block multiple", ne0_not_block_multiple, "ne[0] = 48 is not a multiple of the q8_0 block size 32"},
    {"negative ne", ne_negative, "ne[1] = -2"},
    {"element count overflow", element_overflow, "element count"},
    {"byte size overflow", bytes_overflow, "byte size"},
    {"unaligned offset", offset_unaligned, "not a multiple of the alignment 32"},
    {"offset leaves a gap", offset_gap, "not the running sum"},
    {"overlapping tensors", offset_overlap, "overlaps tensor 0 'a'"},
    {"tensor past the end", tensor_past_end, "runs past the end of the file"},
    {"tensor offset far past the end", tensor_offset_far, "not the running sum"},
    {"duplicate tensor names", tensor_duplicate, "duplicate tensor name 'a'"},
    {"empty tensor name", tensor_empty_name, "empty name"},
    {"64-byte tensor name", tensor_long_name, "the limit is 63"},
    {"NUL in a tensor name", tensor_nul_name, "NUL"},
    {"tensor name past the end", tensor_name_past_end, "name length 1048576"},
    {"newline in a misplaced tensor's name", newline_name_offset_gap, "tensor 1 'b?c': data offset 64"},
    {"escape in an unaligned tensor's name", newline_name_unaligned, "tensor 1 'b??[2Jc'"},
    {"newline in a too-long tensor's name", newline_name_past_end, "tensor 1 'b?': data ["},
};

Test(quant_gguf, malformed_files_fail_with_a_message_naming_the_problem) {
    for (size_t c = 0; c < sizeof malformed / sizeof malformed[0]; c++) {
        small_spec s = small_defaults();
        malformed[c].change(&s);
        bb b = small_bytes(&s);
        uint8_t *exact = malloc(b.n); /* exactly sized: ASan catches reads past the end */
        memcpy(exact, b.p, b.n);
        gguf_file *f = NULL;
        g2_error err = {{0}};
        int rc = gguf_open_memory(&f, exact, b.n, "bad.gguf", &err);
        cr_expect_eq(rc, -1, "%s: opened", malformed[c].what);
        cr_expect_null(f);
        if (rc == 0) gguf_close(f);
        cr_expect(strncmp(err.msg, "bad.gguf: ", 10) == 0, "%s: \"%s\" does not start with the name", malformed[c].what,
                  err.msg);
        cr_expect(strstr(err.msg, malformed[c].expect) != NULL, "%s: \"%s\" lacks \"%s\"", malformed[c].what, err.msg,
                  malformed[c].expect);
        cr_expect_null(strchr(err.msg, '\n'));
        free(exact);
        free(b.p);
    }
}

/* Other tools' files may carry upper case or '-' in keys: read them (the writer stays strict). */
Test(quant_gguf, reader_accepts_upper_case_keys_that_other_tools_write) {
    small_spec s = small_defaults();
    key_uppercase(&s);
    bb b = small_bytes(&s);
    gguf_file *f = NULL;
    g2_error err = {{0}};
    cr_assert_eq(gguf_open_memory(&f, b.p, b.n, "upper.gguf", &err), 0, "%s", err.msg);
    cr_expect_geq(gguf_find_key(f, "General.Architecture"), 0);
    gguf_close(f);
    free(b.p);
}

Test(quant_gguf, tensor_past_the_end_message_gives_the_data_range_and_file_size) {
    small_spec s = small_defaults();
    bb b = small_bytes(&s);
    gguf_file *f;
    g2_error err = {{0}};
    cr_assert_eq(gguf_open_memory(&f, b.p, b.n, "model.gguf", &err), 0, "%s", err.msg);
    uint64_t start = gguf_data_offset(f) + 32;
    gguf_close(f);
    cr_assert_eq(gguf_open_memory(&f, b.p, b.n - 40, "model.gguf", &err), -1);
    char want[160];
    snprintf(want, sizeof want,
             "model.gguf: tensor 1 'b': data [%" PRIu64 ", %" PRIu64 ") runs past the end of the file (%zu bytes)", start,
             start + 68, b.n - 40);
    cr_expect_str_eq(err.msg, want);
    free(b.p);
}

Test(quant_gguf, empty_short_and_unmappable_files_fail_clearly) {
    g2_error err = {{0}};
    gguf_file *f;
    cr_expect_eq(gguf_open_memory(&f, NULL, 0, "nothing.gguf", &err), -1);
    expect_msg(err, "nothing.gguf: empty file");
    cr_expect_eq(gguf_open_memory(&f, "GGUF\3\0\0\0", 8, "short.gguf", &err), -1);
    expect_msg(err, "short.gguf: file is 8 bytes, shorter than the 24-byte GGUF header");
    cr_expect_eq(gguf_open_memory(&f, "GG", 2, "tiny.gguf", &err), -1);
    expect_msg(err, "tiny.gguf: bad magic");

    char *dir = make_tmpdir(), *empty = path_in(dir, "empty.gguf"), *missing = path_in(dir, "missing.gguf");
    spit(empty, "", 0);
    cr_expect_eq(gguf_open(&f, empty, &err), -1);
    cr_expect(strstr(err.msg, empty) && strstr(err.msg, "empty file"), "%s", err.msg);
    cr_expect_eq(gguf_open(&f, missing, &err), -1);
    cr_expect(strstr(err.msg, missing) && strstr(err.msg, "No such file"), "%s", err.msg);
    cr_expect_eq(gguf_open(&f, dir, &err), -1);
    cr_expect(strstr(err.msg, dir) && strstr(err.msg, "not a regular file"), "%s", err.msg);
    free(empty);
    free(missing);
    remove_tmpdir(dir);
}

/* ---- typed getters ------------------------------------------------------------------------ */

Test(quant_gguf, typed_getters_convert_fitting_integers_and_name_key_and_both_types_on_mismatch) {
    bb src = every_type_source();
    gguf_file *f;
    g2_error err = {{0}};
    cr_assert_eq(gguf_open_memory(&f, src.p, src.n, "types.gguf", &err), 0, "%s", err.msg);
    uint64_t u64;
    uint32_t u32;
    int64_t i64;
    float f32;
    bool bo;
    gguf_str s;
    gguf_array a;

    /* a u32 read as u64 and i64; a u64 that fits read as u32; one that does not */
    cr_expect(gguf_get_u64(f, "t.u32", &u64, &err) == 0 && u64 == 4000000000u, "%s", err.msg);
    cr_expect(gguf_get_i64(f, "t.u32", &i64, &err) == 0 && i64 == 4000000000, "%s", err.msg);
    cr_expect(gguf_get_u32(f, "t.u16", &u32, &err) == 0 && u32 == 60000, "%s", err.msg);
    cr_expect_eq(gguf_get_u32(f, "t.u64", &u32, &err), -1);
    expect_msg(err, "types.gguf: key t.u64 = 1099511627776 (u64) does not fit a u32");
    cr_expect_eq(gguf_get_u64(f, "t.i32", &u64, &err), -1);
    expect_msg(err, "key t.i32 = -2000000000 (i32) does not fit a u64");
    cr_expect_eq(gguf_get_u32(f, "t.i8", &u32, &err), -1);
    expect_msg(err, "does not fit a u32");

    /* wrong types: the key, what it is, what was expected */
    cr_expect_eq(gguf_get_u32(f, "t.string", &u32, &err), -1);
    expect_msg(err, "types.gguf: key t.string is a string, expected an integer");
    cr_expect_eq(gguf_get_u64(f, "t.f32", &u64, &err), -1);
    expect_msg(err, "key t.f32 is an f32, expected an integer");
    cr_expect_eq(gguf_get_i64(f, "t.bool", &i64, &err), -1);
    expect_msg(err, "key t.bool is a bool, expected an integer");
    cr_expect_eq(gguf_get_f32(f, "t.u32", &f32, &err), -1);
    expect_msg(err, "key t.u32 is a u32, expected an f32");
    cr_expect_eq(gguf_get_bool(f, "t.u8", &bo, &err), -1);
    expect_msg(err, "key t.u8 is a u8, expected a bool");
    cr_expect_eq(gguf_get_str(f, "t.nested", &s, &err), -1);
    expect_msg(err, "key t.nested is an array, expected a string");
    cr_expect_eq(gguf_get_array(f, "t.i64", &a, &err), -1);
    expect_msg(err, "key t.i64 is an i64, expected an array");
    cr_expect_eq(gguf_get_u32(f, "general.missing", &u32, &err), -1);
    cr_expect_str_eq(err.msg, "types.gguf: key general.missing not found");
    cr_expect_eq(gguf_get_str(f, "general.missing", &s, &err), -1);
    expect_msg(err, "key general.missing not found");

    /* by index: only the kv's own type */
    int64_t si = gguf_find_key(f, "t.string"), ai = gguf_find_key(f, "t.nested");
    cr_expect_eq(gguf_kv_as_str(f, si, &s), 0);
    cr_expect_eq(gguf_kv_as_str(f, ai, &s), -1);
    cr_expect_eq(gguf_kv_as_array(f, ai, &a), 0);
    cr_expect_eq(gguf_kv_as_array(f, si, &a), -1);
    cr_expect_eq(gguf_kv_as_array(f, 99, &a), -1);
    cr_expect_null(gguf_kv_key(f, 99).data);
    cr_expect_eq(gguf_kv_type(f, -1), GGUF_TYPE_COUNT);

    /* formatting */
    char buf[64];
    struct {
        const char *key, *text;
    } shown[] = {
        {"t.u8", "200"}, {"t.i8", "-100"}, {"t.i64", "-1099511627776"}, {"t.f32", "1.5"},
        {"t.f64", "2.7182818284590451"}, {"t.bool", "true"}, {"t.string", "\"h\xc3\xa9llo\\n\\\"world\\\"\""},
        {"t.nested", "[array x 2]"}, {"t.empty_strings", "[string x 0]"},
    };
    for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++) {
        gguf_kv_format(f, gguf_find_key(f, shown[i].key), buf, sizeof buf);
        cr_expect_str_eq(buf, shown[i].text, "%s", shown[i].key);
    }
    char small[10];
    int n = gguf_kv_format(f, si, small, sizeof small);
    cr_expect_str_eq(small, "\"h\xc3\xa9l...\"", "a long string is cut to fit");
    cr_expect_eq(n, (int)strlen(small));
    char smaller[8];
    gguf_kv_format(f, si, smaller, sizeof smaller);
    cr_expect_str_eq(smaller, "\"h...\"", "never half a UTF-8 character");
    cr_expect_eq(gguf_value_size(GGUF_TYPE_U16), 2);
    cr_expect_eq(gguf_value_size(GGUF_TYPE_STRING), 0);
    cr_expect_str_eq(gguf_value_type_name(GGUF_TYPE_F64), "f64");
    cr_expect_str_eq(gguf_value_type_name((gguf_value_type)77), "unknown");
    gguf_close(f);
    free(src.p);
}

Test(quant_gguf, key_syntax_is_lower_snake_case_segments_joined_by_dots) {
    cr_expect(gguf_key_valid("general.architecture", 20));
    cr_expect(gguf_key_valid("general.base_model.0.name", 25));
    cr_expect(gguf_key_valid("a", 1));
    cr_expect(!gguf_key_valid("", 0));
    cr_expect(!gguf_key_valid(".a", 2));
    cr_expect(!gguf_key_valid("a.", 2));
    cr_expect(!gguf_key_valid("a..b", 4));
    cr_expect(!gguf_key_valid("a-b", 3));
    cr_expect(!gguf_key_valid("A", 1));
    cr_expect(!gguf_key_valid("a\0b", 3));
    char key[300];
    memset(key, 'a', sizeof key);
    cr_expect(gguf_key_valid(key, 255));
    cr_expect(!gguf_key_valid(key, 256));
}

/* ---- writer refusals ---------------------------------------------------------------------- */

Test(quant_gguf, writer_refuses_bad_keys_names_types_shapes_and_late_changes) {
    g2_error err = {{0}};
    gguf_writer *w = gguf_writer_new();
    cr_assert(w);
    cr_expect_eq(gguf_writer_set_u32(w, "Bad.Key", 1, &err), -1);
    expect_msg(err, "key 'Bad.Key' is not valid");
    cr_expect_eq(gguf_writer_set_str(w, "a..b", "x", &err), -1);
    expect_msg(err, "is not valid");
    cr_expect_eq(gguf_writer_set_alignment(w, 48, &err), -1);
    expect_msg(err, "48 is not a nonzero power of two");
    cr_expect_eq(gguf_writer_set_u64(w, "general.alignment", 64, &err), -1);
    expect_msg(err, "general.alignment must be a u32");
    cr_expect_eq(gguf_writer_set_u32(w, "general.alignment", 0, &err), -1);
    expect_msg(err, "not a nonzero power of two");
    cr_expect_eq(gguf_writer_set_array(w, "a.s", GGUF_TYPE_STRING, NULL, 0, &err), -1);
    expect_msg(err, "fixed-size elements");
    cr_expect_eq(gguf_writer_set_array(w, "a.b", GGUF_TYPE_BOOL, (uint8_t[]){0, 3}, 2, &err), -1);
    expect_msg(err, "bool array element 1 is 3");

    int64_t ne[4] = {32, 2, 1, 1};
    char long_name[80];
    memset(long_name, 'x', 64);
    long_name[64] = 0;
    cr_expect_eq(gguf_writer_add_tensor(w, long_name, G2_TYPE_F32, 1, ne, &err), -1);
    expect_msg(err, "name is 64 bytes, the limit is 63");
    long_name[63] = 0;
    cr_expect_eq(gguf_writer_add_tensor(w, long_name, G2_TYPE_F32, 1, ne, &err), 0, "63 bytes is fine: %s", err.msg);
    cr_expect_eq(gguf_writer_add_tensor(w, "", G2_TYPE_F32, 1, ne, &err), -1);
    expect_msg(err, "empty name");
    cr_expect_eq(gguf_writer_add_tensor(w, long_name, G2_TYPE_F16, 1, ne, &err), -1);
    expect_msg(err, "duplicate tensor name");
    cr_expect_eq(gguf_writer_add_tensor(w, "t", 4, 1, ne, &err), -1);
    expect_msg(err, "unknown ggml type id 4");
    cr_expect_eq(gguf_writer_add_tensor(w, "t", 99, 1, ne, &err), -1);
    expect_msg(err, "unknown ggml type id 99");
    cr_expect_eq(gguf_writer_add_tensor(w, "t", G2_TYPE_Q4_K, 2, ne, &err), -1);
    expect_msg(err, "ne[0] = 32 is not a multiple of the q4_K block size 256");
    cr_expect_eq(gguf_writer_add_tensor(w, "t", G2_TYPE_F32, 0, ne, &err), -1);
    expect_msg(err, "n_dims 0");
    cr_expect_eq(gguf_writer_add_tensor(w, "t", G2_TYPE_F32, 5, (int64_t[]){1, 1, 1, 1, 1}, &err), -1);
    expect_msg(err, "n_dims 5");
    cr_expect_eq(gguf_writer_add_tensor(w, "t", G2_TYPE_F32, 2, (int64_t[]){4, -1}, &err), -1);
    expect_msg(err, "ne[1] = -1 is negative");
    cr_expect_eq(gguf_writer_add_tensor(w, "t", G2_TYPE_F32, 3, (int64_t[]){1 << 30, 1 << 30, 1 << 30}, &err), -1);
    expect_msg(err, "overflows");
    cr_expect_eq(gguf_writer_add_tensor(w, "t", G2_TYPE_Q8_0, 2, ne, &err), 0, "%s", err.msg);

    /* writes before begin; after begin: no more keys or tensors */
    cr_expect_eq(gguf_writer_write(w, "x", 1, &err), -1);
    expect_msg(err, "before begin()");
    char *dir = make_tmpdir(), *path = path_in(dir, "late.gguf");
    cr_assert_eq(gguf_writer_begin(w, path, &err), 0, "%s", err.msg);
    cr_expect_eq(gguf_writer_begin(w, path, &err), -1);
    cr_expect_eq(gguf_writer_set_u32(w, "general.late", 1, &err), -1);
    expect_msg(err, "after begin()");
    cr_expect_eq(gguf_writer_set_alignment(w, 64, &err), -1);
    expect_msg(err, "after begin()");
    cr_expect_eq(gguf_writer_add_tensor(w, "late", G2_TYPE_F32, 1, ne, &err), -1);
    expect_msg(err, "cannot add tensor 'late' after begin()");

    /* a write may not run past the current tensor; finish needs every tensor complete */
    uint8_t bytes[300] = {0};
    cr_expect_eq(gguf_writer_write(w, bytes, 129, &err), -1);
    expect_msg(err, "would run past its size (128 bytes, 0 already written)");
    cr_expect_eq(gguf_writer_write(w, bytes, 128, &err), 0, "%s", err.msg);
    cr_expect_eq(gguf_writer_write(w, bytes, 10, &err), 0, "%s", err.msg);
    cr_expect_eq(gguf_writer_finish(w, &err), -1);
    expect_msg(err, "tensor 1 't' is incomplete: 10 of 68 bytes written");
    cr_expect(strstr(err.msg, "late.gguf.tmp"), "%s", err.msg);
    cr_expect_eq(gguf_writer_write(w, bytes, 58, &err), 0, "%s", err.msg);
    cr_expect_eq(gguf_writer_write(w, bytes, 1, &err), -1);
    expect_msg(err, "after the last tensor was complete");
    cr_expect_eq(gguf_writer_finish(w, &err), 0, "%s", err.msg);
    cr_expect_eq(gguf_writer_finish(w, &err), -1);
    expect_msg(err, "after finish()");
    gguf_writer_free(w);
    gguf_file *f;
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    cr_expect_eq(gguf_tensor_count(f), 2);
    gguf_close(f);
    free(path);
    remove_tmpdir(dir);
}

Test(quant_gguf, writer_set_replaces_in_place_and_copy_kv_keeps_existing_keys) {
    bb src = every_type_source();
    gguf_file *sf;
    g2_error err = {{0}};
    cr_assert_eq(gguf_open_memory(&sf, src.p, src.n, "src.gguf", &err), 0, "%s", err.msg);
    gguf_writer *w = gguf_writer_new();
    cr_assert_eq(gguf_writer_set_u32(w, "t.u8", 5, &err), 0, "%s", err.msg);       /* copy_kv must not replace */
    cr_assert_eq(gguf_writer_set_u32(w, "a.first", 1, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_writer_set_str(w, "a.second", "x", &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_writer_set_str(w, "a.first", "replaced", &err), 0, "%s", err.msg); /* another type, too */
    cr_assert_eq(gguf_writer_copy_kv(w, sf, gguf_find_key(sf, "t.u8"), &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_writer_copy_kv(w, sf, gguf_find_key(sf, "t.nested"), &err), 0, "%s", err.msg);
    cr_expect_eq(gguf_writer_copy_kv(w, sf, 99, &err), -1);
    cr_assert_eq(gguf_writer_set_alignment(w, 32, &err), 0, "%s", err.msg);
    char *dir = make_tmpdir(), *path = path_in(dir, "kv.gguf");
    cr_assert_eq(gguf_writer_begin(w, path, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_writer_finish(w, &err), 0, "%s", err.msg);
    gguf_writer_free(w);
    gguf_file *f;
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_kv_count(f), 4);
    const char *order[] = {"t.u8", "a.first", "a.second", "t.nested"};
    for (int i = 0; i < 4; i++) {
        gguf_str k = gguf_kv_key(f, i);
        cr_expect(k.len == strlen(order[i]) && !memcmp(k.data, order[i], k.len), "kv %d is %s", i, order[i]);
    }
    uint32_t u32;
    gguf_str s;
    cr_expect(gguf_get_u32(f, "t.u8", &u32, &err) == 0 && u32 == 5);
    cr_expect(gguf_get_str(f, "a.first", &s, &err) == 0 && s.len == 8 && !memcmp(s.data, "replaced", 8));
    cr_expect_eq(gguf_find_key(f, "general.alignment"), -1);
    gguf_close(f);
    gguf_close(sf);
    free(src.p);
    free(path);
    remove_tmpdir(dir);
}

/* ---- writer faults ------------------------------------------------------------------------ */

static gguf_writer *writer_with_one_tensor(int64_t n_floats) {
    g2_error err = {{0}};
    gguf_writer *w = gguf_writer_new();
    cr_assert(w);
    cr_assert_eq(gguf_writer_set_str(w, "general.architecture", "grok", &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_writer_add_tensor(w, "big", G2_TYPE_F32, 1, &n_floats, &err), 0, "%s", err.msg);
    return w;
}

Test(quant_gguf, no_space_left_names_the_temp_file_and_leaves_nothing_behind) {
    if (access("/dev/full", W_OK) != 0) cr_skip_test("no /dev/full here");
    char *dir = make_tmpdir(), *path = path_in(dir, "full.gguf"), *tmp = tmp_of(path);
    /* PATH.tmp is a link to /dev/full: every write fails with ENOSPC */
    cr_assert_eq(symlink("/dev/full", tmp), 0, "%s", strerror(errno));
    const size_t n = 3u << 20; /* under the write buffer: the error comes from finish's flush */
    gguf_writer *w = writer_with_one_tensor((int64_t)n / 4);
    g2_error err = {{0}};
    cr_assert_eq(gguf_writer_begin(w, path, &err), 0, "%s", err.msg);
    uint8_t *bytes = calloc(1, n);
    cr_expect_eq(gguf_writer_write(w, bytes, n, &err), 0, "%s", err.msg);
    cr_expect_eq(gguf_writer_finish(w, &err), -1);
    cr_expect(strstr(err.msg, tmp) && strstr(err.msg, strerror(ENOSPC)), "%s", err.msg);
    cr_expect(!exists(tmp), "the temp file is removed at once");
    cr_expect(!exists(path));
    cr_expect_eq(gguf_writer_write(w, bytes, 1, &err), -1, "the writer is dead");
    gguf_writer_free(w);

    /* a big write that bypasses the buffer fails in write() itself */
    cr_assert_eq(symlink("/dev/full", tmp), 0, "%s", strerror(errno));
    w = writer_with_one_tensor((int64_t)(8u << 20) / 4);
    cr_assert_eq(gguf_writer_begin(w, path, &err), 0, "%s", err.msg);
    uint8_t *big = calloc(1, 8u << 20);
    cr_expect_eq(gguf_writer_write(w, big, 8u << 20, &err), -1);
    cr_expect(strstr(err.msg, tmp) && strstr(err.msg, strerror(ENOSPC)) && strstr(err.msg, "write failed at offset 0"),
              "%s", err.msg);
    gguf_writer_free(w);
    cr_expect(!exists(tmp) && !exists(path));
    free(big);
    free(bytes);
    free(tmp);
    free(path);
    remove_tmpdir(dir);
}

/* Run fn in a child process; returns its exit status (waitpid's). The child's message, if
 * any, comes back in msg. */
static int in_child(void (*fn)(const char *path, int report_fd), const char *path, char *msg, size_t msg_size) {
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        fn(path, fds[1]);
        _exit(100);
    }
    close(fds[1]);
    size_t got = 0;
    ssize_t k;
    while (got + 1 < msg_size && (k = read(fds[0], msg + got, msg_size - 1 - got)) > 0) got += (size_t)k;
    msg[got] = 0;
    close(fds[0]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return status;
}

static void report(int fd, const char *s) {
    size_t n = strlen(s);
    if (write(fd, s, n) != (ssize_t)n) _exit(101);
}

static void child_file_too_large(const char *path, int fd) {
    signal(SIGXFSZ, SIG_IGN); /* so that write() returns EFBIG instead of killing us */
    struct rlimit rl = {.rlim_cur = 1u << 20, .rlim_max = RLIM_INFINITY};
    getrlimit(RLIMIT_FSIZE, &rl);
    rl.rlim_cur = 1u << 20;
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(2);
    gguf_writer *w = writer_with_one_tensor((int64_t)(16u << 20) / 4);
    g2_error err = {{0}};
    if (gguf_writer_begin(w, path, &err) != 0) {
        report(fd, err.msg);
        _exit(3);
    }
    static uint8_t chunk[64 << 10];
    int rc = 0;
    for (int i = 0; i < 256 && rc == 0; i++) rc = gguf_writer_write(w, chunk, sizeof chunk, &err);
    if (rc == 0) rc = gguf_writer_finish(w, &err);
    report(fd, err.msg);
    gguf_writer_free(w);
    _exit(rc == 0 ? 4 : 0);
}

Test(quant_gguf, file_size_limit_error_names_the_temp_file_and_leaves_nothing_behind) {
    char *dir = make_tmpdir(), *path = path_in(dir, "limited.gguf"), *tmp = tmp_of(path);
    char msg[600];
    int status = in_child(child_file_too_large, path, msg, sizeof msg);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d: %s", status, msg);
    cr_expect(strstr(msg, tmp) && strstr(msg, strerror(EFBIG)), "%s", msg);
    /* the buffer's first MiB went out: the write that failed started there, not at its start */
    cr_expect(strstr(msg, "write failed at offset 1048576:"), "%s", msg);
    cr_expect(!exists(tmp), "no temp file");
    cr_expect(!exists(path), "no output file");
    free(tmp);
    free(path);
    remove_tmpdir(dir);
}

static void child_interrupted(const char *path, int fd) {
    signal(SIGINT, SIG_DFL); /* as in a shell: Ctrl-C terminates */
    gguf_writer *w = writer_with_one_tensor((int64_t)(16u << 20) / 4);
    g2_error err = {{0}};
    if (gguf_writer_begin(w, path, &err) != 0) {
        report(fd, err.msg);
        _exit(3);
    }
    static uint8_t chunk[6 << 20];
    if (gguf_writer_write(w, chunk, sizeof chunk, &err) != 0) { /* goes past the buffer: on disk */
        report(fd, err.msg);
        _exit(4);
    }
    char *tmp = tmp_of(path);
    if (!exists(tmp)) _exit(5);
    raise(SIGINT);
    _exit(6); /* not reached */
}

Test(quant_gguf, sigint_mid_write_removes_the_temp_file) {
    char *dir = make_tmpdir(), *path = path_in(dir, "interrupted.gguf"), *tmp = tmp_of(path);
    char msg[600];
    int status = in_child(child_interrupted, path, msg, sizeof msg);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT, "child status %d: %s", status, msg);
    cr_expect(!exists(tmp), "no temp file");
    cr_expect(!exists(path), "no output file");
    free(tmp);
    free(path);
    remove_tmpdir(dir);
}

static void child_waits_for_sigterm(const char *path, int fd) {
    signal(SIGTERM, SIG_DFL);
    gguf_writer *w = writer_with_one_tensor(1024);
    g2_error err = {{0}};
    if (gguf_writer_begin(w, path, &err) != 0) {
        report(fd, err.msg);
        _exit(3);
    }
    uint8_t part[100] = {0};
    if (gguf_writer_write(w, part, sizeof part, &err) != 0) _exit(4);
    report(fd, "ready");
    close(fd);
    for (;;) pause();
}

Test(quant_gguf, sigterm_from_another_process_removes_the_temp_file) {
    char *dir = make_tmpdir(), *path = path_in(dir, "killed.gguf"), *tmp = tmp_of(path);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        child_waits_for_sigterm(path, fds[1]);
        _exit(100);
    }
    close(fds[1]);
    char msg[16] = {0};
    cr_assert(read(fds[0], msg, 5) == 5 && !strcmp(msg, "ready"), "child: %s", msg);
    close(fds[0]);
    cr_expect(exists(tmp), "the temp file exists while writing");
    kill(pid, SIGTERM);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_expect(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM, "status %d", status);
    cr_expect(!exists(tmp), "no temp file");
    cr_expect(!exists(path), "no output file");
    free(tmp);
    free(path);
    remove_tmpdir(dir);
}

Test(quant_gguf, writer_free_without_finish_leaves_nothing_behind) {
    char *dir = make_tmpdir(), *path = path_in(dir, "abandoned.gguf"), *tmp = tmp_of(path);
    g2_error err = {{0}};
    /* freed before begin */
    gguf_writer_free(writer_with_one_tensor(64));
    gguf_writer_free(NULL);
    /* freed right after begin, and mid-tensor */
    for (int partial = 0; partial < 2; partial++) {
        gguf_writer *w = writer_with_one_tensor(64);
        cr_assert_eq(gguf_writer_begin(w, path, &err), 0, "%s", err.msg);
        cr_expect(exists(tmp));
        if (partial) cr_assert_eq(gguf_writer_write(w, (float[10]){0}, 40, &err), 0, "%s", err.msg);
        gguf_writer_free(w);
        cr_expect(!exists(tmp), "temp file removed");
        cr_expect(!exists(path));
    }
    /* a missing directory: the error names the temp file */
    char *nowhere = path_in(dir, "no/such/dir.gguf");
    gguf_writer *w = writer_with_one_tensor(64);
    cr_expect_eq(gguf_writer_begin(w, nowhere, &err), -1);
    cr_expect(strstr(err.msg, "no/such/dir.gguf.tmp") && strstr(err.msg, "No such file"), "%s", err.msg);
    gguf_writer_free(w);
    free(nowhere);
    free(tmp);
    free(path);
    remove_tmpdir(dir);
}

/* A finished file leaves the page cache (so that the first run maps it in huge folios, not in
 * the small ones the writes made): none of its pages is resident right after finish. Only
 * asserted on disk file systems, where POSIX_FADV_DONTNEED drops clean pages (on tmpfs the
 * cache is the file). */
Test(quant_gguf, finished_file_is_not_left_in_the_page_cache) {
    char *dir = make_tmpdir(), *path = path_in(dir, "dropped.gguf");
    struct statfs fs;
    cr_assert_eq(statfs(dir, &fs), 0, "%s", strerror(errno));
    if (fs.f_type != EXT4_SUPER_MAGIC && fs.f_type != XFS_SUPER_MAGIC && fs.f_type != BTRFS_SUPER_MAGIC) {
        remove_tmpdir(dir);
        free(path);
        cr_skip_test("%s is not on ext4, xfs or btrfs (f_type 0x%lx)", dir, (unsigned long)fs.f_type);
    }
    const int64_t n = 1 << 20; /* 4 MiB of f32 */
    g2_error err = {{0}};
    gguf_writer *w = writer_with_one_tensor(n);
    float *data = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++) data[i] = (float)i;
    cr_assert_eq(gguf_writer_begin(w, path, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_writer_write(w, data, (size_t)n * 4, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_writer_finish(w, &err), 0, "%s", err.msg);
    gguf_writer_free(w);
    int fd = open(path, O_RDONLY);
    cr_assert(fd >= 0);
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = ((size_t)st.st_size + page - 1) / page, resident = 0;
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    cr_assert(map != MAP_FAILED);
    unsigned char *in_core = malloc(pages);
    cr_assert_eq(mincore(map, (size_t)st.st_size, in_core), 0, "%s", strerror(errno));
    for (size_t i = 0; i < pages; i++) resident += in_core[i] & 1;
    cr_expect_eq(resident, 0, "%zu of %zu pages of the finished file are still cached", resident, pages);
    munmap(map, (size_t)st.st_size);
    close(fd);
    free(in_core);
    free(data);
    free(path);
    remove_tmpdir(dir);
}

/* ---- fuzzer seeds ------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    bb bytes;
} seed;

/* The seeds: a minimal file, one with every kv type and arrays, one with tensors of several
 * types, one with alignment 64. Each < 4 KB. */
static size_t make_seeds(seed out[4]) {
    bb minimal = {0};
    bb_header(&minimal, 0, 1);
    bb_key(&minimal, "general.architecture", GGUF_TYPE_STRING);
    bb_str(&minimal, "grok");
    out[0] = (seed){"minimal.gguf", minimal};
    out[1] = (seed){"arrays.gguf", every_type_source()};
    size_t infos_end;
    out[2] = (seed){"tensors.gguf", golden_bytes(&infos_end)};
    small_spec s = small_defaults();
    s.has_alignment = true;
    s.alignment = 64;
    s.nested_depth = 3;
    out[3] = (seed){"align64.gguf", small_bytes(&s)};
    return 4;
}

Test(quant_gguf, fuzz_seed_files_are_valid_and_match_their_generator) {
    seed seeds[4];
    size_t n = make_seeds(seeds);
    const char *write_dir = getenv("GROK2_WRITE_SEEDS");
    char *dir = NULL;
    cr_assert(asprintf(&dir, "%s/tests/data/gguf-seeds", harness_root()) > 0);
    for (size_t i = 0; i < n; i++) {
        g2_error err = {{0}};
        gguf_file *f;
        cr_expect(seeds[i].bytes.n < 4096, "%s is %zu bytes", seeds[i].name, seeds[i].bytes.n);
        cr_expect_eq(gguf_open_memory(&f, seeds[i].bytes.p, seeds[i].bytes.n, seeds[i].name, &err), 0, "%s", err.msg);
        gguf_close(f);
        if (write_dir) {
            char *p = path_in(write_dir, seeds[i].name);
            spit(p, seeds[i].bytes.p, seeds[i].bytes.n);
            free(p);
        }
        char *p = path_in(dir, seeds[i].name);
        if (access(p, R_OK) == 0) {
            size_t len;
            uint8_t *got = slurp(p, &len);
            cr_expect(len == seeds[i].bytes.n && !memcmp(got, seeds[i].bytes.p, len), "%s differs from its generator", p);
            free(got);
            cr_expect_eq(gguf_open(&f, p, &err), 0, "%s", err.msg);
            gguf_close(f);
        } else {
            cr_expect_fail("seed %s is missing (GROK2_WRITE_SEEDS=%s writes it)", p, dir);
        }
        free(p);
        free(seeds[i].bytes.p);
    }
    free(dir);
}

/* convert/safetensors_*.c: the reader accepts what the reference writer produces and rejects,
 * with a message naming the tensor, every header that would make it read outside the file or
 * misread it; the writer's files read back exactly. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../convert/convert.h"
#include "harness.h"

/* A safetensors image: u64 length, header, then data_len bytes of value i & 0xff. */
static uint8_t *image(const char *header, size_t data_len, size_t *size) {
    size_t h = strlen(header);
    *size = 8 + h + data_len;
    uint8_t *buf = malloc(*size);
    cr_assert(buf);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, header, h);
    for (size_t i = 0; i < data_len; i++) buf[8 + h + i] = (uint8_t)i;
    return buf;
}

/* Opens the image and expects failure with a message containing every given fragment. */
static void expect_reject(const char *header, size_t data_len, const char *fragment1, const char *fragment2) {
    size_t size;
    uint8_t *buf = image(header, data_len, &size);
    st_file *f = NULL;
    g2_error err = {{0}};
    cr_assert_eq(st_open_memory(&f, buf, size, "x.safetensors", &err), -1, "accepted: %s", header);
    cr_assert_null(f);
    cr_assert(strstr(err.msg, fragment1), "message '%s' lacks '%s'", err.msg, fragment1);
    if (fragment2) cr_assert(strstr(err.msg, fragment2), "message '%s' lacks '%s'", err.msg, fragment2);
    cr_assert_null(strchr(err.msg, '\n'), "message '%s' is not one line", err.msg);
    free(buf);
}

Test(convert_safetensors, reads_dtypes_shapes_and_offsets_of_a_valid_file) {
    const char *h = "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
                    "\"a\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
                    "\"__metadata__\":{\"format\":\"pt\"}}";
    size_t size;
    uint8_t *buf = image(h, 16, &size);
    st_file *f;
    g2_error err;
    cr_assert_eq(st_open_memory(&f, buf, size, "ok", &err), 0, "%s", err.msg);
    cr_assert_eq(st_tensor_count(f), 2);
    const st_tensor *a = st_find(f, "a"), *b = st_find(f, "b");
    cr_assert(a && b);
    cr_assert_eq(a->type, G2_TYPE_BF16);
    cr_assert_eq(a->n_dims, 2);
    cr_assert_eq(a->shape[0], 2);
    cr_assert_eq(a->nbytes, 8);
    cr_assert_eq(b->data - a->data, 8);
    cr_assert_eq(a->data, buf + 8 + strlen(h));
    cr_assert_null(st_find(f, "c"));
    st_close(f);
    free(buf);
}

Test(convert_safetensors, rejects_a_header_that_lies_about_offsets) {
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "'a'", "past the data section");
}

Test(convert_safetensors, rejects_offsets_that_disagree_with_dtype_times_shape) {
    expect_reject("{\"a\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "'a'", "needs 6");
}

Test(convert_safetensors, rejects_an_unknown_dtype_naming_it) {
    expect_reject("{\"a\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "unknown dtype 'Q7'", "'a'");
}

Test(convert_safetensors, rejects_a_known_but_unsupported_dtype) {
    expect_reject("{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, "I64 is not supported", NULL);
}

Test(convert_safetensors, rejects_duplicate_tensor_names) {
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                  8, "'a' appears twice", NULL);
}

Test(convert_safetensors, rejects_overlapping_tensors) {
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                  12, "overlap", NULL);
}

Test(convert_safetensors, rejects_malformed_headers) {
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],", 4, "not valid JSON", NULL);
    expect_reject("[1,2]", 0, "not a JSON object", NULL);
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape[0]", NULL);
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "shape[0]", NULL);
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", 4, "data_offsets", NULL);
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "end before begin", NULL);
    expect_reject("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype", NULL);
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "dimensions",
                  NULL);
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
                  "overflows", NULL);
}

/* Found by fuzzing: a name or dtype holding a newline was printed raw, splitting the message (and
 * a name was accepted, to be printed raw again by every later check). */
Test(convert_safetensors, names_and_dtypes_with_control_characters_stay_on_one_line) {
    expect_reject("{\"a\\nb\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                  "tensor name 'a\\x0ab' holds a control character", NULL);
    expect_reject("{\"a\":{\"dtype\":\"F\\r32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                  "unknown dtype 'F\\x0d32'", NULL);
    expect_reject("{\"a\":{\"dtype\":\"\\u007f0123456789012345678901234567890123456789xyz\",\"shape\":[1],"
                  "\"data_offsets\":[0,4]}}",
                  4, "unknown dtype '\\x7f0123456789012345678901234567890123456789...'", NULL);
}

Test(convert_safetensors, shown_text_escapes_controls_and_cuts_between_utf8_characters) {
    char buf[12];
    cr_assert_str_eq(shown_text("a\tb", buf, sizeof buf), "a\\x09b");
    cr_assert_str_eq(shown_text("xy\u20ac\u20ac\u20ac", buf, sizeof buf), "xy\u20ac\u20ac...");
    cr_assert_str_eq(shown_text("xyz\u20ac\u20ac", buf, sizeof buf), "xyz\u20ac..."); /* not half a euro sign */
    cr_assert_str_eq(shown_text("\n\n\n", buf, sizeof buf), "\\x0a\\x0a...");
}

Test(convert_safetensors, rejects_impossible_header_lengths) {
    uint8_t tiny[4] = {0};
    st_file *f;
    g2_error err;
    cr_assert_eq(st_open_memory(&f, tiny, sizeof tiny, "t", &err), -1);
    cr_assert(strstr(err.msg, "too short"), "%s", err.msg);
    size_t size;
    uint8_t *buf = image("{}", 0, &size);
    buf[6] = 1; /* a header length of 2^48 */
    cr_assert_eq(st_open_memory(&f, buf, size, "t", &err), -1);
    cr_assert(strstr(err.msg, "header length"), "%s", err.msg);
    free(buf);
}

Test(convert_safetensors, writer_output_reads_back_with_the_same_bytes) {
    char *dir = harness_tmpdir("convert-st");
    cr_assert(dir);
    char path[512];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    st_writer *w = st_writer_new();
    g2_error err;
    int64_t s1[2] = {3, 5}, s2[1] = {7};
    cr_assert_eq(st_writer_add(w, "m", G2_TYPE_BF16, 2, s1, &err), 0);
    cr_assert_eq(st_writer_add(w, "v", G2_TYPE_F32, 1, s2, &err), 0);
    cr_assert_eq(st_writer_begin(w, path, &err), 0, "%s", err.msg);
    uint16_t m[15];
    float v[7];
    for (int i = 0; i < 15; i++) m[i] = (uint16_t)(0x3f80 + i);
    for (int i = 0; i < 7; i++) v[i] = (float)i * 0.5f;
    cr_assert_eq(st_writer_write(w, m, sizeof m, &err), 0);
    cr_assert_eq(st_writer_finish(w, &err), -1, "finish must refuse missing bytes");
    cr_assert_eq(st_writer_write(w, v, sizeof v, &err), 0);
    cr_assert_eq(st_writer_write(w, v, 1, &err), -1, "writing past the declared tensors must fail");
    cr_assert_eq(st_writer_finish(w, &err), 0, "%s", err.msg);
    st_writer_free(w);
    st_file *f;
    cr_assert_eq(st_open(&f, path, &err), 0, "%s", err.msg);
    const st_tensor *tm = st_find(f, "m"), *tv = st_find(f, "v");
    cr_assert(tm && tv);
    cr_assert_eq(tm->shape[1], 5);
    cr_assert_eq(memcmp(tm->data, m, sizeof m), 0);
    cr_assert_eq(memcmp(tv->data, v, sizeof v), 0);
    cr_assert_eq(tm->file_offset % 8, 0, "the header is padded to 8 bytes");
    st_close(f);
    harness_result r = harness_run("rm -rf '%s'", dir);
    harness_result_free(&r);
    free(dir);
}

Test(convert_safetensors, unfinished_writer_leaves_no_file) {
    char *dir = harness_tmpdir("convert-st");
    char path[512], tmp[520];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    st_writer *w = st_writer_new();
    g2_error err;
    int64_t s[1] = {4};
    cr_assert_eq(st_writer_add(w, "v", G2_TYPE_F32, 1, s, &err), 0);
    cr_assert_eq(st_writer_begin(w, path, &err), 0);
    cr_assert(path_exists(tmp));
    st_writer_free(w);
    cr_assert(!path_exists(tmp));
    cr_assert(!path_exists(path));
    rmdir(dir);
    free(dir);
}

/* libFuzzer harness for the GGUF reader: open any bytes with gguf_open_memory; when they are
 * accepted, touch everything the API hands out (every kv formatted and read through its
 * getters, every array element including strings, every tensor's first and last data byte,
 * the lookups) so that ASan/UBSan see any pointer the validation let through wrongly, and copy
 * every kv into a writer (the raw-value copy path). `make fuzz` runs it on tests/data/gguf-seeds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/quant.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file *f;
    g2_error err;
    if (gguf_open_memory(&f, data, size, "fuzz.gguf", &err) != 0) {
        if (strncmp(err.msg, "fuzz.gguf: ", 11) != 0 || strchr(err.msg, '\n')) abort(); /* one line naming the file */
        return 0;
    }
    if (gguf_version(f) != 3 || gguf_alignment(f) == 0 || (gguf_alignment(f) & (gguf_alignment(f) - 1))) abort();

    gguf_writer *w = gguf_writer_new();
    for (int64_t i = 0; i < gguf_kv_count(f); i++) {
        char buf[96], key[256];
        gguf_str k = gguf_kv_key(f, i);
        if (!k.data || k.len == 0 || k.len > 255 || memchr(k.data, 0, k.len)) abort();
        memcpy(key, k.data, k.len);
        key[k.len] = 0;
        if (gguf_find_key(f, key) != i) abort(); /* keys are unique */
        int n = gguf_kv_format(f, i, buf, sizeof buf);
        if (n < 0) abort();
        sink += (uint64_t)n + (uint8_t)buf[0];

        uint64_t u64;
        uint32_t u32;
        int64_t i64;
        float f32;
        bool b;
        gguf_str s;
        gguf_array a;
        sink += (uint64_t)gguf_get_u64(f, key, &u64, &err) + (uint64_t)gguf_get_u32(f, key, &u32, &err) +
                (uint64_t)gguf_get_i64(f, key, &i64, &err) + (uint64_t)gguf_get_f32(f, key, &f32, &err) +
                (uint64_t)gguf_get_bool(f, key, &b, &err);
        if (gguf_get_str(f, key, &s, &err) == 0) touch(s.data, s.len);
        if (gguf_get_array(f, key, &a, &err) == 0) {
            if (a.elem_type == GGUF_TYPE_STRING) {
                for (uint64_t e = 0; e < a.count; e++) {
                    gguf_str es = gguf_array_str(f, &a, e);
                    if (!es.data) abort(); /* every element of a string array is indexed */
                    touch(es.data, es.len);
                }
            } else {
                double sum = 0;
                for (uint64_t e = 0; e < a.count; e++) sum += gguf_array_num(&a, e);
                sink += sum != 0;
                touch(a.data, a.count * gguf_value_size(a.elem_type));
            }
        }
        if (w && gguf_writer_copy_kv(w, f, i, &err) != 0) abort(); /* a valid kv is always copyable */
    }
    if (w && gguf_kv_count(f) > 0 && gguf_writer_total_size(w) < 24) abort();
    gguf_writer_free(w);

    uint64_t expected = 0, align = gguf_alignment(f);
    for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (!t || t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS || !g2_type_get(t->type)) abort();
        if (t->offset != expected || gguf_find_tensor(f, t->name) != t) abort();
        if ((const uint8_t *)t->data + t->nbytes > data + size) abort();
        touch(t->data, t->nbytes);
        expected += (t->nbytes + align - 1) / align * align;
    }
    gguf_close(f);
    return 0;
}

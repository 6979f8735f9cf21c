/* libFuzzer harness for the safetensors reader: open any bytes with st_open_memory; a refusal
 * must be one line naming the file; an accepted file must keep every promise of convert.h (only
 * BF16/F16/F32, shapes that multiply out to the byte count, data inside the data section, names
 * sorted and unique, ranges disjoint), and every tensor's first and last data byte is read so
 * that ASan/UBSan see a pointer the validation let through wrongly; each name also goes through
 * grok_parse_hf_name, as in a conversion. `make fuzz` runs it on
 * tests/data/safetensors-seeds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../convert/convert.h"
#include "fuzz.h"

#define NAME "fuzz.safetensors"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char unset;
    st_file *f = (st_file *)&unset; /* must come back NULL on failure */
    g2_error err;
    if (st_open_memory(&f, data, size, NAME, &err) != 0) {
        if (f) abort(); /* a refusal hands out nothing */
        check_refusal(err.msg, NAME);
        return 0;
    }
    if (size < 8 || strcmp(st_path(f), NAME)) abort();
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = header_len << 8 | data[i];
    uint64_t data_start = 8 + header_len;

    size_t n = st_tensor_count(f);
    const st_tensor *prev = NULL;
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = st_tensor_at(f, i);
        if (!t || !t->name || t->file != f || st_find(f, t->name) != t) abort();
        if (prev && strcmp(prev->name, t->name) >= 0) abort(); /* sorted, no duplicates */
        if (t->type != G2_TYPE_BF16 && t->type != G2_TYPE_F16 && t->type != G2_TYPE_F32) abort();
        if (t->n_dims < 0 || t->n_dims > ST_MAX_DIMS) abort();
        uint64_t elements = 1;
        for (int d = 0; d < t->n_dims; d++) {
            if (t->shape[d] < 0) abort();
            elements *= (uint64_t)t->shape[d]; /* cannot wrap: the reader rejects overflowing shapes */
        }
        if (elements * g2_type_get(t->type)->type_size != t->nbytes) abort();
        if (t->file_offset < data_start || t->file_offset > size || t->nbytes > size - t->file_offset) abort();
        if (t->data != data + t->file_offset) abort();
        touch(t->data, t->nbytes);
        st_prefetch(t, t->data, t->nbytes); /* no-ops on a memory buffer, but must accept any tensor */
        st_release(t, t->data, t->nbytes);
        grok_role role; /* the converter's next step: the name as a Grok-2 tensor, or not one */
        int layer, expert;
        if (grok_parse_hf_name(t->name, &role, &layer, &expert) == 0 &&
            (role < 0 || role >= ROLE_COUNT || layer < -1 || expert < -1))
            abort();
        prev = t;
    }
    /* disjoint byte ranges: quadratic, but an accepted header of at most -max_len bytes holds few tensors */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            const st_tensor *a = st_tensor_at(f, i), *b = st_tensor_at(f, j);
            if (a->nbytes && b->nbytes && a->file_offset < b->file_offset + b->nbytes &&
                b->file_offset < a->file_offset + a->nbytes)
                abort();
        }
    if (st_tensor_at(f, n) != NULL) abort();
    st_close(f);
    return 0;
}

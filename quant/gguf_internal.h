/* Shared between the GGUF reader and writer only (not part of quant/'s public face). */
#ifndef GROK2_GGUF_INTERNAL_H
#define GROK2_GGUF_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "quant.h"

/* GGUF is little-endian and so is every host this project targets (x86-64, aarch64): values
 * are read and written with memcpy, no byte swapping. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "GGUF code assumes a little-endian host");

#define GGUF_MAGIC "GGUF"
#define GGUF_VERSION 3
#define GGUF_HEADER_SIZE 24      /* magic, version, tensor count, kv count */
#define GGUF_MAX_KEY 255         /* gguf_key_valid's limit */
#define GGUF_MAX_ARRAY_DEPTH 8   /* arrays of arrays nest at most this deep */
#define GGUF_ALIGNMENT_KEY "general.alignment"

static inline uint32_t gguf_rd_u32(const void *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline uint64_t gguf_rd_u64(const void *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The serialized value of kv i exactly as stored: its u32 type followed by the value (for
 * arrays: element type, count, elements). The writer copies it verbatim (gguf_writer_copy_kv),
 * which is what makes nested arrays copyable. Returns 0, or -1 for an index out of range. */
int gguf_kv_raw_value(const gguf_file *f, int64_t i, const uint8_t **data, size_t *size);

#endif

/* The type table: the one place that knows each ggml block type (name, id, block size, bytes
 * per block, decoder, encoder). Everything else asks it. The block types' scalar reference
 * kernels live in blocks_*.c (declared in blocks.h). */
#include <strings.h>

#include "blocks.h"
#include "quant.h"

static void f32_to_float(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }
static void f32_from_float(const float *src, void *dst, int64_t n, const float *importance) {
    (void)importance;
    memcpy(dst, src, (size_t)n * sizeof(float));
}
static void f16_to_float(const void *src, float *dst, int64_t n) {
    const g2_half *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = g2_half_to_f32(h[i]);
}
static void f16_from_float(const float *src, void *dst, int64_t n, const float *importance) {
    (void)importance;
    g2_half *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = g2_f32_to_half(src[i]);
}
static void bf16_to_float(const void *src, float *dst, int64_t n) {
    const uint16_t *b = src;
    for (int64_t i = 0; i < n; i++) dst[i] = g2_bf16_to_f32(b[i]);
}
static void bf16_from_float(const float *src, void *dst, int64_t n, const float *importance) {
    (void)importance;
    uint16_t *b = dst;
    for (int64_t i = 0; i < n; i++) b[i] = g2_f32_to_bf16(src[i]);
}

/* Indexed by id; rows with a NULL name are ids the table does not know. */
static const g2_type_traits type_table[G2_TYPE_ID_LIMIT] = {
    [0] = {"f32", 0, 1, 4, f32_to_float, f32_from_float},
    [1] = {"f16", 1, 1, 2, f16_to_float, f16_from_float},
    [2] = {"q4_0", 2, 32, 18, g2_q4_0_to_float, g2_q4_0_from_float},
    [3] = {"q4_1", 3, 32, 20, g2_q4_1_to_float, g2_q4_1_from_float},
    [6] = {"q5_0", 6, 32, 22, NULL, NULL},
    [7] = {"q5_1", 7, 32, 24, NULL, NULL},
    [8] = {"q8_0", 8, 32, 34, g2_q8_0_to_float, g2_q8_0_from_float},
    [9] = {"q8_1", 9, 32, 36, NULL, NULL},
    [10] = {"q2_K", 10, 256, 84, NULL, NULL},
    [11] = {"q3_K", 11, 256, 110, NULL, NULL},
    [12] = {"q4_K", 12, 256, 144, g2_q4_k_to_float, g2_q4_k_from_float},
    [13] = {"q5_K", 13, 256, 176, g2_q5_k_to_float, g2_q5_k_from_float},
    [14] = {"q6_K", 14, 256, 210, g2_q6_k_to_float, g2_q6_k_from_float},
    [15] = {"q8_K", 15, 256, 292, g2_q8_k_to_float, g2_q8_k_from_float},
    [16] = {"iq2_xxs", 16, 256, 66, NULL, NULL},
    [17] = {"iq2_xs", 17, 256, 74, NULL, NULL},
    [18] = {"iq3_xxs", 18, 256, 98, NULL, NULL},
    [19] = {"iq1_s", 19, 256, 50, NULL, NULL},
    [20] = {"iq4_nl", 20, 32, 18, g2_iq4_nl_to_float, g2_iq4_nl_from_float},
    [21] = {"iq3_s", 21, 256, 110, NULL, NULL},
    [22] = {"iq2_s", 22, 256, 82, NULL, NULL},
    [23] = {"iq4_xs", 23, 256, 136, NULL, NULL},
    [24] = {"i8", 24, 1, 1, NULL, NULL},
    [25] = {"i16", 25, 1, 2, NULL, NULL},
    [26] = {"i32", 26, 1, 4, NULL, NULL},
    [27] = {"i64", 27, 1, 8, NULL, NULL},
    [28] = {"f64", 28, 1, 8, NULL, NULL},
    [29] = {"iq1_m", 29, 256, 56, NULL, NULL},
    [30] = {"bf16", 30, 1, 2, bf16_to_float, bf16_from_float},
    [34] = {"tq1_0", 34, 256, 54, NULL, NULL},
    [35] = {"tq2_0", 35, 256, 66, NULL, NULL},
};

const g2_type_traits *g2_type_get(uint32_t id) {
    if (id >= G2_TYPE_ID_LIMIT || !type_table[id].name) return NULL;
    return &type_table[id];
}

const g2_type_traits *g2_type_by_name(const char *name) {
    for (uint32_t id = 0; id < G2_TYPE_ID_LIMIT; id++)
        if (type_table[id].name && strcasecmp(type_table[id].name, name) == 0) return &type_table[id];
    return NULL;
}

size_t g2_row_size(uint32_t type, int64_t ne0) {
    const g2_type_traits *t = g2_type_get(type);
    if (!t || ne0 < 0 || ne0 % t->block_size) return 0;
    return (size_t)(ne0 / t->block_size) * t->type_size;
}

size_t g2_quantize_rows(uint32_t type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                        const float *importance) {
    const g2_type_traits *t = g2_type_get(type);
    size_t row = g2_row_size(type, n_per_row);
    if (!t || !t->from_float || row == 0) return 0;
    for (int64_t r = 0; r < nrows; r++)
        t->from_float(src + r * n_per_row, (char *)dst + (size_t)r * row, n_per_row, importance);
    return row * (size_t)nrows;
}

int g2_dequantize(uint32_t type, const void *src, float *dst, int64_t n) {
    const g2_type_traits *t = g2_type_get(type);
    if (!t || !t->to_float || n < 0 || n % t->block_size) return -1;
    t->to_float(src, dst, n);
    return 0;
}

/* quant/blocks_*.c and the type table: the block decoders against blocks built byte by byte
 * from gguf-format.md, the encoders' accuracy (round-trip RMSE, importance weighting), edge
 * blocks, and the table's public functions. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/quant.h"

/* The block types this project encodes and decodes (F32/F16/BF16 are tested elsewhere). */
static const uint32_t block_types[] = {G2_TYPE_Q4_0, G2_TYPE_Q4_1, G2_TYPE_Q8_0, G2_TYPE_Q4_K, G2_TYPE_Q5_K,
                                       G2_TYPE_Q6_K, G2_TYPE_Q8_K, G2_TYPE_IQ4_NL};
#define N_BLOCK_TYPES (sizeof block_types / sizeof block_types[0])

static const char *type_name(uint32_t type) { return g2_type_get(type)->name; }

/* ---- deterministic random data ------------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rng_uniform(uint64_t *s) { return ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0; }
static double rng_normal(uint64_t *s) {
    return sqrt(-2.0 * log(rng_uniform(s))) * cos(6.283185307179586 * rng_uniform(s));
}
/* Student-t with 3 degrees of freedom: heavy tails, like real weight outliers. */
static double rng_student_t3(uint64_t *s) {
    double chi2 = 0;
    for (int i = 0; i < 3; i++) {
        double z = rng_normal(s);
        chi2 += z * z;
    }
    return rng_normal(s) / sqrt(chi2 / 3.0);
}

enum { DIST_NORMAL, DIST_HEAVY };
static float *random_data(int64_t n, int dist, uint64_t seed) {
    float *x = malloc((size_t)n * sizeof *x);
    cr_assert(x);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(dist == DIST_NORMAL ? rng_normal(&seed) : rng_student_t3(&seed));
    return x;
}

/* ---- helpers ------------------------------------------------------------------------------ */

static void put_half(uint8_t *p, float v) { /* little-endian fp16 bytes of a value exact in fp16 */
    g2_half h = g2_f32_to_half(v);
    cr_assert_eq(g2_half_to_f32(h), v, "test setup: %g is not exact in fp16", (double)v);
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

static void decode(uint32_t type, const void *src, float *dst, int64_t n) {
    cr_assert_eq(g2_dequantize(type, src, dst, n), 0, "%s: dequantize failed", type_name(type));
}

/* Quantizes rows x cols of x with type (importance may be NULL) and decodes them into y. */
static void round_trip(uint32_t type, const float *x, float *y, int64_t rows, int64_t cols, const float *importance) {
    size_t row = g2_row_size(type, cols);
    cr_assert_gt(row, 0);
    void *q = malloc(row * (size_t)rows);
    cr_assert(q);
    cr_assert_eq(g2_quantize_rows(type, x, q, rows, cols, importance), row * (size_t)rows);
    decode(type, q, y, rows * cols);
    free(q);
}

/* sqrt(sum (x-y)^2 / sum x^2): RMSE relative to the data's RMS. */
static double relative_rmse(const float *x, const float *y, int64_t n) {
    double err = 0, ref = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)x[i] - y[i];
        err += d * d;
        ref += (double)x[i] * x[i];
    }
    return sqrt(err / ref);
}

/* ==== (1) exact decode of blocks built byte by byte ======================================== */

Test(quant_blocks, q8_0_decodes_hand_built_block_exactly) {
    uint8_t b[34];
    put_half(b, 0.5f); /* d, then 32 int8 quants */
    for (int i = 0; i < 32; i++) b[2 + i] = (uint8_t)(int8_t)(i * 9 - 140 < -128 ? -128 : i * 9 - 140);
    b[2 + 31] = 127;
    float y[32];
    decode(G2_TYPE_Q8_0, b, y, 32);
    cr_assert_eq(y[0], -64.0f); /* -128 * 0.5: int8, not uint8 */
    cr_assert_eq(y[31], 63.5f);
    for (int i = 0; i < 32; i++) cr_assert_eq(y[i], (float)(int8_t)b[2 + i] * 0.5f, "element %d", i);
}

Test(quant_blocks, q4_0_decodes_hand_built_block_exactly) {
    uint8_t b[18];
    put_half(b, -2.0f);
    /* byte j: element j in the low nibble (value j), element j+16 in the high one (15-j) */
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(j | ((15 - j) << 4));
    float y[32];
    decode(G2_TYPE_Q4_0, b, y, 32);
    cr_assert_eq(y[0], 16.0f);  /* (0 - 8) * -2 */
    cr_assert_eq(y[16], -14.0f); /* (15 - 8) * -2 */
    for (int j = 0; j < 16; j++) {
        cr_assert_eq(y[j], (float)(j - 8) * -2.0f, "element %d", j);
        cr_assert_eq(y[j + 16], (float)(7 - j) * -2.0f, "element %d", j + 16);
    }
}

Test(quant_blocks, q4_1_decodes_hand_built_block_exactly) {
    uint8_t b[20];
    put_half(b, 0.25f);     /* d */
    put_half(b + 2, -1.5f); /* m */
    for (int j = 0; j < 16; j++) b[4 + j] = (uint8_t)(((j * 3) & 15) | (((j + 5) & 15) << 4));
    float y[32];
    decode(G2_TYPE_Q4_1, b, y, 32);
    cr_assert_eq(y[0], -1.5f);       /* 0 * 0.25 - 1.5 */
    cr_assert_eq(y[16], -0.25f);     /* 5 * 0.25 - 1.5 */
    cr_assert_eq(y[15], 1.75f);      /* (45 & 15) = 13: 13 * 0.25 - 1.5 */
    for (int j = 0; j < 16; j++) {
        cr_assert_eq(y[j], (float)((j * 3) & 15) * 0.25f - 1.5f, "element %d", j);
        cr_assert_eq(y[j + 16], (float)((j + 5) & 15) * 0.25f - 1.5f, "element %d", j + 16);
    }
}

Test(quant_blocks, iq4_nl_decodes_hand_built_block_through_its_codebook) {
    static const int table[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    uint8_t b[18];
    put_half(b, 0.5f);
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(j | ((15 - j) << 4));
    float y[32];
    decode(G2_TYPE_IQ4_NL, b, y, 32);
    cr_assert_eq(y[0], -63.5f);  /* T[0] = -127 */
    cr_assert_eq(y[16], 56.5f);  /* T[15] = 113 */
    cr_assert_eq(y[8], 0.5f);    /* T[8] = 1 */
    for (int j = 0; j < 16; j++) {
        cr_assert_eq(y[j], 0.5f * (float)table[j], "element %d", j);
        cr_assert_eq(y[j + 16], 0.5f * (float)table[15 - j], "element %d", j + 16);
    }
}

Test(quant_blocks, q8_k_decodes_hand_built_block_with_f32_scale) {
    uint8_t b[292];
    memset(b, 0, sizeof b);
    float d = 0.1f; /* f32, not fp16: a value fp16 cannot hold exactly */
    memcpy(b, &d, 4);
    for (int i = 0; i < 256; i++) b[4 + i] = (uint8_t)(int8_t)(i - 128);
    float y[256];
    decode(G2_TYPE_Q8_K, b, y, 256);
    for (int i = 0; i < 256; i++) cr_assert_eq(y[i], 0.1f * (float)(i - 128), "element %d", i);
}

/* The 6-bit scales and mins shared by the Q4_K and Q5_K tests; j >= 4 use values >= 16 so
 * that their top two bits, stored in scales[0..7], matter. */
static const int kq_sc[8] = {1, 2, 3, 63, 17, 33, 48, 63};
static const int kq_m[8] = {0, 5, 63, 7, 20, 40, 63, 1};
/* Packed by hand per gguf-format.md:
 *   [0..3] sc[0..3] | (sc[4..7] >> 4) << 6:  1|1<<6, 2|2<<6, 3|3<<6, 63|3<<6
 *   [4..7]  m[0..3] | ( m[4..7] >> 4) << 6:  0|1<<6, 5|2<<6, 63|3<<6, 7|0<<6
 *   [8..11] (sc[4..7] & 15) | (m[4..7] & 15) << 4:  1|4<<4, 1|8<<4, 0|15<<4, 15|1<<4 */
static const uint8_t kq_scales[12] = {0x41, 0x82, 0xC3, 0xFF, 0x40, 0x85, 0xFF, 0x07, 0x41, 0x81, 0xF0, 0x1F};

Test(quant_blocks, q4_k_decodes_hand_built_block_with_6bit_scale_packing) {
    uint8_t b[144];
    put_half(b, 0.5f);      /* d */
    put_half(b + 2, 0.25f); /* dmin */
    memcpy(b + 4, kq_scales, 12);
    uint8_t *qs = b + 16;
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) qs[c * 32 + l] = (uint8_t)((l & 15) | (((l + 3 * c) & 15) << 4));
    float y[256];
    decode(G2_TYPE_Q4_K, b, y, 256);
    /* spot checks worked out by hand */
    cr_assert_eq(y[0], 0.0f);             /* sub 0: 0.5*1*0 - 0.25*0 */
    cr_assert_eq(y[33], -0.25f);          /* sub 1, l=1: high nibble of qs[1] = 1: 0.5*2*1 - 0.25*5 */
    cr_assert_eq(y[128 + 5], 37.5f);      /* sub 4, l=5: low nibble of qs[69] = 5: 0.5*17*5 - 0.25*20 */
    cr_assert_eq(y[224 + 31], 251.75f);   /* sub 7, l=31: high of qs[127] = (31+9)&15 = 8: 0.5*63*8 - 0.25*1 */
    /* every element, walking the layout chunk by chunk */
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++) {
            int lo = qs[c * 32 + l] & 15, hi = qs[c * 32 + l] >> 4;
            int j0 = 2 * c, j1 = 2 * c + 1;
            cr_assert_eq(y[64 * c + l], 0.5f * (float)kq_sc[j0] * (float)lo - 0.25f * (float)kq_m[j0]);
            cr_assert_eq(y[64 * c + 32 + l], 0.5f * (float)kq_sc[j1] * (float)hi - 0.25f * (float)kq_m[j1]);
        }
    }
}

Test(quant_blocks, q5_k_decodes_hand_built_block_with_fifth_bit_in_qh) {
    uint8_t b[176];
    put_half(b, 0.5f);
    put_half(b + 2, 0.25f);
    memcpy(b + 4, kq_scales, 12);
    uint8_t *qh = b + 16, *qs = b + 48;
    for (int l = 0; l < 32; l++) qh[l] = (uint8_t)(l * 37 + 11);
    for (int i = 0; i < 128; i++) qs[i] = (uint8_t)(i * 53 + 7);
    /* hand-set element 0 of sub-blocks 0, 1, 2 and 7 */
    qh[0] = 0x85;  /* bits 0, 2, 7: +16 for sub-blocks 0, 2, 7 */
    qs[0] = 0x3A;  /* sub 0 low 10, sub 1 low 3 */
    qs[32] = 0x0F; /* sub 2 low 15 */
    qs[96] = 0x50; /* sub 7 low 5 */
    float y[256];
    decode(G2_TYPE_Q5_K, b, y, 256);
    cr_assert_eq(y[0], 13.0f);        /* 0.5*1*26 - 0 */
    cr_assert_eq(y[32], 1.75f);       /* 0.5*2*3 - 0.25*5 */
    cr_assert_eq(y[64], 30.75f);      /* 0.5*3*31 - 0.25*63 */
    cr_assert_eq(y[224], 661.25f);    /* 0.5*63*21 - 0.25*1 */
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++) {
            int j0 = 2 * c, j1 = 2 * c + 1;
            int q0 = (qs[c * 32 + l] & 15) + ((qh[l] >> j0) & 1) * 16;
            int q1 = (qs[c * 32 + l] >> 4) + ((qh[l] >> j1) & 1) * 16;
            cr_assert_eq(y[64 * c + l], 0.5f * (float)kq_sc[j0] * (float)q0 - 0.25f * (float)kq_m[j0]);
            cr_assert_eq(y[64 * c + 32 + l], 0.5f * (float)kq_sc[j1] * (float)q1 - 0.25f * (float)kq_m[j1]);
        }
    }
}

Test(quant_blocks, q6_k_decodes_hand_built_block_with_d_last) {
    uint8_t b[210];
    uint8_t *ql = b, *qh = b + 128;
    int8_t *sc = (int8_t *)(b + 192);
    for (int i = 0; i < 128; i++) ql[i] = (uint8_t)(i * 29 + 3);
    for (int i = 0; i < 64; i++) qh[i] = (uint8_t)(i * 71 + 5);
    for (int j = 0; j < 16; j++) sc[j] = (int8_t)(j * 13 - 100);
    put_half(b + 208, 0.5f); /* d is the last field */
    /* hand-set four elements */
    ql[0] = 0x07, qh[0] = 0x02, sc[0] = -3;    /* e=0: q = 7 | 2<<4 = 39 -> 7 */
    ql[36] = 0xC0, qh[4] = 0x40, sc[6] = 5;    /* e=100 (half 0, quarter 3, l 4): 12 | 1<<4 = 28 -> -4 */
    ql[72] = 0x10, qh[40] = 0x30, sc[12] = -128; /* e=200 (half 1, quarter 2, l 8): 1 | 3<<4 = 49 -> 17 */
    ql[127] = 0xF0, qh[63] = 0xC0, sc[15] = 127; /* e=255 (half 1, quarter 3, l 31): 63 -> 31 */
    float y[256];
    decode(G2_TYPE_Q6_K, b, y, 256);
    cr_assert_eq(y[0], -10.5f);   /* 0.5 * -3 * 7 */
    cr_assert_eq(y[100], -10.0f); /* 0.5 * 5 * -4 */
    cr_assert_eq(y[200], -1088.0f); /* 0.5 * -128 * 17 */
    cr_assert_eq(y[255], 1968.5f); /* 0.5 * 127 * 31 */
    /* every element, walking ggml's layout: per 128-weight half, 32 columns of 4 quants */
    for (int h = 0; h < 2; h++) {
        for (int l = 0; l < 32; l++) {
            const uint8_t *L = ql + 64 * h, *H = qh + 32 * h;
            int q[4] = {(L[l] & 15) | ((H[l] & 3) << 4), (L[l + 32] & 15) | (((H[l] >> 2) & 3) << 4),
                        (L[l] >> 4) | (((H[l] >> 4) & 3) << 4), (L[l + 32] >> 4) | (((H[l] >> 6) & 3) << 4)};
            for (int k = 0; k < 4; k++) {
                int e = 128 * h + 32 * k + l;
                cr_assert_eq(y[e], 0.5f * (float)sc[e / 16] * (float)(q[k] - 32), "element %d", e);
            }
        }
    }
}

Test(quant_blocks, table_sizes_match_block_structs) {
    cr_assert_eq(g2_type_get(G2_TYPE_Q4_0)->type_size, sizeof(block_q4_0));
    cr_assert_eq(g2_type_get(G2_TYPE_Q4_1)->type_size, sizeof(block_q4_1));
    cr_assert_eq(g2_type_get(G2_TYPE_Q8_0)->type_size, sizeof(block_q8_0));
    cr_assert_eq(g2_type_get(G2_TYPE_Q4_K)->type_size, sizeof(block_q4_k));
    cr_assert_eq(g2_type_get(G2_TYPE_Q5_K)->type_size, sizeof(block_q5_k));
    cr_assert_eq(g2_type_get(G2_TYPE_Q6_K)->type_size, sizeof(block_q6_k));
    cr_assert_eq(g2_type_get(G2_TYPE_Q8_K)->type_size, sizeof(block_q8_k));
    cr_assert_eq(g2_type_get(G2_TYPE_IQ4_NL)->type_size, sizeof(block_iq4_nl));
    for (size_t t = 0; t < N_BLOCK_TYPES; t++) {
        const g2_type_traits *tr = g2_type_get(block_types[t]);
        cr_assert(tr->to_float && tr->from_float, "%s: encoder and decoder are in the table", tr->name);
    }
}

/* ==== encoders: exactness properties ======================================================= */

Test(quant_blocks, q8_k_bsums_are_sums_of_each_16_quants) {
    float *x = random_data(512, DIST_HEAVY, 7);
    block_q8_k q[2];
    cr_assert_eq(g2_quantize_rows(G2_TYPE_Q8_K, x, q, 1, 512, NULL), sizeof q);
    for (int b = 0; b < 2; b++) {
        int amax = 0;
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int i = 0; i < 16; i++) {
                sum += q[b].qs[g * 16 + i];
                if (abs(q[b].qs[g * 16 + i]) > amax) amax = abs(q[b].qs[g * 16 + i]);
            }
            cr_assert_eq(q[b].bsums[g], sum, "block %d group %d", b, g);
        }
        cr_assert_eq(amax, 127, "the largest activation uses the full int8 range");
    }
    free(x);
}

/* Quantizing with the scale as stored (fp16-rounded) means every value is within half a step
 * of the stored scale, and re-encoding the decoded values gives back the same bytes. */
Test(quant_blocks, q8_0_and_q4_0_quantize_with_the_stored_fp16_scale) {
    const int64_t n = 4096;
    float *x = random_data(n, DIST_HEAVY, 11);
    for (int64_t i = 0; i < n; i++) x[i] *= 1e-3f; /* small scales: fp16 rounding is coarse relative */
    float *y = malloc((size_t)n * sizeof *y);
    block_q8_0 *q8 = malloc((size_t)n / 32 * sizeof *q8), *q8b = malloc((size_t)n / 32 * sizeof *q8b);
    g2_quantize_rows(G2_TYPE_Q8_0, x, q8, 1, n, NULL);
    decode(G2_TYPE_Q8_0, q8, y, n);
    for (int64_t i = 0; i < n; i++) {
        float d = g2_half_to_f32(q8[i / 32].d);
        cr_assert_leq(fabsf(x[i] - y[i]), 0.5f * d * (1 + 1e-6f), "element %ld: |%g - %g| > d/2 = %g", (long)i,
                      (double)x[i], (double)y[i], (double)d / 2);
    }
    g2_quantize_rows(G2_TYPE_Q8_0, y, q8b, 1, n, NULL);
    cr_assert_eq(memcmp(q8, q8b, (size_t)n / 32 * sizeof *q8), 0, "Q8_0 re-encoding is the identity");

    block_q4_0 *q4 = malloc((size_t)n / 32 * sizeof *q4), *q4b = malloc((size_t)n / 32 * sizeof *q4b);
    g2_quantize_rows(G2_TYPE_Q4_0, x, q4, 1, n, NULL);
    decode(G2_TYPE_Q4_0, q4, y, n);
    for (int64_t i = 0; i < n; i++) {
        float d = fabsf(g2_half_to_f32(q4[i / 32].d));
        /* level +8 does not exist: values past +7d (on the short side) may be off by more */
        if (fabsf(x[i]) <= 7 * d) cr_assert_leq(fabsf(x[i] - y[i]), 0.5f * d * (1 + 1e-6f), "element %ld", (long)i);
    }
    g2_quantize_rows(G2_TYPE_Q4_0, y, q4b, 1, n, NULL);
    cr_assert_eq(memcmp(q4, q4b, (size_t)n / 32 * sizeof *q4), 0, "Q4_0 re-encoding is the identity");
    free(x), free(y), free(q8), free(q8b), free(q4), free(q4b);
}

/* ==== (2) round-trip accuracy ============================================================== */

#define RMSE_ROWS 64
#define RMSE_COLS 4096

/* Measures the relative RMSE of every type on one distribution, prints the table, checks the
 * bounds (a little above the measured values) and the order Q4_0 > Q4_K > Q5_K > Q6_K > Q8_0. */
static void check_rmse(int dist, const double bound[N_BLOCK_TYPES]) {
    const int64_t n = (int64_t)RMSE_ROWS * RMSE_COLS;
    float *x = random_data(n, dist, dist == DIST_NORMAL ? 1 : 2);
    float *y = malloc((size_t)n * sizeof *y);
    cr_assert(y);
    double rmse[N_BLOCK_TYPES];
    char line[512];
    int len = snprintf(line, sizeof line, "relative RMSE, %s, %dx%d:", dist == DIST_NORMAL ? "N(0,1)" : "Student-t(3)",
                       RMSE_ROWS, RMSE_COLS);
    for (size_t t = 0; t < N_BLOCK_TYPES; t++) {
        round_trip(block_types[t], x, y, RMSE_ROWS, RMSE_COLS, NULL);
        rmse[t] = relative_rmse(x, y, n);
        len += snprintf(line + len, sizeof line - (size_t)len, " %s %.5f", type_name(block_types[t]), rmse[t]);
    }
    cr_log_info("%s", line);
    printf("%s\n", line);
    for (size_t t = 0; t < N_BLOCK_TYPES; t++)
        cr_expect_lt(rmse[t], bound[t], "%s: relative RMSE %.5f above %.5f", type_name(block_types[t]), rmse[t],
                     bound[t]);
    /* indices into block_types */
    enum { Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K, Q8_K, IQ4_NL };
    cr_expect_lt(rmse[Q4_K], rmse[Q4_0], "Q4_K beats Q4_0");
    cr_expect_lt(rmse[Q5_K], rmse[Q4_K], "Q5_K beats Q4_K");
    cr_expect_lt(rmse[Q6_K], rmse[Q5_K], "Q6_K beats Q5_K");
    cr_expect_lt(rmse[Q8_0], rmse[Q6_K], "Q8_0 beats Q6_K");
    cr_expect_lt(rmse[IQ4_NL], rmse[Q4_0], "IQ4_NL beats Q4_0");
    free(x);
    free(y);
}

Test(quant_blocks, round_trip_rmse_on_normal_data_is_bounded_and_ordered_by_bits) {
    /* measured: q4_0 0.08605, q4_1 0.07804, q8_0 0.00535, q4_K 0.06988, q5_K 0.03460,
     *           q6_K 0.01654, q8_K 0.00697, iq4_nl 0.07318 */
    static const double bound[N_BLOCK_TYPES] = {0.0905, 0.082, 0.0057, 0.0735, 0.0365, 0.0175, 0.0074, 0.077};
    check_rmse(DIST_NORMAL, bound);
}

Test(quant_blocks, round_trip_rmse_on_heavy_tailed_data_is_bounded_and_ordered_by_bits) {
    /* measured: q4_0 0.12837, q4_1 0.10037, q8_0 0.00839, q4_K 0.09095, q5_K 0.04508,
     *           q6_K 0.02431, q8_K 0.01695, iq4_nl 0.09867 */
    static const double bound[N_BLOCK_TYPES] = {0.135, 0.1055, 0.0089, 0.0955, 0.0475, 0.0256, 0.0178, 0.1036};
    check_rmse(DIST_HEAVY, bound);
}

/* ==== (3) importance weighting ============================================================= */

static double weighted_error(const float *x, const float *y, const float *w, int64_t rows, int64_t cols) {
    double e = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double d = (double)x[r * cols + c] - y[r * cols + c];
            e += w[c] * d * d;
        }
    return e;
}

Test(quant_blocks, importance_lowers_the_weighted_error) {
    const int64_t rows = 16, cols = 4096, n = rows * cols;
    float *x = random_data(n, DIST_HEAVY, 3);
    float *y = malloc((size_t)n * sizeof *y), *w = malloc((size_t)cols * sizeof *w);
    uint64_t seed = 99;
    /* log-normal column weights spanning a few decades, like an importance matrix */
    for (int64_t c = 0; c < cols; c++) w[c] = (float)exp(1.5 * rng_normal(&seed));
    static const uint32_t types[] = {G2_TYPE_Q4_0, G2_TYPE_Q4_1, G2_TYPE_Q8_0, G2_TYPE_Q4_K,
                                     G2_TYPE_Q5_K, G2_TYPE_Q6_K, G2_TYPE_IQ4_NL};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        round_trip(types[t], x, y, rows, cols, NULL);
        double plain = weighted_error(x, y, w, rows, cols);
        round_trip(types[t], x, y, rows, cols, w);
        double weighted = weighted_error(x, y, w, rows, cols);
        cr_log_info("%s: weighted error %.4g without importance, %.4g with (%.1f%% lower)", type_name(types[t]), plain,
                    weighted, 100 * (1 - weighted / plain));
        cr_expect_lt(weighted, plain * 0.9, "%s: importance lowers the weighted error (%g vs %g)",
                     type_name(types[t]), weighted, plain);
    }
    free(x), free(y), free(w);
}

/* NULL means uniform: all-ones weights give the same bytes for the types whose encoders
 * always search (the legacy types keep ggml's closed-form rule for NULL). */
Test(quant_blocks, uniform_importance_is_the_same_as_none_for_searching_encoders) {
    const int64_t n = 1024;
    float *x = random_data(n, DIST_HEAVY, 13), w[1024];
    for (int i = 0; i < 1024; i++) w[i] = 1.0f;
    static const uint32_t types[] = {G2_TYPE_Q4_K, G2_TYPE_Q5_K, G2_TYPE_Q6_K, G2_TYPE_IQ4_NL};
    uint8_t a[4 * 210], b[4 * 210];
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        size_t bytes = g2_quantize_rows(types[t], x, a, 1, n, NULL);
        cr_assert_eq(g2_quantize_rows(types[t], x, b, 1, n, w), bytes);
        cr_assert_eq(memcmp(a, b, bytes), 0, "%s", type_name(types[t]));
    }
    free(x);
}

/* Sub-blocks of very different magnitudes: each needs its own 6-bit scale, the ones of
 * sub-blocks 4..7 with their top bits set (stored apart from the low bits). A packing
 * mistake would wreck the sub-blocks it touches. */
Test(quant_blocks, k_quant_encoders_give_every_sub_block_its_own_scale) {
    static const float magnitude[8] = {1.0f, 0.05f, 0.25f, 0.3f, 1.0f, 0.6f, 0.9f, 0.4f};
    float x[256], y[256];
    uint64_t seed = 31;
    for (int i = 0; i < 256; i++) x[i] = (float)rng_normal(&seed) * magnitude[i / 32];
    static const uint32_t types[] = {G2_TYPE_Q4_K, G2_TYPE_Q5_K, G2_TYPE_Q6_K};
    static const double bound[] = {0.12, 0.06, 0.03};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        round_trip(types[t], x, y, 1, 256, NULL);
        for (int j = 0; j < 8; j++) {
            double e = relative_rmse(x + 32 * j, y + 32 * j, 32);
            cr_assert_lt(e, bound[t], "%s sub-block %d: relative RMSE %.4f", type_name(types[t]), j, e);
        }
    }
}

/* Zero weights: those columns may be anything, the others must get all the precision. */
Test(quant_blocks, zero_importance_columns_are_free) {
    float x[256], y[256], w[256];
    uint64_t seed = 5;
    for (int i = 0; i < 256; i++) {
        x[i] = (float)rng_normal(&seed);
        w[i] = i % 2 ? 1.0f : 0.0f;
        if (i % 2 == 0) x[i] *= 100; /* huge outliers, but unimportant */
    }
    static const uint32_t types[] = {G2_TYPE_Q4_0, G2_TYPE_Q4_K, G2_TYPE_Q6_K, G2_TYPE_IQ4_NL};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        round_trip(types[t], x, y, 1, 256, NULL);
        double plain = weighted_error(x, y, w, 1, 256);
        round_trip(types[t], x, y, 1, 256, w);
        double weighted = weighted_error(x, y, w, 1, 256);
        cr_expect_lt(weighted, plain * 0.5, "%s: %g vs %g", type_name(types[t]), weighted, plain);
    }
}

/* ==== (4) edge blocks ====================================================================== */

static void fill(float *x, int n, float v) {
    for (int i = 0; i < n; i++) x[i] = v;
}

Test(quant_blocks, all_zero_blocks_decode_to_exact_zeros) {
    float x[512], y[512], w[512];
    fill(x, 512, 0.0f);
    fill(w, 512, 1.0f);
    for (size_t t = 0; t < N_BLOCK_TYPES; t++) {
        for (int imp = 0; imp < 2; imp++) {
            fill(y, 512, NAN);
            round_trip(block_types[t], x, y, 1, 512, imp ? w : NULL);
            for (int i = 0; i < 512; i++)
                cr_assert_eq(y[i], 0.0f, "%s%s: element %d is %g", type_name(block_types[t]),
                             imp ? " (importance)" : "", i, (double)y[i]);
        }
    }
}

/* A block of one repeated value is reproduced up to the fp16 rounding of its scale. */
Test(quant_blocks, one_repeated_value_is_reproduced) {
    static const float values[] = {1.0f, -1.0f, 0.3f, -7.77f, 1234.5f, -2.5e-3f};
    float x[256], y[256];
    for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
        fill(x, 256, values[v]);
        for (size_t t = 0; t < N_BLOCK_TYPES; t++) {
            round_trip(block_types[t], x, y, 1, 256, NULL);
            for (int i = 0; i < 256; i++)
                cr_assert_leq(fabsf(y[i] - x[i]), fabsf(x[i]) * 1e-3f, "%s, value %g: element %d decodes to %g",
                              type_name(block_types[t]), (double)values[v], i, (double)y[i]);
        }
    }
}

/* Every value at the block's largest magnitude, signs mixed: the worst case for the types
 * whose level sets are lopsided (Q4_0: -8..7, IQ4_NL: -127..113, Q6_K: -32..31). */
Test(quant_blocks, all_max_magnitude_blocks_stay_close) {
    static const float tolerance[N_BLOCK_TYPES] = {0.126f, 1e-3f, 1e-3f, 1e-3f, 1e-3f, 0.02f, 1e-6f, 0.07f};
    float x[256], y[256];
    const float m = 3.0f;
    for (int pattern = 0; pattern < 3; pattern++) {
        for (int i = 0; i < 256; i++) x[i] = pattern == 0 ? m : pattern == 1 ? -m : (i % 3 ? m : -m);
        for (size_t t = 0; t < N_BLOCK_TYPES; t++) {
            round_trip(block_types[t], x, y, 1, 256, NULL);
            for (int i = 0; i < 256; i++)
                cr_assert_leq(fabsf(y[i] - x[i]), m * tolerance[t], "%s, pattern %d: element %d decodes to %g",
                              type_name(block_types[t]), pattern, i, (double)y[i]);
        }
    }
}

/* Values beyond what an fp16 scale can reach saturate; nothing decodes to inf or NaN. */
Test(quant_blocks, huge_values_decode_finite) {
    static const float scales[] = {1e6f, 1e10f, 1e30f, FLT_MAX};
    float x[256], y[256], w[256];
    fill(w, 256, 1.0f);
    uint64_t seed = 17;
    for (size_t s = 0; s < sizeof scales / sizeof scales[0]; s++) {
        for (int i = 0; i < 256; i++) x[i] = (float)(rng_normal(&seed) / 4.0) * scales[s];
        x[3] = scales[s], x[100] = -scales[s];
        for (size_t t = 0; t < N_BLOCK_TYPES; t++) {
            for (int imp = 0; imp < 2; imp++) {
                round_trip(block_types[t], x, y, 1, 256, imp ? w : NULL);
                for (int i = 0; i < 256; i++)
                    cr_assert(isfinite(y[i]), "%s, scale %g: element %d decodes to %g", type_name(block_types[t]),
                              (double)scales[s], i, (double)y[i]);
            }
        }
    }
}

Test(quant_blocks, tiny_values_decode_finite_and_small) {
    float x[256], y[256];
    uint64_t seed = 23;
    for (int i = 0; i < 256; i++) x[i] = (float)rng_normal(&seed) * 1e-30f;
    for (size_t t = 0; t < N_BLOCK_TYPES; t++) {
        round_trip(block_types[t], x, y, 1, 256, NULL);
        for (int i = 0; i < 256; i++)
            cr_assert(isfinite(y[i]) && fabsf(y[i]) < 1e-20f, "%s: element %d decodes to %g", type_name(block_types[t]),
                      i, (double)y[i]);
    }
}

/* NaN is not supported as input, but it must not crash (or trip the sanitizers). */
Test(quant_blocks, nan_inputs_do_not_crash) {
    float x[256], y[256], w[256];
    fill(w, 256, 1.0f);
    uint64_t seed = 29;
    for (int i = 0; i < 256; i++) x[i] = (float)rng_normal(&seed);
    x[0] = NAN, x[77] = NAN, x[255] = -NAN;
    for (size_t t = 0; t < N_BLOCK_TYPES; t++) {
        round_trip(block_types[t], x, y, 1, 256, NULL);
        round_trip(block_types[t], x, y, 1, 256, w);
    }
    fill(x, 256, NAN);
    for (size_t t = 0; t < N_BLOCK_TYPES; t++) round_trip(block_types[t], x, y, 1, 256, NULL);
}

/* ==== (5) the table's public functions ===================================================== */

Test(quant_blocks, type_lookup_by_name_is_case_insensitive_and_rejects_unknown_names) {
    cr_assert_eq(g2_type_by_name("q4_K")->id, G2_TYPE_Q4_K);
    cr_assert_eq(g2_type_by_name("Q4_K")->id, G2_TYPE_Q4_K);
    cr_assert_eq(g2_type_by_name("q4_k")->id, G2_TYPE_Q4_K);
    cr_assert_eq(g2_type_by_name("IQ4_NL")->id, G2_TYPE_IQ4_NL);
    cr_assert_eq(g2_type_by_name("q8_0")->id, G2_TYPE_Q8_0);
    cr_assert_eq(g2_type_by_name("bf16")->id, G2_TYPE_BF16);
    cr_assert_null(g2_type_by_name("q4_2"));
    cr_assert_null(g2_type_by_name(""));
    cr_assert_null(g2_type_by_name("q4_K "));
    cr_assert_null(g2_type_get(4)); /* a hole in ggml's ids */
    cr_assert_null(g2_type_get(G2_TYPE_ID_LIMIT));
    cr_assert_null(g2_type_get(UINT32_MAX));
    for (size_t t = 0; t < N_BLOCK_TYPES; t++)
        cr_assert_eq(g2_type_by_name(type_name(block_types[t]))->id, block_types[t]);
}

Test(quant_blocks, row_size_is_blocks_times_bytes_and_zero_when_blocks_do_not_fit) {
    cr_assert_eq(g2_row_size(G2_TYPE_Q4_K, 4096), 16 * 144);
    cr_assert_eq(g2_row_size(G2_TYPE_Q6_K, 8192), 32 * 210);
    cr_assert_eq(g2_row_size(G2_TYPE_Q8_K, 256), 292);
    cr_assert_eq(g2_row_size(G2_TYPE_Q4_0, 64), 36);
    cr_assert_eq(g2_row_size(G2_TYPE_IQ4_NL, 32), 18);
    cr_assert_eq(g2_row_size(G2_TYPE_Q4_K, 0), 0);
    cr_assert_eq(g2_row_size(G2_TYPE_Q4_K, 4096 + 32), 0); /* not a multiple of 256 */
    cr_assert_eq(g2_row_size(G2_TYPE_Q8_0, 33), 0);
    cr_assert_eq(g2_row_size(G2_TYPE_Q8_0, -32), 0);
    cr_assert_eq(g2_row_size(4, 32), 0);
    cr_assert_eq(g2_row_size(1000, 32), 0);
}

Test(quant_blocks, quantize_rows_packs_independent_rows_and_rejects_what_does_not_fit) {
    const int64_t rows = 3, cols = 512;
    float *x = random_data(rows * cols, DIST_NORMAL, 41), w[512];
    uint64_t seed = 43;
    for (int i = 0; i < 512; i++) w[i] = (float)rng_uniform(&seed);
    for (size_t t = 0; t < N_BLOCK_TYPES; t++) {
        uint32_t type = block_types[t];
        size_t row = g2_row_size(type, cols);
        uint8_t all[3 * 2 * 292], one[2 * 292];
        cr_assert_eq(g2_quantize_rows(type, x, all, rows, cols, w), rows * row);
        for (int64_t r = 0; r < rows; r++) { /* same bytes as each row alone, sharing the weights */
            cr_assert_eq(g2_quantize_rows(type, x + r * cols, one, 1, cols, w), row);
            cr_assert_eq(memcmp(one, all + r * row, row), 0, "%s row %ld", type_name(type), (long)r);
        }
        cr_assert_eq(g2_quantize_rows(type, x, all, 1, cols - 16, NULL), 0, "%s: partial block", type_name(type));
        float y[512];
        cr_assert_eq(g2_dequantize(type, all, y, cols - 16), -1, "%s: partial block", type_name(type));
        cr_assert_eq(g2_dequantize(type, all, y, -256), -1);
        cr_assert_eq(g2_dequantize(type, all, y, cols), 0);
    }
    uint8_t buf[1024];
    float y[256];
    cr_assert_eq(g2_quantize_rows(4, x, buf, 1, 256, NULL), 0, "unknown type");
    cr_assert_eq(g2_dequantize(4, buf, y, 256), -1, "unknown type");
    cr_assert_eq(g2_quantize_rows(G2_TYPE_Q2_K, x, buf, 1, 256, NULL), 0, "known type without an encoder");
    cr_assert_eq(g2_dequantize(G2_TYPE_Q2_K, buf, y, 256), -1, "known type without a decoder");
    free(x);
}

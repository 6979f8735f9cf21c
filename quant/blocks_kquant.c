/* K-quants: super-blocks of 256 whose sub-blocks carry their own small integer scales, which
 * are themselves scaled by fp16 super-block scales.
 *   Q4_K / Q5_K: 8 sub-blocks of 32, y = d*sc[j]*q - dmin*m[j], q 4 or 5 bits, sc and m 6 bits.
 *   Q6_K: 16 sub-blocks of 16, y = d*sc[j]*(q - 32), q 6 bits, sc int8.
 * Encoding runs in two stages: fit each sub-block's real scale (and min) as if it were free,
 * then quantize those to the 6- or 8-bit grid set by the super-block scale and let each
 * sub-block pick the best neighbouring grid point, judged by its actual reconstruction. */
#include "blocks.h"

#define SUB_Q45 32 /* weights per Q4_K / Q5_K sub-block */
#define SUB_Q6 16  /* weights per Q6_K sub-block */

static const g2_levels q6_levels = {.first = -32, .count = 64, .codebook = NULL};

static inline const float *weights_at(const float *importance, int64_t offset) {
    return importance ? importance + offset : NULL;
}

/* ---- the 6-bit scale/min packing of Q4_K and Q5_K ----------------------------------------- */
/* scales[0..3]: sc[0..3] in the low 6 bits, the top 2 bits of sc[4..7] above them;
 * scales[4..7]: m[0..3] likewise with the top 2 bits of m[4..7];
 * scales[8..11]: the low 4 bits of sc[4..7] (low nibble) and of m[4..7] (high nibble). */

static void unpack_scale_min(const uint8_t s[K_SCALE_SIZE], int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

static void pack_scale_min(const uint8_t sc[8], const uint8_t m[8], uint8_t s[K_SCALE_SIZE]) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)(m[j] | ((m[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
    }
}

/* Below fp16's normal range (2^-14) a scale keeps only a few significant bits, and its
 * rounding can cost more than the sub-block quantization itself: there the encoders also try
 * the fp16 values a few steps away. half_neighbour gives the fp16 value k steps of magnitude
 * from d, with the sign of `sign` (d itself may have rounded to 0); false when that leaves
 * the finite, non-zero range. */
#define HALF_MIN_NORMAL 6.103515625e-05f
#define SUBNORMAL_STEPS 3
static bool half_neighbour(float d, float sign, int k, float *out) {
    int magnitude = (g2_scale_to_half(d) & 0x7fff) + k;
    if (magnitude <= 0 || magnitude > 0x7bff) return false;
    *out = g2_half_to_f32((g2_half)((signbit(sign) ? 0x8000 : 0) | magnitude));
    return true;
}

/* Stage 2 of Q4_K / Q5_K for given super-block scales: each sub-block's 6-bit sc[j] and m[j]
 * and, when q is not NULL, its quants. Returns the super-block's weighted error. */
static double grid_scale_min(const float *x, const float *w, int nmax, const float scale[8], const float min[8],
                             float d, float dmin, uint8_t sc[8], uint8_t m[8], uint8_t *q) {
    double total = 0;
    for (int j = 0; j < 8; j++) {
        const float *xj = x + j * SUB_Q45, *wj = weights_at(w, j * SUB_Q45);
        int sc0 = d > 0 ? g2_round_clamp(scale[j] / d, 0, 63) : 0;
        int m0 = dmin > 0 ? g2_round_clamp(min[j] / dmin, 0, 63) : 0;
        /* Rounding scale and min separately is not jointly optimal: try the neighbours. */
        double best_err = INFINITY;
        int best_sc = sc0, best_m = m0;
        for (int a = sc0 - 1; a <= sc0 + 1; a++) {
            if (a < 0 || a > 63) continue;
            for (int c = m0 - 1; c <= m0 + 1; c++) {
                if (c < 0 || c > 63) continue;
                double err = g2_offset_error(xj, wj, SUB_Q45, nmax, d * (float)a, -(dmin * (float)c), NULL);
                if (err < best_err) {
                    best_err = err;
                    best_sc = a;
                    best_m = c;
                }
            }
        }
        sc[j] = (uint8_t)best_sc;
        m[j] = (uint8_t)best_m;
        total += best_err;
        if (q) g2_offset_error(xj, wj, SUB_Q45, nmax, d * (float)best_sc, -(dmin * (float)best_m), q + j * SUB_Q45);
    }
    return total;
}

/* Fits one super-block of Q4_K (nmax 15) or Q5_K (nmax 31): the fp16 d and dmin, the 6-bit
 * sc[j] and m[j], and the quants q[256] in element order. */
static void fit_superblock_scale_min(const float *x, const float *w, int nmax, g2_half *d_out, g2_half *dmin_out,
                                     uint8_t sc[8], uint8_t m[8], uint8_t q[QK_K]) {
    /* Stage 1: each sub-block's real scale and min, as if they were stored exactly. */
    float scale[8], min[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float b;
        g2_fit_scale_offset(x + j * SUB_Q45, weights_at(w, j * SUB_Q45), SUB_Q45, nmax, true, &scale[j], &b);
        min[j] = -b;
        if (scale[j] > max_scale) max_scale = scale[j];
        if (min[j] > max_min) max_min = min[j];
    }
    /* Stage 2: the largest sub-block scale (and min) gets the full 6-bit range. */
    float d = g2_scale_rounded(max_scale / 63.0f), dmin = g2_scale_rounded(max_min / 63.0f);
    if (max_scale > 0 && d < HALF_MIN_NORMAL) {
        double best = grid_scale_min(x, w, nmax, scale, min, d, dmin, sc, m, NULL);
        float d0 = d, cand;
        for (int k = -SUBNORMAL_STEPS; k <= SUBNORMAL_STEPS; k++) {
            if (k == 0 || !half_neighbour(d0, 1.0f, k, &cand)) continue;
            double err = grid_scale_min(x, w, nmax, scale, min, cand, dmin, sc, m, NULL);
            if (err < best) {
                best = err;
                d = cand;
            }
        }
    }
    if (max_min > 0 && dmin < HALF_MIN_NORMAL) {
        double best = grid_scale_min(x, w, nmax, scale, min, d, dmin, sc, m, NULL);
        float dmin0 = dmin, cand;
        for (int k = -SUBNORMAL_STEPS; k <= SUBNORMAL_STEPS; k++) {
            if (k == 0 || !half_neighbour(dmin0, 1.0f, k, &cand)) continue;
            double err = grid_scale_min(x, w, nmax, scale, min, d, cand, sc, m, NULL);
            if (err < best) {
                best = err;
                dmin = cand;
            }
        }
    }
    *d_out = g2_scale_to_half(d);
    *dmin_out = g2_scale_to_half(dmin);
    grid_scale_min(x, w, nmax, scale, min, d, dmin, sc, m, q);
}

/* ---- Q4_K ----------------------------------------------------------------------------------- */
/* qs: each 64-weight chunk c is 32 bytes; low nibbles are sub-block 2c, high nibbles 2c+1. */

void g2_q4_k_to_float(const void *src, float *dst, int64_t n) {
    const block_q4_k *blocks = src;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const block_q4_k *x = &blocks[b];
        float d = g2_half_to_f32(x->d), dmin = g2_half_to_f32(x->dmin);
        float *y = dst + b * QK_K;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            unpack_scale_min(x->scales, j, &sc, &m);
            float dj = d * (float)sc, mj = dmin * (float)m;
            const uint8_t *qs = x->qs + (j / 2) * 32;
            int shift = (j & 1) * 4;
            for (int l = 0; l < SUB_Q45; l++) y[j * SUB_Q45 + l] = dj * (float)((qs[l] >> shift) & 15) - mj;
        }
    }
}

void g2_q4_k_from_float(const float *src, void *dst, int64_t n, const float *importance) {
    block_q4_k *blocks = dst;
    for (int64_t b = 0; b < n / QK_K; b++) {
        block_q4_k *out = &blocks[b];
        uint8_t sc[8], m[8], q[QK_K];
        fit_superblock_scale_min(src + b * QK_K, weights_at(importance, b * QK_K), 15, &out->d, &out->dmin, sc, m, q);
        pack_scale_min(sc, m, out->scales);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                out->qs[c * 32 + l] = (uint8_t)(q[c * 64 + l] | (q[c * 64 + 32 + l] << 4));
    }
}

/* ---- Q5_K ----------------------------------------------------------------------------------- */
/* qs: the low 4 bits, laid out as in Q4_K; qh[l] bit j: the 5th bit of element l of sub-block j. */

void g2_q5_k_to_float(const void *src, float *dst, int64_t n) {
    const block_q5_k *blocks = src;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const block_q5_k *x = &blocks[b];
        float d = g2_half_to_f32(x->d), dmin = g2_half_to_f32(x->dmin);
        float *y = dst + b * QK_K;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            unpack_scale_min(x->scales, j, &sc, &m);
            float dj = d * (float)sc, mj = dmin * (float)m;
            const uint8_t *qs = x->qs + (j / 2) * 32;
            int shift = (j & 1) * 4;
            for (int l = 0; l < SUB_Q45; l++) {
                int q = ((qs[l] >> shift) & 15) | (((x->qh[l] >> j) & 1) << 4);
                y[j * SUB_Q45 + l] = dj * (float)q - mj;
            }
        }
    }
}

void g2_q5_k_from_float(const float *src, void *dst, int64_t n, const float *importance) {
    block_q5_k *blocks = dst;
    for (int64_t b = 0; b < n / QK_K; b++) {
        block_q5_k *out = &blocks[b];
        uint8_t sc[8], m[8], q[QK_K];
        fit_superblock_scale_min(src + b * QK_K, weights_at(importance, b * QK_K), 31, &out->d, &out->dmin, sc, m, q);
        pack_scale_min(sc, m, out->scales);
        memset(out->qh, 0, sizeof out->qh);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                out->qs[c * 32 + l] = (uint8_t)((q[c * 64 + l] & 15) | ((q[c * 64 + 32 + l] & 15) << 4));
        for (int j = 0; j < 8; j++)
            for (int l = 0; l < SUB_Q45; l++) out->qh[l] |= (uint8_t)((q[j * SUB_Q45 + l] >> 4) << j);
    }
}

/* ---- Q6_K ----------------------------------------------------------------------------------- */
/* Two halves of 128 weights; in half h, for l < 32 and quarter k = 0..3, element
 * 128h + 32k + l keeps its low 4 bits in ql[64h + l + 32*(k&1)] (low nibble for k < 2, high
 * for k >= 2) and its top 2 bits in qh[32h + l] at bit 2k. Scale of element e: scales[e/16]. */

void g2_q6_k_to_float(const void *src, float *dst, int64_t n) {
    const block_q6_k *blocks = src;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const block_q6_k *x = &blocks[b];
        float d = g2_half_to_f32(x->d);
        float *y = dst + b * QK_K;
        for (int e = 0; e < QK_K; e++) {
            int h = e / 128, k = (e % 128) / 32, l = e % 32;
            int low = (x->ql[64 * h + l + 32 * (k & 1)] >> (k < 2 ? 0 : 4)) & 15;
            int high = (x->qh[32 * h + l] >> (2 * k)) & 3;
            y[e] = d * (float)x->scales[e / 16] * (float)((low | (high << 4)) - 32);
        }
    }
}

/* Stage 2 of Q6_K for a given d: each sub-block's int8 scale and, when q is not NULL, its
 * quants. Returns the super-block's weighted error. */
static double grid_scale_q6(const float *x, const float *w, const float scale[QK_K / SUB_Q6], float d,
                            int8_t sc[QK_K / SUB_Q6], uint8_t *q) {
    double total = 0;
    for (int j = 0; j < QK_K / SUB_Q6; j++) {
        const float *xj = x + j * SUB_Q6, *wj = weights_at(w, j * SUB_Q6);
        int c0 = d != 0 ? g2_round_clamp(scale[j] / d, -128, 127) : 0;
        double best_err = INFINITY;
        int best_c = c0;
        for (int c = c0 - 1; c <= c0 + 1; c++) { /* the nearest grid point is not always best */
            if (c < -128 || c > 127) continue;
            double err = g2_levels_error(xj, wj, SUB_Q6, &q6_levels, d * (float)c, NULL);
            if (err < best_err) {
                best_err = err;
                best_c = c;
            }
        }
        sc[j] = (int8_t)best_c;
        total += best_err;
        if (q) g2_levels_error(xj, wj, SUB_Q6, &q6_levels, d * (float)best_c, q + j * SUB_Q6);
    }
    return total;
}

void g2_q6_k_from_float(const float *src, void *dst, int64_t n, const float *importance) {
    block_q6_k *blocks = dst;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float *x = src + b * QK_K;
        const float *w = weights_at(importance, b * QK_K);
        block_q6_k *out = &blocks[b];
        uint8_t q[QK_K]; /* level index = q + 32, the stored 6-bit value */

        /* Stage 1: each sub-block's own signed scale. */
        float scale[QK_K / SUB_Q6], max_scale = 0;
        for (int j = 0; j < QK_K / SUB_Q6; j++) {
            scale[j] = g2_fit_scale(x + j * SUB_Q6, weights_at(w, j * SUB_Q6), SUB_Q6, &q6_levels, false, q + j * SUB_Q6);
            if (fabsf(scale[j]) > fabsf(max_scale)) max_scale = scale[j];
        }
        /* Stage 2: int8 scales on the grid d; like the quants, the largest goes to -128. */
        float d = g2_scale_rounded(max_scale / -128.0f);
        if (max_scale != 0 && fabsf(d) < HALF_MIN_NORMAL) {
            double best = grid_scale_q6(x, w, scale, d, out->scales, NULL);
            float d0 = d, cand;
            for (int k = -SUBNORMAL_STEPS; k <= SUBNORMAL_STEPS; k++) {
                if (k == 0 || !half_neighbour(d0, -max_scale, k, &cand)) continue;
                double err = grid_scale_q6(x, w, scale, cand, out->scales, NULL);
                if (err < best) {
                    best = err;
                    d = cand;
                }
            }
        }
        out->d = g2_scale_to_half(d);
        grid_scale_q6(x, w, scale, d, out->scales, q);

        memset(out->ql, 0, sizeof out->ql);
        memset(out->qh, 0, sizeof out->qh);
        for (int e = 0; e < QK_K; e++) {
            int h = e / 128, k = (e % 128) / 32, l = e % 32;
            out->ql[64 * h + l + 32 * (k & 1)] |= (uint8_t)((q[e] & 15) << (k < 2 ? 0 : 4));
            out->qh[32 * h + l] |= (uint8_t)((q[e] >> 4) << (2 * k));
        }
    }
}

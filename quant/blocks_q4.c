/* 4-bit blocks of 32 with an fp16 scale: Q4_0 (y = d*(q-8)), Q4_1 (y = d*q + m) and IQ4_NL
 * (y = d*T[q], a non-linear codebook denser near zero, where most weights are). All three
 * pack byte j = element j in the low nibble, element j+16 in the high nibble. */
#include "blocks.h"

static const g2_levels q4_0_levels = {.first = -8, .count = 16, .codebook = NULL};
static const g2_levels iq4_nl_levels = {.first = 0, .count = 16, .codebook = g2_iq4nl_values};

static void pack_nibbles(const uint8_t q[32], uint8_t qs[16]) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(q[j] | (q[j + 16] << 4));
}

static inline const float *block_weights(const float *importance, int64_t b) {
    return importance ? importance + b * 32 : NULL;
}

/* ---- Q4_0 ----------------------------------------------------------------------------------- */

void g2_q4_0_to_float(const void *src, float *dst, int64_t n) {
    const block_q4_0 *blocks = src;
    for (int64_t b = 0; b < n / QK4_0; b++) {
        float d = g2_half_to_f32(blocks[b].d);
        float *y = dst + b * QK4_0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = (float)((blocks[b].qs[j] & 15) - 8) * d;
            y[j + 16] = (float)((blocks[b].qs[j] >> 4) - 8) * d;
        }
    }
}

void g2_q4_0_from_float(const float *src, void *dst, int64_t n, const float *importance) {
    block_q4_0 *blocks = dst;
    for (int64_t b = 0; b < n / QK4_0; b++) {
        const float *x = src + b * QK4_0;
        uint8_t q[QK4_0];
        float d;
        if (importance) {
            d = g2_fit_scale(x, block_weights(importance, b), QK4_0, &q4_0_levels, true, q);
        } else {
            /* ggml's rule: the value of largest magnitude goes to level -8 (the longer side of
             * -8..7), whatever its sign; d is signed. */
            float amax = 0, max = 0;
            for (int i = 0; i < QK4_0; i++) {
                if (fabsf(x[i]) > amax) {
                    amax = fabsf(x[i]);
                    max = x[i];
                }
            }
            d = g2_scale_rounded(max / -8.0f);
            g2_levels_error(x, NULL, QK4_0, &q4_0_levels, d, q);
        }
        blocks[b].d = g2_scale_to_half(d);
        pack_nibbles(q, blocks[b].qs); /* index = level + 8 = the stored nibble */
    }
}

/* ---- Q4_1 ----------------------------------------------------------------------------------- */

void g2_q4_1_to_float(const void *src, float *dst, int64_t n) {
    const block_q4_1 *blocks = src;
    for (int64_t b = 0; b < n / QK4_1; b++) {
        float d = g2_half_to_f32(blocks[b].d), m = g2_half_to_f32(blocks[b].m);
        float *y = dst + b * QK4_1;
        for (int j = 0; j < QK4_1 / 2; j++) {
            y[j] = (float)(blocks[b].qs[j] & 15) * d + m;
            y[j + 16] = (float)(blocks[b].qs[j] >> 4) * d + m;
        }
    }
}

void g2_q4_1_from_float(const float *src, void *dst, int64_t n, const float *importance) {
    block_q4_1 *blocks = dst;
    for (int64_t b = 0; b < n / QK4_1; b++) {
        const float *x = src + b * QK4_1;
        const float *w = block_weights(importance, b);
        float s, m;
        if (importance) {
            g2_fit_scale_offset(x, w, QK4_1, 15, false, &s, &m);
        } else {
            /* ggml's rule: min and max map to 0 and 15. */
            float xmin = x[0], xmax = x[0];
            for (int i = 1; i < QK4_1; i++) {
                if (x[i] < xmin) xmin = x[i];
                if (x[i] > xmax) xmax = x[i];
            }
            s = (xmax - xmin) / 15.0f;
            m = xmin;
        }
        float d = g2_scale_rounded(s), mr = g2_scale_rounded(m);
        uint8_t q[QK4_1];
        g2_offset_error(x, w, QK4_1, 15, d, mr, q);
        blocks[b].d = g2_scale_to_half(d);
        blocks[b].m = g2_scale_to_half(mr);
        pack_nibbles(q, blocks[b].qs);
    }
}

/* ---- IQ4_NL --------------------------------------------------------------------------------- */

void g2_iq4_nl_to_float(const void *src, float *dst, int64_t n) {
    const block_iq4_nl *blocks = src;
    for (int64_t b = 0; b < n / QK4_0; b++) {
        float d = g2_half_to_f32(blocks[b].d);
        float *y = dst + b * QK4_0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = d * (float)g2_iq4nl_values[blocks[b].qs[j] & 15];
            y[j + 16] = d * (float)g2_iq4nl_values[blocks[b].qs[j] >> 4];
        }
    }
}

/* The codebook is not evenly spaced, so no closed-form rule is right: always search. */
void g2_iq4_nl_from_float(const float *src, void *dst, int64_t n, const float *importance) {
    block_iq4_nl *blocks = dst;
    for (int64_t b = 0; b < n / QK4_0; b++) {
        uint8_t q[QK4_0];
        float d = g2_fit_scale(src + b * QK4_0, block_weights(importance, b), QK4_0, &iq4_nl_levels, true, q);
        blocks[b].d = g2_scale_to_half(d);
        pack_nibbles(q, blocks[b].qs);
    }
}

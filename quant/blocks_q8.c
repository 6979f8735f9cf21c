/* 8-bit blocks. Q8_0 (weights): 32 int8 quants and an fp16 scale. Q8_K (activations, the dot
 * partner of the K-quants): 256 int8 quants, an f32 scale, and the sum of each 16 quants so
 * that a K-quant's min term costs one multiply per 16 weights. */
#include "blocks.h"

/* -128 is left out on purpose: kernels that take |q| with sign tricks cannot represent it. */
static const g2_levels q8_levels = {.first = -127, .count = 255, .codebook = NULL};

void g2_q8_0_to_float(const void *src, float *dst, int64_t n) {
    const block_q8_0 *blocks = src;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        float d = g2_half_to_f32(blocks[b].d);
        for (int i = 0; i < QK8_0; i++) dst[b * QK8_0 + i] = (float)blocks[b].qs[i] * d;
    }
}

void g2_q8_0_from_float(const float *src, void *dst, int64_t n, const float *importance) {
    block_q8_0 *blocks = dst;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        const float *x = src + b * QK8_0;
        uint8_t q[QK8_0];
        float d;
        if (importance) {
            d = g2_fit_scale(x, importance + b * QK8_0, QK8_0, &q8_levels, true, q);
        } else {
            /* The classic rule: the largest magnitude maps to +-127. */
            float amax = 0;
            for (int i = 0; i < QK8_0; i++)
                if (fabsf(x[i]) > amax) amax = fabsf(x[i]);
            d = g2_scale_rounded(amax / 127.0f);
            g2_levels_error(x, NULL, QK8_0, &q8_levels, d, q);
        }
        blocks[b].d = g2_scale_to_half(d);
        for (int i = 0; i < QK8_0; i++) blocks[b].qs[i] = (int8_t)g2_level_value(&q8_levels, q[i]);
    }
}

void g2_q8_k_to_float(const void *src, float *dst, int64_t n) {
    const block_q8_k *blocks = src;
    for (int64_t b = 0; b < n / QK_K; b++)
        for (int i = 0; i < QK_K; i++) dst[b * QK_K + i] = blocks[b].d * (float)blocks[b].qs[i];
}

/* Activations are quantized on the fly and have no importance: plain max-abs scaling. */
void g2_q8_k_from_float(const float *src, void *dst, int64_t n, const float *importance) {
    (void)importance;
    block_q8_k *blocks = dst;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float *x = src + b * QK_K;
        block_q8_k *out = &blocks[b];
        float amax = 0;
        for (int i = 0; i < QK_K; i++)
            if (fabsf(x[i]) > amax) amax = fabsf(x[i]);
        float d = amax / 127.0f; /* f32: no rounding to account for */
        while (isinf(d * 127.0f)) d = nextafterf(d, 0); /* near FLT_MAX, keep 127*d finite */
        float id = d > 0 ? 1.0f / d : 0.0f;
        out->d = d;
        for (int i = 0; i < QK_K; i++) out->qs[i] = (int8_t)g2_round_clamp(x[i] * id, -127, 127);
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int i = 0; i < 16; i++) sum += out->qs[g * 16 + i];
            out->bsums[g] = (int16_t)sum;
        }
    }
}

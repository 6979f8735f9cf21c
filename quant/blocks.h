/* Internal to quant/: the scalar reference encoders and decoders of the block types (the
 * type table in types.c points at them) and the scale searches they share. Not a public
 * header: everything outside quant/ goes through the table in quant.h. */
#ifndef GROK2_QUANT_BLOCKS_H
#define GROK2_QUANT_BLOCKS_H

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "quant.h"

/* ---- per-type decoders / encoders (the table's to_float / from_float) --------------------- */
/* n is a multiple of the type's block size; importance is NULL or n per-column weights. */

void g2_q8_0_to_float(const void *src, float *dst, int64_t n);
void g2_q8_0_from_float(const float *src, void *dst, int64_t n, const float *importance);
void g2_q8_k_to_float(const void *src, float *dst, int64_t n);
void g2_q8_k_from_float(const float *src, void *dst, int64_t n, const float *importance);

void g2_q4_0_to_float(const void *src, float *dst, int64_t n);
void g2_q4_0_from_float(const float *src, void *dst, int64_t n, const float *importance);
void g2_q4_1_to_float(const void *src, float *dst, int64_t n);
void g2_q4_1_from_float(const float *src, void *dst, int64_t n, const float *importance);
void g2_iq4_nl_to_float(const void *src, float *dst, int64_t n);
void g2_iq4_nl_from_float(const float *src, void *dst, int64_t n, const float *importance);

void g2_q4_k_to_float(const void *src, float *dst, int64_t n);
void g2_q4_k_from_float(const float *src, void *dst, int64_t n, const float *importance);
void g2_q5_k_to_float(const void *src, float *dst, int64_t n);
void g2_q5_k_from_float(const float *src, void *dst, int64_t n, const float *importance);
void g2_q6_k_to_float(const void *src, float *dst, int64_t n);
void g2_q6_k_from_float(const float *src, void *dst, int64_t n, const float *importance);

/* ---- helpers shared by the encoders ------------------------------------------------------- */

/* v rounded to the nearest integer (ties to even) and clamped to [lo, hi], |lo|, |hi| < 2^22.
 * Clamps before converting, so huge values, infinities and NaN (-> lo) never reach an
 * undefined cast. This sits in every encoder's inner loop, and lrintf is a libm call on
 * baseline x86-64: adding 1.5 * 2^23 instead leaves the rounded integer in the low mantissa
 * bits (exact while |v| < 2^22, in float arithmetic, the default rounding mode). */
static inline int g2_round_clamp(float v, int lo, int hi) {
    if (!(v > (float)lo)) return lo;
    if (v >= (float)hi) return hi;
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
    float t = v + 12582912.0f;
    int32_t bits;
    memcpy(&bits, &t, sizeof bits);
    return (bits & 0x7fffff) - 0x400000;
#else
    return (int)lrintf(v);
#endif
}

/* A scale as stored in a block (fp16). Clamped to the largest finite half so that huge inputs
 * saturate instead of decoding to inf; NaN and -0 become +0. */
static inline g2_half g2_scale_to_half(float d) {
    if (d != d || d == 0) return 0;
    if (d > 65504.0f) d = 65504.0f;
    if (d < -65504.0f) d = -65504.0f;
    return g2_f32_to_half(d);
}
/* The value a scale takes after the round trip through fp16: encoders quantize with this so
 * that what they optimised is exactly what the decoder will compute. */
static inline float g2_scale_rounded(float d) { return g2_half_to_f32(g2_scale_to_half(d)); }

/* The levels y = d * level a symmetric block can reproduce: every integer in [first,
 * first + count - 1] (codebook NULL: Q4_0, Q6_K, Q8_0), or a sorted codebook (IQ4_NL).
 * Encoders store the index 0..count-1 of the chosen level. */
typedef struct {
    int first;
    int count;
    const int8_t *codebook;
} g2_levels;

static inline int g2_level_value(const g2_levels *lv, int index) {
    return lv->codebook ? lv->codebook[index] : lv->first + index;
}
/* Index of the level nearest to v (v already divided by the scale); ties and NaN go low. A
 * codebook is small (16 for IQ4_NL): counting the midpoints below v beats a search. */
static inline int g2_nearest_level(const g2_levels *lv, float v) {
    if (!lv->codebook) return g2_round_clamp(v, lv->first, lv->first + lv->count - 1) - lv->first;
    float twice = 2 * v; /* compare with c[i] + c[i+1], the doubled midpoints: exact integers */
    int index = 0;
    for (int i = 0; i + 1 < lv->count; i++) index += twice > (float)(lv->codebook[i] + lv->codebook[i + 1]);
    return index;
}

/* Chooses the scale d of y = d * level[q] for n values, minimising sum w*(x - y)^2 (w NULL:
 * all 1), and writes the level indices to q. half_scale: d is stored as fp16, so every
 * candidate is judged after that rounding and the returned d is already rounded. Returns 0
 * (q = the level nearest zero) when every x is 0. */
float g2_fit_scale(const float *x, const float *w, int n, const g2_levels *lv, bool half_scale, uint8_t *q);

/* sum w*(x - d*level[q])^2 with each q the level nearest to x/d (all the level nearest 0 when
 * d is 0); writes q when not NULL. */
double g2_levels_error(const float *x, const float *w, int n, const g2_levels *lv, float d, uint8_t *q);

/* Chooses s >= 0 and offset b of y = s*q + b, q in 0..nmax, minimising sum w*(x - y)^2 (w
 * NULL: all 1). offset_nonpositive: the K-quants store b = -min with min >= 0, so b is kept
 * <= 0. Does not write q: the caller re-quantizes once the scales are final. */
void g2_fit_scale_offset(const float *x, const float *w, int n, int nmax, bool offset_nonpositive, float *s,
                         float *b);

/* sum w*(x - (s*q + b))^2 with each q re-chosen as the nearest in 0..nmax; writes q when not
 * NULL. s == 0 puts every q at 0. */
double g2_offset_error(const float *x, const float *w, int n, int nmax, float s, float b, uint8_t *q);

#endif

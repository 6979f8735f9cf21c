/* Private to simd/: the vector-math algorithms for one float (the scalar reference, and the
 * tails of the SIMD loops). Constants and the reasoning are in simd_internal.h. */
#ifndef GROK2_SIMD_VECMATH_ONE_H
#define GROK2_SIMD_VECMATH_ONE_H

#include "simd_internal.h"

/* 2^k for -126 <= k <= 127, from the exponent field. */
SIMD_ALWAYS_INLINE float simd_pow2i(int k) { return g2_bits_f32((uint32_t)(k + 127) << 23); }

/* Nearest integer (ties to even) of |v| < 2^22, in float arithmetic (no libm call). */
SIMD_ALWAYS_INLINE float simd_round_float(float v) { return (v + 12582912.0f) - 12582912.0f; }

SIMD_ALWAYS_INLINE float simd_exp1(float x) {
    if (x != x) return x;
    if (x < SIMD_EXP_LO) x = SIMD_EXP_LO;
    if (x > SIMD_EXP_HI) x = SIMD_EXP_HI;
    float n = simd_round_float(x * SIMD_LOG2E);
    float r = x - n * SIMD_LN2_HI; /* exact: n * LN2_HI has at most 17 significant bits */
    r = r - n * SIMD_LN2_LO;
    float p = SIMD_EXP_P0;
    p = p * r + SIMD_EXP_P1;
    p = p * r + SIMD_EXP_P2;
    p = p * r + SIMD_EXP_P3;
    p = p * r + SIMD_EXP_P4;
    p = p * r + SIMD_EXP_P5;
    float e = p * (r * r) + r + 1.0f;
    int k = (int)n, k1 = k / 2; /* two exact scalings reach 2^-150 .. 2^128 */
    return e * simd_pow2i(k1) * simd_pow2i(k - k1);
}

SIMD_ALWAYS_INLINE float simd_tanh1(float x) {
    float ax = fabsf(x);
    if (ax < SIMD_TANH_SMALL) {
        float z = x * x;
        float p = SIMD_TANH_P0;
        p = p * z + SIMD_TANH_P1;
        p = p * z + SIMD_TANH_P2;
        p = p * z + SIMD_TANH_P3;
        p = p * z + SIMD_TANH_P4;
        return x + x * z * p;
    }
    float t = 1.0f - 2.0f / (simd_exp1(ax + ax) + 1.0f); /* NaN stays NaN */
    return x < 0 ? -t : t;
}

SIMD_ALWAYS_INLINE float simd_gelu1(float x) {
    if (x != x) return x;
    if (x < SIMD_GELU_LO) return -0.0f;
    float ax = fminf(fabsf(x), -SIMD_GELU_LO); /* past 20, Phi is 1 in float */
    float t = 1.0f / (1.0f + 0.5f * (ax * SIMD_SQRT1_2));
    float p = SIMD_ERFC_C9;
    p = p * t + SIMD_ERFC_C8;
    p = p * t + SIMD_ERFC_C7;
    p = p * t + SIMD_ERFC_C6;
    p = p * t + SIMD_ERFC_C5;
    p = p * t + SIMD_ERFC_C4;
    p = p * t + SIMD_ERFC_C3;
    p = p * t + SIMD_ERFC_C2;
    p = p * t + SIMD_ERFC_C1;
    p = p * t + SIMD_ERFC_C0;
    double sq = (double)ax * ax; /* exact; hi + lo = x^2 */
    float hi = (float)sq, lo = (float)(sq - hi);
    /* e = erfc(|x|/sqrt2) / 2 = t/2 exp(-x^2/2 + P) */
    float e = 0.5f * t * simd_exp1(-0.5f * hi) * simd_exp1(p - 0.5f * lo);
    return x * (x >= 0 ? 1.0f - e : e);
}

#endif

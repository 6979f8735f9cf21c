/* Vector math, NEON (AArch64): the algorithms of vecmath_one.h, 4 lanes at a time with FMA;
 * the tails use the scalar versions. Sums (softmax, RMSNorm) in double lanes. */
#include "vecmath_one.h"

#if defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>

SIMD_DECLARE_VECMATH(neon)

static inline float32x4_t pow2i(int32x4_t k) {
    return vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(k, vdupq_n_s32(127)), 23));
}

static inline float32x4_t exp4(float32x4_t x) {
    float32x4_t xc = vminq_f32(vmaxq_f32(x, vdupq_n_f32(SIMD_EXP_LO)), vdupq_n_f32(SIMD_EXP_HI));
    float32x4_t n = vrndnq_f32(vmulq_n_f32(xc, SIMD_LOG2E));
    float32x4_t r = vfmsq_n_f32(xc, n, SIMD_LN2_HI);
    r = vfmsq_n_f32(r, n, SIMD_LN2_LO);
    float32x4_t p = vdupq_n_f32(SIMD_EXP_P0);
    p = vfmaq_f32(vdupq_n_f32(SIMD_EXP_P1), p, r);
    p = vfmaq_f32(vdupq_n_f32(SIMD_EXP_P2), p, r);
    p = vfmaq_f32(vdupq_n_f32(SIMD_EXP_P3), p, r);
    p = vfmaq_f32(vdupq_n_f32(SIMD_EXP_P4), p, r);
    p = vfmaq_f32(vdupq_n_f32(SIMD_EXP_P5), p, r);
    float32x4_t e = vaddq_f32(vfmaq_f32(r, p, vmulq_f32(r, r)), vdupq_n_f32(1.0f));
    int32x4_t k = vcvtq_s32_f32(n), k1 = vshrq_n_s32(k, 1); /* two exact scalings */
    e = vmulq_f32(vmulq_f32(e, pow2i(k1)), pow2i(vsubq_s32(k, k1)));
    return vbslq_f32(vceqq_f32(x, x), e, x); /* NaN stays */
}

void simd_exp_neon(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, exp4(vld1q_f32(x + i)));
    for (; i < n; i++) y[i] = simd_exp1(x[i]);
}

void simd_tanh_neon(const float *x, float *y, int64_t n) {
    const float32x4_t one = vdupq_n_f32(1.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vld1q_f32(x + i), av = vabsq_f32(v), z = vmulq_f32(v, v);
        float32x4_t p = vdupq_n_f32(SIMD_TANH_P0);
        p = vfmaq_f32(vdupq_n_f32(SIMD_TANH_P1), p, z);
        p = vfmaq_f32(vdupq_n_f32(SIMD_TANH_P2), p, z);
        p = vfmaq_f32(vdupq_n_f32(SIMD_TANH_P3), p, z);
        p = vfmaq_f32(vdupq_n_f32(SIMD_TANH_P4), p, z);
        float32x4_t small = vfmaq_f32(v, vmulq_f32(v, z), p);
        float32x4_t e = exp4(vaddq_f32(av, av));
        float32x4_t t = vsubq_f32(one, vdivq_f32(vdupq_n_f32(2.0f), vaddq_f32(e, one)));
        float32x4_t big = vbslq_f32(vdupq_n_u32(0x80000000u), v, t); /* sign of x, magnitude t */
        vst1q_f32(y + i, vbslq_f32(vcltq_f32(av, vdupq_n_f32(SIMD_TANH_SMALL)), small, big));
    }
    for (; i < n; i++) y[i] = simd_tanh1(x[i]);
}

void simd_gelu_neon(const float *x, float *y, int64_t n) {
    const float32x4_t one = vdupq_n_f32(1.0f), half = vdupq_n_f32(0.5f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vld1q_f32(x + i);
        float32x4_t ax = vminq_f32(vabsq_f32(v), vdupq_n_f32(-SIMD_GELU_LO));
        float32x4_t t = vdivq_f32(one, vfmaq_f32(one, half, vmulq_n_f32(ax, SIMD_SQRT1_2)));
        float32x4_t p = vdupq_n_f32(SIMD_ERFC_C9);
        p = vfmaq_f32(vdupq_n_f32(SIMD_ERFC_C8), p, t);
        p = vfmaq_f32(vdupq_n_f32(SIMD_ERFC_C7), p, t);
        p = vfmaq_f32(vdupq_n_f32(SIMD_ERFC_C6), p, t);
        p = vfmaq_f32(vdupq_n_f32(SIMD_ERFC_C5), p, t);
        p = vfmaq_f32(vdupq_n_f32(SIMD_ERFC_C4), p, t);
        p = vfmaq_f32(vdupq_n_f32(SIMD_ERFC_C3), p, t);
        p = vfmaq_f32(vdupq_n_f32(SIMD_ERFC_C2), p, t);
        p = vfmaq_f32(vdupq_n_f32(SIMD_ERFC_C1), p, t);
        p = vfmaq_f32(vdupq_n_f32(SIMD_ERFC_C0), p, t);
        float32x4_t hi = vmulq_f32(ax, ax);
        float32x4_t lo = vfmaq_f32(vnegq_f32(hi), ax, ax); /* x^2 - hi, exact */
        float32x4_t e = vmulq_f32(vmulq_f32(half, t), exp4(vmulq_n_f32(hi, -0.5f)));
        e = vmulq_f32(e, exp4(vfmsq_f32(p, half, lo)));
        float32x4_t phi = vbslq_f32(vcgeq_f32(v, vdupq_n_f32(0)), vsubq_f32(one, e), e);
        float32x4_t g = vmulq_f32(v, phi);
        g = vbslq_f32(vcltq_f32(v, vdupq_n_f32(SIMD_GELU_LO)), vdupq_n_f32(-0.0f), g);
        g = vbslq_f32(vceqq_f32(v, v), g, v); /* NaN stays */
        vst1q_f32(y + i, g);
    }
    for (; i < n; i++) y[i] = simd_gelu1(x[i]);
}

double simd_exp_sum_neon(float *x, int64_t n, float scale, float *max_out) {
    float max = n > 0 ? x[0] * scale : -INFINITY;
    for (int64_t i = 1; i < n; i++) max = x[i] * scale > max ? x[i] * scale : max;
    float64x2_t sum2 = vdupq_n_f64(0);
    float32x4_t vmax = vdupq_n_f32(max);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t e = exp4(vsubq_f32(vmulq_n_f32(vld1q_f32(x + i), scale), vmax));
        vst1q_f32(x + i, e);
        sum2 = vaddq_f64(sum2, vcvt_f64_f32(vget_low_f32(e)));
        sum2 = vaddq_f64(sum2, vcvt_high_f64_f32(e));
    }
    double sum = vaddvq_f64(sum2);
    for (; i < n; i++) sum += x[i] = simd_exp1(x[i] * scale - max);
    *max_out = max;
    return sum;
}

void simd_softmax_neon(float *x, int64_t n) {
    if (n <= 0) return;
    float max;
    float inv = (float)(1.0 / simd_exp_sum_neon(x, n, 1.0f, &max));
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), inv));
    for (; i < n; i++) x[i] *= inv;
}

void simd_rmsnorm_neon(const float *x, const float *w, float *y, int64_t n, float eps) {
    float64x2_t acc = vdupq_n_f64(0);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vld1q_f32(x + i);
        float64x2_t lo = vcvt_f64_f32(vget_low_f32(v)), hi = vcvt_high_f64_f32(v);
        acc = vfmaq_f64(acc, lo, lo);
        acc = vfmaq_f64(acc, hi, hi);
    }
    double sum = vaddvq_f64(acc);
    for (; i < n; i++) sum += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(sum / (double)n + eps));
    for (i = 0; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_f32(vmulq_n_f32(vld1q_f32(x + i), scale), vld1q_f32(w + i)));
    for (; i < n; i++) y[i] = x[i] * scale * w[i];
}

#else
typedef int simd_vecmath_neon_not_built; /* ISO C: no empty translation unit */
#endif

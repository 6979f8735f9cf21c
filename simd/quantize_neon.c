/* Activation quantizers, NEON (AArch64): byte-exact with kernels_scalar.c. FMAXNM skips a
 * quiet NaN like the reference's comparison does (for the max and for the clamp, where NaN
 * becomes -127); FCVTNS rounds to nearest-even like the reference. */
#include "simd_internal.h"

#if defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>

SIMD_DECLARE_QUANTIZE(neon)

static inline float abs_max(const float *x, int n) {
    float32x4_t m = vdupq_n_f32(0);
    for (int i = 0; i < n; i += 4) m = vmaxnmq_f32(vabsq_f32(vld1q_f32(x + i)), m);
    return vmaxnmvq_f32(m);
}

/* 16 floats * id -> 16 int8 in order */
static inline int8x16_t quantize16(const float *x, float id) {
    int16x8_t h[2];
    for (int k = 0; k < 2; k++) {
        int32x4_t q[2];
        for (int j = 0; j < 2; j++) {
            float32x4_t v = vmulq_n_f32(vld1q_f32(x + 8 * k + 4 * j), id);
            v = vminnmq_f32(vmaxnmq_f32(v, vdupq_n_f32(-127.0f)), vdupq_n_f32(127.0f)); /* NaN -> -127 */
            q[j] = vcvtnq_s32_f32(v);
        }
        h[k] = vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1]));
    }
    return vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1]));
}

void simd_quantize_q8_0_neon(const float *x, void *out, int64_t n) {
    block_q8_0 *y = out;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        const float *xb = x + b * QK8_0;
        float id = simd_q8_0_scale(abs_max(xb, QK8_0), &y[b].d);
        vst1q_s8(y[b].qs, quantize16(xb, id));
        vst1q_s8(y[b].qs + 16, quantize16(xb + 16, id));
    }
}

void simd_quantize_q8_k_neon(const float *x, void *out, int64_t n) {
    block_q8_k *y = out;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float *xb = x + b * QK_K;
        float id = simd_q8_k_scale(abs_max(xb, QK_K), &y[b].d);
        for (int g = 0; g < QK_K / 16; g++) {
            int8x16_t q = quantize16(xb + 16 * g, id);
            vst1q_s8(y[b].qs + 16 * g, q);
            y[b].bsums[g] = vaddlvq_s8(q);
        }
    }
}

#else
typedef int simd_quantize_neon_not_built; /* ISO C: no empty translation unit */
#endif

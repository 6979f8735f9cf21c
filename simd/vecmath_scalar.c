/* Vector math, scalar reference: the same algorithms as every SIMD version (vecmath_one.h),
 * one value at a time. Errors against libm are stated in simd.h and measured by the tests. */
#include "vecmath_one.h"

SIMD_DECLARE_VECMATH(scalar)

void simd_exp_scalar(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = simd_exp1(x[i]);
}

void simd_tanh_scalar(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = simd_tanh1(x[i]);
}

void simd_gelu_scalar(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = simd_gelu1(x[i]);
}

double simd_exp_sum_scalar(float *x, int64_t n, float scale, float *max_out) {
    float max = n > 0 ? x[0] * scale : -INFINITY;
    for (int64_t i = 1; i < n; i++) max = x[i] * scale > max ? x[i] * scale : max;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += x[i] = simd_exp1(x[i] * scale - max);
    *max_out = max;
    return sum;
}

void simd_softmax_scalar(float *x, int64_t n) {
    if (n <= 0) return;
    float max;
    float inv = (float)(1.0 / simd_exp_sum_scalar(x, n, 1.0f, &max));
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

void simd_rmsnorm_scalar(const float *x, const float *w, float *y, int64_t n, float eps) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(sum / (double)n + eps));
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

/* Vector math, AVX2 + FMA: the algorithms of vecmath_one.h, 8 lanes at a time (FMA where the
 * scalar code has a multiply and an add, which only tightens the rounding); the tails use the
 * scalar versions. Sums (softmax, RMSNorm) are kept in double lanes, like the reference. */
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include "vecmath_one.h"

SIMD_DECLARE_VECMATH(avx2)

/* 2^k for integer lanes -126 <= k <= 127 */
static inline __m256 pow2i(__m256i k) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
}

static inline __m256 exp8(__m256 x) {
    __m256 is_nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(SIMD_EXP_LO)), _mm256_set1_ps(SIMD_EXP_HI));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(SIMD_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SIMD_LN2_HI), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SIMD_LN2_LO), r);
    __m256 p = _mm256_set1_ps(SIMD_EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SIMD_EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SIMD_EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SIMD_EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SIMD_EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SIMD_EXP_P5));
    __m256 e = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    __m256i k = _mm256_cvtps_epi32(n), k1 = _mm256_srai_epi32(k, 1); /* two exact scalings */
    e = _mm256_mul_ps(_mm256_mul_ps(e, pow2i(k1)), pow2i(_mm256_sub_epi32(k, k1)));
    return _mm256_blendv_ps(e, x, is_nan);
}

void simd_exp_avx2(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp8(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) y[i] = simd_exp1(x[i]);
}

void simd_tanh_avx2(const float *x, float *y, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i), av = _mm256_andnot_ps(sign, v);
        __m256 z = _mm256_mul_ps(v, v);
        __m256 p = _mm256_set1_ps(SIMD_TANH_P0);
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(SIMD_TANH_P1));
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(SIMD_TANH_P2));
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(SIMD_TANH_P3));
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(SIMD_TANH_P4));
        __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(v, z), p, v);
        __m256 e = exp8(_mm256_add_ps(av, av));
        __m256 t = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
        __m256 big = _mm256_or_ps(t, _mm256_and_ps(v, sign));
        __m256 is_small = _mm256_cmp_ps(av, _mm256_set1_ps(SIMD_TANH_SMALL), _CMP_LT_OQ);
        _mm256_storeu_ps(y + i, _mm256_blendv_ps(big, small, is_small));
    }
    for (; i < n; i++) y[i] = simd_tanh1(x[i]);
}

void simd_gelu_avx2(const float *x, float *y, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 ax = _mm256_min_ps(_mm256_andnot_ps(sign, v), _mm256_set1_ps(-SIMD_GELU_LO));
        __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(half, _mm256_mul_ps(ax, _mm256_set1_ps(SIMD_SQRT1_2)), one));
        __m256 p = _mm256_set1_ps(SIMD_ERFC_C9);
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(SIMD_ERFC_C8));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(SIMD_ERFC_C7));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(SIMD_ERFC_C6));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(SIMD_ERFC_C5));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(SIMD_ERFC_C4));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(SIMD_ERFC_C3));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(SIMD_ERFC_C2));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(SIMD_ERFC_C1));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(SIMD_ERFC_C0));
        __m256 hi = _mm256_mul_ps(ax, ax), lo = _mm256_fmsub_ps(ax, ax, hi); /* x^2 = hi + lo exactly */
        __m256 e = _mm256_mul_ps(_mm256_mul_ps(half, t), exp8(_mm256_mul_ps(_mm256_set1_ps(-0.5f), hi)));
        e = _mm256_mul_ps(e, exp8(_mm256_fnmadd_ps(half, lo, p)));
        __m256 nonneg = _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GE_OQ);
        __m256 phi = _mm256_blendv_ps(e, _mm256_sub_ps(one, e), nonneg);
        __m256 g = _mm256_mul_ps(v, phi);
        g = _mm256_blendv_ps(g, sign, _mm256_cmp_ps(v, _mm256_set1_ps(SIMD_GELU_LO), _CMP_LT_OQ)); /* -0 */
        g = _mm256_blendv_ps(g, v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));                             /* NaN */
        _mm256_storeu_ps(y + i, g);
    }
    for (; i < n; i++) y[i] = simd_gelu1(x[i]);
}

static inline __m256d add_as_double(__m256d acc, __m256 v) {
    acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    return _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

static inline double hsum_pd(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

double simd_exp_sum_avx2(float *x, int64_t n, float scale, float *max_out) {
    float max = n > 0 ? x[0] * scale : -INFINITY;
    int64_t i = 0;
    __m256 vscale = _mm256_set1_ps(scale);
    if (n >= 8) {
        __m256 m = _mm256_mul_ps(_mm256_loadu_ps(x), vscale);
        for (i = 8; i + 8 <= n; i += 8) m = _mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vscale), m);
        float lanes[8];
        _mm256_storeu_ps(lanes, m);
        for (int j = 0; j < 8; j++) max = lanes[j] > max ? lanes[j] : max;
    }
    for (; i < n; i++) max = x[i] * scale > max ? x[i] * scale : max;
    __m256d sum4 = _mm256_setzero_pd();
    __m256 vmax = _mm256_set1_ps(max);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vscale), vmax));
        _mm256_storeu_ps(x + i, e);
        sum4 = add_as_double(sum4, e);
    }
    double sum = hsum_pd(sum4);
    for (; i < n; i++) sum += x[i] = simd_exp1(x[i] * scale - max);
    *max_out = max;
    return sum;
}

void simd_softmax_avx2(float *x, int64_t n) {
    if (n <= 0) return;
    float max, inv = (float)(1.0 / simd_exp_sum_avx2(x, n, 1.0f, &max));
    __m256 vinv = _mm256_set1_ps(inv);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
    for (; i < n; i++) x[i] *= inv;
}

void simd_rmsnorm_avx2(const float *x, const float *w, float *y, int64_t n, float eps) {
    __m256d acc = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        acc = _mm256_fmadd_pd(lo, lo, acc);
        acc = _mm256_fmadd_pd(hi, hi, acc);
    }
    double sum = hsum_pd(acc);
    for (; i < n; i++) sum += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(sum / (double)n + eps));
    __m256 s = _mm256_set1_ps(scale);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), s), _mm256_loadu_ps(w + i)));
    for (; i < n; i++) y[i] = x[i] * scale * w[i];
}

#else
typedef int simd_vecmath_avx2_not_built; /* ISO C: no empty translation unit */
#endif

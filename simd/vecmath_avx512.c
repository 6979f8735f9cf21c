/* Vector math, AVX-512: the algorithms of vecmath_one.h, 16 lanes at a time. e^x applies 2^n
 * with VSCALEFPS, which scales by any integer power of two with one final rounding: the same
 * result as the reference's two exact multiplies. The tails use the scalar versions. */
#include "vecmath_one.h"
#include "avx512_compat.h"

#if defined(SIMD_AVX512_BUILT)

SIMD_DECLARE_VECMATH(avx512)

static inline __m512 exp16(__m512 x) {
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(SIMD_EXP_LO)), _mm512_set1_ps(SIMD_EXP_HI));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(SIMD_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SIMD_LN2_HI), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SIMD_LN2_LO), r);
    __m512 p = _mm512_set1_ps(SIMD_EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SIMD_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SIMD_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SIMD_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SIMD_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SIMD_EXP_P5));
    __m512 e = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    e = _mm512_scalef_ps(e, n);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), e, x); /* NaN stays */
}

void simd_exp_avx512(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, exp16(_mm512_loadu_ps(x + i)));
    for (; i < n; i++) y[i] = simd_exp1(x[i]);
}

void simd_tanh_avx512(const float *x, float *y, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i), av = _mm512_abs_ps(v);
        __m512 z = _mm512_mul_ps(v, v);
        __m512 p = _mm512_set1_ps(SIMD_TANH_P0);
        p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(SIMD_TANH_P1));
        p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(SIMD_TANH_P2));
        p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(SIMD_TANH_P3));
        p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(SIMD_TANH_P4));
        __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(v, z), p, v);
        __m512 e = exp16(_mm512_add_ps(av, av));
        __m512 t = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
        __m512 big = _mm512_or_ps(t, _mm512_and_ps(v, _mm512_set1_ps(-0.0f)));
        __mmask16 is_small = _mm512_cmp_ps_mask(av, _mm512_set1_ps(SIMD_TANH_SMALL), _CMP_LT_OQ);
        _mm512_storeu_ps(y + i, _mm512_mask_blend_ps(is_small, big, small));
    }
    for (; i < n; i++) y[i] = simd_tanh1(x[i]);
}

void simd_gelu_avx512(const float *x, float *y, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __m512 ax = _mm512_min_ps(_mm512_abs_ps(v), _mm512_set1_ps(-SIMD_GELU_LO));
        __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(half, _mm512_mul_ps(ax, _mm512_set1_ps(SIMD_SQRT1_2)), one));
        __m512 p = _mm512_set1_ps(SIMD_ERFC_C9);
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(SIMD_ERFC_C8));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(SIMD_ERFC_C7));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(SIMD_ERFC_C6));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(SIMD_ERFC_C5));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(SIMD_ERFC_C4));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(SIMD_ERFC_C3));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(SIMD_ERFC_C2));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(SIMD_ERFC_C1));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(SIMD_ERFC_C0));
        __m512 hi = _mm512_mul_ps(ax, ax), lo = _mm512_fmsub_ps(ax, ax, hi); /* x^2 = hi + lo exactly */
        __m512 e = _mm512_mul_ps(_mm512_mul_ps(half, t), exp16(_mm512_mul_ps(_mm512_set1_ps(-0.5f), hi)));
        e = _mm512_mul_ps(e, exp16(_mm512_fnmadd_ps(half, lo, p)));
        __mmask16 nonneg = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GE_OQ);
        __m512 g = _mm512_mul_ps(v, _mm512_mask_blend_ps(nonneg, e, _mm512_sub_ps(one, e)));
        g = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, _mm512_set1_ps(SIMD_GELU_LO), _CMP_LT_OQ), g, _mm512_set1_ps(-0.0f));
        g = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), g, v);
        _mm512_storeu_ps(y + i, g);
    }
    for (; i < n; i++) y[i] = simd_gelu1(x[i]);
}

static inline double hsum_pd(__m512d v) {
    __m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

static inline float hmax(__m512 v) {
    __m256 m8 = _mm256_max_ps(_mm512_castps512_ps256(v), simd_hi256_ps(v));
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

double simd_exp_sum_avx512(float *x, int64_t n, float scale, float *max_out) {
    float max = n > 0 ? x[0] * scale : -INFINITY;
    int64_t i = 0;
    __m512 vscale = _mm512_set1_ps(scale);
    if (n >= 16) {
        __m512 m = _mm512_mul_ps(_mm512_loadu_ps(x), vscale);
        for (i = 16; i + 16 <= n; i += 16) m = _mm512_max_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), vscale), m);
        float lanes = hmax(m);
        max = lanes > max ? lanes : max;
    }
    for (; i < n; i++) max = x[i] * scale > max ? x[i] * scale : max;
    __m512d sum8 = _mm512_setzero_pd();
    __m512 vmax = _mm512_set1_ps(max);
    for (i = 0; i + 16 <= n; i += 16) {
        __m512 e = exp16(_mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), vscale), vmax));
        _mm512_storeu_ps(x + i, e);
        sum8 = _mm512_add_pd(sum8, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        sum8 = _mm512_add_pd(sum8, _mm512_cvtps_pd(simd_hi256_ps(e)));
    }
    double sum = hsum_pd(sum8);
    for (; i < n; i++) sum += x[i] = simd_exp1(x[i] * scale - max);
    *max_out = max;
    return sum;
}

void simd_softmax_avx512(float *x, int64_t n) {
    if (n <= 0) return;
    float max, inv = (float)(1.0 / simd_exp_sum_avx512(x, n, 1.0f, &max));
    __m512 vinv = _mm512_set1_ps(inv);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), vinv));
    for (; i < n; i++) x[i] *= inv;
}

void simd_rmsnorm_avx512(const float *x, const float *w, float *y, int64_t n, float eps) {
    __m512d acc = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v)), hi = _mm512_cvtps_pd(simd_hi256_ps(v));
        acc = _mm512_fmadd_pd(lo, lo, acc);
        acc = _mm512_fmadd_pd(hi, hi, acc);
    }
    double sum = hsum_pd(acc);
    for (; i < n; i++) sum += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(sum / (double)n + eps));
    __m512 s = _mm512_set1_ps(scale);
    for (i = 0; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), s), _mm512_loadu_ps(w + i)));
    for (; i < n; i++) y[i] = x[i] * scale * w[i];
}

#else
typedef int simd_vecmath_avx512_not_built; /* ISO C: no empty translation unit */
#endif

/* Activation quantizers, AVX2: byte-exact with kernels_scalar.c. The block's max and the
 * per-block scale are exact whatever the order; x * (1/d) is the same single multiply; the
 * clamp happens in float (max(v, -127) returns -127 for NaN, as the reference does) before
 * the conversion, which rounds to nearest-even like the reference's 1.5*2^23 trick. */
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include "simd_internal.h"

SIMD_DECLARE_QUANTIZE(avx2)

/* max |x| over 32 values; NaN lanes never win (max_ps returns its second operand on NaN). */
static inline __m256 abs_max(__m256 acc, __m256 v) {
    __m256 absv = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
    return _mm256_max_ps(absv, acc);
}

static inline float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* 32 floats * id -> 32 int8 in element order. */
static inline __m256i quantize32(const float *x, __m256 id) {
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    __m256i q[4];
    for (int i = 0; i < 4; i++) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * i), id);
        v = _mm256_min_ps(_mm256_max_ps(v, lo), hi); /* NaN -> -127 */
        q[i] = _mm256_cvtps_epi32(v);
    }
    /* packs work inside 128-bit lanes, so the 4-byte groups come out as q0[0..3] q1[0..3]
     * q2[0..3] q3[0..3] q0[4..7] ...: one cross-lane permute puts them back in order */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

void simd_quantize_q8_0_avx2(const float *x, void *out, int64_t n) {
    block_q8_0 *y = out;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        const float *xb = x + b * QK8_0;
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) m = abs_max(m, _mm256_loadu_ps(xb + 8 * i));
        float id = simd_q8_0_scale(hmax(m), &y[b].d);
        _mm256_storeu_si256((__m256i *)y[b].qs, quantize32(xb, _mm256_set1_ps(id)));
    }
}

void simd_quantize_q8_k_avx2(const float *x, void *out, int64_t n) {
    block_q8_k *y = out;
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float *xb = x + b * QK_K;
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < QK_K / 8; i++) m = abs_max(m, _mm256_loadu_ps(xb + 8 * i));
        float id = simd_q8_k_scale(hmax(m), &y[b].d);
        for (int g = 0; g < QK_K / 32; g++) {
            __m256i q = quantize32(xb + 32 * g, _mm256_set1_ps(id));
            _mm256_storeu_si256((__m256i *)(y[b].qs + 32 * g), q);
            /* bsums: sad against 0 sums 8 unsigned bytes; bias by 128 to make them unsigned */
            uint64_t s[4];
            _mm256_storeu_si256((__m256i *)s, _mm256_sad_epu8(_mm256_xor_si256(q, bias), _mm256_setzero_si256()));
            y[b].bsums[2 * g] = (int16_t)((int)(s[0] + s[1]) - 16 * 128);
            y[b].bsums[2 * g + 1] = (int16_t)((int)(s[2] + s[3]) - 16 * 128);
        }
    }
}

#else
typedef int simd_quantize_avx2_not_built; /* ISO C: no empty translation unit */
#endif

/* Activation quantizers, AVX-512: byte-exact with kernels_scalar.c, by the same argument as
 * quantize_avx2.c (exact max, scalar scale rule, one multiply, clamp in float with NaN going
 * to -127, round to nearest-even). 16 floats per register; the saturating 32 -> 8 bit
 * conversion never saturates after the clamp. */
#include "simd_internal.h"
#include "avx512_compat.h"

#if defined(SIMD_AVX512_BUILT)

SIMD_DECLARE_QUANTIZE(avx512)

static inline __m512 abs_max(__m512 acc, __m512 v) { return _mm512_max_ps(_mm512_abs_ps(v), acc); } /* NaN loses */

static inline float hmax(__m512 v) {
    __m256 m8 = _mm256_max_ps(_mm512_castps512_ps256(v), simd_hi256_ps(v));
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline __m128i quantize16(const float *x, __m512 id) {
    __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x), id);
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f)); /* NaN -> -127 */
    return _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v));
}

void simd_quantize_q8_0_avx512(const float *x, void *out, int64_t n) {
    block_q8_0 *y = out;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        const float *xb = x + b * QK8_0;
        float id = simd_q8_0_scale(hmax(abs_max(abs_max(_mm512_setzero_ps(), _mm512_loadu_ps(xb)), _mm512_loadu_ps(xb + 16))),
                                   &y[b].d);
        __m512 vid = _mm512_set1_ps(id);
        _mm_storeu_si128((__m128i *)y[b].qs, quantize16(xb, vid));
        _mm_storeu_si128((__m128i *)(y[b].qs + 16), quantize16(xb + 16, vid));
    }
}

void simd_quantize_q8_k_avx512(const float *x, void *out, int64_t n) {
    block_q8_k *y = out;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float *xb = x + b * QK_K;
        __m512 m = _mm512_setzero_ps();
        for (int i = 0; i < QK_K / 16; i++) m = abs_max(m, _mm512_loadu_ps(xb + 16 * i));
        __m512 vid = _mm512_set1_ps(simd_q8_k_scale(hmax(m), &y[b].d));
        for (int g = 0; g < QK_K / 16; g++) {
            __m128i q = quantize16(xb + 16 * g, vid);
            _mm_storeu_si128((__m128i *)(y[b].qs + 16 * g), q);
            /* bsum of these 16: sad sums 8 unsigned bytes, so bias them by 128 first */
            __m128i s = _mm_sad_epu8(_mm_xor_si128(q, _mm_set1_epi8((char)0x80)), _mm_setzero_si128());
            y[b].bsums[g] = (int16_t)(_mm_cvtsi128_si32(s) + _mm_extract_epi16(s, 4) - 16 * 128);
        }
    }
}

#else
typedef int simd_quantize_avx512_not_built; /* ISO C: no empty translation unit */
#endif

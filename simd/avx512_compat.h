/* Private to the simd/ files named *_avx512.c: the intrinsics header, native or SIMDe. Built natively with
 * -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni; built a second time with
 * -DSIMD_USE_SIMDE -mavx2 -mfma -mf16c (simd/simd.mk) so the same source runs, and is tested,
 * on an AVX2 machine. SIMDe 0.7.4 (Debian 12) lacks a few intrinsics these files use; they are
 * defined here under their Intel names from two AVX2 halves, and only when SIMDe has not
 * defined them itself (SIMDe's native aliases are macros, so #ifndef sees them). */
#ifndef GROK2_SIMD_AVX512_COMPAT_H
#define GROK2_SIMD_AVX512_COMPAT_H

#if defined(SIMD_USE_SIMDE)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <immintrin.h>

#define SIMD_AVX512_BUILT 1
#define SIMD_AVX512_HAS_VNNI 1
#define SIMD_AVX512_SUFFIX "-simde"
#define SIMD_AVX512_NEEDS (SIMD_CPU_AVX2 | SIMD_CPU_FMA | SIMD_CPU_F16C)
#define SIMD_AVX512_VNNI_NEEDS 0 /* emulated */

/* SIMDe 0.7.4's alias of _mm512_madd_epi16 takes the masked variant's four arguments. */
#undef _mm512_madd_epi16
#define _mm512_madd_epi16(a, b) simde_mm512_madd_epi16(a, b)

/* SIMDe 0.7.4's _mm512_scalef_ps is a * exp2(floor(b)), which overflows at b = 128 and
 * underflows below -149 where VSCALEFPS does not. Replaced by two exact power-of-two
 * multiplies (one rounding, like the instruction) for integral |b| <= 252, all exp needs. */
static inline __m256 simd_compat_scalef256(__m256 a, __m256 b) {
    __m256i k = _mm256_cvtps_epi32(b), k1 = _mm256_srai_epi32(k, 1), k2 = _mm256_sub_epi32(k, k1);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 p1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23));
    __m256 p2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(a, p1), p2);
}
static inline __m512 simd_compat_scalef_ps(__m512 a, __m512 b) {
    __m256 ahi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
    __m256 bhi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(b), 1));
    return _mm512_insertf32x8(_mm512_castps256_ps512(simd_compat_scalef256(_mm512_castps512_ps256(a), _mm512_castps512_ps256(b))),
                              simd_compat_scalef256(ahi, bhi), 1);
}
#undef _mm512_scalef_ps
#define _mm512_scalef_ps(a, b) simd_compat_scalef_ps(a, b)

static inline __m256i simd_compat_hi_si256(__m512i v) { return _mm512_extracti64x4_epi64(v, 1); }
static inline __m512i simd_compat_join_si(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
static inline __m512 simd_compat_join_ps(__m256 lo, __m256 hi) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}

#ifndef _mm512_cvtepi32_ps
static inline __m512 simd_compat_cvtepi32_ps(__m512i v) {
    return simd_compat_join_ps(_mm256_cvtepi32_ps(_mm512_castsi512_si256(v)), _mm256_cvtepi32_ps(simd_compat_hi_si256(v)));
}
#define _mm512_cvtepi32_ps(v) simd_compat_cvtepi32_ps(v)
#endif

#ifndef _mm512_cvtps_epi32
static inline __m512i simd_compat_cvtps_epi32(__m512 v) {
    __m256 lo = _mm512_castps512_ps256(v), hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return simd_compat_join_si(_mm256_cvtps_epi32(lo), _mm256_cvtps_epi32(hi));
}
#define _mm512_cvtps_epi32(v) simd_compat_cvtps_epi32(v)
#endif

#ifndef _mm512_cvtph_ps
static inline __m512 simd_compat_cvtph_ps(__m256i h) {
    return simd_compat_join_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h)), _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)));
}
#define _mm512_cvtph_ps(h) simd_compat_cvtph_ps(h)
#endif

#ifndef _mm512_cvtepu16_epi32
static inline __m512i simd_compat_cvtepu16_epi32(__m256i v) {
    return simd_compat_join_si(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(v)),
                               _mm256_cvtepu16_epi32(_mm256_extracti128_si256(v, 1)));
}
#define _mm512_cvtepu16_epi32(v) simd_compat_cvtepu16_epi32(v)
#endif

#ifndef _mm512_cvtepu8_epi16
static inline __m512i simd_compat_cvtepu8_epi16(__m256i v) {
    return simd_compat_join_si(_mm256_cvtepu8_epi16(_mm256_castsi256_si128(v)),
                               _mm256_cvtepu8_epi16(_mm256_extracti128_si256(v, 1)));
}
#define _mm512_cvtepu8_epi16(v) simd_compat_cvtepu8_epi16(v)
#endif

/* per-128-bit-lane shuffles with an immediate: macros, so the immediate stays a constant */
#ifndef _mm512_shuffle_epi32
#define _mm512_shuffle_epi32(v, imm)                                                      \
    simd_compat_join_si(_mm256_shuffle_epi32(_mm512_castsi512_si256(v), (int)(imm)), \
                        _mm256_shuffle_epi32(simd_compat_hi_si256(v), (int)(imm)))
#endif

#ifndef _mm512_bsrli_epi128
#define _mm512_bsrli_epi128(v, imm)                                                      \
    simd_compat_join_si(_mm256_bsrli_epi128(_mm512_castsi512_si256(v), imm), \
                        _mm256_bsrli_epi128(simd_compat_hi_si256(v), imm))
#endif

#ifndef _mm512_cvtps_pd
static inline __m512d simd_compat_cvtps_pd(__m256 v) {
    return _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_cvtps_pd(_mm256_castps256_ps128(v))),
                              _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), 1);
}
#define _mm512_cvtps_pd(v) simd_compat_cvtps_pd(v)
#endif

#elif defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && \
    defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define SIMD_AVX512_BUILT 1
#if defined(__AVX512VNNI__)
#define SIMD_AVX512_HAS_VNNI 1
#endif
#define SIMD_AVX512_SUFFIX ""
#define SIMD_AVX512_VNNI_NEEDS SIMD_CPU_AVX512VNNI
#define SIMD_AVX512_NEEDS \
    (SIMD_CPU_AVX512F | SIMD_CPU_AVX512BW | SIMD_CPU_AVX512VL | SIMD_CPU_AVX512DQ | SIMD_CPU_FMA | SIMD_CPU_F16C)
#endif

#if defined(SIMD_AVX512_BUILT)
/* The upper 256 bits, and 512-bit vectors from two 256-bit halves (native and SIMDe alike). */
static inline __m256 simd_hi256_ps(__m512 v) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); }
static inline __m512i simd_join256_si(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
static inline __m512 simd_join256_ps(__m256 lo, __m256 hi) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}
#endif

#endif

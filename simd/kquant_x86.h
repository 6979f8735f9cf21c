/* Private to the x86 kernel files (AVX2 and up): Q4_K / Q5_K scale unpacking in registers.
 * Going through memory (simd_q4_k_scales) stores four words and reloads them as a wider
 * vector, which stalls store forwarding on every super-block; this stays in registers. */
#ifndef GROK2_SIMD_KQUANT_X86_H
#define GROK2_SIMD_KQUANT_X86_H

#include <immintrin.h>

#include "simd_internal.h"

/* The 8 scales and 8 mins of a Q4_K / Q5_K super-block as 16 int16: sc[0..7] in words 0..7,
 * m[0..7] in words 8..15. `scales` points at the 12 packed bytes; 16 are read (the 4 after
 * them are the block's own qh or qs). With dwords w0 = s[0..3], w1 = s[4..7], w2 = s[8..11]:
 *   sc[0..3] = w0 & 63                       m[0..3] = w1 & 63
 *   sc[4..7] = (w2 & 15) | (w0 >> 6) << 4    m[4..7] = (w2 >> 4 & 15) | (w1 >> 6) << 4
 * (bytewise), so dwords [w0, w2, w1, w2] and [w0, w0, w1, w1] line up the four results. */
static inline __m256i simd_k45_scales16(const uint8_t *scales) {
    __m128i v = _mm_loadu_si128((const __m128i *)scales);
    __m128i low = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0));  /* w0 w2 w1 w2 */
    __m128i high = _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0)); /* w0 w0 w1 w1 */
    low = _mm_and_si128(_mm_srlv_epi32(low, _mm_setr_epi32(0, 0, 0, 4)),
                        _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    high = _mm_slli_epi32(_mm_and_si128(_mm_srli_epi32(high, 6), _mm_setr_epi32(0, 0x03030303, 0, 0x03030303)), 4);
    return _mm256_cvtepu8_epi16(_mm_or_si128(low, high));
}

#endif

/* simd/: the lowest layer. Block layouts of the ggml quantized types (byte-exact with
 * gguf-format.md), exact fp16/bf16 conversions, and (in later issues) the dot/matvec kernels
 * per ISA behind one dispatch table. Everything above (quant/, runtime/) includes this header.
 *
 * The block structs live here rather than in quant/ because the kernels that read them are the
 * bottom of the dependency arrow (simd <- quant <- convert, runtime). */
#ifndef GROK2_SIMD_H
#define GROK2_SIMD_H

#include <stdint.h>
#include <string.h>

/* ---- block layouts ------------------------------------------------------------------------ */

#define QK4_0 32
#define QK4_1 32
#define QK8_0 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef uint16_t g2_half; /* IEEE binary16 bits */

typedef struct { g2_half d; uint8_t qs[QK4_0 / 2]; } block_q4_0;           /* 18 bytes */
typedef struct { g2_half d, m; uint8_t qs[QK4_1 / 2]; } block_q4_1;        /* 20 bytes */
typedef struct { g2_half d; int8_t qs[QK8_0]; } block_q8_0;                /* 34 bytes */
typedef struct { g2_half d; uint8_t qs[QK4_0 / 2]; } block_iq4_nl;         /* 18 bytes */
typedef struct {
    g2_half d, dmin;
    uint8_t scales[K_SCALE_SIZE]; /* 8 x (6-bit scale, 6-bit min), packed */
    uint8_t qs[QK_K / 2];
} block_q4_k; /* 144 bytes */
typedef struct {
    g2_half d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_k; /* 176 bytes */
typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    g2_half d; /* last, unlike the other K types */
} block_q6_k; /* 210 bytes */
typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16]; /* sum of each group of 16 quants */
} block_q8_k; /* 292 bytes */

_Static_assert(sizeof(block_q4_0) == 18, "Q4_0 layout");
_Static_assert(sizeof(block_q4_1) == 20, "Q4_1 layout");
_Static_assert(sizeof(block_q8_0) == 34, "Q8_0 layout");
_Static_assert(sizeof(block_iq4_nl) == 18, "IQ4_NL layout");
_Static_assert(sizeof(block_q4_k) == 144, "Q4_K layout");
_Static_assert(sizeof(block_q5_k) == 176, "Q5_K layout");
_Static_assert(sizeof(block_q6_k) == 210, "Q6_K layout");
_Static_assert(sizeof(block_q8_k) == 292, "Q8_K layout");

/* IQ4_NL's non-linear codebook. */
static const int8_t g2_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                          1,    13,   25,  38,  53,  69,  89,  113};

/* ---- fp16 / bf16 -------------------------------------------------------------------------- */
/* Exact for every value: subnormals, infinities and NaN payloads are preserved where the
 * target can hold them; float -> half/bf16 rounds to nearest, ties to even. */

static inline uint32_t g2_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float g2_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline float g2_half_to_f32(g2_half h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) return g2_bits_f32(sign | 0x7f800000u | (mant << 13)); /* inf / NaN */
    if (exp == 0) {
        if (mant == 0) return g2_bits_f32(sign);
        /* subnormal: mant * 2^-24, exact in float */
        float v = (float)mant * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return g2_bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

static inline g2_half g2_f32_to_half(float f) {
    uint32_t x = g2_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t exp = (x >> 23) & 0xff, mant = x & 0x7fffff;
    if (exp == 0xff) { /* inf or NaN; keep NaN a NaN (quiet bit set) */
        if (mant == 0) return (g2_half)(sign | 0x7c00);
        return (g2_half)(sign | 0x7e00 | (mant >> 13));
    }
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 0x1f) return (g2_half)(sign | 0x7c00); /* overflow -> inf */
    if (e <= 0) {                                     /* half subnormal or zero */
        if (e < -10) return (g2_half)sign;
        mant |= 0x800000; /* implicit bit */
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half_mant = mant >> shift;
        uint32_t rest = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rest > halfway || (rest == halfway && (half_mant & 1))) half_mant++;
        return (g2_half)(sign | half_mant); /* a carry into the exponent is correct */
    }
    uint32_t h = sign | ((uint32_t)e << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++; /* carry may reach inf: correct */
    return (g2_half)h;
}

static inline float g2_bf16_to_f32(uint16_t b) { return g2_bits_f32((uint32_t)b << 16); }

static inline uint16_t g2_f32_to_bf16(float f) {
    uint32_t x = g2_f32_bits(f);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fff + ((x >> 16) & 1); /* round to nearest even */
    return (uint16_t)(x >> 16);
}

#endif

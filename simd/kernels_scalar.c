/* The scalar reference kernels: the activation quantizers and one dot product per weight type,
 * written to read like the block layouts in gguf-format.md. Every SIMD kernel is tested
 * against these (byte-exact for the quantizers; for the dots, the integer part is exact and
 * only the float products of the scales may round differently). Always built; also the
 * fallback on a CPU without a faster ISA. */
#include "simd_internal.h"

/* ---- activation quantizers ---------------------------------------------------------------- */

static void quantize_q8_0(const float *x, void *out, int64_t n) {
    block_q8_0 *y = out;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        const float *xb = x + b * QK8_0;
        float amax = 0;
        for (int i = 0; i < QK8_0; i++)
            if (fabsf(xb[i]) > amax) amax = fabsf(xb[i]); /* NaN never compares greater */
        float id = simd_q8_0_scale(amax, &y[b].d);
        for (int i = 0; i < QK8_0; i++) y[b].qs[i] = simd_q8_round(xb[i] * id);
    }
}

static void quantize_q8_k(const float *x, void *out, int64_t n) {
    block_q8_k *y = out;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float *xb = x + b * QK_K;
        float amax = 0;
        for (int i = 0; i < QK_K; i++)
            if (fabsf(xb[i]) > amax) amax = fabsf(xb[i]);
        float id = simd_q8_k_scale(amax, &y[b].d);
        for (int i = 0; i < QK_K; i++) y[b].qs[i] = simd_q8_round(xb[i] * id);
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int i = 0; i < 16; i++) sum += y[b].qs[g * 16 + i];
            y[b].bsums[g] = (int16_t)sum;
        }
    }
}

void simd_copy_f32(const float *x, void *out, int64_t n) {
    if (out != x) memmove(out, x, (size_t)n * sizeof(float));
}

/* ---- 32-blocks x Q8_0 ----------------------------------------------------------------------- */
/* Byte j of a 4-bit block holds element j (low nibble) and element j + 16 (high nibble). */

static float dot_q4_0(int64_t n, const void *w, const void *x) {
    const block_q4_0 *wb = w;
    const block_q8_0 *xb = x;
    float sum = 0;
    for (int64_t b = 0; b < n / QK4_0; b++) {
        int isum = 0; /* sum (q - 8) * x, exact */
        for (int j = 0; j < QK4_0 / 2; j++) {
            isum += ((wb[b].qs[j] & 15) - 8) * xb[b].qs[j];
            isum += ((wb[b].qs[j] >> 4) - 8) * xb[b].qs[j + 16];
        }
        sum += g2_half_to_f32(wb[b].d) * g2_half_to_f32(xb[b].d) * (float)isum;
    }
    return sum;
}

/* Q4_1 against Q8_0 (not Q8_1): sum (d q + m) dx x = d dx sum(q x) + m dx sum(x). */
static float dot_q4_1(int64_t n, const void *w, const void *x) {
    const block_q4_1 *wb = w;
    const block_q8_0 *xb = x;
    float sum = 0;
    for (int64_t b = 0; b < n / QK4_1; b++) {
        int qx = 0, xsum = 0;
        for (int j = 0; j < QK4_1 / 2; j++) {
            qx += (wb[b].qs[j] & 15) * xb[b].qs[j] + (wb[b].qs[j] >> 4) * xb[b].qs[j + 16];
            xsum += xb[b].qs[j] + xb[b].qs[j + 16];
        }
        float dx = g2_half_to_f32(xb[b].d);
        sum += g2_half_to_f32(wb[b].d) * dx * (float)qx + g2_half_to_f32(wb[b].m) * dx * (float)xsum;
    }
    return sum;
}

static float dot_q8_0(int64_t n, const void *w, const void *x) {
    const block_q8_0 *wb = w, *xb = x;
    float sum = 0;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        int isum = 0;
        for (int i = 0; i < QK8_0; i++) isum += wb[b].qs[i] * xb[b].qs[i];
        sum += g2_half_to_f32(wb[b].d) * g2_half_to_f32(xb[b].d) * (float)isum;
    }
    return sum;
}

static float dot_iq4_nl(int64_t n, const void *w, const void *x) {
    const block_iq4_nl *wb = w;
    const block_q8_0 *xb = x;
    float sum = 0;
    for (int64_t b = 0; b < n / QK4_0; b++) {
        int isum = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            isum += g2_iq4nl_values[wb[b].qs[j] & 15] * xb[b].qs[j];
            isum += g2_iq4nl_values[wb[b].qs[j] >> 4] * xb[b].qs[j + 16];
        }
        sum += g2_half_to_f32(wb[b].d) * g2_half_to_f32(xb[b].d) * (float)isum;
    }
    return sum;
}

/* ---- K-quants x Q8_K ---------------------------------------------------------------------- */

/* Sub-block j's 6-bit scale and min of Q4_K / Q5_K, spelled out (gguf-format.md). */
static void k_scale_min(const uint8_t s[K_SCALE_SIZE], int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Q4_K: y = d sc[j] q - dmin m[j] over sub-blocks j of 32, so
 *   dot = d dx sum_j sc[j] sum(q x) - dmin dx sum_j m[j] sum(x),
 * where sum(x) over a sub-block is two of Q8_K's bsums. */
static float dot_q4_k(int64_t n, const void *w, const void *x) {
    const block_q4_k *wb = w;
    const block_q8_k *xb = x;
    float sum = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        int isum = 0, msum = 0;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            k_scale_min(wb[b].scales, j, &sc, &m);
            const uint8_t *qs = wb[b].qs + (j / 2) * 32; /* chunk of 64: low nibbles, then high */
            int shift = (j & 1) * 4, qx = 0;
            for (int l = 0; l < 32; l++) qx += ((qs[l] >> shift) & 15) * xb[b].qs[j * 32 + l];
            isum += sc * qx;
            msum += m * (xb[b].bsums[2 * j] + xb[b].bsums[2 * j + 1]);
        }
        sum += g2_half_to_f32(wb[b].d) * xb[b].d * (float)isum - g2_half_to_f32(wb[b].dmin) * xb[b].d * (float)msum;
    }
    return sum;
}

/* Q5_K: Q4_K plus a fifth bit: bit j of qh[l] belongs to element l of sub-block j. */
static float dot_q5_k(int64_t n, const void *w, const void *x) {
    const block_q5_k *wb = w;
    const block_q8_k *xb = x;
    float sum = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        int isum = 0, msum = 0;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            k_scale_min(wb[b].scales, j, &sc, &m);
            const uint8_t *qs = wb[b].qs + (j / 2) * 32;
            int shift = (j & 1) * 4, qx = 0;
            for (int l = 0; l < 32; l++) {
                int q = ((qs[l] >> shift) & 15) | (((wb[b].qh[l] >> j) & 1) << 4);
                qx += q * xb[b].qs[j * 32 + l];
            }
            isum += sc * qx;
            msum += m * (xb[b].bsums[2 * j] + xb[b].bsums[2 * j + 1]);
        }
        sum += g2_half_to_f32(wb[b].d) * xb[b].d * (float)isum - g2_half_to_f32(wb[b].dmin) * xb[b].d * (float)msum;
    }
    return sum;
}

/* Q6_K: y = d scales[e/16] (q - 32). Element e = 128h + 32k + l keeps its low 4 bits in
 * ql[64h + l + 32(k&1)] (low nibble for k < 2) and its top 2 bits in qh[32h + l] at bit 2k. */
static float dot_q6_k(int64_t n, const void *w, const void *x) {
    const block_q6_k *wb = w;
    const block_q8_k *xb = x;
    float sum = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        int isum = 0;
        for (int g = 0; g < QK_K / 16; g++) {
            int qx = 0;
            for (int e = g * 16; e < g * 16 + 16; e++) {
                int h = e / 128, k = (e % 128) / 32, l = e % 32;
                int low = (wb[b].ql[64 * h + l + 32 * (k & 1)] >> (k < 2 ? 0 : 4)) & 15;
                int high = (wb[b].qh[32 * h + l] >> (2 * k)) & 3;
                qx += ((low | (high << 4)) - 32) * xb[b].qs[e];
            }
            isum += wb[b].scales[g] * qx;
        }
        sum += g2_half_to_f32(wb[b].d) * xb[b].d * (float)isum;
    }
    return sum;
}

/* ---- float weights x F32 ------------------------------------------------------------------ */
/* Eight running sums (as the SIMD kernels have at least eight lanes) keep the rounding error
 * of a long row near n/8 ulps rather than n. */

#define FLOAT_DOT(NAME, WTYPE, DECODE)                                                       \
    static float NAME(int64_t n, const void *w, const void *x) {                              \
        const WTYPE *wv = w;                                                                 \
        const float *xv = x;                                                                 \
        float acc[8] = {0};                                                                  \
        int64_t i = 0;                                                                       \
        for (; i + 8 <= n; i += 8)                                                           \
            for (int j = 0; j < 8; j++) acc[j] += DECODE(wv[i + j]) * xv[i + j];             \
        float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])); \
        for (; i < n; i++) sum += DECODE(wv[i]) * xv[i];                                     \
        return sum;                                                                          \
    }
#define AS_IS(v) (v)
FLOAT_DOT(dot_f32, float, AS_IS)
FLOAT_DOT(dot_f16, g2_half, g2_half_to_f32)
FLOAT_DOT(dot_bf16, uint16_t, g2_bf16_to_f32)

/* ---- matvec / matmul: one dot per output ---------------------------------------------------- */

#define SCALAR_DRIVERS(NAME)                                                                               \
    static void NAME##_matvec(int64_t n, int64_t nrows, const void *w, size_t wrb, const void *x, float *y) { \
        for (int64_t r = 0; r < nrows; r++) y[r] = dot_##NAME(n, (const uint8_t *)w + (size_t)r * wrb, x);  \
    }                                                                                                      \
    static void NAME##_matmul(int64_t n, int64_t nrows, const void *w, size_t wrb, int64_t ncols, const void *x, \
                              size_t xcb, float *y, size_t ys) {                                           \
        for (int64_t c = 0; c < ncols; c++)                                                                \
            NAME##_matvec(n, nrows, w, wrb, (const uint8_t *)x + (size_t)c * xcb, y + (size_t)c * ys);       \
    }
SCALAR_DRIVERS(q4_0)
SCALAR_DRIVERS(q4_1)
SCALAR_DRIVERS(q8_0)
SCALAR_DRIVERS(iq4_nl)
SCALAR_DRIVERS(q4_k)
SCALAR_DRIVERS(q5_k)
SCALAR_DRIVERS(q6_k)
SCALAR_DRIVERS(f32)
SCALAR_DRIVERS(f16)
SCALAR_DRIVERS(bf16)

/* x times W: each sum one fmaf per i, in order (the SIMD kernels' lanes do the same steps). */
#define FLOAT_XW(NAME, T, DECODE)                                                                            \
    static void NAME##_xw(int64_t k, int64_t n, const void *w, size_t wrb, int64_t m, const float *x, size_t xs, \
                          float *y, size_t ys) {                                                              \
        for (int64_t r = 0; r < m; r++)                                                                       \
            for (int64_t j = 0; j < n; j++) {                                                                 \
                float acc = 0;                                                                                \
                for (int64_t i = 0; i < k; i++) {                                                             \
                    T v;                                                                                      \
                    memcpy(&v, (const uint8_t *)w + (size_t)i * wrb + (size_t)j * sizeof v, sizeof v);        \
                    acc = fmaf(x[(size_t)r * xs + i], DECODE(v), acc);                                        \
                }                                                                                             \
                y[(size_t)r * ys + j] = acc;                                                                  \
            }                                                                                                 \
    }
FLOAT_XW(f32, float, AS_IS)
FLOAT_XW(f16, g2_half, g2_half_to_f32)
FLOAT_XW(bf16, uint16_t, g2_bf16_to_f32)

/* ---- the table ------------------------------------------------------------------------------ */

/* ---- the peak int8 rate (bench): one multiply-add of int8 values per step and accumulator ------ */

static uint64_t int8_peak_scalar(uint64_t iterations) {
    int32_t acc[SIMD_PEAK_CHAINS];
    volatile int8_t factor = 3; /* not a constant: a real multiply, not a shift and add */
    const int8_t m = factor;
    for (int k = 0; k < SIMD_PEAK_CHAINS; k++) acc[k] = k;
    for (uint64_t i = 0; i < iterations; i++)
        SIMD_PEAK_UNROLL for (int k = 0; k < SIMD_PEAK_CHAINS; k++) acc[k] += (int8_t)acc[k] * m;
    int32_t sum = 0;
    for (int k = 0; k < SIMD_PEAK_CHAINS; k++) sum += acc[k];
    volatile int32_t sink = sum; /* the chains' results are used */
    (void)sink;
    return iterations * SIMD_PEAK_CHAINS * 2;
}

SIMD_DECLARE_VECMATH(scalar)

static const simd_kernels table = {
    .name = "scalar",
    .needs = 0,
    .quantize_q8_0 = quantize_q8_0,
    .quantize_q8_k = quantize_q8_k,
    .types =
        {
            [SIMD_TYPE_Q4_0] = SIMD_TYPE_ROW(SIMD_TYPE_Q8_0, QK8_0, quantize_q8_0, q4_0),
            [SIMD_TYPE_Q4_1] = SIMD_TYPE_ROW(SIMD_TYPE_Q8_0, QK8_0, quantize_q8_0, q4_1),
            [SIMD_TYPE_Q8_0] = SIMD_TYPE_ROW(SIMD_TYPE_Q8_0, QK8_0, quantize_q8_0, q8_0),
            [SIMD_TYPE_IQ4_NL] = SIMD_TYPE_ROW(SIMD_TYPE_Q8_0, QK8_0, quantize_q8_0, iq4_nl),
            [SIMD_TYPE_Q4_K] = SIMD_TYPE_ROW(SIMD_TYPE_Q8_K, QK_K, quantize_q8_k, q4_k),
            [SIMD_TYPE_Q5_K] = SIMD_TYPE_ROW(SIMD_TYPE_Q8_K, QK_K, quantize_q8_k, q5_k),
            [SIMD_TYPE_Q6_K] = SIMD_TYPE_ROW(SIMD_TYPE_Q8_K, QK_K, quantize_q8_k, q6_k),
            [SIMD_TYPE_F32] = SIMD_FLOAT_TYPE_ROW(f32),
            [SIMD_TYPE_F16] = SIMD_FLOAT_TYPE_ROW(f16),
            [SIMD_TYPE_BF16] = SIMD_FLOAT_TYPE_ROW(bf16),
        },
    SIMD_VECMATH_ROW(scalar),
    .int8_peak = int8_peak_scalar,
};

const simd_kernels *simd_table_scalar(void) { return &table; }

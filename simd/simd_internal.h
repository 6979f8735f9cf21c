/* Private to simd/: what the per-ISA kernel files share. The per-block scale rules of the
 * activation quantizers (scalar in every ISA, so every ISA is byte-exact with the reference),
 * the K-quant scale unpacking, the vector-math constants, the driver that turns a kernel's
 * "R rows x C columns" tile into matvec and matmul, and the tables' getters. */
#ifndef GROK2_SIMD_INTERNAL_H
#define GROK2_SIMD_INTERNAL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "simd.h"

#define SIMD_ALWAYS_INLINE static inline __attribute__((always_inline))
/* On the R / C loops of a tile: fully unrolled, the accumulators become registers. */
#define SIMD_UNROLL _Pragma("GCC unroll 4")
/* The int8 peak loops: 12 accumulators, enough independent chains to cover the latency. */
#define SIMD_PEAK_CHAINS 12
#define SIMD_PEAK_UNROLL _Pragma("GCC unroll 12")

/* Weight rows are read once. The kernels prefetch the same place in the next tile's rows (R
 * rows on) as they go: far enough ahead that the lines arrive while this tile computes.
 * Prefetching a few hundred bytes ahead in the same row measured no better than the hardware
 * prefetcher; one tile ahead took Q4_0 matvec from 67% to ~90% of the read bandwidth.
 * Into L2 (locality 2: PREFETCHT1), not L1: on rows of 2048 weights the L1 hint held the
 * matvecs at 0.83-0.93 of the read bandwidth, the L2 hint gives 0.87-0.98 (q4_K, q6_K, q4_0;
 * no change on rows of 8192 and 16384); the non-temporal hint halves it.
 * __builtin_prefetch rather than _mm_prefetch: GCC 12 silently drops _mm_prefetch inside this
 * loop (its hint argument stops being the constant the builtin needs). */
SIMD_ALWAYS_INLINE void simd_prefetch_lines(const void *p, int lines) {
    for (int i = 0; i < lines; i++) __builtin_prefetch((const char *)p + 64 * i, 0, 2);
}

/* x times W (simd_xw_fn): up to this many rows of x share each vector of W's weights; their
 * loops fully unrolled, so the sums stay in registers. */
#define XW_ROWS 8
#define XW_UNROLL _Pragma("GCC unroll 8")
/* ... and W's rows prefetched this many on: a step of i takes ~8 cycles, and attention's K
 * tiles (64-byte rows) and V rows come from memory (decode at depth 2048: 4 rows on, 270 us
 * per layer; 16, 200; 64, 170-176; 128, 172-180) */
#define XW_PREFETCH_ROWS 64

/* x times W's drivers (simd_xw_fn) for an ISA file that has float_kind (W_F32, W_F16, W_BF16) and
 * xw_tile(M, kind, k, w, wrb, x, xs, y, ys, cols): M rows of x (a constant, 1..XW_ROWS) times
 * `cols` (1..COLS) columns of W. Columns COLS at a time, rows XW_ROWS at a time. */
#define SIMD_XW_CASE(M)                                                     \
    case M: xw_tile(M, kind, k, wj, wrb, xr, xs, yr, ys, cols); break;
#define SIMD_DEFINE_XW(COLS)                                                                                  \
    SIMD_ALWAYS_INLINE void float_xw(const float_kind kind, int64_t k, int64_t n, const void *w, size_t wrb,   \
                                     int64_t m, const float *x, size_t xs, float *y, size_t ys) {             \
        const size_t wsize = kind == W_F32 ? 4 : 2;                                                           \
        for (int64_t r0 = 0; r0 < m; r0 += XW_ROWS) {                                                         \
            int rows = m - r0 < XW_ROWS ? (int)(m - r0) : XW_ROWS;                                            \
            const float *xr = x + (size_t)r0 * xs;                                                            \
            for (int64_t j0 = 0; j0 < n; j0 += (COLS)) {                                                      \
                int cols = n - j0 < (COLS) ? (int)(n - j0) : (COLS);                                          \
                const uint8_t *wj = (const uint8_t *)w + (size_t)j0 * wsize;                                  \
                float *yr = y + (size_t)r0 * ys + j0;                                                         \
                switch (rows) {                                                                               \
                    SIMD_XW_CASE(8) SIMD_XW_CASE(7) SIMD_XW_CASE(6) SIMD_XW_CASE(5)                           \
                    SIMD_XW_CASE(4) SIMD_XW_CASE(3) SIMD_XW_CASE(2) SIMD_XW_CASE(1)                           \
                default: break;                                                                               \
                }                                                                                             \
            }                                                                                                 \
        }                                                                                                     \
    }                                                                                                         \
    static void f32_xw(int64_t k, int64_t n, const void *w, size_t wrb, int64_t m, const float *x, size_t xs, \
                       float *y, size_t ys) {                                                                 \
        float_xw(W_F32, k, n, w, wrb, m, x, xs, y, ys);                                                       \
    }                                                                                                         \
    static void f16_xw(int64_t k, int64_t n, const void *w, size_t wrb, int64_t m, const float *x, size_t xs, \
                       float *y, size_t ys) {                                                                 \
        float_xw(W_F16, k, n, w, wrb, m, x, xs, y, ys);                                                       \
    }                                                                                                         \
    static void bf16_xw(int64_t k, int64_t n, const void *w, size_t wrb, int64_t m, const float *x,           \
                        size_t xs, float *y, size_t ys) {                                                     \
        float_xw(W_BF16, k, n, w, wrb, m, x, xs, y, ys);                                                      \
    }

/* ---- the tables, one getter per ISA file; NULL when that ISA is not built here ------------ */
const simd_kernels *simd_table_scalar(void);
const simd_kernels *simd_table_avx2(void);
const simd_kernels *simd_table_avx512(void);
const simd_kernels *simd_table_avx512vnni(void);
const simd_kernels *simd_table_neon(void);
const simd_kernels *simd_table_neondot(void);

/* ---- activation quantizers: the per-block scale, shared by every ISA ----------------------- */

/* Q8_0: d = amax/127 stored as fp16; the quants are computed with the fp16-rounded d (so the
 * decoder's d*q is what was optimised), exactly as quant/'s g2_q8_0_from_float. The fp16
 * store clamps to the largest finite half and maps 0 to +0 (amax is never NaN: NaN inputs
 * are skipped by the max). Returns 1/d (0 when d is 0). */
SIMD_ALWAYS_INLINE float simd_q8_0_scale(float amax, g2_half *stored) {
    float d = amax / 127.0f;
    g2_half h = d == 0 ? 0 : g2_f32_to_half(d > 65504.0f ? 65504.0f : d);
    *stored = h;
    float dr = g2_half_to_f32(h);
    return dr != 0 ? 1.0f / dr : 0.0f;
}

/* Q8_K: d = amax/127 in f32, lowered to the largest value whose 127*d is finite when amax is
 * near FLT_MAX or infinite (quant/'s rule, which steps down with nextafterf: for a finite
 * amax, d <= FLT_MAX/127 and one step reaches this constant). Returns 1/d (0 when d is 0). */
#define SIMD_Q8_K_D_MAX 0x1.020406p+121f
SIMD_ALWAYS_INLINE float simd_q8_k_scale(float amax, float *stored) {
    float d = amax / 127.0f;
    if (d > SIMD_Q8_K_D_MAX) d = SIMD_Q8_K_D_MAX;
    *stored = d;
    return d > 0 ? 1.0f / d : 0.0f;
}

/* One quant: v = x * (1/d) rounded to nearest, ties to even, clamped to [-127, 127]; NaN goes
 * to -127 (quant/'s g2_round_clamp). The SIMD versions clamp in float with max(v, -127) (which
 * yields -127 for NaN) before converting with the default rounding mode. */
SIMD_ALWAYS_INLINE int8_t simd_q8_round(float v) {
    if (!(v > -127.0f)) return -127;
    if (v >= 127.0f) return 127;
    float t = v + 12582912.0f; /* 1.5 * 2^23: the rounded integer lands in the low mantissa */
    int32_t bits;
    memcpy(&bits, &t, sizeof bits);
    return (int8_t)((bits & 0x7fffff) - 0x400000);
}

/* ---- K-quant scales --------------------------------------------------------------------- */

/* Q4_K / Q5_K: the 8 six-bit scales and 8 six-bit mins from their 12-byte packing, as
 * out[0..7] = sc, out[8..15] = m (gguf-format.md). Three word operations instead of sixteen
 * byte extractions; the scalar reference spells out the per-j rule and the tests tie them. */
SIMD_ALWAYS_INLINE void simd_q4_k_scales(const uint8_t packed[K_SCALE_SIZE], uint8_t out[16]) {
    uint32_t u[4];
    memcpy(u, packed, K_SCALE_SIZE);
    const uint32_t low6 = 0x3f3f3f3f, low4 = 0x0f0f0f0f, top2 = 0x03030303;
    u[3] = ((u[2] >> 4) & low4) | (((u[1] >> 6) & top2) << 4); /* m[4..7] */
    uint32_t m_low = u[1] & low6;                                /* m[0..3] */
    u[1] = (u[2] & low4) | (((u[0] >> 6) & top2) << 4);         /* sc[4..7] */
    u[2] = m_low;
    u[0] &= low6; /* sc[0..3] */
    memcpy(out, u, 16);
}

/* ---- vector math: one algorithm, every ISA ------------------------------------------------ */
/* exp: x = n ln2 + r, |r| <= ln2/2, with ln2 split in two (Cody-Waite; n*LN2_HI is exact);
 * e^r by Cephes' degree-5 minimax polynomial (relative error ~1.2e-7 on the interval); the
 * result is p * 2^n applied as two exact power-of-two multiplies, 2^(n/2) * 2^(n - n/2), so
 * that n from -150 to 128 scales correctly into the subnormals and up to FLT_MAX with one
 * final rounding. x is clamped to [-104, 89] first (past those e^x is 0 or inf anyway). */
#define SIMD_EXP_LO -104.0f
#define SIMD_EXP_HI 89.0f
#define SIMD_LOG2E 1.44269504088896341f
#define SIMD_LN2_HI 0.693359375f
#define SIMD_LN2_LO -2.12194440e-4f
#define SIMD_EXP_P0 1.9875691500e-4f
#define SIMD_EXP_P1 1.3981999507e-3f
#define SIMD_EXP_P2 8.3334519073e-3f
#define SIMD_EXP_P3 4.1665795894e-2f
#define SIMD_EXP_P4 1.6666665459e-1f
#define SIMD_EXP_P5 5.0000001201e-1f

/* tanh: |x| < 0.625: x + x^3 P(x^2) (Cephes tanhf); else sign(x) (1 - 2 / (e^{2|x|} + 1)),
 * where the subtraction loses at most a bit (tanh >= 0.55 there). */
#define SIMD_TANH_SMALL 0.625f
#define SIMD_TANH_P0 -5.70498872745e-3f
#define SIMD_TANH_P1 2.06390887954e-2f
#define SIMD_TANH_P2 -5.37397155531e-2f
#define SIMD_TANH_P3 1.33314422036e-1f
#define SIMD_TANH_P4 -3.33332819422e-1f

/* gelu(x) = x Phi(x), Phi(x) = 1 - e for x >= 0 and e for x < 0, e = erfc(|x|/sqrt2)/2.
 * erfc(z) = t exp(-z^2 + P(t)), t = 1/(1 + z/2) (Numerical Recipes' erfcc, fractional error
 * < 1.2e-7 for all z >= 0). z^2 = x^2/2 is carried as hi + lo (an FMA gives x^2's rounding
 * error), so the large negative tail keeps its relative accuracy: e^-(hi) * e^(P - lo). Below
 * x = -20 the result is -0 (the true value is under 1e-88). */
#define SIMD_GELU_LO -20.0f
#define SIMD_ERFC_C0 -1.26551223f
#define SIMD_ERFC_C1 1.00002368f
#define SIMD_ERFC_C2 0.37409196f
#define SIMD_ERFC_C3 0.09678418f
#define SIMD_ERFC_C4 -0.18628806f
#define SIMD_ERFC_C5 0.27886807f
#define SIMD_ERFC_C6 -1.13520398f
#define SIMD_ERFC_C7 1.48851587f
#define SIMD_ERFC_C8 -0.82215223f
#define SIMD_ERFC_C9 0.17087277f
#define SIMD_SQRT1_2 0.707106781186547524f

/* ---- from a tile to matvec and matmul ----------------------------------------------------- */
/* Each SIMD kernel is written once as an always-inline tile: R weight rows against C
 * activation columns, y[c * ys + r] = dot(w + r * wrb, x + c * xcb), with R and C literal
 * constants at every call so the compiler keeps the R x C accumulators in registers. The
 * drivers below call it with (4, 1) for matvec (one pass over x serves 4 rows) and with
 * (1, 4) / (1, 3) / (1, 2) for matmul (one decode of a weight block serves 4 columns), rows
 * walked in chunks of SIMD_ROW_CHUNK so a chunk's weights stay in L1/L2 across the column
 * groups. TILE's signature:
 *   void TILE(int R, int C, int64_t n, const uint8_t *w, size_t wrb, const uint8_t *x,
 *             size_t xcb, float *y, size_t ys) */
#define SIMD_ROW_CHUNK 16

#define SIMD_DEFINE_DRIVERS(NAME, TILE) SIMD_DEFINE_MATVEC(NAME, TILE) SIMD_DEFINE_MATMUL(NAME, TILE)
/* The matvec alone, for kernels whose matmul has a driver of its own. */
#define SIMD_DEFINE_MATVEC(NAME, TILE)                                                                       \
    static void NAME##_matvec(int64_t n, int64_t nrows, const void *w, size_t wrb, const void *x, float *y) {  \
        const uint8_t *wp = (const uint8_t *)w;                                                              \
        int64_t r = 0;                                                                                       \
        for (; r + 4 <= nrows; r += 4) TILE(4, 1, n, wp + (size_t)r * wrb, wrb, (const uint8_t *)x, 0, y + r, 0); \
        for (; r < nrows; r++) TILE(1, 1, n, wp + (size_t)r * wrb, wrb, (const uint8_t *)x, 0, y + r, 0);      \
    }
#define SIMD_DEFINE_MATMUL(NAME, TILE)                                                                       \
    static void NAME##_matmul_block(int64_t n, int64_t nrows, const void *w, size_t wrb, int64_t ncols,       \
                                    const void *x, size_t xcb, float *y, size_t ys) {                        \
        const uint8_t *wp = (const uint8_t *)w, *xp = (const uint8_t *)x;                                    \
        for (int64_t r0 = 0; r0 < nrows; r0 += SIMD_ROW_CHUNK) {                                             \
            int64_t r1 = r0 + SIMD_ROW_CHUNK < nrows ? r0 + SIMD_ROW_CHUNK : nrows;                          \
            int64_t c = 0;                                                                                   \
            for (; c + 4 <= ncols; c += 4)                                                                   \
                for (int64_t r = r0; r < r1; r++)                                                            \
                    TILE(1, 4, n, wp + (size_t)r * wrb, wrb, xp + (size_t)c * xcb, xcb, y + (size_t)c * ys + r, ys); \
            switch (ncols - c) {                                                                             \
            case 3:                                                                                          \
                for (int64_t r = r0; r < r1; r++)                                                            \
                    TILE(1, 3, n, wp + (size_t)r * wrb, wrb, xp + (size_t)c * xcb, xcb, y + (size_t)c * ys + r, ys); \
                break;                                                                                       \
            case 2:                                                                                          \
                for (int64_t r = r0; r < r1; r++)                                                            \
                    TILE(1, 2, n, wp + (size_t)r * wrb, wrb, xp + (size_t)c * xcb, xcb, y + (size_t)c * ys + r, ys); \
                break;                                                                                       \
            case 1:                                                                                          \
                NAME##_matvec(n, r1 - r0, wp + (size_t)r0 * wrb, wrb, xp + (size_t)c * xcb, y + (size_t)c * ys + r0); \
                break;                                                                                       \
            default: break;                                                                                  \
            }                                                                                                \
        }                                                                                                    \
    }                                                                                                        \
    SIMD_DEFINE_BLOCKED_MATMUL(NAME, nrows)

/* Large batches (prefill chunks of hundreds of tokens): a matmul in blocks of SIMD_COL_BLOCK
 * columns, each over row blocks of row_block rows, so that one block's activations (<= 600 KB
 * at n = 8192 in Q8_K) and weights stay in L2 while they are reused; without it every row
 * chunk streams all columns' activations from memory, which halved the speed at 512 tokens. */
#define SIMD_COL_BLOCK 64
#define SIMD_ROW_BLOCK 64 /* for drivers that walk all their rows per column group */
static inline void simd_matmul_blocked(simd_matmul_fn block, int64_t row_block, int64_t n, int64_t nrows, const void *w,
                                       size_t wrb, int64_t ncols, const void *x, size_t xcb, float *y, size_t ys) {
    for (int64_t c0 = 0; c0 < ncols; c0 += SIMD_COL_BLOCK) {
        int64_t cn = ncols - c0 < SIMD_COL_BLOCK ? ncols - c0 : SIMD_COL_BLOCK;
        for (int64_t r0 = 0; r0 < nrows; r0 += row_block) {
            int64_t rn = nrows - r0 < row_block ? nrows - r0 : row_block;
            block(n, rn, (const uint8_t *)w + (size_t)r0 * wrb, wrb, cn, (const uint8_t *)x + (size_t)c0 * xcb, xcb,
                  y + (size_t)c0 * ys + r0, ys);
        }
    }
}

/* NAME##_matmul: NAME##_matmul_block over blocks of SIMD_COL_BLOCK columns and ROW_BLOCK rows
 * (nrows: all rows per column block). */
#define SIMD_DEFINE_BLOCKED_MATMUL(NAME, ROW_BLOCK)                                                             \
    static void NAME##_matmul(int64_t n, int64_t nrows, const void *w, size_t wrb, int64_t ncols, const void *x, \
                              size_t xcb, float *y, size_t ys) {                                                 \
        simd_matmul_blocked(NAME##_matmul_block, ROW_BLOCK, n, nrows, w, wrb, ncols, x, xcb, y, ys);             \
    }

/* A row of the per-type table; a float type's row also has its x-times-W kernel. */
#define SIMD_TYPE_ROW(ACT, BLOCK, QUANTIZE, PREFIX) {(ACT), (BLOCK), (QUANTIZE), PREFIX##_matvec, PREFIX##_matmul, NULL}
#define SIMD_FLOAT_TYPE_ROW(PREFIX) {SIMD_TYPE_F32, 1, simd_copy_f32, PREFIX##_matvec, PREFIX##_matmul, PREFIX##_xw}
/* The rows of every weight type with kernels, for a table's .types: the integer types' kernels
 * are named <type><SUFFIX>_matvec / _matmul (SUFFIX may be empty), the float types' f32_, f16_,
 * bf16_; Q8_0 and Q8_K are the ISA's activation quantizers. */
#define SIMD_TYPE_ROWS(Q8_0, Q8_K, SUFFIX)                                              \
    [SIMD_TYPE_Q4_0] = SIMD_TYPE_ROW(SIMD_TYPE_Q8_0, QK8_0, Q8_0, q4_0##SUFFIX),        \
    [SIMD_TYPE_Q4_1] = SIMD_TYPE_ROW(SIMD_TYPE_Q8_0, QK8_0, Q8_0, q4_1##SUFFIX),        \
    [SIMD_TYPE_Q8_0] = SIMD_TYPE_ROW(SIMD_TYPE_Q8_0, QK8_0, Q8_0, q8_0##SUFFIX),        \
    [SIMD_TYPE_IQ4_NL] = SIMD_TYPE_ROW(SIMD_TYPE_Q8_0, QK8_0, Q8_0, iq4_nl##SUFFIX),    \
    [SIMD_TYPE_Q4_K] = SIMD_TYPE_ROW(SIMD_TYPE_Q8_K, QK_K, Q8_K, q4_k##SUFFIX),         \
    [SIMD_TYPE_Q5_K] = SIMD_TYPE_ROW(SIMD_TYPE_Q8_K, QK_K, Q8_K, q5_k##SUFFIX),         \
    [SIMD_TYPE_Q6_K] = SIMD_TYPE_ROW(SIMD_TYPE_Q8_K, QK_K, Q8_K, q6_k##SUFFIX),         \
    [SIMD_TYPE_F32] = SIMD_FLOAT_TYPE_ROW(f32),                                         \
    [SIMD_TYPE_F16] = SIMD_FLOAT_TYPE_ROW(f16),                                         \
    [SIMD_TYPE_BF16] = SIMD_FLOAT_TYPE_ROW(bf16)

/* Each ISA's vecmath_<isa>.c defines these; its table points at them. */
#define SIMD_DECLARE_VECMATH(ISA)                                                        \
    void simd_exp_##ISA(const float *x, float *y, int64_t n);                            \
    void simd_tanh_##ISA(const float *x, float *y, int64_t n);                           \
    void simd_gelu_##ISA(const float *x, float *y, int64_t n);                           \
    void simd_softmax_##ISA(float *x, int64_t n);                                        \
    double simd_exp_sum_##ISA(float *x, int64_t n, float scale, float *max_out);         \
    void simd_rmsnorm_##ISA(const float *x, const float *w, float *y, int64_t n, float eps);
#define SIMD_VECMATH_ROW(ISA)                                                             \
    .exp = simd_exp_##ISA, .tanh = simd_tanh_##ISA, .gelu = simd_gelu_##ISA, .softmax = simd_softmax_##ISA, \
    .exp_sum = simd_exp_sum_##ISA, .rmsnorm = simd_rmsnorm_##ISA

/* Each ISA's quantize_<isa>.c defines these. */
#define SIMD_DECLARE_QUANTIZE(ISA)                                    \
    void simd_quantize_q8_0_##ISA(const float *x, void *out, int64_t n); \
    void simd_quantize_q8_k_##ISA(const float *x, void *out, int64_t n);

/* F32 partner "quantizer": a copy (shared by every ISA). */
void simd_copy_f32(const float *x, void *out, int64_t n);

/* Float weights' drivers: the matvec from TILE, the matmul from the ISA file's
 * float_row_columns(C, kind, n, w, wrb, x, xcb, y, ys), one row against up to 8 columns, every
 * group size (1 included) on that one path so a column's result does not depend on how many
 * columns came with it. */
#define FLOAT_MATMUL_CASE(C, KIND)                                                                                \
    case C:                                                                                                       \
        for (int64_t r = r0; r < r1; r++)                                                                         \
            float_row_columns(C, KIND, n, wp + (size_t)r * wrb, wrb, xp + (size_t)c * xcb, xcb, y + (size_t)c * ys + r, ys); \
        break;
#define FLOAT_DRIVERS(NAME, TILE, KIND)                                                                           \
    SIMD_DEFINE_MATVEC(NAME, TILE)                                                                                \
    static void NAME##_matmul_block(int64_t n, int64_t nrows, const void *w, size_t wrb, int64_t ncols,           \
                                    const void *x, size_t xcb, float *y, size_t ys) {                             \
        const uint8_t *wp = (const uint8_t *)w, *xp = (const uint8_t *)x;                                         \
        for (int64_t r0 = 0; r0 < nrows; r0 += SIMD_ROW_CHUNK) {                                                  \
            int64_t r1 = r0 + SIMD_ROW_CHUNK < nrows ? r0 + SIMD_ROW_CHUNK : nrows;                               \
            for (int64_t c = 0; c < ncols; c += 8) {                                                              \
                switch (ncols - c < 8 ? ncols - c : 8) {                                                          \
                    FLOAT_MATMUL_CASE(8, KIND)                                                                    \
                    FLOAT_MATMUL_CASE(7, KIND)                                                                    \
                    FLOAT_MATMUL_CASE(6, KIND)                                                                    \
                    FLOAT_MATMUL_CASE(5, KIND)                                                                    \
                    FLOAT_MATMUL_CASE(4, KIND)                                                                    \
                    FLOAT_MATMUL_CASE(3, KIND)                                                                    \
                    FLOAT_MATMUL_CASE(2, KIND)                                                                    \
                    FLOAT_MATMUL_CASE(1, KIND)                                                                    \
                default: break;                                                                                   \
                }                                                                                                 \
            }                                                                                                     \
        }                                                                                                         \
    }                                                                                                             \
    SIMD_DEFINE_BLOCKED_MATMUL(NAME, SIMD_ROW_BLOCK)

#endif

/* Dot kernels, NEON (AArch64), and the neon table. Compiled a second time by dot_neondot.c
 * with SIMD_NEON_DOTPROD and -march=armv8.2-a+dotprod for the neondot table: the only
 * difference is dot_s8, SDOT there, SMULL + SADALP here. Both multiply signed by signed
 * bytes, so unlike x86 no sign tricks are needed: a weight's offset (Q4_0's -8, Q6_K's -32)
 * is subtracted from the quants before the product. SMULL of two int8 is at most 2^14 in
 * magnitude, so the int16 products cannot overflow; SADALP and SDOT accumulate in int32.
 * Each block's int32 lanes are converted to float and scaled by d_w * d_x with one FMA. */
#include "simd_internal.h"

#if !defined(SIMD_NEON_DOTPROD)
#define SIMD_NEON_DOTPROD 0
#endif

#if defined(__aarch64__) && defined(__ARM_NEON) && (!SIMD_NEON_DOTPROD || defined(__ARM_FEATURE_DOTPROD))
#include <arm_neon.h>

SIMD_DECLARE_QUANTIZE(neon)
SIMD_DECLARE_VECMATH(neon)

static inline float half_f32(g2_half h) {
    __fp16 f;
    memcpy(&f, &h, 2);
    return (float)f;
}

/* acc + sum of a[i] * b[i] over each 4 bytes (lanes hold partial sums; only totals matter) */
static inline int32x4_t dot_s8(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if SIMD_NEON_DOTPROD
    return vdotq_s32(acc, a, b);
#else
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
#endif
}

#define TILE_BEGIN                              \
    float32x4_t acc[4][4];                      \
    SIMD_UNROLL for (int r = 0; r < R; r++)     \
        SIMD_UNROLL for (int c = 0; c < C; c++) acc[r][c] = vdupq_n_f32(0);
#define TILE_END                                \
    SIMD_UNROLL for (int r = 0; r < R; r++)     \
        SIMD_UNROLL for (int c = 0; c < C; c++) y[c * ys + r] = vaddvq_f32(acc[r][c]);

/* ---- 32-blocks x Q8_0 ------------------------------------------------------------------------ */

typedef enum { K_Q4_0, K_Q4_1, K_Q8_0, K_IQ4_NL } block32_kind;

/* Byte j of a 4-bit block holds element j (low nibble) and j + 16 (high): two registers. */
SIMD_ALWAYS_INLINE void block32_tile(const int R, const int C, const block32_kind kind, int64_t n, const uint8_t *w,
                                     size_t wrb, const uint8_t *x, size_t xcb, float *y, size_t ys) {
    TILE_BEGIN
    const int8x16_t codebook = vld1q_s8(g2_iq4nl_values), ones = vdupq_n_s8(1);
    const size_t wbytes = kind == K_Q4_0 ? sizeof(block_q4_0)
                          : kind == K_Q4_1 ? sizeof(block_q4_1)
                          : kind == K_Q8_0 ? sizeof(block_q8_0)
                                           : sizeof(block_iq4_nl);
    for (int64_t ib = 0; ib < n / QK8_0; ib++) {
        int8x16_t x0[4], x1[4];
        float32x4_t xsum[4];
        float dx[4];
        SIMD_UNROLL for (int c = 0; c < C; c++) {
            const block_q8_0 *xb = (const block_q8_0 *)(x + c * xcb) + ib;
            x0[c] = vld1q_s8(xb->qs);
            x1[c] = vld1q_s8(xb->qs + 16);
            dx[c] = half_f32(xb->d);
            if (kind == K_Q4_1) xsum[c] = vcvtq_f32_s32(dot_s8(dot_s8(vdupq_n_s32(0), ones, x0[c]), ones, x1[c]));
        }
        SIMD_UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *blk = w + r * wrb + ib * wbytes;
            simd_prefetch_lines(blk + (size_t)R * wrb, 1); /* the next tile's rows */
            float dw = half_f32(((const block_q4_0 *)blk)->d), mw = 0; /* d first in every kind */
            int8x16_t w0, w1;
            if (kind == K_Q8_0) {
                w0 = vld1q_s8(((const block_q8_0 *)blk)->qs);
                w1 = vld1q_s8(((const block_q8_0 *)blk)->qs + 16);
            } else {
                uint8x16_t raw = vld1q_u8(kind == K_Q4_1 ? ((const block_q4_1 *)blk)->qs : ((const block_q4_0 *)blk)->qs);
                uint8x16_t lo = vandq_u8(raw, vdupq_n_u8(15)), hi = vshrq_n_u8(raw, 4);
                if (kind == K_IQ4_NL) {
                    w0 = vqtbl1q_s8(codebook, lo);
                    w1 = vqtbl1q_s8(codebook, hi);
                } else if (kind == K_Q4_0) {
                    w0 = vsubq_s8(vreinterpretq_s8_u8(lo), vdupq_n_s8(8));
                    w1 = vsubq_s8(vreinterpretq_s8_u8(hi), vdupq_n_s8(8));
                } else {
                    w0 = vreinterpretq_s8_u8(lo);
                    w1 = vreinterpretq_s8_u8(hi);
                    mw = half_f32(((const block_q4_1 *)blk)->m);
                }
            }
            SIMD_UNROLL for (int c = 0; c < C; c++) {
                int32x4_t p = dot_s8(dot_s8(vdupq_n_s32(0), w0, x0[c]), w1, x1[c]);
                acc[r][c] = vfmaq_n_f32(acc[r][c], vcvtq_f32_s32(p), dw * dx[c]);
                if (kind == K_Q4_1) acc[r][c] = vfmaq_n_f32(acc[r][c], xsum[c], mw * dx[c]);
            }
        }
    }
    TILE_END
}

/* ---- K-quants x Q8_K ------------------------------------------------------------------------ */

/* sum_j m[j] (bsums[2j] + bsums[2j+1]) */
static inline int32_t k_min_sum(const uint8_t mins[8], const int16_t bsums[16]) {
    int16x8_t pairs = vpaddq_s16(vld1q_s16(bsums), vld1q_s16(bsums + 8));
    int16x8_t m = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mins)));
    int32x4_t s = vmull_s16(vget_low_s16(m), vget_low_s16(pairs));
    return vaddvq_s32(vmlal_high_s16(s, m, pairs));
}

/* Q4_K / Q5_K: chunk j of 32 qs bytes gives sub-block 2j (low nibbles) and 2j+1 (high), each
 * two registers of 16; the 6-bit scale multiplies the sub-block's int32 lanes. Q5_K's fifth
 * bits: bit j of qh[l]; shifting qh right by 2 per chunk brings bits 2j, 2j+1 to 0 and 1. */
SIMD_ALWAYS_INLINE void k45_tile(const int R, const int C, const bool five_bit, int64_t n, const uint8_t *w,
                                 size_t wrb, const uint8_t *x, size_t xcb, float *y, size_t ys) {
    TILE_BEGIN
    float mins_acc[4][4] = {{0}};
    const size_t block_bytes = five_bit ? sizeof(block_q5_k) : sizeof(block_q4_k);
    const uint8x16_t low4 = vdupq_n_u8(15), one = vdupq_n_u8(1), two = vdupq_n_u8(2);
    for (int64_t ib = 0; ib < n / QK_K; ib++) {
        uint8_t scales[4][16];
        const uint8_t *qs[4];
        uint8x16_t qh[4][2];
        float d[4], dmin[4];
        SIMD_UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *blk = w + r * wrb + ib * block_bytes;
            simd_prefetch_lines(blk + (size_t)R * wrb, 3);
            const block_q4_k *hdr = (const block_q4_k *)blk; /* Q5_K shares d, dmin, scales */
            d[r] = half_f32(hdr->d);
            dmin[r] = half_f32(hdr->dmin);
            simd_q4_k_scales(hdr->scales, scales[r]);
            qs[r] = five_bit ? ((const block_q5_k *)blk)->qs : hdr->qs;
            if (five_bit) {
                qh[r][0] = vld1q_u8(((const block_q5_k *)blk)->qh);
                qh[r][1] = vld1q_u8(((const block_q5_k *)blk)->qh + 16);
            }
        }
        const block_q8_k *xb[4];
        SIMD_UNROLL for (int c = 0; c < C; c++) xb[c] = (const block_q8_k *)(x + c * xcb) + ib;
        int32x4_t isum[4][4];
        SIMD_UNROLL for (int r = 0; r < R; r++)
            SIMD_UNROLL for (int c = 0; c < C; c++) isum[r][c] = vdupq_n_s32(0);
        SIMD_UNROLL for (int j = 0; j < 4; j++) {
            SIMD_UNROLL for (int r = 0; r < R; r++) {
                uint8x16_t raw0 = vld1q_u8(qs[r] + 32 * j), raw1 = vld1q_u8(qs[r] + 32 * j + 16);
                uint8x16_t lo0 = vandq_u8(raw0, low4), lo1 = vandq_u8(raw1, low4);
                uint8x16_t hi0 = vshrq_n_u8(raw0, 4), hi1 = vshrq_n_u8(raw1, 4);
                if (five_bit) {
                    lo0 = vorrq_u8(lo0, vshlq_n_u8(vandq_u8(qh[r][0], one), 4));
                    lo1 = vorrq_u8(lo1, vshlq_n_u8(vandq_u8(qh[r][1], one), 4));
                    hi0 = vorrq_u8(hi0, vshlq_n_u8(vandq_u8(qh[r][0], two), 3));
                    hi1 = vorrq_u8(hi1, vshlq_n_u8(vandq_u8(qh[r][1], two), 3));
                    qh[r][0] = vshrq_n_u8(qh[r][0], 2);
                    qh[r][1] = vshrq_n_u8(qh[r][1], 2);
                }
                SIMD_UNROLL for (int c = 0; c < C; c++) {
                    const int8_t *xq = xb[c]->qs + 64 * j;
                    int32x4_t plo = dot_s8(dot_s8(vdupq_n_s32(0), vreinterpretq_s8_u8(lo0), vld1q_s8(xq)),
                                           vreinterpretq_s8_u8(lo1), vld1q_s8(xq + 16));
                    int32x4_t phi = dot_s8(dot_s8(vdupq_n_s32(0), vreinterpretq_s8_u8(hi0), vld1q_s8(xq + 32)),
                                           vreinterpretq_s8_u8(hi1), vld1q_s8(xq + 48));
                    isum[r][c] = vmlaq_n_s32(isum[r][c], plo, scales[r][2 * j]);
                    isum[r][c] = vmlaq_n_s32(isum[r][c], phi, scales[r][2 * j + 1]);
                }
            }
        }
        SIMD_UNROLL for (int r = 0; r < R; r++)
            SIMD_UNROLL for (int c = 0; c < C; c++) {
                acc[r][c] = vfmaq_n_f32(acc[r][c], vcvtq_f32_s32(isum[r][c]), d[r] * xb[c]->d);
                mins_acc[r][c] += dmin[r] * xb[c]->d * (float)k_min_sum(scales[r] + 8, xb[c]->bsums);
            }
    }
    SIMD_UNROLL for (int r = 0; r < R; r++)
        SIMD_UNROLL for (int c = 0; c < C; c++) y[c * ys + r] = vaddvq_f32(acc[r][c]) - mins_acc[r][c];
}

/* Q6_K: quarter k of half h (elements 128h + 32k + l) has its low 4 bits in
 * ql[64h + 32(k&1) + l] (low nibble for k < 2) and its top 2 in qh[32h + l] at bits 2k; each
 * 16-byte register is one sub-block, whose int8 scale multiplies its int32 lanes. */
SIMD_ALWAYS_INLINE void q6_k_tile(const int R, const int C, int64_t n, const uint8_t *w, size_t wrb, const uint8_t *x,
                                  size_t xcb, float *y, size_t ys) {
    TILE_BEGIN
    const uint8x16_t low4 = vdupq_n_u8(15), low2 = vdupq_n_u8(3);
    const int8x16_t offset = vdupq_n_s8(32);
    for (int64_t ib = 0; ib < n / QK_K; ib++) {
        const block_q6_k *wb[4];
        const block_q8_k *xb[4];
        int32x4_t isum[4][4];
        SIMD_UNROLL for (int r = 0; r < R; r++) {
            wb[r] = (const block_q6_k *)(w + r * wrb) + ib;
            simd_prefetch_lines((const char *)wb[r] + (size_t)R * wrb, 4);
        }
        SIMD_UNROLL for (int c = 0; c < C; c++) xb[c] = (const block_q8_k *)(x + c * xcb) + ib;
        SIMD_UNROLL for (int r = 0; r < R; r++)
            SIMD_UNROLL for (int c = 0; c < C; c++) isum[r][c] = vdupq_n_s32(0);
        SIMD_UNROLL for (int h = 0; h < 2; h++) {
            SIMD_UNROLL for (int r = 0; r < R; r++) {
                SIMD_UNROLL for (int half16 = 0; half16 < 2; half16++) { /* l in 0..15, then 16..31 */
                    const uint8_t *ql = wb[r]->ql + 64 * h + 16 * half16;
                    uint8x16_t qa = vld1q_u8(ql), qb = vld1q_u8(ql + 32);
                    uint8x16_t qh = vld1q_u8(wb[r]->qh + 32 * h + 16 * half16);
                    uint8x16_t q[4] = {
                        vorrq_u8(vandq_u8(qa, low4), vshlq_n_u8(vandq_u8(qh, low2), 4)),
                        vorrq_u8(vandq_u8(qb, low4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 2), low2), 4)),
                        vorrq_u8(vshrq_n_u8(qa, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 4), low2), 4)),
                        vorrq_u8(vshrq_n_u8(qb, 4), vshlq_n_u8(vshrq_n_u8(qh, 6), 4)),
                    };
                    SIMD_UNROLL for (int k = 0; k < 4; k++) {
                        int8x16_t qs = vsubq_s8(vreinterpretq_s8_u8(q[k]), offset);
                        int g = 8 * h + 2 * k + half16, e = 128 * h + 32 * k + 16 * half16;
                        SIMD_UNROLL for (int c = 0; c < C; c++) {
                            int32x4_t p = dot_s8(vdupq_n_s32(0), qs, vld1q_s8(xb[c]->qs + e));
                            isum[r][c] = vmlaq_n_s32(isum[r][c], p, wb[r]->scales[g]);
                        }
                    }
                }
            }
        }
        SIMD_UNROLL for (int r = 0; r < R; r++)
            SIMD_UNROLL for (int c = 0; c < C; c++)
                acc[r][c] = vfmaq_n_f32(acc[r][c], vcvtq_f32_s32(isum[r][c]), half_f32(wb[r]->d) * xb[c]->d);
    }
    TILE_END
}

/* ---- float weights x F32 --------------------------------------------------------------------------- */

typedef enum { W_F32, W_F16, W_BF16 } float_kind;

SIMD_ALWAYS_INLINE float32x4_t load_w4(const float_kind kind, const uint8_t *p) {
    if (kind == W_F32) return vld1q_f32((const float *)p);
    uint16x4_t h = vld1_u16((const uint16_t *)p);
    if (kind == W_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

SIMD_ALWAYS_INLINE void float_tile(const int R, const int C, const float_kind kind, int64_t n, const uint8_t *w,
                                   size_t wrb, const uint8_t *x, size_t xcb, float *y, size_t ys) {
    /* two registers per row and column: eight lanes of running sums, like the other ISAs */
    float32x4_t acc[4][4][2];
    SIMD_UNROLL for (int r = 0; r < R; r++)
        SIMD_UNROLL for (int c = 0; c < C; c++) acc[r][c][0] = acc[r][c][1] = vdupq_n_f32(0);
    const size_t wsize = kind == W_F32 ? 4 : 2;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4_t xv[4][2];
        SIMD_UNROLL for (int c = 0; c < C; c++) {
            xv[c][0] = vld1q_f32((const float *)(x + c * xcb) + i);
            xv[c][1] = vld1q_f32((const float *)(x + c * xcb) + i + 4);
        }
        SIMD_UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *wp = w + r * wrb + (size_t)i * wsize;
            simd_prefetch_lines(wp + (size_t)R * wrb, 1);
            float32x4_t w0 = load_w4(kind, wp), w1 = load_w4(kind, wp + 4 * wsize);
            SIMD_UNROLL for (int c = 0; c < C; c++) {
                acc[r][c][0] = vfmaq_f32(acc[r][c][0], w0, xv[c][0]);
                acc[r][c][1] = vfmaq_f32(acc[r][c][1], w1, xv[c][1]);
            }
        }
    }
    if (i < n) { /* the tail on zero-padded copies */
        size_t rest = (size_t)(n - i);
        float xpad[4][8] = {{0}};
        uint8_t wpad[4][32] = {{0}};
        SIMD_UNROLL for (int c = 0; c < C; c++) memcpy(xpad[c], (const float *)(x + c * xcb) + i, rest * 4);
        SIMD_UNROLL for (int r = 0; r < R; r++) memcpy(wpad[r], w + r * wrb + (size_t)i * wsize, rest * wsize);
        SIMD_UNROLL for (int r = 0; r < R; r++) {
            float32x4_t w0 = load_w4(kind, wpad[r]), w1 = load_w4(kind, wpad[r] + 4 * wsize);
            SIMD_UNROLL for (int c = 0; c < C; c++) {
                acc[r][c][0] = vfmaq_f32(acc[r][c][0], w0, vld1q_f32(xpad[c]));
                acc[r][c][1] = vfmaq_f32(acc[r][c][1], w1, vld1q_f32(xpad[c] + 4));
            }
        }
    }
    SIMD_UNROLL for (int r = 0; r < R; r++)
        SIMD_UNROLL for (int c = 0; c < C; c++) y[c * ys + r] = vaddvq_f32(vaddq_f32(acc[r][c][0], acc[r][c][1]));
}

/* ---- drivers and the table --------------------------------------------------------------------- */

#define q4_0_tile(R, C, ...) block32_tile(R, C, K_Q4_0, __VA_ARGS__)
#define q4_1_tile(R, C, ...) block32_tile(R, C, K_Q4_1, __VA_ARGS__)
#define q8_0_tile(R, C, ...) block32_tile(R, C, K_Q8_0, __VA_ARGS__)
#define iq4_nl_tile(R, C, ...) block32_tile(R, C, K_IQ4_NL, __VA_ARGS__)
#define q4_k_tile(R, C, ...) k45_tile(R, C, false, __VA_ARGS__)
#define q5_k_tile(R, C, ...) k45_tile(R, C, true, __VA_ARGS__)
#define f32_tile(R, C, ...) float_tile(R, C, W_F32, __VA_ARGS__)
#define f16_tile(R, C, ...) float_tile(R, C, W_F16, __VA_ARGS__)
#define bf16_tile(R, C, ...) float_tile(R, C, W_BF16, __VA_ARGS__)
SIMD_DEFINE_DRIVERS(q4_0, q4_0_tile)
SIMD_DEFINE_DRIVERS(q4_1, q4_1_tile)
SIMD_DEFINE_DRIVERS(q8_0, q8_0_tile)
SIMD_DEFINE_DRIVERS(iq4_nl, iq4_nl_tile)
SIMD_DEFINE_DRIVERS(q4_k, q4_k_tile)
SIMD_DEFINE_DRIVERS(q5_k, q5_k_tile)
SIMD_DEFINE_DRIVERS(q6_k, q6_k_tile)
SIMD_DEFINE_DRIVERS(f32, f32_tile)
SIMD_DEFINE_DRIVERS(f16, f16_tile)
SIMD_DEFINE_DRIVERS(bf16, bf16_tile)

/* ---- x times W (simd_xw_fn) ----------------------------------------------------------------------- */

/* M rows of x (M <= XW_ROWS) times 8 columns of W in two registers (the first `cols`: the rest
 * of a row is read through a zero-padded copy): each W vector converted once for the M rows,
 * FMLA by each x element, M x 2 sums in registers, no horizontal sum. */
SIMD_ALWAYS_INLINE void xw_tile(const int M, const float_kind kind, int64_t k, const uint8_t *w, size_t wrb,
                                const float *x, size_t xs, float *y, size_t ys, int cols) {
    float32x4_t acc[XW_ROWS][2];
    XW_UNROLL for (int r = 0; r < M; r++) acc[r][0] = acc[r][1] = vdupq_n_f32(0);
    const size_t wsize = kind == W_F32 ? 4 : 2;
    for (int64_t i = 0; i < k; i++) {
        const uint8_t *wi = w + (size_t)i * wrb;
        simd_prefetch_lines(wi + XW_PREFETCH_ROWS * wrb, 1);
        uint8_t pad[32] = {0};
        if (cols < 8) {
            memcpy(pad, wi, (size_t)cols * wsize);
            wi = pad;
        }
        float32x4_t w0 = load_w4(kind, wi), w1 = load_w4(kind, wi + 4 * wsize);
        XW_UNROLL for (int r = 0; r < M; r++) {
            float xv = x[(size_t)r * xs + i];
            acc[r][0] = vfmaq_n_f32(acc[r][0], w0, xv);
            acc[r][1] = vfmaq_n_f32(acc[r][1], w1, xv);
        }
    }
    XW_UNROLL for (int r = 0; r < M; r++) {
        float out[8];
        vst1q_f32(out, acc[r][0]);
        vst1q_f32(out + 4, acc[r][1]);
        memcpy(y + (size_t)r * ys, out, (size_t)cols * sizeof(float));
    }
}

SIMD_DEFINE_XW(8)

/* ---- the peak int8 rate (bench): each accumulator feeds its own next step ----------------------- */

static uint64_t int8_peak_neon(uint64_t iterations) {
    int32x4_t acc[SIMD_PEAK_CHAINS];
    const int8x16_t s = vdupq_n_s8(1);
    SIMD_PEAK_UNROLL for (int k = 0; k < SIMD_PEAK_CHAINS; k++) acc[k] = vdupq_n_s32(k);
    for (uint64_t i = 0; i < iterations; i++)
        SIMD_PEAK_UNROLL for (int k = 0; k < SIMD_PEAK_CHAINS; k++) acc[k] = dot_s8(acc[k], vreinterpretq_s8_s32(acc[k]), s);
    int32x4_t sum = acc[0];
    for (int k = 1; k < SIMD_PEAK_CHAINS; k++) sum = vaddq_s32(sum, acc[k]);
    volatile int32_t sink = vgetq_lane_s32(sum, 0); /* the chains' results are used */
    (void)sink;
    return iterations * SIMD_PEAK_CHAINS * 16 * 2;
}

static const simd_kernels table = {
    .name = SIMD_NEON_DOTPROD ? "neondot" : "neon",
    .needs = SIMD_CPU_NEON | (SIMD_NEON_DOTPROD ? SIMD_CPU_DOTPROD : 0),
    .quantize_q8_0 = simd_quantize_q8_0_neon,
    .quantize_q8_k = simd_quantize_q8_k_neon,
    .types = {SIMD_TYPE_ROWS(simd_quantize_q8_0_neon, simd_quantize_q8_k_neon, )},
    SIMD_VECMATH_ROW(neon),
    .int8_peak = int8_peak_neon,
};

#if SIMD_NEON_DOTPROD
const simd_kernels *simd_table_neondot(void) { return &table; }
#else
const simd_kernels *simd_table_neon(void) { return &table; }
#endif

#elif SIMD_NEON_DOTPROD
const simd_kernels *simd_table_neondot(void) { return NULL; } /* not aarch64, or built without +dotprod */
#else
const simd_kernels *simd_table_neon(void) { return NULL; } /* not aarch64 */
#endif

/* Dot kernels, AVX2 + FMA + F16C, and the avx2 table. The K-quant, Q8_0 and float kernels are
 * always-inline tiles (R rows x C columns, simd_internal.h) that the shared drivers turn into
 * matvec and matmul; the 4-bit 32-blocks have their own drivers around activations prepared
 * once per call. Integer products: _mm256_maddubs_epi16 multiplies unsigned by signed bytes
 * and adds pairs into int16, _mm256_madd_epi16 then adds pairs into int32 (by 1, or by the
 * sub-block scales). Neither saturates here: the unsigned side is at most 128 (a nibble, a
 * 5/6-bit quant, or |int8|) and the signed side an activation in [-127, 127], so a pair is at
 * most 2 * 128 * 127 < 32767. Each block's int32 lane sums are converted to float and scaled by
 * d_w * d_x with one FMA per lane: exact integers, one rounding per product. Every kernel
 * prefetches one tile of rows ahead (simd_internal.h). */
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include "kquant_x86.h"

SIMD_DECLARE_QUANTIZE(avx2)
SIMD_DECLARE_VECMATH(avx2)

static inline float half_f32(g2_half h) { return _cvtsh_ss(h); }

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Lane c of the result: the sum of v[c]'s 8 lanes, for c < C (other lanes 0). One register
 * of column sums in 9 instructions instead of a horizontal sum per column. */
SIMD_ALWAYS_INLINE __m256 hsum_columns(const int C, const __m256 v[8]) {
    const __m256 zero = _mm256_setzero_ps();
    __m256 t0 = _mm256_hadd_ps(v[0], C > 1 ? v[1] : zero);
    __m256 t1 = C > 2 ? _mm256_hadd_ps(v[2], C > 3 ? v[3] : zero) : zero;
    __m256 t2 = C > 4 ? _mm256_hadd_ps(v[4], C > 5 ? v[5] : zero) : zero;
    __m256 t3 = C > 6 ? _mm256_hadd_ps(v[6], C > 7 ? v[7] : zero) : zero;
    /* u0: [low-half sums of v0..v3 | high-half sums of v0..v3], u1 the same for v4..v7 */
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* sum of u[i] * s[i] over each 4 bytes -> 8 int32 (see the bound above) */
static inline __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* Column loops of up to 8 (matmul): fully unrolled, the accumulators stay in registers. */
#define COL_UNROLL _Pragma("GCC unroll 8")
#define TILE_BEGIN                              \
    __m256 acc[4][8];                           \
    SIMD_UNROLL for (int r = 0; r < R; r++)     \
        COL_UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
#define TILE_END                                                     \
    if (R == 1 && C > 1) { /* matmul: the columns' sums at once */   \
        float sums[8];                                               \
        _mm256_storeu_ps(sums, hsum_columns(C, acc[0]));             \
        COL_UNROLL for (int c = 0; c < C; c++) y[c * ys] = sums[c];  \
    } else {                                                         \
        SIMD_UNROLL for (int r = 0; r < R; r++)                      \
            SIMD_UNROLL for (int c = 0; c < C; c++) y[c * ys + r] = hsum(acc[r][c]); \
    }

/* ---- 4-bit 32-blocks x Q8_0: quads of blocks against prepared activations ----------------- */
/* Q4_0, Q4_1 and IQ4_NL take a quad of 4 blocks as two pairs, one block in each 128-bit half of
 * a register: its 16 packed bytes give two planes, the low nibbles (elements 0..15) and the
 * high (16..31). The activation side is prepared once per call in the matching shape, x[0..15]
 * and x[16..31] of each block per half, with each lane's integer start value (-8 sum x for
 * Q4_0) and scale dx, so a row pays only for its own bytes. The two pairs' int16 pair sums are
 * merged by one VPHADDW before VPMADDWD (for Q4_0/Q4_1 an int16 lane of one plane is at most
 * 2 * 15 * 127; two planes, then two lanes added: 4 * 2 * 15 * 127 = 15240 still fits; IQ4_NL's
 * signed codebook values merge as int32 by VPHADDD), so each int32 lane holds 16 products of one
 * block, lanes [b0 b0 b2 b2 | b1 b1 b3 b3], and one conversion and one FMA per column cover
 * the quad: per column and quad, four VPMADDUBSW, one VPMADDWD and three float operations. */

/* quads prepared at once by matvec: 32768 weights, 56 KB of stack (why so many: GROUPS_MV in
 * dot_avx512.c; rows of 16384 in two passes: 0.71-0.83 of the read bandwidth, in one 0.95-1.07) */
#define QUADS_MV 256
#define QUADS_MM 16 /* by matmul, per column (NIBBLE_COLS at a time): 2048 weights, 28 KB */
/* Columns per pass over a row's blocks in matmul: the row's quads are decoded once for 8
 * columns (8 accumulators + the quad's four planes and scales: the 16 registers). */
#define NIBBLE_COLS 8

typedef enum { K_Q4_0, K_Q4_1, K_IQ4_NL } nibble_kind;

typedef struct {
    __m256i lo[2], hi[2]; /* pair p: x[0..15] | x[16..31] of block 2p in the low half, 2p+1 in the high */
    __m256i init;         /* each lane's integer start value, lanes [b0 b0 b2 b2 | b1 b1 b3 b3] */
    __m256 dx;            /* each lane's activation scale */
    __m256 sumx;          /* Q4_1: each lane's sum of x, as float (for the min term) */
} xquad;

static inline size_t nibble_bytes(nibble_kind kind) { return kind == K_Q4_1 ? sizeof(block_q4_1) : sizeof(block_q4_0); }

/* Activations of blocks xb[0 .. count-1] (count 1..4; a missing block counts as zero). */
SIMD_ALWAYS_INLINE void prep_quad(const nibble_kind kind, const block_q8_0 *xb, int count, xquad *p) {
    const __m256i ones = _mm256_set1_epi8(1);
    float d[4];
    __m128i lo[4], hi[4];
    for (int j = 0; j < 4; j++) {
        d[j] = j < count ? half_f32(xb[j].d) : 0.0f;
        lo[j] = j < count ? _mm_loadu_si128((const __m128i *)xb[j].qs) : _mm_setzero_si128();
        hi[j] = j < count ? _mm_loadu_si128((const __m128i *)(xb[j].qs + 16)) : _mm_setzero_si128();
    }
    __m256i pairs[2];
    for (int q = 0; q < 2; q++) {
        p->lo[q] = _mm256_set_m128i(lo[2 * q + 1], lo[2 * q]);
        p->hi[q] = _mm256_set_m128i(hi[2 * q + 1], hi[2 * q]);
        pairs[q] = _mm256_add_epi16(_mm256_maddubs_epi16(ones, p->lo[q]), _mm256_maddubs_epi16(ones, p->hi[q]));
    }
    /* the weights' path with all weights 1: each lane's sum of x */
    __m256i sum = _mm256_madd_epi16(_mm256_hadd_epi16(pairs[0], pairs[1]), _mm256_set1_epi16(1));
    p->init = kind == K_Q4_0 ? _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sum, 3)) : _mm256_setzero_si256();
    p->dx = _mm256_setr_ps(d[0], d[0], d[2], d[2], d[1], d[1], d[3], d[3]);
    p->sumx = kind == K_Q4_1 ? _mm256_cvtepi32_ps(sum) : _mm256_setzero_ps();
}

/* A quad's fp16 at byte offset `lo` of each block, in the lanes' order [b0 b0 b2 b2 | b1 b1 b3 b3]:
 * a 32-byte load at each pair's start holds the pair's two values (block 2p's at byte lo of the
 * low half, block 2p+1's at byte `hi` of the high half); a byte shuffle spreads them, a blend
 * interleaves the pairs and a qword permute packs them for one conversion. */
SIMD_ALWAYS_INLINE __m256 quad_halves(const uint8_t *b0, size_t wbytes, const int lo, const int hi) {
    const __m256i spread = _mm256_setr_epi8(lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, lo,
                                            lo + 1, lo, lo + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1,
                                            hi, hi + 1, hi, hi + 1, hi, hi + 1);
    __m256i p0 = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)b0), spread);
    __m256i p1 = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(b0 + 2 * wbytes)), spread);
    __m256i h = _mm256_blend_epi32(p0, p1, 0xaa); /* dwords: [d0 d0, d2 d2, .. | d1 d1, d3 d3, ..] */
    return _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64(h, _MM_SHUFFLE(2, 0, 2, 0))));
}

/* R rows x C prepared columns over nquads quads starting at block blk0 of each row; the last
 * quad has `last` blocks (1..4). y[c * ys + r] is set, or added to when `add`. */
SIMD_ALWAYS_INLINE void nibble_rows(const int R, const int C, const nibble_kind kind, const uint8_t *w, size_t wrb,
                                    int64_t blk0, int nquads, int last, const xquad *const xq[NIBBLE_COLS], float *y,
                                    size_t ys, bool add) {
    TILE_BEGIN
    const size_t wbytes = nibble_bytes(kind), qoff = kind == K_Q4_1 ? 4 : 2;
    const __m256i low4 = _mm256_set1_epi8(15), ones16 = _mm256_set1_epi16(1);
    const __m256i codebook = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)g2_iq4nl_values));
    for (int g = 0; g < nquads; g++) {
        SIMD_UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *b0 = w + r * wrb + (size_t)(blk0 + 4 * g) * wbytes;
            simd_prefetch_lines(b0 + (size_t)R * wrb, 2); /* the next tile's rows */
            uint8_t pad[4 * sizeof(block_q4_1)];
            if (g == nquads - 1 && last < 4) { /* a short last quad: its missing blocks read as zero */
                memset(pad, 0, sizeof pad);
                memcpy(pad, b0, (size_t)last * wbytes);
                b0 = pad;
            }
            __m256i lo[2], hi[2];
            for (int q = 0; q < 2; q++) {
                const uint8_t *bp = b0 + 2 * q * wbytes + qoff;
                __m256i v = _mm256_loadu2_m128i((const __m128i *)(bp + wbytes), (const __m128i *)bp);
                lo[q] = _mm256_and_si256(v, low4);
                hi[q] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
            }
            __m256 dw = kind == K_Q4_1 ? quad_halves(b0, wbytes, 0, 4) : quad_halves(b0, wbytes, 0, 2);
            if (kind == K_IQ4_NL) { /* codebook values are signed: |w| and the sign moved onto x */
                __m256i vlo[2], vhi[2];
                for (int q = 0; q < 2; q++) {
                    vlo[q] = _mm256_shuffle_epi8(codebook, lo[q]);
                    vhi[q] = _mm256_shuffle_epi8(codebook, hi[q]);
                    lo[q] = _mm256_abs_epi8(vlo[q]);
                    hi[q] = _mm256_abs_epi8(vhi[q]);
                }
                COL_UNROLL for (int c = 0; c < C; c++) {
                    const xquad *xc = &xq[c][g];
                    __m256i s[2]; /* pairs up to 2 * 127 * 127: each plane to int32 before adding */
                    for (int q = 0; q < 2; q++)
                        s[q] = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(lo[q], _mm256_sign_epi8(xc->lo[q], vlo[q])), ones16),
                                                _mm256_madd_epi16(_mm256_maddubs_epi16(hi[q], _mm256_sign_epi8(xc->hi[q], vhi[q])), ones16));
                    __m256i isum = _mm256_hadd_epi32(s[0], s[1]);
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, xc->dx), acc[r][c]);
                }
                continue;
            }
            __m256 dm = kind == K_Q4_1 ? quad_halves(b0, wbytes, 2, 6) : _mm256_setzero_ps();
            COL_UNROLL for (int c = 0; c < C; c++) {
                const xquad *xc = &xq[c][g];
                __m256i p0 = _mm256_add_epi16(_mm256_maddubs_epi16(lo[0], xc->lo[0]), _mm256_maddubs_epi16(hi[0], xc->hi[0]));
                __m256i p1 = _mm256_add_epi16(_mm256_maddubs_epi16(lo[1], xc->lo[1]), _mm256_maddubs_epi16(hi[1], xc->hi[1]));
                __m256i isum = _mm256_add_epi32(_mm256_madd_epi16(_mm256_hadd_epi16(p0, p1), ones16), xc->init);
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, xc->dx), acc[r][c]);
                if (kind == K_Q4_1) acc[r][c] = _mm256_fmadd_ps(xc->sumx, _mm256_mul_ps(dm, xc->dx), acc[r][c]);
            }
        }
    }
    if (R == 1 && C > 1) { /* matmul: the columns' sums at once */
        float v[8];
        _mm256_storeu_ps(v, hsum_columns(C, acc[0]));
        for (int c = 0; c < C; c++) y[c * ys] = add ? y[c * ys] + v[c] : v[c];
        return;
    }
    SIMD_UNROLL for (int r = 0; r < R; r++)
        SIMD_UNROLL for (int c = 0; c < C; c++) {
            float v = hsum(acc[r][c]);
            y[c * ys + r] = add ? y[c * ys + r] + v : v;
        }
}

/* Blocks from b0 on, in quads, at most max_quads: how many quads, and the size of the last. */
static inline void quad_span(int64_t nb, int64_t b0, int64_t max_quads, int *nquads, int *last) {
    int64_t count = nb - b0 < 4 * max_quads ? nb - b0 : 4 * max_quads;
    *nquads = (int)((count + 3) / 4);
    *last = (int)(count - 4 * (*nquads - 1));
}

SIMD_ALWAYS_INLINE void nibble_matvec(const nibble_kind kind, int64_t n, int64_t nrows, const void *w, size_t wrb,
                                      const void *x, float *y) {
    xquad prep[QUADS_MV];
    const xquad *const xq[NIBBLE_COLS] = {prep, prep, prep, prep, prep, prep, prep, prep};
    const int64_t nb = n / QK8_0;
    for (int64_t b0 = 0; b0 < nb; b0 += 4 * QUADS_MV) {
        int nquads, last;
        quad_span(nb, b0, QUADS_MV, &nquads, &last);
        for (int g = 0; g < nquads; g++)
            prep_quad(kind, (const block_q8_0 *)x + b0 + 4 * g, g == nquads - 1 ? last : 4, &prep[g]);
        int64_t r = 0;
        for (; r + 4 <= nrows; r += 4)
            nibble_rows(4, 1, kind, (const uint8_t *)w + (size_t)r * wrb, wrb, b0, nquads, last, xq, y + r, 0, b0 > 0);
        for (; r < nrows; r++)
            nibble_rows(1, 1, kind, (const uint8_t *)w + (size_t)r * wrb, wrb, b0, nquads, last, xq, y + r, 0, b0 > 0);
    }
}

SIMD_ALWAYS_INLINE void nibble_matmul(const nibble_kind kind, int64_t n, int64_t nrows, const void *w, size_t wrb,
                                      int64_t ncols, const void *x, size_t xcb, float *y, size_t ys) {
    xquad prep[NIBBLE_COLS][QUADS_MM];
    const int64_t nb = n / QK8_0;
    for (int64_t b0 = 0; b0 < nb; b0 += 4 * QUADS_MM) {
        int nquads, last;
        quad_span(nb, b0, QUADS_MM, &nquads, &last);
        for (int64_t c0 = 0; c0 < ncols; c0 += NIBBLE_COLS) {
            int cn = ncols - c0 < NIBBLE_COLS ? (int)(ncols - c0) : NIBBLE_COLS;
            const xquad *xq[NIBBLE_COLS];
            for (int c = 0; c < cn; c++) {
                const block_q8_0 *xb = (const block_q8_0 *)((const uint8_t *)x + (size_t)(c0 + c) * xcb) + b0;
                for (int g = 0; g < nquads; g++) prep_quad(kind, xb + 4 * g, g == nquads - 1 ? last : 4, &prep[c][g]);
                xq[c] = prep[c];
            }
            for (int c = cn; c < NIBBLE_COLS; c++) xq[c] = prep[0];
            float *yc = y + (size_t)c0 * ys;
            for (int64_t r = 0; r < nrows; r++) {
                const uint8_t *wr = (const uint8_t *)w + (size_t)r * wrb;
                switch (cn) {
                case 8: nibble_rows(1, 8, kind, wr, wrb, b0, nquads, last, xq, yc + r, ys, b0 > 0); break;
                case 7: nibble_rows(1, 7, kind, wr, wrb, b0, nquads, last, xq, yc + r, ys, b0 > 0); break;
                case 6: nibble_rows(1, 6, kind, wr, wrb, b0, nquads, last, xq, yc + r, ys, b0 > 0); break;
                case 5: nibble_rows(1, 5, kind, wr, wrb, b0, nquads, last, xq, yc + r, ys, b0 > 0); break;
                case 4: nibble_rows(1, 4, kind, wr, wrb, b0, nquads, last, xq, yc + r, ys, b0 > 0); break;
                case 3: nibble_rows(1, 3, kind, wr, wrb, b0, nquads, last, xq, yc + r, ys, b0 > 0); break;
                case 2: nibble_rows(1, 2, kind, wr, wrb, b0, nquads, last, xq, yc + r, ys, b0 > 0); break;
                default: nibble_rows(1, 1, kind, wr, wrb, b0, nquads, last, xq, yc + r, ys, b0 > 0); break;
                }
            }
        }
    }
}

#define NIBBLE_DRIVERS(NAME, KIND)                                                                                 \
    static void NAME##_matvec(int64_t n, int64_t nrows, const void *w, size_t wrb, const void *x, float *y) {     \
        nibble_matvec(KIND, n, nrows, w, wrb, x, y);                                                             \
    }                                                                                                            \
    static void NAME##_matmul_block(int64_t n, int64_t nrows, const void *w, size_t wrb, int64_t ncols,         \
                                    const void *x, size_t xcb, float *y, size_t ys) {                          \
        nibble_matmul(KIND, n, nrows, w, wrb, ncols, x, xcb, y, ys);                                             \
    }                                                                                                            \
    SIMD_DEFINE_BLOCKED_MATMUL(NAME, SIMD_ROW_BLOCK)
NIBBLE_DRIVERS(q4_0, K_Q4_0)
NIBBLE_DRIVERS(q4_1, K_Q4_1)
NIBBLE_DRIVERS(iq4_nl, K_IQ4_NL)

/* ---- Q8_0 x Q8_0 ----------------------------------------------------------------------------- */

/* Signed weights by the sign trick: w x = |w| (x sign(w)). |w| is unsigned even for w = -128
 * (0x80 read as 128); x is never -128, so negating it is safe. */
SIMD_ALWAYS_INLINE void q8_0_tile(const int R, const int C, int64_t n, const uint8_t *w, size_t wrb, const uint8_t *x,
                                  size_t xcb, float *y, size_t ys) {
    TILE_BEGIN
    for (int64_t ib = 0; ib < n / QK8_0; ib++) {
        __m256i xq[8];
        float dx[8];
        COL_UNROLL for (int c = 0; c < C; c++) {
            const block_q8_0 *xb = (const block_q8_0 *)(x + c * xcb) + ib;
            xq[c] = _mm256_loadu_si256((const __m256i *)xb->qs); /* with 8 columns: loaded where used */
            dx[c] = half_f32(xb->d);
        }
        SIMD_UNROLL for (int r = 0; r < R; r++) {
            const block_q8_0 *wb = (const block_q8_0 *)(w + r * wrb) + ib;
            simd_prefetch_lines((const char *)wb + (size_t)R * wrb, 1); /* the next tile's rows */
            __m256i q = _mm256_loadu_si256((const __m256i *)wb->qs), magnitude = _mm256_abs_epi8(q);
            float dw = half_f32(wb->d);
            COL_UNROLL for (int c = 0; c < C; c++) {
                __m256i p = dot_u8s8(magnitude, _mm256_sign_epi8(xq[c], q));
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * dx[c]), acc[r][c]);
            }
        }
    }
    TILE_END
}

/* matvec from the (4, 1) tiles; matmul from (1, C) tiles over groups of 8 columns (a weight
 * block decoded once for 8), rows in chunks of SIMD_ROW_CHUNK as in SIMD_DEFINE_MATMUL. */
#define COLS8_DRIVERS(NAME, TILE)                                                                                \
    SIMD_DEFINE_MATVEC(NAME, TILE)                                                                               \
    static void NAME##_matmul_block(int64_t n, int64_t nrows, const void *w, size_t wrb, int64_t ncols,         \
                                    const void *x, size_t xcb, float *y, size_t ys) {                          \
        const uint8_t *wp = (const uint8_t *)w, *xp = (const uint8_t *)x;                                      \
        for (int64_t r0 = 0; r0 < nrows; r0 += SIMD_ROW_CHUNK) {                                               \
            int64_t r1 = r0 + SIMD_ROW_CHUNK < nrows ? r0 + SIMD_ROW_CHUNK : nrows;                            \
            for (int64_t c0 = 0; c0 < ncols; c0 += 8) {                                                        \
                int cn = ncols - c0 < 8 ? (int)(ncols - c0) : 8;                                               \
                const uint8_t *xc = xp + (size_t)c0 * xcb;                                                     \
                float *yc = y + (size_t)c0 * ys;                                                               \
                if (cn == 1) {                                                                                 \
                    NAME##_matvec(n, r1 - r0, wp + (size_t)r0 * wrb, wrb, xc, yc + r0);                        \
                    continue;                                                                                  \
                }                                                                                              \
                for (int64_t r = r0; r < r1; r++) {                                                            \
                    const uint8_t *wr = wp + (size_t)r * wrb;                                                  \
                    switch (cn) {                                                                              \
                    case 8: TILE(1, 8, n, wr, wrb, xc, xcb, yc + r, ys); break;                                \
                    case 7: TILE(1, 7, n, wr, wrb, xc, xcb, yc + r, ys); break;                                \
                    case 6: TILE(1, 6, n, wr, wrb, xc, xcb, yc + r, ys); break;                                \
                    case 5: TILE(1, 5, n, wr, wrb, xc, xcb, yc + r, ys); break;                                \
                    case 4: TILE(1, 4, n, wr, wrb, xc, xcb, yc + r, ys); break;                                \
                    case 3: TILE(1, 3, n, wr, wrb, xc, xcb, yc + r, ys); break;                                \
                    default: TILE(1, 2, n, wr, wrb, xc, xcb, yc + r, ys); break;                               \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }                                                                                                          \
    SIMD_DEFINE_BLOCKED_MATMUL(NAME, nrows)

/* ---- K-quants x Q8_K ------------------------------------------------------------------------ */

static inline float hsum128(__m128 s) {
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Two planes' products against one scale vector. VPMADDUBSW leaves int16 pair sums of each
 * plane (at most 2 * 63 * 128 = 16128 for 6-bit quants); VPHADDW adds neighbouring pairs of
 * both planes into one register (each half: words 0-3 from plane a, 4-7 from plane b; at most
 * 32256, still int16), so a single VPMADDWD applies both planes' sub-block scales (<= 63 for
 * Q4_K/Q5_K, int8 for Q6_K; exact in int32): per 64 weights three multiplies, not four. On
 * this VM the multiplies bound the kernels: q4_K matvec from L2 18.5 -> 20.6 GB/s (`grok2 bench
 * --kernels --isa avx2 --mb 1 --reps 40 --cols 2048 --threads 1`) on its Xeon cores (AMX:
 * Sapphire Rapids or later, Golden Cove cores); on Zen 2/3, older Intel cores (Haswell to
 * Skylake client) and E-cores VPHADDW is several shuffle micro-ops too: not measured there. */
SIMD_ALWAYS_INLINE __m256i merged_pairs_dot(__m256i acc, __m256i qa, __m256i xa, __m256i qb, __m256i xb, __m256i sc) {
    __m256i pairs = _mm256_hadd_epi16(_mm256_maddubs_epi16(qa, xa), _mm256_maddubs_epi16(qb, xb));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, sc));
}

/* The byte shuffle that spreads int16 scale words for merged_pairs_dot: in the low half words
 * 0-3 take word a_lo and 4-7 word b_lo, in the high half a_hi and b_hi. */
#define MERGED_SPREAD_HALF(a, b) \
    2 * (a), 2 * (a) + 1, 2 * (a), 2 * (a) + 1, 2 * (a), 2 * (a) + 1, 2 * (a), 2 * (a) + 1, \
    2 * (b), 2 * (b) + 1, 2 * (b), 2 * (b) + 1, 2 * (b), 2 * (b) + 1, 2 * (b), 2 * (b) + 1
#define MERGED_SPREAD(a_lo, b_lo, a_hi, b_hi) {MERGED_SPREAD_HALF(a_lo, b_lo), MERGED_SPREAD_HALF(a_hi, b_hi)}
/* Q4_K / Q5_K chunk j: the planes are sub-blocks 2j and 2j+1 in both halves (scales in words 0-7) */
static const uint8_t k45_spread[4][32] = {MERGED_SPREAD(0, 1, 0, 1), MERGED_SPREAD(2, 3, 2, 3), MERGED_SPREAD(4, 5, 4, 5),
                                          MERGED_SPREAD(6, 7, 6, 7)};
/* Q6_K quarters k and k+1 of a half (its 8 scales in words 0-7): sub-blocks 2k and 2k+2 in the low
 * half, 2k+1 and 2k+3 in the high */
static const uint8_t q6_spread[2][32] = {MERGED_SPREAD(0, 2, 1, 3), MERGED_SPREAD(4, 6, 5, 7)};

SIMD_ALWAYS_INLINE __m256i spread_scales(__m256i scales, const uint8_t idx[32]) {
    return _mm256_shuffle_epi8(scales, _mm256_loadu_si256((const __m256i *)idx));
}

/* Chunk j (64 weights) of a Q4_K / Q5_K super-block as its two planes of 32 quants: lo is
 * sub-block 2j, hi sub-block 2j+1 (see k45_tile); for Q5_K, *qh (the block's qh, shifted right
 * by 2 for each chunk taken before) gives their fifth bits. */
SIMD_ALWAYS_INLINE void k45_planes(const bool five_bit, const uint8_t *qs, int j, __m256i *qh, __m256i *lo, __m256i *hi) {
    const __m256i low4 = _mm256_set1_epi8(15), bit4 = _mm256_set1_epi8(16);
    __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
    *lo = _mm256_and_si256(raw, low4);
    *hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
    if (five_bit) {
        *lo = _mm256_or_si256(*lo, _mm256_and_si256(_mm256_slli_epi16(*qh, 4), bit4));
        *hi = _mm256_or_si256(*hi, _mm256_and_si256(_mm256_slli_epi16(*qh, 3), bit4));
        *qh = _mm256_srli_epi16(*qh, 2);
    }
}

/* Q4_K (five_bit false) and Q5_K. A 64-weight chunk j is 32 bytes of qs: the low nibbles are
 * sub-block 2j (x[64j..64j+31]), the high nibbles sub-block 2j+1. Sub-block scales multiply
 * the two planes' merged pair sums in one madd (merged_pairs_dot), spread over the lanes by a
 * byte shuffle of the unpacked scales. For Q5_K, qh's bit 2j (resp. 2j+1) of byte l is the fifth bit; shifting
 * qh right by 2 per chunk brings them to bits 0 and 1. The mins term
 * dmin dx sum_j m[j] (bsums[2j] + bsums[2j+1]) is kept in its own 4 float lanes. */
SIMD_ALWAYS_INLINE void k45_tile(const int R, const int C, const bool five_bit, int64_t n, const uint8_t *w,
                                 size_t wrb, const uint8_t *x, size_t xcb, float *y, size_t ys) {
    TILE_BEGIN
    __m128 accm[4][4];
    SIMD_UNROLL for (int r = 0; r < R; r++)
        SIMD_UNROLL for (int c = 0; c < C; c++) accm[r][c] = _mm_setzero_ps();
    const size_t block_bytes = five_bit ? sizeof(block_q5_k) : sizeof(block_q4_k);
    for (int64_t ib = 0; ib < n / QK_K; ib++) {
        const block_q8_k *xb[4];
        __m128i bpairs[4];
        SIMD_UNROLL for (int c = 0; c < C; c++) {
            xb[c] = (const block_q8_k *)(x + c * xcb) + ib;
            bpairs[c] = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)xb[c]->bsums),
                                       _mm_loadu_si128((const __m128i *)(xb[c]->bsums + 8)));
        }
        SIMD_UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *blk = w + r * wrb + ib * block_bytes;
            /* the next tile's rows, 4 lines for a super-block spanning 3 (Q5_K's up to 4): a line
             * ahead along the row, mini q4_k_m decode 3% faster than with 3 (as in dot_avx512.c) */
            simd_prefetch_lines(blk + (size_t)R * wrb, 4);
            const block_q4_k *hdr = (const block_q4_k *)blk; /* Q5_K shares d, dmin, scales */
            __m256i sm16 = simd_k45_scales16(hdr->scales); /* sc[0..7], m[0..7] as int16 */
            __m256i sc8 = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sm16));
            __m128i m16 = _mm256_extracti128_si256(sm16, 1);
            const uint8_t *qs = five_bit ? ((const block_q5_k *)blk)->qs : hdr->qs;
            __m256i qh = five_bit ? _mm256_loadu_si256((const __m256i *)((const block_q5_k *)blk)->qh) : _mm256_setzero_si256();
            __m256i isum[4];
            SIMD_UNROLL for (int c = 0; c < C; c++) isum[c] = _mm256_setzero_si256();
            SIMD_UNROLL for (int j = 0; j < 4; j++) {
                __m256i lo, hi;
                k45_planes(five_bit, qs, j, &qh, &lo, &hi);
                const __m256i sc = spread_scales(sc8, k45_spread[j]);
                SIMD_UNROLL for (int c = 0; c < C; c++) {
                    __m256i xlo = _mm256_loadu_si256((const __m256i *)(xb[c]->qs + 64 * j));
                    __m256i xhi = _mm256_loadu_si256((const __m256i *)(xb[c]->qs + 64 * j + 32));
                    isum[c] = merged_pairs_dot(isum[c], lo, xlo, hi, xhi, sc);
                }
            }
            int32_t d_dmin;
            memcpy(&d_dmin, hdr, 4);
            __m128 scales = _mm_cvtph_ps(_mm_cvtsi32_si128(d_dmin)); /* d, dmin: one conversion */
            SIMD_UNROLL for (int c = 0; c < C; c++) {
                __m128 sx = _mm_mul_ps(scales, _mm_set1_ps(xb[c]->d)); /* d dx, dmin dx */
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[c]), _mm256_broadcastss_ps(sx), acc[r][c]);
                __m128i ms = _mm_madd_epi16(m16, bpairs[c]);
                accm[r][c] = _mm_fmadd_ps(_mm_cvtepi32_ps(ms), _mm_shuffle_ps(sx, sx, 0x55), accm[r][c]);
            }
        }
    }
    SIMD_UNROLL for (int r = 0; r < R; r++)
        SIMD_UNROLL for (int c = 0; c < C; c++) y[c * ys + r] = hsum(acc[r][c]) - hsum128(accm[r][c]);
}
#define q4_k_tile(R, C, ...) k45_tile(R, C, false, __VA_ARGS__)
#define q5_k_tile(R, C, ...) k45_tile(R, C, true, __VA_ARGS__)

/* Q6_K: in half h, quarter k of 32 weights (elements 128h + 32k + l) takes its low 4 bits
 * from ql[64h + 32(k&1) + l] (low nibble for k < 2) and its top 2 from bits 2k of qh[32h + l].
 * The two 16-weight sub-blocks of a quarter sit in the two 128-bit halves of the register;
 * quarters k and k+1 go through merged_pairs_dot together, so one scale vector serves both:
 * the int16 scales of half h copied to both register halves, then a byte shuffle (q6_spread):
 * q6_k_pair_scales. The -32 offset is folded in once per super-block as
 * 32 * sum_g scale[g] * bsums[g]. */
SIMD_ALWAYS_INLINE __m256i q6_k_pair_scales(__m256i sc16, const int h, const int k) {
    __m256i half = h ? _mm256_permute4x64_epi64(sc16, _MM_SHUFFLE(3, 2, 3, 2)) : _mm256_permute4x64_epi64(sc16, _MM_SHUFFLE(1, 0, 1, 0));
    return spread_scales(half, q6_spread[k / 2]);
}

/* Quarter k of half h of a Q6_K super-block: its 32 quants (6 bits, unsigned). */
SIMD_ALWAYS_INLINE __m256i q6_k_quarter(const block_q6_k *wb, const int h, const int k) {
    const __m256i low4 = _mm256_set1_epi8(15), bits45 = _mm256_set1_epi8(0x30);
    __m256i ql = _mm256_loadu_si256((const __m256i *)(wb->ql + 64 * h + 32 * (k & 1)));
    __m256i qh = _mm256_loadu_si256((const __m256i *)(wb->qh + 32 * h));
    /* bits 2k, 2k+1 of each qh byte to bits 4, 5: one 16-bit shift (by 4 - 2k) and the mask;
     * what crosses into the neighbouring byte lands outside bits 4, 5 */
    __m256i top = k == 0 ? _mm256_slli_epi16(qh, 4) : k == 1 ? _mm256_slli_epi16(qh, 2) : k == 2 ? qh : _mm256_srli_epi16(qh, 2);
    return _mm256_or_si256(_mm256_and_si256(k < 2 ? ql : _mm256_srli_epi16(ql, 4), low4), _mm256_and_si256(top, bits45));
}

SIMD_ALWAYS_INLINE void q6_k_tile(const int R, const int C, int64_t n, const uint8_t *w, size_t wrb, const uint8_t *x,
                                  size_t xcb, float *y, size_t ys) {
    TILE_BEGIN
    for (int64_t ib = 0; ib < n / QK_K; ib++) {
        const block_q8_k *xb[4];
        __m256i bs[4];
        SIMD_UNROLL for (int c = 0; c < C; c++) {
            xb[c] = (const block_q8_k *)(x + c * xcb) + ib;
            bs[c] = _mm256_loadu_si256((const __m256i *)xb[c]->bsums);
        }
        SIMD_UNROLL for (int r = 0; r < R; r++) {
            const block_q6_k *wb = (const block_q6_k *)(w + r * wrb) + ib;
            simd_prefetch_lines((const char *)wb + (size_t)R * wrb, 4); /* the next tile's rows */
            __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wb->scales));
            __m256i isum[4];
            SIMD_UNROLL for (int c = 0; c < C; c++) /* start from -32 sum scale * bsum */
                isum[c] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs[c]), 5));
            SIMD_UNROLL for (int h = 0; h < 2; h++)
                SIMD_UNROLL for (int k = 0; k < 4; k += 2) {
                    const __m256i sc = q6_k_pair_scales(sc16, h, k);
                    const __m256i qa = q6_k_quarter(wb, h, k), qb = q6_k_quarter(wb, h, k + 1);
                    SIMD_UNROLL for (int c = 0; c < C; c++) {
                        const int8_t *xq = xb[c]->qs + 128 * h + 32 * k;
                        isum[c] = merged_pairs_dot(isum[c], qa, _mm256_loadu_si256((const __m256i *)xq), qb,
                                                   _mm256_loadu_si256((const __m256i *)(xq + 32)), sc);
                    }
                }
            float d = half_f32(wb->d);
            SIMD_UNROLL for (int c = 0; c < C; c++)
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[c]), _mm256_set1_ps(d * xb[c]->d), acc[r][c]);
        }
    }
    TILE_END
}

/* ---- K-quants x Q8_K, small batches (prefill): one row against up to 8 prepared columns --------- */
/* The tiles above decode a row's super-block for 4 columns and pay, per row and column, for the
 * bsums, the scale products and 8 int32 lanes converted to float. Here a super-block is decoded
 * once for KQ_COLS columns and per column only the sub-block products remain (two planes' loads,
 * VPMADDUBSWs, the VPHADDW that merges them and one VPMADDWD by the scales: merged_pairs_dot);
 * what is per column and super-block is done for 8 columns at
 * once, one column per lane:
 *   - the 8 int32 lane sums of each column are added across lanes in integers (exact: a
 *     super-block's sum stays below 2^28) by six VPHADDD, so one conversion and one FMA by
 *     d [dx_0 .. dx_7] serve all 8 columns;
 *   - Q4_K / Q5_K's mins term: the row's 8 mins (in both register halves) against prepared
 *     registers that hold column c's 8 bsum pairs in the low half and column c+4's in the high,
 *     four VPMADDWD and three VPHADDD give sum_j m[j] bsum_j for the 8 columns in lane order.
 * 16 ymm registers hold the 8 columns' int32 sums and the chunk being multiplied (two planes
 * and their scale vector). The activations stay in their Q8_K blocks (in plane order
 * already); the per-column dx and bsum pairs are laid out once per KQ_SB_CHUNK super-blocks. */
#define KQ_COLS 8
#define KQ_SB_CHUNK 16
#define KQ_UNROLL _Pragma("GCC unroll 8") /* the column loops: the sums stay in registers */

typedef enum { KQ_Q4_K, KQ_Q5_K, KQ_Q6_K } kq_kind;

typedef struct {
    const block_q8_k *xb[KQ_COLS];        /* each column's super-block sb0 (column 0 past cn) */
    __m256 dx[KQ_SB_CHUNK];               /* dx of column c in lane c (0 past cn) */
    __m256i bpairs[KQ_SB_CHUNK][4];       /* Q4_K/Q5_K: register q: [column q | column q+4] */
} kq_prep;

SIMD_ALWAYS_INLINE void kq_prepare(const kq_kind kind, const uint8_t *x, size_t xcb, int cn, int64_t sb0, int nsb,
                                   kq_prep *p) {
    for (int c = 0; c < KQ_COLS; c++) p->xb[c] = (const block_q8_k *)(x + (size_t)(c < cn ? c : 0) * xcb) + sb0;
    for (int s = 0; s < nsb; s++) {
        float d[KQ_COLS];
        __m128i bp[KQ_COLS];
        for (int c = 0; c < KQ_COLS; c++) {
            const block_q8_k *xb = p->xb[c] + s;
            d[c] = c < cn ? xb->d : 0.0f;
            bp[c] = c < cn ? _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)xb->bsums),
                                            _mm_loadu_si128((const __m128i *)(xb->bsums + 8)))
                           : _mm_setzero_si128();
        }
        p->dx[s] = _mm256_loadu_ps(d);
        if (kind != KQ_Q6_K)
            for (int q = 0; q < 4; q++) p->bpairs[s][q] = _mm256_set_m128i(bp[q + 4], bp[q]);
    }
}

/* Lane c of the result: the sum of v[c]'s 8 lanes (v[c] for c >= C reads as zero). */
SIMD_ALWAYS_INLINE __m256i kq_sum_lanes(const int C, const __m256i v[KQ_COLS]) {
    const __m256i zero = _mm256_setzero_si256();
    __m256i t0 = _mm256_hadd_epi32(v[0], v[1]), t1 = _mm256_hadd_epi32(v[2], v[3]);
    __m256i t2 = C > 4 ? _mm256_hadd_epi32(v[4], v[5]) : zero, t3 = C > 4 ? _mm256_hadd_epi32(v[6], v[7]) : zero;
    /* u0: [low-half sums of v0..v3 | high-half sums of v0..v3], u1 the same for v4..v7 */
    __m256i u0 = _mm256_hadd_epi32(t0, t1), u1 = _mm256_hadd_epi32(t2, t3);
    return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31));
}

/* One row against C (4 or 8) prepared columns over super-blocks sb0 .. sb0+nsb-1: y[c * ys]
 * for c < cn is set, or added to when `add`. Prefetches the same place one row on (wrb). */
SIMD_ALWAYS_INLINE void kq_row(const int C, const kq_kind kind, const uint8_t *row, int64_t sb0, int nsb,
                               const kq_prep *p, int cn, float *y, size_t ys, bool add, size_t wrb) {
    const size_t block_bytes = kind == KQ_Q6_K ? sizeof(block_q6_k) : kind == KQ_Q5_K ? sizeof(block_q5_k) : sizeof(block_q4_k);
    __m256 acc = _mm256_setzero_ps();
    for (int s = 0; s < nsb; s++) {
        const uint8_t *blk = row + (size_t)(sb0 + s) * block_bytes;
        simd_prefetch_lines(blk + wrb, kind == KQ_Q6_K ? 4 : 3);
        __m256i isum[KQ_COLS];
        float dw;
        __m256i mins = _mm256_setzero_si256();
        if (kind == KQ_Q6_K) {
            const block_q6_k *wb = (const block_q6_k *)blk;
            __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wb->scales));
            KQ_UNROLL for (int c = 0; c < C; c++) /* start from -32 sum scale * bsum (q6_k_tile) */
                isum[c] = _mm256_sub_epi32(_mm256_setzero_si256(),
                                           _mm256_slli_epi32(_mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)p->xb[c][s].bsums)), 5));
            SIMD_UNROLL for (int h = 0; h < 2; h++)
                SIMD_UNROLL for (int k = 0; k < 4; k += 2) {
                    const __m256i sc = q6_k_pair_scales(sc16, h, k);
                    const __m256i qa = q6_k_quarter(wb, h, k), qb = q6_k_quarter(wb, h, k + 1);
                    KQ_UNROLL for (int c = 0; c < C; c++) {
                        const int8_t *xq = p->xb[c][s].qs + 128 * h + 32 * k;
                        isum[c] = merged_pairs_dot(isum[c], qa, _mm256_loadu_si256((const __m256i *)xq), qb,
                                                   _mm256_loadu_si256((const __m256i *)(xq + 32)), sc);
                    }
                }
            dw = half_f32(wb->d);
        } else {
            const bool five_bit = kind == KQ_Q5_K;
            const block_q4_k *hdr = (const block_q4_k *)blk; /* Q5_K shares d, dmin, scales */
            __m256i sm16 = simd_k45_scales16(hdr->scales);  /* sc[0..7], m[0..7] as int16 */
            __m256i sc8 = _mm256_permute4x64_epi64(sm16, _MM_SHUFFLE(1, 0, 1, 0));
            __m256i m8 = _mm256_permute4x64_epi64(sm16, _MM_SHUFFLE(3, 2, 3, 2));
            const uint8_t *qs = five_bit ? ((const block_q5_k *)blk)->qs : hdr->qs;
            __m256i qh = five_bit ? _mm256_loadu_si256((const __m256i *)((const block_q5_k *)blk)->qh) : _mm256_setzero_si256();
            KQ_UNROLL for (int c = 0; c < C; c++) isum[c] = _mm256_setzero_si256();
            SIMD_UNROLL for (int j = 0; j < 4; j++) {
                __m256i lo, hi;
                k45_planes(five_bit, qs, j, &qh, &lo, &hi);
                const __m256i sc = spread_scales(sc8, k45_spread[j]);
                KQ_UNROLL for (int c = 0; c < C; c++) {
                    const int8_t *xq = p->xb[c][s].qs + 64 * j;
                    isum[c] = merged_pairs_dot(isum[c], lo, _mm256_loadu_si256((const __m256i *)xq), hi,
                                               _mm256_loadu_si256((const __m256i *)(xq + 32)), sc);
                }
            }
            __m256i mq[4]; /* [column q | column q+4]: 4 partial sums each */
            SIMD_UNROLL for (int q = 0; q < 4; q++) mq[q] = _mm256_madd_epi16(m8, p->bpairs[s][q]);
            mins = _mm256_hadd_epi32(_mm256_hadd_epi32(mq[0], mq[1]), _mm256_hadd_epi32(mq[2], mq[3]));
            dw = half_f32(hdr->d);
        }
        KQ_UNROLL for (int c = C; c < KQ_COLS; c++) isum[c] = _mm256_setzero_si256();
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(kq_sum_lanes(C, isum)), _mm256_mul_ps(_mm256_set1_ps(dw), p->dx[s]), acc);
        if (kind != KQ_Q6_K) {
            float dmin = half_f32(((const block_q4_k *)blk)->dmin);
            acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_mul_ps(_mm256_set1_ps(dmin), p->dx[s]), acc);
        }
    }
    float out[KQ_COLS];
    _mm256_storeu_ps(out, acc);
    for (int c = 0; c < cn; c++) y[c * ys] = add ? y[c * ys] + out[c] : out[c];
}

/* One block of at most SIMD_ROW_BLOCK rows and SIMD_COL_BLOCK columns (simd_matmul_blocked walks
 * the blocks, so their weights and activations stay in L2 while they are reused). */
SIMD_ALWAYS_INLINE void kq_matmul_block(const kq_kind kind, int64_t n, int64_t nrows, const void *w, size_t wrb,
                                        int64_t ncols, const void *x, size_t xcb, float *y, size_t ys,
                                        simd_matvec_fn matvec) {
    kq_prep prep;
    const int64_t nb = n / QK_K;
    const uint8_t *wp = (const uint8_t *)w, *xp = (const uint8_t *)x;
    for (int64_t c0 = 0; c0 < ncols; c0 += KQ_COLS) {
        int cn = ncols - c0 < KQ_COLS ? (int)(ncols - c0) : KQ_COLS;
        const uint8_t *xc = xp + (size_t)c0 * xcb;
        float *yc = y + (size_t)c0 * ys;
        if (cn == 1) { /* a lone column: the matvec's 4-row tiles */
            matvec(n, nrows, wp, wrb, xc, yc);
            continue;
        }
        for (int64_t sb0 = 0; sb0 < nb; sb0 += KQ_SB_CHUNK) {
            int nsb = nb - sb0 < KQ_SB_CHUNK ? (int)(nb - sb0) : KQ_SB_CHUNK;
            kq_prepare(kind, xc, xcb, cn, sb0, nsb, &prep);
            for (int64_t r = 0; r < nrows; r++) {
                const uint8_t *row = wp + (size_t)r * wrb;
                if (cn > 4) kq_row(KQ_COLS, kind, row, sb0, nsb, &prep, cn, yc + r, ys, sb0 > 0, wrb);
                else kq_row(4, kind, row, sb0, nsb, &prep, cn, yc + r, ys, sb0 > 0, wrb);
            }
        }
    }
}

#define KQ_DRIVERS(NAME, TILE, KIND)                                                                              \
    SIMD_DEFINE_MATVEC(NAME, TILE)                                                                                \
    static void NAME##_matmul_block(int64_t n, int64_t nrows, const void *w, size_t wrb, int64_t ncols,           \
                                    const void *x, size_t xcb, float *y, size_t ys) {                             \
        kq_matmul_block(KIND, n, nrows, w, wrb, ncols, x, xcb, y, ys, NAME##_matvec);                             \
    }                                                                                                             \
    SIMD_DEFINE_BLOCKED_MATMUL(NAME, SIMD_ROW_BLOCK)

/* ---- float weights x F32 ----------------------------------------------------------------------- */
/* 8 weights per step, converted exactly to f32 (F16C for fp16, a 16-bit shift for bf16). The
 * tail (n % 8) runs the same step on zero-padded copies. */

typedef enum { W_F32, W_F16, W_BF16 } float_kind;

SIMD_ALWAYS_INLINE __m256 load_w8(const float_kind kind, const uint8_t *p) {
    if (kind == W_F32) return _mm256_loadu_ps((const float *)p);
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (kind == W_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

SIMD_ALWAYS_INLINE void float_tile(const int R, const int C, const float_kind kind, int64_t n, const uint8_t *w,
                                   size_t wrb, const uint8_t *x, size_t xcb, float *y, size_t ys) {
    TILE_BEGIN
    const size_t wsize = kind == W_F32 ? 4 : 2;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv[4];
        SIMD_UNROLL for (int c = 0; c < C; c++) xv[c] = _mm256_loadu_ps((const float *)(x + c * xcb) + i);
        SIMD_UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *wp = w + r * wrb + (size_t)i * wsize;
            simd_prefetch_lines(wp + (size_t)R * wrb, 1);
            __m256 wv = load_w8(kind, wp);
            SIMD_UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm256_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
    if (i < n) {
        size_t rest = (size_t)(n - i);
        float xpad[4][8] = {{0}};
        uint8_t wpad[4][32] = {{0}};
        SIMD_UNROLL for (int c = 0; c < C; c++) memcpy(xpad[c], (const float *)(x + c * xcb) + i, rest * 4);
        SIMD_UNROLL for (int r = 0; r < R; r++) memcpy(wpad[r], w + r * wrb + (size_t)i * wsize, rest * wsize);
        SIMD_UNROLL for (int r = 0; r < R; r++) {
            __m256 wv = load_w8(kind, wpad[r]);
            SIMD_UNROLL for (int c = 0; c < C; c++)
                acc[r][c] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xpad[c]), acc[r][c]);
        }
    }
    TILE_END
}
/* The matmul's row x up to 8 columns (FLOAT_DRIVERS): each 8 weights converted once for all the
 * columns, the next row's same bytes prefetched, the columns' sums reduced together. */
SIMD_ALWAYS_INLINE void float_row_columns(const int C, const float_kind kind, int64_t n, const uint8_t *w, size_t wrb,
                                          const uint8_t *x, size_t xcb, float *y, size_t ys) {
    __m256 acc[8];
    COL_UNROLL for (int c = 0; c < 8; c++) acc[c] = _mm256_setzero_ps();
    const size_t wsize = kind == W_F32 ? 4 : 2;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        simd_prefetch_lines(w + wrb + (size_t)i * wsize, 1);
        __m256 wv = load_w8(kind, w + (size_t)i * wsize);
        COL_UNROLL for (int c = 0; c < C; c++)
            acc[c] = _mm256_fmadd_ps(wv, _mm256_loadu_ps((const float *)(x + c * xcb) + i), acc[c]);
    }
    if (i < n) { /* the tail on zero-padded copies */
        size_t rest = (size_t)(n - i);
        float xpad[8] = {0};
        uint8_t wpad[32] = {0};
        memcpy(wpad, w + (size_t)i * wsize, rest * wsize);
        __m256 wv = load_w8(kind, wpad);
        COL_UNROLL for (int c = 0; c < C; c++) {
            memcpy(xpad, (const float *)(x + c * xcb) + i, rest * 4);
            acc[c] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xpad), acc[c]);
        }
    }
    float v[8];
    _mm256_storeu_ps(v, hsum_columns(C, acc));
    for (int c = 0; c < C; c++) y[c * ys] = v[c];
}

#define f32_tile(R, C, ...) float_tile(R, C, W_F32, __VA_ARGS__)
#define f16_tile(R, C, ...) float_tile(R, C, W_F16, __VA_ARGS__)
#define bf16_tile(R, C, ...) float_tile(R, C, W_BF16, __VA_ARGS__)

/* ---- drivers and the table ------------------------------------------------------------------------ */

COLS8_DRIVERS(q8_0, q8_0_tile)
KQ_DRIVERS(q4_k, q4_k_tile, KQ_Q4_K)
KQ_DRIVERS(q5_k, q5_k_tile, KQ_Q5_K)
KQ_DRIVERS(q6_k, q6_k_tile, KQ_Q6_K)
FLOAT_DRIVERS(f32, f32_tile, W_F32)
FLOAT_DRIVERS(f16, f16_tile, W_F16)
FLOAT_DRIVERS(bf16, bf16_tile, W_BF16)

/* ---- x times W (simd_xw_fn) ----------------------------------------------------------------------- */

/* M rows of x (M <= XW_ROWS) times 8 columns of W (the first `cols` of them: the rest of a row
 * is read through a zero-padded copy): each W vector converted once for the M rows, each x
 * element broadcast, M sums in registers, no horizontal sum. */
SIMD_ALWAYS_INLINE void xw_tile(const int M, const float_kind kind, int64_t k, const uint8_t *w, size_t wrb,
                                const float *x, size_t xs, float *y, size_t ys, int cols) {
    __m256 acc[XW_ROWS];
    XW_UNROLL for (int r = 0; r < M; r++) acc[r] = _mm256_setzero_ps();
    const size_t wsize = kind == W_F32 ? 4 : 2;
    for (int64_t i = 0; i < k; i++) {
        const uint8_t *wi = w + (size_t)i * wrb;
        simd_prefetch_lines(wi + XW_PREFETCH_ROWS * wrb, 1);
        __m256 wv;
        if (cols == 8) {
            wv = load_w8(kind, wi);
        } else {
            uint8_t pad[32] = {0};
            memcpy(pad, wi, (size_t)cols * wsize);
            wv = load_w8(kind, pad);
        }
        XW_UNROLL for (int r = 0; r < M; r++)
            acc[r] = _mm256_fmadd_ps(wv, _mm256_set1_ps(x[(size_t)r * xs + i]), acc[r]);
    }
    XW_UNROLL for (int r = 0; r < M; r++) {
        if (cols == 8) {
            _mm256_storeu_ps(y + (size_t)r * ys, acc[r]);
        } else {
            float out[8];
            _mm256_storeu_ps(out, acc[r]);
            memcpy(y + (size_t)r * ys, out, (size_t)cols * sizeof(float));
        }
    }
}

SIMD_DEFINE_XW(8)

/* ---- the peak int8 rate (bench): each accumulator feeds its own next step ----------------------- */

static uint64_t int8_peak_avx2(uint64_t iterations) {
    __m256i acc[SIMD_PEAK_CHAINS];
    const __m256i s = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    SIMD_PEAK_UNROLL for (int k = 0; k < SIMD_PEAK_CHAINS; k++) acc[k] = _mm256_set1_epi32(k);
    for (uint64_t i = 0; i < iterations; i++)
        SIMD_PEAK_UNROLL for (int k = 0; k < SIMD_PEAK_CHAINS; k++)
            acc[k] = _mm256_add_epi32(acc[k], _mm256_madd_epi16(_mm256_maddubs_epi16(acc[k], s), ones16));
    __m256i sum = acc[0];
    for (int k = 1; k < SIMD_PEAK_CHAINS; k++) sum = _mm256_add_epi32(sum, acc[k]);
    volatile int32_t sink = _mm256_cvtsi256_si32(sum); /* the chains' results are used */
    (void)sink;
    return iterations * SIMD_PEAK_CHAINS * 32 * 2;
}

static const simd_kernels table = {
    .name = "avx2",
    .needs = SIMD_CPU_AVX2 | SIMD_CPU_FMA | SIMD_CPU_F16C,
    .quantize_q8_0 = simd_quantize_q8_0_avx2,
    .quantize_q8_k = simd_quantize_q8_k_avx2,
    .types = {SIMD_TYPE_ROWS(simd_quantize_q8_0_avx2, simd_quantize_q8_k_avx2, )},
    SIMD_VECMATH_ROW(avx2),
    .int8_peak = int8_peak_avx2,
};

const simd_kernels *simd_table_avx2(void) { return &table; }

#else
#include "simd_internal.h"
const simd_kernels *simd_table_avx2(void) { return NULL; } /* built without -mavx2 -mfma -mf16c */
#endif

/* Dot kernels, AVX-512 (F/BW/VL/DQ), in two tables from one source: "avx512vnni" takes the
 * 32-blocks' byte dot products with VPDPBUSD, "avx512" with VPMADDUBSW + VPMADDWD (the bool
 * `vnni` is a literal at every call, so each table's code is specialised, and only the VNNI
 * table's functions contain VNNI instructions). The same argument as in dot_avx2.c keeps the
 * non-VNNI pair sums below int16's limit; VPDPBUSD accumulates in int32 and has no such limit,
 * which the VNNI variant uses for signed weights: w x = (w + 128) x - 128 x, with the block's
 * sum of x prepared once per call. The K-quants apply their sub-block scales in VPMADDWD in
 * both tables (see there). Every kernel prefetches one tile of rows ahead (simd_internal.h). */
#include "simd_internal.h"
#include "avx512_compat.h"

#if defined(SIMD_AVX512_BUILT)
#include "kquant_x86.h"

SIMD_DECLARE_QUANTIZE(avx512)
SIMD_DECLARE_VECMATH(avx512)

static inline float half_f32(g2_half h) { return _cvtsh_ss(h); }

static inline float hsum(__m512 v) {
    __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(v), simd_hi256_ps(v));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* acc + sum of u[i] * s[i] over each 4 bytes (u unsigned, s signed) */
SIMD_ALWAYS_INLINE __m512i dot4(const bool vnni, __m512i acc, __m512i u, __m512i s) {
#if defined(SIMD_AVX512_HAS_VNNI)
    if (vnni) return _mm512_dpbusd_epi32(acc, u, s);
#endif
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
}

/* Column loops of up to 8 (the 32-blocks' matmul): unrolled, the accumulators in registers. */
#define COL_UNROLL _Pragma("GCC unroll 8")

/* Lane c of the result: the sum of v[c]'s 16 lanes, for c < C (other lanes 0): the halves
 * added, then the columns' 8 lanes reduced together by VHADDPS. */
SIMD_ALWAYS_INLINE __m256 hsum_columns(const int C, const __m512 v[8]) {
    __m256 h[8];
    COL_UNROLL for (int c = 0; c < 8; c++)
        h[c] = c < C ? _mm256_add_ps(_mm512_castps512_ps256(v[c]), simd_hi256_ps(v[c])) : _mm256_setzero_ps();
    __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(h[0], h[1]), _mm256_hadd_ps(h[2], h[3]));
    __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(h[4], h[5]), _mm256_hadd_ps(h[6], h[7]));
    /* u0: [low-half sums of h0..h3 | high-half sums of h0..h3], u1 the same for h4..h7 */
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

static inline __m512 scales2(float a, float b) { return simd_join256_ps(_mm256_set1_ps(a), _mm256_set1_ps(b)); }

#define TILE_BEGIN                              \
    __m512 acc[4][8];                           \
    SIMD_UNROLL for (int r = 0; r < R; r++)     \
        COL_UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
#define TILE_END                                \
    SIMD_UNROLL for (int r = 0; r < R; r++)     \
        SIMD_UNROLL for (int c = 0; c < C; c++) y[c * ys + r] = hsum(acc[r][c]);

/* ---- 32-blocks x Q8_0: groups of four blocks against prepared activations ------------------ */
/* A group is 4 consecutive blocks. The 4-bit kinds put one block in each 128-bit lane: its 16
 * packed bytes give two planes, the low nibbles (elements 0..15) and the high (16..31). Q8_0
 * puts two blocks per register, [qs0 | qs1]. The activation side is prepared once per call in
 * the matching shape (for the 4-bit kinds x[0..15] and x[16..31] of each block per lane), with
 * each lane's integer start value (-8 sum x for Q4_0, -128 sum x for signed weights under VNNI)
 * and its scale dx, so a row pays only for its own bytes. A group's weight scales come from
 * one 64-byte load and a word permute (VPERMW) that spreads each d over its block's lanes.
 * The per-lane integer sums are exact; one conversion and one FMA per group and row. */

/* Groups prepared at once by matvec: 32768 weights (Grok-2's widest rows, the dense down
 * projection), 112 KB of stack. A row longer than a pass is read in pieces a whole pass of the
 * rows apart: with 64 groups (8192 weights) rows of 16384-32768 streamed at 0.72-0.85 of the
 * read bandwidth (q4_0, q8_0), in one pass at 0.86-1.12 (`grok2 bench --kernels --mb 1024 --cols
 * 16384` and `--cols 32768`; above 1: the probe is a plain read loop). */
#define GROUPS_MV 256
#define GROUPS_MM 8  /* by matmul, per column (BLOCK32_COLS at a time): 1024 weights, 28 KB */
/* Columns per pass over a row's groups in matmul: a group is decoded once for 8 columns. */
#define BLOCK32_COLS 8

typedef enum { K_Q4_0, K_Q4_1, K_Q8_0, K_IQ4_NL } block32_kind;

typedef struct {
    __m512i v[2];    /* 4-bit kinds: x lo, x hi planes; Q8_0: [x0 | x1], [x2 | x3] */
    __m512i init[2]; /* start value of each lane's integer sum (for v[0]/v[1] in Q8_0) */
    __m512 dx[2];    /* each lane's activation scale */
    __m512 sumx;     /* Q4_1: sum of x per lane, as float (for the min term) */
} xgroup;

static const uint16_t spread_d18[32] = {0, 0, 0, 0, 9, 9, 9, 9, 18, 18, 18, 18, 27, 27, 27, 27};     /* Q4_0, IQ4_NL */
static const uint16_t spread_d20[32] = {0, 0, 0, 0, 10, 10, 10, 10, 20, 20, 20, 20, 30, 30, 30, 30}; /* Q4_1 d */
static const uint16_t spread_m20[32] = {1, 1, 1, 1, 11, 11, 11, 11, 21, 21, 21, 21, 31, 31, 31, 31}; /* Q4_1 m */
static const uint16_t spread_d34[32] = {0, 0, 0, 0, 0, 0, 0, 0, 17, 17, 17, 17, 17, 17, 17, 17};     /* Q8_0 pair */

static inline __m512 spread_halves(const uint16_t idx[32], const uint8_t *window) {
    __m512i h = _mm512_permutexvar_epi16(_mm512_loadu_si512(idx), _mm512_loadu_si512(window));
    return _mm512_cvtph_ps(_mm512_castsi512_si256(h));
}

static inline size_t block32_bytes(block32_kind kind) {
    return kind == K_Q4_1 ? sizeof(block_q4_1) : kind == K_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
}

/* Activations of blocks xb[0 .. count-1] (count 1..4; missing blocks count as zero). */
SIMD_ALWAYS_INLINE void prep_group(const block32_kind kind, const bool vnni, const block_q8_0 *xb, int count,
                                   xgroup *g) {
    const __m512i ones = _mm512_set1_epi8(1), zero = _mm512_setzero_si512();
    float d[4];
    SIMD_UNROLL for (int j = 0; j < 4; j++) d[j] = j < count ? half_f32(xb[j].d) : 0.0f;
    if (kind == K_Q8_0) {
        __m256i q[4];
        SIMD_UNROLL for (int j = 0; j < 4; j++) q[j] = j < count ? _mm256_loadu_si256((const __m256i *)xb[j].qs) : _mm256_setzero_si256();
        g->v[0] = simd_join256_si(q[0], q[1]);
        g->v[1] = simd_join256_si(q[2], q[3]);
        SIMD_UNROLL for (int p = 0; p < 2; p++) /* VNNI: (w + 128) x - 128 x */
            g->init[p] = vnni ? _mm512_sub_epi32(zero, _mm512_slli_epi32(dot4(true, zero, ones, g->v[p]), 7)) : zero;
        g->dx[0] = scales2(d[0], d[1]);
        g->dx[1] = scales2(d[2], d[3]);
        g->sumx = _mm512_setzero_ps();
        return;
    }
    __m128i lo[4], hi[4];
    SIMD_UNROLL for (int j = 0; j < 4; j++) {
        lo[j] = j < count ? _mm_loadu_si128((const __m128i *)xb[j].qs) : _mm_setzero_si128();
        hi[j] = j < count ? _mm_loadu_si128((const __m128i *)(xb[j].qs + 16)) : _mm_setzero_si128();
    }
    g->v[0] = _mm512_inserti32x4(_mm512_inserti32x4(_mm512_inserti32x4(_mm512_castsi128_si512(lo[0]), lo[1], 1), lo[2], 2), lo[3], 3);
    g->v[1] = _mm512_inserti32x4(_mm512_inserti32x4(_mm512_inserti32x4(_mm512_castsi128_si512(hi[0]), hi[1], 1), hi[2], 2), hi[3], 3);
    __m512i sum = dot4(vnni, dot4(vnni, zero, ones, g->v[0]), ones, g->v[1]);
    g->init[0] = kind == K_Q4_0                ? _mm512_sub_epi32(zero, _mm512_slli_epi32(sum, 3))
                 : kind == K_IQ4_NL && vnni ? _mm512_sub_epi32(zero, _mm512_slli_epi32(sum, 7))
                                            : zero;
    g->init[1] = zero;
    g->dx[0] = _mm512_setr_ps(d[0], d[0], d[0], d[0], d[1], d[1], d[1], d[1], d[2], d[2], d[2], d[2], d[3], d[3], d[3], d[3]);
    g->dx[1] = _mm512_setzero_ps();
    g->sumx = kind == K_Q4_1 ? _mm512_cvtepi32_ps(sum) : _mm512_setzero_ps();
}

/* A 4-bit group's bytes (4 blocks at b0, one per 128-bit lane) as its two nibble planes: IQ4_NL's
 * through the codebook (under VNNI the codebook + 128, unsigned), and without VNNI as magnitudes
 * with their signs in neg_lo / neg_hi. */
typedef struct {
    __m512i lo, hi;
    __mmask64 neg_lo, neg_hi;
} nibble_planes;

static inline __m512i nibble_codebook(const bool vnni) {
    __m512i codebook = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)g2_iq4nl_values));
    return vnni ? _mm512_xor_si512(codebook, _mm512_set1_epi8((char)0x80)) : codebook;
}

SIMD_ALWAYS_INLINE nibble_planes nibble_planes_of(const block32_kind kind, const bool vnni, __m512i w4,
                                                  __m512i codebook) {
    const __m512i low4 = _mm512_set1_epi8(15);
    nibble_planes p = {_mm512_and_si512(w4, low4), _mm512_and_si512(_mm512_srli_epi16(w4, 4), low4), 0, 0};
    if (kind == K_IQ4_NL) {
        p.lo = _mm512_shuffle_epi8(codebook, p.lo);
        p.hi = _mm512_shuffle_epi8(codebook, p.hi);
        if (!vnni) {
            p.neg_lo = _mm512_movepi8_mask(p.lo);
            p.neg_hi = _mm512_movepi8_mask(p.hi);
            p.lo = _mm512_abs_epi8(p.lo);
            p.hi = _mm512_abs_epi8(p.hi);
        }
    }
    return p;
}

SIMD_ALWAYS_INLINE nibble_planes load_nibbles(const block32_kind kind, const bool vnni, const uint8_t *b0,
                                              __m512i codebook) {
    const size_t wbytes = block32_bytes(kind), qoff = kind == K_Q4_1 ? 4 : 2;
    __m512i w4 = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(b0 + qoff)));
    w4 = _mm512_inserti32x4(w4, _mm_loadu_si128((const __m128i *)(b0 + wbytes + qoff)), 1);
    w4 = _mm512_inserti32x4(w4, _mm_loadu_si128((const __m128i *)(b0 + 2 * wbytes + qoff)), 2);
    w4 = _mm512_inserti32x4(w4, _mm_loadu_si128((const __m128i *)(b0 + 3 * wbytes + qoff)), 3);
    return nibble_planes_of(kind, vnni, w4, codebook);
}

/* Each lane's integer sum of a 4-bit group against one prepared column. */
SIMD_ALWAYS_INLINE __m512i nibble_isum(const block32_kind kind, const bool vnni, const nibble_planes *p,
                                       const xgroup *xgc) {
    const __m512i zero = _mm512_setzero_si512(), ones16 = _mm512_set1_epi16(1);
    if (vnni) return dot4(true, dot4(true, xgc->init[0], p->lo, xgc->v[0]), p->hi, xgc->v[1]);
    if (kind == K_IQ4_NL) { /* x takes the weight's sign; |pairs| up to 2*127*127: madd each plane first */
        __m512i slo = _mm512_mask_sub_epi8(xgc->v[0], p->neg_lo, zero, xgc->v[0]);
        __m512i shi = _mm512_mask_sub_epi8(xgc->v[1], p->neg_hi, zero, xgc->v[1]);
        return _mm512_add_epi32(_mm512_madd_epi16(_mm512_maddubs_epi16(p->lo, slo), ones16),
                                _mm512_madd_epi16(_mm512_maddubs_epi16(p->hi, shi), ones16));
    } /* nibbles: each plane's pairs <= 2*15*127, two planes still fit int16 */
    __m512i pairs = _mm512_add_epi16(_mm512_maddubs_epi16(p->lo, xgc->v[0]), _mm512_maddubs_epi16(p->hi, xgc->v[1]));
    return _mm512_add_epi32(_mm512_madd_epi16(pairs, ones16), xgc->init[0]);
}

/* A short last group (blocks < 4) copied into pad with zero blocks after it, which read as nothing. */
static inline const uint8_t *padded_group(const uint8_t *b0, int blocks, size_t wbytes, uint8_t *pad,
                                          size_t pad_bytes) {
    memset(pad, 0, pad_bytes);
    memcpy(pad, b0, (size_t)blocks * wbytes);
    return pad;
}

/* R rows x C prepared columns over ngroups groups starting at block blk0 of each row; the last
 * group has `last` blocks (1..4). y[c * ys + r] is set, or added to when `add`. */
SIMD_ALWAYS_INLINE void block32_rows(const int R, const int C, const block32_kind kind, const bool vnni,
                                     const uint8_t *w, size_t wrb, int64_t blk0, int ngroups, int last,
                                     const xgroup *const xg[BLOCK32_COLS], float *y, size_t ys, bool add) {
    TILE_BEGIN
    const size_t wbytes = block32_bytes(kind);
    const __m512i zero = _mm512_setzero_si512(), bias = _mm512_set1_epi8((char)0x80);
    const __m512i ones16 = _mm512_set1_epi16(1);
    const __m512i codebook = nibble_codebook(vnni);
    for (int g = 0; g < ngroups; g++) {
        SIMD_UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *b0 = w + r * wrb + (size_t)(blk0 + 4 * g) * wbytes;
/* Prefetch the same place in the next tile's rows (R rows on): far enough ahead that
             * the lines arrive while this tile computes, which a short distance cannot do. */
            simd_prefetch_lines((const char *)b0 + (size_t)R * wrb, kind == K_Q8_0 ? 3 : 2);
            uint8_t pad[4 * sizeof(block_q8_0)];
            if (g == ngroups - 1 && last < 4) b0 = padded_group(b0, last, wbytes, pad, sizeof pad);
            if (kind == K_Q8_0) {
                __m512i wq[2] = {simd_join256_si(_mm256_loadu_si256((const __m256i *)(b0 + 2)),
                                                 _mm256_loadu_si256((const __m256i *)(b0 + 36))),
                                 simd_join256_si(_mm256_loadu_si256((const __m256i *)(b0 + 70)),
                                                 _mm256_loadu_si256((const __m256i *)(b0 + 104)))};
                __m512 dw[2] = {spread_halves(spread_d34, b0), spread_halves(spread_d34, b0 + 68)};
                SIMD_UNROLL for (int p = 0; p < 2; p++) {
                    __m512i u = vnni ? _mm512_xor_si512(wq[p], bias) : _mm512_abs_epi8(wq[p]); /* w + 128, or |w| */
                    __mmask64 negative = vnni ? 0 : _mm512_movepi8_mask(wq[p]);
                    COL_UNROLL for (int c = 0; c < C; c++) {
                        const xgroup *xgc = &xg[c][g];
                        __m512i isum;
                        if (vnni) {
                            isum = dot4(true, xgc->init[p], u, xgc->v[p]);
                        } else { /* x takes the weight's sign; |w| stays unsigned */
                            __m512i s = _mm512_mask_sub_epi8(xgc->v[p], negative, zero, xgc->v[p]);
                            isum = _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), ones16);
                        }
                        acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw[p], xgc->dx[p]), acc[r][c]);
                    }
                }
                continue;
            }
            const nibble_planes planes = load_nibbles(kind, vnni, b0, codebook);
            __m512 dw = spread_halves(kind == K_Q4_1 ? spread_d20 : spread_d18, b0);
            __m512 dm = kind == K_Q4_1 ? spread_halves(spread_m20, b0) : _mm512_setzero_ps();
            COL_UNROLL for (int c = 0; c < C; c++) {
                const xgroup *xgc = &xg[c][g];
                __m512i isum = nibble_isum(kind, vnni, &planes, xgc);
                acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, xgc->dx[0]), acc[r][c]);
                if (kind == K_Q4_1) acc[r][c] = _mm512_fmadd_ps(xgc->sumx, _mm512_mul_ps(dm, xgc->dx[0]), acc[r][c]);
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

/* Matvec, 4 rows of a kind with one scale per block and no offset (Q4_0, IQ4_NL): the rows'
 * per-lane integer sums are folded first, to one lane per block and row ([r0 r1 r2 r3] in each
 * block's 128-bit lane: two rounds of unpack and add), so that the scales cost one conversion,
 * multiply and FMA per group for all 4 rows, and the 16 weight scales come from two word
 * permutes and a blend, where block32_rows(4, 1) spreads and converts each row's 4 scales.
 * The rows' bytes come in two 64-byte loads each (the scales' window and one 8 bytes on).
 * Against block32_rows(4, 1): from L2 q4_0 25.2 against 24.0 GB/s (`grok2 bench --kernels --mb 1
 * --reps 40 --cols 2048 --threads 1`), mini q4_0 decode ~1.8% faster (README). */
static const uint16_t fold_d18[32] = {0, 32, 0, 32, 9, 41, 9, 41, 18, 50, 18, 50, 27, 59, 27, 59}; /* rows r, r+1 */
/* The 4 blocks' 16 bytes of nibbles (at bytes 2, 20, 38, 56: even, so words) out of the group's
 * bytes [0, 64) and [8, 72), one block per lane: one word permute for four 128-bit loads. */
static const uint16_t qs_words18[32] = {1,  2,  3,  4,  5,  6,  7,  8,  10, 11, 12, 13, 14, 15, 16, 17,
                                        19, 20, 21, 22, 23, 24, 25, 26, 56, 57, 58, 59, 60, 61, 62, 63};

SIMD_ALWAYS_INLINE void block32_rows4_folded(const block32_kind kind, const bool vnni, const uint8_t *w, size_t wrb,
                                             int64_t blk0, int ngroups, int last, const xgroup *xg, float *y,
                                             bool add) {
    const size_t wbytes = sizeof(block_q4_0);
    const __m512i codebook = nibble_codebook(vnni), fold = _mm512_loadu_si512(fold_d18);
    const __m512i qs = _mm512_loadu_si512(qs_words18);
    __m512 acc = _mm512_setzero_ps();
    for (int g = 0; g < ngroups; g++) {
        __m512i isum[4], window[4];
        uint8_t pad[4][4 * sizeof(block_q4_0)];
        SIMD_UNROLL for (int r = 0; r < 4; r++) {
            const uint8_t *b0 = w + r * wrb + (size_t)(blk0 + 4 * g) * wbytes;
            simd_prefetch_lines((const char *)b0 + 4 * wrb, 2);
            if (g == ngroups - 1 && last < 4) b0 = padded_group(b0, last, wbytes, pad[r], sizeof pad[r]);
            window[r] = _mm512_loadu_si512(b0); /* the 4 blocks' d at halves 0, 9, 18, 27 */
            __m512i w4 = _mm512_permutex2var_epi16(window[r], qs, _mm512_loadu_si512(b0 + 8));
            const nibble_planes planes = nibble_planes_of(kind, vnni, w4, codebook);
            isum[r] = nibble_isum(kind, vnni, &planes, &xg[g]);
        }
        __m512i s01 = _mm512_add_epi32(_mm512_unpacklo_epi32(isum[0], isum[1]), _mm512_unpackhi_epi32(isum[0], isum[1]));
        __m512i s23 = _mm512_add_epi32(_mm512_unpacklo_epi32(isum[2], isum[3]), _mm512_unpackhi_epi32(isum[2], isum[3]));
        __m512i folded = _mm512_add_epi32(_mm512_unpacklo_epi64(s01, s23), _mm512_unpackhi_epi64(s01, s23));
        __m512i d = _mm512_mask_blend_epi16(0xCCCCCCCCu, _mm512_permutex2var_epi16(window[0], fold, window[1]),
                                            _mm512_permutex2var_epi16(window[2], fold, window[3]));
        __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(d));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(folded), _mm512_mul_ps(dw, xg[g].dx[0]), acc);
    }
    __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(acc), simd_hi256_ps(acc));
    float v[4];
    _mm_storeu_ps(v, _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1)));
    for (int r = 0; r < 4; r++) y[r] = add ? y[r] + v[r] : v[r];
}

/* Blocks [b0, b0 + count) of a row in groups: how many groups, and the size of the last. */
static inline void group_span(int64_t nb, int64_t b0, int64_t max_groups, int *ngroups, int *last) {
    int64_t count = nb - b0 < 4 * max_groups ? nb - b0 : 4 * max_groups;
    *ngroups = (int)((count + 3) / 4);
    *last = (int)(count - 4 * (*ngroups - 1));
}

SIMD_ALWAYS_INLINE void block32_matvec(const block32_kind kind, const bool vnni, int64_t n, int64_t nrows,
                                       const void *w, size_t wrb, const void *x, float *y) {
    xgroup prep[GROUPS_MV];
    const xgroup *const xg[BLOCK32_COLS] = {prep, prep, prep, prep, prep, prep, prep, prep};
    const int64_t nb = n / QK8_0;
    for (int64_t b0 = 0; b0 < nb; b0 += 4 * GROUPS_MV) {
        int ngroups, last;
        group_span(nb, b0, GROUPS_MV, &ngroups, &last);
        for (int g = 0; g < ngroups; g++)
            prep_group(kind, vnni, (const block_q8_0 *)x + b0 + 4 * g, g == ngroups - 1 ? last : 4, &prep[g]);
        int64_t r = 0;
        const bool fold = kind == K_Q4_0 || kind == K_IQ4_NL;
        for (; fold && r + 4 <= nrows; r += 4)
            block32_rows4_folded(kind, vnni, (const uint8_t *)w + (size_t)r * wrb, wrb, b0, ngroups, last, prep, y + r,
                                 b0 > 0);
        for (; r + 4 <= nrows; r += 4)
            block32_rows(4, 1, kind, vnni, (const uint8_t *)w + (size_t)r * wrb, wrb, b0, ngroups, last, xg, y + r, 0, b0 > 0);
        for (; r < nrows; r++)
            block32_rows(1, 1, kind, vnni, (const uint8_t *)w + (size_t)r * wrb, wrb, b0, ngroups, last, xg, y + r, 0, b0 > 0);
    }
}

SIMD_ALWAYS_INLINE void block32_matmul(const block32_kind kind, const bool vnni, int64_t n, int64_t nrows,
                                       const void *w, size_t wrb, int64_t ncols, const void *x, size_t xcb, float *y,
                                       size_t ys) {
    xgroup prep[BLOCK32_COLS][GROUPS_MM];
    const int64_t nb = n / QK8_0;
    for (int64_t b0 = 0; b0 < nb; b0 += 4 * GROUPS_MM) {
        int ngroups, last;
        group_span(nb, b0, GROUPS_MM, &ngroups, &last);
        for (int64_t c0 = 0; c0 < ncols; c0 += BLOCK32_COLS) {
            int cn = ncols - c0 < BLOCK32_COLS ? (int)(ncols - c0) : BLOCK32_COLS;
            const xgroup *xg[BLOCK32_COLS];
            for (int c = 0; c < cn; c++) {
                const block_q8_0 *xb = (const block_q8_0 *)((const uint8_t *)x + (size_t)(c0 + c) * xcb) + b0;
                for (int g = 0; g < ngroups; g++) prep_group(kind, vnni, xb + 4 * g, g == ngroups - 1 ? last : 4, &prep[c][g]);
                xg[c] = prep[c];
            }
            for (int c = cn; c < BLOCK32_COLS; c++) xg[c] = prep[0];
            float *yc = y + (size_t)c0 * ys;
            for (int64_t r = 0; r < nrows; r++) {
                const uint8_t *wr = (const uint8_t *)w + (size_t)r * wrb;
                switch (cn) {
                case 8: block32_rows(1, 8, kind, vnni, wr, wrb, b0, ngroups, last, xg, yc + r, ys, b0 > 0); break;
                case 7: block32_rows(1, 7, kind, vnni, wr, wrb, b0, ngroups, last, xg, yc + r, ys, b0 > 0); break;
                case 6: block32_rows(1, 6, kind, vnni, wr, wrb, b0, ngroups, last, xg, yc + r, ys, b0 > 0); break;
                case 5: block32_rows(1, 5, kind, vnni, wr, wrb, b0, ngroups, last, xg, yc + r, ys, b0 > 0); break;
                case 4: block32_rows(1, 4, kind, vnni, wr, wrb, b0, ngroups, last, xg, yc + r, ys, b0 > 0); break;
                case 3: block32_rows(1, 3, kind, vnni, wr, wrb, b0, ngroups, last, xg, yc + r, ys, b0 > 0); break;
                case 2: block32_rows(1, 2, kind, vnni, wr, wrb, b0, ngroups, last, xg, yc + r, ys, b0 > 0); break;
                default: block32_rows(1, 1, kind, vnni, wr, wrb, b0, ngroups, last, xg, yc + r, ys, b0 > 0); break;
                }
            }
        }
    }
}

#define BLOCK32_DRIVERS(NAME, KIND, V)                                                                             \
    static void NAME##_matvec(int64_t n, int64_t nrows, const void *w, size_t wrb, const void *x, float *y) {     \
        block32_matvec(KIND, V, n, nrows, w, wrb, x, y);                                                         \
    }                                                                                                            \
    static void NAME##_matmul_block(int64_t n, int64_t nrows, const void *w, size_t wrb, int64_t ncols,         \
                                    const void *x, size_t xcb, float *y, size_t ys) {                          \
        block32_matmul(KIND, V, n, nrows, w, wrb, ncols, x, xcb, y, ys);                                         \
    }                                                                                                            \
    SIMD_DEFINE_BLOCKED_MATMUL(NAME, SIMD_ROW_BLOCK)

/* ---- K-quants x Q8_K -------------------------------------------------------------------------- */
/* Sub-block scales multiply the int16 pair sums of VPMADDUBSW (pairs <= 2 * 63 * 127, scales
 * <= 128: exact): VPMADDWD + VPADDD, or with VNNI one VPDPWSSD that multiplies and accumulates.
 * Per row, the scales are spread over their sub-blocks' int16 lanes with one word permute per
 * register. The matvecs under VNNI go another way (packed_planes_dot): VPDPBUSD sums 4 products
 * per int32 lane (<= 4 * 63 * 127, so int16 holds it), VPACKSSDW packs two planes into one
 * register and one VPDPWSSD applies both planes' scales: 8 multiply instructions and 2 permutes
 * per super-block and row instead of 8 and 4, and exact all the same. */

static inline float hsum128(__m128 s) {
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 32 activations at a and 32 at b as one register. */
static inline __m512i load_x_pair(const int8_t *a, const int8_t *b) {
    return simd_join256_si(_mm256_loadu_si256((const __m256i *)a), _mm256_loadu_si256((const __m256i *)b));
}

/* int16 lanes of a nibble plane's two sub-blocks: scale index a in the low half, b in the high */
static const uint16_t spread_k45[4][32] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2},
    {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6},
    {5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7},
};
/* VNNI Q4_K/Q5_K: after VPACKSSDW(plane a, plane b) each 128-bit lane holds 4 int32 sums of a
 * then 4 of b; lanes 0-1 are the planes' low sub-blocks, lanes 2-3 their high ones. Row 0:
 * planes 0 and 1 (sub-blocks 0, 1 | 2, 3), row 1: planes 2 and 3 (4, 5 | 6, 7). */
static const uint16_t spread_k45_packed[2][32] = {
    {0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 2, 2, 2, 2, 3, 3, 3, 3},
    {4, 4, 4, 4, 5, 5, 5, 5, 4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 6, 6, 6, 6, 7, 7, 7, 7},
};
/* VNNI Q6_K, the same packing (4 products of 6 bits <= 4 * 63 * 127 < 2^15): lane j of
 * VPACKSSDW(plane a, plane b) holds sub-block 4a + j, then 4b + j. */
static const uint16_t spread_q6_packed[2][32] = {
    {0, 0, 0, 0, 4, 4, 4, 4, 1, 1, 1, 1, 5, 5, 5, 5, 2, 2, 2, 2, 6, 6, 6, 6, 3, 3, 3, 3, 7, 7, 7, 7},
    {8, 8, 8, 8, 12, 12, 12, 12, 9, 9, 9, 9, 13, 13, 13, 13, 10, 10, 10, 10, 14, 14, 14, 14, 11, 11, 11, 11, 15, 15, 15, 15},
};
/* Q6_K: scale 4q + j over the 8 int16 lanes of 128-bit lane j */
static const uint16_t spread_q6[4][32] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13, 14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15},
};

/* acc + (pair sums of u * s) * sc16: with VNNI, VPDPWSSD multiplies and accumulates in one */
SIMD_ALWAYS_INLINE __m512i scaled_pairs(const bool vnni, __m512i acc, __m512i u, __m512i s, __m512i sc16) {
    __m512i pairs = _mm512_maddubs_epi16(u, s);
#if defined(SIMD_AVX512_HAS_VNNI)
    if (vnni) return _mm512_dpwssd_epi32(acc, pairs, sc16);
#endif
    return _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, sc16));
}

#if defined(SIMD_AVX512_HAS_VNNI)
/* VNNI: acc + the four planes' products with x, scaled: VPDPBUSD per plane (4 products per int32
 * lane, small enough for int16), planes 0|1 and 2|3 packed by VPACKSSDW, each pair scaled by one
 * VPDPWSSD with sc01 / sc23 laid out for the packed lanes (spread_*_packed). */
SIMD_ALWAYS_INLINE __m512i packed_planes_dot(__m512i acc, const __m512i planes[4], const __m512i x[4], __m512i sc01,
                                             __m512i sc23) {
    __m512i d[4];
    SIMD_UNROLL for (int p = 0; p < 4; p++) d[p] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), planes[p], x[p]);
    return _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(acc, _mm512_packs_epi32(d[0], d[1]), sc01),
                               _mm512_packs_epi32(d[2], d[3]), sc23);
}
#endif

/* Q4_K / Q5_K. qs bytes 0..63 hold chunks 0 and 1: their low nibbles are sub-blocks 0 and 2,
 * their high nibbles sub-blocks 1 and 3 (bytes 64..127 likewise for 4..7). So the four nibble
 * planes pair with x as [x0..31 | x64..95], [x32..63 | x96..127], [x128.. | x192..],
 * [x160.. | x224..], and each plane's halves take the scales (sc0, sc2), (sc1, sc3),
 * (sc4, sc6), (sc5, sc7). Q5_K's fifth bit of sub-block j is bit j of qh[l] (l = byte within
 * the half): qh goes in both halves and a per-half bit mask picks it. The mins term
 * dmin dx sum_j m[j] (bsums[2j] + bsums[2j+1]) is kept in its own 4 float lanes. */
/* A Q4_K / Q5_K super-block's four planes (see above), unsigned, Q5_K's fifth bit included. */
SIMD_ALWAYS_INLINE void k45_planes(const bool five_bit, const uint8_t *blk, __m512i planes[4]) {
    const __m512i low4 = _mm512_set1_epi8(15), bit4 = _mm512_set1_epi8(16);
    const uint8_t *qs = five_bit ? ((const block_q5_k *)blk)->qs : ((const block_q4_k *)blk)->qs;
    __m512i q0 = _mm512_loadu_si512(qs), q1 = _mm512_loadu_si512(qs + 64);
    planes[0] = _mm512_and_si512(q0, low4);
    planes[1] = _mm512_and_si512(_mm512_srli_epi16(q0, 4), low4);
    planes[2] = _mm512_and_si512(q1, low4);
    planes[3] = _mm512_and_si512(_mm512_srli_epi16(q1, 4), low4);
    if (five_bit) {
        const __m512i hbit[4] = {simd_join256_si(_mm256_set1_epi8(1), _mm256_set1_epi8(4)),
                                 simd_join256_si(_mm256_set1_epi8(2), _mm256_set1_epi8(8)),
                                 simd_join256_si(_mm256_set1_epi8(16), _mm256_set1_epi8(64)),
                                 simd_join256_si(_mm256_set1_epi8(32), _mm256_set1_epi8((char)128))};
        __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)((const block_q5_k *)blk)->qh));
        SIMD_UNROLL for (int p = 0; p < 4; p++)
            planes[p] = _mm512_or_si512(planes[p], _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(qh, hbit[p]), bit4));
    }
}

SIMD_ALWAYS_INLINE void k45_tile(const int R, const int C, const bool five_bit, const bool vnni, int64_t n, const uint8_t *w,
                                 size_t wrb, const uint8_t *x, size_t xcb, float *y, size_t ys) {
    TILE_BEGIN
    __m128 accm[4][4];
    SIMD_UNROLL for (int r = 0; r < R; r++)
        SIMD_UNROLL for (int c = 0; c < C; c++) accm[r][c] = _mm_setzero_ps();
    const size_t block_bytes = five_bit ? sizeof(block_q5_k) : sizeof(block_q4_k);
    for (int64_t ib = 0; ib < n / QK_K; ib++) {
        __m512i xv[4][4];
        __m128i bpairs[4];
        __m128 dxv[4];
        SIMD_UNROLL for (int c = 0; c < C; c++) {
            const block_q8_k *xb = (const block_q8_k *)(x + c * xcb) + ib;
            xv[c][0] = load_x_pair(xb->qs, xb->qs + 64);
            xv[c][1] = load_x_pair(xb->qs + 32, xb->qs + 96);
            xv[c][2] = load_x_pair(xb->qs + 128, xb->qs + 192);
            xv[c][3] = load_x_pair(xb->qs + 160, xb->qs + 224);
            bpairs[c] = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)xb->bsums), _mm_loadu_si128((const __m128i *)(xb->bsums + 8)));
            dxv[c] = _mm_set1_ps(xb->d);
        }
        SIMD_UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *blk = w + r * wrb + ib * block_bytes;
            simd_prefetch_lines((const char *)blk + (size_t)R * wrb, 3); /* the next tile's rows, as above */
            const block_q4_k *hdr = (const block_q4_k *)blk; /* Q5_K shares d, dmin, scales */
            __m256i sm16 = simd_k45_scales16(hdr->scales);    /* sc[0..7], m[0..7] as int16 */
            __m128i m16 = _mm256_extracti128_si256(sm16, 1);
            __m512i planes[4];
            k45_planes(five_bit, blk, planes);
            __m512i sc[4];
            if (vnni) {
                SIMD_UNROLL for (int p = 0; p < 2; p++)
                    sc[p] = _mm512_permutexvar_epi16(_mm512_loadu_si512(spread_k45_packed[p]), _mm512_castsi256_si512(sm16));
            } else {
                SIMD_UNROLL for (int p = 0; p < 4; p++)
                    sc[p] = _mm512_permutexvar_epi16(_mm512_loadu_si512(spread_k45[p]), _mm512_castsi256_si512(sm16));
            }
            int32_t d_dmin;
            memcpy(&d_dmin, hdr, 4);
            __m128 scales = _mm_cvtph_ps(_mm_cvtsi32_si128(d_dmin)); /* d, dmin: one conversion */
            SIMD_UNROLL for (int c = 0; c < C; c++) {
                const __m512i zero = _mm512_setzero_si512(); /* two chains of two: shorter latency */
                __m512i isum;
#if defined(SIMD_AVX512_HAS_VNNI)
                if (vnni)
                    isum = packed_planes_dot(zero, planes, xv[c], sc[0], sc[1]);
                else
#endif
                {
                    isum = scaled_pairs(vnni, scaled_pairs(vnni, zero, planes[0], xv[c][0], sc[0]), planes[1], xv[c][1], sc[1]);
                    __m512i isum2 = scaled_pairs(vnni, scaled_pairs(vnni, zero, planes[2], xv[c][2], sc[2]), planes[3], xv[c][3], sc[3]);
                    isum = _mm512_add_epi32(isum, isum2);
                }
                __m128 sx = _mm_mul_ps(scales, dxv[c]); /* d dx, dmin dx */
                acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_broadcastss_ps(sx), acc[r][c]);
                __m128i ms = _mm_madd_epi16(m16, bpairs[c]);
                accm[r][c] = _mm_fmadd_ps(_mm_cvtepi32_ps(ms), _mm_shuffle_ps(sx, sx, 0x55), accm[r][c]);
            }
        }
    }
    SIMD_UNROLL for (int r = 0; r < R; r++)
        SIMD_UNROLL for (int c = 0; c < C; c++) y[c * ys + r] = hsum(acc[r][c]) - hsum128(accm[r][c]);
}

#if defined(SIMD_AVX512_HAS_VNNI)
/* Decode's Q4_K / Q5_K matvec under VNNI, 4 rows: k45_tile's arithmetic (the same lanes, the same
 * results) with each super-block's header work done for the 4 rows in one register: their
 * 6-bit scales and mins decoded together (simd_k45_scales16's steps on 4 lanes), their d and
 * dmin converted together, and their mins terms in one VPMADDWD and one FMA (row r in lane r). */
SIMD_ALWAYS_INLINE void k45_rows4_vnni(const bool five_bit, int64_t n, const uint8_t *w, size_t wrb, const uint8_t *x,
                                       float *y) {
    __m512 acc[4], accm = _mm512_setzero_ps();
    SIMD_UNROLL for (int r = 0; r < 4; r++) acc[r] = _mm512_setzero_ps();
    const size_t block_bytes = five_bit ? sizeof(block_q5_k) : sizeof(block_q4_k);
    const __m512i zero = _mm512_setzero_si512();
    const __m512i scale_shift = _mm512_broadcast_i32x4(_mm_setr_epi32(0, 0, 0, 4));
    const __m512i scale_mask = _mm512_broadcast_i32x4(_mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    const __m512i high_mask = _mm512_broadcast_i32x4(_mm_setr_epi32(0, 0x03030303, 0, 0x03030303));
    const __m512i first_dwords = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i odd_qwords = _mm512_setr_epi64(1, 3, 5, 7, 1, 3, 5, 7);
    const __m512i lane0 = _mm512_setr_epi32(0, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i dmin_lanes = _mm512_setr_epi32(1, 1, 1, 1, 3, 3, 3, 3, 5, 5, 5, 5, 7, 7, 7, 7);
    const __m512i sc_spread[2] = {_mm512_loadu_si512(spread_k45_packed[0]), _mm512_loadu_si512(spread_k45_packed[1])};
    for (int64_t ib = 0; ib < n / QK_K; ib++) {
        const block_q8_k *xb = (const block_q8_k *)x + ib;
        __m512i xv[4] = {load_x_pair(xb->qs, xb->qs + 64), load_x_pair(xb->qs + 32, xb->qs + 96),
                         load_x_pair(xb->qs + 128, xb->qs + 192), load_x_pair(xb->qs + 160, xb->qs + 224)};
        __m128i bpairs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)xb->bsums), _mm_loadu_si128((const __m128i *)(xb->bsums + 8)));
        const uint8_t *blk = w + ib * block_bytes;
        /* the 4 rows' headers (d, dmin, 12 scale bytes), row r in 128-bit lane r */
        __m512i h = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)blk));
        h = _mm512_inserti32x4(h, _mm_loadu_si128((const __m128i *)(blk + wrb)), 1);
        h = _mm512_inserti32x4(h, _mm_loadu_si128((const __m128i *)(blk + 2 * wrb)), 2);
        h = _mm512_inserti32x4(h, _mm_loadu_si128((const __m128i *)(blk + 3 * wrb)), 3);
        __m512i v = _mm512_bsrli_epi128(h, 4); /* the scale bytes at the start of each lane */
        __m512i lo = _mm512_and_si512(_mm512_srlv_epi32(_mm512_shuffle_epi32(v, (_MM_PERM_ENUM)0x98), scale_shift), scale_mask);
        __m512i hi = _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(_mm512_shuffle_epi32(v, (_MM_PERM_ENUM)0x50), 6), high_mask), 4);
        __m512i sm8 = _mm512_or_si512(lo, hi); /* lane r: sc[0..7], m[0..7] of row r as bytes */
        __m256 dd = _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi32(first_dwords, h)));
        __m512 sx = _mm512_castps256_ps512(_mm256_mul_ps(dd, _mm256_set1_ps(xb->d))); /* d_r dx, dmin_r dx */
        __m512i m16 = _mm512_cvtepu8_epi16(_mm512_castsi512_si256(_mm512_permutexvar_epi64(odd_qwords, sm8)));
        __m512i ms = _mm512_madd_epi16(m16, _mm512_broadcast_i32x4(bpairs));
        accm = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ms), _mm512_permutexvar_ps(dmin_lanes, sx), accm);
        SIMD_UNROLL for (int r = 0; r < 4; r++) {
            const uint8_t *row = blk + r * wrb;
            /* the next tile's rows: 4 lines where the super-block spans 3 (Q5_K's up to 4), so the
             * prefetches run a line ahead along the row: decode 2-5% faster on mini q4_k_m than
             * with 3, 6 no better (tokens alternated in one process, README "Measured") */
            simd_prefetch_lines(row + 4 * wrb, 4);
            /* lane r by a permute, not VEXTRACTI32X4: its lane must be an immediate, and r is one
             * only once the loop is unrolled (not in the sanitizer build) */
            __m128i sm8_r = _mm512_castsi512_si128(_mm512_permutexvar_epi32(_mm512_add_epi32(_mm512_set1_epi32(4 * r), lane0), sm8));
            __m512i sm16 = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(sm8_r));
            __m512i sc0 = _mm512_permutexvar_epi16(sc_spread[0], sm16), sc1 = _mm512_permutexvar_epi16(sc_spread[1], sm16);
            __m512i planes[4];
            k45_planes(five_bit, row, planes);
            __m512i isum = packed_planes_dot(zero, planes, xv, sc0, sc1);
            __m512 d_r = _mm512_permutexvar_ps(_mm512_set1_epi32(2 * r), sx);
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), d_r, acc[r]);
        }
    }
    float mins[16];
    _mm512_storeu_ps(mins, accm);
    SIMD_UNROLL for (int r = 0; r < 4; r++) y[r] = hsum(acc[r]) - hsum128(_mm_loadu_ps(mins + 4 * r));
}
#endif

/* Q6_K. In half h, ql[64h .. 64h+63] is one register: its low nibbles are quarters 0 and 1
 * (elements 128h + 0..63, contiguous), its high nibbles quarters 2 and 3 (128h + 64..127);
 * the top two bits come from qh[32h + l] at bits 2k, which a per-half variable shift brings
 * down. Each 16-byte lane is one 16-weight sub-block with its int8 scale. The -32 offset is
 * folded in once per super-block as 32 * sum_g scale[g] * bsums[g]. */
/* A Q6_K super-block's four 6-bit planes (unsigned, in element order) and its 16 int8 scales
 * spread over the planes' int16 lanes (sc16: the scales as int16, for the offset). */
SIMD_ALWAYS_INLINE void q6_k_decode(const block_q6_k *wb, __m512i z[4], __m512i sc[4], __m256i *sc16, const bool packed) {
    const __m512i low4 = _mm512_set1_epi8(15), low2 = _mm512_set1_epi8(3);
    const __m512i shift_lo = simd_join256_si(_mm256_setzero_si256(), _mm256_set1_epi16(2));
    const __m512i shift_hi = simd_join256_si(_mm256_set1_epi16(4), _mm256_set1_epi16(6));
    *sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wb->scales));
    if (packed) { /* sc[0..1] in the layout of spread_q6_packed */
        SIMD_UNROLL for (int q = 0; q < 2; q++)
            sc[q] = _mm512_permutexvar_epi16(_mm512_loadu_si512(spread_q6_packed[q]), _mm512_castsi256_si512(*sc16));
    } else {
        SIMD_UNROLL for (int q = 0; q < 4; q++)
            sc[q] = _mm512_permutexvar_epi16(_mm512_loadu_si512(spread_q6[q]), _mm512_castsi256_si512(*sc16));
    }
    SIMD_UNROLL for (int h = 0; h < 2; h++) {
        __m512i ql = _mm512_loadu_si512(wb->ql + 64 * h);
        __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(wb->qh + 32 * h)));
        z[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, low4),
                                   _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shift_lo), low2), 4));
        z[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low4),
                                       _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shift_hi), low2), 4));
    }
}

SIMD_ALWAYS_INLINE void q6_k_tile(const int R, const int C, const bool vnni, int64_t n, const uint8_t *w, size_t wrb, const uint8_t *x,
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
            simd_prefetch_lines((const char *)wb + (size_t)R * wrb, 4);
            __m256i sc16;
            __m512i sc[4], z[4];
            q6_k_decode(wb, z, sc, &sc16, vnni);
            float d = half_f32(wb->d);
            SIMD_UNROLL for (int c = 0; c < C; c++) {
                __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs[c]), 5);
                __m512i isum = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_inserti64x4(_mm512_setzero_si512(), offset, 0));
#if defined(SIMD_AVX512_HAS_VNNI)
                if (vnni) {
                    const __m512i xq[4] = {_mm512_loadu_si512(xb[c]->qs), _mm512_loadu_si512(xb[c]->qs + 64),
                                           _mm512_loadu_si512(xb[c]->qs + 128), _mm512_loadu_si512(xb[c]->qs + 192)};
                    isum = packed_planes_dot(isum, z, xq, sc[0], sc[1]);
                } else
#endif
                    SIMD_UNROLL for (int q = 0; q < 4; q++)
                        isum = scaled_pairs(vnni, isum, z[q], _mm512_loadu_si512(xb[c]->qs + 64 * q), sc[q]);
                acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * xb[c]->d), acc[r][c]);
            }
        }
    }
    TILE_END
}

/* ---- K-quants x Q8_K, small batches (prefill): one row against up to 8 prepared columns --------- */
/* The matvec tiles above pay, per row and column, for loading and joining x, the mins or the
 * -32 offset, and a decode shared by only 4 columns; at a batch that is what bounds them. Here
 * each column's activations are laid out once per call in the planes' order (one load each),
 * a row's super-block is decoded once for 8 columns, and per column and super-block only the
 * four VPMADDUBSW + VPDPWSSD pairs and one convert-scale-add remain:
 *   - Q4_K / Q5_K: the mins term dmin dx sum_j m[j] bsum_j is taken for 4 columns at once (one
 *     128-bit lane per column: 8 bsum pairs against the row's 8 mins in one VPMADDWD);
 *   - Q6_K: the weights go signed (q - 32) and x unsigned (x + 128), so the offset becomes a
 *     correction of the row alone, 128 sum sc (q - 32), which starts each column's sum.
 *   - Q4_K / Q5_K with VNNI: VPDPBUSD takes the products, two per lane of the same sub-block
 *     (q <= 31, |x| <= 127: 8 products fit int16), so one VPDPWSSD applies the sub-block
 *     scales to an int32 lane read as the int16 pair (value, sign) against (scale, 0): six
 *     multiplies per column and super-block instead of eight. The weight planes are regrouped
 *     for it once per row (2 VPERMT2Q per half), the activations once per call.
 * simd_matmul_blocked walks 64-row x 64-column blocks so a block's weights stay in L2 across its
 * column groups, and x goes in chunks of KQ_SB_CHUNK super-blocks (16 KB of stack for 8 columns). */
#define KQ_COLS 8
#define KQ_SB_CHUNK 8
#define KQ_UNROLL _Pragma("GCC unroll 8") /* the column loops: accumulators in registers */

typedef enum { KQ_Q4_K, KQ_Q5_K, KQ_Q6_K } kq_kind;

/* The paired layout's scales: even word 2i of half h takes sc[4h + i/4] (odd words are masked) */
static const uint16_t spread_paired[2][32] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
};

typedef struct {
    __m512i x[KQ_SB_CHUNK][KQ_COLS][4]; /* Q4_K/Q5_K: the planes' pairs; Q6_K: qs + 128 in order */
    __m512i bpairs[KQ_SB_CHUNK][KQ_COLS / 4]; /* Q4_K/Q5_K: 4 columns x 8 sub-block sums (int16) */
    __m512 dx4[KQ_SB_CHUNK][KQ_COLS / 4];     /* each column's dx over its 4 lanes */
    float dx[KQ_SB_CHUNK][KQ_COLS];
} kq_prep;

/* Columns [0, cn) of x, super-blocks [sb0, sb0 + nsb); columns cn..C-1 read as zero. */
/* x[16a..16a+15] | x[16b..] | x[16c..] | x[16d..] as one register */
static inline __m512i load_x_quads(const int8_t *x, int a, int b, int c, int d) {
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(x + 16 * a)));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(x + 16 * b)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(x + 16 * c)), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(x + 16 * d)), 3);
}

/* The paired layout (Q4_K/Q5_K with VNNI): register 2h (h = half of the super-block) holds the
 * first 16 elements of sub-blocks 4h..4h+3, register 2h+1 their last 16. */
SIMD_ALWAYS_INLINE void kq_prepare(const int C, const kq_kind kind, const bool paired, const uint8_t *x, size_t xcb,
                                   int cn, int64_t sb0, int nsb, kq_prep *p) {
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    for (int s = 0; s < nsb; s++) {
        int16_t bp[KQ_COLS][8];
        for (int c = 0; c < C; c++) {
            if (c >= cn) {
                SIMD_UNROLL for (int q = 0; q < 4; q++) p->x[s][c][q] = _mm512_setzero_si512();
                p->dx[s][c] = 0;
                memset(bp[c], 0, sizeof bp[c]);
                continue;
            }
            const block_q8_k *xb = (const block_q8_k *)(x + (size_t)c * xcb) + sb0 + s;
            p->dx[s][c] = xb->d;
            if (kind == KQ_Q6_K) {
                SIMD_UNROLL for (int q = 0; q < 4; q++)
                    p->x[s][c][q] = _mm512_xor_si512(_mm512_loadu_si512(xb->qs + 64 * q), bias);
            } else if (paired) {
                SIMD_UNROLL for (int h = 0; h < 2; h++) {
                    p->x[s][c][2 * h] = load_x_quads(xb->qs + 128 * h, 0, 2, 4, 6);
                    p->x[s][c][2 * h + 1] = load_x_quads(xb->qs + 128 * h, 1, 3, 5, 7);
                }
                for (int j = 0; j < 8; j++) bp[c][j] = (int16_t)(xb->bsums[2 * j] + xb->bsums[2 * j + 1]);
            } else {
                p->x[s][c][0] = load_x_pair(xb->qs, xb->qs + 64);
                p->x[s][c][1] = load_x_pair(xb->qs + 32, xb->qs + 96);
                p->x[s][c][2] = load_x_pair(xb->qs + 128, xb->qs + 192);
                p->x[s][c][3] = load_x_pair(xb->qs + 160, xb->qs + 224);
                for (int j = 0; j < 8; j++) bp[c][j] = (int16_t)(xb->bsums[2 * j] + xb->bsums[2 * j + 1]);
            }
        }
        if (kind != KQ_Q6_K)
            for (int g = 0; g < (C + 3) / 4; g++) {
                float d4[16];
                for (int l = 0; l < 16; l++) d4[l] = 4 * g + l / 4 < C ? p->dx[s][4 * g + l / 4] : 0.0f;
                p->dx4[s][g] = _mm512_loadu_ps(d4);
                int16_t b4[32] = {0};
                for (int l = 0; l < 32 && 4 * g + l / 8 < C; l++) b4[l] = bp[4 * g + l / 8][l % 8];
                p->bpairs[s][g] = _mm512_loadu_si512(b4);
            }
    }
}

/* One row (super-blocks sb0.. of the prepared chunk) against C prepared columns: y[c * ys] for
 * c < cn is set, or added to when `add`. `next` is prefetched: the same place one row on. */
SIMD_ALWAYS_INLINE void kq_row(const int C, const kq_kind kind, const bool vnni, const uint8_t *row, int64_t sb0,
                               int nsb, const kq_prep *p, int cn, float *y, size_t ys, bool add, size_t wrb) {
    __m512 acc[KQ_COLS], accm[KQ_COLS / 4];
    KQ_UNROLL for (int c = 0; c < C; c++) acc[c] = _mm512_setzero_ps();
    SIMD_UNROLL for (int g = 0; g < (C + 3) / 4; g++) accm[g] = _mm512_setzero_ps();
    const size_t block_bytes = kind == KQ_Q6_K ? sizeof(block_q6_k) : kind == KQ_Q5_K ? sizeof(block_q5_k) : sizeof(block_q4_k);
    const __m512i bias = _mm512_set1_epi8((char)0x80), q6_offset = _mm512_set1_epi8(32);
    const bool paired = vnni && kind != KQ_Q6_K;
    for (int s = 0; s < nsb; s++) {
        const uint8_t *blk = row + (size_t)(sb0 + s) * block_bytes;
        simd_prefetch_lines(blk + wrb, kind == KQ_Q6_K ? 4 : 3);
        __m512i planes[4], sc[4], start = _mm512_setzero_si512();
        __m512 dw, dmin = _mm512_setzero_ps();
        __m512i m16x4 = _mm512_setzero_si512();
        if (kind == KQ_Q6_K) {
            const block_q6_k *wb = (const block_q6_k *)blk;
            __m256i sc16;
            q6_k_decode(wb, planes, sc, &sc16, false);
            /* signed weights q - 32; each column's sum starts at -128 sum sc (q - 32) */
            SIMD_UNROLL for (int q = 0; q < 4; q++) {
                planes[q] = _mm512_sub_epi8(planes[q], q6_offset);
                start = scaled_pairs(vnni, start, bias, planes[q], sc[q]);
            }
            start = _mm512_sub_epi32(_mm512_setzero_si512(), start);
            dw = _mm512_set1_ps(half_f32(wb->d));
        } else {
            const block_q4_k *hdr = (const block_q4_k *)blk; /* Q5_K shares d, dmin, scales */
            __m256i sm16 = simd_k45_scales16(hdr->scales);
            m16x4 = _mm512_broadcast_i32x4(_mm256_extracti128_si256(sm16, 1));
            k45_planes(kind == KQ_Q5_K, blk, planes);
            if (paired) { /* planes (sb 0|2), (1|3) -> first halves of sb 0..3, second halves */
                const __m512i first = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
                const __m512i second = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
                SIMD_UNROLL for (int h = 0; h < 2; h++) {
                    __m512i a = planes[2 * h], b = planes[2 * h + 1];
                    planes[2 * h] = _mm512_permutex2var_epi64(a, first, b);
                    planes[2 * h + 1] = _mm512_permutex2var_epi64(a, second, b);
                    /* int32 lane i: (scale of sub-block 4h + i/4, 0) as two int16 */
                    sc[h] = _mm512_maskz_permutexvar_epi16(0x55555555, _mm512_loadu_si512(spread_paired[h]),
                                                           _mm512_castsi256_si512(sm16));
                }
            } else {
                SIMD_UNROLL for (int q = 0; q < 4; q++)
                    sc[q] = _mm512_permutexvar_epi16(_mm512_loadu_si512(spread_k45[q]), _mm512_castsi256_si512(sm16));
            }
            dw = _mm512_set1_ps(half_f32(hdr->d));
            dmin = _mm512_set1_ps(half_f32(hdr->dmin));
        }
        __m512i isums[KQ_COLS];
        KQ_UNROLL for (int c = 0; c < C; c++) isums[c] = start;
        if (paired) {
#if defined(SIMD_AVX512_HAS_VNNI)
            SIMD_UNROLL for (int h = 0; h < 2; h++)
                KQ_UNROLL for (int c = 0; c < C; c++) {
                    __m512i t = _mm512_dpbusd_epi32(_mm512_setzero_si512(), planes[2 * h], p->x[s][c][2 * h]);
                    t = _mm512_dpbusd_epi32(t, planes[2 * h + 1], p->x[s][c][2 * h + 1]);
                    isums[c] = _mm512_dpwssd_epi32(isums[c], t, sc[h]);
                }
#endif
        } else {
            /* plane by plane across the columns: 8 independent chains in flight */
            SIMD_UNROLL for (int q = 0; q < 4; q++)
                KQ_UNROLL for (int c = 0; c < C; c++)
                    isums[c] = kind == KQ_Q6_K ? scaled_pairs(vnni, isums[c], p->x[s][c][q], planes[q], sc[q])
                                               : scaled_pairs(vnni, isums[c], planes[q], p->x[s][c][q], sc[q]);
        }
        KQ_UNROLL for (int c = 0; c < C; c++) {
            __m512i isum = isums[c];
            /* (isum dx) dw: the multiply takes dx as a broadcast memory operand, no shuffle */
            acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(p->dx[s][c])), dw, acc[c]);
        }
        if (kind != KQ_Q6_K)
            SIMD_UNROLL for (int g = 0; g < (C + 3) / 4; g++) {
                __m512 ms = _mm512_cvtepi32_ps(_mm512_madd_epi16(m16x4, p->bpairs[s][g]));
                accm[g] = _mm512_fmadd_ps(ms, _mm512_mul_ps(dmin, p->dx4[s][g]), accm[g]);
            }
    }
    float mins[KQ_COLS] = {0};
    if (kind != KQ_Q6_K)
        SIMD_UNROLL for (int g = 0; g < (C + 3) / 4; g++) {
            float lanes[16];
            _mm512_storeu_ps(lanes, accm[g]);
            for (int l = 0; l < 4 && 4 * g + l < C; l++)
                mins[4 * g + l] = (lanes[4 * l] + lanes[4 * l + 1]) + (lanes[4 * l + 2] + lanes[4 * l + 3]);
        }
    KQ_UNROLL for (int c = 0; c < C; c++) {
        if (c >= cn) break;
        float v = hsum(acc[c]) - mins[c];
        y[c * ys] = add ? y[c * ys] + v : v;
    }
}

/* One block of at most SIMD_ROW_BLOCK rows and SIMD_COL_BLOCK columns (simd_matmul_blocked walks
 * the blocks, so their weights and activations stay in L2 while they are reused). */
SIMD_ALWAYS_INLINE void kq_matmul_block(const kq_kind kind, const bool vnni, int64_t n, int64_t nrows, const void *w,
                                        size_t wrb, int64_t ncols, const void *x, size_t xcb, float *y, size_t ys,
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
            const bool paired = vnni && kind != KQ_Q6_K;
            if (cn > 4) kq_prepare(8, kind, paired, xc, xcb, cn, sb0, nsb, &prep);
            else kq_prepare(4, kind, paired, xc, xcb, cn, sb0, nsb, &prep);
            for (int64_t r = 0; r < nrows; r++) {
                const uint8_t *row = wp + (size_t)r * wrb;
                if (cn > 4) kq_row(8, kind, vnni, row, sb0, nsb, &prep, cn, yc + r, ys, sb0 > 0, wrb);
                else kq_row(4, kind, vnni, row, sb0, nsb, &prep, cn, yc + r, ys, sb0 > 0, wrb);
            }
        }
    }
}

#define KQ_DRIVERS(NAME, TILE, KIND, V)                                                                           \
    SIMD_DEFINE_MATVEC(NAME, TILE)                                                                                \
    static void NAME##_matmul_block(int64_t n, int64_t nrows, const void *w, size_t wrb, int64_t ncols,           \
                                    const void *x, size_t xcb, float *y, size_t ys) {                             \
        kq_matmul_block(KIND, V, n, nrows, w, wrb, ncols, x, xcb, y, ys, NAME##_matvec);                          \
    }                                                                                                             \
    SIMD_DEFINE_BLOCKED_MATMUL(NAME, SIMD_ROW_BLOCK)

/* ---- float weights x F32 ------------------------------------------------------------------------- */

typedef enum { W_F32, W_F16, W_BF16 } float_kind;

SIMD_ALWAYS_INLINE __m512 load_w16(const float_kind kind, const uint8_t *p) {
    if (kind == W_F32) return _mm512_loadu_ps((const float *)p);
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    if (kind == W_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

SIMD_ALWAYS_INLINE void float_tile(const int R, const int C, const float_kind kind, int64_t n, const uint8_t *w,
                                   size_t wrb, const uint8_t *x, size_t xcb, float *y, size_t ys) {
    TILE_BEGIN
    const size_t wsize = kind == W_F32 ? 4 : 2;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 xv[4];
        SIMD_UNROLL for (int c = 0; c < C; c++) xv[c] = _mm512_loadu_ps((const float *)(x + c * xcb) + i);
        SIMD_UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *wp = w + r * wrb + (size_t)i * wsize;
            simd_prefetch_lines((const char *)wp + (size_t)R * wrb, 1);
            __m512 wv = load_w16(kind, wp);
            SIMD_UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
    if (i < n) { /* the tail on zero-padded copies */
        size_t rest = (size_t)(n - i);
        float xpad[4][16] = {{0}};
        uint8_t wpad[4][64] = {{0}};
        SIMD_UNROLL for (int c = 0; c < C; c++) memcpy(xpad[c], (const float *)(x + c * xcb) + i, rest * 4);
        SIMD_UNROLL for (int r = 0; r < R; r++) memcpy(wpad[r], w + r * wrb + (size_t)i * wsize, rest * wsize);
        SIMD_UNROLL for (int r = 0; r < R; r++) {
            __m512 wv = load_w16(kind, wpad[r]);
            SIMD_UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(xpad[c]), acc[r][c]);
        }
    }
    TILE_END
}

/* The matmul's row x up to 8 columns: each 16 weights converted once for all the columns, the
 * columns' sums reduced together (hsum_columns). Every group size, 1 included, takes this path,
 * so a column's result does not depend on how many columns came with it (attention relies on
 * that: its blocks of query rows vary in size). */
SIMD_ALWAYS_INLINE void float_row_columns(const int C, const float_kind kind, int64_t n, const uint8_t *w, size_t wrb,
                                          const uint8_t *x, size_t xcb, float *y, size_t ys) {
    __m512 acc[8];
    COL_UNROLL for (int c = 0; c < 8; c++) acc[c] = _mm512_setzero_ps();
    const size_t wsize = kind == W_F32 ? 4 : 2;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        simd_prefetch_lines(w + wrb + (size_t)i * wsize, 1); /* the next row's same bytes */
        __m512 wv = load_w16(kind, w + (size_t)i * wsize);
        COL_UNROLL for (int c = 0; c < C; c++)
            acc[c] = _mm512_fmadd_ps(wv, _mm512_loadu_ps((const float *)(x + c * xcb) + i), acc[c]);
    }
    if (i < n) { /* the tail on zero-padded copies */
        size_t rest = (size_t)(n - i);
        float xpad[16] = {0};
        uint8_t wpad[64] = {0};
        memcpy(wpad, w + (size_t)i * wsize, rest * wsize);
        __m512 wv = load_w16(kind, wpad);
        COL_UNROLL for (int c = 0; c < C; c++) {
            memcpy(xpad, (const float *)(x + c * xcb) + i, rest * 4);
            acc[c] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(xpad), acc[c]);
        }
    }
    float v[8];
    _mm256_storeu_ps(v, hsum_columns(C, acc));
    for (int c = 0; c < C; c++) y[c * ys] = v[c];
}


/* ---- x times W (simd_xw_fn) ----------------------------------------------------------------------- */

/* M rows of x (M <= XW_ROWS) times V vectors of 16 columns of W (the first `cols` of them: a
 * partial tile is read through a zero-padded copy and written through a buffer, no masked
 * loads, which SIMDe 0.7.4 lacks): each W vector converted once for the M rows, each x element
 * broadcast, M x V sums in registers, no horizontal sum. */
SIMD_ALWAYS_INLINE void xw_tile_v(const int M, const int V, const float_kind kind, int64_t k, const uint8_t *w,
                                  size_t wrb, const float *x, size_t xs, float *y, size_t ys, int cols) {
    __m512 acc[XW_ROWS][2];
    XW_UNROLL for (int r = 0; r < M; r++)
        SIMD_UNROLL for (int v = 0; v < V; v++) acc[r][v] = _mm512_setzero_ps();
    const size_t wsize = kind == W_F32 ? 4 : 2;
    const bool whole = cols == 16 * V;
    for (int64_t i = 0; i < k; i++) {
        const uint8_t *wi = w + (size_t)i * wrb;
        simd_prefetch_lines(wi + XW_PREFETCH_ROWS * wrb, 1);
        uint8_t pad[32 * 4];
        if (!whole) {
            memset(pad, 0, sizeof pad);
            memcpy(pad, wi, (size_t)cols * wsize);
            wi = pad;
        }
        __m512 wv[2];
        SIMD_UNROLL for (int v = 0; v < V; v++) wv[v] = load_w16(kind, wi + 16 * v * wsize);
        XW_UNROLL for (int r = 0; r < M; r++) {
            __m512 xr = _mm512_set1_ps(x[(size_t)r * xs + i]);
            SIMD_UNROLL for (int v = 0; v < V; v++) acc[r][v] = _mm512_fmadd_ps(wv[v], xr, acc[r][v]);
        }
    }
    XW_UNROLL for (int r = 0; r < M; r++) {
        if (whole) {
            SIMD_UNROLL for (int v = 0; v < V; v++) _mm512_storeu_ps(y + (size_t)r * ys + 16 * v, acc[r][v]);
        } else {
            float out[32];
            SIMD_UNROLL for (int v = 0; v < V; v++) _mm512_storeu_ps(out + 16 * v, acc[r][v]);
            memcpy(y + (size_t)r * ys, out, (size_t)cols * sizeof(float));
        }
    }
}

/* up to 32 columns: one or two vectors */
SIMD_ALWAYS_INLINE void xw_tile(const int M, const float_kind kind, int64_t k, const uint8_t *w, size_t wrb,
                                const float *x, size_t xs, float *y, size_t ys, int cols) {
    if (cols > 16) xw_tile_v(M, 2, kind, k, w, wrb, x, xs, y, ys, cols);
    else xw_tile_v(M, 1, kind, k, w, wrb, x, xs, y, ys, cols);
}
SIMD_DEFINE_XW(32)

/* ---- drivers and the two tables -------------------------------------------------------------------- */

BLOCK32_DRIVERS(q4_0_plain, K_Q4_0, false)
BLOCK32_DRIVERS(q4_1_plain, K_Q4_1, false)
BLOCK32_DRIVERS(q8_0_plain, K_Q8_0, false)
BLOCK32_DRIVERS(iq4_nl_plain, K_IQ4_NL, false)
#if defined(SIMD_AVX512_HAS_VNNI)
BLOCK32_DRIVERS(q4_0_vnni, K_Q4_0, true)
BLOCK32_DRIVERS(q4_1_vnni, K_Q4_1, true)
BLOCK32_DRIVERS(q8_0_vnni, K_Q8_0, true)
BLOCK32_DRIVERS(iq4_nl_vnni, K_IQ4_NL, true)
#endif
#define q4_k_plain_tile(R, C, ...) k45_tile(R, C, false, false, __VA_ARGS__)
#define q5_k_plain_tile(R, C, ...) k45_tile(R, C, true, false, __VA_ARGS__)
#define q6_k_plain_tile(R, C, ...) q6_k_tile(R, C, false, __VA_ARGS__)
KQ_DRIVERS(q4_k_plain, q4_k_plain_tile, KQ_Q4_K, false)
KQ_DRIVERS(q5_k_plain, q5_k_plain_tile, KQ_Q5_K, false)
KQ_DRIVERS(q6_k_plain, q6_k_plain_tile, KQ_Q6_K, false)
#if defined(SIMD_AVX512_HAS_VNNI)
/* decode's 4-row tiles take k45_rows4_vnni, the rest k45_tile */
#define K45_VNNI_TILE(FIVE, R, C, n, w, wrb, x, xcb, y, ys)                                     \
    ((R) == 4 && (C) == 1 ? k45_rows4_vnni(FIVE, n, w, wrb, x, y) : k45_tile(R, C, FIVE, true, n, w, wrb, x, xcb, y, ys))
#define q4_k_vnni_tile(R, C, ...) K45_VNNI_TILE(false, R, C, __VA_ARGS__)
#define q5_k_vnni_tile(R, C, ...) K45_VNNI_TILE(true, R, C, __VA_ARGS__)
#define q6_k_vnni_tile(R, C, ...) q6_k_tile(R, C, true, __VA_ARGS__)
KQ_DRIVERS(q4_k_vnni, q4_k_vnni_tile, KQ_Q4_K, true)
KQ_DRIVERS(q5_k_vnni, q5_k_vnni_tile, KQ_Q5_K, true)
KQ_DRIVERS(q6_k_vnni, q6_k_vnni_tile, KQ_Q6_K, true)
#endif

#define f32_tile(R, C, ...) float_tile(R, C, W_F32, __VA_ARGS__)
#define f16_tile(R, C, ...) float_tile(R, C, W_F16, __VA_ARGS__)
#define bf16_tile(R, C, ...) float_tile(R, C, W_BF16, __VA_ARGS__)
FLOAT_DRIVERS(f32, f32_tile, W_F32)
FLOAT_DRIVERS(f16, f16_tile, W_F16)
FLOAT_DRIVERS(bf16, bf16_tile, W_BF16)

/* ---- the peak int8 rate (bench): each accumulator feeds its own next step ----------------------- */

SIMD_ALWAYS_INLINE uint64_t int8_peak(const bool vnni, uint64_t iterations) {
    __m512i acc[SIMD_PEAK_CHAINS];
    const __m512i s = _mm512_set1_epi8(1), ones16 = _mm512_set1_epi16(1);
    SIMD_PEAK_UNROLL for (int k = 0; k < SIMD_PEAK_CHAINS; k++) acc[k] = _mm512_set1_epi32(k);
    for (uint64_t i = 0; i < iterations; i++)
        SIMD_PEAK_UNROLL for (int k = 0; k < SIMD_PEAK_CHAINS; k++) acc[k] = vnni ? dot4(true, acc[k], acc[k], s)
            : _mm512_add_epi32(acc[k], _mm512_madd_epi16(_mm512_maddubs_epi16(acc[k], s), ones16));
    __m512i sum = acc[0];
    for (int k = 1; k < SIMD_PEAK_CHAINS; k++) sum = _mm512_add_epi32(sum, acc[k]);
    volatile int32_t sink = _mm_cvtsi128_si32(_mm512_castsi512_si128(sum)); /* the chains' results are used */
    (void)sink;
    return iterations * SIMD_PEAK_CHAINS * 64 * 2;
}
static uint64_t int8_peak_plain(uint64_t iterations) { return int8_peak(false, iterations); }
#if defined(SIMD_AVX512_HAS_VNNI)
static uint64_t int8_peak_vnni(uint64_t iterations) { return int8_peak(true, iterations); }
#endif

#define TABLE(NAME, NEEDS, V)                                                                                \
    {                                                                                                        \
        .name = NAME SIMD_AVX512_SUFFIX, .needs = (NEEDS), .quantize_q8_0 = simd_quantize_q8_0_avx512,       \
        .quantize_q8_k = simd_quantize_q8_k_avx512,                                                          \
        .types = {SIMD_TYPE_ROWS(simd_quantize_q8_0_avx512, simd_quantize_q8_k_avx512, _##V)},               \
        SIMD_VECMATH_ROW(avx512), .int8_peak = int8_peak_##V,                                                \
    }

static const simd_kernels table_plain = TABLE("avx512", SIMD_AVX512_NEEDS, plain);
const simd_kernels *simd_table_avx512(void) { return &table_plain; }

#if defined(SIMD_AVX512_HAS_VNNI)
static const simd_kernels table_vnni = TABLE("avx512vnni", SIMD_AVX512_NEEDS | SIMD_AVX512_VNNI_NEEDS, vnni);
const simd_kernels *simd_table_avx512vnni(void) { return &table_vnni; }
#else
const simd_kernels *simd_table_avx512vnni(void) { return NULL; } /* built without -mavx512vnni */
#endif

#else
const simd_kernels *simd_table_avx512(void) { return NULL; } /* built without the AVX-512 flags */
const simd_kernels *simd_table_avx512vnni(void) { return NULL; }
#endif

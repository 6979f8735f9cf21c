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

/* ==== kernels: dot products, matvec, activation quantizers, vector math ====================
 *
 * One table of function pointers per ISA (scalar, avx2, avx512, avx512vnni, neon, neondot),
 * chosen once at start-up. The runtime's matmul asks the table for the weight type's kernels:
 *
 *     const simd_kernels *k = simd_kernels_get();
 *     const simd_type_kernels *t = simd_type_kernels_get(k, w_type);    NULL: not supported
 *     size_t xb = simd_act_row_bytes(t->act_type, n);                   bytes of one column
 *     for (c = 0; c < ncols; c++) t->quantize(x + c * n, xq + c * xb, n);
 *     t->matmul(n, rows, w + r0 * w_row_bytes, w_row_bytes, ncols, xq, xb, y + r0, y_col_stride);
 *
 * Weights stay in their block type; each activation column is quantized once per matmul to
 * the weight type's dot partner (Q8_0 for the 32-blocks, Q8_K for the K-quants, F32 as is for
 * float weights) and the kernels take integer dot products block by block. Q4_1 pairs with
 * Q8_0, not ggml's Q8_1: one activation format for every 32-block type, the block's sum of x
 * (for Q4_1's min term) costs one instruction that a memory-bound kernel hides, and it stays
 * an exact integer where Q8_1 stores d * sum(x) rounded to fp16.
 *
 * Kernels are reentrant and allocate nothing; matvec/matmul use up to ~32 KB of stack for the
 * activations laid out per call. They prefetch one tile of rows ahead, and may touch (prefetch
 * only, never load) a few KB past the last row.
 *
 * Accuracy (tests/test_simd.c measures it on every ISA the machine runs, and under SIMDe and
 * qemu for the others):
 *   - quantizers: every ISA is byte-exact with the scalar reference, which is byte-exact with
 *     quant/'s g2_q8_0_from_float / g2_q8_k_from_float (importance NULL).
 *   - integer dots: the integer part is exact; only the float products of the block scales and
 *     their summation round. |y - exact| <= (n/16 + 16) * 2^-23 * A, A = sum over elements of
 *     |weight magnitude| * |activation|, the bound of any summation order of those terms.
 *   - float dots (F32/F16/BF16 weights): |y - exact| <= (n/8 + 16) * 2^-23 * sum |w_i x_i|.
 *   - x times W (simd_xw_fn): every ISA bit-identical to the scalar reference, which is within
 *     (k + 1) * 2^-24 * sum |x_i w_ij| of the exact sum (one fmaf per term, in order).
 *   - vector math: see SIMD_*_MAX_* below.
 * The kernels are single-threaded and reentrant; callers split rows over threads. */

#include <stdbool.h>
#include <stddef.h>

/* ggml type ids the kernels know: the same numbers as quant.h's G2_TYPE_* (a test checks). */
enum {
    SIMD_TYPE_F32 = 0,
    SIMD_TYPE_F16 = 1,
    SIMD_TYPE_Q4_0 = 2,
    SIMD_TYPE_Q4_1 = 3,
    SIMD_TYPE_Q8_0 = 8,
    SIMD_TYPE_Q4_K = 12,
    SIMD_TYPE_Q5_K = 13,
    SIMD_TYPE_Q6_K = 14,
    SIMD_TYPE_Q8_K = 15,
    SIMD_TYPE_IQ4_NL = 20,
    SIMD_TYPE_BF16 = 30,
    SIMD_TYPE_LIMIT = 40 /* ids at or above this have no kernels */
};

/* f32 -> the dot partner: n values (a multiple of the partner's block) into n/block blocks.
 * Quants are in [-127, 127] (never -128: the kernels' sign tricks rely on it). */
typedef void (*simd_quantize_fn)(const float *x, void *out, int64_t n);

/* y[r] = dot(row r of w, x) for r < nrows. Row r starts at (char *)w + r * w_row_bytes; x is
 * one column already in the partner type; n is the row length in weights. */
typedef void (*simd_matvec_fn)(int64_t n, int64_t nrows, const void *w, size_t w_row_bytes, const void *x,
                               float *y);

/* Small-batch (prefill): y[c * y_col_stride + r] = dot(row r of w, column c of x) for r < nrows,
 * c < ncols; column c starts at (char *)x + c * x_col_bytes. Each weight block is decoded once
 * per group of up to 8 columns on x86 (4 for the float types and on NEON); any ncols works
 * (full groups, then the rest). With the
 * runtime's layout y[token][row], y_col_stride is the matrix's row count. */
typedef void (*simd_matmul_fn)(int64_t n, int64_t nrows, const void *w, size_t w_row_bytes, int64_t ncols,
                               const void *x, size_t x_col_bytes, float *y, size_t y_col_stride);

/* x times W, for float W only: y[r * y_stride + j] = sum over i < k of x[r * x_stride + i] * W[i][j],
 * for r < m, j < n; W's row i (n weights) starts at (char *)w + i * w_row_bytes. Each sum is
 * one multiply-add per i, in order of i, starting from zero: every ISA gives the bits of the
 * scalar reference (tests check), whatever m and n. Attention's scores (W: keys stored
 * transposed) and outputs (W: values), with no horizontal sums. */
typedef void (*simd_xw_fn)(int64_t k, int64_t n, const void *w, size_t w_row_bytes, int64_t m, const float *x,
                           size_t x_stride, float *y, size_t y_stride);

/* One weight type's kernels on one ISA. */
typedef struct {
    uint32_t act_type;         /* SIMD_TYPE_Q8_0, SIMD_TYPE_Q8_K or SIMD_TYPE_F32 */
    int64_t block;             /* n must be a multiple of this: 32, 256, or 1 for float weights */
    simd_quantize_fn quantize; /* f32 -> act_type (for F32: a copy; x may also be passed as is) */
    simd_matvec_fn matvec;     /* 4 rows per pass over the activation, then the remainder */
    simd_matmul_fn matmul;     /* up to 8 columns per pass over the weights (see above) */
    simd_xw_fn xw;             /* F32, F16, BF16 only (NULL for the others): see above */
} simd_type_kernels;

/* Vector math over n floats; y may equal x. */
typedef void (*simd_map_fn)(const float *x, float *y, int64_t n);

typedef struct simd_kernels {
    const char *name; /* "scalar", "avx2", "avx512", "avx512vnni", "neon", "neondot" (+"-simde") */
    uint32_t needs;   /* SIMD_CPU_* bits the CPU (and OS) must have */
    simd_quantize_fn quantize_q8_0, quantize_q8_k;
    simd_type_kernels types[SIMD_TYPE_LIMIT]; /* by weight type id; matvec NULL: no kernels */
    simd_map_fn exp;  /* e^x */
    simd_map_fn tanh; /* tanh x */
    simd_map_fn gelu; /* x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), the exact (erf) form */
    void (*softmax)(float *x, int64_t n); /* in place, max-subtracted, sum in double */
    /* A softmax's numerators, for a softmax in parts: m = max_i scale x_i (to *max; -inf when
     * n is 0), x_i = e^(scale x_i - m) in place; returns the sum of the new x_i, in double. */
    double (*exp_sum)(float *x, int64_t n, float scale, float *max);
    /* y = x / sqrt(mean(x^2) + eps) * w, the mean in double (w: n gains) */
    void (*rmsnorm)(const float *x, const float *w, float *y, int64_t n, float eps);
    /* For `grok2 bench`: `iterations` steps of a register-only loop of the int8 multiply-add the
     * table's integer kernels are built on (VPDPBUSD; VPMADDUBSW + VPMADDWD + VPADDD; SDOT;
     * SMULL + SADALP; a C multiply-add), 12 independent accumulators per step. Returns the int8
     * operations done, 2 per multiply-add: timed on every thread, the machine's peak int8 rate. */
    uint64_t (*int8_peak)(uint64_t iterations);
} simd_kernels;

/* Stated maximum errors of the vector math against libm in double (every ISA, checked):
 *   exp:  relative SIMD_EXP_MAX_REL where the result is >= FLT_MIN; below it (x < -87.34) the
 *         result is a correctly-scaled subnormal or 0, absolute error <= 2^-149. x > 88.72: inf.
 *   tanh: absolute SIMD_TANH_MAX_ABS, and relative SIMD_TANH_MAX_REL (all x).
 *   gelu: |err| <= SIMD_GELU_MAX_REL * |gelu(x)| + SIMD_GELU_MAX_ABS, for all x (the negative
 *         tail goes through erfc, so it keeps its relative accuracy until the result underflows
 *         near x = -13; below -20 the result is -0).
 *   exp, tanh and gelu return NaN for NaN.
 *   softmax: relative SIMD_SOFTMAX_MAX_REL + 2^-24 |x_i - max| per output. The second term is
 *         the float rounding of x_i - max; as an absolute error it stays below 2^-24/e, since
 *         t e^-t <= 1/e.
 *   exp_sum: the max is the float max of the float products scale x_i, exactly; each output is
 *         within exp's bound plus 2^-24 |scale x_i - max| relative (as softmax's second term).
 *   rmsnorm: relative SIMD_RMSNORM_MAX_REL per output. */
#define SIMD_EXP_MAX_REL 2.5e-7
#define SIMD_TANH_MAX_ABS 1.5e-7
#define SIMD_TANH_MAX_REL 2.5e-7
#define SIMD_GELU_MAX_REL 8e-7
#define SIMD_GELU_MAX_ABS 1e-37
#define SIMD_SOFTMAX_MAX_REL 6e-7
#define SIMD_RMSNORM_MAX_REL 3e-7

/* ---- the weight type's kernels and its activation partner ---------------------------------- */

/* The kernels of weight_type on ISA k, or NULL when the type has none (or id is out of range). */
const simd_type_kernels *simd_type_kernels_get(const simd_kernels *k, uint32_t weight_type);
/* The dot partner of weight_type (SIMD_TYPE_Q8_0 / Q8_K / F32), or UINT32_MAX if none. */
uint32_t simd_act_type(uint32_t weight_type);
/* Bytes of one activation column of n values in act_type (Q8_0, Q8_K or F32); 0 when n does
 * not fit its blocks or the type is not a partner. */
size_t simd_act_row_bytes(uint32_t act_type, int64_t n);

/* ---- CPU features and dispatch --------------------------------------------------------------- */

enum {
    SIMD_CPU_AVX2 = 1u << 0, /* each x86 bit also requires the OS to save the registers */
    SIMD_CPU_FMA = 1u << 1,
    SIMD_CPU_F16C = 1u << 2,
    SIMD_CPU_AVX512F = 1u << 3,
    SIMD_CPU_AVX512BW = 1u << 4,
    SIMD_CPU_AVX512VL = 1u << 5,
    SIMD_CPU_AVX512DQ = 1u << 6,
    SIMD_CPU_AVX512VNNI = 1u << 7,
    SIMD_CPU_NEON = 1u << 8,
    SIMD_CPU_DOTPROD = 1u << 9,
};

typedef struct {
    uint32_t features;      /* SIMD_CPU_* usable by this process */
    bool os_ymm, os_zmm;    /* x86: XGETBV says the OS saves YMM / ZMM+opmask state */
    uint32_t cpu_reported;  /* SIMD_CPU_* the CPU reports, before the OS check */
} simd_cpu_info;

/* Reads CPUID/XGETBV (x86) or HWCAP (aarch64). Cheap; no caching, no global state. */
void simd_cpu_detect(simd_cpu_info *out);
/* "avx2 fma f16c avx512f ..." for a feature mask. Returns the length written (snprintf). */
int simd_cpu_feature_names(uint32_t features, char *buf, size_t size);

/* Every table built into this binary, best first, the scalar reference last; NULL-terminated. */
const simd_kernels *const *simd_kernels_all(void);
/* The scalar reference table (always built). */
const simd_kernels *simd_kernels_scalar(void);
/* Whether cpu can run k (all of k->needs present). */
bool simd_kernels_runnable(const simd_kernels *k, const simd_cpu_info *cpu);

/* Pure choice, for --isa and GROK2_ISA: name NULL, "" or "auto" -> the best table cpu runs;
 * else the table of that exact name ("scalar", "avx2", "avx512" (no VNNI), "avx512vnni",
 * "neon" (no dotprod), "neondot"). NULL with a one-line message in msg when the name is
 * unknown, not built in, or needs features this CPU lacks (the message names them). */
const simd_kernels *simd_kernels_choose(const char *name, const simd_cpu_info *cpu, char *msg, size_t msg_size);

/* Chooses the process-wide table once: name from --isa, or NULL to use $GROK2_ISA (or the best).
 * -1 with msg on a refused name, or when a different table was already chosen (by an earlier
 * init or a simd_kernels_get()). Call it at start-up, before the first kernel. */
int simd_kernels_init(const char *name, char *msg, size_t msg_size);
/* The chosen table. The first call without init reads $GROK2_ISA; a refused value there prints
 * one line to stderr and falls back to the best table (init is where refusals become errors).
 * The only mutable state of simd/ is this once-set atomic pointer to a const table (and the
 * list of built-in tables, filled once under pthread_once): worker threads may call get()
 * concurrently without locks, and nothing can change under a running kernel. */
const simd_kernels *simd_kernels_get(void);

/* One line for `grok2 info --cpu`: the features found and the kernels chosen, e.g.
 * "cpu: x86-64 avx2 fma f16c avx512f avx512bw avx512vl avx512dq avx512vnni (os saves ymm zmm);
 *  kernels: avx512vnni (best; runnable: avx512vnni avx512 avx2 scalar)". Returns snprintf's. */
int simd_describe(char *buf, size_t size);

/* ---- benchmark ------------------------------------------------------------------------------ */
/* `grok2 bench --kernels [--mb N] [--threads N] [--isa NAME] [--json]` (runtime/
 * cmd_bench_kernels.c): GB/s of weights per kernel, one thread and all threads, next to the
 * memory read bandwidth measured in the same run. argv[0] is the command name. Returns the
 * process exit code. */
int bench_kernels(int argc, char **argv);
/* The peak int8 rate of table k, ops/s: its int8_peak loop on every thread of pool at once,
 * best of 3 runs of about 0.1 s (0 when k has no loop). Defined in runtime/cmd_bench_kernels.c. */
struct thread_pool;
double bench_int8_peak(struct thread_pool *pool, const simd_kernels *k);

#endif

/* The kernel checks (see simd_checks.h). Plain C: built into the Criterion binary (through
 * tests/test_simd.c) and into the standalone driver of the SIMDe and aarch64 builds. */
#include "simd_checks.h"
#include "../../simd/simd_internal.h" /* SIMD_PEAK_CHAINS */

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- bookkeeping ------------------------------------------------------------------------------ */

static void note_failure(check_log *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_failure(check_log *log, const char *fmt, ...) {
    if (log->failures++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(log->first, sizeof log->first, fmt, ap);
        va_end(ap);
    }
}
#define CHECK(log, cond, ...)                         \
    do {                                              \
        (log)->checks++;                              \
        if (!(cond)) note_failure((log), __VA_ARGS__); \
    } while (0)

/* Records err/allowed; fails when it exceeds 1 (or is NaN). */
static void check_error(check_log *log, double err, double allowed, const char *what, ...)
    __attribute__((format(printf, 4, 5)));
static void check_error(check_log *log, double err, double allowed, const char *what, ...) {
    log->checks++;
    double ratio = allowed > 0 ? err / allowed : (err == 0 ? 0 : INFINITY);
    if (ratio > log->worst || ratio != ratio) log->worst = ratio != ratio ? INFINITY : ratio;
    if (ratio <= 1) return;
    char buf[400];
    va_list ap;
    va_start(ap, what);
    vsnprintf(buf, sizeof buf, what, ap);
    va_end(ap);
    note_failure(log, "%s: error %.6g > allowed %.6g", buf, err, allowed);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "simd_checks: out of memory (%zu bytes)\n", n);
        abort();
    }
    return p;
}

/* ---- random numbers ----------------------------------------------------------------------------- */

uint64_t check_next(check_rng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1DULL;
}
double check_uniform(check_rng *r) { return (double)(check_next(r) >> 11) * 0x1p-53; }
double check_gauss(check_rng *r) {
    double u1 = check_uniform(r), u2 = check_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ---- the types ---------------------------------------------------------------------------------- */

typedef struct {
    uint32_t type;
    const char *name;
    int64_t block;
    size_t bytes;
} type_info;

static const type_info kernel_types[] = {
    {SIMD_TYPE_Q4_0, "q4_0", 32, 18}, {SIMD_TYPE_Q4_1, "q4_1", 32, 20},   {SIMD_TYPE_Q8_0, "q8_0", 32, 34},
    {SIMD_TYPE_IQ4_NL, "iq4_nl", 32, 18}, {SIMD_TYPE_Q4_K, "q4_K", 256, 144}, {SIMD_TYPE_Q5_K, "q5_K", 256, 176},
    {SIMD_TYPE_Q6_K, "q6_K", 256, 210}, {SIMD_TYPE_F32, "f32", 1, 4},     {SIMD_TYPE_F16, "f16", 1, 2},
    {SIMD_TYPE_BF16, "bf16", 1, 2},
};
#define N_KERNEL_TYPES (int)(sizeof kernel_types / sizeof kernel_types[0])

static const type_info *info_of(uint32_t type) {
    for (int i = 0; i < N_KERNEL_TYPES; i++)
        if (kernel_types[i].type == type) return &kernel_types[i];
    return NULL;
}

size_t check_row_bytes(uint32_t type, int64_t n) {
    const type_info *t = info_of(type);
    if (!t || n % t->block) return 0;
    return (size_t)(n / t->block) * t->bytes;
}

/* ---- the oracle: decoders written from gguf-format.md, in double ------------------------------ */

static double half(g2_half h) { return g2_half_to_f32(h); }

static void k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

void check_decode_weights(uint32_t type, const void *row, int64_t n, double *val, double *mag) {
    switch (type) {
    case SIMD_TYPE_Q4_0:
    case SIMD_TYPE_IQ4_NL:
        for (int64_t b = 0; b < n / 32; b++) {
            const block_q4_0 *blk = (const block_q4_0 *)row + b;
            double d = half(blk->d);
            for (int j = 0; j < 32; j++) {
                int q = j < 16 ? blk->qs[j] & 15 : blk->qs[j - 16] >> 4;
                double level = type == SIMD_TYPE_Q4_0 ? q - 8 : g2_iq4nl_values[q];
                val[b * 32 + j] = d * level;
                mag[b * 32 + j] = fabs(d * level);
            }
        }
        break;
    case SIMD_TYPE_Q4_1:
        for (int64_t b = 0; b < n / 32; b++) {
            const block_q4_1 *blk = (const block_q4_1 *)row + b;
            double d = half(blk->d), m = half(blk->m);
            for (int j = 0; j < 32; j++) {
                int q = j < 16 ? blk->qs[j] & 15 : blk->qs[j - 16] >> 4;
                val[b * 32 + j] = d * q + m;
                mag[b * 32 + j] = fabs(d * q) + fabs(m);
            }
        }
        break;
    case SIMD_TYPE_Q8_0:
        for (int64_t b = 0; b < n / 32; b++) {
            const block_q8_0 *blk = (const block_q8_0 *)row + b;
            for (int j = 0; j < 32; j++) {
                val[b * 32 + j] = half(blk->d) * blk->qs[j];
                mag[b * 32 + j] = fabs(val[b * 32 + j]);
            }
        }
        break;
    case SIMD_TYPE_Q4_K:
    case SIMD_TYPE_Q5_K:
        for (int64_t b = 0; b < n / 256; b++) {
            const uint8_t *base = (const uint8_t *)row + b * (type == SIMD_TYPE_Q4_K ? 144 : 176);
            /* both start d, dmin, scales[12]; Q5_K then has qh[32] before qs[128] */
            g2_half dh, mh;
            memcpy(&dh, base, 2);
            memcpy(&mh, base + 2, 2);
            const uint8_t *scales = base + 4;
            const uint8_t *qh = type == SIMD_TYPE_Q5_K ? base + 16 : NULL;
            const uint8_t *qs = base + (type == SIMD_TYPE_Q5_K ? 48 : 16);
            double d = half(dh), dmin = half(mh);
            for (int e = 0; e < 256; e++) {
                int j = e / 32, l = e % 32, sc, m;
                k_scale_min(scales, j, &sc, &m);
                int q = (qs[(j / 2) * 32 + l] >> ((j & 1) * 4)) & 15;
                if (qh) q |= ((qh[l] >> j) & 1) << 4;
                val[b * 256 + e] = d * sc * q - dmin * m;
                mag[b * 256 + e] = fabs(d * sc * q) + fabs(dmin * m);
            }
        }
        break;
    case SIMD_TYPE_Q6_K:
        for (int64_t b = 0; b < n / 256; b++) {
            const block_q6_k *blk = (const block_q6_k *)row + b;
            double d = half(blk->d);
            for (int e = 0; e < 256; e++) {
                int h = e / 128, k = (e % 128) / 32, l = e % 32;
                int low = (blk->ql[64 * h + l + 32 * (k & 1)] >> (k < 2 ? 0 : 4)) & 15;
                int high = (blk->qh[32 * h + l] >> (2 * k)) & 3;
                val[b * 256 + e] = d * blk->scales[e / 16] * ((low | (high << 4)) - 32);
                mag[b * 256 + e] = fabs(val[b * 256 + e]);
            }
        }
        break;
    case SIMD_TYPE_F32:
        for (int64_t i = 0; i < n; i++) val[i] = ((const float *)row)[i], mag[i] = fabs(val[i]);
        break;
    case SIMD_TYPE_F16:
        for (int64_t i = 0; i < n; i++) val[i] = half(((const g2_half *)row)[i]), mag[i] = fabs(val[i]);
        break;
    case SIMD_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) val[i] = g2_bf16_to_f32(((const uint16_t *)row)[i]), mag[i] = fabs(val[i]);
        break;
    default: abort();
    }
}

void check_decode_act(uint32_t act_type, const void *col, int64_t n, double *val) {
    if (act_type == SIMD_TYPE_Q8_0) {
        for (int64_t b = 0; b < n / 32; b++)
            for (int j = 0; j < 32; j++)
                val[b * 32 + j] = half(((const block_q8_0 *)col)[b].d) * ((const block_q8_0 *)col)[b].qs[j];
    } else if (act_type == SIMD_TYPE_Q8_K) {
        for (int64_t b = 0; b < n / 256; b++)
            for (int j = 0; j < 256; j++)
                val[b * 256 + j] = (double)((const block_q8_k *)col)[b].d * ((const block_q8_k *)col)[b].qs[j];
    } else {
        for (int64_t i = 0; i < n; i++) val[i] = ((const float *)col)[i];
    }
}

/* ---- test data ------------------------------------------------------------------------------------ */

enum { W_RANDOM, W_ZERO, W_MAX, W_TINY, W_NEGATIVE_HUGE, W_MODES };
static const char *const w_mode_names[] = {"random", "all-zero", "all-max", "tiny-scales", "huge-negative-scales"};
enum { X_GAUSS, X_ZERO, X_ALL_MAX, X_ALTERNATING, X_HUGE, X_MODES };
static const char *const x_mode_names[] = {"gauss", "all-zero", "all-max", "alternating", "huge"};

static g2_half random_scale(check_rng *rng) {
    double mag = pow(2.0, -10 * check_uniform(rng));
    return g2_f32_to_half((float)(check_next(rng) & 1 ? -mag : mag));
}

static void put_half(uint8_t *p, g2_half h) { memcpy(p, &h, 2); }

/* Sets the scale fields of one block according to mode (the quant bytes are already filled). */
static void set_scales(uint32_t type, uint8_t *blk, int mode, check_rng *rng) {
    g2_half fixed = mode == W_ZERO ? 0 : mode == W_MAX ? 0x7bff : mode == W_TINY ? 0x0001 : 0xfbff; /* 65504, 2^-24, -65504 */
    g2_half d = mode == W_RANDOM ? random_scale(rng) : fixed;
    g2_half d2 = mode == W_RANDOM ? random_scale(rng) : fixed;
    switch (type) {
    case SIMD_TYPE_Q4_0:
    case SIMD_TYPE_Q8_0:
    case SIMD_TYPE_IQ4_NL: put_half(blk, d); break;
    case SIMD_TYPE_Q4_1:
    case SIMD_TYPE_Q4_K:
    case SIMD_TYPE_Q5_K:
        put_half(blk, d);
        put_half(blk + 2, d2);
        break;
    case SIMD_TYPE_Q6_K:
        put_half(blk + 208, d);
        if (mode == W_MAX) memset(blk + 192, 0x80, 16); /* int8 scales at -128, the largest magnitude */
        break;
    default: break;
    }
}

/* nrows rows of n weights of type, per mode. Quant bytes: random (0xff for all-max, and
 * -128 for Q8_0's all-max: the value the sign tricks must get right). */
static void gen_weights(uint32_t type, uint8_t *buf, int64_t nrows, int64_t n, int mode, check_rng *rng) {
    const type_info *t = info_of(type);
    size_t row = check_row_bytes(type, n), total = row * (size_t)nrows;
    if (t->block == 1) {
        for (int64_t i = 0; i < n * nrows; i++) {
            double v = mode == W_ZERO ? 0 : check_gauss(rng);
            if (mode == W_MAX) v = check_next(rng) & 1 ? 1 : -1;
            if (mode == W_NEGATIVE_HUGE) v = -fabs(v);
            double scale = mode == W_TINY ? 1e-30 : (mode == W_MAX || mode == W_NEGATIVE_HUGE) ? 1e10 : 1;
            if (type == SIMD_TYPE_F32) {
                ((float *)buf)[i] = (float)(v * scale);
            } else if (type == SIMD_TYPE_F16) {
                /* fp16: all-max is +-65504, tiny is subnormal */
                double hs = mode == W_TINY ? 1e-6 : (mode == W_MAX || mode == W_NEGATIVE_HUGE) ? 65504 : 1;
                if (mode == W_NEGATIVE_HUGE) v = -1;
                ((g2_half *)buf)[i] = g2_f32_to_half((float)(v * hs));
            } else {
                ((uint16_t *)buf)[i] = g2_f32_to_bf16((float)(v * scale));
            }
        }
        return;
    }
    for (size_t i = 0; i < total; i++)
        buf[i] = mode == W_ZERO ? 0 : mode == W_MAX ? (type == SIMD_TYPE_Q8_0 ? 0x80 : 0xff) : (uint8_t)check_next(rng);
    for (size_t off = 0; off < total; off += t->bytes) set_scales(type, buf + off, mode, rng);
}

/* ncols columns of n floats, per mode. */
static void gen_floats(float *x, int64_t ncols, int64_t n, int mode, check_rng *rng) {
    for (int64_t i = 0; i < n * ncols; i++) {
        double v = 0;
        switch (mode) {
        case X_GAUSS: v = check_gauss(rng); break;
        case X_ZERO: v = 0; break;
        case X_ALL_MAX: v = 1; break;
        case X_ALTERNATING: v = i & 1 ? -1 : 1; break;
        case X_HUGE: v = check_gauss(rng) * 1e20; break;
        }
        x[i] = (float)v;
    }
}

/* ---- quantizers: byte-exact with the scalar reference ---------------------------------------- */

/* Blocks of values that probe the scale and rounding rules: each is `block` long. */
static void fill_quantizer_input(float *x, int64_t nblocks, int64_t block, check_rng *rng) {
    for (int64_t b = 0; b < nblocks; b++) {
        float *v = x + b * block;
        double magnitude = pow(10.0, 10 * check_uniform(rng) - 5);
        for (int64_t i = 0; i < block; i++) v[i] = (float)(check_gauss(rng) * magnitude);
        switch (b % 16) {
        case 0: memset(v, 0, (size_t)block * sizeof(float)); break; /* all zero */
        case 1:
            for (int64_t i = 0; i < block; i++) v[i] = 1.0f; /* all max */
            break;
        case 2: /* amax 127 gives d = 1: every other value sits on a .5 tie */
            for (int64_t i = 0; i < block; i++) v[i] = (float)((i % 254) - 127) + (i & 1 ? 0.5f : 0.0f);
            v[0] = 127;
            break;
        case 3: v[block / 2] = FLT_MAX; break;
        case 4: v[1] = INFINITY; break;
        case 5: v[2] = -INFINITY; v[3] = NAN; break;
        case 6: v[block - 1] = NAN; break;
        case 7:
            for (int64_t i = 0; i < block; i++) v[i] = (float)(check_gauss(rng) * 1e-40); /* subnormal */
            break;
        case 8:
            for (int64_t i = 0; i < block; i++) v[i] = (float)(check_gauss(rng) * 1e-6); /* fp16-subnormal d */
            break;
        case 9:
            for (int64_t i = 0; i < block; i++) v[i] = (float)(check_gauss(rng) * 1e7); /* d past 65504 */
            break;
        case 10: v[0] = -1e30f; break; /* negative max */
        case 11:
            for (int64_t i = 0; i < block; i++) v[i] = -0.0f;
            break;
        default: break;
        }
    }
}

static void check_quantizer(const simd_kernels *k, check_log *log, uint32_t act_type) {
    const simd_kernels *ref = simd_kernels_scalar();
    int64_t block = act_type == SIMD_TYPE_Q8_0 ? 32 : 256;
    size_t bytes = act_type == SIMD_TYPE_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q8_k);
    simd_quantize_fn got_fn = act_type == SIMD_TYPE_Q8_0 ? k->quantize_q8_0 : k->quantize_q8_k;
    simd_quantize_fn want_fn = act_type == SIMD_TYPE_Q8_0 ? ref->quantize_q8_0 : ref->quantize_q8_k;
    check_rng rng = {0x9e3779b97f4a7c15ULL ^ act_type};
    static const int64_t counts[] = {1, 2, 3, 16, 37};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        int64_t nb = counts[c], n = nb * block;
        float *x = xmalloc((size_t)n * sizeof(float));
        uint8_t *got = xmalloc(nb * bytes), *want = xmalloc(nb * bytes);
        for (int round = 0; round < 3; round++) {
            fill_quantizer_input(x, nb, block, &rng);
            if (round == 2) /* shift the edge cases to other block positions */
                for (int64_t b = 0; b + 1 < nb; b += 2) memcpy(x + b * block, x + (b + 1) * block, (size_t)block * 4);
            memset(got, 0xa5, nb * bytes);
            want_fn(x, want, n);
            got_fn(x, got, n);
            for (int64_t b = 0; b < nb; b++) {
                bool same = memcmp(got + b * bytes, want + b * bytes, bytes) == 0;
                CHECK(log, same, "%s quantize_%s: %lld blocks, block %lld differs from the scalar reference",
                      k->name, act_type == SIMD_TYPE_Q8_0 ? "q8_0" : "q8_k", (long long)nb, (long long)b);
            }
            /* the per-type entry points quantize the same way */
            for (int i = 0; i < N_KERNEL_TYPES; i++) {
                const simd_type_kernels *t = simd_type_kernels_get(k, kernel_types[i].type);
                if (!t || t->act_type != act_type) continue;
                memset(got, 0x5a, nb * bytes);
                t->quantize(x, got, n);
                CHECK(log, memcmp(got, want, nb * bytes) == 0, "%s: types[%s].quantize differs from the reference",
                      k->name, kernel_types[i].name);
            }
        }
        free(x);
        free(got);
        free(want);
    }
}

static void check_quantize_q8_0(const simd_kernels *k, check_log *log) { check_quantizer(k, log, SIMD_TYPE_Q8_0); }
static void check_quantize_q8_k(const simd_kernels *k, check_log *log) { check_quantizer(k, log, SIMD_TYPE_Q8_K); }

/* ---- dots: matvec and matmul against the exact oracle ------------------------------------------ */

#define MAX_ROWS 66 /* > 64, a multiple of the kernels' row chunks, + 2: the row chunking is exercised */
#define MAX_COLS 19 /* two groups of 8 columns + 3: the column groups and a padded last group */
#define SENTINEL 1234.5f

typedef struct {
    const type_info *t;
    uint32_t act_type;
    int64_t n;
    size_t wrb, xcb;
    uint8_t *w, *x;
    double *exact; /* [MAX_COLS][MAX_ROWS] */
    double *bound; /* [MAX_COLS][MAX_ROWS] */
    float *ref;    /* [MAX_COLS][MAX_ROWS]: the scalar reference kernel's results */
} dot_case;

/* The allowed error: the integer part is exact, so what remains is the rounding of the scale
 * products and of their sum, in any order: (terms + depth) * 2^-24 * sum of |terms|, with
 * terms <= n/16 (Q6_K's sub-blocks are the smallest unit any kernel sums in float) or n/8 for
 * float weights (lanes of at least 8), doubled for the products; a subnormal floor. */
static double allowed_error(const dot_case *dc, double abs_sum) {
    double terms = dc->t->block == 1 ? (double)dc->n / 8 : (double)dc->n / 16;
    return (terms + 16) * 0x1p-23 * abs_sum + (terms + 16) * FLT_MIN;
}

static void dot_case_prepare(dot_case *dc, const simd_kernels *ref, int wmode, int xmode, check_rng *rng) {
    int64_t n = dc->n;
    gen_weights(dc->t->type, dc->w, MAX_ROWS, n, wmode, rng);
    float *xf = xmalloc((size_t)n * MAX_COLS * sizeof(float));
    gen_floats(xf, MAX_COLS, n, xmode, rng);
    const simd_type_kernels *rt = simd_type_kernels_get(ref, dc->t->type);
    for (int c = 0; c < MAX_COLS; c++) rt->quantize(xf + c * n, dc->x + c * dc->xcb, n);
    double *wv = xmalloc((size_t)n * sizeof(double)), *wm = xmalloc((size_t)n * sizeof(double));
    double *xv = xmalloc((size_t)n * MAX_COLS * sizeof(double));
    for (int c = 0; c < MAX_COLS; c++) check_decode_act(dc->act_type, dc->x + c * dc->xcb, n, xv + c * n);
    for (int r = 0; r < MAX_ROWS; r++) {
        check_decode_weights(dc->t->type, dc->w + r * dc->wrb, n, wv, wm);
        for (int c = 0; c < MAX_COLS; c++) {
            double sum = 0, abs_sum = 0;
            for (int64_t i = 0; i < n; i++) {
                sum += wv[i] * xv[c * n + i];
                abs_sum += wm[i] * fabs(xv[c * n + i]);
            }
            dc->exact[c * MAX_ROWS + r] = sum;
            dc->bound[c * MAX_ROWS + r] = allowed_error(dc, abs_sum);
        }
    }
    /* the scalar reference's own results: every ISA must agree with them within twice the bound */
    simd_type_kernels_get(ref, dc->t->type)->matmul(n, MAX_ROWS, dc->w, dc->wrb, MAX_COLS, dc->x, dc->xcb, dc->ref, MAX_ROWS);
    free(xf);
    free(wv);
    free(wm);
    free(xv);
}

/* got against the exact value (within the bound) and against the scalar reference (within
 * twice the bound: both round, each within the bound of the exact value). */
static void check_value(check_log *log, const simd_kernels *k, const dot_case *dc, int c, int r, float got,
                        const char *kernel, int nrows, int ncols, const char *what) {
    double exact = dc->exact[c * MAX_ROWS + r], bound = dc->bound[c * MAX_ROWS + r];
    float ref = dc->ref[c * MAX_ROWS + r];
    check_error(log, fabs(got - exact), bound,
                "%s %s %s n=%lld nrows=%d ncols=%d y[%d][%d] (%s): got %.9g, exact %.9g", k->name, dc->t->name, kernel,
                (long long)dc->n, nrows, ncols, c, r, what, got, exact);
    check_error(log, fabs((double)got - ref), 2 * bound,
                "%s %s %s n=%lld nrows=%d ncols=%d y[%d][%d] (%s): got %.9g, scalar reference %.9g", k->name,
                dc->t->name, kernel, (long long)dc->n, nrows, ncols, c, r, what, got, ref);
}

static void check_one_matvec(const simd_kernels *k, const dot_case *dc, int nrows, int col, const char *what,
                             check_log *log) {
    const simd_type_kernels *tk = simd_type_kernels_get(k, dc->t->type);
    float y[MAX_ROWS + 2];
    for (int i = 0; i < MAX_ROWS + 2; i++) y[i] = SENTINEL;
    tk->matvec(dc->n, nrows, dc->w, dc->wrb, dc->x + col * dc->xcb, y);
    for (int r = 0; r < nrows; r++) check_value(log, k, dc, col, r, y[r], "matvec", nrows, 1, what);
    for (int r = nrows; r < MAX_ROWS + 2; r++)
        CHECK(log, y[r] == SENTINEL, "%s %s matvec nrows=%d wrote past its rows (y[%d])", k->name, dc->t->name, nrows, r);
}

/* x_gap: the columns are copied x_gap bytes apart beyond their size (a stride that is not the
 * column size and columns off their cache-line alignment; a multiple of 4, the blocks' own
 * alignment, which the kernels may assume). */
static void check_one_matmul(const simd_kernels *k, const dot_case *dc, int nrows, int ncols, size_t x_gap,
                             const char *what, check_log *log) {
    const simd_type_kernels *tk = simd_type_kernels_get(k, dc->t->type);
    size_t ys = (size_t)nrows + 3; /* a gap between columns must stay untouched */
    float y[(MAX_ROWS + 3) * MAX_COLS];
    for (size_t i = 0; i < sizeof y / sizeof y[0]; i++) y[i] = SENTINEL;
    size_t xcb = dc->xcb + x_gap;
    uint8_t *x = dc->x;
    if (x_gap) {
        x = xmalloc(xcb * (size_t)ncols);
        for (int c = 0; c < ncols; c++) memcpy(x + (size_t)c * xcb, dc->x + (size_t)c * dc->xcb, dc->xcb);
    }
    tk->matmul(dc->n, nrows, dc->w, dc->wrb, ncols, x, xcb, y, ys);
    if (x_gap) free(x);
    for (int c = 0; c < MAX_COLS; c++)
        for (size_t r = 0; r < ys; r++) {
            float v = y[c * ys + r];
            if (c < ncols && (int)r < nrows)
                check_value(log, k, dc, c, (int)r, v, "matmul", nrows, ncols, what);
            else
                CHECK(log, v == SENTINEL, "%s %s matmul nrows=%d ncols=%d wrote outside its outputs (y[%d][%zu])",
                      k->name, dc->t->name, nrows, ncols, c, r);
        }
}

static void check_dot_type(const simd_kernels *k, check_log *log, uint32_t type) {
    const simd_kernels *ref = simd_kernels_scalar();
    const simd_type_kernels *tk = simd_type_kernels_get(k, type);
    CHECK(log, tk != NULL, "%s has no kernels for type %u", k->name, type);
    if (!tk) return;
    dot_case dc = {.t = info_of(type), .act_type = tk->act_type};
    int64_t b = dc.t->block;
    /* one block, a few (odd, for kernels that pair blocks), many; for the 32-blocks also more
     * than the kernels lay out at once (1024 blocks per matvec pass, 64 per matmul pass; 8
     * super-blocks for the K-quants' matmul), so the passes that add to y run; float rows with
     * tails; last, 6 blocks: kernels that take blocks in fours end on a group of 2 (1, 3, 33 and
     * 1029 end on 1) */
    int64_t shapes[5] = {b, 3 * b, 33 * b, 1029 * b, 6 * b};
    if (b == 256) shapes[2] = 5 * b, shapes[3] = 17 * b, shapes[4] = 2 * b; /* 17: past the 8 or 16 super-blocks laid out at once */
    if (b == 1) shapes[0] = 1, shapes[1] = 15, shapes[2] = 33, shapes[3] = 517, shapes[4] = 6;
    check_rng rng = {0x1234567ULL + type};
    for (int s = 0; s < 5; s++) {
        dc.n = shapes[s];
        dc.wrb = check_row_bytes(type, dc.n);
        dc.xcb = simd_act_row_bytes(dc.act_type, dc.n);
        dc.w = xmalloc(dc.wrb * MAX_ROWS); /* exact sizes: ASan sees any read past the data */
        dc.x = xmalloc(dc.xcb * MAX_COLS);
        dc.exact = xmalloc(sizeof(double) * MAX_ROWS * MAX_COLS);
        dc.bound = xmalloc(sizeof(double) * MAX_ROWS * MAX_COLS);
        dc.ref = xmalloc(sizeof(float) * MAX_ROWS * MAX_COLS);
        /* random x random, then each weight edge case with gauss x, each x edge case with random w */
        for (int combo = 0; combo < W_MODES + X_MODES - 1; combo++) {
            if (b > 1 && s == 3 && combo != 0 && combo != W_MAX) continue; /* the long rows: two cases */
            int wmode = combo < W_MODES ? combo : W_RANDOM;
            int xmode = combo < W_MODES ? X_GAUSS : combo - W_MODES + 1;
            char what[80];
            snprintf(what, sizeof what, "weights %s, activations %s", w_mode_names[wmode], x_mode_names[xmode]);
            dot_case_prepare(&dc, ref, wmode, xmode, &rng);
            if (combo == 0) {
                for (int nrows = 1; nrows <= 9; nrows++) check_one_matvec(k, &dc, nrows, nrows % MAX_COLS, what, log);
                for (int ncols = 1; ncols <= MAX_COLS; ncols++) check_one_matmul(k, &dc, 5, ncols, 0, what, log);
                check_one_matmul(k, &dc, 3, 11, 36, what, log); /* strided columns, off cache lines */
                check_one_matvec(k, &dc, MAX_ROWS, 0, what, log);
            } else {
                check_one_matvec(k, &dc, 7, combo % MAX_COLS, what, log); /* 4 + 3 */
            }
            check_one_matmul(k, &dc, MAX_ROWS, 7, 0, what, log); /* 4 + 3 columns, 64 + 2 rows */
            check_one_matmul(k, &dc, MAX_ROWS, MAX_COLS, 0, what, log); /* every column group */
        }
        free(dc.w);
        free(dc.x);
        free(dc.exact);
        free(dc.bound);
        free(dc.ref);
    }
}

#define DOT_CHECK(T, ID) \
    static void check_dot_##T(const simd_kernels *k, check_log *log) { check_dot_type(k, log, ID); }
DOT_CHECK(q4_0, SIMD_TYPE_Q4_0)
DOT_CHECK(q4_1, SIMD_TYPE_Q4_1)
DOT_CHECK(q8_0, SIMD_TYPE_Q8_0)
DOT_CHECK(iq4_nl, SIMD_TYPE_IQ4_NL)
DOT_CHECK(q4_k, SIMD_TYPE_Q4_K)
DOT_CHECK(q5_k, SIMD_TYPE_Q5_K)
DOT_CHECK(q6_k, SIMD_TYPE_Q6_K)
DOT_CHECK(f32, SIMD_TYPE_F32)
DOT_CHECK(f16, SIMD_TYPE_F16)
DOT_CHECK(bf16, SIMD_TYPE_BF16)

/* Every kernel type is present, with the scalar reference's partner and block. */
static void check_table(const simd_kernels *k, check_log *log) {
    const simd_kernels *ref = simd_kernels_scalar();
    CHECK(log, k->quantize_q8_0 && k->quantize_q8_k, "%s: quantizers missing", k->name);
    CHECK(log, k->exp && k->tanh && k->gelu && k->softmax && k->exp_sum && k->rmsnorm, "%s: vector math missing", k->name);
    for (uint32_t id = 0; id < SIMD_TYPE_LIMIT; id++) {
        const simd_type_kernels *t = simd_type_kernels_get(k, id), *rt = simd_type_kernels_get(ref, id);
        CHECK(log, (t == NULL) == (rt == NULL), "%s: type %u present in one table only", k->name, id);
        if (!t || !rt) continue;
        CHECK(log, t->act_type == rt->act_type && t->block == rt->block && t->quantize && t->matmul,
              "%s: type %u's entry differs from the reference", k->name, id);
        CHECK(log, (t->xw != NULL) == (t->act_type == SIMD_TYPE_F32), "%s: type %u: xw for the float types only",
              k->name, id);
    }
    /* the bench's peak loop: present, and its op count is linear in the steps, 2 ops per
     * multiply-add of 12 accumulators of a whole number of int8 lanes */
    CHECK(log, k->int8_peak != NULL, "%s: int8_peak loop missing", k->name);
    if (k->int8_peak) {
        uint64_t one = k->int8_peak(100), two = k->int8_peak(200);
        CHECK(log, one > 0 && one % (100 * SIMD_PEAK_CHAINS * 2) == 0 && two == 2 * one,
              "%s: int8_peak counts %llu ops for 100 steps, %llu for 200", k->name, (unsigned long long)one,
              (unsigned long long)two);
    }
}

/* ---- vector math against libm in double ------------------------------------------------------------ */

/* Runs f over xs in place and out of place (both must agree), returns y. */
static float *map_both(simd_map_fn f, const float *xs, int64_t n) {
    float *y = xmalloc((size_t)n * sizeof(float)), *inplace = xmalloc((size_t)n * sizeof(float));
    f(xs, y, n);
    memcpy(inplace, xs, (size_t)n * sizeof(float));
    f(inplace, inplace, n);
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&y[i], &inplace[i], 4) != 0 && !(y[i] != y[i] && inplace[i] != inplace[i])) y[i] = NAN;
    free(inplace);
    return y;
}

/* A sweep of a range plus random points; odd lengths so that every SIMD tail runs. */
static float *sweep(double lo, double hi, int64_t n, check_rng *rng) {
    float *x = xmalloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(i % 2 ? lo + (hi - lo) * check_uniform(rng) : lo + (hi - lo) * (double)i / (double)n);
    return x;
}

static void check_exp(const simd_kernels *k, check_log *log) {
    check_rng rng = {77};
    int64_t n = 200003;
    float *x = sweep(-110, 92, n, &rng);
    float specials[] = {0, -0.0f, 1, -1, 88.72283f, 88.7228394f, -87.33654f, -103.9f, -104, -150, 1e-30f, -1e-30f,
                        INFINITY, -INFINITY, NAN, 88.8f, -87.0f, 0.34657359f, -0.34657359f, 1e-7f};
    memcpy(x, specials, sizeof specials);
    float *y = map_both(k->exp, x, n);
    for (int64_t i = 0; i < n; i++) {
        double want = exp((double)x[i]);
        if (x[i] != x[i]) {
            CHECK(log, y[i] != y[i], "%s exp(NaN) = %g, want NaN", k->name, y[i]);
        } else if (want > FLT_MAX * (1 + SIMD_EXP_MAX_REL)) {
            CHECK(log, isinf(y[i]) && y[i] > 0, "%s exp(%.9g) = %g, want inf", k->name, x[i], y[i]);
        } else if (want >= FLT_MIN) {
            if (isinf(y[i]) && want > FLT_MAX * (1 - SIMD_EXP_MAX_REL)) continue; /* at the overflow edge */
            check_error(log, fabs(y[i] - want) / want, SIMD_EXP_MAX_REL, "%s exp(%.9g) = %.9g (want %.9g), relative",
                        k->name, x[i], y[i], want);
        } else {
            check_error(log, fabs(y[i] - want), 0x1p-149, "%s exp(%.9g) = %.9g (want %.9g), absolute", k->name, x[i],
                        y[i], want);
        }
    }
    free(x);
    free(y);
}

static void check_tanh(const simd_kernels *k, check_log *log) {
    check_rng rng = {78};
    int64_t n = 200003;
    float *x = sweep(-12, 12, n, &rng);
    for (int64_t i = 0; i < 2000; i++) x[i] = (float)((check_uniform(&rng) * 2 - 1) * pow(10, -40 * check_uniform(&rng)));
    float specials[] = {0, -0.0f, 0.625f, -0.625f, 0.62499994f, 1e-30f, 1e-45f, 9.1f, 20, -20, 1e30f, -1e30f,
                        INFINITY, -INFINITY, NAN};
    memcpy(x + 2000, specials, sizeof specials);
    float *y = map_both(k->tanh, x, n);
    for (int64_t i = 0; i < n; i++) {
        if (x[i] != x[i]) {
            CHECK(log, y[i] != y[i], "%s tanh(NaN) = %g, want NaN", k->name, y[i]);
            continue;
        }
        double want = tanh((double)x[i]), err = fabs(y[i] - want);
        check_error(log, err, SIMD_TANH_MAX_ABS, "%s tanh(%.9g) = %.9g (want %.9g), absolute", k->name, x[i], y[i],
                    want);
        if (want != 0 && fabs(want) >= FLT_MIN)
            check_error(log, err / fabs(want), SIMD_TANH_MAX_REL, "%s tanh(%.9g) = %.9g (want %.9g), relative",
                        k->name, x[i], y[i], want);
    }
    free(x);
    free(y);
}

static void check_gelu(const simd_kernels *k, check_log *log) {
    check_rng rng = {79};
    int64_t n = 200003;
    float *x = sweep(-25, 25, n, &rng);
    float specials[] = {0, -0.0f, 1e-30f, -1e-30f, 1e-45f, -20, -19.99f, -20.01f, -13.2f, -5, 5, 9.5f, 30, 1e30f,
                        -1e30f, INFINITY, -INFINITY, NAN};
    memcpy(x, specials, sizeof specials);
    float *y = map_both(k->gelu, x, n);
    for (int64_t i = 0; i < n; i++) {
        if (x[i] != x[i]) {
            CHECK(log, y[i] != y[i], "%s gelu(NaN) = %g, want NaN", k->name, y[i]);
            continue;
        }
        double xd = x[i], want = isinf(xd) ? (xd > 0 ? xd : 0) : 0.5 * xd * erfc(-xd * 0.70710678118654752440);
        if (isinf(want)) {
            CHECK(log, y[i] == want, "%s gelu(%g) = %g, want %g", k->name, x[i], y[i], want);
            continue;
        }
        check_error(log, fabs(y[i] - want), SIMD_GELU_MAX_REL * fabs(want) + SIMD_GELU_MAX_ABS,
                    "%s gelu(%.9g) = %.9g (want %.9g)", k->name, x[i], y[i], want);
    }
    free(x);
    free(y);
}

static void check_softmax(const simd_kernels *k, check_log *log) {
    check_rng rng = {80};
    static const int64_t lengths[] = {1, 2, 7, 8, 9, 16, 17, 31, 100, 1000, 4099};
    for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
        int64_t n = lengths[li];
        for (int variant = 0; variant < 3; variant++) {
            float *x = xmalloc((size_t)n * sizeof(float));
            double *want = xmalloc((size_t)n * sizeof(double));
            double spread = variant == 0 ? 1 : variant == 1 ? 8 : 30;
            for (int64_t i = 0; i < n; i++) x[i] = (float)(check_gauss(&rng) * spread);
            if (variant == 2 && n > 3) x[1] = x[n - 2] = -INFINITY; /* masked positions */
            double max = -INFINITY, sum = 0;
            for (int64_t i = 0; i < n; i++) max = x[i] > max ? x[i] : max;
            for (int64_t i = 0; i < n; i++) sum += want[i] = exp((double)x[i] - max);
            for (int64_t i = 0; i < n; i++) want[i] /= sum;
            float *x0 = xmalloc((size_t)n * sizeof(float));
            memcpy(x0, x, (size_t)n * sizeof(float));
            k->softmax(x, n);
            /* x - max rounds in float: a further 2^-24 |x - max| relative */
            for (int64_t i = 0; i < n; i++)
                check_error(log, fabs(x[i] - want[i]),
                            (SIMD_SOFTMAX_MAX_REL + 0x1p-24 * fabs((double)x0[i] - max)) * want[i] + 0x1p-148,
                            "%s softmax n=%lld [%lld] = %.9g (want %.9g)", k->name, (long long)n, (long long)i, x[i],
                            want[i]);
            free(x);
            free(x0);
            free(want);
        }
    }
}

/* A softmax's numerators with a scale (attention in parts): the max is the float max of the
 * float products scale * x_i, exactly; each e^(scale x_i - max) within exp's error plus the float
 * rounding of the difference; the returned sum is the sum of the outputs (in double). */
static void check_exp_sum(const simd_kernels *k, check_log *log) {
    check_rng rng = {82};
    static const int64_t lengths[] = {0, 1, 2, 7, 8, 9, 16, 17, 31, 100, 256, 1000};
    static const float scales[] = {1.0f, 0.37f, 51.3f};
    for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++)
        for (size_t si = 0; si < sizeof scales / sizeof scales[0]; si++) {
            int64_t n = lengths[li];
            float scale = scales[si];
            float *x = xmalloc((size_t)n * sizeof(float) + 1);
            float *scaled = xmalloc((size_t)n * sizeof(float) + 1);
            for (int64_t i = 0; i < n; i++) x[i] = (float)check_gauss(&rng);
            float want_max = -INFINITY;
            for (int64_t i = 0; i < n; i++) {
                scaled[i] = x[i] * scale;
                want_max = scaled[i] > want_max ? scaled[i] : want_max;
            }
            float max = 0;
            double sum = k->exp_sum(x, n, scale, &max);
            CHECK(log, max == want_max, "%s exp_sum n=%lld scale %g: max %.9g (want %.9g)", k->name, (long long)n,
                  scale, max, want_max);
            double own_sum = 0;
            for (int64_t i = 0; i < n; i++) {
                double want = exp((double)scaled[i] - want_max);
                own_sum += x[i];
                check_error(log, fabs(x[i] - want),
                            (SIMD_EXP_MAX_REL + 0x1p-24 * fabs((double)scaled[i] - want_max)) * want + 0x1p-148,
                            "%s exp_sum n=%lld scale %g [%lld] = %.9g (want %.9g)", k->name, (long long)n, scale,
                            (long long)i, x[i], want);
            }
            check_error(log, fabs(sum - own_sum), 1e-12 * own_sum, "%s exp_sum n=%lld: sum %.17g, outputs add to %.17g",
                        k->name, (long long)n, sum, own_sum);
            free(x);
            free(scaled);
        }
}

static void check_rmsnorm(const simd_kernels *k, check_log *log) {
    check_rng rng = {81};
    static const int64_t lengths[] = {1, 7, 8, 9, 16, 33, 100, 1000, 8192};
    for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
        int64_t n = lengths[li];
        float *x = xmalloc((size_t)n * sizeof(float)), *w = xmalloc((size_t)n * sizeof(float));
        float *y = xmalloc((size_t)n * sizeof(float));
        double scale_x = li % 3 == 0 ? 1e-3 : li % 3 == 1 ? 1 : 1e3;
        for (int64_t i = 0; i < n; i++) {
            x[i] = (float)(check_gauss(&rng) * scale_x);
            w[i] = (float)(1 + 0.5 * check_gauss(&rng));
        }
        double sum = 0;
        for (int64_t i = 0; i < n; i++) sum += (double)x[i] * x[i];
        const float eps = 1e-5f;
        double inv = 1 / sqrt(sum / (double)n + eps);
        k->rmsnorm(x, w, y, n, eps);
        for (int64_t i = 0; i < n; i++) {
            double want = x[i] * inv * w[i];
            check_error(log, fabs(y[i] - want), SIMD_RMSNORM_MAX_REL * fabs(want) + 0x1p-148,
                        "%s rmsnorm n=%lld [%lld] = %.9g (want %.9g)", k->name, (long long)n, (long long)i, y[i], want);
        }
        k->rmsnorm(x, w, x, n, eps); /* in place agrees */
        for (int64_t i = 0; i < n; i++) CHECK(log, x[i] == y[i], "%s rmsnorm in place differs at %lld", k->name, (long long)i);
        free(x);
        free(w);
        free(y);
    }
}

/* ---- x times W (attention's scores and outputs) -------------------------------------------------- */

/* Every ISA's xw gives the scalar reference's bits (each sum: one multiply-add per i, in
 * order), writes only y's m x n entries, and the reference is within the bound of a sequential
 * sum of fused multiply-adds of the exact result: (k + 1) 2^-24 sum |x w|. */
static void check_xw_type(const simd_kernels *k, check_log *log, uint32_t type) {
    const simd_kernels *ref = simd_kernels_scalar();
    const simd_type_kernels *t = simd_type_kernels_get(k, type), *rt = simd_type_kernels_get(ref, type);
    CHECK(log, t && t->xw && rt && rt->xw, "%s: type %u has no xw", k->name, type);
    if (!t || !t->xw || !rt || !rt->xw) return;
    const size_t wsize = info_of(type)->bytes;
    static const int64_t ms[] = {1, 3, 8, 9, 17}, ks[] = {1, 7, 128, 256}, ns[] = {1, 5, 16, 17, 31, 32, 33, 128, 256};
    check_rng rng = {0x9e3779b97f4a7c15ULL ^ type};
    for (size_t a = 0; a < sizeof ms / sizeof ms[0]; a++)
        for (size_t b = 0; b < sizeof ks / sizeof ks[0]; b++)
            for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
                int64_t m = ms[a], kk = ks[b], n = ns[c];
                size_t wrb = (size_t)n * wsize + (c % 2 ? 64 : 0), xs = (size_t)kk + 3, ys = (size_t)n + 5;
                uint8_t *w = xmalloc((size_t)kk * wrb);
                float *x = xmalloc((size_t)m * xs * sizeof(float)), *wf = xmalloc((size_t)kk * n * sizeof(float));
                float *got = xmalloc((size_t)m * ys * sizeof(float)), *want = xmalloc((size_t)m * ys * sizeof(float));
                memset(w, 0xff, (size_t)kk * wrb); /* the gaps: NaN halves, never read */
                for (int64_t i = 0; i < kk; i++)
                    for (int64_t j = 0; j < n; j++) {
                        float v = (float)check_gauss(&rng);
                        uint8_t *p = w + (size_t)i * wrb + (size_t)j * wsize;
                        if (type == SIMD_TYPE_F32) memcpy(p, &v, 4);
                        else if (type == SIMD_TYPE_F16) { g2_half h = g2_f32_to_half(v); memcpy(p, &h, 2); v = g2_half_to_f32(h); }
                        else { uint16_t h = g2_f32_to_bf16(v); memcpy(p, &h, 2); v = g2_bf16_to_f32(h); }
                        wf[i * n + j] = v;
                    }
                for (size_t i = 0; i < (size_t)m * xs; i++) x[i] = (float)check_gauss(&rng);
                for (size_t i = 0; i < (size_t)m * ys; i++) got[i] = want[i] = -7.0f; /* the gaps stay */
                t->xw(kk, n, w, wrb, m, x, xs, got, ys);
                rt->xw(kk, n, w, wrb, m, x, xs, want, ys);
                long mismatches = 0;
                for (size_t i = 0; i < (size_t)m * ys; i++) mismatches += memcmp(&got[i], &want[i], 4) != 0;
                CHECK(log, mismatches == 0, "%s xw type %u m %lld k %lld n %lld: %ld of %lld values differ from the reference",
                      k->name, type, (long long)m, (long long)kk, (long long)n, mismatches, (long long)(m * (int64_t)ys));
                for (int64_t r = 0; r < m; r++)
                    for (int64_t j = (int64_t)n; j < (int64_t)ys; j++)
                        CHECK(log, got[r * ys + j] == -7.0f && want[r * ys + j] == -7.0f,
                              "%s xw type %u wrote past column n", k->name, type);
                if (k == ref)
                    for (int64_t r = 0; r < m; r++)
                        for (int64_t j = 0; j < n; j++) {
                            double exact = 0, abs_sum = 0;
                            for (int64_t i = 0; i < kk; i++) {
                                exact += (double)x[r * xs + i] * wf[i * n + j];
                                abs_sum += fabs((double)x[r * xs + i] * wf[i * n + j]);
                            }
                            check_error(log, fabs(want[r * ys + j] - exact), (double)(kk + 1) * 0x1p-24 * abs_sum,
                                        "scalar xw type %u m %lld k %lld n %lld at (%lld, %lld)", type, (long long)m,
                                        (long long)kk, (long long)n, (long long)r, (long long)j);
                        }
                free(w);
                free(x);
                free(wf);
                free(got);
                free(want);
            }
}
static void check_xw(const simd_kernels *k, check_log *log) {
    check_xw_type(k, log, SIMD_TYPE_F32);
    check_xw_type(k, log, SIMD_TYPE_F16);
    check_xw_type(k, log, SIMD_TYPE_BF16);
}

/* ---- the list ----------------------------------------------------------------------------------------- */

const simd_check simd_checks[] = {
    {"table", check_table},
    {"quantize_q8_0", check_quantize_q8_0},
    {"quantize_q8_k", check_quantize_q8_k},
    {"dot_q4_0", check_dot_q4_0},
    {"dot_q4_1", check_dot_q4_1},
    {"dot_q8_0", check_dot_q8_0},
    {"dot_iq4_nl", check_dot_iq4_nl},
    {"dot_q4_k", check_dot_q4_k},
    {"dot_q5_k", check_dot_q5_k},
    {"dot_q6_k", check_dot_q6_k},
    {"dot_f32", check_dot_f32},
    {"dot_f16", check_dot_f16},
    {"dot_bf16", check_dot_bf16},
    {"exp", check_exp},
    {"tanh", check_tanh},
    {"gelu", check_gelu},
    {"softmax", check_softmax},
    {"exp_sum", check_exp_sum},
    {"rmsnorm", check_rmsnorm},
    {"xw", check_xw},
    {NULL, NULL},
};

const simd_check *simd_check_find(const char *name) {
    for (const simd_check *c = simd_checks; c->name; c++)
        if (strcmp(c->name, name) == 0) return c;
    return NULL;
}

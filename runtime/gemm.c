/* Prefill matmul back-ends (--gemm): for a batch of n > 1 tokens, y[t][r] = W[r] . x[t] over a
 * task's rows r0..r1 of W, by a BLAS-style GEMM on dequantized weight tiles instead of the
 * native integer kernels (decode, n == 1, always stays native).
 *
 *   openblas: each tile of weight rows is decoded to f32 in the thread's scratch and
 *             cblas_sgemm runs single-threaded inside our pool's task. Debian's libopenblas0
 *             is the pthreads variant, which starts its idle workers when it is loaded, with
 *             the count OPENBLAS_NUM_THREADS gives then (read once, at load). So the library
 *             is not linked: it is dlopen'ed when --gemm openblas is chosen, with
 *             OPENBLAS_NUM_THREADS=1 set just before, and no other run ever starts its threads;
 *             openblas_set_num_threads(1) after the load keeps every call on the calling
 *             thread (one pool, no oversubscription) whatever variant the system picked.
 *   onednn:   a oneDNN (2.x, C API) matmul primitive per tile shape. bf16 x bf16 -> f32 where
 *             the CPU has AVX512-BF16 or AMX (oneDNN then runs AMX tiles), f32 x f32 otherwise,
 *             and always f32 for float weights (f32/f16/bf16 files keep f32 accuracy). Not int8:
 *             oneDNN 2.6 takes one scale per output channel (row), our blocks carry one per 16
 *             or 32 weights, so int8 would mean re-quantizing every row to a single scale.
 *             Debian builds it for OpenMP; each call runs with omp_set_num_threads(1) on the
 *             calling pool thread (an OpenMP ICV is per thread), so it never starts a team.
 *
 * All buffers (tiles, converted activations, primitive caches) are allocated in gemm_new; in the
 * token loop the only allocations are oneDNN's: its small memory-object handles per call, and a
 * primitive (with the thread's scratchpad grown to fit it) the first time a tile shape is seen;
 * the shapes of a model are few (tile rows x columns x batch padded to 16), so after the first
 * chunk nothing new is made. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

#ifdef GROK2_OPENBLAS
#include <dlfcn.h>
#include <pthread.h>
#endif
#ifdef GROK2_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#if DNNL_CPU_RUNTIME == DNNL_RUNTIME_OMP
#include <omp.h>
#elif DNNL_CPU_RUNTIME != DNNL_RUNTIME_SEQ
#error "gemm.c: oneDNN built for a threading runtime other than OpenMP or sequential"
#endif
#endif

/* A tile of weight rows is about TILE_BYTES decoded (it stays in L2 while the GEMM reads it),
 * TILE_MIN_ROWS..TILE_MAX_ROWS rows. oneDNN's batch is padded to a multiple of M_ALIGN rows
 * (the AMX tile height), so there are at most max_batch / M_ALIGN primitives per tile shape. */
#define TILE_BYTES (512u << 10)
#define TILE_MIN_ROWS 16
#define TILE_MAX_ROWS 256
#define M_ALIGN 16
#define CACHE_SLOTS 256 /* primitives per thread (a power of two) */

/* ---- names and availability ---------------------------------------------------------------- */

static const char *const backend_names[] = {[GEMM_AUTO] = "auto", [GEMM_NATIVE] = "native",
                                            [GEMM_OPENBLAS] = "openblas", [GEMM_ONEDNN] = "onednn"};

const char *gemm_backend_name(gemm_backend b) {
    return (unsigned)b < sizeof backend_names / sizeof backend_names[0] ? backend_names[b] : "?";
}

int gemm_backend_parse(const char *name, gemm_backend *out) {
    for (size_t i = 0; i < sizeof backend_names / sizeof backend_names[0]; i++)
        if (!strcmp(name, backend_names[i])) {
            *out = (gemm_backend)i;
            return 0;
        }
    return -1;
}

#ifdef GROK2_ONEDNN
/* bf16 GEMMs only where the CPU multiplies bf16 natively (AVX512-BF16 or AMX): elsewhere oneDNN
 * would emulate them and f32 is faster. */
static bool onednn_has_bf16(void) {
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
}
/* Whether oneDNN can make an f32 matmul here: the evidence that it runs on this CPU. */
static bool onednn_runs_here(void) {
    dnnl_engine_t engine = NULL;
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) return false;
    dnnl_memory_desc_t md;
    dnnl_dims_t dims = {16, 16}, strides = {16, 1};
    dnnl_matmul_desc_t desc;
    dnnl_primitive_desc_t pd = NULL;
    bool ok = dnnl_memory_desc_init_by_strides(&md, 2, dims, dnnl_f32, strides) == dnnl_success &&
              dnnl_matmul_desc_init(&desc, &md, &md, NULL, &md) == dnnl_success &&
              dnnl_primitive_desc_create(&pd, &desc, NULL, engine, NULL) == dnnl_success;
    if (pd) dnnl_primitive_desc_destroy(pd);
    dnnl_engine_destroy(engine);
    return ok;
}
static bool onednn_has_amx(void) {
    return (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core_amx) == dnnl_cpu_isa_avx512_core_amx;
}
#endif

#ifdef GROK2_OPENBLAS
/* OpenBLAS by its Debian soname (the alternatives system points it at the pthreads, OpenMP or
 * serial build); CBLAS's layout and transpose codes are fixed by the CBLAS standard. */
#define OPENBLAS_LIBRARY "libopenblas.so.0"
enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };
typedef void (*cblas_sgemm_fn)(int layout, int trans_a, int trans_b, int m, int n, int k, float alpha,
                               const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);

/* Loaded once per process (a library is process-wide state anyway); sgemm stays NULL and
 * load_error says why when it cannot be loaded. */
static struct {
    pthread_once_t once;
    cblas_sgemm_fn sgemm;
    char load_error[200];
} openblas = {PTHREAD_ONCE_INIT, NULL, ""};

static void openblas_load(void) {
    /* read by the library's constructor: its pthreads build then starts no worker at all (the
     * CLI gets here while parsing --gemm, before any other thread exists to race setenv) */
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    void *lib = dlopen(OPENBLAS_LIBRARY, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(openblas.load_error, sizeof openblas.load_error, "%s", dlerror());
        return;
    }
    void (*set_threads)(int) = (void (*)(int))dlsym(lib, "openblas_set_num_threads");
    cblas_sgemm_fn sgemm = (cblas_sgemm_fn)dlsym(lib, "cblas_sgemm");
    if (!set_threads || !sgemm) {
        snprintf(openblas.load_error, sizeof openblas.load_error,
                 "%s has no openblas_set_num_threads or cblas_sgemm", OPENBLAS_LIBRARY);
        dlclose(lib);
        return;
    }
    set_threads(1);
    openblas.sgemm = sgemm;
}

static cblas_sgemm_fn openblas_sgemm(void) {
    pthread_once(&openblas.once, openblas_load);
    return openblas.sgemm;
}
#endif

int gemm_backend_available(gemm_backend b, g2_error *err) {
    switch (b) {
    case GEMM_AUTO:
    case GEMM_NATIVE: return 0;
    case GEMM_OPENBLAS:
#ifdef GROK2_OPENBLAS
        if (!openblas_sgemm())
            return g2_fail(err, "--gemm openblas: %s; install Debian's libopenblas0", openblas.load_error);
        return 0;
#else
        return g2_fail(err, "--gemm openblas: this build has no OpenBLAS (built with NO_OPENBLAS=1)");
#endif
    case GEMM_ONEDNN:
#ifdef GROK2_ONEDNN
        if (!onednn_runs_here())
            return g2_fail(err, "--gemm onednn: oneDNN has no CPU engine or no f32 matmul on this CPU");
        return 0;
#else
        return g2_fail(err, "--gemm onednn: this build has no oneDNN (built with NO_ONEDNN=1)");
#endif
    }
    return g2_fail(err, "--gemm: unknown back-end %d", (int)b);
}

/* Measured (README, "Prefill GEMM back-ends"): oneDNN's AMX bf16 tiles beat the native integer
 * kernels; without AMX the native kernels win over every BLAS on f32/bf16 tiles. */
gemm_backend gemm_backend_default(void) {
#ifdef GROK2_ONEDNN
    if (onednn_has_amx()) return GEMM_ONEDNN;
#endif
    return GEMM_NATIVE;
}

/* Per type, measured on the project VM (2 cores of a Xeon with AMX, busy; README, "Prefill GEMM
 * back-ends"): oneDNN's AMX bf16 tiles beat the native kernels on every type measured. pp512 on
 * 2 threads, native vs onednn, best runs (medians): q4_k_m files (q4_K + q6_K) 57.9 vs 68.5
 * (33 vs 49), q4_0 31.9 vs 98.4 (28 vs 61), q8_0 34.8 vs 105.3 (26 vs 59) tokens/s; CPU seconds
 * per pp512 on one thread 13.7 vs 7.2, 16.9 vs 8.2, 22.8 vs 9.0. So no type stays native where
 * the default is oneDNN. */
gemm_backend gemm_auto_backend(uint32_t weight_type) {
    const g2_type_traits *traits = g2_type_get(weight_type);
    return traits && traits->to_float ? gemm_backend_default() : GEMM_NATIVE;
}

/* "gemm auto: onednn (AMX) for f32 f16 ...; native for decode" */
void gemm_describe_auto(char *line, size_t size) {
    gemm_backend library = gemm_backend_default();
    char on_library[256] = "", on_native[256] = "";
    for (uint32_t t = 0; t < G2_TYPE_ID_LIMIT; t++) {
        const g2_type_traits *traits = g2_type_get(t);
        if (!traits || !traits->to_float) continue;
        char *list = gemm_auto_backend(t) == GEMM_NATIVE ? on_native : on_library;
        size_t used = strlen(list);
        snprintf(list + used, sizeof on_native - used, " %s", traits->name);
    }
    if (library == GEMM_NATIVE)
        snprintf(line, size, "gemm auto: native for every type (auto takes oneDNN only where oneDNN finds AMX)");
    else
        snprintf(line, size, "gemm auto: %s (AMX) for%s; native for%s%s decode", gemm_backend_name(library),
                 on_library, on_native, on_native[0] ? " and for" : "");
}

/* ---- row decoders ------------------------------------------------------------------------------
 * Every type decodes through quant/'s to_float (the reference); the types the converter writes
 * also have AVX-512 decoders, used when the chosen kernel table is an AVX-512 one (so --isa
 * limits them too). They give exactly to_float's values: the same float operations per element,
 * no fused multiply-add (tests/test_gemm.c compares them bit for bit). The bf16 output rounds to
 * nearest even as g2_f32_to_bf16 does (VCVTNEPS2BF16 would flush subnormals). */

typedef void (*decode_fn)(const void *src, float *dst, int64_t n);

static decode_fn reference_decoder(uint32_t type) {
    const g2_type_traits *t = g2_type_get(type);
    return t ? t->to_float : NULL;
}

static void f32_to_bf16_row(const float *x, uint16_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = g2_f32_to_bf16(x[i]);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#define HAVE_AVX512_DECODERS 1

/* 16 values to dst[i..i+15], as f32 or bf16 */
AVX512 static inline void put16(__m512 v, void *dst, int64_t i, bool bf16) {
    if (!bf16) {
        _mm512_storeu_ps((float *)dst + i, v);
        return;
    }
    __m512i x = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(x, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_or_epi32(r, nan, x, _mm512_set1_epi32(0x400000)); /* quiet NaN, not rounded */
    _mm256_storeu_si256((__m256i *)((uint16_t *)dst + i), _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
}

/* 16 unsigned bytes minus bias, as floats */
AVX512 static inline __m512 bytes_to_ps(__m128i q, int bias) {
    return _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(q), _mm512_set1_epi32(bias)));
}

AVX512 static void decode_q4_0_avx512(const void *src, void *dst, int64_t n, bool bf16) {
    const block_q4_0 *blocks = src;
    const __m128i low = _mm_set1_epi8(15);
    for (int64_t b = 0; b < n / QK4_0; b++) {
        __m512 d = _mm512_set1_ps(g2_half_to_f32(blocks[b].d));
        __m128i qs = _mm_loadu_si128((const __m128i *)blocks[b].qs);
        put16(_mm512_mul_ps(bytes_to_ps(_mm_and_si128(qs, low), 8), d), dst, b * QK4_0, bf16);
        put16(_mm512_mul_ps(bytes_to_ps(_mm_and_si128(_mm_srli_epi16(qs, 4), low), 8), d), dst, b * QK4_0 + 16, bf16);
    }
}

AVX512 static void decode_q8_0_avx512(const void *src, void *dst, int64_t n, bool bf16) {
    const block_q8_0 *blocks = src;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        __m512 d = _mm512_set1_ps(g2_half_to_f32(blocks[b].d));
        for (int h = 0; h < 2; h++) {
            __m128i q = _mm_loadu_si128((const __m128i *)(blocks[b].qs + 16 * h));
            put16(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), d), dst, b * QK8_0 + 16 * h, bf16);
        }
    }
}

AVX512 static void decode_q4_k_avx512(const void *src, void *dst, int64_t n, bool bf16) {
    const block_q4_k *blocks = src;
    const __m128i low = _mm_set1_epi8(15);
    for (int64_t b = 0; b < n / QK_K; b++) {
        const block_q4_k *x = &blocks[b];
        float d = g2_half_to_f32(x->d), dmin = g2_half_to_f32(x->dmin);
        const uint8_t *s = x->scales;
        for (int j = 0; j < 8; j++) {
            /* 6-bit scale and min of sub-block j (gguf-format.md, Q4_K) */
            int sc = j < 4 ? s[j] & 63 : (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
            int m = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
            __m512 dj = _mm512_set1_ps(d * (float)sc), mj = _mm512_set1_ps(dmin * (float)m);
            for (int h = 0; h < 2; h++) {
                __m128i q = _mm_loadu_si128((const __m128i *)(x->qs + (j / 2) * 32 + 16 * h));
                if (j & 1) q = _mm_srli_epi16(q, 4);
                __m512 v = _mm512_sub_ps(_mm512_mul_ps(dj, bytes_to_ps(_mm_and_si128(q, low), 0)), mj);
                put16(v, dst, b * QK_K + j * 32 + 16 * h, bf16);
            }
        }
    }
}

AVX512 static void decode_q6_k_avx512(const void *src, void *dst, int64_t n, bool bf16) {
    const block_q6_k *blocks = src;
    const __m128i low = _mm_set1_epi8(15), two = _mm_set1_epi8(3);
    for (int64_t b = 0; b < n / QK_K; b++) {
        const block_q6_k *x = &blocks[b];
        float d = g2_half_to_f32(x->d);
        for (int h = 0; h < 2; h++) {
            /* element 32k + l of the half: low nibble from ql[l + 32 (k & 1)] (high nibble for
             * k >= 2), top two bits from qh[l] >> 2k; scale sc[2k + l / 16] */
            const uint8_t *ql = x->ql + 64 * h, *qh = x->qh + 32 * h;
            const int8_t *sc = x->scales + 8 * h;
            for (int half = 0; half < 2; half++) {
                __m128i a = _mm_loadu_si128((const __m128i *)(ql + 16 * half));
                __m128i c = _mm_loadu_si128((const __m128i *)(ql + 32 + 16 * half));
                __m128i hi = _mm_loadu_si128((const __m128i *)(qh + 16 * half));
                __m128i q[4] = {
                    _mm_or_si128(_mm_and_si128(a, low), _mm_slli_epi16(_mm_and_si128(hi, two), 4)),
                    _mm_or_si128(_mm_and_si128(c, low), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hi, 2), two), 4)),
                    _mm_or_si128(_mm_and_si128(_mm_srli_epi16(a, 4), low),
                                 _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hi, 4), two), 4)),
                    _mm_or_si128(_mm_and_si128(_mm_srli_epi16(c, 4), low),
                                 _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hi, 6), two), 4)),
                };
                for (int k = 0; k < 4; k++) {
                    __m512 scale = _mm512_set1_ps(d * (float)sc[2 * k + half]);
                    put16(_mm512_mul_ps(scale, bytes_to_ps(q[k], 32)), dst, b * QK_K + 128 * h + 32 * k + 16 * half,
                          bf16);
                }
            }
        }
    }
}

AVX512 static void decode_f16_avx512(const void *src, void *dst, int64_t n, bool bf16) {
    const g2_half *h = src;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) put16(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))), dst, i, bf16);
    for (; i < n; i++) {
        float v = g2_half_to_f32(h[i]);
        if (bf16) ((uint16_t *)dst)[i] = g2_f32_to_bf16(v);
        else ((float *)dst)[i] = v;
    }
}

AVX512 static void f32_to_bf16_avx512(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) put16(_mm512_loadu_ps(x + i), y, i, true);
    for (; i < n; i++) y[i] = g2_f32_to_bf16(x[i]);
}

typedef void (*fast_decode_fn)(const void *src, void *dst, int64_t n, bool bf16);

static fast_decode_fn avx512_decoder(uint32_t type) {
    switch (type) {
    case G2_TYPE_Q4_0: return decode_q4_0_avx512;
    case G2_TYPE_Q8_0: return decode_q8_0_avx512;
    case G2_TYPE_Q4_K: return decode_q4_k_avx512;
    case G2_TYPE_Q6_K: return decode_q6_k_avx512;
    case G2_TYPE_F16: return decode_f16_avx512;
    default: return NULL;
    }
}
#endif

static bool kernels_are_avx512(const simd_kernels *k) {
    uint32_t need = SIMD_CPU_AVX512F | SIMD_CPU_AVX512BW | SIMD_CPU_AVX512VL;
    return k && (k->needs & need) == need;
}

/* Decodes one row of n weights of type to f32 or bf16 with the decoders `kernels` allows
 * (scratch: n floats, for the bf16 conversion of a reference decode). */
static void decode_row(uint32_t type, bool avx512, const void *src, void *dst, int64_t n, bool bf16, float *scratch) {
#ifdef HAVE_AVX512_DECODERS
    fast_decode_fn fast = avx512 ? avx512_decoder(type) : NULL;
    if (fast) {
        fast(src, dst, n, bf16);
        return;
    }
#endif
    decode_fn decode = reference_decoder(type);
    if (!bf16) {
        decode(src, dst, n);
        return;
    }
    decode(src, scratch, n);
#ifdef HAVE_AVX512_DECODERS
    if (avx512) {
        f32_to_bf16_avx512(scratch, dst, n);
        return;
    }
#endif
    f32_to_bf16_row(scratch, dst, n);
}

int gemm_decode_row(const simd_kernels *kernels, uint32_t type, const void *src, void *dst, int64_t n, bool bf16) {
    if (!reference_decoder(type)) return -1;
    float *scratch = bf16 ? malloc((size_t)n * sizeof(float)) : NULL;
    if (bf16 && !scratch) return -1;
    decode_row(type, kernels_are_avx512(kernels), src, dst, n, bf16, scratch);
    free(scratch);
    return 0;
}

/* ---- state ------------------------------------------------------------------------------------ */

#ifdef GROK2_ONEDNN
typedef struct {
    dnnl_primitive_t prim; /* NULL: free slot */
    int64_t m, n, k;
    bool bf16;
    dnnl_memory_desc_t scratch_md; /* its scratchpad (user-managed: one buffer per thread) */
    size_t scratch_bytes;
    /* src, weights, dst, scratchpad: made with the primitive, so a call only points them at its
     * buffers (dnnl_memory_set_data_handle) and the token loop creates nothing */
    dnnl_memory_t mem[4];
} cached_primitive;

static void cached_primitive_destroy(cached_primitive *c) {
    for (int i = 0; i < 4; i++)
        if (c->mem[i]) dnnl_memory_destroy(c->mem[i]);
    if (c->prim) dnnl_primitive_destroy(c->prim);
    *c = (cached_primitive){0};
}
#endif

typedef struct {
    void *tile;  /* [tile rows][k] decoded weights, f32 or bf16 */
    float *row;  /* one decoded row (f32), before its bf16 conversion */
    float *out;  /* oneDNN: [m padded][tile rows] results before they go to y */
#ifdef GROK2_ONEDNN
    cached_primitive *cache; /* [CACHE_SLOTS] */
    void *scratch;           /* the primitives' scratchpad, grown when a primitive is created */
    size_t scratch_bytes;
#endif
} gemm_thread;

struct gemm_state {
    gemm_backend backend;
    bool avx512; /* the AVX-512 decoders (the chosen kernel table is an AVX-512 one) */
    int n_threads;
    int64_t max_cols, m_cap; /* m_cap: max_batch rounded up to M_ALIGN */
    size_t tile_bytes;
    gemm_thread *threads;
    /* the activation converted for oneDNN, [m_cap][cols], padding rows zero */
    float *x_f32;
    uint16_t *x_bf16;
    uint64_t x_f32_id, x_bf16_id;
#ifdef GROK2_ONEDNN
    bool bf16;
    dnnl_engine_t engine;
    dnnl_stream_t stream; /* in-order CPU stream: only carries the engine, no queue state */
    dnnl_primitive_attr_t attr; /* user-managed scratchpad: no allocation per execution */
#endif
};

#if defined(GROK2_OPENBLAS) || defined(GROK2_ONEDNN)
#define HAVE_BLAS 1
#endif

/* Rows per tile of matrix rows of k weights in elem-byte values. */
#ifdef HAVE_BLAS
static int64_t tile_rows(int64_t k, size_t elem) {
    int64_t rows = (int64_t)(TILE_BYTES / ((size_t)k * elem));
    if (rows < TILE_MIN_ROWS) rows = TILE_MIN_ROWS;
    if (rows > TILE_MAX_ROWS) rows = TILE_MAX_ROWS;
    return rows;
}
#endif

void gemm_free(gemm_state *g) {
    if (!g) return;
    for (int t = 0; g->threads && t < g->n_threads; t++) {
        gemm_thread *th = &g->threads[t];
        free(th->tile);
        free(th->row);
        free(th->out);
#ifdef GROK2_ONEDNN
        for (int i = 0; th->cache && i < CACHE_SLOTS; i++)
            cached_primitive_destroy(&th->cache[i]);
        free(th->cache);
        free(th->scratch);
#endif
    }
    free(g->threads);
    free(g->x_f32);
    free(g->x_bf16);
#ifdef GROK2_ONEDNN
    if (g->attr) dnnl_primitive_attr_destroy(g->attr);
    if (g->stream) dnnl_stream_destroy(g->stream);
    if (g->engine) dnnl_engine_destroy(g->engine);
#endif
    free(g);
}

int gemm_new(gemm_state **out, gemm_backend backend, const simd_kernels *kernels, int n_threads, uint32_t max_batch,
             int64_t max_cols, g2_error *err) {
    *out = NULL;
    if (backend == GEMM_AUTO) backend = gemm_backend_default();
    if (gemm_backend_available(backend, err)) return -1;
    if (backend == GEMM_NATIVE) return 0;
    gemm_state *g = calloc(1, sizeof *g);
    if (!g) return g2_fail(err, "out of memory");
    g->backend = backend;
    g->avx512 = kernels_are_avx512(kernels);
    g->n_threads = n_threads;
    g->max_cols = max_cols;
    g->m_cap = ((int64_t)max_batch + M_ALIGN - 1) / M_ALIGN * M_ALIGN;
    /* the largest tile of any k <= max_cols, f32 (bf16 tiles are half of it) */
    size_t min_tile = (size_t)TILE_MIN_ROWS * (size_t)max_cols * sizeof(float);
    g->tile_bytes = min_tile > TILE_BYTES ? min_tile : TILE_BYTES;
    g->threads = calloc((size_t)n_threads, sizeof *g->threads);
    bool ok = g->threads != NULL;
    for (int t = 0; ok && t < n_threads; t++) {
        gemm_thread *th = &g->threads[t];
        th->tile = malloc(g->tile_bytes);
        th->row = malloc((size_t)max_cols * sizeof(float));
        ok = th->tile && th->row;
#ifdef GROK2_ONEDNN
        if (backend == GEMM_ONEDNN) {
            th->out = malloc((size_t)g->m_cap * TILE_MAX_ROWS * sizeof(float));
            th->cache = calloc(CACHE_SLOTS, sizeof *th->cache);
            ok = ok && th->out && th->cache;
        }
#endif
    }
#ifdef GROK2_ONEDNN
    if (ok && backend == GEMM_ONEDNN) {
        g->bf16 = onednn_has_bf16();
        size_t x_values = (size_t)g->m_cap * (size_t)max_cols;
        g->x_f32 = calloc(x_values, sizeof(float));
        g->x_bf16 = g->bf16 ? calloc(x_values, sizeof(uint16_t)) : NULL;
        ok = g->x_f32 && (!g->bf16 || g->x_bf16);
        if (ok && (dnnl_engine_create(&g->engine, dnnl_cpu, 0) != dnnl_success ||
                   dnnl_stream_create(&g->stream, g->engine, dnnl_stream_default_flags) != dnnl_success ||
                   dnnl_primitive_attr_create(&g->attr) != dnnl_success ||
                   dnnl_primitive_attr_set_scratchpad_mode(g->attr, dnnl_scratchpad_mode_user) != dnnl_success)) {
            gemm_free(g);
            return g2_fail(err, "--gemm onednn: cannot create a oneDNN CPU engine");
        }
    }
#endif
    if (!ok) {
        gemm_free(g);
        return g2_fail(err, "out of memory for the %s GEMM scratch (%d threads)", gemm_backend_name(backend),
                       n_threads);
    }
    *out = g;
    return 0;
}

gemm_backend gemm_state_backend(const gemm_state *g) { return g ? g->backend : GEMM_NATIVE; }

bool gemm_takes(const gemm_state *g, uint32_t weight_type) { return g && reference_decoder(weight_type); }

/* ---- oneDNN ----------------------------------------------------------------------------------- */
#ifdef GROK2_ONEDNN

/* bf16 GEMMs for block-quantized weights only: their native kernels already round activations
 * to 8 bits, where bf16's 8-bit mantissa loses nothing in comparison; float weights (f32, f16,
 * bf16 files) keep f32 activations, as their native kernels do. */
static bool bf16_for(const gemm_state *g, uint32_t weight_type) {
    return g->bf16 && g2_type_get(weight_type)->block_size > 1;
}

void gemm_prepare(gemm_state *g, uint32_t weight_type, const float *x, int64_t n, int64_t cols, uint64_t id) {
    if (!g || g->backend != GEMM_ONEDNN) return;
    /* [m_cap][cols] with the rows past n zero: the primitive reads a whole padded batch */
    int64_t m = (n + M_ALIGN - 1) / M_ALIGN * M_ALIGN;
    if (bf16_for(g, weight_type)) {
        if (g->x_bf16_id == id) return;
#ifdef HAVE_AVX512_DECODERS
        if (g->avx512) f32_to_bf16_avx512(x, g->x_bf16, n * cols);
        else
#endif
            f32_to_bf16_row(x, g->x_bf16, n * cols);
        memset(g->x_bf16 + n * cols, 0, (size_t)((m - n) * cols) * sizeof(uint16_t));
        g->x_bf16_id = id;
    } else {
        if (g->x_f32_id == id) return;
        memcpy(g->x_f32, x, (size_t)(n * cols) * sizeof(float));
        memset(g->x_f32 + n * cols, 0, (size_t)((m - n) * cols) * sizeof(float));
        g->x_f32_id = id;
    }
}

/* The primitive for out[m][n] = src[m][k] . weights[n][k]^T (all dense row-major), from the
 * thread's cache or created on first use (with its scratchpad). *once: the cache is full (never
 * with one model's shapes) and the caller destroys it after use. false if oneDNN refuses. */
static bool onednn_primitive(gemm_state *g, gemm_thread *th, int64_t m, int64_t n, int64_t k, bool bf16,
                             cached_primitive *out, bool *once) {
    uint64_t h = ((uint64_t)m * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)n * 0xC2B2AE3D27D4EB4Full) ^
                 ((uint64_t)k * 0x165667B19E3779F9ull) ^ (uint64_t)bf16;
    cached_primitive *slot = NULL;
    for (int probe = 0; probe < CACHE_SLOTS; probe++) {
        cached_primitive *c = &th->cache[(h + (uint64_t)probe) & (CACHE_SLOTS - 1)];
        if (!c->prim) {
            slot = c;
            break;
        }
        if (c->m == m && c->n == n && c->k == k && c->bf16 == bf16) {
            *out = *c;
            *once = false;
            return true;
        }
    }
    dnnl_data_type_t in = bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t src_md, w_md, dst_md;
    dnnl_dims_t src_dims = {m, k}, src_strides = {k, 1};
    dnnl_dims_t w_dims = {k, n}, w_strides = {1, k}; /* [k][n] viewed over our [n][k] rows */
    dnnl_dims_t dst_dims = {m, n}, dst_strides = {n, 1};
    dnnl_matmul_desc_t desc;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    if (dnnl_memory_desc_init_by_strides(&src_md, 2, src_dims, in, src_strides) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&w_md, 2, w_dims, in, w_strides) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&dst_md, 2, dst_dims, dnnl_f32, dst_strides) != dnnl_success ||
        dnnl_matmul_desc_init(&desc, &src_md, &w_md, NULL, &dst_md) != dnnl_success ||
        dnnl_primitive_desc_create(&pd, &desc, g->attr, g->engine, NULL) != dnnl_success ||
        dnnl_primitive_create(&prim, pd) != dnnl_success)
        prim = NULL;
    *out = (cached_primitive){prim, m, n, k, bf16, {0}, 0, {NULL, NULL, NULL, NULL}};
    if (prim) {
        out->scratch_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        out->scratch_bytes = dnnl_memory_desc_get_size(&out->scratch_md);
        bool ok = true;
        if (out->scratch_bytes > th->scratch_bytes) { /* once per new shape, not per call */
            void *grown = realloc(th->scratch, out->scratch_bytes);
            if (grown) th->scratch = grown, th->scratch_bytes = out->scratch_bytes;
            else ok = false;
        }
        /* DNNL_MEMORY_NONE: no buffer yet, onednn_run points them at each call's */
        ok = ok && dnnl_memory_create(&out->mem[0], &src_md, g->engine, DNNL_MEMORY_NONE) == dnnl_success &&
             dnnl_memory_create(&out->mem[1], &w_md, g->engine, DNNL_MEMORY_NONE) == dnnl_success &&
             dnnl_memory_create(&out->mem[2], &dst_md, g->engine, DNNL_MEMORY_NONE) == dnnl_success &&
             (!out->scratch_bytes ||
              dnnl_memory_create(&out->mem[3], &out->scratch_md, g->engine, DNNL_MEMORY_NONE) == dnnl_success);
        if (!ok) {
            cached_primitive_destroy(out);
            prim = NULL;
        }
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (!prim) return false;
    *once = !slot;
    if (slot) *slot = *out;
    return true;
}

static bool onednn_run(gemm_state *g, gemm_thread *th, const cached_primitive *p, const void *x, const void *w) {
    bool ok = dnnl_memory_set_data_handle(p->mem[0], (void *)x) == dnnl_success &&
              dnnl_memory_set_data_handle(p->mem[1], (void *)w) == dnnl_success &&
              dnnl_memory_set_data_handle(p->mem[2], th->out) == dnnl_success &&
              (!p->scratch_bytes || dnnl_memory_set_data_handle(p->mem[3], th->scratch) == dnnl_success);
    if (!ok) return false;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, p->mem[0]}, {DNNL_ARG_WEIGHTS, p->mem[1]}, {DNNL_ARG_DST, p->mem[2]},
                               {DNNL_ARG_SCRATCHPAD, p->mem[3]}};
    return dnnl_primitive_execute(p->prim, g->stream, p->scratch_bytes ? 4 : 3, args) == dnnl_success;
}
#else
void gemm_prepare(gemm_state *g, uint32_t weight_type, const float *x, int64_t n, int64_t cols, uint64_t id) {}
#endif

/* ---- the task's rows ---------------------------------------------------------------------------- */

#ifdef HAVE_BLAS
/* A tile of `rows` weight rows from r0, decoded to f32 (or bf16) into the thread's tile; F32
 * weights for an f32 GEMM are used in place. */
static const void *decode_tile(const gemm_state *g, gemm_thread *th, const weight_matrix *w, const uint8_t *data,
                               int64_t r0, int64_t rows, bool bf16) {
    int64_t k = w->cols;
    if (w->type == G2_TYPE_F32 && !bf16) return data + (size_t)r0 * w->row_bytes;
    size_t elem = bf16 ? sizeof(uint16_t) : sizeof(float);
    for (int64_t r = 0; r < rows; r++)
        decode_row(w->type, g->avx512, data + (size_t)(r0 + r) * w->row_bytes,
                   (uint8_t *)th->tile + (size_t)(r * k) * elem, k, bf16, th->row);
    return th->tile;
}
#endif

/* The fallback if a library call fails mid-run (it was checked at context creation): rows
 * decoded one at a time and dotted in plain C. */
static void rows_by_loops(gemm_thread *th, const weight_matrix *w, const uint8_t *data, int64_t r0, int64_t r1,
                          const float *x, int64_t n, float *y) {
    for (int64_t r = r0; r < r1; r++) {
        decode_row(w->type, false, data + (size_t)r * w->row_bytes, th->row, w->cols, false, NULL);
        for (int64_t t = 0; t < n; t++) {
            float sum = 0;
            for (int64_t i = 0; i < w->cols; i++) sum += th->row[i] * x[t * w->cols + i];
            y[t * w->rows + r] = sum;
        }
    }
}

void gemm_rows(gemm_state *g, int thread, const weight_matrix *w, const uint8_t *data, int64_t r0, int64_t r1,
               const float *x, int64_t n, float *y) {
    gemm_thread *th = &g->threads[thread];
#ifdef HAVE_BLAS
    int64_t k = w->cols;
#endif
#ifdef GROK2_ONEDNN
    if (g->backend == GEMM_ONEDNN) {
#if DNNL_CPU_RUNTIME == DNNL_RUNTIME_OMP
        omp_set_num_threads(1); /* this thread's OpenMP ICV: no team of its own */
#endif
        bool bf16 = bf16_for(g, w->type);
        int64_t m = (n + M_ALIGN - 1) / M_ALIGN * M_ALIGN, step = tile_rows(k, bf16 ? 2 : 4);
        const void *xin = bf16 ? (const void *)g->x_bf16 : (const void *)g->x_f32;
        for (int64_t r = r0; r < r1; r += step) {
            int64_t rows = r1 - r < step ? r1 - r : step;
            const void *tile = decode_tile(g, th, w, data, r, rows, bf16);
            cached_primitive prim;
            bool once = false;
            bool ran = onednn_primitive(g, th, m, rows, k, bf16, &prim, &once) && onednn_run(g, th, &prim, xin, tile);
            if (once) cached_primitive_destroy(&prim);
            if (!ran) {
                rows_by_loops(th, w, data, r, r + rows, x, n, y);
                continue;
            }
            for (int64_t t = 0; t < n; t++)
                memcpy(y + t * w->rows + r, th->out + t * rows, (size_t)rows * sizeof(float));
        }
        return;
    }
#endif
#ifdef GROK2_OPENBLAS
    if (g->backend == GEMM_OPENBLAS) {
        int64_t step = tile_rows(k, sizeof(float));
        for (int64_t r = r0; r < r1; r += step) {
            int64_t rows = r1 - r < step ? r1 - r : step;
            const float *tile = decode_tile(g, th, w, data, r, rows, false);
            /* y[t][r..] = x[t] . tile[j]: row-major x (n x k) times tile^T (k x rows) */
            openblas.sgemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS, (int)n, (int)rows, (int)k, 1.0f, x, (int)k,
                           tile, (int)k, 0.0f, y + r, (int)w->rows);
        }
        return;
    }
#endif
    rows_by_loops(th, w, data, r0, r1, x, n, y);
}

/* Which table of kernels this process uses: the best one the CPU runs, or the one named by
 * --isa / $GROK2_ISA (refused, with the missing features named, when the CPU cannot run it).
 * Chosen once; afterwards a single atomic pointer to a const table, so worker threads read it
 * without locks and it never changes under a running kernel. (The list of built-in tables is
 * filled once, under pthread_once, from the per-ISA getters.) Also the ISA-independent facts
 * about each weight type's activation partner. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "simd_internal.h"

/* ---- weight types and their partners -------------------------------------------------------- */

const simd_type_kernels *simd_type_kernels_get(const simd_kernels *k, uint32_t weight_type) {
    if (!k || weight_type >= SIMD_TYPE_LIMIT || !k->types[weight_type].matvec) return NULL;
    return &k->types[weight_type];
}

uint32_t simd_act_type(uint32_t weight_type) {
    const simd_type_kernels *t = simd_type_kernels_get(simd_table_scalar(), weight_type);
    return t ? t->act_type : UINT32_MAX;
}

size_t simd_act_row_bytes(uint32_t act_type, int64_t n) {
    if (n < 0) return 0;
    switch (act_type) {
    case SIMD_TYPE_Q8_0: return n % QK8_0 ? 0 : (size_t)(n / QK8_0) * sizeof(block_q8_0);
    case SIMD_TYPE_Q8_K: return n % QK_K ? 0 : (size_t)(n / QK_K) * sizeof(block_q8_k);
    case SIMD_TYPE_F32: return (size_t)n * sizeof(float);
    default: return 0;
    }
}

/* ---- the tables built in --------------------------------------------------------------------- */

static const simd_kernels *built_in[8]; /* written once under pthread_once */
static pthread_once_t built_in_once = PTHREAD_ONCE_INIT;

static void list_built_in(void) {
    const simd_kernels *(*const getters[])(void) = {simd_table_avx512vnni, simd_table_avx512, simd_table_avx2,
                                                   simd_table_neondot,    simd_table_neon,   simd_table_scalar};
    int n = 0;
    for (size_t i = 0; i < sizeof getters / sizeof getters[0]; i++) {
        const simd_kernels *k = getters[i]();
        if (k) built_in[n++] = k;
    }
    built_in[n] = NULL;
}

const simd_kernels *const *simd_kernels_all(void) {
    pthread_once(&built_in_once, list_built_in);
    return built_in;
}

const simd_kernels *simd_kernels_scalar(void) { return simd_table_scalar(); }

bool simd_kernels_runnable(const simd_kernels *k, const simd_cpu_info *cpu) {
    return k && (k->needs & ~cpu->features) == 0;
}

static int list_names(const simd_cpu_info *cpu, bool runnable_only, char *buf, size_t size) {
    size_t len = 0;
    if (size) buf[0] = 0;
    for (const simd_kernels *const *k = simd_kernels_all(); *k; k++) {
        if (runnable_only && !simd_kernels_runnable(*k, cpu)) continue;
        int w = snprintf(buf + (len < size ? len : size), len < size ? size - len : 0, "%s%s", len ? " " : "",
                         (*k)->name);
        if (w > 0) len += (size_t)w;
    }
    return (int)len;
}

const simd_kernels *simd_kernels_choose(const char *name, const simd_cpu_info *cpu, char *msg, size_t msg_size) {
    if (msg_size) msg[0] = 0;
    if (!name || !*name || strcmp(name, "auto") == 0) {
        for (const simd_kernels *const *k = simd_kernels_all(); *k; k++)
            if (simd_kernels_runnable(*k, cpu)) return *k;
        return simd_table_scalar(); /* needs nothing: unreachable */
    }
    for (const simd_kernels *const *k = simd_kernels_all(); *k; k++) {
        if (strcmp((*k)->name, name) != 0) continue;
        if (simd_kernels_runnable(*k, cpu)) return *k;
        char missing[160], usable[160];
        simd_cpu_feature_names((*k)->needs & ~cpu->features, missing, sizeof missing);
        list_names(cpu, true, usable, sizeof usable);
        snprintf(msg, msg_size, "ISA '%s' refused: this CPU (or its OS) lacks %s; usable here: %s", name, missing,
                 usable);
        return NULL;
    }
    static const char *const every_isa[] = {"scalar", "avx2", "avx512", "avx512vnni", "neon", "neondot"};
    for (size_t i = 0; i < sizeof every_isa / sizeof every_isa[0]; i++) {
        if (strcmp(every_isa[i], name) == 0) {
            char usable[160];
            list_names(cpu, true, usable, sizeof usable);
            snprintf(msg, msg_size, "ISA '%s' is not built into this binary; usable here: %s", name, usable);
            return NULL;
        }
    }
    char known[160];
    list_names(cpu, false, known, sizeof known);
    snprintf(msg, msg_size, "unknown ISA '%s'; known: auto %s", name, known);
    return NULL;
}

/* ---- the process-wide choice ------------------------------------------------------------------ */

static _Atomic(const simd_kernels *) chosen; /* set once, then only read */

static const simd_kernels *install(const simd_kernels *k) {
    const simd_kernels *expected = NULL;
    if (atomic_compare_exchange_strong_explicit(&chosen, &expected, k, memory_order_acq_rel, memory_order_acquire))
        return k;
    return expected; /* someone chose first */
}

int simd_kernels_init(const char *name, char *msg, size_t msg_size) {
    simd_cpu_info cpu;
    simd_cpu_detect(&cpu);
    const char *source = "--isa";
    if (!name) {
        name = getenv("GROK2_ISA");
        source = "GROK2_ISA";
    }
    char why[400];
    const simd_kernels *k = simd_kernels_choose(name, &cpu, why, sizeof why);
    if (!k) {
        snprintf(msg, msg_size, "%s=%s: %s", source, name, why);
        return -1;
    }
    const simd_kernels *got = install(k);
    if (got != k) {
        snprintf(msg, msg_size, "%s=%s: kernels were already chosen (%s)", source, name ? name : "", got->name);
        return -1;
    }
    return 0;
}

const simd_kernels *simd_kernels_get(void) {
    const simd_kernels *k = atomic_load_explicit(&chosen, memory_order_acquire);
    if (k) return k;
    simd_cpu_info cpu;
    simd_cpu_detect(&cpu);
    const char *env = getenv("GROK2_ISA");
    char why[400];
    k = simd_kernels_choose(env, &cpu, why, sizeof why);
    if (!k) {
        k = simd_kernels_choose(NULL, &cpu, NULL, 0);
        fprintf(stderr, "grok2: GROK2_ISA=%s: %s; using %s\n", env, why, k->name);
    }
    return install(k);
}

int simd_describe(char *buf, size_t size) {
    simd_cpu_info cpu;
    simd_cpu_detect(&cpu);
    char features[256], runnable[160];
    simd_cpu_feature_names(cpu.features, features, sizeof features);
    list_names(&cpu, true, runnable, sizeof runnable);
    const simd_kernels *k = simd_kernels_get();
    const simd_kernels *best = simd_kernels_choose(NULL, &cpu, NULL, 0);
#if defined(__x86_64__)
    const char *arch = "x86-64";
    char os[64];
    snprintf(os, sizeof os, " (os saves%s%s)", cpu.os_ymm ? " ymm" : "", cpu.os_zmm ? " zmm" : "");
    if (!cpu.os_ymm) snprintf(os, sizeof os, " (os saves no ymm)");
#elif defined(__aarch64__)
    const char *arch = "aarch64", *os = "";
#else
    const char *arch = "generic", *os = "";
#endif
    return snprintf(buf, size, "cpu: %s %s%s; kernels: %s (%s; runnable: %s)", arch, features, os, k->name,
                    k == best ? "best" : "forced", runnable);
}

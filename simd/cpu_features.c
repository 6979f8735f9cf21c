/* What the CPU (and the OS) lets this process run: CPUID + XGETBV on x86-64, HWCAP on aarch64.
 * An x86 feature counts only when the OS saves the registers it needs across context
 * switches (XCR0): a CPU with AVX-512 under an OS or hypervisor that does not enable ZMM state
 * must not get the AVX-512 kernels. */
#include <stdio.h>

#include "simd_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0)); /* raw: _xgetbv needs -mxsave */
    return ((uint64_t)hi << 32) | lo;
}

void simd_cpu_detect(simd_cpu_info *out) {
    memset(out, 0, sizeof *out);
    unsigned a, b, c, d, max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf < 1 || !__get_cpuid(1, &a, &b, &c, &d)) return;
    uint32_t cpu = 0;
    if (c & (1u << 12)) cpu |= SIMD_CPU_FMA;
    if (c & (1u << 29)) cpu |= SIMD_CPU_F16C;
    bool osxsave = c & (1u << 27), avx = c & (1u << 28);
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if (b & (1u << 5)) cpu |= SIMD_CPU_AVX2;
        if (b & (1u << 16)) cpu |= SIMD_CPU_AVX512F;
        if (b & (1u << 17)) cpu |= SIMD_CPU_AVX512DQ;
        if (b & (1u << 30)) cpu |= SIMD_CPU_AVX512BW;
        if (b & (1u << 31)) cpu |= SIMD_CPU_AVX512VL;
        if (c & (1u << 11)) cpu |= SIMD_CPU_AVX512VNNI;
    }
    out->cpu_reported = cpu;
    if (osxsave && avx) {
        uint64_t xcr0 = read_xcr0();
        out->os_ymm = (xcr0 & 0x6) == 0x6;                /* SSE + AVX state */
        out->os_zmm = out->os_ymm && (xcr0 & 0xe0) == 0xe0; /* opmask, ZMM0-15 high, ZMM16-31 */
    }
    const uint32_t ymm_features = SIMD_CPU_AVX2 | SIMD_CPU_FMA | SIMD_CPU_F16C;
    const uint32_t zmm_features = SIMD_CPU_AVX512F | SIMD_CPU_AVX512BW | SIMD_CPU_AVX512VL | SIMD_CPU_AVX512DQ |
                                  SIMD_CPU_AVX512VNNI;
    out->features = cpu & ((out->os_ymm ? ymm_features : 0) | (out->os_zmm ? zmm_features : 0));
}

#elif defined(__aarch64__)
#include <sys/auxv.h>

#define HWCAP_BIT_ASIMD (1ul << 1)    /* asm/hwcap.h: HWCAP_ASIMD */
#define HWCAP_BIT_ASIMDDP (1ul << 20) /* asm/hwcap.h: HWCAP_ASIMDDP (SDOT/UDOT) */

void simd_cpu_detect(simd_cpu_info *out) {
    memset(out, 0, sizeof *out);
    unsigned long hw = getauxval(AT_HWCAP);
    uint32_t cpu = 0;
    if (hw & HWCAP_BIT_ASIMD) cpu |= SIMD_CPU_NEON;
    if ((hw & HWCAP_BIT_ASIMD) && (hw & HWCAP_BIT_ASIMDDP)) cpu |= SIMD_CPU_DOTPROD;
    out->cpu_reported = out->features = cpu;
}

#else
void simd_cpu_detect(simd_cpu_info *out) { memset(out, 0, sizeof *out); }
#endif

static const struct {
    uint32_t bit;
    const char *name;
} feature_names[] = {
    {SIMD_CPU_AVX2, "avx2"},         {SIMD_CPU_FMA, "fma"},           {SIMD_CPU_F16C, "f16c"},
    {SIMD_CPU_AVX512F, "avx512f"},   {SIMD_CPU_AVX512BW, "avx512bw"}, {SIMD_CPU_AVX512VL, "avx512vl"},
    {SIMD_CPU_AVX512DQ, "avx512dq"}, {SIMD_CPU_AVX512VNNI, "avx512vnni"}, {SIMD_CPU_NEON, "neon"},
    {SIMD_CPU_DOTPROD, "dotprod"},
};

int simd_cpu_feature_names(uint32_t features, char *buf, size_t size) {
    size_t len = 0;
    if (size) buf[0] = 0;
    for (size_t i = 0; i < sizeof feature_names / sizeof feature_names[0]; i++) {
        if (!(features & feature_names[i].bit)) continue;
        int k = snprintf(buf + (len < size ? len : size), len < size ? size - len : 0, "%s%s", len ? " " : "",
                         feature_names[i].name);
        if (k > 0) len += (size_t)k;
    }
    if (len == 0) {
        int k = snprintf(buf, size, "none");
        len = k > 0 ? (size_t)k : 0;
    }
    return (int)len;
}

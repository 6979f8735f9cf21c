/* Standalone driver of the kernel checks for builds without Criterion: the AVX-512 sources
 * compiled against SIMDe (run on an AVX2 host) and the aarch64 cross build (run under
 * qemu-aarch64, with and without dotprod). Runs every check on every table this CPU runs and
 * prints "N passed, M failed"; exits non-zero on a failure or an unmet expectation.
 *
 *   simd-test [--tables a,b|none] [--expect a,b] [--absent c] [--chosen d] [--verbose]
 *     --tables  check only these tables (default: every runnable one)
 *     --expect  these tables must be built and runnable here (so they were tested)
 *     --absent  these must be refused here (e.g. neondot on a CPU without dotprod)
 *     --chosen  simd_kernels_get() must pick this one (with GROK2_ISA set by the caller) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "simd_checks.h"

static bool in_list(const char *list, const char *name) {
    size_t len = strlen(name);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && strncmp(p, name, n) == 0) return true;
        if (!end) break;
        p = end + 1;
    }
    return false;
}

static int each_in_list(const char *list, bool (*ok)(const char *name, const simd_cpu_info *cpu),
                        const simd_cpu_info *cpu) {
    int bad = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list ? list : "");
    for (char *save = NULL, *name = strtok_r(buf, ",", &save); name; name = strtok_r(NULL, ",", &save))
        if (!ok(name, cpu)) bad++;
    return bad;
}

static bool expect_runnable(const char *name, const simd_cpu_info *cpu) {
    char msg[400];
    const simd_kernels *k = simd_kernels_choose(name, cpu, msg, sizeof msg);
    if (!k) printf("FAIL expected table %s to run here: %s\n", name, msg);
    return k != NULL;
}

static bool expect_refused(const char *name, const simd_cpu_info *cpu) {
    char msg[400];
    const simd_kernels *k = simd_kernels_choose(name, cpu, msg, sizeof msg);
    if (k)
        printf("FAIL expected table %s to be refused here\n", name);
    else
        printf("ok   %s refused as expected: %s\n", name, msg);
    return k == NULL;
}

int main(int argc, char **argv) {
    const char *expect = NULL, *absent = NULL, *chosen = NULL, *tables = NULL;
    bool verbose = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tables") == 0 && i + 1 < argc) tables = argv[++i];
        else if (strcmp(argv[i], "--expect") == 0 && i + 1 < argc) expect = argv[++i];
        else if (strcmp(argv[i], "--absent") == 0 && i + 1 < argc) absent = argv[++i];
        else if (strcmp(argv[i], "--chosen") == 0 && i + 1 < argc) chosen = argv[++i];
        else if (strcmp(argv[i], "--verbose") == 0) verbose = true;
        else {
            fprintf(stderr, "usage: %s [--tables a,b|none] [--expect a,b] [--absent c] [--chosen d] [--verbose]\n", argv[0]);
            return 2;
        }
    }
    simd_cpu_info cpu;
    simd_cpu_detect(&cpu);
    char line[512];
    simd_describe(line, sizeof line);
    printf("%s\n", line);

    int passed = 0, failed = 0;
    for (const simd_kernels *const *k = simd_kernels_all(); *k; k++) {
        if (tables && !in_list(tables, (*k)->name)) continue;
        if (!simd_kernels_runnable(*k, &cpu)) {
            printf("skip %s (not runnable here)\n", (*k)->name);
            continue;
        }
        clock_t start = clock();
        int table_failed = 0, checks = 0;
        long comparisons = 0;
        for (const simd_check *c = simd_checks; c->name; c++) {
            check_log log = {0};
            c->fn(*k, &log);
            checks++;
            comparisons += log.checks;
            if (log.failures) {
                printf("FAIL %s %s: %ld of %ld comparisons failed; first: %s\n", (*k)->name, c->name, log.failures,
                       log.checks, log.first);
                failed++;
                table_failed++;
            } else {
                passed++;
                if (verbose) printf("ok   %s %s (%ld comparisons, worst error %.3g of allowed)\n", (*k)->name, c->name,
                                    log.checks, log.worst);
            }
        }
        printf("%s %s: %d checks, %ld comparisons, %.2f s\n", table_failed ? "FAIL" : "ok  ", (*k)->name,
               checks, comparisons,
               (double)(clock() - start) / CLOCKS_PER_SEC);
    }
    failed += each_in_list(expect, expect_runnable, &cpu);
    failed += each_in_list(absent, expect_refused, &cpu);
    if (chosen) {
        const simd_kernels *k = simd_kernels_get();
        if (strcmp(k->name, chosen) != 0) {
            printf("FAIL simd_kernels_get() chose %s, expected %s\n", k->name, chosen);
            failed++;
        } else {
            printf("ok   simd_kernels_get() chose %s\n", k->name);
            passed++;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

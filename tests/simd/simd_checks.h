/* The kernel checks, free of any test framework: tests/test_simd.c runs them under Criterion
 * for every ISA this machine runs, tests/simd/main.c runs them in the SIMDe (AVX-512 on an
 * AVX2 host) and aarch64 cross (qemu-aarch64) builds. Each check compares one ISA's kernels
 * against the scalar reference (quantizers: byte-exact) or against an exact oracle computed
 * in double from the block layouts (dots: within the rounding bound stated in simd.h) or
 * against libm in double (vector math: within the stated maximum errors). */
#ifndef GROK2_TESTS_SIMD_CHECKS_H
#define GROK2_TESTS_SIMD_CHECKS_H

#include <stdint.h>

#include "../../simd/simd.h"

typedef struct {
    long checks;     /* comparisons made */
    long failures;   /* comparisons that failed */
    char first[600]; /* the first failure, described */
    double worst;    /* largest error / allowed error seen (<= 1 passes) */
} check_log;

typedef void (*simd_check_fn)(const simd_kernels *k, check_log *log);
typedef struct {
    const char *name;
    simd_check_fn fn;
} simd_check;

/* NULL-name terminated. */
extern const simd_check simd_checks[];

/* The check of that name, or NULL. */
const simd_check *simd_check_find(const char *name);

/* ---- oracle helpers (also used by the Criterion tests that tie them to quant/) ---------------- */

/* Decode one row of n weights of a kernel type to double: val = the weight, mag = the sum of
 * the magnitudes of the terms the kernels add (|d q| + |m| for offset types). */
void check_decode_weights(uint32_t type, const void *row, int64_t n, double *val, double *mag);
/* Decode one activation column (Q8_0, Q8_K or F32) to double. */
void check_decode_act(uint32_t act_type, const void *col, int64_t n, double *val);
/* Bytes per row of n weights of a kernel type (0 if n does not fit). */
size_t check_row_bytes(uint32_t type, int64_t n);

/* xorshift64* */
typedef struct {
    uint64_t s;
} check_rng;
uint64_t check_next(check_rng *r);
double check_uniform(check_rng *r); /* [0, 1) */
double check_gauss(check_rng *r);

#endif

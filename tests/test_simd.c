/* simd/: every kernel of every ISA this machine runs (scalar, and avx2 / avx512 / avx512vnni or
 * neon / neondot where the CPU has them) against the scalar reference and an exact oracle;
 * the scalar reference against quant/; the dispatch. The same checks run under SIMDe and
 * qemu-aarch64 through tests/simd/main.c (make simd-test). */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../quant/quant.h"
#include "../simd/simd.h"
#include "../simd/simd_internal.h"
#include "harness.h"

/* The checks are compiled into this file because the Makefile builds only tests/test_*.c into
 * grok2-tests; the standalone driver links tests/simd/simd_checks.c itself. */
#include "simd/simd_checks.c"

/* ---- every check on every ISA the machine runs ------------------------------------------------ */

static void run_on_every_isa(const char *check_name) {
    const simd_check *check = simd_check_find(check_name);
    cr_assert_not_null(check, "no check named %s", check_name);
    simd_cpu_info cpu;
    simd_cpu_detect(&cpu);
    int ran = 0;
    for (const simd_kernels *const *k = simd_kernels_all(); *k; k++) {
        if (!simd_kernels_runnable(*k, &cpu)) continue;
        check_log log = {0};
        check->fn(*k, &log);
        cr_expect_eq(log.failures, 0, "%s on %s: %ld of %ld comparisons failed; first: %s", check_name, (*k)->name,
                     log.failures, log.checks, log.first);
        cr_expect_gt(log.checks, 0, "%s on %s compared nothing", check_name, (*k)->name);
        ran++;
    }
    cr_assert_geq(ran, 1);
}

#define ON_EVERY_ISA(suite, test, check) \
    Test(suite, test) { run_on_every_isa(check); }

ON_EVERY_ISA(simd_quantize, q8_0_is_byte_exact_with_the_reference_on_every_isa, "quantize_q8_0")
ON_EVERY_ISA(simd_quantize, q8_k_is_byte_exact_with_the_reference_on_every_isa, "quantize_q8_k")
ON_EVERY_ISA(simd_dot, tables_list_every_kernel_type_with_the_reference_partner, "table")
ON_EVERY_ISA(simd_dot, q4_0_agrees_with_reference_within_rounding_on_every_isa, "dot_q4_0")
ON_EVERY_ISA(simd_dot, q4_1_agrees_with_reference_within_rounding_on_every_isa, "dot_q4_1")
ON_EVERY_ISA(simd_dot, q8_0_agrees_with_reference_within_rounding_on_every_isa, "dot_q8_0")
ON_EVERY_ISA(simd_dot, iq4_nl_agrees_with_reference_within_rounding_on_every_isa, "dot_iq4_nl")
ON_EVERY_ISA(simd_dot, q4_k_agrees_with_reference_within_rounding_on_every_isa, "dot_q4_k")
ON_EVERY_ISA(simd_dot, q5_k_agrees_with_reference_within_rounding_on_every_isa, "dot_q5_k")
ON_EVERY_ISA(simd_dot, q6_k_agrees_with_reference_within_rounding_on_every_isa, "dot_q6_k")
ON_EVERY_ISA(simd_dot, f32_agrees_with_reference_within_rounding_on_every_isa, "dot_f32")
ON_EVERY_ISA(simd_dot, f16_agrees_with_reference_within_rounding_on_every_isa, "dot_f16")
ON_EVERY_ISA(simd_dot, bf16_agrees_with_reference_within_rounding_on_every_isa, "dot_bf16")
ON_EVERY_ISA(simd_vecmath, exp_within_stated_error_of_libm_on_every_isa, "exp")
ON_EVERY_ISA(simd_vecmath, tanh_within_stated_error_of_libm_on_every_isa, "tanh")
ON_EVERY_ISA(simd_vecmath, gelu_within_stated_error_of_libm_on_every_isa, "gelu")
ON_EVERY_ISA(simd_vecmath, softmax_within_stated_error_of_libm_on_every_isa, "softmax")
ON_EVERY_ISA(simd_vecmath, exp_sum_within_stated_error_of_libm_on_every_isa, "exp_sum")
ON_EVERY_ISA(simd_vecmath, rmsnorm_within_stated_error_of_libm_on_every_isa, "rmsnorm")
ON_EVERY_ISA(simd_dot, xw_gives_the_references_bits_on_every_isa, "xw")

/* ---- the reference and the oracle, tied to quant/ --------------------------------------------- */

Test(simd_reference, type_ids_are_quants_ggml_ids) {
    cr_expect_eq(SIMD_TYPE_F32, G2_TYPE_F32);
    cr_expect_eq(SIMD_TYPE_F16, G2_TYPE_F16);
    cr_expect_eq(SIMD_TYPE_Q4_0, G2_TYPE_Q4_0);
    cr_expect_eq(SIMD_TYPE_Q4_1, G2_TYPE_Q4_1);
    cr_expect_eq(SIMD_TYPE_Q8_0, G2_TYPE_Q8_0);
    cr_expect_eq(SIMD_TYPE_Q4_K, G2_TYPE_Q4_K);
    cr_expect_eq(SIMD_TYPE_Q5_K, G2_TYPE_Q5_K);
    cr_expect_eq(SIMD_TYPE_Q6_K, G2_TYPE_Q6_K);
    cr_expect_eq(SIMD_TYPE_Q8_K, G2_TYPE_Q8_K);
    cr_expect_eq(SIMD_TYPE_IQ4_NL, G2_TYPE_IQ4_NL);
    cr_expect_eq(SIMD_TYPE_BF16, G2_TYPE_BF16);
    cr_expect_leq((int)SIMD_TYPE_LIMIT, (int)G2_TYPE_ID_LIMIT);
    for (int i = 0; i < N_KERNEL_TYPES; i++) {
        const g2_type_traits *t = g2_type_get(kernel_types[i].type);
        cr_assert_not_null(t);
        cr_expect_eq(t->block_size, kernel_types[i].block, "%s", t->name);
        cr_expect_eq(t->type_size, kernel_types[i].bytes, "%s", t->name);
    }
}

/* The scalar quantizers are quant/'s encoders (importance NULL), byte for byte, including
 * NaN, infinities, subnormals, ties and scales past fp16's range. */
Test(simd_reference, quantizers_are_byte_exact_with_quants_encoders) {
    check_rng rng = {2024};
    const simd_kernels *ref = simd_kernels_scalar();
    for (int which = 0; which < 2; which++) {
        uint32_t type = which ? G2_TYPE_Q8_K : G2_TYPE_Q8_0;
        int64_t block = which ? QK_K : QK8_0, nb = 32, n = nb * block;
        size_t row = g2_row_size(type, n);
        float *x = malloc((size_t)n * sizeof(float));
        uint8_t *a = malloc(row), *b = malloc(row);
        for (int round = 0; round < 4; round++) {
            fill_quantizer_input(x, nb, block, &rng);
            cr_assert_eq(g2_quantize_rows(type, x, a, 1, n, NULL), row);
            (which ? ref->quantize_q8_k : ref->quantize_q8_0)(x, b, n);
            for (int64_t i = 0; i < nb; i++)
                cr_expect(memcmp(a + i * row / nb, b + i * row / nb, row / nb) == 0, "%s block %lld (case %lld) differs",
                          which ? "q8_K" : "q8_0", (long long)i, (long long)(i % 16));
        }
        free(x);
        free(a);
        free(b);
    }
}

/* The tests' own decoders (the dot oracle) agree with quant/'s decoders. */
Test(simd_reference, oracle_decoders_agree_with_quants_decoders) {
    check_rng rng = {7};
    for (int i = 0; i < N_KERNEL_TYPES; i++) {
        uint32_t type = kernel_types[i].type;
        int64_t n = kernel_types[i].block == 1 ? 301 : kernel_types[i].block * 3;
        size_t row = check_row_bytes(type, n);
        uint8_t *w = malloc(row);
        float *f = malloc((size_t)n * sizeof(float));
        double *val = malloc((size_t)n * sizeof(double)), *mag = malloc((size_t)n * sizeof(double));
        for (int mode = 0; mode < W_MODES; mode++) {
            gen_weights(type, w, 1, n, mode, &rng);
            cr_assert_eq(g2_dequantize(type, w, f, n), 0, "%s", kernel_types[i].name);
            check_decode_weights(type, w, n, val, mag);
            for (int64_t e = 0; e < n; e++)
                cr_expect(fabs(f[e] - val[e]) <= 0x1p-22 * mag[e], "%s mode %d element %lld: quant %.9g, oracle %.9g",
                          kernel_types[i].name, mode, (long long)e, f[e], val[e]);
        }
        free(w);
        free(f);
        free(val);
        free(mag);
    }
}

Test(simd_reference, q4_k_scale_unpacking_matches_the_layout_rule) {
    check_rng rng = {99};
    for (int trial = 0; trial < 20000; trial++) {
        uint8_t packed[K_SCALE_SIZE], out[16];
        for (int i = 0; i < K_SCALE_SIZE; i++) packed[i] = (uint8_t)check_next(&rng);
        simd_q4_k_scales(packed, out);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            k_scale_min(packed, j, &sc, &m);
            cr_assert_eq(out[j], sc, "trial %d sub-block %d scale", trial, j);
            cr_assert_eq(out[8 + j], m, "trial %d sub-block %d min", trial, j);
        }
    }
}

Test(simd_reference, activation_partners_and_row_bytes) {
    cr_expect_eq(simd_act_type(G2_TYPE_Q4_0), SIMD_TYPE_Q8_0);
    cr_expect_eq(simd_act_type(G2_TYPE_Q4_1), SIMD_TYPE_Q8_0);
    cr_expect_eq(simd_act_type(G2_TYPE_Q8_0), SIMD_TYPE_Q8_0);
    cr_expect_eq(simd_act_type(G2_TYPE_IQ4_NL), SIMD_TYPE_Q8_0);
    cr_expect_eq(simd_act_type(G2_TYPE_Q4_K), SIMD_TYPE_Q8_K);
    cr_expect_eq(simd_act_type(G2_TYPE_Q5_K), SIMD_TYPE_Q8_K);
    cr_expect_eq(simd_act_type(G2_TYPE_Q6_K), SIMD_TYPE_Q8_K);
    cr_expect_eq(simd_act_type(G2_TYPE_BF16), SIMD_TYPE_F32);
    cr_expect_eq(simd_act_type(G2_TYPE_Q5_0), UINT32_MAX);
    cr_expect_eq(simd_act_type(1000), UINT32_MAX);
    cr_expect_eq(simd_act_row_bytes(SIMD_TYPE_Q8_0, 8192), g2_row_size(G2_TYPE_Q8_0, 8192));
    cr_expect_eq(simd_act_row_bytes(SIMD_TYPE_Q8_K, 8192), g2_row_size(G2_TYPE_Q8_K, 8192));
    cr_expect_eq(simd_act_row_bytes(SIMD_TYPE_F32, 10), 40);
    cr_expect_eq(simd_act_row_bytes(SIMD_TYPE_Q8_K, 100), 0);
    cr_expect_eq(simd_act_row_bytes(SIMD_TYPE_Q4_0, 64), 0);
    cr_expect_null(simd_type_kernels_get(simd_kernels_scalar(), G2_TYPE_Q5_0));
    cr_expect_null(simd_type_kernels_get(simd_kernels_scalar(), 4000));
}

/* ---- dispatch --------------------------------------------------------------------------------------- */

Test(simd_dispatch, refuses_an_isa_the_cpu_lacks_and_names_what_is_missing) {
    simd_cpu_info none = {0};
    int refused = 0;
    for (const simd_kernels *const *k = simd_kernels_all(); *k; k++) {
        char msg[400];
        const simd_kernels *got = simd_kernels_choose((*k)->name, &none, msg, sizeof msg);
        if ((*k)->needs == 0) {
            cr_expect_eq(got, *k);
            continue;
        }
        cr_expect_null(got, "%s chosen on a CPU without features", (*k)->name);
        char first[40];
        simd_cpu_feature_names((*k)->needs & -(*k)->needs, first, sizeof first); /* lowest missing bit */
        cr_expect(strstr(msg, "refused") && strstr(msg, first) && strstr(msg, "scalar"), "message: %s", msg);
        refused++;
    }
    cr_log_info("%d tables refused on a featureless CPU", refused);
}

Test(simd_dispatch, refuses_unknown_and_not_built_names) {
    simd_cpu_info cpu;
    simd_cpu_detect(&cpu);
    char msg[400];
    cr_expect_null(simd_kernels_choose("avx1024", &cpu, msg, sizeof msg));
    cr_expect(strstr(msg, "unknown ISA 'avx1024'") != NULL, "%s", msg);
#if defined(__x86_64__)
    cr_expect_null(simd_kernels_choose("neon", &cpu, msg, sizeof msg));
    cr_expect(strstr(msg, "not built") != NULL, "%s", msg);
#endif
}

Test(simd_dispatch, auto_picks_the_best_runnable_table) {
    simd_cpu_info cpu;
    simd_cpu_detect(&cpu);
    const simd_kernels *best = simd_kernels_choose(NULL, &cpu, NULL, 0), *first = NULL;
    for (const simd_kernels *const *k = simd_kernels_all(); *k && !first; k++)
        if (simd_kernels_runnable(*k, &cpu)) first = *k;
    cr_expect_eq(best, first);
    cr_expect_eq(simd_kernels_choose("auto", &cpu, NULL, 0), best);
    const simd_kernels *const *all = simd_kernels_all();
    int n = 0;
    while (all[n]) n++;
    cr_expect_eq(all[n - 1], simd_kernels_scalar(), "the scalar reference is last");
}

Test(simd_dispatch, grok2_isa_forces_a_lower_table) {
    setenv("GROK2_ISA", "scalar", 1);
    cr_expect_str_eq(simd_kernels_get()->name, "scalar");
    char line[512];
    simd_describe(line, sizeof line);
    simd_cpu_info cpu;
    simd_cpu_detect(&cpu);
    bool forced = simd_kernels_choose(NULL, &cpu, NULL, 0) != simd_kernels_scalar();
    cr_expect(strstr(line, forced ? "kernels: scalar (forced" : "kernels: scalar (best") != NULL, "%s", line);
    char msg[200];
    cr_expect_eq(simd_kernels_init("scalar", msg, sizeof msg), 0, "same choice again is fine: %s", msg);
}

Test(simd_dispatch, init_refuses_a_bad_name_with_a_message) {
    char msg[400];
    cr_expect_eq(simd_kernels_init("avx1024", msg, sizeof msg), -1);
    cr_expect(strstr(msg, "--isa=avx1024") != NULL, "%s", msg);
    setenv("GROK2_ISA", "bogus", 1);
    cr_expect_eq(simd_kernels_init(NULL, msg, sizeof msg), -1);
    cr_expect(strstr(msg, "GROK2_ISA=bogus") != NULL, "%s", msg);
    unsetenv("GROK2_ISA");
    cr_expect_eq(simd_kernels_init(NULL, msg, sizeof msg), 0, "%s", msg);
    cr_expect_eq(simd_kernels_init("scalar", msg, sizeof msg), simd_kernels_get() == simd_kernels_scalar() ? 0 : -1);
}

Test(simd_dispatch, describe_names_the_features_and_the_chosen_kernels) {
    unsetenv("GROK2_ISA");
    char line[512];
    int len = simd_describe(line, sizeof line);
    cr_expect_gt(len, 0);
    cr_expect(strncmp(line, "cpu: ", 5) == 0, "%s", line);
    char want[64];
    snprintf(want, sizeof want, "kernels: %s (best", simd_kernels_get()->name);
    cr_expect(strstr(line, want) != NULL, "%s", line);
    cr_expect(strchr(line, '\n') == NULL);
    cr_log_info("%s", line);
}

#if defined(__x86_64__)
/* CPUID/XGETBV agree with GCC's own detection (which also checks the OS's XCR0). */
Test(simd_dispatch, x86_detection_agrees_with_gcc_builtin) {
    simd_cpu_info cpu;
    simd_cpu_detect(&cpu);
    __builtin_cpu_init();
    cr_expect_eq(!!(cpu.features & SIMD_CPU_AVX2), !!__builtin_cpu_supports("avx2"));
    cr_expect_eq(!!(cpu.features & SIMD_CPU_FMA), !!__builtin_cpu_supports("fma"));
    cr_expect_eq(!!(cpu.features & SIMD_CPU_AVX512F), !!__builtin_cpu_supports("avx512f"));
    cr_expect_eq(!!(cpu.features & SIMD_CPU_AVX512BW), !!__builtin_cpu_supports("avx512bw"));
    cr_expect_eq(!!(cpu.features & SIMD_CPU_AVX512VL), !!__builtin_cpu_supports("avx512vl"));
    cr_expect_eq(!!(cpu.features & SIMD_CPU_AVX512DQ), !!__builtin_cpu_supports("avx512dq"));
    cr_expect_eq(!!(cpu.features & SIMD_CPU_AVX512VNNI), !!__builtin_cpu_supports("avx512vnni"));
}
#endif

/* ---- the bench's int8 figures: present and consistent with each other (no speed asserted) ---- */

static double json_number(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItem(o, name);
    cr_assert(cJSON_IsNumber(v), "no number %s in the JSON", name);
    return v->valuedouble;
}

Test(simd_bench, kernels_json_gives_int8_rates_and_their_fraction_of_the_peak) {
    harness_result r = harness_run("%s bench --kernels --json --mb 4 --reps 1 --threads 1 --batch 3", harness_grok2());
    cr_assert_eq(r.status, 0, "bench --kernels: %s", r.err);
    cJSON *j = cJSON_Parse(r.out);
    cr_assert_not_null(j, "not JSON: %s", r.out);
    double peak = json_number(cJSON_GetObjectItem(j, "int8_peak_gops"), "all_threads");
    cr_expect_gt(peak, 0);
    const cJSON *kernel;
    int integer = 0;
    cJSON_ArrayForEach(kernel, cJSON_GetObjectItem(j, "kernels")) {
        const char *name = cJSON_GetObjectItem(kernel, "kernel")->valuestring;
        double gops = json_number(kernel, "int8_gops_all_threads"), fraction = json_number(kernel, "fraction_of_int8_peak_all");
        bool is_float = name[0] == 'f' || name[0] == 'b'; /* f32, f16, bf16 */
        if (is_float) {
            cr_expect_eq(gops, 0, "%s: float weights have no int8 rate", name);
        } else {
            integer++;
            cr_expect_gt(gops, 0, "%s", name);
            /* the JSON rounds G/s to 0.1 and the fraction to 0.001 */
            double rounding = 0.0005 + 0.05 / peak + 0.05 * gops / (peak * peak) + 1e-6;
            cr_expect_leq(fabs(fraction - gops / peak), rounding, "%s: fraction %.3f != %.1f / %.1f", name, fraction,
                          gops, peak);
        }
    }
    cr_expect_geq(integer, 14, "matvec and matmul of the 7 integer types");
    cJSON_Delete(j);
    harness_result_free(&r);
}

/* `grok2 bench -m model ARGS --json`, run and parsed (the test stops if either fails). */
static cJSON *bench_json(const char *model, const char *args) {
    harness_result r = harness_run("%s bench -m %s %s --json", harness_grok2(), model, args);
    cr_assert_eq(r.status, 0, "bench %s: %s", args, r.err);
    cJSON *j = cJSON_Parse(r.out);
    cr_assert_not_null(j, "not JSON: %s", r.out);
    harness_result_free(&r);
    return j;
}

/* A tiny q8_0 model in a fresh temporary folder: its malloc'd path (the folder is left). */
static char *tiny_model(const char *tag) {
    char *dir = harness_tmpdir(tag), *err = NULL, *path = harness_synth_tiny(dir, "q8_0", &err);
    cr_assert_not_null(path, "synth: %s", err ? err : "");
    free(dir);
    return path;
}

Test(simd_bench, pp_json_gives_the_prefill_int8_rate_against_the_peak) {
    char *model = tiny_model("bench");
    cJSON *j = bench_json(model, "-p 8 -n 2 -r 2 -t 1");
    char *text = cJSON_PrintUnformatted(j);
    double rate = json_number(j, "pp_int8_gops"), peak = json_number(j, "int8_peak_gops");
    double fraction = json_number(j, "pp_int8_fraction_of_peak");
    cr_expect_gt(rate, 0);
    cr_expect_gt(peak, 0); /* no speed is asserted: only that the figures are there and agree */
    double rounding = 0.00005 + 0.05 / peak + 0.05 * rate / (peak * peak) + 1e-6; /* %.4f and %.1f in the JSON */
    cr_expect_leq(fabs(fraction - rate / peak), rounding, "fraction %.4f != %.1f / %.1f", fraction, rate, peak);
    /* the yield is the mean of the runs' yields, each against the bandwidth measured around it:
     * near tg x bytes / the mean bandwidth (units: GB/s), with spreads that are never negative,
     * and the before / after readings' largest relative difference, between 0 and 2 */
    double tg = json_number(j, "tg_tokens_per_s"), bytes = json_number(j, "bytes_per_token");
    double bw = json_number(j, "read_bandwidth_gbps"), yield = json_number(j, "bandwidth_yield");
    cr_expect(tg > 0 && bytes > 0 && bw > 0 && yield > 0, "%s", text);
    double pooled = tg * bytes / (bw * 1e9);
    cr_expect(yield > pooled / 2 && yield < pooled * 2, "yield %.4f, tg x bytes / bandwidth %.4f", yield, pooled);
    cr_expect_geq(json_number(j, "read_bandwidth_stddev"), 0);
    double drift = json_number(j, "read_bandwidth_drift");
    cr_expect(drift >= 0 && drift <= 2, "drift %.4f: %s", drift, text);
    cr_expect_geq(json_number(j, "bandwidth_yield_stddev"), 0);
    /* the weights' page size is reported with them: mapped, the file's size, at most all of it in
     * huge pages (-1: the kernel does not say) */
    const cJSON *how = cJSON_GetObjectItemCaseSensitive(j, "weights");
    cr_expect(cJSON_IsString(how) && !strcmp(how->valuestring, "mapped"), "weights: %s", text);
    struct stat st;
    cr_assert_eq(stat(model, &st), 0);
    double weights = json_number(j, "weight_bytes"), huge = json_number(j, "weight_bytes_in_huge_pages");
    cr_expect_eq(weights, (double)st.st_size);
    cr_expect(huge == -1 || (huge >= 0 && huge <= weights), "huge pages %.0f of %.0f", huge, weights);
    cJSON_free(text);
    cJSON_Delete(j);
    /* without tg there is one bandwidth reading and no before / after pair: the drift says -1 */
    j = bench_json(model, "-p 4 -n 0 -r 1 -t 1");
    cr_expect_eq(json_number(j, "read_bandwidth_drift"), -1);
    cr_expect_gt(json_number(j, "read_bandwidth_gbps"), 0);
    cJSON_Delete(j);
    free(model);
}

/* --read-ref adds tg against read-only tokens run in between: a positive ratio and a spread that
 * is never negative; without the flag the field is absent. */
Test(simd_bench, read_ref_reports_tg_against_plain_reads) {
    char *model = tiny_model("bench-ref");
    cJSON *j = bench_json(model, "-p 0 -n 3 -r 2 -t 2 --read-ref");
    char *text = cJSON_PrintUnformatted(j);
    cr_expect_gt(json_number(j, "tg_vs_read_only"), 0, "%s", text);
    cr_expect_geq(json_number(j, "tg_vs_read_only_stddev"), 0, "%s", text);
    cr_expect_gt(json_number(j, "tg_tokens_per_s"), 0, "%s", text);
    cJSON_free(text);
    cJSON_Delete(j);
    harness_result r = harness_run("%s bench -m %s -p 0 -n 2 -r 1 -t 1 --read-ref", harness_grok2(), model);
    cr_assert_eq(r.status, 0, "bench --read-ref: %s", r.err);
    cr_expect(strstr(r.out, "tg / read-only"), "%s", r.out);
    harness_result_free(&r);
    j = bench_json(model, "-p 0 -n 2 -r 1 -t 1");
    cr_expect_null(cJSON_GetObjectItem(j, "tg_vs_read_only"), "the field without --read-ref");
    cJSON_Delete(j);
    free(model);
}

/* --cols sets the row length (the mini preset's rows are 2048 weights, Grok-2's 8192): the run
 * reports it and every kernel streams something; a length off the 256-weight blocks is refused. */
Test(simd_bench, kernels_take_a_row_length_and_refuse_a_bad_one) {
    harness_result r =
        harness_run("%s bench --kernels --json --mb 4 --reps 1 --threads 1 --batch 2 --cols 2048", harness_grok2());
    cr_assert_eq(r.status, 0, "bench --kernels --cols 2048: %s", r.err);
    cJSON *j = cJSON_Parse(r.out);
    cr_assert_not_null(j, "not JSON: %s", r.out);
    cr_expect_eq(json_number(j, "columns"), 2048);
    const cJSON *kernel;
    int kernels = 0;
    cJSON_ArrayForEach(kernel, cJSON_GetObjectItem(j, "kernels")) {
        kernels++;
        cr_expect_gt(json_number(kernel, "gbps_one_thread"), 0, "%s", cJSON_GetObjectItem(kernel, "kernel")->valuestring);
    }
    cr_expect_gt(kernels, 0);
    cJSON_Delete(j);
    harness_result_free(&r);
    const char *bad[] = {"100", "0", "70000", "x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = harness_run("%s bench --kernels --mb 4 --reps 1 --threads 1 --cols %s", harness_grok2(), bad[i]);
        cr_expect_eq(r.status, 2, "--cols %s: status %d", bad[i], r.status);
        cr_expect(strstr(r.err, "--cols"), "--cols %s: %s", bad[i], r.err);
        harness_result_free(&r);
    }
}

/* Every numeric option of --kernels takes a whole number and names itself when it gets none:
 * "0.25" or "abc" used to read as 0 (the default size) and run. */
Test(simd_bench, kernels_refuse_numbers_that_are_not_whole) {
    const char *cases[][2] = {{"--mb", "0.25"}, {"--mb", "abc"}, {"--threads", "-1"}, {"--reps", "2x"},
                              {"--batch", ""},  {"--mb", "99999999"}, {"--reps", "0"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        harness_result r = harness_run("%s bench --kernels --threads 1 %s '%s'", harness_grok2(), cases[i][0], cases[i][1]);
        cr_expect_eq(r.status, 2, "%s '%s': status %d", cases[i][0], cases[i][1], r.status);
        cr_expect(strstr(r.err, cases[i][0]), "%s '%s': %s", cases[i][0], cases[i][1], r.err);
        harness_result_free(&r);
    }
}

/* The prefill GEMM back-ends (runtime/gemm.c, --gemm): the row decoders against quant/'s
 * to_float bit for bit on every kernel table the CPU runs, each back-end's rows against a
 * double-precision product within the error bound of its arithmetic, and the flag on the CLI. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/runtime.h"
#include "harness.h"

static const uint32_t decoded_types[] = {G2_TYPE_F32,  G2_TYPE_F16,  G2_TYPE_BF16, G2_TYPE_Q4_0,   G2_TYPE_Q4_1,
                                         G2_TYPE_Q8_0, G2_TYPE_Q4_K, G2_TYPE_Q5_K, G2_TYPE_Q6_K, G2_TYPE_IQ4_NL};
#define N_TYPES (sizeof decoded_types / sizeof decoded_types[0])

/* Deterministic values in [-1, 1) with a few larger ones, as weights have. */
static void fill(float *x, int64_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = (float)((double)(s >> 11) / (double)(1ull << 53) * 2 - 1);
        if (i % 97 == 5) x[i] *= 6;
    }
}

/* rows x cols weights of type, quantized from random values. */
static uint8_t *make_weights(uint32_t type, int64_t rows, int64_t cols, weight_matrix *w) {
    float *src = malloc((size_t)(rows * cols) * sizeof(float));
    fill(src, rows * cols, type + 1);
    size_t row_bytes = g2_row_size(type, cols);
    uint8_t *data = malloc(row_bytes * (size_t)rows);
    size_t bytes = g2_quantize_rows(type, src, data, rows, cols, NULL);
    cr_assert(bytes == row_bytes * (size_t)rows, "quantize type %u", type);
    free(src);
    *w = (weight_matrix){type, data, rows, cols, row_bytes};
    return data;
}

Test(gemm, decoders_give_to_float_values_on_every_runnable_kernel_table) {
    simd_cpu_info cpu;
    simd_cpu_detect(&cpu);
    const int64_t cols = 1024;
    float *ref = malloc(cols * sizeof(float)), *got = malloc(cols * sizeof(float));
    uint16_t *got16 = malloc(cols * sizeof(uint16_t));
    int tables = 0;
    for (const simd_kernels *const *k = simd_kernels_all(); *k; k++) {
        if (!simd_kernels_runnable(*k, &cpu)) continue;
        tables++;
        for (size_t t = 0; t < N_TYPES; t++) {
            weight_matrix w;
            uint8_t *data = make_weights(decoded_types[t], 3, cols, &w);
            for (int64_t r = 0; r < 3; r++) {
                const uint8_t *row = data + (size_t)r * w.row_bytes;
                g2_type_get(w.type)->to_float(row, ref, cols);
                cr_assert_eq(gemm_decode_row(*k, w.type, row, got, cols, false), 0);
                cr_assert_eq(gemm_decode_row(*k, w.type, row, got16, cols, true), 0);
                for (int64_t i = 0; i < cols; i++) {
                    cr_assert(memcmp(&ref[i], &got[i], sizeof(float)) == 0, "%s on %s: value %lld is %a, to_float %a",
                              g2_type_get(w.type)->name, (*k)->name, (long long)i, got[i], ref[i]);
                    cr_assert_eq(got16[i], g2_f32_to_bf16(ref[i]), "%s on %s: bf16 value %lld",
                                 g2_type_get(w.type)->name, (*k)->name, (long long)i);
                }
            }
            free(data);
        }
    }
    cr_expect_geq(tables, 1);
    cr_expect_eq(gemm_decode_row(simd_kernels_scalar(), G2_TYPE_Q8_K + 100, got, got, 32, false), -1);
    free(ref);
    free(got);
    free(got16);
}

/* y from gemm_rows over two row ranges (with sentinels around and between them) against the
 * product in double. Bound per output: A = sum |w_i x_i|; f32 GEMMs round each product and sum
 * (|err| <= k u A, u = 2^-24, any order); bf16 GEMMs also round w and x to 8 mantissa bits
 * (relative 2^-9 each, so 2^-8 + 2^-18 per product). */
static void check_backend(gemm_backend backend, const simd_kernels *kernels) {
    const int64_t rows = 300, cols = 512; /* more rows than one tile; cols fits every block */
    const int64_t batches[] = {2, 17, 64};
    gemm_state *g = NULL;
    g2_error err;
    cr_assert_eq(gemm_new(&g, backend, kernels, 2, 64, cols, &err), 0, "%s", err.msg);
    cr_assert(g, "a %s state", gemm_backend_name(backend));
    cr_expect_eq(gemm_state_backend(g), backend);
    float *x = malloc(64 * cols * sizeof(float)), *y = malloc(64 * rows * sizeof(float));
    float *wrow = malloc(cols * sizeof(float));
    fill(x, 64 * cols, 99);
    uint64_t id = 1;
    for (size_t t = 0; t < N_TYPES; t++) {
        weight_matrix w;
        uint8_t *data = make_weights(decoded_types[t], rows, cols, &w);
        cr_assert(gemm_takes(g, w.type));
        /* oneDNN may round block types' GEMMs to bf16 (where the CPU has it); nothing else does */
        bool bf16 = backend == GEMM_ONEDNN && g2_type_get(w.type)->block_size > 1;
        for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
            int64_t n = batches[b];
            for (int64_t i = 0; i < n * rows; i++) y[i] = 12345.0f;
            gemm_prepare(g, w.type, x, n, cols, id++);
            gemm_rows(g, 1, &w, data, 3, 150, x, n, y);   /* two tasks, on two threads' scratch */
            gemm_rows(g, 0, &w, data, 152, rows - 5, x, n, y);
            double worst = 0;
            for (int64_t r = 0; r < rows; r++) {
                bool inside = (r >= 3 && r < 150) || (r >= 152 && r < rows - 5);
                g2_type_get(w.type)->to_float(data + (size_t)r * w.row_bytes, wrow, cols);
                for (int64_t tok = 0; tok < n; tok++) {
                    float got = y[tok * rows + r];
                    if (!inside) {
                        cr_assert_eq(got, 12345.0f, "%s: row %lld outside the ranges was written",
                                     gemm_backend_name(backend), (long long)r);
                        continue;
                    }
                    double exact = 0, a = 0;
                    for (int64_t i = 0; i < cols; i++) {
                        exact += (double)wrow[i] * x[tok * cols + i];
                        a += fabs((double)wrow[i] * x[tok * cols + i]);
                    }
                    double bound = (double)cols * 0x1p-24 * a + (bf16 ? (0x1p-8 + 0x1p-18) * a : 0) + 1e-30;
                    double e = fabs(got - exact) / bound;
                    if (e > worst) worst = e;
                    cr_assert(fabs(got - exact) <= bound, "%s %s n=%lld row %lld token %lld: %.9g vs %.9g (bound %.3g)",
                              gemm_backend_name(backend), g2_type_get(w.type)->name, (long long)n, (long long)r,
                              (long long)tok, got, exact, bound);
                }
            }
            cr_log_info("%s %s n=%lld: worst error %.3g of the bound", gemm_backend_name(backend),
                        g2_type_get(w.type)->name, (long long)n, worst);
        }
        free(data);
    }
    gemm_free(g);
    free(x);
    free(y);
    free(wrow);
}

Test(gemm, every_available_backend_multiplies_within_its_bound) {
    simd_cpu_info cpu;
    simd_cpu_detect(&cpu);
    const gemm_backend backends[] = {GEMM_OPENBLAS, GEMM_ONEDNN};
    int ran = 0;
    for (size_t b = 0; b < 2; b++) {
        g2_error why;
        if (gemm_backend_available(backends[b], &why)) {
            cr_log_warn("%s", why.msg);
            continue;
        }
        /* the best table (AVX-512 decoders where the CPU has them) and the scalar one */
        check_backend(backends[b], simd_kernels_choose(NULL, &cpu, NULL, 0));
        check_backend(backends[b], simd_kernels_scalar());
        ran++;
    }
    cr_log_info("%d back-ends checked", ran);
}

Test(gemm, names_parse_and_native_needs_no_state) {
    const char *names[] = {"auto", "native", "openblas", "onednn"};
    for (size_t i = 0; i < 4; i++) {
        gemm_backend b;
        cr_assert_eq(gemm_backend_parse(names[i], &b), 0, "%s", names[i]);
        cr_expect_str_eq(gemm_backend_name(b), names[i]);
    }
    gemm_backend b = GEMM_NATIVE;
    cr_expect_eq(gemm_backend_parse("blas", &b), -1);
    cr_expect_eq(gemm_backend_parse("", &b), -1);
    cr_expect_eq(gemm_backend_parse("Native", &b), -1);
    gemm_state *g = (gemm_state *)&b;
    g2_error err;
    cr_expect_eq(gemm_new(&g, GEMM_NATIVE, simd_kernels_scalar(), 2, 64, 256, &err), 0);
    cr_expect_null(g);
    cr_expect_not(gemm_takes(NULL, G2_TYPE_Q4_K));
    cr_expect_eq(gemm_state_backend(NULL), GEMM_NATIVE);
    gemm_backend d = gemm_backend_default();
    cr_expect(d == GEMM_NATIVE || d == GEMM_ONEDNN || d == GEMM_OPENBLAS);
    cr_expect_eq(gemm_backend_available(d, &err), 0, "the default must run: %s", err.msg);
}

/* AUTO's state takes exactly the types gemm_auto_backend gives its library back-end, and
 * `grok2 info --cpu` names each type under that choice. */
Test(gemm, auto_takes_the_types_it_reports) {
    simd_cpu_info cpu;
    simd_cpu_detect(&cpu);
    gemm_state *g = NULL;
    g2_error err;
    cr_assert_eq(gemm_new(&g, GEMM_AUTO, simd_kernels_choose(NULL, &cpu, NULL, 0), 2, 64, 512, &err), 0, "%s",
                 err.msg);
    cr_expect_eq(gemm_state_backend(g), gemm_backend_default());
    harness_result info = harness_run("%s info --cpu", harness_grok2());
    cr_assert_eq(info.status, 0, "%s", info.err);
    const char *line = strstr(info.out, "gemm auto: ");
    cr_assert(line, "%s", info.out);
    char *end = strchr(line, '\n'), *semicolon = strstr(line, "; native for ");
    cr_assert(end);
    for (size_t t = 0; t < N_TYPES; t++) {
        uint32_t type = decoded_types[t];
        gemm_backend chosen = gemm_auto_backend(type);
        cr_expect(chosen == GEMM_NATIVE || chosen == gemm_backend_default(), "%s", g2_type_get(type)->name);
        cr_expect_eq(gemm_takes(g, type), chosen != GEMM_NATIVE, "auto %s takes %s: %d", gemm_backend_name(chosen),
                     g2_type_get(type)->name, gemm_takes(g, type));
        /* " name" followed by a space, ';' or the end of the line, in the part of its back-end */
        char word[32];
        snprintf(word, sizeof word, " %s", g2_type_get(type)->name);
        const char *from = chosen == GEMM_NATIVE && semicolon ? semicolon : line;
        const char *to = chosen == GEMM_NATIVE || !semicolon ? end : semicolon;
        bool listed = false;
        for (const char *at = from; (at = strstr(at, word)) && at < to; at++) {
            char after = at[strlen(word)];
            listed |= after == ' ' || after == ';' || after == '\n';
        }
        cr_expect(listed || gemm_backend_default() == GEMM_NATIVE, "%s not under %s in: %.*s",
                  word + 1, gemm_backend_name(chosen), (int)(end - line), line);
    }
    harness_result_free(&info);
    gemm_free(g);
}

/* ---- OpenBLAS's threads ---------------------------------------------------------------------- */

static int threads_of_this_process(void) {
    DIR *d = opendir("/proc/self/task");
    cr_assert(d, "/proc/self/task");
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static bool openblas_is_loaded(void) {
    char *maps = harness_read_file("/proc/self/maps", NULL);
    cr_assert(maps, "/proc/self/maps");
    bool loaded = strstr(maps, "libopenblas") != NULL;
    free(maps);
    return loaded;
}

/* Debian's pthreads OpenBLAS starts idle workers when it is loaded: the other back-ends never
 * load it, and --gemm openblas loads it with no worker at all (one multiply runs on each). */
Test(gemm, only_openblas_loads_openblas_and_it_starts_no_threads) {
    simd_cpu_info cpu;
    simd_cpu_detect(&cpu);
    const simd_kernels *best = simd_kernels_choose(NULL, &cpu, NULL, 0);
    int threads = threads_of_this_process();
    cr_assert_not(openblas_is_loaded(), "OpenBLAS is loaded before any back-end was chosen");
    const gemm_backend others[] = {GEMM_AUTO, GEMM_NATIVE, GEMM_ONEDNN};
    for (size_t b = 0; b < 3; b++) {
        g2_error why;
        if (gemm_backend_available(others[b], &why)) continue;
        if (others[b] == GEMM_ONEDNN) check_backend(GEMM_ONEDNN, best);
        gemm_state *g = NULL;
        cr_assert_eq(gemm_new(&g, others[b], best, 2, 64, 512, &why), 0, "%s", why.msg);
        gemm_free(g);
        cr_expect_not(openblas_is_loaded(), "--gemm %s loaded OpenBLAS", gemm_backend_name(others[b]));
        cr_expect_eq(threads_of_this_process(), threads, "--gemm %s left threads behind",
                     gemm_backend_name(others[b]));
    }
    g2_error why;
    if (gemm_backend_available(GEMM_OPENBLAS, &why)) {
        cr_log_warn("%s", why.msg);
        return;
    }
    cr_expect(openblas_is_loaded());
    check_backend(GEMM_OPENBLAS, best);
    cr_expect_eq(threads_of_this_process(), threads, "OpenBLAS started %d threads",
                 threads_of_this_process() - threads);
}

/* ---- the flag on the command line ------------------------------------------------------------ */

static char *cli_dir;
static char model[600], model_f32[600], tokens[600];

static void make_models(void) {
    cli_dir = harness_tmpdir("gemm-cli");
    snprintf(model, sizeof model, "%s/tiny-q4_k_m.gguf", cli_dir);
    snprintf(model_f32, sizeof model_f32, "%s/tiny-f32.gguf", cli_dir);
    snprintf(tokens, sizeof tokens, "%s/tokens.txt", cli_dir);
    harness_result r = harness_run("%s synth tiny --gguf q4_k_m -o %s --seed 5 && "
                                   "%s synth tiny --gguf f32 -o %s --seed 5",
                                   harness_grok2(), model, harness_grok2(), model_f32);
    cr_assert_eq(r.status, 0, "synth: %s", r.err);
    harness_result_free(&r);
    FILE *f = fopen(tokens, "w");
    cr_assert(f);
    for (int i = 0; i < 80; i++) fprintf(f, "%s%d", i ? "," : "", (i * 37 + 11) % 256);
    fclose(f);
}

TestSuite(gemm_cli, .init = make_models);

Test(gemm_cli, every_model_command_lists_and_checks_the_flag) {
    const char *commands[] = {"logits", "run", "chat", "perplexity", "bench"};
    for (size_t c = 0; c < 5; c++) {
        harness_result h = harness_run("%s %s --help", harness_grok2(), commands[c]);
        cr_expect_eq(h.status, 0, "%s --help: %s", commands[c], h.err);
        cr_expect(strstr(h.out, "--gemm NAME") && strstr(h.out, "openblas, onednn"), "%s --help:\n%s", commands[c],
                  h.out);
        harness_result_free(&h);
        harness_result r = harness_run("%s %s -m %s --gemm blas", harness_grok2(), commands[c], model);
        cr_expect_neq(r.status, 0, "%s took --gemm blas", commands[c]);
        char want[160];
        snprintf(want, sizeof want, "grok2 %s: --gemm is auto, native, openblas or onednn, not 'blas'", commands[c]);
        cr_expect(!strncmp(r.err, want, strlen(want)), "%s: the first line should say why: %s", commands[c], r.err);
        harness_result_free(&r);
    }
}

static double max_rel_diff(const char *a_text, const char *b_text) {
    double worst = 0;
    const char *a = strstr(a_text, " logits "), *b = strstr(b_text, " logits ");
    while (a && b) {
        char *ea, *eb;
        double max_abs = 0, diff = 0;
        a += 8, b += 8;
        for (;;) {
            double va = strtod(a, &ea), vb = strtod(b, &eb);
            if (ea == a || eb == b) break;
            max_abs = fmax(max_abs, fabs(vb));
            diff = fmax(diff, fabs(va - vb));
            a = ea, b = eb;
        }
        worst = fmax(worst, diff / max_abs);
        a = strstr(a, " logits "), b = strstr(b, " logits ");
    }
    return worst;
}

/* logits, run and bench run on each back-end; on the f32 file every back-end gives native's
 * logits to float rounding (the oracle test covers the quantized files). */
Test(gemm_cli, every_available_backend_runs_and_agrees_on_f32) {
    harness_result native = harness_run("%s logits -m %s --tokens @%s --all --gemm native --kv-type f32",
                                        harness_grok2(), model_f32, tokens);
    cr_assert_eq(native.status, 0, "%s", native.err);
    const char *names[] = {"openblas", "onednn"};
    for (size_t i = 0; i < 2; i++) {
        gemm_backend b;
        g2_error why;
        cr_assert_eq(gemm_backend_parse(names[i], &b), 0);
        if (gemm_backend_available(b, &why)) {
            harness_result r = harness_run("%s logits -m %s --tokens 1,2 --gemm %s", harness_grok2(), model, names[i]);
            cr_expect_neq(r.status, 0);
            cr_expect(strstr(r.err, why.msg), "%s", r.err);
            harness_result_free(&r);
            continue;
        }
        harness_result l = harness_run("%s logits -m %s --tokens @%s --all --gemm %s --kv-type f32", harness_grok2(),
                                       model_f32, tokens, names[i]);
        cr_assert_eq(l.status, 0, "%s", l.err);
        double d = max_rel_diff(l.out, native.out);
        cr_log_info("f32 logits, %s vs native: %.3g of the largest", names[i], d);
        cr_expect_lt(d, 1e-4, "--gemm %s: f32 logits differ from native by %.3g of the largest", names[i], d);
        harness_result_free(&l);
        harness_result r = harness_run("%s run -m %s -p 'Hello there, how are you' -n 4 --temp 0 --gemm %s",
                                       harness_grok2(), model, names[i]);
        cr_expect_eq(r.status, 0, "run --gemm %s: %s", names[i], r.err);
        harness_result_free(&r);
        harness_result bench =
            harness_run("%s bench -m %s -p 40 -n 2 -r 1 --gemm %s", harness_grok2(), model, names[i]);
        cr_expect_eq(bench.status, 0, "bench --gemm %s: %s", names[i], bench.err);
        cr_expect(strstr(bench.out, "pp40"), "%s", bench.out);
        harness_result_free(&bench);
    }
    harness_result_free(&native);
}

/* The same end to end: ld.so names every library it loads (LD_DEBUG=libs); a run loads OpenBLAS
 * only with --gemm openblas. */
Test(gemm_cli, only_an_openblas_run_loads_openblas) {
    const char *names[] = {"auto", "native", "onednn", "openblas"};
    for (size_t i = 0; i < 4; i++) {
        gemm_backend b;
        g2_error why;
        cr_assert_eq(gemm_backend_parse(names[i], &b), 0);
        if (gemm_backend_available(b, &why)) continue;
        harness_result r = harness_run("LD_DEBUG=libs %s run -m %s -p 'Hello there, how are you' -n 2 --temp 0 --gemm %s",
                                       harness_grok2(), model, names[i]);
        cr_expect_eq(r.status, 0, "run --gemm %s: %s", names[i], r.err);
        bool loaded = strstr(r.err, "libopenblas") != NULL;
        cr_expect_eq(loaded, b == GEMM_OPENBLAS, "run --gemm %s: OpenBLAS %s", names[i],
                     loaded ? "loaded" : "not loaded");
        harness_result_free(&r);
    }
}

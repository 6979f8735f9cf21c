/* Experts from the mapping (runtime/experts.c): the advice and the cache bound never change a
 * logit, the counters add up, `grok2 profile` writes sums that match, a file truncated under a
 * running model gives one clear line instead of a crash, bad flag values are named. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../runtime/runtime.h"
#include "harness.h"

static char *model_dir;
static char model[600];
#define TOKENS "5,17,200,3,99,411,12,7,300,42,1,250,8,64,128,33,90"

/* tiny: 2 layers, 4 experts, top-2 */
static void make_model(void) {
    model_dir = harness_tmpdir("experts");
    snprintf(model, sizeof model, "%s/tiny-q8_0.gguf", model_dir);
    harness_result r = harness_run("%s synth tiny --gguf q8_0 -o %s --seed 3", harness_grok2(), model);
    cr_assert_eq(r.status, 0, "synth: %s", r.err);
    harness_result_free(&r);
}

TestSuite(experts, .init = make_model);

static char *logits_with(const char *flags) {
    harness_result r =
        harness_run("%s logits -m %s --tokens " TOKENS " --all --batch 5 -t 2 %s", harness_grok2(), model, flags);
    cr_assert_eq(r.status, 0, "logits %s: %s", flags, r.err);
    free(r.err);
    return r.out;
}

Test(experts, prefetch_modes_cache_bound_and_mlock_give_identical_logits) {
    char *base = logits_with("--prefetch off");
    cr_assert_gt(strlen(base), 1000);
    const char *variants[] = {"--prefetch chosen", "--prefetch next", "", "--prefetch next --expert-cache-mb 1",
                              "--prefetch off --expert-cache-mb 1", "--mlock-dense --prefetch next"};
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        char *other = logits_with(variants[i]);
        cr_expect_str_eq(other, base, "logits with '%s' differ from --prefetch off", variants[i]);
        free(other);
    }
    free(base);
}

/* The "N tokens evaluated" count and the per-layer usage rows of run --stats. */
static void parse_stats(const char *err, unsigned long long *tokens, unsigned long long usage[2][4]) {
    const char *line = strstr(err, "stats: ");
    cr_assert(line && (line = strstr(line, "tokens evaluated")), "%s", err);
    while (line > err && line[-1] != ':') line--;
    cr_assert_eq(sscanf(line, " %llu tokens evaluated", tokens), 1, "%s", err);
    for (int l = 0; l < 2; l++) {
        char label[32];
        snprintf(label, sizeof label, "layer %3d:", l);
        const char *row = strstr(err, label);
        cr_assert(row, "no '%s' in %s", label, err);
        cr_assert_eq(sscanf(row + strlen(label), "%llu %llu %llu %llu", &usage[l][0], &usage[l][1], &usage[l][2],
                            &usage[l][3]),
                     4, "%s", row);
    }
}

Test(experts, run_stats_counters_add_up) {
    harness_result r = harness_run("%s run -m %s -p 'The quick brown fox' -n 9 --temp 0 --stats --prefetch next",
                                   harness_grok2(), model);
    cr_assert_eq(r.status, 0, "%s", r.err);
    unsigned long long tokens, usage[2][4];
    parse_stats(r.err, &tokens, usage);
    cr_expect_gt(tokens, 9);
    for (int l = 0; l < 2; l++)
        cr_expect_eq(usage[l][0] + usage[l][1] + usage[l][2] + usage[l][3], tokens * 2,
                     "layer %d: usage must sum to tokens x experts used", l);
    /* every choice of layer 1 was guessed from layer 0 */
    unsigned long long hits, choices;
    const char *guess = strstr(r.err, "next-layer guesses: ");
    cr_assert(guess, "%s", r.err);
    cr_assert_eq(sscanf(guess, "next-layer guesses: %llu of %llu", &hits, &choices), 2, "%s", guess);
    cr_expect_eq(choices, tokens * 2);
    cr_expect_leq(hits, choices);
    cr_expect(strstr(r.err, "generation 8 tokens:"), "the last of 9 generated tokens is not evaluated: %s", r.err);
    cr_expect(strstr(r.err, "MB read from disk/token") || strstr(r.err, "disk reads unavailable"), "%s", r.err);
    cr_expect(strstr(r.err, "resident now: "), "%s", r.err);
    harness_result_free(&r);
}

Test(experts, cache_bound_evicts_and_stays_within_its_bound) {
    /* a tiny expert (three 512 x 256 q8_0 slabs) is 0.41 MiB: 1 MiB holds two */
    harness_result r = harness_run("%s run -m %s -p 'Hello there' -n 12 --temp 0 --stats --expert-cache-mb 1",
                                   harness_grok2(), model);
    cr_assert_eq(r.status, 0, "%s", r.err);
    double held;
    unsigned long long evictions;
    const char *line = strstr(r.err, "expert cache ");
    cr_assert(line, "%s", r.err);
    cr_assert_eq(sscanf(line, "expert cache %lf of 1 MiB, %llu evictions", &held, &evictions), 2, "%s", line);
    cr_expect_gt(evictions, 0);
    cr_expect_leq(held, 1.0, "after a decode step (2 experts per layer) the bound holds: %s", line);
    harness_result_free(&r);
}

Test(experts, cache_bound_pages_out_beside_locked_weights) {
    /* the slabs' edge pages are shared with locked tensors: eviction must still reach the rest */
    harness_result fs = harness_run("stat -f -c %%T %s", model_dir);
    bool tmpfs = strstr(fs.out, "tmpfs") != NULL;
    harness_result_free(&fs);
    if (tmpfs) cr_skip_test("%s is on tmpfs: without swap nothing can be paged out", model_dir);
    harness_result r = harness_run("%s run -m %s -p 'Hello there' -n 12 --temp 0 --stats --expert-cache-mb 1 "
                                   "--mlock-dense --prefetch chosen",
                                   harness_grok2(), model);
    cr_assert_eq(r.status, 0, "%s", r.err);
    double experts, always_on;
    const char *line = strstr(r.err, "resident now: ");
    cr_assert(line, "%s", r.err);
    cr_assert_eq(sscanf(line, "resident now: %lf%% of the expert slabs, %lf%%", &experts, &always_on), 2, "%s", line);
    /* 8 slabs of 0.41 MiB, at most 1 MiB kept (plus edge pages) */
    cr_expect_lt(experts, 60.0, "the bound was not applied: %s", line);
    harness_result_free(&r);
}

Test(experts, profile_json_parses_and_sums_to_tokens_times_experts_used) {
    char text[700], out[700];
    snprintf(text, sizeof text, "%s/profile.txt", model_dir);
    snprintf(out, sizeof out, "%s/heat.json", model_dir);
    FILE *f = fopen(text, "w");
    cr_assert(f);
    for (int i = 0; i < 20; i++) /* no newline at the end: the shell's $(cat) would drop it */
        fprintf(f, "%sThe quick brown fox jumps over the lazy dog %d times.", i ? "\n" : "", i);
    fclose(f);
    harness_result tok = harness_run("%s tokenize -m %s --ids \"$(cat %s)\"", harness_grok2(), model, text);
    cr_assert_eq(tok.status, 0, "%s", tok.err);
    unsigned long long n_tokens = 1;
    for (const char *c = tok.out; *c; c++) n_tokens += *c == ',';
    harness_result_free(&tok);

    harness_result r = harness_run("%s profile -m %s -f %s -o %s --ctx 50 --prefetch next", harness_grok2(), model,
                                   text, out);
    cr_assert_eq(r.status, 0, "%s", r.err);
    harness_result_free(&r);
    char *json_text = harness_read_file(out, NULL);
    cr_assert(json_text, "no %s", out);
    cJSON *root = cJSON_Parse(json_text);
    cr_assert(root, "not JSON: %s", json_text);
    cr_expect_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(root, "model")), model);
    double tokens = cJSON_GetNumberValue(cJSON_GetObjectItem(root, "tokens"));
    cr_expect_eq((unsigned long long)tokens, n_tokens, "profile counted %g tokens, tokenize %llu", tokens, n_tokens);
    cr_expect_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(root, "expert_count")), 4);
    cr_expect_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(root, "expert_used_count")), 2);
    cJSON *layers = cJSON_GetObjectItem(root, "layers");
    cr_assert_eq(cJSON_GetArraySize(layers), 2);
    for (int l = 0; l < 2; l++) {
        cJSON *layer = cJSON_GetArrayItem(layers, l);
        cr_expect_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(layer, "layer")), l);
        cJSON *counts = cJSON_GetObjectItem(layer, "counts");
        cr_assert_eq(cJSON_GetArraySize(counts), 4);
        double sum = 0;
        for (int e = 0; e < 4; e++) sum += cJSON_GetNumberValue(cJSON_GetArrayItem(counts, e));
        cr_expect_eq(sum, tokens * 2, "layer %d sums to %g, not tokens x 2", l, sum);
    }
    cJSON_Delete(root);
    free(json_text);
}

Test(experts, a_file_truncated_under_the_model_gives_one_clear_line_and_status_1) {
    char copy[700];
    snprintf(copy, sizeof copy, "%s/truncated.gguf", model_dir);
    harness_result cp = harness_run("cp %s %s", model, copy);
    cr_assert_eq(cp.status, 0, "%s", cp.err);
    harness_result_free(&cp);
    int pipe_fds[2];
    cr_assert_eq(pipe(pipe_fds), 0);
    fflush(NULL);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        dup2(pipe_fds[1], STDERR_FILENO);
        close(pipe_fds[0]);
        grok_model *m;
        grok_context *ctx;
        g2_error err;
        grok_context_params p = {.n_ctx = 8, .n_threads = 1};
        if (grok_model_load(&m, copy, &err) || grok_context_new(&ctx, m, &p, &err)) _exit(3);
        if (truncate(copy, (off_t)gguf_data_offset(m->file))) _exit(4); /* every weight gone */
        int32_t token = 1;
        float *logits = malloc(sizeof(float) * m->hp.n_vocab);
        grok_eval(ctx, &token, 1, 0, logits, false, &err);
        _exit(5); /* not reached: reading a lost page must end the process */
    }
    close(pipe_fds[1]);
    char text[1024] = "";
    size_t got = 0;
    ssize_t n;
    while (got < sizeof text - 1 && (n = read(pipe_fds[0], text + got, sizeof text - 1 - got)) > 0) got += (size_t)n;
    text[got] = 0;
    close(pipe_fds[0]);
    int status;
    cr_assert_eq(waitpid(child, &status, 0), child);
    cr_assert(WIFEXITED(status), "killed by signal %d instead of exiting", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    cr_expect_eq(WEXITSTATUS(status), 1, "exit %d, stderr: %s", WEXITSTATUS(status), text);
    char expected[800];
    snprintf(expected, sizeof expected, "grok2: read error in %s at offset ", copy);
    cr_expect(!strncmp(text, expected, strlen(expected)), "stderr: %s", text);
    cr_expect(strstr(text, " (file truncated or disk failed)\n"), "stderr: %s", text);
    cr_expect_eq(harness_count_lines(text), 1, "one line: %s", text);
}

Test(experts, mlock_dense_refused_is_a_warning_not_a_failure) {
#ifdef __SANITIZE_ADDRESS__
    cr_skip_test("AddressSanitizer turns mlock into a no-op that succeeds: nothing to refuse");
#endif
    /* root holds CAP_IPC_LOCK, which ignores RLIMIT_MEMLOCK: drop it from the bounding set */
    harness_result r = harness_run(
        "ulimit -l 64 && if [ \"$(id -u)\" = 0 ]; then command -v setpriv >/dev/null || exit 77; "
        "exec setpriv --bounding-set=-ipc_lock %s run -m %s -p Hi -n 3 --temp 0 --mlock-dense; "
        "else exec %s run -m %s -p Hi -n 3 --temp 0 --mlock-dense; fi",
        harness_grok2(), model, harness_grok2(), model);
    if (r.status == 77) {
        harness_result_free(&r);
        cr_skip_test("running as root without setpriv: cannot drop CAP_IPC_LOCK to meet a small RLIMIT_MEMLOCK");
    }
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.err, "grok2: warning: --mlock-dense: cannot lock the "), "%s", r.err);
    cr_expect(strstr(r.err, "RLIMIT_MEMLOCK is 64 KiB"), "%s", r.err);
    cr_expect(strstr(r.err, "tokens/s"), "the run goes on: %s", r.err);
    harness_result_free(&r);
}

Test(experts, bad_flag_values_are_named) {
    static const struct {
        const char *command, *flags, *message;
    } cases[] = {
        {"run", "-p Hi --prefetch sometimes", "grok2 run: --prefetch is auto, off, chosen or next, not 'sometimes'"},
        {"logits", "--tokens 1 --prefetch NEXT", "grok2 logits: --prefetch is auto, off, chosen or next, not 'NEXT'"},
        {"bench", "--expert-cache-mb -5", "grok2 bench: --expert-cache-mb wants a non-negative integer, got '-5'"},
        {"perplexity", "-f x --expert-cache-mb lots",
         "grok2 perplexity: --expert-cache-mb wants a non-negative integer, got 'lots'"},
        {"chat", "--prefetch", "grok2 chat: missing value for '--prefetch'"},
        {"profile", "-f x -o y --prefetch all", "grok2 profile: --prefetch is auto, off, chosen or next, not 'all'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        harness_result r = harness_run("%s %s -m %s %s", harness_grok2(), cases[i].command, model, cases[i].flags);
        cr_expect_eq(r.status, 2, "%s %s: exit %d", cases[i].command, cases[i].flags, r.status);
        cr_expect(strstr(r.err, cases[i].message), "%s %s: %s", cases[i].command, cases[i].flags, r.err);
        harness_result_free(&r);
    }
}

Test(experts, every_model_command_documents_the_expert_flags) {
    const char *commands[] = {"run", "chat", "logits", "perplexity", "bench", "profile"};
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        harness_result r = harness_run("%s %s --help", harness_grok2(), commands[i]);
        cr_expect_eq(r.status, 0);
        cr_expect(strstr(r.out, "--prefetch MODE") && strstr(r.out, "--mlock-dense") &&
                      strstr(r.out, "--expert-cache-mb N"),
                  "%s --help: %s", commands[i], r.out);
        harness_result_free(&r);
    }
}

Test(experts, auto_prefetch_advises_only_a_file_larger_than_memory) {
    uint64_t gib = 1ull << 30;
    cr_assert_eq(prefetch_auto_mode(150 * gib, 768 * gib), PREFETCH_OFF);
    cr_assert_eq(prefetch_auto_mode(150 * gib, 128 * gib), PREFETCH_CHOSEN);
    cr_assert_eq(prefetch_auto_mode(90 * gib, 100 * gib), PREFETCH_OFF);  /* 90%: still fits */
    cr_assert_eq(prefetch_auto_mode(91 * gib, 100 * gib), PREFETCH_CHOSEN);
    uint64_t machine = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t mine = memory_for_process();
    cr_assert(mine > 0 && mine <= machine, "memory for this process: %llu of %llu", (unsigned long long)mine,
              (unsigned long long)machine);
}

/* A decode token runs the dense MLP and its chosen experts in two shared passes of the pool
 * (gate/up pairs with GELU fused, then the down projections): the same logits, bit for bit, as
 * the separate passes a batch takes, at any thread count (tasks cut rows differently). */
static float *decode_logits(const grok_model *m, int threads, bool per_expert, uint32_t n) {
    grok_context_params p = {.n_ctx = 64, .numa = NUMA_OFF, .n_threads = threads, .mlp_per_expert = per_expert};
    grok_context *ctx;
    g2_error err;
    cr_assert_eq(grok_context_new(&ctx, m, &p, &err), 0, "%s", err.msg);
    float *logits = malloc((size_t)n * m->hp.n_vocab * sizeof *logits);
    for (uint32_t i = 0; i < n; i++) {
        int32_t token = (int32_t)((i * 37 + 11) % m->hp.n_vocab);
        cr_assert_eq(grok_eval(ctx, &token, 1, i, logits + (size_t)i * m->hp.n_vocab, false, &err), 0, "%s", err.msg);
    }
    grok_context_free(ctx);
    return logits;
}

Test(experts, one_token_mlp_in_two_passes_gives_the_per_expert_logits_bit_for_bit) {
    grok_model *m;
    g2_error err;
    cr_assert_eq(grok_model_load(&m, model, &err), 0, "%s", err.msg);
    const uint32_t n = 12;
    size_t bytes = (size_t)n * m->hp.n_vocab * sizeof(float);
    float *want = decode_logits(m, 1, true, n);
    for (int threads = 1; threads <= 3; threads++) {
        float *shared = decode_logits(m, threads, false, n), *separate = decode_logits(m, threads, true, n);
        cr_expect(!memcmp(shared, want, bytes), "-t %d: the two-pass MLP gives other logits", threads);
        cr_expect(!memcmp(separate, want, bytes), "-t %d: the per-expert passes depend on the thread count", threads);
        free(shared);
        free(separate);
    }
    free(want);
    grok_model_free(m);
}

/* `grok2 bench --read-ref` runs a token on read-only kernels at each position before the real
 * one: the real tokens' logits must be those of a run without them, bit for bit (the real token
 * rewrites the position's KV, nothing else persists), and the read-only matvec must read the
 * rows (other bytes, other outputs) and write small finite values. */
Test(experts, read_only_tokens_in_between_leave_the_logits_bit_for_bit) {
    grok_model *m;
    g2_error err;
    cr_assert_eq(grok_model_load(&m, model, &err), 0, "%s", err.msg);
    const uint32_t n = 8;
    float *want = decode_logits(m, 2, false, n);
    simd_kernels read_only;
    read_only_kernels(simd_kernels_get(), &read_only);
    grok_context_params p = {.n_ctx = 64, .numa = NUMA_OFF, .n_threads = 2};
    grok_context *ctx;
    cr_assert_eq(grok_context_new(&ctx, m, &p, &err), 0, "%s", err.msg);
    float *logits = malloc((size_t)n * m->hp.n_vocab * sizeof *logits), *scratch = malloc(m->hp.n_vocab * sizeof *scratch);
    for (uint32_t i = 0; i < n; i++) {
        int32_t token = (int32_t)((i * 37 + 11) % m->hp.n_vocab);
        grok_context_use_kernels(ctx, &read_only);
        cr_assert_eq(grok_eval(ctx, &token, 1, i, scratch, false, &err), 0, "%s", err.msg);
        for (uint32_t v = 0; v < m->hp.n_vocab; v++) cr_assert(isfinite(scratch[v]), "read-only logit %u", v);
        grok_context_use_kernels(ctx, NULL);
        cr_assert_eq(grok_eval(ctx, &token, 1, i, logits + (size_t)i * m->hp.n_vocab, false, &err), 0, "%s", err.msg);
    }
    cr_expect(!memcmp(logits, want, (size_t)n * m->hp.n_vocab * sizeof *logits), "read-only tokens changed the logits");
    grok_context_free(ctx);
    free(logits);
    free(scratch);
    free(want);
    grok_model_free(m);
    /* the table: quantized types read, float types keep their kernels */
    const simd_kernels *real = simd_kernels_get();
    const simd_type_kernels *q8 = simd_type_kernels_get(&read_only, SIMD_TYPE_Q8_0);
    const simd_type_kernels *f32 = simd_type_kernels_get(&read_only, SIMD_TYPE_F32);
    cr_assert(q8 && f32);
    cr_expect_neq((void *)q8->matvec, (void *)simd_type_kernels_get(real, SIMD_TYPE_Q8_0)->matvec);
    cr_expect_eq((void *)f32->matvec, (void *)simd_type_kernels_get(real, SIMD_TYPE_F32)->matvec);
    uint8_t rows[3 * 34 + 5]; /* 3 rows of one Q8_0 block, off a word boundary */
    for (size_t i = 0; i < sizeof rows; i++) rows[i] = (uint8_t)(i * 7 + 1);
    float y1[3], y2[3];
    q8->matvec(32, 3, rows + 1, 34, NULL, y1);
    rows[1 + 2 * 34 + 33]++; /* the last byte of the last row */
    q8->matvec(32, 3, rows + 1, 34, NULL, y2);
    for (int r = 0; r < 3; r++) cr_expect(isfinite(y1[r]) && fabsf(y1[r]) <= 5e-4f, "row %d: %g", r, y1[r]);
    cr_expect(y1[0] != y1[1] && y1[1] != y1[2], "rows alike: %g %g %g", y1[0], y1[1], y1[2]);
    cr_expect(memcmp(y1, y2, sizeof y1), "the last byte was not read");
}

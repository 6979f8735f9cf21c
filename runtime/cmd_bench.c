/* `grok2 bench`: prompt processing and generation speed like llama-bench (mean +- stddev over
 * repetitions), plus what decides decode speed on a CPU: the bytes of weights read per generated
 * token and the bandwidth yield, generation tokens/s x bytes per token / the read bandwidth
 * measured in the same run by the same program. `--kernels` runs the kernel benchmark. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

static void bench_usage(FILE *out) {
    fprintf(out,
            "usage: grok2 bench -m MODEL.gguf [options]\n"
            "       grok2 bench --kernels [--help for its options]\n\n"
            "Measures prompt processing (pp) and generation (tg) in tokens/s on random token ids,\n"
            "the bytes of weights read per generated token, the memory read bandwidth of this\n"
            "machine (right before and right after each tg run: all threads read a 1 GiB buffer,\n"
            "best of 2; the run's bandwidth is the mean of the two, and how far they differ is\n"
            "shown: a shared machine's bandwidth can move within a run) and the bandwidth yield:\n"
            "per run, tg tokens/s x bytes per token / that run's bandwidth (1.0 = decode at the\n"
            "memory-bandwidth limit), mean +- stddev over the runs. For pp also the int8 op\n"
            "rate: 2 ops (multiply, add) x the quantized weights each prompt token goes through\n"
            "(attention and dense MLP matrices, the experts it is routed to; the lm_head once,\n"
            "for the last token; not the attention scores nor float weights) x tokens / time,\n"
            "and its fraction of the machine's peak int8 rate, measured in the same run: the\n"
            "kernels' int8 multiply-add instruction in a register-only loop on every thread.\n"
            "Last, how much of the weights sits in 2 MiB pages after the runs (the mapping's\n"
            "FilePmdMapped, or with --no-mmap the copy's AnonHugePages): on 4 KiB pages decode\n"
            "misses the TLB and the yield is not comparable.\n"
            "With --read-ref each tg token is also run with the quantized weights' matvecs\n"
            "replaced by a plain read of the same rows (the bandwidth probe's loop, no arithmetic),\n"
            "alternating token by token with the real ones at the same positions, and tg is given\n"
            "as a fraction of that rate: how close decode comes to just reading its weights in its\n"
            "own order, passes and threads. Taken in the same seconds, it moves far less with a\n"
            "shared machine's bandwidth than the yield does; it does not see what the order itself\n"
            "costs (the yield does).\n\n"
            "  -m, --model FILE   GGUF model\n"
            "  -p N               prompt tokens per pp run (default 512; 0 skips pp)\n"
            "  -n N               generated tokens per tg run (default 128; 0 skips tg)\n"
            "  -r N               repetitions (default 3)\n"
            "  --depth N          tokens already in the KV cache before each run (default 0)\n"
            "  -t, --threads N    threads (default: all cores)\n"
            "  --kv-type T        KV cache type: f16 (default), f32, bf16\n"
            "  --gemm NAME        prefill matmuls: auto (default: the CPU's best), native,\n"
            "                     openblas, onednn (batches only; decode is always native)\n"
            "  --read-ref         also time tg against plain reads of its weights (see above)\n"
            "  --json             one JSON object instead of the table\n"
            "  --kernels          per-kernel GB/s against the read bandwidth (see --kernels --help)\n");
    fputs(memory_flags_help, out);
}

typedef struct {
    const char *model;
    uint32_t prompt, generate, repetitions, depth;
    bool json, read_ref;
    grok_context_params ctx;
} bench_options;

static int parse_bench_options(int argc, char **argv, bench_options *o) {
    o->prompt = 512, o->generate = 128, o->repetitions = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            bench_usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "--json")) {
            o->json = true;
            continue;
        }
        if (!strcmp(a, "--read-ref")) {
            o->read_ref = true;
            continue;
        }
        int shared = cli_model_flag("bench", argc, argv, &i, &o->model, &o->ctx);
        if (shared < 0) return -1;
        if (shared) continue;
        const char *value = argv[++i];
        uint32_t *number = !strcmp(a, "-p")        ? &o->prompt
                           : !strcmp(a, "-n")      ? &o->generate
                           : !strcmp(a, "-r")      ? &o->repetitions
                           : !strcmp(a, "--depth") ? &o->depth
                                                   : NULL;
        if (number) {
            if (cli_u32("bench", a, value, number)) return -1;
        } else {
            fprintf(stderr, "grok2 bench: unknown option '%s'\n", a);
            return -1;
        }
    }
    if (o->repetitions == 0) o->repetitions = 1;
    if (!o->model) {
        fprintf(stderr, "grok2 bench: -m MODEL is required\n");
        return -1;
    }
    return 0;
}

typedef struct {
    double mean, stddev;
} stat;

/* Weights of w that the int8 kernels take (rows x cols), 0 when its type has none (float weights
 * or a type decoded row by row). */
static double int8_weights(const weight_matrix *w) {
    const simd_type_kernels *t = simd_type_kernels_get(simd_kernels_get(), w->type);
    return t && t->act_type != SIMD_TYPE_F32 ? (double)w->rows * (double)w->cols : 0;
}

/* Int8 multiply-adds of a prompt of n tokens: every layer's matrices and n_expert_used experts
 * per token; the lm_head once (only the last token's logits are computed). */
static double prompt_int8_macs(const grok_model *m, uint32_t n) {
    double per_token = 0;
    for (uint32_t l = 0; l < m->hp.n_layer; l++) {
        const grok_layer *L = &m->layers[l];
        const weight_matrix *dense[] = {&L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down, &L->router};
        for (size_t i = 0; i < sizeof dense / sizeof dense[0]; i++) per_token += int8_weights(dense[i]);
        per_token += m->hp.n_expert_used * (int8_weights(&L->gate_exps) + int8_weights(&L->up_exps) +
                                            int8_weights(&L->down_exps));
    }
    return per_token * n + int8_weights(&m->output);
}

static stat stats(const double *x, uint32_t n) {
    double mean = 0, var = 0;
    for (uint32_t i = 0; i < n; i++) mean += x[i] / n;
    for (uint32_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    return (stat){mean, n > 1 ? sqrt(var / (n - 1)) : 0};
}

/* One token at pos on kernel table k (NULL: the process's), its time added to *seconds. */
static int timed_token(grok_context *ctx, const simd_kernels *k, const int32_t *token, uint32_t pos, float *logits,
                       double *seconds, g2_error *err) {
    grok_context_use_kernels(ctx, k);
    double t0 = cli_now_seconds();
    int rc = grok_eval(ctx, token, 1, pos, logits, false, err);
    *seconds += cli_now_seconds() - t0;
    grok_context_use_kernels(ctx, NULL);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--kernels")) {
            argv[i] = argv[0]; /* hand the rest to the kernel benchmark */
            return bench_kernels(argc - i, argv + i);
        }
    bench_options o = {0};
    if (parse_bench_options(argc, argv, &o)) {
        bench_usage(stderr);
        return 2;
    }
    g2_error err;
    int rc = 1;
    cli_session session = {0};
    int32_t *tokens = NULL;
    float *logits = NULL;
    double *pp = calloc(o.repetitions, sizeof *pp), *tg = calloc(o.repetitions, sizeof *tg);
    double *bw = calloc(o.repetitions, sizeof *bw), *yields = calloc(o.repetitions, sizeof *yields);
    double *ref = calloc(o.repetitions, sizeof *ref); /* --read-ref: tg / the read-only tg, per run */
    double drift = 0; /* the largest |after - before| / mean of a run's two bandwidth readings (-1 in
                       * the JSON when no tg ran: one reading, no pair) */
    simd_kernels read_only;
    read_only_kernels(simd_kernels_get(), &read_only);
    thread_pool *pool = NULL;
    read_probe *probe = NULL;
    if (cli_session_open(&session, o.model, false, &err)) goto done;
    const grok_model *model = session.model;
    uint32_t need = o.depth + (o.prompt > o.generate ? o.prompt : o.generate);
    o.ctx.n_ctx = need > 0 ? need : 1;
    if (o.ctx.n_ctx > model->hp.n_ctx_train) {
        g2_fail(&err, "depth + tokens = %u exceeds the model's context of %u", need, model->hp.n_ctx_train);
        goto done;
    }
    if (cli_session_context(&session, &o.ctx, &err)) goto done;
    grok_context *ctx = session.ctx;
    /* As many threads as the context's measure the bandwidth the decode is judged against, right
     * before and right after each tg run (best of 2 reads of 1 GiB each): on a shared machine it
     * drifts by a third within minutes, so a figure taken once at the start misjudges later runs,
     * and one taken only before a run misses a change during it. */
    pool = thread_pool_new(o.ctx.n_threads);
    probe = read_probe_new((size_t)1 << 30);
    double int8_peak = pool && o.prompt ? bench_int8_peak(pool, simd_kernels_get()) / 1e9 : 0; /* G/s */
    int threads = pool ? thread_pool_size(pool) : 0;
    uint32_t vocab = model->hp.n_vocab, n_tokens = need > 0 ? need : 1;
    tokens = malloc(n_tokens * sizeof *tokens);
    logits = malloc(vocab * sizeof *logits);
    if (!tokens || !logits || !pp || !tg || !bw || !yields || !ref || !pool || !probe) {
        g2_fail(&err, "out of memory");
        goto done;
    }
    uint64_t seed = 0x243F6A8885A308D3ull;
    for (uint32_t i = 0; i < n_tokens; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (int32_t)((seed >> 33) % vocab);
    }
    if (o.depth && grok_eval(ctx, tokens, o.depth, 0, logits, false, &err)) goto done;
    if (o.generate && grok_eval(ctx, tokens + o.depth, 1, o.depth, logits, false, &err)) goto done; /* warm-up */
    double per_token = grok_model_bytes_per_token(model);
    for (uint32_t r = 0; r < o.repetitions; r++) {
        if (o.prompt) {
            double t0 = cli_now_seconds();
            if (grok_eval(ctx, tokens + o.depth, o.prompt, o.depth, logits, false, &err)) goto done;
            pp[r] = o.prompt / (cli_now_seconds() - t0);
        }
        if (o.generate) {
            double before = read_probe_measure(probe, pool, 2);
            double seconds = 0, read_seconds = 0, untimed = 0;
            /* --read-ref: an untimed read-only token first, so that neither side's first timed
             * token is the one that pays for the pause the probe made; then at each position the
             * read-only token before the real one, which rewrites the position's KV */
            if (o.read_ref && timed_token(ctx, &read_only, tokens + o.depth, o.depth, logits, &untimed, &err))
                goto done;
            for (uint32_t i = 0; i < o.generate; i++) {
                const int32_t *token = tokens + o.depth + i;
                uint32_t pos = o.depth + i;
                if (o.read_ref && timed_token(ctx, &read_only, token, pos, logits, &read_seconds, &err)) goto done;
                if (timed_token(ctx, NULL, token, pos, logits, &seconds, &err)) goto done;
            }
            tg[r] = o.generate / seconds;
            double after = read_probe_measure(probe, pool, 2);
            bw[r] = (before + after) / 2;
            if (bw[r] > 0 && fabs(after - before) / bw[r] > drift) drift = fabs(after - before) / bw[r];
            yields[r] = tg[r] * per_token / (bw[r] * 1e9);
            ref[r] = read_seconds / seconds;
        }
    }
    if (!o.generate) bw[0] = read_probe_measure(probe, pool, 3); /* still reported */
    read_probe_free(probe); /* before the page count below: its buffer is in huge pages too */
    probe = NULL;
    uint32_t n_bw = o.generate ? o.repetitions : 1;
    stat spp = stats(pp, o.repetitions), stg = stats(tg, o.repetitions), sbw = stats(bw, n_bw);
    stat syield = stats(yields, o.repetitions), sref = stats(ref, o.repetitions);
    double bandwidth = sbw.mean, yield = syield.mean;
    /* pp's int8 rate from its mean time per run */
    double pp_int8 = spp.mean > 0 ? 2 * prompt_int8_macs(model, o.prompt) * spp.mean / o.prompt / 1e9 : 0;
    double pp_fraction = int8_peak > 0 ? pp_int8 / int8_peak : 0;
    /* the weights' page size, taken while they are mapped: yields on 4 KiB pages are not comparable */
    const void *weights;
    size_t weights_size;
    grok_context_weights(ctx, &weights, &weights_size);
    uint64_t huge = 0;
    bool huge_known = huge_page_bytes(weights, weights_size, &huge) == 0;
    double weight_bytes = (double)weights_size, huge_bytes = (double)huge;
    if (o.json) {
        printf("{\"model\": \"%s\", \"threads\": %d, \"depth\": %u, \"kv_type\": \"%s\", \"pp_tokens\": %u, "
               "\"pp_tokens_per_s\": %.3f, \"pp_stddev\": %.3f, \"tg_tokens\": %u, \"tg_tokens_per_s\": %.3f, "
               "\"tg_stddev\": %.3f, \"bytes_per_token\": %.0f, \"read_bandwidth_gbps\": %.3f, "
               "\"read_bandwidth_stddev\": %.3f, \"read_bandwidth_drift\": %.4f, \"bandwidth_yield\": %.4f, \"bandwidth_yield_stddev\": %.4f, "
               "\"pp_int8_gops\": %.1f, \"int8_peak_gops\": %.1f, "
               "\"pp_int8_fraction_of_peak\": %.4f, \"kernels\": \"%s\", \"repetitions\": %u, "
               "\"weights\": \"%s\", \"weight_bytes\": %.0f, \"weight_bytes_in_huge_pages\": %.0f",
               o.model, threads, o.depth, kv_cache_type_name(o.ctx.kv_type), o.prompt, spp.mean, spp.stddev,
               o.generate, stg.mean, stg.stddev, per_token, bandwidth, sbw.stddev, o.generate ? drift : -1.0, yield, syield.stddev, pp_int8,
               int8_peak, pp_fraction,
               simd_kernels_get()->name, o.repetitions, o.ctx.no_mmap ? "copied" : "mapped", weight_bytes,
               huge_known ? huge_bytes : -1.0);
        if (o.read_ref && o.generate)
            printf(", \"tg_vs_read_only\": %.4f, \"tg_vs_read_only_stddev\": %.4f", sref.mean, sref.stddev);
        printf("}\n");
    } else {
        printf("model            %s\n", o.model);
        printf("threads          %d, depth %u, KV cache %s, %u repetitions\n", threads, o.depth,
               kv_cache_type_name(o.ctx.kv_type), o.repetitions);
        char numa[2048];
        grok_context_numa_report(ctx, true, numa, sizeof numa);
        printf("%s\n", numa);
        if (o.prompt) {
            printf("pp%-5u          %10.2f +- %.2f tokens/s\n", o.prompt, spp.mean, spp.stddev);
            printf("pp int8 rate     %10.1f G/s = %.3f of the int8 peak (%.1f G/s, %s, %d threads)\n", pp_int8,
                   pp_fraction, int8_peak, simd_kernels_get()->name, threads);
        }
        if (o.generate) printf("tg%-5u          %10.2f +- %.2f tokens/s\n", o.generate, stg.mean, stg.stddev);
        printf("read per token   %10.3f GB of weights\n", per_token / 1e9);
        if (o.generate) {
            printf("read bandwidth   %10.2f +- %.2f GB/s (before and after each tg run, %d threads; the two "
                   "differed by up to %.0f%%)\n",
                   bandwidth, sbw.stddev, threads, 100 * drift);
            printf("bandwidth yield  %10.3f +- %.3f (per run: tg x bytes per token / the run's bandwidth)\n", yield,
                   syield.stddev);
        } else {
            printf("read bandwidth   %10.2f +- %.2f GB/s (measured now, %d threads)\n", bandwidth, sbw.stddev, threads);
        }
        if (o.read_ref && o.generate)
            printf("tg / read-only   %10.3f +- %.3f (per run: the same tokens with plain reads for matvecs, alternated)\n",
                   sref.mean, sref.stddev);
        if (o.prompt && o.generate) printf("pp / tg          %10.2f\n", spp.mean / stg.mean);
        if (huge_known)
            printf("huge pages       %10.2f of %.2f GB of weights (%s)\n", huge_bytes / 1e9, weight_bytes / 1e9,
                   o.ctx.no_mmap ? "the copy's AnonHugePages" : "the mapping's FilePmdMapped");
        else
            printf("huge pages       unknown (no /proc/self/smaps)\n");
    }
    rc = 0;
done:
    if (rc) fprintf(stderr, "grok2 bench: %s\n", err.msg);
    free(pp);
    free(tg);
    free(bw);
    free(yields);
    free(ref);
    read_probe_free(probe);
    thread_pool_free(pool);
    free(tokens);
    free(logits);
    cli_session_close(&session);
    return rc;
}

/* `grok2 perplexity`: chunked evaluation of a text file. Each chunk of --ctx tokens is evaluated
 * from position 0; every position after the first is scored. --kl-base saves the scored
 * positions' log-probabilities (f16) so that --kl can compare another model (or quantization)
 * against them: mean KL divergence and top-1 agreement, the tools for judging a type. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

#define KL_MAGIC "G2KLBASE"

static void perplexity_usage(FILE *out) {
    fprintf(out,
            "usage: grok2 perplexity -m MODEL.gguf -f FILE [options]\n\n"
            "Tokenizes FILE, evaluates it in chunks of --ctx tokens and prints the perplexity with its\n"
            "standard error. Every position of a chunk but the first is scored.\n\n"
            "  -m, --model FILE   GGUF model\n"
            "  -f, --file FILE    text to evaluate\n"
            "  --ctx N            tokens per chunk (default 512)\n"
            "  --chunks N         evaluate at most N chunks (default: all)\n"
            "  --kl-base OUT      save this model's log-probabilities (2 bytes x vocab per scored token)\n"
            "  --kl BASE          compare with a file saved by --kl-base: mean KL divergence and top-1\n"
            "                     agreement (the same text, --ctx and vocabulary are required)\n"
            "  --kv-type T        KV cache type: f16 (default), f32, bf16\n"
            "  --gemm NAME        prefill matmuls: auto (default: the CPU's best), native,\n"
            "                     openblas, onednn (batches only; decode is always native)\n"
            "  -t, --threads N    threads (default: all cores)\n");
    fputs(memory_flags_help, out);
}

typedef struct {
    const char *model, *file, *kl_base_out, *kl_base_in;
    uint32_t n_ctx, max_chunks;
    grok_context_params ctx;
} perplexity_options;

static int parse_perplexity_options(int argc, char **argv, perplexity_options *o) {
    o->n_ctx = 512;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            perplexity_usage(stdout);
            exit(0);
        }
        int shared = cli_model_flag("perplexity", argc, argv, &i, &o->model, &o->ctx);
        if (shared < 0) return -1;
        if (shared) continue;
        const char *value = argv[++i];
        if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            o->file = value;
        } else if (!strcmp(a, "--kl-base")) {
            o->kl_base_out = value;
        } else if (!strcmp(a, "--kl")) {
            o->kl_base_in = value;
        } else if (!strcmp(a, "--ctx")) {
            if (cli_u32("perplexity", a, value, &o->n_ctx)) return -1;
        } else if (!strcmp(a, "--chunks")) {
            if (cli_u32("perplexity", a, value, &o->max_chunks)) return -1;
        } else {
            fprintf(stderr, "grok2 perplexity: unknown option '%s'\n", a);
            return -1;
        }
    }
    if (!o->model || !o->file) {
        fprintf(stderr, "grok2 perplexity: -m MODEL and -f FILE are required\n");
        return -1;
    }
    if (o->n_ctx < 2) {
        fprintf(stderr, "grok2 perplexity: --ctx must be at least 2\n");
        return -1;
    }
    if (o->kl_base_out && o->kl_base_in) {
        fprintf(stderr, "grok2 perplexity: --kl-base and --kl cannot be used together\n");
        return -1;
    }
    return 0;
}

/* log-softmax in place; returns the argmax */
static uint32_t log_softmax(float *x, uint32_t n) {
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    double sum = 0;
    for (uint32_t i = 0; i < n; i++) sum += exp((double)x[i] - x[best]);
    float shift = x[best] + (float)log(sum);
    for (uint32_t i = 0; i < n; i++) x[i] -= shift;
    return best;
}

typedef struct {
    FILE *file;
    const char *path;
    g2_half *row; /* [vocab] */
} kl_file;

/* header: magic, u32 vocab, u32 ctx, u64 n_tokens, then the token ids, then per scored
 * position vocab f16 log-probabilities */
static int kl_open(kl_file *k, const char *path, bool writing, uint32_t vocab, uint32_t n_ctx, const int32_t *tokens,
                   uint64_t n_tokens, g2_error *err) {
    k->path = path;
    k->row = malloc(vocab * sizeof *k->row);
    k->file = fopen(path, writing ? "wb" : "rb");
    if (!k->row || !k->file) return g2_fail(err, "%s: %s", path, k->row ? strerror(errno) : "out of memory");
    uint32_t head[2] = {vocab, n_ctx};
    if (writing) {
        if (fwrite(KL_MAGIC, 8, 1, k->file) != 1 || fwrite(head, sizeof head, 1, k->file) != 1 ||
            fwrite(&n_tokens, 8, 1, k->file) != 1 || fwrite(tokens, 4, n_tokens, k->file) != n_tokens)
            return g2_fail(err, "%s: write failed", path);
        return 0;
    }
    char magic[8];
    uint32_t theirs[2];
    uint64_t their_tokens;
    if (fread(magic, 8, 1, k->file) != 1 || memcmp(magic, KL_MAGIC, 8) || fread(theirs, sizeof theirs, 1, k->file) != 1 ||
        fread(&their_tokens, 8, 1, k->file) != 1)
        return g2_fail(err, "%s: not a file written by --kl-base", path);
    if (theirs[0] != vocab || theirs[1] != n_ctx || their_tokens != n_tokens)
        return g2_fail(err, "%s: saved with vocabulary %u, --ctx %u, %llu tokens; this run has %u, %u, %llu", path,
                       theirs[0], theirs[1], (unsigned long long)their_tokens, vocab, n_ctx,
                       (unsigned long long)n_tokens);
    for (uint64_t i = 0; i < n_tokens; i++) {
        int32_t t;
        if (fread(&t, 4, 1, k->file) != 1) return g2_fail(err, "%s: truncated", path);
        if (t != tokens[i]) return g2_fail(err, "%s: token %llu differs: saved from another text", path, (unsigned long long)i);
    }
    return 0;
}

int cmd_perplexity(int argc, char **argv) {
    perplexity_options o = {0};
    if (parse_perplexity_options(argc, argv, &o)) {
        perplexity_usage(stderr);
        return 2;
    }
    g2_error err;
    int rc = 1;
    cli_session session = {0};
    int32_t *tokens = NULL;
    float *logits = NULL;
    kl_file kl = {0};
    size_t n_tokens = 0;
    if (cli_session_open(&session, o.model, true, &err) ||
        cli_session_encode_file(&session, o.file, &tokens, &n_tokens, &err))
        goto done;
    const grok_model *model = session.model;
    if (o.n_ctx > model->hp.n_ctx_train) o.n_ctx = model->hp.n_ctx_train;
    size_t n_chunks = n_tokens / o.n_ctx;
    if (o.max_chunks && n_chunks > o.max_chunks) n_chunks = o.max_chunks;
    if (n_chunks == 0) {
        g2_fail(&err, "%s: %zu tokens, fewer than one chunk of --ctx %u", o.file, n_tokens, o.n_ctx);
        goto done;
    }
    uint32_t vocab = model->hp.n_vocab;
    o.ctx.n_ctx = o.n_ctx;
    if (cli_session_context(&session, &o.ctx, &err)) goto done;
    if (!(logits = malloc((size_t)o.n_ctx * vocab * sizeof *logits))) {
        g2_fail(&err, "out of memory for %u x %u logits", o.n_ctx, vocab);
        goto done;
    }
    uint64_t evaluated = (uint64_t)n_chunks * o.n_ctx;
    const char *kl_path = o.kl_base_out ? o.kl_base_out : o.kl_base_in;
    if (kl_path && kl_open(&kl, kl_path, o.kl_base_out != NULL, vocab, o.n_ctx, tokens, evaluated, &err)) goto done;
    double nll_sum = 0, nll_sq = 0, kl_sum = 0;
    uint64_t scored = 0, agree = 0;
    for (size_t c = 0; c < n_chunks; c++) {
        const int32_t *chunk = tokens + c * o.n_ctx;
        if (grok_eval(session.ctx, chunk, o.n_ctx, 0, logits, true, &err)) goto done;
        for (uint32_t i = 0; i + 1 < o.n_ctx; i++) {
            float *lp = logits + (size_t)i * vocab;
            uint32_t best = log_softmax(lp, vocab);
            double nll = -lp[chunk[i + 1]];
            nll_sum += nll, nll_sq += nll * nll, scored++;
            if (kl.file && o.kl_base_out) {
                for (uint32_t v = 0; v < vocab; v++) kl.row[v] = g2_f32_to_half(lp[v]);
                if (fwrite(kl.row, sizeof *kl.row, vocab, kl.file) != vocab) {
                    g2_fail(&err, "%s: write failed (disk full?)", kl.path);
                    goto done;
                }
            } else if (kl.file) {
                if (fread(kl.row, sizeof *kl.row, vocab, kl.file) != vocab) {
                    g2_fail(&err, "%s: truncated", kl.path);
                    goto done;
                }
                double d = 0;
                uint32_t base_best = 0;
                for (uint32_t v = 0; v < vocab; v++) {
                    float base = g2_half_to_f32(kl.row[v]);
                    if (base > g2_half_to_f32(kl.row[base_best])) base_best = v;
                    d += exp(base) * (base - lp[v]);
                }
                kl_sum += d;
                agree += base_best == best;
            }
        }
        double mean = nll_sum / scored;
        fprintf(stderr, "[%zu/%zu] perplexity so far %.4f\n", c + 1, n_chunks, exp(mean));
    }
    double mean = nll_sum / scored, var = nll_sq / scored - mean * mean;
    double se = scored > 1 ? sqrt(var > 0 ? var / (scored - 1) : 0) : 0;
    printf("perplexity %.4f +- %.4f over %llu tokens in %zu chunks of %u\n", exp(mean), exp(mean) * se,
           (unsigned long long)scored, n_chunks, o.n_ctx);
    if (kl.file && o.kl_base_in)
        printf("kl_divergence %.6g top1_agreement %.4f (against %s)\n", kl_sum / scored, (double)agree / scored,
               o.kl_base_in);
    if (kl.file && o.kl_base_out) printf("saved log-probabilities to %s\n", o.kl_base_out);
    rc = 0;
done:
    if (rc) fprintf(stderr, "grok2 perplexity: %s\n", err.msg);
    if (kl.file && fclose(kl.file) && !rc && o.kl_base_out) {
        fprintf(stderr, "grok2 perplexity: %s: write failed\n", kl.path);
        rc = 1;
    }
    if (rc && o.kl_base_out && kl.path) remove(kl.path); /* no half-written base left behind */
    free(kl.row);
    free(logits);
    free(tokens);
    cli_session_close(&session);
    return rc;
}

/* `grok2 logits`: evaluate a token list and print logits, the tool for every numerical
 * comparison (the numpy oracle prints the same format). With --incremental the same tokens
 * also go one at a time through the KV cache and the largest difference is reported. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

static void logits_usage(FILE *out) {
    fprintf(out,
            "usage: grok2 logits -m MODEL.gguf --tokens 1,2,3 [options]\n\n"
            "Evaluates the tokens as one sequence from position 0 and prints, for the last position\n"
            "(or every position with --all), one line:\n"
            "  pos I tok T argmax A max V logits v0 v1 ... vN-1\n\n"
            "  -m, --model FILE     GGUF model\n"
            "  --tokens LIST        comma-separated token ids, or @FILE with ids separated by\n"
            "                       commas or whitespace\n"
            "  --all                print every position, not just the last\n"
            "  --out FILE           write the lines to FILE instead of stdout\n"
            "  --incremental        also run the tokens one at a time through the KV cache and\n"
            "                       print '# incremental_vs_batch_max_abs_diff X'\n"
            "  --kv-type T          KV cache type: f16 (default), f32, bf16\n"
            "  --gemm NAME          prefill matmuls: auto (default: the CPU's best), native,\n"
            "                       openblas, onednn (batches only; decode is always native)\n"
            "  --ctx N              context positions to allocate (default: the number of tokens)\n"
            "  --batch N            tokens per forward chunk (default 512)\n"
            "  -t, --threads N      threads (default: all cores)\n");
    fputs(memory_flags_help, out);
}

/* Parses ids separated by commas/whitespace; *ids is malloc'd. */
static int parse_tokens(const char *text, int32_t **ids, uint32_t *n, g2_error *err) {
    size_t cap = 64, count = 0;
    int32_t *out = malloc(cap * sizeof *out);
    if (!out) return g2_fail(err, "out of memory reading tokens");
    for (const char *p = text;;) {
        while (*p == ',' || *p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || count == UINT32_MAX) {
            free(out);
            return g2_fail(err, "bad token id at '%.20s' (token %zu): ids are non-negative integers", p, count);
        }
        if (count == cap) {
            int32_t *grown = realloc(out, (cap *= 2) * sizeof *out);
            if (!grown) {
                free(out);
                return g2_fail(err, "out of memory reading tokens");
            }
            out = grown;
        }
        out[count++] = (int32_t)v;
        p = end;
    }
    if (!count) {
        free(out);
        return g2_fail(err, "no tokens given");
    }
    *ids = out;
    *n = (uint32_t)count;
    return 0;
}

static void print_line(FILE *out, uint32_t pos, int32_t token, const float *logits, uint32_t n_vocab) {
    uint32_t argmax = 0;
    for (uint32_t i = 1; i < n_vocab; i++)
        if (logits[i] > logits[argmax]) argmax = i;
    fprintf(out, "pos %u tok %d argmax %u max %.9g logits", pos, token, argmax, logits[argmax]);
    for (uint32_t i = 0; i < n_vocab; i++) fprintf(out, " %.9g", logits[i]);
    fputc('\n', out);
}

typedef struct {
    const char *model, *tokens, *out;
    bool all, incremental;
    grok_context_params ctx;
} logits_options;

static int parse_options(int argc, char **argv, logits_options *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int shared;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            logits_usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--all")) {
            o->all = true;
        } else if (!strcmp(a, "--incremental")) {
            o->incremental = true;
        } else if ((shared = cli_model_flag("logits", argc, argv, &i, &o->model, &o->ctx)) != 0) {
            if (shared < 0) return -1;
        } else if (!strcmp(a, "--tokens")) {
            o->tokens = argv[++i];
        } else if (!strcmp(a, "--out")) {
            o->out = argv[++i];
        } else if (!strcmp(a, "--ctx")) {
            if (cli_u32("logits", a, argv[++i], &o->ctx.n_ctx)) return -1;
        } else if (!strcmp(a, "--batch")) {
            if (cli_u32("logits", a, argv[++i], &o->ctx.max_batch)) return -1;
        } else {
            fprintf(stderr, "grok2 logits: unknown option '%s'\n", a);
            return -1;
        }
    }
    if (!o->model || !o->tokens) {
        fprintf(stderr, "grok2 logits: -m MODEL and --tokens are required\n");
        return -1;
    }
    return 0;
}

int cmd_logits(int argc, char **argv) {
    logits_options o = {0};
    if (parse_options(argc, argv, &o)) {
        logits_usage(stderr);
        return 2;
    }
    g2_error err;
    int32_t *tokens = NULL;
    uint32_t n = 0;
    char *file_text = NULL;
    if (o.tokens[0] == '@' && !(file_text = cli_read_file(o.tokens + 1, NULL, &err))) {
        fprintf(stderr, "grok2 logits: %s\n", err.msg);
        return 1;
    }
    if (parse_tokens(file_text ? file_text : o.tokens, &tokens, &n, &err)) {
        fprintf(stderr, "grok2 logits: %s\n", err.msg);
        free(file_text);
        return 2;
    }
    free(file_text);
    if (!o.ctx.n_ctx) o.ctx.n_ctx = n;

    int rc = 1;
    cli_session session = {0};
    float *logits = NULL, *step = NULL;
    FILE *out = stdout;
    if (cli_session_open(&session, o.model, false, &err) || cli_session_context(&session, &o.ctx, &err)) goto fail;
    grok_context *ctx = session.ctx;
    uint32_t vocab = session.model->hp.n_vocab;
    bool keep_all = o.all || o.incremental;
    logits = malloc((size_t)(keep_all ? n : 1) * vocab * sizeof(float));
    step = malloc((size_t)vocab * sizeof(float));
    if (!logits || !step) {
        g2_fail(&err, "out of memory for %u x %u logits", n, vocab);
        goto fail;
    }
    if (grok_eval(ctx, tokens, n, 0, logits, keep_all, &err)) goto fail;
    double max_diff = 0;
    if (o.incremental) {
        for (uint32_t i = 0; i < n; i++) {
            if (grok_eval(ctx, tokens + i, 1, i, step, false, &err)) goto fail;
            for (uint32_t v = 0; v < vocab; v++)
                max_diff = fmax(max_diff, fabs((double)step[v] - logits[(size_t)i * vocab + v]));
        }
    }
    if (o.out && !(out = fopen(o.out, "w"))) {
        g2_fail(&err, "%s: %s", o.out, strerror(errno));
        goto fail;
    }
    for (uint32_t i = o.all ? 0 : n - 1; i < n; i++)
        print_line(out, i, tokens[i], logits + (size_t)(keep_all ? i : 0) * vocab, vocab);
    if (o.incremental) fprintf(out, "# incremental_vs_batch_max_abs_diff %.9g\n", max_diff);
    if (out != stdout && fclose(out)) {
        out = stdout;
        g2_fail(&err, "%s: write failed", o.out);
        goto fail;
    }
    out = stdout;
    rc = 0;
fail:
    if (rc) fprintf(stderr, "grok2 logits: %s\n", err.msg);
    if (out != stdout) fclose(out);
    free(logits);
    free(step);
    free(tokens);
    cli_session_close(&session);
    return rc;
}

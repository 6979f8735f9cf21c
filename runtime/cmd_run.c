/* `grok2 run`: encode a prompt, prefill it, sample a continuation, stream the text, report
 * speed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

static void run_usage(FILE *out) {
    fprintf(out,
            "usage: grok2 run -m MODEL.gguf -p PROMPT [options]\n\n"
            "Generates a continuation of PROMPT and streams it to stdout; prompt and generation\n"
            "speed go to stderr at the end. Stops at <|eos|> or <|separator|> (ids from the file)\n"
            "or after -n tokens.\n\n"
            "  -m, --model FILE     GGUF model\n"
            "  -p, --prompt TEXT    the prompt\n"
            "  --chat               wrap the prompt in the chat format (Human: ...  Assistant:)\n"
            "  --no-special         treat special-token text such as <|separator|> as plain text\n"
            "  -n N                 tokens to generate at most (default 64)\n"
            "  --ctx N              context positions (default: prompt + n)\n"
            "  --truncate           drop the start of a prompt that does not fit --ctx, with a warning\n"
            "  --kv-type T          KV cache type: f16 (default), f32, bf16\n"
            "  --gemm NAME          prefill matmuls: auto (default: the CPU's best), native,\n"
            "                       openblas, onednn (batches only; decode is always native)\n"
            "  -t, --threads N      threads (default: all cores)\n"
            "  --stats              print expert usage, page faults and disk reads per token at\n"
            "                       the end (stderr)\n"
            "%s",
            sampler_flags_help);
    fputs(memory_flags_help, out);
}

typedef struct {
    const char *model, *prompt;
    uint32_t n_predict, n_ctx;
    bool truncate, chat, no_special, stats;
    grok_context_params ctx;
    sampler_params sampling;
} run_options;

static int parse_run_options(int argc, char **argv, run_options *o) {
    o->n_predict = 64;
    o->sampling = sampler_defaults();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        g2_error err;
        int shared;
        int sampling_flag = sampler_parse_flag(&o->sampling, argc, argv, &i, &err);
        if (sampling_flag < 0) {
            fprintf(stderr, "grok2 run: %s\n", err.msg);
            return -1;
        }
        if (sampling_flag) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            run_usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--truncate")) {
            o->truncate = true;
        } else if (!strcmp(a, "--chat")) {
            o->chat = true;
        } else if (!strcmp(a, "--no-special")) {
            o->no_special = true;
        } else if (!strcmp(a, "--stats")) {
            o->stats = true;
        } else if ((shared = cli_model_flag("run", argc, argv, &i, &o->model, &o->ctx)) != 0) {
            if (shared < 0) return -1;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            o->prompt = argv[++i];
        } else if (!strcmp(a, "-n")) {
            if (cli_u32("run", a, argv[++i], &o->n_predict)) return -1;
        } else if (!strcmp(a, "--ctx")) {
            if (cli_u32("run", a, argv[++i], &o->n_ctx)) return -1;
        } else {
            fprintf(stderr, "grok2 run: unknown option '%s'\n", a);
            return -1;
        }
    }
    if (!o->model || !o->prompt) {
        fprintf(stderr, "grok2 run: -m MODEL and -p PROMPT are required\n");
        return -1;
    }
    return 0;
}

int cmd_run(int argc, char **argv) {
    run_options o = {0};
    if (parse_run_options(argc, argv, &o)) {
        run_usage(stderr);
        return 2;
    }
    g2_error err;
    int rc = 1;
    cli_session run = {0};
    sampler *sampling = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    char *prompt = NULL;
    size_t n_ids = 0;
    if (cli_session_open(&run, o.model, true, &err)) goto fail;
    grok_model *model = run.model;
    tokenizer *tok = run.tok;
    if (!*o.prompt) {
        g2_fail(&err, "the prompt is empty: give some text with -p");
        goto fail;
    }
    chat_message message = {CHAT_USER, o.prompt};
    prompt = o.chat ? chat_format(&message, 1, true) : strdup(o.prompt);
    if (!prompt) {
        g2_fail(&err, "out of memory");
        goto fail;
    }
    if (tokenizer_encode(tok, prompt, strlen(prompt), !o.no_special, &ids, &n_ids, &err)) goto fail;
    uint32_t n_ctx = o.n_ctx ? o.n_ctx : (uint32_t)n_ids + o.n_predict;
    if (n_ctx > model->hp.n_ctx_train) n_ctx = model->hp.n_ctx_train;
    size_t n_prompt = n_ids, first = 0;
    if (n_prompt >= n_ctx) {
        if (!o.truncate) {
            g2_fail(&err, "the prompt is %zu tokens, the context %u: raise --ctx or pass --truncate", n_prompt, n_ctx);
            goto fail;
        }
        first = n_prompt - (n_ctx - 1); /* keep the end, leave room for one generated token */
        fprintf(stderr, "grok2 run: warning: prompt of %zu tokens truncated to its last %zu\n", n_prompt,
                n_prompt - first);
        n_prompt -= first;
    }
    o.ctx.n_ctx = n_ctx;
    if (cli_session_context(&run, &o.ctx, &err)) goto fail;
    grok_context *ctx = run.ctx;
    uint32_t vocab = model->hp.n_vocab;
    int32_t *grown = realloc(ids, ((size_t)n_ids + o.n_predict + 1) * sizeof *ids); /* room for the history */
    if (grown) ids = grown;
    sampling = sampler_new(&o.sampling, vocab);
    if (!(logits = malloc(vocab * sizeof(float))) || !grown || !sampling) {
        g2_fail(&err, "out of memory");
        goto fail;
    }
    int32_t eos = tokenizer_find_special(tok, "<|eos|>"), sep = tokenizer_find_special(tok, "<|separator|>");
    if (eos < 0 && sep < 0)
        fprintf(stderr, "grok2 run: warning: %s has neither <|eos|> nor <|separator|>: only -n ends generation\n",
                o.model);
    grok_io_counters io_start, io_prefilled, io_end;
    grok_io_counters_now(&io_start);
    double t0 = cli_now_seconds();
    if (grok_eval(ctx, ids + first, (uint32_t)n_prompt, 0, logits, false, &err)) goto fail;
    double t1 = cli_now_seconds();
    grok_io_counters_now(&io_prefilled);
    utf8_stream stream = {0};
    char text[4096];
    uint32_t pos = (uint32_t)n_prompt, generated = 0;
    while (generated < o.n_predict && pos < n_ctx) {
        int32_t next = sampler_sample(sampling, logits, ids + first, n_prompt + generated);
        ids[first + n_prompt + generated] = next;
        if (next == eos || next == sep) break;
        size_t len;
        const uint8_t *piece = tokenizer_piece(tok, next, &len);
        if (len > (sizeof text - 30) / 3) len = (sizeof text - 30) / 3; /* fits even as all U+FFFD */
        fwrite(text, 1, utf8_stream_push(&stream, piece, len, text, sizeof text), stdout);
        fflush(stdout);
        generated++;
        if (generated == o.n_predict || pos + 1 >= n_ctx) break;
        if (grok_eval(ctx, &next, 1, pos++, logits, false, &err)) goto fail;
    }
    fwrite(text, 1, utf8_stream_flush(&stream, text, sizeof text), stdout);
    putchar('\n');
    double t2 = cli_now_seconds();
    grok_io_counters_now(&io_end);
    fprintf(stderr, "grok2 run: prompt %zu tokens in %.3f s (%.2f tokens/s), generated %u tokens in %.3f s (%.2f tokens/s)\n",
            n_prompt, t1 - t0, n_prompt / (t1 - t0), generated, t2 - t1, generated ? generated / (t2 - t1) : 0.0);
    if (o.stats) {
        grok_io_print(stderr, "run", "prompt", &io_start, &io_prefilled, n_prompt);
        uint64_t decoded = grok_context_expert_stats(ctx)->tokens - n_prompt; /* the last token is only sampled */
        grok_io_print(stderr, "run", "generation", &io_prefilled, &io_end, decoded);
        grok_expert_stats_print(stderr, "run", ctx, model);
    }
    rc = 0;
fail:
    if (rc) fprintf(stderr, "grok2 run: %s\n", err.msg);
    free(logits);
    free(ids);
    free(prompt);
    sampler_free(sampling);
    cli_session_close(&run);
    return rc;
}

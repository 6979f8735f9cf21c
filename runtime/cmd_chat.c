/* `grok2 chat`: multi-turn chat on a terminal or over a pipe. The KV cache is kept across turns,
 * so each turn prefills only its own tokens. Ctrl-C stops the reply being written, not the
 * session (at the prompt it ends the session). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime.h"

/* Set by SIGINT, read by the generation loop: signals are process-wide, so is this flag. */
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static void chat_usage(FILE *out) {
    fprintf(out,
            "usage: grok2 chat -m MODEL.gguf [options]\n\n"
            "Chats in Grok-2's format (Human: / Assistant:). Type a message and press Enter; an empty\n"
            "line is ignored, /reset starts a new conversation, Ctrl-D or /quit ends. Ctrl-C stops\n"
            "the reply being written. Messages can also be piped in, one per line.\n\n"
            "  -m, --model FILE     GGUF model\n"
            "  --system TEXT        a system message at the start of the conversation\n"
            "  -n N                 tokens per reply at most (default 512)\n"
            "  --ctx N              context positions for the whole conversation (default 4096)\n"
            "  --kv-type T          KV cache type: f16 (default), f32, bf16\n"
            "  --gemm NAME          prefill matmuls: auto (default: the CPU's best), native,\n"
            "                       openblas, onednn (batches only; decode is always native)\n"
            "  -t, --threads N      threads (default: all cores)\n"
            "%s",
            sampler_flags_help);
    fputs(memory_flags_help, out);
}

typedef struct {
    const char *model, *system;
    uint32_t n_predict;
    grok_context_params ctx;
    sampler_params sampling;
} chat_options;

static int parse_chat_options(int argc, char **argv, chat_options *o) {
    o->n_predict = 512;
    o->ctx.n_ctx = 4096;
    o->sampling = sampler_defaults();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        g2_error err;
        int sampling_flag = sampler_parse_flag(&o->sampling, argc, argv, &i, &err);
        if (sampling_flag < 0) {
            fprintf(stderr, "grok2 chat: %s\n", err.msg);
            return -1;
        }
        if (sampling_flag) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            chat_usage(stdout);
            exit(0);
        }
        if (cli_context_switch(a, &o->ctx)) continue;
        if (i + 1 >= argc) {
            fprintf(stderr, "grok2 chat: %s '%s'\n", a[0] == '-' ? "missing value for" : "unexpected argument", a);
            return -1;
        }
        const char *value = argv[++i];
        int shared = cli_context_flag("chat", a, value, &o->ctx);
        if (shared < 0) return -1;
        if (shared) continue;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            o->model = value;
        } else if (!strcmp(a, "--system")) {
            o->system = value;
        } else if (!strcmp(a, "-n")) {
            if (cli_u32("chat", a, value, &o->n_predict)) return -1;
        } else if (!strcmp(a, "--ctx")) {
            if (cli_u32("chat", a, value, &o->ctx.n_ctx)) return -1;
        } else {
            fprintf(stderr, "grok2 chat: unknown option '%s'\n", a);
            return -1;
        }
    }
    if (!o->model) {
        fprintf(stderr, "grok2 chat: -m MODEL is required\n");
        return -1;
    }
    return 0;
}

/* A conversation: the tokens in the KV cache (also the sampler's history). */
typedef struct {
    const chat_options *options;
    grok_model *model;
    tokenizer *tok;
    grok_context *ctx;
    sampler *sampling;
    int32_t *tokens; /* [n_ctx] */
    uint32_t n_past;
    float *logits;
    int32_t eos, separator;
    bool reply_open; /* the last reply has no separator in the cache yet */
} conversation;

/* Text of the next turn: the previous reply's separator, the system message on the first turn,
 * the user's message and the generation prompt. */
static char *turn_text(const conversation *c, const char *message) {
    chat_message m[2];
    size_t n = 0;
    if (c->n_past == 0 && c->options->system) m[n++] = (chat_message){CHAT_SYSTEM, c->options->system};
    m[n++] = (chat_message){CHAT_USER, message};
    char *body = chat_format(m, n, true);
    if (!body || !c->reply_open) return body;
    static const char close_reply[] = "<|separator|>\n\n";
    char *text = malloc(strlen(body) + sizeof close_reply);
    if (text) stpcpy(stpcpy(text, close_reply), body);
    free(body);
    return text;
}

/* Prefill the turn, then sample until a stop token, -n, the context's end or Ctrl-C. */
static int take_turn(conversation *c, const char *message, g2_error *err) {
    char *text = turn_text(c, message);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (!text) return g2_fail(err, "out of memory");
    int rc = tokenizer_encode(c->tok, text, strlen(text), true, &ids, &n_ids, err);
    free(text);
    if (rc) return -1;
    uint32_t n_ctx = grok_context_n_ctx(c->ctx);
    if (c->n_past + n_ids + 1 > n_ctx) {
        free(ids);
        return g2_fail(err, "the conversation is full (%u of %u positions): /reset to start again, or --ctx", c->n_past,
                       n_ctx);
    }
    rc = grok_eval(c->ctx, ids, (uint32_t)n_ids, c->n_past, c->logits, false, err);
    if (!rc) memcpy(c->tokens + c->n_past, ids, n_ids * sizeof *ids);
    free(ids);
    if (rc) return -1;
    c->n_past += (uint32_t)n_ids;
    c->reply_open = true;
    utf8_stream stream = {0};
    char out[4096];
    interrupted = 0;
    for (uint32_t generated = 0; generated < c->options->n_predict && !interrupted; generated++) {
        int32_t next = sampler_sample(c->sampling, c->logits, c->tokens, c->n_past);
        if (next == c->eos || next == c->separator) break;
        size_t len;
        const uint8_t *piece = tokenizer_piece(c->tok, next, &len);
        if (len > (sizeof out - 30) / 3) len = (sizeof out - 30) / 3; /* fits even as all U+FFFD */
        fwrite(out, 1, utf8_stream_push(&stream, piece, len, out, sizeof out), stdout);
        fflush(stdout);
        if (c->n_past + 1 >= n_ctx) {
            fprintf(stderr, "\n[the conversation is full: /reset to start again]");
            break;
        }
        if (grok_eval(c->ctx, &next, 1, c->n_past, c->logits, false, err)) return -1;
        c->tokens[c->n_past++] = next;
    }
    fwrite(out, 1, utf8_stream_flush(&stream, out, sizeof out), stdout);
    if (interrupted) fputs(" [stopped]", stdout);
    putchar('\n');
    fflush(stdout);
    return 0;
}

static char *read_line(bool interactive) {
    if (interactive) {
        fputs("> ", stdout);
        fflush(stdout);
    }
    size_t cap = 0;
    char *line = NULL;
    errno = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    return line;
}

int cmd_chat(int argc, char **argv) {
    chat_options o = {0};
    if (parse_chat_options(argc, argv, &o)) {
        chat_usage(stderr);
        return 2;
    }
    g2_error err;
    conversation c = {.options = &o};
    int rc = 1;
    if (grok_model_load(&c.model, o.model, &err) || tokenizer_from_gguf(&c.tok, c.model->file, &err)) goto done;
    if (o.ctx.n_ctx > c.model->hp.n_ctx_train) o.ctx.n_ctx = c.model->hp.n_ctx_train;
    if (grok_context_new(&c.ctx, c.model, &o.ctx, &err)) goto done;
    c.sampling = sampler_new(&o.sampling, c.model->hp.n_vocab);
    c.tokens = malloc(grok_context_n_ctx(c.ctx) * sizeof *c.tokens);
    c.logits = malloc(c.model->hp.n_vocab * sizeof *c.logits);
    if (!c.sampling || !c.tokens || !c.logits) {
        g2_fail(&err, "out of memory");
        goto done;
    }
    c.eos = tokenizer_find_special(c.tok, "<|eos|>");
    c.separator = tokenizer_find_special(c.tok, "<|separator|>");
    if (c.separator < 0) {
        g2_fail(&err, "%s: the vocabulary has no <|separator|> token, which the chat format needs", o.model);
        goto done;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint; /* no SA_RESTART: Ctrl-C at the prompt interrupts the read */
    sigaction(SIGINT, &sa, NULL);
    bool interactive = isatty(STDIN_FILENO);
    if (interactive)
        fprintf(stderr, "grok2 chat: %s, context %u. Ctrl-C stops a reply, Ctrl-D ends.\n", o.model,
                grok_context_n_ctx(c.ctx));
    char *line;
    while ((line = read_line(interactive))) {
        if (!strcmp(line, "/quit")) {
            free(line);
            break;
        }
        if (!strcmp(line, "/reset")) {
            c.n_past = 0;
            c.reply_open = false;
            fprintf(stderr, "[new conversation]\n");
        } else if (line[0] && take_turn(&c, line, &err)) {
            fprintf(stderr, "grok2 chat: %s\n", err.msg);
        }
        free(line);
    }
    if (interactive) putchar('\n');
    rc = 0;
done:
    if (rc) fprintf(stderr, "grok2 chat: %s\n", err.msg);
    free(c.tokens);
    free(c.logits);
    sampler_free(c.sampling);
    grok_context_free(c.ctx);
    tokenizer_free(c.tok);
    grok_model_free(c.model);
    return rc;
}

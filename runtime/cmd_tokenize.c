/* `grok2 tokenize`: the ids and pieces of a text, as the model will see it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

static void tokenize_usage(FILE *out) {
    fprintf(out, "usage: grok2 tokenize -m MODEL.gguf [--no-special] [--ids] TEXT\n\n"
                 "Prints one line per token: the id, a tab, and the piece (bytes that are not printable\n"
                 "ASCII as \\xNN). --ids prints only the ids, comma-separated (for grok2 logits).\n\n"
                 "  -m, --model FILE   GGUF model (only its vocabulary is read)\n"
                 "  --no-special       treat special-token text such as <|eos|> as plain text\n"
                 "  --ids              ids only\n");
}

static void print_piece(const uint8_t *p, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\') putchar(p[i]);
        else printf("\\x%02x", p[i]);
    }
}

int cmd_tokenize(int argc, char **argv) {
    const char *model_path = NULL, *text = NULL;
    bool special = true, ids_only = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            tokenize_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--no-special")) {
            special = false;
        } else if (!strcmp(argv[i], "--ids")) {
            ids_only = true;
        } else if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc) {
            model_path = argv[++i];
        } else if (argv[i][0] == '-' || text) {
            fprintf(stderr, "grok2 tokenize: unexpected argument '%s'\n", argv[i]);
            tokenize_usage(stderr);
            return 2;
        } else {
            text = argv[i];
        }
    }
    if (!model_path || !text) {
        tokenize_usage(stderr);
        return 2;
    }
    g2_error err;
    gguf_file *f = NULL;
    tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 1;
    if (gguf_open(&f, model_path, &err) || tokenizer_from_gguf(&tok, f, &err) ||
        tokenizer_encode(tok, text, strlen(text), special, &ids, &n, &err)) {
        fprintf(stderr, "grok2 tokenize: %s\n", err.msg);
    } else {
        for (size_t i = 0; i < n; i++) {
            if (ids_only) {
                printf("%s%d", i ? "," : "", ids[i]);
                continue;
            }
            size_t len;
            const uint8_t *piece = tokenizer_piece(tok, ids[i], &len);
            printf("%d\t", ids[i]);
            print_piece(piece, len);
            putchar('\n');
        }
        if (ids_only) putchar('\n');
        rc = 0;
    }
    free(ids);
    tokenizer_free(tok);
    gguf_close(f);
    return rc;
}

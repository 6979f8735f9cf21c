/* The CLI dispatcher: the one file that sees both convert/ and runtime/. Each subcommand lives
 * in its folder as `int cmd_NAME(int argc, char **argv)` (argv[0] is the subcommand). */
#include <stdio.h>
#include <string.h>

#include "runtime.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} subcommand;

static const subcommand subcommands[] = {
    {"info", cmd_info, "show a GGUF file: metadata, tensors, bytes read per token"},
    {"logits", cmd_logits, "evaluate a token list and print logits (for numerical comparisons)"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: grok2 COMMAND [ARGS]\n\n"
                 "Run xAI's Grok-2 on a CPU workstation from a 4-bit GGUF file.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(out, "  %-12s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(out, "\n`grok2 COMMAND --help` describes one command.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        if (!strcmp(argv[1], subcommands[i].name)) return subcommands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "grok2: unknown command '%s' (see grok2 --help)\n", argv[1]);
    return 2;
}

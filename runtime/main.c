/* The CLI dispatcher: the one file that sees both convert/ and runtime/. Each subcommand lives
 * in its folder as `int cmd_NAME(int argc, char **argv)` (argv[0] is the subcommand). */
#include <stdio.h>
#include <string.h>

#include "../convert/convert.h"
#include "runtime.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} subcommand;

static const subcommand subcommands[] = {
    {"synth", cmd_synth, "write a synthetic Grok-2 checkpoint (any size, the release's layout) or GGUF"},
    {"convert", cmd_convert, "convert the Hugging Face release to a GGUF file (4-bit by default)"},
    {"quantize", cmd_quantize, "requantize a GGUF file to another type or mix"},
    {"info", cmd_info, "show a GGUF file: metadata, tensors, bytes read per token"},
    {"logits", cmd_logits, "evaluate a token list and print logits (for numerical comparisons)"},
    {"run", cmd_run, "generate text from a prompt"},
    {"chat", cmd_chat, "chat in Grok-2's format, on a terminal or a pipe"},
    {"perplexity", cmd_perplexity, "perplexity of a text file; KL divergence against a saved base"},
    {"tokenize", cmd_tokenize, "show the token ids and pieces of a text"},
    {"profile", cmd_profile, "per-layer, per-expert usage over a text, as JSON (for placement)"},
    {"bench", cmd_bench, "prompt and generation speed, bandwidth yield; --kernels for the kernels"},
};

/* `--isa NAME` may stand anywhere: it picks the kernel table before any command runs. */
static int take_isa_flag(int *argc, char **argv) {
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--isa")) continue;
        if (i + 1 >= *argc) {
            fprintf(stderr, "grok2: --isa needs a name: scalar, avx2, avx512, avx512vnni, neon, neondot\n");
            return -1;
        }
        char msg[256];
        if (simd_kernels_init(argv[i + 1], msg, sizeof msg)) {
            fprintf(stderr, "grok2: --isa %s: %s\n", argv[i + 1], msg);
            return -1;
        }
        memmove(argv + i, argv + i + 2, (size_t)(*argc - i - 1) * sizeof *argv); /* keeps argv[argc] NULL */
        *argc -= 2;
        i--;
    }
    return 0;
}

static void usage(FILE *out) {
    fprintf(out, "usage: grok2 COMMAND [ARGS]\n\n"
                 "Run xAI's Grok-2 on a CPU workstation from a 4-bit GGUF file.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(out, "  %-12s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(out, "\n`grok2 COMMAND --help` describes one command. `--isa NAME` anywhere (or GROK2_ISA=NAME)\n"
                 "forces a kernel set: scalar, avx2, avx512, avx512vnni, neon, neondot; `grok2 info --cpu`\n"
                 "shows what this CPU has.\n");
}

int main(int argc, char **argv) {
    if (take_isa_flag(&argc, argv)) return 2;
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

/* `grok2 convert HF_DIR -o OUT.gguf --type T`: the release (or a synthetic checkpoint) into one
 * GGUF file with llama.cpp's names and keys plus what the reference semantics need. */
#include <stdlib.h>
#include <string.h>

#include "convert.h"

static void usage(FILE *out) {
    fprintf(out, "usage: grok2 convert HF_DIR -o OUT.gguf [--type TYPE] [options]\n"
                 "\n"
                 "Converts the Grok-2 checkpoint in HF_DIR (config.json, tokenizer.tok.json and the\n"
                 "pytorch_model-*-TP-*.safetensors files, TP-split experts reassembled in rank order)\n"
                 "into a GGUF v3 file (arch \"grok\"). Every core quantizes; memory stays at a few\n"
                 "chunks of 64 MB whatever the model's size. The file is written under OUT.gguf.tmp\n"
                 "and renamed when complete; an error or Ctrl-C leaves nothing behind.\n"
                 "\n"
                 "types (norms and the router are F32 in all of them):\n");
    plan_print_mixes(out);
    fprintf(out, "\n"
                 "options:\n"
                 "  -o, --output OUT.gguf    the output file (not needed with --dry-run)\n"
                 "  --type TYPE              one of the types above (default q4_k_m)\n"
                 "  --tensor-type RE=TYPE    type for tensors whose GGUF name matches the POSIX\n"
                 "                           extended regex RE (first match wins; repeatable), e.g.\n"
                 "                           --tensor-type 'ffn_down_exps=q6_k'\n"
                 "  --threads N              worker threads (default: every CPU)\n"
                 "  --dry-run                print the plan (tensor, shape, type, bytes, file size)\n"
                 "  --force                  overwrite OUT.gguf if it exists\n"
                 "  -h, --help               this text\n"
                 "\n"
                 "Rows whose length is not a multiple of a type's block fall back to a smaller block\n"
                 "(q4_K -> q4_0, q5_K/q6_K -> q8_0, then bf16/f16), with a note per tensor.\n");
}

typedef struct {
    const char *dir, *type;
    write_options w;
} convert_options;

static int convert_option(void *options, int argc, char **argv, int *i, g2_error *err) {
    convert_options *o = options;
    const char *a = argv[*i];
    if (!strcmp(a, "--type")) return (o->type = cli_value(argc, argv, i, err)) ? 1 : -1;
    if (a[0] == '-' || o->dir) return 0;
    o->dir = a;
    return 1;
}

static int convert_check(void *options, g2_error *err) {
    const convert_options *o = options;
    if (!o->dir) return g2_fail(err, "HF_DIR is required");
    if (!o->w.out && !o->w.dry_run) return g2_fail(err, "-o OUT.gguf is required");
    if (!plan_mix_by_name(o->type)) return g2_fail(err, "unknown --type '%s'", o->type);
    return 0;
}

/* general.name: the checkpoint directory's name, as llama.cpp's converter does. */
static void model_name(const char *dir, char *buf, size_t size) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t start = n;
    while (start > 0 && dir[start - 1] != '/') start--;
    snprintf(buf, size, "%.*s", (int)(n - start), dir + start);
}

static int convert(void *options, g2_error *err) {
    const convert_options *o = options;
    const type_mix *mix = plan_mix_by_name(o->type);
    if (!o->w.dry_run && check_output_path(o->w.out, o->w.force, err)) return -1;
    hf_checkpoint *h;
    if (hf_checkpoint_open(o->dir, &h, err)) return -1;
    conv_tensor *t = NULL;
    int64_t n = 0;
    gguf_writer *w = NULL;
    int rc = hf_checkpoint_tensors(h, &t, &n, err);
    if (rc == 0) {
        plan_tensors(t, n, mix, &o->w.overrides, (int)h->config.n_layers);
        if (!(w = gguf_writer_new())) rc = g2_fail(err, "out of memory");
    }
    char name[256];
    model_name(o->dir, name, sizeof name);
    if (rc == 0) rc = meta_set_model(w, &h->config, name, plan_mix_file_type(mix), err);
    if (rc == 0 && h->has_vocab) rc = meta_set_tokenizer(w, &h->vocab, h->config.vocab, err);
    write_job job = {.label = "convert", .out_path = o->w.out, .dry_run = o->w.dry_run, .threads = (int)o->w.threads};
    if (rc == 0) rc = write_gguf(w, t, n, &job, err);
    gguf_writer_free(w);
    conv_tensors_free(t, n);
    hf_checkpoint_close(h);
    return rc;
}

int cmd_convert(int argc, char **argv) {
    static const write_command_def def = {"convert", usage, true, convert_option, convert_check, convert};
    convert_options o = {.type = "q4_k_m"};
    return write_command(&def, &o.w, &o, argc, argv);
}

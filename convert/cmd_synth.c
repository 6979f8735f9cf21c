/* `grok2 synth`: a Grok-2 checkpoint of any size in the release's exact layout, or the same
 * tensors straight into a GGUF, for tests and for trying hardware before downloading 500 GB. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: grok2 synth [PRESET] -o DIR [options]\n"
            "       grok2 synth [PRESET] --gguf TYPE -o FILE.gguf [options]\n"
            "\n"
            "Writes a synthetic Grok-2 checkpoint in the release's layout (bf16 safetensors named\n"
            "pytorch_model-NNNNN-TP-common / -TP-RRR, config.json with every key of the release,\n"
            "tokenizer.tok.json with a small real BPE vocabulary), or with --gguf the same tensors\n"
            "directly as a GGUF file. The same seed gives the same bytes.\n"
            "\n"
            "presets (default tiny):\n"
            "  tiny    hidden 256, 2 layers, 4/2 heads of 64, 4 experts (top 2) of 512, dense 1024,\n"
            "          vocab 512, TP 8: about 11 MB\n"
            "  mini    hidden 2048, 16 layers, 16/2 heads of 128, 8 experts of 4096, dense 8192,\n"
            "          vocab 32768, TP 8: about 8.6 GB\n"
            "  grok2   the release's shape: about 539 GB\n"
            "\n"
            "options:\n"
            "  -o, --output PATH      the directory (created if missing) or, with --gguf, the file\n"
            "  --gguf TYPE            write a GGUF of this type (f32, bf16, q8_0, q4_k_m, ...: the\n"
            "                         types of grok2 convert)\n"
            "  --tensor-type RE=TYPE  with --gguf: the type of tensors whose name matches RE\n"
            "  --dry-run              with --gguf: print the plan (tensors, types, file size) only\n"
            "  --seed N               random seed (default 1)\n"
            "  --router-skew X        make low-numbered experts hotter: expert 0's router logit is\n"
            "                         offset by about +15X, the last expert's by -15X (default 0)\n"
            "  --hidden N --layers N --heads N --kv-heads N --head-dim N --experts N\n"
            "  --experts-used N --expert-ff N --ff N --vocab N --tp N\n"
            "                         override one dimension of the preset (--tp: TP ranks the\n"
            "                         experts are split over; must divide --expert-ff)\n"
            "  --threads N            worker threads (default: every CPU)\n"
            "  --force                overwrite an existing checkpoint or file\n"
            "  -h, --help             this text\n");
}

typedef struct {
    const char *flag;
    size_t offset; /* into grok_config; SIZE_MAX: the TP rank count */
    int64_t max;
} dim_flag;

static const dim_flag dim_flags[] = {
    {"--hidden", offsetof(grok_config, hidden), 1 << 20},
    {"--layers", offsetof(grok_config, n_layers), 4096},
    {"--heads", offsetof(grok_config, n_head), 65536},
    {"--kv-heads", offsetof(grok_config, n_head_kv), 65536},
    {"--head-dim", offsetof(grok_config, head_dim), 65536},
    {"--experts", offsetof(grok_config, n_expert), 4096},
    {"--experts-used", offsetof(grok_config, n_expert_used), 4096},
    {"--expert-ff", offsetof(grok_config, expert_ff), 1 << 24},
    {"--ff", offsetof(grok_config, ff), 1 << 24},
    {"--vocab", offsetof(grok_config, vocab), TOK_MAX_ID},
    {"--tp", SIZE_MAX, 4096},
};

#define N_DIM_FLAGS (sizeof dim_flags / sizeof dim_flags[0])

typedef struct {
    const char *preset, *gguf_type;
    synth_model model;
    write_options w;
    /* while parsing: the dimensions given, applied to the preset at the end */
    int64_t dims[N_DIM_FLAGS];
    bool dim_set[N_DIM_FLAGS], preset_given;
} synth_options;

static int synth_option(void *options, int argc, char **argv, int *i, g2_error *err) {
    synth_options *o = options;
    const char *a = argv[*i], *v;
    size_t k;
    for (k = 0; k < N_DIM_FLAGS && strcmp(a, dim_flags[k].flag); k++) {}
    if (k < N_DIM_FLAGS) {
        if (!(v = cli_value(argc, argv, i, err)) || cli_parse_int(a, v, 1, dim_flags[k].max, &o->dims[k], err)) return -1;
        o->dim_set[k] = true;
    } else if (!strcmp(a, "--gguf")) {
        if (!(o->gguf_type = cli_value(argc, argv, i, err))) return -1;
    } else if (!strcmp(a, "--seed")) {
        int64_t seed;
        if (!(v = cli_value(argc, argv, i, err)) || cli_parse_int(a, v, 0, INT64_MAX, &seed, err)) return -1;
        o->model.seed = (uint64_t)seed;
    } else if (!strcmp(a, "--router-skew")) {
        if (!(v = cli_value(argc, argv, i, err)) || cli_parse_double(a, v, &o->model.router_skew, err)) return -1;
    } else if (a[0] != '-' && !o->preset_given) {
        o->preset = a;
        o->preset_given = true;
    } else {
        return 0;
    }
    return 1;
}

static int synth_check(void *options, g2_error *err) {
    synth_options *o = options;
    if (synth_preset(o->preset, &o->model.config, &o->model.tp))
        return g2_fail(err, "unknown preset '%s' (tiny, mini or grok2)", o->preset);
    for (size_t k = 0; k < N_DIM_FLAGS; k++)
        if (o->dim_set[k]) {
            if (dim_flags[k].offset == SIZE_MAX) o->model.tp = (int)o->dims[k];
            else *(int64_t *)((char *)&o->model.config + dim_flags[k].offset) = o->dims[k];
        }
    if (!o->w.out) return g2_fail(err, "-o DIR (or -o FILE.gguf with --gguf) is required");
    if (o->w.overrides.count && !o->gguf_type) return g2_fail(err, "--tensor-type applies to --gguf only");
    if (o->w.dry_run && !o->gguf_type) return g2_fail(err, "--dry-run applies to --gguf only");
    return 0;
}

/* Dimensions that presets and overrides must respect. */
static int check_model(synth_model *m, g2_error *err) {
    grok_config *c = &m->config;
    c->embedding_scale = sqrt((double)c->hidden); /* as in the release: sqrt(hidden_size) */
    c->attn_output_scale = 1.0 / sqrt((double)c->head_dim);
    if (grok_config_check(c, err)) return -1;
    if (c->expert_ff % m->tp)
        return g2_fail(err, "--expert-ff %lld is not divisible by --tp %d", (long long)c->expert_ff, m->tp);
    if (c->vocab < TOK_SYNTH_MIN_VOCAB)
        return g2_fail(err, "--vocab %lld: the synthetic tokenizer needs at least %d ids", (long long)c->vocab,
                       TOK_SYNTH_MIN_VOCAB);
    return 0;
}

/* The output directory: created if missing; an existing checkpoint only replaced with --force
 * (its safetensors are removed first, so a smaller --tp leaves no stale shards). */
static int prepare_dir(const char *dir, bool force, g2_error *err) {
    if (mkdir(dir, 0755) == 0) return 0;
    if (errno != EEXIST) return g2_fail(err, "%s: %s", dir, strerror(errno));
    DIR *d = opendir(dir);
    if (!d) return g2_fail(err, "%s: %s", dir, strerror(errno));
    int rc = 0;
    for (struct dirent *e; (e = readdir(d)) && rc == 0;) {
        bool ours = !strcmp(e->d_name, "config.json") || !strcmp(e->d_name, "tokenizer.tok.json") ||
                    (!strncmp(e->d_name, "pytorch_model-", 14) && strstr(e->d_name, ".safetensors"));
        if (!ours) continue;
        if (!force) {
            rc = g2_fail(err, "%s already holds a checkpoint (use --force to replace it)", dir);
            break;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0) rc = g2_fail(err, "%s: %s", path, strerror(errno));
    }
    closedir(d);
    return rc;
}

static int write_synth_gguf(const synth_options *o, const tok_vocab *v, thread_pool *pool, g2_error *err) {
    const type_mix *mix = plan_mix_by_name(o->gguf_type);
    if (!mix) return g2_fail(err, "--gguf: unknown type '%s' (see grok2 convert --help)", o->gguf_type);
    conv_tensor *t;
    int64_t n;
    if (synth_tensors(&o->model, &t, &n, err)) return -1;
    plan_tensors(t, n, mix, &o->w.overrides, (int)o->model.config.n_layers);
    gguf_writer *w = gguf_writer_new();
    char name[64];
    snprintf(name, sizeof name, "grok2-synth-%s", o->preset);
    int rc = w ? 0 : g2_fail(err, "out of memory");
    if (rc == 0) rc = meta_set_model(w, &o->model.config, name, plan_mix_file_type(mix), err);
    if (rc == 0) rc = meta_set_tokenizer(w, v, o->model.config.vocab, err);
    write_job job = {.label = "synth", .out_path = o->w.out, .dry_run = o->w.dry_run, .pool = pool};
    if (rc == 0) rc = write_gguf(w, t, n, &job, err);
    gguf_writer_free(w);
    conv_tensors_free(t, n);
    return rc;
}

static int synth(void *options, g2_error *err) {
    synth_options *o = options;
    tok_vocab vocab = {0};
    thread_pool *pool = NULL;
    int rc = check_model(&o->model, err);
    if (rc == 0 && !o->w.dry_run)
        rc = o->gguf_type ? check_output_path(o->w.out, o->w.force, err) : prepare_dir(o->w.out, o->w.force, err);
    if (rc == 0) rc = tok_vocab_synthesize(&vocab, o->model.config.vocab, err);
    if (rc == 0 && !(pool = thread_pool_new((int)o->w.threads))) rc = g2_fail(err, "cannot start threads");
    if (rc == 0) rc = o->gguf_type ? write_synth_gguf(o, &vocab, pool, err)
                                   : synth_write_checkpoint(&o->model, &vocab, o->w.out, pool, false, err);
    if (rc == 0 && !o->gguf_type)
        fprintf(stderr, "synth: %s checkpoint in %s (seed %llu; tokenizer: %lld merges learned, %lld specials)\n",
                o->preset, o->w.out, (unsigned long long)o->model.seed, (long long)(vocab.n_regular - 256),
                (long long)vocab.n_special);
    thread_pool_free(pool);
    tok_vocab_free(&vocab);
    return rc;
}

int cmd_synth(int argc, char **argv) {
    static const write_command_def def = {"synth", usage, true, synth_option, synth_check, synth};
    synth_options o = {.preset = "tiny", .model.seed = 1};
    return write_command(&def, &o.w, &o, argc, argv);
}

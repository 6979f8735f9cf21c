/* `grok2 quantize IN.gguf OUT.gguf TYPE`: requantizes a GGUF with the same type mixes and
 * overrides as convert. Every kv is copied (general.file_type updated); tensors already in their
 * planned type are copied byte for byte; quantized tensors are only decoded and re-encoded with
 * --allow-requantize, since that compounds the error of two quantizations. */
#include <stdlib.h>
#include <string.h>

#include "convert.h"

static void usage(FILE *out) {
    fprintf(out, "usage: grok2 quantize IN.gguf OUT.gguf TYPE [options]\n"
                 "\n"
                 "Requantizes IN.gguf (best from f32, bf16 or f16 tensors) to TYPE, with the same\n"
                 "per-tensor mixes as grok2 convert. Metadata is copied; general.file_type is updated.\n"
                 "\n"
                 "types (norms and the router are F32 in all of them):\n");
    plan_print_mixes(out);
    fprintf(out, "\n"
                 "options:\n"
                 "  --allow-requantize       also re-encode tensors that are already quantized\n"
                 "                           (decoded first; the errors add up)\n"
                 "  --tensor-type RE=TYPE    type for tensors whose name matches RE (first match wins)\n"
                 "  --threads N              worker threads (default: every CPU)\n"
                 "  --dry-run                print the plan without writing\n"
                 "  --force                  overwrite OUT.gguf if it exists\n"
                 "  -h, --help               this text\n");
}

typedef struct {
    const char *in, *type;
    write_options w; /* w.out: the second positional argument */
    bool allow_requantize;
    int n_positional;
} quantize_options;

static int quantize_option(void *options, int argc, char **argv, int *i, g2_error *err) {
    quantize_options *o = options;
    const char *a = argv[*i];
    const char **positional[] = {&o->in, &o->w.out, &o->type};
    if (!strcmp(a, "--allow-requantize")) o->allow_requantize = true;
    else if (a[0] != '-' && o->n_positional < 3) *positional[o->n_positional++] = a;
    else return 0;
    return 1;
}

static int quantize_check(void *options, g2_error *err) {
    const quantize_options *o = options;
    if (o->n_positional < 3) return g2_fail(err, "IN.gguf, OUT.gguf and TYPE are required");
    if (!plan_mix_by_name(o->type)) return g2_fail(err, "unknown TYPE '%s'", o->type);
    return 0;
}

static bool plain_float(uint32_t type) {
    return type == G2_TYPE_F32 || type == G2_TYPE_F16 || type == G2_TYPE_BF16;
}

static int input_tensors(const gguf_file *f, conv_tensor **out, int64_t *n_out, g2_error *err) {
    int64_t n = gguf_tensor_count(f);
    conv_tensor *ts = calloc((size_t)(n ? n : 1), sizeof *ts);
    if (!ts) return g2_fail(err, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        const gguf_tensor *g = gguf_tensor_at(f, i);
        conv_tensor *t = &ts[i];
        memcpy(t->name, g->name, sizeof t->name);
        t->n_dims = g->n_dims;
        memcpy(t->ne, g->ne, sizeof t->ne);
        t->role = grok_parse_gguf_name(g->name, &t->layer);
        t->src_type = g->type;
        t->src_bytes = g->nbytes;
        t->src = (tensor_source){.kind = SOURCE_GGUF, .ne0 = g->ne[0], .n_rows = g->ne[1] * g->ne[2] * g->ne[3],
                                 .gguf = g, .gguf_mapped = true};
    }
    *out = ts;
    *n_out = n;
    return 0;
}

/* Every tensor that must be decoded can be, and is allowed to be. */
static int check_requantize(const conv_tensor *t, int64_t n, bool allow, const char *path, g2_error *err) {
    for (int64_t i = 0; i < n; i++) {
        if (t[i].type.type == t[i].src_type) continue; /* copied as is */
        const g2_type_traits *src = g2_type_get(t[i].src_type);
        if (!src->to_float)
            return g2_fail(err, "%s: tensor '%s' is %s, which this build cannot decode", path, t[i].name, src->name);
        if (!plain_float(t[i].src_type) && !allow)
            return g2_fail(err, "%s: tensor '%s' is already %s; re-encoding it as %s adds a second rounding "
                                "(use --allow-requantize to do it anyway)",
                           path, t[i].name, src->name, g2_type_get(t[i].type.type)->name);
    }
    return 0;
}

static int n_layers_of(const gguf_file *f, const conv_tensor *t, int64_t n) {
    uint32_t layers;
    if (gguf_get_u32(f, "grok.block_count", &layers, NULL) == 0) return (int)layers;
    int max = -1;
    for (int64_t i = 0; i < n; i++)
        if (t[i].layer > max) max = t[i].layer;
    return max + 1;
}

static int copy_metadata(gguf_writer *w, const gguf_file *f, const type_mix *mix, g2_error *err) {
    if (gguf_writer_set_alignment(w, gguf_alignment(f), err) ||
        gguf_writer_set_u32(w, "general.file_type", plan_mix_file_type(mix), err) ||
        gguf_writer_set_u32(w, "general.quantization_version", 2, err))
        return -1;
    for (int64_t i = 0; i < gguf_kv_count(f); i++) {
        gguf_str key = gguf_kv_key(f, i);
        if (key.len == 17 && !memcmp(key.data, "general.alignment", 17)) continue; /* set above */
        if (gguf_writer_copy_kv(w, f, i, err)) return -1;
    }
    return 0;
}

static int quantize(void *options, g2_error *err) {
    const quantize_options *o = options;
    const type_mix *mix = plan_mix_by_name(o->type);
    if (!o->w.dry_run && check_output_path(o->w.out, o->w.force, err)) return -1;
    if (!o->w.dry_run && !strcmp(o->in, o->w.out)) return g2_fail(err, "IN and OUT are the same file");
    gguf_file *f;
    if (gguf_open(&f, o->in, err)) return -1;
    conv_tensor *t = NULL;
    int64_t n = 0;
    gguf_writer *w = NULL;
    int rc = input_tensors(f, &t, &n, err);
    if (rc == 0) {
        plan_tensors(t, n, mix, &o->w.overrides, n_layers_of(f, t, n));
        rc = check_requantize(t, n, o->allow_requantize, o->in, err);
    }
    if (rc == 0 && !(w = gguf_writer_new())) rc = g2_fail(err, "out of memory");
    if (rc == 0) rc = copy_metadata(w, f, mix, err);
    write_job job = {.label = "quantize", .out_path = o->w.out, .dry_run = o->w.dry_run, .threads = (int)o->w.threads};
    if (rc == 0) rc = write_gguf(w, t, n, &job, err);
    gguf_writer_free(w);
    conv_tensors_free(t, n);
    gguf_close(f);
    return rc;
}

int cmd_quantize(int argc, char **argv) {
    static const write_command_def def = {"quantize", usage, false, quantize_option, quantize_check, quantize};
    quantize_options o = {0};
    return write_command(&def, &o.w, &o, argc, argv);
}

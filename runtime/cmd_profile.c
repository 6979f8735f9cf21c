/* `grok2 profile`: evaluates a text and writes how often each layer's router chose each expert,
 * as JSON, for placement work (which experts to keep resident, which to put on which node). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

static void profile_usage(FILE *out) {
    fprintf(out,
            "usage: grok2 profile -m MODEL.gguf -f FILE -o OUT.json [options]\n\n"
            "Tokenizes FILE, evaluates it in chunks of --ctx tokens (each from position 0, as\n"
            "perplexity does) and writes per layer, per expert, the number of tokens the router\n"
            "sent to that expert:\n"
            "  {\"model\": PATH, \"tokens\": N, \"expert_count\": E, \"expert_used_count\": K,\n"
            "   \"layers\": [{\"layer\": 0, \"counts\": [c0, ..., cE-1]}, ...]}\n"
            "Each layer's counts sum to tokens x K.\n\n"
            "  -m, --model FILE     GGUF model\n"
            "  -f, --file FILE      text to evaluate\n"
            "  -o, --output FILE    the JSON file to write\n"
            "  --ctx N              tokens per chunk (default 512)\n"
            "  --chunks N           evaluate at most N chunks (default: all)\n"
            "  --kv-type T          KV cache type: f16 (default), f32, bf16\n"
            "  -t, --threads N      threads (default: all cores)\n");
    fputs(memory_flags_help, out);
}

typedef struct {
    const char *model, *file, *output;
    uint32_t n_ctx, max_chunks;
    grok_context_params ctx;
} profile_options;

/* Where the value of a flag goes: a text or a number field of o, or neither (NULL). */
static const char **text_field(profile_options *o, const char *flag) {
    if (!strcmp(flag, "-f") || !strcmp(flag, "--file")) return &o->file;
    if (!strcmp(flag, "-o") || !strcmp(flag, "--output")) return &o->output;
    return NULL;
}

static uint32_t *number_field(profile_options *o, const char *flag) {
    return !strcmp(flag, "--ctx") ? &o->n_ctx : !strcmp(flag, "--chunks") ? &o->max_chunks : NULL;
}

static int parse_profile_options(int argc, char **argv, profile_options *o) {
    o->n_ctx = 512;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], **text;
        uint32_t *number;
        int shared;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            profile_usage(stdout);
            exit(0);
        } else if ((shared = cli_model_flag("profile", argc, argv, &i, &o->model, &o->ctx)) != 0) {
            if (shared < 0) return -1;
        } else if ((text = text_field(o, a))) {
            *text = argv[++i];
        } else if ((number = number_field(o, a))) {
            if (cli_u32("profile", a, argv[++i], number)) return -1;
        } else {
            fprintf(stderr, "grok2 profile: unknown option '%s'\n", a);
            return -1;
        }
    }
    if (!o->model || !o->file || !o->output) {
        fprintf(stderr, "grok2 profile: -m MODEL, -f FILE and -o OUT.json are required\n");
        return -1;
    }
    if (o->n_ctx == 0) {
        fprintf(stderr, "grok2 profile: --ctx must be at least 1\n");
        return -1;
    }
    return 0;
}

static cJSON *usage_json(const char *model, const grok_expert_stats *st) {
    cJSON *root = cJSON_CreateObject(), *layers = cJSON_CreateArray();
    cJSON_AddStringToObject(root, "model", model);
    cJSON_AddNumberToObject(root, "tokens", (double)st->tokens);
    cJSON_AddNumberToObject(root, "expert_count", st->n_expert);
    cJSON_AddNumberToObject(root, "expert_used_count", st->n_expert_used);
    cJSON_AddItemToObject(root, "layers", layers);
    for (uint32_t l = 0; l < st->n_layer; l++) {
        cJSON *layer = cJSON_CreateObject(), *counts = cJSON_CreateArray();
        cJSON_AddNumberToObject(layer, "layer", l);
        for (uint32_t e = 0; e < st->n_expert; e++)
            cJSON_AddItemToArray(counts, cJSON_CreateNumber((double)st->usage[(size_t)l * st->n_expert + e]));
        cJSON_AddItemToObject(layer, "counts", counts);
        cJSON_AddItemToArray(layers, layer);
    }
    return root;
}

static int write_json(const char *path, cJSON *root, g2_error *err) {
    char *text = cJSON_Print(root);
    if (!text) return g2_fail(err, "out of memory writing %s", path);
    FILE *f = fopen(path, "w");
    bool ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f)) ok = false;
    free(text);
    return ok ? 0 : g2_fail(err, "%s: cannot write", path);
}

int cmd_profile(int argc, char **argv) {
    profile_options o = {0};
    if (parse_profile_options(argc, argv, &o)) {
        profile_usage(stderr);
        return 2;
    }
    g2_error err;
    int rc = 1;
    cli_session profile = {0};
    int32_t *ids = NULL;
    size_t n_ids = 0;
    cJSON *json = NULL;
    if (cli_session_open(&profile, o.model, true, &err) ||
        cli_session_encode_file(&profile, o.file, &ids, &n_ids, &err))
        goto done;
    if (n_ids == 0) {
        g2_fail(&err, "%s: no tokens to evaluate (empty text)", o.file);
        goto done;
    }
    o.ctx.n_ctx = o.n_ctx < n_ids ? o.n_ctx : (uint32_t)n_ids;
    if (cli_session_context(&profile, &o.ctx, &err)) goto done;
    double t0 = cli_now_seconds();
    uint32_t chunks = 0;
    for (size_t start = 0; start < n_ids && (!o.max_chunks || chunks < o.max_chunks); start += o.ctx.n_ctx, chunks++) {
        uint32_t n = n_ids - start < o.ctx.n_ctx ? (uint32_t)(n_ids - start) : o.ctx.n_ctx;
        if (grok_eval(profile.ctx, ids + start, n, 0, NULL, false, &err)) goto done; /* the routing is all we want */
    }
    const grok_expert_stats *st = grok_context_expert_stats(profile.ctx);
    json = usage_json(o.model, st);
    if (!json || write_json(o.output, json, &err)) goto done;
    fprintf(stderr, "grok2 profile: %llu tokens in %u chunks, %.1f s: wrote %s\n", (unsigned long long)st->tokens,
            chunks, cli_now_seconds() - t0, o.output);
    rc = 0;
done:
    if (rc) fprintf(stderr, "grok2 profile: %s\n", err.msg);
    cJSON_Delete(json);
    free(ids);
    cli_session_close(&profile);
    return rc;
}

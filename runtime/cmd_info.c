/* `grok2 info`: what a GGUF file holds and what it costs to run. For a Grok model the tensors
 * split into always-on weights (read for every token) and routed experts (only expert_used of
 * expert_count read per token), which decides decode speed: tokens/s <= bandwidth / bytes. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

#define ARRAY_PREVIEW 8 /* elements shown of a long array */

typedef struct {
    uint64_t bytes_by_type[G2_TYPE_ID_LIMIT];
    uint64_t tensors_by_type[G2_TYPE_ID_LIMIT];
    uint64_t total_bytes, total_params;
    uint64_t always_on_bytes; /* read for every token */
    uint64_t expert_bytes;    /* all routed experts */
    uint64_t embedding_row_bytes;
    uint32_t expert_count, expert_used;
    bool is_grok;
} weight_census;

static uint64_t tensor_elements(const gguf_tensor *t) {
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) n *= (uint64_t)t->ne[d];
    return n;
}

static bool is_expert_tensor(const char *name) { return strstr(name, "_exps.") != NULL; }

static void take_census(const gguf_file *f, weight_census *c) {
    memset(c, 0, sizeof *c);
    gguf_str arch;
    c->is_grok = gguf_get_str(f, "general.architecture", &arch, NULL) == 0 && arch.len == 4 &&
                 !memcmp(arch.data, "grok", 4);
    if (c->is_grok) {
        if (gguf_get_u32(f, "grok.expert_count", &c->expert_count, NULL)) c->expert_count = 0;
        if (gguf_get_u32(f, "grok.expert_used_count", &c->expert_used, NULL)) c->expert_used = 0;
    }
    for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        c->bytes_by_type[t->type] += t->nbytes;
        c->tensors_by_type[t->type]++;
        c->total_bytes += t->nbytes;
        c->total_params += tensor_elements(t);
        if (is_expert_tensor(t->name)) {
            c->expert_bytes += t->nbytes;
        } else if (!strcmp(t->name, "token_embd.weight")) {
            /* decode gathers one row of the embedding per token, not the matrix */
            c->embedding_row_bytes = g2_row_size(t->type, t->ne[0]);
            c->always_on_bytes += c->embedding_row_bytes;
        } else {
            c->always_on_bytes += t->nbytes;
        }
    }
}

static double bytes_per_token(const weight_census *c) {
    double routed = c->expert_count ? (double)c->expert_bytes * c->expert_used / c->expert_count : 0;
    return (double)c->always_on_bytes + routed;
}

static void format_shape(const gguf_tensor *t, char *buf, size_t size) {
    int n = snprintf(buf, size, "[");
    for (uint32_t d = 0; d < t->n_dims && n > 0 && (size_t)n < size; d++)
        n += snprintf(buf + n, size - (size_t)n, "%s%" PRId64, d ? ", " : "", t->ne[d]);
    if (n > 0 && (size_t)n < size) snprintf(buf + n, size - (size_t)n, "]");
}

static const char *type_name(uint32_t id) { return g2_type_get(id)->name; }

/* For a Grok file: the semantics it will run with, or why it cannot run. */
static void describe_semantics(const gguf_file *f, char *buf, size_t size) {
    grok_model *m;
    g2_error err;
    if (grok_model_load(&m, gguf_path(f), &err)) {
        snprintf(buf, size, "cannot run: %s", err.msg);
        return;
    }
    snprintf(buf, size, "%s", m->semantics);
    grok_model_free(m);
}

static void print_text(const gguf_file *f, const weight_census *c, double bandwidth_gbps) {
    printf("file        %s\n", gguf_path(f));
    printf("version     %u\n", gguf_version(f));
    printf("size        %" PRIu64 " bytes (%.2f GiB)\n", gguf_file_size(f), gguf_file_size(f) / 1073741824.0);
    printf("alignment   %u\n", gguf_alignment(f));
    printf("data at     %" PRIu64 "\n", gguf_data_offset(f));
    printf("\nmetadata (%" PRId64 " keys)\n", gguf_kv_count(f));
    for (int64_t i = 0; i < gguf_kv_count(f); i++) {
        gguf_str key = gguf_kv_key(f, i);
        char value[256];
        gguf_kv_format(f, i, value, sizeof value);
        printf("  %-48.*s %s\n", (int)key.len, key.data, value);
    }
    printf("\ntensors (%" PRId64 ")\n", gguf_tensor_count(f));
    printf("  %-40s %-8s %-28s %14s\n", "name", "type", "shape", "bytes");
    for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char shape[96];
        format_shape(t, shape, sizeof shape);
        printf("  %-40s %-8s %-28s %14zu\n", t->name, type_name(t->type), shape, t->nbytes);
    }
    printf("\nbytes by type\n");
    for (uint32_t id = 0; id < G2_TYPE_ID_LIMIT; id++)
        if (c->tensors_by_type[id])
            printf("  %-8s %5" PRIu64 " tensors %16" PRIu64 " bytes %6.2f%%\n", type_name(id), c->tensors_by_type[id],
                   c->bytes_by_type[id], c->total_bytes ? 100.0 * c->bytes_by_type[id] / c->total_bytes : 0.0);
    printf("  total    %" PRIu64 " parameters, %" PRIu64 " bytes, %.3f bits per weight\n", c->total_params,
           c->total_bytes, c->total_params ? 8.0 * c->total_bytes / c->total_params : 0.0);
    if (!c->is_grok) return;
    char semantics[1100];
    describe_semantics(f, semantics, sizeof semantics);
    printf("\nsemantics   %s\n", semantics);
    double per_token = bytes_per_token(c);
    printf("\ndecode cost (Grok: %u of %u experts read per token)\n", c->expert_used, c->expert_count);
    printf("  always-on weights   %16" PRIu64 " bytes read per token (embedding: one row)\n", c->always_on_bytes);
    printf("  routed experts      %16" PRIu64 " bytes in all, %.0f read per token\n", c->expert_bytes,
           per_token - (double)c->always_on_bytes);
    printf("  read per token      %16.0f bytes (%.2f GB)\n", per_token, per_token / 1e9);
    if (bandwidth_gbps > 0) {
        printf("  at %.1f GB/s        %.2f tokens/s at most\n", bandwidth_gbps, bandwidth_gbps * 1e9 / per_token);
    } else {
        static const double examples[] = {50, 100, 200, 400};
        for (size_t i = 0; i < sizeof examples / sizeof examples[0]; i++)
            printf("  at %5.0f GB/s       %8.2f tokens/s at most\n", examples[i], examples[i] * 1e9 / per_token);
    }
}

static cJSON *kv_to_json(const gguf_file *f, int64_t i) {
    gguf_str s;
    gguf_array arr;
    if (gguf_kv_as_str(f, i, &s) == 0) {
        char *copy = strndup(s.data, s.len);
        cJSON *j = cJSON_CreateString(copy ? copy : "");
        free(copy);
        return j;
    }
    if (gguf_kv_as_array(f, i, &arr) == 0) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "array_of", gguf_value_type_name(arr.elem_type));
        cJSON_AddNumberToObject(j, "count", (double)arr.count);
        return j;
    }
    char text[128];
    gguf_kv_format(f, i, text, sizeof text);
    if (gguf_kv_type(f, i) == GGUF_TYPE_BOOL) return cJSON_CreateBool(!strcmp(text, "true"));
    return cJSON_CreateNumber(strtod(text, NULL));
}

static int print_json(const gguf_file *f, const weight_census *c, double bandwidth_gbps) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "file", gguf_path(f));
    cJSON_AddNumberToObject(root, "version", gguf_version(f));
    cJSON_AddNumberToObject(root, "size", (double)gguf_file_size(f));
    cJSON_AddNumberToObject(root, "alignment", gguf_alignment(f));
    cJSON *meta = cJSON_AddObjectToObject(root, "metadata");
    for (int64_t i = 0; i < gguf_kv_count(f); i++) {
        gguf_str key = gguf_kv_key(f, i);
        char *name = strndup(key.data, key.len);
        cJSON_AddItemToObject(meta, name ? name : "", kv_to_json(f, i));
        free(name);
    }
    cJSON *tensors = cJSON_AddArrayToObject(root, "tensors");
    for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        cJSON *jt = cJSON_CreateObject();
        cJSON_AddStringToObject(jt, "name", t->name);
        cJSON_AddStringToObject(jt, "type", type_name(t->type));
        cJSON *shape = cJSON_AddArrayToObject(jt, "shape");
        for (uint32_t d = 0; d < t->n_dims; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->ne[d]));
        cJSON_AddNumberToObject(jt, "offset", (double)t->offset);
        cJSON_AddNumberToObject(jt, "bytes", (double)t->nbytes);
        cJSON_AddItemToArray(tensors, jt);
    }
    cJSON_AddNumberToObject(root, "parameters", (double)c->total_params);
    cJSON_AddNumberToObject(root, "weight_bytes", (double)c->total_bytes);
    if (c->is_grok) {
        char semantics[1100];
        describe_semantics(f, semantics, sizeof semantics);
        cJSON_AddStringToObject(root, "semantics", semantics);
        cJSON *d = cJSON_AddObjectToObject(root, "decode");
        cJSON_AddNumberToObject(d, "expert_count", c->expert_count);
        cJSON_AddNumberToObject(d, "expert_used", c->expert_used);
        cJSON_AddNumberToObject(d, "always_on_bytes_per_token", (double)c->always_on_bytes);
        cJSON_AddNumberToObject(d, "expert_bytes", (double)c->expert_bytes);
        cJSON_AddNumberToObject(d, "bytes_per_token", bytes_per_token(c));
        if (bandwidth_gbps > 0) {
            cJSON_AddNumberToObject(d, "bandwidth_gbps", bandwidth_gbps);
            cJSON_AddNumberToObject(d, "max_tokens_per_second", bandwidth_gbps * 1e9 / bytes_per_token(c));
        }
    }
    char *text = cJSON_Print(root);
    int rc = text ? 0 : 1;
    if (text) puts(text);
    free(text);
    cJSON_Delete(root);
    return rc;
}

static void info_usage(FILE *out) {
    fprintf(out, "usage: grok2 info FILE.gguf [--json] [--bandwidth GBPS]\n"
                 "       grok2 info FILE.gguf --numa\n"
                 "       grok2 info --cpu\n\n"
                 "Shows a GGUF file: header, metadata (long arrays abbreviated), tensors (name, type,\n"
                 "shape, bytes), bytes by type, and for a Grok model the weights read per generated\n"
                 "token (always-on + the used share of the experts) with the decode speed that a\n"
                 "memory bandwidth allows.\n\n"
                 "  --json            machine-readable output\n"
                 "  --bandwidth GBPS  memory read bandwidth for the speed bound (default: a few examples)\n"
                 "  --cpu             the CPU features found, the kernels chosen and the\n"
                 "                    back-end --gemm auto gives each weight type\n"
                 "  --numa            the NUMA nodes, the plan the model commands would use (their\n"
                 "                    default --numa auto; GROK2_FAKE_NUMA=N pretends N nodes) and,\n"
                 "                    when sharded, where each node's share of the weights lives now\n"
                 "                    (pages in the page cache, sampled with move_pages; nothing is\n"
                 "                    read from disk)\n");
}

/* The NUMA plan of a context on this model, and where its shares' pages are. */
static int print_numa(const char *path) {
    grok_model *m;
    grok_context *ctx;
    g2_error err;
    grok_context_params params = {.n_ctx = 1};
    if (grok_model_load(&m, path, &err)) {
        fprintf(stderr, "grok2 info: %s\n", err.msg);
        return 1;
    }
    if (grok_context_new(&ctx, m, &params, &err)) {
        fprintf(stderr, "grok2 info: %s\n", err.msg);
        grok_model_free(m);
        return 1;
    }
    char report[4096];
    grok_context_numa_report(ctx, true, report, sizeof report);
    puts(report);
    grok_context_free(ctx);
    grok_model_free(m);
    return 0;
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    bool json = false, numa = false;
    double bandwidth = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            info_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "--numa")) {
            numa = true;
        } else if (!strcmp(argv[i], "--cpu")) {
            char line[512];
            gemm_describe_auto(line, sizeof line); /* first: tests read the kernels' line to its end */
            puts(line);
            simd_kernels_get(); /* the choice, as the other commands would make it */
            simd_describe(line, sizeof line);
            puts(line);
            return 0;
        } else if (!strcmp(argv[i], "--bandwidth") && i + 1 < argc) {
            char *end;
            bandwidth = strtod(argv[++i], &end);
            if (*end || !(bandwidth > 0)) {
                fprintf(stderr, "grok2 info: --bandwidth wants a positive number of GB/s, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "grok2 info: unexpected argument '%s'\n", argv[i]);
            info_usage(stderr);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        info_usage(stderr);
        return 2;
    }
    if (numa) return print_numa(path);
    gguf_file *f;
    g2_error err;
    if (gguf_open(&f, path, &err)) {
        fprintf(stderr, "grok2 info: %s\n", err.msg);
        return 1;
    }
    weight_census census;
    take_census(f, &census);
    int rc = 0;
    if (json)
        rc = print_json(f, &census, bandwidth);
    else
        print_text(f, &census, bandwidth);
    gguf_close(f);
    return rc;
}

/* Small helpers shared by the commands. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime.h"

double cli_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

char *cli_read_file(const char *path, size_t *len, g2_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        g2_fail(err, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            char *grown = realloc(buf, cap *= 2);
            if (!grown) free(buf);
            buf = grown;
        }
    }
    const char *problem = !buf ? "out of memory" : ferror(f) ? strerror(errno) : NULL;
    fclose(f);
    if (problem) {
        g2_fail(err, "%s: cannot read: %s", path, problem);
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

int cli_u32(const char *command, const char *flag, const char *value, uint32_t *out) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(value, &end, 10);
    if (*end || end == value || errno || v > UINT32_MAX || value[0] == '-') {
        fprintf(stderr, "grok2 %s: %s wants a non-negative integer, got '%s'\n", command, flag, value);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

int cli_session_open(cli_session *s, const char *model_path, bool with_tokenizer, g2_error *err) {
    if (grok_model_load(&s->model, model_path, err)) return -1;
    return with_tokenizer ? tokenizer_from_gguf(&s->tok, s->model->file, err) : 0;
}

int cli_session_encode_file(cli_session *s, const char *path, int32_t **ids, size_t *n_ids, g2_error *err) {
    size_t len;
    char *text = cli_read_file(path, &len, err);
    int rc = text ? tokenizer_encode(s->tok, text, len, false, ids, n_ids, err) : -1;
    free(text);
    return rc;
}

int cli_session_context(cli_session *s, const grok_context_params *p, g2_error *err) {
    return grok_context_new(&s->ctx, s->model, p, err);
}

void cli_session_close(cli_session *s) {
    grok_context_free(s->ctx);
    tokenizer_free(s->tok);
    grok_model_free(s->model);
    *s = (cli_session){0};
}

static int expert_context_flag(const char *command, const char *flag, const char *value, grok_context_params *p);

int cli_context_flag(const char *command, const char *flag, const char *value, grok_context_params *p) {
    int expert_flag = expert_context_flag(command, flag, value, p);
    if (expert_flag) return expert_flag;
    if (!strcmp(flag, "--kv-type")) {
        if (kv_cache_type_parse(value, &p->kv_type) == 0) return 1;
        fprintf(stderr, "grok2 %s: --kv-type is f16, f32 or bf16, not '%s'\n", command, value);
        return -1;
    }
    if (!strcmp(flag, "--numa")) {
        if (numa_mode_parse(value, &p->numa) == 0) return 1;
        fprintf(stderr, "grok2 %s: --numa is auto, shard, interleave or off, not '%s'\n", command, value);
        return -1;
    }
    if (!strcmp(flag, "--threads-per-node")) {
        if (cli_u32(command, flag, value, &p->threads_per_node)) return -1;
        if (p->threads_per_node > 0 && p->threads_per_node <= 4096) return 1;
        fprintf(stderr, "grok2 %s: --threads-per-node wants 1 to 4096, got '%s'\n", command, value);
        return -1;
    }
    if (!strcmp(flag, "--gemm")) {
        g2_error err;
        if (gemm_backend_parse(value, &p->gemm)) {
            fprintf(stderr, "grok2 %s: --gemm is auto, native, openblas or onednn, not '%s'\n", command, value);
            return -1;
        }
        if (gemm_backend_available(p->gemm, &err) == 0) return 1;
        fprintf(stderr, "grok2 %s: %s\n", command, err.msg);
        return -1;
    }
    if (strcmp(flag, "-t") && strcmp(flag, "--threads")) return 0;
    uint32_t n;
    if (cli_u32(command, flag, value, &n)) return -1;
    p->n_threads = (int)n;
    return 1;
}

/* ---- the flags of where weights live: NUMA (numa.c) and expert streaming (experts.c) ---- */

const char memory_flags_help[] =
    "  --prefetch MODE      expert slabs from the mapping: chosen (MADV_WILLNEED on the experts\n"
    "                       each layer's router chose, before the dense MLP runs), next (also a\n"
    "                       guess of the next layer's experts), off (plain mmap), auto (default:\n"
    "                       off when the file fits in 90% of the memory this process may use,\n"
    "                       machine or memory cgroup, else chosen)\n"
    "  --mlock-dense        lock the always-on weights in memory (a warning if RLIMIT_MEMLOCK\n"
    "                       is too small)\n"
    "  --expert-cache-mb N  keep at most N MiB of expert slabs: the least recently used are\n"
    "                       paged out (MADV_PAGEOUT); 0: no bound (default)\n"
    "  --numa MODE          auto (default: shard when there is more than one node), shard (each\n"
    "                       node computes its own rows of every matrix, from its own memory),\n"
    "                       interleave (pages spread over all nodes), off\n"
    "  --threads-per-node N with shard: threads in each node's group (default: its CPUs)\n"
    "  --no-mmap            copy the weights into memory (each node's share into its own\n"
    "                       memory) instead of reading them from the file mapping\n";

static int expert_context_flag(const char *command, const char *flag, const char *value, grok_context_params *p) {
    if (!strcmp(flag, "--prefetch")) {
        if (prefetch_mode_parse(value, &p->prefetch) == 0) return 1;
        fprintf(stderr, "grok2 %s: --prefetch is auto, off, chosen or next, not '%s'\n", command, value);
        return -1;
    }
    if (!strcmp(flag, "--expert-cache-mb")) return cli_u32(command, flag, value, &p->expert_cache_mb) ? -1 : 1;
    return 0;
}

int cli_model_flag(const char *command, int argc, char **argv, int *i, const char **model, grok_context_params *p) {
    const char *a = argv[*i];
    if (cli_context_switch(a, p)) return 1;
    if (*i + 1 >= argc) {
        fprintf(stderr, "grok2 %s: %s '%s'\n", command, a[0] == '-' ? "missing value for" : "unexpected argument", a);
        return -1;
    }
    int shared = !strcmp(a, "-m") || !strcmp(a, "--model") ? (*model = argv[*i + 1], 1)
                                                          : cli_context_flag(command, a, argv[*i + 1], p);
    if (shared > 0) ++*i;
    return shared;
}

int cli_context_switch(const char *flag, grok_context_params *p) {
    if (!strcmp(flag, "--mlock-dense")) p->mlock_dense = true;
    else if (!strcmp(flag, "--no-mmap")) p->no_mmap = true;
    else return 0;
    return 1;
}

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

int cli_context_flag(const char *command, const char *flag, const char *value, grok_context_params *p) {
    if (!strcmp(flag, "--kv-type")) {
        if (kv_cache_type_parse(value, &p->kv_type) == 0) return 1;
        fprintf(stderr, "grok2 %s: --kv-type is f16, f32 or bf16, not '%s'\n", command, value);
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

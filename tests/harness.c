/* Shared helpers for the tests (see harness.h). */
#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

char *harness_tmpdir(const char *tag) {
    const char *base = getenv("GROK2_TEST_TMP");
    if (!base || !*base) base = "/tmp";
    mkdir(base, 0755);
    size_t size = strlen(base) + strlen(tag) + 32;
    char *path = malloc(size);
    snprintf(path, size, "%s/%s-XXXXXX", base, tag);
    if (!mkdtemp(path)) {
        free(path);
        return NULL;
    }
    return path;
}

const char *harness_grok2(void) {
    const char *bin = getenv("GROK2_BIN");
    return bin && *bin ? bin : "./grok2";
}

const char *harness_root(void) {
    const char *root = getenv("GROK2_ROOT");
    return root && *root ? root : ".";
}

char *harness_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
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
    fclose(f);
    if (!buf) return NULL;
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

harness_result harness_run(const char *fmt, ...) {
    harness_result r = {-1, NULL, NULL};
    char *dir = harness_tmpdir("run");
    if (!dir) return r;
    va_list ap;
    va_start(ap, fmt);
    char *cmd = NULL;
    if (vasprintf(&cmd, fmt, ap) < 0) cmd = NULL;
    va_end(ap);
    size_t size = strlen(dir) + 16;
    char *out_path = malloc(size), *err_path = malloc(size);
    snprintf(out_path, size, "%s/out", dir);
    snprintf(err_path, size, "%s/err", dir);
    fflush(stdout); /* or the child's freopen would flush our buffered output a second time */
    fflush(stderr);
    pid_t pid = cmd ? fork() : -1;
    if (pid == 0) {
        if (!freopen("/dev/null", "r", stdin) || !freopen(out_path, "w", stdout) || !freopen(err_path, "w", stderr))
            _exit(127);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int status;
    if (pid > 0 && waitpid(pid, &status, 0) == pid)
        r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = harness_read_file(out_path, NULL);
    r.err = harness_read_file(err_path, NULL);
    if (!r.out) r.out = calloc(1, 1);
    if (!r.err) r.err = calloc(1, 1);
    unlink(out_path);
    unlink(err_path);
    rmdir(dir);
    free(out_path);
    free(err_path);
    free(dir);
    free(cmd);
    return r;
}

void harness_result_free(harness_result *r) {
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

int harness_count_lines(const char *text) {
    int n = 0;
    for (const char *p = text; *p; p++)
        if (*p == '\n' || !p[1]) n++;
    return n;
}

char *harness_synth_tiny(const char *dir, const char *type, char **err) {
    size_t size = strlen(dir) + strlen(type) + 16;
    char *path = malloc(size);
    if (!path) return NULL;
    snprintf(path, size, "%s/tiny-%s.gguf", dir, type);
    harness_result r = harness_run("%s synth tiny --gguf %s -o %s", harness_grok2(), type, path);
    if (r.status != 0) {
        free(path);
        path = NULL;
        if (err) *err = r.err, r.err = NULL;
    }
    harness_result_free(&r);
    return path;
}

/* Shared helpers for the tests: a private temp dir per test, running the grok2 binary and
 * other programs with their output captured. */
#ifndef GROK2_TEST_HARNESS_H
#define GROK2_TEST_HARNESS_H

#include <stddef.h>

/* A fresh directory under $GROK2_TEST_TMP (or /tmp) for this test process; malloc'd path. */
char *harness_tmpdir(const char *tag);
/* Path of the grok2 binary under test ($GROK2_BIN, default ./grok2) and of the source tree
 * ($GROK2_ROOT, default .). */
const char *harness_grok2(void);
const char *harness_root(void);

typedef struct {
    int status;   /* exit code, or 128 + signal */
    char *out;    /* stdout, NUL-terminated, malloc'd */
    char *err;    /* stderr */
} harness_result;

/* Runs a shell command line (sh -c) with stdin from /dev/null and captures its output. */
harness_result harness_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void harness_result_free(harness_result *r);
/* `grok2 synth tiny --gguf TYPE` into DIR/tiny-TYPE.gguf. The malloc'd path, or NULL with the
 * command's stderr in *err (malloc'd; may be NULL). */
char *harness_synth_tiny(const char *dir, const char *type, char **err);
/* Number of lines in text (a last line without newline counts). */
int harness_count_lines(const char *text);
/* Whole file into a malloc'd NUL-terminated buffer (NULL if unreadable); *len if non-NULL. */
char *harness_read_file(const char *path, size_t *len);

#endif

/* Option values for the commands (whole numbers in range or a clear message naming the option),
 * and the options and frame the commands that write a model share. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"

int cli_parse_int(const char *opt, const char *text, int64_t min, int64_t max, int64_t *out, g2_error *err) {
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end) return g2_fail(err, "%s: '%s' is not a whole number", opt, text);
    if (v < min || v > max)
        return g2_fail(err, "%s: %lld is out of range [%lld, %lld]", opt, v, (long long)min, (long long)max);
    *out = v;
    return 0;
}

int cli_parse_double(const char *opt, const char *text, double *out, g2_error *err) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v)) return g2_fail(err, "%s: '%s' is not a number", opt, text);
    *out = v;
    return 0;
}

const char *cli_value(int argc, char **argv, int *i, g2_error *err) {
    if (*i + 1 >= argc) {
        g2_fail(err, "%s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

/* argv[*i] as a shared option: 1 when it is (its value consumed), 0 when it is not, -1 on a
 * missing or bad value (message in err). */
static int shared_option(write_options *o, bool output_flag, int argc, char **argv, int *i, g2_error *err) {
    const char *a = argv[*i], *v;
    if (output_flag && (!strcmp(a, "-o") || !strcmp(a, "--output"))) {
        if (!(o->out = cli_value(argc, argv, i, err))) return -1;
    } else if (!strcmp(a, "--tensor-type")) {
        if (!(v = cli_value(argc, argv, i, err)) || plan_override_add(&o->overrides, v, err)) return -1;
    } else if (!strcmp(a, "--threads")) {
        if (!(v = cli_value(argc, argv, i, err)) || cli_parse_int(a, v, 1, 4096, &o->threads, err)) return -1;
    } else if (!strcmp(a, "--dry-run")) {
        o->dry_run = true;
    } else if (!strcmp(a, "--force")) {
        o->force = true;
    } else {
        return 0;
    }
    return 1;
}

/* 0 ok, 1 help, 2 usage error (message in err) */
static int parse(const write_command_def *def, write_options *w, void *options, int argc, char **argv,
                 g2_error *err) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
        int shared = shared_option(w, def->output_flag, argc, argv, &i, err);
        if (shared < 0) return 2;
        if (shared) continue;
        int own = def->own_option(options, argc, argv, &i, err);
        if (own == 0) g2_fail(err, "unknown argument '%s'", argv[i]);
        if (own <= 0) return 2;
    }
    return def->check(options, err) ? 2 : 0;
}

int write_command(const write_command_def *def, write_options *w, void *options, int argc, char **argv) {
    g2_error err = {{0}};
    int rc = parse(def, w, options, argc, argv, &err);
    if (rc == 1) {
        def->usage(stdout);
        rc = 0;
    } else if (rc == 2) {
        fprintf(stderr, "grok2 %s: %s (see grok2 %s --help)\n", def->name, err.msg, def->name);
    } else {
        ignore_file_size_signal();
        if (def->work(options, &err)) {
            fprintf(stderr, "grok2 %s: %s\n", def->name, err.msg);
            rc = 1;
        }
    }
    plan_overrides_free(&w->overrides);
    return rc;
}

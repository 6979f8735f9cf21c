/* Option values for the commands: whole numbers in range or a clear message naming the option. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

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

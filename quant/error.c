/* Errors as values: one formatted line per failure. */
#include <stdarg.h>
#include <stdio.h>

#include "quant.h"

int g2_fail(g2_error *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

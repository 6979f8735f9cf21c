/* Small file helpers shared by the commands. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "convert.h"

#define MAX_TEXT_FILE (1u << 30) /* a tokenizer of a few million tokens still fits */

char *read_text_file(const char *path, size_t *len, g2_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        g2_fail(err, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 2) {
            char *grown = cap < MAX_TEXT_FILE ? realloc(buf, cap = cap ? 2 * cap : 1 << 16) : NULL;
            if (!grown) {
                free(buf);
                fclose(f);
                g2_fail(err, "%s: too large or out of memory", path);
                return NULL;
            }
            buf = grown;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        g2_fail(err, "%s: read error", path);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

bool path_exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

int check_output_path(const char *path, bool force, g2_error *err) {
    if (!force && path_exists(path)) return g2_fail(err, "%s exists (use --force to overwrite it)", path);
    return 0;
}

void ignore_file_size_signal(void) { signal(SIGXFSZ, SIG_IGN); }

const char *shown_text(const char *text, char *buf, size_t size) {
    size_t o = 0, i = 0;
    for (; text[i]; i++) {
        unsigned char c = (unsigned char)text[i];
        bool control = c < 0x20 || c == 0x7f;
        if (o + (control ? 4 : 1) + 4 > size) break; /* keep room for "..." and the NUL */
        if (control) o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
        else buf[o++] = (char)c;
    }
    if (text[i]) {
        /* cut before a whole UTF-8 character: drop the copied bytes of the one cut through */
        while (i > 0 && ((unsigned char)text[i] & 0xC0) == 0x80 && (unsigned char)text[i - 1] >= 0x80) i--, o--;
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = 0;
    return buf;
}

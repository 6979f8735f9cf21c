/* GPT-2's byte-to-unicode map, the alphabet of tokenizer.ggml.tokens and .merges for byte-level
 * BPE: printable bytes ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) stand for themselves, every other byte
 * b for the code point 256 + (its index among those others), so that no token string holds a
 * space, a control character or invalid UTF-8. */
#include "convert.h"

static bool printable(uint8_t b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; }

/* The non-printable bytes in order: 0x00..0x20 (33), 0x7F..0xA0 (34), 0xAD (1). */
static uint32_t code_point_of(uint8_t b) {
    if (printable(b)) return b;
    if (b <= 0x20) return 256u + b;
    if (b <= 0xA0) return 256u + 33 + (b - 0x7Fu);
    return 256u + 67; /* 0xAD */
}

int byte_to_unicode(uint8_t b, char out[2]) {
    uint32_t cp = code_point_of(b); /* at most 256 + 68 = 324: one or two UTF-8 bytes */
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* The byte a code point stands for, or -1. */
static int byte_of(uint32_t cp) {
    if (cp < 256) return printable((uint8_t)cp) ? (int)cp : -1;
    uint32_t n = cp - 256;
    if (n < 33) return (int)n;
    if (n < 67) return (int)(0x7F + n - 33);
    return n == 67 ? 0xAD : -1;
}

int64_t unicode_to_bytes(const char *s, size_t len, uint8_t *out) {
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    int64_t n = 0;
    while (i < len) {
        uint32_t cp;
        if (p[i] < 0x80) {
            cp = p[i++];
        } else if ((p[i] & 0xE0) == 0xC0 && i + 1 < len && (p[i + 1] & 0xC0) == 0x80) {
            cp = (uint32_t)(p[i] & 0x1F) << 6 | (p[i + 1] & 0x3F);
            i += 2;
            if (cp < 0x80) return -1; /* overlong */
        } else {
            return -1; /* the map needs at most two bytes per code point */
        }
        int b = byte_of(cp);
        if (b < 0) return -1;
        out[n++] = (uint8_t)b;
    }
    return n;
}

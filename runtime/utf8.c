/* Streaming UTF-8 for generated text: token pieces are arbitrary bytes (a character may be split
 * across tokens, and a model may produce bytes that never form a character), but what reaches
 * the terminal must be whole characters.
 *
 * A byte-at-a-time validator keeps the bytes of an unfinished character in s->pending (at most
 * 3) and releases them when the character completes. Invalid input is replaced the way the
 * WHATWG/Unicode "maximal subpart" practice does it: each maximal prefix of a would-be character
 * that cannot be completed becomes one U+FFFD, and the byte that broke it is looked at afresh
 * (it may start the next character). A lone byte that can start nothing (0x80..0xBF, 0xC0, 0xC1,
 * 0xF5..0xFF) is one U+FFFD.
 *
 * Output size: at most 3 bytes per input byte plus 3 for what was pending, so
 * 3 * piece_len + 3 bytes suffice for any input (valid text needs piece_len + 3). Output never
 * goes past out_cap: what does not fit is dropped, never written out of bounds. */
#include <string.h>

#include "runtime.h"

static const char REPLACEMENT[3] = {(char)0xef, (char)0xbf, (char)0xbd}; /* U+FFFD */

typedef struct {
    char *out;
    size_t n, cap;
} sink;

static void put(sink *k, const void *p, size_t len) {
    size_t room = k->cap - k->n;
    if (len > room) len = room;
    memcpy(k->out + k->n, p, len);
    k->n += len;
}

/* Bytes a character starting with b has in all, or 0 if b cannot start one. */
static size_t sequence_length(uint8_t b) {
    if (b < 0x80) return 1;
    if (b >= 0xc2 && b <= 0xdf) return 2;
    if (b >= 0xe0 && b <= 0xef) return 3;
    if (b >= 0xf0 && b <= 0xf4) return 4;
    return 0;
}

/* Whether b may follow the bytes already pending: continuation bytes, with the narrower second
 * byte after E0 (no overlongs), ED (no surrogates), F0 (no overlongs) and F4 (<= U+10FFFF). */
static bool continues(const uint8_t *pending, size_t n_pending, uint8_t b) {
    if (n_pending == 1) {
        switch (pending[0]) {
        case 0xe0: return b >= 0xa0 && b <= 0xbf;
        case 0xed: return b >= 0x80 && b <= 0x9f;
        case 0xf0: return b >= 0x90 && b <= 0xbf;
        case 0xf4: return b >= 0x80 && b <= 0x8f;
        default: break;
        }
    }
    return (b & 0xc0) == 0x80;
}

static void push_byte(utf8_stream *s, sink *k, uint8_t b) {
    if (s->n_pending) {
        if (continues(s->pending, s->n_pending, b)) {
            s->pending[s->n_pending++] = b;
            if (s->n_pending == sequence_length(s->pending[0])) {
                put(k, s->pending, s->n_pending);
                s->n_pending = 0;
            }
            return;
        }
        put(k, REPLACEMENT, 3); /* the unfinished character is invalid; b starts afresh */
        s->n_pending = 0;
    }
    size_t need = sequence_length(b);
    if (need == 1) put(k, &b, 1);
    else if (need == 0) put(k, REPLACEMENT, 3);
    else s->pending[s->n_pending++] = b;
}

size_t utf8_stream_push(utf8_stream *s, const uint8_t *piece, size_t piece_len, char *out, size_t out_cap) {
    sink k = {out, 0, out_cap};
    /* a state that cannot come from this code (a caller's garbage) starts over, replaced */
    if (s->n_pending >= sizeof s->pending || (s->n_pending && sequence_length(s->pending[0]) <= s->n_pending)) {
        put(&k, REPLACEMENT, 3);
        s->n_pending = 0;
    }
    for (size_t i = 0; i < piece_len; i++) {
        uint8_t b = piece[i];
        if (b < 0x80 && !s->n_pending) { /* ASCII fast path */
            if (k.n < k.cap) k.out[k.n++] = (char)b;
            continue;
        }
        push_byte(s, &k, b);
    }
    return k.n;
}

size_t utf8_stream_flush(utf8_stream *s, char *out, size_t out_cap) {
    sink k = {out, 0, out_cap};
    if (s->n_pending) put(&k, REPLACEMENT, 3);
    s->n_pending = 0;
    return k.n;
}

/* Byte-level BPE tokenizer, tiktoken-exact (grok2-model.md section 4).
 *
 * Encoding is tiktoken's: the text is cut at special tokens (when allowed), each stretch of
 * ordinary text is split into pieces by the pre-tokenizer regex, and each piece is either a
 * token itself or is merged by rank: starting from single bytes, the adjacent pair whose
 * concatenated bytes form the token of lowest rank merges first (ties to the leftmost), until no
 * adjacent pair is a token. Rank is the token id of a regular token. Merges lists are not used:
 * rank order over byte strings is what tiktoken computes, and a merges list only approximates it.
 *
 * The regex runs through PCRE2 (UTF, UCP, JIT). Two things make PCRE2 agree with the Rust regex
 * that tiktoken uses:
 *   - \s and \S become \p{White_Space} / \P{White_Space}: PCRE2's \s also matches U+180E, which
 *     Rust's (the Unicode White_Space property) does not;
 *   - \p{L} and \p{N} get the letters and numbers added between Unicode 14 (PCRE2 10.42's tables)
 *     and Unicode 16 (the regex crate in tiktoken 1.0.22); the ranges were read from tiktoken
 *     itself by testing every code point. Adding them is harmless on a newer PCRE2.
 *
 * Invalid UTF-8 (our definition; tiktoken only ever sees valid str): the pattern is compiled
 * with PCRE2_MATCH_INVALID_UTF, so invalid sequences match nothing and act as barriers: each
 * maximal valid stretch is split exactly as tiktoken splits it on its own, and every run of
 * bytes no match covers (with the V1 pattern: exactly the invalid bytes) becomes one piece,
 * merged by rank like any other. Nothing is dropped, so decode(encode(x)) == x for any bytes.
 * (tiktoken drops valid text a custom pattern fails to match; we encode it like a gap.) */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "runtime.h"

/* Grok-2's "V1" word split (cl100k_base's pattern with digits one at a time). */
static const char V1_PATTERN[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
                                 "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* Code points that are \p{L} / \p{N} in Unicode 16 (tiktoken's Rust regex) but not in Unicode 14
 * (PCRE2 10.42). No code point went the other way. */
static const char LETTERS_SINCE_UNICODE_14[] =
    "\\x{1c89}-\\x{1c8a}\\x{a7cb}-\\x{a7cd}\\x{a7da}-\\x{a7dc}\\x{105c0}-\\x{105f3}"
    "\\x{10d4a}-\\x{10d65}\\x{10d6f}-\\x{10d85}\\x{10ec2}-\\x{10ec4}\\x{1123f}-\\x{11240}"
    "\\x{11380}-\\x{11389}\\x{1138b}\\x{1138e}\\x{11390}-\\x{113b5}\\x{113b7}\\x{113d1}"
    "\\x{113d3}\\x{11bc0}-\\x{11be0}\\x{11f02}\\x{11f04}-\\x{11f10}\\x{11f12}-\\x{11f33}"
    "\\x{1342f}\\x{13441}-\\x{13446}\\x{13460}-\\x{143fa}\\x{16100}-\\x{1611d}"
    "\\x{16d40}-\\x{16d6c}\\x{18cff}\\x{1b132}\\x{1b155}\\x{1df25}-\\x{1df2a}"
    "\\x{1e030}-\\x{1e06d}\\x{1e4d0}-\\x{1e4eb}\\x{1e5d0}-\\x{1e5ed}\\x{1e5f0}\\x{2b739}"
    "\\x{2ebf0}-\\x{2ee5d}\\x{31350}-\\x{323af}";
static const char NUMBERS_SINCE_UNICODE_14[] =
    "\\x{10d40}-\\x{10d49}\\x{116d0}-\\x{116e3}\\x{11bf0}-\\x{11bf9}\\x{11f50}-\\x{11f59}"
    "\\x{16130}-\\x{16139}\\x{16d70}-\\x{16d79}\\x{1ccf0}-\\x{1ccf9}\\x{1d2c0}-\\x{1d2d3}"
    "\\x{1e4f0}-\\x{1e4f9}\\x{1e5f1}-\\x{1e5fa}";

#define NO_RANK UINT32_MAX
#define NO_TOKEN (-1)
/* Pieces up to this many bytes are merged with tiktoken's own linear scan (fastest for the short
 * pieces of ordinary text); longer ones with a heap that picks the same pair in O(log n). */
#define LINEAR_BPE_MAX 128

enum { KIND_UNUSED = 0, KIND_REGULAR = 1, KIND_SPECIAL = 2 };

/* Open-addressing map from byte strings to token ids. The strings live in the tokenizer's
 * arena; a slot holds 32 bits of the hash (to skip most compares) and the id + 1 (0 = empty),
 * side by side so that a probe touches one cache line. */
typedef struct {
    uint32_t tag;
    uint32_t id;
} map_slot;

typedef struct {
    map_slot *slots;
    uint32_t mask;
} bytes_map;

struct tokenizer {
    uint32_t n;
    uint8_t *arena;      /* all tokens' bytes, back to back */
    uint64_t *offset;    /* n + 1 offsets into arena */
    uint8_t *kind;       /* KIND_* per id */
    uint32_t max_regular_len;
    int32_t byte_token[256]; /* id of the regular token that is this single byte, or NO_TOKEN */
    uint32_t *pair_rank;     /* [b0 << 8 | b1]: rank of the two-byte token, or NO_RANK */
    bytes_map regular;
    bytes_map special;
    uint32_t n_special;
    uint32_t n_special_lens;
    uint32_t *special_lens;  /* distinct lengths of special tokens, longest first */
    uint8_t special_first[256]; /* bytes that start some special token */
    pcre2_code *re;
    bool jit;
};

/* ---- hashing and the byte-string map ------------------------------------------------------ */

/* Up to 8 bytes packed into an integer, reading only those bytes; for a given length the packing
 * is one-to-one (1..3 bytes: first, middle, last; 4..7: two overlapping 4-byte reads). Longer
 * keys: their first 8 bytes. */
static inline uint64_t pack8(const uint8_t *p, size_t n) {
    uint64_t v;
    if (n >= 8) {
        memcpy(&v, p, 8);
        return v;
    }
    if (n >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + n - 4, 4);
        return (uint64_t)lo | (uint64_t)hi << 32;
    }
    if (n == 0) return 0;
    return (uint64_t)p[0] | (uint64_t)p[n / 2] << 8 | (uint64_t)p[n - 1] << 16;
}

static inline uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n > 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    h = (h ^ pack8(p, n)) * 0x94d049bb133111ebull;
    h = (h ^ (h >> 32)) * 0xd6e8feb86659fd93ull; /* every key bit reaches the low (index) bits */
    return h ^ (h >> 32);
}

static const uint8_t *token_bytes(const tokenizer *t, uint32_t id, size_t *len) {
    *len = (size_t)(t->offset[id + 1] - t->offset[id]);
    return t->arena + t->offset[id];
}

static int map_init(bytes_map *m, uint32_t n_keys) {
    uint64_t cap = 16;
    while (cap < 2ull * n_keys) cap <<= 1;
    m->slots = calloc(cap, sizeof *m->slots);
    m->mask = (uint32_t)(cap - 1);
    return m->slots ? 0 : -1;
}

static void map_free(bytes_map *m) { free(m->slots); }

/* Id of the token with these bytes, or NO_TOKEN. */
static inline int32_t map_find(const tokenizer *t, const bytes_map *m, const uint8_t *key, size_t len) {
    uint64_t h = hash_bytes(key, len);
    uint32_t tag = (uint32_t)(h >> 32);
    for (uint32_t i = (uint32_t)h & m->mask;; i = (i + 1) & m->mask) {
        map_slot slot = m->slots[i];
        if (!slot.id) return NO_TOKEN;
        if (slot.tag == tag) {
            size_t tlen;
            const uint8_t *tb = token_bytes(t, slot.id - 1, &tlen);
            if (tlen == len && !memcmp(tb, key, len)) return (int32_t)(slot.id - 1);
        }
    }
}

/* Insert id; returns the id already holding the same bytes, or NO_TOKEN when inserted. */
static int32_t map_insert(const tokenizer *t, bytes_map *m, uint32_t id) {
    size_t len;
    const uint8_t *key = token_bytes(t, id, &len);
    int32_t old = map_find(t, m, key, len);
    if (old != NO_TOKEN) return old;
    uint64_t h = hash_bytes(key, len);
    uint32_t i = (uint32_t)h & m->mask;
    while (m->slots[i].id) i = (i + 1) & m->mask;
    m->slots[i] = (map_slot){(uint32_t)(h >> 32), id + 1};
    return NO_TOKEN;
}

/* Rank (= id) of the regular token with these bytes, or NO_RANK. */
static inline uint32_t rank_of(const tokenizer *t, const uint8_t *p, size_t len) {
    if (len == 2) return t->pair_rank[p[0] << 8 | p[1]];
    if (len > t->max_regular_len) return NO_RANK;
    int32_t id = map_find(t, &t->regular, p, len);
    return id == NO_TOKEN ? NO_RANK : (uint32_t)id;
}

/* ---- the pattern -------------------------------------------------------------------------- */

typedef struct {
    char *data;
    size_t len, cap;
} strbuf;

static int sb_put(strbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap) cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) return -1;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

static int sb_puts(strbuf *b, const char *s) { return sb_put(b, s, strlen(s)); }

/* The pattern with \s, \S, \p{L}, \p{N} rewritten to mean what they mean in tiktoken's Rust regex
 * (see the top of the file). Walks escapes, \Q..\E and character classes so that only real
 * escapes are rewritten, and knows whether it is inside a class (where the added ranges go
 * directly) or outside (where they need a class of their own). */
static char *translate_pattern(const char *pat) {
    strbuf b = {0};
    int rc = sb_put(&b, "", 0);
    bool in_class = false;
    for (size_t i = 0; pat[i] && !rc;) {
        const char *p = pat + i;
        if (p[0] == '\\' && p[1]) {
            if (p[1] == 's' || p[1] == 'S') {
                rc = sb_puts(&b, p[1] == 's' ? "\\p{White_Space}" : "\\P{White_Space}");
                i += 2;
            } else if (!strncmp(p, "\\p{L}", 5) || !strncmp(p, "\\p{N}", 5)) {
                const char *extra = p[3] == 'L' ? LETTERS_SINCE_UNICODE_14 : NUMBERS_SINCE_UNICODE_14;
                rc = sb_puts(&b, in_class ? "" : "[");
                rc = rc || sb_put(&b, p, 5) || sb_puts(&b, extra) || sb_puts(&b, in_class ? "" : "]");
                i += 5;
            } else if (p[1] == 'Q') { /* literal text up to \E */
                const char *end = strstr(p + 2, "\\E");
                size_t n = end ? (size_t)(end - p) + 2 : strlen(p);
                rc = sb_put(&b, p, n);
                i += n;
            } else {
                rc = sb_put(&b, p, 2);
                i += 2;
            }
        } else if (!in_class && p[0] == '[') {
            in_class = true;
            size_t n = 1;
            if (p[n] == '^') n++;
            if (p[n] == ']') n++; /* a ']' first in a class is literal */
            rc = sb_put(&b, p, n);
            i += n;
        } else if (in_class && p[0] == '[' && p[1] == ':') { /* [:alpha:] */
            const char *end = strstr(p + 2, ":]");
            size_t n = end ? (size_t)(end - p) + 2 : 2;
            rc = sb_put(&b, p, n);
            i += n;
        } else {
            if (in_class && p[0] == ']') in_class = false;
            rc = sb_put(&b, p, 1);
            i += 1;
        }
    }
    if (rc) {
        free(b.data);
        return NULL;
    }
    return b.data;
}

static int compile_pattern(tokenizer *t, const char *pattern, g2_error *err) {
    char *translated = translate_pattern(pattern);
    if (!translated) return g2_fail(err, "tokenizer: out of memory");
    int code;
    PCRE2_SIZE at;
    t->re = pcre2_compile((PCRE2_SPTR)translated, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &at, NULL);
    free(translated);
    if (!t->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return g2_fail(err, "tokenizer: pre-tokenizer pattern does not compile: %s (pattern '%.200s')",
                       (const char *)msg, pattern);
    }
    /* JIT when available; the interpreter gives the same matches, only slower. */
    t->jit = pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == 0;
    return 0;
}

/* ---- construction ------------------------------------------------------------------------- */

static int cmp_u32_desc(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int tokenizer_new(tokenizer **out, uint32_t n, const uint8_t *const *bytes, const uint32_t *lens,
                  const bool *is_special, const char *pattern, g2_error *err) {
    *out = NULL;
    if (n == 0) return g2_fail(err, "tokenizer: the vocabulary is empty");
    if (n > (uint32_t)INT32_MAX - 1) return g2_fail(err, "tokenizer: %" PRIu32 " tokens is too many", n);
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return g2_fail(err, "tokenizer: out of memory");
    t->n = n;
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (lens[i] && !bytes[i]) {
            tokenizer_free(t);
            return g2_fail(err, "tokenizer: token %" PRIu32 " has %" PRIu32 " bytes but no data", i, lens[i]);
        }
        total += lens[i];
    }
    t->arena = malloc(total ? total : 1);
    t->offset = malloc((n + 1ull) * sizeof *t->offset);
    t->kind = malloc(n);
    t->pair_rank = malloc(65536 * sizeof *t->pair_rank);
    if (!t->arena || !t->offset || !t->kind || !t->pair_rank || map_init(&t->regular, n)) {
        tokenizer_free(t);
        return g2_fail(err, "tokenizer: out of memory for %" PRIu32 " tokens", n);
    }
    uint64_t at = 0;
    uint32_t n_special = 0, n_regular = 0;
    for (uint32_t i = 0; i < n; i++) {
        t->offset[i] = at;
        if (lens[i]) memcpy(t->arena + at, bytes[i], lens[i]);
        at += lens[i];
        /* an empty token is a hole in the id space (tiktoken vocabularies have gaps) */
        t->kind[i] = lens[i] == 0 ? KIND_UNUSED : (is_special && is_special[i]) ? KIND_SPECIAL : KIND_REGULAR;
        n_special += t->kind[i] == KIND_SPECIAL;
        n_regular += t->kind[i] == KIND_REGULAR;
    }
    t->offset[n] = at;
    if (n_regular == 0) {
        tokenizer_free(t);
        return g2_fail(err, "tokenizer: the vocabulary has no regular tokens");
    }
    for (int b = 0; b < 256; b++) t->byte_token[b] = NO_TOKEN;
    for (int p = 0; p < 65536; p++) t->pair_rank[p] = NO_RANK;
    if (map_init(&t->special, n_special)) {
        tokenizer_free(t);
        return g2_fail(err, "tokenizer: out of memory");
    }
    t->special_lens = malloc((n_special ? n_special : 1) * sizeof *t->special_lens);
    if (!t->special_lens) {
        tokenizer_free(t);
        return g2_fail(err, "tokenizer: out of memory");
    }
    for (uint32_t i = 0; i < n; i++) {
        if (t->kind[i] == KIND_UNUSED) continue;
        bytes_map *m = t->kind[i] == KIND_REGULAR ? &t->regular : &t->special;
        int32_t dup = map_insert(t, m, i);
        if (dup != NO_TOKEN) {
            tokenizer_free(t);
            return g2_fail(err, "tokenizer: %s tokens %" PRId32 " and %" PRIu32 " have the same bytes",
                           m == &t->regular ? "regular" : "special", dup, i);
        }
        if (t->kind[i] == KIND_REGULAR) {
            if (lens[i] > t->max_regular_len) t->max_regular_len = lens[i];
            if (lens[i] == 1) t->byte_token[bytes[i][0]] = (int32_t)i;
            if (lens[i] == 2) t->pair_rank[bytes[i][0] << 8 | bytes[i][1]] = i;
        } else {
            t->special_first[bytes[i][0]] = 1;
            t->special_lens[t->n_special++] = lens[i];
        }
    }
    /* distinct special lengths, longest first: the longest special token at a position wins */
    qsort(t->special_lens, t->n_special, sizeof *t->special_lens, cmp_u32_desc);
    for (uint32_t i = 0; i < t->n_special; i++)
        if (i == 0 || t->special_lens[i] != t->special_lens[t->n_special_lens - 1])
            t->special_lens[t->n_special_lens++] = t->special_lens[i];
    if (compile_pattern(t, pattern ? pattern : V1_PATTERN, err)) {
        tokenizer_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

void tokenizer_free(tokenizer *t) {
    if (!t) return;
    if (t->re) pcre2_code_free(t->re);
    map_free(&t->regular);
    map_free(&t->special);
    free(t->special_lens);
    free(t->pair_rank);
    free(t->arena);
    free(t->offset);
    free(t->kind);
    free(t);
}

uint32_t tokenizer_vocab_size(const tokenizer *t) { return t->n; }

const uint8_t *tokenizer_piece(const tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || (uint32_t)id >= t->n) {
        if (len) *len = 0;
        return NULL;
    }
    size_t n;
    const uint8_t *p = token_bytes(t, (uint32_t)id, &n);
    if (len) *len = n;
    return p;
}

int32_t tokenizer_find_special(const tokenizer *t, const char *text) {
    if (!text || !t->n_special) return -1;
    return map_find(t, &t->special, (const uint8_t *)text, strlen(text));
}

/* ---- from a GGUF file --------------------------------------------------------------------- */

/* GPT-2's byte-to-unicode alphabet: the printable Latin-1 bytes ('!'..'~', 0xA1..0xAC,
 * 0xAE..0xFF) stand for themselves; the other 68 bytes, in increasing order, become U+0100.. .
 * Fills cp_to_byte[0..323] with the byte each code point stands for, or -1. */
static void gpt2_alphabet(int16_t cp_to_byte[256 + 68]) {
    int next = 256;
    for (int i = 0; i < 256 + 68; i++) cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        cp_to_byte[printable ? b : next++] = (int16_t)b;
    }
}

/* Decode one UTF-8 code point at s[0..len); returns its length, or 0 if invalid. */
static size_t utf8_decode(const uint8_t *s, size_t len, uint32_t *cp) {
    uint8_t c = s[0];
    size_t n = c < 0x80 ? 1 : (c >= 0xc2 && c <= 0xdf) ? 2 : (c >= 0xe0 && c <= 0xef) ? 3 : (c >= 0xf0 && c <= 0xf4) ? 4 : 0;
    if (n == 0 || n > len) return 0;
    uint32_t v = n == 1 ? c : n == 2 ? (c & 0x1fu) : n == 3 ? (c & 0x0fu) : (c & 0x07u);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3fu);
    }
    static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min_for_len[n] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return n;
}

static bool str_equals(gguf_str s, const char *text) { return s.len == strlen(text) && !memcmp(s.data, text, s.len); }

/* llama.cpp's token types */
enum { TYPE_UNDEFINED = 0, TYPE_NORMAL = 1, TYPE_UNKNOWN = 2, TYPE_CONTROL = 3, TYPE_USER_DEFINED = 4,
       TYPE_UNUSED = 5, TYPE_BYTE = 6 };

int tokenizer_from_gguf(tokenizer **out, const gguf_file *f, g2_error *err) {
    *out = NULL;
    const char *path = gguf_path(f);
    gguf_str model, pre = {NULL, 0}, pat = {NULL, 0};
    if (gguf_get_str(f, "tokenizer.ggml.model", &model, err)) return -1;
    if (!str_equals(model, "gpt2"))
        return g2_fail(err, "%s: tokenizer.ggml.model is '%.*s'; only 'gpt2' (byte-level BPE) is supported", path,
                       (int)(model.len > 64 ? 64 : model.len), model.data);
    /* The pre-tokenizer: the regex in tokenizer.pat_str (where our converter puts a tok.json's
     * pat_str) if present; otherwise tokenizer.ggml.pre must name Grok-2's V1 split ("grok-2",
     * llama.cpp's name and ours) or be absent or "default". */
    bool has_pattern = gguf_find_key(f, "tokenizer.pat_str") >= 0;
    if (has_pattern && gguf_get_str(f, "tokenizer.pat_str", &pat, err)) return -1;
    if (!has_pattern && gguf_find_key(f, "tokenizer.ggml.pre") >= 0) {
        if (gguf_get_str(f, "tokenizer.ggml.pre", &pre, err)) return -1;
        if (!str_equals(pre, "grok-2") && !str_equals(pre, "default"))
            return g2_fail(err,
                           "%s: tokenizer.ggml.pre is '%.*s'; only 'grok-2' (Grok's V1 split) is known "
                           "(or give the regex in tokenizer.pat_str)",
                           path, (int)(pre.len > 64 ? 64 : pre.len), pre.data);
    }
    gguf_array tokens, types = {GGUF_TYPE_I32, 0, NULL};
    if (gguf_get_array(f, "tokenizer.ggml.tokens", &tokens, err)) return -1;
    if (tokens.elem_type != GGUF_TYPE_STRING)
        return g2_fail(err, "%s: tokenizer.ggml.tokens holds %s values, expected strings", path,
                       gguf_value_type_name(tokens.elem_type));
    if (tokens.count == 0 || tokens.count > (uint64_t)INT32_MAX - 1)
        return g2_fail(err, "%s: tokenizer.ggml.tokens has %" PRIu64 " entries", path, tokens.count);
    bool has_types = gguf_find_key(f, "tokenizer.ggml.token_type") >= 0;
    if (has_types) {
        if (gguf_get_array(f, "tokenizer.ggml.token_type", &types, err)) return -1;
        gguf_value_type et = types.elem_type;
        if (et != GGUF_TYPE_I32 && et != GGUF_TYPE_U32 && et != GGUF_TYPE_I8 && et != GGUF_TYPE_U8 &&
            et != GGUF_TYPE_I16 && et != GGUF_TYPE_U16 && et != GGUF_TYPE_I64 && et != GGUF_TYPE_U64)
            return g2_fail(err, "%s: tokenizer.ggml.token_type holds %s values, expected integers", path,
                           gguf_value_type_name(et));
        if (types.count != tokens.count)
            return g2_fail(err, "%s: tokenizer.ggml.token_type has %" PRIu64 " entries for %" PRIu64 " tokens", path,
                           types.count, tokens.count);
    }
    uint32_t n = (uint32_t)tokens.count;
    /* decoded bytes are never longer than the token string, so one arena of the strings' total */
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) total += gguf_array_str(f, &tokens, i).len;
    uint8_t *arena = malloc(total ? total : 1);
    const uint8_t **bytes = malloc(n * sizeof *bytes);
    uint32_t *lens = malloc(n * sizeof *lens);
    bool *special = malloc(n * sizeof *special);
    int rc = -1;
    if (!arena || !bytes || !lens || !special) {
        g2_fail(err, "%s: out of memory for %" PRIu32 " tokens", path, n);
        goto done;
    }
    int16_t cp_to_byte[256 + 68];
    gpt2_alphabet(cp_to_byte);
    uint64_t at = 0;
    for (uint32_t i = 0; i < n; i++) {
        gguf_str s = gguf_array_str(f, &tokens, i);
        int64_t type = has_types ? (int64_t)gguf_array_num(&types, i) : TYPE_NORMAL;
        bytes[i] = arena + at;
        lens[i] = 0;
        special[i] = false;
        if (!s.data && s.len) {
            g2_fail(err, "%s: tokenizer.ggml.tokens[%" PRIu32 "] cannot be read", path, i);
            goto done;
        }
        switch (type) {
        case TYPE_NORMAL:
        case TYPE_BYTE: /* text in the GPT-2 alphabet: back to bytes */
            for (uint64_t j = 0; j < s.len;) {
                uint32_t cp;
                size_t k = utf8_decode((const uint8_t *)s.data + j, s.len - j, &cp);
                if (!k) {
                    g2_fail(err, "%s: tokenizer.ggml.tokens[%" PRIu32 "] is not valid UTF-8 (byte %" PRIu64 ")", path, i, j);
                    goto done;
                }
                if (cp >= 256 + 68 || cp_to_byte[cp] < 0) {
                    g2_fail(err,
                            "%s: tokenizer.ggml.tokens[%" PRIu32 "] has U+%04" PRIX32
                            ", which is not in the GPT-2 byte alphabet",
                            path, i, cp);
                    goto done;
                }
                arena[at + lens[i]++] = (uint8_t)cp_to_byte[cp];
                j += k;
            }
            if (lens[i] == 0) {
                g2_fail(err, "%s: tokenizer.ggml.tokens[%" PRIu32 "] is empty", path, i);
                goto done;
            }
            break;
        case TYPE_CONTROL:
        case TYPE_USER_DEFINED: /* stored as their text, as llama.cpp's converter writes them */
            if (s.len == 0 || s.len > UINT32_MAX) {
                g2_fail(err, "%s: tokenizer.ggml.tokens[%" PRIu32 "] (a special token) is empty", path, i);
                goto done;
            }
            memcpy(arena + at, s.data, s.len);
            lens[i] = (uint32_t)s.len;
            special[i] = true;
            break;
        case TYPE_UNDEFINED:
        case TYPE_UNKNOWN:
        case TYPE_UNUSED: /* padding such as "[PAD131000]": an id that is never produced */
            break;
        default:
            g2_fail(err, "%s: tokenizer.ggml.token_type[%" PRIu32 "] is %" PRId64 ", not a known token type", path, i, type);
            goto done;
        }
        at += lens[i];
    }
    char *pattern = NULL;
    if (pat.data) {
        pattern = malloc(pat.len + 1);
        if (!pattern) {
            g2_fail(err, "%s: out of memory", path);
            goto done;
        }
        memcpy(pattern, pat.data, pat.len);
        pattern[pat.len] = 0;
        if (strlen(pattern) != pat.len) {
            free(pattern);
            g2_fail(err, "%s: tokenizer.pat_str contains a NUL byte", path);
            goto done;
        }
    }
    g2_error inner;
    rc = tokenizer_new(out, n, bytes, lens, special, pattern, &inner);
    free(pattern);
    if (rc) g2_fail(err, "%s: %s: %s", path, pattern ? "tokenizer.ggml.tokens or tokenizer.pat_str" : "tokenizer.ggml.tokens", inner.msg);
done:
    free(arena);
    free(bytes);
    free(lens);
    free(special);
    return rc;
}

/* ---- encoding ----------------------------------------------------------------------------- */

/* Per-call state: the output and scratch that grows to the longest piece seen, so that nothing
 * is allocated per piece. */
typedef struct {
    const tokenizer *t;
    int32_t *ids;
    size_t n_ids, cap_ids;
    void *scratch;
    size_t scratch_cap;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
    g2_error *err;
} encoder;

static int push_id(encoder *e, int32_t id) {
    if (e->n_ids == e->cap_ids) {
        size_t cap = e->cap_ids * 2;
        int32_t *grown = realloc(e->ids, cap * sizeof *grown);
        if (!grown) return g2_fail(e->err, "tokenizer: out of memory for %zu ids", cap);
        e->ids = grown;
        e->cap_ids = cap;
    }
    e->ids[e->n_ids++] = id;
    return 0;
}

static void *scratch(encoder *e, size_t bytes) {
    if (bytes > e->scratch_cap) {
        size_t cap = e->scratch_cap ? e->scratch_cap : 4096;
        while (cap < bytes) cap *= 2;
        void *grown = realloc(e->scratch, cap);
        if (!grown) return NULL;
        e->scratch = grown;
        e->scratch_cap = cap;
    }
    return e->scratch;
}

static int missing_byte(encoder *e, uint8_t b) {
    return g2_fail(e->err, "tokenizer: byte 0x%02x has no token of its own in this vocabulary", b);
}

/* tiktoken's _byte_pair_merge: parts as (start, rank of the pair starting there), a linear scan
 * for the lowest rank (ties: leftmost), merge, update the two neighbours' pair ranks. Also tracks
 * each part's token so that no lookup is needed at the end. */
static int bpe_linear(encoder *e, const uint8_t *p, size_t len) {
    const tokenizer *t = e->t;
    uint32_t start[LINEAR_BPE_MAX + 1], pair[LINEAR_BPE_MAX];
    int32_t id[LINEAR_BPE_MAX];
    size_t m = len;
    for (size_t k = 0; k < len; k++) {
        start[k] = (uint32_t)k;
        id[k] = t->byte_token[p[k]];
    }
    start[len] = (uint32_t)len;
    for (size_t k = 0; k + 1 < len; k++) pair[k] = rank_of(t, p + k, 2);
    pair[len - 1] = NO_RANK;
    for (;;) {
        uint32_t best = NO_RANK;
        size_t k = 0;
        for (size_t j = 0; j + 1 < m; j++)
            if (pair[j] < best) {
                best = pair[j];
                k = j;
            }
        if (best == NO_RANK) break;
        id[k] = (int32_t)best;
        /* drop part k+1 */
        memmove(start + k + 1, start + k + 2, (m - k - 1) * sizeof *start);
        memmove(pair + k + 1, pair + k + 2, (m - k - 2) * sizeof *pair);
        memmove(id + k + 1, id + k + 2, (m - k - 2) * sizeof *id);
        m--;
        pair[k] = k + 1 < m ? rank_of(t, p + start[k], start[k + 2] - start[k]) : NO_RANK;
        if (k > 0) pair[k - 1] = rank_of(t, p + start[k - 1], start[k + 1] - start[k - 1]);
    }
    for (size_t k = 0; k < m; k++) {
        if (id[k] == NO_TOKEN) return missing_byte(e, p[start[k]]);
        if (push_id(e, id[k])) return -1;
    }
    return 0;
}

/* The same merges for long pieces: parts as a linked list over byte positions and a binary
 * min-heap of (rank << 32 | position). The heap's top is the lowest rank, ties to the lowest
 * position, which is exactly the pair the linear scan picks. Entries whose part was merged away
 * or whose rank changed are skipped when popped. */
static inline void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h[parent] <= v) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = v;
}

static inline uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= last) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static int bpe_heap(encoder *e, const uint8_t *p, size_t len) {
    const tokenizer *t = e->t;
    /* next, prev, pair (u32) + id (i32) + heap (u64, at most len + 2 pushes per merge) */
    size_t heap_cap = 3 * len + 1;
    uint64_t *heap = scratch(e, heap_cap * 8 + len * 16);
    if (!heap) return g2_fail(e->err, "tokenizer: out of memory for a piece of %zu bytes", len);
    uint32_t *next = (uint32_t *)(heap + heap_cap), *prev = next + len, *pair = prev + len;
    int32_t *id = (int32_t *)(pair + len);
    size_t n_heap = 0;
    for (size_t k = 0; k < len; k++) {
        next[k] = (uint32_t)(k + 1);
        prev[k] = (uint32_t)k - 1; /* wraps for k = 0; never read there */
        id[k] = t->byte_token[p[k]];
        pair[k] = k + 1 < len ? rank_of(t, p + k, 2) : NO_RANK;
        if (pair[k] != NO_RANK) heap_push(heap, &n_heap, (uint64_t)pair[k] << 32 | k);
    }
    const uint32_t end = (uint32_t)len;
    while (n_heap) {
        uint64_t top = heap_pop(heap, &n_heap);
        uint32_t rank = (uint32_t)(top >> 32), k = (uint32_t)top;
        if (id[k] == INT32_MIN || pair[k] != rank) continue; /* merged away, or stale */
        uint32_t q = next[k];
        id[k] = (int32_t)rank;
        id[q] = INT32_MIN; /* dead */
        next[k] = next[q];
        if (next[q] < end) prev[next[q]] = k;
        uint32_t after = next[k];
        pair[k] = after < end ? rank_of(t, p + k, next[after] - k) : NO_RANK;
        if (pair[k] != NO_RANK) heap_push(heap, &n_heap, (uint64_t)pair[k] << 32 | k);
        if (k > 0) {
            uint32_t b = prev[k];
            pair[b] = rank_of(t, p + b, next[k] - b);
            if (pair[b] != NO_RANK) heap_push(heap, &n_heap, (uint64_t)pair[b] << 32 | b);
        }
    }
    for (uint32_t k = 0; k < end; k = next[k]) {
        if (id[k] == NO_TOKEN) return missing_byte(e, p[k]);
        if (push_id(e, id[k])) return -1;
    }
    return 0;
}

/* One piece: a token itself, else merged by rank. */
static int encode_piece(encoder *e, const uint8_t *p, size_t len) {
    const tokenizer *t = e->t;
    uint32_t whole = rank_of(t, p, len);
    if (whole != NO_RANK) return push_id(e, (int32_t)whole);
    if (len == 1) return missing_byte(e, p[0]);
    return len <= LINEAR_BPE_MAX ? bpe_linear(e, p, len) : bpe_heap(e, p, len);
}

static int regex_error(encoder *e, int rc, size_t offset) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return g2_fail(e->err, "tokenizer: pre-tokenizer regex failed at byte %zu: %s", offset, (const char *)msg);
}

/* Ordinary text (no special tokens in it): split by the regex, encode each piece and each run of
 * bytes between matches. The subject is exactly this stretch, so lookaheads see its end as
 * tiktoken's do. */
static int encode_ordinary(encoder *e, const uint8_t *s, size_t len) {
    const tokenizer *t = e->t;
    size_t pos = 0;
    uint32_t options = 0;
    while (pos < len) {
        /* JIT's fast path skips pcre2_match's argument checks (ours are valid; invalid UTF-8 in
         * the subject is handled by the JIT code itself under PCRE2_MATCH_INVALID_UTF) */
        int rc = t->jit ? pcre2_jit_match(t->re, s, len, pos, options, e->md, e->mctx)
                        : pcre2_match(t->re, s, len, pos, options, e->md, e->mctx);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !e->jit_stack) { /* a deep match: a bigger stack, once */
            e->mctx = pcre2_match_context_create(NULL);
            e->jit_stack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, NULL);
            if (!e->mctx || !e->jit_stack) return g2_fail(e->err, "tokenizer: out of memory for the regex stack");
            pcre2_jit_stack_assign(e->mctx, NULL, e->jit_stack);
            continue;
        }
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return regex_error(e, rc, pos);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t ms = ov[0], me = ov[1];
        if (ms > pos && encode_piece(e, s + pos, ms - pos)) return -1; /* bytes no match covers */
        pos = ms;
        if (me == ms) {
            /* an empty match (only a custom pattern can make one): search again from here for a
             * non-empty one; what that skips becomes a gap. Each retry moves pos forward. */
            options = PCRE2_NOTEMPTY_ATSTART;
            continue;
        }
        options = 0;
        if (encode_piece(e, s + ms, me - ms)) return -1;
        pos = me;
    }
    if (pos < len && encode_piece(e, s + pos, len - pos)) return -1;
    return 0;
}

/* The earliest special token at or after pos (longest at that position), or len if none. */
static size_t next_special(const tokenizer *t, const uint8_t *s, size_t len, size_t pos, int32_t *id, size_t *tok_len) {
    for (; pos < len; pos++) {
        if (!t->special_first[s[pos]]) continue;
        for (uint32_t k = 0; k < t->n_special_lens; k++) {
            size_t l = t->special_lens[k];
            if (l > len - pos) continue;
            int32_t found = map_find(t, &t->special, s + pos, l);
            if (found != NO_TOKEN) {
                *id = found;
                *tok_len = l;
                return pos;
            }
        }
    }
    return len;
}

int tokenizer_encode(const tokenizer *t, const char *text, size_t len, bool allow_special, int32_t **ids,
                     size_t *n_ids, g2_error *err) {
    *ids = NULL;
    *n_ids = 0;
    if (!text && len) return g2_fail(err, "tokenizer: no text");
    encoder e = {.t = t, .err = err};
    e.cap_ids = len / 3 + 16;
    e.ids = malloc(e.cap_ids * sizeof *e.ids);
    e.md = pcre2_match_data_create_from_pattern(t->re, NULL);
    int rc = -1;
    if (!e.ids || !e.md) {
        g2_fail(err, "tokenizer: out of memory");
        goto done;
    }
    const uint8_t *s = (const uint8_t *)text;
    size_t pos = 0;
    while (pos < len) {
        int32_t sid = NO_TOKEN;
        size_t slen = 0;
        size_t at = allow_special && t->n_special ? next_special(t, s, len, pos, &sid, &slen) : len;
        if (at > pos && encode_ordinary(&e, s + pos, at - pos)) goto done;
        if (at == len) break;
        if (push_id(&e, sid)) goto done;
        pos = at + slen;
    }
    rc = 0;
done:
    if (e.md) pcre2_match_data_free(e.md);
    if (e.mctx) pcre2_match_context_free(e.mctx);
    if (e.jit_stack) pcre2_jit_stack_free(e.jit_stack);
    free(e.scratch);
    if (rc) {
        free(e.ids);
        return -1;
    }
    *ids = e.ids;
    *n_ids = e.n_ids;
    return 0;
}

/* runtime/tokenizer.c and runtime/utf8.c.
 *
 * The proof of exactness: tests/data/tokenizer/ holds vectors made by the real tiktoken (npm
 * package, tests/tokenizer/make_vectors.mjs) over the full cl100k_base and o200k_base ranks with
 * Grok-2's V1 pattern; every vector must encode to exactly tiktoken's ids. The rest: special
 * tokens allowed or not, longest special match, empty input, invalid UTF-8 (our definition, see
 * tokenizer.c) and byte-exact round trips of arbitrary bytes, the GGUF vocabulary path (GPT-2
 * alphabet, token types, padding) and its error messages, and the streaming UTF-8 decoder. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "../runtime/runtime.h"

/* ---- loading the committed data ----------------------------------------------------------- */

static char *data_path(const char *name) {
    const char *root = getenv("GROK2_ROOT");
    if (!root || !*root) root = ".";
    size_t n = strlen(root) + strlen(name) + 64;
    char *p = malloc(n);
    snprintf(p, n, "%s/tests/data/tokenizer/%s", root, name);
    return p;
}

/* A .zst file decompressed into a NUL-terminated buffer. */
static char *read_zst(const char *name, size_t *out_len) {
    char *path = data_path(name);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s (set GROK2_ROOT to the source tree)", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *z = malloc((size_t)size);
    cr_assert_eq(fread(z, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    unsigned long long n = ZSTD_getFrameContentSize(z, (size_t)size);
    cr_assert(n != ZSTD_CONTENTSIZE_ERROR && n != ZSTD_CONTENTSIZE_UNKNOWN, "%s: no content size", path);
    char *text = malloc(n + 1);
    size_t got = ZSTD_decompress(text, n, z, (size_t)size);
    cr_assert(!ZSTD_isError(got) && got == n, "%s: %s", path, ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short");
    text[n] = 0;
    free(z);
    free(path);
    if (out_len) *out_len = n;
    return text;
}

/* A tok.json vocabulary (grok2-model.md section 4) as the arrays tokenizer_new takes. */
typedef struct {
    uint32_t n;
    uint8_t **bytes;
    uint32_t *lens;
    bool *special;
} vocab;

static void vocab_free(vocab *v) {
    for (uint32_t i = 0; i < v->n; i++) free(v->bytes[i]);
    free(v->bytes);
    free(v->lens);
    free(v->special);
}

static void add_tokens(vocab *v, const cJSON *list, bool special) {
    const cJSON *item;
    cJSON_ArrayForEach(item, list) {
        int id = cJSON_GetObjectItem(item, "token")->valueint;
        const cJSON *bytes = cJSON_GetObjectItem(item, "bytes");
        cr_assert(id >= 0 && (uint32_t)id < v->n && !v->lens[id], "bad or repeated id %d", id);
        uint32_t len = (uint32_t)cJSON_GetArraySize(bytes), k = 0;
        v->bytes[id] = malloc(len);
        const cJSON *b;
        cJSON_ArrayForEach(b, bytes) v->bytes[id][k++] = (uint8_t)b->valueint;
        v->lens[id] = len;
        v->special[id] = special;
    }
}

static vocab load_vocab(const char *name) {
    char *text = read_zst(name, NULL);
    cJSON *j = cJSON_Parse(text);
    cr_assert(j, "%s: not JSON", name);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "word_split")->valuestring, "V1");
    vocab v = {0};
    v.n = (uint32_t)cJSON_GetObjectItem(j, "vocab_size")->valueint;
    v.bytes = calloc(v.n, sizeof *v.bytes);
    v.lens = calloc(v.n, sizeof *v.lens);
    v.special = calloc(v.n, sizeof *v.special);
    add_tokens(&v, cJSON_GetObjectItem(j, "regular_tokens"), false);
    add_tokens(&v, cJSON_GetObjectItem(j, "special_tokens"), true);
    cJSON_Delete(j);
    free(text);
    return v;
}

static tokenizer *new_tokenizer(const vocab *v) {
    tokenizer *t;
    g2_error err = {{0}};
    int rc = tokenizer_new(&t, v->n, (const uint8_t *const *)v->bytes, v->lens, v->special, NULL, &err);
    cr_assert_eq(rc, 0, "tokenizer_new: %s", err.msg);
    return t;
}

static size_t base64_decode(const char *s, uint8_t *out) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (; *s && *s != '='; s++) {
        const char *p = strchr(alphabet, *s);
        cr_assert(p, "bad base64");
        acc = (acc << 6) | (uint32_t)(p - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    return n;
}

/* encode, failing the test on error */
static size_t encode(const tokenizer *t, const void *text, size_t len, bool allow_special, int32_t **ids) {
    size_t n;
    g2_error err = {{0}};
    int rc = tokenizer_encode(t, text, len, allow_special, ids, &n, &err);
    cr_assert_eq(rc, 0, "tokenizer_encode: %s", err.msg);
    return n;
}

/* The concatenated pieces of ids equal bytes[0..len). */
static bool decodes_to(const tokenizer *t, const int32_t *ids, size_t n, const uint8_t *bytes, size_t len) {
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        size_t pl;
        const uint8_t *p = tokenizer_piece(t, ids[i], &pl);
        if (!p || at + pl > len || memcmp(bytes + at, p, pl)) return false;
        at += pl;
    }
    return at == len;
}

/* ---- the exactness proof ------------------------------------------------------------------ */

/* Every vector in vectors_file against t (ids equal to tiktoken's, pieces equal to the text); returns how many. */
static size_t check_vectors(const tokenizer *t, const char *vectors_file) {
    char *text = read_zst(vectors_file, NULL);
    cJSON *j = cJSON_Parse(text);
    cr_assert(j, "%s: not JSON", vectors_file);
    const cJSON *list = cJSON_GetObjectItem(j, "vectors"), *vec;
    size_t n_vectors = 0, n_failed = 0, n_ids_total = 0;
    cJSON_ArrayForEach(vec, list) {
        const char *name = cJSON_GetObjectItem(vec, "name")->valuestring;
        const char *b64 = cJSON_GetObjectItem(vec, "text_b64")->valuestring;
        bool allow = cJSON_IsTrue(cJSON_GetObjectItem(vec, "allow_special"));
        const cJSON *want = cJSON_GetObjectItem(vec, "ids");
        uint8_t *bytes = malloc(strlen(b64) * 3 / 4 + 4);
        size_t len = base64_decode(b64, bytes);
        int32_t *ids;
        size_t n = encode(t, bytes, len, allow, &ids);
        size_t n_want = (size_t)cJSON_GetArraySize(want), i = 0, first_diff = SIZE_MAX;
        const cJSON *w;
        cJSON_ArrayForEach(w, want) {
            if (first_diff == SIZE_MAX && (i >= n || ids[i] != w->valueint)) first_diff = i;
            i++;
        }
        if (first_diff == SIZE_MAX && n != n_want) first_diff = n < n_want ? n : n_want;
        if (first_diff != SIZE_MAX) {
            if (n_failed < 10) {
                fprintf(stderr, "%s: vector %s (%zu bytes, allow_special %d): %zu ids, tiktoken %zu; first "
                        "difference at id %zu:", vectors_file, name, len, allow, n, n_want, first_diff);
                for (size_t k = first_diff; k < first_diff + 4 && k < n; k++) fprintf(stderr, " %d", ids[k]);
                fprintf(stderr, " | tiktoken:");
                for (size_t k = first_diff; k < first_diff + 4 && k < n_want; k++)
                    fprintf(stderr, " %d", cJSON_GetArrayItem(want, (int)k)->valueint);
                fprintf(stderr, "\n");
            }
            n_failed++;
        }
        /* and the round trip: the pieces give back the text, byte for byte */
        cr_expect(decodes_to(t, ids, n, bytes, len), "%s: vector %s does not decode to its text", vectors_file, name);
        n_ids_total += n;
        n_vectors++;
        free(ids);
        free(bytes);
    }
    cJSON_Delete(j);
    free(text);
    cr_assert_eq(n_failed, 0, "%s: %zu of %zu vectors differ from tiktoken", vectors_file, n_failed, n_vectors);
    cr_assert_gt(n_vectors, 5000, "%s: only %zu vectors", vectors_file, n_vectors);
    cr_log_info("%s: %zu vectors, %zu ids, all equal to tiktoken's", vectors_file, n_vectors, n_ids_total);
    return n_vectors;
}

Test(tokenizer, cl100k_base_matches_tiktoken_on_every_vector, .timeout = 60) {
    vocab v = load_vocab("cl100k_base.tok.json.zst");
    tokenizer *t = new_tokenizer(&v);
    check_vectors(t, "cl100k_base.vectors.json.zst");
    tokenizer_free(t);
    vocab_free(&v);
}

Test(tokenizer, o200k_base_matches_tiktoken_on_every_vector, .timeout = 60) {
    vocab v = load_vocab("o200k_base.tok.json.zst");
    tokenizer *t = new_tokenizer(&v);
    check_vectors(t, "o200k_base.vectors.json.zst");
    tokenizer_free(t);
    vocab_free(&v);
}

/* ---- special tokens ----------------------------------------------------------------------- */

Test(tokenizer, special_tokens_only_when_allowed, .timeout = 60) {
    vocab v = load_vocab("cl100k_base.tok.json.zst");
    tokenizer *t = new_tokenizer(&v);
    int32_t eos = tokenizer_find_special(t, "<|eos|>"), sep = tokenizer_find_special(t, "<|separator|>");
    cr_assert(eos > 100000 && sep > 100000 && eos != sep);
    cr_assert_eq(tokenizer_find_special(t, "<|nope|>"), -1);
    cr_assert_eq(tokenizer_find_special(t, "hello"), -1, "a regular token is not special");
    const char *text = "Human: Hi<|separator|>\n\nAssistant:<|eos|>";
    int32_t *ids;
    size_t n = encode(t, text, strlen(text), true, &ids);
    int seen = 0;
    for (size_t i = 0; i < n; i++) seen += (ids[i] == eos) * 1 + (ids[i] == sep) * 10;
    cr_assert_eq(seen, 11, "allowed: one <|separator|> and one <|eos|> token");
    cr_assert(decodes_to(t, ids, n, (const uint8_t *)text, strlen(text)));
    free(ids);
    n = encode(t, text, strlen(text), false, &ids);
    for (size_t i = 0; i < n; i++) cr_assert(ids[i] < 100256, "not allowed: special text is ordinary text");
    cr_assert(decodes_to(t, ids, n, (const uint8_t *)text, strlen(text)));
    free(ids);
    tokenizer_free(t);
    vocab_free(&v);
}

/* A small vocabulary: the 256 bytes, a few merges, and specials where one is a prefix of another. */
static tokenizer *small_tokenizer(const char *const *extra, size_t n_extra, const char *const *specials,
                                  size_t n_specials, int skip_byte) {
    uint32_t n = 256 + (uint32_t)(n_extra + n_specials);
    uint8_t **bytes = calloc(n, sizeof *bytes);
    uint32_t *lens = calloc(n, sizeof *lens);
    bool *special = calloc(n, sizeof *special);
    for (uint32_t i = 0; i < 256; i++) {
        bytes[i] = malloc(1);
        bytes[i][0] = (uint8_t)i;
        lens[i] = (int)i == skip_byte ? 0 : 1;
    }
    for (size_t i = 0; i < n_extra + n_specials; i++) {
        const char *s = i < n_extra ? extra[i] : specials[i - n_extra];
        bytes[256 + i] = (uint8_t *)strdup(s);
        lens[256 + i] = (uint32_t)strlen(s);
        special[256 + i] = i >= n_extra;
    }
    tokenizer *t;
    g2_error err = {{0}};
    cr_assert_eq(tokenizer_new(&t, n, (const uint8_t *const *)bytes, lens, special, NULL, &err), 0, "%s", err.msg);
    for (uint32_t i = 0; i < n; i++) free(bytes[i]);
    free(bytes);
    free(lens);
    free(special);
    return t;
}

static void expect_ids(const tokenizer *t, const char *text, bool allow, const int32_t *want, size_t n_want) {
    int32_t *ids;
    size_t n = encode(t, text, strlen(text), allow, &ids);
    cr_assert_eq(n, n_want, "'%s': %zu ids, expected %zu", text, n, n_want);
    for (size_t i = 0; i < n; i++) cr_assert_eq(ids[i], want[i], "'%s': id %zu is %d, expected %d", text, i, ids[i], want[i]);
    free(ids);
}

Test(tokenizer, longest_special_token_wins) {
    const char *specials[] = {"<|a|>", "<|a|>b", "<|"};
    tokenizer *t = small_tokenizer(NULL, 0, specials, 3, -1);
    expect_ids(t, "<|a|>bc", true, (int32_t[]){257, 'c'}, 2);
    expect_ids(t, "<|a|>c", true, (int32_t[]){256, 'c'}, 2);
    expect_ids(t, "x<|y", true, (int32_t[]){'x', 258, 'y'}, 3);
    expect_ids(t, "<|a|", true, (int32_t[]){258, 'a', '|'}, 3);
    tokenizer_free(t);
}

Test(tokenizer, bpe_merges_lowest_rank_first_ties_leftmost) {
    /* ranks: "ab" 256, "bc" 257, "abc" 258, "aa" 259 */
    const char *extra[] = {"ab", "bc", "abc", "aa"};
    tokenizer *t = small_tokenizer(extra, 4, NULL, 0, -1);
    expect_ids(t, "abc", false, (int32_t[]){258}, 1);              /* a piece that is a token */
    expect_ids(t, "abcd", false, (int32_t[]){258, 'd'}, 2);        /* ab first, then ab+c */
    expect_ids(t, "bcab", false, (int32_t[]){257, 256}, 2);
    expect_ids(t, "aaa", false, (int32_t[]){259, 'a'}, 2);         /* tie: leftmost pair */
    expect_ids(t, "aaaaa", false, (int32_t[]){259, 259, 'a'}, 3);
    tokenizer_free(t);
}

Test(tokenizer, empty_input_gives_no_ids) {
    tokenizer *t = small_tokenizer(NULL, 0, (const char *[]){"<|eos|>"}, 1, -1);
    int32_t *ids = (int32_t *)1;
    size_t n = 99;
    g2_error err;
    cr_assert_eq(tokenizer_encode(t, "", 0, true, &ids, &n, &err), 0);
    cr_assert_eq(n, 0);
    free(ids); /* malloc'd (or NULL): freeable either way */
    cr_assert_eq(tokenizer_encode(t, NULL, 0, false, &ids, &n, &err), 0);
    cr_assert_eq(n, 0);
    free(ids);
    tokenizer_free(t);
}

Test(tokenizer, a_byte_without_a_token_is_an_error_not_a_crash) {
    tokenizer *t = small_tokenizer((const char *[]){"zz"}, 1, NULL, 0, 'z');
    expect_ids(t, "zz", false, (int32_t[]){256}, 1); /* merged: fine */
    int32_t *ids;
    size_t n;
    g2_error err = {{0}};
    cr_assert_eq(tokenizer_encode(t, "zzz", 3, false, &ids, &n, &err), -1);
    cr_assert(strstr(err.msg, "0x7a"), "%s", err.msg);
    tokenizer_free(t);
}

/* ---- invalid UTF-8 ------------------------------------------------------------------------ */

static uint64_t rng(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

Test(tokenizer, invalid_utf8_is_encoded_bytewise_and_round_trips, .timeout = 60) {
    vocab v = load_vocab("cl100k_base.tok.json.zst");
    tokenizer *t = new_tokenizer(&v);
    /* a single invalid byte is its byte token */
    int32_t *ids;
    size_t n = encode(t, "\xff", 1, false, &ids);
    cr_assert_eq(n, 1);
    size_t pl;
    const uint8_t *p = tokenizer_piece(t, ids[0], &pl);
    cr_assert(pl == 1 && p[0] == 0xff);
    free(ids);
    /* definition: text = A + invalid + B encodes as A alone, the invalid bytes alone, B alone */
    const char *valid[] = {"hello", "it'", "  ", "x \n", "你好", "12", "don't", "\r\n", "!!", "é", "👍🏽", "s"};
    const char *invalid[] = {"\xff", "\x80", "\xc0\xaf", "\xe4\xbd", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf0\x9f\x98",
                             "\xfe\xfe", "\xc3"};
    size_t nv = sizeof valid / sizeof *valid, ni = sizeof invalid / sizeof *invalid;
    for (size_t a = 0; a < nv; a++)
        for (size_t x = 0; x < ni; x++)
            for (size_t b = 0; b < nv; b++) {
                char text[64];
                int len = snprintf(text, sizeof text, "%s%s%s", valid[a], invalid[x], valid[b]);
                int32_t *whole, *pa, *px, *pb;
                size_t nw = encode(t, text, (size_t)len, false, &whole);
                size_t na = encode(t, valid[a], strlen(valid[a]), false, &pa);
                size_t nx = encode(t, invalid[x], strlen(invalid[x]), false, &px);
                size_t nb = encode(t, valid[b], strlen(valid[b]), false, &pb);
                cr_assert_eq(nw, na + nx + nb, "'%s'", text);
                cr_assert(!memcmp(whole, pa, na * 4) && !memcmp(whole + na, px, nx * 4) &&
                          !memcmp(whole + na + nx, pb, nb * 4), "'%s'", text);
                cr_assert(decodes_to(t, whole, nw, (const uint8_t *)text, (size_t)len));
                free(whole), free(pa), free(px), free(pb);
            }
    /* any bytes at all: encoding succeeds and decodes back byte for byte */
    uint64_t seed = 42;
    uint8_t buf[512];
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = rng(&seed) % (iter < 100 ? 8 : sizeof buf);
        int mode = (int)(rng(&seed) % 3);
        for (size_t i = 0; i < len; i++) {
            uint64_t r = rng(&seed);
            /* uniform bytes, ASCII-heavy, or UTF-8-ish (leads and continuations) */
            buf[i] = mode == 0 ? (uint8_t)r : mode == 1 ? (r & 7 ? " a'\n\t1<|e>"[r % 11] : (uint8_t)(r >> 8))
                                                        : (uint8_t)(0x80 | (r & 0x7f));
        }
        bool allow = rng(&seed) & 1;
        n = encode(t, buf, len, allow, &ids);
        cr_assert(decodes_to(t, ids, n, buf, len), "random bytes, iteration %d, %zu bytes", iter, len);
        free(ids);
    }
    tokenizer_free(t);
    vocab_free(&v);
}

/* ---- construction errors ------------------------------------------------------------------ */

Test(tokenizer, bad_vocabularies_and_patterns_are_clear_errors) {
    const uint8_t *bytes[] = {(const uint8_t *)"a", (const uint8_t *)"b", (const uint8_t *)"a"};
    uint32_t lens[] = {1, 1, 1};
    tokenizer *t = (tokenizer *)1;
    g2_error err = {{0}};
    cr_assert_eq(tokenizer_new(&t, 3, bytes, lens, NULL, NULL, &err), -1);
    cr_assert_null(t);
    cr_assert(strstr(err.msg, "tokens 0 and 2"), "%s", err.msg);
    cr_assert_eq(tokenizer_new(&t, 2, bytes, lens, NULL, "([a-z", &err), -1);
    cr_assert(strstr(err.msg, "pattern"), "%s", err.msg);
    cr_assert_eq(tokenizer_new(&t, 0, bytes, lens, NULL, NULL, &err), -1);
    bool all_special[] = {true, true};
    cr_assert_eq(tokenizer_new(&t, 2, bytes, lens, all_special, NULL, &err), -1);
    cr_assert(strstr(err.msg, "no regular"), "%s", err.msg);
    /* a custom pattern that leaves text unmatched and can match empty: nothing is lost */
    cr_assert_eq(tokenizer_new(&t, 2, bytes, lens, NULL, "a*", &err), 0, "%s", err.msg);
    int32_t *ids;
    size_t n = encode(t, "babba", 5, false, &ids);
    cr_assert(decodes_to(t, ids, n, (const uint8_t *)"babba", 5));
    free(ids);
    tokenizer_free(t);
    cr_assert_null(tokenizer_piece(t = small_tokenizer(NULL, 0, NULL, 0, -1), 256, NULL));
    cr_assert_null(tokenizer_piece(t, -1, NULL));
    cr_assert_eq(tokenizer_vocab_size(t), 256);
    cr_assert_eq(tokenizer_find_special(t, "<|eos|>"), -1);
    tokenizer_free(t);
}

/* ---- from GGUF ---------------------------------------------------------------------------- */

/* UTF-8 of bytes in the GPT-2 byte-to-unicode alphabet. */
static size_t gpt2_encode(const uint8_t *b, size_t n, char *out) {
    uint32_t map[256];
    uint32_t next = 256;
    for (int c = 0; c < 256; c++) {
        bool printable = (c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || c >= 0xae;
        map[c] = printable ? (uint32_t)c : next++;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = map[b[i]];
        if (cp < 0x80) out[o++] = (char)cp;
        else {
            out[o++] = (char)(0xc0 | (cp >> 6));
            out[o++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    out[o] = 0;
    return o;
}

typedef struct {
    const char *model, *pre, *pat_str;
    const char *bad_token; /* replaces token 5 */
    int32_t bad_type;      /* replaces type 5 when nonzero */
    bool short_types;
} gguf_options;

/* Writes the vocabulary as llama.cpp does: normal tokens in the GPT-2 alphabet, control tokens
 * as text, unused [PAD] entries in the holes of the id space. */
static char *write_vocab_gguf(const vocab *v, const gguf_options *o) {
    char *dir = strdup("/tmp/grok2-tok-XXXXXX");
    const char *base = getenv("GROK2_TEST_TMP");
    if (base && *base) {
        free(dir);
        size_t sz = strlen(base) + 32;
        dir = malloc(sz);
        snprintf(dir, sz, "%s/tok-XXXXXX", base);
    }
    cr_assert(mkdtemp(dir));
    size_t sz = strlen(dir) + 32;
    char *path = malloc(sz);
    snprintf(path, sz, "%s/vocab.gguf", dir);
    free(dir);
    char **strs = calloc(v->n, sizeof *strs);
    int32_t *types = calloc(v->n, sizeof *types);
    for (uint32_t i = 0; i < v->n; i++) {
        strs[i] = malloc(v->lens[i] * 2 + 32);
        if (!v->lens[i]) {
            sprintf(strs[i], "[PAD%u]", i);
            types[i] = 5;
        } else if (v->special[i]) {
            memcpy(strs[i], v->bytes[i], v->lens[i]);
            strs[i][v->lens[i]] = 0;
            types[i] = 3;
        } else {
            gpt2_encode(v->bytes[i], v->lens[i], strs[i]);
            types[i] = 1;
        }
    }
    if (o->bad_token) strcpy(strs[5], o->bad_token);
    if (o->bad_type) types[5] = o->bad_type;
    gguf_writer *w = gguf_writer_new();
    g2_error err = {{0}};
    int rc = gguf_writer_set_str(w, "general.architecture", "grok", &err) ||
             gguf_writer_set_str(w, "tokenizer.ggml.model", o->model ? o->model : "gpt2", &err) ||
             gguf_writer_set_str(w, "tokenizer.ggml.pre", o->pre ? o->pre : "grok-2", &err) ||
             gguf_writer_set_str_array(w, "tokenizer.ggml.tokens", (const char *const *)strs, NULL, v->n, &err) ||
             gguf_writer_set_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_I32, types, v->n - o->short_types, &err);
    if (rc == 0 && o->pat_str) rc = gguf_writer_set_str(w, "tokenizer.pat_str", o->pat_str, &err);
    rc = rc || gguf_writer_begin(w, path, &err) || gguf_writer_finish(w, &err);
    cr_assert_eq(rc, 0, "gguf writer: %s", err.msg);
    gguf_writer_free(w);
    for (uint32_t i = 0; i < v->n; i++) free(strs[i]);
    free(strs);
    free(types);
    return path;
}

/* Removes the file and the directory write_vocab_gguf made for it; frees path. */
static void remove_gguf(char *path) {
    unlink(path);
    char *slash = strrchr(path, '/');
    if (slash) {
        *slash = 0;
        rmdir(path);
    }
    free(path);
}

static int load_gguf(const char *path, tokenizer **t, g2_error *err) {
    gguf_file *f;
    g2_error e2;
    cr_assert_eq(gguf_open(&f, path, &e2), 0, "%s", e2.msg);
    int rc = tokenizer_from_gguf(t, f, err);
    gguf_close(f);
    return rc;
}

Test(tokenizer, gguf_vocabulary_in_the_gpt2_alphabet_matches_tiktoken, .timeout = 60) {
    vocab v = load_vocab("cl100k_base.tok.json.zst");
    /* the cl100k vocabulary has holes (100256, 100261..100275): [PAD] unused entries there */
    char *path = write_vocab_gguf(&v, &(gguf_options){0});
    tokenizer *t;
    g2_error err = {{0}};
    cr_assert_eq(load_gguf(path, &t, &err), 0, "%s", err.msg);
    cr_assert_eq(tokenizer_vocab_size(t), v.n);
    for (uint32_t i = 0; i < v.n; i++) {
        size_t len;
        const uint8_t *p = tokenizer_piece(t, (int32_t)i, &len);
        cr_assert(p && len == v.lens[i] && (!len || !memcmp(p, v.bytes[i], len)), "token %u decoded wrongly", i);
    }
    cr_assert_eq(tokenizer_find_special(t, "<|endoftext|>"), 100257);
    check_vectors(t, "cl100k_base.vectors.json.zst");
    tokenizer_free(t);
    remove_gguf(path);
    vocab_free(&v);
}

static void expect_gguf_error(const vocab *v, gguf_options o, const char *needle) {
    char *path = write_vocab_gguf(v, &o);
    tokenizer *t = (tokenizer *)1;
    g2_error err = {{0}};
    cr_assert_eq(load_gguf(path, &t, &err), -1, "expected an error containing '%s'", needle);
    cr_assert_null(t);
    cr_assert(strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
    cr_assert(strstr(err.msg, "vocab.gguf"), "message '%s' does not name the file", err.msg);
    remove_gguf(path);
}

Test(tokenizer, gguf_vocabulary_errors_name_file_key_and_index) {
    /* a small vocabulary: 256 bytes + "ab" + one special + a hole */
    vocab v = {.n = 260};
    v.bytes = calloc(v.n, sizeof *v.bytes);
    v.lens = calloc(v.n, sizeof *v.lens);
    v.special = calloc(v.n, sizeof *v.special);
    for (uint32_t i = 0; i < 256; i++) {
        v.bytes[i] = malloc(1);
        v.bytes[i][0] = (uint8_t)i;
        v.lens[i] = 1;
    }
    v.bytes[256] = (uint8_t *)strdup("ab");
    v.lens[256] = 2;
    v.bytes[257] = (uint8_t *)strdup("<|eos|>");
    v.lens[257] = 7;
    v.special[257] = true;
    v.bytes[259] = (uint8_t *)strdup("123");
    v.lens[259] = 3; /* 258 stays a hole */
    char *path = write_vocab_gguf(&v, &(gguf_options){0});
    tokenizer *t;
    g2_error err = {{0}};
    cr_assert_eq(load_gguf(path, &t, &err), 0, "%s", err.msg);
    expect_ids(t, "ab<|eos|>ab", true, (int32_t[]){256, 257, 256}, 3);
    size_t len;
    cr_assert_not_null(tokenizer_piece(t, 258, &len));
    cr_assert_eq(len, 0, "an unused [PAD] entry has no bytes");
    expect_ids(t, "123", false, (int32_t[]){'1', '2', '3'}, 3); /* V1: one digit at a time */
    tokenizer_free(t);
    remove_gguf(path);
    /* a pattern in the file replaces V1 (and tokenizer.ggml.pre) */
    path = write_vocab_gguf(&v, &(gguf_options){.pat_str = "\\p{N}+|[^\\p{N}]+", .pre = "whatever"});
    cr_assert_eq(load_gguf(path, &t, &err), 0, "%s", err.msg);
    expect_ids(t, "123", false, (int32_t[]){259}, 1);
    tokenizer_free(t);
    remove_gguf(path);
    expect_gguf_error(&v, (gguf_options){.pat_str = "(unclosed"}, "pat_str");
    expect_gguf_error(&v, (gguf_options){.model = "llama"}, "tokenizer.ggml.model");
    expect_gguf_error(&v, (gguf_options){.pre = "llama3"}, "tokenizer.ggml.pre");
    expect_gguf_error(&v, (gguf_options){.bad_token = "\xe2\x82\xac"}, "tokens[5] has U+20AC");
    expect_gguf_error(&v, (gguf_options){.bad_token = "\xff"}, "tokens[5] is not valid UTF-8");
    expect_gguf_error(&v, (gguf_options){.bad_token = "a"}, "tokens 5 and 97");
    expect_gguf_error(&v, (gguf_options){.bad_type = 99}, "token_type[5] is 99");
    expect_gguf_error(&v, (gguf_options){.short_types = true}, "token_type has 259 entries for 260");
    vocab_free(&v);
}

/* ---- streaming UTF-8 ---------------------------------------------------------------------- */

/* Push text in pieces cut at the given points, then flush; the concatenated output. */
static size_t stream_through(const uint8_t *text, size_t len, const size_t *cuts, size_t n_cuts, char *out) {
    utf8_stream s = {0};
    size_t o = 0, at = 0;
    for (size_t c = 0; c <= n_cuts; c++) {
        size_t end = c < n_cuts ? cuts[c] : len;
        o += utf8_stream_push(&s, text + at, end - at, out + o, 3 * (end - at) + 3);
        at = end;
    }
    return o + utf8_stream_flush(&s, out + o, 3);
}

Test(tokenizer, utf8_stream_split_characters_come_out_whole) {
    const char *text = "aé€😀b👨‍👩‍👧z中";
    size_t len = strlen(text);
    char out[256];
    /* every single cut point and every pair of cut points */
    for (size_t i = 0; i <= len; i++)
        for (size_t j = i; j <= len; j++) {
            size_t cuts[2] = {i, j};
            size_t n = stream_through((const uint8_t *)text, len, cuts, 2, out);
            cr_assert(n == len && !memcmp(out, text, len), "cuts %zu %zu", i, j);
        }
    /* byte by byte: nothing is emitted until the character is complete */
    utf8_stream s = {0};
    cr_assert_eq(utf8_stream_push(&s, (const uint8_t *)"\xf0\x9f", 2, out, sizeof out), 0);
    cr_assert_eq(utf8_stream_push(&s, (const uint8_t *)"\x98", 1, out, sizeof out), 0);
    cr_assert_eq(utf8_stream_push(&s, (const uint8_t *)"\x80!", 2, out, sizeof out), 5);
    cr_assert(!memcmp(out, "\xf0\x9f\x98\x80!", 5));
    cr_assert_eq(utf8_stream_flush(&s, out, sizeof out), 0);
}

Test(tokenizer, utf8_stream_invalid_sequences_become_one_replacement_each) {
    /* Unicode's example of maximal subparts (Table 3-8): 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64 */
    const uint8_t in[] = {0x61, 0xf1, 0x80, 0x80, 0xe1, 0x80, 0xc2, 0x62, 0x80, 0x63, 0x80, 0xbf, 0x64};
    const char *want = "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "b\xef\xbf\xbd" "c\xef\xbf\xbd\xef\xbf\xbd" "d";
    char out[256];
    for (size_t cut = 0; cut <= sizeof in; cut++) {
        size_t n = stream_through(in, sizeof in, &cut, 1, out);
        cr_assert(n == strlen(want) && !memcmp(out, want, n), "cut at %zu", cut);
    }
    /* overlongs, surrogates, too-large values, bytes that start nothing */
    const struct {
        const char *in, *out;
    } cases[] = {
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xe0\x80\xaf", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xff" "a", "\xef\xbf\xbd" "a"},
        {"\xe4\xbd" "a", "\xef\xbf\xbd" "a"},
        {"\xe4\xbd\xe4\xbd\xa0", "\xef\xbf\xbd\xe4\xbd\xa0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n = stream_through((const uint8_t *)cases[i].in, strlen(cases[i].in), NULL, 0, out);
        cr_assert(n == strlen(cases[i].out) && !memcmp(out, cases[i].out, n), "case %zu", i);
    }
    /* an unfinished character at the end is flushed as one replacement */
    utf8_stream s = {0};
    cr_assert_eq(utf8_stream_push(&s, (const uint8_t *)"ok\xe2\x82", 4, out, sizeof out), 2);
    cr_assert_eq(utf8_stream_flush(&s, out, sizeof out), 3);
    cr_assert(!memcmp(out, "\xef\xbf\xbd", 3));
    cr_assert_eq(s.n_pending, 0);
}

Test(tokenizer, utf8_stream_never_writes_past_out_cap) {
    uint64_t seed = 7;
    uint8_t in[64];
    char out[256 + 16];
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = rng(&seed) % sizeof in, cap = rng(&seed) % 200;
        for (size_t i = 0; i < len; i++) in[i] = (uint8_t)rng(&seed);
        memset(out, 0x5a, sizeof out);
        utf8_stream s = {0};
        size_t n = utf8_stream_push(&s, in, len, out, cap);
        cr_assert(n <= cap);
        for (size_t i = cap; i < sizeof out; i++) cr_assert_eq(out[i], 0x5a, "wrote past out_cap");
        /* with room enough (3 bytes per byte + 3) the output is valid UTF-8 */
        utf8_stream s2 = {0};
        n = utf8_stream_push(&s2, in, len, out, 3 * len + 3);
        n += utf8_stream_flush(&s2, out + n, 3);
        cr_assert(n <= 3 * len + 3);
        for (size_t i = 0; i < n;) {
            uint8_t c = (uint8_t)out[i];
            size_t k = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
            cr_assert(c < 0x80 || (c >= 0xc2 && c <= 0xf4), "invalid lead at %zu", i);
            cr_assert(i + k <= n);
            for (size_t j = 1; j < k; j++) cr_assert_eq((uint8_t)out[i + j] & 0xc0, 0x80);
            i += k;
        }
    }
}

/* ---- speed (reported, not asserted): GROK2_TOKENIZER_BENCH=1 to run ------------------------- */

Test(tokenizer, encode_speed, .timeout = 120) {
    if (!getenv("GROK2_TOKENIZER_BENCH")) cr_skip_test("set GROK2_TOKENIZER_BENCH=1 to measure");
    const char *vocabs[] = {"cl100k_base", "o200k_base"};
    for (int k = 0; k < 2; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s.tok.json.zst", vocabs[k]);
        vocab v = load_vocab(name);
        tokenizer *t = new_tokenizer(&v);
        /* ~4 MB of mixed text: the whole corpus vectors' texts, repeated */
        snprintf(name, sizeof name, "%s.vectors.json.zst", vocabs[k]);
        char *json = read_zst(name, NULL);
        cJSON *j = cJSON_Parse(json);
        size_t cap = 8 << 20, len = 0;
        uint8_t *text = malloc(cap);
        const cJSON *vec;
        while (len < (4u << 20)) {
            cJSON_ArrayForEach(vec, cJSON_GetObjectItem(j, "vectors")) {
                const char *b64 = cJSON_GetObjectItem(vec, "text_b64")->valuestring;
                if (len + strlen(b64) >= cap) break;
                len += base64_decode(b64, text + len);
            }
        }
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int32_t *ids;
        size_t n = encode(t, text, len, false, &ids);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        fprintf(stderr, "%s: encoded %.2f MB into %zu ids in %.3f s: %.1f MB/s\n", vocabs[k], len / 1e6, n, s,
                len / 1e6 / s);
        free(ids);
        free(text);
        cJSON_Delete(j);
        free(json);
        tokenizer_free(t);
        vocab_free(&v);
    }
}

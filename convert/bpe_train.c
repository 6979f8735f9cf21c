/* The synthetic tokenizer: a real byte-level BPE vocabulary learned from grok_sample_text, laid
 * out like the release's (specials first, ranks = ids). The trainer pre-splits the text roughly
 * like the V1 pattern (letters with one leading non-letter, single digits, punctuation runs,
 * whitespace), then repeatedly merges the most frequent adjacent pair. A candidate is kept only
 * if tiktoken's rank-based BPE of its bytes comes down to exactly two earlier tokens, so every
 * learned token can be written as a GGUF merge. */
#include <stdlib.h>
#include <string.h>

#include "convert.h"

#define N_SPECIAL_FIRST 8 /* <|pad|>, <|separator|>, <|eos|>, <|reserved_3..7|> */
#define N_CONTROL 4       /* <|control1..4|> at the top of the id range */
#define FIRST_BYTE_ID N_SPECIAL_FIRST

typedef struct {
    int32_t *sym; /* token ids */
    int len;
    int freq;
} word;

typedef struct {
    word *words;
    int n_words, cap;
} corpus;

static bool is_letter(uint8_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80; }
static bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
static bool is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static bool is_newline(uint8_t c) { return c == '\n' || c == '\r'; }

/* Length of the next pre-token at s (an approximation of V1: good enough for training data). */
static size_t next_piece(const uint8_t *s, size_t n) {
    size_t i = 0;
    if (s[0] == '\'' && n > 1) { /* contractions */
        static const char *const tails[] = {"s", "t", "re", "ve", "m", "ll", "d"};
        for (size_t k = 0; k < sizeof tails / sizeof tails[0]; k++) {
            size_t m = strlen(tails[k]);
            if (m < n && !memcmp(s + 1, tails[k], m) && !(m + 1 < n && is_letter(s[m + 1]))) return m + 1;
        }
    }
    if (is_digit(s[0])) return 1;
    if (is_letter(s[0]) || (n > 1 && !is_newline(s[0]) && !is_digit(s[0]) && !is_letter(s[0]) && is_letter(s[1]))) {
        i = 1;
        while (i < n && is_letter(s[i])) i++;
        return i;
    }
    if (is_space(s[0])) {
        while (i < n && is_space(s[i])) i++;
        if (i < n && i > 1 && !is_newline(s[i - 1])) i--; /* leave one space to lead the next word */
        return i;
    }
    i = 1; /* punctuation run, then newlines */
    while (i < n && !is_space(s[i]) && !is_letter(s[i]) && !is_digit(s[i])) i++;
    while (i < n && is_newline(s[i])) i++;
    return i;
}

static int corpus_add(corpus *c, const uint8_t *s, size_t n) {
    for (int i = 0; i < c->n_words; i++) { /* a few hundred distinct words: linear is fine */
        word *w = &c->words[i];
        if ((size_t)w->len != n) continue;
        bool same = true;
        for (size_t k = 0; k < n && same; k++) same = w->sym[k] == FIRST_BYTE_ID + s[k];
        if (same) {
            w->freq++;
            return 0;
        }
    }
    if (c->n_words == c->cap) {
        int cap = c->cap ? 2 * c->cap : 256;
        word *grown = realloc(c->words, (size_t)cap * sizeof *grown);
        if (!grown) return -1;
        c->words = grown;
        c->cap = cap;
    }
    word *w = &c->words[c->n_words];
    if (!(w->sym = malloc(n * sizeof *w->sym))) return -1;
    for (size_t k = 0; k < n; k++) w->sym[k] = FIRST_BYTE_ID + s[k];
    w->len = (int)n;
    w->freq = 1;
    c->n_words++;
    return 0;
}

static void corpus_free(corpus *c) {
    for (int i = 0; i < c->n_words; i++) free(c->words[i].sym);
    free(c->words);
}

typedef struct {
    uint64_t pair; /* left << 32 | right */
    int64_t count;
} pair_count;

static int by_pair(const void *a, const void *b) {
    uint64_t x = ((const pair_count *)a)->pair, y = ((const pair_count *)b)->pair;
    return x < y ? -1 : x > y;
}
static int by_count_then_pair(const void *a, const void *b) {
    const pair_count *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return by_pair(a, b);
}

/* Distinct adjacent pairs with their weighted counts, most frequent first; returns how many. */
static size_t count_pairs(const corpus *c, pair_count *buf) {
    size_t n = 0;
    for (int i = 0; i < c->n_words; i++)
        for (int k = 0; k + 1 < c->words[i].len; k++)
            buf[n++] = (pair_count){(uint64_t)c->words[i].sym[k] << 32 | (uint32_t)c->words[i].sym[k + 1],
                                    c->words[i].freq};
    qsort(buf, n, sizeof *buf, by_pair);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m && buf[m - 1].pair == buf[i].pair) buf[m - 1].count += buf[i].count;
        else buf[m++] = buf[i];
    }
    qsort(buf, m, sizeof *buf, by_count_then_pair);
    return m;
}

static void apply_merge(corpus *c, int32_t left, int32_t right, int32_t merged) {
    for (int i = 0; i < c->n_words; i++) {
        word *w = &c->words[i];
        int out = 0;
        for (int k = 0; k < w->len; k++) {
            if (k + 1 < w->len && w->sym[k] == left && w->sym[k + 1] == right) {
                w->sym[out++] = merged;
                k++;
            } else {
                w->sym[out++] = w->sym[k];
            }
        }
        w->len = out;
    }
}

static int add_special(tok_vocab *v, int64_t id, const char *name, g2_error *err) {
    return tok_vocab_set(v, id, (const uint8_t *)name, strlen(name), TOKEN_SPECIAL, err);
}

/* Learns up to max_merges merges into ids FIRST_BYTE_ID + 256 ... */
static int train(tok_vocab *v, int64_t max_merges, g2_error *err) {
    corpus c = {0};
    const uint8_t *text = (const uint8_t *)grok_sample_text;
    size_t n = strlen(grok_sample_text), total = 0;
    for (size_t at = 0; at < n;) {
        size_t len = next_piece(text + at, n - at);
        if (corpus_add(&c, text + at, len)) {
            corpus_free(&c);
            return g2_fail(err, "synth tokenizer: out of memory");
        }
        at += len;
        total += len;
    }
    bpe_ranks *ranks = bpe_ranks_new();
    pair_count *pairs = malloc((total + 1) * sizeof *pairs);
    uint8_t *joined = malloc(n + 1);
    size_t *bounds = malloc((n + 2) * sizeof *bounds);
    int rc = ranks && pairs && joined && bounds ? 0 : g2_fail(err, "synth tokenizer: out of memory");
    for (int b = 0; b < 256 && rc == 0; b++) {
        uint8_t byte = (uint8_t)b;
        rc = tok_vocab_set(v, FIRST_BYTE_ID + b, &byte, 1, TOKEN_REGULAR, err);
        if (rc == 0) bpe_ranks_add(ranks, v->tokens[FIRST_BYTE_ID + b].bytes, 1, FIRST_BYTE_ID + b);
    }
    int64_t next_id = FIRST_BYTE_ID + 256;
    while (rc == 0 && next_id < FIRST_BYTE_ID + 256 + max_merges) {
        size_t m = count_pairs(&c, pairs);
        bool merged = false;
        for (size_t i = 0; i < m && pairs[i].count >= 2 && !merged && rc == 0; i++) {
            int32_t left = (int32_t)(pairs[i].pair >> 32), right = (int32_t)(uint32_t)pairs[i].pair;
            const tok_token *a = &v->tokens[left], *b = &v->tokens[right];
            memcpy(joined, a->bytes, a->len);
            memcpy(joined + a->len, b->bytes, b->len);
            size_t len = a->len + b->len;
            /* keep it only if new and reachable as one merge of two earlier tokens */
            if (bpe_ranks_get(ranks, joined, len) >= 0 || bpe_split(ranks, joined, len, next_id, bounds) != 2) continue;
            rc = tok_vocab_set(v, next_id, joined, len, TOKEN_REGULAR, err);
            if (rc == 0 && bpe_ranks_add(ranks, v->tokens[next_id].bytes, len, next_id))
                rc = g2_fail(err, "synth tokenizer: out of memory");
            apply_merge(&c, left, right, (int32_t)next_id++);
            merged = true;
        }
        if (!merged) break; /* the sample has nothing left that repeats */
    }
    bpe_ranks_free(ranks);
    free(pairs);
    free(joined);
    free(bounds);
    corpus_free(&c);
    return rc;
}

int tok_vocab_synthesize(tok_vocab *v, int64_t vocab_size, g2_error *err) {
    memset(v, 0, sizeof *v);
    v->declared_vocab_size = -1;
    if (vocab_size < TOK_SYNTH_MIN_VOCAB || vocab_size > TOK_MAX_ID)
        return g2_fail(err, "synth: vocab %lld: at least %d (8 specials, 256 bytes, 4 controls), at most %d",
                       (long long)vocab_size, TOK_SYNTH_MIN_VOCAB, TOK_MAX_ID);
    static const char *const first[N_SPECIAL_FIRST] = {"<|pad|>", "<|separator|>", "<|eos|>", "<|reserved_3|>",
                                                       "<|reserved_4|>", "<|reserved_5|>", "<|reserved_6|>",
                                                       "<|reserved_7|>"};
    int rc = 0;
    for (int i = 0; i < N_SPECIAL_FIRST && rc == 0; i++) rc = add_special(v, i, first[i], err);
    if (rc == 0) rc = train(v, vocab_size - TOK_SYNTH_MIN_VOCAB, err);
    for (int i = 0; i < N_CONTROL && rc == 0; i++) {
        char name[32];
        snprintf(name, sizeof name, "<|control%d|>", i + 1);
        rc = add_special(v, vocab_size - N_CONTROL + i, name, err);
    }
    if (rc) tok_vocab_free(v);
    else v->n_ids = vocab_size;
    return rc;
}

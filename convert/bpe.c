/* Rank-based byte-level BPE, as tiktoken does it: a hash map from byte strings to ranks, and a
 * split that repeatedly merges the adjacent pair whose joined bytes have the lowest rank. Used
 * to derive tokenizer.ggml.merges from tok.json ranks and by the synthetic trainer. */
#include <stdlib.h>
#include <string.h>

#include "convert.h"

typedef struct {
    const uint8_t *bytes; /* NULL: empty slot */
    size_t len;
    int64_t rank;
} rank_slot;

struct bpe_ranks {
    rank_slot *slots;
    size_t cap, count; /* cap is a power of two, kept at most half full */
};

static uint64_t hash_bytes(const uint8_t *b, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

bpe_ranks *bpe_ranks_new(void) {
    bpe_ranks *r = calloc(1, sizeof *r);
    if (r && !(r->slots = calloc(r->cap = 1024, sizeof *r->slots))) {
        free(r);
        r = NULL;
    }
    return r;
}

void bpe_ranks_free(bpe_ranks *r) {
    if (!r) return;
    free(r->slots);
    free(r);
}

static rank_slot *find_slot(const bpe_ranks *r, const uint8_t *b, size_t n) {
    size_t mask = r->cap - 1;
    for (size_t i = hash_bytes(b, n) & mask;; i = (i + 1) & mask) {
        rank_slot *s = &r->slots[i];
        if (!s->bytes || (s->len == n && !memcmp(s->bytes, b, n))) return s;
    }
}

static int grow(bpe_ranks *r) {
    bpe_ranks bigger = {calloc(r->cap * 2, sizeof(rank_slot)), r->cap * 2, 0};
    if (!bigger.slots) return -1;
    for (size_t i = 0; i < r->cap; i++)
        if (r->slots[i].bytes) *find_slot(&bigger, r->slots[i].bytes, r->slots[i].len) = r->slots[i];
    free(r->slots);
    r->slots = bigger.slots;
    r->cap = bigger.cap;
    return 0;
}

int bpe_ranks_add(bpe_ranks *r, const uint8_t *bytes, size_t len, int64_t rank) {
    if ((r->count + 1) * 2 > r->cap && grow(r)) return -1;
    static const uint8_t empty[1];
    rank_slot *s = find_slot(r, len ? bytes : empty, len);
    if (s->bytes) return -1;
    *s = (rank_slot){len ? bytes : empty, len, rank};
    r->count++;
    return 0;
}

int64_t bpe_ranks_get(const bpe_ranks *r, const uint8_t *bytes, size_t len) {
    static const uint8_t empty[1];
    const rank_slot *s = find_slot(r, len ? bytes : empty, len);
    return s->bytes ? s->rank : -1;
}

size_t bpe_split(const bpe_ranks *r, const uint8_t *bytes, size_t len, int64_t limit, size_t *bounds) {
    size_t n = len; /* parts: [bounds[i], bounds[i + 1]) */
    for (size_t i = 0; i <= len; i++) bounds[i] = i;
    while (n > 1) {
        int64_t best = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            int64_t rank = bpe_ranks_get(r, bytes + bounds[i], bounds[i + 2] - bounds[i]);
            if (rank >= 0 && rank < limit && (best < 0 || rank < best)) {
                best = rank;
                at = i;
            }
        }
        if (best < 0) break;
        memmove(&bounds[at + 1], &bounds[at + 2], (n - at - 1) * sizeof *bounds);
        n--;
    }
    return n;
}

/* ---- merges for tokenizer.ggml.merges ------------------------------------------------------ */

static char *unicode_text(const uint8_t *b, size_t n) {
    char *s = malloc(2 * n + 1), *p = s;
    if (!s) return NULL;
    for (size_t i = 0; i < n; i++) p += byte_to_unicode(b[i], p);
    *p = 0;
    return s;
}

/* Regular tokens sorted by rank (= id). */
static int64_t *regular_ids(const tok_vocab *v) {
    int64_t *ids = malloc((size_t)(v->n_regular + 1) * sizeof *ids), k = 0;
    if (!ids) return NULL;
    for (int64_t id = 0; id < v->n_ids; id++)
        if (v->tokens[id].kind == TOKEN_REGULAR) ids[k++] = id;
    return ids;
}

int bpe_merges_build(const tok_vocab *v, bpe_merges *m, g2_error *err) {
    memset(m, 0, sizeof *m);
    bpe_ranks *ranks = bpe_ranks_new();
    int64_t *ids = regular_ids(v);
    size_t max_len = 1;
    for (int64_t i = 0; i < v->n_regular && ids; i++) {
        const tok_token *t = &v->tokens[ids[i]];
        if (t->len > max_len) max_len = t->len;
    }
    size_t *bounds = malloc((max_len + 1) * sizeof *bounds);
    m->text = malloc((size_t)(v->n_regular + 1) * sizeof *m->text);
    if (!ranks || !ids || !bounds || !m->text) {
        bpe_ranks_free(ranks);
        free(ids);
        free(bounds);
        return g2_fail(err, "tokenizer: out of memory deriving merges");
    }
    int rc = 0;
    for (int64_t i = 0; i < v->n_regular && rc == 0; i++) {
        const tok_token *t = &v->tokens[ids[i]];
        if (bpe_ranks_add(ranks, t->bytes, t->len, ids[i]))
            rc = g2_fail(err, "tokenizer: token %lld repeats the bytes of another token", (long long)ids[i]);
    }
    for (int b = 0; b < 256 && rc == 0; b++) {
        uint8_t byte = (uint8_t)b;
        if (bpe_ranks_get(ranks, &byte, 1) < 0)
            rc = g2_fail(err, "tokenizer: byte 0x%02x has no token: not a byte-level BPE vocabulary", b);
    }
    for (int64_t i = 0; i < v->n_regular && rc == 0; i++) {
        const tok_token *t = &v->tokens[ids[i]];
        if (t->len < 2) continue;
        size_t parts = bpe_split(ranks, t->bytes, t->len, ids[i], bounds);
        if (parts != 2) {
            m->unreachable++;
            continue;
        }
        char *left = unicode_text(t->bytes, bounds[1]), *right = unicode_text(t->bytes + bounds[1], t->len - bounds[1]);
        char *merge = left && right ? malloc(strlen(left) + strlen(right) + 2) : NULL;
        if (merge) {
            sprintf(merge, "%s %s", left, right);
            m->text[m->count++] = merge;
        } else {
            rc = g2_fail(err, "tokenizer: out of memory deriving merges");
        }
        free(left);
        free(right);
    }
    bpe_ranks_free(ranks);
    free(ids);
    free(bounds);
    if (rc) bpe_merges_free(m);
    return rc;
}

void bpe_merges_free(bpe_merges *m) {
    for (int64_t i = 0; i < m->count; i++) free(m->text[i]);
    free(m->text);
    memset(m, 0, sizeof *m);
}

/* libFuzzer harness for tokenizer.tok.json: tok_vocab_parse over any bytes; a refusal must be
 * one line naming the file and leave nothing allocated; an accepted vocabulary must keep the
 * promises of convert.h (ids < n_ids <= TOK_MAX_ID with the last id used, counts that match the
 * kinds, vocab_size no smaller than the ids), and every token's bytes are read so that
 * ASan/UBSan see a bad pointer or length; the vocabulary is then freed (LeakSanitizer checks).
 * `make fuzz` runs it on tests/data/tokenizer-seeds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../convert/convert.h"
#include "fuzz.h"

#define NAME "fuzz.tok.json"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tok_vocab v;
    g2_error err;
    if (tok_vocab_parse((const char *)data, size, NAME, &v, &err) != 0) {
        check_refusal(err.msg, NAME);
        if (v.tokens || v.pat_str || v.n_ids) abort(); /* a refused file owns nothing */
        return 0;
    }
    if (v.n_ids < 1 || v.n_ids > TOK_MAX_ID || !v.tokens || v.tokens[v.n_ids - 1].kind == TOKEN_UNUSED) abort();
    if (v.n_regular < 1 || v.declared_vocab_size > TOK_MAX_ID) abort();
    if (v.declared_vocab_size != -1 && v.declared_vocab_size < v.n_ids) abort();
    int64_t regular = 0, special = 0;
    for (int64_t id = 0; id < v.n_ids; id++) {
        const tok_token *t = &v.tokens[id];
        if (t->kind == TOKEN_UNUSED) {
            if (t->len) abort();
            continue;
        }
        if (t->kind != TOKEN_REGULAR && t->kind != TOKEN_SPECIAL) abort();
        if (!t->bytes || t->len < 1 || t->len > (1 << 16)) abort();
        touch(t->bytes, t->len);
        if (t->kind == TOKEN_REGULAR) {
            regular++;
            continue;
        }
        special++;
        /* a special token's name is text: it is found by name (the first of that name wins); the
         * lookup is a linear scan, so only in tables small enough to keep runs fast */
        char name[64];
        if (v.n_ids <= 65536 && t->len < sizeof name && !memchr(t->bytes, 0, t->len)) {
            memcpy(name, t->bytes, t->len);
            name[t->len] = 0;
            int64_t found = tok_vocab_special_id(&v, name);
            if (found < 0 || found > id) abort();
        }
    }
    if (regular != v.n_regular || special != v.n_special) abort();
    if (v.pat_str) sink += strlen(v.pat_str);
    tok_vocab_free(&v);
    if (v.tokens || v.pat_str || v.n_ids) abort();
    return 0;
}

/* convert/'s tokenizer pieces: the GPT-2 byte-to-unicode map, rank-based BPE, merges derived
 * from tiktoken ranks, tok.json validation, the synthetic vocabulary, and the GGUF export: every
 * id's string maps back to the tok.json bytes and every merge is valid. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../convert/convert.h"
#include "harness.h"

Test(convert_tokenizer, byte_to_unicode_is_a_bijection_that_round_trips) {
    bool seen[400] = {false};
    for (int b = 0; b < 256; b++) {
        char s[2];
        int n = byte_to_unicode((uint8_t)b, s);
        cr_assert(n == 1 || n == 2);
        uint32_t cp = n == 1 ? (uint8_t)s[0] : (uint32_t)((s[0] & 0x1f) << 6 | (s[1] & 0x3f));
        cr_assert_lt(cp, 400);
        cr_assert(!seen[cp], "code point %u used twice", cp);
        seen[cp] = true;
        if (b > ' ' && b < 0x7f) cr_assert_eq(cp, (uint32_t)b, "printable ASCII stands for itself");
        uint8_t back[2];
        cr_assert_eq(unicode_to_bytes(s, (size_t)n, back), 1);
        cr_assert_eq(back[0], b);
    }
    char s[2];
    byte_to_unicode(' ', s);
    cr_assert_eq(memcmp(s, "\xc4\xa0", 2), 0, "space is U+0120 'Ġ' as in GPT-2");
    uint8_t out[8];
    cr_assert_eq(unicode_to_bytes("a b", 3, out), -1, "a raw space is not in the alphabet");
    cr_assert_eq(unicode_to_bytes("\xe4\xb8\xad", 3, out), -1, "a 3-byte character is not in the alphabet");
}

/* A vocabulary: all 256 bytes at ranks 0..255, then the given multi-byte tokens. */
static void byte_vocab(tok_vocab *v, const char *const *extra, int n_extra) {
    memset(v, 0, sizeof *v);
    g2_error err;
    for (int b = 0; b < 256; b++) {
        uint8_t byte = (uint8_t)b;
        cr_assert_eq(tok_vocab_set(v, b, &byte, 1, TOKEN_REGULAR, &err), 0);
    }
    for (int i = 0; i < n_extra; i++)
        cr_assert_eq(tok_vocab_set(v, 256 + i, (const uint8_t *)extra[i], strlen(extra[i]), TOKEN_REGULAR, &err), 0);
    v->n_ids = 256 + n_extra;
}

Test(convert_tokenizer, merges_follow_tiktoken_ranks) {
    static const char *const extra[] = {"ab", "bc", "abc", " t", " th", " the"};
    tok_vocab v;
    byte_vocab(&v, extra, 6);
    bpe_merges m;
    g2_error err;
    cr_assert_eq(bpe_merges_build(&v, &m, &err), 0, "%s", err.msg);
    cr_assert_eq(m.unreachable, 0);
    cr_assert_eq(m.count, 6);
    cr_assert_str_eq(m.text[0], "a b");
    cr_assert_str_eq(m.text[1], "b c");
    cr_assert_str_eq(m.text[2], "ab c", "ab (rank 256) merges before bc (257) inside abc");
    cr_assert_str_eq(m.text[3], "\xc4\xa0 t");
    cr_assert_str_eq(m.text[5], "\xc4\xa0th e");
    bpe_merges_free(&m);
    tok_vocab_free(&v);
}

Test(convert_tokenizer, tokens_that_no_single_merge_reaches_are_counted_not_written) {
    static const char *const extra[] = {"bc", "abcd"}; /* abcd splits as a|bc|d: no pair merges */
    tok_vocab v;
    byte_vocab(&v, extra, 2);
    bpe_merges m;
    g2_error err;
    cr_assert_eq(bpe_merges_build(&v, &m, &err), 0, "%s", err.msg);
    cr_assert_eq(m.count, 1);
    cr_assert_eq(m.unreachable, 1);
    bpe_merges_free(&m);
    tok_vocab_free(&v);
}

Test(convert_tokenizer, a_vocabulary_without_every_byte_is_rejected) {
    tok_vocab v = {0};
    g2_error err;
    uint8_t a = 'a';
    cr_assert_eq(tok_vocab_set(&v, 0, &a, 1, TOKEN_REGULAR, &err), 0);
    v.n_ids = 1;
    bpe_merges m;
    cr_assert_eq(bpe_merges_build(&v, &m, &err), -1);
    cr_assert(strstr(err.msg, "byte 0x00 has no token"), "%s", err.msg);
    tok_vocab_free(&v);
}

static void expect_parse_error(const char *json, const char *fragment) {
    tok_vocab v;
    g2_error err = {{0}};
    cr_assert_eq(tok_vocab_parse(json, strlen(json), "t.json", &v, &err), -1, "accepted: %s", json);
    cr_assert(strstr(err.msg, fragment), "message '%s' lacks '%s'", err.msg, fragment);
    cr_assert_null(strchr(err.msg, '\n'), "message '%s' is not one line", err.msg);
}

Test(convert_tokenizer, tok_json_validation_names_the_problem) {
    expect_parse_error("{\"regular_tokens\":[],\"special_tokens\":[],\"word_split\":\"V2\"}", "word_split \"V2\"");
    expect_parse_error("{\"regular_tokens\":[{\"token\":0,\"bytes\":[97]}],\"special_tokens\":[]}", "word_split");
    expect_parse_error("{\"regular_tokens\":[{\"token\":0,\"bytes\":[256]}],\"special_tokens\":[],\"word_split\":\"V1\"}",
                       "bytes[0] is not a byte");
    expect_parse_error("{\"regular_tokens\":[{\"token\":0,\"bytes\":[97]},{\"token\":0,\"bytes\":[98]}],"
                       "\"special_tokens\":[],\"word_split\":\"V1\"}",
                       "id 0 appears twice");
    expect_parse_error("{\"regular_tokens\":[{\"token\":-1,\"bytes\":[97]}],\"special_tokens\":[],\"word_split\":\"V1\"}",
                       "\"token\" must be an integer");
    expect_parse_error("{\"special_tokens\":[],\"word_split\":\"V1\"}", "missing \"regular_tokens\"");
    expect_parse_error("{\"regular_tokens\":[{\"token\":0,\"bytes\":[]}],\"special_tokens\":[],\"word_split\":\"V1\"}",
                       "non-empty");
    expect_parse_error("{\"regular_tokens\":[{\"token\":3,\"bytes\":[97]}],\"special_tokens\":[],\"word_split\":\"V1\","
                       "\"vocab_size\":2}",
                       "vocab_size");
    expect_parse_error("{\"regular_tokens\":[{\"token\":0,\"bytes\":[97]}],\"special_tokens\":[{\"token\":1,"
                       "\"bytes\":[255]}],\"word_split\":\"V1\"}",
                       "not valid UTF-8");
    expect_parse_error("{\"regular_tokens\":[", "not valid JSON");
}

/* a word_split holding a newline was printed raw, splitting the message */
Test(convert_tokenizer, an_unsupported_word_split_is_shown_on_one_line) {
    expect_parse_error("{\"regular_tokens\":[],\"special_tokens\":[],\"word_split\":\"V\\n2\"}", "word_split \"V\\x0a2\"");
}

Test(convert_tokenizer, other_word_split_is_accepted_with_an_explicit_pat_str) {
    const char *json = "{\"regular_tokens\":[{\"token\":5,\"bytes\":[97]}],\"special_tokens\":[{\"token\":0,"
                       "\"bytes\":[60,124,101,111,115,124,62]}],\"word_split\":\"V7\",\"pat_str\":\"\\\\w+\"}";
    tok_vocab v;
    g2_error err;
    cr_assert_eq(tok_vocab_parse(json, strlen(json), "t.json", &v, &err), 0, "%s", err.msg);
    cr_assert_str_eq(v.pat_str, "\\w+");
    cr_assert_eq(v.n_ids, 6);
    cr_assert_eq(v.tokens[3].kind, TOKEN_UNUSED);
    cr_assert_eq(tok_vocab_special_id(&v, "<|eos|>"), 0);
    tok_vocab_free(&v);
}

Test(convert_tokenizer, synthetic_vocabulary_has_the_documented_layout_and_only_reachable_tokens) {
    tok_vocab v;
    g2_error err;
    cr_assert_eq(tok_vocab_synthesize(&v, 512, &err), 0, "%s", err.msg);
    cr_assert_eq(v.n_ids, 512);
    cr_assert_eq(v.n_regular + v.n_special, 512, "tiny's vocabulary is dense");
    cr_assert_eq(tok_vocab_special_id(&v, "<|pad|>"), 0);
    cr_assert_eq(tok_vocab_special_id(&v, "<|separator|>"), 1);
    cr_assert_eq(tok_vocab_special_id(&v, "<|eos|>"), 2);
    cr_assert_eq(tok_vocab_special_id(&v, "<|control4|>"), 511);
    cr_assert_eq(v.tokens[8 + 'A'].len, 1);
    cr_assert_eq(v.tokens[8 + 'A'].bytes[0], 'A');
    bpe_merges m;
    cr_assert_eq(bpe_merges_build(&v, &m, &err), 0, "%s", err.msg);
    cr_assert_eq(m.unreachable, 0);
    cr_assert_eq(m.count, v.n_regular - 256);
    bpe_merges_free(&m);
    tok_vocab_free(&v);
    cr_assert_eq(tok_vocab_synthesize(&v, 100, &err), -1, "fewer ids than specials + bytes");
}

/* ---- the GGUF export ----------------------------------------------------------------------- */

static bool gstr_eq(gguf_str s, const void *bytes, size_t len) { return s.len == len && !memcmp(s.data, bytes, len); }

/* Index of the token whose GGUF string is s, or -1 (linear: small vocabularies only). */
static int64_t find_token(const gguf_file *f, const gguf_array *tokens, const char *s, size_t len) {
    for (uint64_t i = 0; i < tokens->count; i++)
        if (gstr_eq(gguf_array_str(f, tokens, i), s, len)) return (int64_t)i;
    return -1;
}

static void check_export(const char *synth_args, int64_t vocab_size) {
    char *dir = harness_tmpdir("convert-tok");
    harness_result r = harness_run("%s synth tiny %s -o %s/hf && %s convert %s/hf -o %s/m.gguf --type q8_0",
                                   harness_grok2(), synth_args, dir, harness_grok2(), dir, dir);
    cr_assert_eq(r.status, 0, "%s", r.err);
    harness_result_free(&r);
    char path[512];
    snprintf(path, sizeof path, "%s/hf/tokenizer.tok.json", dir);
    tok_vocab v;
    g2_error err;
    cr_assert_eq(tok_vocab_read(path, &v, &err), 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    gguf_file *f;
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    gguf_array tokens, types, merges;
    cr_assert_eq(gguf_get_array(f, "tokenizer.ggml.tokens", &tokens, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_get_array(f, "tokenizer.ggml.token_type", &types, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_get_array(f, "tokenizer.ggml.merges", &merges, &err), 0, "%s", err.msg);
    cr_assert_eq(tokens.count, (uint64_t)vocab_size, "tokens count == vocab_size == lm_head rows");
    cr_assert_eq(gguf_find_tensor(f, "output.weight")->ne[1], vocab_size);
    uint8_t bytes[1024];
    for (int64_t id = 0; id < vocab_size; id++) {
        gguf_str s = gguf_array_str(f, &tokens, (uint64_t)id);
        int type = (int)gguf_array_num(&types, (uint64_t)id);
        const tok_token *t = id < v.n_ids ? &v.tokens[id] : NULL;
        if (t && t->kind == TOKEN_REGULAR) {
            cr_assert_eq(type, 1, "id %lld", (long long)id);
            cr_assert_leq(s.len, sizeof bytes);
            int64_t n = unicode_to_bytes(s.data, s.len, bytes);
            cr_assert_eq(n, (int64_t)t->len, "id %lld: length", (long long)id);
            cr_assert_eq(memcmp(bytes, t->bytes, t->len), 0, "id %lld: bytes differ", (long long)id);
        } else if (t && t->kind == TOKEN_SPECIAL) {
            cr_assert_eq(type, 3, "id %lld", (long long)id);
            cr_assert(gstr_eq(s, t->bytes, t->len), "special id %lld", (long long)id);
        } else {
            char pad[32];
            snprintf(pad, sizeof pad, "[PAD%lld]", (long long)id);
            cr_assert_eq(type, 5, "unused id %lld", (long long)id);
            cr_assert(gstr_eq(s, pad, strlen(pad)), "unused id %lld", (long long)id);
        }
    }
    cr_assert_eq(merges.count, (uint64_t)(v.n_regular - 256));
    for (uint64_t i = 0; i < merges.count; i++) {
        gguf_str m = gguf_array_str(f, &merges, i);
        const char *space = memchr(m.data, ' ', m.len);
        cr_assert(space, "merge %llu has no space", (unsigned long long)i);
        size_t left = (size_t)(space - m.data), right = m.len - left - 1;
        char joined[512];
        cr_assert_lt(m.len, sizeof joined);
        memcpy(joined, m.data, left);
        memcpy(joined + left, space + 1, right);
        cr_assert_geq(find_token(f, &tokens, m.data, left), 0, "merge %llu: left part is not a token",
                      (unsigned long long)i);
        cr_assert_geq(find_token(f, &tokens, space + 1, right), 0, "merge %llu: right part", (unsigned long long)i);
        cr_assert_geq(find_token(f, &tokens, joined, left + right), 0, "merge %llu: result", (unsigned long long)i);
    }
    uint32_t eos, pad, sep;
    bool add_bos = true;
    cr_assert_eq(gguf_get_u32(f, "tokenizer.ggml.eos_token_id", &eos, &err), 0);
    cr_assert_eq(gguf_get_u32(f, "tokenizer.ggml.padding_token_id", &pad, &err), 0);
    cr_assert_eq(gguf_get_u32(f, "tokenizer.ggml.seperator_token_id", &sep, &err), 0);
    cr_assert_eq(gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &add_bos, &err), 0);
    cr_assert_eq((int64_t)eos, tok_vocab_special_id(&v, "<|eos|>"));
    cr_assert_eq((int64_t)pad, tok_vocab_special_id(&v, "<|pad|>"));
    cr_assert_eq((int64_t)sep, tok_vocab_special_id(&v, "<|separator|>"));
    cr_assert(!add_bos);
    gguf_str s;
    cr_assert_eq(gguf_get_str(f, "tokenizer.ggml.model", &s, &err), 0);
    cr_assert(gstr_eq(s, "gpt2", 4));
    cr_assert_eq(gguf_get_str(f, "tokenizer.ggml.pre", &s, &err), 0);
    cr_assert(gstr_eq(s, "grok-2", 6));
    cr_assert_eq(gguf_get_str(f, "tokenizer.chat_template", &s, &err), 0);
    cr_assert(memmem(s.data, s.len, "Assistant:", 10));
    gguf_close(f);
    tok_vocab_free(&v);
    r = harness_run("rm -rf '%s'", dir);
    harness_result_free(&r);
    free(dir);
}

Test(convert_tokenizer, gguf_vocabulary_decodes_back_to_the_tok_json_bytes) { check_export("", 512); }

Test(convert_tokenizer, gguf_vocabulary_is_padded_to_vocab_size_with_unused_tokens) {
    check_export("--vocab 1024", 1024);
}

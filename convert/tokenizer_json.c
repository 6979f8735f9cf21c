/* tokenizer.tok.json, the release's tokenizer (grok2-model.md section 4): regular_tokens and
 * special_tokens as {"token": id, "bytes": [...]}, the id being the BPE rank; word_split "V1"
 * (anything else only with an explicit pat_str). Ids are validated here once, so that the
 * rest of the program can index by id. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"

static bool valid_utf8(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t extra = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : 9;
        if (extra == 9 || (extra == 1 && c < 0xC2) || (extra > 0 && i + extra >= n)) return false;
        for (size_t k = 1; k <= extra; k++)
            if ((s[i + k] & 0xC0) != 0x80) return false;
        i += extra + 1;
    }
    return true;
}

int tok_vocab_set(tok_vocab *v, int64_t id, const uint8_t *bytes, size_t len, int kind, g2_error *err) {
    if (id < 0 || id >= TOK_MAX_ID) return g2_fail(err, "token id %lld is out of range", (long long)id);
    if (id >= v->n_ids) {
        int64_t cap = v->n_ids ? v->n_ids : 256;
        while (cap <= id) cap *= 2;
        tok_token *grown = realloc(v->tokens, (size_t)cap * sizeof *grown);
        if (!grown) return g2_fail(err, "out of memory for token %lld", (long long)id);
        memset(grown + v->n_ids, 0, (size_t)(cap - v->n_ids) * sizeof *grown);
        v->tokens = grown;
        v->n_ids = cap; /* trimmed to the largest id + 1 by the callers when done */
    }
    tok_token *t = &v->tokens[id];
    if (t->kind != TOKEN_UNUSED) return g2_fail(err, "token id %lld appears twice", (long long)id);
    if (!(t->bytes = malloc(len ? len : 1))) return g2_fail(err, "out of memory for token %lld", (long long)id);
    memcpy(t->bytes, bytes, len);
    t->len = (uint32_t)len;
    t->kind = (uint8_t)kind;
    if (kind == TOKEN_REGULAR) v->n_regular++;
    else v->n_special++;
    return 0;
}

/* n_ids = largest used id + 1 */
static void trim_ids(tok_vocab *v) {
    while (v->n_ids > 0 && v->tokens[v->n_ids - 1].kind == TOKEN_UNUSED) v->n_ids--;
}

static int read_token_list(tok_vocab *v, const cJSON *list, const char *name, const char *key, int kind,
                           g2_error *err) {
    if (!cJSON_IsArray(list)) return g2_fail(err, "%s: missing \"%s\" array", name, key);
    uint8_t *bytes = malloc(1 << 16);
    if (!bytes) return g2_fail(err, "%s: out of memory", name);
    int index = 0, rc = 0;
    for (const cJSON *item = list->child; item && rc == 0; item = item->next, index++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "token");
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(item, "bytes");
        if (!cJSON_IsNumber(id) || id->valuedouble != floor(id->valuedouble) || id->valuedouble < 0 ||
            id->valuedouble >= TOK_MAX_ID) {
            rc = g2_fail(err, "%s: %s[%d]: \"token\" must be an integer id in [0, %d)", name, key, index, TOK_MAX_ID);
            break;
        }
        int64_t tid = (int64_t)id->valuedouble;
        int n = cJSON_IsArray(b) ? cJSON_GetArraySize(b) : -1;
        if (n < 1 || n > (1 << 16)) {
            rc = g2_fail(err, "%s: %s[%d] (id %lld): \"bytes\" must be a non-empty array of at most 65536 bytes", name,
                         key, index, (long long)tid);
            break;
        }
        int k = 0;
        for (const cJSON *x = b->child; x; x = x->next, k++) {
            if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || x->valuedouble < 0 ||
                x->valuedouble > 255) {
                rc = g2_fail(err, "%s: %s[%d] (id %lld): bytes[%d] is not a byte", name, key, index, (long long)tid, k);
                break;
            }
            bytes[k] = (uint8_t)x->valuedouble;
        }
        if (rc) break;
        if (kind == TOKEN_SPECIAL && !valid_utf8(bytes, (size_t)n)) {
            rc = g2_fail(err, "%s: special token %lld: its name is not valid UTF-8", name, (long long)tid);
            break;
        }
        g2_error inner;
        if (tok_vocab_set(v, tid, bytes, (size_t)n, kind, &inner)) rc = g2_fail(err, "%s: %s", name, inner.msg);
    }
    free(bytes);
    return rc;
}

int tok_vocab_parse(const char *text, size_t len, const char *name, tok_vocab *v, g2_error *err) {
    memset(v, 0, sizeof *v);
    v->declared_vocab_size = -1;
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) return g2_fail(err, "%s: not valid JSON", name);
    int rc = 0;
    char shown[48]; /* the file's word_split, one-line safe */
    const cJSON *split = cJSON_GetObjectItemCaseSensitive(root, "word_split");
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(root, "pat_str");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(root, "vocab_size");
    if (!cJSON_IsObject(root)) rc = g2_fail(err, "%s: not a JSON object", name);
    else if (pat && !cJSON_IsString(pat)) rc = g2_fail(err, "%s: \"pat_str\" must be a string", name);
    else if (!cJSON_IsString(split)) rc = g2_fail(err, "%s: missing \"word_split\" string", name);
    else if (strcmp(split->valuestring, "V1") && !pat)
        rc = g2_fail(err, "%s: word_split \"%s\" is not supported (only \"V1\", unless pat_str is given)", name,
                     shown_text(split->valuestring, shown, sizeof shown));
    else if (size && (!cJSON_IsNumber(size) || size->valuedouble != floor(size->valuedouble) ||
                      size->valuedouble < 1 || size->valuedouble > TOK_MAX_ID))
        rc = g2_fail(err, "%s: \"vocab_size\" must be a positive integer", name);
    if (rc == 0)
        rc = read_token_list(v, cJSON_GetObjectItemCaseSensitive(root, "regular_tokens"), name, "regular_tokens",
                             TOKEN_REGULAR, err);
    if (rc == 0)
        rc = read_token_list(v, cJSON_GetObjectItemCaseSensitive(root, "special_tokens"), name, "special_tokens",
                             TOKEN_SPECIAL, err);
    if (rc == 0 && pat && !(v->pat_str = strdup(pat->valuestring))) rc = g2_fail(err, "%s: out of memory", name);
    trim_ids(v);
    if (rc == 0 && v->n_regular == 0) rc = g2_fail(err, "%s: no regular tokens", name);
    if (rc == 0 && size) {
        v->declared_vocab_size = (int64_t)size->valuedouble;
        if (v->declared_vocab_size < v->n_ids)
            rc = g2_fail(err, "%s: \"vocab_size\" %lld is smaller than the largest id + 1 (%lld)", name,
                         (long long)v->declared_vocab_size, (long long)v->n_ids);
    }
    cJSON_Delete(root);
    if (rc) tok_vocab_free(v);
    return rc;
}

int tok_vocab_read(const char *path, tok_vocab *v, g2_error *err) {
    size_t len;
    char *text = read_text_file(path, &len, err);
    if (!text) return -1;
    int rc = tok_vocab_parse(text, len, path, v, err);
    free(text);
    return rc;
}

void tok_vocab_free(tok_vocab *v) {
    for (int64_t i = 0; v->tokens && i < v->n_ids; i++) free(v->tokens[i].bytes);
    /* ids past n_ids (capacity) are unused and own nothing */
    free(v->tokens);
    free(v->pat_str);
    memset(v, 0, sizeof *v);
    v->declared_vocab_size = -1;
}

int64_t tok_vocab_special_id(const tok_vocab *v, const char *name) {
    size_t n = strlen(name);
    for (int64_t id = 0; id < v->n_ids; id++) {
        const tok_token *t = &v->tokens[id];
        if (t->kind == TOKEN_SPECIAL && t->len == n && !memcmp(t->bytes, name, n)) return id;
    }
    return -1;
}

static cJSON *token_list(const tok_vocab *v, int kind) {
    cJSON *list = cJSON_CreateArray();
    for (int64_t id = 0; list && id < v->n_ids; id++) {
        const tok_token *t = &v->tokens[id];
        if (t->kind != kind) continue;
        cJSON *item = cJSON_CreateObject(), *bytes = cJSON_CreateArray();
        cJSON_AddItemToArray(list, item);
        cJSON_AddNumberToObject(item, "token", (double)id);
        cJSON_AddItemToObject(item, "bytes", bytes);
        for (uint32_t k = 0; k < t->len; k++) cJSON_AddItemToArray(bytes, cJSON_CreateNumber(t->bytes[k]));
    }
    return list;
}

int tok_vocab_write(const char *path, const tok_vocab *v, g2_error *err) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "regular_tokens", token_list(v, TOKEN_REGULAR));
    cJSON_AddItemToObject(root, "special_tokens", token_list(v, TOKEN_SPECIAL));
    cJSON_AddStringToObject(root, "word_split", "V1");
    if (v->n_regular + v->n_special == v->n_ids) cJSON_AddNumberToObject(root, "vocab_size", (double)v->n_ids);
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) return g2_fail(err, "%s: out of memory", path);
    FILE *f = fopen(path, "w");
    int ok = f && fputs(text, f) >= 0;
    if (f && fclose(f) != 0) ok = 0;
    free(text);
    if (!ok) return g2_fail(err, "%s: cannot write", path);
    return 0;
}

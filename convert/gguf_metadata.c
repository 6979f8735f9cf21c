/* The GGUF's metadata: general.*, grok.* (llama.cpp's keys, plus what the reference semantics
 * need: rope.scaling.type "none", the attention temperature length) and the tokenizer as
 * llama.cpp's gpt2 model (grok2-model.md section 5). */
#include <stdlib.h>
#include <string.h>

#include "convert.h"

/* Section 4's chat format: System/Human/Assistant turns, each closed by <|separator|> and a
 * blank line; the generation prompt is "Assistant:" with no trailing space. */
const char grok_chat_template[] =
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ 'System: ' + message['content'].strip() + '<|separator|>\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ 'Human: ' + message['content'].strip() + '<|separator|>\n\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + '<|separator|>\n\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

int meta_set_model(gguf_writer *w, const grok_config *c, const char *name, uint32_t file_type, g2_error *err) {
    const struct {
        const char *key;
        int64_t value;
    } u32s[] = {
        {"general.file_type", file_type},
        {"general.quantization_version", 2},
        {"grok.block_count", c->n_layers},
        {"grok.context_length", c->context_length},
        {"grok.embedding_length", c->hidden},
        {"grok.feed_forward_length", c->ff},
        {"grok.expert_feed_forward_length", c->expert_ff},
        {"grok.expert_count", c->n_expert},
        {"grok.expert_used_count", c->n_expert_used},
        {"grok.attention.head_count", c->n_head},
        {"grok.attention.head_count_kv", c->n_head_kv},
        {"grok.attention.key_length", c->head_dim},
        {"grok.attention.value_length", c->head_dim},
        {"grok.attention.temperature_length", c->attn_temperature_len},
    };
    const struct {
        const char *key;
        double value;
    } f32s[] = {
        {"grok.attention.layer_norm_rms_epsilon", c->rms_norm_eps},
        {"grok.rope.freq_base", c->rope_theta},
        {"grok.embedding_scale", c->embedding_scale},
        {"grok.logit_scale", c->output_scale},
        {"grok.attention.output_scale", c->attn_output_scale},
        {"grok.attn_logit_softcapping", c->attn_softcap},
        {"grok.router_logit_softcapping", c->router_softcap},
        {"grok.final_logit_softcapping", c->final_softcap},
    };
    if (gguf_writer_set_str(w, "general.architecture", "grok", err) ||
        gguf_writer_set_str(w, "general.name", name, err) ||
        gguf_writer_set_str(w, "general.license", "Grok 2 Community License", err))
        return -1;
    for (size_t i = 0; i < sizeof u32s / sizeof u32s[0]; i++) {
        if (u32s[i].value < 0 || u32s[i].value > UINT32_MAX)
            return g2_fail(err, "%s = %lld does not fit a u32", u32s[i].key, (long long)u32s[i].value);
        if (gguf_writer_set_u32(w, u32s[i].key, (uint32_t)u32s[i].value, err)) return -1;
    }
    for (size_t i = 0; i < sizeof f32s / sizeof f32s[0]; i++)
        if (gguf_writer_set_f32(w, f32s[i].key, (float)f32s[i].value, err)) return -1;
    /* plain RoPE: llama.cpp's converter writes "yarn" here for the release, which is wrong */
    return gguf_writer_set_str(w, "grok.rope.scaling.type", "none", err);
}

/* Token strings in llama.cpp's gpt2 convention: regular tokens through byte-to-unicode, specials
 * as their names, unused ids as "[PAD<id>]" (type 5, unused, like llama.cpp's converter). */
static char *token_text(const tok_vocab *v, int64_t id, int32_t *type) {
    const tok_token *t = id < v->n_ids ? &v->tokens[id] : NULL;
    char *s;
    if (!t || t->kind == TOKEN_UNUSED) {
        *type = 5;
        if ((s = malloc(32))) snprintf(s, 32, "[PAD%lld]", (long long)id);
    } else if (t->kind == TOKEN_SPECIAL) {
        *type = 3;
        if ((s = malloc(t->len + 1))) {
            memcpy(s, t->bytes, t->len);
            s[t->len] = 0;
        }
    } else {
        *type = 1;
        if ((s = malloc(2 * (size_t)t->len + 1))) {
            char *p = s;
            for (uint32_t i = 0; i < t->len; i++) p += byte_to_unicode(t->bytes[i], p);
            *p = 0;
        }
    }
    return s;
}

static int set_tokens(gguf_writer *w, const tok_vocab *v, int64_t vocab_size, g2_error *err) {
    char **texts = calloc((size_t)vocab_size, sizeof *texts);
    int32_t *types = malloc((size_t)vocab_size * sizeof *types);
    int rc = texts && types ? 0 : g2_fail(err, "tokenizer: out of memory");
    for (int64_t id = 0; id < vocab_size && rc == 0; id++)
        if (!(texts[id] = token_text(v, id, &types[id]))) rc = g2_fail(err, "tokenizer: out of memory");
    if (rc == 0)
        rc = gguf_writer_set_str_array(w, "tokenizer.ggml.tokens", (const char *const *)texts, NULL,
                                       (uint64_t)vocab_size, err);
    if (rc == 0)
        rc = gguf_writer_set_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_I32, types, (uint64_t)vocab_size, err);
    for (int64_t id = 0; texts && id < vocab_size; id++) free(texts[id]);
    free(texts);
    free(types);
    return rc;
}

static int set_special_id(gguf_writer *w, const tok_vocab *v, const char *key, const char *name, bool required,
                          g2_error *err) {
    int64_t id = tok_vocab_special_id(v, name);
    if (id < 0) return required ? g2_fail(err, "tokenizer: no special token %s", name) : 0;
    return gguf_writer_set_u32(w, key, (uint32_t)id, err);
}

int meta_set_tokenizer(gguf_writer *w, const tok_vocab *v, int64_t vocab_size, g2_error *err) {
    if (v->n_ids > vocab_size)
        return g2_fail(err, "tokenizer: token id %lld is beyond the model's vocab_size %lld", (long long)(v->n_ids - 1),
                       (long long)vocab_size);
    bpe_merges merges;
    if (bpe_merges_build(v, &merges, err)) return -1;
    if (merges.unreachable)
        fprintf(stderr, "warning: %lld tokens are not reachable by one merge of lower-ranked tokens; "
                        "they are in the vocabulary but not in tokenizer.ggml.merges\n",
                (long long)merges.unreachable);
    int rc = gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", err) ||
             gguf_writer_set_str(w, "tokenizer.ggml.pre", "grok-2", err) || set_tokens(w, v, vocab_size, err) ||
             gguf_writer_set_str_array(w, "tokenizer.ggml.merges", (const char *const *)merges.text, NULL,
                                       (uint64_t)merges.count, err) ||
             set_special_id(w, v, "tokenizer.ggml.eos_token_id", "<|eos|>", true, err) ||
             set_special_id(w, v, "tokenizer.ggml.padding_token_id", "<|pad|>", false, err) ||
             set_special_id(w, v, "tokenizer.ggml.seperator_token_id", "<|separator|>", false, err) ||
             /* no BOS is ever added; the id is there for tools that insist on one */
             set_special_id(w, v, "tokenizer.ggml.bos_token_id", "<|separator|>", false, err) ||
             gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false, err) ||
             gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false, err) ||
             gguf_writer_set_str(w, "tokenizer.chat_template", grok_chat_template, err)
             ? -1 : 0;
    if (rc == 0 && v->pat_str) rc = gguf_writer_set_str(w, "tokenizer.pat_str", v->pat_str, err);
    bpe_merges_free(&merges);
    return rc;
}

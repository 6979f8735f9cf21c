/* config.json: read with every needed key checked for presence, JSON type and range (errors
 * name the key), and written with every key of the release for synthetic checkpoints. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"

static int need_int(const cJSON *root, const char *name, const char *key, int64_t min, int64_t max, int64_t *out,
                    g2_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v) return g2_fail(err, "%s: missing key \"%s\"", name, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return g2_fail(err, "%s: \"%s\" must be an integer", name, key);
    if (!(v->valuedouble >= (double)min && v->valuedouble <= (double)max))
        return g2_fail(err, "%s: \"%s\" = %.17g is out of range [%lld, %lld]", name, key, v->valuedouble,
                       (long long)min, (long long)max);
    *out = (int64_t)v->valuedouble;
    return 0;
}

static int need_number(const cJSON *root, const char *name, const char *key, double *out, g2_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v) return g2_fail(err, "%s: missing key \"%s\"", name, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return g2_fail(err, "%s: \"%s\" must be a number", name, key);
    *out = v->valuedouble;
    return 0;
}

static int need_positive(const cJSON *root, const char *name, const char *key, double *out, g2_error *err) {
    if (need_number(root, name, key, out, err)) return -1;
    if (!(*out > 0)) return g2_fail(err, "%s: \"%s\" must be positive", name, key);
    return 0;
}

/* Keys the release has whose other values would change the computation: checked when present. */
static int check_semantics(const cJSON *root, const char *name, g2_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    if (v) {
        bool ours = false;
        if (!cJSON_IsArray(v)) return g2_fail(err, "%s: \"architectures\" must be an array of strings", name);
        for (const cJSON *a = v->child; a; a = a->next) {
            if (!cJSON_IsString(a)) return g2_fail(err, "%s: \"architectures\" must be an array of strings", name);
            ours |= !strcmp(a->valuestring, "Grok1ForCausalLM") || !strcmp(a->valuestring, "GrokForCausalLM");
        }
        if (!ours) return g2_fail(err, "%s: \"architectures\" does not name Grok1ForCausalLM: not a Grok model", name);
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "rope_type");
    if (v && (!cJSON_IsString(v) || strcmp(v->valuestring, "original")))
        return g2_fail(err, "%s: \"rope_type\" must be \"original\" (plain RoPE, grok2-model.md 3.3)", name);
    v = cJSON_GetObjectItemCaseSensitive(root, "residual_moe");
    if (v && !cJSON_IsTrue(v))
        return g2_fail(err, "%s: \"residual_moe\" must be true (the dense MLP runs beside the MoE)", name);
    v = cJSON_GetObjectItemCaseSensitive(root, "sliding_window_size");
    if (v && !cJSON_IsNull(v) && !(cJSON_IsNumber(v) && v->valuedouble == -1))
        return g2_fail(err, "%s: \"sliding_window_size\" must be -1 (no sliding window)", name);
    v = cJSON_GetObjectItemCaseSensitive(root, "global_attn_every_n");
    if (v && !(cJSON_IsNumber(v) && v->valuedouble == 1))
        return g2_fail(err, "%s: \"global_attn_every_n\" must be 1", name);
    return 0;
}

int grok_config_check(const grok_config *c, g2_error *err) {
    if (c->n_head % c->n_head_kv)
        return g2_fail(err, "num_attention_heads %lld is not a multiple of num_key_value_heads %lld",
                       (long long)c->n_head, (long long)c->n_head_kv);
    if (c->n_expert_used > c->n_expert)
        return g2_fail(err, "num_experts_per_tok %lld exceeds num_local_experts %lld", (long long)c->n_expert_used,
                       (long long)c->n_expert);
    if (c->n_head * c->head_dim > (1 << 20))
        return g2_fail(err, "num_attention_heads x head_dim = %lld is too large", (long long)(c->n_head * c->head_dim));
    /* every tensor must stay addressable with 64-bit element counts; 2^40 is far above the release */
    double biggest = (double)c->n_expert * (double)c->expert_ff * (double)c->hidden;
    if (biggest > 1099511627776.0 || (double)c->vocab * (double)c->hidden > 1099511627776.0)
        return g2_fail(err, "tensor sizes exceed 2^40 elements");
    return 0;
}

int grok_config_parse(const char *text, size_t len, const char *name, grok_config *c, g2_error *err) {
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) return g2_fail(err, "%s: not valid JSON", name);
    int rc = 0;
    if (!cJSON_IsObject(root)) rc = g2_fail(err, "%s: not a JSON object", name);
    memset(c, 0, sizeof *c);
    const int64_t big = 1 << 24, huge = (int64_t)1 << 40;
    if (rc == 0)
        rc = need_int(root, name, "hidden_size", 1, big, &c->hidden, err) ||
             need_int(root, name, "num_hidden_layers", 1, 4096, &c->n_layers, err) ||
             need_int(root, name, "num_attention_heads", 1, 65536, &c->n_head, err) ||
             need_int(root, name, "num_key_value_heads", 1, 65536, &c->n_head_kv, err) ||
             need_int(root, name, "head_dim", 1, 65536, &c->head_dim, err) ||
             need_int(root, name, "vocab_size", 1, TOK_MAX_ID, &c->vocab, err) ||
             need_int(root, name, "num_local_experts", 1, 4096, &c->n_expert, err) ||
             need_int(root, name, "num_experts_per_tok", 1, 4096, &c->n_expert_used, err) ||
             need_int(root, name, "moe_intermediate_size", 1, big, &c->expert_ff, err) ||
             need_int(root, name, "intermediate_size", 1, big, &c->ff, err) ||
             need_int(root, name, "max_position_embeddings", 1, huge, &c->context_length, err) ||
             need_int(root, name, "attn_temperature_len", 1, huge, &c->attn_temperature_len, err) ||
             need_positive(root, name, "rope_theta", &c->rope_theta, err) ||
             need_positive(root, name, "rms_norm_eps", &c->rms_norm_eps, err) ||
             need_positive(root, name, "attn_logit_softcapping", &c->attn_softcap, err) ||
             need_positive(root, name, "router_logit_softcapping", &c->router_softcap, err) ||
             need_positive(root, name, "final_logit_softcapping", &c->final_softcap, err) ||
             need_positive(root, name, "embedding_multiplier_scale", &c->embedding_scale, err) ||
             need_positive(root, name, "output_multiplier_scale", &c->output_scale, err) ||
             check_semantics(root, name, err)
             ? -1 : 0;
    if (rc == 0) {
        c->attn_output_scale = 1.0 / sqrt((double)c->head_dim);
        if (cJSON_GetObjectItemCaseSensitive(root, "attn_output_multiplier"))
            rc = need_positive(root, name, "attn_output_multiplier", &c->attn_output_scale, err);
    }
    if (rc == 0 && grok_config_check(c, err)) {
        g2_error inner = *err;
        rc = g2_fail(err, "%s: %s", name, inner.msg);
    }
    cJSON_Delete(root);
    return rc;
}

int grok_config_read(const char *path, grok_config *c, g2_error *err) {
    size_t len;
    char *text = read_text_file(path, &len, err);
    if (!text) return -1;
    int rc = grok_config_parse(text, len, path, c, err);
    free(text);
    return rc;
}

grok_config grok_config_release(void) {
    return (grok_config){
        .hidden = 8192, .n_layers = 64, .n_head = 64, .n_head_kv = 8, .head_dim = 128, .vocab = 131072,
        .n_expert = 8, .n_expert_used = 2, .expert_ff = 16384, .ff = 32768, .context_length = 131072,
        .attn_temperature_len = 1024, .rope_theta = 208533496, .rms_norm_eps = 1e-5, .attn_softcap = 30,
        .router_softcap = 30, .final_softcap = 50, .embedding_scale = 90.50966799187809, .output_scale = 0.5,
        .attn_output_scale = 1.0 / sqrt(128.0)};
}

int grok_config_write(const char *path, const grok_config *c, g2_error *err) {
    cJSON *root = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(root, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("Grok1ForCausalLM"));
    cJSON_AddStringToObject(root, "model_type", "git");
    const struct {
        const char *key;
        double value;
    } numbers[] = {
        {"hidden_size", (double)c->hidden},
        {"num_hidden_layers", (double)c->n_layers},
        {"num_attention_heads", (double)c->n_head},
        {"num_key_value_heads", (double)c->n_head_kv},
        {"head_dim", (double)c->head_dim},
        {"vocab_size", (double)c->vocab},
        {"num_local_experts", (double)c->n_expert},
        {"num_experts_per_tok", (double)c->n_expert_used},
        {"moe_intermediate_size", (double)c->expert_ff},
        {"intermediate_size", (double)c->ff},
    };
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
        cJSON_AddNumberToObject(root, numbers[i].key, numbers[i].value);
    cJSON_AddBoolToObject(root, "residual_moe", 1);
    cJSON_AddNumberToObject(root, "rope_theta", c->rope_theta);
    cJSON_AddStringToObject(root, "rope_type", "original");
    cJSON_AddNumberToObject(root, "original_max_position_embeddings", 8192);
    cJSON_AddNumberToObject(root, "scaling_factor", 16.0);
    cJSON_AddNumberToObject(root, "beta_fast", 8);
    cJSON_AddNumberToObject(root, "beta_slow", 1);
    cJSON_AddNumberToObject(root, "extrapolation_factor", 1.0);
    cJSON_AddNumberToObject(root, "attn_factor", 1.0);
    cJSON_AddNumberToObject(root, "max_position_embeddings", (double)c->context_length);
    cJSON_AddNumberToObject(root, "rms_norm_eps", c->rms_norm_eps);
    cJSON_AddNumberToObject(root, "attn_logit_softcapping", c->attn_softcap);
    cJSON_AddNumberToObject(root, "router_logit_softcapping", c->router_softcap);
    cJSON_AddNumberToObject(root, "final_logit_softcapping", c->final_softcap);
    cJSON_AddNumberToObject(root, "embedding_multiplier_scale", c->embedding_scale);
    cJSON_AddNumberToObject(root, "output_multiplier_scale", c->output_scale);
    cJSON_AddNumberToObject(root, "attn_temperature_len", (double)c->attn_temperature_len);
    cJSON_AddNumberToObject(root, "sliding_window_size", -1);
    cJSON_AddNumberToObject(root, "global_attn_every_n", 1);
    cJSON_AddStringToObject(root, "torch_dtype", "bfloat16");
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return g2_fail(err, "%s: out of memory", path);
    FILE *f = fopen(path, "w");
    int ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0) ok = 0;
    free(text);
    if (!ok) return g2_fail(err, "%s: cannot write", path);
    return 0;
}

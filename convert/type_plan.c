/* Which type each tensor gets: the --type mix by tensor role, --tensor-type overrides (first
 * match wins), and the fallback when a block size does not divide the row. Norms and the router
 * stay F32 in every mix: they are tiny and the soft-capped router is sensitive. */
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "convert.h"

struct type_mix {
    const char *name;
    uint32_t file_type; /* llama.cpp's ftype */
    uint32_t base;      /* every matrix not named below */
    uint32_t attn_qo, attn_kv, output, embed;
    uint32_t ffn_down_more_bits; /* dense ffn_down in llama.cpp's use_more_bits layers */
    const char *summary;
};

#define PURE(n, ft, t, s) {n, ft, t, t, t, t, t, t, s}
static const type_mix mixes[] = {
    PURE("f32", 0, G2_TYPE_F32, "every tensor F32"),
    PURE("f16", 1, G2_TYPE_F16, "matrices F16"),
    PURE("bf16", 32, G2_TYPE_BF16, "matrices BF16 (the release's own precision)"),
    PURE("q8_0", 7, G2_TYPE_Q8_0, "matrices Q8_0"),
    PURE("q4_0", 2, G2_TYPE_Q4_0, "matrices Q4_0"),
    PURE("q4_1", 3, G2_TYPE_Q4_1, "matrices Q4_1"),
    PURE("iq4_nl", 25, G2_TYPE_IQ4_NL, "matrices IQ4_NL"),
    PURE("q4_k", 14, G2_TYPE_Q4_K, "matrices Q4_K"),
    PURE("q5_k", 16, G2_TYPE_Q5_K, "matrices Q5_K"),
    PURE("q6_k", 18, G2_TYPE_Q6_K, "matrices Q6_K"),
    {"q4_k_s", 14, G2_TYPE_Q4_K, G2_TYPE_Q4_K, G2_TYPE_Q8_0, G2_TYPE_Q6_K, G2_TYPE_Q4_K, G2_TYPE_Q4_K,
     "Q4_K; attn_k/attn_v Q8_0, output Q6_K"},
    {"q4_k_m", 15, G2_TYPE_Q4_K, G2_TYPE_Q6_K, G2_TYPE_Q8_0, G2_TYPE_Q6_K, G2_TYPE_Q4_K, G2_TYPE_Q6_K,
     "experts, dense MLP, token_embd Q4_K; attn_q/attn_output, output Q6_K;\n"
     "           attn_k/attn_v Q8_0; dense ffn_down Q6_K in the first and last eighth of\n"
     "           the layers and every third layer between (llama.cpp's rule)"},
};

const type_mix *plan_mix_by_name(const char *name) {
    for (size_t i = 0; i < sizeof mixes / sizeof mixes[0]; i++)
        if (!strcasecmp(mixes[i].name, name)) return &mixes[i];
    return NULL;
}
const char *plan_mix_name(const type_mix *m) { return m->name; }
uint32_t plan_mix_file_type(const type_mix *m) { return m->file_type; }

void plan_print_mixes(FILE *out) {
    for (size_t i = 0; i < sizeof mixes / sizeof mixes[0]; i++)
        fprintf(out, "  %-8s %s\n", mixes[i].name, mixes[i].summary);
}

int plan_override_add(type_overrides *o, const char *arg, g2_error *err) {
    const char *eq = strrchr(arg, '=');
    if (!eq || eq == arg || !eq[1]) return g2_fail(err, "--tensor-type '%s': expected REGEX=TYPE", arg);
    const g2_type_traits *t = g2_type_by_name(eq + 1);
    if (!t || !t->from_float)
        return g2_fail(err, "--tensor-type '%s': '%s' is not a type this build can write", arg, eq + 1);
    type_override item = {calloc(1, sizeof(regex_t)), strndup(arg, (size_t)(eq - arg)), t->id};
    type_override *grown = realloc(o->items, (size_t)(o->count + 1) * sizeof *grown);
    if (!item.regex || !item.pattern || !grown) {
        free(item.regex);
        free(item.pattern);
        if (grown) o->items = grown;
        return g2_fail(err, "--tensor-type: out of memory");
    }
    o->items = grown;
    int rc = regcomp(item.regex, item.pattern, REG_EXTENDED | REG_NOSUB);
    if (rc) {
        char why[128];
        regerror(rc, item.regex, why, sizeof why);
        free(item.regex);
        free(item.pattern);
        return g2_fail(err, "--tensor-type '%s': bad regex: %s", arg, why);
    }
    o->items[o->count++] = item;
    return 0;
}

void plan_overrides_free(type_overrides *o) {
    for (int i = 0; i < o->count; i++) {
        regfree(o->items[i].regex);
        free(o->items[i].regex);
        free(o->items[i].pattern);
    }
    free(o->items);
    o->items = NULL;
    o->count = 0;
}

/* llama.cpp's use_more_bits(i, n): the first and last eighth of the layers and every third
 * layer between them get more bits on ffn_down. */
static bool more_bits_layer(int layer, int n_layers) {
    return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

static uint32_t mix_type(const type_mix *m, grok_role role, int layer, int n_layers) {
    if (m->base == G2_TYPE_F32) return G2_TYPE_F32;
    switch (role) {
    case ROLE_ATTN_NORM: case ROLE_ATTN_OUTPUT_NORM: case ROLE_FFN_NORM: case ROLE_POST_FFW_NORM:
    case ROLE_OUTPUT_NORM: case ROLE_FFN_GATE_INP: return G2_TYPE_F32;
    case ROLE_ATTN_Q: case ROLE_ATTN_OUTPUT: return m->attn_qo;
    case ROLE_ATTN_K: case ROLE_ATTN_V: return m->attn_kv;
    case ROLE_OUTPUT: return m->output;
    case ROLE_TOKEN_EMBD: return m->embed;
    case ROLE_FFN_DOWN: return more_bits_layer(layer, n_layers) ? m->ffn_down_more_bits : m->base;
    default: return m->base;
    }
}

/* A type whose block divides ne0: K types drop to a 32-block type, 32-block types to 16 bits. */
static uint32_t fallback(uint32_t type, int64_t ne0, uint32_t src_type) {
    while (g2_row_size(type, ne0) == 0) {
        const g2_type_traits *t = g2_type_get(type);
        if (t && t->block_size == 256) type = type == G2_TYPE_Q4_K ? G2_TYPE_Q4_0 : G2_TYPE_Q8_0;
        else return src_type == G2_TYPE_BF16 ? G2_TYPE_BF16 : G2_TYPE_F16;
    }
    return type;
}

plan_choice plan_tensor_type(const type_mix *mix, const type_overrides *o, const char *name, grok_role role,
                             int layer, int n_layers, uint32_t n_dims, int64_t ne0, uint32_t src_type) {
    /* a tensor that is not the model's (quantize keeps it): vectors F32, matrices the base type */
    uint32_t wanted = role != ROLE_UNKNOWN ? mix_type(mix, role, layer, n_layers)
                      : n_dims < 2         ? G2_TYPE_F32
                                           : mix->base;
    for (int i = 0; o && i < o->count; i++)
        if (regexec(o->items[i].regex, name, 0, NULL, 0) == 0) {
            wanted = o->items[i].type;
            break;
        }
    return (plan_choice){fallback(wanted, ne0, src_type), wanted};
}

void plan_tensors(conv_tensor *t, int64_t n, const type_mix *mix, const type_overrides *o, int n_layers) {
    for (int64_t i = 0; i < n; i++)
        t[i].type = plan_tensor_type(mix, o, t[i].name, t[i].role, t[i].layer, n_layers, t[i].n_dims, t[i].ne[0],
                                     t[i].src_type);
}

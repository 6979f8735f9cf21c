/* The model's tensors: GGUF names (llama.cpp's "grok" arch), the release's Hugging Face names,
 * shapes from the config, and how the release splits them over TP ranks. The one table that
 * knows the name mapping (grok2-model.md sections 2 and 5). */
#include <stdlib.h>
#include <string.h>

#include "convert.h"

typedef struct {
    const char *gguf; /* suffix after "blk.N." for per-layer tensors */
    const char *hf;   /* suffix after "model.layers.N." ; "%d" stands for the expert */
    bool per_layer;
    grok_join join;
} role_names;

static const role_names roles[ROLE_COUNT] = {
    [ROLE_TOKEN_EMBD] = {"token_embd.weight", "model.embed_tokens.weight", false, JOIN_NONE},
    [ROLE_ATTN_NORM] = {"attn_norm.weight", "pre_attn_norm.weight", true, JOIN_NONE},
    [ROLE_ATTN_Q] = {"attn_q.weight", "self_attn.q_proj.weight", true, JOIN_NONE},
    [ROLE_ATTN_K] = {"attn_k.weight", "self_attn.k_proj.weight", true, JOIN_NONE},
    [ROLE_ATTN_V] = {"attn_v.weight", "self_attn.v_proj.weight", true, JOIN_NONE},
    [ROLE_ATTN_OUTPUT] = {"attn_output.weight", "self_attn.o_proj.weight", true, JOIN_NONE},
    [ROLE_ATTN_OUTPUT_NORM] = {"attn_output_norm.weight", "post_attn_norm.weight", true, JOIN_NONE},
    [ROLE_FFN_NORM] = {"ffn_norm.weight", "pre_moe_norm.weight", true, JOIN_NONE},
    [ROLE_FFN_GATE_INP] = {"ffn_gate_inp.weight", "block_sparse_moe.gate.weight", true, JOIN_NONE},
    [ROLE_FFN_GATE] = {"ffn_gate.weight", "mlp.gate_proj.weight", true, JOIN_NONE},
    [ROLE_FFN_UP] = {"ffn_up.weight", "mlp.up_proj.weight", true, JOIN_NONE},
    [ROLE_FFN_DOWN] = {"ffn_down.weight", "mlp.down_proj.weight", true, JOIN_NONE},
    [ROLE_FFN_GATE_EXPS] = {"ffn_gate_exps.weight", "block_sparse_moe.experts.%d.w1.weight", true, JOIN_ROWS},
    [ROLE_FFN_UP_EXPS] = {"ffn_up_exps.weight", "block_sparse_moe.experts.%d.w3.weight", true, JOIN_ROWS},
    [ROLE_FFN_DOWN_EXPS] = {"ffn_down_exps.weight", "block_sparse_moe.experts.%d.w2.weight", true, JOIN_COLS},
    [ROLE_POST_FFW_NORM] = {"post_ffw_norm.weight", "post_moe_norm.weight", true, JOIN_NONE},
    [ROLE_OUTPUT_NORM] = {"output_norm.weight", "model.norm.weight", false, JOIN_NONE},
    [ROLE_OUTPUT] = {"output.weight", "lm_head.weight", false, JOIN_NONE},
};

#define FIRST_LAYER_ROLE ROLE_ATTN_NORM
#define LAST_LAYER_ROLE ROLE_POST_FFW_NORM
#define ROLES_PER_LAYER (LAST_LAYER_ROLE - FIRST_LAYER_ROLE + 1)

int64_t grok_tensor_count(const grok_config *c) { return 3 + c->n_layers * ROLES_PER_LAYER; }

static void set_shape(grok_tensor *t, const grok_config *c) {
    int64_t q = c->n_head * c->head_dim, kv = c->n_head_kv * c->head_dim;
    int64_t ne[3] = {c->hidden, 1, 1};
    uint32_t n_dims = 2;
    t->n_mats = 1;
    switch (t->role) {
    case ROLE_ATTN_NORM: case ROLE_ATTN_OUTPUT_NORM: case ROLE_FFN_NORM: case ROLE_POST_FFW_NORM:
    case ROLE_OUTPUT_NORM: n_dims = 1; break;
    case ROLE_TOKEN_EMBD: case ROLE_OUTPUT: ne[1] = c->vocab; break;
    case ROLE_ATTN_Q: ne[1] = q; break;
    case ROLE_ATTN_K: case ROLE_ATTN_V: ne[1] = kv; break;
    case ROLE_ATTN_OUTPUT: ne[0] = q; ne[1] = c->hidden; break;
    case ROLE_FFN_GATE_INP: ne[1] = c->n_expert; break;
    case ROLE_FFN_GATE: case ROLE_FFN_UP: ne[1] = c->ff; break;
    case ROLE_FFN_DOWN: ne[0] = c->ff; ne[1] = c->hidden; break;
    case ROLE_FFN_GATE_EXPS: case ROLE_FFN_UP_EXPS:
        ne[1] = c->expert_ff; ne[2] = c->n_expert; n_dims = 3; t->n_mats = (int)c->n_expert; break;
    case ROLE_FFN_DOWN_EXPS:
        ne[0] = c->expert_ff; ne[1] = c->hidden; ne[2] = c->n_expert; n_dims = 3; t->n_mats = (int)c->n_expert; break;
    default: break;
    }
    t->n_dims = n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < 3 ? ne[d] : 1;
}

void grok_tensor_at(const grok_config *c, int64_t i, grok_tensor *t) {
    memset(t, 0, sizeof *t);
    int64_t last = grok_tensor_count(c) - 1;
    if (i == 0) {
        t->role = ROLE_TOKEN_EMBD;
        t->layer = -1;
    } else if (i >= last - 1) {
        t->role = i == last ? ROLE_OUTPUT : ROLE_OUTPUT_NORM;
        t->layer = -1;
    } else {
        t->layer = (int)((i - 1) / ROLES_PER_LAYER);
        t->role = (grok_role)(FIRST_LAYER_ROLE + (i - 1) % ROLES_PER_LAYER);
    }
    if (t->layer >= 0)
        snprintf(t->name, sizeof t->name, "blk.%d.%s", t->layer, roles[t->role].gguf);
    else
        snprintf(t->name, sizeof t->name, "%s", roles[t->role].gguf);
    set_shape(t, c);
}

void grok_tensor_hf_name(const grok_tensor *t, int mat, char *buf, size_t size) {
    const role_names *r = &roles[t->role];
    if (!r->per_layer) {
        snprintf(buf, size, "%s", r->hf);
        return;
    }
    int n = snprintf(buf, size, "model.layers.%d.", t->layer);
    if (n < 0 || (size_t)n >= size) return;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(buf + n, size - (size_t)n, r->hf, mat); /* the expert index for "%d" names */
#pragma GCC diagnostic pop
}

grok_join grok_role_join(grok_role role) { return role >= 0 && role < ROLE_COUNT ? roles[role].join : JOIN_NONE; }

bool grok_role_is_norm(grok_role role) {
    return role == ROLE_ATTN_NORM || role == ROLE_ATTN_OUTPUT_NORM || role == ROLE_FFN_NORM ||
           role == ROLE_POST_FFW_NORM || role == ROLE_OUTPUT_NORM;
}

const char *grok_role_gguf_suffix(grok_role role) { return role >= 0 && role < ROLE_COUNT ? roles[role].gguf : "?"; }

/* Reads a decimal index at *p (no sign, no leading zeros beyond "0", < 1e6). */
static int read_index(const char **p, int *out) {
    const char *s = *p;
    if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9')) return -1;
    long v = 0;
    while (*s >= '0' && *s <= '9' && v < 1000000) v = v * 10 + (*s++ - '0');
    if (v >= 1000000) return -1;
    *out = (int)v;
    *p = s;
    return 0;
}

/* Matches name against an hf pattern that may hold one "%d" (the expert index). */
static bool match_pattern(const char *name, const char *pattern, int *expert) {
    const char *hole = strstr(pattern, "%d");
    if (!hole) return !strcmp(name, pattern);
    size_t head = (size_t)(hole - pattern);
    if (strncmp(name, pattern, head)) return false;
    const char *p = name + head;
    if (read_index(&p, expert)) return false;
    return !strcmp(p, hole + 2);
}

int grok_parse_hf_name(const char *name, grok_role *role, int *layer, int *expert) {
    *layer = -1;
    *expert = -1;
    static const char prefix[] = "model.layers.";
    if (!strncmp(name, prefix, sizeof prefix - 1)) {
        const char *p = name + sizeof prefix - 1;
        if (read_index(&p, layer) || *p++ != '.') return -1;
        for (int r = FIRST_LAYER_ROLE; r <= LAST_LAYER_ROLE; r++)
            if (match_pattern(p, roles[r].hf, expert)) {
                *role = (grok_role)r;
                return 0;
            }
        return -1;
    }
    for (int r = 0; r < ROLE_COUNT; r++)
        if (!roles[r].per_layer && !strcmp(name, roles[r].hf)) {
            *role = (grok_role)r;
            return 0;
        }
    return -1;
}

grok_role grok_parse_gguf_name(const char *name, int *layer) {
    *layer = -1;
    if (!strncmp(name, "blk.", 4)) {
        const char *p = name + 4;
        if (read_index(&p, layer) || *p++ != '.') return ROLE_UNKNOWN;
        for (int r = FIRST_LAYER_ROLE; r <= LAST_LAYER_ROLE; r++)
            if (!strcmp(p, roles[r].gguf)) return (grok_role)r;
        return ROLE_UNKNOWN;
    }
    for (int r = 0; r < ROLE_COUNT; r++)
        if (!roles[r].per_layer && !strcmp(name, roles[r].gguf)) return (grok_role)r;
    return ROLE_UNKNOWN;
}

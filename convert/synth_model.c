/* Synthetic Grok-2 weights: presets, and every value as a pure function of (seed, tensor,
 * position) from a counter-based generator, so that any slice (a TP shard, a row range for a
 * worker thread, a stacked expert) is produced independently and identically.
 *
 * Scales (x is RMS-normalized, so |x| ~ 1 per element): they put the model where the soft-caps
 * and the router matter while the residual stream stays well-conditioned:
 *   embedding: 1/embedding_scale, so the scaled embedding has RMS 1;
 *   q, k: sqrt(15/d), so q.k/sqrt(head_dim) has a spread of ~15 and the 30*tanh cap bites;
 *   router: 15/sqrt(d), logits spread over tens: the cap and the top-2 choice matter;
 *   lm_head: 60/sqrt(d), so 0.5 * lm_head x spreads ~30 and the 50*tanh cap bites on the tail;
 *   gate 1.5/sqrt(d) (GELU's curved region), up 1/sqrt(d), down 1/sqrt(width), v, o 1/sqrt(in);
 *   pre-norms 1 +- 0.1; post-norms 0.5 +- 0.05, so each sublayer adds ~0.5 RMS to a stream of
 *   RMS ~1: no sublayer dominates, nothing amplifies from layer to layer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"

int synth_preset(const char *name, grok_config *c, int *tp) {
    grok_config r = grok_config_release();
    *tp = 8;
    if (!strcmp(name, "grok2")) {
        *c = r;
        return 0;
    }
    if (!strcmp(name, "tiny")) {
        r.hidden = 256, r.n_layers = 2, r.n_head = 4, r.n_head_kv = 2, r.head_dim = 64;
        r.n_expert = 4, r.n_expert_used = 2, r.expert_ff = 512, r.ff = 1024, r.vocab = 512;
    } else if (!strcmp(name, "mini")) {
        r.hidden = 2048, r.n_layers = 16, r.n_head = 16, r.n_head_kv = 2, r.head_dim = 128;
        r.n_expert = 8, r.n_expert_used = 2, r.expert_ff = 4096, r.ff = 8192, r.vocab = 32768;
    } else {
        return -1;
    }
    r.embedding_scale = sqrt((double)r.hidden);
    r.attn_output_scale = 1.0 / sqrt((double)r.head_dim);
    *c = r;
    return 0;
}

/* splitmix64's output function: mix(key + i * golden) is the i-th output of the stream
 * seeded with key, so any element can be computed on its own. */
static inline uint64_t mix64(uint64_t x) {
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* An approximately standard normal value: the sum of four 16-bit uniforms (Irwin-Hall),
 * centred and scaled; bounded at +-3.46, which keeps extreme weights out of synthetic data. */
static inline float gauss_at(uint64_t key, uint64_t i) {
    uint64_t h = mix64(key + (i + 1) * 0x9e3779b97f4a7c15ull);
    uint32_t s = (uint32_t)(h & 0xffff) + (uint32_t)(h >> 16 & 0xffff) + (uint32_t)(h >> 32 & 0xffff) +
                 (uint32_t)(h >> 48);
    return ((float)s - 131070.0f) * (1.0f / 37837.23f);
}

static uint64_t tensor_key(uint64_t seed, int role, int layer, int mat) {
    uint64_t k = mix64(seed ^ 0x6a09e667f3bcc908ull);
    k = mix64(k ^ ((uint64_t)(role + 1) << 40) ^ ((uint64_t)(layer + 1) << 20) ^ (uint64_t)(mat + 1));
    return k;
}

typedef struct {
    double mean, std;
} distribution;

static distribution role_distribution(const grok_config *c, grok_role role) {
    double d = (double)c->hidden;
    switch (role) {
    case ROLE_TOKEN_EMBD: return (distribution){0, 1.0 / c->embedding_scale};
    case ROLE_ATTN_NORM: case ROLE_FFN_NORM: case ROLE_OUTPUT_NORM: return (distribution){1.0, 0.1};
    case ROLE_ATTN_OUTPUT_NORM: case ROLE_POST_FFW_NORM: return (distribution){0.5, 0.05};
    case ROLE_ATTN_Q: case ROLE_ATTN_K: return (distribution){0, sqrt(15.0 / d)};
    case ROLE_ATTN_V: return (distribution){0, 1.0 / sqrt(d)};
    case ROLE_ATTN_OUTPUT: return (distribution){0, 1.0 / sqrt((double)(c->n_head * c->head_dim))};
    case ROLE_FFN_GATE_INP: return (distribution){0, 15.0 / sqrt(d)};
    case ROLE_FFN_GATE: case ROLE_FFN_GATE_EXPS: return (distribution){0, 1.5 / sqrt(d)};
    case ROLE_FFN_UP: case ROLE_FFN_UP_EXPS: return (distribution){0, 1.0 / sqrt(d)};
    case ROLE_FFN_DOWN: return (distribution){0, 1.0 / sqrt((double)c->ff)};
    case ROLE_FFN_DOWN_EXPS: return (distribution){0, 1.0 / sqrt((double)c->expert_ff)};
    case ROLE_OUTPUT: return (distribution){0, 60.0 / sqrt(d)};
    default: return (distribution){0, 0};
    }
}

/* --router-skew: a direction u shared by every token's embedding (weight SKEW_KAPPA against
 * the random part) and, in each router, a component along u that grows from the last expert
 * to the first, so expert 0 gets an expected logit offset of about +skew x 15 (the router's
 * spread) and the last one -skew x 15. Later layers dilute u as the stream grows. */
#define SKEW_KAPPA 0.5
#define ROUTER_SPREAD 15.0

static double router_skew_weight(const synth_model *m, int expert) {
    const grok_config *c = &m->config;
    if (m->router_skew == 0 || c->n_expert < 2) return 0;
    double centred = (double)(c->n_expert - 1 - 2 * expert) / (double)(c->n_expert - 1); /* 1 .. -1 */
    return m->router_skew * ROUTER_SPREAD * centred * sqrt(1 + SKEW_KAPPA * SKEW_KAPPA) /
           (SKEW_KAPPA * (double)c->hidden);
}

void synth_fill(const synth_model *m, const grok_tensor *t, int mat, int64_t row, int64_t col0, int64_t n,
                float *dst) {
    distribution d = role_distribution(&m->config, t->role);
    uint64_t key = tensor_key(m->seed, t->role, t->layer, mat);
    uint64_t base = (uint64_t)row * (uint64_t)t->ne[0] + (uint64_t)col0;
    float mean = (float)d.mean, std = (float)d.std;
    for (int64_t k = 0; k < n; k++) dst[k] = mean + std * gauss_at(key, base + (uint64_t)k);
    if (m->router_skew != 0 && (t->role == ROLE_TOKEN_EMBD || t->role == ROLE_FFN_GATE_INP)) {
        uint64_t shared = tensor_key(m->seed, ROLE_COUNT, -1, -1);
        float w = (float)(SKEW_KAPPA * d.std);
        if (t->role == ROLE_FFN_GATE_INP) {
            /* Take u out of the random row first: otherwise its chance overlap with u would give
             * each expert a random offset as large as the intended one. O(hidden) per row, and
             * the router has only n_expert rows. */
            double zu = 0, uu = 0;
            for (int64_t j = 0; j < t->ne[0]; j++) {
                double u = gauss_at(shared, (uint64_t)j);
                zu += std * gauss_at(key, (uint64_t)row * (uint64_t)t->ne[0] + (uint64_t)j) * u;
                uu += u * u;
            }
            w = (float)(router_skew_weight(m, (int)row) - zu / uu);
        }
        for (int64_t k = 0; k < n; k++) dst[k] += w * gauss_at(shared, (uint64_t)(col0 + k));
    }
    for (int64_t k = 0; k < n; k++) dst[k] = g2_bf16_to_f32(g2_f32_to_bf16(dst[k]));
}

int synth_tensors(const synth_model *m, conv_tensor **out, int64_t *n_out, g2_error *err) {
    int64_t n = grok_tensor_count(&m->config);
    conv_tensor *ts = calloc((size_t)n, sizeof *ts);
    if (!ts) return g2_fail(err, "synth: out of memory");
    for (int64_t i = 0; i < n; i++) {
        grok_tensor g;
        grok_tensor_at(&m->config, i, &g);
        conv_tensor *t = &ts[i];
        memcpy(t->name, g.name, sizeof t->name);
        t->n_dims = g.n_dims;
        memcpy(t->ne, g.ne, sizeof t->ne);
        t->role = g.role;
        t->layer = g.layer;
        t->src_type = G2_TYPE_BF16;
        t->src = (tensor_source){.kind = SOURCE_SYNTH, .ne0 = g.ne[0], .n_rows = g.ne[1] * g.ne[2], .synth = m,
                                 .spec = g};
        t->src_bytes = (uint64_t)(g.ne[0] * g.ne[1] * g.ne[2]) * 2;
    }
    *out = ts;
    *n_out = n;
    return 0;
}

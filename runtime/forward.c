/* The Grok-2 forward pass, as xAI's reference serves it (grok2-model.md section 3):
 *
 *   h = embed[token] * embedding_scale
 *   per layer:  h += RMSNorm_post_attn(Attention(RMSNorm_pre_attn(h)))
 *               y  = RMSNorm_pre_moe(h)
 *               h += RMSNorm_post_moe((DenseMLP(y) + MoE(y)) / sqrt(2))
 *   logits = final_cap * tanh(logit_scale * (RMSNorm_final(h) @ lm_head^T) / final_cap)
 *
 * One call evaluates a batch of tokens at consecutive positions: decode is a batch of one,
 * prefill a batch of many (in chunks of max_batch). Activations are f32; weights stay in their
 * block type and are decoded a row at a time. All buffers are allocated once, in
 * grok_context_new: nothing in the token loop allocates. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

#define ROWS_PER_TASK 16

struct grok_context {
    const grok_model *model;
    thread_pool *pool;
    uint32_t n_ctx, max_batch;
    kv_cache_type kv_type;
    size_t kv_elem;     /* bytes per cached value */
    uint8_t *k_cache;   /* [n_layer][n_ctx][n_head_kv * head_dim] */
    uint8_t *v_cache;
    double *inv_freq;   /* RoPE, [head_dim / 2] */
    /* activations, [max_batch][width] */
    float *h, *normed, *q, *k, *v, *attn, *proj, *ff_a, *ff_b, *dense, *moe, *router;
    float *expert_in, *expert_out;
    int32_t *expert_tokens; /* [n_expert][max_batch]: which tokens chose expert e */
    float *expert_gates;    /* [n_expert][max_batch]: with which weight */
    uint32_t *expert_fill;  /* [n_expert] */
    /* per-thread scratch */
    size_t row_width, score_width;
    float *thread_row;   /* [threads][row_width]: one decoded weight row */
    float *thread_score; /* [threads][n_ctx] */
};

/* ---- small math ---------------------------------------------------------------------------- */

static float dot_f32(const float *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static void rms_norm(const float *x, const float *weight, float *out, int64_t n, float eps) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(sum / (double)n + eps));
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale * weight[i];
}

/* cap <= 0 means no cap (the reference's convention) */
static float softcap(float x, float cap) { return cap > 0 ? cap * tanhf(x / cap) : x; }

/* exact erf form, not the tanh approximation */
static float gelu(float x) { return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2)); }

static void softmax(float *x, int64_t n) {
    float max = x[0];
    for (int64_t i = 1; i < n; i++) max = x[i] > max ? x[i] : max;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += x[i] = expf(x[i] - max);
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

/* ---- matmul: y[t][row] = W[row] . x[t], rows split over the pool -------------------------- */

typedef struct {
    grok_context *ctx;
    uint32_t type;
    const uint8_t *data;
    int64_t rows, cols;
    size_t row_bytes;
    const float *x; /* [n][cols] */
    int64_t n;
    float *y;       /* [n][rows] */
} matmul_job;

static void matmul_task(void *p, int64_t task, int thread) {
    const matmul_job *job = p;
    const g2_type_traits *traits = g2_type_get(job->type);
    float *row = job->ctx->thread_row + (size_t)thread * job->ctx->row_width;
    int64_t end = (task + 1) * ROWS_PER_TASK < job->rows ? (task + 1) * ROWS_PER_TASK : job->rows;
    for (int64_t r = task * ROWS_PER_TASK; r < end; r++) {
        const float *w = row;
        if (job->type == G2_TYPE_F32)
            w = (const float *)(job->data + (size_t)r * job->row_bytes);
        else
            traits->to_float(job->data + (size_t)r * job->row_bytes, row, job->cols);
        for (int64_t t = 0; t < job->n; t++) job->y[t * job->rows + r] = dot_f32(w, job->x + t * job->cols, job->cols);
    }
}

/* W given as a matrix view, optionally one expert's slab of it (data overrides w->data). */
static void matmul(grok_context *ctx, const weight_matrix *w, const uint8_t *data, const float *x, int64_t n,
                   float *y) {
    matmul_job job = {ctx, w->type, data ? data : w->data, w->rows, w->cols, w->row_bytes, x, n, y};
    thread_pool_run(ctx->pool, matmul_task, &job, (w->rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK);
}

/* ---- KV cache ------------------------------------------------------------------------------ */

static void kv_store(const grok_context *ctx, uint8_t *dst, const float *src, int64_t n) {
    switch (ctx->kv_type) {
    case KV_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case KV_F16: for (int64_t i = 0; i < n; i++) ((g2_half *)dst)[i] = g2_f32_to_half(src[i]); break;
    case KV_BF16: for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = g2_f32_to_bf16(src[i]); break;
    }
}

static void kv_load(const grok_context *ctx, const uint8_t *src, float *dst, int64_t n) {
    switch (ctx->kv_type) {
    case KV_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case KV_F16: for (int64_t i = 0; i < n; i++) dst[i] = g2_half_to_f32(((const g2_half *)src)[i]); break;
    case KV_BF16: for (int64_t i = 0; i < n; i++) dst[i] = g2_bf16_to_f32(((const uint16_t *)src)[i]); break;
    }
}

static uint8_t *kv_row(const grok_context *ctx, uint8_t *cache, uint32_t layer, uint32_t pos) {
    const grok_hparams *hp = &ctx->model->hp;
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    return cache + (((size_t)layer * ctx->n_ctx + pos) * kv_dim) * ctx->kv_elem;
}

/* ---- attention ----------------------------------------------------------------------------- */

/* NeoX rotate-half RoPE over the whole head: element i pairs with i + head_dim/2. */
static void rope(const grok_context *ctx, float *vec, uint32_t n_heads, uint32_t pos) {
    uint32_t hd = ctx->model->hp.head_dim, half = hd / 2;
    for (uint32_t i = 0; i < half; i++) {
        double angle = (double)pos * ctx->inv_freq[i];
        float c = (float)cos(angle), s = (float)sin(angle);
        for (uint32_t h = 0; h < n_heads; h++) {
            float *x = vec + (size_t)h * hd;
            float x0 = x[i], x1 = x[i + half];
            x[i] = x0 * c - x1 * s;
            x[i + half] = x1 * c + x0 * s;
        }
    }
}

typedef struct {
    grok_context *ctx;
    uint32_t layer, n_past;
} attention_job;

/* One (token, head): scores over every cached position up to the token's own. */
static void attention_task(void *p, int64_t task, int thread) {
    const attention_job *job = p;
    grok_context *ctx = job->ctx;
    const grok_hparams *hp = &ctx->model->hp;
    uint32_t hd = hp->head_dim, n_head = hp->n_head;
    uint32_t t = (uint32_t)(task / n_head), h = (uint32_t)(task % n_head);
    uint32_t kv_head = h / (n_head / hp->n_head_kv);
    uint32_t pos = job->n_past + t;
    const float *q = ctx->q + ((size_t)t * n_head + h) * hd;
    float *scores = ctx->thread_score + (size_t)thread * ctx->score_width;
    float *row = ctx->thread_row + (size_t)thread * ctx->row_width;
    float scale = 1.0f / sqrtf((float)hd);
    /* Attention temperature: a query at position p > L sharpens by log2(p) / log2(L), which is
     * the reference's log2(p)/10 for Grok-2's L = 1024 (and has no jump at p = L for other L). */
    float temperature = pos > hp->attn_temperature_len
                            ? (float)(log2((double)pos) / log2((double)hp->attn_temperature_len))
                            : 1.0f;
    size_t head_offset = (size_t)kv_head * hd * ctx->kv_elem;
    for (uint32_t j = 0; j <= pos; j++) {
        kv_load(ctx, kv_row(ctx, ctx->k_cache, job->layer, j) + head_offset, row, hd);
        scores[j] = softcap(dot_f32(q, row, hd) * scale, hp->attn_softcap) * temperature;
    }
    softmax(scores, pos + 1);
    float *out = ctx->attn + ((size_t)t * n_head + h) * hd;
    memset(out, 0, hd * sizeof(float));
    for (uint32_t j = 0; j <= pos; j++) {
        kv_load(ctx, kv_row(ctx, ctx->v_cache, job->layer, j) + head_offset, row, hd);
        for (uint32_t i = 0; i < hd; i++) out[i] += scores[j] * row[i];
    }
}

static void attention(grok_context *ctx, uint32_t layer, const grok_layer *L, uint32_t n, uint32_t n_past) {
    const grok_hparams *hp = &ctx->model->hp;
    size_t q_dim = (size_t)hp->n_head * hp->head_dim, kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    matmul(ctx, &L->q, NULL, ctx->normed, n, ctx->q);
    matmul(ctx, &L->k, NULL, ctx->normed, n, ctx->k);
    matmul(ctx, &L->v, NULL, ctx->normed, n, ctx->v);
    for (uint32_t t = 0; t < n; t++) {
        rope(ctx, ctx->q + t * q_dim, hp->n_head, n_past + t);
        rope(ctx, ctx->k + t * kv_dim, hp->n_head_kv, n_past + t);
        kv_store(ctx, kv_row(ctx, ctx->k_cache, layer, n_past + t), ctx->k + t * kv_dim, (int64_t)kv_dim);
        kv_store(ctx, kv_row(ctx, ctx->v_cache, layer, n_past + t), ctx->v + t * kv_dim, (int64_t)kv_dim);
    }
    attention_job job = {ctx, layer, n_past};
    thread_pool_run(ctx->pool, attention_task, &job, (int64_t)n * hp->n_head);
    matmul(ctx, &L->o, NULL, ctx->attn, n, ctx->proj);
}

/* ---- MLPs ---------------------------------------------------------------------------------- */

/* down(GELU(gate x) * up x) for n rows of x; gate/up/down may be one expert's slabs. */
static void gated_mlp(grok_context *ctx, const weight_matrix *gate, const uint8_t *gate_data, const weight_matrix *up,
                      const uint8_t *up_data, const weight_matrix *down, const uint8_t *down_data, const float *x,
                      uint32_t n, float *out) {
    int64_t width = gate->rows;
    matmul(ctx, gate, gate_data, x, n, ctx->ff_a);
    matmul(ctx, up, up_data, x, n, ctx->ff_b);
    for (int64_t i = 0; i < (int64_t)n * width; i++) ctx->ff_a[i] = gelu(ctx->ff_a[i]) * ctx->ff_b[i];
    matmul(ctx, down, down_data, ctx->ff_a, n, out);
}

/* Router: soft-cap, softmax over all experts, top-k (ties to the lower index), weights are the
 * full-softmax probabilities, not renormalised. Then each chosen expert runs on its tokens. */
static void moe(grok_context *ctx, const grok_layer *L, uint32_t n) {
    const grok_hparams *hp = &ctx->model->hp;
    uint32_t n_expert = hp->n_expert, d = hp->n_embd;
    matmul(ctx, &L->router, NULL, ctx->normed, n, ctx->router);
    memset(ctx->expert_fill, 0, n_expert * sizeof *ctx->expert_fill);
    for (uint32_t t = 0; t < n; t++) {
        float *r = ctx->router + (size_t)t * n_expert;
        for (uint32_t e = 0; e < n_expert; e++) r[e] = softcap(r[e], hp->router_softcap);
        softmax(r, n_expert);
        uint64_t taken = 0; /* bitmask; n_expert <= 64 is checked at context creation */
        for (uint32_t k = 0; k < hp->n_expert_used; k++) {
            int best = -1;
            for (uint32_t e = 0; e < n_expert; e++)
                if (!(taken >> e & 1) && (best < 0 || r[e] > r[best])) best = (int)e;
            taken |= 1ull << best;
            uint32_t slot = ctx->expert_fill[best]++;
            ctx->expert_tokens[(size_t)best * ctx->max_batch + slot] = (int32_t)t;
            ctx->expert_gates[(size_t)best * ctx->max_batch + slot] = r[best];
        }
    }
    memset(ctx->moe, 0, (size_t)n * d * sizeof(float));
    for (uint32_t e = 0; e < n_expert; e++) {
        uint32_t count = ctx->expert_fill[e];
        if (!count) continue;
        const int32_t *tokens = ctx->expert_tokens + (size_t)e * ctx->max_batch;
        const float *gates = ctx->expert_gates + (size_t)e * ctx->max_batch;
        for (uint32_t i = 0; i < count; i++)
            memcpy(ctx->expert_in + (size_t)i * d, ctx->normed + (size_t)tokens[i] * d, d * sizeof(float));
        gated_mlp(ctx, &L->gate_exps, L->gate_exps.data + e * L->gate_exps_slab, &L->up_exps,
                  L->up_exps.data + e * L->up_exps_slab, &L->down_exps, L->down_exps.data + e * L->down_exps_slab,
                  ctx->expert_in, count, ctx->expert_out);
        for (uint32_t i = 0; i < count; i++) {
            float *dst = ctx->moe + (size_t)tokens[i] * d;
            const float *src = ctx->expert_out + (size_t)i * d;
            for (uint32_t j = 0; j < d; j++) dst[j] += gates[i] * src[j];
        }
    }
}

/* ---- one chunk of tokens through the whole model ------------------------------------------ */

static void forward_chunk(grok_context *ctx, const int32_t *tokens, uint32_t n, uint32_t n_past, float *logits,
                          bool all) {
    const grok_model *m = ctx->model;
    const grok_hparams *hp = &m->hp;
    uint32_t d = hp->n_embd;
    const g2_type_traits *embd_type = g2_type_get(m->embedding.type);
    for (uint32_t t = 0; t < n; t++) {
        float *h = ctx->h + (size_t)t * d;
        embd_type->to_float(m->embedding.data + (size_t)tokens[t] * m->embedding.row_bytes, h, d);
        for (uint32_t i = 0; i < d; i++) h[i] *= hp->embedding_scale;
    }
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        const grok_layer *L = &m->layers[l];
        /* h += RMSNorm_post_attn(Attention(RMSNorm_pre_attn(h))) */
        for (uint32_t t = 0; t < n; t++)
            rms_norm(ctx->h + (size_t)t * d, L->attn_norm, ctx->normed + (size_t)t * d, d, hp->rms_eps);
        attention(ctx, l, L, n, n_past);
        for (uint32_t t = 0; t < n; t++) {
            float *h = ctx->h + (size_t)t * d, *a = ctx->proj + (size_t)t * d;
            rms_norm(a, L->attn_output_norm, a, d, hp->rms_eps);
            for (uint32_t i = 0; i < d; i++) h[i] += a[i];
        }
        /* h += RMSNorm_post_moe((DenseMLP(y) + MoE(y)) / sqrt(2)), y = RMSNorm_pre_moe(h) */
        for (uint32_t t = 0; t < n; t++)
            rms_norm(ctx->h + (size_t)t * d, L->ffn_norm, ctx->normed + (size_t)t * d, d, hp->rms_eps);
        gated_mlp(ctx, &L->gate, NULL, &L->up, NULL, &L->down, NULL, ctx->normed, n, ctx->dense);
        moe(ctx, L, n);
        for (uint32_t t = 0; t < n; t++) {
            float *h = ctx->h + (size_t)t * d, *f = ctx->dense + (size_t)t * d;
            const float *e = ctx->moe + (size_t)t * d;
            for (uint32_t i = 0; i < d; i++) f[i] = (f[i] + e[i]) * (float)M_SQRT1_2;
            rms_norm(f, L->post_ffw_norm, f, d, hp->rms_eps);
            for (uint32_t i = 0; i < d; i++) h[i] += f[i];
        }
    }
    if (!logits) return; /* an earlier chunk of a prompt: only the KV cache was wanted */
    /* logits = final_cap * tanh(logit_scale * (RMSNorm_final(h) @ lm_head^T) / final_cap) */
    uint32_t first = all ? 0 : n - 1, count = n - first;
    for (uint32_t t = first; t < n; t++)
        rms_norm(ctx->h + (size_t)t * d, m->output_norm, ctx->normed + (size_t)(t - first) * d, d, hp->rms_eps);
    matmul(ctx, &m->output, NULL, ctx->normed, count, logits);
    for (size_t i = 0; i < (size_t)count * hp->n_vocab; i++)
        logits[i] = softcap(logits[i] * hp->logit_scale, hp->final_softcap);
}

int grok_eval(grok_context *ctx, const int32_t *tokens, uint32_t n, uint32_t n_past, float *logits, bool all,
              g2_error *err) {
    const grok_hparams *hp = &ctx->model->hp;
    if (n == 0) return g2_fail(err, "nothing to evaluate: no tokens");
    if ((uint64_t)n_past + n > ctx->n_ctx)
        return g2_fail(err, "%u tokens at position %u do not fit the context of %u (raise --ctx)", n, n_past,
                       ctx->n_ctx);
    for (uint32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= hp->n_vocab)
            return g2_fail(err, "token %d at index %u is outside the vocabulary (0..%u)", tokens[i], i, hp->n_vocab - 1);
    for (uint32_t done = 0; done < n;) {
        uint32_t chunk = n - done < ctx->max_batch ? n - done : ctx->max_batch;
        float *out = all ? logits + (size_t)done * hp->n_vocab : done + chunk == n ? logits : NULL;
        forward_chunk(ctx, tokens + done, chunk, n_past + done, out, all);
        done += chunk;
    }
    return 0;
}

/* ---- context ------------------------------------------------------------------------------- */

const char *kv_cache_type_name(kv_cache_type t) {
    return t == KV_F32 ? "f32" : t == KV_BF16 ? "bf16" : "f16";
}

int kv_cache_type_parse(const char *name, kv_cache_type *out) {
    if (!strcmp(name, "f16")) *out = KV_F16;
    else if (!strcmp(name, "f32")) *out = KV_F32;
    else if (!strcmp(name, "bf16")) *out = KV_BF16;
    else return -1;
    return 0;
}

uint32_t grok_context_n_ctx(const grok_context *ctx) { return ctx->n_ctx; }

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

int grok_context_new(grok_context **out, const grok_model *m, const grok_context_params *params, g2_error *err) {
    const grok_hparams *hp = &m->hp;
    if (hp->n_expert > 64) return g2_fail(err, "%u experts: at most 64 are supported", hp->n_expert);
    grok_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return g2_fail(err, "out of memory");
    ctx->model = m;
    ctx->n_ctx = params->n_ctx ? params->n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    if (ctx->n_ctx > hp->n_ctx_train) {
        free(ctx);
        return g2_fail(err, "context %u exceeds the model's %u positions", params->n_ctx, hp->n_ctx_train);
    }
    ctx->max_batch = params->max_batch ? params->max_batch : 64;
    ctx->kv_type = params->kv_type;
    ctx->kv_elem = ctx->kv_type == KV_F32 ? 4 : 2;
    ctx->pool = thread_pool_new(params->n_threads);
    size_t B = ctx->max_batch, d = hp->n_embd;
    size_t q_dim = (size_t)hp->n_head * hp->head_dim, kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    size_t ff = max_size(hp->n_ff, hp->n_ff_exp);
    size_t kv_bytes = (size_t)hp->n_layer * ctx->n_ctx * kv_dim * ctx->kv_elem;
    ctx->k_cache = malloc(kv_bytes);
    ctx->v_cache = malloc(kv_bytes);
    ctx->inv_freq = malloc(hp->head_dim / 2 * sizeof(double));
    ctx->h = malloc(B * d * sizeof(float));
    ctx->normed = malloc(B * d * sizeof(float));
    ctx->q = malloc(B * q_dim * sizeof(float));
    ctx->k = malloc(B * kv_dim * sizeof(float));
    ctx->v = malloc(B * kv_dim * sizeof(float));
    ctx->attn = malloc(B * q_dim * sizeof(float));
    ctx->proj = malloc(B * d * sizeof(float));
    ctx->ff_a = malloc(B * ff * sizeof(float));
    ctx->ff_b = malloc(B * ff * sizeof(float));
    ctx->dense = malloc(B * d * sizeof(float));
    ctx->moe = malloc(B * d * sizeof(float));
    ctx->router = malloc(B * hp->n_expert * sizeof(float));
    ctx->expert_in = malloc(B * d * sizeof(float));
    ctx->expert_out = malloc(B * d * sizeof(float));
    ctx->expert_tokens = malloc(hp->n_expert * B * sizeof(int32_t));
    ctx->expert_gates = malloc(hp->n_expert * B * sizeof(float));
    ctx->expert_fill = malloc(hp->n_expert * sizeof(uint32_t));
    ctx->row_width = max_size(max_size(d, q_dim), ff);
    ctx->score_width = ctx->n_ctx;
    int threads = ctx->pool ? thread_pool_size(ctx->pool) : 1;
    ctx->thread_row = malloc((size_t)threads * ctx->row_width * sizeof(float));
    ctx->thread_score = malloc((size_t)threads * ctx->score_width * sizeof(float));
    if (!ctx->pool || !ctx->k_cache || !ctx->v_cache || !ctx->inv_freq || !ctx->h || !ctx->normed || !ctx->q ||
        !ctx->k || !ctx->v || !ctx->attn || !ctx->proj || !ctx->ff_a || !ctx->ff_b || !ctx->dense || !ctx->moe ||
        !ctx->router || !ctx->expert_in || !ctx->expert_out || !ctx->expert_tokens || !ctx->expert_gates ||
        !ctx->expert_fill || !ctx->thread_row || !ctx->thread_score) {
        grok_context_free(ctx);
        return g2_fail(err, "out of memory for a context of %u positions (KV cache %zu MiB)", params->n_ctx,
                       2 * kv_bytes >> 20);
    }
    /* plain RoPE frequencies: theta^(-2i/head_dim) */
    for (uint32_t i = 0; i < hp->head_dim / 2; i++)
        ctx->inv_freq[i] = pow((double)hp->rope_theta, -2.0 * i / hp->head_dim);
    *out = ctx;
    return 0;
}

void grok_context_free(grok_context *ctx) {
    if (!ctx) return;
    thread_pool_free(ctx->pool);
    void *buffers[] = {ctx->k_cache, ctx->v_cache, ctx->inv_freq, ctx->h, ctx->normed, ctx->q, ctx->k, ctx->v,
                       ctx->attn, ctx->proj, ctx->ff_a, ctx->ff_b, ctx->dense, ctx->moe, ctx->router,
                       ctx->expert_in, ctx->expert_out, ctx->expert_tokens, ctx->expert_gates, ctx->expert_fill,
                       ctx->thread_row, ctx->thread_score};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) free(buffers[i]);
    free(ctx);
}

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
 * block type: each matmul input is quantized once to the weight type's dot partner (Q8_0 or
 * Q8_K) and the simd/ kernels take integer dot products over row ranges split across the
 * thread pool. All buffers are allocated once, in grok_context_new: nothing in the token loop
 * allocates or locks. */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "experts.h"
#include "runtime.h"

/* Each thread streams long contiguous row ranges: the hardware prefetchers lose their stream at
 * every jump, and 16-row tasks interleaved between threads cost a third of the decode speed.
 * So a task is at least MIN_TASK_BYTES of weights. The tasks of a pass shrink as it goes
 * (guided: each takes 1/(TASK_SHARE x threads) of what is left), so the threads' last tasks
 * are short and end together. With 2 even tasks per thread and matrix, one thread of a decode
 * pass waited 6.5-9% of the pass for the other's last task; now 1%, plus the rare pass where
 * the OS took a thread's core away. */
#define MIN_TASK_BYTES (64u << 10)
#define TASK_SHARE 2
#define MATMUL_MAX_TASKS 512 /* per pass, all groups */
#define MATMUL_MAX_UNITS 4 /* matrices or gated pairs in one pass (see matmul_job) */

/* An input of one or more matmuls: f32 rows, quantized lazily to each partner type once. */
typedef struct {
    const float *x; /* [n][cols] */
    int64_t n, cols;
    uint64_t id;    /* which input the context's quantized buffers hold */
} activation;

struct grok_context {
    const grok_model *model;
    thread_pool *pool;
    /* NUMA: with shard, group g of the pool (node g's threads) computes share g of every
     * matrix's rows and owns share g of the KV heads; otherwise one group */
    numa_topology topology;
    numa_mode numa;
    int n_groups;
    /* --no-mmap: the model with its weights in a copy in anonymous memory; model points here */
    grok_model weights_copy;
    grok_layer *copy_layers;
    void *copy_memory;
    size_t copy_size;
    const simd_kernels *kernels;
    gemm_state *gemm; /* the --gemm back-end for batches (NULL: native kernels) */
    /* quantized activations per partner type (Q8_0, Q8_K) and slot: slot 0 holds a batch, the
     * others one row each (one allocation per type) */
    uint8_t *act_q8_0[MATMUL_MAX_UNITS], *act_q8_k[MATMUL_MAX_UNITS];
    uint64_t act_q8_0_id[MATMUL_MAX_UNITS], act_q8_k_id[MATMUL_MAX_UNITS], next_act_id;
    uint32_t n_ctx, max_batch;
    kv_cache_type kv_type;
    size_t kv_elem;     /* bytes per cached value */
    /* per (layer, kv head) one contiguous slab, so a head's cache streams in one run and lives on
     * the node that reads it */
    size_t kv_bytes;    /* of each cache */
    uint8_t *k_cache;   /* [n_layer][n_head_kv][positions][head_dim]: one row per position */
    uint8_t *v_cache;   /* [n_layer][n_head_kv][positions / ATTN_SEGMENT][head_dim][ATTN_SEGMENT] */
    double *inv_freq;   /* RoPE, [head_dim / 2] */
    /* activations, [max_batch][width] */
    float *h, *normed, *q, *k, *v, *attn, *proj, *ff_a, *ff_b, *dense, *moe, *router;
    float *expert_in, *expert_out;
    float *expert_ff;   /* one token: [n_expert_used][2][n_ff_exp], each chosen expert's gate, up */
    float *expert_down; /* one token: [n_expert_used][n_embd], each chosen expert's output */
    int32_t *expert_tokens; /* [n_expert][max_batch]: which tokens chose expert e */
    float *expert_gates;    /* [n_expert][max_batch]: with which weight */
    uint32_t *expert_fill;  /* [n_expert] */
    expert_stream *experts; /* advice, cache bound and counters for the expert slabs */
    bool mlp_per_expert;    /* grok_context_params.mlp_per_expert */
    /* per-thread scratch */
    size_t row_width;
    float *thread_row;   /* [threads][row_width]: one decoded weight row */
    /* attention (see ATTN_*): query rows per block, each thread's scratch for one block, and a
     * split decode token's per-(kv head, segment) states */
    uint32_t attn_block_rows, attn_max_segments;
    size_t attn_scratch_floats;
    float *thread_attn;  /* [threads][attn_scratch_floats] */
    float *attn_partial; /* [n_head_kv][attn_max_segments][attn_state_floats(group)] */
};

/* ---- small math ---------------------------------------------------------------------------- */

/* cap <= 0 means no cap (the reference's convention) */
static float softcap(float x, float cap) { return cap > 0 ? cap * tanhf(x / cap) : x; }


/* ---- matmul: y[t][row] = W[row] . x[t], row ranges split over the pool ---------------------- */

static activation activation_of(grok_context *ctx, const float *x, int64_t n, int64_t cols) {
    return (activation){x, n, cols, ++ctx->next_act_id};
}

/* The activation in act_type, quantized once per input into its slot's buffer (slot 0: a batch;
 * slots 1.. one row, for single-token jobs that read several inputs); F32 is used as is. */
static const void *activation_as(grok_context *ctx, const activation *a, int slot, uint32_t act_type,
                                 size_t *col_bytes) {
    *col_bytes = simd_act_row_bytes(act_type, a->cols);
    if (act_type == SIMD_TYPE_F32) return a->x;
    bool q8_0 = act_type == SIMD_TYPE_Q8_0;
    uint8_t *buf = q8_0 ? ctx->act_q8_0[slot] : ctx->act_q8_k[slot];
    uint64_t *held = q8_0 ? &ctx->act_q8_0_id[slot] : &ctx->act_q8_k_id[slot];
    if (*held != a->id) {
        simd_quantize_fn quantize = q8_0 ? ctx->kernels->quantize_q8_0 : ctx->kernels->quantize_q8_k;
        for (int64_t t = 0; t < a->n; t++) quantize(a->x + t * a->cols, buf + (size_t)t * *col_bytes, a->cols);
        *held = a->id;
    }
    return buf;
}

/* One matrix of a matmul job: W (or one expert's slab of it) times an activation into y. */
typedef struct {
    const weight_matrix *w;
    const uint8_t *data;
    float *y; /* [n][w->rows] */
    const activation *act;
    const simd_type_kernels *kernels; /* NULL: no kernels for the type, decode rows instead */
    bool by_gemm;                     /* a batch on the --gemm back-end */
    const void *x;                    /* the activation in the kernels' partner type */
    size_t x_col_bytes;
} matmul_part;

/* What a task computes rows of: one part, or a gated pair (gate, up) whose rows are finished
 * in the same task, y_gate = GELU(y_gate) * y_up, so no pass of its own is needed. */
typedef struct {
    int first_part, n_parts; /* n_parts 2: a gated pair */
    size_t row_bytes;        /* of all its parts: sizes the tasks */
} matmul_unit;

/* One task: rows [row_begin, row_end) of one unit. */
typedef struct {
    int unit;
    int64_t row_begin, row_end;
} matmul_range;

/* Up to MATMUL_MAX_UNITS units in one pass of the pool (one barrier): decode runs the dense MLP's
 * and both chosen experts' gate/up in one pass, then their three down projections in another.
 * Units may read different activations only when each is a single token (one quantized row
 * buffer per activation slot; a batch has one slot). */
typedef struct {
    grok_context *ctx;
    matmul_part parts[2 * MATMUL_MAX_UNITS];
    int n_parts;
    matmul_unit units[MATMUL_MAX_UNITS];
    int n_units;
    matmul_range tasks[MATMUL_MAX_TASKS]; /* group-major, in the order they are claimed */
    int n_tasks;
} matmul_job;

/* Rows of a type without kernels: decode each row to f32 and dot it with every token. */
static void matmul_rows_by_decoding(grok_context *ctx, const matmul_part *p, int64_t r0, int64_t r1, int thread) {
    const g2_type_traits *traits = g2_type_get(p->w->type);
    const activation *a = p->act;
    float *row = ctx->thread_row + (size_t)thread * ctx->row_width;
    for (int64_t r = r0; r < r1; r++) {
        traits->to_float(p->data + (size_t)r * p->w->row_bytes, row, a->cols);
        for (int64_t t = 0; t < a->n; t++) {
            float sum = 0;
            for (int64_t i = 0; i < a->cols; i++) sum += row[i] * a->x[t * a->cols + i];
            p->y[t * p->w->rows + r] = sum;
        }
    }
}

static void part_rows(const matmul_job *job, const matmul_part *p, int64_t r0, int64_t r1, int thread) {
    const uint8_t *w = p->data + (size_t)r0 * p->w->row_bytes;
    const activation *a = p->act;
    if (p->by_gemm)
        gemm_rows(job->ctx->gemm, thread, p->w, p->data, r0, r1, a->x, a->n, p->y);
    else if (!p->kernels)
        matmul_rows_by_decoding(job->ctx, p, r0, r1, thread);
    else if (a->n == 1)
        p->kernels->matvec(a->cols, r1 - r0, w, p->w->row_bytes, p->x, p->y + r0);
    else
        p->kernels->matmul(a->cols, r1 - r0, w, p->w->row_bytes, a->n, p->x, p->x_col_bytes, p->y + r0,
                           (size_t)p->w->rows);
}

static void matmul_task(void *arg, int64_t task, int thread) {
    const matmul_job *job = arg;
    const matmul_range *range = &job->tasks[task];
    const matmul_unit *u = &job->units[range->unit];
    int64_t r0 = range->row_begin, r1 = range->row_end;
    for (int k = 0; k < u->n_parts; k++) part_rows(job, &job->parts[u->first_part + k], r0, r1, thread);
    if (u->n_parts == 2) {
        const matmul_part *gate = &job->parts[u->first_part], *up = gate + 1;
        for (int64_t t = 0; t < gate->act->n; t++) {
            float *g = gate->y + t * gate->w->rows + r0;
            const float *v = up->y + t * up->w->rows + r0;
            job->ctx->kernels->gelu(g, g, r1 - r0);
            for (int64_t r = 0; r < r1 - r0; r++) g[r] *= v[r];
        }
    }
}

/* One group's share of the units' rows as tasks, appended to job->tasks in claim order: each
 * task 1/(TASK_SHARE x threads) of the bytes left in the pass, at least min_bytes. Boundaries
 * fall on multiples of NUMA_ROW_ALIGN: the kernels' 4-row tiles and the fused GELU's 16-wide
 * vectors then cover every row the same way however the rows are cut. Returns the count. */
static int64_t plan_group_tasks(matmul_job *job, int group, int threads, int max_tasks) {
    grok_context *ctx = job->ctx;
    int64_t begin[MATMUL_MAX_UNITS], end[MATMUL_MAX_UNITS];
    double left = 0; /* bytes */
    for (int i = 0; i < job->n_units; i++) {
        numa_split(job->parts[job->units[i].first_part].w->rows, group, ctx->n_groups, NUMA_ROW_ALIGN, &begin[i],
                   &end[i]);
        left += (double)(end[i] - begin[i]) * (double)job->units[i].row_bytes;
    }
    /* at most half the task budget at the floor size, the rest for the units' partial ends */
    assert(max_tasks / 2 > job->n_units);
    double min_bytes = left / (max_tasks / 2 - job->n_units);
    if (min_bytes < MIN_TASK_BYTES) min_bytes = MIN_TASK_BYTES;
    int64_t n = 0;
    for (int i = 0; i < job->n_units; i++) {
        double row_bytes = job->units[i].row_bytes ? (double)job->units[i].row_bytes : 1;
        for (int64_t r = begin[i]; r < end[i];) {
            double want = left / ((double)TASK_SHARE * threads);
            if (want < min_bytes) want = min_bytes;
            int64_t rows = ((int64_t)(want / row_bytes) + NUMA_ROW_ALIGN - 1) / NUMA_ROW_ALIGN * NUMA_ROW_ALIGN;
            if (rows < NUMA_ROW_ALIGN) rows = NUMA_ROW_ALIGN;
            if (end[i] - r - rows < rows / 2) rows = end[i] - r; /* no sliver left behind */
            assert(n < max_tasks); /* min_bytes bounds the count */
            job->tasks[job->n_tasks + n++] = (matmul_range){i, r, r + rows};
            left -= (double)rows * row_bytes;
            r += rows;
        }
    }
    return n;
}

/* The counts only: every part, unit and task is written whole before it is read, and the
 * task table (12 KB) would otherwise be cleared for every pass of every token. */
static void matmul_job_init(matmul_job *job, grok_context *ctx) {
    job->ctx = ctx;
    job->n_parts = job->n_units = job->n_tasks = 0;
}

static matmul_part *job_part(matmul_job *job, const activation *a, const weight_matrix *w, const uint8_t *data,
                             float *y) {
    assert(job->n_units <= MATMUL_MAX_UNITS); /* the callers' unit counts are fixed (q/k/v; MLP + experts) */
    matmul_part *p = &job->parts[job->n_parts++];
    *p = (matmul_part){.w = w, .data = data ? data : w->data, .y = y, .act = a};
    return p;
}

/* y = W x */
static void matmul_job_add(matmul_job *job, const activation *a, const weight_matrix *w, const uint8_t *data,
                           float *y) {
    job->units[job->n_units++] = (matmul_unit){job->n_parts, 1, w->row_bytes};
    job_part(job, a, w, data, y);
}

/* y_gate = GELU(W_gate x) * (W_up x); y_up is the up projection's scratch */
static void matmul_job_add_gated(matmul_job *job, const activation *a, const weight_matrix *gate,
                                 const uint8_t *gate_data, float *y_gate, const weight_matrix *up,
                                 const uint8_t *up_data, float *y_up) {
    job->units[job->n_units++] = (matmul_unit){job->n_parts, 2, gate->row_bytes + up->row_bytes};
    job_part(job, a, gate, gate_data, y_gate);
    job_part(job, a, up, up_data, y_up);
}

/* Each distinct activation gets a slot of quantized buffers (slot 0 holds a batch, the others
 * one row), then the units' rows are cut into tasks per NUMA group and run in one pass. */
static void matmul_job_run(matmul_job *job) {
    grok_context *ctx = job->ctx;
    const activation *slots[2 * MATMUL_MAX_UNITS];
    int n_slots = 0;
    for (int i = 0; i < job->n_parts; i++) {
        matmul_part *p = &job->parts[i];
        const activation *a = p->act;
        int slot = 0;
        while (slot < n_slots && slots[slot]->id != a->id) slot++;
        if (slot == n_slots) slots[n_slots++] = a;
        assert(slot < MATMUL_MAX_UNITS && (slot == 0 || a->n == 1)); /* slots 1.. hold one row */
        p->kernels = simd_type_kernels_get(ctx->kernels, p->w->type);
        if (p->kernels && a->cols % p->kernels->block) p->kernels = NULL;
        p->by_gemm = a->n > 1 && gemm_takes(ctx->gemm, p->w->type);
        if (p->by_gemm) gemm_prepare(ctx->gemm, p->w->type, a->x, a->n, a->cols, a->id);
        else if (p->kernels) p->x = activation_as(ctx, a, slot, p->kernels->act_type, &p->x_col_bytes);
    }
    int64_t group_tasks[POOL_MAX_GROUPS];
    for (int g = 0; g < ctx->n_groups; g++) {
        group_tasks[g] = plan_group_tasks(job, g, thread_pool_group_size(ctx->pool, g), MATMUL_MAX_TASKS / ctx->n_groups);
        job->n_tasks += (int)group_tasks[g];
    }
    thread_pool_run_groups(ctx->pool, matmul_task, job, group_tasks);
}

static void matmul(grok_context *ctx, const weight_matrix *w, const uint8_t *data, const activation *a, float *y) {
    matmul_job job;
    matmul_job_init(&job, ctx);
    matmul_job_add(&job, a, w, data, y);
    matmul_job_run(&job);
}

/* ---- KV cache ------------------------------------------------------------------------------ */

/* Keys per attention segment (see attention below); the caches hold whole segments. */
#define ATTN_SEGMENT 256
/* Keys per transposed K tile (see kv_head_bytes); a segment holds whole tiles. */
#define ATTN_KEY_TILE 32
_Static_assert(ATTN_SEGMENT % ATTN_KEY_TILE == 0, "attn_segment starts its tiles at a segment's first key");

static uint32_t kv_simd_type(kv_cache_type t) {
    return t == KV_F32 ? SIMD_TYPE_F32 : t == KV_BF16 ? SIMD_TYPE_BF16 : SIMD_TYPE_F16;
}

static void kv_put(const grok_context *ctx, uint8_t *dst, float value) {
    switch (ctx->kv_type) {
    case KV_F32: memcpy(dst, &value, sizeof value); break;
    case KV_F16: { g2_half h = g2_f32_to_half(value); memcpy(dst, &h, 2); break; }
    case KV_BF16: { uint16_t b = g2_f32_to_bf16(value); memcpy(dst, &b, 2); break; }
    }
}

static size_t kv_dim(const grok_context *ctx) {
    return (size_t)ctx->model->hp.n_head_kv * ctx->model->hp.head_dim;
}

/* The slab of one (layer, kv head), n_ctx rounded up to whole segments. V: one row of head_dim
 * per position. K: transposed within tiles of ATTN_KEY_TILE positions (head_dim rows of 32), so
 * a tile's scores are x times W with the queries as x (simd_xw_fn: no horizontal sums), and the
 * outputs the same with the probabilities as x and V as W. Both read their tiles front to back,
 * and the cache fills its pages in order as the context grows. */
static size_t kv_head_bytes(const grok_context *ctx) {
    return (size_t)ctx->attn_max_segments * ATTN_SEGMENT * ctx->model->hp.head_dim * ctx->kv_elem;
}
static uint8_t *k_head(const grok_context *ctx, uint32_t layer, uint32_t head) {
    return ctx->k_cache + ((size_t)layer * ctx->model->hp.n_head_kv + head) * kv_head_bytes(ctx);
}
static uint8_t *v_head(const grok_context *ctx, uint32_t layer, uint32_t head) {
    return ctx->v_cache + ((size_t)layer * ctx->model->hp.n_head_kv + head) * kv_head_bytes(ctx);
}
/* Position pos's first element within a K slab (its element j is j * ATTN_KEY_TILE on). */
static size_t k_tile_offset(const grok_context *ctx, uint32_t pos) {
    return ((size_t)(pos / ATTN_KEY_TILE) * ctx->model->hp.head_dim * ATTN_KEY_TILE + pos % ATTN_KEY_TILE) *
           ctx->kv_elem;
}

static void kv_store(grok_context *ctx, uint32_t layer, uint32_t pos, const float *k, const float *v) {
    uint32_t hd = ctx->model->hp.head_dim;
    size_t e = ctx->kv_elem;
    for (uint32_t head = 0; head < ctx->model->hp.n_head_kv; head++) {
        uint8_t *kt = k_head(ctx, layer, head) + k_tile_offset(ctx, pos);
        uint8_t *vr = v_head(ctx, layer, head) + (size_t)pos * hd * e;
        const float *kh = k + (size_t)head * hd, *vh = v + (size_t)head * hd;
        for (uint32_t j = 0; j < hd; j++) {
            kv_put(ctx, kt + (size_t)j * ATTN_KEY_TILE * e, kh[j]);
            kv_put(ctx, vr + j * e, vh[j]);
        }
    }
}

/* ---- attention ----------------------------------------------------------------------------- */

/* NeoX rotate-half RoPE over the whole head: element i pairs with i + head_dim/2. The angles
 * are the same for the token's query and key heads, so each is computed once. */
static void rope(const grok_context *ctx, float *q, uint32_t n_q_heads, float *k, uint32_t n_k_heads, uint32_t pos) {
    uint32_t hd = ctx->model->hp.head_dim, half = hd / 2;
    for (uint32_t i = 0; i < half; i++) {
        double angle = (double)pos * ctx->inv_freq[i];
        float c = (float)cos(angle), s = (float)sin(angle);
        for (uint32_t h = 0; h < n_q_heads + n_k_heads; h++) {
            float *x = h < n_q_heads ? q + (size_t)h * hd : k + (size_t)(h - n_q_heads) * hd;
            float x0 = x[i], x1 = x[i + half];
            x[i] = x0 * c - x1 * s;
            x[i + half] = x1 * c + x0 * s;
        }
    }
}

/* Attention is blocked (flash-style). Per (kv head, block of query tokens) the cached keys go
 * by in segments of ATTN_SEGMENT: a segment's scores (soft-capped, tempered, causal) become
 * softmax numerators with the segment's own max, one matmul with the segment's values gives its
 * unnormalised output, and (max, sum, output) is merged into the row's running total (online
 * softmax across segments). Scratch is one segment whatever the context, and each K/V segment is
 * read once per block of ATTN_QUERY_ROWS query rows, not once per token. A decode token with
 * fewer kv heads than threads spreads its segments over the threads and merges them afterwards
 * with the same arithmetic in the same order: results never depend on the thread count. */
#define ATTN_QUERY_ROWS 64 /* query rows (tokens x the query heads of one kv head) per block */

/* A softmax over part of the keys, per query row: max, sum of e^(s - max), and the
 * unnormalised output sum_j e^(s_j - max) v_j ([rows][head_dim]). */
typedef struct {
    float *max, *sum, *out;
} attn_state;

static size_t attn_state_floats(size_t rows, size_t hd) { return rows * (hd + 2); }

static attn_state attn_state_at(float *p, size_t rows) { return (attn_state){p, p + rows, p + 2 * rows}; }

static void attn_state_reset(const attn_state *s, size_t rows, size_t hd) {
    for (size_t r = 0; r < rows; r++) s->max[r] = -INFINITY, s->sum[r] = 0;
    memset(s->out, 0, rows * hd * sizeof(float));
}

/* total (+)= part, where the two cover disjoint keys. A row that saw no key of part is left as is. */
static void attn_state_merge(const attn_state *total, const attn_state *part, size_t rows, size_t hd) {
    for (size_t r = 0; r < rows; r++) {
        if (part->max[r] == -INFINITY) continue;
        float m = total->max[r] > part->max[r] ? total->max[r] : part->max[r];
        float a = expf(total->max[r] - m), b = expf(part->max[r] - m); /* a = 0 for an empty total */
        total->max[r] = m;
        total->sum[r] = total->sum[r] * a + part->sum[r] * b;
        float *o = total->out + r * hd;
        const float *po = part->out + r * hd;
        for (size_t d = 0; d < hd; d++) o[d] = o[d] * a + po[d] * b;
    }
}

/* Query rows of one (kv head, token block): row r is token r / group's query head r % group.
 * The queries are stored pre-scaled (see attn_block_load), so q . k is the argument of tanh,
 * or with no cap the score before the temperature. */
typedef struct {
    const grok_context *ctx;
    const simd_type_kernels *cache; /* the KV cache's type times f32 */
    const uint8_t *keys, *values;   /* the kv head's slabs */
    float *q;                       /* [rows][hd] */
    uint32_t rows, group, first_pos; /* first_pos: the position of row 0's token */
    bool capped;
    float post_scale[ATTN_QUERY_ROWS]; /* per token: cap x temperature (or the temperature) */
} attn_block;

/* s = cap * tanh(q.k / sqrt(hd) / cap) * temperature: 1/sqrt(hd)/cap goes into the queries, the
 * rest into exp_sum's scale. The temperature: a query at position p > L sharpens by
 * log2(p) / log2(L), the reference's log2(p)/10 for Grok-2's L = 1024 (and no jump at p = L for
 * other L). Without a cap: q.k / sqrt(hd) * temperature. */
static void attn_block_load(attn_block *b, uint32_t first_token, uint32_t kv_head) {
    const grok_context *ctx = b->ctx;
    const grok_hparams *hp = &ctx->model->hp;
    uint32_t hd = hp->head_dim;
    float cap = hp->attn_softcap, scale = 1.0f / sqrtf((float)hd);
    b->capped = cap > 0;
    float pre = b->capped ? scale / cap : scale;
    for (uint32_t t = 0; t < b->rows / b->group; t++) {
        uint32_t pos = b->first_pos + t;
        float temperature = pos > hp->attn_temperature_len
                                ? (float)(log2((double)pos) / log2((double)hp->attn_temperature_len))
                                : 1.0f;
        b->post_scale[t] = b->capped ? cap * temperature : temperature;
        /* the group's query heads are adjacent in ctx->q */
        const float *q = ctx->q + ((size_t)(first_token + t) * hp->n_head + (size_t)kv_head * b->group) * hd;
        float *dst = b->q + (size_t)t * b->group * hd;
        for (size_t i = 0; i < (size_t)b->group * hd; i++) dst[i] = q[i] * pre;
    }
}

/* The keys [k0, k1) (at most ATTN_SEGMENT) into part; s: [rows][ATTN_SEGMENT] scratch. */
static void attn_segment(const attn_block *b, uint32_t k0, uint32_t k1, const attn_state *part, float *s) {
    const grok_context *ctx = b->ctx;
    size_t hd = ctx->model->hp.head_dim, e = ctx->kv_elem;
    uint32_t len = k1 - k0;
    /* s[r][j] = q_r . key_(k0 + j), a tile of keys at a time: each tile (head_dim rows of
     * ATTN_KEY_TILE positions) is W in x times W, the queries x. k0 is a segment's first key. */
    for (uint32_t t0 = k0; t0 < k1; t0 += ATTN_KEY_TILE) {
        uint32_t n = k1 - t0 < ATTN_KEY_TILE ? k1 - t0 : ATTN_KEY_TILE;
        b->cache->xw((int64_t)hd, n, b->keys + k_tile_offset(ctx, t0), ATTN_KEY_TILE * e, b->rows, b->q, hd,
                     s + (t0 - k0), ATTN_SEGMENT);
    }
    for (uint32_t r = 0; r < b->rows; r++) {
        uint32_t pos = b->first_pos + r / b->group;
        float *sr = s + (size_t)r * ATTN_SEGMENT;
        uint32_t seen = pos < k0 ? 0 : pos + 1 - k0 < len ? pos + 1 - k0 : len; /* causal */
        if (b->capped) ctx->kernels->tanh(sr, sr, seen);
        part->sum[r] = (float)ctx->kernels->exp_sum(sr, seen, b->post_scale[r / b->group], &part->max[r]);
        memset(sr + seen, 0, (len - seen) * sizeof(float)); /* later tokens' keys weigh 0 */
    }
    /* out[r] = sum_j s[r][j] value_(k0 + j): x times W, the weights x, the values' rows W */
    b->cache->xw(len, (int64_t)hd, b->values + (size_t)k0 * hd * e, hd * e, b->rows, s, ATTN_SEGMENT, part->out, hd);
}

/* out[t][head] = total's output / sum for each row, in the layout of ctx->attn. */
static void attn_finish(const grok_context *ctx, const attn_state *total, uint32_t rows, uint32_t first_token,
                        uint32_t kv_head) {
    const grok_hparams *hp = &ctx->model->hp;
    uint32_t hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    for (uint32_t r = 0; r < rows; r++) {
        float *out = ctx->attn + ((size_t)(first_token + r / group) * hp->n_head + kv_head * group + r % group) * hd;
        float inv = 1.0f / total->sum[r];
        for (uint32_t d = 0; d < hd; d++) out[d] = total->out[(size_t)r * hd + d] * inv;
    }
}

typedef struct {
    grok_context *ctx;
    uint32_t layer, n_past, n_tokens;
    uint32_t head_dim, group;        /* group: query heads per kv head */
    uint32_t block_tokens, n_blocks; /* query tokens per block, blocks in the batch */
    uint32_t n_segments;             /* of the last token's keys */
    bool split;                      /* one task per (kv head, segment), merged in a second pass */
    const simd_type_kernels *cache_kernels;
    int64_t group_first_task[POOL_MAX_GROUPS + 1];
    int64_t group_first_head[POOL_MAX_GROUPS], group_heads[POOL_MAX_GROUPS];
} attention_job;

/* The group's (kv head, unit) for a task: its heads' tasks are head-major. */
static uint32_t attention_task_head(const attention_job *job, int64_t task, int64_t units, int64_t *unit) {
    int g = 0;
    while (task >= job->group_first_task[g + 1]) g++;
    int64_t local = task - job->group_first_task[g];
    *unit = local % units;
    return (uint32_t)(job->group_first_head[g] + local / units);
}

/* This thread's scratch: the block's queries, one segment's scores, two states. */
static float *attention_scratch(const grok_context *ctx, int thread) {
    return ctx->thread_attn + (size_t)thread * ctx->attn_scratch_floats;
}

/* A split decode token's state for (kv head, segment): group rows. */
static attn_state attn_partial_state(const grok_context *ctx, uint32_t kv_head, uint32_t segment) {
    const grok_hparams *hp = &ctx->model->hp;
    size_t group = hp->n_head / hp->n_head_kv;
    size_t slot = (size_t)kv_head * ctx->attn_max_segments + segment;
    return attn_state_at(ctx->attn_partial + slot * attn_state_floats(group, hp->head_dim), group);
}

static void attention_task(void *p, int64_t task, int thread) {
    const attention_job *job = p;
    grok_context *ctx = job->ctx;
    uint32_t hd = job->head_dim, group = job->group;
    int64_t unit;
    uint32_t kv_head = attention_task_head(job, task, job->split ? job->n_segments : job->n_blocks, &unit);
    uint32_t t0 = job->split ? 0 : (uint32_t)unit * job->block_tokens;
    uint32_t t1 = t0 + job->block_tokens < job->n_tokens ? t0 + job->block_tokens : job->n_tokens;
    uint32_t rows = (t1 - t0) * group, n_keys = job->n_past + t1; /* the block's last token sees n_keys */
    float *q = attention_scratch(ctx, thread), *s = q + (size_t)ctx->attn_block_rows * hd;
    float *states = s + (size_t)ctx->attn_block_rows * ATTN_SEGMENT;
    attn_block b = {ctx, job->cache_kernels, k_head(ctx, job->layer, kv_head), v_head(ctx, job->layer, kv_head), q,
                    rows, group, job->n_past + t0, false, {0}};
    attn_block_load(&b, t0, kv_head);
    if (job->split) { /* this segment's state, for attention_merge_task */
        uint32_t k0 = (uint32_t)unit * ATTN_SEGMENT, k1 = k0 + ATTN_SEGMENT < n_keys ? k0 + ATTN_SEGMENT : n_keys;
        attn_state part = attn_partial_state(ctx, kv_head, (uint32_t)unit);
        attn_segment(&b, k0, k1, &part, s);
        return;
    }
    attn_state part = attn_state_at(states, rows), total = attn_state_at(states + attn_state_floats(rows, hd), rows);
    attn_state_reset(&total, rows, hd);
    for (uint32_t k0 = 0; k0 < n_keys; k0 += ATTN_SEGMENT) {
        attn_segment(&b, k0, k0 + ATTN_SEGMENT < n_keys ? k0 + ATTN_SEGMENT : n_keys, &part, s);
        attn_state_merge(&total, &part, rows, hd);
    }
    attn_finish(ctx, &total, rows, t0, kv_head);
}

/* A split decode token: each kv head's segments merged in order, as attention_task would. */
static void attention_merge_task(void *p, int64_t task, int thread) {
    const attention_job *job = p;
    int64_t one_unit;
    uint32_t kv_head = attention_task_head(job, task, 1, &one_unit), hd = job->head_dim, group = job->group;
    attn_state total = attn_state_at(attention_scratch(job->ctx, thread), group);
    attn_state_reset(&total, group, hd);
    for (uint32_t seg = 0; seg < job->n_segments; seg++) {
        attn_state part = attn_partial_state(job->ctx, kv_head, seg);
        attn_state_merge(&total, &part, group, hd);
    }
    attn_finish(job->ctx, &total, group, 0, kv_head);
}

bool grok_attention_splits(uint32_t n_tokens, uint32_t n_keys, uint32_t n_head_kv, int threads) {
    return n_tokens == 1 && n_keys > ATTN_SEGMENT && (int)n_head_kv < threads;
}

/* Each NUMA group's kv heads times `units` tasks per head. */
static void attention_plan(attention_job *job, int64_t units, int64_t *group_tasks) {
    grok_context *ctx = job->ctx;
    for (int g = 0; g < ctx->n_groups; g++) {
        int64_t h0, h1;
        numa_split(ctx->model->hp.n_head_kv, g, ctx->n_groups, 1, &h0, &h1);
        job->group_first_head[g] = h0;
        job->group_heads[g] = h1 - h0;
        group_tasks[g] = (h1 - h0) * units;
        job->group_first_task[g + 1] = job->group_first_task[g] + group_tasks[g];
    }
}

static void attention(grok_context *ctx, uint32_t layer, const grok_layer *L, uint32_t n, uint32_t n_past) {
    const grok_hparams *hp = &ctx->model->hp;
    size_t q_dim = (size_t)hp->n_head * hp->head_dim, kvd = kv_dim(ctx);
    activation in = activation_of(ctx, ctx->normed, n, hp->n_embd);
    matmul_job qkv;
    matmul_job_init(&qkv, ctx);
    matmul_job_add(&qkv, &in, &L->q, NULL, ctx->q);
    matmul_job_add(&qkv, &in, &L->k, NULL, ctx->k);
    matmul_job_add(&qkv, &in, &L->v, NULL, ctx->v);
    matmul_job_run(&qkv);
    for (uint32_t t = 0; t < n; t++) {
        rope(ctx, ctx->q + t * q_dim, hp->n_head, ctx->k + t * kvd, hp->n_head_kv, n_past + t);
        kv_store(ctx, layer, n_past + t, ctx->k + t * kvd, ctx->v + t * kvd);
    }
    uint32_t group = hp->n_head / hp->n_head_kv;
    attention_job job = {.ctx = ctx, .layer = layer, .n_past = n_past, .n_tokens = n, .head_dim = hp->head_dim,
                         .group = group,
                         .cache_kernels = simd_type_kernels_get(ctx->kernels, kv_simd_type(ctx->kv_type))};
    job.block_tokens = ctx->attn_block_rows / group;
    job.n_blocks = (n + job.block_tokens - 1) / job.block_tokens;
    job.n_segments = (n_past + n + ATTN_SEGMENT - 1) / ATTN_SEGMENT;
    job.split = grok_attention_splits(n, n_past + n, hp->n_head_kv, thread_pool_size(ctx->pool));
    int64_t group_tasks[POOL_MAX_GROUPS];
    attention_plan(&job, job.split ? job.n_segments : job.n_blocks, group_tasks);
    thread_pool_run_groups(ctx->pool, attention_task, &job, group_tasks);
    if (job.split) {
        attention_plan(&job, 1, group_tasks);
        thread_pool_run_groups(ctx->pool, attention_merge_task, &job, group_tasks);
    }
    activation heads = activation_of(ctx, ctx->attn, n, (int64_t)q_dim);
    matmul(ctx, &L->o, NULL, &heads, ctx->proj);
}

/* ---- MLPs ---------------------------------------------------------------------------------- */

/* down(GELU(gate x) * up x) for the n rows of x; gate/up/down may be one expert's slabs. */
static void gated_mlp(grok_context *ctx, const weight_matrix *gate, const uint8_t *gate_data, const weight_matrix *up,
                      const uint8_t *up_data, const weight_matrix *down, const uint8_t *down_data, const float *x,
                      uint32_t n, float *out) {
    activation in = activation_of(ctx, x, n, gate->cols);
    matmul_job job;
    matmul_job_init(&job, ctx);
    matmul_job_add_gated(&job, &in, gate, gate_data, ctx->ff_a, up, up_data, ctx->ff_b);
    matmul_job_run(&job);
    activation hidden = activation_of(ctx, ctx->ff_a, n, gate->rows);
    matmul(ctx, down, down_data, &hidden, out);
}

static void advise_task(void *p, int64_t group, int thread) {
    grok_context *ctx = p;
    expert_stream_advise_share(ctx->experts, (int)group);
}

/* Sharded: every node advises its own rows of the slabs just chosen or guessed (one task each). */
static void advise_by_node(grok_context *ctx) {
    if (!expert_stream_advice_pending(ctx->experts)) return;
    int64_t one_each[POOL_MAX_GROUPS];
    for (int g = 0; g < ctx->n_groups; g++) one_each[g] = 1;
    double t0 = cli_now_seconds();
    thread_pool_run_groups(ctx->pool, advise_task, ctx, one_each);
    expert_stream_advised(ctx->experts, cli_now_seconds() - t0);
}

/* --prefetch next: the next layer's router applied now, to guess its experts a layer ahead. Its
 * true input is RMSNorm_pre_moe(h) after the next layer's attention; the guess uses the residual
 * stream h as it is now (after this layer's attention, before this layer's MLPs are added),
 * normalised with the next layer's pre-MoE norm: the closest state at hand, as the residual
 * connections change h by small steps. Soft-cap and softmax keep the order, so top-k of the raw
 * logits is the guess. expert_in and router are free at this point (scratch of moe_experts,
 * the routing is copied out). */
static void guess_next_layer(grok_context *ctx, uint32_t next, uint32_t n) {
    const grok_hparams *hp = &ctx->model->hp;
    const grok_layer *N = &ctx->model->layers[next];
    uint32_t d = hp->n_embd;
    for (uint32_t t = 0; t < n; t++)
        ctx->kernels->rmsnorm(ctx->h + (size_t)t * d, N->ffn_norm, ctx->expert_in + (size_t)t * d, d, hp->rms_eps);
    activation in = activation_of(ctx, ctx->expert_in, n, d);
    matmul(ctx, &N->router, NULL, &in, ctx->router);
    for (uint32_t t = 0; t < n; t++)
        expert_stream_guess(ctx->experts, next, t,
                            expert_top_k(ctx->router + (size_t)t * hp->n_expert, hp->n_expert, hp->n_expert_used));
    expert_stream_guessed(ctx->experts, next);
    advise_by_node(ctx);
}

/* Router: soft-cap, softmax over all experts, top-k (ties to the lower index), weights are the
 * full-softmax probabilities, not renormalised. The chosen experts' slabs are advised in before
 * the dense MLP runs, so their reads overlap its compute. */
static void moe_route(grok_context *ctx, uint32_t layer, const grok_layer *L, uint32_t n) {
    const grok_hparams *hp = &ctx->model->hp;
    uint32_t n_expert = hp->n_expert, d = hp->n_embd;
    activation in = activation_of(ctx, ctx->normed, n, d);
    matmul(ctx, &L->router, NULL, &in, ctx->router);
    memset(ctx->expert_fill, 0, n_expert * sizeof *ctx->expert_fill);
    expert_stream_begin(ctx->experts, layer, n);
    for (uint32_t t = 0; t < n; t++) {
        float *r = ctx->router + (size_t)t * n_expert;
        for (uint32_t e = 0; e < n_expert; e++) r[e] = softcap(r[e], hp->router_softcap);
        ctx->kernels->softmax(r, n_expert);
        uint64_t taken = expert_top_k(r, n_expert, hp->n_expert_used); /* n_expert <= 64: context creation */
        expert_stream_routed(ctx->experts, layer, t, taken);
        for (uint32_t e = 0; e < n_expert; e++) {
            if (!(taken >> e & 1)) continue;
            uint32_t slot = ctx->expert_fill[e]++;
            ctx->expert_tokens[(size_t)e * ctx->max_batch + slot] = (int32_t)t;
            ctx->expert_gates[(size_t)e * ctx->max_batch + slot] = r[e];
        }
    }
    expert_stream_chosen(ctx->experts, layer);
    advise_by_node(ctx);
    if (expert_stream_wants_guesses(ctx->experts, layer)) guess_next_layer(ctx, layer + 1, n);
}

/* Each chosen expert on its tokens, weighted by its gate. */
static void moe_experts(grok_context *ctx, const grok_layer *L, uint32_t n) {
    const grok_hparams *hp = &ctx->model->hp;
    uint32_t n_expert = hp->n_expert, d = hp->n_embd;
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

/* One token: the dense MLP and every chosen expert in two passes of the pool, all gate/up pairs
 * (GELU fused) in the first, all down projections in the second; the dense unit goes first so
 * the advised expert slabs have its time to arrive. The same arithmetic as gated_mlp +
 * moe_experts, experts added in index order. */
static void mlp_one_token(grok_context *ctx, const grok_layer *L) {
    const grok_hparams *hp = &ctx->model->hp;
    uint32_t d = hp->n_embd, ff = hp->n_ff_exp;
    uint32_t chosen[MATMUL_MAX_UNITS - 1];
    int n_chosen = 0;
    for (uint32_t e = 0; e < hp->n_expert; e++)
        if (ctx->expert_fill[e]) chosen[n_chosen++] = e;
    activation in = activation_of(ctx, ctx->normed, 1, d), hidden[MATMUL_MAX_UNITS];
    matmul_job job;
    matmul_job_init(&job, ctx);
    matmul_job_add_gated(&job, &in, &L->gate, NULL, ctx->ff_a, &L->up, NULL, ctx->ff_b);
    for (int k = 0; k < n_chosen; k++) {
        float *y = ctx->expert_ff + (size_t)k * 2 * ff;
        matmul_job_add_gated(&job, &in, &L->gate_exps, L->gate_exps.data + chosen[k] * L->gate_exps_slab, y,
                             &L->up_exps, L->up_exps.data + chosen[k] * L->up_exps_slab, y + ff);
    }
    matmul_job_run(&job);
    matmul_job_init(&job, ctx);
    hidden[0] = activation_of(ctx, ctx->ff_a, 1, L->gate.rows);
    matmul_job_add(&job, &hidden[0], &L->down, NULL, ctx->dense);
    for (int k = 0; k < n_chosen; k++) {
        hidden[k + 1] = activation_of(ctx, ctx->expert_ff + (size_t)k * 2 * ff, 1, ff);
        matmul_job_add(&job, &hidden[k + 1], &L->down_exps, L->down_exps.data + chosen[k] * L->down_exps_slab,
                       ctx->expert_down + (size_t)k * d);
    }
    matmul_job_run(&job);
    memset(ctx->moe, 0, d * sizeof(float));
    for (int k = 0; k < n_chosen; k++) {
        float gate = ctx->expert_gates[(size_t)chosen[k] * ctx->max_batch];
        const float *src = ctx->expert_down + (size_t)k * d;
        for (uint32_t j = 0; j < d; j++) ctx->moe[j] += gate * src[j];
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
            ctx->kernels->rmsnorm(ctx->h + (size_t)t * d, L->attn_norm, ctx->normed + (size_t)t * d, d, hp->rms_eps);
        attention(ctx, l, L, n, n_past);
        for (uint32_t t = 0; t < n; t++) {
            float *h = ctx->h + (size_t)t * d, *a = ctx->proj + (size_t)t * d;
            ctx->kernels->rmsnorm(a, L->attn_output_norm, a, d, hp->rms_eps);
            for (uint32_t i = 0; i < d; i++) h[i] += a[i];
        }
        /* h += RMSNorm_post_moe((DenseMLP(y) + MoE(y)) / sqrt(2)), y = RMSNorm_pre_moe(h) */
        for (uint32_t t = 0; t < n; t++)
            ctx->kernels->rmsnorm(ctx->h + (size_t)t * d, L->ffn_norm, ctx->normed + (size_t)t * d, d, hp->rms_eps);
        moe_route(ctx, l, L, n);
        if (n == 1 && hp->n_expert_used < MATMUL_MAX_UNITS && !ctx->mlp_per_expert) {
            mlp_one_token(ctx, L);
        } else {
            gated_mlp(ctx, &L->gate, NULL, &L->up, NULL, &L->down, NULL, ctx->normed, n, ctx->dense);
            moe_experts(ctx, L, n);
        }
        for (uint32_t t = 0; t < n; t++) {
            float *h = ctx->h + (size_t)t * d, *f = ctx->dense + (size_t)t * d;
            const float *e = ctx->moe + (size_t)t * d;
            for (uint32_t i = 0; i < d; i++) f[i] = (f[i] + e[i]) * (float)M_SQRT1_2;
            ctx->kernels->rmsnorm(f, L->post_ffw_norm, f, d, hp->rms_eps);
            for (uint32_t i = 0; i < d; i++) h[i] += f[i];
        }
    }
    if (!logits) return; /* an earlier chunk of a prompt: only the KV cache was wanted */
    /* logits = final_cap * tanh(logit_scale * (RMSNorm_final(h) @ lm_head^T) / final_cap) */
    uint32_t first = all ? 0 : n - 1, count = n - first;
    for (uint32_t t = first; t < n; t++)
        ctx->kernels->rmsnorm(ctx->h + (size_t)t * d, m->output_norm, ctx->normed + (size_t)(t - first) * d, d, hp->rms_eps);
    activation final = activation_of(ctx, ctx->normed, count, d);
    matmul(ctx, &m->output, NULL, &final, logits);
    /* the cap over the whole vocabulary in the vector tanh: libm's tanhf took ~0.5% of a token */
    size_t total = (size_t)count * hp->n_vocab;
    float cap = hp->final_softcap;
    if (cap > 0) {
        for (size_t i = 0; i < total; i++) logits[i] *= hp->logit_scale / cap;
        ctx->kernels->tanh(logits, logits, (int64_t)total);
        for (size_t i = 0; i < total; i++) logits[i] *= cap;
    } else {
        for (size_t i = 0; i < total; i++) logits[i] *= hp->logit_scale;
    }
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

void grok_context_use_kernels(grok_context *ctx, const simd_kernels *k) { ctx->kernels = k ? k : simd_kernels_get(); }

void grok_context_weights(const grok_context *ctx, const void **start, size_t *bytes) {
    if (ctx->copy_memory) {
        *start = ctx->copy_memory, *bytes = ctx->copy_size;
    } else {
        *start = gguf_file_bytes(ctx->model->file), *bytes = gguf_file_size(ctx->model->file);
    }
}

const grok_expert_stats *grok_context_expert_stats(const grok_context *ctx) { return expert_stream_stats(ctx->experts); }

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

/* The pool for the NUMA mode: shard gives every node a group of threads pinned to its CPUs;
 * interleave spreads the pages this process touches over all nodes; off is one plain group. */
static int make_pool(grok_context *ctx, const grok_context_params *p, g2_error *err) {
    const numa_topology *t = &ctx->topology;
    if (numa_topology_detect(&ctx->topology, err)) return -1;
    numa_balancing_warn(t);
    ctx->numa = p->numa != NUMA_AUTO ? p->numa : t->n_nodes > 1 ? NUMA_SHARD : NUMA_OFF;
    ctx->n_groups = 1;
    if (ctx->numa != NUMA_SHARD) {
        if (p->threads_per_node) return g2_fail(err, "--threads-per-node is for --numa shard");
        if (ctx->numa == NUMA_INTERLEAVE) numa_interleave_all(t);
        ctx->pool = thread_pool_new(p->n_threads);
        return ctx->pool ? 0 : g2_fail(err, "cannot start the threads");
    }
    if (p->threads_per_node && p->n_threads)
        return g2_fail(err, "give -t or --threads-per-node, not both");
    if (p->n_threads && p->n_threads < t->n_nodes)
        return g2_fail(err, "-t %d is fewer threads than the %d NUMA nodes to shard over (or use --numa off)",
                       p->n_threads, t->n_nodes);
    int threads[POOL_MAX_GROUPS];
    for (int g = 0; g < t->n_nodes; g++) {
        int64_t b, e;
        numa_split(p->n_threads, g, t->n_nodes, 1, &b, &e);
        threads[g] = p->threads_per_node ? (int)p->threads_per_node : p->n_threads ? (int)(e - b) : t->n_cpus[g];
    }
    ctx->n_groups = t->n_nodes;
    ctx->pool = thread_pool_new_groups(t->n_nodes, threads, t->cpus);
    return ctx->pool ? 0 : g2_fail(err, "cannot start the threads of %d NUMA groups", t->n_nodes);
}

/* The KV caches: untouched pages from the kernel, each (layer, head) slab bound to the node
 * that computes that head's attention. In 2 MiB pages where the kernel has them: every token
 * reads each slab's filled part, and on 4 KiB pages that walk missed the TLB once per page
 * (decode attention at depth 2048 took 1.7 times as long). The slabs fill front to back, so of the positions
 * not yet reached only the 2 MiB page at each slab's front is touched. */
static uint8_t *kv_cache_new(const grok_context *ctx, size_t bytes) {
    void *cache = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (cache == MAP_FAILED) return NULL;
    madvise(cache, bytes, MADV_HUGEPAGE); /* advice: without THP the cache works as before */
    if (ctx->numa == NUMA_SHARD) {
        const grok_hparams *hp = &ctx->model->hp;
        size_t slab = bytes / ((size_t)hp->n_layer * hp->n_head_kv);
        for (int g = 0; g < ctx->n_groups; g++) {
            int64_t h0, h1;
            numa_split(hp->n_head_kv, g, ctx->n_groups, 1, &h0, &h1);
            for (uint32_t l = 0; l < hp->n_layer && h1 > h0; l++)
                numa_place_range(&ctx->topology, g, (uint8_t *)cache + ((size_t)l * hp->n_head_kv + (size_t)h0) * slab,
                                 (size_t)(h1 - h0) * slab);
        }
    }
    return cache;
}

void grok_context_numa_report(const grok_context *ctx, bool placement, char *buf, size_t cap) {
    int threads[POOL_MAX_GROUPS];
    for (int g = 0; g < ctx->n_groups; g++) threads[g] = thread_pool_group_size(ctx->pool, g);
    numa_describe(&ctx->topology, ctx->numa, ctx->numa == NUMA_SHARD ? threads : NULL, buf, cap);
    if (!placement || ctx->numa != NUMA_SHARD) return;
    numa_share_placement shares[POOL_MAX_GROUPS];
    numa_model_placement(ctx->model, &ctx->topology, shares);
    size_t n = strlen(buf);
    for (int g = 0; g < ctx->n_groups && n < cap; g++) {
        const numa_share_placement *s = &shares[g];
        double pages = s->sampled ? (double)s->sampled : 1;
        n += (size_t)snprintf(buf + n, cap - n,
                              "\n  node %d share: %.2f GiB of weights; sampled pages: %.0f%% local, %.0f%% remote, "
                              "%.0f%% not in the page cache%s",
                              numa_node_label(&ctx->topology, g), (double)s->bytes / (1u << 30), 100 * s->local / pages,
                              100 * s->remote / pages, 100 * s->not_cached / pages,
                              s->unknown ? " (some pages unknown)" : "");
    }
}

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
    ctx->max_batch = params->max_batch ? params->max_batch : 512;
    ctx->kv_type = params->kv_type;
    ctx->mlp_per_expert = params->mlp_per_expert;
    ctx->kv_elem = ctx->kv_type == KV_F32 ? 4 : 2;
    if (make_pool(ctx, params, err) ||
        (params->no_mmap && numa_copy_weights(m, ctx->pool, ctx->numa == NUMA_SHARD, &ctx->weights_copy,
                                              &ctx->copy_layers, &ctx->copy_memory, &ctx->copy_size, err))) {
        grok_context_free(ctx);
        return -1;
    }
    if (params->no_mmap) ctx->model = &ctx->weights_copy;
    size_t B = ctx->max_batch, d = hp->n_embd;
    size_t q_dim = (size_t)hp->n_head * hp->head_dim, kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    size_t ff = max_size(hp->n_ff, hp->n_ff_exp);
    ctx->attn_max_segments = (ctx->n_ctx + ATTN_SEGMENT - 1) / ATTN_SEGMENT;
    size_t kv_bytes = (size_t)hp->n_layer * hp->n_head_kv * kv_head_bytes(ctx);
    ctx->kv_bytes = kv_bytes;
    ctx->k_cache = kv_cache_new(ctx, kv_bytes);
    ctx->v_cache = kv_cache_new(ctx, kv_bytes);
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
    ctx->kernels = simd_kernels_get();
    if (expert_stream_new(&ctx->experts, ctx->model, params, ctx->max_batch, err)) {
        grok_context_free(ctx);
        return -1;
    }
    if (ctx->numa == NUMA_SHARD) expert_stream_share_advice(ctx->experts, ctx->n_groups);
    size_t q8_0_row = (ctx->row_width / QK8_0 + 1) * sizeof(block_q8_0), q8_k_row = (ctx->row_width / QK_K + 1) * sizeof(block_q8_k);
    ctx->act_q8_0[0] = malloc((B + MATMUL_MAX_UNITS - 1) * q8_0_row);
    ctx->act_q8_k[0] = malloc((B + MATMUL_MAX_UNITS - 1) * q8_k_row);
    for (int slot = 1; slot < MATMUL_MAX_UNITS && ctx->act_q8_0[0] && ctx->act_q8_k[0]; slot++) {
        ctx->act_q8_0[slot] = ctx->act_q8_0[0] + (B + slot - 1) * q8_0_row;
        ctx->act_q8_k[slot] = ctx->act_q8_k[0] + (B + slot - 1) * q8_k_row;
    }
    ctx->expert_ff = malloc((size_t)hp->n_expert_used * 2 * hp->n_ff_exp * sizeof(float));
    ctx->expert_down = malloc((size_t)hp->n_expert_used * d * sizeof(float));
    int threads = ctx->pool ? thread_pool_size(ctx->pool) : 1;
    ctx->thread_row = malloc((size_t)threads * ctx->row_width * sizeof(float));
    size_t group = hp->n_head / hp->n_head_kv, rows = group * (group < ATTN_QUERY_ROWS ? ATTN_QUERY_ROWS / group : 1);
    ctx->attn_block_rows = (uint32_t)rows;
    /* each thread's queries and scores on their own 64-byte lines: no line shared by two
     * threads, no 64-byte store of scores split across two lines */
    size_t scratch = rows * (hp->head_dim + ATTN_SEGMENT) + 2 * attn_state_floats(rows, hp->head_dim);
    ctx->attn_scratch_floats = (scratch + 15) / 16 * 16;
    ctx->thread_attn = aligned_alloc(64, (size_t)threads * ctx->attn_scratch_floats * sizeof(float));
    ctx->attn_partial = malloc((size_t)hp->n_head_kv * ctx->attn_max_segments * attn_state_floats(group, hp->head_dim) *
                               sizeof(float));
    g2_error gemm_err;
    if (ctx->pool &&
        gemm_new(&ctx->gemm, params->gemm, ctx->kernels, threads, ctx->max_batch, (int64_t)ctx->row_width, &gemm_err)) {
        grok_context_free(ctx);
        return g2_fail(err, "%s", gemm_err.msg);
    }
    if (!ctx->pool || !ctx->k_cache || !ctx->v_cache || !ctx->inv_freq || !ctx->h || !ctx->normed || !ctx->q ||
        !ctx->k || !ctx->v || !ctx->attn || !ctx->proj || !ctx->ff_a || !ctx->ff_b || !ctx->dense || !ctx->moe ||
        !ctx->router || !ctx->expert_in || !ctx->expert_out || !ctx->expert_tokens || !ctx->expert_gates ||
        !ctx->expert_fill || !ctx->thread_row || !ctx->thread_attn || !ctx->attn_partial || !ctx->act_q8_0[0] || !ctx->act_q8_k[0] ||
        !ctx->expert_ff || !ctx->expert_down) {
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
    expert_stream_free(ctx->experts);
    gemm_free(ctx->gemm);
    if (ctx->k_cache) munmap(ctx->k_cache, ctx->kv_bytes);
    if (ctx->v_cache) munmap(ctx->v_cache, ctx->kv_bytes);
    if (ctx->copy_memory) munmap(ctx->copy_memory, ctx->copy_size);
    free(ctx->copy_layers);
    void *buffers[] = {ctx->inv_freq, ctx->h, ctx->normed, ctx->q, ctx->k, ctx->v,
                       ctx->attn, ctx->proj, ctx->ff_a, ctx->ff_b, ctx->dense, ctx->moe, ctx->router,
                       ctx->expert_in, ctx->expert_out, ctx->expert_tokens, ctx->expert_gates, ctx->expert_fill,
                       ctx->thread_row, ctx->thread_attn, ctx->attn_partial, ctx->act_q8_0[0], ctx->act_q8_k[0],
                       ctx->expert_ff, ctx->expert_down};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) free(buffers[i]);
    free(ctx);
}

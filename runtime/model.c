/* Model binding: a GGUF file (arch "grok") to hyperparameters and weight views. Everything is
 * checked here, at load, so that a file whose tensors do not match its metadata never starts
 * running. Files from llama.cpp's converter are accepted and run with the reference semantics
 * (grok2-model.md section 5 lists where its graph differs). */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime.h"

#define REFERENCE_ROUTER_SOFTCAP 30.0f /* Grok-2's value; llama.cpp's files lack the key */
#define REFERENCE_TEMPERATURE_LEN 1024u

static int need_u32(const gguf_file *f, const char *key, uint32_t *out, g2_error *err) {
    if (gguf_get_u32(f, key, out, err)) return -1;
    if (*out == 0) return g2_fail(err, "%s: key %s must be positive", gguf_path(f), key);
    return 0;
}

static int need_f32(const gguf_file *f, const char *key, float *out, g2_error *err) {
    if (gguf_get_f32(f, key, out, err)) return -1;
    if (!isfinite(*out)) return g2_fail(err, "%s: key %s is not a finite number", gguf_path(f), key);
    return 0;
}

static bool has_key(const gguf_file *f, const char *key) { return gguf_find_key(f, key) >= 0; }

static bool str_is(const gguf_str s, const char *text) {
    return s.len == strlen(text) && !memcmp(s.data, text, s.len);
}

static int read_hparams(grok_model *m, g2_error *err) {
    const gguf_file *f = m->file;
    grok_hparams *hp = &m->hp;
    gguf_str arch;
    if (gguf_get_str(f, "general.architecture", &arch, err)) return -1;
    if (!str_is(arch, "grok"))
        return g2_fail(err, "%s: architecture is '%.*s', expected 'grok'", gguf_path(f), (int)arch.len, arch.data);
    if (need_u32(f, "grok.block_count", &hp->n_layer, err) || need_u32(f, "grok.embedding_length", &hp->n_embd, err) ||
        need_u32(f, "grok.attention.head_count", &hp->n_head, err) ||
        need_u32(f, "grok.attention.head_count_kv", &hp->n_head_kv, err) ||
        need_u32(f, "grok.feed_forward_length", &hp->n_ff, err) ||
        need_u32(f, "grok.expert_feed_forward_length", &hp->n_ff_exp, err) ||
        need_u32(f, "grok.expert_count", &hp->n_expert, err) ||
        need_u32(f, "grok.expert_used_count", &hp->n_expert_used, err) ||
        need_u32(f, "grok.context_length", &hp->n_ctx_train, err))
        return -1;
    if (has_key(f, "grok.attention.key_length")) {
        if (need_u32(f, "grok.attention.key_length", &hp->head_dim, err)) return -1;
    } else {
        hp->head_dim = hp->n_embd / hp->n_head;
    }
    uint32_t value_length = hp->head_dim;
    if (has_key(f, "grok.attention.value_length") && need_u32(f, "grok.attention.value_length", &value_length, err))
        return -1;
    if (value_length != hp->head_dim)
        return g2_fail(err, "%s: value_length %u differs from key_length %u (Grok-2 has one head size)",
                       gguf_path(f), value_length, hp->head_dim);
    if (hp->n_head % hp->n_head_kv)
        return g2_fail(err, "%s: head_count %u is not a multiple of head_count_kv %u", gguf_path(f), hp->n_head,
                       hp->n_head_kv);
    if (hp->head_dim % 2) return g2_fail(err, "%s: key_length %u is odd (RoPE pairs halves)", gguf_path(f), hp->head_dim);
    if (hp->n_expert_used > hp->n_expert)
        return g2_fail(err, "%s: expert_used_count %u exceeds expert_count %u", gguf_path(f), hp->n_expert_used,
                       hp->n_expert);
    if (need_f32(f, "grok.attention.layer_norm_rms_epsilon", &hp->rms_eps, err) ||
        need_f32(f, "grok.rope.freq_base", &hp->rope_theta, err) ||
        need_f32(f, "grok.embedding_scale", &hp->embedding_scale, err) ||
        need_f32(f, "grok.logit_scale", &hp->logit_scale, err) ||
        need_f32(f, "grok.attn_logit_softcapping", &hp->attn_softcap, err) ||
        need_f32(f, "grok.final_logit_softcapping", &hp->final_softcap, err))
        return -1;

    /* What the reference needs and llama.cpp's converter leaves out or rewrites. */
    char notes[400] = "";
    size_t used = 0;
#define NOTE(...) used += (size_t)snprintf(notes + used, used < sizeof notes ? sizeof notes - used : 0, __VA_ARGS__)
    if (has_key(f, "grok.router_logit_softcapping")) {
        if (need_f32(f, "grok.router_logit_softcapping", &hp->router_softcap, err)) return -1;
    } else {
        hp->router_softcap = REFERENCE_ROUTER_SOFTCAP;
        NOTE("; no router soft-cap key (llama.cpp file): using the reference %.0f", REFERENCE_ROUTER_SOFTCAP);
    }
    hp->attn_temperature_len = REFERENCE_TEMPERATURE_LEN;
    if (has_key(f, "grok.attention.temperature_length")) {
        if (need_u32(f, "grok.attention.temperature_length", &hp->attn_temperature_len, err)) return -1;
    } else {
        NOTE("; no attention temperature length key: using the reference %u", REFERENCE_TEMPERATURE_LEN);
    }
    if (hp->attn_temperature_len < 2)
        return g2_fail(err, "%s: grok.attention.temperature_length %u must be at least 2", gguf_path(f),
                       hp->attn_temperature_len);
    gguf_str scaling;
    if (gguf_get_str(f, "grok.rope.scaling.type", &scaling, NULL) == 0 && !str_is(scaling, "none"))
        NOTE("; rope scaling '%.*s' in the file ignored: Grok-2 uses plain RoPE", (int)scaling.len, scaling.data);
#undef NOTE
    snprintf(m->semantics, sizeof m->semantics,
             "reference (xAI/SGLang): plain RoPE theta %.0f, attention soft-cap %g then temperature "
             "log2(p)/log2(%u) for p > %u, router soft-cap %g + softmax + top-%u not renormalised, exact erf GELU%s",
             hp->rope_theta, hp->attn_softcap, hp->attn_temperature_len, hp->attn_temperature_len, hp->router_softcap, hp->n_expert_used,
             notes);
    return 0;
}

static const gguf_tensor *find(const grok_model *m, const char *name, g2_error *err) {
    const gguf_tensor *t = gguf_find_tensor(m->file, name);
    if (!t) g2_fail(err, "%s: tensor %s is missing", gguf_path(m->file), name);
    return t;
}

static int check_computable(const grok_model *m, const gguf_tensor *t, g2_error *err) {
    const g2_type_traits *tt = g2_type_get(t->type);
    if (!tt->to_float)
        return g2_fail(err, "%s: tensor %s has type %s, which grok2 cannot compute with", gguf_path(m->file), t->name,
                       tt->name);
    return 0;
}

/* A [rows x cols] matrix (ne = {cols, rows}), or one expert's slab of an {cols, rows, n} stack. */
static int bind_matrix(const grok_model *m, const char *name, int64_t cols, int64_t rows, int64_t n_expert,
                       weight_matrix *w, size_t *slab, g2_error *err) {
    const gguf_tensor *t = find(m, name, err);
    if (!t || check_computable(m, t, err)) return -1;
    uint32_t dims = n_expert ? 3 : 2;
    if (t->n_dims != dims || t->ne[0] != cols || t->ne[1] != rows || (n_expert && t->ne[2] != n_expert)) {
        if (n_expert)
            return g2_fail(err, "%s: tensor %s has shape [%lld, %lld, %lld], expected [%lld, %lld, %lld]",
                           gguf_path(m->file), name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                           (long long)cols, (long long)rows, (long long)n_expert);
        return g2_fail(err, "%s: tensor %s has shape [%lld, %lld] (%u dims), expected [%lld, %lld]", gguf_path(m->file),
                       name, (long long)t->ne[0], (long long)t->ne[1], t->n_dims, (long long)cols, (long long)rows);
    }
    *w = (weight_matrix){t->type, t->data, rows, cols, g2_row_size(t->type, cols)};
    if (slab) *slab = w->row_bytes * (size_t)rows;
    return 0;
}

/* Norm weights are used as f32; a file storing them otherwise gets a decoded copy. */
static int bind_norm(grok_model *m, const char *name, size_t *storage_used, const float **out, g2_error *err) {
    const gguf_tensor *t = find(m, name, err);
    if (!t || check_computable(m, t, err)) return -1;
    if (t->n_dims != 1 || t->ne[0] != m->hp.n_embd)
        return g2_fail(err, "%s: tensor %s has %lld values in %u dims, expected [%u]", gguf_path(m->file), name,
                       (long long)t->ne[0], t->n_dims, m->hp.n_embd);
    if (t->type == G2_TYPE_F32) {
        *out = t->data;
        return 0;
    }
    float *dst = m->norm_storage + *storage_used;
    g2_dequantize(t->type, t->data, dst, t->ne[0]);
    *storage_used += m->hp.n_embd;
    *out = dst;
    return 0;
}

static int bind_tensors(grok_model *m, g2_error *err) {
    const grok_hparams *hp = &m->hp;
    int64_t d = hp->n_embd, q = (int64_t)hp->n_head * hp->head_dim, kv = (int64_t)hp->n_head_kv * hp->head_dim;
    const gguf_tensor *embd = find(m, "token_embd.weight", err);
    if (!embd) return -1;
    if (embd->n_dims != 2) return g2_fail(err, "%s: token_embd.weight is not 2-D", gguf_path(m->file));
    m->hp.n_vocab = (uint32_t)embd->ne[1];
    if (bind_matrix(m, "token_embd.weight", d, hp->n_vocab, 0, &m->embedding, NULL, err) ||
        bind_matrix(m, "output.weight", d, hp->n_vocab, 0, &m->output, NULL, err))
        return -1;
    size_t storage_used = 0;
    m->norm_storage = malloc(sizeof(float) * (size_t)d * (4 * hp->n_layer + 1));
    m->layers = calloc(hp->n_layer, sizeof *m->layers);
    if (!m->norm_storage || !m->layers) return g2_fail(err, "out of memory binding %s", gguf_path(m->file));
    if (bind_norm(m, "output_norm.weight", &storage_used, &m->output_norm, err)) return -1;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        grok_layer *L = &m->layers[l];
        char name[GGUF_MAX_NAME + 1];
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%u.%s", l, suffix), name)
        if (bind_norm(m, NAME("attn_norm.weight"), &storage_used, &L->attn_norm, err) ||
            bind_norm(m, NAME("attn_output_norm.weight"), &storage_used, &L->attn_output_norm, err) ||
            bind_norm(m, NAME("ffn_norm.weight"), &storage_used, &L->ffn_norm, err) ||
            bind_norm(m, NAME("post_ffw_norm.weight"), &storage_used, &L->post_ffw_norm, err) ||
            bind_matrix(m, NAME("attn_q.weight"), d, q, 0, &L->q, NULL, err) ||
            bind_matrix(m, NAME("attn_k.weight"), d, kv, 0, &L->k, NULL, err) ||
            bind_matrix(m, NAME("attn_v.weight"), d, kv, 0, &L->v, NULL, err) ||
            bind_matrix(m, NAME("attn_output.weight"), q, d, 0, &L->o, NULL, err) ||
            bind_matrix(m, NAME("ffn_gate.weight"), d, hp->n_ff, 0, &L->gate, NULL, err) ||
            bind_matrix(m, NAME("ffn_up.weight"), d, hp->n_ff, 0, &L->up, NULL, err) ||
            bind_matrix(m, NAME("ffn_down.weight"), hp->n_ff, d, 0, &L->down, NULL, err) ||
            bind_matrix(m, NAME("ffn_gate_inp.weight"), d, hp->n_expert, 0, &L->router, NULL, err) ||
            bind_matrix(m, NAME("ffn_gate_exps.weight"), d, hp->n_ff_exp, hp->n_expert, &L->gate_exps,
                        &L->gate_exps_slab, err) ||
            bind_matrix(m, NAME("ffn_up_exps.weight"), d, hp->n_ff_exp, hp->n_expert, &L->up_exps, &L->up_exps_slab,
                        err) ||
            bind_matrix(m, NAME("ffn_down_exps.weight"), hp->n_ff_exp, d, hp->n_expert, &L->down_exps,
                        &L->down_exps_slab, err))
            return -1;
#undef NAME
    }
    return 0;
}

int grok_model_bind(grok_model **out, gguf_file *file, g2_error *err) {
    grok_model *m = calloc(1, sizeof *m);
    if (!m) {
        gguf_close(file);
        return g2_fail(err, "out of memory");
    }
    m->file = file;
    if (read_hparams(m, err) || bind_tensors(m, err)) {
        grok_model_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

/* ---- a read error in the mapping --------------------------------------------------------- */
/* A mapped file that shrinks under us (truncated, or a disk or network file system failing)
 * faults with SIGBUS on the next read of a lost page. The handler turns a fault inside a model's
 * mapping into one line and exit status 1. It can only read what is fixed before it runs, so the
 * mappings are kept in this table (a process maps a few models at most); a slot is published
 * with its name and range before `base` is set, and cleared when the model is freed. */
#define GUARDED_MAPPINGS 8

static struct {
    const uint8_t *volatile base;
    size_t size;
    const char *name;
} guarded[GUARDED_MAPPINGS];
static struct sigaction previous_sigbus;

static void write_all(const char *s, size_t n) {
    while (n) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w <= 0) return;
        s += w, n -= (size_t)w;
    }
}

static void on_sigbus(int sig, siginfo_t *info, void *uctx) {
    const uint8_t *addr = info->si_addr;
    for (int i = 0; i < GUARDED_MAPPINGS; i++) {
        const uint8_t *base = guarded[i].base;
        if (!base || addr < base || addr >= base + guarded[i].size) continue;
        char digits[24];
        int n = 0;
        for (uint64_t offset = (uint64_t)(addr - base); n == 0 || offset; offset /= 10) digits[n++] = (char)('0' + offset % 10);
        char offset_text[24];
        for (int j = 0; j < n; j++) offset_text[j] = digits[n - 1 - j];
        static const char head[] = "grok2: read error in ", mid[] = " at offset ",
                          tail[] = " (file truncated or disk failed)\n";
        write_all(head, sizeof head - 1);
        write_all(guarded[i].name, strlen(guarded[i].name));
        write_all(mid, sizeof mid - 1);
        write_all(offset_text, (size_t)n);
        write_all(tail, sizeof tail - 1);
        _exit(1);
    }
    /* not ours: the previous disposition (default: die with the signal) on the retried access */
    sigaction(SIGBUS, &previous_sigbus, NULL);
    (void)sig, (void)uctx;
}

static void model_guard_mapping(const grok_model *m) {
    static bool installed;
    if (!installed) {
        struct sigaction sa = {0};
        sa.sa_sigaction = on_sigbus;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGBUS, &sa, &previous_sigbus) == 0) installed = true;
    }
    const gguf_tensor *first = gguf_tensor_count(m->file) ? gguf_tensor_at(m->file, 0) : NULL;
    if (!first) return;
    /* the mapping starts at file offset 0: the first tensor's address less its file offset */
    const uint8_t *base = (const uint8_t *)first->data - gguf_data_offset(m->file) - first->offset;
    for (int i = 0; i < GUARDED_MAPPINGS; i++)
        if (!guarded[i].base) {
            guarded[i].size = (size_t)gguf_file_size(m->file);
            guarded[i].name = gguf_path(m->file);
            guarded[i].base = base;
            return;
        }
}

static void model_unguard_mapping(const grok_model *m) {
    const char *name = gguf_path(m->file);
    for (int i = 0; i < GUARDED_MAPPINGS; i++)
        if (guarded[i].base && guarded[i].name == name) guarded[i].base = NULL;
}

int grok_model_load(grok_model **out, const char *path, g2_error *err) {
    gguf_file *f;
    if (gguf_open(&f, path, err)) return -1;
    if (grok_model_bind(out, f, err)) return -1;
    (*out)->mapped = true;
    model_guard_mapping(*out);
    return 0;
}

void grok_model_free(grok_model *m) {
    if (!m) return;
    if (m->mapped) model_unguard_mapping(m);
    gguf_close(m->file);
    free(m->layers);
    free(m->norm_storage);
    free(m);
}

static double matrix_bytes(const weight_matrix *w) { return (double)w->row_bytes * (double)w->rows; }

double grok_model_bytes_per_token(const grok_model *m) {
    const grok_hparams *hp = &m->hp;
    double bytes = (double)m->embedding.row_bytes + matrix_bytes(&m->output) + 4.0 * hp->n_embd;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        const grok_layer *L = &m->layers[l];
        bytes += matrix_bytes(&L->q) + matrix_bytes(&L->k) + matrix_bytes(&L->v) + matrix_bytes(&L->o);
        bytes += matrix_bytes(&L->gate) + matrix_bytes(&L->up) + matrix_bytes(&L->down) + matrix_bytes(&L->router);
        bytes += 4.0 * 4 * hp->n_embd; /* the four norms */
        bytes += (double)hp->n_expert_used * (L->gate_exps_slab + L->up_exps_slab + L->down_exps_slab);
    }
    return bytes;
}

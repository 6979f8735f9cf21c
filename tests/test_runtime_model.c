/* Model binding and evaluation through the library: a small random Grok GGUF is written in the
 * test, then bound, evaluated, rewritten the way llama.cpp's converter writes its metadata, and
 * broken in the ways a bad file can be broken. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/runtime.h"
#include "harness.h"

enum { D = 64, N_LAYER = 2, N_HEAD = 4, N_KV = 2, HD = 16, FF = 96, FF_EXP = 64, N_EXP = 4, VOCAB = 100 };

typedef struct {
    bool llama_cpp_style; /* yarn rope keys, no router soft-cap key */
    const char *skip_tensor; /* leave this tensor out */
    const char *skip_key;    /* leave this key out */
    int64_t wrong_ff;        /* declare this dense width in metadata instead of FF */
} model_variant;

static float next_random(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return (float)((double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void add_tensor(gguf_writer *w, const char *name, uint32_t n_dims, int64_t ne0, int64_t ne1, int64_t ne2,
                       const model_variant *v) {
    if (v->skip_tensor && !strcmp(name, v->skip_tensor)) return;
    int64_t ne[3] = {ne0, ne1, ne2};
    g2_error err;
    cr_assert_eq(gguf_writer_add_tensor(w, name, G2_TYPE_F32, n_dims, ne, &err), 0, "%s", err.msg);
}

/* Writes the tensors in the same order add_all_tensors declared them. */
typedef struct {
    const char *name;
    int64_t n;
    float scale;
} tensor_plan;

static int plan_tensors(tensor_plan *plan) {
    int n = 0;
    static char names[N_LAYER * 16][64];
    plan[n++] = (tensor_plan){"token_embd.weight", (int64_t)D * VOCAB, 1.0f};
    plan[n++] = (tensor_plan){"output_norm.weight", D, -1};
    plan[n++] = (tensor_plan){"output.weight", (int64_t)D * VOCAB, 0.3f};
    static const struct {
        const char *suffix;
        int64_t n;
        float scale;
    } per_layer[] = {
        {"attn_norm.weight", D, -1},
        {"attn_q.weight", (int64_t)D * N_HEAD * HD, 0.4f},
        {"attn_k.weight", (int64_t)D * N_KV * HD, 0.4f},
        {"attn_v.weight", (int64_t)D * N_KV * HD, 0.2f},
        {"attn_output.weight", (int64_t)N_HEAD * HD * D, 0.2f},
        {"attn_output_norm.weight", D, -1},
        {"ffn_norm.weight", D, -1},
        {"ffn_gate.weight", (int64_t)D * FF, 0.2f},
        {"ffn_up.weight", (int64_t)D * FF, 0.2f},
        {"ffn_down.weight", (int64_t)FF * D, 0.2f},
        {"ffn_gate_inp.weight", (int64_t)D * N_EXP, 2.0f},
        {"ffn_gate_exps.weight", (int64_t)D * FF_EXP * N_EXP, 0.2f},
        {"ffn_up_exps.weight", (int64_t)D * FF_EXP * N_EXP, 0.2f},
        {"ffn_down_exps.weight", (int64_t)FF_EXP * D * N_EXP, 0.2f},
        {"post_ffw_norm.weight", D, -1},
    };
    for (int l = 0; l < N_LAYER; l++)
        for (size_t i = 0; i < sizeof per_layer / sizeof per_layer[0]; i++) {
            char *name = names[l * 16 + i];
            snprintf(name, 64, "blk.%d.%s", l, per_layer[i].suffix);
            plan[n++] = (tensor_plan){name, per_layer[i].n, per_layer[i].scale};
        }
    return n;
}

static void declare(gguf_writer *w, const tensor_plan *p, const model_variant *v) {
    const char *dot = strchr(p->name, '.');
    const char *base = strncmp(p->name, "blk.", 4) ? p->name : strchr(dot + 1, '.') + 1;
    if (!strcmp(base, "token_embd.weight") || !strcmp(base, "output.weight")) add_tensor(w, p->name, 2, D, VOCAB, 1, v);
    else if (strstr(base, "norm")) add_tensor(w, p->name, 1, D, 1, 1, v);
    else if (!strcmp(base, "attn_q.weight")) add_tensor(w, p->name, 2, D, N_HEAD * HD, 1, v);
    else if (!strcmp(base, "attn_k.weight") || !strcmp(base, "attn_v.weight")) add_tensor(w, p->name, 2, D, N_KV * HD, 1, v);
    else if (!strcmp(base, "attn_output.weight")) add_tensor(w, p->name, 2, N_HEAD * HD, D, 1, v);
    else if (!strcmp(base, "ffn_gate.weight") || !strcmp(base, "ffn_up.weight")) add_tensor(w, p->name, 2, D, FF, 1, v);
    else if (!strcmp(base, "ffn_down.weight")) add_tensor(w, p->name, 2, FF, D, 1, v);
    else if (!strcmp(base, "ffn_gate_inp.weight")) add_tensor(w, p->name, 2, D, N_EXP, 1, v);
    else if (!strcmp(base, "ffn_down_exps.weight")) add_tensor(w, p->name, 3, FF_EXP, D, N_EXP, v);
    else add_tensor(w, p->name, 3, D, FF_EXP, N_EXP, v);
}

static void set_metadata(gguf_writer *w, const model_variant *v) {
    g2_error err;
    struct { const char *key; uint32_t value; } u32s[] = {
        {"grok.block_count", N_LAYER}, {"grok.context_length", 8192}, {"grok.embedding_length", D},
        {"grok.feed_forward_length", v->wrong_ff ? (uint32_t)v->wrong_ff : FF},
        {"grok.expert_feed_forward_length", FF_EXP}, {"grok.expert_count", N_EXP}, {"grok.expert_used_count", 2},
        {"grok.attention.head_count", N_HEAD}, {"grok.attention.head_count_kv", N_KV},
        {"grok.attention.key_length", HD}, {"grok.attention.value_length", HD},
        {"grok.attention.temperature_length", 16},
    };
    struct { const char *key; float value; } f32s[] = {
        {"grok.attention.layer_norm_rms_epsilon", 1e-5f}, {"grok.rope.freq_base", 10000.0f},
        {"grok.embedding_scale", 8.0f}, {"grok.logit_scale", 0.5f}, {"grok.attn_logit_softcapping", 30.0f},
        {"grok.router_logit_softcapping", 30.0f}, {"grok.final_logit_softcapping", 50.0f},
    };
    cr_assert_eq(gguf_writer_set_str(w, "general.architecture", "grok", &err), 0);
    for (size_t i = 0; i < sizeof u32s / sizeof u32s[0]; i++)
        if (!v->skip_key || strcmp(v->skip_key, u32s[i].key)) gguf_writer_set_u32(w, u32s[i].key, u32s[i].value, &err);
    for (size_t i = 0; i < sizeof f32s / sizeof f32s[0]; i++) {
        if (v->skip_key && !strcmp(v->skip_key, f32s[i].key)) continue;
        if (v->llama_cpp_style && !strcmp(f32s[i].key, "grok.router_logit_softcapping")) continue;
        gguf_writer_set_f32(w, f32s[i].key, f32s[i].value, &err);
    }
    if (v->llama_cpp_style) { /* what llama.cpp's converter writes for Grok-2's "original" RoPE */
        gguf_writer_set_str(w, "grok.rope.scaling.type", "yarn", &err);
        gguf_writer_set_f32(w, "grok.rope.scaling.factor", 16.0f, &err);
        gguf_writer_set_u32(w, "grok.rope.scaling.original_context_length", 8192, &err);
        gguf_writer_set_f32(w, "grok.rope.scaling.yarn_ext_factor", 1.0f, &err);
        gguf_writer_set_f32(w, "grok.rope.scaling.yarn_beta_fast", 8.0f, &err);
    } else {
        gguf_writer_set_str(w, "grok.rope.scaling.type", "none", &err);
    }
}

static char *write_model(const char *dir, const char *name, const model_variant *v) {
    static tensor_plan plan[3 + N_LAYER * 16];
    int n = plan_tensors(plan);
    gguf_writer *w = gguf_writer_new();
    set_metadata(w, v);
    for (int i = 0; i < n; i++) declare(w, &plan[i], v);
    char *path = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    g2_error err;
    cr_assert_eq(gguf_writer_begin(w, path, &err), 0, "%s", err.msg);
    uint64_t seed = 12345;
    for (int i = 0; i < n; i++) {
        float *data = malloc(sizeof(float) * (size_t)plan[i].n);
        for (int64_t j = 0; j < plan[i].n; j++)
            data[j] = plan[i].scale < 0 ? 1.0f + 0.2f * next_random(&seed) : plan[i].scale * next_random(&seed);
        if (!v->skip_tensor || strcmp(plan[i].name, v->skip_tensor))
            cr_assert_eq(gguf_writer_write(w, data, sizeof(float) * (size_t)plan[i].n, &err), 0, "%s", err.msg);
        free(data);
    }
    cr_assert_eq(gguf_writer_finish(w, &err), 0, "%s", err.msg);
    gguf_writer_free(w);
    return path;
}

static float *eval_all(const char *path, const int32_t *tokens, uint32_t n, kv_cache_type kv) {
    grok_model *m;
    grok_context *ctx;
    g2_error err;
    cr_assert_eq(grok_model_load(&m, path, &err), 0, "%s", err.msg);
    grok_context_params p = {.n_ctx = n, .kv_type = kv, .n_threads = 2, .max_batch = 7};
    cr_assert_eq(grok_context_new(&ctx, m, &p, &err), 0, "%s", err.msg);
    float *logits = malloc(sizeof(float) * n * VOCAB);
    cr_assert_eq(grok_eval(ctx, tokens, n, 0, logits, true, &err), 0, "%s", err.msg);
    grok_context_free(ctx);
    grok_model_free(m);
    return logits;
}

static void make_tokens(int32_t *tokens, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) tokens[i] = (int32_t)((i * 37 + 11) % VOCAB);
}

Test(runtime_model, llama_cpp_metadata_runs_with_reference_semantics) {
    char *dir = harness_tmpdir("model-llama");
    model_variant ours = {0}, theirs = {.llama_cpp_style = true};
    char *a = write_model(dir, "ours.gguf", &ours), *b = write_model(dir, "llama.gguf", &theirs);
    enum { N = 40 }; /* past the temperature length of 16 */
    int32_t tokens[N];
    make_tokens(tokens, N);
    float *la = eval_all(a, tokens, N, KV_F32), *lb = eval_all(b, tokens, N, KV_F32);
    for (int i = 0; i < N * VOCAB; i++) cr_assert_eq(la[i], lb[i], "logit %d differs: %g vs %g", i, la[i], lb[i]);
    grok_model *m;
    g2_error err;
    cr_assert_eq(grok_model_load(&m, b, &err), 0);
    cr_expect(strstr(m->semantics, "no router soft-cap key"), "semantics: %s", m->semantics);
    cr_expect(strstr(m->semantics, "rope scaling 'yarn' in the file ignored"), "semantics: %s", m->semantics);
    cr_expect_eq(m->hp.router_softcap, 30.0f);
    grok_model_free(m);
    free(la), free(lb), free(a), free(b), free(dir);
}

Test(runtime_model, batch_chunks_and_incremental_decode_agree) {
    char *dir = harness_tmpdir("model-incr");
    model_variant v = {0};
    char *path = write_model(dir, "m.gguf", &v);
    enum { N = 30 };
    int32_t tokens[N];
    make_tokens(tokens, N);
    float *batch = eval_all(path, tokens, N, KV_F32);
    grok_model *m;
    grok_context *ctx;
    g2_error err;
    cr_assert_eq(grok_model_load(&m, path, &err), 0);
    grok_context_params p = {.n_ctx = N, .kv_type = KV_F32, .n_threads = 1};
    cr_assert_eq(grok_context_new(&ctx, m, &p, &err), 0);
    float logits[VOCAB];
    for (uint32_t i = 0; i < N; i++) {
        cr_assert_eq(grok_eval(ctx, tokens + i, 1, i, logits, false, &err), 0, "%s", err.msg);
        for (int v2 = 0; v2 < VOCAB; v2++)
            cr_assert_float_eq(logits[v2], batch[i * VOCAB + v2], 1e-5f, "pos %u logit %d", i, v2);
    }
    /* the logits are not trivially flat: the caps and router see real spread */
    float lo = batch[0], hi = batch[0];
    for (int i = 0; i < N * VOCAB; i++) lo = fminf(lo, batch[i]), hi = fmaxf(hi, batch[i]);
    cr_expect_gt(hi - lo, 1.0f, "logit spread %g", hi - lo);
    grok_context_free(ctx);
    grok_model_free(m);
    free(batch), free(path), free(dir);
}

Test(runtime_model, f16_and_bf16_kv_caches_stay_close_to_f32) {
    char *dir = harness_tmpdir("model-kv");
    model_variant v = {0};
    char *path = write_model(dir, "m.gguf", &v);
    enum { N = 24 };
    int32_t tokens[N];
    make_tokens(tokens, N);
    float *f32 = eval_all(path, tokens, N, KV_F32), *f16 = eval_all(path, tokens, N, KV_F16),
          *bf16 = eval_all(path, tokens, N, KV_BF16);
    float d16 = 0, db16 = 0, max = 0;
    for (int i = 0; i < N * VOCAB; i++) {
        d16 = fmaxf(d16, fabsf(f16[i] - f32[i]));
        db16 = fmaxf(db16, fabsf(bf16[i] - f32[i]));
        max = fmaxf(max, fabsf(f32[i]));
    }
    cr_log_info("kv f16 max diff %g, bf16 %g, max |logit| %g", d16, db16, max);
    cr_expect_lt(d16, 2e-3f * max);
    cr_expect_lt(db16, 2e-2f * max);
    cr_expect_gt(d16, 0.0f, "f16 rounding should be visible");
    free(f32), free(f16), free(bf16), free(path), free(dir);
}

static void expect_load_error(const model_variant *v, const char *fragment) {
    char *dir = harness_tmpdir("model-bad");
    char *path = write_model(dir, "bad.gguf", v);
    grok_model *m = NULL;
    g2_error err = {{0}};
    cr_assert_neq(grok_model_load(&m, path, &err), 0, "loading should fail (%s)", fragment);
    cr_expect(strstr(err.msg, fragment), "error '%s' should mention '%s'", err.msg, fragment);
    cr_expect(strstr(err.msg, "bad.gguf"), "error '%s' should name the file", err.msg);
    free(path), free(dir);
}

Test(runtime_model, load_rejects_a_missing_tensor_by_name) {
    model_variant v = {.skip_tensor = "blk.1.ffn_up_exps.weight"};
    expect_load_error(&v, "blk.1.ffn_up_exps.weight is missing");
}

Test(runtime_model, load_rejects_a_missing_key_by_name) {
    model_variant v = {.skip_key = "grok.expert_count"};
    expect_load_error(&v, "grok.expert_count");
}

Test(runtime_model, load_rejects_tensors_that_do_not_match_metadata) {
    model_variant v = {.wrong_ff = 128};
    expect_load_error(&v, "blk.0.ffn_gate.weight has shape [64, 96]");
}

Test(runtime_model, eval_rejects_out_of_range_tokens_and_context_overflow) {
    char *dir = harness_tmpdir("model-eval");
    model_variant v = {0};
    char *path = write_model(dir, "m.gguf", &v);
    grok_model *m;
    grok_context *ctx;
    g2_error err;
    cr_assert_eq(grok_model_load(&m, path, &err), 0);
    grok_context_params p = {.n_ctx = 8, .kv_type = KV_F16, .n_threads = 1};
    cr_assert_eq(grok_context_new(&ctx, m, &p, &err), 0);
    float logits[VOCAB];
    int32_t bad[2] = {1, VOCAB};
    cr_expect_neq(grok_eval(ctx, bad, 2, 0, logits, false, &err), 0);
    cr_expect(strstr(err.msg, "outside the vocabulary"), "%s", err.msg);
    int32_t many[9] = {0};
    cr_expect_neq(grok_eval(ctx, many, 9, 0, logits, false, &err), 0);
    cr_expect(strstr(err.msg, "do not fit the context of 8"), "%s", err.msg);
    grok_context_free(ctx);
    grok_model_free(m);
    free(path), free(dir);
}

Test(runtime_model, logits_cli_reports_bad_tokens_and_missing_files) {
    harness_result r = harness_run("%s logits -m /nonexistent.gguf --tokens 1,2", harness_grok2());
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "/nonexistent.gguf"), "%s", r.err);
    harness_result_free(&r);
    r = harness_run("%s logits -m x.gguf --tokens 1,-2", harness_grok2());
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "bad token id"), "%s", r.err);
    harness_result_free(&r);
}

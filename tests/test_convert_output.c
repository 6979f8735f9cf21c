/* What grok2 convert writes, checked from the outside: tiny synth -> every type -> each GGUF
 * (read with gguf_open) lists every tensor with the right shape and type; the F32 file holds
 * the bf16 source values exactly, located by this test's own reading of the release layout;
 * synth --gguf writes the same tensors; the same seed gives the same bytes. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../convert/convert.h"
#include "harness.h"

/* tiny's shape (grok2 synth --help) */
enum { HIDDEN = 256, LAYERS = 2, HEADS = 4, KV_HEADS = 2, HEAD_DIM = 64, EXPERTS = 4, EXPERT_FF = 512, FF = 1024,
       VOCAB = 512, RANKS = 8 };

static void run_ok(const char *what, harness_result r) {
    cr_assert_eq(r.status, 0, "%s failed (%d): %s", what, r.status, r.err);
    harness_result_free(&r);
}

static void remove_dir(char *dir) {
    harness_result r = harness_run("rm -rf '%s'", dir);
    harness_result_free(&r);
    free(dir);
}

/* ---- expected layout, written independently of convert/grok_tensors.c ----------------------- */

typedef struct {
    const char *gguf;
    int n_dims;
    int64_t ne[3];
    bool matrix; /* quantized by the pure types; norms and the router stay F32 */
} expected_tensor;

static const expected_tensor per_layer[] = {
    {"attn_norm.weight", 1, {HIDDEN, 1, 1}, false},
    {"attn_q.weight", 2, {HIDDEN, HEADS * HEAD_DIM, 1}, true},
    {"attn_k.weight", 2, {HIDDEN, KV_HEADS * HEAD_DIM, 1}, true},
    {"attn_v.weight", 2, {HIDDEN, KV_HEADS * HEAD_DIM, 1}, true},
    {"attn_output.weight", 2, {HEADS * HEAD_DIM, HIDDEN, 1}, true},
    {"attn_output_norm.weight", 1, {HIDDEN, 1, 1}, false},
    {"ffn_norm.weight", 1, {HIDDEN, 1, 1}, false},
    {"ffn_gate_inp.weight", 2, {HIDDEN, EXPERTS, 1}, false},
    {"ffn_gate.weight", 2, {HIDDEN, FF, 1}, true},
    {"ffn_up.weight", 2, {HIDDEN, FF, 1}, true},
    {"ffn_down.weight", 2, {FF, HIDDEN, 1}, true},
    {"ffn_gate_exps.weight", 3, {HIDDEN, EXPERT_FF, EXPERTS}, true},
    {"ffn_up_exps.weight", 3, {HIDDEN, EXPERT_FF, EXPERTS}, true},
    {"ffn_down_exps.weight", 3, {EXPERT_FF, HIDDEN, EXPERTS}, true},
    {"post_ffw_norm.weight", 1, {HIDDEN, 1, 1}, false},
};
static const expected_tensor global[] = {
    {"token_embd.weight", 2, {HIDDEN, VOCAB, 1}, true},
    {"output_norm.weight", 1, {HIDDEN, 1, 1}, false},
    {"output.weight", 2, {HIDDEN, VOCAB, 1}, true},
};
#define N_PER_LAYER (int)(sizeof per_layer / sizeof per_layer[0])

static void check_tensor(const gguf_file *f, const char *name, const expected_tensor *e, uint32_t matrix_type) {
    const gguf_tensor *t = gguf_find_tensor(f, name);
    cr_assert(t, "%s missing", name);
    cr_assert_eq(t->n_dims, (uint32_t)e->n_dims, "%s n_dims", name);
    for (int d = 0; d < e->n_dims; d++) cr_assert_eq(t->ne[d], e->ne[d], "%s ne[%d] %lld", name, d, (long long)t->ne[d]);
    if (matrix_type != UINT32_MAX) {
        uint32_t want = e->matrix ? matrix_type : G2_TYPE_F32;
        cr_assert_eq(t->type, want, "%s is %s, expected %s", name, g2_type_get(t->type)->name, g2_type_get(want)->name);
    }
}

/* Every tensor with its shape; matrix_type: the type of every matrix (UINT32_MAX: a mix). */
static void check_layout(const char *path, uint32_t matrix_type, uint32_t file_type) {
    gguf_file *f;
    g2_error err;
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_tensor_count(f), 3 + LAYERS * N_PER_LAYER);
    for (size_t i = 0; i < 3; i++) check_tensor(f, global[i].gguf, &global[i], matrix_type);
    for (int l = 0; l < LAYERS; l++)
        for (int i = 0; i < N_PER_LAYER; i++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s", l, per_layer[i].gguf);
            check_tensor(f, name, &per_layer[i], matrix_type);
        }
    uint32_t ft, n;
    cr_assert_eq(gguf_get_u32(f, "general.file_type", &ft, &err), 0);
    cr_assert_eq(ft, file_type);
    gguf_str arch;
    cr_assert_eq(gguf_get_str(f, "general.architecture", &arch, &err), 0);
    cr_assert(arch.len == 4 && !memcmp(arch.data, "grok", 4));
    cr_assert_eq(gguf_get_u32(f, "grok.expert_feed_forward_length", &n, &err), 0);
    cr_assert_eq(n, EXPERT_FF);
    gguf_close(f);
}

Test(convert_output, tiny_converts_to_every_type_with_every_tensor_shaped_and_typed) {
    static const struct {
        const char *name;
        uint32_t matrix_type, file_type;
    } types[] = {
        {"f32", G2_TYPE_F32, 0},      {"bf16", G2_TYPE_BF16, 32},   {"f16", G2_TYPE_F16, 1},
        {"q8_0", G2_TYPE_Q8_0, 7},    {"q4_0", G2_TYPE_Q4_0, 2},    {"q4_k", G2_TYPE_Q4_K, 14},
        {"q6_k", G2_TYPE_Q6_K, 18},   {"q4_k_m", UINT32_MAX, 15},   {"q4_k_s", UINT32_MAX, 14},
    };
    char *dir = harness_tmpdir("convert-types");
    run_ok("synth", harness_run("%s synth tiny -o %s/hf", harness_grok2(), dir));
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s.gguf", dir, types[i].name);
        run_ok(types[i].name, harness_run("%s convert %s/hf -o %s --type %s", harness_grok2(), dir, path, types[i].name));
        check_layout(path, types[i].matrix_type, types[i].file_type);
    }
    remove_dir(dir);
}

Test(convert_output, q4_k_m_gives_attention_and_output_more_bits_and_keeps_norms_f32) {
    char *dir = harness_tmpdir("convert-mix");
    run_ok("synth", harness_run("%s synth tiny -o %s/hf && %s convert %s/hf -o %s/m.gguf --type q4_k_m",
                                harness_grok2(), dir, harness_grok2(), dir, dir));
    char path[512];
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    gguf_file *f;
    g2_error err;
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    static const struct {
        const char *name;
        uint32_t type;
    } want[] = {
        {"token_embd.weight", G2_TYPE_Q4_K},        {"output.weight", G2_TYPE_Q6_K},
        {"blk.0.attn_q.weight", G2_TYPE_Q6_K},      {"blk.0.attn_k.weight", G2_TYPE_Q8_0},
        {"blk.0.attn_v.weight", G2_TYPE_Q8_0},      {"blk.0.attn_output.weight", G2_TYPE_Q6_K},
        {"blk.0.ffn_gate_exps.weight", G2_TYPE_Q4_K}, {"blk.1.ffn_down_exps.weight", G2_TYPE_Q4_K},
        {"blk.0.ffn_gate.weight", G2_TYPE_Q4_K},    {"blk.0.ffn_down.weight", G2_TYPE_Q4_K},
        {"blk.1.ffn_down.weight", G2_TYPE_Q6_K} /* llama.cpp's use_more_bits: the last eighth */,
        {"blk.0.ffn_gate_inp.weight", G2_TYPE_F32}, {"blk.1.post_ffw_norm.weight", G2_TYPE_F32},
        {"output_norm.weight", G2_TYPE_F32},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const gguf_tensor *t = gguf_find_tensor(f, want[i].name);
        cr_assert(t, "%s", want[i].name);
        cr_assert_eq(t->type, want[i].type, "%s is %s", want[i].name, g2_type_get(t->type)->name);
    }
    gguf_close(f);
    remove_dir(dir);
}

/* ---- values -------------------------------------------------------------------------------- */

typedef struct {
    st_file *files[64];
    int rank[64];
    int n;
} checkpoint;

static void open_checkpoint(const char *dir, checkpoint *c) {
    harness_result r = harness_run("cd '%s' && ls *.safetensors", dir);
    cr_assert_eq(r.status, 0);
    c->n = 0;
    for (char *line = strtok(r.out, "\n"); line; line = strtok(NULL, "\n")) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, line);
        g2_error err;
        cr_assert_lt(c->n, 64);
        cr_assert_eq(st_open(&c->files[c->n], path, &err), 0, "%s", err.msg);
        const char *tp = strstr(line, "-TP-");
        cr_assert(tp, "%s: every file of the release layout names its TP rank", line);
        c->rank[c->n] = strncmp(tp + 4, "common", 6) ? atoi(tp + 4) : -1;
        c->n++;
    }
    harness_result_free(&r);
}

static void close_checkpoint(checkpoint *c) {
    for (int i = 0; i < c->n; i++) st_close(c->files[i]);
}

/* The tensor `name` of rank `rank` (-1: a common file). */
static const st_tensor *source(const checkpoint *c, const char *name, int rank) {
    for (int i = 0; i < c->n; i++)
        if (c->rank[i] == rank) {
            const st_tensor *t = st_find(c->files[i], name);
            if (t) return t;
        }
    cr_assert_fail("%s (rank %d) not found", name, rank);
    return NULL;
}

static float bf16_at(const st_tensor *t, int64_t index) {
    cr_assert_eq(t->type, G2_TYPE_BF16);
    uint16_t b;
    memcpy(&b, t->data + 2 * index, 2);
    return g2_bf16_to_f32(b);
}

/* Compares a plain (unsplit) tensor element by element. */
static void expect_plain(const gguf_file *f, const char *gguf_name, const checkpoint *c, const char *hf_name) {
    const gguf_tensor *g = gguf_find_tensor(f, gguf_name);
    const st_tensor *s = source(c, hf_name, -1);
    int64_t n = g->ne[0] * g->ne[1];
    cr_assert_eq((uint64_t)n * 2, s->nbytes, "%s size", gguf_name);
    const float *v = g->data;
    for (int64_t i = 0; i < n; i++)
        if (v[i] != bf16_at(s, i)) cr_assert_fail("%s[%lld]: %g != %g", gguf_name, (long long)i, v[i], bf16_at(s, i));
}

/* Experts: w1/w3 split by rows over the ranks, w2 by columns; stacked with the expert last. */
static void expect_experts(const gguf_file *f, int layer, const checkpoint *c) {
    static const char *const gguf_names[] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
    static const char *const hf_names[] = {"w1", "w3", "w2"};
    const int part = EXPERT_FF / RANKS;
    for (int m = 0; m < 3; m++) {
        char name[128];
        snprintf(name, sizeof name, "blk.%d.%s.weight", layer, gguf_names[m]);
        const float *v = gguf_find_tensor(f, name)->data;
        for (int e = 0; e < EXPERTS; e++) {
            char hf[128];
            snprintf(hf, sizeof hf, "model.layers.%d.block_sparse_moe.experts.%d.%s.weight", layer, e, hf_names[m]);
            for (int r = 0; r < RANKS; r++) {
                const st_tensor *s = source(c, hf, r);
                if (m < 2) { /* [EXPERT_FF / RANKS, HIDDEN] rows of rank r */
                    for (int row = 0; row < part; row++)
                        for (int col = 0; col < HIDDEN; col++) {
                            float want = bf16_at(s, row * HIDDEN + col);
                            float got = v[((int64_t)e * EXPERT_FF + r * part + row) * HIDDEN + col];
                            if (got != want) cr_assert_fail("%s e%d rank %d row %d col %d", name, e, r, row, col);
                        }
                } else { /* [HIDDEN, EXPERT_FF / RANKS] columns of rank r */
                    for (int row = 0; row < HIDDEN; row++)
                        for (int col = 0; col < part; col++) {
                            float want = bf16_at(s, row * part + col);
                            float got = v[((int64_t)e * HIDDEN + row) * EXPERT_FF + r * part + col];
                            if (got != want) cr_assert_fail("%s e%d rank %d row %d col %d", name, e, r, row, col);
                        }
                }
            }
        }
    }
}

Test(convert_output, f32_file_holds_the_bf16_source_values_exactly) {
    char *dir = harness_tmpdir("convert-values");
    char hf[512], path[512];
    snprintf(hf, sizeof hf, "%s/hf", dir);
    snprintf(path, sizeof path, "%s/f32.gguf", dir);
    run_ok("synth", harness_run("%s synth tiny -o %s --seed 11", harness_grok2(), hf));
    run_ok("convert", harness_run("%s convert %s -o %s --type f32", harness_grok2(), hf, path));
    checkpoint c;
    open_checkpoint(hf, &c);
    gguf_file *f;
    g2_error err;
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    expect_plain(f, "token_embd.weight", &c, "model.embed_tokens.weight");
    expect_plain(f, "output.weight", &c, "lm_head.weight");
    expect_plain(f, "output_norm.weight", &c, "model.norm.weight");
    static const char *const pairs[][2] = {
        {"attn_norm", "pre_attn_norm"},       {"attn_q", "self_attn.q_proj"},   {"attn_k", "self_attn.k_proj"},
        {"attn_v", "self_attn.v_proj"},       {"attn_output", "self_attn.o_proj"}, {"attn_output_norm", "post_attn_norm"},
        {"ffn_norm", "pre_moe_norm"},         {"ffn_gate_inp", "block_sparse_moe.gate"}, {"ffn_gate", "mlp.gate_proj"},
        {"ffn_up", "mlp.up_proj"},            {"ffn_down", "mlp.down_proj"},    {"post_ffw_norm", "post_moe_norm"},
    };
    for (int l = 0; l < LAYERS; l++) {
        for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
            char g[128], h[128];
            snprintf(g, sizeof g, "blk.%d.%s.weight", l, pairs[i][0]);
            snprintf(h, sizeof h, "model.layers.%d.%s.weight", l, pairs[i][1]);
            expect_plain(f, g, &c, h);
        }
        expect_experts(f, l, &c);
    }
    gguf_close(f);
    close_checkpoint(&c);
    remove_dir(dir);
}

/* The tensor data (everything after the header) of two GGUF files is identical. */
static void expect_same_tensors(const char *a, const char *b) {
    gguf_file *fa, *fb;
    g2_error err;
    cr_assert_eq(gguf_open(&fa, a, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_open(&fb, b, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_tensor_count(fa), gguf_tensor_count(fb));
    for (int64_t i = 0; i < gguf_tensor_count(fa); i++) {
        const gguf_tensor *x = gguf_tensor_at(fa, i), *y = gguf_find_tensor(fb, x->name);
        cr_assert(y, "%s", x->name);
        cr_assert_eq(x->type, y->type, "%s", x->name);
        cr_assert_eq(x->nbytes, y->nbytes, "%s", x->name);
        cr_assert_eq(memcmp(x->data, y->data, x->nbytes), 0, "%s differs", x->name);
    }
    gguf_close(fa);
    gguf_close(fb);
}

Test(convert_output, synth_gguf_holds_the_same_tensors_as_converting_the_synth_checkpoint) {
    char *dir = harness_tmpdir("convert-synth-gguf");
    run_ok("synth", harness_run("%s synth tiny -o %s/hf --seed 5 --router-skew 0.5", harness_grok2(), dir));
    static const char *const types[] = {"f32", "q4_k_m"};
    for (size_t i = 0; i < 2; i++) {
        char a[512], b[512];
        snprintf(a, sizeof a, "%s/conv-%s.gguf", dir, types[i]);
        snprintf(b, sizeof b, "%s/synth-%s.gguf", dir, types[i]);
        run_ok("convert", harness_run("%s convert %s/hf -o %s --type %s", harness_grok2(), dir, a, types[i]));
        run_ok("synth --gguf", harness_run("%s synth tiny --gguf %s -o %s --seed 5 --router-skew 0.5", harness_grok2(),
                                           types[i], b));
        expect_same_tensors(a, b);
    }
    remove_dir(dir);
}

Test(convert_output, synth_is_reproducible_for_a_seed_and_differs_across_seeds) {
    char *dir = harness_tmpdir("convert-seed");
    run_ok("synth a", harness_run("%s synth tiny -o %s/a --seed 3 --threads 1", harness_grok2(), dir));
    run_ok("synth b", harness_run("%s synth tiny -o %s/b --seed 3 --threads 2", harness_grok2(), dir));
    run_ok("synth c", harness_run("%s synth tiny -o %s/c --seed 4", harness_grok2(), dir));
    run_ok("same seed, same bytes", harness_run("diff -r '%s/a' '%s/b'", dir, dir));
    harness_result r = harness_run("cmp -s '%s/a/pytorch_model-00011-TP-common.safetensors' "
                                   "'%s/c/pytorch_model-00011-TP-common.safetensors'",
                                   dir, dir);
    cr_assert_neq(r.status, 0, "another seed must give other weights");
    harness_result_free(&r);
    remove_dir(dir);
}

Test(convert_output, synth_writes_the_release_file_layout_and_config_keys) {
    char *dir = harness_tmpdir("convert-layout");
    run_ok("synth", harness_run("%s synth tiny -o %s/hf --tp 4", harness_grok2(), dir));
    harness_result r = harness_run("cd '%s/hf' && ls", dir);
    cr_assert_eq(r.status, 0);
    cr_assert(strstr(r.out, "pytorch_model-00000-TP-common.safetensors"));
    cr_assert(strstr(r.out, "pytorch_model-00007-TP-003.safetensors"));
    cr_assert(!strstr(r.out, "TP-004"), "--tp 4 makes ranks 000..003");
    cr_assert(strstr(r.out, "pytorch_model-00017-TP-common.safetensors"));
    cr_assert(strstr(r.out, "tokenizer.tok.json"));
    harness_result_free(&r);
    char path[512];
    snprintf(path, sizeof path, "%s/hf/config.json", dir);
    char *config = harness_read_file(path, NULL);
    static const char *const keys[] = {
        "\"architectures\":\t[\"Grok1ForCausalLM\"]", "\"model_type\":\t\"git\"", "\"rope_type\":\t\"original\"",
        "\"torch_dtype\":\t\"bfloat16\"", "\"residual_moe\":\ttrue", "\"original_max_position_embeddings\"",
        "\"scaling_factor\"", "\"beta_fast\"", "\"beta_slow\"", "\"extrapolation_factor\"", "\"attn_factor\"",
        "\"max_position_embeddings\"", "\"rms_norm_eps\"", "\"attn_logit_softcapping\"", "\"router_logit_softcapping\"",
        "\"final_logit_softcapping\"", "\"embedding_multiplier_scale\":\t16", "\"output_multiplier_scale\"",
        "\"attn_temperature_len\"", "\"sliding_window_size\":\t-1", "\"global_attn_every_n\"", "\"rope_theta\":\t208533496",
        "\"moe_intermediate_size\":\t512", "\"intermediate_size\":\t1024", "\"num_local_experts\":\t4",
    };
    cr_assert(config);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) cr_assert(strstr(config, keys[i]), "no %s", keys[i]);
    free(config);
    grok_config c;
    g2_error err;
    cr_assert_eq(grok_config_read(path, &c, &err), 0, "%s", err.msg);
    remove_dir(dir);
}

Test(convert_output, checkpoint_without_tokenizer_converts_with_a_warning_and_no_tokenizer_keys) {
    char *dir = harness_tmpdir("convert-notok");
    harness_result r = harness_run("%s synth tiny -o %s/hf && rm %s/hf/tokenizer.tok.json && "
                                   "%s convert %s/hf -o %s/x.gguf --type q8_0",
                                   harness_grok2(), dir, dir, harness_grok2(), dir, dir);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.err, "tokenizer.tok.json not found"), "%s", r.err);
    harness_result_free(&r);
    char path[512];
    snprintf(path, sizeof path, "%s/x.gguf", dir);
    gguf_file *f;
    g2_error err;
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    cr_assert_lt(gguf_find_key(f, "tokenizer.ggml.tokens"), 0);
    cr_assert_geq(gguf_find_key(f, "grok.block_count"), 0);
    gguf_close(f);
    remove_dir(dir);
}

Test(convert_output, synth_gguf_dry_run_plans_the_full_release_shape_without_writing) {
    harness_result r = harness_run("%s synth grok2 --gguf q4_k_m -o /nonexistent/x.gguf --dry-run", harness_grok2());
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "total: 963 tensors, 539.03 GB read"), "%s", r.out);
    cr_assert(strstr(r.out, "blk.63.ffn_down_exps.weight      16384 x 8192 x 8 "), "%s", r.out);
    harness_result_free(&r);
}

/* TP reassembly, proven with shards whose every value encodes where it came from: the experts
 * of a small synthetic checkpoint are replaced by F32 shards written here, one file per rank
 * (named so that directory order is the reverse of rank order), each value equal to
 * code(layer, expert, matrix, rank, row, col). After convert --type f32 every element of the
 * stacked ffn_*_exps tensors must hold the code of the place the release layout puts there:
 * w1/w3 rank slices stacked by rows, w2 slices side by side by columns, experts last. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../convert/convert.h"
#include "harness.h"

enum { LAYERS = 2, EXPERTS = 3, HIDDEN = 64, EXPERT_FF = 32, RANKS = 4, PART = EXPERT_FF / RANKS };
static const char *const matrix_names[3] = {"w1", "w3", "w2"};

/* Exact in F32 (below 2^24): 2 x 3 x 3 x 4 x 512 values. */
static float code(int layer, int expert, int matrix, int rank, int row, int col, int cols) {
    int rows = matrix == 2 ? HIDDEN : PART;
    return (float)(((((layer * EXPERTS + expert) * 3 + matrix) * RANKS + rank) * rows + row) * cols + col);
}

static void write_rank_file(const char *dir, int rank) {
    char path[1024];
    snprintf(path, sizeof path, "%s/pytorch_model-%05d-TP-%03d.safetensors", dir, 10 - rank, rank);
    st_writer *w = st_writer_new();
    g2_error err;
    int64_t inv_freq_shape[1] = {8};
    cr_assert_eq(st_writer_add(w, "model.layers.0.self_attn.rotary_emb.inv_freq", G2_TYPE_F32, 1, inv_freq_shape, &err),
                 0);
    for (int l = 0; l < LAYERS; l++)
        for (int e = 0; e < EXPERTS; e++)
            for (int m = 0; m < 3; m++) {
                char name[128];
                snprintf(name, sizeof name, "model.layers.%d.block_sparse_moe.experts.%d.%s.weight", l, e,
                         matrix_names[m]);
                int64_t shape[2] = {m == 2 ? HIDDEN : PART, m == 2 ? PART : HIDDEN};
                cr_assert_eq(st_writer_add(w, name, G2_TYPE_F32, 2, shape, &err), 0, "%s", err.msg);
            }
    cr_assert_eq(st_writer_begin(w, path, &err), 0, "%s", err.msg);
    float zeros[8] = {0};
    cr_assert_eq(st_writer_write(w, zeros, sizeof zeros, &err), 0);
    for (int l = 0; l < LAYERS; l++)
        for (int e = 0; e < EXPERTS; e++)
            for (int m = 0; m < 3; m++) {
                int rows = m == 2 ? HIDDEN : PART, cols = m == 2 ? PART : HIDDEN;
                for (int row = 0; row < rows; row++)
                    for (int col = 0; col < cols; col++) {
                        float v = code(l, e, m, rank, row, col, cols);
                        cr_assert_eq(st_writer_write(w, &v, 4, &err), 0, "%s", err.msg);
                    }
            }
    cr_assert_eq(st_writer_finish(w, &err), 0, "%s", err.msg);
    st_writer_free(w);
}

Test(convert_tp, experts_are_reassembled_in_rank_order_by_rows_and_columns) {
    char *dir = harness_tmpdir("convert-tp");
    char hf[512], gguf[512];
    snprintf(hf, sizeof hf, "%s/hf", dir);
    snprintf(gguf, sizeof gguf, "%s/f32.gguf", dir);
    harness_result r = harness_run("%s synth tiny -o %s --hidden %d --heads 2 --kv-heads 1 --head-dim 32 --experts %d "
                                   "--expert-ff %d --ff 64 --vocab 300 --tp %d && rm %s/*-TP-0*.safetensors",
                                   harness_grok2(), hf, HIDDEN, EXPERTS, EXPERT_FF, RANKS, hf);
    cr_assert_eq(r.status, 0, "%s", r.err);
    harness_result_free(&r);
    for (int rank = 0; rank < RANKS; rank++) write_rank_file(hf, rank);
    r = harness_run("%s convert %s -o %s --type f32", harness_grok2(), hf, gguf);
    cr_assert_eq(r.status, 0, "%s", r.err);
    harness_result_free(&r);

    gguf_file *f;
    g2_error err;
    cr_assert_eq(gguf_open(&f, gguf, &err), 0, "%s", err.msg);
    static const char *const stacked[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
    for (int l = 0; l < LAYERS; l++)
        for (int m = 0; m < 3; m++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, stacked[m]);
            const gguf_tensor *t = gguf_find_tensor(f, name);
            cr_assert(t && t->type == G2_TYPE_F32, "%s", name);
            const float *v = t->data;
            int64_t ne0 = t->ne[0], ne1 = t->ne[1];
            cr_assert_eq(ne0, m == 2 ? EXPERT_FF : HIDDEN);
            cr_assert_eq(t->ne[2], EXPERTS);
            for (int e = 0; e < EXPERTS; e++)
                for (int64_t i1 = 0; i1 < ne1; i1++)
                    for (int64_t i0 = 0; i0 < ne0; i0++) {
                        float got = v[(e * ne1 + i1) * ne0 + i0], want;
                        if (m < 2) /* row i1 of the expert comes from rank i1 / PART, its row i1 % PART */
                            want = code(l, e, m, (int)(i1 / PART), (int)(i1 % PART), (int)i0, HIDDEN);
                        else /* column i0 from rank i0 / PART, its column i0 % PART */
                            want = code(l, e, m, (int)(i0 / PART), (int)i1, (int)(i0 % PART), PART);
                        if (got != want)
                            cr_assert_fail("%s expert %d [%lld][%lld] = %g, expected %g", name, e, (long long)i1,
                                           (long long)i0, got, want);
                    }
        }
    gguf_close(f);
    r = harness_run("rm -rf '%s'", dir);
    harness_result_free(&r);
    free(dir);
}

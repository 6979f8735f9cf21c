/* grok2 quantize: a bf16 GGUF requantized to a mix equals converting to that mix directly,
 * every kv is carried over with general.file_type updated, tensors already in their target
 * type are copied byte for byte, and quantized input is re-encoded only on request. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../convert/convert.h"
#include "harness.h"

static char *setup(void) {
    char *dir = harness_tmpdir("convert-quantize");
    harness_result r = harness_run("%s synth tiny -o %s/hf --seed 9 && %s convert %s/hf -o %s/bf16.gguf --type bf16 && "
                                   "%s convert %s/hf -o %s/q8_0.gguf --type q8_0",
                                   harness_grok2(), dir, harness_grok2(), dir, dir, harness_grok2(), dir, dir);
    cr_assert_eq(r.status, 0, "%s", r.err);
    harness_result_free(&r);
    return dir;
}

static void remove_dir(char *dir) {
    harness_result r = harness_run("rm -rf '%s'", dir);
    harness_result_free(&r);
    free(dir);
}

static gguf_file *open_in(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    gguf_file *f;
    g2_error err;
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    return f;
}

static void expect_same_tensor_bytes(const gguf_file *a, const gguf_file *b) {
    cr_assert_eq(gguf_tensor_count(a), gguf_tensor_count(b));
    for (int64_t i = 0; i < gguf_tensor_count(a); i++) {
        const gguf_tensor *x = gguf_tensor_at(a, i), *y = gguf_tensor_at(b, i);
        cr_assert_str_eq(x->name, y->name, "tensor order is kept");
        cr_assert_eq(x->type, y->type, "%s: %s vs %s", x->name, g2_type_get(x->type)->name, g2_type_get(y->type)->name);
        cr_assert_eq(x->nbytes, y->nbytes);
        cr_assert_eq(memcmp(x->data, y->data, x->nbytes), 0, "%s differs", x->name);
    }
}

/* Every kv of `in` is in `out` with the same value, except general.file_type. */
static void expect_kvs_copied(const gguf_file *in, const gguf_file *out, uint32_t file_type) {
    for (int64_t i = 0; i < gguf_kv_count(in); i++) {
        gguf_str key = gguf_kv_key(in, i);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)key.len, key.data);
        int64_t j = gguf_find_key(out, name);
        cr_assert_geq(j, 0, "%s was not copied", name);
        cr_assert_eq(gguf_kv_type(in, i), gguf_kv_type(out, j), "%s", name);
        if (!strcmp(name, "general.file_type")) continue;
        char a[4096], b[4096];
        gguf_kv_format(in, i, a, sizeof a);
        gguf_kv_format(out, j, b, sizeof b);
        cr_assert_str_eq(a, b, "%s", name);
        gguf_array x, y;
        if (gguf_kv_as_array(in, i, &x) == 0) {
            cr_assert_eq(gguf_kv_as_array(out, j, &y), 0);
            cr_assert_eq(x.count, y.count, "%s", name);
            for (uint64_t k = 0; k < x.count && x.elem_type == GGUF_TYPE_STRING; k++) {
                gguf_str s = gguf_array_str(in, &x, k), t = gguf_array_str(out, &y, k);
                cr_assert(s.len == t.len && !memcmp(s.data, t.data, s.len), "%s[%llu]", name, (unsigned long long)k);
            }
        }
    }
    uint32_t ft;
    g2_error err;
    cr_assert_eq(gguf_get_u32(out, "general.file_type", &ft, &err), 0);
    cr_assert_eq(ft, file_type);
}

Test(convert_quantize, bf16_requantized_to_q4_k_m_equals_a_direct_conversion) {
    char *dir = setup();
    harness_result r = harness_run("%s quantize %s/bf16.gguf %s/q.gguf q4_k_m && "
                                   "%s convert %s/hf -o %s/direct.gguf --type q4_k_m",
                                   harness_grok2(), dir, dir, harness_grok2(), dir, dir);
    cr_assert_eq(r.status, 0, "%s", r.err);
    harness_result_free(&r);
    gguf_file *in = open_in(dir, "bf16.gguf"), *q = open_in(dir, "q.gguf"), *direct = open_in(dir, "direct.gguf");
    expect_same_tensor_bytes(q, direct);
    expect_kvs_copied(in, q, 15);
    gguf_close(in);
    gguf_close(q);
    gguf_close(direct);
    remove_dir(dir);
}

Test(convert_quantize, quantized_input_needs_allow_requantize) {
    char *dir = setup();
    harness_result r = harness_run("%s quantize %s/q8_0.gguf %s/q.gguf q4_k", harness_grok2(), dir, dir);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "token_embd.weight' is already q8_0"), "%s", r.err);
    cr_assert(strstr(r.err, "--allow-requantize"), "%s", r.err);
    harness_result_free(&r);
    char path[512];
    snprintf(path, sizeof path, "%s/q.gguf", dir);
    cr_assert(!path_exists(path));
    r = harness_run("%s quantize %s/q8_0.gguf %s/q.gguf q4_k --allow-requantize", harness_grok2(), dir, dir);
    cr_assert_eq(r.status, 0, "%s", r.err);
    harness_result_free(&r);
    gguf_file *q = open_in(dir, "q.gguf");
    cr_assert_eq(gguf_find_tensor(q, "blk.0.ffn_up_exps.weight")->type, G2_TYPE_Q4_K);
    cr_assert_eq(gguf_find_tensor(q, "blk.0.ffn_norm.weight")->type, G2_TYPE_F32);
    gguf_close(q);
    remove_dir(dir);
}

Test(convert_quantize, tensors_already_in_the_target_type_are_copied_unchanged) {
    char *dir = setup();
    harness_result r = harness_run("%s quantize %s/q8_0.gguf %s/same.gguf q8_0", harness_grok2(), dir, dir);
    cr_assert_eq(r.status, 0, "no requantization happens, so no flag is needed: %s", r.err);
    harness_result_free(&r);
    gguf_file *a = open_in(dir, "q8_0.gguf"), *b = open_in(dir, "same.gguf");
    expect_same_tensor_bytes(a, b);
    expect_kvs_copied(a, b, 7);
    gguf_close(a);
    gguf_close(b);
    remove_dir(dir);
}

Test(convert_quantize, overrides_and_dry_run_apply_to_quantize_too) {
    char *dir = setup();
    harness_result r = harness_run("%s quantize %s/bf16.gguf %s/q.gguf q8_0 --tensor-type 'output\\.weight=q6_k' --dry-run",
                                   harness_grok2(), dir, dir);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "output.weight"), "%s", r.out);
    harness_result_free(&r);
    char path[512];
    snprintf(path, sizeof path, "%s/q.gguf", dir);
    cr_assert(!path_exists(path));
    r = harness_run("%s quantize %s/bf16.gguf %s/q.gguf q8_0 --tensor-type 'output\\.weight=q6_k'", harness_grok2(), dir,
                    dir);
    cr_assert_eq(r.status, 0, "%s", r.err);
    harness_result_free(&r);
    gguf_file *q = open_in(dir, "q.gguf");
    cr_assert_eq(gguf_find_tensor(q, "output.weight")->type, G2_TYPE_Q6_K);
    cr_assert_eq(gguf_find_tensor(q, "token_embd.weight")->type, G2_TYPE_Q8_0);
    gguf_close(q);
    r = harness_run("%s quantize %s/missing.gguf %s/q2.gguf q8_0", harness_grok2(), dir, dir);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "missing.gguf"), "%s", r.err);
    harness_result_free(&r);
    remove_dir(dir);
}

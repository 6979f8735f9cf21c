/* The command lines of synth, convert and quantize: --help lists only options that exist,
 * usage errors exit 2 with one line, --dry-run prints the plan and writes nothing, rows that
 * do not fit a block size fall back with one note per tensor, and the type plan's rules. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../convert/convert.h"
#include "harness.h"

static void remove_dir(char *dir) {
    harness_result r = harness_run("rm -rf '%s'", dir);
    harness_result_free(&r);
    free(dir);
}

/* Every "--option" the help text mentions is accepted by the parser (not "unknown argument"). */
static void help_tells_the_truth(const char *command) {
    harness_result help = harness_run("%s %s --help", harness_grok2(), command);
    cr_assert_eq(help.status, 0, "%s --help: %d", command, help.status);
    cr_assert(strstr(help.out, "usage: grok2"), "%s", help.out);
    int checked = 0;
    for (const char *p = help.out; (p = strstr(p, "--")) != NULL; p += 2) {
        char option[32];
        int n = 0;
        while (n < 31 && (p[n] == '-' || (p[n] >= 'a' && p[n] <= 'z'))) option[n] = p[n], n++;
        option[n] = 0;
        if (n <= 2) continue;
        harness_result r = harness_run("%s %s %s", harness_grok2(), command, option);
        char unknown[64];
        snprintf(unknown, sizeof unknown, "unknown argument '%s'", option);
        cr_assert(!strstr(r.err, unknown), "%s --help lists %s, which the parser rejects", command, option);
        harness_result_free(&r);
        checked++;
    }
    cr_assert_gt(checked, 3);
    harness_result_free(&help);
}

Test(convert_cli, help_lists_only_options_that_exist) {
    help_tells_the_truth("synth");
    help_tells_the_truth("convert");
    help_tells_the_truth("quantize");
}

Test(convert_cli, usage_errors_exit_2_with_one_line) {
    static const char *const bad[] = {
        "convert",
        "convert dir",
        "convert dir -o x.gguf --type q9_9",
        "convert dir -o x.gguf --threads 0",
        "convert dir -o x.gguf --tensor-type noequals",
        "convert dir -o x.gguf --tensor-type '(=q4_k'",
        "convert dir -o x.gguf --tensor-type 'x=notatype'",
        "convert dir --bogus",
        "quantize a.gguf b.gguf",
        "quantize a.gguf b.gguf q9",
        "synth huge -o x",
        "synth tiny",
        "synth tiny -o x --layers 0",
        "synth tiny -o x --hidden abc",
        "synth tiny -o x --tensor-type 'a=q8_0'",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        harness_result r = harness_run("%s %s", harness_grok2(), bad[i]);
        cr_assert_eq(r.status, 2, "'%s' exited %d: %s", bad[i], r.status, r.err);
        cr_assert_eq(harness_count_lines(r.err), 1, "'%s': %s", bad[i], r.err);
        cr_assert(strstr(r.err, "--help"), "'%s': %s", bad[i], r.err);
        harness_result_free(&r);
    }
}

Test(convert_cli, impossible_synth_dimensions_are_errors) {
    char *dir = harness_tmpdir("convert-cli");
    static const char *const bad[][2] = {
        {"--expert-ff 100", "not divisible by --tp"},
        {"--heads 3 --kv-heads 2", "not a multiple of num_key_value_heads"},
        {"--experts 2 --experts-used 3", "exceeds num_local_experts"},
        {"--vocab 200", "at least 268"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        harness_result r = harness_run("%s synth tiny -o %s/x %s", harness_grok2(), dir, bad[i][0]);
        cr_assert_eq(r.status, 1, "'%s' exited %d", bad[i][0], r.status);
        cr_assert(strstr(r.err, bad[i][1]), "'%s': %s", bad[i][0], r.err);
        harness_result_free(&r);
    }
    remove_dir(dir);
}

Test(convert_cli, dry_run_prints_the_plan_and_writes_nothing) {
    char *dir = harness_tmpdir("convert-cli");
    harness_result r = harness_run("%s synth tiny -o %s/hf && %s convert %s/hf -o %s/x.gguf --type q4_k_m --dry-run",
                                   harness_grok2(), dir, harness_grok2(), dir, dir);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "blk.1.ffn_down_exps.weight"), "%s", r.out);
    cr_assert(strstr(r.out, "512 x 256 x 4"), "shapes in ne order: %s", r.out);
    cr_assert(strstr(r.out, "q6_K"), "%s", r.out);
    cr_assert(strstr(r.out, "total: 33 tensors"), "%s", r.out);
    cr_assert_eq(harness_count_lines(r.out), 35, "header, 33 tensors, total");
    harness_result_free(&r);
    char path[512];
    snprintf(path, sizeof path, "%s/x.gguf", dir);
    cr_assert(!path_exists(path));
    /* the size it announces is the size convert writes */
    r = harness_run("%s convert %s/hf --type q4_k_m --dry-run | sed -n 's/.*(\\([0-9]*\\) bytes)$/\\1/p' && "
                    "%s convert %s/hf -o %s --type q4_k_m 2>/dev/null && stat -c %%s %s",
                    harness_grok2(), dir, harness_grok2(), dir, path, path);
    cr_assert_eq(r.status, 0, "%s", r.err);
    char *second = strchr(r.out, '\n');
    cr_assert(second);
    cr_assert_eq(strtoull(r.out, NULL, 10), strtoull(second + 1, NULL, 10), "%s", r.out);
    harness_result_free(&r);
    remove_dir(dir);
}

Test(convert_cli, rows_that_do_not_fill_a_block_fall_back_with_one_note_per_tensor) {
    char *dir = harness_tmpdir("convert-cli");
    /* hidden 160: a multiple of 32, not of 256 -> q4_K becomes q4_0; head 4 x 64 = 256 stays */
    harness_result r = harness_run("%s synth tiny -o %s/hf --hidden 160 --ff 512 && "
                                   "%s convert %s/hf -o %s/x.gguf --type q4_k",
                                   harness_grok2(), dir, harness_grok2(), dir, dir);
    cr_assert_eq(r.status, 0, "%s", r.err);
    const char *note = "blk.0.attn_q.weight: rows of 160 values do not fill q4_K blocks of 256: writing q4_0";
    cr_assert(strstr(r.err, note), "%s", r.err);
    cr_assert(!strstr(r.err, "attn_output.weight: rows"), "attn_output rows are 256 long: %s", r.err);
    int notes = 0;
    for (const char *p = r.err; (p = strstr(p, "do not fill")) != NULL; p++) notes++;
    /* per layer q, k, v, gate, up, gate_exps, up_exps (ne0 = 160); token_embd and output */
    cr_assert_eq(notes, 2 * 7 + 2, "%s", r.err);
    harness_result_free(&r);
    char path[512];
    snprintf(path, sizeof path, "%s/x.gguf", dir);
    gguf_file *f;
    g2_error err;
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_find_tensor(f, "blk.0.attn_q.weight")->type, G2_TYPE_Q4_0);
    cr_assert_eq(gguf_find_tensor(f, "blk.0.attn_output.weight")->type, G2_TYPE_Q4_K);
    cr_assert_eq(gguf_find_tensor(f, "blk.0.ffn_down.weight")->type, G2_TYPE_Q4_K);
    gguf_close(f);
    remove_dir(dir);
}

Test(convert_cli, tensor_type_overrides_apply_first_match_and_beat_the_mix) {
    char *dir = harness_tmpdir("convert-cli");
    harness_result r = harness_run("%s synth tiny -o %s/hf && %s convert %s/hf -o %s/x.gguf --type q4_k_m "
                                   "--tensor-type 'ffn_down_exps=q8_0' --tensor-type 'exps=q6_k' "
                                   "--tensor-type 'norm=bf16'",
                                   harness_grok2(), dir, harness_grok2(), dir, dir);
    cr_assert_eq(r.status, 0, "%s", r.err);
    harness_result_free(&r);
    char path[512];
    snprintf(path, sizeof path, "%s/x.gguf", dir);
    gguf_file *f;
    g2_error err;
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_find_tensor(f, "blk.0.ffn_down_exps.weight")->type, G2_TYPE_Q8_0);
    cr_assert_eq(gguf_find_tensor(f, "blk.0.ffn_up_exps.weight")->type, G2_TYPE_Q6_K);
    cr_assert_eq(gguf_find_tensor(f, "blk.0.attn_norm.weight")->type, G2_TYPE_BF16);
    cr_assert_eq(gguf_find_tensor(f, "blk.0.ffn_gate.weight")->type, G2_TYPE_Q4_K);
    gguf_close(f);
    remove_dir(dir);
}

Test(convert_cli, plan_rules) {
    const type_mix *m = plan_mix_by_name("Q4_K_M");
    cr_assert(m, "type names are case-insensitive");
    cr_assert_null(plan_mix_by_name("q3_k"));
    /* llama.cpp's use_more_bits over 64 layers: 0-7, 56-63 and every third from 10 */
    int more = 0;
    for (int l = 0; l < 64; l++)
        more += plan_tensor_type(m, NULL, "x", ROLE_FFN_DOWN, l, 64, 2, 8192, G2_TYPE_BF16).type == G2_TYPE_Q6_K;
    cr_assert_eq(more, 8 + 8 + 16);
    cr_assert_eq(plan_tensor_type(m, NULL, "x", ROLE_FFN_DOWN, 10, 64, 2, 8192, G2_TYPE_BF16).type, G2_TYPE_Q6_K);
    cr_assert_eq(plan_tensor_type(m, NULL, "x", ROLE_FFN_DOWN, 11, 64, 2, 8192, G2_TYPE_BF16).type, G2_TYPE_Q4_K);
    cr_assert_eq(plan_tensor_type(m, NULL, "x", ROLE_FFN_GATE_INP, 0, 64, 2, 8192, G2_TYPE_BF16).type, G2_TYPE_F32);
    cr_assert_eq(plan_tensor_type(m, NULL, "x", ROLE_UNKNOWN, -1, 64, 1, 8192, G2_TYPE_BF16).type, G2_TYPE_F32);
    plan_choice c = plan_tensor_type(m, NULL, "x", ROLE_FFN_UP_EXPS, 0, 64, 3, 100, G2_TYPE_BF16);
    cr_assert_eq(c.wanted, G2_TYPE_Q4_K);
    cr_assert_eq(c.type, G2_TYPE_BF16, "100 fits no block: 16 bits, bf16 for a bf16 source");
    c = plan_tensor_type(plan_mix_by_name("q6_k"), NULL, "x", ROLE_ATTN_Q, 0, 64, 2, 96, G2_TYPE_F32);
    cr_assert_eq(c.type, G2_TYPE_Q8_0);
    type_overrides o = {0};
    g2_error err;
    cr_assert_eq(plan_override_add(&o, "blk\\.[0-9]+\\.attn_(q|k)=q8_0", &err), 0, "%s", err.msg);
    cr_assert_eq(plan_tensor_type(m, &o, "blk.12.attn_k.weight", ROLE_ATTN_K, 12, 64, 2, 8192, G2_TYPE_BF16).type,
                 G2_TYPE_Q8_0);
    cr_assert_eq(plan_tensor_type(m, &o, "blk.12.attn_v.weight", ROLE_ATTN_V, 12, 64, 2, 8192, G2_TYPE_BF16).type,
                 G2_TYPE_Q8_0, "the mix's own choice for attn_v");
    plan_overrides_free(&o);
}

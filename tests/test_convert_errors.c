/* Bad input to grok2 convert: each case is a one-line error that names the file, tensor or key,
 * exit status 1, and no output or temp file left behind. Also the two ways a write can die
 * half way: no space left (a file size limit) and Ctrl-C. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../convert/convert.h"
#include "harness.h"

typedef struct {
    char *dir;
    char hf[512], out[512], tmp[520];
} fixture;

static fixture make_fixture(const char *synth_args) {
    fixture x;
    x.dir = harness_tmpdir("convert-bad");
    cr_assert(x.dir);
    snprintf(x.hf, sizeof x.hf, "%s/hf", x.dir);
    snprintf(x.out, sizeof x.out, "%s/out.gguf", x.dir);
    snprintf(x.tmp, sizeof x.tmp, "%s.tmp", x.out);
    harness_result r = harness_run("%s synth tiny -o %s %s", harness_grok2(), x.hf, synth_args);
    cr_assert_eq(r.status, 0, "synth: %s", r.err);
    harness_result_free(&r);
    return x;
}

static void drop_fixture(fixture *x) {
    harness_result r = harness_run("rm -rf '%s'", x->dir);
    harness_result_free(&r);
    free(x->dir);
}

static void expect_nothing_written(const fixture *x) {
    cr_assert(!path_exists(x->out), "%s was left behind", x->out);
    cr_assert(!path_exists(x->tmp), "%s was left behind", x->tmp);
}

/* convert fails with status 1 and one line of stderr holding both fragments. */
static void expect_convert_error(fixture *x, const char *fragment1, const char *fragment2) {
    harness_result r = harness_run("%s convert %s -o %s --type q8_0", harness_grok2(), x->hf, x->out);
    cr_assert_eq(r.status, 1, "status %d, stderr: %s", r.status, r.err);
    cr_assert(strstr(r.err, fragment1), "stderr lacks '%s': %s", fragment1, r.err);
    if (fragment2) cr_assert(strstr(r.err, fragment2), "stderr lacks '%s': %s", fragment2, r.err);
    cr_assert_eq(harness_count_lines(r.err), 1, "one line: %s", r.err);
    harness_result_free(&r);
    expect_nothing_written(x);
    drop_fixture(x);
}

static void shell(const char *fmt, const char *a, const char *b) {
    harness_result r = harness_run(fmt, a, b);
    cr_assert_eq(r.status, 0, "%s", r.err);
    harness_result_free(&r);
}

/* Replaces the first `from` in the file by `to` (same length). */
static void patch_file(const char *dir, const char *file, const char *from, const char *to) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    size_t len;
    char *data = harness_read_file(path, &len);
    cr_assert(data, "%s", path);
    cr_assert_eq(strlen(from), strlen(to));
    char *at = memmem(data, len, from, strlen(from));
    cr_assert(at, "%s has no '%s'", path, from);
    memcpy(at, to, strlen(to));
    FILE *f = fopen(path, "wb");
    cr_assert(f && fwrite(data, 1, len, f) == len && fclose(f) == 0);
    free(data);
}

Test(convert_errors, missing_tp_shard_names_the_tensor_rank_and_file) {
    fixture x = make_fixture("");
    shell("rm %s/pytorch_model-00007-TP-003.safetensors%s", x.hf, "");
    expect_convert_error(&x, "experts.0.w2.weight': TP rank 003 is missing",
                         "pytorch_model-00007-TP-003.safetensors");
}

Test(convert_errors, missing_rank_files_are_detected_from_the_names) {
    fixture x = make_fixture("");
    shell("rm %s/*-TP-002.safetensors%s", x.hf, "");
    expect_convert_error(&x, "no file for TP rank 002", NULL);
}

Test(convert_errors, missing_last_rank_shows_as_a_size_that_does_not_split) {
    fixture x = make_fixture("");
    shell("rm %s/*-TP-007.safetensors%s", x.hf, "");
    expect_convert_error(&x, "moe_intermediate_size 512 is not divisible by 7 TP ranks", NULL);
}

Test(convert_errors, shard_with_a_wrong_shape_names_file_tensor_and_shapes) {
    fixture x = make_fixture("");
    /* rank 2's w1 slices: 2 layers x 4 experts of [64, 256]; expert 1 of layer 0 gets [32, 256] */
    char path[1024];
    snprintf(path, sizeof path, "%s/pytorch_model-00006-TP-002.safetensors", x.hf);
    unlink(path);
    st_writer *w = st_writer_new();
    g2_error err;
    for (int l = 0; l < 2; l++)
        for (int e = 0; e < 4; e++) {
            char name[128];
            snprintf(name, sizeof name, "model.layers.%d.block_sparse_moe.experts.%d.w1.weight", l, e);
            int64_t shape[2] = {l == 0 && e == 1 ? 32 : 64, 256};
            cr_assert_eq(st_writer_add(w, name, G2_TYPE_BF16, 2, shape, &err), 0);
        }
    cr_assert_eq(st_writer_begin(w, path, &err), 0, "%s", err.msg);
    uint16_t *zeros = calloc(64 * 256, 2);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(st_writer_write(w, zeros, (i == 1 ? 32 : 64) * 256 * 2, &err), 0, "%s", err.msg);
    cr_assert_eq(st_writer_finish(w, &err), 0, "%s", err.msg);
    st_writer_free(w);
    free(zeros);
    expect_convert_error(&x, "pytorch_model-00006-TP-002.safetensors: tensor 'model.layers.0.block_sparse_moe.experts.1.w1",
                         "has shape [32, 256], expected [64, 256]");
}

Test(convert_errors, truncated_safetensors_file) {
    fixture x = make_fixture("");
    shell("truncate -s -100 %s/pytorch_model-00011-TP-common.safetensors%s", x.hf, "");
    expect_convert_error(&x, "pytorch_model-00011-TP-common.safetensors", "file truncated?");
}

Test(convert_errors, header_that_lies_about_offsets) {
    fixture x = make_fixture("");
    patch_file(x.hf, "pytorch_model-00002-TP-common.safetensors", "[0,512]", "[2,514]");
    expect_convert_error(&x, "tensor 'model.norm.weight': data_offsets [2, 514] run past the data section", NULL);
}

Test(convert_errors, duplicate_tensors_across_files) {
    fixture x = make_fixture("");
    shell("cp %s/pytorch_model-00002-TP-common.safetensors %s/pytorch_model-00099-TP-common.safetensors", x.hf, x.hf);
    expect_convert_error(&x, "tensor 'model.norm.weight' appears twice", "pytorch_model-00099-TP-common.safetensors");
}

Test(convert_errors, unknown_dtype_is_named) {
    fixture x = make_fixture("");
    patch_file(x.hf, "pytorch_model-00002-TP-common.safetensors", "\"BF16\"", "\"BX16\"");
    expect_convert_error(&x, "unknown dtype 'BX16'", "model.norm.weight");
}

Test(convert_errors, unknown_tensor_is_named) {
    fixture x = make_fixture("");
    patch_file(x.hf, "pytorch_model-00002-TP-common.safetensors", "model.norm.weight", "model.norm.weigh2");
    expect_convert_error(&x, "unknown tensor 'model.norm.weigh2'", NULL);
}

Test(convert_errors, missing_tensor_is_named) {
    fixture x = make_fixture("");
    shell("rm %s/pytorch_model-00002-TP-common.safetensors%s", x.hf, "");
    expect_convert_error(&x, "missing tensor 'model.norm.weight'", NULL);
}

Test(convert_errors, missing_config_key_is_named) {
    fixture x = make_fixture("");
    patch_file(x.hf, "config.json", "\"head_dim\"", "\"head_dun\"");
    expect_convert_error(&x, "config.json: missing key \"head_dim\"", NULL);
}

Test(convert_errors, config_key_of_the_wrong_json_type_is_named) {
    fixture x = make_fixture("");
    patch_file(x.hf, "config.json", "\"residual_moe\":\ttrue", "\"residual_moe\":\t\"ab\"");
    expect_convert_error(&x, "\"residual_moe\" must be true", NULL);
}

Test(convert_errors, malformed_config_json) {
    fixture x = make_fixture("");
    shell("truncate -s 100 %s/config.json%s", x.hf, "");
    expect_convert_error(&x, "config.json: not valid JSON", NULL);
}

Test(convert_errors, malformed_tokenizer_json) {
    fixture x = make_fixture("");
    patch_file(x.hf, "tokenizer.tok.json", "{\"regular_tokens\":[", "{\"regular_tokens\":{");
    expect_convert_error(&x, "tokenizer.tok.json: not valid JSON", NULL);
}

Test(convert_errors, tokenizer_with_another_word_split_is_rejected) {
    fixture x = make_fixture("");
    patch_file(x.hf, "tokenizer.tok.json", "\"word_split\":\"V1\"", "\"word_split\":\"V2\"");
    expect_convert_error(&x, "word_split \"V2\" is not supported", NULL);
}

Test(convert_errors, existing_output_is_not_overwritten_without_force) {
    fixture x = make_fixture("");
    FILE *f = fopen(x.out, "w");
    fputs("precious", f);
    fclose(f);
    harness_result r = harness_run("%s convert %s -o %s --type q8_0", harness_grok2(), x.hf, x.out);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "exists (use --force"), "%s", r.err);
    harness_result_free(&r);
    char *kept = harness_read_file(x.out, NULL);
    cr_assert_str_eq(kept, "precious");
    free(kept);
    r = harness_run("%s convert %s -o %s --type q8_0 --force", harness_grok2(), x.hf, x.out);
    cr_assert_eq(r.status, 0, "%s", r.err);
    harness_result_free(&r);
    drop_fixture(&x);
}

/* ---- dying half way through the write ------------------------------------------------------ */

/* Starts grok2 with argv (NULL-terminated after the program), stdout/stderr to err_path. */
static pid_t spawn(char *const argv[], const char *err_path, rlim_t file_limit) {
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen(err_path, "w", stderr)) _exit(127);
        /* as from a terminal: a test run started in the background (`make test &` from a script)
         * inherits SIGINT ignored, and convert rightly keeps an ignored Ctrl-C ignored */
        signal(SIGINT, SIG_DFL);
        if (file_limit) {
            struct rlimit rl = {file_limit, file_limit};
            signal(SIGXFSZ, SIG_IGN); /* write() then fails with EFBIG, like a full disk */
            setrlimit(RLIMIT_FSIZE, &rl);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

Test(convert_errors, no_space_left_fails_cleanly_and_removes_the_temp_file) {
    fixture x = make_fixture("");
    char err_path[600];
    snprintf(err_path, sizeof err_path, "%s/stderr", x.dir);
    char *argv[] = {(char *)harness_grok2(), "convert", x.hf, "-o", x.out, "--type", "f32", NULL};
    pid_t pid = spawn(argv, err_path, 1 << 20);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    char *err = harness_read_file(err_path, NULL);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %d: %s", status, err);
    cr_assert(strstr(err, "out.gguf.tmp"), "the message names the file: %s", err);
    cr_assert(strstr(err, "File too large") || strstr(err, "No space"), "the message says why: %s", err);
    free(err);
    expect_nothing_written(&x);
    drop_fixture(&x);
}

static off_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

Test(convert_errors, ctrl_c_mid_write_leaves_nothing_behind) {
    fixture x = make_fixture("--layers 12 --expert-ff 1024"); /* ~80 MB to write as f32 */
    char err_path[600];
    snprintf(err_path, sizeof err_path, "%s/stderr", x.dir);
    char *argv[] = {(char *)harness_grok2(), "convert", x.hf, "-o", x.out, "--type", "f32", "--threads", "1", NULL};
    pid_t pid = spawn(argv, err_path, 0);
    /* wait until the data is streaming (past the header), then interrupt */
    struct timespec pause = {0, 200000};
    for (int i = 0; i < 100000 && file_size(x.tmp) < (1 << 20); i++) nanosleep(&pause, NULL);
    cr_assert_geq(file_size(x.tmp), 1 << 20, "the temp file never grew");
    kill(pid, SIGINT);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT, "status %d: died of Ctrl-C", status);
    expect_nothing_written(&x);
    drop_fixture(&x);
}

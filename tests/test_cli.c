/* The command line as a user meets it: help that lists what exists, `grok2 info` on good and
 * malformed files (one clear error line naming the file, a non-zero exit, no crash). */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static char *seed_path(const char *name) {
    char *p = malloc(512);
    snprintf(p, 512, "%s/tests/data/gguf-seeds/%s", harness_root(), name);
    return p;
}

Test(cli, help_lists_every_command_and_each_command_has_help) {
    harness_result r = harness_run("%s --help", harness_grok2());
    cr_assert_eq(r.status, 0);
    cr_expect(strstr(r.out, "info"), "%s", r.out);
    /* every listed command answers --help with exit 0 */
    char *copy = strdup(r.out);
    int listed = 0;
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        char name[32];
        if (strncmp(line, "  ", 2) || sscanf(line, " %31s", name) != 1) continue;
        harness_result h = harness_run("%s %s --help", harness_grok2(), name);
        cr_expect_eq(h.status, 0, "grok2 %s --help exits %d", name, h.status);
        cr_expect(strstr(h.out, "usage: grok2"), "grok2 %s --help: %s", name, h.out);
        harness_result_free(&h);
        listed++;
    }
    cr_expect_geq(listed, 2);
    free(copy);
    harness_result_free(&r);
    r = harness_run("%s frobnicate", harness_grok2());
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "unknown command 'frobnicate'"), "%s", r.err);
    harness_result_free(&r);
}

Test(cli, info_lists_metadata_and_tensors_of_a_valid_file) {
    char *path = seed_path("tensors.gguf");
    harness_result r = harness_run("%s info %s", harness_grok2(), path);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "version     3"), "%s", r.out);
    cr_expect(strstr(r.out, "tensors ("), "%s", r.out);
    cr_expect(strstr(r.out, "bytes by type"), "%s", r.out);
    harness_result_free(&r);
    r = harness_run("%s info --json %s", harness_grok2(), path);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cJSON *j = cJSON_Parse(r.out);
    cr_assert(j, "info --json is not JSON: %.200s", r.out);
    cr_expect(cJSON_IsArray(cJSON_GetObjectItem(j, "tensors")));
    cr_expect_eq(cJSON_GetObjectItem(j, "version")->valueint, 3);
    cJSON_Delete(j);
    harness_result_free(&r);
    free(path);
}

/* Every truncation of a valid file, and a few corruptions, through the CLI. */
Test(cli, info_on_malformed_files_prints_one_line_naming_the_file_and_exits_1) {
    char *src = seed_path("tensors.gguf");
    size_t len;
    char *bytes = harness_read_file(src, &len);
    cr_assert(bytes, "cannot read %s", src);
    char *dir = harness_tmpdir("cli-bad");
    char path[600];
    snprintf(path, sizeof path, "%s/bad.gguf", dir);
    size_t cuts[] = {0, 3, 4, 7, 8, 15, 23, 24, 40, len / 2}; /* (the last padding is optional) */
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        FILE *f = fopen(path, "wb");
        fwrite(bytes, 1, cuts[i], f);
        fclose(f);
        harness_result r = harness_run("%s info %s", harness_grok2(), path);
        cr_expect_eq(r.status, 1, "cut at %zu: exit %d", cuts[i], r.status);
        cr_expect(strstr(r.err, path), "cut at %zu: '%s' does not name the file", cuts[i], r.err);
        cr_expect_eq(harness_count_lines(r.err), 1, "cut at %zu: '%s'", cuts[i], r.err);
        harness_result_free(&r);
    }
    /* a huge tensor count */
    char *corrupt = malloc(len);
    memcpy(corrupt, bytes, len);
    memset(corrupt + 8, 0xff, 7);
    FILE *f = fopen(path, "wb");
    fwrite(corrupt, 1, len, f);
    fclose(f);
    harness_result r = harness_run("%s info %s", harness_grok2(), path);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "tensor"), "%s", r.err);
    harness_result_free(&r);
    r = harness_run("%s info %s/does-not-exist.gguf", harness_grok2(), dir);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "does-not-exist.gguf"), "%s", r.err);
    harness_result_free(&r);
    r = harness_run("%s info", harness_grok2());
    cr_expect_eq(r.status, 2);
    harness_result_free(&r);
    free(corrupt);
    free(bytes);
    free(src);
    free(dir);
}

/* The model commands share -t/--threads and --kv-type: bad values are refused the same way by
 * each, before any file is opened. */
Test(cli, shared_context_flags_are_checked_by_every_model_command) {
    static const char *const commands[] = {"run -p x", "chat", "perplexity -f x", "bench", "logits --tokens 1"};
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        char name[16];
        sscanf(commands[i], "%15s", name);
        harness_result r = harness_run("%s %s -m none.gguf -t many", harness_grok2(), commands[i]);
        cr_expect_eq(r.status, 2, "%s -t many: exit %d", name, r.status);
        char want[96];
        snprintf(want, sizeof want, "grok2 %s: -t wants a non-negative integer, got 'many'", name);
        cr_expect(strstr(r.err, want), "%s: '%s'", name, r.err);
        harness_result_free(&r);
        r = harness_run("%s %s -m none.gguf --kv-type q4", harness_grok2(), commands[i]);
        cr_expect_eq(r.status, 2, "%s --kv-type q4: exit %d", name, r.status);
        cr_expect(strstr(r.err, "--kv-type is f16, f32 or bf16, not 'q4'"), "%s: '%s'", name, r.err);
        harness_result_free(&r);
    }
}

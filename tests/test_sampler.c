/* Sampling: greedy, the filters, the penalties and reproducibility, on hand-made logits. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "../runtime/runtime.h"

static sampler_params plain(float temperature) {
    sampler_params p = sampler_defaults();
    p.temperature = temperature;
    p.top_k = 0, p.top_p = 1.0f, p.min_p = 0.0f;
    return p;
}

/* logits of probabilities 0.5, 0.3, 0.2 (and a few negligible tokens) */
static void three_way(float *logits, int n) {
    for (int i = 0; i < n; i++) logits[i] = -30.0f;
    logits[0] = logf(0.5f), logits[1] = logf(0.3f), logits[2] = logf(0.2f);
}

static void count_draws(sampler_params p, int *counts, int draws) {
    enum { V = 8 };
    sampler *s = sampler_new(&p, V);
    cr_assert(s);
    float logits[V];
    for (int d = 0; d < draws; d++) {
        three_way(logits, V);
        int32_t t = sampler_sample(s, logits, NULL, 0);
        cr_assert(t >= 0 && t < V);
        counts[t]++;
    }
    sampler_free(s);
}

Test(sampler, temperature_zero_is_argmax) {
    sampler_params p = plain(0);
    sampler *s = sampler_new(&p, 5);
    float logits[5] = {0.1f, 2.0f, -1.0f, 1.9f, 2.0f};
    cr_expect_eq(sampler_sample(s, logits, NULL, 0), 1, "ties go to the lower id");
    sampler_free(s);
}

Test(sampler, temperature_one_draws_by_probability) {
    int counts[8] = {0};
    count_draws(plain(1.0f), counts, 20000);
    cr_expect(fabs(counts[0] / 20000.0 - 0.5) < 0.02, "p0 %g", counts[0] / 20000.0);
    cr_expect(fabs(counts[1] / 20000.0 - 0.3) < 0.02, "p1 %g", counts[1] / 20000.0);
    cr_expect(fabs(counts[2] / 20000.0 - 0.2) < 0.02, "p2 %g", counts[2] / 20000.0);
}

Test(sampler, top_k_one_is_greedy_at_any_temperature) {
    sampler_params p = plain(5.0f);
    p.top_k = 1;
    int counts[8] = {0};
    count_draws(p, counts, 500);
    cr_expect_eq(counts[0], 500);
}

Test(sampler, top_p_keeps_the_smallest_set_reaching_p) {
    sampler_params p = plain(1.0f);
    p.top_p = 0.6f; /* 0.5 < 0.6, 0.5 + 0.3 >= 0.6: tokens 0 and 1 */
    int counts[8] = {0};
    count_draws(p, counts, 4000);
    cr_expect_eq(counts[2], 0);
    cr_expect_gt(counts[1], 1000);
    cr_expect(fabs(counts[0] / 4000.0 - 0.625) < 0.03, "renormalised p0 %g", counts[0] / 4000.0);
}

Test(sampler, min_p_drops_tokens_below_the_fraction_of_the_best) {
    sampler_params p = plain(1.0f);
    p.min_p = 0.5f; /* keep p >= 0.25: tokens 0 and 1 */
    int counts[8] = {0};
    count_draws(p, counts, 4000);
    cr_expect_eq(counts[2], 0);
    cr_expect_gt(counts[1], 1000);
}

Test(sampler, same_seed_same_tokens_other_seed_other_tokens) {
    sampler_params p = plain(1.0f);
    int32_t a[64], b[64], c[64];
    for (int run = 0; run < 3; run++) {
        p.seed = run == 2 ? 99 : 7;
        sampler *s = sampler_new(&p, 8);
        float logits[8];
        for (int i = 0; i < 64; i++) {
            three_way(logits, 8);
            (run == 0 ? a : run == 1 ? b : c)[i] = sampler_sample(s, logits, NULL, 0);
        }
        sampler_free(s);
    }
    cr_expect_eq(memcmp(a, b, sizeof a), 0);
    cr_expect_neq(memcmp(a, c, sizeof a), 0);
}

Test(sampler, repeat_and_presence_penalties_push_seen_tokens_down) {
    sampler_params p = plain(0);
    p.repeat_penalty = 2.0f;
    sampler *s = sampler_new(&p, 3);
    float logits[3] = {2.0f, 1.5f, -1.0f};
    int32_t history[] = {0, 0, 2};
    cr_expect_eq(sampler_sample(s, logits, history, 3), 1);
    cr_expect_float_eq(logits[0], 1.0f, 1e-6, "positive logits are divided once, however often seen");
    cr_expect_float_eq(logits[2], -2.0f, 1e-6, "negative logits are multiplied");
    sampler_free(s);
    p.repeat_penalty = 1.0f, p.presence_penalty = 1.0f, p.penalty_last_n = 1;
    s = sampler_new(&p, 3);
    float l2[3] = {2.0f, 1.5f, -1.0f};
    int32_t h2[] = {1, 0};
    cr_expect_eq(sampler_sample(s, l2, h2, 2), 1, "only the last token (0) is penalised");
    sampler_free(s);
}

Test(sampler, flags_parse_and_reject_bad_values) {
    sampler_params p = sampler_defaults();
    g2_error err;
    char *ok[] = {"x", "--temp", "0.5", "--top-k", "7", "--seed", "123456789012", "--min-p", "0"};
    for (int i = 1; i < 9; i++) cr_assert_eq(sampler_parse_flag(&p, 9, ok, &i, &err), 1, "%s", ok[i]);
    cr_expect_float_eq(p.temperature, 0.5f, 1e-7);
    cr_expect_eq(p.top_k, 7);
    cr_expect_eq(p.seed, 123456789012ull);
    char *bad[][2] = {{"--temp", "-1"}, {"--top-p", "0"}, {"--top-k", "x"}, {"--min-p", "1.5"}, {"--seed", "-3"}};
    for (int b = 0; b < 5; b++) {
        char *argv[] = {"x", bad[b][0], bad[b][1]};
        int i = 1;
        cr_expect_eq(sampler_parse_flag(&p, 3, argv, &i, &err), -1, "%s %s", bad[b][0], bad[b][1]);
        cr_expect(strstr(err.msg, bad[b][0]), "%s", err.msg);
    }
    char *other[] = {"x", "--ctx", "5"};
    int i = 1;
    cr_expect_eq(sampler_parse_flag(&p, 3, other, &i, &err), 0);
    char *missing[] = {"x", "--temp"};
    i = 1;
    cr_expect_eq(sampler_parse_flag(&p, 2, missing, &i, &err), -1);
}

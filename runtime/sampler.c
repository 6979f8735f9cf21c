/* Sampling: penalties on the history, then temperature, then the filters (top-k, min-p,
 * top-p) on the sorted candidates, then one draw from a seeded generator. Greedy when the
 * temperature is 0. Buffers are allocated once per sampler: nothing allocates per token. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

typedef struct {
    int32_t id;
    float p; /* logit, then probability */
} candidate;

struct sampler {
    sampler_params params;
    uint32_t n_vocab;
    candidate *candidates;
    uint8_t *seen; /* per token: already penalised in this call */
    uint64_t rng;
};

sampler_params sampler_defaults(void) {
    return (sampler_params){.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                            .repeat_penalty = 1.0f, .presence_penalty = 0.0f, .penalty_last_n = 64, .seed = 0};
}

sampler *sampler_new(const sampler_params *params, uint32_t n_vocab) {
    sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->params = *params;
    s->n_vocab = n_vocab;
    s->candidates = malloc(n_vocab * sizeof *s->candidates);
    s->seen = calloc(n_vocab, 1);
    s->rng = params->seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    if (!s->candidates || !s->seen) {
        sampler_free(s);
        return NULL;
    }
    return s;
}

void sampler_free(sampler *s) {
    if (!s) return;
    free(s->candidates);
    free(s->seen);
    free(s);
}

/* splitmix64: small, fast, reproducible for a seed */
static double next_uniform(sampler *s) {
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

static void apply_penalties(sampler *s, float *logits, const int32_t *history, size_t n_history) {
    const sampler_params *p = &s->params;
    if (p->repeat_penalty == 1.0f && p->presence_penalty == 0.0f) return;
    size_t first = n_history > p->penalty_last_n ? n_history - p->penalty_last_n : 0;
    for (size_t i = first; i < n_history; i++) {
        int32_t t = history[i];
        if (t < 0 || (uint32_t)t >= s->n_vocab || s->seen[t]) continue;
        s->seen[t] = 1;
        float *l = &logits[t];
        *l = *l > 0 ? *l / p->repeat_penalty : *l * p->repeat_penalty;
        *l -= p->presence_penalty;
    }
    for (size_t i = first; i < n_history; i++)
        if (history[i] >= 0 && (uint32_t)history[i] < s->n_vocab) s->seen[history[i]] = 0;
}

static int by_probability_desc(const void *a, const void *b) {
    const candidate *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id - y->id; /* ties: lower id first, for reproducibility */
}

int32_t sampler_sample(sampler *s, float *logits, const int32_t *history, size_t n_history) {
    const sampler_params *p = &s->params;
    apply_penalties(s, logits, history, n_history);
    uint32_t best = 0;
    for (uint32_t i = 1; i < s->n_vocab; i++)
        if (logits[i] > logits[best]) best = i;
    if (p->temperature <= 0) return (int32_t)best;

    /* probabilities at temperature; min-p needs only the maximum, so it filters before sorting */
    float max = logits[best];
    double sum = 0;
    uint32_t n = 0;
    float floor = p->min_p > 0 ? logf(p->min_p) * p->temperature : -INFINITY; /* in logit units */
    for (uint32_t i = 0; i < s->n_vocab; i++) {
        if (logits[i] - max < floor) continue;
        float e = expf((logits[i] - max) / p->temperature);
        s->candidates[n++] = (candidate){(int32_t)i, e};
        sum += e;
    }
    qsort(s->candidates, n, sizeof *s->candidates, by_probability_desc);
    if (p->top_k > 0 && n > p->top_k) {
        n = p->top_k;
        sum = 0;
        for (uint32_t i = 0; i < n; i++) sum += s->candidates[i].p;
    }
    if (p->top_p < 1.0f) {
        double kept = 0;
        uint32_t i = 0;
        while (i < n && kept < p->top_p * sum) kept += s->candidates[i++].p;
        n = i > 0 ? i : 1;
        sum = kept > 0 ? kept : s->candidates[0].p;
    }
    double r = next_uniform(s) * sum, acc = 0;
    for (uint32_t i = 0; i < n; i++) {
        acc += s->candidates[i].p;
        if (r < acc) return s->candidates[i].id;
    }
    return s->candidates[n - 1].id;
}

const char sampler_flags_help[] =
    "  --temp T             temperature (default 0.8; 0 = greedy)\n"
    "  --top-k K            keep the K most likely tokens (default 40; 0 = off)\n"
    "  --top-p P            keep the most likely tokens up to probability P (default 0.95)\n"
    "  --min-p P            drop tokens below P x the most likely one's probability (default 0.05)\n"
    "  --repeat-penalty R   penalise tokens of the last --repeat-last-n (default 1 = off)\n"
    "  --presence-penalty X subtract X from the logits of those tokens (default 0)\n"
    "  --repeat-last-n N    history the penalties look at (default 64)\n"
    "  --seed S             random seed (default 0: the same text every run)\n";

int sampler_parse_flag(sampler_params *p, int argc, char **argv, int *i, g2_error *err) {
    static const char *const flags[] = {"--temp",   "--top-k",          "--top-p",         "--min-p",
                                        "--repeat-penalty", "--presence-penalty", "--repeat-last-n", "--seed"};
    int which = -1;
    for (int f = 0; f < 8; f++)
        if (!strcmp(argv[*i], flags[f])) which = f;
    if (which < 0) return 0;
    if (*i + 1 >= argc) return g2_fail(err, "%s needs a value", argv[*i]);
    const char *value = argv[++*i];
    char *end;
    errno = 0;
    if (which == 1 || which == 6 || which == 7) {
        unsigned long long v = strtoull(value, &end, 10);
        if (*end || end == value || errno || value[0] == '-' || (which != 7 && v > UINT32_MAX))
            return g2_fail(err, "%s wants a non-negative integer, got '%s'", flags[which], value);
        if (which == 1) p->top_k = (uint32_t)v;
        if (which == 6) p->penalty_last_n = (uint32_t)v;
        if (which == 7) p->seed = v;
        return 1;
    }
    float v = strtof(value, &end);
    if (*end || end == value || !isfinite(v)) return g2_fail(err, "%s wants a number, got '%s'", flags[which], value);
    bool ok = true;
    switch (which) {
    case 0: ok = v >= 0; p->temperature = v; break;
    case 2: ok = v > 0 && v <= 1; p->top_p = v; break;
    case 3: ok = v >= 0 && v < 1; p->min_p = v; break;
    case 4: ok = v > 0; p->repeat_penalty = v; break;
    case 5: p->presence_penalty = v; break;
    }
    if (!ok) return g2_fail(err, "%s: '%s' is out of range", flags[which], value);
    return 1;
}

/* libFuzzer harness for config.json: grok_config_parse over any bytes; a refusal must be one
 * line naming the file; an accepted config must hold every range and consistency rule of
 * grok_config_check, and the tensor list built from it (grok_tensors.c, the first consumer of
 * the dimensions) must have positive shapes and GGUF and Hugging Face names that parse back to
 * their role, layer and expert.
 * `make fuzz` runs it on tests/data/config-seeds. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../convert/convert.h"
#include "fuzz.h"

#define NAME "fuzz.config.json"

static bool positive(double x) { return isfinite(x) && x > 0; }

static void check_tensor(const grok_config *c, int64_t i) {
    grok_tensor t;
    grok_tensor_at(c, i, &t);
    if (t.n_dims < 1 || t.n_dims > GGUF_MAX_DIMS || !t.name[0] || t.n_mats < 1) abort();
    for (uint32_t d = 0; d < t.n_dims; d++)
        if (t.ne[d] < 1) abort();
    if (t.layer < -1 || t.layer >= c->n_layers) abort();
    int layer;
    if (grok_parse_gguf_name(t.name, &layer) != t.role || layer != t.layer) abort();
    char hf[256];
    grok_tensor_hf_name(&t, t.n_mats - 1, hf, sizeof hf);
    grok_role role;
    int expert;
    if (grok_parse_hf_name(hf, &role, &layer, &expert) || role != t.role || layer != t.layer) abort();
    if (expert != (t.n_dims == 3 ? t.n_mats - 1 : -1)) abort(); /* stacked experts name theirs, even one */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    grok_config c;
    g2_error err;
    if (grok_config_parse((const char *)data, size, NAME, &c, &err) != 0) {
        check_refusal(err.msg, NAME);
        return 0;
    }
    const int64_t dims[] = {c.hidden, c.n_layers, c.n_head, c.n_head_kv, c.head_dim, c.vocab, c.n_expert,
                            c.n_expert_used, c.expert_ff, c.ff, c.context_length, c.attn_temperature_len};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i] < 1) abort();
    if (c.vocab > TOK_MAX_ID || c.n_head % c.n_head_kv || c.n_expert_used > c.n_expert) abort();
    const double scales[] = {c.rope_theta, c.rms_norm_eps, c.attn_softcap, c.router_softcap, c.final_softcap,
                             c.embedding_scale, c.output_scale, c.attn_output_scale};
    for (size_t i = 0; i < sizeof scales / sizeof scales[0]; i++)
        if (!positive(scales[i])) abort();
    if (grok_config_check(&c, &err) != 0) abort();

    /* the first and last tensors cover every role; all of them would be 16 per layer x 4096 layers */
    int64_t n = grok_tensor_count(&c);
    if (n < 4) abort();
    for (int64_t i = 0; i < n; i++) {
        check_tensor(&c, i);
        if (i == 40 && n > 80) i = n - 41;
    }
    return 0;
}

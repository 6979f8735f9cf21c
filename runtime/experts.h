/* The expert-streaming policy of one context (runtime/experts.c) and the hooks forward.c calls
 * from moe(). Everything is allocated in expert_stream_new; the hooks only count and advise. */
#ifndef GROK2_EXPERTS_H
#define GROK2_EXPERTS_H

#include "runtime.h"

typedef struct expert_stream expert_stream;

/* max_batch: the most tokens one chunk routes (guesses are kept per token). */
int expert_stream_new(expert_stream **out, const grok_model *m, const grok_context_params *params, uint32_t max_batch,
                      g2_error *err);
void expert_stream_free(expert_stream *s);
const grok_expert_stats *expert_stream_stats(const expert_stream *s);

/* The k largest of r[0..n) as a bitmask (ties to the lower index): the router's top-k. */
uint64_t expert_top_k(const float *r, uint32_t n, uint32_t k);

/* Per layer, in this order: begin; routed once per token with the token's chosen experts;
 * chosen (advises the layer's experts, before the dense MLP runs); then, when wants_guesses,
 * guess once per token with its guessed top-k for layer + 1 and guessed to advise them. */
void expert_stream_begin(expert_stream *s, uint32_t layer, uint32_t n_tokens);
void expert_stream_routed(expert_stream *s, uint32_t layer, uint32_t token, uint64_t chosen);
void expert_stream_chosen(expert_stream *s, uint32_t layer);
bool expert_stream_wants_guesses(const expert_stream *s, uint32_t layer);
void expert_stream_guess(expert_stream *s, uint32_t next_layer, uint32_t token, uint64_t guessed);
void expert_stream_guessed(expert_stream *s, uint32_t next_layer);

#endif

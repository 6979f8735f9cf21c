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

/* NUMA shard over groups > 1 nodes: chosen/guessed only note the slabs; forward.c then has each
 * group call advise_share (its rows of every noted slab: readahead is placed on the node of the
 * thread that asks) and finally advised with the time it took. */
void expert_stream_share_advice(expert_stream *s, int groups);
bool expert_stream_advice_pending(const expert_stream *s);
void expert_stream_advise_share(expert_stream *s, int group);
void expert_stream_advised(expert_stream *s, double seconds);

#endif

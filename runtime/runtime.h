/* runtime/: everything that runs a converted model: the CLI commands that read GGUF files,
 * model binding, the forward pass. Never includes convert/ (only runtime/main.c, the CLI
 * dispatcher, sees both). */
#ifndef GROK2_RUNTIME_H
#define GROK2_RUNTIME_H

#include "../quant/quant.h"

/* `grok2 info FILE.gguf [--json] [--bandwidth GBPS]` */
int cmd_info(int argc, char **argv);

/* ---- thread pool ------------------------------------------------------------------------- */
/* Created once; run() hands out task indices 0..n_tasks-1 to the workers and the caller and
 * returns when all are done. Tasks are described by plain structs passed as ctx. */
typedef struct thread_pool thread_pool;
typedef void (*pool_task_fn)(void *ctx, int64_t task, int thread);
thread_pool *thread_pool_new(int n_threads); /* n_threads counts the caller; <= 0: all cores */
void thread_pool_free(thread_pool *pool);
int thread_pool_size(const thread_pool *pool);
void thread_pool_run(thread_pool *pool, pool_task_fn fn, void *ctx, int64_t n_tasks);

/* Best of `repetitions` all-thread reads of a fresh buffer of `bytes`, in GB/s (0 if the buffer
 * cannot be had). */
double measure_read_bandwidth(thread_pool *pool, size_t bytes, int repetitions);

/* ---- the model ---------------------------------------------------------------------------- */

typedef struct {
    uint32_t n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_ff_exp, n_expert, n_expert_used, n_vocab;
    uint32_t n_ctx_train, attn_temperature_len;
    float rms_eps, rope_theta, embedding_scale, logit_scale;
    float attn_softcap, router_softcap, final_softcap;
} grok_hparams;

/* A 2-D weight in its block type, straight from the mapping: rows of cols values. */
typedef struct {
    uint32_t type;
    const uint8_t *data;
    int64_t rows, cols;
    size_t row_bytes;
} weight_matrix;

typedef struct {
    const float *attn_norm, *attn_output_norm, *ffn_norm, *post_ffw_norm; /* [n_embd] */
    weight_matrix q, k, v, o;         /* attention */
    weight_matrix gate, up, down;     /* dense MLP beside the MoE */
    weight_matrix router;             /* [n_expert rows] */
    weight_matrix gate_exps, up_exps, down_exps; /* one expert's slab; expert e at data + e * slab */
    size_t gate_exps_slab, up_exps_slab, down_exps_slab;
} grok_layer;

typedef struct {
    gguf_file *file;
    grok_hparams hp;
    grok_layer *layers;
    weight_matrix embedding, output;
    const float *output_norm;
    float *norm_storage; /* norms decoded to f32 when the file stores them otherwise */
    char semantics[1024]; /* how this file's metadata maps to the reference forward pass */
} grok_model;

/* Map a GGUF file and bind it: hyperparameters from metadata, every tensor's shape and type
 * checked against them. Files from llama.cpp's converter are recognised and still run with
 * the reference semantics (see semantics[]). */
int grok_model_load(grok_model **out, const char *path, g2_error *err);
int grok_model_bind(grok_model **out, gguf_file *file, g2_error *err); /* takes ownership of file */
/* Bytes of weights one decoded token reads: one embedding row, every always-on matrix and norm,
 * and expert_used of expert_count expert slabs per layer. */
double grok_model_bytes_per_token(const grok_model *m);
void grok_model_free(grok_model *m);

/* ---- evaluation --------------------------------------------------------------------------- */

typedef enum { KV_F16 = 0, KV_F32 = 1, KV_BF16 = 2 } kv_cache_type;

typedef struct {
    uint32_t n_ctx;     /* KV positions allocated (0: 4096 or the model's maximum if smaller) */
    kv_cache_type kv_type;
    int n_threads;      /* 0: all cores */
    uint32_t max_batch; /* tokens per forward chunk (0: 512) */
} grok_context_params;

typedef struct grok_context grok_context;
int grok_context_new(grok_context **out, const grok_model *m, const grok_context_params *params, g2_error *err);
void grok_context_free(grok_context *ctx);
uint32_t grok_context_n_ctx(const grok_context *ctx);
/* Evaluate n tokens at positions n_past .. n_past+n-1 (positions before n_past must already be
 * in the KV cache). logits: n_vocab floats for the last token, or for every token when all. */
int grok_eval(grok_context *ctx, const int32_t *tokens, uint32_t n, uint32_t n_past, float *logits, bool all,
              g2_error *err);
const char *kv_cache_type_name(kv_cache_type t);
int kv_cache_type_parse(const char *name, kv_cache_type *out);

/* ---- sampling ---------------------------------------------------------------------------- */

typedef struct {
    float temperature;      /* <= 0: greedy (argmax) */
    uint32_t top_k;         /* 0: off */
    float top_p;            /* 1: off */
    float min_p;            /* 0: off; keeps tokens with p >= min_p * p_max */
    float repeat_penalty;   /* 1: off; seen tokens' logits divided (positive) or multiplied */
    float presence_penalty; /* 0: off; subtracted once from every seen token's logit */
    uint32_t penalty_last_n; /* how much history the penalties look at */
    uint64_t seed;
} sampler_params;

/* temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, penalties off, last 64, seed 0 */
sampler_params sampler_defaults(void);

typedef struct sampler sampler;
sampler *sampler_new(const sampler_params *params, uint32_t n_vocab);
void sampler_free(sampler *s);
/* Picks the next token from logits (modified in place) given the tokens so far. */
int32_t sampler_sample(sampler *s, float *logits, const int32_t *history, size_t n_history);
/* Parses the sampling flags shared by run/chat/serve (--temp, --top-k, --top-p, --min-p,
 * --repeat-penalty, --presence-penalty, --repeat-last-n, --seed) at argv[*i]; returns 1 when it
 * consumed a flag and its value, 0 when argv[*i] is not a sampling flag, -1 on a bad value
 * (message in err). */
int sampler_parse_flag(sampler_params *p, int argc, char **argv, int *i, g2_error *err);
/* The --help lines for those flags. */
extern const char sampler_flags_help[];

/* ---- chat format ------------------------------------------------------------------------- */
/* Grok-2's: "System: {content.strip()}<|separator|>\n\n", "Human: {content.strip()}...",
 * "Assistant: {content}<|separator|>\n\n"; the generation prompt is "Assistant:". */
typedef enum { CHAT_SYSTEM, CHAT_USER, CHAT_ASSISTANT } chat_role;
typedef struct {
    chat_role role;
    const char *content;
} chat_message;
/* The text of the messages (malloc'd), with the generation prompt at the end if asked. */
char *chat_format(const chat_message *messages, size_t n, bool add_generation_prompt);

/* ---- small helpers of the commands -------------------------------------------------------- */
/* Monotonic seconds, for speed reports. */
double cli_now_seconds(void);
/* A whole file, NUL-terminated (malloc'd); *len (if non-NULL) gets its length. NULL with a
 * message naming the file on failure. */
char *cli_read_file(const char *path, size_t *len, g2_error *err);
/* value as an unsigned 32-bit integer; otherwise prints "grok2 COMMAND: FLAG wants a
 * non-negative integer, got 'VALUE'" and returns -1. */
int cli_u32(const char *command, const char *flag, const char *value, uint32_t *out);
/* The context flags the model commands share: -t/--threads N and --kv-type T. Returns 1 when
 * flag is one of them (value consumed), 0 when it is not, -1 on a bad value (printed). */
int cli_context_flag(const char *command, const char *flag, const char *value, grok_context_params *p);

/* `grok2 logits`: the tool for every numerical comparison. */
int cmd_logits(int argc, char **argv);
/* `grok2 run`: prompt in, generated text out. */
int cmd_run(int argc, char **argv);
/* `grok2 chat`: multi-turn chat, KV cache kept across turns. */
int cmd_chat(int argc, char **argv);
/* `grok2 perplexity`: chunked perplexity, KL divergence against a saved base. */
int cmd_perplexity(int argc, char **argv);
/* `grok2 bench`: prompt and generation speed, and the bandwidth yield. */
int cmd_bench(int argc, char **argv);
/* `grok2 tokenize`: ids and pieces of a text. */
int cmd_tokenize(int argc, char **argv);

/* ---- tokenizer (byte-level BPE, tiktoken-exact) ------------------------------------------ */
/* Encoding: pre-tokenize with the file's regex (default: Grok's V1 pattern) through PCRE2 with
 * Unicode properties and JIT, then BPE by rank over the bytes of each piece (the adjacent pair
 * whose merged bytes have the lowest rank merges first, as tiktoken does). */
typedef struct tokenizer tokenizer;

/* From a GGUF vocabulary (tokenizer.ggml.tokens in the GPT-2 byte-to-unicode alphabet, types,
 * optional pattern); token id == rank for regular tokens. */
int tokenizer_from_gguf(tokenizer **out, const gguf_file *f, g2_error *err);
/* From raw token bytes: n tokens, token i is bytes[i] of lens[i] bytes; is_special[i] marks
 * special/control tokens (matched as whole strings in text when allowed, never merged).
 * pattern NULL means the V1 pattern. */
int tokenizer_new(tokenizer **out, uint32_t n, const uint8_t *const *bytes, const uint32_t *lens,
                  const bool *is_special, const char *pattern, g2_error *err);
void tokenizer_free(tokenizer *t);

/* Encode len bytes of text. Valid UTF-8 stretches are encoded exactly as tiktoken encodes them;
 * each run of invalid bytes becomes one piece merged by rank, so decoding gives back the input.
 * allow_special: recognise special tokens' text (the earliest, then the longest, wins).
 * *ids is malloc'd. */
int tokenizer_encode(const tokenizer *t, const char *text, size_t len, bool allow_special, int32_t **ids,
                     size_t *n_ids, g2_error *err);
/* The bytes of token id (NULL for an id out of range; length 0 for an unused id). */
const uint8_t *tokenizer_piece(const tokenizer *t, int32_t id, size_t *len);
uint32_t tokenizer_vocab_size(const tokenizer *t);
/* Id of a special token by its text ("<|eos|>"), or -1. */
int32_t tokenizer_find_special(const tokenizer *t, const char *text);

/* Streaming decode: pieces in, complete UTF-8 out; never emits half a multi-byte character
 * (an invalid sequence is emitted as U+FFFD once it is known to be invalid). */
typedef struct {
    uint8_t pending[8];
    size_t n_pending;
} utf8_stream;
/* Appends the complete characters of (pending + piece) to out and returns the bytes written.
 * Each invalid byte becomes a 3-byte U+FFFD, so out_cap >= 3 * piece_len + 3 always suffices;
 * what does not fit is dropped, never written past out_cap. */
size_t utf8_stream_push(utf8_stream *s, const uint8_t *piece, size_t piece_len, char *out, size_t out_cap);
/* Flush what is left at the end of generation (incomplete sequences as U+FFFD). */
size_t utf8_stream_flush(utf8_stream *s, char *out, size_t out_cap);

#endif

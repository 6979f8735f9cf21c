/* runtime/: everything that runs a converted model: the CLI commands that read GGUF files,
 * model binding, the forward pass. Never includes convert/ (only runtime/main.c, the CLI
 * dispatcher, sees both). */
#ifndef GROK2_RUNTIME_H
#define GROK2_RUNTIME_H

#include <sched.h>
#include <stdio.h>

#include "../pool/pool.h"
#include "../quant/quant.h"

/* `grok2 info FILE.gguf [--json] [--bandwidth GBPS]` */
int cmd_info(int argc, char **argv);

/* ---- thread pool (pool/pool.h) --------------------------------------------------------- */
/* Best of `repetitions` all-thread reads of a fresh buffer of `bytes`, in GB/s (0 if the buffer
 * cannot be had). */
double measure_read_bandwidth(thread_pool *pool, size_t bytes, int repetitions);
/* The same on a buffer kept between measurements, for a benchmark that measures the bandwidth
 * next to each of its runs: a shared machine's bandwidth drifts within minutes. */
typedef struct read_probe read_probe;
read_probe *read_probe_new(size_t bytes); /* NULL if the buffer cannot be had */
double read_probe_measure(read_probe *probe, thread_pool *pool, int repetitions);
void read_probe_free(read_probe *probe);
/* A copy of k whose quantized types' matvec only reads the rows (the probe's loop) and writes
 * small made-up values: decode on it takes the time of reading the weights in decode's own
 * order, passes and threads, without the arithmetic (`grok2 bench --read-ref`). Float types
 * (the router, the KV cache, float weights) keep their kernels. */
void read_only_kernels(const simd_kernels *k, simd_kernels *out);
/* Bytes of [start, start + bytes) in 2 MiB pages now (/proc/self/smaps): file pages mapped by
 * PMD (the model's mapping) and anonymous huge pages (a --no-mmap copy), each mapping's count
 * capped at its overlap with the range (smaps counts per mapping, not per address); -1 where
 * the kernel does not say. Decode speed depends on it: the TLB covers 512 times more per entry. */
int huge_page_bytes(const void *start, size_t bytes, uint64_t *huge);

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
    bool mapped; /* weights are a file mapping (grok_model_load): madvise/mlock/mincore apply */
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

/* ---- NUMA (numa.c) --------------------------------------------------------------------------- */

typedef enum { NUMA_AUTO = 0, NUMA_SHARD, NUMA_INTERLEAVE, NUMA_OFF } numa_mode;
const char *numa_mode_name(numa_mode mode);
int numa_mode_parse(const char *name, numa_mode *out); /* auto, shard, interleave, off */

/* The nodes that have CPUs this process may use (one node without NUMA support), or the pretend
 * nodes of GROK2_FAKE_NUMA=N (this machine's CPUs split in N, all memory on the real node). */
typedef struct {
    int n_nodes;
    int os_node[POOL_MAX_GROUPS]; /* libnuma's node number */
    int n_cpus[POOL_MAX_GROUPS];
    cpu_set_t cpus[POOL_MAX_GROUPS];
    bool fake, libnuma;
} numa_topology;
int numa_topology_detect(numa_topology *t, g2_error *err);
/* One line: mode, nodes, their CPUs and (when threads is not NULL) threads. */
void numa_describe(const numa_topology *t, numa_mode mode, const int *threads, char *buf, size_t cap);
int numa_node_label(const numa_topology *t, int node); /* the OS node number, or the pretend one */
/* Linux's automatic NUMA balancing (the file /proc/sys/kernel/numa_balancing; any mode but 0
 * unmaps pages now and then to sample who touches them, and the next read of each faults):
 * 1 on, 0 off, -1 unknown (no such file, or no number in it). */
int numa_balancing_state(const char *path);
/* One line on stderr when t has more than one real node and the balancing is on. */
void numa_balancing_warn(const numa_topology *t);

/* Share `part` of `parts` of count items, cut at multiples of align (rows: the kernels' 4-row
 * tiles and the fused GELU's 16-wide vectors, so a row is computed the same way whichever node
 * or task owns it). */
#define NUMA_ROW_ALIGN 16
void numa_split(int64_t count, int part, int parts, int64_t align, int64_t *begin, int64_t *end);
/* Memory policies; no-ops on one node and on pretend nodes. */
void numa_interleave_all(const numa_topology *t);                            /* this thread and its children */
void numa_place_range(const numa_topology *t, int node, void *addr, size_t len); /* whole pages inside */

/* Where each node's share of the weights lives, from a sample of its pages (move_pages). */
typedef struct {
    uint64_t bytes;                                 /* the share's weight bytes */
    uint64_t sampled, local, remote, not_cached, unknown; /* pages */
} numa_share_placement;
void numa_model_placement(const grok_model *m, const numa_topology *t, numa_share_placement *out /* [n_nodes] */);
/* --no-mmap: m's file copied into anonymous memory (*memory, *size bytes), each group's row shares
 * written by that group's threads (shard) so they are placed on its node; *copy is m with its
 * weights moved there (its layer array in *layers, malloc'd). */
int numa_copy_weights(const grok_model *m, thread_pool *pool, bool shard, grok_model *copy, grok_layer **layers,
                      void **memory, size_t *size, g2_error *err);

/* ---- prefill GEMM back-ends (runtime/gemm.c) ------------------------------------------- */
/* Batches of n > 1 tokens may go to a BLAS on dequantized weight tiles instead of the native
 * integer kernels; decode (n == 1) always stays native. AUTO is the measured default for the
 * CPU (gemm_backend_default). */
typedef enum { GEMM_AUTO = 0, GEMM_NATIVE, GEMM_OPENBLAS, GEMM_ONEDNN } gemm_backend;
/* "auto", "native", "openblas", "onednn" -> 0, or -1 for another name. */
int gemm_backend_parse(const char *name, gemm_backend *out);
const char *gemm_backend_name(gemm_backend b);
/* 0 when this build and CPU can run b; else -1 with the reason in err. */
int gemm_backend_available(gemm_backend b, g2_error *err);
/* The library back-end AUTO's state uses on this CPU (NATIVE: none), and what AUTO runs a
 * batch of weight_type on there (the measured faster of NATIVE and that back-end). */
gemm_backend gemm_backend_default(void);
gemm_backend gemm_auto_backend(uint32_t weight_type);
/* One line for `grok2 info --cpu`: AUTO's choice per weight type on this CPU. */
void gemm_describe_auto(char *line, size_t size);

/* Per-context scratch of a back-end: per-thread weight tiles, converted activations, cached
 * primitives; all allocated here. NULL (and 0) for the native back-end. */
typedef struct gemm_state gemm_state;
int gemm_new(gemm_state **out, gemm_backend b, const simd_kernels *kernels, int n_threads, uint32_t max_batch,
             int64_t max_cols, g2_error *err);
void gemm_free(gemm_state *g);
gemm_backend gemm_state_backend(const gemm_state *g); /* NATIVE for NULL */
/* Whether g multiplies weights of this type (false for NULL). */
bool gemm_takes(const gemm_state *g, uint32_t weight_type);
/* Converts input id (n rows of cols) for the back-end once, before the pool pass that reads it. */
void gemm_prepare(gemm_state *g, uint32_t weight_type, const float *x, int64_t n, int64_t cols, uint64_t id);
/* y[t][r] = W[r] . x[t] for r0 <= r < r1, t < n (y's row stride w->rows), on pool thread `thread`;
 * x is the prepared input. */
void gemm_rows(gemm_state *g, int thread, const weight_matrix *w, const uint8_t *data, int64_t r0, int64_t r1,
               const float *x, int64_t n, float *y);
/* One row of n weights of type decoded as the back-ends do on kernel table `kernels` (AVX-512
 * decoders on an AVX-512 table), to f32 or bf16; -1 if the type cannot be decoded. For tests. */
int gemm_decode_row(const simd_kernels *kernels, uint32_t type, const void *src, void *dst, int64_t n, bool bf16);

/* ---- evaluation --------------------------------------------------------------------------- */

typedef enum { KV_F16 = 0, KV_F32 = 1, KV_BF16 = 2 } kv_cache_type;
/* How expert slabs are brought in from the mapping: not advised (off), WILLNEED for the experts
 * each layer's router chose, issued before the dense MLP (chosen), or that plus a guess one layer
 * ahead (next). PREFETCH_DEFAULT ("auto") is prefetch_auto_mode of the file and the memory the
 * process may use (see README, "Experts from mmap"). */
typedef enum { PREFETCH_DEFAULT = 0, PREFETCH_OFF, PREFETCH_CHOSEN, PREFETCH_NEXT } prefetch_mode;
/* Bytes of memory this process may fill: the machine's, or its memory cgroup's limit (v1 or v2)
 * when lower. */
uint64_t memory_for_process(void);
/* auto: off when the file fits in 90% of memory_bytes, chosen when it does not. */
prefetch_mode prefetch_auto_mode(uint64_t file_bytes, uint64_t memory_bytes);

typedef struct {
    uint32_t n_ctx;     /* KV positions allocated (0: 4096 or the model's maximum if smaller) */
    kv_cache_type kv_type;
    int n_threads;      /* 0: all cores */
    uint32_t max_batch; /* tokens per forward chunk (0: 512) */
    numa_mode numa;     /* auto: shard when there is more than one node, else off */
    uint32_t threads_per_node; /* shard: threads in each node's group (0: its CPUs, or -t split evenly) */
    bool no_mmap;       /* copy the weights into (node-local) memory instead of reading the mapping */
    prefetch_mode prefetch;   /* advice for the routed experts' slabs (experts.c) */
    bool mlock_dense;         /* lock the always-on weights (a warning, not a failure, if refused) */
    uint32_t expert_cache_mb; /* 0: unbounded; else least recently used expert slabs are paged out */
    gemm_backend gemm;  /* prefill matmuls (AUTO: the CPU's default) */
    bool mlp_per_expert; /* tests: a single token also takes the dense MLP and each expert in
                            passes of their own (the batch path), not the two shared passes */
} grok_context_params;

typedef struct grok_context grok_context;
int grok_context_new(grok_context **out, const grok_model *m, const grok_context_params *params, g2_error *err);
void grok_context_free(grok_context *ctx);
uint32_t grok_context_n_ctx(const grok_context *ctx);
/* Where the weights this context reads live: the --no-mmap copy, or the model file's bytes. */
void grok_context_weights(const grok_context *ctx, const void **start, size_t *bytes);
/* The kernel table the context computes with from the next grok_eval on (it must outlive the
 * use); NULL: the process's (simd_kernels_get). For benchmarks (read_only_kernels). */
void grok_context_use_kernels(grok_context *ctx, const simd_kernels *k);
/* The context's NUMA line (numa_describe) and, for shard, where each node's share lives now. */
void grok_context_numa_report(const grok_context *ctx, bool placement, char *buf, size_t cap);
/* Evaluate n tokens at positions n_past .. n_past+n-1 (positions before n_past must already be
 * in the KV cache). logits: n_vocab floats for the last token, or for every token when all. */
int grok_eval(grok_context *ctx, const int32_t *tokens, uint32_t n, uint32_t n_past, float *logits, bool all,
              g2_error *err);
/* Whether attention spreads one batch's key segments (256 keys each) over the threads and merges
 * them in a second pass: a decode token (n_tokens 1) with more than one segment and fewer kv heads
 * than threads. The logits are the same either way; tests use this to know they cover both. */
bool grok_attention_splits(uint32_t n_tokens, uint32_t n_keys, uint32_t n_head_kv, int threads);
const char *kv_cache_type_name(kv_cache_type t);
int kv_cache_type_parse(const char *name, kv_cache_type *out);

/* ---- experts from the mapping (runtime/experts.c) ---------------------------------------- */
const char *prefetch_mode_name(prefetch_mode m);
int prefetch_mode_parse(const char *name, prefetch_mode *out);

/* What a context counted while it evaluated: plain counters, no locks. */
typedef struct {
    uint32_t n_layer, n_expert, n_expert_used;
    prefetch_mode prefetch;
    uint64_t tokens;                  /* tokens evaluated */
    const uint64_t *usage;            /* [n_layer][n_expert]: tokens routed to each expert */
    uint64_t next_choices, next_hits; /* --prefetch next: choices of layers 1.. and how many were guessed */
    uint64_t advised_bytes;           /* bytes of WILLNEED advice issued */
    double advice_seconds;            /* time the token loop spent in madvise (advice, eviction) */
    uint64_t evictions, evicted_bytes; /* --expert-cache-mb: slabs paged out */
    size_t cache_bytes, cache_limit;  /* expert bytes the LRU holds now, its bound (0: none) */
} grok_expert_stats;
const grok_expert_stats *grok_context_expert_stats(const grok_context *ctx);

/* The process's page faults and bytes read from storage (/proc/self/io read_bytes) so far. */
typedef struct {
    uint64_t major_faults, minor_faults, read_bytes;
    bool have_read_bytes; /* /proc/self/io readable here */
} grok_io_counters;
void grok_io_counters_now(grok_io_counters *c);
/* Fractions of the expert slabs' and of the always-on weights' bytes in memory now (mincore);
 * -1 when the model is not a file mapping. */
void grok_model_residency(const grok_model *m, double *experts, double *always_on);
/* The --stats report, on out: the faults and disk reads per token of one phase (tokens between
 * the two samples), then the context's counters and the residency of the model now. */
void grok_io_print(FILE *out, const char *command, const char *phase, const grok_io_counters *before,
                   const grok_io_counters *after, uint64_t tokens);
void grok_expert_stats_print(FILE *out, const char *command, const grok_context *ctx, const grok_model *m);

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
/* The context flags the model commands share: -t/--threads N, --kv-type T, --gemm NAME (refused
 * when this build or CPU cannot run the back-end), --numa, --threads-per-node, --prefetch,
 * --expert-cache-mb. Returns 1 when
 * flag is one of them (value consumed), 0 when it is not, -1 on a bad value (printed). */
int cli_context_flag(const char *command, const char *flag, const char *value, grok_context_params *p);
/* The context flags without a value (--mlock-dense, --no-mmap): 1 when flag is one of them, else 0. */
int cli_context_switch(const char *flag, grok_context_params *p);
/* argv[*i] (not one of the command's own switches) as an argument every model command takes:
 * a context switch, -m/--model FILE into *model, or a context flag with its value. 1 when it is
 * one (*i past its value); 0 when not, and argv[*i + 1] is there for the command's own flag;
 * -1 when its value is bad or missing (printed as "grok2 COMMAND: missing value for 'FLAG'", or
 * "unexpected argument" for a word that is not a flag). */
int cli_model_flag(const char *command, int argc, char **argv, int *i, const char **model, grok_context_params *p);
/* The --help lines of the NUMA and expert-streaming flags (--numa, --prefetch, --no-mmap, ...). */
extern const char memory_flags_help[];
/* What a model command works on: the model, its tokenizer (when asked for), a context. Zeroed,
 * then cli_session_open, (cli_session_encode_file), cli_session_context; cli_session_close
 * frees whatever was made. Failures leave a message in err. */
typedef struct {
    grok_model *model;
    struct tokenizer *tok;
    grok_context *ctx;
} cli_session;
int cli_session_open(cli_session *s, const char *model_path, bool with_tokenizer, g2_error *err);
/* The text of the file at path in tokens (special-token text taken as plain text; malloc'd). */
int cli_session_encode_file(cli_session *s, const char *path, int32_t **ids, size_t *n_ids, g2_error *err);
int cli_session_context(cli_session *s, const grok_context_params *p, g2_error *err);
void cli_session_close(cli_session *s);

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
/* `grok2 profile`: per-layer, per-expert usage over a text, as JSON. */
int cmd_profile(int argc, char **argv);

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

/* convert/: the release in, a GGUF out. Reads the Hugging Face checkpoint (safetensors over
 * mmap, config.json, tokenizer.tok.json), reassembles the TP-split experts, picks a type per
 * tensor, quantizes on all cores and streams a GGUF v3 file; also makes synthetic checkpoints
 * of any size in the release's exact layout, and requantizes GGUF files.
 *
 * This header is the folder's one public face: the three subcommands the CLI dispatches to,
 * then the pieces they are built from (each in its own file, named after its section), which
 * the tests use directly. */
#ifndef GROK2_CONVERT_H
#define GROK2_CONVERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../pool/pool.h"
#include "../quant/quant.h"

/* ---- subcommands (argv[0] is the subcommand name; 0 ok, 1 error, 2 usage) ----------------- */
int cmd_synth(int argc, char **argv);    /* cmd_synth.c */
int cmd_convert(int argc, char **argv);  /* cmd_convert.c */
int cmd_quantize(int argc, char **argv); /* cmd_quantize.c */

/* ---- safetensors files (safetensors_read.c, safetensors_write.c) -------------------------- */
/* Layout: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape,
 * data_offsets: [begin, end]}, "__metadata__": {...}}, then the data section; offsets are
 * relative to the data section. Only BF16, F16 and F32 are accepted. */
#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u << 20) /* the reference implementation's limit */

typedef struct st_file st_file;

typedef struct {
    const char *name;
    uint32_t type;            /* G2_TYPE_BF16, G2_TYPE_F16 or G2_TYPE_F32 */
    int n_dims;
    int64_t shape[ST_MAX_DIMS]; /* PyTorch order: shape[0] is the outermost (rows) */
    const uint8_t *data;      /* into the mapping; not necessarily aligned to the element size */
    uint64_t nbytes;
    uint64_t file_offset;     /* of the first byte, for messages */
    const st_file *file;
} st_tensor;

/* Maps path read-only and validates the whole header before anything trusts it: length,
 * JSON, dtypes, shapes, offsets inside the data section and equal to dtype size x shape, no
 * duplicate names, no overlapping ranges. */
int st_open(st_file **out, const char *path, g2_error *err);
/* The same over a caller-owned buffer (tests); name is used in messages. */
int st_open_memory(st_file **out, const void *data, size_t size, const char *name, g2_error *err);
void st_close(st_file *f);
const char *st_path(const st_file *f);
size_t st_tensor_count(const st_file *f);
const st_tensor *st_tensor_at(const st_file *f, size_t i); /* sorted by name */
const st_tensor *st_find(const st_file *f, const char *name);
/* Paging hints for [ptr, ptr + len) of a tensor's data: drop the pages from this process
 * (they stay in the page cache) / start reading them ahead. No-ops for memory buffers. */
void st_release(const st_tensor *t, const void *ptr, size_t len);
void st_prefetch(const st_tensor *t, const void *ptr, size_t len);

/* Streaming writer: add every tensor, begin (writes the header to PATH.tmp, removed on
 * SIGINT/SIGTERM/SIGHUP), write the data in add order, finish (renames to PATH). */
typedef struct st_writer st_writer;
st_writer *st_writer_new(void);
int st_writer_add(st_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *shape, g2_error *err);
int st_writer_begin(st_writer *w, const char *path, g2_error *err);
int st_writer_write(st_writer *w, const void *data, size_t nbytes, g2_error *err);
int st_writer_finish(st_writer *w, g2_error *err);
void st_writer_free(st_writer *w); /* removes the temp file unless finished */

/* ---- config.json (grok_config.c) ---------------------------------------------------------- */
typedef struct {
    int64_t hidden, n_layers, n_head, n_head_kv, head_dim, vocab;
    int64_t n_expert, n_expert_used, expert_ff, ff;
    int64_t context_length, attn_temperature_len;
    double rope_theta, rms_norm_eps;
    double attn_softcap, router_softcap, final_softcap;
    double embedding_scale, output_scale; /* embedding_multiplier_scale, output_multiplier_scale */
    double attn_output_scale;             /* head_dim^-0.5 unless attn_output_multiplier is set */
} grok_config;

/* Reads and validates every key the conversion needs (type, range, consistency), naming the
 * key in errors; rejects settings whose semantics this project does not implement (rope_type
 * other than "original", a sliding window, residual_moe false). */
int grok_config_read(const char *path, grok_config *c, g2_error *err);
int grok_config_parse(const char *text, size_t len, const char *name, grok_config *c, g2_error *err);
/* Consistency of the dimensions (positive, GQA divisibility, top-k <= experts, sizes sane). */
int grok_config_check(const grok_config *c, g2_error *err);
/* Writes config.json with every key of the release (grok2-model.md section 1). */
int grok_config_write(const char *path, const grok_config *c, g2_error *err);
/* The release's values (the `grok2` preset). */
grok_config grok_config_release(void);

/* ---- the model's tensors (grok_tensors.c) ------------------------------------------------- */
typedef enum {
    ROLE_TOKEN_EMBD,
    ROLE_ATTN_NORM,
    ROLE_ATTN_Q,
    ROLE_ATTN_K,
    ROLE_ATTN_V,
    ROLE_ATTN_OUTPUT,
    ROLE_ATTN_OUTPUT_NORM,
    ROLE_FFN_NORM,
    ROLE_FFN_GATE_INP,
    ROLE_FFN_GATE,
    ROLE_FFN_UP,
    ROLE_FFN_DOWN,
    ROLE_FFN_GATE_EXPS,
    ROLE_FFN_UP_EXPS,
    ROLE_FFN_DOWN_EXPS,
    ROLE_POST_FFW_NORM,
    ROLE_OUTPUT_NORM,
    ROLE_OUTPUT,
    ROLE_COUNT,
    ROLE_UNKNOWN = -1
} grok_role;

/* How the release splits a tensor over its TP ranks: expert w1/w3 by rows, w2 by columns. */
typedef enum { JOIN_NONE, JOIN_ROWS, JOIN_COLS } grok_join;

typedef struct {
    char name[GGUF_MAX_NAME + 1]; /* GGUF name */
    grok_role role;
    int layer;      /* -1 for the global tensors */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] contiguous: a PyTorch [out, in] matrix is {in, out} */
    int n_mats;     /* experts stacked along ne[2]; 1 otherwise */
} grok_tensor;

/* The GGUF tensors of a model in file order: token_embd, each block, output_norm, output. */
int64_t grok_tensor_count(const grok_config *c);
void grok_tensor_at(const grok_config *c, int64_t i, grok_tensor *t);
/* The Hugging Face name of matrix `mat` (the expert index of a stacked tensor, else 0). */
void grok_tensor_hf_name(const grok_tensor *t, int mat, char *buf, size_t size);
grok_join grok_role_join(grok_role role);
bool grok_role_is_norm(grok_role role);
const char *grok_role_gguf_suffix(grok_role role);
/* Parses a Hugging Face tensor name: 0 with role, layer (-1 global) and expert (-1 none), or
 * -1 for a name that is not part of the model. */
int grok_parse_hf_name(const char *name, grok_role *role, int *layer, int *expert);
/* The same for a GGUF name ("blk.3.attn_q.weight"); ROLE_UNKNOWN if it is not ours. */
grok_role grok_parse_gguf_name(const char *name, int *layer);

/* ---- tokenizer.tok.json (tokenizer_json.c, byte_unicode.c, bpe.c, bpe_train.c) ------------ */
enum { TOKEN_UNUSED = 0, TOKEN_REGULAR = 1, TOKEN_SPECIAL = 2 };

typedef struct {
    uint8_t *bytes; /* owned; the UTF-8 name for a special token */
    uint32_t len;
    uint8_t kind;   /* TOKEN_* ; TOKEN_UNUSED: no token has this id */
} tok_token;

typedef struct {
    tok_token *tokens; /* indexed by id */
    int64_t n_ids;     /* largest id + 1 */
    int64_t n_regular, n_special;
    int64_t declared_vocab_size; /* the file's "vocab_size", or -1 */
    char *pat_str;               /* the file's "pat_str" (NULL: the V1 split) */
} tok_vocab;

#define TOK_MAX_ID (1 << 24) /* ids above this are rejected (bounds the id-indexed arrays) */

int tok_vocab_read(const char *path, tok_vocab *v, g2_error *err);
int tok_vocab_parse(const char *text, size_t len, const char *name, tok_vocab *v, g2_error *err);
/* Writes the release's format: regular_tokens, special_tokens, word_split "V1", and
 * vocab_size when the ids are dense (tiktoken requires it to equal the token count). */
int tok_vocab_write(const char *path, const tok_vocab *v, g2_error *err);
void tok_vocab_free(tok_vocab *v);
/* Id of the special token with this name, or -1. */
int64_t tok_vocab_special_id(const tok_vocab *v, const char *name);
/* Sets token id (growing the table); the bytes are copied. -1 if id is taken or too large. */
int tok_vocab_set(tok_vocab *v, int64_t id, const uint8_t *bytes, size_t len, int kind, g2_error *err);

/* The synthetic tokenizer: specials <|pad|> 0, <|separator|> 1, <|eos|> 2, <|reserved_3..7|>
 * 3..7, the 256 single bytes 8..263 (rank = id = 8 + byte), then up to vocab_size - 268
 * merges learned by a byte-level BPE trainer from the embedded multilingual sample, and
 * <|control1..4|> at the last four ids (vocab_size - 4 ..). Ids between the last merge and
 * the controls are unused when the sample yields fewer merges. vocab_size >= 268. */
int tok_vocab_synthesize(tok_vocab *v, int64_t vocab_size, g2_error *err);
#define TOK_SYNTH_MIN_VOCAB 268
/* The training text (sample_text.c). */
extern const char grok_sample_text[];

/* GPT-2's byte-to-unicode map: writes the UTF-8 of the code point standing for byte b
 * (1 or 2 bytes) and returns its length. */
int byte_to_unicode(uint8_t b, char out[2]);
/* The inverse over a whole string: decoded bytes (at most len) into out; -1 if a code point
 * is not in the map or the UTF-8 is malformed. */
int64_t unicode_to_bytes(const char *s, size_t len, uint8_t *out);

/* Byte strings -> rank, and rank-based BPE (tiktoken's rule: the adjacent pair whose merged
 * bytes have the lowest rank merges first). */
typedef struct bpe_ranks bpe_ranks;
bpe_ranks *bpe_ranks_new(void);
void bpe_ranks_free(bpe_ranks *r);
/* The bytes are referenced, not copied: keep them alive. -1 if already present or no memory. */
int bpe_ranks_add(bpe_ranks *r, const uint8_t *bytes, size_t len, int64_t rank);
int64_t bpe_ranks_get(const bpe_ranks *r, const uint8_t *bytes, size_t len); /* -1 if absent */
/* Splits bytes into parts with merges of rank < limit only; bounds gets the n_parts + 1 part
 * boundaries (room for len + 1). Every single byte must have a rank. Returns n_parts. */
size_t bpe_split(const bpe_ranks *r, const uint8_t *bytes, size_t len, int64_t limit, size_t *bounds);

/* Merges for tokenizer.ggml.merges: for each multi-byte regular token in rank order, BPE of its
 * bytes with lower ranks only; the last two parts, byte-to-unicode'd, make "A B". A token
 * that does not come down to two parts cannot be written as a merge: it is counted in
 * unreachable and left out (tiktoken-trained vocabularies have none). */
typedef struct {
    char **text; /* NUL-terminated "A B" */
    int64_t count;
    int64_t unreachable;
} bpe_merges;
int bpe_merges_build(const tok_vocab *v, bpe_merges *m, g2_error *err);
void bpe_merges_free(bpe_merges *m);

/* ---- GGUF metadata (gguf_metadata.c) ------------------------------------------------------ */
/* general.* and grok.* keys from the config (file_type: llama.cpp's ftype number). */
int meta_set_model(gguf_writer *w, const grok_config *c, const char *name, uint32_t file_type, g2_error *err);
/* tokenizer.ggml.*: tokens (ids == tok.json ids, padded with "[PAD<id>]" of type 5 up to
 * vocab_size), token types, merges, special ids, chat template. */
int meta_set_tokenizer(gguf_writer *w, const tok_vocab *v, int64_t vocab_size, g2_error *err);
extern const char grok_chat_template[];

/* ---- type plan (type_plan.c) -------------------------------------------------------------- */
/* A --type: one ggml type for every matrix, or a mix that picks per tensor role. Norms and
 * the router are F32 in every mix. */
typedef struct type_mix type_mix;
const type_mix *plan_mix_by_name(const char *name); /* NULL if unknown */
const char *plan_mix_name(const type_mix *m);
uint32_t plan_mix_file_type(const type_mix *m);
/* One line per --type for --help. */
void plan_print_mixes(FILE *out);

typedef struct {
    void *regex; /* regex_t, opaque here */
    char *pattern;
    uint32_t type;
} type_override;
typedef struct {
    type_override *items;
    int count;
} type_overrides;
/* Parses "REGEX=TYPE" (the last '=' separates; POSIX extended regex, unanchored). */
int plan_override_add(type_overrides *o, const char *arg, g2_error *err);
void plan_overrides_free(type_overrides *o);

typedef struct {
    uint32_t type;   /* what will be written */
    uint32_t wanted; /* what the mix or override asked for (differs after a fallback) */
} plan_choice;
/* The first matching override wins, else the mix decides by role. A type whose block does not
 * divide ne[0] falls back: K types to a 32-block type (q4_K -> q4_0, q5_K/q6_K -> q8_0),
 * 32-block types to BF16 (source BF16) or F16. */
plan_choice plan_tensor_type(const type_mix *mix, const type_overrides *o, const char *name, grok_role role,
                             int layer, int n_layers, uint32_t n_dims, int64_t ne0, uint32_t src_type);

/* ---- tensors to write and where their values come from (tensor_source.c) ------------------ */
typedef enum { SOURCE_SAFETENSORS, SOURCE_SYNTH, SOURCE_GGUF } source_kind;
typedef struct synth_model synth_model;

typedef struct {
    source_kind kind;
    int64_t ne0, n_rows; /* the output tensor seen as n_rows rows of ne0 values */
    /* SOURCE_SAFETENSORS: n_mats matrices of rows_per_mat rows stacked, each joined from
     * n_parts TP parts (parts[mat * n_parts + part], owned) */
    grok_join join;
    int n_mats, n_parts;
    int64_t rows_per_mat;
    const st_tensor **parts;
    /* SOURCE_SYNTH */
    const synth_model *synth;
    grok_tensor spec;
    /* SOURCE_GGUF */
    const gguf_tensor *gguf;
    bool gguf_mapped; /* from gguf_open: paging hints apply */
} tensor_source;

typedef struct {
    char name[GGUF_MAX_NAME + 1];
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    grok_role role;
    int layer;
    uint32_t src_type;  /* the source's type (the first part's for joined tensors) */
    uint64_t src_bytes; /* bytes read from the source, for progress */
    plan_choice type;
    tensor_source src;
} conv_tensor;

/* Rows [row0, row0 + nrows) as floats (thread-safe: reads only). */
int source_read_rows(const tensor_source *s, int64_t row0, int64_t nrows, float *dst, g2_error *err);
/* The source's bytes of those rows when they are already in `type` (GGUF input of the same
 * type: copied, not requantized); NULL otherwise. */
const void *source_raw_rows(const tensor_source *s, uint32_t type, int64_t row0);
void source_release_rows(const tensor_source *s, int64_t row0, int64_t nrows);
void source_prefetch_rows(const tensor_source *s, int64_t row0, int64_t nrows);
void conv_tensors_free(conv_tensor *t, int64_t n);

/* ---- the Hugging Face checkpoint (hf_checkpoint.c) ---------------------------------------- */
typedef struct {
    char *dir;
    grok_config config;
    tok_vocab vocab;
    bool has_vocab;
    st_file **files;
    int *file_rank; /* -1: a -TP-common file (or one without a rank) */
    int n_files;
    int n_ranks;    /* TP ranks found in the file names (0 if none) */
} hf_checkpoint;

/* Reads config.json and tokenizer.tok.json (a missing tokenizer is a warning: the GGUF then has
 * no tokenizer) and maps every *.safetensors file. */
int hf_checkpoint_open(const char *dir, hf_checkpoint **out, g2_error *err);
void hf_checkpoint_close(hf_checkpoint *h);
/* Matches every source tensor to a GGUF tensor (TP parts in rank order) and checks names,
 * shapes, ranks and duplicates against the config. */
int hf_checkpoint_tensors(const hf_checkpoint *h, conv_tensor **out, int64_t *n_out, g2_error *err);

/* ---- progress (progress.c); threads: pool/pool.h ----------------------------------------- */

typedef struct {
    const char *label;
    uint64_t total, done;
    double start, last_draw;
    int last_tenth;
    bool tty, quiet, drawn;
} progress;
/* A bar with bytes, rate and ETA on a terminal (stderr), a line every 10% otherwise. */
void progress_start(progress *p, const char *label, uint64_t total);
void progress_advance(progress *p, uint64_t bytes);
void progress_finish(progress *p);
/* Ends a bar that will not finish, so that the error message starts on its own line. */
void progress_abort(progress *p);
double now_seconds(void);
/* "1.23 GB" style (decimal units); buf of 16 bytes at least. */
const char *format_bytes(uint64_t bytes, char *buf, size_t size);

/* ---- writing the GGUF (write_gguf.c) ------------------------------------------------------ */
typedef struct {
    const char *label;   /* "convert", "quantize", "synth": prefixes messages */
    const char *out_path;
    bool dry_run;        /* print the plan to stdout and write nothing */
    thread_pool *pool;   /* NULL: a pool of `threads` is made for the write (<= 0: every CPU) */
    int threads;
} write_job;

/* Declares the tensors (types already planned) on w, reports fallbacks once per tensor, and
 * then either prints the plan (dry run) or writes the file: chunks of rows read from their
 * sources and quantized on every thread, streamed through the writer (temp name, renamed when
 * complete), source pages released as they are done. */
int write_gguf(gguf_writer *w, conv_tensor *t, int64_t n, const write_job *job, g2_error *err);
/* Chooses every tensor's type. */
void plan_tensors(conv_tensor *t, int64_t n, const type_mix *mix, const type_overrides *o, int n_layers);

/* ---- synthetic checkpoints (synth_model.c, synth_checkpoint.c) ---------------------------- */
struct synth_model {
    grok_config config;
    int tp;          /* TP ranks the experts are split over */
    uint64_t seed;
    double router_skew;
};

/* tiny, mini or grok2: 0, or -1 for an unknown name. */
int synth_preset(const char *name, grok_config *c, int *tp);
/* Values of row `row`, columns [col0, col0 + n) of matrix `mat` (the expert for stacked
 * tensors) of tensor t: a pure function of (seed, tensor, position), already rounded to bf16,
 * so the checkpoint and a direct GGUF hold the same numbers. */
void synth_fill(const synth_model *m, const grok_tensor *t, int mat, int64_t row, int64_t col0, int64_t n,
                float *dst);
/* Writes DIR in the release's layout (files named and grouped as xAI's), config.json and
 * tokenizer.tok.json. */
int synth_write_checkpoint(const synth_model *m, const tok_vocab *v, const char *dir, thread_pool *pool,
                           bool quiet, g2_error *err);
/* The GGUF tensors of a synthetic model, values from synth_fill. */
int synth_tensors(const synth_model *m, conv_tensor **out, int64_t *n_out, g2_error *err);

/* ---- command-line and file helpers (cli_options.c, files.c) ------------------------------------------------- */
/* Parses a whole decimal integer in [min, max]; -1 with a message naming the option. */
int cli_parse_int(const char *opt, const char *text, int64_t min, int64_t max, int64_t *out, g2_error *err);
int cli_parse_double(const char *opt, const char *text, double *out, g2_error *err);
/* The value of option argv[*i] (advancing *i); NULL with a message when it is missing. */
const char *cli_value(int argc, char **argv, int *i, g2_error *err);
/* The options of the commands that write a model (convert, quantize, synth): -o/--output OUT
 * (where the command takes it as an option), --tensor-type RE=TYPE (repeatable), --threads N,
 * --dry-run, --force, -h/--help. */
typedef struct {
    const char *out;
    type_overrides overrides;
    int64_t threads;
    bool dry_run, force;
} write_options;
/* Such a command; each function gets the command's options struct. */
typedef struct {
    const char *name;
    void (*usage)(FILE *out);
    bool output_flag; /* -o/--output is one of its options */
    /* argv[*i], not a shared option: 1 taken (*i past its value), 0 not one of its own ("unknown
     * argument"), -1 a bad value (message in err) */
    int (*own_option)(void *options, int argc, char **argv, int *i, g2_error *err);
    int (*check)(void *options, g2_error *err); /* after the last argument: 0, or -1 with a message */
    int (*work)(void *options, g2_error *err);  /* 0, or -1 with a message */
} write_command_def;
/* Parses argv into w and options; --help prints the usage to stdout (exit 0); a usage error prints
 * "grok2 NAME: MESSAGE (see grok2 NAME --help)" (exit 2); otherwise runs work with SIGXFSZ
 * ignored, a failure printed as "grok2 NAME: MESSAGE" (exit 1). Frees the overrides. */
int write_command(const write_command_def *def, write_options *w, void *options, int argc, char **argv);
bool path_exists(const char *path);
/* A whole (small) file, NUL-terminated; NULL with a message naming the file. */
char *read_text_file(const char *path, size_t *len, g2_error *err);
/* Untrusted text (a name or value from a file) made safe for a one-line message: control
 * characters as \xNN, cut with "..." to fit buf (size >= 8); returns buf. */
const char *shown_text(const char *text, char *buf, size_t size);
/* A file-size limit (ulimit -f) then fails the write with EFBIG, which the writers report and
 * clean up after, instead of killing the process with SIGXFSZ and leaving a temp file. */
void ignore_file_size_signal(void);
/* Refuses to overwrite an existing path without force. */
int check_output_path(const char *path, bool force, g2_error *err);

#endif

/* The Hugging Face checkpoint as xAI published it: config.json, tokenizer.tok.json and
 * pytorch_model-*.safetensors files, the TP rank in the file name (-TP-000 ... or -TP-common).
 * Only expert tensors are split: each rank's file holds 1/R of every expert under the full
 * name, w1/w3 by rows and w2 by columns. This file finds every tensor the config implies,
 * checks ranks, shapes and duplicates, and describes each GGUF tensor as parts to join. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"

/* ---- opening ------------------------------------------------------------------------------ */

static char *join_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static bool ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && !strcmp(s + n - m, tail);
}

/* -1 for "-TP-common" (or no TP marker), else the rank; -2 if the name is unreadable. */
static int rank_of_file(const char *name) {
    const char *tp = strstr(name, "-TP-");
    if (!tp) return -1;
    tp += 4;
    if (!strcmp(tp, "common.safetensors")) return -1;
    int rank = 0, digits = 0;
    while (*tp >= '0' && *tp <= '9' && digits < 5) rank = rank * 10 + (*tp++ - '0'), digits++;
    return digits && !strcmp(tp, ".safetensors") ? rank : -2;
}

static int by_string(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The *.safetensors names in dir, sorted. */
static int list_safetensors(const char *dir, char ***names, int *count, g2_error *err) {
    DIR *d = opendir(dir);
    if (!d) return g2_fail(err, "%s: %s", dir, strerror(errno));
    char **list = NULL;
    int n = 0, rc = 0;
    for (struct dirent *e; (e = readdir(d)) && rc == 0;) {
        if (e->d_name[0] == '.' || !ends_with(e->d_name, ".safetensors")) continue;
        char **grown = realloc(list, (size_t)(n + 1) * sizeof *list);
        if (!grown || !(grown[n] = strdup(e->d_name))) {
            if (grown) list = grown;
            rc = g2_fail(err, "%s: out of memory", dir);
            break;
        }
        list = grown;
        n++;
    }
    closedir(d);
    if (rc == 0 && n == 0) rc = g2_fail(err, "%s: no *.safetensors files", dir);
    if (rc) {
        for (int i = 0; i < n; i++) free(list[i]);
        free(list);
        return -1;
    }
    qsort(list, (size_t)n, sizeof *list, by_string);
    *names = list;
    *count = n;
    return 0;
}

static int open_files(hf_checkpoint *h, g2_error *err) {
    char **names = NULL;
    int n = 0;
    if (list_safetensors(h->dir, &names, &n, err)) return -1;
    h->files = calloc((size_t)n, sizeof *h->files);
    h->file_rank = calloc((size_t)n, sizeof *h->file_rank);
    int rc = h->files && h->file_rank ? 0 : g2_fail(err, "%s: out of memory", h->dir);
    for (int i = 0; i < n && rc == 0; i++) {
        h->file_rank[i] = rank_of_file(names[i]);
        if (h->file_rank[i] == -2) {
            rc = g2_fail(err, "%s/%s: cannot read the TP rank from the name (expected -TP-NNN or -TP-common)", h->dir,
                         names[i]);
            break;
        }
        char *path = join_path(h->dir, names[i]);
        rc = path ? st_open(&h->files[i], path, err) : g2_fail(err, "out of memory");
        free(path);
        if (rc == 0) h->n_files++;
        if (h->file_rank[i] + 1 > h->n_ranks) h->n_ranks = h->file_rank[i] + 1;
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    if (rc) return -1;
    /* every rank 0 .. R-1 must have at least one file */
    for (int r = 0; r < h->n_ranks; r++) {
        bool found = false;
        for (int i = 0; i < h->n_files && !found; i++) found = h->file_rank[i] == r;
        if (!found)
            return g2_fail(err, "%s: no file for TP rank %03d although rank %03d exists: a TP shard is missing", h->dir,
                           r, h->n_ranks - 1);
    }
    return 0;
}

int hf_checkpoint_open(const char *dir, hf_checkpoint **out, g2_error *err) {
    *out = NULL;
    hf_checkpoint *h = calloc(1, sizeof *h);
    if (!h || !(h->dir = strdup(dir))) {
        free(h);
        return g2_fail(err, "out of memory");
    }
    char *config = join_path(dir, "config.json"), *tok = join_path(dir, "tokenizer.tok.json");
    int rc = config && tok ? grok_config_read(config, &h->config, err) : g2_fail(err, "out of memory");
    if (rc == 0 && path_exists(tok)) {
        rc = tok_vocab_read(tok, &h->vocab, err);
        h->has_vocab = rc == 0;
    } else if (rc == 0) {
        fprintf(stderr, "warning: %s not found: the GGUF will have no tokenizer (grok2 logits works, chat does not)\n",
                tok);
    }
    free(config);
    free(tok);
    if (rc == 0) rc = open_files(h, err);
    if (rc) {
        hf_checkpoint_close(h);
        return -1;
    }
    *out = h;
    return 0;
}

void hf_checkpoint_close(hf_checkpoint *h) {
    if (!h) return;
    for (int i = 0; i < h->n_files; i++) st_close(h->files[i]);
    free(h->files);
    free(h->file_rank);
    if (h->has_vocab) tok_vocab_free(&h->vocab);
    free(h->dir);
    free(h);
}

/* ---- the index of source tensors ---------------------------------------------------------- */

typedef struct {
    grok_role role;
    int layer, expert, rank, file;
    const st_tensor *t;
} entry;

static int compare_entries(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->role != y->role) return x->role < y->role ? -1 : 1;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    if (x->expert != y->expert) return x->expert < y->expert ? -1 : 1;
    return x->rank < y->rank ? -1 : x->rank > y->rank;
}

static int index_entry(const hf_checkpoint *h, int file, const st_tensor *t, entry *e, g2_error *err) {
    const char *path = st_path(h->files[file]);
    if (grok_parse_hf_name(t->name, &e->role, &e->layer, &e->expert))
        return g2_fail(err, "%s: unknown tensor '%s' (not part of a Grok-2 checkpoint)", path, t->name);
    if (e->layer >= h->config.n_layers)
        return g2_fail(err, "%s: tensor '%s' is in layer %d but config.json has num_hidden_layers = %lld", path,
                       t->name, e->layer, (long long)h->config.n_layers);
    if (e->expert >= h->config.n_expert)
        return g2_fail(err, "%s: tensor '%s' is expert %d but config.json has num_local_experts = %lld", path, t->name,
                       e->expert, (long long)h->config.n_expert);
    e->rank = h->file_rank[file];
    if (e->rank >= 0 && grok_role_join(e->role) == JOIN_NONE)
        return g2_fail(err, "%s: tensor '%s' in a TP shard: only expert tensors are split over ranks", path, t->name);
    e->file = file;
    e->t = t;
    return 0;
}

static int build_index(const hf_checkpoint *h, entry **out, size_t *n_out, g2_error *err) {
    size_t n = 0;
    for (int f = 0; f < h->n_files; f++) n += st_tensor_count(h->files[f]);
    entry *e = malloc((n + 1) * sizeof *e);
    if (!e) return g2_fail(err, "out of memory indexing %zu tensors", n);
    size_t k = 0;
    for (int f = 0; f < h->n_files; f++)
        for (size_t i = 0; i < st_tensor_count(h->files[f]); i++) {
            const st_tensor *t = st_tensor_at(h->files[f], i);
            if (strstr(t->name, "rotary_emb.inv_freq")) continue; /* recomputed from rope_theta */
            if (index_entry(h, f, t, &e[k], err)) {
                free(e);
                return -1;
            }
            k++;
        }
    qsort(e, k, sizeof *e, compare_entries);
    for (size_t i = 1; i < k; i++)
        if (!compare_entries(&e[i - 1], &e[i])) {
            g2_fail(err, "tensor '%s' appears twice: in %s and in %s", e[i].t->name, st_path(h->files[e[i - 1].file]),
                    st_path(h->files[e[i].file]));
            free(e);
            return -1;
        }
    *out = e;
    *n_out = k;
    return 0;
}

/* The entries of (role, layer, expert): [*first, *first + count). */
static size_t find_entries(const entry *e, size_t n, grok_role role, int layer, int expert, size_t *first) {
    entry key = {.role = role, .layer = layer, .expert = expert, .rank = -1};
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (compare_entries(&e[mid], &key) < 0) lo = mid + 1;
        else hi = mid;
    }
    size_t end = lo;
    while (end < n && e[end].role == role && e[end].layer == layer && e[end].expert == expert) end++;
    *first = lo;
    return end - lo;
}

/* "pytorch_model-00007-TP-003.safetensors" from a sibling rank's file name, for messages. */
static void guess_shard_name(const char *sibling, int rank, char *buf, size_t size) {
    const char *slash = strrchr(sibling, '/'), *base = slash ? slash + 1 : sibling, *tp = strstr(base, "-TP-");
    if (!tp) {
        snprintf(buf, size, "a -TP-%03d file", rank);
        return;
    }
    int width = 0;
    while (width < 5 && tp[4 + width] >= '0' && tp[4 + width] <= '9') width++;
    char digits[8];
    snprintf(digits, sizeof digits, "%0*d", width, rank % 100000);
    snprintf(buf, size, "%.*s-TP-%s%s", (int)(tp - base), base, digits, tp + 4 + width);
}

static int shape_error(const st_tensor *t, int64_t rows, int64_t cols, bool vector, const char *why, g2_error *err) {
    char got[96] = "[", want[64];
    for (int d = 0; d < t->n_dims; d++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    strncat(got, "]", sizeof got - strlen(got) - 1);
    if (vector) snprintf(want, sizeof want, "[%lld]", (long long)cols);
    else snprintf(want, sizeof want, "[%lld, %lld]", (long long)rows, (long long)cols);
    return g2_fail(err, "%s: tensor '%s' has shape %s, expected %s (%s)", st_path(t->file), t->name, got, want, why);
}

static int check_part_shape(const st_tensor *t, const grok_tensor *g, int n_parts, g2_error *err) {
    bool vector = g->n_dims == 1;
    int64_t rows = g->ne[1], cols = g->ne[0];
    grok_join join = n_parts > 1 ? grok_role_join(g->role) : JOIN_NONE;
    if (join == JOIN_ROWS) rows /= n_parts;
    if (join == JOIN_COLS) cols /= n_parts;
    bool ok = vector ? t->n_dims == 1 && t->shape[0] == cols
                     : t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols;
    if (ok) return 0;
    return shape_error(t, rows, cols, vector,
                       join == JOIN_NONE ? "from config.json" : "config.json's size split over the TP ranks", err);
}

/* The parts of matrix `mat` of g; sets *n_parts on the first matrix and checks the others match. */
static int collect_parts(const hf_checkpoint *h, const entry *e, size_t n, const grok_tensor *g, int mat,
                         const st_tensor **parts, int *n_parts, g2_error *err) {
    char name[256];
    grok_tensor_hf_name(g, mat, name, sizeof name);
    size_t first, count = find_entries(e, n, g->role, g->layer, g->n_mats > 1 ? mat : -1, &first);
    if (count == 0) return g2_fail(err, "%s: missing tensor '%s'", h->dir, name);
    if (e[first].rank < 0 && count > 1)
        return g2_fail(err, "tensor '%s' is both unsplit in %s and split in %s", name, st_path(h->files[e[first].file]),
                       st_path(h->files[e[first + 1].file]));
    int found = e[first].rank < 0 ? 1 : (int)count;
    if (e[first].rank >= 0) {
        for (int r = 0; r < h->n_ranks; r++)
            if ((size_t)r >= count || e[first + (size_t)r].rank != r) {
                char file[256];
                guess_shard_name(st_path(h->files[e[first].file]), r, file, sizeof file);
                return g2_fail(err, "%s: tensor '%s': TP rank %03d is missing (expected in %s)", h->dir, name, r, file);
            }
        if (g->ne[grok_role_join(g->role) == JOIN_ROWS ? 1 : 0] % h->n_ranks)
            return g2_fail(err, "tensor '%s': moe_intermediate_size %lld is not divisible by %d TP ranks", name,
                           (long long)h->config.expert_ff, h->n_ranks);
    }
    if (mat == 0) *n_parts = found;
    else if (found != *n_parts)
        return g2_fail(err, "tensor '%s' is split over %d part(s) but expert 0 over %d", name, found, *n_parts);
    for (int p = 0; p < found; p++) {
        parts[p] = e[first + (size_t)p].t;
        if (check_part_shape(parts[p], g, found, err)) return -1;
    }
    return 0;
}

static int describe_tensor(const hf_checkpoint *h, const entry *e, size_t n, int64_t i, conv_tensor *t,
                           g2_error *err) {
    grok_tensor g;
    grok_tensor_at(&h->config, i, &g);
    int max_parts = h->n_ranks > 1 ? h->n_ranks : 1, n_parts = 1;
    const st_tensor **parts = calloc((size_t)g.n_mats * (size_t)max_parts, sizeof *parts);
    if (!parts) return g2_fail(err, "out of memory");
    for (int m = 0; m < g.n_mats; m++)
        if (collect_parts(h, e, n, &g, m, parts + (size_t)m * (size_t)n_parts, &n_parts, err)) {
            free(parts);
            return -1;
        }
    memcpy(t->name, g.name, sizeof t->name);
    t->n_dims = g.n_dims;
    memcpy(t->ne, g.ne, sizeof t->ne);
    t->role = g.role;
    t->layer = g.layer;
    t->src_type = parts[0]->type;
    for (int k = 0; k < g.n_mats * n_parts; k++) t->src_bytes += parts[k]->nbytes;
    t->src = (tensor_source){.kind = SOURCE_SAFETENSORS, .ne0 = g.ne[0], .n_rows = g.ne[1] * g.ne[2],
                             .join = n_parts > 1 ? grok_role_join(g.role) : JOIN_NONE, .n_mats = g.n_mats,
                             .n_parts = n_parts, .rows_per_mat = g.ne[1], .parts = parts};
    return 0;
}

int hf_checkpoint_tensors(const hf_checkpoint *h, conv_tensor **out, int64_t *n_out, g2_error *err) {
    entry *e = NULL;
    size_t n_entries = 0;
    if (build_index(h, &e, &n_entries, err)) return -1;
    int64_t n = grok_tensor_count(&h->config);
    conv_tensor *ts = calloc((size_t)n, sizeof *ts);
    int rc = ts ? 0 : g2_fail(err, "out of memory");
    for (int64_t i = 0; i < n && rc == 0; i++) rc = describe_tensor(h, e, n_entries, i, &ts[i], err);
    free(e);
    if (rc) {
        conv_tensors_free(ts, n);
        return -1;
    }
    *out = ts;
    *n_out = n;
    return 0;
}

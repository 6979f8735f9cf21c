#!/usr/bin/python3
"""grok2_ref.py: an independent float64 numpy oracle for the Grok-2 forward pass.

Written from docs/grok2-model.md (sections 1-3) only, never from the C code. It reads a
checkpoint in the Grok-2 release layout (config.json + pytorch_model-*.safetensors, experts
TP-split across `-TP-NNN` files, everything else in `-TP-common` files) and prints the logits
of every position of one causal sequence that starts at position 0.

    /usr/bin/python3 tests/reference/grok2_ref.py HF_DIR --tokens 1,2,3 [--all] [--out FILE]

Output: one line per position (only the last one without --all):
    pos I tok T argmax A max V logits v0 v1 ... v{vocab-1}
Numbers are printed with Python's repr (shortest string that reads back to the same double).

Only numpy and the standard library. Run it with /usr/bin/python3 (Debian's numpy).
Weights are read lazily, tensor by tensor, so memory stays bounded by a few tensors in float64.
"""

import argparse
import glob
import json
import math
import os
import re
import sys

import numpy as np


class RefError(Exception):
    """An error in the input (checkpoint, config, tokens): printed as one line, exit 1."""


# ----------------------------------------------------------------------------------------------
# Section 1: config.json. Every dimension and constant is read from it; nothing is hardcoded.

INT_KEYS = [
    "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
    "vocab_size", "num_local_experts", "num_experts_per_tok", "moe_intermediate_size",
    "intermediate_size", "attn_temperature_len",
]
FLOAT_KEYS = [
    "rope_theta", "rms_norm_eps", "attn_logit_softcapping", "router_logit_softcapping",
    "final_logit_softcapping", "embedding_multiplier_scale", "output_multiplier_scale",
]


def load_config(hf_dir):
    path = os.path.join(hf_dir, "config.json")
    try:
        with open(path, "r", encoding="utf-8") as f:
            raw = json.load(f)
    except OSError as e:
        raise RefError(f"{path}: cannot read: {e.strerror or e}")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RefError(f"{path}: bad JSON: {e}")
    if not isinstance(raw, dict):
        raise RefError(f"{path}: top level is not a JSON object")
    cfg = {}
    for key in INT_KEYS:
        if key not in raw:
            raise RefError(f"{path}: missing key '{key}'")
        v = raw[key]
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise RefError(f"{path}: key '{key}' must be an integer, got {v!r}")
        cfg[key] = v
    for key in FLOAT_KEYS:
        if key not in raw:
            raise RefError(f"{path}: missing key '{key}'")
        v = raw[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise RefError(f"{path}: key '{key}' must be a finite number, got {v!r}")
        cfg[key] = float(v)
    # Keys that, if present with another value, would ask for a model the doc does not describe.
    if raw.get("residual_moe", True) is not True:
        raise RefError(f"{path}: residual_moe={raw['residual_moe']!r}: only the Grok-2 "
                       "dense-MLP-beside-MoE block (residual_moe true) is implemented")
    if raw.get("rope_type", "original") != "original":
        raise RefError(f"{path}: rope_type={raw['rope_type']!r}: only plain ('original') RoPE "
                       "is implemented")
    sw = raw.get("sliding_window_size", -1)
    if isinstance(sw, (int, float)) and not isinstance(sw, bool) and sw > 0:
        raise RefError(f"{path}: sliding_window_size={sw}: sliding-window attention is not "
                       "implemented")
    for key in ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "head_dim", "vocab_size", "num_local_experts", "num_experts_per_tok",
                "moe_intermediate_size", "intermediate_size"]:
        if cfg[key] <= 0:
            raise RefError(f"{path}: key '{key}' must be positive, got {cfg[key]}")
    if cfg["num_attention_heads"] % cfg["num_key_value_heads"] != 0:
        raise RefError(f"{path}: num_attention_heads {cfg['num_attention_heads']} is not a "
                       f"multiple of num_key_value_heads {cfg['num_key_value_heads']}")
    if cfg["head_dim"] % 2 != 0:
        raise RefError(f"{path}: head_dim {cfg['head_dim']} must be even for rotate-half RoPE")
    if cfg["num_experts_per_tok"] > cfg["num_local_experts"]:
        raise RefError(f"{path}: num_experts_per_tok {cfg['num_experts_per_tok']} > "
                       f"num_local_experts {cfg['num_local_experts']}")
    if cfg["attn_temperature_len"] == 1:
        raise RefError(f"{path}: attn_temperature_len 1 gives log2(1) = 0 in the temperature "
                       "divisor")
    if cfg["rope_theta"] <= 0 or cfg["rms_norm_eps"] < 0:
        raise RefError(f"{path}: rope_theta must be > 0 and rms_norm_eps >= 0")
    return cfg


# ----------------------------------------------------------------------------------------------
# Section 2: the checkpoint on disk. Safetensors parsed by hand: u64 LE header length N, N bytes
# of JSON {name: {dtype, shape, data_offsets}}, then the data (offsets relative to its start).

DTYPES = {"BF16": np.dtype("<u2"), "F16": np.dtype("<f2"), "F32": np.dtype("<f4")}


def to_float64(raw, dtype):
    """Stored values -> float64. bf16 is the top half of an f32: shift left 16, view as f32."""
    if dtype == "BF16":
        return (raw.astype(np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)
    return raw.astype(np.float64)


class SafetensorsFile:
    def __init__(self, path):
        self.path = path
        try:
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise RefError(f"{path}: truncated: shorter than the 8-byte header length")
                n = int.from_bytes(head, "little")
                if n > size - 8:
                    raise RefError(f"{path}: header length {n} runs past the end of the file "
                                   f"({size} bytes)")
                header_bytes = f.read(n)
        except OSError as e:
            raise RefError(f"{path}: cannot read: {e.strerror or e}")
        try:
            header = json.loads(header_bytes.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RefError(f"{path}: bad JSON header: {e}")
        if not isinstance(header, dict):
            raise RefError(f"{path}: header is not a JSON object")
        self.data_start = 8 + n
        data_len = size - self.data_start
        self.entries = {}
        for name, e in header.items():
            if name == "__metadata__":
                continue
            if (not isinstance(e, dict) or e.get("dtype") not in DTYPES
                    or not isinstance(e.get("shape"), list)
                    or not isinstance(e.get("data_offsets"), list)
                    or len(e["data_offsets"]) != 2
                    or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                               for d in e["shape"] + e["data_offsets"])):
                raise RefError(f"{path}: tensor '{name}': bad header entry {e!r} (dtypes "
                               f"handled: {', '.join(DTYPES)})")
            begin, end = e["data_offsets"]
            count = int(np.prod(e["shape"], dtype=np.int64))
            if end < begin or end > data_len:
                raise RefError(f"{path}: tensor '{name}': data_offsets [{begin}, {end}] outside "
                               f"the data section ({data_len} bytes)")
            if end - begin != count * DTYPES[e["dtype"]].itemsize:
                raise RefError(f"{path}: tensor '{name}': {end - begin} bytes for shape "
                               f"{e['shape']} of {e['dtype']}")
            self.entries[name] = (e["dtype"], tuple(e["shape"]), begin, end)
        self._map = None

    def raw(self, name):
        """The stored values of one tensor (memory-mapped, no copy), in its stored dtype."""
        dtype, shape, begin, end = self.entries[name]
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        a = self._map[self.data_start + begin:self.data_start + end]
        return a.view(DTYPES[dtype]).reshape(shape), dtype


EXPERT_RE = re.compile(r"^model\.layers\.\d+\.block_sparse_moe\.experts\.\d+\.(w1|w2|w3)\.weight$")
# Axis along which the TP ranks split each expert matrix: w1, w3 [I, d] by rows; w2 [d, I] by
# columns (section 2).
TP_AXIS = {"w1": 0, "w3": 0, "w2": 1}


def expected_shapes(cfg):
    """Section 2's table: every tensor name -> its logical [out, in] shape."""
    d, H, KV, D = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], \
        cfg["head_dim"]
    V, E, I, Imoe = cfg["vocab_size"], cfg["num_local_experts"], cfg["intermediate_size"], \
        cfg["moe_intermediate_size"]
    s = {"model.embed_tokens.weight": (V, d), "model.norm.weight": (d,), "lm_head.weight": (V, d)}
    for L in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{L}."
        s[p + "pre_attn_norm.weight"] = (d,)
        s[p + "self_attn.q_proj.weight"] = (H * D, d)
        s[p + "self_attn.k_proj.weight"] = (KV * D, d)
        s[p + "self_attn.v_proj.weight"] = (KV * D, d)
        s[p + "self_attn.o_proj.weight"] = (d, H * D)
        s[p + "post_attn_norm.weight"] = (d,)
        s[p + "pre_moe_norm.weight"] = (d,)
        s[p + "mlp.gate_proj.weight"] = (I, d)
        s[p + "mlp.up_proj.weight"] = (I, d)
        s[p + "mlp.down_proj.weight"] = (d, I)
        s[p + "block_sparse_moe.gate.weight"] = (E, d)
        for e in range(E):
            q = f"{p}block_sparse_moe.experts.{e}."
            s[q + "w1.weight"] = (Imoe, d)
            s[q + "w3.weight"] = (Imoe, d)
            s[q + "w2.weight"] = (d, Imoe)
        s[p + "post_moe_norm.weight"] = (d,)
    return s


class Checkpoint:
    """All tensors of HF_DIR by name; expert tensors reassembled from their TP ranks on read."""

    def __init__(self, hf_dir, cfg):
        paths = sorted(glob.glob(os.path.join(hf_dir, "pytorch_model-*.safetensors")))
        if not paths:
            raise RefError(f"{hf_dir}: no pytorch_model-*.safetensors files")
        self.shapes = expected_shapes(cfg)
        self.common = {}  # name -> SafetensorsFile holding it whole
        self.ranked = {}  # name -> {rank: SafetensorsFile holding that rank's slice}
        unknown = []
        self.n_ranks = 0  # R: highest rank in any file name + 1
        for path in paths:
            base = os.path.basename(path)
            m = re.search(r"-TP-(\d{3})(?!\d)", base)
            rank = int(m.group(1)) if m else None  # no rank (`-TP-common` or plain): unsplit
            if rank is not None:
                self.n_ranks = max(self.n_ranks, rank + 1)
            st = SafetensorsFile(path)
            for name in st.entries:
                if "rotary_emb.inv_freq" in name:
                    continue
                if name not in self.shapes:
                    unknown.append(name)
                    continue
                if rank is None:
                    if name in self.common or name in self.ranked:
                        raise RefError(f"{path}: tensor '{name}' is stored more than once")
                    self.common[name] = st
                else:
                    if not EXPERT_RE.match(name):
                        raise RefError(f"{path}: tensor '{name}' is in a TP rank file, but only "
                                       "expert tensors are TP-split (doc section 2)")
                    ranks = self.ranked.setdefault(name, {})
                    if rank in ranks or name in self.common:
                        raise RefError(f"{path}: tensor '{name}' is stored more than once")
                    ranks[rank] = st
        if unknown:
            print(f"grok2_ref: warning: ignoring {len(unknown)} tensor(s) not in the Grok-2 "
                  f"layout, first '{unknown[0]}'", file=sys.stderr)
        for name, shape in self.shapes.items():
            if name in self.common:
                got = self.common[name].entries[name][1]
                if got != shape:
                    raise RefError(f"{self.common[name].path}: tensor '{name}' has shape "
                                   f"{list(got)}, config.json implies {list(shape)}")
            elif name in self.ranked:
                self._check_ranks(name)
            else:
                raise RefError(f"{hf_dir}: missing tensor '{name}'")

    def _check_ranks(self, name):
        """TP slices: ranks 0..R-1 all present; they must concatenate to the logical shape."""
        ranks = self.ranked[name]
        missing = sorted(set(range(self.n_ranks)) - set(ranks))
        if missing:
            raise RefError(f"tensor '{name}': missing its slice of TP rank {missing[0]} (files "
                           f"for ranks 0..{self.n_ranks - 1} exist)")
        shape = self.shapes[name]
        axis = TP_AXIS[name.split(".")[-2]]
        total = 0
        for r in range(len(ranks)):
            got = ranks[r].entries[name][1]
            if len(got) != 2 or got[1 - axis] != shape[1 - axis]:
                raise RefError(f"{ranks[r].path}: tensor '{name}' (TP rank {r}) has shape "
                               f"{list(got)}, expected a slice of {list(shape)} along dim {axis}")
            total += got[axis]
        if total != shape[axis]:
            raise RefError(f"tensor '{name}': its {len(ranks)} TP slices add up to {total} along "
                           f"dim {axis}, config.json implies {shape[axis]}")

    def get(self, name):
        """Whole tensor as float64 in its logical shape."""
        if name in self.common:
            raw, dtype = self.common[name].raw(name)
            return to_float64(raw, dtype)
        ranks = self.ranked[name]
        axis = TP_AXIS[name.split(".")[-2]]
        parts = [to_float64(*ranks[r].raw(name)) for r in range(len(ranks))]
        return np.concatenate(parts, axis=axis)

    def rows(self, name, index):
        """Selected rows of an unsplit matrix (embedding lookup, lm_head chunks) as float64."""
        raw, dtype = self.common[name].raw(name)
        return to_float64(raw[index], dtype)


# ----------------------------------------------------------------------------------------------
# The building blocks of section 3, all in float64.

def rmsnorm(x, w, eps):
    """Section 3.1: x / sqrt(mean(x^2) + eps) * w, weight used as is (not 1 + w)."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def softcap(x, cap):
    """cap * tanh(x / cap). A cap <= 0 means no capping (SGLang's convention; the doc never
    uses one)."""
    return cap * np.tanh(x / cap) if cap > 0 else x


_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    """Section 3.2: exact erf GELU, 0.5 x (1 + erf(x / sqrt 2)), with libm's erf per element."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def gated_mlp(x, w_gate, w_up, w_down):
    """Section 3.2: down( GELU(gate x) * (up x) ). Dense: gate/up/down_proj; expert: w1/w3/w2."""
    return (gelu(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def rope_tables(positions, head_dim, theta):
    """Section 3.3: inv_freq_i = theta^(-2i/head_dim), i = 0..head_dim/2-1; angle = 0-based
    absolute position * inv_freq_i. Plain RoPE: no YaRN, no NTK, no magnitude scale."""
    i = np.arange(head_dim // 2, dtype=np.float64)
    inv_freq = theta ** (-2.0 * i / head_dim)
    angle = positions.astype(np.float64)[:, None] * inv_freq[None, :]
    return np.cos(angle), np.sin(angle)


def rope(x, cos, sin):
    """NeoX rotate-half over the full head: element i pairs with i + head_dim/2.
    x: [T, heads, head_dim]; cos, sin: [T, head_dim/2]."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[:, None, :], sin[:, None, :]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


def attention_temperature(positions, temp_len):
    """Section 3.3's length-dependent attention temperature, one factor per query position.

    The doc: "for a query at absolute position p > 1024, s *= log2(p) / 10 (p = number of tokens
    before it, so the first token is p = 0 and the factor is 1 up to p = 1024)", with 1024 =
    attn_temperature_len of the release. The 10 there is log2(1024) = log2(attn_temperature_len),
    as in SGLang's kernels (xai_temperature_reg = where(p > len, log2(p) / log2(len), 1)), so for
    any config:
        factor(p) = log2(p) / log2(attn_temperature_len)   if p > attn_temperature_len
                  = 1                                       otherwise (p <= attn_temperature_len)
    with p the 0-based absolute position of the query. Identical to the doc for the release
    (len 1024), continuous at p = len. attn_temperature_len <= 0 disables it (SGLang's -1).
    It multiplies the scores after the tanh cap and before the causal mask."""
    p = positions.astype(np.float64)
    if temp_len <= 0:
        return np.ones_like(p)
    factor = np.ones_like(p)
    late = positions > temp_len
    factor[late] = np.log2(p[late]) / math.log2(temp_len)
    return factor


def attention(x, wq, wk, wv, wo, cfg, cos, sin, temperature):
    """Section 3.3 for a whole causal sequence x [T, d] at positions 0..T-1."""
    T = x.shape[0]
    H, KV, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    # q, k, v projections (no biases), split into heads
    q = (x @ wq.T).reshape(T, H, D)
    k = (x @ wk.T).reshape(T, KV, D)
    v = (x @ wv.T).reshape(T, KV, D)
    # RoPE on q and k
    q = rope(q, cos, sin)
    k = rope(k, cos, sin)
    causal = np.tril(np.ones((T, T), dtype=bool))  # [query, key]: key <= query
    out = np.empty((T, H, D))
    group = H // KV
    for h in range(H):
        g = h // group  # GQA: q-head h reads kv-head h // (H / KV)
        # s = q.k / sqrt(head_dim), then cap * tanh(s / cap)
        s = softcap(q[:, h, :] @ k[:, g, :].T / math.sqrt(D), cfg["attn_logit_softcapping"])
        # attention temperature of the query's position (rows)
        s = s * temperature[:, None]
        # causal mask, softmax, weighted sum of v
        s = np.where(causal, s, -np.inf)
        out[:, h, :] = softmax(s) @ v[:, g, :]
    # concat heads, o_proj
    return out.reshape(T, H * D) @ wo.T


def moe(y, ckpt, layer, cfg):
    """Section 3.4: router r = y W^T, r = cap tanh(r / cap), softmax over all experts, top-k
    (ties to the lower index); weights are the full-softmax probabilities, NOT renormalized.
    MoE(y) = sum over chosen e of p_e * expert_e(y). Experts run only on the tokens routed to
    them."""
    p = f"model.layers.{layer}.block_sparse_moe."
    r = softcap(y @ ckpt.get(p + "gate.weight").T, cfg["router_logit_softcapping"])
    probs = softmax(r)
    # stable sort of -probs: among equal probabilities the lower expert index comes first
    chosen = np.argsort(-probs, axis=1, kind="stable")[:, :cfg["num_experts_per_tok"]]
    out = np.zeros_like(y)
    for e in range(cfg["num_local_experts"]):
        tok = np.nonzero((chosen == e).any(axis=1))[0]
        if tok.size == 0:
            continue
        q = f"{p}experts.{e}."
        ye = gated_mlp(y[tok], ckpt.get(q + "w1.weight"), ckpt.get(q + "w3.weight"),
                       ckpt.get(q + "w2.weight"))
        out[tok] += probs[tok, e][:, None] * ye
    return out


# ----------------------------------------------------------------------------------------------
# Section 3.1: the whole forward pass.

def forward(ckpt, cfg, tokens):
    """Logits [T, vocab] for the tokens as one causal sequence at positions 0..T-1."""
    tokens = np.asarray(tokens, dtype=np.int64)
    T = tokens.shape[0]
    positions = np.arange(T)
    eps = cfg["rms_norm_eps"]
    cos, sin = rope_tables(positions, cfg["head_dim"], cfg["rope_theta"])
    temperature = attention_temperature(positions, cfg["attn_temperature_len"])

    # h = embed[token] * embedding_multiplier_scale
    h = ckpt.rows("model.embed_tokens.weight", tokens) * cfg["embedding_multiplier_scale"]

    for L in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{L}."
        # x = RMSNorm_pre_attn(h)
        x = rmsnorm(h, ckpt.get(p + "pre_attn_norm.weight"), eps)
        # h = h + RMSNorm_post_attn(Attention(x))
        a = attention(x, ckpt.get(p + "self_attn.q_proj.weight"),
                      ckpt.get(p + "self_attn.k_proj.weight"),
                      ckpt.get(p + "self_attn.v_proj.weight"),
                      ckpt.get(p + "self_attn.o_proj.weight"), cfg, cos, sin, temperature)
        h = h + rmsnorm(a, ckpt.get(p + "post_attn_norm.weight"), eps)
        # y = RMSNorm_pre_moe(h)
        y = rmsnorm(h, ckpt.get(p + "pre_moe_norm.weight"), eps)
        # DenseMLP(y): down(GELU(gate y) * (up y))
        dense = gated_mlp(y, ckpt.get(p + "mlp.gate_proj.weight"),
                          ckpt.get(p + "mlp.up_proj.weight"), ckpt.get(p + "mlp.down_proj.weight"))
        # MoE(y)
        routed = moe(y, ckpt, L, cfg)
        # h = h + RMSNorm_post_moe((DenseMLP(y) + MoE(y)) / sqrt(2))
        h = h + rmsnorm((dense + routed) / math.sqrt(2.0),
                        ckpt.get(p + "post_moe_norm.weight"), eps)

    # logits = RMSNorm_final(h) @ (output_multiplier_scale * lm_head)^T, lm_head read in chunks
    x = rmsnorm(h, ckpt.get("model.norm.weight"), eps)
    V = cfg["vocab_size"]
    logits = np.empty((T, V))
    chunk = max(1, (1 << 27) // (8 * cfg["hidden_size"]))  # ~128 MiB of float64 per chunk
    for v0 in range(0, V, chunk):
        w = ckpt.rows("lm_head.weight", slice(v0, min(V, v0 + chunk)))
        logits[:, v0:v0 + w.shape[0]] = x @ (cfg["output_multiplier_scale"] * w).T
    # logits = final_cap * tanh(logits / final_cap)
    return softcap(logits, cfg["final_logit_softcapping"])


# ----------------------------------------------------------------------------------------------
# Command line.

def parse_tokens(text, vocab):
    tokens = []
    for item in text.split(","):
        item = item.strip()
        if not re.fullmatch(r"\d+", item):
            raise RefError(f"--tokens: '{item}' is not a non-negative integer token id")
        t = int(item)
        if t >= vocab:
            raise RefError(f"--tokens: token id {t} is out of range (vocab_size {vocab})")
        tokens.append(t)
    return tokens


def format_line(pos, tok, row):
    a = int(np.argmax(row))  # first maximum on ties
    values = " ".join(map(repr, row.tolist()))
    return f"pos {pos} tok {tok} argmax {a} max {float(row[a])!r} logits {values}\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description="float64 numpy oracle of the Grok-2 forward pass")
    ap.add_argument("hf_dir", help="checkpoint directory (config.json, pytorch_model-*.safetensors)")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids, e.g. 1,2,3")
    ap.add_argument("--all", action="store_true", help="print every position, not only the last")
    ap.add_argument("--out", help="write to this file instead of stdout")
    args = ap.parse_args(argv)
    try:
        if not os.path.isdir(args.hf_dir):
            raise RefError(f"{args.hf_dir}: not a directory")
        cfg = load_config(args.hf_dir)
        tokens = parse_tokens(args.tokens, cfg["vocab_size"])
        ckpt = Checkpoint(args.hf_dir, cfg)
        logits = forward(ckpt, cfg, tokens)
        first = 0 if args.all else len(tokens) - 1
        lines = [format_line(i, tokens[i], logits[i]) for i in range(first, len(tokens))]
        if args.out:
            with open(args.out, "w", encoding="ascii") as f:
                f.writelines(lines)
        else:
            sys.stdout.writelines(lines)
    except RefError as e:
        print(f"grok2_ref: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"grok2_ref: error: {e}", file=sys.stderr)
        return 1
    except MemoryError:
        print("grok2_ref: error: out of memory", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

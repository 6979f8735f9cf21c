#!/usr/bin/python3
"""make_tiny_hf.py: write a small random checkpoint in the Grok-2 release layout (numpy, seeded).

    /usr/bin/python3 tests/reference/make_tiny_hf.py OUT_DIR [--ranks 8] [--seed 0]
        [--set key=value ...]

Layout (docs/grok2-model.md section 2): config.json with every section-1 key the oracle reads;
bf16 safetensors named pytorch_model-*.safetensors; the experts split over R tensor-parallel
ranks, one file per (layer, rank) named `pytorch_model-000LL-TP-RRR.safetensors`, each holding
1/R of every expert's intermediate dimension under the full tensor name (w1, w3 by rows, w2 by
columns); everything else unsplit in two `-TP-common` files (embedding + layers, then the final
norm + lm_head), to exercise several common files. A rotary_emb.inv_freq tensor is included
(it must be skipped).

The defaults are the tiny shape: hidden 256, 2 layers, 8 heads / 2 kv heads of 32, 4 experts of
width 512 (top 2), dense MLP 1024, vocab 512. Weights are drawn with scales that keep the
activations O(1). Also importable: make(out_dir, config, ranks, seed) returns the full
(unsplit) weights as float64 after bf16 rounding, for tests that want them without the loader.
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np

TINY_CONFIG = {
    "architectures": ["Grok1ForCausalLM"],
    "model_type": "git",
    "hidden_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "vocab_size": 512,
    "num_local_experts": 4,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 512,
    "intermediate_size": 1024,
    "residual_moe": True,
    "rope_theta": 208533496,
    "rope_type": "original",
    "original_max_position_embeddings": 8192,
    "scaling_factor": 16.0,
    "beta_fast": 8,
    "beta_slow": 1,
    "extrapolation_factor": 1.0,
    "attn_factor": 1.0,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "attn_logit_softcapping": 30.0,
    "router_logit_softcapping": 30.0,
    "final_logit_softcapping": 50,
    "embedding_multiplier_scale": 16.0,  # sqrt(hidden_size), as in the release
    "output_multiplier_scale": 0.5,
    "attn_temperature_len": 1024,
    "sliding_window_size": -1,
    "global_attn_every_n": 1,
    "torch_dtype": "bfloat16",
}


def bf16_bits(a):
    """float -> bf16 bits, round to nearest even (no NaNs are generated here)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def bf16_to_float64(bits):
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)


def write_safetensors(path, tensors):
    """tensors: {name: (dtype string, numpy array of the stored values)}, written in order."""
    header, blobs, offset = {}, [], 0
    for name, (dtype, arr) in tensors.items():
        data = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * (-len(hjson) % 8)  # pad the header to 8 bytes as the reference writer does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def make(out_dir, config=None, ranks=8, seed=0):
    """Write the checkpoint; return the full weights {name: float64 array} (bf16-rounded)."""
    cfg = dict(TINY_CONFIG if config is None else config)
    d, H, KV, D = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], \
        cfg["head_dim"]
    V, E, I, Im = cfg["vocab_size"], cfg["num_local_experts"], cfg["intermediate_size"], \
        cfg["moe_intermediate_size"]
    if Im % ranks != 0:
        raise SystemExit(f"moe_intermediate_size {Im} is not a multiple of --ranks {ranks}")
    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)

    full = {}  # name -> bf16 bits, logical shape

    def mat(name, shape, std):
        full[name] = bf16_bits(rng.standard_normal(shape) * std)

    def norm(name):
        full[name] = bf16_bits(1.0 + 0.2 * rng.standard_normal(d))

    emb_scale = cfg["embedding_multiplier_scale"]
    mat("model.embed_tokens.weight", (V, d), 1.0 / emb_scale)
    for L in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{L}."
        norm(p + "pre_attn_norm.weight")
        # q/k a bit larger than 1/sqrt(d) so the attention is not uniform
        mat(p + "self_attn.q_proj.weight", (H * D, d), 2.0 / math.sqrt(d))
        mat(p + "self_attn.k_proj.weight", (KV * D, d), 2.0 / math.sqrt(d))
        mat(p + "self_attn.v_proj.weight", (KV * D, d), 1.0 / math.sqrt(d))
        mat(p + "self_attn.o_proj.weight", (d, H * D), 1.0 / math.sqrt(H * D))
        norm(p + "post_attn_norm.weight")
        norm(p + "pre_moe_norm.weight")
        mat(p + "mlp.gate_proj.weight", (I, d), 1.0 / math.sqrt(d))
        mat(p + "mlp.up_proj.weight", (I, d), 1.0 / math.sqrt(d))
        mat(p + "mlp.down_proj.weight", (d, I), 1.0 / math.sqrt(I))
        mat(p + "block_sparse_moe.gate.weight", (E, d), 1.0 / math.sqrt(d))
        for e in range(E):
            q = f"{p}block_sparse_moe.experts.{e}."
            mat(q + "w1.weight", (Im, d), 1.0 / math.sqrt(d))
            mat(q + "w3.weight", (Im, d), 1.0 / math.sqrt(d))
            mat(q + "w2.weight", (d, Im), 1.0 / math.sqrt(Im))
        norm(p + "post_moe_norm.weight")
    norm("model.norm.weight")
    mat("lm_head.weight", (V, d), 4.0 / math.sqrt(d))

    # unsplit tensors: two common files; experts: one file per (layer, rank)
    common1, common2 = {}, {}
    ranked = {}  # (layer, rank) -> tensors
    for name, bits in full.items():
        if ".experts." in name:
            L = int(name.split(".")[2])
            kind = name.split(".")[-2]
            axis = 1 if kind == "w2" else 0
            for r, part in enumerate(np.split(bits, ranks, axis=axis)):
                ranked.setdefault((L, r), {})[name] = ("BF16", part)
        elif name in ("model.norm.weight", "lm_head.weight"):
            common2[name] = ("BF16", bits)
        else:
            common1[name] = ("BF16", bits)
    common1["model.layers.0.self_attn.rotary_emb.inv_freq"] = (
        "F32", np.zeros(D // 2, dtype=np.float32))
    write_safetensors(os.path.join(out_dir, "pytorch_model-00000-TP-common.safetensors"), common1)
    write_safetensors(os.path.join(out_dir, "pytorch_model-00001-TP-common.safetensors"), common2)
    for (L, r), tensors in sorted(ranked.items()):
        write_safetensors(os.path.join(out_dir,
                                       f"pytorch_model-{L + 2:05d}-TP-{r:03d}.safetensors"),
                          tensors)
    return {name: bf16_to_float64(bits) for name, bits in full.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--ranks", type=int, default=8, help="TP ranks the experts are split over")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config.json key (value parsed as JSON)")
    args = ap.parse_args()
    cfg = dict(TINY_CONFIG)
    for kv in args.set:
        key, _, value = kv.partition("=")
        cfg[key] = json.loads(value)
    make(args.out_dir, cfg, args.ranks, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())

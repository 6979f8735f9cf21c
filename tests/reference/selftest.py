#!/usr/bin/python3
"""selftest.py: checks of the numpy oracle grok2_ref.py on small random checkpoints.

    /usr/bin/python3 tests/reference/selftest.py

What it proves:
- the batched oracle equals a naive decode-style implementation written here (per position, KV
  cache, python loops over heads/keys/pairs, scalar math.erf/tanh/exp), fed the generator's
  unsplit weights (so the loader and the TP reassembly are checked too);
- a checkpoint split over 1, 2 or 8 TP ranks gives the same logits, bit for bit;
- causality: logits at position i do not change when the tokens after i change;
- the attention temperature: factor 1 up to and including p = attn_temperature_len, then
  log2(p) / log2(attn_temperature_len) (= log2(p) / 10 for the release's 1024), exercised
  cheaply with attn_temperature_len = 8, and at the real 1024 over a 1100-token sequence;
- MoE routing: top-k ties go to the lower index, weights are not renormalized;
- bf16 / f16 / f32 decoding of safetensors;
- the command line: output format, --all, --out, and one-line errors with a non-zero exit.
Ends with 'N passed, M failed'; exits non-zero on any failure.
"""

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
import grok2_ref as ref  # noqa: E402
import make_tiny_hf as tiny  # noqa: E402

PY = sys.executable
RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f"  ({detail})" if detail else ""), flush=True)


def run_oracle(hf_dir, cfg, tokens):
    return ref.forward(ref.Checkpoint(hf_dir, cfg), cfg, tokens)


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


# ----------------------------------------------------------------------------------------------
# A second implementation, decode style: one position at a time with a KV cache, python loops,
# scalar math. Written from docs/grok2-model.md section 3 like the oracle, but sharing no code.

def naive_forward(W, c, tokens):
    d, H, KV, D = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], \
        c["head_dim"]
    E, k_top, eps = c["num_local_experts"], c["num_experts_per_tok"], c["rms_norm_eps"]
    tlen = c["attn_temperature_len"]

    def rms(x, w):
        ms = sum(float(v) * float(v) for v in x) / len(x)
        return np.array([float(x[i]) / math.sqrt(ms + eps) * float(w[i]) for i in range(len(x))])

    def cap(v, c_):
        return c_ * math.tanh(v / c_)

    def gelu(v):
        return 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))

    def mlp(x, wg, wu, wd):
        g, u = wg.dot(x), wu.dot(x)
        return wd.dot(np.array([gelu(float(g[i])) * float(u[i]) for i in range(len(g))]))

    def rope_head(vec, pos):
        out = np.array(vec, dtype=np.float64)
        half = D // 2
        for i in range(half):
            ang = pos * c["rope_theta"] ** (-(2.0 * i) / D)
            a, b = float(vec[i]), float(vec[i + half])
            out[i] = a * math.cos(ang) - b * math.sin(ang)
            out[i + half] = b * math.cos(ang) + a * math.sin(ang)
        return out

    kcache = [[] for _ in range(c["num_hidden_layers"])]  # [layer][pos] -> [KV][D]
    vcache = [[] for _ in range(c["num_hidden_layers"])]
    all_logits = []
    for pos, tok in enumerate(tokens):
        h = W["model.embed_tokens.weight"][tok] * c["embedding_multiplier_scale"]
        temp = math.log2(pos) / math.log2(tlen) if (tlen > 0 and pos > tlen) else 1.0
        for L in range(c["num_hidden_layers"]):
            p = f"model.layers.{L}."
            x = rms(h, W[p + "pre_attn_norm.weight"])
            q = W[p + "self_attn.q_proj.weight"].dot(x)
            k = W[p + "self_attn.k_proj.weight"].dot(x)
            v = W[p + "self_attn.v_proj.weight"].dot(x)
            kcache[L].append([rope_head(k[g * D:(g + 1) * D], pos) for g in range(KV)])
            vcache[L].append([v[g * D:(g + 1) * D] for g in range(KV)])
            heads = []
            for hh in range(H):
                g = hh * KV // H
                qh = rope_head(q[hh * D:(hh + 1) * D], pos)
                s = [cap(float(qh.dot(kcache[L][j][g])) / math.sqrt(D),
                         c["attn_logit_softcapping"]) * temp for j in range(pos + 1)]
                m = max(s)
                ex = [math.exp(si - m) for si in s]
                tot = sum(ex)
                o = np.zeros(D)
                for j in range(pos + 1):
                    o = o + (ex[j] / tot) * vcache[L][j][g]
                heads.append(o)
            a = W[p + "self_attn.o_proj.weight"].dot(np.concatenate(heads))
            h = h + rms(a, W[p + "post_attn_norm.weight"])
            y = rms(h, W[p + "pre_moe_norm.weight"])
            dense = mlp(y, W[p + "mlp.gate_proj.weight"], W[p + "mlp.up_proj.weight"],
                        W[p + "mlp.down_proj.weight"])
            r = [cap(float(val), c["router_logit_softcapping"])
                 for val in W[p + "block_sparse_moe.gate.weight"].dot(y)]
            m = max(r)
            ex = [math.exp(ri - m) for ri in r]
            prob = [e_ / sum(ex) for e_ in ex]
            top = sorted(range(E), key=lambda e_: (-prob[e_], e_))[:k_top]
            routed = np.zeros(d)
            for e in top:
                q_ = f"{p}block_sparse_moe.experts.{e}."
                routed = routed + prob[e] * mlp(y, W[q_ + "w1.weight"], W[q_ + "w3.weight"],
                                                W[q_ + "w2.weight"])
            h = h + rms((dense + routed) / math.sqrt(2.0), W[p + "post_moe_norm.weight"])
        x = rms(h, W["model.norm.weight"])
        lg = (c["output_multiplier_scale"] * W["lm_head.weight"]).dot(x)
        all_logits.append([cap(float(val), c["final_logit_softcapping"]) for val in lg])
    return np.array(all_logits)


def small_config(**over):
    c = dict(tiny.TINY_CONFIG)
    c.update({"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
              "head_dim": 16, "vocab_size": 96, "num_local_experts": 4,
              "moe_intermediate_size": 64, "intermediate_size": 96,
              "embedding_multiplier_scale": 8.0})
    c.update(over)
    return c


def cli(args):
    p = subprocess.run([PY, os.path.join(HERE, "grok2_ref.py")] + args, capture_output=True,
                       text=True)
    return p.returncode, p.stdout, p.stderr


def parse_lines(text):
    rows = []
    for line in text.splitlines():
        f = line.split()
        assert f[0] == "pos" and f[2] == "tok" and f[4] == "argmax" and f[6] == "max" \
            and f[8] == "logits", line[:80]
        rows.append((int(f[1]), int(f[3]), int(f[5]), float(f[7]),
                     np.array([float(v) for v in f[9:]])))
    return rows


def main():
    t_start = time.time()
    work = tempfile.mkdtemp(prefix="grok2_ref_selftest.")
    rng = np.random.default_rng(123)
    try:
        # --- 1. oracle vs naive, tiny default shape, experts over 8 TP ranks -------------------
        d8 = os.path.join(work, "tiny8")
        W = tiny.make(d8, tiny.TINY_CONFIG, ranks=8, seed=1)
        cfg = ref.load_config(d8)
        toks = [int(t) for t in rng.integers(0, cfg["vocab_size"], 10)]
        got = run_oracle(d8, cfg, toks)
        want = naive_forward(W, cfg, toks)
        e = rel_err(got, want)
        check("oracle == naive decode loop (tiny shape, 8 TP ranks, 10 tokens)", e < 1e-10,
              f"rel err {e:.2e}")

        # --- 2. oracle vs naive with the temperature on (len 8) and tight caps ------------------
        ctemp = small_config(attn_temperature_len=8, attn_logit_softcapping=1.5,
                             router_logit_softcapping=0.3, final_logit_softcapping=2.0)
        dt = os.path.join(work, "temp8")
        Wt = tiny.make(dt, ctemp, ranks=4, seed=2)
        cfg_t = ref.load_config(dt)
        toks_t = [int(t) for t in rng.integers(0, cfg_t["vocab_size"], 20)]
        got_t = run_oracle(dt, cfg_t, toks_t)
        want_t = naive_forward(Wt, cfg_t, toks_t)
        e = rel_err(got_t, want_t)
        check("oracle == naive, attn_temperature_len 8, 20 tokens, tight softcaps", e < 1e-10,
              f"rel err {e:.2e}")
        check("softcaps bind: |logits| < final cap, and some above half of it",
              bool(np.all(np.abs(got_t) < 2.0) and np.any(np.abs(got_t) > 1.0)))

        # --- 3. the temperature rule ---------------------------------------------------------
        f = ref.attention_temperature(np.arange(3000), 1024)
        ok = (np.all(f[:1025] == 1.0) and f[2048] == 1.1
              and abs(f[1025] - math.log2(1025) / 10) < 1e-15
              and np.all(np.abs(f[1025:] - np.log2(np.arange(1025, 3000)) / 10) < 1e-15))
        check("temperature(len 1024): 1 for p <= 1024, log2(p)/10 above (p=2048 -> 1.1)", ok)
        f8 = ref.attention_temperature(np.arange(40), 8)
        ok = (np.all(f8[:9] == 1.0) and abs(f8[16] - 4 / 3) < 1e-15
              and np.all(np.abs(f8[9:] - np.log2(np.arange(9, 40)) / 3) < 1e-15))
        check("temperature(len 8): 1 for p <= 8, log2(p)/log2(8) above", ok)
        check("temperature disabled when attn_temperature_len <= 0",
              bool(np.all(ref.attention_temperature(np.arange(5000), -1) == 1.0)))
        off = dict(cfg_t, attn_temperature_len=-1)
        got_off = run_oracle(dt, off, toks_t)
        same = np.max(np.abs(got_off[:9] - got_t[:9]))
        diff = np.min(np.max(np.abs(got_off[9:] - got_t[9:]), axis=1))
        check("temperature len 8: positions 0..8 unaffected, every position 9..19 changed",
              same == 0.0 and diff > 1e-6, f"max diff 0..8 {same:.1e}, min diff 9.. {diff:.1e}")
        at9 = run_oracle(dt, dict(cfg_t, attn_temperature_len=9), toks_t)
        ok = (np.max(np.abs(at9[:10] - got_off[:10])) == 0.0
              and np.max(np.abs(at9[10] - got_off[10])) > 1e-6)
        check("temperature len 9: p = 9 keeps factor 1, p = 10 gets log2(10)/log2(9)", ok)

        # --- 4. TP reassembly: 1, 2 and 8 ranks give identical logits --------------------------
        d1, d2 = os.path.join(work, "tiny1"), os.path.join(work, "tiny2")
        tiny.make(d1, tiny.TINY_CONFIG, ranks=1, seed=1)
        tiny.make(d2, tiny.TINY_CONFIG, ranks=2, seed=1)
        g1 = run_oracle(d1, cfg, toks)
        g2 = run_oracle(d2, cfg, toks)
        check("TP ranks 1 vs 8: identical logits", bool(np.array_equal(g1, got)))
        check("TP ranks 2 vs 8: identical logits", bool(np.array_equal(g2, got)))
        ck = ref.Checkpoint(d8, cfg)
        name = "model.layers.1.block_sparse_moe.experts.3.w2.weight"
        check("TP reassembly: w2 of 8 rank slices == generator's full matrix",
              bool(np.array_equal(ck.get(name), W[name])) and len(ck.ranked[name]) == 8)

        # --- 5. causality -------------------------------------------------------------------
        toks_b = toks[:6] + [int(t) for t in rng.integers(0, cfg["vocab_size"], 4)]
        gb = run_oracle(d8, cfg, toks_b)
        e = np.max(np.abs(gb[:6] - got[:6]))
        check("causal: positions 0..5 unchanged when tokens 6..9 change", e < 1e-12,
              f"max diff {e:.1e}")
        check("causal: position 6 does change", bool(np.max(np.abs(gb[6] - got[6])) > 1e-6))
        gp = run_oracle(d8, cfg, toks[:4])
        e = np.max(np.abs(gp - got[:4]))
        check("prefix: 4-token run == first 4 positions of the 10-token run", e < 1e-12,
              f"max diff {e:.1e}")

        # --- 6. MoE routing: ties to the lower index, no renormalisation -------------------
        class Fake:
            def __init__(self, t):
                self.t = t

            def get(self, n):
                return self.t[n]
        cm = small_config(hidden_size=8, moe_intermediate_size=4, num_local_experts=4,
                          num_experts_per_tok=2)
        p = "model.layers.0.block_sparse_moe."
        mr = np.random.default_rng(5)
        t = {p + "gate.weight": np.zeros((4, 8))}  # every expert scores 0: all tie at 1/4
        for ex in range(4):
            for wn, shape in (("w1", (4, 8)), ("w3", (4, 8)), ("w2", (8, 4))):
                t[f"{p}experts.{ex}.{wn}.weight"] = mr.standard_normal(shape)
        y = mr.standard_normal((3, 8))

        def expert(ex, yy):
            q = f"{p}experts.{ex}."
            return ref.gated_mlp(yy, t[q + "w1.weight"], t[q + "w3.weight"], t[q + "w2.weight"])
        out = ref.moe(y, Fake(t), 0, cm)
        want_m = 0.25 * expert(0, y) + 0.25 * expert(1, y)
        check("MoE: tied router picks experts 0 and 1, weights 1/4 each (not renormalised)",
              float(np.max(np.abs(out - want_m))) < 1e-14)
        t[p + "gate.weight"] = np.zeros((4, 8))
        t[p + "gate.weight"][2, 0] = 1.0
        t[p + "gate.weight"][3, 0] = 0.5
        y2 = np.abs(y) + 0.1  # y[:, 0] > 0: expert 2 first, then 3
        out = ref.moe(y2, Fake(t), 0, cm)
        r = cm["router_logit_softcapping"] * np.tanh(y2[:, :1] * np.array([[0, 0, 1.0, 0.5]])
                                                     / cm["router_logit_softcapping"])
        pr = np.exp(r) / np.exp(r).sum(axis=1, keepdims=True)
        want_m = pr[:, 2:3] * expert(2, y2) + pr[:, 3:4] * expert(3, y2)
        check("MoE: top-2 by capped-softmax probability, weighted by those probabilities",
              float(np.max(np.abs(out - want_m))) < 1e-14)

        # --- 7. GELU is the erf form, not the tanh approximation ---------------------------------
        xs = np.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0])
        exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in xs])
        check("GELU: exact erf form", float(np.max(np.abs(ref.gelu(xs) - exact))) == 0.0
              and abs(ref.gelu(np.array([1.0]))[0] - 0.8413447460685429) < 1e-15)

        # --- 8. safetensors decoding: BF16, F16, F32 ---------------------------------------
        sp = os.path.join(work, "dtypes.safetensors")
        tiny.write_safetensors(sp, {
            "a": ("BF16", np.array([0x3F80, 0xC000, 0x7F7F, 0x0001, 0x8000], dtype="<u2")),
            "b": ("F16", np.array([1.5, -0.25, 65504.0], dtype="<f2")),
            "c": ("F32", np.array([[0.1, -7.0], [3.0e38, 1e-40]], dtype="<f4")),
        })
        st = ref.SafetensorsFile(sp)
        a = ref.to_float64(*st.raw("a"))
        b = ref.to_float64(*st.raw("b"))
        c_ = ref.to_float64(*st.raw("c"))
        ok = (a.tolist() == [1.0, -2.0, 3.3895313892515355e38, 9.183549615799121e-41, -0.0]
              and b.tolist() == [1.5, -0.25, 65504.0]
              and c_.tolist() == np.array([[0.1, -7.0], [3.0e38, 1e-40]], np.float32).tolist()
              and c_.shape == (2, 2))
        check("safetensors: BF16/F16/F32 decode to the exact float64 values", ok)

        # --- 9. command line ----------------------------------------------------------------
        out_file = os.path.join(work, "out.txt")
        tokstr = ",".join(map(str, toks))
        rc, so, se = cli([d8, "--tokens", tokstr, "--all", "--out", out_file])
        with open(out_file) as fh:
            rows = parse_lines(fh.read())
        ok = (rc == 0 and so == "" and len(rows) == len(toks)
              and all(r_[0] == i and r_[1] == toks[i] for i, r_ in enumerate(rows))
              and all(r_[4].shape == (cfg["vocab_size"],) for r_ in rows)
              and np.array_equal(np.array([r_[4] for r_ in rows]), got)
              and all(r_[2] == int(np.argmax(r_[4])) and r_[3] == r_[4].max() for r_ in rows))
        check("CLI --all --out: every position, exact round-trip of the logits, argmax/max", ok,
              se.strip()[:200])
        rc, so, se = cli([d8, "--tokens", " " + tokstr.replace(",", " , ")])
        rows = parse_lines(so) if rc == 0 else []
        check("CLI default: only the last position, to stdout",
              rc == 0 and len(rows) == 1 and rows[0][0] == len(toks) - 1
              and np.array_equal(rows[0][4], got[-1]), se.strip()[:200])

        # --- 10. errors: one line on stderr, non-zero exit, nothing on stdout --------------------
        def broken(label, mutate, tokens="1,2,3", expect=""):
            bd = os.path.join(work, "broken_" + label.replace(" ", "_"))
            shutil.copytree(d2, bd)
            mutate(bd)
            rc, so, se = cli([bd, "--tokens", tokens])
            lines = se.strip().splitlines()
            ok = (rc != 0 and so == "" and len(lines) == 1
                  and lines[0].startswith("grok2_ref: error:") and expect in lines[0])
            check(f"error: {label}", ok, lines[0] if lines else f"rc {rc}, no stderr")

        def edit_config(key, value):
            def m(bd):
                path = os.path.join(bd, "config.json")
                with open(path) as fh:
                    c = json.load(fh)
                if value is None:
                    del c[key]
                else:
                    c[key] = value
                with open(path, "w") as fh:
                    json.dump(c, fh)
            return m

        def rm(name):
            return lambda bd: os.remove(os.path.join(bd, name))

        def truncate(name, size):
            def m(bd):
                with open(os.path.join(bd, name), "r+b") as fh:
                    fh.truncate(size)
            return m

        def write(name, data):
            def m(bd):
                with open(os.path.join(bd, name), "wb") as fh:
                    fh.write(data)
            return m

        broken("missing config key", edit_config("rope_theta", None), expect="rope_theta")
        broken("bad config JSON", write("config.json", b"{\"hidden_size\": 256,"),
               expect="bad JSON")
        broken("no config.json", rm("config.json"), expect="config.json")
        broken("shape mismatch", edit_config("intermediate_size", 512), expect="shape")
        broken("missing tensor", rm("pytorch_model-00001-TP-common.safetensors"),
               expect="model.norm.weight")
        broken("missing TP rank", rm("pytorch_model-00003-TP-001.safetensors"),
               expect="missing its slice of TP rank 1")
        broken("truncated file", truncate("pytorch_model-00002-TP-000.safetensors", 4000),
               expect="00002-TP-000")
        broken("bad safetensors header",
               write("pytorch_model-00002-TP-000.safetensors", b"\x10" + b"\0" * 7 + b"{" * 16),
               expect="bad JSON header")
        broken("no safetensors files", lambda bd: [os.remove(os.path.join(bd, n))
                                                   for n in os.listdir(bd)
                                                   if n.endswith(".safetensors")],
               expect="pytorch_model-*.safetensors")
        broken("token id out of range", lambda bd: None, tokens="1,512,3", expect="512")
        broken("token id not a number", lambda bd: None, tokens="1,x,3", expect="'x'")
        rc, so, se = cli([os.path.join(work, "nonexistent"), "--tokens", "1"])
        check("error: missing directory", rc != 0 and len(se.strip().splitlines()) == 1
              and "not a directory" in se, se.strip())

        # --- 11. speed and the real temperature length: tiny shape, 1100 tokens -----------------
        long_toks = [int(t) for t in rng.integers(0, cfg["vocab_size"], 1100)]
        t0 = time.time()
        rc, so, se = cli([d8, "--tokens", ",".join(map(str, long_toks)), "--all", "--out",
                          out_file])
        dt_cli = time.time() - t0
        check("CLI: 1100 tokens of the tiny shape in under 30 s", rc == 0 and dt_cli < 30,
              f"{dt_cli:.1f} s")
        with open(out_file) as fh:
            long_logits = np.array([r_[4] for r_ in parse_lines(fh.read())])
        off = run_oracle(d8, dict(cfg, attn_temperature_len=-1), long_toks)
        same = np.max(np.abs(off[:1025] - long_logits[:1025]))
        diff = np.min(np.max(np.abs(off[1025:] - long_logits[1025:]), axis=1))
        check("temperature len 1024: positions 0..1024 unaffected, 1025..1099 changed",
              same < 1e-12 and diff > 1e-9, f"max diff ..1024 {same:.1e}, min diff 1025.. "
              f"{diff:.1e}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    passed = sum(RESULTS)
    failed = len(RESULTS) - passed
    print(f"{passed} passed, {failed} failed ({time.time() - t_start:.1f} s)")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

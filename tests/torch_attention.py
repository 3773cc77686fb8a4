"""gpt.cpp's attention view against the float64 PyTorch reference (tools/torch_gpt.py).

For each case it writes a random-weight model directory, picks random ids, runs

    gpt attention --model DIR --ids IDS --layer L --head H

for every layer and head, and compares the "weights" [T, T] with the reference's softmax
probabilities of that head (recorded inside Reference's own forward): max|diff| <= 1e-5, exact
zeros where the causal mask or a GPT-3 band hides a key, and the reported tokens, shape and band.
A negative test compares each head with its neighbour's reference: that must fail.

Usage: /usr/bin/python3 tests/torch_attention.py [--gpt build/gpt]
Exit status 0 when every comparison holds, 1 otherwise.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import torch_gpt  # noqa: E402
from torch_gpt import Config, Reference  # noqa: E402

TOL = 1e-5

CASES = [
    ("pre_dense", Config(n_layer=2, n_head=4, n_embd=32, n_ctx=64, vocab_size=101), 24),
    ("post_ln", Config(n_layer=2, n_head=4, n_embd=32, n_ctx=64, vocab_size=101, ln="post"), 17),
    ("banded", Config(n_layer=4, n_head=4, n_embd=32, n_ctx=64, vocab_size=101,
                      attention="alternating_banded", band=5), 20),
    ("gpt1_mix", Config(n_layer=3, n_head=2, n_embd=24, n_ctx=40, vocab_size=67, ln="post",
                        attention="alternating_banded", band=3, bias=False, tied_head=False), 40),
    ("one_token", Config(n_layer=2, n_head=2, n_embd=16, n_ctx=16, vocab_size=50), 1),
]


class Recording(Reference):
    """The reference, keeping each layer's attention probabilities [B, H, T, T] as it runs."""

    def __init__(self, cfg, params):
        super().__init__(cfg, params)
        self.probs = {}

    def _attention(self, x, layer):
        cfg = self.cfg
        B, T, C = x.shape
        H, D = cfg.n_head, cfg.head_dim
        q, k, _ = self._linear(x, f"h.{layer}.attn.c_attn").split(C, dim=-1)
        q, k = (t.reshape(B, T, H, D).transpose(1, 2) for t in (q, k))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        scores = scores.masked_fill(~torch_gpt.attention_mask(T, cfg.banded(layer), cfg.band), float("-inf"))
        self.probs[layer] = torch.softmax(scores, dim=-1).detach()
        return super()._attention(x, layer)


def run_gpt(gpt, model, ids, layer, head):
    cmd = [gpt, "attention", "--model", model, "--ids", " ".join(map(str, ids)), "--layer", str(layer),
           "--head", str(head)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if p.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {p.returncode}: {(p.stderr or p.stdout).strip()}")
    return json.loads(p.stdout)


def check(cfg, ids, got, ref, layer, head):
    """Failure messages comparing one `gpt attention` answer with the reference probabilities."""
    T = len(ids)
    fails = []
    if got.get("ids") != list(ids) or len(got.get("tokens", [])) != T:
        fails.append(f"ids/tokens do not echo the {T} input ids")
    if (got.get("layer"), got.get("head"), got.get("n_layer"), got.get("n_head")) != (layer, head, cfg.n_layer,
                                                                                      cfg.n_head):
        fails.append("layer/head/n_layer/n_head are not the request's and the model's")
    if got.get("banded") != cfg.banded(layer) or got.get("band") != (cfg.band if cfg.banded(layer) else 0):
        fails.append(f"banded/band say {got.get('banded')}/{got.get('band')}")
    w = np.array(got.get("weights", []), dtype=np.float64)
    if w.shape != (T, T):
        return fails + [f"weights have shape {list(w.shape)}, expected [{T}, {T}]"]
    r = ref.numpy()
    err = float(np.max(np.abs(w - r)))
    if err > TOL:
        i, j = np.unravel_index(int(np.argmax(np.abs(w - r))), w.shape)
        fails.append(f"max|diff| {err:.2e} > {TOL:g} at ({i}, {j}): gpt.cpp {w[i, j]:.8g}, reference {r[i, j]:.8g}")
    hidden = ~torch_gpt.attention_mask(T, cfg.banded(layer), cfg.band).numpy()
    if np.any(w[hidden] != 0.0):
        fails.append("non-zero weights where the mask hides the key")
    return fails


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpt", default=os.path.join(ROOT, "build", "gpt"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="torch_attention_") as work:
        rng = np.random.default_rng(4)
        negative_caught = []
        for name, cfg, T in CASES:
            params = torch_gpt.random_parameters(cfg, seed=len(name))
            d = os.path.join(work, name)
            torch_gpt.save_model_dir(d, cfg, params)
            ids = [int(x) for x in rng.integers(0, cfg.vocab_size, T)]
            ref = Recording(cfg, params)
            ref.logits(torch.tensor([ids]))
            worst, fails = 0.0, []
            for layer in range(cfg.n_layer):
                for head in range(cfg.n_head):
                    try:
                        got = run_gpt(a.gpt, d, ids, layer, head)
                    except (RuntimeError, ValueError) as e:
                        fails.append(str(e))
                        continue
                    fails += [f"layer {layer} head {head}: {f}" for f in
                              check(cfg, ids, got, ref.probs[layer][0, head], layer, head)]
                    w = np.array(got["weights"], dtype=np.float64)
                    worst = max(worst, float(np.max(np.abs(w - ref.probs[layer][0, head].numpy()))))
                    if cfg.n_head > 1 and T > 2:  # the neighbour's reference must not match
                        other = ref.probs[layer][0, (head + 1) % cfg.n_head]
                        negative_caught.append(bool(check(cfg, ids, got, other, layer, head)))
            status = "ok  " if not fails else "FAIL"
            print(f"{status} {name:10s} L{cfg.n_layer} H{cfg.n_head} T{T} {cfg.ln}-LN {cfg.attention}"
                  f"{'/' + str(cfg.band) if cfg.attention != 'dense' else ''}  max|diff| {worst:.2e}")
            for f in fails[:10]:
                print("      ", f)
            failures += bool(fails)
        if not negative_caught or not all(negative_caught):
            print(f"FAIL negative test: {negative_caught.count(False)} of {len(negative_caught)} heads matched "
                  "their neighbour's reference; the comparison cannot fail")
            failures += 1
        else:
            print(f"ok   negative test: all {len(negative_caught)} heads differ from their neighbour's reference")
    print("torch_attention: " + ("FAILED" if failures else "passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""gpt.cpp on a TRAINED model against float64: the cross-entropy over a 50,257-token vocabulary.

A random model's next-token distributions are flat, so any way of summing its exponentials gives
the same log-sum-exp. A trained model's are peaked: a few logits hold nearly all the mass and tens
of thousands of tiny terms hold the rest, and a float32 running sum drops the tiny ones once the
total is large. This test trains a small GPT with the GPT-2 vocabulary on the bundled Tiny
Shakespeare for a few seconds (`gpt prepare`, `gpt train`), then on held-out windows:

  1. the per-token losses `gpt logits --targets` writes, against the float64 cross-entropy of the
     very logits gpt.cpp wrote:                                   |diff| <= 1e-6 nats per token
     at every CPU dispatch level (native, GPT_CPU=avx2, GPT_CPU=scalar), and the mean loss too;
  2. the whole model against the float64 PyTorch reference (tools/torch_gpt.py) on the trained
     weights: logits, mean loss, per-token losses and every gradient with torch_conformance.py's
     tolerances, plus per-token losses to 1e-5 nats absolute (float32 logits bound this one: their
     own error is a few 1e-6 on logits of size ~10);
  3. that the check can fail: the same logits summed the old way (one float32 accumulator, in
     order) must miss the float64 losses by more than the tolerance of 1; otherwise the trained
     model is not peaked enough to prove anything, and the test fails.

Usage: /usr/bin/python3 tests/trained_conformance.py [--gpt build/gpt] [--steps 120] [--keep DIR]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import torch_gpt  # noqa: E402
from torch_conformance import compare, summary  # noqa: E402

TOL_CE = 1e-6         # nats per token: the cross-entropy of gpt.cpp's own logits vs float64
TOL_E2E_TOKEN = 1e-5  # nats per token: the whole model in float32 vs float64
B, T = 4, 64


def run(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    if p.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {p.returncode}: {(p.stderr or p.stdout).strip()}")
    return p.stdout


def float64_ce(logits, targets):
    """Per-token cross-entropy of float32 logits, computed in float64."""
    L = logits.astype(np.float64)
    m = L.max(-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(L - m).sum(-1))
    return lse - np.take_along_axis(L, targets[..., None], -1)[..., 0]


def float32_sequential_ce(logits, targets):
    """The old kernel's arithmetic: exp in float32, summed in order into one float32 accumulator."""
    L = logits.astype(np.float32)
    m = L.max(-1, keepdims=True)
    e = np.exp(L - m).astype(np.float32)
    s = np.cumsum(e, axis=-1, dtype=np.float32)[..., -1]  # cumsum adds in order
    lse = m[..., 0] + np.log(s).astype(np.float32)
    return (lse - np.take_along_axis(L, targets[..., None], -1)[..., 0]).astype(np.float64)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpt", default=os.path.join(ROOT, "build", "gpt"))
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--keep", help="work here and keep the files")
    a = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    ctx = tempfile.TemporaryDirectory(prefix="trained_conformance_") if not a.keep else None
    work = a.keep or ctx.name
    os.makedirs(work, exist_ok=True)
    failures = []
    try:
        data, model = os.path.join(work, "data"), os.path.join(work, "model")
        run([a.gpt, "prepare", "--input", os.path.join(ROOT, "data", "tinyshakespeare.txt"), "--out", data])
        run([a.gpt, "train", "--data", data, "--out", model, "--n-layer", "2", "--n-head", "2", "--n-embd", "64",
             "--context", str(T), "-b", "8", "--steps", str(a.steps), "--lr", "3e-3", "--warmup", "10",
             "--seed", "1", "--quiet"])
        print(f"trained {model} ({a.steps} steps, {time.time() - t0:.1f} s)")

        # Held-out windows: the validation shard's tokens, each window's targets shifted by one.
        tokens = np.fromfile(os.path.join(data, "val_000000.bin"), dtype=np.uint16, offset=256 * 4).astype(np.int64)
        rng = np.random.default_rng(0)
        starts = rng.integers(0, len(tokens) - T - 1, B)
        ids = np.stack([tokens[s:s + T] for s in starts])
        targets = np.stack([tokens[s + 1:s + T + 1] for s in starts])
        targets[1, :5] = -1  # some unscored positions too
        ids_file, targets_file = os.path.join(work, "ids.txt"), os.path.join(work, "targets.txt")
        torch_gpt.write_id_matrix(ids_file, ids)
        torch_gpt.write_id_matrix(targets_file, targets)
        scored = targets != -1

        # 1. the cross-entropy of gpt.cpp's own logits, at every dispatch level
        got = None
        for level in ("", "avx2", "scalar"):
            out = os.path.join(work, f"out{level}.safetensors")
            run([a.gpt, "logits", "--model", model, "--ids", ids_file, "--targets", targets_file, "--grads",
                 "--out", out], env={"GPT_CPU": level} if level else None)
            g = torch_gpt.read_safetensors(out)
            want = float64_ce(g["logits"], np.where(scored, targets, 0))
            err = np.abs(g["position_losses"].astype(np.float64) - want)[scored]
            mean_err = abs(float(g["loss"][0]) - want[scored].mean())
            name = level or "native"
            print(f"{'ok  ' if err.max() <= TOL_CE and mean_err <= TOL_CE else 'FAIL'} cross-entropy of its own "
                  f"logits ({name}): max |diff| {err.max():.2e}, mean {err.mean():.2e} nats/token; "
                  f"mean loss |diff| {mean_err:.2e}")
            if err.max() > TOL_CE:
                failures.append(f"per-token cross-entropy ({name}) off by up to {err.max():.3e} > {TOL_CE:g}")
            if mean_err > TOL_CE:
                failures.append(f"mean loss ({name}) off by {mean_err:.3e} > {TOL_CE:g}")
            if got is None:
                got = g

        # 3. the check can fail: the old arithmetic on the same logits misses
        old = float32_sequential_ce(got["logits"], np.where(scored, targets, 0))
        old_err = np.abs(old - float64_ce(got["logits"], np.where(scored, targets, 0)))[scored].max()
        print(f"{'ok  ' if old_err > TOL_CE else 'FAIL'} the old in-order float32 sum misses by up to "
              f"{old_err:.2e} nats/token on this model (must exceed {TOL_CE:g})")
        if old_err <= TOL_CE:
            failures.append(f"the trained model is too flat to catch an in-order float32 sum ({old_err:.2e}); "
                            "train it longer")

        # 2. the whole model against the float64 reference
        cfg, params = torch_gpt.load_model_dir(model)
        ref = torch_gpt.Reference(cfg, params).run(ids, targets, grads=True)
        metrics, fails = compare(cfg, ref, got, targets)
        e2e = np.abs(got["position_losses"].astype(np.float64) - ref["position_losses"].numpy())[scored].max()
        if e2e > TOL_E2E_TOKEN:
            fails.append(f"per-token losses off the float64 model by up to {e2e:.3e} > {TOL_E2E_TOKEN:g}")
        print(f"{'ok  ' if not fails else 'FAIL'} whole model vs float64 reference: {summary(metrics)}; "
              f"per-token |diff| max {e2e:.2e}")
        failures += fails
    except RuntimeError as e:
        failures.append(str(e))
    finally:
        if ctx:
            ctx.cleanup()
    for f in failures:
        print("FAIL", f)
    print(f"trained_conformance: {'FAILED' if failures else 'ok'} ({time.time() - t0:.1f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

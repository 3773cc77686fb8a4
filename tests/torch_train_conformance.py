"""`gpt train` against the PyTorch training reference (tools/torch_train.py, float64).

It writes a tiny dataset (two train shards of random tokens, so the sequential loader changes shard
and wraps around within the run, and one val shard, all in llm.c's format, written with numpy) and
a tiny model with `gpt init`, then runs for each case

    gpt train --data DATA --init MODEL --out OUT --steps 10 --warmup 3 --schedule cosine ... -q

and the reference on the same inputs, and compares OUT/metrics.jsonl with the reference's records:
    every step present once, in order, and every evaluation at the same steps
    loss        |diff| / |ref|  <= 1e-4   (each step: the training loss before the update)
    lr          equal to float32 rounding (|diff| <= 2 float32 ulps of ref)
    grad_norm   |diff| / |ref|  <= 1e-3   (before clipping)
    val_loss    |diff| / |ref|  <= 1e-4
Cases: "b4" (batch 4, no accumulation) and "b2_accum2" (batch 2, --grad-accum 2: the same tokens per
step), and b4 again with the kernel dispatch capped at AVX2 and at scalar (GPT_CPU). The clip is
set so that the gradient norm exceeds it on some steps and not on others; the test fails if the
reference's norms do not exceed it at least once (then clipping went untested).

Before that it checks the reference itself (independently of gpt.cpp): the loader's batches
against windows cut by hand, the schedule at hand-computed points, gradient accumulation (K=2 at
half the batch gives the same losses and norms as K=1 where the windows coincide) and clipping
(the update with a clip equals the update without one from gradients scaled by hand).
After the cases it runs negative tests: the reference with another learning rate, without
clipping, with weight decay on every tensor, and reading the data one token late must NOT match
gpt.cpp's metrics (weight decay is 0.5 in these runs so that its rule shows within 10 steps). A comparison that
cannot fail proves nothing.

Usage: /usr/bin/python3 tests/torch_train_conformance.py [--gpt build/gpt] [--keep DIR] [--no-dispatch]
       /usr/bin/python3 tests/torch_train_conformance.py --engine-reference   # the harness alone:
           tools/torch_train.py in float32 stands in for gpt train (no C++ needed)
       /usr/bin/python3 tests/torch_train_conformance.py --self-check         # the reference's checks only
Exit status 0 when every comparison holds, 1 otherwise.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import torch_gpt  # noqa: E402
import torch_train  # noqa: E402

TOL_LOSS = 1e-4
TOL_GRAD_NORM = 1e-3
TOL_VAL = 1e-4
LR_ULPS = 2  # float32 units in the last place

VOCAB = 256
SEQ = 16
TRAIN_SHARDS = (300, 200)  # tokens: batch 4 x 16 reads 4 windows, then 3, then wraps
VAL_TOKENS = 500
MODEL_FLAGS = ["--n-layer", "2", "--n-head", "2", "--n-embd", "64", "--context", "64", "--vocab-size", str(VOCAB),
               "--dropout", "0", "--seed", "1"]
# Shared by every case; lr 1e-2 moves the tiny model enough in 10 steps that the steps differ.
COMMON = {"steps": 10, "seq_len": SEQ, "lr": 1e-2, "min_lr": 1e-3, "warmup": 3, "schedule": "cosine",
          "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.5, "grad_clip": 1.5, "seed": 5,
          "eval_every": 5, "eval_batches": 2}
CASES = [("b4", {"batch_size": 4, "grad_accum": 1}), ("b2_accum2", {"batch_size": 2, "grad_accum": 2})]
# The first case runs again with the CPU dispatch capped, so the AVX2 and scalar kernels (AdamW
# among them) are checked on a machine that would pick AVX-512.
DISPATCH_LEVELS = ("avx2", "scalar")


def flags(settings):
    """gpt train / torch_train.py command-line flags for a settings dict."""
    out = []
    for k, v in settings.items():
        out += ["--" + k.replace("_", "-"), str(v)]
    return out


def reference(data, model, settings, dtype="float64", trainer_class=None):
    """Run the reference in this process; returns its metrics records."""
    records = []
    a = torch_train.parse_args(["--data", data, "--init", model, "--dtype", dtype, "-q"] + flags(settings))
    torch_train.train(a, records.append, trainer_class)
    return records


class DecayEverything(torch_train.Trainer):
    """A plausible bug: weight decay on biases and LayerNorm gains too."""

    @staticmethod
    def decayed(name, p):
        return True


def make_dataset(d, rng):
    """Two train shards and one val shard of random tokens. The tokens follow a random bigram table
    (each token picks its successor from 4 candidates) so there is something to learn."""
    os.makedirs(d, exist_ok=True)
    succ = rng.integers(0, VOCAB, (VOCAB, 4))

    def stream(n):
        t = np.empty(n, dtype=np.int64)
        t[0] = rng.integers(0, VOCAB)
        for i in range(1, n):
            t[i] = succ[t[i - 1], rng.integers(0, 4)]
        return t

    for i, n in enumerate(TRAIN_SHARDS):
        torch_train.write_shard(os.path.join(d, f"train_{i:06d}.bin"), stream(n))
    torch_train.write_shard(os.path.join(d, "val_000000.bin"), stream(VAL_TOKENS))
    # Without dataset.json the tokens would be GPT-2 ids (a 50257 vocabulary the tiny model cannot
    # hold): describe them as a character vocabulary of VOCAB characters, as `gpt prepare` would.
    chars = [chr(0x21 + i) for i in range(VOCAB)]  # printable, sorted by code point
    with open(os.path.join(d, "chars.json"), "w", encoding="utf-8") as f:
        json.dump({"type": "char", "chars": chars}, f, ensure_ascii=False)
    info = {"format": "llmc-shards", "tokenizer": "char", "vocab_size": VOCAB, "eot_id": None, "documents": 1,
            "train_tokens": sum(TRAIN_SHARDS), "val_tokens": VAL_TOKENS, "train_shards": len(TRAIN_SHARDS),
            "val_shards": 1, "val_fraction": VAL_TOKENS / (VAL_TOKENS + sum(TRAIN_SHARDS)), "inputs": []}
    with open(os.path.join(d, "dataset.json"), "w") as f:
        json.dump(info, f, indent=1)


def split(records):
    steps = [r for r in records if "loss" in r]
    evals = [r for r in records if "val_loss" in r]
    return steps, evals


def compare(got, ref, check_lr=True):
    """gpt.cpp's records against the reference's. Returns (summary metrics, failure messages)."""
    fails = []
    gs, ge = split(got)
    rs, re_ = split(ref)
    if [r["step"] for r in gs] != [r["step"] for r in rs]:
        fails.append(f"steps {[r['step'] for r in gs]}, the reference has {[r['step'] for r in rs]}")
    if [r["step"] for r in ge] != [r["step"] for r in re_]:
        fails.append(f"evaluations at steps {[r['step'] for r in ge]}, the reference at {[r['step'] for r in re_]}")
    worst = {"loss": 0.0, "grad_norm": 0.0, "val_loss": 0.0, "lr_ulps": 0.0}
    for g, r in zip(gs, rs):
        missing = [k for k in ("loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s") if k not in g]
        if missing:
            fails.append(f"step {g['step']}: no {', '.join(missing)}")
            continue
        for key, tol in (("loss", TOL_LOSS), ("grad_norm", TOL_GRAD_NORM)):
            err = abs(g[key] - r[key]) / abs(r[key])
            worst[key] = max(worst[key], err)
            if not err <= tol:  # NaN fails too
                fails.append(f"step {g['step']}: {key} {g[key]:.9g}, reference {r[key]:.9g} "
                             f"(relative error {err:.2e} > {tol:g})")
        ulp = float(np.spacing(np.float32(r["lr"])))
        ulps = abs(g["lr"] - r["lr"]) / ulp
        worst["lr_ulps"] = max(worst["lr_ulps"], ulps)
        if check_lr and not ulps <= LR_ULPS:
            fails.append(f"step {g['step']}: lr {g['lr']!r}, reference {r['lr']!r} ({ulps:.1f} float32 ulps)")
    for g, r in zip(ge, re_):
        err = abs(g["val_loss"] - r["val_loss"]) / abs(r["val_loss"])
        worst["val_loss"] = max(worst["val_loss"], err)
        if not err <= TOL_VAL:
            fails.append(f"step {g['step']}: val_loss {g['val_loss']:.9g}, reference {r['val_loss']:.9g} "
                         f"(relative error {err:.2e} > {TOL_VAL:g})")
    return worst, fails


def summary(w):
    return (f"loss {w['loss']:.1e}  grad_norm {w['grad_norm']:.1e}  val_loss {w['val_loss']:.1e}  "
            f"lr {w['lr_ulps']:.0f} ulp")


class Engine:
    """Runs `train` (and `init`): gpt.cpp, or the reference's CLI in float32 standing in for it."""

    def __init__(self, gpt, use_reference):
        self.use_reference = use_reference
        if use_reference:
            self.cmd = [sys.executable, os.path.join(ROOT, "tools", "torch_train.py"), "--dtype", "float32"]
            self.label = "reference CLI in float32 (tools/torch_train.py --dtype float32)"
        else:
            self.cmd = [gpt, "train"]
            self.label = gpt
        self.gpt = gpt

    def check_available(self):
        if not os.path.isfile(self.gpt) or not os.access(self.gpt, os.X_OK):
            return f"{self.gpt}: no such executable (build gpt.cpp first: cmake --build build)"
        if self.use_reference:
            return None
        p = subprocess.run([self.gpt, "train", "--help"], capture_output=True, text=True)
        if p.returncode != 0 or "--grad-accum" not in p.stdout + p.stderr:
            return f"{self.gpt} has no `train` command with --grad-accum yet (`gpt train --help` exited {p.returncode})"
        return None

    def train(self, data, model, out, settings, cpu=None):
        """One run; `cpu` caps gpt.cpp's kernel dispatch (GPT_CPU=avx2|scalar, docs/cpu-dispatch.md)."""
        cmd = self.cmd + ["--data", data, "--init", model, "--out", out, "--dropout", "0", "--threads", "1",
                          "-q"] + flags(settings)
        env = dict(os.environ, **({"GPT_CPU": cpu} if cpu else {}))
        t0 = time.time()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` exited {p.returncode}: {(p.stderr or p.stdout).strip()}")
        with open(os.path.join(out, "metrics.jsonl")) as f:
            return [json.loads(line) for line in f if line.strip()], time.time() - t0


# ----------------------------------------------------------------------------------------------
# checks of the reference itself


def self_check(work, model):
    """The reference against hand computations. Returns failure messages."""
    fails = []
    rng = np.random.default_rng(7)

    # the loader: batches of B*T+1 windows, advancing by B*T, shard change, wrap-around
    shards = [np.arange(100, 100 + 300), np.arange(1000, 1000 + 200)]
    loader = torch_train.SequentialLoader(shards, 4, SEQ)
    want = [(0, p) for p in (0, 64, 128, 192)] + [(1, p) for p in (0, 64, 128)] + [(0, 0)]
    for i, (s, p) in enumerate(want):
        x, y = loader.next()
        w = shards[s][p:p + 65]
        if not (np.array_equal(x.reshape(-1), w[:-1]) and np.array_equal(y.reshape(-1), w[1:])):
            fails.append(f"loader batch {i}: expected shard {s} at token {p}")
            break

    # the schedule at points computed by hand (N 10, W 3, lr 1e-2, min 1e-3)
    a = torch_train.parse_args(["--data", ".", "--steps", "10", "--warmup", "3", "--lr", "1e-2", "--min-lr", "1e-3"])
    cos_s6 = 1e-3 + 0.5 * (1 + math.cos(math.pi * 2 / 7)) * 9e-3  # it 5: ratio (5-3)/7
    for step, want_lr in ((1, 1e-2 / 3), (3, 1e-2), (4, 1e-2), (6, cos_s6)):
        if abs(torch_train.lr_at(step, a) - want_lr) > 1e-15:
            fails.append(f"schedule: step {step} gives {torch_train.lr_at(step, a)}, expected {want_lr}")
    a.schedule = "linear"
    if abs(torch_train.lr_at(10, a) - (1e-2 - 6 / 7 * 9e-3)) > 1e-15:
        fails.append("schedule: linear at step 10 is wrong")
    if abs(torch_train.parse_args(["--data", ".", "--steps", "1", "--lr", "3e-4"]).min_lr - 3e-5) > 1e-18:
        fails.append("schedule: --min-lr default is not lr / 10")

    # accumulation: batch 4 and batch 2 x 2 read the same tokens when one shard holds every window
    d = os.path.join(work, "selfcheck_data")
    os.makedirs(d, exist_ok=True)
    torch_train.write_shard(os.path.join(d, "train_000000.bin"), rng.integers(0, VOCAB, 4 * SEQ * 6 + 1))
    base = dict(COMMON, steps=6, eval_every=0)
    one = reference(d, model, dict(base, batch_size=4, grad_accum=1))
    two = reference(d, model, dict(base, batch_size=2, grad_accum=2))
    for r1, r2 in zip(one, two):
        if abs(r1["loss"] - r2["loss"]) > 1e-12 * abs(r1["loss"]) or \
                abs(r1["grad_norm"] - r2["grad_norm"]) > 1e-10 * r1["grad_norm"]:
            fails.append(f"accumulation: step {r1['step']}: batch 4 gives loss {r1['loss']!r} norm "
                         f"{r1['grad_norm']!r}, batch 2 x 2 gives {r2['loss']!r} {r2['grad_norm']!r}")
            break

    # clipping: the clipped update equals an unclipped update from gradients scaled by hand
    cfg, params = torch_gpt.load_model_dir(model)
    x = rng.integers(0, VOCAB, (2, SEQ))
    y = rng.integers(0, VOCAB, (2, SEQ))
    updated = []
    for clip in (0.05, 0.0):
        t = torch_train.Trainer(cfg, params, torch_train.parse_args(
            ["--data", ".", "--steps", "1", "--grad-clip", str(clip), "--batch-size", "2", "--seq-len", str(SEQ)]))
        t.opt.zero_grad(set_to_none=True)
        t.mean_loss(x, y).backward()
        ps = list(t.model.params.values())
        norm = math.sqrt(sum(float((p.grad ** 2).sum()) for p in ps))
        if clip:
            torch.nn.utils.clip_grad_norm_(ps, clip)
        else:
            for p in ps:
                p.grad *= 0.05 / (norm + 1e-6)
        t.opt.step()
        updated.append([p.detach().clone() for p in ps])
    if norm <= 0.05 or max(float((a_ - b_).abs().max()) for a_, b_ in zip(*updated)) > 1e-15:
        fails.append(f"clipping: clip_grad_norm_ to 0.05 (norm {norm:.3g}) differs from scaling by hand")
    return fails


def negative_tests(got, data, model, settings):
    """Reference runs that differ from `settings` in one way must not match gpt.cpp's `got`."""
    fails = []
    variants = [
        ("lr x 1.05", dict(settings, lr=settings["lr"] * 1.05, min_lr=settings["min_lr"] * 1.05), False, None),
        ("no clipping", dict(settings, grad_clip=0), True, None),
        ("decay on all", settings, True, DecayEverything),
    ]
    for name, s, check_lr, cls in variants:
        _, f = compare(got, reference(data, model, s, trainer_class=cls), check_lr=check_lr)
        if not f:
            fails.append(f"negative test: the reference with {name} still matches gpt.cpp: the comparison cannot fail")
        else:
            print(f"negative test: reference with {name:12s} is caught: {len(f)} mismatches ({f[0]})")
    # the data one token late: every shard loses its first token
    late = data + "_late"
    os.makedirs(late, exist_ok=True)
    for n in os.listdir(data):
        if n.endswith(".bin"):
            torch_train.write_shard(os.path.join(late, n), torch_train.read_shard(os.path.join(data, n))[1:])
        else:
            shutil.copy(os.path.join(data, n), late)
    _, f = compare(got, reference(late, model, settings))
    if not f:
        fails.append("negative test: the reference on data shifted by one token still matches gpt.cpp")
    else:
        print(f"negative test: reference on data one token late is caught: {len(f)} mismatches ({f[0]})")
    return fails


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpt", default=os.path.join(ROOT, "build", "gpt"))
    ap.add_argument("--engine-reference", action="store_true",
                    help="tools/torch_train.py in float32 stands in for gpt train (tests the harness)")
    ap.add_argument("--self-check", action="store_true", help="only the reference's own checks")
    ap.add_argument("--keep", help="write the data, model and runs here and keep them")
    ap.add_argument("--no-dispatch", action="store_true",
                    help=f"skip the reruns with GPT_CPU={' and '.join(DISPATCH_LEVELS)}")
    a = ap.parse_args()
    torch.set_num_threads(1)
    t_start = time.time()

    engine = Engine(a.gpt, a.engine_reference)
    problem = engine.check_available()
    if problem:
        print(f"FAIL: {problem}")
        print("0 passed, 1 failed")
        return 1

    work_ctx = tempfile.TemporaryDirectory(prefix="torch_train_conformance_") if not a.keep else None
    work = a.keep or work_ctx.name
    os.makedirs(work, exist_ok=True)
    passed, failed = 0, []
    try:
        model = os.path.join(work, "model")
        p = subprocess.run([a.gpt, "init"] + MODEL_FLAGS + ["--out", model], capture_output=True, text=True)
        if p.returncode != 0:
            print(f"FAIL: gpt init exited {p.returncode}: {(p.stderr or p.stdout).strip()}")
            return 1
        fails = self_check(work, model)
        for f in fails:
            print("FAIL reference:", f)
        if fails:
            print("the reference itself is wrong; nothing else was compared")
            return 1
        print("reference self-check: ok (loader, schedule, accumulation, clipping)")
        if a.self_check:
            return 0
        print(f"engine: {engine.label}")

        data = os.path.join(work, "data")
        make_dataset(data, np.random.default_rng(2024))
        first = None
        runs = [(name, extra, None) for name, extra in CASES]
        if not a.no_dispatch:
            runs += [(CASES[0][0] + "@" + level, CASES[0][1], level) for level in DISPATCH_LEVELS]
        refs = {}
        for name, extra, cpu in runs:
            settings = dict(COMMON, **extra)
            key = json.dumps(settings, sort_keys=True)
            ref = refs[key] = refs.get(key) or reference(data, model, settings)
            norms = [r["grad_norm"] for r in ref if "grad_norm" in r]
            fails = []
            if not any(n > settings["grad_clip"] for n in norms):
                fails.append(f"no step's gradient norm exceeds the clip {settings['grad_clip']} "
                             f"(norms {', '.join(f'{n:.3g}' for n in norms)}): clipping is untested")
            try:
                got, secs = engine.train(data, model, os.path.join(work, "out_" + name), settings, cpu)
                worst, f = compare(got, ref)
                fails += f
            except (RuntimeError, OSError, ValueError) as e:
                worst, secs = None, 0.0
                got = None
                fails.append(str(e))
            clipped = sum(n > settings["grad_clip"] for n in norms)
            print(f"{'ok  ' if not fails else 'FAIL'} {name:11s} B{settings['batch_size']} K{settings['grad_accum']} "
                  f"T{SEQ}, clipped {clipped}/{len(norms)} steps: "
                  f"{summary(worst) if worst else ''}  ({secs:.2f} s)", flush=True)
            for f in fails:
                print(f"       {name}: {f}")
            if fails:
                failed.append(name)
            else:
                passed += 1
                first = first or (got, settings)
        if first:
            neg = negative_tests(first[0], data, model, first[1])
            for f in neg:
                print("FAIL", f)
            if neg:
                failed.append("negative_tests")
            else:
                passed += 1
    finally:
        if work_ctx:
            work_ctx.cleanup()
    print(f"{passed} passed, {len(failed)} failed ({time.time() - t_start:.1f} s)")
    if failed:
        print(f"torch_train_conformance: FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""gpt.cpp's model against the float64 PyTorch reference (tools/torch_gpt.py).

For each case below it writes a random-weight model directory (random normal matrices,
LayerNorm gains away from 1, non-zero biases: every path contributes), random ids and targets
(some -1), runs

    gpt logits --model DIR --ids IDS --targets TARGETS --grads --out OUT.safetensors

and compares with the reference:
    logits            max|diff| / max|ref|  <= 1e-4
    loss              |diff| / |ref|        <= 1e-5   (relative)
    position_losses   max|diff| / max|ref|  <= 1e-4   (scored positions)
    grad.<param>      max|diff| / max|ref|  <= 1e-3   (each tensor on its own)
and that the output holds exactly the expected tensors (F32, the right shapes; no
grad.lm_head.weight with a tied head).

Before any of that it validates the reference on its own (gradients against float64 finite
differences, causality, the band), and after the cases it runs a negative test: one weight of
the first case's directory is nudged, gpt.cpp is run on that directory, and the comparison
against the unnudged reference must fail. It also runs `gpt init` for two variants and checks
that the reference reads back the configuration the flags asked for, GPT-2's initialisation,
and the same outputs. If it does not, the test fails: a comparison that
cannot fail proves nothing.

Usage: /usr/bin/python3 tests/torch_conformance.py [--gpt build/gpt] [--case NAME ...] [--keep DIR]
       /usr/bin/python3 tests/torch_conformance.py --engine-reference   # the harness alone: the
           reference's own `logits` command stands in for gpt.cpp (no C++ needed)
       /usr/bin/python3 tests/torch_conformance.py --self-check         # reference validation and
           the negative test only
Exit status 0 when every comparison holds, 1 otherwise.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import torch_gpt  # noqa: E402
from torch_gpt import Config, Reference  # noqa: E402

TOL_LOGITS = 1e-4
TOL_LOSS = 1e-5
TOL_POSITION = 1e-4
TOL_GRAD = 1e-3


@dataclass
class Case:
    name: str
    cfg: Config
    B: int
    T: int
    std: float = 0.2
    emb_std: float = 0.5
    seed: int = 0


CASES = [
    Case("pre_dense", Config(n_layer=2, n_head=4, n_embd=32, n_ctx=64, vocab_size=101), B=2, T=16),
    Case("post_ln", Config(n_layer=2, n_head=4, n_embd=32, n_ctx=64, vocab_size=101, ln="post"), B=2, T=16),
    Case("banded", Config(n_layer=4, n_head=4, n_embd=32, n_ctx=64, vocab_size=101,
                          attention="alternating_banded", band=5), B=2, T=20),
    Case("banded_w1", Config(n_layer=2, n_head=2, n_embd=16, n_ctx=32, vocab_size=53,
                             attention="alternating_banded", band=1), B=2, T=9),
    Case("no_bias", Config(n_layer=2, n_head=4, n_embd=32, n_ctx=64, vocab_size=101, bias=False), B=2, T=16),
    Case("untied_head", Config(n_layer=2, n_head=4, n_embd=32, n_ctx=64, vocab_size=101, tied_head=False), B=2, T=16),
    Case("heads3_hd10", Config(n_layer=2, n_head=3, n_embd=30, n_ctx=48, vocab_size=97), B=2, T=13),
    Case("batch5", Config(n_layer=3, n_head=4, n_embd=32, n_ctx=64, vocab_size=101), B=5, T=9),
    Case("gpt1_mix", Config(n_layer=3, n_head=2, n_embd=24, n_ctx=40, vocab_size=67, ln="post",
                            attention="alternating_banded", band=3, bias=False, tied_head=False), B=3, T=11),
    Case("full_context", Config(n_layer=2, n_head=2, n_embd=16, n_ctx=24, vocab_size=50), B=2, T=24),
    # GPT-2-sized embeddings (std 0.02): the first LayerNorm's input variance is near 1e-3, so
    # its epsilon shows; with large activations an epsilon of 1e-6 instead of 1e-5 would pass
    Case("small_embed", Config(n_layer=2, n_head=4, n_embd=32, n_ctx=64, vocab_size=101), B=2, T=10, emb_std=0.02),
    Case("eps_1e-3", Config(n_layer=2, n_head=4, n_embd=32, n_ctx=64, vocab_size=101, ln="post", ln_eps=1e-3),
         B=2, T=10, emb_std=0.05),
    # larger and ragged: GEMM and SIMD remainders (C = 72, V = 1003, T = 150), 6 heads of 12
    Case("wide", Config(n_layer=2, n_head=6, n_embd=72, n_ctx=160, vocab_size=1003,
                        attention="alternating_banded", band=37), B=2, T=150, std=0.12),
    Case("single_token", Config(n_layer=2, n_head=4, n_embd=32, n_ctx=64, vocab_size=101), B=3, T=1),
]


def rel(diff, ref):
    """max|diff| / max|ref| (plain max|diff| when the reference is all zeros)."""
    d = float(np.max(np.abs(diff))) if diff.size else 0.0
    r = float(np.max(np.abs(ref))) if ref.size else 0.0
    return d / r if r > 0 else d


def make_inputs(case, rng):
    ids = rng.integers(0, case.cfg.vocab_size, (case.B, case.T))
    targets = rng.integers(0, case.cfg.vocab_size, (case.B, case.T))
    targets[rng.random((case.B, case.T)) < 0.2] = -1
    targets[0, -1] = rng.integers(0, case.cfg.vocab_size)  # at least one scored target
    if case.B * case.T > 1:
        targets[-1, 0] = -1  # and at least one unscored one
    return ids, targets


def compare(cfg, ref, got, targets):
    """Compare gpt.cpp's output `got` (numpy arrays) with the reference `ref` (float64 tensors).
    Returns (metrics dict, failure messages)."""
    failures = []
    metrics = {}
    expected = {"logits", "loss", "position_losses"} | {"grad." + n for n, _ in torch_gpt.parameter_shapes(cfg)}
    missing = sorted(expected - set(got))
    extra = sorted(set(got) - expected)
    if missing:
        failures.append(f"output lacks {', '.join(missing)}")
    if extra:
        failures.append(f"output has unexpected tensors {', '.join(extra)}")
    for name in sorted(expected & set(got)):
        r = ref[name].numpy()
        g = got[name]
        if g.dtype != np.float32:
            failures.append(f"{name}: dtype {g.dtype}, expected float32")
        if tuple(g.shape) != tuple(r.shape):
            failures.append(f"{name}: shape {list(g.shape)}, expected {list(r.shape)}")
            continue
        g = g.astype(np.float64)
        if not np.all(np.isfinite(g)):
            failures.append(f"{name}: non-finite values")
            metrics[name] = float("inf")
            continue
        if name == "loss":
            err = abs(float(g[0]) - float(r[0])) / abs(float(r[0]))
            tol = TOL_LOSS
        elif name == "position_losses":
            scored = targets != -1
            err = rel(g[scored] - r[scored], r[scored])
            tol = TOL_POSITION
        elif name == "logits":
            err = rel(g - r, r)
            tol = TOL_LOGITS
        else:
            err = rel(g - r, r)
            tol = TOL_GRAD
        metrics[name] = err
        if err > tol:
            where = ""
            if g.ndim:
                flat = int(np.argmax(np.abs(g - r)))
                idx = np.unravel_index(flat, g.shape)
                where = f" (worst at {list(map(int, idx))}: gpt.cpp {g[idx]:.8g}, reference {r[idx]:.8g})"
            failures.append(f"{name}: relative error {err:.3e} > {tol:g}{where}")
    return metrics, failures


def summary(metrics):
    grads = {k: v for k, v in metrics.items() if k.startswith("grad.")}
    worst_grad = max(grads.items(), key=lambda kv: kv[1]) if grads else ("-", float("nan"))
    return (f"logits {metrics.get('logits', float('nan')):.2e}  loss {metrics.get('loss', float('nan')):.2e}  "
            f"positions {metrics.get('position_losses', float('nan')):.2e}  "
            f"worst grad {worst_grad[1]:.2e} ({worst_grad[0][5:]})")


class Engine:
    """Runs `logits` on a model directory: gpt.cpp, or the reference's own CLI standing in for it."""

    def __init__(self, gpt, use_reference, env=None):
        self.gpt = gpt
        self.env = dict(os.environ, **(env or {}))
        self.use_reference = use_reference
        if use_reference:
            self.cmd = [sys.executable, os.path.join(ROOT, "tools", "torch_gpt.py")]
            self.label = "reference CLI (tools/torch_gpt.py logits)"
        else:
            self.cmd = [gpt]
            self.label = gpt

    def capped(self, level):
        """The same engine with its CPU dispatch capped (GPT_CPU=scalar|avx2, docs/cpu-dispatch.md)."""
        return Engine(self.gpt, self.use_reference, {"GPT_CPU": level})

    def check_available(self):
        if self.use_reference:
            return None
        if not os.path.isfile(self.cmd[0]) or not os.access(self.cmd[0], os.X_OK):
            return f"{self.cmd[0]}: no such executable (build gpt.cpp first: cmake --build build)"
        p = subprocess.run(self.cmd + ["logits", "--help"], capture_output=True, text=True)
        text = p.stdout + p.stderr
        # an unknown subcommand with --help prints the top-level help, so look for logits' own flags
        if p.returncode != 0 or "--grads" not in text or "--targets" not in text:
            return (f"{self.cmd[0]} has no `logits` command yet (`gpt logits --help` exited {p.returncode} "
                    f"without describing --targets/--grads); the model CLI has not landed")
        p = subprocess.run(self.cmd + ["init", "--help"], capture_output=True, text=True)
        if p.returncode != 0 or "--untied-head" not in p.stdout + p.stderr:
            return f"{self.cmd[0]} has no `init` command with the model flags yet (`gpt init --help`)"
        return None

    def init(self, args):
        cmd = self.cmd + ["init"] + args
        p = subprocess.run(cmd, capture_output=True, text=True, env=self.env)
        if p.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` exited {p.returncode}: {(p.stderr or p.stdout).strip()}")

    def logits(self, model, ids_file, targets_file, out):
        cmd = self.cmd + ["logits", "--model", model, "--ids", ids_file, "--targets", targets_file,
                          "--grads", "--out", out]
        t0 = time.time()
        p = subprocess.run(cmd, capture_output=True, text=True, env=self.env)
        if p.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` exited {p.returncode}: {(p.stderr or p.stdout).strip()}")
        return time.time() - t0


def run_case(case, engine, work, rng, nudge=None, tag=""):
    """Write the case's directory (optionally with one weight nudged), run the engine, compare with
    the reference of the un-nudged weights. Returns (metrics, failures, seconds)."""
    cfg = case.cfg
    params = torch_gpt.random_parameters(cfg, seed=case.seed, std=case.std, emb_std=case.emb_std)
    ids, targets = make_inputs(case, rng)
    d = os.path.join(work, case.name + tag + ("_nudged" if nudge else ""))
    engine_params = dict(params)
    if nudge:
        name, idx, delta = nudge
        engine_params[name] = params[name].copy()
        engine_params[name][idx] += delta
    torch_gpt.save_model_dir(d, cfg, engine_params)
    ids_file, targets_file = os.path.join(d, "ids.txt"), os.path.join(d, "targets.txt")
    torch_gpt.write_id_matrix(ids_file, ids)
    torch_gpt.write_id_matrix(targets_file, targets)
    out_file = os.path.join(d, "out.safetensors")
    seconds = engine.logits(d, ids_file, targets_file, out_file)
    got = torch_gpt.read_safetensors(out_file)
    ref = Reference(cfg, params).run(ids, targets, grads=True)
    metrics, failures = compare(cfg, ref, got, targets)  # the weights are float32 values on both sides
    return metrics, failures, seconds


# `gpt init` directories of every variant, read back by the reference: the writer's config keys
# and tensor names must describe the model gpt.cpp computes with.
# The cases run again with the CPU dispatch capped, so the AVX2 and scalar kernels are checked
# on a machine that would pick AVX-512.
DISPATCH_LEVELS = ("avx2", "scalar")
DISPATCH_CASES = ("pre_dense", "gpt1_mix", "heads3_hd10", "wide")

INIT_CASES = [
    ("init_gpt2", ["--n-layer", "2", "--n-head", "4", "--n-embd", "32", "--context", "64", "--vocab-size", "101"],
     Config(n_layer=2, n_head=4, n_embd=32, n_ctx=64, vocab_size=101, dropout=0.1)),  # the gpt2 preset's dropout
    ("init_gpt1_mix", ["--n-layer", "3", "--n-head", "2", "--n-embd", "24", "--context", "40", "--vocab-size", "67",
                       "--ln", "post", "--attention", "banded", "--band", "3", "--no-bias", "--untied-head",
                       "--dropout", "0.1"],
     Config(n_layer=3, n_head=2, n_embd=24, n_ctx=40, vocab_size=67, ln="post", attention="alternating_banded",
            band=3, bias=False, tied_head=False, dropout=0.1)),
]


def run_init_case(name, flags, want, engine, work, rng):
    """`gpt init` -> the reference loads the directory -> same config -> `gpt logits` matches."""
    d = os.path.join(work, name)
    engine.init(flags + ["--seed", "3", "--out", d])
    cfg, params = torch_gpt.load_model_dir(d)
    failures = []
    fields = ("n_layer", "n_head", "n_embd", "n_ctx", "vocab_size", "ln", "attention", "bias", "tied_head", "ln_eps",
              "dropout")
    for f in fields + (("band",) if want.attention != "dense" else ()):
        have, asked = getattr(cfg, f), getattr(want, f)
        if (abs(have - asked) > 1e-6 * max(abs(asked), 1e-6)) if isinstance(asked, float) else have != asked:
            failures.append(f"config.json gives {f} = {getattr(cfg, f)!r}, the flags asked for {getattr(want, f)!r}")
    failures += ["initialisation: " + p for p in torch_gpt.gpt2_init_problems(params, cfg.n_layer)]
    case = Case(name, cfg, B=2, T=min(12, cfg.n_ctx))
    ids, targets = make_inputs(case, rng)
    ids_file, targets_file = os.path.join(d, "ids.txt"), os.path.join(d, "targets.txt")
    torch_gpt.write_id_matrix(ids_file, ids)
    torch_gpt.write_id_matrix(targets_file, targets)
    out_file = os.path.join(d, "out.safetensors")
    engine.logits(d, ids_file, targets_file, out_file)
    got = torch_gpt.read_safetensors(out_file)
    ref = Reference(cfg, params).run(ids, targets, grads=True)
    metrics, fails = compare(cfg, ref, got, targets)
    return case, metrics, failures + fails


def negative_test(engine, work):
    """Nudge one weight in the directory gpt.cpp reads; the comparison must notice."""
    case = CASES[0]
    nudge = ("h.1.mlp.c_fc.weight", (5, 17), 0.02)
    try:
        metrics, failures, _ = run_case(case, engine, work, np.random.default_rng(12345), nudge=nudge)
    except RuntimeError as e:
        return [f"negative test: {e}"]
    if failures:
        print(f"negative test: nudging {nudge[0]}{list(nudge[1])} by {nudge[2]} is caught: "
              f"{len(failures)} mismatches; {summary(metrics)}")
        return []
    return [f"negative test: gpt.cpp run on a directory with {nudge[0]}{list(nudge[1])} nudged by {nudge[2]} "
            f"still matched the reference ({summary(metrics)}); the comparison cannot fail"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpt", default=os.path.join(ROOT, "build", "gpt"))
    ap.add_argument("--engine-reference", action="store_true",
                    help="use the reference's own logits command instead of gpt.cpp (tests the harness)")
    ap.add_argument("--self-check", action="store_true", help="reference validation and the negative test only")
    ap.add_argument("--case", action="append", help="run only these cases (repeatable)")
    ap.add_argument("--keep", help="write the model directories here and keep them")
    ap.add_argument("--no-dispatch", action="store_true",
                    help=f"skip the reruns of {', '.join(DISPATCH_CASES)} with GPT_CPU={' and '.join(DISPATCH_LEVELS)}")
    a = ap.parse_args()
    torch.set_num_threads(1)
    t_start = time.time()

    failures = torch_gpt.self_validate(verbose=False)
    if failures:
        for f in failures:
            print("FAIL reference:", f)
        print("the reference itself is wrong; nothing else was compared")
        return 1
    print("reference self-validation: ok (gradients vs finite differences, causality, band, file round trips)")

    engine = Engine(a.gpt, a.engine_reference)
    problem = engine.check_available()
    if problem:
        print(f"FAIL: {problem}")
        print("0 passed, 1 failed")
        return 1
    print(f"engine: {engine.label}")

    cases = CASES
    if a.case:
        known = [c.name for c in CASES] + [n for n, _, _ in INIT_CASES]
        unknown = set(a.case) - set(known)
        if unknown:
            print(f"unknown case(s): {', '.join(sorted(unknown))}; known: {', '.join(known)}")
            return 2
        cases = [c for c in CASES if c.name in a.case]

    work_ctx = tempfile.TemporaryDirectory(prefix="torch_conformance_") if not a.keep else None
    work = a.keep or work_ctx.name
    os.makedirs(work, exist_ok=True)
    all_failures = []
    passed = 0

    def record(name, shape, metrics, fails, secs):
        # One line per case, the failures under it; tallies the result.
        nonlocal passed
        status = "ok  " if not fails else "FAIL"
        timing = f"  ({secs:.2f} s)" if metrics and secs is not None else ""
        print(f"{status} {name:18s} {shape:68s} {summary(metrics) if metrics else ''}{timing}", flush=True)
        for f in fails:
            print(f"       {name}: {f}")
        if fails:
            all_failures.append(name)
        else:
            passed += 1

    try:
        if not a.self_check:
            runs = [(case, "", engine, 1000 + i) for i, case in enumerate(cases)]
            if not a.no_dispatch:
                runs += [(case, "@" + level, engine.capped(level), 1000 + CASES.index(case))
                         for level in DISPATCH_LEVELS for case in cases if case.name in DISPATCH_CASES]
            for case, tag, eng, seed in runs:
                try:
                    metrics, fails, secs = run_case(case, eng, work, np.random.default_rng(seed), tag=tag)
                except RuntimeError as e:
                    metrics, fails, secs = {}, [str(e)], 0.0
                c = case.cfg
                shape = (f"L{c.n_layer} H{c.n_head} C{c.n_embd} V{c.vocab_size} ctx{c.n_ctx} B{case.B} T{case.T} "
                         f"{c.ln}-LN {c.attention}{'/' + str(c.band) if c.attention != 'dense' else ''}"
                         f"{' no-bias' if not c.bias else ''}{' untied' if not c.tied_head else ''}")
                record(case.name + tag, shape, metrics, fails, secs)
            for i, (name, flags, want) in enumerate(INIT_CASES):
                if a.case and name not in a.case:
                    continue
                try:
                    case, metrics, fails = run_init_case(name, flags, want, engine, work,
                                                         np.random.default_rng(2000 + i))
                    shape = "gpt init " + " ".join(flags)
                except (RuntimeError, ValueError, OSError) as e:
                    metrics, fails, shape = {}, [str(e)], "gpt init"
                record(name, shape[:68], metrics, fails, None)
        neg = negative_test(engine, work)
        for f in neg:
            print("FAIL", f)
        if neg:
            all_failures.append("negative_test")
        else:
            passed += 1
    finally:
        if work_ctx:
            work_ctx.cleanup()
    print(f"{passed} passed, {len(all_failures)} failed ({time.time() - t_start:.1f} s)")
    if all_failures:
        print(f"torch_conformance: FAILED: {', '.join(all_failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

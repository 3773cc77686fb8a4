"""gpt.cpp's LoRA adapters against the float64 PyTorch reference (tools/torch_lora.py).

For each case it writes a random base model directory and a random adapter directory in PEFT's
layout (both from Python, so gpt.cpp's reader is tested on files it did not write), random ids and
targets, then runs

    gpt logits --model BASE --adapter ADAPTER --ids IDS --targets TARGETS --grads --out OUT
    gpt lora merge --model BASE --adapter ADAPTER --out MERGED;  gpt logits --model MERGED ...

and compares with the reference:
    logits (adapted and merged)   max|diff| / max|ref|  <= 1e-4
    loss                          |diff| / |ref|        <= 1e-5
    grad.<adapter tensor>         max|diff| / max|ref|  <= 1e-3   (each on its own)
with exactly the expected tensors in the output. Before that the reference validates itself
(tools/torch_lora.py: adapters == merged weights, finite differences); after, a negative test
nudges one adapter value in the directory gpt.cpp reads and the comparison must fail.

Usage: /usr/bin/python3 tests/torch_lora_conformance.py [--gpt build/gpt]
Exit status 0 when every comparison holds, 1 otherwise.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import torch_gpt  # noqa: E402
import torch_lora  # noqa: E402
from torch_gpt import Config  # noqa: E402

TOL_LOGITS = 1e-4
TOL_LOSS = 1e-5
TOL_GRAD = 1e-3

# (name, config, r, alpha, targets, B, T)
CASES = [
    ("pre_all", Config(n_layer=2, n_head=4, n_embd=32, n_ctx=64, vocab_size=101), 4, 8.0,
     ["c_attn", "c_proj", "c_fc"], 2, 16),
    ("post_nobias_cproj", Config(n_layer=2, n_head=4, n_embd=32, n_ctx=64, vocab_size=101, ln="post", bias=False),
     8, 16.0, ["c_proj"], 2, 12),
    ("untied_banded_mixed", Config(n_layer=3, n_head=2, n_embd=24, n_ctx=40, vocab_size=67, tied_head=False,
                                   attention="alternating_banded", band=3), 2, 3.0, ["attn.c_proj", "c_fc"], 3, 11),
    ("r1_mlp_proj", Config(n_layer=2, n_head=3, n_embd=30, n_ctx=48, vocab_size=97), 1, 1.0, ["mlp.c_proj"], 2, 13),
]


def rel(diff, ref):
    d = float(np.max(np.abs(diff))) if diff.size else 0.0
    r = float(np.max(np.abs(ref))) if ref.size else 0.0
    return d / r if r > 0 else d


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {p.returncode}: {(p.stderr or p.stdout).strip()}")


def compare(ref, got, names, label):
    failures, metrics = [], {}
    missing, extra = sorted(set(names) - set(got)), sorted(set(got) - set(names))
    if missing:
        failures.append(f"{label}: output lacks {', '.join(missing)}")
    if extra:
        failures.append(f"{label}: output has unexpected tensors {', '.join(extra)}")
    for name in sorted(set(names) & set(got)):
        r, g = ref[name].numpy(), got[name]
        if tuple(g.shape) != tuple(r.shape):
            failures.append(f"{label}: {name} has shape {list(g.shape)}, expected {list(r.shape)}")
            continue
        g = g.astype(np.float64)
        if name == "loss":
            err, tol = abs(float(g[0]) - float(r[0])) / abs(float(r[0])), TOL_LOSS
        elif name in ("logits", "position_losses"):  # unscored positions are 0 on both sides
            err, tol = rel(g - r, r), TOL_LOGITS
        else:
            err, tol = rel(g - r, r), TOL_GRAD
        metrics[name] = err
        if not np.isfinite(err) or err > tol:
            failures.append(f"{label}: {name}: relative error {err:.3e} > {tol:g}")
    return metrics, failures


def run_case(gpt, work, case, nudge=None):
    name, cfg, r, alpha, targets, B, T = case
    rng = np.random.default_rng(7)
    params = torch_gpt.random_parameters(cfg, seed=1)
    adapters = torch_lora.random_adapters(cfg, r, targets, seed=2)
    ids = rng.integers(0, cfg.vocab_size, (B, T))
    tg = rng.integers(0, cfg.vocab_size, (B, T))
    tg[rng.random((B, T)) < 0.2] = -1
    tg[0, -1] = 1
    d = os.path.join(work, name + ("_nudged" if nudge else ""))
    base, adir, merged = (os.path.join(d, x) for x in ("base", "adapter", "merged"))
    torch_gpt.save_model_dir(base, cfg, params)
    engine_adapters = dict(adapters)
    if nudge:
        tname, idx, delta = nudge
        engine_adapters[tname] = adapters[tname].copy()
        engine_adapters[tname][idx] += delta
    torch_lora.save_adapter_dir(adir, cfg, r, alpha, targets, engine_adapters)
    ids_f, tg_f = os.path.join(d, "ids.txt"), os.path.join(d, "targets.txt")
    torch_gpt.write_id_matrix(ids_f, ids)
    torch_gpt.write_id_matrix(tg_f, tg)
    out = os.path.join(d, "adapted.safetensors")
    run([gpt, "logits", "--model", base, "--adapter", adir, "--ids", ids_f, "--targets", tg_f, "--grads", "--out", out])
    ref = torch_lora.LoraReference(cfg, params, r, alpha, targets, adapters).run(ids, tg, grads=True)
    names = ["logits", "loss", "position_losses"] + ["grad." + n for n, _ in torch_lora.adapter_shapes(cfg, r, targets)]
    metrics, failures = compare(ref, torch_gpt.read_safetensors(out), names, name)
    # the merged directory computes the same logits
    run([gpt, "lora", "merge", "--model", base, "--adapter", adir, "--out", merged])
    out2 = os.path.join(d, "merged.safetensors")
    run([gpt, "logits", "--model", merged, "--ids", ids_f, "--out", out2])
    m_metrics, m_fail = compare({"logits": ref["logits"]}, torch_gpt.read_safetensors(out2), ["logits"],
                                name + " (merged)")
    metrics["merged.logits"] = m_metrics.get("logits", float("inf"))
    # the adapters matter: without them the logits differ well beyond the tolerance
    base_logits = torch_gpt.Reference(cfg, params).logits(ids).detach()
    if rel((base_logits - ref["logits"]).numpy(), ref["logits"].numpy()) < 100 * TOL_LOGITS:
        failures.append(f"{name}: the adapters hardly change the logits; the case proves nothing")
    return metrics, failures + m_fail


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpt", default=os.path.join(ROOT, "build", "gpt"))
    ap.add_argument("--keep", help="write the directories here and keep them")
    a = ap.parse_args()
    torch.set_num_threads(1)
    fails = torch_lora.self_validate()
    if fails:
        for f in fails:
            print("FAIL reference:", f)
        return 1
    print("reference self-validation: ok (adapters == merged weights, B = 0 == base, finite differences)")
    if not os.access(a.gpt, os.X_OK):
        print(f"FAIL: {a.gpt}: no such executable")
        return 1
    work_ctx = tempfile.TemporaryDirectory(prefix="gpt_lora_conf_") if not a.keep else None
    work = a.keep or work_ctx.name
    passed, failed = 0, 0
    for case in CASES:
        try:
            metrics, failures = run_case(a.gpt, work, case)
        except RuntimeError as e:
            metrics, failures = {}, [str(e)]
        grads = {k: v for k, v in metrics.items() if k.startswith("grad.")}
        worst = max(grads.items(), key=lambda kv: kv[1]) if grads else ("-", float("nan"))
        line = (f"{case[0]:22s} logits {metrics.get('logits', float('nan')):.2e}  loss "
                f"{metrics.get('loss', float('nan')):.2e}  merged {metrics.get('merged.logits', float('nan')):.2e}  "
                f"worst grad {worst[1]:.2e} ({worst[0][5:]})")
        if failures:
            failed += 1
            print("FAIL", line)
            for f in failures:
                print("     ", f)
        else:
            passed += 1
            print("ok  ", line)
    # negative test: one adapter value nudged in what gpt.cpp reads must be caught
    nudge = ("base_model.model.transformer.h.1.mlp.c_fc.lora_B.weight", (3, 1), 0.05)
    try:
        _, failures = run_case(a.gpt, work, CASES[0], nudge=nudge)
    except RuntimeError as e:
        failures = [str(e)]
    if failures:
        passed += 1
        print(f"ok   negative test: nudging {nudge[0]}{list(nudge[1])} by {nudge[2]} is caught ({len(failures)} "
              "mismatches)")
    else:
        failed += 1
        print("FAIL negative test: a nudged adapter still matched the reference; the comparison cannot fail")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

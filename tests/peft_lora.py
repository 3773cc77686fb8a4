"""gpt.cpp's LoRA adapter files against Hugging Face PEFT on transformers' GPT2LMHeadModel.

  (a) PEFT -> gpt.cpp: get_peft_model(..., init_lora_weights=False) (random A and B) on a random base,
      save_pretrained; then `gpt logits --model BASE --adapter DIR` gives PEFT's logits, and
      `gpt lora merge` gives merge_and_unload()'s logits (max|diff| / max|ref| <= 1e-4).
  (b) gpt.cpp -> PEFT: `gpt lora init` writes an adapter; PeftModel.from_pretrained loads it with
      exactly the keys PEFT itself would save, the same r / alpha / targets, and A bit for bit.
A negative test runs (a) with one adapter value nudged after saving: it must fail.

Usage: .venv/bin/python tests/peft_lora.py [--gpt build/gpt]   (needs peft, pinned in requirements-dev.txt)
"""
import argparse
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import safetensors.torch
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import torch_gpt  # noqa: E402
from torch_gpt import Config  # noqa: E402

warnings.filterwarnings("ignore")
import peft  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict  # noqa: E402
from transformers import GPT2LMHeadModel  # noqa: E402

TOL = 1e-4


def rel(a, b):
    return float(np.max(np.abs(a - b))) / float(np.max(np.abs(b)))


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {p.returncode}: {(p.stderr or p.stdout).strip()}")
    return p.stdout


def gpt_logits(gpt, model, ids_file, out, adapter=None):
    cmd = [gpt, "logits", "--model", model, "--ids", ids_file, "--out", out]
    if adapter:
        cmd += ["--adapter", adapter]
    run(cmd)
    return torch_gpt.read_safetensors(out)["logits"].astype(np.float64)


def hf_base(path):
    m = GPT2LMHeadModel.from_pretrained(path)
    m.eval()
    return m


def peft_to_gpt(gpt, work, base, ids, ids_file, targets, nudge=None):
    """(a): returns failure messages."""
    torch.manual_seed(5)
    pm = get_peft_model(hf_base(base), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets,
                                                  fan_in_fan_out=True, init_lora_weights=False,
                                                  task_type="CAUSAL_LM"))
    pm.eval()
    adir = os.path.join(work, "peft_adapter" + ("_nudged" if nudge else ""))
    # What pm.save_pretrained writes, without its model card (which needs Jinja2)
    os.makedirs(adir, exist_ok=True)
    pm.peft_config["default"].save_pretrained(adir)
    state = {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(pm).items()}
    safetensors.torch.save_file(state, os.path.join(adir, "adapter_model.safetensors"), metadata={"format": "pt"})
    if nudge:  # change one value in the file gpt.cpp reads, not in PEFT's model
        f = os.path.join(adir, "adapter_model.safetensors")
        t = torch_gpt.read_safetensors(f)
        t[nudge][0, 0] += 0.05
        torch_gpt.write_safetensors(f, t, {"format": "pt"})
    with torch.no_grad():
        want = pm(torch.as_tensor(ids)).logits.double().numpy()
        base_logits = hf_base(base)(torch.as_tensor(ids)).logits.double().numpy()
    failures = []
    if rel(base_logits, want) < 100 * TOL:
        failures.append("PEFT's random adapter hardly changes the logits: the check proves nothing")
    got = gpt_logits(gpt, base, ids_file, os.path.join(work, "a.safetensors"), adir)
    e = rel(got, want)
    print(f"  PEFT adapter ({', '.join(targets)}) in gpt.cpp: logits {e:.2e}")
    if e > TOL:
        failures.append(f"gpt logits --adapter vs PEFT: relative error {e:.3e} > {TOL}")
    merged = os.path.join(work, "merged" + ("_nudged" if nudge else ""))
    run([gpt, "lora", "merge", "--model", base, "--adapter", adir, "--out", merged])
    with torch.no_grad():
        want_m = pm.merge_and_unload()(torch.as_tensor(ids)).logits.double().numpy()
    e = rel(gpt_logits(gpt, merged, ids_file, os.path.join(work, "m.safetensors")), want_m)
    print(f"  gpt lora merge vs PEFT merge_and_unload: logits {e:.2e}")
    if e > TOL:
        failures.append(f"gpt lora merge vs PEFT merge_and_unload: relative error {e:.3e} > {TOL}")
    return failures


def gpt_to_peft(gpt, work, base, targets):
    """(b): returns failure messages."""
    adir = os.path.join(work, "gpt_adapter")
    run([gpt, "lora", "init", "--model", base, "--out", adir, "--r", "4", "--alpha", "8", "--targets",
         ",".join(targets), "--seed", "3"])
    failures = []
    pm = PeftModel.from_pretrained(hf_base(base), adir)
    c = pm.peft_config["default"]
    if c.r != 4 or c.lora_alpha != 8 or sorted(c.target_modules) != sorted(targets):
        failures.append(f"PEFT reads r {c.r}, alpha {c.lora_alpha}, targets {c.target_modules}")
    ours = torch_gpt.read_safetensors(os.path.join(adir, "adapter_model.safetensors"))
    theirs = {k: v.detach().numpy() for k, v in get_peft_model_state_dict(pm).items()}
    if sorted(ours) != sorted(theirs):
        failures.append(f"keys differ: only ours {sorted(set(ours) - set(theirs))[:3]}, "
                        f"only PEFT's {sorted(set(theirs) - set(ours))[:3]}")
    for k in sorted(set(ours) & set(theirs)):
        if ours[k].shape != theirs[k].shape or not np.array_equal(ours[k], theirs[k]):
            failures.append(f"{k}: PEFT loaded other values or shape {list(theirs[k].shape)}")
    print(f"  gpt lora init ({', '.join(targets)}) in PEFT: {len(ours)} tensors, "
          f"{'same keys and values' if not failures else 'MISMATCH'}")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpt", default=os.path.join(ROOT, "build", "gpt"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"peft {peft.__version__}")
    failures = []
    with tempfile.TemporaryDirectory(prefix="gpt_peft_") as work:
        cfg = Config(n_layer=2, n_head=4, n_embd=32, n_ctx=64, vocab_size=101)
        base = os.path.join(work, "base")
        torch_gpt.save_model_dir(base, cfg, torch_gpt.random_parameters(cfg, seed=1, std=0.1, emb_std=0.3))
        ids = np.random.default_rng(2).integers(0, cfg.vocab_size, (2, 12))
        ids_file = os.path.join(work, "ids.txt")
        torch_gpt.write_id_matrix(ids_file, ids)
        for targets in (["c_attn", "c_proj", "c_fc"], ["attn.c_proj", "c_fc"]):
            failures += peft_to_gpt(a.gpt, work, base, ids, ids_file, targets)
            failures += gpt_to_peft(a.gpt, work, base, targets)
        neg = peft_to_gpt(a.gpt, work, base, ids, ids_file, ["c_attn"],
                          nudge="base_model.model.transformer.h.0.attn.c_attn.lora_B.weight")
        if neg:
            print(f"  negative test: a nudged adapter value is caught ({len(neg)} mismatches)")
        else:
            failures.append("negative test: a nudged adapter still matched PEFT; the comparison cannot fail")
    for f in failures:
        print("FAIL", f)
    print("ok" if not failures else f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""gpt.cpp against Hugging Face transformers (4.46.3), both ways through model directories.

  reference   tools/torch_gpt.py against transformers itself, float64, on the same random weights:
              GPT2LMHeadModel (pre-LN; tied and untied head) and OpenAIGPTLMHeadModel (post-LN,
              GPT-1) for logits, loss and every parameter gradient (relative error <= 1e-9).
  (a) HF -> gpt.cpp   a random GPT2Config -> GPT2LMHeadModel with every weight set to random
              values (HF's own init has zero biases and unit LayerNorm gains, which would hide a
              swapped bias) -> save_pretrained(safe_serialization=True) -> `gpt logits --grads`
              -> logits, loss and gradients against the same model in float64.
  (b) gpt.cpp -> HF   `gpt init ... --out DIR` -> GPT2LMHeadModel.from_pretrained(DIR): no missing
              or unexpected keys, every tensor as in the file, GPT-2's initialisation statistics
              -> `gpt logits` equals transformers' logits on the same ids.
  (c) published layout   a directory laid out like the openai-community/gpt2 files (names without
              "transformer.", h.N.attn.bias causal-mask buffers inside model.safetensors, the
              published config.json keys with dropout 0.1) -> `gpt logits` equals transformers and
              the reference.
Tolerances against gpt.cpp (float32) : logits max|diff|/max|ref| <= 1e-4, loss relative 1e-5,
gradients per tensor max|diff|/max|ref| <= 1e-3. model.eval() everywhere (dropout off).

Usage: .venv/bin/python tests/hf_roundtrip.py [--gpt build/gpt] [--keep DIR] [--reference-only]
Exit status 0 when everything holds, 1 otherwise.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import torch_gpt  # noqa: E402
from torch_gpt import Config, Reference  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)
import transformers  # noqa: E402
from transformers import (GPT2Config, GPT2LMHeadModel, OpenAIGPTConfig,  # noqa: E402
                          OpenAIGPTLMHeadModel)

transformers.logging.set_verbosity_error()

TOL_LOGITS, TOL_LOSS, TOL_GRAD = 1e-4, 1e-5, 1e-3
TOL_REF = 1e-9  # the reference against transformers, both float64
BUFFERS = (".attn.bias", ".attn.masked_bias")


def rel(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    r = float(np.max(np.abs(b))) if b.size else 0.0
    d = float(np.max(np.abs(a - b))) if b.size else 0.0
    return d / r if r > 0 else d


def to_np(t):
    return t.detach().cpu().numpy().astype(np.float64)


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = []

    def check(self, label, ok, detail):
        print(f"{'ok  ' if ok else 'FAIL'} {label:46s} {detail}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed.append(label)


# ----------------------------------------------------------------------------------------------
# transformers models as plain float64 computations


def hf_loss_and_grads(model, ids, targets, name_of):
    """Logits, our loss convention (targets aligned with positions, -1 unscored, mean over scored)
    and gradients under the published names (name_of maps a state-dict key to ours or None)."""
    model.zero_grad(set_to_none=True)
    logits = model(torch.as_tensor(ids)).logits
    loss, position = Reference.losses(logits, targets)
    loss.backward()
    grads = {}
    for key, p in model.named_parameters():  # tied parameters appear once, under the first name
        ours = name_of(key)
        if ours is not None and p.grad is not None:
            grads[ours] = to_np(p.grad)
    return to_np(logits), float(loss), to_np(position), grads


def gpt2_name(key):
    key = key[len("transformer."):] if key.startswith("transformer.") else key
    return None if key.endswith(BUFFERS) else key


def openai_name(key):
    key = key[len("transformer."):] if key.startswith("transformer.") else key
    key = key.replace("tokens_embed.", "wte.").replace("positions_embed.", "wpe.")
    return None if key.endswith(BUFFERS) or key == "lm_head.weight" else key


def set_hf_weights(model, params, name_of):
    """Copy our parameters into a transformers model; every parameter must be covered."""
    sd = model.state_dict()
    new = {}
    for key, value in sd.items():
        ours = name_of(key)
        if ours is None or (ours == "lm_head.weight" and ours not in params):  # a tied head
            continue
        if ours not in params:
            raise KeyError(f"no weights for {key}")
        new[key] = torch.as_tensor(np.asarray(params[ours]), dtype=value.dtype)
    missing, unexpected = model.load_state_dict(new, strict=False)
    real_missing = [k for k in missing if name_of(k) is not None and name_of(k) in params]
    if real_missing or unexpected:
        raise KeyError(f"missing {real_missing}, unexpected {unexpected}")
    model.tie_weights()


def randomize_hf(model, seed):
    """Every parameter of a transformers GPT-2 to non-trivial random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln_" in name:
                p.copy_((1.0 + 0.3 * torch.randn(p.shape, generator=g)) if name.endswith("weight")
                        else 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif "wte" in name or "wpe" in name or "lm_head" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def inputs(V, B, T, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, (B, T))
    targets = rng.integers(0, V, (B, T))
    targets[rng.random((B, T)) < 0.2] = -1
    targets[0, -1] = 1
    return ids, targets


def reference_vs_hf(res):
    """The float64 reference against transformers' own GPT-2 and GPT-1 on the same weights."""
    cases = [
        ("reference = GPT2LMHeadModel (tied)", Config(n_layer=2, n_head=4, n_embd=32, n_ctx=64, vocab_size=101), "gpt2"),
        ("reference = GPT2LMHeadModel (untied)",
         Config(n_layer=2, n_head=3, n_embd=30, n_ctx=40, vocab_size=89, tied_head=False), "gpt2"),
        ("reference = OpenAIGPTLMHeadModel (post-LN)",
         Config(n_layer=2, n_head=4, n_embd=32, n_ctx=64, vocab_size=101, ln="post"), "openai"),
    ]
    for label, cfg, kind in cases:
        params = torch_gpt.random_parameters(cfg, seed=11, std=0.2)
        if kind == "gpt2":
            hc = GPT2Config(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, n_positions=cfg.n_ctx,
                            vocab_size=cfg.vocab_size, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                            tie_word_embeddings=cfg.tied_head, attn_implementation="eager")
            model, name_of = GPT2LMHeadModel(hc), gpt2_name
        else:
            hc = OpenAIGPTConfig(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, n_positions=cfg.n_ctx,
                                 vocab_size=cfg.vocab_size, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                 afn="gelu")  # transformers' GPT-1 "gelu" is the tanh form
            model, name_of = OpenAIGPTLMHeadModel(hc), openai_name
        model = model.double().eval()
        set_hf_weights(model, params, name_of)
        ids, targets = inputs(cfg.vocab_size, 2, 17, seed=5)
        logits, loss, position, grads = hf_loss_and_grads(model, ids, targets, name_of)
        ref = Reference(cfg, params).run(ids, targets, grads=True)
        errs = {"logits": rel(ref["logits"], logits), "loss": abs(float(ref["loss"]) - loss) / abs(loss),
                "positions": rel(ref["position_losses"], position)}
        missing = [n for n, _ in torch_gpt.parameter_shapes(cfg) if n not in grads]
        gerr = max(rel(ref["grad." + n], grads[n]) for n in grads) if grads else float("inf")
        ok = all(v <= TOL_REF for v in errs.values()) and gerr <= TOL_REF and not missing
        res.check(label, ok, f"logits {errs['logits']:.1e}  loss {errs['loss']:.1e}  positions {errs['positions']:.1e}  "
                  f"grads {gerr:.1e}" + (f"  (no transformers gradient for {missing})" if missing else ""))


# ----------------------------------------------------------------------------------------------
# gpt.cpp


class Gpt:
    def __init__(self, path):
        self.path = path

    def available(self):
        if not (os.path.isfile(self.path) and os.access(self.path, os.X_OK)):
            return f"{self.path}: no such executable (build gpt.cpp first: cmake --build build)"
        missing = []
        for cmd, flag in (("logits", "--grads"), ("init", "--out")):
            p = subprocess.run([self.path, cmd, "--help"], capture_output=True, text=True)
            if p.returncode != 0 or flag not in p.stdout + p.stderr or (cmd == "init" and "--seed" not in p.stdout):
                missing.append(cmd)
        if missing:
            return (f"{self.path} has no {' / '.join('`' + m + '`' for m in missing)} command yet "
                    f"(`gpt {missing[0]} --help` does not describe it); the model CLI has not landed")
        return None

    def run(self, args):
        p = subprocess.run([self.path] + args, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"`gpt {' '.join(args)}` exited {p.returncode}: {(p.stderr or p.stdout).strip()}")
        return p.stdout

    def logits(self, model_dir, ids, work, targets=None, grads=False):
        ids_file = os.path.join(work, "ids.txt")
        torch_gpt.write_id_matrix(ids_file, ids)
        out = os.path.join(work, "gpt_out.safetensors")
        args = ["logits", "--model", model_dir, "--ids", ids_file, "--out", out]
        if targets is not None:
            t_file = os.path.join(work, "targets.txt")
            torch_gpt.write_id_matrix(t_file, targets)
            args += ["--targets", t_file]
        if grads:
            args.append("--grads")
        self.run(args)
        return torch_gpt.read_safetensors(out)


def compare_outputs(got, logits, loss=None, grads=None, position=None, targets=None):
    """gpt.cpp's output against float64 values; returns (ok, detail)."""
    problems = []
    if got["logits"].dtype != np.float32:
        problems.append(f"logits dtype {got['logits'].dtype}")
    if got["logits"].shape != logits.shape:
        return False, f"logits shape {list(got['logits'].shape)}, expected {list(logits.shape)}"
    e_logits = rel(got["logits"], logits)
    detail = f"logits {e_logits:.1e}"
    if e_logits > TOL_LOGITS:
        problems.append(f"logits error {e_logits:.2e} > {TOL_LOGITS:g}")
    if loss is not None:
        e_loss = abs(float(got["loss"][0]) - loss) / abs(loss) if "loss" in got else float("inf")
        detail += f"  loss {e_loss:.1e}"
        if e_loss > TOL_LOSS:
            problems.append(f"loss error {e_loss:.2e} > {TOL_LOSS:g}")
        if position is not None:
            scored = targets != -1
            e_pos = rel(got["position_losses"][scored], position[scored]) if "position_losses" in got else float("inf")
            detail += f"  positions {e_pos:.1e}"
            if e_pos > TOL_LOGITS:
                problems.append(f"position_losses error {e_pos:.2e} > {TOL_LOGITS:g}")
    if grads is not None:
        worst, worst_name = 0.0, "-"
        for name, g in grads.items():
            key = "grad." + name
            if key not in got:
                problems.append(f"no {key}")
                continue
            if got[key].shape != g.shape:
                problems.append(f"{key} shape {list(got[key].shape)}, expected {list(g.shape)}")
                continue
            e = rel(got[key], g)
            if e > worst:
                worst, worst_name = e, name
            if e > TOL_GRAD:
                problems.append(f"{key} error {e:.2e} > {TOL_GRAD:g}")
        extra = sorted(k for k in got if k.startswith("grad.") and k[5:] not in grads)
        if extra:
            problems.append(f"unexpected {extra}")
        detail += f"  worst grad {worst:.1e} ({worst_name})"
    if problems:
        detail += "\n       " + "\n       ".join(problems)
    return not problems, detail


def part_a(gpt, work, res):
    """transformers writes, gpt.cpp reads."""
    configs = [
        ("(a) HF save_pretrained -> gpt (tied)", dict(n_layer=2, n_head=4, n_embd=32, n_positions=64, vocab_size=101)),
        ("(a) HF save_pretrained -> gpt (untied)", dict(n_layer=2, n_head=4, n_embd=32, n_positions=64, vocab_size=101,
                                                        tie_word_embeddings=False)),
    ]
    for i, (label, kw) in enumerate(configs):
        torch.manual_seed(100 + i)
        model = GPT2LMHeadModel(GPT2Config(**kw)).eval()
        randomize_hf(model, seed=200 + i)
        d = os.path.join(work, f"hf_saved_{i}")
        model.save_pretrained(d, safe_serialization=True)
        ids, targets = inputs(kw["vocab_size"], 2, 16, seed=300 + i)
        m64 = GPT2LMHeadModel.from_pretrained(d, torch_dtype=torch.float64).eval()
        logits, loss, position, grads = hf_loss_and_grads(m64, ids, targets, gpt2_name)
        try:
            got = gpt.logits(d, ids, work, targets, grads=True)
        except RuntimeError as e:
            res.check(label, False, str(e))
            continue
        ok, detail = compare_outputs(got, logits, loss, grads, position, targets)
        res.check(label, ok, detail)


def part_b(gpt, work, res):
    """gpt.cpp writes, transformers reads."""
    variants = [
        ("(b) gpt init -> HF from_pretrained", []),
        ("(b) gpt init --untied-head -> HF", ["--untied-head"]),
    ]
    for i, (label, extra) in enumerate(variants):
        d = os.path.join(work, f"gpt_init_{i}")
        try:
            gpt.run(["init", "--n-layer", "2", "--n-head", "4", "--n-embd", "32", "--context", "64",
                     "--vocab-size", "101", "--seed", "7", *extra, "--out", d])
        except RuntimeError as e:
            res.check(label, False, str(e))
            continue
        problems = []
        try:
            model, info = GPT2LMHeadModel.from_pretrained(d, output_loading_info=True, torch_dtype=torch.float64)
        except (ValueError, OSError, RuntimeError) as e:
            names = sorted(torch_gpt.read_safetensors(os.path.join(d, "model.safetensors")))
            hint = ""
            if "lm_head.weight" in names and not any(n.startswith("transformer.") for n in names):
                hint = (" -- transformers rejects a file whose body names lack the \"transformer.\" prefix "
                        "while it holds lm_head.weight; with an untied head the body must be written "
                        "as save_pretrained does (\"transformer.wte.weight\", ...)")
            res.check(label, False, f"GPT2LMHeadModel.from_pretrained failed: {e}{hint}")
            continue
        model.eval()
        missing = [k for k in info["missing_keys"] if not k.endswith(BUFFERS)]
        unexpected = [k for k in info["unexpected_keys"] if not k.endswith(BUFFERS)]
        if missing or unexpected or info["mismatched_keys"] or info["error_msgs"]:
            problems.append(f"loading info: missing {missing}, unexpected {unexpected}, "
                            f"mismatched {info['mismatched_keys']}, errors {info['error_msgs']}")
        file_tensors = {gpt2_name(k): v for k, v in torch_gpt.read_safetensors(os.path.join(d, "model.safetensors")).items()
                        if gpt2_name(k) is not None}
        sd = {gpt2_name(k): v for k, v in model.state_dict().items() if gpt2_name(k) is not None}
        tied = "--untied-head" not in extra
        if model.config.tie_word_embeddings != tied:
            problems.append(f"config tie_word_embeddings is {model.config.tie_word_embeddings}")
        for name, a in file_tensors.items():
            if a.dtype != np.float32:
                problems.append(f"{name} is {a.dtype}, expected float32")
            if name not in sd:
                problems.append(f"{name} in the file is not a GPT2LMHeadModel tensor")
            elif tuple(sd[name].shape) != a.shape or not np.array_equal(to_np(sd[name]), a.astype(np.float64)):
                problems.append(f"{name} differs between the file and the loaded model")
        if tied and "lm_head.weight" in file_tensors:
            problems.append("tied head, yet lm_head.weight is in the file")
        if not tied and "lm_head.weight" not in file_tensors:
            problems.append("untied head, yet no lm_head.weight in the file")
        problems += torch_gpt.gpt2_init_problems(file_tensors, 2)
        ids, _ = inputs(101, 2, 16, seed=400 + i)
        with torch.no_grad():
            logits = to_np(model(torch.as_tensor(ids)).logits)
        try:
            got = gpt.logits(d, ids, work)
        except RuntimeError as e:
            res.check(label, False, str(e))
            continue
        ok, detail = compare_outputs(got, logits)
        if set(got) != {"logits"}:
            problems.append(f"without --targets the output should hold only logits, it has {sorted(got)}")
        if problems:
            detail += "\n       " + "\n       ".join(problems)
        res.check(label, ok and not problems, detail)


def part_c(gpt, work, res):
    """A directory laid out like the published openai-community/gpt2 files."""
    label = "(c) published GPT-2 layout -> gpt"
    cfg = Config(n_layer=2, n_head=4, n_embd=32, n_ctx=64, vocab_size=101)
    params = torch_gpt.random_parameters(cfg, seed=21, std=0.2)
    d = os.path.join(work, "published")
    os.makedirs(d)
    published_config = {  # the keys and values of the published GPT-2 config.json, at a small size
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
        "bos_token_id": cfg.vocab_size - 1, "embd_pdrop": 0.1, "eos_token_id": cfg.vocab_size - 1,
        "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "gpt2",
        "n_ctx": cfg.n_ctx, "n_embd": cfg.n_embd, "n_head": cfg.n_head, "n_layer": cfg.n_layer,
        "n_positions": cfg.n_ctx, "resid_pdrop": 0.1, "summary_activation": None, "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True, "summary_type": "cls_index", "summary_use_proj": True,
        "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
        "vocab_size": cfg.vocab_size,
    }
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(published_config, f, indent=2)
    tensors = {name: params[name] for name, _ in torch_gpt.parameter_shapes(cfg)}
    mask = np.tril(np.ones((cfg.n_ctx, cfg.n_ctx), dtype=np.float32)).reshape(1, 1, cfg.n_ctx, cfg.n_ctx)
    for l in range(cfg.n_layer):
        tensors[f"h.{l}.attn.bias"] = mask
    torch_gpt.write_safetensors(os.path.join(d, "model.safetensors"), tensors, {"format": "pt"})
    model = GPT2LMHeadModel.from_pretrained(d, torch_dtype=torch.float64).eval()
    ids, targets = inputs(cfg.vocab_size, 3, 20, seed=500)
    with torch.no_grad():
        hf_logits = to_np(model(torch.as_tensor(ids)).logits)
    ref = Reference(cfg, params).run(ids, targets, grads=False)
    e_ref_hf = rel(ref["logits"], hf_logits)
    try:
        got = gpt.logits(d, ids, work, targets)
    except RuntimeError as e:
        res.check(label, False, str(e))
        return
    ok, detail = compare_outputs(got, hf_logits, float(ref["loss"]), None, ref["position_losses"].numpy(), targets)
    ok = ok and e_ref_hf <= TOL_REF
    res.check(label, ok, f"{detail}  (reference vs HF {e_ref_hf:.1e})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpt", default=os.path.join(ROOT, "build", "gpt"))
    ap.add_argument("--keep", help="write the model directories here and keep them")
    ap.add_argument("--reference-only", action="store_true", help="only the reference against transformers")
    a = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    res = Results()
    reference_vs_hf(res)
    if not a.reference_only:
        gpt = Gpt(a.gpt)
        problem = gpt.available()
        if problem:
            res.check("gpt.cpp model CLI available", False, problem)
        else:
            work_ctx = None if a.keep else tempfile.TemporaryDirectory(prefix="hf_roundtrip_")
            work = a.keep or work_ctx.name
            os.makedirs(work, exist_ok=True)
            try:
                part_a(gpt, work, res)
                part_b(gpt, work, res)
                part_c(gpt, work, res)
            finally:
                if work_ctx:
                    work_ctx.cleanup()
    print(f"{res.passed} passed, {len(res.failed)} failed ({time.time() - t0:.1f} s)")
    if res.failed:
        print(f"hf_roundtrip: FAILED: {'; '.join(res.failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

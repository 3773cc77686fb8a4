"""LoRA on the float64 PyTorch reference (tools/torch_gpt.py): what gpt.cpp's adapters are tested against.

A targeted projection y = x @ W + b (Conv1D, W [in, out]) becomes
    y = x @ W + b + scale * (x @ A^T) @ B^T,   A [r, in] (lora_A.weight), B [out, r] (lora_B.weight),
with scale = lora_alpha / r, as PEFT computes it for GPT-2 (fan_in_fan_out: the merged update is
scale * (B @ A)^T). No dropout here: the comparisons run without it.

Adapter directories are PEFT's: adapter_config.json + adapter_model.safetensors with the names
base_model.model.transformer.h.{i}.{attn.c_attn|attn.c_proj|mlp.c_fc|mlp.c_proj}.lora_{A|B}.weight.
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_gpt  # noqa: E402

MODULES = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def targeted_modules(targets):
    """PEFT's matching on GPT-2: a module is targeted when its path ends with a target name."""
    out = []
    for m in MODULES:
        if any(m == t or m.endswith("." + t) for t in targets):
            out.append(m)
    if not out:
        raise ValueError(f"no GPT-2 module matches {targets}")
    return out


def adapter_shapes(cfg, r, targets):
    """[(PEFT name, shape)] in PEFT's order."""
    C = cfg.n_embd
    io = {"attn.c_attn": (C, 3 * C), "attn.c_proj": (C, C), "mlp.c_fc": (C, 4 * C), "mlp.c_proj": (4 * C, C)}
    mods = targeted_modules(targets)
    out = []
    for layer in range(cfg.n_layer):
        for m in MODULES:
            if m not in mods:
                continue
            n_in, n_out = io[m]
            prefix = f"base_model.model.transformer.h.{layer}.{m}."
            out.append((prefix + "lora_A.weight", (r, n_in)))
            out.append((prefix + "lora_B.weight", (n_out, r)))
    return out


def random_adapters(cfg, r, targets, seed=0, std=0.2):
    rng = np.random.default_rng(seed)
    return {n: rng.normal(0.0, std, s).astype(np.float32) for n, s in adapter_shapes(cfg, r, targets)}


def save_adapter_dir(path, cfg, r, alpha, targets, adapters):
    """PEFT's layout, written independently of gpt.cpp."""
    os.makedirs(path, exist_ok=True)
    conf = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha, "lora_dropout": 0.0,
            "target_modules": list(targets), "fan_in_fan_out": True, "bias": "none",
            "base_model_name_or_path": "random", "inference_mode": True}
    with open(os.path.join(path, "adapter_config.json"), "w") as f:
        json.dump(conf, f, indent=2)
    tensors = {n: np.asarray(adapters[n], dtype=np.float32) for n, _ in adapter_shapes(cfg, r, targets)}
    torch_gpt.write_safetensors(os.path.join(path, "adapter_model.safetensors"), tensors, {"format": "pt"})


def merged_parameters(cfg, params, r, alpha, targets, adapters):
    """W + scale * (B @ A)^T for every adapter (float64)."""
    out = {k: np.asarray(v, dtype=np.float64).copy() for k, v in params.items()}
    scale = alpha / r
    for layer in range(cfg.n_layer):
        for m in targeted_modules(targets):
            p = f"base_model.model.transformer.h.{layer}.{m}."
            A = np.asarray(adapters[p + "lora_A.weight"], dtype=np.float64)
            B = np.asarray(adapters[p + "lora_B.weight"], dtype=np.float64)
            out[f"h.{layer}.{m}.weight"] += scale * (B @ A).T
    return out


class LoraReference(torch_gpt.Reference):
    """The reference GPT with adapters; run() gives grad.<PEFT name> for the adapters only."""

    def __init__(self, cfg, params, r, alpha, targets, adapters, dtype=torch.float64):
        super().__init__(cfg, params, dtype)
        for p in self.params.values():
            p.requires_grad_(False)  # the base is frozen
        self.scale = alpha / r
        self.adapters = {}
        for name, shape in adapter_shapes(cfg, r, targets):
            a = torch.from_numpy(np.array(adapters[name])).to(dtype)
            if tuple(a.shape) != tuple(shape):
                raise ValueError(f"{name}: shape {list(a.shape)}, expected {list(shape)}")
            self.adapters[name] = a.requires_grad_(True)

    def _linear(self, x, prefix):
        y = super()._linear(x, prefix)
        p = f"base_model.model.transformer.{prefix}."
        A = self.adapters.get(p + "lora_A.weight")
        if A is None:
            return y
        B = self.adapters[p + "lora_B.weight"]
        return y + self.scale * ((x @ A.t()) @ B.t())

    def trainable(self):
        return self.adapters  # the base stays frozen: gradients of the adapters only


def self_validate():
    """The reference on its own: adapters == merged weights (float64), B = 0 == the base, and
    gradients against central differences. Returns failure messages."""
    failures = []
    cfg = torch_gpt.Config(n_layer=2, n_head=2, n_embd=8, n_ctx=8, vocab_size=13)
    params = torch_gpt.random_parameters(cfg, seed=1)
    targets = ["c_attn", "c_proj", "c_fc"]
    r, alpha = 3, 5.0
    ad = random_adapters(cfg, r, targets, seed=2)
    rng = np.random.default_rng(3)
    ids = rng.integers(0, cfg.vocab_size, (2, 6))
    tg = rng.integers(0, cfg.vocab_size, (2, 6))
    ref = LoraReference(cfg, params, r, alpha, targets, ad)
    out = ref.run(ids, tg, grads=True)
    merged = torch_gpt.Reference(cfg, merged_parameters(cfg, params, r, alpha, targets, ad)).logits(ids).detach()
    d = float((out["logits"] - merged).abs().max())
    if d > 1e-10:
        failures.append(f"adapters vs merged weights: max |diff| {d:.3e}")
    base = torch_gpt.Reference(cfg, params).logits(ids).detach()
    if float((out["logits"] - base).abs().max()) < 1e-2:
        failures.append("the random adapters do not change the logits: the checks would prove nothing")
    zero = {k: (v * 0 if "lora_B" in k else v) for k, v in ad.items()}
    z = LoraReference(cfg, params, r, alpha, targets, zero).logits(ids).detach()
    if float((z - base).abs().max()) > 1e-12:
        failures.append("B = 0 changes the logits")
    h = 1e-6
    for name in ("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight",
                 "base_model.model.transformer.h.1.mlp.c_proj.lora_B.weight"):
        for idx in ((0, 0), (1, 2)):
            a = ref.adapters[name]
            with torch.no_grad():
                keep = float(a[idx])
                a[idx] = keep + h
                up = float(ref.losses(ref.logits(ids), tg)[0])
                a[idx] = keep - h
                down = float(ref.losses(ref.logits(ids), tg)[0])
                a[idx] = keep
            num = (up - down) / (2 * h)
            got = float(out["grad." + name][idx])
            if abs(num - got) > 1e-6 * max(1.0, abs(num)):
                failures.append(f"grad.{name}{list(idx)}: autograd {got:.8g} vs finite difference {num:.8g}")
    return failures


if __name__ == "__main__":
    fails = self_validate()
    for f in fails:
        print("FAIL", f)
    print("ok" if not fails else f"{len(fails)} failures")
    sys.exit(1 if fails else 0)

"""The PyTorch peer of `gpt bench train-step` and `gpt bench forward`.

A compact GPT written for this benchmark, with the architecture of gpt.cpp's engine
(src/model/gpt.cpp): token + learned position embeddings; blocks of a fused QKV linear, causal
multi-head attention (masked softmax of q k^T / sqrt(head_dim), then @ v), output projection, a
4x MLP with tanh-approximated GELU; pre-LN with a final LayerNorm (post-LN without one for
--ln post); an LM head tied to the token embedding; mean cross-entropy. GPT-2 initialisation
(N(0, 0.02), residual projections N(0, 0.02/sqrt(2 L)), biases 0, LayerNorm gains 1), dropout 0.
torch 1.13 has no F.scaled_dot_product_attention, so attention is the plain masked-matmul form.

train-step = optimizer.zero_grad(set_to_none=True) + forward + backward + AdamW step, exactly
what `gpt bench train-step` times (set_to_none=True measured a little faster than False here:
best step 1445-1508 ms against 1529-1573 ms, GPT-2 B=4 T=64, 2 threads, AMD EPYC; --zero-grad
zeros gives the other): AdamW(lr 1e-4, betas (0.9, 0.95), eps 1e-8), weight decay
0.1 on the 2-D tensors (matrices and both embeddings), 0 on biases and LayerNorm gains,
foreach=True; NO gradient clipping (the C++ step does none; nanoGPT's step, quoted in
shared/baselines.md, clips to 1.0, which adds a pass over all gradients).
forward = model(x, targets) under torch.no_grad().

FLOPs are counted as gpt.cpp counts them (src/model/config.cpp): per token, forward =
2 * n_matmul_params + 4 * sum over layers of C * span (span = T, or min(T, band) in banded
layers), train = 3 x forward, where n_matmul_params = 12 L C^2 + V C (123,532,032 for gpt2).

Run it in the tuned environment of shared/README.md ("PyTorch at its real speed"), under the lock:
  flock /tmp/cpu.lock env LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp \\
      LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \\
      /usr/bin/python3 bench/torch_gpt_bench.py --mode train-step --preset gpt2 -b 4 -t 64 --threads 2
The LAST line printed is one JSON object: {"bench": "torch-train-step"|"torch-forward",
"ms_per_step", "ms_best", "tokens_per_s", "gflops_per_s", "threads", "torch", ...}.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# name: (n_layer, n_head, n_embd, context, vocab, ln, banded) -- the presets of src/model/config.cpp
PRESETS = {
    "gpt2": (12, 12, 768, 1024, 50257, "pre", False),
    "gpt2-medium": (24, 16, 1024, 1024, 50257, "pre", False),
    "gpt2-large": (36, 20, 1280, 1024, 50257, "pre", False),
    "gpt2-xl": (48, 25, 1600, 1024, 50257, "pre", False),
    "gpt1": (12, 12, 768, 512, 40478, "post", False),
    "gpt3-small": (12, 12, 768, 2048, 50257, "pre", True),
    "gpt3-medium": (24, 16, 1024, 2048, 50257, "pre", True),
    "gpt3-large": (24, 16, 1536, 2048, 50257, "pre", True),
    "gpt3-xl": (24, 16, 2048, 2048, 50257, "pre", True),  # 16 heads of 128, as src/model/config.cpp
}
BAND = 256  # band width of GPT-3's banded layers (odd layers, 0-based)


class Block(nn.Module):
    def __init__(self, C, H, pre_ln, mask):
        super().__init__()
        self.H, self.pre_ln = H, pre_ln
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.c_attn = nn.Linear(C, 3 * C)
        self.attn_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.c_fc = nn.Linear(C, 4 * C)
        self.gelu = nn.GELU(approximate="tanh")
        self.mlp_proj = nn.Linear(4 * C, C)
        # additive mask: 0 where query i may see key j, -inf elsewhere
        self.register_buffer("mask", mask, persistent=False)

    def attention(self, x):
        B, T, C = x.shape
        hs = C // self.H
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.H, hs).transpose(1, 2)  # [B, H, T, hs]
        k = k.view(B, T, self.H, hs).transpose(1, 2)
        v = v.view(B, T, self.H, hs).transpose(1, 2)
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs)) + self.mask[:T, :T]
        y = F.softmax(scores, dim=-1) @ v  # [B, H, T, hs]
        return self.attn_proj(y.transpose(1, 2).reshape(B, T, C))

    def mlp(self, x):
        return self.mlp_proj(self.gelu(self.c_fc(x)))

    def forward(self, x):
        if self.pre_ln:
            x = x + self.attention(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))
        x = self.ln_1(x + self.attention(x))
        return self.ln_2(x + self.mlp(x))


def causal_mask(T, band):
    """[T, T] additive mask: key j visible to query i iff j <= i (and i - band < j if band > 0)."""
    i = torch.arange(T).unsqueeze(1)
    j = torch.arange(T).unsqueeze(0)
    visible = j <= i
    if band > 0:
        visible &= j > i - band
    return torch.zeros(T, T).masked_fill(~visible, float("-inf"))


class GPT(nn.Module):
    def __init__(self, L, H, C, n_ctx, V, ln, banded, T):
        super().__init__()
        self.pre_ln = ln == "pre"
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(n_ctx, C)
        dense = causal_mask(T, 0)
        local = causal_mask(T, BAND) if banded else dense
        self.h = nn.ModuleList(Block(C, H, self.pre_ln, local if l % 2 == 1 else dense) for l in range(L))
        self.ln_f = nn.LayerNorm(C, eps=1e-5) if self.pre_ln else None
        self.init_gpt2(L)

    @torch.no_grad()
    def init_gpt2(self, L):
        for name, p in self.named_parameters():
            if name.endswith(".bias"):
                p.zero_()
            elif "ln_" in name:
                p.fill_(1.0)
            elif name.endswith("attn_proj.weight") or name.endswith("mlp_proj.weight"):
                p.normal_(0.0, 0.02 / math.sqrt(2 * L))
            else:
                p.normal_(0.0, 0.02)

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe.weight[:T]
        for block in self.h:
            x = block(x)
        if self.ln_f is not None:
            x = self.ln_f(x)
        logits = F.linear(x, self.wte.weight)  # the LM head is the token embedding
        return F.cross_entropy(logits.view(B * T, -1), targets.view(B * T))


def tuned_environment():
    """Which BLAS and allocator this process really runs with (from its memory maps)."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return "unknown", "unknown"
    blas = "openblas-openmp" if "openblas-openmp" in maps else ("openblas-pthread" if "openblas" in maps else "other")
    alloc = "tcmalloc" if "tcmalloc" in maps else "glibc"
    return blas, alloc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=["train-step", "forward"], default="train-step")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="gpt2")
    ap.add_argument("-b", "--batch-size", type=int, default=4)
    ap.add_argument("-t", "--seq-len", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--zero-grad", choices=["none", "zeros"], default="none",
                    help="zero_grad(set_to_none=True) ('none', the default: measured faster) or set_to_none=False")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    L, H, C, n_ctx, V, ln, banded = PRESETS[args.preset]
    B, T = args.batch_size, args.seq_len
    if T > n_ctx:
        sys.exit(f"torch_gpt_bench: --seq-len {T} is longer than the context {n_ctx} of {args.preset}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    blas, alloc = tuned_environment()
    if blas != "openblas-openmp" or alloc != "tcmalloc":
        print(f"warning: not the tuned environment (BLAS {blas}, allocator {alloc}); see shared/README.md",
              file=sys.stderr)

    train = args.mode == "train-step"
    model = GPT(L, H, C, n_ctx, V, ln, banded, T)
    n_params = sum(p.numel() for p in model.parameters())
    x = torch.randint(0, V, (B, T))
    y = torch.randint(0, V, (B, T))

    opt = None
    if train:
        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=1e-4, betas=(0.9, 0.95), eps=1e-8, foreach=True)
    else:
        model.eval()

    phases = [0.0, 0.0, 0.0]  # forward, backward (with zero_grad), optimizer, over timed steps
    clock = time.perf_counter

    def step(timed):
        if train:
            t0 = clock()
            opt.zero_grad(set_to_none=args.zero_grad == "none")
            loss = model(x, y)
            t1 = clock()
            loss.backward()
            t2 = clock()
            opt.step()
            t3 = clock()
            if timed:
                phases[0] += t1 - t0
                phases[1] += t2 - t1
                phases[2] += t3 - t2
        else:
            with torch.no_grad():
                loss = model(x, y)
        return loss

    for _ in range(args.warmup):
        step(False)
    times = []
    for _ in range(max(1, args.steps)):
        t0 = clock()
        loss = step(True)
        times.append(clock() - t0)
    med, best = statistics.median(times), min(times)

    matmul_params = 12 * L * C * C + V * C
    span = sum(min(T, BAND) if banded and l % 2 == 1 else T for l in range(L))
    fwd_flops_per_token = 2.0 * matmul_params + 4.0 * C * span
    flops = (3.0 if train else 1.0) * fwd_flops_per_token * B * T

    n = len(times)
    print(f"model:     {args.preset} ({n_params:,} parameters), B={B} T={T}, "
          + ("forward + backward + AdamW, fp32" if train else "forward with loss, fp32, no_grad"))
    print(f"torch:     {torch.__version__}; {torch.get_num_threads()} threads; BLAS {blas}; allocator {alloc}")
    print(f"step:      {med * 1e3:.1f} ms median, {best * 1e3:.1f} ms best ({n} steps after {args.warmup} warm-up)")
    if train:
        print(f"phases:    zero_grad({args.zero_grad}) + forward {phases[0] / n * 1e3:.1f} ms, "
              f"backward {phases[1] / n * 1e3:.1f} ms, AdamW {phases[2] / n * 1e3:.1f} ms (means)")
    print(f"tokens/s:  {B * T / med:.0f}")
    print(f"GFLOP/s:   {flops / med / 1e9:.1f} ({flops / 1e9:.2f} GFLOP per step); loss {loss.item():.4f}")
    print(json.dumps({
        "bench": "torch-" + args.mode,
        "preset": args.preset,
        "batch": B,
        "seq_len": T,
        "ms_per_step": med * 1e3,
        "ms_best": best * 1e3,
        "tokens_per_s": B * T / med,
        "gflops_per_s": flops / med / 1e9,
        "gflop_per_step": flops / 1e9,
        "threads": torch.get_num_threads(),
        "zero_grad": args.zero_grad if train else None,
        "blas": blas,
        "allocator": alloc,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()

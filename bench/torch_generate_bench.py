"""The PyTorch peer of `gpt bench generate`: prefill and decode with a preallocated KV cache.

The network is the one bench/torch_gpt_bench.py times (the architecture of src/model/gpt.cpp, GPT-2
initialisation, fp32), written here with its own key/value cache: per layer K and V tensors of
[B, H, n_ctx, head_dim], allocated once before anything is timed. A pass over T new tokens at
positions pos..pos+T-1 writes their keys and values into the cache and attends over cache[:pos+T]
(the causal mask inside the new block; banded layers see only the last `band` keys).

prefill = one pass over the B x P prompt, LM head on the last position only (as gpt.cpp and
llama.cpp do), the best of --repeat runs. decode = N passes of one token per row, each picking
the greedy argmax of its logits, the cache growing from P to P + N.

Run it in the tuned environment of shared/README.md, under the lock:
  flock /tmp/cpu.lock env LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp \\
      LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \\
      /usr/bin/python3 bench/torch_generate_bench.py --preset gpt2 --prompt-tokens 512 --new-tokens 128
The LAST line printed is one JSON object: {"bench": "torch-generate", "prefill_tokens_per_s",
"decode_tokens_per_s", ...}.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt_bench import BAND, PRESETS, tuned_environment  # noqa: E402


class CachedBlock(nn.Module):
    def __init__(self, C, H, pre_ln, band):
        super().__init__()
        self.H, self.pre_ln, self.band = H, pre_ln, band
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.c_attn = nn.Linear(C, 3 * C)
        self.attn_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.c_fc = nn.Linear(C, 4 * C)
        self.gelu = nn.GELU(approximate="tanh")
        self.mlp_proj = nn.Linear(4 * C, C)

    def attention(self, x, k_cache, v_cache, pos):
        B, T, C = x.shape
        hs = C // self.H
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.H, hs).transpose(1, 2)  # [B, H, T, hs]
        k_cache[:B, :, pos:pos + T] = k.view(B, T, self.H, hs).transpose(1, 2)
        v_cache[:B, :, pos:pos + T] = v.view(B, T, self.H, hs).transpose(1, 2)
        end = pos + T
        start = max(0, pos - self.band + 1) if self.band > 0 else 0  # keys no query of the block sees
        K, V = k_cache[:B, :, start:end], v_cache[:B, :, start:end]
        scores = (q @ K.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        if T > 1:  # the causal (and band) mask inside the new block
            i = torch.arange(pos, end).unsqueeze(1)
            j = torch.arange(start, end).unsqueeze(0)
            visible = j <= i
            if self.band > 0:
                visible &= j > i - self.band
            scores = scores.masked_fill(~visible, float("-inf"))
        y = F.softmax(scores, dim=-1) @ V
        return self.attn_proj(y.transpose(1, 2).reshape(B, T, C))

    def forward(self, x, k_cache, v_cache, pos):
        if self.pre_ln:
            x = x + self.attention(self.ln_1(x), k_cache, v_cache, pos)
            return x + self.mlp_proj(self.gelu(self.c_fc(self.ln_2(x))))
        x = self.ln_1(x + self.attention(x, k_cache, v_cache, pos))
        return self.ln_2(x + self.mlp_proj(self.gelu(self.c_fc(x))))


class CachedGPT(nn.Module):
    def __init__(self, L, H, C, n_ctx, V, ln, banded, max_batch):
        super().__init__()
        self.pre_ln = ln == "pre"
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(n_ctx, C)
        self.h = nn.ModuleList(
            CachedBlock(C, H, self.pre_ln, BAND if banded and l % 2 == 1 else 0) for l in range(L))
        self.ln_f = nn.LayerNorm(C, eps=1e-5) if self.pre_ln else None
        # The cache, preallocated: [L, B, H, n_ctx, hs] for keys and for values.
        self.register_buffer("k_cache", torch.zeros(L, max_batch, H, n_ctx, C // H), persistent=False)
        self.register_buffer("v_cache", torch.zeros(L, max_batch, H, n_ctx, C // H), persistent=False)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith(".bias"):
                    p.zero_()
                elif "ln_" in name:
                    p.fill_(1.0)
                elif name.endswith("attn_proj.weight") or name.endswith("mlp_proj.weight"):
                    p.normal_(0.0, 0.02 / math.sqrt(2 * L))
                else:
                    p.normal_(0.0, 0.02)

    def forward(self, idx, pos):
        """Runs idx [B, T] at positions pos..pos+T-1; returns the last position's logits [B, V]."""
        B, T = idx.shape
        x = self.wte(idx) + self.wpe.weight[pos:pos + T]
        for l, block in enumerate(self.h):
            x = block(x, self.k_cache[l], self.v_cache[l], pos)
        x = x[:, -1, :]
        if self.ln_f is not None:
            x = self.ln_f(x)
        return F.linear(x, self.wte.weight)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="gpt2")
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("-b", "--batch", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    L, H, C, n_ctx, V, ln, banded = PRESETS[args.preset]
    B, P, N = args.batch, args.prompt_tokens, args.new_tokens
    if P + N > n_ctx:
        sys.exit(f"torch_generate_bench: {P} + {N} tokens exceed the context {n_ctx} of {args.preset}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    blas, alloc = tuned_environment()
    if blas != "openblas-openmp" or alloc != "tcmalloc":
        print(f"warning: not the tuned environment (BLAS {blas}, allocator {alloc}); see shared/README.md",
              file=sys.stderr)
    model = CachedGPT(L, H, C, n_ctx, V, ln, banded, B).eval()
    n_params = sum(p.numel() for p in model.parameters())
    prompt = torch.randint(0, V, (B, P))
    clock = time.perf_counter
    with torch.inference_mode():
        model(prompt[:, :min(P, 64)], 0)  # warm-up
        prefill_s = float("inf")
        for _ in range(max(1, args.repeat)):
            t0 = clock()
            logits = model(prompt, 0)
            prefill_s = min(prefill_s, clock() - t0)
        steps = []
        t0 = clock()
        for k in range(N):
            ts = clock()
            nxt = logits.argmax(dim=-1, keepdim=True)  # [B, 1]
            logits = model(nxt, P + k)
            steps.append(clock() - ts)
        decode_s = clock() - t0
    steps.sort()
    median_step = steps[len(steps) // 2] if steps else 0.0
    prefill_tps = B * P / prefill_s
    decode_tps = B * N / decode_s if N > 0 else 0.0
    kv_mb = (model.k_cache.numel() + model.v_cache.numel()) * 4 / 1e6
    print(f"model:    {args.preset} ({n_params:,} parameters), fp32, random init")
    print(f"torch:    {torch.__version__}; {torch.get_num_threads()} threads; BLAS {blas}; allocator {alloc}")
    print(f"prefill:  {B} x {P} tokens, last-position logits: {prefill_s * 1e3:.1f} ms, "
          f"{prefill_tps:.1f} tokens/s (best of {max(1, args.repeat)})")
    print(f"decode:   {B} x {N} tokens (context {P} -> {P + N}): {median_step * 1e3:.2f} ms/step median, "
          f"{decode_tps:.1f} tokens/s")
    print(f"memory:   KV cache {kv_mb:.0f} MB")
    print(json.dumps({
        "bench": "torch-generate",
        "preset": args.preset,
        "weights": "f32",
        "batch": B,
        "prompt_tokens": P,
        "new_tokens": N,
        "threads": torch.get_num_threads(),
        "prefill_tokens_per_s": prefill_tps,
        "decode_tokens_per_s": decode_tps,
        "prefill_ms": prefill_s * 1e3,
        "decode_ms_per_step": median_step * 1e3,
        "kv_cache_mb": kv_mb,
        "blas": blas,
        "allocator": alloc,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()

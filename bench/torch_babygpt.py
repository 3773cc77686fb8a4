"""The PyTorch peer of `gpt train` on nanoGPT's "baby GPT" CPU recipe: Tiny Shakespeare, character level.

The recipe (nanoGPT's README CPU run with config/train_shakespeare_char.py): 4 layers, 4 heads, 128
dims, block 64, batch 12, 2000 steps, AdamW lr 1e-3 with betas (0.9, 0.99), eps 1e-8, weight decay
0.1 on the 2-D tensors (embeddings and weight matrices), warmup 100 then cosine down to 1e-4,
gradient clipping at 1.0, dropout 0, no biases (nanoGPT's default bias=False), tied LM head, GPT-2
initialisation. Batches are nanoGPT's get_batch: each row a window at a uniformly random offset of
the train tokens (`gpt train --shuffle` does the same with its own generator).
The model has gpt.cpp's architecture (pre-LN, tanh GELU, the plain masked-matmul attention that
torch 1.13 offers); the learning-rate schedule is gpt train's (tools/torch_train.py lr_at), which
differs from nanoGPT's get_lr only in the warmup's first steps and where the decay ends.

Timed: the training loop (batch, forward, backward, clip, AdamW, zero_grad), not the evaluation.
At the end: val loss = mean over the first 200 batches of 12 x 64 read sequentially from the val
tokens (gpt train's --eval-batches rule; nanoGPT's eval_iters=200 draws random batches instead).

Data: the shards of `gpt prepare --input data/tinyshakespeare.txt --out DIR --tokenizer char`, or,
without gpt prepare, `--write-shards data/tinyshakespeare.txt DIR` makes them here the way nanoGPT's
data/shakespeare_char/prepare.py splits the text (sorted characters; the first 90% train).

Run it in the tuned environment (shared/README.md), under the lock:
  flock /tmp/cpu.lock env LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp \\
      LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \\
      /usr/bin/python3 bench/torch_babygpt.py --data DIR --threads 2
The LAST line printed is one JSON object: {"bench": "torch-babygpt", "train_s", "ms_per_step"
(train_s / steps), "ms_median" (the median step), "val_loss", "final_loss", ...}.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from torch_train import find_shards, lr_at, read_dataset_info, read_shard, write_shard  # noqa: E402
sys.path.insert(0, os.path.join(ROOT, "bench"))
from torch_gpt_bench import causal_mask, tuned_environment  # noqa: E402


def write_char_shards(text_path, out_dir, val_fraction=0.1):
    """nanoGPT's shakespeare_char preparation, as llm.c shards: vocabulary = the sorted characters
    of the text; train = the first (1 - val_fraction) of the characters, val = the rest."""
    with open(text_path, "rb") as f:
        text = f.read().decode("utf-8")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = np.array([index[c] for c in text], dtype=np.uint16)
    n = int(len(ids) * (1 - val_fraction))
    os.makedirs(out_dir, exist_ok=True)
    write_shard(os.path.join(out_dir, "train_000000.bin"), ids[:n])
    write_shard(os.path.join(out_dir, "val_000000.bin"), ids[n:])
    with open(os.path.join(out_dir, "chars.json"), "w", encoding="utf-8") as f:
        json.dump({"type": "char", "chars": chars}, f, ensure_ascii=False)
    info = {"format": "llmc-shards", "tokenizer": "char", "vocab_size": len(chars), "eot_id": None, "documents": 1,
            "train_tokens": n, "val_tokens": len(ids) - n, "train_shards": 1, "val_shards": 1,
            "val_fraction": val_fraction, "inputs": [os.path.abspath(text_path)]}
    with open(os.path.join(out_dir, "dataset.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(f"wrote {out_dir}: {len(chars)} characters, {n} train and {len(ids) - n} val tokens")


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (torch 1.13's nn.LayerNorm always has one)."""

    def __init__(self, C, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))
        self.bias = nn.Parameter(torch.zeros(C)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class Block(nn.Module):
    def __init__(self, C, H, T, bias):
        super().__init__()
        self.H = H
        self.ln_1 = LayerNorm(C, bias)
        self.c_attn = nn.Linear(C, 3 * C, bias=bias)
        self.attn_proj = nn.Linear(C, C, bias=bias)
        self.ln_2 = LayerNorm(C, bias)
        self.c_fc = nn.Linear(C, 4 * C, bias=bias)
        self.mlp_proj = nn.Linear(4 * C, C, bias=bias)
        self.register_buffer("mask", causal_mask(T, 0), persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.H, C // self.H).transpose(1, 2) for t in (q, k, v))
        att = F.softmax((q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // self.H)) + self.mask[:T, :T], dim=-1)
        x = x + self.attn_proj((att @ v).transpose(1, 2).reshape(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, L, H, C, T, V, bias):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(T, C)
        self.h = nn.ModuleList(Block(C, H, T, bias) for _ in range(L))
        self.ln_f = LayerNorm(C, bias)
        with torch.no_grad():  # GPT-2's initialisation (nanoGPT's _init_weights)
            for name, p in self.named_parameters():
                if name.endswith(".bias"):
                    p.zero_()
                elif "ln_" in name:
                    p.fill_(1.0)
                elif name.endswith("proj.weight"):
                    p.normal_(0.0, 0.02 / math.sqrt(2 * L))
                else:
                    p.normal_(0.0, 0.02)

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe.weight[:T]
        for block in self.h:
            x = block(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)
        return F.cross_entropy(logits.view(B * T, -1), targets.view(B * T))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="directory of char shards (train_*.bin, val_*.bin, dataset.json)")
    ap.add_argument("--write-shards", nargs=2, metavar=("TEXT", "DIR"), help="only write the char shards of TEXT")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--bias", action="store_true", help="biases in the linear layers and LayerNorms")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.99)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--eval-batches", type=int, default=200)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1337)
    a = ap.parse_args()
    if a.write_shards:
        write_char_shards(*a.write_shards)
        return 0
    if not a.data:
        ap.error("--data DIR is required (or --write-shards TEXT DIR)")

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    blas, alloc = tuned_environment()
    if blas != "openblas-openmp" or alloc != "tcmalloc":
        print(f"warning: not the tuned environment (BLAS {blas}, allocator {alloc}); see shared/README.md",
              file=sys.stderr)
    V = int(read_dataset_info(a.data)["vocab_size"])
    train = torch.from_numpy(np.concatenate([read_shard(p) for p in find_shards(a.data, "train")]).astype(np.int64))
    val = [read_shard(p) for p in find_shards(a.data, "val")]
    B, T = a.batch_size, a.seq_len

    model = GPT(a.n_layer, a.n_head, a.n_embd, T, V, a.bias)
    n_params = sum(p.numel() for p in model.parameters())
    params = list(model.parameters())
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(a.beta1, a.beta2), eps=1e-8, foreach=True)
    sched = argparse.Namespace(lr=a.lr, min_lr=a.min_lr, warmup=a.warmup, steps=a.steps, schedule="cosine")

    def get_batch():  # nanoGPT's get_batch
        ix = torch.randint(len(train) - T, (B,))
        return torch.stack([train[i:i + T] for i in ix]), torch.stack([train[i + 1:i + 1 + T] for i in ix])

    print(f"model: {a.n_layer} layers, {a.n_head} heads, {a.n_embd} dims, vocab {V}, {n_params:,} parameters"
          f"{'' if a.bias else ', no biases'}; B={B} T={T}, {a.steps} steps; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, BLAS {blas}, allocator {alloc}", flush=True)
    clock = time.perf_counter
    t_start = clock()
    loss = None
    step_times = []  # each step's own time: its median resists passing load better than the total
    for step in range(1, a.steps + 1):
        t0 = clock()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, sched)
        x, y = get_batch()
        loss = model(x, y)
        loss.backward()
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, a.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step_times.append(clock() - t0)
        if a.log_every and (step % a.log_every == 0 or step == 1):
            elapsed = clock() - t_start
            print(f"step {step:5d} | loss {loss.item():.4f} | {elapsed:.1f} s", flush=True)
    train_s = clock() - t_start

    # validation: the first K batches of B x T, read sequentially (gpt train's rule)
    model.eval()
    losses = []
    shard, pos = 0, 0
    with torch.no_grad():
        for _ in range(a.eval_batches):
            while pos + B * T + 1 > len(val[shard]):
                shard, pos = (shard + 1) % len(val), 0
            w = torch.from_numpy(val[shard][pos:pos + B * T + 1].astype(np.int64))
            pos += B * T
            losses.append(model(w[:-1].view(B, T), w[1:].view(B, T)).item())
    val_loss = sum(losses) / len(losses)
    ms_median = statistics.median(step_times) * 1e3
    print(f"train:  {train_s:.1f} s for {a.steps} steps, {train_s / a.steps * 1e3:.1f} ms/step "
          f"(median step {ms_median:.1f} ms); "
          f"final train loss {loss.item():.4f}; val loss {val_loss:.4f} ({a.eval_batches} batches)")
    print(json.dumps({
        "bench": "torch-babygpt", "steps": a.steps, "batch": B, "seq_len": T, "params": n_params, "vocab": V,
        "bias": a.bias, "train_s": train_s, "ms_per_step": train_s / a.steps * 1e3,
        "ms_median": ms_median,
        "final_loss": loss.item(), "val_loss": val_loss, "val_batches": a.eval_batches,
        "threads": torch.get_num_threads(), "blas": blas, "allocator": alloc, "torch": torch.__version__,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The PyTorch training reference: what `gpt train` computes, step by step, by default in float64.

The model is tools/torch_gpt.py's Reference (plain tensors, the same parameter names and layout as
gpt.cpp). Around it, the training contract of `gpt train`:
  - data: llm.c token shards DATA/train_*.bin and DATA/val_*.bin (a header of 256 int32: magic
    20240520, version 1, token count; then uint16 tokens), read in name order;
  - sequential loader: a cursor starts at token 0 of the first train shard; a micro-batch is the
    B*T+1 tokens at the cursor (inputs: the first B*T as [B, T]; targets: the same window shifted
    by one); the cursor then advances by B*T; when fewer than B*T+1 tokens remain in a shard the
    cursor moves to the start of the next one (after the last, back to the first);
  - one step = K micro-batches; loss = mean of their mean losses; each backward is of loss_i / K;
  - grad_norm = global L2 norm of all gradients, clipped as torch.nn.utils.clip_grad_norm_
    (grad clip 0 = off); then torch.optim.AdamW with weight decay on the 2-D tensors only
    (wte, wpe, the weight matrices; not biases and LayerNorm gains);
  - lr at step s = 1..N (it = s - 1): warmup lr*(it+1)/W for it < W, then with ratio
    (it - W) / max(1, N - W): cosine min + 0.5*(1 + cos(pi*ratio))*(lr - min), linear
    lr - ratio*(lr - min), or constant lr; --min-lr defaults to lr / 10;
  - evaluation (every E steps, and after the last step whenever there are val shards): val_loss =
    mean over the first K val batches of B x T, read with the sequential loader from the start of
    the val shards.
Output, one JSON object a line, as gpt train's OUT/metrics.jsonl:
  {"step", "loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s"} per step (loss before the
  update, lr the rate used), {"step", "val_loss"} at evaluations.

--shuffle draws each row at a random offset (nanoGPT's get_batch) from this script's own generator:
it cannot reproduce gpt train's draws. Dropout is not modelled (it must be 0).

Usage:
  python3 tools/torch_train.py --data DIR --init MODELDIR --steps 10 --batch-size 4 --seq-len 16 \\
      --lr 1e-3 --warmup 3 [--grad-accum K --schedule cosine --grad-clip 1.0 ... --out OUT]
  python3 tools/torch_train.py --data DIR --n-layer 2 --n-head 2 --n-embd 64 --context 64 ...
      (without --init the weights get GPT-2's initialisation from numpy's generator, not gpt init's)
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_gpt  # noqa: E402

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
SHARD_HEADER_INTS = 256

# ----------------------------------------------------------------------------------------------
# shards


def read_shard(path):
    """An llm.c shard -> uint16 numpy array, with its header checked."""
    with open(path, "rb") as f:
        blob = f.read()
    header_bytes = SHARD_HEADER_INTS * 4
    if len(blob) < header_bytes:
        raise ValueError(f"{path}: {len(blob)} bytes, shorter than the {header_bytes}-byte header")
    magic, version, count = (int(v) for v in np.frombuffer(blob, dtype="<i4", count=3))
    if magic != SHARD_MAGIC:
        raise ValueError(f"{path}: magic {magic}, expected {SHARD_MAGIC}")
    if version != SHARD_VERSION:
        raise ValueError(f"{path}: version {version}, expected {SHARD_VERSION}")
    if count < 0 or len(blob) != header_bytes + 2 * count:
        raise ValueError(f"{path}: header says {count} tokens, the file holds {(len(blob) - header_bytes) / 2:g}")
    return np.frombuffer(blob, dtype="<u2", offset=header_bytes).copy()


def write_shard(path, tokens):
    """Write uint16 `tokens` as an llm.c shard (temp file, then rename)."""
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() > 65535):
        raise ValueError(f"{path}: token ids must fit uint16")
    header = np.zeros(SHARD_HEADER_INTS, dtype="<i4")
    header[:3] = (SHARD_MAGIC, SHARD_VERSION, tokens.size)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2").tobytes())
    os.replace(tmp, path)


def find_shards(data_dir, split):
    """DATA/SPLIT_*.bin in name order."""
    names = sorted(n for n in os.listdir(data_dir) if n.startswith(split + "_") and n.endswith(".bin"))
    return [os.path.join(data_dir, n) for n in names]


def read_dataset_info(data_dir):
    """DATA/dataset.json if there is one, else GPT-2 tokens (the contract's default)."""
    path = os.path.join(data_dir, "dataset.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"tokenizer": "gpt2", "vocab_size": 50257}


# ----------------------------------------------------------------------------------------------
# loaders


class SequentialLoader:
    """The contract's loader: consecutive B*T+1 windows, advancing by B*T, shard by shard, wrapping."""

    def __init__(self, shards, B, T):
        self.shards, self.B, self.T = shards, B, T
        if not any(len(s) >= B * T + 1 for s in shards):
            raise ValueError(f"no shard holds the {B * T + 1} tokens of one batch (B={B}, T={T})")
        self.shard, self.pos = 0, 0

    def next(self):
        need = self.B * self.T + 1
        while self.pos + need > len(self.shards[self.shard]):
            self.shard = (self.shard + 1) % len(self.shards)
            self.pos = 0
        w = self.shards[self.shard][self.pos:self.pos + need].astype(np.int64)
        self.pos += self.B * self.T
        return w[:-1].reshape(self.B, self.T), w[1:].reshape(self.B, self.T)


class RandomLoader:
    """nanoGPT's get_batch: each row a T+1 window at a uniformly random offset (shard chosen by size)."""

    def __init__(self, shards, B, T, seed):
        self.shards = [s for s in shards if len(s) >= T + 1]
        if not self.shards:
            raise ValueError(f"no shard holds the {T + 1} tokens of one row")
        self.B, self.T = B, T
        starts = np.array([len(s) - T for s in self.shards], dtype=np.float64)
        self.weights = starts / starts.sum()
        self.rng = np.random.default_rng(seed)

    def next(self):
        x = np.empty((self.B, self.T), dtype=np.int64)
        y = np.empty((self.B, self.T), dtype=np.int64)
        for b in range(self.B):
            s = self.shards[self.rng.choice(len(self.shards), p=self.weights)]
            i = int(self.rng.integers(0, len(s) - self.T))
            x[b], y[b] = s[i:i + self.T], s[i + 1:i + 1 + self.T]
        return x, y


# ----------------------------------------------------------------------------------------------
# schedule and training


def lr_at(step, a):
    """The learning rate of step `step` (1-based) under the contract's schedule."""
    it = step - 1
    if it < a.warmup:
        return a.lr * (it + 1) / a.warmup
    ratio = (it - a.warmup) / max(1, a.steps - a.warmup)
    if a.schedule == "cosine":
        return a.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (a.lr - a.min_lr)
    if a.schedule == "linear":
        return a.lr - ratio * (a.lr - a.min_lr)
    return a.lr


class Trainer:
    """The reference model plus AdamW (torch.optim.AdamW, decay on 2-D tensors) and the step rule."""

    def __init__(self, cfg, params, a):
        self.model = torch_gpt.Reference(cfg, params, dtype=getattr(torch, a.dtype))
        self.a = a
        ps = self.model.params
        decay = [p for n, p in ps.items() if self.decayed(n, p)]
        no_decay = [p for n, p in ps.items() if not self.decayed(n, p)]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": a.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps)

    @staticmethod
    def decayed(name, p):
        """Weight decay on the 2-D tensors: wte, wpe, lm_head and the weight matrices."""
        return p.dim() >= 2

    def mean_loss(self, x, y):
        return torch_gpt.Reference.losses(self.model.logits(x), y)[0]

    def step(self, loader, lr):
        """One optimizer step of K micro-batches. Returns (loss, grad_norm) before the update."""
        K = self.a.grad_accum
        self.opt.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(K):
            x, y = loader.next()
            loss = self.mean_loss(x, y)
            (loss / K).backward()
            total += float(loss)
        ps = list(self.model.params.values())
        if self.a.grad_clip > 0:
            norm = float(torch.nn.utils.clip_grad_norm_(ps, self.a.grad_clip))
        else:
            norm = float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in ps)))
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.step()
        return total / K, norm

    @torch.no_grad()
    def val_loss(self, val_shards):
        loader = SequentialLoader(val_shards, self.a.batch_size, self.a.seq_len)
        losses = [float(self.mean_loss(*loader.next())) for _ in range(self.a.eval_batches)]
        return sum(losses) / len(losses)

    def params_f32(self):
        return {n: p.detach().to(torch.float32).numpy() for n, p in self.model.params.items()}


def build_model(a, info):
    """(Config, params) from --init, or from the shape flags with GPT-2's initialisation."""
    if a.init:
        return torch_gpt.load_model_dir(a.init)
    if a.preset:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
        from torch_gpt_bench import BAND, PRESETS  # the presets of src/model/config.cpp
        L, H, C, ctx, _, ln, banded = PRESETS[a.preset]
        base = dict(n_layer=L, n_head=H, n_embd=C, n_ctx=ctx, ln=ln,
                    attention="alternating_banded" if banded else "dense", band=BAND)
    else:
        base = dict(n_layer=12, n_head=12, n_embd=768, n_ctx=1024)  # gpt train's fallback: gpt2's shape
    base["vocab_size"] = int(info["vocab_size"])  # as gpt train: the data's vocabulary unless --vocab-size
    for key, flag in (("n_layer", a.n_layer), ("n_head", a.n_head), ("n_embd", a.n_embd), ("n_ctx", a.context),
                      ("vocab_size", a.vocab_size)):
        if flag is not None:
            base[key] = flag
    if a.no_bias:
        base["bias"] = False
    if a.untied_head:
        base["tied_head"] = False
    cfg = torch_gpt.Config(**base)
    return cfg, torch_gpt.gpt2_init_parameters(cfg, a.seed)


def train(a, emit, trainer_class=None):
    """Run the whole training; `emit(record)` gets each metrics line. Returns the Trainer.
    `trainer_class` replaces Trainer (tests use it to change one rule)."""
    info = read_dataset_info(a.data)
    train_paths, val_paths = find_shards(a.data, "train"), find_shards(a.data, "val")
    if not train_paths:
        raise ValueError(f"{a.data}: no train_*.bin shards")
    train_shards = [read_shard(p) for p in train_paths]
    val_shards = [read_shard(p) for p in val_paths]
    if a.eval_every and not val_shards:
        raise ValueError(f"{a.data}: --eval-every needs val_*.bin shards")
    cfg, params = build_model(a, info)
    if a.seq_len is None:
        a.seq_len = cfg.n_ctx
    if a.seq_len > cfg.n_ctx:
        raise ValueError(f"--seq-len {a.seq_len} exceeds the model's context {cfg.n_ctx}")
    top = max(int(s.max()) for s in train_shards + val_shards if s.size)
    if top >= cfg.vocab_size:
        raise ValueError(f"the shards hold token id {top}, outside the model's vocabulary of {cfg.vocab_size}")
    loader = (RandomLoader(train_shards, a.batch_size, a.seq_len, a.seed) if a.shuffle
              else SequentialLoader(train_shards, a.batch_size, a.seq_len))
    trainer = (trainer_class or Trainer)(cfg, params, a)
    tokens = a.batch_size * a.seq_len * a.grad_accum
    elapsed = 0.0
    for s in range(1, a.steps + 1):
        lr = lr_at(s, a)
        t0 = time.perf_counter()
        loss, norm = trainer.step(loader, lr)
        dt = time.perf_counter() - t0
        elapsed += dt
        emit({"step": s, "loss": loss, "lr": lr, "grad_norm": norm, "tokens_per_s": tokens / dt,
              "elapsed_s": elapsed})
        if val_shards and ((a.eval_every and s % a.eval_every == 0) or s == a.steps):
            emit({"step": s, "val_loss": trainer.val_loss(val_shards)})
    if a.out:
        torch_gpt.save_model_dir(a.out, cfg, trainer.params_f32())
    return trainer


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="PyTorch reference of `gpt train` (see the module docstring)")
    ap.add_argument("--data", required=True, help="directory of llm.c shards train_*.bin / val_*.bin")
    ap.add_argument("--out", help="write OUT/metrics.jsonl and the trained model (config.json, model.safetensors)")
    ap.add_argument("--init", help="Hugging Face GPT-2 model directory to start from")
    ap.add_argument("--preset", help="model shape (gpt2, ...), GPT-2 initialisation")
    ap.add_argument("--n-layer", type=int)
    ap.add_argument("--n-head", type=int)
    ap.add_argument("--n-embd", type=int)
    ap.add_argument("--context", type=int)
    ap.add_argument("--vocab-size", type=int)
    ap.add_argument("--no-bias", action="store_true")
    ap.add_argument("--untied-head", action="store_true")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("-b", "--batch-size", type=int, default=8)
    ap.add_argument("-t", "--seq-len", type=int, help="default: the model's context")
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--min-lr", type=float, help="default lr / 10")
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--schedule", choices=["cosine", "linear", "constant"], default="cosine")
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.95)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--dropout", type=float, default=0.0, help="must be 0: the reference has no dropout")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shuffle", action="store_true", help="random windows (this script's own generator)")
    ap.add_argument("--eval-every", type=int, default=0, help="0: only after the last step (if there are val shards)")
    ap.add_argument("--eval-batches", type=int, default=20)
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("-q", "--quiet", action="store_true", help="no metrics lines on stdout")
    a = ap.parse_args(argv)
    if a.min_lr is None:
        a.min_lr = a.lr / 10
    if a.dropout != 0:
        ap.error("--dropout must be 0: the reference does not model dropout")
    for name in ("steps", "batch_size", "seq_len", "grad_accum", "threads"):
        if getattr(a, name) is not None and getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.warmup < 0 or a.eval_every < 0 or a.eval_batches < 1:
        ap.error("--warmup and --eval-every must be >= 0, --eval-batches >= 1")
    return a


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    records = []

    def emit(r):
        records.append(r)
        if not a.quiet:
            print(json.dumps(r), flush=True)

    try:
        train(a, emit)
        if a.out:
            tmp = os.path.join(a.out, "metrics.jsonl.tmp")
            with open(tmp, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in records)
            os.replace(tmp, os.path.join(a.out, "metrics.jsonl"))
    except (ValueError, OSError, KeyError) as e:
        print(f"torch_train: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A from-scratch GPT in PyTorch: the float64 reference that gpt.cpp's model is tested against.

It knows the same family of models as gpt.cpp (src/model/config.h):
  - token + learned position embeddings, fused QKV attention, a 4x MLP with tanh-approximated GELU;
  - pre-LN (GPT-2/3: x += attn(ln_1(x)); x += mlp(ln_2(x)); final ln_f) or
    post-LN (GPT-1: x = ln_1(x + attn(x)); x = ln_2(x + mlp(x)); no final LayerNorm);
  - dense causal attention, or alternating banded attention (odd layers, 0-based: query i sees
    key j iff i - band < j <= i);
  - biases everywhere or nowhere (linear layers and LayerNorms alike);
  - an LM head tied to the token embedding, or a separate lm_head.weight.
Linear weights are stored as GPT-2's Conv1D keeps them, [in, out]: y = x @ W + b.

Model directories are the Hugging Face layout: config.json (GPT2Config keys plus gpt.cpp's
"gptcpp_*" extension keys) and model.safetensors. Tensor names are the published GPT-2 ones
(with an untied head, the body's names get save_pretrained's "transformer." prefix);
reading also accepts a "transformer." prefix (what save_pretrained writes) and skips the
attention-mask buffers (h.N.attn.bias / h.N.attn.masked_bias) that some published files carry.
safetensors files are read and written by hand when the `safetensors` package is missing
(Debian's python3 has torch but not safetensors).

Command line (the `logits` command mirrors `gpt logits`, so either can produce the same file):
  python3 tools/torch_gpt.py random --out DIR [--n-layer 2 --n-head 4 --n-embd 32 --context 64
          --vocab-size 101 --ln pre|post --attention dense|banded --band W --no-bias --untied-head
          --seed N --std S]
  python3 tools/torch_gpt.py init --out DIR [the same shape flags, --seed N]   # GPT-2 initialisation
  python3 tools/torch_gpt.py logits --model DIR --ids FILE --out OUT.safetensors
          [--targets FILE] [--grads] [--f64]
  python3 tools/torch_gpt.py check      # validate the reference itself (finite differences etc.)
"""
import argparse
import json
import math
import os
import struct
import sys
from dataclasses import dataclass

import numpy as np
import torch

# ----------------------------------------------------------------------------------------------
# safetensors


_DTYPES = {  # safetensors dtype name -> numpy dtype (BF16 is handled separately)
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
    "BOOL": np.bool_,
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}

try:  # the real package where the environment has it (the venv), the hand-written format elsewhere
    import safetensors.numpy as _st
except ImportError:  # pragma: no cover - depends on the interpreter
    _st = None


def write_safetensors(path, tensors, metadata=None, use_package=None):
    """Write {name: array-like} to `path`. Arrays keep their dtype (float64 stays F64)."""
    arrays = {}
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().numpy()
        arrays[name] = np.ascontiguousarray(t)
    use_package = (_st is not None) if use_package is None else use_package
    tmp = path + ".tmp"
    if use_package:
        _st.save_file(arrays, tmp, metadata=metadata)
    else:
        header = {}
        if metadata:
            header["__metadata__"] = dict(metadata)
        offset = 0
        order = sorted(arrays)
        for name in order:
            a = arrays[name]
            if a.dtype not in _NAMES:
                raise ValueError(f"{name}: dtype {a.dtype} has no safetensors name")
            header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape),
                            "data_offsets": [offset, offset + a.nbytes]}
            offset += a.nbytes
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)  # pad so the data starts 8-byte aligned
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for name in order:
                f.write(arrays[name].astype(arrays[name].dtype.newbyteorder("<"), copy=False).tobytes())
    os.replace(tmp, path)


def read_safetensors(path, with_metadata=False):
    """Read a safetensors file into {name: numpy array} (hand-written parser, any dtype above)."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = memoryview(blob)[8 + n:]
    metadata = header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        lo, hi = info["data_offsets"]
        shape = tuple(info["shape"])
        dt = info["dtype"]
        raw = data[lo:hi]
        if dt == "BF16":
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt in _DTYPES:
            a = np.frombuffer(raw, dtype=np.dtype(_DTYPES[dt]).newbyteorder("<"))
        else:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {dt}")
        if a.size != math.prod(shape):
            raise ValueError(f"{path}: tensor {name}: {a.size} elements for shape {list(shape)}")
        out[name] = a.reshape(shape).copy()
    return (out, metadata) if with_metadata else out


# ----------------------------------------------------------------------------------------------
# configuration and parameter layout


@dataclass
class Config:
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 32
    n_ctx: int = 64
    vocab_size: int = 101
    ln: str = "pre"               # "pre" (GPT-2/3) or "post" (GPT-1)
    attention: str = "dense"      # "dense" or "alternating_banded"
    band: int = 256
    bias: bool = True
    tied_head: bool = True
    ln_eps: float = 1e-5
    dropout: float = 0.0          # recorded in config.json; the reference never drops (eval mode)

    def __post_init__(self):
        if self.ln not in ("pre", "post"):
            raise ValueError(f"ln must be pre or post, not {self.ln!r}")
        if self.attention == "banded":
            self.attention = "alternating_banded"
        if self.attention not in ("dense", "alternating_banded"):
            raise ValueError(f"attention must be dense or alternating_banded, not {self.attention!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not a multiple of n_head {self.n_head}")

    @property
    def head_dim(self):
        return self.n_embd // self.n_head

    def banded(self, layer):
        return self.attention == "alternating_banded" and layer % 2 == 1

    def to_json(self):
        d = {
            "model_type": "gpt2",
            "architectures": ["GPT2LMHeadModel"],
            "n_embd": self.n_embd, "n_head": self.n_head, "n_layer": self.n_layer,
            "n_positions": self.n_ctx, "n_ctx": self.n_ctx, "vocab_size": self.vocab_size,
            "layer_norm_epsilon": self.ln_eps,
            "activation_function": "gelu_new",
            "resid_pdrop": self.dropout, "embd_pdrop": self.dropout, "attn_pdrop": self.dropout,
            "tie_word_embeddings": self.tied_head,
            "gptcpp_ln": self.ln,
            "gptcpp_attention": self.attention,
            "gptcpp_band": self.band,
        }
        if not self.bias:  # absent means true
            d["gptcpp_bias"] = False
        return d

    @staticmethod
    def from_json(d):
        act = d.get("activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(f"activation_function {act!r}: only the tanh GELU is modelled")
        if d.get("n_inner") not in (None, 4 * d["n_embd"]):
            raise ValueError("n_inner other than 4 * n_embd is not modelled")
        return Config(
            n_layer=d["n_layer"], n_head=d["n_head"], n_embd=d["n_embd"],
            n_ctx=d.get("n_positions", d.get("n_ctx")), vocab_size=d["vocab_size"],
            ln=d.get("gptcpp_ln", "pre"), attention=d.get("gptcpp_attention", "dense"),
            band=d.get("gptcpp_band", 256), bias=d.get("gptcpp_bias", True),
            tied_head=d.get("tie_word_embeddings", True),
            ln_eps=d.get("layer_norm_epsilon", 1e-5), dropout=d.get("resid_pdrop", 0.0),
        )


def parameter_shapes(cfg):
    """[(name, shape)] in gpt.cpp's arena order (src/model/params.h)."""
    C, V = cfg.n_embd, cfg.vocab_size
    out = [("wte.weight", (V, C)), ("wpe.weight", (cfg.n_ctx, C))]

    def linear(prefix, n_in, n_out):
        out.append((prefix + ".weight", (n_in, n_out)))
        if cfg.bias:
            out.append((prefix + ".bias", (n_out,)))

    def norm(prefix):
        out.append((prefix + ".weight", (C,)))
        if cfg.bias:
            out.append((prefix + ".bias", (C,)))

    for i in range(cfg.n_layer):
        p = f"h.{i}."
        norm(p + "ln_1")
        linear(p + "attn.c_attn", C, 3 * C)
        linear(p + "attn.c_proj", C, C)
        norm(p + "ln_2")
        linear(p + "mlp.c_fc", C, 4 * C)
        linear(p + "mlp.c_proj", 4 * C, C)
    if cfg.ln == "pre":
        norm("ln_f")
    if not cfg.tied_head:
        out.append(("lm_head.weight", (V, C)))
    return out


def random_parameters(cfg, seed=0, std=0.2, emb_std=0.5):
    """Random weights where every path matters: normal matrices, LayerNorm gains 1 + N(0, 0.3^2),
    biases N(0, 0.2^2). Deterministic in `seed` (numpy's PCG64), float32 values."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in parameter_shapes(cfg):
        if name in ("wte.weight", "wpe.weight", "lm_head.weight"):
            a = rng.normal(0.0, emb_std, shape)
        elif ".ln_" in name or name.startswith("ln_f"):
            a = (1.0 + rng.normal(0.0, 0.3, shape)) if name.endswith(".weight") else rng.normal(0.0, 0.2, shape)
        elif name.endswith(".bias"):
            a = rng.normal(0.0, 0.2, shape)
        else:
            a = rng.normal(0.0, std, shape)
        params[name] = a.astype(np.float32)
    return params


def gpt2_init_parameters(cfg, seed=0):
    """GPT-2's initialisation (what `gpt init` writes): N(0, 0.02) matrices and embeddings, the
    residual projections (attn.c_proj, mlp.c_proj) N(0, 0.02 / sqrt(2 n_layer)), zero biases,
    unit LayerNorm gains. Float32 values."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in parameter_shapes(cfg):
        if name.endswith(".bias"):
            a = np.zeros(shape)
        elif ".ln_" in name or name.startswith("ln_f"):
            a = np.ones(shape)
        elif name.endswith("c_proj.weight"):
            a = rng.normal(0.0, 0.02 / math.sqrt(2 * cfg.n_layer), shape)
        else:
            a = rng.normal(0.0, 0.02, shape)
        params[name] = a.astype(np.float32)
    return params


def gpt2_init_problems(params, n_layer):
    """How `params` departs from gpt2_init_parameters' distribution (empty list: it matches).
    Matrices are checked loosely (std within 20%), biases and gains exactly."""
    problems = []
    for name, a in params.items():
        a = np.asarray(a, dtype=np.float64)
        if name.endswith(".bias"):
            if np.any(a != 0):
                problems.append(f"{name} is not zero")
        elif ".ln_" in name or name.startswith("ln_f"):
            if np.any(a != 1):
                problems.append(f"{name} is not all ones")
        else:
            want = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
            std = float(np.std(a))
            if not (0.8 * want <= std <= 1.2 * want) or abs(float(np.mean(a))) > 0.2 * want:
                problems.append(f"{name}: mean {np.mean(a):.4f} std {std:.4f}, expected N(0, {want:.4f})")
    return problems


# ----------------------------------------------------------------------------------------------
# model directories


def save_model_dir(path, cfg, params, config_extra=None, use_package=None):
    """Write config.json + model.safetensors (F32) the way gpt.cpp writes them."""
    os.makedirs(path, exist_ok=True)
    d = cfg.to_json()
    if config_extra:
        d.update(config_extra)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(d, f, indent=2)
        f.write("\n")
    tensors = {}
    # With an untied head the body's names carry save_pretrained's "transformer." prefix: transformers
    # refuses a file that holds lm_head.weight beside prefix-less body names (gpt.cpp writes the same).
    prefix = "" if cfg.tied_head else "transformer."
    for name, shape in parameter_shapes(cfg):
        a = params[name]
        a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        if tuple(a.shape) != tuple(shape):
            raise ValueError(f"{name}: shape {list(a.shape)}, expected {list(shape)}")
        tensors[name if name == "lm_head.weight" else prefix + name] = a.astype(np.float32)
    write_safetensors(os.path.join(path, "model.safetensors"), tensors, {"format": "pt"}, use_package)


def load_model_dir(path):
    """Read a model directory into (Config, {name: float64 numpy array}) with the published names."""
    with open(os.path.join(path, "config.json")) as f:
        cfg = Config.from_json(json.load(f))
    raw = read_safetensors(os.path.join(path, "model.safetensors"))
    tensors = {}
    for name, a in raw.items():
        if name.startswith("transformer."):
            name = name[len("transformer."):]
        if name.endswith(".attn.bias") or name.endswith(".attn.masked_bias"):
            continue  # causal-mask buffers, not parameters
        tensors[name] = a.astype(np.float64)
    params = {}
    for name, shape in parameter_shapes(cfg):
        if name not in tensors:
            raise ValueError(f"{path}: tensor {name} is missing")
        if tuple(tensors[name].shape) != tuple(shape):
            raise ValueError(f"{path}: {name} has shape {list(tensors[name].shape)}, expected {list(shape)}")
        params[name] = tensors.pop(name)
    if cfg.tied_head:
        tensors.pop("lm_head.weight", None)  # some writers keep the tied copy
    if tensors:
        raise ValueError(f"{path}: unexpected tensors {sorted(tensors)}")
    return cfg, params


# ----------------------------------------------------------------------------------------------
# the model


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def layer_norm(x, weight, bias, eps):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # biased variance, as LayerNorm uses
    y = (x - mean) / torch.sqrt(var + eps) * weight
    return y + bias if bias is not None else y


def attention_mask(T, banded, band):
    """Boolean [T, T]: True where query i may attend to key j."""
    i = torch.arange(T).unsqueeze(1)
    j = torch.arange(T).unsqueeze(0)
    allowed = j <= i
    if banded:
        allowed = allowed & (j > i - band)
    return allowed


class Reference:
    """The GPT as plain tensors: params[name] is a float64 leaf tensor with requires_grad."""

    def __init__(self, cfg, params, dtype=torch.float64):
        self.cfg = cfg
        self.params = {}
        for name, _ in parameter_shapes(cfg):
            a = params[name]
            t = a.detach().clone() if isinstance(a, torch.Tensor) else torch.from_numpy(np.array(a))
            self.params[name] = t.to(dtype).requires_grad_(True)

    def _p(self, name):
        return self.params.get(name)

    def _linear(self, x, prefix):
        y = x @ self.params[prefix + ".weight"]
        b = self._p(prefix + ".bias")
        return y + b if b is not None else y

    def _norm(self, x, prefix):
        return layer_norm(x, self.params[prefix + ".weight"], self._p(prefix + ".bias"), self.cfg.ln_eps)

    def _attention(self, x, layer):
        cfg = self.cfg
        B, T, C = x.shape
        H, D = cfg.n_head, cfg.head_dim
        qkv = self._linear(x, f"h.{layer}.attn.c_attn")
        q, k, v = qkv.split(C, dim=-1)
        q, k, v = (t.reshape(B, T, H, D).transpose(1, 2) for t in (q, k, v))  # [B, H, T, D]
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        mask = attention_mask(T, cfg.banded(layer), cfg.band)
        scores = scores.masked_fill(~mask, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        y = (probs @ v).transpose(1, 2).reshape(B, T, C)
        return self._linear(y, f"h.{layer}.attn.c_proj")

    def _mlp(self, x, layer):
        h = gelu_tanh(self._linear(x, f"h.{layer}.mlp.c_fc"))
        return self._linear(h, f"h.{layer}.mlp.c_proj")

    def logits(self, ids):
        """ids: int64 [B, T] -> logits [B, T, V]."""
        cfg = self.cfg
        ids = torch.as_tensor(ids, dtype=torch.long)
        B, T = ids.shape
        if T > cfg.n_ctx:
            raise ValueError(f"sequence length {T} exceeds the context {cfg.n_ctx}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= cfg.vocab_size):
            raise ValueError(f"token ids must lie in [0, {cfg.vocab_size})")
        x = self.params["wte.weight"][ids] + self.params["wpe.weight"][:T]
        for l in range(cfg.n_layer):
            p = f"h.{l}."
            if cfg.ln == "pre":
                x = x + self._attention(self._norm(x, p + "ln_1"), l)
                x = x + self._mlp(self._norm(x, p + "ln_2"), l)
            else:
                x = self._norm(x + self._attention(x, l), p + "ln_1")
                x = self._norm(x + self._mlp(x, l), p + "ln_2")
        if cfg.ln == "pre":
            x = self._norm(x, "ln_f")
        head = self.params["wte.weight"] if cfg.tied_head else self.params["lm_head.weight"]
        return x @ head.t()

    @staticmethod
    def losses(logits, targets):
        """(mean cross-entropy over targets != -1, per-position losses [B, T] with 0 where unscored)."""
        targets = torch.as_tensor(targets, dtype=torch.long)
        scored = targets != -1
        if not bool(scored.any()):
            raise ValueError("no scored targets (every target is -1)")
        logp = torch.log_softmax(logits, dim=-1)
        picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        position = torch.where(scored, -picked, torch.zeros_like(picked))
        return position.sum() / scored.sum(), position

    def trainable(self):
        """The tensors run() gives gradients of (grad.NAME): every parameter; a subclass may narrow it."""
        return self.params

    def run(self, ids, targets=None, grads=False):
        """Everything `gpt logits` writes, as float64 tensors: logits, loss, position_losses, grad.*"""
        for p in self.trainable().values():
            p.grad = None
        logits = self.logits(ids)
        out = {"logits": logits.detach()}
        if targets is not None:
            loss, position = self.losses(logits, targets)
            out["loss"] = loss.detach().reshape(1)
            out["position_losses"] = position.detach()
            if grads:
                loss.backward()
                for name, p in self.trainable().items():
                    out["grad." + name] = p.grad.detach().clone()
        elif grads:
            raise ValueError("--grads needs --targets")
        return out


# ----------------------------------------------------------------------------------------------
# id files


def read_id_matrix(path):
    """B lines of T whitespace-separated integers (the same T on every line) -> int64 [B, T]."""
    rows = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            rows.append([int(t) for t in line.split()])
            if len(rows[-1]) != len(rows[0]):
                raise ValueError(f"{path}:{lineno}: {len(rows[-1])} ids, the first line has {len(rows[0])}")
    if not rows:
        raise ValueError(f"{path}: no ids")
    return np.array(rows, dtype=np.int64)


def write_id_matrix(path, m):
    with open(path, "w") as f:
        for row in np.asarray(m):
            f.write(" ".join(str(int(v)) for v in row) + "\n")


# ----------------------------------------------------------------------------------------------
# validating the reference itself


def self_validate(verbose=True):
    """Checks of the reference on its own, independent of gpt.cpp and of transformers.
    Returns a list of failure messages (empty when everything holds)."""
    torch.manual_seed(0)
    failures = []

    def say(msg):
        if verbose:
            print(msg, flush=True)

    # 1. the banded mask, by its definition
    m = attention_mask(6, True, 2)
    want = [[1 if (i - 2 < j <= i) else 0 for j in range(6)] for i in range(6)]
    if m.int().tolist() != want:
        failures.append("banded attention mask is wrong")
    if attention_mask(5, False, 2).int().tolist() != [[1 if j <= i else 0 for j in range(5)] for i in range(5)]:
        failures.append("dense causal mask is wrong")

    # 2. GELU against the closed form at a few points, and LayerNorm against torch's
    x = torch.linspace(-4, 4, 17, dtype=torch.float64)
    g = [0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3))) for v in x.tolist()]
    if max(abs(a - b) for a, b in zip(gelu_tanh(x).tolist(), g)) > 1e-14:
        failures.append("gelu_tanh differs from its closed form")
    xs = torch.randn(3, 7, dtype=torch.float64)
    w, b = torch.randn(7, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    if (layer_norm(xs, w, b, 1e-5) - torch.nn.functional.layer_norm(xs, (7,), w, b, 1e-5)).abs().max() > 1e-12:
        failures.append("layer_norm differs from torch.nn.functional.layer_norm")

    variants = {
        "pre-dense": Config(n_layer=2, n_head=2, n_embd=8, n_ctx=8, vocab_size=11),
        "post": Config(n_layer=2, n_head=2, n_embd=8, n_ctx=8, vocab_size=11, ln="post"),
        "banded": Config(n_layer=2, n_head=2, n_embd=8, n_ctx=8, vocab_size=11, attention="alternating_banded", band=2),
        "no-bias-untied": Config(n_layer=2, n_head=2, n_embd=8, n_ctx=8, vocab_size=11, bias=False, tied_head=False),
        "heads3": Config(n_layer=1, n_head=3, n_embd=9, n_ctx=8, vocab_size=7),
    }
    rng = np.random.default_rng(1)
    for vname, cfg in variants.items():
        ref = Reference(cfg, random_parameters(cfg, seed=3, std=0.4))
        B, T = 2, 6
        ids = rng.integers(0, cfg.vocab_size, (B, T))
        targets = rng.integers(0, cfg.vocab_size, (B, T))
        targets[0, 1] = targets[1, 4] = -1
        out = ref.run(ids, targets, grads=True)

        # 3. causality: changing the tokens after position t leaves logits[:, :t+1] unchanged
        for t in range(T - 1):
            ids2 = ids.copy()
            ids2[:, t + 1:] = (ids2[:, t + 1:] + 1) % cfg.vocab_size
            with torch.no_grad():
                l2 = ref.logits(ids2)
            if (l2[:, :t + 1] - out["logits"][:, :t + 1]).abs().max() > 1e-12:
                failures.append(f"{vname}: logits at position {t} depend on later tokens")
                break

        # 4. the banded layer really is banded: a one-layer model with only a banded layer would
        # be needed to see the band from the outputs, so check through the layer directly
        if cfg.attention == "alternating_banded":
            with torch.no_grad():
                h = torch.randn(1, T, cfg.n_embd, dtype=torch.float64, requires_grad=False)
            h.requires_grad_(True)
            y = ref._attention(h, 1)
            for i in range(T):
                gi = torch.autograd.grad(y[0, i].sum(), h, retain_graph=True)[0][0]
                seen = [j for j in range(T) if gi[j].abs().max() > 0]
                if seen != list(range(max(0, i - cfg.band + 1), i + 1)):
                    failures.append(f"{vname}: banded query {i} sees keys {seen}")
                    break

        # 5. autograd gradients against central finite differences in float64: three random
        # directions through all parameters at once, and two single entries of every tensor
        def loss_at(params):
            r = Reference(cfg, params)
            with torch.no_grad():
                return float(Reference.losses(r.logits(ids), targets)[0])

        base = {n: p.detach().clone() for n, p in ref.params.items()}
        grads = {n: out["grad." + n] for n in base}
        eps = 1e-5
        worst = 0.0
        for k in range(3):
            d = {n: torch.randn_like(p) for n, p in base.items()}
            plus = loss_at({n: base[n] + eps * d[n] for n in base})
            minus = loss_at({n: base[n] - eps * d[n] for n in base})
            fd = (plus - minus) / (2 * eps)
            an = sum(float((grads[n] * d[n]).sum()) for n in base)
            err = abs(fd - an) / max(abs(an), 1e-8)
            worst = max(worst, err)
            if err > 1e-6:
                failures.append(f"{vname}: directional derivative {k}: autograd {an:.10g}, finite difference {fd:.10g}")
        for n in base:
            flat = base[n].reshape(-1)
            for idx in rng.choice(flat.numel(), size=min(2, flat.numel()), replace=False):
                e = torch.zeros_like(flat)
                e[int(idx)] = eps
                plus = loss_at({**base, n: (flat + e).reshape(base[n].shape)})
                minus = loss_at({**base, n: (flat - e).reshape(base[n].shape)})
                fd = (plus - minus) / (2 * eps)
                an = float(grads[n].reshape(-1)[int(idx)])
                err = abs(fd - an) / max(abs(an), 1e-3)
                worst = max(worst, err)
                if err > 1e-5:
                    failures.append(f"{vname}: d loss / d {n}[{int(idx)}]: autograd {an:.10g}, finite difference {fd:.10g}")

        # 6. the loss is the mean of the scored per-position losses, and -1 positions are 0
        pl = out["position_losses"]
        if abs(float(pl.sum() / (torch.as_tensor(targets) != -1).sum()) - float(out["loss"])) > 1e-12:
            failures.append(f"{vname}: loss is not the mean of the scored position losses")
        if float(pl[0, 1]) != 0.0 or float(pl[1, 4]) != 0.0:
            failures.append(f"{vname}: an unscored position has a non-zero loss")
        say(f"reference {vname:15s} gradients vs finite differences: worst relative error {worst:.2e}")

    # 7. model directories and safetensors round-trip exactly, by hand and (if present) by package
    import tempfile
    cfg = variants["no-bias-untied"]
    params = random_parameters(cfg, seed=5)
    with tempfile.TemporaryDirectory() as tmp:
        for use_package in ([False, True] if _st is not None else [False]):
            d = os.path.join(tmp, f"m{int(use_package)}")
            save_model_dir(d, cfg, params, use_package=use_package)
            cfg2, params2 = load_model_dir(d)
            if cfg2 != cfg or any(not np.array_equal(params[n], params2[n]) for n in params):
                failures.append(f"model directory round trip (safetensors package: {use_package}) changed the model")
        mixed = {"a": np.arange(6, dtype=np.int64).reshape(2, 3), "b": np.ones((1,), np.float64),
                 "c": np.zeros((0, 4), np.float32)}
        p = os.path.join(tmp, "x.safetensors")
        write_safetensors(p, mixed, {"format": "pt"}, use_package=False)
        back, meta = read_safetensors(p, with_metadata=True)
        if meta != {"format": "pt"} or any(back[k].dtype != v.dtype or not np.array_equal(back[k], v) for k, v in mixed.items()):
            failures.append("hand-written safetensors round trip failed")
    return failures


# ----------------------------------------------------------------------------------------------
# command line


def add_shape_flags(p, dropout=0.0):
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=32)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--vocab-size", type=int, default=101)
    p.add_argument("--ln", choices=["pre", "post"], default="pre")
    p.add_argument("--attention", choices=["dense", "banded"], default="dense")
    p.add_argument("--band", type=int, default=256)
    p.add_argument("--dropout", type=float, default=dropout)
    p.add_argument("--no-bias", action="store_true")
    p.add_argument("--untied-head", action="store_true")


def config_from_args(a):
    return Config(n_layer=a.n_layer, n_head=a.n_head, n_embd=a.n_embd, n_ctx=a.context,
                  vocab_size=a.vocab_size, ln=a.ln, attention=a.attention, band=a.band,
                  bias=not a.no_bias, tied_head=not a.untied_head, dropout=a.dropout)


def main(argv=None):
    ap = argparse.ArgumentParser(description="float64 PyTorch reference GPT (see the module docstring)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("random", help="write a model directory with random weights")
    add_shape_flags(r)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--std", type=float, default=0.2)
    r.add_argument("--out", required=True)
    ini = sub.add_parser("init", help="write a model directory with GPT-2's initialisation")
    add_shape_flags(ini, dropout=0.1)  # like `gpt init`, whose default gpt2 preset has dropout 0.1
    ini.add_argument("--seed", type=int, default=0)
    ini.add_argument("--out", required=True)
    lg = sub.add_parser("logits", help="what `gpt logits` computes, from the float64 reference")
    lg.add_argument("--model", required=True)
    lg.add_argument("--ids", required=True)
    lg.add_argument("--targets")
    lg.add_argument("--grads", action="store_true")
    lg.add_argument("--out", required=True)
    lg.add_argument("--f64", action="store_true", help="write float64 instead of float32")
    sub.add_parser("check", help="validate the reference itself")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        if a.cmd == "random":
            cfg = config_from_args(a)
            save_model_dir(a.out, cfg, random_parameters(cfg, a.seed, a.std))
        elif a.cmd == "init":
            cfg = config_from_args(a)
            save_model_dir(a.out, cfg, gpt2_init_parameters(cfg, a.seed))
        elif a.cmd == "logits":
            if a.grads and not a.targets:
                raise ValueError("--grads needs --targets")
            cfg, params = load_model_dir(a.model)
            ids = read_id_matrix(a.ids)
            targets = read_id_matrix(a.targets) if a.targets else None
            if targets is not None and targets.shape != ids.shape:
                raise ValueError(f"targets have shape {list(targets.shape)}, ids {list(ids.shape)}")
            out = Reference(cfg, params).run(ids, targets, a.grads)
            dt = np.float64 if a.f64 else np.float32
            write_safetensors(a.out, {k: v.numpy().astype(dt) for k, v in out.items()}, {"format": "pt"})
        elif a.cmd == "check":
            failures = self_validate()
            for f in failures:
                print("FAIL:", f)
            print("reference self-check:", "FAILED" if failures else "ok")
            return 1 if failures else 0
    except (ValueError, OSError, KeyError) as e:
        print(f"torch_gpt: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

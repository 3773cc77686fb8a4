"""`gpt quantize` directories against Hugging Face transformers (4.46.3) and numpy.

  bf16   `gpt quantize --type bf16` -> GPT2LMHeadModel.from_pretrained(DIR) loads it with no missing or
         unexpected keys; its matrices are the fp32 originals rounded to bfloat16 (numpy, nearest even),
         everything else unchanged; `gpt logits` on the directory equals transformers' logits.
  q8     `gpt quantize --type q8` -> the int8 weights and half-precision scales, recomputed here from
         the fp32 originals with numpy (scale = half(max|w|/127) per block of 32 inputs of an output
         row, q = round(w/scale)), are equal bit for bit to the file's; the dequantized weights q*scale
         loaded into GPT2LMHeadModel give the logits `gpt logits` computes from the directory.
Tolerance: logits max|diff|/max|ref| <= 1e-4. The model has n_embd 40 (blocks of 32 and 8 inputs).

Usage: .venv/bin/python tests/hf_quantized.py [--gpt build/gpt]
Exit status 0 when everything holds, 1 otherwise.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import torch
from safetensors.numpy import load_file

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)
import transformers  # noqa: E402
from transformers import GPT2LMHeadModel  # noqa: E402

transformers.logging.set_verbosity_error()
TOL = 1e-4
MATRICES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def run(gpt, *args):
    p = subprocess.run([gpt, *args], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"gpt {' '.join(args)} failed: {p.stderr.strip()}")
    return p.stdout


def gpt_logits(gpt, model_dir, ids, work):
    ids_path, out = os.path.join(work, "ids.txt"), os.path.join(work, "logits.safetensors")
    with open(ids_path, "w") as f:
        f.write(" ".join(map(str, ids)) + "\n")
    run(gpt, "logits", "--model", model_dir, "--ids", ids_path, "--out", out)
    return next(v for k, v in load_file(out).items() if "logits" in k).reshape(len(ids), -1)


def hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].double().numpy()


def rel(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


def bf16_round(a):
    """float32 -> bfloat16 (round to nearest even) -> float32, in numpy."""
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32)


def q8_reference(w_rows):
    """The q8 format from the fp32 rows [OUT, IN]: (int8 q [OUT, IN], float16 scales [OUT, nb])."""
    out, n = w_rows.shape
    nb = (n + 31) // 32
    q = np.zeros((out, n), np.int8)
    s = np.zeros((out, nb), np.float16)
    for b in range(nb):
        blk = w_rows[:, 32 * b:32 * b + 32].astype(np.float32)
        d = (np.max(np.abs(blk), axis=1) / np.float32(127)).astype(np.float16)
        d[(d == 0) & (np.max(np.abs(blk), axis=1) > 0)] = np.float16(2.0**-24)
        s[:, b] = d
        df = d.astype(np.float32)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            qb = np.where(df > 0, np.rint(blk / df), 0)
        q[:, 32 * b:32 * b + 32] = np.clip(qb, -127, 127).astype(np.int8)
    return q, s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpt", default="build/gpt")
    a = ap.parse_args()
    failed = []

    def check(label, ok, detail):
        print(f"{'ok  ' if ok else 'FAIL'} {label:44s} {detail}", flush=True)
        if not ok:
            failed.append(label)

    with tempfile.TemporaryDirectory() as work:
        src, bf, q8 = (os.path.join(work, d) for d in ("f32", "bf16", "q8"))
        run(a.gpt, "init", "--n-layer", "2", "--n-head", "4", "--n-embd", "40", "--context", "32",
            "--vocab-size", "50257", "--dropout", "0", "--seed", "7", "--out", src)
        run(a.gpt, "quantize", "--model", src, "--out", bf, "--type", "bf16")
        run(a.gpt, "quantize", "--model", src, "--out", q8, "--type", "q8")
        orig = {k.removeprefix("transformer."): v for k, v in load_file(os.path.join(src, "model.safetensors")).items()}
        ids = [int(i) for i in np.random.default_rng(3).integers(0, 50257, 24)]

        # bf16: an ordinary directory for transformers.
        model, info = GPT2LMHeadModel.from_pretrained(bf, torch_dtype=torch.float32, output_loading_info=True)
        model.eval()
        unexpected = [k for k in info["unexpected_keys"] if not k.endswith((".attn.bias", ".attn.masked_bias"))]
        check("bf16: transformers loads every key", not info["missing_keys"] and not unexpected,
              f"missing {info['missing_keys']}, unexpected {unexpected}")
        sd = {k.removeprefix("transformer."): v.numpy() for k, v in model.state_dict().items()}
        bad = [name for name, w in orig.items()
               if not np.array_equal(sd[name], bf16_round(w) if w.ndim == 2 and name != "wpe.weight" else w)]
        check("bf16: matrices rounded, the rest unchanged", not bad, f"differing: {bad[:3]}")
        r = rel(gpt_logits(a.gpt, bf, ids, work), hf_logits(model, ids))
        check("bf16: gpt logits == transformers", r <= TOL, f"{r:.2e}")

        # q8: the format recomputed here, then the dequantized model in transformers.
        f = load_file(os.path.join(q8, "model.safetensors"))
        deq, mismatched = {}, []
        for name, w in orig.items():
            if w.ndim == 2 and name != "wpe.weight":
                rows = w if name == "wte.weight" else w.T  # Conv1D [in, out] -> [out, in]
                q, s = q8_reference(rows)
                fq, fs = f["transformer." + name], f["transformer." + name + ".scales"]
                if fq.dtype != np.int8 or fs.dtype != np.float16 or not (np.array_equal(fq, q) and np.array_equal(fs, s)):
                    mismatched.append(name)
                dq = fq.astype(np.float32) * np.repeat(fs.astype(np.float32), 32, axis=1)[:, :rows.shape[1]]
                deq[name] = dq if name == "wte.weight" else dq.T
            else:
                deq[name] = w
        check("q8: int8 and scales == numpy's quantization", not mismatched, f"differing: {mismatched[:3]}")
        model = GPT2LMHeadModel.from_pretrained(src, torch_dtype=torch.float32)
        model.eval()
        state = {("transformer." + k): torch.from_numpy(np.ascontiguousarray(v)) for k, v in deq.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        check("q8: dequantized weights fill the model", not [k for k in missing if k != "lm_head.weight"],
              f"missing {missing}")
        model.tie_weights()
        ref = hf_logits(model, ids)
        r = rel(gpt_logits(a.gpt, q8, ids, work), ref)
        check("q8: gpt logits == transformers (dequantized)", r <= TOL, f"{r:.2e}")
        full = hf_logits(GPT2LMHeadModel.from_pretrained(src, torch_dtype=torch.float32).eval(), ids)
        print(f"     q8 against the fp32 model: logits differ by {rel(ref, full):.2e} (relative to max)")

    print(f"{'FAILED: ' + ', '.join(failed) if failed else 'all checks passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

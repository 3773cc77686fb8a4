"""`gpt embed` against Hugging Face transformers' GPT2Model on a TRAINED model.

A random model's hidden states are nearly alike at every position, so a pooling that reads the
wrong rows (padding, an off-by-one, the state before ln_f) can still pass; a trained one's are not.
This test trains a small GPT with the GPT-2 vocabulary on the bundled Tiny Shakespeare for a few
seconds (`gpt prepare`, `gpt train`, as tests/trained_conformance.py does), then:

  1. `gpt embed --json` (mean and last pooling, raw and --normalize) on texts of many lengths, up to
     the whole context, against GPT2Model(...).last_hidden_state (which ends with ln_f, what the LM
     head reads) in float64, mean-pooled over each text's tokens or taken at its last token:
     max |diff| / max |ref| <= 1e-4 per vector;
  2. the same vectors from token-id input (a .jsonl of id arrays) as from the texts, and batching
     (--batch-tokens 1: every input alone) changing nothing beyond 1e-5;
  3. that the check can fail: the mean over one padded position more misses the reference by far
     more than the tolerance, and the two poolings differ on every text (the states are not flat);
  4. an input longer than the context is a one-line error.

Usage: .venv/bin/python tests/hf_embeddings.py [--gpt build/gpt] [--steps 120] [--keep DIR]
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

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)
import transformers  # noqa: E402
from transformers import GPT2Model, GPT2TokenizerFast  # noqa: E402

transformers.logging.set_verbosity_error()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = 1e-4        # gpt.cpp (float32) against transformers in float64, relative to the vector's largest entry
TOL_SAME = 1e-5   # the same model through two paths of gpt.cpp
T = 64            # the trained model's context


def run(cmd, check=True):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {p.returncode}: {(p.stderr or p.stdout).strip()}")
    return p


def embed(gpt, model, path, *flags):
    out = run([gpt, "embed", "--model", model, "--input", path, "--json", *flags]).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    return [r["tokens"] for r in rows], np.array([r["embedding"] for r in rows], dtype=np.float64)


def rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpt", default=os.path.join(ROOT, "build", "gpt"))
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--keep", help="work here and keep the files")
    a = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    ctx = tempfile.TemporaryDirectory(prefix="hf_embeddings_") if not a.keep else None
    work = a.keep or ctx.name
    os.makedirs(work, exist_ok=True)
    failures = []

    def check(label, ok, detail):
        print(f"{'ok  ' if ok else 'FAIL'} {label:58s} {detail}", flush=True)
        if not ok:
            failures.append(label)

    try:
        data, model = os.path.join(work, "data"), os.path.join(work, "model")
        run([a.gpt, "prepare", "--input", os.path.join(ROOT, "data", "tinyshakespeare.txt"), "--out", data])
        run([a.gpt, "train", "--data", data, "--out", model, "--n-layer", "2", "--n-head", "2", "--n-embd", "64",
             "--context", str(T), "-b", "8", "--steps", str(a.steps), "--lr", "3e-3", "--warmup", "10",
             "--seed", "1", "--quiet"])
        print(f"trained {model} ({a.steps} steps, {time.time() - t0:.1f} s)")

        tok = GPT2TokenizerFast.from_pretrained(model)
        hf = GPT2Model.from_pretrained(model).double().eval()
        # Texts of many lengths: a word, lines of the play, and a passage cut to exactly T tokens.
        play = open(os.path.join(ROOT, "data", "tinyshakespeare.txt"), encoding="utf-8").read()
        lines = [ln for ln in play[-20000:].split("\n") if ln.strip()]
        texts = ["Romeo", "First Citizen:", lines[3], lines[10] + " " + lines[11], lines[40], "O", lines[7],
                 "To be, or not to be: that is the question."]
        long_ids = tok(" ".join(lines[100:160]))["input_ids"]
        texts.append(tok.decode(long_ids[:T]))
        ids = [tok(t)["input_ids"] for t in texts]
        assert len(ids[-1]) == T, len(ids[-1])
        text_file = os.path.join(work, "texts.txt")
        with open(text_file, "w", encoding="utf-8") as f:
            f.write("\n".join(texts) + "\n")
        ids_file = os.path.join(work, "ids.jsonl")
        with open(ids_file, "w") as f:
            f.write("".join(json.dumps(x) + "\n" for x in ids))

        # The reference: transformers' last_hidden_state (ln_f applied), float64, each text alone.
        states = []
        with torch.no_grad():
            for x in ids:
                states.append(hf(torch.tensor([x])).last_hidden_state[0].numpy())
        ref = {"mean": np.stack([s.mean(0) for s in states]), "last": np.stack([s[-1] for s in states])}

        worst = {}
        for pooling in ("mean", "last"):
            counts, got = embed(a.gpt, model, text_file, "--pooling", pooling)
            check(f"{pooling}: token counts as transformers' tokenizer", counts == [len(x) for x in ids],
                  f"{counts}")
            errs = [rel(got[i], ref[pooling][i]) for i in range(len(ids))]
            worst[pooling] = max(errs)
            check(f"{pooling}-pooled vs GPT2Model last_hidden_state", max(errs) <= TOL,
                  f"max |diff|/max|ref| {max(errs):.2e} over {len(ids)} texts (1..{T} tokens), "
                  f"max |diff| {np.max(np.abs(got - ref[pooling])):.2e}")
            _, unit = embed(a.gpt, model, text_file, "--pooling", pooling, "--normalize")
            want = ref[pooling] / np.linalg.norm(ref[pooling], axis=1, keepdims=True)
            e = float(np.max(np.abs(unit - want)))
            check(f"{pooling} --normalize vs the reference scaled to unit length", e <= TOL, f"max |diff| {e:.2e}")
            _, from_ids = embed(a.gpt, model, ids_file, "--pooling", pooling)
            e = rel(from_ids, got)
            check(f"{pooling}: token-id input == text input", e <= TOL_SAME, f"{e:.2e}")
            _, alone = embed(a.gpt, model, text_file, "--pooling", pooling, "--batch-tokens", "1")
            e = rel(got, alone)
            check(f"{pooling}: batched == one input at a time", e <= TOL_SAME, f"{e:.2e}")

        # The check can fail: a pooling that reads one wrong row, or the other pooling, misses by far.
        _, got = embed(a.gpt, model, text_file, "--pooling", "mean")
        with torch.no_grad():
            padded = [hf(torch.tensor([x + [0]])).last_hidden_state[0].numpy().mean(0) for x in ids[:-1]]
        off = max(rel(got[i], padded[i]) for i in range(len(padded)))
        check("mean over one padded position more misses", off > 100 * TOL, f"by up to {off:.2e}")
        multi = [i for i in range(len(ids)) if len(ids[i]) > 1]
        other = min(rel(ref["last"][i], ref["mean"][i]) for i in multi)
        check("last vs mean pooling differ (the states are not flat)", other > 100 * TOL, f"by at least {other:.2e}")

        too_long = os.path.join(work, "long.jsonl")
        with open(too_long, "w") as f:
            f.write(json.dumps(long_ids[:T + 1]) + "\n")
        p = run([a.gpt, "embed", "--model", model, "--input", too_long], check=False)
        msg = p.stderr.strip()
        check("an input longer than the context is refused", p.returncode == 1 and msg.count("\n") == 0 and
              f"more than the model's context of {T}" in msg, msg)
        print(f"agreement with transformers: mean {worst['mean']:.2e}, last {worst['last']:.2e} "
              f"(max |diff| / max |ref|, tolerance {TOL:g})")
    except RuntimeError as e:
        failures.append(str(e))
    finally:
        if ctx:
            ctx.cleanup()
    for f in failures:
        print("FAIL", f)
    print(f"hf_embeddings: {'FAILED' if failures else 'ok'} ({time.time() - t0:.1f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

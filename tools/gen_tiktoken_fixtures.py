"""Generate tokenizer conformance fixtures with the REAL tiktoken "gpt2" encoding.

For every tests/data/corpus/*.txt and data/tinyshakespeare.txt, writes tests/data/corpus/NAME.ids:
tiktoken's encode_ordinary ids (so "<|endoftext|>" is encoded as ordinary text), one decimal id
per line with a trailing newline. For special.txt it also writes special.allowed.ids =
encode(text, allowed_special="all"). Each result is checked to decode back to the file's exact
bytes. Deterministic and rerunnable; prints a summary (file, bytes, tokens).

Run: .venv/bin/python tools/gen_tiktoken_fixtures.py
"""
import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tiktoken_gpt2 import ROOT, load_gpt2, read_text  # noqa: E402

CORPUS = os.path.join(ROOT, "tests", "data", "corpus")


def write_ids(path, ids):
    with open(path, "wb") as f:
        f.write("".join(f"{i}\n" for i in ids).encode("ascii"))


def main():
    enc = load_gpt2()
    inputs = sorted(glob.glob(os.path.join(CORPUS, "*.txt")))
    inputs.append(os.path.join(ROOT, "data", "tinyshakespeare.txt"))
    total_bytes = total_tokens = 0
    print(f"{'file':<36} {'bytes':>9} {'tokens':>8}  output")
    for path in inputs:
        raw = open(path, "rb").read()
        text = read_text(path)
        name = os.path.splitext(os.path.basename(path))[0]
        jobs = [(name + ".ids", enc.encode_ordinary(text))]
        if name == "special":
            jobs.append((name + ".allowed.ids", enc.encode(text, allowed_special="all")))
        for out_name, ids in jobs:
            decoded = enc.decode_bytes(ids)
            if decoded != raw:
                sys.exit(f"FAIL: decode({out_name}) does not reproduce {path}")
            write_ids(os.path.join(CORPUS, out_name), ids)
            print(f"{os.path.relpath(path, ROOT):<36} {len(raw):>9} {len(ids):>8}  {out_name}")
        total_bytes += len(raw)
        total_tokens += len(jobs[0][1])
    print(f"{'total (encode_ordinary)':<36} {total_bytes:>9} {total_tokens:>8}")


if __name__ == "__main__":
    main()

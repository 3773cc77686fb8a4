"""Benchmark tiktoken's "gpt2" encoding (the baseline that gpt.cpp's tokenizer is compared to).

Reads FILE as bytes and decodes UTF-8 (invalid bytes are replaced, and that is reported), then
times, best of R runs: (a) encode_ordinary on the whole text, single-threaded; (b)
encode_ordinary_batch over 64 chunks split at whitespace boundaries, with num_threads=1 and
num_threads=N. MB = 1e6 bytes of the UTF-8 input. The LAST line printed is one JSON object:
{"tool", "version", "bytes", "tokens", "mb_per_s_1t", "mb_per_s_batch_1t", "mb_per_s_batch_all", "threads"}.

Usage: .venv/bin/python bench/tiktoken_bench.py --input data/tinyshakespeare.txt [--threads N]
           [--repeat R] [--ids-out FILE]   # FILE: ids of the whole text, one per line
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import tiktoken  # noqa: E402
from tiktoken_gpt2 import load_gpt2  # noqa: E402

N_CHUNKS = 64


def split_chunks(text, n):
    """Split text into about n chunks, each cut just before a whitespace character."""
    chunks, start = [], 0
    for k in range(1, n):
        cut = max(start, len(text) * k // n)
        while cut < len(text) and not text[cut].isspace():
            cut += 1
        if cut > start:
            chunks.append(text[start:cut])
            start = cut
    chunks.append(text[start:])
    assert "".join(chunks) == text
    return chunks


def best_time(fn, repeat):
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ids-out", help="write encode_ordinary ids of the whole file here, one per line")
    args = ap.parse_args()

    raw = open(args.input, "rb").read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        text = raw.decode("utf-8", errors="replace")
        print(f"warning: {args.input} is not valid UTF-8 ({e}); decoded with errors='replace' "
              f"({len(raw)} raw bytes; sizes below count the repaired UTF-8)")
    nbytes = len(text.encode("utf-8"))  # MB are counted on the (possibly repaired) UTF-8 input
    enc = load_gpt2()
    chunks = split_chunks(text, N_CHUNKS)

    t_1t, ids = best_time(lambda: enc.encode_ordinary(text), args.repeat)
    t_b1, batch1 = best_time(lambda: enc.encode_ordinary_batch(chunks, num_threads=1), args.repeat)
    t_bn, batchn = best_time(lambda: enc.encode_ordinary_batch(chunks, num_threads=args.threads), args.repeat)
    batch_tokens = sum(map(len, batch1))
    assert batch1 == batchn

    mb = nbytes / 1e6
    print(f"input: {args.input}  {nbytes} bytes, {len(chunks)} chunks, tiktoken {tiktoken.__version__}")
    print(f"encode_ordinary (1 thread):        {t_1t * 1e3:9.2f} ms  {mb / t_1t:8.2f} MB/s  {len(ids)} tokens")
    print(f"encode_ordinary_batch (1 thread):  {t_b1 * 1e3:9.2f} ms  {mb / t_b1:8.2f} MB/s  {batch_tokens} tokens")
    print(f"encode_ordinary_batch ({args.threads} threads): {t_bn * 1e3:9.2f} ms  {mb / t_bn:8.2f} MB/s  {batch_tokens} tokens")
    if batch_tokens != len(ids):
        print(f"note: chunking changes the token count ({batch_tokens} vs {len(ids)}): a chunk boundary "
              "inside a whitespace run splits it differently")
    if args.ids_out:
        with open(args.ids_out, "wb") as f:
            f.write("".join(f"{i}\n" for i in ids).encode("ascii"))
        print(f"wrote {len(ids)} ids to {args.ids_out}")
    print(json.dumps({"tool": "tiktoken", "version": tiktoken.__version__, "bytes": nbytes, "tokens": len(ids),
                      "mb_per_s_1t": round(mb / t_1t, 3), "mb_per_s_batch_1t": round(mb / t_b1, 3),
                      "mb_per_s_batch_all": round(mb / t_bn, 3), "threads": args.threads}))


if __name__ == "__main__":
    main()

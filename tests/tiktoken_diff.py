"""Randomized differential test: gpt.cpp's GPT-2 tokenizer vs the real tiktoken "gpt2" encoding.

Generates N seeded random strings (0..300 chars) from a mixture of generators (ASCII soup heavy
in whitespace/apostrophes/digits, contractions in random case, code points from many Unicode
blocks and the astral planes, whitespace-run stress, and mixtures of these; and a few single
pre-tokens of up to 40,000 chars for the long-piece merge loops), runs ONE process
`gpt tokenize --batch-jsonl` with one JSON string per stdin line, expects one JSON array of ids
per stdout line, and compares each with tiktoken's encode_ordinary.

Usage: .venv/bin/python tests/tiktoken_diff.py --gpt build/gpt [--cases 3000] [--seed 1]
       .venv/bin/python tests/tiktoken_diff.py --emit [--cases N] [--seed S]   # print the JSONL cases only
Exit status 0 if all cases agree, 1 otherwise.
"""
import argparse
import json
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
from tiktoken_gpt2 import load_gpt2  # noqa: E402

SPACES = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
NOT_SPACES = "\x1c\x1d\x1e\x1f\u200b\u180e\u2060\ufeff\u200c\u200d"  # look-alikes that are not White_Space
ASCII_WEIGHTED = [(" ", 12), ("\n", 3), ("\t", 2), ("\r", 1), ("'", 5), ("0123456789", 6),
                  ("abcdefghijklmnopqrstuvwxyz", 10), ("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 4),
                  ("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~", 5), ("\x00\x01\x07\x0b\x0c\x1b\x1f\x7f", 1)]
SUFFIXES = ["s", "t", "re", "ve", "m", "ll", "d"]
APOSTROPHES = ["'"] * 8 + ["\u2019", "\u02bc", "\uff07", "`"]
# (lo, hi) inclusive code point ranges
BLOCKS = [
    (0x41, 0x7A), (0xC0, 0x24F), (0x250, 0x2FF), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x52F),
    (0x530, 0x58F), (0x591, 0x5F4), (0x600, 0x6FF), (0x700, 0x7FF), (0x900, 0x97F), (0x980, 0xDFF),
    (0xE00, 0xEFF), (0xF00, 0xFFF), (0x1000, 0x109F), (0x10A0, 0x10FF), (0x1100, 0x11FF), (0x1200, 0x139F),
    (0x13A0, 0x13FF), (0x1400, 0x167F), (0x1680, 0x16FF), (0x1780, 0x18AF), (0x1AB0, 0x1AFF),
    (0x1D00, 0x1DFF), (0x1E00, 0x1FFF), (0x2000, 0x206F), (0x2070, 0x209F), (0x20A0, 0x20FF),
    (0x2100, 0x218F), (0x2190, 0x23FF), (0x2460, 0x24FF), (0x2500, 0x27BF), (0x2C00, 0x2E7F),
    (0x2E80, 0x2FDF), (0x3000, 0x30FF), (0x3100, 0x31FF), (0x3200, 0x33FF), (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF), (0xA000, 0xA4CF), (0xA500, 0xABFF), (0xAC00, 0xD7FF), (0xE000, 0xF8FF),
    (0xF900, 0xFAFF), (0xFB00, 0xFDFF), (0xFE00, 0xFE6F), (0xFE70, 0xFFFF), (0x10000, 0x1034F),
    (0x10400, 0x104FF), (0x10900, 0x10FFF), (0x11000, 0x11FFF), (0x12000, 0x1247F), (0x13000, 0x1342F),
    (0x16800, 0x16FFF), (0x1D000, 0x1D24F), (0x1D400, 0x1D7FF), (0x1E900, 0x1E95F), (0x1EE00, 0x1EEFF),
    (0x1F000, 0x1F0FF), (0x1F100, 0x1F2FF), (0x1F300, 0x1F64F), (0x1F680, 0x1F6FF), (0x1F900, 0x1FAFF),
    (0x1FB00, 0x1FBFF), (0x20000, 0x2A6DF), (0x2A700, 0x323AF), (0xE0000, 0xE01EF), (0xF0000, 0x10FFFF),
]
EMOJI = ["\U0001F600", "\U0001F44D\U0001F3FD", "\U0001F468\u200d\U0001F469\u200d\U0001F467", "\U0001F1FA\U0001F1F8",
         "1\ufe0f\u20e3", "\u2764\ufe0f", "\u263a\ufe0e", "\U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F"]


def ascii_soup(r, n):
    pools, weights = zip(*ASCII_WEIGHTED)
    return "".join(r.choice(r.choices(pools, weights)[0]) for _ in range(n))


def rand_case(r, s):
    return "".join(c.upper() if r.random() < 0.5 else c for c in s)


def contractions(r, n):
    out = ""
    while len(out) < n:
        word = rand_case(r, "".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(0, 6))))
        pre = r.choice(["", "", "", " ", "  ", "'", "9", ".", "\n", "\u00a0", "\t"])
        suf = r.choice(SUFFIXES + ["", "x", "st", "ll", "em"])
        post = r.choice(["", "", " ", "s", "'", "  ", "\n", "!", "1", "abc"])
        out += pre + word + r.choice(APOSTROPHES) + rand_case(r, suf) + post
    return out[:n]


def code_point(r):
    lo, hi = r.choice(BLOCKS)
    c = r.randint(lo, hi)
    return chr(c) if not 0xD800 <= c <= 0xDFFF else "?"


def unicode_blocks(r, n):
    return "".join(code_point(r) for _ in range(n))


def any_code_point(r, n):
    return "".join(chr(c) if not 0xD800 <= c <= 0xDFFF else " " for c in (r.randrange(0x110000) for _ in range(n)))


def whitespace_runs(r, n):
    out = ""
    while len(out) < n:
        k = r.choice([0, 1, 1, 2, 3, 4, 8, 17])
        pool = r.choice([" ", " \t", " \n", "\r\n", SPACES, SPACES + NOT_SPACES])
        out += "".join(r.choice(pool) for _ in range(k))
        out += r.choice(["a", "word", "'s", "12", "!", ".", "\u00e9", "\u4e2d", "\U0001F600", "\u0301", "", "\n", "x"])
    return out[:n]


def words_and_emoji(r, n):
    out = ""
    while len(out) < n:
        out += r.choice([r.choice(EMOJI), ascii_soup(r, r.randint(1, 6)), unicode_blocks(r, r.randint(1, 3)),
                         " " * r.randint(1, 3), r.choice(SPACES)])
    return out[:n]


def mixture(r, n):
    out = ""
    while len(out) < n:
        gen = r.choice([ascii_soup, contractions, unicode_blocks, whitespace_runs, words_and_emoji])
        out += gen(r, r.randint(1, 30))
    return out[:n]


def long_run(r, n):
    """One unit repeated into a single pre-token far longer than n: past the 128-byte switch to the
    heap merge loop, and past kLongPiece (16384 bytes) to the bucket-queue one (bpe.cpp)."""
    unit = "".join(r.choice(r.choice(["a", "ab", "abcdefghijklmnopqrstuvwxyz", "Z", "0123456789", "!?-=",
                                      "\u00e9\u4e2d", "\U0001F600"])) for _ in range(r.randint(1, 3)))
    length = r.choice([r.randint(129, 2000), r.randint(16385, 40000)])
    return r.choice(["", " "]) + (unit * (length // len(unit) + 1))[:length]


GENERATORS = [(ascii_soup, 4), (contractions, 3), (unicode_blocks, 3), (any_code_point, 1),
              (whitespace_runs, 3), (words_and_emoji, 2), (mixture, 4), (long_run, 1)]


def make_cases(n, seed):
    r = random.Random(seed)
    gens, weights = zip(*GENERATORS)
    cases = ["", " ", "\n", "'s"][:n]
    while len(cases) < n:
        length = r.choice([r.randint(0, 10), r.randint(0, 40), r.randint(0, 300)])
        cases.append(r.choices(gens, weights)[0](r, length))
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpt", help="path to the gpt binary")
    ap.add_argument("--cases", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--emit", action="store_true", help="only print the cases as JSONL and exit")
    args = ap.parse_args()
    sys.stdout.reconfigure(errors="backslashreplace")  # reprs of odd strings must never crash a report

    cases = make_cases(args.cases, args.seed)
    stdin = "".join(json.dumps(s) + "\n" for s in cases)
    if args.emit:
        sys.stdout.write(stdin)
        return 0
    if not args.gpt:
        ap.error("--gpt is required (or use --emit)")

    proc = subprocess.run([args.gpt, "tokenize", "--batch-jsonl"], input=stdin.encode("utf-8"),
                          capture_output=True, timeout=600)
    if proc.returncode != 0:
        print(f"gpt exited with {proc.returncode}; stderr:\n{proc.stderr.decode('utf-8', 'replace')[-2000:]}")
        return 1
    lines = proc.stdout.decode("utf-8").splitlines()
    if len(lines) != len(cases):
        print(f"expected {len(cases)} output lines, got {len(lines)}")
        return 1

    enc = load_gpt2()
    failed = []
    for i, (s, line) in enumerate(zip(cases, lines)):
        expected = enc.encode_ordinary(s)
        try:
            got = json.loads(line)
        except json.JSONDecodeError:
            got = line
        if got != expected:
            failed.append((i, s, expected, got))
    for i, s, expected, got in failed[:5]:
        print(f"case {i}: {s!r}\n  expected {expected}\n  got      {got}")
        if isinstance(got, list):
            k = next((j for j, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))
            print(f"  first difference at token {k}: expected pieces "
                  f"{[enc.decode_single_token_bytes(t) for t in expected[k:k + 3]]}")
    print(f"{len(cases) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

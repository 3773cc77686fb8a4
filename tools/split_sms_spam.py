#!/usr/bin/env python3
"""Reproducible stratified split of the UCI SMS Spam Collection into train/val/test TSV files.

Usage: python3 tools/split_sms_spam.py [SRC] [OUT_DIR]
  SRC     default ../shared/data/sms_spam/SMSSpamCollection (label TAB text per line)
  OUT_DIR default data/sms_spam

Each class is shuffled with its own seeded generator (random.Random(SEED)) and cut 70/10/20, so the
three files keep the corpus's ham/spam ratio; rows within a file are then shuffled (seeded) so
classes are interleaved. Output: a header row "label<TAB>text", fields quoted RFC 4180 style only
where needed (a double quote, tab or newline in the text), as the record reader expects.
Standard library only; the same input always gives byte-identical files.
"""
import csv
import io
import os
import random
import sys

SEED = 123
FRACTIONS = (0.7, 0.1)  # train, val; the rest is test


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "shared", "data", "sms_spam",
                                                             "SMSSpamCollection")
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", "data", "sms_spam")
    by_label = {}
    with open(src, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line:
                continue
            label, sep, text = line.partition("\t")
            if not sep or label not in ("ham", "spam"):
                sys.exit(f"{src}:{n}: expected 'ham' or 'spam', a tab, then the text")
            by_label.setdefault(label, []).append(text)
    splits = {"train": [], "val": [], "test": []}
    for label in sorted(by_label):
        rows = by_label[label]
        random.Random(f"{SEED}-{label}").shuffle(rows)
        a = round(len(rows) * FRACTIONS[0])
        b = a + round(len(rows) * FRACTIONS[1])
        splits["train"] += [(label, t) for t in rows[:a]]
        splits["val"] += [(label, t) for t in rows[a:b]]
        splits["test"] += [(label, t) for t in rows[b:]]
    os.makedirs(out, exist_ok=True)
    for name, rows in splits.items():
        random.Random(f"{SEED}-{name}").shuffle(rows)
        buf = io.StringIO()
        w = csv.writer(buf, delimiter="\t", quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        w.writerow(["label", "text"])
        w.writerows(rows)
        path = os.path.join(out, f"{name}.tsv")
        with open(path + ".tmp", "w", encoding="utf-8", newline="") as f:
            f.write(buf.getvalue())
        os.replace(path + ".tmp", path)
        spam = sum(1 for r in rows if r[0] == "spam")
        print(f"{os.path.relpath(path)}: {len(rows)} rows ({spam} spam, {len(rows) - spam} ham)")


if __name__ == "__main__":
    main()

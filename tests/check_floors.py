#!/usr/bin/env python3
"""The engine's floors, checked: each directory of src/ includes headers only from its own floor and
the floors below it (docs/architecture.md):

  core < tokenizer < ops (kernels) < backend < model < io (formats) < data < dist < train
       < generate < eval < finetune < serve < bench < cli

Prints each include that reaches up a floor (FILE:LINE: "x/y.h" is on floor X, above Y) and exits 1;
exits 0 when there is none. A source directory that is not in the list is an error too, so a new
one must be given its place.

Usage: check_floors.py [--repo ROOT]
"""
import argparse
import os
import re
import sys

FLOORS = ["core", "tokenizer", "ops", "backend", "model", "io", "data", "dist", "train", "generate", "eval",
          "finetune", "serve", "bench", "cli"]
RANK = {f: i for i, f in enumerate(FLOORS)}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([A-Za-z_]+)/[^"]+"', re.M)


def violations(repo):
    out = []
    src = os.path.join(repo, "src")
    for root, _, files in os.walk(src):
        for name in sorted(files):
            if not re.search(r"\.(h|cpp|inc|cu|cuh|S\.in)$", name):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, repo)
            floor = rel.split(os.sep)[1]
            if floor not in RANK:
                out.append(f"{rel}: src/{floor}/ has no floor (add it to tests/check_floors.py and docs/architecture.md)")
                continue
            text = open(path, encoding="utf-8", errors="replace").read()
            for m in INCLUDE.finditer(text):
                target = m.group(1)
                if target in RANK and RANK[target] > RANK[floor]:
                    line = text.count("\n", 0, m.start()) + 1
                    out.append(f'{rel}:{line}: includes "{target}/..." from floor {target}, above {floor}')
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    a = ap.parse_args()
    bad = violations(a.repo)
    for b in bad:
        print(b)
    if bad:
        print(f"{len(bad)} include(s) reach up a floor")
        return 1
    print(f"floors in order: {' < '.join(FLOORS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

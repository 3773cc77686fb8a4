"""Writes the two small tasks bench/lm_eval/run.sh gives lm-evaluation-harness, from the held-out end
of the bundled Tiny Shakespeare (data/tinyshakespeare.txt; `gpt prepare` holds out its last 10%):

  data/mc.jsonl   HellaSwag's format: {"ctx", "endings", "label"}: which of four lines follows a line
                  (the true next line, or three lines from elsewhere in the held-out text);
  data/gen.jsonl  {"prompt", "target"}: a speaker's name and a colon; the target is the speech's
                  first line (a generate_until task, greedy, until a blank line).

Deterministic (seeded). Usage: python3 bench/lm_eval/make_tasks.py [--examples 40]
"""
import argparse
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=40)
    a = ap.parse_args()
    text = open(os.path.join(ROOT, "data", "tinyshakespeare.txt"), encoding="utf-8").read()
    held = text[int(len(text) * 0.9):]
    lines = [ln for ln in held.split("\n")]
    # (line, next line) pairs inside a speech: both are verse, not a speaker's name or a blank.
    def verse(s):
        return len(s) > 20 and not s.endswith(":")
    pairs = [(lines[i], lines[i + 1]) for i in range(len(lines) - 1) if verse(lines[i]) and verse(lines[i + 1])]
    rng = random.Random(1234)
    rng.shuffle(pairs)
    pool = [p[1] for p in pairs]
    mc = []
    for ctx, nxt in pairs[:a.examples]:
        wrong = []
        while len(wrong) < 3:
            w = rng.choice(pool)
            if w != nxt and w not in wrong:
                wrong.append(w)
        label = rng.randrange(4)
        endings = wrong[:label] + [nxt] + wrong[label:]
        mc.append({"ctx": ctx, "endings": endings, "label": label})
    # Speeches: "NAME:\n" then the first line.
    gen = []
    for i in range(len(lines) - 2):
        if lines[i].endswith(":") and lines[i][:-1].replace(" ", "").isalpha() and verse(lines[i + 1]):
            gen.append({"prompt": lines[i] + "\n", "target": lines[i + 1]})
    rng.shuffle(gen)
    gen = gen[:max(4, a.examples // 4)]
    os.makedirs(os.path.join(HERE, "data"), exist_ok=True)
    for name, rows in (("mc.jsonl", mc), ("gen.jsonl", gen)):
        with open(os.path.join(HERE, "data", name), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"wrote {len(rows)} examples to bench/lm_eval/data/{name}")


if __name__ == "__main__":
    main()

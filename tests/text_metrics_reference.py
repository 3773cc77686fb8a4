"""gpt eval --rouge/--bleu against the reference packages: sacrebleu's corpus_bleu (its defaults: 13a
tokenization, exp smoothing, brevity penalty, 4-grams) and rouge-score's RougeScorer (rouge1, rouge2,
rougeL, use_stemmer=False), both pinned in requirements-dev.txt.

The pairs: 48 written references (news and instructions with numbers, decimals, thousands separators,
dates, currency, percentages, quotes, contractions, hyphens, brackets, HTML entities, a URL, mixed case,
a few non-ASCII letters and spaces) and for each a hypothesis made from it by a seeded edit (words
dropped, swapped, replaced or repeated, case changed, numbers changed, punctuation removed, the text
cut short or extended; a few copied exactly, one empty, a few with no word in common). Checked:
  * the whole corpus: BLEU score to 1e-6 of sacrebleu's, its precisions, brevity penalty and token
    counts; ROUGE P/R/F as the mean of rouge-score's per-pair values to 1e-9; exact match;
  * every pair alone as a one-pair corpus (smoothing and the brevity penalty at sentence scale),
    and 20 seeded random subsets;
  * the same texts read as JSONL (--hyp-field/--ref-field), with newlines and "-\\n" inside texts.
A guard checks the corpus is not degenerate (BLEU and ROUGE well inside (0, 100)) so the comparison
means something.

Usage: .venv/bin/python tests/text_metrics_reference.py --gpt build/gpt
Exit status 0 if every comparison agrees, 1 otherwise.
"""
import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile

import sacrebleu
from rouge_score import rouge_scorer

REFERENCES = [
    "The council voted 7-2 on Monday to open the new library, which will cost $4.5 million.",
    "Shares of Acme Corp. fell 3.2% to $18.40 after the company cut its 2024 forecast.",
    "\"We're not done yet,\" the coach said after the 3-1 win over Leeds United.",
    "Rain is expected across the north-east on Tuesday, with up to 40 mm in places.",
    "The U.S. economy added 256,000 jobs in December, more than economists had forecast.",
    "Scientists in Geneva said the new detector could record 1,000,000 events per second.",
    "Convert 45 kilometres to metres: the answer is 45,000 metres.",
    "Write a haiku about autumn leaves (5-7-5 syllables).",
    "Paris is the capital of France; Rome is the capital of Italy.",
    "The museum reopens on 12 March after a two-year, EUR 30m renovation.",
    "Police said a 34-year-old man had been arrested and would appear in court on Friday.",
    "The recipe calls for 2 cups of flour, 1.5 teaspoons of salt & 3 eggs.",
    "Visit https://example.org/news for the full report, published at 09:30 GMT.",
    "She didn't expect the vote to pass -- but it did, by a single ballot.",
    "The bridge, built in 1889, carries about 12,500 vehicles a day.",
    "NASA's Artemis II mission will send four astronauts around the Moon.",
    "Temperatures fell to -12 C overnight, the coldest night of the year so far.",
    "The company's profit rose to GBP 1.2bn (up 14%) in the third quarter.",
    "Edit the sentence for grammar: He go to the park every day.",
    "The correct sentence is: He goes to the park every day.",
    "Summarize the article in one sentence, in plain English.",
    "The trial, which began on 4 June, is expected to last six weeks.",
    "A spokesperson for the ministry declined to comment on the report's findings.",
    "The team scored twice in the final 10 minutes to win 2-1 & reach the final.",
    "Gold rose 0.8% to $2,034.50 an ounce, its highest level since May.",
    "In 2023, 4.2 million people visited the park -- a record.",
    "The new law takes effect on January 1, 2025, and applies to all firms with 50+ staff.",
    "Q: What is 12 x 12? A: 144.",
    "The café on Rue de Rivoli serves crème brûlée until 11 p.m.",
    "Officials estimate the fire destroyed 1,200 hectares of forest near the town.",
    "The film earned $150m worldwide in its opening weekend, beating expectations.",
    "Researchers found that 3 in 10 adults sleep less than 6 hours a night.",
    "Don't forget: the deadline is 5 p.m. on Friday, 14 April.",
    "The train from London to Edinburgh takes about 4 hours 20 minutes.",
    "Translate 'good morning' into Spanish: buenos días.",
    "The orchestra will perform Beethoven's 9th Symphony on 31 December.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The app's new version (v2.3.1) fixes a bug that drained batteries.",
    "Unemployment fell to 3.9%, the lowest rate since 2001, the agency said.",
    "A magnitude 6.1 earthquake struck off the coast early on Sunday; no tsunami warning was issued.",
    "Fans queued for hours outside the stadium, some since 5 a.m.",
    "The &quot;smart&quot; meters will be installed in 2 million homes by 2026.",
    "List three primary colours: red, yellow and blue.",
    "The hospital treated 48 patients; 7 remain in a serious condition.",
    "Exports to the EU rose by 6.5 per cent in the year to March.",
    "Tickets cost \u00a315 for adults and \u00a37.50 for children under 12.",
    "The mayor said: \"This is a great day for our city.\"",
    "THE END OF THE STORY IS NOT THE END OF THE BOOK.",
]

FILLERS = ["the", "a", "new", "said", "on", "in", "report", "about", "very", "and", "city", "year", "officials"]


def edit(ref, rng, i):
    """A hypothesis made from `ref` by one of several seeded edits."""
    words = ref.split(" ")
    kind = i % 12
    if kind == 0:
        return ref  # exact copy
    if kind == 1:  # drop words
        return " ".join(w for w in words if rng.random() > 0.3)
    if kind == 2:  # swap two neighbours
        j = rng.randrange(max(1, len(words) - 1))
        words[j:j + 2] = words[j:j + 2][::-1]
        return " ".join(words)
    if kind == 3:  # change case
        return " ".join(w.upper() if rng.random() < 0.4 else w.lower() for w in words)
    if kind == 4:  # change numbers
        return re.sub(r"\d", lambda m: str((int(m.group()) + rng.randrange(1, 9)) % 10), ref)
    if kind == 5:  # strip punctuation
        return re.sub(r"[^\w\s]", "", ref)
    if kind == 6:  # cut short
        return " ".join(words[:max(1, len(words) // 3)])
    if kind == 7:  # extend with fillers
        return ref + " " + " ".join(rng.choice(FILLERS) for _ in range(rng.randrange(3, 9)))
    if kind == 8:  # repeat a phrase (a looping model)
        j = rng.randrange(max(1, len(words) - 3))
        return " ".join(words[:j + 3] + words[j:j + 3] * 3)
    if kind == 9:  # replace words
        return " ".join(rng.choice(FILLERS) if rng.random() < 0.35 else w for w in words)
    if kind == 10:  # shuffle
        w = words[:]
        rng.shuffle(w)
        return " ".join(w)
    return " ".join(rng.choice(FILLERS) for _ in range(rng.randrange(2, 8)))  # unrelated


def make_pairs():
    rng = random.Random(18)
    hyps = [edit(r, rng, i) for i, r in enumerate(REFERENCES)]
    hyps[17] = ""  # an empty hypothesis
    hyps[29] = "xyzzy plugh"  # nothing in common
    hyps[40] = "Fans"  # one word
    return hyps, list(REFERENCES)


def run_gpt(gpt, args):
    p = subprocess.run([gpt, "eval", "--bleu", "--json", *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"gpt eval {' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def write_lines(path, texts):
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in texts))


def reference_scores(hyps, refs):
    b = sacrebleu.corpus_bleu(hyps, [refs])
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    sums = {k: [0.0, 0.0, 0.0] for k in ("rouge1", "rouge2", "rougeL")}
    for h, r in zip(hyps, refs):
        s = scorer.score(r, h)  # score(target, prediction)
        for k in sums:
            sums[k][0] += s[k].precision
            sums[k][1] += s[k].recall
            sums[k][2] += s[k].fmeasure
    n = len(hyps)
    rouge = {k: [v / n for v in vals] for k, vals in sums.items()}
    return b, rouge


class Checker:
    def __init__(self):
        self.failures = 0
        self.checks = 0
        self.max_bleu_diff = 0.0
        self.max_rouge_diff = 0.0

    def compare(self, name, ours, hyps, refs):
        b, rouge = reference_scores(hyps, refs)
        problems = []
        d = abs(ours["bleu"]["score"] - b.score)
        self.max_bleu_diff = max(self.max_bleu_diff, d)
        if d > 1e-6:
            problems.append(f"BLEU {ours['bleu']['score']!r} vs sacrebleu {b.score!r}")
        for k in range(4):
            if abs(ours["bleu"]["precisions"][k] - b.precisions[k]) > 1e-6:
                problems.append(f"precision {k + 1}: {ours['bleu']['precisions'][k]} vs {b.precisions[k]}")
        if abs(ours["bleu"]["bp"] - b.bp) > 1e-9:
            problems.append(f"BP {ours['bleu']['bp']} vs {b.bp}")
        if (ours["bleu"]["hyp_len"], ours["bleu"]["ref_len"]) != (b.sys_len, b.ref_len):
            problems.append(f"lengths {ours['bleu']['hyp_len']}/{ours['bleu']['ref_len']} vs {b.sys_len}/{b.ref_len}")
        for k, (p, r, f) in rouge.items():
            for label, a, e in (("p", ours[k]["p"], p), ("r", ours[k]["r"], r), ("f", ours[k]["f"], f)):
                self.max_rouge_diff = max(self.max_rouge_diff, abs(a - e))
                if abs(a - e) > 1e-9:
                    problems.append(f"{k} {label}: {a} vs rouge-score {e}")
        exact = sum(" ".join(h.split()) == " ".join(r.split()) for h, r in zip(hyps, refs)) / len(hyps)
        if abs(ours["exact_match"] - exact) > 1e-12:
            problems.append(f"exact match {ours['exact_match']} vs {exact}")
        if ours["pairs"] != len(hyps):
            problems.append(f"pairs {ours['pairs']} vs {len(hyps)}")
        self.checks += 1
        if problems:
            self.failures += 1
            print(f"FAIL {name}: " + "; ".join(problems[:5]))
        return b, rouge


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpt", required=True)
    args = ap.parse_args()
    hyps, refs = make_pairs()
    c = Checker()
    with tempfile.TemporaryDirectory(prefix="text_metrics_ref_") as tmp:
        h, r = os.path.join(tmp, "h.txt"), os.path.join(tmp, "r.txt")

        # The whole corpus.
        write_lines(h, hyps)
        write_lines(r, refs)
        ours = run_gpt(args.gpt, ["--hyp", h, "--ref", r])
        b, rouge = c.compare("corpus", ours, hyps, refs)
        print(f"corpus of {len(hyps)} pairs: BLEU {ours['bleu']['score']:.6f} (sacrebleu {b.score:.6f}), "
              f"ROUGE-1/2/L F {ours['rouge1']['f']:.6f}/{ours['rouge2']['f']:.6f}/{ours['rougeL']['f']:.6f} "
              f"(rouge-score {rouge['rouge1'][2]:.6f}/{rouge['rouge2'][2]:.6f}/{rouge['rougeL'][2]:.6f})")
        # Not a comparison that cannot fail: the corpus is neither all right nor all wrong.
        if not (10 < b.score < 90 and 0.1 < rouge["rouge2"][2] < 0.9 and 0 < ours["exact_match"] < 0.5):
            print(f"FAIL the corpus is degenerate: BLEU {b.score}, ROUGE-2 {rouge['rouge2'][2]}")
            c.failures += 1

        # Every pair alone: sentence-scale smoothing and brevity penalties.
        smoothed = short = 0
        for i in range(len(hyps)):
            write_lines(h, [hyps[i]])
            write_lines(r, [refs[i]])
            ours = run_gpt(args.gpt, ["--hyp", h, "--ref", r])
            b, _ = c.compare(f"pair {i}: {hyps[i]!r} vs {refs[i]!r}", ours, [hyps[i]], [refs[i]])
            smoothed += any(m == 0 and t > 0 for m, t in zip(b.counts, b.totals)) and any(b.counts)
            short += b.bp < 1
        if smoothed < 5 or short < 5:
            print(f"FAIL too few pairs exercise smoothing ({smoothed}) or the brevity penalty ({short})")
            c.failures += 1

        # Random subsets (sums of counts across pairs).
        rng = random.Random(7)
        for k in range(20):
            idx = sorted(rng.sample(range(len(hyps)), rng.randrange(2, len(hyps))))
            write_lines(h, [hyps[i] for i in idx])
            write_lines(r, [refs[i] for i in idx])
            ours = run_gpt(args.gpt, ["--hyp", h, "--ref", r])
            c.compare(f"subset {k}", ours, [hyps[i] for i in idx], [refs[i] for i in idx])

        # JSONL fields, with line breaks inside the texts (13a joins "-\n", turns other newlines into spaces).
        jh = [t.replace(" ", "\n", 1) if i % 3 == 0 else t for i, t in enumerate(hyps)]
        jh[5] = "state-\nof-the-art " + jh[5]
        jr = [t.replace(", ", ",\n", 1) for t in refs]
        hj, rj = os.path.join(tmp, "h.jsonl"), os.path.join(tmp, "r.jsonl")
        write_lines(hj, [json.dumps({"id": i, "out": t}) for i, t in enumerate(jh)])
        write_lines(rj, [json.dumps({"gold": t, "id": i}) for i, t in enumerate(jr)])
        ours = run_gpt(args.gpt, ["--hyp", hj, "--hyp-field", "out", "--ref", rj, "--ref-field", "gold"])
        c.compare("JSONL with line breaks", ours, jh, jr)

    print(f"{c.checks} comparisons with sacrebleu {sacrebleu.__version__} and rouge-score: "
          f"largest BLEU difference {c.max_bleu_diff:.3g}, largest ROUGE difference {c.max_rouge_diff:.3g}")
    print(f"{c.checks - c.failures} passed, {c.failures} failed")
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Replays the exact requests lm-evaluation-harness 0.4.13 sent to `gpt serve` (recorded by
bench/lm_eval/run.sh --record into tests/data/lm_eval/) without lm-eval, and reads the answers the
way lm-eval's local-completions model reads them (its parse_logprobs and multiple-choice metrics,
restated here), on a model trained for a few seconds:

  - the remote-tokenizer probe lm-eval makes first (/tokenizer_info, /tokenize with "prompt");
  - every log-likelihood request (token-id prompts, echo, logprobs 1, max_tokens 1): the echoed
    tokens are the prompt, the first score is null, and for each example acc (argmax of the summed
    continuation log-probabilities) and acc_norm (argmax of the sums per character) equal
    `gpt eval --choices`'s pred and pred_char, with the sums within 1e-3;
  - every generate_until request: the text equals `gpt generate --greedy` cut at the stop string.

Usage: .venv/bin/python tests/lm_eval_replay.py --gpt build/gpt
"""
import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "lm_eval")
FAILED = []


def check(name, cond, why=""):
    print(f"ok - {name}" if cond else f"not ok - {name}: {why}")
    if not cond:
        FAILED.append(name)


def run(*cmd):
    p = subprocess.run(list(cmd), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr}")
    return p.stdout


def post(port, path, body, method="POST"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request(method, path, body=json.dumps(body) if body is not None else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = json.loads(r.read())
    c.close()
    return r.status, data


def lm_eval_loglikelihood(choice, ctxlen):
    """lm-eval's parse_logprobs for one choice: the continuation's summed log-probabilities (the
    last position is the token generated after the prompt) and whether each was the greedy one."""
    lp = choice["logprobs"]
    logprobs = lp["token_logprobs"][ctxlen:-1]
    is_greedy = all(t == max(top.values()) for t, top in zip(logprobs, lp["top_logprobs"][ctxlen:-1]))
    return sum(logprobs), is_greedy


def argmax(v):
    return max(range(len(v)), key=lambda i: v[i])  # first on ties, as numpy's


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpt", required=True)
    gpt = ap.parse_args().gpt
    requests = [json.loads(line) for line in open(os.path.join(DATA, "requests.jsonl"), encoding="utf-8")]
    mc = [json.loads(line) for line in open(os.path.join(DATA, "mc.jsonl"), encoding="utf-8")]
    gen = [json.loads(line) for line in open(os.path.join(DATA, "gen.jsonl"), encoding="utf-8")]
    work = tempfile.mkdtemp(prefix="gpt_lm_eval_replay_")
    text = os.path.join(work, "text.txt")
    with open(os.path.join(ROOT, "data", "tinyshakespeare.txt"), encoding="utf-8") as f:
        open(text, "w", encoding="utf-8").write(f.read()[:200000])
    model = os.path.join(work, "model")
    t0 = time.time()
    run(gpt, "prepare", "--input", text, "--out", os.path.join(work, "data"))
    # The context lm-eval was run with (max_length 128): the recorded prompts fit it.
    run(gpt, "train", "--data", os.path.join(work, "data"), "--out", model, "--n-layer", "2", "--n-head", "2",
        "--n-embd", "64", "--context", "128", "-b", "4", "--steps", "40", "--lr", "3e-3", "--warmup", "5",
        "--seed", "1", "--quiet")
    print(f"trained {model} in {time.time() - t0:.1f} s")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([gpt, "serve", "--model", model, "--port", "0", "--parallel", "4", "--threads", "1"],
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env)
    port = None
    while port is None:
        line = proc.stderr.readline()
        if not line:
            raise RuntimeError("gpt serve did not start")
        m = re.match(r"listening on http://([\d.]+):(\d+)", line)
        port = int(m.group(2)) if m else None
    try:
        replay(gpt, model, port, requests, mc, gen)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    print(f"{len(FAILED)} failed" + (f": {FAILED}" if FAILED else ""))
    sys.exit(1 if FAILED else 0)


def replay(gpt, model, port, requests, mc, gen):
    # lm-eval's probe for a remote tokenizer, then what it reads of it.
    st, info = post(port, "/tokenizer_info", None, method="GET")
    st2, tk = post(port, "/tokenize", {"prompt": "test", "add_special_tokens": False})
    st3, eos = post(port, "/tokenize", {"prompt": info.get("eos_token") or "", "add_special_tokens": False})
    st4, de = post(port, "/detokenize", {"tokens": tk.get("tokens", [])})
    check("remote tokenizer: /tokenizer_info, /tokenize, /detokenize as lm-eval reads them",
          st == st2 == st3 == st4 == 200 and info["eos_token"] == "<|endoftext|>" and tk["tokens"] == [9288] and
          eos["tokens"] == [50256] and de["prompt"] == "test", f"{info} {tk} {eos} {de}")

    # Which example and choice each log-likelihood prompt is: lm-eval encodes context + " " + ending
    # whole and splits it after the context's tokens.
    def enc(s):
        return post(port, "/tokenize", {"prompt": s, "add_special_tokens": False})[1]["tokens"]
    where = {}
    for d, ex in enumerate(mc):
        ctx = enc(ex["ctx"])
        for c, ending in enumerate(ex["endings"]):
            whole = enc(ex["ctx"] + " " + ending)
            where[tuple(whole)] = (d, c, len(ctx))
    lls = [[None] * len(ex["endings"]) for ex in mc]
    scored = generated = unknown = 0
    bad = []
    gen_by_prompt = {}
    for body in requests:
        st, resp = post(port, "/v1/completions", body)
        if st != 200:
            bad.append(f"status {st}: {str(resp)[:200]}")
            continue
        if body.get("echo"):
            for prompt, choice in zip(body["prompt"], sorted(resp["choices"], key=lambda c: c["index"])):
                key = where.get(tuple(prompt))
                lp = choice["logprobs"]
                if key is None:
                    unknown += 1
                    continue
                if lp["token_logprobs"][0] is not None or len(lp["tokens"]) != len(prompt) + 1:
                    bad.append(f"echo of {len(prompt)} tokens came back as {len(lp['tokens'])}, first "
                               f"{lp['token_logprobs'][0]}")
                d, c, ctxlen = key
                lls[d][c] = lm_eval_loglikelihood(choice, ctxlen)
                scored += 1
        else:
            prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
            for p, choice in zip(prompts, sorted(resp["choices"], key=lambda c: c["index"])):
                gen_by_prompt[p if isinstance(p, str) else json.dumps(p)] = (choice["text"], body)
                generated += 1
    check("every recorded request answered 200, echoes the whole prompt with a null first score",
          not bad, "; ".join(bad[:5]))
    check("every log-likelihood request is one of the task's (context, ending) pairs",
          unknown == 0 and all(x is not None for row in lls for x in row), f"{unknown} unknown prompts")

    preds = os.path.join(os.path.dirname(model), "preds.jsonl")
    out = run(gpt, "eval", "--model", model, "--choices", os.path.join(DATA, "mc.jsonl"), "--predictions", preds,
              "--quiet")
    ours = [json.loads(line) for line in open(preds)]
    same_acc = same_norm = 0
    worst = 0.0
    for ex, row, o in zip(mc, lls, ours):
        sums = [x[0] for x in row]
        acc = argmax(sums) == ex["label"]
        acc_norm = argmax([s / len(e) for s, e in zip(sums, ex["endings"])]) == ex["label"]
        same_acc += acc == (o["pred"] == o["label"])
        same_norm += acc_norm == (o["pred_char"] == o["label"])
        worst = max(worst, max(abs(a - b) for a, b in zip(sums, o["scores_sum"])))
    n = len(mc)
    summary = json.loads(out.strip().splitlines()[-1])
    check(f"acc == gpt eval --choices accuracy, example by example ({same_acc}/{n})", same_acc == n)
    check(f"acc_norm == gpt eval --choices accuracy_char, example by example ({same_norm}/{n})", same_norm == n)
    check(f"log-likelihoods == gpt eval --choices sums (worst {worst:.1e})", worst < 1e-3)
    check("the summary line's accuracy_char is the mean of pred_char == label",
          abs(summary["accuracy_char"] - sum(o["pred_char"] == o["label"] for o in ours) / n) < 1e-12, str(summary))

    same = 0
    for ex in gen:
        text, body = gen_by_prompt.get(json.dumps(enc(ex["prompt"])), (None, None))
        if text is None:
            continue
        want = run(gpt, "generate", "--model", model, "--prompt", ex["prompt"], "-n", str(body["max_tokens"]),
                   "--greedy")[:-1]
        for s in body.get("stop") or []:
            want = want.split(s)[0]
        same += text == want
    check(f"generate_until: the server's text == gpt generate --greedy cut at the stop ({same}/{len(gen)})",
          same == len(gen) and generated == len(gen), f"{generated} generation requests")


if __name__ == "__main__":
    main()

"""The driver of bench/lm_eval/run.sh (read that first). Runs lm-evaluation-harness's
local-completions model against `gpt serve` through a recording proxy, then checks, example by
example:
  gptcpp_mc   lm-eval's acc and acc_norm == `gpt eval --choices`'s accuracy and accuracy_char
              (and its log-likelihoods == the sums gpt eval computes, to 1e-3);
  gptcpp_gen  lm-eval's generations == `gpt generate --greedy` cut at the task's stop string.
Exits 1 on any difference.
"""
import argparse
import glob
import http.client
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def run(*cmd, **kw):
    p = subprocess.run(list(cmd), capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return p.stdout


def train(gpt, work):
    data, model = os.path.join(work, "data"), os.path.join(work, "model")
    run(gpt, "prepare", "--input", os.path.join(ROOT, "data", "tinyshakespeare.txt"), "--out", data)
    run(gpt, "train", "--data", data, "--out", model, "--n-layer", "2", "--n-head", "2", "--n-embd", "64",
        "--context", "128", "-b", "8", "--steps", "150", "--lr", "3e-3", "--warmup", "10", "--seed", "1", "--quiet")
    return model


def start_server(gpt, model):
    proc = subprocess.Popen([gpt, "serve", "--model", model, "--port", "0", "--parallel", "4", "--model-name", "gpt"],
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        m = re.match(r"listening on http://([\d.]+):(\d+)", proc.stderr.readline() or "")
        if m:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, int(m.group(2))
    proc.kill()
    sys.exit("gpt serve did not start")


def recording_proxy(port, log):
    """A proxy in front of the server that keeps every completions request lm-eval sends."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def forward(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else None
            if self.path == "/v1/completions" and body:
                log.append(json.loads(body))
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            c.request(self.command, self.path, body=body,
                      headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
            r = c.getresponse()
            data = r.read()
            self.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = forward

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def samples(out, task):
    files = glob.glob(os.path.join(out, "**", f"samples_{task}_*.jsonl"), recursive=True)
    if not files:
        sys.exit(f"lm-eval wrote no samples for {task} under {out}")
    rows = [json.loads(line) for line in open(files[0], encoding="utf-8")]
    return sorted(rows, key=lambda r: int(r["doc_id"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpt", required=True)
    ap.add_argument("--lm-eval", required=True)
    ap.add_argument("--model")
    ap.add_argument("--record", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="gpt_lmeval_")
    t0 = time.time()
    model = a.model or train(a.gpt, work)
    cfg = json.load(open(os.path.join(model, "config.json")))
    n_ctx = cfg.get("n_positions", cfg.get("n_ctx"))
    print(f"model {model} (n_ctx {n_ctx}){'' if a.model else f', trained in {time.time() - t0:.0f} s'}")
    proc, port = start_server(a.gpt, model)
    log = []
    proxy = recording_proxy(port, log)
    try:
        out = os.path.join(work, "lm_eval_out")
        env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        t1 = time.time()
        lm = subprocess.run(
            [a.lm_eval, "--model", "local-completions", "--model_args",
             f"base_url=http://127.0.0.1:{proxy.server_address[1]}/v1/completions,model=gpt,"
             f"tokenizer_backend=remote,max_length={n_ctx},num_concurrent=1,max_retries=1",
             "--tasks", "gptcpp_mc,gptcpp_gen", "--include_path", os.path.join(HERE, "tasks"),
             "--output_path", out, "--log_samples", "--batch_size", "1"],
            cwd=ROOT, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if lm.returncode != 0:
            sys.exit(f"lm-eval failed:\n{lm.stdout[-3000:]}\n{lm.stderr[-6000:]}")
        print(f"lm-eval ran in {time.time() - t1:.0f} s, {len(log)} completions requests")
        print("\n".join(line for line in lm.stdout.splitlines() if line.startswith("|")))
    finally:
        proxy.shutdown()
        proc.terminate()
        proc.wait(timeout=20)

    failures = []
    # Multiple choice: lm-eval's per-example acc / acc_norm and log-likelihoods vs gpt eval --choices.
    mc_file = os.path.join(HERE, "data", "mc.jsonl")
    preds = os.path.join(work, "preds.jsonl")
    run(a.gpt, "eval", "--model", model, "--choices", mc_file, "--predictions", preds, "--quiet")
    ours = [json.loads(line) for line in open(preds)]
    theirs = samples(out, "gptcpp_mc")
    worst = 0.0
    same_acc = same_norm = 0
    for o, t in zip(ours, theirs):
        lls = [float(r[0]) for r in t["filtered_resps"]]
        worst = max(worst, max(abs(x - y) for x, y in zip(lls, o["scores_sum"])))
        same_acc += float(o["pred"] == o["label"]) == float(t["acc"])
        same_norm += float(o["pred_char"] == o["label"]) == float(t["acc_norm"])
    n = len(theirs)
    if len(ours) != n or same_acc != n or same_norm != n or worst > 1e-3:
        failures.append(f"gptcpp_mc: acc agrees on {same_acc}/{n}, acc_norm on {same_norm}/{n}, "
                        f"log-likelihoods differ by up to {worst:.2e}")
    acc = sum(float(t["acc"]) for t in theirs) / n
    acc_norm = sum(float(t["acc_norm"]) for t in theirs) / n
    print(f"gptcpp_mc:  {n} examples; lm-eval acc {acc:.4f} acc_norm {acc_norm:.4f}; "
          f"gpt eval --choices agrees on acc {same_acc}/{n}, acc_norm (accuracy_char) {same_norm}/{n}; "
          f"log-likelihoods within {worst:.1e}")

    # generate_until: lm-eval's outputs vs gpt generate --greedy, cut at the stop string.
    gen = [json.loads(line) for line in open(os.path.join(HERE, "data", "gen.jsonl"), encoding="utf-8")]
    same = 0
    for t in samples(out, "gptcpp_gen"):
        prompt = gen[int(t["doc_id"])]["prompt"]
        want = run(a.gpt, "generate", "--model", model, "--prompt", prompt, "-n", "24", "--greedy")[:-1]
        want = want.split("\n\n")[0]
        got = t["filtered_resps"][0]
        same += got == want
        if got != want:
            failures.append(f"gptcpp_gen doc {t['doc_id']}: lm-eval got {got!r}, gpt generate {want!r}")
    print(f"gptcpp_gen: {len(gen)} examples; lm-eval's generations == gpt generate --greedy on {same}/{len(gen)}")

    if a.record:
        dst = os.path.join(ROOT, "tests", "data", "lm_eval")
        os.makedirs(dst, exist_ok=True)
        for name in ("mc.jsonl", "gen.jsonl"):
            shutil.copy(os.path.join(HERE, "data", name), os.path.join(dst, name))
        with open(os.path.join(dst, "requests.jsonl"), "w", encoding="utf-8") as f:
            for body in log:
                f.write(json.dumps(body) + "\n")
        print(f"recorded {len(log)} requests to tests/data/lm_eval/requests.jsonl")
    shutil.rmtree(work, ignore_errors=True)
    for f in failures:
        print("FAILED:", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

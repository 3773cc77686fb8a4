"""gpt serve against a client nobody here wrote: the official `openai` Python package (pinned in
requirements-dev.txt), plus raw HTTP for what a client library will not send (malformed bodies,
oversized bodies, a client vanishing mid-stream or mid-request). The greedy text must equal `gpt generate
--greedy`'s, streamed or not.

Usage: .venv/bin/python tests/test_serve_openai.py --gpt build/gpt
Prints "ok - NAME" / "not ok - NAME: WHY" per check and exits 1 if any failed.
"""
import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import openai

KEY = "sk-test-key"
FAILED = []


def check(name, cond, why=""):
    if cond:
        print(f"ok - {name}")
    else:
        print(f"not ok - {name}: {why}")
        FAILED.append(name)


def run(gpt, *args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([gpt, *args], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise RuntimeError(f"gpt {' '.join(args)} failed: {p.stderr}")
    return p.stdout


def start_server(gpt, model, parallel, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([gpt, "serve", "--model", model, "--port", "0", "--parallel", str(parallel),
                             "--api-key", KEY, "--threads", "1", *extra],
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.match(r"listening on http://([\d.]+):(\d+)", line)
        if m:
            return proc, int(m.group(2))
    proc.kill()
    raise RuntimeError("gpt serve did not print 'listening on'")


def raw(port, method, path, body=None, headers=None, auth=True):
    """One HTTP request; returns (status, parsed JSON or text)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    h = dict(headers or {})
    if auth:
        h["Authorization"] = f"Bearer {KEY}"
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        h["Content-Type"] = "application/json"
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read().decode("utf-8", "replace")
    c.close()
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, data


def metrics(port):
    _, text = raw(port, "GET", "/metrics")
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def open_stream(port, prompt, max_tokens=2000, stream=True):
    """A streamed (or not) completion on a raw socket, so the test can drop the connection. It samples
    (temperature 1) but never <|endoftext|>, so it runs until max_tokens or the client leaves."""
    sock = socket.create_connection(("127.0.0.1", port))
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "stream": stream,
                       "logit_bias": {"50256": -100}})
    sock.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {KEY}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
    return sock


def wait_metrics(port, cond, seconds=30):
    deadline = time.time() + seconds
    while True:
        m = metrics(port)
        if cond(m) or time.time() > deadline:
            return m
        time.sleep(0.05)


def is_error(status, body, want_status, param=None):
    ok = status == want_status and isinstance(body, dict) and "error" in body and "message" in body["error"] \
        and "type" in body["error"]
    if ok and param is not None:
        ok = body["error"].get("param") == param
    return ok, f"status {status}, body {str(body)[:300]}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpt", required=True)
    gpt = ap.parse_args().gpt
    tmp = tempfile.mkdtemp(prefix="gpt_serve_")
    model = os.path.join(tmp, "model")
    # Long context so a stream can outlive the client that started it.
    run(gpt, "init", "--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--context", "8192", "--seed", "3",
        "--out", model)
    proc, port = start_server(gpt, model, 4)
    base = f"http://127.0.0.1:{port}/v1"
    client = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0)
    try:
        tests(gpt, model, port, base, client)
        embedding_tests(gpt, model, port, client)
        device_tests(gpt, model, client)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = None
        check("SIGTERM shuts the server down cleanly", rc == 0, f"exit status {rc}")
    print(f"{len(FAILED)} failed" + (f": {FAILED}" if FAILED else ""))
    sys.exit(1 if FAILED else 0)


def gpt_embed(gpt, model, *args):
    """`gpt embed --json`'s vectors."""
    return [json.loads(line)["embedding"] for line in run(gpt, "embed", "--model", model, "--json", *args).splitlines()]


def max_diff(a, b):
    if len(a) != len(b) or any(len(x) != len(y) for x, y in zip(a, b)):
        return float("inf")
    return max((abs(p - q) for x, y in zip(a, b) for p, q in zip(x, y)), default=0.0)


def embedding_tests(gpt, model, port, client):
    """/v1/embeddings through the openai client: its default base64 encoding and "float" both equal
    `gpt embed` (the server's defaults: mean pooling, unit vectors), inputs in order, token ids, the
    pooling extension, and 400s naming the field."""
    texts = ["Hello world", "The quick brown fox jumps over the lazy dog", "a", "<|endoftext|>"]
    args = [x for t in texts for x in ("--text", t)]
    want = gpt_embed(gpt, model, *args, "--normalize")
    before = metrics(port)
    r = client.embeddings.create(model="m", input=texts)  # the client asks for base64 unless told
    got = [d.embedding for d in r.data]
    check("embeddings (client default, base64) == gpt embed --normalize", max_diff(got, want) <= 1e-6,
          f"max |diff| {max_diff(got, want)}")
    check("embeddings response: list, indices in order, usage", r.object == "list" and
          [d.index for d in r.data] == list(range(len(texts))) and all(d.object == "embedding" for d in r.data) and
          r.usage.prompt_tokens == r.usage.total_tokens == 2 + 9 + 1 + 1 and r.model == "m", str(r)[:300])
    f = client.embeddings.create(model="m", input=texts, encoding_format="float")
    check("embeddings encoding_format=float == gpt embed --normalize",
          max_diff([d.embedding for d in f.data], want) <= 1e-6 and len(f.data[0].embedding) == 32,
          f"max |diff| {max_diff([d.embedding for d in f.data], want)}")
    st, body = raw(port, "POST", "/v1/embeddings", {"input": texts, "encoding_format": "base64"})
    check("base64 is a string of little-endian float32", st == 200 and isinstance(body["data"][0]["embedding"], str)
          and len(body["data"][0]["embedding"]) == (32 * 4 + 2) // 3 * 4, str(body)[:200])
    one = client.embeddings.create(model="m", input="The quick brown fox jumps over the lazy dog")
    check("a single string == its place in a batch", max_diff([one.data[0].embedding], [want[1]]) <= 1e-6)

    # Token ids: an array of arrays, and a single array.
    ids = [[15496, 995], [464, 2068], [64]]
    ids_file = os.path.join(tempfile.mkdtemp(prefix="gpt_embed_"), "ids.jsonl")
    with open(ids_file, "w") as fh:
        fh.write("".join(json.dumps(x) + "\n" for x in ids))
    want_ids = gpt_embed(gpt, model, "--input", ids_file, "--normalize")
    t = client.embeddings.create(model="m", input=ids, encoding_format="float")
    check("token-id inputs == gpt embed on the same ids", max_diff([d.embedding for d in t.data], want_ids) <= 1e-6
          and max_diff([want_ids[0]], [want[0]]) <= 1e-6 and t.usage.prompt_tokens == 5,
          f"max |diff| {max_diff([d.embedding for d in t.data], want_ids)}")
    s1 = client.embeddings.create(model="m", input=[15496, 995])
    check("a single list of token ids is one input", len(s1.data) == 1 and
          max_diff([s1.data[0].embedding], [want[0]]) <= 1e-6, str(s1)[:200])
    # gpt.cpp's extension fields: last-token pooling, raw (not normalized) vectors; dimensions = the width.
    want_last = gpt_embed(gpt, model, *args, "--pooling", "last")
    lr = client.embeddings.create(model="m", input=texts, dimensions=32,
                                  extra_body={"pooling": "last", "normalize": False})
    check("pooling=last, normalize=false == gpt embed --pooling last",
          max_diff([d.embedding for d in lr.data], want_last) <= 1e-6 and max_diff(want_last, want) > 1e-3,
          f"max |diff| {max_diff([d.embedding for d in lr.data], want_last)}")

    for name, body, param in [
        ("no input", {"model": "m"}, "input"),
        ("an empty string", {"input": ""}, "input"),
        ("an empty list", {"input": []}, "input"),
        ("an empty string among others", {"input": ["a", ""]}, "input"),
        ("an empty id list", {"input": [[15496], []]}, "input"),
        ("input of the wrong type", {"input": 5}, "input"),
        ("mixed strings and ids", {"input": ["a", 5]}, "input"),
        ("a token id outside the vocabulary", {"input": [[15496], [99999]]}, "input"),
        ("an input longer than the context", {"input": [464] * 8193}, "input"),
        ("dimensions other than the width", {"input": "a", "dimensions": 16}, "dimensions"),
        ("unknown encoding_format", {"input": "a", "encoding_format": "int8"}, "encoding_format"),
        ("unknown pooling", {"input": "a", "pooling": "max"}, "pooling"),
        ("unknown field", {"input": "a", "temperature": 1}, "temperature"),
    ]:
        st, resp = raw(port, "POST", "/v1/embeddings", body)
        check(f"embeddings 400: {name}", *is_error(st, resp, 400, param))
    try:
        client.embeddings.create(model="m", input="a", dimensions=8)
        check("openai client: embeddings BadRequestError", False, "no exception")
    except openai.BadRequestError as e:
        check("openai client: embeddings BadRequestError", e.status_code == 400 and "dimensions" in str(e))
    st, resp = raw(port, "POST", "/v1/embeddings", {"input": "a"}, auth=False)
    check("embeddings without the key -> 401", *is_error(st, resp, 401))
    st, resp = raw(port, "POST", "/v1/embeddings", '{"input": "' + "a" * (2 << 20) + '"}')
    check("embeddings: oversized body -> 413", *is_error(st, resp, 413))
    after = metrics(port)
    n = after["gpt_embedding_requests_total"] - before["gpt_embedding_requests_total"]
    check("/metrics counts embeddings requests", n == 7 and after["gpt_embedding_inputs_total"] >
          before["gpt_embedding_inputs_total"], f"{n} requests counted")


def device_tests(gpt, model, cpu_client):
    """The same server on another backend: --device cpu-staged (device memory, as a GPU holds the
    weights) answers with --device cpu's greedy completions."""
    proc, port = start_server(gpt, model, 2, "--device", "cpu-staged")
    try:
        dev = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
        prompts = ["The quick brown fox", "Once upon a time", "1 2 3 4", "<|endoftext|>"]
        same = []
        for p in prompts:
            a = cpu_client.completions.create(model="m", prompt=p, max_tokens=24, temperature=0)
            b = dev.completions.create(model="m", prompt=p, max_tokens=24, temperature=0)
            same.append((a.choices[0].text == b.choices[0].text, a.choices[0].text, b.choices[0].text))
        check("serve --device cpu-staged: greedy completions == --device cpu's", all(x[0] for x in same),
              "; ".join(f"{x[1]!r} vs {x[2]!r}" for x in same if not x[0]))
        m = dev.models.list()
        check("serve --device cpu-staged: /v1/models answers", len(m.data) == 1, str(m)[:200])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def tests(gpt, model, port, base, client):
    prompt = "The quick brown fox"
    # gpt generate's text: stdout minus the newline it ends the sample with.
    want = run(gpt, "generate", "--model", model, "--prompt", prompt, "-n", "12", "--greedy")[:-1]
    r = client.completions.create(model="m", prompt=prompt, max_tokens=12, temperature=0)
    check("completion (greedy) == gpt generate --greedy", r.choices[0].text == want,
          f"{r.choices[0].text!r} != {want!r}")
    check("completion object, usage", r.object == "text_completion" and r.id.startswith("cmpl-") and
          r.usage.prompt_tokens == 4 and r.usage.completion_tokens == 12 and r.usage.total_tokens == 16 and
          r.choices[0].finish_reason == "length", str(r)[:300])
    streamed = client.completions.create(model="m", prompt=prompt, max_tokens=12, temperature=0, stream=True)
    pieces, finish = [], None
    for ch in streamed:
        pieces.append(ch.choices[0].text)
        finish = ch.choices[0].finish_reason or finish
    check("streamed completion == non-streamed == gpt generate", "".join(pieces) == want and finish == "length",
          f"{''.join(pieces)!r} ({finish})")

    # Chat: the template's prompt; streamed and not streamed agree.
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
    c = client.chat.completions.create(model="m", messages=msgs, max_tokens=10, temperature=0)
    text = c.choices[0].message.content
    check("chat completion", c.object == "chat.completion" and c.choices[0].message.role == "assistant" and
          c.usage.completion_tokens == 10 and text, str(c)[:300])
    chunks = list(client.chat.completions.create(model="m", messages=msgs, max_tokens=10, temperature=0,
                                                 stream=True))
    deltas = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    check("streamed chat == non-streamed chat", deltas == text and chunks[0].choices[0].delta.role == "assistant"
          and chunks[-1].choices[0].finish_reason == "length", f"{deltas!r} != {text!r}")
    cu = list(client.chat.completions.create(model="m", messages=msgs, max_tokens=3, stream=True,
                                             stream_options={"include_usage": True}))
    check("stream_options.include_usage", cu[-1].usage is not None and cu[-1].usage.completion_tokens == 3,
          str(cu[-1])[:200])

    # n, seeds, stop, logprobs.
    a = client.completions.create(model="m", prompt=prompt, max_tokens=8, n=2, seed=5, temperature=1.0)
    b = client.completions.create(model="m", prompt=prompt, max_tokens=8, n=2, seed=5, temperature=1.0)
    check("n=2 gives two choices", len(a.choices) == 2 and {c.index for c in a.choices} == {0, 1})
    check("same seed, same samples", [c.text for c in a.choices] == [c.text for c in b.choices],
          f"{[c.text for c in a.choices]} vs {[c.text for c in b.choices]}")
    check("two samples differ", a.choices[0].text != a.choices[1].text, str([c.text for c in a.choices]))
    want_seeded = run(gpt, "generate", "--model", model, "--prompt", prompt, "-n", "8", "--seed", "5",
                      "--top-k", "0")[:-1]
    check("seeded sample == gpt generate --seed (top-k off)", a.choices[0].text == want_seeded,
          f"{a.choices[0].text!r} != {want_seeded!r}")
    # OpenAI's penalties and logit_bias: the same tokens as gpt generate's flags, and they do change them.
    pen = client.completions.create(model="m", prompt=prompt, max_tokens=12, temperature=0, frequency_penalty=1.5,
                                    presence_penalty=0.5, logit_bias={"13": -100, "11": 5})
    want_pen = run(gpt, "generate", "--model", model, "--prompt", prompt, "-n", "12", "--greedy",
                   "--frequency-penalty", "1.5", "--presence-penalty", "0.5", "--logit-bias", "13:-100,11:5")[:-1]
    check("penalties + logit_bias == gpt generate's flags", pen.choices[0].text == want_pen and want_pen != want,
          f"{pen.choices[0].text!r} vs {want_pen!r} (plain {want!r})")
    stop = want[len(want) // 2:len(want) // 2 + 3]
    s = client.completions.create(model="m", prompt=prompt, max_tokens=12, temperature=0, stop=[stop])
    check("stop string cuts the text", s.choices[0].text == want[:want.find(stop)] and
          s.choices[0].finish_reason == "stop", f"{s.choices[0].text!r}, stop {stop!r}")
    lp = client.completions.create(model="m", prompt=prompt, max_tokens=6, temperature=0, logprobs=3)
    L = lp.choices[0].logprobs
    ok = len(L.tokens) == 6 and len(L.token_logprobs) == 6 and all(len(t) == 3 for t in L.top_logprobs)
    ok = ok and all(abs(max(t.values()) - v) < 1e-5 and t.get(tok) == v
                    for t, tok, v in zip(L.top_logprobs, L.tokens, L.token_logprobs))
    ok = ok and "".join(L.tokens) == lp.choices[0].text and all(v <= 0 for v in L.token_logprobs)
    check("completions logprobs: greedy tokens are the top alternative", ok, str(L)[:300])
    sl = list(client.completions.create(model="m", prompt=prompt, max_tokens=4, temperature=0, logprobs=2,
                                        stream=True))
    ok = all(len(ch.choices[0].logprobs.tokens) == 1 and len(ch.choices[0].logprobs.top_logprobs[0]) == 2
             for ch in sl)
    check("streamed logprobs in the completions format", ok and len(sl) == 4,
          str(sl[0].choices[0].logprobs)[:200] if sl else "no chunks")
    cl = client.chat.completions.create(model="m", messages=msgs, max_tokens=4, temperature=0, logprobs=True,
                                        top_logprobs=2)
    cont = cl.choices[0].logprobs.content
    check("chat logprobs", len(cont) == 4 and all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in cont),
          str(cont)[:300])

    # echo: the prompt comes back scored (first token null), with or without a completion after it;
    # usage counts only what was generated.
    e0 = client.completions.create(model="m", prompt=prompt, max_tokens=0, echo=True, logprobs=2)
    L0 = e0.choices[0].logprobs
    ok = e0.choices[0].text == prompt and "".join(L0.tokens) == prompt and len(L0.tokens) == 4
    ok = ok and L0.token_logprobs[0] is None and L0.top_logprobs[0] is None and L0.text_offset[0] == 0
    ok = ok and all(v < 0 and len(t) == 2 and max(t.values()) >= v for v, t in
                    zip(L0.token_logprobs[1:], L0.top_logprobs[1:]))
    ok = ok and e0.usage.prompt_tokens == 4 and e0.usage.completion_tokens == 0 and \
        e0.choices[0].finish_reason == "length"
    check("echo + max_tokens 0: the prompt scored, nothing generated", ok, str(e0)[:400])
    e1 = client.completions.create(model="m", prompt=prompt, max_tokens=6, echo=True, logprobs=2, temperature=0)
    L1 = e1.choices[0].logprobs
    ok = e1.choices[0].text == prompt + lp.choices[0].text and len(L1.tokens) == 10
    ok = ok and L1.token_logprobs[:4] == L0.token_logprobs and L1.top_logprobs[:4] == L0.top_logprobs
    ok = ok and all(abs(a - b) < 1e-5 for a, b in zip(L1.token_logprobs[4:], L.token_logprobs))
    ok = ok and L1.text_offset == [sum(len(t) for t in L1.tokens[:i]) for i in range(10)]
    ok = ok and e1.usage.completion_tokens == 6 and e1.usage.prompt_tokens == 4
    check("echo + completion: the prompt's scores, then the generated tokens' (greedy == top)", ok, str(L1)[:400])
    ids = raw(port, "POST", "/tokenize", {"content": prompt})[1]["tokens"]
    # What lm-eval's local-completions sends for log-likelihoods: token-id lists, echo, one token.
    st, body = raw(port, "POST", "/v1/completions", {"model": "m", "prompt": [ids, ids[:2]], "temperature": 0,
                                                     "max_tokens": 1, "logprobs": 1, "seed": 1234, "echo": True})
    ok = st == 200 and [c["index"] for c in body["choices"]] == [0, 1]
    ok = ok and body["choices"][0]["logprobs"]["token_logprobs"][:4] == L0.token_logprobs
    ok = ok and len(body["choices"][1]["logprobs"]["tokens"]) == 3
    ok = ok and body["usage"] == {"prompt_tokens": 6, "completion_tokens": 2, "total_tokens": 8}
    check("echo over token-id prompts, batched (lm-eval's request)", ok, str(body)[:400])
    es = list(client.completions.create(model="m", prompt=prompt, max_tokens=2, echo=True, stream=True,
                                        stream_options={"include_usage": True}, temperature=0))
    text = "".join(c.choices[0].text for c in es if c.choices)
    check("streamed echo", text == prompt + want[:len(text) - len(prompt)] and text.startswith(prompt) and
          es[-1].usage.completion_tokens == 2, f"{text!r} {es[-1].usage}")
    # (A prompt that fills the whole context is scored in serve_attacks, on a model of 256 positions:
    # here 8192 positions of a 50257-word vocabulary would take seconds on one thread.)
    st, resp = raw(port, "POST", "/v1/completions", {"prompt": [11] * 8193, "echo": True, "logprobs": 1,
                                                     "max_tokens": 0})
    check("400: echo of a prompt beyond the context", *is_error(st, resp, 400, "prompt"))

    # Auth.
    try:
        openai.OpenAI(base_url=base, api_key="wrong", max_retries=0).completions.create(model="m", prompt="x")
        check("wrong API key -> AuthenticationError", False, "no exception")
    except openai.AuthenticationError as e:
        check("wrong API key -> AuthenticationError", e.status_code == 401)
    st, body = raw(port, "POST", "/v1/completions", {"prompt": "x"}, auth=False)
    check("no Authorization header -> 401 error object", *is_error(st, body, 401))
    st, body = raw(port, "GET", "/health", auth=False)
    check("/health needs no key", st == 200 and body == {"status": "ok"}, str(body))

    # Bad requests: 4xx with an OpenAI error object, and the server lives on.
    for name, body, param in [
        ("malformed JSON", '{"prompt": "x", ', None),
        ("not an object", "[1, 2]", None),
        ("prompt of the wrong type", {"prompt": 5}, "prompt"),
        ("max_tokens of the wrong type", {"prompt": "x", "max_tokens": "5"}, "max_tokens"),
        ("max_tokens beyond the context", {"prompt": "x", "max_tokens": 9000}, "max_tokens"),
        ("echo of the wrong type", {"prompt": "x", "echo": "yes"}, "echo"),
        ("negative max_tokens", {"prompt": "x", "max_tokens": -1}, "max_tokens"),
        ("temperature out of range", {"prompt": "x", "temperature": -1}, "temperature"),
        ("unknown field", {"prompt": "x", "best_frobs": 2}, "best_frobs"),
        ("more choices than slots", {"prompt": "x", "n": 5}, "n"),
        ("token id outside the vocabulary", {"prompt": [99999]}, "prompt"),
    ]:
        st, resp = raw(port, "POST", "/v1/completions", body)
        check(f"400: {name}", *is_error(st, resp, 400, param))
    st, resp = raw(port, "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": 3}]})
    check("400: chat content of the wrong type", *is_error(st, resp, 400, "messages.content"))
    try:
        client.completions.create(model="m", prompt="x", max_tokens=100000)
        check("openai client: BadRequestError", False, "no exception")
    except openai.BadRequestError as e:
        check("openai client: BadRequestError", e.status_code == 400 and "context" in str(e))
    st, resp = raw(port, "POST", "/v1/completions", '{"prompt": "' + "a" * (2 << 20) + '"}')
    check("oversized body -> 413 error object", *is_error(st, resp, 413))
    st, resp = raw(port, "GET", "/no/such/route")
    check("unknown route -> 404 error object", *is_error(st, resp, 404))

    # Other endpoints.
    st, m = raw(port, "GET", "/v1/models")
    check("/v1/models", st == 200 and m["object"] == "list" and m["data"][0]["object"] == "model", str(m))
    st, t = raw(port, "POST", "/tokenize", {"content": "Hello world"})
    check("/tokenize (GPT-2 ids)", st == 200 and t["tokens"] == [15496, 995], str(t))
    st, d = raw(port, "POST", "/detokenize", {"tokens": [15496, 995]})
    check("/detokenize", st == 200 and d["content"] == "Hello world", str(d))

    # Concurrency beyond the slots: 6 streams through 4 slots all finish, with the same greedy text.
    before = metrics(port)
    outs = [None] * 6

    def worker(i):
        try:
            ch = client.completions.create(model="m", prompt=prompt, max_tokens=12, temperature=0, stream=True)
            outs[i] = "".join(c.choices[0].text for c in ch)
        except Exception as e:  # noqa: BLE001 - reported below
            outs[i] = f"error: {e}"
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    after = metrics(port)
    check("6 concurrent streams through 4 slots: all greedy == gpt generate", all(o == want for o in outs),
          str(outs))
    check("/metrics counts them", after["gpt_requests_total"] - before["gpt_requests_total"] == 6 and
          after["gpt_slots_busy"] == 0 and after["gpt_requests_active"] == 0, str(after))

    # A client that vanishes mid-stream frees its slot at once.
    before = metrics(port)
    sock = open_stream(port, prompt)
    got = b""
    while b"data: " not in got:
        more = sock.recv(4096)
        if not more:
            raise RuntimeError(f"the server closed the stream before its first token: {got[:300]!r}")
        got += more
    busy = metrics(port)["gpt_slots_busy"]
    sock.close()
    freed = False
    deadline = time.time() + 30
    while time.time() < deadline:
        m = metrics(port)
        if m["gpt_slots_busy"] == 0 and m["gpt_requests_cancelled_total"] == before["gpt_requests_cancelled_total"] + 1:
            freed = True
            break
        time.sleep(0.05)
    gen = m["gpt_generated_tokens_total"] - before["gpt_generated_tokens_total"]
    check("disconnect mid-stream frees the slot (cancelled, not run to the end)", busy == 1 and freed and gen < 2000,
          f"busy while streaming {busy}, after {m}")

    # A client that vanishes while its request waits in the queue leaves the queue.
    before = metrics(port)
    holders = [open_stream(port, prompt, 8000) for _ in range(4)]  # seconds of work: they outlive the checks
    m = wait_metrics(port, lambda m: m["gpt_slots_busy"] == 4)
    queued = open_stream(port, prompt, 5)
    m = wait_metrics(port, lambda m: m["gpt_requests_queued"] == 1)
    queued_seen = m["gpt_requests_queued"] == 1
    queued.close()
    m = wait_metrics(port, lambda m: m["gpt_requests_queued"] == 0)
    left_queue = m["gpt_requests_queued"] == 0 and m["gpt_slots_busy"] == 4
    for h in holders:
        h.close()
    m = wait_metrics(port, lambda m: m["gpt_slots_busy"] == 0 and m["gpt_requests_active"] == 0)
    cancelled = m["gpt_requests_cancelled_total"] - before["gpt_requests_cancelled_total"]
    check("disconnect while queued leaves the queue; all 5 cancelled",
          queued_seen and left_queue and m["gpt_slots_busy"] == 0 and cancelled == 5,
          f"queued seen {queued_seen}, left the queue with 4 busy {left_queue}, {cancelled} cancelled; {m}")

    # A client that vanishes while its non-streamed request runs frees its slot too.
    before = metrics(port)
    sock = open_stream(port, prompt, 8000, stream=False)
    m = wait_metrics(port, lambda m: m["gpt_slots_busy"] == 1)
    busy = m["gpt_slots_busy"] == 1
    sock.close()
    m = wait_metrics(port, lambda m: m["gpt_slots_busy"] == 0 and m["gpt_requests_active"] == 0)
    gen = m["gpt_generated_tokens_total"] - before["gpt_generated_tokens_total"]
    check("disconnect during a non-streamed request frees the slot (cancelled, not run to the end)",
          busy and m["gpt_slots_busy"] == 0 and gen < 8000 and
          m["gpt_requests_cancelled_total"] - before["gpt_requests_cancelled_total"] == 1, f"{gen} tokens, {m}")


if __name__ == "__main__":
    main()

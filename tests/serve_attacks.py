"""Adversarial clients against `gpt serve` (issue 22, "Correct under pressure"): oversized request
lines and headers, endless bodies, slow clients, request smuggling basics, pipelining, the port,
keys, DNS rebinding and cross-origin posts, and a model that cannot chat.

Two modes:
  python3 tests/serve_attacks.py --gpt build/gpt
      The checks (ctest `serve_attacks`): each attack at a size that still proves the bound, with
      the server's timeouts shortened; "ok - NAME" / "not ok - NAME: WHY" lines, exit status 1 if
      any failed. Needs only the Python standard library.
  python3 tests/serve_attacks.py --gpt build/gpt --measure [--only NAME,...]
      The full-size attacks of the review (256 MiB and 1 GiB lines, 1.7 M headers, 64 MiB bodies,
      80 slow clients, ...) against a server with default settings, one fresh server each; prints
      one line per attack (outcome, the server's peak RSS growth, times) and a JSON list at the end.
      Run it under `flock /tmp/cpu.lock`; it makes no assumption about the server's behaviour, so it
      measures any build (docs/serving.md, "Limits and hardening", has the numbers).

The server's memory is read from /proc/PID/status: VmHWM (peak resident set) after the attack minus
VmHWM before it.
"""
import argparse
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

MiB = 1 << 20
FAILED = []


def check(name, cond, why=""):
    if cond:
        print(f"ok - {name}", flush=True)
    else:
        print(f"not ok - {name}: {why}", flush=True)
        FAILED.append(name)


# ---- the server -----------------------------------------------------------------------------------


class Server:
    """`gpt serve --port 0 ARGS`, ready once it prints "listening on http://HOST:PORT"."""

    def __init__(self, gpt, model, *args, env=None, preexec=None):
        e = dict(os.environ, OMP_NUM_THREADS="1")
        # Peak RSS is the measure here. Under AddressSanitizer its quarantine keeps freed blocks
        # resident, which would count memory the server gave back: no quarantine for these servers
        # (a no-op for a build without it).
        e["ASAN_OPTIONS"] = (e.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0").lstrip(":")
        e.update(env or {})
        self.proc = subprocess.Popen([gpt, "serve", "--model", model, "--threads", "1", *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     text=True, env=e, preexec_fn=preexec)
        self.lines, self.port = [], None
        ready = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.lines.append(line.rstrip("\n"))
                m = re.search(r"listening on http://\S+:(\d+)", line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        ready.wait(60)

    def alive(self):
        return self.proc.poll() is None

    def status(self, key):
        """A /proc/PID/status field in KiB (VmRSS, VmHWM), or None once the process is gone."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def stop(self, timeout=20):
        """SIGTERM; returns (exit status or None if it had to be killed, seconds to exit)."""
        t = time.time()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None, time.time() - t
        return self.proc.returncode, time.time() - t


def cli(gpt, *args, env=None, timeout=60, preexec=None):
    e = dict(os.environ, OMP_NUM_THREADS="1")
    e.update(env or {})
    return subprocess.run([gpt, *args], capture_output=True, text=True, env=e, stdin=subprocess.DEVNULL,
                          timeout=timeout, preexec_fn=preexec)


# ---- raw HTTP -------------------------------------------------------------------------------------


class Reader:
    """Reads responses off a socket, keeping what arrives past one response for the next."""

    def __init__(self, s):
        self.s, self.buf = s, b""

    def more(self):
        got = self.s.recv(65536)
        self.buf += got
        return bool(got)


_readers = {}


def connect(port, source="127.0.0.1", timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    _readers[id(s)] = Reader(s)
    return s


def read_response(s, timeout=5):
    """One response: (status or None, headers dict, body bytes); status None when the server closed
    the connection or sent nothing before the timeout (then headers["_why"] says which)."""
    rd = _readers[id(s)]
    s.settimeout(timeout)
    try:
        while b"\r\n\r\n" not in rd.buf:
            if not rd.more():
                return None, {"_why": "closed"}, rd.buf
    except socket.timeout:
        return None, {"_why": "no answer"}, rd.buf
    except OSError as e:
        return None, {"_why": f"reset ({e.__class__.__name__})"}, rd.buf
    head, _, rd.buf = rd.buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    if not m:
        return None, {"_why": f"not HTTP: {lines[0][:60]!r}"}, head
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    body = b""
    try:
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(rd.buf) < n and rd.more():
                pass
            body, rd.buf = rd.buf[:n], rd.buf[n:]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while b"0\r\n\r\n" not in rd.buf and rd.more():
                pass
            body, _, rd.buf = rd.buf.partition(b"0\r\n\r\n")
        else:
            while rd.more():
                pass
            body, rd.buf = rd.buf, b""
    except (socket.timeout, OSError):
        body, rd.buf = rd.buf, b""
    return int(m.group(1)), headers, body


def request(port, method, path, body=b"", headers=None, source="127.0.0.1", timeout=10):
    """One request on a fresh connection: (status or None, headers, body)."""
    h = {"Host": f"127.0.0.1:{port}"}
    h.update(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode()
    if body or method == "POST":
        h.setdefault("Content-Length", str(len(body)))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items() if v is not None)
    try:
        s = connect(port, source, timeout)
        s.sendall(head.encode() + b"\r\n" + body)
        r = read_response(s, timeout)
        s.close()
        return r
    except OSError as e:
        return None, {"_why": f"{e.__class__.__name__}: {e}"}, b""


def error_message(body):
    try:
        return json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return None


def outcome(r):
    status, headers, _ = r
    return str(status) if status is not None else headers.get("_why", "?")


def flood(port, head, total, block=MiB, source="127.0.0.2", chunked=False, end=b""):
    """Sends `head`, then `total` bytes of 'a' (as chunks of `block` bytes when chunked), then `end`;
    stops when the server stops taking them. Returns (bytes of filler sent, how it ended, response)."""
    s = connect(port, source, timeout=5)
    sent, how = 0, "all sent"
    piece = b"a" * block
    if chunked:
        piece = f"{block:x}\r\n".encode() + piece + b"\r\n"
    try:
        s.sendall(head)
        while sent < total:
            s.sendall(piece)
            sent += block
        s.sendall(end)
    except socket.timeout:
        how = "server stopped reading"
    except OSError as e:
        how = f"server closed ({e.__class__.__name__})"
    r = read_response(s, timeout=10)
    s.close()
    return sent, how, r


# ---- the attacks ----------------------------------------------------------------------------------
# Each returns a dict: outcome (status or how the connection ended) and whatever it measured.


def a_request_line(srv, size):
    sent, how, r = flood(srv.port, b"GET /", size)
    return {"outcome": outcome(r), "sent_mib": round(sent / MiB, 1), "how": how}


def a_header_line(srv, size):
    sent, how, r = flood(srv.port, f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nX-Long: ".encode(), size)
    return {"outcome": outcome(r), "sent_mib": round(sent / MiB, 1), "how": how}


def a_many_headers(srv, count):
    line = b"a: b\r\n"
    per = MiB // len(line)
    s = connect(srv.port, "127.0.0.2", timeout=5)
    n, how = 0, "all sent"
    try:
        s.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n".encode())
        while n < count:
            k = min(per, count - n)
            s.sendall(line * k)
            n += k
        s.sendall(b"\r\n")
    except socket.timeout:
        how = "server stopped reading"
    except OSError as e:
        how = f"server closed ({e.__class__.__name__})"
    r = read_response(s, timeout=10)
    s.close()
    return {"outcome": outcome(r), "headers_sent": n, "how": how}


def a_chunked_body(srv, size):
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    sent, how, r = flood(srv.port, head, size, block=64 << 10, chunked=True, end=b"0\r\n\r\n")
    return {"outcome": outcome(r), "sent_mib": round(sent / MiB, 1), "how": how}


def a_close_body(srv, size):
    """A body with neither Content-Length nor Transfer-Encoding, ended by closing the write side."""
    s = connect(srv.port, "127.0.0.2", timeout=5)
    sent, how = 0, "all sent"
    try:
        s.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
                  "Content-Type: application/json\r\nConnection: close\r\n\r\n".encode())
        piece = b"a" * MiB
        while sent < size:
            s.sendall(piece)
            sent += MiB
        s.shutdown(socket.SHUT_WR)
    except socket.timeout:
        how = "server stopped reading"
    except OSError as e:
        how = f"server closed ({e.__class__.__name__})"
    r = read_response(s, timeout=10)
    s.close()
    return {"outcome": outcome(r), "sent_mib": round(sent / MiB, 1), "how": how}


def a_duplicate_content_length(srv):
    """Two conflicting Content-Length headers, then what a smuggler would hide behind the shorter."""
    body = b'{"prompt": "x", "max_tokens": 1}'
    hidden = f"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode()
    s = connect(srv.port)
    s.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(body)}\r\nContent-Length: {len(body) + len(hidden)}\r\n\r\n".encode() +
              body + hidden)
    first = read_response(s, 5)
    second = read_response(s, 2)
    s.close()
    return {"outcome": outcome(first), "then": outcome(second)}


def a_te_and_cl(srv):
    body = b'{"prompt": "x", "max_tokens": 1}'
    s = connect(srv.port)
    s.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n\r\n".encode() +
              f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
    first = read_response(s, 5)
    second = read_response(s, 2)
    s.close()
    return {"outcome": outcome(first), "then": outcome(second)}


def a_pipelined(srv):
    s = connect(srv.port)
    one = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode()
    t = time.time()
    s.sendall(one + one)
    first = read_response(s, 10)
    second = read_response(s, 10)
    took = time.time() - t
    s.close()
    return {"outcome": f"{outcome(first)}, {outcome(second)}", "seconds": round(took, 2)}


def health_time(port, source="127.0.0.1", timeout=30):
    t = time.time()
    r = request(port, "GET", "/health", source=source, timeout=timeout)
    return r[0], time.time() - t


def a_slow_loris(srv, conns, interval, watch, source="127.0.0.2"):
    """`conns` connections each sending one byte of a request head every `interval` seconds; /health
    is timed from another address while they run; after `watch` seconds, how many the server
    closed; then SIGTERM with them still open."""
    socks = []
    for _ in range(conns):
        try:
            socks.append(connect(srv.port, source, timeout=5))
        except OSError:
            break
    head = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nX-Slow: " + "a" * 100000
    closed = [False] * len(socks)
    stop = threading.Event()

    def drip():
        i = 0
        while not stop.is_set() and i < len(head):
            for k, s in enumerate(socks):
                if closed[k]:
                    continue
                try:
                    s.sendall(head[i].encode())
                except OSError:
                    closed[k] = True
            i += 1
            stop.wait(interval)

    def reap():  # notices connections the server closed (a recv of 0 bytes, or a reset)
        while not stop.is_set():
            for k, s in enumerate(socks):
                if closed[k]:
                    continue
                try:
                    got = s.recv(4096, socket.MSG_DONTWAIT)
                    if got == b"" or got.startswith(b"HTTP/"):
                        closed[k] = True
                except BlockingIOError:
                    pass
                except OSError:
                    closed[k] = True
            stop.wait(0.1)

    th = [threading.Thread(target=drip, daemon=True), threading.Thread(target=reap, daemon=True)]
    for t in th:
        t.start()
    time.sleep(min(2.0, watch / 2))
    hs = [health_time(srv.port)]
    t0 = time.time()
    while time.time() - t0 < watch:
        time.sleep(max(0.5, watch / 4))
        hs.append(health_time(srv.port))
    done = sum(closed)
    still = len(socks) - done
    hwm = srv.status("VmHWM")
    rc, took = srv.stop(timeout=30)
    stop.set()
    for s in socks:
        s.close()
    return {"outcome": f"{done}/{len(socks)} closed by the server after {watch + min(2.0, watch / 2):.0f} s",
            "opened": len(socks), "still_open": still,
            "health": [None if st is None else round(t, 2) for st, t in hs],
            "health_max_s": round(max(t for _, t in hs), 2), "health_ok": all(st == 200 for st, _ in hs),
            "sigterm_exit": rc, "sigterm_s": round(took, 2), "_hwm": hwm}


def a_port_in_use(gpt, model, port):
    t = time.time()
    try:
        p = cli(gpt, "serve", "--model", model, "--port", str(port), "--threads", "1", timeout=10)
        rc, err = p.returncode, p.stderr.strip().splitlines()
    except subprocess.TimeoutExpired:
        rc, err = "running after 10 s", ["(it started)"]
    return {"outcome": f"exit {rc}", "message": err[-1] if err else "", "seconds": round(time.time() - t, 2)}


def a_empty_key(gpt, model):
    try:
        p = cli(gpt, "serve", "--model", model, "--port", "0", "--api-key", "", timeout=5)
        return {"outcome": f"exit {p.returncode}", "message": (p.stderr.strip().splitlines() or [""])[-1]}
    except subprocess.TimeoutExpired:
        return {"outcome": "started (answers without a key)", "message": ""}


def limit_address_space():
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (4000000 * 1024, 4000000 * 1024))


def a_parallel_under_ulimit(gpt, model, parallel=300):
    """`ulimit -v 4000000; gpt serve --parallel 300`: fails at once with a message, or works."""
    srv = Server(gpt, model, "--port", "0", "--parallel", str(parallel), preexec=limit_address_space)
    if srv.port is None:
        srv.proc.wait(10)
        return {"outcome": f"exit {srv.proc.returncode} before listening",
                "message": srv.lines[-1] if srv.lines else ""}
    st, took = health_time(srv.port, timeout=10)
    rc, stop_s = srv.stop(timeout=10)
    return {"outcome": f"listening; /health {st}", "health_s": round(took, 2), "sigterm_exit": rc,
            "sigterm_s": round(stop_s, 2)}


def a_form_body(srv, size=10000):
    """curl -d: a JSON body (padded with spaces to `size` bytes) sent with the form content type."""
    body = json.dumps({"prompt": "x", "max_tokens": 1}).encode()
    body += b" " * max(0, size - len(body))
    r = request(srv.port, "POST", "/v1/completions", body,
                {"Content-Type": "application/x-www-form-urlencoded"})
    return {"outcome": outcome(r), "message": error_message(r[2]) or ""}


def a_host(srv, host):
    r = request(srv.port, "GET", "/v1/models", headers={"Host": host})
    return {"outcome": outcome(r), "message": error_message(r[2]) or ""}


def a_cross_origin(srv, content_type="text/plain", origin="http://evil.example"):
    r = request(srv.port, "POST", "/v1/completions", b'{"prompt": "x", "max_tokens": 1}',
                {"Content-Type": content_type, "Origin": origin})
    return {"outcome": outcome(r), "message": error_message(r[2]) or ""}


def a_char_chat(srv):
    r = request(srv.port, "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
    return {"outcome": outcome(r), "message": error_message(r[2]) or r[2][:200].decode("utf-8", "replace")}


# ---- models ----------------------------------------------------------------------------------------


def make_models(gpt, tmp):
    model = os.path.join(tmp, "model")
    p = cli(gpt, "init", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--context", "256", "--seed", "3",
            "--out", model)
    if p.returncode:
        raise RuntimeError(p.stderr)
    text = os.path.join(tmp, "chars.txt")
    with open(text, "w") as f:
        f.write("abcdefghijklmnopqrstuvwxyz .,\n")
    vocab, char_model = os.path.join(tmp, "vocab"), os.path.join(tmp, "char_model")
    for args in (["char-vocab", "--input", text, "--out", vocab],
                 ["init", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--context", "64", "--vocab-size",
                  "30", "--tokenizer", "char:" + vocab, "--seed", "5", "--out", char_model]):
        p = cli(gpt, *args)
        if p.returncode:
            raise RuntimeError(p.stderr)
    return model, char_model


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- --measure ------------------------------------------------------------------------------------


def measure(gpt, model, char_model, only):
    plan = [
        ("request line 256 MiB", lambda s: a_request_line(s, 256 * MiB)),
        ("header line 256 MiB", lambda s: a_header_line(s, 256 * MiB)),
        ("header line 1 GiB", lambda s: a_header_line(s, 1024 * MiB)),
        ("1.7 M headers", lambda s: a_many_headers(s, 1700000)),
        ("chunked body 64 MiB", lambda s: a_chunked_body(s, 64 * MiB)),
        ("read-to-close body 64 MiB", lambda s: a_close_body(s, 64 * MiB)),
        ("duplicate Content-Length", a_duplicate_content_length),
        ("Transfer-Encoding + Content-Length", a_te_and_cl),
        ("pipelined pair", a_pipelined),
        ("form content type, 10 KB body", a_form_body),
        ("Host: evil.example", lambda s: a_host(s, "evil.example")),
        ("cross-origin text/plain POST", a_cross_origin),
        ("80 slow clients, 1 byte/s", lambda s: a_slow_loris(s, 80, 1.0, 40)),
    ]
    results = []

    def report(name, r):
        r = dict(name=name, **r)
        results.append(r)
        extra = ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("name", "outcome"))
        print(f"{name}: {r['outcome']}; {extra}", flush=True)

    for name, attack in plan:
        if only and not any(o in name for o in only):
            continue
        srv = Server(gpt, model, "--port", "0", "--parallel", "4")
        if srv.port is None:
            raise RuntimeError("gpt serve did not start: " + " | ".join(srv.lines[-3:]))
        request(srv.port, "GET", "/health")
        hwm0 = srv.status("VmHWM")
        t = time.time()
        r = attack(srv)
        r["seconds"] = r.get("seconds", round(time.time() - t, 2))
        time.sleep(0.5)
        hwm1 = r.pop("_hwm", None) or srv.status("VmHWM")
        r["rss_peak_growth_mib"] = None if hwm1 is None else round((hwm1 - hwm0) / 1024, 1)
        r["server"] = "alive" if srv.alive() and request(srv.port, "GET", "/health")[0] == 200 else \
            f"dead ({srv.proc.returncode})" if not srv.alive() else "not answering"
        if srv.alive():
            srv.stop()
        report(name, r)
    if not only or any("char" in o for o in only):
        srv = Server(gpt, char_model, "--port", "0")
        report("chat on a character-level model", a_char_chat(srv))
        srv.stop()
    if not only or any("port" in o for o in only):
        port = free_port()
        srv = Server(gpt, model, "--port", str(port))
        report("second server on a port in use", a_port_in_use(gpt, model, port))
        srv.stop()
    if not only or any("key" in o for o in only):
        report("--api-key ''", a_empty_key(gpt, model))
    if not only or any("parallel" in o for o in only):
        report("--parallel 300 under ulimit -v 4000000", a_parallel_under_ulimit(gpt, model))
    print(json.dumps(results))


# ---- the checks (default mode) --------------------------------------------------------------------
# Short timeouts (--timeout 2) keep them fast; sizes are large enough that an unbounded server would
# show it (64 MiB against a 16 MiB RSS bound), small enough to take well under a second each.


def checks(gpt, model, char_model):
    BOUND = 16 * 1024  # KiB of peak RSS growth allowed per attack
    srv = Server(gpt, model, "--port", "0", "--parallel", "2", "--timeout", "2", "--max-connections-per-client",
                 "16")
    if srv.port is None:
        raise RuntimeError("gpt serve did not start: " + " | ".join(srv.lines[-3:]))
    port = srv.port
    request(port, "GET", "/health")

    def bounded(name, fn, want):
        hwm0 = srv.status("VmHWM")
        r = fn()
        hwm1 = srv.status("VmHWM")
        grew = None if hwm1 is None else hwm1 - hwm0
        check(f"{name}: {want}", r["outcome"] in want.split(" or "), str(r))
        check(f"{name}: peak RSS grew < 16 MiB", grew is not None and grew < BOUND, f"{grew} KiB")
        check(f"{name}: the server still answers", request(port, "GET", "/health")[0] == 200, srv.lines[-3:])

    bounded("request line of 64 MiB", lambda: a_request_line(srv, 64 * MiB), "414 or closed")
    bounded("header line of 64 MiB", lambda: a_header_line(srv, 64 * MiB), "431")
    bounded("200k headers", lambda: a_many_headers(srv, 200000), "431")
    bounded("chunked body of 64 MiB", lambda: a_chunked_body(srv, 64 * MiB), "413 or closed")
    bounded("body without a length, 64 MiB", lambda: a_close_body(srv, 64 * MiB), "400 or closed")

    # Prompt log-probabilities (echo): scoring holds a fixed buffer whatever the prompt (after the
    # first request has made it), and a 1 MiB prompt is refused by the context before any work.
    full = {"prompt": [11] * 256, "echo": True, "logprobs": 20, "max_tokens": 0}
    r = request(port, "POST", "/v1/completions", full, timeout=60)
    check("echo + logprobs 20 over the whole context: 200, every token back",
          r[0] == 200 and len(json.loads(r[2])["choices"][0]["logprobs"]["tokens"]) == 256, outcome(r))
    bounded("echo + logprobs 20 over the whole context, again",
            lambda: {"outcome": outcome(request(port, "POST", "/v1/completions", full, timeout=60))}, "200")
    mib = {"prompt": "hello " * 174000, "echo": True, "logprobs": 20, "max_tokens": 0}  # just under 1 MiB
    bounded("echo + logprobs of a 1 MiB prompt",
            lambda: {"outcome": outcome(request(port, "POST", "/v1/completions", mib, timeout=60))}, "400")
    many = {"input": ["hello " * 60] * 2048, "encoding_format": "base64"}  # 2048 inputs of 60 tokens
    bounded("embeddings of 2048 inputs", lambda: {"outcome": outcome(request(port, "POST", "/v1/embeddings", many,
                                                                           timeout=120))}, "200")
    bounded("embeddings of a 1 MiB input",
            lambda: {"outcome": outcome(request(port, "POST", "/v1/embeddings", {"input": "hello " * 174000},
                                                timeout=60))}, "400")
    mib["prompt"] += "hello " * 1000
    bounded("echo + logprobs of a prompt over the body limit",
            lambda: {"outcome": outcome(request(port, "POST", "/v1/completions", mib, timeout=60))}, "413")

    body = b'{"prompt": "x", "max_tokens": 1}'
    s = connect(port)
    s.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n\r\n"
              f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
    r = read_response(s)
    s.close()
    check("a small chunked body is read", r[0] == 200, outcome(r))

    r = a_duplicate_content_length(srv)
    check("conflicting Content-Length headers: 400 and the connection closed",
          r["outcome"] == "400" and r["then"] == "closed", str(r))
    r = a_te_and_cl(srv)
    check("Transfer-Encoding with Content-Length: 400 and closed", r["outcome"] == "400" and r["then"] == "closed",
          str(r))
    r = a_pipelined(srv)
    check("two pipelined requests both answered at once", r["outcome"] == "200, 200" and r["seconds"] < 1.5,
          str(r))
    r = a_form_body(srv, 20000)
    check("a 20 KB JSON body with the form content type is read (curl -d)", r["outcome"] == "200", str(r))
    big = request(port, "POST", "/v1/completions", b"{" + b" " * (2 * MiB) + b"}")
    check("a body over --max-body: 413 saying the limit", big[0] == 413 and "1048576" in (error_message(big[2]) or ""),
          outcome(big))

    # Slow clients: /health stays fast, they are timed out (--timeout 2), SIGTERM is prompt.
    r = a_slow_loris(srv, 8, 0.5, 4)
    check("8 slow clients: /health answers within 1 s", r["health_ok"] and r["health_max_s"] < 1.0, str(r))
    check("8 slow clients: all timed out by the server", r["still_open"] == 0 and r["opened"] == 8, str(r))
    check("SIGTERM with slow clients connected: exit 0 within 2 s", r["sigterm_exit"] == 0 and r["sigterm_s"] < 2,
          str(r))

    # Connection caps: per client, and in total.
    srv = Server(gpt, model, "--port", "0", "--max-connections-per-client", "3", "--max-connections", "5")
    port = srv.port
    held = [connect(port, "127.0.0.2") for _ in range(3)]
    time.sleep(0.2)
    r = request(port, "GET", "/health", source="127.0.0.2", timeout=3)
    check("a 4th connection from one client is refused", r[0] is None, outcome(r))
    held += [connect(port, "127.0.0.3") for _ in range(2)]
    time.sleep(0.2)
    r = request(port, "GET", "/health", source="127.0.0.4", timeout=1)
    check("a 6th connection in total waits to be accepted", r[0] is None, outcome(r))
    for s in held:
        s.close()
    time.sleep(0.2)
    check("connections are accepted again once those close", request(port, "GET", "/health")[0] == 200)

    # Host header (DNS rebinding) and cross-origin posts, on a loopback server without a key.
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}", "127.0.0.1"):
        r = request(port, "GET", "/v1/models", headers={"Host": host})
        check(f"Host: {host} is accepted", r[0] == 200, outcome(r))
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil.example"):
        r = a_host(srv, host)
        check(f"Host: {host} is refused (403)", r["outcome"] == "403" and "Host" in r["message"], str(r))
    r = request(port, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 1},
                {"Origin": f"http://127.0.0.1:{port}"})
    check("a same-origin POST (the playground's) is accepted", r[0] == 200, outcome(r))
    for ct in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
               "application/json"):
        r = a_cross_origin(srv, ct)
        check(f"a cross-origin POST ({ct}) is refused (403)", r["outcome"] == "403" and "Origin" in r["message"],
              str(r))
    r = a_cross_origin(srv, "text/plain", "null")
    check("a POST from an opaque origin (Origin: null) is refused", r["outcome"] == "403", str(r))
    srv.stop()

    # The port, the key.
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    r = a_port_in_use(gpt, model, busy.getsockname()[1])
    busy.close()
    check("a port in use: non-zero exit, 'address already in use'",
          r["outcome"] not in ("exit 0", "exit running after 10 s") and "already in use" in r["message"], str(r))
    port = free_port()
    first = Server(gpt, model, "--port", str(port))
    r = a_port_in_use(gpt, model, port)
    first.stop()
    check("a second gpt serve on the same port fails", r["outcome"] == "exit 1" and "already in use" in r["message"],
          str(r))
    r = a_empty_key(gpt, model)
    check("--api-key '' is refused", r["outcome"] == "exit 1" and "empty" in r["message"], str(r))
    p = cli(gpt, "serve", "--model", model, "--port", "0", env={"GPT_API_KEY": ""}, timeout=5)
    check("an empty GPT_API_KEY is refused", p.returncode == 1 and "empty" in p.stderr, p.stderr.strip())
    with tempfile.NamedTemporaryFile("w", suffix=".key", delete=False) as f:
        f.write("sk-from-file\n")
    for name, args, env, key in [("GPT_API_KEY", [], {"GPT_API_KEY": "sk-from-env"}, "sk-from-env"),
                                 ("--api-key-file", ["--api-key-file", f.name], {}, "sk-from-file")]:
        srv = Server(gpt, model, "--port", "0", *args, env=env)
        no = request(srv.port, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 1})
        wrong = request(srv.port, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 1},
                        {"Authorization": f"Bearer {key}x"})
        yes = request(srv.port, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 1},
                      {"Authorization": f"Bearer {key}"})
        srv.stop()
        check(f"the key from {name}: 401 without it or with a wrong one, 200 with it",
              (no[0], wrong[0], yes[0]) == (401, 401, 200), f"{no[0]}, {wrong[0]}, {yes[0]}")
    with open(f.name, "w") as g:
        g.write("\n")
    p = cli(gpt, "serve", "--model", model, "--port", "0", "--api-key-file", f.name, timeout=5)
    check("an empty --api-key-file is refused", p.returncode == 1 and "empty" in p.stderr, p.stderr.strip())
    os.unlink(f.name)

    # A model that cannot chat: the same message as gpt chat.
    srv = Server(gpt, char_model, "--port", "0")
    r = a_char_chat(srv)
    srv.stop()
    check("chat on a character-level model: 400 'no <|endoftext|> token'",
          r["outcome"] == "400" and "no <|endoftext|> token" in r["message"], str(r))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpt", required=True)
    ap.add_argument("--measure", action="store_true", help="the full-size attacks, measured")
    ap.add_argument("--only", default="", help="--measure: comma-separated parts of attack names")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="serve_attacks_") as tmp:
        model, char_model = make_models(a.gpt, tmp)
        if a.measure:
            measure(a.gpt, model, char_model, [o for o in a.only.split(",") if o])
            return
        t = time.time()
        checks(a.gpt, model, char_model)
        print(f"{len(FAILED)} failed in {time.time() - t:.1f} s" + (f": {FAILED}" if FAILED else ""))
        sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()

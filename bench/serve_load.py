"""Load generator for `gpt serve`: N concurrent streaming clients on loopback, raw HTTP over asyncio
(no client library in the measurement). Each client sends POST /v1/completions with stream=true
again and again; a request's latency runs from sending it to "data: [DONE]", its time to first
token (TTFT) to the first chunk with a token, and every chunk is one generated token.

  sweep   for each N in --clients (default 1 2 4 8): N clients for --duration seconds; prints
          aggregate decode tokens/s, its ratio to N = 1, p50/p99 latency and TTFT, errors.
  load    --clients 32 streams for --duration seconds (the issue's load test: 32 for 60 s);
          prints throughput, p50/p99 latency and TTFT, and errors (must be 0: exit 1 otherwise).

The last line of output is one JSON object with every figure. Run it through
bench/run_serve_bench.sh, which starts the server and holds the CPU lock.
"""
import argparse
import asyncio
import json
import sys
import time


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))
    return xs[k]


async def one_request(host, port, body, key):
    """Returns (latency s, ttft s, tokens) or raises on any error."""
    payload = json.dumps(body).encode()
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        auth = f"Authorization: Bearer {key}\r\n" if key else ""
        writer.write((f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\n"
                      f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode() + payload)
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"HTTP status {status!r}")
        while (await reader.readline()) not in (b"\r\n", b""):
            pass  # headers
        ttft, tokens, done, buf = None, 0, False, b""
        while not done:
            chunk = await reader.read(65536)
            if not chunk:
                break
            buf += chunk
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                for line in event.split(b"\n"):
                    line = line.strip()
                    # chunked transfer encoding puts size lines between events: skip them
                    if not line.startswith(b"data: "):
                        continue
                    data = line[6:]
                    if data == b"[DONE]":
                        done = True
                        break
                    j = json.loads(data)
                    if "error" in j:
                        raise RuntimeError(j["error"]["message"])
                    if j.get("choices"):
                        tokens += 1
                        if ttft is None:
                            ttft = time.perf_counter() - t0
        if not done:
            raise RuntimeError("stream ended without [DONE]")
        return time.perf_counter() - t0, ttft or 0.0, tokens
    finally:
        writer.close()


async def run_clients(args, n, duration):
    body = {"prompt": args.prompt, "max_tokens": args.max_tokens, "temperature": 0, "stream": True}
    lat, ttft, errors, tokens = [], [], [], 0
    stop_at = time.perf_counter() + duration

    async def client():
        nonlocal tokens
        while time.perf_counter() < stop_at:
            try:
                l, t, k = await one_request(args.host, args.port, body, args.api_key)
                lat.append(l)
                ttft.append(t)
                tokens += k
            except Exception as e:  # noqa: BLE001 - every failure is counted
                errors.append(str(e))

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(n)))
    wall = time.perf_counter() - t0
    return {"clients": n, "seconds": round(wall, 2), "requests": len(lat), "tokens": tokens,
            "tokens_per_s": round(tokens / wall, 1), "latency_p50_s": round(percentile(lat, 50), 3),
            "latency_p99_s": round(percentile(lat, 99), 3), "ttft_p50_s": round(percentile(ttft, 50), 3),
            "ttft_p99_s": round(percentile(ttft, 99), 3), "errors": len(errors),
            "first_error": errors[0] if errors else None}


def show(r, base=None):
    ratio = f"  x{r['tokens_per_s'] / base:.2f} vs 1 client" if base else ""
    print(f"{r['clients']:>3} clients: {r['tokens_per_s']:8.1f} tokens/s{ratio}  requests {r['requests']:4d}  "
          f"latency p50 {r['latency_p50_s']:.3f} s p99 {r['latency_p99_s']:.3f} s  "
          f"TTFT p50 {r['ttft_p50_s']:.3f} s p99 {r['ttft_p99_s']:.3f} s  errors {r['errors']}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["sweep", "load"])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--api-key", default="")
    ap.add_argument("--clients", type=int, nargs="+", help="sweep: 1 2 4 8; load: 32")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per client count (default 10)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--prompt", default="The meaning of life is")
    args = ap.parse_args()
    clients = args.clients or ([1, 2, 4, 8] if args.mode == "sweep" else [32])
    results = []
    for n in clients:
        r = asyncio.run(run_clients(args, n, args.duration))
        results.append(r)
        show(r, results[0]["tokens_per_s"] if args.mode == "sweep" and n != clients[0] else None)
    print(json.dumps({"mode": args.mode, "max_tokens": args.max_tokens, "results": results}))
    if any(r["errors"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()

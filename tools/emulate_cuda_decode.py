#!/usr/bin/env python3
"""Emulates, in numpy, the loop structure of two CUDA files that no GPU has run yet, and checks it
against float64 references:

- src/backend/cuda/decode.cu: decode_splits, each piece's key range (from the query's position,
  the band and the split count), the warps taking keys in turn, the block's max and sums, the
  pieces' (values, max, sum) and the merge kernel, empty pieces included;
- src/backend/cuda/attention_f32.cu: the forward's online softmax per query (with dropout on the
  unnormalised weights), delta = dO . O, the dQ loop over a query's keys and the dK/dV loop over the
  queries that see a key (its band bound i <= j + band - 1).

What only a GPU shows (launches, shared-memory sizes, warp shuffles) is left to the CudaBackend.*
tests.

    /usr/bin/python3 tools/emulate_cuda_decode.py      # a few seconds; exit 1 on a mismatch
"""
import sys

import numpy as np

WARPS, MAX_SPLITS, MAX_PIECE = 4, 32, 4096


def decode_splits(N, H, n_ctx, sms):
    pairs = max(1, N * H)
    s = (2 * max(1, sms) + pairs - 1) // pairs
    s = min(s, max(1, n_ctx // 64))
    s = max(1, min(s, MAX_SPLITS))
    return max(s, (n_ctx + MAX_PIECE - 1) // MAX_PIECE)


def first_key(p, band):
    return p - band + 1 if band > 0 and p - band + 1 > 0 else 0


def decode_emulated(q, K, V, p, band, splits, scale):
    """One (query, head): q [hs], K, V [n_ctx, hs] of its cache row."""
    first = first_key(p, band)
    per = (p - first + 1 + splits - 1) // splits
    parts = []
    for piece in range(splits):
        k0 = first + piece * per
        k1 = min(k0 + per, p + 1)
        scores = {}
        mx = [-np.inf] * WARPS
        for w in range(WARPS):
            for j in range(k0 + w, k1, WARPS):
                s = np.float32(np.dot(q, K[j])) * np.float32(scale)
                scores[j] = s
                mx[w] = max(mx[w], s)
        M = max(mx)
        acc = np.zeros((WARPS, len(q)), np.float32)
        l = [np.float32(0)] * WARPS
        for w in range(WARPS):
            for j in range(k0 + w, k1, WARPS):
                e = np.float32(np.exp(np.float32(scores[j] - M)))
                l[w] += e
                acc[w] += e * V[j]
        L = np.float32(sum(l))
        a = acc.sum(axis=0)
        if splits == 1:
            return a / L
        parts.append((a, M, L))
    M = max(m for _, m, _ in parts)
    L = sum(l * np.exp(m - M) for _, m, l in parts if l > 0)
    a = sum(v * np.exp(m - M) for v, m, l in parts if l > 0)
    return a / L


def decode_reference(q, K, V, p, band, scale):
    q, K, V = q.astype(np.float64), K.astype(np.float64), V.astype(np.float64)
    first = first_key(p, band)
    s = K[first:p + 1] @ q * scale
    w = np.exp(s - s.max())
    return (w / w.sum()) @ V[first:p + 1]


def check_decode(rng):
    bad = 0
    for (N, H, n_ctx, hs, band, sms) in [(1, 1, 700, 64, 0, 132), (1, 12, 1024, 64, 0, 132),
                                         (3, 2, 100, 64, 10, 108), (32, 12, 1024, 64, 0, 132),
                                         (140, 2, 4200, 16, 0, 132), (2, 2, 300, 20, 7, 132)]:
        splits = decode_splits(N, H, n_ctx, sms)
        for _ in range(4):
            K = rng.standard_normal((n_ctx, hs)).astype(np.float32)
            V = rng.standard_normal((n_ctx, hs)).astype(np.float32)
            q = (2 * rng.standard_normal(hs)).astype(np.float32)
            for p in {0, 1, n_ctx - 1, int(rng.integers(n_ctx)), min(n_ctx - 1, splits - 1)}:
                got = decode_emulated(q, K, V, p, band, splits, 1 / np.sqrt(hs))
                want = decode_reference(q, K, V, p, band, 1 / np.sqrt(hs))
                err = np.abs(got - want).max() / np.abs(want).max()
                if not err < 1e-5:
                    bad += 1
                    print(f"decode N {N} H {H} n_ctx {n_ctx} band {band} splits {splits} pos {p}: "
                          f"relative error {err}")
        print(f"decode: N {N} H {H} n_ctx {n_ctx} hs {hs} band {band}: {splits} pieces")
    return bad


# ---- attention_f32.cu ----------------------------------------------------------------------------

M32 = 0xffffffff


def mix32(x):
    x &= M32
    x ^= x >> 16
    x = (x * 0x7feb352d) & M32
    x ^= x >> 15
    x = (x * 0x846ca68b) & M32
    x ^= x >> 16
    return x


def keep(seed, i, thr):
    return mix32(mix32((i & M32) ^ seed) ^ ((((i >> 32) & M32) * 0x9e3779b9) & M32)) >= thr


def attention_f32_emulated(q, k, v, dout, band, p, seed):
    """One (b, h) of T queries: out, lse, dq, dk, dv as the kernels' loops compute them."""
    T, hs = q.shape
    scale = np.float32(1 / np.sqrt(hs))
    thr, dscale = int(p * 4294967296.0), np.float32(1 / (1 - p)) if p > 0 else np.float32(1)
    drop = lambda x, idx: x if p == 0 else (x * dscale if keep(seed, idx, thr) else np.float32(0))
    out, lse = np.zeros((T, hs), np.float32), np.zeros(T, np.float32)
    for i in range(T):  # forward: one warp per query, online softmax
        m, l, acc = -np.inf, np.float32(0), np.zeros(hs, np.float32)
        for j in range(first_key(i, band), i + 1):
            s = np.float32(np.dot(q[i], k[j])) * scale
            m_new = max(m, s)
            alpha, e = np.float32(np.exp(m - m_new)), np.float32(np.exp(s - m_new))
            l = l * alpha + e
            acc = acc * alpha + drop(e, i * T + j) * v[j]
            m = m_new
        out[i] = acc * (1 / l)
        lse[i] = m + np.log(l)
    delta = (dout * out).sum(axis=1)

    def grads(i, j):
        pr = np.float32(np.exp(np.float32(np.dot(q[i], k[j])) * scale - lse[i]))
        dp = np.float32(np.dot(dout[i], v[j]))
        pd = pr
        if p > 0:
            kept = keep(seed, i * T + j, thr)
            pd, dp = (pr * dscale, dp * dscale) if kept else (np.float32(0), np.float32(0))
        return pd, pr * (dp - delta[i]) * scale

    dq = np.zeros_like(q)
    for i in range(T):  # one warp per query
        for j in range(first_key(i, band), i + 1):
            dq[i] += grads(i, j)[1] * k[j]
    dk, dv = np.zeros_like(k), np.zeros_like(v)
    for j in range(T):  # one warp per key
        for i in range(j, min(T - 1, j + band - 1) + 1 if band > 0 else T):
            pd, ds = grads(i, j)
            dv[j] += pd * dout[i]
            dk[j] += ds * q[i]
    return out, dq, dk, dv


def attention_reference(q, k, v, dout, band, p, seed):
    T, hs = q.shape
    q, k, v, dout = (x.astype(np.float64) for x in (q, k, v, dout))
    vis = np.array([[j <= i and (band == 0 or j > i - band) for j in range(T)] for i in range(T)])
    mask = np.ones((T, T))
    if p > 0:
        thr = int(p * 4294967296.0)
        mask = np.array([[keep(seed, i * T + j, thr) / (1 - p) for j in range(T)] for i in range(T)])
    s = np.where(vis, q @ k.T / np.sqrt(hs), -np.inf)
    P = np.exp(s - s.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    Pd = P * mask
    out = Pd @ v
    dPd = dout @ v.T
    dP = dPd * mask
    dS = P * (dP - (dP * P).sum(axis=1, keepdims=True)) / np.sqrt(hs)
    return out, dS @ k, dS.T @ q, Pd.T @ dout


def check_attention(rng):
    bad = 0
    for (T, hs, band, p) in [(40, 16, 0, 0.0), (37, 20, 6, 0.0), (30, 64, 0, 0.3), (33, 8, 5, 0.25)]:
        q, k, v, dout = (rng.standard_normal((T, hs)).astype(np.float32) for _ in range(4))
        got = attention_f32_emulated(q, k, v, dout, band, p, 12345)
        want = attention_reference(q, k, v, dout, band, p, 12345)
        errs = [np.abs(g - w).max() / np.abs(w).max() for g, w in zip(got, want)]
        print(f"attention_f32: T {T} hs {hs} band {band} dropout {p}: relative errors (out, dq, dk, dv) "
              + " ".join(f"{e:.1e}" for e in errs))
        bad += sum(not e < 1e-5 for e in errs)
    return bad


def main():
    rng = np.random.default_rng(1)
    bad = check_decode(rng) + check_attention(rng)
    print("all match" if bad == 0 else f"{bad} mismatches")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

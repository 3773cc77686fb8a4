#!/usr/bin/env python3
"""Emulates the tiling of src/backend/cuda/attention.cu in numpy and checks it against a dense
float64 reference of the CPU's attention (ops/cpu/kernels.inc), forward and backward.

The emulation follows the kernels' loop bounds (64-query / 64-key forward tiles, 32x64 dK/dV and
64x32 dQ tiles, the band's first and last tiles), their masks, the dropout hash and its indices,
the online softmax, the delta = dO . O form of the backward, and the bf16 roundings of the
probabilities, dS and the outputs. It cannot check what only a GPU shows (wmma fragment layouts,
shared-memory synchronisation); the CudaBackend.* tests do that on a GPU.

    /usr/bin/python3 tools/emulate_cuda_attention.py      # a second; exit 1 on a mismatch
"""
import sys

import numpy as np

M32 = 0xffffffff
def mix32(x):
    x = x & M32
    x ^= x >> 16; x = (x * 0x7feb352d) & M32
    x ^= x >> 15; x = (x * 0x846ca68b) & M32
    x ^= x >> 16
    return x
def keep(seed, i, thr):
    lo = i & M32; hi = (i >> 32) & M32
    return mix32(mix32(lo ^ seed) ^ ((hi * 0x9e3779b9) & M32)) >= thr
def bf(x):
    x = np.asarray(x, dtype=np.float32)
    b = x.view(np.uint32).astype(np.uint64)
    b = ((b + 0x7fff + ((b >> 16) & 1)) & 0xffff0000).astype(np.uint32)
    return b.view(np.float32)

def visible(i, j, T, band):
    return i < T and j <= i and (band == 0 or j > i - band)
def first_key(i, band):
    return i - band + 1 if band > 0 and i - band + 1 > 0 else 0

def mask_matrix(B,H,T,seed,p):
    thr = int(p * 4294967296.0)
    m = np.zeros((B*H,T,T), dtype=bool)
    for bh in range(B*H):
        for i in range(T):
            for j in range(T):
                m[bh,i,j] = keep(seed, (bh*T + i)*T + j, thr)
    return m

def reference(qkv, B,T,C,H,band,p,seed,dout):
    hs = C//H; scale = 1/np.sqrt(hs)
    q = qkv[:,:,:C].reshape(B,T,H,hs).transpose(0,2,1,3).astype(np.float64)
    k = qkv[:,:,C:2*C].reshape(B,T,H,hs).transpose(0,2,1,3).astype(np.float64)
    v = qkv[:,:,2*C:].reshape(B,T,H,hs).transpose(0,2,1,3).astype(np.float64)
    S = q @ k.transpose(0,1,3,2) * scale
    vis = np.array([[visible(i,j,T,band) for j in range(T)] for i in range(T)])
    S = np.where(vis, S, -np.inf)
    P = np.exp(S - S.max(-1, keepdims=True)); P /= P.sum(-1, keepdims=True)
    if p > 0:
        km = mask_matrix(B,H,T,seed,p).reshape(B,H,T,T)
        Pd = np.where(km, P/(1-p), 0)
    else:
        km = None; Pd = P
    O = Pd @ v
    dO = dout.reshape(B,T,H,hs).transpose(0,2,1,3).astype(np.float64)
    dV = Pd.transpose(0,1,3,2) @ dO
    dPd = dO @ v.transpose(0,1,3,2)
    dP = np.where(km, dPd/(1-p), 0) if p > 0 else dPd
    dS = P * (dP - (P*dP).sum(-1, keepdims=True)) * scale
    dQ = dS @ k; dK = dS.transpose(0,1,3,2) @ q
    f = lambda x: x.transpose(0,2,1,3).reshape(B,T,C)
    dqkv = np.concatenate([f(dQ), f(dK), f(dV)], axis=-1)
    return f(O), dqkv

def emulate(qkv, B,T,C,H,band,p,seed,dout):
    hs = C//H; DP = (hs+15)//16*16; scale = np.float32(1/np.sqrt(np.float32(hs)))
    thr = int(p * 4294967296.0); dscale = np.float32(1/(1-p)) if p > 0 else 1
    out = np.zeros((B,T,C), np.float32); lse = np.zeros((B*H,T), np.float32)
    def tile(b, col, r0, rows, src, stride_c):
        t = np.zeros((rows, DP), np.float32)
        for r in range(rows):
            if r0 + r < T: t[r,:hs] = src[b, r0+r, col:col+hs]
        return t
    FQ=FK=64
    for bh in range(B*H):
        b, h = bh//H, bh%H
        for q0 in range(0, T, FQ):
            Q = tile(b, h*hs, q0, FQ, qkv, 3*C)
            sO = np.zeros((FQ,DP), np.float32); sM = np.full(FQ, -np.inf, np.float32); sL = np.zeros(FQ, np.float32)
            q_last = min(q0+FQ, T)-1
            k0 = first_key(q0, band)//FK*FK
            while k0 <= q_last:
                K = tile(b, C+h*hs, k0, FK, qkv, 3*C); V = tile(b, 2*C+h*hs, k0, FK, qkv, 3*C)
                S = Q @ K.T
                P = np.zeros((FQ,FK), np.float32)
                for r in range(FQ):
                    i = q0 + r
                    sv = np.array([S[r,c]*scale if visible(i,k0+c,T,band) else -np.inf for c in range(FK)], np.float32)
                    mx = sv.max(); m_old = sM[r]; m_new = max(m_old, mx)
                    pr = np.where(sv != -np.inf, np.exp(sv - m_new), 0).astype(np.float32)
                    pd = pr.copy()
                    if p > 0:
                        for c in range(FK):
                            if sv[c] != -np.inf:
                                pd[c] = pr[c]*dscale if keep(seed, (bh*T+i)*T + k0+c, thr) else 0
                    P[r] = bf(pd)
                    alpha = np.exp(m_old - m_new) if m_new != -np.inf else 1.0
                    sM[r] = m_new; sL[r] = sL[r]*alpha + pr.sum()
                    sO[r] *= alpha
                sO += P @ V
                k0 += FK
            for r in range(FQ):
                i = q0 + r
                if i < T:
                    out[b, i, h*hs:(h+1)*hs] = bf(sO[r,:hs]/sL[r])
                    lse[bh, i] = sM[r] + np.log(sL[r])
    # backward
    delta = np.zeros((B*H,T), np.float32)
    for bh in range(B*H):
        b, h = bh//H, bh%H
        for i in range(T):
            delta[bh,i] = np.dot(dout[b,i,h*hs:(h+1)*hs], out[b,i,h*hs:(h+1)*hs])
    dqkv = np.zeros((B,T,3*C), np.float32)
    def grads(S, dP, i, j, bh, r_lse, r_delta):
        pr = np.float32(np.exp(S*scale - r_lse)); pd = pr; dp = dP
        if p > 0:
            kp = keep(seed, (bh*T+i)*T+j, thr)
            pd = pr*dscale if kp else 0; dp = dp*dscale if kp else 0
        return pd, pr*(dp - r_delta)*scale
    KQ, KK = 32, 64
    for bh in range(B*H):
        b, h = bh//H, bh%H
        for k0 in range(0, T, KK):
            K = tile(b, C+h*hs, k0, KK, qkv, 3*C); V = tile(b, 2*C+h*hs, k0, KK, qkv, 3*C)
            dK = np.zeros((KK,DP), np.float32); dV = np.zeros((KK,DP), np.float32)
            q_end = min(T-1, k0 + KK + band - 2) if band > 0 else T-1
            q0 = k0
            while q0 <= q_end:
                Q = tile(b, h*hs, q0, KQ, qkv, 3*C); dO = tile(b, h*hs, q0, KQ, dout, C)
                S = Q @ K.T; dP = dO @ V.T
                Pm = np.zeros((KQ,KK), np.float32); dS = np.zeros((KQ,KK), np.float32)
                for r in range(KQ):
                    for c in range(KK):
                        i, j = q0+r, k0+c
                        if visible(i,j,T,band):
                            Pm[r,c], dS[r,c] = grads(S[r,c], dP[r,c], i, j, bh, lse[bh,i], delta[bh,i])
                dV += bf(Pm).T @ dO; dK += bf(dS).T @ Q
                q0 += KQ
            for r in range(KK):
                j = k0 + r
                if j < T:
                    dqkv[b,j,C+h*hs:C+(h+1)*hs] = bf(dK[r,:hs]); dqkv[b,j,2*C+h*hs:2*C+(h+1)*hs] = bf(dV[r,:hs])
    DQ, DK = 64, 32
    for bh in range(B*H):
        b, h = bh//H, bh%H
        for q0 in range(0, T, DQ):
            Q = tile(b, h*hs, q0, DQ, qkv, 3*C); dO = tile(b, h*hs, q0, DQ, dout, C)
            dQ = np.zeros((DQ,DP), np.float32)
            q_last = min(q0+DQ, T)-1
            k0 = first_key(q0, band)//DK*DK
            while k0 <= q_last:
                K = tile(b, C+h*hs, k0, DK, qkv, 3*C); V = tile(b, 2*C+h*hs, k0, DK, qkv, 3*C)
                S = Q @ K.T; dP = dO @ V.T
                dS = np.zeros((DQ,DK), np.float32)
                for r in range(DQ):
                    for c in range(DK):
                        i, j = q0+r, k0+c
                        if visible(i,j,T,band):
                            _, dS[r,c] = grads(S[r,c], dP[r,c], i, j, bh, lse[bh,i], delta[bh,i])
                dQ += bf(dS) @ K
                k0 += DK
            for r in range(DQ):
                i = q0 + r
                if i < T: dqkv[b,i,h*hs:(h+1)*hs] = bf(dQ[r,:hs])
    return out, dqkv

def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def main():
    rng = np.random.default_rng(0)
    worst = 0.0
    # (B, T, C, H, band, dropout): partial tiles, several key tiles, bands narrower and wider than a
    # tile, dropout, head sizes 16, 20 (padded) and 32.
    for (B, T, C, H, band, p) in [(1, 70, 32, 2, 0, 0.0), (1, 150, 16, 1, 0, 0.0), (1, 150, 32, 2, 8, 0.0),
                                  (1, 140, 16, 1, 70, 0.0), (1, 100, 32, 2, 0, 0.3), (1, 100, 16, 1, 20, 0.3),
                                  (1, 45, 40, 2, 5, 0.0)]:
        qkv = bf(rng.standard_normal((B, T, 3 * C)).astype(np.float32))
        dout = bf(rng.standard_normal((B, T, C)).astype(np.float32))
        seed = 987654321
        O, dqkv = reference(qkv, B, T, C, H, band, p, seed, dout)
        Oe, dqkve = emulate(qkv, B, T, C, H, band, p, seed, dout)
        errs = [rel(Oe, O)] + [rel(dqkve[..., k * C:(k + 1) * C], dqkv[..., k * C:(k + 1) * C]) for k in range(3)]
        worst = max(worst, *errs)
        print(f"B {B} T {T} C {C} H {H} band {band} dropout {p}: "
              f"out {errs[0]:.1e}  dq {errs[1]:.1e}  dk {errs[2]:.1e}  dv {errs[3]:.1e}", flush=True)
    print(f"worst relative error {worst:.1e} (bf16 tolerance 2e-2)")
    return 0 if worst < 2e-2 else 1


if __name__ == "__main__":
    with np.errstate(invalid="ignore"):
        sys.exit(main())

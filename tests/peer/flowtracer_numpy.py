#!/usr/bin/env python3
"""The FlowTracer pipeline in NumPy/SciPy float64: the peer a Python user would write.

It reads trace format v1 with no package beyond NumPy (a safetensors file is an 8-byte length,
a JSON header and raw little-endian data), follows FLOWTRACER.md step by step with the
project's default parameters, and prints the result as JSON (and step times with --bench).

    python3 tests/peer/flowtracer_numpy.py TRACE.safetensors [--bench REPEAT] [--f32-matrix]

--f32-matrix rounds the aggregated M to float32, as the engine keeps it (its strict lower
triangle in f32): where a mean over layers and heads is not exact in f32, that rounding moves
every figure by some 1e-8 of its value, and with it the peer follows the engine to 1e-12.

The Rust test `tests/peer.rs` compares its output, with M rounded so and without, with the CPU
backend's on the sample traces and on synthetic ones; `flowtracer bench --peer
tests/peer/flowtracer_numpy.py` times both on the same files.
"""
import json
import math
import sys
import time

import numpy as np
from scipy.linalg import solve_triangular

DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
          "I64": np.dtype("<i8"), "I32": np.dtype("<i4")}


def read_trace(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__")
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        s, e = info["data_offsets"]
        a = np.frombuffer(raw, dtype=DTYPES[info["dtype"]], count=(e - s) // DTYPES[info["dtype"]].itemsize, offset=base + s)
        if info["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = a.reshape(info["shape"])
    return tensors, meta


def span(text, n):
    a, b = text.split(":")
    return int(a), (int(b) if b.strip() else n)


def pipeline(att, meta, timings, f32_matrix=False):
    tokens = json.loads(meta["tokens"])
    n = len(tokens)
    q0, q1 = span(meta["question"], n)
    a0, a1 = span(meta["answer"], n)
    r0, r1 = span(meta.get("response", f"{q1}:{n}"), n)
    # The sink (answer.sink = "writers"): the positions whose next-token prediction wrote the
    # answer, [a0-1, a1-1), kept inside the response; the answer itself if that is empty.
    if a1 > a0 and a1 - 1 > max(a0 - 1, r0):
        a0, a1 = max(a0 - 1, r0), a1 - 1

    # 1-2. aggregate: the default layers (the middle third from 6 layers on, the middle third
    # through the last layer below), mean over layers and heads, no self edges.
    t = time.perf_counter()
    if att.ndim == 2:
        m = att.astype(np.float64)
    else:
        if att.ndim == 3:
            att = att[:, None]
        kept = json.loads(meta["layers"]) if "layers" in meta else list(range(att.shape[0]))
        total = int(meta.get("num_layers", kept[-1] + 1))
        lo, hi = (0, total) if total < 3 else (total // 3, -(-2 * total // 3))
        if total < 6:
            hi = total
        sel = [j for j, l in enumerate(kept) if lo <= l < hi] or list(range(att.shape[0]))
        m = att[sel].astype(np.float64).mean(axis=(0, 1))
    if f32_matrix:
        m = m.astype(np.float32).astype(np.float64)
    m = np.tril(m, -1)
    timings["aggregate"] = time.perf_counter() - t

    # 3. reach: h = 1 on the answer, 0 after it; (I - U) h_pre = b below it (upper-triangular solve).
    t = time.perf_counter()
    h = np.zeros(n)
    if a1 > a0:
        h[a0:a1] = 1.0
        w = m.T  # W[i, k] = M[k, i]
        b = w[:a0, a0:a1].sum(axis=1)
        h[:a0] = solve_triangular(np.eye(a0) - w[:a0, :a0], b, lower=False) if a0 else b
    timings["reach"] = time.perf_counter() - t

    # 4-5. conserved flow: g = f/h on conserving tokens solves (I - M_CC) g = s/h (lower-triangular).
    t = time.perf_counter()
    f = np.zeros(n)
    qplus = [i for i in range(q0, q1) if h[i] > 0]
    status = "no_answer" if a1 <= a0 else ("no_flow" if not qplus else "ok")
    conserving = np.array([h[i] > 0 and not (a0 <= i < a1) for i in range(n)])
    c = np.flatnonzero(conserving)
    g = np.zeros(n)
    if status == "ok":
        s = np.zeros(n)
        s[qplus] = 1.0 / len(qplus)
        g[c] = solve_triangular(np.eye(len(c)) - m[np.ix_(c, c)], s[c] / h[c], lower=True)
        f[c] = g[c] * h[c]
        f[a0:a1] = h[a0:a1] * (m[a0:a1] @ g)
    timings["flow"] = time.perf_counter() - t

    # 6. throughput.
    tau = np.where(conserving, 2 * f, f)

    # 7. backbone: widest paths in the residual edge flow phi[k, i] = g[i] M[k, i] h[k].
    t = time.perf_counter()
    paths = []
    if status == "ok":
        phi = m * g[None, :] * h[:, None]
        src = np.zeros(n)
        src[qplus] = 1.0 / len(qplus)
        sink = np.zeros(n)
        sink[a0:a1] = f[a0:a1]
        explained = 0.0
        while len(paths) < 8 and explained < 0.9 - 1e-12:
            width = np.zeros(n)
            pred = np.full(n, -1)
            for k in range(q0, a1):
                if h[k] <= 0:
                    continue
                cand = np.minimum(width[q0:k], phi[k, q0:k]) if k > q0 else np.zeros(0)
                best, arg = (cand.max(), int(cand.argmax()) + q0) if cand.size else (0.0, -1)
                if q0 <= k < q1 and src[k] > 0 and src[k] >= best:
                    best, arg = src[k], -2
                width[k], pred[k] = best, arg if best > 0 else -1
            ends = np.minimum(width[a0:a1], sink[a0:a1])
            a = a0 + int(ends.argmax())
            flow = float(ends.max())
            if flow <= 1e-12:
                break
            path = [a]
            while pred[path[-1]] != -2:
                path.append(int(pred[path[-1]]))
            path.reverse()
            src[path[0]] -= flow
            sink[a] -= flow
            for i, k in zip(path, path[1:]):
                left = phi[k, i] - flow
                phi[k, i] = 0.0 if left <= flow * 1e-9 else left
            explained += flow
            paths.append({"tokens": path, "flow": flow})
    timings["backbone"] = time.perf_counter() - t

    # 8. hubs (top 5% of response tokens by throughput, at most 32) and checkpoints.
    t = time.perf_counter()
    resp = list(range(r0, r1))
    def top(score, idx, count):
        order = sorted(idx, key=lambda k: (-score[k], k))
        return order[:count]
    hubs = sorted(int(x) for x in top(tau, [k for k in resp if tau[k] > 0], min(32, max(1, math.ceil(0.05 * len(resp) - 1e-9))))) if status == "ok" else []
    phi0 = m * g[None, :] * h[:, None]
    far_sources = np.zeros(n)
    on_backbone = {k for p in paths for k in p["tokens"] if k >= q1}
    for k in sorted(on_backbone):
        if f[k] <= 0:
            continue
        row = phi0[k, :k]
        total = row.sum()
        far = row[: max(0, k - 8 + 1)]
        far = far[far > 0]
        if total > 0 and far.size:
            p = far / far.sum()
            far_sources[k] = far.sum() / total * math.exp(-(p * np.log(p)).sum())
    preds = {}
    for p in paths:
        for i, k in zip(p["tokens"], p["tokens"][1:]):
            preds.setdefault(k, set()).add(i)
    checkpoints = sorted(int(k) for k, fr in preds.items() if not (q0 <= k < q1) and (len(fr) >= 2 or far_sources[k] > 4.0))
    timings["roles"] = time.perf_counter() - t

    # 9. credit: top 40% (rounded up) of the response by throughput get 1.5.
    t = time.perf_counter()
    credit = np.ones(n)
    if status == "ok":
        credit[top(tau, list(resp), math.ceil(0.4 * len(resp) - 1e-9))] = 1.5
    timings["credit"] = time.perf_counter() - t
    return {"status": status, "reach": h.tolist(), "flow": f.tolist(), "throughput": tau.tolist(),
            "credit": credit.tolist(), "far_sources": far_sources.tolist(), "backbone": paths,
            "hubs": hubs, "checkpoints": checkpoints}


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    repeat = int(args[args.index("--bench") + 1]) if "--bench" in args else 0
    f32_matrix = "--f32-matrix" in args
    tensors, meta = read_trace(args[0])
    if repeat:
        runs = []
        for _ in range(repeat):
            timings = {}
            t = time.perf_counter()
            pipeline(tensors["attention"], meta, timings, f32_matrix)
            timings["pipeline"] = time.perf_counter() - t
            runs.append(timings)
        med = {k: sorted(r[k] for r in runs)[len(runs) // 2] * 1e3 for k in runs[0]}
        print(json.dumps({"ms": med}))
    else:
        print(json.dumps(pipeline(tensors["attention"], meta, {}, f32_matrix)))


if __name__ == "__main__":
    main()

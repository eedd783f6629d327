"""What `flowtracer.capture` costs on the CPU: a tiny random-weight Qwen2 (GQA), one sequence of
N tokens, the forward pass timed with and without capture (median of `--repeat`), and the peak
resident memory of each, measured in a fresh process per case (ru_maxrss), so the difference is
what capture adds. Also the binding's overhead, when `--binary` names a release build (it
writes the traces): a batch of 64 traces of N = 1024 through `analyze_files` and
`analyze_batch`, against the engine alone on the same traces in the same process.

    python src/python/bench/capture_cost.py --sizes 512,1024,2048,4096 [--binary target/release/flowtracer]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_case(n: int, capture: bool, repeat: int) -> dict:
    import torch
    import transformers

    import flowtracer

    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=n)
    model = transformers.Qwen2ForCausalLM(cfg).eval()
    ids = torch.randint(0, 512, (1, n))
    times = []
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for run in range(repeat + 1):  # the first run warms up and is not timed
        with torch.no_grad():
            if capture:
                with flowtracer.capture(model) as cap:
                    t = time.perf_counter()
                    model(input_ids=ids)
                    a = cap.attention(0)
                    elapsed = time.perf_counter() - t
                assert a.shape == (n, n)
                del a  # (a result shares the pass's buffer: holding it across passes would hold two)
            else:
                t = time.perf_counter()
                model(input_ids=ids)
                elapsed = time.perf_counter() - t
        if run:
            times.append(elapsed)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": statistics.median(times), "peak_kib": peak, "model_kib": base}


def binding_overhead(binary: Path, repeat: int) -> dict:
    """64 synthetic [N,N] f32 traces of N = 1024 (`flowtracer synth`), each way side by side in
    this process and interleaved: the engine alone on them (`_native.engine_seconds`: opening
    and checking, then `run_batch`, timed in Rust, nothing made for Python) against the
    binding's calls that return the results as Python objects."""
    import numpy as np

    import flowtracer
    from flowtracer import _native
    from flowtracer._arrays import engine_array

    with tempfile.TemporaryDirectory() as d:
        paths = []
        for i in range(64):
            p = Path(d) / f"batch_{i}.safetensors"
            subprocess.run([str(binary), "synth", "--out", str(p), "--tokens", "1024", "--layers", "1", "--heads", "1", "--seed", str(1000 + i), "--dtype", "f32", "--rank", "2"], check=True, capture_output=True)
            paths.append(str(p))
        traces = [flowtracer.load_trace(p) for p in paths]
        from safetensors.numpy import load_file

        arrays = [np.ascontiguousarray(load_file(p)["attention"]) for p in paths]
        items = [dict(attention=a, question=t.question, answer=t.answer, response=t.response, tokens=t.tokens) for a, t in zip(arrays, traces)]
        native = [dict(attention=engine_array(a, "a")[0], bf16=False, tokens=t.tokens, question=t.question, answer=t.answer, response=t.response, name=f"attention[{i}]")
                  for i, (a, t) in enumerate(zip(arrays, traces))]
        runs: dict[str, list[float]] = {k: [] for k in ("engine_files", "files", "engine_arrays", "arrays")}
        flowtracer.analyze_files(paths, backend="cpu")  # warm the page cache and the thread pool
        for _ in range(repeat):
            runs["engine_files"].append(_native.engine_seconds(paths=paths, backend="cpu"))
            t = time.perf_counter()
            flowtracer.analyze_files(paths, backend="cpu")
            runs["files"].append(time.perf_counter() - t)
            runs["engine_arrays"].append(_native.engine_seconds(items=native, backend="cpu"))
            t = time.perf_counter()
            flowtracer.analyze_batch(items, backend="cpu")
            runs["arrays"].append(time.perf_counter() - t)
    return {k: 64 / statistics.median(v) for k, v in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="512,1024,2048,4096")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--binary", type=Path, help="a release `flowtracer` binary: also measure the binding's overhead")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        n, cap = args.case.split(":")
        print(json.dumps(one_case(int(n), cap == "1", args.repeat)))
        return
    print("| N | forward | with capture | extra time | peak RSS | with capture | extra memory | [N,N] f32 |")
    print("|---|---|---|---|---|---|---|---|")
    for n in map(int, args.sizes.split(",")):
        runs = {}
        for cap in (0, 1):
            out = subprocess.run([sys.executable, __file__, "--case", f"{n}:{cap}", "--repeat", str(args.repeat)], capture_output=True, text=True, check=True).stdout
            runs[cap] = json.loads(out.strip().splitlines()[-1])
        plain, cap = runs[0], runs[1]
        extra_mib = (cap["peak_kib"] - plain["peak_kib"]) / 1024
        print(
            f"| {n} | {plain['seconds'] * 1e3:.0f} ms | {cap['seconds'] * 1e3:.0f} ms | {cap['seconds'] / plain['seconds']:.2f}× "
            f"| {plain['peak_kib'] / 1024:.0f} MiB | {cap['peak_kib'] / 1024:.0f} MiB | {extra_mib:+.0f} MiB | {4 * n * n / 2**20:.0f} MiB |"
        )
    if args.binary:
        o = binding_overhead(args.binary, args.repeat)
        print(f"\nbatch of 64 [N,N] f32 traces, N = 1024, CPU backend, traces/s (median of {args.repeat}):")
        print(f"files:  engine {o['engine_files']:.0f}, analyze_files {o['files']:.0f} ({o['files'] / o['engine_files']:.3f}×)")
        print(f"arrays: engine {o['engine_arrays']:.0f}, analyze_batch {o['arrays']:.0f} ({o['arrays'] / o['engine_arrays']:.3f}×)")

if __name__ == "__main__":
    main()

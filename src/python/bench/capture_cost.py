"""What `flowtracer.capture` costs on the CPU: a tiny random-weight Qwen2 (GQA), one sequence of
N tokens, the forward pass timed with and without capture (median of `--repeat`), and the peak
resident memory of each, measured in a fresh process per case (ru_maxrss), so the difference is
what capture adds. Also the binding's overhead: a batch of 64 traces of N = 1024 through
`analyze_batch` against the engine's own `run_batch` timing of the same batch
(`flowtracer bench --batch 64`), when `--binary` names a release build.

    python src/python/bench/capture_cost.py --sizes 512,1024,2048,4096 [--binary target/release/flowtracer]
"""

from __future__ import annotations

import argparse
import json
import re
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
            else:
                t = time.perf_counter()
                model(input_ids=ids)
                elapsed = time.perf_counter() - t
        if run:
            times.append(elapsed)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": statistics.median(times), "peak_kib": peak, "model_kib": base}


def binding_overhead(binary: Path, repeat: int) -> dict:

    import flowtracer

    out = subprocess.run([str(binary), "bench", "--sizes", "1024", "--batch", "64", "--backend", "cpu", "--repeat", str(repeat), "--no-heads"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"([0-9.]+)\s*traces/s", out)
    if not m:
        raise SystemExit(f"no traces/s in the bench's output:\n{out}")
    rust = float(m.group(1))
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for i in range(64):
            p = Path(d) / f"batch_{i}.safetensors"
            subprocess.run([str(binary), "synth", "--out", str(p), "--tokens", "1024", "--layers", "1", "--heads", "1", "--seed", str(1000 + i), "--dtype", "f32", "--rank", "2"], check=True, capture_output=True)
            paths.append(p)
        traces = [flowtracer.load_trace(p) for p in paths]
        from safetensors.numpy import load_file

        items = [dict(attention=load_file(str(p))["attention"], question=t.question, answer=t.answer, response=t.response, tokens=t.tokens) for p, t in zip(paths, traces)]
        rates_files, rates_arrays = [], []
        for _ in range(repeat):
            t = time.perf_counter()
            flowtracer.analyze_files(paths, backend="cpu")
            rates_files.append(64 / (time.perf_counter() - t))
            t = time.perf_counter()
            flowtracer.analyze_batch(items, backend="cpu")
            rates_arrays.append(64 / (time.perf_counter() - t))
    return {"rust_traces_per_s": rust, "python_files_traces_per_s": statistics.median(rates_files), "python_arrays_traces_per_s": statistics.median(rates_arrays)}


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
        r = o["rust_traces_per_s"]
        print(f"\nbatch of 64 [N,N] f32 traces, N = 1024, CPU: engine run_batch {r:.0f} traces/s; "
              f"analyze_files {o['python_files_traces_per_s']:.0f} ({o['python_files_traces_per_s'] / r:.3f}×); "
              f"analyze_batch on arrays {o['python_arrays_traces_per_s']:.0f} ({o['python_arrays_traces_per_s'] / r:.3f}×)")


if __name__ == "__main__":
    main()

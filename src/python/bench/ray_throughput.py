"""Traces per second: `flowtracer.ray.score_files` on a local Ray instance against the binary's
`--export --format json` on the same files, side by side in one run on this machine.

    python src/python/bench/ray_throughput.py --binary target/release/flowtracer [--traces 256 --tokens 1024]

Ray's figure excludes `ray.init` and the workers' first start (one untimed pass first: a cluster
is already up when a team scores a run); tasks reserve one CPU each (`num_cpus=1`), so per worker
= total / CPUs."""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import flowtracer
from flowtracer import ray as flow_ray


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--traces", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        rng = np.random.default_rng(0)
        n = args.tokens
        for i in range(args.traces):
            a = np.tril(rng.random((n, n), dtype=np.float32) ** 6)
            a /= a.sum(axis=1, keepdims=True)
            step = run / f"step_{i // 64:06d}"
            step.mkdir(parents=True, exist_ok=True)
            flowtracer.dump(step / f"sample_{i % 64:04d}.safetensors", a, [f"t{k}" for k in range(n)], question=(0, n // 4), answer=(n - 3, n))
        import ray

        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        flow_ray.score_files(run, num_cpus=1).count()  # the workers start and import the engine
        binary, scored = [], []
        for r in range(args.repeat):
            t = time.perf_counter()
            subprocess.run([args.binary, "--export", str(Path(tmp) / f"export{r}"), "--format", "json", str(run)], check=True, capture_output=True)
            binary.append(args.traces / (time.perf_counter() - t))
            t = time.perf_counter()
            flow_ray.score_files(run, num_cpus=1).write_parquet(str(Path(tmp) / f"parquet{r}"))
            scored.append(args.traces / (time.perf_counter() - t))
            import pyarrow.parquet as pq

            assert pq.read_table(Path(tmp) / f"parquet{r}").num_rows == args.traces
        ray.shutdown()
    b, s = float(np.median(binary)), float(np.median(scored))
    print(f"{args.traces} traces of {n} tokens ([N,N] F32), {cpus} CPUs, median of {args.repeat}:")
    print(f"| pipeline | traces/s | per CPU | ratio |\n|---|---|---|---|")
    print(f"| flowtracer --export --format json | {b:.0f} | {b / cpus:.0f} | 1.00× |")
    print(f"| flowtracer.ray.score_files(...).write_parquet (num_cpus=1 a task) | {s:.0f} | {s / cpus:.0f} | {s / b:.2f}× |")


if __name__ == "__main__":
    main()

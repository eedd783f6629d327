"""What `flowtracer.capture` costs on the CPU, beside what a user would do without it: one
sequence of N tokens through a random-weight Qwen2 (GQA) three ways: a plain forward pass (SDPA),
the same with capture, and with `output_attentions=True` (eager attention, every layer's and
head's `[N,N]` returned) averaged over the same layers and heads (the dump the README showed
before capture). The two ways' averages are compared.

Each way runs in fresh processes: one times `--repeat` passes after a warm-up (the median), one
measures a single pass's peak resident memory (`VmHWM`, reset once the model is built) with
glibc told to map each allocation of 64 KiB or more on its own (`MALLOC_MMAP_THRESHOLD_`), so
that memory is given back when freed and the peak follows what is live, not what the allocator
kept (with its defaults, one process's peak moved by ±200 MiB from run to run).

`--model` sets the shape: `tiny` (6 layers, hidden 128), `qwen2-0.5b` (Qwen2-0.5B's shape: 24
layers, hidden 896, 14 query and 2 KV heads, its vocabulary) or `qwen2-7b-attention` (Qwen2-7B's
28 layers of 28 query and 4 KV heads, narrowed to head_dim 16 so that 8k tokens run on a CPU);
random weights, nothing downloaded. `output_attentions` is left out, and says so, where what
it returns would not fit in this machine's available memory.

Also the binding's overhead, when `--binary` names a release build (it writes the traces): a
batch of 64 traces of N = 1024 through `analyze_files` and `analyze_batch`, against the engine
alone on the same traces in the same process.

    python src/python/bench/capture_cost.py --sizes 512,1024,2048,4096 [--model qwen2-0.5b] [--binary target/release/flowtracer]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


#: The model shapes `--model` offers (Qwen2 configs; random weights).
SHAPES: dict[str, dict[str, Any]] = {
    "tiny": dict(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=2),
    "qwen2-0.5b": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True),
    # The memory target is for 28 layers × 28 heads (Qwen2-7B's attention) at 8k: that
    # many layers and heads, narrow (head_dim 16) so that a pass at 8192 tokens runs on a CPU.
    "qwen2-7b-attention": dict(vocab_size=512, hidden_size=448, intermediate_size=1024, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4),
}
#: The three ways a case is run.
WAYS = ("forward", "capture", "output_attentions")


def model_of(shape: str, n: int, attention: str):
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(**SHAPES[shape], max_position_embeddings=n)
    cfg._attn_implementation = attention
    return transformers.Qwen2ForCausalLM(cfg).eval()


def one_case(shape: str, n: int, way: str, repeat: int, average_to: str) -> dict:
    """`repeat` timed passes after one that warms up; with `repeat` 0 one pass, for its peak
    memory over the built model (and its average, saved to `average_to`)."""
    import numpy as np
    import torch

    import flowtracer

    model = model_of(shape, n, "eager" if way == "output_attentions" else "sdpa")
    ids = torch.randint(0, SHAPES[shape]["vocab_size"], (1, n), generator=torch.Generator().manual_seed(1))
    lo, hi = flowtracer.capture(model).layers
    times = []
    base = resident_kib("VmRSS")
    # The peak from here on (building the model's random weights peaks higher than a short
    # forward pass): Linux resets a process's peak resident size where "5" is written here.
    Path("/proc/self/clear_refs").write_text("5")
    a = None
    for run in range(repeat + 1):
        a = None  # (a result shares its pass's buffer: holding it across passes would hold two)
        with torch.no_grad():
            t = time.perf_counter()
            if way == "capture":
                with flowtracer.capture(model) as cap:
                    model(input_ids=ids)
                    a = cap.attention(0)
            elif way == "output_attentions":
                out = model(input_ids=ids, output_attentions=True)
                a = torch.stack(out.attentions[lo:hi])[:, 0].mean(dim=(0, 1)).numpy()
                del out
            else:
                model(input_ids=ids)
            elapsed = time.perf_counter() - t
        if run:
            times.append(elapsed)
    if not repeat and a is not None:
        assert a.shape == (n, n)
        np.save(average_to, np.ascontiguousarray(a, dtype=np.float32))
    return {"seconds": statistics.median(times) if times else None, "added_kib": resident_kib("VmHWM") - base, "layers": [lo, hi]}


def resident_kib(field: str) -> int:
    """This process's resident memory (`VmRSS`) or its peak (`VmHWM`), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def returned_bytes(shape: str, n: int) -> int:
    """What `output_attentions` holds at the end of a pass: every layer's `[1,H,N,N]` float32."""
    s = SHAPES[shape]
    return s["num_hidden_layers"] * s["num_attention_heads"] * n * n * 4


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


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


def run_case(model: str, n: int, way: str, repeat: int, average_to: str) -> dict:
    """One case in a fresh process: timed (`repeat` passes) or, with `repeat` 0, its memory."""
    env = None if repeat else dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    proc = subprocess.run([sys.executable, __file__, "--case", f"{model}:{n}:{way}:{average_to}", "--repeat", str(repeat)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"capture_cost: the {way} case at N = {n} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="512,1024,2048,4096")
    ap.add_argument("--model", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--binary", type=Path, help="a release `flowtracer` binary: also measure the binding's overhead")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        shape, n, way, average_to = args.case.split(":", 3)
        print(json.dumps(one_case(shape, int(n), way, args.repeat, average_to)))
        return
    import numpy as np

    print(f"model: Qwen2 of shape {args.model} ({SHAPES[args.model]['num_hidden_layers']} layers), one sequence, CPU; time: median of {args.repeat}; memory: one pass's peak over the built model")
    print("| N | forward | with capture | × forward | output_attentions | × forward | memory: forward | with capture | more | output_attentions | more | capture against output_attentions |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    mib = lambda kib: f"{kib / 1024:.0f} MiB"
    for n in map(int, args.sizes.split(",")):
        timed, memory, averages = {}, {}, {}
        with tempfile.TemporaryDirectory() as d:
            for way in WAYS:
                if way == "output_attentions" and returned_bytes(args.model, n) > 0.6 * available_bytes():
                    print(f"(N = {n}: output_attentions left out: it returns {returned_bytes(args.model, n) / 2**30:.1f} GiB, this machine has {available_bytes() / 2**30:.1f} GiB available)", file=sys.stderr)
                    continue
                average_to = str(Path(d) / f"{way}.npy")
                timed[way] = run_case(args.model, n, way, args.repeat, average_to)
                memory[way] = run_case(args.model, n, way, 0, average_to)
                if way != "forward":
                    averages[way] = np.load(average_to)
        plain, plain_kib = timed["forward"]["seconds"], memory["forward"]["added_kib"]
        cells = [f"{n}", f"{plain * 1e3:.0f} ms"]
        for way in ("capture", "output_attentions"):
            cells += [f"{timed[way]['seconds'] * 1e3:.0f} ms", f"{timed[way]['seconds'] / plain:.2f}×"] if way in timed else ["-", "-"]
        cells.append(f"+{mib(plain_kib)}")
        for way in ("capture", "output_attentions"):
            cells += [f"+{mib(memory[way]['added_kib'])}", f"{(memory[way]['added_kib'] - plain_kib) / 1024:+.0f} MiB"] if way in memory else ["-", "-"]
        both = "capture" in averages and "output_attentions" in averages
        cells.append(f"max Δ {np.abs(averages['capture'] - averages['output_attentions']).max():.1e}" if both else "-")
        print("| " + " | ".join(cells) + " |", flush=True)
    if args.binary:
        o = binding_overhead(args.binary, args.repeat)
        print(f"\nbatch of 64 [N,N] f32 traces, N = 1024, CPU backend, traces/s (median of {args.repeat}):")
        print(f"files:  engine {o['engine_files']:.0f}, analyze_files {o['files']:.0f} ({o['files'] / o['engine_files']:.3f}×)")
        print(f"arrays: engine {o['engine_arrays']:.0f}, analyze_batch {o['arrays']:.0f} ({o['arrays'] / o['engine_arrays']:.3f}×)")


if __name__ == "__main__":
    main()

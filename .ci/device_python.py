"""The Python package on the lent GPU (run by .ci/device-check.sh with the kit's wheel):

1. torch CUDA tensors (F32, F16, BF16; [N,N] and [L,H,N,N]) go to the CUDA backend where they lie:
   the result's `zero_copy` is true, its aggregation ran on CUDA without a fallback, and its numbers
   match the CPU's on the same values (flow to 1e-4 relative; credit the same but for ties);
2. capture + analyze at N = 8192 on a random-weight model with 28 layers of 28 heads, side by side
   in one run: the forward pass's time and peak device memory plain, with capture, with capture in
   the 36-row chunks it used before 2026-12-04, and with `output_attentions` (what a user would do
   without capture; where it fits), the engine's time on the captured tensor where it lies and
   copied to the CPU backend, as JSON and a Markdown table in $OUT;
3. causal_effect on the same architecture in float32 at N = 2048: batches started from the unhidden
   prefix against whole passes, the same effects and the speed-up;
4. capture on a small model split across the GPU and the CPU (as `device_map` splits one): the same
   attention as on one device.

Without a GPU (a dry run) part 1 runs on CPU tensors, part 2 at N = 512 and part 3 at 128, checking
the script.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

import flowtracer

out_dir = os.environ.get("OUT", "device-out")
gpu = torch.cuda.is_available()
device = torch.device("cuda:0" if gpu else "cpu")
backend = "cuda" if gpu else "cpu"
failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def causal(n: int, slabs: tuple[int, ...], seed: int) -> torch.Tensor:
    """Softmax rows over each query's past, on the device."""
    g = torch.Generator(device=device).manual_seed(seed)
    scores = torch.randn(*slabs, n, n, generator=g, device=device)
    scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool, device=device).triu(1), float("-inf"))
    return scores.softmax(-1)


print(f"flowtracer {flowtracer.__version__}; torch {torch.__version__}; device {device}; engine CUDA device {flowtracer._native.cuda_device()}")
print(flowtracer.backends())

# 1. Parity, in place.
for n, slabs, dtype in [(1024, (), torch.float32), (1024, (4, 8), torch.float16), (2048, (2, 4), torch.bfloat16)]:
    a = causal(n, slabs, seed=n).to(dtype)
    spans = dict(question=(0, 16), answer=(n - 4, n))
    r = flowtracer.analyze(a, backend=backend, **spans)
    ref = flowtracer.analyze(a.cpu(), backend="cpu", **spans)
    name = f"{tuple(a.shape)} {dtype}"
    steps = r.provenance["steps"]
    if gpu:
        check(r.zero_copy is True, f"{name}: read in place on the device (zero_copy)")
        check(steps["aggregate"] == "cuda" and not r.provenance["fallbacks"], f"{name}: aggregated on CUDA, no fallback ({steps}, {r.provenance['fallbacks']})")
    rel = np.abs(r.flow - ref.flow) / np.maximum(np.abs(ref.flow), 1e-300)
    check(bool(np.all((rel <= 1e-4) | (np.abs(r.flow - ref.flow) <= 1e-12))), f"{name}: flow matches the CPU's (max rel {rel.max():.2e})")
    differ = np.flatnonzero(r.credit != ref.credit)
    ties = [k for k in differ if np.sum(np.abs(ref.throughput - ref.throughput[k]) <= 1e-4 * abs(ref.throughput[k])) > 1]
    check(len(differ) == len(ties), f"{name}: credit matches the CPU's ({len(differ)} differ, {len(ties)} of them ties)")

# Bad values on the device: the CPU's error, naming the row.
bad = causal(64, (), seed=1).clone()
bad[2, 5] = 0.3
try:
    flowtracer.analyze(bad, question=(0, 2), answer=(60, 64), backend=backend)
    check(False, "a non-causal tensor on the device is refused")
except flowtracer.TraceError as e:
    check(e.problem == "non_causal" and "row 2" in str(e), f"a non-causal tensor on the device is refused: {e}")

# 2. Capture + analyze at N = 8192 (28 layers × 28 heads).
try:
    import transformers
except ImportError:
    transformers = None
    print("capture: transformers is not installed here; part 2 did not run")
if transformers is not None:
    n = 8192 if gpu else 512
    cfg = transformers.Qwen2Config(
        vocab_size=1024, hidden_size=896, intermediate_size=1024, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=n
    )
    torch.manual_seed(0)
    dtype = torch.bfloat16 if gpu else torch.float32
    model = transformers.Qwen2ForCausalLM(cfg).to(device=device, dtype=dtype).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, n), device=device)

    def sync() -> None:
        if gpu:
            torch.cuda.synchronize()

    def peak_reset() -> int:
        gc.collect()  # what the last run left (its capture, its results) is gone before the base is read
        if not gpu:
            return 0
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()

    layers = flowtracer.capture(model).layers
    old_rows = (32 << 20) // (4 * cfg.num_attention_heads * n)  # the chunk before 2026-12-04 (36 rows at 8k)

    def timed(way: str, repeat: int = 3) -> dict:
        """One way of getting the averaged attention (or none: the plain pass), its forward's
        median time and peak device memory over the pass's base; the first run warms up."""
        times, analyze_s, peaks, extra = [], [], [], {}
        for run in range(repeat + 1):
            base = peak_reset()
            sync()
            t = time.perf_counter()
            a = None
            with torch.no_grad():
                if way == "plain":
                    model(input_ids=ids, logits_to_keep=1)
                elif way == "output_attentions":
                    out = model(input_ids=ids, logits_to_keep=1, output_attentions=True)
                    # Layer by layer, in float32 while reducing (a stack of the layers, or each
                    # made float32 first, would not fit beside the 105 GB returned).
                    a = sum(out.attentions[i][0].mean(dim=0, dtype=torch.float32) for i in range(*layers)) / (layers[1] - layers[0])
                    del out
                else:
                    with flowtracer.capture(model, chunk=old_rows if way == "capture, 36-row chunks" else None) as cap:
                        model(input_ids=ids, logits_to_keep=1)
                    a = cap.sample(0)
                    del cap
            sync()
            elapsed = time.perf_counter() - t
            peak = (torch.cuda.max_memory_allocated() - base) if gpu else 0
            if a is not None and run == repeat:
                t = time.perf_counter()
                r = flowtracer.analyze(a, question=(0, 64), answer=(n - 8, n), backend=backend)
                extra.update(analyze_s=time.perf_counter() - t, zero_copy=r.zero_copy, aggregate_on=r.provenance["steps"]["aggregate"])
                t = time.perf_counter()
                on_host = flowtracer.analyze(a.cpu(), question=(0, 64), answer=(n - 8, n), backend="cpu")
                extra.update(copy_and_cpu_analyze_s=time.perf_counter() - t, same_credit_as_host=int((on_host.credit == r.credit).sum()))
                extra["attention"] = a.float().cpu().numpy() if way == "capture" or way == "output_attentions" else None
                del r, on_host
            del a
            if run:
                times.append(elapsed)
                peaks.append(peak)
        return {"forward_s": statistics.median(times), "peak_bytes": max(peaks), **extra}

    ways = {}
    for way in ("plain", "capture", "capture, 36-row chunks", "output_attentions"):
        if way == "output_attentions":
            model.set_attn_implementation("eager")
        try:
            ways[way] = timed(way, repeat=1 if way == "output_attentions" else 3)
        except torch.OutOfMemoryError as e:
            ways[way] = {"error": str(e).splitlines()[0]}
        finally:
            model.set_attn_implementation("sdpa")
        print(way, {k: v for k, v in ways[way].items() if k != "attention"}, flush=True)
    plain, captured = ways["plain"], ways["capture"]
    if "attention" in ways["output_attentions"]:
        diff = float(np.abs(captured["attention"] - ways["output_attentions"]["attention"]).max())
        captured["max_diff_from_output_attentions"] = diff
        if dtype == torch.float32:
            check(diff <= 1e-5, f"capture equals output_attentions' mean at N = {n} (max {diff:.1e})")
        else:  # the eager pass rounds its scores and probabilities to bfloat16; capture's are float32
            print(f"capture against output_attentions' mean at N = {n} in {dtype}: max {diff:.1e}")
    for w in ways.values():
        w.pop("attention", None)
    extra = captured["peak_bytes"] - plain["peak_bytes"]
    fig = {"n": n, "layers": 28, "heads": 28, "recorded_layers": list(range(*layers)), "dtype": str(dtype), "ways": ways, "extra_bytes": extra, "accumulator_bytes": 4 * n * n}
    print(json.dumps(fig))
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "capture.json"), "w") as f:
        json.dump(fig, f, indent=1)
    with open(os.path.join(out_dir, "capture.md"), "w") as f:
        f.write(f"N = {n}, {dtype}, 28 layers × 28 heads (4 KV heads), layers {layers[0]}..{layers[1] - 1} recorded\n\n")
        f.write("| way | forward | × plain | peak memory over the base | more than plain | analyze on the device | copy + analyze on the CPU |\n|---|---|---|---|---|---|---|\n")
        for way, w in ways.items():
            if "error" in w:
                f.write(f"| {way} | {w['error']} | | | | | |\n")
                continue
            an = f"{w['analyze_s'] * 1e3:.1f} ms" if "analyze_s" in w else "-"
            host = f"{w['copy_and_cpu_analyze_s'] * 1e3:.1f} ms" if "copy_and_cpu_analyze_s" in w else "-"
            f.write(
                f"| {way} | {w['forward_s'] * 1e3:.1f} ms | {w['forward_s'] / plain['forward_s']:.2f}× | {w['peak_bytes'] / 2**20:.0f} MiB | "
                f"{(w['peak_bytes'] - plain['peak_bytes']) / 2**20:+.0f} MiB | {an} | {host} |\n"
            )
    if gpu:
        check(extra <= 1 << 30, f"capture's extra device memory at N = {n}, 28 × 28: {extra / 2**20:.0f} MiB (target ≤ 1 GiB)")
        check(captured["zero_copy"] is True and captured["aggregate_on"] == "cuda", "the captured tensor is analysed on the device, in place")

    # 3. causal_effect on the device: each batch started from the unhidden prefix against whole
    # passes, in float32 so the two can be held to each other: the same effects, and the speed-up.
    del model
    n = 2048 if gpu else 128
    model = transformers.Qwen2ForCausalLM(cfg).to(device=device, dtype=torch.float32).eval()
    ids = torch.randint(0, cfg.vocab_size, (n,), device=device)
    answer, tokens = (n - 8, n), (n // 2 - 16, n // 2 + 16)
    ways = {}
    for reuse in (False, True, False, True):  # each twice, interleaved; the first of each warms up
        sync()
        t = time.perf_counter()
        effect = flowtracer.causal_effect(model, ids, answer=answer, tokens=tokens, reuse_prefix=reuse)
        sync()
        ways[reuse] = (time.perf_counter() - t, effect)
    diff = float(np.abs(ways[True][1] - ways[False][1]).max())
    fig = {"n": n, "hidden": tokens[1] - tokens[0], "whole_passes_s": ways[False][0], "reused_prefix_s": ways[True][0], "max_abs_diff": diff}
    print(json.dumps(fig))
    with open(os.path.join(out_dir, "causal_effect.json"), "w") as f:
        json.dump(fig, f, indent=1)
    check(diff <= 1e-3, f"causal_effect at N = {n} on {device}: the reused prefix agrees with whole passes (max {diff:.1e} nats), {ways[False][0] / ways[True][0]:.2f}× faster")

    # 4. capture on a model split across devices, as `device_map` leaves one: the first half of
    # the layers on the GPU, the rest on the CPU, each module's inputs moved to it by a hook (what
    # accelerate's hooks do). What it records equals the same model's on one device.
    del model
    n = 256
    small = transformers.Qwen2Config(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=n)
    torch.manual_seed(1)
    model = transformers.Qwen2ForCausalLM(small).float().eval()
    ids = torch.randint(0, small.vocab_size, (1, n))
    with flowtracer.capture(model, layers=(1, 5)) as cap, torch.no_grad():
        model(input_ids=ids, use_cache=False)
    whole = cap.attention(0)
    host = torch.device("cpu")
    model.model.embed_tokens.to(device)
    model.model.rotary_emb.to(device)
    for i, layer in enumerate(model.model.layers):
        layer.to(device if i < 3 else host)

    def to_device_of(module, args, kwargs):
        where = next(module.parameters()).device
        move = lambda x: x.to(where) if torch.is_tensor(x) else tuple(move(y) for y in x) if isinstance(x, tuple) else x  # noqa: E731
        return tuple(move(a) for a in args), {k: move(v) for k, v in kwargs.items()}

    for module in [*model.model.layers, model.model.norm, model.lm_head]:
        module.register_forward_pre_hook(to_device_of, with_kwargs=True)
    with flowtracer.capture(model, layers=(1, 5)) as cap, torch.no_grad():
        model(input_ids=ids.to(device), use_cache=False)
    split = cap.attention(0)
    diff = float(np.abs(split - whole).max())
    check(diff <= 1e-4, f"capture of layers 1-4 on a model split across {device} and the CPU equals the model's on one device (max {diff:.1e})")

print(f"{len(failures)} failed" if failures else "all passed")
sys.exit(1 if failures else 0)

"""What `flowtracer.causal_effect` costs on the CPU, each way side by side in one process: a
tiny random-weight Qwen2 (GQA), one sequence of N tokens, every token from N/10 to the answer
(the last 8 tokens) hidden alone, with each batch started from the unhidden pass's keys and
values (`reuse_prefix`, the default) and with every hiding run over the whole sequence. Each is
also given in forward passes of the whole sequence (timed in the same run), so the figure
reads against what one pass of this model costs on this machine.

    python src/python/bench/causal_cost.py --sizes 256,512,1024
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="256,512,1024", help="sequence lengths, comma-separated")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each way per size (the median is reported)")
    args = parser.parse_args()

    import torch
    import transformers

    import flowtracer

    print(f"causal_effect on a tiny Qwen2 (6 layers, 8 heads, 2 KV heads, hidden 128), {torch.get_num_threads()} threads, median of {args.repeat}")
    print("| N | tokens hidden | forward pass ms | whole passes s | reused prefix s | speed-up | passes a hiding: whole · reused | max abs difference (nats) |")
    print("|---|---|---|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        torch.manual_seed(0)
        cfg = transformers.Qwen2Config(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=n)
        model = transformers.Qwen2ForCausalLM(cfg).eval()
        ids = torch.randint(0, 512, (n,))
        answer, tokens = (n - 8, n), (n // 10, n - 8)
        with torch.no_grad():
            model(input_ids=ids[None])  # warm-up
            passes = []
            for _ in range(5):
                t = time.perf_counter()
                model(input_ids=ids[None])
                passes.append(time.perf_counter() - t)
        one_pass = statistics.median(passes)
        seconds: dict[bool, list[float]] = {False: [], True: []}
        effects = {}
        for _ in range(args.repeat):
            for reuse in (False, True):  # interleaved, so a slow moment falls on both
                t = time.perf_counter()
                effects[reuse] = flowtracer.causal_effect(model, ids, answer=answer, tokens=tokens, reuse_prefix=reuse)
                seconds[reuse].append(time.perf_counter() - t)
        whole, reused = statistics.median(seconds[False]), statistics.median(seconds[True])
        hidden = tokens[1] - tokens[0]
        diff = float(abs(effects[True] - effects[False]).max())
        print(
            f"| {n} | {hidden} | {one_pass * 1e3:.1f} | {whole:.2f} | {reused:.2f} | {whole / reused:.2f}× "
            f"| {whole / hidden / one_pass:.2f} · {reused / hidden / one_pass:.2f} | {diff:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

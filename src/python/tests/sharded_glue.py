"""Two CPU processes (gloo) that shard a tiny Qwen2 as the trainers do (FSDP1 around each
decoder layer and the whole, as accelerate's transformer wrap policy does, with and without
`use_orig_params`; FSDP2's `fully_shard`) and run `flowtracer.rl.response_gamma` through the
sharded model, each rank on its own batch, and `FlowGRPOTrainer`'s shaping step holding the
sharded model as `transformers.Trainer` holds it under FSDP (`self.model` the wrapper), TRL's
generation stood in for by the batch. Each rank writes its γ from the sharded model and from
the same weights unsharded, and the trainer's advantages, to `OUT/<kind>.<rank>.json`; the
trainers of both ranks write their traces into `OUT/traces/<kind>`.

Run by `test_sharded.py` in a subprocess (`python sharded_glue.py OUT PORT`): the process group
stays out of the test's interpreter, and a hang is a timeout there, not a stuck test run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tiny  # noqa: E402

KINDS = ("fsdp1", "fsdp1_orig_params", "fsdp2")

PROMPTS = [
    ["Natalia sold clips to 48 of her friends in April.", "How many clips did Natalia sell?"],
    ["Weng earns 12 an hour for babysitting.", "She sold 48 / 2 = 24 clips in May."],
]
COMPLETIONS = [
    [" She sold 48 + 24 = 72 clips.", " The answer is 72."],
    [" Yesterday she did 50 minutes.", " Let us check: 48 + 24 = 72, so the total is 72."],
]


def batch(tok, rank: int):
    """Rank `rank`'s rows laid out as TRL and verl hand them over: left-padded prompts, then
    right-padded completions."""
    pad = tok.token_to_id("[PAD]")
    prompts = [tok.encode(t).ids for t in PROMPTS[rank]]
    completions = [tok.encode(t).ids for t in COMPLETIONS[rank]]
    p, c = max(map(len, prompts)), max(map(len, completions))
    ids = [[pad] * (p - len(a)) + a + b + [pad] * (c - len(b)) for a, b in zip(prompts, completions)]
    mask = [[0] * (p - len(a)) + [1] * (len(a) + len(b)) + [0] * (c - len(b)) for a, b in zip(prompts, completions)]
    response = [[1] * len(b) + [0] * (c - len(b)) for b in completions]
    return torch.tensor(ids), torch.tensor(mask), torch.tensor(response)


def last_tokens(pieces):
    return (len(pieces) - 2, len(pieces))


def shard(model, kind: str):
    """`model` sharded across the group as a trainer shards it; the object its forward runs."""
    layer = type(model.model.layers[0])
    if kind == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for block in model.model.layers:
            fully_shard(block)
        fully_shard(model)
        return model
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    return FSDP(model, auto_wrap_policy=ModuleWrapPolicy({layer}), use_orig_params=kind == "fsdp1_orig_params", device_id=torch.device("cpu"))


def trainer(model, tok, out: Path, traces: Path):
    """A `FlowGRPOTrainer` around `model` whose generation (TRL's, stood in for) hands over the
    rank's batch with group advantages A, writing its traces into `traces` (the ranks' one
    folder)."""
    import datasets
    import trl

    from flowtracer.trl import FlowGRPOTrainer

    args = trl.GRPOConfig(output_dir=str(out), use_cpu=True, report_to="none", per_device_train_batch_size=2, num_generations=2)
    data = datasets.Dataset.from_dict({"prompt": ["a b"]})
    return FlowGRPOTrainer(model=model, processing_class=tok, args=args, train_dataset=data, reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
                           answer_span=last_tokens, flow_trace_dir=traces)


def generated(ids, mask, response, advantages):
    """What TRL's `_generate_and_score_completions` returns for the batch (the fields the
    shaping step reads)."""
    p = ids.shape[1] - response.shape[1]
    return dict(prompt_ids=ids[:, :p], prompt_mask=mask[:, :p], completion_ids=ids[:, p:], completion_mask=response, advantages=advantages)


def run(rank: int, world: int, out: str, port: int) -> None:
    import trl

    import flowtracer
    from flowtracer.rl import response_gamma

    hf = tiny.hf_tokenizer()
    tok = hf.backend_tokenizer
    models = {}
    for kind in KINDS:
        # Saved and loaded before the group exists (transformers saves from the main rank only
        # inside one); every rank builds the same weights from the same seed.
        folder = Path(out) / f"{kind}.{rank}"
        folder.mkdir()
        models[kind] = tiny.tiny("qwen2", folder, tok.get_vocab_size(), "sdpa")
    # As a launcher starts each rank: accelerate then knows the processes (`process_index`).
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    built = {kind: (model, trainer(model, hf, Path(out) / f"{kind}.{rank}" / "trainer", Path(out) / "traces" / kind)) for kind, model in models.items()}
    ids, mask, response = batch(tok, rank)
    advantages = torch.tensor([1.0, -0.5]) * (rank + 1)
    # One row at a time, and rank 0's second row without an answer: every rank still runs as
    # many passes (each gathers the weights with the other rank), or the ranks would wait on
    # each other for ever.
    lengths = response.sum(dim=1).tolist()
    spans = [(n - 2, n) if rank or row == 0 else None for row, n in enumerate(lengths)]
    for kind, (model, flow) in built.items():
        whole = response_gamma(model, ids, mask, response, last_tokens)
        whole_by_row = response_gamma(model, ids, mask, response, spans, rows_per_pass=1)
        sharded_model = shard(model, kind)
        sharded = response_gamma(sharded_model, ids, mask, response, last_tokens)
        sharded_by_row = response_gamma(sharded_model, ids, mask, response, spans, rows_per_pass=1)
        # As transformers.Trainer holds a model under FSDP: `self.model` is the wrapper.
        flow.model = flow.model_wrapped = sharded_model
        flow.model.train()
        trl.GRPOTrainer._generate_and_score_completions = lambda self, inputs: generated(ids, mask, response, advantages)
        shaped = flow._generate_and_score_completions([])
        want = flowtracer.token_advantages(whole.gamma, advantages, flow.flow_params.credit.apply_to_negative)
        record = dict(whole=whole.gamma.tolist(), sharded=sharded.gamma.tolist(), shaped=sharded.shaped,
                      whole_by_row=whole_by_row.gamma.tolist(), sharded_by_row=sharded_by_row.gamma.tolist(), shaped_by_row=sharded_by_row.shaped,
                      trainer=shaped["advantages"].tolist(), want=want.tolist(), process_index=flow.accelerator.process_index)
        (Path(out) / f"{kind}.{rank}.json").write_text(json.dumps(record))
    dist.destroy_process_group()


if __name__ == "__main__":
    out, port = sys.argv[1], int(sys.argv[2])
    mp.spawn(run, args=(2, out, port), nprocs=2)

"""verl's v1 trainer (`trainer.use_v1=True`, verl's default): its batches live in TransferQueue,
each row unpadded (`prompts`, `responses`, `position_ids` as jagged nested tensors), and the
trainer hands workers a `KVBatchMeta` (which rows, which fields) that verl's `register` turns into
the rows themselves on each data-parallel rank. The flow follows that: the answers go into the
queue beside the rows, the workers write γ there, and the advantages verl wrote are read,
shaped by the engine's rule and written back.
"""

from __future__ import annotations

from typing import Any, Callable

from .params import Params
from .rl import ROWS_PER_PASS, AnswerSpan, Span, find_answers, padded_rows, response_gamma, shape_advantages

GAMMA = "flow_gamma"
ANSWER = "flow_answer"
PARAMS = "flowtracer_params"
ROWS = "flowtracer_rows_per_pass"
# What a worker reads of each row: the answers found on the driver beside verl's own fields.
ROW_FIELDS = ["prompts", "responses", "position_ids", ANSWER]


def spans_tensor(found: list[Span | None]) -> Any:
    """`(bs, 2)` int64 answer spans, -1 where none."""
    import torch

    return torch.tensor([[-1, -1] if f is None else [int(f[0]), int(f[1])] for f in found], dtype=torch.int64).reshape(-1, 2)


def spans_of(answers: Any) -> list[Span | None]:
    """`spans_tensor`'s spans back: from `(bs, 2)` as put, or row by row as the queue may hand a
    field back."""
    return [None if a < 0 else (a, e) for a, e in (r.tolist() for r in _rows(answers))]


def _rows(nested: Any) -> list[Any]:
    return list(nested.unbind()) if getattr(nested, "is_nested", False) else list(nested)


def flow_gamma_rows(module: Any, data: Any, params: Params | None = None, backend: str = "auto", rows_per_pass: int = ROWS_PER_PASS) -> Any:
    """γ for v1's unpadded rows (`prompts`, `responses`, `position_ids` and `flow_answer`, as the
    worker receives them from TransferQueue): a jagged nested tensor, each row as long as its
    response. The rows are laid out as verl's v0 batches are (left-padded prompts, right-padded
    responses, each row's own position ids) and run through `response_gamma`."""
    import torch

    prompts, responses = _rows(data["prompts"]), _rows(data["responses"])
    positions = _rows(data["position_ids"]) if "position_ids" in data.keys() else None
    if positions is not None and any(p.dim() != 1 for p in positions):
        raise ValueError("flowtracer.verl: position ids with more than one axis (a multimodal model's rope) are not supported: the capture pass runs text only")
    ids, mask, pos, response_mask = padded_rows(prompts, responses, positions)
    spans = spans_of(data[ANSWER])
    device = next(module.parameters()).device
    gamma = response_gamma(module, ids.to(device), mask.to(device), response_mask.to(device), spans, position_ids=pos.to(device), params=params,
                           backend=backend, rows_per_pass=rows_per_pass).gamma.cpu()
    return torch.nested.as_nested_tensor([gamma[i, : len(r)] for i, r in enumerate(responses)], layout=torch.jagged)


def shaped_compute_advantage(original: Callable[..., Any], params: Params, rule: AnswerSpan, rows_per_pass: int = ROWS_PER_PASS) -> Callable[..., Any]:
    """verl v1's `PPOTrainer._compute_advantage`, then each token's advantage γ·A by the engine's
    rule: the answers found with the trainer's tokenizer and put beside the rows, γ from the
    actor workers (`compute_flow_gamma`, each rank on its rows), the advantages read, shaped and
    written back (still zero outside the response mask)."""

    def _compute_advantage(trainer: Any, batch: Any, metrics: dict[str, Any]) -> Any:
        import transfer_queue as tq
        from tensordict import TensorDict
        from transfer_queue import KVBatchMeta
        from verl.workers.utils.padding import response_to_nested

        batch = original(trainer, batch, metrics)
        keys, partition = batch.keys, batch.partition_id
        responses = tq.kv_batch_get(keys=keys, partition_id=partition, select_fields=["responses"])["responses"]
        found = find_answers([r.tolist() for r in _rows(responses)], trainer.tokenizer, rule)
        tq.kv_batch_put(keys=keys, partition_id=partition, fields=TensorDict({ANSWER: spans_tensor(found)}, batch_size=len(keys)))
        rows = KVBatchMeta(keys=list(keys), tags=[{} for _ in keys], partition_id=partition, fields=list(ROW_FIELDS), extra_info={PARAMS: params.to_json(), ROWS: rows_per_pass})
        trainer.actor_rollout_wg.compute_flow_gamma(rows)
        data = tq.kv_batch_get(keys=keys, partition_id=partition, select_fields=["advantages", "response_mask", GAMMA])
        padded = data.to_padded_tensor()
        shaped = shape_advantages(padded["advantages"], padded[GAMMA], params, padded["response_mask"])
        out = TensorDict({"advantages": response_to_nested(shaped, data["response_mask"])}, batch_size=len(keys))
        tq.kv_batch_put(keys=keys, partition_id=partition, fields=out)
        metrics["flow/no_answer_fraction"] = sum(f is None for f in found) / max(1, len(found))
        return batch

    _compute_advantage.__wrapped__ = original  # type: ignore[attr-defined]
    return _compute_advantage

"""Does flow find the tokens that matter, on your model? The measurement `flowtracer probe
--per-token` makes on the project's own policy, for a Hugging Face causal LM: each token of a
span is hidden alone from every query (its key position masked; the token itself stays in the
input), and the answer is scored teacher-forced under that hiding. What the answer loses, in
nats of its log-probability, is the token's `causal_effect` (trace format v1), which `dump`
writes beside the attention: the app colours by it and sets it against flow in the inspector,
and the export carries it.

The hiding is an additive `[B,1,T,T]` mask, which transformers hands to the attention
implementation as it is; eager and SDPA apply it, flash attention cannot take one, so a model
loaded with it is refused rather than measured without the hiding.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import numpy as np

from ._progress import Progress, reporter

MASK_BYTES = 64 << 20
"""The default size of one batch of masks: how many hidings run in one forward pass."""

_TAKES_A_MASK = ("eager", "sdpa")


def causal_effect(
    model: Any,
    input_ids: Any,
    *,
    answer: Sequence[int],
    tokens: Sequence[int],
    batch_size: int | None = None,
    progress: Progress = None,
) -> np.ndarray:
    """Nats of the answer's log-probability lost when each token of `tokens` (a `(start, end)`
    span before the answer; position 0, the only key the first query has, cannot be hidden) is
    hidden alone from every query: float32 `[n]`, 0 outside `tokens`.

        effect = flowtracer.causal_effect(model, ids, answer=(a0, a1), tokens=(q1, a0))
        flowtracer.dump("t.safetensors", cap.attention(0), toks, question=(0, q1), answer=(a0, a1),
                        causal_effect=effect, source=cap)

    `input_ids` is one unpadded sequence (`[n]` or `[1,n]`); the answer is `(a0, a1)` of it and
    is scored as the model would write it: log p(ids[p] | ids[:p]) summed over p in [a0, a1).
    `batch_size` hidings run per forward pass (by default as many as keep their masks within
    `MASK_BYTES`). `progress`: True for a bar on the terminal, or a callable(done, total).
    """
    import torch

    ids = torch.as_tensor(input_ids)
    if ids.dim() == 0 or ids.dim() > 2 or (ids.dim() == 2 and ids.shape[0] != 1):
        raise ValueError(f"causal_effect: input_ids is one unpadded sequence, [n] or [1,n], not shape {list(ids.shape)}")
    ids = ids.reshape(-1)
    n = int(ids.shape[0])
    a0, a1 = _span("answer", answer)
    t0, t1 = _span("tokens", tokens)
    if not 0 < a0 < a1 <= n:
        raise ValueError(f"causal_effect: answer {a0}:{a1} must be a non-empty span after the first token of the {n} ids")
    if not 1 <= t0 <= t1 <= a0:
        raise ValueError(
            f"causal_effect: tokens {t0}:{t1} must lie before the answer ({a0}:{a1}) and after position 0 "
            "(the first query has no other key to attend to)"
        )
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"causal_effect: batch_size must be at least 1, not {batch_size}")
    impl = str(getattr(model.config, "_attn_implementation", None) or "eager")
    if impl not in _TAKES_A_MASK:
        raise ValueError(
            f"causal_effect: the model runs attention with {impl!r}, which cannot take the mask that hides a token; "
            "load it with attn_implementation='sdpa' or 'eager'"
        )
    param = next(model.parameters())
    dtype = param.dtype if param.dtype.is_floating_point else torch.float32
    context = ids[:a1].to(param.device)
    targets = context[a0:a1]
    never = torch.finfo(dtype).min
    causal = torch.full((a1, a1), never, dtype=dtype, device=param.device).triu_(1)
    keep = _logits_to_keep(model, a1 - a0 + 1)
    per_mask = a1 * a1 * causal.element_size()
    batch = batch_size or max(1, min(t1 - t0, MASK_BYTES // per_mask))

    def answer_logprob(masks: Any) -> Any:
        b = masks.shape[0]
        out = model(input_ids=context.expand(b, -1), attention_mask=masks, use_cache=False, **keep)
        # the positions that predict the answer, a0-1 .. a1-2: the last but one of the kept ones
        kept = out.logits.shape[1]
        logits = out.logits[:, kept - (a1 - a0) - 1 : kept - 1]
        logp = torch.log_softmax(logits.float(), dim=-1)
        return logp.gather(-1, targets.expand(b, -1).unsqueeze(-1)).squeeze(-1).double().sum(-1)

    effect = np.zeros(n, dtype=np.float32)
    report = reporter(progress, unit="tokens hidden")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            base = answer_logprob(causal[None, None])[0]
            for start in range(t0, t1, batch):
                hidden = torch.arange(start, min(start + batch, t1), device=param.device)
                masks = causal.expand(len(hidden), 1, a1, a1).clone()
                masks[torch.arange(len(hidden), device=param.device), 0, :, hidden] = never
                effect[start : start + len(hidden)] = (base - answer_logprob(masks)).cpu().numpy()
                if report is not None:
                    report(start + len(hidden) - t0, t1 - t0)
    finally:
        model.train(was_training)
    return effect


def _logits_to_keep(model: Any, k: int) -> dict[str, int]:
    """Asks for the last `k` positions' logits only, where the model's forward takes that (a
    vocabulary of 150 000 at 4k tokens is 2.4 GB of logits a hiding otherwise)."""
    params = inspect.signature(model.forward).parameters
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in params:
            return {name: k}
    return {}


def _span(name: str, span: Sequence[int]) -> tuple[int, int]:
    if len(span) != 2:
        raise ValueError(f"causal_effect: {name} is a (start, end) pair, not {span!r}")
    return int(span[0]), int(span[1])

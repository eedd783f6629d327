"""Does flow find the tokens that matter, on your model? The measurement `flowtracer probe
--per-token` makes on the project's own policy, for a Hugging Face causal LM: each token of a
span is hidden alone from every query (its key position masked; the token itself stays in the
input), and the answer is scored teacher-forced under that hiding. What the answer loses, in
nats of its log-probability, is the token's `causal_effect` (trace format v1), which `dump`
writes beside the attention: the app colours by it and sets it against flow in the inspector,
and the export carries it. `hide` hides whole sets at once (the probe's highest-flow fifth
against a random fifth).

The hiding is an additive `[B,1,T,T]` mask, which transformers hands to the attention
implementation as it is; eager and SDPA apply it, flash attention cannot take one, so a model
loaded with it is refused rather than measured without the hiding.

Hiding token h changes nothing before h (no earlier query can see it), so a batch of hidings
from h on starts from the unhidden pass's keys and values of the first h tokens and runs only
the rest: over a span in the middle of a trace, about half the work. That needs the model's
cache to be plain full-attention layers (`DynamicLayer`); any other cache runs every hiding in
full, the same numbers at the full price.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal, Sequence, overload

import numpy as np

from ._progress import Progress, reporter
from ._spans import span

BATCH_BYTES = 64 << 20
"""What one batch of hidings may add by default, in masks and copies of the reused keys and
values: how many hidings run in one forward pass."""

_TAKES_A_MASK = ("eager", "sdpa")


@overload
def causal_effect(
    model: Any,
    input_ids: Any,
    *,
    answer: Sequence[int],
    tokens: Sequence[int],
    batch_size: int | None = None,
    reuse_prefix: bool | None = None,
    return_changed: Literal[False] = False,
    progress: Progress = None,
) -> np.ndarray: ...


@overload
def causal_effect(
    model: Any,
    input_ids: Any,
    *,
    answer: Sequence[int],
    tokens: Sequence[int],
    batch_size: int | None = None,
    reuse_prefix: bool | None = None,
    return_changed: Literal[True],
    progress: Progress = None,
) -> tuple[np.ndarray, np.ndarray]: ...


def causal_effect(
    model: Any,
    input_ids: Any,
    *,
    answer: Sequence[int],
    tokens: Sequence[int],
    batch_size: int | None = None,
    reuse_prefix: bool | None = None,
    return_changed: bool = False,
    progress: Progress = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Nats of the answer's log-probability lost when each token of `tokens` (a `(start, end)`
    span before the answer; position 0, the only key the first query has, cannot be hidden) is
    hidden alone from every query: float32 `[n]`, 0 outside `tokens`.

        effect = flowtracer.causal_effect(model, ids, answer=(a0, a1), tokens=(q1, a0))
        flowtracer.dump("t.safetensors", cap.attention(0), toks, question=(0, q1), answer=(a0, a1),
                        causal_effect=effect, source=cap)

    `input_ids` is one unpadded sequence (`[n]` or `[1,n]`); the answer is `(a0, a1)` of it and
    is scored as the model would write it: log p(ids[p] | ids[:p]) summed over p in [a0, a1).
    `batch_size` hidings run per forward pass (by default as many as keep what they add within
    `BATCH_BYTES`). `reuse_prefix`: None starts each batch from the unhidden pass's keys and
    values before its first hidden token where the model's cache allows it, True insists (an
    error where it cannot), False runs every hiding over the whole sequence. `progress`: True
    for a bar on the terminal, or a callable(done, total).

    `return_changed`: also whether each hiding changes the answer the model writes, bool `[n]`
    (`dump(..., answer_changed=...)` keeps it, and `flowtracer fidelity` adds its ROC-AUC
    columns), as `probe --per-token` regenerates the answer. Greedy decoding from the answer's
    start writes the answer exactly when each answer token is the likeliest given the ones
    before it, so the teacher-forced pass says it without decoding; the answer must be the
    model's own greedy one (checked on the unhidden pass, an error naming the first position
    where it is not).
    """
    n = _sequence("causal_effect", input_ids).shape[0]
    t0, t1 = span("causal_effect: tokens", tokens)
    a0 = span("causal_effect: answer", answer)[0]
    if not 1 <= t0 <= t1 <= a0:
        raise ValueError(
            f"causal_effect: tokens {t0}:{t1} must lie before the answer ({a0}:{answer[1]}) and after position 0 "
            "(the first query has no other key to attend to)"
        )
    drop, flipped = _hide("causal_effect", model, input_ids, answer, [[t] for t in range(t0, t1)], batch_size, reuse_prefix, return_changed, progress, "tokens hidden")
    effect = np.zeros(n, dtype=np.float32)
    changed = np.zeros(n, dtype=bool)
    effect[t0:t1], changed[t0:t1] = drop, flipped
    return (effect, changed) if return_changed else effect


@overload
def hide(
    model: Any,
    input_ids: Any,
    *,
    answer: Sequence[int],
    sets: Sequence[Sequence[int]],
    batch_size: int | None = None,
    reuse_prefix: bool | None = None,
    return_changed: Literal[False] = False,
    progress: Progress = None,
) -> np.ndarray: ...


@overload
def hide(
    model: Any,
    input_ids: Any,
    *,
    answer: Sequence[int],
    sets: Sequence[Sequence[int]],
    batch_size: int | None = None,
    reuse_prefix: bool | None = None,
    return_changed: Literal[True],
    progress: Progress = None,
) -> tuple[np.ndarray, np.ndarray]: ...


def hide(
    model: Any,
    input_ids: Any,
    *,
    answer: Sequence[int],
    sets: Sequence[Sequence[int]],
    batch_size: int | None = None,
    reuse_prefix: bool | None = None,
    return_changed: bool = False,
    progress: Progress = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Nats of the answer's log-probability lost when each set of positions is hidden at once
    (from every query, as `causal_effect` hides one): float32 `[len(sets)]`, and with
    `return_changed=True` whether each hiding changes the model's greedy answer. The probe's
    comparison on your model: hide the highest-flow fifth of the reasoning and a random fifth,
    and see which costs the answer more.

        r = flowtracer.analyze(cap.attention(0), question=(0, q1), answer=(a0, a1))
        span = np.arange(q1, a0)
        top = span[np.argsort(-r.throughput[q1:a0])[: len(span) // 5]]
        rand = np.random.default_rng(0).choice(span, len(span) // 5, replace=False)
        lost = flowtracer.hide(model, ids, answer=(a0, a1), sets=[top, rand])

    Every position lies after 0 and before the answer; an empty set hides nothing (0 lost).
    `batch_size`, `reuse_prefix` and `progress` as in `causal_effect`."""
    drop, changed = _hide("hide", model, input_ids, answer, sets, batch_size, reuse_prefix, return_changed, progress, "sets hidden")
    return (drop, changed) if return_changed else drop


def _hide(
    name: str,
    model: Any,
    input_ids: Any,
    answer: Sequence[int],
    sets: Sequence[Sequence[int]],
    batch_size: int | None,
    reuse_prefix: bool | None,
    return_changed: bool,
    progress: Progress,
    unit: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Each set hidden at once, its answer scored: (nats lost float32, greedy answer changed bool)."""
    import torch

    ids = _sequence(name, input_ids)
    n = int(ids.shape[0])
    a0, a1 = span(f"{name}: answer", answer)
    if not 0 < a0 < a1 <= n:
        raise ValueError(f"{name}: answer {a0}:{a1} must be a non-empty span after the first token of the {n} ids")
    hidden_sets = [_positions(name, i, positions, (a0, a1)) for i, positions in enumerate(sets)]
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"{name}: batch_size must be at least 1, not {batch_size}")
    impl = str(getattr(model.config, "_attn_implementation", None) or "eager")
    if impl not in _TAKES_A_MASK:
        raise ValueError(
            f"{name}: the model runs attention with {impl!r}, which cannot take the mask that hides a token; "
            "load it with attn_implementation='sdpa' or 'eager'"
        )
    _refuse_windows(name, model, a1)
    param = next(model.parameters())
    device = param.device
    dtype = param.dtype if param.dtype.is_floating_point else torch.float32
    context = ids[:a1].to(device)
    targets = context[a0:a1]
    never = torch.finfo(dtype).min
    causal = torch.full((a1, a1), never, dtype=dtype, device=device).triu_(1)
    takes = inspect.signature(model.forward).parameters
    keep = _logits_to_keep(takes, a1 - a0 + 1)
    # transformers 5 calls the cache `cache` (in and out), 4.x `past_key_values`
    cache_name = "cache" if "cache" in takes else "past_key_values"

    def scored(out: Any) -> tuple[Any, Any]:
        """The answer's log-probability and, per position, whether its token is the likeliest."""
        # the positions that predict the answer, a0-1 .. a1-2: the last but one of the kept ones
        kept = out.logits.shape[1]
        logits = out.logits[:, kept - (a1 - a0) - 1 : kept - 1]
        logp = torch.log_softmax(logits.float(), dim=-1)
        b = logits.shape[0]
        logprob = logp.gather(-1, targets.expand(b, -1).unsqueeze(-1)).squeeze(-1).double().sum(-1)
        return logprob, logits.argmax(-1) == targets

    # Each set's first position: nothing before it changes, so a batch runs from the least of
    # its sets' (an empty set from the last position the answer needs).
    first = [int(p.min()) if len(p) else a0 - 1 for p in hidden_sets]
    order = sorted(range(len(hidden_sets)), key=first.__getitem__)
    drop = np.zeros(len(hidden_sets), dtype=np.float32)
    changed = np.zeros(len(hidden_sets), dtype=bool)
    report = reporter(progress, unit=unit)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            unhidden = model(input_ids=context[None], attention_mask=causal[None, None], use_cache=reuse_prefix is not False, **keep)
            base, greedy = (x[0] for x in scored(unhidden))
            if return_changed and not bool(greedy.all()):
                p = a0 + int((~greedy).nonzero()[0])
                raise ValueError(
                    f"{name}: return_changed needs the answer to be what the model writes greedily, and at position {p} "
                    f"it would write token {int(unhidden.logits[0, unhidden.logits.shape[1] - (a1 - p) - 1].argmax())} where the answer has {int(context[p])}; "
                    "measure the model's own greedy answer, or leave return_changed unset"
                )
            prefix = _prefix(name, getattr(unhidden, cache_name, None), a1, reuse_prefix)
            del unhidden
            per_token = sum(k[0].numel() * k.element_size() + v[0].numel() * v.element_size() for k, v in prefix or []) // a1
            done = 0
            while done < len(order):
                cut = first[order[done]] if prefix else 0
                per_hiding = (a1 - cut) * a1 * causal.element_size() + cut * per_token
                # A batch from `cut` runs, for a set that starts j positions later, j positions it
                # alone would not need: at most a tenth of the rows it runs.
                b = min(len(order) - done, batch_size or max(1, min(BATCH_BYTES // per_hiding, (a1 - cut) // 10 if prefix else a1)))
                batch = order[done : done + b]
                masks = causal[cut:].expand(b, 1, a1 - cut, a1).clone()
                rows = np.repeat(np.arange(b), [len(hidden_sets[i]) for i in batch])
                cols = np.concatenate([hidden_sets[i] for i in batch])
                masks[torch.from_numpy(rows).to(device), 0, :, torch.from_numpy(cols).to(device)] = never
                inputs = dict(input_ids=context[cut:].expand(b, -1), attention_mask=masks, **keep)
                if prefix:
                    inputs.update({cache_name: _cache([(k[:, :, :cut].expand(b, -1, -1, -1), v[:, :, :cut].expand(b, -1, -1, -1)) for k, v in prefix]), "use_cache": True})
                else:
                    inputs.update(use_cache=False)
                logprob, kept = scored(model(**inputs))
                drop[batch] = (base - logprob).cpu().numpy()
                changed[batch] = (~kept.all(-1)).cpu().numpy()
                done += b
                if report is not None:
                    report(done, len(order))
    finally:
        model.train(was_training)
    return drop, changed


def _positions(name: str, i: int, positions: Sequence[int], answer: tuple[int, int]) -> np.ndarray:
    """`sets[i]` as int64 positions, each after 0 (the first query's only key) and before the answer."""
    hiding = np.asarray(positions, dtype=np.int64).reshape(-1)
    if len(hiding) and not (hiding.min() >= 1 and hiding.max() < answer[0]):
        outside = int(hiding.min() if hiding.min() < 1 else hiding.max())
        raise ValueError(f"{name}: sets[{i}] holds position {outside}; every hidden position lies after 0 and before the answer ({answer[0]}:{answer[1]})")
    return hiding


def _sequence(name: str, input_ids: Any) -> Any:
    import torch

    ids = torch.as_tensor(input_ids)
    if ids.dim() == 0 or ids.dim() > 2 or (ids.dim() == 2 and ids.shape[0] != 1):
        raise ValueError(f"{name}: input_ids is one unpadded sequence, [n] or [1,n], not shape {list(ids.shape)}")
    return ids.reshape(-1)


def _refuse_windows(name: str, model: Any, n: int) -> None:
    """A mask given as a whole replaces the model's own, sliding window and all: where a window
    shorter than the sequence would bite, the hiding would be measured on attention the model
    never runs."""
    config = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
    kinds = set(getattr(config, "layer_types", None) or [])
    for kind, field in (("sliding_attention", "sliding_window"), ("chunked_attention", "attention_chunk_size")):
        window = getattr(config, field, None)
        if window is not None and (not kinds or kind in kinds) and n > window:
            raise ValueError(
                f"{name}: the model's {kind} layers see {window} tokens ({field}) and the sequence up to the answer's end is {n}; "
                f"the mask that hides a token would replace that window, so measure sequences of at most {window} tokens"
            )


def _prefix(name: str, cache: Any, n: int, reuse: bool | None) -> list[tuple[Any, Any]] | None:
    """Each layer's keys and values `[1, heads, n, dim]` from the unhidden pass, where every
    layer of its cache holds exactly those (plain full attention); None where `reuse` is False
    or the cache is another kind (sliding windows, linear attention, quantised, shared keys)."""
    if reuse is False:
        return None
    from transformers.cache_utils import DynamicCache, DynamicLayer

    layers: list[Any] = list(getattr(cache, "layers", None) or []) if type(cache) is DynamicCache else []
    plain = bool(layers) and all(type(layer) is DynamicLayer and layer.is_initialized and layer.keys.shape[-2] == n for layer in layers)
    if not plain:
        if reuse:
            kinds = sorted({type(layer).__name__ for layer in layers}) or [type(cache).__name__]
            raise ValueError(
                f"{name}: reuse_prefix=True needs a cache of plain full-attention layers (DynamicLayer), and this model's is {', '.join(kinds)}; "
                "leave reuse_prefix unset to run every hiding over the whole sequence"
            )
        return None
    return [(layer.keys, layer.values) for layer in layers]


def _cache(layers: list[tuple[Any, Any]]) -> Any:
    from transformers.cache_utils import DynamicCache

    return DynamicCache(ddp_cache_data=layers)


def _logits_to_keep(takes: Any, k: int) -> dict[str, int]:
    """Asks for the last `k` positions' logits only, where the model's forward takes that (a
    vocabulary of 150 000 at 4k tokens is 2.4 GB of logits a hiding otherwise)."""
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in takes:
            return {name: k}
    return {}


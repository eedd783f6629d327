"""Flow-shaped token advantages for RL trainers: the part TRL, verl and OpenRLHF share.

All three lay a batch out the same way: a left-padded prompt of width P, then a right-padded
response of width T (`[pad pad q q q | r r r pad]`). `response_gamma` captures the policy's
attention in no-grad passes over that batch, a few rows at a time (`rows_per_pass`), cuts each
row's valid tokens into a trace (the prompt is the question, the response the response, the
answer a callback finds in it), runs the engine on each pass's traces together, and lays each
trace's credit back over the response columns:
a `(B, T)` γ that is 1 on padding and on every row the engine could not shape. The trainer then
multiplies its own per-sequence advantages with the engine's rule (`token_advantages`).

Answer callbacks see one response's token pieces (each token decoded alone, so that character
offsets map back to tokens) and return `(start, end)` token indices inside the response, or
None when the response has no answer: that row keeps γ = 1. `boxed_answer` and
`last_line_answer` are the two usual rules.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from os import PathLike, fspath
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import TraceError, analyze_batch, token_advantages
from ._capture import capture, dump
from .params import Params
from .results import FlowResult

Span = tuple[int, int]
AnswerSpan = Callable[[Sequence[str]], "Span | None"]
"""`pieces → (start, end)` inside the response, or None."""
QuestionSpan = Callable[[Sequence[str]], "Span | None"]
"""`prompt pieces → (start, end)` inside the prompt's valid tokens, or None for the whole prompt."""


def _token_span(pieces: Sequence[str], start: int, end: int) -> Span | None:
    """The tokens whose characters overlap characters [start, end) of `"".join(pieces)`."""
    first = last = None
    at = 0
    for i, p in enumerate(pieces):
        nxt = at + len(p)
        if nxt > start and at < end and p:
            first = i if first is None else first
            last = i
        at = nxt
    return None if first is None or last is None else (first, last + 1)


def boxed_answer(pieces: Sequence[str]) -> Span | None:
    """The tokens inside the last `\\boxed{…}` (braces balanced), or None."""
    text = "".join(pieces)
    at = text.rfind("\\boxed{")
    if at < 0:
        return None
    start = at + len("\\boxed{")
    depth = 1
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return _token_span(pieces, start, i) if i > start else None
    return None


def last_line_answer(pieces: Sequence[str]) -> Span | None:
    """The tokens of the last non-empty line, when a line comes before it; else None (a
    one-line response has no reasoning to credit)."""
    text = "".join(pieces).rstrip()
    cut = text.rfind("\n")
    if cut < 0 or not text[:cut].strip():
        return None
    return _token_span(pieces, cut + 1, len(text))


def answer_rule(name: str, setting: str = "answer") -> AnswerSpan:
    """The rule a name in a config stands for: `boxed`, `last_line`, or `package.module:function`
    (importable where it runs); `setting` is what an error calls the value."""
    rules = {"boxed": boxed_answer, "last_line": last_line_answer}
    if name in rules:
        return rules[name]
    module, _, attr = name.partition(":")
    if not attr:
        raise ValueError(f"{setting}: {name!r} is not boxed, last_line or package.module:function")
    return getattr(importlib.import_module(module), attr)


def pieces_of(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Each token decoded on its own (special tokens as ""), so that offsets in the joined text
    map back to tokens. One call into the tokenizer per response."""
    if tokenizer is None:
        return [f"<{i}>" for i in ids]
    return tokenizer.batch_decode([[int(i)] for i in ids], skip_special_tokens=True)


def raw_tokens(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """The tokens as the tokenizer spells them (`Ġthe`), what a trace file keeps: the engine
    decodes them for display, multi-byte characters split across tokens included."""
    if tokenizer is None or not hasattr(tokenizer, "convert_ids_to_tokens"):
        return pieces_of(tokenizer, ids)
    return [str(t) for t in tokenizer.convert_ids_to_tokens([int(i) for i in ids])]


def find_answers(responses: Sequence[Sequence[int]], tokenizer: Any, rule: AnswerSpan) -> list[Span | None]:
    """Each response's answer span by `rule` (on the driver, where the tokenizer is)."""
    return [rule(pieces_of(tokenizer, ids)) if len(ids) else None for ids in responses]


@dataclass
class Shaping:
    """What `response_gamma` found for one batch."""

    gamma: Any
    """`(B, T)` float32 on the batch's device: each response token's γ, 1 on padding."""
    results: list[FlowResult | Exception | None]
    """Per row: the engine's result (the credit and what it is made from: no backbone or roles,
    `analyze_batch(..., credit_only=True)`), the error that kept the row unshaped, or None when
    the answer callback found no answer."""
    spans: list[dict[str, Span] | None] = field(default_factory=list)
    """Per row: the trace's question, response and answer spans (over its valid tokens)."""

    @property
    def shaped(self) -> int:
        """Rows whose γ came from a flow (status `ok`)."""
        return sum(isinstance(r, FlowResult) and r.status == "ok" for r in self.results)


@dataclass(frozen=True)
class _Row:
    """One row's trace in sequence positions: valid tokens [start, end), the response from
    `response` to `end`."""

    start: int
    response: int
    end: int


def _one_run(mask_row: Any, row: int) -> tuple[int, int]:
    """A row's valid tokens, checked to be one run (padding only at the ends)."""
    valid = mask_row.nonzero().flatten().tolist()
    if not valid:
        raise ValueError(f"row {row}: the attention mask has no valid token")
    if valid != list(range(valid[0], valid[-1] + 1)):
        raise ValueError(f"row {row}: the attention mask has padding between tokens; flow needs one run of valid tokens")
    return valid[0], valid[-1] + 1


ROWS_PER_PASS = 4
"""Rows the capture pass runs at a time by default: its accumulator holds `[rows, n, n]` float32
(a quarter of a GB a row at 8k tokens), and a trainer's whole local batch at once (a verl rank's
share of a step, say 128 rows) would not fit beside the model."""


def checked_rows_per_pass(value: Any, name: str) -> int:
    """`value` as rows a capture pass, refused (naming `name`) unless a whole number ≥ 1: said
    when a trainer starts, not on its workers after the first rollout."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: a whole number of rows, at least 1, not {value!r}")
    return value


def _gamma_rows(
    model: Any,
    input_ids: Any,
    attention_mask: Any,
    rows: list[_Row],
    answer_span: AnswerSpan | Sequence[Span | None],
    *,
    tokenizer: Any,
    question_span: QuestionSpan | None,
    position_ids: Any,
    params: Params | None,
    layers: tuple[int, int] | None,
    backend: str,
    trace_dir: str | PathLike[str] | None,
    first_row: int,
    rows_per_pass: int,
) -> tuple[list[Any], list[Any]]:
    """Captures the batch `rows_per_pass` rows at a time (each pass over the columns its rows
    use) and runs the engine on every row that has an answer: per row, the engine's result (or
    error, or None) and the trace's spans. Every pass runs, also one whose rows have no answer:
    under FSDP each forward gathers the weights with the other ranks, which run as many."""
    import torch

    checked_rows_per_pass(rows_per_pass, "rows_per_pass")
    b = input_ids.shape[0]
    if position_ids is not None and position_ids.shape[0] != b:
        raise ValueError(f"position_ids {tuple(position_ids.shape)}: one row of positions per row of input_ids ({b}) expected")
    ids_host = input_ids.detach().cpu().tolist()
    found = [_row_spans(i, row, ids_host[i], answer_span, tokenizer, question_span) for i, row in enumerate(rows)]
    results: list[Any] = [None] * len(rows)
    for first in range(0, b, rows_per_pass):
        chunk = list(range(first, min(b, first + rows_per_pass)))
        lo, hi = min(rows[i].start for i in chunk), max(rows[i].end for i in chunk)
        kwargs: dict[str, Any] = dict(input_ids=input_ids[first:first + len(chunk), lo:hi], attention_mask=attention_mask[first:first + len(chunk), lo:hi], use_cache=False)
        if position_ids is not None:
            kwargs["position_ids"] = position_ids[first:first + len(chunk)][..., lo:hi]
        with torch.no_grad(), capture(model, layers=layers, params=params) as cap:
            try:
                model(**kwargs, logits_to_keep=1)
            except TypeError:  # a model without logits_to_keep
                model(**kwargs)
        items: list[dict[str, Any]] = []
        shaped: list[int] = []
        for j, i in enumerate(chunk):
            row_spans = found[i]
            if row_spans is None:
                continue
            span, tokens = row_spans
            items.append(dict(attention=cap.sample(j), tokens=tokens, name=f"row {i}", **span))
            shaped.append(i)
            if trace_dir is not None:
                folder = Path(fspath(trace_dir))
                folder.mkdir(parents=True, exist_ok=True)
                row = rows[i]
                try:
                    dump(folder / f"sample_{first_row + i:04d}.safetensors", items[-1]["attention"], tokens,
                         token_ids=ids_host[i][row.start:row.end], source=cap, question=span["question"], answer=span["answer"], response=span["response"])
                except TraceError:
                    # Attention the engine refuses (a NaN from a diverging policy, say) is not kept
                    # as a file; the same check fails the row's analysis below, which leaves that
                    # row unshaped and counts it in `failed`, and the step goes on.
                    pass
        for i, r in zip(shaped, analyze_batch(items, params=params, backend=backend, errors="return", credit_only=True)):
            results[i] = r
    return results, [None if f is None else f[0] for f in found]


def _row_spans(i: int, row: _Row, ids: list[int], answer_span: AnswerSpan | Sequence[Span | None], tokenizer: Any,
               question_span: QuestionSpan | None) -> tuple[dict[str, tuple[int, int]], list[str]] | None:
    """Row `i`'s trace spans (over its valid tokens) and its tokens, or None where its response
    has no answer."""
    q_len, c = row.response - row.start, row.end - row.response
    prompt = pieces_of(tokenizer, ids[row.start:row.response])
    response = pieces_of(tokenizer, ids[row.response:row.end])
    found = (answer_span(response) if callable(answer_span) else answer_span[i]) if c else None
    if found is None:
        return None
    a0, a1 = int(found[0]), int(found[1])
    if not 0 <= a0 < a1 <= c:
        raise ValueError(f"row {i}: the answer span ({a0}, {a1}) is not inside the response's {c} tokens")
    q = question_span(prompt) if question_span else None
    q = (0, q_len) if q is None else (int(q[0]), int(q[1]))
    tokens = raw_tokens(tokenizer, ids[row.start:row.end]) if tokenizer is not None else prompt + response
    return {"question": q, "response": (q_len, q_len + c), "answer": (q_len + a0, q_len + a1)}, tokens


def _response_credit(result: Any, row: _Row) -> Any:
    """The response's γ from a row's result (float32 NumPy), or None when unshaped."""
    if not isinstance(result, FlowResult):
        return None
    q_len = row.response - row.start
    return result.credit[q_len:q_len + row.end - row.response].astype(np.float32)


def response_gamma(
    model: Any,
    input_ids: Any,
    attention_mask: Any,
    response_mask: Any,
    answer_span: AnswerSpan | Sequence[Span | None] = boxed_answer,
    *,
    tokenizer: Any = None,
    question_span: QuestionSpan | None = None,
    position_ids: Any = None,
    params: Params | None = None,
    layers: tuple[int, int] | None = None,
    backend: str = "auto",
    trace_dir: str | PathLike[str] | None = None,
    first_row: int = 0,
    rows_per_pass: int = ROWS_PER_PASS,
) -> Shaping:
    """γ for every response token of a batch laid out `[left-padded prompt | right-padded
    response]` (TRL, verl): `input_ids`/`attention_mask` are `(B, P+T)`, `response_mask` is
    `(B, T)`. `answer_span` is a callback on each response's pieces, or the rows' answer spans
    found beforehand (inside the response; None for no answer). Runs `model` without gradients
    under `capture`, `rows_per_pass` rows at a time, then the engine on every row that has an
    answer. `trace_dir`, when given, receives each row as a trace file (`sample_NNNN.safetensors`, NNNN the row's index plus `first_row`:
    a data-parallel rank's rows named by their place in the whole batch, so that ranks writing
    into one folder do not meet) for the app or the export; an existing file there is an error,
    never overwritten."""
    import torch

    b, width = input_ids.shape
    t = response_mask.shape[1]
    p = width - t
    rows = []
    for i, c in enumerate(response_mask.sum(dim=1).tolist()):
        v0, v1 = _one_run(attention_mask[i], i)
        if v1 != p + int(c) or v0 > p:
            raise ValueError(f"row {i}: valid tokens [{v0}, {v1}) do not run from a left-padded prompt of width {p} through its {int(c)} response tokens")
        rows.append(_Row(v0, p, v1))
    results, spans = _gamma_rows(model, input_ids, attention_mask, rows, answer_span, tokenizer=tokenizer, question_span=question_span,
                                 position_ids=position_ids, params=params, layers=layers, backend=backend, trace_dir=trace_dir,
                                 first_row=first_row, rows_per_pass=rows_per_pass)
    gamma = torch.ones((b, t), dtype=torch.float32, device=input_ids.device)
    for i, (row, r) in enumerate(zip(rows, results)):
        credit = _response_credit(r, row)
        if credit is not None:
            gamma[i, : len(credit)] = torch.from_numpy(credit).to(gamma.device)
    return Shaping(gamma=gamma, results=results, spans=spans)


def action_gamma(
    model: Any,
    sequences: Any,
    attention_mask: Any,
    action_mask: Any,
    answer_span: AnswerSpan | Sequence[Span | None] = boxed_answer,
    *,
    tokenizer: Any = None,
    question_span: QuestionSpan | None = None,
    params: Params | None = None,
    layers: tuple[int, int] | None = None,
    backend: str = "auto",
    trace_dir: str | PathLike[str] | None = None,
    first_row: int = 0,
    rows_per_pass: int = ROWS_PER_PASS,
) -> Shaping:
    """γ in the layout of OpenRLHF: `sequences`/`attention_mask` `(B, L)` right-padded, and
    `action_mask` `(B, L-1)` where column j marks token j+1 as generated. The response runs
    from the first generated token to the last (tool output between turns included, as the
    policy read it); γ comes back `(B, L-1)` like `action_mask`, 1 where it is 0. `trace_dir`,
    `first_row` and `rows_per_pass` as in `response_gamma`."""
    import torch

    b, width = sequences.shape
    rows = []
    for i in range(b):
        v0, v1 = _one_run(attention_mask[i], i)
        acts = action_mask[i].nonzero().flatten().tolist()
        r0, r1 = (acts[0] + 1, acts[-1] + 2) if acts else (v1, v1)
        if not v0 < r0 <= r1 <= v1:
            raise ValueError(f"row {i}: generated tokens [{r0}, {r1}) are not inside the valid tokens [{v0}, {v1}) after a prompt")
        rows.append(_Row(v0, r0, r1))
    results, spans = _gamma_rows(model, sequences, attention_mask, rows, answer_span, tokenizer=tokenizer, question_span=question_span,
                                 position_ids=None, params=params, layers=layers, backend=backend, trace_dir=trace_dir,
                                 first_row=first_row, rows_per_pass=rows_per_pass)
    gamma = torch.ones(action_mask.shape, dtype=torch.float32, device=sequences.device)
    for i, (row, r) in enumerate(zip(rows, results)):
        credit = _response_credit(r, row)
        if credit is not None:
            gamma[i, row.response - 1: row.end - 1] = torch.from_numpy(credit).to(gamma.device)
    gamma[action_mask == 0] = 1.0
    return Shaping(gamma=gamma, results=results, spans=spans)


def padded_rows(prompts: Sequence[Any], responses: Sequence[Any], positions: Sequence[Any] | None = None, pad: int = 0) -> tuple[Any, Any, Any, Any]:
    """Unpadded rows (token ids of each prompt and response, as Ray Data and verl's v1 trainer
    hold them) laid out as `response_gamma` takes them: `input_ids` and `attention_mask`
    `(B, P+T)` with prompts left-padded and responses right-padded, `position_ids` (each row's
    own `positions`, else counted from its first token), and the response mask `(B, T)`."""
    import torch

    p = max((len(x) for x in prompts), default=0)
    t = max((len(x) for x in responses), default=0)
    b = len(prompts)
    ids = torch.full((b, p + t), pad, dtype=torch.long)
    mask = torch.zeros((b, p + t), dtype=torch.long)
    pos = torch.zeros((b, p + t), dtype=torch.long)
    for i, (q, r) in enumerate(zip(prompts, responses)):
        lo, hi = p - len(q), p + len(r)
        ids[i, lo:hi] = torch.cat([torch.as_tensor(q), torch.as_tensor(r)]).to(torch.long)
        mask[i, lo:hi] = 1
        pos[i, lo:hi] = torch.as_tensor(positions[i]).to(torch.long) if positions is not None else torch.arange(hi - lo)
    return ids, mask, pos, mask[:, p:]


def shape_advantages(advantages: Any, gamma: Any, params: Params | None = None, mask: Any = None) -> Any:
    """Token advantages by the engine's rule from `(B,)` sequence advantages (TRL) or `(B, T)`
    token advantages (verl, OpenRLHF), on the advantages' device and dtype; zero where `mask`
    (when given) is 0. γ is data here: never differentiated."""
    apply_to_negative = (params or Params()).credit.apply_to_negative
    a = advantages.detach()
    dtype = a.dtype if a.is_floating_point() else gamma.dtype
    shaped = token_advantages(gamma.to(device=a.device, dtype=dtype), a, apply_to_negative)
    return shaped if mask is None else shaped * mask.to(shaped.dtype)


def summary(shaping: Shaping) -> dict[str, float]:
    """Metrics a trainer logs per batch: the shares of rows shaped and without an answer, and the rows that failed."""
    rows = len(shaping.results)
    return {
        "flow/shaped_fraction": shaping.shaped / rows if rows else 0.0,
        "flow/no_answer_fraction": sum(r is None for r in shaping.results) / rows if rows else 0.0,
        "flow/failed": float(sum(isinstance(r, Exception) for r in shaping.results)),
    }


__all__ = ["Shaping", "action_gamma", "answer_rule", "boxed_answer", "find_answers", "last_line_answer", "pieces_of", "response_gamma", "shape_advantages", "summary"]

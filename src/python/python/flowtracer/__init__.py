"""FlowTracer from Python: the same Rust engine as the `flowtracer` binary, in process.

    import flowtracer
    r = flowtracer.analyze(att, question=(0, 12), answer=(78, 80))   # NumPy or torch, [N,N] / [L,N,N] / [L,H,N,N]
    r.credit, r.throughput, r.flow            # per-token NumPy arrays (float64)
    r.backbone                                # [(token indices, flow), ...], widest first
    flowtracer.analyze("trace.safetensors")   # a trace file (format v1)

    with flowtracer.capture(model) as cap:    # attention of a Hugging Face model, without output_attentions
        model(**batch)
    r = flowtracer.analyze(cap.attention(0), question=..., answer=...)
    effect = flowtracer.causal_effect(model, ids, answer=..., tokens=...)   # what hiding each token costs the answer
    lost = flowtracer.hide(model, ids, answer=..., sets=[top, rand])         # ... and hiding sets of them at once

Attention is read where it lies when it is C-contiguous float32, float16 or bfloat16, in host
memory or, for the CUDA backend, on the GPU (a torch CUDA tensor, anything with
`__cuda_array_interface__`); the GIL is released while the engine runs. Parameters are a `Params` (or a dict of its sections); errors are
`TraceError`s (a `ValueError`) that name the file or the array and the problem.
"""

from __future__ import annotations

from os import PathLike, fspath
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np

from . import _native
from ._arrays import DeviceRun, address, engine_array, refused
from ._causal import causal_effect, hide
from ._cuda import choose_device, point_engine_at_nvrtc
from ._progress import Progress, reporter
from ._spans import span
from .params import Params, params_json
from .results import CreditRow, Credits, FlowResult, Trace

point_engine_at_nvrtc()

__all__ = [
    "FlowResult",
    "Params",
    "Trace",
    "TraceError",
    "Credits",
    "CreditRow",
    "analyze",
    "analyze_batch",
    "analyze_files",
    "load_trace",
    "read_credits",
    "token_advantages",
    "capture",
    "dump",
    "causal_effect",
    "hide",
    "fidelity",
    "backends",
    "__version__",
]
__version__: str = _native.__version__
TraceError = _native.TraceError

Span = tuple[int, int]
ParamsLike = Params | Mapping[str, Any] | str | PathLike[str] | None
Errors = Literal["raise", "return"]


def _item(attention: Any, question: Span, answer: Span, response: Span | None, tokens: Sequence[str | bytes] | None, name: str, on_device: DeviceRun) -> dict[str, Any]:
    """What the engine reads of one item, or the `TraceError` that refuses it (the checks made
    here, before the engine's, are errors of the same kind)."""
    try:
        spans = span(f"{name}: question", question), span(f"{name}: answer", answer), None if response is None else span(f"{name}: response", response)
    except ValueError as e:
        raise refused(str(e), "span") from None
    array, bf16 = engine_array(attention, name, on_device)
    return {
        "attention": array,
        "bf16": bf16,
        # a list of str is handed back as it is; None becomes `<0>`, `<1>`, ... when first read;
        # anything else is str() of each item, in the engine
        "tokens": tokens,
        "question": spans[0],
        "answer": spans[1],
        "response": spans[2],
        "name": name,
    }


# What an item of `analyze_batch` may hold: `analyze`'s arguments. A key outside them (a
# misspelt `reponse`) would otherwise be a span silently left at its default.
_ITEM_KEYS = ("attention", "question", "answer", "response", "tokens", "name")


def _checked_errors(errors: str) -> None:
    if errors not in ("raise", "return"):
        raise ValueError(f'errors={errors!r}: expected "raise" or "return"')


def _paths(paths: str | PathLike[str] | Iterable[str | PathLike[str]]) -> list[str]:
    """Paths as str; one path is a list of one (iterated, a str would be its characters, and
    `/` among them a folder to walk)."""
    return [fspath(paths)] if isinstance(paths, (str, PathLike)) else [fspath(p) for p in paths]


def _finish(answers: list[Any], addresses: Iterable[int | None], errors: Errors) -> list[Any]:
    out = [a if isinstance(a, BaseException) else FlowResult._of(a, addr) for a, addr in zip(answers, addresses)]
    if errors == "raise":
        for a in out:
            if isinstance(a, BaseException):
                raise a
    return out


def analyze(
    attention: Any,
    *,
    question: Span | None = None,
    answer: Span | None = None,
    response: Span | None = None,
    tokens: Sequence[str | bytes] | None = None,
    params: ParamsLike = None,
    backend: str = "auto",
    name: str = "attention",
) -> FlowResult:
    """Runs the pipeline on one trace: attention rows of softmax probabilities (query, key) as a
    NumPy array or torch tensor shaped `[N,N]`, `[L,N,N]` or `[L,H,N,N]`, between the `question`
    and `answer` spans (`response` defaults to everything after the question); or a trace file's
    path, between the spans it records. `tokens` (N of them) become the result's: a list of str
    is kept as it is, not copied; bytes (tiktoken's pieces) are spelled as byte-level BPE spells
    them (`Ġ` for a space), which the app and the export decode, a character split across pieces
    included; without them the result numbers the tokens `<0>`, `<1>`, ...
    `name` is what errors call the array. `params`: a `Params`, a mapping of sections, or the
    path of a `--params` file (TOML or JSON, as the binary reads it). A CUDA tensor on the
    engine's device is read there by the CUDA backend (`backend` "auto" or "cuda"); with another
    backend a torch tensor is copied to the host first."""
    if isinstance(attention, (str, PathLike)):
        if question is not None or answer is not None or response is not None:
            raise TypeError("a trace file records its own spans: pass question/answer only with an array")
        return analyze_files([attention], params=params, backend=backend)[0]
    if question is None or answer is None:
        raise TypeError("analyze(attention, ...) needs question=(start, end) and answer=(start, end)")
    return analyze_batch([dict(attention=attention, question=question, answer=answer, response=response, tokens=tokens, name=name)], params=params, backend=backend)[0]


def analyze_batch(items: Sequence[Mapping[str, Any]], *, params: ParamsLike = None, backend: str = "auto", errors: Errors = "raise", progress: Progress = None, credit_only: bool = False) -> list[Any]:
    """Runs many traces at once (in parallel in the engine). Each item is a dict with the keys of
    `analyze`: `attention`, `question`, `answer`, and optionally `response`, `tokens`, `name`
    (default `attention[i]`). With `errors="return"` a trace that fails gives its `TraceError`
    in its place; with `"raise"` (the default) the first one is raised after all have run.
    `progress`: `True` for a bar on the terminal, or a callable `(done, total)` called from this
    thread as traces finish (a tqdm bar: `lambda done, total: bar.update(done - bar.n)`).
    `credit_only=True` makes only the credit and what it is made from (reach, flow, throughput,
    status), as an RL step's shaping needs: the backbone, far sources, hubs and checkpoints come
    back empty, and a 1k-token trace takes about three fifths of the time."""
    _checked_errors(errors)
    on_device = DeviceRun(backend, _native.cuda_device)
    # An item refused before the engine sees it (a reversed span, an integer array) keeps its
    # place as its error, as one the engine refuses does: it costs the other items nothing.
    answers: list[Any] = []
    prepared = []
    for i, it in enumerate(items):
        # (duck-typed: a pandas row, with keys and items, reads as its dict would)
        if not (hasattr(it, "keys") and hasattr(it, "__getitem__")):
            raise TypeError(f"analyze_batch: item {i} is a {type(it).__name__}, not a dict (each item is a dict with attention, question and answer)")
        missing = [k for k in ("attention", "question", "answer") if k not in it]
        if missing:
            raise KeyError(f"analyze_batch: item {i} has no {', '.join(missing)} (each item is a dict with attention, question and answer)")
        unknown = [repr(k) for k in it.keys() if k not in _ITEM_KEYS]
        if unknown:
            raise KeyError(f"analyze_batch: item {i} has {', '.join(unknown)}, which analyze does not take (the keys: {', '.join(_ITEM_KEYS)})")
        try:
            prepared.append(_item(it["attention"], it["question"], it["answer"], it.get("response"), it.get("tokens"), it.get("name") or f"attention[{i}]", on_device))
            answers.append(None)
        except TraceError as e:
            answers.append(e)
    if prepared:
        choose_device()
        ran = iter(_native.analyze_arrays(prepared, params_json(params), backend, reporter(progress), credit_only))
        answers = [next(ran) if a is None else a for a in answers]
    return _finish(answers, (address(it["attention"]) for it in items), errors)


def analyze_files(paths: str | PathLike[str] | Iterable[str | PathLike[str]], *, params: ParamsLike = None, backend: str = "auto", errors: Errors = "raise", progress: Progress = None) -> list[Any]:
    """Runs trace files (format v1), each between the spans it records (one path: a list of one
    result); a run folder among the paths stands for its trace files, found as the binary finds
    them (a folder without any is a `TraceError`); errors and progress as in `analyze_batch`."""
    _checked_errors(errors)
    names = _native.trace_files(_paths(paths))
    choose_device()
    answers = _native.analyze_files(names, params_json(params), backend, reporter(progress))
    return _finish(answers, (None for _ in names), errors)


def load_trace(path: str | PathLike[str]) -> Trace:
    """A trace file's tokens, spans, layout and metadata, checked, without running the pipeline."""
    return Trace._of(_native.load_trace(fspath(path)))


def read_credits(path: str | PathLike[str]) -> Credits:
    """A `credits.safetensors` that `flowtracer --export` wrote, read back and checked."""
    return Credits._of(_native.read_credits(fspath(path)))


def token_advantages(gamma: Any, advantages: Any, apply_to_negative: bool = True) -> Any:
    """Per-token advantages with the engine's rule: A_t = γ_t·A, except that a negative A is left
    unshaped unless `apply_to_negative`. `gamma` is `(..., T)`; `advantages` is one value per
    sequence (`gamma.shape[:-1]`, as TRL has them), one per token (`gamma.shape`, as verl and
    OpenRLHF have them), or a scalar. A torch `gamma` gives a torch tensor on its
    device and in its dtype; NumPy gives float64. A NaN or infinity in either is a `ValueError`
    naming where it is, not a loss that turns NaN a step later."""
    like = gamma if type(gamma).__module__.startswith("torch") else None
    to_np = lambda x: x.detach().double().cpu().numpy() if type(x).__module__.startswith("torch") else np.asarray(x, dtype=np.float64)
    # (np.asarray, not np.ascontiguousarray: the latter turns a scalar into shape (1,))
    out = _native.token_advantages(np.asarray(to_np(gamma), order="C"), np.asarray(to_np(advantages), order="C"), bool(apply_to_negative))
    if like is not None:
        import torch

        return torch.from_numpy(out).to(device=like.device, dtype=like.dtype if like.is_floating_point() else torch.float64)
    return out


def fidelity(paths: str | PathLike[str] | Iterable[str | PathLike[str]], *, params: ParamsLike = None, seed: int = 0, errors: Errors = "raise", progress: Progress = None) -> dict[str, Any]:
    """How well each credit score ranks tokens by what hiding them costs the answer, over trace
    files (or run folders) that carry `causal_effect` (`causal_effect` + `dump`): the binary's
    `flowtracer fidelity`. Returns `table` (its Markdown), `rows` (per score: `score`,
    `spearman` and `auc` as `(mean, std, lo, hi, traces)` or None), `traces`, `left_out` (the
    traces without effects) and `failed`. A file that cannot be read raises its `TraceError`;
    with `errors="return"` it is left out of the table and its error is listed in `failed`, as
    the binary names it and goes on."""
    _checked_errors(errors)
    files = _native.trace_files(_paths(paths))
    return _native.fidelity(files, params_json(params), seed, errors == "return", reporter(progress))


def backends() -> str:
    """The backends this build and machine have, and which one `auto` takes."""
    return _native.backends()


def __getattr__(name: str) -> Any:
    # `capture` and `dump` need torch; importing the package does not.
    if name in ("capture", "dump"):
        from . import _capture as module

        return getattr(module, name)
    raise AttributeError(f"module 'flowtracer' has no attribute {name!r}")

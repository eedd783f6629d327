"""The typed objects the package hands back: a result per trace, a trace file's contents, and a
credits file read back."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from .params import Params


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
        )
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


class _ComparedByValue:
    """`==` field by field, arrays by their values (NaN equal to NaN). A dataclass's own `==`
    compares tuples of fields, and an array's `==` is an array whose truth raises."""

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(_same(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))  # type: ignore[arg-type]

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class FlowResult(_ComparedByValue):
    """Everything the pipeline derives from one trace (FLOWTRACER.md §1). Per-token arrays are
    float64 of length N; spans are `(start, end)` token ranges."""

    source: str
    """The trace file, or the name given to an array."""
    status: str
    """`ok`, or why the flow could not be conditioned (e.g. `no_path`)."""
    tokens: list[str]
    """As the file holds them (made into str when first read), or as given with an array: the
    caller's own list of str (not a copy), or `<0>`, `<1>`, ... when none were given."""
    question: tuple[int, int]
    response: tuple[int, int]
    answer: tuple[int, int]
    sink: tuple[int, int]
    """The positions the flow was conditioned on (`answer.sink`)."""
    reach: np.ndarray
    flow: np.ndarray
    throughput: np.ndarray
    credit: np.ndarray
    """γ per token: what RL multiplies each token's advantage by."""
    far_sources: np.ndarray
    """Per token; empty, as are the backbone, hubs and checkpoints, from a run that made only the
    credit (`analyze_batch(..., credit_only=True)`, an RL step's shaping)."""
    backbone: list[tuple[list[int], float]]
    """Widest question→answer paths, widest first: `(token indices, flow)`."""
    hubs: np.ndarray
    checkpoints: np.ndarray
    answer_inflow: float
    backbone_flow: float
    question_sources: int
    layers: list[int]
    heads: list[int]
    provenance: dict[str, Any]
    """Which executor ran each step, and any fallback with its reason."""
    zero_copy: bool | None
    """For an array: whether the engine read the caller's own memory (None for a file)."""
    sample_id: str | None = None
    """The trace's `sample_id` metadata, where it has one."""
    step: int | None = None
    """The training step the trace's metadata records, where it has one."""

    @classmethod
    def _of(cls, d: dict[str, Any], caller_address: int | None = None) -> "FlowResult":
        # `d` is the engine's own dict, made for this result alone, with exactly the fields (the
        # provenance already a dict): it becomes the object's __dict__ as it is. A frozen
        # dataclass's __init__ sets each field through object.__setattr__, most of what handing
        # 64 results back had cost in Python.
        engine_address = d.pop("attention_address")
        d["zero_copy"] = None if caller_address is None else caller_address == engine_address
        result = object.__new__(cls)
        object.__setattr__(result, "__dict__", d)
        return result

    def __getattr__(self, name: str) -> Any:
        # Only for attributes not in __dict__: the parts the engine hands over unmade
        # (`_native.Unmade`: a file's tokens, the backbone, provenance, layers and heads), each
        # made on its first read and kept.
        d = object.__getattribute__(self, "__dict__")
        unmade = d.get("_unmade")
        if unmade is None or name.startswith("_") or name not in unmade.names():
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        value = d[name] = unmade.make(name)
        return value

    @property
    def n(self) -> int:
        """Tokens in the trace (what the one-line summary shows as `n`)."""
        return len(self.reach)

    def __repr__(self) -> str:
        # What a notebook shows of a result: the figures, not 4 000 tokens and five arrays (the
        # dataclass's own repr printed every one). Counts only, so nothing unmade is made.
        return (
            f"FlowResult(source={self.source!r}, status={self.status!r}, n={self.n}, "
            f"question={self.question}, response={self.response}, answer={self.answer}, "
            f"backbone_flow={self.backbone_flow:.3g}, hubs={len(self.hubs)}, checkpoints={len(self.checkpoints)}, "
            f"credited={int((self.credit > 1.0).sum())})"
        )

    def __getstate__(self) -> dict[str, Any]:
        # (pickle, copy, Ray: every part made, not the engine's holder)
        d = object.__getattribute__(self, "__dict__")
        unmade = d.get("_unmade")
        made = {name: getattr(self, name) for name in unmade.names()} if unmade is not None else {}
        return {k: v for k, v in d.items() if k != "_unmade"} | made


@dataclass(frozen=True, eq=False)
class Trace(_ComparedByValue):
    """A trace file's contents without its attention (which stays in the file until analysed)."""

    path: str
    tokens: list[str]
    """As the file holds them (e.g. byte-level BPE's `Ġthe`)."""
    text: list[str]
    """What each token stands for (`" the"`), as the app and the export show it."""
    tokenizer: str
    """How the tokens encode their text: the file's `tokenizer`, else detected."""
    question: tuple[int, int]
    response: tuple[int, int]
    answer: tuple[int, int]
    shape: list[int]
    """The attention tensor's shape: `[N,N]`, `[L,N,N]` or `[L,H,N,N]`."""
    dtype: str
    token_ids: np.ndarray | None
    causal_effect: np.ndarray | None
    """Nats of the answer's log-probability lost when each token is hidden (`causal_effect`), if
    the file has them."""
    answer_changed: np.ndarray | None
    """Whether hiding each token changed the answer (bool `[n]`, from the metadata's
    `causal_answer_changed`), if the file says."""
    meta: dict[str, Any]
    """The format's optional metadata: layers, num_layers, model, reward, ..."""

    @property
    def n(self) -> int:
        """Tokens in the trace."""
        return len(self.tokens)

    def __repr__(self) -> str:
        return (
            f"Trace(path={self.path!r}, n={self.n}, shape={self.shape}, dtype={self.dtype!r}, "
            f"tokenizer={self.tokenizer!r}, question={self.question}, response={self.response}, answer={self.answer})"
        )

    @classmethod
    def _of(cls, d: dict[str, Any]) -> "Trace":
        d = dict(d)
        d["meta"] = json.loads(d["meta"])
        return cls(**d)

    def analyze(self, params: Any = None, backend: str = "auto") -> FlowResult:
        from . import analyze_files

        return analyze_files([self.path], params=params, backend=backend)[0]


@dataclass(frozen=True, eq=False)
class CreditRow(_ComparedByValue):
    """One trace of a `credits.safetensors`."""

    source: str
    sample_id: str | None
    status: str
    credit: np.ndarray
    """γ per token, float32."""
    token_ids: np.ndarray
    """int64; −1 where the trace had none."""
    question: tuple[int, int]
    response: tuple[int, int]
    answer: tuple[int, int]

    @property
    def n(self) -> int:
        """Tokens in the trace."""
        return len(self.credit)

    def __repr__(self) -> str:
        return (
            f"CreditRow(source={self.source!r}, sample_id={self.sample_id!r}, status={self.status!r}, n={self.n}, "
            f"question={self.question}, response={self.response}, answer={self.answer})"
        )


@dataclass(frozen=True, eq=False)
class Credits(_ComparedByValue):
    """A `credits.safetensors` read back: its traces in order, and the parameters that made it."""

    rows: list[CreditRow]
    params: Params

    def __repr__(self) -> str:
        return f"Credits({len(self.rows)} rows, {sum(len(r.credit) for r in self.rows)} tokens)"

    @classmethod
    def _of(cls, d: dict[str, Any]) -> "Credits":
        return cls(rows=[CreditRow(**r) for r in d["rows"]], params=Params._checked(d["params"]))

"""FlowTracer from Python: the same Rust engine as the `flowtracer` binary, in process.

    import flowtracer
    r = flowtracer.analyze("trace.safetensors")                 # a trace file (format v1)
    r = flowtracer.analyze_attention(att, tokens, question=(0, 12), response=(12, 80), answer=(78, 80))
    r.credit, r.throughput, r.flow            # per-token NumPy arrays (float64)
    r.backbone                                # [(token indices, flow), ...], widest first

Parameters are the `Params` of a `--params` file, as a dict (`{"credit": {"fraction": 0.2}}`);
what is left out takes its default. Errors are `ValueError`s that name the file or the array.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from os import PathLike
from typing import Any, Mapping, Sequence

import numpy as np

from . import _native

__all__ = ["FlowResult", "analyze", "analyze_attention", "backends", "__version__"]
__version__ = _native.__version__


@dataclass(frozen=True)
class FlowResult:
    """Everything the pipeline derives from one trace (FLOWTRACER.md §1)."""

    source: str
    status: str
    tokens: list[str]
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
    backbone: list[tuple[list[int], float]]
    hubs: np.ndarray
    checkpoints: np.ndarray
    answer_inflow: float
    backbone_flow: float
    question_sources: int
    layers: list[int]
    heads: list[int]
    provenance: dict[str, Any]
    """Which executor ran each step, and any fallback with its reason."""

    @classmethod
    def _of(cls, d: dict[str, Any]) -> "FlowResult":
        d = dict(d)
        d["provenance"] = json.loads(d["provenance"])
        return cls(**d)


def _params(params: Mapping[str, Any] | None) -> str | None:
    return None if params is None else json.dumps(params)


def analyze(path: str | PathLike[str], params: Mapping[str, Any] | None = None) -> FlowResult:
    """Runs the pipeline on a trace file (format v1), between the spans the file gives."""
    return FlowResult._of(_native.analyze_file(str(path), _params(params)))


def analyze_attention(
    attention: np.ndarray,
    tokens: Sequence[str],
    question: tuple[int, int],
    response: tuple[int, int],
    answer: tuple[int, int],
    params: Mapping[str, Any] | None = None,
    name: str = "attention",
) -> FlowResult:
    """Runs the pipeline on attention in memory: `[N,N]`, `[L,N,N]` or `[L,H,N,N]` rows of
    softmax probabilities (query, key), any float dtype (computed in float32). Spans are
    `(start, end)` token ranges; `name` is what errors call the array."""
    att = np.ascontiguousarray(attention, dtype=np.float32)
    return FlowResult._of(
        _native.analyze_attention(att, list(tokens), tuple(question), tuple(response), tuple(answer), _params(params), name)
    )


def backends() -> str:
    """The backends this build and machine have, and which one `auto` takes."""
    return _native.backends()

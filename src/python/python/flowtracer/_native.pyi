"""Type stubs of the compiled engine (`src/python/src/lib.rs`); the public API is `flowtracer`."""

from typing import Any, Callable, Sequence, final

import numpy as np

__all__ = [
    "TraceError",
    "Unmade",
    "analyze_arrays",
    "analyze_files",
    "load_trace",
    "read_credits",
    "discover",
    "trace_files",
    "file_columns",
    "token_advantages",
    "params_default",
    "params_parse",
    "default_layers",
    "write_trace",
    "fidelity",
    "backends",
    "cuda_device",
    "engine_seconds",
    "__version__",
    "ANSWER_CHANGED",
]

__version__: str
ANSWER_CHANGED: str
"""The metadata key listing the tokens whose hiding changed the answer (the engine's)."""

class TraceError(ValueError):
    """A trace, array or file the engine cannot use; `problem` names the kind (`non_causal`, `span`, ...)."""

    problem: str

@final
class Unmade:
    """The parts of a result kept in the engine until first read (a file's tokens, backbone,
    provenance, layers, heads)."""

    def names(self) -> list[str]: ...
    def make(self, name: str) -> Any: ...

def analyze_arrays(items: Sequence[dict[str, Any]], params_json: str | None = None, backend: str = "auto", progress: Callable[[int, int], object] | None = None, credit_only: bool = False) -> list[dict[str, Any] | TraceError]: ...
def analyze_files(paths: Sequence[str], params_json: str | None = None, backend: str = "auto", progress: Callable[[int, int], object] | None = None) -> list[dict[str, Any] | TraceError]: ...
def load_trace(path: str) -> dict[str, Any]: ...
def read_credits(path: str) -> dict[str, Any]: ...
def discover(root: str) -> list[str]: ...
def trace_files(paths: Sequence[str]) -> list[str]: ...
def file_columns(paths: Sequence[str], params_json: str | None = None, backend: str = "auto") -> dict[str, Any]: ...
def token_advantages(gamma: np.ndarray, advantages: np.ndarray, apply_to_negative: bool) -> np.ndarray: ...
def params_default() -> str: ...
def params_parse(text: str | None = None, json: bool = True, path: str | None = None) -> str: ...
def default_layers(total: int, params_json: str | None = None) -> tuple[int, int]: ...
def write_trace(
    path: str,
    attention: np.ndarray,
    tokens: Sequence[str | bytes],
    question: tuple[int, int],
    answer: tuple[int, int],
    response: tuple[int, int] | None = None,
    token_ids: Sequence[int] | None = None,
    meta: dict[str, str] | None = None,
    overwrite: bool = False,
    causal_effect: Sequence[float] | None = None,
) -> None: ...
def fidelity(paths: Sequence[str], params_json: str | None = None, seed: int = 0, keep_going: bool = False, progress: Callable[[int, int], object] | None = None) -> dict[str, Any]: ...
def backends() -> str: ...
def cuda_device() -> int | None:
    """The CUDA device the engine runs on (its arrays are read in place there), or None."""
def engine_seconds(
    items: Sequence[dict[str, Any]] | None = None,
    paths: Sequence[str] | None = None,
    params_json: str | None = None,
    backend: str = "auto",
) -> float: ...

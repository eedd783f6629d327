"""Spans as the engine takes them, read once from whatever the caller holds (a tuple, a list, a
NumPy row, torch scalars), so every entry point refuses a bad one with the same words."""

from __future__ import annotations

import operator
from typing import Any


def span(name: str, value: Any) -> tuple[int, int]:
    """`(start, end)` as two ints with 0 ≤ start ≤ end, or a `ValueError` that names the span and
    says what is wrong with it. A whole float (4.0) is taken as the int it is; 4.5 is refused,
    not truncated."""
    try:
        pair = tuple(value)
    except TypeError:
        raise ValueError(f"{name}: a span is a (start, end) pair, not {value!r}") from None
    if len(pair) != 2:
        raise ValueError(f"{name}: a span is a (start, end) pair, not {value!r}")
    start, end = (_bound(name, which, v) for which, v in zip(("start", "end"), pair))
    if end < start:
        raise ValueError(f"{name}: span {start}:{end} ends before it starts")
    return start, end


def _bound(name: str, which: str, v: Any) -> int:
    try:
        i = operator.index(v)
    except TypeError:
        f = float(v) if hasattr(v, "__float__") else None
        if f is None or not f.is_integer():
            raise ValueError(f"{name}: {which} {v!r} is not a whole number") from None
        i = int(f)
    if i < 0:
        raise ValueError(f"{name}: {which} {i} is negative")
    return i

"""`Params`: every choice the method leaves open, the engine's own struct (FLOWTRACER.md §1).

The defaults, the checks and the TOML/JSON reading are the engine's: a `Params` is the JSON the
engine wrote back after checking it, so a value the binary refuses is refused here with the
same message, and an export made from Python records exactly what ran.
"""

from __future__ import annotations

import json
import math
import re
from os import PathLike
from types import MappingProxyType
from typing import Any, Mapping

from . import _native


class _Section:
    """One read-only section (`params.credit`), its fields as attributes."""

    def __init__(self, name: str, fields: Mapping[str, Any]):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_fields", MappingProxyType(dict(fields)))

    def __getattr__(self, key: str) -> Any:
        try:
            return self._fields[key]
        except KeyError:
            raise AttributeError(f"params.{self._name} has no field {key!r} (fields: {', '.join(self._fields)})") from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"Params are immutable: use params.replace({self._name}={{{key!r}: ...}})")

    def __repr__(self) -> str:
        return f"{self._name}({', '.join(f'{k}={v!r}' for k, v in self._fields.items())})"


class Params:
    """The engine's parameters. `Params()` holds the defaults; keyword arguments override whole
    sections' fields, e.g. `Params(credit={"fraction": 0.2}, answer={"sink": "tokens"})`.
    `Params.load("p.toml")` reads a `--params` file. Sections: aggregate, answer, backbone, steps,
    roles, credit."""

    __slots__ = ("_data",)

    def __init__(self, **sections: Mapping[str, Any]):
        try:
            checked = _native.params_parse(_sections_json(sections), True)
        except ValueError as e:
            # The JSON is ours, made from the sections: its line and column say nothing here.
            raise ValueError(re.sub(r" at line \d+ column \d+$", "", str(e))) from None
        self._data: dict[str, Any] = json.loads(checked)

    @classmethod
    def _checked(cls, text: str) -> "Params":
        p = cls.__new__(cls)
        p._data = json.loads(text)
        return p

    @classmethod
    def load(cls, path: str | PathLike[str]) -> "Params":
        """A `--params` file, TOML or JSON by its extension, as the binary reads it."""
        return cls._checked(_native.params_parse(None, True, str(path)))

    @classmethod
    def from_toml(cls, text: str) -> "Params":
        return cls._checked(_native.params_parse(text, False))

    @classmethod
    def from_json(cls, text: str) -> "Params":
        return cls._checked(_native.params_parse(text, True))

    def replace(self, **sections: Mapping[str, Any]) -> "Params":
        """A copy with the given fields of the given sections changed."""
        merged = {k: dict(v) for k, v in self._data.items()}
        for name, fields in sections.items():
            merged.setdefault(name, {}).update(fields)
        return Params(**merged)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._data))

    def to_json(self) -> str:
        return json.dumps(self._data)

    def __getattr__(self, name: str) -> _Section:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return _Section(name, self._data[name])
        except KeyError:
            raise AttributeError(f"Params has no section {name!r} (sections: {', '.join(self._data)})") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Params) and self._data == other._data

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        return f"Params({self._data!r})"


def params_json(params: "Params | Mapping[str, Any] | str | PathLike[str] | None") -> str | None:
    """What the native calls take: the engine's JSON, or None for the defaults. A path is a
    `--params` file, read as `Params.load` reads it (what a user of the binary reaches for)."""
    if params is None:
        return None
    if isinstance(params, Params):
        return params.to_json()
    if isinstance(params, (str, PathLike)):
        return Params.load(params).to_json()
    if isinstance(params, Mapping):
        return Params(**params).to_json()
    raise TypeError(
        f"params: a Params, a mapping of sections (e.g. {{'credit': {{'fraction': 0.2}}}}), a --params file's path or None, not {type(params).__name__}"
    )


def _sections_json(sections: Mapping[str, Any]) -> str:
    """Sections as JSON for the engine. JSON has no NaN or infinity (Python would write `NaN`,
    which the engine could only call a syntax error): such a value is named instead."""
    try:
        return json.dumps(sections, allow_nan=False)
    except ValueError:
        for name, fields in sections.items():
            for key, value in (fields.items() if isinstance(fields, Mapping) else ()):
                if isinstance(value, float) and not math.isfinite(value):
                    raise ValueError(f"params: {name}.{key} is {value}: the parameters are finite numbers") from None
        raise

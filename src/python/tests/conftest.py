"""Shared by the package's tests: the repository's paths, the binary, and optional packages that
a test needs (it says why it skipped; with FLOWTRACER_REQUIRE_TORCH=1, as in CI, it fails)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "sample_traces" / "addition.safetensors"
BINARY = Path(os.environ.get("FLOWTRACER_BIN", ROOT / "target" / "debug" / "flowtracer"))


def require(module: str) -> Any:
    """Imports `module`, or skips the test (or, at a module's top, the whole module) saying why;
    fails instead when CI requires it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing(f"needs `{module}` ({e}); .ci/run shows what to pip install")


def missing(message: str) -> None:
    """Skips the test saying what it needs, or fails where CI requires it
    (FLOWTRACER_REQUIRE_TORCH=1)."""
    if os.environ.get("FLOWTRACER_REQUIRE_TORCH") == "1":
        pytest.fail(message + " — required here (FLOWTRACER_REQUIRE_TORCH=1)")
    pytest.skip(message, allow_module_level=True)


def export(traces: list[Path], out: Path, formats: str = "json", params: dict | None = None) -> Path:
    """Runs the binary's headless export (`cargo build` makes the binary)."""
    assert BINARY.exists(), f"{BINARY}: build the binary first (cargo build), or set FLOWTRACER_BIN"
    args = [str(BINARY)]
    if params is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        (out.parent / "params.json").write_text(json.dumps(params))
        args += ["--params", str(out.parent / "params.json")]
    args += ["--export", str(out), "--format", formats, *map(str, traces)]
    subprocess.run(args, check=True, capture_output=True)
    return out


def exported(trace: Path, tmp_path: Path, params: dict | None = None) -> dict:
    """The binary's own JSON record of `trace`."""
    out = export([trace], tmp_path / "out", "json", params)
    return json.loads((out / f"{trace.stem}.json").read_text())

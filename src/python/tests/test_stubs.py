"""The package's types hold. The stubs of the compiled module (`flowtracer/_native.pyi`) say what
the wheel holds: mypy's stubtest imports the built module and compares its names, classes and
signatures (parameter names, kinds and defaults; PyO3 records no types) with the stub, so a
function added, removed or given other parameters in the binding without its stub fails here.
And the pure-Python package type-checks against those stubs (None handled wherever a value may
be missing, spans as pairs), with the ML stacks it binds to taken as untyped (`pyproject.toml`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import require


def test_the_stubs_match_the_compiled_module(tmp_path):
    require("mypy")
    # PEP 800's @disjoint_base is newer than the typing the stub targets (Python 3.10). Run in a
    # folder of its own: mypy leaves its cache where it runs, not in the checkout.
    run = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "flowtracer._native", "--ignore-disjoint-bases"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_package_type_checks(tmp_path):
    require("mypy")
    package = Path(__file__).resolve().parent.parent
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(package / "pyproject.toml"), "--cache-dir", str(tmp_path / "mypy"), str(package / "python" / "flowtracer")],
        capture_output=True,
        text=True,
        cwd=package,
    )
    assert run.returncode == 0, run.stdout + run.stderr

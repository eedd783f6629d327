"""The Python package against the engine's own export of the same traces, and its errors."""

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import flowtracer

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "sample_traces" / "addition.safetensors"
BINARY = Path(os.environ.get("FLOWTRACER_BIN", ROOT / "target" / "debug" / "flowtracer"))


def exported(trace: Path, tmp_path: Path, params: dict | None = None) -> dict:
    """The binary's own JSON record of `trace` (`cargo build` makes the binary)."""
    assert BINARY.exists(), f"{BINARY}: build the binary first (cargo build), or set FLOWTRACER_BIN"
    args = [str(BINARY), "--export", str(tmp_path / "out"), "--format", "json", str(trace)]
    if params is not None:
        (tmp_path / "p.json").write_text(json.dumps(params))
        args[1:1] = ["--params", str(tmp_path / "p.json")]
    subprocess.run(args, check=True, capture_output=True)
    return json.loads((tmp_path / "out" / f"{trace.stem}.json").read_text())


@pytest.mark.parametrize("params", [None, {"credit": {"fraction": 0.2, "gamma": 2.0}, "answer": {"sink": "tokens"}}])
def test_a_trace_file_gives_the_binarys_numbers(tmp_path, params):
    r = flowtracer.analyze(SAMPLE, params)
    e = exported(SAMPLE, tmp_path, params)
    assert r.status == e["status"] == "ok"
    assert r.tokens == e["tokens"]
    for key in ["reach", "flow", "throughput", "credit", "far_sources"]:
        a = getattr(r, key)
        assert a.dtype == np.float64 and a.shape == (len(r.tokens),)
        np.testing.assert_array_equal(a, np.array(e[key]), err_msg=key)
    assert [list(p[0]) for p in r.backbone] == [p["tokens"] for p in e["backbone"]]
    assert list(r.hubs) == e["hubs"] and list(r.checkpoints) == e["checkpoints"]
    assert r.answer_inflow == pytest.approx(1.0)
    assert r.provenance["steps"]["aggregate"] == "cpu"


def chain(n: int) -> np.ndarray:
    """Each token attends half to its predecessor and half to the first token."""
    a = np.zeros((n, n), dtype=np.float64)
    a[0, 0] = 1.0
    for k in range(1, n):
        a[k, k - 1] += 0.5
        a[k, 0] += 0.5
    return a


def test_attention_in_memory_runs_the_same_pipeline():
    n = 24
    r = flowtracer.analyze_attention(chain(n), [f"t{i}" for i in range(n)], question=(0, 3), response=(3, n), answer=(n - 2, n))
    assert r.status == "ok"
    assert r.answer_inflow == pytest.approx(1.0)
    gamma = r.credit[r.response[0] : r.response[1]]
    assert 0 < (gamma > 1).sum() <= math.ceil(0.4 * len(gamma))
    assert set(np.unique(r.credit)) <= {1.0, 1.5}
    # [L,H,N,N] of the same rows aggregates to the same matrix.
    r4 = flowtracer.analyze_attention(np.broadcast_to(chain(n), (3, 2, n, n)), r.tokens, (0, 3), (3, n), (n - 2, n))
    np.testing.assert_allclose(r4.flow, r.flow, rtol=1e-12)


def test_bad_input_is_a_value_error_that_names_it(tmp_path):
    n = 8
    a = chain(n)
    a[2, 5] = 0.3  # a query attending to a later token
    with pytest.raises(ValueError, match=r"rollout_7\.safetensors.*non_causal|rollout_7\.safetensors.*row 2"):
        flowtracer.analyze_attention(a, ["x"] * n, (0, 2), (2, n), (n - 1, n), name="rollout_7")
    with pytest.raises(ValueError, match="params"):
        flowtracer.analyze(SAMPLE, {"credit": {"fraction": 7}})
    with pytest.raises(ValueError, match="no_such.safetensors"):
        flowtracer.analyze(tmp_path / "no_such.safetensors")
    with pytest.raises(ValueError, match="axes"):
        flowtracer.analyze_attention(np.zeros(5, dtype=np.float32), ["x"] * 5, (0, 1), (1, 5), (4, 5))


def test_backends_says_what_the_wheel_has():
    report = flowtracer.backends()
    assert "cpu" in report and "auto" in report

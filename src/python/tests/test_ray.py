"""`flowtracer.ray` on a local Ray instance (two CPUs, as CI has): a run's trace files scored into
Parquet equal the binary's export number for number, a worker killed mid-batch costs no row and
doubles none, and the recompute pipeline's γ equals the engine's on the same rollouts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import BINARY, ROOT, require

ray = require("ray")
pd = require("pandas")
require("pyarrow")

import flowtracer  # noqa: E402
from flowtracer import ray as flow_ray  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """`sample_traces/` as it is, plus 200 generated traces in step folders and one broken file."""
    root = tmp_path_factory.mktemp("ray") / "run"
    shutil.copytree(ROOT / "sample_traces", root / "samples")
    rng = np.random.default_rng(7)
    for i in range(200):
        n = int(rng.integers(24, 96))
        a = np.tril(rng.random((n, n)) ** 6)
        a /= a.sum(axis=1, keepdims=True)
        q1, a0 = n // 4, n - 3
        step = root / f"step_{i // 50:06d}"
        step.mkdir(parents=True, exist_ok=True)
        flowtracer.dump(step / f"sample_{i % 50:04d}.safetensors", a.astype(np.float32), [f"t{k}" for k in range(n)],
                        question=(0, q1), answer=(a0, n), meta={"step": i // 50, "sample_id": f"s{i}"})
    (root / "step_000000" / "sample_9999.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    return root


def _rows(ds) -> pd.DataFrame:
    return ds.to_pandas()


def _assert_equal_to_export(rows: pd.DataFrame, run: Path, tmp_path: Path) -> None:
    # The run holds one broken file, so the binary reports a failure (exit 1) and exports the rest.
    out = tmp_path / "export"
    done = subprocess.run([str(BINARY), "--export", str(out), "--format", "json", str(run)], capture_output=True)
    assert done.returncode == 1, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    by_source = {t["source"]: t for t in summary["traces"]}
    assert sorted(rows["source"]) == sorted(by_source), "every trace exactly once"
    for _, row in rows.iterrows():
        t = by_source[row["source"]]
        if t["status"] == "failed":
            assert row["status"] == "failed" and Path(row["source"]).name in row["error"]
            continue
        rec = json.loads((out / Path(row["source"]).relative_to(run).with_suffix(".json")).read_text())
        assert row["status"] == rec["status"]
        assert row["n"] == len(rec["tokens"])
        assert list(row["credit"]) == rec["credit"] and list(row["throughput"]) == rec["throughput"]
        assert [list(p) for p in row["backbone_tokens"]] == [p["tokens"] for p in rec["backbone"]]
        assert list(row["backbone_flow"]) == [p["flow"] for p in rec["backbone"]]
        assert list(row["hubs"]) == rec["hubs"] and list(row["checkpoints"]) == rec["checkpoints"]
        assert list(row["tokens"]) == rec["tokens"]
        assert all(list(row[k]) == rec[k] for k in ("reach", "flow", "far_sources"))
        details = json.loads(row["details"])
        assert details["spans"] == rec["spans"] and details["params"] == rec["params"] and details["provenance"] == rec["provenance"]


def test_a_runs_files_scored_on_ray_equal_the_binarys_export(local_ray, run, tmp_path):
    paths = flow_ray.trace_paths(run)
    assert len(paths) == 17 + 200 + 1
    flow_ray.score_files(run, batch_size=16).write_parquet(str(tmp_path / "parquet"))
    rows = pd.read_parquet(tmp_path / "parquet")
    assert len(rows) == len(paths)
    _assert_equal_to_export(rows, run, tmp_path)
    generated = rows[rows["source"].str.contains("/step_") & (rows["status"] != "failed")]
    assert set(generated["sample_id"].dropna()) >= {"s0", "s199"} and set(generated["step"].dropna().astype(int)) >= {0, 3}


def test_the_binary_exports_a_ray_scored_run_to_the_same_bytes_as_its_traces(local_ray, run, tmp_path):
    """`flowtracer --export OUT PARQUET_DIR` writes from the rows every file `--export OUT RUN`
    writes from the traces, byte for byte (a run scored on a cluster is browsable like a local
    one); the failed trace stays a failure with its problem."""
    flow_ray.score_files(run, batch_size=32).write_parquet(str(tmp_path / "parquet"))
    outs = {}
    for name, source in (("traces", run), ("rows", tmp_path / "parquet")):
        outs[name] = tmp_path / name
        done = subprocess.run([str(BINARY), "--export", str(outs[name]), "--format", "all", str(source)], capture_output=True)
        assert done.returncode == 1, done.stderr  # the run's one broken file

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != "summary.json"}

    want, got = files(outs["traces"]), files(outs["rows"])
    assert len(want) > 200 * 4 and want.keys() == got.keys()
    assert [k for k in want if want[k] != got[k]] == []

    def traces(root: Path) -> list[dict]:
        summary = json.loads((root / "summary.json").read_text())
        return [{k: v for k, v in t.items() if k != "elapsed_ms"} for t in summary["traces"]]

    assert sorted(traces(outs["traces"]), key=lambda t: t["source"]) == sorted(traces(outs["rows"]), key=lambda t: t["source"])


def test_a_run_on_another_filesystem_is_fetched_by_the_workers_and_scores_the_same(local_ray, run, tmp_path):
    """A run that is not on a local path (here a `pyarrow.fs.SubTreeFileSystem`, whose paths no
    process can memory-map, as with S3 or HDFS; and the same folder as a `file://` URI) scores to
    the rows of the local run, each row naming the trace where it lies."""
    import pyarrow.fs

    local = _rows(flow_ray.score_files(run)).set_index("source")
    subtree = pyarrow.fs.SubTreeFileSystem(str(run), pyarrow.fs.LocalFileSystem())
    paths = flow_ray.trace_paths("", filesystem=subtree)
    assert paths == [str(Path(p).relative_to(run)) for p in flow_ray.trace_paths(run)]
    remote = _rows(flow_ray.score_files("", filesystem=subtree, batch_size=64)).set_index("source")
    assert len(remote) == len(local)
    for source, row in remote.iterrows():
        want = local.loc[str(run / source)]
        if want["status"] == "failed":
            assert row["status"] == "failed" and row["error"].startswith(source) and "safetensors" in row["error"]
            assert str(tmp_path) not in row["error"] and "flowtracer-batch-" not in row["error"], row["error"]
            continue
        assert row["status"] == want["status"] and row["details"] == want["details"]
        assert all(list(row[k]) == list(want[k]) for k in ("tokens", "credit", "throughput", "reach", "hubs"))
    missing = flow_ray.score_batch({"path": ["step_000000/gone.safetensors"]}, filesystem=subtree).to_pylist()[0]
    assert missing["status"] == "failed" and missing["error"].startswith("step_000000/gone.safetensors: cannot read"), missing["error"]
    uri = _rows(flow_ray.score_files(f"file://{run}")).set_index("source")
    assert sorted(uri.index) == sorted(f"file://{s}" for s in local.index)
    assert (uri["status"].values == local.loc[[s[len("file://") :] for s in uri.index], "status"].values).all()


def _dies_once(batch, *, marker: str, **kwargs):
    """The first batch any worker takes kills that worker (as an OOM kill or a lost node would)."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return flow_ray.score_batch(batch, **kwargs)
    os.close(fd)
    os._exit(1)


def test_a_worker_killed_mid_run_costs_no_row_and_repeats_none(local_ray, run, tmp_path):
    # The killing function lives in this test module, which workers cannot import: ship it by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    marker = tmp_path / "died"
    items = [{"path": p} for p in flow_ray.trace_paths(run)]
    ds = ray.data.from_items(items).map_batches(_dies_once, fn_kwargs={"marker": str(marker)}, batch_size=32, batch_format="numpy")
    rows = _rows(ds)
    assert marker.exists(), "a worker did die"
    assert len(rows) == len(items) and rows["source"].is_unique
    _assert_equal_to_export(rows, run, tmp_path)


def test_rollouts_recomputed_by_model_actors_give_the_engines_gamma(local_ray, tmp_path):
    torch = require("torch")
    import tiny

    from flowtracer import rl

    tok = tiny.hf_tokenizer()
    model = tiny.tiny("qwen2", tmp_path, tok.vocab_size, "sdpa")
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    prompts = ["How many clips did Natalia sell altogether in April and May?", "Weng earns 12 an hour for babysitting."]
    responses = ["She sold 48 / 2 = 24 clips in May. The answer is \\boxed{72}.", "Let us check: 48 + 24 = 72"]
    rows = [{"sample_id": f"r{i}", "prompt_ids": tok(p)["input_ids"], "response_ids": tok(r)["input_ids"]} for i, (p, r) in enumerate(zip(prompts, responses))]
    got = flow_ray.score_rollouts(ray.data.from_items(rows), tmp_path / "model", batch_size=2).to_pandas().set_index("sample_id")

    # The same rollouts through the engine in this process, laid out as the actor lays them out.
    p, t = max(len(r["prompt_ids"]) for r in rows), max(len(r["response_ids"]) for r in rows)
    ids = torch.full((2, p + t), tok.pad_token_id)
    mask, rmask = torch.zeros_like(ids), torch.zeros((2, t), dtype=torch.long)
    for i, r in enumerate(rows):
        q, a = r["prompt_ids"], r["response_ids"]
        ids[i, p - len(q) : p], ids[i, p : p + len(a)] = torch.tensor(q), torch.tensor(a)
        mask[i, p - len(q) : p + len(a)], rmask[i, : len(a)] = 1, 1
    want = rl.response_gamma(model, ids, mask, rmask, rl.boxed_answer, tokenizer=tok)
    assert got.loc["r0", "status"] == "ok" and got.loc["r1", "status"] == "no_answer"
    for i, r in enumerate(rows):
        assert list(got.loc[f"r{i}", "gamma"]) == want.gamma[i, : len(r["response_ids"])].tolist()
    assert any(g != 1.0 for g in got.loc["r0", "gamma"]), "the answered rollout is shaped"
    by_row = flow_ray.score_rollouts(ray.data.from_items(rows), tmp_path / "model", batch_size=2, rows_per_pass=1).to_pandas().set_index("sample_id")
    assert [list(g) for g in by_row.loc[["r0", "r1"], "gamma"]] == [list(g) for g in got.loc[["r0", "r1"], "gamma"]], "a row a pass: the same γ"
    # what the actors could only find out on the cluster is refused on the driver, before them
    for kwargs, says in [({"answer": "bracketed"}, "answer: 'bracketed' is not boxed, last_line"), ({"batch_size": 0}, "batch_size must be at least 1"), ({"layers": (3, 1)}, "layers: span 3:1"),
                         ({"rows_per_pass": 0}, "rows_per_pass must be at least 1")]:
        with pytest.raises(ValueError, match=says):
            flow_ray.score_rollouts(ray.data.from_items(rows), tmp_path / "model", **kwargs)


def test_the_default_batch_carries_a_tasks_worth_of_bytes_and_spreads_over_the_cpus(tmp_path):
    small, big = tmp_path / "small", tmp_path / "big"
    small.write_bytes(b"\0" * (256 << 10))
    big.write_bytes(b"\0" * (64 << 20))
    # 256 KiB files: TASK_BYTES' worth is 1024 files, unless that would leave CPUs idle.
    assert flow_ray.batch_size_for([str(small)] * 100_000, cpus=2) == 1024
    assert flow_ray.batch_size_for([str(small)] * 4096, cpus=8) == 256
    # 64 MiB files: four a task; never none.
    assert flow_ray.batch_size_for([str(big)] * 1000, cpus=2) == 4
    assert flow_ray.batch_size_for([str(big)], cpus=64) == 1

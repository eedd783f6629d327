"""Scoring a training run's rollouts on Ray Data, past what one machine's `flowtracer --export`
does in reasonable time. Two pipelines, both made of the same engine as the binary:

- **Files** (`score_files`): trace files already written (a run folder on a shared filesystem),
  mapped in batches through the engine on CPU workers. Each worker memory-maps its files where
  they lie; only paths travel through Ray's object store, never attention.
- **Recompute** (`score_rollouts`): rollouts stored as token ids (`prompt_ids`, `response_ids`),
  scored by actors that load a `transformers` model once and run `capture` + the engine on each
  batch (`rl.response_gamma`: the same call TRL and verl use). At 8k tokens one aggregated trace
  is 134 MB, so for a whole run recomputing the attention is the only path that scales: the
  stored rows are kilobytes, and the cost moves to one forward pass per rollout.

Each pipeline returns a lazy `ray.data.Dataset`; `.write_parquet(DIR)` writes it. pandas or
polars read it back, and so does the binary: `flowtracer --export OUT DIR` writes from the files
pipeline's rows the same files as from the traces, and the app's Run view opens DIR. A trace that
fails is a row with its error, never a lost batch.
Ray's own task retries (3 by default) make a worker that dies mid-batch cost only a re-run of
that batch: every row comes out exactly once.
"""

from __future__ import annotations

import os
from os import PathLike, fspath
from typing import Any, Iterable, Sequence

import numpy as np

from . import rl
from ._spans import span
from .params import Params


def file_schema() -> Any:
    """The columns of a files row: what `--export`'s JSON record holds per trace, the per-token
    lists as plain Parquet lists and the rest (spans, provenance, parameters, metadata) as the
    `details` JSON string, the same in every batch, failed rows included. `flowtracer --export`
    and the app read these files back."""
    import pyarrow as pa

    floats, ints = pa.list_(pa.float64()), pa.list_(pa.int64())
    return pa.schema([
        ("source", pa.string()), ("sample_id", pa.string()), ("step", pa.int64()), ("status", pa.string()), ("n", pa.int64()),
        ("reward", pa.float64()), ("correct", pa.bool_()), ("tokens", pa.list_(pa.string())), ("token_ids", ints),
        ("reach", floats), ("flow", floats), ("throughput", floats), ("credit", floats), ("far_sources", floats),
        ("causal_effect", pa.list_(pa.float32())), ("backbone_tokens", pa.list_(ints)), ("backbone_flow", floats),
        ("hubs", ints), ("checkpoints", ints), ("details", pa.string()), ("problem", pa.string()), ("error", pa.string()),
    ])  # fmt: skip


FILE_COLUMNS = (
    "source", "sample_id", "step", "status", "n", "reward", "correct", "tokens", "token_ids", "reach", "flow", "throughput", "credit",
    "far_sources", "causal_effect", "backbone_tokens", "backbone_flow", "hubs", "checkpoints", "details", "problem", "error",
)  # fmt: skip


def score_batch(batch: dict[str, Any], *, params: str | None = None, backend: str = "cpu", filesystem: Any = None) -> Any:
    """One batch of trace files (a `path` column) to a `pyarrow.Table` of one row per trace
    (`file_schema()`): the map function of `score_files`, public for pipelines of your own.
    `params` is the parameters as JSON (`Params.to_json()`), cheap to ship to workers. Paths on
    `filesystem` (a `pyarrow.fs.FileSystem`), or URIs (`s3://...`), are fetched to a temporary
    folder of the worker's for the batch; local paths are memory-mapped where they lie."""
    import tempfile

    import pyarrow as pa

    from . import _native

    sources = [fspath(p) for p in batch["path"]]
    with tempfile.TemporaryDirectory(prefix="flowtracer-batch-") as scratch:
        paths, fetch_errors = _fetched(sources, filesystem, scratch)
        # The engine hands back columns, the per-token lists flattened with offsets as Arrow holds
        # them and the tokens as one buffer of UTF-8: no Python loop over rows or tokens (at small
        # traces that loop cost as much as the engine).
        c = _native.file_columns(paths, params, backend)
    # Rows and errors name the trace where it lies, not where the worker fetched it.
    c["source"] = sources
    for i, (path, source) in enumerate(zip(paths, sources)):
        if c["error"][i] is not None and path != source:
            c["error"][i] = fetch_errors.get(i) or c["error"][i].replace(path, source)
    failed = pa.array(~c["ok"])

    def lists(name: str, kind: Any, mask: Any = failed) -> Any:
        return pa.ListArray.from_arrays(pa.array(c[f"{name}.offsets"]), pa.array(c[f"{name}.values"], kind), mask=mask)

    inner = pa.ListArray.from_arrays(pa.array(c["backbone_tokens.inner.offsets"]), pa.array(c["backbone_tokens.inner.values"], pa.int64()))
    token_ends = c["tokens.inner.offsets"]
    strings = pa.StringArray.from_buffers(len(token_ends) - 1, pa.py_buffer(token_ends), pa.py_buffer(c["tokens.inner.values"]))
    columns = {
        "source": pa.array(c["source"], pa.string()),
        "sample_id": pa.array(c["sample_id"], pa.string()),
        "step": pa.array(c["step"], pa.int64()),
        "status": pa.array(c["status"], pa.string()),
        "n": pa.array(c["n"], pa.int64()),
        "reward": pa.array(c["reward"], pa.float64()),
        "correct": pa.array(c["correct"], pa.bool_()),
        "tokens": pa.ListArray.from_arrays(pa.array(c["tokens.offsets"]), strings, mask=failed),
        "token_ids": lists("token_ids", pa.int64(), pa.array(~c["token_ids.valid"])),
        "reach": lists("reach", pa.float64()),
        "flow": lists("flow", pa.float64()),
        "throughput": lists("throughput", pa.float64()),
        "credit": lists("credit", pa.float64()),
        "far_sources": lists("far_sources", pa.float64()),
        "causal_effect": lists("causal_effect", pa.float32(), pa.array(~c["causal_effect.valid"])),
        "backbone_tokens": pa.ListArray.from_arrays(pa.array(c["backbone_tokens.offsets"]), inner, mask=failed),
        "backbone_flow": lists("backbone_flow", pa.float64()),
        "hubs": lists("hubs", pa.int64()),
        "checkpoints": lists("checkpoints", pa.int64()),
        "details": pa.array(c["details"], pa.string()),
        "problem": pa.array(c["problem"], pa.string()),
        "error": pa.array(c["error"], pa.string()),
    }
    return pa.table(columns, schema=file_schema())


def _is_uri(path: str) -> bool:
    return "://" in path


def _filesystem(path: str, filesystem: Any) -> tuple[Any, str] | None:
    """Where a path lies when it is not a local file: `(filesystem, path on it)`, or None."""
    if filesystem is not None:
        return filesystem, path
    if _is_uri(path):
        import pyarrow.fs

        return pyarrow.fs.FileSystem.from_uri(path)
    return None


def _fetched(sources: list[str], filesystem: Any, scratch: str) -> tuple[list[str], dict[int, str]]:
    """Each source as a local path: itself, or a copy in `scratch` of a file on another
    filesystem; a copy that fails leaves a path that does not exist and its error, naming the
    source."""
    import shutil

    import pyarrow.fs

    paths, errors = [], {}
    for i, source in enumerate(sources):
        remote = _filesystem(source, filesystem)
        if remote is None:
            paths.append(source)
            continue
        fs, path = remote
        if isinstance(fs, pyarrow.fs.LocalFileSystem):  # file:// or a local filesystem: in place
            paths.append(path)
            continue
        local = os.path.join(scratch, f"{i}.safetensors")
        paths.append(local)
        try:
            with fs.open_input_stream(path) as src, open(local, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except OSError as e:
            errors[i] = f"{source}: cannot read: {e}"
            if os.path.exists(local):
                os.remove(local)
    return paths, errors


def trace_paths(root: str | PathLike[str], filesystem: Any = None) -> list[str]:
    """The trace files of a run folder, as the binary finds them (`*.safetensors` at any depth,
    sorted; dot-files and checkpoints left out; locally, export output too). `root` may be a URI
    (`s3://bucket/run`: the paths come back as URIs) or a path on `filesystem`."""
    root = fspath(root)
    remote = _filesystem(root, filesystem)
    if remote is None:
        from . import _native

        return list(_native.discover(root))
    import pyarrow.fs

    fs, base = remote
    scheme = root.split("://", 1)[0] + "://" if filesystem is None else ""
    found = []
    for info in fs.get_file_info(pyarrow.fs.FileSelector(base, recursive=True)):
        parts = info.path[len(base) :].strip("/").split("/")
        if info.type == pyarrow.fs.FileType.File and parts[-1].endswith(".safetensors") and not any(p.startswith(".") for p in parts) and "ckpt" not in parts[:-1]:
            found.append(scheme + info.path)
    return sorted(found)


# What one task of `score_files` reads, when the caller leaves the batch size to us: a task costs
# Ray about 20 ms (scheduling, moving the batch, the Parquet write), so it should carry a few
# hundred milliseconds of work. On 2 CPUs, 256-token traces ran at 0.58x the binary's rate in
# batches of 64 files and at 1.1x in batches of 256.
TASK_BYTES = 256 << 20


def batch_size_for(paths: Sequence[str], cpus: float, filesystem: Any = None) -> int:
    """Files per task: about `TASK_BYTES` of trace files each (from the sizes of the first 64),
    but at least two tasks per CPU so a small run still spreads over the cluster, and at most
    1024 files (a task's results stay a few MB)."""

    def size(path: str) -> int | None:
        remote = _filesystem(path, filesystem)
        if remote is None:
            return os.path.getsize(path) if os.path.isfile(path) else None
        fs, p = remote
        return fs.get_file_info(p).size

    sample = [s for s in map(size, paths[:64]) if s]
    mean = max(1, sum(sample) // max(1, len(sample)))
    by_bytes = TASK_BYTES // mean
    spread = -(-len(paths) // max(1, int(2 * cpus)))
    return int(max(1, min(by_bytes, spread, 1024)))


def score_files(
    paths: str | PathLike[str] | Iterable[str | PathLike[str]],
    *,
    params: Params | None = None,
    batch_size: int | None = None,
    num_cpus: float = 1,
    concurrency: int | None = None,
    max_retries: int | None = None,
    backend: str = "cpu",
    filesystem: Any = None,
) -> Any:
    """A dataset of one row per trace file (`FILE_COLUMNS`): `paths` is a run folder or the files,
    local (memory-mapped in place by each worker), as URIs any `pyarrow.fs` filesystem reads
    (`s3://`, `gs://`, `hdfs://`, ...), or paths on `filesystem`; a trace not on a local disk is
    fetched to the worker's temporary folder for its batch.
    Each task maps `batch_size` files with `num_cpus` CPUs reserved; by default the batch is
    sized from the files (`batch_size_for`: some 256 MB a task, two tasks per CPU at least), as
    a task costs Ray some tens of milliseconds. `concurrency` caps the tasks at once. A task whose
    worker dies is run again (Ray's own task retries, 3 by default); `max_retries` sets another
    count, through Ray's `ray_remote_args`, which Ray deprecates (to be removed in Ray 2.64)
    without a named replacement yet."""
    import ray
    import ray.data

    if isinstance(paths, (str, PathLike)):
        paths = trace_paths(paths, filesystem)
    items = [{"path": fspath(p)} for p in paths]
    if batch_size is None:
        cpus = ray.cluster_resources().get("CPU", 1) if ray.is_initialized() else (os.cpu_count() or 1)
        batch_size = batch_size_for([i["path"] for i in items], cpus / num_cpus, filesystem)
    # One block per batch: Ray's default (200 blocks at least) would make a task per few files.
    ds = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // batch_size)))
    return ds.map_batches(
        score_batch,
        fn_kwargs={"params": None if params is None else params.to_json(), "backend": backend, "filesystem": filesystem},
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=num_cpus,
        concurrency=concurrency,
        **({} if max_retries is None else {"max_retries": max_retries}),
    )


class RolloutScorer:
    """The recompute pipeline's actor: loads a causal LM once (`model`: a folder
    `save_pretrained` wrote), then per batch of rows (`sample_id`, `prompt_ids`, `response_ids`)
    captures its attention (in one forward pass, or `rows_per_pass` rows at a time) and returns
    γ for every response token (`gamma`, as many as the response has; all ones where no answer
    was found, with `status` saying why)."""

    def __init__(self, model: str, *, tokenizer: str | None = None, answer: str = "boxed", params: str | None = None, device: str = "cpu", layers: tuple[int, int] | None = None,
                 rows_per_pass: int | None = None):
        import torch
        import transformers

        self.device = torch.device(device)
        self.model = transformers.AutoModelForCausalLM.from_pretrained(model).to(self.device).eval()
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer or model)
        self.rule = rl.answer_rule(answer)
        self.params = None if params is None else Params.from_json(params)
        self.layers = layers
        self.rows_per_pass = rows_per_pass
        self.pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def __call__(self, batch: dict[str, Any]) -> Any:
        prompts = [list(map(int, p)) for p in batch["prompt_ids"]]
        responses = [list(map(int, r)) for r in batch["response_ids"]]
        ids, mask, _, rmask = rl.padded_rows(prompts, responses, pad=self.pad)
        shaped = rl.response_gamma(self.model, ids.to(self.device), mask.to(self.device), rmask.to(self.device), self.rule,
                                   tokenizer=self.tokenizer, params=self.params, layers=self.layers, backend="auto",
                                   rows_per_pass=self.rows_per_pass or len(prompts))
        gamma = shaped.gamma.cpu().numpy()
        status = ["no_answer" if r is None else ("failed" if isinstance(r, BaseException) else r.status) for r in shaped.results]
        import pyarrow as pa

        return pa.Table.from_pydict(
            {"sample_id": [str(s) for s in batch["sample_id"]], "gamma": [gamma[i, : len(r)].astype(np.float64).tolist() for i, r in enumerate(responses)], "status": status},
            schema=pa.schema([("sample_id", pa.string()), ("gamma", pa.list_(pa.float64())), ("status", pa.string())]),
        )


def score_rollouts(
    rollouts: Any,
    model: str | PathLike[str],
    *,
    tokenizer: str | PathLike[str] | None = None,
    answer: str = "boxed",
    params: Params | None = None,
    batch_size: int = 8,
    concurrency: int = 1,
    num_gpus: float = 0,
    num_cpus: float = 1,
    layers: tuple[int, int] | None = None,
    rows_per_pass: int | None = None,
) -> Any:
    """γ per response token for a dataset of rollouts (`sample_id`, `prompt_ids`,
    `response_ids`; e.g. `ray.data.read_parquet(...)` of what the trainer logged): `concurrency`
    actors, each with the model loaded once (on a GPU when `num_gpus` > 0). `answer` is `boxed`,
    `last_line` or `package.module:function` (importable on the workers), as verl's
    `flowtracer.answer` is. Each batch is captured in one forward pass, or `rows_per_pass` rows
    at a time (the capture holds `[rows, n, n]` float32: long rollouts in a large batch)."""
    # Checked here, on the driver, not in each actor after the cluster has started them.
    rl.answer_rule(answer)
    for name, value in (("batch_size", batch_size), ("concurrency", concurrency), ("rows_per_pass", 1 if rows_per_pass is None else rows_per_pass)):
        if int(value) < 1:
            raise ValueError(f"score_rollouts: {name} must be at least 1, not {value}")
    layers = None if layers is None else span("score_rollouts: layers", layers)
    device = "cuda" if num_gpus else "cpu"
    return rollouts.map_batches(
        RolloutScorer,
        fn_constructor_kwargs={
            "model": fspath(model),
            "tokenizer": None if tokenizer is None else fspath(tokenizer),
            "answer": answer,
            "params": None if params is None else params.to_json(),
            "device": device,
            "layers": layers,
            "rows_per_pass": rows_per_pass,
        },
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=concurrency,
        num_gpus=num_gpus,
        num_cpus=num_cpus,
    )


__all__: Sequence[str] = ("FILE_COLUMNS", "TASK_BYTES", "batch_size_for", "file_schema", "score_batch", "score_files", "trace_paths", "RolloutScorer", "score_rollouts")

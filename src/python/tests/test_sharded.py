"""The capture pass through a sharded model: under FSDP each rank holds a shard of the weights,
and only the wrapper's forward gathers them. `response_gamma` (what `FlowGRPOTrainer` and
`flowtracer.verl`'s worker run) given the model as TRL and verl hold it under FSDP1 and FSDP2
gives each rank the γ the unsharded weights give, on two CPU processes over gloo, and so does
`FlowGRPOTrainer`'s shaping step holding the model as `transformers.Trainer` does under FSDP
(the module inside FSDP1's wrapper holds one rank's shard: a forward of it fails)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

import flowtracer
from conftest import missing, require

torch = require("torch")
require("transformers")
require("trl")
require("datasets")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gamma_through_a_sharded_model_is_the_whole_models(tmp_path: Path):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        missing("needs torch.distributed with its gloo backend (this torch build has none)")
    glue = Path(__file__).with_name("sharded_glue.py")
    run = subprocess.run([sys.executable, str(glue), str(tmp_path), str(free_port())], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, f"{run.stdout[-2000:]}\n{run.stderr[-6000:]}"
    from sharded_glue import COMPLETIONS, KINDS

    for kind in KINDS:
        ranks = [json.loads((tmp_path / f"{kind}.{rank}.json").read_text()) for rank in (0, 1)]
        for rank, r in enumerate(ranks):
            whole, sharded = np.array(r["whole"]), np.array(r["sharded"])
            assert r["shaped"] == 2, f"{kind} rank {rank}: both rows shaped"
            assert (whole != 1).any(), f"{kind} rank {rank}: the flow shaped some token"
            np.testing.assert_allclose(sharded, whole, rtol=1e-5, atol=1e-6, err_msg=f"{kind} rank {rank}")
            # A row a pass, rank 0 with a row fewer to shape: as many passes on both ranks.
            assert r["shaped_by_row"] == (1 if rank == 0 else 2)
            np.testing.assert_allclose(np.array(r["sharded_by_row"]), np.array(r["whole_by_row"]), rtol=1e-5, atol=1e-6, err_msg=f"{kind} rank {rank}, by row")
            # FlowGRPOTrainer's step, holding the sharded model as the Trainer does under FSDP,
            # hands TRL's loss γ·A of the whole model's γ.
            np.testing.assert_allclose(np.array(r["trainer"]), np.array(r["want"]), rtol=1e-5, atol=1e-6, err_msg=f"{kind} rank {rank}: the trainer's advantages")
        # Both ranks' trainers wrote into one folder, each row named by its place in the
        # generation batch across the processes (until 2026-12-03 both wrote sample_0000 and
        # sample_0001, and the second to get there stopped: "already exists").
        assert [r["process_index"] for r in ranks] == [0, 1]
        written = sorted(p.name for p in (tmp_path / "traces" / kind / "step_000000").iterdir())
        assert written == [f"sample_{i:04d}.safetensors" for i in range(4)], f"{kind}: {written}"
        for rank in (0, 1):
            for row in (0, 1):
                trace = flowtracer.load_trace(tmp_path / "traces" / kind / "step_000000" / f"sample_{2 * rank + row:04d}.safetensors")
                assert "".join(trace.text).endswith(COMPLETIONS[rank][row]), f"{kind}: rank {rank}'s row {row}"
        assert np.array(ranks[0]["whole"]).shape != np.array(ranks[1]["whole"]).shape or not np.allclose(ranks[0]["whole"], ranks[1]["whole"]), \
            f"{kind}: the two ranks ran different batches"

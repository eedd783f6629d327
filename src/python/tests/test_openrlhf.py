"""`flowtracer.openrlhf` on OpenRLHF's layout: right-padded rows whose `action_mask` column j
marks token j+1 get the same γ as the same rows laid out for TRL/verl, and the advantages are
OpenRLHF's made γ·A by the engine's rule, zero outside the actions; and `install()` inside
OpenRLHF 0.11.2's own code (`openrlhf_glue.py`, in a process of its own)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import flowtracer
from conftest import require
from flowtracer.rl import boxed_answer, find_answers, response_gamma, summary
from tiny import CORPUS, hf_tokenizer, tiny

torch = require("torch")
from flowtracer import openrlhf as flow_openrlhf  # noqa: E402


def test_openrlhfs_layout_gives_the_same_gamma_as_verls(tmp_path):
    tok = hf_tokenizer()
    model = tiny("llama", tmp_path, len(tok), "sdpa")
    prompts = [CORPUS[0], "How many clips?"]
    responses = ["She sold 24.\nSo \\boxed{72}", "48 + 24 = 72, \\boxed{72} clips"]
    p_ids = [tok(p)["input_ids"] for p in prompts]
    r_ids = [tok(r)["input_ids"] for r in responses]
    params = flowtracer.Params(credit={"fraction": 0.3, "gamma": 2.0})
    answers = find_answers(r_ids, tok, boxed_answer)
    assert all(a is not None for a in answers)

    # OpenRLHF: [prompt response pad], action_mask over tokens 1.. (column j is token j+1).
    length = max(len(a) + len(b) for a, b in zip(p_ids, r_ids))
    seq = torch.full((2, length), tok.pad_token_id)
    mask = torch.zeros(2, length, dtype=torch.long)
    act = torch.zeros(2, length - 1, dtype=torch.long)
    for i, (a, b) in enumerate(zip(p_ids, r_ids)):
        seq[i, : len(a) + len(b)] = torch.tensor(a + b)
        mask[i, : len(a) + len(b)] = 1
        act[i, len(a) - 1: len(a) + len(b) - 1] = 1
    gamma = flow_openrlhf.flow_gamma(model, seq, mask, act, answers, params.to_json())
    assert gamma.shape == act.shape and torch.all(gamma[act == 0] == 1)

    # TRL/verl: [left-padded prompt | right-padded response], positions from the mask.
    p, t = max(map(len, p_ids)), max(map(len, r_ids))
    ids = torch.tensor([[tok.pad_token_id] * (p - len(a)) + a + b + [tok.pad_token_id] * (t - len(b)) for a, b in zip(p_ids, r_ids)])
    m = torch.tensor([[0] * (p - len(a)) + [1] * (len(a) + len(b)) + [0] * (t - len(b)) for a, b in zip(p_ids, r_ids)])
    other = response_gamma(model, ids, m, m[:, p:], answers, position_ids=torch.clip(m.cumsum(-1) - 1, min=0), params=params).gamma
    for i, (a, b) in enumerate(zip(p_ids, r_ids)):
        np.testing.assert_array_equal(gamma[i, len(a) - 1: len(a) + len(b) - 1].numpy(), other[i, : len(b)].numpy(), err_msg=f"row {i}")
        assert (gamma[i] == 2.0).any()

    adv = torch.where(act.bool(), torch.tensor([[0.5], [-1.0]]).expand_as(act), torch.zeros_like(act, dtype=torch.float32))
    shaped = flow_openrlhf.shaped_advantages(adv, gamma, act, params.replace(credit={"apply_to_negative": False}))
    want = torch.where(adv >= 0, adv * gamma, adv) * act
    assert torch.equal(shaped, want) and torch.all(shaped[act == 0] == 0)


def test_a_diverged_policy_leaves_its_rows_unshaped_and_the_step_going(tmp_path):
    """A policy whose weights went NaN writes NaN attention: the rows fail the engine's checks,
    stay unshaped (γ = 1) and are counted, no trace file is kept for them (dump refuses what an
    analysis would), and the step is not stopped by the file it could not write."""
    tok = hf_tokenizer()
    model = tiny("llama", tmp_path, len(tok), "sdpa")
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight.fill_(float("nan"))
    ids = torch.tensor([tok(CORPUS[0] + " So \\boxed{72}")["input_ids"]])
    n = ids.shape[1]
    mask = torch.ones_like(ids)
    shaping = response_gamma(model, ids, mask, mask[:, 4:], [(n - 9, n - 5)], trace_dir=tmp_path / "traces")
    assert torch.all(shaping.gamma == 1) and summary(shaping)["flow/failed"] == 1.0
    assert isinstance(shaping.results[0], flowtracer.TraceError) and shaping.results[0].problem == "non_finite"
    assert list((tmp_path / "traces").glob("*.safetensors")) == []


def test_install_works_inside_openrlhfs_own_code(tmp_path):
    """OpenRLHF's CLI, rollouts, micro-batches, actor-group dispatch, `Actor` and advantage
    estimator, with the flow's classes installed: see `openrlhf_glue.py` for each check. It runs
    in a process of its own, where flash-attn, vLLM and DeepSpeed (no CPU builds; OpenRLHF
    imports them at its modules' tops, and nothing checked here calls them) are stood in for."""
    require("openrlhf")
    require("aiohttp")
    glue = Path(__file__).with_name("openrlhf_glue.py")
    run = subprocess.run([sys.executable, str(glue), str(tmp_path)], capture_output=True, text=True, timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0 and run.stdout.splitlines()[-1:] == ["ok"], f"{run.stdout[-2000:]}\n{run.stderr[-6000:]}"

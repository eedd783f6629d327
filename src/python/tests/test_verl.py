"""`flowtracer.verl` against verl 0.9's own code on the CPU: the driver's wrapped
`compute_advantage` (verl's GRPO estimator, then γ·A by the engine's rule), the workers' γ on a
verl-shaped batch (left-padded prompts, right-padded responses, verl's position ids) equal to the
engine on each row's attention computed alone, the worker and runner classes built from verl's,
the runner's `run` through verl's own dispatch to two in-process workers, and the v1 trainer's
advantage step on a TransferQueue of its own. Not run here: Ray actors on GPUs (the FSDP engine)
and a whole `fit`, which need GPUs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import flowtracer
from conftest import require
from tiny import CORPUS, hf_tokenizer, tiny

torch = require("torch")
verl = require("verl")
from verl import DataProto  # noqa: E402
from verl.trainer.ppo import ray_trainer  # noqa: E402

from flowtracer import verl as flow_verl  # noqa: E402
from verl_stand_ins import Engine, Group  # noqa: E402


def batch(tok, prompts, responses):
    """verl's layout: `[left-padded prompt | right-padded response]`, position ids from the mask."""
    p_ids = [tok(p)["input_ids"] for p in prompts]
    r_ids = [tok(r)["input_ids"] + [tok.eos_token_id] for r in responses]
    p, t, pad = max(map(len, p_ids)), max(map(len, r_ids)), tok.pad_token_id
    ids = torch.tensor([[pad] * (p - len(a)) + a + b + [pad] * (t - len(b)) for a, b in zip(p_ids, r_ids)])
    mask = torch.tensor([[0] * (p - len(a)) + [1] * (len(a) + len(b)) + [0] * (t - len(b)) for a, b in zip(p_ids, r_ids)])
    return {"input_ids": ids, "attention_mask": mask, "position_ids": torch.clip(mask.cumsum(-1) - 1, min=0), "responses": ids[:, p:]}


def test_the_drivers_advantages_are_verls_shaped_by_the_engines_rule():
    bs, t = 4, 6
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 5 + [0], [1] * 3 + [0] * 3])
    rewards = torch.zeros(bs, t)
    rewards[torch.arange(bs), mask.sum(1) - 1] = torch.tensor([1.0, 0.0, 0.5, 2.0])
    data = DataProto.from_dict(tensors={"token_level_rewards": rewards, "response_mask": mask, "responses": torch.zeros(bs, t, dtype=torch.long)},
                               non_tensors={"uid": np.array(["a", "a", "b", "b"], dtype=object)})
    gamma = torch.ones(bs, t)
    gamma[:, 1] = 2.0
    params = flowtracer.Params(credit={"apply_to_negative": False})
    plain = ray_trainer.compute_advantage(DataProto.from_dict(tensors=dict(data.batch), non_tensors=dict(data.non_tensor_batch)), adv_estimator="grpo")
    wrapped = flow_verl.shaped_compute_advantage(ray_trainer.compute_advantage, lambda d: gamma, params)
    shaped = wrapped(data, adv_estimator="grpo")
    a = plain.batch["advantages"]
    assert (a > 0).any() and (a < 0).any(), "both signs, so the rule's two branches are exercised"
    want = torch.where(a >= 0, a * gamma, a) * mask
    torch.testing.assert_close(shaped.batch["advantages"], want, rtol=0, atol=0)
    assert torch.equal(shaped.batch["flow_gamma"], gamma)


def test_a_workers_gamma_is_the_engine_on_each_row_alone(tmp_path):
    tok = hf_tokenizer()
    model = tiny("qwen2", tmp_path, len(tok), "sdpa")
    prompts = [CORPUS[0], "How many clips?", CORPUS[2]]
    responses = ["She sold 48 / 2 = 24 clips.\nThe answer is \\boxed{72}.", "No idea at all.", "Let us check: 48 + 24 = 72, \\boxed{72}"]
    b = batch(tok, prompts, responses)
    r_mask = b["attention_mask"][:, -b["responses"].shape[1]:]
    b[flow_verl.ANSWER] = flow_verl.answer_spans(b["responses"], r_mask, tok, flow_verl.answer_rule("boxed"))
    assert b[flow_verl.ANSWER][1].tolist() == [-1, -1], "a response without \\boxed{} has no answer"
    params = flowtracer.Params(credit={"fraction": 0.3, "gamma": 2.0})
    gamma = flow_verl.flow_gamma(model, DataProto.from_dict(tensors=b).batch, params)

    assert gamma.shape == b["responses"].shape
    assert torch.all(gamma[r_mask == 0] == 1) and torch.all(gamma[1] == 1)
    for i in (0, 2):  # each row alone, unpadded, through eager output_attentions: the same γ
        keep = torch.nonzero(b["attention_mask"][i]).flatten()
        ids = b["input_ids"][i, keep][None]
        model.set_attn_implementation("eager")
        with torch.no_grad():
            att = model(input_ids=ids, output_attentions=True).attentions
        model.set_attn_implementation("sdpa")
        mean = torch.stack([att[l][0] for l in range(2, 4)]).mean(dim=(0, 1))
        q = len(tok(prompts[i])["input_ids"])
        a0, a1 = b[flow_verl.ANSWER][i].tolist()
        c = int(r_mask[i].sum())
        r = flowtracer.analyze(mean.numpy(), question=(0, q), answer=(q + a0, q + a1), response=(q, q + c), params=params)
        assert r.status == "ok"
        np.testing.assert_array_equal(gamma[i, :c].numpy(), r.credit[q:q + c].astype(np.float32), err_msg=f"row {i}")
        assert (gamma[i] == 2.0).any()


def test_the_capture_pass_runs_a_few_rows_at_a_time(tmp_path):
    """`rows_per_pass` bounds what one forward holds (the capture's `[rows, n, n]` accumulator):
    the model sees that many rows a pass, over the columns those rows use, also a pass whose rows
    have no answer (under FSDP every rank runs as many); γ is the same however the rows are cut."""
    tok = hf_tokenizer()
    model = tiny("qwen2", tmp_path, len(tok), "sdpa")
    prompts = [CORPUS[0], "How many clips?", CORPUS[2], "Weng earns 12 an hour."]
    responses = ["She sold 24.\nSo \\boxed{72}", "No idea.", "48 + 24 = 72, \\boxed{72}", "Maybe 10 or so, I am not sure at all."]
    b = batch(tok, prompts, responses)
    t = b["responses"].shape[1]
    r_mask = b["attention_mask"][:, -t:]
    spans = [(0, 2), None, (1, 3), None]
    seen = []
    hook = model.register_forward_pre_hook(lambda m, args, kwargs: seen.append((tuple(kwargs["input_ids"].shape), int(kwargs["attention_mask"][:, 0].sum()))), with_kwargs=True)
    gammas = {}
    for per_pass in (4, 1, 2, 3):
        seen.clear()
        gammas[per_pass] = flowtracer.rl.response_gamma(model, b["input_ids"], b["attention_mask"], r_mask, spans, position_ids=b["position_ids"], rows_per_pass=per_pass).gamma
        assert [s[0][0] for s in seen] == [min(per_pass, 4 - k) for k in range(0, 4, per_pass)], f"{per_pass}: {seen}"
        if per_pass == 1:
            # Each row alone: its own columns, no padding before it.
            assert [s[0][1] for s in seen] == b["attention_mask"].sum(1).tolist() and all(first == 1 for _, first in seen)
    hook.remove()
    for per_pass in (1, 2, 3):
        torch.testing.assert_close(gammas[per_pass], gammas[4], rtol=0, atol=0)
    assert (gammas[4] != 1).any() and torch.all(gammas[4][1] == 1) and torch.all(gammas[4][3] == 1)
    with pytest.raises(ValueError, match="rows_per_pass: a whole number of rows, at least 1, not 0"):
        flowtracer.rl.response_gamma(model, b["input_ids"], b["attention_mask"], r_mask, spans, rows_per_pass=0)


def test_the_worker_and_runner_are_verls_own_classes():
    from verl.single_controller.base.decorator import MAGIC_ATTR
    from verl.workers.engine_workers import ActorRolloutRefWorker

    worker = flow_verl.worker_class()
    assert issubclass(worker, ActorRolloutRefWorker)
    assert hasattr(worker.compute_flow_gamma, MAGIC_ATTR), "registered for dispatch like compute_log_prob"
    runner = flow_verl.FlowTaskRunner
    assert hasattr(runner, "remote") and "FlowTaskRunner" in repr(runner)
    from verl.trainer import main_ppo, main_ppo_v0

    before = main_ppo_v0.TaskRunner, main_ppo.run_ppo
    try:
        flow_verl.install()
        assert main_ppo_v0.TaskRunner is runner, "verl's main() would start the flow's runner"
    finally:
        main_ppo_v0.TaskRunner, main_ppo.run_ppo = before
    with pytest.raises(ValueError, match="boxed, last_line"):
        flow_verl.answer_rule("nonsense")
    assert flow_verl.answer_rule("flowtracer.rl:last_line_answer") is flowtracer.rl.last_line_answer


def test_the_runner_shapes_verls_advantages_through_its_worker_group(tmp_path, monkeypatch):
    """`FlowTaskRunner.run` as verl's trainer meets it: the runner's worker class is the flow's,
    `init_workers` is remembered, and verl's `compute_advantage` (called as `fit` calls it) asks
    the actor worker group for γ through verl's own dispatch (`register`'s n-d data-parallel
    split over two ranks, each rank's `compute_flow_gamma` on its half, the halves collected; Ray's
    put and get the identity, the workers objects in this process), with the answers found by the
    trainer's tokenizer and the parameters of `+flowtracer.params`: the advantages are verl's
    shaped by the rule with that γ, which is `flow_gamma` on the whole batch."""
    import ray
    from omegaconf import OmegaConf
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer, Role

    tok = hf_tokenizer()
    model = tiny("qwen2", tmp_path, len(tok), "sdpa")
    prompts = [CORPUS[0], CORPUS[0], "How many clips?", "How many clips?"]
    responses = ["She sold 24.\nSo \\boxed{72}", "No idea at all.", "48 + 24 = 72, \\boxed{72} clips", "so \\boxed{70}"]
    b = batch(tok, prompts, responses)
    r_mask = b["attention_mask"][:, -b["responses"].shape[1]:]
    rewards = torch.zeros(r_mask.shape)
    rewards[torch.arange(4), r_mask.sum(1) - 1] = torch.tensor([1.0, 0.0, 1.0, 0.0])
    data = DataProto.from_dict(tensors={**b, "response_mask": r_mask, "token_level_rewards": rewards},
                               non_tensors={"uid": np.array(["a", "a", "b", "b"], dtype=object)})
    params = flowtracer.Params(credit={"fraction": 0.3, "gamma": 2.0, "apply_to_negative": False})
    (tmp_path / "flow.toml").write_text("[credit]\nfraction = 0.3\ngamma = 2.0\napply_to_negative = false\n")
    assert flowtracer.Params.load(tmp_path / "flow.toml") == params

    config = OmegaConf.load(Path(verl.__file__).parent / "trainer" / "config" / "_generated_ppo_trainer.yaml")
    config.flowtracer = {"params": str(tmp_path / "flow.toml"), "answer": "boxed", "rows_per_pass": 1}
    runner = flow_verl.FlowTaskRunner.__ray_actor_class__()
    returned, _ = runner.add_actor_rollout_worker(config)
    worker_cls = runner.role_worker_mapping[Role.ActorRollout].__ray_actor_class__
    assert worker_cls is returned and worker_cls.__name__ == "FlowActorRolloutRefWorker"

    engines = [Engine(model), Engine(model)]

    monkeypatch.setattr(ray, "put", lambda value: value)
    monkeypatch.setattr(ray, "get", lambda refs: refs)
    # `run` puts the flow into verl's module and class; the test gives them back afterwards.
    monkeypatch.setattr(ray_trainer, "compute_advantage", ray_trainer.compute_advantage)
    monkeypatch.setattr(RayPPOTrainer, "init_workers", lambda trainer: None)
    plain = ray_trainer.compute_advantage(DataProto.from_dict(tensors=dict(data.batch), non_tensors=dict(data.non_tensor_batch)), adv_estimator="grpo", num_repeat=2)

    def fit(self, config):
        """verl's `run` up to `fit`: the trainer made, its workers started, then an advantage."""
        trainer = SimpleNamespace(tokenizer=tok, actor_rollout_wg=Group(worker_cls, engines))
        RayPPOTrainer.init_workers(trainer)
        return ray_trainer.compute_advantage(data, adv_estimator="grpo", num_repeat=2)

    monkeypatch.setattr(type(runner).__mro__[1], "run", fit)
    passes = []
    hook = model.register_forward_pre_hook(lambda m, args, kwargs: passes.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    shaped = runner.run(config)
    hook.remove()
    assert passes == [1, 1, 1, 1], f"+flowtracer.rows_per_pass=1: a row a pass on each rank's two rows, not {passes}"

    answered = dict(b, flow_answer=flow_verl.answer_spans(b["responses"], r_mask, tok, flow_verl.answer_rule("boxed")))
    gamma = flow_verl.flow_gamma(model, DataProto.from_dict(tensors=answered).batch, params)
    assert (gamma == 2.0).any() and torch.all(gamma[1] == 1), "the file's parameters, and a row without an answer unshaped"
    a = plain.batch["advantages"]
    assert (a > 0).any() and (a < 0).any()
    torch.testing.assert_close(shaped.batch["flow_gamma"], gamma, rtol=0, atol=0)
    torch.testing.assert_close(shaped.batch["advantages"], torch.where(a >= 0, a * gamma, a) * r_mask, rtol=0, atol=0)
    assert [e.modes for e in engines] == [["eval"], ["eval"]], "each rank ran its half, in eval mode"

    worker = object.__new__(worker_cls)
    worker.actor = SimpleNamespace(engine=Engine(model, ulysses=2))
    with pytest.raises(ValueError, match="Ulysses"):
        worker.compute_flow_gamma(DataProto.from_dict(tensors=answered))
    for wrong in (0, "4", 2.5):
        config.flowtracer.rows_per_pass = wrong
        with pytest.raises(ValueError, match="flowtracer.rows_per_pass: a whole number of rows, at least 1"):
            runner.run(config)
    config.actor_rollout_ref.actor.strategy = "megatron"
    with pytest.raises(ValueError, match="strategy=fsdp"):
        runner.run(config)


def test_verls_main_starts_the_flows_runner_for_either_trainer(tmp_path, monkeypatch):
    """verl's own `main` after `install()`: with its defaults (`trainer.use_v1=True`) it starts
    `FlowTaskRunnerV1`, with `trainer.use_v1=False` `FlowTaskRunner`, each with the config verl
    made (before 2026-12-03 the v1 trainer was refused); a runner the flow does not know is
    refused before it starts."""
    import sys

    from verl.trainer import main_ppo, main_ppo_v0

    started = []
    monkeypatch.setattr(main_ppo, "run_ppo", lambda config, task_runner_class: started.append((config, task_runner_class)))
    monkeypatch.setattr(main_ppo_v0, "TaskRunner", main_ppo_v0.TaskRunner)
    flow_verl.install()
    flow_verl.install()  # twice: still one wrapper around verl's own
    assert main_ppo.run_ppo.flowtracer_wraps.__name__ == "<lambda>"
    args = [f"hydra.run.dir={tmp_path}", "hydra.output_subdir=null", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2", "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=2",
            "critic.ppo_micro_batch_size_per_gpu=2", "algorithm.adv_estimator=grpo", "+flowtracer.answer=last_line"]
    for extra, runner in [([], flow_verl.FlowTaskRunnerV1), (["trainer.use_v1=False"], flow_verl.FlowTaskRunner)]:
        monkeypatch.setattr(sys, "argv", ["main_ppo", *args, *extra])
        main_ppo.main()
        config, started_runner = started.pop()
        assert started_runner is runner and config.flowtracer.answer == "last_line"

    class TheirRunner:
        pass

    with pytest.raises(ValueError, match="would start TheirRunner, which the flow does not shape"):
        main_ppo.run_ppo(None, task_runner_class=TheirRunner)
    assert not started


def test_the_v1_trainer_shapes_its_advantages_in_transferqueue(tmp_path):
    """verl's v1 trainer (its default) with the flow, on its own TransferQueue (a local Ray
    instance; `verl_v1_glue.py`, in a process of its own): `FlowTaskRunnerV1.run` puts the flow's
    worker classes (the base trainer's and the separate-async trainer's) and advantage step into
    verl's v1 trainers; a v1 trainer's `_compute_advantage`
    on rows put into the queue as verl's agent loop puts them (unpadded, a tool turn masked)
    runs verl's own GRPO, finds the answers with the trainer's tokenizer, asks two in-process
    actor workers for γ through verl's dispatch and queue bridge, and writes back γ·A by the
    engine's rule. Each row's γ equals the flow's v0 worker function on the same rows in verl's
    v0 layout, bit for bit."""
    import json
    import os
    import subprocess
    import sys

    require("transfer_queue")
    glue = Path(__file__).with_name("verl_v1_glue.py")
    run = subprocess.run([sys.executable, str(glue), str(tmp_path)], capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0, f"{run.stdout[-2000:]}\n{run.stderr[-6000:]}"
    r = json.loads((tmp_path / "v1.json").read_text())
    assert r["worker"] == "FlowActorRolloutRefWorker" and r["wrapped"], "the runner put the flow into verl's trainer_base"
    assert r["detach"] == ["FlowDetachActorWorker", True, True], "and into the separate-async trainer's own worker class"
    assert r["answers"] == r["answers_v0"] and r["answers"][1] == [-1, -1], "answers found by the trainer's tokenizer; one row has none"
    assert r["metrics"]["flow/no_answer_fraction"] == 0.25
    assert r["modes"] == [["eval"], ["eval"]], "each rank ran its rows, in eval mode"
    assert r["passes"] == [1, 1, 1, 1], "+flowtracer.rows_per_pass=1: a row a pass"
    assert r["gamma"] == r["gamma_v0"], "the v1 rows' γ is the v0 layout's, bit for bit"
    assert any(2.0 in g for g in r["gamma"]) and all(v == 1.0 for v in r["gamma"][1]), "the file's parameters; the row without an answer unshaped"
    verls = [a for row in r["verls"] for a in row]
    assert min(verls) < 0 < max(verls), "both signs of A, so both branches of the rule"
    assert 0 in r["response_mask"][2], "a tool turn's tokens are masked"
    for a, g, m, got in zip(r["verls"], r["gamma"], r["response_mask"], r["advantages"]):
        want = np.where(np.array(a) >= 0, np.float32(a) * np.float32(g), np.float32(a)) * np.array(m, dtype=np.float32)
        np.testing.assert_array_equal(np.array(got, dtype=np.float32), want.astype(np.float32))

"""`flowtracer.verl` against verl 0.9's own code on the CPU: the driver's wrapped
`compute_advantage` (verl's GRPO estimator, then γ·A by the engine's rule), the workers' γ on a
verl-shaped batch (left-padded prompts, right-padded responses, verl's position ids) equal to the
engine on each row's attention computed alone, and the worker and runner classes built from
verl's. Not run here: Ray's dispatch to FSDP workers and a whole `fit`, which need GPUs."""

from __future__ import annotations

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


def test_the_worker_and_runner_are_verls_own_classes():
    from verl.single_controller.base.decorator import MAGIC_ATTR
    from verl.workers.engine_workers import ActorRolloutRefWorker

    worker = flow_verl.worker_class()
    assert issubclass(worker, ActorRolloutRefWorker)
    assert hasattr(worker.compute_flow_gamma, MAGIC_ATTR), "registered for dispatch like compute_log_prob"
    runner = flow_verl.FlowTaskRunner
    assert hasattr(runner, "remote") and "FlowTaskRunner" in repr(runner)
    from verl.trainer import main_ppo_v0

    before = main_ppo_v0.TaskRunner
    try:
        flow_verl.install()
        assert main_ppo_v0.TaskRunner is runner, "verl's main() would start the flow's runner"
    finally:
        main_ppo_v0.TaskRunner = before
    with pytest.raises(ValueError, match="boxed, last_line"):
        flow_verl.answer_rule("nonsense")
    assert flow_verl.answer_rule("flowtracer.rl:last_line_answer") is flowtracer.rl.last_line_answer

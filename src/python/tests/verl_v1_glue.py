"""verl 0.9's v1 trainer with `flowtracer.verl`, on its own TransferQueue (a local Ray instance,
CPU only): `FlowTaskRunnerV1.run` installs the flow in verl's `trainer_base`, and a v1 trainer's
`_compute_advantage` (verl's own, then the flow's) runs on rows put into the queue as verl's
agent loop puts them (unpadded `prompts`, `responses`, `input_ids`, `position_ids`,
`response_mask` with a tool turn's tokens masked, token-level `rm_scores`, keys
`{uid}_{session}_{index}`), asking γ of two in-process actor workers through verl's own dispatch
and TransferQueue bridge. It writes what it found to `OUT/v1.json`.

Run by `test_verl.py` in a subprocess (`python verl_v1_glue.py OUT`): the Ray instance and the
queue's actors stay out of the test's interpreter, and a hang is a timeout there."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import ray
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny import CORPUS, hf_tokenizer, tiny  # noqa: E402
from verl_stand_ins import Engine, Group  # noqa: E402

ROWS = [
    # uid, prompt, response, tool tokens (a span of the response the policy did not write)
    ("a", CORPUS[0], "She sold 24.\nSo \\boxed{72}", None),
    ("a", CORPUS[0], "No idea at all.", None),
    ("b", "How many clips?", "48 + 24 = 72, \\boxed{72} clips", (2, 4)),
    ("b", "How many clips?", "so \\boxed{70}", None),
]
REWARDS = [1.0, 0.0, 1.0, 0.0]


def rows(tok):
    """The rows as verl's agent loop puts them into the queue, and the same in verl's v0 layout."""
    from tensordict import NonTensorStack, TensorDict

    nested = lambda xs: torch.nested.as_nested_tensor(xs, layout=torch.jagged)  # noqa: E731
    prompts = [torch.tensor(tok(p)["input_ids"]) for _, p, _, _ in ROWS]
    responses = [torch.tensor(tok(r)["input_ids"] + [tok.eos_token_id]) for _, _, r, _ in ROWS]
    masks, scores = [], []
    for (_, _, _, tool), r, reward in zip(ROWS, responses, REWARDS):
        m = torch.ones(len(r), dtype=torch.long)
        if tool:
            m[tool[0]:tool[1]] = 0
        masks.append(m)
        s = torch.zeros(len(r))
        s[-1] = reward
        scores.append(s)
    fields = TensorDict({
        "prompts": nested(prompts), "responses": nested(responses),
        "input_ids": nested([torch.cat([p, r]) for p, r in zip(prompts, responses)]),
        "position_ids": nested([torch.arange(len(p) + len(r)) for p, r in zip(prompts, responses)]),
        "response_mask": nested(masks), "rm_scores": nested(scores),
        "uid": NonTensorStack(*[u for u, _, _, _ in ROWS]),
    }, batch_size=len(ROWS))
    return fields, prompts, responses


def main(out: Path) -> None:
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
    import transfer_queue as tq
    from omegaconf import OmegaConf
    from verl.trainer import main_ppo
    from verl.trainer.ppo.v1 import trainer_base
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    import flowtracer
    from flowtracer import verl as flow_verl

    tq.init()
    tok = hf_tokenizer()
    model = tiny("qwen2", out, len(tok), "sdpa")
    fields, prompts, responses = rows(tok)
    keys = [f"{u}_{k}_0" for k, (u, _, _, _) in enumerate(ROWS)]
    train = tq.kv_batch_put(keys=keys, partition_id="train", fields=fields)
    plain = tq.kv_batch_put(keys=keys, partition_id="plain", fields=fields)

    import verl

    config = OmegaConf.load(Path(verl.__file__).parent / "trainer" / "config" / "_generated_ppo_trainer.yaml")
    config.algorithm.adv_estimator = "grpo"
    config.actor_rollout_ref.rollout.n = 2
    (out / "flow.toml").write_text("[credit]\nfraction = 0.3\ngamma = 2.0\napply_to_negative = false\n")
    config.flowtracer = {"params": str(out / "flow.toml"), "answer": "boxed", "rows_per_pass": 1}
    params = flowtracer.Params.load(out / "flow.toml")
    verls_own = trainer_base.PPOTrainer._compute_advantage
    engines = [Engine(model), Engine(model)]
    found: dict = {}

    def fit(runner, config):
        """verl's v1 `run` up to its trainer's advantage step, after the flow's `run` set it up:
        the trainer's actor workers are the flow's (two ranks in this process)."""
        worker_cls = trainer_base.ActorRolloutRefWorker

        trainer = object.__new__(PPOTrainerSync)
        trainer.config, trainer.tokenizer, trainer.actor_rollout_wg = config, tok, Group(worker_cls, engines)
        metrics: dict = {}
        passes: list = []
        hook = model.register_forward_pre_hook(lambda m, args, kwargs: passes.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
        trainer._compute_advantage(train, metrics=metrics)
        hook.remove()
        verls_own(trainer, plain, metrics={})
        from verl.experimental.separation.engine_workers import DetachActorWorker
        from verl.single_controller.base.decorator import MAGIC_ATTR
        from verl.trainer.ppo.v1 import trainer_separate_async

        detach = trainer_separate_async.DetachActorWorker
        found.update(passes=passes, worker=worker_cls.__name__, metrics=metrics, wrapped=trainer_base.PPOTrainer._compute_advantage.__wrapped__ is verls_own,
                     detach=[detach.__name__, issubclass(detach, DetachActorWorker), hasattr(detach.compute_flow_gamma, MAGIC_ATTR)])

    # Ray's put and get: what goes to and comes from the workers are objects in this process
    # here (a Ray actor's call would be handed the object a ref names); the queue's are Ray's.
    ray.put = lambda value, **kw: value
    get = ray.get
    ray.get = lambda refs, **kw: get(refs, **kw) if isinstance(refs, ray.ObjectRef) or (isinstance(refs, list) and refs and isinstance(refs[0], ray.ObjectRef)) else refs
    main_ppo.TaskRunnerV1.__ray_actor_class__.run = fit
    flow_verl.FlowTaskRunnerV1.__ray_actor_class__().run(config)

    got = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["advantages", "flow_gamma", "flow_answer", "response_mask"])
    want = tq.kv_batch_get(keys=keys, partition_id="plain", select_fields=["advantages"])
    # The same rows in verl's v0 layout through the flow's v0 worker function: its γ.
    p, t = max(map(len, prompts)), max(map(len, responses))
    pad = tok.pad_token_id
    ids = torch.tensor([[pad] * (p - len(a)) + a.tolist() + b.tolist() + [pad] * (t - len(b)) for a, b in zip(prompts, responses)])
    mask = torch.tensor([[0] * (p - len(a)) + [1] * (len(a) + len(b)) + [0] * (t - len(b)) for a, b in zip(prompts, responses)])
    v0 = {"input_ids": ids, "attention_mask": mask, "position_ids": torch.clip(mask.cumsum(-1) - 1, min=0), "responses": ids[:, p:]}
    v0[flow_verl.ANSWER] = flow_verl.answer_spans(v0["responses"], mask[:, p:], tok, flow_verl.answer_rule("boxed"))
    gamma_v0 = flow_verl.flow_gamma(model, v0, params)
    record = dict(
        found,
        gamma=[g.tolist() for g in got["flow_gamma"].unbind()],
        gamma_v0=[gamma_v0[i, : len(r)].tolist() for i, r in enumerate(responses)],
        answers=[a.tolist() for a in got["flow_answer"].unbind()], answers_v0=v0[flow_verl.ANSWER].tolist(),
        advantages=[a.tolist() for a in got["advantages"].unbind()],
        verls=[a.tolist() for a in want["advantages"].unbind()],
        response_mask=[m.tolist() for m in got["response_mask"].unbind()],
        modes=[e.modes for e in engines],
        apply_to_negative=params.credit.apply_to_negative,
    )
    (out / "v1.json").write_text(json.dumps(record))
    tq.close()
    ray.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""verl: flow-shaped advantages for `RayPPOTrainer` (verl 0.9, `trainer.use_v1=False`).

verl computes advantages on the driver (`ray_trainer.compute_advantage`, `(bs, response_length)`)
while the policy's weights live in the actor workers, and a registered advantage estimator sees
no batch. So the integration has three small parts, all installed by `FlowTaskRunner`:

- on the driver, the answer spans are found in each response with the trainer's tokenizer;
- on the workers, `compute_flow_gamma` (a method added to verl's `ActorRolloutRefWorker`, dispatched
  like `compute_log_prob`) runs the policy once without gradients under `flowtracer.capture` and
  the engine on each row, and returns γ `(bs, response_length)`;
- on the driver, `compute_advantage` is wrapped: verl's own estimator runs, then each token's
  advantage becomes γ·A by the engine's rule (`flowtracer.token_advantages`), still zero outside
  the response mask.

    # flow_ppo.py: verl's main_ppo with flow-shaped advantages
    import flowtracer.verl
    flowtracer.verl.install()
    from verl.trainer.main_ppo import main
    main()

run like `python -m verl.trainer.main_ppo` with `trainer.use_v1=False`,
with the flow's settings under `flowtracer` in the config (`+flowtracer.answer=boxed`,
`+flowtracer.params=/path/params.toml`; defaults: `boxed`, the engine's parameters).
"""

from __future__ import annotations

from typing import Any, Callable

from .params import Params
from .rl import AnswerSpan, Span, answer_rule, boxed_answer, find_answers, response_gamma, shape_advantages

__all__ = ["FlowTaskRunner", "answer_rule", "answer_spans", "flow_gamma", "install", "shaped_compute_advantage", "worker_class"]

GAMMA = "flow_gamma"
ANSWER = "flow_answer"
PARAMS = "flowtracer_params"


def answer_spans(responses: Any, response_mask: Any, tokenizer: Any, rule: AnswerSpan) -> Any:
    """`(bs, 2)` int64: each response's answer span (response token indices), -1 where none."""
    import torch

    rows = [ids[: int(n)] for ids, n in zip(responses.tolist(), response_mask.sum(dim=1).tolist())]
    found = find_answers(rows, tokenizer, rule)
    return torch.tensor([[-1, -1] if f is None else [int(f[0]), int(f[1])] for f in found], dtype=torch.int64).reshape(-1, 2)


def flow_gamma(module: Any, batch: Any, params: Params | None = None, backend: str = "auto") -> Any:
    """γ `(bs, response_length)` for a verl batch (`input_ids`, `attention_mask`, `responses`,
    optional `position_ids`, and `flow_answer` from `answer_spans`): what a worker computes."""
    t = batch["responses"].shape[1]
    mask = batch["attention_mask"]
    spans: list[Span | None] = [None if a < 0 else (a, b) for a, b in batch[ANSWER].tolist()]
    position_ids = batch["position_ids"] if "position_ids" in batch.keys() else None
    return response_gamma(module, batch["input_ids"], mask, mask[:, -t:], spans, position_ids=position_ids, params=params, backend=backend).gamma


def shaped_compute_advantage(original: Callable[..., Any], gamma_of: Callable[[Any], Any], params: Params | None = None) -> Callable[..., Any]:
    """verl's `compute_advantage`, then A_t = γ_t·A_t by the engine's rule over the response."""
    def compute_advantage(data: Any, *args: Any, **kwargs: Any) -> Any:
        data = original(data, *args, **kwargs)
        gamma = gamma_of(data)
        data.batch["advantages"] = shape_advantages(data.batch["advantages"], gamma, params, data.batch["response_mask"])
        data.batch[GAMMA] = gamma.to(data.batch["advantages"].device)
        return data

    compute_advantage.__wrapped__ = original  # type: ignore[attr-defined]
    return compute_advantage


def worker_class() -> type:
    """verl's `ActorRolloutRefWorker` with `compute_flow_gamma` (imports verl)."""
    from verl import DataProto
    from verl.single_controller.base.decorator import make_nd_compute_dataproto_dispatch_fn, register
    from verl.workers.engine_workers import ActorRolloutRefWorker

    class FlowActorRolloutRefWorker(ActorRolloutRefWorker):
        @register(dispatch_mode=make_nd_compute_dataproto_dispatch_fn(mesh_name="actor"))
        def compute_flow_gamma(self, data: DataProto) -> DataProto:
            engine = self.actor.engine
            if getattr(engine, "ulysses_sequence_parallel_size", 1) > 1:
                raise ValueError("flowtracer: Ulysses sequence parallelism splits the sequence; capture needs whole rows")
            params = Params.from_json(data.meta_info[PARAMS]) if PARAMS in data.meta_info else None
            device = next(engine.module.parameters()).device
            batch = data.batch.to(device)
            with engine.eval_mode():
                gamma = flow_gamma(engine.module, batch, params)
            return DataProto.from_dict(tensors={GAMMA: gamma.cpu()})

    return FlowActorRolloutRefWorker


def _runner_class() -> type:
    import ray
    from verl.trainer import main_ppo_v0
    from verl.trainer.ppo import ray_trainer
    from verl.trainer.ppo.ray_trainer import Role

    base = main_ppo_v0.TaskRunner.__ray_actor_class__

    class FlowTaskRunner(base):  # type: ignore[misc, valid-type]
        """verl's TaskRunner with the flow installed in its own process (the driver actor)."""

        def add_actor_rollout_worker(self, config: Any) -> Any:
            _, group = super().add_actor_rollout_worker(config)
            cls = worker_class()
            for role in list(self.role_worker_mapping):
                if role in (Role.ActorRollout, Role.ActorRolloutRef):
                    self.role_worker_mapping[role] = ray.remote(cls)
            return cls, group

        def run(self, config: Any) -> Any:
            # Found here, at the start, not at the first advantage after a rollout.
            if config.actor_rollout_ref.actor.get("strategy", "fsdp") == "megatron":
                raise ValueError(
                    "flowtracer.verl: the actor's megatron engine holds a Megatron model, and the flow captures a Hugging Face "
                    "transformers model's attention: use actor_rollout_ref.actor.strategy=fsdp (or fsdp2)"
                )
            settings = config.get("flowtracer", None) or {}
            params = Params.load(settings["params"]) if settings.get("params") else Params()
            rule = answer_rule(settings.get("answer", "boxed"), "flowtracer.answer")
            trainers: list[Any] = []
            init_workers = ray_trainer.RayPPOTrainer.init_workers

            def init_and_remember(trainer: Any) -> None:
                init_workers(trainer)
                trainers.append(trainer)

            def gamma_of(data: Any) -> Any:
                from verl import DataProto

                trainer = trainers[-1]
                keys = ["input_ids", "attention_mask", "responses"] + (["position_ids"] if "position_ids" in data.batch.keys() else [])
                tensors = {k: data.batch[k] for k in keys}
                tensors[ANSWER] = answer_spans(data.batch["responses"], data.batch["response_mask"], trainer.tokenizer, rule)
                out = trainer.actor_rollout_wg.compute_flow_gamma(DataProto.from_dict(tensors=tensors, meta_info={PARAMS: params.to_json()}))
                return out.batch[GAMMA]

            ray_trainer.RayPPOTrainer.init_workers = init_and_remember
            ray_trainer.compute_advantage = shaped_compute_advantage(ray_trainer.compute_advantage, gamma_of, params)
            return super().run(config)

    return ray.remote(FlowTaskRunner)


def install() -> None:
    """Makes verl's `main_ppo` (with `trainer.use_v1=False`) run `FlowTaskRunner`: call it in
    the launching script, then verl's `main()`. Any other runner `main` would start (verl's v1
    trainer, its default, which makes advantages elsewhere) is refused before it starts, so a
    run is never unshaped without a word."""
    from verl.trainer import main_ppo, main_ppo_v0

    main_ppo_v0.TaskRunner = _runner()
    # verl's own function, also when `install()` has run before.
    run_ppo = getattr(main_ppo.run_ppo, "flowtracer_wraps", main_ppo.run_ppo)

    def run_flow_ppo(config: Any, task_runner_class: Any, *args: Any, **kwargs: Any) -> Any:
        if task_runner_class is not _runner():
            raise ValueError(
                f"flowtracer.verl: verl would start {_name(task_runner_class)}, which the flow "
                "does not shape (verl's v1 trainer, `trainer.use_v1=True`, is verl's default): run with `trainer.use_v1=False`"
            )
        return run_ppo(config, task_runner_class, *args, **kwargs)

    run_flow_ppo.flowtracer_wraps = run_ppo  # type: ignore[attr-defined]
    main_ppo.run_ppo = run_flow_ppo


def _name(cls: Any) -> str:
    """A class's name, a Ray actor class's too (Ray's wrapper has none of its own)."""
    return str(getattr(getattr(cls, "__ray_actor_class__", cls), "__name__", cls))


def _runner() -> Any:
    if "FlowTaskRunner" not in globals():
        globals()["FlowTaskRunner"] = _runner_class()
    return globals()["FlowTaskRunner"]


def __getattr__(name: str) -> Any:
    # `FlowTaskRunner` is a Ray actor built from verl's own TaskRunner: made on first use.
    if name == "FlowTaskRunner":
        return _runner()
    raise AttributeError(f"module 'flowtracer.verl' has no attribute {name!r}")

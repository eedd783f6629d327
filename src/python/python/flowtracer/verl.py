"""verl: flow-shaped advantages for verl 0.9's PPO trainers, the v1 trainer (its default) and
the legacy `RayPPOTrainer` (`trainer.use_v1=False`).

verl computes advantages on the driver while the policy's weights live in the actor workers, and
a registered advantage estimator sees no batch. So the integration has three small parts, all
installed by the flow's task runner (`FlowTaskRunnerV1`, `FlowTaskRunner`):

- on the driver, the answer spans are found in each response with the trainer's tokenizer;
- on the workers, `compute_flow_gamma` (a method added to verl's `ActorRolloutRefWorker`, dispatched
  like `compute_log_prob`) runs the policy without gradients under `flowtracer.capture` and
  the engine on each row, and returns γ for each response token;
- on the driver, the advantage step is wrapped (v1: `PPOTrainer._compute_advantage`, whose rows
  live in TransferQueue, see `_verl_v1`; legacy: `ray_trainer.compute_advantage`): verl's own
  estimator runs, then each token's advantage becomes γ·A by the engine's rule
  (`flowtracer.token_advantages`), still zero outside the response mask.

    # flow_ppo.py: verl's main_ppo with flow-shaped advantages
    import flowtracer.verl
    flowtracer.verl.install()
    from verl.trainer.main_ppo import main
    main()

run like `python -m verl.trainer.main_ppo`, with the flow's settings under `flowtracer` in the
config (`+flowtracer.answer=boxed`, `+flowtracer.params=/path/params.toml`,
`+flowtracer.rows_per_pass=4`, the rows each capture pass runs; defaults: `boxed`, the engine's
parameters, 4).
"""

from __future__ import annotations

from typing import Any, Callable

from . import _verl_v1
from ._verl_v1 import ANSWER, GAMMA, PARAMS, ROWS, spans_of, spans_tensor
from .params import Params
from .rl import ROWS_PER_PASS, AnswerSpan, answer_rule, boxed_answer, checked_rows_per_pass, find_answers, response_gamma, shape_advantages

__all__ = ["FlowTaskRunner", "FlowTaskRunnerV1", "answer_rule", "answer_spans", "flow_gamma", "install", "shaped_compute_advantage", "worker_class"]


def answer_spans(responses: Any, response_mask: Any, tokenizer: Any, rule: AnswerSpan) -> Any:
    """`(bs, 2)` int64: each response's answer span (response token indices), -1 where none."""
    rows = [ids[: int(n)] for ids, n in zip(responses.tolist(), response_mask.sum(dim=1).tolist())]
    return spans_tensor(find_answers(rows, tokenizer, rule))


def flow_gamma(module: Any, batch: Any, params: Params | None = None, backend: str = "auto", rows_per_pass: int = ROWS_PER_PASS) -> Any:
    """γ `(bs, response_length)` for a verl batch (`input_ids`, `attention_mask`, `responses`,
    optional `position_ids`, and `flow_answer` from `answer_spans`): what a worker computes."""
    t = batch["responses"].shape[1]
    mask = batch["attention_mask"]
    spans = spans_of(batch[ANSWER])
    position_ids = batch["position_ids"] if "position_ids" in batch.keys() else None
    return response_gamma(module, batch["input_ids"], mask, mask[:, -t:], spans, position_ids=position_ids, params=params, backend=backend,
                          rows_per_pass=rows_per_pass).gamma


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


def worker_class(base: type | None = None) -> type:
    """verl's `ActorRolloutRefWorker` (or `base`, a worker class of verl's built on it) with
    `compute_flow_gamma` (imports verl)."""
    from verl import DataProto
    from verl.single_controller.base.decorator import make_nd_compute_dataproto_dispatch_fn, register
    from verl.workers.engine_workers import ActorRolloutRefWorker

    class FlowActorRolloutRefWorker(base or ActorRolloutRefWorker):  # type: ignore[misc]
        @register(dispatch_mode=make_nd_compute_dataproto_dispatch_fn(mesh_name="actor"))
        def compute_flow_gamma(self, data: Any) -> Any:
            """γ for this rank's rows: a padded `DataProto` from the v0 trainer, or (v1) the
            unpadded rows verl's `register` fetched from TransferQueue, whose γ goes back there."""
            engine = self.actor.engine
            if getattr(engine, "ulysses_sequence_parallel_size", 1) > 1:
                raise ValueError("flowtracer: Ulysses sequence parallelism splits the sequence; capture needs whole rows")
            if isinstance(data, DataProto):
                params = Params.from_json(data.meta_info[PARAMS]) if PARAMS in data.meta_info else None
                device = next(engine.module.parameters()).device
                batch = data.batch.to(device)
                with engine.eval_mode():
                    gamma = flow_gamma(engine.module, batch, params, rows_per_pass=data.meta_info.get(ROWS, ROWS_PER_PASS))
                return DataProto.from_dict(tensors={GAMMA: gamma.cpu()})
            from tensordict import TensorDict
            from verl.utils import tensordict_utils as tu

            settings = tu.get(data, key=PARAMS, default=None)
            rows = tu.get(data, key=ROWS, default=ROWS_PER_PASS)
            with engine.eval_mode():
                gamma = _verl_v1.flow_gamma_rows(engine.module, data, None if settings is None else Params.from_json(settings), rows_per_pass=rows)
            return TensorDict({GAMMA: gamma}, batch_size=len(gamma))

    if base is not None:
        FlowActorRolloutRefWorker.__name__ = FlowActorRolloutRefWorker.__qualname__ = f"Flow{base.__name__}"

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
            params, rule, rows = _settings(config)
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
                out = trainer.actor_rollout_wg.compute_flow_gamma(DataProto.from_dict(tensors=tensors, meta_info={PARAMS: params.to_json(), ROWS: rows}))
                return out.batch[GAMMA]

            ray_trainer.RayPPOTrainer.init_workers = init_and_remember
            ray_trainer.compute_advantage = shaped_compute_advantage(ray_trainer.compute_advantage, gamma_of, params)
            return super().run(config)

    return ray.remote(FlowTaskRunner)


def _settings(config: Any) -> tuple[Params, AnswerSpan, int]:
    """The run's parameters, answer rule and rows a capture pass from `+flowtracer.*`, and what
    the flow cannot honour, found when the run starts rather than at its first advantage after
    a rollout."""
    if config.actor_rollout_ref.actor.get("strategy", "fsdp") == "megatron":
        raise ValueError(
            "flowtracer.verl: the actor's megatron engine holds a Megatron model, and the flow captures a Hugging Face "
            "transformers model's attention: use actor_rollout_ref.actor.strategy=fsdp (or fsdp2)"
        )
    settings = config.get("flowtracer", None) or {}
    params = Params.load(settings["params"]) if settings.get("params") else Params()
    rows = checked_rows_per_pass(settings.get("rows_per_pass", ROWS_PER_PASS), "flowtracer.rows_per_pass")
    return params, answer_rule(settings.get("answer", "boxed"), "flowtracer.answer"), rows


def _runner_v1_class() -> type:
    import ray
    from verl.trainer import main_ppo

    base = main_ppo.TaskRunnerV1.__ray_actor_class__

    class FlowTaskRunnerV1(base):  # type: ignore[misc, valid-type]
        """verl's v1 TaskRunner with the flow installed in its own process (the driver actor):
        the actor workers are the flow's, and every v1 trainer's `_compute_advantage` shapes."""

        def run(self, config: Any) -> Any:
            from verl.trainer.ppo.v1 import trainer_base, trainer_separate_async

            params, rule, rows = _settings(config)
            # The worker classes the v1 trainers start their actors from: the base trainer's,
            # and the separate-async trainer's own (verl's, also when `run` ran before here).
            trainer_base.ActorRolloutRefWorker = worker_class()
            detach = getattr(trainer_separate_async.DetachActorWorker, "flowtracer_base", trainer_separate_async.DetachActorWorker)
            trainer_separate_async.DetachActorWorker = worker_class(detach)
            trainer_separate_async.DetachActorWorker.flowtracer_base = detach
            advantage = getattr(trainer_base.PPOTrainer._compute_advantage, "__wrapped__", trainer_base.PPOTrainer._compute_advantage)
            trainer_base.PPOTrainer._compute_advantage = _verl_v1.shaped_compute_advantage(advantage, params, rule, rows)
            return super().run(config)

    return ray.remote(FlowTaskRunnerV1)


def install() -> None:
    """Makes verl's `main_ppo` run the flow's runners: `FlowTaskRunnerV1` for verl's v1 trainer
    (`trainer.use_v1=True`, its default), `FlowTaskRunner` for the legacy one. Call it in the
    launching script, then verl's `main()`. Any other runner `main` would start is refused
    before it starts, so a run is never unshaped without a word."""
    from verl.trainer import main_ppo, main_ppo_v0

    main_ppo_v0.TaskRunner = _runner()
    # verl's own function, also when `install()` has run before.
    run_ppo = getattr(main_ppo.run_ppo, "flowtracer_wraps", main_ppo.run_ppo)

    def run_flow_ppo(config: Any, task_runner_class: Any, *args: Any, **kwargs: Any) -> Any:
        if task_runner_class is main_ppo.TaskRunnerV1:
            task_runner_class = _runner("FlowTaskRunnerV1")
        elif task_runner_class is not _runner():
            raise ValueError(f"flowtracer.verl: verl would start {_name(task_runner_class)}, which the flow does not shape")
        return run_ppo(config, task_runner_class, *args, **kwargs)

    run_flow_ppo.flowtracer_wraps = run_ppo  # type: ignore[attr-defined]
    main_ppo.run_ppo = run_flow_ppo


def _name(cls: Any) -> str:
    """A class's name, a Ray actor class's too (Ray's wrapper has none of its own)."""
    return str(getattr(getattr(cls, "__ray_actor_class__", cls), "__name__", cls))


def _runner(name: str = "FlowTaskRunner") -> Any:
    if name not in globals():
        globals()[name] = _runner_class() if name == "FlowTaskRunner" else _runner_v1_class()
    return globals()[name]


def __getattr__(name: str) -> Any:
    # The runners are Ray actors built from verl's own TaskRunners: made on first use.
    if name in ("FlowTaskRunner", "FlowTaskRunnerV1"):
        return _runner(name)
    raise AttributeError(f"module 'flowtracer.verl' has no attribute {name!r}")

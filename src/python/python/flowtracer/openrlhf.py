"""OpenRLHF (0.11): flow-shaped advantages through the experience maker.

OpenRLHF lays each rollout out right-padded, `sequences`/`attention_mask` `(B, L)`, with
`action_mask` `(B, L-1)` marking the generated tokens (column j is token j+1), and sets
`experience.advantages` in `RemoteExperienceMaker.compute_advantages_and_returns`. Here:

- `FlowPolicyActor` is OpenRLHF's `PolicyModelActor` with one more method, `flow_gamma`, that
  runs the policy without gradients under `flowtracer.capture` and the engine on each row
  (`flowtracer.rl.action_gamma`), dispatched over the actor group like `forward`;
- `FlowExperienceMaker` finds each response's answer with the tokenizer on the driver, asks the
  actors for γ, lets OpenRLHF compute its advantages, then makes them γ·A by the engine's rule
  (zero outside the action mask, as before).

`install(params=..., answer=boxed_answer)` puts both into OpenRLHF's PPO trainer, synchronous or
asynchronous (`openrlhf.cli.train_ppo_ray`, with or without `--train.async_enable`), in the
process that launches it: a script that calls it and then runs `openrlhf.cli.train_ppo_ray` as
`__main__` (see the README). It returns the classes it put there.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .params import Params
from .rl import ROWS_PER_PASS, AnswerSpan, Span, action_gamma, boxed_answer, checked_rows_per_pass, find_answers, shape_advantages

__all__ = ["Installed", "flow_gamma", "install", "shaped_advantages"]


def _hf_model(actor: Any) -> Any:
    """OpenRLHF's `Actor` holds the model (after `strategy.prepare`, a DeepSpeed engine around it)."""
    model = getattr(actor, "model", actor)
    return getattr(model, "module", model)


def flow_gamma(model: Any, sequences: Any, attention_mask: Any, action_mask: Any, answers: list[Span | None], params_json: str | None = None,
               rows_per_pass: int = ROWS_PER_PASS) -> Any:
    """γ `(B, L-1)` like `action_mask`: what each actor computes for its share of a batch."""
    params = Params.from_json(params_json) if params_json else None
    return action_gamma(model, sequences, attention_mask, action_mask, answers, params=params, rows_per_pass=rows_per_pass).gamma


def shaped_advantages(advantages: Any, gamma: Any, action_mask: Any, params: Params | None = None) -> Any:
    """OpenRLHF's `(B, L-1)` advantages made γ·A by the engine's rule, zero outside the actions."""
    return shape_advantages(advantages, gamma, params, action_mask)


def _whole_rows(args: Any) -> None:
    """Refuses the layouts that give a policy actor part of a row's attention: ring attention
    splits each sequence across ranks, and tensor parallelism each layer's heads (capture on one
    rank would average only its own heads, and the trainer would keep one rank's γ)."""
    ring, tp = args.ds.ring_attn_size, args.ds.tensor_parallel_size
    if ring > 1 or tp > 1:
        raise ValueError(
            f"flowtracer: --ds.ring_attn_size {ring} and --ds.tensor_parallel_size {tp}: ring attention splits each "
            "sequence and tensor parallelism each layer's heads across ranks, and the flow needs every head of whole rows "
            "on one rank; run with both at 1"
        )


def _generated(experience: Any) -> list[list[int]]:
    """Each row's generated tokens, from the first to the last (OpenRLHF's action columns + 1)."""
    rows = []
    for seq, acts in zip(experience.sequences.tolist(), experience.action_mask.tolist()):
        on = [j for j, a in enumerate(acts) if a]
        rows.append(seq[on[0] + 1: on[-1] + 2] if on else [])
    return rows


class Installed(NamedTuple):
    """What `install` put into OpenRLHF: the classes themselves (not Ray's wrappers of them)."""

    policy_actor: type
    experience_maker: type
    trainer: type
    async_trainer: type
    training_actor: type


def install(params: Params | None = None, answer: AnswerSpan = boxed_answer, rows_per_pass: int = ROWS_PER_PASS) -> Installed:
    """Makes OpenRLHF's PPO trainer use `FlowExperienceMaker` and `FlowPolicyActor` (imports
    OpenRLHF, which needs its GPU stack: DeepSpeed, flash-attn). `rows_per_pass`: the rows
    each actor's capture pass runs at a time."""
    import sys

    import ray
    import torch
    from openrlhf.trainer import ppo_trainer, ppo_trainer_async
    from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
    from openrlhf.trainer.ray import ppo_actor
    from openrlhf.trainer.ray.ppo_actor import PolicyModelActor

    checked_rows_per_pass(rows_per_pass, "flowtracer.openrlhf.install: rows_per_pass")
    chosen = params or Params()

    class FlowPolicyActor(PolicyModelActor.__ray_actor_class__):
        def flow_gamma(self, sequences: Any, attention_mask: Any, action_mask: Any, answers: list[Span | None], params_json: str | None = None,
                       rows_per_pass: int = ROWS_PER_PASS) -> Any:
            _whole_rows(self.strategy.args)
            device = torch.cuda.current_device() if torch.cuda.is_available() else "cpu"
            self.actor.eval()
            try:
                gamma = flow_gamma(_hf_model(self.actor), sequences.to(device), attention_mask.to(device), action_mask.to(device), answers, params_json,
                                   rows_per_pass)
            finally:
                self.actor.train()
            return gamma.to("cpu")

    class FlowExperienceMaker(RemoteExperienceMaker):
        @torch.no_grad()
        def compute_advantages_and_returns(self, experiences: list[Any]) -> list[Any]:
            refs = self.actor_model_group.async_run_method_batch(
                method_name="flow_gamma",
                sequences=[e.sequences for e in experiences],
                attention_mask=[e.attention_mask for e in experiences],
                action_mask=[e.action_mask for e in experiences],
                answers=[find_answers(_generated(e), self.tokenizer, answer) for e in experiences],
                params_json=[chosen.to_json()] * len(experiences),
                rows_per_pass=[rows_per_pass] * len(experiences),
            )
            gammas = self._flatten_results(refs, self.args.ds.ring_attn_size * self.args.ds.tensor_parallel_size)
            experiences = super().compute_advantages_and_returns(experiences)
            for e, gamma in zip(experiences, gammas):
                e.advantages = shaped_advantages(e.advantages, gamma, e.action_mask, chosen)
                e.info["flow_gamma_mean"] = gamma.mean(dim=-1)
            return experiences

    def with_flow_maker(trainer: Any) -> None:
        """A trainer whose experiences are made (sync: the trainer; async: its training actor)
        made to use the flow's maker, once its layout is known to keep rows whole."""
        _whole_rows(trainer.args)
        trainer.experience_maker.__class__ = FlowExperienceMaker

    class FlowPPOTrainer(ppo_trainer.PPOTrainer.__ray_actor_class__):
        """OpenRLHF's PPOTrainer (a Ray actor of its own) with the flow's experience maker.
        Defined here, so Ray ships it by value and the actor process gets the flow too."""

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            with_flow_maker(self)

    class FlowTrainingActor(ppo_trainer_async.TrainingActor.__ray_actor_class__):
        """The async trainer's training actor (where its experiences are made), with the
        flow's experience maker."""

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            with_flow_maker(self)

    class FlowPPOTrainerAsync(ppo_trainer_async.PPOTrainerAsync.__ray_actor_class__):
        """OpenRLHF's async trainer (`--train.async_enable`), an actor that starts its training
        actor by its module's name: set first, in the actor's own process."""

        def __init__(self, *args: Any, **kwargs: Any):
            from openrlhf.trainer import ppo_trainer_async as here

            here.TrainingActor = ray.remote(FlowTrainingActor)
            super().__init__(*args, **kwargs)

    # The modules' own attributes, so that a fresh run of `train_ppo_ray` as __main__ (runpy)
    # imports these too. The CLI's module is not imported here (runpy would then warn that it
    # runs a module already imported); where a caller imported it first, its name is set too.
    ppo_trainer.PPOTrainer = ray.remote(FlowPPOTrainer)
    ppo_trainer_async.PPOTrainerAsync = ray.remote(FlowPPOTrainerAsync)
    ppo_actor.PolicyModelActor = ray.remote(num_gpus=1)(FlowPolicyActor)
    cli = sys.modules.get("openrlhf.cli.train_ppo_ray")
    if cli is not None:
        setattr(cli, "PolicyModelActor", ppo_actor.PolicyModelActor)
    return Installed(FlowPolicyActor, FlowExperienceMaker, FlowPPOTrainer, FlowPPOTrainerAsync, FlowTrainingActor)

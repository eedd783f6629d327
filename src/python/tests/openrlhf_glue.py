"""`flowtracer.openrlhf.install()` inside OpenRLHF 0.11.2's own code, on the CPU. Run by
`test_openrlhf.py` in a process of its own (`python openrlhf_glue.py TMP_DIR`; exit 0 and
`ok` on the last line when every check holds), because OpenRLHF imports three packages with no
CPU build at its modules' tops: flash-attn, vLLM and DeepSpeed. They are stood in for by empty
modules here (each name asked of them is a new empty class); no path this script takes calls
into them, and the process ends with the stand-ins, so no other test sees them.

What runs is OpenRLHF's: its CLI's parser and checks (`train_ppo_ray` as `__main__`, as the
README runs it, up to where it would make its DeepSpeed strategy), its rollouts made into
experiences and split into micro-batches, its actor group's dispatch of a method over its actors
(`async_run_method_batch`, `execute_batch`; Ray's put and get are the identity here, the actors
objects in this process), its `Actor` around the model, and its advantage estimator. The checks:
the flow's classes are the ones OpenRLHF's CLI and trainers start (the asynchronous trainer's
training actor too, which it starts in its own process by its module's name); each row's γ is
`flow_gamma`'s on that row; the advantages are OpenRLHF's own made γ·A by the engine's rule,
zero outside the actions; ring attention and tensor parallelism, which would leave a rank part
of a row's attention, are refused."""

from __future__ import annotations

import copy
import importlib.abc
import importlib.machinery
import runpy
import sys
import types
from pathlib import Path
from types import SimpleNamespace

GPU_ONLY = ("flash_attn", "vllm", "deepspeed")


class _StandIn(types.ModuleType):
    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (), {"__module__": self.__name__})
        setattr(self, name, value)
        return value


class _StandIns(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in GPU_ONLY:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandIn(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _StandIns())

import ray  # noqa: E402
import torch  # noqa: E402

import flowtracer  # noqa: E402
from flowtracer import openrlhf as flow_openrlhf  # noqa: E402
from flowtracer.rl import boxed_answer, find_answers  # noqa: E402
from tiny import CORPUS, hf_tokenizer, tiny  # noqa: E402

RESPONSES = ["She sold 24.\nSo \\boxed{72}", "48 + 24 = 72, \\boxed{72} clips", "I do not know.", "so \\boxed{70}"]
REWARDS = [1.0, 0.0, 0.0, 1.0]


class _Stop(Exception):
    pass


def cli_args(model_dir: Path) -> tuple[SimpleNamespace, dict]:
    """`train_ppo_ray`'s own parsed and checked arguments, and the globals of the run's
    `__main__`, caught where it would start making its DeepSpeed strategy."""
    import openrlhf.utils

    caught: dict = {}

    def get_strategy(args):
        caught["args"], caught["main"] = args, sys._getframe(1).f_globals
        raise _Stop

    openrlhf.utils.get_strategy = get_strategy
    ray.is_initialized = lambda: True
    sys.argv = [
        "train_ppo_ray", "--actor.model_name_or_path", str(model_dir), "--algo.advantage.estimator", "group_norm",
        "--rollout.n_samples_per_prompt", "2", "--rollout.batch_size", "2", "--rollout.micro_batch_size", "2",
        "--actor.num_gpus_per_node", "2",
    ]
    try:
        runpy.run_module("openrlhf.cli.train_ppo_ray", run_name="__main__")
    except _Stop:
        return caught["args"], caught["main"]
    raise AssertionError("train_ppo_ray ran to its end without making a strategy")


class _Handle:
    """A Ray actor handle's `execute_batch.remote`, run on an actor object in this process."""

    def __init__(self, actor):
        self.execute_batch = SimpleNamespace(remote=actor.execute_batch)


def main(tmp: Path) -> None:
    params = flowtracer.Params(credit={"fraction": 0.3, "gamma": 2.0, "apply_to_negative": False})
    for wrong in (0, 1.5):
        try:
            flow_openrlhf.install(params=params, rows_per_pass=wrong)
        except ValueError as e:
            assert "install: rows_per_pass: a whole number of rows, at least 1" in str(e), str(e)
        else:
            raise AssertionError(f"install took rows_per_pass={wrong}")
    installed = flow_openrlhf.install(params=params, rows_per_pass=1)
    assert "openrlhf.cli.train_ppo_ray" not in sys.modules, "install() leaves the CLI for runpy to run afresh"

    from openrlhf.models import Actor
    from openrlhf.trainer import ppo_trainer, ppo_trainer_async
    from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
    from openrlhf.trainer.ppo_utils.kl_controller import FixedKLController
    from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator
    from openrlhf.trainer.ray import ppo_actor
    from openrlhf.trainer.ray.launcher import RayActorGroup

    # The flow's classes are what OpenRLHF starts, in its modules and in a fresh `__main__`.
    assert ppo_actor.PolicyModelActor.__ray_actor_class__ is installed.policy_actor
    assert ppo_trainer.PPOTrainer.__ray_actor_class__ is installed.trainer
    assert issubclass(installed.experience_maker, RemoteExperienceMaker)
    tok = hf_tokenizer()
    model = tiny("llama", tmp, len(tok), "sdpa")
    args, run_main = cli_args(tmp / "llama")
    assert run_main["PolicyModelActor"].__ray_actor_class__ is installed.policy_actor, "the CLI run as __main__ starts the flow's actor"
    assert args.algo.advantage.estimator == "group_norm" and args.rollout.n_samples_per_prompt == 2

    # Each trainer's experience maker becomes the flow's: the synchronous trainer's, and that of
    # the asynchronous trainer's training actor, which that trainer starts by its module's name.
    strategy = SimpleNamespace(args=args, ring_attn_group=None, is_rank_0=lambda: True)

    def made(cls, base_init):
        """`cls()` with its OpenRLHF base's `__init__` (Ray actors, DeepSpeed) replaced."""
        base = cls.__mro__[1]
        original = base.__init__
        base.__init__ = base_init
        try:
            return cls()
        finally:
            base.__init__ = original

    def with_maker(self, *_args, **_kwargs):
        self.args = args
        self.experience_maker = RemoteExperienceMaker(None, None, None, None, FixedKLController(0.0), strategy, tok)

    assert type(made(installed.trainer, with_maker).experience_maker) is installed.experience_maker
    assert ppo_trainer_async.PPOTrainerAsync.__ray_actor_class__ is installed.async_trainer
    made(installed.async_trainer, lambda self, *_args, **_kwargs: None)
    assert ppo_trainer_async.TrainingActor.__ray_actor_class__ is installed.training_actor
    assert type(made(installed.training_actor, with_maker).experience_maker) is installed.experience_maker

    # Ring attention splits each sequence across ranks, tensor parallelism each layer's heads:
    # either would leave a rank part of a row's attention, so each trainer refuses them at its
    # start, and the policy actor too.
    for flag in ("ring_attn_size", "tensor_parallel_size"):
        setattr(args.ds, flag, 2)
        for trainer in (installed.trainer, installed.training_actor):
            try:
                made(trainer, with_maker)
            except ValueError as e:
                assert f"--ds.{flag} 2" in str(e) and "every head of whole rows" in str(e), str(e)
            else:
                raise AssertionError(f"{trainer.__name__} took --ds.{flag} 2")
        setattr(args.ds, flag, 1)

    # Rollouts as OpenRLHF makes them from its engines' responses, split into its micro-batches.
    prompt_ids = tok(CORPUS[0])["input_ids"]
    rollouts = []
    for text, reward in zip(RESPONSES, REWARDS):
        r_ids = tok(text)["input_ids"]
        response = {
            "observation_tokens": prompt_ids + r_ids, "action_ranges": [(len(prompt_ids), len(prompt_ids) + len(r_ids))],
            "reward": reward, "scores": reward, "rollout_log_probs": None, "prompt": CORPUS[0], "label": "72",
        }
        rollouts.append(SamplesGenerator._process_response_into_experience(None, response, max_len=1024))
    answers = find_answers([tok(t)["input_ids"] for t in RESPONSES], tok, boxed_answer)
    assert answers[2] is None and all(a is not None for i, a in enumerate(answers) if i != 2)

    ray.put = lambda value: value
    ray.get = lambda refs: refs
    policy = object.__new__(installed.policy_actor)
    policy.strategy = strategy
    policy.actor = Actor(model)

    group = object.__new__(RayActorGroup)
    group.duplicate_actors = 1
    group._actor_handlers = [_Handle(policy), _Handle(policy)]
    maker = installed.experience_maker(group, None, None, None, FixedKLController(0.0), strategy, tok)
    experiences = maker.split_rollout_samples(copy.deepcopy(rollouts))
    assert len(experiences) == 2
    for e in experiences:
        e.kl = torch.zeros_like(e.action_mask, dtype=torch.float32)
    theirs = RemoteExperienceMaker.compute_advantages_and_returns(maker, copy.deepcopy(experiences))
    passes = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: passes.append(kw["input_ids"].shape[0]), with_kwargs=True)
    ours = maker.compute_advantages_and_returns(experiences)
    hook.remove()
    assert passes == [1] * sum(len(e.sequences) for e in experiences), f"install(rows_per_pass=1): a row a pass, not {passes}"
    for b, (e, t) in enumerate(zip(ours, theirs)):
        rows = answers[2 * b: 2 * b + 2]
        gamma = flow_openrlhf.flow_gamma(model, e.sequences, e.attention_mask, e.action_mask, rows, params.to_json())
        assert (gamma == 2.0).any() and torch.all(gamma[~e.action_mask.bool()] == 1)
        acts = e.action_mask.bool()
        want = torch.where(t.advantages >= 0, t.advantages * gamma, t.advantages) * acts
        assert (t.advantages[acts] > 0).any() and (t.advantages[acts] < 0).any(), "both signs of A are tried"
        assert torch.equal(e.advantages, want), f"micro-batch {b}"
        assert torch.equal(e.returns, t.returns) and torch.equal(e.info["flow_gamma_mean"], gamma.mean(dim=-1))

    args.ds.tensor_parallel_size = 2
    try:
        policy.flow_gamma(rollouts[0].sequences, rollouts[0].attention_mask, rollouts[0].action_mask, [answers[0]])
    except ValueError as e:
        assert "--ds.tensor_parallel_size 2" in str(e)
    else:
        raise AssertionError("the policy actor took tensor parallelism")
    args.ds.tensor_parallel_size = 1

    # A caller that imported the CLI's module before `install()` gets the flow's actor there too.
    from openrlhf.cli import train_ppo_ray

    again = flow_openrlhf.install(params=params)
    assert train_ppo_ray.PolicyModelActor.__ray_actor_class__ is again.policy_actor
    print("ok")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""TRL: `FlowGRPOTrainer`, GRPO with each token's advantage shaped by the flow's credit.

    from flowtracer.trl import FlowGRPOTrainer, boxed_answer
    trainer = FlowGRPOTrainer(model=..., reward_funcs=..., args=GRPOConfig(...), train_dataset=...,
                              answer_span=boxed_answer, flow_params=flowtracer.Params())
    trainer.train()

After TRL has generated and scored a batch (its `(B,)` group-normalised advantages), the trainer
runs the policy once more without gradients over prompt + completion under `flowtracer.capture`,
gets γ for every completion token from the engine (`flowtracer.rl.response_gamma`), and hands
TRL's loss `(B, T)` advantages `γ·A` (the engine's rule: a negative A stays unshaped unless
`credit.apply_to_negative`). TRL's loss accepts `(B, T)` advantages as they are. With
`num_iterations > 1` γ is computed once per generation batch, as A is.
"""

from __future__ import annotations

from os import PathLike, fspath
from pathlib import Path
from typing import Any

from trl import GRPOTrainer

from .params import Params
from .rl import AnswerSpan, QuestionSpan, Shaping, boxed_answer, last_line_answer, response_gamma, shape_advantages, summary

__all__ = ["FlowGRPOTrainer", "boxed_answer", "last_line_answer"]

# Inputs of a generation batch that the capture pass cannot reproduce (it runs text only).
_UNSUPPORTED_INPUTS = ("pixel_values", "image_grid_thw", "pixel_attention_mask", "image_sizes", "token_type_ids", "mm_token_type_ids")


class FlowGRPOTrainer(GRPOTrainer):
    """`GRPOTrainer` whose advantages are per token: γ_t·A from the policy's own attention flow.

    `answer_span` finds the answer in each completion's token pieces (default `boxed_answer`;
    a completion without one keeps γ = 1); `question_span` the question in the prompt's (default
    the whole prompt). `flow_params` are the engine's parameters (layers, credit fraction and γ,
    ...); `flow_backend` the engine's backend. `flow_trace_dir`, when set, receives every
    row that has an answer as a trace file (`step_NNNNNN/sample_NNNN.safetensors`, one folder
    per generation batch, NNNN the row's place in the batch across all processes), a run folder
    the app and `flowtracer --export` open. `last_shaping` keeps the last batch's γ, base
    advantages and per-row results."""

    def __init__(
        self,
        *args: Any,
        answer_span: AnswerSpan = boxed_answer,
        question_span: QuestionSpan | None = None,
        flow_params: Params | None = None,
        flow_backend: str = "auto",
        flow_trace_dir: str | PathLike[str] | None = None,
        **kwargs: Any,
    ):
        config = kwargs.get("args", args[2] if len(args) > 2 else None)
        if getattr(config, "use_liger_kernel", False):
            raise ValueError(
                "FlowGRPOTrainer: use_liger_kernel is not supported: Liger's fused GRPO loss takes one advantage "
                "per sequence, and flow shaping needs one per token. Set use_liger_kernel=False."
            )
        super().__init__(*args, **kwargs)
        self.answer_span = answer_span
        self.question_span = question_span
        self.flow_params = flow_params or Params()
        self.flow_backend = flow_backend
        self.flow_trace_dir = None if flow_trace_dir is None else Path(fspath(flow_trace_dir))
        if self.flow_trace_dir is not None and self.flow_trace_dir.exists() and any(self.flow_trace_dir.iterdir()):
            raise ValueError(f"FlowGRPOTrainer: flow_trace_dir {self.flow_trace_dir} is not empty; traces are never overwritten")
        self.last_shaping: Shaping | None = None
        self.last_base_advantages: Any = None
        self._flow_batches: tuple[int, int] = (-1, 0)

    def _flow_batch_folder(self) -> str:
        """`step_NNNNNN` for a generation batch, `step_NNNNNN-K` for the K-th after it in the
        same optimizer step (`steps_per_generation` below `gradient_accumulation_steps`). Every
        rank generates the same batches in step, so their names agree."""
        step, seen = self._flow_batches
        k = seen if step == self.state.global_step else 0
        self._flow_batches = (self.state.global_step, k + 1)
        return f"step_{self.state.global_step:06d}" + (f"-{k}" if k else "")

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        out = super()._generate_and_score_completions(inputs)
        if not self.model.training:
            return out  # evaluation computes no loss from advantages
        unsupported = [k for k in _UNSUPPORTED_INPUTS if k in out]
        if unsupported:
            raise ValueError(f"FlowGRPOTrainer: inputs {unsupported} are not supported: the capture pass runs on text only")
        import torch

        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        trace_dir = None
        if self.flow_trace_dir is not None:
            trace_dir = self.flow_trace_dir / self._flow_batch_folder()
        # The model TRL's own forward passes run (`self.model`), not the module inside it: under
        # FSDP1 that is the wrapper that gathers each layer's parameters, where the module
        # inside holds this rank's shard only (its forward fails on the flattened weights).
        shaping = response_gamma(
            self.model,
            ids,
            mask,
            out["completion_mask"],
            self.answer_span,
            tokenizer=self.processing_class,
            question_span=self.question_span,
            params=self.flow_params,
            backend=self.flow_backend,
            trace_dir=trace_dir,
            # Each process's rows are its slice of the generation batch (TRL's `process_slice`):
            # named by their place in the whole batch, the ranks' files share one folder.
            first_row=self.accelerator.process_index * len(ids),
            # As many rows a pass as TRL's own forward passes take.
            rows_per_pass=self.args.per_device_train_batch_size,
        )
        self.last_base_advantages = out["advantages"]
        self.last_shaping = shaping
        out["advantages"] = shape_advantages(out["advantages"], shaping.gamma, self.flow_params)
        for name, value in summary(shaping).items():
            self._metrics["train"][name].append(value)
        return out

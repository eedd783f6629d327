"""`flowtracer.trl.FlowGRPOTrainer` on a tiny random-weight Qwen2 (GQA) with a tokenizer trained
here: two real GRPO steps on the CPU, and the advantages TRL's loss receives are the engine's
`token_advantages(γ, A)` token for token, with γ the credit the binary exports for the same
trace."""

from __future__ import annotations

import numpy as np
import pytest

import flowtracer
from conftest import exported, require
from flowtracer.rl import boxed_answer, last_line_answer, pieces_of
from tiny import hf_tokenizer, tiny

torch = require("torch")
trl = require("trl")
datasets = require("datasets")

from flowtracer.trl import FlowGRPOTrainer  # noqa: E402  (needs trl)


def test_answer_callbacks_find_their_tokens():
    tok = hf_tokenizer()
    text = "She sold 48 / 2 = 24 clips in May.\nThe answer is \\boxed{72}."
    pieces = pieces_of(tok, tok(text)["input_ids"])
    assert "".join(pieces) == text
    a0, a1 = boxed_answer(pieces)
    assert "".join(pieces[a0:a1]).strip() == "72" or "72" in "".join(pieces[a0:a1])
    assert "boxed" not in "".join(pieces[a0:a1]) and "}" not in "".join(pieces[a0:a1])
    l0, l1 = last_line_answer(pieces)
    assert "".join(pieces[l0:l1]).strip() == "The answer is \\boxed{72}."
    assert boxed_answer(pieces_of(tok, tok("no box here")["input_ids"])) is None
    assert boxed_answer(pieces_of(tok, tok("\\boxed{72")["input_ids"])) is None  # unclosed
    assert last_line_answer(pieces_of(tok, tok("one line only")["input_ids"])) is None


class Recording(FlowGRPOTrainer):
    """Keeps what each generation batch shaped and what each loss call received."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.generations: list[dict] = []
        self.losses: list[dict] = []

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        self.generations.append(dict(out=out, gamma=self.last_shaping.gamma.clone(), base=self.last_base_advantages.clone(), shaping=self.last_shaping))
        return out

    def _compute_loss(self, model, inputs):
        self.losses.append({k: inputs[k].clone() for k in ("prompt_ids", "completion_ids", "completion_mask", "advantages")})
        return super()._compute_loss(model, inputs)


def last_tokens(pieces):
    """The answer: a completion's last two tokens (the tiny model writes no `\\boxed{}`)."""
    n = sum(1 for p in pieces if p)
    return (n - 2, n) if n >= 4 else None


def test_two_grpo_steps_hand_the_loss_flow_shaped_advantages(tmp_path):
    tok = hf_tokenizer()
    model = tiny("qwen2", tmp_path, len(tok), "sdpa")
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    prompts = ["Natalia sold clips to 48 of her friends.", "How many clips did Natalia sell?", "Weng earns 12 an hour.", "Let us check: 48 + 24 = 72."]
    args = trl.GRPOConfig(
        output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", save_strategy="no", logging_steps=1,
        per_device_train_batch_size=4, num_generations=4, max_completion_length=12, max_steps=2,
        learning_rate=1e-3, seed=0, beta=0.0, temperature=1.0,
    )
    params = flowtracer.Params(credit={"fraction": 0.25, "gamma": 2.0, "apply_to_negative": False})
    trainer = Recording(
        model=model, processing_class=tok, args=args, train_dataset=datasets.Dataset.from_dict({"prompt": prompts}),
        reward_funcs=[lambda completions, **_: [float(len(set(c.split()))) for c in completions]],
        answer_span=last_tokens, flow_params=params, flow_trace_dir=tmp_path / "traces",
    )
    trainer.train()

    assert len(trainer.generations) == 2 and len(trainer.losses) == 2
    shaped_rows = 0
    for step, (gen, loss) in enumerate(zip(trainer.generations, trainer.losses)):
        out, gamma, base = gen["out"], gen["gamma"], gen["base"]
        b, t = out["completion_ids"].shape
        assert gamma.shape == (b, t) and base.shape == (b,)
        mask = out["completion_mask"].bool()
        assert torch.all(gamma[~mask] == 1), "padding keeps γ = 1"

        # The loss saw (B, T) advantages, rows shuffled: each is γ·A by the engine's rule.
        want = flowtracer.token_advantages(gamma, base, apply_to_negative=False)
        assert loss["advantages"].shape == (b, t)
        for row in range(b):
            same = [
                i for i in range(b)
                if torch.equal(out["prompt_ids"][i], loss["prompt_ids"][row]) and torch.equal(out["completion_ids"][i], loss["completion_ids"][row])
            ]
            assert same, f"step {step}: loss row {row} is not one of the generated rows"
            torch.testing.assert_close(loss["advantages"][row], want[same[0]], rtol=0, atol=0)

        # γ is the binary's credit for the same trace, over the completion's tokens.
        for i, result in enumerate(gen["shaping"].results):
            if result is None:
                assert torch.all(gamma[i] == 1)
                continue
            shaped_rows += result.status == "ok"
            spans = gen["shaping"].spans[i]
            path = tmp_path / "traces" / f"step_{step:06d}" / f"sample_{i:04d}.safetensors"
            e = exported(path, tmp_path / f"export_{step}_{i}", params.to_dict())
            r0, r1 = spans["response"]
            assert r1 - r0 == int(mask[i].sum())
            np.testing.assert_array_equal(gamma[i, : r1 - r0].numpy(), np.array(e["credit"][r0:r1], dtype=np.float32))
            completion = out["completion_ids"][i][: r1 - r0].tolist()
            assert e["tokens"][r0:] == tok.convert_ids_to_tokens(completion), "the trace keeps the tokenizer's own tokens"
            assert "".join(flowtracer.load_trace(path).text[r0:]) == tok.decode(completion), "and shows their text"
            a = base[i].item()
            assert torch.all(want[i, : r1 - r0] == (gamma[i, : r1 - r0] * a if a >= 0 else a))
    assert shaped_rows > 0, "no row was shaped: the test would prove nothing"
    assert any(torch.any(g["gamma"] == 2.0) for g in trainer.generations), "γ = 2 reached some token"
    logged = [h for h in trainer.state.log_history if "flow/shaped_fraction" in h]
    assert len(logged) == 2 and all(h["flow/shaped_fraction"] > 0 for h in logged), "the shaping is logged each step"


def test_two_generation_batches_in_one_step_keep_their_traces_apart(tmp_path):
    """With `steps_per_generation` below `gradient_accumulation_steps` TRL generates twice in
    one optimizer step: the second batch's traces go to a folder of their own (it had met the
    first's names, "already exists", and stopped the run)."""
    tok = hf_tokenizer()
    model = tiny("qwen2", tmp_path, len(tok), "sdpa")
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    args = trl.GRPOConfig(
        output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", save_strategy="no", per_device_train_batch_size=2,
        num_generations=2, gradient_accumulation_steps=2, steps_per_generation=1, max_completion_length=8, max_steps=1, seed=0, beta=0.0,
    )
    trainer = Recording(
        model=model, processing_class=tok, args=args, train_dataset=datasets.Dataset.from_dict({"prompt": ["Natalia sold clips.", "Weng earns 12 an hour."]}),
        reward_funcs=[lambda completions, **_: [float(len(c)) for c in completions]], answer_span=last_tokens, flow_trace_dir=tmp_path / "traces",
    )
    trainer.train()
    assert len(trainer.generations) == 2 and trainer.state.global_step == 1
    folders = sorted(p.name for p in (tmp_path / "traces").iterdir())
    assert folders == ["step_000000", "step_000000-1"], folders
    for folder, gen in zip(folders, trainer.generations):
        rows = [i for i, r in enumerate(gen["shaping"].results) if r is not None]
        assert rows, "some row was traced"
        assert sorted(p.name for p in (tmp_path / "traces" / folder).iterdir()) == [f"sample_{i:04d}.safetensors" for i in rows]
        for i in rows:
            ids = gen["out"]["completion_ids"][i][gen["out"]["completion_mask"][i].bool()].tolist()
            assert "".join(flowtracer.load_trace(tmp_path / "traces" / folder / f"sample_{i:04d}.safetensors").text).endswith(tok.decode(ids))


def test_the_trainer_refuses_what_it_cannot_honour(tmp_path):
    tok = hf_tokenizer()
    model = tiny("llama", tmp_path, len(tok), "sdpa")
    data = datasets.Dataset.from_dict({"prompt": ["a b"]})
    reward = [lambda completions, **_: [0.0] * len(completions)]
    config = dict(use_cpu=True, report_to="none", per_device_train_batch_size=2, num_generations=2)
    args = trl.GRPOConfig(output_dir=str(tmp_path / "out"), use_liger_kernel=True, **config)
    with pytest.raises(ValueError, match="use_liger_kernel is not supported"):
        FlowGRPOTrainer(model=model, processing_class=tok, args=args, train_dataset=data, reward_funcs=reward)
    earlier = tmp_path / "traces"
    (earlier / "step_000000").mkdir(parents=True)
    args = trl.GRPOConfig(output_dir=str(tmp_path / "out"), **config)
    with pytest.raises(ValueError, match="not empty; traces are never overwritten"):
        FlowGRPOTrainer(model=model, processing_class=tok, args=args, train_dataset=data, reward_funcs=reward, flow_trace_dir=earlier)

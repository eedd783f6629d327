"""`flowtracer.causal_effect`: the per-token causal check on tiny random-weight Hugging Face
models built here. The hiding is checked where it acts (the hidden key gets no attention from
any query, in every layer and head), the effects against a reference written out one hiding at
a time, eager against SDPA, and the file `dump` writes against what the binary exports."""

from __future__ import annotations

import functools
import json
import subprocess

import numpy as np
import pytest

from conftest import BINARY, ROOT, export, require
from tiny import CORPUS, tiny, tokenizer

torch = require("torch")
import flowtracer  # noqa: E402


def sequence():
    """A question, a reasoning stretch and an answer of real subword pieces."""
    tok = tokenizer()
    question = tok.encode(CORPUS[1]).ids
    whole = tok.encode(CORPUS[1] + " " + CORPUS[3])
    n = len(whole.ids)
    return tok, whole, len(question), (n - 4, n - 1)


def reference(model, ids, answer, t):
    """log p(answer) unhidden minus hidden, one forward pass each, written out plainly: the
    unhidden pass with the model's own causal mask, the hidden one with key `t` set to the
    dtype's least value for every query on top of it."""
    a0, a1 = answer
    x = torch.tensor([ids[:a1]])

    def logp(mask):
        with torch.no_grad():
            logits = model(input_ids=x, attention_mask=mask).logits[0].float()
        lp = torch.log_softmax(logits, dim=-1)
        return sum(float(lp[p - 1, ids[p]]) for p in range(a0, a1))

    low = torch.finfo(torch.float32).min
    mask = torch.triu(torch.full((a1, a1), low), 1)
    mask[:, t] = low
    return logp(None) - logp(mask[None, None])


@pytest.mark.parametrize("arch,implementation", [("llama", "eager"), ("qwen2", "sdpa")])
def test_effects_equal_hidings_written_out_one_at_a_time(arch, implementation, tmp_path):
    tok, whole, q_end, answer = sequence()
    model = tiny(arch, tmp_path, tok.get_vocab_size(), implementation)
    span = (q_end, answer[0])
    effect = flowtracer.causal_effect(model, torch.tensor(whole.ids), answer=answer, tokens=span, batch_size=5)
    assert effect.shape == (len(whole.ids),) and effect.dtype == np.float32
    outside = np.r_[0 : span[0], span[1] : len(whole.ids)]
    assert not effect[outside].any(), "0 outside the tokens probed"
    for t in (span[0], span[0] + 3, span[1] - 1):
        assert effect[t] == pytest.approx(reference(model, whole.ids, answer, t), abs=2e-5), f"token {t}"
    assert np.abs(effect[span[0] : span[1]]).max() > 1e-4, "hiding tokens changes the answer's log-probability"
    one_at_a_time = flowtracer.causal_effect(model, whole.ids, answer=answer, tokens=span, batch_size=1)
    np.testing.assert_allclose(effect, one_at_a_time, rtol=0, atol=2e-5)


def test_a_hidden_token_gets_no_attention_and_eager_agrees_with_sdpa(tmp_path):
    tok, whole, q_end, answer = sequence()
    eager = tiny("qwen2", tmp_path, tok.get_vocab_size(), "eager")
    sdpa = tiny("qwen2", tmp_path, tok.get_vocab_size(), "sdpa")
    span = (q_end, answer[0])
    np.testing.assert_allclose(
        flowtracer.causal_effect(eager, whole.ids, answer=answer, tokens=span),
        flowtracer.causal_effect(sdpa, whole.ids, answer=answer, tokens=span),
        rtol=0,
        atol=5e-5,
    )
    # The mask the function builds, as eager attention receives it: no query, in no layer or
    # head, attends to the hidden key, and every row still sums to one.
    recorded = []
    forward = eager.forward

    def spy(*args, **kwargs):
        recorded.append(kwargs["attention_mask"])
        return forward(*args, **kwargs)

    eager.forward = spy
    t = q_end + 2
    flowtracer.causal_effect(eager, whole.ids, answer=answer, tokens=(t, t + 1), reuse_prefix=False)
    eager.forward = forward
    hiding = recorded[-1]
    with torch.no_grad():
        out = eager(input_ids=torch.tensor([whole.ids[: answer[1]]]), attention_mask=hiding, output_attentions=True)
    for layer in out.attentions:
        assert float(layer[0, :, :, t].abs().max()) == 0.0
        torch.testing.assert_close(layer[0].sum(-1), torch.ones(layer.shape[1:3]))
    with torch.no_grad():
        plain = eager(input_ids=torch.tensor([whole.ids[: answer[1]]]), output_attentions=True).attentions
    assert float(plain[-1][0, :, t + 1 :, t].min()) > 0.0, "unhidden, later queries do attend to it"


def other(arch, vocab, implementation):
    """Two more architectures the reuse must hold on: GPT-2 (learned absolute positions, fused
    q/k/v) and Gemma (one key/value head, scaled embeddings)."""
    transformers = require("transformers")
    torch.manual_seed(0)
    if arch == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=vocab, n_layer=4, n_head=4, n_embd=64, n_positions=512, bos_token_id=0, eos_token_id=0)
        return transformers.GPT2LMHeadModel._from_config(cfg, attn_implementation=implementation).eval()
    cfg = transformers.GemmaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=512, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return transformers.GemmaForCausalLM._from_config(cfg, attn_implementation=implementation).eval()


@pytest.mark.parametrize("arch,implementation", [("llama", "sdpa"), ("qwen2", "eager"), ("qwen3", "sdpa"), ("gpt2", "sdpa"), ("gemma", "eager")])
def test_batches_that_start_from_the_unhidden_prefix_equal_whole_passes(arch, implementation, tmp_path):
    tok, whole, q_end, answer = sequence()
    model = other(arch, tok.get_vocab_size(), implementation) if arch in ("gpt2", "gemma") else tiny(arch, tmp_path, tok.get_vocab_size(), implementation)
    assert model.config._attn_implementation == implementation
    span = (q_end, answer[0])
    whole_passes = flowtracer.causal_effect(model, whole.ids, answer=answer, tokens=span, batch_size=4, reuse_prefix=False)
    # What each batch is given: the unhidden keys and values before its first hidden token, and
    # only the positions from there on to run.
    given = []
    forward = model.forward

    @functools.wraps(forward)
    def spy(*args, **kwargs):
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        given.append((tuple(kwargs["input_ids"].shape), cache.get_seq_length() if cache is not None else 0))
        return forward(*args, **kwargs)

    model.forward = spy
    reused = flowtracer.causal_effect(model, whole.ids, answer=answer, tokens=span, batch_size=4)
    model.forward = forward
    np.testing.assert_allclose(reused, whole_passes, rtol=0, atol=2e-5)
    assert np.abs(reused[span[0] : span[1]]).max() > 1e-4
    starts = range(span[0], span[1], 4)
    assert given == [((1, answer[1]), 0)] + [((min(4, span[1] - s), answer[1] - s), s) for s in starts], "reused by default"
    insisted = flowtracer.causal_effect(model, whole.ids, answer=answer, tokens=span, batch_size=4, reuse_prefix=True)
    np.testing.assert_allclose(insisted, reused, rtol=0, atol=1e-6)


def test_a_sliding_window_runs_whole_passes_or_is_refused_where_it_bites(tmp_path):
    tok, whole, q_end, answer = sequence()
    transformers = require("transformers")
    span = (q_end, answer[0])
    cfg = dict(vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    torch.manual_seed(0)
    wide = transformers.MistralForCausalLM(transformers.MistralConfig(sliding_window=256, **cfg)).eval()
    effect = flowtracer.causal_effect(wide, whole.ids, answer=answer, tokens=span)
    for t in (span[0], span[1] - 1):
        assert effect[t] == pytest.approx(reference(wide, whole.ids, answer, t), abs=2e-5), f"token {t}"
    with pytest.raises(ValueError, match="DynamicSlidingWindowLayer"):
        flowtracer.causal_effect(wide, whole.ids, answer=answer, tokens=span, reuse_prefix=True)
    narrow = transformers.MistralForCausalLM(transformers.MistralConfig(sliding_window=8, **cfg)).eval()
    with pytest.raises(ValueError, match=f"sliding_attention layers see 8 tokens .*is {answer[1]}"):
        flowtracer.causal_effect(narrow, whole.ids, answer=answer, tokens=span)


def greedy_case(model, whole, q_end):
    """The corpus sequence cut where the unhidden model is least sure of its next token, and
    three tokens of its greedy answer from there: an answer some hidings do change."""
    with torch.no_grad():
        top = model(input_ids=torch.tensor([whole.ids])).logits[0].topk(2, -1).values
    margin = top[:, 0] - top[:, 1]
    a0 = q_end + 6 + int(margin[q_end + 5 : -1].argmin())
    with torch.no_grad():
        ids = model.generate(torch.tensor([whole.ids[:a0]]), max_new_tokens=3, do_sample=False, pad_token_id=0)[0].tolist()
    return ids, (a0, a0 + 3)


def regenerated(model, ids, answer, t):
    """The answer greedy decoding writes with token `t` hidden, one token at a time, each step a
    whole forward pass with `t`'s key masked for every query."""
    return regenerated_hiding(model, ids, answer, [t])


def regenerated_hiding(model, ids, answer, t):
    """`regenerated` with the positions `t` hidden at once."""
    t = list(t)
    a0, a1 = answer
    out = list(ids[:a0])
    low = torch.finfo(torch.float32).min
    while len(out) < a1:
        mask = torch.triu(torch.full((len(out), len(out)), low), 1)
        mask[:, t] = low
        with torch.no_grad():
            out.append(int(model(input_ids=torch.tensor([out]), attention_mask=mask[None, None]).logits[0, -1].argmax()))
    return out[a0:]


def test_whether_a_hiding_changes_the_greedy_answer_equals_regenerating_it(tmp_path):
    tok, whole, q_end, _ = sequence()
    model = tiny("qwen2", tmp_path, tok.get_vocab_size(), "sdpa")
    ids, answer = greedy_case(model, whole, q_end)
    span = (q_end, answer[0])
    effect, changed = flowtracer.causal_effect(model, ids, answer=answer, tokens=span, return_changed=True)
    assert changed.dtype == np.bool_ and changed.shape == (len(ids),) and not changed[: span[0]].any() and not changed[span[1] :].any()
    expected = [regenerated(model, ids, answer, t) != ids[answer[0] : answer[1]] for t in range(*span)]
    assert changed[span[0] : span[1]].tolist() == expected
    assert 0 < sum(expected) < len(expected), "some hidings change the answer and some do not"
    np.testing.assert_array_equal(effect, flowtracer.causal_effect(model, ids, answer=answer, tokens=span))
    # Sets too: the tokens whose hiding changed the answer, and a set of all of them, change it.
    flips = np.flatnonzero(changed)
    _, set_changed = flowtracer.hide(model, ids, answer=answer, sets=[flips[:1], flips, [span[0]] if not changed[span[0]] else []], return_changed=True)
    assert set_changed[0] and set_changed[1] == (regenerated_hiding(model, ids, answer, flips) != ids[answer[0] : answer[1]]) and not set_changed[2]
    # An answer the model would not write greedily has nothing to change: refused, naming where.
    with pytest.raises(ValueError, match=r"greedily, and at position \d+ it would write token \d+ where the answer has"):
        flowtracer.causal_effect(model, whole.ids, answer=(len(whole.ids) - 4, len(whole.ids) - 1), tokens=span, return_changed=True)
    # Kept in the file, the binary's table gains its ROC-AUC columns.
    with flowtracer.capture(model) as cap, torch.no_grad():
        model(input_ids=torch.tensor([ids]))
    path = tmp_path / "changed.safetensors"
    pieces = [tok.id_to_token(i) for i in ids]
    flowtracer.dump(path, cap.attention(0), pieces, question=(0, q_end), answer=answer, token_ids=ids, source=cap, causal_effect=effect, answer_changed=torch.from_numpy(changed))
    np.testing.assert_array_equal(flowtracer.load_trace(path).answer_changed, changed)
    rows = {r["score"]: r for r in flowtracer.fidelity([path])["rows"]}
    assert rows["flow throughput"]["auc"] is not None and rows["flow throughput"]["auc"][4] == 1
    bad = tmp_path / "past.safetensors"
    flowtracer.dump(bad, cap.attention(0), pieces, question=(0, q_end), answer=answer, meta={"causal_answer_changed": [len(ids)]})
    with pytest.raises(ValueError, match=rf"past.safetensors: causal_answer_changed: token {len(ids)} is past the trace's {len(ids)} tokens"):
        flowtracer.load_trace(bad)
    with pytest.raises(ValueError, match=r"answer_changed: one bool per token"):
        flowtracer.dump(tmp_path / "short.safetensors", cap.attention(0), pieces, question=(0, q_end), answer=answer, answer_changed=changed[:-1])


def test_hiding_sets_at_once_equals_masking_them_by_hand(tmp_path):
    tok, whole, q_end, answer = sequence()
    model = tiny("llama", tmp_path, tok.get_vocab_size(), "sdpa")
    a0, a1 = answer
    span = np.arange(q_end, a0)
    sets = [span[::5], span[-10:], [q_end + 3], [], span, [1, 2, a0 - 1]]
    lost = flowtracer.hide(model, whole.ids, answer=answer, sets=sets, batch_size=2)
    assert lost.shape == (len(sets),) and lost.dtype == np.float32

    def by_hand(hidden):
        x = torch.tensor([whole.ids[:a1]])
        low = torch.finfo(torch.float32).min
        mask = torch.triu(torch.full((a1, a1), low), 1)
        mask[:, list(hidden)] = low

        def logp(m):
            with torch.no_grad():
                lp = torch.log_softmax(model(input_ids=x, attention_mask=m).logits[0].float(), dim=-1)
            return sum(float(lp[p - 1, whole.ids[p]]) for p in range(a0, a1))

        return logp(None) - logp(mask[None, None])

    for i, hidden in enumerate(sets):
        assert lost[i] == pytest.approx(by_hand(hidden), abs=2e-5), f"sets[{i}]"
    assert lost[3] == 0.0, "an empty set hides nothing"
    assert abs(lost[4]) > abs(lost[2]), "hiding the whole reasoning costs more than one token of it"
    # One token a set is causal_effect, whatever the order the sets come in.
    singles = list(range(q_end, a0))[::-1]
    np.testing.assert_allclose(
        flowtracer.hide(model, whole.ids, answer=answer, sets=[[t] for t in singles])[::-1],
        flowtracer.causal_effect(model, whole.ids, answer=answer, tokens=(q_end, a0))[q_end:a0],
        rtol=0,
        atol=1e-6,
    )
    with pytest.raises(ValueError, match=rf"hide: sets\[1\] holds position {a0}; every hidden position lies after 0 and before the answer"):
        flowtracer.hide(model, whole.ids, answer=answer, sets=[[q_end], [q_end, a0]])
    with pytest.raises(ValueError, match=r"hide: sets\[0\] holds position 0"):
        flowtracer.hide(model, whole.ids, answer=answer, sets=[[0, 5]])


def test_dump_writes_it_and_the_export_carries_it(tmp_path):
    tok, whole, q_end, answer = sequence()
    model = tiny("llama", tmp_path, tok.get_vocab_size(), "sdpa")
    with flowtracer.capture(model) as cap, torch.no_grad():
        model(input_ids=torch.tensor([whole.ids]))
    effect = flowtracer.causal_effect(model, whole.ids, answer=answer, tokens=(q_end, answer[0]))
    (tmp_path / "probed").mkdir()
    path = tmp_path / "probed" / "probed.safetensors"
    flowtracer.dump(path, cap.attention(0), whole.tokens, question=(0, q_end), answer=answer, token_ids=whole.ids, source=cap, causal_effect=torch.from_numpy(effect))
    np.testing.assert_array_equal(flowtracer.load_trace(path).causal_effect, effect)
    record = json.loads((export([path], tmp_path / "out") / "probed.json").read_text())
    assert np.array_equal(np.array(record["causal_effect"], dtype=np.float32), effect)
    # The binary's table of how well each score ranks the measured effects reads the file.
    table = subprocess.run([str(BINARY), "fidelity", str(path)], capture_output=True, text=True, check=True).stdout
    assert table.startswith(f"1 traces with causal_effect, {answer[0] - q_end} tokens probed"), table
    assert "| flow throughput | " in table and "| attention received | " in table
    # The same from Python: the table the binary prints, and its rows as numbers.
    ticks = []
    f = flowtracer.fidelity([tmp_path / "probed"], progress=lambda done, total: ticks.append((done, total)))
    assert f["table"].rstrip("\n") == table.rstrip("\n") and f["traces"] == 1 and f["left_out"] == 0 and ticks[-1] == (1, 1)
    rows = {r["score"]: r for r in f["rows"]}
    mean, std, lo, hi, traces = rows["flow throughput"]["spearman"]
    assert f"| flow throughput | {mean:.3f} ± {std:.3f} | [{lo:.3f}, {hi:.3f}] | {traces} |" in table
    assert rows["flow throughput"]["auc"] is None, "without answer_changed the table has no ROC-AUC"
    with pytest.raises(ValueError, match="causal_effect"):
        flowtracer.fidelity([ROOT / "sample_traces" / "addition.safetensors"])
    # A broken file beside it: raised, naming the file; or, asked for, left out and listed, as
    # the binary names it and prints the table of the rest.
    broken = tmp_path / "probed" / "broken.safetensors"
    broken.write_bytes(b"not a trace")
    with pytest.raises(flowtracer.TraceError, match="broken.safetensors"):
        flowtracer.fidelity([tmp_path / "probed"])
    g = flowtracer.fidelity([tmp_path / "probed"], errors="return")
    assert g["table"] == f["table"] and g["traces"] == 1 and len(g["failed"]) == 1
    assert isinstance(g["failed"][0], flowtracer.TraceError) and "broken.safetensors" in str(g["failed"][0])
    assert f["failed"] == []
    with pytest.raises(flowtracer.TraceError, match="causal_effect"):
        flowtracer.dump(tmp_path / "short.safetensors", cap.attention(0), whole.tokens, question=(0, q_end), answer=answer, causal_effect=effect[:-1])


def test_it_refuses_what_it_cannot_measure(tmp_path):
    tok, whole, q_end, answer = sequence()
    model = tiny("llama", tmp_path, tok.get_vocab_size(), "sdpa")
    with pytest.raises(ValueError, match=r"one unpadded sequence, \[n\] or \[1,n\], not shape \[2, "):
        flowtracer.causal_effect(model, torch.tensor([whole.ids, whole.ids]), answer=answer, tokens=(q_end, answer[0]))
    with pytest.raises(ValueError, match="position 0"):
        flowtracer.causal_effect(model, whole.ids, answer=answer, tokens=(0, 4))
    with pytest.raises(ValueError, match="before the answer"):
        flowtracer.causal_effect(model, whole.ids, answer=answer, tokens=(q_end, answer[1]))
    with pytest.raises(ValueError, match="answer"):
        flowtracer.causal_effect(model, whole.ids, answer=(answer[0], len(whole.ids) + 2), tokens=(q_end, answer[0]))
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="sdpa"):
        flowtracer.causal_effect(model, whole.ids, answer=answer, tokens=(q_end, answer[0]))

"""`flowtracer.capture` on tiny random-weight Hugging Face models built here (no download): what
it records equals the mean of eager `output_attentions` over the chosen layers, for every sample
of a left-padded batch, and it leaves the model's own output alone."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import flowtracer
from conftest import require
from tiny import CORPUS, ARCHS, left_padded, tiny, tokenizer, tokenizers

torch = require("torch")

def eager_mean(model, input_ids, mask, layers):
    model.set_attn_implementation("eager")
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=mask, output_attentions=True)
    return torch.stack([out.attentions[l] for l in range(*layers)]).mean(dim=(0, 2)), out.logits


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("implementation", ["sdpa", "eager", "flex_attention"])
def test_capture_equals_eager_attention_on_a_left_padded_batch(arch, implementation, tmp_path):
    tok = tokenizer()
    input_ids, mask = left_padded(tok, CORPUS[:3])
    model = tiny(arch, tmp_path, tok.get_vocab_size(), implementation)
    with torch.no_grad():
        plain = model(input_ids=input_ids, attention_mask=mask).logits
    with flowtracer.capture(model, chunk=7) as cap:  # chunks that do not divide N
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=mask).logits
    assert model.config._attn_implementation == implementation, "the model's implementation is restored"
    torch.testing.assert_close(logits, plain, rtol=0, atol=1e-6)  # the model's own output is untouched
    assert cap.layers == (2, 4) and cap.recorded_layers == [2, 3]  # the engine's middle third of 6

    reference, _ = eager_mean(model, input_ids, mask, cap.layers)
    for i in range(len(input_ids)):
        keep = torch.nonzero(mask[i]).flatten()
        want = reference[i][keep][:, keep].numpy()
        got = cap.attention(i)
        assert got.shape == (len(keep), len(keep)) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=f"{arch}/{implementation} sample {i}")
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("chunk", [5, None])
def test_capture_equals_eager_attention_without_a_mask(chunk, tmp_path, monkeypatch):
    """Unpadded, the model passes no mask and only the keys after each query are hidden: the
    capture hides them on each chunk's diagonal block alone, never through the mask path."""
    tok = tokenizer()
    ids = torch.tensor([tok.encode(CORPUS[0] + " " + CORPUS[3]).ids])
    model = tiny("qwen2", tmp_path, tok.get_vocab_size(), "sdpa")
    masked = []
    monkeypatch.setattr(importlib.import_module("flowtracer._capture"), "_masked", lambda *a: masked.append(1))
    with flowtracer.capture(model, chunk=chunk) as cap, torch.no_grad():
        model(input_ids=ids)
    assert not masked, "no mask reached the capture"
    reference, _ = eager_mean(model, ids, torch.ones_like(ids), cap.layers)
    np.testing.assert_allclose(cap.attention(0), reference[0].numpy(), rtol=0, atol=1e-5)


def test_two_models_captured_at_once_each_record_their_own_and_are_let_go(tmp_path):
    """A policy and its reference model under capture together: each capture records its own
    model's attention, and once left and dropped nothing in transformers keeps it alive."""
    import gc
    import weakref

    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    tok = tokenizer()
    ids = torch.tensor([tok.encode(CORPUS[2]).ids])
    policy = tiny("llama", tmp_path, tok.get_vocab_size(), "sdpa")
    reference = tiny("qwen2", tmp_path, tok.get_vocab_size(), "eager")
    with flowtracer.capture(policy) as a, flowtracer.capture(reference) as b, torch.no_grad():
        policy(input_ids=ids)
        reference(input_ids=ids)
    for cap, model, name in [(a, policy, "sdpa"), (b, reference, "eager")]:
        assert model.config._attn_implementation == name
        want, _ = eager_mean(model, ids, torch.ones_like(ids), cap.layers)
        np.testing.assert_allclose(cap.attention(0), want[0].numpy(), rtol=0, atol=1e-5)
    assert not [k for k in ALL_ATTENTION_FUNCTIONS if k.startswith("flowtracer")], "the names are taken out on leaving"
    gone = weakref.ref(a)
    del a, cap
    gc.collect()
    assert gone() is None, "a capture left and dropped is freed with its accumulator"


def test_a_capture_analyzes_and_dumps_with_its_layers(tmp_path):
    tok = tokenizer()
    text = CORPUS[1] + " " + CORPUS[3]
    enc = tok.encode(text)
    ids = torch.tensor([enc.ids])
    model = tiny("qwen2", tmp_path, tok.get_vocab_size(), "sdpa")
    with flowtracer.capture(model) as cap, torch.no_grad():
        model(input_ids=ids)
    a = cap.attention(0)
    assert np.shares_memory(a, cap.tensor().numpy()), "an unpadded sample on the CPU is the capture's own memory"
    np.testing.assert_array_equal(cap.attention(0), a)  # asking twice does not average twice
    # The tensor an RL step hands over: where the model is, and the same memory.
    s = cap.sample(0)
    assert isinstance(s, torch.Tensor) and s.device == ids.device and s.data_ptr() == a.ctypes.data
    assert flowtracer.analyze(s, question=(0, 3), answer=(s.shape[0] - 3, s.shape[0])).zero_copy is True
    n = a.shape[0]
    q_end = len(tok.encode(CORPUS[1]).ids)
    r = flowtracer.analyze(a, tokens=enc.tokens, question=(0, q_end), answer=(n - 3, n))
    assert r.status == "ok" and r.zero_copy is True
    path = tmp_path / "captured.safetensors"
    flowtracer.dump(path, a, enc.tokens, question=(0, q_end), answer=(n - 3, n), token_ids=enc.ids, source=cap)
    t = flowtracer.load_trace(path)
    assert t.meta["layers"] == [2, 3] and t.meta["num_layers"] == 6 and t.meta["model"] == "qwen2"
    from_file = t.analyze()
    assert from_file.layers == [2, 3]
    np.testing.assert_array_equal(from_file.credit, r.credit)
    with pytest.raises(ValueError, match="already exists"):
        flowtracer.dump(path, a, enc.tokens, question=(0, q_end), answer=(n - 3, n))
    # The capture itself in the matrix's place says which to pass instead.
    with pytest.raises(TypeError, match=r"dump: attention is a capture.*cap\.attention\(i\)"):
        flowtracer.dump(tmp_path / "whole.safetensors", cap, enc.tokens, question=(0, q_end), answer=(n - 3, n), source=cap)
    assert not (tmp_path / "whole.safetensors").exists()
    # A bfloat16 tensor is stored widened exactly: the file analyses as the tensor does.
    half = torch.from_numpy(a).to(torch.bfloat16)
    flowtracer.dump(tmp_path / "bf16.safetensors", half, enc.tokens, question=(0, q_end), answer=(n - 3, n))
    direct = flowtracer.analyze(half, question=(0, q_end), answer=(n - 3, n))
    stored = flowtracer.analyze(tmp_path / "bf16.safetensors")
    assert direct.status == "ok"
    for field in ("reach", "flow", "credit"):
        np.testing.assert_array_equal(getattr(stored, field), getattr(direct, field))


def test_capture_refuses_what_it_cannot_honour(tmp_path):
    model = tiny("llama", tmp_path, 64, "sdpa")
    with pytest.raises(ValueError, match="layers"):
        flowtracer.capture(model, layers=(4, 9))
    with pytest.raises(ValueError, match="reduce"):
        flowtracer.capture(model, reduce="median")
    # layers is a (start, end) pair: one index, or a reversed pair, had been an IndexError or an
    # empty range
    with pytest.raises(ValueError, match=r"capture: layers: a span is a \(start, end\) pair, not \[1\]"):
        flowtracer.capture(model, layers=[1])
    with pytest.raises(ValueError, match="capture: layers: span 2:1 ends before it starts"):
        flowtracer.capture(model, layers=(2, 1))
    with pytest.raises(TypeError, match="expected a transformers model"):
        flowtracer.capture(object())
    with flowtracer.capture(model) as cap:
        with pytest.raises(RuntimeError, match="nothing recorded"):
            cap.tensor()
        model(input_ids=torch.tensor([[1, 2, 3, 4]]))
    assert cap.sample(-1).shape == (4, 4)
    with pytest.raises(IndexError, match="capture: sample 1 of a batch of 1"):
        cap.attention(1)


def test_torch_tensors_go_in_without_a_copy():
    n = 20
    a = torch.zeros(n, n)
    a[0, 0] = 1
    for k in range(1, n):
        a[k, k - 1] = 0.5
        a[k, 0] += 0.5
    f32 = flowtracer.analyze(a, question=(0, 3), answer=(n - 2, n))
    assert f32.zero_copy is True
    bf16 = flowtracer.analyze(a.to(torch.bfloat16), question=(0, 3), answer=(n - 2, n))
    assert bf16.zero_copy is True  # bfloat16 bit patterns, decoded by the engine
    np.testing.assert_array_equal(bf16.credit, f32.credit)  # 0.5 and 1 are exact in bf16
    adv = flowtracer.token_advantages(torch.tensor([[1.0, 1.5]]), torch.tensor([-2.0]), apply_to_negative=False)
    assert isinstance(adv, torch.Tensor) and adv.tolist() == [[-2.0, -2.0]]
    # Tensors that hold no values to read, or hold them sparse, are refused by name, not by torch.
    for tensor, says, problem in [(a.to_sparse(), r"rollout_3: a torch.sparse_coo tensor: .*to_dense", "shape"), (torch.empty(n, n, device="meta"), "rollout_3: a tensor on the meta device", "params")]:
        with pytest.raises(flowtracer.TraceError, match=says) as e:
            flowtracer.analyze(tensor, question=(0, 3), answer=(n - 2, n), name="rollout_3")
        assert e.value.problem == problem


@pytest.mark.parametrize("kind", ["bytelevel", "sentencepiece", "wordpiece"])
def test_subword_tokens_read_back_as_the_text_they_stand_for(kind, tmp_path):
    """Tokens exactly as trained tokenizers produce them (multi-byte characters split across
    byte-level tokens, SentencePiece byte fallback, WordPiece continuations) decode to the text."""
    text = "Le café coûte 3 €.\nNatalia sold 48 clips: 中文 72!"
    corpus = [text, "Natalia sold clips to 48 of her friends.", "The answer is 72."] * 4
    t = tokenizers
    if kind == "bytelevel":
        tok = t.Tokenizer(t.models.BPE())
        tok.pre_tokenizer = t.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = t.decoders.ByteLevel()
        tok.train_from_iterator(corpus, t.trainers.BpeTrainer(vocab_size=280, initial_alphabet=t.pre_tokenizers.ByteLevel.alphabet()))
    elif kind == "sentencepiece":  # trained without 中, 文, €: they go out as byte tokens
        tok = t.Tokenizer(t.models.BPE(byte_fallback=True, unk_token="<unk>"))
        tok.pre_tokenizer = t.pre_tokenizers.Metaspace()
        tok.decoder = t.decoders.Sequence([t.decoders.ByteFallback(), t.decoders.Metaspace()])
        bytes_ = [f"<0x{b:02X}>" for b in range(256)]
        plain = [c.replace("中文", "").replace("€", "") for c in corpus]
        tok.train_from_iterator(plain, t.trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", *bytes_]))
    else:
        tok = t.Tokenizer(t.models.WordPiece(unk_token="[UNK]"))
        tok.pre_tokenizer = t.pre_tokenizers.BertPreTokenizer()
        tok.decoder = t.decoders.WordPiece()
        tok.train_from_iterator(corpus, t.trainers.WordPieceTrainer(vocab_size=60, special_tokens=["[UNK]"]))
    enc = tok.encode(text)
    pieces = enc.tokens
    if kind == "sentencepiece":
        assert any(p.startswith("<0x") for p in pieces), "the test needs byte-fallback tokens"
    if kind == "bytelevel":
        assert any(len(tok.decode([i])) and "\ufffd" in tok.decode([i]) for i in enc.ids), "the test needs a character split across tokens"
    n = len(pieces)
    a = np.tril(np.ones((n, n), dtype=np.float32))
    a /= a.sum(axis=1, keepdims=True)
    path = tmp_path / f"{kind}.safetensors"
    flowtracer.dump(path, a, pieces, question=(0, 3), answer=(n - 2, n), token_ids=enc.ids)
    trace = flowtracer.load_trace(path)
    assert trace.tokens == pieces, "the raw tokens stay as they were"
    assert trace.tokenizer == kind
    assert len(trace.text) == n
    got, want = "".join(trace.text), tok.decode(enc.ids, skip_special_tokens=False)
    if kind == "bytelevel":
        assert got == want
    elif kind == "sentencepiece":  # (its decoder drops the leading space Metaspace adds)
        assert got.lstrip() == want
    else:  # WordPiece drops line breaks, and its decoder spaces punctuation its own way
        assert got.replace(" ", "") == want.replace(" ", "")
        assert all(not x.startswith(" ") for p, x in zip(pieces, trace.text) if p.startswith("##")), "## pieces join the one before"
    with pytest.raises(ValueError, match="tokenizer"):
        flowtracer.dump(tmp_path / "bad.safetensors", a, pieces, question=(0, 3), answer=(n - 2, n), meta={"tokenizer": "nonsense"})

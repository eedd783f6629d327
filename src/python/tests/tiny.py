"""Tiny random-weight Hugging Face models and a tokenizer trained here: real architectures and
real subword pieces for the tests, with nothing downloaded."""

from __future__ import annotations

from conftest import require

torch = require("torch")
transformers = require("transformers")
tokenizers = require("tokenizers")

CORPUS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "How many clips did Natalia sell altogether in April and May? She sold 48 / 2 = 24 clips in May.",
    "Weng earns 12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting.",
    "The answer is \\boxed{72}. Let us check: 48 + 24 = 72, so the total is 72 clips.",
]


def tokenizer():
    """A byte-level BPE trained here on a few sentences: real subword pieces, no download."""
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    tok.train_from_iterator(CORPUS * 4, tokenizers.trainers.BpeTrainer(vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[EOS]"], initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()))
    return tok


def left_padded(tok, texts):
    ids = [tok.encode(t).ids for t in texts]
    n = max(map(len, ids))
    pad = tok.token_to_id("[PAD]")
    input_ids = torch.tensor([[pad] * (n - len(i)) + i for i in ids])
    mask = torch.tensor([[0] * (n - len(i)) + [1] * len(i) for i in ids])
    return input_ids, mask


ARCHS = {
    # name: (config class, model class, extra config): MHA, GQA, GQA with q/k norms.
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(num_key_value_heads=4)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(num_key_value_heads=2)),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(num_key_value_heads=2, head_dim=16)),
}


def tiny(arch: str, tmp_path, vocab: int, implementation: str):
    config_cls, model_cls, extra = ARCHS[arch]
    cfg = getattr(transformers, config_cls)(
        vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=6, num_attention_heads=4, max_position_embeddings=512, **extra
    )
    torch.manual_seed(0)
    getattr(transformers, model_cls)(cfg).save_pretrained(tmp_path / arch)
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / arch, attn_implementation=implementation)
    return model.eval()



def hf_tokenizer():
    """`tokenizer()` as the `PreTrainedTokenizerFast` trainers take (pad, eos and a chat-free
    plain-text interface)."""
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer(), pad_token="[PAD]", eos_token="[EOS]", unk_token="[UNK]")

"""Attention of a Hugging Face model, recorded during an ordinary forward pass.

`output_attentions=True` forces eager attention and keeps `[L,H,N,N]` for every layer (about
105 GB at N = 8192 for a 28-layer, 28-head model). `capture` instead wraps the attention
implementation the model already uses (eager, SDPA, flash, ...): that implementation still
computes the model's output, and for the layers the engine would aggregate the wrapper
recomputes the probabilities softmax(q·kᵀ·scale + mask) from the exact q and k it receives, in
chunks of query rows, GQA by broadcasting, and adds them into one float32 `[N,N]` per sample.
The extra memory is that accumulator plus one chunk of scores (softmax runs in place on it), and
a chunk holds as many query rows as fit in `CHUNK_BYTES` (32 MiB) on the CPU, where a chunk that
stays small stays below the forward pass's own peak, or `DEVICE_CHUNK_BYTES` (256 MiB) on a GPU,
where each step of a chunk is a kernel launch whose fixed cost a small chunk cannot hide (at
N = 8192 with 28 heads, 36 rows a chunk made capture 12× the forward pass on an H200); neither
grows with N.

The padding mask is kept: transformers hands a custom implementation no mask unless a mask
function is registered under its name, so the wrapper registers the one the model used. Each
capture registers under a name of its own and removes it on leaving: two models captured at once
(a policy and its reference) each record their own, and the registry keeps no capture (nor its
accumulator, 256 MiB at 8k) alive once the caller lets it go.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from os import PathLike, fspath
from typing import Any, Sequence

import numpy as np

from . import _native
from ._arrays import host_float32
from ._spans import span
from .params import Params, params_json

_NAME = "flowtracer_capture"
_SERIAL = itertools.count()
CHUNK_BYTES = 32 << 20
"""The default size of one chunk of float32 scores on the CPU, all heads of a batch's rows together."""
DEVICE_CHUNK_BYTES = 256 << 20
"""The same on a GPU, where every step of a chunk is a kernel launch."""


def _text_config(model: Any) -> Any:
    cfg = model.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


class capture:
    """Records head- and layer-averaged attention while the model runs.

        with flowtracer.capture(model) as cap:
            model(input_ids=ids, attention_mask=mask)
        a = cap.attention(0)          # [n, n] float32 NumPy, the first sample's valid tokens

    `layers` is `(start, end)` of original layer indices; by default the engine's own rule for
    this depth (the middle third on deep models), or `params.aggregate.layers`. `reduce` is
    `"mean"` (the engine's default) or `"max"`. `chunk` query rows are scored at a time (by
    default as many as keep one chunk's scores within `CHUNK_BYTES`). Each
    forward pass of the model replaces what the previous one recorded; a pass whose queries do
    not cover the keys (a decoding step with a KV cache) is not recorded.
    """

    def __init__(self, model: Any, layers: tuple[int, int] | None = None, reduce: str = "mean", chunk: int | None = None, params: Params | None = None):
        if reduce not in ("mean", "max"):
            raise ValueError(f"capture: reduce must be 'mean' or 'max', not {reduce!r}")
        if chunk is not None and chunk < 1:
            raise ValueError(f"capture: chunk must be at least 1, not {chunk}")
        if not hasattr(model, "config"):
            raise TypeError(f"capture: expected a transformers model (one with a .config), not {type(model).__name__}")
        self.model = model
        cfg = _text_config(model)
        self.num_layers: int = int(cfg.num_hidden_layers)
        if layers is None:
            layers = _native.default_layers(self.num_layers, params_json(params))
        lo, hi = span("capture: layers", layers)
        if not 0 <= lo < hi <= self.num_layers:
            raise ValueError(f"capture: layers [{lo}, {hi}) are not inside the model's {self.num_layers} layers")
        self.layers = (lo, hi)
        self.reduce = reduce
        self.chunk = None if chunk is None else int(chunk)
        self._acc: Any = None
        self._dense: Any = None
        self._finished = False
        self._seen: set[int] = set()
        self._heads = 0
        self._mask2d = None
        self.skipped = 0
        """Attention calls not recorded (decoding steps with a cache)."""
        self._hooks: list[Any] = []

    # -- installing and removing the wrapper ------------------------------------------------

    def __enter__(self) -> "capture":
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        cfg = _text_config(self.model)
        self._previous = cfg._attn_implementation
        prev = self._previous
        if prev.startswith(_NAME):
            raise RuntimeError("capture: this model is already being captured")
        base = None if prev == "eager" else ALL_ATTENTION_FUNCTIONS.get(prev)
        if prev != "eager" and base is None:
            raise RuntimeError(f"capture: the model's attention implementation {prev!r} is not a registered one")
        me = self

        def wrapped(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any) -> Any:
            impl = base if base is not None else sys.modules[type(module).__module__].eager_attention_forward
            out = impl(module, query, key, value, attention_mask, **kwargs)
            me._record(module, query, key, attention_mask, kwargs)
            return out

        self._name = f"{_NAME}_{next(_SERIAL)}"
        AttentionInterface.register(self._name, wrapped)
        mask_fn = ALL_MASK_ATTENTION_FUNCTIONS.get(prev) or ALL_MASK_ATTENTION_FUNCTIONS.get("sdpa")
        AttentionMaskInterface.register(self._name, mask_fn)
        try:
            self.model.set_attn_implementation(self._name)
        except BaseException:
            self._unregister()
            raise
        self._hooks.append(self.model.register_forward_pre_hook(self._start_pass, with_kwargs=True))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        try:
            self.model.set_attn_implementation(self._previous)
        finally:
            self._unregister()

    def _unregister(self) -> None:
        """Takes this capture's name out of transformers' registries, whose entries would
        otherwise keep it (through the wrapper) alive for the life of the process.
        `register` writes the class-wide mapping; transformers has no public way to take an entry
        out of it."""
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface

        for interface in (AttentionInterface, AttentionMaskInterface):
            getattr(interface, "_global_mapping", {}).pop(self._name, None)

    def _start_pass(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        self._acc = None
        self._dense = None
        self._finished = False
        self._seen = set()
        self._heads = 0
        self.skipped = 0
        self._mask2d = kwargs.get("attention_mask")

    # -- recording -------------------------------------------------------------------------

    def _record(self, module: Any, query: Any, key: Any, mask: Any, kwargs: dict[str, Any]) -> None:
        import torch

        layer = getattr(module, "layer_idx", None)
        if layer is None or not self.layers[0] <= layer < self.layers[1]:
            return
        b, h, n, d = query.shape
        hkv, kv = key.shape[1], key.shape[2]
        if n != kv:
            self.skipped += 1
            return
        if layer in self._seen:  # a gradient-checkpointing recompute of a layer already recorded
            return
        self._seen.add(layer)
        with torch.no_grad():
            if mask is not None and not torch.is_tensor(mask):
                # flex attention's BlockMask, the same object for every layer of a pass: made
                # dense once a pass.
                if self._dense is None or self._dense[0] is not mask:
                    self._dense = (mask, _dense_mask(mask, b, n, query.device))
                mask = self._dense[1]
            if self._acc is None:
                fill = 0.0 if self.reduce == "mean" else -math.inf
                self._acc = torch.full((b, n, n), fill, dtype=torch.float32, device=query.device)
            self._heads += h
            g = h // hkv
            q = query.detach().view(b, hkv, g, n, d)
            # The keys in float32 once a layer; each chunk's queries are multiplied by all of
            # them as one product per KV head (its G query heads' rows stacked), not a broadcast
            # that would copy the keys G times a chunk.
            kt = key.detach().float().transpose(-1, -2)
            scale = kwargs.get("scaling") or 1.0 / math.sqrt(d)
            softcap = kwargs.get("softcap")
            sinks = kwargs.get("s_aux")
            budget = CHUNK_BYTES if query.device.type == "cpu" else DEVICE_CHUNK_BYTES
            rows = min(n, self.chunk or max(1, budget // (4 * b * h * n)))
            # Plain causal attention (no mask given) hides only the keys after each query: in a
            # chunk, the upper triangle of its diagonal block.
            later = None if mask is not None else torch.ones(rows, rows, dtype=torch.bool, device=query.device).triu_(1)
            for q0 in range(0, n, rows):
                q1 = min(n, q0 + rows)
                c = q1 - q0
                # Scaled before the product (a chunk of queries, not of scores): eager's order,
                # (q·kᵀ)·scale, is the same to a rounding of the scores.
                qs = q[:, :, :, q0:q1].reshape(b, hkv, g * c, d).float() * scale
                s = torch.matmul(qs, kt[..., :q1]).view(b, hkv, g, c, q1)
                if softcap:
                    s = s.div_(softcap).tanh_().mul_(softcap)
                if later is None:
                    s = _masked(s, mask, q0, q1)
                else:
                    s[..., q0:q1].masked_fill_(later[:c, :c], -math.inf)
                if sinks is not None:
                    sink = sinks.detach().float().view(1, hkv, g, 1, 1).expand(b, -1, -1, c, 1)
                    p = torch.softmax(torch.cat([s, sink], dim=-1), dim=-1)[..., :-1]
                elif later is not None:
                    p = _softmax_(s)  # every query sees itself: no row is masked whole
                else:
                    # A row masked whole (a padding query) has no probabilities: zero, not the
                    # NaN softmax makes of it. A NaN score (a diverging model) stays NaN, for the
                    # engine to refuse by name rather than read as attention to nothing.
                    masked_whole = s.amax(dim=-1, keepdim=True) == -math.inf
                    p = _softmax_(s).masked_fill_(masked_whole, 0.0)
                # A model split across devices (`device_map`) has its layers where they lie; the
                # sum is kept where the first recorded layer is (a no-op copy elsewhere).
                if self.reduce == "mean":
                    self._acc[:, q0:q1, :q1] += p.sum(dim=(1, 2)).to(self._acc.device)
                else:
                    self._acc[:, q0:q1, :q1] = torch.maximum(self._acc[:, q0:q1, :q1], p.amax(dim=(1, 2)).to(self._acc.device))

    # -- results ---------------------------------------------------------------------------

    @property
    def recorded_layers(self) -> list[int]:
        """The layers the last forward pass recorded."""
        return sorted(self._seen)

    def _recorded(self) -> Any:
        """The pass's `[B,N,N]`, averaged (or clamped) in place the first time it is asked for,
        so that a result is the accumulator itself, not a second `[B,N,N]`."""
        if self._acc is None:
            raise RuntimeError("capture: nothing recorded; run the model inside the `with` block")
        missing = set(range(*self.layers)) - self._seen
        if missing:
            raise RuntimeError(f"capture: layers {sorted(missing)} were not seen in the last forward pass")
        if not self._finished:
            if self.reduce == "mean":
                self._acc.div_(self._heads)
            else:
                self._acc.clamp_min_(0.0)
            self._finished = True
        return self._acc

    def tensor(self) -> Any:
        """`[B,N,N]` float32 on the model's device: the attention averaged (or maxed) over the
        chosen layers and all heads, for the whole padded batch. It is the capture's own buffer
        (the next forward pass records into a new one)."""
        return self._recorded()

    def valid(self, i: int) -> Any:
        """Positions of sample `i` that hold tokens (not padding), from the `attention_mask`
        the model was called with (all positions when it had none)."""
        import torch

        n = self._recorded().shape[-1]
        if self._mask2d is None or self._mask2d.dim() != 2:
            return torch.arange(n)
        return torch.nonzero(self._mask2d[i].bool(), as_tuple=False).flatten().cpu()

    def sample(self, i: int) -> Any:
        """Sample `i`'s `[n,n]` float32 attention over its own tokens (padding removed), as a torch
        tensor on the model's device: what an RL step hands to the engine, which reads it where it
        lies (on a GPU, the CUDA backend reads it there, with no trip through host memory). A
        sample without padding is the capture's own memory; a padded one is one new `[n,n]`."""
        recorded = self._recorded()
        if not -recorded.shape[0] <= i < recorded.shape[0]:
            raise IndexError(f"capture: sample {i} of a batch of {recorded.shape[0]}")
        t = recorded[i]
        keep = self.valid(i)
        if len(keep) != t.shape[0]:
            keep = keep.to(t.device)
            t = t.index_select(0, keep).index_select(1, keep)
        return t

    def attention(self, i: int) -> np.ndarray:
        """`sample(i)` on the host, as NumPy: on the CPU the same memory (no copy); from a device,
        one copy."""
        return self.sample(i).cpu().numpy()

    def meta(self) -> dict[str, str]:
        """What a dump records of where the matrix came from."""
        return {
            "layers": json.dumps(list(range(*self.layers))),
            "num_layers": str(self.num_layers),
            "model": str(getattr(_text_config(self.model), "model_type", "")),
        }


def _softmax_(s: Any) -> Any:
    """softmax over the last axis, written over the scores: the chunk of scores is the capture's
    largest buffer, and `torch.softmax` would make a second one (each row is read whole before
    it is written, so writing in place is safe, and it allocates nothing)."""
    import torch

    return torch.softmax(s, dim=-1, out=s)


def _dense_mask(mask: Any, b: int, n: int, device: Any) -> Any:
    """Flex attention's `BlockMask` (a mask function over blocks) as `[B,1,N,N]` booleans (N²
    bytes a sample, a quarter of the accumulator), from its own function, so padding and
    causality are the model's."""
    from torch.nn.attention.flex_attention import create_mask

    return create_mask(mask.mask_mod, b, 1, n, n, device=device)


def _masked(s: Any, mask: Any, q0: int, q1: int) -> Any:
    """Scores `[B,Hkv,G,C,K]` of query rows q0..q1 with the model's mask applied, in place (one
    chunk of scores is the capture's largest buffer): boolean (True attends) or additive float."""
    import torch

    k = s.shape[-1]
    m = mask[:, :, q0:q1, :k]
    if m.shape[-2] == 1 and q1 - q0 > 1:  # a mask broadcast over query rows
        m = m.expand(-1, -1, q1 - q0, -1)
    m = m.unsqueeze(2)  # [B,1,1,C,K] against [B,Hkv,G,C,K]
    if m.dtype == torch.bool:
        return s.masked_fill_(~m, -math.inf)
    return s.add_(m.float())


def dump(
    path: str | PathLike[str],
    attention: Any,
    tokens: Sequence[str | bytes],
    *,
    question: tuple[int, int],
    answer: tuple[int, int],
    response: tuple[int, int] | None = None,
    token_ids: Sequence[int] | None = None,
    source: capture | None = None,
    meta: dict[str, Any] | None = None,
    overwrite: bool = False,
    causal_effect: Any = None,
    answer_changed: Any = None,
) -> None:
    """Writes trace format v1 (atomically; an existing file is kept unless `overwrite`). The
    engine checks every value first, as an analysis would (NaN, negative, above the diagonal,
    rows over one unit): a trace that could not be analysed is refused, with a `TraceError`
    naming the file and the row, and not written.
    `attention` is one sample's `[n,n]` (e.g. `cap.attention(i)`); `tokens` as `analyze` takes
    them (bytes spelled as byte-level BPE spells them); with `source=cap` the file
    records the layers it averaged and the model's depth, so the app and the export show them.
    `causal_effect` (`[n]`, from `flowtracer.causal_effect`) is written beside it, and
    `answer_changed` (bool `[n]`, its `return_changed=True`) as the metadata's
    `causal_answer_changed`, the tokens whose hiding changed the answer."""
    if isinstance(attention, capture):
        raise TypeError("dump: attention is a capture, which holds every sample of the batch: pass one sample's matrix, `cap.attention(i)`, and `source=cap`")
    a = host_float32(attention, "dump: attention")
    m = {} if source is None else source.meta()
    m.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (meta or {}).items()})
    if answer_changed is not None:
        changed = np.asarray(answer_changed.detach().cpu() if hasattr(answer_changed, "detach") else answer_changed).reshape(-1)
        if changed.dtype != np.bool_ or len(changed) != len(tokens):
            raise ValueError(f"answer_changed: one bool per token ({len(tokens)}), not {changed.dtype} [{len(changed)}]")
        m[_native.ANSWER_CHANGED] = json.dumps(np.flatnonzero(changed).tolist())
    ids = None if token_ids is None else [int(t) for t in token_ids]
    spans = span("dump: question", question), span("dump: answer", answer), None if response is None else span("dump: response", response)
    effect = None if causal_effect is None else np.asarray(_numpy(causal_effect), dtype=np.float32).reshape(-1).tolist()
    _native.write_trace(fspath(path), a, tokens, *spans, ids, m, overwrite, causal_effect=effect)


def _numpy(x: Any) -> Any:
    """A torch tensor as a float32 NumPy array on the host; anything else as it is."""
    return x.detach().float().cpu().numpy() if hasattr(x, "detach") else x


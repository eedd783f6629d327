"""Attention from NumPy or torch into what the engine reads in place.

float32 and float16 arrays that are C-contiguous go to the engine as they are; bfloat16 (torch's,
or ml_dtypes' for NumPy) goes as its 16-bit pattern, which the engine decodes. Anything else is
converted to float32 first, which is a copy (the result's `zero_copy` says which happened). A
torch tensor on a GPU is copied to host memory: this wheel's engine has no CUDA backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "data_ptr")


def address(x: Any) -> int | None:
    """Where the caller's array keeps its first element, if it is one we know."""
    if isinstance(x, np.ndarray):
        return int(x.__array_interface__["data"][0])
    if _is_torch(x):
        return int(x.data_ptr())
    return None


def engine_array(x: Any, name: str) -> tuple[np.ndarray, bool]:
    """`(array, bf16)`: the array the engine reads, and whether it holds bfloat16 bit patterns.
    Attention that is not floating point is refused: integers are not probabilities."""
    if _is_torch(x):
        import torch

        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if t.dtype == torch.bfloat16:
            return t.contiguous().view(torch.int16).numpy(), True
        if not t.is_floating_point():
            raise ValueError(f"{name}: dtype {t.dtype} is not floating point (attention is softmax probabilities)")
        if t.dtype not in (torch.float32, torch.float16):
            t = t.float()
        return t.contiguous().numpy(), False
    a = np.asarray(x)
    # The common case first: `dtype.name` alone costs 2 µs, most of this function's time.
    if a.dtype in (np.float32, np.float16) and a.dtype.isnative and a.flags.c_contiguous:
        return a, False
    if a.dtype.name == "bfloat16":
        return np.ascontiguousarray(a).view(np.uint16), True
    if a.dtype.kind != "f":
        raise ValueError(f"{name}: dtype {a.dtype} is not floating point (attention is softmax probabilities)")
    return np.ascontiguousarray(a, dtype=np.float32), False

"""Attention from NumPy, torch, CuPy or Numba into what the engine reads in place.

float32 and float16 arrays that are C-contiguous go to the engine as they are; bfloat16 (torch's,
or ml_dtypes' for NumPy) goes as its 16-bit pattern, which the engine decodes. Anything else is
converted to float32 first, which is a copy (the result's `zero_copy` says which happened).

An array in CUDA memory (a torch tensor on the GPU, or anything with `__cuda_array_interface__`)
that is on the engine's CUDA device goes to the engine as a device pointer, and the CUDA backend
reads it there: no trip through host memory. When the run will not be on that device (another
`backend`, a tensor on another GPU, an engine without CUDA) a torch tensor is copied to the host;
any other CUDA array is refused, since only its library knows how to copy it.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ._cuda import choose_device
from ._native import TraceError


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "data_ptr")


def _cuda_interface(x: Any) -> dict[str, Any] | None:
    if isinstance(x, np.ndarray):
        return None
    try:
        return x.__cuda_array_interface__
    except (AttributeError, TypeError):
        return None


def address(x: Any) -> int | None:
    """Where the caller's array keeps its first element (in host or device memory), if it is one we know."""
    if isinstance(x, np.ndarray):
        return int(x.__array_interface__["data"][0])
    if _is_torch(x):
        try:
            return int(x.data_ptr())
        except RuntimeError:  # a sparse tensor has no one place (and is refused)
            return None
    cai = _cuda_interface(x)
    return None if cai is None else int(cai["data"][0])


def engine_array(x: Any, name: str, on_device: DeviceRun | None = None) -> tuple[Any, bool]:
    """`(array, bf16)`: the array the engine reads (a NumPy array, or an array in CUDA memory on the
    device of `on_device`'s run), and whether it holds bfloat16 bit patterns. Attention that is not
    floating point is refused: integers are not probabilities."""
    if _is_torch(x):
        import torch

        t = x.detach()
        # torch's own errors for these name neither the array nor what to do.
        if t.layout != torch.strided:
            raise refused(f"{name}: a {t.layout} tensor: attention is read dense, pass `{name}.to_dense()`", "shape")
        if t.device.type == "meta":
            raise refused(f"{name}: a tensor on the meta device holds no values", "params")
        if t.device.type == "cuda" and on_device is not None and on_device(t.device.index or 0):
            return _engine_tensor(t, name, torch)
        if t.device.type != "cpu":
            t = t.cpu()
        t, bf16 = _engine_tensor(t, name, torch)
        return t.numpy(), bf16
    cai = _cuda_interface(x)
    if cai is not None:
        index = _device_of(x)
        if on_device is not None and on_device(index):
            return x, False
        why = on_device.why_not(index) if on_device is not None else "this call takes host memory: copy it to the host first"
        raise refused(f"{name}: the array is in CUDA memory and {why}", "params")
    try:
        a = np.asarray(x)
    except (ValueError, TypeError) as e:  # ragged lists, objects NumPy cannot make an array of
        raise refused(f"{name}: not an array of numbers: {e}", "shape") from None
    # The common case first: `dtype.name` alone costs 2 µs, most of this function's time.
    if a.dtype in (np.float32, np.float16) and a.dtype.isnative and a.flags.c_contiguous:
        return a, False
    if a.dtype.name == "bfloat16":
        return np.ascontiguousarray(a).view(np.uint16), True
    if a.dtype.kind != "f":
        raise refused(f"{name}: dtype {a.dtype} is not floating point (attention is softmax probabilities)", "dtype")
    return np.ascontiguousarray(a, dtype=np.float32), False


def host_float32(x: Any, name: str) -> np.ndarray:
    """`x` as a C-contiguous float32 NumPy array in host memory (what a trace file stores), refused
    as `engine_array` refuses it (`name` says which array): a torch tensor anywhere is copied to
    the host, bfloat16 widened exactly."""
    a, bf16 = engine_array(x, name, None)
    if bf16:
        return (np.ascontiguousarray(a).view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.ascontiguousarray(a, dtype=np.float32)


def _engine_tensor(t: Any, name: str, torch: Any) -> tuple[Any, bool]:
    """A tensor, where it is, in a dtype and layout the engine reads: bf16 as int16 bit patterns."""
    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16), True
    if not t.is_floating_point():
        raise refused(f"{name}: dtype {t.dtype} is not floating point (attention is softmax probabilities)", "dtype")
    if t.dtype not in (torch.float32, torch.float16):
        t = t.float()
    return t.contiguous(), False


def _device_of(x: Any) -> int:
    """The CUDA device an interface-only array is on (CuPy's and Numba's say; else device 0)."""
    device = getattr(x, "device", None)
    for attr in ("id", "index"):
        value = getattr(device, attr, None)
        if isinstance(value, int):
            return value
    return 0


class DeviceRun:
    """Which device's arrays a run with `backend` reads in place: the engine's CUDA device when the
    run goes there (`auto` takes CUDA whenever the engine has it). `cuda_device` is asked at most
    once, and only if a CUDA array comes."""

    def __init__(self, backend: str, cuda_device: Callable[[], int | None]) -> None:
        self.backend = backend
        self._cuda_device = cuda_device
        self._known: list[int | None] = []

    def device(self) -> int | None:
        if self.backend not in ("auto", "cuda"):
            return None
        if not self._known:
            self._known.append(self._cuda_device())
        return self._known[0]

    def __call__(self, index: int) -> bool:
        if self.backend not in ("auto", "cuda"):
            return False
        choose_device(index)
        return self.device() == index

    def why_not(self, index: int) -> str:
        if self.backend not in ("auto", "cuda"):
            return f"backend={self.backend!r} runs elsewhere: copy it to the host first, or pass backend='auto' or 'cuda'"
        device = self.device()
        if device is None:
            return "this engine has no CUDA device (flowtracer.backends() says why): copy it to the host first"
        return f"it is on CUDA device {index} and the engine runs on device {device}: copy it there or to the host first"


def refused(message: str, problem: str) -> TraceError:
    """A `TraceError` for an array refused before the engine reads it, with the `problem` name
    the engine would give it."""
    err = TraceError(message)
    err.problem = problem
    return err

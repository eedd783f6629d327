"""NVIDIA's run-time compiler for the engine's CUDA backend, found where pip puts it.

The engine compiles its kernels with NVRTC 12, which it loads by name when it first looks for a
device. torch's CUDA 12 builds install it as the `nvidia-cuda-nvrtc-cu12` wheel, outside the
loader's path; loading that copy here, once, lets the engine's lookup by name find it (as torch
does for its own CUDA libraries). Where it is not installed this does nothing, and
`flowtracer.backends()` says why the engine has no CUDA.
"""

from __future__ import annotations

import ctypes
import os
import sys


def preload_nvrtc() -> str | None:
    """The path of the NVRTC wheel's library, loaded; None if there is none (or not on Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    for root in sys.path:
        lib = os.path.join(root or ".", "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so.12")
        if os.path.exists(lib):
            try:
                ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
            except OSError:
                return None
            return lib
    return None

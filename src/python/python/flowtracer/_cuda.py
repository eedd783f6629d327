"""The engine's CUDA backend from Python: NVIDIA's run-time compiler, found where pip puts it, and
the device the engine runs on.

The engine compiles its kernels with NVRTC (any version from 11 on), which it looks for first at
the paths in `FLOWTRACER_NVRTC`, then by name on the loader's path. torch's CUDA wheels install
NVRTC as a wheel of its own (`nvidia/cu13/lib` for CUDA 13, `nvidia/cuda_nvrtc/lib` for CUDA 12),
outside the loader's path: importing flowtracer names those in `FLOWTRACER_NVRTC` unless it is
already set, so the engine finds them. Where none is installed this does nothing, and
`flowtracer.backends()` says why the engine has no CUDA.
"""

from __future__ import annotations

import os
import sys

#: Where NVRTC's wheels put the library, relative to a `sys.path` entry, newest first.
WHEEL_LIBRARIES = (
    ("nvidia", "cu13", "lib", "libnvrtc.so.13"),
    ("nvidia", "cu12", "lib", "libnvrtc.so.12"),
    ("nvidia", "cuda_nvrtc", "lib", "libnvrtc.so.12"),
)


def wheel_nvrtc() -> list[str]:
    """Every NVRTC library a pip wheel installed on `sys.path` (Linux)."""
    if not sys.platform.startswith("linux"):
        return []
    found = []
    for root in sys.path:
        for parts in WHEEL_LIBRARIES:
            lib = os.path.join(root or ".", *parts)
            if os.path.exists(lib) and lib not in found:
                found.append(lib)
    return found


def point_engine_at_nvrtc() -> None:
    """Sets `FLOWTRACER_NVRTC` to the wheels' NVRTC, unless the caller set it."""
    if "FLOWTRACER_NVRTC" not in os.environ:
        found = wheel_nvrtc()
        if found:
            os.environ["FLOWTRACER_NVRTC"] = os.pathsep.join(found)


#: The engine's CUDA device, fixed when it first starts CUDA in this process.
DEVICE_ENV = "FLOWTRACER_CUDA_DEVICE"


def choose_device(index: int | None = None) -> None:
    """Sets `FLOWTRACER_CUDA_DEVICE` unless the caller set it: to `index` (the device of a CUDA array
    being handed over), else to torch's current device when torch has started CUDA in this
    process (a trainer's rank on a machine whose GPUs it all sees), so that the engine shares that
    GPU rather than starting a context of its own on the first one. Once the engine has started
    CUDA this changes nothing."""
    if DEVICE_ENV in os.environ:
        return
    if index is None:
        torch = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_initialized():
            return
        index = torch.cuda.current_device()
    os.environ[DEVICE_ENV] = str(index)

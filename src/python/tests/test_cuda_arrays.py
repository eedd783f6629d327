"""Attention in CUDA memory (a torch tensor on the GPU, CuPy, Numba: anything with
`__cuda_array_interface__`) goes to the CUDA backend as a device pointer, never through host
memory. Without a GPU this runs the whole wheel against the stand-in `libcuda.so` of
tests/cuda_emulator (device memory is host memory there, and the kernels run on CPU threads), in
a child process with that library first on its path. It counts the bytes the driver was asked to
copy up: the attention must not be among them. The GPU itself is checked by .ci/device-check.sh.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import flowtracer
from conftest import ROOT

CHILD = r"""
import ctypes, json, sys
import numpy as np
import flowtracer

class OnDevice:
    '''A NumPy array posing as device memory (the fake driver's device memory is host memory).'''
    def __init__(self, a):
        self.a = a
        self.__cuda_array_interface__ = dict(shape=a.shape, typestr=a.dtype.str, data=(a.ctypes.data, True), version=3, strides=None, stream=1)

def chain(n, layers=()):
    a = np.zeros((n, n), dtype=np.float32)
    a[0, 0] = 1.0
    rng = np.random.default_rng(n)
    for k in range(1, n):
        w = rng.random(k + 1)
        w[k - 1] += k
        a[k, : k + 1] = w / w.sum()
    return np.broadcast_to(a, (*layers, n, n)).copy()

up = ctypes.CDLL("libcuda.so").flowtracer_fake_bytes_up
up.restype = ctypes.c_ulonglong
out = {"device": flowtracer._native.cuda_device(), "cases": []}
for n, layers, dtype in [(40, (), np.float32), (70, (3, 2), np.float16)]:
    a = chain(n, layers).astype(dtype)
    spans = dict(question=(0, 4), answer=(n - 2, n))
    before = up()
    on_device = flowtracer.analyze(OnDevice(a), backend="cuda", **spans)
    middle = up()
    from_host = flowtracer.analyze(a, backend="cuda", **spans)
    after = up()
    cpu = flowtracer.analyze(a, backend="cpu", **spans)
    slabs = max(len(on_device.layers), 1) * max(len(on_device.heads), 1) * n * n * a.itemsize
    out["cases"].append(dict(
        n=n, provenance=on_device.provenance, zero_copy=on_device.zero_copy,
        up_device=middle - before, up_host=after - middle, slabs=slabs,
        flow=[on_device.flow.tolist(), cpu.flow.tolist()], credit=[on_device.credit.tolist(), cpu.credit.tolist()],
        hubs=[on_device.hubs.tolist(), cpu.hubs.tolist()],
    ))
bad = chain(12)
bad[2, 5] = 0.3
try:
    flowtracer.analyze(OnDevice(bad), question=(0, 2), answer=(10, 12), backend="cuda")
except flowtracer.TraceError as e:
    out["bad"] = [str(e), e.problem]
try:
    flowtracer.analyze(OnDevice(bad), question=(0, 2), answer=(10, 12), backend="cpu")
except ValueError as e:
    out["elsewhere"] = str(e)
# An interface whose shape claims more than its allocation holds (the fake driver is told the size).
import os
os.environ["FLOWTRACER_FAKE_CUDA_ALLOCATION"] = str(bad.nbytes - 4)
try:
    flowtracer.analyze(OnDevice(bad), question=(0, 2), answer=(10, 12), backend="cuda")
except ValueError as e:
    out["short"] = str(e)
del os.environ["FLOWTRACER_FAKE_CUDA_ALLOCATION"]
print(json.dumps(out))
"""


def _needs(found: bool, what: str) -> None:
    if found:
        return
    if os.environ.get("FLOWTRACER_REQUIRE_NVRTC") == "1":
        pytest.fail(f"needs {what}: required here (FLOWTRACER_REQUIRE_NVRTC=1)")
    pytest.skip(f"needs {what}")


def _nvrtc_dir() -> str | None:
    """The folder on LD_LIBRARY_PATH that holds NVRTC 12 (.ci/run puts the pip wheel's there)."""
    found = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d and os.path.exists(os.path.join(d, "libnvrtc.so.12"))]
    return found[0] if found else None


def _fake_driver(tmp_path) -> None:
    """The stand-in libcuda.so, built into `tmp_path`."""
    _needs(shutil.which("g++") is not None, "g++ (to build the stand-in libcuda.so)")
    _needs(_nvrtc_dir() is not None, "NVRTC (libnvrtc.so.12 on LD_LIBRARY_PATH; .ci/run installs it)")
    built = subprocess.run(
        ["g++", "-std=c++20", "-O1", "-pthread", "-shared", "-fPIC", "-o", str(tmp_path / "libcuda.so"), str(ROOT / "tests/cuda_emulator/fake_driver.cpp")],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr


def test_a_cuda_array_is_read_on_the_device_where_it_lies(tmp_path):
    _fake_driver(tmp_path)
    env = dict(os.environ, LD_LIBRARY_PATH=f"{tmp_path}:{os.environ.get('LD_LIBRARY_PATH', '')}")
    run = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["device"] == 0
    for c in out["cases"]:
        name = f"N = {c['n']}"
        p = c["provenance"]
        assert p["device"].startswith("FlowTracer CPU emulator") and set(p["steps"].values()) >= {"cuda"} and not p["fallbacks"], (name, p)
        assert p["steps"]["aggregate"] == "cuda", (name, p)
        assert c["zero_copy"] is True, name
        # The same arrays from host memory send every selected slab up; from the device, none.
        assert c["up_host"] - c["up_device"] == c["slabs"], name
        np.testing.assert_allclose(*c["flow"], rtol=1e-4, atol=1e-12, err_msg=name)
        assert c["credit"][0] == c["credit"][1] and c["hubs"][0] == c["hubs"][1], name
    # Bad values on the device get the CPU's error (from a host copy), naming the row.
    message, problem = out["bad"]
    assert problem == "non_causal" and "row 2" in message, message
    # A run elsewhere than the array's device cannot read it, and says what to do.
    assert "CUDA memory and backend='cpu' runs elsewhere: copy it to the host" in out["elsewhere"], out["elsewhere"]
    # An array larger than its allocation is refused before any kernel reads past it.
    assert "576 bytes" in out["short"] and "run past the end of their CUDA allocation (572 bytes" in out["short"], out["short"]


def test_a_cuda_array_without_a_cuda_engine_is_refused_clearly():
    class Fake:
        __cuda_array_interface__ = dict(shape=(4, 4), typestr="<f4", data=(4096, True), version=3, strides=None, stream=None)

    if flowtracer._native.cuda_device() is not None:
        pytest.skip("this machine has a CUDA device: the refusal is for engines without one")
    with pytest.raises(ValueError, match="CUDA memory and this engine has no CUDA device"):
        flowtracer.analyze(Fake(), question=(0, 1), answer=(3, 4))


def test_nvrtc_installed_as_a_wheel_is_found_without_the_loader_path(tmp_path):
    # torch's CUDA wheels install NVRTC as a wheel of its own, on no loader path (CUDA 13's in
    # nvidia/cu13/lib, which torch brings here; CUDA 12's in nvidia/cuda_nvrtc/lib, which .ci/run
    # installs): importing flowtracer names it for the engine, which then compiles its kernels.
    _fake_driver(tmp_path)
    cu12_root = os.path.dirname(os.path.dirname(os.path.dirname(_nvrtc_dir())))  # .../nvidia/cuda_nvrtc/lib
    probe = "import os, flowtracer; print(flowtracer._native.cuda_device(), os.environ.get('FLOWTRACER_NVRTC', ''))"
    env = {k: v for k, v in os.environ.items() if k != "FLOWTRACER_NVRTC"}
    env["LD_LIBRARY_PATH"] = str(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [cu12_root, os.environ.get("PYTHONPATH")]))
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    device, named = found.stdout.split()
    assert device == "0", (found.stdout, found.stderr)
    assert os.path.join(cu12_root, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so.12") in named.split(os.pathsep), named
    # The same with the variable set to nothing by the caller: the loader's path alone has none.
    env["FLOWTRACER_NVRTC"] = ""
    without = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert without.stdout.split()[0] == "None", (without.stdout, without.stderr)
    # Each wheel's NVRTC on its own compiles the kernels (CUDA 13's too, where torch brought it).
    for lib in named.split(os.pathsep):
        env["FLOWTRACER_NVRTC"] = lib
        one = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
        assert one.stdout.split()[0] == "0", (lib, one.stdout, one.stderr)


# A 16-token chain for the child scripts below: its attention `a`, its `n`.
SMALL_CHAIN = r"""
n = 16
a = np.zeros((n, n), dtype=np.float32)
a[0, 0] = 1.0
for k in range(1, n):
    a[k, k - 1] = 0.5
    a[k, 0] += 0.5
"""

FORKED = r"""
import json, os
import numpy as np
import flowtracer
""" + SMALL_CHAIN + r"""
spans = dict(question=(0, 2), answer=(n - 2, n))
parent = flowtracer.analyze(a, backend="cuda", **spans)
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read)
    out = {}
    try:
        flowtracer.analyze(a, backend="cuda", **spans)
        out["cuda"] = "ran"
    except ValueError as e:
        out["cuda"] = str(e)
    auto = flowtracer.analyze(a, backend="auto", **spans)
    out["auto"] = sorted(set(auto.provenance["steps"].values()))
    out["same"] = auto.flow.tolist() == flowtracer.analyze(a, backend="cpu", **spans).flow.tolist()
    out["device"] = flowtracer._native.cuda_device()
    with os.fdopen(write, "w") as pipe:
        pipe.write(json.dumps(out))
    os._exit(0)
os.close(write)
with os.fdopen(read) as pipe:
    child = json.loads(pipe.read() or "null")
os.waitpid(pid, 0)
print(json.dumps({"parent": sorted(set(parent.provenance["steps"].values())), "child": child}))
"""


def test_a_process_forked_after_cuda_was_set_up_is_told_so_and_auto_takes_the_cpu(tmp_path):
    # The driver's state does not survive a fork (NVIDIA's rule): a child whose parent had set
    # CUDA up is refused CUDA by name, and `auto` gives it the CPU's results, instead of the
    # child's calls going to a context and threads that are not in it.
    _fake_driver(tmp_path)
    env = dict(os.environ, LD_LIBRARY_PATH=f"{tmp_path}:{os.environ.get('LD_LIBRARY_PATH', '')}")
    run = subprocess.run([sys.executable, "-W", "ignore::DeprecationWarning", "-c", FORKED], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert "cuda" in out["parent"], out
    child = out["child"]
    assert child is not None, run.stderr
    assert "is a fork of it: a GPU device does not survive a fork" in child["cuda"] and "'spawn'" in child["cuda"], child["cuda"]
    assert child["auto"] == ["cpu"] and child["same"] is True and child["device"] is None, child


DEVICES = r"""
import json, os
import numpy as np
import flowtracer

class OnDevice:
    '''A NumPy array posing as memory of CUDA device `index` (as CuPy's arrays say theirs).'''
    def __init__(self, a, index):
        self.a = a
        self.device = type("Device", (), {"id": index})()
        self.__cuda_array_interface__ = dict(shape=a.shape, typestr=a.dtype.str, data=(a.ctypes.data, True), version=3, strides=None, stream=None)

""" + SMALL_CHAIN + r"""
out = {}
r = flowtracer.analyze(OnDevice(a, 1), question=(0, 2), answer=(n - 2, n), backend="cuda")
out["first"] = [os.environ.get("FLOWTRACER_CUDA_DEVICE"), flowtracer._native.cuda_device(), r.zero_copy, r.provenance["steps"]["aggregate"]]
try:
    flowtracer.analyze(OnDevice(a, 0), question=(0, 2), answer=(n - 2, n), backend="cuda")
except ValueError as e:
    out["other"] = str(e)
print(json.dumps(out))
"""


def test_the_engine_runs_on_the_device_of_the_first_cuda_array(tmp_path):
    # A trainer's rank sees every GPU and works on its own: the engine follows the first CUDA
    # array it is given (two emulated devices here), and says so when a later one is elsewhere.
    _fake_driver(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "FLOWTRACER_CUDA_DEVICE"}
    env.update(LD_LIBRARY_PATH=f"{tmp_path}:{os.environ.get('LD_LIBRARY_PATH', '')}", FLOWTRACER_FAKE_CUDA_DEVICES="2")
    run = subprocess.run([sys.executable, "-c", DEVICES], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["first"] == ["1", 1, True, "cuda"], out
    assert "on CUDA device 0 and the engine runs on device 1" in out["other"], out["other"]
    # A device the machine lacks is the engine's error, which backends() reports.
    env["FLOWTRACER_CUDA_DEVICE"] = "5"
    probe = "import flowtracer; print(flowtracer._native.cuda_device()); print(flowtracer.backends())"
    none = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert none.stdout.startswith("None") and "CUDA device 5" in none.stdout, (none.stdout, none.stderr)


def test_the_engine_follows_torchs_current_device_unless_told(monkeypatch):
    """A trainer's rank sees every GPU and has made one current: the engine must start CUDA there,
    not on the first, unless an array names its device or the user set the variable."""
    import types

    from flowtracer import _cuda

    started = {"yes": True}
    cuda = types.SimpleNamespace(is_initialized=lambda: started["yes"], current_device=lambda: 3)
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    env = _cuda.DEVICE_ENV

    monkeypatch.delenv(env, raising=False)
    _cuda.choose_device()
    assert os.environ[env] == "3", "torch's current device"

    monkeypatch.delenv(env)
    _cuda.choose_device(5)
    assert os.environ[env] == "5", "the array's device comes first"

    monkeypatch.setenv(env, "1")
    _cuda.choose_device(5)
    _cuda.choose_device()
    assert os.environ[env] == "1", "the user's choice stands"

    monkeypatch.delenv(env)
    started["yes"] = False
    _cuda.choose_device()
    assert env not in os.environ, "torch without CUDA started says nothing: the engine takes its default"

#!/usr/bin/env bash
# The GPU checks, as one script for the lent machine with an NVIDIA GPU: the CUDA parity tests
# with nothing allowed to skip, the wgpu tests on the real adapter, the Python package on CUDA
# tensors (where the image has torch), then the bench on every backend. That machine has no Rust
# and no network: .ci/device-kit.sh builds everything here first, and the call carries it:
#
#   .ci/device-kit.sh                                   # here
#   run: bash .ci/device-check.sh, carry target/device-kit   # there, ~5 min on an H200
#
# Everything it prints also lands in $OUT (default ./device-out) for the README's figures.
# SIZES=1024 shortens the bench (a dry run of the script elsewhere).
set -uo pipefail
cd "$(dirname "$0")/.."
kit=target/device-kit
out="${OUT:-device-out}"
mkdir -p "$out"
log() { echo "== $*" | tee -a "$out/summary.txt"; }
[ -e "$kit/bin.tgz" ] || { echo "no $kit/bin.tgz: run .ci/device-kit.sh first and carry $kit"; exit 2; }

log "$(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
bin=/tmp/flowtracer-kit
rm -rf "$bin" && mkdir -p "$bin" && tar -C "$bin" -xzf "$kit/bin.tgz"
# The tests start the binary by the path cargo compiled into them.
exe="$(cat "$kit/bin-path")"
# A different binary already there (a dry run on the machine that built the kit) is kept aside.
if [ -e "$exe" ] && ! cmp -s "$bin/flowtracer" "$exe"; then
    mv "$exe" "$exe.before-device-check" && log "kept the binary that was at $exe as $exe.before-device-check"
fi
mkdir -p "$(dirname "$exe")" && cp "$bin/flowtracer" "$exe"

# NVRTC: the engine looks for libnvrtc.so, .so.13, .so.12 and .so.11 by name, then at the paths in
# FLOWTRACER_NVRTC. Where the loader's cache has none (a toolkit outside it), name the newest found.
if ! ldconfig -p | grep -q 'libnvrtc\.so'; then
    lib="$(find / -xdev -name 'libnvrtc.so.[0-9]*' 2>/dev/null | grep -v builtins | sort -V | tail -1)"
    if [ -n "$lib" ]; then
        export FLOWTRACER_NVRTC="$lib"
        log "NVRTC: $lib"
    else
        log "NVRTC: none found (the CUDA tests will fail: FLOWTRACER_REQUIRE_NVRTC=1)"
    fi
fi
# The Vulkan loader and GL libraries for wgpu, from the kit (the image may have the driver's
# ICD without what it links against).
for f in "$kit"/debs/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -e "$icd" ] && export VK_DRIVER_FILES="$icd"
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -e "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES="$egl"
log "ICDs: $(ls /usr/local/nvidia/share/vulkan/icd.d /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>/dev/null | tr '\n' ' ')"
log "vulkan: $(ldconfig -p | grep -c libvulkan) loader(s); ICD ${VK_DRIVER_FILES:-none found}"
export FLOWTRACER_REQUIRE_CUDA=1 FLOWTRACER_REQUIRE_NVRTC=1
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/flowtracer-xdg}"
mkdir -p -m 700 "$XDG_RUNTIME_DIR"

log "$("$exe" backends 2>&1 | tr '\n' ';')"
for t in "$bin"/tests/*; do
    log "tests: $(basename "$t")"
    "$t" 2>&1 | tee -a "$out/tests.txt" | grep -E "^test |test result|SKIPPED|panicked" | tee -a "$out/summary.txt"
done
# The Python package: torch CUDA tensors read in place by the CUDA backend, and capture + analyze
# at N = 8192 (.ci/device_python.py), where the image has Python with torch and the kit a wheel.
py="$(command -v python3 || true)"
wheel="$(ls "$kit"/wheel/*.whl 2>/dev/null | head -1)"
if [ -z "$wheel" ]; then
    log "python: the kit has no wheel (no maturin where it was built); not run"
elif [ -z "$py" ] || ! "$py" -c "import numpy, torch" 2>/dev/null; then
    log "python: ${py:-no python3} without numpy and torch on this image; not run"
else
    log "python: $("$py" --version 2>&1), $wheel"
    rm -rf /tmp/flowtracer-py && "$py" -m pip install --quiet --no-deps --no-index --target /tmp/flowtracer-py "$wheel" 2>&1 | tail -3
    PYTHONPATH=/tmp/flowtracer-py OUT="$out" timeout 300 "$py" .ci/device_python.py 2>&1 | tee -a "$out/summary.txt"
    echo "exit ${PIPESTATUS[0]}" | tee -a "$out/summary.txt"
fi
# The bench last, each backend bounded, so a slow one cannot cost the checks above.
for backend in cuda cpu wgpu; do
    log "bench --backend $backend"
    timeout 150 "$exe" bench --backend "$backend" --sizes "${SIZES:-1024,4096,8192}" --batch 64 --repeat 5 >"$out/bench-$backend.md" 2>"$out/bench-$backend.err"
    echo "exit $?" | tee -a "$out/summary.txt"
    tee -a "$out/summary.txt" <"$out/bench-$backend.md"
done
# A kit made with BEFORE= holds an earlier build: the CUDA aggregation in every layout, the two
# builds alternated, so a change's effect is read side by side on the same device.
if [ -x "$bin/flowtracer-before" ]; then
    for round in 1 2; do
        for build in before after; do
            b="$exe"; [ "$build" = before ] && b="$bin/flowtracer-before"
            log "bench --layouts --backend cuda, build $build, round $round"
            timeout 120 "$b" bench --backend cuda --sizes "${SIZES:-4096,8192}" --layouts --batch 0 --repeat 3 >"$out/layouts-$build-$round.md" 2>&1
            echo "exit $?" | tee -a "$out/summary.txt"
            grep -E "^\| [0-9]" "$out/layouts-$build-$round.md" >>"$out/summary.txt"
        done
    done
fi
log "done $(date -u +%FT%TZ)"

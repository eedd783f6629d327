#!/usr/bin/env bash
# The GPU checks, as one script for a machine with an NVIDIA GPU (the project's lent device):
# the CUDA and wgpu parity tests with nothing allowed to skip, then the bench on every backend.
# Everything it prints also lands in $OUT (default ./device-out) for the README's figures.
#
#   OUT=/some/dir .ci/device-check.sh            # ~5 min on an H200 after the build
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-device-out}"
mkdir -p "$out"
log() { echo "== $*" | tee -a "$out/summary.txt"; }

log "$(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
# NVRTC: the system's CUDA toolkit if there is one, else NVIDIA's wheel (no GPU needed to install).
if ! ldconfig -p | grep -q libnvrtc.so; then
    nvrtc="${FLOWTRACER_NVRTC_DIR:-$HOME/.cache/flowtracer/nvrtc}"
    [ -e "$nvrtc/nvidia/cuda_nvrtc/lib/libnvrtc.so.12" ] || python3 -m pip install --quiet --target "$nvrtc" nvidia-cuda-nvrtc-cu12
    export LD_LIBRARY_PATH="$nvrtc/nvidia/cuda_nvrtc/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
export FLOWTRACER_REQUIRE_CUDA=1 FLOWTRACER_REQUIRE_NVRTC=1 FLOWTRACER_REQUIRE_GPU=1
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/flowtracer-xdg}"
mkdir -p -m 700 "$XDG_RUNTIME_DIR"

log "build"
cargo build --release 2>&1 | tail -2 | tee -a "$out/summary.txt"
log "CUDA and wgpu parity tests"
cargo test --release --test cuda --test cuda_emulated --test gpu 2>&1 | tee "$out/tests.txt" | grep -E "^test |test result|SKIPPED|panicked" | tee -a "$out/summary.txt"
for backend in cuda wgpu cpu; do
    log "bench --backend $backend"
    target/release/flowtracer bench --backend "$backend" --sizes 1024,4096,8192 --batch 64 --repeat 5 >"$out/bench-$backend.md" 2>"$out/bench-$backend.err"
    echo "exit $?" | tee -a "$out/summary.txt"
    cat "$out/bench-$backend.md" | tee -a "$out/summary.txt"
done
log "done $(date -u +%FT%TZ)"

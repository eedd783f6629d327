#!/usr/bin/env bash
# Builds, here, what .ci/device-check.sh runs on the lent GPU machine. That machine has CUDA's
# driver and toolkit but no Rust and no network, and takes at most 64 MiB with the working tree:
# so the release binary and the CUDA and wgpu test binaries are built here, stripped and packed
# into target/device-kit (about 30 MB), with the Vulkan loader's packages for the wgpu tests and
# the Python package's wheel.
#
#   [BEFORE=old-binary] .ci/device-kit.sh        # then: run `bash .ci/device-check.sh` there, carrying target/device-kit
set -euo pipefail
cd "$(dirname "$0")/.."
kit=target/device-kit
rm -rf "$kit" && mkdir -p "$kit/bin/tests" "$kit/debs"

cargo build --release
# The test binaries, by name from cargo's own report of what it built.
cargo test --release --no-run --test cuda --test gpu --message-format=json \
    | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["kind"] == ["test"] and m.get("executable"):
        print(m["target"]["name"], m["executable"])' \
    | while read -r name exe; do strip -o "$kit/bin/tests/$name" "$exe"; done
strip -o "$kit/bin/flowtracer" target/release/flowtracer
# BEFORE=path/to/an/earlier/flowtracer: the device benches it beside this build, in the same call
# (the kit is then ~50 MB, within the 64 MiB a device call carries).
if [ -n "${BEFORE:-}" ]; then strip -o "$kit/bin/flowtracer-before" "$BEFORE"; fi
# The tests start the binary by the absolute path cargo compiled into them.
echo "$PWD/target/release/flowtracer" >"$kit/bin-path"
tar -C "$kit/bin" -czf "$kit/bin.tgz" . && rm -rf "$kit/bin"

# The Python package's wheel (abi3, stripped): the device runs .ci/device_python.py with it when
# its image has Python with torch (pip installs the wheel there without the network).
venv="${FLOWTRACER_VENV:-$HOME/.cache/flowtracer/venv}"
if [ -x "$venv/bin/maturin" ]; then
    PATH="$venv/bin:$PATH" CARGO_TARGET_DIR="$PWD/target" maturin build --release --strip -m src/python/Cargo.toml -o "$kit/wheel" --compatibility linux
else
    echo "note: no maturin in $venv (bash .ci/run makes it): the kit has no wheel, so the device skips the Python checks"
fi

# The Vulkan loader and the GL vendor-neutral libraries the NVIDIA ICD links against (the
# machine's image may lack them; its driver brings the ICD itself). The first device run
# (2026-11-30) found wgpu without an adapter when only libvulkan1 travelled.
pkgs="libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2"
(cd "$kit/debs" && apt-get download $pkgs >/dev/null 2>&1) || echo "note: not every one of $pkgs was fetched; the wgpu tests there need the image's own loader"
du -sh "$kit"

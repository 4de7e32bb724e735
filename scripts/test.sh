#!/usr/bin/env bash
# The project's test command: every crate's unit tests and the end-to-end tests, built once in release
# (training is too slow unoptimised), the firmware for every board (run under QEMU by tests/), the
# onnxruntime engine, the aarch64 kernels under qemu-user, and the Raspberry Pi CLI under qemu-user.
set -euo pipefail
cd "$(dirname "$0")/.."

# Python's `onnx` (and numpy) build test ONNX files and run onnx.checker on our export.
python3 -c "import onnx" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check onnx
# onnxruntime's wheel carries the libonnxruntime.so that the `ort` engine loads at run time.
python3 -c "import onnxruntime" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check onnxruntime
# The firmware: QEMU for its boards, binutils for its size budget, the three Cortex-M targets.
source scripts/apt-need.sh
apt_need qemu-system-arm qemu-system-arm arm-none-eabi-size binutils-arm-none-eabi
for t in thumbv6m-none-eabi thumbv7em-none-eabihf thumbv8m.main-none-eabihf; do
  rustup target list --installed | grep -qx "$t" || rustup target add "$t"
done

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Every firmware binary (three QEMU boards, RP2040, STM32F411) before the tests that run them.
scripts/firmware.sh build
# --no-fail-fast: one failing test binary must not hide the others from the CI log.
cargo test --release --workspace --no-fail-fast 2>&1 | tee "$log"
scripts/firmware.sh budget
# The onnxruntime engine (cargo feature `ort`): only the runtime crate rebuilds.
cargo test --release -p pocketgan-runtime --features ort --test ort_engine 2>&1 | tee -a "$log"
# The int8 kernels for the Raspberry Pi, under qemu-aarch64 once per dispatch path (Pi 4, Pi 5, max).
scripts/test-aarch64.sh 2>&1 | tee -a "$log"
# The `pocketgan` command cross-built for the Raspberry Pi (64- and 32-bit) under qemu-user, against
# the x86 build: the same bytes, texts and errors.
scripts/test-pi.sh 2>&1 | tee -a "$log"

# One closing line over every test binary (cargo's own last line is often an empty doc-test run).
passed=$(grep -oE '^test result: .* ([0-9]+) passed' "$log" | grep -oE '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -oE '; ([0-9]+) failed' "$log" | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}')
echo "tests: $passed passed, $failed failed"

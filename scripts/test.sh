#!/usr/bin/env bash
# The project's test command: every crate's unit tests and the end-to-end tests, built once in release
# (training is too slow unoptimised), then the firmware crate built for a Cortex-M target (no_std).
set -euo pipefail
cd "$(dirname "$0")/.."

# Python's `onnx` package is used only by the test that runs onnx.checker on our export.
python3 -c "import onnx" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check onnx
rustup target list --installed | grep -qx thumbv7em-none-eabihf || rustup target add thumbv7em-none-eabihf

cargo test --release --workspace --exclude pocketgan-firmware
cargo build --release -p pocketgan-firmware --target thumbv7em-none-eabihf

#!/usr/bin/env bash
# The runtime's unit tests for aarch64 (Raspberry Pi 4 and 5), built once and run under qemu-user
# once per kernel dispatch path. Each CPU model must detect exactly the kernels listed for it
# (POCKETGAN_EXPECT_ISAS, checked by a test), and every detected kernel must match the scalar one:
#   cortex-a72  Pi 4   NEON only: the dotprod/i8mm kernels must never run (they would SIGILL)
#   cortex-a76  Pi 5   NEON + dotprod
#   max         qemu   NEON + dotprod + i8mm
# Honours CARGO_TARGET_DIR (default target/). Needs Debian/Ubuntu packages, installed if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
sysroot=/usr/aarch64-linux-gnu

# Cross linker + C runtime, and qemu-user; apt-get only for what is missing.
source scripts/apt-need.sh
apt_need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu "$sysroot/lib/crt1.o" libc6-dev-arm64-cross \
  qemu-aarch64 qemu-user
rustup target list --installed | grep -qx "$target" || rustup target add "$target"

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER:-aarch64-linux-gnu-gcc}"

# Build once; cargo prints the test binary's path as JSON (diagnostics still go to the terminal).
start=$SECONDS
bin=$(cargo test -p pocketgan-runtime --no-default-features --lib --target "$target" --release --no-run \
    --message-format=json-render-diagnostics |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
[ -n "$bin" ] || { echo "test-aarch64: no test binary built" >&2; exit 1; }
echo "test-aarch64: built $bin in $((SECONDS - start))s"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
summary=()
status=0
run() { # cpu, board, expected kernels
    local cpu=$1 board=$2 expect=$3 t0=$SECONDS rc=0
    echo "== qemu-aarch64 -cpu $cpu ($board), expecting $expect"
    POCKETGAN_EXPECT_ISAS=$expect qemu-aarch64 -cpu "$cpu" -L "$sysroot" "$bin" --nocapture 2>&1 | tee "$log" ||
        rc=$?
    local found result
    found=$(sed -n 's/^detected isas: //p' "$log" | head -n 1)
    result=$(grep -oE '^test result: .*[0-9]+ passed; [0-9]+ failed' "$log" | sed 's/^test result: //' | tail -n 1) ||
        true
    [ "$rc" -eq 0 ] || status=1
    summary+=("aarch64 $cpu ($board): isas ${found:-?} -> ${result:-no result (exit $rc)} in $((SECONDS - t0))s")
}
run cortex-a72 "Pi 4" scalar,neon
run cortex-a76 "Pi 5" scalar,neon,neon-dotprod
run max "qemu max" scalar,neon,neon-dotprod,neon-i8mm

printf '%s\n' "${summary[@]}"
exit "$status"

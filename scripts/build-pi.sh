#!/usr/bin/env bash
# Cross-builds the `pocketgan` command (int8 engine and tract) for the Raspberry Pi from an x86-64
# Debian/Ubuntu machine, installing the cross linkers it needs:
#   aarch64-unknown-linux-gnu      64-bit Raspberry Pi OS (Pi 3, 4, 5, Zero 2): NEON kernels, and
#                                  the dot-product ones on a Pi 5 (chosen at run time)
#   armv7-unknown-linux-gnueabihf  32-bit Raspberry Pi OS (Pi 2, 3, Zero 2): the scalar kernels,
#                                  compiled for the Pi 2's Cortex-A7 (NEON and VFPv4; the Pi 3's
#                                  A53 runs its code) so the compiler may vectorise them; Rust's
#                                  32-bit NEON intrinsics are not stable, so there are no
#                                  hand-written arm32 kernels
# Usage: scripts/build-pi.sh [TARGET ...]   (default: both). Honours CARGO_TARGET_DIR and
# PI_PROFILE (default `pi`: release, stripped; CI's tests use `pi-test`, the same at opt-level 1,
# which builds faster and computes the same bytes: the kernels are integer arithmetic).
# Binaries: $CARGO_TARGET_DIR/<target>/$PI_PROFILE/pocketgan.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
target_dir=${CARGO_TARGET_DIR:-target}
profile=${PI_PROFILE:-pi}

source scripts/apt-need.sh
built=()
for t in "${targets[@]}"; do
  case $t in
    aarch64-unknown-linux-gnu)
      apt_need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu \
        /usr/aarch64-linux-gnu/lib/crt1.o libc6-dev-arm64-cross
      export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
      ;;
    armv7-unknown-linux-gnueabihf)
      apt_need arm-linux-gnueabihf-gcc gcc-arm-linux-gnueabihf \
        /usr/arm-linux-gnueabihf/lib/crt1.o libc6-dev-armhf-cross
      export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
      export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUSTFLAGS="-C target-cpu=cortex-a7"
      ;;
    *)
      echo "build-pi: unknown target $t (aarch64-unknown-linux-gnu, armv7-unknown-linux-gnueabihf)" >&2
      exit 2
      ;;
  esac
  rustup target list --installed | grep -qx "$t" || rustup target add "$t"
  start=$SECONDS
  cargo build --profile "$profile" -p pocketgan-runtime --bin pocketgan --target "$t"
  bin="$target_dir/$t/$profile/pocketgan"
  built+=("$(printf '%-32s %s (%s bytes, built in %ss)' "$t" "$bin" "$(stat -c %s "$bin")" $((SECONDS - start)))")
done
printf 'build-pi: %s\n' "${built[@]}"

#!/usr/bin/env bash
# Firmware builds, QEMU runs and budgets. Usage:
#   scripts/firmware.sh build              every board binary, release
#   scripts/firmware.sh qemu BOARD         run the demo under QEMU: an386 | an505 | microbit
#   scripts/firmware.sh budget             flash/RAM of each binary and instructions per image
#   scripts/firmware.sh nopanic            prove per board that inference and validation cannot panic
#   scripts/firmware.sh run rp2040|stm32f4 flash a real board with probe-rs and run
#   scripts/firmware.sh simulate [DIR]     render the screens to PNG on the host
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}

# board -> "target features bin"
declare -A BOARDS=(
  [an386]="thumbv7em-none-eabihf qemu,dsp,graph-ops,emoji qemu"
  [an505]="thumbv8m.main-none-eabihf qemu,dsp,graph-ops,emoji qemu"
  [microbit]="thumbv6m-none-eabi qemu,tiny-model,graph-ops qemu"
  [rp2040]="thumbv6m-none-eabi rp2040 rp2040"
  [stm32f4]="thumbv7em-none-eabihf stm32f4 stm32f4"
)
declare -A MACHINE=([an386]=mps2-an386 [an505]=mps2-an505 [microbit]=microbit)
declare -A CHIP=([rp2040]=RP2040 [stm32f4]=STM32F411CEUx)
declare -A LIMITS=([an386]="4M/4M" [an505]="4M/4M" [microbit]="256K/16K" [rp2040]="2M/256K" [stm32f4]="512K/128K")
ORDER=(an386 an505 microbit rp2040 stm32f4)

# Boards that share a target and a binary name would overwrite each other's ELF: each board builds
# into its own directory under the target dir.
build_one() {
  local board=$1 target features bin
  read -r target features bin <<<"${BOARDS[$board]}"
  rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2
  cargo build --release -q -p pocketgan-firmware --bin "$bin" --features "$features" \
    --target "$target" --target-dir "$target_dir/firmware-$board" >&2
  echo "$target_dir/firmware-$board/$target/release/$bin"
}

qemu_run() {
  local board=$1 elf
  elf=$(build_one "$board")
  command -v qemu-system-arm >/dev/null || { echo "qemu-system-arm is missing: apt-get install qemu-system-arm" >&2; exit 1; }
  timeout 600 qemu-system-arm -machine "${MACHINE[$board]}" -nographic -monitor none \
    -semihosting-config enable=on,target=native -icount shift=0 -kernel "$elf"
}

case "${1:-}" in
  build)
    for b in "${ORDER[@]}"; do echo "$b: $(build_one "$b")"; done ;;
  qemu)
    [ -n "${2:-}" ] && [ -n "${MACHINE[$2]:-}" ] || { echo "usage: $0 qemu an386|an505|microbit" >&2; exit 2; }
    qemu_run "$2" ;;
  budget)
    size=$(command -v arm-none-eabi-size || true)
    [ -n "$size" ] || { echo "arm-none-eabi-size is missing: apt-get install binutils-arm-none-eabi" >&2; exit 1; }
    # RAM B: statics (.data + .bss); stack B: deepest stack under QEMU (painted and scanned).
    # insns/image and MAC/insn: the digits model (the first `cost` line); insns/emoji: the colour
    # model on the boards that draw it.
    printf '%-9s %-26s %9s %9s %9s %11s %12s %9s %12s\n' board target "flash B" "RAM B" "stack B" "flash/RAM" "insns/image" "MAC/insn" "insns/emoji"
    for b in "${ORDER[@]}"; do
      read -r target _ _ <<<"${BOARDS[$b]}"
      elf=$(build_one "$b")
      # flash = .text + .rodata + .data (its initial values), RAM = .data + .bss + stack reserve
      read -r text data bss <<<"$($size -A "$elf" | awk '$1==".vector_table"||$1==".text"||$1==".rodata"{t+=$2} $1==".data"{d+=$2} $1==".bss"||$1==".uninit"{b+=$2} END{print t+0, d+0, b+0}')"
      insns=- mpi=- stack=- emoji=-
      if [ -n "${MACHINE[$b]:-}" ]; then
        out=$(qemu_run "$b")
        insns=$(awk '/^cost /{print $2; exit}' <<<"$out"); mpi=$(awk '/^cost /{print $6; exit}' <<<"$out")
        emoji=$(awk '/^colour /{c=1} c&&/^cost /{print $2; exit}' <<<"$out"); emoji=${emoji:--}
        stack=$(awk '/^stack /{print $2}' <<<"$out")
      fi
      printf '%-9s %-26s %9d %9d %9s %11s %12s %9s %12s\n' "$b" "$target" $((text + data)) $((data + bss)) "$stack" "${LIMITS[$b]}" "$insns" "$mpi" "$emoji"
    done ;;
  nopanic)
    # The proof is tests/tests/no_panic.rs (it builds the boards through this script's `build`).
    cargo test --release -q -p pocketgan-tests --test no_panic -- --nocapture --exact \
      no_panic_is_reachable_in_inference_or_validation_on_any_board ;;
  run)
    [ -n "${2:-}" ] && [ -n "${CHIP[$2]:-}" ] || { echo "usage: $0 run rp2040|stm32f4" >&2; exit 2; }
    elf=$(build_one "$2")
    exec probe-rs run --chip "${CHIP[$2]}" "$elf" ;;
  simulate)
    cargo run --release -q -p pocketgan-firmware --features simulator --bin simulator -- "${2:-firmware/screens}" ;;
  *)
    sed -n '2,9p' "$0"; exit 2 ;;
esac

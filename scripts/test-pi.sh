#!/usr/bin/env bash
# The `pocketgan` command as a Raspberry Pi runs it: cross-built by scripts/build-pi.sh, run under
# qemu-user as a Pi 4 (qemu-aarch64 -cpu cortex-a72: NEON), a Pi 5 (cortex-a76: NEON + dot
# product) and a Pi 2/3 on 32-bit Raspberry Pi OS (qemu-arm -cpu cortex-a7), against the x86 build:
#   - `generate` on the firmware's two models and on a freshly quantized default DCGAN writes the
#     same PNG and .npy bytes as on x86; `translate` (the committed U-Net) the same picture;
#   - three threads write the bytes of one;
#   - `inspect` prints the same text; bad inputs fail with the same exit code and message;
#   - the tract engine runs too (float results are compared within PNG rounding, not bytes).
# Binaries of profile $PI_PROFILE (default pi-test, see scripts/build-pi.sh).
# With PI_COUNT=1 it also counts guest instructions per image on each path (a QEMU plugin,
# scripts/qemu-insn/insn_count.c): the Pi cost table of README.
# Honours CARGO_TARGET_DIR. Needs Debian/Ubuntu packages, installed if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
unset RUST_BACKTRACE # messages are compared, not backtraces

target_dir=${CARGO_TARGET_DIR:-target}
export PI_PROFILE=${PI_PROFILE:-pi-test}
source scripts/apt-need.sh
apt_need qemu-aarch64 qemu-user qemu-arm qemu-user gcc gcc cmp diffutils
scripts/build-pi.sh
# The x86 reference binaries, built with the features `cargo test --workspace` resolves: a no-op
# after the test command's own run, where `cargo build -p` would resolve other features and
# compile Burn a second time.
cargo test --release --workspace --no-run --quiet 2>&1 | grep -v '^ *Executable' || true
x86="$target_dir/release/pocketgan"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# The models: the firmware's two, and the default DCGAN exported by the trainer (two steps: the
# architecture and the path are what matter here) and quantized now, on x86.
"$target_dir/release/pocketgan-train" train --out "$work/default" --steps 2 --seed 4 --threads 1 --quiet >/dev/null
fresh_onnx="$work/default/generator.onnx"
"$x86" quantize "$fresh_onnx" --calib 64 --out "$work/fresh.pgq" >/dev/null
# A text model: PyTorch's export of a StackGAN-shaped network, quantized on x86.
"$x86" quantize runtime/tests/fixtures/stackgan/stackgan_repeat_op17_dyn.onnx --calib 64 --out "$work/text.pgq" >/dev/null
head -c 3000 firmware/models/digits.pgq >"$work/truncated.pgq"
printf 'not a model' >"$work/garbage.onnx"

# Each case: a name, the exit code expected (on x86 and on every Pi), and the arguments of one
# command that writes into OUT/.
cases=(
  "digits|0|generate firmware/models/digits.pgq --n 8 --seed 3 --class 4 --out OUT/g.png --save-npy OUT/g.npy"
  "digits-tiny|0|generate firmware/models/digits-tiny.pgq --n 8 --seed 5 --out OUT/g.png --save-npy OUT/g.npy"
  "threads|0|generate firmware/models/digits.pgq --n 8 --seed 3 --class 4 --threads 3 --out OUT/g.png --save-npy OUT/g.npy"
  "fresh|0|generate $work/fresh.pgq --n 8 --seed 1 --out OUT/g.png --save-npy OUT/g.npy"
  "interpolate|0|generate $work/fresh.pgq --interpolate 5 --seed 2 --out OUT/g.png"
  "translate|0|translate runtime/tests/fixtures/translate/unet.pgq runtime/tests/fixtures/translate/picture.ppm --out OUT/t.png"
  "inspect|0|inspect firmware/models/digits.pgq"
  "truncated|1|generate $work/truncated.pgq --out OUT/g.png"
  "garbage|1|quantize $work/garbage.onnx --out OUT/q.pgq"
  "missing|1|generate $work/no-such.pgq --out OUT/g.png"
  "zero|1|generate firmware/models/digits.pgq --n 0 --class 1 --out OUT/g.png"
  "class|1|generate firmware/models/digits.pgq --class 10 --out OUT/g.png"
  "text|0|generate $work/text.pgq --text red,apple --n 4 --seed 2 --out OUT/g.png --save-npy OUT/g.npy"
  "text-unknown|1|generate $work/text.pgq --text xyzzy --out OUT/g.png"
)

# run BINARY_CMD DIR: every case into DIR/<case>/ (stdout, stderr, exit code, files).
run_all() {
  local dir=$1
  shift
  for c in "${cases[@]}"; do
    local name=${c%%|*} rest=${c#*|} rc=0
    local args=${rest#*|}
    mkdir -p "$dir/$name"
    # shellcheck disable=SC2086
    "$@" ${args//OUT/$dir/$name} >"$dir/$name/stdout" 2>"$dir/$name/stderr" || rc=$?
    echo "$rc" >"$dir/$name/rc"
    # Paths and the kernel family's name differ between runs; the messages must not otherwise.
    # `inspect`'s arena line counts the GEMM tiles, whose size each platform's kernels choose.
    sed -i -e "s|$dir|OUT|g" -e 's/int8 [a-z0-9-]*/int8 KERNELS/' -e '/^arena: /d' \
      "$dir/$name/stdout" "$dir/$name/stderr"
  done
}

run_all "$work/x86" "$x86"
# The reference itself must do what each case expects, or "identical" would prove nothing.
for c in "${cases[@]}"; do
  name=${c%%|*} rest=${c#*|}
  expected=${rest%%|*}
  [ "$(cat "$work/x86/$name/rc")" = "$expected" ] ||
    fail "x86: $name exited $(cat "$work/x86/$name/rc"), expected $expected: $(head -n 3 "$work/x86/$name/stderr")"
  if [ "$expected" = 0 ]; then
    [ -s "$work/x86/$name/stdout" ] || fail "x86: $name printed nothing"
  else
    grep -q '^Error: ' "$work/x86/$name/stderr" || fail "x86: $name gave no error message"
  fi
done
if grep -l 'panicked' "$work"/x86/*/stderr; then fail "x86: a panic"; fi
# Three threads write the bytes of one (and so, by the comparisons below, on every Pi too).
cmp -s "$work/x86/digits/g.npy" "$work/x86/threads/g.npy" || fail "x86: --threads 3 changed the output"

pi_runs=(
  "aarch64 cortex-a72 (Pi 4)|qemu-aarch64 -cpu cortex-a72 -L /usr/aarch64-linux-gnu $target_dir/aarch64-unknown-linux-gnu/$PI_PROFILE/pocketgan"
  "aarch64 cortex-a76 (Pi 5)|qemu-aarch64 -cpu cortex-a76 -L /usr/aarch64-linux-gnu $target_dir/aarch64-unknown-linux-gnu/$PI_PROFILE/pocketgan"
  "armv7 cortex-a7 (Pi 2/3, 32-bit OS)|qemu-arm -cpu cortex-a7 -L /usr/arm-linux-gnueabihf $target_dir/armv7-unknown-linux-gnueabihf/$PI_PROFILE/pocketgan"
)
summary=()
for p in "${pi_runs[@]}"; do
  label=${p%%|*}
  read -r -a cmd <<<"${p#*|}"
  dir="$work/$(echo "$label" | tr -c 'a-z0-9\n' _)"
  t0=$SECONDS
  run_all "$dir" "${cmd[@]}"
  same=0
  for c in "${cases[@]}"; do
    name=${c%%|*}
    if diff -r "$work/x86/$name" "$dir/$name" >/dev/null; then
      same=$((same + 1))
    else
      fail "$label: $name differs from x86:"
      diff -r "$work/x86/$name" "$dir/$name" | head -n 8 || true
    fi
  done
  # tract (f32) runs as well; its float arithmetic may differ from x86's in the last bits.
  rc=0
  "${cmd[@]}" generate "$fresh_onnx" --engine tract --n 4 --seed 1 \
    --out "$dir/tract.png" >/dev/null 2>"$dir/tract.err" || rc=$?
  [ "$rc" -eq 0 ] || fail "$label: tract engine exit $rc: $(head -n 3 "$dir/tract.err")"
  summary+=("$label: $same of ${#cases[@]} cases identical to x86, tract exit $rc, $((SECONDS - t0))s")
done

# Instructions per image (guest instructions executed, by the difference between a batch of 9 and
# a batch of 1, so start-up and file I/O cancel), int8 against tract on the same model.
if [ "${PI_COUNT:-0}" = 1 ]; then
  plugin="$work/libinsn_count.so"
  gcc -O2 -shared -fPIC -fvisibility=hidden -Wl,--unresolved-symbols=ignore-all \
    -o "$plugin" scripts/qemu-insn/insn_count.c
  onnx=${PI_COUNT_ONNX:-$fresh_onnx}
  pgq="$work/count.pgq"
  "$x86" quantize "$onnx" --out "$pgq" >/dev/null
  macs=$("$x86" inspect "$pgq" | sed -n 's/^total: .* parameters, \([0-9]*\) multiply-adds.*/\1/p')
  count() { # label, then the command
    local log="$work/insn.log"
    "${@:2}" >/dev/null 2>&1
    sed -n 's/^insns: //p' "$log" | tail -n 1
  }
  printf '%-36s %-8s %16s %14s\n' "Pi" "engine" "insns/image" "MACs/insn"
  for p in "${pi_runs[@]}"; do
    label=${p%%|*}
    read -r -a cmd <<<"${p#*|}"
    q=("${cmd[0]}" -plugin "$plugin" -d plugin -D "$work/insn.log" "${cmd[@]:1}")
    for engine in int8 tract; do
      model=$pgq
      [ "$engine" = tract ] && model=$onnx
      one=$(count "$label" "${q[@]}" generate "$model" --engine "$engine" --n 1 --seed 1 --out "$work/c.png")
      nine=$(count "$label" "${q[@]}" generate "$model" --engine "$engine" --n 9 --seed 1 --out "$work/c.png")
      per=$(((nine - one) / 8))
      printf '%-36s %-8s %16d %14s\n' "$label" "$engine" "$per" \
        "$(awk -v m="$macs" -v i="$per" 'BEGIN {printf "%.2f", m / i}')"
    done
  done
  echo "model: $onnx ($macs int8 multiply-adds per image)"
fi

printf 'test-pi: %s\n' "${summary[@]}"
[ "$failures" -eq 0 ] || { echo "test-pi: $failures failures"; exit 1; }
echo "test-pi: ok"

#!/usr/bin/env bash
# Runs the fuzz targets (fuzz/) for SECONDS each, one after another, on seeded corpora kept in
# fuzz/corpus/ (not committed), and prints one line per target: executions, rate, coverage
# edges, corpus size and crashes. README's fuzzing table comes from this script.
#
#   scripts/fuzz.sh SECONDS [TARGET...]       (default: npy idx checkpoint series_csv onnx pgq)
#
# FUZZ_SANITIZER=address|none (default none: the parsers are safe Rust, and without ASan they
# run several times as many inputs; pgq's unsafe kernels are worth an ASan run of their own).
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`); the first build of
# the trainer's targets (idx, checkpoint, series_csv) compiles Burn and takes the better part of an hour.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(npy idx checkpoint series_csv onnx pgq)
sanitizer=${FUZZ_SANITIZER:-none}
corpus=fuzz/corpus
logs=fuzz/logs
mkdir -p "$logs"

# Seeds: real files of each format, made here.
seed() {
  local t=$1 dir=$corpus/$1
  mkdir -p "$dir"
  [ -z "$(ls -A "$dir")" ] || return 0
  case $t in
    npy)
      python3 -c "
import numpy as np
np.save('$dir/z.npy', np.zeros((2, 16), dtype=np.float32))
np.save('$dir/image.npy', np.ones((1, 3, 4, 4), dtype=np.float32))" ;;
    idx)
      # The built-in digits' first bytes (an IDX header and a few images), and the labels.
      python3 -c "
import gzip
for name in ('images-idx3', 'labels-idx1'):
    raw = gzip.open('data/digits-%s-ubyte.gz' % name).read()
    open('$dir/%s' % name, 'wb').write(raw[:16 + 3 * 784] if 'images' in name else raw[:40])" ;;
    checkpoint)
      local run
      run=$(mktemp -d)
      local bin=${CARGO_TARGET_DIR:-target}/release/pocketgan-train
      [ -x "$bin" ] || cargo build --release -q -p pocketgan-trainer --bin pocketgan-train
      "$bin" train --data toy:ring8 --model mlp --width 4 --steps 2 --quiet --out "$run/run" > /dev/null
      cp "$run"/run/checkpoints/*.ckpt "$dir/"
      rm -rf "$run" ;;
    series_csv)
      # A header and a few rows of the shape users write, and one too short.
      python3 -c "
rows = ['%d,%f,%e' % (i, 0.5 + i / 7, -i * 1e3) for i in range(30)]
open('$dir/ok.csv', 'w').write('t,a,b\\n' + '\\n'.join(rows) + '\\n')
open('$dir/short.csv', 'w').write('1,2\\n3,4\\n')" ;;
    onnx)
      python3 scripts/fuzz-seeds.py "$dir" > /dev/null 2>&1 ;;
    pgq)
      cp firmware/models/*.pgq "$dir/" ;;
  esac
}

features=(--no-default-features)
for t in "${targets[@]}"; do
  case $t in idx | checkpoint | series_csv) features=() ;; esac
done
(cd fuzz && cargo +nightly fuzz build -O -s "$sanitizer" "${features[@]}" >&2)

printf '%-11s %12s %9s %6s %8s %8s\n' target executions "exec/s" edges corpus crashes
for t in "${targets[@]}"; do
  seed "$t"
  log=$logs/$t.log
  set +e
  (cd fuzz && cargo +nightly fuzz run -O -s "$sanitizer" "${features[@]}" "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=4096 > "../$log" 2>&1)
  rc=$?
  set -e
  runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
  rate=$(grep -oE '^stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
  edges=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
  files=$(ls "$corpus/$t" | wc -l)
  crashes=$([ "$rc" -eq 0 ] && echo 0 || echo "see $log")
  printf '%-11s %12s %9s %6s %8s %8s\n' "$t" "$runs" "$rate" "$edges" "$files" "$crashes"
done

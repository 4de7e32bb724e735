#!/usr/bin/env bash
# Trains one DCGAN per loss family on a dataset and prints the eval table for the docs:
#   [TRAIN_FLAGS="--lr 2e-4 ..."] scripts/quality-table.sh [DATA] [STEPS] [LOSSES...]
#   (default: digits 1200 nonsaturating lsgan wgan hinge; TRAIN_FLAGS are added to each run)
# Runs go to runs/quality-DATA-LOSS (kept: rerunning skips finished runs). toy:ring8 / toy:grid25
# train the MLP GAN instead. Each run is judged twice: its generator's moving average (--ema, what
# it exports) and its raw generator (what tables before 2026-12-06 report).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-digits}; steps=${2:-1200}; shift $(( $# > 2 ? 2 : $# ))
losses=("$@"); [ ${#losses[@]} -gt 0 ] || losses=(nonsaturating lsgan wgan hinge)
model=dcgan; [[ $data == toy:* ]] && model=mlp
cargo build --release -q -p pocketgan-trainer
bin=${CARGO_TARGET_DIR:-target}/release/pocketgan-train
for loss in "${losses[@]}"; do
  run="runs/quality-${data//:/-}-$loss"
  # shellcheck disable=SC2086 # TRAIN_FLAGS holds several flags
  [ -f "$run/generator.onnx" ] || "$bin" train --data "$data" --model "$model" --loss "$loss" \
    --steps "$steps" --seed 0 ${TRAIN_FLAGS:-} --out "$run" --quiet >/dev/null
  echo "== $loss ($run), the generator's moving average"
  "$bin" eval "$run" --n 10000
  echo "== $loss ($run), the raw generator"
  "$bin" eval "$run" --n 10000 --raw
done

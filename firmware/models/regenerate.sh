#!/usr/bin/env bash
# Regenerates the firmware's demo models with our own tools: train a small DCGAN (on the built-in
# digits, or on emoji), export it to ONNX, quantize it to int8. Deterministic for a given seed and machine.
#   digits.pgq       cGAN, width 32, latent 48 + a 16-value class embedding (STM32F411, RP2040, MPS2
#                    boards: the demo cycles through the digits 0-9)
#   digits-tiny.pgq  width 16, latent 32, unconditional (micro:bit: 16 KB RAM)
#   emoji.pgq        32 px colour DCGAN on Google's emoji, width 16, latent 32 (ST7789: MPS2 boards,
#                    STM32F411)
#   sines.pgq        TimeGAN on sines, the README's run (`pocketgan-train train --family timegan
#                    --data sines`, about an hour on two cores), quantized: not redone here;
#                    `pocketgan quantize runs/timegan-sines/generator.onnx --out firmware/models/sines.pgq`
set -euo pipefail
cd "$(dirname "$0")/../.."
train() { # name data width latent steps [train flags...]
  cargo run --release -q -p pocketgan-trainer -- train --data "$2" --model dcgan \
    --width "$3" --latent "$4" --steps "$5" --seed 0 --out "runs/firmware-$1" --quiet "${@:6}"
  cargo run --release -q -p pocketgan-runtime -- quantize "runs/firmware-$1/generator.onnx" \
    --calib 512 --seed 0 --out "firmware/models/$1.pgq"
}
train digits digits 32 48 1500 --cond cgan --embed 16
train digits-tiny digits 16 32 2000
# Needs `scripts/fetch-data.sh emoji` first.
train emoji emoji 16 32 6000 --size 32

#!/usr/bin/env bash
# Regenerates the firmware's demo models with our own tools: train a small DCGAN on the built-in
# digits, export it to ONNX, quantize it to int8. Deterministic for a given seed and machine.
#   digits.pgq       cGAN, width 32, latent 48 + a 16-value class embedding (STM32F411, RP2040, MPS2
#                    boards: the demo cycles through the digits 0-9)
#   digits-tiny.pgq  width 16, latent 32, unconditional (micro:bit: 16 KB RAM)
#   sines.pgq        TimeGAN on sines, the README's run (`pocketgan-train train --family timegan
#                    --data sines`, about an hour on two cores), quantized: not redone here;
#                    `pocketgan quantize runs/timegan-sines/generator.onnx --out firmware/models/sines.pgq`
set -euo pipefail
cd "$(dirname "$0")/../.."
train() { # name width latent steps [train flags...]
  cargo run --release -q -p pocketgan-trainer -- train --data digits --model dcgan \
    --width "$2" --latent "$3" --steps "$4" --seed 0 --out "runs/firmware-$1" --quiet "${@:5}"
  cargo run --release -q -p pocketgan-runtime -- quantize "runs/firmware-$1/generator.onnx" \
    --calib 512 --seed 0 --out "firmware/models/$1.pgq"
}
train digits 32 48 1500 --cond cgan --embed 16
train digits-tiny 16 32 2000

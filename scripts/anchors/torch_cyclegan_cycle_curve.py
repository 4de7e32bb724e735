# How fast the authors' CycleGAN generators learn the cycle, beside pocketgan's: both generators
# trained on cycle + identity only (no GAN term, so the curve is deterministic in expectation and
# free of the game's noise) on two folders of images, batch 1, Adam 2e-4 / (0.5, 0.999), weights
# from N(0, 0.02) as the authors' init_weights('normal'). Prints the mean cycle L1 (A -> B -> A) of
# each window of 500 steps.
#
# Usage: python3 scripts/anchors/torch_cyclegan_cycle_curve.py DIR_A DIR_B [SIZE] [WIDTH] [STEPS]
#        (defaults 32, 8, 4000; needs torch and pillow)
# pocketgan's same curve:
#   pocketgan-train train --family cyclegan --data folder:DIR_A,DIR_B --size 32 --width 8 \
#     --steps 4000 --gan-weight 0 --out runs/cycle-curve --threads 1
#   awk -F, 'NR>1{s+=$11;n++} NR>1&&(NR-1)%500==0{print $1, s/n/10; s=n=0}' runs/cycle-curve/metrics.csv
# (column 11 is cycle_a, which metrics.csv records weighted by lambda = 10). pocketgan's learning
# rate decays linearly over the second half of the run; so does this script's.
import os, random, sys

import torch
import torch.nn as nn
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cyclegan_nets import resnet  # noqa: E402

dir_a, dir_b = sys.argv[1], sys.argv[2]
size = int(sys.argv[3]) if len(sys.argv) > 3 else 32
ngf = int(sys.argv[4]) if len(sys.argv) > 4 else 8
steps = int(sys.argv[5]) if len(sys.argv) > 5 else 4000
torch.set_num_threads(1)
torch.manual_seed(3)
random.seed(3)


def load(folder):
    """Every image of a folder, composited on white, resized, in [-1, 1] as [N, 3, S, S]."""
    out = []
    for name in sorted(os.listdir(folder)):
        im = Image.open(os.path.join(folder, name)).convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        white.alpha_composite(im)
        rgb = white.convert("RGB").resize((size, size), Image.BILINEAR)
        t = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).float()
        out.append(t.view(size, size, 3).permute(2, 0, 1) / 127.5 - 1)
    return torch.stack(out)


def init(m):
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        nn.init.zeros_(m.bias)


A, B = load(dir_a), load(dir_b)
blocks = 6 if size >= 64 else 3
G_AB, G_BA = resnet(ngf, blocks), resnet(ngf, blocks)
G_AB.apply(init)
G_BA.apply(init)
opt = torch.optim.Adam(list(G_AB.parameters()) + list(G_BA.parameters()), 2e-4, betas=(0.5, 0.999))
decay = torch.optim.lr_scheduler.LambdaLR(
    opt, lambda s: 1.0 if s < steps // 2 else max(0.0, (steps - s) / (steps - steps // 2)))
l1 = nn.L1Loss()
window = []
for step in range(1, steps + 1):
    a = A[random.randrange(len(A))][None]
    b = B[random.randrange(len(B))][None]
    fake_b, fake_a = G_AB(a), G_BA(b)
    cycle_a, cycle_b = l1(G_BA(fake_b), a), l1(G_AB(fake_a), b)
    loss = 10 * (cycle_a + cycle_b) + 5 * (l1(G_BA(a), a) + l1(G_AB(b), b))
    opt.zero_grad()
    loss.backward()
    opt.step()
    decay.step()
    window.append(cycle_a.item())
    if step % 500 == 0:
        print(step, f"{sum(window) / len(window):.4f}", flush=True)
        window = []

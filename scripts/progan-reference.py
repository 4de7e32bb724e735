#!/usr/bin/env python3
"""PyTorch's Progressive GAN forward passes and WGAN-GP penalty gradient, for the trainer's test
of ours (trainer/tests/progan.rs).

Builds G and D of scripts/anchors/progan_nets.py (3 channels, 16 px: stages 4, 8, 16; width 4:
16, 8, 4 maps; latent 8), gives every parameter (biases too) a seeded random value, and writes:
  - G's images for fixed latents at several (stage, alpha), fading and stable, in float64;
  - D's scores for fixed images at several (stage, alpha), in float64;
(At width 2, 2 maps at 16 px, pixel norm divides by near-zero norms at some positions and
PyTorch's own float32 run differs from float64 by 4e-4 of the largest value; at width 4, by 3e-6.)
  - for WGAN-GP's penalty lambda * mean_i (|grad_{x_i} sum_j D(x^)_j| - 1)^2 at interpolates x^,
    its value, the mean gradient norm and its gradient for every D parameter, from
    torch.autograd.grad(create_graph=True) (double backward, through the minibatch standard
    deviation), in float64 from the float32 values.
Weights are stored under our record paths and in our layouts (Linear weights [in, out]).

    python3 scripts/progan-reference.py [OUT]     (needs torch, numpy)
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "anchors"))
from progan_nets import Discriminator, Generator  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "trainer", "tests", "fixtures", "progan.json")
LAMBDA = 10.0
CHANNELS, STAGES, LATENT, WIDTH, N = 3, 3, 8, 4, 4
PROGRESS = [(0, 1.0), (1, 0.25), (1, 1.0), (2, 0.6)]
PENALTY_AT = [(2, 0.6), (1, 1.0)]


def f32_list(t):
    return [float(v) for v in t.detach().to(torch.float32).reshape(-1).numpy()]


def params_of(net, grads=None):
    out = []
    for i, (name, p, transpose) in enumerate(net.our_params()):
        v = p.t() if transpose else p
        entry = {"name": name, "shape": list(v.shape), "values": f32_list(v)}
        if grads is not None:
            g = grads[i].t() if transpose else grads[i]
            entry["grad"] = [float(x) for x in g.reshape(-1).detach().numpy()]
        out.append(entry)
    return out


def randomise(net):
    with torch.no_grad():
        for _, p, _ in net.our_params():
            p.copy_((torch.randn_like(p) * (0.2 if p.dim() == 1 else 1.0)).to(torch.float32))


def main():
    torch.manual_seed(0)
    g = Generator(CHANNELS, STAGES, LATENT, WIDTH)
    d = Discriminator(CHANNELS, STAGES, WIDTH)
    randomise(g)
    randomise(d)
    z = torch.randn(N, LATENT)
    generator = params_of(g)
    discriminator = params_of(d)
    g64, d64 = g.double(), d.double()
    images = []
    with torch.no_grad():
        for stage, alpha in PROGRESS:
            image = g64(z.double(), stage, alpha)
            images.append({"stage": stage, "alpha": alpha, "image": f32_list(image)})
    scores = []
    for stage, alpha in PROGRESS:
        side = 4 << stage
        x = torch.randn(N, CHANNELS, side, side)
        with torch.no_grad():
            s = d64(x.double(), stage, alpha)
        scores.append({"stage": stage, "alpha": alpha, "x": f32_list(x), "score": f32_list(s)})
    penalties = []
    for stage, alpha in PENALTY_AT:
        side = 4 << stage
        x_hat = torch.randn(N, CHANNELS, side, side).to(torch.float32)
        x = x_hat.double().requires_grad_(True)
        (grad,) = torch.autograd.grad(d64(x, stage, alpha).sum(), x, create_graph=True)
        norms = grad.flatten(1).norm(dim=1)
        penalty = LAMBDA * ((norms - 1) ** 2).mean()
        grads = torch.autograd.grad(penalty, [p for _, p, _ in d64.our_params()], allow_unused=True)
        grads = [torch.zeros_like(p) if gr is None else gr
                 for (_, p, _), gr in zip(d64.our_params(), grads)]
        print(f"penalty at ({stage}, {alpha}): |g| {norms.detach().numpy().round(3)}, "
              f"penalty {penalty.item():.4f}")
        penalties.append({"stage": stage, "alpha": alpha, "lambda": LAMBDA, "x_hat": f32_list(x_hat),
                          "penalty": penalty.item(), "mean_norm": norms.mean().item(),
                          "params": params_of(d64, grads)})
    fixture = {"generated_by": "scripts/progan-reference.py", "torch": torch.__version__,
               "channels": CHANNELS, "side": 4 << (STAGES - 1), "latent": LATENT, "width": WIDTH,
               "n": N, "z": f32_list(z), "generator": generator,
               "discriminator": discriminator, "images": images, "scores": scores,
               "penalties": penalties}
    with open(OUT, "w") as f:
        json.dump(fixture, f)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

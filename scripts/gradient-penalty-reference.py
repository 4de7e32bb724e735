#!/usr/bin/env python3
"""PyTorch's WGAN-GP gradient penalty and its exact gradient, for the trainer's test of ours.

Our trainer cannot differentiate a gradient (Burn 0.22's autodiff is first order) and reaches the
penalty's parameter gradient through D's directional derivative along the input gradient's
direction, pushed forward as a tangent (trainer/src/loss.rs, `gradient_penalty`). This script builds the critics that
`--loss wgan-gp` trains, in PyTorch, with seeded weights and inputs, and computes for every
parameter the gradient of

    lambda * mean_i (|grad_x D(x^_i)| - 1)^2

with `torch.autograd.grad(..., create_graph=True)` (true double backward), in float64 from the
float32 weights and inputs. It writes the weights (in our layout and under our parameter paths),
the interpolates x^, the penalty, the mean gradient norm and the gradients to
trainer/tests/fixtures/gradient_penalty.json; trainer/tests/gradient_penalty.rs loads them into
our critic and compares.

Critics (as `pocketgan-train train --loss wgan-gp` builds them: DCGAN's D without batch norm,
LeakyReLU 0.2; the MLP critic of the toy mixtures):
  dcgan28: Conv(1->8, k4 s2 p1) LReLU Conv(8->16, k4 s2 p1) LReLU Flatten Linear(784->1)
  mlp2:    Linear(2->16) LReLU Linear(16->16) LReLU Linear(16->1)

    python3 scripts/gradient-penalty-reference.py [OUT]     (needs torch, numpy)
"""

import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "trainer", "tests", "fixtures", "gradient_penalty.json")
LAMBDA = 10.0
SEED = 0


def dcgan_critic(width):
    # The weights are larger than DCGAN's N(0, 0.02) initialisation so that |g| is of order 1
    # and varies across samples, on both sides of 1, as in training.
    net = nn.Sequential(
        nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(2 * width * 7 * 7, 1))
    return net, [
        ("body.Dcgan.from_image.weight", net[0].weight, False),
        ("body.Dcgan.from_image.bias", net[0].bias, False),
        ("body.Dcgan.blocks.0.conv.weight", net[2].weight, False),
        ("body.Dcgan.blocks.0.conv.bias", net[2].bias, False),
        # Burn's Linear weight is [in, out], PyTorch's [out, in].
        ("score.weight", net[5].weight, True),
        ("score.bias", net[5].bias, False),
    ]


def mlp_critic(width):
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(2, width), nn.LeakyReLU(0.2),
        nn.Linear(width, width), nn.LeakyReLU(0.2), nn.Linear(width, 1))
    return net, [
        ("body.Mlp.layers.0.weight", net[1].weight, True),
        ("body.Mlp.layers.0.bias", net[1].bias, False),
        ("body.Mlp.layers.1.weight", net[3].weight, True),
        ("body.Mlp.layers.1.bias", net[3].bias, False),
        ("score.weight", net[5].weight, True),
        ("score.bias", net[5].bias, False),
    ]


def f32_list(t):
    """Values as float32 numbers written in full (each parses back to the same float32)."""
    return [float(v) for v in t.detach().to(torch.float32).reshape(-1).numpy()]


def case(name, net, params, x_hat, scale):
    with torch.no_grad():
        for _, p, _ in params:
            p.mul_(scale)
            p.copy_(p.to(torch.float32))
    net = net.double()
    x = x_hat.double().requires_grad_(True)
    (g,) = torch.autograd.grad(net(x).sum(), x, create_graph=True)
    norms = g.flatten(1).norm(dim=1)
    penalty = LAMBDA * ((norms - 1) ** 2).mean()
    # The last bias does not move the input gradient: its gradient is None, written as zeros.
    grads = torch.autograd.grad(penalty, [p for _, p, _ in params], allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for (_, p, _), g in zip(params, grads)]
    print(f"{name}: |g| per sample {np.round(norms.detach().numpy(), 3)}, "
          f"penalty {penalty.item():.4f}")
    out = []
    for (pname, p, transpose), grad in zip(params, grads):
        if transpose:
            p, grad = p.t(), grad.t()
        out.append({"name": pname, "shape": list(p.shape), "values": f32_list(p),
                    "grad": [float(v) for v in grad.reshape(-1).detach().numpy()]})
    return {"name": name, "lambda": LAMBDA, "x_hat_shape": list(x_hat.shape),
            "x_hat": f32_list(x_hat), "penalty": penalty.item(),
            "mean_norm": norms.mean().item(), "params": out}


def main():
    torch.manual_seed(SEED)
    # Digits-like interpolates: smooth blobs in [-1, 1] (real) mixed with noise (fake).
    n = 4
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    centres = torch.rand(n, 2) * 14 + 7
    real = torch.exp(-((xx - centres[:, 0, None, None]) ** 2
                       + (yy - centres[:, 1, None, None]) ** 2) / 20.0) * 2 - 1
    fake = torch.rand(n, 28, 28) * 2 - 1
    alpha = torch.rand(n, 1, 1)
    images = (alpha * real + (1 - alpha) * fake).unsqueeze(1).to(torch.float32)
    net, params = dcgan_critic(8)
    cases = [case("dcgan28", net, params, images, 2.2)]

    points = (torch.randn(16, 1, 1, 2) * 1.5).to(torch.float32)
    net, params = mlp_critic(16)
    cases.append(case("mlp2", net, params, points, 2.7))

    with open(OUT, "w") as f:
        json.dump({"generated_by": "scripts/gradient-penalty-reference.py",
                   "torch": torch.__version__, "critics": cases}, f)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

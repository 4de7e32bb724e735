#!/usr/bin/env python3
"""PyTorch's TimeGAN objectives and their gradients, for the trainer's test of ours.

Builds the five networks of `--family timegan` in PyTorch (nn.GRU + a per-step nn.Linear, sigmoid
except the discriminator; the supervisor has one layer fewer), seeded, and computes on one batch
of real series X and noise Z each objective of the authors' timegan.py, in float64 from the
float32 weights and inputs:

  embedding     10 sqrt(MSE(X, R(E(X))))                         -> embedder + recovery
  supervised    L_S = MSE(H[:, 1:], S(H)[:, :-1]), H = E(X)      -> generator + supervisor
  generator     BCE(D(S(G(Z))), 1) + BCE(D(G(Z)), 1) + 100 sqrt(L_S) + 100 moments(R(S(G(Z))), X)
                (H a constant)                                    -> generator + supervisor
  autoencoder   10 sqrt(MSE(X, R(E(X)))) + 0.1 L_S               -> embedder + recovery
  discriminator BCE(D(H), 1) + BCE(D(S(G(Z))), 0) + BCE(D(G(Z)), 0) (E, G, S constants)
                                                                  -> discriminator

and the gradient of each with respect to the networks it trains. It writes the weights in our
layout (Burn's [in, out] products: PyTorch's matrices transposed) under our parameter paths, X, Z,
the objectives and the gradients to trainer/tests/fixtures/timegan_losses.json;
trainer/tests/timegan_reference.rs loads them into our networks and compares.

    python3 scripts/timegan-reference.py [OUT]     (needs torch)
"""

import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "trainer", "tests", "fixtures", "timegan_losses.json")
B, T, FEAT, H, L = 4, 6, 3, 5, 2
torch.manual_seed(0)


class Net(nn.Module):
    def __init__(self, inp, out, layers, squash=True):
        super().__init__()
        self.rnn = nn.GRU(inp, H, layers, batch_first=True)
        self.head = nn.Linear(H, out)
        self.squash = squash

    def forward(self, x):
        y = self.head(self.rnn(x)[0])
        return torch.sigmoid(y) if self.squash else y

    def ours(self, prefix):
        """(our parameter path, tensor in our layout) for every parameter."""
        out = []
        for k in range(self.rnn.num_layers):
            for ours, theirs, transpose in [("w_ih", "weight_ih", True), ("w_hh", "weight_hh", True),
                                            ("b_ih", "bias_ih", False), ("b_hh", "bias_hh", False)]:
                p = getattr(self.rnn, f"{theirs}_l{k}")
                out.append((f"{prefix}.gru.layers.{k}.{ours}", p, transpose))
        out.append((f"{prefix}.head_w", self.head.weight, True))
        out.append((f"{prefix}.head_b", self.head.bias, False))
        return out


E, R = Net(FEAT, H, L), Net(H, FEAT, L)
G, S = Net(FEAT, H, L), Net(H, H, L - 1)
D = Net(H, 1, L, squash=False)
groups = {
    "autoencoder": [("embedder", E), ("recovery", R)],
    "generators": [("generator", G), ("supervisor", S)],
    "discriminator": [("", D)],
}
x32 = torch.rand(B, T, FEAT)
z32 = torch.rand(B, T, FEAT)
for _, nets in groups.items():
    for _, n in nets:
        n.double()
x, z = x32.double(), z32.double()
bce = F.binary_cross_entropy_with_logits


def supervised(h):
    return F.mse_loss(h[:, 1:], S(h)[:, :-1])


def moments(a, b):
    sd = lambda v: torch.sqrt(v.var(0, unbiased=False) + 1e-6)
    return (sd(a) - sd(b)).abs().mean() + (a.mean(0) - b.mean(0)).abs().mean()


def objectives():
    h_const = E(x).detach()
    e_hat = G(z)
    h_hat = S(e_hat)
    y_f, y_fe = D(h_hat), D(e_hat)
    adversarial = bce(y_f, torch.ones_like(y_f)) + bce(y_fe, torch.ones_like(y_fe))
    l_s_const = supervised(h_const)
    mom = moments(R(h_hat), x)
    h = E(x)
    e_t0 = F.mse_loss(R(h), x)
    y_r = D(h_const)
    y_f_c, y_fe_c = D(h_hat.detach()), D(e_hat.detach())
    return {
        "embedding": (10 * torch.sqrt(e_t0), "autoencoder", {"e_t0": e_t0}),
        "supervised": (supervised(h_const), "generators", {}),
        "generator": (adversarial + 100 * torch.sqrt(l_s_const) + 100 * mom, "generators",
                      {"adversarial": adversarial, "supervised": l_s_const, "moments": mom}),
        "autoencoder": (10 * torch.sqrt(e_t0) + 0.1 * supervised(h), "autoencoder", {"e_t0": e_t0}),
        "discriminator": (bce(y_r, torch.ones_like(y_r)) + bce(y_f_c, torch.zeros_like(y_f_c))
                          + bce(y_fe_c, torch.zeros_like(y_fe_c)), "discriminator", {}),
    }


def named(group):
    out = []
    for prefix, net in groups[group]:
        out += net.ours(prefix)
    return [(p.lstrip("."), t, tr) for p, t, tr in out]


def layout(t, transpose):
    t = t.detach()
    return (t.t() if transpose else t).contiguous()


cases = []
for name in ["embedding", "supervised", "generator", "autoencoder", "discriminator"]:
    for _, nets in groups.items():
        for _, n in nets:
            n.zero_grad()
    loss, group, terms = objectives()[name]
    loss.backward()
    grads = []
    for path, p, tr in named(group):
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        grads.append({"name": f"{group}.{path}", "grad": layout(g, tr).flatten().tolist()})
    cases.append({"objective": name, "value": loss.item(),
                  "terms": {k: v.item() for k, v in terms.items()}, "grads": grads})

params = []
for group in groups:
    for path, p, tr in named(group):
        v = layout(p, tr)
        params.append({"name": f"{group}.{path}", "shape": list(v.shape),
                       # The float32 values the float64 run started from.
                       "values": v.float().flatten().tolist()})
json.dump({"dims": {"batch": B, "length": T, "features": FEAT, "hidden": H, "layers": L},
           "torch": torch.__version__, "x": x32.flatten().tolist(), "z": z32.flatten().tolist(),
           "params": params, "objectives": cases}, open(OUT, "w"))
print(f"wrote {OUT}: {len(params)} parameter tensors, {len(cases)} objectives")

# PyTorch anchor for Progressive GAN training speed: the median time of one training iteration
# with the same networks, batch, losses and optimizers as pocketgan's `--family progan` at its
# bench point: 64 px RGB, halfway through fading in the 64 px stage (alpha 0.5).
# Usage: python3 scripts/anchors/torch_progan_step.py [THREADS] [WIDTH] [BATCH]
#        (defaults 2, 16, 16; needs torch)
# Networks: scripts/anchors/progan_nets.py (equalised learning rate, pixel norm, minibatch
# standard deviation). One iteration, as the authors' train.py and loss.py: D on reals (faded
# with their coarser copy) and fakes, WGAN-GP's penalty at interpolates through
# autograd.grad(create_graph=True), the drift term 1e-3 * D(x)^2; then G on -D(G(z)); Adam lr 1e-3,
# betas (0, 0.99), eps 1e-8; the moving average of G (0.999).
import copy
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from progan_nets import Discriminator, Generator, downsample, upsample  # noqa: E402
from timing import report  # noqa: E402

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
width = int(sys.argv[2]) if len(sys.argv) > 2 else 16
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 16
torch.set_num_threads(threads)
torch.manual_seed(0)
STAGES, LATENT, STAGE, ALPHA, LAMBDA, DRIFT = 5, 64, 4, 0.5, 10.0, 1e-3

G, D = Generator(3, STAGES, LATENT, width), Discriminator(3, STAGES, width)
G_ema = copy.deepcopy(G).requires_grad_(False)
opt = dict(lr=1e-3, betas=(0.0, 0.99), eps=1e-8)
oG, oD = torch.optim.Adam(G.parameters(), **opt), torch.optim.Adam(D.parameters(), **opt)
data = torch.rand(64, 3, 64, 64) * 2 - 1
position = [0]


def step():
    i = position[0] % 4
    position[0] += 1
    real = data[i * batch:(i + 1) * batch] if batch * 4 <= 64 else data[:batch]
    real = real * ALPHA + upsample(downsample(real)) * (1 - ALPHA)
    z = torch.randn(real.shape[0], LATENT)
    # D: maximise D(x) - D(G(z)), penalty at interpolates, drift.
    fake = G(z, STAGE, ALPHA).detach()
    d_real, d_fake = D(real, STAGE, ALPHA), D(fake, STAGE, ALPHA)
    mix = torch.rand(real.shape[0], 1, 1, 1)
    x_hat = (fake + mix * (real - fake)).requires_grad_(True)
    (g,) = torch.autograd.grad(D(x_hat, STAGE, ALPHA).sum(), x_hat, create_graph=True)
    penalty = LAMBDA * ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
    loss_d = d_fake.mean() - d_real.mean() + penalty + DRIFT * (d_real ** 2).mean()
    oD.zero_grad(set_to_none=True)
    loss_d.backward()
    oD.step()
    # G: maximise D(G(z)).
    for p in D.parameters():
        p.requires_grad_(False)
    loss_g = -D(G(z, STAGE, ALPHA), STAGE, ALPHA).mean()
    oG.zero_grad(set_to_none=True)
    loss_g.backward()
    oG.step()
    for p in D.parameters():
        p.requires_grad_(True)
    with torch.no_grad():
        for a, b in zip(G_ema.parameters(), G.parameters()):
            a.lerp_(b, 1 - 0.999)


report("progan", step, threads=threads, width=width, batch=batch, size=64, alpha=ALPHA)

# PyTorch anchor for `pocketgan-train bench --family timegan`: the median time of one TimeGAN
# joint-phase iteration with the same networks, batch and optimizers as pocketgan's reference setup.
# Usage: python3 scripts/anchors/torch_timegan_step.py [THREADS] [HIDDEN] [LAYERS] [BATCH]
#        (defaults 2, 24, 3, 128; needs torch)
# As the authors' timegan.py: five GRU networks (embedder, recovery, generator, supervisor with one
# layer fewer, discriminator), each nn.GRU then a Linear at every step (sigmoid except D). One
# joint iteration: twice (G and S on the adversarial, supervised and moment losses, then the
# autoencoder on reconstruction + 0.1 supervised), then D's loss checked and D stepped if > 0.15.
# Data: sines (5 features, length 24); Adam with TensorFlow's defaults.
import os, sys
import torch, torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import report  # noqa: E402

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
hidden = int(sys.argv[2]) if len(sys.argv) > 2 else 24
layers = int(sys.argv[3]) if len(sys.argv) > 3 else 3
batch = int(sys.argv[4]) if len(sys.argv) > 4 else 128
torch.set_num_threads(threads)
torch.manual_seed(0)
T, FEAT = 24, 5


class Net(nn.Module):
    def __init__(self, inp, out, layers, squash=True):
        super().__init__()
        self.rnn = nn.GRU(inp, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, out)
        self.squash = squash

    def forward(self, x):
        y = self.head(self.rnn(x)[0])
        return torch.sigmoid(y) if self.squash else y


E, R = Net(FEAT, hidden, layers), Net(hidden, FEAT, layers)
G, S = Net(FEAT, hidden, layers), Net(hidden, hidden, layers - 1)
D = Net(hidden, 1, layers, squash=False)
adam = lambda ps: torch.optim.Adam(ps, 1e-3, betas=(0.9, 0.999), eps=1e-8)
oE = adam(list(E.parameters()) + list(R.parameters()))
oG = adam(list(G.parameters()) + list(S.parameters()))
oD = adam(D.parameters())
f = torch.rand(10_000, 1, FEAT) * 0.1
p = torch.rand(10_000, 1, FEAT) * 0.1
data = (torch.sin(f * torch.arange(T).view(1, T, 1) + p) + 1) * 0.5
bce = F.binary_cross_entropy_with_logits


def batch_of():
    return data[torch.randint(0, len(data), (batch,))], torch.rand(batch, T, FEAT)


def supervised(h):
    return F.mse_loss(h[:, 1:], S(h)[:, :-1])


def moments(a, b):
    sd = lambda x: torch.sqrt(x.var(0, unbiased=False) + 1e-6)
    return (sd(a) - sd(b)).abs().mean() + (a.mean(0) - b.mean(0)).abs().mean()


def step():
    for _ in range(2):
        x, z = batch_of()
        # G and S: fool D on both embeddings, step like the data, match its moments.
        oG.zero_grad()
        h = E(x).detach()
        e_hat = G(z)
        h_hat = S(e_hat)
        y_fake, y_fake_e = D(h_hat), D(e_hat)
        u = bce(y_fake, torch.ones_like(y_fake)) + bce(y_fake_e, torch.ones_like(y_fake_e))
        g_loss = u + 100 * torch.sqrt(supervised(h)) + 100 * moments(R(h_hat), x)
        g_loss.backward()
        oG.step()
        # The autoencoder: reconstruct, and keep the embedding one that S can step.
        oE.zero_grad()
        h = E(x)
        e_loss = 10 * torch.sqrt(F.mse_loss(R(h), x)) + 0.1 * supervised(h)
        e_loss.backward()
        oE.step()
    # D on real embeddings against both kinds of fakes, while it is not winning.
    x, z = batch_of()
    oD.zero_grad()
    with torch.no_grad():
        h = E(x)
        e_hat = G(z)
        h_hat = S(e_hat)
    y_real, y_fake, y_fake_e = D(h), D(h_hat), D(e_hat)
    d_loss = (bce(y_real, torch.ones_like(y_real)) + bce(y_fake, torch.zeros_like(y_fake))
              + bce(y_fake_e, torch.zeros_like(y_fake_e)))
    if d_loss.item() > 0.15:
        d_loss.backward()
        oD.step()


report("timegan", step, threads=threads, hidden=hidden, layers=layers, batch=batch)

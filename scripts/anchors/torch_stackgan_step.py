# PyTorch anchor for `pocketgan-train bench --family stackgan`: the median time of one StackGAN
# Stage-II training iteration with the same networks, batch and optimizers as pocketgan's
# reference setup (64 px RGB stand-in images, 8-word stand-in captions, Stage-I frozen).
# Usage: python3 scripts/anchors/torch_stackgan_step.py [THREADS] [WIDTH] [BATCH] [VOCAB]
#        (defaults 2, 16, 64, 3001; needs torch)
# Networks as trainer/src/model/stackgan.rs (latent 64, 16 token slots, word embedding 64,
# condition 32): Stage-I G frozen in eval mode without gradients (mean of the slots' embeddings,
# conditioning augmentation relu(Linear) split into mu and log-variance, c = mu + exp(logvar/2) eps,
# Linear(z ++ c) to 8w x 4 x 4, BN + ReLU, three nearest-2x + 3x3 conv + BN + ReLU, 3x3 conv, tanh:
# 32 px); Stage-II G (its own augmentation on Stage-I's text embedding, 3x3 conv + ReLU, 4x4
# stride-2 conv + BN + ReLU to 16x16, joined with c replicated, 3x3 conv + BN + ReLU, two residual
# blocks, two nearest-2x up blocks, 3x3 conv, tanh: 64 px); Stage-II D (its own embedding table
# and Linear(64 -> 32) + LeakyReLU code, 4x4 stride-2 convs down to 4x4, an unconditional 4x4
# logit, and the matching logit on the features joined with the code). Every conv without bias
# but the logits'. One iteration, as family/stackgan.rs's Stage-II branch (the authors'
# compute_discriminator_loss / compute_generator_loss): D's trunk on the real batch once, judged
# with its text and with the next row's text, and on fake.detach() with the text, loss
# (real_m + real_u) / 2 + (fake_m + wrong_m + fake_u) / 3 with BCE-with-logits; then G through
# the updated D (its parameters frozen) on fake_m + fake_u + 2 KL. Adam lr 1e-3 (pocketgan's
# default for the family), betas (0.5, 0.999). VOCAB: the bench's 3,000 stand-in words and the
# reserved id 0.
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import report  # noqa: E402

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
width = int(sys.argv[2]) if len(sys.argv) > 2 else 16
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 64
V = int(sys.argv[4]) if len(sys.argv) > 4 else 3001
torch.set_num_threads(threads)
torch.manual_seed(0)
LATENT, SLOTS, EMBED, COND, KL_WEIGHT = 64, 16, 64, 32, 2.0


def conv(cin, cout, k, stride=1, bias=False):
    # As model/stackgan.rs's conv: stride 2 pads 1, a 4x4 stride-1 conv (a logit) is valid,
    # otherwise k // 2.
    pad = 1 if stride == 2 else (0 if k == 4 else k // 2)
    return nn.Conv2d(cin, cout, k, stride, pad, bias=bias)


def conv_norm(cin, cout, k, stride, act):
    return nn.Sequential(conv(cin, cout, k, stride), nn.BatchNorm2d(cout), *([act] if act else []))


def up_block(cin, cout):
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv(cin, cout, 3),
                         nn.BatchNorm2d(cout), nn.ReLU())


def replicate(code, side):
    return code[:, :, None, None].expand(-1, -1, side, side)


class Augmentation(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(EMBED, 2 * COND)

    def forward(self, text):
        x = F.relu(self.fc(text))
        return x[:, :COND], x[:, COND:]


def sample(mu, logvar, eps):
    return mu + torch.exp(logvar * 0.5) * eps


class Stage1(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.base = 8 * w
        self.text = nn.Embedding(V, EMBED)
        self.augment = Augmentation()
        self.project = nn.Linear(LATENT + COND, self.base * 16)
        self.project_norm = nn.BatchNorm2d(self.base)
        self.ups = nn.Sequential(*[up_block(self.base >> i, self.base >> (i + 1)) for i in range(3)])
        self.to_image = conv(self.base >> 3, 3, 3)

    def draw(self, z, c):
        x = self.project(torch.cat([z, c], 1)).view(z.shape[0], self.base, 4, 4)
        return torch.tanh(self.to_image(self.ups(F.relu(self.project_norm(x)))))


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block = nn.Sequential(conv_norm(c, c, 3, 1, nn.ReLU()), conv_norm(c, c, 3, 1, None))

    def forward(self, x):
        return F.relu(x + self.block(x))


class Stage2(nn.Module):
    def __init__(self, w):
        super().__init__()
        inner = 2 * w
        self.augment = Augmentation()
        self.head = nn.Sequential(conv(3, w, 3), nn.ReLU(), conv_norm(w, inner, 4, 2, nn.ReLU()))
        self.joint = conv_norm(inner + COND, inner, 3, 1, nn.ReLU())
        self.tail = nn.Sequential(Residual(inner), Residual(inner), up_block(inner, w),
                                  up_block(w, w), conv(w, 3, 3), nn.Tanh())

    def draw(self, image, c):
        x = self.head(image)
        return self.tail(self.joint(torch.cat([x, replicate(c, 16)], 1)))


class Discriminator(nn.Module):
    """Stage-II's: 64 px to 4x4 features, the matching and the unconditional logits."""

    def __init__(self, w):
        super().__init__()
        top = 8 * w
        self.text = nn.Embedding(V, EMBED)
        self.compress = nn.Linear(EMBED, COND)
        lrelu = nn.LeakyReLU(0.2)
        self.trunk = nn.Sequential(conv(3, w, 4, 2), lrelu,
                                   *[conv_norm(w << (i - 1), w << i, 4, 2, lrelu) for i in (1, 2, 3)])
        self.joint = conv_norm(top + COND, top, 3, 1, lrelu)
        self.logit = conv(top, 1, 4, bias=True)
        self.unconditional = conv(top, 1, 4, bias=True)

    def judge(self, x, tokens):
        code = F.leaky_relu(self.compress(self.text(tokens).mean(1)), 0.2)
        return self.logit(self.joint(torch.cat([x, replicate(code, 4)], 1))).view(-1, 1)

    def forward(self, images, tokens):
        x = self.trunk(images)
        return self.judge(x, tokens), self.unconditional(x).view(-1, 1)


def init(m):
    # The authors' weights_init, as model/dcgan.rs's WEIGHT_INIT and batch_norm.
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)


G1, G2, D = Stage1(width), Stage2(width), Discriminator(width)
for net in (G1, G2, D):
    net.apply(init)
G1.eval().requires_grad_(False)
# Parameter counts of the Rust networks (weights, biases, BN gamma and beta; Burn's num_params adds
# BN's running statistics, family/stackgan.rs's test accounts for them),
# by hand from model/stackgan.rs at width 16: Stage-I G 64 V + 300,496 (V 513: 333,328; V 3001:
# 492,560), Stage-II G 75,872, Stage-II D 64 V + 364,002 (V 513: 396,834; V 3001: 556,066).
if width == 16:
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert (count(G1), count(G2), count(D)) == (64 * V + 300496, 75872, 64 * V + 364002), \
        (count(G1), count(G2), count(D))
adam = dict(lr=1e-3, betas=(0.5, 0.999))
oG, oD = torch.optim.Adam(G2.parameters(), **adam), torch.optim.Adam(D.parameters(), **adam)
data = torch.rand(max(64, batch), 3, 64, 64) * 2 - 1


def real_(s):
    return F.binary_cross_entropy_with_logits(s, torch.ones_like(s))


def fake_(s):
    return F.binary_cross_entropy_with_logits(s, torch.zeros_like(s))


def step():
    real = data[torch.randperm(data.shape[0])[:batch]]
    tokens = torch.randint(1, V, (batch, SLOTS))
    # Real images with another sample's text: each row reads the next row's.
    wrong = torch.roll(tokens, -1, 0)
    z, eps, eps1 = torch.randn(batch, LATENT), torch.randn(batch, COND), torch.randn(batch, COND)
    # Frozen Stage-I (inference mode, c1 sampled): its 32 px image and the text's embedding.
    with torch.no_grad():
        text = G1.text(tokens).mean(1)
        small = G1.draw(z, sample(*G1.augment(text), eps1))
    mu, logvar = G2.augment(text)
    fake = G2.draw(small, sample(mu, logvar, eps))
    # (1) D: real with its text -> real; fake and real with the wrong text -> fake.
    features = D.trunk(real)
    real_m, real_u = D.judge(features, tokens), D.unconditional(features).view(-1, 1)
    fake_m, fake_u = D(fake.detach(), tokens)
    wrong_m = D.judge(features, wrong)
    loss_d = (real_(real_m) + real_(real_u)) / 2 + (fake_(fake_m) + fake_(wrong_m) + fake_(fake_u)) / 3
    oD.zero_grad(set_to_none=True)
    loss_d.backward()
    oD.step()
    # (2) Stage-II G: its fakes called real by the updated D, plus the conditioning's KL.
    for p in D.parameters():
        p.requires_grad_(False)
    m, u = D(fake, tokens)
    kl = torch.mean(-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()))
    loss_g = real_(m) + real_(u) + KL_WEIGHT * kl
    oG.zero_grad(set_to_none=True)
    loss_g.backward()
    oG.step()
    for p in D.parameters():
        p.requires_grad_(True)


report("stackgan", step, threads=threads, width=width, batch=batch, vocab=V, size=64)

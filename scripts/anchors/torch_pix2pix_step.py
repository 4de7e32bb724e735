# PyTorch anchor for `pocketgan-train bench --family pix2pix`: the median time of one Pix2Pix
# training iteration with the same networks, batch and optimizer as pocketgan's reference setup.
# Usage: python3 scripts/anchors/torch_pix2pix_step.py [THREADS] [SIZE] [WIDTH] [BATCH]
#        (defaults 2, 64, 32, 4; needs torch)
# Networks as in the authors' pytorch-CycleGAN-and-pix2pix (networks.py): UnetGenerator with
# num_downs = log2(SIZE), ngf = WIDTH, BatchNorm (convolutions without bias except the outermost
# up-convolution), dropout 0.5 in the 8*ngf blocks below the innermost; NLayerDiscriminator with
# n_layers 3, ndf = WIDTH, on (input, output) pairs. Loss: BCE-with-logits GAN + 100 x L1,
# D's loss halved; Adam 2e-4, betas (0.5, 0.999).
import math, os, sys
import torch, torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import report  # noqa: E402

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
size = int(sys.argv[2]) if len(sys.argv) > 2 else 64
ngf = int(sys.argv[3]) if len(sys.argv) > 3 else 32
batch = int(sys.argv[4]) if len(sys.argv) > 4 else 4
torch.set_num_threads(threads)
torch.manual_seed(0)


class Block(nn.Module):
    """One U-Net level: down, the inner levels, up, and the skip concatenation."""

    def __init__(self, outer, inner, inp=None, sub=None, outermost=False, innermost=False, dropout=False):
        super().__init__()
        inp = outer if inp is None else inp
        self.outermost = outermost
        down = [nn.Conv2d(inp, inner, 4, 2, 1, bias=False)]
        if outermost:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
            layers = down + [sub] + up
        elif innermost:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=False), nn.BatchNorm2d(outer)]
            layers = [nn.LeakyReLU(0.2, True)] + down + up
        else:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=False), nn.BatchNorm2d(outer)]
            layers = [nn.LeakyReLU(0.2, True)] + down + [nn.BatchNorm2d(inner), sub] + up
            if dropout:
                layers += [nn.Dropout(0.5)]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


def unet(num_downs, ngf, channels=3):
    b = Block(ngf * 8, ngf * 8, innermost=True)
    for _ in range(num_downs - 5):
        b = Block(ngf * 8, ngf * 8, sub=b, dropout=True)
    b = Block(ngf * 4, ngf * 8, sub=b)
    b = Block(ngf * 2, ngf * 4, sub=b)
    b = Block(ngf, ngf * 2, sub=b)
    return Block(channels, ngf, inp=channels, sub=b, outermost=True)


def patchgan(inp, ndf):
    return nn.Sequential(
        nn.Conv2d(inp, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 1, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 1))


G = unet(int(math.log2(size)), ngf)
D = patchgan(6, ngf)
oG = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
oD = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
bce, l1 = nn.BCEWithLogitsLoss(), nn.L1Loss()
a = torch.rand(batch, 3, size, size) * 2 - 1
b = torch.rand(batch, 3, size, size) * 2 - 1


def step():
    fake = G(a)
    # (1) D: maximise log D(A, B) + log(1 - D(A, G(A))), halved as the authors do.
    oD.zero_grad()
    real_logits, fake_logits = D(torch.cat([a, b], 1)), D(torch.cat([a, fake.detach()], 1))
    ld = 0.5 * (bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits)))
    ld.backward()
    oD.step()
    # (2) G: minimise -log D(A, G(A)) + 100 |G(A) - B|_1.
    oG.zero_grad()
    logits = D(torch.cat([a, fake], 1))
    lg = bce(logits, torch.ones_like(logits)) + 100 * l1(fake, b)
    lg.backward()
    oG.step()


report("pix2pix", step, size=size, ngf=ngf, batch=batch, threads=threads)

# PyTorch anchor for CycleGAN training speed: the median time of one full CycleGAN training
# iteration with the same networks, batch and optimizers as pocketgan's `--family cyclegan`.
# Usage: python3 scripts/anchors/torch_cyclegan_step.py [THREADS] [SIZE] [WIDTH] [BATCH]
#        (defaults 2, 64, 32, 1; needs torch)
# Networks as in the authors' pytorch-CycleGAN-and-pix2pix (networks.py, norm='instance'):
# ResnetGenerator with ngf = WIDTH (reflect pad 3 + 7x7 conv, two stride-2 3x3 convs, residual
# blocks of reflect pad + 3x3 conv + InstanceNorm, two stride-2 transposed convs with
# output_padding 1, reflect pad 3 + 7x7 conv, Tanh; InstanceNorm without affine parameters, every
# conv with a bias), 6 residual blocks from 64 px and 3 below (pocketgan's choice for 32 px);
# NLayerDiscriminator with n_layers 3, ndf = WIDTH, InstanceNorm. Losses (cycle_gan_model.py):
# LSGAN (MSE to 1 / 0), cycle L1 x 10 both ways, identity L1 x 5, D's loss halved, image pools of
# 50; one Adam over both Gs and one over both Ds, lr 2e-4, betas (0.5, 0.999).
import os, random, sys
import torch, torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cyclegan_nets import Pool, patchgan, resnet  # noqa: E402
from timing import report  # noqa: E402

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
size = int(sys.argv[2]) if len(sys.argv) > 2 else 64
ngf = int(sys.argv[3]) if len(sys.argv) > 3 else 32
batch = int(sys.argv[4]) if len(sys.argv) > 4 else 1
blocks = 6 if size >= 64 else 3
torch.set_num_threads(threads)
torch.manual_seed(0)
random.seed(0)


G_AB, G_BA = resnet(ngf, blocks), resnet(ngf, blocks)
D_A, D_B = patchgan(3, ngf), patchgan(3, ngf)
oG = torch.optim.Adam(list(G_AB.parameters()) + list(G_BA.parameters()), 2e-4, betas=(0.5, 0.999))
oD = torch.optim.Adam(list(D_A.parameters()) + list(D_B.parameters()), 2e-4, betas=(0.5, 0.999))
mse, l1 = nn.MSELoss(), nn.L1Loss()
pool_a, pool_b = Pool(), Pool()
a = torch.rand(batch, 3, size, size) * 2 - 1
b = torch.rand(batch, 3, size, size) * 2 - 1


def set_grad(nets, on):
    for n in nets:
        for p in n.parameters():
            p.requires_grad = on


def step():
    fake_b, fake_a = G_AB(a), G_BA(b)
    rec_a, rec_b = G_BA(fake_b), G_AB(fake_a)
    # (1) Both generators through frozen discriminators.
    set_grad([D_A, D_B], False)
    oG.zero_grad()
    sb, sa = D_B(fake_b), D_A(fake_a)
    lg = (mse(sb, torch.ones_like(sb)) + mse(sa, torch.ones_like(sa))
          + 10 * (l1(rec_a, a) + l1(rec_b, b))
          + 5 * (l1(G_AB(b), b) + l1(G_BA(a), a)))
    lg.backward()
    oG.step()
    # (2) Both discriminators on real images and pooled fakes.
    set_grad([D_A, D_B], True)
    oD.zero_grad()
    for D, real, fake, pool in ((D_A, a, fake_a, pool_a), (D_B, b, fake_b, pool_b)):
        r, f = D(real), D(pool.query(fake))
        (0.5 * (mse(r, torch.ones_like(r)) + mse(f, torch.zeros_like(f)))).backward()
    oD.step()


report("cyclegan", step, size=size, ngf=ngf, blocks=blocks, batch=batch, threads=threads)

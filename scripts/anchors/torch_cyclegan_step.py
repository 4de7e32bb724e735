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
import random, resource, statistics, sys, time
import torch, torch.nn as nn

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
size = int(sys.argv[2]) if len(sys.argv) > 2 else 64
ngf = int(sys.argv[3]) if len(sys.argv) > 3 else 32
batch = int(sys.argv[4]) if len(sys.argv) > 4 else 1
blocks = 6 if size >= 64 else 3
torch.set_num_threads(threads)
torch.manual_seed(0)
random.seed(0)


def norm(c):
    return nn.InstanceNorm2d(c, affine=False, track_running_stats=False)


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), norm(c), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), norm(c))

    def forward(self, x):
        return x + self.body(x)


def resnet(ngf, blocks, channels=3):
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(channels, ngf, 7), norm(ngf), nn.ReLU(True)]
    for m in (1, 2):
        layers += [nn.Conv2d(ngf * m, ngf * m * 2, 3, 2, 1), norm(ngf * m * 2), nn.ReLU(True)]
    layers += [ResBlock(ngf * 4) for _ in range(blocks)]
    for m in (4, 2):
        layers += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, 2, 1, output_padding=1),
                   norm(ngf * m // 2), nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, channels, 7), nn.Tanh()]
    return nn.Sequential(*layers)


def patchgan(inp, ndf):
    return nn.Sequential(
        nn.Conv2d(inp, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1), norm(ndf * 2), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1), norm(ndf * 4), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 1, 1), norm(ndf * 8), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 1))


class Pool:
    """image_pool.py: 50 past fakes; once full, each image is swapped for an old one with p 1/2."""

    def __init__(self, size=50):
        self.size, self.images = size, []

    def query(self, images):
        out = []
        for image in images:
            image = image.unsqueeze(0).detach()
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif random.uniform(0, 1) > 0.5:
                i = random.randint(0, self.size - 1)
                out.append(self.images[i].clone())
                self.images[i] = image
            else:
                out.append(image)
        return torch.cat(out, 0)


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


for _ in range(3):
    step()
ts = []
for _ in range(20):
    t = time.perf_counter()
    step()
    ts.append(time.perf_counter() - t)
print(f"torch {torch.__version__} cyclegan size={size} ngf={ngf} blocks={blocks} batch={batch} "
      f"threads={threads} median_ms={statistics.median(ts) * 1000:.2f} min_ms={min(ts) * 1000:.2f} "
      f"rss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")

"""Progressive GAN's networks (Karras et al. 2018) in PyTorch, as pocketgan builds them
(trainer/src/model/progan.rs), for the reference fixture (scripts/progan-reference.py) and the
training-step anchor (scripts/anchors/torch_progan_step.py).

Equalised learning rate: weights N(0, 1), the input scaled by gain / sqrt(fan_in) at run time.
G: pixel norm of z, dense to 4x4 (gain sqrt(2)/4), 3x3 conv; per doubling: nearest upsample, two 3x3
convs; each conv followed by LeakyReLU(0.2) and pixel norm; a 1x1 to_rgb per stage (gain 1).
D: a 1x1 from_rgb per stage; per halving: two 3x3 convs and a 2x2 average pool; at 4x4 the
minibatch standard deviation (groups of 4, strided), a 3x3 conv, a dense layer over the 4x4 map,
the linear score. A fading stage blends the new path with the previous stage's at alpha.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

SLOPE = 0.2
EPS = 1e-8


def channels(width, stages, k):
    return width << min(stages - 1 - k, 2)


def pixel_norm(x):
    return x / torch.sqrt((x * x).mean(dim=1, keepdim=True) + EPS)


def upsample(x, factor=2):
    return x if factor == 1 else F.interpolate(x, scale_factor=factor, mode="nearest")


def downsample(x):
    return F.avg_pool2d(x, 2)


def minibatch_stddev(x, group=4):
    n = x.shape[0]
    g = next(g for g in (group, 2, 1) if n % g == 0)
    y = x.reshape(g, -1, *x.shape[1:])            # sample i in group i mod n/g
    y = y - y.mean(dim=0, keepdim=True)
    y = torch.sqrt((y * y).mean(dim=0) + EPS)      # [n/g, C, H, W]
    y = y.mean(dim=[1, 2, 3])                      # [n/g]
    y = y.repeat(g).reshape(n, 1, 1, 1)
    return y.expand(n, 1, x.shape[2], x.shape[3])


class EqConv(nn.Module):
    def __init__(self, cin, cout, k, gain):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = gain / math.sqrt(cin * k * k)
        self.pad = k // 2

    def forward(self, x):
        return F.conv2d(x * self.scale, self.weight, self.bias, padding=self.pad)


class EqLinear(nn.Module):
    def __init__(self, cin, cout, gain):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = gain / math.sqrt(cin)

    def forward(self, x):
        return F.linear(x * self.scale, self.weight, self.bias)


def act(x):
    return F.leaky_relu(x, SLOPE)


class Generator(nn.Module):
    def __init__(self, image_channels, stages, latent, width):
        super().__init__()
        ch = [channels(width, stages, k) for k in range(stages)]
        he = math.sqrt(2)
        self.c0 = ch[0]
        self.stem = EqLinear(latent, ch[0] * 16, he / 4)
        self.stem_conv = EqConv(ch[0], ch[0], 3, he)
        self.blocks = nn.ModuleList(
            nn.ModuleList([EqConv(ch[k - 1], ch[k], 3, he), EqConv(ch[k], ch[k], 3, he)])
            for k in range(1, stages))
        self.to_rgb = nn.ModuleList(EqConv(ch[k], image_channels, 1, 1.0) for k in range(stages))

    def forward(self, z, stage, alpha):
        h = self.stem(pixel_norm(z)).reshape(z.shape[0], self.c0, 4, 4)
        h = pixel_norm(act(h))
        h = pixel_norm(act(self.stem_conv(h)))
        previous = None
        for first, second in self.blocks[:stage]:
            previous = h
            h = upsample(h)
            h = pixel_norm(act(first(h)))
            h = pixel_norm(act(second(h)))
        rgb = self.to_rgb[stage](h)
        if stage > 0 and alpha < 1:
            old = upsample(self.to_rgb[stage - 1](previous))
            rgb = rgb * alpha + old * (1 - alpha)
        return rgb

    def our_params(self):
        """(our record path, parameter, transpose) for every parameter."""
        out = [("stem.linear.weight", self.stem.weight, True),
               ("stem.linear.bias", self.stem.bias, False),
               ("stem_conv.conv.weight", self.stem_conv.weight, False),
               ("stem_conv.conv.bias", self.stem_conv.bias, False)]
        for i, (first, second) in enumerate(self.blocks):
            for name, conv in (("first", first), ("second", second)):
                out += [(f"blocks.{i}.{name}.conv.weight", conv.weight, False),
                        (f"blocks.{i}.{name}.conv.bias", conv.bias, False)]
        for k, conv in enumerate(self.to_rgb):
            out += [(f"to_rgb.{k}.conv.weight", conv.weight, False),
                    (f"to_rgb.{k}.conv.bias", conv.bias, False)]
        return out


class Discriminator(nn.Module):
    def __init__(self, image_channels, stages, width):
        super().__init__()
        ch = [channels(width, stages, k) for k in range(stages)]
        he = math.sqrt(2)
        self.from_rgb = nn.ModuleList(EqConv(image_channels, ch[k], 1, he) for k in range(stages))
        self.blocks = nn.ModuleList(
            nn.ModuleList([EqConv(ch[k], ch[k], 3, he), EqConv(ch[k], ch[k - 1], 3, he)])
            for k in range(1, stages))
        self.last_conv = EqConv(ch[0] + 1, ch[0], 3, he)
        self.dense = EqLinear(ch[0] * 16, ch[0], he)
        self.score = EqLinear(ch[0], 1, 1.0)

    def forward(self, x, stage, alpha):
        h = act(self.from_rgb[stage](x))
        for k in range(stage, 0, -1):
            first, second = self.blocks[k - 1]
            h = downsample(act(second(act(first(h)))))
            if k == stage and alpha < 1:
                old = act(self.from_rgb[stage - 1](downsample(x)))
                h = h * alpha + old * (1 - alpha)
        h = torch.cat([h, minibatch_stddev(h)], dim=1)
        h = act(self.last_conv(h))
        h = act(self.dense(h.flatten(1)))
        return self.score(h)

    def our_params(self):
        out = []
        for k, conv in enumerate(self.from_rgb):
            out += [(f"from_rgb.{k}.conv.weight", conv.weight, False),
                    (f"from_rgb.{k}.conv.bias", conv.bias, False)]
        for i, (first, second) in enumerate(self.blocks):
            for name, conv in (("first", first), ("second", second)):
                out += [(f"blocks.{i}.{name}.conv.weight", conv.weight, False),
                        (f"blocks.{i}.{name}.conv.bias", conv.bias, False)]
        out += [("last_conv.conv.weight", self.last_conv.weight, False),
                ("last_conv.conv.bias", self.last_conv.bias, False),
                ("dense.linear.weight", self.dense.weight, True),
                ("dense.linear.bias", self.dense.bias, False),
                ("score.linear.weight", self.score.weight, True),
                ("score.linear.bias", self.score.bias, False)]
        return out

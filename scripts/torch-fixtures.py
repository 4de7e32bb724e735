#!/usr/bin/env python3
"""Writes ONNX fixtures with PyTorch's real exporter (torch.onnx.export), never hand-built graphs.

The runtime's importer must take what PyTorch users actually write, so every file here comes
from `torch.onnx.export` on a small seeded model: the shape arithmetic of `x.view(-1, ...)`,
weights behind Identity nodes, BatchNorm with non-trivial running statistics (a few train-mode
passes on seeded data), U-Net skip Concat, reflect Pad, InstanceNormalization, residual Add.

For each model it also saves a batch-2 input and PyTorch's own output as .npy, so the Rust
tests compare against PyTorch itself and not only against tract.

    python scripts/torch-fixtures.py [OUT_DIR]   (default runtime/tests/fixtures/torch)

Needs torch, numpy, onnx (and onnxscript for the dynamo exporter).
"""

import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "runtime", "tests", "fixtures", "torch")
OPSETS = [13, 14, 15, 16, 17]  # TorchScript exporter (dynamo=False)
DYNAMO_OPSET = 18              # the dynamo exporter, tried once per model


class DcganView(nn.Module):
    """28 px DCGAN whose forward reshapes with x.view(-1, 128, 7, 7): the exporter computes
    the target shape from the batch at run time (Shape/Gather/Concat/...)."""

    def __init__(self, nz=64, ch=128):
        super().__init__()
        self.ch = ch
        self.fc = nn.Linear(nz, ch * 7 * 7)
        self.net = nn.Sequential(
            nn.BatchNorm2d(ch), nn.ReLU(True),
            nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1), nn.BatchNorm2d(ch // 2), nn.ReLU(True),
            nn.ConvTranspose2d(ch // 2, 1, 4, 2, 1), nn.Tanh())

    def forward(self, z):
        x = self.fc(z)
        x = x.view(-1, self.ch, 7, 7)
        return self.net(x)


class Dcgan64(nn.Module):
    """pytorch/examples dcgan/main.py's Generator, verbatim but for the widths."""

    def __init__(self, nz=100, ngf=64, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh())

    def forward(self, x):
        return self.main(x)


class UNet(nn.Module):
    """A small Pix2Pix-style U-Net: 4x4 stride-2 convs down, transposed convs up, skip cat."""

    def __init__(self, c=3, w=8):
        super().__init__()
        self.d1 = nn.Conv2d(c, w, 4, 2, 1)                       # 16
        self.d2 = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(w, w * 2, 4, 2, 1),
                                nn.BatchNorm2d(w * 2))            # 8
        self.d3 = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(w * 2, w * 4, 4, 2, 1))  # 4
        self.u3 = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(w * 4, w * 2, 4, 2, 1),
                                nn.BatchNorm2d(w * 2), nn.Dropout(0.5))               # 8
        self.u2 = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(w * 4, w, 4, 2, 1),
                                nn.BatchNorm2d(w))                                    # 16
        self.u1 = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(w * 2, c, 4, 2, 1), nn.Tanh())

    def forward(self, x):
        e1 = self.d1(x)
        e2 = self.d2(e1)
        e3 = self.d3(e2)
        y = self.u3(e3)
        y = self.u2(torch.cat([y, e2], 1))
        return self.u1(torch.cat([y, e1], 1))


class UNetPointwise(UNet):
    """The U-Net closed by a 1x1 convolution of its output joined with its input (as some
    U-Nets end): tract turns such a convolution into one EinSum per joined part."""

    def __init__(self, c=3, w=8):
        super().__init__(c, w)
        self.u1 = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(w * 2, w, 4, 2, 1))
        self.out = nn.Conv2d(w + c, c, 1)

    def forward(self, x):
        e1 = self.d1(x)
        e2 = self.d2(e1)
        y = self.u3(self.d3(e2))
        y = self.u2(torch.cat([y, e2], 1))
        y = self.u1(torch.cat([y, e1], 1))
        return torch.tanh(self.out(torch.cat([y, x], 1)))


class ResBlock(nn.Module):
    def __init__(self, dim, affine):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim, affine=affine),
            nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim, affine=affine))

    def forward(self, x):
        return x + self.block(x)


class ResnetGen(nn.Module):
    """CycleGAN's ResnetGenerator, narrow, with 2 residual blocks."""

    def __init__(self, c=3, w=8, affine=False):
        super().__init__()
        norm = lambda d: nn.InstanceNorm2d(d, affine=affine)
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(c, w, 7), norm(w), nn.ReLU(True)]
        for i in range(2):
            m = 2 ** i
            layers += [nn.Conv2d(w * m, w * m * 2, 3, 2, 1), norm(w * m * 2), nn.ReLU(True)]
        layers += [ResBlock(w * 4, affine) for _ in range(2)]
        for i in range(2):
            m = 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(w * m, w * m // 2, 3, 2, 1, output_padding=1),
                       norm(w * m // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, c, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class PixelNorm(nn.Module):
    """Progressive GAN's pixel normalisation: each pixel's feature vector divided by its root
    mean square over the channels (tract reads this as its RmsNorm on axis 1)."""

    def forward(self, x):
        return x / torch.sqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


class WSConv2d(nn.Module):
    """A convolution with the equalised learning rate as PyTorch ProGAN ports write it: the
    input scaled by He's constant, the bias added after the convolution."""

    def __init__(self, cin, cout, k=3, p=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, 1, p, bias=False)
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = (2 / (cin * k * k)) ** 0.5

    def forward(self, x):
        return self.conv(x * self.scale) + self.bias.view(1, -1, 1, 1)


class ProGanGen(nn.Module):
    """Progressive GAN's generator after its second stage (4 -> 8 px), narrow: the latent pixel-
    normalised, a 4x4 transposed convolution, then per block nearest upsampling and two
    equalised 3x3 convolutions, each with LeakyReLU(0.2) and pixel norm, and a 1x1 toRGB."""

    def __init__(self, nz=16, ch=8, c=3):
        super().__init__()
        self.pn = PixelNorm()
        self.first = nn.ConvTranspose2d(nz, ch, 4)
        self.c1, self.c2 = WSConv2d(ch, ch), WSConv2d(ch, ch)
        self.c3, self.c4 = WSConv2d(ch, ch), WSConv2d(ch, ch)
        self.rgb = WSConv2d(ch, c, 1, 0)

    def forward(self, z):
        act = lambda x: self.pn(nn.functional.leaky_relu(x, 0.2))
        x = act(self.first(self.pn(z)))
        x = act(self.c2(act(self.c1(x))))
        x = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        x = act(self.c4(act(self.c3(x))))
        return self.rgb(x)


class TimeGanGen(nn.Module):
    """TimeGAN's generator path as its authors build it (timegan.py): generator, supervisor
    (one layer fewer) and recovery, each a GRU stack then a per-step Linear and Sigmoid, and
    the min-max scaling undone at the end. Batch-first GRUs, as PyTorch users write them."""

    def __init__(self, features=5, hidden=24, layers=3):
        super().__init__()
        def net(i, o, n):
            return nn.ModuleDict(dict(gru=nn.GRU(i, hidden, n, batch_first=True),
                                      fc=nn.Linear(hidden, o)))
        self.nets = nn.ModuleList([net(features, hidden, layers), net(hidden, hidden, layers - 1),
                                   net(hidden, features, layers)])
        self.register_buffer("range", torch.linspace(0.5, 2.0, features))
        self.register_buffer("min", torch.linspace(-1.0, 1.0, features))

    def forward(self, z):
        x = z
        for n in self.nets:
            x = torch.sigmoid(n["fc"](n["gru"](x)[0]))
        return x * self.range + self.min


class SeqGanCell(nn.Module):
    """SeqGAN's generator (the authors' generator.py, in PyTorch) as one sampling step, the
    form any engine can drive: the token's embedding, one nn.LSTM step from the state, the
    logits. The state is batch-first [N, H] around nn.LSTM's [layers, N, H], so that every
    input and output has the batch on its first axis."""

    def __init__(self, vocab=50, embed=32, hidden=32):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, token, h, c):
        y, (h1, c1) = self.lstm(self.embedding(token).unsqueeze(0), (h.unsqueeze(0), c.unsqueeze(0)))
        return self.out(y[0]), h1[0], c1[0]


def token_cell(notes, failures, models, seed):
    """The SeqGAN cell: N(0, 1) weights (as the benchmark's oracle), a seeded batch of two
    6-token sequences, and PyTorch's logits at every step of stepping the cell through them
    from a zero state (teacher forcing); exported with and without a dynamic batch."""
    name, vocab, hidden, steps = "seqgan_cell", 50, 32, 6
    model = SeqGanCell(vocab, 32, hidden)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    model.eval()
    tokens = torch.randint(0, vocab, (2, steps), generator=g)
    h, c = torch.zeros(2, hidden), torch.zeros(2, hidden)
    prev, logits = torch.zeros(2, dtype=torch.long), []
    with torch.no_grad():
        for t in range(steps):
            y, h, c = model(prev, h, c)
            logits.append(y)
            prev = tokens[:, t]
    np.save(os.path.join(OUT, f"{name}.tokens.npy"), tokens.numpy().astype(np.float32))
    np.save(os.path.join(OUT, f"{name}.logits.npy"), torch.stack(logits, 1).numpy().astype(np.float32))
    models.append((name, "SeqGanCell", "token [], h [32], c [32]", "token, h, c"))
    args = (torch.zeros(2, dtype=torch.long), torch.zeros(2, hidden), torch.zeros(2, hidden))
    names = dict(input_names=["token", "h", "c"], output_names=["logits", "h_next", "c_next"])
    for opset in [13, 17]:
        for dynamic in [True, False]:
            file = f"{name}_op{opset}" + ("_dyn" if dynamic else "")
            kw = dict(names, opset_version=opset)
            if dynamic:
                kw["dynamic_axes"] = {k: {0: "N"} for k in names["input_names"] + names["output_names"]}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, args, os.path.join(OUT, f"{file}.onnx"), dynamo=False, **kw)
            notes.append((f"{file}.onnx", opset, "dynamic" if dynamic else "fixed 2",
                          "TorchScript (dynamo=False)", os.path.getsize(os.path.join(OUT, f"{file}.onnx"))))
    file = f"{name}_op{DYNAMO_OPSET}_dynamo_dyn"
    try:
        n = torch.export.Dim("N", min=1, max=1024)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, os.path.join(OUT, f"{file}.onnx"), dynamo=True,
                              opset_version=DYNAMO_OPSET, dynamic_shapes=({0: n}, {0: n}, {0: n}),
                              external_data=False, optimize=True, **names)
        notes.append((f"{file}.onnx", DYNAMO_OPSET, "dynamic", "dynamo",
                      os.path.getsize(os.path.join(OUT, f"{file}.onnx"))))
    except Exception as e:  # the dynamo exporter is optional; say why it was skipped
        failures.append((name, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"))


def settle(model, shape, seed):
    """Seeded weights, then a few train-mode passes so BatchNorm's running statistics (and
    InstanceNorm's affine parameters) are not the trivial 0/1, then eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (0.1 if p.dim() == 1 else 0.0))
        model.train()
        for _ in range(4):
            model(torch.randn((16,) + shape, generator=g) * 1.5 + 0.3)
    model.eval()
    return model


def export(model, shape, name, opset, dynamic, dynamo, input_name, notes):
    x = torch.zeros((2,) + shape)
    path = os.path.join(OUT, f"{name}.onnx")
    kw = dict(input_names=[input_name], output_names=["image"], opset_version=opset)
    if dynamic:
        kw["dynamic_axes"] = {input_name: {0: "N"}, "image": {0: "N"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            # Keyed by position: the forward arguments are named differently per model.
            dyn = ({0: torch.export.Dim("N", min=1, max=1024)},) if dynamic else None
            torch.onnx.export(model, (x,), path, dynamo=True, opset_version=opset,
                              input_names=[input_name], output_names=["image"],
                              dynamic_shapes=dyn, external_data=False, optimize=True)
        else:
            torch.onnx.export(model, (x,), path, dynamo=False, **kw)
    size = os.path.getsize(path)
    notes.append((f"{name}.onnx", opset, "dynamic" if dynamic else "fixed 2",
                  "dynamo" if dynamo else "TorchScript (dynamo=False)", size))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    notes, failures, models = [], [], []
    specs = [
        # name, constructor, per-sample input shape, input name, opsets
        # The model at its real width (2.2 MB a file) at one opset, a narrow one at all.
        ("dcgan_view", lambda: DcganView(64, 128), (64,), "z", [17]),
        ("dcgan_view_narrow", lambda: DcganView(64, 16), (64,), "z", OPSETS),
        ("dcgan64_real", lambda: Dcgan64(100, 64, 3), (100, 1, 1), "input", [17]),
        ("dcgan64_narrow", lambda: Dcgan64(100, 8, 3), (100, 1, 1), "input", OPSETS),
        ("unet", lambda: UNet(3, 8), (3, 32, 32), "input", OPSETS),
        ("resnet", lambda: ResnetGen(3, 8, False), (3, 32, 32), "input", OPSETS),
        ("resnet_affine", lambda: ResnetGen(3, 8, True), (3, 32, 32), "input", [17]),
        ("unet_pointwise", lambda: UNetPointwise(3, 8), (3, 32, 32), "input", [13, 17]),
        ("timegan", lambda: TimeGanGen(5, 24, 3), (24, 5), "noise", [13, 17]),
        ("progan", lambda: ProGanGen(16, 8, 3), (16, 1, 1), "z", [13, 17]),
    ]
    for seed, (name, make, shape, input_name, opsets) in enumerate(specs):
        model = settle(make(), shape, seed)
        g = torch.Generator().manual_seed(100 + seed)
        x = torch.randn((2,) + shape, generator=g)
        with torch.no_grad():
            y = model(x)
        np.save(os.path.join(OUT, f"{name}.input.npy"), x.numpy().astype(np.float32))
        np.save(os.path.join(OUT, f"{name}.output.npy"), y.numpy().astype(np.float32))
        models.append((name, model.__class__.__name__, shape, input_name))
        for opset in opsets:
            # The real-size models only once (14 MB and 2.2 MB; their narrow twins cover the
            # fixed batch); the others with and without a dynamic batch axis.
            for dynamic in ([True] if name in ("dcgan64_real", "dcgan_view") else [True, False]):
                suffix = f"_op{opset}" + ("_dyn" if dynamic else "")
                export(model, shape, name + suffix, opset, dynamic, False, input_name, notes)
        if name not in ("dcgan64_real", "dcgan_view"):
            try:
                export(model, shape, f"{name}_op{DYNAMO_OPSET}_dynamo_dyn", DYNAMO_OPSET, True,
                       True, input_name, notes)
            except Exception as e:  # the dynamo exporter is optional; say why it was skipped
                failures.append((name, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"))

    token_cell(notes, failures, models, 9)  # its seed from before later models joined specs

    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("# ONNX fixtures written by PyTorch's own exporter\n\n")
        f.write("Generated by `scripts/torch-fixtures.py` (do not edit by hand) with torch "
                f"{torch.__version__}, numpy {np.__version__}. Weights are seeded; BatchNorm "
                "running statistics come from four train-mode passes on seeded data, so folding "
                "is exercised with non-trivial values.\n\n")
        f.write("`NAME.input.npy` is a seeded batch-2 input, `NAME.output.npy` PyTorch's output "
                "for it (eval mode); every `NAME_op*.onnx` is the same model and weights.\n\n")
        f.write("`seqgan_cell.tokens.npy` holds two 6-token sequences and `seqgan_cell.logits.npy` "
                "PyTorch's logits at each step of stepping the cell through them from a zero "
                "state.\n\n")
        f.write("Used by `runtime/tests/torch_tokens.rs` (the token cells), "
                "`runtime/tests/torch_import.rs` (every file imports; the float executor "
                "matches PyTorch's output and tract) and `runtime/tests/torch_quantize.rs` (the "
                "DCGANs and ProGAN quantize; U-Net, ResNet and TimeGAN in their own tests). The "
                "real-size files are exported once (dynamic batch) to keep the folder small; "
                "their narrow twins cover every opset and the fixed batch.\n\n")
        f.write("| model | class | per-sample input | input name |\n|---|---|---|---|\n")
        for name, cls, shape, input_name in models:
            f.write(f"| {name} | {cls} | {shape if isinstance(shape, str) else list(shape)} | `{input_name}` |\n")
        f.write("\n| file | opset | batch | exporter | bytes |\n|---|---|---|---|---|\n")
        for file, opset, batch, exporter, size in notes:
            f.write(f"| {file} | {opset} | {batch} | {exporter} | {size} |\n")
        if failures:
            f.write("\nDynamo exporter failures (skipped):\n\n")
            for name, why in failures:
                f.write(f"- {name}: {why}\n")
    print(f"{len(notes)} files in {OUT}; dynamo failures: {failures}")


if __name__ == "__main__":
    main()

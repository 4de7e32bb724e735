#!/usr/bin/env python3
"""Seeds for the `onnx` fuzz target: small generators exported by PyTorch's own
`torch.onnx.export`, the files users give the importer, with every layer the families use (a
latent DCGAN chain, a class embedding, a U-Net's skip, a ResNet block's reflect pad, instance
norm and residual add, a recurrent GRU with per-step Linear, a token cell with its metadata, ProGAN's pixel norm) at a width of a few channels, so that mutations fall on the graph's
structure more often than on weights.

    python3 scripts/fuzz-seeds.py fuzz/corpus/onnx
"""
import sys
from pathlib import Path

import torch
from torch import nn


class Latent(nn.Module):
    """z [N, 4] -> Linear -> [N, 4, 2, 2] -> ConvTranspose + BatchNorm + ReLU -> Conv + Tanh."""

    def __init__(self, classes=0):
        super().__init__()
        self.embed = nn.Embedding(classes, 4) if classes else None
        self.fc = nn.Linear(4, 16)
        self.up = nn.ConvTranspose2d(4, 3, 4, 2, 1)
        self.bn = nn.BatchNorm2d(3)
        self.out = nn.Conv2d(3, 1, 3, 1, 1)

    def forward(self, z, c=None):
        if self.embed is not None:
            z = z * self.embed(c)
        x = self.fc(z).view(-1, 4, 2, 2)
        return torch.tanh(self.out(torch.relu(self.bn(self.up(x)))))


class Skip(nn.Module):
    """A one-level U-Net: down, up, concatenated with the input."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(1, 2, 4, 2, 1)
        self.up = nn.ConvTranspose2d(2, 2, 4, 2, 1)
        self.out = nn.Conv2d(3, 1, 1)

    def forward(self, x):
        y = self.up(nn.functional.leaky_relu(self.down(x), 0.2))
        return torch.tanh(self.out(torch.cat([x, torch.relu(y)], 1)))


class Residual(nn.Module):
    """A ResNet block: reflect pad, conv, instance norm, ReLU, and the residual add."""

    def __init__(self):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(2, 2, 3)
        self.norm = nn.InstanceNorm2d(2)

    def forward(self, x):
        return x + torch.relu(self.norm(self.conv(self.pad(x))))


class Recurrent(nn.Module):
    """TimeGAN's generator path in miniature: a batch-first GRU, then a per-step Linear."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(2, 3, batch_first=True)
        self.fc = nn.Linear(3, 2)

    def forward(self, z):
        return torch.sigmoid(self.fc(self.gru(z)[0]))


class Progressive(nn.Module):
    """Progressive GAN's generator in miniature: pixel norm, an equalised convolution (its input
    scaled by a constant), nearest upsampling."""

    def __init__(self):
        super().__init__()
        self.first = nn.ConvTranspose2d(4, 3, 2)
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, z):
        pn = lambda x: x / torch.sqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)
        x = pn(nn.functional.leaky_relu(self.first(pn(z)), 0.2))
        x = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x * 0.5)


class Cell(nn.Module):
    """SeqGAN's token cell in miniature: a token's embedding, one LSTM step from a batch-first
    state, the logits."""

    def __init__(self, vocab=6):
        super().__init__()
        self.embedding = nn.Embedding(vocab, 2)
        self.lstm = nn.LSTM(2, 3)
        self.out = nn.Linear(3, vocab)

    def forward(self, token, h, c):
        y, (h1, c1) = self.lstm(self.embedding(token).unsqueeze(0), (h.unsqueeze(0), c.unsqueeze(0)))
        return self.out(y[0]), h1[0], c1[0]


def token_cell(out):
    """The cell exported by PyTorch, then given the token metadata pocketgan's exporter writes
    (so that the fuzzer reaches the token sampler: `pocketgan sample`)."""
    import onnx

    path = out / "cell_op17.onnx"
    names = dict(input_names=["token", "h", "c"], output_names=["logits", "h_next", "c_next"])
    args = (torch.tensor([0]), torch.zeros(1, 3), torch.zeros(1, 3))
    torch.onnx.export(Cell().eval(), args, path, opset_version=17, dynamo=False,
                      dynamic_axes={n: {0: "batch"} for n in names["input_names"] + names["output_names"]},
                      **names)
    model = onnx.load(path)
    for k, v in [("pocketgan.sequence_length", "5"), ("pocketgan.start_token", "0"),
                 ("pocketgan.end_token", "0"),
                 ("pocketgan.vocabulary", '["<end>","a","b","c","d","e"]'),
                 ("pocketgan.token_separator", "")]:
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, path)
    print(path, path.stat().st_size, "bytes")


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for name, model, args, names in [
        ("latent", Latent().eval(), (torch.randn(1, 4),), ["z"]),
        (
            "class",
            Latent(classes=3).eval(),
            (torch.randn(1, 4), torch.tensor([1])),
            ["z", "class"],
        ),
        ("skip", Skip().eval(), (torch.randn(1, 1, 8, 8),), ["image"]),
        ("residual", Residual().eval(), (torch.randn(1, 2, 4, 4),), ["image"]),
        ("recurrent", Recurrent().eval(), (torch.rand(1, 4, 2),), ["noise"]),
        ("progressive", Progressive().eval(), (torch.randn(1, 4, 1, 1),), ["z"]),
    ]:
        for opset in (13, 17):
            path = out / f"{name}_op{opset}.onnx"
            torch.onnx.export(
                model,
                args,
                path,
                input_names=names,
                output_names=["out"],
                dynamic_axes={n: {0: "batch"} for n in names + ["out"]},
                opset_version=opset,
                dynamo=False,
            )
            print(path, path.stat().st_size, "bytes")
    token_cell(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus/onnx")

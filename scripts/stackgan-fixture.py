#!/usr/bin/env python3
"""Writes the text-conditioned generator fixtures with PyTorch's real exporter (torch.onnx.export).

A small StackGAN-shaped generator, the form the trainer exports: token ids `text` [N, T] looked up
in an nn.Embedding (row 0, the reserved empty word, zero) and flattened to [N, T*E], two Linear
text codes c and c2 from it, stage I (cat(c, z) -> Linear -> 4x4 map -> nearest Upsample x2 +
Conv3x3 + BatchNorm + ReLU to 16 px -> Conv3x3 -> Tanh), stage II (Conv3x3 + ReLU, Conv4x4 stride 2
+ BatchNorm + ReLU to 8 px, c2 replicated to 8x8, cat, Conv3x3 + BatchNorm + ReLU, a residual
block, nearest Upsample + Conv3x3 + BatchNorm + ReLU to 16 px, Conv3x3 to 3 channels, Tanh).
The replication of c2 is written three ways PyTorch users write it: `.repeat` (ONNX Tile),
`F.interpolate` from 1x1 (Resize nearest) and `.expand` (Expand), one file each.

Weights are seeded, BatchNorm's running statistics come from a few train-mode passes on seeded
inputs, then eval mode. The metadata the trainer writes (`pocketgan.text_vocabulary`, a JSON
array of V words in id order with entry 0 "", and `pocketgan.text_length`) is added with the
`onnx` package, which touches nothing else. Also saved: a batch-3 input (`stackgan.z.npy`,
`stackgan.text.npy`, ids as float32) and PyTorch's output for it (`stackgan.image.npy`).

    python3 scripts/stackgan-fixture.py [OUT_DIR]   (default runtime/tests/fixtures/stackgan)

Needs torch, numpy, onnx (and onnxscript for the dynamo exporter).
"""

import json
import os
import sys
import warnings

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "runtime", "tests", "fixtures", "stackgan")

VOCAB, EMBED, SLOTS, NZ, C_DIM, NGF, SIDE = 50, 8, 16, 8, 8, 16, 16
WORDS = ("red green blue yellow orange purple pink brown black white gray gold silver dark light "
         "small big round square tall flat shiny smiling sad angry happy sleepy face heart star "
         "moon sun apple pear cherry lemon grape cat dog fish bird tree flower leaf car house "
         "hat ball boat").split()
assert len(WORDS) == VOCAB - 1


def up_block(cin, cout):
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                         nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(True))


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c),
                                   nn.ReLU(True), nn.Conv2d(c, c, 3, 1, 1, bias=False),
                                   nn.BatchNorm2d(c))

    def forward(self, x):
        return F.relu(x + self.block(x))


class StackGanGen(nn.Module):
    """Stage I then stage II at 16 px, conditioned on the text's token ids."""

    def __init__(self, replicate):
        super().__init__()
        self.replicate = replicate
        self.embedding = nn.Embedding(VOCAB, EMBED, padding_idx=0)
        self.text1 = nn.Linear(SLOTS * EMBED, C_DIM)
        self.text2 = nn.Linear(SLOTS * EMBED, C_DIM)
        self.fc = nn.Sequential(nn.Linear(C_DIM + NZ, NGF * 2 * 4 * 4), nn.ReLU(True))
        self.stage1 = nn.Sequential(up_block(NGF * 2, NGF), up_block(NGF, NGF),
                                    nn.Conv2d(NGF, 3, 3, 1, 1), nn.Tanh())
        self.encode = nn.Sequential(nn.Conv2d(3, NGF, 3, 1, 1), nn.ReLU(True),
                                    nn.Conv2d(NGF, NGF * 2, 4, 2, 1, bias=False),
                                    nn.BatchNorm2d(NGF * 2), nn.ReLU(True))
        self.joint = nn.Sequential(nn.Conv2d(NGF * 2 + C_DIM, NGF * 2, 3, 1, 1, bias=False),
                                   nn.BatchNorm2d(NGF * 2), nn.ReLU(True))
        self.residual = ResBlock(NGF * 2)
        self.stage2 = nn.Sequential(up_block(NGF * 2, NGF), nn.Conv2d(NGF, 3, 3, 1, 1), nn.Tanh())

    def forward(self, z, text):
        n = text.shape[0]
        words = self.embedding(text).view(n, -1)          # [N, T*E]
        c, c2 = self.text1(words), self.text2(words)
        x = self.fc(torch.cat([c, z], 1)).view(n, NGF * 2, 4, 4)
        low = self.stage1(x)                              # the stage-I image, [N, 3, 16, 16]
        h = self.encode(low)                              # [N, 2 NGF, 8, 8]
        side = SIDE // 2                                  # a constant, as users write it
        code = c2.view(n, C_DIM, 1, 1)
        if self.replicate == "repeat":
            code = code.repeat(1, 1, side, side)
        elif self.replicate == "interpolate":
            code = F.interpolate(code, scale_factor=float(side), mode="nearest")
        else:
            code = code.expand(n, C_DIM, side, side)
        h = self.residual(self.joint(torch.cat([h, code], 1)))
        return self.stage2(h)


def tokens(g, n):
    """Texts as the tokenizer makes them: 1..4 words (ids >= 1) filling the slots cyclically."""
    rows = []
    for _ in range(n):
        k = int(torch.randint(1, 5, (1,), generator=g))
        words = torch.randint(1, VOCAB, (k,), generator=g)
        rows.append(torch.stack([words[i % k] for i in range(SLOTS)]))
    return torch.stack(rows)


def settle(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (0.1 if p.dim() == 1 else 0.0))
        model.embedding.weight[0].zero_()
        model.train()
        for _ in range(4):
            model(torch.randn(16, NZ, generator=g), tokens(g, 16))
    model.eval()
    return model


def add_metadata(path):
    m = onnx.load(path)
    for key, value in [("pocketgan.text_vocabulary", json.dumps([""] + WORDS)),
                       ("pocketgan.text_length", str(SLOTS))]:
        p = m.metadata_props.add()
        p.key, p.value = key, value
    onnx.save(m, path)


def main():
    os.makedirs(OUT, exist_ok=True)
    notes, failures = [], []
    g = torch.Generator().manual_seed(7)
    z, text = torch.randn(3, NZ, generator=g), tokens(g, 3)
    reference = None
    names = dict(input_names=["z", "text"], output_names=["image"])
    dyn = {"z": {0: "N"}, "text": {0: "N"}, "image": {0: "N"}}
    for replicate in ["repeat", "interpolate", "expand"]:
        torch.manual_seed(0)
        model = settle(StackGanGen(replicate), 3)
        with torch.no_grad():
            y = model(z, text)
        if reference is None:
            reference = y
        # The same weights: the three forms of the replication give the same images.
        assert torch.allclose(y, reference, atol=1e-6), replicate
        args = (torch.zeros(2, NZ), torch.ones(2, SLOTS, dtype=torch.long))
        runs = [(13, True, False), (17, True, False)] if replicate == "repeat" else [(17, True, False)]
        runs += [(17, False, False)] if replicate == "repeat" else []
        runs += [(18, True, True)] if replicate == "repeat" else []
        for opset, dynamic, dynamo in runs:
            file = f"stackgan_{replicate}_op{opset}" + ("_dynamo" if dynamo else "") + \
                ("_dyn" if dynamic else "")
            path = os.path.join(OUT, f"{file}.onnx")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if dynamo:
                        n = torch.export.Dim("N", min=1, max=1024)
                        torch.onnx.export(model, args, path, dynamo=True, opset_version=opset,
                                          dynamic_shapes=({0: n}, {0: n}), external_data=False,
                                          optimize=True, **names)
                    else:
                        kw = dict(names, opset_version=opset)
                        if dynamic:
                            kw["dynamic_axes"] = dyn
                        torch.onnx.export(model, args, path, dynamo=False, **kw)
            except Exception as e:  # the dynamo exporter is optional; say why it was skipped
                failures.append((file, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"))
                continue
            add_metadata(path)
            notes.append((f"{file}.onnx", replicate, opset, "dynamic" if dynamic else "fixed 2",
                          "dynamo" if dynamo else "TorchScript (dynamo=False)",
                          os.path.getsize(path)))
    np.save(os.path.join(OUT, "stackgan.z.npy"), z.numpy().astype(np.float32))
    np.save(os.path.join(OUT, "stackgan.text.npy"), text.numpy().astype(np.float32))
    np.save(os.path.join(OUT, "stackgan.image.npy"), reference.numpy().astype(np.float32))

    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("# A text-conditioned generator written by PyTorch's own exporter\n\n")
        f.write("Generated by `scripts/stackgan-fixture.py` (do not edit by hand) with torch "
                f"{torch.__version__}, numpy {np.__version__}, onnx {onnx.__version__}. A small "
                f"StackGAN-shaped generator (vocabulary {VOCAB}, embedding {EMBED}, {SLOTS} token "
                f"slots, nz {NZ}, text codes of {C_DIM}, {SIDE} px RGB), inputs `z` [N, {NZ}] and "
                f"`text` int64 [N, {SLOTS}], output `image` [N, 3, {SIDE}, {SIDE}]. Seeded weights; "
                "BatchNorm running statistics from four train-mode passes. Metadata "
                "`pocketgan.text_vocabulary` and `pocketgan.text_length` added with `onnx`.\n\n")
        f.write("`stackgan.z.npy` and `stackgan.text.npy` (ids as float32) are a seeded batch of 3, "
                "`stackgan.image.npy` PyTorch's output for it; every file is the same model and "
                "weights (the replication of the second text code written as `.repeat`, "
                "`F.interpolate` or `.expand`). Used by `runtime/tests/torch_text.rs`.\n\n")
        f.write("| file | replication | opset | batch | exporter | bytes |\n|---|---|---|---|---|---|\n")
        for file, rep, opset, batch, exporter, size in notes:
            f.write(f"| {file} | {rep} | {opset} | {batch} | {exporter} | {size} |\n")
        if failures:
            f.write("\nExports that failed (skipped):\n\n")
            for name, why in failures:
                f.write(f"- {name}: {why}\n")
    print(f"{len(notes)} files in {OUT}; failures: {failures}")


if __name__ == "__main__":
    main()

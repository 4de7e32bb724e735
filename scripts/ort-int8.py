#!/usr/bin/env python3
"""onnxruntime's best int8 on a GAN generator, beside its f32, for `pocketgan bench`'s table.

    python3 scripts/ort-int8.py MODEL.onnx [--reps 40] [--threads 1] [--calib 32] [--out DIR]

onnxruntime has no int8 ConvTranspose: its static QDQ quantization leaves every transposed
convolution in float, between a dequantize and a quantize. A savvy user rewrites each
ConvTranspose as the sub-pixel convolution it is (a Conv with stride^2 x cout output channels,
then DepthToSpace and a crop), which onnxruntime does run on int8. This script does that rewrite,
checks that the rewritten float model gives the original's output (max abs difference printed),
quantizes both with onnxruntime's own `quantize_static` (QDQ, per-channel weights, calibrated on
seeded latents as pocketgan's quantizer is), and times the four models at batch 1 and batch 64
on `--threads` intra-op threads, medians of `--reps` runs. Compare its lines with
`pocketgan bench MODEL.onnx --engines int8,ort --threads 1` run in the same minutes.

The rewrite, for ConvTranspose(x; W[cin][cout][k][k], stride s, pad p): the uncropped output
z[q s + r] = sum_t x[q - t] W[t s + r] (t < T = ceil(k / s)) is, for each phase r, a plain
correlation of x padded by T - 1 with the taps W[(T - 1 - u) s + r], u < T (zero where the index
passes k). The s^2 phases become one Conv's output channels in DepthToSpace's DCR order
((ry s + rx) cout + c), and the output is z cropped to [p, p + ho) on both axes.
"""

import argparse
import os
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat,
                                      QuantType, quantize_static)


def attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def sub_pixel(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every 2-D ConvTranspose (group 1, no dilation) rewritten as Conv + DepthToSpace + Slice."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    shapes = {}
    inferred = onnx.shape_inference.infer_shapes(model)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    nodes = []
    for n in g.node:
        if n.op_type != "ConvTranspose":
            nodes.append(n)
            continue
        if attr(n, "group", 1) != 1 or any(d != 1 for d in attr(n, "dilations", [1, 1])):
            raise SystemExit(f"{n.name}: only group 1, dilation 1 transposed convolutions")
        w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)  # [cin, cout, kh, kw]
        cin, cout, kh, kw = w.shape
        sy, sx = attr(n, "strides", [1, 1])
        pads = attr(n, "pads", [0, 0, 0, 0])  # top, left, bottom, right
        out_pad = attr(n, "output_padding", [0, 0])
        if sy != sx or kh != kw or len(set(pads)) != 1 or any(out_pad):
            raise SystemExit(f"{n.name}: only square kernels, equal strides and pads, no output padding")
        s, k, p = sy, kh, pads[0]
        t = -(-k // s)
        wc = np.zeros((s * s * cout, cin, t, t), np.float32)
        for ry in range(s):
            for rx in range(s):
                for u in range(t):
                    for v in range(t):
                        ky, kx = (t - 1 - u) * s + ry, (t - 1 - v) * s + rx
                        if ky < k and kx < k:
                            c0 = (ry * s + rx) * cout
                            wc[c0:c0 + cout, :, u, v] = w[:, :, ky, kx].T
        bias = (numpy_helper.to_array(inits[n.input[2]]) if len(n.input) > 2 and n.input[2]
                else np.zeros(cout, np.float32))
        h, wdt = shapes[n.input[0]][2], shapes[n.input[0]][3]
        ho, wo = (h - 1) * s + k - 2 * p, (wdt - 1) * s + k - 2 * p
        base = n.output[0] + "_subpixel"
        g.initializer.extend([
            numpy_helper.from_array(wc, base + "_w"),
            numpy_helper.from_array(np.tile(bias, s * s).astype(np.float32), base + "_b"),
            numpy_helper.from_array(np.array([p, p], np.int64), base + "_starts"),
            numpy_helper.from_array(np.array([p + ho, p + wo], np.int64), base + "_ends"),
            numpy_helper.from_array(np.array([2, 3], np.int64), base + "_axes"),
        ])
        conv_out = base + "_phases"
        nodes.append(helper.make_node("Conv", [n.input[0], base + "_w", base + "_b"], [conv_out],
                                      name=base + "_conv", kernel_shape=[t, t], pads=[t - 1] * 4))
        if s > 1:
            d2s = base + "_d2s"
            nodes.append(helper.make_node("DepthToSpace", [conv_out], [d2s], name=base + "_d2s",
                                          blocksize=s, mode="DCR"))
        else:
            d2s = conv_out
        nodes.append(helper.make_node("Slice", [d2s, base + "_starts", base + "_ends", base + "_axes"],
                                      [n.output[0]], name=base + "_crop"))
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    onnx.checker.check_model(model)
    return model


def latents(seed, n, shape):
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


class Latents(CalibrationDataReader):
    def __init__(self, name, shape, n):
        self.batches = iter([{name: latents(1000 + i, 1, shape)} for i in range(n)])

    def get_next(self):
        return next(self.batches, None)


def session(path, threads):
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def median_us(sess, feed, reps):
    sess.run(None, feed)
    t = []
    for _ in range(reps):
        start = time.perf_counter()
        sess.run(None, feed)
        t.append(time.perf_counter() - start)
    return float(np.median(t)) * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calib", type=int, default=32)
    ap.add_argument("--out", default=None, help="keep the rewritten and quantized models here")
    a = ap.parse_args()

    out = a.out or tempfile.mkdtemp(prefix="ort-int8-")
    os.makedirs(out, exist_ok=True)
    original = onnx.load(a.model)
    inp = original.graph.input[0]
    name = inp.name
    shape = [d.dim_value for d in inp.type.tensor_type.shape.dim][1:]

    # Fixed batch sizes for shape inference in the rewrite; the sessions take any batch.
    paths = {"f32": a.model}
    rewritten = sub_pixel(onnx.load(a.model))
    paths["f32 sub-pixel"] = os.path.join(out, "subpixel.onnx")
    onnx.save(rewritten, paths["f32 sub-pixel"])
    for label, src in [("int8 QDQ", a.model), ("int8 QDQ sub-pixel", paths["f32 sub-pixel"])]:
        dst = os.path.join(out, label.replace(" ", "_") + ".onnx")
        quantize_static(src, dst, Latents(name, shape, a.calib), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8)
        paths[label] = dst

    z1, z64 = latents(1, 1, shape), latents(2, 64, shape)
    ref = session(a.model, a.threads).run(None, {name: z64})[0]
    print(f"{a.model}: onnxruntime {ort.__version__}, {a.threads} intra-op thread(s), medians of {a.reps} runs")
    print(f"{'model':<22} {'batch 1 (us)':>13} {'batch 64 (us/sample)':>21} {'max |diff| vs f32':>18} {'PSNR (dB)':>10}")
    for label, path in paths.items():
        sess = session(path, a.threads)
        got = sess.run(None, {name: z64})[0]
        diff = float(np.abs(got - ref).max())
        # As `pocketgan quantize` reports it: peak-to-peak 2 (a tanh image).
        mse = float(np.mean((got.astype(np.float64) - ref) ** 2))
        psnr = float("inf") if mse == 0 else 10 * np.log10(4 / mse)
        b1 = median_us(sess, {name: z1}, a.reps)
        b64 = median_us(sess, {name: z64}, max(a.reps // 4, 3)) / 64
        print(f"{label:<22} {b1:>13.1f} {b64:>21.1f} {diff:>18.2e} {psnr:>10.1f}")
    print(f"models in {out}")


if __name__ == "__main__":
    main()

"""Writes two generator ONNX files in the shapes PyTorch's exporter produces, with seeded random
weights, for the runtime's import tests (no torch needed: onnx.helper writes the same graphs).

  dcgan_4d.onnx  pytorch/examples' DCGAN: z [N, nz, 1, 1] -> ConvTranspose (k4 s1 p0, no bias)
                 -> BatchNormalization -> Relu -> ConvTranspose (k4 s2 p1) -> BatchNormalization
                 -> Relu -> ConvTranspose (k4 s2 p1) -> Tanh, 16x16 RGB
  gemm_first.onnx  z [N, 32] -> Gemm (transB=1, like nn.Linear) -> Reshape (Constant shape)
                 -> BatchNormalization -> LeakyRelu -> Resize (nearest x2) -> Conv (k3 p1)
                 -> BatchNormalization -> Relu -> Conv (k3 p1) -> Sigmoid, 14x14 grey
  cgan.onnx      a conditional generator as the trainer exports it (and torch.cat of z with
                 nn.Embedding(class)): z [N, 16] and class int64 [N] -> Gather(class_embedding
                 [10, 8], class) -> Concat(z, ., axis=1) -> Gemm -> Reshape -> BatchNormalization
                 -> Relu -> ConvTranspose (k4 s2 p1) -> BatchNormalization -> Relu -> ConvTranspose
                 (k4 s2 p1) -> Tanh, 28x28 grey; metadata pocketgan.classes = 10

Usage: python3 torch_style_generators.py OUT_DIR
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(7)


def init(name, shape, scale=None):
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    scale = scale if scale is not None else 1.0 / np.sqrt(fan_in)
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def batchnorm(prefix, channels, x, y, inits, nodes):
    inits += [
        numpy_helper.from_array((1.0 + 0.2 * rng.standard_normal(channels)).astype(np.float32), prefix + ".weight"),
        numpy_helper.from_array((0.1 * rng.standard_normal(channels)).astype(np.float32), prefix + ".bias"),
        numpy_helper.from_array((0.1 * rng.standard_normal(channels)).astype(np.float32), prefix + ".running_mean"),
        numpy_helper.from_array((0.5 + rng.random(channels)).astype(np.float32), prefix + ".running_var"),
    ]
    nodes.append(helper.make_node("BatchNormalization", [x, prefix + ".weight", prefix + ".bias",
                                  prefix + ".running_mean", prefix + ".running_var"], [y], epsilon=1e-5))


def save(nodes, inits, inp, out, path, metadata=None):
    inputs = inp if isinstance(inp, list) else [inp]
    graph = helper.make_graph(nodes, "generator", inputs, [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytorch")
    model.ir_version = 8
    helper.set_model_props(model, metadata or {})
    onnx.checker.check_model(model)
    onnx.save(model, path)


def dcgan_4d(path, nz=24, ngf=8):
    nodes, inits = [], []
    inits.append(init("main.0.weight", [nz, ngf * 4, 4, 4], 0.02 * 10))
    nodes.append(helper.make_node("ConvTranspose", ["input", "main.0.weight"], ["t0"], kernel_shape=[4, 4],
                                  strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], group=1))
    batchnorm("main.1", ngf * 4, "t0", "b0", inits, nodes)
    nodes.append(helper.make_node("Relu", ["b0"], ["r0"]))
    inits.append(init("main.3.weight", [ngf * 4, ngf * 2, 4, 4]))
    nodes.append(helper.make_node("ConvTranspose", ["r0", "main.3.weight"], ["t1"], kernel_shape=[4, 4],
                                  strides=[2, 2], pads=[1, 1, 1, 1]))
    batchnorm("main.4", ngf * 2, "t1", "b1", inits, nodes)
    nodes.append(helper.make_node("Relu", ["b1"], ["r1"]))
    inits.append(init("main.6.weight", [ngf * 2, 3, 4, 4]))
    inits.append(init("main.6.bias", [3], 0.1))
    nodes.append(helper.make_node("ConvTranspose", ["r1", "main.6.weight", "main.6.bias"], ["t2"],
                                  kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("Tanh", ["t2"], ["output"]))
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", nz, 1, 1])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, 16, 16])
    save(nodes, inits, inp, out, path)


def gemm_first(path, nz=32, c=8):
    nodes, inits = [], []
    inits += [init("fc.weight", [c * 7 * 7, nz]), init("fc.bias", [c * 7 * 7], 0.1)]
    nodes.append(helper.make_node("Gemm", ["z", "fc.weight", "fc.bias"], ["g"], alpha=1.0, beta=1.0, transB=1))
    shape = numpy_helper.from_array(np.array([-1, c, 7, 7], dtype=np.int64), "shape_value")
    nodes.append(helper.make_node("Constant", [], ["shape"], value=shape))
    nodes.append(helper.make_node("Reshape", ["g", "shape"], ["x0"]))
    batchnorm("bn0", c, "x0", "b0", inits, nodes)
    nodes.append(helper.make_node("LeakyRelu", ["b0"], ["l0"], alpha=0.2))
    inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales"))
    nodes.append(helper.make_node("Resize", ["l0", "", "scales"], ["u0"], mode="nearest"))
    inits += [init("conv1.weight", [c, c, 3, 3]), init("conv1.bias", [c], 0.1)]
    nodes.append(helper.make_node("Conv", ["u0", "conv1.weight", "conv1.bias"], ["c1"], kernel_shape=[3, 3],
                                  pads=[1, 1, 1, 1]))
    batchnorm("bn1", c, "c1", "b1", inits, nodes)
    nodes.append(helper.make_node("Relu", ["b1"], ["r1"]))
    inits += [init("conv2.weight", [1, c, 3, 3]), init("conv2.bias", [1], 0.1)]
    nodes.append(helper.make_node("Conv", ["r1", "conv2.weight", "conv2.bias"], ["c2"], kernel_shape=[3, 3],
                                  pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("Sigmoid", ["c2"], ["image"]))
    inp = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", nz])
    out = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 14, 14])
    save(nodes, inits, inp, out, path)


def cgan(path, nz=16, classes=10, embed=8, c=16):
    nodes, inits = [], []
    # nn.Embedding's weights are standard normal, like the latent they are joined to.
    inits.append(init("class_embedding", [classes, embed], 1.0))
    nodes.append(helper.make_node("Gather", ["class_embedding", "class"], ["embedded"], axis=0))
    nodes.append(helper.make_node("Concat", ["z", "embedded"], ["joined"], axis=1))
    inits += [init("fc.weight", [c * 7 * 7, nz + embed]), init("fc.bias", [c * 7 * 7], 0.1)]
    nodes.append(helper.make_node("Gemm", ["joined", "fc.weight", "fc.bias"], ["g"], transB=1))
    inits.append(numpy_helper.from_array(np.array([-1, c, 7, 7], dtype=np.int64), "shape"))
    nodes.append(helper.make_node("Reshape", ["g", "shape"], ["x0"]))
    batchnorm("bn0", c, "x0", "b0", inits, nodes)
    nodes.append(helper.make_node("Relu", ["b0"], ["r0"]))
    inits.append(init("up1.weight", [c, c // 2, 4, 4]))
    nodes.append(helper.make_node("ConvTranspose", ["r0", "up1.weight"], ["t1"], kernel_shape=[4, 4],
                                  strides=[2, 2], pads=[1, 1, 1, 1]))
    batchnorm("bn1", c // 2, "t1", "b1", inits, nodes)
    nodes.append(helper.make_node("Relu", ["b1"], ["r1"]))
    inits += [init("up2.weight", [c // 2, 1, 4, 4]), init("up2.bias", [1], 0.1)]
    nodes.append(helper.make_node("ConvTranspose", ["r1", "up2.weight", "up2.bias"], ["t2"],
                                  kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("Tanh", ["t2"], ["image"]))
    inputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", nz]),
              helper.make_tensor_value_info("class", TensorProto.INT64, ["N"])]
    out = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 28, 28])
    names = ",".join(str(i) for i in range(classes))
    save(nodes, inits, inputs, out, path,
         {"pocketgan.classes": str(classes), "pocketgan.class_names": names})


if __name__ == "__main__":
    out_dir = sys.argv[1]
    dcgan_4d(f"{out_dir}/dcgan_4d.onnx")
    gemm_first(f"{out_dir}/gemm_first.onnx")
    cgan(f"{out_dir}/cgan.onnx")

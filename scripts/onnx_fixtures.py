#!/usr/bin/env python3
"""Tiny ONNX models with independent numpy reference outputs, for the ONNX importer's tests.

Writes into OUTDIR (Tests/Models/onnx-fixtures) one folder per fixture:
  model.onnx   built node by node with onnx.helper (seeded numpy weights)
  input.npy    float32 batch [N, ...] fed to the model
  output.npy   float64: the graph's output computed here in plain numpy — convolutions by
               shifted slices, BatchNormalization unfolded (γ·(z − mean)/√(var + ε) + β), pooling
               by reshapes — never by the code under test
and checks every reference against onnx's own ReferenceEvaluator before writing it.

Run it through scripts/make-onnx-fixtures.sh (pinned onnx + numpy in a private venv).
Usage: onnx_fixtures.py OUTDIR
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

OPSET = 17


def conv3x3(x, w, b):
    """x [N, C, H, W], w [O, C, 3, 3], b [O]: stride 1, zero padding 1, in float64."""
    n, c, h, wd = x.shape
    p = np.zeros((n, c, h + 2, wd + 2))
    p[:, :, 1:-1, 1:-1] = x
    out = np.zeros((n, w.shape[0], h, wd))
    for ky in range(3):
        for kx in range(3):
            out += np.einsum("nchw,oc->nohw", p[:, :, ky:ky + h, kx:kx + wd], w[:, :, ky, kx])
    return out + b[None, :, None, None]


def batchnorm(z, gamma, beta, mean, var, eps):
    """Inference BatchNormalization over axis 1 (channels or features), unfolded."""
    shape = (1, -1) + (1,) * (z.ndim - 2)
    r = lambda v: np.asarray(v, dtype=np.float64).reshape(shape)
    return r(gamma) * (z - r(mean)) / np.sqrt(r(var) + eps) + r(beta)


def maxpool2(x):
    """2×2, stride 2, floor mode: an odd last row or column is dropped, as ONNX's ceil_mode=0."""
    n, c, h, w = x.shape
    x = x[:, :, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def relu(x):
    return np.maximum(x, 0)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class Builder:
    """Collects initializers and nodes; weights are float32 (what a file holds), references use
    them converted to float64."""

    def __init__(self, rng):
        self.rng = rng
        self.inits = []
        self.nodes = []
        self.count = 0

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def rand(self, name, shape, scale):
        a = (self.rng.standard_normal(shape) * scale).astype(np.float32)
        self.init(name, a)
        return a.astype(np.float64)

    def node(self, op, inputs, name, **attrs):
        self.count += 1
        out = f"t{self.count}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def bn(self, x, channels, name, eps):
        gamma = self.rng.uniform(0.5, 1.5, channels).astype(np.float32)
        beta = (self.rng.standard_normal(channels) * 0.2).astype(np.float32)
        mean = (self.rng.standard_normal(channels) * 0.3).astype(np.float32)
        var = self.rng.uniform(0.2, 2.0, channels).astype(np.float32)
        names = [self.init(f"{name}.{k}", v) for k, v in
                 [("weight", gamma), ("bias", beta), ("running_mean", mean), ("running_var", var)]]
        out = self.node("BatchNormalization", [x] + names, name, epsilon=eps)
        return out, (gamma, beta, mean, var, eps)


def vgg_bn(rng):
    """The shape of the Fashion-MNIST VGG: three blocks conv3x3-BN-ReLU(-conv3x3-BN-ReLU)-maxpool2
    on 1×28×28 (28 → 14 → 7 → 3, the last pooling in floor mode), flatten, Gemm-ReLU-Dropout-Gemm.
    Dynamic batch dimension, Identity and Dropout as eval-time no-ops, no softmax (logits out)."""
    b = Builder(rng)
    x = "input"
    ref = rng.uniform(0, 1, (3, 1, 28, 28)).astype(np.float32)
    h = ref.astype(np.float64)
    channels = [1, 4, 4, 6, 8]
    convs = [(1, 4), (4, 4), "pool", (4, 6), "pool", (6, 8), "pool"]
    eps = [1e-5, 1e-3, 1e-5, 1e-5]
    k = 0
    for i, spec in enumerate(convs):
        if spec == "pool":
            x = b.node("MaxPool", [x], f"features.{i}.pool", kernel_shape=[2, 2], strides=[2, 2])
            h = maxpool2(h)
            continue
        cin, cout = spec
        w = b.rand(f"features.{i}.conv.weight", (cout, cin, 3, 3), 0.6 / np.sqrt(cin))
        bias = b.rand(f"features.{i}.conv.bias", (cout,), 0.1)
        x = b.node("Conv", [x, f"features.{i}.conv.weight", f"features.{i}.conv.bias"], f"features.{i}.conv",
                   kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
        x, (g, be, m, v, e) = b.bn(x, cout, f"features.{i}.bn", eps[k])
        k += 1
        x = b.node("Relu", [x], f"features.{i}.relu")
        h = relu(batchnorm(conv3x3(h, w, bias), g, be, m, v, e))
    x = b.node("Identity", [x], "features.identity")
    x = b.node("Flatten", [x], "flatten", axis=1)
    h = h.reshape(h.shape[0], -1)
    w1 = b.rand("classifier.0.weight", (16, 72), 0.3)
    b1 = b.rand("classifier.0.bias", (16,), 0.1)
    x = b.node("Gemm", [x, "classifier.0.weight", "classifier.0.bias"], "classifier.0", transB=1)
    x = b.node("Relu", [x], "classifier.1")
    x = b.node("Dropout", [x], "classifier.2")
    w2 = b.rand("classifier.3.weight", (10, 16), 0.4)
    b2 = b.rand("classifier.3.bias", (10,), 0.1)
    x = b.node("Gemm", [x, "classifier.3.weight", "classifier.3.bias"], "classifier.3", transB=1)
    h = relu(h @ w1.T + b1) @ w2.T + b2
    graph = helper.make_graph(
        b.nodes, "vgg-bn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", 10])],
        b.inits)
    return graph, ref, h


def mlp_reshape(rng):
    """[N, 2, 4, 4] → Reshape(constant [-1, 32]) → MatMul + Add (bias) → BatchNormalization
    (1-D, folded into the dense layer) → ReLU → Gemm with transB = 0, alpha and beta → Softmax."""
    b = Builder(rng)
    ref = rng.standard_normal((4, 2, 4, 4)).astype(np.float32)
    h = ref.astype(np.float64).reshape(4, -1)
    b.init("shape", np.array([-1, 32], dtype=np.int64))
    x = b.node("Reshape", ["input", "shape"], "reshape")
    w1 = b.rand("fc1.weight_t", (32, 12), 0.3)          # MatMul's B is [in, out]
    b1 = b.rand("fc1.bias", (12,), 0.1)
    x = b.node("MatMul", [x, "fc1.weight_t"], "fc1.matmul")
    x = b.node("Add", [x, "fc1.bias"], "fc1.add")
    x, (g, be, m, v, e) = b.bn(x, 12, "bn1", 1e-5)
    x = b.node("Relu", [x], "relu1")
    w2 = b.rand("fc2.weight_t", (12, 5), 0.4)
    b2 = b.rand("fc2.bias", (5,), 0.1)
    x = b.node("Gemm", [x, "fc2.weight_t", "fc2.bias"], "fc2", alpha=0.75, beta=2.0)
    x = b.node("Softmax", [x], "head", axis=-1)
    h = relu(batchnorm(h @ w1 + b1, g, be, m, v, e))
    h = softmax(0.75 * (h @ w2) + 2.0 * b2)
    graph = helper.make_graph(
        b.nodes, "mlp-reshape",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 2, 4, 4])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", 5])],
        b.inits)
    return graph, ref, h


def main(outdir):
    fixtures = {"vgg-bn": (vgg_bn, 20261201), "mlp-reshape": (mlp_reshape, 20261202)}
    for name, (make, seed) in fixtures.items():
        graph, x, expected = make(np.random.default_rng(seed))
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="scripts/onnx_fixtures.py")
        model.ir_version = 8
        onnx.checker.check_model(model, full_check=True)
        got = ReferenceEvaluator(model).run(None, {"input": x})[0]
        err = np.max(np.abs(got - expected))
        assert err < 1e-4, f"{name}: onnx's reference evaluator and numpy differ by {err}"
        folder = os.path.join(outdir, name)
        os.makedirs(folder, exist_ok=True)
        onnx.save_model(model, os.path.join(folder, "model.onnx"))
        np.save(os.path.join(folder, "input.npy"), x)
        np.save(os.path.join(folder, "output.npy"), expected)
        size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
        print(f"{name}: {size} bytes, numpy vs onnx reference max |diff| {err:.2e}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])

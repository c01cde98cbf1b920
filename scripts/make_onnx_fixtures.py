#!/usr/bin/env python3
"""Writes the small ONNX fixtures of the Swift importer's unit tests into Tests/Models/onnx-fixtures:
random seeded weights (not trained), exported the way scripts/train_vgg.py exports the real model
(opset 17, BatchNormalization unfused, eval mode, no constant folding), each with an input and the
outputs of ONNX Runtime (one thread) and of torch, which must agree to 1e-5.

  tiny-conv.onnx          Conv(1->4, 3x3, stride 2, pad 1, bias) -> BatchNormalization -> Relu
                          -> MaxPool(2x2, stride 2) -> Flatten -> Gemm(196->10); input [N,1,28,28]
  tiny-conv-input.npy     float32 [3, 1, 28, 28], uniform in [0, 1)
  tiny-conv-output.npy    float32 [3, 10], ONNX Runtime's output

BatchNorm's scale, shift, running mean and running variance are all random and distinct, so a
folding bug shows up (and the exporter has no equal initialisers to merge into Identity nodes).

Usage: make_onnx_fixtures.py [--out Tests/Models/onnx-fixtures] [--seed 7]
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn

from train_vgg import OPSET, check_onnx, inline_identities, sha256

MAX_BYTES = 20 * 1024


def tiny():
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 7 * 7, 10))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="Tests/Models/onnx-fixtures")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    model = tiny()
    bn = model[1]
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_(0.0, 0.2)
        bn.running_mean.normal_(0.0, 0.2)
        bn.running_var.uniform_(0.3, 2.0)
    model.eval()
    x = torch.rand(3, 1, 28, 28)

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "tiny-conv.onnx")
    torch.onnx.export(
        model, (x[:1],), path, dynamo=False, export_params=True, opset_version=OPSET,
        do_constant_folding=False, training=torch.onnx.TrainingMode.EVAL,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    inline_identities(path)
    ops = check_onnx(path, {"Conv", "BatchNormalization", "Relu", "MaxPool", "Flatten", "Gemm"},
                     MAX_BYTES)

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    diff = float(np.abs(got - want).max())
    if diff > 1e-5:
        raise SystemExit(f"make_onnx_fixtures: ONNX Runtime and torch differ by {diff}")
    np.save(os.path.join(args.out, "tiny-conv-input.npy"), x.numpy())
    np.save(os.path.join(args.out, "tiny-conv-output.npy"), got.astype(np.float32))
    print(f"make_onnx_fixtures: {path}: {os.path.getsize(path)} bytes, ops {' '.join(ops)}, "
          f"sha256 {sha256(path)}; |onnxruntime - torch| <= {diff:.2e}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Trains the narrow VGG-style Fashion-MNIST network of Tests/Models/fashion-mnist-vgg and exports
it to ONNX with its BatchNormalization nodes unfused (the Swift importer folds them into the convs).

Input: float32 [N, 1, 28, 28], pixel / 255 (no mean/std normalisation). Output: logits [N, 10].
Seeded; torch.use_deterministic_algorithms(True); the thread count is fixed (default 2) because
the reduction order of the CPU kernels depends on it. Run it through scripts/train-vgg.sh, which
installs the pinned venv (Benchmarks/peers/torch/install.sh) and fetches the data first.

Usage: train_vgg.py [--data data/fashion-mnist] [--out Tests/Models/fashion-mnist-vgg]
                    [--epochs 15] [--seed 1] [--threads 2] [--bench]
"""
import os

# Set before torch loads its OpenMP runtime: on shared cores, spinning worker threads that lose
# their core stall every parallel region (BatchNorm took 10x longer with 2 spinning threads here).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import hashlib
import json
import platform
import sys
import time
import warnings

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

# Channels of the three conv blocks and the width of the hidden classifier layer.
BLOCKS = (16, 32, 64)
HIDDEN = 256
OPSET = 17
# The only ONNX ops the Swift importer has to know for this model.
ALLOWED_OPS = {"Conv", "BatchNormalization", "Relu", "MaxPool", "Flatten", "Reshape", "Gemm",
               "MatMul", "Add"}
MAX_BYTES = 2 * 1024 * 1024

# The TorchScript exporter is the one with training=EVAL and do_constant_folding=False, which keep
# BatchNormalization as its own node; torch 2.13 warns that it is no longer the default.
warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")


def read_idx(path):
    """Reads an uncompressed IDX file (MNIST format) into a uint8 numpy array."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        sys.exit(f"train_vgg: {path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(data, prefix):
    images = read_idx(os.path.join(data, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(os.path.join(data, f"{prefix}-labels-idx1-ubyte"))
    return images, labels


def to_input(images_u8):
    """The model's input normalisation, exactly: float32(pixel) / 255, shape [N, 1, 28, 28]."""
    return torch.from_numpy(images_u8.astype(np.float32) / np.float32(255.0)).unsqueeze(1)


class VGG(nn.Module):
    def __init__(self, blocks=BLOCKS, hidden=HIDDEN):
        super().__init__()
        layers, cin, side = [], 1, 28
        for c in blocks:
            layers += [nn.Conv2d(cin, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                       nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                       nn.MaxPool2d(2)]
            cin, side = c, side // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(cin * side * side, hidden),
                                        nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


def augment(x, gen, shift):
    """Random horizontal flip and a random shift of up to `shift` pixels (zero fill), per image."""
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if shift == 0:
        return x
    pad = F.pad(x, (shift, shift, shift, shift))
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    base = torch.arange(28)
    rows = (dy[:, None] + base[None, :])[:, None, :, None].expand(n, 1, 28, 28 + 2 * shift)
    pad = pad.gather(2, rows)
    cols = (dx[:, None] + base[None, :])[:, None, None, :].expand(n, 1, 28, 28)
    return pad.gather(3, cols)


@torch.no_grad()
def evaluate(model, x, y, batch=1000):
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], batch):
        correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return correct / x.shape[0]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def export(model, path):
    model.eval()
    torch.onnx.export(
        model, (torch.zeros(1, 1, 28, 28),), path, dynamo=False, export_params=True,
        opset_version=OPSET, do_constant_folding=False, training=torch.onnx.TrainingMode.EVAL,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    inline_identities(path)
    ops = check_onnx(path, ALLOWED_OPS, MAX_BYTES)
    if ops.count("BatchNormalization") != 2 * len(BLOCKS):
        sys.exit(f"train_vgg: {path} lost its BatchNormalization nodes (folded at export?)")


def inline_identities(path):
    """The exporter stores equal initialisers once and adds Identity nodes for the others (an
    untrained BatchNorm's bias equals its running mean, both zero); the importer should not need
    Identity, so each such node becomes a copy of its initialiser. A no-op for the trained model."""
    m = onnx.load(path)
    inits = {i.name: i for i in m.graph.initializer}
    keep = []
    for n in m.graph.node:
        if n.op_type == "Identity" and n.input[0] in inits:
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[n.input[0]])
            copy.name = n.output[0]
            m.graph.initializer.append(copy)
        else:
            keep.append(n)
    if len(keep) != len(m.graph.node):
        del m.graph.node[:]
        m.graph.node.extend(keep)
        onnx.save(m, path)


def check_onnx(path, allowed, max_bytes):
    """onnx.checker plus this project's limits: only known ops, no Identity, size."""
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    ops = [n.op_type for n in m.graph.node]
    bad = sorted(set(ops) - allowed)
    if bad:
        sys.exit(f"train_vgg: {path} has ops outside {sorted(allowed)}: {bad}")
    size = os.path.getsize(path)
    if size > max_bytes:
        sys.exit(f"train_vgg: {path} is {size} bytes, over the {max_bytes}-byte limit")
    return ops


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/fashion-mnist")
    ap.add_argument("--out", default="Tests/Models/fashion-mnist-vgg")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1, help="peak SGD learning rate (one-cycle)")
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--shift", type=int, default=1, help="augmentation: largest shift in pixels")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bench", action="store_true", help="time 50 training steps and stop")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(args.seed)

    train_x, train_y = load_split(args.data, "train")
    test_x, test_y = load_split(args.data, "t10k")
    xtr, ytr = to_input(train_x), torch.from_numpy(train_y.astype(np.int64))
    xte, yte = to_input(test_x), torch.from_numpy(test_y.astype(np.int64))

    # channels_last: oneDNN's convolutions are ~20% cheaper in it on this CPU (measured).
    model = VGG().to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())
    print(f"train_vgg: torch {torch.__version__}, onnx {onnx.__version__}, numpy {np.__version__}, "
          f"python {platform.python_version()}, {args.threads} threads; blocks {BLOCKS}, hidden "
          f"{HIDDEN}, {params} parameters", flush=True)
    steps_per_epoch = (xtr.shape[0] + args.batch - 1) // args.batch
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                          weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, epochs=args.epochs,
                                                steps_per_epoch=steps_per_epoch, pct_start=0.2)
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(xtr.shape[0], generator=gen)
        total, te = 0.0, time.perf_counter()
        for s in range(steps_per_epoch):
            idx = perm[s * args.batch:(s + 1) * args.batch]
            xb = augment(xtr[idx], gen, args.shift).contiguous(memory_format=torch.channels_last)
            yb = ytr[idx]
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * idx.shape[0]
            if args.bench and s == 49:
                dt = time.perf_counter() - te
                print(f"train_vgg: bench: 50 steps of {args.batch} in {dt:.1f} s; an epoch would "
                      f"take ~{dt / 50 * steps_per_epoch:.0f} s")
                return
        # Test accuracy only now and then: it is progress output, never used to pick a model.
        note = ""
        if (epoch + 1) % 3 == 0 and epoch + 1 < args.epochs:
            note = f", test accuracy {evaluate(model, xte, yte):.4f}"
        print(f"train_vgg: epoch {epoch + 1}/{args.epochs}: loss {total / xtr.shape[0]:.4f}{note} "
              f"({time.perf_counter() - te:.0f} s)", flush=True)
    train_s = time.perf_counter() - t0
    model = model.to(memory_format=torch.contiguous_format)
    acc = evaluate(model, xte, yte)

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "model.onnx")
    export(model, path)
    ops = [n.op_type for n in onnx.load(path).graph.node]
    # The exported graph must compute what torch computed.
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    got = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]).run(
        None, {"input": xte[:100].numpy()})[0]
    with torch.no_grad():
        want = model(xte[:100]).numpy()
    diff = float(np.abs(got - want).max())
    if diff > 1e-4:
        sys.exit(f"train_vgg: ONNX Runtime and torch logits differ by {diff} on test images 0..99")
    record = {
        "model": "model.onnx",
        "sha256": sha256(path),
        "bytes": os.path.getsize(path),
        "opset": OPSET,
        "ops": sorted(set(ops)),
        "input": {"name": "input", "shape": ["N", 1, 28, 28], "dtype": "float32",
                  "normalisation": "pixel / 255 (uint8 IDX byte as float32, divided by 255); "
                                   "no mean/std"},
        "output": {"name": "logits", "shape": ["N", 10], "dtype": "float32"},
        "architecture": {"blocks": list(BLOCKS), "hidden": HIDDEN, "parameters": params},
        "training": {"epochs": args.epochs, "batch": args.batch, "optimizer": "SGD nesterov 0.9",
                     "peak_lr": args.lr, "schedule": "one-cycle, 20% warm-up",
                     "weight_decay": args.weight_decay, "seed": args.seed,
                     "augmentation": f"horizontal flip, shift up to {args.shift} px (zero fill)",
                     "threads": args.threads, "seconds": round(train_s, 1)},
        "test_accuracy_torch": acc,
        "max_abs_logit_diff_onnxruntime_vs_torch_first100": diff,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "onnx": onnx.__version__, "numpy": np.__version__},
    }
    with open(os.path.join(args.out, "provenance.json"), "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    print(f"train_vgg: trained in {train_s:.0f} s; test accuracy {acc:.4f} (10 000 images)")
    print(f"train_vgg: wrote {path}: {record['bytes']} bytes, opset {OPSET}, sha256 "
          f"{record['sha256']}")
    print(f"train_vgg: ops {' '.join(ops)}")
    print(f"train_vgg: |onnxruntime - torch| <= {diff:.2e} on the logits of test images 0..99")


if __name__ == "__main__":
    main()

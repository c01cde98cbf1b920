#!/usr/bin/env python3
"""Checks an exported Fashion-MNIST ONNX model with ONNX Runtime (one intra-op thread), the
independent reference for the Swift importer: test accuracy on the 10 000 test images, time per
image (batched and one by one), and fixtures for the Swift tests, written beside the model:

  first100-input.npy    float32 [100, 1, 28, 28]: test images 0..99 as the model takes them
                        (pixel / 255)
  first100-logits.npy   float32 [100, 10]: ONNX Runtime's logits for them
  t10k-labels-onnxruntime.npy
                        int32 [10000]: ONNX Runtime's label (argmax of its logits) for every
                        test image, which the imported model's float forward must match

It adds an "onnxruntime" section to provenance.json beside the model. Uses no torch.

Usage: check_onnx.py [--model Tests/Models/fashion-mnist-vgg/model.onnx] [--data data/fashion-mnist]
"""
import argparse
import json
import os
import platform
import time

import numpy as np
import onnx
import onnxruntime as ort

from train_vgg import load_split

BATCH = 100


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="Tests/Models/fashion-mnist-vgg/model.onnx")
    ap.add_argument("--data", default="data/fashion-mnist")
    ap.add_argument("--min-accuracy", type=float, default=0.93)
    args = ap.parse_args()
    out = os.path.dirname(args.model)

    images, labels = load_split(args.data, "t10k")
    x = (images.astype(np.float32) / np.float32(255.0))[:, None, :, :]
    sess = session(args.model)
    name = sess.get_inputs()[0].name

    sess.run(None, {name: x[:BATCH]})  # warm-up
    logits = np.empty((x.shape[0], 10), dtype=np.float32)
    # Wall and CPU time: on shared cores the CPU time is the steadier figure.
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, x.shape[0], BATCH):
        logits[i:i + BATCH] = sess.run(None, {name: x[i:i + BATCH]})[0]
    batched_ms = (time.perf_counter() - t0) / x.shape[0] * 1e3
    batched_cpu_ms = (time.process_time() - c0) / x.shape[0] * 1e3
    acc = float((logits.argmax(1) == labels).mean())
    single = 1000
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(single):
        one = sess.run(None, {name: x[i:i + 1]})[0]
        assert np.array_equal(one.argmax(1), logits[i:i + 1].argmax(1))
    single_ms = (time.perf_counter() - t0) / single * 1e3
    single_cpu_ms = (time.process_time() - c0) / single * 1e3
    load = os.getloadavg()[0]

    np.save(os.path.join(out, "first100-input.npy"), np.ascontiguousarray(x[:100]))
    np.save(os.path.join(out, "first100-logits.npy"), np.ascontiguousarray(logits[:100]))
    np.save(os.path.join(out, "t10k-labels-onnxruntime.npy"), logits.argmax(1).astype(np.int32))

    record_path = os.path.join(out, "provenance.json")
    record = json.load(open(record_path)) if os.path.exists(record_path) else {}
    record["onnxruntime"] = {
        "version": ort.__version__, "onnx": onnx.__version__, "python": platform.python_version(),
        "intra_op_threads": 1, "graph_optimization": "ORT default (all)",
        "test_accuracy": acc, "images": int(x.shape[0]),
        "ms_per_image_batch_100": round(batched_ms, 4),
        "ms_per_image_batch_1": round(single_ms, 4),
        "cpu_ms_per_image_batch_100": round(batched_cpu_ms, 4),
        "cpu_ms_per_image_batch_1": round(single_cpu_ms, 4),
        "load_average_1min": round(load, 2),
        "fixtures": {"first100-input.npy": "float32 [100,1,28,28], test images 0..99, pixel/255",
                     "first100-logits.npy": "float32 [100,10], ONNX Runtime logits"},
    }
    with open(record_path, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    print(f"check_onnx: onnxruntime {ort.__version__}, 1 intra-op thread: test accuracy {acc:.4f} "
          f"({x.shape[0]} images); per image: {batched_ms:.3f} ms wall, {batched_cpu_ms:.3f} ms CPU "
          f"in batches of {BATCH}; {single_ms:.3f} ms wall, {single_cpu_ms:.3f} ms CPU one by one "
          f"({single} images); load average {load:.1f}")
    print(f"check_onnx: wrote {out}/first100-input.npy, first100-logits.npy; updated {record_path}")
    if acc < args.min_accuracy:
        raise SystemExit(f"check_onnx: accuracy {acc:.4f} is under the floor {args.min_accuracy}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""ONNX Runtime peer of Benchmarks/neural-vs-onnxruntime.sh: float inference of an ONNX
classifier on IDX images, one thread, and its accuracy. Prints one JSON object on stdout.

The session is CPU-only with intra_op_num_threads = inter_op_num_threads = 1 and sequential
execution (ORT's default graph optimisations, all levels). Images are preprocessed as the
model's provenance says: float32(pixel) / 255, shape [N, 1, 28, 28] (scripts/train_vgg.py).
Every batch size of --batches is timed --repeats times over all --count images (after one
warm-up pass each); the batch size with the smallest median is reported, with every figure.
Only session.run is timed: reading and scaling the images happens once, before.

Usage: ort_bench.py --model M.onnx --images IDX --labels IDX [--first 0] [--count 10000]
                    [--batches 1,32,100,500,1000] [--repeats 3]
"""
import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import onnxruntime as ort


def read_idx(path, dims):
    """An IDX file (MNIST's format) as a uint8 array; dims is the expected number of axes."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\0\0" or data[2] != 0x08 or data[3] != dims:
        raise SystemExit(f"ort_bench: {path} is not an unsigned-byte IDX file with {dims} axes")
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--labels", required=True)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--batches", default="1,32,100,500,1000")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    end = args.first + args.count
    images = read_idx(args.images, 3)[args.first:end]
    labels = read_idx(args.labels, 1)[args.first:end].astype(np.int64)
    if images.shape[0] < args.count:
        raise SystemExit(f"ort_bench: {args.images} has fewer than {end} images (--first {args.first} --count {args.count})")
    x = np.ascontiguousarray((images.astype(np.float32) / np.float32(255.0))[:, None, :, :])
    sess = session(args.model)
    name = sess.get_inputs()[0].name
    n = x.shape[0]

    def run(batch):
        out = None
        for i in range(0, n, batch):
            logits = sess.run(None, {name: x[i:i + batch]})[0]
            if out is None:
                out = np.empty((n, logits.shape[1]), dtype=np.float32)
            out[i:i + batch] = logits
        return out

    results = []
    logits = None
    for batch in [int(b) for b in args.batches.split(",")]:
        run(batch)  # warm-up: ORT allocates per input shape on first use
        wall, cpu = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            out = run(batch)
            wall.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
        if logits is None:
            logits = out
        elif not np.array_equal(out.argmax(1), logits.argmax(1)):
            raise SystemExit(f"ort_bench: batch {batch} predicts other classes than batch {args.batches.split(',')[0]}")
        results.append({"batch": batch, "wall_ms": wall, "cpu_ms": cpu, "median_ms": statistics.median(wall)})
    best = min(results, key=lambda r: r["median_ms"])
    accuracy = float((logits.argmax(1) == labels).mean())
    print(json.dumps({
        "onnxruntime": ort.__version__, "numpy": np.__version__, "python": platform.python_version(),
        "threads": {"intra_op": 1, "inter_op": 1, "execution": "sequential"},
        "images": n, "first": args.first, "accuracy": accuracy, "best_batch": best["batch"],
        "median_ms": best["median_ms"], "min_ms": min(best["wall_ms"]), "max_ms": max(best["wall_ms"]),
        "batches": results, "load_average_1min": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Independent numpy reference for the layered-resolution core (used by the Swift tests).

Writes fixed cases into OUTDIR: operands, the chunks of METHOD.md §2 computed with numpy's
vectorised arithmetic (not the Swift code path), each resolution of the by-significance
schedule, and numpy's float64 product. Every expected integer is checked to be exact in
float64 before it is written.

Usage: numpy_reference.py OUTDIR
"""
import json
import os
import sys

import numpy as np


def chunks(v, p):
    """Sign-magnitude split, truncation toward zero: returns int64 array (n, *v.shape)."""
    v = np.asarray(v, dtype=np.float64)
    assert np.all(np.abs(v) < 2.0 ** p[0]), "value out of range"
    s = np.sign(v)
    u = np.abs(v) / 2.0 ** p[0]
    u = u - np.floor(u)
    out = []
    for i in range(1, len(p)):
        u = u * 2.0 ** (p[i - 1] - p[i])
        c = np.floor(u)
        u = u - c
        out.append((s * c).astype(np.int64))
    return np.stack(out)


def case(name, a, x, p, q, outdir):
    ca, cx = chunks(a, p), chunks(x, q)
    ma, mx = len(p) - 1, len(q) - 1
    unit = p[-1] + q[-1]
    acc = np.zeros(a.shape[0], dtype=np.int64)
    resolutions = []
    for layer in range(ma + mx - 1):
        for i in range(ma):
            j = layer - i
            if 0 <= j < mx:
                prod = ca[i].astype(np.int64) @ cx[j].astype(np.int64)
                acc = acc + prod * (2 ** ((p[i + 1] + q[j + 1]) - unit))
        assert np.all(np.abs(acc) < 2 ** 53), "expected value not exact in float64"
        resolutions.append(acc.astype(np.float64) * 2.0 ** unit)
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, "a.npy"), a)
    np.save(os.path.join(d, "x.npy"), x)
    np.save(os.path.join(d, "chunks_a.npy"), ca.reshape(ma * a.shape[0], a.shape[1]).astype(np.int32))
    np.save(os.path.join(d, "chunks_x.npy"), cx.astype(np.int32))
    np.save(os.path.join(d, "resolutions.npy"), np.stack(resolutions))
    np.save(os.path.join(d, "float64_product.npy"), a @ x)
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump({"p": p, "q": q}, f)


def main():
    outdir = sys.argv[1]
    rng = np.random.default_rng(20240211)
    # The paper's worked example as a 1×1 product: -13.625 · 1 with p = [4, 0, -3].
    case("worked_example", np.array([[-13.625]]), np.array([1.0]), [4, 0, -3], [1, 0], outdir)
    case("small_uniform", rng.uniform(-1, 1, (5, 7)), rng.uniform(-1, 1, 7), [0, -4, -8], [0, -4, -8], outdir)
    case("mixed_widths", rng.uniform(-40, 40, (9, 16)), rng.uniform(-3, 3, 16), [6, 3, -1, -6], [2, -3, -5], outdir)
    case("float32_data", rng.uniform(-1, 1, (8, 33)).astype(np.float32).astype(np.float64),
         rng.normal(0, 1, 33).clip(-7.9, 7.9), [0, -5, -10], [3, -2, -7, -9], outdir)
    print(f"wrote 4 cases to {outdir}")


if __name__ == "__main__":
    main()

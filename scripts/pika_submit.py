#!/usr/bin/env python3
"""Submit a mat-vec job with an inline matrix to the pool using only pika + numpy, then print
its outputs — a worked example of docs/WIRE.md (and an interoperability test of it).

Usage: pika_submit.py URL [--n N] [--chunks M] [--bits B] [--deadline-ms D] [--seed S]
Prints one JSON line per output: job, resolution, of, status, elapsed_ms, bound, and for the
final output max_error (vs numpy's float64 product) and within_bound (bool). Exit 0 when the
final output arrived and every element is within its bound.
"""
import argparse
import json
import struct
import sys
import time
import uuid

import numpy as np
import pika

# The same sign-magnitude split as the numpy cross-check (METHOD.md §2).
sys.path.insert(0, __import__('os').path.dirname(__file__))
from numpy_reference import chunks  # noqa: E402


def fitted(v, m, b):
    mx = float(np.max(np.abs(v)))
    p0 = int(np.floor(np.log2(mx))) + 1 if mx > 0 else 0
    if mx > 0 and 2.0 ** p0 <= mx:
        p0 += 1
    return [p0 - i * b for i in range(m + 1)]


def stats(values, c):
    """planeRowL1, planeRowMax, valueRowL1 for rows of `values` (rows × n) and chunks c (m × rows × n)."""
    l1 = np.abs(c).sum(axis=2).astype(np.float64)
    mx = np.abs(c).max(axis=2).astype(np.float64)
    return l1.tobytes() + mx.tobytes() + np.abs(values).sum(axis=1).astype(np.float64).tobytes()


def headers(kind, **kw):
    h = {"sr-version": 1, "sr-kind": kind}
    h.update(kw)
    return h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--chunks", type=int, default=2)
    ap.add_argument("--bits", type=int, default=6)
    ap.add_argument("--deadline-ms", type=int, default=5000)
    ap.add_argument("--row-block", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    n = args.n
    a = rng.uniform(-1, 1, (n, n))
    x = rng.uniform(-1, 1, n)
    p, q = fitted(a, args.chunks, args.bits), fitted(x, args.chunks, args.bits)
    ca, cx = chunks(a, p), chunks(x, q)          # (m, n, n), (m, n)
    m = args.chunks
    layers = [[[i, l - i] for i in range(m) if 0 <= l - i < m] for l in range(2 * m - 1)]
    job_id = "py" + uuid.uuid4().hex[:12]
    now = int(time.time() * 1000)
    deadline = now + args.deadline_ms
    spec = {"id": job_id, "mode": "layered", "matrix": "inline", "rows": n, "columns": n, "vectors": 1,
            "partitionA": p, "partitionX": q, "layers": layers, "rowBlock": args.row_block,
            "createdMs": now, "deadlineMs": deadline}
    js = json.dumps(spec, sort_keys=True).encode()
    body = struct.pack("<I", len(js)) + js + stats(a, ca) + stats(x.reshape(1, n), cx.reshape(m, 1, n))
    # The operands follow (sr-carries: x,a): x (n × 1) then the inline A (n × n), Float64 LE,
    # so the aggregator can recompute the statistics and check every partial (docs/TRUST.md).
    body += x.astype("<f8").tobytes() + a.astype("<f8").tobytes()

    conn = pika.BlockingConnection(pika.URLParameters(args.url))
    ch = conn.channel()
    ch.confirm_delivery()
    # Bind an exclusive queue to this job's outputs before publishing anything.
    res = ch.queue_declare(queue="", exclusive=True, auto_delete=True)
    ch.queue_bind(res.method.queue, "sr.outputs", routing_key=f"job.{job_id}.#")
    props = lambda h, **kw: pika.BasicProperties(headers=h, delivery_mode=2,
                                                  content_type="application/octet-stream", **kw)
    ch.basic_publish("sr.jobs", "open", body, props(headers("open", **{"sr-job": job_id, "sr-deadline-ms": deadline, "sr-carries": "x,a"})))
    delay = f"sr.delay.{args.deadline_ms}ms"
    ch.queue_declare(delay, durable=True, arguments={
        "x-message-ttl": args.deadline_ms, "x-expires": args.deadline_ms + 600000,
        "x-dead-letter-exchange": "sr.deadline", "x-dead-letter-routing-key": "deadline"})
    ch.queue_bind(delay, "sr.delay", routing_key=delay)
    ch.basic_publish("sr.delay", delay, b"", props(headers("deadline", **{"sr-job": job_id, "sr-deadline-ms": deadline})))
    pa, px = ",".join(map(str, p)), ",".join(map(str, q))
    for layer, pairs in enumerate(layers):
        for i, j in pairs:
            for b, start in enumerate(range(0, n, args.row_block)):
                end = min(n, start + args.row_block)
                task = f"{job_id}/{i}.{j}/{b}"
                h = headers("task", **{"sr-job": job_id, "sr-task": task, "sr-mode": "layered", "sr-layer": layer,
                                       "sr-chunk-a": i, "sr-chunk-x": j, "sr-row-begin": start, "sr-row-end": end,
                                       "sr-rows": n, "sr-columns": n, "sr-vectors": 1, "sr-deadline-ms": deadline,
                                       "sr-matrix": "inline", "sr-partition-a": pa, "sr-partition-x": px})
                payload = cx[j].astype("<i4").tobytes() + a[start:end].astype("<f8").tobytes()
                ch.basic_publish("sr.task", "task", payload, props(h, priority=max(0, 9 - layer), message_id=task,
                                                                 expiration=str(max(1, deadline - int(time.time() * 1000)))))
    exact = a @ x
    ok = False
    give_up = time.time() + args.deadline_ms / 1000 + 15
    for method, properties, body in ch.consume(res.method.queue, inactivity_timeout=1):
        if time.time() > give_up:
            break
        if method is None:
            continue
        ch.basic_ack(method.delivery_tag)
        h = properties.headers
        rows, vecs = h["sr-rows"], h["sr-vectors"]
        vals = np.frombuffer(body, "<f8", rows * vecs)
        bound = np.frombuffer(body, "<f8", rows * vecs, offset=8 * rows * vecs)
        line = {"job": job_id, "resolution": h["sr-resolution"], "of": h["sr-of"], "status": h["sr-status"].decode()
                if isinstance(h["sr-status"], bytes) else h["sr-status"], "elapsed_ms": h["sr-elapsed-ms"],
                "bound": float(bound.max())}
        err = np.abs(exact - vals)
        line["max_error"] = float(err.max())
        line["within_bound"] = bool(np.all(err <= bound))
        print(json.dumps(line), flush=True)
        if line["status"] != "partial":
            ok = line["within_bound"]
            break
    ch.cancel()
    conn.close()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

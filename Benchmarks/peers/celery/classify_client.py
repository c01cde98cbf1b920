"""Client of the Celery classify peer: a Poisson stream (or an idle sequence) of jobs of --batch images.

    python classify_client.py --images IDX --first F --count N --batch B --rate R --seed S
    python classify_client.py --idle ... [--gap-ms G]

The images (an unsigned-byte IDX file, e.g. Fashion-MNIST's t10k-images-idx3-ubyte) from --first
are cut into jobs of --batch consecutive images (a remainder smaller than --batch is left out:
the same jobs as `srproduce infer-stream`). Each job is one ``peer.classify`` task carrying the
raw uint8 pixels (the worker scales them by 1/255 and runs ONNX Runtime). For each job the
latency is client-observed: from the moment the client starts submitting it (``apply_async``)
to the moment the client has received its result message. Output, one JSON object per line:
per job
    {"type":"job","system":"celery","job":J,"status":"complete"|"failed","final_ms":F,
     "labels":[…]}    (labels: one per image, [] when the job failed or never came back)
then
    {"type":"summary","system":"celery","count":JOBS,"batch":B,"p50_final_ms":…,"span_ms":…,…}
span_ms runs from the first submission to the last result. Jobs are never cancelled.

The loop is client.py's (one thread; arrivals fixed before the run; between two arrivals it
pumps the rpc:// result consumer, whose per-result callback timestamps the result): see there.
"""

import argparse
import json
import os
import socket
import sys
import time
import uuid

import numpy as np


def read_idx(path, dims):
    """An unsigned-byte IDX file as a uint8 array with `dims` axes."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\0\0" or data[2] != 0x08 or data[3] != dims:
        sys.exit(f"classify_client.py: {path} is not an unsigned-byte IDX file with {dims} axes")
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", required=True, help="IDX images file (uint8 pixels)")
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--count", type=int, required=True, help="images (cut into jobs of --batch)")
    p.add_argument("--batch", type=int, default=10, help="images per job")
    p.add_argument("--rate", type=float, default=10.0, help="mean arrivals per second (Poisson)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--idle", action="store_true", help="one job at a time, --gap-ms apart")
    p.add_argument("--gap-ms", type=float, default=20.0, help="pause between idle jobs")
    p.add_argument("--timeout-s", type=float, default=60.0,
                   help="give up on outstanding jobs this long after the last submission")
    a = p.parse_args()
    if a.count < a.batch or a.batch < 1 or not (a.rate > 0) or a.first < 0:
        p.error("need --count ≥ --batch ≥ 1, --first ≥ 0 and --rate > 0")
    return a


def pct(sorted_values, q):
    """The same order statistic srproduce stream prints: v[min(n-1, floor(n*q))]."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def main():
    args = parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from worker import app, classify  # noqa: E402  (needs SR_AMQP_URL)

    images = read_idx(args.images, 3)[args.first:args.first + args.count]
    if images.shape[0] < args.count:
        sys.exit(f"classify_client.py: {args.images} has fewer than {args.first + args.count} images")
    jobs = args.count // args.batch
    payloads = [np.ascontiguousarray(images[j * args.batch:(j + 1) * args.batch]).tobytes() for j in range(jobs)]
    rng = np.random.default_rng(args.seed)
    gaps = rng.exponential(1.0 / args.rate, jobs)
    gaps[0] = 0.0
    offsets = np.cumsum(gaps)

    token = uuid.uuid4().hex[:8]
    ids = [f"classify-{token}-{j}" for j in range(jobs)]
    submitted = [None] * jobs
    received = [None] * jobs
    answers = [None] * jobs
    failed = [False] * jobs
    consumer = app.backend.result_consumer
    outstanding = 0

    def on_ready(j):
        def callback(result):
            nonlocal outstanding
            received[j] = time.perf_counter()
            outstanding -= 1
            if result.successful():
                answers[j] = result.result
            else:
                failed[j] = True
                print(f"classify_client.py: job {ids[j]} failed: {result.result!r}", file=sys.stderr)
        return callback

    def submit(j):
        nonlocal outstanding
        submitted[j] = time.perf_counter()
        r = classify.apply_async((payloads[j], args.batch), task_id=ids[j])
        outstanding += 1
        r.then(on_ready(j))

    def pump(timeout):
        try:
            consumer.drain_events(timeout=max(timeout, 1e-4))
        except socket.timeout:
            pass

    with app.producer_or_acquire() as producer:   # connection and reply queue before the clock
        app.backend.on_task_call(producer, ids[0])
    lags = []
    start = time.perf_counter()
    if args.idle:
        for j in range(jobs):
            if j:
                time.sleep(args.gap_ms / 1000)
            submit(j)
            limit = time.perf_counter() + args.timeout_s
            while received[j] is None and time.perf_counter() < limit:
                pump(limit - time.perf_counter())
    else:
        due = start + offsets
        j = 0
        while j < jobs:
            now = time.perf_counter()
            if now >= due[j]:
                lags.append((now - due[j]) * 1000)
                submit(j)
                j += 1
            else:
                pump(due[j] - now)
        limit = time.perf_counter() + args.timeout_s
        while outstanding > 0 and time.perf_counter() < limit:
            pump(limit - time.perf_counter())

    finals = []
    for j in range(jobs):
        ok = received[j] is not None and not failed[j]
        ms = (received[j] - submitted[j]) * 1000 if received[j] is not None else None
        labels = list(np.frombuffer(answers[j], dtype=np.uint8).tolist()) if ok else []
        if ok and len(labels) != args.batch:
            sys.exit(f"classify_client.py: job {ids[j]} returned {len(labels)} labels for {args.batch} images")
        if ok:
            finals.append(ms)
        print(json.dumps({"type": "job", "system": "celery", "job": j, "status": "complete" if ok else "failed",
                          "final_ms": ms, "labels": labels}))
    done = [t for t in received if t is not None]
    finals.sort()
    print(json.dumps({"type": "summary", "system": "celery", "mode": "idle" if args.idle else "poisson",
                      "count": jobs, "batch": args.batch, "complete": len(finals), "failed": jobs - len(finals),
                      "p50_final_ms": pct(finals, 0.5), "p95_final_ms": pct(finals, 0.95),
                      "span_ms": (max(done) - submitted[0]) * 1000 if done else None,
                      "rate": None if args.idle else args.rate, "seed": args.seed,
                      "p95_submit_lag_ms": pct(sorted(lags), 0.95), "max_submit_lag_ms": max(lags) if lags else 0.0}),
          flush=True)
    try:
        consumer.stop()
        app.close()
    except Exception:
        pass
    if len(finals) < jobs:
        sys.exit(2)


if __name__ == "__main__":
    main()

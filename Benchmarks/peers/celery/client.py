"""Client of the Celery peer: a Poisson stream (or an idle sequence) of y = A @ x jobs.

    python client.py --rate R --count N --seed S [--deadline-ms D] [--n COLUMNS] [--matrix A.npy]
    python client.py --idle --count N [--gap-ms G] ...

Every job's x is random in [-1, 1) float32 (seeded; all drawn before the run starts). For each
job the latency is client-observed: from the moment the client starts submitting it
(``apply_async``) to the moment the client has received its result message. Output, one JSON
object per line: per job
    {"type":"job","system":"celery","job":ID,"status":"complete"|"failed","final_ms":F,
     "first_ms":F,"resolution":1,"of":1[,"on_time":bool]}
(first = final: a Celery job has one answer), then
    {"type":"summary","system":"celery","count":N,"p50_final_ms":…,"p95_final_ms":…,"span_ms":…,…}
span_ms runs from the first submission to the last result. With --deadline-ms the deadline only
decides on_time (final_ms <= D) and within_deadline in the summary; jobs are never cancelled.

How it stays faithful under load: one thread does everything. Arrival times are fixed before
the run; between two arrivals the client pumps the rpc:// result consumer
(``drain_events(timeout=time to next arrival)``), whose per-result callback (``AsyncResult.then``)
timestamps the result the moment its message is handled. A submission is therefore never held
up by waiting for an earlier job, the collecting adds no thread hand-off, and no kombu
connection is shared between threads. The summary reports p95_ and max_submit_lag_ms: how late
submissions left against their Poisson schedule (CPU contention on a small machine).

The first job's answer is checked against numpy's A @ x (after the run, so the check costs
nothing during it); a wrong answer exits with status 1.
"""

import argparse
import json
import os
import socket
import sys
import time
import uuid

import numpy as np


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=10.0, help="mean arrivals per second (Poisson)")
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--deadline-ms", type=float, default=None, help="on-time threshold per job")
    p.add_argument("--n", type=int, default=None, help="columns of A (default: from --matrix)")
    p.add_argument("--matrix", default=os.environ.get("SR_PEER_MATRIX"),
                   help="the .npy the workers loaded (for n and the answer check; default $SR_PEER_MATRIX)")
    p.add_argument("--idle", action="store_true", help="one job at a time, --gap-ms apart")
    p.add_argument("--gap-ms", type=float, default=20.0, help="pause between idle jobs")
    p.add_argument("--timeout-s", type=float, default=60.0,
                   help="give up on outstanding jobs this long after the last submission")
    p.add_argument("--no-check", action="store_true", help="skip the numpy check of job 0")
    a = p.parse_args()
    if a.count < 1 or not (a.rate > 0):
        p.error("--count must be ≥ 1 and --rate > 0")
    if a.matrix is None and (a.n is None or not a.no_check):
        p.error("need --matrix (or SR_PEER_MATRIX) for the answer check, or --n with --no-check")
    return a


def pct(sorted_values, q):
    """The same order statistic srproduce stream prints: v[min(n-1, floor(n*q))]."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def main():
    args = parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from worker import app, matvec  # noqa: E402  (needs SR_AMQP_URL)

    a = np.load(args.matrix, mmap_mode="r") if args.matrix else None
    n = args.n if args.n is not None else a.shape[1]
    if a is not None and a.shape[1] != n:
        sys.exit(f"client.py: --n {n} but {args.matrix} has {a.shape[1]} columns")
    rng = np.random.default_rng(args.seed)
    xs = rng.uniform(-1, 1, (args.count, n)).astype(np.float32)
    payloads = [xs[i].tobytes() for i in range(args.count)]
    gaps = rng.exponential(1.0 / args.rate, args.count)
    gaps[0] = 0.0
    offsets = np.cumsum(gaps)

    token = uuid.uuid4().hex[:8]
    ids = [f"celery-{token}-{i}" for i in range(args.count)]
    submitted = [None] * args.count   # perf_counter when apply_async started
    received = [None] * args.count    # perf_counter when the result message was handled
    answers = [None] * args.count
    failed = [False] * args.count
    consumer = app.backend.result_consumer
    outstanding = 0

    def on_ready(i):
        def callback(result):
            nonlocal outstanding
            received[i] = time.perf_counter()
            outstanding -= 1
            if result.successful():
                answers[i] = result.result
            else:
                failed[i] = True
                print(f"client.py: job {ids[i]} failed: {result.result!r}", file=sys.stderr)
        return callback

    def submit(i):
        nonlocal outstanding
        submitted[i] = time.perf_counter()
        r = matvec.apply_async((payloads[i],), task_id=ids[i])
        outstanding += 1
        r.then(on_ready(i))  # registers the pending result; the callback fires on its message

    def pump(timeout):
        try:
            consumer.drain_events(timeout=max(timeout, 1e-4))
        except socket.timeout:
            pass

    # Open the broker connection and the reply queue before the clock starts.
    with app.producer_or_acquire() as producer:
        app.backend.on_task_call(producer, ids[0])
    lags = []
    start = time.perf_counter()
    if args.idle:
        for i in range(args.count):
            if i:
                time.sleep(args.gap_ms / 1000)
            submit(i)
            limit = time.perf_counter() + args.timeout_s
            while received[i] is None and time.perf_counter() < limit:
                pump(limit - time.perf_counter())
    else:
        due = start + offsets
        i = 0
        while i < args.count:
            now = time.perf_counter()
            if now >= due[i]:
                lags.append((now - due[i]) * 1000)
                submit(i)
                i += 1
            else:
                pump(due[i] - now)
        limit = time.perf_counter() + args.timeout_s
        while outstanding > 0 and time.perf_counter() < limit:
            pump(limit - time.perf_counter())

    lines, finals = [], []
    for i in range(args.count):
        ok = received[i] is not None and not failed[i]
        ms = (received[i] - submitted[i]) * 1000 if received[i] is not None else None
        job = {"type": "job", "system": "celery", "job": ids[i],
               "status": "complete" if ok else "failed",
               "resolution": 1 if ok else 0, "of": 1,
               "first_ms": ms if ok else None, "final_ms": ms}
        if args.deadline_ms is not None:
            job["on_time"] = bool(ok and ms <= args.deadline_ms)
        if ok:
            finals.append(ms)
        lines.append(job)
    done = [t for t in received if t is not None]
    finals.sort()
    summary = {"type": "summary", "system": "celery", "mode": "idle" if args.idle else "poisson",
               "count": args.count, "complete": len(finals),
               "failed": args.count - len(finals),
               "p50_final_ms": pct(finals, 0.5), "p95_final_ms": pct(finals, 0.95),
               "span_ms": (max(done) - submitted[0]) * 1000 if done else None,
               "rate": None if args.idle else args.rate, "seed": args.seed, "n": n,
               "p95_submit_lag_ms": pct(sorted(lags), 0.95),
               "max_submit_lag_ms": max(lags) if lags else 0.0}
    if args.deadline_ms is not None:
        summary["deadline_ms"] = args.deadline_ms
        summary["within_deadline"] = sum(j["on_time"] for j in lines) / args.count

    # The answer check, after the clock stopped.
    if not args.no_check:
        if answers[0] is None:
            print("client.py: job 0 has no answer to check", file=sys.stderr)
            sys.exit(1)
        y = np.frombuffer(answers[0], dtype=np.float32)
        ref = np.asarray(a, dtype=np.float32) @ xs[0]
        err = float(np.max(np.abs(y.astype(np.float64) - ref)))
        tol = 1e-5 * float(np.max(np.abs(np.asarray(a, dtype=np.float32)) @ np.abs(xs[0])))
        if y.shape != ref.shape or not err <= tol:
            print(f"client.py: job 0 answer is WRONG: shape {y.shape} vs {ref.shape}, "
                  f"max |y - A@x| = {err:.3g} > {tol:.3g}", file=sys.stderr)
            sys.exit(1)
        summary["check_max_abs_error"] = err
    for j in lines:
        print(json.dumps(j))
    print(json.dumps(summary), flush=True)
    try:  # close the result consumer's connection cleanly
        consumer.stop()
        app.close()
    except Exception:
        pass
    if len(finals) < args.count:
        sys.exit(2)


if __name__ == "__main__":
    main()

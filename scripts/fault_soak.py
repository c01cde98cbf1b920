#!/usr/bin/env python3
"""Client side of scripts/fault-soak.sh: submits a stream of mat-vec jobs with the project's own
producer (`srproduce matvec`, one process per job, registered matrix), watches every final output
with an independent pika client, and checks each one against numpy.

    fault_soak.py matrix --out A.npy --size N [--seed S]
    fault_soak.py run --url URL --dir RUN --srproduce BIN --store DIR --matrix-name NAME
                      --matrix A.npy [--seconds 60] [--rate 10] [--deadlines 20ms,200ms,1s]
                      [--grace 30] [--linger 5] [--seed 1]
                      [--aggregator-kill-at S --aggregator-exe PATH [--aggregator-min-open 1]
                       [--aggregator-kill-on open|final] [--aggregator-kill-last S]]

`run` writes RUN/stream.started (wall-clock seconds of the first submission) when the stream
starts, so that the fault schedule of fault-soak.sh can align with it; progress goes to stderr;
the summary table to stdout; every figure to RUN/result.json (and one `SOAK_RESULT {json}`
line on stdout). Exit 0 only if no job is lost, duplicated or wrong. It also writes
RUN/open.count every 10 ms (jobs whose open record was published and that have no final yet;
fault-soak.sh restarts the broker while there are some) and, with --aggregator-kill-at, kills
the aggregator itself (kill -9 of the PID in RUN/aggregator.pid, checked to run
--aggregator-exe; see maybe_kill_aggregator), marking RUN/killed/<pid> and RUN/faults.times.

The watcher is independent of the code under test: its own AMQP client (pika), its own durable
queues (they survive a broker restart, so finals published while it reconnects are kept):
`soak.<tag>.finals` bound to the topic exchange `sr.outputs` with `job.*.final`, and
`soak.<tag>.opens` bound to the direct exchange `sr.jobs` with `open` (a copy of every open
record: the partitions each job used). A message redelivered to the watcher after its own
reconnect is recognised (redelivered flag + identical body) and not counted twice; any other
second final of a job is a duplicate.

Checks of every final (docs/WIRE.md, output):
  * |A·x − value| ≤ bound elementwise, with A·x computed by numpy in float64 and the bound
    widened by numpy's own worst-case rounding, n·2⁻⁵³·(|A|·|x|) (rigorous for any summation
    order), so a pass is never an artefact of numpy's rounding;
  * status `complete`: resolution = R and value = the exact fixed-point product of the chunks
    (scripts/numpy_reference.py's split with the open record's partitions, integer arithmetic
    — float64 BLAS only where every partial sum is an integer below 2^53 — bit for bit);
  * status `failed`: wrong (nothing in a soak should be refused).
A job is lost when no final has arrived by its deadline + --grace seconds.
"""
import argparse
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pika

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from numpy_reference import chunks  # noqa: E402  (the independent sign-magnitude split)


def log(msg):
    print(f"fault-soak[client] {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def parse_duration_ms(text):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"'{text}' is not a duration like 200ms or 1s")
    v = float(m.group(1))
    return int(round(v if m.group(2) == "ms" else v * 1000))


def hval(h, key, default=None):
    v = (h or {}).get(key, default)
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


# ------------------------------------------------------------------------------------- watcher
class Watcher(threading.Thread):
    """Consumes copies of the open records and every final output into memory, reconnecting
    (with the same durable queues) whenever the broker goes away."""

    def __init__(self, url, tag, prefix, events_path):
        super().__init__(daemon=True)
        self.url, self.prefix = url, prefix
        self.finals_q, self.opens_q = f"soak.{tag}.finals", f"soak.{tag}.opens"
        self.lock = threading.Lock()
        self.finals = {}        # job -> [record]
        self.opens = {}         # job -> [json record]
        self.open_seen = {}     # job -> when its open record first reached the watcher
        self.foreign = 0        # finals of other jobs (other prefixes)
        self.watcher_redeliveries = 0
        self.reconnects = 0
        self.disconnected_s = 0.0
        self.on_final_hook = None   # called (time, job) after each final of this stream
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.error = None
        self.events = open(events_path, "a", buffering=1)

    def _declare(self, ch):
        # The roles declare these exchanges with exactly these properties (docs/WIRE.md).
        ch.exchange_declare("sr.outputs", exchange_type="topic", durable=True)
        ch.exchange_declare("sr.jobs", exchange_type="direct", durable=True)
        ch.queue_declare(self.finals_q, durable=True)
        ch.queue_bind(self.finals_q, "sr.outputs", routing_key="job.*.final")
        ch.queue_declare(self.opens_q, durable=True)
        ch.queue_bind(self.opens_q, "sr.jobs", routing_key="open")

    def on_final(self, ch, method, props, body):
        now = time.time()
        h = props.headers or {}
        job = hval(h, "sr-job") or method.routing_key.split(".")[1]
        if not job.startswith(self.prefix):
            self.foreign += 1
            ch.basic_ack(method.delivery_tag)
            return
        rec = {"job": job, "received": now, "status": hval(h, "sr-status"), "resolution": hval(h, "sr-resolution"),
               "of": hval(h, "sr-of"), "rows": hval(h, "sr-rows"), "vectors": hval(h, "sr-vectors"),
               "reason": hval(h, "sr-reason"), "message_id": props.message_id, "redelivered": bool(method.redelivered),
               "sha": hashlib.sha256(body).hexdigest(), "body": body}
        with self.lock:
            prior = self.finals.setdefault(job, [])
            if rec["redelivered"] and any(p["sha"] == rec["sha"] for p in prior):
                # Our own unacked copy, redelivered after the watcher's reconnect: not a new final.
                self.watcher_redeliveries += 1
            else:
                prior.append(rec)
        self.events.write(json.dumps({k: v for k, v in rec.items() if k != "body"}) + "\n")
        ch.basic_ack(method.delivery_tag)
        if self.on_final_hook is not None:
            self.on_final_hook(now, job)

    def on_open(self, ch, method, props, body):
        h = props.headers or {}
        job = hval(h, "sr-job")
        if job and job.startswith(self.prefix) and len(body) >= 4:
            n = int.from_bytes(body[:4], "little")
            try:
                spec = json.loads(body[4:4 + n])
                with self.lock:
                    self.opens.setdefault(job, []).append(spec)
                    self.open_seen.setdefault(job, time.time())
            except ValueError as e:
                log(f"undecodable open record of {job}: {e}")
        ch.basic_ack(method.delivery_tag)

    def run(self):
        params = pika.URLParameters(self.url)
        params.heartbeat = 10
        params.connection_attempts = 1
        params.socket_timeout = 5
        lost_at = None
        while not self.stop.is_set():
            try:
                conn = pika.BlockingConnection(params)
            except Exception:  # noqa: BLE001 — broker down or booting: try again shortly
                time.sleep(0.3)
                continue
            try:
                ch = conn.channel()
                self._declare(ch)
                ch.basic_qos(prefetch_count=500)
                ch.basic_consume(self.finals_q, self.on_final)
                ch.basic_consume(self.opens_q, self.on_open)
                if lost_at is not None:
                    self.reconnects += 1
                    self.disconnected_s += time.time() - lost_at
                    log(f"watcher reconnected after {time.time() - lost_at:.1f} s")
                    lost_at = None
                self.ready.set()
                while not self.stop.is_set():
                    conn.process_data_events(time_limit=0.2)
                conn.close()
            except Exception as e:  # noqa: BLE001 — connection lost: reconnect
                if lost_at is None:
                    lost_at = time.time()
                    log(f"watcher lost its connection ({type(e).__name__}: {e}); reconnecting")
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
                time.sleep(0.3)
        self.events.close()

    def cleanup(self):
        """Deletes the watcher's queues (best effort; the private broker goes away anyway)."""
        try:
            conn = pika.BlockingConnection(pika.URLParameters(self.url))
            ch = conn.channel()
            ch.queue_delete(self.finals_q)
            ch.queue_delete(self.opens_q)
            conn.close()
        except Exception:  # noqa: BLE001
            pass


# ------------------------------------------------------------------------------------- submitter
RETRY_SAFE = re.compile(r"cannot reach RabbitMQ|while logging in|while connecting|refused the login")


class Job:
    def __init__(self, jid, index, deadline_ms, x_path):
        self.id, self.index, self.deadline_ms, self.x_path = jid, index, deadline_ms, x_path
        self.attempts = 0
        self.state = "scheduled"          # scheduled → running → submitted | failed
        self.proc = None
        self.attempt_start = None         # wall clock of the current attempt
        self.first_attempt = None
        self.confirmed = None             # wall clock when srproduce exited 0
        self.errors = []


def run(args):
    os.makedirs(args.dir, exist_ok=True)
    xdir = os.path.join(args.dir, "x")
    os.makedirs(xdir, exist_ok=True)
    a = np.load(args.matrix)
    n = a.shape[1]
    tag = f"{os.getpid():x}{random.randrange(1 << 20):05x}"
    prefix = f"soak{tag}-"
    watcher = Watcher(args.url, tag, prefix, os.path.join(args.dir, "finals.jsonl"))
    watcher.start()
    if not watcher.ready.wait(60):
        log("error: the watcher could not connect to the broker within 60 s")
        return 2
    log(f"watcher bound ({watcher.finals_q}, {watcher.opens_q}); job ids {prefix}NNNNN")

    env = dict(os.environ, SR_AMQP_URL=args.url, SR_STORE=args.store, OPENBLAS_NUM_THREADS="1")
    rng = np.random.default_rng(args.seed)
    arrivals = random.Random(args.seed)
    deadlines = args.deadlines
    jobs, order = {}, []
    retry_queue = []                  # jobs waiting for the broker to come back (FIFO)
    broker_down = False
    last_probe = 0.0
    max_running = 16
    running = []
    submit_log = open(os.path.join(args.dir, "submissions.jsonl"), "a", buffering=1)

    def start_attempt(job):
        job.attempts += 1
        job.attempt_start = time.time()
        if job.first_attempt is None:
            job.first_attempt = job.attempt_start
        job.state = "running"
        job.proc = subprocess.Popen(
            [args.srproduce, "matvec", "--matrix", args.matrix_name, "--vector", job.x_path,
             "--deadline", f"{job.deadline_ms}ms", "--id", job.id],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        running.append(job)

    def reap():
        nonlocal broker_down
        for job in list(running):
            rc = job.proc.poll()
            if rc is None:
                continue
            out, err = job.proc.communicate()
            running.remove(job)
            now = time.time()
            rec = {"job": job.id, "attempt": job.attempts, "rc": rc, "start": job.attempt_start, "end": now}
            if rc == 0:
                job.state, job.confirmed = "submitted", now
                if broker_down:
                    log(f"broker reachable again (job {job.id} submitted); {len(retry_queue)} job(s) queued for retry")
                broker_down = False
            else:
                msg = (err.strip().splitlines() or ["(no message)"])[-1]
                rec["error"] = msg
                job.errors.append(msg)
                if RETRY_SAFE.search(msg):
                    # Nothing was published (the connection never opened): safe to submit again.
                    if not broker_down:
                        log(f"broker unreachable ({msg[:100]}); queueing submissions")
                    broker_down = True
                    job.state = "scheduled"
                    retry_queue.append(job)
                else:
                    job.state = "failed"
                    log(f"job {job.id}: srproduce failed after connecting (not retried): {msg}")
            submit_log.write(json.dumps(rec) + "\n")

    def pump(now):
        # While the broker is down, one probe at a time every 0.5 s; otherwise drain the queue.
        nonlocal last_probe
        while retry_queue:
            if broker_down:
                if running or now - last_probe < 0.5:
                    return
                last_probe = now
                start_attempt(retry_queue.pop(0))
                return
            if len(running) >= max_running:
                return
            start_attempt(retry_queue.pop(0))

    def on_term(signum, frame):
        for job in running:
            job.proc.kill()
        sys.exit(143)
    signal.signal(signal.SIGTERM, on_term)

    kill_info = {}
    t0 = time.time()
    with open(os.path.join(args.dir, "stream.started"), "w") as f:
        f.write(f"{t0:.3f}\n")
    log(f"stream: {args.seconds} s at {args.rate}/s, deadlines {','.join(f'{d}ms' for d in deadlines)}, {n}×{n} matrix")
    next_at = t0
    index = 0
    last_progress = last_count = t0
    agg_killed = False
    count_path = os.path.join(args.dir, "open.count")

    if args.aggregator_kill_on == "final":
        watcher.on_final_hook = lambda now, job: maybe_kill_aggregator(now, final_of=job)

    def write_open_count():
        # For fault-soak.sh, which restarts the broker at a moment the pool holds open jobs.
        with watcher.lock:
            k = sum(1 for j in watcher.open_seen if not watcher.finals.get(j))
        with open(count_path + ".tmp", "w") as f:
            f.write(f"{k}\n")
        os.replace(count_path + ".tmp", count_path)

    kill_lock = threading.Lock()

    def maybe_kill_aggregator(now, final_of=None):
        """kill -9 of the aggregator, once, from AGGREGATOR_KILL_AT on. --aggregator-kill-on open
        (the default): at the first moment the pool holds at least --aggregator-min-open open jobs
        (open record published — the watcher has its copy — and no final yet); `final`: the
        moment the watcher receives a final (called from the watcher's thread), when the
        aggregator may not have acknowledged that job's inputs yet — the window in which a
        restarted aggregator answers the job again. At --aggregator-kill-last whatever it holds.
        Done here, not in fault-soak.sh, so that the decision and the kill are microseconds
        apart: jobs stay open for tens of milliseconds. The PID comes from fault-soak.sh's pid
        file and is checked to run the soak's private sraggregate."""
        nonlocal agg_killed
        if agg_killed or args.aggregator_kill_at is None or now - t0 < args.aggregator_kill_at:
            return
        if os.path.exists(os.path.join(args.dir, "broker.down")):
            return
        with watcher.lock:
            open_jobs = sorted(j for j in watcher.open_seen if not watcher.finals.get(j))
        late = now - t0 >= args.aggregator_kill_last
        if args.aggregator_kill_on == "open" and len(open_jobs) < args.aggregator_min_open and not late:
            return
        if args.aggregator_kill_on == "final" and final_of is None and not late:
            return
        if not kill_lock.acquire(blocking=False):
            return
        try:
            if not agg_killed:
                kill_aggregator(open_jobs, final_of)
        finally:
            kill_lock.release()

    def kill_aggregator(open_jobs, final_of):
        nonlocal agg_killed
        try:
            pid = int(open(os.path.join(args.dir, "aggregator.pid")).read())
            if os.readlink(f"/proc/{pid}/exe") != args.aggregator_exe:
                return                    # being restarted (or gone): try again shortly
        except (OSError, ValueError):
            return
        os.makedirs(os.path.join(args.dir, "killed"), exist_ok=True)
        open(os.path.join(args.dir, "killed", str(pid)), "w").close()
        os.kill(pid, signal.SIGKILL)
        t = time.time()
        with open(os.path.join(args.dir, "faults.times"), "a") as f:
            f.write(f"aggregator-kill {t:.6f}\n")
        agg_killed = True
        trigger = f" on the final of {final_of}," if final_of else ""
        log(f"kill -9 aggregator (pid {pid}) at t={t - t0:.3f}s{trigger} holding {len(open_jobs)} open job(s): {' '.join(open_jobs[:20])}")
        kill_info.update(pid=pid, t=t, open_jobs=open_jobs, final_of=final_of)

    while True:
        now = time.time()
        if now >= t0 + args.seconds:
            break
        if now >= next_at:
            jid = f"{prefix}{index:05d}"
            x = rng.uniform(-1.0, 1.0, n)
            path = os.path.join(xdir, f"{jid}.npy")
            np.save(path, x)
            job = Job(jid, index, deadlines[index % len(deadlines)], path)
            jobs[jid] = job
            order.append(jid)
            retry_queue.append(job)
            index += 1
            next_at += arrivals.expovariate(args.rate)
        reap()
        pump(time.time())
        if args.aggregator_kill_on == "open" or time.time() - t0 >= (args.aggregator_kill_last or 0):
            maybe_kill_aggregator(time.time())
        if time.time() - last_count >= 0.01:
            write_open_count()
            last_count = time.time()
        if now - last_progress >= 5:
            with watcher.lock:
                got = sum(1 for j in order if watcher.finals.get(j))
            log(f"t={now - t0:5.1f}s scheduled {len(order)}, submitted {sum(j.state == 'submitted' for j in jobs.values())}, "
                f"running {len(running)}, queued {len(retry_queue)}, with final {got}")
            last_progress = now
        time.sleep(min(0.005, max(0.0, next_at - time.time())))
    stream_end = time.time()
    log(f"stream over: {len(order)} jobs scheduled in {stream_end - t0:.1f} s; finishing submissions")
    # Let queued submissions go out (the broker may still be restarting), for at most 90 s.
    while (retry_queue or running) and time.time() < stream_end + 90:
        reap()
        pump(time.time())
        time.sleep(0.01)
    for job in running:
        job.proc.kill()
        job.proc.communicate()
        job.state = "failed"
        job.errors.append("srproduce still running 90 s after the stream ended (killed)")
    for job in retry_queue:
        job.state = "failed"
        job.errors.append("never submitted: the broker stayed unreachable")
    submitted = [jobs[j] for j in order if jobs[j].state == "submitted"]
    log(f"{len(submitted)} submitted, {len(order) - len(submitted)} not; waiting for finals (grace {args.grace} s)")

    # Wait for a final of every submitted job, until its deadline + grace; then linger for duplicates.
    def deadline_wall(job):
        with watcher.lock:
            opens = watcher.opens.get(job.id)
        if opens:
            return opens[-1]["deadlineMs"] / 1000.0
        return (job.confirmed or job.attempt_start) + job.deadline_ms / 1000.0

    give_up = max([deadline_wall(j) for j in submitted] + [time.time()]) + args.grace
    while time.time() < give_up:
        with watcher.lock:
            missing = [j for j in submitted if not watcher.finals.get(j.id)]
        if not missing:
            break
        time.sleep(0.2)
    log(f"every submitted job has a final; lingering {args.linger} s for duplicates" if not missing
        else f"{len(missing)} job(s) without a final at deadline + {args.grace} s")
    time.sleep(args.linger)
    watcher.stop.set()
    watcher.join(10)
    watcher.cleanup()

    result = verify(args, a, jobs, order, watcher, t0, stream_end, deadline_wall)
    result["aggregator_kill"] = {"at_s": round(kill_info["t"] - t0, 3), "pid": kill_info["pid"], "on": args.aggregator_kill_on,
                                 "final_of": kill_info["final_of"], "open_jobs": len(kill_info["open_jobs"]),
                                 "open_job_ids": kill_info["open_jobs"]} if kill_info else None
    with open(os.path.join(args.dir, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    print_summary(result)
    bad = result["lost"] + result["duplicated"] + result["wrong"]
    return 0 if bad == 0 else 1


# ------------------------------------------------------------------------------------- verification
def exact_fixed_point(a, x, p, q, pairs, cache):
    """Σ over chunk pairs (i, j) of chunk_i(A)·chunk_j(x)·2^{p_{i+1}+q_{j+1}}, exactly (int64), as float64."""
    key = tuple(p)
    if key not in cache:
        ca = chunks(a, p)                                       # (mA, rows, cols) int64
        cache[key] = (ca.astype(np.float64), int(np.abs(ca).max()))
    ca, max_a = cache[key]
    cx = chunks(x, q)                                           # (mX, cols) int64
    # Each chunk product is an integer dot product; in float64 (BLAS) it is exact when every
    # partial sum stays below 2^53, which n·max|chunk_A|·max|chunk_x| bounds.
    exact_in_float = a.shape[1] * max_a * int(np.abs(cx).max()) < 2 ** 53
    unit = p[-1] + q[-1]
    acc = np.zeros(a.shape[0], dtype=np.int64)
    for i, j in pairs:
        if exact_in_float:
            prod = (ca[i] @ cx[j].astype(np.float64)).astype(np.int64)
        else:
            prod = ca[i].astype(np.int64) @ cx[j]
        shift = (p[i + 1] + q[j + 1]) - unit
        assert np.all(np.abs(prod) < 2 ** (62 - shift)), "exact reference would overflow int64"
        acc += prod << shift
    assert np.all(np.abs(acc) < 2 ** 53), "exact reference not representable in float64"
    return acc.astype(np.float64) * 2.0 ** unit


def check_final(rec, a, abs_a, x, spec, cache):
    """Returns (ok, reason, max_error, max_bound)."""
    if rec["status"] == "failed":
        return False, f"failed final: {rec['reason']}", None, None
    if rec["status"] not in ("complete", "deadline"):
        return False, f"unexpected status {rec['status']!r} on a final key", None, None
    rows, vecs = rec["rows"], rec["vectors"]
    body = rec["body"]
    if rows != a.shape[0] or vecs != 1 or len(body) != 16 * rows * vecs:
        return False, f"shape rows={rows} vectors={vecs} body={len(body)} B", None, None
    v = np.frombuffer(body, "<f8", rows * vecs)
    bound = np.frombuffer(body, "<f8", rows * vecs, offset=8 * rows * vecs)
    ref = a @ x
    n = a.shape[1]
    slack = 1.01 * n * 2.0 ** -53 * (abs_a @ np.abs(x))       # |numpy − exact| ≤ this, any order
    err = np.abs(ref - v)
    max_err, max_bound = float(err.max()), float(bound.max())
    if not np.all(np.isfinite(v)) or not np.all(np.isfinite(bound)) or np.any(bound < 0):
        return False, "non-finite value or negative bound", max_err, max_bound
    outside = err > bound + slack
    if np.any(outside):
        k = int(np.argmax(err - bound))
        return False, (f"{int(outside.sum())} element(s) outside their bound (row {k}: |error| {err[k]:.3e} > "
                       f"bound {bound[k]:.3e})"), max_err, max_bound
    if rec["status"] == "complete":
        if rec["resolution"] != rec["of"]:
            return False, f"complete at resolution {rec['resolution']}/{rec['of']}", max_err, max_bound
        if spec is None:
            return True, "complete (no open record seen: bound check only)", max_err, max_bound
        pairs = [tuple(pair) for layer in spec["layers"] for pair in layer]
        exact = exact_fixed_point(a, x, spec["partitionA"], spec["partitionX"], pairs, cache)
        if not np.array_equal(exact, v):
            d = np.abs(exact - v)
            k = int(np.argmax(d))
            return False, (f"complete but not the exact fixed-point product: {int((d > 0).sum())} element(s) differ, "
                           f"row {k}: {v[k]!r} vs {exact[k]!r}"), max_err, max_bound
    elif rec["resolution"] > rec["of"]:
        return False, f"deadline final at resolution {rec['resolution']} > {rec['of']}", max_err, max_bound
    return True, "", max_err, max_bound


def verify(args, a, jobs, order, watcher, t0, stream_end, deadline_wall):
    abs_a = np.abs(a)
    cache = {}
    with watcher.lock:
        finals = {k: list(v) for k, v in watcher.finals.items()}
        opens = {k: list(v) for k, v in watcher.opens.items()}
    res = {"scheduled": len(order), "submitted": 0, "submit_failed": 0, "exactly_one_final": 0, "complete": 0,
           "deadline": 0, "lost": 0, "duplicated": 0, "duplicated_identical": 0, "wrong": 0,
           "answered_unconfirmed": 0, "unexpected_ids": 0, "submit_retries": 0, "jobs_retried": 0,
           "resolution_histogram": {}, "lost_ids": [], "duplicated_ids": [], "wrong": 0, "wrong_ids": [],
           "submit_failed_ids": [], "problems": [], "late_ms": {}, "watcher_reconnects": watcher.reconnects,
           "watcher_redeliveries": watcher.watcher_redeliveries, "stream_seconds": round(stream_end - t0, 1),
           "opens_seen": sum(1 for j in order if opens.get(j)), "max_error": 0.0,
           "max_error_over_bound": 0.0}
    lateness = []
    for jid in order:
        job = jobs[jid]
        res["submit_retries"] += max(0, job.attempts - 1)
        res["jobs_retried"] += job.attempts > 1
        fs = finals.get(jid, [])
        spec = opens[jid][-1] if opens.get(jid) else None
        if job.state != "submitted":
            res["submit_failed"] += 1
            res["submit_failed_ids"].append(jid)
            if fs:
                res["answered_unconfirmed"] += 1
        else:
            res["submitted"] += 1
        x = np.load(job.x_path)
        bad = []
        for rec in fs:
            ok, why, max_err, max_bound = check_final(rec, a, abs_a, x, spec, cache)
            if max_err is not None:
                res["max_error"] = max(res["max_error"], max_err)
                if max_bound:
                    res["max_error_over_bound"] = max(res["max_error_over_bound"], max_err / max_bound)
            if not ok:
                bad.append(why)
        if job.state != "submitted":
            if bad:
                res["wrong"] += 1
                res["wrong_ids"].append(jid)
                res["problems"].append({"job": jid, "kind": "wrong (unconfirmed submission)", "detail": bad})
            continue
        if not fs:
            res["lost"] += 1
            res["lost_ids"].append(jid)
            res["problems"].append({"job": jid, "kind": "lost", "detail": {
                "deadline_ms": job.deadline_ms, "attempts": job.attempts, "confirmed": job.confirmed,
                "open_record_seen": spec is not None}})
            continue
        if len(fs) > 1:
            res["duplicated"] += 1
            res["duplicated_ids"].append(jid)
            identical = len({r["sha"] for r in fs}) == 1
            res["duplicated_identical"] += identical
            res["problems"].append({"job": jid, "kind": "duplicated", "detail": [
                {k: r[k] for k in ("status", "resolution", "of", "received", "message_id", "redelivered", "sha")} for r in fs]})
        if bad:
            res["wrong"] += 1
            res["wrong_ids"].append(jid)
            res["problems"].append({"job": jid, "kind": "wrong", "detail": bad})
        first = fs[0]
        if len(fs) == 1 and not bad:
            res["exactly_one_final"] += 1
        if first["status"] == "complete":
            res["complete"] += 1
        elif first["status"] == "deadline":
            res["deadline"] += 1
        key = f"{first['resolution']}/{first['of']}"
        res["resolution_histogram"][key] = res["resolution_histogram"].get(key, 0) + 1
        late = (first["received"] - deadline_wall(job)) * 1000.0
        lateness.append((first["status"], late))
    # How late finals reach the watcher: deadline finals (answered at the deadline), and how
    # many finals of either status come more than 1 s after their job's deadline.
    s = sorted(v for st, v in lateness if st == "deadline")
    if s:
        q = lambda f: round(s[min(len(s) - 1, int(len(s) * f))], 1)
        res["late_ms"] = {"deadline_finals_p50": q(0.5), "deadline_finals_p95": q(0.95), "deadline_finals_max": round(s[-1], 1)}
    res["late_ms"]["finals_after_deadline_plus_1s"] = sum(1 for _, v in lateness if v > 1000)
    # How many jobs each fault hit: jobs held by the pool (open record published — seen by the
    # watcher — and no final yet) at the moment of a kill, or at any time while the broker was down.
    with watcher.lock:
        seen = dict(watcher.open_seen)
    spans = [(seen[j], finals[j][0]["received"]) for j in order if finals.get(j) and j in seen]
    marks, stop = {"consumer-kill": [], "aggregator-kill": []}, None
    path = os.path.join(args.dir, "faults.times")
    for line in open(path) if os.path.exists(path) else []:
        kind, t = line.split()
        if kind in marks:
            marks[kind].append(float(t))
        elif kind == "broker-stop":
            stop = float(t)
        elif kind == "broker-up" and stop is not None:
            marks.setdefault("broker-restart", []).append((stop, float(t)))
    hit = lambda a, b: sum(1 for s0, s1 in spans if s0 <= b and s1 >= a)
    res["jobs_in_flight_at"] = {
        "consumer_kills": sum(hit(t, t) for t in marks["consumer-kill"]),
        "aggregator_kill": sum(hit(t, t) for t in marks["aggregator-kill"]),
        "broker_restart": sum(hit(a, b) for a, b in marks.get("broker-restart", []))}
    known = set(order)
    res["unexpected_ids"] = sum(1 for j in finals if j not in known)
    return res


def print_summary(r):
    rows = [("jobs scheduled", r["scheduled"]), ("jobs submitted (srproduce confirmed)", r["submitted"]),
            ("  submissions retried (broker down at connect)", f"{r['jobs_retried']} jobs, {r['submit_retries']} retries"),
            ("  not submitted", r["submit_failed"]),
            ("exactly one final, within bound", r["exactly_one_final"]),
            ("  complete (bit-exact fixed-point product)", r["complete"]),
            ("  deadline (best resolution at the deadline)", r["deadline"]),
            ("lost (no final by deadline + grace)", r["lost"]),
            ("duplicated (> 1 final)", f"{r['duplicated']} ({r['duplicated_identical']} byte-identical)"),
            ("wrong (outside bound / not exact / failed)", r["wrong"]),
            ("finals for unconfirmed submissions", r["answered_unconfirmed"]),
            ("resolutions reached (first final)", ", ".join(f"{k}: {v}" for k, v in sorted(r["resolution_histogram"].items()))),
            ("deadline finals after their deadline, ms (p50/p95/max)",
             f"{r['late_ms'].get('deadline_finals_p50')} / {r['late_ms'].get('deadline_finals_p95')} / {r['late_ms'].get('deadline_finals_max')}"),
            ("finals > 1 s after their deadline", r["late_ms"]["finals_after_deadline_plus_1s"]),
            ("max |error| (max |error| / max bound)", f"{r['max_error']:.3e} ({r['max_error_over_bound']:.3f})"),
            ("jobs in flight at consumer kills / aggregator kill / broker restart",
             " / ".join(str(r["jobs_in_flight_at"][k]) for k in ("consumer_kills", "aggregator_kill", "broker_restart"))),
            ("aggregator kill -9 (by this client)", (f"at {r['aggregator_kill']['at_s']} s, holding {r['aggregator_kill']['open_jobs']} open job(s)"
                                                    + (f", on the final of {r['aggregator_kill']['final_of']}" if r["aggregator_kill"]["final_of"] else "")
                                                    if r.get("aggregator_kill") else "none")),
            ("watcher reconnects", r["watcher_reconnects"])]
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{w}}  {v}")
    for p in r["problems"][:20]:
        print(f"  PROBLEM {p['kind']}: {p['job']}: {json.dumps(p['detail'], default=str)[:400]}")
    slim = {k: v for k, v in r.items() if k != "problems"}
    print("SOAK_RESULT " + json.dumps(slim, separators=(",", ":")))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("matrix", help="write the soak's matrix (uniform in [-1, 1), float64)")
    m.add_argument("--out", required=True)
    m.add_argument("--size", type=int, required=True)
    m.add_argument("--seed", type=int, default=1)
    r = sub.add_parser("run", help="submit the stream, watch and verify")
    r.add_argument("--url", required=True)
    r.add_argument("--dir", required=True)
    r.add_argument("--srproduce", required=True)
    r.add_argument("--store", required=True)
    r.add_argument("--matrix-name", required=True)
    r.add_argument("--matrix", required=True, help="the .npy registered as --matrix-name (the reference's A)")
    r.add_argument("--seconds", type=float, default=60)
    r.add_argument("--rate", type=float, default=10)
    r.add_argument("--deadlines", type=lambda s: [parse_duration_ms(t) for t in s.split(",")], default=[20, 200, 1000])
    r.add_argument("--grace", type=float, default=30)
    r.add_argument("--linger", type=float, default=5)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--aggregator-kill-at", type=float, default=None, help="seconds into the stream (default: no kill)")
    r.add_argument("--aggregator-kill-last", type=float, default=None)
    r.add_argument("--aggregator-min-open", type=int, default=1)
    r.add_argument("--aggregator-kill-on", choices=("open", "final"), default="open")
    r.add_argument("--aggregator-exe", help="the sraggregate executable whose PID DIR/aggregator.pid holds")
    args = ap.parse_args()
    if args.cmd == "run" and args.aggregator_kill_at is not None:
        if args.aggregator_exe is None:
            ap.error("--aggregator-kill-at needs --aggregator-exe")
        if args.aggregator_kill_last is None:
            args.aggregator_kill_last = args.aggregator_kill_at + 15
    if args.cmd == "matrix":
        rng = np.random.default_rng(args.seed)
        np.save(args.out, rng.uniform(-1.0, 1.0, (args.size, args.size)))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

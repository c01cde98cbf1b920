"""Measurement half of Benchmarks/e2e-matvec.sh (which installs the peers' venv, starts and stops
the pool, and cleans up on exit).

Given a running pool (SR_AMQP_URL and SR_STORE in the environment, the broker's beam PID) this,
for every size n of --sizes, one size at a time:
  1. writes A (n×n float32, uniform [-1, 1), numpy default_rng(--matrix-seed), generated in row
     blocks so 16384² needs no float64 copy) to WORK/a-<n>.npy and registers it as bench-<n>;
  2. starts K Celery peer workers (Benchmarks/peers/celery/workers.sh) on the same broker,
     each loading that .npy;
  3. warms every system up: --warmup jobs (default 2K) of one-shot, m=2 and m=3 at 20 jobs/s
     with the long deadline, and as many Celery jobs; their times are logged and kept in the
     CSV (phase "warmup") but not in the table;
  4. measures the broker's idle CPU rate (ms/s) over --idle-s seconds with every client
     connected and nothing running;
  5. runs --repeats rounds; in each round one stream per system — one-shot, layered m=2
     (--chunks 2), layered m=3 (--chunks 3), Celery — with --count Poisson arrivals at --rate
     jobs/s, seed --seed + round (the same for every system of a round; srproduce and the Celery
     client draw different vectors from it), in an order rotated by one per round;
  6. stops the Celery workers and deletes the .npy (the store keeps its own copy).
Before every run it waits until the sr.tasks/sr.partials/sr.jobs/peer.celery queues hold no
ready message (QueueProbe of deadline_curve.py), then records the broker's CPU (utime+stime of
its beam process) around the run. Broker CPU per job in the table is net of idle:
(CPU during the run − idle rate × the run's wall time) ÷ --count; the CSV has it raw as well.
The idle rate (2–7 ms/s here: statistics timers, connections) would otherwise add idle ÷ rate
(1–3 ms per job at 2 jobs/s) to every figure. /proc counts CPU in clock ticks (10 ms), so a
run's figure is ±10 ms ÷ --count.

Per run: p50 (and p95) of the client-observed time to the first resolution and to the final
output over all --count jobs (a job without one counts as +inf, so p50 is "—" when fewer than
half got there). Table cells: the median over the rounds of the per-run values, with min–max in
parentheses; ratios are computed per round (runs of one round are adjacent in time, which
cancels most of the machine's drift) and then summarised the same way.

Markdown table on stdout, progress on stderr, every run (warm-ups included) in --csv.
"""

import argparse
import csv
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deadline_curve import QueueProbe, beam_cpu_ms  # noqa: E402  (same directory)

SYSTEMS = [("oneshot", "one-shot"), ("layered2", "m=2"), ("layered3", "m=3"), ("celery", "Celery")]
LABEL = dict(SYSTEMS)


def log(msg):
    print(f"e2e-matvec: {msg}", file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def parse_args():
    p = argparse.ArgumentParser(description="End-to-end matvec table (see module doc).")
    p.add_argument("--srproduce", required=True)
    p.add_argument("--python", default=sys.executable, help="the peers' venv python (Celery workers, client)")
    p.add_argument("--workers-sh", required=True)
    p.add_argument("--celery-client", required=True)
    p.add_argument("--beam-pid", type=int, required=True)
    p.add_argument("--work", required=True, help="scratch directory (matrices, Celery dirs, logs)")
    p.add_argument("--sizes", default="2048,4096,8192")
    p.add_argument("--consumers", type=int, default=2)
    p.add_argument("--workers", type=int, default=None, help="Celery workers (default: --consumers)")
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--rate", type=float, default=2.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--bits", type=int, default=6)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--matrix-seed", type=int, default=7)
    p.add_argument("--deadline-ms", type=int, default=30000)
    p.add_argument("--warmup", type=int, default=None, help="warm-up jobs per system (default 2K)")
    p.add_argument("--idle-s", type=float, default=10.0, help="broker idle-CPU window per size, seconds")
    p.add_argument("--csv", default=None)
    a = p.parse_args()
    a.sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
    a.workers = a.workers or a.consumers
    a.warmup = a.warmup if a.warmup is not None else 2 * max(a.consumers, a.workers)
    if not a.sizes or min(a.sizes) < 1 or a.count < 1 or a.repeats < 1 or not a.rate > 0:
        p.error("sizes, --count, --repeats must be positive, --rate > 0")
    return a


# ------------------------------------------------------------------ per-size set-up

def write_matrix(path, n, seed):
    import numpy as np
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, n))
    step = max(1, (32 << 20) // (8 * n))  # ~32 MiB of float64 at a time
    for r in range(0, n, step):
        out[r:r + step] = rng.uniform(-1, 1, (min(step, n - r), n)).astype(np.float32)
    out.flush()
    del out


def check_memory(a, n):
    """Warn when the size looks too big for this machine (rough: float32 + int8 planes)."""
    try:
        with open("/proc/meminfo") as f:
            avail = next(int(l.split()[1]) * 1024 for l in f if l.startswith("MemAvailable:"))
    except Exception:
        return
    need = n * n * (a.consumers * (4 + 2 + 3) + a.workers * 4)
    if need > 0.8 * avail:
        log(f"warning: n = {n} may need ~{need / 2**30:.1f} GiB (consumers' float32 copy and "
            f"m=2/m=3 planes, Celery's copies); {avail / 2**30:.1f} GiB available")


# ------------------------------------------------------------------ runs

def parse_lines(text):
    jobs, summary = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            o = json.loads(line)
        except json.JSONDecodeError:
            try:  # some srproduce builds printed a missing percentile as a bare "-"
                o = json.loads(re.sub(r':\s*-\s*(?=[,}])', ':null', line))
            except json.JSONDecodeError:
                log(f"warning: unparsable line: {line[:120]}")
                continue
        if o.get("type") == "job":
            jobs.append(o)
        elif o.get("type") == "summary":
            summary = o
    return jobs, summary


def median_inf(values):
    if not values:
        return None
    x = statistics.median(sorted(values))
    return None if math.isinf(x) or math.isnan(x) else x


def p95_inf(values):
    v = sorted(values)
    if not v:
        return None
    x = v[min(len(v) - 1, int(len(v) * 0.95))]
    return None if math.isinf(x) else x


class Runner:
    def __init__(self, a):
        self.a = a
        self.probe = QueueProbe(os.environ["SR_AMQP_URL"])
        self.index = 0
        self.logs = os.path.join(a.work, "logs")
        os.makedirs(self.logs, exist_ok=True)

    def command(self, system, matrix_name, npy, rate, count, seed):
        a = self.a
        if system == "celery":
            return [a.python, a.celery_client, "--rate", f"{rate:g}", "--count", str(count),
                    "--seed", str(seed), "--matrix", npy]
        mode = {"oneshot": ["--one-shot"], "layered2": ["--chunks", "2"], "layered3": ["--chunks", "3"]}[system]
        return [a.srproduce, "stream", "--matrix", matrix_name, "--rate", f"{rate:g}", "--count", str(count),
                "--deadline", f"{a.deadline_ms}ms", "--seed", str(seed), "--wait", "--json",
                *mode, "--bits", str(a.bits)]

    def idle_rate(self, seconds):
        """The broker's CPU ms per second with nothing to do."""
        self.probe.wait_empty()
        time.sleep(1)
        c0, t0 = beam_cpu_ms(self.a.beam_pid), time.monotonic()
        time.sleep(seconds)
        return (beam_cpu_ms(self.a.beam_pid) - c0) / (time.monotonic() - t0)

    def run(self, n, system, rate, count, seed, phase, idle=0.0):
        """One client run → a dict of per-run metrics (never raises for a failed client)."""
        a = self.a
        t_drain = time.monotonic()
        self.probe.wait_empty()
        drain_s = time.monotonic() - t_drain
        cmd = self.command(system, f"bench-{n}", os.path.join(a.work, f"a-{n}.npy"), rate, count, seed)
        self.index += 1
        stem = os.path.join(self.logs, f"{self.index:03d}-{n}-{phase}-{system}")
        budget = 120 + 3 * count / rate + a.deadline_ms / 1000
        load1 = loadavg().split()[0]
        cpu0, t0 = beam_cpu_ms(a.beam_pid), time.monotonic()
        error = ""
        with open(stem + ".err", "w") as err:
            try:
                proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, timeout=budget)
                out, rc = proc.stdout, proc.returncode
            except subprocess.TimeoutExpired as e:
                out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
                rc, error = -1, f"timed out after {budget:.0f} s"
        wall, cpu1 = time.monotonic() - t0, beam_cpu_ms(a.beam_pid)
        with open(stem + ".out", "w") as f:
            f.write(out)
        jobs, summary = parse_lines(out)
        # client.py exits 2 when some jobs failed (reported per job); anything else is an error.
        if rc not in (0, 2) or summary is None:
            with open(stem + ".err") as f:
                tail = f.read().strip().splitlines()[-3:]
            error = error or f"exit {rc}: " + " | ".join(tail)
            log(f"warning: {system} run failed ({error}); {len(jobs)}/{count} job lines kept (log {stem}.err)")
        inf = math.inf
        firsts = [j["first_ms"] if j.get("status") != "failed" and j.get("first_ms") is not None else inf for j in jobs]
        finals = [j["final_ms"] if j.get("status") == "complete" and j.get("final_ms") is not None else inf for j in jobs]
        firsts += [inf] * (count - len(jobs))
        finals += [inf] * (count - len(jobs))
        return {
            "n": n, "phase": phase, "system": system, "seed": seed, "rate": rate, "count": count,
            "job_lines": len(jobs), "complete": sum(j.get("status") == "complete" for j in jobs),
            "p50_first_ms": median_inf(firsts), "p95_first_ms": p95_inf(firsts),
            "p50_final_ms": median_inf(finals), "p95_final_ms": p95_inf(finals),
            "max_final_ms": max((f for f in finals if not math.isinf(f)), default=None),
            "broker_cpu_ms_per_job": (cpu1 - cpu0 - idle * wall) / count,
            "broker_cpu_raw_ms_per_job": (cpu1 - cpu0) / count, "broker_idle_ms_per_s": idle,
            "wall_s": wall, "drain_s": drain_s,
            "span_ms": (summary or {}).get("span_ms"), "load1": load1, "exit": rc, "error": error,
        }


# ------------------------------------------------------------------ summary

def spread(values, digits):
    """median (min–max) of values; — when any is missing."""
    if not values or any(v is None for v in values):
        return "—"
    m, lo, hi = statistics.median(values), min(values), max(values)
    s = f"{m:.{digits}f}"
    return s + (f" ({lo:.{digits}f}–{hi:.{digits}f})" if len(values) > 1 and f"{lo:.{digits}f}" != f"{hi:.{digits}f}" else "")


def ratio(x, y):
    return None if x is None or y is None or y == 0 else x / y


def table(a, runs):
    cols = ["n", "one-shot p50 ms", "m=2 first p50", "m=2 final p50", "m=3 first p50", "m=3 final p50",
            "Celery p50", "m=2 first ÷ one-shot", "m=2 final ÷ one-shot", "m=3 first ÷ one-shot",
            "m=2 first ÷ Celery", "broker CPU ms/job (net of idle): one-shot", "m=2", "m=3", "Celery"]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for n in a.sizes:
        rounds = {}
        for r in runs:
            if r["n"] == n and r["phase"].startswith("r"):
                rounds.setdefault(r["phase"], {})[r["system"]] = r
        if not rounds:
            continue
        rs = [rounds[k] for k in sorted(rounds)]
        g = lambda s, m: [r.get(s, {}).get(m) for r in rs]
        one, c = g("oneshot", "p50_final_ms"), g("celery", "p50_final_ms")
        f2, F2, f3, F3 = g("layered2", "p50_first_ms"), g("layered2", "p50_final_ms"), \
            g("layered3", "p50_first_ms"), g("layered3", "p50_final_ms")
        cells = [str(n), spread(one, 1), spread(f2, 1), spread(F2, 1), spread(f3, 1), spread(F3, 1), spread(c, 1),
                 spread([ratio(x, y) for x, y in zip(f2, one)], 2),
                 spread([ratio(x, y) for x, y in zip(F2, one)], 2),
                 spread([ratio(x, y) for x, y in zip(f3, one)], 2),
                 spread([ratio(x, y) for x, y in zip(f2, c)], 2)]
        cells += [spread(g(s, "broker_cpu_ms_per_job"), 2) for s, _ in SYSTEMS]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


CSV_FIELDS = ["n", "phase", "system", "seed", "rate", "count", "job_lines", "complete", "p50_first_ms",
              "p95_first_ms", "p50_final_ms", "p95_final_ms", "max_final_ms", "broker_cpu_ms_per_job",
              "broker_cpu_raw_ms_per_job", "broker_idle_ms_per_s", "wall_s", "drain_s", "span_ms", "load1", "exit", "error"]


def fmt(v, d=1):
    return "—" if v is None else f"{v:.{d}f}"


# ------------------------------------------------------------------ the procedure

def main():
    a = parse_args()
    t_start = time.monotonic()
    load_start = loadavg()
    log(f"load average at start: {load_start}")
    R = Runner(a)
    runs, setup, idle = [], {}, {}
    try:
        for n in a.sizes:
            check_memory(a, n)
            npy = os.path.join(a.work, f"a-{n}.npy")
            celery_dir = os.path.join(a.work, f"celery-{n}")
            t0 = time.monotonic()
            log(f"n = {n}: generating A ({n}×{n} float32, uniform [-1, 1), seed {a.matrix_seed})")
            write_matrix(npy, n, a.matrix_seed)
            t1 = time.monotonic()
            log(f"n = {n}: registering bench-{n}")
            subprocess.run([a.srproduce, "register", f"bench-{n}", "--matrix", npy], check=True,
                           stdout=sys.stderr)
            t2 = time.monotonic()
            log(f"n = {n}: starting {a.workers} Celery workers")
            subprocess.run(["bash", a.workers_sh, "start", "--workers", str(a.workers), "--dir", celery_dir,
                            "--matrix", npy, "--python", a.python], check=True)
            t3 = time.monotonic()
            try:
                log(f"n = {n}: warm-up, {a.warmup} jobs per system at 20/s")
                for key, label in SYSTEMS:
                    r = R.run(n, key, 20, a.warmup, a.seed + 1000, "warmup")
                    runs.append(r)
                    log(f"n = {n}: warm-up {label:8s} p50 first {fmt(r['p50_first_ms'])} final {fmt(r['p50_final_ms'])}"
                        f" max {fmt(r['max_final_ms'])} ms, {r['complete']}/{a.warmup} complete ({r['wall_s']:.1f} s)")
                idle[n] = R.idle_rate(a.idle_s)
                log(f"n = {n}: broker idle CPU {idle[n]:.1f} ms/s ({a.idle_s:g} s)")
                t4 = time.monotonic()
                setup[n] = (t1 - t0, t2 - t1, t3 - t2, t4 - t3)
                for rep in range(a.repeats):
                    seed = a.seed + rep
                    k = rep % len(SYSTEMS)
                    for key, label in SYSTEMS[k:] + SYSTEMS[:k]:
                        r = R.run(n, key, a.rate, a.count, seed, f"r{rep + 1}", idle[n])
                        runs.append(r)
                        log(f"n = {n} round {rep + 1}/{a.repeats} {label:8s} p50 first {fmt(r['p50_first_ms'])} "
                            f"final {fmt(r['p50_final_ms'])} ms, {r['complete']}/{a.count} complete, broker "
                            f"{r['broker_cpu_ms_per_job']:.2f} ms/job net ({r['broker_cpu_raw_ms_per_job']:.2f} raw), load {r['load1']} ({r['wall_s']:.1f} s)")
            finally:
                subprocess.run(["bash", a.workers_sh, "stop", celery_dir])
                if os.path.exists(npy):
                    os.remove(npy)
            log(f"n = {n}: done; generate {setup[n][0]:.0f} s, register {setup[n][1]:.0f} s, Celery start "
                f"{setup[n][2]:.0f} s, warm-up and idle {setup[n][3]:.0f} s, measured {time.monotonic() - t4:.0f} s "
                f"({time.monotonic() - t_start:.0f} s so far)")
    finally:
        R.probe.close()
        if a.csv and runs:
            os.makedirs(os.path.dirname(os.path.abspath(a.csv)), exist_ok=True)
            with open(a.csv, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
                w.writeheader()
                for r in runs:
                    w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_FIELDS})
            log(f"wrote {len(runs)} runs to {a.csv}")

    load_end = loadavg()
    log(f"load average at end: {load_end}")
    measured = [r for r in runs if r["phase"] != "warmup"]
    short = [r for r in measured if r["complete"] < r["count"] or r["error"]]
    print(f"{a.consumers} consumers and {a.workers} Celery workers on one private RabbitMQ; per run {a.count} jobs "
          f"(Poisson, {a.rate:g}/s), deadline {a.deadline_ms / 1000:g} s, {a.bits} bits per chunk; {a.repeats} rounds "
          f"after a warm-up of {a.warmup} jobs per system.")
    print("Client-observed ms (submit → output received); cells: median over rounds of the per-run p50 (min–max); "
          "ratios per round; broker CPU = (beam utime+stime − idle rate × run time) ÷ jobs, idle rate "
          + ", ".join(f"{v:.1f} ms/s at {k}" for k, v in idle.items()) + ".")
    print(f"Load average (1/5/15 min) at start {load_start}, at end {load_end}; "
          f"{time.monotonic() - t_start:.0f} s of measurement.")
    print()
    print(table(a, runs))
    print()
    if short:
        for r in short:
            print(f"- n = {r['n']} {r['phase']} {LABEL[r['system']]}: {r['complete']}/{r['count']} complete"
                  + (f" ({r['error']})" if r["error"] else ""))
    else:
        print(f"Every measured job completed ({len(measured)} runs, {sum(r['count'] for r in measured)} jobs).")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""Measurement half of Benchmarks/deadline-curve.sh (which starts and stops the pool).

Given a running pool (SR_AMQP_URL, SR_STORE in the environment, a registered matrix) and K
running Celery peer workers on the same broker, this:
  1. warms every system up (consumers and workers cache the matrix);
  2. measures Celery's idle p50 (client --idle) and our pool's one-shot capacity (a saturating
     --one-shot stream with a long deadline; capacity = count / span), and Celery's capacity the
     same way (for information);
  3. for every load L in --loads (× one-shot capacity, jobs/s) and deadline D in --deadlines
     (× Celery's idle p50, rounded to whole ms), runs one Poisson stream of --count jobs per
     system — one-shot, layered m=2 (--chunks 2), layered m=3 (--chunks 3), Celery — with that
     rate and that deadline, and records per run: the fraction of jobs with ≥ 1 resolution
     received by D (first_ms ≤ D), the fraction with the complete answer by D (status complete
     and final_ms ≤ D), p50 first and p50 complete (jobs without one count as +inf, so a p50
     is "—" when fewer than half the jobs got there), and the broker's CPU per job (utime+stime of
     its beam process from /proc/PID/stat around the run, ÷ jobs);
  4. repeats step 3 --repeats times (seed + r; the system order rotates per cell and repeat),
     then writes OUT.csv (one row per system × load × deadline: medians and min/max over the
     repeats), OUT-runs.csv (every run), OUT.png (fraction vs deadline, one panel per load, one
     line per system), and prints a Markdown table to stdout. Progress goes to stderr.

All times are client-observed (submit start → output received by the client), from each
client's per-job JSON lines: `srproduce stream --wait --json` and Benchmarks/peers/celery/client.py.
Before every run it waits until the pool's and Celery's work queues are empty, so a backlog left
by one run (e.g. tasks of jobs already answered at their deadline) cannot slow the next.
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
import urllib.parse

ALL_SYSTEMS = {  # key → label; "coded<Ω>" (e.g. coded1.5) is layered m=2 with --redundancy Ω
    "oneshot": "one-shot",
    "layered2": "layered m=2",
    "layered3": "layered m=3",
    "celery": "Celery",
}
SYSTEMS = []  # (key, label), from --systems


def system_label(key):
    if key in ALL_SYSTEMS:
        return ALL_SYSTEMS[key]
    m = re.fullmatch(r"coded(\d+(?:\.\d+)?)(?:L(\d+))?", key)
    if m and float(m.group(1)) >= 1:
        return f"coded m=2 Ω={m.group(1)}" + (f" (layers < {m.group(2)})" if m.group(2) else "")
    raise SystemExit(f"deadline-curve: unknown system '{key}' (oneshot, layered2, layered3, celery, coded<Ω>[L<layers>])")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"deadline-curve: {msg}", file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description="Deadline curves: our pool vs a Celery peer (see module doc).")
    p.add_argument("--srproduce", required=True)
    p.add_argument("--matrix-name", default="bench", help="registered matrix name")
    p.add_argument("--matrix", required=True, help="the .npy (Celery client's answer check)")
    p.add_argument("--celery-client", required=True)
    p.add_argument("--beam-pid", type=int, required=True, help="the broker's Erlang VM")
    p.add_argument("--consumers", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--count", type=int, default=100, help="jobs per run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--idle-count", type=int, default=40, help="Celery idle jobs (≥ 30)")
    p.add_argument("--capacity-count", type=int, default=200)
    p.add_argument("--loads", default="0.5,0.8", help="× one-shot capacity")
    p.add_argument("--deadlines", default="0.5,1,2,4", help="× Celery idle p50")
    p.add_argument("--out", required=True, help="path prefix of OUT.csv, OUT-runs.csv, OUT.png")
    p.add_argument("--log-dir", required=True, help="clients' stderr and raw output go here")
    p.add_argument("--systems", default="oneshot,layered2,layered3,celery",
                   help="comma-separated: oneshot, layered2, layered3, celery, coded<Ω>[L<layers>] "
                        "(layered m=2 with --redundancy Ω [--coded-layers layers])")
    p.add_argument("--row-block", type=int, default=None, help="--row-block for layered and coded jobs")
    p.add_argument("--stall-note", default="", help="how consumers stall in this run (for the plot title)")
    a = p.parse_args()
    SYSTEMS[:] = [(k, system_label(k)) for k in a.systems.split(",") if k]
    a.loads = [float(v) for v in a.loads.split(",")]
    a.deadlines = [float(v) for v in a.deadlines.split(",")]
    if a.idle_count < 30:
        p.error("--idle-count must be ≥ 30")
    return a


# ------------------------------------------------------------------ broker probes

def beam_cpu_ms(pid):
    """utime + stime of PID in ms (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) * 1000.0 / CLK_TCK


class QueueProbe:
    """Passive queue.declare over one AMQP connection: ready-message counts, no side effects."""

    QUEUES = ("sr.tasks", "sr.partials", "sr.jobs", "peer.celery")

    def __init__(self, url):
        import amqp  # py-amqp, installed with Celery in the peers venv
        u = urllib.parse.urlsplit(url)
        vhost = urllib.parse.unquote(u.path[1:]) if u.path not in ("", "/") else "/"
        self.conn = amqp.Connection(host=f"{u.hostname}:{u.port or 5672}",
                                    userid=urllib.parse.unquote(u.username or "guest"),
                                    password=urllib.parse.unquote(u.password or "guest"),
                                    virtual_host=vhost, heartbeat=0)
        self.conn.connect()
        self.ch = self.conn.channel()

    def ready(self):
        total = 0
        for q in self.QUEUES:
            try:
                total += self.ch.queue_declare(q, passive=True).message_count
            except Exception:  # 404: not declared (yet); the channel is closed, open another
                self.ch = self.conn.channel()
        return total

    def wait_empty(self, limit_s=60.0):
        t0 = time.monotonic()
        calm = 0
        while time.monotonic() - t0 < limit_s:
            if self.ready() == 0:
                calm += 1
                if calm >= 2:
                    return
            else:
                calm = 0
            time.sleep(0.05)
        log(f"warning: queues not empty after {limit_s:.0f} s; going on")

    def close(self):
        try:
            self.conn.close()
        except Exception:
            pass


# ------------------------------------------------------------------ running the clients

class Runner:
    def __init__(self, a):
        self.a = a
        self.probe = QueueProbe(os.environ["SR_AMQP_URL"])
        self.runs = 0

    def command(self, system, rate, deadline_ms, count, seed, extra=()):
        a = self.a
        if system == "celery":
            cmd = [sys.executable, a.celery_client, "--rate", f"{rate:g}", "--count", str(count),
                   "--seed", str(seed), "--matrix", a.matrix]
            if deadline_ms is not None:
                cmd += ["--deadline-ms", f"{deadline_ms:g}"]
            return cmd + list(extra)
        cmd = [a.srproduce, "stream", "--matrix", a.matrix_name, "--rate", f"{rate:g}",
               "--count", str(count), "--deadline", f"{deadline_ms:g}ms", "--seed", str(seed),
               "--wait", "--json"]
        if system == "oneshot":
            cmd += ["--one-shot"]
        else:
            cmd += ["--chunks", "3" if system == "layered3" else "2"]
            m = re.fullmatch(r"coded(\d+(?:\.\d+)?)(?:L(\d+))?", system)
            if m:
                cmd += ["--redundancy", m.group(1)] + (["--coded-layers", m.group(2)] if m.group(2) else [])
            if a.row_block:
                cmd += ["--row-block", str(a.row_block)]
        return cmd + list(extra)

    def run(self, system, rate, deadline_ms, count, seed, extra=(), tag="run"):
        """One client run; returns (jobs, summary, broker_cpu_ms, wall_s)."""
        self.probe.wait_empty()
        cmd = self.command(system, rate, deadline_ms, count, seed, extra)
        self.runs += 1
        stem = os.path.join(self.a.log_dir, f"{self.runs:03d}-{tag}-{system}")
        budget = 120 + count / rate + (deadline_ms or 0) / 1000
        cpu0, t0 = beam_cpu_ms(self.a.beam_pid), time.monotonic()
        with open(stem + ".err", "w") as err:
            try:
                proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, timeout=budget)
            except subprocess.TimeoutExpired:
                raise SystemExit(f"deadline-curve: {' '.join(cmd)} took more than {budget:.0f} s (log {stem}.err)")
        wall, cpu1 = time.monotonic() - t0, beam_cpu_ms(self.a.beam_pid)
        with open(stem + ".out", "w") as f:
            f.write(proc.stdout)
        jobs, summary = [], None
        for line in proc.stdout.splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                o = json.loads(line)
            except json.JSONDecodeError:
                # srproduce prints a missing percentile as a bare "-" in some builds; read it as null.
                try:
                    o = json.loads(re.sub(r':\s*-\s*(?=[,}])', ':null', line))
                except json.JSONDecodeError:
                    log(f"warning: unparsable line from {system}: {line[:120]}")
                    continue
            if o.get("type") == "job":
                jobs.append(o)
            elif o.get("type") == "summary":
                summary = o
        # client.py exits 2 when some jobs failed (reported per job); anything else is an error.
        if proc.returncode not in (0, 2) or summary is None or not jobs:
            tail = open(stem + ".err").read()[-2000:]
            raise SystemExit(f"deadline-curve: {' '.join(cmd)} failed (exit {proc.returncode}, "
                             f"{len(jobs)} job lines; is `srproduce stream --json` printing "
                             f"{{\"type\":\"job\"}} lines?)\n{tail}")
        return jobs, summary, cpu1 - cpu0, wall


# ------------------------------------------------------------------ metrics

def quantile_inf(values, q=0.5):
    """Median-like order statistic where a missing value is +inf (None if it lands on one)."""
    v = sorted(values)
    if not v:
        return None
    x = statistics.median(v) if q == 0.5 else v[min(len(v) - 1, int(len(v) * q))]
    return None if math.isinf(x) or math.isnan(x) else x


def cell_metrics(jobs, deadline_ms, count, cpu_ms):
    inf = math.inf
    firsts, completes, lasts = [], [], []
    for j in jobs:
        ok = j.get("status") != "failed"
        f = j.get("first_ms")
        firsts.append(f if ok and f is not None else inf)
        completes.append(j["final_ms"] if j.get("status") == "complete" and j.get("final_ms") is not None else inf)
        if j.get("final_ms") is not None:
            lasts.append(j["final_ms"])
    missing = count - len(jobs)  # jobs without a line count as never answered
    firsts += [inf] * missing
    completes += [inf] * missing
    return {
        "jobs": count,
        "frac_first": sum(f <= deadline_ms for f in firsts) / count,
        "frac_final": sum(c <= deadline_ms for c in completes) / count,
        "p50_first_ms": quantile_inf(firsts),
        "p50_final_ms": quantile_inf(completes),
        "p50_last_output_ms": statistics.median(lasts) if lasts else None,
        "complete": sum(j.get("status") == "complete" for j in jobs),
        "broker_cpu_ms_per_job": cpu_ms / count,
    }


METRICS = ["frac_first", "frac_final", "p50_first_ms", "p50_final_ms", "p50_last_output_ms",
           "broker_cpu_ms_per_job"]


def aggregate(values):
    """(median, min, max) over repeats; None when any repeat has no value (e.g. p50 never reached)."""
    if not values or any(v is None for v in values):
        return None, None, None
    return statistics.median(values), min(values), max(values)


# ------------------------------------------------------------------ outputs

def fmt_frac(m, lo, hi):
    if m is None:
        return "—"
    s = f"{m:.2f}"
    return s + (f" ({lo:.2f}–{hi:.2f})" if hi != lo else "")


def fmt_ms(m, lo, hi, digits=1):
    if m is None:
        return "—"
    s = f"{m:.{digits}f}"
    return s + (f" ({lo:.{digits}f}–{hi:.{digits}f})" if hi != lo else "")


def write_outputs(a, meta, rows, runs):
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    fields = ["system", "label", "load_factor", "rate_jobs_s", "deadline_factor", "deadline_ms", "repeats"]
    for m in METRICS:
        fields += [m, m + "_min", m + "_max"]
    with open(a.out + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
    run_fields = ["repeat", "seed", "system", "load_factor", "rate_jobs_s", "deadline_factor", "deadline_ms",
                  "jobs", "complete", "frac_first", "frac_final", "p50_first_ms", "p50_final_ms",
                  "p50_last_output_ms", "broker_cpu_ms_per_job", "wall_s"]
    with open(a.out + "-runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=run_fields, extrasaction="ignore")
        w.writeheader()
        for r in runs:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in run_fields})

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    palette = {"oneshot": "tab:blue", "layered2": "tab:orange", "layered3": "tab:green", "celery": "tab:red"}
    extra = iter(["tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"])
    colors = {key: palette.get(key) or next(extra) for key, _ in SYSTEMS}
    fig, axes = plt.subplots(1, len(a.loads), figsize=(6.2 * len(a.loads), 5.2), sharey=True, squeeze=False)
    for ax, load in zip(axes[0], a.loads):
        for key, label in SYSTEMS:
            pts = sorted((r for r in rows if r["system"] == key and r["load_factor"] == load), key=lambda r: r["deadline_ms"])
            xs = [r["deadline_ms"] for r in pts]
            single = key in ("oneshot", "celery")  # one answer per job: ≥ 1 resolution = final
            curves = [("frac_first", "-", "o", label + (" (one answer)" if single else ": ≥ 1 resolution"))]
            if not single:
                curves.append(("frac_final", "--", "s", label + ": final"))
            for metric, style, marker, name in curves:
                ys = [r[metric] for r in pts]
                ax.plot(xs, ys, style, marker=marker, color=colors[key], label=name, markersize=5)
                if a.repeats > 1:
                    ax.fill_between(xs, [r[metric + "_min"] for r in pts], [r[metric + "_max"] for r in pts],
                                    color=colors[key], alpha=0.12, linewidth=0)
        rate = next((r["rate_jobs_s"] for r in rows if r["load_factor"] == load), 0)
        ax.set_title(f"load {load:g} × one-shot capacity ({rate:.0f} jobs/s)")
        ax.set_xscale("log", base=2)
        ds = sorted({r["deadline_ms"] for r in rows})
        ax.set_xticks(ds)
        ax.set_xticklabels([f"{d:g}" for d in ds])
        ax.set_xlabel("deadline (ms, client-observed)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("fraction of jobs answered by the deadline")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"n = {a.n}, {a.consumers} consumers / {a.workers} Celery workers, {a.count} jobs per run, "
                 f"{a.repeats} repeat(s) (median{', band = min–max' if a.repeats > 1 else ''}); "
                 f"Celery idle p50 {meta['celery_idle_p50_ms']:.1f} ms" + (f"; {a.stall_note}" if a.stall_note else ""), fontsize=10)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    fig.savefig(a.out + ".png", dpi=110)
    plt.close(fig)


def markdown(a, meta, rows):
    out = []
    out.append(f"n = {a.n}, {a.consumers} consumers, {a.workers} Celery workers, {a.count} jobs per run, "
               f"{a.repeats} repeat(s): medians" + (" (min–max)" if a.repeats > 1 else "") + "."
               + (f" Row block {a.row_block}." if a.row_block else "") + (f" {a.stall_note}." if a.stall_note else ""))
    out.append(f"Celery idle p50 {meta['celery_idle_p50_ms']:.2f} ms ({meta['idle_count']} jobs); "
               f"one-shot capacity {meta['oneshot_capacity']:.1f} jobs/s; Celery capacity "
               f"{meta['celery_capacity']:.1f} jobs/s ({meta['capacity_count']}-job saturating streams).")
    out.append("Times client-observed (submit → output received); p50s count a job that never got there "
               "as +∞ (— = fewer than half did); broker CPU = beam utime+stime ÷ jobs.")
    out.append("")
    out.append("| load | rate jobs/s | deadline ms | system | ≥ 1 resolution by deadline | final by deadline "
               "| p50 first ms | p50 final ms | broker CPU ms/job |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        g = lambda m: (r[m], r[m + "_min"], r[m + "_max"])
        out.append(f"| {r['load_factor']:g}× | {r['rate_jobs_s']:.1f} | {r['deadline_ms']:g} ({r['deadline_factor']:g}×) "
                   f"| {r['label']} | {fmt_frac(*g('frac_first'))} | {fmt_frac(*g('frac_final'))} "
                   f"| {fmt_ms(*g('p50_first_ms'))} | {fmt_ms(*g('p50_final_ms'))} "
                   f"| {fmt_ms(*g('broker_cpu_ms_per_job'), digits=2)} |")
    return "\n".join(out)


# ------------------------------------------------------------------ the procedure

def main():
    a = parse_args()
    os.makedirs(a.log_dir, exist_ok=True)
    R = Runner(a)
    long_ms = 30000
    t_start = time.monotonic()

    log("warm-up (every consumer and worker caches the matrix)")
    warm = max(4, 2 * max(a.consumers, a.workers))
    for key, _ in SYSTEMS:
        R.run(key, 20, long_ms, warm, a.seed + 1000, tag="warmup")

    log(f"Celery idle p50 ({a.idle_count} jobs one at a time)")
    _, s, _, _ = R.run("celery", 1, None, a.idle_count, a.seed + 2000, extra=["--idle"], tag="idle")
    idle_p50 = s["p50_final_ms"]
    log(f"Celery idle p50 {idle_p50:.2f} ms")

    log(f"one-shot capacity ({a.capacity_count} jobs at once, deadline {long_ms} ms)")
    jobs, s, _, _ = R.run("oneshot", 5000, long_ms, a.capacity_count, a.seed + 3000, tag="capacity")
    done = sum(j.get("status") == "complete" for j in jobs)
    capacity = a.capacity_count / (s["span_ms"] / 1000)
    if done < a.capacity_count:
        log(f"warning: only {done}/{a.capacity_count} capacity jobs complete")
    _, cs, _, _ = R.run("celery", 5000, None, a.capacity_count, a.seed + 4000, tag="capacity")
    celery_capacity = a.capacity_count / (cs["span_ms"] / 1000)
    log(f"one-shot capacity {capacity:.1f} jobs/s; Celery capacity {celery_capacity:.1f} jobs/s")

    meta = {"celery_idle_p50_ms": idle_p50, "idle_count": a.idle_count, "oneshot_capacity": capacity,
            "celery_capacity": celery_capacity, "capacity_count": a.capacity_count}
    deadlines = [(f, max(1, round(f * idle_p50))) for f in a.deadlines]
    runs = []
    cell_index = 0
    for rep in range(a.repeats):
        seed = a.seed + rep
        for load in a.loads:
            rate = load * capacity
            for f, d in deadlines:
                k = (cell_index + rep) % len(SYSTEMS)
                order = SYSTEMS[k:] + SYSTEMS[:k]
                cell_index += 1
                for key, label in order:
                    jobs, s, cpu, wall = R.run(key, rate, d, a.count, seed, tag=f"r{rep}")
                    m = cell_metrics(jobs, d, a.count, cpu)
                    m.update(repeat=rep, seed=seed, system=key, load_factor=load, rate_jobs_s=rate,
                             deadline_factor=f, deadline_ms=d, wall_s=wall)
                    runs.append(m)
                    pf = "—" if m["p50_first_ms"] is None else f"{m['p50_first_ms']:.1f}"
                    log(f"repeat {rep + 1}/{a.repeats} load {load:g}× ({rate:.1f}/s) deadline {d} ms "
                        f"{label:12s} ≥1 {m['frac_first']:.2f} final {m['frac_final']:.2f} "
                        f"p50 first {pf} ms, broker {m['broker_cpu_ms_per_job']:.2f} ms/job ({wall:.1f} s)")
    R.probe.close()

    rows = []
    for load in a.loads:
        for f, d in deadlines:
            for key, label in SYSTEMS:
                mine = [r for r in runs if r["system"] == key and r["load_factor"] == load and r["deadline_ms"] == d]
                row = {"system": key, "label": label, "load_factor": load, "rate_jobs_s": load * capacity,
                       "deadline_factor": f, "deadline_ms": d, "repeats": len(mine)}
                for metric in METRICS:
                    row[metric], row[metric + "_min"], row[metric + "_max"] = aggregate([r[metric] for r in mine])
                rows.append(row)
    write_outputs(a, meta, rows, runs)
    print(markdown(a, meta, rows), flush=True)
    log(f"wrote {a.out}.csv, {a.out}-runs.csv, {a.out}.png in {time.monotonic() - t_start:.0f} s")


if __name__ == "__main__":
    main()

"""Measurement half of Benchmarks/deadline-curve-infer.sh (which starts and stops everything).

Given a running pool (SR_AMQP_URL, SR_STORE in the environment, a registered model) and K Celery
classify workers (ONNX Runtime, Benchmarks/peers/celery/worker.py) on the same broker, this:
  1. warms both up (consumers load the model and its operands; workers their session);
  2. measures Celery's idle p50 for one job of --batch images (--idle-jobs jobs one at a time),
     Celery's capacity (a saturating burst of --capacity-jobs jobs: jobs / span) and, for
     information, our pool's (a burst of --pool-capacity-jobs jobs, a long deadline, the
     calibrated exit);
  3. for every load L in --loads (× Celery's capacity, jobs/s) and deadline D in --deadlines
     (× Celery's idle p50, whole ms), runs one Poisson stream of the same --images images in jobs
     of --batch per system, and records per run:
       Celery: an image counts as answered when its job's result reached the client by D
         (submit → result received); its label is ONNX Runtime's;
       our pool: an image counts as answered when an output with ≥ 1 resolution for it reached
         the client by D; its label is the latest one received by D (the calibrated exit on;
         the aggregator's deadline is the same D);
     and the accuracy over ALL images (unanswered = wrong), the p50 over images of the time to
     the first answer (+inf when never: "—" when fewer than half got one) and, for our pool,
     the mean resolution of the answered images;
  4. repeats step 3 --repeats times (seed + r; the system order alternates), writes OUT.csv
     (medians, min, max over the repeats), OUT-runs.csv (every run), OUT.png (fraction answered
     and accuracy against the deadline, one column per load) and prints a Markdown table.
Before every run it waits until the pool's and Celery's queues are empty (QueueProbe of
deadline_curve.py) AND until the pool's and the workers' processes (--quiet-pids) are idle (less
than 10 % of a core over 200 ms): an empty queue does not mean an idle consumer — the last task
of an overloaded run (tens to hundreds of ms of exact evaluation) would otherwise still be
running on the 2 cores while the next system's run starts. Progress goes to stderr.
"""

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deadline_curve import QueueProbe  # noqa: E402

SYSTEMS = [("celery", "Celery + ONNX Runtime"), ("pool", "pool, exact (calibrated exit)")]


def log(msg):
    print(f"deadline-curve-infer: {msg}", file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description="Inference deadline curves: our pool vs Celery + ONNX Runtime.")
    p.add_argument("--srproduce", required=True)
    p.add_argument("--model-name", required=True, help="the registered model")
    p.add_argument("--celery-client", required=True, help="Benchmarks/peers/celery/classify_client.py")
    p.add_argument("--images-file", required=True, help="IDX images")
    p.add_argument("--labels-file", required=True, help="IDX labels")
    p.add_argument("--first", type=int, default=5000)
    p.add_argument("--images", type=int, default=1000, help="images per run (cut into jobs of --batch)")
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--block", type=int, required=True, help="our images per task")
    p.add_argument("--consumers", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--idle-jobs", type=int, default=30)
    p.add_argument("--capacity-jobs", type=int, default=200)
    p.add_argument("--pool-capacity-jobs", type=int, default=10)
    p.add_argument("--loads", default="0.5,0.8", help="× Celery's capacity")
    p.add_argument("--deadlines", default="0.5,1,2,4", help="× Celery's idle p50")
    p.add_argument("--out", required=True)
    p.add_argument("--log-dir", required=True)
    p.add_argument("--load-note", default="", help="e.g. the load average at the start")
    p.add_argument("--quiet-pids", default="", help="processes to wait for to be idle before each run")
    a = p.parse_args()
    a.loads = [float(v) for v in a.loads.split(",")]
    a.deadlines = [float(v) for v in a.deadlines.split(",")]
    if a.images < a.batch:
        p.error("--images must be ≥ --batch")
    a.images -= a.images % a.batch
    return a


def cpu_ticks(pids):
    """utime + stime (clock ticks) summed over the live processes of `pids`."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            total += int(rest[11]) + int(rest[12])
        except OSError:
            pass
    return total


def wait_idle(pids, limit_s=120.0):
    """Until `pids` together use < 10 % of a core over 200 ms (or limit_s passes)."""
    if not pids:
        return
    window, tick = 0.2, 1.0 / os.sysconf("SC_CLK_TCK")
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        c0 = cpu_ticks(pids)
        time.sleep(window)
        if (cpu_ticks(pids) - c0) * tick < 0.1 * window:
            return
    log(f"warning: processes {pids} still busy after {limit_s:.0f} s; going on")


def read_idx(path, dims):
    with open(path, "rb") as f:
        data = f.read()
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


class Runner:
    def __init__(self, a):
        self.a = a
        self.probe = QueueProbe(os.environ["SR_AMQP_URL"])
        self.quiet = [int(p) for p in a.quiet_pids.split()]
        self.runs = 0

    def run(self, system, *, rate, deadline_ms, images, seed, idle=False, tag="run"):
        """One client run over `images` images from --first; returns its parsed JSON lines."""
        a = self.a
        self.probe.wait_empty()
        wait_idle(self.quiet)
        if system == "celery":
            cmd = [sys.executable, a.celery_client, "--images", a.images_file, "--first", str(a.first),
                   "--count", str(images), "--batch", str(a.batch), "--rate", f"{rate:g}", "--seed", str(seed)]
            if idle:
                cmd += ["--idle"]
        else:
            cmd = [a.srproduce, "infer-stream", "--model", a.model_name, "--images", a.images_file,
                   "--first", str(a.first), "--count", str(images), "--batch", str(a.batch),
                   "--block", str(a.block), "--rate", f"{rate:g}", "--deadline", f"{deadline_ms:g}ms",
                   "--seed", str(seed)]
        self.runs += 1
        stem = os.path.join(a.log_dir, f"{self.runs:03d}-{tag}-{system}")
        budget = 300 + images / a.batch / rate + (deadline_ms or 0) / 1000
        t0 = time.monotonic()
        with open(stem + ".err", "w") as err:
            try:
                proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, timeout=budget)
            except subprocess.TimeoutExpired:
                raise SystemExit(f"deadline-curve-infer: {' '.join(cmd)} took more than {budget:.0f} s (log {stem}.err)")
        wall = time.monotonic() - t0
        with open(stem + ".out", "w") as f:
            f.write(proc.stdout)
        lines = [json.loads(s) for s in proc.stdout.splitlines() if s.startswith("{")]
        summary = next((o for o in lines if o.get("type") == "summary"), None)
        if proc.returncode not in (0, 2) or summary is None:
            tail = open(stem + ".err").read()[-2000:]
            raise SystemExit(f"deadline-curve-infer: {' '.join(cmd)} failed (exit {proc.returncode})\n{tail}")
        return lines, summary, wall


def per_image(system, lines, batch, n, deadline_ms):
    """Per image: (time of its first answer or inf, label at D or None, resolution at D, final label)."""
    inf = math.inf
    first = [inf] * n
    label_at_d = [None] * n
    res_at_d = [0] * n
    final_label = [None] * n
    if system == "celery":
        for o in lines:
            if o.get("type") != "job" or o["status"] != "complete" or o["job"] * batch >= n:
                continue
            for s, lab in enumerate(o["labels"]):
                i = o["job"] * batch + s
                first[i] = o["final_ms"]
                final_label[i] = lab
                if o["final_ms"] <= deadline_ms:
                    label_at_d[i], res_at_d[i] = lab, 1
        return first, label_at_d, res_at_d, final_label
    for o in lines:  # in the order the client received them
        if o.get("type") != "output" or o["job"] * batch >= n:
            continue
        for s, lab, r, _ in o["answers"]:
            i = o["job"] * batch + s
            if r < 1:
                continue
            first[i] = min(first[i], o["ms"])
            if o["status"] != "partial":
                final_label[i] = lab
            if o["ms"] <= deadline_ms and r >= res_at_d[i]:
                label_at_d[i], res_at_d[i] = lab, r
    return first, label_at_d, res_at_d, final_label


def cell_metrics(system, lines, a, truth, deadline_ms):
    n = a.images
    first, at_d, res, final = per_image(system, lines, a.batch, n, deadline_ms)
    answered = [lab is not None for lab in at_d]
    p50 = statistics.median(first)
    return {
        "images": n,
        "frac_answered": sum(answered) / n,
        "accuracy": sum(lab is not None and lab == t for lab, t in zip(at_d, truth)) / n,
        "accuracy_final": sum(lab is not None and lab == t for lab, t in zip(final, truth)) / n,
        "p50_first_ms": None if math.isinf(p50) else p50,
        "mean_resolution": (sum(r for r in res if r) / sum(answered)) if any(answered) else None,
    }


METRICS = ["frac_answered", "accuracy", "accuracy_final", "p50_first_ms", "mean_resolution"]


def aggregate(values):
    if not values or any(v is None for v in values):
        return None, None, None
    return statistics.median(values), min(values), max(values)


def fmt(m, lo, hi, digits=2):
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
                  "images"] + METRICS + ["wall_s"]
    with open(a.out + "-runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=run_fields, extrasaction="ignore")
        w.writeheader()
        for r in runs:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in run_fields})

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colors = {"celery": "tab:red", "pool": "tab:blue"}
    fig, axes = plt.subplots(2, len(a.loads), figsize=(6 * len(a.loads), 8), sharey="row", sharex=True, squeeze=False)
    for col, load in enumerate(a.loads):
        for row, (metric, ylabel) in enumerate([("frac_answered", "fraction of images with a label by the deadline"),
                                                 ("accuracy", "accuracy at the deadline (unanswered = wrong)")]):
            ax = axes[row][col]
            for key, label in SYSTEMS:
                pts = sorted((r for r in rows if r["system"] == key and r["load_factor"] == load), key=lambda r: r["deadline_ms"])
                xs = [r["deadline_ms"] for r in pts]
                ax.plot(xs, [r[metric] for r in pts], "-o", color=colors[key], label=label, markersize=5)
                if a.repeats > 1:
                    ax.fill_between(xs, [r[metric + "_min"] for r in pts], [r[metric + "_max"] for r in pts],
                                    color=colors[key], alpha=0.15, linewidth=0)
            if row == 0:
                rate = next((r["rate_jobs_s"] for r in rows if r["load_factor"] == load), 0)
                ax.set_title(f"load {load:g} × Celery's capacity ({rate:.0f} jobs/s of {a.batch} images)")
            ax.set_xscale("log", base=2)
            ds = sorted({r["deadline_ms"] for r in rows})
            ax.set_xticks(ds)
            ax.set_xticklabels([f"{d:g}" for d in ds])
            ax.set_ylim(-0.02, 1.02)
            ax.grid(True, alpha=0.3)
            if col == 0:
                ax.set_ylabel(ylabel, fontsize=9)
            if row == 1:
                ax.set_xlabel("deadline (ms, client-observed)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=9, frameon=False)
    fig.suptitle(f"Fashion-MNIST VGG, {a.images} held-out images from {a.first} in jobs of {a.batch}; "
                 f"{a.consumers} consumers / {a.workers} Celery workers; {a.repeats} repeat(s)"
                 f"{' (median, band = min–max)' if a.repeats > 1 else ''}; Celery idle p50 "
                 f"{meta['celery_idle_p50_ms']:.1f} ms", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(a.out + ".png", dpi=110)
    plt.close(fig)


def markdown(a, meta, rows):
    out = [f"{a.images} test images from {a.first} (held out from calibration) in jobs of {a.batch} "
           f"(our tasks: {a.block} images), {a.consumers} consumers, {a.workers} Celery workers, "
           f"{a.repeats} repeat(s): medians" + (" (min–max)" if a.repeats > 1 else "") + ".",
           f"Celery idle p50 {meta['celery_idle_p50_ms']:.2f} ms per job ({meta['idle_jobs']} jobs); Celery capacity "
           f"{meta['celery_capacity']:.1f} jobs/s ({meta['capacity_jobs']}-job burst); our pool's capacity "
           f"{meta['pool_capacity']:.2f} jobs/s ({meta['pool_capacity_jobs']}-job burst, calibrated exit). "
           f"Accuracy with no deadline: ONNX Runtime {meta['celery_accuracy']:.4f}, ours (calibrated exit) "
           f"{meta['pool_accuracy']:.4f} (on the {meta['capacity_jobs'] * a.batch} and "
           f"{meta['pool_capacity_jobs'] * a.batch} images of the bursts). {a.load_note}",
           "Answered = a label reached the client by the deadline (submit → result received); accuracy counts "
           "unanswered images as wrong; p50 first = median over images of the time to their first label "
           "(— = fewer than half got one).",
           "",
           "| load | rate jobs/s | deadline ms | system | answered by deadline | accuracy at deadline "
           "| p50 first ms | mean resolution at deadline | accuracy of the final answer |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        g = lambda m: (r[m], r[m + "_min"], r[m + "_max"])
        out.append(f"| {r['load_factor']:g}× | {r['rate_jobs_s']:.1f} | {r['deadline_ms']:g} ({r['deadline_factor']:g}×) "
                   f"| {r['label']} | {fmt(*g('frac_answered'))} | {fmt(*g('accuracy'))} "
                   f"| {fmt(*g('p50_first_ms'), digits=1)} | {fmt(*g('mean_resolution'), digits=1) if r['system'] == 'pool' else '—'} "
                   f"| {fmt(*g('accuracy_final'))} |")
    return "\n".join(out)


def accuracy_of(system, lines, a, truth, images):
    _, _, _, final = per_image(system, lines, a.batch, images, math.inf)
    return sum(lab is not None and lab == t for lab, t in zip(final, truth[:images])) / images


def main():
    a = parse_args()
    os.makedirs(a.log_dir, exist_ok=True)
    idle_images, cap_images = a.idle_jobs * a.batch, a.capacity_jobs * a.batch
    pool_images = a.pool_capacity_jobs * a.batch
    need = max(a.images, idle_images, cap_images, pool_images)
    truth = read_idx(a.labels_file, 1)[a.first:a.first + need].astype(int).tolist()
    if len(truth) < need:
        raise SystemExit(f"deadline-curve-infer: {a.labels_file} has fewer than {a.first + need} labels "
                         f"(--first {a.first}; the capacity burst takes {cap_images} images)")
    R = Runner(a)
    long_ms = 600_000
    t_start = time.monotonic()

    log("warm-up (consumers load the model and its operands; workers are loaded at start)")
    warm = max(2, 2 * max(a.consumers, a.workers)) * a.batch
    R.run("celery", rate=50, deadline_ms=None, images=min(warm, a.images), seed=a.seed + 1000, tag="warmup")
    R.run("pool", rate=50, deadline_ms=long_ms, images=min(warm, a.images), seed=a.seed + 1000, tag="warmup")

    log(f"Celery idle p50 ({idle_images // a.batch} jobs one at a time)")
    _, s, _ = R.run("celery", rate=1, deadline_ms=None, images=idle_images, seed=a.seed + 2000, idle=True, tag="idle")
    idle_p50 = s["p50_final_ms"]
    log(f"Celery idle p50 {idle_p50:.2f} ms")

    lines, s, _ = R.run("celery", rate=100000, deadline_ms=None, images=cap_images, seed=a.seed + 3000, tag="capacity")
    celery_capacity = (cap_images // a.batch) / (s["span_ms"] / 1000)
    celery_accuracy = accuracy_of("celery", lines, a, truth, cap_images)
    lines, s, _ = R.run("pool", rate=100000, deadline_ms=long_ms, images=pool_images, seed=a.seed + 4000, tag="capacity")
    pool_capacity = (pool_images // a.batch) / (s["span_ms"] / 1000)
    pool_accuracy = accuracy_of("pool", lines, a, truth, pool_images)
    log(f"Celery capacity {celery_capacity:.1f} jobs/s (accuracy {celery_accuracy:.4f} on {cap_images} images); "
        f"our pool's {pool_capacity:.2f} jobs/s (accuracy {pool_accuracy:.4f} on {pool_images} images)")
    meta = {"celery_idle_p50_ms": idle_p50, "idle_jobs": idle_images // a.batch, "celery_capacity": celery_capacity,
            "capacity_jobs": cap_images // a.batch, "pool_capacity": pool_capacity,
            "pool_capacity_jobs": pool_images // a.batch, "celery_accuracy": celery_accuracy,
            "pool_accuracy": pool_accuracy}

    deadlines = [(f, max(1, round(f * idle_p50))) for f in a.deadlines]
    runs = []
    cell = 0
    for rep in range(a.repeats):
        seed = a.seed + rep
        for load in a.loads:
            rate = load * celery_capacity
            for f, d in deadlines:
                order = SYSTEMS if (cell + rep) % 2 == 0 else SYSTEMS[::-1]
                cell += 1
                for key, label in order:
                    lines, _, wall = R.run(key, rate=rate, deadline_ms=d, images=a.images, seed=seed, tag=f"r{rep}")
                    m = cell_metrics(key, lines, a, truth, d)
                    m.update(repeat=rep, seed=seed, system=key, load_factor=load, rate_jobs_s=rate,
                             deadline_factor=f, deadline_ms=d, wall_s=wall)
                    runs.append(m)
                    log(f"repeat {rep + 1}/{a.repeats} load {load:g}× ({rate:.1f} jobs/s) deadline {d} ms {label}: "
                        f"answered {m['frac_answered']:.3f}, accuracy {m['accuracy']:.3f} ({wall:.1f} s)")
    R.probe.close()

    rows = []
    for load in a.loads:
        for f, d in deadlines:
            for key, label in SYSTEMS:
                mine = [r for r in runs if r["system"] == key and r["load_factor"] == load and r["deadline_ms"] == d]
                row = {"system": key, "label": label, "load_factor": load, "rate_jobs_s": load * celery_capacity,
                       "deadline_factor": f, "deadline_ms": d, "repeats": len(mine)}
                for metric in METRICS:
                    row[metric], row[metric + "_min"], row[metric + "_max"] = aggregate([r[metric] for r in mine])
                rows.append(row)
    write_outputs(a, meta, rows, runs)
    print(markdown(a, meta, rows), flush=True)
    log(f"wrote {a.out}.csv, {a.out}-runs.csv, {a.out}.png in {time.monotonic() - t_start:.0f} s")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Deadline curves on one pool, in one run: our one-shot jobs, our layered jobs (m = 2 and m = 3)
# and a plain Celery 5 pool (Benchmarks/peers/celery) on the same private RabbitMQ, all timed
# by their clients (submit → output received).
#
#   Benchmarks/deadline-curve.sh [--n 4096] [--consumers 2] [--workers K] [--count 100]
#                                [--repeats 3] [--seed 11] [--out docs/deadline-curve-4096]
#                                [--loads 0.5,0.8] [--deadlines 0.5,1,2,4] [--keep-logs DIR]
#                                [--systems oneshot,layered2,layered3,celery] [--row-block R]
#                                [--stall]
#
# --systems also takes coded<Ω>[L<l>] (layered m=2 with --redundancy Ω [--coded-layers l], e.g.
# coded1.5 or coded2L1); --row-block
# sets the rows per task of layered and coded jobs (K = n / R row blocks per layer). --stall
# stops one consumer and one Celery worker 50 ms out of every 100 ms (SIGSTOP / SIGCONT) for
# the whole measurement: a straggler, as a paused VM or a long GC pause looks to the pool.
#
# 1. installs the peers' venv (.venv-peers, pinned), builds release and starts a pool
#    (scripts/local-pool.sh: private RabbitMQ, aggregator, --consumers consumers), generates
#    A (n×n float32, uniform [-1, 1), seeded) with numpy, registers it, and starts K Celery
#    workers (default K = consumers) that load it;
# 2. Benchmarks/deadline_curve.py warms every system up, measures Celery's idle p50 and the
#    pool's one-shot capacity, then runs every system at every load (× capacity) and deadline
#    (× Celery's idle p50) --repeats times, and writes OUT.csv, OUT-runs.csv, OUT.png and a
#    Markdown table (stdout; medians and min–max over the repeats);
# 3. stops everything it started, by PID (trap on EXIT).
# Progress on stderr. With the defaults (3 repeats of 32 runs of 100 jobs) about 4–5 minutes on
# 2 cores once the release build is up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
n=4096 consumers=2 workers="" count=100 repeats=3 seed=11 out=docs/deadline-curve-4096
loads=0.5,0.8 deadlines=0.5,1,2,4 keep_logs="" systems=oneshot,layered2,layered3,celery row_block="" stall=""
while (($#)); do
  case $1 in
    --n) n=$2; shift ;;
    --consumers) consumers=$2; shift ;;
    --workers) workers=$2; shift ;;
    --count) count=$2; shift ;;
    --repeats) repeats=$2; shift ;;
    --seed) seed=$2; shift ;;
    --out) out=$2; shift ;;
    --loads) loads=$2; shift ;;
    --deadlines) deadlines=$2; shift ;;
    --keep-logs) keep_logs=$2; shift ;;
    --systems) systems=$2; shift ;;
    --row-block) row_block=$2; shift ;;
    --stall) stall=1 ;;
    -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "deadline-curve: unknown argument '$1' (see --help)" >&2; exit 64 ;;
  esac
  shift
done
workers=${workers:-$consumers}
[[ -z $row_block || $row_block =~ ^[1-9][0-9]*$ ]] || { echo "deadline-curve: --row-block must be a positive integer" >&2; exit 64; }
for v in n consumers workers count repeats seed; do
  [[ ${!v} =~ ^[0-9]+$ && ${!v} -ge 1 ]] || { echo "deadline-curve: --$v must be a positive integer" >&2; exit 64; }
done
note() { printf 'deadline-curve: %s\n' "$*" >&2; }
[[ $out == /* ]] || out=$root/$out

work=$(mktemp -d /tmp/deadline-curve.XXXXXX)
pool_dir=$work/pool celery_dir=$work/celery
stall_pid="" stalled=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $stall_pid ]]; then
    kill "$stall_pid" 2>/dev/null || true
    wait "$stall_pid" 2>/dev/null || true
    for pid in "${stalled[@]}"; do kill -CONT "$pid" 2>/dev/null || true; done
  fi
  [[ -f $celery_dir/celery.pids ]] && bash Benchmarks/peers/celery/workers.sh stop "$celery_dir" || true
  if [[ -f $pool_dir/pool.env ]]; then
    bash scripts/local-pool.sh stop "$pool_dir" >&2 || true
  elif [[ -f $pool_dir/broker/env || -f $pool_dir/broker/node.state ]]; then
    bash scripts/rabbitmq-stop.sh "$pool_dir/broker" >&2 || true   # a start that failed half-way
  fi
  if [[ -n $keep_logs ]]; then
    mkdir -p "$keep_logs" && cp -r "$work/logs/." "$keep_logs/" 2>/dev/null || true
    note "client logs kept in $keep_logs"
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$SECONDS
note "installing the peers' venv"
py=$(bash Benchmarks/peers/celery/install.sh | tail -n 1)

note "building release and starting the pool ($consumers consumers) in $pool_dir"
env_file=$(bash scripts/local-pool.sh start --release --consumers "$consumers" --dir "$pool_dir" | tail -n 1)
# shellcheck disable=SC1090
source "$env_file"
[[ -n ${SR_POOL_BROKER_DIR:-} && -s $SR_POOL_BROKER_DIR/rabbitmq.pid ]] ||
  { note "error: no broker pid file in '${SR_POOL_BROKER_DIR:-}' (needs a private broker, not --broker-url)"; exit 1; }
beam_pid=$(tr -dc 0-9 <"$SR_POOL_BROKER_DIR/rabbitmq.pid")
[[ -r /proc/$beam_pid/stat ]] || { note "error: broker pid $beam_pid is not running"; exit 1; }
# The pool's processes run the binaries just built; srproduce is started once per run, so take a
# private copy: a rebuild in the work tree during the benchmark must not change (or, while the
# linker writes it, break) the producer half-way.
mkdir -p "$work/bin"
cp "$SR_POOL_BIN/srproduce" "$work/bin/srproduce"
srproduce=$work/bin/srproduce

note "generating A ($n×$n float32, uniform [-1, 1), seed $seed)"
"$py" -c "
import sys, numpy as np
n, seed, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
np.save(path, np.random.default_rng(seed).uniform(-1, 1, (n, n)).astype(np.float32))" "$n" "$seed" "$work/a.npy"
"$srproduce" register bench --matrix "$work/a.npy" >&2

note "starting $workers Celery workers on the same broker"
bash Benchmarks/peers/celery/workers.sh start --workers "$workers" --dir "$celery_dir" --matrix "$work/a.npy" --python "$py"

stall_note=""
if [[ -n $stall ]]; then
  read -r -a pool_pids <<<"$SR_POOL_PIDS"
  read -r -a celery_pids <"$celery_dir/celery.pids"
  stalled=("${pool_pids[1]}" "${celery_pids[0]}")   # [0] is the aggregator
  note "stalling consumer ${stalled[0]} and Celery worker ${stalled[1]}: stopped 50 ms of every 100 ms"
  ( trap 'exit 0' TERM
    while :; do kill -STOP "${stalled[@]}"; sleep 0.05; kill -CONT "${stalled[@]}"; sleep 0.05; done ) &
  stall_pid=$!
  stall_note="one of $consumers consumers and one of $workers Celery workers stopped 50 ms of every 100 ms"
fi

note "pool and peers ready in $((SECONDS - t0)) s; measuring"
"$py" Benchmarks/deadline_curve.py --srproduce "$srproduce" --matrix-name bench \
  --matrix "$work/a.npy" --celery-client Benchmarks/peers/celery/client.py --beam-pid "$beam_pid" \
  --consumers "$consumers" --workers "$workers" --n "$n" --count "$count" --repeats "$repeats" \
  --seed "$seed" --loads "$loads" --deadlines "$deadlines" --out "$out" --log-dir "$work/logs" \
  --systems "$systems" ${row_block:+--row-block "$row_block"} --stall-note "$stall_note"
note "done in $((SECONDS - t0)) s"

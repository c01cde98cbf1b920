#!/usr/bin/env bash
# End-to-end table of docs/BENCHMARKS.md: one-shot jobs, layered jobs (m = 2 and m = 3) and a
# plain Celery 5 pool (Benchmarks/peers/celery), side by side on one pool and one broker, one
# row per matrix size; every time client-observed (submit → output received by the client).
#
#   Benchmarks/e2e-matvec.sh [--sizes 2048,4096,8192] [--consumers 2] [--workers K] [--count 20]
#                            [--rate 2] [--repeats 3] [--bits 6] [--seed 11] [--warmup 2K]
#                            [--deadline-ms 30000] [--idle-s 10] [--csv PATH] [--keep-logs DIR]
#
# 1. installs the peers' venv (.venv-peers, pinned; its numpy makes the matrices), builds release
#    and starts ONE private pool (scripts/local-pool.sh: RabbitMQ, aggregator, --consumers
#    consumers), and copies srproduce to a private directory (a rebuild in the tree mid-run must
#    not change or break the producer);
# 2. Benchmarks/e2e_matvec.py, per size n: writes A (n×n float32, uniform [-1, 1), seed 7),
#    registers it as bench-<n>, starts K Celery workers (default K = consumers) loading it,
#    warms every system up (2K jobs each of one-shot, m=2, m=3 and Celery at 20/s, long deadline:
#    consumers load A and prepare each partition's planes on first use), measures the broker's
#    idle CPU rate for --idle-s seconds (every client connected, nothing running), then runs --repeats
#    rounds of four streams — `srproduce stream --wait --json --one-shot | --chunks 2 | --chunks 3
#    --bits B --deadline 30s` and the Celery client.py — each --count Poisson jobs at --rate/s,
#    the round's seed shared, the order rotated per round; stops the Celery workers after the size.
#    Before each run the work queues must be empty; the broker's CPU (beam utime+stime from /proc)
#    is read around every run and reported per job net of the idle rate (raw in the CSV).
# 3. prints a Markdown table on stdout, one row per size: p50 one-shot, m=2 first/final, m=3
#    first/final, Celery; m=2 first ÷ one-shot, m=2 final ÷ one-shot, m=3 first ÷ one-shot,
#    m=2 first ÷ Celery; broker CPU ms per job of each system. Cells are medians over the rounds
#    of the per-run p50 (min–max in parentheses); ratios are taken per round. Also the load
#    average at start and end (the machine is shared), and any job that did not complete.
#    --csv PATH writes every run (warm-ups included). Progress goes to stderr.
# 4. stops the Celery workers and the pool it started, by PID (trap on EXIT).
#
# With the defaults (3 sizes × (warm-up + 10 s idle + 3 rounds × 4 runs of 20 jobs at 2/s)) it
# takes about 8 minutes on 2 cores with the release build up to date (measured: 7.7 min after
# the pool started; ~6 min of streams, the rest generating and registering A (8192²: 9–14 s),
# warm-up (consumers' first jobs at 8192²: 7–10 s) and idle windows); add the build if Sources
# changed. 16384 works with --sizes (about 7 minutes for 8192,16384; 1 GiB per float32 matrix,
# ~2.5 GiB of plane cache per consumer — sized from the largest n — and 1 GiB per Celery worker)
# but is not in the default.
# Caveat: each of our jobs arms a deadline timer that expires --deadline-ms later, inside a later
# run, so a run's broker CPU includes ~1 timer expiry per job of some earlier run of ours.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
sizes=2048,4096,8192 consumers=2 workers="" count=20 rate=2 repeats=3 bits=6 seed=11 warmup=""
deadline_ms=30000 idle_s=10 csv_out="" keep_logs=""
while (($#)); do
  case $1 in
    --sizes) sizes=$2; shift ;;
    --consumers) consumers=$2; shift ;;
    --workers) workers=$2; shift ;;
    --count) count=$2; shift ;;
    --rate) rate=$2; shift ;;
    --repeats) repeats=$2; shift ;;
    --bits) bits=$2; shift ;;
    --seed) seed=$2; shift ;;
    --warmup) warmup=$2; shift ;;
    --deadline-ms) deadline_ms=$2; shift ;;
    --idle-s) idle_s=$2; shift ;;
    --csv) csv_out=$2; shift ;;
    --keep-logs) keep_logs=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "e2e-matvec: unknown argument '$1' (see --help)" >&2; exit 64 ;;
  esac
  shift
done
workers=${workers:-$consumers}
warmup=${warmup:-$((2 * (consumers > workers ? consumers : workers)))}
for v in consumers workers count repeats bits seed warmup deadline_ms; do
  [[ ${!v} =~ ^[0-9]+$ && ${!v} -ge 1 ]] || { echo "e2e-matvec: --${v//_/-} must be a positive integer" >&2; exit 64; }
done
[[ $sizes =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || { echo "e2e-matvec: --sizes must be like 2048,4096" >&2; exit 64; }
[[ $rate =~ ^[0-9]*\.?[0-9]+$ ]] || { echo "e2e-matvec: --rate must be a positive number" >&2; exit 64; }
[[ $idle_s =~ ^[0-9]*\.?[0-9]+$ ]] || { echo "e2e-matvec: --idle-s must be a number of seconds" >&2; exit 64; }
note() { printf 'e2e-matvec: %s\n' "$*" >&2; }
[[ -z $csv_out || $csv_out == /* ]] || csv_out=$root/$csv_out

work=$(mktemp -d /tmp/e2e-matvec.XXXXXX)
pool_dir=$work/pool
cleanup() {
  local rc=$? d
  trap - EXIT INT TERM
  for d in "$work"/celery-*; do
    [[ -f $d/celery.pids ]] && bash Benchmarks/peers/celery/workers.sh stop "$d" || true
  done
  if [[ -f $pool_dir/pool.env ]]; then
    bash scripts/local-pool.sh stop "$pool_dir" >&2 || true
  elif [[ -f $pool_dir/broker/env || -f $pool_dir/broker/node.state ]]; then
    bash scripts/rabbitmq-stop.sh "$pool_dir/broker" >&2 || true   # a start that failed half-way
  fi
  if [[ -n $keep_logs ]]; then
    mkdir -p "$keep_logs" && cp -r "$work/logs/." "$pool_dir/logs/." "$keep_logs/" 2>/dev/null || true
    note "logs kept in $keep_logs"
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$SECONDS
note "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
note "installing the peers' venv"
py=$(bash Benchmarks/peers/celery/install.sh | tail -n 1)

# Every consumer keeps the largest matrix in three forms at once (float32 for one-shot jobs, 2
# and 3 int8 planes for m = 2 and m = 3: 9 bytes per element): a smaller plane cache evicts one
# form to load another on every job (at 16384² with the 1 GiB default, jobs took seconds).
largest=$(tr ',' '\n' <<<"$sizes" | sort -n | tail -n 1)
cache_mb=$(( largest * largest * 9 * 11 / 10 / 1048576 ))
(( cache_mb < 1024 )) && cache_mb=1024
[[ ${SR_CONSUMER_ARGS:-} == *--cache-mb* ]] || export SR_CONSUMER_ARGS="${SR_CONSUMER_ARGS:-} --cache-mb $cache_mb"
note "building release and starting the pool ($consumers consumers, srconsume$SR_CONSUMER_ARGS) in $pool_dir"
env_file=$(bash scripts/local-pool.sh start --release --consumers "$consumers" --dir "$pool_dir" | tail -n 1)
# shellcheck disable=SC1090
source "$env_file"
[[ -n ${SR_POOL_BROKER_DIR:-} && -s $SR_POOL_BROKER_DIR/rabbitmq.pid ]] ||
  { note "error: no broker pid file in '${SR_POOL_BROKER_DIR:-}'"; exit 1; }
beam_pid=$(tr -dc 0-9 <"$SR_POOL_BROKER_DIR/rabbitmq.pid")
[[ -r /proc/$beam_pid/stat ]] || { note "error: broker pid $beam_pid is not running"; exit 1; }
mkdir -p "$work/bin"
cp "$SR_POOL_BIN/srproduce" "$work/bin/srproduce"
note "pool ready in $((SECONDS - t0)) s; measuring sizes $sizes"

args=(--srproduce "$work/bin/srproduce" --python "$py" --workers-sh Benchmarks/peers/celery/workers.sh
  --celery-client Benchmarks/peers/celery/client.py --beam-pid "$beam_pid" --work "$work"
  --sizes "$sizes" --consumers "$consumers" --workers "$workers" --count "$count" --rate "$rate"
  --repeats "$repeats" --bits "$bits" --seed "$seed" --warmup "$warmup" --deadline-ms "$deadline_ms" --idle-s "$idle_s")
[[ -n $csv_out ]] && args+=(--csv "$csv_out")
"$py" Benchmarks/e2e_matvec.py "${args[@]}"
note "done in $((SECONDS - t0)) s"

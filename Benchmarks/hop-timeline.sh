#!/usr/bin/env bash
# Where a job's time goes, hop by hop: a pool on this machine (private RabbitMQ, aggregator,
# K consumers, release builds) with SR_TRACE=1, a registered n×n matrix, a warm-up, then a
# Poisson stream whose roles print `TRACE <µs> <job> <event>` lines; prints the median time of
# every event since the job's planning started (one clock: every role runs on this machine),
# and the broker's CPU per job for the layered and the one-shot stream.
#
#   Benchmarks/hop-timeline.sh [--n 4096] [--chunks 2] [--consumers 2] [--count 30] [--rate 10]
set -euo pipefail
cd "$(dirname "$0")/.."
n=4096 chunks=2 consumers=2 count=30 rate=10
while (($#)); do
  case $1 in
    --n) n=$2; shift ;; --chunks) chunks=$2; shift ;; --consumers) consumers=$2; shift ;;
    --count) count=$2; shift ;; --rate) rate=$2; shift ;;
    -h | --help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "hop-timeline: unknown argument '$1' (see --help)" >&2; exit 64 ;;
  esac
  shift
done
work=$(mktemp -d)
pool=""
cleanup() { [[ -n $pool ]] && bash scripts/local-pool.sh stop "$(dirname "$pool")" >&2 || true; rm -rf "$work"; }
trap cleanup EXIT
export SR_TRACE=1
pool=$(bash scripts/local-pool.sh start --release --consumers "$consumers" --dir "$work/pool" | tail -n 1)
# shellcheck disable=SC1090
source "$pool"
python3 -c "
import numpy as np
np.save('$work/a.npy', np.random.default_rng(7).uniform(-1, 1, ($n, $n)).astype(np.float32))"
"$SR_POOL_BIN/srproduce" register bench --matrix "$work/a.npy" >/dev/null 2>&1
common=(--matrix bench --deadline 30s --chunks "$chunks" --wait)
# Warm-up: every consumer loads and prepares the matrix (and its float32 copy) once.
"$SR_POOL_BIN/srproduce" stream "${common[@]}" --count $((4 * consumers)) --rate 20 >/dev/null 2>&1
"$SR_POOL_BIN/srproduce" stream "${common[@]}" --one-shot --count $((4 * consumers)) --rate 20 >/dev/null 2>&1
broker_pid=$(cat "$SR_POOL_BROKER_DIR/rabbitmq.pid")
# CPU (user + system, clock ticks) of the broker, the aggregator and the consumers.
cpu() { for pid in "$broker_pid" $SR_POOL_PIDS; do awk '{printf "%d ", $14 + $15}' "/proc/$pid/stat"; done; }
ticks=$(getconf CLK_TCK)
run() {   # run NAME ARGS…: a stream, then one line of CPU ms per job for every role
  local before after client
  before=$(cpu)
  local TIMEFORMAT='%U %S'
  { time "$SR_POOL_BIN/srproduce" stream "${common[@]}" --count "$count" --rate "$rate" --seed 5 "${@:2}" \
      2>"$work/$1.trace" >"$work/$1.out"; } 2>"$work/$1.time"
  client=$(tail -n 1 "$work/$1.time")
  after=$(cpu)
  python3 - "$1" "$ticks" "$count" "$before" "$after" "$client" <<'PY'
import sys
name, ticks, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
b, a = [list(map(int, s.split())) for s in sys.argv[4:6]]
user, system = map(float, sys.argv[6].split()[-2:])
ms = [(y - x) * 1000 / ticks / count for x, y in zip(b, a)]
print(f"| {name} | {ms[0]:.2f} | {ms[1]:.2f} | {sum(ms[2:]):.2f} | {(user + system) * 1000 / count:.2f} |")
PY
}
echo "| stream | broker CPU ms/job | aggregator | consumers (all) | producer (srproduce stream) |"
echo "|---|---|---|---|---|"
run layered
run one-shot --one-shot
echo; tail -qn 1 "$work/layered.out" "$work/one-shot.out"
cat "$work/layered.trace" "$SR_POOL_DIR"/logs/*.log | grep '^TRACE' | sort -n -k2 >"$work/all.trace"
python3 - "$work/all.trace" <<'PY'
import collections, sys
events = collections.defaultdict(list)
for line in open(sys.argv[1]):
    _, t, job, *what = line.split()
    events[job].append((int(t), ' '.join(what)))
jobs = [j for j in events if any(w == 'plan.start' for _, w in events[j])]
rows = collections.defaultdict(list)
for j in jobs[3:]:                       # the first jobs of a stream see a cold connection
    t0 = min(t for t, w in events[j] if w == 'plan.start')
    seen = set()
    for t, w in events[j]:
        key = w.replace(j, '')
        if key not in seen:
            seen.add(key)
            rows[key].append((t - t0) / 1000)
print(f"\n| event (since planning started) | p50 ms | jobs |\n|---|---|---|")
for k in sorted(rows, key=lambda k: sorted(rows[k])[len(rows[k]) // 2]):
    v = sorted(rows[k])
    print(f"| {k} | {v[len(v) // 2]:.2f} | {len(v)} |")
PY

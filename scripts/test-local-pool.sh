#!/usr/bin/env bash
# Tests scripts/local-pool.sh the way README uses it: start a pool with metrics ports, source
# its env file, register a matrix and run a job with the bare `srproduce` it puts on PATH,
# check the answer against numpy and the metrics every role serves, then check that a pool
# whose metrics ports are taken is refused, that a pool whose role cannot start fails start
# and leaves nothing running, and that a bare `stop` stops the last pool.
#
#   bash scripts/test-local-pool.sh [--release]     (default: the debug build `swift test` uses,
#                                                   from $SR_BIN_DIR when set)
#
# Uses $SR_AMQP_URL's broker when set (scripts/test.sh runs it there), else the pool starts its
# own. Needs python3 with numpy (scripts/install-system-deps.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d "${TMPDIR:-/tmp}/sr-local-pool-test.XXXXXX")
config=(--debug)
[[ ${1:-} == --release ]] && config=()
# scripts/test.sh has built everything already: use those executables (SR_BIN_DIR).
# Through a symlink to the folder (as `.build/release` is one): stop must still find the roles.
if [[ -n ${SR_BIN_DIR:-} && ${1:-} != --release ]]; then
  ln -s "$SR_BIN_DIR" "$work/bin-link"
  config=(--bin-dir "$work/bin-link")
fi
pool_dir=$work/pool second_dir=$work/second
cleanup() {
  for d in "$second_dir" "$pool_dir"; do
    [[ -f $d/pool.env ]] && bash scripts/local-pool.sh stop "$d" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { printf 'test-local-pool: FAIL: %s\n' "$*" >&2; exit 1; }
pass() { printf 'test-local-pool: ok: %s\n' "$*"; }

# Two free ports apart (the aggregator's and two consumers' follow the base).
base=$(python3 -c 'import socket
for p in range(23000, 60000, 17):
    ok = True
    for q in range(p, p + 3):
        s = socket.socket()
        try: s.bind(("127.0.0.1", q))
        except OSError: ok = False
        finally: s.close()
    if ok: print(p); break')

broker_args=()
[[ -n ${SR_AMQP_URL:-} ]] && broker_args=(--broker-url "$SR_AMQP_URL")

env_file=$(bash scripts/local-pool.sh start "${config[@]}" --consumers 2 --dir "$pool_dir" \
  --metrics-port "$base" "${broker_args[@]}" 2>"$work/start.log" | tail -n 1) ||
  { cat "$work/start.log" >&2; fail "start"; }
[[ $env_file == "$pool_dir/pool.env" ]] || fail "start printed '$env_file', not the env file's path"
grep -q "stop it: scripts/local-pool.sh stop" "$work/start.log" || fail "start does not say how to stop"
grep -q "watch it: srproduce top --metrics http://127.0.0.1:$base/metrics" "$work/start.log" ||
  fail "start does not say how to watch the pool"
pass "start (metrics on $base..$((base + 2)))"

(
  # shellcheck disable=SC1090
  source "$env_file"
  [[ $(command -v srproduce) == "$SR_POOL_BIN/srproduce" ]] || fail "srproduce on PATH is $(command -v srproduce)"
  cd "$work"
  python3 -c 'import numpy as np
rng = np.random.default_rng(7)
np.save("A.npy", rng.standard_normal((300, 200)).astype(np.float32))
np.save("x.npy", rng.standard_normal(200).astype(np.float32))'
  srproduce register pooltest --matrix A.npy >/dev/null
  srproduce matvec --matrix pooltest --vector x.npy --deadline 60s --wait --json --out y.npy >out.jsonl ||
    fail "matvec exited $?: $(cat out.jsonl)"
  python3 - <<'EOF' || exit 1
import json, numpy as np, sys
lines = [json.loads(l) for l in open("out.jsonl") if l.strip()]
final = [l for l in lines if l.get("type") == "output"][-1]
A, x, y = np.load("A.npy").astype(np.float64), np.load("x.npy").astype(np.float64), np.load("y.npy")
err = float(np.max(np.abs(A @ x - y)))
if final["status"] != "complete" or err > final["bound"]:
    sys.exit(f"test-local-pool: FAIL: final {final}, max error {err:.3e}")
print(f"test-local-pool: ok: job complete, max error {err:.3e} within bound {final['bound']:.3e}")
EOF
  for url in $SR_POOL_METRICS; do
    body=$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "$url") ||
      fail "no metrics at $url"
    case $url in
      *:$base/*) metric=sr_refinements_total ;;
      *) metric=sr_operand_cache_ ;;
    esac
    grep -q "^$metric" <<<"$body" || fail "$url has no $metric"
  done
  computed=0
  for ((i = 1; i <= 2; i++)); do
    n=$(python3 -c 'import sys, urllib.request
body = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
print(int(sum(float(l.split()[-1]) for l in body.splitlines() if l.startswith("sr_tasks_computed_total"))))' \
      "http://127.0.0.1:$((base + i))/metrics")
    computed=$((computed + n))
  done
  ((computed > 0)) || fail "the consumers' sr_tasks_computed_total did not move"
  pass "metrics from all 3 roles; $computed tasks computed"
)

# A second pool wanting the same metrics ports is refused before it starts anything.
if bash scripts/local-pool.sh start "${config[@]}" --consumers 1 --dir "$second_dir" --metrics-port "$base" \
  "${broker_args[@]}" >"$work/second.out" 2>"$work/second.log"; then
  fail "a pool whose metrics ports are taken started"
fi
grep -q "port $base (127.0.0.1) is in use" "$work/second.log" || { cat "$work/second.log" >&2; fail "start did not name the port in use"; }
[[ ! -f $second_dir/pool.env ]] || fail "the refused start left an env file"
pass "taken metrics ports refused: $(grep -o "port $base (127.0.0.1) is in use" "$work/second.log")"

# A role that exits while starting (here a consumer given an option it does not have) fails
# start with its log, and start stops the roles it had started.
if SR_CONSUMER_ARGS=--no-such-option bash scripts/local-pool.sh start "${config[@]}" --consumers 1 --dir "$second_dir" \
  "${broker_args[@]}" >"$work/second.out" 2>"$work/second.log"; then
  fail "a pool whose consumer cannot start started"
fi
grep -q "consumer-1 (pid [0-9]*) exited while starting" "$work/second.log" || { cat "$work/second.log" >&2; fail "start did not say which role exited"; }
grep -q "no-such-option" "$work/second.log" || fail "start did not show the role's log"
[[ ! -f $second_dir/pool.env ]] || fail "the failed start left an env file"
aggregator_log=$second_dir/logs/aggregator.log
for pid in $(pgrep -x sraggregate || true); do
  # The failed pool's aggregator wrote to its log; any still running with that log open is a leftover.
  for fd in /proc/"$pid"/fd/*; do
    [[ $(readlink "$fd" 2>/dev/null) == "$aggregator_log" ]] && fail "the failed start left its aggregator (pid $pid) running"
  done
done
pass "a role that cannot start fails start: $(grep -o 'consumer-1 (pid [0-9]*) exited while starting' "$work/second.log")"

# A bare stop finds the last pool started from this checkout.
# shellcheck disable=SC1090
pids=$(source "$env_file"; echo "$SR_POOL_PIDS")
for pid in $pids; do
  [[ -d /proc/$pid ]] || fail "pid $pid of the pool is gone before stop"
done
bash scripts/local-pool.sh stop 2>"$work/stop.log" || { cat "$work/stop.log" >&2; fail "stop"; }
grep -q "stopping the last pool started here: $pool_dir" "$work/stop.log" || fail "bare stop did not pick $pool_dir: $(cat "$work/stop.log")"
for pid in $pids; do
  [[ -d /proc/$pid ]] && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] && fail "pid $pid still runs after stop"
done
pass "bare stop stopped $pool_dir"
echo "test-local-pool: PASS"

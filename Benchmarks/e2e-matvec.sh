#!/usr/bin/env bash
# End-to-end benchmark of docs/BENCHMARKS.md: a pool on this machine (private RabbitMQ, one
# aggregator, K consumers, release builds), a registered n×n matrix, and two streams of jobs
# on the same pool — layered (m chunks) and one-shot float32 — compared side by side:
# time to first resolution ÷ one-shot time, and time to final ÷ one-shot time (medians).
#
# Times are client-observed (srproduce stream: submit → output received). Tasks are sized by
# compute unless --row-block is given.
#
#   Benchmarks/e2e-matvec.sh [--n 4096] [--chunks 2] [--bits 6] [--consumers 2] [--count 20] [--row-block R]
set -euo pipefail
cd "$(dirname "$0")/.."
n=4096 chunks=2 bits=6 consumers=2 count=20 rate=2 row_block=""
while (($#)); do
  case $1 in
    --n) n=$2; shift ;; --chunks) chunks=$2; shift ;; --bits) bits=$2; shift ;;
    --consumers) consumers=$2; shift ;; --count) count=$2; shift ;; --rate) rate=$2; shift ;;
    --row-block) row_block=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 64 ;;
  esac
  shift
done
work=$(mktemp -d)
pool=""
cleanup() { [[ -n $pool ]] && bash scripts/local-pool.sh stop "$(dirname "$pool")" >&2 || true; rm -rf "$work"; }
trap cleanup EXIT

pool=$(bash scripts/local-pool.sh start --release --consumers "$consumers" --dir "$work/pool")
# shellcheck disable=SC1090
source "$pool"
python3 -c "
import numpy as np
np.save('$work/a.npy', np.random.default_rng(7).uniform(-1, 1, ($n, $n)).astype(np.float32))"
"$SR_POOL_BIN/srproduce" register bench --matrix "$work/a.npy" >/dev/null
common=(--matrix bench --deadline 30s --chunks "$chunks" --bits "$bits" --wait)
[[ -n $row_block ]] && common+=(--row-block "$row_block")
# Warm-up: every consumer loads and prepares the matrix (and its float32 copy) once.
"$SR_POOL_BIN/srproduce" stream "${common[@]}" --count $((2 * consumers)) --rate 20 >/dev/null
"$SR_POOL_BIN/srproduce" stream "${common[@]}" --one-shot --count $((2 * consumers)) --rate 20 >/dev/null
layered=$("$SR_POOL_BIN/srproduce" stream "${common[@]}" --count "$count" --rate "$rate" --seed 11 | tail -n 1)
oneshot=$("$SR_POOL_BIN/srproduce" stream "${common[@]}" --one-shot --count "$count" --rate "$rate" --seed 11 | tail -n 1)
echo "layered:  $layered"
echo "one-shot: $oneshot"
python3 - "$layered" "$oneshot" "$n" "$chunks" "$bits" "$consumers" <<'PY'
import re, sys
lay, one, n, m, b, k = sys.argv[1:]
def p50(line, what):
    return float(re.search(what + r" ms: p50 ([0-9.]+)", line).group(1))
first, final, base = p50(lay, "first resolution"), p50(lay, "final"), p50(one, "final")
print()
print("| n | m | bits | consumers | one-shot p50 ms | first p50 ms | final p50 ms | first ÷ one-shot | final ÷ one-shot |")
print("|---|---|---|---|---|---|---|---|---|")
print(f"| {n} | {m} | {b} | {k} | {base:.2f} | {first:.2f} | {final:.2f} | {first/base:.2f} | {final/base:.2f} |")
PY

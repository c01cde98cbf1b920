#!/usr/bin/env bash
# Distributed inference end to end (docs/NEURAL.md): a pool on this machine (private RabbitMQ,
# one aggregator, K consumers, release builds), the committed Fashion-MNIST MLP (its exit rules
# calibrated on test images 0..<5000), and `srproduce infer` on test images 5000..<10000 —
# every image to R, the calibrated rules, and deadlines that cut the job short.
#
#   Benchmarks/e2e-infer.sh [--consumers 2] [--count 5000] [--model Tests/Models/fashion-mnist-mlp]
#                           [--deadlines 800ms,500ms,300ms] [--block 100]
set -euo pipefail
cd "$(dirname "$0")/.."
consumers=2 count=5000 model=Tests/Models/fashion-mnist-mlp deadlines=800ms,500ms,300ms block=100
while (($#)); do
  case $1 in
    --consumers) consumers=$2; shift ;; --count) count=$2; shift ;; --model) model=$2; shift ;;
    --deadlines) deadlines=$2; shift ;; --block) block=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 64 ;;
  esac
  shift
done
[[ -f data/fashion-mnist/t10k-images-idx3-ubyte ]] || { echo "no data: run scripts/fetch-data.sh" >&2; exit 1; }
work=$(mktemp -d)
pool=""
cleanup() { [[ -n $pool ]] && bash scripts/local-pool.sh stop "$(dirname "$pool")" >&2 || true; rm -rf "$work"; }
trap cleanup EXIT

pool=$(bash scripts/local-pool.sh start --release --consumers "$consumers" --dir "$work/pool")
# shellcheck disable=SC1090
source "$pool"
"$SR_POOL_BIN/srproduce" register bench-model --model "$model" >/dev/null
images=(--images data/fashion-mnist/t10k-images-idx3-ubyte --labels data/fashion-mnist/t10k-labels-idx1-ubyte)
# Warm-up: every consumer loads the model and the images once (cached by digest afterwards).
"$SR_POOL_BIN/srproduce" infer --model bench-model "${images[@]}" --first 5000 --count "$count" --deadline 600s --exit none \
  --block "$block" --wait >/dev/null
run() {   # name, then infer arguments
  local name=$1; shift
  "$SR_POOL_BIN/srproduce" infer --model bench-model "${images[@]}" --first 5000 --count "$count" --block "$block" --wait --json \
    --out "$work/$name.json" "$@" > "$work/$name.lines"
  echo "$name|$*"
}
runs=(
  "$(run all-R --deadline 600s --exit none)"
  "$(run calibrated --deadline 600s)"
  "$(run stability --deadline 600s --exit stability)"
)
IFS=, read -ra cuts <<< "$deadlines"
for d in "${cuts[@]}"; do runs+=("$(run "deadline-$d" --deadline "$d")"); done
python3 - "$work" "$consumers" "${runs[@]}" <<'PY'
import json, sys
work, consumers, runs = sys.argv[1], sys.argv[2], sys.argv[3:]
print(f"consumers: {consumers}")
print()
print("| run | arguments | status | answer at ms (late) | every image labelled at ms | resolution reached r0…R | decided | skipped | accuracy |")
print("|---|---|---|---|---|---|---|---|---|")
for entry in runs:
    name, args = entry.split("|", 1)
    final = json.load(open(f"{work}/{name}.json"))
    n = len(final["answers"])
    labelled = next((json.loads(l)["elapsed_ms"] for l in open(f"{work}/{name}.lines")
                     if '"partial"' in l and json.loads(l)["answered"] == n), None)
    late = f" ({final['lateMs']:.0f})" if final.get("lateMs") is not None else ""
    hist = " / ".join(str(h) for h in final["resolution_histogram"])
    decided = sum(a["decided"] for a in final["answers"])
    total = n * final["resolutions"]
    print(f"| {name} | `{args}` | {final['status']} | {final['elapsedMs']:.0f}{late} | "
          f"{'—' if labelled is None else f'{labelled:.0f}'} | {hist} | {decided} | "
          f"{100 * final['skipped'] / total:.1f} % | {final['accuracy']:.4f} |")
PY

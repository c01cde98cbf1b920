#!/usr/bin/env bash
# Exact layered inference against ONNX Runtime on the same model and images, in one run
# (docs/NEURAL.md, "Against ONNX Runtime"): ONNX Runtime's float pass (pinned, CPU, one thread,
# the fastest of a few batch sizes), the embedded exact evaluator (one thread: resolution 1 for
# every image, the calibrated early exit, resolution R) and the pool (private RabbitMQ, one
# aggregator, --consumers consumers: the same three through `srproduce infer`). Prints one table.
#
#   Benchmarks/neural-vs-onnxruntime.sh [--model Tests/Models/fashion-mnist-vgg] [--onnx FILE]
#       [--count 10000] [--first 0] [--repeats 3] [--consumers 2] [--block 100]
#       [--batches 1,32,100,1000] [--slice-size 100] [--skip-pool] [--keep DIR]
#
# --model is a model directory (model.json + model.safetensors, imported from --onnx and
# calibrated on other images than these: `srproduce model import` then `srproduce model
# calibrate`); --onnx defaults to model.onnx beside it, else Tests/Models/fashion-mnist-vgg's.
# The images are the Fashion-MNIST test set (scripts/fetch-data.sh), --count of them from --first,
# preprocessed as the model's provenance says: pixel / 255, no mean or std. Every figure is the
# median of --repeats runs (range in the table); modes are interleaved within each repeat. The
# committed VGG's exit rules were calibrated on test images 0…4999: --first 5000 reports on
# images the calibration never saw (all 10 000 mix both halves).
# Pool times are the final answer's elapsedMs: from the job's creation in srproduce (images read
# and registered) to the aggregator publishing the answer for every image, on this machine's one
# clock; the client receives it one hop later. --keep DIR keeps every raw result there.
set -euo pipefail
cd "$(dirname "$0")/.."
model=Tests/Models/fashion-mnist-vgg onnx="" count=10000 first=0 repeats=3 consumers=2 block=100
batches=1,32,100,1000 slice=100 skip_pool=0 keep=""
images=data/fashion-mnist/t10k-images-idx3-ubyte labels=data/fashion-mnist/t10k-labels-idx1-ubyte
while (($#)); do
  case $1 in
    --model) model=$2; shift ;; --onnx) onnx=$2; shift ;; --count) count=$2; shift ;;
    --first) first=$2; shift ;; --repeats) repeats=$2; shift ;; --consumers) consumers=$2; shift ;;
    --block) block=$2; shift ;; --batches) batches=$2; shift ;; --slice-size) slice=$2; shift ;;
    --images) images=$2; shift ;; --labels) labels=$2; shift ;;
    --skip-pool) skip_pool=1 ;; --keep) keep=$2; shift ;;
    *) echo "neural-vs-onnxruntime: unknown argument '$1'" >&2; exit 64 ;;
  esac
  shift
done
note() { printf 'neural-vs-onnxruntime: %s\n' "$*" >&2; }
die() { note "error: $*"; exit 1; }
[[ -f $images && -f $labels ]] || die "no $images or $labels: run scripts/fetch-data.sh"
[[ -f $model/model.json || $model == *.safetensors ]] \
  || die "$model is not a model directory (model.json + model.safetensors); make one with: srproduce model import --onnx FILE --out DIR --activation-grid -12, then srproduce model calibrate --model DIR --images data/fashion-mnist/train-images-idx3-ubyte --labels data/fashion-mnist/train-labels-idx1-ubyte --count 10000"
if [[ -z $onnx ]]; then
  onnx=$model/model.onnx
  if [[ ! -f $onnx ]]; then
    onnx=Tests/Models/fashion-mnist-vgg/model.onnx
    note "no model.onnx in $model: using $onnx as its ONNX form (give --onnx if $model is another network)"
  fi
fi
[[ -f $onnx ]] || die "no ONNX file $onnx (give --onnx)"
[[ $model == *.safetensors ]] || grep -q '"exitRules"' "$model/model.json" \
  || die "$model has no calibrated exit rule: srproduce model calibrate --model $model --images data/fashion-mnist/train-images-idx3-ubyte --labels data/fashion-mnist/train-labels-idx1-ubyte --count 10000"

work=$(mktemp -d)
pool=""
cleanup() {
  if [[ -n $pool ]]; then bash scripts/local-pool.sh stop "$(dirname "$pool")" >&2 || true; fi
  if [[ -n $keep ]]; then mkdir -p "$keep" && cp -r "$work"/. "$keep"/ && note "raw results kept in $keep"; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' INT TERM   # so that an interrupted run still stops its pool (EXIT trap)
load() { cut -d' ' -f1-3 /proc/loadavg; }
load_start=$(load)
started=$(date -u +%Y-%m-%dT%H:%MZ)

# 1. ONNX Runtime, float32, one thread: the fastest of the batch sizes.
py=$(bash Benchmarks/peers/onnxruntime/install.sh | tail -n 1)
note "ONNX Runtime on $onnx: $count images, batches $batches, $repeats runs each"
"$py" Benchmarks/peers/onnxruntime/ort_bench.py --model "$onnx" --images "$images" --labels "$labels" \
  --first "$first" --count "$count" --batches "$batches" --repeats "$repeats" >"$work/ort.json"

# 2. The embedded exact evaluator, one thread, release build.
swift build -c release --product srbench >&2
bin=$(swift build -c release --show-bin-path)
note "embedded exact evaluator: $count images, $repeats runs of each mode"
OPENBLAS_NUM_THREADS=1 "$bin/srbench" embedded-inference --model "$model" --images "$images" --labels "$labels" \
  --first "$first" --count "$count" --repeats "$repeats" --slice-size "$slice" --json >"$work/embedded.json"

# 3. The pool: the same three modes through srproduce infer, and every resolution in turn.
# Resolution 1 for every image is the exit rule margin:0 (every margin is ≥ 0, so every image is
# decided at r = 1); the calibrated exit is infer's default (the model's first rule); full
# resolution is --exit final (R alone: one task per block at R); --exit none walks every image
# through r = 1…R in turn (no exit, a deadline gets the best resolution reached).
modes=(res1 exit full walk)
declare -A exit_args=([res1]="--exit margin:0" [exit]="" [full]="--exit final" [walk]="--exit none")
if ((!skip_pool)); then
  pool=$(bash scripts/local-pool.sh start --consumers "$consumers" --dir "$work/pool")
  # shellcheck disable=SC1090
  source "$pool"
  "$SR_POOL_BIN/srproduce" register bench-model --model "$model" >/dev/null
  infer=("$SR_POOL_BIN/srproduce" infer --model bench-model --images "$images" --labels "$labels"
         --first "$first" --count "$count" --block "$block" --deadline 12h --wait --json)
  # Warm-up: every consumer loads the model, its operands and the images once (cached by digest).
  note "pool warm-up: $count images at resolution 1"
  "${infer[@]}" --exit margin:0 --out "$work/pool-warmup.json" >/dev/null
  for ((k = 1; k <= repeats; k++)); do
    for mode in "${modes[@]}"; do
      note "pool run $k/$repeats: $mode"
      t0=$(date +%s%N)
      # shellcheck disable=SC2086  # exit_args holds zero or two words
      "${infer[@]}" ${exit_args[$mode]} --out "$work/pool-$mode-$k.json" >/dev/null
      echo $((($(date +%s%N) - t0) / 1000000)) >"$work/pool-$mode-$k.wall"
    done
  done
fi
load_end=$(load)

python3 - "$work" "$repeats" "$skip_pool" "$load_start" "$load_end" "$started" "$consumers" "$block" "$onnx" <<'PY'
import json, statistics, sys
work, repeats, skip_pool, load_start, load_end, started, consumers, block, onnx = sys.argv[1:]
repeats, skip_pool = int(repeats), skip_pool == "1"
ort = json.load(open(f"{work}/ort.json"))
emb = json.load(open(f"{work}/embedded.json"))
ort_ms = ort["median_ms"]
res = emb["resolutions"]

rows = []  # name, [ms], accuracy, cpu median or None, extra
rows.append(("ONNX Runtime float32 (batch %d)" % ort["best_batch"],
             next(b["wall_ms"] for b in ort["batches"] if b["batch"] == ort["best_batch"]),
             ort["accuracy"], statistics.median(next(b["cpu_ms"] for b in ort["batches"] if b["batch"] == ort["best_batch"])), None))
names = ["embedded, resolution 1", "embedded, calibrated exit", f"embedded, full (r = {res})"]
for name, m in zip(names, emb["modes"]):
    hist = m.get("exitHistogram")
    rows.append((name, m["wallMs"], m["accuracy"], statistics.median(m["cpuMs"]),
                 None if not hist else "answered at r = 1…R: " + " / ".join(map(str, hist))))
emb_full = emb["modes"][-1]["accuracy"]
pool_rows = []
if not skip_pool:
    for mode, name in [("res1", "pool, resolution 1"), ("exit", "pool, calibrated exit"),
                       ("full", f"pool, full (r = {res} alone, --exit final)"),
                       ("walk", f"pool, every resolution (r = 1…{res} for every image, --exit none)")]:
        finals = [json.load(open(f"{work}/pool-{mode}-{k}.json")) for k in range(1, repeats + 1)]
        walls = [int(open(f"{work}/pool-{mode}-{k}.wall").read()) for k in range(1, repeats + 1)]
        assert all(f["status"] == "complete" for f in finals), f"a pool run of {mode} did not complete"
        hist = finals[-1]["resolution_histogram"]
        skipped = 100 * finals[-1]["skipped"] / (len(finals[-1]["answers"]) * finals[-1]["resolutions"])
        pool_rows.append((name, [f["elapsedMs"] for f in finals], finals[-1]["accuracy"], None,
                          f"srproduce wall {statistics.median(walls) / 1000:.1f} s; answered at r = 1…R: "
                          + " / ".join(map(str, hist[1:])) + f"; skipped {skipped:.0f} %"))

def fmt_ms(v, unit=None):
    unit = unit or ("s" if v >= 1000 else "ms")
    return f"{v / 1000:.2f} s" if unit == "s" else f"{v:.0f} ms"

def fmt_range(lo, hi, med):
    unit = "s" if med >= 1000 else "ms"
    return fmt_ms(lo, unit).split()[0] + "–" + fmt_ms(hi, unit)

print(f"ONNX Runtime {ort['onnxruntime']} (numpy {ort['numpy']}, Python {ort['python']}; CPU, intra_op 1, inter_op 1, "
      f"sequential) on {onnx}; model {emb['model']}: R = {res}, {emb['bitsPerUpgrade']} bits per upgrade, exit {emb['rule']}. "
      f"{emb['images']} test images from {emb['first']}; medians of {repeats} runs. Embedded: one thread, slices of {emb['sliceSize']} "
      f"images; before timing, images split {emb['quantizeMs']:.0f} ms and operands of every resolution {emb['operandsMs']:.0f} ms. "
      + ("" if skip_pool else f"Pool: {consumers} consumers, tasks of {block} images, one private RabbitMQ, one aggregator; warm-up job first. ")
      + f"Started {started}; load average (1, 5, 15 min) {load_start} at the start, {load_end} at the end.")
print()
print("| run | median time | min–max | ÷ ORT | CPU (median) | accuracy | accuracy lost vs full (pp) | notes |")
print("|---|---|---|---|---|---|---|---|")
for i, (name, times, acc, cpu, extra) in enumerate(rows + pool_rows):
    med = statistics.median(times)
    pool = i >= len(rows)
    full = pool_rows[2][2] if pool else emb_full  # the R-alone row
    ratio = "1" if i == 0 else f"{med / ort_ms:.2f}"
    print(f"| {name} | {fmt_ms(med)} | {fmt_range(min(times), max(times), med)} | {ratio} | "
          f"{'—' if cpu is None else fmt_ms(cpu)} | {acc:.4f} | {100 * (full - acc):.2f} | {extra or ''} |")
if abs(ort["accuracy"] - emb_full) > 0.01:
    print()
    print(f"**Warning**: ONNX Runtime's accuracy {ort['accuracy']:.4f} and the exact network's at R {emb_full:.4f} differ by "
          f"more than 1 pp: is {onnx} the network of {emb['model']}?")
print()
print("ONNX Runtime per batch size (median wall / median CPU): " + "; ".join(
    f"{b['batch']}: {fmt_ms(b['median_ms'])} / {fmt_ms(statistics.median(b['cpu_ms']))}" for b in ort["batches"]))
PY

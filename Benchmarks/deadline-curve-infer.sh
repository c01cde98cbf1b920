#!/usr/bin/env bash
# Inference deadline curves on one pool, in one run: our exact layered inference (the model's
# calibrated exit) against ONNX Runtime workers behind Celery on the same private RabbitMQ, the
# same held-out Fashion-MNIST test images in the same jobs, all timed by their clients (submit →
# result received). docs/NEURAL.md, "Deadline curve against Celery + ONNX Runtime".
#
#   Benchmarks/deadline-curve-infer.sh [--images 1000] [--batch 10] [--block B] [--first 5000]
#       [--loads 0.5,0.8] [--deadlines 0.5,1,2,4] [--repeats 3] [--consumers 2] [--workers K]
#       [--model Tests/Models/fashion-mnist-vgg] [--onnx FILE] [--seed 11]
#       [--out docs/deadline-curve-infer-vgg] [--keep-logs DIR]
#
# Jobs are --batch consecutive images (default 10: a request of a few images, where the serving
# path's per-job cost is what a deadline has to beat; ONNX Runtime is near its best per-image
# cost from batch 10 on); our consumers get tasks of --block images (default ⌈batch /
# consumers⌉, so an idle pool's consumers share one job). Loads are fractions of Celery's
# capacity (a saturating burst), deadlines multiples of Celery's idle p50 for one job.
# 1. installs the peers' venv with ONNX Runtime (Benchmarks/peers/celery/install.sh
#    --with-onnxruntime, pinned), builds release and starts a pool (scripts/local-pool.sh:
#    private RabbitMQ, aggregator, --consumers consumers), registers --model, and starts K Celery
#    workers (default K = consumers; worker.py's classify task, one ONNX Runtime thread each);
# 2. Benchmarks/deadline_curve_infer.py measures and writes OUT.csv, OUT-runs.csv, OUT.png and a
#    Markdown table (stdout);
# 3. stops everything it started, by PID (trap on EXIT).
# The committed VGG's exit rules were calibrated on test images 0…4999: the default --first 5000
# reports on images calibration never saw. Progress on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
images_n=1000 batch=10 block="" first=5000 loads=0.5,0.8 deadlines=0.5,1,2,4 repeats=3 consumers=2
workers="" model=Tests/Models/fashion-mnist-vgg onnx="" seed=11 out=docs/deadline-curve-infer-vgg keep_logs=""
images=data/fashion-mnist/t10k-images-idx3-ubyte labels=data/fashion-mnist/t10k-labels-idx1-ubyte
while (($#)); do
  case $1 in
    --images) images_n=$2; shift ;;
    --batch) batch=$2; shift ;;
    --block) block=$2; shift ;;
    --first) first=$2; shift ;;
    --loads) loads=$2; shift ;;
    --deadlines) deadlines=$2; shift ;;
    --repeats) repeats=$2; shift ;;
    --consumers) consumers=$2; shift ;;
    --workers) workers=$2; shift ;;
    --model) model=$2; shift ;;
    --onnx) onnx=$2; shift ;;
    --seed) seed=$2; shift ;;
    --out) out=$2; shift ;;
    --keep-logs) keep_logs=$2; shift ;;
    -h | --help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "deadline-curve-infer: unknown argument '$1' (see --help)" >&2; exit 64 ;;
  esac
  shift
done
workers=${workers:-$consumers}
block=${block:-$(((batch + consumers - 1) / consumers))}
for v in images_n batch block consumers workers repeats seed; do
  [[ ${!v} =~ ^[0-9]+$ && ${!v} -ge 1 ]] || { echo "deadline-curve-infer: --${v%_n} must be a positive integer" >&2; exit 64; }
done
[[ $first =~ ^[0-9]+$ ]] || { echo "deadline-curve-infer: --first must be a non-negative integer" >&2; exit 64; }
((images_n >= batch)) || { echo "deadline-curve-infer: --images must be at least --batch" >&2; exit 64; }
note() { printf 'deadline-curve-infer: %s\n' "$*" >&2; }
die() { note "error: $*"; exit 1; }
[[ -f $images && -f $labels ]] || die "no $images or $labels: run scripts/fetch-data.sh"
onnx=${onnx:-$model/model.onnx}
[[ -f $onnx ]] || die "no ONNX file $onnx (give --onnx)"
grep -q '"exitRules"' "$model/model.json" 2>/dev/null \
  || die "$model has no calibrated exit rule (srproduce model calibrate --model $model ...)"
[[ $out == /* ]] || out=$root/$out

work=$(mktemp -d /tmp/deadline-curve-infer.XXXXXX)
pool_dir=$work/pool celery_dir=$work/celery
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -f $celery_dir/celery.pids ]]; then bash Benchmarks/peers/celery/workers.sh stop "$celery_dir" || true; fi
  if [[ -f $pool_dir/pool.env ]]; then
    bash scripts/local-pool.sh stop "$pool_dir" >&2 || true
  elif [[ -f $pool_dir/broker/env || -f $pool_dir/broker/node.state ]]; then
    bash scripts/rabbitmq-stop.sh "$pool_dir/broker" >&2 || true   # a start that failed half-way
  fi
  if [[ -n $keep_logs ]]; then
    mkdir -p "$keep_logs" && { cp -r "$work/logs/." "$keep_logs/" 2>/dev/null || true; }
    note "client logs kept in $keep_logs"
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$SECONDS
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u +%Y-%m-%dT%H:%MZ)
note "installing the peers' venv (Celery, ONNX Runtime)"
py=$(bash Benchmarks/peers/celery/install.sh --with-onnxruntime | tail -n 1)

note "building release and starting the pool ($consumers consumers) in $pool_dir"
env_file=$(bash scripts/local-pool.sh start --consumers "$consumers" --dir "$pool_dir" | tail -n 1)
# shellcheck disable=SC1090
source "$env_file"
# A private copy of srproduce: a rebuild in the work tree during the run must not change it.
mkdir -p "$work/bin"
cp "$SR_POOL_BIN/srproduce" "$work/bin/srproduce"
srproduce=$work/bin/srproduce
"$srproduce" register bench-infer --model "$model" >&2

note "starting $workers Celery workers (ONNX Runtime on $onnx) on the same broker"
bash Benchmarks/peers/celery/workers.sh start --workers "$workers" --dir "$celery_dir" --model "$onnx" --python "$py"

note "pool and peers ready in $((SECONDS - t0)) s; measuring"
"$py" Benchmarks/deadline_curve_infer.py --srproduce "$srproduce" --model-name bench-infer \
  --celery-client Benchmarks/peers/celery/classify_client.py --images-file "$images" --labels-file "$labels" \
  --first "$first" --images "$images_n" --batch "$batch" --block "$block" --consumers "$consumers" \
  --workers "$workers" --repeats "$repeats" --seed "$seed" --loads "$loads" --deadlines "$deadlines" \
  --out "$out" --log-dir "$work/logs" --quiet-pids "$SR_POOL_PIDS $(cat "$celery_dir/celery.pids")" \
  --load-note "Started $started; load average (1, 5, 15 min) $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) when measuring began."
note "done in $((SECONDS - t0)) s; load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"

#!/usr/bin/env bash
# Starts and stops the Celery peer pool (worker.py) on the broker of SR_AMQP_URL.
#
#   Benchmarks/peers/celery/workers.sh start --workers K --dir DIR [--matrix A.npy] [--model M.onnx]
#                                            [--python PY] [--pool threads|solo|prefork]
#   Benchmarks/peers/celery/workers.sh stop DIR
#
# start launches K `celery worker --pool threads --concurrency 1` processes (one task at a time,
# one BLAS thread each, queue peer.celery, node names peerI@<host>; worker.py says why threads
# and not solo), each loading the float32 matrix of --matrix (or
# SR_PEER_MATRIX) and/or the ONNX classifier of --model (or SR_PEER_MODEL; needs a venv made by
# install.sh --with-onnxruntime) once, with logs DIR/celery-I.log and their PIDs in DIR/celery.pids. It returns
# once all K answer `celery inspect ping` (bounded: SR_PEER_START_TIMEOUT seconds, default 60),
# and fails (stopping what it started) otherwise. PY defaults to the venv of install.sh.
# stop sends TERM to exactly the recorded PIDs (each checked to carry this DIR in its
# environment, so a recycled PID is left alone), waits up to 10 s, then KILLs any survivor
# (and any leftover child carrying the same marker). SR_PEER_LOGLEVEL sets the workers' log
# level (default WARNING; INFO logs every task).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
note() { printf 'peers/workers: %s\n' "$*" >&2; }
die() { printf 'peers/workers: error: %s\n' "$*" >&2; exit 1; }

alive() {
  local pid=$1 state
  [[ -r /proc/$pid/stat ]] || return 1
  state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}
# ours PID DIR: alive and started by `workers.sh start --dir DIR`.
ours() {
  alive "$1" && { tr "\0" "\n" <"/proc/$1/environ"; } 2>/dev/null | grep -qxF "SR_PEER_OWNER_DIR=$2"
}

stop_dir() {
  local dir=$1 pid i
  [[ -f $dir/celery.pids ]] || { note "no $dir/celery.pids; nothing to stop"; return 0; }
  read -r -a pids <"$dir/celery.pids"
  for pid in "${pids[@]}"; do
    if ours "$pid" "$dir"; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  for ((i = 0; i < 100; i++)); do
    local left=0
    for pid in "${pids[@]}"; do if ours "$pid" "$dir"; then left=1; fi; done
    ((left)) || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if ours "$pid" "$dir"; then note "worker $pid ignored TERM for 10 s; KILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  done
  # Children of our workers (prefork pool processes) carry the same marker; none may outlive them.
  for f in /proc/[0-9]*/environ; do
    pid=${f#/proc/}; pid=${pid%/environ}
    if [[ $pid != "$$" ]] && ours "$pid" "$dir"; then note "leftover worker child $pid; KILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  done
  rm -f "$dir/celery.pids"
  note "stopped ${#pids[@]} Celery workers (${pids[*]})"
}

cmd=${1:-}; shift || true
case $cmd in
  start)
    workers=2 dir="" matrix=${SR_PEER_MATRIX:-} model=${SR_PEER_MODEL:-} py="" pool=threads
    while (($#)); do
      case $1 in
        --workers) workers=$2; shift ;;
        --dir) dir=$2; shift ;;
        --matrix) matrix=$2; shift ;;
        --model) model=$2; shift ;;
        --python) py=$2; shift ;;
        --pool) pool=$2; shift ;;
        *) die "unknown argument '$1'" ;;
      esac
      shift
    done
    [[ -n $dir ]] || die "start needs --dir DIR"
    [[ $pool == threads || $pool == solo || $pool == prefork ]] || die "--pool must be threads, solo or prefork"
    [[ $workers =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive integer"
    [[ -n ${SR_AMQP_URL:-} ]] || die "SR_AMQP_URL is not set (source the pool's pool.env)"
    [[ -n $matrix || -n $model ]] || die "nothing to serve: pass --matrix A.npy (matvec) and/or --model M.onnx (classify)"
    [[ -z $matrix || -f $matrix ]] || die "no such matrix file: $matrix"
    [[ -z $model || -f $model ]] || die "no such ONNX file: $model"
    py=${py:-$root/.venv-peers/bin/python}
    [[ -x $py ]] || die "$py not found: run Benchmarks/peers/celery/install.sh first"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [[ -z $matrix ]] || matrix=$(realpath "$matrix")
    [[ -z $model ]] || model=$(realpath "$model")
    if [[ -f $dir/celery.pids ]]; then
      read -r -a old <"$dir/celery.pids"
      for pid in "${old[@]}"; do ours "$pid" "$dir" && die "$dir already runs Celery workers; stop them first"; done
    fi
    timeout_s=${SR_PEER_START_TIMEOUT:-60}
    pids=()
    trap 'if ((${#pids[@]})); then echo "${pids[*]}" >"$dir/celery.pids"; stop_dir "$dir"; fi' EXIT
    for ((i = 1; i <= workers; i++)); do
      (
        cd "$here"
        export SR_PEER_OWNER_DIR=$dir SR_PEER_MATRIX=$matrix SR_PEER_MODEL=$model OPENBLAS_NUM_THREADS=1 PYTHONPATH=$here
        if [[ $(id -u) -eq 0 ]]; then export C_FORCE_ROOT=1; fi
        exec "$py" -m celery -A worker worker --pool "$pool" --concurrency 1 -Q peer.celery \
          --prefetch-multiplier 1 -n "peer$i@%h" --without-gossip --without-mingle \
          --without-heartbeat --loglevel "${SR_PEER_LOGLEVEL:-WARNING}"
      ) </dev/null >"$dir/celery-$i.log" 2>&1 &
      pids+=($!)
    done
    echo "${pids[*]}" >"$dir/celery.pids"
    # Ready = every worker answers a remote-control ping (it loads A and the model in
    # worker_init, before it starts consuming, so a ping reply means both are in memory).
    t0=$SECONDS
    while :; do
      for pid in "${pids[@]}"; do
        alive "$pid" || { tail -n 20 "$dir"/celery-*.log >&2; die "worker $pid exited during start-up"; }
      done
      replies=$(cd "$here" && SR_PEER_MATRIX=$matrix PYTHONPATH=$here timeout 20 "$py" -m celery -A worker \
        inspect ping --timeout 1 --json 2>/dev/null | tail -n 1) || replies=""
      ready=$(printf '%s' "$replies" | "$py" -c 'import json,sys
try: print(len(json.loads(sys.stdin.read() or "[]")))
except Exception: print(0)')
      ((ready >= workers)) && break
      ((SECONDS - t0 < timeout_s)) || { tail -n 20 "$dir"/celery-*.log >&2; die "only $ready/$workers workers answered a ping within ${timeout_s} s"; }
    done
    trap - EXIT
    note "$workers Celery workers ready in $((SECONDS - t0)) s (pids ${pids[*]}; logs $dir/celery-*.log)"
    ;;
  stop)
    dir=${1:?usage: workers.sh stop DIR}
    [[ -d $dir ]] || die "no such directory: $dir"
    stop_dir "$(cd "$dir" && pwd)"
    ;;
  *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 64 ;;
esac

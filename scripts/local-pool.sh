#!/usr/bin/env bash
# A whole pool on one machine without Docker: a private RabbitMQ, one sraggregate and K
# srconsume processes, all on 127.0.0.1, for developers and integration tests.
#
#   scripts/local-pool.sh start [--consumers K] [--dir DIR] [--debug] [--broker-url URL]
#   scripts/local-pool.sh stop [DIR]        (without DIR: the last pool started here still running)
#
# start builds the executables (release: debug builds are 10–50× slower, too slow for
# millisecond deadlines; --debug for developing), starts a broker (unless --broker-url points
# at one), an operand store DIR/store, the aggregator and K consumers (logs in DIR/logs), and
# writes DIR/pool.env (SR_AMQP_URL, SR_STORE, PATH with the pool's executables first, PIDs)
# whose path it prints last. Then: `source DIR/pool.env; srproduce matvec ... --wait`. stop
# kills exactly the processes it started (by PID) and stops the broker it started; start records
# DIR in .rabbitmq/pools, so that a bare `stop` stops the most recently started pool still there.
# SR_CONSUMER_ARGS (words) are passed to every srconsume, e.g. "--kernel-nice 0".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

die() { printf 'local-pool: error: %s\n' "$*" >&2; exit 1; }
note() { printf 'local-pool: %s\n' "$*" >&2; }

cmd=${1:-}; shift || true
case $cmd in
  start)
    consumers=2 dir="" config=release broker_url=""
    while (($#)); do
      case $1 in
        --consumers) consumers=$2; shift ;;
        --dir) dir=$2; shift ;;
        --release) config=release ;;   # the default; kept for older scripts
        --debug) config=debug ;;
        --broker-url) broker_url=$2; shift ;;
        *) die "unknown argument '$1'" ;;
      esac
      shift
    done
    dir=${dir:-$root/.rabbitmq/pool-$$}
    mkdir -p "$dir/logs" "$dir/store"
    dir=$(cd "$dir" && pwd)
    [[ -e $dir/pool.env ]] && die "$dir already holds a pool; stop it first: scripts/local-pool.sh stop $dir"
    # A fresh machine has neither RabbitMQ nor the C libraries yet (skips what is installed).
    bash scripts/install-system-deps.sh >&2
    swift build -c "$config" --product srconsume >&2
    swift build -c "$config" --product sraggregate >&2
    swift build -c "$config" --product srproduce >&2
    bin=$(swift build -c "$config" --show-bin-path)
    broker_dir=""
    if [[ -z $broker_url ]]; then
      broker_dir=$dir/broker
      env_file=$(SR_RABBITMQ_DIR="$broker_dir" bash scripts/rabbitmq-start.sh | tail -n 1)
      # shellcheck disable=SC1090
      source "$env_file"
      broker_url=$SR_AMQP_URL
    fi
    export SR_AMQP_URL=$broker_url SR_STORE=$dir/store OPENBLAS_NUM_THREADS=1
    "$bin/sraggregate" >"$dir/logs/aggregator.log" 2>&1 &
    pids=($!)
    for ((i = 1; i <= consumers; i++)); do
      # shellcheck disable=SC2086  # SR_CONSUMER_ARGS is a list of words
      "$bin/srconsume" --name "consumer-$i" ${SR_CONSUMER_ARGS:-} >"$dir/logs/consumer-$i.log" 2>&1 &
      pids+=($!)
    done
    {
      printf 'export SR_AMQP_URL=%q\n' "$broker_url"
      printf 'export SR_STORE=%q\n' "$dir/store"
      # One BLAS thread: parallelism comes from consumer processes, and OpenBLAS's idle
      # threads spin (sched_yield) in every process that loads it, srproduce included.
      printf 'export OPENBLAS_NUM_THREADS=1\n'
      printf 'export SR_POOL_DIR=%q\n' "$dir"
      printf 'export SR_POOL_BIN=%q\n' "$bin"
      printf 'export PATH=%q:"$PATH"\n' "$bin"
      printf 'export SR_POOL_PIDS=%q\n' "${pids[*]}"
      printf 'export SR_POOL_AGGREGATOR_PID=%q\n' "${pids[0]}"
      printf 'export SR_POOL_BROKER_DIR=%q\n' "$broker_dir"
    } >"$dir/pool.env"
    mkdir -p "$root/.rabbitmq"
    echo "$dir" >>"$root/.rabbitmq/pools"
    note "aggregator pid ${pids[0]}, consumers ${pids[*]:1}; logs in $dir/logs"
    note "use it: source $dir/pool.env   (srproduce, srconsume, sraggregate on PATH)"
    note "stop it: scripts/local-pool.sh stop $dir"
    echo "$dir/pool.env"
    ;;
  stop)
    dir=${1:-}
    if [[ -z $dir ]]; then
      # The most recent pool whose env file is still there (others were stopped by DIR).
      if [[ -f $root/.rabbitmq/pools ]]; then
        while read -r candidate; do
          [[ -f $candidate/pool.env ]] && dir=$candidate
        done <"$root/.rabbitmq/pools"
      fi
      [[ -n $dir ]] || die "no running pool started from this checkout; give its DIR (start prints it; \$SR_POOL_DIR in its env file): scripts/local-pool.sh stop DIR"
      note "stopping the last pool started here: $dir"
    fi
    [[ -f $dir/pool.env ]] || die "$dir/pool.env not found; nothing to stop (already stopped?)"
    # shellcheck disable=SC1091
    source "$dir/pool.env"
    for pid in $SR_POOL_PIDS; do
      # Only our own processes: check the executable path before signalling a PID.
      if [[ -d /proc/$pid ]] && [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$SR_POOL_BIN"/* ]]; then
        kill -TERM "$pid" 2>/dev/null || true
      fi
    done
    for pid in $SR_POOL_PIDS; do
      for _ in $(seq 50); do [[ -d /proc/$pid ]] && [[ $(cat /proc/$pid/stat 2>/dev/null | awk '{print $3}') != Z ]] || break; sleep 0.1; done
    done
    if [[ -n ${SR_POOL_BROKER_DIR:-} && -d $SR_POOL_BROKER_DIR ]]; then
      bash scripts/rabbitmq-stop.sh "$SR_POOL_BROKER_DIR" >&2
    fi
    rm -f "$dir/pool.env"
    if [[ -f $root/.rabbitmq/pools ]]; then
      grep -vxF "$dir" "$root/.rabbitmq/pools" >"$root/.rabbitmq/pools.tmp" || true
      mv "$root/.rabbitmq/pools.tmp" "$root/.rabbitmq/pools"
    fi
    note "stopped the pool in $dir"
    ;;
  *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 64 ;;
esac

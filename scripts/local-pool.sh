#!/usr/bin/env bash
# A whole pool on one machine without Docker: a private RabbitMQ, one sraggregate and K
# srconsume processes, all on 127.0.0.1, for developers and integration tests.
#
#   scripts/local-pool.sh start [--consumers K] [--dir DIR] [--debug] [--broker-url URL]
#                               [--metrics-port BASE] [--bin-dir DIR]
#   scripts/local-pool.sh stop [DIR]        (without DIR: the last pool started here still running)
#
# start builds the executables (release: debug builds are 10–50× slower, too slow for
# millisecond deadlines; --debug for developing), starts a broker (unless --broker-url points
# at one), an operand store DIR/store, the aggregator and K consumers (logs in DIR/logs), and
# writes DIR/pool.env (SR_AMQP_URL, SR_STORE, PATH with the pool's executables first, PIDs)
# whose path it prints last. Then: `source DIR/pool.env; srproduce matvec ... --wait`. stop
# kills exactly the processes it started (by PID) and stops the broker it started; start records
# DIR in .rabbitmq/pools, so that a bare `stop` stops the most recently started pool still there.
# --bin-dir DIR runs the executables already built in DIR (e.g. `swift build --show-bin-path`)
# instead of building them. SR_CONSUMER_ARGS (words) are passed to every srconsume, e.g. "--kernel-nice 0".
# --metrics-port BASE (default: $SR_METRICS_PORT, else off) serves Prometheus metrics on
# 127.0.0.1: the aggregator on BASE, consumer i on BASE+i (one port each: a port two roles
# share makes the second fail to start). start returns only once every role is up (the
# aggregator aggregating, each consumer consuming, each metrics endpoint listening); a role
# that exits first fails start with its log, and start stops what it had started.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

die() { printf 'local-pool: error: %s\n' "$*" >&2; exit 1; }
note() { printf 'local-pool: %s\n' "$*" >&2; }

cmd=${1:-}; shift || true
case $cmd in
  start)
    consumers=2 dir="" config=release broker_url="" metrics_base=${SR_METRICS_PORT:-} bin=""
    while (($#)); do
      case $1 in
        --consumers) consumers=$2; shift ;;
        --dir) dir=$2; shift ;;
        --release) config=release ;;   # the default; kept for older scripts
        --debug) config=debug ;;
        --broker-url) broker_url=$2; shift ;;
        --metrics-port) metrics_base=$2; shift ;;
        --bin-dir) bin=$2; shift ;;
        *) die "unknown argument '$1'" ;;
      esac
      shift
    done
    [[ $consumers =~ ^[1-9][0-9]*$ ]] || die "--consumers takes a positive whole number, not '$consumers'"
    [[ $metrics_base == 0 ]] && metrics_base=""
    if [[ -n $metrics_base ]]; then
      if ! [[ $metrics_base =~ ^[1-9][0-9]*$ ]] || ((metrics_base + consumers > 65535)); then
        die "--metrics-port takes a port from 1 to $((65535 - consumers)) (the aggregator's; consumer i gets BASE+i), not '$metrics_base'"
      fi
    fi
    if [[ -n $metrics_base ]]; then
      # Fail now, not after starting a broker, when a metrics port is taken.
      for ((i = 0; i <= consumers; i++)); do
        port=$((metrics_base + i))
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
          die "port $port (127.0.0.1) is in use; --metrics-port BASE needs BASE…BASE+$consumers free: choose another BASE"
        fi
      done
    fi
    dir=${dir:-$root/.rabbitmq/pool-$$}
    mkdir -p "$dir/logs" "$dir/store"
    dir=$(cd "$dir" && pwd)
    [[ -e $dir/pool.env ]] && die "$dir already holds a pool; stop it first: scripts/local-pool.sh stop $dir"
    # A fresh machine has neither RabbitMQ nor the C libraries yet (skips what is installed).
    bash scripts/install-system-deps.sh >&2
    if [[ -z $bin ]]; then
      swift build -c "$config" --product srconsume >&2
      swift build -c "$config" --product sraggregate >&2
      swift build -c "$config" --product srproduce >&2
      bin=$(swift build -c "$config" --show-bin-path)
    fi
    # The physical path: stop matches /proc/PID/exe (symlinks resolved) against it.
    bin=$(cd "$bin" 2>/dev/null && pwd -P) || die "--bin-dir: no such folder"
    for exe in srconsume sraggregate srproduce; do
      [[ -x $bin/$exe ]] || die "$bin has no $exe; build it (swift build --product $exe) or leave out --bin-dir"
    done
    broker_dir=""
    if [[ -z $broker_url ]]; then
      broker_dir=$dir/broker
      env_file=$(SR_RABBITMQ_DIR="$broker_dir" bash scripts/rabbitmq-start.sh | tail -n 1)
      # shellcheck disable=SC1090
      source "$env_file"
      broker_url=$SR_AMQP_URL
    fi
    export SR_AMQP_URL=$broker_url SR_STORE=$dir/store OPENBLAS_NUM_THREADS=1
    # Each role gets its own metrics port on the command line; an inherited SR_METRICS_PORT
    # would give them all the same one.
    unset SR_METRICS_PORT
    metrics_args() { [[ -n $metrics_base ]] && printf -- '--metrics-port %s' $((metrics_base + $1)); true; }
    # shellcheck disable=SC2046  # metrics_args prints words
    "$bin/sraggregate" $(metrics_args 0) >"$dir/logs/aggregator.log" 2>&1 &
    pids=($!) logs=("$dir/logs/aggregator.log") ready=("aggregating")
    for ((i = 1; i <= consumers; i++)); do
      # shellcheck disable=SC2086,SC2046  # SR_CONSUMER_ARGS is a list of words
      "$bin/srconsume" --name "consumer-$i" $(metrics_args "$i") ${SR_CONSUMER_ARGS:-} >"$dir/logs/consumer-$i.log" 2>&1 &
      pids+=($!) logs+=("$dir/logs/consumer-$i.log") ready+=("consuming")
    done
    # Wait until every role says it is up (bounded): a role that dies at start (a port in
    # use, a bad argument, a broker it cannot reach) must fail start, not leave a pool that
    # looks started. With metrics on, "serving metrics" comes before the ready line.
    abandon() {
      for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
      wait "${pids[@]}" 2>/dev/null || true
      if [[ -n $broker_dir ]]; then bash scripts/rabbitmq-stop.sh "$broker_dir" >&2 || true; fi
      die "$1"
    }
    deadline=$((SECONDS + ${SR_POOL_START_TIMEOUT:-120}))
    for i in "${!pids[@]}"; do
      until grep -q "${ready[$i]}" "${logs[$i]}" 2>/dev/null; do
        if ! kill -0 "${pids[$i]}" 2>/dev/null; then
          tail -n 20 "${logs[$i]}" >&2
          abandon "$(basename "${logs[$i]}" .log) (pid ${pids[$i]}) exited while starting; its log is above and in ${logs[$i]}; the pool was stopped"
        fi
        ((SECONDS < deadline)) || abandon "$(basename "${logs[$i]}" .log) did not report '${ready[$i]}' within ${SR_POOL_START_TIMEOUT:-120} s (SR_POOL_START_TIMEOUT); see ${logs[$i]}; the pool was stopped"
        sleep 0.1
      done
    done
    metrics_urls=""
    if [[ -n $metrics_base ]]; then
      for ((i = 0; i <= consumers; i++)); do metrics_urls+="http://127.0.0.1:$((metrics_base + i))/metrics "; done
    fi
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
      printf 'export SR_POOL_METRICS=%q\n' "${metrics_urls% }"
    } >"$dir/pool.env"
    mkdir -p "$root/.rabbitmq"
    echo "$dir" >>"$root/.rabbitmq/pools"
    note "aggregator pid ${pids[0]}, consumers ${pids[*]:1}; logs in $dir/logs"
    note "use it: source $dir/pool.env   (srproduce, srconsume, sraggregate on PATH)"
    if [[ -n $metrics_urls ]]; then
      note "metrics: aggregator http://127.0.0.1:$metrics_base/metrics, consumer i on port $metrics_base+i"
      note "watch it: srproduce top$(for u in $metrics_urls; do printf ' --metrics %s' "$u"; done)"
    fi
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
    # /proc/PID/exe has every symlink resolved: compare against the physical folder.
    pool_bin=$(readlink -f "$SR_POOL_BIN")
    for pid in $SR_POOL_PIDS; do
      # Only our own processes: check the executable path before signalling a PID.
      if [[ -d /proc/$pid ]] && [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$pool_bin"/* ]]; then
        kill -TERM "$pid" 2>/dev/null || true
      fi
    done
    for pid in $SR_POOL_PIDS; do
      # Alive and not ours (its executable elsewhere): the PID was reused; leave it alone.
      if [[ -d /proc/$pid ]] && [[ $(readlink "/proc/$pid/exe" 2>/dev/null) != "$pool_bin"/* ]] &&
         [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then
        note "pid $pid runs $(readlink "/proc/$pid/exe" 2>/dev/null || echo '?'), not an executable of $SR_POOL_BIN: not signalled"
      fi
    done
    for pid in $SR_POOL_PIDS; do
      for _ in $(seq 50); do [[ -d /proc/$pid ]] && [[ $(cat /proc/$pid/stat 2>/dev/null | awk '{print $3}') != Z ]] || break; sleep 0.1; done
    done
    left=()
    for pid in $SR_POOL_PIDS; do
      if [[ -d /proc/$pid ]] && [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$pool_bin"/* ]] &&
         [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then left+=("$pid"); fi
    done
    ((${#left[@]} == 0)) || die "pid(s) ${left[*]} of the pool did not stop within 5 s of SIGTERM; see $dir/logs (kill -KILL ${left[*]}, then stop again)"
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
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 64 ;;
esac

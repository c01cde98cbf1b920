#!/usr/bin/env bash
# Stops a private RabbitMQ node started by scripts/rabbitmq-start.sh, and only that node.
#
#   scripts/rabbitmq-stop.sh [--keep] DIR
#
# 1. `rabbitmqctl stop PIDFILE` (clean shutdown; returns when the VM has exited). If the node is
#    still running after ~20 s, its recorded PID — and no other process — gets TERM, then KILL.
# 2. The private epmd the start script launched (recorded PID, private port) is stopped, unless
#    another node registered with it meanwhile. An epmd the start script did not launch (e.g. a
#    shared one on 4369) is never touched: no `epmd -kill`.
# 3. DIR is removed, unless --keep (logs and data stay for inspection).
# Every PID is checked to still carry SR_RABBITMQ_OWNER_DIR=DIR in its environment before it is
# signalled, so a PID reused by the kernel for an unrelated process is left alone.
# Exit status: 0 when nothing of the node remains; 1 otherwise (the directory is then kept).
set -euo pipefail

die() { printf 'rabbitmq-stop: error: %s\n' "$*" >&2; exit 1; }
note() { printf 'rabbitmq-stop: %s\n' "$*" >&2; }

keep=0 dir=""
while (($#)); do
  case $1 in
    --keep) keep=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option '$1' (usage: rabbitmq-stop.sh [--keep] DIR)" ;;
    *) [[ -z $dir ]] || die "only one DIR, please"; dir=$1 ;;
  esac
  shift
done
[[ -n $dir ]] || die "usage: rabbitmq-stop.sh [--keep] DIR"
dir=$(realpath -m -- "$dir")
[[ -d $dir ]] || die "no such directory: $dir"
# Never remove (or act on) a directory this tooling did not create.
if [[ -f $dir/env ]]; then
  # shellcheck source=/dev/null
  . "$dir/env"
elif [[ -f $dir/node.state ]]; then
  # shellcheck source=/dev/null
  . "$dir/node.state"
else
  die "$dir was not created by scripts/rabbitmq-start.sh (no env or node.state file); not touching it"
fi
bin=${SR_RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
alive() {
  local pid=${1:-} state
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]] || return 1
  state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}
ours() {
  local pid=${1:-}
  alive "$pid" && tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "SR_RABBITMQ_OWNER_DIR=$dir"
}
# wait_gone PID SECONDS: true once PID is no longer our live process.
wait_gone() {
  local pid=$1 i
  for ((i = 0; i < $2 * 5; i++)); do
    ours "$pid" || return 0
    sleep 0.2
  done
  ! ours "$pid"
}
# kill_recorded PID WHAT: TERM, then KILL after 10 s — only if PID is still one of ours.
kill_recorded() {
  local pid=$1 what=$2
  ours "$pid" || return 0
  note "sending TERM to $what (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  wait_gone "$pid" 10 && return 0
  note "$what (pid $pid) ignored TERM for 10 s; sending KILL"
  kill -KILL "$pid" 2>/dev/null || true
  wait_gone "$pid" 5
}

t0=$(now)
node=${SR_RABBITMQ_NODENAME:-unknown}
epmd_port=${SR_RABBITMQ_EPMD_PORT:-}
beam_pid=${SR_RABBITMQ_PID:-}
if [[ -z $beam_pid && -s ${SR_RABBITMQ_PID_FILE:-/nonexistent} ]]; then
  beam_pid=$(tr -dc 0-9 <"$SR_RABBITMQ_PID_FILE")
fi

# ---------------------------------------------------------------- the node
if ours "$beam_pid"; then
  # RabbitMQ's CLI starts an epmd when it finds none on ERL_EPMD_PORT; if ours is gone, calling it
  # would leave a stray epmd behind, so go straight to the signal in that case.
  if [[ -n $epmd_port ]] && epmd -port "$epmd_port" -names >/dev/null 2>&1; then
    note "stopping $node (pid $beam_pid) with rabbitmqctl stop"
    if ! out=$(timeout --kill-after=5 20 env HOME="$SR_RABBITMQ_HOME" "$bin/rabbitmqctl" -q stop "$SR_RABBITMQ_PID_FILE" 2>&1); then
      note "rabbitmqctl stop failed or timed out: ${out:-no output}"
    fi
  else
    note "the node's epmd (port ${epmd_port:-?}) is gone; not using rabbitmqctl"
  fi
  # `rabbitmqctl stop PIDFILE` returns once the VM is gone; allow a little extra for the exit.
  if ! wait_gone "$beam_pid" 5; then
    note "$node did not stop within ~20 s"
    kill_recorded "$beam_pid" "the Erlang VM of $node"
  fi
  note "node stopped in $(since "$t0") s"
else
  note "node $node is not running (pid ${beam_pid:-unknown})"
fi

# The sh wrapper of rabbitmq-server exits with its VM; give it a moment, then make sure.
if ours "${SR_RABBITMQ_WRAPPER_PID:-}"; then
  wait_gone "$SR_RABBITMQ_WRAPPER_PID" 5 || kill_recorded "$SR_RABBITMQ_WRAPPER_PID" "the rabbitmq-server wrapper"
fi

# ---------------------------------------------------------------- epmd
epmd_pid=${SR_RABBITMQ_EPMD_PID:-}
if [[ -z $epmd_pid ]]; then
  if [[ -n $epmd_port ]] && epmd -port "$epmd_port" -names >/dev/null 2>&1; then
    note "the epmd on port $epmd_port was not started by rabbitmq-start.sh; left alone"
  fi
elif ours "$epmd_pid"; then
  # Only stop it if no other node is registered (someone may have pointed another node at it).
  others=$(epmd -port "$epmd_port" -names 2>/dev/null | awk '$1 == "name" { print $2 }' || true)
  if [[ -n $others ]]; then
    note "private epmd (pid $epmd_pid, port $epmd_port) still serves: $(echo "$others" | tr '\n' ' ')— left running"
  else
    kill_recorded "$epmd_pid" "private epmd on port $epmd_port"
  fi
fi

# ---------------------------------------------------------------- nothing of ours may remain
# Every process started for this node carries the marker in its environment (children inherit it),
# so /proc tells us what is left. We only report leftovers here; we never kill unrecorded PIDs.
leftovers=()
for f in /proc/[0-9]*/environ; do
  pid=${f#/proc/}
  pid=${pid%/environ}
  [[ $pid != "$$" ]] || continue
  if grep -qxzF "SR_RABBITMQ_OWNER_DIR=$dir" "$f" 2>/dev/null && alive "$pid"; then
    leftovers+=("$pid:$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-80)")
  fi
done
if ((${#leftovers[@]})); then
  note "processes of this node are still running, keeping $dir:"
  printf '  %s\n' "${leftovers[@]}" >&2
  exit 1
fi

if ((keep)); then
  note "stopped $node in $(since "$t0") s; kept $dir"
else
  rm -rf -- "$dir"
  note "stopped $node in $(since "$t0") s; removed $dir"
fi

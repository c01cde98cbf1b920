#!/usr/bin/env bash
# Runs rabbitmqctl against a private node started by scripts/rabbitmq-start.sh.
#
#   scripts/rabbitmqctl.sh DIR ARGS...        e.g. scripts/rabbitmqctl.sh .rabbitmq/sr-20576 list_queues name messages
#   SR_RABBITMQ_TOOL=rabbitmq-diagnostics scripts/rabbitmqctl.sh DIR status
#
# It sources DIR/env (node name, private epmd port, config paths) and sets HOME to the node's
# private home, where its Erlang cookie lives. SR_RABBITMQ_TOOL picks another CLI tool from the same
# directory: rabbitmq-diagnostics, rabbitmq-plugins, rabbitmq-queues, rabbitmq-upgrade.
set -euo pipefail

die() { printf 'rabbitmqctl.sh: error: %s\n' "$*" >&2; exit 1; }

if (($# < 1)) || [[ $1 == -h || $1 == --help ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi
dir=$(realpath -m -- "$1")
shift
[[ -d $dir ]] || die "no such directory: $dir"

if [[ -f $dir/env ]]; then
  # shellcheck source=/dev/null
  . "$dir/env"
elif [[ -f $dir/node.state ]]; then
  # A start that failed half-way leaves only node.state; still useful for a post-mortem.
  # shellcheck source=/dev/null
  . "$dir/node.state"
else
  die "$dir was not created by scripts/rabbitmq-start.sh (no env file in it)"
fi

tool=${SR_RABBITMQ_TOOL:-rabbitmqctl}
[[ $tool =~ ^(rabbitmqctl|rabbitmq-diagnostics|rabbitmq-plugins|rabbitmq-queues|rabbitmq-upgrade|rabbitmq-streams)$ ]] ||
  die "SR_RABBITMQ_TOOL must be one of rabbitmqctl, rabbitmq-diagnostics, rabbitmq-plugins, rabbitmq-queues, rabbitmq-upgrade, rabbitmq-streams"
bin=${SR_RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}
[[ -x $bin/$tool ]] || die "$bin/$tool not found (apt-get install -y rabbitmq-server)"

# Refuse when the node's Erlang VM is gone: the CLI would then start a fresh epmd daemon on the
# node's private epmd port (RabbitMQ's CLI ensures an epmd runs), which nothing would ever stop.
pid=${SR_RABBITMQ_PID:-}
if [[ -z $pid && -s ${SR_RABBITMQ_PID_FILE:-/nonexistent} ]]; then pid=$(tr -dc 0-9 <"$SR_RABBITMQ_PID_FILE"); fi
if [[ -z $pid || ! -d /proc/$pid ]] ||
  ! tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "SR_RABBITMQ_OWNER_DIR=$dir"; then
  die "the node of $dir (${SR_RABBITMQ_NODENAME:-?}, pid ${pid:-unknown}) is not running; start a new one with scripts/rabbitmq-start.sh"
fi

exec env HOME="$SR_RABBITMQ_HOME" "$bin/$tool" "$@"

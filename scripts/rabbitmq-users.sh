#!/usr/bin/env bash
# Creates one RabbitMQ user per role with only the permissions that role needs (docs/TRUST.md),
# plus a monitoring account for the management UI. Idempotent: existing users get their
# password and permissions reset to what this script says.
#
#   scripts/rabbitmq-users.sh --dir DIR [--vhost V] [--out FILE]     a node from scripts/rabbitmq-start.sh
#   scripts/rabbitmq-users.sh --ctl rabbitmqctl [--vhost V] [--out FILE]   any node rabbitmqctl reaches
#   scripts/rabbitmq-users.sh --definitions FILE [--vhost V]          a definitions file a broker loads
#                                                                     at boot (compose/setup.sh)
#
# --definitions needs every password in the environment (no generated ones: the roles must know
# them), each at least 16 URL-safe characters and not a placeholder such as change-me; it also
# adds sr-admin (tag administrator, for the management UI) from SR_ADMIN_PASSWORD.
# Users: sr-producer, sr-consumer, sr-aggregator, sr-monitor (tag monitoring, no queue access).
# Passwords come from SR_PRODUCER_PASSWORD, SR_CONSUMER_PASSWORD, SR_AGGREGATOR_PASSWORD and
# SR_MONITOR_PASSWORD, or are generated (24 hex characters). --out writes shell exports
# SR_AMQP_URL_PRODUCER / _CONSUMER / _AGGREGATOR (and SR_AMQPS_URL_* when DIR's node has TLS),
# SR_MONITOR_USER / SR_MONITOR_PASSWORD; default with --dir: DIR/users.env (mode 600).
#
# Permissions (configure / write / read regexes on the vhost). Every message kind has its own
# exchange and nobody may write the default exchange, so:
#   producer    declares its deadline timers (sr.delay.*) and its output watch queues (amq.gen-*);
#               writes open records (sr.jobs), tasks (sr.task), timers (sr.delay), early deadlines
#               (sr.deadline); reads outputs (sr.outputs) — it can read no task and write no
#               partial or output.
#   consumer    declares only its own done-notice queue (amq.gen-*, bound to sr.done); reads
#               sr.tasks; writes partials (sr.partial) and dead letters (sr.dlx) — it cannot
#               write open records, deadlines, outputs or done notices.
#   aggregator  declares the topology; reads sr.jobs, sr.partials, sr.deadlines, sr.finals; writes outputs
#               (sr.outputs), done notices (sr.done), inference tasks (sr.task) and dead letters (sr.dlx), and binds the
#               queues it declares (write on each of them).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { printf 'rabbitmq-users: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

dir="" ctl="" vhost="" out="" definitions=""
while (($#)); do
  case $1 in
    --dir) dir=${2:?--dir needs a directory}; shift 2 ;;
    --ctl) ctl=${2:?--ctl needs a command}; shift 2 ;;
    --vhost) vhost=${2:?--vhost needs a name}; shift 2 ;;
    --out) out=${2:?--out needs a file}; shift 2 ;;
    --definitions) definitions=${2:?--definitions needs a file}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ -n $dir || -n $ctl || -n $definitions ]] || die "give --dir DIR (a node from scripts/rabbitmq-start.sh), --ctl COMMAND or --definitions FILE"

if [[ -n $definitions ]]; then
  vhost=${vhost:-/}
  for v in SR_PRODUCER_PASSWORD SR_CONSUMER_PASSWORD SR_AGGREGATOR_PASSWORD SR_MONITOR_PASSWORD SR_ADMIN_PASSWORD; do
    value=${!v:-}
    [[ -n $value ]] || die "$v is not set (in compose/.env): every role needs its own password"
    [[ $value =~ ^[A-Za-z0-9._~-]{16,}$ ]] || die "$v must be at least 16 URL-safe characters (letters, digits, - . _ ~), e.g. from: openssl rand -hex 16"
    [[ ${value,,} != *change-me* && ${value,,} != *changeme* && ${value,,} != *password* ]] || die "$v is a placeholder; set a real password (openssl rand -hex 16)"
  done
elif [[ -n $dir ]]; then
  [[ -f $dir/env ]] || die "$dir has no env file: start the node with scripts/rabbitmq-start.sh --dir $dir"
  # shellcheck source=/dev/null
  . "$dir/env"
  run() { bash scripts/rabbitmqctl.sh "$dir" -q "$@"; }
  vhost=${vhost:-${SR_AMQP_VHOST:-/}}
  out=${out:-$dir/users.env}
else
  # shellcheck disable=SC2206
  ctl_cmd=($ctl)
  run() { "${ctl_cmd[@]}" -q "$@"; }
  vhost=${vhost:-/}
fi

password() {
  local given=$1
  if [[ -n $given ]]; then printf '%s' "$given"; else od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; fi
}

# name | password | tags | configure | write | read
declare -A pass
pass[producer]=$(password "${SR_PRODUCER_PASSWORD:-}")
pass[consumer]=$(password "${SR_CONSUMER_PASSWORD:-}")
pass[aggregator]=$(password "${SR_AGGREGATOR_PASSWORD:-}")
pass[monitor]=$(password "${SR_MONITOR_PASSWORD:-}")

topology='sr\.(jobs|tasks|partials|deadlines|dead|finals|outputs|dlx|task|partial|deadline|delay|done)'
declare -A configure write read
configure[producer]='^(sr\.delay\..+|amq\.gen-.+)$'
write[producer]='^(sr\.jobs|sr\.task|sr\.delay|sr\.deadline|sr\.delay\..+|amq\.gen-.+)$'
read[producer]='^(sr\.outputs|sr\.delay|sr\.delay\..+|amq\.gen-.+)$'
configure[consumer]='^amq\.gen-.+$'
write[consumer]='^(sr\.(partial|dlx)|amq\.gen-.+)$'
read[consumer]='^(sr\.(tasks|done)|amq\.gen-.+)$'
configure[aggregator]="^$topology\$"
# Queues it binds (write on the queue) and the exchanges it publishes to.
write[aggregator]='^sr\.(jobs|tasks|partials|deadlines|dead|finals|outputs|dlx|task|done)$'
# Queues it consumes and the exchanges it binds them to.
read[aggregator]='^sr\.(jobs|partials|deadlines|finals|task|partial|deadline|dlx|outputs)$'
configure[monitor]='^$'
write[monitor]='^$'
read[monitor]='^$'

if [[ -n $definitions ]]; then
  # RabbitMQ's rabbit_password_hashing_sha256: base64(salt ‖ SHA-256(salt ‖ password)), 4-byte salt.
  umask 077
  SR_VHOST=$vhost python3 - "$definitions" \
    "${configure[producer]}" "${write[producer]}" "${read[producer]}" \
    "${configure[consumer]}" "${write[consumer]}" "${read[consumer]}" \
    "${configure[aggregator]}" "${write[aggregator]}" "${read[aggregator]}" <<'PY'
import base64, hashlib, json, os, sys
out, *perms = sys.argv[1:]
vhost = os.environ["SR_VHOST"]
def hashed(password):
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()
users, permissions = [], []
for i, role in enumerate(["producer", "consumer", "aggregator"]):
    users.append({"name": f"sr-{role}", "password_hash": hashed(os.environ[f"SR_{role.upper()}_PASSWORD"]),
                  "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []})
    c, w, r = perms[3 * i:3 * i + 3]
    permissions.append({"user": f"sr-{role}", "vhost": vhost, "configure": c, "write": w, "read": r})
users.append({"name": "sr-monitor", "password_hash": hashed(os.environ["SR_MONITOR_PASSWORD"]),
              "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["monitoring"]})
users.append({"name": "sr-admin", "password_hash": hashed(os.environ["SR_ADMIN_PASSWORD"]),
              "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"]})
permissions.append({"user": "sr-admin", "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"})
json.dump({"users": users, "vhosts": [{"name": vhost}], "permissions": permissions}, open(out, "w"), indent=2)
PY
  echo "rabbitmq-users: wrote $definitions (users sr-producer, sr-consumer, sr-aggregator, sr-monitor, sr-admin on vhost $vhost)" >&2
  exit 0
fi

for role in producer consumer aggregator monitor; do
  user=sr-$role
  if run list_users | awk '{print $1}' | grep -qx -- "$user"; then
    run change_password "$user" "${pass[$role]}" >/dev/null
  else
    run add_user "$user" "${pass[$role]}" >/dev/null
  fi
  if [[ $role == monitor ]]; then run set_user_tags "$user" monitoring >/dev/null; else run set_user_tags "$user" >/dev/null; fi
  run set_permissions -p "$vhost" "$user" "${configure[$role]}" "${write[$role]}" "${read[$role]}" >/dev/null
  echo "rabbitmq-users: $user on vhost $vhost: configure ${configure[$role]}  write ${write[$role]}  read ${read[$role]}" >&2
done

if [[ -n $out ]]; then
  vpath=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$vhost")
  umask 077
  {
    echo "# Per-role RabbitMQ users created by scripts/rabbitmq-users.sh on $(date -u +%FT%TZ)."
    for role in producer consumer aggregator; do
      upper=${role^^}
      if [[ -n ${SR_RABBITMQ_PORT:-} ]]; then
        printf "export SR_AMQP_URL_%s='amqp://sr-%s:%s@127.0.0.1:%s/%s'\n" "$upper" "$role" "${pass[$role]}" "$SR_RABBITMQ_PORT" "$vpath"
      fi
      if [[ -n ${SR_RABBITMQ_TLS_PORT:-} ]]; then
        printf "export SR_AMQPS_URL_%s='amqps://sr-%s:%s@127.0.0.1:%s/%s'\n" "$upper" "$role" "${pass[$role]}" "$SR_RABBITMQ_TLS_PORT" "$vpath"
      fi
      printf "export SR_%s_PASSWORD='%s'\n" "$upper" "${pass[$role]}"
    done
    printf "export SR_MONITOR_USER='sr-monitor'\nexport SR_MONITOR_PASSWORD='%s'\n" "${pass[monitor]}"
  } > "$out"
  echo "rabbitmq-users: wrote $out" >&2
fi

#!/usr/bin/env bash
# Starts a private, loopback-only RabbitMQ node for tests and local runs — no systemd, no root
# service, nothing shared with other nodes on the machine.
#
#   scripts/rabbitmq-start.sh [--tls] [--tls-require-client-cert] [--management]
#                             [--user U:P] [--vhost V] [--no-guest] [--name NAME] [--dir DIR]
#
# Everything lives in one directory (default $PWD/.rabbitmq/<name>, <name> = sr-<port>; or
# SR_RABBITMQ_DIR / --dir): config, Mnesia data, logs, Erlang cookie, certificates. The node listens
# on 127.0.0.1 only, on a free port picked at random in 20000-31999 (or SR_RABBITMQ_PORT), is named
# sr-<port>@localhost and registers with its own epmd on a private port (SR_RABBITMQ_EPMD_PORT to
# choose it), so it can neither collide with nor be reached through a shared epmd on 4369.
#
# On success it writes <dir>/env (shell exports: SR_AMQP_URL, SR_RABBITMQ_*, the RABBITMQ_* and
# ERL_EPMD_* variables the CLI tools need, and SR_AMQPS_URL + certificate paths with --tls,
# SR_RABBITMQ_MGMT_PORT with --management) and prints that file's path as the LAST line of stdout
# (progress goes to stderr), so `env=$(scripts/rabbitmq-start.sh | tail -n1); . "$env"` works.
# Stop with scripts/rabbitmq-stop.sh DIR; talk to it with scripts/rabbitmqctl.sh DIR ARGS...
#
# Environment: SR_RABBITMQ_DIR, SR_RABBITMQ_PORT, SR_RABBITMQ_TLS_PORT, SR_RABBITMQ_MGMT_PORT,
# SR_RABBITMQ_EPMD_PORT, SR_RABBITMQ_START_TIMEOUT (seconds, default 60), SR_RABBITMQ_BIN
# (default /usr/lib/rabbitmq/bin), SR_RABBITMQ_TLS_CACERT/_CERT/_KEY (use these files instead of
# generating a throwaway CA; all three or none).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

die() { printf 'rabbitmq-start: error: %s\n' "$*" >&2; exit 1; }
note() { printf 'rabbitmq-start: %s\n' "$*" >&2; }

# Debian's /usr/sbin/rabbitmq* are wrappers that switch to the rabbitmq user (and refuse to run a
# node as root); the real scripts are here.
SR_RABBITMQ_BIN=${SR_RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}
start_timeout=${SR_RABBITMQ_START_TIMEOUT:-60}
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# ---------------------------------------------------------------- arguments
tls=0 require_client_cert=0 mgmt=0 no_guest=0 user_arg="" vhost="" name="" dir=${SR_RABBITMQ_DIR:-}
while (($#)); do
  case $1 in
    --tls) tls=1 ;;
    --tls-require-client-cert) tls=1 require_client_cert=1 ;;
    --management) mgmt=1 ;;
    --no-guest) no_guest=1 ;;
    --user) (($# >= 2)) || die "--user needs U:P"; user_arg=$2; shift ;;
    --user=*) user_arg=${1#*=} ;;
    --vhost) (($# >= 2)) || die "--vhost needs a name"; vhost=$2; shift ;;
    --vhost=*) vhost=${1#*=} ;;
    --name) (($# >= 2)) || die "--name needs a value"; name=$2; shift ;;
    --name=*) name=${1#*=} ;;
    --dir) (($# >= 2)) || die "--dir needs a path"; dir=$2; shift ;;
    --dir=*) dir=${1#*=} ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

user="" password=""
if [[ -n $user_arg ]]; then
  [[ $user_arg == *:* ]] || die "--user expects USER:PASSWORD, got '$user_arg'"
  user=${user_arg%%:*} password=${user_arg#*:}
  [[ -n $user && -n $password ]] || die "--user expects a non-empty USER and PASSWORD"
  [[ $user != guest ]] || die "--user guest: pick another name (guest already exists, loopback-only)"
fi
if ((no_guest)) && [[ -z $user ]]; then
  die "--no-guest needs --user U:P (otherwise nobody could log in)"
fi
[[ -z $name || $name =~ ^[A-Za-z0-9._-]+$ ]] || die "--name may only contain letters, digits, '.', '_', '-'"
[[ $start_timeout =~ ^[0-9]+$ ]] || die "SR_RABBITMQ_START_TIMEOUT must be a number of seconds"

# ---------------------------------------------------------------- prerequisites
[[ -x $SR_RABBITMQ_BIN/rabbitmq-server && -x $SR_RABBITMQ_BIN/rabbitmqctl ]] ||
  die "no RabbitMQ in $SR_RABBITMQ_BIN; install it: apt-get install -y rabbitmq-server (or set SR_RABBITMQ_BIN)"
for tool in epmd setsid timeout od awk; do
  command -v "$tool" >/dev/null || die "'$tool' not found in PATH (epmd comes with erlang-base, setsid with util-linux)"
done
if ((tls)); then command -v openssl >/dev/null || die "--tls needs openssl: apt-get install -y openssl"; fi

# ---------------------------------------------------------------- helpers
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# True if nothing is bound to 127.0.0.1:PORT (nor to the wildcard address, which would also block
# us). Binding is the only reliable test; ss or a connect attempt are the fallbacks.
port_free() {
  local p=$1
  if command -v python3 >/dev/null; then
    python3 -c 'import socket, sys; s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.close()' "$p" 2>/dev/null
  elif command -v ss >/dev/null; then
    [[ -z $(ss -Htan "( sport = :$p )") ]]
  else
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then return 1; fi
  fi
}

# pick_port VAR [FIXED]: sets VAR to FIXED if given (after checking it is free) or to a random free
# port in 20000-31999 — below Linux's ephemeral range (32768+) so outgoing connections cannot take
# it, and away from RabbitMQ's CLI distribution ports (35672-35682). Never hands out the same port
# twice in one run.
declare -A picked=()
pick_port() {
  local var=$1 fixed=${2:-} p i
  if [[ -n $fixed ]]; then
    if ! [[ $fixed =~ ^[0-9]+$ ]] || ((fixed < 1 || fixed > 65535)); then die "$var: '$fixed' is not a port number"; fi
    port_free "$fixed" || die "port $fixed (for $var) is already in use on 127.0.0.1"
    picked[$fixed]=1
    printf -v "$var" '%s' "$fixed"
    return
  fi
  for ((i = 0; i < 300; i++)); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
    [[ -z ${picked[$p]:-} ]] || continue
    if port_free "$p"; then
      picked[$p]=1
      printf -v "$var" '%s' "$p"
      return
    fi
  done
  die "found no free port for $var in 20000-31999"
}

# True if PID is a live process (not a zombie: kill -0 succeeds on an exited, unreaped child).
alive() {
  local pid=${1:-} state
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]] || return 1
  state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

# True if PID is alive and was launched by these scripts for directory DIR: every process we start
# carries SR_RABBITMQ_OWNER_DIR=DIR in its environment, which guards against a recycled PID.
ours() {
  local pid=${1:-} d=${2:?}
  alive "$pid" && tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "SR_RABBITMQ_OWNER_DIR=$d"
}

# Single-quotes a value for a POSIX shell file.
shq() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }

# Percent-encodes everything but RFC 3986 unreserved characters (for user, password, vhost in URLs).
urlencode() {
  local LC_ALL=C s=$1 out="" c i h
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in
      [A-Za-z0-9._~-]) out+=$c ;;
      *) printf -v h '%%%02X' "'$c"; out+=$h ;;
    esac
  done
  printf '%s' "$out"
}

# ---------------------------------------------------------------- directory and ports
port="" dist_port="" epmd_port="" tls_port="" mgmt_port="" # set by pick_port (printf -v)
pick_port port "${SR_RABBITMQ_PORT:-}"
if [[ -z $dir ]]; then dir=$PWD/.rabbitmq/${name:-sr-$port}; fi
dir=$(realpath -m -- "$dir")
# rabbitmq.conf (cuttlefish) and the Erlang command line do not cope with spaces or quotes in paths.
[[ $dir =~ ^[A-Za-z0-9._/+@=,:-]+$ ]] ||
  die "directory '$dir' contains characters RabbitMQ's config cannot take (use letters, digits, ._/-+@=,:)"

if [[ -e $dir ]]; then
  [[ -d $dir ]] || die "$dir exists and is not a directory"
  if [[ -f $dir/node.state || -f $dir/env ]]; then
    # A directory of ours: refuse if anything it recorded still runs, otherwise it is stale.
    running=$(
      # shellcheck source=/dev/null
      if [[ -f $dir/env ]]; then . "$dir/env"; else . "$dir/node.state"; fi
      for pid in "${SR_RABBITMQ_PID:-}" "${SR_RABBITMQ_WRAPPER_PID:-}" "${SR_RABBITMQ_EPMD_PID:-}"; do
        if ours "$pid" "$dir"; then printf '%s ' "$pid"; fi
      done
    )
    if [[ -n $running ]]; then
      die "$dir already has a running node (pids: ${running% }). Stop it first: $script_dir/rabbitmq-stop.sh $dir"
    fi
    note "removing stale state of a stopped node in $dir"
    rm -rf -- "$dir"
  elif [[ -n $(ls -A -- "$dir") ]]; then
    die "$dir exists, is not empty and was not created by this script; choose another directory"
  fi
fi

pick_port dist_port ""
pick_port epmd_port "${SR_RABBITMQ_EPMD_PORT:-}"
if ((tls)); then pick_port tls_port "${SR_RABBITMQ_TLS_PORT:-}"; fi
if ((mgmt)); then pick_port mgmt_port "${SR_RABBITMQ_MGMT_PORT:-}"; fi
nodename=sr-$port@localhost

mkdir -p "$dir"/{home,mnesia,log,conf.d}
chmod 700 "$dir" "$dir/home"
t_start=$(now)

# ---------------------------------------------------------------- environment of the node
# These variables make every path private (nothing under /etc/rabbitmq or /var/lib/rabbitmq is read
# or written) and keep every socket on 127.0.0.1. They are exported for the server, for the CLI calls
# below, and are written to the env/state files so later CLI calls reach the same node.
export SR_RABBITMQ_OWNER_DIR=$dir
export RABBITMQ_NODENAME=$nodename
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=$port
# Explicit, because the default (AMQP port + 20000) may be taken or exceed 65535.
export RABBITMQ_DIST_PORT=$dist_port
export RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf
export RABBITMQ_CONFIG_FILES=$dir/conf.d
export RABBITMQ_ADVANCED_CONFIG_FILE=$dir/advanced.config
export RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf
export RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins
export RABBITMQ_MNESIA_BASE=$dir/mnesia
export RABBITMQ_LOG_BASE=$dir/log
export RABBITMQ_PID_FILE=$dir/rabbitmq.pid
export RABBITMQ_MOTD_FILE=$dir/motd
# Erlang distribution (node <-> CLI) on loopback only, for the node and for CLI nodes alike.
# Erlang schedulers spin-wait for work by default (busy-wait): on a small machine that burns the
# cores the pool's own processes need. Off: the node sleeps when idle and wakes on I/O.
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} +sbwt none +sbwtdcpu none +sbwtdio none"
export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
export ERL_EPMD_ADDRESS=127.0.0.1
export ERL_EPMD_PORT=$epmd_port
# A VM that dies at boot writes erl_crash.dump into its working directory; keep it with the logs
# (the node is also launched from inside $dir, see below).
export ERL_CRASH_DUMP=$dir/log/erl_crash.dump

# The Erlang cookie lives in $HOME/.erlang.cookie; a private HOME gives the node its own cookie.
# od reads exactly 16 bytes, so no pipe is closed early (which pipefail would turn into a failure).
od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$dir/home/.erlang.cookie"
chmod 400 "$dir/home/.erlang.cookie"

# The state file is rewritten as PIDs become known, so rabbitmq-stop.sh can clean up even after a
# failed start. The env file (written last) is the same plus connection URLs.
epmd_pid="" wrapper_pid="" beam_pid=""
state_lines() {
  local v
  printf '# Private RabbitMQ node started by scripts/rabbitmq-start.sh on %s.\n' "$(date -Is)"
  printf '# Source it (". %s") to reach the node; run CLI tools via scripts/rabbitmqctl.sh %s,\n' "$dir/env" "$dir"
  # shellcheck disable=SC2016 # a literal $SR_RABBITMQ_HOME in the comment
  printf '# which also sets HOME=$SR_RABBITMQ_HOME (the Erlang cookie is there). Stop: scripts/rabbitmq-stop.sh %s\n' "$dir"
  printf 'export SR_RABBITMQ_DIR=%s\n' "$(shq "$dir")"
  printf 'export SR_RABBITMQ_NODENAME=%s\n' "$(shq "$nodename")"
  printf 'export SR_RABBITMQ_PORT=%s\n' "$port"
  printf 'export SR_RABBITMQ_DIST_PORT=%s\n' "$dist_port"
  printf 'export SR_RABBITMQ_EPMD_PORT=%s\n' "$epmd_port"
  printf '# PID of the epmd this script started (empty: it reused one it must not stop).\n'
  printf 'export SR_RABBITMQ_EPMD_PID=%s\n' "$epmd_pid"
  printf 'export SR_RABBITMQ_WRAPPER_PID=%s\n' "$wrapper_pid"
  printf '# PID of the Erlang VM (beam.smp) running the node.\n'
  printf 'export SR_RABBITMQ_PID=%s\n' "$beam_pid"
  printf 'export SR_RABBITMQ_PID_FILE=%s\n' "$(shq "$RABBITMQ_PID_FILE")"
  printf 'export SR_RABBITMQ_HOME=%s\n' "$(shq "$dir/home")"
  printf 'export SR_RABBITMQ_BIN=%s\n' "$(shq "$SR_RABBITMQ_BIN")"
  for v in RABBITMQ_NODENAME RABBITMQ_NODE_IP_ADDRESS RABBITMQ_NODE_PORT RABBITMQ_DIST_PORT \
    RABBITMQ_CONFIG_FILE RABBITMQ_CONFIG_FILES RABBITMQ_ADVANCED_CONFIG_FILE RABBITMQ_CONF_ENV_FILE \
    RABBITMQ_ENABLED_PLUGINS_FILE RABBITMQ_MNESIA_BASE RABBITMQ_LOG_BASE RABBITMQ_PID_FILE \
    RABBITMQ_MOTD_FILE RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS RABBITMQ_CTL_ERL_ARGS \
    ERL_EPMD_ADDRESS ERL_EPMD_PORT ERL_CRASH_DUMP; do
    printf 'export %s=%s\n' "$v" "$(shq "${!v}")"
  done
}
write_atomically() { # write_atomically FILE < content
  local tmp=$1.tmp.$$
  (umask 077 && cat >"$tmp") && mv -f -- "$tmp" "$1"
}
save_state() { state_lines | write_atomically "$dir/node.state"; }
save_state

# ---------------------------------------------------------------- failure handling
ok=0
print_logs() {
  local f
  # The first error lines usually name the cause (e.g. "ssl_options.keyfile invalid, file does
  # not exist"); the tail shows how it ended.
  if [[ -s $dir/log/console.log ]] && grep -q '\[error\]' "$dir/log/console.log"; then
    printf '\n----- first errors in %s -----\n' "$dir/log/console.log" >&2
    grep -m 8 '\[error\]' "$dir/log/console.log" >&2 || true
  fi
  for f in "$dir"/log/*.log; do
    [[ -s $f ]] || continue
    printf '\n----- last lines of %s -----\n' "$f" >&2
    tail -n 25 -- "$f" >&2
  done
}
# On any failure (or Ctrl-C) stop whatever this run started — by recorded PID only — and keep the
# directory for inspection.
cleanup_on_failure() {
  local rc=$? pid i
  ((ok)) && return 0
  trap - EXIT
  if [[ -z $beam_pid && -s $RABBITMQ_PID_FILE ]]; then beam_pid=$(tr -dc 0-9 <"$RABBITMQ_PID_FILE"); fi
  for pid in "$beam_pid" "$wrapper_pid" "$epmd_pid"; do
    if ours "$pid" "$dir"; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  for ((i = 0; i < 50; i++)); do
    ours "$beam_pid" "$dir" || ours "$wrapper_pid" "$dir" || ours "$epmd_pid" "$dir" || break
    sleep 0.2
  done
  for pid in "$beam_pid" "$wrapper_pid" "$epmd_pid"; do
    if ours "$pid" "$dir"; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  if [[ -n $epmd_pid$wrapper_pid ]]; then
    note "start failed; the processes it had started are stopped; logs kept in $dir/log"
  else
    note "start failed before anything was launched"
  fi
  note "remove the directory with: $script_dir/rabbitmq-stop.sh $dir"
  exit $((rc == 0 ? 1 : rc))
}
trap cleanup_on_failure EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

node_died() {
  note "the node died while $1; its logs:"
  print_logs
  exit 1
}

# run_bounded SECONDS WHAT CMD...: runs CMD (a CLI call) but gives up as soon as the node dies or
# SECONDS pass. Needed because `rabbitmqctl wait` keeps waiting (~120 s) for a node that died at
# boot, e.g. on a missing certificate file. CMD runs under timeout(1), which forwards our TERM to it.
cli_log=$dir/log/start-cli.out
run_bounded() {
  local secs=$1 what=$2 deadline cpid rc=0
  shift 2
  deadline=$(($(date +%s) + secs))
  timeout --kill-after=5 "$secs" "$@" >>"$cli_log" 2>&1 &
  cpid=$!
  while alive "$cpid"; do
    if ! alive "$wrapper_pid"; then
      kill -TERM "$cpid" 2>/dev/null || true
      wait "$cpid" 2>/dev/null || true
      node_died "$what"
    fi
    if (($(date +%s) > deadline + 6)); then break; fi
    sleep 0.2
  done
  wait "$cpid" || rc=$?
  if ((rc != 0)); then
    if ! alive "$wrapper_pid"; then node_died "$what"; fi
    note "failed while $what (exit $rc; 124 means it timed out after ${secs}s). CLI output:"
    tail -n 20 -- "$cli_log" >&2 || true
    print_logs
    exit 1
  fi
}
# The CLI finds the node through the exported RABBITMQ_NODENAME/ERL_EPMD_PORT and needs HOME for
# the cookie. An array, not a function, because timeout(1) cannot run shell functions.
ctl=(env "HOME=$dir/home" "$SR_RABBITMQ_BIN/rabbitmqctl")

# ---------------------------------------------------------------- TLS material
ca_file="" cert_file="" key_file="" client_cert="" client_key=""
if ((tls)); then
  mkdir -p "$dir/tls"
  if [[ -n ${SR_RABBITMQ_TLS_CACERT:-}${SR_RABBITMQ_TLS_CERT:-}${SR_RABBITMQ_TLS_KEY:-} ]]; then
    [[ -n ${SR_RABBITMQ_TLS_CACERT:-} && -n ${SR_RABBITMQ_TLS_CERT:-} && -n ${SR_RABBITMQ_TLS_KEY:-} ]] ||
      die "set all three of SR_RABBITMQ_TLS_CACERT, SR_RABBITMQ_TLS_CERT, SR_RABBITMQ_TLS_KEY, or none"
    ca_file=$(realpath -m -- "$SR_RABBITMQ_TLS_CACERT")
    cert_file=$(realpath -m -- "$SR_RABBITMQ_TLS_CERT")
    key_file=$(realpath -m -- "$SR_RABBITMQ_TLS_KEY")
  else
    # A throwaway CA, a server certificate for localhost/127.0.0.1 and a client certificate.
    # DNS:127.0.0.1 is deliberate: rabbitmq-c 0.11 checks only DNS names, so without it a client
    # connecting to "127.0.0.1" fails hostname verification (-513) despite the IP entry.
    t_tls=$(now)
    cnf=$dir/tls/openssl.cnf
    cat >"$cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, DNS:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
    (
      cd "$dir/tls"
      umask 077
      openssl req -x509 -new -nodes -newkey rsa:2048 -sha256 -days 30 -config "$cnf" -extensions ca_ext \
        -subj "/CN=sr throwaway CA $nodename" -keyout ca.key -out ca.pem
      openssl req -new -nodes -newkey rsa:2048 -sha256 -config "$cnf" -subj /CN=localhost \
        -keyout server.key -out server.csr
      openssl x509 -req -sha256 -days 30 -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -extfile "$cnf" -extensions server_ext -out server.pem
      openssl req -new -nodes -newkey rsa:2048 -sha256 -config "$cnf" -subj /CN=sr-client \
        -keyout client.key -out client.csr
      openssl x509 -req -sha256 -days 30 -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -extfile "$cnf" -extensions client_ext -out client.pem
      chmod 644 ca.pem server.pem client.pem
    ) >"$dir/log/openssl.out" 2>&1 || { cat "$dir/log/openssl.out" >&2; die "openssl failed to make the certificates"; }
    ca_file=$dir/tls/ca.pem cert_file=$dir/tls/server.pem key_file=$dir/tls/server.key
    client_cert=$dir/tls/client.pem client_key=$dir/tls/client.key
    note "TLS: throwaway CA + server + client certificates in $dir/tls ($(since "$t_tls") s)"
  fi
  # A missing or unreadable file makes the node die at boot while `rabbitmqctl wait` hangs for
  # minutes, so check up front and say which file.
  for f in "$ca_file" "$cert_file" "$key_file"; do
    [[ -f $f && -r $f && -s $f ]] || die "TLS file '$f' is missing, empty or unreadable"
    [[ $f =~ ^[A-Za-z0-9._/+@=,:-]+$ ]] || die "TLS file path '$f' has characters rabbitmq.conf cannot take"
  done
  openssl verify -CAfile "$ca_file" "$cert_file" >/dev/null 2>&1 ||
    die "server certificate $cert_file does not verify against CA $ca_file"
  # A key that does not belong to the certificate does not stop the node from booting; handshakes
  # would fail later with an obscure alert. Compare the public keys now.
  [[ $(openssl x509 -in "$cert_file" -noout -pubkey 2>/dev/null) == "$(openssl pkey -in "$key_file" -pubout 2>/dev/null)" ]] ||
    die "TLS key $key_file does not match certificate $cert_file (or cannot be read)"
fi

# ---------------------------------------------------------------- configuration
{
  echo "# Generated by scripts/rabbitmq-start.sh for $nodename: private, loopback-only node."
  echo "# The plain AMQP listener (127.0.0.1:$port) and node name come from RABBITMQ_NODE_IP_ADDRESS,"
  echo "# RABBITMQ_NODE_PORT and RABBITMQ_NODENAME in $dir/node.state."
  echo "# guest may log in from loopback only (the default, stated here on purpose)."
  echo "loopback_users.guest = true"
  if ((tls)); then
    echo "listeners.ssl.default = 127.0.0.1:$tls_port"
    echo "ssl_options.cacertfile = $ca_file"
    echo "ssl_options.certfile = $cert_file"
    echo "ssl_options.keyfile = $key_file"
    echo "ssl_options.verify = verify_peer"
    echo "ssl_options.fail_if_no_peer_cert = $( ((require_client_cert)) && echo true || echo false)"
  fi
  if ((mgmt)); then
    echo "management.tcp.ip = 127.0.0.1"
    echo "management.tcp.port = $mgmt_port"
  fi
} >"$RABBITMQ_CONFIG_FILE"
if ((mgmt)); then echo '[rabbitmq_management].' >"$RABBITMQ_ENABLED_PLUGINS_FILE"; else echo '[].' >"$RABBITMQ_ENABLED_PLUGINS_FILE"; fi
# Empty on purpose: stops rabbitmq-env from reading /etc/rabbitmq/rabbitmq-env.conf.
echo "# intentionally empty (private node; see scripts/rabbitmq-start.sh)" >"$RABBITMQ_CONF_ENV_FILE"

# ---------------------------------------------------------------- epmd
# Our own epmd on a private port: the node registers only there, so it cannot clash with (or be
# stopped together with) a shared epmd on 4369. Run in the foreground (no -daemon) under setsid so
# that we know its PID and it survives this script's exit.
if epmd -port "$epmd_port" -names >/dev/null 2>&1; then
  note "epmd already answers on port $epmd_port; using it (it will not be stopped by rabbitmq-stop.sh)"
else
  (cd "$dir" && HOME=$dir/home exec setsid epmd -port "$epmd_port" -address 127.0.0.1 </dev/null >"$dir/log/epmd.out" 2>&1) &
  epmd_pid=$!
  save_state
  for ((i = 0; i < 50; i++)); do
    epmd -port "$epmd_port" -names >/dev/null 2>&1 && break
    alive "$epmd_pid" || { cat "$dir/log/epmd.out" >&2; die "epmd failed to start on port $epmd_port"; }
    sleep 0.1
  done
  epmd -port "$epmd_port" -names >/dev/null 2>&1 || die "epmd did not answer on port $epmd_port within 5 s"
fi

# ---------------------------------------------------------------- the node
# rabbitmq-server in the foreground (in the background of this script): a small sh wrapper that runs
# the Erlang VM and turns TERM into a clean stop. setsid detaches both from our terminal/session.
note "starting $nodename in $dir (AMQP 127.0.0.1:$port${tls_port:+, AMQPS $tls_port}${mgmt_port:+, management $mgmt_port}, epmd $epmd_port)"
(cd "$dir" && HOME=$dir/home exec setsid "$SR_RABBITMQ_BIN/rabbitmq-server" </dev/null >"$dir/log/console.log" 2>&1) &
wrapper_pid=$!
save_state

t_boot=$(now)
# `wait PIDFILE` returns once the pid file exists and the rabbit application runs; await_startup
# then waits for the full boot (plugins included).
run_bounded "$start_timeout" "waiting for the node to come up" "${ctl[@]}" wait --timeout "$start_timeout" "$RABBITMQ_PID_FILE"
run_bounded "$start_timeout" "waiting for the node to finish booting" "${ctl[@]}" await_startup --timeout "$start_timeout"
beam_pid=$(tr -dc 0-9 <"$RABBITMQ_PID_FILE")
ours "$beam_pid" "$dir" || node_died "reading its pid file (pid '$beam_pid' is not running)"
save_state
note "node ready in $(since "$t_boot") s (beam pid $beam_pid)"

# Listeners opened by plugins/TLS can lag a moment behind await_startup; check they accept.
wait_port() {
  local p=$1 what=$2 i
  for ((i = 0; i < 100; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then return 0; fi
    alive "$wrapper_pid" || node_died "opening the $what listener"
    sleep 0.2
  done
  note "the $what listener on 127.0.0.1:$p did not accept connections within 20 s"
  print_logs
  exit 1
}
if ((tls)); then wait_port "$tls_port" TLS; fi
if ((mgmt)); then wait_port "$mgmt_port" management; fi

# ---------------------------------------------------------------- users and vhosts
login_user=guest login_password=guest
if [[ -n $vhost && $vhost != / ]]; then
  run_bounded 30 "adding vhost $vhost" "${ctl[@]}" -q add_vhost "$vhost"
fi
if [[ -n $user ]]; then
  run_bounded 30 "adding user $user" "${ctl[@]}" -q add_user "$user" "$password"
  # administrator: lets the user use the management UI/API of this throwaway node too.
  run_bounded 30 "tagging user $user" "${ctl[@]}" -q set_user_tags "$user" administrator
  run_bounded 30 "granting $user on ${vhost:-/}" "${ctl[@]}" -q set_permissions -p "${vhost:-/}" "$user" '.*' '.*' '.*'
  login_user=$user login_password=$password
elif [[ -n $vhost && $vhost != / ]]; then
  run_bounded 30 "granting guest on $vhost" "${ctl[@]}" -q set_permissions -p "$vhost" guest '.*' '.*' '.*'
fi
if ((no_guest)); then
  run_bounded 30 "deleting user guest" "${ctl[@]}" -q delete_user guest
fi

# ---------------------------------------------------------------- env file
# The vhost always goes into the URL path, percent-encoded: "/" becomes %2F. A bare trailing "/"
# would mean the EMPTY vhost to rabbitmq-c's amqp_parse_url (and the AMQP URI spec).
creds=$(urlencode "$login_user"):$(urlencode "$login_password")
vpath=$(urlencode "${vhost:-/}")
amqp_url=amqp://$creds@127.0.0.1:$port/$vpath
{
  state_lines
  printf '# Connection settings.\n'
  printf 'export SR_AMQP_URL=%s\n' "$(shq "$amqp_url")"
  # SR_AMQP_* rather than SR_RABBITMQ_USER/_VHOST: compose/compose.yaml reads those names from the
  # shell, and a sourced env file must not leak into a `docker compose up`.
  printf 'export SR_AMQP_USER=%s\n' "$(shq "$login_user")"
  printf 'export SR_AMQP_VHOST=%s\n' "$(shq "${vhost:-/}")"
  if ((tls)); then
    # 127.0.0.1 passes hostname verification thanks to the DNS:127.0.0.1 entry (see above).
    printf 'export SR_AMQPS_URL=%s\n' "$(shq "amqps://$creds@127.0.0.1:$tls_port/$vpath")"
    printf 'export SR_RABBITMQ_TLS_PORT=%s\n' "$tls_port"
    printf 'export SR_AMQP_CACERT=%s\n' "$(shq "$ca_file")"
    printf 'export SR_AMQP_CLIENT_CERT=%s\n' "$(shq "$client_cert")"
    printf 'export SR_AMQP_CLIENT_KEY=%s\n' "$(shq "$client_key")"
    printf 'export SR_RABBITMQ_TLS_REQUIRES_CLIENT_CERT=%s\n' "$require_client_cert"
  fi
  if ((mgmt)); then
    printf 'export SR_RABBITMQ_MGMT_PORT=%s\n' "$mgmt_port"
    printf 'export SR_RABBITMQ_MGMT_URL=%s\n' "$(shq "http://127.0.0.1:$mgmt_port/")"
  fi
} | write_atomically "$dir/env"

ok=1
trap - EXIT INT TERM
note "started $nodename in $(since "$t_start") s: AMQP amqp://$login_user:***@127.0.0.1:$port/$vpath${tls_port:+, AMQPS port $tls_port}${mgmt_port:+, management http://127.0.0.1:$mgmt_port/}"
note "stop with: $script_dir/rabbitmq-stop.sh $dir"
printf '%s\n' "$dir/env"

#!/usr/bin/env bash
# Fault soak (issue E): a stream of mat-vec jobs through a private pool while its processes are
# killed, then a check that every job got exactly one final output, within its bound.
#
#   scripts/fault-soak.sh [--seconds 60] [--rate 10] [--consumers 3] [--size 256] [--kill-every 4]
#                         [--deadlines 20ms,200ms,1s] [--aggregator-kill-at S] [--broker-restart-at S]
#                         [--aggregator-min-open 1] [--aggregator-kill-on open|final]
#                         [--broker-min-open 1] [--broker-stop graceful|kill]
#                         [--restart-delay 1] [--grace 30]
#                         [--seed 1] [--dir DIR] [--no-build | --bin DIR] [--no-faults]
#
# What it does, all on 127.0.0.1, stopping only what it started (by PID):
#  1. builds release executables (swift build -c release; --no-build: use the last build; --bin
#     DIR: use srproduce, srconsume and sraggregate from DIR, e.g. built from a clean export of
#     one commit) and runs private copies of them (a rebuild in the work tree mid-run changes
#     nothing);
#  2. starts its own RabbitMQ (scripts/rabbitmq-start.sh, data in DIR/broker), registers a
#     SIZE×SIZE matrix (uniform in [-1, 1), `srproduce register`), and starts one sraggregate
#     and CONSUMERS srconsume processes like scripts/local-pool.sh does, under a supervisor that
#     restarts any of them that exits, RESTART-DELAY seconds later (compose's `restart: always`);
#  3. runs the client, scripts/fault_soak.py: a Poisson stream of RATE jobs/s for SECONDS, one
#     `srproduce matvec` per job (deadlines cycling through DEADLINES), a submission refused at
#     connect (broker down) queued and retried; an independent pika watcher with durable queues
#     counts every final (`job.<id>.final` on sr.outputs) and numpy checks it;
#  4. meanwhile, the faults (times from the stream's start):
#     - kill -9 of a random consumer every KILL-EVERY seconds (0: none);
#     - kill -9 of the aggregator, once: the first moment from AGGREGATOR-KILL-AT on (default
#       SECONDS/3) when the pool holds at least AGGREGATOR-MIN-OPEN open jobs (open record
#       published, no final yet, by the client's count), at the latest 15 s later and 2 s before
#       the broker restart, never during it (the client does this kill: it sees jobs open);
#       --aggregator-kill-on final: instead, the moment the client receives a final from then
#       on — when the aggregator may not have acknowledged that job's inputs yet;
#     - a restart of the broker, once: the first moment from BROKER-RESTART-AT on (default
#       2·SECONDS/3) when the pool holds at least BROKER-MIN-OPEN open jobs, at the latest 15 s
#       later; stopped with `rabbitmqctl stop` (graceful, the default) or kill -9 of its Erlang
#       VM (kill), then started again on the same port and data directory, so durable queues
#       and persistent messages survive (rabbitmq-start.sh cannot do this: it wipes a stopped
#       node's directory; the restart is done here with the environment it recorded);
#     every role that exits is started again RESTART-DELAY seconds later;
#  5. after the stream, waits for every job's final until its deadline + GRACE seconds, then
#     prints a table (jobs submitted, exactly one final, complete / deadline, lost, duplicated,
#     wrong, kills, broker downtime) and one line `fault-soak: RESULT {json}`.
# Exit status: 0 when nothing is lost, duplicated or wrong; 1 otherwise; 2 on a setup error.
# Logs (one per role, appended across restarts), the fault timeline (events.log), every final
# received (finals.jsonl) and result.json stay in DIR (default .rabbitmq/soak-<time>).
# --no-faults runs the same stream with no kill and no restart (a baseline for the checker).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
# Messages go to fd 3 (the original stderr): once the pool runs, fd 2 goes to DIR/logs/shell.log,
# where bash reports the processes it reaps ("Killed").
exec 3>&2
die() { printf 'fault-soak: error: %s\n' "$*" >&3; exit 2; }
note() { printf 'fault-soak: %s %s\n' "$(date +%H:%M:%S)" "$*" >&3; }

seconds=60 rate=10 consumers=3 size=256 kill_every=4 deadlines=20ms,200ms,1s
agg_kill_at="" agg_kill_on=open agg_min_open=1 broker_restart_at="" broker_min_open=1 broker_stop=graceful restart_delay=1 grace=30 seed=1
dir="" build=1 faults=1 bin_dir=""
while (($#)); do
  case $1 in
    --seconds) seconds=$2; shift ;;
    --rate) rate=$2; shift ;;
    --consumers) consumers=$2; shift ;;
    --size) size=$2; shift ;;
    --kill-every) kill_every=$2; shift ;;
    --deadlines) deadlines=$2; shift ;;
    --aggregator-kill-at) agg_kill_at=$2; shift ;;
    --aggregator-min-open) agg_min_open=$2; shift ;;
    --aggregator-kill-on) agg_kill_on=$2; shift ;;
    --broker-restart-at) broker_restart_at=$2; shift ;;
    --broker-min-open) broker_min_open=$2; shift ;;
    --broker-stop) broker_stop=$2; shift ;;
    --restart-delay) restart_delay=$2; shift ;;
    --grace) grace=$2; shift ;;
    --seed) seed=$2; shift ;;
    --dir) dir=$2; shift ;;
    --no-build) build=0 ;;
    --bin) bin_dir=$2; build=0; shift ;;
    --no-faults) faults=0 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
isnum() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }
for v in seconds rate kill_every restart_delay grace; do isnum "${!v}" || die "--${v//_/-} must be a number, got '${!v}'"; done
[[ $consumers =~ ^[1-9][0-9]*$ ]] || die "--consumers must be ≥ 1"
[[ $agg_min_open =~ ^[0-9]+$ ]] || die "--aggregator-min-open must be a non-negative integer"
[[ $broker_min_open =~ ^[0-9]+$ ]] || die "--broker-min-open must be a non-negative integer"
[[ $size =~ ^[1-9][0-9]*$ ]] || die "--size must be ≥ 1"
[[ $seed =~ ^[0-9]+$ ]] || die "--seed must be a non-negative integer"
[[ $broker_stop == graceful || $broker_stop == kill ]] || die "--broker-stop is graceful or kill"
[[ $agg_kill_on == open || $agg_kill_on == final ]] || die "--aggregator-kill-on is open or final"
agg_kill_at=${agg_kill_at:-$(awk -v s="$seconds" 'BEGIN { printf "%.1f", s / 3 }')}
broker_restart_at=${broker_restart_at:-$(awk -v s="$seconds" 'BEGIN { printf "%.1f", 2 * s / 3 }')}
isnum "$agg_kill_at" || die "--aggregator-kill-at must be a number of seconds"
isnum "$broker_restart_at" || die "--broker-restart-at must be a number of seconds"
python3 -c 'import numpy, pika' 2>/dev/null || die "python3 needs numpy and pika: bash scripts/install-system-deps.sh"

dir=${dir:-$root/.rabbitmq/soak-$(date +%Y%m%d-%H%M%S)}
[[ -e $dir && -n $(ls -A "$dir" 2>/dev/null) ]] && die "$dir exists and is not empty"
mkdir -p "$dir"/{bin,logs,store}
dir=$(cd "$dir" && pwd)
events=$dir/events.log
now() { date +%s.%N; }
event() { printf '%s %s\n' "$(date +%H:%M:%S.%3N)" "$*" >>"$events"; note "$*"; }

# ---------------------------------------------------------------- build, private copies
if ((build)); then
  for p in srproduce srconsume sraggregate; do swift build -c release --product "$p" >&2; done
fi
if [[ -n $bin_dir ]]; then bin=$(cd "$bin_dir" && pwd) || die "--bin: no directory '$bin_dir'"; else bin=$(swift build -c release --show-bin-path); fi
for p in srproduce srconsume sraggregate; do
  [[ -x $bin/$p ]] || die "$bin/$p is missing (build it, or run without --no-build/--bin)"
  cp "$bin/$p" "$dir/bin/$p"
done

# ---------------------------------------------------------------- state and clean-up
declare -A pid=() starts=() restart_at=()
roles=(aggregator)
for ((i = 1; i <= consumers; i++)); do roles+=("consumer-$i"); done
client_pid="" restarter_pid="" bdir=$dir/broker
consumer_kills=0 aggregator_kills=0 broker_restarts=0 unexpected_exits=0 broker_down_exits=0

alive() { # a live process, not a zombie
  local p=${1:-} state
  [[ $p =~ ^[0-9]+$ && -r /proc/$p/stat ]] || return 1
  state=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

cleanup() {
  local rc=$? p r
  trap - EXIT INT TERM
  set +e
  if alive "$client_pid"; then kill -TERM "$client_pid" 2>/dev/null; fi
  if alive "$restarter_pid"; then kill -TERM "$restarter_pid" 2>/dev/null; wait "$restarter_pid" 2>/dev/null; fi
  for r in "${roles[@]}"; do
    p=${pid[$r]:-}
    if alive "$p" && [[ $(readlink "/proc/$p/exe" 2>/dev/null) == "$dir/bin/"* ]]; then kill -TERM "$p" 2>/dev/null; fi
  done
  for r in "${roles[@]}"; do
    p=${pid[$r]:-}
    for _ in $(seq 50); do alive "$p" || break; sleep 0.1; done
    if alive "$p" && [[ $(readlink "/proc/$p/exe" 2>/dev/null) == "$dir/bin/"* ]]; then kill -KILL "$p" 2>/dev/null; fi
  done
  # Interrupted during a broker restart: record the new VM's PID (if it has written one) first.
  if [[ -f $bdir/env && -s $bdir/rabbitmq.pid ]]; then
    p=$(tr -dc 0-9 <"$bdir/rabbitmq.pid")
    r=$(. "$bdir/env" && printf '%s' "$SR_RABBITMQ_DIR")
    if alive "$p" && grep -qxzF "SR_RABBITMQ_OWNER_DIR=$r" "/proc/$p/environ" 2>/dev/null; then set_env_pid SR_RABBITMQ_PID "$p"; fi
  fi
  if [[ -f $bdir/env || -f $bdir/node.state ]]; then bash scripts/rabbitmq-stop.sh "$bdir" >>"$dir/logs/broker-stop.log" 2>&1 || note "broker stop: see $dir/logs/broker-stop.log"; fi
  note "logs, events and results kept in $dir"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- broker
env_file=$(SR_RABBITMQ_DIR="$bdir" bash scripts/rabbitmq-start.sh 2>>"$dir/logs/broker-start.log" | tail -n 1) ||
  { cat "$dir/logs/broker-start.log" >&3; die "the broker did not start"; }
# shellcheck disable=SC1090
url=$(. "$env_file" && printf '%s' "$SR_AMQP_URL")
# shellcheck disable=SC1090
broker_port=$(. "$env_file" && printf '%s' "$SR_RABBITMQ_PORT")
if [[ -n $bin_dir ]]; then
  event "executables from $bin"
else
  event "executables built from the work tree at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git status --porcelain -- Sources Package.swift 2>/dev/null | grep -q . && echo ', with uncommitted changes under Sources/' || true)"
fi
event "broker up on 127.0.0.1:$broker_port (data in $bdir)"

# set_env_pid VAR PID: records a PID of the restarted node in its env file (for rabbitmq-stop.sh).
set_env_pid() { sed -i "s/^export $1=.*/export $1=$2/" "$bdir/env"; }

# Stops the node (graceful: rabbitmqctl stop; kill: kill -9 of its Erlang VM) and starts it again
# in the same directory, on the same port, with the same name: what rabbitmq-start.sh recorded in
# env. Writes the new PIDs back into env (rabbitmq-stop.sh uses them) and its timings to
# DIR/broker-restart.times. Runs in the background while the supervisor keeps going.
restart_broker() {
  set -euo pipefail
  # shellcheck disable=SC1090
  . "$env_file"
  local ctl=(env "HOME=$SR_RABBITMQ_HOME" "$SR_RABBITMQ_BIN/rabbitmqctl") beam=$SR_RABBITMQ_PID t_stop t_down t_up
  t_stop=$(now)
  if [[ $broker_stop == kill ]]; then
    grep -qxzF "SR_RABBITMQ_OWNER_DIR=$SR_RABBITMQ_DIR" "/proc/$beam/environ" || { echo "pid $beam is not our broker" >&2; return 1; }
    kill -KILL "$beam"
  else
    timeout 60 "${ctl[@]}" -q stop "$SR_RABBITMQ_PID_FILE" >>"$dir/logs/broker-restart.log" 2>&1 || true
  fi
  for _ in $(seq 300); do alive "$beam" || break; sleep 0.1; done
  alive "$beam" && { echo "beam $beam still alive after stop" >>"$dir/logs/broker-restart.log"; return 1; }
  t_down=$(now)
  for _ in $(seq 50); do alive "$SR_RABBITMQ_WRAPPER_PID" || break; sleep 0.1; done
  rm -f "$SR_RABBITMQ_PID_FILE"
  (cd "$SR_RABBITMQ_DIR" && SR_RABBITMQ_OWNER_DIR=$SR_RABBITMQ_DIR HOME=$SR_RABBITMQ_HOME \
    exec setsid "$SR_RABBITMQ_BIN/rabbitmq-server" </dev/null >>"$SR_RABBITMQ_DIR/log/console.log" 2>&1) &
  local wrapper=$! t_listen=""
  set_env_pid SR_RABBITMQ_WRAPPER_PID "$wrapper"   # rabbitmq-stop.sh stops it if we are interrupted
  # Down until the AMQP listener accepts again (RabbitMQ opens it at the end of its boot).
  for _ in $(seq 900); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$SR_RABBITMQ_PORT") 2>/dev/null; then t_listen=$(now); break; fi
    alive "$wrapper" || { echo "rabbitmq-server exited during the restart" >&2; return 1; }
    sleep 0.1
  done
  [[ -n $t_listen ]] || { echo "the AMQP port did not open within 90 s" >&2; return 1; }
  timeout 90 "${ctl[@]}" wait --timeout 60 "$SR_RABBITMQ_PID_FILE" >>"$dir/logs/broker-restart.log" 2>&1
  timeout 90 "${ctl[@]}" await_startup --timeout 60 >>"$dir/logs/broker-restart.log" 2>&1
  t_up=$t_listen
  local new_beam
  new_beam=$(tr -dc 0-9 <"$SR_RABBITMQ_PID_FILE")
  set_env_pid SR_RABBITMQ_PID "$new_beam"
  printf '%s %s %s %s\n' "$t_stop" "$t_down" "$t_up" "$new_beam" >"$dir/broker-restart.times"
  printf 'broker-stop %s\nbroker-up %s\n' "$t_stop" "$t_up" >>"$dir/faults.times"
}

# ---------------------------------------------------------------- matrix and roles
exec 2>>"$dir/logs/shell.log"
python3 scripts/fault_soak.py matrix --out "$dir/A.npy" --size "$size" --seed "$seed"
digest=$(SR_STORE=$dir/store OPENBLAS_NUM_THREADS=1 "$dir/bin/srproduce" register soak --matrix "$dir/A.npy")
event "registered a ${size}×${size} matrix as 'soak' ($digest)"

start_role() {
  local r=$1 cmd
  if [[ $r == aggregator ]]; then cmd=("$dir/bin/sraggregate"); else cmd=("$dir/bin/srconsume" --name "$r"); fi
  starts[$r]=$((${starts[$r]:-0} + 1))
  printf '=== %s: start #%d\n' "$(date +%H:%M:%S.%3N)" "${starts[$r]}" >>"$dir/logs/$r.log"
  SR_AMQP_URL=$url SR_STORE=$dir/store OPENBLAS_NUM_THREADS=1 "${cmd[@]}" >>"$dir/logs/$r.log" 2>&1 &
  pid[$r]=$!
  if [[ $r == aggregator ]]; then printf '%s\n' "${pid[$r]}" >"$dir/aggregator.pid"; fi
  restart_at[$r]=""
}
for r in "${roles[@]}"; do start_role "$r"; done
event "started aggregator (pid ${pid[aggregator]}) and $consumers consumer(s)"

# Reaps roles that exited: schedules their restart; counts exits we did not cause.
declare -A killed_by_us=()
supervise() {
  local r p rc t
  t=$(now)
  for r in "${roles[@]}"; do
    p=${pid[$r]}
    if [[ -z ${restart_at[$r]} ]] && ! alive "$p"; then
      rc=0; wait "$p" 2>/dev/null || rc=$?
      if [[ -e $dir/killed/$p ]]; then   # the client's kill -9 of the aggregator
        aggregator_kills=$((aggregator_kills + 1))
        event "kill -9 $r (pid $p) by the client: $(grep -o 'holding .*' "$dir/logs/client.log" | tail -n 1 | cut -c1-160)"
        event "$r (pid $p) gone (status $rc, killed by the soak); restart in ${restart_delay} s"
      elif [[ -n ${killed_by_us[$p]:-} ]]; then
        event "$r (pid $p) gone (status $rc, killed by the soak); restart in ${restart_delay} s"
      elif alive "$restarter_pid"; then
        broker_down_exits=$((broker_down_exits + 1))
        event "$r (pid $p) exited with status $rc while the broker restarts; restart in ${restart_delay} s"
      else
        unexpected_exits=$((unexpected_exits + 1))
        event "$r (pid $p) EXITED BY ITSELF with status $rc; restart in ${restart_delay} s (log: $dir/logs/$r.log)"
      fi
      restart_at[$r]=$(awk -v t="$t" -v d="$restart_delay" 'BEGIN { printf "%.3f", t + d }')
    fi
    if [[ -n ${restart_at[$r]} ]] && awk -v t="$t" -v at="${restart_at[$r]}" 'BEGIN { exit !(t >= at) }'; then
      start_role "$r"
      event "$r restarted (pid ${pid[$r]}, start #${starts[$r]})"
    fi
  done
}
kill9() {
  local r=$1 p=${pid[$1]}
  alive "$p" || return 1
  [[ $(readlink "/proc/$p/exe" 2>/dev/null) == "$dir/bin/"* ]] || return 1
  killed_by_us[$p]=1
  kill -KILL "$p"
  printf '%s %s\n' "${r%%-*}-kill" "$(now)" >>"$dir/faults.times"
  event "kill -9 $r (pid $p)"
}

# Let the roles connect and declare the topology before the first job.
for _ in $(seq 100); do grep -q "aggregating" "$dir/logs/aggregator.log" 2>/dev/null && break; sleep 0.1; done
grep -q "aggregating" "$dir/logs/aggregator.log" || die "the aggregator did not start: $(tail -n 5 "$dir/logs/aggregator.log")"

# ---------------------------------------------------------------- the stream and the faults
# The client kills the aggregator itself (see fault_soak.py): it knows the moment jobs are open.
agg_kill_last=$(awk -v a="$agg_kill_at" -v b="$broker_restart_at" 'BEGIN { l = a + 15; if (a < b && b - 2 < l) l = b - 2; if (l < a) l = a; print l }')
agg_args=()
((faults)) && agg_args=(--aggregator-kill-at "$agg_kill_at" --aggregator-kill-last "$agg_kill_last"
  --aggregator-min-open "$agg_min_open" --aggregator-kill-on "$agg_kill_on" --aggregator-exe "$dir/bin/sraggregate")
python3 scripts/fault_soak.py run --url "$url" --dir "$dir" --srproduce "$dir/bin/srproduce" --store "$dir/store" \
  --matrix-name soak --matrix "$dir/A.npy" --seconds "$seconds" --rate "$rate" --deadlines "$deadlines" \
  --grace "$grace" --seed "$seed" "${agg_args[@]}" >"$dir/client.out" 2>"$dir/logs/client.log" &
client_pid=$!
for _ in $(seq 600); do [[ -s $dir/stream.started ]] && break; alive "$client_pid" || break; sleep 0.1; done
[[ -s $dir/stream.started ]] || { cat "$dir/logs/client.log" >&3; die "the client did not start"; }
t0=$(cat "$dir/stream.started")
event "stream started: ${seconds} s at ${rate} jobs/s, ${consumers} consumers, ${size}×${size}, deadlines $deadlines"
((faults)) && event "faults: kill -9 of a consumer every ${kill_every} s, of the aggregator at ${agg_kill_at} s, broker restart ($broker_stop) at ${broker_restart_at} s"
elapsed() { awk -v t0="$t0" -v t="$(now)" 'BEGIN { printf "%.3f", t - t0 }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }

broker_restart_last=$(awk -v a="$broker_restart_at" 'BEGIN { print a + 15 }')
next_consumer_kill=$kill_every broker_done=0 restarter_done=0
((faults)) || broker_done=1
while alive "$client_pid"; do
  supervise
  e=$(elapsed)
  if ((faults)) && ge "$kill_every" 0.001 && ge "$e" "$next_consumer_kill" && ! ge "$e" "$seconds"; then
    r=consumer-$((RANDOM % consumers + 1))
    if kill9 "$r"; then consumer_kills=$((consumer_kills + 1)); else event "consumer kill skipped: $r is not running (restarting)"; fi
    next_consumer_kill=$(awk -v a="$next_consumer_kill" -v b="$kill_every" 'BEGIN { print a + b }')
  fi
  if ((!broker_done)) && ge "$e" "$broker_restart_at" && [[ -z ${restart_at[aggregator]} ]]; then
    # Armed: poll the client's count of open jobs (written every 10 ms) until it reaches the
    # minimum, or 15 s have passed.
    for _ in $(seq 20); do
      open_jobs=0
      read -r open_jobs <"$dir/open.count" 2>/dev/null || true
      if ((open_jobs >= broker_min_open)) || ge "$(elapsed)" "$broker_restart_last"; then
        : >"$dir/broker.down"   # the client does not kill the aggregator meanwhile
        restart_broker >>"$dir/logs/broker-restart.log" 2>&1 &
        restarter_pid=$!
        broker_done=1
        event "broker restart ($broker_stop) begins; the pool holds $open_jobs open job(s) by the client's count"
        break
      fi
      sleep 0.01
    done
  fi
  if ((broker_done && !restarter_done)) && [[ -n $restarter_pid ]] && ! alive "$restarter_pid"; then
    rc=0; wait "$restarter_pid" || rc=$?
    restarter_done=1
    rm -f "$dir/broker.down"
    if ((rc == 0)) && [[ -s $dir/broker-restart.times ]]; then
      read -r t_stop t_down t_up new_beam <"$dir/broker-restart.times"
      broker_restarts=1
      event "broker back on port $broker_port (beam pid $new_beam): $(awk -v a="$t_stop" -v b="$t_down" 'BEGIN { printf "%.1f", b - a }') s to stop, AMQP port closed for $(awk -v a="$t_stop" -v b="$t_up" 'BEGIN { printf "%.1f", b - a }') s in all"
    else
      event "BROKER RESTART FAILED (status $rc): see $dir/logs/broker-restart.log"
    fi
  fi
  sleep 0.2
done
client_rc=0; wait "$client_pid" || client_rc=$?
event "client finished (status $client_rc)"
supervise

# ---------------------------------------------------------------- report
cat "$dir/client.out"
[[ -s $dir/result.json ]] || { tail -n 30 "$dir/logs/client.log" >&3; die "the client wrote no result (status $client_rc)"; }
downtime=None
if [[ -s $dir/broker-restart.times ]]; then
  read -r t_stop t_down t_up _ <"$dir/broker-restart.times"
  downtime=$(awk -v a="$t_stop" -v b="$t_up" 'BEGIN { printf "%.1f", b - a }')
fi
agg_starts=${starts[aggregator]}
consumer_starts=0
for r in "${roles[@]}"; do [[ $r == consumer-* ]] && consumer_starts=$((consumer_starts + ${starts[$r]})); done
printf '  %-46s  %s\n' "consumer kill -9" "$consumer_kills (consumer processes started: $consumer_starts)" \
  "aggregator kill -9" "$aggregator_kills (aggregator processes started: $agg_starts)" \
  "broker restarts ($broker_stop)" "$broker_restarts (down ${downtime} s: stop issued → AMQP port accepting again)" \
  "role exits while the broker was restarting" "$broker_down_exits" \
  "role exits not caused by the soak (otherwise)" "$unexpected_exits"
line=$(python3 - "$dir/result.json" <<PY
import json, sys
r = json.load(open(sys.argv[1]))
keys = ["scheduled", "submitted", "submit_failed", "exactly_one_final", "complete", "deadline", "lost", "duplicated",
        "duplicated_identical", "wrong", "answered_unconfirmed", "jobs_retried", "late_ms", "jobs_in_flight_at"]
out = {k: r[k] for k in keys}
out["aggregator_kill_open_jobs"] = (r.get("aggregator_kill") or {}).get("open_jobs")
out.update(seconds=$seconds, rate=$rate, consumers=$consumers, size=$size, consumer_kills=$consumer_kills,
           aggregator_kills=$aggregator_kills, broker_restarts=$broker_restarts, broker_stop="$broker_stop",
           broker_downtime_s=$downtime, role_exits_broker_down=$broker_down_exits,
           unexpected_role_exits=$unexpected_exits)
print(json.dumps(out, separators=(",", ":")))
PY
)
echo "fault-soak: RESULT $line"
python3 - "$dir/result.json" "$dir/logs" <<'PY' >"$dir/evidence.txt"
import json, os, sys
r = json.load(open(sys.argv[1]))
ids = r["lost_ids"] + r["duplicated_ids"] + r["wrong_ids"]
for p in r["problems"]:
    print(f"== {p['kind']} {p['job']}: {json.dumps(p['detail'], default=str)}")
for jid in ids:
    print(f"== log lines for {jid}")
    for name in sorted(os.listdir(sys.argv[2])):
        with open(os.path.join(sys.argv[2], name), errors="replace") as f:
            for line in f:
                if jid in line:
                    print(f"{name}: {line.rstrip()[:400]}")
PY
if ((client_rc != 0)); then
  note "FAILED: lost, duplicated or wrong jobs — evidence in $dir/evidence.txt"
  exit 1
fi
note "passed: every submitted job got exactly one final, within its bound"

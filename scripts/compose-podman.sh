#!/usr/bin/env bash
# The compose deployment (compose/compose.yaml) for real on a machine WITHOUT a Docker engine:
# podman, host networking, everything on 127.0.0.1.
#
#   scripts/compose-podman.sh [--compose-dir DIR] COMMAND [ARGS]
#
#   up [--consumers N] [--no-build]
#                        install what is missing (apt: podman, runc, debootstrap, catatonit,
#                        docker-compose), a Debian bookworm base image (debootstrap + podman import),
#                        a RabbitMQ image (Debian's rabbitmq-server) and the project's image (release
#                        binaries built here by swift build); then start rabbitmq, wait until it is
#                        healthy, start the aggregator and N consumers (default: compose.yaml's
#                        replicas) and wait until each says it is consuming. Skips what is done;
#                        --no-build keeps the project image there is (no swift build).
#   job --matrix A.npy --vector x.npy [--name NAME] [--deadline 30s] [--out y.npy] [-- MATVEC-OPTIONS]
#                        registers A as NAME (default: job) and runs `srproduce matvec --wait` in a
#                        producer container; A and x go in on standard input, y comes out on standard
#                        output (`--out -`) into --out on this machine. Refinements go to stderr.
#   run [-v HOST:CONTAINER[:ro]]... CMD [ARGS]
#                        a one-off command in a producer container, standard input and output
#                        passed through (like `docker compose run --rm -T producer CMD`), e.g.
#                        `run srproduce register big --matrix - < A.npy`.
#   logs [SERVICE] [-f] [--tail N]   a service's logs (default aggregator; all consumer replicas)
#   ps                   this deployment's containers
#   down [-v] [--purge]  stop and remove this deployment's containers (by name; grace period from
#                        compose.yaml); -v also its volumes (broker data, operands); --purge also
#                        the private image store (base, RabbitMQ and project images)
#   config               print the podman translation of compose.yaml (needs no podman; used by
#                        scripts/validate-compose.sh to keep the two in sync)
#
# What it reads: the services, commands, environment, volumes, init, restart, grace periods,
# replicas and the broker's healthcheck all come from compose.yaml, resolved by `docker-compose
# config` (interpolation from DIR/.env, anchors, merges and `${VAR:?}` errors exactly as compose
# does; it needs no engine) and translated by the Python below, which refuses any key it does not
# know how to translate, so a change to compose.yaml cannot be silently ignored. DIR/.env and
# DIR/secrets/ are the ones compose uses (DIR defaults to compose/): copy .env.example, set every
# password; DIR/setup.sh is run when secrets/ is missing or older than .env.
#
# Where it differs from `docker compose up`, because of this machine:
#   * host networking (`--network host`): container bridge networks use private-range addresses,
#     which are no target here. The broker listens on 127.0.0.1 only — amqps on SR_AMQPS_HOST_PORT
#     (default 5671) and the management UI on SR_MGMT_HOST_PORT (15672), the host ports compose
#     publishes — and keeps Erlang distribution on loopback too, on private ports
#     (SR_PODMAN_EPMD_PORT, default 24369; SR_PODMAN_DIST_PORT, default amqps port + 20000).
#     The name `rabbitmq` resolves to 127.0.0.1 in every container (--add-host), so the roles'
#     URLs and the broker certificate (made for DNS:rabbitmq) stay as compose has them; only the
#     port in SR_AMQP_URL becomes the host port. A role's own listener whose port compose
#     publishes (the aggregator's metrics, 127.0.0.1:9464) listens on that host port, on
#     127.0.0.1 (an environment value 0.0.0.0 becomes 127.0.0.1); one only `expose`d on the
#     compose network (the consumers' metrics, replicas sharing port 9465) is switched off (0).
#   * no registry: images are built locally. rabbitmq:3.13-management becomes Debian bookworm's
#     rabbitmq-server 3.10 with the management plugin; the project's image is compose/Dockerfile's
#     runtime stage with the binaries copied from this machine's `swift build -c release
#     --static-swift-stdlib` instead of its build stage.
#   * podman runs with --runtime /usr/sbin/runc (crun refuses hybrid cgroups) and cgroupfs, and with
#     a private image/container/volume store in the state directory, so it can neither see nor stop
#     containers it did not start.
#   * depends_on/healthcheck: the script polls the healthcheck itself (podman exec), bounded by
#     start_period + interval x retries; podman has no healthcheck timer without systemd.
#
# Environment: SR_PODMAN_STATE (state directory: private podman store, generated image contexts;
# default /tmp/sr-compose-podman), SR_PODMAN_BUILD (swift build scratch path; default
# .build-podman), SR_DEBIAN_MIRROR (default http://deb.debian.org/debian), SR_PODMAN_EPMD_PORT,
# SR_PODMAN_DIST_PORT, SR_PODMAN_READY_TIMEOUT (seconds a role may take to say it consumes; 120).
# Needs root (apt-get, rootful podman). Only 127.0.0.1 is used as a network target.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prog=scripts/compose-podman.sh
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
note() { printf '%s: %s\n' "$prog" "$*" >&2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
t0=$(date +%s.%N)
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

compose_dir=$root/compose
while (($#)); do
  case $1 in
    --compose-dir) (($# >= 2)) || die "--compose-dir needs a directory"; compose_dir=$2; shift 2 ;;
    --compose-dir=*) compose_dir=${1#*=}; shift ;;
    -h | --help | help) usage; exit 0 ;;
    *) break ;;
  esac
done
(($#)) || { usage >&2; exit 2; }
command=$1
shift
case $command in up | job | run | logs | ps | down | config) ;; *) die "unknown command '$command' (see --help)" ;; esac
for a in "$@"; do [[ $a == -h || $a == --help ]] && [[ $command != run ]] && { usage; exit 0; }; done

[[ -d $compose_dir ]] || die "no compose directory $compose_dir"
compose_dir=$(cd "$compose_dir" && pwd)
compose_file=$compose_dir/compose.yaml
env_file=$compose_dir/.env
[[ -f $compose_file ]] || die "no $compose_file"

state=${SR_PODMAN_STATE:-/tmp/sr-compose-podman}
if [[ $command != config ]]; then   # config only reads compose.yaml: no state, no podman
  mkdir -p "$state"
  chmod 700 "$state"
fi
state=$(realpath -m -- "$state")
build_dir=${SR_PODMAN_BUILD:-$root/.build-podman}
mirror=${SR_DEBIAN_MIRROR:-http://deb.debian.org/debian}
ready_timeout=${SR_PODMAN_READY_TIMEOUT:-120}
[[ $ready_timeout =~ ^[0-9]+$ ]] || die "SR_PODMAN_READY_TIMEOUT must be a number of seconds"

base_image=localhost/debian:bookworm
rabbitmq_image=localhost/sr-rabbitmq:bookworm

# ---------------------------------------------------------------- podman, privately
# A private store (images, containers, volumes) under the state directory: `down` and `--purge`
# can only ever touch what this script made. Run-time state goes to /run (tmpfs on a normal
# system, so podman notices a reboot), keyed by the state directory.
run_key=$(printf '%s' "$state" | sha256sum | cut -c1-12)
run_base=/run/sr-compose-podman/$run_key
pm_cmd=(podman --root "$state/storage" --runroot "$run_base/storage" --tmpdir "$run_base/libpod"
  --runtime /usr/sbin/runc --cgroup-manager cgroupfs --events-backend file)
pm() { "${pm_cmd[@]}" "$@"; }

need_root() { [[ $(id -u) -eq 0 ]] || die "run as root (sudo $prog $command ...): it installs packages with apt-get and runs rootful podman"; }

# ---------------------------------------------------------------- packages
# Pinned to the upstream versions of Debian 12 (bookworm) that ENVIRONMENT.md measured; the Debian
# revision may move with security updates, the upstream version may not.
apt_pins=(podman=4.3.* runc=1.1.* debootstrap=1.0.* catatonit=0.1.* docker-compose=1.29.* python3-yaml=6.0*)
install_packages() {
  local missing=() spec name
  for spec in "${apt_pins[@]}"; do
    name=${spec%%=*}
    dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q 'install ok installed' || missing+=("$spec")
  done
  command -v openssl >/dev/null || missing+=(openssl)
  if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "apt-get not found: this script expects Debian 12 (bookworm)"
    note "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >"$state/apt.log" 2>&1 || { tail -n 20 "$state/apt.log" >&2; die "apt-get update failed; check the network and /etc/apt/sources.list"; }
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$state/apt.log" 2>&1 ||
      { tail -n 20 "$state/apt.log" >&2; die "apt-get install ${missing[*]} failed (the pins are bookworm's versions: is this Debian 12?)"; }
  fi
  [[ -x /usr/sbin/runc ]] || die "/usr/sbin/runc is missing after installing runc"
  # Settings podman needs on this kind of machine (ENVIRONMENT.md), written only when there is no
  # containers.conf: an existing one is the administrator's.
  local conf=/etc/containers/containers.conf
  if [[ ! -e $conf ]]; then
    mkdir -p /etc/containers
    printf '%s\n' '# Written by scripts/compose-podman.sh (successive-refinement): crun and systemd cgroups do' \
      '# not work on this machine; podman is run with --runtime /usr/sbin/runc.' \
      '[containers]' 'default_ulimits = []' '' '[engine]' 'cgroup_manager = "cgroupfs"' >"$conf"
    note "wrote $conf (default_ulimits = [], cgroup_manager = cgroupfs)"
  elif ! grep -q '^[[:space:]]*default_ulimits[[:space:]]*=[[:space:]]*\[\]' "$conf"; then
    note "warning: $conf exists and does not set 'default_ulimits = []' under [containers]; if containers fail to start with a ulimit error, add it"
  fi
}

# ---------------------------------------------------------------- compose.yaml -> podman
python=""
find_python() {
  local c
  for c in python3 /usr/bin/python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import yaml' 2>/dev/null; then python=$c; return 0; fi
  done
  return 1
}

# Resolves compose.yaml with DIR/.env (or $1) and writes bash assignments describing the podman
# containers to stdout. The translation is explicit: a key it does not know fails here.
translate() {
  local envf=$1
  command -v docker-compose >/dev/null || die "docker-compose (v1, only to resolve compose.yaml) is missing: apt-get install -y --no-install-recommends docker-compose"
  find_python || die "no python3 with PyYAML: apt-get install -y python3-yaml"
  local resolved
  resolved=$(mktemp)
  # Only the env file counts, not the caller's shell (like scripts/validate-compose.sh).
  if ! env -u SR_PRODUCER_PASSWORD -u SR_CONSUMER_PASSWORD -u SR_AGGREGATOR_PASSWORD -u SR_ADMIN_PASSWORD \
    -u SR_MONITOR_PASSWORD -u SR_RABBITMQ_VHOST -u SR_AMQPS_HOST_PORT -u SR_MGMT_HOST_PORT -u SR_LOG_FORMAT \
    -u SR_LOG_LEVEL -u COMPOSE_PROJECT_NAME -u COMPOSE_FILE -u COMPOSE_PROFILES \
    docker-compose --env-file "$envf" -f "$compose_file" --profile tools config >"$resolved" 2>"$resolved.err"; then
    cat "$resolved.err" >&2
    rm -f "$resolved" "$resolved.err"
    die "docker-compose could not resolve $compose_file with $envf (message above)"
  fi
  local project
  project=$(sed -n 's/^[[:space:]]*COMPOSE_PROJECT_NAME=//p' "$envf" | tail -n1 | tr -d "\"' ")
  project=${project:-$(basename "$compose_dir")}
  [[ $project =~ ^[a-z0-9][a-z0-9_-]*$ ]] || die "COMPOSE_PROJECT_NAME '$project' must be lower-case letters, digits, - and _"
  "$python" - "$resolved" "$project" "$compose_dir" "${SR_PODMAN_EPMD_PORT:-}" "${SR_PODMAN_DIST_PORT:-}" <<'PY' || { rm -f "$resolved" "$resolved.err"; die "compose.yaml cannot be translated for podman (above); teach translate() in $prog"; }
import os, re, shlex, sys, yaml

resolved, project, compose_dir, epmd_port, dist_port = sys.argv[1:6]
cfg = yaml.safe_load(open(resolved))
services = cfg.get("services") or {}
problems = []

def q(v):
    return shlex.quote(str(v))

def seconds(text):
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", str(text))
    if not m or not any(m.groups()):
        problems.append(f"cannot read the duration {text!r}")
        return 10
    return int(round(int(m.group(1) or 0) * 60 + float(m.group(2) or 0)))

# Ports: host networking means the container listens on the host port itself, on 127.0.0.1.
published = {}   # (service, container port) -> host port
for name, svc in services.items():
    for port in svc.get("ports") or []:
        m = re.fullmatch(r"(?:(\d+\.\d+\.\d+\.\d+):)?(\d+):(\d+)(?:/tcp)?", str(port))
        if not m:
            problems.append(f"{name}: port {port!r} is not of the form 127.0.0.1:HOST:CONTAINER")
            continue
        if m.group(1) != "127.0.0.1":
            problems.append(f"{name}: port {port!r} is not bound to 127.0.0.1")
        published[(name, int(m.group(3)))] = int(m.group(2))

known = {"image", "build", "command", "environment", "volumes", "hostname", "init", "restart",
         "stop_grace_period", "depends_on", "healthcheck", "ports", "deploy", "profiles", "expose"}
# A role's own listener (metrics) whose port compose publishes: on host networking the role
# listens on the host port itself. Ports only `expose`d (the compose network, replicas sharing a
# port) have no host-network equivalent: that listener is switched off (port 0).
listeners = set()   # (service, container port) carried by an environment variable
out = [f"project={q(project)}"]
order = []
# The broker first, then the services that wait for it.
for name in sorted(services, key=lambda n: (bool(services[n].get("depends_on")), n)):
    svc = services[name]
    for key in svc:
        if key not in known:
            problems.append(f"{name}: key '{key}' has no podman translation")
    args = ["--network", "host", "--label", f"sr.compose-podman.project={project}",
            "--label", f"sr.compose-podman.service={name}"]
    # Compose's network DNS: every service name is this machine (host networking).
    for other in sorted(services):
        args += ["--add-host", f"{other}:127.0.0.1"]
    if svc.get("hostname"):
        args += ["--hostname", svc["hostname"]]
    if svc.get("init"):
        args += ["--init"]
    if "stop_grace_period" in svc:
        args += ["--stop-timeout", str(seconds(svc["stop_grace_period"]))]
    restart = svc.get("restart")
    if restart:
        if restart not in ("no", "always", "on-failure", "unless-stopped"):
            problems.append(f"{name}: restart {restart!r}")
        args += ["--restart", restart]
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    exposed = {int(str(e).split("/")[0]) for e in svc.get("expose") or []}
    for key, value in sorted(env.items()):
        value = "" if value is None else str(value)
        # Every interface of a container is, with host networking, every interface of this
        # machine: listeners stay on loopback.
        if value == "0.0.0.0":
            value = "127.0.0.1"
        if key.endswith("_PORT") and value.isdigit():
            if (name, int(value)) in published:
                listeners.add((name, int(value)))
                value = str(published[(name, int(value))])
            elif int(value) in exposed:
                print(f"  note: {name}: {key}={value} is only exposed on the compose network; off under podman "
                      f"(replicas on one host cannot share the port)", file=sys.stderr)
                value = "0"
        # A URL naming a service's container port goes to its host port (same host name).
        for (other, cport), hport in published.items():
            value = re.sub(rf"(@|//){re.escape(other)}:{cport}(?=[/?]|$)", rf"\g<1>{other}:{hport}", value)
        args += ["--env", f"{key}={value}"]
    for vol in svc.get("volumes") or []:
        parts = str(vol).split(":")
        if len(parts) not in (2, 3):
            problems.append(f"{name}: volume {vol!r}")
            continue
        source, target = parts[0], parts[1]
        mode = parts[2] if len(parts) == 3 else "rw"
        if source.startswith("/"):
            if not os.path.exists(source):
                print(f"  warning: {name}: {source} does not exist yet (compose/setup.sh makes secrets/)", file=sys.stderr)
        else:
            if source not in (cfg.get("volumes") or {}):
                problems.append(f"{name}: named volume {source!r} is not declared")
            source = f"{project}_{source}"
        args += ["--volume", f"{source}:{target}:{mode}"]
    deploy = svc.get("deploy") or {}
    for key in deploy:
        if key != "replicas":
            problems.append(f"{name}: deploy.{key} has no podman translation")
    replicas = int(deploy.get("replicas", 1))
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        deps = {d: {"condition": "service_started"} for d in deps}
    for dep, how in deps.items():
        if dep not in services:
            problems.append(f"{name}: depends on unknown service {dep!r}")
        if (how or {}).get("condition") not in ("service_healthy", "service_started"):
            problems.append(f"{name}: depends_on condition {how!r}")
    image = svc.get("image")
    if "build" in svc:
        build = svc["build"]
        if os.path.realpath(os.path.join(build.get("context", "."), build.get("dockerfile", "Dockerfile"))) != \
           os.path.realpath(os.path.join(compose_dir, "Dockerfile")):
            problems.append(f"{name}: built from {build}, expected compose/Dockerfile")
        if not image:
            problems.append(f"{name}: a built service needs an image name")
        kind = "project"
    elif str(image).startswith("rabbitmq:"):
        image, kind = "localhost/sr-rabbitmq:bookworm", "rabbitmq"
    else:
        problems.append(f"{name}: image {image!r} cannot be pulled (no registry) and has no local recipe")
        kind = "unknown"
    command = svc.get("command") or []
    if isinstance(command, str):
        command = shlex.split(command)
    health = svc.get("healthcheck") or {}
    test = health.get("test") or []
    if test and test[0] == "CMD":
        test = test[1:]
    elif test:
        problems.append(f"{name}: healthcheck test must be a CMD list")
    budget = seconds(health.get("start_period", "0s")) + seconds(health.get("interval", "30s")) * int(health.get("retries", 3))
    var = name.replace("-", "_")
    order.append(name)
    out.append(f"svc_kind[{q(name)}]={q(kind)}; svc_image[{q(name)}]={q(image)}; svc_replicas[{q(name)}]={replicas}")
    out.append(f"svc_profiles[{q(name)}]={q(' '.join(svc.get('profiles') or []))}")
    out.append(f"svc_grace[{q(name)}]={seconds(svc.get('stop_grace_period', '10s'))}")
    out.append(f"svc_{var}_args=({' '.join(q(a) for a in args)})")
    out.append(f"svc_{var}_command=({' '.join(q(a) for a in command)})")
    out.append(f"svc_{var}_health=({' '.join(q(a) for a in test)}); svc_health_budget[{q(name)}]={budget}")

# The broker's listeners on the published host ports, loopback only (a conf.d file after
# compose/rabbitmq.conf), and the Erlang distribution on private loopback ports.
amqps = published.get(("rabbitmq", 5671))
mgmt = published.get(("rabbitmq", 15672))
for (svc, cport) in published:
    if (svc, cport) not in (("rabbitmq", 5671), ("rabbitmq", 15672)) and (svc, cport) not in listeners:
        problems.append(f"{svc}: published port {cport} has no host-network translation")
if amqps is None:
    problems.append("rabbitmq: no published amqps port 5671")
else:
    out.append(f"amqps_port={amqps}; mgmt_port={mgmt or ''}")
    out.append(f"epmd_port={int(epmd_port or 24369)}; dist_port={int(dist_port or amqps + 20000)}")
out.append(f"services=({' '.join(q(n) for n in order)})")
for p in problems:
    print("  " + p, file=sys.stderr)
if problems:
    sys.exit(1)
print("\n".join(out))
PY
  rm -f "$resolved" "$resolved.err"
}

# Set by the translation (eval of translate's output).
declare -A svc_kind=() svc_image=() svc_replicas=() svc_profiles=() svc_grace=() svc_health_budget=()
project="" amqps_port="" mgmt_port="" epmd_port="" dist_port="" services=()
load_spec() {
  [[ -f $env_file ]] || die "no $env_file: cp $compose_dir/.env.example $env_file && chmod 600 $env_file, then set every password (openssl rand -hex 16)"
  local spec
  spec=$(translate "$env_file")
  eval "$spec"
}
# NUL-separated words of a service's array (nothing for an empty one: a bare printf would print
# one empty word).
words() { local -n w=$1; ((${#w[@]} == 0)) || printf '%s\0' "${w[@]}"; }
args_of() { words "svc_${1//-/_}_args"; }
command_of() { words "svc_${1//-/_}_command"; }
health_of() { words "svc_${1//-/_}_health"; }

# Container names as docker compose v2 gives them: PROJECT-SERVICE-N.
cname() { printf '%s-%s-%s' "$project" "$1" "${2:-1}"; }

# ---------------------------------------------------------------- secrets
ensure_secrets() {
  local s=$compose_dir/secrets
  if [[ ! -s $s/definitions.json || ! -s $s/ca.pem || ! -s $s/server.pem || $env_file -nt $s/definitions.json ]]; then
    [[ -x $compose_dir/setup.sh || -f $compose_dir/setup.sh ]] || die "no $compose_dir/setup.sh to make the certificates and users"
    note "running $compose_dir/setup.sh (certificates and per-role users from .env)"
    bash "$compose_dir/setup.sh" || die "$compose_dir/setup.sh failed (message above): fix $env_file"
  fi
}

# ---------------------------------------------------------------- images
image_label() { pm image inspect --format "{{index .Labels \"$2\"}}" "$1" 2>/dev/null || true; }

ensure_base_image() {
  if pm image exists "$base_image"; then return 0; fi
  local t dir
  t=$(date +%s.%N)
  dir=$(mktemp -d "$state/rootfs.XXXXXX")
  note "debootstrap --variant=minbase bookworm (from $mirror; ~30 s to a few minutes, ~210 MB)"
  if ! debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$state/debootstrap.log" 2>&1; then
    tail -n 20 "$state/debootstrap.log" >&2
    rm -rf -- "$dir"
    die "debootstrap failed (log: $state/debootstrap.log); set SR_DEBIAN_MIRROR to a reachable Debian mirror"
  fi
  # Security and point-release updates too, for the images built on it.
  local security=${SR_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
    "$mirror" "$mirror" "$security" >"$dir/etc/apt/sources.list"
  rm -rf -- "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar -C "$dir" -c . | pm import --quiet - "$base_image" >/dev/null || { rm -rf -- "$dir"; die "podman import of the base image failed"; }
  rm -rf -- "$dir"
  note "base image $base_image ready ($(since "$t") s)"
}

# build_image NAME CONTEXT: builds CONTEXT/Containerfile unless the image carries the same content
# hash (Containerfile and every file beside it) — rebuilds exactly when something changed.
build_image() {
  local name=$1 ctx=$2 hash t
  hash=$(cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-32)
  if [[ $(image_label "$name" sr.content-hash) == "$hash" ]]; then return 0; fi
  t=$(date +%s.%N)
  note "building image $name"
  if ! pm build --network host --label "sr.content-hash=$hash" -t "$name" -f "$ctx/Containerfile" "$ctx" >"$ctx.log" 2>&1; then
    tail -n 30 "$ctx.log" >&2
    die "podman build of $name failed (log: $ctx.log)"
  fi
  note "image $name built ($(since "$t") s)"
}

ensure_rabbitmq_image() {
  local ctx=$state/images/rabbitmq
  mkdir -p "$ctx"
  # Debian's rabbitmq-server (3.10; compose.yaml names rabbitmq:3.13-management, which needs a
  # registry) with the management plugin like that image. No Erlang cookie in the image: the node
  # makes a random one in its data volume at first start.
  cat >"$ctx/Containerfile" <<EOF
FROM $base_image
RUN export DEBIAN_FRONTEND=noninteractive \\
 && apt-get -q update \\
 && apt-get -q install -y --no-install-recommends 'rabbitmq-server=3.10.*' \\
 && rm -rf /var/lib/apt/lists/* \\
 && rabbitmq-plugins enable --offline rabbitmq_management \\
 && rm -f /var/lib/rabbitmq/.erlang.cookie \\
 && mkdir -p /etc/rabbitmq/conf.d
# Logs to standard output (podman logs), like the official image.
ENV HOME=/var/lib/rabbitmq RABBITMQ_LOGS=- RABBITMQ_CONFIG_FILES=/etc/rabbitmq/conf.d
USER rabbitmq
WORKDIR /var/lib/rabbitmq
CMD ["/usr/lib/rabbitmq/bin/rabbitmq-server"]
EOF
  build_image "$rabbitmq_image" "$ctx"
}

ensure_project_image() {
  local image=$1 ctx=$state/images/project bin p t
  command -v swift >/dev/null || die "swift not found: install a Swift >= 6.2 toolchain (see README) to build the release binaries"
  t=$(date +%s.%N)
  note "swift build -c release --static-swift-stdlib (scratch path $build_dir; incremental)"
  for p in srproduce srconsume sraggregate; do
    (cd "$root" && swift build -c release --static-swift-stdlib --scratch-path "$build_dir" --product "$p") >"$state/swift-build.log" 2>&1 ||
      { tail -n 30 "$state/swift-build.log" >&2; die "swift build of $p failed (log: $state/swift-build.log)"; }
  done
  bin=$(cd "$root" && swift build -c release --static-swift-stdlib --scratch-path "$build_dir" --show-bin-path)
  note "release binaries ready ($(since "$t") s)"
  mkdir -p "$ctx"
  for p in srproduce srconsume sraggregate; do cp -p "$bin/$p" "$ctx/$p"; done
  # compose/Dockerfile's runtime stage (packages, user, store directory, environment), with the
  # host's binaries instead of the build stage's: one recipe for both paths.
  awk -v base="$base_image" '
    /^FROM \$\{RUNTIME_IMAGE\}/ { on = 1; print "FROM " base; next }
    on && /^COPY --from=build \/out\/srproduce \/out\/srconsume \/out\/sraggregate \/usr\/local\/bin\/$/ {
      print "COPY srproduce srconsume sraggregate /usr/local/bin/"; copied++; next }
    on { print }
    END { if (!on || copied != 1) exit 1 }
  ' "$compose_dir/Dockerfile" >"$ctx/Containerfile" ||
    die "compose/Dockerfile no longer has 'FROM \${RUNTIME_IMAGE}' and one 'COPY --from=build /out/srproduce /out/srconsume /out/sraggregate /usr/local/bin/': update ensure_project_image in $prog"
  build_image "$image" "$ctx"
}

# ---------------------------------------------------------------- containers
running() { [[ $(pm inspect --format '{{.State.Running}}' "$1" 2>/dev/null) == true ]]; }

# The broker's host-network settings, mounted after compose/rabbitmq.conf (conf.d is read in
# order, a later key wins): listeners on 127.0.0.1 only, on the host ports compose publishes.
rabbitmq_host_args() {
  local conf=$state/run/$project-rabbitmq-host.conf
  mkdir -p "$state/run"
  {
    echo "# scripts/compose-podman.sh: host networking, so the broker itself binds loopback only."
    echo "listeners.ssl.default = 127.0.0.1:$amqps_port"
    if [[ -n $mgmt_port ]]; then echo "management.tcp.ip = 127.0.0.1"; echo "management.tcp.port = $mgmt_port"; fi
  } >"$conf"
  chmod 644 "$conf"
  printf '%s\0' --volume "$conf:/etc/rabbitmq/conf.d/95-podman-host.conf:ro" \
    --env RABBITMQ_NODENAME=rabbit@rabbitmq \
    --env ERL_EPMD_ADDRESS=127.0.0.1 --env "ERL_EPMD_PORT=$epmd_port" --env "RABBITMQ_DIST_PORT=$dist_port" \
    --env "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1} +sbwt none +sbwtdcpu none +sbwtdio none" \
    --env "RABBITMQ_CTL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}"
}

port_in_use() { python3 -c 'import socket, sys; s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null && return 1 || return 0; }

# start NAME SERVICE [EXTRA podman args...]: (re)creates the container unless one with the same
# image and arguments already runs (like compose: unchanged services are left alone).
start_container() {
  local name=$1 svc=$2 hash image_id
  shift 2
  local args=() cmd=()
  mapfile -d '' args < <(args_of "$svc")
  mapfile -d '' cmd < <(command_of "$svc")
  args+=("$@")
  image_id=$(pm image inspect --format '{{.Id}}' "${svc_image[$svc]}")
  hash=$(printf '%s\0' "$image_id" "${args[@]}" "${cmd[@]}" | sha256sum | cut -c1-32)
  if running "$name" && [[ $(pm inspect --format '{{index .Config.Labels "sr.config-hash"}}' "$name") == "$hash" ]]; then
    note "$name: up to date, running"
    return 0
  fi
  if pm container exists "$name"; then
    note "$name: recreating (image or configuration changed, or stopped)"
    pm rm -f -t "${svc_grace[$svc]}" "$name" >/dev/null
  fi
  pm run -d --name "$name" --label "sr.config-hash=$hash" "${args[@]}" "${svc_image[$svc]}" "${cmd[@]}" >/dev/null ||
    die "podman run of $name failed"
  note "$name: started"
}

# Named volumes first, so podman copies the image's directory (and its owner) into them.
ensure_volumes() {
  local svc a
  for svc in "${services[@]}"; do
    local args=()
    mapfile -d '' args < <(args_of "$svc")
    for a in "${args[@]}"; do
      if [[ $a =~ ^(${project}_[A-Za-z0-9_.-]+):/ ]]; then
        pm volume exists "${BASH_REMATCH[1]}" || pm volume create --label "sr.compose-podman.project=$project" "${BASH_REMATCH[1]}" >/dev/null
      fi
    done
  done
}

wait_healthy() {
  local svc=$1 name budget deadline test=() t
  t=$(date +%s.%N)
  name=$(cname "$svc")
  mapfile -d '' test < <(health_of "$svc")
  ((${#test[@]})) || return 0
  budget=${svc_health_budget[$svc]}
  deadline=$(($(date +%s) + budget))
  note "$name: waiting for its healthcheck (${test[*]}; at most $budget s)"
  while :; do
    running "$name" || { pm logs --tail 40 "$name" >&2 || true; die "$name stopped while starting (its last log lines above)"; }
    if timeout 30 "${pm_cmd[@]}" exec "$name" "${test[@]}" >/dev/null 2>&1; then
      note "$name: healthy after $(since "$t") s"
      return 0
    fi
    if (($(date +%s) >= deadline)); then
      pm logs --tail 40 "$name" >&2 || true
      die "$name: not healthy after $budget s (start_period + interval x retries of its healthcheck); its last log lines above"
    fi
    sleep 1
  done
}

# A role is ready when its log says it consumes ("aggregating", "consuming").
wait_ready() {
  local name=$1 word=$2 deadline
  deadline=$(($(date +%s) + ready_timeout))
  while ! pm logs "$name" 2>&1 | grep -q "$word"; do
    running "$name" || { pm logs --tail 40 "$name" >&2 || true; die "$name exited while starting (its last log lines above)"; }
    (($(date +%s) < deadline)) || { pm logs --tail 40 "$name" >&2 || true; die "$name: no '$word' in its log after $ready_timeout s"; }
    sleep 0.5
  done
}

cmd_up() {
  local consumers="" no_build=0
  while (($#)); do
    case $1 in
      --consumers | --scale) (($# >= 2)) || die "$1 needs a number"; consumers=$2; shift 2 ;;
      --no-build) no_build=1; shift ;;
      *) die "up: unknown argument '$1'" ;;
    esac
  done
  [[ -z $consumers || $consumers =~ ^[0-9]+$ ]] || die "--consumers must be a number"
  need_root
  install_packages
  [[ -f $env_file ]] || die "no $env_file: cp $compose_dir/.env.example $env_file && chmod 600 $env_file, then set every password (openssl rand -hex 16)"
  ensure_secrets
  load_spec
  [[ -n ${svc_kind[rabbitmq]:-} ]] || die "compose.yaml has no rabbitmq service"
  consumers=${consumers:-${svc_replicas[consumer]:-1}}

  local p what
  if ! running "$(cname rabbitmq)"; then
    for p in "$amqps_port:amqps (SR_AMQPS_HOST_PORT)" "${mgmt_port:+$mgmt_port:management (SR_MGMT_HOST_PORT)}" \
      "$epmd_port:epmd (SR_PODMAN_EPMD_PORT)" "$dist_port:Erlang distribution (SR_PODMAN_DIST_PORT)"; do
      [[ -n $p ]] || continue
      what=${p#*:}
      if port_in_use "${p%%:*}"; then die "port ${p%%:*} on 127.0.0.1 is in use; choose another for $what in $env_file or the environment"; fi
    done
  fi

  ensure_base_image
  ensure_rabbitmq_image
  local svc built=""
  for svc in "${services[@]}"; do
    if [[ ${svc_kind[$svc]} == project && " $built " != *" ${svc_image[$svc]} "* ]]; then
      if ((no_build)) && pm image exists "${svc_image[$svc]}"; then
        note "--no-build: using the existing image ${svc_image[$svc]}"
      else
        ensure_project_image "${svc_image[$svc]}"
      fi
      built+=" ${svc_image[$svc]}"
    fi
  done
  ensure_volumes

  local host=()
  mapfile -d '' host < <(rabbitmq_host_args)
  start_container "$(cname rabbitmq)" rabbitmq "${host[@]}"
  wait_healthy rabbitmq
  local i n
  for svc in "${services[@]}"; do
    [[ $svc == rabbitmq || -n ${svc_profiles[$svc]} ]] && continue
    n=${svc_replicas[$svc]}
    [[ $svc == consumer ]] && n=$consumers
    for ((i = 1; i <= n; i++)); do start_container "$(cname "$svc" "$i")" "$svc"; done
    # Scaled down: remove replicas above n (ours by name).
    for ((i = n + 1; i <= 64; i++)); do
      pm container exists "$(cname "$svc" "$i")" || break
      pm rm -f -t "${svc_grace[$svc]}" "$(cname "$svc" "$i")" >/dev/null && note "$(cname "$svc" "$i"): removed (scaled to $n)"
    done
  done
  for ((i = 1; i <= ${svc_replicas[aggregator]:-0}; i++)); do wait_ready "$(cname aggregator "$i")" aggregating; done
  for ((i = 1; i <= consumers; i++)); do wait_ready "$(cname consumer "$i")" consuming; done
  note "up in $(since "$t0") s: broker amqps://rabbitmq:$amqps_port (127.0.0.1)${mgmt_port:+, management http://127.0.0.1:$mgmt_port/}, 1 aggregator, $consumers consumer(s)"
  note "next: $prog job --matrix A.npy --vector x.npy --out y.npy   |   $prog logs aggregator"
}

# One-off producer container: stdin and stdout pass through; removed afterwards (also on Ctrl-C).
run_producer() {
  local name args=() extra=()
  name=$(cname producer "run-$$-$RANDOM")
  mapfile -d '' args < <(args_of producer)
  while [[ ${1:-} == --volume ]]; do extra+=("$1" "$2"); shift 2; done
  running "$(cname rabbitmq)" || die "the broker $(cname rabbitmq) is not running: $prog up"
  trap 'pm rm -f -t 1 "'"$name"'" >/dev/null 2>&1 || true' EXIT
  pm run --rm -i --name "$name" "${args[@]}" "${extra[@]}" "${svc_image[producer]}" "$@"
}

cmd_run() {
  # -v HOST:CONTAINER[:ro] mounts this machine's files, like `docker compose run -v` (the
  # inference example of compose/README.md reads the model and images that way).
  local mounts=() spec host
  while (($#)); do
    case $1 in
      -v | --volume)
        spec=${2:?-v needs HOST:CONTAINER[:ro]}
        host=${spec%%:*}
        [[ -e $host ]] || die "run -v: $host does not exist on this machine"
        mounts+=(--volume "$(realpath -- "$host"):${spec#*:}")
        shift 2 ;;
      *) break ;;
    esac
  done
  (($#)) || die "run: which command? e.g. $prog run srproduce --help"
  need_root
  load_spec
  run_producer "${mounts[@]}" "$@"
}

cmd_job() {
  local matrix="" vector="" name=job deadline=30s out="" extra=()
  while (($#)); do
    case $1 in
      --matrix) matrix=${2:?--matrix needs a .npy file}; shift 2 ;;
      --vector) vector=${2:?--vector needs a .npy file}; shift 2 ;;
      --name) name=${2:?--name needs a name}; shift 2 ;;
      --deadline) deadline=${2:?--deadline needs a duration}; shift 2 ;;
      --out) out=${2:?--out needs a file}; shift 2 ;;
      --) shift; extra=("$@"); break ;;
      *) die "job: unknown argument '$1' (see --help)" ;;
    esac
  done
  [[ -f $matrix && -f $vector ]] || die "job needs --matrix A.npy and --vector x.npy (files on this machine)"
  need_root
  load_spec
  local t digest tmp
  t=$(date +%s.%N)
  # The producer container sees no file of this machine: A and x go in on standard input.
  digest=$(run_producer srproduce register "$name" --matrix - <"$matrix") || die "registering $matrix as '$name' failed (above)"
  note "registered $matrix as '$name' ($digest) in $(since "$t") s"
  t=$(date +%s.%N)
  tmp=$(mktemp "${out:-$state/y}.XXXXXX")
  local rc=0
  # y comes out on standard output (--out -); the refinement lines go to stderr.
  (run_producer srproduce matvec --matrix "$name" --vector - --deadline "$deadline" --wait --out - "${extra[@]}" <"$vector" >"$tmp") || rc=$?
  if ((rc != 0)); then rm -f -- "$tmp"; note "matvec exited with status $rc after $(since "$t") s"; exit "$rc"; fi
  if [[ -n $out ]]; then mv -f -- "$tmp" "$out"; note "y written to $out ($(stat -c %s "$out") bytes) in $(since "$t") s"; else rm -f -- "$tmp"; fi
}

cmd_logs() {
  local svc=aggregator opts=() name i
  while (($#)); do
    case $1 in
      -f | --follow) opts+=(--follow); shift ;;
      --tail) opts+=(--tail "${2:?--tail needs a number}"); shift 2 ;;
      -*) die "logs: unknown option '$1'" ;;
      *) svc=$1; shift ;;
    esac
  done
  need_root
  load_spec
  [[ -n ${svc_kind[$svc]:-} ]] || die "no service '$svc' (services: ${services[*]})"
  local names=()
  for ((i = 1; i <= 64; i++)); do pm container exists "$(cname "$svc" "$i")" || break; names+=("$(cname "$svc" "$i")"); done
  ((${#names[@]})) || die "no container of service '$svc' ($prog up starts them)"
  if ((${#names[@]} == 1)); then pm logs "${opts[@]}" "${names[0]}"; else pm logs --names "${opts[@]}" "${names[@]}"; fi
}

cmd_ps() {
  need_root
  load_spec
  pm ps -a --filter "label=sr.compose-podman.project=$project" --format '{{.Names}}\t{{.Status}}\t{{.Image}}'
}

cmd_down() {
  local volumes=0 purge=0
  while (($#)); do
    case $1 in
      -v | --volumes) volumes=1 ;;
      --purge) purge=1 volumes=1 ;;
      *) die "down: unknown argument '$1'" ;;
    esac
    shift
  done
  need_root
  command -v podman >/dev/null || { note "podman is not installed: nothing to stop"; return 0; }
  load_spec
  local i svc name n=0
  # Reverse start order: roles first (each gets its grace period to finish or requeue), broker last.
  for ((i = ${#services[@]} - 1; i >= 0; i--)); do
    svc=${services[i]}
    while read -r name; do
      [[ -n $name ]] || continue
      pm rm -f -t "${svc_grace[$svc]}" "$name" >/dev/null && n=$((n + 1))
    done < <(pm ps -a --filter "label=sr.compose-podman.project=$project" --filter "label=sr.compose-podman.service=$svc" --format '{{.Names}}')
  done
  note "removed $n container(s) of project $project"
  if ((volumes)); then
    while read -r name; do
      [[ -n $name ]] || continue
      pm volume rm -f "$name" >/dev/null && note "removed volume $name"
    done < <(pm volume ls --filter "label=sr.compose-podman.project=$project" --format '{{.Name}}')
  fi
  if ((purge)); then
    local others
    others=$(pm ps -a --format '{{.Names}}' | wc -l)
    ((others == 0)) || die "--purge: the private store still holds $others container(s) of other projects (SR_PODMAN_STATE=$state); down those first"
    pm system reset --force >/dev/null 2>&1 || true
    rm -rf -- "$state" "$run_base"
    note "removed the private image store $state"
  fi
}

cmd_config() {
  local envf=$env_file
  [[ -f $envf ]] || die "no $envf (cp $compose_dir/.env.example $envf and set the passwords)"
  # Passwords masked: this output is for reading and for logs.
  translate "$envf" | sed -E 's#(amqps?://[^:/@]+:)[^@]*@#\1***@#g'
}

case $command in
  up) cmd_up "$@" ;;
  job) cmd_job "$@" ;;
  run) cmd_run "$@" ;;
  logs) cmd_logs "$@" ;;
  ps) cmd_ps ;;
  down) cmd_down "$@" ;;
  config) cmd_config ;;
esac

#!/usr/bin/env bash
# Validates compose/compose.yaml without a Docker engine (CI has none).
#
#   scripts/validate-compose.sh [COMPOSE_FILE]
#
# 1. `docker-compose config -q` (Compose v1.29, Debian package docker-compose; `docker compose` v2
#    is used when v1 is absent) with the variables of compose/.env.example, its empty passwords
#    filled with random ones: catches YAML errors,
#    unknown keys, wrong types, undefined services/volumes and missing build contexts.
# 2. Checks on the resolved configuration: the four services exist, published ports bind to
#    127.0.0.1 only, no plain AMQP port, no guest credentials, each role reaches the broker over
#    amqps as its own user (sr-producer, sr-consumer, sr-aggregator) and verifies it with the CA,
#    the broker takes TLS only (rabbitmq.conf) and loads the per-role definitions, the app services
#    wait for a healthy broker.
# 3. With NO credentials available — and with .env.example as it ships — the file must be
#    rejected, naming the missing variable: credentials are required, never defaulted.
# 4. compose/setup.sh refuses .env.example as it ships and, given real passwords,
#    writes certificates and definitions; with SR_RABBITMQ_DIR (a node of
#    scripts/rabbitmq-start.sh, as scripts/test.sh runs) the definitions are imported there and
#    every role's password must authenticate with exactly the permissions rabbitmq-users.sh gives.
# 5. scripts/compose-podman.sh (the same deployment with podman, no Docker engine) translates the
#    resolved file: it refuses any key it has no podman translation for, so the two stay in sync.
# The caller's environment and any real compose/.env are ignored, so the result does not depend on
# who runs it. Exit status non-zero on any failure.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
file=$(realpath -- "${1:-$root/compose/compose.yaml}")
example=$root/compose/.env.example

fail() { printf 'validate-compose: FAIL: %s\n' "$*" >&2; exit 1; }
note() { printf 'validate-compose: %s\n' "$*" >&2; }

[[ -f $file ]] || fail "no compose file at $file"
[[ -f $example ]] || fail "missing $example (the committed template of compose/.env)"

if command -v docker-compose >/dev/null; then
  compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  fail "neither docker-compose nor 'docker compose' found; install: apt-get install -y --no-install-recommends docker-compose"
fi
note "using $("${compose[@]}" version --short 2>/dev/null || echo "${compose[*]}") on $file"

# Run compose with a clean slate: none of the variables compose.yaml reads may come from the
# caller's shell (e.g. a sourced .rabbitmq/*/env), and --env-file replaces any real compose/.env.
hermetic=(env -u SR_PRODUCER_PASSWORD -u SR_CONSUMER_PASSWORD -u SR_AGGREGATOR_PASSWORD -u SR_ADMIN_PASSWORD
  -u SR_MONITOR_PASSWORD -u SR_RABBITMQ_VHOST -u SR_AMQPS_HOST_PORT -u SR_AMQP_HOST_PORT
  -u SR_MGMT_HOST_PORT -u SR_AGGREGATOR_METRICS_HOST_PORT -u COMPOSE_PROJECT_NAME -u COMPOSE_FILE -u COMPOSE_PROFILES -u COMPOSE_PATH_SEPARATOR)
run_compose() { "${hermetic[@]}" "${compose[@]}" "$@"; }

tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT

# .env.example ships empty passwords (nothing usable); the checks of a working file fill them.
filled=$tmp/filled.env
cp "$example" "$filled"
for role in PRODUCER CONSUMER AGGREGATOR ADMIN MONITOR; do
  grep -q "^SR_${role}_PASSWORD=\$" "$filled" || fail "$example must ship SR_${role}_PASSWORD empty (no usable default password)"
  sed -i "s/^SR_${role}_PASSWORD=\$/SR_${role}_PASSWORD=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')/" "$filled"
done

# ---------------------------------------------------------------- 1. schema
if ! run_compose --env-file "$filled" -f "$file" config -q 2>"$tmp/err"; then
  cat "$tmp/err" >&2
  fail "compose config rejected $file"
fi
note "ok: config -q with the variables of compose/.env.example (passwords filled)"

# ---------------------------------------------------------------- 2. resolved configuration
run_compose --env-file "$filled" -f "$file" --profile tools config >"$tmp/resolved.yaml" 2>"$tmp/err" ||
  { cat "$tmp/err" >&2; fail "compose config (resolved) failed"; }
services=$(run_compose --env-file "$filled" -f "$file" --profile tools config --services 2>/dev/null | sort | tr '\n' ' ')
for s in rabbitmq aggregator consumer producer; do
  [[ " $services" == *" $s "* ]] || fail "service '$s' missing (services: $services)"
done
note "ok: services $services"

# PyYAML ships with docker-compose v1 (python3-yaml); use whichever python3 has it.
py=""
for candidate in python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import yaml' 2>/dev/null; then py=$candidate; break; fi
done
if [[ -z $py ]]; then
  note "skipped semantic checks: no python3 with PyYAML (apt-get install -y python3-yaml)"
else
  "$py" - "$tmp/resolved.yaml" <<'PY' || fail "semantic checks on the resolved configuration"
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
services = cfg["services"]
problems = []
for name, svc in services.items():
    for port in svc.get("ports", []):
        # short syntax "127.0.0.1:5672:5672/tcp" (v1) or long syntax with host_ip (v2)
        host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0] if str(port).count(":") >= 2 else None
        if host_ip != "127.0.0.1":
            problems.append(f"{name}: port {port!r} is not bound to 127.0.0.1")
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    for key, value in env.items():
        if "guest" in str(value) and ("USER" in key or "PASS" in key or "URL" in key):
            problems.append(f"{name}: {key} uses guest credentials")
rmq = services.get("rabbitmq", {})
if "healthcheck" not in rmq:
    problems.append("rabbitmq: no healthcheck")
for port in rmq.get("ports", []):
    target = port.get("target") if isinstance(port, dict) else str(port).split(":")[-1].split("/")[0]
    if str(target) == "5672":
        problems.append("rabbitmq: the plain AMQP port 5672 is published; roles use amqps (5671) only")
mounts = " ".join(str(v.get("source", "") + ":" + v.get("target", "")) if isinstance(v, dict) else str(v) for v in rmq.get("volumes", []))
for needed in ("/etc/rabbitmq/secrets", "rabbitmq.conf"):
    if needed not in mounts:
        problems.append(f"rabbitmq: {needed} is not mounted")
for name in ("aggregator", "consumer", "producer"):
    dep = (services.get(name, {}).get("depends_on") or {}).get("rabbitmq", {})
    if not isinstance(dep, dict) or dep.get("condition") != "service_healthy":
        problems.append(f"{name}: must depend on rabbitmq with condition service_healthy")
    env = services.get(name, {}).get("environment") or {}
    url = str(env.get("SR_AMQP_URL", ""))
    if not url.startswith(f"amqps://sr-{name}:") or ":5671/" not in url:
        problems.append(f"{name}: SR_AMQP_URL must be amqps://sr-{name}:…@rabbitmq:5671/… (its own user, TLS), is {url.split('@')[0].split(':')[0]}://…")
    if env.get("SR_AMQP_CACERT") != "/run/sr/ca.pem":
        problems.append(f"{name}: SR_AMQP_CACERT must name the mounted CA /run/sr/ca.pem")
for p in problems:
    print("  " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
  note "ok: ports on 127.0.0.1 only, amqps only, one user per role, no guest credentials, app services wait for a healthy broker"
fi

# ---------------------------------------------------------------- 3. credentials are required
: >"$tmp/empty.env"
if run_compose --env-file "$tmp/empty.env" -f "$file" config -q 2>"$tmp/err"; then
  fail "$file is accepted without SR_RABBITMQ_USER/SR_RABBITMQ_PASSWORD: credentials must be required"
fi
grep -q 'SR_[A-Z]*_PASSWORD' "$tmp/err" ||
  { cat "$tmp/err" >&2; fail "without credentials compose failed, but not because of the missing credentials"; }
note "ok: without credentials compose refuses: $(grep -o 'set SR_[A-Z]*_PASSWORD in compose/.env' "$tmp/err" | head -n1)"
if run_compose --env-file "$example" -f "$file" config -q 2>"$tmp/err"; then
  fail "$file is accepted with .env.example as it ships: the example must not carry usable passwords"
fi
grep -q 'SR_[A-Z]*_PASSWORD' "$tmp/err" || { cat "$tmp/err" >&2; fail "with .env.example compose failed, but not because of the missing passwords"; }
note "ok: .env.example as it ships is refused too (no usable default password)"

# ---------------------------------------------------------------- 4. setup.sh, TLS and users
conf=$root/compose/rabbitmq.conf
grep -qx 'listeners.tcp = none' "$conf" || fail "$conf must disable the plain listener (listeners.tcp = none)"
grep -q '^listeners.ssl.default = 5671' "$conf" || fail "$conf must listen for TLS on 5671"
grep -q '^load_definitions = /etc/rabbitmq/secrets/definitions.json' "$conf" || fail "$conf must load the per-role definitions"
# A scratch copy of compose/, so a real compose/.env and compose/secrets/ are never touched.
mkdir -p "$tmp/copy/compose" "$tmp/copy/scripts"
cp "$root/compose/setup.sh" "$file" "$root/compose/Dockerfile" "$conf" "$tmp/copy/compose/"
cp "$root/scripts/rabbitmq-users.sh" "$root/scripts/rabbitmqctl.sh" "$tmp/copy/scripts/"
cp "$example" "$tmp/copy/compose/.env"
if "${hermetic[@]}" bash "$tmp/copy/compose/setup.sh" >"$tmp/setup.out" 2>&1; then
  fail "compose/setup.sh accepted .env.example as it ships"
fi
grep -q 'not set\|placeholder\|at least 16' "$tmp/setup.out" || { cat "$tmp/setup.out" >&2; fail "setup.sh failed for another reason than the missing passwords"; }
cp "$filled" "$tmp/copy/compose/.env"
"${hermetic[@]}" bash "$tmp/copy/compose/setup.sh" >"$tmp/setup.out" 2>&1 || { cat "$tmp/setup.out" >&2; fail "compose/setup.sh failed with real passwords"; }
for f in ca.pem server.pem server.key definitions.json; do
  [[ -s $tmp/copy/compose/secrets/$f ]] || fail "setup.sh did not write secrets/$f"
done
openssl verify -CAfile "$tmp/copy/compose/secrets/ca.pem" "$tmp/copy/compose/secrets/server.pem" >/dev/null ||
  fail "the server certificate does not verify against the CA"
openssl x509 -in "$tmp/copy/compose/secrets/server.pem" -noout -ext subjectAltName | grep -q 'DNS:rabbitmq' ||
  fail "the server certificate does not name the host 'rabbitmq'"
note "ok: setup.sh refuses .env.example as it ships; writes a CA, a server certificate for 'rabbitmq' and definitions"
if [[ -n ${SR_RABBITMQ_DIR:-} && -f ${SR_RABBITMQ_DIR}/env ]]; then
  defs=$tmp/copy/compose/secrets/definitions.json
  bash "$root/scripts/rabbitmqctl.sh" "$SR_RABBITMQ_DIR" -q import_definitions "$defs" >/dev/null
  # shellcheck source=/dev/null
  . "$tmp/copy/compose/.env"
  for role in producer consumer aggregator; do
    var=SR_${role^^}_PASSWORD
    ok=""
    for _ in $(seq 50); do  # the import is asynchronous; bounded wait for the user to exist
      if bash "$root/scripts/rabbitmqctl.sh" "$SR_RABBITMQ_DIR" -q authenticate_user "sr-$role" "${!var}" >/dev/null 2>&1; then ok=1; break; fi
      sleep 0.2
    done
    [[ -n $ok ]] || fail "sr-$role does not authenticate with its password after importing the definitions"
    bash "$root/scripts/rabbitmqctl.sh" "$SR_RABBITMQ_DIR" -q authenticate_user "sr-$role" wrong-password >/dev/null 2>&1 &&
      fail "sr-$role authenticates with a wrong password"
  done
  perms=$(bash "$root/scripts/rabbitmqctl.sh" "$SR_RABBITMQ_DIR" -q list_user_permissions sr-consumer | awk '$1 == "sr"')
  [[ $perms == *'^amq\.gen-.+$'*'^(sr\.(partial|dlx)|amq\.gen-.+)$'*'^(sr\.(tasks|done)|amq\.gen-.+)$'* ]] || fail "sr-consumer's permissions on vhost sr are not the least ones: $perms"
  note "ok: the definitions load into RabbitMQ; each role authenticates with its own password and has only its permissions"
fi

# ---------------------------------------------------------------- 5. the podman translation
# Same file, run without Docker (scripts/compose-podman.sh): every key must have a translation.
if [[ -n $py ]]; then
  env -u SR_PODMAN_EPMD_PORT -u SR_PODMAN_DIST_PORT bash "$root/scripts/compose-podman.sh" --compose-dir "$tmp/copy/compose" config \
    >"$tmp/podman.spec" 2>"$tmp/err" || { cat "$tmp/err" >&2; fail "scripts/compose-podman.sh cannot translate $file (teach its translate())"; }
  grep -q '^services=(rabbitmq aggregator consumer producer)$' "$tmp/podman.spec" ||
    { cat "$tmp/podman.spec" >&2; fail "the podman translation does not start the broker first, then aggregator, consumer, producer"; }
  grep -q "SR_AMQP_URL=amqps://sr-consumer:\*\*\*@rabbitmq:5671/sr" "$tmp/podman.spec" ||
    { cat "$tmp/podman.spec" >&2; fail "the podman translation does not keep the consumer's amqps URL (passwords masked)"; }
  note "ok: scripts/compose-podman.sh translates every service for podman"
else
  note "skipped the podman translation check: no python3 with PyYAML"
fi

note "PASS: $file"

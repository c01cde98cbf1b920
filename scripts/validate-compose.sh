#!/usr/bin/env bash
# Validates compose/compose.yaml without a Docker engine (CI has none).
#
#   scripts/validate-compose.sh [COMPOSE_FILE]
#
# 1. `docker-compose config -q` (Compose v1.29, Debian package docker-compose; `docker compose` v2
#    is used when v1 is absent) with the variables of compose/.env.example: catches YAML errors,
#    unknown keys, wrong types, undefined services/volumes and missing build contexts.
# 2. Checks on the resolved configuration: the four services exist, published ports bind to
#    127.0.0.1 only, no guest credentials, the app services wait for a healthy broker.
# 3. With NO credentials available the file must be rejected, naming the missing variable:
#    credentials are required, never defaulted.
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
hermetic=(env -u SR_RABBITMQ_USER -u SR_RABBITMQ_PASSWORD -u SR_RABBITMQ_VHOST -u SR_AMQP_HOST_PORT
  -u SR_MGMT_HOST_PORT -u COMPOSE_PROJECT_NAME -u COMPOSE_FILE -u COMPOSE_PROFILES -u COMPOSE_PATH_SEPARATOR)
run_compose() { "${hermetic[@]}" "${compose[@]}" "$@"; }

tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT

# ---------------------------------------------------------------- 1. schema
if ! run_compose --env-file "$example" -f "$file" config -q 2>"$tmp/err"; then
  cat "$tmp/err" >&2
  fail "compose config rejected $file"
fi
note "ok: config -q with the variables of compose/.env.example"

# ---------------------------------------------------------------- 2. resolved configuration
run_compose --env-file "$example" -f "$file" --profile tools config >"$tmp/resolved.yaml" 2>"$tmp/err" ||
  { cat "$tmp/err" >&2; fail "compose config (resolved) failed"; }
services=$(run_compose --env-file "$example" -f "$file" --profile tools config --services 2>/dev/null | sort | tr '\n' ' ')
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
for name in ("aggregator", "consumer", "producer"):
    dep = (services.get(name, {}).get("depends_on") or {}).get("rabbitmq", {})
    if not isinstance(dep, dict) or dep.get("condition") != "service_healthy":
        problems.append(f"{name}: must depend on rabbitmq with condition service_healthy")
    if "SR_AMQP_URL" not in (services.get(name, {}).get("environment") or {}):
        problems.append(f"{name}: SR_AMQP_URL not set")
for p in problems:
    print("  " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
  note "ok: ports on 127.0.0.1 only, no guest credentials, app services wait for a healthy broker"
fi

# ---------------------------------------------------------------- 3. credentials are required
: >"$tmp/empty.env"
if run_compose --env-file "$tmp/empty.env" -f "$file" config -q 2>"$tmp/err"; then
  fail "$file is accepted without SR_RABBITMQ_USER/SR_RABBITMQ_PASSWORD: credentials must be required"
fi
grep -q 'SR_RABBITMQ_\(USER\|PASSWORD\)' "$tmp/err" ||
  { cat "$tmp/err" >&2; fail "without credentials compose failed, but not because of the missing credentials"; }
note "ok: without credentials compose refuses: $(grep -o 'set SR_RABBITMQ_[A-Z]* in compose/.env' "$tmp/err" | head -n1)"

note "PASS: $file"

#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this) and as the README says:
# installs missing system packages, checks the target graph, builds with warnings as errors,
# starts a private RabbitMQ on 127.0.0.1, runs unit and integration tests, fuzzes every decoder
# briefly, validates the compose file and stops the broker it started (and only that one).
# SR_TEST_PODMAN=1 also runs scripts/test-compose-podman.sh (compose under podman; not in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
started=$(date +%s)

step() { echo; echo "==> $* ($(( $(date +%s) - started )) s)"; }

step "system packages"
bash scripts/install-system-deps.sh

step "real image data (pinned, checksummed; skipped when present)"
bash scripts/fetch-data.sh

step "architecture (forbidden arrows between targets; docs/ARCHITECTURE.md)"
bash scripts/check-architecture.sh
bash scripts/check-architecture.sh --self-test | tail -n 1

step "build (debug, tests included; warnings are errors)"
swift build --build-tests
# The CLI tests run the executables built here.
SR_BIN_DIR=$(swift build --show-bin-path)
export SR_BIN_DIR

broker_dir=""
cleanup() {
  if [[ -n "$broker_dir" && -d "$broker_dir" ]]; then
    step "stopping the private RabbitMQ"
    bash scripts/rabbitmq-stop.sh "$broker_dir" || echo "warning: could not stop the broker in $broker_dir"
  fi
}
trap cleanup EXIT

if [[ -x scripts/rabbitmq-start.sh || -f scripts/rabbitmq-start.sh ]]; then
  step "private RabbitMQ"
  broker_dir="$root/.rabbitmq/test-$$"
  env_file=$(SR_RABBITMQ_DIR="$broker_dir" bash scripts/rabbitmq-start.sh --management --tls | tail -n 1)
  # shellcheck disable=SC1090
  source "$env_file"
  export SR_AMQP_URL SR_RABBITMQ_DIR SR_AMQPS_URL SR_AMQP_CACERT SR_AMQP_CLIENT_CERT SR_AMQP_CLIENT_KEY
  # Integration tests fail (not skip) when the broker is missing in this run.
  export SR_REQUIRE_BROKER=1
  echo "broker: $SR_AMQP_URL"
fi

step "tests (unit + integration)"
# One test at a time in CI (the suite also passes in parallel — `swift test` — but serial runs
# keep CI's wall time predictable on 2 cores).
swift test --skip-build --no-parallel

step "local pool (scripts/local-pool.sh with metrics ports, on the private broker)"
bash scripts/test-local-pool.sh

step "fuzz (libFuzzer + ASan: regressions replayed, then 10 s per target; Fuzz/README.md)"
# After the tests, never beside them: two fuzzers take both cores.
bash scripts/fuzz.sh --seconds 10 --jobs 2

if [[ -f compose/compose.yaml ]]; then
  step "compose file"
  bash scripts/validate-compose.sh
fi

# Opt-in (not in CI): the compose deployment for real under podman — installs podman, builds
# images and release binaries on a cold machine (~15 min on 2 cores), then ~2 min per run.
if [[ ${SR_TEST_PODMAN:-0} == 1 ]]; then
  step "compose deployment under podman (SR_TEST_PODMAN=1)"
  bash scripts/test-compose-podman.sh
fi

step "all passed in $(( $(date +%s) - started )) s"

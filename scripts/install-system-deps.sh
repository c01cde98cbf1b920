#!/usr/bin/env bash
# Installs the Debian packages this project needs, skipping what is already there.
# Used by scripts/test.sh (and so by CI) on a fresh machine; safe to run repeatedly.
set -euo pipefail

packages=(pkg-config librabbitmq-dev libopenblas-dev libssl-dev rabbitmq-server)
# docker-compose (v1) validates compose/compose.yaml without a Docker engine.
packages+=(docker-compose)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# numpy: the independent reference of the cross-check tests (pinned; skipped if present).
if ! python3 -c "import numpy" 2>/dev/null; then
  echo "python: installing numpy"
  python3 -m pip install --quiet "numpy==2.4.6" || echo "warning: numpy unavailable; the numpy cross-check will be skipped"
fi

# pika: the third-party AMQP client of the wire-format interoperability test (docs/WIRE.md).
if ! python3 -c "import pika" 2>/dev/null; then
  echo "python: installing pika"
  python3 -m pip install --quiet "pika==1.4.4" || echo "warning: pika unavailable; the pika interop test will fail"
fi

if ((${#missing[@]} == 0)); then
  echo "system packages: all present (${packages[*]})"
  exit 0
fi

echo "system packages: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

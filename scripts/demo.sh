#!/usr/bin/env bash
# The README's first command: installs missing system packages, builds in release mode and
# runs the embedded demo (no broker needed). Extra arguments go to `srproduce demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
swift build -c release --product srproduce
exec .build/release/srproduce demo "$@"

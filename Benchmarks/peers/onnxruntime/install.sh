#!/usr/bin/env bash
# Creates (or reuses) the virtualenv <repo>/.venv-ort with ONNX Runtime and numpy only (CPU),
# every package pinned by version and SHA-256 (requirements.txt): the light ONNX Runtime peer of
# Benchmarks/neural-vs-onnxruntime.sh, without torch (Benchmarks/peers/torch has the heavy venv
# that trains and exports the model). Idempotent: when every pin is installed it does nothing.
# Progress goes to stderr; the LAST line of stdout is the venv's python, so
# `py=$(Benchmarks/peers/onnxruntime/install.sh | tail -n 1)` works.
#
#   Benchmarks/peers/onnxruntime/install.sh [--python python3]
#
# The hashes are of the CPython 3.11 / Linux x86_64 wheels (PyPI); another Python or platform
# makes pip refuse the install with a hash mismatch — give --python a CPython 3.11.
# SR_ORT_VENV overrides the venv's location.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
venv=${SR_ORT_VENV:-$root/.venv-ort}
req=$here/requirements.txt
base_python=python3
while (($#)); do
  case $1 in
    --python) base_python=$2; shift ;;
    *) echo "install.sh: unknown argument '$1'" >&2; exit 64 ;;
  esac
  shift
done
note() { printf 'onnxruntime/install: %s\n' "$*" >&2; }

py=$venv/bin/python
# True when every "name==version" of requirements.txt is installed in the venv.
satisfied() {
  [[ -x $py ]] || return 1
  "$py" - "$req" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
bad = []
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if "==" not in line:
        continue
    name, rest = line.split("==")
    want = rest.split()[0].rstrip("\\").strip()
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have != want:
        bad.append(f"{name} {have or 'missing'} (want {want})")
if bad:
    print("onnxruntime/install: not yet: " + ", ".join(bad), file=sys.stderr)
    sys.exit(1)
PY
}

if satisfied 2>/dev/null; then
  note "$venv already has every pinned package"
else
  if [[ ! -x $py ]]; then
    "$base_python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
      || note "warning: $base_python is not CPython 3.11; the pinned hashes are of 3.11 wheels"
    note "creating $venv"
    "$base_python" -m venv "$venv"
  fi
  note "installing $(grep -c '^[a-z].*==' "$req") hash-pinned packages into $venv"
  "$py" -m pip install --quiet --disable-pip-version-check --only-binary=:all: --require-hashes -r "$req" >&2
  satisfied || { note "error: the venv still differs from requirements.txt"; exit 1; }
  "$py" -c 'import onnxruntime as ort; assert "CPUExecutionProvider" in ort.get_available_providers()' \
    || { note "error: onnxruntime is installed but has no CPU execution provider"; exit 1; }
fi
printf '%s\n' "$py"

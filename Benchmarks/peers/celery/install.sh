#!/usr/bin/env bash
# Creates (or reuses) the peer-benchmark virtualenv <repo>/.venv-peers with exactly the pinned
# packages of requirements.txt (Celery 5.7, numpy, matplotlib). Idempotent: when every pinned
# version is already installed it does nothing. Progress goes to stderr; the LAST line of stdout
# is the venv's python, so `py=$(Benchmarks/peers/celery/install.sh | tail -n 1)` works.
#
#   Benchmarks/peers/celery/install.sh [--python python3] [--with-onnxruntime]
#
# --with-onnxruntime also installs ONNX Runtime into the same venv, from
# Benchmarks/peers/onnxruntime/requirements.txt (the same versions and SHA-256 hashes as the
# .venv-ort peer, --require-hashes, binary wheels only; its numpy and packaging pins equal
# ours): the Celery workers of Benchmarks/deadline-curve-infer.sh classify with it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
venv=${SR_PEERS_VENV:-$root/.venv-peers}
req=$here/requirements.txt
ort_req=$here/../onnxruntime/requirements.txt
base_python=python3
with_ort=0
while (($#)); do
  case $1 in
    --python) base_python=$2; shift ;;
    --with-onnxruntime) with_ort=1 ;;
    *) echo "install.sh: unknown argument '$1'" >&2; exit 64 ;;
  esac
  shift
done
note() { printf 'peers/install: %s\n' "$*" >&2; }

py=$venv/bin/python
reqs=("$req")
if ((with_ort)); then reqs+=("$ort_req"); fi
# True when every "name==version" line of the requirement files is installed in the venv
# (a hash-pinned line reads "name==version \", its hashes on the lines after it).
satisfied() {
  [[ -x $py ]] || return 1
  "$py" - "${reqs[@]}" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
bad = []
for line in (l for path in sys.argv[1:] for l in open(path)):
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
    print("peers/install: not yet: " + ", ".join(bad), file=sys.stderr)
    sys.exit(1)
PY
}

if satisfied 2>/dev/null; then
  note "$venv already has every pinned package"
else
  if [[ ! -x $py ]]; then
    note "creating $venv"
    "$base_python" -m venv "$venv"
  fi
  note "installing $(grep -c '^[^#].*==' "$req") pinned packages into $venv"
  "$py" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
  if ((with_ort)); then
    note "installing ONNX Runtime from $ort_req (hash-pinned)"
    "$py" -m pip install --quiet --disable-pip-version-check --only-binary=:all: --require-hashes -r "$ort_req" >&2
  fi
  satisfied || { note "error: the venv still differs from ${reqs[*]}"; exit 1; }
  if ((with_ort)); then
    "$py" -c 'import onnxruntime as ort; assert "CPUExecutionProvider" in ort.get_available_providers()' \
      || { note "error: onnxruntime is installed but has no CPU execution provider"; exit 1; }
  fi
fi
printf '%s\n' "$py"

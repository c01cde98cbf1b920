#!/usr/bin/env bash
# Creates (or reuses) the peer-benchmark virtualenv <repo>/.venv-peers with exactly the pinned
# packages of requirements.txt (Celery 5.7, numpy, matplotlib). Idempotent: when every pinned
# version is already installed it does nothing. Progress goes to stderr; the LAST line of stdout
# is the venv's python, so `py=$(Benchmarks/peers/celery/install.sh | tail -n 1)` works.
#
#   Benchmarks/peers/celery/install.sh [--python python3]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
venv=${SR_PEERS_VENV:-$root/.venv-peers}
req=$here/requirements.txt
base_python=python3
while (($#)); do
  case $1 in
    --python) base_python=$2; shift ;;
    *) echo "install.sh: unknown argument '$1'" >&2; exit 64 ;;
  esac
  shift
done
note() { printf 'peers/install: %s\n' "$*" >&2; }

py=$venv/bin/python
# True when every "name==version" line of requirements.txt is installed in the venv.
satisfied() {
  [[ -x $py ]] || return 1
  "$py" - "$req" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
bad = []
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, want = line.split("==")
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
  satisfied || { note "error: the venv still differs from requirements.txt"; exit 1; }
fi
printf '%s\n' "$py"

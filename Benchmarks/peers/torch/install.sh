#!/usr/bin/env bash
# Creates (or reuses) the virtualenv <repo>/.venv-torch with CPU PyTorch, onnx and onnxruntime at
# pinned versions and hashes: the ONNX Runtime inference peer and the venv of scripts/train-vgg.sh.
# Idempotent: when every pin is already installed it does nothing. Progress goes to stderr; the
# LAST line of stdout is the venv's python, so `py=$(Benchmarks/peers/torch/install.sh | tail -n 1)`.
#
#   Benchmarks/peers/torch/install.sh [--python python3] [--allow-cuda-build]
#
# torch 2.13.0+cpu (the CPU-only build, a 183 MiB wheel, pinned by SHA-256) comes from pip's
# configured find-links (this machine's pip.conf names /opt/wheels, which holds it), from
# $SR_TORCH_WHEELS (a folder), or from the PyTorch CPU wheel index when that answers (it does not
# from this workplace: only Debian and PyPI are reachable). PyPI has no CPU-only Linux torch: its
# torch==2.13.0 (502 MiB) is the CUDA 13 build, and without its nvidia-*/cuda-toolkit dependencies
# (several GiB) `import torch` fails (libcudart.so.13, then libcublasLt, not found; measured here).
# So without the +cpu wheel the script stops, unless --allow-cuda-build asks for PyPI's torch with
# all its dependencies (their hashes unchecked). The rest (requirements.txt) comes from PyPI with
# --require-hashes; the hashes are of the CPython 3.11 / Linux x86_64 wheels.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
venv=${SR_TORCH_VENV:-$root/.venv-torch}
req=$here/requirements.txt
base_python=python3
allow_cuda=0
while (($#)); do
  case $1 in
    --python) base_python=$2; shift ;;
    --allow-cuda-build) allow_cuda=1 ;;
    *) echo "install.sh: unknown argument '$1'" >&2; exit 64 ;;
  esac
  shift
done
note() { printf 'torch/install: %s\n' "$*" >&2; }

torch_version=2.13.0
torch_cpu_sha256=6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b   # +cpu, cp311
cpu_index=https://download.pytorch.org/whl/cpu

py=$venv/bin/python
# True when torch 2.13.0 (either build) and every "name==version" of requirements.txt is installed.
satisfied() {
  [[ -x $py ]] || return 1
  "$py" - "$req" "$torch_version" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
pins = {}
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if "==" in line:
        name, rest = line.split("==")
        pins[name] = rest.split()[0]
bad = []
for name, want in pins.items():
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have != want:
        bad.append(f"{name} {have or 'missing'} (want {want})")
try:
    have = version("torch")
except PackageNotFoundError:
    have = None
if have is None or have.split("+")[0] != sys.argv[2]:
    bad.append(f"torch {have or 'missing'} (want {sys.argv[2]})")
if bad:
    print("torch/install: not yet: " + ", ".join(bad), file=sys.stderr)
    sys.exit(1)
PY
}

pip_install() { "$py" -m pip install --quiet --disable-pip-version-check --only-binary=:all: "$@" >&2; }

# Installs torch 2.13.0 from the first source that has it (see the header).
install_torch() {
  local tmp=$1 links=() t0=$SECONDS
  [[ -n ${SR_TORCH_WHEELS:-} ]] && links+=(--find-links "$SR_TORCH_WHEELS")
  if "$py" -c "import urllib.request as u; u.urlopen('$cpu_index/torch/', timeout=5)" 2>/dev/null; then
    links+=(--extra-index-url "$cpu_index")
  fi
  printf 'torch==%s+cpu --hash=sha256:%s\n' "$torch_version" "$torch_cpu_sha256" >"$tmp/cpu.txt"
  if pip_install --no-deps --require-hashes "${links[@]}" -r "$tmp/cpu.txt" 2>"$tmp/cpu.err"; then
    note "torch $torch_version+cpu installed ($((SECONDS - t0)) s)"
    return
  fi
  note "torch $torch_version+cpu is not available here: $(tail -n 1 "$tmp/cpu.err")"
  if ((!allow_cuda)); then
    note "error: put torch-$torch_version+cpu-cp311-cp311-manylinux_2_28_x86_64.whl (sha256"
    note "  $torch_cpu_sha256) in a folder and set SR_TORCH_WHEELS to it, or run again with"
    note "  --allow-cuda-build to install PyPI's CUDA build with its several GiB of dependencies"
    exit 1
  fi
  note "installing PyPI's torch==$torch_version with its CUDA dependencies (several GiB)"
  # No find-links here: the local +cpu wheel would be taken for torch==2.13.0.
  PIP_FIND_LINKS= PIP_CONFIG_FILE=/dev/null pip_install "torch==$torch_version"
  note "torch $torch_version (PyPI, CUDA build) installed ($((SECONDS - t0)) s)"
}

if satisfied 2>/dev/null; then
  note "$venv already has every pinned package"
else
  if [[ ! -x $py ]]; then
    note "creating $venv"
    "$base_python" -m venv "$venv"
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  note "installing $(grep -c '^[a-z].*==' "$req") hash-pinned packages into $venv"
  pip_install --require-hashes -r "$req"
  "$py" -c "import importlib.metadata as m, sys; sys.exit(m.version('torch').split('+')[0] != '$torch_version')" \
    2>/dev/null || install_torch "$tmp"
  satisfied || { note "error: the venv still differs from the pins"; exit 1; }
  "$py" -c 'import torch; torch.nn.functional.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 3, 3))' \
    || { note "error: torch is installed but cannot run a convolution on the CPU"; exit 1; }
fi
printf '%s\n' "$py"

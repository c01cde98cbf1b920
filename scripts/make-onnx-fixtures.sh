#!/usr/bin/env bash
# Regenerates the ONNX importer's test fixtures (Tests/Models/onnx-fixtures/*: model.onnx,
# input.npy, numpy's output.npy) with scripts/onnx_fixtures.py in a private venv with pinned
# packages. Seeded: the same pins give the same files. Not run by CI (the fixtures are committed).
#
#   scripts/make-onnx-fixtures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-onnx
if [[ ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet onnx==1.17.0 numpy==1.26.4 protobuf==5.28.3
fi
"$venv/bin/python" scripts/onnx_fixtures.py Tests/Models/onnx-fixtures

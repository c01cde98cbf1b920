#!/usr/bin/env bash
# Reproduces Tests/Models/fashion-mnist-vgg (model.onnx, provenance.json, first100-*.npy) and the
# importer fixtures of Tests/Models/onnx-fixtures: installs the pinned torch/onnx/onnxruntime venv
# (Benchmarks/peers/torch/install.sh), fetches Fashion-MNIST (scripts/fetch-data.sh), trains and
# exports the network (scripts/train_vgg.py, 2 threads), checks the export with ONNX Runtime on the
# 10 000 test images (scripts/check_onnx.py) and writes the tiny fixtures
# (scripts/make_onnx_fixtures.py). Not run by CI: the results are committed.
#
#   scripts/train-vgg.sh [--out DIR] [--fixtures DIR] [--check-only] [-- TRAIN_VGG_ARGS...]
#
# --check-only skips training and checks the model already in DIR (and rewrites the fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
out=Tests/Models/fashion-mnist-vgg
fixtures=Tests/Models/onnx-fixtures
train=1
extra=()
while (($#)); do
  case $1 in
    --out) out=$2; shift ;;
    --fixtures) fixtures=$2; shift ;;
    --check-only) train=0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "train-vgg.sh: unknown argument '$1'" >&2; exit 64 ;;
  esac
  shift
done

py=$(Benchmarks/peers/torch/install.sh | tail -n 1)
bash scripts/fetch-data.sh
if ((train)); then
  start=$SECONDS
  "$py" scripts/train_vgg.py --data data/fashion-mnist --out "$out" "${extra[@]}"
  echo "train-vgg: training and export took $((SECONDS - start)) s"
fi
"$py" scripts/check_onnx.py --model "$out/model.onnx" --data data/fashion-mnist
"$py" scripts/make_onnx_fixtures.py --out "$fixtures"

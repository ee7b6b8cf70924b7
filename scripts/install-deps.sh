#!/usr/bin/env bash
# Installs every Debian 12 package the project needs to build, test and run (one list, used by the README's
# two commands and by CI). Idempotent: packages already present are left alone.
#   scripts/install-deps.sh            core build + tests
#   scripts/install-deps.sh --neuron   also the NEURON simulator and OpenMPI (data generator)
#   scripts/install-deps.sh --peer     also PyTorch + OpenBLAS, both Debian builds (pthreads, OpenMP): the
#                                      published-code speed peer is timed with each (bench/README.md)
set -euo pipefail

core_packages=(
  build-essential cmake git pkg-config ca-certificates
  clang-format                           # the clang_format test (.clang-format)
  libeigen3-dev libopenblas-dev          # linear algebra
  nlohmann-json3-dev libcli11-dev        # config / CLI
  libzip-dev zlib1g-dev                  # PyTorch .pt archives
  libhdf5-dev                            # SHD
  libpng-dev                             # plots
  libgtest-dev libgmock-dev libbenchmark-dev
  pybind11-dev python3-dev python3-numpy python3-pytest python3-sklearn
  python3-matplotlib                     # PNG plots (learning curves, ROC, traces)
)
neuron_packages=(neuron neuron-dev python3-neuron python3-scipy libopenmpi-dev openmpi-bin)
# python3-seaborn: a checkout of the published code (`bench --peer --published-code DIR`) imports it.
peer_packages=(python3-torch python3-threadpoolctl libopenblas0-pthread libopenblas0-openmp python3-seaborn)

packages=("${core_packages[@]}")
for arg in "$@"; do
  case "$arg" in
    --neuron) packages+=("${neuron_packages[@]}") ;;
    --peer) packages+=("${peer_packages[@]}") ;;
    *) echo "install-deps.sh: unknown option '$arg' (expected --neuron or --peer)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

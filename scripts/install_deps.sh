#!/usr/bin/env bash
# Installs every Debian package Strata builds, tests and runs with. Idempotent: skips apt when
# everything is already there. Needs root (or sudo) on a fresh machine.
set -euo pipefail
packages=(
  cmake ninja-build g++ ccache pkg-config
  libopenblas-dev libdnnl-dev ocl-icd-opencl-dev
  libopenmpi-dev openmpi-bin libhdf5-openmpi-dev
  libboost-program-options-dev libsentencepiece-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev
  slurm-wlm munge  # tests/cluster: a one-node Slurm preempts and requeues a job
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install_deps: all ${#packages[@]} packages present"
  exit 0
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
echo "install_deps: installing ${missing[*]}"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"

#!/usr/bin/env bash
# Configures and builds Strata (Release, Ninja) into build/. The CUDA backend is built when
# /usr/local/cuda/bin/nvcc exists (STRATA_CUDA=OFF in the environment turns it off; a machine
# without a GPU still builds it, and its `cuda` tests then report as not run). Extra arguments go
# to CMake and win over these defaults, e.g.
#   scripts/build.sh -DSTRATA_BUILD_BENCH=OFF
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
launcher=()
have_ccache=0
if command -v ccache >/dev/null 2>&1; then
  have_ccache=1
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
nvcc=/usr/local/cuda/bin/nvcc
cuda=()
if [[ "${STRATA_CUDA:-}" =~ ^(OFF|off|0|NO|no)$ ]]; then
  cuda=(-DSTRATA_CUDA=OFF)
  echo "build.sh: CUDA backend off (STRATA_CUDA=${STRATA_CUDA})"
elif [[ -x "$nvcc" ]]; then
  cuda=(-DSTRATA_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc")
  if ((have_ccache)); then cuda+=(-DCMAKE_CUDA_COMPILER_LAUNCHER=ccache); fi
  echo "build.sh: CUDA backend on (nvcc: $nvcc)"
else
  cuda=(-DSTRATA_CUDA=OFF)
  echo "build.sh: CUDA backend off ($nvcc not found)"
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" "${cuda[@]}" "$@" \
  >/dev/null
ninja -C build -j "$(nproc)"

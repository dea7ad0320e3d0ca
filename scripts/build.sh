#!/usr/bin/env bash
# Configures and builds Strata (Release, Ninja) into build/. Extra arguments go to CMake, e.g.
#   scripts/build.sh -DSTRATA_CUDA=ON
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
launcher=()
if command -v ccache >/dev/null 2>&1; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" "$@" >/dev/null
ninja -C build -j "$(nproc)"

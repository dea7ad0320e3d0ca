#!/usr/bin/env bash
# The test command: installs dependencies, builds, and runs every suite through ctest in
# parallel. Tests that need hardware this machine lacks (label cuda) report as not run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/install_deps.sh
bash scripts/build.sh "$@"
# One OpenMP thread per test process keeps parallel ctest jobs from oversubscribing the cores;
# tests that check thread-count independence set their thread counts explicitly.
# (The job count is read first: GNU nproc honours OMP_NUM_THREADS and would say 1.)
jobs="$(getconf _NPROCESSORS_ONLN)"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 900

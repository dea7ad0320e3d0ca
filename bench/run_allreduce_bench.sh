#!/usr/bin/env bash
# Our all-reduce against raw MPI on 2 ranks (JSON lines), then raw MPI alone under
# MPI_THREAD_SINGLE for the cost of the thread level the watchdog needs.
#   bench/run_allreduce_bench.sh BUILD_DIR [--quick]
set -eu
build=${1:-build}
shift || true
bin=$build/bench/strata_bench_allreduce
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
mpirun --allow-run-as-root -np 2 "$bin" "$@"
mpirun --allow-run-as-root -np 2 "$bin" --raw-thread-single "$@"

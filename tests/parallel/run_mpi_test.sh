#!/usr/bin/env bash
# run_mpi_test.sh NP BINARY [ARGS...]: runs BINARY on NP ranks under mpirun and passes only if
# mpirun exits 0 and every rank printed its "rank R/NP ok" line. As root, mpirun without
# --allow-run-as-root refuses to start and exits 0, so the exit status alone proves nothing.
# A binary that cannot run here (the NCCL tests without a GPU per rank) prints "rank R/NP skipped:
# <why>" on every rank; then this exits 77, which ctest reports as not run (SKIP_RETURN_CODE).
set -u
np=$1
shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT
mpirun --allow-run-as-root --oversubscribe -np "$np" "$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
skipped=$(grep -cE "(^|[^0-9])rank [0-9]+/$np skipped" "$out")
if [[ $skipped -eq $np ]]; then
  echo "run_mpi_test: skipped on all $np ranks (mpirun exited $rc)"
  exit 77
fi
missing=""
for ((r = 0; r < np; r++)); do
  grep -qE "(^|[^0-9])rank $r/$np ok" "$out" || missing="$missing $r"
done
if [[ $rc -ne 0 || -n $missing ]]; then
  echo "run_mpi_test: mpirun exited $rc; ranks without an ok line:${missing:- none}" >&2
  exit 1
fi
echo "run_mpi_test: all $np ranks ok"

#!/usr/bin/env bash
# Races Strata's optimizer steps against PyTorch's implementations on the same parameters and
# thread counts, in one run.
#   bench/run_optim_bench.sh [BUILD_DIR]   (PyTorch: the venv of bench/setup_reference.sh)
set -euo pipefail
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-$here/../build}"
py="${TORCH_VENV:-/opt/torch-venv}/bin/python"
out=$(mktemp)
for threads in 1 2; do
  "$build/bench/strata_bench_optim" --threads "$threads" >>"$out"
  "$py" "$here/torch_optim_reference.py" --threads "$threads" >>"$out"
done
python3 "$here/compare_ops.py" "$out"

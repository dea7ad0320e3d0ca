#!/usr/bin/env bash
# Races Strata's tensor ops against PyTorch on the same shapes and thread counts, in one run.
#   bench/run_ops_bench.sh [BUILD_DIR]   (PyTorch: /opt/torch-venv/bin/python, then /usr/bin/python3)
set -euo pipefail
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"  # the same for Strata and PyTorch
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-$here/../build}"
out=$(mktemp)
for threads in 1 2; do
  "$build/bench/strata_bench_ops" --threads "$threads" >>"$out"
  for py in "${TORCH_VENV:-/opt/torch-venv}/bin/python" /usr/bin/python3; do
    if [[ -x $py ]] && $py -c 'import torch' 2>/dev/null; then
      $py "$here/torch_ops_reference.py" --threads "$threads" >>"$out"
    fi
  done
done
python3 "$here/compare_ops.py" "$out"

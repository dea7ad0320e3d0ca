#!/usr/bin/env bash
# Decoder training throughput, Strata against PyTorch (newest in /opt/torch-venv, eager and
# torch.compile; Debian's 1.13 under /usr/bin/python3), same model, shapes and thread counts.
#   bench/run_decoder_bench.sh [BUILD_DIR] [extra flags for both, e.g. --steps 8 --precision bf16]
# bench/setup_reference.sh creates the PyTorch environments ($TORCH_VENV, default /opt/torch-venv).
set -euo pipefail
# Every process, Strata and PyTorch alike, waits passively between parallel regions (see
# prefer_passive_omp_wait in core/runtime.h); export another policy to compare.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-$here/../build}"
shift || true
torch_py=${TORCH_VENV:-/opt/torch-venv}/bin/python
for threads in 1 2; do
  "$build/bench/strata_bench_decoder" --threads "$threads" "$@"
  if [[ -x $torch_py ]]; then
    "$torch_py" "$here/torch_decoder_reference.py" --threads "$threads" "$@"
    "$torch_py" "$here/torch_decoder_reference.py" --threads "$threads" --compile "$@" 2>/dev/null ||
      echo '{"bench": "decoder_train", "impl": "torch+compile", "error": "torch.compile failed"}'
  fi
  if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    /usr/bin/python3 "$here/torch_decoder_reference.py" --threads "$threads" "$@"
  fi
done

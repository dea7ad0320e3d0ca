#!/usr/bin/env bash
# Creates the PyTorch environments the bench scripts race against (run_decoder_bench.sh,
# run_model_bench.sh, run_ops_bench.sh):
#   - the newest PyTorch from PyPI, CPU-only, with transformers and h5py, in a venv at
#     $TORCH_VENV (default /opt/torch-venv);
#   - Debian's PyTorch 1.13 (python3-torch, python3-h5py), which only /usr/bin/python3 sees.
#   bench/setup_reference.sh            # both
#   SKIP_DEBIAN=1 bench/setup_reference.sh
# PyPI has only the CUDA build of torch for Linux: its libraries link the CUDA runtime (cudart,
# cuBLAS, cuDNN, NCCL, cuFile, cuSPARSELt, NVSHMEM), so the NVIDIA wheels it depends on are
# installed too, even for CPU-only runs (about 4 GB; installed with --no-deps, torch fails to
# import with "libcufile.so.0: cannot open shared object file"). Prints the versions at the end.
# Needs network access to Debian's mirrors and PyPI.
set -euo pipefail
venv=${TORCH_VENV:-/opt/torch-venv}
python=${PYTHON:-python3}
sudo_=()
[[ $(id -u) -eq 0 ]] || sudo_=(sudo)

if [[ ${SKIP_DEBIAN:-0} != 1 ]]; then
  "${sudo_[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_[@]}" apt-get install -y -q python3-torch python3-h5py \
    python3-venv
fi

if [[ ! -x $venv/bin/python ]]; then
  "${sudo_[@]}" "$python" -m venv "$venv"
fi
pip=("${sudo_[@]}" "$venv/bin/python" -m pip install -q --disable-pip-version-check)
"${pip[@]}" --upgrade pip
# The T5 reference uses transformers' T5; h5py writes fixtures.
"${pip[@]}" torch transformers h5py numpy lion-pytorch

echo "reference environments:"
"$venv/bin/python" -c 'import torch, transformers; print("  venv:", torch.__version__, "transformers", transformers.__version__, "threads", torch.get_num_threads())'
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  /usr/bin/python3 -c 'import torch; print("  Debian:", torch.__version__)'
else
  echo "  Debian: python3-torch not installed"
fi

#!/usr/bin/env bash
# The main job: installs dependencies, builds, fetches the corpus (Debian packages) and trains the
# default small model on it. Run from anywhere; needs root or sudo on a fresh machine.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/install_deps.sh
[[ -d corpus/train ]] || bash scripts/get_corpus.sh --install corpus
bash scripts/build.sh
./build/examples/strata_byte_mlp_lm corpus "$@"

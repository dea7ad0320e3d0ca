#!/usr/bin/env bash
# The main job: installs dependencies, builds, fetches the corpus (Debian packages) and trains the
# default decoder preset on it (`strata train` with no arguments: it trains an 8192-token
# tokenizer and prepares shards on first use, trains 300 steps, evaluates on the held-out split,
# saves a checkpoint in runs/decoder-small/ and prints a generated sample). Extra arguments go to
# `strata train`, e.g. scripts/run.sh --budget.amount 100. Needs root or sudo on a fresh machine.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/install_deps.sh
[[ -d corpus/train ]] || bash scripts/get_corpus.sh --install corpus
bash scripts/build.sh
./build/launch/strata train "$@"

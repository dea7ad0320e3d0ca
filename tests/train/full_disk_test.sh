#!/usr/bin/env bash
# `strata train` on a filesystem too small for its checkpoint (issue 21): the run ends with a
# clear error naming the run directory and the bytes needed and available (exit 1, not a
# crash), removes the partial checkpoint and keeps the previous one. Mounts a tmpfs, which
# needs root (CI has it); without that it exits 77, which ctest reports as not run.
#   full_disk_test.sh STRATA_BINARY REPO_DIR
set -uo pipefail
strata="$1"
repo="$2"
work="$(mktemp -d)"
fs="$work/fs"
mkdir -p "$fs"
cleanup() {
  mountpoint -q "$fs" && umount -l "$fs"
  rm -rf "$work"
}
trap cleanup EXIT
# 2 MiB holds one checkpoint of this model (1.3 MB of tensors) but not two.
if ! mount -t tmpfs -o size=2m tmpfs "$fs" 2>"$work/mount.err"; then
  echo "skipped: cannot mount a tmpfs ($(cat "$work/mount.err")); the test needs root"
  exit 77
fi
source "$(dirname "${BASH_SOURCE[0]}")/../launch/expect.sh"

source "$(dirname "${BASH_SOURCE[0]}")/byte_corpus.sh"
byte_corpus "$work" 12 10 40

common=(--config "$repo/configs/decoder-tiny.ini" --data.prepare never
        --data.tokenizer "$work/bytes.tok" --data.train "$work/train" --data.valid "$work/valid"
        --data.seq_len 32 --budget.amount 4 --optim.warmup_steps 1 --log.save_every 2
        --log.eval_every 0 --log.peak_gflops 1 --log.sample_tokens 0 --log.every 1
        --run.threads 1 --run.dir "$fs/run")

# Step 2 fits; step 4 does not while step 2 is still there.
expect full-disk 1 "error: .*$fs/run.*needs.*bytes.*available" -- "$strata" train "${common[@]}"
expect previous-kept 0 "verification: OK" -- "$strata" inspect "$fs/run/step_000000002"
leftovers=$(ls -A "$fs/run" | grep -v -e '^step_000000002$' -e '^metrics.jsonl$')
if [[ -n "$leftovers" ]]; then
  echo "FAIL leftovers in the run directory: $leftovers"
  failures=$((failures + 1))
fi

if ((failures)); then
  echo "$failures failure(s)"
  exit 1
fi
echo "full_disk_test: all $checked checks passed"

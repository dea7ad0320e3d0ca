#!/usr/bin/env bash
# A real interruption: `strata train` is killed with SIGKILL after its first checkpoint, resumed
# with `--run.resume auto`, and must end bit-identical to an uninterrupted run (every tensor's
# checksum in the final checkpoint, and the loss of every step after the checkpoint).
#   kill_resume_test.sh STRATA_BINARY REPO_DIR
set -euo pipefail
strata="$1"
repo="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

source "$(dirname "${BASH_SOURCE[0]}")/byte_corpus.sh"
byte_corpus "$work" 12 10 80

common=(--config "$repo/configs/decoder-tiny.ini" --data.prepare never
        --data.tokenizer "$work/bytes.tok" --data.train "$work/train" --data.valid "$work/valid"
        --data.seq_len 32 --budget.amount 400 --log.save_every 10 --log.eval_every 0
        --log.peak_gflops 1 --log.sample_tokens 0 --log.every 1 --run.threads 1)

"$strata" train "${common[@]}" --run.dir "$work/straight" >"$work/straight.log" 2>&1

"$strata" train "${common[@]}" --run.dir "$work/killed" >"$work/killed1.log" 2>&1 &
pid=$!
for _ in $(seq 1 3000); do
  [[ -e "$work/killed/step_000000010/DONE" ]] && break
  sleep 0.01
done
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
if [[ -e "$work/killed/step_000000400" ]]; then
  echo "FAIL: the run finished before it could be killed; cannot test an interruption"
  exit 1
fi
last=$(ls "$work/killed" | grep '^step_' | sort | tail -1)
echo "killed after $last"

"$strata" train "${common[@]}" --run.dir "$work/killed" >"$work/killed2.log" 2>&1
grep -q "resumed from" "$work/killed2.log" || { echo "FAIL: the second run did not resume"; cat "$work/killed2.log"; exit 1; }

# Every tensor's value, bit for bit (not the listing: it prints shapes and "checksum ok").
if ! "$strata" inspect "$work/straight/step_000000400" --compare "$work/killed/step_000000400" \
    >"$work/compare.txt"; then
  echo "FAIL: final checkpoints differ"; head -22 "$work/compare.txt"; exit 1
fi
grep -q "^identical: [1-9]" "$work/compare.txt" || { echo "FAIL: nothing compared"; cat "$work/compare.txt"; exit 1; }
# Losses of the steps the resumed process ran, against the same steps of the straight run.
resumed=$(grep -c '^step' "$work/killed2.log")
diff <(grep '^step' "$work/straight.log" | tail -n "$resumed" | awk '{print $1, $2, $4}') \
     <(grep '^step' "$work/killed2.log" | awk '{print $1, $2, $4}') >/dev/null ||
  { echo "FAIL: losses after the resume differ"; exit 1; }
echo "ok: killed after $last, resumed; $(tail -1 "$work/compare.txt"); $resumed step losses identical"

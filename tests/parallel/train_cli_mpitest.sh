#!/usr/bin/env bash
# `mpirun ... strata train` end to end: a TP2 job trains and saves with one progress log, the same
# command without mpirun still trains in one process, and a layout that cannot work (wrong world
# size, heads or vocabulary that do not divide, a pipeline stage without blocks) prints one clear
# message naming the layout and ends every rank with a non-zero status.
#   train_cli_mpitest.sh STRATA_BINARY
# Each rank runs under a wrapper that prints "rank-exit R STATUS" and then exits 0, so mpirun never
# cuts a rank short and every rank's own status is checked. As root, mpirun without
# --allow-run-as-root starts nothing and exits 0; the rank-exit lines prove that every rank ran.
set -uo pipefail
strata="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failures=0

source "$(dirname "${BASH_SOURCE[0]}")/../train/byte_corpus.sh"
byte_corpus "$work" 6 4 60

common=(--data.prepare never --data.tokenizer "$work/bytes.tok" --data.train "$work/train"
        --data.valid "$work/valid" --data.seq_len 32 --data.micro_batch 4 --model.n_layers 2
        --model.d_ff 64 --budget.amount 3 --optim.warmup_steps 1 --log.every 1 --log.eval_every 0
        --log.eval_batches 1 --log.peak_gflops 1 --log.sample_tokens 4 --run.threads 1
        --run.resume none)

heads=(--model.d_model 32 --model.n_heads 4 --model.n_kv_heads 2)

# job NAME NP EXPECTED_STATUS PATTERN ARGS...: runs strata train on NP ranks (with the model's
# head counts in ${heads[@]}); every rank must exit with EXPECTED_STATUS (0, or nonzero for "x"),
# and PATTERN must occur exactly once in the output.
job() {
  local name="$1" np="$2" want="$3" pattern="$4"
  shift 4
  local out="$work/$name.out"
  mpirun --allow-run-as-root --oversubscribe -np "$np" bash -c \
    '"$@"; rc=$?; echo "rank-exit ${OMPI_COMM_WORLD_RANK} $rc"; exit 0' _ \
    "$strata" train "${common[@]}" "${heads[@]}" --run.dir "$work/$name" "$@" >"$out" 2>&1
  local ok=1
  for ((r = 0; r < np; r++)); do
    local rc
    rc=$(sed -n "s/^rank-exit $r \([0-9]*\)$/\1/p" "$out")
    if [[ -z $rc ]]; then
      echo "FAIL $name: rank $r did not report its exit status"; ok=0
    elif [[ $want == x && $rc -eq 0 ]] || [[ $want != x && $rc -ne $want ]]; then
      echo "FAIL $name: rank $r exited $rc (expected ${want/x/non-zero})"; ok=0
    fi
  done
  local count
  count=$(grep -cE -- "$pattern" "$out")
  if [[ $count -ne 1 ]]; then echo "FAIL $name: '$pattern' printed $count times (expected once)"; ok=0; fi
  if ((ok)); then
    echo "ok   $name: $(grep -E -- "$pattern" "$out" | head -1)"
  else
    failures=$((failures + 1))
    sed 's/^/    | /' "$out" | head -40
  fi
}

job tp2 2 0 "^done: step 3" --parallel.tp 2
if [[ ! -f "$work/tp2/step_000000003/DONE" ]]; then
  echo "FAIL tp2: no checkpoint step_000000003"; failures=$((failures + 1))
fi
if [[ $(grep -c "^step " "$work/tp2.out") -ne 3 ]]; then
  echo "FAIL tp2: expected 3 progress lines (rank 0 only)"; failures=$((failures + 1))
fi
job pp2-gpipe 2 0 "^done: step 3" --parallel.pp 2 --parallel.schedule gpipe --data.grad_accum 2

job world-size 4 x "parallel layout DP3 x TP1 x PP1 needs 3 ranks but the job has 4" \
  --parallel.dp 3
job infer-dp 4 x "DP\? x TP3 x PP1: cannot infer dp" --parallel.tp 3
heads=(--model.d_model 48 --model.n_heads 3)
job heads 2 x "n_heads 3 is not divisible by the tensor-parallel size 2.*DP1 x TP2 x PP1" \
  --parallel.tp 2
heads=(--model.d_model 32 --model.n_heads 4 --model.n_kv_heads 2)
job vocab 2 x "vocab 261 is not divisible by the tensor-parallel size 2.*DP1 x TP2 x PP1" \
  --parallel.tp 2 --model.vocab 261
job empty-stage 4 x "4 stages but the model has only 2 blocks.*DP1 x TP1 x PP4" --parallel.pp 4
job schedule 2 x "parallel.schedule zigzag is invalid: unknown value 'zigzag'; valid: gpipe, 1f1b" --parallel.pp 2 --parallel.schedule zigzag

# Without a launcher the same command is one process and never initialises MPI.
out="$work/plain.out"
if "$strata" train "${common[@]}" "${heads[@]}" --run.dir "$work/plain" >"$out" 2>&1 &&
   grep -q "^done: step 3" "$out" && ! grep -q "^parallel:" "$out"; then
  echo "ok   plain: one process without mpirun"
else
  echo "FAIL plain: strata train without mpirun"; sed 's/^/    | /' "$out" | tail -20
  failures=$((failures + 1))
fi

if ((failures)); then
  echo "train_cli_mpitest: $failures failure(s)"
  exit 1
fi
echo "train_cli_mpitest: all cases ok"

#!/usr/bin/env bash
# nccl_watchdog_test.sh PROBE: runs nccl_watchdog_probe in each hang mode under mpirun and checks
# that the job ends (no hang), fails, and that the message names the operation, its sequence
# number, the group and the rank. Modes that need more GPUs than the machine has are skipped;
# with no GPU at all the whole test exits 77 (not run).
set -u
probe=$1
fails=0
ran=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# run NP MODE MAX_SECONDS REGEX...: every REGEX must match the combined output.
run() {
  local np=$1 mode=$2 max=$3
  shift 3
  local start end rc
  start=$(date +%s)
  timeout -k 10 120 mpirun --allow-run-as-root --oversubscribe -np "$np" "$probe" "$mode" >"$out" 2>&1
  rc=$?
  end=$(date +%s)
  if grep -q "skipped:" "$out"; then
    echo "skip $mode: $(grep -m1 "skipped:" "$out")"
    return
  fi
  ran=$((ran + 1))
  local ok=1
  if [[ $rc -eq 0 ]]; then echo "FAIL $mode: the job exited 0"; ok=0; fi
  if [[ $rc -eq 124 || $rc -eq 137 && $((end - start)) -ge 120 ]]; then
    echo "FAIL $mode: the job hung (stopped after 120 s)"
    ok=0
  fi
  if ((end - start > max)); then echo "FAIL $mode: took $((end - start)) s, expected at most $max"; ok=0; fi
  for re in "$@"; do
    grep -qE -- "$re" "$out" || { echo "FAIL $mode: no line matches: $re"; ok=0; }
  done
  if ((ok)); then
    echo "ok: $mode ended in $((end - start)) s with exit $rc"
    grep -E "^strata:|^  " "$out" | head -8
  else
    fails=$((fails + 1))
    sed 's/^/    | /' "$out" | head -60
  fi
}

run 1 blocked 25 \
  "strata: timeout on world rank 0: all_reduce 'test.stalled' #3 of group 'world' \(rank 0 of 1\) waited" \
  "NCCL on cuda:0: the operation did not complete" \
  "strata: aborting the job \(ncclCommAbort on group 'world', then MPI_Abort\)"
run 2 stall 25 \
  "strata: timeout on world rank 0: all_reduce 'test.stalled' #3 of group 'world' \(rank 0 of 2\) waited"
run 2 recv 25 \
  "strata: timeout on world rank 0: recv 'test.activation' #1 from rank 1 of group 'world' \(this rank 0\) waited"

if ((fails)); then
  echo "nccl_watchdog_test: $fails failure(s)"
  exit 1
fi
if ((ran == 0)); then
  echo "nccl_watchdog_test: skipped (no GPU)"
  exit 77
fi
echo "nccl_watchdog_test: all modes that fit the GPUs ok ($ran run)"
